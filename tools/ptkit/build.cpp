#include "build.hpp"

#include <fmt/format.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <utility>

#include "ptkit/early/image_mapper.hpp"
#include "ptkit/space.hpp"

namespace ptkit::tool {

MemoryImage BuildResult::image() const {
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the tables' bytes
  return MemoryImage::raw(reinterpret_cast<const unsigned char*>(area.data()), area.size() * 8,
                          base, "table area");
}

namespace {

[[noreturn]] void fail_at(const Where& w, const std::string& msg) {
  throw InputError(fmt::format("{}: {}", w.str(), msg));
}

Format choose_format(const Layout& layout, const std::optional<std::string>& option, bool upper) {
  if (option) return Format::from_name(*option, upper);
  const std::string name = layout.format.value_or("x86_64-4l");
  try {
    return Format::from_name(name, upper);
  } catch (const UsageError& e) {
    // The name came from the file: bad input, not a bad command line.
    fail_at(layout.format_where, fmt::format("'format': unknown paging format \"{}\"; `ptkit "
                                             "formats` lists them",
                                             name));
  }
}

u64 resolve_va(const MapSpec& m, const Format& f) {
  switch (m.va.from) {
    case VaExpr::From::Zero: return m.va.offset;
    case VaExpr::From::Top: return u64{0} - m.va.offset;
    case VaExpr::From::Upper: {
      const u64 start = f.upper_start();
      if (m.va.offset > ~start)
        fail_at(m.where, fmt::format("map '{}': va \"{}\" is beyond the top of the address space",
                                     m.name, m.va.text));
      return start + m.va.offset;
    }
  }
  return 0;
}

Perm parse_perm(const std::string& text, const Where& w, const std::string& what) {
  Perm p = Perm::None;
  for (char c : text) {
    Perm bit = Perm::None;
    switch (c) {
      case 'r': bit = Perm::R; break;
      case 'w': bit = Perm::W; break;
      case 'x': bit = Perm::X; break;
      case 'u': bit = Perm::User; break;
      default: break;
    }
    if (bit == Perm::None || has(p, bit))
      fail_at(w, fmt::format("{}: 'perm' must be letters from r, w, x, u (each once), got \"{}\"",
                             what, text));
    p = p | bit;
  }
  return p;
}

std::string perm_text(Perm p) {
  return fmt::format("{}{}{}{}", has(p, Perm::R) ? 'r' : '-', has(p, Perm::W) ? 'w' : '-',
                     has(p, Perm::X) ? 'x' : '-', has(p, Perm::User) ? 'u' : '-');
}

const MemRange* containing(const Layout& l, u64 pa, u64 size, MemKind kind) {
  for (const MemRange& r : l.memory)
    if (r.kind == kind && pa >= r.base && pa - r.base <= r.size - 1 &&
        size <= r.size - (pa - r.base))
      return &r;
  return nullptr;
}

bool overlaps(u64 a, u64 a_size, u64 b, u64 b_size) {
  return a <= b + (b_size - 1) && b <= a + (a_size - 1);
}

void check_memory(const Layout& l, const Format& f) {
  for (std::size_t i = 0; i < l.memory.size(); ++i) {
    const MemRange& a = l.memory[i];
    if (a.base % f.page_size() != 0 || a.size % f.page_size() != 0)
      fail_at(a.where, fmt::format("memory range {:#x}+{:#x} is not aligned to the {} page of {}",
                                   a.base, a.size, size_name(f.page_size()), f.name()));
    for (std::size_t k = 0; k < i; ++k) {
      const MemRange& b = l.memory[k];
      if (overlaps(a.base, a.size, b.base, b.size))
        fail_at(a.where, fmt::format("memory range {:#x}+{:#x} overlaps the one at line {}", a.base,
                                     a.size, b.where.line));
    }
  }
  if (l.table_base % f.page_size() != 0 || l.table_size < f.page_size())
    fail_at(l.tables_where,
            fmt::format("[tables]: base {:#x} must be aligned to, and size {:#x} at least, the "
                        "table size of {} ({})",
                        l.table_base, l.table_size, f.name(), size_name(f.page_size())));
  if (!containing(l, l.table_base, l.table_size, MemKind::Ram))
    fail_at(l.tables_where, fmt::format("[tables]: the table area {:#x}+{:#x} is not inside one "
                                        "\"ram\" memory range",
                                        l.table_base, l.table_size));
}

std::string describe(const Failure& f, const Format& format, const std::string& grow_tables) {
  std::string s = fmt::format("{} failed", to_string(f.op));
  if (f.subject) s += fmt::format(" for '{}'", f.subject);
  s += fmt::format(" at va {:#x}", f.va.value());
  if (f.pa.value() != 0) s += fmt::format(" pa {:#x}", f.pa.value());
  if (f.level >= 0) s += fmt::format(" ({} level)", format.level_name(unsigned(f.level)));
  s += fmt::format(": {}", to_string(f.error));
  if (f.error == Error::Unaligned && f.alignment != 0)
    s += fmt::format(" (needs {} alignment)", size_name(f.alignment));
  if (f.error == Error::OutOfTables)
    s += fmt::format(" (this map needs {} more table pages; {})", f.needed, grow_tables);
  return s;
}

/// Leaf sizes up to `max` that the format has, or an error naming the map.
LeafSizes leaf_sizes_upto(const MapSpec& m, const Format& f) {
  if (!m.max_page) return kAnyLeafSize;
  LeafSizes sizes = 0;
  for (unsigned level = 0; level < f.levels(); ++level)
    if (f.leaf_allowed(level) && f.leaf_size(level) <= *m.max_page) sizes |= f.leaf_size(level);
  if (sizes == 0)
    fail_at(m.where,
            fmt::format("map '{}': max_page {} is below the smallest page of {} ({})", m.name,
                        size_name(*m.max_page), f.name(), size_name(f.page_size())));
  return sizes;
}

/// Counts what the core asks of the TLB (BuildResult::tlb).
class CountingSink {
 public:
  explicit CountingSink(TlbWork& work) : work_(&work) {}
  void publish() { ++work_->publishes; }
  void invalidate(const TlbRange&) { ++work_->invalidations; }
  void invalidate_all(bool) { ++work_->full_flushes; }
  void complete() {}

