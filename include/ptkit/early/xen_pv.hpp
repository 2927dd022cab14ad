// Xen PV mode (DESIGN.md §4, §5): the policies that let the core build and
// change the page tables of a 64-bit Xen paravirtualised guest.
//
// A PV guest's tables hold machine frame numbers, are never writable by the
// guest (every mapping of a page-table page is read-only; Xen types the page
// PGT_l1..l4 when it is linked and refuses the link while a writable mapping
// exists), may not hold superpages, and are changed only through the
// mmu_update hypercall. ptkit's engine keeps working in pseudo-physical
// addresses; the pieces here adapt it:
//
// - PvFormat: x86-64 4-level entries whose frames are translated pfn -> mfn on
//   encode and mfn -> pfn on decode (P2M / M2P, supplied by the caller); 4 KiB
//   leaves only; every change of a valid entry to another valid entry is a
//   break (invalid, publish, invalidate, complete, new), so no valid entry is
//   ever overwritten.
// - MmuUpdateWriter: an EntryWriter that queues every store as an mmu_update
//   request and sends the queue when it is full, when the engine publishes
//   (flush()) and when the engine is about to read a queued slot
//   (before_read()).
// - ReadOnlyTables: an allocator wrapper that makes each page read-only in the
//   guest's own mappings (a caller hook) before the engine writes its first
//   entry into it, and writable again when the engine gives it back.
// - create_space: allocates and clears a root through the writer
//   (AddressSpace::create clears the root with direct stores, which fault on
//   a read-only page).
// - map_direct: a direct map of pseudo-physical memory in which given ranges
//   (the table pool) are mapped read-only, never overwriting a valid entry.
//
// Ordering guarantees (with the engine's publish-before-link and
// free-after-flush):
//   1. a table page is read-only everywhere the caller's hook knows before the
//      first request that writes into it is queued;
//   2. a new table's entries reach Xen (a flush) before the request that links
//      it is queued, so Xen validates a complete table;
//   3. a valid entry is only ever replaced by an invalid one; a new valid
//      value follows after the invalid one was sent, invalidated and the
//      invalidation completed;
//   4. a table page is made writable again only after it is unlinked, the
//      unlinking request was sent and its TLB work completed.
//
// Freestanding: no containers, no heap, no exceptions.
#pragma once

#include <concepts>
#include <cstdint>

#include "ptkit/access.hpp"
#include "ptkit/alloc.hpp"
#include "ptkit/arch/x86_64.hpp"
#include "ptkit/attrs.hpp"
#include "ptkit/format.hpp"
#include "ptkit/options.hpp"
#include "ptkit/space.hpp"
#include "ptkit/status.hpp"
#include "ptkit/tlb.hpp"
#include "ptkit/writer.hpp"

