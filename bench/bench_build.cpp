// Building tables from nothing (issue 8, scenarios 1-3): one map() call per
// iteration into an empty address space, timed from the call to its return
// (planning and reservation included), with the store-bandwidth baselines of
// the same table bytes measured in the same iterations.
#include <benchmark/benchmark.h>

#include <chrono>

#include "support.hpp"

namespace ptkit::bench {
namespace {

using Clock = std::chrono::steady_clock;

template <class Config>
using BuildSpace =
    AddressSpace<typename Config::Format, OffsetAccess, BumpAllocator, PlainWriter, CountingSink>;

struct Scenario {
  u64 size;
  LeafSizes leaves;
};

/// Maps `size` at 1 GiB-aligned va == pa with `leaves`; reports time per leaf,
/// tables used, TLB work, and how the time compares with writing the same
/// number of table bytes with memset and with a plain loop computing each
/// entry (the bandwidth floor).
template <class Config>
void build(benchmark::State& state, Scenario sc, bool fresh) {
  const u64 va = u64{1} << 39;  // 512 GiB: its own top-level entry, aligned for every leaf
  TablePool pool(4096 + (sc.size >> 21) + 16);
  u64 tables = 0, leaves = 0;
  CountingSink last_sink;
  double map_s = 0, memset_s = 0, loop_s = 0;
  for (auto _ : state) {
    if (fresh) pool.map_fresh(false);
    auto created = BuildSpace<Config>::create(Config::make(), pool.access(),
                                              BumpAllocator(pool.base(), pool.pages()));
    if (!created) state.SkipWithError("create failed");
    auto& s = created.value();
    MapOptions o;
    o.leaf_sizes = sc.leaves;
    const auto t0 = Clock::now();
    auto r = s.map(VirtAddr(va), PhysAddr(va), sc.size, kData, o);
    const auto t1 = Clock::now();
    if (!r) {
      state.SkipWithError(to_string(r.error()));
      break;
    }
    const double secs = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(secs);
    map_s += secs;
    tables = r->stats.tables_allocated + 1;  // and the root
    leaves = r->stats.leaves_written;
    last_sink = s.sink();

    // Baselines over the same bytes, in the same (warm) memory.
    const u64 bytes = tables * pool.page_size();
    const auto m0 = Clock::now();
    std::memset(pool.host(), 0, bytes);
    benchmark::ClobberMemory();
    const auto m1 = Clock::now();
    u64* entries = reinterpret_cast<u64*>(pool.host());  // NOLINT: raw table bytes
    const u64 n = bytes / sizeof(u64);
    for (u64 i = 0; i < n; ++i) entries[i] = (va + i * 4096) | 0x8000'0000'0000'0103;
    benchmark::ClobberMemory();
    const auto m2 = Clock::now();
    memset_s += std::chrono::duration<double>(m1 - m0).count();
    loop_s += std::chrono::duration<double>(m2 - m1).count();
  }
  const double iters = double(state.iterations());
  state.counters["ns_per_leaf"] = map_s / iters / double(leaves) * 1e9;
  state.counters["tables"] = double(tables);
  state.counters["leaves"] = double(leaves);
  state.counters["invalidations"] = double(last_sink.invalidations);
  state.counters["full_flushes"] = double(last_sink.full_flushes);
  state.counters["vs_memset"] = map_s / memset_s;
  state.counters["vs_entry_loop"] = map_s / loop_s;
}

constexpr u64 KiB4 = 4 * KiB, MiB2 = 2 * MiB, GiB1 = GiB;

// Scenario 1: identity-map 512 GiB with 1G leaves.
template <class Config>
void BM_Map512G_1G(benchmark::State& state) {
  build<Config>(state, {512 * GiB, KiB4 | MiB2 | GiB1}, false);
}
// Scenario 2: 64 GiB with 2M leaves (1G not allowed).
template <class Config>
void BM_Map64G_2M(benchmark::State& state) {
  build<Config>(state, {64 * GiB, KiB4 | MiB2}, false);
}
// Scenario 3, the headline: 4 GiB with 4K leaves only (1,048,576 leaves).
template <class Config>
void BM_Map4G_4K(benchmark::State& state) {
  build<Config>(state, {4 * GiB, KiB4}, false);
}
// Scenario 3 into table memory the process has never touched (page faults
// included): what a first build after boot pays.
template <class Config>
void BM_Map4G_4K_FreshPool(benchmark::State& state) {
  build<Config>(state, {4 * GiB, KiB4}, true);
}

#define PTKIT_BENCH_FORMATS(fn)                                                  \
  BENCHMARK_TEMPLATE(fn, X86)->UseManualTime()->Unit(benchmark::kMicrosecond);   \
  BENCHMARK_TEMPLATE(fn, Arm4K)->UseManualTime()->Unit(benchmark::kMicrosecond); \
  BENCHMARK_TEMPLATE(fn, Sv48)->UseManualTime()->Unit(benchmark::kMicrosecond)

PTKIT_BENCH_FORMATS(BM_Map512G_1G);
PTKIT_BENCH_FORMATS(BM_Map64G_2M);
PTKIT_BENCH_FORMATS(BM_Map4G_4K);
PTKIT_BENCH_FORMATS(BM_Map4G_4K_FreshPool);

}  // namespace
}  // namespace ptkit::bench
