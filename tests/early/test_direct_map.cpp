// The two-pass direct map on every format: a memory map of RAM, holes and
// device ranges, built on empty tables and over live boot mappings of other
// leaf sizes; every run recorded and replayed through the simulator's rule
// checker (with a sync point between the passes, where the TLB must be
// coherent), and every recorded write scanned for one that changes a leaf's
// size together with its frame or attributes. Also: the Xen mode leaves every
// pre-existing entry bit-for-bit; bad maps and running out of tables change
// nothing; and the naive one-pass way compared with the two passes.
//
// Addresses are written in the format's geometry: P the smallest page, B the
// level-1 block, H the level-2 leaf where the format has one.
#include <map>
#include <string>
#include <vector>

#include "checked.hpp"
#include "ptkit/early/direct_map.hpp"

namespace ptkit::test {
namespace {

using early::build_direct_map;
using early::DirectMapOptions;
using early::DirectMapReport;
using early::KindAttrs;
using early::MemoryKind;
using early::MemoryMap;
using early::MemoryRange;

using Snapshot = std::vector<std::pair<u64, std::vector<u64>>>;

constexpr Attrs kBoot{RWX, MemType::WriteBack, false};

std::string stats_line(const char* name, const OpStats& s) {
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "%s: leaves %llu splits %llu merges %llu breaks %llu invalidations %llu "
                "full flushes %llu tables +%llu -%llu",
                name, (unsigned long long)s.leaves_written, (unsigned long long)s.splits,
                (unsigned long long)s.merges, (unsigned long long)s.breaks,
                (unsigned long long)s.invalidations, (unsigned long long)s.full_flushes,
                (unsigned long long)s.tables_allocated, (unsigned long long)s.tables_freed);
  return buf;
}

template <class Config>
class DirectMapTest : public ::testing::Test {
 protected:
  using Format = typename Config::Format;
  Fixture<Config> fx;
  auto& s() { return fx.s(); }
  const Format& format() { return fx.s().format(); }

  u64 P() const { return fx.page(); }
  u64 B() const { return fx.block(); }
  u64 H() const { return fx.huge(); }
  u64 base() const { return fx.va_base(); }

  KindAttrs final_attrs() { return early::final_direct_map_attrs(format()); }
  DirectMapOptions options() {
    DirectMapOptions o;
    o.base = VirtAddr(base());
    o.final_attrs = final_attrs();
    o.boot_attrs = KindAttrs{kBoot, kBoot};
    return o;
  }

  /// What boot code left behind: [pa, pa + size) at base + pa, RWX WB,
  /// non-global, with leaves of `leaf` bytes.
  void boot_map(u64 pa, u64 size, u64 leaf) {
    MapOptions mo;
    mo.leaf_sizes = leaf;
    ASSERT_TRUE(s().map(VirtAddr(base() + pa), PhysAddr(pa), size, kBoot, mo).ok());
  }

  /// The sample memory map, deliberately out of order: RAM over two boot
  /// blocks ending 8 pages into the second (split; given as two adjacent
  /// ranges, the second last, which make one segment), a hole, a device
  /// range over a boot block (memory type change), a hole over a boot block,
  /// RAM over boot pages (merge) and unmapped space, fresh RAM, fresh device.
  std::vector<MemoryRange> sample_map() const {
    const u64 P = this->P(), B = this->B();
    return {
        {PhysAddr(8 * B), 4 * P, MemoryKind::Device},  // 0: fresh
        {PhysAddr(0), B, MemoryKind::Ram},             // 1: over a boot block
        {PhysAddr(B + 8 * P), B - 8 * P, MemoryKind::Reserved},
        {PhysAddr(2 * B), B, MemoryKind::Device},  // 3: over a boot block
        {PhysAddr(3 * B), B, MemoryKind::Reserved},
        {PhysAddr(4 * B), 2 * B, MemoryKind::Ram},   // 5: over boot pages + nothing
        {PhysAddr(7 * B), 32 * P, MemoryKind::Ram},  // 6: fresh
        {PhysAddr(B), 8 * P, MemoryKind::Ram},       // 7: continues 1, into a boot block
    };
  }
  void boot_for_sample() {
    boot_map(0, 4 * B(), B());
    boot_map(4 * B(), B(), P());
  }