 private:
  TlbWork* work_;
};

template <class P>
void build_with(const P& paging, const Layout& layout, BuildResult& out,
                const std::vector<u64>& vas) {
  const Format& f = out.format;
  const u64 page = f.page_size();
  out.area.assign(layout.table_size / 8, 0);
  // The one place host memory stands for physical memory: the table area's
  // physical base maps to the buffer (offset arithmetic wraps, as intended).
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): an address, as the core wants
  OffsetAccess access{reinterpret_cast<u64>(out.area.data()) - layout.table_base};
  BumpAllocator alloc(PhysAddr(layout.table_base), layout.table_size / page, page);
  using Space = AddressSpace<P, OffsetAccess, BumpAllocator&, PlainWriter, CountingSink>;
  auto created = Space::create(paging, access, alloc, {}, CountingSink(out.tlb));
  if (!created)
    fail_at(layout.tables_where, "[tables]: the table area has no room for the root table");
  Space& space = created.value();
  out.root = space.root().value();

  for (std::size_t i = 0; i < layout.maps.size(); ++i) {
    const MapSpec& m = layout.maps[i];
    const u64 va = vas[i];
    const std::string what = fmt::format("map '{}'", m.name);
    MemType mem{};
    if (!mem_type_for(m.mem, f, mem))
      fail_at(m.where, fmt::format("{}: 'mem' must be wb, wt, wc, wp, uc-, uc or device, got "
                                   "\"{}\"",
                                   what, m.mem));
    MapOptions opts;
    opts.leaf_sizes = leaf_sizes_upto(m, f);
    if (m.kind == MapKind::Fixed || m.kind == MapKind::Mmio) out.markers.push_back({va, m.name});

    auto check_attrs = [&](const Attrs& a, const Where& w, const std::string& subject) {
      if (!f.can_express(a))
        fail_at(w, fmt::format("{}: perm \"{}\" with mem {} cannot be expressed by {}", subject,
                               perm_text(a.perm), mem_type_name(a.mem), f.name()));
    };
    auto map_range = [&](u64 rva, u64 pa, u64 size, Attrs a) {
      out.placed.push_back({m.name, m.kind, rva, pa, size, a});
      auto done = space.map(VirtAddr(rva), PhysAddr(pa), size, a, opts);
      if (!done)
        fail_at(m.where,
                fmt::format("{}: {}", what, describe(done.failure(), f, layout.grow_tables)));
    };

    switch (m.kind) {
      case MapKind::Direct: {
        const Attrs a{parse_perm(m.perm, m.where, what), mem, m.global};
        check_attrs(a, m.where, what);
        if (!out.direct_map) out.direct_map = va;
        bool first = true;
        for (const MemRange& r : layout.memory) {
          if (r.kind != MemKind::Ram) continue;
          if (first) out.markers.push_back({va + r.base, m.name});
          first = false;
          if (r.base > ~va)
            fail_at(m.where, fmt::format("{}: RAM at {:#x} lands beyond the top of the address "
                                         "space",
                                         what, r.base));
          map_range(va + r.base, r.base, r.size, a);
        }
        break;
      }
      case MapKind::Fixed:
      case MapKind::Mmio: {
        const MemKind want = m.kind == MapKind::Mmio ? MemKind::Device : MemKind::Ram;
        if (!containing(layout, m.pa, m.size, want))
          fail_at(m.where, fmt::format("{}: pa {:#x}+{:#x} is not inside one \"{}\" memory range",
                                       what, m.pa, m.size, to_string(want)));
        if (overlaps(m.pa, m.size, layout.table_base, layout.table_size))
          fail_at(m.where,
                  fmt::format("{}: pa {:#x}+{:#x} overlaps the table area", what, m.pa, m.size));
        const Attrs a{parse_perm(m.perm, m.where, what), mem, m.global};
        check_attrs(a, m.where, what);
        map_range(va, m.pa, m.size, a);
        break;
      }
      case MapKind::Image: {
        if (m.sections.size() > early::kMaxImageSections)
          fail_at(m.where, fmt::format("{}: at most {} sections", what, early::kMaxImageSections));
        if (!containing(layout, m.pa, m.size, MemKind::Ram))
          fail_at(m.where, fmt::format("{}: the image at pa {:#x}+{:#x} is not inside one \"ram\" "
                                       "memory range",
                                       what, m.pa, m.size));
        if (overlaps(m.pa, m.size, layout.table_base, layout.table_size))
          fail_at(m.where, fmt::format("{}: the image at pa {:#x}+{:#x} overlaps the table area",
                                       what, m.pa, m.size));
        std::vector<early::ImageSection> sections;
        u64 offset = 0;
        for (const SectionSpec& s : m.sections) {
          if (s.offset) offset = *s.offset;
          const Perm p = parse_perm(s.perm, s.where, fmt::format("{} section '{}'", what, s.name));
          check_attrs(Attrs{p, mem, m.global}, s.where,
                      fmt::format("{} section '{}'", what, s.name));
          sections.push_back({s.name.c_str(), VirtAddr(va + offset), s.size, p});
          out.placed.push_back({m.name + " " + s.name,
                                m.kind,
                                va + offset,
                                m.pa + offset,
                                s.size,
                                {p, mem, m.global}});
          out.markers.push_back({va + offset, m.name + " " + s.name});
          offset += s.size;
        }
        const early::ImageLayout img{sections.data(), unsigned(sections.size()), VirtAddr(va),
                                     m.align != 0 ? m.align : page};
        early::ImageOptions io;
        io.mem = mem;
        io.global = m.global;
        io.leaf_sizes = opts.leaf_sizes;
        auto done = early::map_image(space, img, PhysAddr(m.pa), io);
        if (!done)
          fail_at(m.where,
                  fmt::format("{}: {}", what, describe(done.failure(), f, layout.grow_tables)));
        break;
      }
    }
  }
  out.used_bytes = alloc.next().value() - layout.table_base;
}

}  // namespace

