// Host-side helpers shared by the tests: physical memory for tables, the
// formats every typed test runs on, a reference interval map, and recorders.
#pragma once

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ptkit/arch/aarch64.hpp"
#include "ptkit/arch/riscv.hpp"
#include "ptkit/ptkit.hpp"

namespace ptkit::test {

/// A block of host memory standing in for the physical pages that hold page
/// tables, at a physical base that is not zero (so a confusion of physical
/// and host addresses shows). Pages are the format's table size.
class TableMemory {
 public:
  static constexpr u64 kBase = 0x0000'0040'0000'0000;  // 256 GiB

  explicit TableMemory(u64 pages, u64 page_size = kTablePageSize)
      : pages_(pages), page_size_(page_size) {
    void* p = mmap(nullptr, pages * page_size_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) std::abort();
    host_ = static_cast<u8*>(p);
  }
  ~TableMemory() { munmap(host_, pages_ * page_size_); }
  TableMemory(const TableMemory&) = delete;
  TableMemory& operator=(const TableMemory&) = delete;

  [[nodiscard]] OffsetAccess access() const {
    return OffsetAccess{reinterpret_cast<u64>(host_) - kBase};
  }
  [[nodiscard]] u64 pages() const { return pages_; }
  [[nodiscard]] u64 page_size() const { return page_size_; }
  [[nodiscard]] PhysAddr base() const { return PhysAddr(kBase); }
  u64* table(PhysAddr pa) const {
    EXPECT_GE(pa.value(), kBase);
    EXPECT_LT(pa.value(), kBase + pages_ * page_size_);
    return reinterpret_cast<u64*>(host_ + (pa.value() - kBase));
  }

