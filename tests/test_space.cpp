// The AddressSpace contract, on every format: what map, unmap, protect, query,
// walk and plan promise, and every bad input's error with nothing changed.
#include "support.hpp"

namespace ptkit::test {
namespace {

template <class Config>
class SpaceTest : public ::testing::Test {
 protected:
  Fixture<Config> fx;
  auto& s() { return fx.s(); }

  static constexpr u64 kVa = 0x0000'0040'0000'0000;  // 256 GiB: 1G-aligned, lower half
  static constexpr u64 kPa = 0x0000'0001'0000'0000;  // 4 GiB
  static constexpr Attrs kRw{RW, MemType::WriteBack, false};

  void expect_unchanged_after(const Failure& f, Op op, Error e) {
    EXPECT_EQ(f.op, op);
    EXPECT_EQ(f.error, e) << to_string(f.error);
  }

  /// Runs `update`, which must fail with `e`, and checks that no table byte
  /// changed, no page was kept and no TLB or write event happened.
  template <class Update>
  Failure expect_rejected(Error e, Update&& update) {
    const auto before = fx.snapshot();
    const u64 in_use = fx.tables_in_use();
    fx.recorder.events.clear();
    auto r = update();
    EXPECT_FALSE(r.ok());
    if (r.ok()) return {};
    EXPECT_EQ(r.error(), e) << "got: " << to_string(r.error());
    EXPECT_EQ(fx.snapshot(), before);
    EXPECT_EQ(fx.tables_in_use(), in_use);
    EXPECT_TRUE(fx.recorder.events.empty());
    return r.failure();
  }

  std::vector<Mapping> leaves(u64 lo, u64 size) {
    std::vector<Mapping> out;
    EXPECT_TRUE(s().walk(VirtAddr(lo), size,
                         [&](const Mapping& m) {
                           out.push_back(m);
                           return true;
                         })
                    .ok());
    return out;
  }

