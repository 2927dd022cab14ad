// The engine's TLB work as RISC-V SFENCE.VMA instructions (RISC-V Privileged
// Architecture 20211203, §4.2.1 "Supervisor Memory-Management Fence
// Instruction"). The four forms, by which of rs1 (address) and rs2 (ASID) is x0:
//
//   rs1=va, rs2=asid  leaf PTEs for va, that ASID, not global mappings
//   rs1=va, rs2=x0    leaf PTEs for va, every ASID, global mappings included
//   rs1=x0, rs2=asid  every level of the page tables, that ASID, not global
//   rs1=x0, rs2=x0    every level, every ASID, everything
//
// Only the rs1=x0 forms reach non-leaf PTEs: with rs1≠x0 the fence "orders
// only reads and writes made to leaf page table entries corresponding to the
// virtual address in rs1" and "invalidates all address-translation cache
// entries that contain leaf page table entries corresponding to the virtual
// address" (§4.2.1), and "If software modifies a non-leaf PTE, it should
// execute SFENCE.VMA with rs1=x0. If any PTE along the traversal path had its
// G bit set, rs2 must be x0" (§4.2.1, the common-situations list).
//
// Scope: SFENCE.VMA orders and invalidates for the executing hart only. Other
// harts need a shootdown (make the stores globally visible, interrupt them,
// have each run the same fences, wait for them), which is the caller's
// business, e.g. through the SBI RFENCE extension; this sink is the local part.
//
// Adding translations: the engine owes no invalidation when an invalid entry
// becomes valid, but a hart may cache invalid PTEs (§4.2.1, "This
// specification permits the caching of PTEs whose V (Valid) bit is clear").
// For a new leaf the spec allows that laziness: a page fault on a freshly
// mapped address is then answered with an SFENCE.VMA and a retry. A newly
// linked table is a changed non-leaf PTE, which only rs1=x0 reaches, so a
// caller that maps lazily should fence with rs1=x0 in that fault path (or
// after each map, or use Svvptc hardware, which needs neither).
#pragma once

#include <concepts>

#include "ptkit/addr.hpp"
#include "ptkit/tlb.hpp"

namespace ptkit::riscv {

/// How the sink issues the four forms of SFENCE.VMA (see the table above).
/// An ASID of 0 is the ASID 0 in a register, never x0.
template <class O>
concept SfenceOps = requires(O ops, u64 va, u16 asid) {
  {ops.sfence_vma(va, asid)};   // rs1=va, rs2=asid
  {ops.sfence_vma_va(va)};      // rs1=va, rs2=x0
  {ops.sfence_vma_asid(asid)};  // rs1=x0, rs2=asid
  {ops.sfence_vma_all()};       // rs1=x0, rs2=x0
};

/// A TlbSink for one address space, identified by its ASID (satp.ASID; up to
/// 16 bits for Sv39/48/57, §4.1.11; 0 where the hart has no ASIDs).
template <SfenceOps Ops>
class SfenceSink {
 public:
  constexpr SfenceSink(Ops ops, u16 asid) : ops_(ops), asid_(asid) {}

  [[nodiscard]] constexpr u16 asid() const { return asid_; }
  [[nodiscard]] constexpr Ops& ops() { return ops_; }
  [[nodiscard]] constexpr const Ops& ops() const { return ops_; }

  /// Nothing to issue. On the local hart every SFENCE.VMA that follows orders
  /// the preceding page-table stores before later implicit reads (§4.2.1),
  /// and until then a walk can only produce a translation that was valid at
  /// some time since the last fence, never one read from a half-filled new
  /// table. Making the stores visible to other harts belongs to the
  /// shootdown, outside this sink.
  void publish() {}

  /// Leaf changes only: one SFENCE.VMA per stride page of the range with this
  /// ASID, or with rs2=x0 when global translations are among them (ASID-
  /// tagged fences skip global entries, §4.2.1). Changed or removed non-leaf
  /// PTEs (`tables`): one rs1=x0 fence, since address-specific fences leave
  /// cached non-leaf entries alone; rs2=x0 if global. The engine turns long
  /// ranges into invalidate_all() itself.
  void invalidate(const TlbRange& r) {
    if (r.tables) {
      invalidate_all(r.global);
      return;
    }
    // From the start of the first stride page, so that an unaligned `first`
    // cannot make the count miss the last page.
    const u64 first = align_down(r.first.value(), u64{1} << r.stride_shift);
    const u64 count = ((r.last.value() - first) >> r.stride_shift) + 1;
    for (u64 i = 0; i < count; ++i) {
      const u64 va = first + (i << r.stride_shift);
      if (r.global)
        ops_.sfence_vma_va(va);
      else
        ops_.sfence_vma(va, asid_);
    }
  }

  /// Everything of this ASID (rs1=x0, rs2=asid), or everything at all when
  /// global translations changed (rs1=rs2=x0).
  void invalidate_all(bool global) {
    if (global)
      ops_.sfence_vma_all();
    else
      ops_.sfence_vma_asid(asid_);
  }

  /// Nothing to wait for: SFENCE.VMA has no separate completion barrier (no
  /// DSB/ISB pair as on Arm); the instructions after it are ordered by it.
  void complete() {}

 private:
  Ops ops_;
  u16 asid_;
};

#if defined(__riscv) && __riscv_xlen == 64  // Sv39/48/57 need SXLEN = 64
/// The real instructions, for S-mode code. Each is a compiler memory barrier
/// ("memory" clobber) so that the page-table stores before it are not moved
/// past it nor later accesses before it. A compiler may pass a constant 0
/// address or ASID as x0 (clang 14 does): the fence is then a wider form,
/// which is always allowed ("It is always legal to over-fence", §4.2.1).
struct InlineOps {
  void sfence_vma(u64 va, u16 asid) const {
    asm volatile("sfence.vma %0, %1" : : "r"(va), "r"(u64{asid}) : "memory");
  }
  void sfence_vma_va(u64 va) const { asm volatile("sfence.vma %0, zero" : : "r"(va) : "memory"); }
  void sfence_vma_asid(u16 asid) const {
    asm volatile("sfence.vma zero, %0" : : "r"(u64{asid}) : "memory");
  }
  void sfence_vma_all() const { asm volatile("sfence.vma zero, zero" : : : "memory"); }
};
static_assert(TlbSink<SfenceSink<InlineOps>>);
#endif

}  // namespace ptkit::riscv