  Result<DirectMapReport> build(const std::vector<MemoryRange>& ranges, const DirectMapOptions& o) {
    return build_direct_map(s(), MemoryMap{ranges.data(), unsigned(ranges.size())}, o);
  }

  /// Builds with the checker watching: a sync point between the passes and
  /// one at the end, zero violations, and no write that changes a size
  /// together with a frame or attributes.
  DirectMapReport checked_build(const std::vector<MemoryRange>& ranges, DirectMapOptions o) {
    CheckedTrace<Config> trace(fx);
    const Snapshot before = fx.snapshot();
    fx.recorder.events.clear();
    o.after_pass_one = [](void* t) { static_cast<CheckedTrace<Config>*>(t)->sync(); };
    o.context = &trace;
    auto r = build(ranges, o);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : to_string(r.error()));
    trace.sync();
    const auto checked = trace.check_and_restart();
    EXPECT_TRUE(checked.ok()) << first_violations(checked);
    expect_no_size_with_change(before);
    if (!r.ok()) return DirectMapReport{};
    return r.value();
  }

  // ---- The write scan ------------------------------------------------------------

  /// The entry at (table, index, level) in `mem`, with a contiguous leaf's
  /// output address made its own.
  Entry entry_in(const std::map<std::pair<u64, u64>, u64>& mem, u64 table, u64 index,
                 unsigned level) {
    auto it = mem.find({table, index});
    Entry e = format().decode(it == mem.end() ? 0 : it->second, level);
    if (e.is_leaf() && e.contiguous)
      e.pa = e.pa + (index % format().contiguous_entries(level)) * s().leaf_size(level);
    return e;
  }

  /// Whether the table at `table` (at `level`) translates exactly like the
  /// leaf `leaf` one level up: leaves of its frame, in order, with its
  /// attributes.
  bool table_equivalent(const std::map<std::pair<u64, u64>, u64>& mem, u64 table, unsigned level,
                        const Entry& leaf) {
    for (u64 k = 0; k < s().entries(level); ++k) {
      const Entry e = entry_in(mem, table, k, level);
      if (!e.is_leaf() || e.pa != leaf.pa + k * s().leaf_size(level) || e.attrs != leaf.attrs)
        return false;
    }
    return true;
  }

  /// Replays the recorded writes from `before` and fails for each write to
  /// a valid entry that changes the translation's size (leaf <-> table, or
  /// the contiguous hint) while changing its frame or attributes.
  void expect_no_size_with_change(const Snapshot& before) {
    std::map<std::pair<u64, u64>, u64> mem;
    for (const auto& [pa, entries] : before)
      for (u64 i = 0; i < entries.size(); ++i) mem[{pa, i}] = entries[i];
    u64 size_changes = 0, bad = 0;
    for (const Event& ev : fx.recorder.events) {
      if (ev.kind != Event::Write) continue;
      const unsigned level = ev.site.level;
      const u64 table = ev.site.table.value();
      Entry old_e = entry_in(mem, table, ev.site.index, level);
      mem[{table, ev.site.index}] = ev.new_raw;
      Entry new_e = entry_in(mem, table, ev.site.index, level);
      if (!old_e.valid() || !new_e.valid()) continue;
      bool ok = true;
      if (old_e.is_leaf() && new_e.is_table()) {  // split: the new table must be equivalent
        ++size_changes;
        ok = table_equivalent(mem, new_e.pa.value(), level - 1, old_e);
      } else if (old_e.is_table() && new_e.is_leaf()) {  // merge: the old table must be
        ++size_changes;
        ok = table_equivalent(mem, old_e.pa.value(), level - 1, new_e);
      } else if (old_e.is_leaf() && old_e.contiguous != new_e.contiguous) {
        ++size_changes;
        ok = old_e.pa == new_e.pa && old_e.attrs == new_e.attrs;
      }
      if (!ok && bad++ < 3)
        ADD_FAILURE() << "write to table " << std::hex << table << " index " << std::dec
                      << ev.site.index << " level " << level
                      << " changes the size together with frame or attributes";
    }
    EXPECT_EQ(bad, 0u) << "of " << size_changes << " size changes";
    last_size_changes = size_changes;
  }
  u64 last_size_changes = 0;

