// The randomized phase of the Xen PV guest: random map/unmap/protect
// operations on the live address space, each followed by reads, writes and
// executes through the CPU's own translation, compared with a reference kept
// beside the tables (../common/reference_map.hpp). One named check,
// `random-ops`.
//
// Not boot/common/random_checks.hpp: that phase requires splits and merges
// of superpages, which a PV guest cannot have. Here every leaf is a 4K PTE,
// so the operations are about what Xen PV makes hard instead: every change
// of a valid entry goes through invalid first (PvFormat::needs_break), whole
// L1 tables are filled (a 2M run of pages) and freed again (unmapping it),
// and every request goes through mmu_update, validated by Xen. Addresses in
// the changed range are touched before the operation and again after it, so
// the TLB holds the old translation: a missing invalidation shows as an
// access that should have faulted or read another page.
//
// Faults are classified by the page-fault error code (P, W, I/D: SDM vol. 3A
// §4.7) and must be at exactly the probed address (CR2 from the shared info
// page, g_cr2).
#pragma once

#include "check.hpp"
#include "kernel_space.hpp"
#include "reference_map.hpp"
#include "rng.hpp"

extern "C" volatile ptkit::u64 fault_resume, fault_error, fault_count;

namespace kernel {

class RandomPhase {
  using u64 = ptkit::u64;
  using Perm = ptkit::Perm;

 public:
  struct Config {
    u64 seed = 1;
    unsigned operations = 1500;
    u64 window = 0;      // kBlocks blocks of 2 MiB, unmapped, aligned to 1 GiB
    u64 phys = 0;        // tagged pseudo-physical memory
    u64 phys_pages = 0;  // at least a block's worth
  };
  static constexpr unsigned kBlocks = 4;
  static constexpr u64 kBlock = u64{2} << 20;
  /// Offset in each page of the word whose low half is a `ret`.
  static constexpr u64 kExecOffset = 0xF00;
  static constexpr u64 kTagStride = 64;

  RandomPhase(Space& space, const Config& config) : s_(space), cfg_(config), rng_(config.seed) {}

