// The early-boot table-access policies (early/table_access.hpp).
//
// Host model: all "physical" memory is the simulator's sparse PhysMemory. The
// transient slots' window is mapped by a small kernel address space (the
// "host" tables, built with the engine over plain access); the slot policy
// writes level-0 entries of that space's table for the window, and the test's
// SlotWindow turns a slot address into a pointer the way an MMU would: it
// walks the host tables with the simulator's reference walker (which shares
// no code with the formats) and returns the host memory of the page the walk
// reaches. A wrong slot entry therefore sends the engine's reads and writes
// to the wrong page (or faults), and the comparison with a reference space
// built over plain access shows it.
//
//  - EngineViews: how many table views the engine holds open at once, per
//    format, measured with a counting access wrapper: the bound the header
//    documents (engine_views()).
//  - SlotsRunTheEngine: every format, an engine whose only access is
//    TransientSlots with exactly engine_views(levels) slots, through map /
//    unmap / protect with splits, merges, contiguous runs and random updates;
//    every step compared with the reference space (walk and reference MMU).
//  - Image-resident tables (a static pool in this binary's image), the chain
//    of image + direct map + slots, exhaustion, the TLB work of a slot, and
//    the errors.
#include <array>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ptkit/early/table_access.hpp"
#include "ptkit/sim/mmu.hpp"
#include "ptkit/sim/trace.hpp"
#include "support.hpp"

namespace ptkit::test {
namespace {

using early::AccessError;
using early::AccessRef;
using early::ChainAccess;
using early::DirectMapAccess;
using early::engine_views;
using early::ImageAccess;
using early::kSlotAttrs;
using early::TransientSlots;

// ---- Simulated physical memory and its plain access -------------------------------------

/// Plain access to the simulator's memory: the reference the policies are
/// compared against, and how the host tables are built.
struct SimAccess {
  sim::PhysMemory* memory;
  u64* table(PhysAddr pa) const { return memory->word(pa.value()); }
  void done(u64*) const {}
};
using SimFreeList = FreeListAllocator<SimAccess>;

// Physical regions (all below every format's output size).
constexpr u64 kHostTables = 0x1'0000'0000;  // the host tables that map the slot window
constexpr u64 kSlotTables = 0x2'0000'0000;  // tables reached only through slots
constexpr u64 kRefTables = 0x3'0000'0000;   // the reference space's tables
constexpr u64 kImagePa = 0x4000'0000;       // the image (chain test: one 64 KiB chunk)
constexpr u64 kDirectPa = 0x5000'0000;      // the direct-mapped boot range (one chunk)
constexpr u64 kLoosePages = 0x6000'0000;    // pages the unit tests reach through slots
constexpr u64 kDataPa = u64{1} << 40;       // output addresses of the mappings

// ---- Geometry --------------------------------------------------------------------------

template <class Format>
struct Geometry {
  explicit Geometry(const Format& format) : f(format) {
    levels = f.levels();
    unsigned shift = f.page_shift();
    for (unsigned l = 0; l < levels; ++l) {
      leaf[l] = u64{1} << shift;
      shift += f.index_bits(l);
    }
    space_shift = shift;
    const u64 quarter = u64{1} << (shift - 2);
    V = f.is_canonical(VirtAddr(quarter)) ? quarter : ((~u64{0} << shift) | quarter);
  }
  Format f;
  unsigned levels = 0;
  unsigned space_shift = 0;
  u64 leaf[8] = {};
  u64 V = 0;  // a quarter into the space (upper half for TTBR1-style formats)

  [[nodiscard]] u64 page() const { return leaf[0]; }
  [[nodiscard]] u64 block() const { return leaf[1]; }
  [[nodiscard]] u64 huge() const { return levels > 2 && f.leaf_allowed(2) ? leaf[2] : 0; }
  [[nodiscard]] u64 level2_span() const { return levels > 2 ? leaf[2] : leaf[1] * 1024; }
  [[nodiscard]] u64 entries(unsigned level) const { return u64{1} << f.index_bits(level); }
  [[nodiscard]] unsigned index(u64 va, unsigned level) const {
    return unsigned((va / leaf[level]) & (entries(level) - 1));
  }
  /// The region the workloads use and the comparisons walk.
  [[nodiscard]] u64 region_last() const { return V + ((u64{1} << (space_shift - 2)) - 1); }
};

/// The physical address of the table at `level` on the walk of `va` (which
/// must exist), read with the format's decoder.
template <class Format>
u64 table_on_walk(const Geometry<Format>& g, const sim::PhysMemory& mem, u64 root, u64 va,
                  unsigned level) {
  u64 table = root;
  for (unsigned l = g.levels - 1; l > level; --l) {
    const Entry e = g.f.decode(mem.read64(table + 8 * g.index(va, l)), l);
    EXPECT_TRUE(e.is_table()) << "no table at level " << l - 1 << " for " << std::hex << va;
    if (!e.is_table()) return 0;
    table = e.pa.value();
  }
  return table;
}

// ---- The reference MMU ---------------------------------------------------------------

struct SimMmu {
  const sim::ArchOps* ops = nullptr;  // null: the simulator has no such MMU
  sim::MmuConfig cfg;
};

template <class Config>
SimMmu sim_mmu() {
  SimMmu m;
  if (Config::trace_format().empty()) return m;
  sim::TraceConfig tc;
  std::string why;
  if (!sim::trace_config(Config::trace_format(), Config::trace_features(), tc, why)) {
    ADD_FAILURE() << "trace_config: " << why;
    return m;
  }
  m.cfg = tc.mmu;
  m.ops = &sim::ops_for(tc.mmu.arch);
  return m;
}

// ---- The test's slot window: an MMU model ---------------------------------------------

/// What the window model needs, shared by every copy of the window.
struct WindowModel {
  sim::PhysMemory* mem = nullptr;
  SimMmu mmu;
  u64 root = 0;  // the host tables that map the slot window
  u64 page = 0;
  /// The format's own view of a slot address (for formats the simulator
  /// lacks): the host space's query.
  std::function<Result<Mapping>(VirtAddr)> query;
  std::vector<std::string> failures;
  std::vector<u64> scratch = std::vector<u64>(65536 / 8);
  u64 walks = 0;
};

/// SlotWindow for host tests: translate the slot address as the MMU would
/// (reference walker), check the translation is a supervisor read/write,
/// never-executable page, and return host memory of the page it reaches.
struct SimSlotWindow {
  WindowModel* m;
  u64* at(VirtAddr va) const {
    ++m->walks;
    char buf[160];
    if (m->mmu.ops != nullptr) {
      const sim::Translation t = m->mmu.ops->translate(m->mmu.cfg, *m->mem, m->root, va.value());
      const bool rw = t.check(sim::Access{sim::AccessType::Write, false}) == sim::FaultKind::None &&
                      t.check(sim::Access{sim::AccessType::Read, false}) == sim::FaultKind::None;
      const bool nx = t.check(sim::Access{sim::AccessType::Execute, false}) != sim::FaultKind::None;
      if (!t.ok() || !rw || !nx || t.read[1] || t.write[1] || t.leaf_size != m->page) {
        std::snprintf(buf, sizeof buf, "slot %#llx: fault %s rw=%d nx=%d user=%d size=%#llx",
                      static_cast<unsigned long long>(va.value()), sim::to_string(t.fault), rw, nx,
                      t.read[1] || t.write[1], static_cast<unsigned long long>(t.leaf_size));
        m->failures.emplace_back(buf);
        return m->scratch.data();
      }
      return m->mem->word(t.pa);
    }
    const Result<Mapping> q = m->query(va);
    if (!q || q.value().level != 0 || q.value().attrs.perm != RW) {
      std::snprintf(buf, sizeof buf, "slot %#llx: query %s",
                    static_cast<unsigned long long>(va.value()),
                    q ? "wrong leaf" : to_string(q.error()));
      m->failures.emplace_back(buf);
      return m->scratch.data();
    }
    return m->mem->word(q.value().pa.value());
  }
};
static_assert(early::SlotWindow<SimSlotWindow>);

/// The host tables that map the slot window: a kernel space over plain
/// access, with one page mapped at the start of the window's block so that
/// the window's level-0 table exists. The window starts 8 pages further.
template <class Config>
struct SlotHost {
  using Format = typename Config::Format;
  using HostSpace = AddressSpace<Format, SimAccess, SimFreeList>;