BuildResult build_layout(const Layout& layout, const std::optional<std::string>& format_option) {
  BuildResult out;
  // Resolve the addresses with the lower-half format first: AArch64 needs
  // them to pick its half (TTBR0 or TTBR1), and nothing else depends on it.
  out.format = choose_format(layout, format_option, false);
  std::vector<u64> vas;
  for (const MapSpec& m : layout.maps) vas.push_back(resolve_va(m, out.format));
  if (out.format.is_aarch64()) {
    const bool upper = (vas.front() >> 63) != 0;
    for (std::size_t i = 0; i < vas.size(); ++i) {
      if (((vas[i] >> 63) != 0) != upper) {
        fail_at(layout.maps[i].where,
                fmt::format("map '{}' at va {:#x} is in the {} half but map '{}' in the {}: an "
                            "AArch64 root covers one half (TTBR0 or TTBR1); split the layout",
                            layout.maps[i].name, vas[i], upper ? "TTBR0" : "TTBR1",
                            layout.maps.front().name, upper ? "TTBR1" : "TTBR0"));
      }
    }
    if (upper) out.format = choose_format(layout, format_option, true);
  }
  check_memory(layout, out.format);
  out.base = layout.table_base;
  std::visit([&](const auto& p) { build_with(p, layout, out, vas); }, out.format.core());
  out.walk = walk_tables(out.image(), out.root, out.format);
  return out;
}

