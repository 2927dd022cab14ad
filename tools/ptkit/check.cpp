// `ptkit check TRACE`: the simulator's rule checker (sim/checker.hpp) on a
// trace file (docs/trace-format.md).
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "ptkit/sim/checker.hpp"
#include "ptkit/sim/trace.hpp"

namespace ptkit::tool {

namespace {

/// Whether the first item of a trace (comments and blank lines aside) is
/// the 'ptkit-trace' header line.
bool has_header(std::string_view text) {
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    line = line.substr(0, line.find('#'));
    const std::size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string_view::npos) continue;
    line.remove_prefix(first);
    return line.substr(0, line.find_first_of(" \t\r")) == "ptkit-trace";
  }
  return false;
}

/// The header --format, --feature and --root stand for, checked as the
/// trace reader would check it, so that its errors are usage errors.
std::string header_for(const CheckArgs& a) {
  sim::TraceConfig config;
  std::string why;
  if (!sim::trace_config(*a.format, a.features, config, why))
    throw UsageError(
        fmt::format("--format {}: {}; `ptkit formats` lists the formats", *a.format, why));
  if (!a.root)
    throw UsageError("--root: a trace without a header needs the root table's address too");
  std::string features;
  for (const std::string& f : a.features) features += " " + f;
  return fmt::format("ptkit-trace {}\nformat {}{}\nroot {:#x}\n", sim::kTraceVersion, *a.format,
                     features, parse_option_number("--root", *a.root));
}

/// "file:line" for a line of the text parsed, which has `shift` made-up
/// header lines in front of the file's; just "file" for a line of those.
std::string place(const std::string& file, unsigned line, unsigned shift) {
  return line > shift ? fmt::format("{}:{}", file, line - shift) : file;
}

}  // namespace

int cmd_check(const CheckArgs& a) {
  const auto bytes = read_file(a.trace);
  std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  unsigned shift = 0;
  if (has_header(text)) {
    if (!a.features.empty() || a.root)
      throw UsageError(fmt::format(
          "--feature, --root: {} has a header, which gives them (only --format may repeat it)",
          a.trace));
  } else if (a.format) {
    const std::string header = header_for(a);
    shift = unsigned(std::count(header.begin(), header.end(), '\n'));
    text.insert(0, header);
  }
  sim::Trace trace;
  sim::ParseError perr;
  if (!sim::parse_trace(text, trace, perr)) {
    std::string hint;
    if (shift == 0 && !has_header(text))
      hint = " (a trace without a header needs --format and --root)";
    throw InputError(fmt::format("{}: {}{}", place(a.trace, perr.line, shift), perr.message, hint));
  }
  if (a.format && shift == 0 && trace.format != *a.format)
    throw UsageError(
        fmt::format("--format {}: {} says format {}", *a.format, a.trace, trace.format));
  sim::CheckResult r = sim::check(trace);
  if (!r.error.empty())
    throw InputError(fmt::format("{}: {}", place(a.trace, r.error_line, shift), r.error));
  for (sim::Violation& v : r.violations) v.line = v.line > shift ? v.line - shift : 0;
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
