// Xen PV mode (include/ptkit/early/xen_pv.hpp) against a fake hypervisor.
//
// The fake keeps the guest's page tables in the simulator's machine memory,
// behind a scrambled P2M (pseudo-physical frames permuted over machine
// frames at another base, so an untranslated frame is not a machine frame
// at all), applies each mmu_update request, and records what happens in the
// simulator's trace format, in machine addresses, with the `xen-pv` feature:
// entry writes as Xen applies them, table pages as they become ones (after
// make_readonly) and stop being ones, and the TLB sink's calls. sim::check()
// then judges the trace under the Xen rules.
//
// The hypercall ABI does not say at which level a table sits (Xen learns it
// when the page is linked); the trace needs it, so the test's writer notes
// each site's level for the fake before the request is queued.
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "checked.hpp"
#include "ptkit/early/image_mapper.hpp"
#include "ptkit/early/table_access.hpp"
#include "ptkit/early/xen_pv.hpp"
#include "ptkit/sim/checker.hpp"
#include "ptkit/sim/memory.hpp"
#include "ptkit/sim/mmu.hpp"
#include "support.hpp"

namespace ptkit::test {
namespace {

using xen::MmuUpdate;
using K = sim::TraceEvent::Kind;

constexpr u64 kPage = 4096;
constexpr int kEinval = -22;
/// Machine frames of the guest start here (4 GiB): a pseudo-physical address
/// used as a machine one lands outside the guest's frames.
constexpr u64 kMachineBaseFrame = 0x100000;
/// Linux's direct map and kernel image bases.
constexpr u64 kDirectMap = 0xffff'8880'0000'0000;
constexpr u64 kImageLink = 0xffff'ffff'8000'0000;
constexpr u64 kPteRw = u64{1} << 1;
constexpr u64 kPtePresent = 1;

// ---- The fake hypervisor ------------------------------------------------------------

class FakeXen {
 public:
  explicit FakeXen(u64 ram_pages, u64 seed = 7) : p2m_(ram_pages) {
    for (u64 i = 0; i < ram_pages; ++i) p2m_[i] = i;
    std::mt19937_64 rng(seed);
    std::shuffle(p2m_.begin(), p2m_.end(), rng);
    for (u64 pfn = 0; pfn < ram_pages; ++pfn) m2p_[kMachineBaseFrame + p2m_[pfn]] = pfn;
    trace.format = "x86_64-4l";
    trace.features = {"no-page_1g", "xen-pv"};
  }

  // Translation (P2M / M2P).
  [[nodiscard]] u64 to_machine(PhysAddr pa) const {
    const u64 pfn = pa.value() / kPage;
    if (pfn >= p2m_.size()) {
      ADD_FAILURE() << "no machine frame for pseudo-physical " << std::hex << pa.value();
      return 0;
    }
    return (kMachineBaseFrame + p2m_[pfn]) * kPage + pa.value() % kPage;
  }
  [[nodiscard]] PhysAddr to_pseudo(u64 maddr) const {
    auto it = m2p_.find(maddr / kPage);
    if (it == m2p_.end()) {
      ADD_FAILURE() << "no pseudo-physical frame for machine " << std::hex << maddr;
      return PhysAddr(~u64{0} & ~(kPage - 1));
    }
    return PhysAddr(it->second * kPage + maddr % kPage);
  }
  [[nodiscard]] bool is_machine_frame(u64 mfn) const { return m2p_.contains(mfn); }