namespace ptkit::xen {

/// Xen's `struct mmu_update` (xen/include/public/xen.h): `ptr` is the machine
/// address of the entry with the command in its low 2 bits, `val` the new raw
/// entry.
struct MmuUpdate {
  u64 ptr = 0;
  u64 val = 0;
};
static_assert(sizeof(MmuUpdate) == 16, "Xen's ABI: two 64-bit words");

/// mmu_update commands (xen/include/public/xen.h).
inline constexpr u64 kMmuNormalPtUpdate = 0;      // MMU_NORMAL_PT_UPDATE
inline constexpr u64 kMmuMachphysUpdate = 1;      // MMU_MACHPHYS_UPDATE
inline constexpr u64 kMmuPtUpdatePreserveAd = 2;  // MMU_PT_UPDATE_PRESERVE_AD

inline constexpr u64 kPageSize = 4096;

/// The guest's pseudo-physical <-> machine translation. In a guest:
/// start_info's mfn_list (P2M) and the read-only M2P table Xen maps at
/// MACH2PHYS_VIRT_START.
///   to_machine(pa): machine address of the page-aligned pseudo-physical `pa`.
///   to_pseudo(maddr): pseudo-physical address of the page-aligned machine
///   address `maddr`.
/// Both are called for page-aligned addresses only.
template <class T>
concept MachineTranslation = requires(const T t, PhysAddr pa, u64 maddr) {
  { t.to_machine(pa) } -> std::same_as<u64>;
  { t.to_pseudo(maddr) } -> std::same_as<PhysAddr>;
};

/// Pseudo-physical = machine (a translated guest, or a test).
struct IdentityTranslation {
  [[nodiscard]] constexpr u64 to_machine(PhysAddr pa) const { return pa.value(); }
  [[nodiscard]] constexpr PhysAddr to_pseudo(u64 maddr) const { return PhysAddr(maddr); }
};
static_assert(MachineTranslation<IdentityTranslation>);

/// The mmu_update hypercall, for DOMID_SELF: applies `count` requests in
/// order and returns 0, or a negative errno at the first one Xen refuses.
/// A hypercall may also offer `mmu_update(reqs, count, unsigned* done)`
/// (Xen's success_count: the requests applied before the failure); the
/// writer then reports exactly which request failed.
template <class H>
concept Hypercall = requires(H h, const MmuUpdate* reqs, unsigned count) {
  { h.mmu_update(reqs, count) } -> std::same_as<int>;
};

/// The caller's hook that changes the guest's own mappings of one page (in a
/// guest: HYPERVISOR_update_va_mapping of its direct-map address, and any
/// other mapping the guest knows of it).
///   make_readonly(pa): no writable leaf maps the page afterwards.
///   make_writable(pa): the page may be mapped writable again (a caller whose
///   table pool stays read-only for good may do nothing).
/// Both run in the middle of an update, while entry writes of that update may
/// still be queued in the writer: they must only touch mappings the update is
/// not changing (the direct map of the table pool, which map_direct maps
/// read-only, is such a mapping). Replacing a writable leaf by a read-only one
/// should itself go through invalid first (two update_va_mapping calls, the
/// first with UVMF_INVLPG) to keep guarantee 3.
template <class P>
concept PageProtection = requires(P p, PhysAddr pa) {
  {p.make_readonly(pa)};
  {p.make_writable(pa)};
};

/// A pseudo-physical range [base, base + size).
struct PhysRange {
  PhysAddr base;
  u64 size = 0;
};

/// The pages that hold, or may come to hold, the guest's page tables: the
/// table pool the allocator draws from and the tables Xen built for the
/// guest. The ranges are the caller's and must outlive every format that
/// holds them. With them, PvFormat makes the engine refuse any writable leaf
/// over those pages (Error::WritableTable) before a request is queued: Xen
/// would refuse it (-EBUSY once the page is typed as a page table) or, while
/// the page is not yet one, accept it and refuse the table later.
struct TableFrames {
  const PhysRange* ranges = nullptr;
  unsigned count = 0;

  /// Whether [pa, pa + size) overlaps one of the ranges.
  [[nodiscard]] constexpr bool overlap(PhysAddr pa, u64 size) const {
    const u64 lo = pa.value();
    const u64 hi = lo + (size - 1);
    for (unsigned k = 0; k < count; ++k) {
      const u64 r_lo = ranges[k].base.value();
      if (ranges[k].size != 0 && lo <= r_lo + (ranges[k].size - 1) && r_lo <= hi) return true;
    }
    return false;
  }
};

/// Bit 52 of a PTE, Xen's _PAGE_GUEST_KERNEL (xen/arch/x86/include/asm/
/// x86_64/page.h, flag bit 12 of its PTE-flags view): a 64-bit PV guest's
/// kernel runs in ring 3, so Xen adds U to every present PTE that lacks it
/// and marks it with this bit, to tell it from a user page.
inline constexpr u64 kGuestKernelBit = u64{1} << 52;

// ---- The format --------------------------------------------------------------

/// x86-64 4-level paging as a Xen PV guest sees it. The engine works in
/// pseudo-physical addresses; raw entries hold machine addresses, translated
/// here for leaves and table pointers alike.
template <MachineTranslation Tr>
class PvFormat {
 public:
  static constexpr unsigned kMaxLevels = 4;

