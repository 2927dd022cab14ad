#include "trap.hpp"

#include "cpu.hpp"
#include "serial.hpp"

extern "C" {
// vectors.S
extern char exception_vectors[], probe_read_insn[], probe_write_insn[], probe_done[];
int probe_read(const volatile ptkit::u64* p, ptkit::u64* out);
int probe_write(volatile ptkit::u64* p, ptkit::u64 value);
int probe_exec(void (*target)());
}

namespace kernel::trap {
namespace {

// The probe in progress and what it saw. Written by the handler, read by the
// probe after it returns: volatile, because the compiler does not know that
// the asm call can reach the handler.
volatile bool g_probing = false;
volatile u64 g_exec_target = 0;
Fault g_fault;
volatile u64 g_hooked = 0;

FaultHook g_hook = nullptr;
void* g_hook_context = nullptr;

u64 g_touched[kTouchedMax];
unsigned g_touched_count = 0;

u64 addr(const void* p) { return reinterpret_cast<u64>(p); }  // NOLINT: code addresses

// The first kTouchedMax addresses; the count goes on, so a caller can tell
// whether any were not kept.
void remember(u64 va) {
  if (g_touched_count < kTouchedMax) g_touched[g_touched_count] = va;
  ++g_touched_count;
}

[[noreturn]] void unexpected(const TrapFrame& f) {
  serial::write("FAIL unexpected-exception vector=");
  serial::dec(f.vector);
  serial::write(" esr=");
  serial::hex(f.esr);
  serial::write(" elr=");
  serial::hex(f.elr);
  serial::write(" far=");
  serial::hex(f.far);
  serial::write("\n");
  cpu::qemu_exit(cpu::kExitFail);
}

}  // namespace

void install() {
  cpu::write_vbar_el1(addr(exception_vectors));
  cpu::isb();  // the next exception uses the new vectors
}

void set_translation_fault_hook(FaultHook hook, void* context) {
  g_hook = hook;
  g_hook_context = context;
}

u64 hooked_faults() { return g_hooked; }

unsigned touched_count() { return g_touched_count; }
u64 touched(unsigned i) { return g_touched[i]; }

Probe read(u64 va) {
  remember(va);
  Probe p;
  g_probing = true;
  p.faulted = probe_read(reinterpret_cast<const volatile u64*>(va), &p.value) != 0;  // NOLINT
  g_probing = false;
  if (p.faulted) p.fault = g_fault;
  return p;
}

Probe write(u64 va, u64 value) {
  remember(va);
  Probe p;
  g_probing = true;
  p.faulted = probe_write(reinterpret_cast<volatile u64*>(va), value) != 0;  // NOLINT
  g_probing = false;
  if (p.faulted) p.fault = g_fault;
  return p;
}

Probe exec(u64 va) {
  remember(va);
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

/// Called by exception_common with the frame it built; returning resumes at
/// frame->elr (ERET).
extern "C" void on_exception(TrapFrame* f) {
  using namespace kernel::trap;
  // Only synchronous exceptions from EL1 with SP_EL1 (vector 4) are taken.
  if (f->vector != 4) unexpected(*f);
  const u64 ec = exception_class(f->esr);
  const bool abort = ec == kEcDataAbortSameEl || ec == kEcInstructionAbortSameEl;
  if (abort && decode_fault_status(fault_status(f->esr)).kind == FaultKind::Translation &&
      g_hook != nullptr && g_hook(f->far, g_hook_context)) {
    g_hooked = g_hooked + 1;
    return;  // retry the access
  }
  if (g_probing && abort) {
    const bool data_probe = f->elr == addr(probe_read_insn) || f->elr == addr(probe_write_insn);
    const bool exec_probe = g_exec_target != 0 && f->elr == g_exec_target;
    if (data_probe || exec_probe) {
      g_fault = Fault{f->esr, f->far, f->elr};
      f->x[0] = 1;
      // An execute probe faulted on the target's first instruction: return
      // to probe_exec through the link register the BLR set.
      f->elr = exec_probe ? f->x[30] : addr(probe_done);
      return;
    }
  }
  unexpected(*f);
}