 private:
  u64 pages_;
  u64 page_size_;
  u8* host_ = nullptr;
};

using FreeList = FreeListAllocator<OffsetAccess>;

// ---- Formats --------------------------------------------------------------------

/// Wraps a format so that each level encodes differently (the raw value is
/// rotated by a per-level amount): an engine that reads or writes an entry
/// at the wrong level decodes garbage and the tests see it.
template <PagingFormat Inner>
struct LevelScrambled : Inner {
  using Inner::Inner;
  // Rotated raw values do not advance by a fixed delta.
  [[nodiscard]] constexpr LeafStep leaf_step(unsigned, bool) const { return {}; }
  static constexpr unsigned rot(unsigned level) { return 5 * level + 3; }
  [[nodiscard]] constexpr Entry decode(u64 raw, unsigned level) const {
    return Inner::decode(std::rotr(raw, int(rot(level))), level);
  }
  [[nodiscard]] constexpr u64 encode(const Entry& e, unsigned level) const {
    return std::rotl(Inner::encode(e, level), int(rot(level)));
  }
  [[nodiscard]] constexpr bool is_valid_raw(u64 raw, unsigned level) const {
    return Inner::is_valid_raw(std::rotr(raw, int(rot(level))), level);
  }
  [[nodiscard]] constexpr u64 table_address(u64 raw, unsigned level) const {
    return Inner::table_address(std::rotr(raw, int(rot(level))), level);
  }
};

/// Wraps a format with Arm's break-before-make rule (Arm ARM D8.14): a valid
/// entry replaced by a valid one with another output address, another size or
/// another memory type must be broken first; with `bbm2` an equivalent size
/// change may be written in place.
template <PagingFormat Inner, bool Bbm2 = false>
struct WithBreakBeforeMake : Inner {
  using Inner::Inner;
  [[nodiscard]] constexpr bool needs_break(const Entry& o, const Entry& n, bool equivalent) const {
    if (!o.valid() || !n.valid()) return false;
    if (o.kind != n.kind || o.contiguous != n.contiguous) return !(Bbm2 && equivalent);
    return o.is_leaf() && (o.pa != n.pa || o.attrs.mem != n.attrs.mem);
  }
};

inline x86::Features cpu_with_1g() {
  x86::Features f;
  f.page_1g = true;
  return f;
}

/// The formats every typed test runs on, each with a name and the factory of
/// its instance.
// Each config also names itself for the simulator's trace format
// (docs/trace-format.md): trace_format() and trace_features(); an empty name
// means the simulator has no such MMU (test-only encodings).
struct X86_4 {
  using Format = x86::Paging4;
  static std::string trace_format() { return "x86_64-4l"; }
  static std::vector<std::string> trace_features() { return {"no-page_1g"}; }
  static Format make() { return Format{}; }
};
struct X86_4_1G {
  using Format = x86::Paging4;
  static std::string trace_format() { return "x86_64-4l"; }
  static std::vector<std::string> trace_features() { return {"page_1g"}; }
  static Format make() { return Format{cpu_with_1g()}; }
};
struct X86_5_1G {
  using Format = x86::Paging5;
  static std::string trace_format() { return "x86_64-5l"; }
  static std::vector<std::string> trace_features() { return {"page_1g"}; }
  static Format make() { return Format{cpu_with_1g()}; }
};
struct Scrambled_4_1G {
  using Format = LevelScrambled<x86::Paging4>;
  static std::string trace_format() { return ""; }
  static std::vector<std::string> trace_features() { return {}; }
  static Format make() { return Format{cpu_with_1g()}; }
};
struct Bbm_4_1G {
  using Format = WithBreakBeforeMake<x86::Paging4>;
  // x86 encodings: the x86 rules hold (the Arm ones it adds are stricter).
  static std::string trace_format() { return "x86_64-4l"; }
  static std::vector<std::string> trace_features() { return {"page_1g"}; }
  static Format make() { return Format{cpu_with_1g()}; }
};

/// AArch64 stage 1 (granule, input address size, half, CPU features).
template <aarch64::Granule G, unsigned VaBits, aarch64::Half H = aarch64::Half::Lower,
          bool Wide = false>
struct Arm {
  using Format = aarch64::Paging;
  static std::string trace_format() {
    const char* g = G == aarch64::Granule::K4 ? "4k" : G == aarch64::Granule::K16 ? "16k" : "64k";
    return std::string("aarch64-") + g + "-" + std::to_string(VaBits);
  }
  static std::vector<std::string> trace_features() {
    if (H == aarch64::Half::Upper) return {"ttbr1"};
    return {};
  }
  static Format make() {
    aarch64::Features f;
    if (Wide) {  // 52-bit: LPA2 descriptors on 4K/16K, LVA + LPA on 64K
      f.phys_bits = 52;
      f.lpa2 = G != aarch64::Granule::K64;
      f.lva = f.lpa = G == aarch64::Granule::K64;
    }
    auto made = Format::make(G, VaBits, H, f);
    if (!made.ok()) std::abort();
    return made.value();
  }
};
using A64_4K_39 = Arm<aarch64::Granule::K4, 39>;
using A64_4K_48 = Arm<aarch64::Granule::K4, 48>;
using A64_4K_48_Ttbr1 = Arm<aarch64::Granule::K4, 48, aarch64::Half::Upper>;
using A64_4K_52 = Arm<aarch64::Granule::K4, 52, aarch64::Half::Lower, true>;
using A64_16K_39 = Arm<aarch64::Granule::K16, 39>;
using A64_16K_48 = Arm<aarch64::Granule::K16, 48>;
using A64_64K_39 = Arm<aarch64::Granule::K64, 39>;
using A64_64K_48 = Arm<aarch64::Granule::K64, 48>;
using A64_64K_52 = Arm<aarch64::Granule::K64, 52, aarch64::Half::Lower, true>;
/// FEAT_BBM level 2: equivalent size and hint changes without a break.
struct A64_4K_48_Bbm2 {
  using Format = aarch64::Paging;
  static std::string trace_format() { return "aarch64-4k-48"; }
  static std::vector<std::string> trace_features() { return {"bbm2"}; }
  static Format make() {
    aarch64::Features f;
    f.bbm2 = true;
    return Format(aarch64::Granule::K4, 48, aarch64::Half::Lower, f);
  }
};

/// RISC-V: with Svpbmt and Svnapot, or (Plain) with neither.
template <riscv::Mode M, bool Plain = false>
struct Rv {
  using Format = riscv::Paging;
  static std::string trace_format() {
    return M == riscv::Mode::Sv39   ? "riscv-sv39"
           : M == riscv::Mode::Sv48 ? "riscv-sv48"
                                    : "riscv-sv57";
  }
  static std::vector<std::string> trace_features() {
    if (Plain) return {};
    return {"svpbmt", "svnapot"};
  }
  static Format make() {
    riscv::Features f;
    f.svpbmt = f.svnapot = !Plain;
    auto made = Format::make(M, f);
    if (!made.ok()) std::abort();
    return made.value();
  }
};
using Rv_Sv39 = Rv<riscv::Mode::Sv39>;
using Rv_Sv39_Plain = Rv<riscv::Mode::Sv39, true>;
using Rv_Sv48 = Rv<riscv::Mode::Sv48>;
using Rv_Sv57 = Rv<riscv::Mode::Sv57>;

using AllFormats =
    ::testing::Types<X86_4, X86_4_1G, X86_5_1G, Scrambled_4_1G, Bbm_4_1G, A64_4K_39, A64_4K_48,
                     A64_4K_48_Ttbr1, A64_4K_52, A64_16K_39, A64_16K_48, A64_64K_39, A64_64K_48,
                     A64_64K_52, A64_4K_48_Bbm2, Rv_Sv39, Rv_Sv39_Plain, Rv_Sv48, Rv_Sv57>;

// ---- Trace recording ------------------------------------------------------------

struct Event {
  // Alloc and Free (site.table is the page) go to Recorder::tracer only.
  enum Kind { Write, Publish, Invalidate, InvalidateAll, Complete, Alloc, Free } kind;
  WriteSite site{};
  u64 old_raw = 0;
  u64 new_raw = 0;
  bool fresh = false;
  TlbRange range{};
  bool global = false;
};

/// Records every entry store and every TLB-sink call in one ordered trace;
/// an optional hook sees each write before it happens.
struct Recorder {
  std::vector<Event> events;
  std::function<void(const Event&)> on_event;
  /// Sees every event, table-page allocations and frees included, for the
  /// simulator's rule checker (tests/checked.hpp).
  std::function<void(const Event&)> tracer;
  /// Every page the allocator handed out, in order, and every answer of its
  /// upcoming(n): the position among those takes it named, and the page.
  std::vector<u64> taken;
  std::vector<std::pair<u64, u64>> predicted;