  /// `features.page_1g` is ignored: PV guests have no superpages. `tables`:
  /// the pages no writable leaf may map (none when empty).
  constexpr explicit PvFormat(Tr translation, x86::Features features = {}, TableFrames tables = {})
      : inner_(without_large_pages(features)), tr_(translation), tables_(tables) {}

  [[nodiscard]] constexpr const x86::Paging4& inner() const { return inner_; }
  [[nodiscard]] constexpr const Tr& translation() const { return tr_; }
  [[nodiscard]] constexpr const TableFrames& table_frames() const { return tables_; }

  /// The engine's question before it writes a writable leaf over [pa, pa +
  /// size): is a page of it a page table, or may it become one?
  [[nodiscard]] constexpr bool holds_tables(PhysAddr pa, u64 size) const {
    return tables_.overlap(pa, size);
  }

  [[nodiscard]] constexpr unsigned levels() const { return inner_.levels(); }
  [[nodiscard]] constexpr unsigned page_shift() const { return inner_.page_shift(); }
  [[nodiscard]] constexpr unsigned index_bits(unsigned level) const {
    return inner_.index_bits(level);
  }
  /// Only PTEs map: Xen refuses PSE in a PV guest's L2 and L3 entries
  /// (xen/arch/x86/mm.c), so a 2M or 1G request fails LeafSizeUnsupported.
  [[nodiscard]] constexpr bool leaf_allowed(unsigned level) const {
    return level < 32 && ((leaf_levels_ >> level) & 1) != 0;
  }
  [[nodiscard]] constexpr bool is_canonical(VirtAddr va) const { return inner_.is_canonical(va); }
  [[nodiscard]] constexpr unsigned phys_bits() const { return inner_.phys_bits(); }
  [[nodiscard]] constexpr bool can_express(Attrs a) const { return inner_.can_express(a); }
  /// Present bit: needs no translation.
  [[nodiscard]] constexpr bool is_valid_raw(u64 raw, unsigned level) const {
    return inner_.is_valid_raw(raw, level);
  }

  /// Raw entry (machine frame) -> entry (pseudo-physical frame). A superpage
  /// cannot exist in a PV guest; one would decode by its first frame only.
  /// A leaf Xen marked as the guest kernel's (kGuestKernelBit) decodes
  /// without that bit and without the U Xen added along with it, so it reads
  /// back as what the guest wrote, and writing it again is no change.
  [[nodiscard]] constexpr Entry decode(u64 raw, unsigned level) const {
    if (level == 0 && (raw & kGuestKernelBit) != 0)
      raw &= ~(kGuestKernelBit | x86::kUserSupervisor);
    Entry e = inner_.decode(raw, level);
    if (e.valid()) e.pa = tr_.to_pseudo(e.pa.value());
    return e;
  }

  /// Entry (pseudo-physical frame) -> raw entry (machine frame).
  [[nodiscard]] constexpr u64 encode(const Entry& e, unsigned level) const {
    if (!e.valid()) return inner_.encode(e, level);
    Entry m = e;
    m.pa = PhysAddr(tr_.to_machine(e.pa));
    return inner_.encode(m, level);
  }

  /// ptkit's Xen policy: a valid entry is never overwritten by a different
  /// valid one, whatever the change (even a permission change, which Xen
  /// would validate in place, and even an `equivalent` one): the engine
  /// writes invalid, publishes, invalidates, completes, then writes the new
  /// entry.
  [[nodiscard]] constexpr bool needs_break(const Entry& old_entry, const Entry& new_entry,
                                           bool /*equivalent*/) const {
    return old_entry.valid() && new_entry.valid() && !(old_entry == new_entry);
  }

  [[nodiscard]] constexpr const char* level_name(unsigned level) const {
    return inner_.level_name(level);
  }
  [[nodiscard]] constexpr unsigned contiguous_entries(unsigned level) const {
    return inner_.contiguous_entries(level);  // 1: x86 has no hint
  }

