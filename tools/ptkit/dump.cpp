#include "dump.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "ptkit/sim/memory.hpp"

namespace ptkit::tool {

std::string perm_string(bool r, bool w, bool x) {
  return fmt::format("{}{}{}", r ? 'r' : '-', w ? 'w' : '-', x ? 'x' : '-');
}

bool Run::extends(const Run& next) const {
  return next.va == va + size && next.pa == pa + size && next.level == level &&
         std::equal(read, read + 2, next.read) && std::equal(write, write + 2, next.write) &&
         std::equal(exec, exec + 2, next.exec) && next.global == global &&
         next.mem_index == mem_index && next.leaf_bits == leaf_bits;
}

MemoryImage MemoryImage::raw(const unsigned char* data, u64 size, u64 base, std::string name) {
  MemoryImage m;
  m.name = std::move(name);
  if (size != 0) m.segments.push_back({base, size, data, 0});
  return m;
}

const MemoryImage::Segment* MemoryImage::segment_of(u64 pa) const {
  auto it = std::upper_bound(segments.begin(), segments.end(), pa,
                             [](u64 a, const Segment& s) { return a < s.pa; });
  if (it == segments.begin()) return nullptr;
  --it;
  return pa - it->pa < it->size ? &*it : nullptr;
}

std::string MemoryImage::extent() const {
  if (segments.size() == 1) {
    const Segment& s = segments.front();
    return fmt::format("pa {:#x}-{:#x}, {} bytes from --base", s.pa, s.pa + s.size, s.size);
  }
  if (segments.empty()) return "it holds no memory";
  std::string out = fmt::format("{} segments:", segments.size());
  for (std::size_t i = 0; i < segments.size() && i < 4; ++i)
    out += fmt::format(" pa {:#x}-{:#x}", segments[i].pa, segments[i].pa + segments[i].size);
  if (segments.size() > 4) out += " ...";
  return out;
}

namespace {

class Walker {
 public:
  Walker(const MemoryImage& mem, u64 root, const Format& format, const WalkLimits& limits,
         WalkMode mode)
      : mem_(mem),
        root_(root),
        format_(format),
        limits_(limits),
        mode_(mode),
        ops_(sim::ops_for(format.mmu().arch)),
        cfg_(format.mmu()) {}

  DumpResult run() {
    const unsigned top = ops_.levels(cfg_) - 1;
    const u64 root_bytes = ops_.entries(cfg_, top) * 8;
    const u64 align = std::min<u64>(root_bytes, format_.page_size());
    if (root_ % align != 0)
      throw UsageError(
          fmt::format("--root {:#x}: a root table must be aligned to {:#x} bytes", root_, align));
    // Upper-half addresses: AArch64's TTBR1 region has every bit above
    // va_bits set; x86-64 and RISC-V sign-extend the top bit.
    upper_prefix_ = format_.is_aarch64() && format_.upper() ? ~u64{0} << format_.va_bits() : 0;
    walk(top, root_, upper_prefix_, "root table", nullptr, 0);
    flush_run();
    return std::move(out_);
  }

 private:
  /// The entry that points to a table (none for the root).
  struct Ref {
    unsigned level = 0;
    u64 table = 0, index = 0, va = 0, raw = 0;
  };

  [[nodiscard]] std::string entry_name(const Ref& r) const {
    return fmt::format("{} entry {} of the table at pa {:#x} (va {:#x})",
                       format_.level_name(r.level), r.index, r.table, r.va);
  }

  /// An audit walk's finding; a strict walk (and any walk at the root, where
  /// nothing is left to audit) stops with an InputError instead.
  void problem(TableProblem::Kind kind, const Ref* ref, u64 target, const std::string& text) {
    if (mode_ == WalkMode::Strict || ref == nullptr)
      throw InputError(fmt::format("{}: {}", mem_.name, text));
    if (problems_per_kind_[unsigned(kind)]++ >= kMaxProblems) {
      ++out_.problems_omitted;
      return;
    }
    out_.problems.push_back(
        {kind, ref->level, ref->table, ref->index, ref->va, ref->raw, target, text});
  }

