// The rule checker: replays a trace (trace.hpp) against a model of the MMU
// (the reference walkers of mmu.hpp) and of its TLB, and reports every
// architectural rule the sequence breaks, with the event, the address, the
// level, the rule and the manual's section.
//
// The TLB model: at any moment the TLB may hold any translation, and the walk
// caches any table pointer, that the walker could see at some moment since the
// last invalidation covering it completed. A write that removes, restricts or
// changes a translation therefore leaves the old one "pending" until an
// invalidation that reaches it (after the write was published) has completed.
// docs/trace-format.md states each rule and the choices made.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "ptkit/sim/trace.hpp"

namespace ptkit::sim {

struct Violation {
  std::size_t event = 0;  // index into Trace::events; events.size() for the end of the trace
  unsigned line = 0;      // the event's source line, 0 if it has none
  u64 va = 0;             // first virtual address concerned
  int level = -1;         // table level of the entry concerned, -1 if none
  std::string rule;       // rule id, e.g. "arm-bbm"
  std::string message;
  std::string section;  // the manual's section that states the rule
};

/// One line of text: "line 12 (event 9): arm-bbm at va 0x... level 1: ... [Arm ARM D8.16.1]".
std::string describe(const Violation& v);

struct RuleInfo {
  const char* id;
  const char* section;
  const char* summary;
};
/// Every rule the checker knows, in a fixed order.
const std::vector<RuleInfo>& checker_rules();

struct CheckOptions {
  /// Bound on simulated memory: distinct 64 KiB chunks the trace may write.
  u64 max_memory_chunks = 16384;  // 1 GiB
  /// Bound on work (walk steps, entries scanned); beyond it the check stops
  /// with an error instead of running without end on a hostile trace.
  u64 max_work = u64{1} << 28;
  /// Violations kept; the rest are counted in CheckResult::dropped.
  std::size_t max_violations = 10000;
};

struct CheckResult {
  std::vector<Violation> violations;
  std::size_t dropped = 0;
  /// Set when the trace could not be checked to its end (bad format name,
  /// memory or work bound exceeded); `error_line` names where.
  std::string error;
  unsigned error_line = 0;

  [[nodiscard]] bool ok() const { return violations.empty() && error.empty(); }
  /// Whether a violation of `rule` was reported.
  [[nodiscard]] bool has(const std::string& rule) const;
  /// The rule ids reported, each once, in the order first reported.
  [[nodiscard]] std::vector<std::string> rules() const;
};

/// Checks a trace with the walker of its format's architecture.
CheckResult check(const Trace& trace, const CheckOptions& options = {});
/// The same with a given walker (for walkers under test).
CheckResult check(const Trace& trace, const ArchOps& ops, const CheckOptions& options = {});

}  // namespace ptkit::sim