  bool has_1g() { return s().format().leaf_allowed(2); }
};

TYPED_TEST_SUITE(SpaceTest, AllFormats);

TYPED_TEST(SpaceTest, MapUsesTheLargestLeafAlignmentAllows) {
  const u64 va = this->kVa, pa = this->kPa;
  auto r = this->s().map(VirtAddr(va), PhysAddr(pa), 2 * GiB, this->kRw);
  ASSERT_TRUE(r.ok());
  const auto l = this->leaves(va, 2 * GiB);
  if (this->has_1g()) {
    ASSERT_EQ(l.size(), 2u);
    EXPECT_EQ(l[0].size, GiB);
    EXPECT_EQ(l[0].level, 2u);
    // Root plus one table per level down to the PDPT.
    EXPECT_EQ(r->stats.tables_allocated, this->s().format().levels() - 3);
  } else {
    ASSERT_EQ(l.size(), 1024u);
    EXPECT_EQ(l[0].size, 2 * MiB);
    EXPECT_EQ(r->stats.tables_allocated, this->s().format().levels() - 3 + 2);
  }
  EXPECT_EQ(r->stats.tables_allocated, r->stats.tables_needed);
  EXPECT_EQ(this->fx.tables_in_use(), r->stats.tables_allocated + 1);
}

TYPED_TEST(SpaceTest, MapFallsBackToSmallerLeavesWhereAlignmentEnds) {
  // va 2M-aligned, pa only 4K-aligned relative to it: 4K leaves only.
  const u64 va = this->kVa, pa = this->kPa + 4 * KiB;
  ASSERT_TRUE(this->s().map(VirtAddr(va), PhysAddr(pa), 4 * MiB, this->kRw).ok());
  const auto l = this->leaves(va, 4 * MiB);
  ASSERT_EQ(l.size(), 1024u);
  for (size_t i = 0; i < l.size(); ++i) {
    EXPECT_EQ(l[i].size, 4 * KiB);
    EXPECT_EQ(l[i].pa.value(), pa + i * 4 * KiB);
  }
  // Unaligned head and tail around 2M leaves: 4K, then 2M, then 4K.
  const u64 va2 = this->kVa + GiB - 8 * KiB;
  ASSERT_TRUE(
      this->s().map(VirtAddr(va2), PhysAddr(pa + GiB - 8 * KiB - 4 * KiB), 0, this->kRw).error() ==
      Error::BadSize);
  ASSERT_TRUE(
      this->s()
          .map(VirtAddr(va2), PhysAddr(this->kPa + GiB - 8 * KiB), 4 * MiB + 16 * KiB, this->kRw)
          .ok());
  const auto m = this->leaves(va2, 4 * MiB + 16 * KiB);
  ASSERT_EQ(m.size(), 2u + 2 + 2);
  EXPECT_EQ(m[0].size, 4 * KiB);
  EXPECT_EQ(m[2].size, 2 * MiB);
  EXPECT_EQ(m[3].size, 2 * MiB);
  EXPECT_EQ(m[5].size, 4 * KiB);
}

TYPED_TEST(SpaceTest, LeafSizesOptionLimitsTheLeaves) {
  MapOptions only_4k;
  only_4k.leaf_sizes = 4 * KiB;
  auto r = this->s().map(VirtAddr(this->kVa), PhysAddr(this->kPa), 2 * MiB, this->kRw, only_4k);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(this->leaves(this->kVa, 2 * MiB).size(), 512u);

  MapOptions only_2m;
  only_2m.leaf_sizes = 2 * MiB;
  auto f = this->expect_rejected(Error::Unaligned, [&] {
    return this->s().map(VirtAddr(this->kVa + GiB + 4 * KiB), PhysAddr(this->kPa), 2 * MiB,
                         this->kRw, only_2m);
  });
  EXPECT_EQ(f.va.value(), this->kVa + GiB + 4 * KiB);
  MapOptions odd;
  odd.leaf_sizes = 8 * KiB;
  this->expect_rejected(Error::LeafSizeUnsupported, [&] {
    return this->s().map(VirtAddr(this->kVa + GiB), PhysAddr(this->kPa), 2 * MiB, this->kRw, odd);
  });
  MapOptions giant;
  giant.leaf_sizes = GiB;
  if (!this->has_1g()) {
    this->expect_rejected(Error::LeafSizeUnsupported, [&] {
      return this->s().map(VirtAddr(this->kVa + GiB), PhysAddr(this->kPa), GiB, this->kRw, giant);
    });
  } else {
    ASSERT_TRUE(
        this->s().map(VirtAddr(this->kVa + GiB), PhysAddr(this->kPa), GiB, this->kRw, giant).ok());
    EXPECT_EQ(this->leaves(this->kVa + GiB, GiB).at(0).size, GiB);
  }
}

TYPED_TEST(SpaceTest, BadInputIsRejectedWithItsOwnErrorAndNothingChanges) {
  auto& s = this->s();
  const auto rw = this->kRw;
  ASSERT_TRUE(s.map(VirtAddr(this->kVa), PhysAddr(this->kPa), 8 * MiB, rw).ok());
  const u64 free_va = this->kVa + GiB;

  this->expect_rejected(Error::Unaligned,
                        [&] { return s.map(VirtAddr(free_va + 1), PhysAddr(0), 4 * KiB, rw); });
  this->expect_rejected(Error::Unaligned,
                        [&] { return s.map(VirtAddr(free_va), PhysAddr(0x800), 4 * KiB, rw); });
  this->expect_rejected(Error::Unaligned,
                        [&] { return s.map(VirtAddr(free_va), PhysAddr(0), 4 * KiB + 8, rw); });
  this->expect_rejected(Error::BadSize,
                        [&] { return s.map(VirtAddr(free_va), PhysAddr(0), 0, rw); });
  this->expect_rejected(Error::BadSize, [&] {
    return s.map(VirtAddr(0xffff'ffff'ffff'f000), PhysAddr(0), 8 * KiB, rw);
  });
  // Non-canonical start, and a range running from the lower half into the hole.
  const u64 hole = u64{1} << (s.format().levels() == 5 ? 56 : 47);
  this->expect_rejected(Error::NonCanonical,
                        [&] { return s.map(VirtAddr(hole), PhysAddr(0), 4 * KiB, rw); });
  this->expect_rejected(Error::NonCanonical,
                        [&] { return s.map(VirtAddr(hole - 4 * KiB), PhysAddr(0), 8 * KiB, rw); });
  this->expect_rejected(Error::PhysTooLarge, [&] {
    return s.map(VirtAddr(free_va), PhysAddr((u64{1} << 52) - 4 * KiB), 8 * KiB, rw);
  });
  this->expect_rejected(Error::AttrUnsupported, [&] {
    return s.map(VirtAddr(free_va), PhysAddr(0), 4 * KiB, Attrs{Perm::W, MemType::WriteBack});
  });
  this->expect_rejected(Error::AttrUnsupported, [&] {
    return s.map(VirtAddr(free_va), PhysAddr(0), 4 * KiB, Attrs{RW, MemType::Device});
  });
  // Overlap, at the 2M leaf that is already there.
  auto f = this->expect_rejected(Error::AlreadyMapped, [&] {
    return s.map(VirtAddr(this->kVa + 6 * MiB), PhysAddr(0), 4 * MiB, rw);
  });
  EXPECT_EQ(f.va.value(), this->kVa + 6 * MiB);
  EXPECT_EQ(f.level, 1);
  // Unaligned unmap/protect and holes where the option says error.
  this->expect_rejected(Error::Unaligned,
                        [&] { return s.unmap(VirtAddr(this->kVa + 12), 4 * KiB); });
  UnmapOptions strict;
  strict.holes = OnHole::Error;
  f = this->expect_rejected(Error::NotMapped,
                            [&] { return s.unmap(VirtAddr(this->kVa), 16 * MiB, strict); });
  EXPECT_EQ(f.va.value(), this->kVa + 8 * MiB);
  this->expect_rejected(Error::NotMapped, [&] {
    return s.protect(VirtAddr(this->kVa), 16 * MiB, AttrChange{Perm::None, Perm::W});
  });
  this->expect_rejected(Error::AttrUnsupported, [&] {
    return s.protect(VirtAddr(this->kVa), 8 * MiB, AttrChange{Perm::None, Perm::R});
  });
}

TYPED_TEST(SpaceTest, QueryReportsTheLeafAndItsLevel) {
  auto& s = this->s();
  ASSERT_TRUE(s.map(VirtAddr(this->kVa), PhysAddr(this->kPa), 2 * MiB + 4 * KiB,
                    Attrs{RX, MemType::WriteThrough, true})
                  .ok());
  auto q = s.query(VirtAddr(this->kVa + 123 * KiB));
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->va.value(), this->kVa);
  EXPECT_EQ(q->pa.value(), this->kPa);
  EXPECT_EQ(q->size, 2 * MiB);
  EXPECT_EQ(q->level, 1u);
  EXPECT_EQ(q->attrs, (Attrs{RX, MemType::WriteThrough, true}));
  q = s.query(VirtAddr(this->kVa + 2 * MiB));
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->size, 4 * KiB);
  EXPECT_EQ(q->level, 0u);
  q = s.query(VirtAddr(this->kVa + 2 * MiB + 4 * KiB));
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.error(), Error::NotMapped);
  EXPECT_EQ(q.failure().level, 0);
  q = s.query(VirtAddr(this->kVa + s.leaf_size(s.format().levels() - 1)));
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.failure().level, int(s.format().levels() - 1));
}

