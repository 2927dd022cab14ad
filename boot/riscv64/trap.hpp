// Traps: stvec, the C++ side of trap_entry (traps.S), and probes that touch
// memory and report whether (and how) the hart faulted.
//
// A fault inside a probe is expected: it is recorded (scause, stval, sepc)
// and the probe returns "faulted". A page fault elsewhere first goes to the
// page-fault hook (the demand mapper), which may map the address and retry
// the instruction. Anything else is a bug in the kernel or in the tables it
// built: reported as FAIL, and QEMU exits with the fail status.
#pragma once

#include "ptkit/addr.hpp"

extern "C" char probe_done[];  // traps.S: a lone `ret` in text, to execute

namespace kernel::trap {

using ptkit::u64;

// scause exception codes (Privileged Architecture 20211203, §4.1.9, table 4.2).
inline constexpr u64 kInstructionAccessFault = 1;
inline constexpr u64 kLoadAccessFault = 5;
inline constexpr u64 kStoreAccessFault = 7;
inline constexpr u64 kInstructionPageFault = 12;
inline constexpr u64 kLoadPageFault = 13;
inline constexpr u64 kStorePageFault = 15;  // store/AMO
inline constexpr u64 kInterruptBit = u64{1} << 63;

/// The registers as trap_entry saves them: x[0] is unused, x[2] is the
/// interrupted sp.
struct TrapFrame {
  u64 x[32];
  u64 sepc, scause, stval, sstatus;
};
static_assert(sizeof(TrapFrame) == 288, "traps.S FRAME");

struct Fault {
  u64 scause = 0;
  u64 stval = 0;
  u64 sepc = 0;
};

/// What a probe saw: whether the access faulted, and the fault if so.
struct Probe {
  bool faulted = false;
  u64 value = 0;  // read: the value read when it did not fault
  Fault fault{};
  /// Faulted with exception `cause` and stval = `va` (for page faults stval
  /// is the faulting virtual address, §4.1.9).
  [[nodiscard]] bool page_fault(u64 va, u64 cause) const {
    return faulted && fault.scause == cause && fault.stval == va;
  }
};

/// Called for a page fault (codes 12, 13, 15) outside a probe's own
/// handling, before the probe logic; returns true when it made the access
/// possible (then the faulting instruction is retried).
using PageFaultHook = bool (*)(u64 stval, u64 scause, void* context);

/// Points stvec at trap_entry.
void install();
void set_page_fault_hook(PageFaultHook hook, void* context);

Probe read(u64 va);
Probe write(u64 va, u64 value);
/// Calls the code at `va` (which must be a `ret` if it runs at all).
Probe exec(u64 va);

/// Page faults the hook handled (resolved and retried) since boot.
u64 hooked_faults();

/// `ret` (jalr x0, 0(x1)), uncompressed: what exec probes run.
inline constexpr ptkit::u32 kRetInstruction = 0x0000'8067;

}  // namespace kernel::trap
