// Typed addresses (STYLE.md rule 1): PhysAddr and VirtAddr arithmetic and
// comparisons, alignment helpers, inclusive virtual ranges, and compile-time
// proof that the two address kinds never mix.
#include <gtest/gtest.h>

#include <compare>
#include <type_traits>

#include "ptkit/addr.hpp"

namespace ptkit::test {
namespace {

// ---- The two kinds do not convert into each other ---------------------------------

static_assert(!std::is_convertible_v<PhysAddr, VirtAddr>);
static_assert(!std::is_convertible_v<VirtAddr, PhysAddr>);
static_assert(!std::is_constructible_v<PhysAddr, VirtAddr>);
static_assert(!std::is_constructible_v<VirtAddr, PhysAddr>);
static_assert(!std::is_assignable_v<PhysAddr&, VirtAddr>);
static_assert(!std::is_assignable_v<VirtAddr&, PhysAddr>);

// A raw integer becomes an address only when spelled out; an address never
// silently becomes an integer.
static_assert(std::is_constructible_v<PhysAddr, u64>);
static_assert(!std::is_convertible_v<u64, PhysAddr>);
static_assert(!std::is_convertible_v<u64, VirtAddr>);
static_assert(!std::is_convertible_v<PhysAddr, u64>);
static_assert(!std::is_convertible_v<VirtAddr, u64>);

template <class A, class B>
concept Addable = requires(A a, B b) {
  a + b;
};
template <class A, class B>
concept Subtractable = requires(A a, B b) {
  a - b;
};
template <class A, class B>
concept PlusAssignable = requires(A a, B b) {
  a += b;
};
template <class A, class B>
concept EqualityComparable = requires(A a, B b) {
  a == b;
};
template <class A, class B>
concept Ordered = requires(A a, B b) {
  a < b;
};

// Mixing the kinds is ill-formed.
static_assert(!Addable<PhysAddr, VirtAddr>);
static_assert(!Addable<VirtAddr, PhysAddr>);
static_assert(!Subtractable<PhysAddr, VirtAddr>);
static_assert(!Subtractable<VirtAddr, PhysAddr>);
static_assert(!PlusAssignable<PhysAddr, VirtAddr>);
static_assert(!PlusAssignable<VirtAddr, PhysAddr>);
static_assert(!EqualityComparable<PhysAddr, VirtAddr>);
static_assert(!Ordered<PhysAddr, VirtAddr>);
// Two addresses of one kind cannot be added (only an address and a size).
static_assert(!Addable<PhysAddr, PhysAddr>);
static_assert(!Addable<VirtAddr, VirtAddr>);

// What is allowed, and what it yields: address + size is an address of the
// same kind, address - address is a size.
static_assert(Addable<PhysAddr, u64> && Addable<VirtAddr, u64>);
static_assert(std::is_same_v<decltype(PhysAddr{} + u64{}), PhysAddr>);
static_assert(std::is_same_v<decltype(VirtAddr{} + u64{}), VirtAddr>);
static_assert(std::is_same_v<decltype(PhysAddr{} - u64{}), PhysAddr>);
static_assert(std::is_same_v<decltype(VirtAddr{} - u64{}), VirtAddr>);
static_assert(std::is_same_v<decltype(PhysAddr{} - PhysAddr{}), u64>);
static_assert(std::is_same_v<decltype(VirtAddr{} - VirtAddr{}), u64>);

// The same operations are usable in constant expressions (freestanding code
// builds tables at compile time).
static_assert((PhysAddr(0x1000) + 0x234).value() == 0x1234);
static_assert(VirtAddr(0x5000) - VirtAddr(0x2000) == 0x3000);
static_assert(PhysAddr(0x1000) < PhysAddr(0x2000));
static_assert(VirtRange::of(VirtAddr(0x1000), 0x1000).last.value() == 0x1fff);

// ---- Arithmetic ---------------------------------------------------------------------

TEST(Addr, DefaultIsZero) {
  EXPECT_EQ(PhysAddr{}.value(), 0u);
  EXPECT_EQ(VirtAddr{}.value(), 0u);
}

TEST(Addr, AddAndSubtractBytes) {
  const PhysAddr pa(0x1000'0000);
  EXPECT_EQ((pa + 0x1234).value(), 0x1000'1234u);
  EXPECT_EQ((pa - 0x1000).value(), 0x0fff'f000u);
  EXPECT_EQ(pa.value(), 0x1000'0000u) << "operator+ and operator- must not modify the operand";

  VirtAddr va(0xffff'8000'0000'0000);
  va += 0x20'0000;
  EXPECT_EQ(va.value(), 0xffff'8000'0020'0000u);
  VirtAddr& ref = (va += 0x1000);
  EXPECT_EQ(&ref, &va) << "operator+= returns *this";
  EXPECT_EQ(va.value(), 0xffff'8000'0020'1000u);
}

TEST(Addr, DifferenceIsASize) {
  EXPECT_EQ(PhysAddr(0x5000) - PhysAddr(0x2000), 0x3000u);
  EXPECT_EQ(VirtAddr(0xffff'ffff'ffff'f000) - VirtAddr(0xffff'8000'0000'0000),
            0x0000'7fff'ffff'f000u);
  EXPECT_EQ(VirtAddr(0x1234) - VirtAddr(0x1234), 0u);
}

TEST(Addr, ArithmeticWrapsModulo2To64) {
  // Unsigned wrap-around, not undefined behaviour; callers check ranges.
  EXPECT_EQ((VirtAddr(0xffff'ffff'ffff'f000) + 0x1000).value(), 0u);
  EXPECT_EQ((PhysAddr(0) - 1).value(), 0xffff'ffff'ffff'ffffu);
  EXPECT_EQ(PhysAddr(0x1000) - PhysAddr(0x2000), 0xffff'ffff'ffff'f000u);
}

TEST(Addr, Comparisons) {
  const PhysAddr a(0x1000), b(0x2000), a2(0x1000);
  EXPECT_TRUE(a == a2);
  EXPECT_FALSE(a != a2);
  EXPECT_TRUE(a != b);
  EXPECT_TRUE(a < b);
  EXPECT_TRUE(a <= b);
  EXPECT_TRUE(a <= a2);
  EXPECT_FALSE(b < a);
  EXPECT_TRUE(b > a);
  EXPECT_TRUE(b >= a);
  EXPECT_EQ(a <=> b, std::strong_ordering::less);
  EXPECT_EQ(b <=> a, std::strong_ordering::greater);
  EXPECT_EQ(a <=> a2, std::strong_ordering::equal);

  // Ordering is unsigned: the upper half sorts above the lower half.
  const VirtAddr low(0x0000'7fff'ffff'ffff), high(0xffff'8000'0000'0000);
  EXPECT_TRUE(low < high);
  EXPECT_TRUE(VirtAddr(0) < VirtAddr(0xffff'ffff'ffff'ffff));
}

// ---- Alignment ----------------------------------------------------------------------

TEST(Addr, IsAligned) {
  EXPECT_TRUE(is_aligned(0, 4096));
  EXPECT_TRUE(is_aligned(0x1000, 4096));
  EXPECT_FALSE(is_aligned(0x1001, 4096));
  EXPECT_FALSE(is_aligned(0x0fff, 4096));
  EXPECT_FALSE(is_aligned(0x1800, 4096));
  EXPECT_TRUE(is_aligned(0x20'0000, 2 * MiB));
  EXPECT_FALSE(is_aligned(0x20'1000, 2 * MiB));
  EXPECT_TRUE(is_aligned(0x4000'0000, GiB));
  EXPECT_FALSE(is_aligned(0x2000'0000, GiB));
  EXPECT_TRUE(is_aligned(0xffff'ffff'ffff'f000, 4096));
  EXPECT_FALSE(is_aligned(0xffff'ffff'ffff'ffff, 2));
  // Alignment 1 accepts everything.
  EXPECT_TRUE(is_aligned(0x1235, 1));
  EXPECT_TRUE(is_aligned(0xffff'ffff'ffff'ffff, 1));
  // Every power of two against a value with exactly one bit set.
  for (unsigned bit = 0; bit < 64; ++bit) {
    const u64 v = u64{1} << bit;
    for (unsigned a = 0; a < 64; ++a)
      EXPECT_EQ(is_aligned(v, u64{1} << a), a <= bit) << "bit " << bit << " align 2^" << a;
  }
}

TEST(Addr, MemberIsAlignedMatchesFree) {
  EXPECT_TRUE(PhysAddr(0x20'0000).is_aligned(2 * MiB));
  EXPECT_FALSE(PhysAddr(0x20'1000).is_aligned(2 * MiB));
  EXPECT_TRUE(VirtAddr(0xffff'ffff'c000'0000).is_aligned(GiB));
  EXPECT_FALSE(VirtAddr(0xffff'ffff'e000'0000).is_aligned(GiB));
}

TEST(Addr, AlignDown) {
  EXPECT_EQ(align_down(0, 4096), 0u);
  EXPECT_EQ(align_down(0x1000, 4096), 0x1000u);
  EXPECT_EQ(align_down(0x1fff, 4096), 0x1000u);
  EXPECT_EQ(align_down(0x1001, 4096), 0x1000u);
  EXPECT_EQ(align_down(0x3f'ffff, 2 * MiB), 0x20'0000u);
  EXPECT_EQ(align_down(0x7fff'ffff, GiB), 0x4000'0000u);
  EXPECT_EQ(align_down(0xffff'ffff'ffff'ffff, 4096), 0xffff'ffff'ffff'f000u);
  EXPECT_EQ(align_down(0xffff'ffff'ffff'ffff, GiB), 0xffff'ffff'c000'0000u);
  EXPECT_EQ(align_down(0x1235, 1), 0x1235u);
  for (u64 v : {u64{0}, u64{1}, u64{0xfff}, u64{0x1000}, u64{0x12345678}, ~u64{0}}) {
    const u64 d = align_down(v, 4096);
    EXPECT_TRUE(is_aligned(d, 4096));
    EXPECT_LE(d, v);
    EXPECT_LT(v - d, 4096u);
  }
}

TEST(Addr, SizeConstants) {
  EXPECT_EQ(KiB, 1024u);
  EXPECT_EQ(MiB, 1024u * 1024u);
  EXPECT_EQ(GiB, 1024u * 1024u * 1024u);
  EXPECT_EQ(TiB, 1024u * GiB);
}

// ---- VirtRange ----------------------------------------------------------------------

TEST(VirtRange, OfIsInclusive) {
  const VirtRange r = VirtRange::of(VirtAddr(0x40'0000), 0x20'0000);
  EXPECT_EQ(r.first.value(), 0x40'0000u);
  EXPECT_EQ(r.last.value(), 0x5f'ffffu);
  const VirtRange one = VirtRange::of(VirtAddr(0x1234), 1);
  EXPECT_EQ(one.first, one.last);
}

TEST(VirtRange, OfReachesTopOfAddressSpaceWithoutOverflow) {
  // The last page of the address space: [0xffff'ffff'ffff'f000, 0xffff'ffff'ffff'ffff].
  const VirtRange top = VirtRange::of(VirtAddr(0xffff'ffff'ffff'f000), 0x1000);
  EXPECT_EQ(top.first.value(), 0xffff'ffff'ffff'f000u);
  EXPECT_EQ(top.last.value(), 0xffff'ffff'ffff'ffffu);
  EXPECT_LE(top.first, top.last);

  // The whole upper canonical half, and the whole 64-bit space.
  const VirtRange upper = VirtRange::of(VirtAddr(0xffff'8000'0000'0000), 0x0000'8000'0000'0000);
  EXPECT_EQ(upper.last.value(), 0xffff'ffff'ffff'ffffu);
  const VirtRange all{VirtAddr(0), VirtAddr(0xffff'ffff'ffff'ffff)};
  EXPECT_TRUE(all.overlaps(0, 0));
  EXPECT_TRUE(all.overlaps(0xffff'ffff'ffff'ffff, 0xffff'ffff'ffff'ffff));
}

TEST(VirtRange, Overlaps) {
  const VirtRange r{VirtAddr(0x1000), VirtAddr(0x1fff)};
  // Disjoint on either side, touching but not overlapping.
  EXPECT_FALSE(r.overlaps(0x0, 0xfff));
  EXPECT_FALSE(r.overlaps(0x2000, 0x2fff));
  EXPECT_FALSE(r.overlaps(0x0, 0x0));
  EXPECT_FALSE(r.overlaps(0x2000, 0xffff'ffff'ffff'ffff));
  // Inclusive ends: one shared byte is an overlap.
  EXPECT_TRUE(r.overlaps(0x0, 0x1000));
  EXPECT_TRUE(r.overlaps(0x1fff, 0x2fff));
  EXPECT_TRUE(r.overlaps(0x1fff, 0x1fff));
  EXPECT_TRUE(r.overlaps(0x1000, 0x1000));
  // Containment either way, and identity.
  EXPECT_TRUE(r.overlaps(0x1800, 0x18ff));
  EXPECT_TRUE(r.overlaps(0x0, 0xffff'ffff'ffff'ffff));
  EXPECT_TRUE(r.overlaps(0x1000, 0x1fff));
}

TEST(VirtRange, OverlapsAtTopOfAddressSpace) {
  const VirtRange top = VirtRange::of(VirtAddr(0xffff'ffff'ffff'f000), 0x1000);
  EXPECT_TRUE(top.overlaps(0xffff'ffff'ffff'ffff, 0xffff'ffff'ffff'ffff));
  EXPECT_TRUE(top.overlaps(0xffff'ffff'ffff'f000, 0xffff'ffff'ffff'f000));
  EXPECT_TRUE(top.overlaps(0xffff'8000'0000'0000, 0xffff'ffff'ffff'ffff));
  EXPECT_TRUE(top.overlaps(0, 0xffff'ffff'ffff'ffff));
  EXPECT_FALSE(top.overlaps(0xffff'8000'0000'0000, 0xffff'ffff'ffff'efff));
  EXPECT_FALSE(top.overlaps(0, 0));
  EXPECT_FALSE(top.overlaps(0, 0x0000'7fff'ffff'ffff));

  // A range starting at zero: nothing wraps around to meet it.
  const VirtRange bottom = VirtRange::of(VirtAddr(0), 0x1000);
  EXPECT_FALSE(bottom.overlaps(0xffff'ffff'ffff'f000, 0xffff'ffff'ffff'ffff));
  EXPECT_TRUE(bottom.overlaps(0, 0));
  EXPECT_FALSE(bottom.overlaps(0x1000, 0x1000));
}

TEST(VirtRange, OverlapsIsSymmetric) {
  // overlaps(a, b) on range r equals overlaps(r) on range [a, b], for a grid of
  // ranges including both ends of the address space.
  const u64 points[] = {0,
                        1,
                        0xfff,
                        0x1000,
                        0x1fff,
                        0x2000,
                        0x0000'7fff'ffff'ffff,
                        0xffff'8000'0000'0000,
                        0xffff'ffff'ffff'efff,
                        0xffff'ffff'ffff'f000,
                        0xffff'ffff'ffff'ffff};
  for (u64 a : points)
    for (u64 b : points) {
      if (a > b) continue;
      for (u64 c : points)
        for (u64 d : points) {
          if (c > d) continue;
          const VirtRange r1{VirtAddr(a), VirtAddr(b)};
          const VirtRange r2{VirtAddr(c), VirtAddr(d)};
          // Reference: brute-force interval intersection, max(lo) <= min(hi).
          const bool expected = (a > c ? a : c) <= (b < d ? b : d);
          EXPECT_EQ(r1.overlaps(c, d), expected)
              << std::hex << a << ".." << b << " vs " << c << ".." << d;
          EXPECT_EQ(r2.overlaps(a, b), expected);
        }
    }
}

}  // namespace
}  // namespace ptkit::test