 private:
  static constexpr x86::Features without_large_pages(x86::Features f) {
    f.page_1g = false;
    return f;
  }

  x86::Paging4 inner_;
  Tr tr_;
  TableFrames tables_;
  // Bit L: level L may hold leaves; PV: PTEs only. A member rather than a
  // literal `level == 0`: with the literal, GCC's -Warray-bounds follows the
  // engine's merge path (only reached for level >= 1) into level 0 and
  // warns about index level - 1 there.
  u32 leaf_levels_ = 1;
};
static_assert(PagingFormat<PvFormat<IdentityTranslation>>);

// ---- The writer ------------------------------------------------------------------

/// The first mmu_update the writer saw fail.
struct UpdateFailure {
  int rc = 0;            // Xen's negative errno
  MmuUpdate request{};   // the request Xen refused (first of the batch when the
                         // hypercall does not report how many it applied)
  unsigned applied = 0;  // requests of the batch applied before it (0 if unknown)
  unsigned batch = 0;    // requests in the failed batch
};

/// An EntryWriter that turns every entry store into an mmu_update request
/// {ptr = machine address of the entry | MMU_NORMAL_PT_UPDATE, val = raw} and
/// sends them kBatch at a time.
///
/// Both store kinds are requests: ReadOnlyTables makes a page read-only
/// before the engine fills it, so even a fresh table cannot be written
/// directly (Xen accepts mmu_update on a page that is not yet typed as a
/// page table and writes it plainly).
///
/// The queue is sent when it is full, by flush() (the engine calls it before
/// every publish to the TLB sink: before linking a new table, before an
/// invalidation, at the end of an update), and by before_read() when the
/// engine is about to read a slot that has a queued request.
///
/// A refused request cannot be returned through the engine (its apply pass
/// cannot fail). It means a ptkit bug or a caller breaking the rules (a table
/// page still mapped writable somewhere, a frame the P2M does not translate,
/// a hand-written invalid entry): the writer records the first failure
/// (failed(), failure()), drops the rest of that batch, and keeps sending
/// later batches; the tables may then differ from what the engine believes,
/// and the address space should be treated as broken.
template <Hypercall H, MachineTranslation Tr, unsigned kBatch = 64>
class MmuUpdateWriter {
  static_assert(kBatch >= 1, "a batch holds at least one request");

 public:
  MmuUpdateWriter(H hypercall, Tr translation) : hypercall_(hypercall), tr_(translation) {}

  void store(u64* slot, u64 value, const WriteSite& site) { queue(slot, value, site); }
  void store_fresh(u64* slot, u64 value, const WriteSite& site) { queue(slot, value, site); }

  /// Sends the queued requests (one hypercall), if any.
  void flush() {
    if (count_ == 0) return;
    ++hypercalls_;
    requests_ += count_;
    unsigned applied = 0;
    int rc = 0;
    if constexpr (requires(H & h, unsigned* done) {
                    { h.mmu_update(reqs_, count_, done) } -> std::same_as<int>;
                  }) {
      rc = hypercall_.mmu_update(reqs_, count_, &applied);
    } else {
      rc = hypercall_.mmu_update(reqs_, count_);
    }
    if (rc != 0 && !failed_) {
      failed_ = true;
      const unsigned at = applied < count_ ? applied : 0;
      failure_ = UpdateFailure{rc, reqs_[at], applied < count_ ? applied : 0, count_};
    }
    count_ = 0;
  }

  /// The engine is about to read [first, first + count) directly: sends the
  /// queue if a request for one of those slots is in it.
  void before_read(const u64* first, u64 count) {
    if (count_ == 0 || count == 0) return;
    const std::uintptr_t lo = address(first);
    const std::uintptr_t hi = lo + (count - 1) * sizeof(u64);
    if (hi < lowest_ || lo > highest_) return;
    for (unsigned k = 0; k < count_; ++k) {
      if (slots_[k] >= lo && slots_[k] <= hi) {
        flush();
        return;
      }
    }
  }

