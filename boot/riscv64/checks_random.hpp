// The randomized phase: a few thousand random map, unmap and protect
// operations in a 32 MiB test window (pages and megapages, NAPOT runs where
// the hart has Svnapot, some global, Replace over existing translations with
// splits allowed, merges sometimes), each
// followed by in-guest accesses of sampled addresses checked against a
// reference kept in the kernel: one entry per page, written by this file
// alone, with no ptkit code behind it. Every frame the window can reach is
// tagged with its own physical address, so a read tells which frame a
// translation reached; a write probe stores the tag itself back, so it tells
// whether the page is writable without disturbing the tags.
#pragma once

#include "check.hpp"
#include "kernel_space.hpp"
#include "scratch.hpp"
#include "table_peek.hpp"
#include "trap.hpp"

namespace kernel {

/// Frames the window maps: tagged like the scratch area, far above it.
inline constexpr u64 kRandomFrames = 0x8900'0000;
inline constexpr u64 kRandomFramesSize = 32 * MiB;

/// xorshift64* (Vigna 2016): small, and good enough to pick operations.
class Rng {
 public:
  explicit Rng(u64 seed) : s_(seed != 0 ? seed : 1) {}
  u64 next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545'f491'4f6c'dd1d;
  }
  u64 below(u64 n) { return next() % n; }
  bool chance(unsigned percent) { return below(100) < percent; }

 private:
  u64 s_;
};

class RandomChecks {
 public:
  static constexpr unsigned kOps = 3000;
  static constexpr unsigned kSamplesPerOp = 12;

  /// The window straddles the 1 GiB boundary at test_base + 2 GiB, so
  /// operations cross from one level-1 table into the next.
  RandomChecks(Space& space, const VirtualLayout& v, Pool& pool, TlbState& tlb, u64 seed)
      : s_(space),
        pool_(pool),
        tlb_(tlb),
        phys_(v.direct_map),
        window_(v.test_base + 2 * GiB - kWindowPages * 4 * KiB / 2),
        rng_(seed),
        seed_(seed) {}

  void run() {
    for (u64 page = kRandomFrames; page < kRandomFrames + kRandomFramesSize; page += 4 * KiB)
      phys_.retag(page);
    const u64 tables_before = pool_.pages_in_use();
    const TlbCounts before = tlb_.counts;
    Check c("random-ops");
    for (unsigned op = 0; op < kOps && !c.failed(); ++op) {
      const Range r = pick_range();
      const unsigned kind = unsigned(rng_.below(10));
      bool ok = true;
      if (kind < 5)
        ok = do_map(c, r);
      else if (kind < 7)
        ok = do_unmap(c, r);
      else
        ok = do_protect(c, r);
      if (!ok) {
        report(op);
        return;
      }
      for (unsigned k = 0; k < kSamplesPerOp; ++k) {
        // Half inside the range just changed, half anywhere in the window.
        const u64 page = k % 2 == 0 ? r.first + rng_.below(r.pages) : rng_.below(kWindowPages);
        if (!sample(c, page)) {
          report(op);
          return;
        }
      }
      ++ops_done_;
    }
    sweep(c);
    c.expect_ok(s_.unmap(VirtAddr(window_), kWindowPages * 4 * KiB), "unmap the window");
    c.expect(pool_.pages_in_use() == tables_before, "every table the window took came back",
             pool_.pages_in_use(), tables_before);
    serial::write("info random seed ");
    serial::hex(seed_);
    serial::write(": ");
    serial::dec(ops_done_);
    serial::write(" ops (");
    serial::dec(maps_);
    serial::write(" map, ");
    serial::dec(unmaps_);
    serial::write(" unmap, ");
    serial::dec(protects_);
    serial::write(" protect), ");
    serial::dec(samples_);
    serial::write(" sampled accesses (");
    serial::dec(napot_samples_);
    serial::write(" through NAPOT runs), splits ");
    serial::dec(splits_);
    serial::write(", merges ");
    serial::dec(merges_);
    serial::write(", megapages mapped ");
    serial::dec(megapages_);
    serial::write(", sfence.vma by address ");
    serial::dec(tlb_.counts.by_address() - before.by_address());
    serial::write(", whole ");
    serial::dec(tlb_.counts.whole() - before.whole());
    serial::write("\n");
  }

 private:
  static constexpr u64 kWindowPages = 32 * MiB / (4 * KiB);
  static constexpr u64 kFramePages = kRandomFramesSize / (4 * KiB);
  static constexpr u64 kPagesPer2M = 512;

  struct RefPage {
    bool mapped = false;
    bool writable = false;
    ptkit::u32 frame = 0;  // page index into kRandomFrames
  };
  struct Range {
    u64 first = 0;  // page index into the window
    u64 pages = 1;
  };

  [[nodiscard]] u64 va_of(u64 page) const { return window_ + page * 4 * KiB; }
  static u64 pa_of(u64 frame) { return kRandomFrames + frame * 4 * KiB; }

  /// Mostly a few pages, sometimes up to 64 (a full flush), sometimes one
  /// or two whole 2 MiB blocks (megapages, splits and merges).
  Range pick_range() {
    Range r;
    const u64 roll = rng_.below(100);
    if (roll < 20) {
      r.pages = kPagesPer2M * (1 + rng_.below(2));
      r.first = kPagesPer2M * rng_.below(kWindowPages / kPagesPer2M - 1);
    } else {
      r.pages = roll < 30 ? 1 + rng_.below(64) : 1 + rng_.below(8);
      r.first = rng_.below(kWindowPages - r.pages);
    }
    return r;
  }

