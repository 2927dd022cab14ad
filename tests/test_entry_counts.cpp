// Entry counts kept by the allocator (EntryCountingAllocator): an unmap
// decides a table is empty from its count instead of reading the whole
// table, and the counts follow every page as it changes hands. That every
// count the engine relies on is exact is checked in every test that uses the
// Fixture (tests build with PTKIT_CHECK_ENTRY_COUNTS, and its allocator keeps
// counts for every other page); this file turns that check off to show that
// the count, not a read of the table, is what decides.
#undef PTKIT_CHECK_ENTRY_COUNTS
#include <gtest/gtest.h>

#include <vector>

#include "support.hpp"

namespace ptkit::test {
namespace {

template <class Config>
struct CountedSpace {
  using Space =
      AddressSpace<typename Config::Format, OffsetAccess, FreeList, PlainWriter, NullSink>;

  CountedSpace(u64 pages, bool counted)
      : memory(pages, u64{1} << Config::make().page_shift()), counts(pages) {
    FreeList alloc(memory.access(), memory.page_size());
    alloc.add_range(memory.base(), pages);
    if (counted)
      alloc.keep_entry_counts(EntryCounts(memory.base(), pages, counts.data(), memory.page_size()));
    auto created = Space::create(Config::make(), memory.access(), alloc);
    if (!created) std::abort();
    space.emplace(std::move(created.value()));
  }

  TableMemory memory;
  std::vector<u16> counts;
  std::optional<Space> space;
};

template <class Config>
class EntryCountTest : public ::testing::Test {};
TYPED_TEST_SUITE(EntryCountTest, AllFormats);

// Two pages in one leaf table, the count of that table then raised by one
// as if it held a third: unmapping both leaves the table (and those above
// it) in place, because the count says it is not empty. Without counts, or
// with the count left exact, the tables are freed.
TYPED_TEST(EntryCountTest, TheCountDecidesWhetherATableIsEmpty) {
  for (const int mode : {0, 1, 2}) {  // counts off, exact, raised by one
    CountedSpace<TypeParam> cs(64, mode != 0);
    auto& s = *cs.space;
    const u64 page = s.leaf_size(0);
    const u64 base = quarter_va(s.format());
    const Attrs attrs{RW, MemType::WriteBack, false};
    const u64 free0 = s.allocator().pages_free();
    ASSERT_TRUE(s.map(VirtAddr(base), PhysAddr(0), page, attrs));
    ASSERT_TRUE(s.map(VirtAddr(base + 5 * page), PhysAddr(page), page, attrs));
    const u64 tables = free0 - s.allocator().pages_free();
    EXPECT_EQ(tables, s.format().levels() - 1u);
    if (mode != 0) {
      // The leaf table is the one table holding two valid entries.
      u64 twos = 0;
      for (u16& c : cs.counts)
        if (c == 2) {
          ++twos;
          if (mode == 2) ++c;
        }
      ASSERT_EQ(twos, 1u) << "counts: one table with two entries, the rest one or unknown";
    }
    auto first = s.unmap(VirtAddr(base), page);
    ASSERT_TRUE(first);
    EXPECT_EQ(first->stats.tables_freed, 0u) << "the leaf table still holds a page";
    auto second = s.unmap(VirtAddr(base + 5 * page), page);
    ASSERT_TRUE(second);
    EXPECT_EQ(second->stats.tables_freed, mode == 2 ? 0u : tables) << "mode " << mode;
    EXPECT_FALSE(s.query(VirtAddr(base + 5 * page)));
  }
}

TEST(EntryCounts, FollowAPageAsItChangesHands) {
  TableMemory memory(8);
  std::vector<u16> counts(4, 7);
  FreeList alloc(memory.access(), memory.page_size());
  alloc.add_range(memory.base(), 8);
  // Counts for pages 2..5 only.
  alloc.keep_entry_counts(
      EntryCounts(memory.base() + 2 * kTablePageSize, 4, counts.data(), memory.page_size()));
  for (u16 c : counts) EXPECT_EQ(c, kUnknownEntryCount) << "counts start unknown";
  EXPECT_EQ(alloc.entry_count(memory.base() + kTablePageSize), nullptr);
  EXPECT_EQ(alloc.entry_count(memory.base() + 6 * kTablePageSize), nullptr);
  EXPECT_EQ(alloc.entry_count(memory.base() + 3 * kTablePageSize), &counts[1]);
  ASSERT_TRUE(alloc.reserve(4));
  PhysAddr third;
  for (int i = 0; i < 4; ++i) third = alloc.take();
  EXPECT_EQ(third, memory.base() + 3 * kTablePageSize);
  *alloc.entry_count(third) = 12;  // what the engine sets when it builds a table there
  alloc.release(third);
  EXPECT_EQ(counts[1], kUnknownEntryCount) << "a page given back has no count";
  ASSERT_TRUE(alloc.reserve(1));
  counts[1] = 3;  // a stale value must not survive the page being handed out again
  EXPECT_EQ(alloc.take(), third);
  EXPECT_EQ(counts[1], kUnknownEntryCount);
}

}  // namespace
}  // namespace ptkit::test
