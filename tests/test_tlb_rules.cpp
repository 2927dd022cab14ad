// The TLB work and the architectural rules, checked event by event while
// random updates run:
// - a TLB model: at any moment the CPU may cache the current translation of
//   an address; a cached translation is dropped only by an invalidation that
//   covers it. After every update, every translation that may still be cached
//   must equal the final one: nothing removed or restricted survives.
// - every rewrite of a valid entry by a valid one is one the format allows
//   without a break (x86: a size change only with identical translations),
//   and every break is followed by an invalidation and its completion before
//   the entry becomes valid again.
#include <algorithm>
#include <set>

#include "checked.hpp"

namespace ptkit::test {
namespace {

template <class Config>
class TlbRulesTest : public ::testing::Test {};
TYPED_TEST_SUITE(TlbRulesTest, AllFormats);

// Shorter under PTKIT_TEST_SCALE (the sanitizer build).
const u64 kOps = scaled(12000, 1000);

struct Translation {
  bool mapped = false;
  u64 pa = 0;
  Attrs attrs{};
  auto operator<=>(const Translation& o) const {
    if (mapped != o.mapped) return mapped <=> o.mapped;
    if (pa != o.pa) return pa <=> o.pa;
    if (attrs.perm != o.attrs.perm) return u8(attrs.perm) <=> u8(o.attrs.perm);
    if (attrs.mem != o.attrs.mem) return u8(attrs.mem) <=> u8(o.attrs.mem);
    return attrs.global <=> o.attrs.global;
  }
  bool operator==(const Translation&) const = default;
};

template <class Space>
Translation translate(const Space& s, u64 va) {
  auto q = s.query(VirtAddr(va));
  if (!q.ok()) return {};
  return Translation{true, q->pa.value() + (va - q->va.value()), q->attrs};
}

/// Decodes entry `index` of a table at `level`, giving a leaf with the
/// contiguous hint its own output address (decode gives its run's).
template <class Space>
Entry entry_of(const Space& s, u64 raw, unsigned level, u64 index) {
  Entry e = s.format().decode(raw, level);
  if (e.contiguous)
    e.pa = e.pa + (index % s.format().contiguous_entries(level)) * s.leaf_size(level);
  return e;
}

/// Whether every address of the entry at `site` translates the same through
/// `before` and `after` (a split or merge, or a change of the contiguous
/// hint), reading child tables from memory.
template <class Space>
bool equivalent(const Space& s, const TableMemory& mem, unsigned level, const Entry& before,
                const Entry& after) {
  if (before.is_leaf() && after.is_leaf())
    return before.pa == after.pa && before.attrs == after.attrs;
  const Entry& leaf = before.is_leaf() ? before : after;
  const Entry& table = before.is_leaf() ? after : before;
  const u64* t = mem.table(table.pa);
  const u64 span = s.leaf_size(level - 1);
  for (u64 k = 0; k < s.entries(level - 1); ++k) {
    const Entry e = entry_of(s, t[k], level - 1, k);
    if (!e.is_leaf() || e.pa != leaf.pa + k * span || !(e.attrs == leaf.attrs)) return false;
  }
  return true;
}

TYPED_TEST(TlbRulesTest, NoStaleTranslationAndNoForbiddenRewrite) {
  const u64 seed = test_seed();
  std::printf("PTKIT_SEED=%llu (set it to replay)\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  auto pick = [&](u64 n) { return std::uniform_int_distribution<u64>(0, n - 1)(rng); };

  Fixture<TypeParam> fx(8192);
  // The simulator's rule checker sees every update too.
  CheckedTrace<TypeParam> checked(fx);
  auto& s = fx.s();
  const auto& format = s.format();
  const u64 page = fx.page(), block = fx.block();
  const u64 kBase = fx.va_base();
  const u64 kWindow = std::max(4 * GiB, 8 * block);

  std::vector<u64> samples;
  std::vector<std::set<Translation>> may_be_cached;
  std::vector<Translation> current;
  bool dirty = false;
  // Slots made invalid during this update, and whether an invalidation and
  // its completion have happened since.
  struct Broken {
    bool invalidated = false;
    bool completed = false;
  };
  std::map<std::pair<u64, unsigned>, Broken> broken;
  u64 rewrites_checked = 0, stale_checks = 0, bbm_checked = 0;

  auto refresh = [&] {
    for (size_t i = 0; i < samples.size(); ++i) {
      current[i] = translate(s, samples[i]);
      if (current[i].mapped) may_be_cached[i].insert(current[i]);
    }
    dirty = false;
  };

  fx.recorder.on_event = [&](const Event& e) {
    if (dirty) refresh();
    switch (e.kind) {
      case Event::Write: {
        if (e.fresh) break;  // an unlinked table: no walker can see it
        const unsigned level = e.site.level;
        const Entry before = entry_of(s, e.old_raw, level, e.site.index);
        const Entry after = entry_of(s, e.new_raw, level, e.site.index);
        const auto slot = std::make_pair(e.site.table.value(), e.site.index);
        if (before.valid() && after.valid()) {
          const bool equiv = equivalent(s, fx.memory, level, before, after);
          EXPECT_FALSE(format.needs_break(before, after, equiv))
              << "valid entry rewritten without break-before-make at level " << level;
          if (before.kind != after.kind) {
            EXPECT_TRUE(equiv) << "page size changed together with frame or attributes";
          }
          ++rewrites_checked;
        }
        if (before.valid() && !after.valid()) broken[slot] = Broken{};
        if (!before.valid() && after.valid()) {
          auto it = broken.find(slot);
          if (it != broken.end()) {
            EXPECT_TRUE(it->second.invalidated && it->second.completed)
                << "entry made valid again before the break's invalidation completed";
            broken.erase(it);
            ++bbm_checked;
          }
        }
        dirty = true;
        break;
      }
      case Event::Invalidate:
        for (size_t i = 0; i < samples.size(); ++i)
          if (e.range.first.value() <= samples[i] && samples[i] <= e.range.last.value())
            may_be_cached[i] =
                current[i].mapped ? std::set<Translation>{current[i]} : std::set<Translation>{};
        for (auto& [slot, b] : broken) b.invalidated = true;
        break;
      case Event::InvalidateAll:
        for (size_t i = 0; i < samples.size(); ++i) {
          // A flush that spares global entries (x86 CR3 reload) drops only
          // the others.
          std::set<Translation> kept;
          if (!e.global)
            for (const Translation& t : may_be_cached[i])
              if (t.attrs.global) kept.insert(t);
          if (current[i].mapped) kept.insert(current[i]);
          may_be_cached[i] = kept;
        }
        for (auto& [slot, b] : broken) b.invalidated = true;
        break;
      case Event::Complete:
        for (auto& [slot, b] : broken)
          if (b.invalidated) b.completed = true;
        break;
      case Event::Publish:
      case Event::Alloc:
      case Event::Free: break;
    }
  };

  const std::optional<MemType> other_mem = fx.other_mem();
  const Attrs choices[] = {{RW, MemType::WriteBack, false},
                           {Perm::R, MemType::WriteBack, true},
                           {RX, other_mem.value_or(MemType::WriteBack), false}};
  for (u64 op = 0; op < kOps; ++op) {
    const u64 gran = pick(3) == 0 ? block : page;
    const u64 size = gran * (1 + pick(gran == page ? 64 : 3));
    const u64 va = kBase + align_down(pick(kWindow - size), gran);
    const u64 hi = va + size - 1;
    u64 pa = va - kBase + (pick(3) == 0 ? pick(16) * page : 0);
    const int kind = int(pick(3));
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " op " << op << " kind " << kind
                                      << std::hex << " va " << va << " size " << size);
    // Sample the range's ends, its neighbours, the superpages around it and
    // random pages inside; each starts cached as it translates now.
    samples.clear();
    const u64 level2 = fx.level2_span();
    for (u64 a : {va, align_down(hi, page), va - page, hi + 1, align_down(va, block),
                  align_down(va, block) + block - page, align_down(va, level2)})
      samples.push_back(a);
    for (int i = 0; i < 8; ++i) samples.push_back(va + align_down(pick(size), page));
    may_be_cached.assign(samples.size(), {});
    current.assign(samples.size(), {});
    refresh();
    broken.clear();

    Status st = Ok{};
    if (kind == 0) {
      MapOptions o;
      o.allow_split = true;  // random ops may cut superpages
      o.existing = pick(2) ? OnExisting::Replace : OnExisting::Keep;
      o.merge = pick(2) == 0;
      auto r = s.map(VirtAddr(va), PhysAddr(pa), size, choices[pick(3)], o);
      ASSERT_TRUE(r.ok()) << to_string(r.error());
    } else if (kind == 1) {
      auto r = s.unmap(VirtAddr(va), size, UnmapOptions{.allow_split = true});
      ASSERT_TRUE(r.ok()) << to_string(r.error());
    } else {
      ProtectOptions o;
      o.allow_split = true;  // random ops may cut superpages
      o.holes = OnHole::Skip;
      o.merge = pick(2) == 0;
      AttrChange c{pick(2) ? Perm::W : Perm::None, pick(2) ? Perm::X : Perm::W};
      c.change_mem = pick(4) == 0;
      c.mem = pick(2) ? MemType::WriteBack : other_mem.value_or(MemType::WriteBack);
      c.change_global = pick(4) == 0;
      c.global = pick(2) == 0;
      auto r = s.protect(VirtAddr(va), size, c, o);
      ASSERT_TRUE(r.ok()) << to_string(r.error());
    }
    if (dirty) refresh();
    for (size_t i = 0; i < samples.size(); ++i) {
      for (const Translation& t : may_be_cached[i]) {
        ASSERT_EQ(t, current[i]) << std::hex << "stale translation of " << samples[i]
                                 << " survives: pa " << t.pa << " vs " << current[i].pa;
        ++stale_checks;
      }
    }
    fx.recorder.events.clear();
    checked.sync();
    if ((op + 1) % 2000 == 0 || op + 1 == kOps) {
      const sim::CheckResult rules = checked.check_and_restart();
      ASSERT_TRUE(rules.ok()) << "rule checker after op " << op << ":\n" << first_violations(rules);
    }
  }
  std::printf("%llu valid-to-valid rewrites, %llu breaks, %llu cached translations checked\n",
              static_cast<unsigned long long>(rewrites_checked),
              static_cast<unsigned long long>(bbm_checked),
              static_cast<unsigned long long>(stale_checks));
  // Coverage, not a rate: how many operations rewrite a valid entry varies
  // widely by seed (AArch64 with FEAT_BBM level 2, 1200 operations: 357 to
  // 4254 over 30 seeds), so the floor only proves the case was exercised.
  EXPECT_GT(rewrites_checked, kOps / 10);
  // Samples gather cached translations as the run goes on: short runs
  // (PTKIT_TEST_SCALE) check about four per operation, full ones more.
  EXPECT_GT(stale_checks, kOps * 2);
}

}  // namespace
}  // namespace ptkit::test