  [[nodiscard]] bool failed() const { return failed_; }
  /// The first failure; meaningful when failed().
  [[nodiscard]] const UpdateFailure& failure() const { return failure_; }
  /// Hypercalls issued and requests sent, for reports.
  [[nodiscard]] u64 hypercalls() const { return hypercalls_; }
  [[nodiscard]] u64 requests() const { return requests_; }
  /// Requests queued and not yet sent.
  [[nodiscard]] unsigned pending() const { return count_; }
  H& hypercall() { return hypercall_; }

 private:
  // Slot pointers are only compared, never dereferenced: as integers, so
  // that comparing pointers into different tables is defined.
  static std::uintptr_t address(const u64* p) { return reinterpret_cast<std::uintptr_t>(p); }

  void queue(u64* slot, u64 value, const WriteSite& site) {
    const std::uintptr_t a = address(slot);
    if (count_ == 0 || a < lowest_) lowest_ = a;
    if (count_ == 0 || a > highest_) highest_ = a;
    reqs_[count_] = MmuUpdate{
        (tr_.to_machine(site.table) + u64{site.index} * sizeof(u64)) | kMmuNormalPtUpdate, value};
    slots_[count_] = a;
    if (++count_ == kBatch) flush();
  }

  H hypercall_;
  Tr tr_;
  MmuUpdate reqs_[kBatch]{};
  std::uintptr_t slots_[kBatch]{};
  std::uintptr_t lowest_ = 0, highest_ = 0;
  unsigned count_ = 0;
  u64 hypercalls_ = 0;
  u64 requests_ = 0;
  bool failed_ = false;
  UpdateFailure failure_{};
};

namespace detail {
/// For the concept checks below only.
struct RefusingHypercall {
  int mmu_update(const MmuUpdate*, unsigned) { return -38; }  // -ENOSYS
};
}  // namespace detail
static_assert(EntryWriter<MmuUpdateWriter<detail::RefusingHypercall, IdentityTranslation>>);

// ---- TLB work ---------------------------------------------------------------------

/// Xen's `struct mmuext_op` (xen/include/public/xen.h): `arg1` is a machine
/// frame or a linear address, `arg2` a count, a vCPU mask or a frame.
struct MmuextOp {
  u32 cmd = 0;
  u64 arg1 = 0;
  u64 arg2 = 0;
};
static_assert(sizeof(MmuextOp) == 24, "Xen's ABI: cmd padded to 8 bytes, two words");

/// mmuext_op commands (xen/include/public/xen.h).
inline constexpr u32 kMmuextPinL4Table = 3;     // MMUEXT_PIN_L4_TABLE
inline constexpr u32 kMmuextUnpinTable = 4;     // MMUEXT_UNPIN_TABLE
inline constexpr u32 kMmuextNewBaseptr = 5;     // MMUEXT_NEW_BASEPTR
inline constexpr u32 kMmuextTlbFlushLocal = 6;  // MMUEXT_TLB_FLUSH_LOCAL
inline constexpr u32 kMmuextInvlpgLocal = 7;    // MMUEXT_INVLPG_LOCAL

/// The mmuext_op hypercall, for DOMID_SELF: performs `count` operations in
/// order and returns 0, or a negative errno.
template <class H>
concept MmuextHypercall = requires(H h, const MmuextOp* ops, unsigned count) {
  { h.mmuext_op(ops, count) } -> std::same_as<int>;
};

/// A TlbSink for a PV guest, which cannot run INVLPG or load CR3 itself:
/// each invalidation by address becomes MMUEXT_INVLPG_LOCAL operations, one
/// per stride of the range (an INVLPG also drops the paging-structure
/// caches, as the engine's table invalidations need), sent kBatch to a
/// hypercall; invalidate_all is MMUEXT_TLB_FLUSH_LOCAL. Xen performs them
/// before the hypercall returns, so complete() has nothing to wait for, and
/// the writer sent every queued request before the engine publishes
/// (MmuUpdateWriter::flush), so publish() has nothing to do either.
///
/// Local only: a guest with more than one vCPU running the space needs the
/// MMUEXT_INVLPG_MULTI / TLB_FLUSH_MULTI forms instead.
///
/// A refused operation cannot be returned through the engine; the sink
/// counts it and keeps the first error (failures(), first_error()).
template <MmuextHypercall H, unsigned kBatch = 16>
class MmuextSink {
  static_assert(kBatch >= 1, "a batch holds at least one operation");

