// Typed addresses and size arithmetic.
//
// PhysAddr and VirtAddr never convert into each other: a page-table bug that
// mixes them up does not compile. Adding a byte count moves an address;
// subtracting two addresses of the same kind gives a byte count. Whether a
// virtual address is canonical is a question for the paging format.
#pragma once

#include <compare>  // operator<=>; a freestanding header
#include <cstdint>

namespace ptkit {

using u64 = std::uint64_t;
using u32 = std::uint32_t;
using u16 = std::uint16_t;
using u8 = std::uint8_t;

inline constexpr u64 KiB = u64{1} << 10;
inline constexpr u64 MiB = u64{1} << 20;
inline constexpr u64 GiB = u64{1} << 30;
inline constexpr u64 TiB = u64{1} << 40;

/// True when `value` is a multiple of `alignment` (a power of two).
constexpr bool is_aligned(u64 value, u64 alignment) { return (value & (alignment - 1)) == 0; }
constexpr u64 align_down(u64 value, u64 alignment) { return value & ~(alignment - 1); }

template <class Tag>
class Address {
 public:
  constexpr Address() = default;
  constexpr explicit Address(u64 value) : value_(value) {}

  [[nodiscard]] constexpr u64 value() const { return value_; }
  [[nodiscard]] constexpr bool is_aligned(u64 alignment) const {
    return ptkit::is_aligned(value_, alignment);
  }

  constexpr Address operator+(u64 bytes) const { return Address(value_ + bytes); }
  constexpr Address operator-(u64 bytes) const { return Address(value_ - bytes); }
  constexpr u64 operator-(Address other) const { return value_ - other.value_; }
  constexpr Address& operator+=(u64 bytes) {
    value_ += bytes;
    return *this;
  }
  constexpr auto operator<=>(const Address&) const = default;

 private:
  u64 value_ = 0;
};

struct PhysTag {};
struct VirtTag {};
using PhysAddr = Address<PhysTag>;
using VirtAddr = Address<VirtTag>;

/// A virtual range [first, last], inclusive so that a range may end at the
/// top of the address space without overflowing.
struct VirtRange {
  VirtAddr first;
  VirtAddr last;

  [[nodiscard]] constexpr bool overlaps(u64 lo, u64 hi) const {
    return first.value() <= hi && lo <= last.value();
  }
  /// Precondition: size > 0 (an empty range has no inclusive form).
  static constexpr VirtRange of(VirtAddr start, u64 size) {
    return VirtRange{start, start + (size - 1)};
  }
};

}  // namespace ptkit