  // ---- Expectations ----------------------------------------------------------------

  /// The translation of physical `pa` through the direct map.
  void expect_at(u64 pa, Attrs attrs) {
    auto q = s().query(VirtAddr(base() + pa));
    ASSERT_TRUE(q.ok()) << std::hex << pa;
    EXPECT_EQ(q->pa.value() + (base() + pa - q->va.value()), pa) << std::hex << pa;
    EXPECT_EQ(q->attrs, attrs) << std::hex << pa;
  }
  void expect_unmapped(u64 pa) {
    auto q = s().query(VirtAddr(base() + pa));
    EXPECT_FALSE(q.ok()) << std::hex << pa;
  }
  /// Leaves of exactly `size` bytes over [pa, pa + len).
  u64 leaves_in(u64 pa, u64 len, u64 size) {
    u64 n = 0;
    EXPECT_TRUE(s().walk(VirtAddr(base() + pa), len,
                         [&](const Mapping& m) {
                           n += m.size == size;
                           return true;
                         })
                    .ok());
    return n;
  }

  /// Runs `update`, which must fail with `e`, and checks that nothing
  /// changed: table memory, pages held, no write or TLB event at all.
  template <class Update>
  Failure expect_rejected(Error e, Update&& update) {
    const Snapshot before = fx.snapshot();
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
};

TYPED_TEST_SUITE(DirectMapTest, AllFormats);

// ---- Building ---------------------------------------------------------------------

TYPED_TEST(DirectMapTest, RamHolesAndDevicesOnEmptyTables) {
  const u64 P = this->P(), B = this->B();
  const auto map = this->sample_map();
  const DirectMapReport rep = this->checked_build(map, this->options());
  const KindAttrs fin = this->final_attrs();
  EXPECT_EQ(rep.ranges_mapped, 6u);
  EXPECT_EQ(rep.ranges_skipped, 2u);
  EXPECT_EQ(rep.ram_bytes, B + 8 * P + 2 * B + 32 * P);
  EXPECT_EQ(rep.device_bytes, B + 4 * P);
  ASSERT_EQ(rep.segment_count, 5u);  // ascending, whatever the map's order
  EXPECT_EQ(rep.segments[0].pa.value(), 0u);
  EXPECT_EQ(rep.segments[0].size, B + 8 * P);  // ranges 1 and 7
  EXPECT_EQ(rep.segments[0].first_range, 1u);
  EXPECT_EQ(rep.segments[0].range_count, 2u);
  EXPECT_EQ(rep.segments[4].pa.value(), 8 * B);
  EXPECT_EQ(rep.segments[4].first_range, 0u);
  for (unsigned k = 0; k < rep.segment_count; ++k) EXPECT_FALSE(rep.segments[k].over_live);
  // Nothing was live: final attributes at once, no pass two, nothing broken.
  EXPECT_EQ(rep.pass_two_ops, 0u);
  EXPECT_EQ(rep.pass_one.breaks, 0u);
  EXPECT_EQ(rep.pass_one.splits, 0u);
  EXPECT_EQ(this->last_size_changes, 0u);

  this->expect_at(0, fin.ram);
  this->expect_at(B + 7 * P, fin.ram);
  this->expect_unmapped(B + 8 * P);  // the holes
  this->expect_unmapped(3 * B);
  this->expect_unmapped(6 * B);
  this->expect_at(2 * B, fin.device);
  this->expect_at(3 * B - P, fin.device);
  this->expect_at(6 * B - P, fin.ram);
  this->expect_at(7 * B + 31 * P, fin.ram);
  this->expect_unmapped(7 * B + 32 * P);
  this->expect_at(8 * B + 3 * P, fin.device);
  this->expect_unmapped(8 * B + 4 * P);
  // Largest leaves: blocks at 0, 2B, 4B, 5B; pages elsewhere.
  EXPECT_EQ(rep.leaves_of_size(B), 4u);
  EXPECT_EQ(rep.leaves_of_size(P), 8u + 32u + 4u);
  EXPECT_EQ(rep.tables_allocated(), this->fx.tables_in_use() - 1);
}

TYPED_TEST(DirectMapTest, OverBootMappingsOfOtherSizes) {
  const u64 P = this->P(), B = this->B();
  this->boot_for_sample();
  const KindAttrs fin = this->final_attrs();
  const DirectMapReport rep = this->checked_build(this->sample_map(), this->options());
  ASSERT_EQ(rep.segment_count, 5u);
  EXPECT_TRUE(rep.segments[0].over_live);   // RAM [0, B+8P)
  EXPECT_TRUE(rep.segments[1].over_live);   // device [2B, 3B)
  EXPECT_TRUE(rep.segments[2].over_live);   // RAM [4B, 6B)
  EXPECT_FALSE(rep.segments[3].over_live);  // fresh RAM
  EXPECT_FALSE(rep.segments[4].over_live);  // fresh device

  // Final attributes where the map says so; the boot mapping of the holes
  // is left as it was (split where the RAM range ends inside its block).
  this->expect_at(0, fin.ram);
  this->expect_at(B + 7 * P, fin.ram);
  this->expect_at(B + 8 * P, kBoot);
  this->expect_at(2 * B - P, kBoot);
  this->expect_at(2 * B, fin.device);
  this->expect_at(3 * B, kBoot);
  this->expect_at(4 * B, fin.ram);
  this->expect_at(6 * B - P, fin.ram);
  this->expect_at(7 * B + 31 * P, fin.ram);
  this->expect_at(8 * B, fin.device);
  this->expect_unmapped(6 * B);

  // Pass one split the boot block under the RAM range's end and merged the
  // boot pages into a block; pass two changed attributes only.
  EXPECT_GE(rep.pass_one.splits, 1u);
  EXPECT_GE(rep.pass_one.merges, 1u);
  EXPECT_EQ(this->leaves_in(4 * B, B, B), 1u);
  EXPECT_EQ(rep.pass_two.splits, 0u);
  EXPECT_EQ(rep.pass_two.merges, 0u);
  EXPECT_EQ(rep.pass_two.tables_allocated, 0u);
  EXPECT_EQ(rep.pass_two.tables_freed, 0u);
  EXPECT_GT(rep.pass_two.leaves_written, 0u);
  // The split and the merge are the only size changes. Where an equivalent
  // size change may be written in place (x86, Arm with BBM level 2) the
  // scan saw them and found them equivalent; elsewhere they went through a
  // break, so no write changed a valid entry's size at all.
  const auto& f = this->format();
  if (f.needs_break(Entry::leaf(PhysAddr(0), kBoot), Entry::table(PhysAddr(0)), true)) {
    EXPECT_EQ(this->last_size_changes, 0u);
  } else {
    EXPECT_GE(this->last_size_changes, 2u);
  }
  // Same leaves as on empty tables inside the ranges.
  EXPECT_EQ(rep.leaves_of_size(B), 4u);
  EXPECT_EQ(rep.leaves_of_size(P), 8u + 32u + 4u);
  // An attribute change needs a break on Arm (memory type, nG -> G), never on x86.
  auto breaks = [&](Attrs to) {
    return f.needs_break(Entry::leaf(PhysAddr(0), kBoot), Entry::leaf(PhysAddr(0), to), false);
  };
  if (!breaks(fin.ram) && !breaks(fin.device)) {
    EXPECT_EQ(rep.pass_two.breaks, 0u);
  } else {
    EXPECT_GT(rep.pass_two.breaks, 0u);
  }
  std::printf("[ %s ] %s\n[ %s ] %s\n", TypeParam::trace_format().c_str(),
              stats_line("pass one", rep.pass_one).c_str(), TypeParam::trace_format().c_str(),
              stats_line("pass two", rep.pass_two).c_str());
}

TYPED_TEST(DirectMapTest, TwoPassesAgainstTheNaiveOnePass) {
  // Boot left small leaves where the direct map wants one large one
  // (x86 with 1G pages: 2M blocks under a 1G RAM range).
  const u64 big = this->H() != 0 ? this->H() : this->B();
  const u64 small = this->H() != 0 ? this->B() : this->P();
  const std::vector<MemoryRange> map{{PhysAddr(big), big, MemoryKind::Ram}};
  const KindAttrs fin = this->final_attrs();

  // Naive: one map with the final attributes, Replace, merging.
  Fixture<TypeParam> naive;
  {
    MapOptions mo;
    mo.leaf_sizes = small;
    ASSERT_TRUE(naive.s().map(VirtAddr(this->base() + big), PhysAddr(big), big, kBoot, mo).ok());
  }
  OpStats naive_stats;
  {
    CheckedTrace<TypeParam> trace(naive);
    naive.recorder.events.clear();
    MapOptions mo;
    mo.existing = OnExisting::Replace;
    mo.merge = true;
    auto r = naive.s().map(VirtAddr(this->base() + big), PhysAddr(big), big, fin.ram, mo);
    ASSERT_TRUE(r.ok());
    naive_stats = r->stats;
    trace.sync();
    // The engine never changes a size together with anything in one write:
    // it rewrites each small leaf in place, then merges the uniform table.
    // So the checker finds nothing wrong with the naive way either.
    const auto checked = trace.check_and_restart();
    EXPECT_TRUE(checked.ok()) << first_violations(checked);
  }

  this->boot_map(big, big, small);
  const DirectMapReport rep = this->checked_build(map, this->options());
  EXPECT_EQ(this->leaves_in(big, big, big), 1u);
  this->expect_at(big, fin.ram);
  EXPECT_EQ(runs_of(this->s(), this->base() + big, this->base() + 2 * big - 1),
            runs_of(naive.s(), this->base() + big, this->base() + 2 * big - 1));

  // What the two passes save: the naive way rewrites every small leaf before
  // merging; pass one merges the unchanged leaves, pass two rewrites one.
  const u64 written = rep.pass_one.leaves_written + rep.pass_two.leaves_written;
  EXPECT_EQ(naive_stats.leaves_written, this->s().entries(this->H() != 0 ? 1 : 0));
  EXPECT_EQ(rep.pass_two.leaves_written, 1u);
  EXPECT_LT(written, naive_stats.leaves_written);
  EXPECT_EQ(rep.pass_one.merges, 1u);
  EXPECT_EQ(naive_stats.merges, 1u);
  const auto& f = this->format();
  if (f.needs_break(Entry::leaf(PhysAddr(0), kBoot), Entry::leaf(PhysAddr(0), fin.ram), false)) {
    // Arm: every small leaf (or contiguous run of them) broken one by one,
    // against one break in each pass.
    EXPECT_GT(naive_stats.breaks, rep.pass_one.breaks + rep.pass_two.breaks);
    EXPECT_LE(rep.pass_one.breaks + rep.pass_two.breaks, 2u);
  }
  std::printf("[ %s ] naive: %s\n[ %s ] two-pass: %s | %s\n", TypeParam::trace_format().c_str(),
              stats_line("one pass", naive_stats).c_str(), TypeParam::trace_format().c_str(),
              stats_line("pass one", rep.pass_one).c_str(),
              stats_line("pass two", rep.pass_two).c_str());
}

// ---- Xen mode ---------------------------------------------------------------------------

TYPED_TEST(DirectMapTest, XenLeavesEveryExistingEntryAsItWas) {
  const u64 P = this->P(), B = this->B();
  this->boot_map(4 * P, 8 * P, P);
  this->boot_map(B + 2 * P, P, P);
  const std::vector<MemoryRange> map{{PhysAddr(0), 32 * P, MemoryKind::Ram},
                                     {PhysAddr(B), 4 * P, MemoryKind::Device}};
  DirectMapOptions o = this->options();
  o.xen = true;
  o.leaf_sizes = P;  // Xen PV has no superpages
  const Snapshot before = this->fx.snapshot();
  const DirectMapReport rep = this->checked_build(map, o);
  EXPECT_EQ(rep.pass_two_ops, 0u);
  EXPECT_EQ(rep.pass_one.breaks, 0u);

  // Every entry valid before holds the same bits at the same place.
  const Snapshot after = this->fx.snapshot();
  std::map<u64, const std::vector<u64>*> now;
  for (const auto& [pa, entries] : after) now[pa] = &entries;
  u64 compared = 0;
  for (const auto& [pa, entries] : before) {
    ASSERT_TRUE(now.count(pa)) << "table " << std::hex << pa << " gone";
    for (u64 i = 0; i < entries.size(); ++i) {
      if (entries[i] == 0) continue;
      EXPECT_EQ((*now[pa])[i], entries[i]) << "table " << std::hex << pa << " index " << i;
      ++compared;
    }
  }
  EXPECT_GE(compared, 9u);
  // No recorded write replaced a valid entry.
  for (const Event& ev : this->fx.recorder.events) {
    if (ev.kind == Event::Write) {
      EXPECT_FALSE(this->format().is_valid_raw(ev.old_raw, ev.site.level));
    }
  }

  const KindAttrs fin = this->final_attrs();
  this->expect_at(0, fin.ram);
  this->expect_at(3 * P, fin.ram);
  this->expect_at(4 * P, kBoot);  // pre-existing: untouched
  this->expect_at(11 * P, kBoot);
  this->expect_at(12 * P, fin.ram);
  this->expect_at(31 * P, fin.ram);
  this->expect_at(B, fin.device);
  this->expect_at(B + 2 * P, kBoot);
  this->expect_at(B + 3 * P, fin.device);

  // Without the Xen mode the same build rewrites them.
  Fixture<TypeParam> plain;
  {
    MapOptions mo;
    mo.leaf_sizes = P;
    ASSERT_TRUE(
        plain.s().map(VirtAddr(this->base() + 4 * P), PhysAddr(4 * P), 8 * P, kBoot, mo).ok());
    o.xen = false;
    auto r = build_direct_map(plain.s(), MemoryMap{map.data(), unsigned(map.size())}, o);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->pass_two_ops, 1u);
    auto q = plain.s().query(VirtAddr(this->base() + 4 * P));
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->attrs, fin.ram);
  }
}

