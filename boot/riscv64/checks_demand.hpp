// The demand mapper (early/demand_mapper.hpp) serving real page faults: the
// trap handler hands the faulting address to it, it maps a megapage from a
// pool of levels - 2 table pages (one per level between the root and the
// megapage), and the access is retried. The window straddles a 1 GiB
// boundary, so touching both sides needs one table more than the pool has:
// the mapper must reset (unmap everything, fence the TLB) and start over. A
// reset without the fence would leave the old translations in QEMU's TLB,
// and touching the first side again would not fault.
//
// A RISC-V hart may cache invalid entries (§4.2.1), and a newly linked table
// is a changed non-leaf entry that only an rs1 = x0 fence reaches
// (arch/riscv_tlb.hpp), so the fault path fences with sfence.vma x0, x0
// after each map before retrying. QEMU does not cache invalid entries, but a
// kernel must not rely on that.
#pragma once

#include "check.hpp"
#include "cpu.hpp"
#include "kernel_space.hpp"
#include "ptkit/early/demand_mapper.hpp"
#include "trap.hpp"

namespace kernel {

alignas(4096) inline u64 g_demand_pool[3][512];

/// `Pool`: table pages of the mapper's pool, levels - 2 of the mode (the
/// pool size is a template argument of the mapper; run_demand_checks picks it).
template <unsigned Pool>
class DemandChecks {
 public:
  using Mapper = ptkit::early::DemandMapper<Format, ptkit::early::ImageAccess, ptkit::PlainWriter,
                                            TlbSinkRv, Pool>;
  static_assert(Pool <= 3, "g_demand_pool is too small");

  DemandChecks(Space& space, const VirtualLayout& v, const Machine& m, TlbState& tlb)
      : s_(space), v_(v), m_(m), tlb_(tlb) {}

  void run() {
    // The window maps 64 MiB of RAM from its start; pa - va is 2M-aligned
    // only, so every leaf is a megapage.
    const ptkit::early::DemandWindow window{VirtAddr(v_.demand_window), kWindow,
                                            PhysAddr(m_.ram_start)};
    const Attrs attrs{ptkit::RW, MemType::WriteBack, false};
    auto created =
        Mapper::create(s_.format(), image_access(), s_.root(), PhysAddr(addr_of(g_demand_pool)),
                       window, attrs, {}, TlbSinkRv(CountingOps(&tlb_), 0));
    {
      Check c("demand-create");
      if (!c.expect_ok(created, "create")) return;
      c.expect(created->worst_case_tables() == Pool, "the pool is exactly one fault's worth",
               created->worst_case_tables());
    }
    Mapper& mapper = created.value();
    Hook hook{&mapper};
    trap::set_page_fault_hook(&Hook::on_fault, &hook);
    first_faults(mapper);
    sweep(mapper);
    protection(mapper);
    outside(mapper);
    trap::set_page_fault_hook(nullptr, nullptr);
    Check c("demand-reset-clean");
    c.expect_ok(mapper.reset(), "final reset");
    c.expect(mapper.pool_in_use() == 0, "pool empty", mapper.pool_in_use());
    c.expect(mapper.stats().foreign_tables_unlinked == 0, "no static table unlinked");
    const u64 low = v_.demand_window + 2 * MiB;
    c.expect(trap::read(low).page_fault(low, trap::kLoadPageFault), "the window is empty again");
    serial::write("info demand faults ");
    serial::dec(mapper.stats().faults);
    serial::write(", resets ");
    serial::dec(mapper.stats().resets);
    serial::write(", fences after a map ");
    serial::dec(hook.fences);
    serial::write(", stale-entry retries ");
    serial::dec(hook.stale);
    serial::write("\n");
  }

 private:
  static constexpr u64 kWindow = 64 * MiB;
  static constexpr u64 kBelow = 4 * MiB;  // of the window below the 1 GiB boundary

  struct Hook {
    Mapper* mapper;
    u64 fences = 0;  // sfence.vma x0, x0 after a map
    u64 stale = 0;   // sfence.vma va after a fault on a translated address

    static bool on_fault(u64 stval, u64 scause, void* context) {
      auto& h = *static_cast<Hook*>(context);
      if (scause == trap::kInstructionPageFault) return false;  // the window is data
      auto r = h.mapper->handle_fault(VirtAddr(stval));
      if (!r.ok()) return false;  // outside the window: not the mapper's
      if (r->result == ptkit::early::FaultResult::AlreadyMapped) {
        // scause does not tell a missing translation from a denied one. A
        // translation that allows the access means the hart used a cached
        // invalid entry: fence that address and retry. One that denies it is
        // a protection fault, which retrying would repeat forever.
        const Perm need = scause == trap::kStorePageFault ? Perm::W : Perm::R;
        if (!has(r->mapping.attrs.perm, need)) return false;
        cpu::sfence_vma_va(stval);
        ++h.stale;
        return true;
      }
      cpu::sfence_vma_all();  // the map may have linked a new table
      ++h.fences;
      return true;
    }
  };

