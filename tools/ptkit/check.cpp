// `ptkit check TRACE`: the simulator's rule checker (sim/checker.hpp) on a
// trace file (docs/trace-format.md).
#include <fmt/format.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "ptkit/sim/checker.hpp"
#include "ptkit/sim/trace.hpp"

namespace ptkit::tool {

int cmd_check(const CheckArgs& a) {
  const auto bytes = read_file(a.trace);
  sim::Trace trace;
  sim::ParseError perr;
  if (!sim::parse_trace(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                        trace, perr))
    throw InputError(fmt::format("{}:{}: {}", a.trace, perr.line, perr.message));
  const sim::CheckResult r = sim::check(trace);
  if (!r.error.empty()) {
    throw InputError(r.error_line ? fmt::format("{}:{}: {}", a.trace, r.error_line, r.error)
                                  : fmt::format("{}: {}", a.trace, r.error));
  }
  if (a.json) {
    nlohmann::ordered_json j;
    j["trace"] = a.trace;
    j["format"] = trace.format;
    j["events"] = trace.events.size();
    nlohmann::ordered_json vs = nlohmann::ordered_json::array();
    for (const sim::Violation& v : r.violations) {
      vs.push_back({{"event", v.event},
                    {"line", v.line},
                    {"rule", v.rule},
                    {"section", v.section},
                    {"va", hex(v.va)},
                    {"level", v.level},
                    {"message", v.message}});
    }
    j["violations"] = vs;
    j["dropped"] = r.dropped;
    std::cout << j.dump(2) << "\n";
  } else {
    for (const sim::Violation& v : r.violations) std::cout << sim::describe(v) << "\n";
    if (r.dropped != 0) std::cout << fmt::format("... and {} more violations\n", r.dropped);
    std::cout << fmt::format("{}: {} events, {} violations\n", a.trace, trace.events.size(),
                             r.violations.size() + r.dropped);
  }
  return r.violations.empty() ? kExitOk : kExitFindings;
}

}  // namespace ptkit::tool
