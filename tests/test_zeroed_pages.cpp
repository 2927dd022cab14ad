// Pages the allocator knows are zero (ZeroTrackingAllocator): with a writer
// that allows it (PlainWriter::kOmitsZeroFill) the engine leaves the zero
// entries of a new table unwritten. The tables must come out exactly as when
// every page is cleared, a page that comes back after release must be
// cleared again unless the engine knew it zero (it kept the table's count of
// valid entries down to none: ZeroKeepingAllocator), and a writer that does
// not allow it still sees every store.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "support.hpp"

namespace ptkit::test {
namespace {

/// PlainWriter (omits the zero fill) that counts the fresh stores it is given.
struct CountingPlainWriter : PlainWriter {
  u64* fresh = nullptr;
  void store_fresh(u64* slot, u64 value, const WriteSite& site) const {
    ++*fresh;
    PlainWriter::store_fresh(slot, value, site);
  }
  void store_fresh_run(u64* first, u64 count, u64 value, u64 delta) const {
    *fresh += count;
    PlainWriter::store_fresh_run(first, count, value, delta);
  }
};

/// A writer that says nothing about zero fills: every store must reach it.
struct CountingFullWriter {
  u64* fresh = nullptr;
  void store(u64* slot, u64 value, const WriteSite&) const {
    __atomic_store_n(slot, value, __ATOMIC_RELAXED);
  }
  void store_fresh(u64* slot, u64 value, const WriteSite&) const {
    ++*fresh;
    *slot = value;
  }
};

template <class Config, class Writer>
struct ZeroSpace {
  using Space = AddressSpace<typename Config::Format, OffsetAccess, FreeList, Writer, NullSink>;

  /// `counts`: the allocator keeps entry counts, so the engine knows which
  /// tables it frees are all zero.
  ZeroSpace(u64 pages, PageContents contents, bool dirty, bool counts = false)
      : memory(pages, u64{1} << Config::make().page_shift()), count_storage(pages) {
    // Memory that is not known to be zero holds garbage, which only the
    // engine's clearing removes.
    if (dirty) std::memset(memory.table(memory.base()), 0xa5, pages * memory.page_size());
    FreeList alloc(memory.access(), memory.page_size());
    alloc.add_range(memory.base(), pages, contents);
    if (counts)
      alloc.keep_entry_counts(
          EntryCounts(memory.base(), pages, count_storage.data(), memory.page_size()));
    Writer w;
    w.fresh = &fresh;
    auto created = Space::create(Config::make(), memory.access(), alloc, w);
    if (!created) std::abort();
    space.emplace(std::move(created.value()));
  }

  [[nodiscard]] TableSnapshot snapshot() const { return snapshot_tables(memory, *space); }

