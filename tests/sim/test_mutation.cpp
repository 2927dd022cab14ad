// The checker against the core and against mutants of the core's traces.
//
// 1. Random map/unmap/protect sequences run through the core with a recorder
//    that turns its writer, TLB sink and allocator calls into trace events
//    (plus `sync` after each operation): the checker must report nothing.
// 2. Each mutant drops one event, or swaps it with the next (writes,
//    publishes, invalidations, completes). An independent brute-force model
//    decides, for sampled addresses, whether the mutant changes the outcome:
//    at some `sync` the CPU may still use a translation other than the
//    tables' current one, or (AArch64) a translation is replaced while a
//    different one may still be cached (break-before-make broken), or (x86)
//    one write changes the page size together with the frame or attributes.
//    Every such mutant must be flagged by the checker.
#include <gtest/gtest.h>

#include <algorithm>
#include <cinttypes>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "ptkit/sim/checker.hpp"
#include "sim_support.hpp"
#include "support.hpp"

namespace ptkit::test {
namespace {

using sim::TraceEvent;
using Kind = TraceEvent::Kind;

/// Turns the core's writer, TLB sink and allocator calls into trace events.
struct TraceRecorder {
  std::vector<TraceEvent> events;
  std::vector<bool> fresh;  // per event: a write into a table no walker reaches yet

  void add(const TraceEvent& e, bool is_fresh = false) {
    events.push_back(e);
    fresh.push_back(is_fresh);
  }
  void on_write(const WriteSite& s, u64 old_raw, u64 new_raw, bool is_fresh) {
    add(TraceEvent::write(s.table.value(), s.index, s.level, new_raw, old_raw), is_fresh);
  }
  void publish() { add(TraceEvent::simple(Kind::Publish)); }
  void invalidate(const TlbRange& r) {
    add(TraceEvent::invalidate(r.first.value(), r.last.value(), r.stride_shift, r.global,
                               r.tables));
  }
  void invalidate_all(bool global) { add(TraceEvent::invalidate_all(global)); }
  void complete() { add(TraceEvent::simple(Kind::Complete)); }
};

/// An allocator that records `alloc` when the core takes a page and `free`
/// when it gives one back.
template <class Inner>
struct RecordingAllocator {
  Inner* inner;
  TraceRecorder* rec;
  bool reserve(u64 n) { return inner->reserve(n); }
  PhysAddr take() {
    const PhysAddr pa = inner->take();
    rec->add(TraceEvent::simple(Kind::Alloc, pa.value()));
    return pa;
  }
  void release(PhysAddr pa) {
    rec->add(TraceEvent::simple(Kind::Free, pa.value()));
    inner->release(pa);
  }
  void give_back_unused() { inner->give_back_unused(); }
};

using SimFreeList = FreeListAllocator<SimAccess>;
using RecAlloc = RecordingAllocator<SimFreeList>;

// ---- The brute-force model ------------------------------------------------------------

/// Per sampled address: the translation the tables give now, the ones the
/// walker may still see (stores not yet published), and every translation
/// the TLB may hold. Written without any of the checker's code.
class BruteForce {
 public:
  BruteForce(const sim::TraceConfig& cfg, const sim::Trace& trace, std::vector<u64> vas)
      : cfg_(cfg),
        c_(cfg.mmu),
        ops_(sim::ops_for(cfg.mmu.arch)),
        trace_(trace),
        vas_(std::move(vas)),
        st_(vas_.size()) {}

