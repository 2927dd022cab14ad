#include "audit.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace ptkit::tool {

namespace {

const char* kind_name(TableProblem::Kind k) {
  switch (k) {
    case TableProblem::Kind::Reserved: return "reserved";
    case TableProblem::Kind::Outside: return "outside-image";
    case TableProblem::Kind::Loop: return "loop";
    case TableProblem::Kind::Shared: return "shared-table";
  }
  return "?";
}

bool any(const bool (&b)[2]) { return b[0] || b[1]; }

/// Whether `r` lies in the half of the address space the kernel keeps to
/// itself: the upper half of x86-64 and RISC-V, AArch64's TTBR1 region
/// (a TTBR0 root has no kernel half).
bool in_kernel_half(const Run& r, const Format& f) {
  if (f.is_aarch64()) return f.upper();
  return r.va >= f.upper_start();
}

std::string run_text(const Run& r, const Format& f, const std::string& why) {
  return fmt::format("pa {}  kern {} user {}  {}: {}", hex(r.pa),
                     perm_string(r.read[0], r.write[0], r.exec[0]),
                     perm_string(r.read[1], r.write[1], r.exec[1]), f.level_name(r.level), why);
}

/// The first table page inside [pa, pa + size) and how many there are;
/// `tables` sorted by pa.
std::pair<const TablePage*, u64> tables_in(const std::vector<TablePage>& tables, u64 pa, u64 size) {
  auto first = std::lower_bound(tables.begin(), tables.end(), pa,
                                [](const TablePage& t, u64 a) { return t.pa + t.bytes <= a; });
  auto last = std::lower_bound(first, tables.end(), pa + size,
                               [](const TablePage& t, u64 end) { return t.pa < end; });
  if (first == last) return {nullptr, 0};
  return {&*first, u64(last - first)};
}

}  // namespace

std::vector<Finding> audit(const DumpResult& d, const Format& format, const AuditOptions& options) {
  std::vector<TablePage> tables = d.tables;
  std::sort(tables.begin(), tables.end(),
            [](const TablePage& a, const TablePage& b) { return a.pa < b.pa; });
  std::vector<Finding> out;
  for (const Run& r : d.runs) {
    // A leaf the walker decodes but whose walk faults (an Arm output address
    // beyond the output size, a misaligned RISC-V superpage).
    if (r.leaf_bits.rfind("fault: ", 0) == 0)
      out.push_back({"malformed", r.va, r.size, run_text(r, format, r.leaf_bits), &r, nullptr});
    // Writable by someone and executable by someone: code can be changed.
    if (any(r.write) && any(r.exec)) {
      out.push_back(
          {"wx", r.va, r.size, run_text(r, format, "writable and executable"), &r, nullptr});
    }
    // Whoever can write a table can map anything (Xen PV refuses exactly
    // this). The direct map is how a kernel edits its tables: not a finding.
    const bool direct = options.direct_map && r.va - r.pa == *options.direct_map;
    if (any(r.write) && !direct) {
      const auto [table, count] = tables_in(tables, r.pa, r.size);
      if (count != 0) {
        out.push_back({"writable-table", r.va, r.size,
                       run_text(r, format,
                                fmt::format("writable mapping of {} page table{} (first at pa {})",
                                            count, count == 1 ? "" : "s", hex(table->pa))),
                       &r, nullptr});
      }
    }
    // The direct map covers all of RAM: executable, it makes any data code.
    if (direct && any(r.exec))
      out.push_back({"exec-direct-map", r.va, r.size,
                     run_text(r, format, "executable mapping in the direct map"), &r, nullptr});
    if (in_kernel_half(r, format) && (r.read[1] || r.write[1] || r.exec[1]))
      out.push_back({"user-kernel", r.va, r.size,
                     run_text(r, format, "user-accessible in the kernel half"), &r, nullptr});
  }
  for (const TableProblem& p : d.problems) {
    const u64 span = format.leaf_size(p.level);
    out.push_back({kind_name(p.kind), p.va, span, p.text, nullptr, &p});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Finding& a, const Finding& b) { return a.va < b.va; });
  return out;
}

std::string audit_text(const std::vector<Finding>& findings, const DumpResult& d,
                       const Format& format) {
  std::string out;
  std::map<std::string, u64> counts;
  for (const Finding& f : findings) {
    // Like a dump line: the virtual range first, whatever the finding.
    out += fmt::format("{:<15} {}-{} {:>7}  {}\n", f.kind, hex(f.va), hex(f.va + f.size),
                       size_name(f.size), f.text);
    ++counts[f.kind];
  }
  if (d.problems_omitted != 0)
    out += fmt::format("... and {} more entry problems (at most {} of a kind are listed)\n",
                       d.problems_omitted, kMaxProblems);
  const u64 total = findings.size() + d.problems_omitted;
  if (total == 0) return fmt::format("{}: no findings\n", format.name());
  std::string by_kind;
  for (const auto& [kind, n] : counts)
    by_kind += fmt::format("{}{} {}", by_kind.empty() ? "" : ", ", n, kind);
  out +=
      fmt::format("{}: {} finding{} ({})\n", format.name(), total, total == 1 ? "" : "s", by_kind);
  return out;
}

nlohmann::ordered_json audit_json(const std::vector<Finding>& findings, const DumpResult& d,
                                  const Format& format) {
  nlohmann::ordered_json j;
  j["format"] = format.name();
  if (format.is_aarch64()) j["half"] = format.upper() ? "ttbr1" : "ttbr0";
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  std::map<std::string, u64> counts;
  for (const Finding& f : findings) {
    nlohmann::ordered_json e = {{"kind", f.kind}, {"va", hex(f.va)}, {"size", f.size}};
    if (const Run* r = f.run) {
      e["pa"] = hex(r->pa);
      e["level"] = format.level_name(r->level);
      e["perms"] = perm_string(r->read[0], r->write[0], r->exec[0]);
      e["user"] = perm_string(r->read[1], r->write[1], r->exec[1]);
    }
    if (const TableProblem* p = f.entry) {
      e["level"] = format.level_name(p->level);
      e["table"] = hex(p->table);
      e["index"] = p->index;
      e["raw"] = fmt::format("{:#018x}", p->raw);
      if (p->kind != TableProblem::Kind::Reserved) e["target"] = hex(p->target);
    }
    e["message"] = f.text;
    list.push_back(std::move(e));
    ++counts[f.kind];
  }
  j["findings"] = list;
  j["counts"] = counts;
  j["omitted"] = d.problems_omitted;
  return j;
}

}  // namespace ptkit::tool