  explicit SlotHost(sim::PhysMemory& memory)
      : mem(memory), g(Config::make()), alloc(SimAccess{&memory}, g.page()) {
    alloc.add_range(PhysAddr(kHostTables), 16);
    auto made = HostSpace::create(g.f, SimAccess{&mem}, alloc);
    if (!made) std::abort();
    host.emplace(std::move(made.value()));
    const u64 block_va = g.V - 2 * g.block();
    const Result<Outcome> mapped = host->map(VirtAddr(block_va), PhysAddr(kDataPa - g.block()),
                                             g.page(), Attrs{Perm::R, MemType::WriteBack, false});
    EXPECT_TRUE(mapped.ok());
    window = VirtAddr(block_va + 8 * g.page());
    level0_pa = table_on_walk(g, mem, host->root().value(), window.value(), 0);
    level0 = mem.word(level0_pa);
    model.mem = &mem;
    model.mmu = sim_mmu<Config>();
    model.root = host->root().value();
    model.page = g.page();
    model.query = [this](VirtAddr va) { return host->query(va); };
  }
  SlotHost(const SlotHost&) = delete;
  SlotHost& operator=(const SlotHost&) = delete;

  template <unsigned N, class Sink>
  TransientSlots<Format, Sink, N, SimSlotWindow> slots(Sink sink) {
    auto made = TransientSlots<Format, Sink, N, SimSlotWindow>::create(g.f, window, level0, sink,
                                                                       SimSlotWindow{&model});
    if (!made) {
      ADD_FAILURE() << "TransientSlots::create: " << to_string(made.error());
      std::abort();
    }
    return made.value();
  }

  /// The whole level-0 table that holds the slot entries.
  [[nodiscard]] std::vector<u64> level0_contents() const {
    return std::vector<u64>(level0, level0 + g.entries(0));
  }

