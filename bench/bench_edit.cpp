// Editing live tables (issue 8, scenarios 4 and 5): scattered single-page
// maps and unmaps, where the descent from the root dominates, and a protect
// of a large 4K-mapped range, where the in-place rewrite does.
#include <benchmark/benchmark.h>

#include <chrono>
#include <optional>
#include <vector>

#include "support.hpp"

namespace ptkit::bench {
namespace {

using Clock = std::chrono::steady_clock;

template <class Config>
using EditSpace = AddressSpace<typename Config::Format, OffsetAccess,
                               FreeListAllocator<OffsetAccess>, PlainWriter, CountingSink>;

/// A space over the whole pool. With `counts` (storage for one u16 per pool
/// page), the allocator keeps entry counts for the engine.
template <class Config>
EditSpace<Config> make_space(const TablePool& pool, PageContents contents = PageContents::Unknown,
                             u16* counts = nullptr) {
  FreeListAllocator<OffsetAccess> alloc(pool.access(), pool.page_size());
  alloc.add_range(pool.base(), pool.pages(), contents);
  if (counts != nullptr)
    alloc.keep_entry_counts(EntryCounts(pool.base(), pool.pages(), counts, pool.page_size()));
  auto created = EditSpace<Config>::create(Config::make(), pool.access(), alloc);
  if (!created) std::abort();
  return std::move(created.value());
}

/// Scenario 4's memory work without any page-table logic, in a pool like the
/// engine's, for the same pages in the same order: per map, read the entry of
/// the 2 MiB level; if it is empty, take the next pool page as leaf table
/// (clearing it unless the pool is known zero) and link it; store the leaf.
/// Per unmap, clear the leaf and unlink the table once empty, known either by
/// reading the table whole (what the engine does) or from a count of valid
/// entries kept beside the tables (what it would cost to keep one).
struct MemoryFloor {
  double map_s = 0, unmap_scan_s = 0, unmap_counted_s = 0;
};

MemoryFloor memory_floor(const std::vector<u64>& pages, TablePool& pool, bool zeroed) {
  constexpr u64 kLinks = u64{1} << 19;  // 1 TiB of 2 MiB entries: 4 MiB, as the engine's tables
  constexpr u64 kEntries = kTablePageSize / sizeof(u64);
  u64* mem = reinterpret_cast<u64*>(pool.host());  // NOLINT: raw table bytes
  u64* links = mem + (pool.pages() - kLinks / kEntries) * kEntries;
  MemoryFloor f;
  const auto map_all = [&] {
    std::memset(links, 0, kLinks * sizeof(u64));
    u64 next = 0;
    const auto t0 = Clock::now();
    for (u64 p : pages) {
      u64 t = links[p >> 9];
      if (t == 0) {
        t = ++next;
        if (!zeroed) std::memset(mem + t * kEntries, 0, kTablePageSize);
        links[p >> 9] = t;
      }
      mem[t * kEntries + (p & 511)] = (p << 12) | 3;
    }
    benchmark::ClobberMemory();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  f.map_s = map_all();
  {
    const auto t0 = Clock::now();
    for (u64 p : pages) {
      const u64 t = links[p >> 9];
      u64* table = mem + t * kEntries;
      table[p & 511] = 0;
      u64 any = 0;
      for (u64 k = 0; k < kEntries; ++k) any |= table[k];
      if (any == 0) links[p >> 9] = 0;
    }
    benchmark::ClobberMemory();
    f.unmap_scan_s = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  if (zeroed) pool.map_fresh();
  map_all();
  {
    std::vector<u16> counts(pages.size() + 1);
    for (u64 p : pages) ++counts[links[p >> 9]];
    const auto t0 = Clock::now();
    for (u64 p : pages) {
      const u64 t = links[p >> 9];
      mem[t * kEntries + (p & 511)] = 0;
      if (--counts[t] == 0) links[p >> 9] = 0;
    }
    benchmark::ClobberMemory();
    f.unmap_counted_s = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return f;
}

// Scenario 4: 100,000 random 4K maps in a 1 TiB window, then 100,000 unmaps
// of them; empty tables are freed during the unmaps, so the space ends with
// its root alone. Nine in ten maps need a leaf table of their own. With
// `fresh`, every iteration gets a new space over new pre-faulted pages from
// the OS, which the allocator is told are zero, so a new table is not cleared
// (what a kernel's first use of a zeroed pool costs). Otherwise ("warm") one
// space and allocator live through every iteration, as in a running kernel:
// the pool starts with unknown contents and one untimed round, and each
// iteration reuses the tables the last one's unmaps freed. With `counted`,
// the allocator keeps entry counts, so an unmap knows its leaf table is empty
// without reading it, and the tables it empties entry by entry come back
// known zero (not cleared again when reused); without, the table is read
// whole and cleared on reuse. With `batched`, the pages go through
// map_each()/unmap_each(), which read ahead so that the misses of successive
// pages overlap; otherwise each page is its own map()/unmap() call and waits
// for its misses in turn. The memory floor is measured in a pool of its own.
struct Random4K {
  bool fresh = false;
  bool counted = true;
  bool batched = false;
};

template <class Config>
void random_map_then_unmap(benchmark::State& state, Random4K how) {
  const bool fresh = how.fresh, counted = how.counted;
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
  std::vector<PageMap> items;
  std::vector<VirtAddr> vas;
  for (u64 p : pages) {
    items.push_back(PageMap{VirtAddr(base + (p << 12)), PhysAddr(p << 12)});
    vas.push_back(VirtAddr(base + (p << 12)));
  }
  TablePool pool(2 * kOps + 1024);
  TablePool floor_pool(pool.pages());
  std::vector<u16> counts(counted ? pool.pages() : 0);
  double map_s = 0, unmap_s = 0;
  MemoryFloor floor;
  u64 tables_peak = 0, tables_end = 0, ranges = 0, invalidations = 0, full = 0;
  MapOptions mo;
  mo.leaf_sizes = 4 * KiB;
  // One round: every map, then every unmap; the seconds each took.
  const auto round = [&](EditSpace<Config>& s) {
    const u64 free0 = s.allocator().pages_free();
    const auto t0 = Clock::now();
    if (how.batched) {
      const BatchOutcome b = s.map_each(items.data(), items.size(), 4 * KiB, kData, mo);
      if (b.failed) state.SkipWithError(to_string(b.failure.error));
    } else {
      for (const PageMap& m : items) {
        auto r = s.map(m.va, m.pa, 4 * KiB, kData, mo);
        if (!r) state.SkipWithError(to_string(r.error()));
      }
    }
    const auto t1 = Clock::now();
    tables_peak = free0 - s.allocator().pages_free() + 1;
    const CountingSink before = s.sink();
    if (how.batched) {
      const BatchOutcome b = s.unmap_each(vas.data(), vas.size(), 4 * KiB);
      if (b.failed) state.SkipWithError(to_string(b.failure.error));
    } else {
      for (const VirtAddr va : vas) {
        auto r = s.unmap(va, 4 * KiB);
        if (!r) state.SkipWithError(to_string(r.error()));
      }
    }
    const auto t2 = Clock::now();
    tables_end = free0 - s.allocator().pages_free() + 1;
    ranges = s.sink().ranges - before.ranges;
    invalidations = s.sink().invalidations - before.invalidations;
    full = s.sink().full_flushes - before.full_flushes;
    return std::pair{std::chrono::duration<double>(t1 - t0).count(),
                     std::chrono::duration<double>(t2 - t1).count()};
  };
  std::optional<EditSpace<Config>> warm;
  if (!fresh) {
    warm.emplace(
        make_space<Config>(pool, PageContents::Unknown, counted ? counts.data() : nullptr));
    (void)round(*warm);
  }
  for (auto _ : state) {
    std::optional<EditSpace<Config>> new_space;
    if (fresh) {
      pool.map_fresh();
      new_space.emplace(
          make_space<Config>(pool, PageContents::Zeroed, counted ? counts.data() : nullptr));
    }
    const auto [map_t, unmap_t] = round(fresh ? *new_space : *warm);
    map_s += map_t;
    unmap_s += unmap_t;
    state.SetIterationTime(map_t + unmap_t);
    if (fresh) floor_pool.map_fresh();
    const MemoryFloor f = memory_floor(pages, floor_pool, fresh || counted);
    floor.map_s += f.map_s;
    floor.unmap_scan_s += f.unmap_scan_s;
    floor.unmap_counted_s += f.unmap_counted_s;
  }
  const double n = double(state.iterations()) * double(kOps);
  state.counters["ns_per_map"] = map_s / n * 1e9;
  state.counters["ns_per_unmap"] = unmap_s / n * 1e9;
  state.counters["floor_ns_per_map"] = floor.map_s / n * 1e9;
  state.counters["floor_ns_per_unmap_scan"] = floor.unmap_scan_s / n * 1e9;
  state.counters["floor_ns_per_unmap_counted"] = floor.unmap_counted_s / n * 1e9;
  state.counters["map_vs_floor"] = map_s / floor.map_s;
  state.counters["unmap_vs_floor"] =
      unmap_s / (counted ? floor.unmap_counted_s : floor.unmap_scan_s);
  state.counters["tables_peak"] = double(tables_peak);
  state.counters["tables_after_unmap"] = double(tables_end);
  state.counters["unmap_ranges"] = double(ranges);
  state.counters["unmap_invalidations"] = double(invalidations);
  state.counters["unmap_full_flushes"] = double(full);
}

// One map()/unmap() call per page, warm pool, entry counts kept.
template <class Config>
void BM_Random4K_MapThenUnmap(benchmark::State& state) {
  random_map_then_unmap<Config>(state, {});
}
// The same pages as one map_each() and one unmap_each() batch.
template <class Config>
void BM_Random4K_MapThenUnmap_Batch(benchmark::State& state) {
  random_map_then_unmap<Config>(state, {.batched = true});
}
// Batches into a fresh pool the allocator knows is zero.
template <class Config>
void BM_Random4K_MapThenUnmap_BatchFreshPool(benchmark::State& state) {
  random_map_then_unmap<Config>(state, {.fresh = true, .batched = true});
}
// What the two options buy, on x86-64: calls into a fresh zeroed pool, and
// batches without entry counts (each unmap reads its leaf table whole).
template <class Config>
void BM_Random4K_MapThenUnmap_FreshPool(benchmark::State& state) {
  random_map_then_unmap<Config>(state, {.fresh = true});
}
template <class Config>
void BM_Random4K_MapThenUnmap_BatchNoCounts(benchmark::State& state) {
  random_map_then_unmap<Config>(state, {.counted = false, .batched = true});
}

// Scenario 5: protect 1 GiB of 4K-mapped memory (set no-execute, clear write).
// Every leaf changes permissions only, so the engine rewrites each table's
// run of leaves in place by one and/or mask (protect's raw fast path) and
// owes one coalesced range; 262,144 invalidations are above
// AddressSpace::kDefaultFullFlushThreshold (32, as Linux's
// tlb_single_page_flush_ceiling; set_full_flush_threshold() changes it), so
// the TLB work is one full flush: ranges=0, full_flushes=1.
// The floor, timed in the same run over the same warm table bytes: a plain
// loop applying one and/or mask to every entry of every table the map built
// (vs_entry_loop is the ratio to it).
template <class Config>
void BM_Protect1G_4K(benchmark::State& state) {
  const u64 va = u64{1} << 39;
  TablePool pool(1024);
  MapOptions mo;
  mo.leaf_sizes = 4 * KiB;
  const Attrs rwx{Perm::R | Perm::W | Perm::X, MemType::WriteBack, true};
  u64 leaves = 0, ranges = 0, invalidations = 0, full = 0;
  double protect_s = 0;
  double loop_s = 0;
  for (auto _ : state) {
    auto s = make_space<Config>(pool);
    auto mapped = s.map(VirtAddr(va), PhysAddr(va), GiB, rwx, mo);
    if (!mapped) {
      state.SkipWithError(to_string(mapped.error()));
      break;
    }
    const CountingSink before = s.sink();
    const auto t0 = Clock::now();
    auto r = s.protect(VirtAddr(va), GiB, AttrChange{Perm::None, Perm::W | Perm::X});
    const auto t1 = Clock::now();
    if (!r) {
      state.SkipWithError(to_string(r.error()));
      break;
    }
    const double secs = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(secs);
    protect_s += secs;
    leaves = r->stats.leaves_written;
    ranges = s.sink().ranges - before.ranges;
    invalidations = s.sink().invalidations - before.invalidations;
    full = s.sink().full_flushes - before.full_flushes;

    // The floor. The allocator hands out the pool's pages from its base up,
    // so the tables are its first pages; the space is not used after this.
    const u64 n = (mapped->stats.tables_allocated + 1) * pool.page_size() / sizeof(u64);
    u64* entries = reinterpret_cast<u64*>(pool.host());  // NOLINT: raw table bytes
    const auto l0 = Clock::now();
    for (u64 i = 0; i < n; ++i) entries[i] = (entries[i] & ~u64{2}) | (u64{1} << 63);
    benchmark::ClobberMemory();
    loop_s += std::chrono::duration<double>(Clock::now() - l0).count();
  }
  state.counters["leaves"] = double(leaves);
  state.counters["ns_per_leaf"] = protect_s / double(state.iterations()) / double(leaves) * 1e9;
  state.counters["vs_entry_loop"] = protect_s / loop_s;
  state.counters["ranges"] = double(ranges);
  state.counters["invalidations"] = double(invalidations);
  state.counters["full_flushes"] = double(full);
}

#define PTKIT_BENCH_MS(fn, config) \
  BENCHMARK_TEMPLATE(fn, config)->UseManualTime()->Unit(benchmark::kMillisecond)
PTKIT_BENCH_MS(BM_Random4K_MapThenUnmap, X86);
PTKIT_BENCH_MS(BM_Random4K_MapThenUnmap, Arm4K);
PTKIT_BENCH_MS(BM_Random4K_MapThenUnmap, Sv48);
PTKIT_BENCH_MS(BM_Random4K_MapThenUnmap_Batch, X86);
PTKIT_BENCH_MS(BM_Random4K_MapThenUnmap_Batch, Arm4K);
PTKIT_BENCH_MS(BM_Random4K_MapThenUnmap_Batch, Sv48);
PTKIT_BENCH_MS(BM_Random4K_MapThenUnmap_BatchFreshPool, X86);
PTKIT_BENCH_MS(BM_Random4K_MapThenUnmap_BatchFreshPool, Arm4K);
PTKIT_BENCH_MS(BM_Random4K_MapThenUnmap_BatchFreshPool, Sv48);
PTKIT_BENCH_MS(BM_Random4K_MapThenUnmap_FreshPool, X86);
PTKIT_BENCH_MS(BM_Random4K_MapThenUnmap_BatchNoCounts, X86);
BENCHMARK_TEMPLATE(BM_Protect1G_4K, X86)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_Protect1G_4K, Arm4K)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_Protect1G_4K, Sv48)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ptkit::bench