  /// Copies the table at `pa` into the simulator's memory after checking it
  /// lies inside the image; false (audit walks) when it does not. `from`: who
  /// points to it.
  bool load(u64 pa, u64 bytes, const std::string& from, const Ref* ref) {
    const MemoryImage::Segment* seg = mem_.segment_of(pa);
    if (seg == nullptr) {
      problem(TableProblem::Kind::Outside, ref, pa,
              fmt::format("{} at pa {:#x} is outside the image ({})", from, pa, mem_.extent()));
      return false;
    }
    const u64 offset = pa - seg->pa;
    if (bytes > seg->size - offset) {
      problem(
          TableProblem::Kind::Outside, ref, pa,
          fmt::format("{} at pa {:#x} (offset {:#x}) needs {} bytes but the image ends at "
                      "offset {:#x}: truncated image?",
                      from, pa, seg->file_offset + offset, bytes, seg->file_offset + seg->size));
      return false;
    }
    if (loaded_.insert(pa).second) {
      out_.tables.push_back({pa, bytes});
      for (u64 k = 0; k < bytes; k += 8) {
        u64 word = 0;
        std::memcpy(&word, seg->data + offset + k, 8);
        sim_.write64(pa + k, word);
      }
    }
    return true;
  }

  /// Entry `index` of a table load() accepted.
  [[nodiscard]] u64 entry(u64 pa, u64 index) const { return sim_.read64(pa + index * 8); }

  [[nodiscard]] u64 file_offset(u64 pa) const {
    const MemoryImage::Segment* seg = mem_.segment_of(pa);
    return seg != nullptr ? seg->file_offset + (pa - seg->pa) : 0;
  }

  [[nodiscard]] u64 canonical(u64 va) const {
    if (format_.is_aarch64()) return va;  // the prefix is already there
    const unsigned bits = format_.va_bits();
    const unsigned shift = 64 - bits;
    return static_cast<u64>(static_cast<std::int64_t>(va << shift) >> shift);
  }

  void walk(unsigned level, u64 table, u64 va_base, const std::string& from, const Ref* ref,
            unsigned depth) {
    const u64 n = ops_.entries(cfg_, level);
    for (unsigned d = 0; d < depth; ++d) {
      if (path_[d] == table) {
        problem(TableProblem::Kind::Loop, ref, table,
                fmt::format("{} at pa {:#x} (offset {:#x}) is also a table higher up the same "
                            "walk: the tables loop (recursive mappings are not supported)",
                            from, table, file_offset(table)));
        return;
      }
    }
    if (!load(table, n * 8, from, ref)) return;
    if (mode_ == WalkMode::Audit && ref != nullptr) {
      // Walked once: a second path to the same table is the finding, and
      // not walking it again keeps an audit linear in the image.
      const auto [first, fresh] = referrers_.emplace(table, entry_name(*ref));
      if (!fresh) {
        problem(TableProblem::Kind::Shared, ref, table,
                fmt::format("{} at pa {:#x} is also pointed to by {}", from, table, first->second));
        return;
      }
    }
    path_[depth] = table;
    ++out_.tables_per_level[level];
    const unsigned shift = ops_.entry_shift(cfg_, level);
    for (u64 i = 0; i < n; ++i) {
      if (++entries_read_ > limits_.max_entries) {
        throw InputError(fmt::format(
            "{}: walk stopped after {} descriptors: tables shared by many entries or looping",
            mem_.name, limits_.max_entries));
      }
      const u64 raw = entry(table, i);
      const sim::Descriptor d = ops_.decode(cfg_, raw, level);
      const u64 va = canonical(va_base | (i << shift));
      const Ref here{level, table, i, va, raw};
      switch (d.kind) {
        case sim::Descriptor::Kind::Invalid: break;
        case sim::Descriptor::Kind::Reserved:
          if (out_.reserved_entries++ == 0)
            out_.first_reserved = fmt::format("{}: raw {:#018x}", entry_name(here), raw);
          if (mode_ == WalkMode::Audit) {
            problem(
                TableProblem::Kind::Reserved, &here, 0,
                fmt::format("{}: raw {:#018x}: reserved bits or encoding", entry_name(here), raw));
          }
          break;
        case sim::Descriptor::Kind::Table:
          if (level == 0) break;  // no walker decodes a table at level 0
          walk(level - 1, d.pa, va_base | (i << shift),
               fmt::format("{} table (from {} entry {} of the table at pa {:#x})",
                           format_.level_name(level - 1), format_.level_name(level), i, table),
               &here, depth + 1);
          break;
        case sim::Descriptor::Kind::Leaf: leaf(level, va, d); break;
      }
    }
  }

