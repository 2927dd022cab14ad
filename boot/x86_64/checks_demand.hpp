// The demand mapper (early/demand_mapper.hpp) serving real page faults: the
// #PF handler hands the faulting address to it, it maps a 2M leaf from a pool
// of Levels - 2 table pages (one per level between the root and the 2M leaf), and the access is
// retried. The window straddles a 1 GiB boundary, so touching both sides needs one table more than
// the pool has: the mapper must reset (unmap everything, flush the TLB) and start over. A reset
// without the flush would leave the old translations in QEMU's TLB, and touching the first side
// again would not fault.
#pragma once

#include "check.hpp"
#include "kernel_space.hpp"
#include "ptkit/early/demand_mapper.hpp"
#include "trap.hpp"

namespace kernel {

alignas(4096) inline u64 g_demand_pool[4][512];

template <class Format>
class DemandChecks {
 public:
  static constexpr unsigned kPool = Format::kMaxLevels - 2;
  using Mapper = ptkit::early::DemandMapper<Format, ptkit::early::ImageAccess, ptkit::PlainWriter,
                                            X86TlbSink, kPool>;
  static_assert(kPool <= 4, "g_demand_pool is too small");

  DemandChecks(Space<Format>& space, const VirtualLayout& v, TlbCounts* counts)
      : s_(space), v_(v), counts_(counts) {}

  void run() {
    // The window maps physical [0, 64 MiB) (RAM) with pa - va 2M-aligned only.
    const ptkit::early::DemandWindow window{VirtAddr(v_.demand_window), 64 * MiB, PhysAddr(0)};
    const Attrs attrs{ptkit::RW, MemType::WriteBack, false};
    auto created =
        Mapper::create(s_.format(), image_access(), s_.root(), PhysAddr(addr_of(g_demand_pool)),
                       window, attrs, {}, X86TlbSink(counts_));
    {
      Check c("demand-create");
      if (!c.expect_ok(created, "create")) return;
      c.expect(created->worst_case_tables() == kPool, "pool is exactly one fault's worth",
               created->worst_case_tables());
    }
    Mapper& mapper = created.value();
    trap::set_page_fault_hook(&hook, &mapper);

    const u64 low = v_.demand_window + 0x1008;      // below the 1 GiB boundary
    const u64 high = v_.demand_window + 0x40'0010;  // above it
    {
      Check c("demand-map");
      const trap::Probe r = trap::read(low);
      c.expect(!r.faulted && r.value == phys(0x1008), "read served", r.value, phys(0x1008));
      const auto& st = mapper.stats();
      c.expect(st.faults == 1 && st.mapped == 1 && st.leaves[1] == 1, "one 2M leaf mapped",
               st.faults, st.mapped);
      c.expect(mapper.pool_in_use() == kPool, "pool used up", mapper.pool_in_use());
      c.expect(!trap::read(low + 8).faulted && mapper.stats().faults == 1, "no second fault");
    }
    {
      Check c("demand-reset");
      const trap::Probe r = trap::read(high);
      c.expect(!r.faulted && r.value == phys(0x40'0010), "read served", r.value);
      c.expect(mapper.stats().resets == 1 && mapper.stats().faults == 2, "the pool was reset",
               mapper.stats().resets, mapper.stats().faults);
      // The reset removed the low leaf: touching it must fault again.
      const trap::Probe again = trap::read(low);
      c.expect(!again.faulted && again.value == phys(0x1008), "read served again");
      c.expect(mapper.stats().faults == 3 && mapper.stats().resets == 2,
               "low side faulted again after the reset", mapper.stats().faults,
               mapper.stats().resets);
      c.expect(mapper.stats().foreign_tables_unlinked == 0, "no foreign table unlinked");
    }
    {
      Check c("demand-outside");
      const u64 outside = v_.test_base + 3 * GiB;
      const u64 declined = mapper.stats().declined;
      const trap::Probe r = trap::read(outside);
      c.expect(r.page_fault(outside, trap::kPfPresent, 0), "fault outside the window reported");
      c.expect(mapper.stats().declined == declined + 1, "declined by the mapper");
    }
    trap::set_page_fault_hook(nullptr, nullptr);
  }

 private:
  // Only missing translations are the mapper's; a protection fault inside
  // the window would otherwise be retried forever.
  static bool hook(u64 cr2, u64 error, void* context) {
    if ((error & trap::kPfPresent) != 0) return false;
    return static_cast<Mapper*>(context)->handle_fault(VirtAddr(cr2)).ok();
  }
  u64 phys(u64 pa) const {
    return *reinterpret_cast<volatile u64*>(v_.direct_map + pa);  // NOLINT: the direct map
  }

  Space<Format>& s_;
  const VirtualLayout& v_;
  TlbCounts* counts_;
};

}  // namespace kernel
