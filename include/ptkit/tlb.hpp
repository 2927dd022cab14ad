// TLB work. The engine accumulates the invalidations an update needs as one
// coalesced range while it walks, and hands them to a sink in the order the
// architecture requires: publish (table writes visible to the walker), the
// invalidations, complete (invalidations finished, context synchronised).
#pragma once

#include <concepts>

#include "ptkit/addr.hpp"

namespace ptkit {

/// Invalidate translations of [first, last]. `stride_shift` is log2 of the
/// smallest leaf that changed (a sink invalidating by address steps by it);
/// `global` says global translations are among them; `tables` says table
/// entries were removed or replaced, so cached walks must go too (Arm: TLBI
/// VAE1 rather than VALE1).
struct TlbRange {
  VirtAddr first;
  VirtAddr last;
  unsigned stride_shift = 12;
  bool global = false;
  bool tables = false;
  constexpr bool operator==(const TlbRange&) const = default;
};

template <class S>
concept TlbSink = requires(S s, const TlbRange& r, bool global) {
  {s.publish()};  // prior entry writes become visible to the walker
  {s.invalidate(r)};
  {s.invalidate_all(global)};
  {s.complete()};  // prior invalidations have finished
};

/// For callers that manage the TLB themselves (or have none yet).
struct NullSink {
  void publish() {}
  void invalidate(const TlbRange&) {}
  void invalidate_all(bool) {}
  void complete() {}
};
static_assert(TlbSink<NullSink>);

/// Forwards every call to a recorder with the same four members.
template <class Recorder>
class RecordingSink {
 public:
  explicit RecordingSink(Recorder& recorder) : recorder_(&recorder) {}
  void publish() { recorder_->publish(); }
  void invalidate(const TlbRange& r) { recorder_->invalidate(r); }
  void invalidate_all(bool global) { recorder_->invalidate_all(global); }
  void complete() { recorder_->complete(); }

 private:
  Recorder* recorder_;
};

/// The invalidations one update has accumulated: a bounding range.
class TlbBatch {
 public:
  void add(u64 first, u64 last, unsigned stride_shift, bool global, bool tables) {
    if (empty_) {
      first_ = first;
      last_ = last;
      stride_shift_ = stride_shift;
      empty_ = false;
    } else {
      if (first < first_) first_ = first;
      if (last > last_) last_ = last;
      if (stride_shift < stride_shift_) stride_shift_ = stride_shift;
    }
    global_ = global_ || global;
    tables_ = tables_ || tables;
  }
  [[nodiscard]] bool empty() const { return empty_; }
  [[nodiscard]] TlbRange range() const {
    return TlbRange{VirtAddr(first_), VirtAddr(last_), stride_shift_, global_, tables_};
  }
  /// Invalidations by address this batch would take.
  [[nodiscard]] u64 invalidations() const {
    return empty_ ? 0 : ((last_ - first_) >> stride_shift_) + 1;
  }
  [[nodiscard]] bool global() const { return global_; }
  void clear() { *this = TlbBatch{}; }
  /// Grows this batch to cover `other` too.
  void add(const TlbBatch& other) {
    if (!other.empty_)
      add(other.first_, other.last_, other.stride_shift_, other.global_, other.tables_);
  }

 private:
  u64 first_ = 0;
  u64 last_ = 0;
  unsigned stride_shift_ = 0;
  bool global_ = false;
  bool tables_ = false;
  bool empty_ = true;
};

/// What a deferred update still owes: its invalidations, and the table pages
/// that may be freed only once they are done. Must be handed back to the
/// address space (flush or release_after_own_flush); dropping a pending token
/// traps, because the pages it holds would leak and stale translations stay.
class [[nodiscard]] FlushToken {
 public:
  static constexpr unsigned kMaxPendingFrees = 32;

  // Not defaulted: a value-initialized token (`FlushToken{}`) would zero its
  // 256 bytes of free slots first, once per update and per move.
  // NOLINTNEXTLINE(modernize-use-equals-default,cppcoreguidelines-pro-type-member-init)
  FlushToken() noexcept {}
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-member-init): the move copies the slots in use
  FlushToken(FlushToken&& other) noexcept { *this = static_cast<FlushToken&&>(other); }
  FlushToken& operator=(FlushToken&& other) noexcept {
    batch_ = other.batch_;
    count_ = other.count_;
    for (unsigned i = 0; i < count_; ++i) frees_[i] = other.frees_[i];
    other.batch_.clear();
    other.count_ = 0;
    return *this;
  }
  FlushToken(const FlushToken&) = delete;
  FlushToken& operator=(const FlushToken&) = delete;
  ~FlushToken() {
    if (pending()) __builtin_trap();
  }

  [[nodiscard]] bool pending() const { return !batch_.empty() || count_ != 0; }
  [[nodiscard]] const TlbBatch& batch() const { return batch_; }
  [[nodiscard]] unsigned pending_frees() const { return count_; }

  // Engine side.
  TlbBatch& batch() { return batch_; }
  [[nodiscard]] bool frees_full() const { return count_ == kMaxPendingFrees; }
  /// `zeroed`: the engine knows every entry of the page is 0 (it cleared
  /// them all and kept count), so the allocator may hand it out as zero.
  void add_free(PhysAddr pa, bool zeroed = false) {
    frees_[count_++] = pa.value() | (zeroed ? kZeroedBit : 0);
  }
  /// Calls release(pa, zeroed) for each page held, and forgets them.
  template <class Fn>
  void take_frees(Fn&& release) {
    for (unsigned i = 0; i < count_; ++i)
      release(PhysAddr(frees_[i] & ~kZeroedBit), (frees_[i] & kZeroedBit) != 0);
    count_ = 0;
  }
  void clear_batch() { batch_.clear(); }
  /// Whether `other`'s pages fit beside this token's.
  [[nodiscard]] bool can_absorb(const FlushToken& other) const {
    return count_ + other.count_ <= kMaxPendingFrees;
  }
  /// Takes over what `other` owes: its range joins this one's, its pages are
  /// added (precondition: can_absorb(other)).
  void absorb(FlushToken&& other) {
    batch_.add(other.batch_);
    for (unsigned i = 0; i < other.count_; ++i) frees_[count_++] = other.frees_[i];
    other.batch_.clear();
    other.count_ = 0;
  }

 private:
  static constexpr u64 kZeroedBit = 1;  // table pages are page aligned

  TlbBatch batch_;
  u64 frees_[kMaxPendingFrees];  // the first count_ are set; no need to clear the rest
  unsigned count_ = 0;
};

}  // namespace ptkit