  /// Whether the trace's outcome differs from a correct one; `why` says how.
  bool changed(std::string& why) {
    const unsigned page_shift = ops_.entry_shift(c_, 0);
    for (size_t i = 0; i < vas_.size(); ++i) refresh(i);
    for (size_t n = 0; n < trace_.events.size(); ++n) {
      const TraceEvent& e = trace_.events[n];
      switch (e.kind) {
        case Kind::Mem: mem_.write64(e.a, e.b); break;
        case Kind::Alloc: {
          const u64 size = u64{1} << page_shift;
          const u64 base = e.a & ~(size - 1);
          if (mem_.touched(base))
            for (u64 off = 0; off < size; off += 8) mem_.write64(base + off, 0);
          break;
        }
        case Kind::Free:
        case Kind::Live:
        case Kind::Use: break;
        case Kind::Write: {
          mem_.write64(e.a + 8 * u64{e.index}, e.b);
          auto watched = watch_.find(e.a + 8 * u64{e.index});
          if (watched == watch_.end()) break;
          const std::vector<size_t> affected(watched->second.begin(), watched->second.end());
          for (size_t i : affected) {
            State& s = st_[i];
            const sim::Translation before = s.cur;
            refresh(i);
            if (c_.arch != sim::Arch::X86_64) s.unpublished.push_back(before);
            if (c_.arch == sim::Arch::AArch64 && s.cur.ok()) {
              for (const Cached& t : s.cached) {
                if (bbm_different(t.t, s.cur, vas_[i])) {
                  why = "event " + std::to_string(n) + ": break-before-make broken at " +
                        hex(vas_[i]);
                  return true;
                }
              }
            }
            if (c_.arch == sim::Arch::X86_64 && before.ok() && s.cur.ok() &&
                before.leaf_size != s.cur.leaf_size && !same(before, s.cur, vas_[i])) {
              why =
                  "event " + std::to_string(n) + ": size and attributes changed at " + hex(vas_[i]);
              return true;
            }
          }
          break;
        }
        case Kind::Publish:
          for (State& s : st_) s.unpublished.clear();
          break;
        case Kind::Invalidate:
        case Kind::InvalidateAll:
          for (size_t i = 0; i < vas_.size(); ++i) invalidate(i, e);
          break;
        case Kind::Complete:
          for (State& s : st_) {
            s.unpublished.clear();
            std::erase_if(s.cached, [](const Cached& t) { return t.dying; });
          }
          break;
        case Kind::Sync:
          for (size_t i = 0; i < vas_.size(); ++i) {
            for (const Cached& t : st_[i].cached) {
              if (harmful(t.t, st_[i].cur, vas_[i])) {
                why = "event " + std::to_string(n) + ": at the sync " + hex(vas_[i]) +
                      " may still translate to " + hex(t.t.pa + (vas_[i] - t.t.va)) +
                      (st_[i].cur.ok() ? " instead of " + hex(st_[i].cur.pa) : " though unmapped");
                return true;
              }
            }
          }
          break;
      }
    }
    return false;
  }

 private:
  struct Cached {
    sim::Translation t;
    bool dying = false;  // hit by an invalidation that has not completed (Arm): still usable
  };
  struct State {
    sim::Translation cur;
    std::vector<sim::Translation> unpublished;  // what the walker may still see
    std::vector<Cached> cached;
    std::vector<u64> path;  // the entries the walk of this address reads
  };

  static std::string hex(u64 v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%#" PRIx64, v);
    return buf;
  }

  bool cacheable(const sim::Translation& t) const {
    return t.ok() && (c_.arch == sim::Arch::X86_64 || t.accessed);
  }
  static u64 pa_of(const sim::Translation& t, u64 va) { return t.pa + (va - t.va); }
  static bool same(const sim::Translation& a, const sim::Translation& b, u64 va) {
    for (int u = 0; u < 2; ++u)
      if (a.read[u] != b.read[u] || a.write[u] != b.write[u] || a.exec[u] != b.exec[u])
        return false;
    return pa_of(a, va) == pa_of(b, va) && a.mem_index == b.mem_index &&
           a.shareability == b.shareability && a.global == b.global;
  }
  bool harmful(const sim::Translation& old, const sim::Translation& cur, u64 va) const {
    if (!cacheable(old)) return false;
    if (!cur.ok() || pa_of(old, va) != pa_of(cur, va) || old.mem_index != cur.mem_index ||
        old.shareability != cur.shareability || (old.global && !cur.global))
      return true;
    for (int u = 0; u < 2; ++u)
      if ((old.read[u] && !cur.read[u]) || (old.write[u] && !cur.write[u]) ||
          (old.exec[u] && !cur.exec[u]))
        return true;
    return false;
  }
  /// Two translations of `va` the TLB may not hold at once (Arm ARM
  /// D8.16.1): another output address, size, memory type or shareability,
  /// or non-global next to global.
  bool bbm_different(const sim::Translation& a, const sim::Translation& b, u64 va) const {
    if (!cacheable(a) || !b.ok()) return false;
    const bool size_ok = cfg_.bbm2 || a.leaf_size == b.leaf_size;
    return pa_of(a, va) != pa_of(b, va) || !size_ok || a.mem_index != b.mem_index ||
           a.shareability != b.shareability || (!a.global && b.global);
  }