  TableMemory memory;
  std::vector<u16> count_storage;
  u64 fresh = 0;
  std::optional<Space> space;
};

template <class Config>
class ZeroedPagesTest : public ::testing::Test {};
TYPED_TEST_SUITE(ZeroedPagesTest, AllFormats);

// Random maps and unmaps of pages and blocks across a window of many leaf
// tables, on a space whose pages are known zero and one whose pages are
// garbage: the same results and, after every operation, the same tables
// bit for bit (the two free lists hand out the same pages in the same order).
//
// The second space also keeps entry counts, so tables that scattered unmaps
// empty one entry at a time come back to the free list as zero and are
// reused without clearing; tables freed whole (an unmap of their whole span)
// still hold entries and must be cleared when reused.
TYPED_TEST(ZeroedPagesTest, SameTablesAsWhenEveryPageIsCleared) {
  using Zero = ZeroSpace<TypeParam, CountingPlainWriter>;
  constexpr u64 kPages = 512;
  Zero cleared(kPages, PageContents::Unknown, true);
  Zero known(kPages, PageContents::Zeroed, false, true);
  const u64 seed = test_seed();
  std::printf("seed %llu (PTKIT_SEED replays)\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const auto& sp = *known.space;
  const u64 page = sp.leaf_size(0), block = sp.leaf_size(1);
  const u64 base = quarter_va(sp.format());
  const u64 window_blocks = 48;
  const Attrs attrs{RW, MemType::WriteBack, false};
  const u64 ops = scaled(400, 40);
  for (u64 op = 0; op < ops; ++op) {
    const bool large = rng() % 4 == 0;
    const u64 unit = large ? block : page;
    const u64 units = 1 + rng() % (large ? 3 : 40);
    const u64 va = base + (rng() % (window_blocks * block / unit - units)) * unit;
    const bool map = rng() % 3 != 0;
    const auto apply = [&](Zero& z) {
      MapOptions mo;
      mo.existing = rng() % 2 == 0 ? OnExisting::Replace : OnExisting::Error;
      if (map) return z.space->map(VirtAddr(va), PhysAddr(va - base), units * unit, attrs, mo).ok();
      return z.space->unmap(VirtAddr(va), units * unit).ok();
    };
    const std::mt19937_64 saved = rng;
    const bool ok_cleared = apply(cleared);
    rng = saved;  // both spaces see the same options
    const bool ok_known = apply(known);
    ASSERT_EQ(ok_cleared, ok_known) << "op " << op;
    ASSERT_EQ(cleared.snapshot(), known.snapshot()) << "op " << op << (map ? " map" : " unmap");
  }
  EXPECT_LT(known.fresh, cleared.fresh) << "no new table was left uncleared: nothing was tested";
}

// A table whose last valid entry an unmap clears is all zero: freed, it goes
// back to the allocator as zero (release_zeroed), and the next map that needs
// a table there writes only its non-zero entries, as into a fresh pool. A
// table folded into a superpage by a merge still holds its leaves: it goes
// back as unknown and is cleared on reuse.
TYPED_TEST(ZeroedPagesTest, TablesEmptiedEntryByEntryAreReusedAsZero) {
  using Zero = ZeroSpace<TypeParam, CountingPlainWriter>;
  Zero z(64, PageContents::Zeroed, false, true);
  auto& sp = *z.space;
  const u64 page = sp.leaf_size(0), block = sp.leaf_size(1);
  const u64 base = quarter_va(sp.format());
  const Attrs attrs{RW, MemType::WriteBack, false};
  // A page maps through a new table on every level below the root, one
  // entry written in each.
  const u64 stores = sp.format().levels() - 1;

  ASSERT_TRUE(sp.map(VirtAddr(base), PhysAddr(0), page, attrs));
  EXPECT_EQ(z.fresh, stores);
  auto u = sp.unmap(VirtAddr(base), page);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->stats.tables_freed, stores);
  // The same page again: the same pages come back, known zero.
  z.fresh = 0;
  ASSERT_TRUE(sp.map(VirtAddr(base), PhysAddr(0), page, attrs));
  EXPECT_EQ(z.fresh, stores) << "a table emptied entry by entry was cleared again";
  // An unmap of the leaf table's whole span clears its entries one by one
  // too: the table still goes back as zero.
  ASSERT_TRUE(sp.map(VirtAddr(base + page), PhysAddr(page), page, attrs));
  ASSERT_TRUE(sp.unmap(VirtAddr(base), block));
  z.fresh = 0;
  ASSERT_TRUE(sp.map(VirtAddr(base), PhysAddr(0), page, attrs));
  EXPECT_EQ(z.fresh, stores) << "a table unmapped whole was cleared again";
  ASSERT_TRUE(sp.unmap(VirtAddr(base), page));

  // Fill the leaf table, the last page with merge: the table becomes one
  // block leaf and is freed full of leaves.
  MapOptions pages_only;
  pages_only.leaf_sizes = page;
  ASSERT_TRUE(sp.map(VirtAddr(base), PhysAddr(0), block - page, attrs, pages_only));
  MapOptions merging;
  merging.merge = true;
  auto m = sp.map(VirtAddr(base + block - page), PhysAddr(block - page), page, attrs, merging);
  ASSERT_TRUE(m);
  ASSERT_EQ(m->stats.merges, 1U);
  ASSERT_TRUE(sp.unmap(VirtAddr(base), block));
  // Three pages come back: two known zero, and the former leaf table, which
  // wherever it is reused must be cleared (every entry but the one written).
  z.fresh = 0;
  ASSERT_TRUE(sp.map(VirtAddr(base), PhysAddr(0), page, attrs));
  EXPECT_EQ(z.fresh, stores + sp.entries(0) - 1)
      << "the table freed with leaves in it must be cleared on reuse";
  ASSERT_TRUE(sp.query(VirtAddr(base)));
  EXPECT_FALSE(sp.query(VirtAddr(base + page))) << "a stale entry survived the reuse";
}

// A writer that does not say kOmitsZeroFill is given every store of a new
// table even when the page is known zero (a recording writer's trace must
// show the table's whole contents).
TYPED_TEST(ZeroedPagesTest, AWriterThatRecordsGetsEveryStore) {
  using Zero = ZeroSpace<TypeParam, CountingFullWriter>;
  Zero cleared(64, PageContents::Unknown, false);
  Zero known(64, PageContents::Zeroed, false);
  for (Zero* z : {&cleared, &known}) {
    const auto& sp = *z->space;
    const u64 base = quarter_va(sp.format());
    ASSERT_TRUE(z->space->map(VirtAddr(base), PhysAddr(0), sp.leaf_size(0),
                              Attrs{RW, MemType::WriteBack, false}));
  }
  const u64 levels = known.space->format().levels();
  EXPECT_EQ(known.fresh, cleared.fresh);
  // One new table per level below the root, every entry of each stored once.
  u64 expected = 0;
  for (unsigned l = 0; l + 1 < levels; ++l) expected += known.space->entries(l);
  EXPECT_EQ(known.fresh, expected);
}

}  // namespace
}  // namespace ptkit::test