  void leaf(unsigned level, u64 va, const sim::Descriptor& d) {
    if (++leaves_ > limits_.max_leaves) {
      throw InputError(
          fmt::format("{}: walk stopped after {} leaves", mem_.name, limits_.max_leaves));
    }
    const u64 size = u64{1} << ops_.entry_shift(cfg_, level);
    ++out_.leaves_per_size[size];
    // The effective permissions are the reference walker's: it combines the
    // levels (x86 R/W, U/S, XD; Arm APTable, XNTable) as the manuals say.
    const sim::Translation t = ops_.translate(cfg_, sim_, root_, va);
    Run r;
    r.va = va;
    r.size = size;
    r.pa = t.ok() ? t.pa : d.pa;
    r.level = level;
    r.leaf_size = size;
    for (int u = 0; u < 2; ++u) {
      r.read[u] = t.read[u];
      r.write[u] = t.write[u];
      r.exec[u] = t.exec[u];
    }
    r.global = d.global;
    r.mem_index = d.mem_index;
    if (!t.ok()) {
      r.leaf_bits = fmt::format("fault: {}", sim::to_string(t.fault));
    } else {
      const bool user = t.read[1] || t.write[1] || t.exec[1];
      if (d.write != t.write[0] || d.user != user || d.exec_priv != t.exec[0]) {
        r.leaf_bits = fmt::format("leaf bits: {}{}", perm_string(d.read, d.write, d.exec_priv),
                                  d.user ? " user" : "");
      }
    }
    if (have_run_ && run_.extends(r)) {
      run_.size += r.size;
      return;
    }
    flush_run();
    run_ = r;
    have_run_ = true;
  }

  void flush_run() {
    if (have_run_) out_.runs.push_back(run_);
    have_run_ = false;
  }

  const MemoryImage& mem_;
  u64 root_;
  const Format& format_;
  WalkLimits limits_;
  WalkMode mode_;
  const sim::ArchOps& ops_;
  sim::MmuConfig cfg_;
  sim::PhysMemory sim_;
  std::set<u64> loaded_;
  std::map<u64, std::string> referrers_;  // audit: table pa -> the first entry pointing to it
  u64 problems_per_kind_[4] = {};
  u64 path_[8] = {};
  u64 upper_prefix_ = 0;
  u64 entries_read_ = 0;
  u64 leaves_ = 0;
  DumpResult out_;
  Run run_;
  bool have_run_ = false;
};

}  // namespace

DumpResult walk_tables(const MemoryImage& mem, u64 root, const Format& format,
                       const WalkLimits& limits, WalkMode mode) {
  return Walker(mem, root, format, limits, mode).run();
}

std::vector<Marker> half_markers(const Format& format) {
  if (format.is_aarch64()) return {{0, format.upper() ? "TTBR1 region" : "TTBR0 region"}};
  return {{0, "lower half"}, {format.upper_start(), "upper half"}};
}

std::string dump_text(const DumpResult& d, const Format& format, std::vector<Marker> markers) {
  std::stable_sort(markers.begin(), markers.end(),
                   [](const Marker& a, const Marker& b) { return a.va < b.va; });
  std::string out = fmt::format("# {:<35} {:>7}  {:<18}  kern user glb mem    level\n",
                                "virtual start-end", "size", "physical");
  std::size_t next = 0;
  for (const Run& r : d.runs) {
    // Markers inside the run too: adjacent sections alike share one run.
    while (next < markers.size() && (markers[next].va < r.va || markers[next].va - r.va < r.size))
      out += fmt::format("---[ {} ]---\n", markers[next++].name);
    out += fmt::format("{}-{} {:>7}  {}  {}  {}  {} {:<6} {}{}{}\n", hex(r.va), hex(r.va + r.size),
                       size_name(r.size), hex(r.pa), perm_string(r.read[0], r.write[0], r.exec[0]),
                       perm_string(r.read[1], r.write[1], r.exec[1]), r.global ? "GLB" : "   ",
                       format.mem_name(r.mem_index), format.level_name(r.level),
                       r.leaf_bits.empty() ? "" : "  ", r.leaf_bits);
  }
  return out;
}

nlohmann::ordered_json dump_json(const DumpResult& d, const Format& format) {
  nlohmann::ordered_json arr = nlohmann::ordered_json::array();
  for (const Run& r : d.runs) {
    nlohmann::ordered_json j = {
        {"va", hex(r.va)},
        {"size", r.size},
        {"pa", hex(r.pa)},
        {"leaf", size_name(r.leaf_size)},
        {"level", format.level_name(r.level)},
        {"perms", perm_string(r.read[0], r.write[0], r.exec[0])},
        {"user", perm_string(r.read[1], r.write[1], r.exec[1])},
        {"global", r.global},
        {"mem", format.mem_name(r.mem_index)},
    };
    if (!r.leaf_bits.empty()) j["note"] = r.leaf_bits;
    arr.push_back(std::move(j));
  }
  return arr;
}

}  // namespace ptkit::tool