  void refresh(size_t i) {
    State& s = st_[i];
    const u64 va = vas_[i];
    s.cur = ops_.translate(c_, mem_, trace_.root, va);
    if (cacheable(s.cur)) {
      bool have = false;
      for (const Cached& t : s.cached) have = have || (!t.dying && t.t == s.cur);
      if (!have) s.cached.push_back(Cached{s.cur});
    }
    // The entries this walk reads, found with the walker's descriptor
    // decoder: a write elsewhere cannot change this address's translation.
    for (u64 t : s.path) watch_[t].erase(i);
    s.path.clear();
    u64 table = trace_.root;
    for (unsigned level = ops_.levels(c_); level-- > 0;) {
      const u64 n = ops_.entries(c_, level);
      const u64 index = (va >> ops_.entry_shift(c_, level)) & (n - 1);
      s.path.push_back(table + 8 * index);
      watch_[table + 8 * index].insert(i);
      const sim::Descriptor d = ops_.decode(c_, mem_.read64(table + 8 * index), level);
      if (d.kind != sim::Descriptor::Kind::Table) break;
      table = d.pa;
    }
  }

  void invalidate(size_t i, const TraceEvent& e) {
    State& s = st_[i];
    const u64 va = vas_[i];
    if (c_.arch == sim::Arch::RiscV) s.unpublished.clear();  // SFENCE.VMA orders the stores
    for (Cached& t : s.cached) {
      bool hit = false;
      if (e.kind == Kind::InvalidateAll) {
        hit = !t.t.global || e.global;
      } else if (c_.arch != sim::Arch::RiscV || !t.t.global || e.global) {
        const u64 lo = va & ~(t.t.leaf_size - 1), hi = lo + (t.t.leaf_size - 1);
        const u64 step = u64{1} << e.stride_shift;
        for (u64 a = e.a & ~(step - 1); a <= e.b && !hit; a += step) {
          hit = a >= lo && a <= hi;
          if (a + step < a) break;
        }
      }
      if (!hit) continue;
      // The walker may refill what it can still see: the same leaf.
      auto refill = [&](const sim::Translation& u) {
        return u.ok() && u.leaf_size == t.t.leaf_size && same(t.t, u, va);
      };
      bool visible = refill(s.cur);
      for (const sim::Translation& u : s.unpublished) visible = visible || refill(u);
      if (visible) continue;
      t.dying = true;
    }
    if (c_.arch != sim::Arch::AArch64)
      std::erase_if(s.cached, [](const Cached& t) { return t.dying; });
    // Keep the sets small: one copy of each translation.
    std::vector<Cached> uniq;
    for (const Cached& t : s.cached) {
      bool dup = false;
      for (const Cached& u : uniq) dup = dup || (u.dying == t.dying && u.t == t.t);
      if (!dup) uniq.push_back(t);
    }
    s.cached = std::move(uniq);
  }