TYPED_TEST(SpaceTest, UnmapFreesEmptyTablesAfterTheirTlbWork) {
  auto& s = this->s();
  ASSERT_TRUE(s.map(VirtAddr(this->kVa), PhysAddr(this->kPa), 4 * KiB, this->kRw).ok());
  const u64 tables = this->fx.tables_in_use();
  EXPECT_EQ(tables, s.format().levels());
  this->fx.recorder.events.clear();
  auto r = s.unmap(VirtAddr(this->kVa), 4 * KiB);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stats.tables_freed, s.format().levels() - 1);
  EXPECT_EQ(this->fx.tables_in_use(), 1u);  // the root alone
  EXPECT_FALSE(s.query(VirtAddr(this->kVa)).ok());
  // The freed tables' range was invalidated, including cached walks, and only
  // then were they released.
  const auto& ev = this->fx.recorder.events;
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev[ev.size() - 3].kind, Event::Publish);
  ASSERT_EQ(ev[ev.size() - 2].kind, Event::Invalidate);
  EXPECT_TRUE(ev[ev.size() - 2].range.tables);
  EXPECT_LE(ev[ev.size() - 2].range.first.value(), this->kVa);
  EXPECT_GE(ev[ev.size() - 2].range.last.value(), this->kVa + 4 * KiB - 1);
  EXPECT_EQ(ev.back().kind, Event::Complete);
}