 public:
  explicit MmuextSink(H hypercall) : hypercall_(hypercall) {}

  void publish() {}
  void invalidate(const TlbRange& r) {
    MmuextOp ops[kBatch];
    unsigned n = 0;
    const u64 stride = u64{1} << r.stride_shift;
    for (u64 va = r.first.value();; va += stride) {
      ops[n].cmd = kMmuextInvlpgLocal;
      ops[n].arg1 = va;
      ops[n].arg2 = 0;
      if (++n == kBatch) send(ops, n);
      // `last` lies inside the last stride; stop before wrapping past it.
      if (r.last.value() - va < stride) break;
    }
    send(ops, n);
    invlpgs_ += ((r.last.value() - r.first.value()) >> r.stride_shift) + 1;
  }
  void invalidate_all(bool /*global*/) {
    // Guest kernel leaves are never global under PV; a local flush drops
    // every translation of the guest.
    MmuextOp op;
    op.cmd = kMmuextTlbFlushLocal;
    unsigned n = 1;
    send(&op, n);
    ++full_flushes_;
  }
  void complete() {}

  /// Operations Xen refused (0 in a healthy guest) and the first error.
  [[nodiscard]] u64 failures() const { return failures_; }
  [[nodiscard]] int first_error() const { return first_error_; }
  /// Pages invalidated by address, and full flushes, for reports.
  [[nodiscard]] u64 invlpgs() const { return invlpgs_; }
  [[nodiscard]] u64 full_flushes() const { return full_flushes_; }
  H& hypercall() { return hypercall_; }

 private:
  void send(MmuextOp* ops, unsigned& n) {
    if (n == 0) return;
    ++hypercalls_;
    const int rc = hypercall_.mmuext_op(ops, n);
    if (rc != 0) {
      if (failures_++ == 0) first_error_ = rc;
    }
    n = 0;
  }

  H hypercall_;
  u64 failures_ = 0;
  int first_error_ = 0;
  u64 invlpgs_ = 0;
  u64 full_flushes_ = 0;
  u64 hypercalls_ = 0;
};

// ---- Transient slots ----------------------------------------------------------------

/// The attributes of a transient slot under PV (early::TransientSlots'
/// `attrs`): the slots map page-table pages, which a PV guest may map only
/// read-only (the engine reads through the slot and writes through
/// MmuUpdateWriter); not global, as no guest kernel leaf is.
inline constexpr Attrs kSlotAttrs{Perm::R, MemType::WriteBack, false};

/// TransientSlots' SlotEntryStore under PV: a slot's level-0 entry lives in
/// a page table, which the guest cannot write, so each slot entry change is
/// one mmu_update request, sent at once (the slot is used right after).
/// `level0` is the pseudo-physical address of the level-0 table holding the
/// slot entries. The slot policy's TLB sink (MmuextSink) then invalidates
/// the slot's page as on bare metal.
template <Hypercall H, MachineTranslation Tr>
class SlotEntryUpdate {
 public:
  SlotEntryUpdate(H hypercall, Tr translation, PhysAddr level0)
      : hypercall_(hypercall), tr_(translation), level0_(level0) {}

  bool store(u64* /*entry*/, unsigned index, u64 raw) {
    const MmuUpdate req{(tr_.to_machine(level0_) + u64{index} * sizeof(u64)) | kMmuNormalPtUpdate,
                        raw};
    ++requests_;
    return hypercall_.mmu_update(&req, 1) == 0;
  }

  [[nodiscard]] u64 requests() const { return requests_; }

