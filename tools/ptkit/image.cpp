// `ptkit image`: the page tables for a kernel or firmware ELF. Its PT_LOAD
// segments become the sections of image mappings (one per run of segments
// at the same virtual-to-physical offset), built by `build`'s machinery with
// the core's image mapper, so an ELF and a layout file give the same tables.
#include <elf.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <iostream>

#include "build.hpp"
#include "commands.hpp"
#include "elf_image.hpp"
#include "ptkit/early/image_mapper.hpp"

namespace ptkit::tool {

namespace {

u64 round_down(u64 v, u64 a) { return v & ~(a - 1); }

/// A segment rounded out to whole pages, where it lands.
struct Piece {
  const ElfSegment* seg = nullptr;
  u64 va = 0, end = 0;  // page-rounded [va, end)
  u64 pa = 0;           // where va lands
  std::string perm;
  std::string name;
};

std::string where(const ElfSegment& s) {
  return fmt::format("segment {} (vaddr {:#x}, paddr {:#x}, memsz {:#x})", s.index, s.vaddr,
                     s.paddr, s.memsz);
}

std::string seg_perm(const ElfSegment& s) {
  // Every loaded segment is readable; W without X is never executable.
  std::string p = "r";
  if (s.write) p += 'w';
  if (s.exec) p += 'x';
  return p;
}

Layout layout_for_elf(const ElfImage& elf, const Format& format, const ImageArgs& a) {
  const u64 page = format.page_size();
  const u64 align = a.align ? parse_option_number("--align", *a.align) : page;
  if (align < page || (align & (align - 1)) != 0)
    throw UsageError(fmt::format("--align {}: must be a power of two of at least the {} page of {}",
                                 *a.align, size_name(page), format.name()));
  auto bad = [&](const std::string& msg) {
    return InputError(fmt::format("{}: {}", elf.file, msg));
  };

  std::vector<Piece> pieces;
  for (const ElfSegment& s : elf.segments) {
    // With --load-pa the paddrs are not used, so only their own offsets count.
    if (!a.load_pa && ((s.vaddr ^ s.paddr) & (page - 1)))
      throw bad(
          fmt::format("{}: vaddr and paddr differ within a page; needs {} alignment (both "
                      "addresses equal modulo {:#x})",
                      where(s), size_name(page), page));
    if (align > page && (s.vaddr % align != 0 || (!a.load_pa && s.paddr % align != 0)))
      throw bad(fmt::format("{}: not aligned to {} (--align)", where(s), size_name(align)));
    const u64 last = s.vaddr + (s.memsz - 1);
    if (round_down(last, page) == u64{0} - page)
      throw bad(fmt::format("{}: reaches the last page of the address space", where(s)));
    Piece p;
    p.seg = &s;
    p.va = round_down(s.vaddr, page);
    p.end = round_down(last, page) + page;
    p.pa = round_down(s.paddr, page);
    p.perm = seg_perm(s);
    p.name = s.sections.empty() ? fmt::format("[{}]", s.index)
                                : fmt::format("[{}] {}", s.index, s.sections);
    pieces.push_back(p);
  }
  std::stable_sort(pieces.begin(), pieces.end(),
                   [](const Piece& x, const Piece& y) { return x.va < y.va; });

  if (a.load_pa) {
    // The lowest segment goes to --load-pa, the others keep their offsets.
    const u64 load = parse_option_number("--load-pa", *a.load_pa);
    if (load % align != 0)
      throw UsageError(
          fmt::format("--load-pa {:#x}: must be aligned to {}", load, size_name(align)));
    const u64 low = pieces.front().va;
    for (Piece& p : pieces) {
      if (p.va - low > ~load)
        throw UsageError(
            fmt::format("--load-pa {:#x}: {} would land beyond the top of physical "
                        "memory",
                        load, where(*p.seg)));
      p.pa = load + (p.va - low);
    }
  }

  // Segments apart in virtual memory must be apart in physical memory too:
  // toolchains that leave p_paddr 0 would otherwise alias (text and data on
  // one page: writable code). Sharing a page with the same offset is handled
  // below.
  {
    std::vector<const Piece*> by_pa;
    for (const Piece& p : pieces) by_pa.push_back(&p);
    std::stable_sort(by_pa.begin(), by_pa.end(),
                     [](const Piece* x, const Piece* y) { return x->pa < y->pa; });
    for (std::size_t i = 1; i < by_pa.size(); ++i) {
      const Piece& p = *by_pa[i];
      const Piece& q = *by_pa[i - 1];
      const bool same_offset = p.pa - p.va == q.pa - q.va;
      if (!same_offset && p.pa < q.pa + (q.end - q.va))
        throw bad(
            fmt::format("{} and {} land on the same physical memory (pa {:#x}); give the "
                        "segments distinct p_paddr or pass --load-pa",
                        where(*p.seg), where(*q.seg), p.pa));
    }
  }

  // Segments that share a page: one piece when they agree on permissions
  // and offset, else they needed page alignment.
  std::vector<Piece> merged;
  for (const Piece& p : pieces) {
    if (!merged.empty() && p.va < merged.back().end) {
      Piece& q = merged.back();
      if (p.seg->vaddr < q.seg->vaddr + q.seg->memsz)
        throw bad(fmt::format("{} overlaps {}", where(*p.seg), where(*q.seg)));
      if (p.perm != q.perm || p.pa - p.va != q.pa - q.va)
        throw bad(
            fmt::format("{} shares the page at {:#x} with {} ({} vs {}); segments with "
                        "different permissions need {} alignment",
                        where(*p.seg), p.va, where(*q.seg), p.perm, q.perm, size_name(page)));
      q.end = std::max(q.end, p.end);
      q.name += " " + p.name;
      continue;
    }
    merged.push_back(p);
  }

  Layout l;
  l.file = elf.file;
  l.format = format.name();
  l.format_where = {elf.file, 0};
  const std::string base = std::filesystem::path(elf.file).filename().string();
  u64 pa_lo = ~u64{0}, pa_hi = 0;
  for (std::size_t i = 0; i < merged.size();) {
    // One image mapping per run of pieces at one virtual-to-physical offset.
    MapSpec m;
    m.kind = MapKind::Image;
    m.va = {VaExpr::From::Zero, merged[i].va, hex(merged[i].va)};
    m.pa = merged[i].pa;
    m.mem = "wb";
    m.align = page;
    m.where = {elf.file, 0};
    m.name = base;
    const u64 delta = merged[i].pa - merged[i].va;
    std::size_t k = i;
    for (; k < merged.size() && merged[k].pa - merged[k].va == delta; ++k) {
      if (m.sections.size() == early::kMaxImageSections) break;
      SectionSpec s;
      s.name = merged[k].name;
      s.offset = merged[k].va - merged[i].va;
      s.size = merged[k].end - merged[k].va;
      s.perm = merged[k].perm;
      s.where = m.where;
      m.sections.push_back(s);
    }
    m.size = merged[k - 1].end - merged[i].va;
    if (m.pa + (m.size - 1) < m.pa)
      throw bad(fmt::format("{}: its physical range wraps around", where(*merged[i].seg)));
    pa_lo = std::min(pa_lo, m.pa);
    pa_hi = std::max(pa_hi, m.pa + m.size);
    l.maps.push_back(std::move(m));
    i = k;
  }

  // The tables go right after the image unless --tables says where. Both
  // options are the user's: what is wrong with them is a usage error.
  l.table_size =
      a.tables_size ? parse_option_number("--tables-size", *a.tables_size) : u64{1} << 20;
  if (l.table_size < page || l.table_size % page != 0 || l.table_size > kMaxTableArea)
    throw UsageError(
        fmt::format("--tables-size {:#x}: must be a multiple of the {} page of {}, at most {}",
                    l.table_size, size_name(page), format.name(), size_name(kMaxTableArea)));
  l.table_base = a.tables ? parse_option_number("--tables", *a.tables) : pa_hi;
  if (l.table_base % page != 0)
    throw UsageError(fmt::format("--tables {:#x}: must be aligned to the {} page of {}",
                                 l.table_base, size_name(page), format.name()));
  if (l.table_base + l.table_size < l.table_base)
    throw UsageError(fmt::format(
        "--tables {:#x}: the table area runs past the top of physical memory", l.table_base));
  for (const MapSpec& m : l.maps)
    if (l.table_base < m.pa + m.size && m.pa < l.table_base + l.table_size)
      throw UsageError(fmt::format(
          "--tables {:#x}: the table area {:#x}-{:#x} overlaps the image at {:#x}-{:#x}",
          l.table_base, l.table_base, l.table_base + l.table_size, m.pa, m.pa + m.size));
  l.tables_where = {"--tables", 0};
  l.grow_tables = "raise --tables-size";
  // One RAM range holds the image and the tables.
  const u64 lo = std::min(pa_lo, l.table_base);
  const u64 hi = std::max(pa_hi, l.table_base + l.table_size);
  l.memory.push_back({MemKind::Ram, lo, hi - lo, {elf.file, 0}});
  return l;
}

}  // namespace

int cmd_image(const ImageArgs& a) {
  const auto bytes = read_file(a.elf);
  const ElfImage elf = read_elf(bytes.data(), bytes.size(), a.elf);
  std::string format_name = a.format.value_or(default_format_for_machine(elf.machine));
  if (format_name.empty())
    throw InputError(fmt::format("{}: offset {}: {} has no default paging format; pass --format",
                                 a.elf, offsetof(Elf64_Ehdr, e_machine),
                                 machine_name(elf.machine)));
  const Format format = Format::from_name(format_name);
  const Layout layout = layout_for_elf(elf, format, a);
  const BuildResult b = build_layout(layout, format_name);

  nlohmann::ordered_json segs = nlohmann::ordered_json::array();
  std::string tail;
  for (const ElfSegment& s : elf.segments) {
    segs.push_back({{"index", s.index},
                    {"vaddr", hex(s.vaddr)},
                    {"paddr", hex(s.paddr)},
                    {"memsz", s.memsz},
                    {"flags", perm_string(s.read, s.write, s.exec)},
                    {"sections", s.sections}});
    tail +=
        fmt::format("segment {}: vaddr {} paddr {} memsz {:#10x} {}  {}\n", s.index, hex(s.vaddr),
                    hex(s.paddr), s.memsz, perm_string(s.read, s.write, s.exec), s.sections);
    if (s.write && s.exec)
      std::cerr << fmt::format("ptkit image: warning: {}: segment {} is writable and executable\n",
                               a.elf, s.index);
  }
  nlohmann::ordered_json extra = {
      {"elf",
       {{"machine", machine_name(elf.machine)}, {"entry", hex(elf.entry)}, {"segments", segs}}}};
  emit_build(
      b, {a.out, a.dump, a.json, a.svg, fmt::format("{} ({})", a.elf, b.format.name())}, extra,
      fmt::format("{}: {}, entry {}\n{}", a.elf, machine_name(elf.machine), hex(elf.entry), tail));
  return kExitOk;
}

}  // namespace ptkit::tool
