// The demand mapper (issue 8, scenario 7): 100,000 random faults over a
// 64 GiB window served from a pool of 8 tables, resets included.
#include <benchmark/benchmark.h>

#include <chrono>
#include <vector>

#include "ptkit/early/demand_mapper.hpp"
#include "support.hpp"

namespace ptkit::bench {
namespace {

using Clock = std::chrono::steady_clock;

template <class Config>
void BM_DemandFaults64G(benchmark::State& state) {
  constexpr u64 kFaults = 100'000;
  constexpr u64 kWindow = 64 * GiB;
  const u64 va = u64{1} << 39;
  // Physical 2 MiB off a 1 GiB boundary: 2M leaves at most, so 64 GiB needs
  // 64 tables below the root and the pool of 8 resets (with pa 0 every
  // format maps the window with 64 1G leaves and the rest is spurious).
  constexpr u64 kPhys = 2 * MiB;
  std::vector<u64> addrs(kFaults);
  Rng rng(7);
  for (u64& a : addrs) a = va + (rng.next() % kWindow);
  TablePool pool(16);  // page 0: root, pages 8..15: the mapper's pool
  using Mapper =
      early::DemandMapper<typename Config::Format, OffsetAccess, PlainWriter, CountingSink, 8>;
  u64 resets = 0, mapped = 0;
  double total_s = 0;
  for (auto _ : state) {
    std::memset(pool.host(), 0, pool.page_size());  // an empty root
    auto created = Mapper::create(
        Config::make(), pool.access(), pool.base(), pool.base() + 8 * pool.page_size(),
        early::DemandWindow{VirtAddr(va), kWindow, PhysAddr(kPhys)}, kData);
    if (!created) {
      state.SkipWithError(to_string(created.error()));
      break;
    }
    auto& m = created.value();
    const auto t0 = Clock::now();
    for (u64 a : addrs) {
      auto r = m.handle_fault(VirtAddr(a));
      if (!r) state.SkipWithError(to_string(r.error()));
    }
    const auto t1 = Clock::now();
    const double secs = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(secs);
    total_s += secs;
    resets = m.stats().resets;
    mapped = m.stats().mapped;
  }
  state.counters["ns_per_fault"] = total_s / double(state.iterations()) / double(kFaults) * 1e9;
  state.counters["resets"] = double(resets);
  state.counters["mapped"] = double(mapped);
}

BENCHMARK_TEMPLATE(BM_DemandFaults64G, X86)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_DemandFaults64G, Arm4K)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_DemandFaults64G, Sv48)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ptkit::bench