  bool do_map(Check& c, const Range& r) {
    // A 2M-aligned range gets a 2M-aligned frame run, so megapages fit.
    const bool block = r.pages % kPagesPer2M == 0 && r.first % kPagesPer2M == 0;
    const u64 frame = block ? kPagesPer2M * rng_.below((kFramePages - r.pages) / kPagesPer2M + 1)
                            : rng_.below(kFramePages - r.pages + 1);
    const bool writable = rng_.chance(60);
    ptkit::MapOptions o;
    o.existing = ptkit::OnExisting::Replace;
    o.allow_split = true;
    o.merge = rng_.chance(30);
    // Global translations take the other fence form (sfence.vma va, x0).
    const Attrs attrs{writable ? ptkit::RW : Perm::R, MemType::WriteBack, rng_.chance(20)};
    auto done =
        s_.map(VirtAddr(va_of(r.first)), PhysAddr(pa_of(frame)), r.pages * 4 * KiB, attrs, o);
    if (!c.expect_ok(done, "map")) return false;
    count(done->stats);
    ++maps_;
    for (u64 k = 0; k < r.pages; ++k)
      ref_[r.first + k] = RefPage{true, writable, ptkit::u32(frame + k)};
    if (block) {
      auto q = s_.query(VirtAddr(va_of(r.first)));
      if (q.ok() && q->size == 2 * MiB) ++megapages_;
    }
    return true;
  }

  bool do_unmap(Check& c, const Range& r) {
    ptkit::UnmapOptions o;
    o.allow_split = true;
    auto done = s_.unmap(VirtAddr(va_of(r.first)), r.pages * 4 * KiB, o);
    if (!c.expect_ok(done, "unmap")) return false;
    count(done->stats);
    ++unmaps_;
    for (u64 k = 0; k < r.pages; ++k) ref_[r.first + k] = RefPage{};
    return true;
  }

  bool do_protect(Check& c, const Range& r) {
    const bool writable = rng_.chance(50);
    ptkit::ProtectOptions o;
    o.holes = ptkit::OnHole::Skip;
    o.allow_split = true;
    o.merge = rng_.chance(30);
    ptkit::AttrChange change =
        writable ? ptkit::AttrChange{Perm::W, Perm::None} : ptkit::AttrChange{Perm::None, Perm::W};
    if (rng_.chance(20)) {
      change.change_global = true;
      change.global = rng_.chance(50);
    }
    auto done = s_.protect(VirtAddr(va_of(r.first)), r.pages * 4 * KiB, change, o);
    if (!c.expect_ok(done, "protect")) return false;
    count(done->stats);
    ++protects_;
    for (u64 k = 0; k < r.pages; ++k)
      if (ref_[r.first + k].mapped) ref_[r.first + k].writable = writable;
    return true;
  }

  void count(const ptkit::OpStats& st) {
    splits_ += st.splits;
    merges_ += st.merges;
  }

  /// One page through the MMU: its tag (or a load fault), then a write of
  /// the tag itself (or a store fault), and ptkit's query, against the
  /// reference.
  bool sample(Check& c, u64 page) {
    ++samples_;
    const RefPage& want = ref_[page];
    const u64 off = kTagOffsets[page % 2];
    const u64 va = va_of(page) + off;
    const trap::Probe r = trap::read(va);
    if (!want.mapped) {
      return c.expect(r.page_fault(va, trap::kLoadPageFault), "unmapped page faults", va,
                      r.faulted ? r.fault.scause : r.value) &&
             c.expect(!s_.query(VirtAddr(va)).ok(), "query: not mapped", va);
    }
    const u64 pa = pa_of(want.frame) + off;
    if (!c.expect(!r.faulted && r.value == tag_of(pa), "mapped page reads its frame", va,
                  r.faulted ? r.fault.scause : r.value))
      return false;
    const trap::Probe w = trap::write(va, tag_of(pa));
    if (want.writable) {
      if (!c.expect(!w.faulted, "writable page takes a write", va, w.fault.scause)) return false;
    } else if (!c.expect(w.page_fault(va, trap::kStorePageFault), "read-only page faults", va,
                         w.faulted ? w.fault.scause : 0)) {
      return false;
    }
    if (leaf_entry(s_, va).contiguous) ++napot_samples_;
    auto q = s_.query(VirtAddr(va));
    return c.expect(q.ok() && q->pa.value() + (va - q->va.value()) == pa &&
                        has(q->attrs.perm, Perm::W) == want.writable,
                    "query agrees", va, q.ok() ? q->pa.value() : 0);
  }

  /// Every page of the window once, at the end.
  void sweep(Check& c) {
    for (u64 page = 0; page < kWindowPages && !c.failed(); ++page) sample(c, page);
  }

  void report(unsigned op) const {
    serial::write("info random failed at op ");
    serial::dec(op);
    serial::write(", seed ");
    serial::hex(seed_);
    serial::write("\n");
  }

  Space& s_;
  Pool& pool_;
  TlbState& tlb_;
  PhysWindow phys_;
  u64 window_;
  Rng rng_;
  u64 seed_;
  RefPage ref_[kWindowPages]{};
  u64 ops_done_ = 0, maps_ = 0, unmaps_ = 0, protects_ = 0, samples_ = 0;
  u64 splits_ = 0, merges_ = 0, megapages_ = 0, napot_samples_ = 0;
};

}  // namespace kernel
