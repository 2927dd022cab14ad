// `ptkit dump --audit`: what is wrong or risky in tables read from a memory
// image. The walk (dump.hpp, WalkMode::Audit) finds what is wrong with the
// entries themselves; this file adds what the effective permissions of the
// runs show, and prints both.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "dump.hpp"

namespace ptkit::tool {

struct Finding {
  /// Stable names for scripts: "wx", "user-kernel", "writable-table" (a
  /// writable mapping of a page the walk found a table in), "exec-direct-map"
  /// (an executable run of the direct map), "reserved", "malformed" (a leaf
  /// whose walk faults though the walker decodes it), "outside-image",
  /// "loop", "shared-table".
  std::string kind;
  u64 va = 0;
  u64 size = 0;              // runs: the bytes concerned; entries: what the entry translates
  std::string text;          // what and why, after the virtual range
  const Run* run = nullptr;  // wx, user-kernel, malformed
  const TableProblem* entry = nullptr;  // the others
};

struct AuditOptions {
  /// Where the direct map puts physical address 0 (`--direct-map`): runs
  /// with va == direct_map + pa belong to it. None: not looked for.
  std::optional<u64> direct_map;
};

/// Every finding, by virtual address. `d` must outlive the findings.
std::vector<Finding> audit(const DumpResult& d, const Format& format,
                           const AuditOptions& options = {});

/// One line per finding, then a count ("3 findings" or "no findings").
std::string audit_text(const std::vector<Finding>& findings, const DumpResult& d,
                       const Format& format);
/// {format, half?, findings: [{kind, va, size, ...}], omitted}.
nlohmann::ordered_json audit_json(const std::vector<Finding>& findings, const DumpResult& d,
                                  const Format& format);

}  // namespace ptkit::tool