  sim::PhysMemory& mem;
  Geometry<Format> g;
  SimFreeList alloc;
  std::optional<HostSpace> host;
  VirtAddr window;
  u64 level0_pa = 0;
  u64* level0 = nullptr;
  WindowModel model;
};

// ---- Counting views -------------------------------------------------------------------

struct ViewCounter {
  int open = 0;
  int max_open = 0;
  std::map<u64*, int> pointers;  // open pointers, with how often each is open
  std::size_t max_distinct = 0;
  u64 opens = 0;
  u64 unknown_done = 0;
};

/// Forwards to `inner` and counts the views open at once.
template <class Inner>
struct CountingAccess {
  Inner inner;
  ViewCounter* c;
  u64* table(PhysAddr pa) {
    u64* p = inner.table(pa);
    ++c->opens;
    c->max_open = std::max(c->max_open, ++c->open);
    ++c->pointers[p];
    c->max_distinct = std::max(c->max_distinct, c->pointers.size());
    return p;
  }
  void done(u64* p) {
    auto it = c->pointers.find(p);
    if (it == c->pointers.end()) {
      ++c->unknown_done;
    } else {
      --c->open;
      if (--it->second == 0) c->pointers.erase(it);
    }
    inner.done(p);
  }
  bool covers(PhysAddr pa) const requires early::CoveringAccess<Inner> { return inner.covers(pa); }
  bool owns(const u64* p) const requires early::CoveringAccess<Inner> { return inner.owns(p); }
};

// ---- Workloads ---------------------------------------------------------------------------

struct Step {
  enum Kind { Map, Unmap, Protect } kind = Map;
  u64 va = 0;
  u64 pa = 0;
  u64 size = 0;
  Attrs attrs{};
  OnExisting existing = OnExisting::Error;
  bool merge = false;
  bool hint = true;
  AttrChange change{};
  std::string what;
};

template <class Space>
Result<Outcome> apply(Space& s, const Step& st) {
  switch (st.kind) {
    case Step::Map: {
      MapOptions o;
      o.existing = st.existing;
      o.allow_split = true;
      o.merge = st.merge;
      o.contiguous_hint = st.hint;
      return s.map(VirtAddr(st.va), PhysAddr(st.pa), st.size, st.attrs, o);
    }
    case Step::Unmap: {
      UnmapOptions o;
      o.allow_split = true;
      o.holes = OnHole::Skip;
      return s.unmap(VirtAddr(st.va), st.size, o);
    }
    case Step::Protect: {
      ProtectOptions o;
      o.allow_split = true;
      o.holes = OnHole::Skip;
      o.merge = st.merge;
      return s.protect(VirtAddr(st.va), st.size, st.change, o);
    }
  }
  std::abort();
}

/// Fixed steps that split, merge, take runs apart, build fresh subtrees and
/// free them, then `randoms` random updates, then unmapping everything.
template <class Format>
std::vector<Step> make_steps(const Geometry<Format>& g, u64 seed, int randoms) {
  const u64 p = g.page(), b = g.block(), h = g.huge(), V = g.V;
  const Attrs A{RW, MemType::WriteBack, false};
  const Attrs B = g.f.can_express(Attrs{Perm::R, MemType::WriteBack, true})
                      ? Attrs{Perm::R, MemType::WriteBack, true}
                      : A;
  const u64 P = kDataPa;  // aligned to every leaf below the root
  AttrChange clear_w;
  clear_w.clear = Perm::W;
  AttrChange set_w;
  set_w.set = Perm::W;
  std::vector<Step> s;
  auto map = [&](u64 va, u64 pa, u64 size, Attrs a, const char* what,
                 OnExisting ex = OnExisting::Error, bool merge = false) {
    Step st;
    st.kind = Step::Map;
    st.va = va;
    st.pa = pa;
    st.size = size;
    st.attrs = a;
    st.existing = ex;
    st.merge = merge;
    st.what = what;
    s.push_back(st);
  };
  auto unmap = [&](u64 va, u64 size, const char* what) {
    Step st;
    st.kind = Step::Unmap;
    st.va = va;
    st.size = size;
    st.what = what;
    s.push_back(st);
  };
  auto protect = [&](u64 va, u64 size, AttrChange c, bool merge, const char* what) {
    Step st;
    st.kind = Step::Protect;
    st.va = va;
    st.size = size;
    st.change = c;
    st.merge = merge;
    st.what = what;
    s.push_back(st);
  };
  map(V, P, 2 * b + 3 * p, A, "blocks and pages, fresh subtree");
  map(V + 4 * b, P + 4 * b, 64 * p, A, "pages in contiguous runs");
  protect(V + p, b + 4 * p, clear_w, false, "protect splitting a block");
  protect(V, 2 * b + 3 * p, set_w, true, "protect back, merging");
  protect(V + 4 * b + 3 * p, 2 * p, clear_w, false, "protect inside a run");
  map(V + b + 5 * p, P + 7 * b, 3 * p, B, "replace inside a block", OnExisting::Replace);
  unmap(V + 2 * p, p, "unmap splitting");
  map(V + b + 5 * p, P + b + 5 * p, 3 * p, A, "replace back, merging", OnExisting::Replace, true);
  if (h != 0) {
    map(V + 2 * h, P + 2 * h, h, A, "huge leaf");
    unmap(V + 2 * h + b + p, p, "unmap splitting a huge leaf twice");
    protect(V + 2 * h, h, clear_w, true, "protect the split huge range, merging");
    map(V + 2 * h + b + p, P + 2 * h + b + p, p, B, "map the hole", OnExisting::Keep);
  }
  const u64 l2 = g.level2_span();
  map(V + 2 * l2 - 3 * p, P + 5 * b + p, 6 * p, A, "across level-1 tables");
  unmap(V + 2 * l2 - 3 * p, 6 * p, "free both sides");

  std::mt19937_64 rng(seed);
  auto pick = [&](u64 n) { return std::uniform_int_distribution<u64>(0, n - 1)(rng); };
  const u64 pages = 3 * b / p;
  for (int i = 0; i < randoms; ++i) {
    Step st;
    u64 va = V + p * pick(pages);
    if (pick(3) == 0) va = align_down(va, b);
    const u64 sizes[] = {p, 2 * p, 7 * p, 16 * p, b, b + 3 * p, 2 * b};
    u64 size = sizes[pick(7)];
    if (va + size > V + 3 * b) size = V + 3 * b - va;
    st.va = va;
    st.size = size;
    st.merge = pick(2) == 0;
    switch (pick(3)) {
      case 0:
        st.kind = Step::Map;
        st.pa = P + (va - V) + (pick(4) == 0 ? p : 0);
        st.attrs = pick(2) ? A : B;
        st.existing = OnExisting(pick(3));
        st.hint = pick(2) == 0;
        st.what = "random map";
        break;
      case 1:
        st.kind = Step::Unmap;
        st.what = "random unmap";
        break;
      default:
        st.kind = Step::Protect;
        st.change = pick(2) ? clear_w : set_w;
        if (pick(4) == 0) {
          st.change.change_global = true;
          st.change.global = pick(2) == 0;
        }
        st.what = "random protect";
        break;
    }
    s.push_back(st);
  }
  // More last-level tables than a flush token holds frees (32): unmapping
  // them all at once frees some in the middle of the walk.
  for (u64 k = 0; k < 40; ++k) map(V + (8 + k) * b + p, P + p, p, A, "one page per table");
  unmap(V, g.region_last() - V + 1, "unmap everything");
  return s;
}

/// Compares what two spaces translate over the workload region: the engine's
/// walk, and the reference MMU at both ends of every run (and a page past it).
template <class Format, class SpaceA, class SpaceB>
void expect_same_translations(const Geometry<Format>& g, const SimMmu& mmu,
                              const sim::PhysMemory& mem, const SpaceA& ref, const SpaceB& got,
                              const std::string& where) {
  const std::vector<Run> want = runs_of(ref, g.V, g.region_last());
  const std::vector<Run> have = runs_of(got, g.V, g.region_last());
  ASSERT_EQ(want.size(), have.size()) << where;
  for (std::size_t i = 0; i < want.size(); ++i)
    ASSERT_EQ(want[i], have[i]) << where << ": " << describe(want[i]) << " vs "
                                << describe(have[i]);
  if (mmu.ops == nullptr) return;
  std::size_t checked = 0;
  for (const Run& r : want) {
    if (++checked > 64) break;
    for (u64 va : {r.va, r.last & ~(g.page() - 1), r.last + 1}) {
      const sim::Translation a = mmu.ops->translate(mmu.cfg, mem, ref.root().value(), va);
      const sim::Translation b = mmu.ops->translate(mmu.cfg, mem, got.root().value(), va);
      EXPECT_EQ(a.fault, b.fault) << where << " va " << std::hex << va;
      EXPECT_EQ(a.pa, b.pa) << where << " va " << std::hex << va;
      EXPECT_EQ(a.write[0], b.write[0]) << where << " va " << std::hex << va;
      EXPECT_EQ(a.exec[0], b.exec[0]) << where << " va " << std::hex << va;
      EXPECT_EQ(a.global, b.global) << where << " va " << std::hex << va;
      if (va == r.va) {
        EXPECT_TRUE(b.ok()) << where << " va " << std::hex << va;
      }
    }
  }
}

/// expect_same_translations for a space whose policy is slow to walk with
/// (every entry read maps and unmaps a slot): the whole comparison reads the
/// tables directly through `observer` (a plain-access space adopting the same
/// root), and queries through the policy under test spot-check it at the
/// start of the first runs.
template <class Format, class Ref, class Observer, class Got>
void expect_same_via_observer(const Geometry<Format>& g, const SimMmu& mmu,
                              const sim::PhysMemory& mem, const Ref& ref, const Observer& observer,
                              const Got& got, const std::string& where) {
  expect_same_translations(g, mmu, mem, ref, observer, where);
  std::size_t n = 0;
  for (const Run& r : runs_of(ref, g.V, g.region_last())) {
    if (++n > 8) break;
    const Result<Mapping> a = ref.query(VirtAddr(r.va));
    const Result<Mapping> b = got.query(VirtAddr(r.va));
    ASSERT_TRUE(a.ok() && b.ok()) << where;
    EXPECT_EQ(a.value().pa, b.value().pa) << where;
    EXPECT_EQ(a.value().attrs, b.value().attrs) << where;
  }
}

template <class Config>
class TableAccessTest : public ::testing::Test {};
TYPED_TEST_SUITE(TableAccessTest, AllFormats);

// ---- The engine's bound -------------------------------------------------------------------

// Instruments the engine with a counting access policy (and, separately, an
// allocator that reaches its pages through the same counted policy) and
// measures the most views it holds open at once over the workload.
TYPED_TEST(TableAccessTest, EngineViews) {
  using Format = typename TypeParam::Format;
  const Geometry<Format> g(TypeParam::make());
  const u64 seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const std::vector<Step> steps = make_steps(g, seed, 150);

  for (bool shared_alloc : {false, true}) {
    sim::PhysMemory mem;
    ViewCounter vc;
    ViewCounter alloc_vc;
    using Access = CountingAccess<SimAccess>;
    using Alloc = FreeListAllocator<Access>;
    Alloc alloc(Access{SimAccess{&mem}, shared_alloc ? &vc : &alloc_vc}, g.page());
    alloc.add_range(PhysAddr(kRefTables), 256);
    vc = ViewCounter{};
    alloc_vc = ViewCounter{};
    auto made =
        AddressSpace<Format, Access, Alloc>::create(g.f, Access{SimAccess{&mem}, &vc}, alloc);
    ASSERT_TRUE(made.ok());
    auto space = std::move(made.value());
    for (const Step& st : steps) {
      const Result<Outcome> r = apply(space, st);
      (void)r;
      ASSERT_EQ(vc.open, 0) << st.what << ": a view left open";
    }
    EXPECT_EQ(vc.unknown_done, 0u);
    EXPECT_GT(vc.opens, 100u);
    // The documented bound holds, and is reached (so it is not loose); an
    // allocator reaching its pages through the same policy adds nothing.
    EXPECT_EQ(unsigned(vc.max_open), engine_views(g.levels)) << "levels " << g.levels;
    EXPECT_EQ(unsigned(vc.max_distinct), engine_views(g.levels)) << "levels " << g.levels;
    if (shared_alloc) {
      EXPECT_GT(alloc_vc.opens + vc.opens, 0u);
    } else {
      EXPECT_GT(alloc_vc.opens, 0u);  // the allocator did reach pages
      EXPECT_EQ(alloc_vc.max_open, 1);
    }
    std::printf("[ views    ] %-40s levels %u: at most %d views open (%zu distinct)%s\n",
                ::testing::UnitTest::GetInstance()->current_test_info()->type_param(), g.levels,
                vc.max_open, vc.max_distinct, shared_alloc ? ", allocator sharing them" : "");
  }
}

// ---- The engine on transient slots alone -------------------------------------------------

template <class Config, unsigned N>
void run_engine_on_slots() {
  using Format = typename Config::Format;
  sim::PhysMemory mem;
  SlotHost<Config> host(mem);
  const Geometry<Format>& g = host.g;
  ASSERT_EQ(engine_views(g.levels), N);
  Recorder slot_events;
  using Slots = TransientSlots<Format, RecSink, N, SimSlotWindow>;
  Slots slots = host.template slots<N>(RecSink(slot_events));
  static_assert(Slots::capacity() == N);
  ASSERT_TRUE(Slots::enough_for(g.f));

  // The space under test: its tables are reached only through the slots, and
  // so are the allocator's free pages (the list is threaded through them).
  using SlotFreeList = FreeListAllocator<AccessRef<Slots>>;
  SlotFreeList test_alloc(AccessRef<Slots>(slots), g.page());
  test_alloc.add_range(PhysAddr(kSlotTables), 256);
  using TestSpace = AddressSpace<Format, AccessRef<Slots>, SlotFreeList>;
  auto made = TestSpace::create(g.f, AccessRef<Slots>(slots), test_alloc);
  ASSERT_TRUE(made.ok());
  TestSpace space = std::move(made.value());
  using Observer = AddressSpace<Format, SimAccess, SimFreeList>;
  SimFreeList no_pages(SimAccess{&mem}, g.page());
  const Observer observer(g.f, SimAccess{&mem}, no_pages, {}, {}, space.root());

  // The reference: the same steps over plain access.
  SimFreeList ref_alloc(SimAccess{&mem}, g.page());
  ref_alloc.add_range(PhysAddr(kRefTables), 256);
  using RefSpace = AddressSpace<Format, SimAccess, SimFreeList>;
  auto ref_made = RefSpace::create(g.f, SimAccess{&mem}, ref_alloc);
  ASSERT_TRUE(ref_made.ok());
  RefSpace ref = std::move(ref_made.value());

  const u64 seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const std::vector<Step> steps = make_steps(g, seed, 150);
  u64 splits = 0, merges = 0, freed = 0, max_freed = 0, invalidations = 0;
  for (const Step& st : steps) {
    const Result<Outcome> want = apply(ref, st);
    const Result<Outcome> got = apply(space, st);
    ASSERT_EQ(want.ok(), got.ok()) << st.what;
    if (!want.ok()) {
      EXPECT_EQ(want.error(), got.error()) << st.what;
    } else {
      EXPECT_EQ(want.value().stats.splits, got.value().stats.splits) << st.what;
      EXPECT_EQ(want.value().stats.merges, got.value().stats.merges) << st.what;
      splits += got.value().stats.splits;
      merges += got.value().stats.merges;
      freed += got.value().stats.tables_freed;
      max_freed = std::max<u64>(max_freed, got.value().stats.tables_freed);
    }
    ASSERT_EQ(slots.in_use(), 0u) << st.what << ": a slot left in use";
    ASSERT_EQ(slots.last_error().count, 0u)
        << st.what << ": " << (slots.last_error().what ? slots.last_error().what : "");
    ASSERT_TRUE(host.model.failures.empty()) << st.what << ": " << host.model.failures.front();
    expect_same_via_observer(g, host.model.mmu, mem, ref, observer, space, st.what);
    if (::testing::Test::HasFatalFailure()) return;
    for (const Event& e : slot_events.events) {
      if (e.kind != Event::Invalidate) continue;
      ++invalidations;
      EXPECT_EQ(e.range.last.value() - e.range.first.value(), g.page() - 1);
      EXPECT_GE(e.range.first.value(), host.window.value());
      EXPECT_LT(e.range.first.value(), host.window.value() + N * g.page());
    }
    slot_events.events.clear();
  }
  EXPECT_GT(splits, 0u);
  EXPECT_GT(merges, 0u);
  EXPECT_GT(freed, 0u);
  EXPECT_GT(max_freed, u64{FlushToken::kMaxPendingFrees});
  // Exactly enough: the engine used every slot at some point, never more.
  EXPECT_EQ(slots.high_water(), N);
  EXPECT_GT(host.model.walks, 100u);
  // Every slot entry is invalid again, and every table the slots mapped was
  // unmapped with an invalidation of exactly its page.
  for (unsigned i = 0; i < N; ++i) EXPECT_FALSE(g.f.decode(*slots.slot_entry(i), 0).valid());
  EXPECT_EQ(invalidations, 2 * host.model.walks);
  // The host tables outside the slots' entries are as they were: the policy
  // wrote nothing else.
  const Result<Mapping> image_page = host.host->query(VirtAddr(g.V - 2 * g.block()));
  ASSERT_TRUE(image_page.ok());
  EXPECT_EQ(image_page.value().pa.value(), kDataPa - g.block());
}

TYPED_TEST(TableAccessTest, SlotsRunTheEngine) {
  switch (engine_views(TypeParam::make().levels())) {
    case 2: run_engine_on_slots<TypeParam, 2>(); break;
    case 3: run_engine_on_slots<TypeParam, 3>(); break;
    case 4: run_engine_on_slots<TypeParam, 4>(); break;
    case 5: run_engine_on_slots<TypeParam, 5>(); break;
    default: FAIL() << "unexpected level count";
  }
}

// ---- One slot's entry and TLB work ------------------------------------------------------

TYPED_TEST(TableAccessTest, SlotEntryAndInvalidation) {
  using Format = typename TypeParam::Format;
  sim::PhysMemory mem;
  SlotHost<TypeParam> host(mem);
  const Geometry<Format>& g = host.g;
  Recorder rec;
  auto slots = host.template slots<2>(RecSink(rec));
  const u64 page = g.page();
  const PhysAddr pa(kLoosePages + 5 * page);
  *mem.word(pa.value() + 8) = 0x1111;

  u64* t = slots.table(pa);
  ASSERT_NE(t, nullptr);
  ASSERT_TRUE(host.model.failures.empty()) << host.model.failures.front();
  // The slot's level-0 entry maps exactly that page with the slot attributes.
  const Entry e = g.f.decode(*slots.slot_entry(0), 0);
  EXPECT_EQ(e, Entry::leaf(pa, kSlotAttrs));
  EXPECT_EQ(slots.slot_entry(0), host.level0 + g.index(host.window.value(), 0));
  // Reads and writes reach the physical page.
  EXPECT_EQ(t, mem.word(pa.value()));
  EXPECT_EQ(t[1], 0x1111u);
  t[2] = 0x2222;
  EXPECT_EQ(mem.read64(pa.value() + 16), 0x2222u);
  // Mapping: publish, exactly the slot's page, complete.
  const TlbRange slot0{host.window, host.window + (page - 1), g.f.page_shift(), true, false};
  ASSERT_EQ(rec.events.size(), 3u);
  EXPECT_EQ(rec.events[0].kind, Event::Publish);
  EXPECT_EQ(rec.events[1].kind, Event::Invalidate);
  EXPECT_EQ(rec.events[1].range, slot0);
  EXPECT_EQ(rec.events[2].kind, Event::Complete);
  rec.events.clear();

  // Opened twice: the same slot, no TLB work; the first done() keeps it.
  u64* again = slots.table(pa);
  EXPECT_EQ(again, t);
  EXPECT_EQ(slots.in_use(), 1u);
  EXPECT_TRUE(rec.events.empty());
  slots.done(again);
  EXPECT_TRUE(rec.events.empty());
  EXPECT_EQ(*slots.slot_entry(0), g.f.encode(Entry::leaf(pa, kSlotAttrs), 0));

  // The last done(): the entry is invalid, then that page is invalidated.
  slots.done(t);
  EXPECT_EQ(*slots.slot_entry(0), g.f.encode(Entry::invalid(), 0));
  ASSERT_EQ(rec.events.size(), 3u);
  EXPECT_EQ(rec.events[0].kind, Event::Publish);
  EXPECT_EQ(rec.events[1].kind, Event::Invalidate);
  EXPECT_EQ(rec.events[1].range, slot0);
  EXPECT_EQ(rec.events[2].kind, Event::Complete);
  EXPECT_EQ(slots.in_use(), 0u);
  EXPECT_FALSE(slots.owns(t));
  rec.events.clear();

  // A table smaller than a page shares its page's slot, at its offset.
  u64* a = slots.table(pa);
  u64* half = slots.table(pa + page / 2);
  EXPECT_EQ(half, a + page / 16);
  EXPECT_EQ(slots.in_use(), 1u);
  EXPECT_TRUE(slots.owns(half));
  slots.done(half);
  slots.done(a);
  EXPECT_EQ(slots.in_use(), 0u);
  EXPECT_EQ(slots.last_error().count, 0u);

  // A pointer the slots did not hand out changes nothing and is recorded.
  rec.events.clear();
  const std::vector<u64> before = host.level0_contents();
  u64 stray[4] = {};
  slots.done(stray);
  EXPECT_EQ(host.level0_contents(), before);
  EXPECT_TRUE(rec.events.empty());
  EXPECT_EQ(slots.last_error().count, 1u);
  EXPECT_STREQ(slots.last_error().what, "pointer not from a transient slot");
}

// ---- Exhaustion ---------------------------------------------------------------------------

TYPED_TEST(TableAccessTest, ExhaustionIsAnErrorNotACorruption) {
  using Format = typename TypeParam::Format;
  sim::PhysMemory mem;
  SlotHost<TypeParam> host(mem);
  const Geometry<Format>& g = host.g;
  Recorder rec;
  auto slots = host.template slots<3>(RecSink(rec));
  const u64 page = g.page();
  auto pa = [&](unsigned k) { return PhysAddr(kLoosePages + k * page); };

  std::array<u64*, 3> held{};
  for (unsigned k = 0; k < 3; ++k) {
    held[k] = slots.table(pa(k));
    ASSERT_NE(held[k], nullptr);
    held[k][0] = 0xA0 + k;  // through the slot
    EXPECT_EQ(mem.read64(pa(k).value()), 0xA0u + k);
  }
  ASSERT_TRUE(host.model.failures.empty()) << host.model.failures.front();
  const std::vector<u64> level0 = host.level0_contents();
  std::vector<std::vector<u64>> pages;
  for (unsigned k = 0; k < 4; ++k)
    pages.emplace_back(mem.word(pa(k).value()), mem.word(pa(k).value()) + page / 8);
  rec.events.clear();

  EXPECT_EQ(slots.table(pa(3)), nullptr);
  const AccessError& err = slots.last_error();
  EXPECT_EQ(err.error, Error::TableUnreachable);
  EXPECT_STREQ(err.what, "transient slots exhausted");
  EXPECT_EQ(err.pa, pa(3));
  EXPECT_EQ(err.in_use, 3u);
  EXPECT_EQ(err.slots, 3u);
  EXPECT_EQ(err.count, 1u);

  const Result<u64*> r = slots.acquire(pa(3));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::TableUnreachable);
  EXPECT_EQ(r.failure().pa, pa(3));
  EXPECT_EQ(r.failure().needed, 4u);
  EXPECT_STREQ(r.failure().subject, "transient slots exhausted");
  EXPECT_EQ(slots.last_error().count, 2u);
  EXPECT_NE(std::string(to_string(Error::TableUnreachable)).find("transient slot"),
            std::string::npos);

