// The rule checker. See checker.hpp for the model and docs/trace-format.md
// for the rules; each rule's manual section is in kRules below.
#include "ptkit/sim/checker.hpp"

#include <algorithm>
#include <cstdio>
#include <unordered_map>
#include <unordered_set>

namespace ptkit::sim {

namespace {

using Kind = TraceEvent::Kind;
using DK = Descriptor::Kind;

const std::vector<RuleInfo> kRules = {
    {"arm-bbm",
     "Arm ARM D8.16.1 \"Using break-before-make when updating translation table entries\"",
     "a valid entry replaced by one that needs break-before-make without the sequence write "
     "invalid, publish (DSB), invalidate (TLBI), complete (DSB; ISB), write new, or with its steps "
     "out of order"},
    {"arm-contiguous", "Arm ARM D8.6.1 \"The Contiguous bit\"",
     "a run of entries with the Contiguous bit whose entries disagree at a sync or at the end"},
    {"riscv-napot", "RISC-V privileged spec, Svnapot chapter (NAPOT translation contiguity)",
     "a NAPOT run whose PTEs disagree at a sync or at the end"},
    {"x86-size-and-attrs",
     "Intel SDM vol. 3A 4.10.2.3 \"Details of TLB Use\"; AMD APM vol. 2 5.5.2",
     "one write changes the page size of some address together with its frame or attributes"},
    {"stale-translation",
     "Intel SDM vol. 3A 4.10.4 \"Invalidation of TLBs and Paging-Structure Caches\"; Arm ARM "
     "D8.16 \"TLB maintenance\"; RISC-V privileged spec 4.2.1 \"SFENCE.VMA\"",
     "at a sync (or a use of the address) a translation removed, restricted or changed since the "
     "last covering invalidation completed may still be cached"},
    {"live-range", "ptkit DESIGN.md 3 (live ranges)",
     "a write makes an address of a live range invalid, even transiently"},
    {"table-freed-reachable",
     "Intel SDM vol. 3A 4.10.3 \"Paging-Structure Caches\"; Arm ARM D8.16; RISC-V 4.2.1",
     "a page-table page freed while an entry still links it"},
    {"table-freed-before-invalidation",
     "Intel SDM vol. 3A 4.10.4.1; Arm ARM D8.16 (TLBI VAE1/VMALLE1: walk caches); RISC-V 4.2.1 "
     "(rs1=x0 for non-leaf PTEs)",
     "a page-table page freed before an invalidation of the walk caches that cover its unlinked "
     "pointer completed"},
    {"xen-large-page", "Xen PV x86 guests: xen/arch/x86/mm.c, L2/L3 PSE not permitted",
     "a leaf above level 0 (2M/1G page) in a Xen PV guest's tables"},
    {"xen-writable-table", "Xen PV x86 guests: xen/arch/x86/mm.c (page-table pages are PGT_*)",
     "a writable leaf maps a page-table page"},
    {"xen-overwrite", "ptkit DESIGN.md 4 (Xen PV: valid entries are not overwritten)",
     "a valid entry overwritten by a different valid one"},
    {"undefined-memory", "ptkit trace format (docs/trace-format.md)",
     "a table linked from a page the trace never allocated, wrote or seeded"},
    {"trace-mismatch", "ptkit trace format (docs/trace-format.md)",
     "a write's `old` value differs from the memory the trace built"},
    {"trace-bad-entry", "ptkit trace format (docs/trace-format.md)",
     "a write outside its table, at a level the format does not have, or at a level other than "
     "the one its table is linked at"},
};

const char* section_of(const std::string& rule, Arch arch) {
  if (rule == "stale-translation") {
    switch (arch) {
      case Arch::X86_64:
        return "Intel SDM vol. 3A 4.10.4 \"Invalidation of TLBs and Paging-Structure Caches\"";
      case Arch::AArch64: return "Arm ARM D8.16 \"TLB maintenance\"";
      case Arch::RiscV: return "RISC-V privileged spec 4.2.1 \"SFENCE.VMA\"";
    }
  }
  for (const RuleInfo& r : kRules)
    if (rule == r.id) return r.section;
  return "";
}

std::string hex(u64 v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

bool valid(const Descriptor& d) { return d.kind == DK::Leaf || d.kind == DK::Table; }

/// The output address `t` gives `va` (t is linear over its leaf).
u64 pa_at(const Translation& t, u64 va) { return t.pa + (va - t.va); }

bool same_rights(const Translation& a, const Translation& b) {
  for (int u = 0; u < 2; ++u)
    if (a.read[u] != b.read[u] || a.write[u] != b.write[u] || a.exec[u] != b.exec[u]) return false;
  return true;
}

/// Whether every right of `a` is a right of `b`.
bool rights_within(const Translation& a, const Translation& b) {
  for (int u = 0; u < 2; ++u)
    if ((a.read[u] && !b.read[u]) || (a.write[u] && !b.write[u]) || (a.exec[u] && !b.exec[u]))
      return false;
  return true;
}

/// Same translation of `va`: both fault, or the same frame, rights, memory
/// type, shareability and global bit. A/D (status bits the CPU sets) do not
/// count.
bool same_at(const Translation& a, const Translation& b, u64 va) {
  if (a.ok() != b.ok()) return false;
  if (!a.ok()) return true;
  return pa_at(a, va) == pa_at(b, va) && same_rights(a, b) && a.global == b.global &&
         a.mem_index == b.mem_index && a.shareability == b.shareability;
}

/// A contiguous range of virtual addresses that translates through one leaf
/// or faults at one entry; `t` was walked at some address inside it.
struct Region {
  u64 lo, hi;
  Translation t;
};

struct Pos {
  u64 base;  // virtual address of the table's entry 0
  unsigned level;
  unsigned count;  // entries linking the table at this position
};

/// A translation or table pointer the TLB may still hold.
struct Item {
  enum class Type : std::uint8_t { Leaf, Walk } type = Type::Leaf;
  u64 lo = 0, hi = 0;          // addresses it may translate
  u64 hit_lo = 0, hit_hi = 0;  // an invalidation must reach one of these to drop it
  Translation t;               // Leaf: the old translation
  u64 table = 0;               // Walk: the table the stale pointer leads to
  unsigned table_level = 0;
  u64 table_base = 0;
  bool global = false;
  u64 slot = 0;     // physical address of the entry whose write made it stale
  u64 slot_lo = 0;  // that entry's virtual address
  Descriptor old_desc;
  unsigned level = 0;  // the entry's level
  u64 seq = 0;         // the write's sequence number
  std::size_t event = 0;
  bool invalidated = false;  // reached by an invalidation after it was published
  bool early = false;        // reached by an invalidation before it was published
  bool reported = false;
  bool retired = false;
};

class Checker {
 public:
  Checker(const Trace& trace, const TraceConfig& cfg, const ArchOps& ops, const CheckOptions& opt)
      : tr_(trace), cfg_(cfg), c_(cfg.mmu), ops_(ops), opt_(opt) {}

  CheckResult run() {
    levels_ = ops_.levels(c_);
    top_ = levels_ - 1;
    page_shift_ = ops_.entry_shift(c_, 0);
    unsigned root_bits = 0;
    while ((u64{1} << root_bits) < ops_.entries(c_, top_)) ++root_bits;
    va_bits_ = ops_.entry_shift(c_, top_) + root_bits;
    root_base_ = c_.arch == Arch::AArch64 && c_.arm_upper ? ~u64{0} << va_bits_ : 0;
    pos_[tr_.root].push_back(Pos{root_base_, top_, 1});
    defined_.insert(page(tr_.root));
    for (ev_ = 0; ev_ < tr_.events.size() && !stopped_; ++ev_) step(tr_.events[ev_]);
    if (!stopped_) {
      ev_ = tr_.events.size();
      check_runs();
    }
    return std::move(res_);
  }

 private:
  // ---- Reporting --------------------------------------------------------------

  void report(const std::string& rule, u64 va, int level, const std::string& message) {
    if (res_.violations.size() >= opt_.max_violations) {
      ++res_.dropped;
      return;
    }
    Violation v;
    v.event = ev_;
    v.line = ev_ < tr_.events.size() ? tr_.events[ev_].line : 0;
    v.va = va;
    v.level = level;
    v.rule = rule;
    v.message = message;
    v.section = section_of(rule, c_.arch);
    res_.violations.push_back(std::move(v));
  }

  void stop(const std::string& why) {
    if (stopped_) return;
    stopped_ = true;
    res_.error = why;
    res_.error_line = ev_ < tr_.events.size() ? tr_.events[ev_].line : 0;
  }

  bool spend(u64 n = 1) {
    work_ += n;
    if (work_ > opt_.max_work) stop("work bound exceeded (CheckOptions::max_work)");
    return !stopped_;
  }

  // ---- Geometry ---------------------------------------------------------------

  u64 page(u64 pa) const { return pa >> page_shift_; }
  u64 span(unsigned level) const { return u64{1} << ops_.entry_shift(c_, level); }
  u64 run_span(unsigned level) const { return span(level) * ops_.run_entries(c_, level); }

  /// Virtual address of entry `index` of a table at `level` whose entry 0
  /// maps `base`: sign-extended at the root where the format is (x86, RISC-V).
  u64 entry_va(u64 base, unsigned level, u64 index) const {
    u64 va = base + (index << ops_.entry_shift(c_, level));
    if (level == top_ && c_.arch != Arch::AArch64 && va_bits_ < 64 && (va >> (va_bits_ - 1)) & 1)
      va |= ~u64{0} << va_bits_;
    return va;
  }

  Descriptor decode(u64 raw, unsigned level) const { return ops_.decode(c_, raw, level); }

  /// The output address a valid leaf descriptor gives `va` (Arm: its own
  /// address; RISC-V NAPOT: the run's base).
  u64 desc_pa(const Descriptor& d, unsigned level, u64 va) const {
    const u64 s = d.contiguous ? run_span(level) : span(level);
    return (d.pa & ~(s - 1)) | (va & (s - 1));
  }

  /// Whether the TLB may hold `t` at all: x86 caches every present
  /// translation; Arm and RISC-V (without hardware A/D) never cache one that
  /// takes an access-flag fault.
  bool cacheable(const Translation& t) const {
    return t.ok() && (c_.arch == Arch::X86_64 || t.accessed);
  }

  /// Whether a cached `old` may give `va` something `cur` does not: another
  /// frame, memory type or shareability, a right `cur` lacks, or a global
  /// entry where `cur` is not global. Rights added are harmless: the stale
  /// entry only faults, and the fault refetches (x86) or is spurious.
  bool harmful(const Translation& old, const Translation& cur, u64 va) const {
    if (!cacheable(old)) return false;
    if (!cur.ok()) return true;
    return pa_at(old, va) != pa_at(cur, va) || old.mem_index != cur.mem_index ||
           old.shareability != cur.shareability || (old.global && !cur.global) ||
           !rights_within(old, cur);
  }

  // ---- Memory -----------------------------------------------------------------

  bool writable_memory(u64 pa) {
    if (!mem_.touched(pa) && mem_.chunks() >= opt_.max_memory_chunks) {
      stop("memory bound exceeded: the trace writes more than " +
           std::to_string(opt_.max_memory_chunks) + " distinct 64 KiB chunks");
      return false;
    }
    return true;
  }

  Translation translate(u64 va) {
    spend();
    return ops_.translate(c_, mem_, tr_.root, va);
  }

  /// The current translations of [lo, hi], one region per leaf or hole.
  std::vector<Region> regions(u64 lo, u64 hi) {
    std::vector<Region> out;
    u64 va = lo;
    while (!stopped_) {
      const Translation t = translate(va);
      u64 size = 0;
      if (t.ok())
        size = t.leaf_size;
      else if (t.level >= 0)
        size = span(unsigned(t.level));
      u64 end = hi;
      if (size != 0) {
        const u64 e = (va & ~(size - 1)) + (size - 1);
        if (e >= va && e < hi) end = e;
      }
      out.push_back(Region{va, end, t});
      if (end >= hi) break;
      va = end + 1;
    }
    return out;
  }

  /// Calls fn(lo, hi, a, b) for every overlap of a region of `x` with one of
  /// `y`; both cover the same range in order.
  template <class Fn>
  static void overlaps(const std::vector<Region>& x, const std::vector<Region>& y, Fn&& fn) {
    size_t i = 0, j = 0;
    while (i < x.size() && j < y.size()) {
      const u64 lo = std::max(x[i].lo, y[j].lo);
      const u64 hi = std::min(x[i].hi, y[j].hi);
      if (lo <= hi && !fn(lo, hi, x[i].t, y[j].t)) return;
      if (x[i].hi < y[j].hi)
        ++i;
      else if (y[j].hi < x[i].hi)
        ++j;
      else {
        ++i;
        ++j;
      }
    }
  }

  static bool equivalent(const std::vector<Region>& before, const std::vector<Region>& after) {
    bool same = true;
    overlaps(before, after, [&](u64 lo, u64, const Translation& a, const Translation& b) {
      same = same_at(a, b, lo);
      return same;
    });
    return same;
  }

  // ---- Tables: where each one is linked -----------------------------------------

  bool is_table_page(u64 pa) const {
    const u64 p = pa & ~((u64{1} << page_shift_) - 1);
    return p == (tr_.root & ~((u64{1} << page_shift_) - 1)) || allocated_.contains(p) ||
           pos_.contains(p) || pos_.contains(pa);
  }

  void link(u64 table, u64 base, unsigned level) {
    if (stopped_) return;
    auto& list = pos_[table];
    for (Pos& p : list) {
      if (p.base == base && p.level == level) {
        ++p.count;
        return;
      }
    }
    list.push_back(Pos{base, level, 1});
    if (!defined_.contains(page(table))) {
      report("undefined-memory", base, int(level),
             "table at " + hex(table) +
                 " linked, but the trace never allocated, wrote or seeded that page");
      return;
    }
    if (cfg_.xen_pv && writable_frames_.contains(page(table)))
      report("xen-writable-table", base, int(level),
             "page " + hex(table) + " becomes a page table while a writable leaf maps it");
    if (level == 0) return;
    const u64 n = ops_.entries(c_, level);
    if (!spend(n)) return;
    for (u64 i = 0; i < n; ++i) {
      const Descriptor d = decode(mem_.read64(table + 8 * i), level);
      if (d.kind == DK::Table) link(d.pa, base + (i << ops_.entry_shift(c_, level)), level - 1);
    }
  }

  void unlink(u64 table, u64 base, unsigned level) {
    if (stopped_) return;
    auto it = pos_.find(table);
    if (it == pos_.end()) return;
    auto& list = it->second;
    bool gone = false;
    for (size_t k = 0; k < list.size(); ++k) {
      if (list[k].base == base && list[k].level == level) {
        if (--list[k].count == 0) {
          list.erase(list.begin() + long(k));
          gone = true;
        }
        break;
      }
    }
    if (list.empty()) pos_.erase(it);
    if (!gone || level == 0 || !defined_.contains(page(table))) return;
    const u64 n = ops_.entries(c_, level);
    if (!spend(n)) return;
    for (u64 i = 0; i < n; ++i) {
      const Descriptor d = decode(mem_.read64(table + 8 * i), level);
      if (d.kind == DK::Table) unlink(d.pa, base + (i << ops_.entry_shift(c_, level)), level - 1);
    }
  }

  /// Calls fn(lo, hi, descriptor, level) for each valid leaf under `table`
  /// (a table at `level` whose entry 0 maps `base`) that meets [lo, hi].
  template <class Fn>
  void leaves_under(u64 table, unsigned level, u64 base, u64 lo, u64 hi, Fn& fn) {
    const u64 s = span(level);
    const u64 n = ops_.entries(c_, level);
    u64 first = lo > base ? (lo - base) / s : 0;
    for (u64 i = first; i < n && !stopped_; ++i) {
      const u64 e_lo = base + i * s;
      if (e_lo > hi || e_lo < base) break;
      if (!spend()) return;
      const Descriptor d = decode(mem_.read64(table + 8 * i), level);
      if (d.kind == DK::Leaf)
        fn(e_lo, e_lo + (s - 1), d, level);
      else if (d.kind == DK::Table && level > 0)
        leaves_under(d.pa, level - 1, e_lo, std::max(lo, e_lo), std::min(hi, e_lo + (s - 1)), fn);
    }
  }

  /// Whether `target` is `table` or a table below it.
  bool reaches(u64 table, unsigned level, u64 target) {
    if (table == target) return true;
    if (level == 0 || stopped_) return false;
    const u64 n = ops_.entries(c_, level);
    if (!spend(n)) return false;
    for (u64 i = 0; i < n; ++i) {
      const Descriptor d = decode(mem_.read64(table + 8 * i), level);
      if (d.kind == DK::Table && reaches(d.pa, level - 1, target)) return true;
    }
    return false;
  }

  // ---- The TLB model ------------------------------------------------------------

  bool published(const Item& it) const { return it.seq <= published_upto_; }

  /// Whether an invalidation at align_down(first, 2^shift) + k * 2^shift <=
  /// last reaches an address of [lo, hi].
  static bool stride_hits(u64 first, u64 last, unsigned shift, u64 lo, u64 hi) {
    const u64 step = u64{1} << shift;
    const u64 start = first & ~(step - 1);
    if (hi < start) return false;
    u64 a = start;
    if (lo > start) {
      const u64 k = (lo - start + step - 1) >> shift;
      if (k > ((last - start) >> shift)) return false;
      a = start + (k << shift);
    }
    return a <= last && a <= hi;
  }

  void hit(Item& it) {
    if (!published(it)) {
      it.early = true;
      return;
    }
    it.invalidated = true;
    // x86 INVLPG / MOV CR3 and RISC-V SFENCE.VMA complete by themselves.
    if (c_.arch != Arch::AArch64) it.retired = true;
  }

  void sweep() {
    for (const Item& it : items_) {
      if (!it.retired) continue;
      auto at = items_at_slot_.find(it.slot);
      if (--at->second == 0) items_at_slot_.erase(at);
    }
    std::erase_if(items_, [](const Item& it) { return it.retired; });
  }

  void invalidate(const TraceEvent& e) {
    // SFENCE.VMA orders the preceding page-table stores before the walks after it.
    if (c_.arch == Arch::RiscV) published_upto_ = seq_;
    for (Item& it : items_) {
      if (it.type == Item::Type::Leaf) {
        // By address, x86 INVLPG and Arm TLBI VA(A)E1 reach global entries;
        // RISC-V SFENCE.VMA with rs2=asid does not.
        if (c_.arch == Arch::RiscV && it.global && !e.global) continue;
        if (stride_hits(e.a, e.b, e.stride_shift, it.hit_lo, it.hit_hi)) hit(it);
      } else if (c_.arch == Arch::X86_64) {
        // INVLPG invalidates every paging-structure-cache entry of the
        // current PCID, whatever its address (SDM 4.10.4.1).
        hit(it);
      } else if (c_.arch == Arch::RiscV) {
        // Only rs1=x0 reaches non-leaf PTEs; the sink issues it for `tables`.
        if (e.tables) hit(it);
      } else if (e.tables && stride_hits(e.a, e.b, e.stride_shift, it.lo, it.hi)) {
        hit(it);  // TLBI VAE1: every level of the walk for the address
      }
    }
    sweep();
  }

  void invalidate_all(const TraceEvent& e) {
    if (c_.arch == Arch::RiscV) published_upto_ = seq_;
    for (Item& it : items_) {
      if (it.type == Item::Type::Leaf && it.global && !e.global) continue;
      hit(it);
    }
    sweep();
  }

  void complete() {
    published_upto_ = seq_;  // DSB ISH orders the stores before it too
    for (Item& it : items_)
      if (it.invalidated) it.retired = true;
    sweep();
  }

  /// Whether a pending item may give some address of [lo, hi] a translation
  /// that differs from the current one; reports the first such address.
  bool stale(const Item& it, u64 lo, u64 hi, u64& where) {
    lo = std::max(lo, it.lo);
    hi = std::min(hi, it.hi);
    if (lo > hi) return false;
    if (it.type == Item::Type::Leaf) {
      if (!cacheable(it.t)) return false;
      for (const Region& r : regions(lo, hi)) {
        if (harmful(it.t, r.t, r.lo)) {
          where = r.lo;
          return true;
        }
      }
      return false;
    }
    // A cached pointer to a table lets the CPU walk the table as it is now.
    bool found = false;
    auto fn = [&](u64 l_lo, u64 l_hi, const Descriptor& d, unsigned level) {
      if (found || (c_.arch != Arch::X86_64 && !d.accessed)) return;
      const u64 a = std::max(l_lo, lo), b = std::min(l_hi, hi);
      if (a > b) return;
      for (const Region& r : regions(a, b)) {
        if (!r.t.ok() || pa_at(r.t, r.lo) != desc_pa(d, level, r.lo) ||
            r.t.mem_index != d.mem_index || r.t.shareability != d.shareability) {
          where = r.lo;
          found = true;
          return;
        }
      }
    };
    leaves_under(it.table, it.table_level, it.table_base, lo, hi, fn);
    return found;
  }

  // ---- Events ---------------------------------------------------------------------

  void step(const TraceEvent& e) {
    switch (e.kind) {
      case Kind::Mem:
        if (!writable_memory(e.a)) return;
        mem_.write64(e.a & ~u64{7}, e.b);
        defined_.insert(page(e.a));
        return;
      case Kind::Write: write(e); return;
      case Kind::Publish: published_upto_ = seq_; return;
      case Kind::Complete:
        if (c_.arch == Arch::AArch64) complete();
        published_upto_ = seq_;
        return;
      case Kind::Invalidate: invalidate(e); return;
      case Kind::InvalidateAll: invalidate_all(e); return;
      case Kind::Alloc: alloc(e.a); return;
      case Kind::Free: free(e.a); return;
      case Kind::Live: live_.emplace_back(e.a, e.b); return;
      case Kind::Sync:
        sync();
        check_runs();
        return;
      case Kind::Use: use(e); return;
    }
  }

  void alloc(u64 pa) {
    const u64 size = u64{1} << page_shift_;
    const u64 base = pa & ~(size - 1);
    if (mem_.touched(base)) {
      for (u64 off = 0; off < size; off += 8) mem_.write64(base + off, 0);
    }
    defined_.insert(page(pa));
    allocated_.insert(base);
    if (cfg_.xen_pv && writable_frames_.contains(page(pa)))
      report("xen-writable-table", 0, -1,
             "page " + hex(pa) + " becomes a page table while a writable leaf maps it");
  }

  void free(u64 pa) {
    if (pa == tr_.root) {
      report("table-freed-reachable", root_base_, int(top_),
             "the root table " + hex(pa) + " freed");
    } else if (auto it = pos_.find(pa); it != pos_.end()) {
      const Pos& p = it->second.front();
      report(
          "table-freed-reachable", p.base, int(p.level),
          "table " + hex(pa) + " freed while still linked (its entry 0 maps " + hex(p.base) + ")");
    } else {
      for (const Item& item : items_) {
        if (item.type != Item::Type::Walk || item.retired) continue;
        if (!reaches(item.table, item.table_level, pa)) continue;
        report(
            "table-freed-before-invalidation", item.slot_lo, int(item.level),
            "table " + hex(pa) + " freed while the walk caches may still point to " +
                (item.table == pa ? std::string("it") : "table " + hex(item.table) + " above it") +
                " (unlinked at line " + std::to_string(tr_.events[item.event].line) +
                "; no completed invalidation of the walk caches for " + hex(item.lo) + ".." +
                hex(item.hi) + " since)");
        break;
      }
    }
    allocated_.erase(pa & ~((u64{1} << page_shift_) - 1));
    defined_.erase(page(pa));
  }

  void sync() {
    for (Item& it : items_) {
      if (it.reported || it.retired) continue;
      u64 where = 0;
      if (!stale(it, it.lo, it.hi, where)) continue;
      it.reported = true;
      report("stale-translation", where, int(it.level),
             std::string(it.type == Item::Type::Walk ? "a cached pointer to table " + hex(it.table)
                                                     : "a cached translation") +
                 " from before the write at line " + std::to_string(tr_.events[it.event].line) +
                 " may still be used for " + hex(where) + ": " + why_pending(it));
    }
  }

  std::string why_pending(const Item& it) const {
    if (!published(it)) return "the write was never published";
    if (it.invalidated) return "its invalidation has not completed";
    if (it.early) return "the only invalidation reaching it came before the write was published";
    return std::string("no invalidation reaching it since") +
           (it.type == Item::Type::Walk && c_.arch != Arch::X86_64
                ? " (cached table pointers need one with `tables`)"
            : it.global && c_.arch == Arch::RiscV ? " (it is global: `global` needed)"
                                                  : "");
  }

  void use(const TraceEvent& e) {
    for (Item& it : items_) {
      if (it.retired || e.a < it.lo || e.a > it.hi) continue;
      bool bad = false;
      if (it.type == Item::Type::Leaf) {
        if (!cacheable(it.t) || it.t.check(e.access) != FaultKind::None) continue;
        const Translation cur = translate(e.a);
        bad = cur.check(e.access) != FaultKind::None || pa_at(cur, e.a) != pa_at(it.t, e.a) ||
              cur.mem_index != it.t.mem_index || cur.shareability != it.t.shareability;
      } else {
        u64 where = 0;
        bad = stale(it, e.a, e.a, where);
      }
      if (!bad) continue;
      report("stale-translation", e.a, int(it.level),
             "the access may use a translation cached before the write at line " +
                 std::to_string(tr_.events[it.event].line) + ": " + why_pending(it));
      return;
    }
  }

  /// Arm ARM D8.16.1: whether replacing `o` by `n` (both valid) needs
  /// break-before-make. `equivalent`: every address translates the same.
  bool needs_bbm(const Descriptor& o, const Descriptor& n, bool equivalent) const {
    const bool size_ok = cfg_.bbm2 && equivalent;  // FEAT_BBM level 2
    if (o.kind != n.kind) return !size_ok;
    if (o.kind == DK::Table) return o.pa != n.pa && !equivalent;
    if (o.contiguous != n.contiguous) return !size_ok;
    return o.pa != n.pa || o.mem_index != n.mem_index || o.shareability != n.shareability ||
           (!o.global && n.global);
  }

  void write(const TraceEvent& e) {
    const u64 slot = e.a + 8 * u64{e.index};
    if (e.a & 7) {
      report("trace-bad-entry", 0, int(e.level), "table address " + hex(e.a) + " is not aligned");
      return;
    }
    // The level the table is linked at decides how the entry reads.
    std::vector<Pos> ps;
    if (auto it = pos_.find(e.a); it != pos_.end()) ps = it->second;
    unsigned level = e.level;
    if (!ps.empty() && ps.front().level != level) {
      report("trace-bad-entry", 0, int(e.level),
             "write says level " + std::to_string(e.level) + " but table " + hex(e.a) +
                 " is linked at level " + std::to_string(ps.front().level));
      level = ps.front().level;
    }
    if (level >= levels_ || e.index >= ops_.entries(c_, level)) {
      report("trace-bad-entry", 0, int(level),
             "entry " + std::to_string(e.index) + " at level " + std::to_string(level) +
                 " is outside the format's tables");
      return;
    }
    if (!writable_memory(slot)) return;
    const u64 old_raw = mem_.read64(slot);
    const u64 new_raw = e.b;
    if (e.has_old && e.old != old_raw && !ps.empty())
      report("trace-mismatch", entry_va(ps.front().base, level, e.index), int(level),
             "the writer saw " + hex(e.old) + " but the trace left " + hex(old_raw) + " there");
    const Descriptor od = decode(old_raw, level);
    const Descriptor nd = decode(new_raw, level);
    if (cfg_.xen_pv && is_table_page(e.a)) xen_write(e, level, old_raw, new_raw, od, nd);

    struct At {
      u64 lo, hi;
      std::vector<Region> before, after;
    };
    std::vector<At> at;
    for (const Pos& p : ps) {
      const u64 lo = entry_va(p.base, level, e.index);
      at.push_back(At{lo, lo + (span(level) - 1), {}, {}});
      if (valid(od) && old_raw != new_raw) at.back().before = regions(at.back().lo, at.back().hi);
    }
    mem_.write64(slot, new_raw);
    defined_.insert(page(e.a));
    ++seq_;
    if (c_.arch == Arch::X86_64) published_upto_ = seq_;  // stores are seen in order
    if (old_raw == new_raw || stopped_) return;

    for (size_t k = 0; k < ps.size() && !stopped_; ++k) {
      At& a = at[k];
      if (valid(od) || valid(nd)) a.after = regions(a.lo, a.hi);
      if (valid(od)) {
        check_live(a.before, a.after, level);
        add_items(slot, a.lo, a.hi, level, od, a.before);
      }
      if (valid(od) && valid(nd)) {
        if (c_.arch == Arch::X86_64 && od.kind != nd.kind) check_size_change(a, level);
        if (c_.arch == Arch::AArch64 && needs_bbm(od, nd, equivalent(a.before, a.after)))
          report("arm-bbm", a.lo, int(level),
                 std::string("valid ") + (od.kind == DK::Table ? "table" : "leaf") +
                     " entry replaced by a valid " + (nd.kind == DK::Table ? "table" : "leaf") +
                     " entry that differs in " + bbm_reason(od, nd) +
                     " without break-before-make (write invalid, DSB, TLBI, DSB, ISB first)");
      }
      if (!valid(od) && valid(nd) && c_.arch == Arch::AArch64) check_bbm_order(slot, a, level, nd);
      if (od.kind == DK::Table) unlink(od.pa, a.lo, level - 1);
      if (nd.kind == DK::Table && level > 0) link(nd.pa, a.lo, level - 1);
      if (ops_.run_entries(c_, level) > 1 && (od.contiguous || nd.contiguous)) {
        const u64 n = ops_.run_entries(c_, level);
        runs_.push_back(
            Run{e.a, unsigned(e.index - e.index % n), level, a.lo & ~(run_span(level) - 1)});
      }
    }
  }

  static const char* bbm_reason(const Descriptor& o, const Descriptor& n) {
    if (o.kind != n.kind) return "size (block/table)";
    if (o.kind == DK::Table) return "next-level table";
    if (o.contiguous != n.contiguous) return "the Contiguous bit";
    if (o.pa != n.pa) return "output address";
    if (o.mem_index != n.mem_index) return "memory type (AttrIndx)";
    if (o.shareability != n.shareability) return "shareability";
    return "nG (1 to 0)";
  }

  /// The translations the entry gave before the write become pending: the
  /// leaves it reached, and the table it pointed to.
  void add_items(u64 slot, u64 lo, u64 hi, unsigned level, const Descriptor& od,
                 const std::vector<Region>& before) {
    Item base;
    base.slot = slot;
    base.slot_lo = lo;
    base.old_desc = od;
    base.level = level;
    base.seq = seq_;
    base.event = ev_;
    for (const Region& r : before) {
      if (!r.t.ok()) continue;
      Item it = base;
      it.type = Item::Type::Leaf;
      it.lo = r.lo;
      it.hi = r.hi;
      it.t = r.t;
      it.global = r.t.global;
      it.hit_lo = it.lo;
      it.hit_hi = it.hi;
      // A TLB entry of a contiguous run may serve every address of the run;
      // one of the entry alone is dropped only by an invalidation reaching
      // the entry's own addresses.
      if (od.kind == DK::Leaf && od.contiguous) {
        const u64 rs = run_span(level);
        it.lo = lo & ~(rs - 1);
        it.hi = it.lo + (rs - 1);
      }
      items_.push_back(it);
      ++items_at_slot_[slot];
    }
    if (od.kind == DK::Table && level > 0) {
      Item it = base;
      it.type = Item::Type::Walk;
      it.lo = lo;
      it.hi = hi;
      it.table = od.pa;
      it.table_level = level - 1;
      it.table_base = lo;
      it.hit_lo = lo;
      it.hit_hi = hi;
      items_.push_back(it);
      ++items_at_slot_[slot];
    }
    spend(before.size());
  }

  void check_live(const std::vector<Region>& before, const std::vector<Region>& after,
                  unsigned level) {
    for (const auto& range : live_) {
      const u64 l_lo = range.first, l_hi = range.second;
      bool done = false;
      overlaps(before, after, [&](u64 a, u64 b, const Translation& x, const Translation& y) {
        if (!x.ok() || y.ok() || b < l_lo || a > l_hi) return true;
        const u64 va = std::max(a, l_lo);
        report("live-range", va, int(level),
               "the write makes " + hex(va) + " of the live range " + hex(l_lo) + ".." + hex(l_hi) +
                   " invalid");
        done = true;
        return false;
      });
      if (done) return;
    }
  }

  template <class At>
  void check_size_change(const At& a, unsigned level) {
    overlaps(a.before, a.after, [&](u64 lo, u64, const Translation& x, const Translation& y) {
      if (!x.ok() || !y.ok() || x.leaf_size == y.leaf_size || same_at(x, y, lo)) return true;
      std::string what = pa_at(x, lo) != pa_at(y, lo)
                             ? "frame " + hex(pa_at(x, lo)) + " -> " + hex(pa_at(y, lo))
                         : !same_rights(x, y)         ? std::string("access rights")
                         : x.mem_index != y.mem_index ? std::string("memory type (PAT index)")
                                                      : std::string("global bit");
      report("x86-size-and-attrs", lo, int(level),
             "page size " + hex(x.leaf_size) + " -> " + hex(y.leaf_size) + " together with " +
                 what + " for " + hex(lo) +
                 " in one write (split into an equivalent table first, invalidate, then change)");
      return false;
    });
  }

  /// An invalid entry made valid again: if it was broken from a value that
  /// needs break-before-make, the break must have been published,
  /// invalidated and completed by now.
  template <class At>
  void check_bbm_order(u64 slot, const At& a, unsigned level, const Descriptor& nd) {
    // Most entries made valid were never broken: no scan of every item.
    if (!items_at_slot_.contains(slot)) return;
    std::vector<Region> old_regions;
    const Item* first = nullptr;
    for (const Item& it : items_) {
      if (it.retired || it.slot != slot || it.slot_lo != a.lo) continue;
      if (!first || it.seq > first->seq) first = &it;
    }
    if (!first) return;
    // The translations the broken entry gave, as a partition of [lo, hi].
    u64 cur = a.lo;
    for (const Item& it : items_) {
      if (it.retired || it.seq != first->seq || it.slot != slot || it.type != Item::Type::Leaf)
        continue;
      const u64 lo = std::max(it.lo, a.lo), hi = std::min(it.hi, a.hi);
      if (lo > hi || lo < cur) continue;
      if (lo > cur) old_regions.push_back(Region{cur, lo - 1, Translation{FaultKind::NotPresent}});
      old_regions.push_back(Region{lo, hi, it.t});
      cur = hi + 1;
      if (hi == a.hi) break;
    }
    if (cur <= a.hi && (old_regions.empty() || old_regions.back().hi != a.hi))
      old_regions.push_back(Region{cur, a.hi, Translation{FaultKind::NotPresent}});
    if (!needs_bbm(first->old_desc, nd, equivalent(old_regions, a.after))) return;
    const Item& it = *first;
    std::string why;
    if (!published(it))
      why = "the invalid entry was never published (DSB) and invalidated";
    else if (it.invalidated)
      why = "the invalidation had not completed (DSB ISH; ISB)";
    else if (it.early)
      why = "the invalidation came before the invalid entry was published (DSB ISHST)";
    else
      why = "no invalidation (TLBI) reached the old translation";
    report("arm-bbm", a.lo, int(level),
           "entry made valid again after the break at line " +
               std::to_string(tr_.events[it.event].line) + " that differs in " +
               bbm_reason(it.old_desc, nd) + ", but " + why);
  }

  void xen_write(const TraceEvent& e, unsigned level, u64 old_raw, u64 new_raw,
                 const Descriptor& od, const Descriptor& nd) {
    (void)e;
    constexpr u64 kAccessedDirty = (u64{1} << 5) | (u64{1} << 6);
    if (nd.kind == DK::Leaf && level > 0)
      report("xen-large-page", 0, int(level),
             "a " + hex(span(level)) + "-byte leaf: Xen PV guests may map 4 KiB pages only");
    if (nd.kind == DK::Leaf && nd.write) {
      for (u64 p = nd.pa; p < nd.pa + span(level); p += u64{1} << page_shift_) {
        if (!spend()) return;
        if (is_table_page(p)) {
          report("xen-writable-table", 0, int(level),
                 "a writable leaf maps page-table page " + hex(p) + " (map it read-only)");
          break;
        }
      }
    }
    if (valid(od) && valid(nd) && ((old_raw ^ new_raw) & ~kAccessedDirty) != 0)
      report("xen-overwrite", 0, int(level),
             "valid entry " + hex(old_raw) + " overwritten by " + hex(new_raw) +
                 " (make it invalid first)");
    if (level == 0) {
      if (od.kind == DK::Leaf && od.write) {
        auto it = writable_frames_.find(page(od.pa));
        if (it != writable_frames_.end() && --it->second == 0) writable_frames_.erase(it);
      }
      if (nd.kind == DK::Leaf && nd.write) ++writable_frames_[page(nd.pa)];
    }
  }

  /// Each run of the contiguous hint written since the last check must agree:
  /// every entry a leaf with the hint, consecutive output addresses from an
  /// aligned start, the same attributes (A/D may differ).
  void check_runs() {
    const bool arm = c_.arch == Arch::AArch64;
    std::sort(runs_.begin(), runs_.end());
    runs_.erase(std::unique(runs_.begin(), runs_.end()), runs_.end());
    for (const Run& r : runs_) {
      if (!spend(64)) return;
      const unsigned n = ops_.run_entries(c_, r.level);
      const u64 s = span(r.level);
      std::vector<Descriptor> d(n);
      bool any = false;
      for (unsigned k = 0; k < n; ++k) {
        d[k] = decode(mem_.read64(r.table + 8 * (u64{r.first} + k)), r.level);
        any = any || (d[k].kind == DK::Leaf && d[k].contiguous);
      }
      if (!any) continue;
      auto own = [&](unsigned k) { return arm ? d[k].pa : (d[k].pa & ~(s * n - 1)) + k * s; };
      std::string why;
      for (unsigned k = 0; k < n && why.empty(); ++k) {
        if (d[k].kind != DK::Leaf || !d[k].contiguous)
          why = "entry " + std::to_string(k) + " of the run is not a leaf with the hint";
        else if ((own(0) & (s * n - 1)) != 0)
          why = "its output address " + hex(own(0)) + " is not aligned to the run";
        else if (own(k) != own(0) + k * s)
          why = "entry " + std::to_string(k) + " maps " + hex(own(k)) + ", not " +
                hex(own(0) + k * s);
        else if (d[k].read != d[0].read || d[k].write != d[0].write || d[k].user != d[0].user ||
                 d[k].exec_priv != d[0].exec_priv || d[k].exec_user != d[0].exec_user ||
                 d[k].global != d[0].global || d[k].mem_index != d[0].mem_index ||
                 d[k].shareability != d[0].shareability)
          why = "entry " + std::to_string(k) + " has other attributes than entry 0";
      }
      if (why.empty()) continue;
      const u64 va = r.va & ~(s * n - 1);
      report(arm ? "arm-contiguous" : "riscv-napot", va, int(r.level),
             "the run of " + std::to_string(n) + " entries at " + hex(va) + " disagrees: " + why);
    }
    runs_.clear();
  }

  struct Run {
    u64 table;
    unsigned first;
    unsigned level;
    u64 va;
    bool operator<(const Run& o) const {
      return table != o.table ? table < o.table : first != o.first ? first < o.first : va < o.va;
    }
    bool operator==(const Run& o) const {
      return table == o.table && first == o.first && va == o.va;
    }
  };

  const Trace& tr_;
  TraceConfig cfg_;
  MmuConfig c_;
  const ArchOps& ops_;
  CheckOptions opt_;
  CheckResult res_;
  PhysMemory mem_;
  unsigned levels_ = 0, top_ = 0, page_shift_ = 12, va_bits_ = 48;
  u64 root_base_ = 0;
  std::size_t ev_ = 0;
  bool stopped_ = false;
  u64 work_ = 0;
  u64 seq_ = 0, published_upto_ = 0;
  std::unordered_map<u64, std::vector<Pos>> pos_;
  std::unordered_set<u64> allocated_;
  std::unordered_set<u64> defined_;
  std::unordered_map<u64, unsigned> writable_frames_;
  std::vector<std::pair<u64, u64>> live_;
  std::vector<Item> items_;
  std::unordered_map<u64, std::uint32_t> items_at_slot_;  // items_ per entry address
  std::vector<Run> runs_;
};

}  // namespace

std::string describe(const Violation& v) {
  std::string s = "line " + std::to_string(v.line) + " (event " + std::to_string(v.event) +
                  "): " + v.rule + " at va " + hex(v.va);
  if (v.level >= 0) s += " level " + std::to_string(v.level);
  return s + ": " + v.message + " [" + v.section + "]";
}

const std::vector<RuleInfo>& checker_rules() { return kRules; }

bool CheckResult::has(const std::string& rule) const {
  for (const Violation& v : violations)
    if (v.rule == rule) return true;
  return false;
}

std::vector<std::string> CheckResult::rules() const {
  std::vector<std::string> out;
  for (const Violation& v : violations)
    if (std::find(out.begin(), out.end(), v.rule) == out.end()) out.push_back(v.rule);
  return out;
}

CheckResult check(const Trace& trace, const ArchOps& ops, const CheckOptions& options) {
  TraceConfig cfg;
  std::string error;
  if (!trace_config(trace.format, trace.features, cfg, error)) {
    CheckResult r;
    r.error = error;
    return r;
  }
  return Checker(trace, cfg, ops, options).run();
}

CheckResult check(const Trace& trace, const CheckOptions& options) {
  TraceConfig cfg;
  std::string error;
  if (!trace_config(trace.format, trace.features, cfg, error)) {
    CheckResult r;
    r.error = error;
    return r;
  }
  return Checker(trace, cfg, ops_for(cfg.mmu.arch), options).run();
}

}  // namespace ptkit::sim
