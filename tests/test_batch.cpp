// Batches of scattered updates (map_each, unmap_each): each item is exactly
// the map() or unmap() it stands for, with the same stores, TLB work and
// tables, in order; the batch stops at the first item that fails, which
// changes nothing; deferred TLB work gathers in one token. What a batch adds
// (reading ahead) must not be visible in the tables or the trace.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <vector>

#include "checked.hpp"
#include "support.hpp"

namespace ptkit::test {
namespace {

template <class Config>
class BatchTest : public ::testing::Test {};
TYPED_TEST_SUITE(BatchTest, AllFormats);

/// The two traces hold the same events: stores (where, old, new), publishes
/// and TLB work with the same ranges.
void expect_same_trace(const Recorder& a, const Recorder& b) {
  ASSERT_EQ(a.events.size(), b.events.size());
  for (size_t i = 0; i < a.events.size(); ++i) {
    const Event& x = a.events[i];
    const Event& y = b.events[i];
    ASSERT_EQ(x.kind, y.kind) << "event " << i;
    EXPECT_EQ(x.site.table, y.site.table) << "event " << i;
    EXPECT_EQ(x.site.index, y.site.index) << "event " << i;
    EXPECT_EQ(x.old_raw, y.old_raw) << "event " << i;
    EXPECT_EQ(x.new_raw, y.new_raw) << "event " << i;
    EXPECT_EQ(x.range.first, y.range.first) << "event " << i;
    EXPECT_EQ(x.range.last, y.range.last) << "event " << i;
    EXPECT_EQ(x.global, y.global) << "event " << i;
  }
}

// Random batches of pages scattered over a window of many leaf tables, some
// overlapping what is mapped (the batch then stops there): a space fed
// batches and a space fed the same items one call at a time end every round
// with the same tables, the same trace and the same items done.
TYPED_TEST(BatchTest, SameAsOneCallPerItem) {
  Fixture<TypeParam> batched(2048), single(2048);
  const u64 seed = test_seed();
  std::printf("seed %llu (PTKIT_SEED replays)\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const u64 page = batched.page();
  const u64 base = batched.va_base();
  const u64 window_pages = 96 * batched.entries(0);  // 96 leaf tables' worth
  const Attrs attrs{RW, MemType::WriteBack, false};
  // A round stops about half the time; 24 rounds leave the closing
  // EXPECT_GT(stopped, 0) a chance below 1e-8 of failing at a short scale.
  const u64 rounds = scaled(60, 24);
  std::vector<PageMap> items;
  std::vector<VirtAddr> vas;
  u64 stopped = 0;
  for (u64 round = 0; round < rounds; ++round) {
    const u64 n = 1 + rng() % 40;  // shorter and longer than the read-ahead
    const bool map = rng() % 2 == 0;
    items.clear();
    vas.clear();
    for (u64 k = 0; k < n; ++k) {
      // Now and then a page already in the batch: a map stops there.
      u64 va =
          k > 0 && rng() % 16 == 0 ? vas[rng() % k].value() : base + (rng() % window_pages) * page;
      u64 pa = va - base;
      // Now and then an item its own validation refuses (a batch checks
      // per item only what depends on the addresses).
      switch (rng() % 64) {
        case 0: va += 8; break;            // Unaligned
        case 1: pa += page / 2; break;     // Unaligned (a map)
        case 2: va = u64{1} << 62; break;  // NonCanonical
        case 3: pa = u64{1} << 60; break;  // PhysTooLarge (a map)
        default: break;
      }
      items.push_back(PageMap{VirtAddr(va), PhysAddr(pa)});
      vas.push_back(VirtAddr(va));
    }
    UnmapOptions uo;  // holes are skipped, or stop the batch
    uo.holes = rng() % 2 == 0 ? OnHole::Skip : OnHole::Error;
    const BatchOutcome b = map ? batched.s().map_each(items.data(), n, page, attrs)
                               : batched.s().unmap_each(vas.data(), n, page, uo);
    u64 done = 0;
    Failure failure{};
    for (; done < n; ++done) {
      auto r = map ? single.s().map(items[done].va, items[done].pa, page, attrs)
                   : single.s().unmap(vas[done], page, uo);
      if (!r) {
        failure = r.failure();
        break;
      }
    }
    ASSERT_EQ(b.done, done) << "round " << round;
    ASSERT_EQ(b.failed, done < n) << "round " << round;
    if (b.failed) {
      ++stopped;
      EXPECT_EQ(b.failure.error, failure.error);
      EXPECT_EQ(b.failure.va, failure.va);
      EXPECT_EQ(b.failure.pa, failure.pa);
      EXPECT_EQ(b.failure.level, failure.level);
    }
    ASSERT_EQ(batched.snapshot(), single.snapshot()) << "round " << round;
    expect_same_trace(batched.recorder, single.recorder);
    ASSERT_EQ(batched.tables_in_use(), single.tables_in_use());
  }
  // A map stops on a page mapped twice, an unmap with OnHole::Error on a
  // hole: some batches must have stopped for the test to show that.
  EXPECT_GT(stopped, 0u);
}

// A batch of maps each needing one fresh leaf table (the tables above exist)
// reads ahead into the pages it will take: the allocator is asked for each
// of them, by its position among the takes, before it is taken.
TYPED_TEST(BatchTest, ReadsAheadIntoTheTablesItsMapsWillTake) {
  Fixture<TypeParam> fx(2048);
  const u64 page = fx.page();
  const u64 base = fx.va_base();
  const Attrs attrs{RW, MemType::WriteBack, false};
  const u64 span1 = fx.s().leaf_size(1);  // what one leaf table maps
  ASSERT_TRUE(fx.s().map(VirtAddr(base), PhysAddr(0), page, attrs));
  std::vector<PageMap> items;
  for (u64 k = 1; k <= 32; ++k)
    items.push_back({VirtAddr(base + k * span1 + (k % 7) * page), PhysAddr(k * page)});
  const u64 first = fx.recorder.taken.size();
  fx.recorder.predicted.clear();
  const BatchOutcome b = fx.s().map_each(items.data(), items.size(), page, attrs);
  ASSERT_FALSE(b.failed);
  ASSERT_EQ(fx.recorder.taken.size(), first + items.size()) << "one fresh table per item";
  for (u64 t = first; t < fx.recorder.taken.size(); ++t) {
    bool named = false;
    for (const auto& [position, pa] : fx.recorder.predicted)
      if (position == t) {
        EXPECT_EQ(pa, fx.recorder.taken[t]) << "take " << t - first;
        named = true;
      }
    EXPECT_TRUE(named) << "take " << t - first << " was not read ahead";
  }
}

TYPED_TEST(BatchTest, StopsAtTheFirstFailureWhichChangesNothing) {
  Fixture<TypeParam> fx;
  const u64 page = fx.page();
  const u64 base = fx.va_base();
  const Attrs attrs{RW, MemType::WriteBack, false};
  ASSERT_TRUE(fx.s().map(VirtAddr(base + 3 * page), PhysAddr(0x7000'0000), page, attrs));
  std::vector<PageMap> items;
  for (u64 k = 0; k < 6; ++k) items.push_back({VirtAddr(base + k * page), PhysAddr(k * page)});
  const BatchOutcome b = fx.s().map_each(items.data(), items.size(), page, attrs);
  EXPECT_EQ(b.done, 3u);
  ASSERT_TRUE(b.failed);
  EXPECT_EQ(b.failure.op, Op::Map);
  EXPECT_EQ(b.failure.error, Error::AlreadyMapped);
  EXPECT_EQ(b.failure.va, VirtAddr(base + 3 * page));
  for (u64 k = 0; k < 3; ++k) {
    auto m = fx.s().query(VirtAddr(base + k * page));
    ASSERT_TRUE(m) << k;
    EXPECT_EQ(m->pa, PhysAddr(k * page));
  }
  auto kept = fx.s().query(VirtAddr(base + 3 * page));
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->pa, PhysAddr(0x7000'0000)) << "the failing item changed its page";
  for (u64 k = 4; k < 6; ++k) EXPECT_FALSE(fx.s().query(VirtAddr(base + k * page))) << k;

  // Unmap where holes are errors: the third page is one (NotMapped); the
  // first two go.
  std::vector<VirtAddr> vas{VirtAddr(base), VirtAddr(base + page), VirtAddr(base + 5 * page),
                            VirtAddr(base + 2 * page)};
  UnmapOptions holes_fail;
  holes_fail.holes = OnHole::Error;
  const BatchOutcome u = fx.s().unmap_each(vas.data(), vas.size(), page, holes_fail);
  EXPECT_EQ(u.done, 2u);
  ASSERT_TRUE(u.failed);
  EXPECT_EQ(u.failure.op, Op::Unmap);
  EXPECT_EQ(u.failure.error, Error::NotMapped);
  EXPECT_FALSE(fx.s().query(VirtAddr(base)));
  EXPECT_TRUE(fx.s().query(VirtAddr(base + 2 * page))) << "an item after the failure was applied";
}

/// How many times the trace invalidates (by range or everything).
u64 tlb_work(const Recorder& r) {
  u64 n = 0;
  for (const Event& e : r.events)
    n += e.kind == Event::Invalidate || e.kind == Event::InvalidateAll ? 1 : 0;
  return n;
}

// With TlbMode::Defer, what the items owe gathers in the outcome's token:
// one bounding range, and the tables their unmaps free. More tables than a
// token holds make the batch do the work gathered so far at once, as one
// update does. Flushed, the tables are those of one call per item with its
// TLB work done at once, every table page is back, and the rule checker
// finds no page walk cached through a table freed before its invalidation.
TYPED_TEST(BatchTest, DeferredTlbWorkGathersInOneToken) {
  Fixture<TypeParam> batched(2048), single(2048);
  CheckedTrace<TypeParam> checked(batched);
  const u64 page = batched.page();
  const u64 base = batched.va_base();
  const Attrs attrs{RW, MemType::WriteBack, false};
  // One page in each of 40 leaf tables: unmapping them frees 40 leaf tables,
  // more than a token holds (FlushToken::kMaxPendingFrees).
  constexpr u64 kItems = 40;
  static_assert(kItems > FlushToken::kMaxPendingFrees);
  std::vector<PageMap> items;
  std::vector<VirtAddr> vas;
  for (u64 k = 0; k < kItems; ++k) {
    const u64 va = base + (k * batched.entries(0) + (k * 7) % batched.entries(0)) * page;
    items.push_back(PageMap{VirtAddr(va), PhysAddr(va - base)});
    vas.push_back(VirtAddr(va));
  }
  MapOptions map_defer;
  map_defer.tlb = TlbMode::Defer;
  BatchOutcome m = batched.s().map_each(items.data(), kItems, page, attrs, map_defer);
  ASSERT_FALSE(m.failed);
  ASSERT_EQ(m.done, kItems);
  batched.s().flush(std::move(m.token));
  const BatchOutcome m1 = single.s().map_each(items.data(), kItems, page, attrs);
  ASSERT_FALSE(m1.failed);
  ASSERT_EQ(batched.snapshot(), single.snapshot());
  const u64 tables_mapped = batched.tables_in_use();

  batched.recorder.events.clear();
  UnmapOptions defer;
  defer.tlb = TlbMode::Defer;
  BatchOutcome u = batched.s().unmap_each(vas.data(), kItems, page, defer);
  ASSERT_FALSE(u.failed);
  ASSERT_EQ(u.done, kItems);
  ASSERT_TRUE(u.token.pending());
  // The token was full once: the first tables' work was done then, and
  // those pages are back; the rest wait for the flush.
  const unsigned waiting = u.token.pending_frees();
  EXPECT_GT(waiting, 0u);
  EXPECT_LT(waiting, FlushToken::kMaxPendingFrees + 1);
  EXPECT_EQ(batched.tables_in_use(), 1 + waiting) << "tables freed before their TLB work";
  EXPECT_LT(batched.tables_in_use(), tables_mapped);
  // The TLB work so far: once, when the token was full (not once per item).
  EXPECT_EQ(tlb_work(batched.recorder), 1u);
  EXPECT_TRUE(batched.recorder.covers(vas[0].value())) << "the early work was not done";
  // The items after it are owed in the token's one range.
  const TlbRange owed = u.token.batch().range();
  EXPECT_LE(owed.first.value(), vas[kItems - 1].value());
  EXPECT_GE(owed.last.value(), vas[kItems - 1].value() + page - 1);
  batched.s().flush(std::move(u.token));
  EXPECT_FALSE(u.token.pending());
  EXPECT_EQ(tlb_work(batched.recorder), 2u);
  checked.sync();
  const sim::CheckResult r = checked.check_and_restart();
  EXPECT_TRUE(r.ok()) << first_violations(r);

  const BatchOutcome u1 = single.s().unmap_each(vas.data(), kItems, page);
  ASSERT_FALSE(u1.failed);
  EXPECT_EQ(batched.snapshot(), single.snapshot());
  EXPECT_EQ(batched.tables_in_use(), 1u);
  for (const VirtAddr va : vas) EXPECT_TRUE(batched.recorder.covers(va.value()));

  // A deferred batch that stops part way returns the token of the items it
  // did; the failed item and those after it change nothing.
  ASSERT_TRUE(batched.s().map(vas[2], PhysAddr(0), page, attrs));
  BatchOutcome stopped = batched.s().map_each(items.data(), kItems, page, attrs, map_defer);
  ASSERT_TRUE(stopped.failed);
  EXPECT_EQ(stopped.done, 2u);
  EXPECT_EQ(stopped.failure.error, Error::AlreadyMapped);
  batched.s().flush(std::move(stopped.token));
  EXPECT_FALSE(stopped.token.pending());
  EXPECT_TRUE(batched.s().query(vas[1]));
  EXPECT_EQ(batched.s().query(vas[2])->pa, PhysAddr(0)) << "the failed item changed its page";
  EXPECT_FALSE(batched.s().query(vas[3])) << "an item after the failure was applied";
}

TYPED_TEST(BatchTest, EmptyBatches) {
  Fixture<TypeParam> fx;
  const u64 page = fx.page();
  const Attrs attrs{RW, MemType::WriteBack, false};
  const BatchOutcome none = fx.s().map_each(nullptr, 0, page, attrs);
  EXPECT_EQ(none.done, 0u);
  EXPECT_FALSE(none.failed);
  EXPECT_FALSE(none.token.pending());
  const BatchOutcome none_u = fx.s().unmap_each(nullptr, 0, page);
  EXPECT_FALSE(none_u.failed);
  EXPECT_TRUE(fx.recorder.events.empty());
}

}  // namespace
}  // namespace ptkit::test
