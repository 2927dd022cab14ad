// The shattering policy (issue 5, item 6): splitting a live superpage needs
// the caller's permission per call; a split whose break would touch a live
// range, or the very table being edited, is refused before any write; and a
// split that cannot get its table changes nothing.
#include <gtest/gtest.h>

#include "support.hpp"

namespace ptkit::test {
namespace {

/// Host table memory that the simulated kernel also reaches through its own
/// address space: the table at physical `pa` sits at virtual
/// `window + (pa - TableMemory::kBase)`. `space_va` tells the engine so.
struct SelfMappedTables {
  OffsetAccess host;
  u64 window = 0;
  u64* table(PhysAddr pa) const { return host.table(pa); }
  void done(u64* p) const { host.done(p); }
  [[nodiscard]] VirtAddr space_va(const u64* p) const {
    const u64 pa = reinterpret_cast<u64>(p) - host.offset;  // NOLINT: host pointer → its pa
    return VirtAddr(window + (pa - TableMemory::kBase));
  }
};
static_assert(TableAccess<SelfMappedTables>);

template <class Config>
class ShatterTest : public ::testing::Test {
 protected:
  using Format = typename Config::Format;
  using Space =
      AddressSpace<Format, SelfMappedTables, RecordingAllocator<FreeList>, RecWriter, RecSink>;

  ShatterTest()
      : memory(64, u64{1} << Config::make().page_shift()),
        alloc(memory.access(), memory.page_size()) {
    alloc.add_range(memory.base(), memory.pages());
    // Where the tables appear in the space: a block-aligned virtual window
    // a quarter into the lower half (upper half for TTBR1).
    const Format f = Config::make();
    unsigned shift = f.page_shift();
    for (unsigned l = 0; l < f.levels(); ++l) shift += f.index_bits(l);
    const u64 quarter = u64{1} << (shift - 2);
    window = f.is_canonical(VirtAddr(quarter)) ? quarter : (~u64{0} << shift) | quarter;
    page = u64{1} << f.page_shift();
    block = page << f.index_bits(0);
  }

  Space make_space() {
    auto created = Space::create(Config::make(), SelfMappedTables{memory.access(), window},
                                 RecordingAllocator<FreeList>(alloc, recorder), RecWriter(recorder),
                                 RecSink(recorder));
    if (!created) std::abort();
    return std::move(created.value());
  }

  /// All table memory, byte for byte.
  std::vector<u64> image() const {
    const u64* t = memory.table(memory.base());
    return {t, t + memory.pages() * memory.page_size() / 8};
  }

  TableMemory memory;
  FreeList alloc;
  Recorder recorder;
  u64 window = 0, page = 0, block = 0;
};

TYPED_TEST_SUITE(ShatterTest, AllFormats);

constexpr Attrs kRw{Perm::R | Perm::W};

// The kernel maps its own table memory with one superpage (as a direct map
// would), then cuts a page out of that superpage.
TYPED_TEST(ShatterTest, SplittingNeedsPermissionAndSparesTheTablesBeingEdited) {
  auto s = this->make_space();
  const u64 B = this->block, P = this->page, w = this->window;
  ASSERT_TRUE(s.map(VirtAddr(w), this->memory.base(), B, kRw).ok());
  ASSERT_EQ(s.query(VirtAddr(w))->size, B);
  const auto before = this->image();
  const u64 in_use = this->alloc.pages_free();
  this->recorder.events.clear();

  // Without permission: refused, nothing written.
  auto refused = s.protect(VirtAddr(w + 8 * P), P, AttrChange{Perm::None, Perm::W});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error(), Error::SplitForbidden);
  EXPECT_EQ(refused.failure().va.value(), w);
  EXPECT_EQ(this->image(), before);
  EXPECT_TRUE(this->recorder.events.empty());