// ---- Refusals ---------------------------------------------------------------------------

TYPED_TEST(DirectMapTest, MalformedMapsAreRefusedWithNothingChanged) {
  const u64 P = this->P(), B = this->B();
  this->boot_for_sample();
  const DirectMapOptions o = this->options();
  auto refuse = [&](Error e, std::vector<MemoryRange> map, int index) {
    const Failure f = this->expect_rejected(e, [&] { return this->build(map, o); });
    const MemoryMap mm{map.data(), unsigned(map.size())};
    EXPECT_EQ(early::failing_range(mm, f), index) << to_string(e);
    if (index >= 0) {
      EXPECT_EQ(f.pa, map[unsigned(index)].start);
      EXPECT_EQ(f.va.value(), this->base() + map[unsigned(index)].start.value());
    }
    return f;
  };
  // Overlapping: the device range starts inside the RAM before it.
  refuse(Error::AlreadyMapped,
         {{PhysAddr(8 * B), B, MemoryKind::Ram},
          {PhysAddr(0), B, MemoryKind::Ram},
          {PhysAddr(8 * B + B - P), 4 * P, MemoryKind::Device}},
         2);
  // An overlap with a reserved range is as malformed.
  refuse(Error::AlreadyMapped,
         {{PhysAddr(0), 2 * B, MemoryKind::Ram}, {PhysAddr(B), B, MemoryKind::Reserved}}, 1);
  // Unaligned start, unaligned size (the last range; nothing before it mapped).
  Failure f = refuse(
      Error::Unaligned,
      {{PhysAddr(8 * B), B, MemoryKind::Ram}, {PhysAddr(9 * B + P / 2), P, MemoryKind::Device}}, 1);
  EXPECT_EQ(f.alignment, P);
  EXPECT_EQ(f.pa.value(), 9 * B + P / 2);
  refuse(Error::Unaligned,
         {{PhysAddr(8 * B), B, MemoryKind::Ram}, {PhysAddr(9 * B), P + 8, MemoryKind::Ram}}, 1);
  // Zero size, wrapping around.
  refuse(Error::BadSize,
         {{PhysAddr(8 * B), B, MemoryKind::Ram}, {PhysAddr(10 * B), 0, MemoryKind::Ram}}, 1);
  refuse(Error::BadSize, {{PhysAddr(~u64{0} - P + 1), 2 * P, MemoryKind::Ram}}, 0);
  // Too many ranges.
  std::vector<MemoryRange> many;
  for (u64 i = 0; i <= early::kMaxMemoryRanges; ++i)
    many.push_back({PhysAddr(8 * B + 2 * i * P), P, MemoryKind::Ram});
  EXPECT_STREQ(refuse(Error::BadSize, many, -1).subject, "memory map");
  // Attributes the format cannot express (write without read).
  DirectMapOptions bad = o;
  bad.final_attrs.ram.perm = Perm::W;
  const std::vector<MemoryRange> one{{PhysAddr(8 * B), B, MemoryKind::Ram}};
  EXPECT_STREQ(
      this->expect_rejected(Error::AttrUnsupported, [&] { return this->build(one, bad); }).subject,
      "final attributes");
  // A well-formed map the space cannot hold: refused by the dry runs, still
  // before any write, though the first range (over boot blocks) is fine.
  const std::vector<MemoryRange> far{{PhysAddr(0), B, MemoryKind::Ram},
                                     {PhysAddr(u64{1} << 60), B, MemoryKind::Ram}};
  const Failure g = this->expect_rejected(Error::NonCanonical, [&] { return this->build(far, o); });
  EXPECT_EQ(early::failing_range(MemoryMap{far.data(), 2}, g), 1);
}

