// Reading tables back (issue 8, scenario 6): walk the 4 GiB 4K mapping of the
// headline scenario and coalesce its leaves into ranges, as `ptkit dump` does.
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
void BM_Walk4G_4K(benchmark::State& state) {
  using Space = AddressSpace<typename Config::Format, OffsetAccess, BumpAllocator>;
  const u64 va = u64{1} << 39;
  TablePool pool(4096);
  auto created =
      Space::create(Config::make(), pool.access(), BumpAllocator(pool.base(), pool.pages()));
  if (!created) std::abort();
  MapOptions mo;
  mo.leaf_sizes = 4 * KiB;
  if (!created->map(VirtAddr(va), PhysAddr(va), 4 * GiB, kData, mo)) std::abort();
  Coalescer last;
  double total_s = 0;
  for (auto _ : state) {
    Coalescer c;
    const auto t0 = Clock::now();
    auto r = created->walk(VirtAddr(va), 4 * GiB, c);
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

}  // namespace
}  // namespace ptkit::bench