  u64 phys(u64 pa) const {
    return *reinterpret_cast<volatile u64*>(v_.direct_map + pa);  // NOLINT: the direct map
  }
  /// The window's byte at `offset` read through a fault, against the direct map.
  bool read_matches(Check& c, u64 offset) {
    const trap::Probe r = trap::read(v_.demand_window + offset);
    const u64 want = phys(m_.ram_start + offset);
    return c.expect(!r.faulted && r.value == want, "read served", v_.demand_window + offset,
                    r.fault.scause);
  }

  void first_faults(Mapper& mapper) {
    const u64 low = kBelow - 2 * MiB + 0x1008;  // below the 1 GiB boundary (the image)
    const u64 high = kBelow + 0x10;             // above it
    {
      Check c("demand-map");
      read_matches(c, low);
      const auto& st = mapper.stats();
      c.expect(st.faults == 1 && st.mapped == 1 && st.leaves[1] == 1, "one megapage mapped",
               st.faults, st.mapped);
      c.expect(mapper.pool_in_use() == Pool, "pool used up", mapper.pool_in_use());
      read_matches(c, low + 8);
      c.expect(mapper.stats().faults == 1, "no second fault");
    }
    {
      Check c("demand-reset");
      const u64 whole = tlb_.counts.whole();
      read_matches(c, high);
      c.expect(mapper.stats().resets == 1 && mapper.stats().faults == 2, "the pool was reset",
               mapper.stats().resets, mapper.stats().faults);
      c.expect(tlb_.counts.whole() > whole, "the reset fenced the TLB");
      // The reset removed the low leaf: touching it must fault again.
      read_matches(c, low);
      c.expect(mapper.stats().faults == 3 && mapper.stats().resets == 2,
               "low side faulted again after the reset", mapper.stats().faults,
               mapper.stats().resets);
      c.expect(mapper.stats().foreign_tables_unlinked == 0, "no static table unlinked");
    }
  }

  /// Every megapage of the window, alternating sides of the boundary: each
  /// crossing resets the pool; each leaf is read, written and read back.
  void sweep(Mapper& mapper) {
    Check c("demand-sweep");
    const u64 faults = mapper.stats().faults;
    const u64 resets = mapper.stats().resets;
    unsigned touched = 0;
    for (u64 off = kBelow; off < kWindow; off += 2 * MiB) {
      const u64 other = (off / (2 * MiB)) % 2 == 0 ? 2 * MiB : 3 * MiB;  // below the boundary
      for (u64 o : {off + 0x18, other + 0x1'0010}) {
        if (!read_matches(c, o)) return;
        ++touched;
      }
    }
    // Every touch faulted (the previous one was on the other side, whose
    // leaf the reset removed) and every fault after the first reset again.
    c.expect(mapper.stats().faults - faults == touched, "every touch faulted",
             mapper.stats().faults - faults, touched);
    c.expect(mapper.stats().resets - resets >= touched - 1, "a reset per crossing",
             mapper.stats().resets - resets);
    c.expect(mapper.stats().already_mapped == 0, "no fault on a translated address");
  }

  /// A denied access inside the window is a fault the mapper does not
  /// serve: the leaf is made read-only (through the kernel's space, in place:
  /// no table changes under the mapper) and a write reports a store fault.
  void protection(Mapper& mapper) {
    Check c("demand-protection-fault");
    const u64 offset = kBelow + 0x100;
    const u64 va = v_.demand_window + offset;
    read_matches(c, offset);
    const ptkit::AttrChange ro{Perm::None, Perm::W};
    if (!c.expect_ok(s_.protect(VirtAddr(v_.demand_window + kBelow), 2 * MiB, ro), "protect"))
      return;
    const u64 already = mapper.stats().already_mapped;
    const trap::Probe w = trap::write(va, 0);
    c.expect(w.page_fault(va, trap::kStorePageFault), "the write faults, not served", w.fault.stval,
             w.fault.scause);
    c.expect(mapper.stats().already_mapped == already + 1, "the mapper saw it translated");
    c.expect_ok(s_.protect(VirtAddr(v_.demand_window + kBelow), 2 * MiB,
                           ptkit::AttrChange{Perm::W, Perm::None}),
                "protect back");
  }

  void outside(Mapper& mapper) {
    Check c("demand-outside");
    const u64 outside = v_.test_base + 3 * GiB;
    const u64 declined = mapper.stats().declined;
    const trap::Probe r = trap::read(outside);
    c.expect(r.page_fault(outside, trap::kLoadPageFault), "fault outside the window reported");
    c.expect(mapper.stats().declined == declined + 1, "declined by the mapper");
  }

  Space& s_;
  const VirtualLayout& v_;
  const Machine& m_;
  TlbState& tlb_;
};

inline void run_demand_checks(Space& space, const VirtualLayout& v, const Machine& m,
                              TlbState& tlb) {
  switch (space.format().levels()) {
    case 3: DemandChecks<1>(space, v, m, tlb).run(); break;
    case 4: DemandChecks<2>(space, v, m, tlb).run(); break;
    case 5: DemandChecks<3>(space, v, m, tlb).run(); break;
  }
}

}  // namespace kernel
