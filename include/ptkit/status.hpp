// Errors as values: every fallible operation returns a [[nodiscard]] Result
// whose failure names the operation, the address, the level and the reason.
#pragma once

#include <new>  // placement new; a freestanding header
#include <utility>

#include "ptkit/addr.hpp"

namespace ptkit {

/// Stops execution on a broken internal invariant. Never used for bad input,
/// which always gets an Error.
[[noreturn]] inline void invariant_failed() { __builtin_trap(); }
#define PTKIT_INVARIANT(cond)                 \
  do {                                        \
    if (!(cond)) ::ptkit::invariant_failed(); \
  } while (0)

enum class Op : u8 { Create, Map, Unmap, Protect, Query, Walk, Plan, Flush, Fault };

enum class Error : u8 {
  Unaligned,            // an address or size is not a multiple of the smallest page
  NonCanonical,         // the virtual range leaves the format's address space
  BadSize,              // zero, or the range wraps around
  PhysTooLarge,         // the physical range exceeds the format's output size
  LeafSizeUnsupported,  // a requested leaf size is not one the format or CPU has
  AttrUnsupported,      // the format cannot express these attributes
  AlreadyMapped,        // the range overlaps a mapping and the option says error
  NotMapped,            // the range has a hole and the option says error
  SplitForbidden,       // a superpage would have to be split and the option forbids it
  LiveRangeBroken,      // the update would make part of a live range invalid
  OutOfTables,          // the allocator cannot supply the tables the update needs
  BadConfig,            // a paging configuration the architecture does not define, or
                        // one the declared CPU cannot run
  TableUnreachable,     // an access policy cannot reach a page table: none covers its
                        // physical address, or every transient slot is in use
  WritableTable,        // a writable leaf over a page that holds (or may come to hold)
                        // a page table, in a format that forbids it (Xen PV)
};

constexpr const char* to_string(Error e) {
  switch (e) {
    case Error::Unaligned: return "address or size not aligned to the smallest page";
    case Error::NonCanonical: return "virtual range outside the format's address space";
    case Error::BadSize: return "size is zero or the range wraps around";
    case Error::PhysTooLarge: return "physical range exceeds the format's output address size";
    case Error::LeafSizeUnsupported: return "leaf size not supported by the format or CPU";
    case Error::AttrUnsupported: return "attributes cannot be expressed by the format";
    case Error::AlreadyMapped: return "range overlaps an existing mapping";
    case Error::NotMapped: return "range contains an unmapped hole";
    case Error::SplitForbidden: return "a superpage would have to be split";
    case Error::LiveRangeBroken: return "update would invalidate part of a live range";
    case Error::OutOfTables: return "allocator cannot supply the page tables needed";
    case Error::BadConfig: return "paging configuration not defined by the architecture or CPU";
    case Error::TableUnreachable:
      return "page table unreachable: no access policy covers it or no transient slot is free";
    case Error::WritableTable:
      return "writable mapping of a page that holds or may hold a page table";
  }
  return "unknown error";
}

constexpr const char* to_string(Op op) {
  switch (op) {
    case Op::Create: return "create";
    case Op::Map: return "map";
    case Op::Unmap: return "unmap";
    case Op::Protect: return "protect";
    case Op::Query: return "query";
    case Op::Walk: return "walk";
    case Op::Plan: return "plan";
    case Op::Fault: return "fault";
    case Op::Flush: return "flush";
  }
  return "unknown";
}

inline constexpr int kNoLevel = -1;

/// What went wrong, where. `va`/`pa` are the addresses the error is about
/// (the offending entry's range start where there is one); `level` is the
/// table level (0 = the smallest pages) or kNoLevel.
struct Failure {
  Op op = Op::Map;
  Error error = Error::BadSize;
  VirtAddr va;
  PhysAddr pa;
  int level = kNoLevel;
  u64 needed = 0;                 // OutOfTables: how many tables the update needed
  const char* subject = nullptr;  // what the caller named it (an image section, a range)
  u64 alignment = 0;              // Unaligned from a layout: the alignment required
};

/// Either a value or a Failure. Small and trivially usable in freestanding code.
template <class T>
class [[nodiscard]] Result {
 public:
  constexpr Result(T value)
      : ok_(true), value_(std::move(value)) {}              // NOLINT(google-explicit-constructor)
  constexpr Result(Failure f) : ok_(false), failure_(f) {}  // NOLINT(google-explicit-constructor)
  Result(Result&& other) noexcept : ok_(other.ok_) {
    if (ok_)
      new (&value_) T(std::move(other.value_));
    else
      failure_ = other.failure_;
  }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  Result& operator=(Result&& other) noexcept {
    if (this != &other) {
      this->~Result();
      new (this) Result(std::move(other));
    }
    return *this;
  }
  ~Result() {
    if (ok_) value_.~T();
  }

  [[nodiscard]] constexpr bool ok() const { return ok_; }
  constexpr explicit operator bool() const { return ok_; }
  constexpr T& value() {
    PTKIT_INVARIANT(ok_);
    return value_;
  }
  constexpr const T& value() const {
    PTKIT_INVARIANT(ok_);
    return value_;
  }
  constexpr T* operator->() { return &value(); }
  constexpr T& operator*() { return value(); }
  [[nodiscard]] constexpr const Failure& failure() const {
    PTKIT_INVARIANT(!ok_);
    return failure_;
  }
  [[nodiscard]] constexpr Error error() const { return failure().error; }

 private:
  bool ok_;
  union {
    T value_;
    Failure failure_;
  };
};

struct Ok {};

/// Result of an operation that returns nothing but success.
using Status = Result<Ok>;

}  // namespace ptkit