  void add(const Event& e) {
    if (on_event) on_event(e);
    if (tracer) tracer(e);
    events.push_back(e);
  }
  void page(Event::Kind kind, PhysAddr pa) {
    Event e{kind};
    e.site.table = pa;
    if (tracer) tracer(e);
  }
  void on_write(const WriteSite& s, u64 old_raw, u64 new_raw, bool fresh) {
    add(Event{Event::Write, s, old_raw, new_raw, fresh});
  }
  void publish() { add(Event{Event::Publish}); }
  void invalidate(const TlbRange& r) {
    Event e{Event::Invalidate};
    e.range = r;
    add(e);
  }
  void invalidate_all(bool global) {
    Event e{Event::InvalidateAll};
    e.global = global;
    add(e);
  }
  void complete() { add(Event{Event::Complete}); }

  [[nodiscard]] bool covers(u64 va) const {
    for (const Event& e : events) {
      if (e.kind == Event::InvalidateAll) return true;
      if (e.kind == Event::Invalidate && e.range.first.value() <= va && va <= e.range.last.value())
        return true;
    }
    return false;
  }
};

using RecWriter = RecordingWriter<Recorder>;
using RecSink = RecordingSink<Recorder>;

/// Forwards to an allocator and tells the recorder which pages become page
/// tables and which stop being ones.
template <class Inner>
class RecordingAllocator {
 public:
  RecordingAllocator(Inner& inner, Recorder& recorder) : inner_(&inner), recorder_(&recorder) {}
  bool reserve(u64 n) { return inner_->reserve(n); }
  PhysAddr take() {
    const PhysAddr pa = inner_->take();
    recorder_->page(Event::Alloc, pa);
    recorder_->taken.push_back(pa.value());
    return pa;
  }
  /// Forwarded, so that every batch reads ahead into its fresh tables;
  /// each answer is recorded with the take it names.
  PhysAddr upcoming(u64 n) requires LookaheadAllocator<Inner> {
    const PhysAddr pa = inner_->upcoming(n);
    recorder_->predicted.emplace_back(recorder_->taken.size() + n, pa.value());
    return pa;
  }
  void release(PhysAddr pa) {
    recorder_->page(Event::Free, pa);
    inner_->release(pa);
  }
  /// Forwarded so that every test has the engine say which freed tables are
  /// all zero (checked under PTKIT_CHECK_ENTRY_COUNTS).
  void release_zeroed(PhysAddr pa) requires ZeroKeepingAllocator<Inner> {
    recorder_->page(Event::Free, pa);
    inner_->release_zeroed(pa);
  }
  void give_back_unused() { inner_->give_back_unused(); }
  /// Entry counts for every other page only, so that every test has the
  /// engine prove some tables empty by their count and others by reading
  /// them (tests build with PTKIT_CHECK_ENTRY_COUNTS: each count used is
  /// checked against the table).
  u16* entry_count(PhysAddr pa) requires EntryCountingAllocator<Inner> {
    u16* n = inner_->entry_count(pa);
    return n != nullptr && (__builtin_popcountll(pa.value() >> 12) & 1) == 0 ? n : nullptr;
  }

