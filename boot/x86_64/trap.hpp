// Exceptions: the IDT, the C++ side of the entry stubs (traps.S), and probes
// that touch memory and report whether (and how) the CPU faulted.
//
// A fault inside a probe is expected: it is recorded (vector, CR2, error
// code) and the probe returns "faulted". A page fault elsewhere first goes to
// the page-fault hook (the demand mapper), which may map the address and
// retry the instruction. Anything else is a bug in the kernel or in the
// tables it built: reported as FAIL, and QEMU exits with the fail status.
#pragma once

#include "ptkit/addr.hpp"

namespace kernel::trap {

using ptkit::u64;

// Page-fault error code bits (SDM vol. 3A §4.7, Figure 4-12).
inline constexpr u64 kPfPresent = u64{1} << 0;  // protection violation, not a missing page
inline constexpr u64 kPfWrite = u64{1} << 1;
inline constexpr u64 kPfUser = u64{1} << 2;
inline constexpr u64 kPfFetch = u64{1} << 4;  // instruction fetch (with NX enabled)
inline constexpr u64 kVectorPageFault = 14;

/// The registers as the stubs push them, lowest address first.
struct TrapFrame {
  u64 r15, r14, r13, r12, r11, r10, r9, r8, rdi, rsi, rbp, rbx, rdx, rcx, rax;
  u64 vector, error;
  u64 rip, cs, rflags, rsp, ss;  // pushed by the CPU
};

struct Fault {
  u64 vector = 0;
  u64 error = 0;
  u64 cr2 = 0;
  u64 rip = 0;
};

/// What a probe saw: whether the access faulted, and the fault if so.
struct Probe {
  bool faulted = false;
  u64 value = 0;  // read: the value read when it did not fault
  Fault fault{};
  /// Faulted with a page fault at `va` whose error code has exactly the
  /// bits of `mask` that `bits` has.
  [[nodiscard]] bool page_fault(u64 va, u64 mask, u64 bits) const {
    return faulted && fault.vector == kVectorPageFault && fault.cr2 == va &&
           (fault.error & mask) == bits;
  }
};

/// Called for a page fault outside a probe's own handling, before the probe
/// logic; returns true when it made the access possible (then the faulting
/// instruction is retried).
using PageFaultHook = bool (*)(u64 cr2, u64 error, void* context);

/// Builds the IDT for vectors 0-31 and loads it.
void install();
void set_page_fault_hook(PageFaultHook hook, void* context);

Probe read(u64 va);
Probe write(u64 va, u64 value);
/// Calls the code at `va` (which must be a `ret` if it runs at all).
Probe exec(u64 va);

/// Page faults the hook handled (resolved and retried) since boot.
u64 hooked_faults();

}  // namespace kernel::trap
