// How the engine reaches a table from its physical address. The core never
// casts a physical address itself: boot code with identity tables, a kernel
// with a direct map and the host simulator each hand in their own policy.
#pragma once

#include <concepts>

#include "ptkit/addr.hpp"

namespace ptkit {

/// `table(pa)` returns a pointer through which the table at `pa` (one page of
/// 64-bit entries) can be read and written until `done(ptr)`.
template <class A>
concept TableAccess = requires(A a, PhysAddr pa, u64* ptr) {
  { a.table(pa) } -> std::same_as<u64*>;
  {a.done(ptr)};
};

/// An access whose table() is a pure computation with no slot to give back
/// (done() does nothing), so a pointer may be formed just to prefetch it.
template <class A>
concept FixedTableAccess = TableAccess<A> && A::kFixed;

/// Tables are reachable at their physical address (identity-mapped boot code,
/// or physical memory before paging is on).
struct IdentityAccess {
  // The one place a physical address becomes a pointer: identity mapping is
  // this policy's whole contract.
  u64* table(PhysAddr pa) const { return reinterpret_cast<u64*>(pa.value()); }  // NOLINT
  void done(u64*) const {}
  static constexpr bool kFixed = true;
};

/// Tables are reachable at physical + offset: a kernel's direct map, the
/// image (offset = -load offset) or host memory standing in for RAM.
struct OffsetAccess {
  u64 offset = 0;
  // The policy's contract: all table memory sits at a fixed offset.
  u64* table(PhysAddr pa) const { return reinterpret_cast<u64*>(pa.value() + offset); }  // NOLINT
  void done(u64*) const {}
  static constexpr bool kFixed = true;
};

static_assert(TableAccess<IdentityAccess>);
static_assert(TableAccess<OffsetAccess>);
static_assert(FixedTableAccess<OffsetAccess>);

}  // namespace ptkit
