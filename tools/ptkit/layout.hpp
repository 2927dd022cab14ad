// Layout files (docs/layout-format.md): a TOML description of physical
// memory, the table area and the mappings `ptkit build` turns into tables.
// Parsing checks the file's shape and values; whether the mappings fit a
// paging format is decided later (build.cpp), because --format may change it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "util.hpp"

namespace ptkit::tool {

/// Where a message about a layout points: "file:line".
struct Where {
  std::string file;
  unsigned line = 0;
  [[nodiscard]] std::string str() const;
};

enum class MemKind { Ram, Device, Reserved };
const char* to_string(MemKind k);

struct MemRange {
  MemKind kind = MemKind::Ram;
  u64 base = 0;
  u64 size = 0;
  Where where;
};

/// A virtual address as written: absolute ("0xffff888000000000"), from the
/// top of the address space ("-2G": 2^64 - 2 GiB, the same in every format)
/// or from the start of the format's upper half ("upper", "upper+64G").
struct VaExpr {
  enum class From { Zero, Top, Upper } from = From::Zero;
  u64 offset = 0;
  std::string text;
};

enum class MapKind { Direct, Image, Fixed, Mmio };
const char* to_string(MapKind k);

struct SectionSpec {
  std::string name;
  /// From the image's va. Layout files leave it unset (sections are back to
  /// back); `ptkit image` sets it for segments with gaps between them.
  std::optional<u64> offset;
  u64 size = 0;
  std::string perm;
  Where where;
};

struct MapSpec {
  std::string name;
  MapKind kind = MapKind::Fixed;
  VaExpr va;
  u64 pa = 0;    // image: load address; direct: unused
  u64 size = 0;  // fixed/mmio; image: the sum of its sections
  std::string perm;
  std::string mem;
  bool global = true;
  std::optional<u64> max_page;
  u64 align = 0;  // image: the alignment promised for load address and sections; 0 = page
  std::vector<SectionSpec> sections;
  Where where;
};

struct Layout {
  std::string file;
  std::optional<std::string> format;
  Where format_where;
  u64 table_base = 0;
  u64 table_size = 0;
  Where tables_where;
  /// What to tell the user when the table area is too small (`ptkit image`
  /// sizes it with an option, not a [tables] entry).
  std::string grow_tables = "raise [tables] size";
  std::vector<MemRange> memory;
  std::vector<MapSpec> maps;
};

/// Most bytes a table area may have: the tool builds it in host memory.
inline constexpr u64 kMaxTableArea = u64{1} << 30;

/// Parses a layout; throws InputError "file:line: what was expected".
Layout parse_layout_text(const std::string& text, const std::string& file);
Layout parse_layout_file(const std::string& path);

/// The built-in example (`ptkit build` without LAYOUT), the text of
/// examples/kernel.toml.
const std::string& builtin_layout_text();
inline constexpr const char* kBuiltinName = "<built-in kernel example>";

}  // namespace ptkit::tool