  /// HYPERVISOR_mmu_update(reqs, count, &done, DOMID_SELF). Strict about
  /// addresses (the entry must lie in a page-table page, a present entry's
  /// frame must be the guest's), permissive about the rules: those are the
  /// checker's to judge, so deliberate violations reach the trace.
  int mmu_update(const MmuUpdate* reqs, unsigned count, unsigned* done) {
    ++hypercalls;
    unsigned k = 0;
    for (; k < count; ++k) {
      ++requests;
      if (fail_at_request != 0 && requests == fail_at_request) break;
      const MmuUpdate& r = reqs[k];
      if ((r.ptr & 3) != xen::kMmuNormalPtUpdate) break;
      const u64 entry = r.ptr & ~u64{7};
      const u64 table = entry & ~(kPage - 1);
      if (!tables_.contains(table)) {
        ADD_FAILURE() << "mmu_update into a page that is no page table: " << std::hex << entry;
        break;
      }
      if ((r.val & kPtePresent) && !is_machine_frame((r.val & 0x000F'FFFF'FFFF'F000) / kPage)) {
        ADD_FAILURE() << "mmu_update with a frame that is not the guest's: " << std::hex << r.val;
        break;
      }
      auto level = levels_.find(table);
      if (level == levels_.end()) {
        ADD_FAILURE() << "no level noted for table " << std::hex << table;
        break;
      }
      const unsigned index = unsigned((entry % kPage) / 8);
      const u64 old = mem.read64(entry);
      trace.events.push_back(sim::TraceEvent::write(table, index, level->second, r.val, old));
      mem.write64(entry, r.val);
    }
    if (done != nullptr) *done = k;
    return k == count ? 0 : kEinval;
  }

  /// HYPERVISOR_update_va_mapping(va, val, UVMF_INVLPG when `invlpg`): Xen
  /// walks the current tables to the PTE of `va` and writes it.
  void update_va_mapping(u64 va, u64 val, bool invlpg) {
    const u64 pte = pte_of(va);
    ASSERT_NE(pte, 0u) << "update_va_mapping: no PTE for " << std::hex << va;
    const u64 table = pte & ~(kPage - 1);
    trace.events.push_back(
        sim::TraceEvent::write(table, unsigned((pte % kPage) / 8), 0, val, mem.read64(pte)));
    mem.write64(pte, val);
    if (invlpg) {
      trace.events.push_back(sim::TraceEvent::invalidate(va, va, 12));
      trace.events.push_back(sim::TraceEvent::simple(K::Complete));
    }
  }

  /// Machine address of the PTE mapping `va` (through present upper entries),
  /// or 0.
  [[nodiscard]] u64 pte_of(u64 va) const {
    if (root_machine == 0) return 0;
    u64 table = root_machine;
    for (unsigned level = 3; level > 0; --level) {
      const u64 e = mem.read64(table + 8 * ((va >> (12 + 9 * level)) & 511));
      if (!(e & kPtePresent) || (e & (u64{1} << 7))) return 0;
      table = e & 0x000F'FFFF'FFFF'F000;
    }
    return table + 8 * ((va >> 12) & 511);
  }

  // The TLB sink (through RecordingSink<FakeXen>).
  void publish() { trace.events.push_back(sim::TraceEvent::simple(K::Publish)); }
  void invalidate(const TlbRange& r) {
    trace.events.push_back(sim::TraceEvent::invalidate(r.first.value(), r.last.value(),
                                                       r.stride_shift, r.global, r.tables));
  }
  void invalidate_all(bool global) {
    trace.events.push_back(sim::TraceEvent::invalidate_all(global));
  }
  void complete() { trace.events.push_back(sim::TraceEvent::simple(K::Complete)); }
  /// An operation returned: the TLB must be coherent.
  void sync() { trace.events.push_back(sim::TraceEvent::simple(K::Sync)); }

  // Table pages, in machine addresses.
  void alloc(u64 maddr) {
    tables_.insert(maddr);
    levels_.erase(maddr);
    trace.events.push_back(sim::TraceEvent::simple(K::Alloc, maddr));
  }
  void free(u64 maddr) {
    trace.events.push_back(sim::TraceEvent::simple(K::Free, maddr));
    tables_.erase(maddr);
    levels_.erase(maddr);
  }
  /// The test writer's note: the table at `site` is at `site.level`.
  void note(const WriteSite& site) { levels_[to_machine(site.table)] = site.level; }

  void set_root(PhysAddr root) {
    root_machine = to_machine(root);
    trace.root = root_machine;
  }

  [[nodiscard]] sim::CheckResult check() const { return sim::check(trace); }

  sim::PhysMemory mem;
  sim::Trace trace;
  u64 root_machine = 0;
  u64 hypercalls = 0;
  u64 requests = 0;
  u64 fail_at_request = 0;  // 1-based over all requests; 0: never

 private:
  std::vector<u64> p2m_;  // pfn -> mfn - kMachineBaseFrame
  std::unordered_map<u64, u64> m2p_;
  std::set<u64> tables_;
  std::map<u64, unsigned> levels_;
};

// ---- Handles the policies hold ----------------------------------------------------

struct Tr {
  const FakeXen* x;
  [[nodiscard]] u64 to_machine(PhysAddr pa) const { return x->to_machine(pa); }
  [[nodiscard]] PhysAddr to_pseudo(u64 maddr) const { return x->to_pseudo(maddr); }
};

/// With Xen's success count (WithDone) or with the two-argument form only.
template <bool WithDone>
struct Hv;
template <>
struct Hv<true> {
  FakeXen* x;
  int mmu_update(const MmuUpdate* r, unsigned n, unsigned* done) {
    return x->mmu_update(r, n, done);
  }
  int mmu_update(const MmuUpdate* r, unsigned n) { return x->mmu_update(r, n, nullptr); }
};
template <>
struct Hv<false> {
  FakeXen* x;
  int mmu_update(const MmuUpdate* r, unsigned n) { return x->mmu_update(r, n, nullptr); }
};

/// The guest reaches machine memory through its direct map; here, through
/// the simulator's memory at the machine address.
struct MachineAccess {
  FakeXen* x;
  u64* table(PhysAddr pa) const { return x->mem.word(x->to_machine(pa)); }
  void done(u64*) const {}
};

/// The caller's hook: a page about to hold tables loses every writable
/// mapping the guest knows of it (the direct map and registered aliases),
/// each through invalid first; giving it back changes nothing (the pool
/// stays read-only in the direct map).
struct Protect {
  FakeXen* x;
  std::vector<u64>* aliases;  // virtual addresses mapping pool pages, by pfn order
  u64* readonly_calls;
  u64* writable_calls;
  bool enabled = true;

  void make_readonly(PhysAddr pa) const {
    ++*readonly_calls;
    if (!enabled) return;
    demote(kDirectMap + pa.value());
    for (u64 va : *aliases)
      if (maps(va, pa)) demote(va);
  }
  void make_writable(PhysAddr) const { ++*writable_calls; }

  [[nodiscard]] bool maps(u64 va, PhysAddr pa) const {
    const u64 pte = x->pte_of(va);
    if (pte == 0) return false;
    const u64 e = x->mem.read64(pte);
    return (e & kPtePresent) && (e & 0x000F'FFFF'FFFF'F000) == x->to_machine(pa);
  }
  void demote(u64 va) const {
    const u64 pte = x->pte_of(va);
    if (pte == 0) return;
    const u64 e = x->mem.read64(pte);
    if (!(e & kPtePresent) || !(e & kPteRw)) return;
    x->update_va_mapping(va, 0, true);
    x->update_va_mapping(va, e & ~kPteRw, false);
  }
};

constexpr unsigned kPoolPages = 256;
using Pool = StaticPoolAllocator<kPoolPages>;

/// Tells the fake which pages are table pages, after make_readonly and
/// before make_writable.
template <class Inner>
struct TracedAlloc {
  Inner inner;
  FakeXen* x;
  bool reserve(u64 n) { return inner.reserve(n); }
  PhysAddr take() {
    const PhysAddr pa = inner.take();
    x->alloc(x->to_machine(pa));
    return pa;
  }
  void release(PhysAddr pa) {
    x->free(x->to_machine(pa));
    inner.release(pa);
  }
  void give_back_unused() { inner.give_back_unused(); }
};

/// The production writer plus the level note the fake needs.
template <class Base>
struct NotingWriter : Base {
  NotingWriter(Base base, FakeXen* x) : Base(base), x_(x) {}
  void store(u64* slot, u64 value, const WriteSite& s) {
    x_->note(s);
    Base::store(slot, value, s);
  }
  void store_fresh(u64* slot, u64 value, const WriteSite& s) {
    x_->note(s);
    Base::store_fresh(slot, value, s);
  }
  FakeXen* x_;
};

// ---- One guest ------------------------------------------------------------------

template <bool WithDone = true>
struct Guest {
  using Format = xen::PvFormat<Tr>;
  using XenWriter = xen::MmuUpdateWriter<Hv<WithDone>, Tr, 64>;
  using Writer = NotingWriter<XenWriter>;
  using Alloc = TracedAlloc<xen::ReadOnlyTables<Pool, Protect>>;
  using Space = AddressSpace<Format, MachineAccess, Alloc, Writer, RecordingSink<FakeXen>>;

  static_assert(PagingFormat<Format>);
  static_assert(EntryWriter<XenWriter>);
  static_assert(TableAllocator<xen::ReadOnlyTables<Pool, Protect>>);

  /// Pseudo-physical RAM [0, ram); the table pool at pool_pa.
  explicit Guest(u64 ram = 64 * MiB, u64 pool_pa = 32 * MiB)
      : x(ram / kPage), pool(PhysAddr(pool_pa)), pool_base(pool_pa), ram_size(ram) {
    const Tr tr{&x};
    Protect protect{&x, &aliases, &readonly_calls, &writable_calls};
    auto made = xen::create_space(
        Format(tr), MachineAccess{&x}, Alloc{xen::ReadOnlyTables<Pool, Protect>(pool, protect), &x},
        Writer(XenWriter(Hv<WithDone>{&x}, tr), &x), RecordingSink<FakeXen>(x));
    if (!made.ok()) std::abort();
    space = std::make_unique<Space>(std::move(made.value()));
    x.set_root(space->root());
    x.sync();
  }

  XenWriter& writer() { return space->writer(); }

  /// Another space over the same tables, allocator and hypervisor, with its
  /// own writer and `format` (e.g. one that knows the table pages).
  Space over_same_tables(Format format) {
    const Tr tr{&x};
    return Space(format, MachineAccess{&x}, space->allocator(),
                 Writer(XenWriter(Hv<WithDone>{&x}, tr), &x), RecordingSink<FakeXen>(x),
                 space->root());
  }
  Protect& protect() { return space->allocator().inner.protect(); }

  /// The direct map of all RAM with the table pool read-only.
  xen::DirectMapReport direct_map() {
    const xen::PhysRange ro[] = {{PhysAddr(pool_base), kPoolPages * kPage}};
    auto r = xen::map_direct(*space, VirtAddr(kDirectMap), xen::PhysRange{PhysAddr(0), ram_size},
                             ro, 1, Attrs{RW, MemType::WriteBack, true});
    x.sync();
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : to_string(r.error()));
    return r.ok() ? r.value() : xen::DirectMapReport{};
  }

  /// The hardware's view (the simulator's x86 walker over machine memory),
  /// translated back to pseudo-physical.
  [[nodiscard]] sim::Translation walk(u64 va) const {
    sim::MmuConfig cfg;
    std::string error;
    EXPECT_TRUE(sim::MmuConfig::from_name("x86_64-4l", cfg, error)) << error;
    cfg.x86_page_1g = false;
    sim::Translation t = sim::x86_ops().translate(cfg, x.mem, x.root_machine, va);
    if (t.ok()) t.pa = x.to_pseudo(t.pa & ~(kPage - 1)).value() + t.pa % kPage;
    return t;
  }

  /// Every page of [va, va + size) maps pa + offset with `perm`, through
  /// query() and through the reference walker.
  void expect_mapped(u64 va, u64 pa, u64 size, Perm perm, const char* what) {
    for (u64 off = 0; off < size; off += kPage) {
      auto q = space->query(VirtAddr(va + off));
      ASSERT_TRUE(q.ok()) << what << " +" << std::hex << off;
      ASSERT_EQ(q->pa.value(), pa + off) << what << " +" << std::hex << off;
      ASSERT_EQ(q->attrs.perm, perm) << what << " +" << std::hex << off;
      ASSERT_EQ(q->level, 0u);
      const sim::Translation t = walk(va + off);
      ASSERT_TRUE(t.ok()) << what << " +" << std::hex << off;
      ASSERT_EQ(t.pa, pa + off) << what << " +" << std::hex << off;
      ASSERT_EQ(t.leaf_size, kPage);
      ASSERT_EQ(t.write[0], has(perm, Perm::W)) << what << " +" << std::hex << off;
      ASSERT_EQ(t.exec[0], has(perm, Perm::X)) << what << " +" << std::hex << off;
    }
  }
  void expect_unmapped(u64 va, u64 size, const char* what) {
    for (u64 off = 0; off < size; off += kPage) {
      ASSERT_FALSE(space->query(VirtAddr(va + off)).ok()) << what << " +" << std::hex << off;
      ASSERT_FALSE(walk(va + off).ok()) << what << " +" << std::hex << off;
    }
  }

  FakeXen x;
  Pool pool;
  u64 pool_base;
  u64 ram_size;
  std::vector<u64> aliases;
  u64 readonly_calls = 0;
  u64 writable_calls = 0;
  std::unique_ptr<Space> space;
};

std::string violations(const sim::CheckResult& r) { return first_violations(r, 8); }

// ---- (a) a direct map and an image, then protect and unmap: clean -------------------

TEST(XenPv, DirectMapAndImageCleanUnderXenRules) {
  Guest<> g;
  const xen::DirectMapReport dm = g.direct_map();
  EXPECT_EQ(dm.read_only_bytes, kPoolPages * kPage);
  EXPECT_EQ(dm.writable_bytes, g.ram_size - kPoolPages * kPage);
  EXPECT_EQ(dm.leaves_written, g.ram_size / kPage);
  EXPECT_EQ(dm.maps, 3u);
  const u64 dm_hypercalls = g.writer().hypercalls();
  const u64 dm_requests = g.writer().requests();

  // A kernel image loaded at 16 MiB, linked at -2 GiB, page-aligned sections.
  const early::ImageSection secs[] = {
      {"text", VirtAddr(kImageLink), 2 * MiB + 12 * KiB, RX},
      {"rodata", VirtAddr(kImageLink + 2 * MiB + 12 * KiB), 1 * MiB, Perm::R},
      {"data", VirtAddr(kImageLink + 3 * MiB + 12 * KiB), 512 * KiB, RW},
      {"bss", VirtAddr(kImageLink + 3 * MiB + 524 * KiB), 1 * MiB, RW},
  };
  const early::ImageLayout layout{secs, 4, VirtAddr(kImageLink), kPage};
  const u64 load = 16 * MiB;
  auto img = early::map_image(*g.space, layout, PhysAddr(load));
  g.x.sync();
  ASSERT_TRUE(img.ok()) << to_string(img.error());
  EXPECT_EQ(img->leaves_of_size(2 * MiB), 0u);
  const u64 img_hypercalls = g.writer().hypercalls() - dm_hypercalls;
  const u64 img_requests = g.writer().requests() - dm_requests;

  {
    const sim::CheckResult r = g.x.check();
    EXPECT_TRUE(r.ok()) << violations(r);
  }
  // The pool is read-only in the direct map; RAM around it writable.
  g.expect_mapped(kDirectMap + g.pool_base, g.pool_base, kPoolPages * kPage, Perm::R, "pool");
  g.expect_mapped(kDirectMap, 0, 1 * MiB, RW, "low RAM");
  g.expect_mapped(kDirectMap + g.pool_base - 64 * KiB, g.pool_base - 64 * KiB, 64 * KiB, RW,
                  "below pool");
  g.expect_mapped(kDirectMap + g.pool_base + kPoolPages * kPage, g.pool_base + kPoolPages * kPage,
                  64 * KiB, RW, "above pool");
  for (const auto& s : secs)
    g.expect_mapped(s.link_va.value(), load + (s.link_va.value() - kImageLink), s.size, s.perm,
                    s.name);

  // protect: rodata loses nothing, data becomes read-only (each page broken,
  // never rewritten in place), text gains nothing.
  const u64 before_protect = g.writer().hypercalls();
  auto p = g.space->protect(secs[2].link_va, secs[2].size, AttrChange{Perm::None, Perm::W});
  g.x.sync();
  ASSERT_TRUE(p.ok()) << to_string(p.error());
  EXPECT_EQ(p->stats.breaks, secs[2].size / kPage);
  const u64 protect_hypercalls = g.writer().hypercalls() - before_protect;
  g.expect_mapped(secs[2].link_va.value(), load + (secs[2].link_va.value() - kImageLink),
                  secs[2].size, Perm::R, "data after protect");

  // unmap: bss, and 2 MiB of the direct map that fills one PT (freed).
  auto u1 = g.space->unmap(secs[3].link_va, secs[3].size);
  g.x.sync();
  ASSERT_TRUE(u1.ok());
  const u64 hole = 40 * MiB;
  const u64 freed_before = g.writable_calls;
  auto u2 = g.space->unmap(VirtAddr(kDirectMap + hole), 2 * MiB);
  g.x.sync();
  ASSERT_TRUE(u2.ok());
  EXPECT_EQ(u2->stats.tables_freed, 1u);
  EXPECT_EQ(g.writable_calls - freed_before, 1u);
  g.expect_unmapped(secs[3].link_va.value(), secs[3].size, "bss");
  g.expect_unmapped(kDirectMap + hole, 2 * MiB, "direct map hole");
  g.expect_mapped(kDirectMap + hole - 64 * KiB, hole - 64 * KiB, 64 * KiB, RW, "below hole");
  g.expect_mapped(kDirectMap + hole + 2 * MiB, hole + 2 * MiB, 64 * KiB, RW, "above hole");

  // Map the hole again with Keep around it: nothing valid is overwritten.
  const xen::DirectMapReport again = g.direct_map();
  EXPECT_EQ(again.leaves_written, 2 * MiB / kPage);
  g.expect_mapped(kDirectMap + hole, hole, 2 * MiB, RW, "hole remapped");
  // The whole direct map, page by page.
  g.expect_mapped(kDirectMap, 0, g.pool_base, RW, "RAM below the pool");
  g.expect_mapped(kDirectMap + g.pool_base, g.pool_base, kPoolPages * kPage, Perm::R, "pool");
  const u64 pool_end = g.pool_base + kPoolPages * kPage;
  g.expect_mapped(kDirectMap + pool_end, pool_end, g.ram_size - pool_end, RW, "RAM above");

  const sim::CheckResult r = g.x.check();
  EXPECT_TRUE(r.ok()) << violations(r);
  EXPECT_FALSE(g.writer().failed());
  EXPECT_EQ(g.writer().pending(), 0u);
  // Every table page was made read-only when taken.
  EXPECT_EQ(g.readonly_calls, g.pool.pages_in_use() + g.writable_calls);

  std::printf(
      "[xen-pv] direct map %llu MiB: %llu hypercalls, %llu requests; image: %llu hypercalls, "
      "%llu requests; protect of %llu pages: %llu hypercalls; trace %zu events\n",
      static_cast<unsigned long long>(g.ram_size / MiB),
      static_cast<unsigned long long>(dm_hypercalls), static_cast<unsigned long long>(dm_requests),
      static_cast<unsigned long long>(img_hypercalls),
      static_cast<unsigned long long>(img_requests),
      static_cast<unsigned long long>(secs[2].size / kPage),
      static_cast<unsigned long long>(protect_hypercalls), g.x.trace.events.size());
}

/// make_readonly takes a writable alias of a pool page away (through invalid
/// first) before the page becomes a table; without the hook the checker
/// sees a table page mapped writable.
TEST(XenPv, ReadOnlyHookDemotesWritableAlias) {
  for (const bool hook : {true, false}) {
    SCOPED_TRACE(hook ? "with the hook" : "without the hook");
    Guest<> g(8 * MiB, 4 * MiB);
    g.direct_map();
    // The next page the pool hands out, mapped writable at an alias (whose
    // tables exist before, so that they do not take that page).
    const u64 alias = 0xffff'c900'0000'0000;
    ASSERT_TRUE(g.space->map(VirtAddr(alias + kPage), PhysAddr(0), kPage, Attrs{RW}).ok());
    g.x.sync();
    const u64 next = g.pool_base + g.pool.pages_in_use() * kPage;
    ASSERT_TRUE(g.space->map(VirtAddr(alias), PhysAddr(next), kPage, Attrs{RW}).ok());
    g.x.sync();
    ASSERT_TRUE(g.x.check().ok()) << violations(g.x.check());
    g.aliases.push_back(alias);
    g.protect().enabled = hook;
    // Needs a new PT (and PD, PDPT): the alias's page becomes one of them.
    ASSERT_TRUE(
        g.space->map(VirtAddr(0xffff'c000'0000'0000), PhysAddr(0), kPage, Attrs{Perm::R}).ok());
    g.x.sync();
    const sim::CheckResult r = g.x.check();
    if (hook) {
      EXPECT_TRUE(r.ok()) << violations(r);
      const sim::Translation t = g.walk(alias);
      ASSERT_TRUE(t.ok());
      EXPECT_FALSE(t.write[0]);
    } else {
      EXPECT_EQ(r.rules(), std::vector<std::string>{"xen-writable-table"}) << violations(r);
    }
  }
}

// ---- (b) deliberate violations, each flagged by exactly its rule -------------------

TEST(XenPv, WritableLeafOverTablePageFlagged) {
  Guest<> g(8 * MiB, 4 * MiB);
  g.direct_map();
  ASSERT_TRUE(g.x.check().ok()) << violations(g.x.check());
  // Map the root page writable somewhere.
  ASSERT_TRUE(
      g.space->map(VirtAddr(0xffff'c900'0000'0000), g.space->root(), kPage, Attrs{RW}).ok());
  g.x.sync();
  const sim::CheckResult r = g.x.check();
  EXPECT_EQ(r.rules(), std::vector<std::string>{"xen-writable-table"}) << violations(r);
}

/// The pseudo-physical address of the table at `level` on the walk of `va`,
/// decoded with the format from machine memory.
template <class G>
PhysAddr table_at(G& g, u64 va, unsigned level) {
  const auto& f = g.space->format();
  PhysAddr table = g.space->root();
  for (unsigned l = 3; l > level; --l) {
    const u64* t = MachineAccess{&g.x}.table(table);
    const Entry e = f.decode(t[(va >> (12 + 9 * l)) & 511], l);
    EXPECT_TRUE(e.is_table());
    table = e.pa;
  }
  return table;
}

TEST(XenPv, LargeLeafWrittenByHandFlagged) {
  Guest<> g(8 * MiB, 4 * MiB);
  g.direct_map();
  ASSERT_TRUE(g.x.check().ok()) << violations(g.x.check());
  // A read-only 2 MiB leaf at PD index 100 (unused: the direct map covers 8
  // MiB, indices 0..3), machine frames that hold no table.
  const PhysAddr pd = table_at(g, kDirectMap, 1);
  u64* slot = MachineAccess{&g.x}.table(pd) + 100;
  ASSERT_EQ(*slot, 0u);
  const u64 raw = (kMachineBaseFrame * kPage) | x86::kPresent | x86::kPageSize |
                  x86::kExecuteDisable | x86::kAccessed;
  g.space->writer().store(slot, raw, WriteSite{pd, 100, 1});
  g.writer().flush();
  g.x.sync();
  EXPECT_EQ(*slot, raw);
  const sim::CheckResult r = g.x.check();
  EXPECT_EQ(r.rules(), std::vector<std::string>{"xen-large-page"}) << violations(r);
}

TEST(XenPv, OverwrittenValidEntryFlagged) {
  Guest<> g(8 * MiB, 4 * MiB);
  g.direct_map();
  ASSERT_TRUE(g.x.check().ok()) << violations(g.x.check());
  // A valid PTE gets a software-available bit in place: same translation (no
  // stale TLB harm), but a valid entry overwritten.
  const PhysAddr pt = table_at(g, kDirectMap, 0);
  u64* slot = MachineAccess{&g.x}.table(pt) + 5;
  const u64 old = *slot;
  ASSERT_TRUE(old & kPtePresent);
  g.space->writer().store(slot, old | (u64{1} << 9), WriteSite{pt, 5, 0});
  g.writer().flush();
  g.x.sync();
  const sim::CheckResult r = g.x.check();
  EXPECT_EQ(r.rules(), std::vector<std::string>{"xen-overwrite"}) << violations(r);
}

// ---- (c) superpages refused --------------------------------------------------------

TEST(XenPv, LargeLeafRequestsRefused) {
  Guest<> g(8 * MiB, 4 * MiB);
  g.direct_map();
  const u64 hypercalls = g.writer().hypercalls();
  const std::size_t events = g.x.trace.events.size();
  const u64 va = 0xffff'c000'0000'0000;
  for (const LeafSizes sizes : {LeafSizes{2 * MiB}, LeafSizes{GiB}, LeafSizes{kPage | 2 * MiB}}) {
    MapOptions mo;
    mo.leaf_sizes = sizes;
    auto m = g.space->map(VirtAddr(va), PhysAddr(0), GiB, Attrs{RW}, mo);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.error(), Error::LeafSizeUnsupported);
    auto plan = g.space->plan_map(VirtAddr(va), PhysAddr(0), 2 * MiB, Attrs{RW}, mo);
    ASSERT_FALSE(plan.ok());
    EXPECT_EQ(plan.error(), Error::LeafSizeUnsupported);
  }
  EXPECT_EQ(g.writer().hypercalls(), hypercalls);
  EXPECT_EQ(g.x.trace.events.size(), events);
  EXPECT_EQ(g.writer().pending(), 0u);
  EXPECT_FALSE(g.space->query(VirtAddr(va)).ok());
  // Without a restriction the engine picks 4 KiB leaves by itself.
  auto m = g.space->map(VirtAddr(va), PhysAddr(0), 2 * MiB, Attrs{RW});
  g.x.sync();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->stats.leaves_written, 512u);
  EXPECT_TRUE(g.x.check().ok()) << violations(g.x.check());
}

// ---- (d) batching and reads after writes ----------------------------------------------

TEST(XenPv, BatchesRequestsIntoFewHypercalls) {
  Guest<> g(8 * MiB, 4 * MiB);
  const u64 va = 0xffff'c000'0000'0000;
  // One page creates the PT (and PD, PDPT); the other 511 go into it.
  ASSERT_TRUE(g.space->map(VirtAddr(va), PhysAddr(0), kPage, Attrs{RW}).ok());
  g.x.sync();
  const u64 calls = g.writer().hypercalls();
  const u64 reqs = g.writer().requests();
  auto m = g.space->map(VirtAddr(va + kPage), PhysAddr(kPage), 2 * MiB - kPage, Attrs{RW});
  g.x.sync();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->stats.tables_allocated, 0u);
  // 511 requests, 64 per batch: 7 full batches as they fill, 63 at publish.
  EXPECT_EQ(g.writer().requests() - reqs, 511u);
  EXPECT_EQ(g.writer().hypercalls() - calls, 8u);
  EXPECT_EQ(g.x.hypercalls, g.writer().hypercalls());
  g.expect_mapped(va, 0, 2 * MiB, RW, "batched");
  std::printf("[xen-pv] 511 PTEs into an existing PT: %llu hypercalls\n",
              static_cast<unsigned long long>(g.writer().hypercalls() - calls));

  // Unmapping the whole PT frees it; the PD and PDPT above it are then
  // empty too, which the engine sees only by reading them back while the
  // invalid entry it just wrote into each is still queued: before_read sends
  // it first, so all three are freed.
  auto u = g.space->unmap(VirtAddr(va), 2 * MiB);
  g.x.sync();
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->stats.tables_freed, 3u);
  g.expect_unmapped(va, 2 * MiB, "unmapped");
  EXPECT_TRUE(g.x.check().ok()) << violations(g.x.check());
}

TEST(XenPv, BeforeReadFlushesOnlyQueuedSlots) {
  Guest<> g(8 * MiB, 4 * MiB);
  const u64 va = 0xffff'c000'0000'0000;
  ASSERT_TRUE(g.space->map(VirtAddr(va), PhysAddr(0), 4 * kPage, Attrs{RW}).ok());
  g.x.sync();
  const PhysAddr pt = table_at(g, va, 0);
  u64* t = MachineAccess{&g.x}.table(pt);
  const u64 calls = g.writer().hypercalls();
  auto& w = g.space->writer();
  w.store(&t[2], 0, WriteSite{pt, 2, 0});
  w.store(&t[0], 0, WriteSite{pt, 0, 0});
  EXPECT_EQ(w.pending(), 2u);
  EXPECT_NE(t[2], 0u);      // queued, not written
  w.before_read(&t[1], 1);  // between the queued slots, none of them
  w.before_read(&t[3], 8);  // above them
  EXPECT_EQ(w.hypercalls(), calls);
  EXPECT_EQ(w.pending(), 2u);
  w.before_read(&t[1], 2);  // covers t[2]
  EXPECT_EQ(w.hypercalls(), calls + 1);
  EXPECT_EQ(w.pending(), 0u);
  EXPECT_EQ(t[2], 0u);
  EXPECT_EQ(t[0], 0u);
  w.before_read(&t[0], 512);  // nothing queued
  EXPECT_EQ(w.hypercalls(), calls + 1);
  // The engine's own reads see the values: query after a protect that broke
  // and rewrote entries (each break's invalid entry is sent before its
  // invalidation, the new one before the query reads it).
  auto p = g.space->protect(VirtAddr(va + kPage), kPage, AttrChange{Perm::None, Perm::W});
  g.x.invalidate_all(true);  // the hand-written unmaps above owe this
  g.x.sync();
  ASSERT_TRUE(p.ok());
  g.expect_mapped(va + kPage, kPage, kPage, Perm::R, "protected");
  g.expect_mapped(va + 3 * kPage, 3 * kPage, kPage, RW, "untouched");
  EXPECT_TRUE(g.x.check().ok()) << violations(g.x.check());
}

// ---- (e) a refused request --------------------------------------------------------------

template <bool WithDone>
void refused_request_reported() {
  Guest<WithDone> g(8 * MiB, 4 * MiB);
  const u64 va = 0xffff'c000'0000'0000;
  ASSERT_TRUE(g.space->map(VirtAddr(va), PhysAddr(0), kPage, Attrs{RW}).ok());
  g.x.sync();
  EXPECT_FALSE(g.writer().failed());
  // The 5th request of the next map (5 PTEs, one batch at publish) fails.
  g.x.fail_at_request = g.x.requests + 5;
  auto m = g.space->map(VirtAddr(va + kPage), PhysAddr(kPage), 5 * kPage, Attrs{RW});
  ASSERT_TRUE(m.ok());  // the engine cannot know; the writer records it
  ASSERT_TRUE(g.writer().failed());
  const xen::UpdateFailure& f = g.writer().failure();
  EXPECT_EQ(f.rc, kEinval);
  EXPECT_EQ(f.batch, 5u);
  const PhysAddr pt = table_at(g, va, 0);
  const unsigned first_index = 1;
  const unsigned failed_index = WithDone ? 5 : first_index;  // with Xen's count: exact
  EXPECT_EQ(f.applied, WithDone ? 4u : 0u);
  EXPECT_EQ(f.request.ptr, g.x.to_machine(pt) + 8 * failed_index);
  EXPECT_EQ(f.request.val & ~u64{0xFFF} & ~x86::kExecuteDisable,
            g.x.to_machine(PhysAddr(failed_index * kPage)));
  // Sticky: later successful hypercalls do not clear it.
  g.x.fail_at_request = 0;
  ASSERT_TRUE(g.space->map(VirtAddr(va + 16 * kPage), PhysAddr(0), kPage, Attrs{RW}).ok());
  EXPECT_TRUE(g.writer().failed());
  EXPECT_EQ(g.writer().failure().rc, kEinval);
}

TEST(XenPv, RefusedRequestReportedWithSuccessCount) { refused_request_reported<true>(); }
TEST(XenPv, RefusedRequestReportedWithoutSuccessCount) { refused_request_reported<false>(); }

// ---- (f) ptkit refuses writable mappings of table pages --------------------------------

TEST(XenPv, WritableLeafOverTablePagesRefusedBeforeAnyRequest) {
  Guest<> g(8 * MiB, 4 * MiB);
  g.direct_map();
  const xen::PhysRange frames[] = {{PhysAddr(g.pool_base), kPoolPages * kPage}};
  auto s = g.over_same_tables(Guest<>::Format(Tr{&g.x}, {}, xen::TableFrames{frames, 1}));
  const u64 va = 0xffff'c900'0000'0000;
  // Tables for the window exist first, so that a refusal has nothing to undo.
  ASSERT_TRUE(s.map(VirtAddr(va + 64 * kPage), PhysAddr(0), kPage, Attrs{RW}).ok());
  g.x.sync();
  const std::size_t events = g.x.trace.events.size();
  const u64 requests = g.x.requests;
  const auto refused = [&](const Result<Outcome>& r, const char* what) {
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.error(), Error::WritableTable) << what;
  };
  // The root, a pool page not taken yet, and a range whose last page is the
  // pool's first.
  refused(s.map(VirtAddr(va), s.root(), kPage, Attrs{RW}), "root");
  refused(s.map(VirtAddr(va), PhysAddr(g.pool_base + 100 * kPage), kPage, Attrs{RW}), "free pool");
  refused(s.map(VirtAddr(va), PhysAddr(g.pool_base - 3 * kPage), 4 * kPage, Attrs{RW}), "overlap");
  refused(s.map(VirtAddr(va), PhysAddr(g.pool_base), kPage, Attrs{RWX}), "rwx");
  // Write permission added to the direct map's read-only alias of the root.
  const auto grant =
      s.protect(VirtAddr(kDirectMap + s.root().value()), kPage, AttrChange{Perm::W, Perm::None});
  refused(grant, "protect");
  EXPECT_EQ(grant.failure().pa, s.root());
  auto plan = s.plan_map(VirtAddr(va), s.root(), kPage, Attrs{RW});
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error(), Error::WritableTable);
  EXPECT_EQ(g.x.trace.events.size(), events);
  EXPECT_EQ(g.x.requests, requests);
  EXPECT_EQ(s.writer().pending(), 0u);
  EXPECT_FALSE(s.query(VirtAddr(va)).ok());
  EXPECT_NE(std::string(to_string(Error::WritableTable)).find("page table"), std::string::npos);

  // Read-only is fine, and so is writable memory next to the pool.
  ASSERT_TRUE(s.map(VirtAddr(va), s.root(), kPage, Attrs{Perm::R}).ok());
  ASSERT_TRUE(
      s.map(VirtAddr(va + kPage), PhysAddr(g.pool_base - 2 * kPage), 2 * kPage, Attrs{RW}).ok());
  ASSERT_TRUE(s.protect(VirtAddr(va + kPage), 2 * kPage, AttrChange{Perm::X, Perm::None}).ok());
  g.x.sync();
  const sim::CheckResult r = g.x.check();
  EXPECT_TRUE(r.ok()) << violations(r);
  // The same request through a format that was not told: the checker sees
  // the rule broken (XenPv.WritableLeafOverTablePageFlagged).
}

// ---- (g) Xen's own marks in a leaf ------------------------------------------------------

TEST(XenPv, GuestKernelMarksDecodeAsTheLeafTheGuestWrote) {
  Guest<> g(8 * MiB, 4 * MiB);
  const u64 va = 0xffff'c900'0000'0000;
  ASSERT_TRUE(g.space->map(VirtAddr(va), PhysAddr(0), 4 * kPage, Attrs{RX}).ok());
  ASSERT_TRUE(
      g.space->map(VirtAddr(va + 4 * kPage), PhysAddr(0), kPage, Attrs{RW | Perm::User}).ok());
  g.x.sync();
  // What Xen does to a 64-bit PV kernel's PTE (adjust_guest_l1e): U and bit
  // 52 added; then the CPU sets Accessed. Done here behind ptkit's back.
  const PhysAddr pt = table_at(g, va, 0);
  u64* t = MachineAccess{&g.x}.table(pt);
  for (unsigned i = 0; i < 4; ++i)
    t[i] |= x86::kUserSupervisor | xen::kGuestKernelBit | x86::kAccessed;
  t[4] |= x86::kAccessed;  // a user page: Xen leaves it alone
  for (unsigned i = 0; i < 4; ++i) {
    auto q = g.space->query(VirtAddr(va + i * kPage));
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->attrs.perm, RX) << i;
  }
  auto user = g.space->query(VirtAddr(va + 4 * kPage));
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(user->attrs.perm, RW | Perm::User);
  // Mapping the same again changes nothing: no break, no request, and the
  // bits the hypervisor and the CPU set stay.
  const std::vector<u64> before(t, t + 5);
  const u64 requests = g.x.requests;
  MapOptions replace;
  replace.existing = OnExisting::Replace;
  auto again = g.space->map(VirtAddr(va), PhysAddr(0), 4 * kPage, Attrs{RX}, replace);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->stats.breaks, 0u);
  EXPECT_EQ(again->stats.leaves_written, 0u);
  EXPECT_EQ(g.x.requests, requests);
  EXPECT_EQ(std::vector<u64>(t, t + 5), before);
  // A real change still breaks and drops Xen's marks (Xen adds them again).
  auto rw = g.space->map(VirtAddr(va), PhysAddr(0), kPage, Attrs{RW}, replace);
  g.x.sync();
  ASSERT_TRUE(rw.ok());
  EXPECT_EQ(rw->stats.breaks, 1u);
  EXPECT_EQ(t[0] & (xen::kGuestKernelBit | x86::kUserSupervisor), 0u);
}

// ---- (h) TLB work as MMUEXT ops -----------------------------------------------------------

struct FakeMmuext {
  std::vector<std::vector<xen::MmuextOp>>* calls;
  int rc = 0;
  int mmuext_op(const xen::MmuextOp* ops, unsigned n) const {
    calls->emplace_back(ops, ops + n);
    return rc;
  }
};

TEST(XenPv, MmuextSinkBatchesInvalidations) {
  std::vector<std::vector<xen::MmuextOp>> calls;
  xen::MmuextSink<FakeMmuext, 4> sink(FakeMmuext{&calls});
  sink.publish();
  sink.complete();
  EXPECT_TRUE(calls.empty());
  const u64 va = 0xffff'c900'0000'0000;
  // One page, then 10 pages (4 + 4 + 2 per hypercall), then a table range
  // of 2 MiB strides.
  sink.invalidate(TlbRange{VirtAddr(va), VirtAddr(va + kPage - 1), 12, false, false});
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0][0].cmd, xen::kMmuextInvlpgLocal);
  EXPECT_EQ(calls[0][0].arg1, va);
  calls.clear();
  sink.invalidate(TlbRange{VirtAddr(va), VirtAddr(va + 10 * kPage - 1), 12, false, false});
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].size(), 4u);
  EXPECT_EQ(calls[1].size(), 4u);
  EXPECT_EQ(calls[2].size(), 2u);
  EXPECT_EQ(calls[2][1].arg1, va + 9 * kPage);
  calls.clear();
  sink.invalidate(TlbRange{VirtAddr(va), VirtAddr(va + 6 * MiB - 1), 21, false, true});
  ASSERT_EQ(calls.size(), 1u);
  ASSERT_EQ(calls[0].size(), 3u);
  EXPECT_EQ(calls[0][2].arg1, va + 4 * MiB);
  EXPECT_EQ(sink.invlpgs(), 14u);
  // The top of the address space does not wrap.
  calls.clear();
  const u64 top = ~u64{0} - 2 * kPage + 1;
  sink.invalidate(TlbRange{VirtAddr(top), VirtAddr(~u64{0}), 12, false, false});
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].size(), 2u);
  calls.clear();
  sink.invalidate_all(true);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0][0].cmd, xen::kMmuextTlbFlushLocal);
  EXPECT_EQ(sink.full_flushes(), 1u);
  EXPECT_EQ(sink.failures(), 0u);
  sink.hypercall().rc = -22;
  sink.invalidate_all(false);
  sink.invalidate_all(false);
  EXPECT_EQ(sink.failures(), 2u);
  EXPECT_EQ(sink.first_error(), -22);
}

