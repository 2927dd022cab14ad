// Editing live tables (issue 8, scenarios 4 and 5): scattered single-page
// maps and unmaps, where the descent from the root dominates, and a protect
// of a large 4K-mapped range, where the in-place rewrite does.
#include <benchmark/benchmark.h>

#include <chrono>
#include <vector>

#include "support.hpp"

namespace ptkit::bench {
namespace {

using Clock = std::chrono::steady_clock;

template <class Config>
using EditSpace = AddressSpace<typename Config::Format, OffsetAccess,
                               FreeListAllocator<OffsetAccess>, PlainWriter, CountingSink>;

template <class Config>
EditSpace<Config> make_space(const TablePool& pool) {
  FreeListAllocator<OffsetAccess> alloc(pool.access(), pool.page_size());
  alloc.add_range(pool.base(), pool.pages());
  auto created = EditSpace<Config>::create(Config::make(), pool.access(), alloc);
  if (!created) std::abort();
  return std::move(created.value());
}

// Scenario 4: 100,000 random 4K maps in a 1 TiB window, then 100,000 unmaps
// of them; empty tables are freed during the unmaps, so the space ends with
// its root alone.
template <class Config>
void BM_Random4K_MapThenUnmap(benchmark::State& state) {
  constexpr u64 kOps = 100'000;
  constexpr u64 kWindow = u64{1} << 40;
  const u64 base = u64{1} << 40;  // 1 TiB: aligned, below every format's top
  std::vector<u64> pages;
  {
    Rng rng(42);
    std::vector<bool> taken(kWindow >> 12);  // distinct pages, no AlreadyMapped
    while (pages.size() < kOps) {
      const u64 p = rng.next() % (kWindow >> 12);
      if (!taken[p]) {
        taken[p] = true;
        pages.push_back(p);
      }
    }
  }
  TablePool pool(2 * kOps + 1024);
  double map_s = 0, unmap_s = 0;
  u64 tables_peak = 0, tables_end = 0, ranges = 0, invalidations = 0, full = 0;
  MapOptions mo;
  mo.leaf_sizes = 4 * KiB;
  for (auto _ : state) {
    auto s = make_space<Config>(pool);
    const u64 free0 = s.allocator().pages_free();
    const auto t0 = Clock::now();
    for (u64 p : pages) {
      auto r = s.map(VirtAddr(base + (p << 12)), PhysAddr(p << 12), 4 * KiB, kData, mo);
      if (!r) state.SkipWithError(to_string(r.error()));
    }
    const auto t1 = Clock::now();
    tables_peak = free0 - s.allocator().pages_free() + 1;
    const CountingSink before = s.sink();
    for (u64 p : pages) {
      auto r = s.unmap(VirtAddr(base + (p << 12)), 4 * KiB);
      if (!r) state.SkipWithError(to_string(r.error()));
    }
    const auto t2 = Clock::now();
    tables_end = free0 - s.allocator().pages_free() + 1;
    ranges = s.sink().ranges - before.ranges;
    invalidations = s.sink().invalidations - before.invalidations;
    full = s.sink().full_flushes - before.full_flushes;
    map_s += std::chrono::duration<double>(t1 - t0).count();
    unmap_s += std::chrono::duration<double>(t2 - t1).count();
    state.SetIterationTime(std::chrono::duration<double>(t2 - t0).count());
  }
  const double n = double(state.iterations()) * double(kOps);
  state.counters["ns_per_map"] = map_s / n * 1e9;
  state.counters["ns_per_unmap"] = unmap_s / n * 1e9;
  state.counters["tables_peak"] = double(tables_peak);
  state.counters["tables_after_unmap"] = double(tables_end);
  state.counters["unmap_ranges"] = double(ranges);
  state.counters["unmap_invalidations"] = double(invalidations);
  state.counters["unmap_full_flushes"] = double(full);
}

// Scenario 5: protect 1 GiB of 4K-mapped memory (set no-execute, clear write).
// Every leaf changes permissions only, so the engine rewrites each table's
// run of leaves in place by one and/or mask (protect's raw fast path) and
// owes one coalesced range; 262,144 invalidations are above
// AddressSpace::kDefaultFullFlushThreshold (32, as Linux's
// tlb_single_page_flush_ceiling; set_full_flush_threshold() changes it), so
// the TLB work is one full flush: ranges=0, full_flushes=1.
template <class Config>
void BM_Protect1G_4K(benchmark::State& state) {
  const u64 va = u64{1} << 39;
  TablePool pool(1024);
  MapOptions mo;
  mo.leaf_sizes = 4 * KiB;
  const Attrs rwx{Perm::R | Perm::W | Perm::X, MemType::WriteBack, true};
  u64 leaves = 0, ranges = 0, invalidations = 0, full = 0;
  for (auto _ : state) {
    auto s = make_space<Config>(pool);
    if (!s.map(VirtAddr(va), PhysAddr(va), GiB, rwx, mo)) state.SkipWithError("map failed");
    const CountingSink before = s.sink();
    const auto t0 = Clock::now();
    auto r = s.protect(VirtAddr(va), GiB, AttrChange{Perm::None, Perm::W | Perm::X});
    const auto t1 = Clock::now();
    if (!r) state.SkipWithError(to_string(r.error()));
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    leaves = r->stats.leaves_written;
    ranges = s.sink().ranges - before.ranges;
    invalidations = s.sink().invalidations - before.invalidations;
    full = s.sink().full_flushes - before.full_flushes;
  }
  state.counters["leaves"] = double(leaves);
  state.counters["ranges"] = double(ranges);
  state.counters["invalidations"] = double(invalidations);
  state.counters["full_flushes"] = double(full);
}

BENCHMARK_TEMPLATE(BM_Random4K_MapThenUnmap, X86)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_Random4K_MapThenUnmap, Arm4K)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_Random4K_MapThenUnmap, Sv48)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_Protect1G_4K, X86)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_Protect1G_4K, Arm4K)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_Protect1G_4K, Sv48)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ptkit::bench