TYPED_TEST(SpaceTest, UnmapSplitsASuperpageAtTheRangeEnds) {
  auto& s = this->s();
  ASSERT_TRUE(s.map(VirtAddr(this->kVa), PhysAddr(this->kPa), 2 * MiB, this->kRw).ok());
  auto r = s.unmap(VirtAddr(this->kVa + 64 * KiB), 8 * KiB);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stats.splits, 1u);
  const auto l = this->leaves(this->kVa, 2 * MiB);
  EXPECT_EQ(l.size(), 510u);
  EXPECT_FALSE(s.query(VirtAddr(this->kVa + 64 * KiB)).ok());
  EXPECT_FALSE(s.query(VirtAddr(this->kVa + 68 * KiB)).ok());
  auto q = s.query(VirtAddr(this->kVa + 72 * KiB));
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->pa.value(), this->kPa + 72 * KiB);

  ASSERT_TRUE(s.map(VirtAddr(this->kVa + 2 * MiB), PhysAddr(this->kPa), 2 * MiB, this->kRw).ok());
  UnmapOptions no_split;
  no_split.allow_split = false;
  auto f = this->expect_rejected(Error::SplitForbidden, [&] {
    return s.unmap(VirtAddr(this->kVa + 2 * MiB + 4 * KiB), 4 * KiB, no_split);
  });
  EXPECT_EQ(f.va.value(), this->kVa + 2 * MiB);
  EXPECT_EQ(f.level, 1);
}

TYPED_TEST(SpaceTest, ProtectSplitsOnlyAtTheEnds) {
  auto& s = this->s();
  ASSERT_TRUE(s.map(VirtAddr(this->kVa), PhysAddr(this->kPa), 8 * MiB, this->kRw).ok());
  auto r = s.protect(VirtAddr(this->kVa + MiB), 6 * MiB, AttrChange{Perm::X, Perm::W});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stats.splits, 2u);
  const auto l = this->leaves(this->kVa, 8 * MiB);
  // 256 + 256 4K leaves in the first 2M, two untouched 2M in the middle,
  // 256 + 256 in the last.
  ASSERT_EQ(l.size(), 512u + 2 + 512);
  EXPECT_EQ(l[255].attrs.perm, RW);
  EXPECT_EQ(l[256].attrs.perm, RX);
  EXPECT_EQ(l[512].size, 2 * MiB);
  EXPECT_EQ(l[512].attrs.perm, RX);
  EXPECT_EQ(l[514 + 255].attrs.perm, RX);
  EXPECT_EQ(l[514 + 256].attrs.perm, RW);
  // A protect that changes nothing writes nothing.
  this->fx.recorder.events.clear();
  auto same = s.protect(VirtAddr(this->kVa + 2 * MiB), 2 * MiB, AttrChange{Perm::X, Perm::W});
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->stats.leaves_written, 0u);
  for (const Event& e : this->fx.recorder.events) EXPECT_NE(e.kind, Event::Write);

  ProtectOptions no_split;
  no_split.allow_split = false;
  this->expect_rejected(Error::SplitForbidden, [&] {
    return s.protect(VirtAddr(this->kVa + 2 * MiB), 4 * KiB, AttrChange{Perm::W}, no_split);
  });
}