// ---- (i) transient slots under PV --------------------------------------------------------

/// The slot window as the CPU sees it: the x86 reference walker over machine
/// memory from the guest's root; a slot must map its page read-only,
/// no-execute, with a 4K leaf.
struct XenSlotWindow {
  FakeXen* x;
  std::vector<std::string>* failures;
  u64* at(VirtAddr va) const {
    sim::MmuConfig cfg;
    std::string error;
    EXPECT_TRUE(sim::MmuConfig::from_name("x86_64-4l", cfg, error)) << error;
    const sim::Translation t = sim::x86_ops().translate(cfg, x->mem, x->root_machine, va.value());
    if (!t.ok() || t.write[0] || t.exec[0] || t.leaf_size != kPage) {
      failures->push_back("slot " + std::to_string(va.value()) + ": " + sim::to_string(t.fault));
      static u64 scratch[512];
      return scratch;
    }
    return x->mem.word(t.pa);
  }
};

TEST(XenPv, TransientSlotsWorkThroughMmuUpdate) {
  Guest<> g(32 * MiB, 8 * MiB);
  g.direct_map();
  // The slot window's PT exists through an anchor page.
  const u64 block = 0xffff'c900'4000'0000;
  ASSERT_TRUE(g.space->map(VirtAddr(block), PhysAddr(0), kPage, Attrs{Perm::R}).ok());
  g.x.sync();
  const PhysAddr pt = table_at(g, block, 0);
  const Tr tr{&g.x};
  std::vector<std::string> failures;
  using Format = Guest<>::Format;
  using Sink = RecordingSink<FakeXen>;
  using Store = xen::SlotEntryUpdate<Hv<true>, Tr>;
  using Slots = early::TransientSlots<Format, Sink, 4, XenSlotWindow, Store>;
  auto made = Slots::create(
      g.space->format(), VirtAddr(block + 8 * kPage), MachineAccess{&g.x}.table(pt), Sink(g.x),
      XenSlotWindow{&g.x, &failures}, xen::kSlotAttrs, Store(Hv<true>{&g.x}, tr, pt));
  ASSERT_TRUE(made.ok());
  Slots& slots = made.value();
  using SlotSpace =
      AddressSpace<Format, early::AccessRef<Slots>, Guest<>::Alloc, Guest<>::Writer, Sink>;
  SlotSpace s(g.space->format(), early::AccessRef<Slots>(slots), g.space->allocator(),
              Guest<>::Writer(Guest<>::XenWriter(Hv<true>{&g.x}, tr), &g.x), Sink(g.x),
              g.space->root());

  // 8 MiB under a fresh PD: a PD and four PTs, more tables than slots.
  const u64 va = 0xffff'c900'8000'0000;
  const u64 pa = 16 * MiB;  // above the pool
  auto m = s.map(VirtAddr(va), PhysAddr(pa), 8 * MiB, Attrs{RW});
  g.x.sync();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->stats.tables_allocated, 5u);
  EXPECT_GT(slots.high_water(), 1u);
  EXPECT_EQ(slots.in_use(), 0u);
  g.expect_mapped(va, pa, 8 * MiB, RW, "mapped through the slots");
  auto p = s.protect(VirtAddr(va), 4 * MiB, AttrChange{Perm::None, Perm::W});
  g.x.sync();
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->stats.breaks, 4 * MiB / kPage);
  g.expect_mapped(va, pa, 4 * MiB, Perm::R, "protected through the slots");
  auto u = s.unmap(VirtAddr(va), 8 * MiB);
  g.x.sync();
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->stats.tables_freed, 5u);
  g.expect_unmapped(va, 8 * MiB, "unmapped through the slots");

  EXPECT_TRUE(failures.empty()) << failures.front();
  EXPECT_FALSE(slots.last_error().any());
  EXPECT_EQ(slots.in_use(), 0u);
  for (unsigned i = 0; i < 4; ++i) EXPECT_EQ(*slots.slot_entry(i), 0u) << i;
  // Every slot entry change was one mmu_update request; more uses than
  // slots means slot entries were reused.
  EXPECT_GT(slots.store().requests() / 2, 4u);
  EXPECT_EQ(slots.store().requests() % 2, 0u);
  EXPECT_FALSE(s.writer().failed());
  // Xen's rules and the TLB rules held over everything, slot entries
  // included (each goes invalid -> valid -> invalid, invalidated each time).
  const sim::CheckResult r = g.x.check();
  EXPECT_TRUE(r.ok()) << violations(r);
}

