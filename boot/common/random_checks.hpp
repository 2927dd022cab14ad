// The randomized phase of a test kernel (issue 6): a few thousand random
// map/unmap/protect operations on the live address space, inside a test
// window, each followed by accesses through the CPU's own translation of
// sampled addresses, compared with a reference kept beside the tables
// (reference_map.hpp). One named check, `random-ops`.
//
// What is random: the operation, its range (pages, blocks, a whole huge
// unit; small ranges crowd into a few blocks so they meet), its physical
// address, its attributes (write, execute, global, memory type), whether a
// map replaces or must find the range empty, whether superpages are merged,
// and the sampled addresses. Splits happen where a small operation lands in
// a superpage, merges where a block mapped page by page with one frame run
// and one set of attributes is protected or remapped with merging allowed,
// and tables are freed by unmaps and by maps of larger leaves.
//
// Every sampled address is checked three ways: ptkit's query() agrees with
// the reference; a read returns the tagged word of the physical address the
// reference names (or faults as not mapped); a write faults as a permission
// fault where the reference is read-only, and an execute faults where it is
// not executable. Addresses in the changed range are touched before the
// operation and again after it, so the TLB holds the old translation: a
// missing invalidation shows as an access that should have faulted.
//
// Geometry: a page, a block and a unit are the format's level-0, level-1 and
// level-2 leaf sizes (4K, 2M, 1G on x86-64, AArch64 4K and Sv39/48/57);
// units are used as leaves only where level 2 may hold one. Permissions: R
// always, W and X at random (User never: supervisor probes of user pages
// would fault under SMAP/PAN for reasons of their own).
//
// Translated code: before each operation the instruction words of the pages
// it changes are rewritten (forget_code()), because QEMU finds translated
// code by virtual address without the TLB; see there.
//
// Physical memory: [phys, phys + phys_size) is tagged (the first 64-bit word
// of every 64 bytes holds tag_of(pa), see below; one in eight keeps the boot
// short, and translations are page-granular anyway) and is all that writes
// and executes reach. Sampled addresses are such words.
// Leaves too large for it map the one frame of their size that holds it
// (x86: a 1G leaf maps [0, 1G)); addresses through them outside the tagged
// area are only read-checked for not faulting (and never written).
//
// ---- The arch interface -----------------------------------------------------
// `Arch` is a small class each kernel provides:
//
//   ProbeResult read(u64 va);             // 64-bit load from va
//   ProbeResult write(u64 va, u64 value); // 64-bit store of value to va
//   ProbeResult exec(u64 va);             // call va, where a return sits
//   void phys_write(u64 pa, u64 value);   // through the kernel's direct map
//   void sync_instructions();             // after phys_write: make the words
//                                         // written visible to instruction
//                                         // fetch (Arm: DSB, IC IALLU, DSB,
//                                         // ISB; RISC-V: fence.i; x86:
//                                         // nothing)
//   static constexpr u32 kReturnInsn;     // a 4-byte instruction (or one
//                                         // padded to 4 bytes) that returns
//                                         // to the caller of exec()
//
// A probe classifies what happened (Access below): Done; TranslationFault
// (no valid translation) or PermissionFault (a translation that forbids the
// access), both for exactly `va` and the access kind asked for; Fault when
// the architecture cannot tell those two apart (RISC-V page faults);
// Unexpected for anything else (another exception, another address).
#pragma once

#include "check.hpp"
#include "ptkit/space.hpp"
#include "reference_map.hpp"
#include "rng.hpp"

namespace kernel {

enum class Access : ptkit::u8 { Done, TranslationFault, PermissionFault, Fault, Unexpected };

struct ProbeResult {
  Access access = Access::Unexpected;
  ptkit::u64 value = 0;  // what a read returned
};

/// Where and how long the phase runs.
struct RandomConfig {
  ptkit::u64 seed = 1;
  unsigned operations = 2000;
  unsigned samples = 4;  // random addresses checked after each operation
  /// The test window: `units` huge units (1 GiB on x86) from `window`, which
  /// must be unmapped and aligned to one. Small operations stay in the first
  /// `hot_blocks` blocks of each unit.
  ptkit::u64 window = 0;
  unsigned units = 2;
  unsigned hot_blocks = 8;
  /// Tagged physical memory, aligned to a block.
  ptkit::u64 phys = 0;
  ptkit::u64 phys_size = 0;
  /// Memory types attributes are drawn from (the format must express each).
  const ptkit::MemType* mem_types = nullptr;
  unsigned mem_type_count = 0;
};

template <class Space, class Arch>
class RandomChecks {
  using u64 = ptkit::u64;
  using Attrs = ptkit::Attrs;
  using Perm = ptkit::Perm;

