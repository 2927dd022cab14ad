// Where table pages come from. The engine first reserve()s every page an
// update can need, so that nothing can fail once writing starts, then take()s
// them one by one, and finally give_back_unused() returns the surplus.
// release() returns a page that is no longer reachable by any walker.
#pragma once

#include <concepts>

#include "ptkit/access.hpp"
#include "ptkit/addr.hpp"

namespace ptkit {

template <class A>
concept TableAllocator = requires(A a, u64 n, PhysAddr pa) {
  { a.reserve(n) } -> std::same_as<bool>;  // false: not that many pages
  { a.take() } -> std::same_as<PhysAddr>;  // precondition: a page is reserved
  {a.release(pa)};
  {a.give_back_unused()};
};

inline constexpr u64 kTablePageSize = 4096;

/// What is known of the pages given to an allocator.
enum class PageContents : u8 {
  Unknown,  // must be cleared before use as a table
  Zeroed,   // every byte is zero (fresh memory from the OS, a cleared .bss pool)
};

/// A page handed out, and whether it is known to hold only zeros.
struct TakenPage {
  PhysAddr pa;
  bool zeroed = false;
};

/// Optional: an allocator that knows which of its pages are still zero. The
/// engine then writes only the non-zero entries of a new table (with a writer
/// that allows it: PlainWriter::kOmitsZeroFill), instead of clearing 4 KiB
/// that a scattered map mostly leaves empty.
template <class A>
concept ZeroTrackingAllocator = TableAllocator<A> && requires(A a) {
  { a.take_page() } -> std::same_as<TakenPage>;  // precondition: a page is reserved
};

/// Optional: an allocator that takes pages back as zero. The engine calls
/// `release_zeroed(pa)` instead of release(pa) for a table it knows to be all
/// zero: one whose entries it cleared one by one, keeping count of them
/// (EntryCountingAllocator), as a scattered unmap leaves its tables. Handed
/// out as zero again, such a page is reused without being cleared.
template <class A>
concept ZeroKeepingAllocator = TableAllocator<A> && requires(A a, PhysAddr pa) {
  {a.release_zeroed(pa)};
};

/// Optional: an allocator that can say which page its n-th next take()
/// returns (n = 0: the next one), or kNoPage when it cannot tell. A hint the
/// engine uses in batches to bring the spot of a fresh table it will write
/// toward the cache before it takes the page: the first write to a fresh
/// page, a cache and TLB miss, is most of a scattered map's time otherwise.
inline constexpr PhysAddr kNoPage{~u64{0}};
template <class A>
concept LookaheadAllocator = TableAllocator<A> && requires(A a, u64 n) {
  { a.upcoming(n) } -> std::same_as<PhysAddr>;
};

/// Optional: an allocator that keeps, beside the table pages it hands out,
/// a count of each page's valid entries for the engine (as a kernel keeps
/// page-table counts in its page descriptors). An unmap then knows a table
/// became empty without reading the whole table, which on a cold table is
/// most of a single-page unmap's cost. `entry_count(pa)` is the storage for
/// the page at `pa`, or nullptr where the allocator keeps none. The allocator
/// marks a page's count unknown when it hands the page out or takes it back;
/// the engine sets it when it builds a table there and keeps it exact while
/// it edits it, and reads any table whose count is unknown. Contract: while
/// such a table is in use, no one else changes which of its entries are valid.
inline constexpr u16 kUnknownEntryCount = 0xffff;

template <class A>
concept EntryCountingAllocator = TableAllocator<A> && requires(A a, PhysAddr pa) {
  { a.entry_count(pa) } -> std::same_as<u16*>;
};

/// Count storage for a contiguous range of pages, one u16 each, in memory
/// the caller provides (2 bytes per page: 0.05 % of the pages it covers).
class EntryCounts {
 public:
  constexpr EntryCounts() = default;
  /// `page_size`: a power of two.
  constexpr EntryCounts(PhysAddr base, u64 pages, u16* counts, u64 page_size = kTablePageSize)
      : base_(base),
        pages_(pages),
        counts_(counts),
        page_shift_(unsigned(__builtin_ctzll(page_size))) {
    for (u64 i = 0; i < pages; ++i) counts_[i] = kUnknownEntryCount;
  }
  [[nodiscard]] u16* of(PhysAddr pa) const {
    // One compare covers both ends: below base wraps around to a huge index.
    const u64 index = (pa - base_) >> page_shift_;
    return index < pages_ ? &counts_[index] : nullptr;
  }
  void forget(PhysAddr pa) const {
    if (u16* n = of(pa)) *n = kUnknownEntryCount;
  }

