// The guest's console: a line buffer sent through the console_io hypercall
// (CONSOLEIO_write). Dom0's writes go straight to Xen's console (COM1 here)
// without a prefix, so each line of the report is a line of the serial log.
#pragma once

#include "xen.hpp"

namespace kernel::serial {

inline char g_line[256];
inline unsigned g_used = 0;

inline void flush() {
  if (g_used == 0) return;
  xen::console_write(g_line, g_used);
  g_used = 0;
}

inline void put(char c) {
  g_line[g_used++] = c;
  if (c == '\n' || g_used == sizeof(g_line)) flush();
}

}  // namespace kernel::serial

#include "serial_format.hpp"  // write, hex, dec over put
