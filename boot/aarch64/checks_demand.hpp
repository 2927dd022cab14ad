// The demand mapper (early/demand_mapper.hpp) serving real translation
// faults: the abort handler hands the faulting address to it, it maps the
// largest leaf that fits (a 2M or 32M block; 64K pages with the 64K granule,
// whose 512M block is larger than the window) from a pool of exactly one
// fault's worth of tables, and the access is retried. The window straddles
// a boundary of the level above its leaves, so its two sides need different
// tables and touching one side after the other resets the pool (unmap
// everything, flush the TLB). A reset without the flush would leave the old
// translations in QEMU's TLB, and touching the first side again would not
// fault.
#pragma once

#include "check.hpp"
#include "kernel_space.hpp"
#include "ptkit/early/demand_mapper.hpp"
#include "scratch.hpp"
#include "trap.hpp"

namespace kernel {

namespace demand {
inline constexpr Format kShape{config::kGranule, config::kVaBits};
constexpr u64 leaf_size(unsigned level) { return u64{1} << kShape.leaf_shift(level); }
// Blocks where the level-2 block fits in RAM's scratch half, else pages.
inline constexpr unsigned kLeafLevel = leaf_size(1) <= 32 * MiB ? 1 : 0;
inline constexpr u64 kLeaf = leaf_size(kLeafLevel);
inline constexpr u64 kWindowSize = kLeaf >= 32 * MiB  ? 2 * kLeaf
                                   : kLeaf >= 2 * MiB ? 8 * kLeaf
                                                      : 4 * MiB;
inline constexpr u64 kSpan = leaf_size(kLeafLevel + 1);  // one table of leaves
inline constexpr u64 kWindowPa = 0x4400'0000;
static_assert(kWindowPa + kWindowSize <= kRamEnd, "the window maps RAM only");
/// One fault's worth: a table per level from below the root to the leaves.
inline constexpr unsigned kPool = kShape.levels() - 1 - kLeafLevel;
alignas(config::kPage) inline ptkit::u8 g_pool[kPool * config::kPage];
}  // namespace demand

class DemandChecks {
 public:
  using Mapper = ptkit::early::DemandMapper<Format, ptkit::early::ImageAccess, ptkit::PlainWriter,
                                            A64TlbSink, demand::kPool>;

  DemandChecks(Space& space, TlbCounts* counts) : s_(space), counts_(counts) {}

  void run() {
    using namespace demand;
    const u64 boundary = kLayout.demand_base + kSpan;
    const ptkit::early::DemandWindow window{VirtAddr(boundary - kWindowSize / 2), kWindowSize,
                                            PhysAddr(kWindowPa)};
    const Attrs attrs{ptkit::RW, MemType::WriteBack, false};
    auto created = Mapper::create(s_.format(), image_access(), s_.root(), PhysAddr(addr_of(g_pool)),
                                  window, attrs, {}, A64TlbSink(counts_));
    {
      Check c("demand-create");
      if (!c.expect_ok(created, "create")) return;
      c.expect(created->worst_case_tables() == kPool, "pool is exactly one fault's worth",
               created->worst_case_tables());
    }
    Mapper& mapper = created.value();
    trap::set_translation_fault_hook(&hook, &mapper);
    const u64 pa_of_va = window.pa.value() - window.va.value();
    auto served = [&](Check& c, u64 va, const char* what) {
      const trap::Probe r = trap::read(va);
      return c.expect(!r.faulted && r.value == phys(va + pa_of_va), what, va, r.value);
    };

    const u64 low = boundary - kLeaf + 0x1008;  // the last leaf below the boundary
    const u64 high = boundary + 0x10;           // the first above it
    {
      Check c("demand-map");
      served(c, low, "read served");
      const auto& st = mapper.stats();
      c.expect(st.faults == 1 && st.mapped == 1 && st.leaves[kLeafLevel] == 1, "one leaf mapped",
               st.faults, st.mapped);
      c.expect(mapper.pool_in_use() == kPool, "pool used up", mapper.pool_in_use());
      c.expect(!trap::read(low + 8).faulted && mapper.stats().faults == 1, "no second fault");
    }
    {
      Check c("demand-reset");
      served(c, high, "read served");
      c.expect(mapper.stats().resets == 1 && mapper.stats().faults == 2, "the pool was reset",
               mapper.stats().resets, mapper.stats().faults);
      // The reset removed the low leaf: touching it must fault again.
      served(c, low, "read served again");
      c.expect(mapper.stats().faults == 3 && mapper.stats().resets == 2,
               "low side faulted again after the reset", mapper.stats().faults,
               mapper.stats().resets);
      c.expect(mapper.stats().foreign_tables_unlinked == 0, "no foreign table unlinked");
    }
    {
      // Every leaf of the window in turn, then alternating sides: each
      // access is served, the pool never holds more than one fault's worth.
      Check c("demand-sweep");
      const u64 resets = mapper.stats().resets;
      for (u64 off = 0; off < kWindowSize; off += kLeaf)
        served(c, window.va.value() + off + (off / kLeaf % 64) * 8, "sweep");
      for (u64 k = 0; k < 16; ++k) {
        const u64 off = (k * 3 * kLeaf) % (kWindowSize / 2);
        served(c, (k % 2 == 0 ? boundary - kLeaf - off : boundary + off) + 0x40, "alternate");
      }
      c.expect(mapper.stats().resets >= resets + 16, "a reset per side change",
               mapper.stats().resets - resets);
      c.expect(mapper.pool_in_use() <= kPool, "pool bounded", mapper.pool_in_use());
      serial::write("info demand mapper: ");
      serial::dec(mapper.stats().faults);
      serial::write(" faults, ");
      serial::dec(mapper.stats().resets);
      serial::write(" resets, window ");
      serial::dec(kWindowSize / KiB);
      serial::write(" KiB in leaves of ");
      serial::dec(kLeaf / KiB);
      serial::write(" KiB, pool ");
      serial::dec(kPool);
      serial::write(" tables\n");
    }
    {
      Check c("demand-outside");
      const u64 outside = window.va.value() + kWindowSize + kLeaf;
      const u64 declined = mapper.stats().declined;
      const trap::Probe r = trap::read(outside);
      c.expect(r.data_abort(outside, trap::FaultKind::Translation, false),
               "fault outside the window reported");
      c.expect(mapper.stats().declined == declined + 1, "declined by the mapper");
    }
    trap::set_translation_fault_hook(nullptr, nullptr);
  }

 private:
  static bool hook(u64 far, void* context) {
    return static_cast<Mapper*>(context)->handle_fault(VirtAddr(far)).ok();
  }

  Space& s_;
  TlbCounts* counts_;
};

}  // namespace kernel