 private:
  PhysAddr base_;
  u64 pages_ = 0;
  u16* counts_ = nullptr;
  unsigned page_shift_ = 12;
};

/// Hands out consecutive pages of a physical range, the usual boot allocator.
/// It cannot reuse a released page in general (only the most recent one), so
/// it counts what it could not reuse: `leaked()` pages. Given a range known to
/// be zero, it says so of every page it has not handed out before.
class BumpAllocator {
 public:
  constexpr BumpAllocator(PhysAddr base, u64 pages, u64 page_size = kTablePageSize,
                          PageContents contents = PageContents::Unknown)
      : next_(base),
        end_(base + pages * page_size),
        zero_from_(contents == PageContents::Zeroed ? base : end_),
        page_size_(page_size) {}

  bool reserve(u64 n) {
    if (n > (end_ - next_) / page_size_ - reserved_) return false;
    reserved_ += n;
    return true;
  }
  PhysAddr take() { return take_page().pa; }
  TakenPage take_page() {
    --reserved_;
    const PhysAddr pa = next_;
    next_ += page_size_;
    const bool zeroed = pa >= zero_from_;
    if (zeroed) zero_from_ = next_;  // a page released and taken again is not
    return {pa, zeroed};
  }
  void release(PhysAddr pa) {
    if (pa + page_size_ == next_ && reserved_ == 0)
      next_ = pa;
    else
      ++leaked_;
  }
  void give_back_unused() { reserved_ = 0; }

  /// LookaheadAllocator: pages go out in address order.
  [[nodiscard]] PhysAddr upcoming(u64 n) const {
    return n < pages_free() ? next_ + n * page_size_ : kNoPage;
  }
  [[nodiscard]] u64 pages_free() const { return (end_ - next_) / page_size_; }
  [[nodiscard]] u64 leaked() const { return leaked_; }
  [[nodiscard]] PhysAddr next() const { return next_; }

 private:
  PhysAddr next_;
  PhysAddr end_;
  PhysAddr zero_from_;  // pages from here on have never been handed out
  u64 page_size_;
  u64 reserved_ = 0;
  u64 leaked_ = 0;
};

/// A fixed pool of N pages (typically an array inside the kernel image whose
/// physical base the caller knows), tracked by a bitmap held in the object.
template <unsigned N>
class StaticPoolAllocator {
 public:
  constexpr explicit StaticPoolAllocator(PhysAddr base, u64 page_size = kTablePageSize)
      : base_(base), page_size_(page_size) {
    for (unsigned w = 0; w < kWords; ++w) bitmap_[w] = initial_word(w);
  }

  bool reserve(u64 n) {
    if (n > N - used_ - reserved_) return false;
    reserved_ += n;
    return true;
  }
  PhysAddr take() {
    for (unsigned word = 0; word < kWords; ++word) {
      if (bitmap_[word] == ~u64{0}) continue;
      const unsigned bit = __builtin_ctzll(~bitmap_[word]);
      bitmap_[word] |= u64{1} << bit;
      --reserved_;
      ++used_;
      return base_ + (u64{word} * 64 + bit) * page_size_;
    }
    __builtin_trap();  // take() without a reservation: an engine bug
  }
  void release(PhysAddr pa) {
    const u64 index = (pa - base_) / page_size_;
    bitmap_[index / 64] &= ~(u64{1} << (index % 64));
    --used_;
  }
  void give_back_unused() { reserved_ = 0; }
  [[nodiscard]] u64 pages_in_use() const { return used_; }

 private:
  static constexpr unsigned kWords = (N + 63) / 64;
  static constexpr u64 initial_word(unsigned word) {
    // Bits past N are marked used so take() never returns them.
    const unsigned first = word * 64;
    if (first + 64 <= N) return 0;
    return ~u64{0} << (N - first);
  }
  PhysAddr base_;
  u64 page_size_;
  u64 used_ = 0;
  u64 reserved_ = 0;
  u64 bitmap_[kWords] = {};
};

/// A free list threaded through the free pages themselves, reached through an
/// access policy. Pages enter it with add_range() or release(). The link word
/// (the page's first entry) also says whether the rest of the page is zero:
/// take() clears that word again, so such a page is handed out all zero.
template <TableAccess Access>
class FreeListAllocator {
 public:
  constexpr explicit FreeListAllocator(Access access, u64 page_size = kTablePageSize)
      : access_(access), page_size_(page_size) {}

  void add_range(PhysAddr base, u64 pages, PageContents contents = PageContents::Unknown) {
    for (u64 i = pages; i-- > 0;) push(base + i * page_size_, contents == PageContents::Zeroed);
  }
  bool reserve(u64 n) {
    if (n > free_ - reserved_) return false;
    reserved_ += n;
    return true;
  }
  /// Keeps entry counts for the pages `counts` covers (EntryCountingAllocator).
  void keep_entry_counts(EntryCounts counts) { counts_ = counts; }
  [[nodiscard]] u16* entry_count(PhysAddr pa) const { return counts_.of(pa); }

