// Options and reports of the AddressSpace operations.
#pragma once

#include "ptkit/addr.hpp"
#include "ptkit/attrs.hpp"
#include "ptkit/status.hpp"
#include "ptkit/tlb.hpp"

namespace ptkit {

/// A set of leaf sizes as the bitwise OR of the sizes (each a power of two):
/// `4 * KiB | 2 * MiB`. kAnyLeafSize lets the engine use every size the format
/// and CPU have.
using LeafSizes = u64;
inline constexpr LeafSizes kAnyLeafSize = ~u64{0};

/// What map() does where the range is already mapped.
enum class OnExisting : u8 {
  Error,    // fail with AlreadyMapped, nothing changed
  Replace,  // rewrite the existing translations (splitting superpages at the ends)
  Keep,     // leave existing translations, map only the holes
};

/// What unmap()/protect() do where the range has unmapped holes.
enum class OnHole : u8 { Error, Skip };

/// Whether the operation performs its TLB work before returning, or returns
/// it in a FlushToken (break-before-make sequences are never deferred).
enum class TlbMode : u8 { FlushNow, Defer };

/// Virtual ranges that must never become invalid during an update, not even
/// for the instant of a break-before-make: the tables being edited, the stack,
/// the code doing the update.
struct LiveRanges {
  const VirtRange* ranges = nullptr;
  unsigned count = 0;

  [[nodiscard]] constexpr bool intersects(u64 first, u64 last) const {
    for (unsigned i = 0; i < count; ++i)
      if (ranges[i].overlaps(first, last)) return true;
    return false;
  }
};

// Shattering: an update that covers only part of a superpage must split it
// into a table first, which takes a table page and, where the format needs a
// break (Arm without FEAT_BBM level 2), makes the whole superpage invalid for
// an instant. That is never done silently: the caller grants it per call with
// allow_split, and even then the split is refused (LiveRangeBroken) when the
// break would touch a live range or the table being edited. A split that
// cannot get its table fails before any write (SplitForbidden / OutOfTables).

struct MapOptions {
  LeafSizes leaf_sizes = kAnyLeafSize;
  OnExisting existing = OnExisting::Error;
  bool allow_split = false;     // Replace may split a live superpage (see Shattering)
  bool merge = false;           // fold full, uniform tables back into superpages
  bool contiguous_hint = true;  // set the format's contiguous hint on aligned
                                // runs this map writes whole
  LiveRanges live{};
  TlbMode tlb = TlbMode::FlushNow;
};

struct UnmapOptions {
  OnHole holes = OnHole::Skip;
  bool allow_split = false;
  LiveRanges live{};
  TlbMode tlb = TlbMode::FlushNow;
};

struct ProtectOptions {
  OnHole holes = OnHole::Error;
  bool allow_split = false;
  bool merge = false;
  LeafSizes leaf_sizes = kAnyLeafSize;  // sizes a merge may produce
  LiveRanges live{};
  TlbMode tlb = TlbMode::FlushNow;
};

/// Counts of what an operation did (or, from plan(), would do).
struct OpStats {
  u64 tables_needed = 0;  // reserved before the first write
  u64 tables_allocated = 0;
  u64 tables_freed = 0;
  u64 leaves_written = 0;  // leaves created, changed or removed
  u64 splits = 0;
  u64 merges = 0;
  u64 breaks = 0;         // break-before-make sequences
  u64 invalidations = 0;  // by-address invalidations issued (or owed)
  u64 full_flushes = 0;
};

/// One item of map_each(): where a page (or leaf) goes and what it maps.
struct PageMap {
  VirtAddr va;
  PhysAddr pa;
};

/// How far a batch (map_each, unmap_each) got: the first `done` items were
/// applied, each as its own update; if `failed`, the next one failed with
/// `failure`, changed nothing, and the rest were not tried. With
/// TlbMode::Defer, `token` holds what the items done still owe (pending even
/// when the batch failed part way: the done items' work is owed all the same).
struct [[nodiscard]] BatchOutcome {
  u64 done = 0;
  bool failed = false;
  Failure failure{};
  FlushToken token{};  // pending only with TlbMode::Defer
};

/// Successful result of map/unmap/protect.
struct [[nodiscard]] Outcome {
  OpStats stats;
  FlushToken token;  // pending only with TlbMode::Defer
};

/// One leaf translation, as query() and walk() report it.
struct Mapping {
  VirtAddr va;   // first address the leaf maps
  PhysAddr pa;   // its output address
  u64 size = 0;  // bytes the leaf maps
  unsigned level = 0;
  Attrs attrs;
  u64 kept = 0;  // format-specific bits (accessed, dirty, software bits)
};

/// Consecutive leaves coalesced, as walk_ranges() reports them: virtual and
/// output addresses both contiguous, the same attributes throughout (leaf
/// sizes and kept bits may differ inside).
struct MappedRange {
  VirtAddr va;   // first address of the first leaf
  PhysAddr pa;   // its output address
  u64 size = 0;  // bytes the leaves map together
  Attrs attrs;
  constexpr bool operator==(const MappedRange&) const = default;
};

}  // namespace ptkit