nlohmann::ordered_json build_json(const BuildResult& b) {
  const Format& f = b.format;
  nlohmann::ordered_json j;
  j["format"] = f.name();
  if (f.is_aarch64()) j["half"] = f.upper() ? "ttbr1" : "ttbr0";
  j["root"] = hex(b.root);
  u64 tables = 0;
  nlohmann::ordered_json per_level = nlohmann::ordered_json::object();
  // Root level first. (std::views::reverse: clang 14 cannot use libstdc++ 12's ranges.)
  // NOLINTNEXTLINE(modernize-loop-convert)
  for (auto it = b.walk.tables_per_level.rbegin(); it != b.walk.tables_per_level.rend(); ++it) {
    per_level[f.level_name(it->first)] = it->second;
    tables += it->second;
  }
  j["tables"] = tables;
  j["tables_per_level"] = per_level;
  nlohmann::ordered_json leaves = nlohmann::ordered_json::object();
  for (const auto& [size, count] : b.walk.leaves_per_size) leaves[size_name(size)] = count;
  j["leaves"] = leaves;
  j["table_bytes"] = b.used_bytes;
  j["tlb"] = {{"publishes", b.tlb.publishes},
              {"invalidations", b.tlb.invalidations},
              {"full_flushes", b.tlb.full_flushes}};
  j["table_area"] = {{"base", hex(b.base)}, {"size", b.area.size() * 8}};
  nlohmann::ordered_json maps = nlohmann::ordered_json::array();
  for (const Placed& p : b.placed) {
    maps.push_back({{"name", p.name},
                    {"kind", to_string(p.kind)},
                    {"va", hex(p.va)},
                    {"pa", hex(p.pa)},
                    {"size", p.size},
                    {"perm", perm_text(p.attrs.perm)},
                    {"mem", mem_type_name(p.attrs.mem)},
                    {"global", p.attrs.global}});
  }
  j["mappings"] = maps;
  return j;
}

std::string build_summary(const BuildResult& b) {
  const Format& f = b.format;
  std::string leaves;
  for (const auto& [size, count] : b.walk.leaves_per_size)
    leaves += fmt::format("{}{} x {}", leaves.empty() ? "" : ", ", count, size_name(size));
  u64 tables = 0;
  for (const auto& [level, count] : b.walk.tables_per_level) tables += count;
  return fmt::format("{}{}: {} ranges in {} table pages ({} bytes) at {}, root {}\nleaves: {}\n",
                     f.name(), f.is_aarch64() ? (f.upper() ? " (TTBR1)" : " (TTBR0)") : "",
                     b.placed.size(), tables, b.used_bytes, hex(b.base), hex(b.root), leaves);
}

namespace {

/// Writes `bytes` to a temporary file next to `path` and returns its name;
/// UsageError (the --out path is the user's) when that fails, with nothing
/// left behind.
std::string write_temp(const std::string& path, const char* bytes, std::size_t n) {
  std::string temp = path + ".ptkit-tmp";
  std::ofstream f(temp, std::ios::binary | std::ios::trunc);
  f.write(bytes, std::streamsize(n));
  f.close();
  if (!f) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    throw UsageError(fmt::format("--out {}: cannot write", path));
  }
  return temp;
}

}  // namespace

