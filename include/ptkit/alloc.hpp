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

/// Hands out consecutive pages of a physical range, the usual boot allocator.
/// It cannot reuse a released page in general (only the most recent one), so
/// it counts what it could not reuse: `leaked()` pages.
class BumpAllocator {
 public:
  constexpr BumpAllocator(PhysAddr base, u64 pages, u64 page_size = kTablePageSize)
      : next_(base), end_(base + pages * page_size), page_size_(page_size) {}

  bool reserve(u64 n) {
    if (n > (end_ - next_) / page_size_ - reserved_) return false;
    reserved_ += n;
    return true;
  }
  PhysAddr take() {
    --reserved_;
    PhysAddr pa = next_;
    next_ += page_size_;
    return pa;
  }
  void release(PhysAddr pa) {
    if (pa + page_size_ == next_ && reserved_ == 0)
      next_ = pa;
    else
      ++leaked_;
  }
  void give_back_unused() { reserved_ = 0; }

  [[nodiscard]] u64 pages_free() const { return (end_ - next_) / page_size_; }
  [[nodiscard]] u64 leaked() const { return leaked_; }
  [[nodiscard]] PhysAddr next() const { return next_; }

 private:
  PhysAddr next_;
  PhysAddr end_;
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
/// access policy. Pages enter it with add_range() or release().
template <TableAccess Access>
class FreeListAllocator {
 public:
  constexpr explicit FreeListAllocator(Access access, u64 page_size = kTablePageSize)
      : access_(access), page_size_(page_size) {}

  void add_range(PhysAddr base, u64 pages) {
    for (u64 i = pages; i-- > 0;) release(base + i * page_size_);
  }
  bool reserve(u64 n) {
    if (n > free_ - reserved_) return false;
    reserved_ += n;
    return true;
  }
  PhysAddr take() {
    const PhysAddr pa = head_;
    u64* page = access_.table(pa);
    head_ = PhysAddr(page[0]);
    access_.done(page);
    --reserved_;
    --free_;
    return pa;
  }
  // Called only after the page is unreachable and its TLB work is done, so
  // writing the link into it cannot be seen by a page walker.
  void release(PhysAddr pa) {
    u64* page = access_.table(pa);
    page[0] = head_.value();
    access_.done(page);
    head_ = pa;
    ++free_;
  }
  void give_back_unused() { reserved_ = 0; }
  [[nodiscard]] u64 pages_free() const { return free_; }

 private:
  Access access_;
  u64 page_size_;
  PhysAddr head_;
  u64 free_ = 0;
  u64 reserved_ = 0;
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
  void release(PhysAddr pa) { inner_.release(pa); }
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

}  // namespace ptkit