  PhysAddr take() { return take_page().pa; }
  TakenPage take_page() {
    const PhysAddr pa = head_;
    counts_.forget(pa);
    u64* page = access_.table(pa);
    const u64 link = page[0];
    const bool zeroed = (link & kZeroedBit) != 0;
    if (zeroed) page[0] = 0;
    access_.done(page);
    head_ = PhysAddr(link & ~kZeroedBit);
    --reserved_;
    --free_;
    if (ahead_ != kNoCursor) ahead_ = ahead_ == 0 ? kNoCursor : ahead_ - 1;
    // The next take() starts with a read of the next page's link: on a
    // large pool that is a miss, which can overlap with the caller's work.
    if constexpr (FixedTableAccess<Access>)
      if (free_ != 0) __builtin_prefetch(access_.table(head_), 1);
    return {pa, zeroed};
  }
  // Called only after the page is unreachable and its TLB work is done, so
  // writing the link into it cannot be seen by a page walker.
  void release(PhysAddr pa) {
    counts_.forget(pa);
    push(pa, false);
  }
  /// release() of a page that is all zero (ZeroKeepingAllocator).
  void release_zeroed(PhysAddr pa) {
    counts_.forget(pa);
    push(pa, true);
  }
  void give_back_unused() { reserved_ = 0; }
  [[nodiscard]] u64 pages_free() const { return free_; }

  /// LookaheadAllocator. Follows the links from a cursor that stays in the
  /// list as pages come and go, so asking for n, then n + 1 as takes go on
  /// reads one link per call; the cursor's next link is brought toward the
  /// cache for the call after.
  PhysAddr upcoming(u64 n) {
    if (n >= free_) return kNoPage;
    if (ahead_ == kNoCursor || ahead_ > n) {
      cursor_ = head_;
      ahead_ = 0;
    }
    for (; ahead_ < n; ++ahead_) {
      u64* page = access_.table(cursor_);
      cursor_ = PhysAddr(page[0] & ~kZeroedBit);
      access_.done(page);
    }
    if constexpr (FixedTableAccess<Access>) __builtin_prefetch(access_.table(cursor_));
    return cursor_;
  }

 private:
  static constexpr u64 kZeroedBit = 1;  // links are page aligned
  static constexpr u64 kNoCursor = ~u64{0};

  void push(PhysAddr pa, bool zeroed) {
    u64* page = access_.table(pa);
    page[0] = head_.value() | (zeroed ? kZeroedBit : 0);
    access_.done(page);
    head_ = pa;
    ++free_;
    if (ahead_ != kNoCursor) ++ahead_;  // one more page before the cursor
  }

  Access access_;
  u64 page_size_;
  PhysAddr head_;
  u64 free_ = 0;
  u64 reserved_ = 0;
  EntryCounts counts_;
  PhysAddr cursor_;        // upcoming(): a page of the list,
  u64 ahead_ = kNoCursor;  // that many links after the head
};

/// Test allocator: wraps another and refuses the reservation that would hand
/// out the fail_at-th page (counting from 1 across all reservations).
template <TableAllocator Inner>
class FailingAllocator {
 public:
  FailingAllocator(Inner& inner, u64 fail_at) : inner_(inner), fail_at_(fail_at) {}

  bool reserve(u64 n) {
    if (fail_at_ != 0 && handed_ + n >= fail_at_) {
      failed_ = true;
      return false;
    }
    if (!inner_.reserve(n)) return false;
    handed_ += n;
    return true;
  }
  PhysAddr take() { return inner_.take(); }
  PhysAddr upcoming(u64 n) requires LookaheadAllocator<Inner> { return inner_.upcoming(n); }
  TakenPage take_page() requires ZeroTrackingAllocator<Inner> { return inner_.take_page(); }
  u16* entry_count(PhysAddr pa) requires EntryCountingAllocator<Inner> {
    return inner_.entry_count(pa);
  }
  void release(PhysAddr pa) { inner_.release(pa); }
  void release_zeroed(PhysAddr pa) requires ZeroKeepingAllocator<Inner> {
    inner_.release_zeroed(pa);
  }
  void give_back_unused() { inner_.give_back_unused(); }
  [[nodiscard]] bool failed() const { return failed_; }

 private:
  Inner& inner_;
  u64 fail_at_;
  u64 handed_ = 0;
  bool failed_ = false;
};

static_assert(TableAllocator<BumpAllocator>);
static_assert(TableAllocator<StaticPoolAllocator<8>>);
static_assert(TableAllocator<FreeListAllocator<OffsetAccess>>);
static_assert(ZeroTrackingAllocator<BumpAllocator>);
static_assert(ZeroTrackingAllocator<FreeListAllocator<OffsetAccess>>);
static_assert(EntryCountingAllocator<FreeListAllocator<OffsetAccess>>);
static_assert(ZeroKeepingAllocator<FreeListAllocator<OffsetAccess>>);

}  // namespace ptkit