  // Nothing was written: the slot entries, the rest of their table, the
  // tables in the slots and the one asked for; no TLB work either.
  EXPECT_EQ(host.level0_contents(), level0);
  for (unsigned k = 0; k < 4; ++k)
    EXPECT_EQ(std::vector<u64>(mem.word(pa(k).value()), mem.word(pa(k).value()) + page / 8),
              pages[k]);
  EXPECT_TRUE(rec.events.empty());
  EXPECT_EQ(slots.in_use(), 3u);
  for (unsigned k = 0; k < 3; ++k) EXPECT_EQ(held[k][0], 0xA0u + k);

  // A table already in a slot can still be opened while the slots are full.
  u64* second = slots.table(pa(1));
  EXPECT_EQ(second, held[1]);
  slots.done(second);

  // Giving one back makes room; the freed slot serves the new table.
  slots.done(held[0]);
  const Result<u64*> fourth = slots.acquire(pa(3));
  ASSERT_TRUE(fourth.ok());
  EXPECT_EQ(fourth.value(), mem.word(pa(3).value()));
  EXPECT_EQ(g.f.decode(*slots.slot_entry(0), 0), Entry::leaf(pa(3), kSlotAttrs));
  slots.done(fourth.value());
  slots.done(held[1]);
  slots.done(held[2]);
  EXPECT_EQ(slots.in_use(), 0u);
  EXPECT_TRUE(host.model.failures.empty());
}

// ---- A slot entry store that can refuse ------------------------------------------------------

/// The direct store, except when told to refuse (a hypervisor refusing the
/// mmu_update of a slot entry); counts what it was asked.
struct FlakyStore {
  bool* refuse;
  unsigned* stores;
  bool store(u64* entry, unsigned index, u64 raw) const {
    ++*stores;
    last_index = index;
    if (*refuse) return false;
    return early::DirectSlotStore{}.store(entry, index, raw);
  }
  static inline unsigned last_index = 0;
};
static_assert(early::SlotEntryStore<FlakyStore>);

TYPED_TEST(TableAccessTest, RefusedSlotStoreIsAnErrorNotACorruption) {
  using Format = typename TypeParam::Format;
  sim::PhysMemory mem;
  SlotHost<TypeParam> host(mem);
  const Geometry<Format>& g = host.g;
  Recorder rec;
  bool refuse = false;
  unsigned stores = 0;
  using Slots = TransientSlots<Format, RecSink, 2, SimSlotWindow, FlakyStore>;
  auto made = Slots::create(g.f, host.window, host.level0, RecSink(rec), SimSlotWindow{&host.model},
                            kSlotAttrs, FlakyStore{&refuse, &stores});
  ASSERT_TRUE(made.ok());
  Slots& slots = made.value();
  const u64 page = g.page();
  auto pa = [&](unsigned k) { return PhysAddr(kLoosePages + k * page); };

  // The store gets the entry's index in its level-0 table.
  u64* a = slots.table(pa(0));
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(stores, 1u);
  EXPECT_EQ(host.level0 + FlakyStore::last_index, slots.slot_entry(0));

  // Refused when mapping: nullptr, the slot stays free, nothing else written.
  refuse = true;
  rec.events.clear();
  const std::vector<u64> level0 = host.level0_contents();
  const Result<u64*> r = slots.acquire(pa(1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::TableUnreachable);
  EXPECT_STREQ(r.failure().subject, "slot entry store refused");
  EXPECT_EQ(r.failure().pa, pa(1));
  EXPECT_EQ(slots.in_use(), 1u);
  EXPECT_EQ(host.level0_contents(), level0);
  EXPECT_TRUE(rec.events.empty());

  // Refused when giving back: the old mapping stays, so that slot is never
  // handed out again, and it stays counted.
  slots.done(a);
  EXPECT_STREQ(slots.last_error().what, "slot entry store refused");
  EXPECT_EQ(slots.last_error().pa, pa(0));
  EXPECT_EQ(slots.in_use(), 1u);
  EXPECT_EQ(g.f.decode(*slots.slot_entry(0), 0), Entry::leaf(pa(0), kSlotAttrs));
  refuse = false;
  u64* b = slots.table(pa(2));
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(g.f.decode(*slots.slot_entry(1), 0), Entry::leaf(pa(2), kSlotAttrs));
  EXPECT_EQ(g.f.decode(*slots.slot_entry(0), 0), Entry::leaf(pa(0), kSlotAttrs));
  EXPECT_EQ(slots.table(pa(3)), nullptr);
  EXPECT_STREQ(slots.last_error().what, "transient slots exhausted");
  slots.done(b);
  EXPECT_EQ(slots.in_use(), 1u);
  EXPECT_TRUE(host.model.failures.empty()) << host.model.failures.front();
}

// ---- Creation errors ------------------------------------------------------------------------

TYPED_TEST(TableAccessTest, SlotWindowIsChecked) {
  using Format = typename TypeParam::Format;
  const Geometry<Format> g(TypeParam::make());
  u64 table[1] = {};
  const u64 page = g.page();
  const VirtAddr at_end(align_down(g.V, g.block()) + (g.entries(0) - 2) * page);
  using Slots = TransientSlots<Format, NullSink, 4>;

  const auto unaligned = Slots::create(g.f, VirtAddr(g.V + 8), table);
  ASSERT_FALSE(unaligned.ok());
  EXPECT_EQ(unaligned.error(), Error::Unaligned);
  EXPECT_STREQ(unaligned.failure().subject, "transient slot window");
  EXPECT_EQ(unaligned.failure().alignment, page);

  const auto crossing = Slots::create(g.f, at_end, table);
  ASSERT_FALSE(crossing.ok());
  EXPECT_EQ(crossing.error(), Error::BadSize);

  EXPECT_EQ(Slots::create(g.f, VirtAddr(g.V), nullptr).error(), Error::BadConfig);
  EXPECT_TRUE(Slots::create(g.f, at_end - 2 * page, table).ok());
  if (!g.f.is_canonical(VirtAddr(u64{1} << 63))) {
    const auto hole = Slots::create(g.f, VirtAddr(u64{1} << 63), table);
    EXPECT_FALSE(hole.ok());
  }
  const auto user = Slots::create(g.f, VirtAddr(g.V), table, {}, {},
                                  Attrs{RW | Perm::User, MemType::WriteBack, true});
  if (!g.f.can_express(Attrs{RW | Perm::User, MemType::WriteBack, true})) {
    EXPECT_EQ(user.error(), Error::AttrUnsupported);
  }
}

/// An allocator limited to its first `limit` pages (a static pool sized for
/// the smallest page, used with larger ones).
template <class Inner>
struct Limited {
  Inner pool;
  u64 limit;
  u64 used = 0;
  u64 reserved = 0;
  bool reserve(u64 n) {
    if (used + reserved + n > limit || !pool.reserve(n)) return false;
    reserved += n;
    return true;
  }
  PhysAddr take() {
    --reserved;
    ++used;
    return pool.take();
  }
  void release(PhysAddr pa) {
    --used;
    pool.release(pa);
  }
  void give_back_unused() {
    reserved = 0;
    pool.give_back_unused();
  }
};

// ---- Image-resident tables ---------------------------------------------------------------------

// The image's table pool: static storage of this test binary, i.e. part of
// its image, at a host ("virtual") address far above the physical address
// the test pretends the image was loaded at.
constexpr unsigned kImageTables = 32;
alignas(65536) u64 g_image[kImageTables * 65536 / 8];

TEST(ImageAccess, OffsetsWrapBothWays) {
  // Linked above its load address (a higher-half kernel): offset "negative".
  const auto high =
      ImageAccess::at(PhysAddr(0x20'0000), 0x10'0000, VirtAddr(0xFFFF'FFFF'8000'0000));
  EXPECT_EQ(high.load_offset, 0x20'0000 - 0xFFFF'FFFF'8000'0000);
  EXPECT_EQ(reinterpret_cast<u64>(high.table(PhysAddr(0x20'3000))), 0xFFFF'FFFF'8000'3000);
  // Linked below its load address: offset positive.
  const auto low = ImageAccess::at(PhysAddr(0x8000'0000), 0x10'0000, VirtAddr(0x1000'0000));
  EXPECT_EQ(low.load_offset, 0x7000'0000u);
  EXPECT_EQ(reinterpret_cast<u64>(low.table(PhysAddr(0x800F'F000))), 0x100F'F000u);
  // Covers exactly [image_pa, image_pa + size).
  EXPECT_FALSE(low.covers(PhysAddr(0x7FFF'F000)));
  EXPECT_TRUE(low.covers(PhysAddr(0x8000'0000)));
  EXPECT_TRUE(low.covers(PhysAddr(0x800F'FFF8)));
  EXPECT_FALSE(low.covers(PhysAddr(0x8010'0000)));
  EXPECT_EQ(low.table(PhysAddr(0x8010'0000)), nullptr);
  EXPECT_EQ(low.table(PhysAddr(0x7FFF'F000)), nullptr);
  EXPECT_TRUE(high.owns(high.table(PhysAddr(0x2F'F000))));
  EXPECT_FALSE(high.owns(reinterpret_cast<u64*>(0xFFFF'FFFF'8010'0000)));  // NOLINT
  EXPECT_FALSE(high.owns(reinterpret_cast<u64*>(0xFFFF'FFFF'7FFF'F000)));  // NOLINT
}

TEST(DirectMapAccess, WindowInclusive) {
  const DirectMapAccess dm{PhysAddr(0x1000'0000), PhysAddr(0x1FFF'FFFF),
                           VirtAddr(0xFFFF'8880'0000'0000)};
  EXPECT_EQ(reinterpret_cast<u64>(dm.table(PhysAddr(0x1234'5000))), 0xFFFF'8880'0234'5000);
  EXPECT_TRUE(dm.covers(PhysAddr(0x1FFF'F000)));
  EXPECT_FALSE(dm.covers(PhysAddr(0x2000'0000)));
  EXPECT_FALSE(dm.covers(PhysAddr(0x0FFF'F000)));
  EXPECT_EQ(dm.table(PhysAddr(0x2000'0000)), nullptr);
  EXPECT_TRUE(dm.owns(reinterpret_cast<u64*>(0xFFFF'8880'0FFF'FFF8)));   // NOLINT
  EXPECT_FALSE(dm.owns(reinterpret_cast<u64*>(0xFFFF'8880'1000'0000)));  // NOLINT
  // A window that ends at the top of the physical space.
  const DirectMapAccess top{PhysAddr(~u64{0} - 0xFFF), PhysAddr(~u64{0}), VirtAddr(0x1000)};
  EXPECT_TRUE(top.covers(PhysAddr(~u64{0} - 7)));
}

TYPED_TEST(TableAccessTest, ImageResidentTablesBuildAMapping) {
  using Format = typename TypeParam::Format;
  const Geometry<Format> g(TypeParam::make());
  std::memset(g_image, 0x5A, sizeof g_image);  // garbage: the engine must clear what it uses
  const u64 page = g.page();
  const u64 pool_pages = std::min<u64>(kImageTables, sizeof g_image / page);
  const PhysAddr image_pa(kImagePa);
  const auto image =
      ImageAccess::at(image_pa, sizeof g_image, VirtAddr(reinterpret_cast<u64>(g_image)));
  // The host address is above the pretended load address: the offset wraps.
  ASSERT_GT(reinterpret_cast<u64>(g_image), kImagePa);
  ASSERT_GT(image.load_offset, u64{1} << 63);

  using Bounded = Limited<StaticPoolAllocator<kImageTables>>;
  using Space = AddressSpace<Format, ImageAccess, Bounded>;
  auto made = Space::create(g.f, image,
                            Bounded{StaticPoolAllocator<kImageTables>(image_pa, page), pool_pages});
  ASSERT_TRUE(made.ok());
  Space space = std::move(made.value());
  EXPECT_EQ(space.root(), image_pa);

  // The kernel's own layout: text RX in blocks and pages, data RW, a hole.
  const Attrs text = g.f.can_express(Attrs{RX, MemType::WriteBack, true})
                         ? Attrs{RX, MemType::WriteBack, true}
                         : Attrs{RX};
  const Attrs data{RW, MemType::WriteBack, false};
  const u64 V = g.V, b = g.block();
  ASSERT_TRUE(space.map(VirtAddr(V), PhysAddr(kDataPa), b + 3 * page, text).ok());
  ASSERT_TRUE(
      space.map(VirtAddr(V + b + 4 * page), PhysAddr(kDataPa + b + 4 * page), 5 * page, data).ok());
  ProtectOptions split;
  split.allow_split = true;
  AttrChange no_x;
  no_x.clear = Perm::X;
  ASSERT_TRUE(space.protect(VirtAddr(V + 2 * page), page, no_x, split).ok());

  // query: every page where it belongs.
  for (u64 off = 0; off < b + 9 * page; off += (off < b ? b / 4 : page)) {
    const Result<Mapping> m = space.query(VirtAddr(V + off));
    if (off >= b + 3 * page && off < b + 4 * page) {
      EXPECT_FALSE(m.ok()) << off;
      continue;
    }
    ASSERT_TRUE(m.ok()) << off;
    EXPECT_EQ(m.value().pa.value() + (V + off - m.value().va.value()), kDataPa + off);
    const Attrs want = off >= b + 4 * page
                           ? data
                           : (off / page == 2 ? Attrs{Perm::R, text.mem, text.global} : text);
    EXPECT_EQ(m.value().attrs, want) << off;
  }
  // Every table reachable from the root lies in the image.
  std::function<void(PhysAddr, unsigned)> visit = [&](PhysAddr t, unsigned level) {
    EXPECT_TRUE(image.covers(t)) << std::hex << t.value();
    const u64* p = image.table(t);
    for (u64 i = 0; i < g.entries(level); ++i) {
      const Entry e = g.f.decode(p[i], level);
      if (e.is_table() && level > 0) visit(e.pa, level - 1);
    }
  };
  visit(space.root(), g.levels - 1);

  // The reference MMU on the image as physical memory (its bytes at the load
  // address) agrees.
  const SimMmu mmu = sim_mmu<TypeParam>();
  if (mmu.ops == nullptr) return;
  sim::PhysMemory mem;
  for (u64 off = 0; off < pool_pages * page; off += 8)
    mem.write64(kImagePa + off, g_image[off / 8]);
  for (u64 off : {u64{0}, b - page, b, b + 2 * page, b + 4 * page, b + 8 * page}) {
    const sim::Translation t = mmu.ops->translate(mmu.cfg, mem, kImagePa, V + off);
    ASSERT_TRUE(t.ok()) << off << " " << sim::to_string(t.fault);
    EXPECT_EQ(t.pa, kDataPa + off);
    EXPECT_EQ(t.write[0], off >= b + 4 * page);
  }
  EXPECT_FALSE(mmu.ops->translate(mmu.cfg, mem, kImagePa, V + b + 3 * page).ok());
}

// ---- The chain ------------------------------------------------------------------------------

/// Hands out table pages in turn from the image pool, the direct-mapped boot
/// range and the slot-only region, so that a chain has to use all three.
struct RotatingAllocator {
  Limited<StaticPoolAllocator<16>>* image;
  BumpAllocator* direct;
  SimFreeList* loose;
  u64 image_pages, direct_lo, direct_hi;
  u64 reserved[3] = {};
  unsigned next = 0;

  bool reserve(u64 n) {
    if (!loose->reserve(n)) return false;
    reserved[2] += n;
    for (u64 k = std::min<u64>(n, 16); k > 0; --k)
      if (image->reserve(k)) {
        reserved[0] += k;
        break;
      }
    const u64 from_direct = std::min<u64>(n, direct->pages_free());
    if (from_direct != 0 && direct->reserve(from_direct)) reserved[1] += from_direct;
    return true;
  }
  PhysAddr take() {
    for (unsigned tries = 0; tries < 3; ++tries) {
      const unsigned k = next++ % 3;
      if (reserved[k] == 0) continue;
      --reserved[k];
      return k == 0 ? image->take() : k == 1 ? direct->take() : loose->take();
    }
    std::abort();
  }
  void release(PhysAddr pa) {
    if (pa.value() >= kImagePa && pa.value() < kImagePa + sim::PhysMemory::kChunk)
      image->release(pa);
    else if (pa.value() >= direct_lo && pa.value() <= direct_hi)
      direct->release(pa);
    else
      loose->release(pa);
  }
  void give_back_unused() {
    image->give_back_unused();
    direct->give_back_unused();
    loose->give_back_unused();
    reserved[0] = reserved[1] = reserved[2] = 0;
  }
};

TYPED_TEST(TableAccessTest, ChainOfImageDirectMapAndSlots) {
  using Format = typename TypeParam::Format;
  constexpr unsigned N = Format::kMaxLevels;
  sim::PhysMemory mem;
  SlotHost<TypeParam> host(mem);
  const Geometry<Format>& g = host.g;
  const u64 page = g.page();
  const u64 chunk = sim::PhysMemory::kChunk;
  const u64 chunk_pages = chunk / page;
  using Slots = TransientSlots<Format, NullSink, N, SimSlotWindow>;
  Slots slots = host.template slots<N>(NullSink{});
  ASSERT_TRUE(Slots::enough_for(g.f));

  // The image and the boot range are one 64 KiB chunk each of simulated
  // memory (contiguous on the host), mapped where the host put them.
  const auto image = ImageAccess::at(PhysAddr(kImagePa), chunk,
                                     VirtAddr(reinterpret_cast<u64>(mem.word(kImagePa))));
  const DirectMapAccess direct{PhysAddr(kDirectPa), PhysAddr(kDirectPa + chunk - 1),
                               VirtAddr(reinterpret_cast<u64>(mem.word(kDirectPa)))};
  ViewCounter vi, vd, vs;
  using Chain = ChainAccess<CountingAccess<ImageAccess>, CountingAccess<DirectMapAccess>,
                            CountingAccess<AccessRef<Slots>>>;
  Chain chain(CountingAccess<ImageAccess>{image, &vi}, CountingAccess<DirectMapAccess>{direct, &vd},
              CountingAccess<AccessRef<Slots>>{AccessRef<Slots>(slots), &vs});

  // Only the pages the chunk holds at this page size.
  Limited<StaticPoolAllocator<16>> image_pool{StaticPoolAllocator<16>(PhysAddr(kImagePa), page),
                                              chunk_pages};
  BumpAllocator boot(PhysAddr(kDirectPa), chunk_pages, page);
  SimFreeList loose(SimAccess{&mem}, page);
  loose.add_range(PhysAddr(kSlotTables), 256);
  RotatingAllocator alloc{&image_pool, &boot,     &loose,
                          chunk_pages, kDirectPa, kDirectPa + chunk - 1};

  using Space = AddressSpace<Format, AccessRef<Chain>, RotatingAllocator>;
  auto made = Space::create(g.f, AccessRef<Chain>(chain), alloc);
  ASSERT_TRUE(made.ok());
  Space space = std::move(made.value());
  EXPECT_EQ(space.root().value(), kImagePa);  // the first page comes from the image

  SimFreeList ref_alloc(SimAccess{&mem}, page);
  ref_alloc.add_range(PhysAddr(kRefTables), 256);
  auto ref_made =
      AddressSpace<Format, SimAccess, SimFreeList>::create(g.f, SimAccess{&mem}, ref_alloc);
  ASSERT_TRUE(ref_made.ok());
  auto ref = std::move(ref_made.value());
  SimFreeList no_pages(SimAccess{&mem}, page);
  const AddressSpace<Format, SimAccess, SimFreeList> observer(g.f, SimAccess{&mem}, no_pages, {},
                                                              {}, space.root());

  const u64 seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (const Step& st : make_steps(g, seed, 60)) {
    const Result<Outcome> want = apply(ref, st);
    const Result<Outcome> got = apply(space, st);
    ASSERT_EQ(want.ok(), got.ok()) << st.what;
    ASSERT_EQ(chain.last_error().count, 0u)
        << st.what << ": " << (chain.last_error().what ? chain.last_error().what : "");
    ASSERT_EQ(vi.open + vd.open + vs.open, 0) << st.what;
    ASSERT_EQ(slots.in_use(), 0u);
    ASSERT_TRUE(host.model.failures.empty()) << st.what << ": " << host.model.failures.front();
    expect_same_via_observer(g, host.model.mmu, mem, ref, observer, space, st.what);
    if (::testing::Test::HasFatalFailure()) return;
  }
  // Each policy served tables; done() went back to the one that opened them.
  EXPECT_GT(vi.opens, 0u);
  EXPECT_GT(vd.opens, 0u);
  EXPECT_GT(vs.opens, 0u);
  EXPECT_EQ(vi.unknown_done + vd.unknown_done + vs.unknown_done, 0u);
  EXPECT_EQ(slots.last_error().count, 0u);
  EXPECT_LE(slots.high_water(), engine_views(g.levels));
}

TEST(ChainAccess, UncoveredAddressIsAClearError) {
  alignas(4096) static u64 image_mem[2 * 512];
  alignas(4096) static u64 direct_mem[2 * 512];
  std::memset(image_mem, 0, sizeof image_mem);
  const auto image = ImageAccess::at(PhysAddr(0x20'0000), sizeof image_mem,
                                     VirtAddr(reinterpret_cast<u64>(image_mem)));
  const DirectMapAccess direct{PhysAddr(0x100'0000), PhysAddr(0x100'1FFF),
                               VirtAddr(reinterpret_cast<u64>(direct_mem))};
  ChainAccess<ImageAccess, DirectMapAccess> chain(image, direct);
  EXPECT_EQ(chain.table(PhysAddr(0x20'1000)), image_mem + 512);
  EXPECT_EQ(chain.table(PhysAddr(0x100'1000)), direct_mem + 512);
  EXPECT_TRUE(chain.covers(PhysAddr(0x100'1FF8)));
  EXPECT_EQ(chain.last_error().count, 0u);

  EXPECT_FALSE(chain.covers(PhysAddr(0x30'0000)));
  EXPECT_EQ(chain.table(PhysAddr(0x30'0000)), nullptr);
  EXPECT_EQ(chain.last_error().error, Error::TableUnreachable);
  EXPECT_STREQ(chain.last_error().what, "no access policy covers the table");
  EXPECT_EQ(chain.last_error().pa, PhysAddr(0x30'0000));
  EXPECT_EQ(chain.last_error().count, 1u);
  const Failure f = chain.last_error().failure(Op::Map);
  EXPECT_EQ(f.op, Op::Map);
  EXPECT_EQ(f.error, Error::TableUnreachable);
  EXPECT_EQ(f.pa, PhysAddr(0x30'0000));

  // done() of a pointer no policy owns: nothing happens but the record.
  u64 stray = 7;
  chain.done(&stray);
  EXPECT_EQ(stray, 7u);
  EXPECT_STREQ(chain.last_error().what, "pointer not from any access policy of the chain");
  EXPECT_EQ(chain.last_error().count, 2u);

  // Chains nest; get<I>() reaches the members.
  ChainAccess<ChainAccess<ImageAccess, DirectMapAccess>, ImageAccess> outer(
      chain, ImageAccess::at(PhysAddr(0x40'0000), 0x1000, VirtAddr(0x1000)));
  EXPECT_EQ(outer.table(PhysAddr(0x100'0000)), direct_mem);
  EXPECT_EQ(reinterpret_cast<u64>(outer.table(PhysAddr(0x40'0008))), 0x1008u);
  EXPECT_EQ(outer.get<1>().image_pa, PhysAddr(0x40'0000));
  EXPECT_EQ(outer.get<0>().get<1>().lo, PhysAddr(0x100'0000));
}

TYPED_TEST(TableAccessTest, ChainReportsExhaustedSlots) {
  using Format = typename TypeParam::Format;
  sim::PhysMemory mem;
  SlotHost<TypeParam> host(mem);
  using Slots = TransientSlots<Format, NullSink, 1, SimSlotWindow>;
  Slots slots = host.template slots<1>(NullSink{});
  const DirectMapAccess direct{PhysAddr(kDirectPa), PhysAddr(kDirectPa + 0xFFFF),
                               VirtAddr(reinterpret_cast<u64>(mem.word(kDirectPa)))};
  ChainAccess<DirectMapAccess, AccessRef<Slots>> chain(direct, AccessRef<Slots>(slots));
  const u64 page = host.g.page();
  u64* a = chain.table(PhysAddr(kLoosePages));
  ASSERT_EQ(a, mem.word(kLoosePages));
  EXPECT_EQ(chain.table(PhysAddr(kLoosePages + page)), nullptr);
  EXPECT_STREQ(chain.last_error().what, "the covering access policy could not reach the table");
  EXPECT_STREQ(slots.last_error().what, "transient slots exhausted");
  // The direct map still works while the slot is taken.
  EXPECT_EQ(chain.table(PhysAddr(kDirectPa + 8)), mem.word(kDirectPa + 8));
  chain.done(mem.word(kDirectPa + 8));
  chain.done(a);
  EXPECT_EQ(slots.in_use(), 0u);
  EXPECT_EQ(chain.table(PhysAddr(kLoosePages + page)), mem.word(kLoosePages + page));
  chain.done(mem.word(kLoosePages + page));
  EXPECT_TRUE(host.model.failures.empty());
}

}  // namespace
}  // namespace ptkit::test