 public:
  /// Offset in each page of the word that holds Arch::kReturnInsn.
  static constexpr u64 kExecOffset = 0xF00;
  /// Distance between tagged words.
  static constexpr u64 kTagStride = 64;

  RandomChecks(Space& space, Arch& arch, const RandomConfig& config)
      : s_(space), arch_(arch), cfg_(config), rng_(config.seed) {
    page_ = s_.leaf_size(0);
    block_ = s_.leaf_size(1);
    huge_ = s_.format().leaf_allowed(2) ? s_.leaf_size(2) : 0;
    unit_ = s_.leaf_size(2);
  }

  /// The word every tagged physical address holds: the address mixed with
  /// a constant (so a translation to the wrong page or offset reads another
  /// value), except the word at kExecOffset of each page, whose low half is
  /// a return instruction for execute probes.
  static u64 tag_of(u64 pa) {
    const u64 tag = (pa * 0x9E37'79B9'7F4A'7C15) ^ 0x7074'6b69'7452'4E44;
    if ((pa & 0xFFF) == kExecOffset) return (tag & ~u64{0xFFFF'FFFF}) | Arch::kReturnInsn;
    return tag;
  }

  void run() {
    Check c("random-ops");
    serial::write("info random seed ");
    serial::hex(cfg_.seed);
    serial::write(", ");
    serial::dec(cfg_.operations);
    serial::write(" operations\n");
    for (u64 pa = cfg_.phys; pa < cfg_.phys + cfg_.phys_size; pa += kTagStride)
      arch_.phys_write(pa, tag_of(pa));
    arch_.sync_instructions();

    for (op_ = 0; op_ < cfg_.operations && !c.failed(); ++op_) {
      if (!ref_.has_room()) start_over(c);
      one_operation(c);
    }
    // Leave the window empty for whatever runs next.
    if (!c.failed()) start_over(c);

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
    serial::write(" exec, splits ");
    serial::dec(stats_.splits);
    serial::write(", merges ");
    serial::dec(stats_.merges);
    serial::write(", tables +");
    serial::dec(stats_.tables_allocated);
    serial::write(" -");
    serial::dec(stats_.tables_freed);
    serial::write(", invalidations ");
    serial::dec(stats_.invalidations);
    serial::write(", full flushes ");
    serial::dec(stats_.full_flushes);
    serial::write(", refused as predicted ");
    serial::dec(refused_);
    serial::write("\n");
    if (c.failed()) return;
    // The phase must have reached what it is for.
    c.expect(stats_.splits != 0 && stats_.merges != 0 && stats_.tables_freed != 0,
             "coverage: splits, merges and freed tables", stats_.splits, stats_.merges);
    c.expect(faults_[0] != 0 && faults_[1] != 0 && faults_[2] != 0, "coverage: every kind of fault",
             faults_[1], faults_[2]);
    c.expect(refused_ != 0, "coverage: a map refused over an existing mapping");
    // The window is empty again: every table the phase took went back.
    c.expect(stats_.tables_allocated == stats_.tables_freed, "tables allocated and freed balance",
             stats_.tables_allocated, stats_.tables_freed);
  }

 private:
  enum class Kind : ptkit::u8 { MapPages, MapBlocks, MapHuge, MapBlockAsPages, Unmap, Protect };

  struct Op {
    Kind kind = Kind::MapPages;
    u64 va = 0;
    u64 size = 0;
    u64 pa = 0;
    Attrs attrs{};
    ptkit::AttrChange change{};
    bool replace = true;
    bool merge = false;
  };

  // ---- Choosing -------------------------------------------------------------

  u64 unit_base(unsigned u) const { return cfg_.window + u64{u} * unit_; }
  /// A page-aligned address in the hot blocks of a random unit.
  u64 hot_address(u64 align) {
    const u64 base = unit_base(static_cast<unsigned>(rng_.below(cfg_.units)));
    return base + ptkit::align_down(rng_.below(u64{cfg_.hot_blocks} * block_), align);
  }
  /// Physical memory for `size` bytes with leaves of `align`: inside the
  /// tagged area when it fits, else the one `align` frame that holds it.
  u64 phys_for(u64 size, u64 align) {
    if (size > cfg_.phys_size) return ptkit::align_down(cfg_.phys, align);
    const u64 slots = (cfg_.phys_size - size) / align + 1;
    return cfg_.phys + rng_.below(slots) * align;
  }
  Attrs random_attrs() {
    Attrs a;
    a.perm = Perm::R;
    if (rng_.chance(60)) a.perm = a.perm | Perm::W;
    if (rng_.chance(30)) a.perm = a.perm | Perm::X;
    a.global = rng_.chance(30);
    a.mem = rng_.chance(70) ? cfg_.mem_types[0] : cfg_.mem_types[rng_.below(cfg_.mem_type_count)];
    return a;
  }
  ptkit::AttrChange random_change() {
    ptkit::AttrChange c;
    // Set and clear are disjoint; R stays (a present page is readable).
    for (Perm p : {Perm::W, Perm::X}) {
      const u64 r = rng_.below(3);
      if (r == 0) c.set = c.set | p;
      if (r == 1) c.clear = c.clear | p;
    }
    if (rng_.chance(25)) {
      c.change_global = true;
      c.global = rng_.chance(50);
    }
    if (rng_.chance(20)) {
      c.change_mem = true;
      c.mem = cfg_.mem_types[rng_.below(cfg_.mem_type_count)];
    }
    return c;
  }
  /// A range for unmap/protect: some pages, a block or two, or a unit.
  void random_range(Op& op) {
    const u64 r = rng_.below(100);
    if (r < 55) {
      op.size = (1 + rng_.below(16)) * page_;
      op.va = hot_address(page_);
    } else if (r < 90) {
      op.size = (1 + rng_.below(2)) * block_;
      op.va = hot_address(block_);
    } else {
      op.size = unit_;
      op.va = unit_base(static_cast<unsigned>(rng_.below(cfg_.units)));
    }
  }

  Op random_op() {
    Op op;
    const u64 r = rng_.below(100);
    op.replace = rng_.chance(75);
    op.merge = rng_.chance(50);
    op.attrs = random_attrs();
    if (r < 30) {
      op.kind = Kind::MapPages;
      op.size = (1 + rng_.below(8)) * page_;
      op.va = hot_address(page_);
      op.pa = phys_for(op.size, page_);
    } else if (r < 42) {
      op.kind = Kind::MapBlocks;
      op.size = (1 + rng_.below(2)) * block_;
      op.va = hot_address(block_);
      op.pa = phys_for(op.size, block_);
    } else if (r < 46 && huge_ != 0) {
      op.kind = Kind::MapHuge;
      op.size = huge_;
      op.va = unit_base(static_cast<unsigned>(rng_.below(cfg_.units)));
      op.pa = phys_for(op.size, huge_);
      op.replace = true;
    } else if (r < 54) {
      op.kind = Kind::MapBlockAsPages;
      op.size = block_;
      op.va = hot_address(block_);
      op.pa = phys_for(op.size, block_);
    } else if (r < 74) {
      op.kind = Kind::Unmap;
      random_range(op);
    } else {
      op.kind = Kind::Protect;
      random_range(op);
      op.change = random_change();
    }
    return op;
  }

  // ---- Doing ----------------------------------------------------------------

  void one_operation(Check& c) {
    const Op op = random_op();
    // Touch the range first: the TLB then holds what the operation changes.
    u64 at[3];
    for (u64& a : at) {
      a = op.va + ptkit::align_down(rng_.below(op.size), kTagStride);
      if (!check_address(c, a)) return describe(op);
    }
    forget_code(op.va, op.size);
    if (!apply(c, op)) return describe(op);
    for (u64 a : at)
      if (!check_address(c, a)) return describe(op);
    for (unsigned k = 0; k < cfg_.samples; ++k)
      if (!check_address(c, sample())) return describe(op);
  }

  /// Runs `op` on the space and the reference; false on a failure.
  bool apply(Check& c, const Op& op) {
    const ptkit::VirtAddr va(op.va);
    switch (op.kind) {
      case Kind::MapPages:
      case Kind::MapBlocks:
      case Kind::MapHuge:
      case Kind::MapBlockAsPages: {
        ptkit::MapOptions o;
        o.existing = op.replace ? ptkit::OnExisting::Replace : ptkit::OnExisting::Error;
        o.allow_split = true;
        o.merge = op.merge;
        if (op.kind == Kind::MapBlockAsPages) o.leaf_sizes = page_;
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
        ptkit::UnmapOptions o;
        o.allow_split = true;
        auto done = s_.unmap(va, op.size, o);
        if (!c.expect_ok(done, "unmap")) return false;
        add(done->stats);
        return ref_.unmap(op.va, op.size);
      }
      case Kind::Protect: {
        ptkit::ProtectOptions o;
        o.holes = ptkit::OnHole::Skip;
        o.allow_split = true;
        o.merge = op.merge;
        auto done = s_.protect(va, op.size, op.change, o);
        if (!c.expect_ok(done, "protect")) return false;
        add(done->stats);
        return ref_.protect(op.va, op.size, op.change);
      }
    }
    return false;
  }

  /// Unmaps the whole window (and empties the reference).
  void start_over(Check& c) {
    ptkit::UnmapOptions o;
    o.allow_split = true;
    auto done = s_.unmap(ptkit::VirtAddr(cfg_.window), u64{cfg_.units} * unit_, o);
    if (c.expect_ok(done, "unmap the window")) add(done->stats);
    ref_.clear();
  }

  /// Makes the emulator forget the code it translated from the pages that
  /// [va, va + size) translates to now, by rewriting their instruction
  /// words (same value) through the direct map. QEMU's TCG finds translated
  /// code by virtual address in a jump cache without looking at the TLB, and
  /// an invalidation clears that cache only for the page it names, even
  /// when the translation it drops is a 2M or 1G leaf: code elsewhere in the
  /// leaf would keep running with the old permissions and frame although
  /// the TLB entry is gone. (INVLPG of any address of a large page drops the
  /// whole page on hardware, SDM vol. 3A §4.10.4.1, which is what ptkit
  /// asks for.) A store to a page discards the code translated from it, so
  /// the next execute goes through the TLB, where ptkit's invalidation (or
  /// its absence) shows. The TLB itself is left alone.
  void forget_code(u64 va, u64 size) {
    ref_.for_each_in(va, size, [&](const RefInterval& r) {
      const u64 lo = r.va > va ? r.va : va;
      const u64 hi = r.end() < va + size ? r.end() : va + size;
      // Only tagged pages are ever executed.
      u64 pa_lo = r.pa_of(lo), pa_hi = r.pa_of(hi);
      if (pa_lo < cfg_.phys) pa_lo = cfg_.phys;
      if (pa_hi > cfg_.phys + cfg_.phys_size) pa_hi = cfg_.phys + cfg_.phys_size;
      for (u64 pa = ptkit::align_down(pa_lo, 0x1000); pa < pa_hi; pa += 0x1000)
        arch_.phys_write(pa + kExecOffset, tag_of(pa + kExecOffset));
    });
    arch_.sync_instructions();
  }

  void add(const ptkit::OpStats& s) {
    stats_.tables_allocated += s.tables_allocated;
    stats_.tables_freed += s.tables_freed;
    stats_.splits += s.splits;
    stats_.merges += s.merges;
    stats_.invalidations += s.invalidations;
    stats_.full_flushes += s.full_flushes;
  }

  // ---- Checking -------------------------------------------------------------

  bool tagged(u64 pa) const { return pa - cfg_.phys < cfg_.phys_size; }

  /// An address to sample: mostly inside a mapped interval (at a tagged
  /// physical address where the interval reaches one), else anywhere hot.
  u64 sample() {
    if (ref_.count() == 0 || rng_.chance(25)) return hot_address(kTagStride);
    const RefInterval& r = ref_[static_cast<unsigned>(rng_.below(ref_.count()))];
    // The part of the interval over tagged memory, if any.
    const u64 lo = r.pa > cfg_.phys ? r.pa : cfg_.phys;
    const u64 r_end = r.pa + r.size, t_end = cfg_.phys + cfg_.phys_size;
    const u64 hi = r_end < t_end ? r_end : t_end;
    if (lo < hi) return r.va + (lo - r.pa) + ptkit::align_down(rng_.below(hi - lo), kTagStride);
    return r.va + ptkit::align_down(rng_.below(r.size), kTagStride);
  }

  /// Compares query(), a read, a write and an execute at `va` with the
  /// reference. False (with the check failed) on a mismatch.
  bool check_address(Check& c, u64 va) {
    ++samples_;
    const RefInterval* r = ref_.find(va);
    auto q = s_.query(ptkit::VirtAddr(va));
    if (r == nullptr) {
      if (!c.expect(!q.ok(), "query: mapped where the reference has nothing", va)) return false;
    } else {
      if (!c.expect(q.ok(), "query: not mapped where the reference maps", va, r->pa_of(va)))
        return false;
      const u64 pa = q->pa.value() + (va - q->va.value());
      if (!c.expect(pa == r->pa_of(va), "query: physical address", pa, r->pa_of(va)) ||
          !c.expect(q->attrs == r->attrs, "query: attributes", va, u64(q->attrs.perm)))
        return false;
    }

    const ProbeResult rd = arch_.read(va);
    if (r == nullptr) return expect_fault(c, rd, false, "read", va, 0);
    const u64 pa = r->pa_of(va);
    if (!c.expect(rd.access == Access::Done, "read faulted", va, u64(rd.access))) return false;
    if (!tagged(pa)) return true;  // outside the tagged area: no value to compare, no writes
    if (!c.expect(rd.value == tag_of(pa), "read: wrong data", va, rd.value)) return false;

    // Writing the tag back is harmless where the write is allowed.
    const ProbeResult wr = arch_.write(va, tag_of(pa));
    if (ptkit::has(r->attrs.perm, Perm::W)) {
      if (!c.expect(wr.access == Access::Done, "write to a writable page faulted", va))
        return false;
    } else if (!expect_fault(c, wr, true, "write", va, 1)) {
      return false;
    }

    const u64 xva = ptkit::align_down(va, page_) + kExecOffset;
    const ProbeResult ex = arch_.exec(xva);
    if (ptkit::has(r->attrs.perm, Perm::X))
      return c.expect(ex.access == Access::Done, "execute from an executable page faulted", xva);
    return expect_fault(c, ex, true, "exec", xva, 2);
  }

  /// A fault of the right kind: permission (`denied`) or translation.
  bool expect_fault(Check& c, const ProbeResult& p, bool denied, const char* what, u64 va,
                    unsigned counter) {
    const Access kind = denied ? Access::PermissionFault : Access::TranslationFault;
    if (p.access == kind || p.access == Access::Fault) {
      ++faults_[denied ? counter : 0];
      return true;
    }
    serial::write("info random: ");
    serial::write(what);
    serial::write(denied ? " should fault (permission)\n" : " should fault (not mapped)\n");
    return c.expect(false, "wrong outcome (va, access)", va, u64(p.access));
  }

  void describe(const Op& op) const {
    constexpr const char* kNames[] = {"map-pages",          "map-blocks", "map-huge",
                                      "map-block-as-pages", "unmap",      "protect"};
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
    serial::write(op.replace ? " replace" : " error-if-mapped");
    serial::write(op.merge ? " merge\n" : "\n");
  }

  static constexpr unsigned kCapacity = 4096;

  Space& s_;
  Arch& arch_;
  const RandomConfig& cfg_;
  Rng rng_;
  u64 page_ = 0, block_ = 0, huge_ = 0, unit_ = 0;
  // Static storage: 128 KiB is too much for the stack.
  static inline ReferenceMap<kCapacity> ref_;
  unsigned op_ = 0;
  u64 samples_ = 0;
  u64 faults_[3] = {};  // not mapped, write denied, execute denied
  u64 refused_ = 0;
  ptkit::OpStats stats_{};
};

}  // namespace kernel