namespace {

/// A valid entry of the root table: a loader that keeps its own root copies
/// these into it.
struct RootEntry {
  u64 index = 0;
  u64 va = 0;  // the first address it translates
  u64 raw = 0;
};

std::vector<RootEntry> root_entries(const BuildResult& b) {
  const sim::ArchOps& ops = sim::ops_for(b.format.mmu().arch);
  const sim::MmuConfig& cfg = b.format.mmu();
  const unsigned top = ops.levels(cfg) - 1;
  const unsigned shift = ops.entry_shift(cfg, top);
  const unsigned bits = b.format.va_bits();
  std::vector<RootEntry> out;
  for (u64 i = 0; i < ops.entries(cfg, top); ++i) {
    const u64 raw = b.area[(b.root - b.base) / 8 + i];
    if (ops.decode(cfg, raw, top).kind == sim::Descriptor::Kind::Invalid) continue;
    u64 va = i << shift;
    if (b.format.is_aarch64()) {
      if (b.format.upper()) va |= ~u64{0} << bits;  // the TTBR1 region
    } else {
      va = u64(std::int64_t(va << (64 - bits)) >> (64 - bits));  // canonical
    }
    out.push_back({i, va, raw});
  }
  return out;
}

/// The register values the tables assume, by the register's name.
std::vector<std::pair<std::string, u64>> registers(const BuildResult& b) {
  std::vector<std::pair<std::string, u64>> out;
  std::visit(
      [&](const auto& p) {
        using P = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<P, aarch64::Paging>) {
          // TTBR BADDR: bits 51:48 of a 52-bit table address go in 5:2.
          const u64 ttbr = (b.root & ((u64{1} << 48) - 1)) | ((b.root >> 48) & 0xF) << 2;
          out.emplace_back(b.format.upper() ? "ttbr1_el1" : "ttbr0_el1", ttbr);
          out.emplace_back("mair_el1", p.features().mair.mair_value());
          out.emplace_back(b.format.upper() ? "tcr_t1sz" : "tcr_t0sz", p.tnsz());
        } else if constexpr (std::is_same_v<P, riscv::Paging>) {
          out.emplace_back("satp", u64(p.mode()) << 60 | b.root >> 12);
        } else {
          out.emplace_back("cr3", b.root);
        }
      },
      b.format.core());
  return out;
}

/// FILE.h: the sidecar for C, everything as macros so that including it
/// costs no storage.
std::string header_text(const BuildResult& b, const std::string& file,
                        const std::vector<RootEntry>& entries) {
  std::string out = fmt::format(
      "/* Written by `ptkit build` (ptkit {}): the page tables in {}, to be loaded at\n"
      " * physical address PTKIT_TABLES_BASE. Do not edit. */\n"
      "#ifndef PTKIT_TABLES_H\n#define PTKIT_TABLES_H\n\n"
      "#define PTKIT_TABLES_FORMAT \"{}\"\n"
      "#define PTKIT_TABLES_BASE 0x{:x}ULL\n"
      "#define PTKIT_TABLES_SIZE 0x{:x}ULL\n"
      "#define PTKIT_TABLES_ROOT 0x{:x}ULL\n",
      PTKIT_VERSION, std::filesystem::path(file).filename().string(), b.format.name(), b.base,
      b.used_bytes, b.root);
  if (b.direct_map)
    out += fmt::format("#define PTKIT_TABLES_DIRECT_MAP 0x{:x}ULL\n", *b.direct_map);
  for (const auto& [name, value] : registers(b)) {
    std::string upper = name;
    for (char& c : upper) c = char(std::toupper(static_cast<unsigned char>(c)));
    out += fmt::format("#define PTKIT_TABLES_{} 0x{:x}ULL\n", upper, value);
  }
  out += fmt::format(
      "\n/* The root's valid entries: X(index, first virtual address, raw entry). */\n"
      "#define PTKIT_TABLES_ROOT_ENTRY_COUNT {}\n#define PTKIT_TABLES_ROOT_ENTRIES(X)",
      entries.size());
  for (const RootEntry& e : entries)
    out += fmt::format(" \\\n  X({}, 0x{:x}ULL, 0x{:x}ULL)", e.index, e.va, e.raw);
  out += "\n\n#endif /* PTKIT_TABLES_H */\n";
  return out;
}

}  // namespace

