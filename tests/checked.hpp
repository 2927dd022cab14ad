// Runs the core's updates past the simulator's rule checker: the Fixture's
// recorder becomes a trace (docs/trace-format.md) that starts from the tables
// as they are, and check() replays it against the reference walker and TLB
// model of the config's architecture.
#pragma once

#include "ptkit/sim/checker.hpp"
#include "support.hpp"

namespace ptkit::test {

template <class Config>
class CheckedTrace {
 public:
  explicit CheckedTrace(Fixture<Config>& fx) : fx_(fx) {
    if (enabled()) {
      fx_.recorder.tracer = [this](const Event& e) { append(e); };
      restart();
    }
  }
  ~CheckedTrace() { fx_.recorder.tracer = nullptr; }
  CheckedTrace(const CheckedTrace&) = delete;
  CheckedTrace& operator=(const CheckedTrace&) = delete;

  /// Whether the simulator models this config's MMU.
  [[nodiscard]] static bool enabled() { return !Config::trace_format().empty(); }

  /// An operation returned with its TLB work done: the TLB must be coherent.
  void sync() {
    if (enabled()) trace_.events.push_back(sim::TraceEvent::simple(sim::TraceEvent::Kind::Sync));
  }

  /// Checks the events since the last restart, then starts a new trace from
  /// the tables as they are now.
  sim::CheckResult check_and_restart() {
    sim::CheckResult r;
    if (!enabled()) return r;
    r = sim::check(trace_);
    checked_events_ += trace_.events.size();
    restart();
    return r;
  }

  [[nodiscard]] u64 checked_events() const { return checked_events_; }

 private:
  void restart() {
    // Keeps the events' capacity: traces of the large-table formats run to
    // millions of events, and growing them again each time dominated.
    std::vector<sim::TraceEvent> events = std::move(trace_.events);
    events.clear();
    trace_ = sim::Trace{};
    trace_.events = std::move(events);
    trace_.format = Config::trace_format();
    trace_.features = Config::trace_features();
    trace_.root = fx_.s().root().value();
    // The initial memory image: every non-zero entry of every reachable table.
    for (const auto& [pa, entries] : fx_.snapshot())
      for (u64 i = 0; i < entries.size(); ++i)
        if (entries[i] != 0)
          trace_.events.push_back(
              sim::TraceEvent::simple(sim::TraceEvent::Kind::Mem, pa + 8 * i, entries[i]));
  }

  void append(const Event& e) {
    using K = sim::TraceEvent::Kind;
    switch (e.kind) {
      case Event::Write:
        trace_.events.push_back(sim::TraceEvent::write(e.site.table.value(), e.site.index,
                                                       e.site.level, e.new_raw, e.old_raw));
        break;
      case Event::Publish: trace_.events.push_back(sim::TraceEvent::simple(K::Publish)); break;
      case Event::Complete: trace_.events.push_back(sim::TraceEvent::simple(K::Complete)); break;
      case Event::Invalidate:
        trace_.events.push_back(
            sim::TraceEvent::invalidate(e.range.first.value(), e.range.last.value(),
                                        e.range.stride_shift, e.range.global, e.range.tables));
        break;
      case Event::InvalidateAll:
        trace_.events.push_back(sim::TraceEvent::invalidate_all(e.global));
        break;
      case Event::Alloc:
        trace_.events.push_back(sim::TraceEvent::simple(K::Alloc, e.site.table.value()));
        break;
      case Event::Free:
        trace_.events.push_back(sim::TraceEvent::simple(K::Free, e.site.table.value()));
        break;
    }
  }

  Fixture<Config>& fx_;
  sim::Trace trace_;
  u64 checked_events_ = 0;
};

/// The first few violations, one per line, for a failure message.
inline std::string first_violations(const sim::CheckResult& r, std::size_t n = 5) {
  std::string out = r.error.empty() ? "" : "error: " + r.error + "\n";
  for (std::size_t i = 0; i < r.violations.size() && i < n; ++i)
    out += sim::describe(r.violations[i]) + "\n";
  return out;
}

}  // namespace ptkit::test
