// Randomized differential test: long random sequences of map, unmap and
// protect (mixed sizes, overlaps, splits, merges) on every format, compared
// after every batch with a plain interval map, and every update's trace
// checked by the simulator's rule checker. The seed is printed; set
// PTKIT_SEED to replay a failure.
#include <algorithm>

#include "checked.hpp"

namespace ptkit::test {
namespace {

// Operations on a format with 512-entry tables; formats with larger tables
// (16K, 64K granules) do proportionally fewer, each touching more entries.
// Every operation also goes past the simulator's rule checker, which is what
// bounds the count.
constexpr u64 kOpsPerFormat = 10'000;
constexpr u64 kBatch = 250;
// The checker replays a trace from a copy of the tables: checking every 8
// batches keeps that copying small next to the events checked. Formats with
// 2048- and 8192-entry tables check every batch: their operations write many
// more entries, and the checker keeps every translation a TLB may still hold
// (relaxed permissions are never invalidated), so a longer trace costs it
// more per event.
u64 check_every(u64 per_table) { return per_table > 512 ? kBatch : 8 * kBatch; }

template <class Config>
class RandomTest : public ::testing::Test {};
TYPED_TEST_SUITE(RandomTest, AllFormats);

struct Window {
  u64 base;
  u64 phys;  // physical base the window tends to map to
};

std::string describe_op(int kind, u64 va, u64 pa, u64 size, int variant) {
  static const char* const kNames[] = {"map", "unmap", "protect"};
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s va=%#llx pa=%#llx size=%#llx variant=%d", kNames[kind],
                static_cast<unsigned long long>(va), static_cast<unsigned long long>(pa),
                static_cast<unsigned long long>(size), variant);
  return buf;
}

TYPED_TEST(RandomTest, MatchesAnIntervalMapOverLongRandomSequences) {
  const u64 seed = test_seed();
  std::printf("PTKIT_SEED=%llu (set it to replay)\n", static_cast<unsigned long long>(seed));
  this->RecordProperty("seed", std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto pick = [&](u64 n) { return std::uniform_int_distribution<u64>(0, n - 1)(rng); };

  Fixture<TypeParam> fx(16384);
  auto& s = fx.s();
  // Every update also goes past the simulator's rule checker.
  CheckedTrace<TypeParam> checked(fx);
  IntervalMap ref;
  // Sizes in the format's geometry: pages, blocks and (where the format has
  // them) level-2 leaves; windows of at least 8 level-2 spans.
  const u64 page = fx.page(), block = fx.block(), huge = fx.huge();
  const u64 per_table = fx.entries(0);
  const u64 kWindowSize = std::max({8 * GiB, 4 * huge, 16 * block});
  // Where a level-2 leaf holds thousands of blocks (64K granule: 4T), ranges
  // of them are rarer, or the run is dominated by rewriting them.
  const u64 huge_roll = huge != 0 && huge / block > 512 ? 99 : 95;
  // Such a window is terabytes wide, and operations spread over all of it
  // would rarely meet (no splits, merges or freed tables in some runs): all
  // but the level-2 ones stay in its first 64 blocks.
  const u64 hot = huge_roll == 99 ? std::min(kWindowSize, 64 * block) : kWindowSize;
  // One window a quarter into the space, one near its end (near the top of
  // the upper half where the format has one), a window short of the very end
  // so that window ends do not wrap to 0.
  const u64 space_end = s.format().is_canonical(VirtAddr(~u64{0})) ? 0 : fx.va_base() << 2;
  const u64 last_window = space_end - 2 * kWindowSize;
  const Window windows[] = {{fx.va_base(), 0x0000'0002'0000'0000},
                            {last_window, 0x0000'0010'0000'0000}};
  const std::vector<Attrs> kAttrChoices =
      fx.expressible({{RW, MemType::WriteBack, false},
                      {Perm::R, MemType::WriteBack, true},
                      {RX, MemType::WriteThrough, false},
                      {RW | Perm::User, MemType::Uncached, false},
                      {RWX, MemType::UncachedMinus, true},
                      {RW, MemType::WriteCombining, true},
                      {RW | Perm::User, MemType::Device, false},
                      {RX | Perm::User, MemType::WriteBack, false}});
  ASSERT_GE(kAttrChoices.size(), 3u);
  const std::optional<MemType> other_mem = fx.other_mem();

  OpStats total;
  u64 failures = 0;
  u64 contiguous_leaves_seen = 0;
  auto tally = [&](const OpStats& st) {
    total.splits += st.splits;
    total.merges += st.merges;
    total.breaks += st.breaks;
    total.tables_freed += st.tables_freed;
    total.full_flushes += st.full_flushes;
  };
  // Not shortened by PTKIT_TEST_SCALE: fewer operations do not reach the
  // merges, splits and freed tables asserted below reliably.
  const u64 ops = std::max<u64>(2000, kOpsPerFormat * 512 / std::max<u64>(512, per_table));
  for (u64 op = 0; op < ops; ++op) {
    const Window& w = windows[pick(2)];
    // Granule of the start address and the size, biased towards superpages.
    const u64 gran_roll = pick(100);
    const u64 gran = gran_roll < 60 ? page : gran_roll < huge_roll || huge == 0 ? block : huge;
    u64 pages = gran == huge    ? 1 + pick(2)
                : gran == block ? 1 + pick(4)
                                : 1 + pick(pick(8) == 0 ? 2048 : 16);
    u64 size = pages * gran;
    // Occasionally a range that is not a multiple of its start's granule.
    if (pick(5) == 0) size += (1 + pick(per_table - 1)) * page;
    u64 va = w.base + align_down(pick((gran == huge ? kWindowSize : hot) - size), gran);
    if (pick(3) == 0) va += pick(per_table) * page;
    if (va + size > w.base + kWindowSize) va = w.base + kWindowSize - size;
    // Physical address: same alignment as va (superpages possible) or shifted.
    const u64 pa_roll = pick(4);
    u64 pa = w.phys + (va - w.base);
    if (pa_roll == 1) pa += pick(1024) * page;
    if (pa_roll == 2) pa += pick(64) * block;
    // Ranges that would take thousands of page tables as pages (64K granule
    // 4T blocks) keep blocks possible.
    const bool big = size / (page * per_table) > 512;
    if ((gran == huge || big) && !is_aligned(pa - va, block))
      pa = align_down(pa, block) + (va & (block - 1));
    const u64 hi = va + size - 1;
    const int kind = int(pick(10) < 5 ? 0 : pick(2) + 1);
    const int variant = int(pick(6));
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " op " << op << ": "
                                      << describe_op(kind, va, pa, size, variant));
    fx.recorder.events.clear();
    const u64 in_use_before = fx.tables_in_use();

    bool expect_ok = true;
    Error expected_error = Error::BadSize;
    bool succeeded = false;
    if (kind == 0) {
      MapOptions o;
      o.allow_split = true;  // random ops may cut superpages
      o.existing = variant < 2   ? OnExisting::Error
                   : variant < 4 ? OnExisting::Replace
                                 : OnExisting::Keep;
      o.merge = pick(2) == 0;
      if (pick(6) == 0 && !big) o.leaf_sizes = page;
      o.contiguous_hint = pick(8) != 0;
      const Attrs a = kAttrChoices[pick(kAttrChoices.size())];
      if (o.existing == OnExisting::Error && ref.any_mapped(va, hi)) {
        expect_ok = false;
        expected_error = Error::AlreadyMapped;
      }
      auto r = s.map(VirtAddr(va), PhysAddr(pa), size, a, o);
      ASSERT_EQ(r.ok(), expect_ok) << (r.ok() ? "succeeded" : to_string(r.error()));
      if (!r.ok()) {
        ASSERT_EQ(r.error(), expected_error);
      }
      if (r.ok()) {
        tally(r->stats);
        succeeded = true;
        if (o.existing == OnExisting::Keep)
          ref.insert_holes(va, hi, pa, a);
        else
          ref.insert(va, hi, pa, a);
      }
    } else if (kind == 1) {
      UnmapOptions o;
      o.allow_split = true;  // random ops may cut superpages
      o.holes = variant == 0 ? OnHole::Error : OnHole::Skip;
      if (o.holes == OnHole::Error && !ref.all_mapped(va, hi)) {
        expect_ok = false;
        expected_error = Error::NotMapped;
      }
      auto r = s.unmap(VirtAddr(va), size, o);
      ASSERT_EQ(r.ok(), expect_ok) << (r.ok() ? "succeeded" : to_string(r.error()));
      if (!r.ok()) {
        ASSERT_EQ(r.error(), expected_error);
      }
      if (r.ok()) {
        tally(r->stats);
        succeeded = true;
        ref.erase(va, hi);
      }
    } else {
      ProtectOptions o;
      o.allow_split = true;  // random ops may cut superpages
      o.holes = variant < 3 ? OnHole::Error : OnHole::Skip;
      o.merge = pick(2) == 0;
      AttrChange c;
      c.set = Perm(u8(pick(16)) & u8(Perm::W | Perm::X | Perm::User));
      c.clear = Perm(u8(pick(16)) & u8(Perm::W | Perm::X | Perm::User)) & ~c.set;
      c.change_global = pick(3) == 0;
      c.global = pick(2) == 0;
      c.change_mem = pick(4) == 0;
      c.mem = pick(2) == 0 || !other_mem ? MemType::WriteBack : *other_mem;
      if (o.holes == OnHole::Error && !ref.all_mapped(va, hi)) {
        expect_ok = false;
        expected_error = Error::NotMapped;
      }
      auto r = s.protect(VirtAddr(va), size, c, o);
      ASSERT_EQ(r.ok(), expect_ok) << (r.ok() ? "succeeded" : to_string(r.error()));
      if (!r.ok()) {
        ASSERT_EQ(r.error(), expected_error);
      }
      if (r.ok()) {
        tally(r->stats);
        succeeded = true;
        ref.protect(va, hi, c);
      }
    }
    checked.sync();
    if (!succeeded) {
      ++failures;
      // A failed update writes nothing and keeps no page.
      for (const Event& e : fx.recorder.events) ASSERT_NE(e.kind, Event::Write);
      ASSERT_EQ(fx.tables_in_use(), in_use_before);
    }
    // Spot-check translations around the range on every operation.
    for (u64 probe :
         {va - page, va, align_down(hi, page), hi + 1, va + align_down(pick(size), page)}) {
      if (probe < w.base || probe >= w.base + kWindowSize) continue;
      const auto want = ref.lookup(probe);
      auto got = s.query(VirtAddr(probe));
      ASSERT_EQ(got.ok(), want.has_value()) << std::hex << "probe " << probe;
      if (want) {
        ASSERT_EQ(got->pa.value() + (probe - got->va.value()), want->first) << std::hex << probe;
        ASSERT_EQ(got->attrs, want->second) << std::hex << probe;
      }
    }
    if ((op + 1) % kBatch == 0 || op + 1 == ops) {
      for (const Window& win : windows) {
        const auto got = runs_of(s, win.base, win.base + kWindowSize - 1);
        const auto want = [&] {
          std::vector<Run> out;
          for (const Run& r : ref.runs())
            if (r.va >= win.base && r.last < win.base + kWindowSize) out.push_back(r);
          return out;
        }();
        // The first differing run says more than a count.
        for (size_t i = 0; i < std::min(got.size(), want.size()); ++i)
          ASSERT_EQ(got[i], want[i]) << "after op " << op << ": tables " << describe(got[i])
                                     << " vs reference " << describe(want[i]);
        ASSERT_EQ(got.size(), want.size()) << "after op " << op;
      }
      if ((op + 1) % check_every(per_table) == 0 || op + 1 == ops) {
        const sim::CheckResult rules = checked.check_and_restart();
        ASSERT_TRUE(rules.ok()) << "rule checker after op " << op << ":\n"
                                << first_violations(rules);
      }
      const RunCheck runs = check_contiguous_runs(fx);
      ASSERT_EQ(runs.disagreeing, 0u) << runs.first_problem << " after op " << op;
      contiguous_leaves_seen += runs.contiguous_leaves;
    }
  }
  // The sequence must have exercised what it claims to.
  std::printf(
      "%llu ops, %llu refused; splits %llu, merges %llu, breaks %llu, tables freed %llu, "
      "full flushes %llu\n",
      static_cast<unsigned long long>(ops), static_cast<unsigned long long>(failures),
      static_cast<unsigned long long>(total.splits), static_cast<unsigned long long>(total.merges),
      static_cast<unsigned long long>(total.breaks),
      static_cast<unsigned long long>(total.tables_freed),
      static_cast<unsigned long long>(total.full_flushes));
  EXPECT_GT(total.splits, ops / 100);
  // A merge needs a whole table of uniform leaves: with 2048- and 8192-entry
  // tables (16K, 64K granules) and fewer operations they are rare.
  EXPECT_GT(total.merges, per_table == 512 ? 10u : 0u);
  EXPECT_GT(total.tables_freed, ops / 100);
  EXPECT_GT(failures, ops / 50);
  EXPECT_LT(failures, ops / 2);
  if (s.format().needs_break(Entry::leaf(PhysAddr(0), {}), Entry::table(PhysAddr(0)), true)) {
    EXPECT_GT(total.breaks, 0u);
  }
  std::printf("contiguous-hint leaves seen at batch ends: %llu; trace events checked: %llu\n",
              static_cast<unsigned long long>(contiguous_leaves_seen),
              static_cast<unsigned long long>(checked.checked_events()));
  if (CheckedTrace<TypeParam>::enabled()) {
    EXPECT_GT(checked.checked_events(), ops);
  }
  if (s.format().contiguous_entries(0) > 1) {
    EXPECT_GT(contiguous_leaves_seen, 0u);
  }
  // Unmapping everything returns every table but the root.
  for (const Window& w : windows) ASSERT_TRUE(s.unmap(VirtAddr(w.base), kWindowSize).ok());
  EXPECT_EQ(fx.tables_in_use(), 1u);
}

}  // namespace
}  // namespace ptkit::test