TYPED_TEST(SpaceTest, MergeFoldsAFullUniformTableIntoASuperpage) {
  auto& s = this->s();
  MapOptions small;
  small.leaf_sizes = 4 * KiB;
  ASSERT_TRUE(
      s.map(VirtAddr(this->kVa), PhysAddr(this->kPa), 2 * MiB - 4 * KiB, this->kRw, small).ok());
  const u64 before = this->fx.tables_in_use();
  MapOptions merge;
  merge.merge = true;
  auto r = s.map(VirtAddr(this->kVa + 2 * MiB - 4 * KiB), PhysAddr(this->kPa + 2 * MiB - 4 * KiB),
                 4 * KiB, this->kRw, merge);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stats.merges, 1u);
  EXPECT_EQ(this->fx.tables_in_use(), before - 1);
  const auto l = this->leaves(this->kVa, 2 * MiB);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].size, 2 * MiB);

  // Protect splits it again; protecting the rest back merges it again.
  ProtectOptions p;
  p.merge = true;
  ASSERT_TRUE(s.protect(VirtAddr(this->kVa), 4 * KiB, AttrChange{Perm::None, Perm::W}, p).ok());
  EXPECT_EQ(this->leaves(this->kVa, 2 * MiB).size(), 512u);
  auto back = s.protect(VirtAddr(this->kVa), 4 * KiB, AttrChange{Perm::W}, p);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->stats.merges, 1u);
  EXPECT_EQ(this->leaves(this->kVa, 2 * MiB).size(), 1u);
  // Non-contiguous physical pages never merge.
  ASSERT_TRUE(
      s.map(VirtAddr(this->kVa + 2 * MiB), PhysAddr(0), 2 * MiB - 4 * KiB, this->kRw, small).ok());
  auto r2 =
      s.map(VirtAddr(this->kVa + 4 * MiB - 4 * KiB), PhysAddr(8 * MiB), 4 * KiB, this->kRw, merge);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->stats.merges, 0u);
}

TYPED_TEST(SpaceTest, ExistingMappingsErrorReplaceOrKeep) {
  auto& s = this->s();
  ASSERT_TRUE(s.map(VirtAddr(this->kVa + 4 * KiB), PhysAddr(this->kPa), 4 * KiB, this->kRw).ok());
  MapOptions keep;
  keep.existing = OnExisting::Keep;
  ASSERT_TRUE(s.map(VirtAddr(this->kVa), PhysAddr(0x100000), 12 * KiB, this->kRw, keep).ok());
  EXPECT_EQ(s.query(VirtAddr(this->kVa))->pa.value(), 0x100000u);
  EXPECT_EQ(s.query(VirtAddr(this->kVa + 4 * KiB))->pa.value(), this->kPa);
  EXPECT_EQ(s.query(VirtAddr(this->kVa + 8 * KiB))->pa.value(), 0x102000u);

  MapOptions replace;
  replace.existing = OnExisting::Replace;
  this->fx.recorder.events.clear();
  ASSERT_TRUE(
      s.map(VirtAddr(this->kVa), PhysAddr(0x200000), 12 * KiB, Attrs{Perm::R}, replace).ok());
  for (u64 i = 0; i < 3; ++i) {
    auto q = s.query(VirtAddr(this->kVa + i * 4 * KiB));
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->pa.value(), 0x200000 + i * 4 * KiB);
    EXPECT_EQ(q->attrs.perm, Perm::R);
  }
  EXPECT_TRUE(this->fx.recorder.covers(this->kVa + 4 * KiB));

  // Replace inside a superpage splits it and keeps the rest.
  ASSERT_TRUE(s.map(VirtAddr(this->kVa + 2 * MiB), PhysAddr(this->kPa), 2 * MiB, this->kRw).ok());
  auto r = s.map(VirtAddr(this->kVa + 3 * MiB), PhysAddr(0), 4 * KiB, this->kRw, replace);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stats.splits, 1u);
  EXPECT_EQ(s.query(VirtAddr(this->kVa + 3 * MiB))->pa.value(), 0u);
  EXPECT_EQ(s.query(VirtAddr(this->kVa + 3 * MiB + 4 * KiB))->pa.value(),
            this->kPa + MiB + 4 * KiB);
}

