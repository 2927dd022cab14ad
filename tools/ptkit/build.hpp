// `ptkit build`: a layout (layout.hpp) and a format become page tables in a
// host buffer standing for the table area's physical memory, built by the
// core (AddressSpace, early::map_image) with the bump allocator over the
// table area.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "dump.hpp"
#include "formats.hpp"
#include "layout.hpp"

namespace ptkit::tool {

/// One range the layout asked for, resolved for the format (an image
/// contributes one per section, a direct map one per RAM range).
struct Placed {
  std::string name;
  MapKind kind = MapKind::Fixed;
  u64 va = 0;
  u64 pa = 0;
  u64 size = 0;
  Attrs attrs{};
};

/// The TLB work the core asked for while building, as a sink on live tables
/// would have received it. Tables built from nothing need none: non-zero
/// figures mean a mapping replaced or restricted an earlier one.
struct TlbWork {
  u64 publishes = 0;      // barriers making entry writes visible to the walker
  u64 invalidations = 0;  // ranges invalidated
  u64 full_flushes = 0;
};

struct BuildResult {
  Format format;  // AArch64: with the half the layout's addresses are in
  u64 base = 0;   // physical base of the table area
  u64 root = 0;
  u64 used_bytes = 0;     // from base to the last table handed out
  std::vector<u64> area;  // the table area, as 64-bit words
  std::vector<Placed> placed;
  std::vector<Marker> markers;
  DumpResult walk;  // the tables read back by the reference walker
  TlbWork tlb;
  std::optional<u64> direct_map;  // the first direct map's va of physical 0

  [[nodiscard]] MemoryImage image() const;
};

/// Builds the tables. `format_option` (--format) overrides the layout's
/// `format`; an unknown one is a UsageError, an unknown one in the layout an
/// InputError. Everything wrong with the layout is an InputError naming its
/// file and line.
BuildResult build_layout(const Layout& layout, const std::optional<std::string>& format_option);

/// `build --json`: format, root, tables, tables_per_level, leaves,
/// table_bytes, tlb, the table area and the mappings.
nlohmann::ordered_json build_json(const BuildResult& b);
/// A one-paragraph summary for people (`build` without --json or --dump).
std::string build_summary(const BuildResult& b);
/// `--out FILE`: the used table area as a blob at FILE, and what a loader
/// needs to know about it twice: FILE.json for programs and FILE.h for C
/// (format, root, base, size, the root's valid entries, and per architecture
/// the register values the tables assume). All three or none are written.
void write_out(const BuildResult& b, const std::string& file);

/// What `build` and `image` were asked to print or write.
struct BuildOutputs {
  std::string out;  // --out FILE, or empty
  bool dump = false;
  bool json = false;
  std::string svg;    // --svg FILE, or empty
  std::string title;  // of the picture: what was built
};
/// --out and --svg, then one of --json (build_json with `extra`'s keys added), --dump
/// or the summary followed by `summary_tail`, on stdout.
void emit_build(const BuildResult& b, const BuildOutputs& o, const nlohmann::ordered_json& extra,
                const std::string& summary_tail);

}  // namespace ptkit::tool