 private:
  H hypercall_;
  Tr tr_;
  PhysAddr level0_;
  u64 requests_ = 0;
};

// ---- The allocator ----------------------------------------------------------------

/// Wraps a table allocator: every page it hands out is made read-only by the
/// caller's hook before the engine sees it, and made writable again (hook
/// first) when the engine gives it back, which the engine does only after the
/// page is unlinked and its TLB work completed.
///
/// `Inner` is referenced, not copied (the engine copies its allocator). An
/// inner allocator that writes into free pages (FreeListAllocator threads its
/// list through them) needs a make_writable that really makes the page
/// writable; BumpAllocator and StaticPoolAllocator never touch page contents.
template <TableAllocator Inner, PageProtection Protect>
class ReadOnlyTables {
 public:
  ReadOnlyTables(Inner& inner, Protect protect) : inner_(&inner), protect_(protect) {}

  bool reserve(u64 n) { return inner_->reserve(n); }
  /// Precondition: a page is reserved.
  PhysAddr take() {
    const PhysAddr pa = inner_->take();
    protect_.make_readonly(pa);
    return pa;
  }
  void release(PhysAddr pa) {
    protect_.make_writable(pa);
    inner_->release(pa);
  }
  void give_back_unused() { inner_->give_back_unused(); }

  Inner& inner() { return *inner_; }
  Protect& protect() { return protect_; }