 private:
  Inner* inner_;
  Recorder* recorder_;
};

// ---- A complete test space --------------------------------------------------------

/// Every table reachable from a space's root, with its raw contents, in walk order.
using TableSnapshot = std::vector<std::pair<u64, std::vector<u64>>>;

template <class Space>
TableSnapshot snapshot_tables(const TableMemory& memory, const Space& space) {
  TableSnapshot out;
  const auto& f = space.format();
  std::function<void(PhysAddr, unsigned)> visit = [&](PhysAddr pa, unsigned level) {
    const u64* t = memory.table(pa);
    const u64 n = space.entries(level);
    out.emplace_back(pa.value(), std::vector<u64>(t, t + n));
    for (unsigned i = 0; i < n; ++i) {
      const Entry e = f.decode(t[i], level);
      if (e.is_table() && level > 0) visit(e.pa, level - 1);
    }
  };
  visit(space.root(), f.levels() - 1);
  return out;
}

/// A virtual address a quarter into a format's space (upper half for
/// TTBR1-style formats): aligned to every leaf below the root, with room
/// around it.
template <class Format>
u64 quarter_va(const Format& f) {
  unsigned shift = f.page_shift();
  for (unsigned l = 0; l < f.levels(); ++l) shift += f.index_bits(l);
  const u64 quarter = u64{1} << (shift - 2);
  if (f.is_canonical(VirtAddr(quarter))) return quarter;
  return (~u64{0} << shift) | quarter;
}

/// An address space over TableMemory with a free-list allocator and recording
/// writer and sink, for format F.
template <class Config>
struct Fixture {
  using Format = typename Config::Format;
  using Space =
      AddressSpace<Format, OffsetAccess, RecordingAllocator<FreeList>, RecWriter, RecSink>;

  explicit Fixture(u64 pages = 512)
      : memory(pages, u64{1} << Config::make().page_shift()),
        counts(pages),
        alloc(memory.access(), memory.page_size()) {
    alloc.add_range(memory.base(), pages);
    alloc.keep_entry_counts(EntryCounts(memory.base(), pages, counts.data(), memory.page_size()));
    free_at_start = alloc.pages_free();
    auto created = Space::create(Config::make(), memory.access(),
                                 RecordingAllocator<FreeList>(alloc, recorder), RecWriter(recorder),
                                 RecSink(recorder));
    if (!created) std::abort();
    space.emplace(std::move(created.value()));
  }