TYPED_TEST(DirectMapTest, LiveRangeThatPassTwoWouldBreakIsRefusedFirst) {
  this->boot_for_sample();
  const KindAttrs fin = this->final_attrs();
  // The CPU runs on the device block's boot mapping (say, an early console).
  const VirtRange live = VirtRange::of(VirtAddr(this->base() + 2 * this->B()), this->P());
  DirectMapOptions o = this->options();
  o.live = LiveRanges{&live, 1};
  const auto map = this->sample_map();
  const auto& f = this->format();
  if (f.needs_break(Entry::leaf(PhysAddr(0), kBoot), Entry::leaf(PhysAddr(0), fin.device), false)) {
    const Failure fl =
        this->expect_rejected(Error::LiveRangeBroken, [&] { return this->build(map, o); });
    EXPECT_EQ(early::failing_range(MemoryMap{map.data(), unsigned(map.size())}, fl), 3);
  } else {
    // x86: attributes change in place, the live range stays valid throughout.
    const DirectMapReport rep = this->checked_build(map, o);
    EXPECT_EQ(rep.pass_two.breaks, 0u);
    this->expect_at(2 * this->B(), fin.device);
  }
}

// ---- Running out of tables --------------------------------------------------------------

TYPED_TEST(DirectMapTest, TooFewTablesIsRefusedBeforeTheFirstWrite) {
  using Format = typename TypeParam::Format;
  this->boot_for_sample();
  const auto map = this->sample_map();
  u64 planned = 0;
  {
    Fixture<TypeParam> probe;
    MapOptions blocks, pages;
    blocks.leaf_sizes = this->B();
    pages.leaf_sizes = this->P();
    ASSERT_TRUE(
        probe.s().map(VirtAddr(this->base()), PhysAddr(0), 4 * this->B(), kBoot, blocks).ok());
    ASSERT_TRUE(probe.s()
                    .map(VirtAddr(this->base() + 4 * this->B()), PhysAddr(4 * this->B()), this->B(),
                         kBoot, pages)
                    .ok());
    auto r =
        build_direct_map(probe.s(), MemoryMap{map.data(), unsigned(map.size())}, this->options());
    ASSERT_TRUE(r.ok());
    planned = r->tables_planned;
    EXPECT_GE(planned, r->tables_allocated());
  }
  ASSERT_GE(planned, 3u);  // two fresh page tables, one split
  // A boot allocator one page short of the bound.
  const u64 page_size = this->fx.memory.page_size();
  BumpAllocator dry(this->fx.memory.base() + 448 * page_size, planned - 1, page_size);
  AddressSpace<Format, OffsetAccess, BumpAllocator&, RecWriter, RecSink> space(
      Format(TypeParam::make()), this->fx.memory.access(), dry, RecWriter(this->fx.recorder),
      RecSink(this->fx.recorder), this->fx.s().root());
  const Failure f = this->expect_rejected(Error::OutOfTables, [&] {
    return build_direct_map(space, MemoryMap{map.data(), unsigned(map.size())}, this->options());
  });
  EXPECT_EQ(f.needed, planned);
  EXPECT_EQ(dry.pages_free(), planned - 1);
}

