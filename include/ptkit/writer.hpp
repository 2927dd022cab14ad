// How an entry is stored. The engine distinguishes live tables (reachable by a
// page walker: each store must be single-copy atomic) from fresh tables that no
// walker can reach yet (plain stores, which the compiler may batch).
#pragma once

#include <concepts>

#include "ptkit/addr.hpp"

namespace ptkit {

/// Where a store goes, for writers that record or forward it (Xen PV needs the
/// machine address of the entry: table + 8 * index).
struct WriteSite {
  PhysAddr table;
  unsigned index = 0;
  unsigned level = 0;
};

template <class W>
concept EntryWriter = requires(W w, u64* slot, u64 value, WriteSite site) {
  {w.store(slot, value, site)};        // slot lives in a table walkers can reach
  {w.store_fresh(slot, value, site)};  // slot lives in a table not yet linked
};

struct PlainWriter {
  /// Optional for writers: a fresh entry that would be stored as 0 into a page
  /// the allocator handed out zeroed (ZeroTrackingAllocator) may be left
  /// unwritten. Writers that record or forward every store do not say this.
  static constexpr bool kOmitsZeroFill = true;
  // A relaxed atomic store is one 64-bit store: a walker never sees half an entry.
  void store(u64* slot, u64 value, const WriteSite&) const {
    __atomic_store_n(slot, value, __ATOMIC_RELAXED);
  }
  void store_fresh(u64* slot, u64 value, const WriteSite&) const { *slot = value; }
  /// Optional for writers: `count` consecutive fresh entries from `first`,
  /// the k-th holding value + k * delta (the engine's bulk fill).
  void store_fresh_run(u64* first, u64 count, u64 value, u64 delta) const {
    for (u64 k = 0; k < count; ++k) first[k] = value + k * delta;
  }
  /// Optional for writers: `count` consecutive live entries from `first`
  /// (`site` names the first) each become (old & keep) | set, one atomic
  /// store per entry (the engine's in-place protect of a run of leaves).
  void store_masked_run(u64* first, u64 count, u64 keep, u64 set, const WriteSite&) const {
    u64 k = 0;
    for (; k + 4 <= count; k += 4) {  // unrolled: the loop is the protect fast path's cost
      const u64 a = __atomic_load_n(&first[k], __ATOMIC_RELAXED);
      const u64 b = __atomic_load_n(&first[k + 1], __ATOMIC_RELAXED);
      const u64 c = __atomic_load_n(&first[k + 2], __ATOMIC_RELAXED);
      const u64 d = __atomic_load_n(&first[k + 3], __ATOMIC_RELAXED);
      __atomic_store_n(&first[k], (a & keep) | set, __ATOMIC_RELAXED);
      __atomic_store_n(&first[k + 1], (b & keep) | set, __ATOMIC_RELAXED);
      __atomic_store_n(&first[k + 2], (c & keep) | set, __ATOMIC_RELAXED);
      __atomic_store_n(&first[k + 3], (d & keep) | set, __ATOMIC_RELAXED);
    }
    for (; k < count; ++k)
      __atomic_store_n(&first[k], (__atomic_load_n(&first[k], __ATOMIC_RELAXED) & keep) | set,
                       __ATOMIC_RELAXED);
  }
};

/// Forwards every store to a recorder (`on_write(site, old, new, fresh)`)
/// before performing it, e.g. to build a trace for the rule checker.
template <class Recorder>
class RecordingWriter {
 public:
  explicit RecordingWriter(Recorder& recorder) : recorder_(&recorder) {}
  void store(u64* slot, u64 value, const WriteSite& site) {
    recorder_->on_write(site, *slot, value, false);
    __atomic_store_n(slot, value, __ATOMIC_RELAXED);
  }
  void store_fresh(u64* slot, u64 value, const WriteSite& site) {
    recorder_->on_write(site, *slot, value, true);
    *slot = value;
  }
  /// Records each entry of the run as its own store, in order.
  void store_masked_run(u64* first, u64 count, u64 keep, u64 set, const WriteSite& site) {
    for (u64 k = 0; k < count; ++k)
      store(&first[k], (first[k] & keep) | set,
            WriteSite{site.table, site.index + unsigned(k), site.level});
  }
  Recorder& recorder() { return *recorder_; }

 private:
  Recorder* recorder_;
};

static_assert(EntryWriter<PlainWriter>);

}  // namespace ptkit