TYPED_TEST(SpaceTest, LiveRangesAreNeverMadeInvalid) {
  auto& s = this->s();
  ASSERT_TRUE(s.map(VirtAddr(this->kVa), PhysAddr(this->kPa), 4 * MiB, this->kRw).ok());
  const VirtRange stack = VirtRange::of(VirtAddr(this->kVa + MiB), 16 * KiB);
  UnmapOptions u;
  u.live = LiveRanges{&stack, 1};
  auto f = this->expect_rejected(Error::LiveRangeBroken,
                                 [&] { return s.unmap(VirtAddr(this->kVa + MiB), 4 * KiB, u); });
  EXPECT_EQ(f.op, Op::Unmap);
  // Splitting the superpage that holds the live range: allowed only where the
  // format can split without a break.
  u.live = LiveRanges{&stack, 1};
  ProtectOptions p;
  p.live = LiveRanges{&stack, 1};
  const bool breaks =
      s.format().needs_break(Entry::leaf(PhysAddr(0), {}), Entry::table(PhysAddr(0)), true);
  if (breaks) {
    this->expect_rejected(Error::LiveRangeBroken, [&] {
      return s.protect(VirtAddr(this->kVa + 2 * MiB - 4 * KiB), 4 * KiB, AttrChange{Perm::X}, p);
    });
    // The other superpage has no live range and may be broken.
    EXPECT_TRUE(s.protect(VirtAddr(this->kVa + 2 * MiB), 4 * KiB, AttrChange{Perm::X}, p).ok());
  } else {
    EXPECT_TRUE(
        s.protect(VirtAddr(this->kVa + 2 * MiB - 4 * KiB), 4 * KiB, AttrChange{Perm::X}, p).ok());
  }
  EXPECT_TRUE(s.query(VirtAddr(this->kVa + MiB)).ok());
}

TYPED_TEST(SpaceTest, DeferredTlbWorkComesBackAsAToken) {
  auto& s = this->s();
  ASSERT_TRUE(s.map(VirtAddr(this->kVa), PhysAddr(this->kPa), 16 * KiB, this->kRw).ok());
  UnmapOptions defer;
  defer.tlb = TlbMode::Defer;
  this->fx.recorder.events.clear();
  auto r = s.unmap(VirtAddr(this->kVa), 16 * KiB, defer);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->token.pending());
  EXPECT_EQ(r->token.pending_frees(), s.format().levels() - 1);
  EXPECT_FALSE(this->fx.recorder.covers(this->kVa));
  // Tables are not back in the allocator until the TLB work is done.
  EXPECT_EQ(this->fx.tables_in_use(), s.format().levels());
  s.flush(std::move(r->token));
  EXPECT_FALSE(r->token.pending());
  EXPECT_TRUE(this->fx.recorder.covers(this->kVa));
  EXPECT_EQ(this->fx.tables_in_use(), 1u);
}

TYPED_TEST(SpaceTest, ManyInvalidationsBecomeOneFullFlush) {
  auto& s = this->s();
  MapOptions small;
  small.leaf_sizes = 4 * KiB;
  ASSERT_TRUE(s.map(VirtAddr(this->kVa), PhysAddr(this->kPa), 64 * 4 * KiB, this->kRw, small).ok());
  this->fx.recorder.events.clear();
  auto few = s.protect(VirtAddr(this->kVa), 8 * 4 * KiB, AttrChange{Perm::None, Perm::W});
  ASSERT_TRUE(few.ok());
  EXPECT_EQ(few->stats.invalidations, 8u);
  EXPECT_EQ(few->stats.full_flushes, 0u);
  auto many = s.protect(VirtAddr(this->kVa), 64 * 4 * KiB, AttrChange{Perm::X});
  ASSERT_TRUE(many.ok());
  EXPECT_EQ(many->stats.full_flushes, 1u);
  EXPECT_EQ(this->fx.recorder.events.back().kind, Event::Complete);
  EXPECT_EQ(this->fx.recorder.events[this->fx.recorder.events.size() - 2].kind,
            Event::InvalidateAll);
}