  Space& s() { return *space; }

  // The format's geometry, for tests written once for every format.
  /// Smallest page (x86 4K, Arm granule, RISC-V 4K).
  [[nodiscard]] u64 page() const { return space->leaf_size(0); }
  /// The level-1 leaf (x86 2M; Arm 2M/32M/512M; RISC-V 2M).
  [[nodiscard]] u64 block() const { return space->leaf_size(1); }
  /// The level-2 leaf where this format and CPU have it (x86 1G), else 0.
  [[nodiscard]] u64 huge() const {
    const Format& f = space->format();
    return f.levels() > 2 && f.leaf_allowed(2) ? space->leaf_size(2) : 0;
  }
  /// Bytes a level-2 entry spans, leaf or not (for alignment).
  [[nodiscard]] u64 level2_span() const {
    return space->format().levels() > 2 ? space->leaf_size(2) : space->leaf_size(1) * 1024;
  }
  /// Entries in a table at `level`.
  [[nodiscard]] u64 entries(unsigned level) const { return space->entries(level); }
  /// A virtual address a quarter into the space (upper half for TTBR1-style
  /// formats): aligned to every leaf below the root, with room around it.
  [[nodiscard]] u64 va_base() const { return quarter_va(space->format()); }
  /// The attributes of `candidates` this format can express.
  [[nodiscard]] std::vector<Attrs> expressible(std::initializer_list<Attrs> candidates) const {
    std::vector<Attrs> out;
    for (const Attrs& a : candidates)
      if (space->format().can_express(a)) out.push_back(a);
    return out;
  }
  /// A memory type other than write-back that the format can express, if any.
  [[nodiscard]] std::optional<MemType> other_mem() const {
    for (MemType m :
         {MemType::Uncached, MemType::Device, MemType::WriteCombining, MemType::WriteThrough})
      if (space->format().can_express(Attrs{RW, m, false})) return m;
    return std::nullopt;
  }

  /// Every table reachable from the root, with its contents, in walk order.
  [[nodiscard]] TableSnapshot snapshot() const { return snapshot_tables(memory, *space); }

  /// Tables in use (reachable or not yet returned).
  [[nodiscard]] u64 tables_in_use() const { return free_at_start - alloc.pages_free(); }

  TableMemory memory;
  std::vector<u16> counts;
  FreeList alloc;
  u64 free_at_start = 0;
  Recorder recorder;
  std::optional<Space> space;
};

// ---- Reference model ----------------------------------------------------------------

/// What the tables should translate: maximal runs of pages with contiguous
/// physical addresses and identical attributes.
struct Run {
  u64 va = 0;
  u64 last = 0;
  u64 pa = 0;
  Attrs attrs{};
  bool operator==(const Run&) const = default;
};

inline std::string describe(const Run& r) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "[%#llx..%#llx] -> %#llx perm=%u mem=%u g=%d",
                static_cast<unsigned long long>(r.va), static_cast<unsigned long long>(r.last),
                static_cast<unsigned long long>(r.pa), unsigned(r.attrs.perm),
                unsigned(r.attrs.mem), r.attrs.global);
  return buf;
}

/// Appends [va, last] -> pa to `runs`, merging it into the last run when it
/// continues it.
inline void append_run(std::vector<Run>& runs, const Run& r) {
  if (!runs.empty()) {
    Run& b = runs.back();
    if (b.last + 1 == r.va && b.pa + (b.last - b.va) + 1 == r.pa && b.attrs == r.attrs) {
      b.last = r.last;
      return;
    }
  }
  runs.push_back(r);
}

/// A plain interval map of virtual pages, written without any of the engine's
/// code: the oracle for randomized tests.
class IntervalMap {
 public:
  struct Piece {
    u64 last;
    u64 pa;
    Attrs attrs;
  };

