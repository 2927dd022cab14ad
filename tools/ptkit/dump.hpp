// Reading page tables back: `ptkit dump` on a memory image, and `build
// --dump` on the tables just built. The walk follows the simulator's
// reference walkers (sim/mmu.hpp), which share no code with the core's
// formats, so a build -> dump round trip checks the core against the
// manuals. The image is untrusted: every table read is bounds-checked, a table
// that reappears on its own walk is an error, and the work is bounded.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats.hpp"

namespace ptkit::tool {

/// Physical memory as a byte array: offset 0 is physical `base`.
struct MemoryImage {
  const unsigned char* data = nullptr;
  u64 size = 0;
  u64 base = 0;
  std::string name;  // for messages: the file, or "table area"
};

/// A maximal run of pages whose translation differs only by a constant
/// offset: same effective permissions, memory type, global bit and leaf level.
struct Run {
  u64 va = 0;
  u64 size = 0;
  u64 pa = 0;
  unsigned level = 0;
  u64 leaf_size = 0;
  bool read[2] = {}, write[2] = {}, exec[2] = {};  // effective; [0] kernel, [1] user
  bool global = false;
  unsigned mem_index = 0;
  /// The leaf's own permission bits where they differ from the effective
  /// ones (an upper level restricts them), else empty.
  std::string leaf_bits;

  [[nodiscard]] bool extends(const Run& next) const;
};

struct DumpResult {
  std::vector<Run> runs;
  std::map<unsigned, u64> tables_per_level;  // level -> tables
  std::map<u64, u64> leaves_per_size;        // leaf size -> descriptors
  u64 reserved_entries = 0;                  // encodings the walker rejects, skipped
  std::string first_reserved;                // where the first one is
};

struct WalkLimits {
  u64 max_entries = u64{1} << 26;  // descriptors read in total
  u64 max_leaves = u64{1} << 24;
};

/// Walks the tables rooted at `root`. Throws InputError for a table outside
/// the image, a loop, or a walk beyond the limits; UsageError for a root not
/// aligned to its table.
DumpResult walk_tables(const MemoryImage& mem, u64 root, const Format& format,
                       const WalkLimits& limits = {});

/// A section marker ("---[ name ]---") printed before the first run at or
/// above `va`.
struct Marker {
  u64 va = 0;
  std::string name;
};
/// The canonical halves of `format`: markers for `dump`.
std::vector<Marker> half_markers(const Format& format);

/// The ptdump-style text: one header, then one line per run with markers.
std::string dump_text(const DumpResult& d, const Format& format, std::vector<Marker> markers);
/// `dump --json`: an array of {va, size, pa, leaf, level, perms, user, global, mem}.
nlohmann::ordered_json dump_json(const DumpResult& d, const Format& format);
/// "rwx" from effective bits.
std::string perm_string(bool r, bool w, bool x);

}  // namespace ptkit::tool