  static u64 tag_of(u64 pa) {
    const u64 tag = (pa * 0x9E37'79B9'7F4A'7C15) ^ 0x7870'7674'6167'0000;
    if ((pa & 0xFFF) == kExecOffset) return (tag & ~u64{0xFFFF'FFFF}) | 0xC3;  // ret
    return tag;
  }

  void run() {
    Check c("random-ops");
    serial::write("info random seed ");
    serial::hex(cfg_.seed);
    serial::write(", ");
    serial::dec(cfg_.operations);
    serial::write(" operations\n");
    for (u64 pa = cfg_.phys; pa < cfg_.phys + cfg_.phys_pages * kPage; pa += kTagStride)
      *word(pa) = tag_of(pa);
    ref_.clear();
    for (op_ = 0; op_ < cfg_.operations && !c.failed(); ++op_) {
      if (!ref_.has_room()) start_over(c);
      one_operation(c);
    }
    if (!c.failed()) start_over(c);
    c.expect(!s_.writer().failed(), "every mmu_update accepted",
             static_cast<u64>(-s_.writer().failure().rc));
    serial::write("info random ops ");
    serial::dec(op_);
    serial::write(", samples ");
    serial::dec(samples_);
    serial::write(", faults ");
    serial::dec(faults_[0]);
    serial::write(" unmapped / ");
    serial::dec(faults_[1]);
    serial::write(" write / ");
    serial::dec(faults_[2]);
    serial::write(" exec, tables +");
    serial::dec(stats_.tables_allocated);
    serial::write(" -");
    serial::dec(stats_.tables_freed);
    serial::write(", invalidations ");
    serial::dec(stats_.invalidations);
    serial::write(", refused as predicted ");
    serial::dec(refused_);
    serial::write("\n");
    if (c.failed()) return;
    c.expect(stats_.tables_freed != 0, "coverage: freed tables");
    c.expect(faults_[0] != 0 && faults_[1] != 0 && faults_[2] != 0, "coverage: every kind of fault",
             faults_[1], faults_[2]);
    c.expect(refused_ != 0, "coverage: a map refused over an existing mapping");
    c.expect(stats_.tables_allocated == stats_.tables_freed, "tables allocated and freed balance",
             stats_.tables_allocated, stats_.tables_freed);
  }

 private:
  enum class Kind : ptkit::u8 { MapPages, MapBlock, Unmap, Protect };
  struct Op {
    Kind kind = Kind::MapPages;
    u64 va = 0;
    u64 size = 0;
    u64 pa = 0;
    ptkit::Attrs attrs{};
    ptkit::AttrChange change{};
    bool replace = true;
  };

  [[nodiscard]] volatile u64* word(u64 pa) const {
    return reinterpret_cast<volatile u64*>(kDirectBase + pa);  // NOLINT: the direct map
  }

  u64 page_address() { return cfg_.window + rng_.below(kBlocks * kBlock / kPage) * kPage; }
  u64 phys_for(u64 size) {
    return cfg_.phys + rng_.below(cfg_.phys_pages - size / kPage + 1) * kPage;
  }
  ptkit::Attrs random_attrs() {
    ptkit::Attrs a;
    a.perm = Perm::R;
    if (rng_.chance(60)) a.perm = a.perm | Perm::W;
    if (rng_.chance(30)) a.perm = a.perm | Perm::X;
    return a;
  }
  void random_range(Op& op) {
    if (rng_.chance(80)) {
      op.size = (1 + rng_.below(16)) * kPage;
      op.va = page_address();
      if (op.va + op.size > cfg_.window + kBlocks * kBlock) op.va -= op.size;
    } else {
      op.size = kBlock;
      op.va = cfg_.window + rng_.below(kBlocks) * kBlock;
    }
  }
  Op random_op() {
    Op op;
    const u64 r = rng_.below(100);
    op.replace = rng_.chance(75);
    op.attrs = random_attrs();
    if (r < 35) {
      op.kind = Kind::MapPages;
      op.size = (1 + rng_.below(8)) * kPage;
      op.va = page_address();
      if (op.va + op.size > cfg_.window + kBlocks * kBlock) op.va -= op.size;
      op.pa = phys_for(op.size);
    } else if (r < 45) {
      op.kind = Kind::MapBlock;  // a whole L1's worth of PTEs
      op.size = kBlock;
      op.va = cfg_.window + rng_.below(kBlocks) * kBlock;
      op.pa = phys_for(op.size);
    } else if (r < 70) {
      op.kind = Kind::Unmap;
      random_range(op);
    } else {
      op.kind = Kind::Protect;
      random_range(op);
      for (Perm p : {Perm::W, Perm::X}) {
        const u64 k = rng_.below(3);
        if (k == 0) op.change.set = op.change.set | p;
        if (k == 1) op.change.clear = op.change.clear | p;
      }
    }
    return op;
  }

  void one_operation(Check& c) {
    const Op op = random_op();
    u64 at[3];
    for (u64& a : at) {
      a = op.va + ptkit::align_down(rng_.below(op.size), kTagStride);
      if (!check_address(c, a)) return describe(op);
    }
    forget_code(op.va, op.size);
    if (!apply(c, op)) return describe(op);
    for (u64 a : at)
      if (!check_address(c, a)) return describe(op);
    for (unsigned k = 0; k < 4; ++k)
      if (!check_address(c, sample())) return describe(op);
  }

  bool apply(Check& c, const Op& op) {
    const ptkit::VirtAddr va(op.va);
    switch (op.kind) {
      case Kind::MapPages:
      case Kind::MapBlock: {
        ptkit::MapOptions o;
        o.leaf_sizes = kPage;
        o.existing = op.replace ? ptkit::OnExisting::Replace : ptkit::OnExisting::Error;
        const bool refused = !op.replace && ref_.any_in(op.va, op.size);
        auto done = s_.map(va, ptkit::PhysAddr(op.pa), op.size, op.attrs, o);
        if (refused) {
          ++refused_;
          return c.expect(!done.ok() && done.error() == ptkit::Error::AlreadyMapped,
                          "map over a mapping refused (existing = error)", op.va);
        }
        if (!c.expect_ok(done, "map")) return false;
        add(done->stats);
        return ref_.map(op.va, op.size, op.pa, op.attrs);
      }
      case Kind::Unmap: {
        auto done = s_.unmap(va, op.size);
        if (!c.expect_ok(done, "unmap")) return false;
        add(done->stats);
        return ref_.unmap(op.va, op.size);
      }
      case Kind::Protect: {
        ptkit::ProtectOptions o;
        o.holes = ptkit::OnHole::Skip;
        auto done = s_.protect(va, op.size, op.change, o);
        if (!c.expect_ok(done, "protect")) return false;
        add(done->stats);
        return ref_.protect(op.va, op.size, op.change);
      }
    }
    return false;
  }

  void start_over(Check& c) {
    auto done = s_.unmap(ptkit::VirtAddr(cfg_.window), kBlocks * kBlock);
    if (c.expect_ok(done, "unmap the window")) add(done->stats);
    ref_.clear();
  }

  /// Rewrites (same value) the `ret` word of every tagged page the range
  /// maps now: QEMU's TCG finds translated code by virtual address without
  /// the TLB; a store to the page discards it, so the next execute goes
  /// through the TLB, where ptkit's invalidation (or its absence) shows.
  void forget_code(u64 va, u64 size) {
    ref_.for_each_in(va, size, [&](const RefInterval& r) {
      const u64 lo = r.va > va ? r.va : va;
      const u64 hi = r.end() < va + size ? r.end() : va + size;
      for (u64 pa = r.pa_of(lo); pa < r.pa_of(hi); pa += kPage)
        *word(pa + kExecOffset) = tag_of(pa + kExecOffset);
    });
  }

  void add(const ptkit::OpStats& s) {
    stats_.tables_allocated += s.tables_allocated;
    stats_.tables_freed += s.tables_freed;
    stats_.invalidations += s.invalidations;
  }

  u64 sample() {
    if (ref_.count() == 0 || rng_.chance(25))
      return cfg_.window + ptkit::align_down(rng_.below(kBlocks * kBlock), kTagStride);
    const RefInterval& r = ref_[static_cast<unsigned>(rng_.below(ref_.count()))];
    return r.va + ptkit::align_down(rng_.below(r.size), kTagStride);
  }

  // ---- Probes -----------------------------------------------------------------

  enum class Outcome : ptkit::u8 { Done, NotPresent, Denied, Other };
  static constexpr u64 kPfPresent = 1, kPfWrite = 2, kPfFetch = 0x10;

  static Outcome classify(bool faulted, u64 kind, u64 va) {
    if (!faulted) return Outcome::Done;
    if ((fault_error & (kPfWrite | kPfFetch)) != kind) return Outcome::Other;
    if (g_cr2 != nullptr && *g_cr2 != va) return Outcome::Other;
    return (fault_error & kPfPresent) != 0 ? Outcome::Denied : Outcome::NotPresent;
  }
  static Outcome read(u64 va, u64* value) {
    const u64 before = fault_count;
    u64 v = 0;
    asm volatile(
        "leaq 1f(%%rip), %%rax\n\t"
        "movq %%rax, fault_resume(%%rip)\n\t"
        "movq (%[p]), %[v]\n\t"
        "movq $0, fault_resume(%%rip)\n"
        "1:"
        : [v] "+r"(v)
        : [p] "r"(va)
        : "rax", "memory");
    *value = v;
    return classify(fault_count != before, 0, va);
  }
  static Outcome write(u64 va, u64 value) {
    const u64 before = fault_count;
    asm volatile(
        "leaq 1f(%%rip), %%rax\n\t"
        "movq %%rax, fault_resume(%%rip)\n\t"
        "movq %[v], (%[p])\n\t"
        "movq $0, fault_resume(%%rip)\n"
        "1:"
        :
        : [p] "r"(va), [v] "r"(value)
        : "rax", "memory");
    return classify(fault_count != before, kPfWrite, va);
  }
  /// Calls `va`, where a `ret` sits. A fault resumes at 2:, with the return
  /// address the call pushed still on the stack.
  static Outcome exec(u64 va) {
    const u64 before = fault_count;
    asm volatile(
        "leaq 2f(%%rip), %%rax\n\t"
        "movq %%rax, fault_resume(%%rip)\n\t"
        "call *%[p]\n\t"
        "movq $0, fault_resume(%%rip)\n\t"
        "jmp 3f\n"
        "2:\n\t"
        "addq $8, %%rsp\n"
        "3:"
        :
        : [p] "r"(va)
        : "rax", "memory", "cc");
    return classify(fault_count != before, kPfFetch, va);
  }

  bool tagged(u64 pa) const { return pa - cfg_.phys < cfg_.phys_pages * kPage; }

  bool check_address(Check& c, u64 va) {
    ++samples_;
    const RefInterval* r = ref_.find(va);
    auto q = s_.query(ptkit::VirtAddr(va));
    if (r == nullptr) {
      if (!c.expect(!q.ok(), "query: mapped where the reference has nothing", va)) return false;
      u64 v = 0;
      return expect_fault(c, read(va, &v), false, va, 0);
    }
    if (!c.expect(q.ok(), "query: not mapped where the reference maps", va)) return false;
    const u64 pa = q->pa.value() + (va - q->va.value());
    // Xen adds U (a 64-bit PV kernel runs in ring 3) to every PTE.
    const Perm perm = q->attrs.perm & ~Perm::User;
    if (!c.expect(pa == r->pa_of(va), "query: physical address", pa, r->pa_of(va)) ||
        !c.expect(perm == r->attrs.perm, "query: permissions", va, u64(q->attrs.perm)))
      return false;
    u64 v = 0;
    if (!c.expect(read(va, &v) == Outcome::Done, "read faulted", va, fault_error)) return false;
    if (!tagged(pa)) return true;
    if (!c.expect(v == tag_of(pa), "read: wrong data", va, v)) return false;
    const Outcome w = write(va, tag_of(pa));
    if (ptkit::has(r->attrs.perm, Perm::W)) {
      if (!c.expect(w == Outcome::Done, "write to a writable page faulted", va, fault_error))
        return false;
    } else if (!expect_fault(c, w, true, va, 1)) {
      return false;
    }
    const u64 xva = ptkit::align_down(va, kPage) + kExecOffset;
    const Outcome x = exec(xva);
    if (ptkit::has(r->attrs.perm, Perm::X))
      return c.expect(x == Outcome::Done, "execute from an executable page faulted", xva,
                      fault_error);
    return expect_fault(c, x, true, xva, 2);
  }

  bool expect_fault(Check& c, Outcome o, bool denied, u64 va, unsigned counter) {
    if (o == (denied ? Outcome::Denied : Outcome::NotPresent)) {
      ++faults_[denied ? counter : 0];
      return true;
    }
    return c.expect(false, "wrong outcome (va, outcome)", va, u64(o));
  }

  void describe(const Op& op) const {
    constexpr const char* kNames[] = {"map-pages", "map-block", "unmap", "protect"};
    serial::write("info random failed at operation ");
    serial::dec(op_);
    serial::write(": ");
    serial::write(kNames[static_cast<unsigned>(op.kind)]);
    serial::write(" va=");
    serial::hex(op.va);
    serial::write(" size=");
    serial::hex(op.size);
    serial::write(" pa=");
    serial::hex(op.pa);
    serial::write(" perm=");
    serial::hex(u64(op.attrs.perm));
    serial::write(" set=");
    serial::hex(u64(op.change.set));
    serial::write(" clear=");
    serial::hex(u64(op.change.clear));
    serial::write(op.replace ? " replace\n" : " error-if-mapped\n");
  }

  Space& s_;
  const Config& cfg_;
  Rng rng_;
  static inline ReferenceMap<1024> ref_;
  unsigned op_ = 0;
  u64 samples_ = 0;
  u64 faults_[3] = {};
  u64 refused_ = 0;
  ptkit::OpStats stats_{};
};

}  // namespace kernel
