// The cost of proof (issue 8, scenario 8): the headline build recorded
// through a recording writer, sink and allocator into a trace, and that trace
// run past the simulator's rule checker.
#include <benchmark/benchmark.h>

#include <chrono>

#include "ptkit/sim/checker.hpp"
#include "ptkit/sim/trace.hpp"
#include "support.hpp"

namespace ptkit::bench {
namespace {

using Clock = std::chrono::steady_clock;
using Kind = sim::TraceEvent::Kind;

/// Turns the engine's writes, TLB calls and table allocations into a trace.
struct TraceRecorder {
  sim::Trace trace;
  void on_write(const WriteSite& site, u64 old_raw, u64 new_raw, bool) {
    trace.events.push_back(
        sim::TraceEvent::write(site.table.value(), site.index, site.level, new_raw, old_raw));
  }
  void publish() { trace.events.push_back(sim::TraceEvent::simple(Kind::Publish)); }
  void invalidate(const TlbRange& r) {
    trace.events.push_back(sim::TraceEvent::invalidate(r.first.value(), r.last.value(),
                                                       r.stride_shift, r.global, r.tables));
  }
  void invalidate_all(bool global) {
    trace.events.push_back(sim::TraceEvent::invalidate_all(global));
  }
  void complete() { trace.events.push_back(sim::TraceEvent::simple(Kind::Complete)); }
};

/// A bump allocator that records which pages become tables.
class RecordingBump {
 public:
  RecordingBump(BumpAllocator inner, TraceRecorder& rec) : inner_(inner), rec_(&rec) {}
  bool reserve(u64 n) { return inner_.reserve(n); }
  PhysAddr take() {
    const PhysAddr pa = inner_.take();
    rec_->trace.events.push_back(sim::TraceEvent::simple(Kind::Alloc, pa.value()));
    return pa;
  }
  void release(PhysAddr pa) {
    rec_->trace.events.push_back(sim::TraceEvent::simple(Kind::Free, pa.value()));
    inner_.release(pa);
  }
  void give_back_unused() { inner_.give_back_unused(); }

 private:
  BumpAllocator inner_;
  TraceRecorder* rec_;
};

template <class Config>
void BM_Map4G_4K_Checked(benchmark::State& state) {
  using Space = AddressSpace<typename Config::Format, OffsetAccess, RecordingBump,
                             RecordingWriter<TraceRecorder>, RecordingSink<TraceRecorder>>;
  const u64 va = u64{1} << 39;
  TablePool pool(4096);
  double map_s = 0, check_s = 0;
  u64 events = 0, violations = 0;
  for (auto _ : state) {
    TraceRecorder rec;
    rec.trace.format = Config::kName;
    auto created = Space::create(
        Config::make(), pool.access(), RecordingBump(BumpAllocator(pool.base(), pool.pages()), rec),
        RecordingWriter<TraceRecorder>(rec), RecordingSink<TraceRecorder>(rec));
    if (!created) std::abort();
    rec.trace.root = created->root().value();
    MapOptions mo;
    mo.leaf_sizes = 4 * KiB;
    const auto t0 = Clock::now();
    auto r = created->map(VirtAddr(va), PhysAddr(va), 4 * GiB, kData, mo);
    const auto t1 = Clock::now();
    if (!r) state.SkipWithError(to_string(r.error()));
    rec.trace.events.push_back(sim::TraceEvent::simple(Kind::Sync));
    const sim::CheckResult result = sim::check(rec.trace);
    const auto t2 = Clock::now();
    if (!result.error.empty()) state.SkipWithError(result.error.c_str());
    map_s += std::chrono::duration<double>(t1 - t0).count();
    check_s += std::chrono::duration<double>(t2 - t1).count();
    state.SetIterationTime(std::chrono::duration<double>(t2 - t0).count());
    events = rec.trace.events.size();
    violations = result.violations.size();
  }
  const double n = double(state.iterations());
  state.counters["ms_recorded_map"] = map_s / n * 1e3;
  state.counters["ms_check"] = check_s / n * 1e3;
  state.counters["events"] = double(events);
  state.counters["violations"] = double(violations);
}

BENCHMARK_TEMPLATE(BM_Map4G_4K_Checked, X86)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_Map4G_4K_Checked, Arm4K)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_Map4G_4K_Checked, Sv48)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ptkit::bench
