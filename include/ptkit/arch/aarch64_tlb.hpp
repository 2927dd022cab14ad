// AArch64 TLB maintenance for stage 1 at EL1&0: turns the engine's TLB calls
// into the barriers and TLBI instructions the Arm ARM requires (D8.16 "TLB
// maintenance"; the instructions: C5.5 "A64 System instructions for TLB
// maintenance"). The instructions themselves come from an Ops policy, so the
// same sequence runs on the CPU (InlineOps) and under a recorder in host tests.
//
// The order an update produces, for a break-before-make:
//   write invalid; publish (DSB ISHST); invalidate (TLBI ...IS); complete (DSB
//   ISH; ISB); write the new entry; publish; ...
#pragma once

#include <concepts>

#include "ptkit/addr.hpp"
#include "ptkit/tlb.hpp"

namespace ptkit::aarch64 {

/// The instructions the sink issues. All broadcast to the Inner Shareable
/// domain (the IS forms), so every PE that may cache the translation drops it.
template <class O>
concept TlbiOps = requires(O o, u64 operand, u16 asid) {
  {o.dsb_ishst()};
  {o.dsb_ish()};
  {o.isb()};
  {o.tlbi_vae1is(operand)};    // by VA and ASID, all levels (walk caches too)
  {o.tlbi_vale1is(operand)};   // by VA and ASID, last level only
  {o.tlbi_vaae1is(operand)};   // by VA, any ASID, all levels
  {o.tlbi_vaale1is(operand)};  // by VA, any ASID, last level only
  {o.tlbi_aside1is(asid)};     // every non-global entry of one ASID
  {o.tlbi_vmalle1is()};        // every EL1&0 entry of the current VMID
};

/// The Xt operand of TLBI VA-based instructions (C5.5): ASID in bits 63:48,
/// VA[55:12] in bits 43:0. For the all-ASID forms the ASID field is ignored.
/// With the 16K and 64K granules the low bits of the VA field below the
/// granule are ignored; the sink only passes granule-aligned addresses.
constexpr u64 tlbi_va_operand(VirtAddr va, u16 asid) {
  return (u64{asid} << 48) | ((va.value() >> 12) & ((u64{1} << 44) - 1));
}

/// A TlbSink for stage 1 at EL1&0 with one ASID.
template <TlbiOps Ops>
class TlbiSink {
 public:
  /// Invalidations of one range above `max_by_va` TLBIs become one
  /// ASIDE1IS/VMALLE1IS instead; the default never does (the engine already
  /// switches to invalidate_all() above its own threshold).
  static constexpr u64 kUnlimited = ~u64{0};

  constexpr TlbiSink(Ops ops, u16 asid, u64 max_by_va = kUnlimited)
      : ops_(ops), asid_(asid), max_by_va_(max_by_va) {}

  /// Table writes before this point are observed by every walker before any
  /// TLBI that follows: DSB ISHST orders the stores against the broadcast
  /// invalidation (D8.16, "ordering of translation table updates").
  void publish() { ops_.dsb_ishst(); }

  /// One TLBI per stride over [first, last]. Last-level forms (…ALE1IS) when
  /// only leaves changed, since they leave the walk caches alone; the all-level
  /// forms when table entries were removed or replaced. Global translations
  /// are tagged with no ASID, so a range holding them uses the all-ASID forms.
  void invalidate(const TlbRange& r) {
    const u64 step = u64{1} << r.stride_shift;
    const u64 first = align_down(r.first.value(), step);
    const u64 count = ((r.last.value() - first) >> r.stride_shift) + 1;
    if (count > max_by_va_) {
      invalidate_all(r.global);
      return;
    }
    u64 va = first;
    for (u64 i = 0; i < count; ++i, va += step) {
      const u64 op = tlbi_va_operand(VirtAddr(va), r.global ? u16{0} : asid_);
      if (r.global) {
        if (r.tables)
          ops_.tlbi_vaae1is(op);
        else
          ops_.tlbi_vaale1is(op);
      } else {
        if (r.tables)
          ops_.tlbi_vae1is(op);
        else
          ops_.tlbi_vale1is(op);
      }
    }
  }

  /// ASIDE1IS drops this ASID's non-global entries; global ones need
  /// VMALLE1IS, which drops everything at EL1&0.
  void invalidate_all(bool global) {
    if (global)
      ops_.tlbi_vmalle1is();
    else
      ops_.tlbi_aside1is(asid_);
  }

  /// DSB ISH waits until every TLBI above has completed on every PE; the ISB
  /// then makes this PE refetch with the new translations (D8.16).
  void complete() {
    ops_.dsb_ish();
    ops_.isb();
  }

  [[nodiscard]] constexpr u16 asid() const { return asid_; }
  [[nodiscard]] constexpr Ops& ops() { return ops_; }
  [[nodiscard]] constexpr const Ops& ops() const { return ops_; }

 private:
  Ops ops_;
  u16 asid_;
  u64 max_by_va_;
};

#if defined(__aarch64__)
/// The real instructions. "memory" clobbers keep the compiler from moving
/// table stores across the barriers and invalidations.
struct InlineOps {
  static void dsb_ishst() { asm volatile("dsb ishst" ::: "memory"); }
  static void dsb_ish() { asm volatile("dsb ish" ::: "memory"); }
  static void isb() { asm volatile("isb" ::: "memory"); }
  static void tlbi_vae1is(u64 op) { asm volatile("tlbi vae1is, %0" ::"r"(op) : "memory"); }
  static void tlbi_vale1is(u64 op) { asm volatile("tlbi vale1is, %0" ::"r"(op) : "memory"); }
  static void tlbi_vaae1is(u64 op) { asm volatile("tlbi vaae1is, %0" ::"r"(op) : "memory"); }
  static void tlbi_vaale1is(u64 op) { asm volatile("tlbi vaale1is, %0" ::"r"(op) : "memory"); }
  static void tlbi_aside1is(u16 asid) {
    asm volatile("tlbi aside1is, %0" ::"r"(u64{asid} << 48) : "memory");
  }
  static void tlbi_vmalle1is() { asm volatile("tlbi vmalle1is" ::: "memory"); }
};
static_assert(TlbiOps<InlineOps>);
static_assert(TlbSink<TlbiSink<InlineOps>>);
#endif

}  // namespace ptkit::aarch64