  sim::TraceConfig cfg_;
  sim::MmuConfig c_;
  const sim::ArchOps& ops_;
  const sim::Trace& trace_;
  std::vector<u64> vas_;
  std::vector<State> st_;
  std::unordered_map<u64, std::unordered_set<size_t>> watch_;  // entry -> addresses reading it
  sim::PhysMemory mem_;
};

// ---- Recording the core -----------------------------------------------------------------

template <class Config>
struct Recorded {
  sim::Trace trace;
  std::vector<bool> fresh;
  std::vector<u64> samples;
};

template <class Config>
Recorded<Config> record(const std::string& format, u64 seed, int ops) {
  using Format = typename Config::Format;
  std::mt19937_64 rng(seed);
  auto pick = [&](u64 n) { return std::uniform_int_distribution<u64>(0, n - 1)(rng); };
  const Format format_obj = Config::make();
  sim::PhysMemory core_memory;
  const SimAccess access{&core_memory};
  const u64 page = u64{1} << format_obj.page_shift();
  SimFreeList free_list(access, page);
  free_list.add_range(PhysAddr(0x40'0000'0000), 4096);
  TraceRecorder rec;
  using Space = AddressSpace<Format, SimAccess, RecAlloc, RecordingWriter<TraceRecorder>,
                             RecordingSink<TraceRecorder>>;
  auto created =
      Space::create(format_obj, access, RecAlloc{&free_list, &rec},
                    RecordingWriter<TraceRecorder>(rec), RecordingSink<TraceRecorder>(rec));
  if (!created.ok()) std::abort();
  Space space = std::move(created.value());

  Recorded<Config> out;
  {
    std::istringstream words(format);
    words >> out.trace.format;
    for (std::string w; words >> w;) out.trace.features.push_back(w);
  }
  out.trace.root = space.root().value();
  const u64 block = space.leaf_size(1);
  // A window a quarter into the space.
  unsigned shift = format_obj.page_shift();
  for (unsigned l = 0; l < format_obj.levels(); ++l) shift += format_obj.index_bits(l);
  const u64 base = u64{1} << (shift - 2);
  // Every page of the window and its neighbours, plus the ends of each
  // operation and random pages of the large ones.
  std::set<u64> samples;
  for (u64 a = base - page; a <= base + 4 * space.leaf_size(1); a += page) samples.insert(a);
  const Attrs choices[] = {{RW, MemType::WriteBack, false},
                           {Perm::R, MemType::WriteBack, true},
                           {RX, MemType::Device, false}};
  const u64 huge = space.leaf_size(2);
  for (int op = 0; op < ops; ++op) {
    // Mostly pages and blocks in a window of 4 blocks, so that operations
    // overlap; sometimes a whole level-2 leaf (x86 1G) over it or next to it.
    u64 gran = pick(3) == 0 ? block : page;
    u64 size = gran * (1 + pick(gran == page ? 40 : 2));
    u64 va = base + align_down(pick(4 * block - size), gran);
    u64 pa = va - base + 0x1'0000'0000 + (pick(3) == 0 ? pick(16) * page : 0);
    if (pick(10) == 0) {
      gran = size = huge;
      va = base + pick(2) * huge;
      pa = va - base + 0x1'0000'0000;
    }
    for (u64 a : {va, va + size - page, va - page, va + size, align_down(va, block),
                  align_down(va, block) + block - page})
      samples.insert(a);
    for (int i = 0; i < 3; ++i) samples.insert(va + align_down(pick(size), page));
    const u64 roll = pick(20);
    const int kind = roll < 9 ? 0 : roll < 15 ? 1 : 2;
    if (kind == 0) {
      MapOptions o;
      o.allow_split = true;  // random ops may cut superpages
      o.existing = pick(2) ? OnExisting::Replace : OnExisting::Keep;
      o.merge = pick(2) == 0;
      o.contiguous_hint = pick(2) == 0;
      const Attrs a = choices[pick(3)];
      if (!format_obj.can_express(a)) continue;
      auto r = space.map(VirtAddr(va), PhysAddr(pa), size, a, o);
      if (!r.ok()) std::abort();
    } else if (kind == 1) {
      auto r = space.unmap(VirtAddr(va), size, UnmapOptions{.allow_split = true});
      if (!r.ok()) std::abort();
    } else {
      ProtectOptions o;
      o.allow_split = true;  // random ops may cut superpages
      o.holes = OnHole::Skip;
      o.merge = pick(2) == 0;
      AttrChange c{pick(2) ? Perm::W : Perm::None, pick(2) ? Perm::X : Perm::W};
      c.change_global = pick(4) == 0;
      c.global = pick(2) == 0;
      auto r = space.protect(VirtAddr(va), size, c, o);
      if (!r.ok()) continue;  // e.g. an attribute the format cannot express: nothing changed
    }
    rec.add(TraceEvent::simple(Kind::Sync));
  }
  out.trace.events = rec.events;
  out.fresh = rec.fresh;
  out.samples.assign(samples.begin(), samples.end());
  return out;
}

struct Totals {
  u64 mutants = 0, changed = 0, flagged_changed = 0, flagged_unchanged = 0, events = 0;
};

template <class Config>
void run_format(const std::string& format, int traces, int ops, u64 max_mutants) {
  const u64 seed = test_seed();
  std::printf("PTKIT_SEED=%" PRIu64 " (set it to replay) %s\n", seed, format.c_str());
  std::mt19937_64 rng(seed);
  Totals tot;
  // Under the sanitizers fewer mutants per trace; every trace still runs.
  max_mutants = scaled(max_mutants, 20);
  for (int n = 0; n < traces; ++n) {
    const u64 trace_seed = rng();
    SCOPED_TRACE(::testing::Message() << format << " seed " << seed << " trace " << n);
    Recorded<Config> rec = record<Config>(format, trace_seed, ops);
    sim::TraceConfig cfg;
    std::string error;
    ASSERT_TRUE(sim::trace_config(rec.trace.format, rec.trace.features, cfg, error)) << error;
    tot.events += rec.trace.events.size();
    if (const char* dump = std::getenv("PTKIT_MUTATION_DUMP")) {
      if (FILE* f = std::fopen(dump, "w")) {
        std::fputs(sim::print_trace(rec.trace).c_str(), f);
        std::fclose(f);
      }
    }

    const sim::CheckResult clean = sim::check(rec.trace);
    ASSERT_TRUE(clean.ok()) << clean.error << "\n"
                            << (clean.violations.empty() ? "" : sim::describe(clean.violations[0]));
    std::string why;
    ASSERT_FALSE(BruteForce(cfg, rec.trace, rec.samples).changed(why)) << why;

    // Mutation sites: the invalidations, the writes a walker may see and the
    // barriers, each sampled up to a bound (writes into fresh tables, allocs, frees
    // and syncs are not mutated).
    std::vector<size_t> invalidations, sites, barriers;
    for (size_t i = 0; i < rec.trace.events.size(); ++i) {
      const Kind k = rec.trace.events[i].kind;
      if (k == Kind::Alloc || k == Kind::Free || k == Kind::Sync) continue;
      if (k == Kind::Write && rec.fresh[i]) continue;
      if (k == Kind::Invalidate || k == Kind::InvalidateAll)
        invalidations.push_back(i);
      else
        (k == Kind::Publish || k == Kind::Complete ? barriers : sites).push_back(i);
    }
    std::shuffle(sites.begin(), sites.end(), rng);
    std::shuffle(barriers.begin(), barriers.end(), rng);
    std::shuffle(invalidations.begin(), invalidations.end(), rng);
    if (invalidations.size() > max_mutants) invalidations.resize(max_mutants);
    if (sites.size() > max_mutants) sites.resize(max_mutants);
    if (barriers.size() > max_mutants / 4) barriers.resize(max_mutants / 4);
    sites.insert(sites.end(), barriers.begin(), barriers.end());
    sites.insert(sites.end(), invalidations.begin(), invalidations.end());
    // Mutants carry no `old` values: a dropped write would otherwise be
    // flagged as a trace mismatch at the next write of its entry, whatever
    // the rules say.
    sim::Trace plain = rec.trace;
    for (TraceEvent& e : plain.events) e.has_old = false;
    for (size_t site : sites) {
      for (int how = 0; how < 2; ++how) {
        sim::Trace m = plain;
        if (how == 0) {
          m.events.erase(m.events.begin() + long(site));
        } else {
          if (site + 1 >= m.events.size() || m.events[site] == m.events[site + 1]) continue;
          std::swap(m.events[site], m.events[site + 1]);
        }
        ++tot.mutants;
        std::string changed_why;
        const bool changed = BruteForce(cfg, m, rec.samples).changed(changed_why);
        const sim::CheckResult r = sim::check(m);
        ASSERT_TRUE(r.error.empty()) << r.error;
        bool flagged = false;
        for (const sim::Violation& v : r.violations)
          flagged = flagged || !v.rule.starts_with("trace-");
        if (getenv("PTKIT_MUTATION_VERBOSE") && flagged != changed)
          std::printf("%s event %zu (%s): brute force %s, checker %s\n", how == 0 ? "drop" : "swap",
                      site, sim::format_event(rec.trace.events[site]).c_str(),
                      changed ? changed_why.c_str() : "unchanged",
                      flagged ? sim::describe(r.violations[0]).c_str() : "nothing");
        if (changed) {
          ++tot.changed;
          if (flagged) ++tot.flagged_changed;
          EXPECT_TRUE(flagged) << (how == 0 ? "dropping" : "swapping with the next") << " event "
                               << site << " (" << sim::format_event(rec.trace.events[site])
                               << ") changes the outcome but is not flagged: " << changed_why;
        } else if (flagged) {
          ++tot.flagged_unchanged;
        }
      }
    }
  }
  std::printf("%s: %" PRIu64 " events in %d traces, %" PRIu64 " mutants, %" PRIu64
              " change the outcome (all %" PRIu64 " flagged), %" PRIu64
              " more flagged by rules the brute force does not model\n",
              format.c_str(), tot.events, traces, tot.mutants, tot.changed, tot.flagged_changed,
              tot.flagged_unchanged);
  // A floor, so that a broken recorder or brute force cannot pass vacuously.
  EXPECT_GE(tot.changed, 5u) << "too few mutants change anything";
}

struct X86_4_1G_Config {
  using Format = x86::Paging4;
  static Format make() { return Format{cpu_with_1g()}; }
};

TEST(Mutation, X86_64_FourLevelWith1GPages) {
  run_format<X86_4_1G_Config>("x86_64-4l", 4, 60, 150);
}
TEST(Mutation, AArch64_4K_48) { run_format<A64_4K_48>("aarch64-4k-48", 3, 40, 150); }
TEST(Mutation, RiscV_Sv39) { run_format<Rv_Sv39>("riscv-sv39 svnapot svpbmt", 4, 60, 150); }

}  // namespace
}  // namespace ptkit::test