TYPED_TEST(DirectMapTest, AllocatorFailingMidwayLeavesTheTablesAsBefore) {
  using Format = typename TypeParam::Format;
  using Failing = FailingAllocator<FreeList>;
  using FailingSpace =
      AddressSpace<Format, OffsetAccess, RecordingAllocator<Failing>, RecWriter, RecSink>;
  this->boot_for_sample();
  const auto map = this->sample_map();
  const MemoryMap mm{map.data(), unsigned(map.size())};
  const Snapshot before = this->fx.snapshot();
  const u64 free_before = this->fx.alloc.pages_free();
  unsigned refused_up_front = 0, undone = 0;
  bool built = false;
  for (u64 fail_at = 1; fail_at < 64 && !built; ++fail_at) {
    CheckedTrace<TypeParam> trace(this->fx);
    this->fx.recorder.events.clear();
    Failing failing(this->fx.alloc, fail_at);
    FailingSpace space(Format(TypeParam::make()), this->fx.memory.access(),
                       RecordingAllocator<Failing>(failing, this->fx.recorder),
                       RecWriter(this->fx.recorder), RecSink(this->fx.recorder),
                       this->fx.s().root());
    auto r = build_direct_map(space, mm, this->options());
    trace.sync();
    const auto checked = trace.check_and_restart();
    EXPECT_TRUE(checked.ok()) << "fail_at " << fail_at << "\n" << first_violations(checked);
    if (r.ok()) {
      built = true;
      break;
    }
    ASSERT_EQ(r.error(), Error::OutOfTables) << "fail_at " << fail_at;
    ASSERT_EQ(this->fx.snapshot(), before) << "fail_at " << fail_at;
    ASSERT_EQ(this->fx.alloc.pages_free(), free_before) << "fail_at " << fail_at;
    if (this->fx.recorder.events.empty()) {
      ++refused_up_front;
    } else {
      ++undone;  // written, then unmapped again
      EXPECT_GE(early::failing_range(mm, r.failure()), 0);
    }
  }
  EXPECT_TRUE(built);
  EXPECT_GE(refused_up_front, 1u);
  EXPECT_GE(undone, 2u) << "no failure after a range was mapped";
}

}  // namespace
}  // namespace ptkit::test
