// A tiny freestanding "kernel" for `ptkit image` tests: code, read-only data,
// initialised data and a 4 MiB bss, so the linker script (kernel.ld.in) can
// give it separate text, rodata and data segments. It is never run.
extern "C" {
extern const char message[17] = "hello from ptkit";  // extern: emitted in .rodata
char buffer[64] = {1};
char bss[4 << 20];
void _start() {
  bss[0] = char(message[0] + buffer[1]);
  // A loop with a side effect: C++ lets a compiler drop an empty endless
  // loop, and clang then drops the whole body, leaving .text empty.
  for (;;) __asm__ volatile("hlt");
}
}