void write_out(const BuildResult& b, const std::string& file) {
  const Format& f = b.format;
  const std::vector<RootEntry> entries = root_entries(b);
  nlohmann::ordered_json j;
  j["format"] = f.name();
  if (f.is_aarch64()) j["half"] = f.upper() ? "ttbr1" : "ttbr0";
  j["root"] = hex(b.root);
  j["base"] = hex(b.base);
  j["size"] = b.used_bytes;
  j["blob"] = file;
  if (b.direct_map) j["direct_map"] = hex(*b.direct_map);
  for (const auto& [name, value] : registers(b)) {
    if (name == "tcr_t0sz" || name == "tcr_t1sz") {
      j["tnsz"] = value;
    } else if (name == "satp") {
      j["satp_mode"] = value >> 60;
      j["satp"] = hex(value);
    } else {
      j[name] = hex(value);
    }
  }
  nlohmann::ordered_json root_json = nlohmann::ordered_json::array();
  for (const RootEntry& e : entries)
    root_json.push_back(
        {{"index", e.index}, {"va", hex(e.va)}, {"raw", fmt::format("{:#018x}", e.raw)}});
  j["root_entries"] = root_json;
  // Every file is written in full under a temporary name, and only then are
  // they renamed, so a failure (disk full, bad directory) leaves no
  // half-written output.
  const std::string side = j.dump(2) + "\n";
  const std::string header = header_text(b, file, entries);
  const std::pair<std::string, std::string_view> outputs[] = {
      // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the tables' bytes
      {file, {reinterpret_cast<const char*>(b.area.data()), b.used_bytes}},
      {file + ".json", side},
      {file + ".h", header},
  };
  std::vector<std::string> temps;
  auto remove_temps = [&] {
    std::error_code ignored;
    for (const std::string& t : temps) std::filesystem::remove(t, ignored);
  };
  try {
    for (const auto& [path, bytes] : outputs)
      temps.push_back(write_temp(path, bytes.data(), bytes.size()));
  } catch (...) {
    remove_temps();
    throw;
  }
  std::error_code ec;
  for (std::size_t i = 0; i < temps.size() && !ec; ++i)
    std::filesystem::rename(temps[i], outputs[i].first, ec);
  if (ec) {
    remove_temps();
    throw UsageError(fmt::format("--out {}: cannot write: {}", file, ec.message()));
  }
}

}  // namespace ptkit::tool

// ---- `ptkit build` -----------------------------------------------------------------

#include <iostream>

#include "commands.hpp"
#include "svg.hpp"

namespace ptkit::tool {

void emit_build(const BuildResult& b, const BuildOutputs& o, const nlohmann::ordered_json& extra,
                const std::string& summary_tail) {
  if (!o.out.empty()) write_out(b, o.out);
  if (!o.svg.empty()) write_svg(o.svg, svg_map(b.walk, b.format, b.markers, o.title));
  if (o.json) {
    nlohmann::ordered_json j = build_json(b);
    for (const auto& [key, value] : extra.items()) j[key] = value;
    std::cout << j.dump(2) << "\n";
  } else if (o.dump) {
    std::cout << dump_text(b.walk, b.format, b.markers);
  } else {
    std::cout << build_summary(b) << summary_tail;
  }
}

int cmd_build(const BuildArgs& a) {
  const Layout layout = a.layout.empty() ? parse_layout_text(builtin_layout_text(), kBuiltinName)
                                         : parse_layout_file(a.layout);
  const BuildResult b = build_layout(layout, a.format);
  const std::string title =
      fmt::format("{} ({})", a.layout.empty() ? kBuiltinName : a.layout, b.format.name());
  emit_build(b, {a.out, a.dump, a.json, a.svg, title}, nlohmann::ordered_json::object(), "");
  return kExitOk;
}

}  // namespace ptkit::tool