TYPED_TEST(SpaceTest, PlanPredictsTablesAndChangesNothing) {
  auto& s = this->s();
  ASSERT_TRUE(s.map(VirtAddr(this->kVa), PhysAddr(this->kPa), 2 * MiB, this->kRw).ok());
  const auto before = this->fx.snapshot();
  const struct {
    u64 va, pa, size;
  } cases[] = {
      {this->kVa + 2 * MiB, this->kPa, 4 * KiB},
      {this->kVa + 512 * GiB + 4 * KiB, 0, 40 * MiB},
      {this->kVa + 4 * GiB - 12 * KiB, 0x3000, 20 * MiB + 40 * KiB},
      {this->kVa + 8 * GiB - 2 * MiB, 0x4000'0000, 2 * GiB + 4 * MiB},
      {0xffff'ffff'8000'0000, 0x200000, 10 * MiB + 8 * KiB},
  };
  for (const auto& c : cases) {
    auto plan = s.plan_map(VirtAddr(c.va), PhysAddr(c.pa), c.size, this->kRw);
    ASSERT_TRUE(plan.ok());
    EXPECT_EQ(this->fx.snapshot(), before);
    auto done = s.map(VirtAddr(c.va), PhysAddr(c.pa), c.size, this->kRw);
    ASSERT_TRUE(done.ok()) << to_string(done.error());
    EXPECT_EQ(done->stats.tables_allocated, plan->tables_needed) << std::hex << c.va;
    ASSERT_TRUE(s.unmap(VirtAddr(c.va), c.size).ok());
  }
  auto plan = s.plan_unmap(VirtAddr(this->kVa + 4 * KiB), 4 * KiB);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->splits, 1u);
  EXPECT_EQ(plan->tables_needed, 1u);
  EXPECT_EQ(this->fx.snapshot(), before);
  auto bad = s.plan_map(VirtAddr(this->kVa), PhysAddr(0), 4 * KiB, this->kRw);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(), Error::AlreadyMapped);
}

TYPED_TEST(SpaceTest, UpperHalfAndTopOfTheAddressSpace) {
  auto& s = this->s();
  const u64 top = 0xffff'ffff'ffe0'0000;
  ASSERT_TRUE(s.map(VirtAddr(top), PhysAddr(this->kPa), 2 * MiB, this->kRw).ok());
  auto q = s.query(VirtAddr(0xffff'ffff'ffff'f000));
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->pa.value(), this->kPa);
  EXPECT_EQ(q->size, 2 * MiB);
  ASSERT_TRUE(s.unmap(VirtAddr(0xffff'ffff'ffff'f000), 4 * KiB).ok());
  EXPECT_EQ(this->leaves(top, 2 * MiB).size(), 511u);
  ASSERT_TRUE(s.unmap(VirtAddr(top), 2 * MiB).ok());
  EXPECT_EQ(this->fx.tables_in_use(), 1u);
}

TYPED_TEST(SpaceTest, WalkStopsWhenTheVisitorSaysSo) {
  auto& s = this->s();
  MapOptions small;
  small.leaf_sizes = 4 * KiB;
  ASSERT_TRUE(s.map(VirtAddr(this->kVa), PhysAddr(this->kPa), 64 * KiB, this->kRw, small).ok());
  int seen = 0;
  ASSERT_TRUE(s.walk(VirtAddr(this->kVa), GiB, [&](const Mapping&) { return ++seen < 5; }).ok());
  EXPECT_EQ(seen, 5);
  EXPECT_EQ(s.walk(VirtAddr(this->kVa), 0, [](const Mapping&) { return true; }).error(),
            Error::BadSize);
}

TEST(AddressSpaceCreate, FailsCleanlyWithoutARootPage) {
  TableMemory memory(4);
  FreeList empty(memory.access());
  auto r = AddressSpace<x86::Paging4, OffsetAccess, FreeList&>::create(x86::Paging4{},
                                                                       memory.access(), empty);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::OutOfTables);
  EXPECT_EQ(r.failure().op, Op::Create);
}

}  // namespace
}  // namespace ptkit::test
