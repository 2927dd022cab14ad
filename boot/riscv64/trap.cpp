#include "trap.hpp"

#include "cpu.hpp"
#include "mmio.hpp"
#include "serial.hpp"

extern "C" {
// traps.S
void trap_entry();
extern char probe_read_insn[], probe_write_insn[], probe_done[], probe_exec_ret[];
int probe_read(const volatile ptkit::u64* p, ptkit::u64* out);
int probe_write(volatile ptkit::u64* p, ptkit::u64 value);
int probe_exec(void (*target)());
}

namespace kernel::trap {
namespace {

constexpr unsigned kRa = 1, kA0 = 10;

// The probe in progress and what it saw. Written by the handler, read by the
// probe after it returns: volatile, because the compiler does not know that
// the asm call can reach the handler.
volatile bool g_probing = false;
volatile u64 g_exec_target = 0;
Fault g_fault;
volatile u64 g_hooked = 0;

PageFaultHook g_hook = nullptr;
void* g_hook_context = nullptr;

u64 addr(const void* p) { return reinterpret_cast<u64>(p); }  // NOLINT: code addresses
u64 addr(void (*f)()) { return reinterpret_cast<u64>(f); }    // NOLINT: code addresses

bool is_page_fault(u64 cause) {
  return cause == kInstructionPageFault || cause == kLoadPageFault || cause == kStorePageFault;
}

[[noreturn]] void unexpected(const TrapFrame& f) {
  serial::write("FAIL unexpected-trap scause=");
  serial::hex(f.scause);
  serial::write(" stval=");
  serial::hex(f.stval);
  serial::write(" sepc=");
  serial::hex(f.sepc);
  serial::write(" ra=");
  serial::hex(f.x[kRa]);
  serial::write("\n");
  mmio::qemu_exit(mmio::kExitFail);
}

}  // namespace

void install() { asm volatile("csrw stvec, %0" : : "r"(addr(&trap_entry)) : "memory"); }

void set_page_fault_hook(PageFaultHook hook, void* context) {
  g_hook = hook;
  g_hook_context = context;
}

u64 hooked_faults() { return g_hooked; }

Probe read(u64 va) {
  Probe p;
  g_probing = true;
  p.faulted = probe_read(reinterpret_cast<const volatile u64*>(va), &p.value) != 0;  // NOLINT
  g_probing = false;
  if (p.faulted) p.fault = g_fault;
  return p;
}

Probe write(u64 va, u64 value) {
  Probe p;
  g_probing = true;
  p.faulted = probe_write(reinterpret_cast<volatile u64*>(va), value) != 0;  // NOLINT
  g_probing = false;
  if (p.faulted) p.fault = g_fault;
  return p;
}

Probe exec(u64 va) {
  Probe p;
  g_exec_target = va;
  g_probing = true;
  p.faulted = probe_exec(reinterpret_cast<void (*)()>(va)) != 0;  // NOLINT
  g_probing = false;
  g_exec_target = 0;
  if (p.faulted) p.fault = g_fault;
  return p;
}

}  // namespace kernel::trap

using kernel::trap::TrapFrame;

/// Called by trap_entry with the frame it saved; returning resumes at
/// frame->sepc with the frame's registers.
extern "C" void on_trap(TrapFrame* f) {
  using namespace kernel::trap;
  if ((f->scause & kInterruptBit) == 0 && is_page_fault(f->scause) && g_hook != nullptr &&
      g_hook(f->stval, f->scause, g_hook_context)) {
    g_hooked = g_hooked + 1;
    return;  // retry the access
  }
  if (g_probing) {
    const bool data_probe = f->sepc == addr(probe_read_insn) || f->sepc == addr(probe_write_insn);
    // A fetch fault at the target: the jalr has already set ra.
    const bool exec_probe =
        g_exec_target != 0 && f->sepc == g_exec_target && f->x[kRa] == addr(probe_exec_ret);
    if (data_probe || exec_probe) {
      g_fault = Fault{f->scause, f->stval, f->sepc};
      f->x[kA0] = 1;
      f->sepc = exec_probe ? f->x[kRa] : addr(probe_done);
      return;
    }
  }
  unexpected(*f);
}