  [[nodiscard]] bool any_mapped(u64 lo, u64 hi) const {
    auto it = pieces_.upper_bound(hi);
    if (it == pieces_.begin()) return false;
    --it;
    return it->second.last >= lo;
  }
  [[nodiscard]] bool all_mapped(u64 lo, u64 hi) const {
    u64 cur = lo;
    auto it = pieces_.upper_bound(lo);
    if (it != pieces_.begin()) --it;
    for (; it != pieces_.end() && it->first <= hi; ++it) {
      if (it->second.last < cur) continue;
      if (it->first > cur) return false;
      if (it->second.last >= hi) return true;
      cur = it->second.last + 1;
    }
    return false;
  }
  void erase(u64 lo, u64 hi) {
    split_at(lo);
    if (hi != ~u64{0}) split_at(hi + 1);
    pieces_.erase(pieces_.lower_bound(lo), pieces_.upper_bound(hi));
  }
  void insert(u64 lo, u64 hi, u64 pa, Attrs a) {
    erase(lo, hi);
    pieces_[lo] = Piece{hi, pa, a};
  }
  /// Maps only the parts of [lo, hi] that are not mapped yet.
  void insert_holes(u64 lo, u64 hi, u64 pa, Attrs a) {
    u64 cur = lo;
    std::vector<std::pair<u64, u64>> holes;
    auto it = pieces_.upper_bound(lo);
    if (it != pieces_.begin()) --it;
    for (; it != pieces_.end() && it->first <= hi; ++it) {
      if (it->second.last < cur) continue;
      if (it->first > cur) holes.emplace_back(cur, it->first - 1);
      cur = it->second.last + 1;
      if (it->second.last >= hi) {
        cur = hi + 1;
        break;
      }
    }
    if (cur <= hi && cur >= lo) holes.emplace_back(cur, hi);
    for (auto [h_lo, h_hi] : holes) pieces_[h_lo] = Piece{h_hi, pa + (h_lo - lo), a};
  }
  void protect(u64 lo, u64 hi, const AttrChange& c) {
    split_at(lo);
    if (hi != ~u64{0}) split_at(hi + 1);
    for (auto it = pieces_.lower_bound(lo); it != pieces_.end() && it->first <= hi; ++it)
      it->second.attrs = c.applied_to(it->second.attrs);
  }
  /// Attributes of every mapped piece in [lo, hi] after `c`, for checking
  /// whether the format can express them.
  template <class Fn>
  void for_each(u64 lo, u64 hi, Fn&& fn) const {
    auto it = pieces_.upper_bound(lo);
    if (it != pieces_.begin()) --it;
    for (; it != pieces_.end() && it->first <= hi; ++it)
      if (it->second.last >= lo) fn(it->first, it->second);
  }
  [[nodiscard]] std::optional<std::pair<u64, Attrs>> lookup(u64 va) const {
    auto it = pieces_.upper_bound(va);
    if (it == pieces_.begin()) return std::nullopt;
    --it;
    if (it->second.last < va) return std::nullopt;
    return std::make_pair(it->second.pa + (va - it->first), it->second.attrs);
  }
  [[nodiscard]] std::vector<Run> runs() const {
    std::vector<Run> out;
    for (const auto& [va, p] : pieces_) append_run(out, Run{va, p.last, p.pa, p.attrs});
    return out;
  }

 private:
  void split_at(u64 va) {
    auto it = pieces_.upper_bound(va);
    if (it == pieces_.begin()) return;
    --it;
    if (it->first == va || it->second.last < va) return;
    Piece tail{it->second.last, it->second.pa + (va - it->first), it->second.attrs};
    it->second.last = va - 1;
    pieces_[va] = tail;
  }
  std::map<u64, Piece> pieces_;
};