// ---- `ptkit dump` ------------------------------------------------------------------

#include <iostream>

#include "audit.hpp"
#include "commands.hpp"
#include "elf_image.hpp"
#include "svg.hpp"

namespace ptkit::tool {

namespace {

/// The physical memory in `bytes`: an ELF core's PT_LOAD segments at their
/// p_paddr, or a raw image at --base.
MemoryImage memory_from_file(const std::vector<unsigned char>& bytes, const std::string& file,
                             const std::string& base_option) {
  if (is_elf(bytes.data(), bytes.size())) {
    if (base_option != "0")
      throw UsageError(
          fmt::format("--base {}: {} is an ELF core, which gives each segment's "
                      "physical address itself",
                      base_option, file));
    const ElfImage core = read_elf(bytes.data(), bytes.size(), file, ElfType::Core);
    MemoryImage mem;
    mem.name = file;
    for (const ElfSegment& s : core.segments)
      if (s.filesz != 0)
        mem.segments.push_back({s.paddr, s.filesz, bytes.data() + s.offset, s.offset});
    std::sort(mem.segments.begin(), mem.segments.end(),
              [](const auto& x, const auto& y) { return x.pa < y.pa; });
    for (std::size_t i = 1; i < mem.segments.size(); ++i) {
      const auto& prev = mem.segments[i - 1];
      if (mem.segments[i].pa - prev.pa < prev.size)
        throw InputError(fmt::format(
            "{}: the segments at file offsets {:#x} and {:#x} overlap "
            "in physical memory (pa {:#x} and {:#x})",
            file, prev.file_offset, mem.segments[i].file_offset, prev.pa, mem.segments[i].pa));
    }
    if (mem.segments.empty())
      throw InputError(fmt::format("{}: the core's PT_LOAD segments hold no bytes", file));
    return mem;
  }
  const u64 base = parse_option_number("--base", base_option);
  if (bytes.size() > ~base)
    throw InputError(
        fmt::format("{}: {} bytes from --base {:#x} run past the top of physical "
                    "memory",
                    file, bytes.size(), base));
  return MemoryImage::raw(bytes.data(), bytes.size(), base, file);
}

}  // namespace

int cmd_dump(const DumpArgs& a) {
  if (a.half != "lower" && a.half != "upper")
    throw UsageError(fmt::format("--half: expected lower or upper, got '{}'", a.half));
  const Format format = Format::from_name(a.format, a.half == "upper");
  const u64 root = parse_option_number("--root", a.root);
  const auto bytes = read_file(a.memory);
  const MemoryImage mem = memory_from_file(bytes, a.memory, a.base);
  if (a.audit) {
    const DumpResult d = walk_tables(mem, root, format, {}, WalkMode::Audit);
    AuditOptions options;
    if (a.direct_map) options.direct_map = parse_option_number("--direct-map", *a.direct_map);
    const std::vector<Finding> findings = audit(d, format, options);
    if (a.json)
      std::cout << audit_json(findings, d, format).dump(2) << "\n";
    else
      std::cout << audit_text(findings, d, format);
    return findings.empty() && d.problems_omitted == 0 ? kExitOk : kExitFindings;
  }
  const DumpResult d = walk_tables(mem, root, format);
  if (!a.svg.empty())
    write_svg(a.svg, svg_map(d, format, half_markers(format),
                             fmt::format("{} (root {}, {})", a.memory, hex(root), format.name())));
  if (d.reserved_entries != 0) {
    std::cerr << fmt::format(
        "ptkit dump: warning: {} entries with reserved encodings skipped; "
        "first: {}\n",
        d.reserved_entries, d.first_reserved);
  }
  if (a.json)
    std::cout << dump_json(d, format).dump(2) << "\n";
  else
    std::cout << dump_text(d, format, half_markers(format));
  return kExitOk;
}

}  // namespace ptkit::tool
