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

/// Physical memory read from a file: one segment for a raw image (offset 0
/// is physical `--base`), one per PT_LOAD segment for an ELF core.
struct MemoryImage {
  struct Segment {
    u64 pa = 0;
    u64 size = 0;
    const unsigned char* data = nullptr;
    u64 file_offset = 0;  // where `data` starts in the file, for messages
  };
  std::vector<Segment> segments;  // sorted by pa, disjoint
  std::string name;               // for messages: the file, or "table area"

  /// A raw image: `size` bytes at `data` holding physical `base` onwards.
  static MemoryImage raw(const unsigned char* data, u64 size, u64 base, std::string name);
  /// The segment holding `pa`, or nullptr.
  [[nodiscard]] const Segment* segment_of(u64 pa) const;
  /// "pa 0x1000-0x2000 (4096 bytes from --base)" or "3 segments, pa ...".
  [[nodiscard]] std::string extent() const;
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

/// An entry of the tables that is wrong in itself, recorded by an audit walk
/// (`dump --audit`) where a plain dump stops or warns.
struct TableProblem {
  enum class Kind {
    Reserved,  // an encoding the walker rejects (reserved bits, a block where none may be)
    Outside,   // points to a table that is not (wholly) inside the image
    Loop,      // points to a table higher up its own walk
    Shared,    // points to a table another entry already points to
  } kind = Kind::Reserved;
  unsigned level = 0;  // of the entry
  u64 table = 0;       // pa of the table holding the entry
  u64 index = 0;
  u64 va = 0;  // the first address the entry translates
  u64 raw = 0;
  u64 target = 0;    // Outside, Loop, Shared: the table pointed to
  std::string text;  // what and where, for people
};

/// A table the walk read, at its physical address.
struct TablePage {
  u64 pa = 0;
  u64 bytes = 0;
};

struct DumpResult {
  std::vector<Run> runs;
  std::vector<TablePage> tables;             // each once, in walk order
  std::map<unsigned, u64> tables_per_level;  // level -> tables
  std::map<u64, u64> leaves_per_size;        // leaf size -> descriptors
  u64 reserved_entries = 0;                  // encodings the walker rejects, skipped
  std::string first_reserved;                // where the first one is
  std::vector<TableProblem> problems;        // audit walks only
  u64 problems_omitted = 0;                  // beyond kMaxProblems of one kind
};

struct WalkLimits {
  u64 max_entries = u64{1} << 26;  // descriptors read in total
  u64 max_leaves = u64{1} << 24;
};

/// Problems of one kind an audit walk keeps; the rest are only counted.
inline constexpr u64 kMaxProblems = 1000;

enum class WalkMode {
  Strict,  // a table outside the image or a loop is an InputError
  Audit,   // those are TableProblems and their subtree is skipped; a table
           // two entries point to is walked once, at the first
};

/// Walks the tables rooted at `root`. Throws InputError for a root outside
/// the image, a walk beyond the limits and (Strict) a table outside the image
/// or a loop; UsageError for a root not aligned to its table.
DumpResult walk_tables(const MemoryImage& mem, u64 root, const Format& format,
                       const WalkLimits& limits = {}, WalkMode mode = WalkMode::Strict);

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