 private:
  Inner* inner_;
  Protect protect_;
};

// ---- Creating a space --------------------------------------------------------------

/// Allocates a root (read-only from the allocator's take() on), clears its
/// 512 entries through `writer` (Xen writes them; the page may hold anything
/// before), sends them, and adopts it. Use this instead of
/// AddressSpace::create, which clears the root with direct stores.
///
/// Not done here (the caller's, before loading the root): pinning it as an
/// L4 (MMUEXT_PIN_L4_TABLE) and copying the slots the guest shares with other
/// address spaces; Xen fills its own reserved L4 slots when it validates.
///
/// Errors: OutOfTables (nothing taken).
template <MachineTranslation Tr, TableAccess Access, TableAllocator Alloc, EntryWriter Writer,
          TlbSink Sink>
Result<AddressSpace<PvFormat<Tr>, Access, Alloc, Writer, Sink>> create_space(
    PvFormat<Tr> format, Access access, Alloc alloc, Writer writer, Sink sink) {
  using Space = AddressSpace<PvFormat<Tr>, Access, Alloc, Writer, Sink>;
  if (!alloc.reserve(1)) return Failure{Op::Create, Error::OutOfTables, {}, {}, kNoLevel, 1};
  const PhysAddr root = alloc.take();
  const unsigned top = format.levels() - 1;
  const unsigned entries = 1u << format.index_bits(top);
  const u64 invalid = format.encode(Entry::invalid(), top);
  u64* table = access.table(root);
  for (unsigned i = 0; i < entries; ++i)
    writer.store_fresh(&table[i], invalid, WriteSite{root, i, top});
  if constexpr (requires { writer.flush(); }) writer.flush();
  access.done(table);
  return Space(format, access, alloc, writer, sink, root);
}

// ---- The direct map ------------------------------------------------------------------

/// What map_direct() did.
struct DirectMapReport {
  u64 writable_bytes = 0;   // mapped (or kept) with the caller's attributes
  u64 read_only_bytes = 0;  // mapped (or kept) without W
  u64 leaves_written = 0;
  u64 tables_allocated = 0;
  unsigned maps = 0;  // map() calls
};

/// Maps every pseudo-physical address `pa` of `ram` at `base + pa` with
/// `attrs`, except the `read_only` ranges (typically the table pool; sorted,
/// disjoint, page-aligned; clipped to `ram`), which get `attrs` without W, so
/// that no writable leaf of this space maps a page that is or may become a
/// page table. Existing translations are kept (OnExisting::Keep): no valid
/// entry is overwritten.
///
/// Checked before any change: the ranges are well formed, and no existing
/// leaf in a read-only range's part of the direct map is writable.
///
/// Errors: BadConfig (read_only ranges unsorted or overlapping; subject
/// "read-only ranges"), Unaligned (a range, `ram` or `base` off a page),
/// AlreadyMapped (an existing writable leaf over a read-only range; subject
/// "read-only range mapped writable", va/pa: the leaf), and anything map()
/// reports (subject "direct map"). Not transactional across its map() calls:
/// after a failure of a later call (OutOfTables) the earlier pieces stay
/// mapped; they are correct, and a retry with more tables completes the map.
template <class Space>
Result<DirectMapReport> map_direct(Space& space, VirtAddr base, PhysRange ram,
                                   const PhysRange* read_only, unsigned count, Attrs attrs) {
  DirectMapReport report;
  const auto fail = [](Error e, VirtAddr va, PhysAddr pa, const char* subject) {
    Failure f{Op::Map, e, va, pa, kNoLevel};
    f.subject = subject;
    if (e == Error::Unaligned) f.alignment = kPageSize;
    return f;
  };
  if (!base.is_aligned(kPageSize) || !ram.base.is_aligned(kPageSize) ||
      !is_aligned(ram.size, kPageSize))
    return fail(Error::Unaligned, base, ram.base, "direct map");
  const PhysAddr ram_end = ram.base + ram.size;
  for (unsigned k = 0; k < count; ++k) {
    const PhysRange& r = read_only[k];
    if (!r.base.is_aligned(kPageSize) || !is_aligned(r.size, kPageSize))
      return fail(Error::Unaligned, base + r.base.value(), r.base, "read-only ranges");
    if (k > 0 && r.base < read_only[k - 1].base + read_only[k - 1].size)
      return fail(Error::BadConfig, base + r.base.value(), r.base, "read-only ranges");
  }
  Attrs ro = attrs;
  ro.perm = ro.perm & ~Perm::W;

  // Clipped read-only piece k, empty when outside ram.
  const auto clip = [&](const PhysRange& r) {
    const PhysAddr lo = r.base < ram.base ? ram.base : r.base;
    const PhysAddr hi = r.base + r.size > ram_end ? ram_end : r.base + r.size;
    return hi > lo ? PhysRange{lo, hi - lo} : PhysRange{lo, 0};
  };

  // No existing writable leaf may stay over a read-only range.
  for (unsigned k = 0; k < count; ++k) {
    const PhysRange r = clip(read_only[k]);
    if (r.size == 0) continue;
    Mapping bad{};
    bool found = false;
    const Status walked = space.walk(base + r.base.value(), r.size, [&](const Mapping& m) {
      if (!has(m.attrs.perm, Perm::W)) return true;
      bad = m;
      found = true;
      return false;
    });
    if (!walked.ok()) return walked.failure();
    if (found) return fail(Error::AlreadyMapped, bad.va, bad.pa, "read-only range mapped writable");
  }

  MapOptions mo;
  mo.leaf_sizes = kPageSize;
  mo.existing = OnExisting::Keep;
  mo.allow_split = false;
  const auto piece = [&](PhysAddr lo, u64 size, const Attrs& a) -> Status {
    if (size == 0) return Ok{};
    auto mapped = space.map(base + lo.value(), lo, size, a, mo);
    ++report.maps;
    if (!mapped.ok()) {
      Failure f = mapped.failure();
      f.subject = "direct map";
      return f;
    }
    report.leaves_written += mapped->stats.leaves_written;
    report.tables_allocated += mapped->stats.tables_allocated;
    (has(a.perm, Perm::W) ? report.writable_bytes : report.read_only_bytes) += size;
    return Ok{};
  };

  PhysAddr cur = ram.base;
  for (unsigned k = 0; k < count; ++k) {
    const PhysRange r = clip(read_only[k]);
    if (r.size == 0) continue;
    if (auto s = piece(cur, r.base - cur, attrs); !s.ok()) return s.failure();
    if (auto s = piece(r.base, r.size, ro); !s.ok()) return s.failure();
    cur = r.base + r.size;
  }
  if (auto s = piece(cur, ram_end - cur, attrs); !s.ok()) return s.failure();
  return report;
}

}  // namespace ptkit::xen