  // With permission: the break (where the format needs one) would make the
  // superpage invalid, and the level-1 table holding it lives inside it.
  ProtectOptions split;
  split.allow_split = true;
  const bool breaks =
      s.format().needs_break(Entry::leaf(PhysAddr(0), {}), Entry::table(PhysAddr(0)), true);
  auto r = s.protect(VirtAddr(w + 8 * P), P, AttrChange{Perm::None, Perm::W}, split);
  if (breaks) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), Error::LiveRangeBroken);
    EXPECT_EQ(r.failure().va.value(), w);
    EXPECT_EQ(this->image(), before);
    EXPECT_EQ(this->alloc.pages_free(), in_use);
    EXPECT_TRUE(this->recorder.events.empty());
  } else {
    ASSERT_TRUE(r.ok()) << to_string(r.error());
    EXPECT_EQ(r->stats.splits, 1u);
    EXPECT_EQ(r->stats.breaks, 0u);
    EXPECT_EQ(s.query(VirtAddr(w + 8 * P))->attrs.perm, Perm::R);
    EXPECT_EQ(s.query(VirtAddr(w + 9 * P))->attrs.perm, kRw.perm);
  }
}

// A superpage that holds no table may be split with a break.
TYPED_TEST(ShatterTest, ASuperpageAwayFromTheTablesSplitsWithPermission) {
  auto s = this->make_space();
  const u64 B = this->block, P = this->page, w = this->window;
  ASSERT_TRUE(s.map(VirtAddr(w + B), PhysAddr(0), B, kRw).ok());
  ProtectOptions split;
  split.allow_split = true;
  auto r = s.protect(VirtAddr(w + B + 8 * P), P, AttrChange{Perm::None, Perm::W}, split);
  ASSERT_TRUE(r.ok()) << to_string(r.error());
  EXPECT_EQ(r->stats.splits, 1u);
  EXPECT_EQ(s.query(VirtAddr(w + B + 8 * P))->attrs.perm, Perm::R);
  EXPECT_EQ(s.query(VirtAddr(w + B + 7 * P))->pa.value(), 7 * P);
}

// A declared stack inside the superpage stops the break just the same.
TYPED_TEST(ShatterTest, ADeclaredStackStopsTheBreak) {
  auto s = this->make_space();
  const u64 B = this->block, P = this->page, w = this->window;
  ASSERT_TRUE(s.map(VirtAddr(w + B), PhysAddr(0), B, kRw).ok());
  const VirtRange stack = VirtRange::of(VirtAddr(w + 2 * B - 4 * P), 4 * P);
  UnmapOptions u;
  u.allow_split = true;
  u.live = LiveRanges{&stack, 1};
  const bool breaks =
      s.format().needs_break(Entry::leaf(PhysAddr(0), {}), Entry::table(PhysAddr(0)), true);
  const auto before = this->image();
  auto r = s.unmap(VirtAddr(w + B), P, u);
  if (breaks) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), Error::LiveRangeBroken);
    EXPECT_EQ(this->image(), before);
  } else {
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(s.query(VirtAddr(w + 2 * B - P)).ok());
  }
}

// The split's table cannot be had: the superpage is left exactly as it was.
TYPED_TEST(ShatterTest, NoTableForTheSplitChangesNothing) {
  auto s = this->make_space();
  const u64 B = this->block, P = this->page, w = this->window;
  ASSERT_TRUE(s.map(VirtAddr(w + B), PhysAddr(0), B, kRw).ok());
  // Take every free page, so the split's table cannot be reserved.
  std::vector<PhysAddr> hoard;
  while (this->alloc.pages_free() != 0) {
    ASSERT_TRUE(this->alloc.reserve(1));
    hoard.push_back(this->alloc.take());
  }
  const auto before = this->image();
  this->recorder.events.clear();
  ProtectOptions split;
  split.allow_split = true;
  auto r = s.protect(VirtAddr(w + B + 8 * P), P, AttrChange{Perm::None, Perm::W}, split);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::OutOfTables);
  EXPECT_EQ(r.failure().needed, 1u);
  EXPECT_EQ(this->image(), before);
  EXPECT_TRUE(this->recorder.events.empty());
  EXPECT_EQ(s.query(VirtAddr(w + B + 8 * P))->size, B);
  for (PhysAddr pa : hoard) this->alloc.release(pa);
}

}  // namespace
}  // namespace ptkit::test
