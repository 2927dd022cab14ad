// The table allocators (STYLE.md rules 7 and 13): reservations are the only
// thing that can fail, take() hands out reserved pages, release() returns
// them, and FailingAllocator refuses exactly the reservation that contains its
// N-th page without touching the allocator it wraps.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <set>
#include <vector>

#include "ptkit/alloc.hpp"

namespace ptkit::test {
namespace {

constexpr u64 kPage = kTablePageSize;
static_assert(kPage == 4096);

static_assert(TableAllocator<BumpAllocator>);
static_assert(TableAllocator<StaticPoolAllocator<70>>);
static_assert(TableAllocator<FreeListAllocator<OffsetAccess>>);
static_assert(TableAllocator<FailingAllocator<FreeListAllocator<OffsetAccess>>>);
static_assert(TableAllocator<FailingAllocator<BumpAllocator>>);
static_assert(ZeroTrackingAllocator<FailingAllocator<FreeListAllocator<OffsetAccess>>>);
static_assert(!ZeroTrackingAllocator<StaticPoolAllocator<70>>);
static_assert(LookaheadAllocator<BumpAllocator>);
static_assert(LookaheadAllocator<FreeListAllocator<OffsetAccess>>);
static_assert(LookaheadAllocator<FailingAllocator<BumpAllocator>>);
static_assert(!LookaheadAllocator<StaticPoolAllocator<70>>);

// ---- BumpAllocator -----------------------------------------------------------------------

constexpr PhysAddr kBumpBase(0x0010'0000);

TEST(BumpAllocator, ReserveIsLimitedToThePages) {
  BumpAllocator a(kBumpBase, 8);
  EXPECT_EQ(a.pages_free(), 8u);
  EXPECT_FALSE(a.reserve(9));
  EXPECT_TRUE(a.reserve(0));
  EXPECT_TRUE(a.reserve(5));
  EXPECT_FALSE(a.reserve(4)) << "5 + 4 reserved exceeds 8 pages";
  EXPECT_TRUE(a.reserve(3));
  EXPECT_FALSE(a.reserve(1));
  EXPECT_TRUE(a.reserve(0));
  EXPECT_EQ(a.next(), kBumpBase) << "reserve() hands out nothing";
}

TEST(BumpAllocator, FailedReserveReservesNothing) {
  BumpAllocator a(kBumpBase, 4);
  EXPECT_FALSE(a.reserve(5));
  EXPECT_TRUE(a.reserve(4)) << "a refused reservation must not count";
}

TEST(BumpAllocator, TakeHandsOutConsecutivePagesInOrder) {
  BumpAllocator a(kBumpBase, 4);
  ASSERT_TRUE(a.reserve(4));
  for (u64 i = 0; i < 4; ++i) {
    EXPECT_EQ(a.take(), kBumpBase + i * kPage) << i;
    EXPECT_EQ(a.next(), kBumpBase + (i + 1) * kPage);
    EXPECT_EQ(a.pages_free(), 3 - i);
  }
  EXPECT_FALSE(a.reserve(1));
  EXPECT_TRUE(a.reserve(0));
}

TEST(BumpAllocator, HonoursPageSize) {
  BumpAllocator a(PhysAddr(0x4000'0000), 3, 16 * KiB);
  EXPECT_EQ(a.pages_free(), 3u);
  ASSERT_TRUE(a.reserve(3));
  EXPECT_EQ(a.take(), PhysAddr(0x4000'0000));
  EXPECT_EQ(a.take(), PhysAddr(0x4000'4000));
  EXPECT_EQ(a.take(), PhysAddr(0x4000'8000));
  EXPECT_FALSE(a.reserve(1));
}

TEST(BumpAllocator, GiveBackUnusedReturnsTheSurplus) {
  BumpAllocator a(kBumpBase, 6);
  ASSERT_TRUE(a.reserve(5));
  EXPECT_EQ(a.take(), kBumpBase);
  EXPECT_EQ(a.take(), kBumpBase + kPage);
  EXPECT_FALSE(a.reserve(2)) << "3 still reserved, 1 unreserved";
  a.give_back_unused();
  EXPECT_EQ(a.pages_free(), 4u);
  EXPECT_TRUE(a.reserve(4)) << "the 3 unused pages are available again";
  EXPECT_EQ(a.take(), kBumpBase + 2 * kPage) << "taken pages stay taken";
  EXPECT_EQ(a.leaked(), 0u);
}

TEST(BumpAllocator, ReleasingTheLastPageRewinds) {
  BumpAllocator a(kBumpBase, 4);
  ASSERT_TRUE(a.reserve(3));
  const PhysAddr p0 = a.take(), p1 = a.take(), p2 = a.take();
  a.give_back_unused();
  a.release(p2);
  EXPECT_EQ(a.next(), p2);
  EXPECT_EQ(a.pages_free(), 2u);
  a.release(p1);  // now the last again: rewinds like a stack
  EXPECT_EQ(a.next(), p1);
  EXPECT_EQ(a.leaked(), 0u);
  ASSERT_TRUE(a.reserve(3));
  EXPECT_EQ(a.take(), p1) << "a rewound page is handed out again";
  EXPECT_EQ(a.take(), p2);
  EXPECT_EQ(a.take(), kBumpBase + 3 * kPage);
  EXPECT_NE(p0, p1);
}

TEST(BumpAllocator, AZeroedRangeIsZeroUntilAPageComesBack) {
  BumpAllocator unknown(kBumpBase, 4);
  ASSERT_TRUE(unknown.reserve(1));
  EXPECT_FALSE(unknown.take_page().zeroed) << "nothing is known of the range";

  BumpAllocator a(kBumpBase, 4, kPage, PageContents::Zeroed);
  ASSERT_TRUE(a.reserve(2));
  const TakenPage p0 = a.take_page(), p1 = a.take_page();
  EXPECT_EQ(p0.pa, kBumpBase);
  EXPECT_TRUE(p0.zeroed);
  EXPECT_TRUE(p1.zeroed);
  a.give_back_unused();
  a.release(p1.pa);  // rewinds: the page comes back with whatever it holds
  ASSERT_TRUE(a.reserve(2));
  const TakenPage again = a.take_page();
  EXPECT_EQ(again.pa, p1.pa);
  EXPECT_FALSE(again.zeroed) << "a page handed out before is not known zero";
  EXPECT_TRUE(a.take_page().zeroed) << "a page never handed out still is";
}

TEST(BumpAllocator, OtherReleasesAreCountedAsLeaked) {
  BumpAllocator a(kBumpBase, 4);
  ASSERT_TRUE(a.reserve(3));
  const PhysAddr p0 = a.take(), p1 = a.take(), p2 = a.take();
  a.give_back_unused();
  a.release(p0);  // not the last page: cannot be reused
  EXPECT_EQ(a.leaked(), 1u);
  EXPECT_EQ(a.next(), p2 + kPage);
  a.release(p1);
  EXPECT_EQ(a.leaked(), 2u);
  EXPECT_EQ(a.next(), p2 + kPage);
  EXPECT_EQ(a.pages_free(), 1u);
  a.release(p2);  // the last page: rewinds, not leaked
  EXPECT_EQ(a.leaked(), 2u);
  EXPECT_EQ(a.next(), p2);
}

TEST(BumpAllocator, ReleaseDuringAReservationDoesNotRewind) {
  // A rewind under an open reservation would move next() under the engine's
  // feet; the page is counted as leaked instead.
  BumpAllocator a(kBumpBase, 4);
  ASSERT_TRUE(a.reserve(2));
  const PhysAddr p0 = a.take();
  a.release(p0);
  EXPECT_EQ(a.leaked(), 1u);
  EXPECT_EQ(a.next(), p0 + kPage);
  EXPECT_EQ(a.take(), p0 + kPage) << "the reservation still holds one page";
}

TEST(BumpAllocator, UpcomingNamesThePagesTakeWillReturn) {
  BumpAllocator a(kBumpBase, 4);
  EXPECT_EQ(a.upcoming(0), kBumpBase);
  EXPECT_EQ(a.upcoming(3), kBumpBase + 3 * kPage);
  EXPECT_EQ(a.upcoming(4), kNoPage) << "past the last page";
  ASSERT_TRUE(a.reserve(2));
  const PhysAddr second = a.upcoming(1);
  a.take();
  EXPECT_EQ(a.take(), second);
  EXPECT_EQ(a.upcoming(1), kBumpBase + 3 * kPage);
  EXPECT_EQ(a.upcoming(2), kNoPage);
}

// ---- StaticPoolAllocator ------------------------------------------------------------------

constexpr PhysAddr kPoolBase(0x0200'0000);

TEST(StaticPoolAllocator, NotAMultipleOf64NeverHandsOutAPagePastN) {
  StaticPoolAllocator<70> pool(kPoolBase);
  EXPECT_FALSE(pool.reserve(71));
  ASSERT_TRUE(pool.reserve(70));
  std::set<u64> seen;
  for (unsigned i = 0; i < 70; ++i) {
    const PhysAddr pa = pool.take();
    ASSERT_GE(pa, kPoolBase);
    const u64 index = (pa - kPoolBase) / kPage;
    EXPECT_TRUE(pa.is_aligned(kPage));
    EXPECT_LT(index, 70u) << "page " << index << " is past the pool";
    EXPECT_TRUE(seen.insert(index).second) << "page " << index << " handed out twice";
  }
  EXPECT_EQ(seen.size(), 70u);
  EXPECT_EQ(*seen.rbegin(), 69u);
  EXPECT_EQ(pool.pages_in_use(), 70u);
  EXPECT_FALSE(pool.reserve(1));
  EXPECT_TRUE(pool.reserve(0));
}

TEST(StaticPoolAllocatorDeathTest, TakeBeyondNTrapsInsteadOfHandingOutPageN) {
  // The bits past N in the last bitmap word are marked used: even an engine
  // that wrongly takes without a reservation never gets page 70 or above.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        StaticPoolAllocator<70> pool(kPoolBase);
        if (!pool.reserve(70)) std::abort();
        for (unsigned i = 0; i < 70; ++i) (void)pool.take();
        const PhysAddr pa = pool.take();  // no reservation left
        std::fprintf(stderr, "handed out page %llu\n",
                     static_cast<unsigned long long>((pa - kPoolBase) / kPage));
      },
      "");
}

TEST(StaticPoolAllocator, TakesLowestFreePageFirst) {
  StaticPoolAllocator<70> pool(kPoolBase);
  ASSERT_TRUE(pool.reserve(3));
  EXPECT_EQ(pool.take(), kPoolBase);
  EXPECT_EQ(pool.take(), kPoolBase + kPage);
  EXPECT_EQ(pool.take(), kPoolBase + 2 * kPage);
}

TEST(StaticPoolAllocator, ReusesReleasedPages) {
  StaticPoolAllocator<70> pool(kPoolBase);
  ASSERT_TRUE(pool.reserve(70));
  std::vector<PhysAddr> pages;
  for (unsigned i = 0; i < 70; ++i) pages.push_back(pool.take());
  // Free one page in each bitmap word, including the partial last word.
  pool.release(pages[5]);
  pool.release(pages[66]);
  EXPECT_EQ(pool.pages_in_use(), 68u);
  EXPECT_FALSE(pool.reserve(3));
  ASSERT_TRUE(pool.reserve(2));
  EXPECT_EQ(pool.take(), pages[5]);
  EXPECT_EQ(pool.take(), pages[66]);
  EXPECT_EQ(pool.pages_in_use(), 70u);
  EXPECT_FALSE(pool.reserve(1));

  // Release everything: the whole pool comes back, still never past N.
  for (PhysAddr pa : pages) pool.release(pa);
  EXPECT_EQ(pool.pages_in_use(), 0u);
  ASSERT_TRUE(pool.reserve(70));
  for (unsigned i = 0; i < 70; ++i) EXPECT_EQ(pool.take(), kPoolBase + u64{i} * kPage);
}

TEST(StaticPoolAllocator, ReserveCountsReservedAndUsedPages) {
  StaticPoolAllocator<70> pool(kPoolBase);
  ASSERT_TRUE(pool.reserve(60));
  EXPECT_FALSE(pool.reserve(11));
  EXPECT_TRUE(pool.reserve(10));
  EXPECT_FALSE(pool.reserve(1));
  pool.give_back_unused();
  EXPECT_EQ(pool.pages_in_use(), 0u);
  ASSERT_TRUE(pool.reserve(70));
  for (int i = 0; i < 65; ++i) (void)pool.take();
  pool.give_back_unused();
  EXPECT_EQ(pool.pages_in_use(), 65u);
  EXPECT_FALSE(pool.reserve(6));
  ASSERT_TRUE(pool.reserve(5));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(pool.take(), kPoolBase + u64(65 + i) * kPage);
}

TEST(StaticPoolAllocator, ExactMultiplesOf64AndSmallPools) {
  StaticPoolAllocator<64> p64(kPoolBase);
  ASSERT_TRUE(p64.reserve(64));
  EXPECT_FALSE(p64.reserve(1));
  PhysAddr last;
  for (int i = 0; i < 64; ++i) last = p64.take();
  EXPECT_EQ(last, kPoolBase + 63 * kPage);

  StaticPoolAllocator<1> p1(kPoolBase);
  EXPECT_FALSE(p1.reserve(2));
  ASSERT_TRUE(p1.reserve(1));
  EXPECT_EQ(p1.take(), kPoolBase);
  p1.release(kPoolBase);
  ASSERT_TRUE(p1.reserve(1));
  EXPECT_EQ(p1.take(), kPoolBase);

  StaticPoolAllocator<129> p129(kPoolBase, 2 * MiB);
  ASSERT_TRUE(p129.reserve(129));
  for (int i = 0; i < 128; ++i) (void)p129.take();
  EXPECT_EQ(p129.take(), kPoolBase + 128 * 2 * MiB) << "page size and the one-bit last word";
  EXPECT_FALSE(p129.reserve(1));
}

// ---- FreeListAllocator over real host memory ----------------------------------------------

/// Host memory standing in for physical pages at a non-zero physical base, so
/// that mixing up host and physical addresses shows.
class HostPages {
 public:
  static constexpr u64 kDefaultBase = 0x1000'0000;

  explicit HostPages(u64 pages, u64 phys_base = kDefaultBase) : base_(phys_base) {
    host_ = static_cast<u8*>(std::aligned_alloc(kPage, pages * kPage));
    if (host_ == nullptr) std::abort();
    std::memset(host_, 0xA5, pages * kPage);
  }
  ~HostPages() { std::free(host_); }
  HostPages(const HostPages&) = delete;
  HostPages& operator=(const HostPages&) = delete;

  /// Physical = host - offset: OffsetAccess adds the offset back.
  [[nodiscard]] OffsetAccess access() const {
    return OffsetAccess{reinterpret_cast<u64>(host_) - base_};
  }
  [[nodiscard]] PhysAddr base() const { return PhysAddr(base_); }
  [[nodiscard]] PhysAddr page(u64 i) const { return PhysAddr(base_ + i * kPage); }
  [[nodiscard]] u64* host(PhysAddr pa) const {
    return reinterpret_cast<u64*>(host_ + (pa.value() - base_));
  }

 private:
  u64 base_;
  u8* host_ = nullptr;
};

using FreeList = FreeListAllocator<OffsetAccess>;

TEST(FreeListAllocator, StartsEmpty) {
  HostPages mem(4);
  FreeList fl(mem.access());
  EXPECT_EQ(fl.pages_free(), 0u);
  EXPECT_FALSE(fl.reserve(1));
  EXPECT_TRUE(fl.reserve(0));
}

TEST(FreeListAllocator, AddRangeHandsOutPagesInAddressOrder) {
  HostPages mem(8);
  FreeList fl(mem.access());
  fl.add_range(mem.base(), 8);
  EXPECT_EQ(fl.pages_free(), 8u);
  ASSERT_TRUE(fl.reserve(8));
  for (u64 i = 0; i < 8; ++i) EXPECT_EQ(fl.take(), mem.page(i)) << i;
  EXPECT_EQ(fl.pages_free(), 0u);
  EXPECT_FALSE(fl.reserve(1));
}

TEST(FreeListAllocator, LinksLiveInTheFreePagesThroughTheAccessPolicy) {
  HostPages mem(3);
  FreeList fl(mem.access());
  fl.add_range(mem.base(), 3);
  // Each free page's first word holds the physical address of the next one;
  // the last holds the empty list (0). Nothing else is written.
  EXPECT_EQ(mem.host(mem.page(0))[0], mem.page(1).value());
  EXPECT_EQ(mem.host(mem.page(1))[0], mem.page(2).value());
  EXPECT_EQ(mem.host(mem.page(2))[0], 0u);
  EXPECT_EQ(mem.host(mem.page(0))[1], 0xa5a5'a5a5'a5a5'a5a5u);
}

TEST(FreeListAllocator, APageAtPhysicalZeroIsAnOrdinaryPage) {
  // The list is counted, not terminated by a null address: physical page 0
  // (identity-mapped boot memory) can be handed out like any other.
  HostPages mem(3, 0);
  FreeList fl(mem.access());
  fl.add_range(mem.base(), 3);
  ASSERT_TRUE(fl.reserve(2));
  EXPECT_EQ(fl.take(), PhysAddr(0));
  EXPECT_EQ(fl.take(), PhysAddr(0x1000));
  fl.release(PhysAddr(0));
  ASSERT_TRUE(fl.reserve(2));
  EXPECT_EQ(fl.take(), PhysAddr(0));
  EXPECT_EQ(fl.take(), PhysAddr(0x2000));
  EXPECT_EQ(fl.pages_free(), 0u);
}

TEST(FreeListAllocator, ReleaseIsLastInFirstOut) {
  HostPages mem(6);
  FreeList fl(mem.access());
  fl.add_range(mem.base(), 6);
  ASSERT_TRUE(fl.reserve(6));
  std::vector<PhysAddr> taken;
  for (int i = 0; i < 6; ++i) taken.push_back(fl.take());
  fl.give_back_unused();
  fl.release(taken[2]);
  fl.release(taken[4]);
  fl.release(taken[0]);
  EXPECT_EQ(fl.pages_free(), 3u);
  ASSERT_TRUE(fl.reserve(3));
  EXPECT_EQ(fl.take(), taken[0]);
  EXPECT_EQ(fl.take(), taken[4]);
  EXPECT_EQ(fl.take(), taken[2]);
  EXPECT_EQ(fl.pages_free(), 0u);
}

TEST(FreeListAllocator, ReleasedPagesGoBeforeTheRemainingRange) {
  HostPages mem(4);
  FreeList fl(mem.access());
  fl.add_range(mem.base(), 4);
  ASSERT_TRUE(fl.reserve(2));
  const PhysAddr a = fl.take();
  const PhysAddr b = fl.take();
  EXPECT_EQ(a, mem.page(0));
  EXPECT_EQ(b, mem.page(1));
  fl.release(a);
  ASSERT_TRUE(fl.reserve(3));
  EXPECT_EQ(fl.take(), a);
  EXPECT_EQ(fl.take(), mem.page(2));
  EXPECT_EQ(fl.take(), mem.page(3));
}

TEST(FreeListAllocator, ReserveTakeAndGiveBack) {
  HostPages mem(5);
  FreeList fl(mem.access());
  fl.add_range(mem.base(), 5);
  ASSERT_TRUE(fl.reserve(3));
  EXPECT_FALSE(fl.reserve(3)) << "3 reserved + 3 > 5 free";
  ASSERT_TRUE(fl.reserve(2));
  EXPECT_FALSE(fl.reserve(1));
  EXPECT_EQ(fl.pages_free(), 5u) << "reserving takes nothing off the list";
  (void)fl.take();
  EXPECT_EQ(fl.pages_free(), 4u);
  EXPECT_FALSE(fl.reserve(1)) << "4 free, 4 still reserved";
  fl.give_back_unused();
  EXPECT_TRUE(fl.reserve(4));
  EXPECT_FALSE(fl.reserve(1));
}

TEST(FreeListAllocator, SeveralRangesAndPageSize) {
  // Two disjoint ranges of 8 KiB "pages" (only the pages' first words are
  // touched, so a 4 KiB-backed host region of twice the size holds them).
  HostPages mem(8);
  FreeList fl(mem.access(), 2 * kPage);
  fl.add_range(mem.page(4), 2);  // pages 4 and 6
  fl.add_range(mem.page(0), 2);  // pages 0 and 2, now first
  EXPECT_EQ(fl.pages_free(), 4u);
  ASSERT_TRUE(fl.reserve(4));
  EXPECT_EQ(fl.take(), mem.page(0));
  EXPECT_EQ(fl.take(), mem.page(2));
  EXPECT_EQ(fl.take(), mem.page(4));
  EXPECT_EQ(fl.take(), mem.page(6));
}

TEST(FreeListAllocator, ManyCyclesKeepTheCountAndNeverDuplicate) {
  constexpr u64 kPages = 64;
  HostPages mem(kPages);
  FreeList fl(mem.access());
  fl.add_range(mem.base(), kPages);
  std::vector<PhysAddr> held;
  std::set<u64> held_set;
  u64 state = 12345;
  for (int step = 0; step < 5000; ++step) {
    state = state * 6364136223846793005u + 1442695040888963407u;
    const bool take = held.empty() || (held.size() < kPages && (state >> 60) < 9);
    if (take) {
      ASSERT_TRUE(fl.reserve(1));
      const PhysAddr pa = fl.take();
      ASSERT_GE(pa, mem.base());
      ASSERT_LT(pa, mem.page(kPages));
      ASSERT_TRUE(held_set.insert(pa.value()).second) << "page handed out twice";
      held.push_back(pa);
    } else {
      const size_t i = (state >> 32) % held.size();
      fl.release(held[i]);
      held_set.erase(held[i].value());
      held[i] = held.back();
      held.pop_back();
    }
    ASSERT_EQ(fl.pages_free() + held.size(), kPages);
  }
}

TEST(FreeListAllocator, ZeroedPagesAreHandedOutAllZeroAndReleasedOnesAreNot) {
  constexpr u64 kPages = 6;
  HostPages mem(kPages);
  for (u64 i = 0; i < kPages; ++i) std::memset(mem.host(mem.page(i)), 0, kPage);
  FreeList fl(mem.access());
  fl.add_range(mem.page(0), 3, PageContents::Zeroed);
  fl.add_range(mem.page(3), 3);  // Unknown: goes first
  ASSERT_TRUE(fl.reserve(6));
  for (u64 i = 3; i < 6; ++i) {
    const TakenPage t = fl.take_page();
    EXPECT_EQ(t.pa, mem.page(i));
    EXPECT_FALSE(t.zeroed) << i;
  }
  std::vector<PhysAddr> zeroed;
  for (u64 i = 0; i < 3; ++i) {
    const TakenPage t = fl.take_page();
    EXPECT_EQ(t.pa, mem.page(i));
    EXPECT_TRUE(t.zeroed) << i;
    const u64* words = mem.host(t.pa);
    for (u64 w = 0; w < kPage / sizeof(u64); ++w)
      ASSERT_EQ(words[w], 0u) << "page " << i << " word " << w << ": the link was not cleared";
    zeroed.push_back(t.pa);
  }
  // A page given back may hold anything (a freed table, the link): not zero.
  fl.release(zeroed[1]);
  ASSERT_TRUE(fl.reserve(1));
  const TakenPage back = fl.take_page();
  EXPECT_EQ(back.pa, zeroed[1]);
  EXPECT_FALSE(back.zeroed);
}

TEST(FreeListAllocator, TakeAndTakePageAgree) {
  HostPages mem(4);
  FreeList fl(mem.access());
  fl.add_range(mem.base(), 4, PageContents::Zeroed);
  ASSERT_TRUE(fl.reserve(4));
  EXPECT_EQ(fl.take(), mem.page(0));
  EXPECT_EQ(mem.host(mem.page(0))[0], 0u) << "take() clears the link of a zeroed page too";
  EXPECT_EQ(fl.take_page().pa, mem.page(1));
  EXPECT_EQ(fl.take(), mem.page(2));
  EXPECT_EQ(fl.pages_free(), 1u);
}

/// PTKIT_SEED from the environment, or a fresh seed; printed for replay.
u64 seed_for_test() {
  if (const char* env = std::getenv("PTKIT_SEED")) return std::strtoull(env, nullptr, 0);
  return std::random_device{}() | (u64{std::random_device{}()} << 32);
}

TEST(FreeListAllocator, UpcomingFollowsTheListAsPagesComeAndGo) {
  // A model of the list beside the allocator: takes pop the front, releases
  // push there. upcoming(n) must name model[n] whatever came before it
  // (its cursor moves with the list), and nothing past the end.
  constexpr u64 kPages = 48;
  HostPages mem(kPages);
  FreeList fl(mem.access());
  std::deque<u64> model;
  fl.add_range(mem.base(), kPages / 2, PageContents::Zeroed);
  for (u64 i = 0; i < kPages / 2; ++i) model.push_back(mem.page(i).value());
  u64 next_range = kPages / 2;
  std::vector<u64> held;
  const u64 seed = seed_for_test();
  std::printf("seed %llu (PTKIT_SEED replays)\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  u64 n = 0;
  for (int step = 0; step < 20000; ++step) {
    switch (rng() % 6) {
      case 0:
      case 1:  // ask for the next one, as a batch does
        n = rng() % 4 == 0 ? rng() % (model.size() + 2) : n + 1;
        if (n < model.size()) {
          ASSERT_EQ(fl.upcoming(n).value(), model[n]) << "step " << step << " n " << n;
        } else {
          ASSERT_EQ(fl.upcoming(n), kNoPage) << "step " << step << " n " << n;
        }
        break;
      case 2:
      case 3:
        if (model.empty()) break;
        ASSERT_TRUE(fl.reserve(1));
        ASSERT_EQ(fl.take().value(), model.front()) << "step " << step;
        held.push_back(model.front());
        model.pop_front();
        n = n == 0 ? 0 : n - 1;
        break;
      case 4:
        if (held.empty()) break;
        {
          const size_t i = rng() % held.size();
          if (rng() % 2 == 0) {
            fl.release(PhysAddr(held[i]));
          } else {
            std::memset(mem.host(PhysAddr(held[i])), 0, kPage);
            fl.release_zeroed(PhysAddr(held[i]));
          }
          model.push_front(held[i]);
          held[i] = held.back();
          held.pop_back();
          ++n;
        }
        break;
      default:
        if (next_range == kPages) break;
        fl.add_range(mem.page(next_range), 1);
        model.push_front(mem.page(next_range).value());
        ++next_range;
        ++n;
        break;
    }
    ASSERT_EQ(fl.pages_free(), model.size());
  }
}

// ---- FailingAllocator -----------------------------------------------------------------------

TEST(FailingAllocator, RefusesExactlyTheReservationHoldingTheNthPage) {
  // For every N and every way of reserving in chunks of 1..3: the reservation
  // that would include page N (counting from 1) fails; all before succeed.
  for (u64 n = 1; n <= 8; ++n) {
    for (u64 chunk = 1; chunk <= 3; ++chunk) {
      HostPages mem(16);
      FreeList inner(mem.access());
      inner.add_range(mem.base(), 16);
      FailingAllocator<FreeList> failing(inner, n);
      u64 handed = 0;
      while (true) {
        const bool includes_n = handed < n && n <= handed + chunk;
        const bool ok = failing.reserve(chunk);
        ASSERT_EQ(ok, !includes_n) << "N " << n << " chunk " << chunk << " handed " << handed;
        if (!ok) break;
        for (u64 i = 0; i < chunk; ++i) EXPECT_EQ(failing.take(), mem.page(handed + i));
        handed += chunk;
      }
      EXPECT_TRUE(failing.failed());
      EXPECT_LT(handed, n);
      EXPECT_GE(handed + chunk, n);
    }
  }
}

TEST(FailingAllocator, RefusalDoesNotTouchTheInnerAllocator) {
  HostPages mem(8);
  FreeList inner(mem.access());
  inner.add_range(mem.base(), 8);
  FailingAllocator<FreeList> failing(inner, 3);
  ASSERT_TRUE(failing.reserve(2));
  EXPECT_EQ(failing.take(), mem.page(0));
  EXPECT_EQ(failing.take(), mem.page(1));
  failing.give_back_unused();
  EXPECT_FALSE(failing.failed());
  const u64 link_before = mem.host(mem.page(2))[0];

  EXPECT_FALSE(failing.reserve(4)) << "pages 3..6 include the 3rd";
  EXPECT_TRUE(failing.failed());
  // The inner list is as it was, and it holds no reservation: all 6 remaining
  // pages can be reserved directly.
  EXPECT_EQ(inner.pages_free(), 6u);
  EXPECT_EQ(mem.host(mem.page(2))[0], link_before);
  EXPECT_TRUE(inner.reserve(6)) << "the refused reservation leaked into the inner allocator";
  EXPECT_FALSE(inner.reserve(1));
  inner.give_back_unused();
}

TEST(FailingAllocator, ZeroNeverFailsAndInnerRefusalPassesThrough) {
  HostPages mem(4);
  FreeList inner(mem.access());
  inner.add_range(mem.base(), 4);
  FailingAllocator<FreeList> never(inner, 0);
  ASSERT_TRUE(never.reserve(4));
  for (u64 i = 0; i < 4; ++i) EXPECT_EQ(never.take(), mem.page(i));
  EXPECT_FALSE(never.reserve(1)) << "the inner allocator is empty";
  EXPECT_FALSE(never.failed()) << "an inner refusal is not an injected failure";
  // Release goes to the inner allocator.
  never.release(mem.page(2));
  EXPECT_EQ(inner.pages_free(), 1u);
  EXPECT_TRUE(never.reserve(1));
  EXPECT_EQ(never.take(), mem.page(2));
}

TEST(FailingAllocator, GiveBackUnusedReachesTheInnerAllocator) {
  HostPages mem(4);
  FreeList inner(mem.access());
  inner.add_range(mem.base(), 4);
  FailingAllocator<FreeList> failing(inner, 100);
  ASSERT_TRUE(failing.reserve(4));
  EXPECT_FALSE(inner.reserve(1));
  failing.give_back_unused();
  EXPECT_TRUE(inner.reserve(4));
}

TEST(FailingAllocator, CountsReservedPagesNotTakenOnes) {
  // "Counting from 1 across all reservations": a reserved but unused page
  // still counts towards N.
  HostPages mem(8);
  FreeList inner(mem.access());
  inner.add_range(mem.base(), 8);
  FailingAllocator<FreeList> failing(inner, 4);
  ASSERT_TRUE(failing.reserve(3));
  (void)failing.take();
  failing.give_back_unused();
  EXPECT_FALSE(failing.reserve(1)) << "pages 1-3 were reserved; this is the 4th";
}

TEST(FailingAllocator, WrapsOtherAllocators) {
  BumpAllocator bump(PhysAddr(0x10'0000), 10);
  FailingAllocator<BumpAllocator> failing(bump, 2);
  ASSERT_TRUE(failing.reserve(1));
  EXPECT_EQ(failing.take(), PhysAddr(0x10'0000));
  EXPECT_FALSE(failing.reserve(1));
  EXPECT_EQ(bump.next(), PhysAddr(0x10'1000));
  EXPECT_TRUE(bump.reserve(9)) << "the bump allocator kept no reservation";
}

}  // namespace
}  // namespace ptkit::test