/// The runs the tables translate over [lo, hi], from the engine's walk.
template <class Space>
std::vector<Run> runs_of(const Space& space, u64 lo, u64 hi) {
  std::vector<Run> out;
  const Status st = space.walk(VirtAddr(lo), hi - lo + 1, [&](const Mapping& m) {
    append_run(out, Run{m.va.value(), m.va.value() + m.size - 1, m.pa.value(), m.attrs});
    return true;
  });
  EXPECT_TRUE(st.ok());
  return out;
}

/// Result of checking every run of the contiguous hint in a space's tables.
struct RunCheck {
  u64 contiguous_leaves = 0;
  u64 disagreeing = 0;  // runs whose entries do not all agree
  std::string first_problem;
};

/// Walks every table of `fx` and checks each run of the contiguous hint the
/// way the Arm ARM and Svnapot require: all of the run's entries are leaves
/// with the hint, the same attributes and kept bits, and consecutive output
/// addresses from an aligned start.
template <class Fx>
RunCheck check_contiguous_runs(const Fx& fx) {
  RunCheck out;
  const auto& s = *fx.space;
  const auto& f = s.format();
  std::function<void(PhysAddr, unsigned)> visit = [&](PhysAddr pa, unsigned level) {
    const u64* t = fx.memory.table(pa);
    const u64 n = s.entries(level);
    const unsigned run = f.contiguous_entries(level);
    for (u64 i = 0; i < n; ++i) {
      const Entry e = f.decode(t[i], level);
      if (e.is_table() && level > 0) visit(e.pa, level - 1);
      if (!e.is_leaf() || !e.contiguous) continue;
      ++out.contiguous_leaves;
      if (i % run != 0) continue;  // each run is checked from its first entry
      bool ok = i + run <= n && e.pa.is_aligned(run * s.leaf_size(level));
      for (u64 k = 1; ok && k < run; ++k) {
        const Entry o = f.decode(t[i + k], level);
        ok = o.is_leaf() && o.contiguous && o.pa == e.pa && o.attrs == e.attrs && o.kept == e.kept;
      }
      if (!ok) {
        if (out.disagreeing++ == 0)
          out.first_problem = "run at table " + std::to_string(pa.value()) + " index " +
                              std::to_string(i) + " level " + std::to_string(level) + " disagrees";
      }
    }
    // An entry with the hint whose run start lacks it is a disagreeing run too.
    for (u64 i = 0; i < n; ++i) {
      const Entry e = f.decode(t[i], level);
      if (!e.is_leaf() || !e.contiguous || i % run == 0) continue;
      const Entry head = f.decode(t[i - i % run], level);
      if (!head.is_leaf() || !head.contiguous) {
        if (out.disagreeing++ == 0)
          out.first_problem = "entry " + std::to_string(i) + " at level " + std::to_string(level) +
                              " has the hint, its run's first does not";
      }
    }
  };
  visit(s.root(), f.levels() - 1);
  return out;
}

/// Seed for randomized tests: PTKIT_SEED from the environment, or a fresh
/// one. Printed so that any failure can be replayed.
inline u64 test_seed() {
  if (const char* env = std::getenv("PTKIT_SEED")) return std::strtoull(env, nullptr, 0);
  return std::random_device{}() | (u64{std::random_device{}()} << 32);
}

/// How much of its full work a randomized test does: PTKIT_TEST_SCALE from
/// the environment (default 1). scripts/test.sh runs the clang and sanitizer
/// builds at a fraction of the length, so all three builds fit CI's time; the
/// g++ build runs them in full. `scaled(n, floor)` is n times the scale, never
/// below `floor` (what a test needs to still reach every case it asserts on).
inline double test_scale() {
  if (const char* env = std::getenv("PTKIT_TEST_SCALE")) {
    const double v = std::strtod(env, nullptr);
    if (v > 0 && v <= 1) return v;
  }
  return 1.0;
}
inline u64 scaled(u64 n, u64 floor = 1) {
  const auto v = static_cast<u64>(static_cast<double>(n) * test_scale());
  return v < floor ? floor : v;
}

}  // namespace ptkit::test
