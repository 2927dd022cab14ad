#include "trap.hpp"

#include "cpu.hpp"
#include "serial.hpp"

extern "C" {
// traps.S
extern const ptkit::u64 isr_table[32];
extern char probe_read_insn[], probe_write_insn[], probe_done[], probe_exec_ret[];
extern ptkit::u64 probe_exec_rsp;
int probe_read(const volatile ptkit::u64* p, ptkit::u64* out);
int probe_write(volatile ptkit::u64* p, ptkit::u64 value);
int probe_exec(void (*target)());
}

namespace kernel::trap {
namespace {

using ptkit::u16;
using ptkit::u32;

struct [[gnu::packed]] IdtEntry {
  u16 offset_lo;
  u16 selector;
  u16 flags;  // IST 0, type 0xE (64-bit interrupt gate), DPL 0, present
  u16 offset_mid;
  u32 offset_hi;
  u32 reserved;
};
static_assert(sizeof(IdtEntry) == 16);

struct [[gnu::packed]] IdtPointer {
  u16 limit;
  u64 base;
};

constexpr u16 kKernelCode = 0x08;  // entry.S's GDT
constexpr u16 kInterruptGate = 0x8E00;

alignas(16) IdtEntry g_idt[32];

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

[[noreturn]] void unexpected(const TrapFrame& f, u64 cr2) {
  serial::write("FAIL unexpected-exception vector=");
  serial::dec(f.vector);
  serial::write(" error=");
  serial::hex(f.error);
  serial::write(" rip=");
  serial::hex(f.rip);
  serial::write(" cr2=");
  serial::hex(cr2);
  serial::write("\n");
  cpu::qemu_exit(cpu::kExitFail);
}

}  // namespace

void install() {
  for (unsigned v = 0; v < 32; ++v) {
    const u64 handler = isr_table[v];
    g_idt[v] = IdtEntry{static_cast<u16>(handler),
                        kKernelCode,
                        kInterruptGate,
                        static_cast<u16>(handler >> 16),
                        static_cast<u32>(handler >> 32),
                        0};
  }
  const IdtPointer pointer{sizeof(g_idt) - 1, addr(g_idt)};
  asm volatile("lidt %0" : : "m"(pointer) : "memory");  // the IDT is written before it is loaded
}

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

/// Called by isr_common with the frame it built; returning resumes at
/// frame->rip.
extern "C" void on_exception(TrapFrame* f) {
  using namespace kernel::trap;
  const u64 cr2 = f->vector == kVectorPageFault ? kernel::cpu::read_cr2() : 0;
  if (f->vector == kVectorPageFault && g_hook != nullptr && g_hook(cr2, f->error, g_hook_context)) {
    g_hooked = g_hooked + 1;
    return;  // retry the access
  }
  if (g_probing) {
    const bool data_probe = f->rip == addr(probe_read_insn) || f->rip == addr(probe_write_insn);
    const bool exec_probe = g_exec_target != 0 && f->rip == g_exec_target;
    if (data_probe || exec_probe) {
      g_fault = Fault{f->vector, f->error, cr2, f->rip};
      f->rax = 1;
      if (exec_probe) {
        // Unwind the call into the target: back to probe_exec's frame.
        f->rsp = probe_exec_rsp;
        f->rip = addr(probe_exec_ret);
      } else {
        f->rip = addr(probe_done);
      }
      return;
    }
  }
  unexpected(*f, cr2);
}
