#include "machine.hpp"

#include "check.hpp"
#include "serial.hpp"
#include "xen.hpp"

namespace kernel {

void exit_qemu(ptkit::u32 code) {
  serial::flush();
  struct {
    ptkit::u32 iopl;
  } set_iopl{1};  // struct physdev_set_iopl
  xen::hypercall<xen::kPhysdevOp>(xen::kPhysdevOpSetIopl, reinterpret_cast<ptkit::u64>(&set_iopl));
  asm volatile("outl %0, %1" : : "a"(code), "Nd"(static_cast<ptkit::u16>(0xf4)));
  struct {
    ptkit::u32 reason;
  } shutdown{static_cast<ptkit::u32>(xen::kShutdownCrash)};  // struct sched_shutdown
  for (;;)
    xen::hypercall<xen::kSchedOp>(xen::kSchedOpShutdown, reinterpret_cast<ptkit::u64>(&shutdown));
}

void finish() {
  serial::dec(g_checks_passed);
  serial::write(" passed, ");
  serial::dec(g_checks_failed);
  serial::write(" failed\n");
  exit_qemu(g_checks_failed == 0 ? 0x10 : 0x11);
}

}  // namespace kernel
