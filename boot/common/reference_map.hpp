// What a test window should translate to, kept beside ptkit's tables by the
// randomized phase (random_checks.hpp): sorted, disjoint intervals of virtual
// addresses, each mapped linearly to physical memory with one set of
// attributes. Plain arrays and no ptkit code: it is what the tables built by
// ptkit are compared with, so it must not share their logic.
#pragma once

#include "ptkit/attrs.hpp"

namespace kernel {

struct RefInterval {
  ptkit::u64 va = 0;
  ptkit::u64 size = 0;
  ptkit::u64 pa = 0;
  ptkit::Attrs attrs{};

  [[nodiscard]] ptkit::u64 end() const { return va + size; }
  [[nodiscard]] ptkit::u64 pa_of(ptkit::u64 addr) const { return pa + (addr - va); }
};

/// At most `Capacity` intervals. Every update needs room for three more
/// (two cut at its ends, one inserted); without it the update changes
/// nothing and returns false, and the caller starts over with clear().
template <unsigned Capacity>
class ReferenceMap {
  using u64 = ptkit::u64;

 public:
  [[nodiscard]] bool has_room() const { return count_ + 3 <= Capacity; }
  [[nodiscard]] unsigned count() const { return count_; }
  [[nodiscard]] const RefInterval& operator[](unsigned i) const { return items_[i]; }
  void clear() { count_ = 0; }

  /// [va, va + size) now translates to [pa, pa + size) with `attrs`.
  bool map(u64 va, u64 size, u64 pa, ptkit::Attrs attrs) {
    if (!has_room()) return false;
    const unsigned first = cut_range(va, size);
    erase(first, first_at_or_after(va + size));
    insert(first, RefInterval{va, size, pa, attrs});
    coalesce_around(first, first + 1);
    return true;
  }

  /// Nothing in [va, va + size) is translated any more.
  bool unmap(u64 va, u64 size) {
    if (!has_room()) return false;
    const unsigned first = cut_range(va, size);
    erase(first, first_at_or_after(va + size));
    coalesce_around(first, first);
    return true;
  }

  /// Every translated part of [va, va + size) gets `change`; holes stay.
  bool protect(u64 va, u64 size, ptkit::AttrChange change) {
    if (!has_room()) return false;
    const unsigned first = cut_range(va, size);
    const unsigned last = first_at_or_after(va + size);
    for (unsigned i = first; i < last; ++i) items_[i].attrs = change.applied_to(items_[i].attrs);
    coalesce_around(first, last);
    return true;
  }

  /// The interval translating `va`, or nullptr.
  [[nodiscard]] const RefInterval* find(u64 va) const {
    const unsigned i = first_ending_after(va);
    return i < count_ && items_[i].va <= va ? &items_[i] : nullptr;
  }

  /// Calls fn(interval) for every interval that overlaps [va, va + size).
  template <class Fn>
  void for_each_in(u64 va, u64 size, Fn&& fn) const {
    for (unsigned i = first_ending_after(va); i < count_ && items_[i].va < va + size; ++i)
      fn(items_[i]);
  }

  /// Whether any address of [va, va + size) is translated.
  [[nodiscard]] bool any_in(u64 va, u64 size) const {
    const unsigned i = first_ending_after(va);
    return i < count_ && items_[i].va < va + size;
  }

 private:
  /// The first interval whose end lies above `va` (binary search).
  [[nodiscard]] unsigned first_ending_after(u64 va) const {
    unsigned lo = 0, hi = count_;
    while (lo < hi) {
      const unsigned mid = (lo + hi) / 2;
      if (items_[mid].end() <= va)
        lo = mid + 1;
      else
        hi = mid;
    }
    return lo;
  }
  /// The first interval starting at or above `va`.
  [[nodiscard]] unsigned first_at_or_after(u64 va) const {
    unsigned i = first_ending_after(va);
    while (i < count_ && items_[i].va < va) ++i;
    return i;
  }

  /// Splits the interval holding `at` (if any) so that one ends there.
  void cut(u64 at) {
    const unsigned i = first_ending_after(at);
    if (i == count_ || items_[i].va >= at) return;
    RefInterval tail = items_[i];
    tail.va = at;
    tail.pa = items_[i].pa_of(at);
    tail.size = items_[i].end() - at;
    items_[i].size = at - items_[i].va;
    insert(i + 1, tail);
  }
  /// Cuts at both ends; returns the index of the first interval inside.
  unsigned cut_range(u64 va, u64 size) {
    cut(va);
    cut(va + size);
    return first_at_or_after(va);
  }

  void insert(unsigned at, const RefInterval& item) {
    for (unsigned i = count_; i > at; --i) items_[i] = items_[i - 1];
    items_[at] = item;
    ++count_;
  }
  void erase(unsigned from, unsigned to) {
    const unsigned n = to - from;
    for (unsigned i = from; i + n < count_; ++i) items_[i] = items_[i + n];
    count_ -= n;
  }

  /// Joins neighbours in [from - 1, to] that continue each other (adjacent
  /// virtually and physically, same attributes), so the map stays small.
  void coalesce_around(unsigned from, unsigned to) {
    unsigned i = from == 0 ? 0 : from - 1;
    unsigned last = to < count_ ? to : count_ - 1;
    while (count_ != 0 && i < last) {
      RefInterval& a = items_[i];
      const RefInterval& b = items_[i + 1];
      if (a.end() == b.va && a.pa + a.size == b.pa && a.attrs == b.attrs) {
        a.size += b.size;
        erase(i + 1, i + 2);
        --last;
      } else {
        ++i;
      }
    }
  }

  RefInterval items_[Capacity];
  unsigned count_ = 0;
};

}  // namespace kernel
