// Reading tables back (issue 8, scenario 6): walk the 4 GiB 4K mapping of the
// headline scenario and coalesce its leaves into ranges, as `ptkit dump` does:
// with walk_ranges() (the scenario), and with walk() and a caller-side
// coalescer (for comparison).
#include <benchmark/benchmark.h>

#include <chrono>

#include "support.hpp"

namespace ptkit::bench {
namespace {

using Clock = std::chrono::steady_clock;

/// Maximal runs of leaves with contiguous output addresses and equal attributes.
struct Coalescer {
  u64 ranges = 0;
  u64 leaves = 0;
  u64 next_va = 0, next_pa = 0;
  Attrs attrs{};
  bool open = false;
  bool operator()(const Mapping& m) {
    ++leaves;
    if (!open || m.va.value() != next_va || m.pa.value() != next_pa || !(m.attrs == attrs)) {
      ++ranges;
      open = true;
      attrs = m.attrs;
    }
    next_va = m.va.value() + m.size;
    next_pa = m.pa.value() + m.size;
    return true;
  }
};

template <class Config>
using WalkSpace = AddressSpace<typename Config::Format, OffsetAccess, BumpAllocator>;

/// The 4 GiB 4K mapping of scenario 3, built once per benchmark.
template <class Config>
WalkSpace<Config> mapped_4g(const TablePool& pool, u64 va) {
  auto created = WalkSpace<Config>::create(Config::make(), pool.access(),
                                           BumpAllocator(pool.base(), pool.pages()));
  if (!created) std::abort();
  MapOptions mo;
  mo.leaf_sizes = 4 * KiB;
  if (!created->map(VirtAddr(va), PhysAddr(va), 4 * GiB, kData, mo)) std::abort();
  return std::move(created.value());
}

/// The floor of a walk, on the same warm memory: a plain loop reading every
/// entry of the `pages` table pages from the pool's base (where the bump
/// allocator put them) and counting where an entry is not the one before
/// plus a page, the least a coalescing walk must do.
u64 breaks_in_tables(const TablePool& pool, u64 pages) {
  const u64* e = reinterpret_cast<const u64*>(pool.host());  // NOLINT: raw table bytes
  const u64 n = pages * pool.page_size() / sizeof(u64);
  u64 breaks = 0;
  for (u64 i = 1; i < n; ++i) breaks += (e[i] - e[i - 1]) != 4096 ? 1 : 0;
  return breaks;
}

// Scenario 6: walk_ranges(), which coalesces raw leaves and calls back once
// per range. vs_read_loop: the time over breaks_in_tables() timed in the
// same run.
template <class Config>
void BM_Walk4G_4K(benchmark::State& state) {
  const u64 va = u64{1} << 39;
  TablePool pool(4096);
  auto space = mapped_4g<Config>(pool, va);
  const u64 table_pages = pool.pages() - space.allocator().pages_free();
  u64 ranges = 0, bytes = 0;
  double total_s = 0;
  double floor_s = 0;
  for (auto _ : state) {
    const auto f0 = Clock::now();
    benchmark::DoNotOptimize(breaks_in_tables(pool, table_pages));
    floor_s += std::chrono::duration<double>(Clock::now() - f0).count();
    u64 n = 0, b = 0;
    const auto t0 = Clock::now();
    auto r = space.walk_ranges(VirtAddr(va), 4 * GiB, [&](const MappedRange& m) {
      ++n;
      b += m.size;
      return true;
    });
    const auto t1 = Clock::now();
    if (!r) state.SkipWithError(to_string(r.error()));
    const double secs = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(secs);
    total_s += secs;
    ranges = n;
    bytes = b;
  }
  const double leaves = double(bytes >> 12);
  state.counters["leaves"] = leaves;
  state.counters["ranges"] = double(ranges);
  state.counters["ns_per_leaf"] = total_s / double(state.iterations()) / leaves * 1e9;
  state.counters["vs_read_loop"] = total_s / floor_s;
}

// The same result through walk(), one call per leaf, coalesced by the caller
// (how scenario 6 was measured first; kept for comparison).
template <class Config>
void BM_Walk4G_4K_PerLeaf(benchmark::State& state) {
  const u64 va = u64{1} << 39;
  TablePool pool(4096);
  auto space = mapped_4g<Config>(pool, va);
  Coalescer last;
  double total_s = 0;
  for (auto _ : state) {
    Coalescer c;
    const auto t0 = Clock::now();
    auto r = space.walk(VirtAddr(va), 4 * GiB, c);
    const auto t1 = Clock::now();
    if (!r) state.SkipWithError(to_string(r.error()));
    const double secs = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(secs);
    total_s += secs;
    last = c;
  }
  state.counters["leaves"] = double(last.leaves);
  state.counters["ranges"] = double(last.ranges);
  state.counters["ns_per_leaf"] = total_s / double(state.iterations()) / double(last.leaves) * 1e9;
}

BENCHMARK_TEMPLATE(BM_Walk4G_4K, X86)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_Walk4G_4K, Arm4K)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_Walk4G_4K, Sv48)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_Walk4G_4K_PerLeaf, X86)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_Walk4G_4K_PerLeaf, Arm4K)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_Walk4G_4K_PerLeaf, Sv48)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ptkit::bench