// ---- The format on its own -----------------------------------------------------------

TEST(XenPv, FormatTranslatesFramesBothWays) {
  FakeXen x(1024);
  const xen::PvFormat<Tr> f{Tr{&x}, x86::Features{.page_1g = true}};
  EXPECT_TRUE(f.leaf_allowed(0));
  EXPECT_FALSE(f.leaf_allowed(1));
  EXPECT_FALSE(f.leaf_allowed(2));
  const PhysAddr pa(37 * kPage);
  const u64 leaf = f.encode(Entry::leaf(pa, Attrs{RW}), 0);
  EXPECT_EQ(leaf & 0x000F'FFFF'FFFF'F000, x.to_machine(pa));
  EXPECT_NE(x.to_machine(pa), pa.value());
  EXPECT_EQ(f.decode(leaf, 0).pa, pa);
  const u64 table = f.encode(Entry::table(pa), 2);
  EXPECT_EQ(table & 0x000F'FFFF'FFFF'F000, x.to_machine(pa));
  EXPECT_EQ(f.decode(table, 2), Entry::table(pa));
  EXPECT_EQ(f.encode(Entry::invalid(), 1), 0u);
  // Every change of a valid entry breaks, equivalent or not; none otherwise.
  const Entry a = Entry::leaf(pa, Attrs{RW});
  const Entry b = Entry::leaf(pa, Attrs{Perm::R});
  EXPECT_TRUE(f.needs_break(a, b, false));
  EXPECT_TRUE(f.needs_break(a, b, true));
  EXPECT_TRUE(f.needs_break(a, Entry::table(pa), true));
  EXPECT_FALSE(f.needs_break(a, a, false));
  EXPECT_FALSE(f.needs_break(Entry::invalid(), a, false));
  EXPECT_FALSE(f.needs_break(a, Entry::invalid(), false));
}

}  // namespace
}  // namespace ptkit::test
