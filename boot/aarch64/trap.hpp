// Exceptions: the C++ side of the vectors (vectors.S), and probes that touch
// memory and report whether, and how, the MMU faulted.
//
// A fault inside a probe is expected: it is recorded (ESR_EL1, FAR_EL1,
// ELR_EL1) and the probe returns "faulted". A translation fault elsewhere
// first goes to the hook (the demand mapper), which may map the address and
// retry the instruction. Anything else is a bug in the kernel or in the
// tables it built: reported as FAIL, and QEMU exits with the fail status.
//
// Every address a probe touches is remembered (touched()), so the AT
// cross-check can ask the MMU about each of them at the end.
#pragma once

#include "ptkit/addr.hpp"

namespace kernel::trap {

using ptkit::u64;

/// The frame vectors.S builds, lowest address first.
struct TrapFrame {
  u64 x[31];
  u64 elr, spsr, esr, far, vector;
};
static_assert(sizeof(TrapFrame) == 288);

// ESR_EL1 (D23.2 "ESR_EL1"): exception class and, for aborts, the fault
// status code (ISS DFSC/IFSC) and WnR.
inline constexpr u64 kEcInstructionAbortSameEl = 0x21;
inline constexpr u64 kEcDataAbortSameEl = 0x25;
inline constexpr u64 exception_class(u64 esr) { return esr >> 26; }
inline constexpr u64 fault_status(u64 esr) { return esr & 0x3F; }
inline constexpr bool write_not_read(u64 esr) { return (esr & (u64{1} << 6)) != 0; }

/// What kind of MMU fault a fault status code is (ISS encoding for an
/// exception from a Data/Instruction Abort, DFSC): translation 0b0001LL
/// (level -1: 0b101011), access flag 0b0010LL, permission 0b0011LL.
enum class FaultKind { Translation, AccessFlag, Permission, Other };
struct FaultStatus {
  FaultKind kind = FaultKind::Other;
  int level = 0;  // the Arm lookup level, -1 to 3
};
inline constexpr FaultStatus decode_fault_status(u64 fsc) {
  if (fsc == 0x2B) return {FaultKind::Translation, -1};
  const int level = static_cast<int>(fsc & 3);
  switch (fsc >> 2) {
    case 1: return {FaultKind::Translation, level};
    case 2: return {FaultKind::AccessFlag, level};
    case 3: return {FaultKind::Permission, level};
    default: return {FaultKind::Other, 0};
  }
}

struct Fault {
  u64 esr = 0;
  u64 far = 0;
  u64 elr = 0;
};

/// What a probe saw: whether the access faulted, and the fault if so.
struct Probe {
  bool faulted = false;
  u64 value = 0;  // read: the value read when it did not fault
  Fault fault{};

  /// A data abort at `va` of `kind`, by a write if `write`.
  [[nodiscard]] bool data_abort(u64 va, FaultKind kind, bool write) const {
    return faulted && exception_class(fault.esr) == kEcDataAbortSameEl && fault.far == va &&
           decode_fault_status(fault_status(fault.esr)).kind == kind &&
           write_not_read(fault.esr) == write;
  }
  /// An instruction abort fetching `va` of `kind`.
  [[nodiscard]] bool instruction_abort(u64 va, FaultKind kind) const {
    return faulted && exception_class(fault.esr) == kEcInstructionAbortSameEl && fault.far == va &&
           fault.elr == va && decode_fault_status(fault_status(fault.esr)).kind == kind;
  }
  /// The Arm lookup level the fault names.
  [[nodiscard]] int level() const { return decode_fault_status(fault_status(fault.esr)).level; }
};

/// Called for a translation fault before the probe logic; returns true when
/// it made the access possible (then the faulting instruction is retried).
using FaultHook = bool (*)(u64 far, void* context);

/// Points VBAR_EL1 at the vectors.
void install();
void set_translation_fault_hook(FaultHook hook, void* context);

Probe read(u64 va);
Probe write(u64 va, u64 value);
/// Calls the code at `va` (which must be a `ret` if it runs at all).
Probe exec(u64 va);

/// Translation faults the hook handled (resolved and retried) since boot.
u64 hooked_faults();

/// Addresses probes touched, in order: touched(i) for i < kTouchedMax and
/// i < touched_count() (the count goes on past what is kept).
inline constexpr unsigned kTouchedMax = 1024;
unsigned touched_count();
u64 touched(unsigned i);

}  // namespace kernel::trap
