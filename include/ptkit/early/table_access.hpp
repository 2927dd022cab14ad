// Table-access policies for early boot (DESIGN.md §2 "Access", §5): how the
// engine reaches a page table from its physical address before a direct map
// of all memory exists.
//
//  - ImageAccess: tables that live statically inside the image, reachable at
//    physical - load offset (the image is mapped, so are they).
//  - DirectMapAccess: tables from a boot allocator inside a physical window
//    that an early direct map already covers.
//  - TransientSlots: any other table, through a small fixed set of virtual
//    page slots whose last-level entries this policy writes itself, with one
//    atomic store, never through AddressSpace. Nothing recurses, so it works
//    from the first instruction that has any page table at all.
//  - ChainAccess: asks each policy in turn; the first that covers a physical
//    address reaches it.
//
// All of them satisfy TableAccess (ptkit/access.hpp). The ones a chain can
// hold also answer covers(pa) (can this policy reach the table at pa?) and
// owns(ptr) (did a table(pa) of this policy return ptr?), so that done(ptr)
// goes back to the policy that produced the pointer.
//
// A policy that cannot reach a table returns nullptr from table(pa) and, where
// it has state, records why (last_error()); it never writes anywhere. The
// engine (space.hpp) does not expect nullptr: a configuration whose slots
// suffice for the engine (TransientSlots::enough_for) and whose chain covers
// every table the allocator hands out never produces one inside the engine.
#pragma once

#include <concepts>

#include "ptkit/access.hpp"
#include "ptkit/addr.hpp"
#include "ptkit/attrs.hpp"
#include "ptkit/format.hpp"
#include "ptkit/status.hpp"
#include "ptkit/tlb.hpp"

namespace ptkit::early {

/// A TableAccess that can say which physical addresses it reaches and which
/// pointers it handed out: what ChainAccess needs of its members.
template <class A>
concept CoveringAccess = TableAccess<A> && requires(const A a, PhysAddr pa, const u64* ptr) {
  { a.covers(pa) } -> std::same_as<bool>;
  { a.owns(ptr) } -> std::same_as<bool>;
};

/// Why a policy could not reach a table (the most recent failure), and how
/// often that happened. `what` is a fixed text; `in_use`/`slots` are filled by
/// TransientSlots ("transient slots exhausted": `in_use` of `slots` slots
/// held other tables).
struct AccessError {
  Error error = Error::TableUnreachable;
  const char* what = nullptr;  // nullptr: no failure yet
  PhysAddr pa;                 // the table asked for
  unsigned in_use = 0;
  unsigned slots = 0;
  u64 count = 0;  // failures since creation

  [[nodiscard]] constexpr bool any() const { return count != 0; }
  /// As a Failure for a caller that reports errors that way. Reaching a table
  /// is a step of a walk, hence Op::Walk unless the caller says otherwise;
  /// `needed` is the slots the request would have needed (in_use + 1).
  [[nodiscard]] constexpr Failure failure(Op op = Op::Walk) const {
    Failure f{op, error, {}, pa, kNoLevel};
    f.subject = what;
    if (slots != 0) f.needed = u64{in_use} + 1;
    return f;
  }
};

// ---- Tables inside the image ---------------------------------------------------

/// Tables that are part of the loaded image: physical [image_pa, image_pa +
/// size) is mapped at virtual = physical - load_offset. The offset is taken
/// modulo 2^64, so an image linked above its load address (a negative
/// offset, the usual case for a higher-half kernel) works the same way.
struct ImageAccess {
  PhysAddr image_pa;
  u64 size = 0;
  u64 load_offset = 0;  // physical - virtual, modulo 2^64

  /// The image loaded at `image_pa` and mapped at `image_va`.
  static constexpr ImageAccess at(PhysAddr image_pa, u64 size, VirtAddr image_va) {
    return ImageAccess{image_pa, size, image_pa.value() - image_va.value()};
  }

  [[nodiscard]] constexpr bool covers(PhysAddr pa) const {
    return pa.value() - image_pa.value() < size;  // one comparison; wraps below image_pa
  }
  /// The table's virtual address, or nullptr if `pa` lies outside the image.
  [[nodiscard]] u64* table(PhysAddr pa) const {
    if (!covers(pa)) return nullptr;
    // The policy's contract: the image is mapped at a fixed offset.
    return reinterpret_cast<u64*>(pa.value() - load_offset);  // NOLINT
  }
  void done(u64*) const {}
  [[nodiscard]] bool owns(const u64* ptr) const {
    // Compared as integers: the pointer may be any address, not one into an
    // object the compiler knows.
    const u64 va = reinterpret_cast<u64>(ptr);  // NOLINT
    return va - (image_pa.value() - load_offset) < size;
  }
};

// ---- Tables behind a direct map ---------------------------------------------------

/// Tables inside physical [lo, hi] (inclusive, so the window may end at the
/// top of the physical space), which an early direct map maps at virtual
/// `base`: the table at pa is at base + (pa - lo). Typically the boot
/// allocator's range.
struct DirectMapAccess {
  PhysAddr lo;
  PhysAddr hi;
  VirtAddr base;

  [[nodiscard]] constexpr bool covers(PhysAddr pa) const { return lo <= pa && pa <= hi; }
  /// The table's virtual address, or nullptr if `pa` lies outside the window.
  [[nodiscard]] u64* table(PhysAddr pa) const {
    if (!covers(pa)) return nullptr;
    // The policy's contract: the window is mapped linearly at `base`.
    return reinterpret_cast<u64*>(base.value() + (pa - lo));  // NOLINT
  }
  void done(u64*) const {}
  [[nodiscard]] bool owns(const u64* ptr) const {
    const u64 va = reinterpret_cast<u64>(ptr);  // NOLINT: compared as an integer
    return va - base.value() <= hi - lo;
  }
};

// ---- Transient slots ----------------------------------------------------------------

/// How the pointer for a slot's virtual address is formed, once the slot's
/// entry is written and its TLB work done: `at(va)` returns a pointer through
/// which the page mapped at `va` is read and written.
template <class W>
concept SlotWindow = requires(W w, VirtAddr va) {
  { w.at(va) } -> std::same_as<u64*>;
};

/// The real thing: the slot's virtual address is the pointer.
///
/// Why a policy for something this small: the slot policy's job is to write
/// the entry that makes the address work, and host tests want to check
/// exactly that. A host test cannot dereference the slot address, so its
/// window models the MMU instead: it walks the page tables that map the slot
/// window (with the simulator's reference walker, which shares no code with
/// the formats) and returns the host memory of whatever physical page the
/// walk reaches. A wrong entry then sends the engine's reads and writes to
/// the wrong page, or faults, just as it would on hardware; the policy
/// itself is the same code in both builds.
struct VirtualSlotWindow {
  [[nodiscard]] u64* at(VirtAddr va) const {
    // The slot's entry was just written to map the table's page here.
    return reinterpret_cast<u64*>(va.value());  // NOLINT
  }
};
static_assert(SlotWindow<VirtualSlotWindow>);

/// How a slot's level-0 entry is written: store(entry, index, raw) makes
/// `entry` (index `index` of its level-0 table) hold `raw`, or returns false
/// and changes nothing. The slot policy does the TLB work after it.
template <class S>
concept SlotEntryStore = requires(S s, u64* entry, unsigned index, u64 raw) {
  { s.store(entry, index, raw) } -> std::same_as<bool>;
};

/// The usual way: one atomic 64-bit store into the level-0 table, which the
/// caller can write.
struct DirectSlotStore {
  bool store(u64* entry, unsigned /*index*/, u64 raw) const {
    // Release: every access through the slot's previous mapping (the
    // engine's plain stores into the table) is ordered before the entry
    // changes, by the compiler and, on Arm, by the store itself.
    __atomic_store_n(entry, raw, __ATOMIC_RELEASE);
    return true;
  }
};
static_assert(SlotEntryStore<DirectSlotStore>);

/// Table views the engine (AddressSpace, space.hpp) holds open at the same
/// time, at most, for a format with `levels` levels: one per level of the
/// path from the root to the table being written. Splits, merges and fresh
/// tables extend that path downwards only (a fresh or split table is opened
/// while the path above it is open, never below it), and query()/walk() open
/// one table at a time. The views are of distinct tables: the engine opens a
/// table again only after closing it.
///
/// An allocator that reaches its free pages through the same policy (a free
/// list threaded through them, FreeListAllocator<AccessRef<TransientSlots>>)
/// adds nothing: it takes a page while at most the path above the new table
/// is open (levels - 1 views), and releases one only after the engine closed
/// that table's view or outside the walk.
///
/// Measured (tests/early/test_table_access.cpp, EngineViews, with a counting
/// access wrapper) over map, unmap and protect with splits (also of a 1G leaf
/// into pages), merges, fresh subtrees, contiguous runs and random updates,
/// with and without such an allocator: exactly `levels` on every format
/// tested: x86-64 4 and 5 levels, AArch64 4K/16K/64K granules with 2 to 5
/// levels (TTBR0 and TTBR1, LPA2, 52-bit 64K), RISC-V Sv39/48/57.
constexpr unsigned engine_views(unsigned levels) { return levels; }

/// The attributes of a slot's mapping: supervisor read/write, never
/// executable (tables are data), write-back (the table walker's view of table
/// memory on every architecture here), and global, since the slots serve
/// every address space that shares the window.
inline constexpr Attrs kSlotAttrs{RW, MemType::WriteBack, true};

/// N virtual page slots at a fixed, page-aligned window [window, window + N
/// pages) whose level-0 table the caller can already write (e.g. a table in
/// the image): table(pa) writes one slot's level-0 entry to map pa's page and
/// returns the slot's address; done(ptr) writes the entry invalid again.
///
/// Writes: one atomic 64-bit store per entry (never through AddressSpace, so
/// the policy works while the engine is in the middle of an update, and
/// before anything else does), or whatever the `Store` policy does instead
/// (a Xen PV guest cannot write its tables: xen::SlotEntryUpdate). A slot's
/// entry only ever goes invalid -> valid -> invalid, so no break-before-make
/// is ever needed.
///
/// TLB: both transitions are followed by publish, an invalidation of exactly
/// the slot's page, and complete. On done() that removes the old translation
/// before the slot is reused. On table() it is needed too: a RISC-V hart may
/// cache the invalid entry (Privileged spec §4.2.1) and the slot is used at
/// once, with no fault-and-retry path; on Arm the publish/complete pair is
/// the DSB + ISB that orders the new entry before the accesses through it.
///
/// A reference count per slot lets the engine open the same table twice: the
/// second table(pa) returns the same slot, the last done() frees it. Tables
/// smaller than a page (some roots) share their page's slot; the returned
/// pointer is offset within it.
///
/// Exhaustion: when every slot holds another table, table(pa) writes nothing,
/// returns nullptr and records the error (last_error(): "transient slots
/// exhausted", with how many are in use). acquire(pa) is the same with a
/// Result, for callers outside the engine. A store the `Store` policy
/// refuses is recorded the same way ("slot entry store refused"): table()
/// returns nullptr with the slot still free; a refused store in done()
/// leaves the slot's old mapping in place, so that slot is never used again
/// (it stays counted in in_use()).
///
/// Copies: the state (which slot holds what) lives in the object, the entries
/// in the shared level-0 table, so two copies in use at once would hand out
/// the same slot. A copy is allowed only while no slot is in use (the engine
/// copies its policy before it opens anything); otherwise it traps. To share
/// one set of slots between users, hand each an AccessRef to it.
///
/// Not thread-safe: one CPU at a time (early boot), or a lock around use.
template <PagingFormat Format, TlbSink Sink, unsigned N, SlotWindow Window = VirtualSlotWindow,
          SlotEntryStore Store = DirectSlotStore>
class TransientSlots {
  static_assert(N >= 1, "TransientSlots: at least one slot");

 public:
  /// Slots available. Check it against engine_views(levels) (enough_for()).
  static constexpr unsigned capacity() { return N; }

  /// Whether N slots are enough for the engine over `format` (allocator
  /// included, see engine_views()). A caller that keeps tables of its own
  /// open in the same slots across an engine call needs that many more.
  [[nodiscard]] static constexpr bool enough_for(const Format& format) {
    return N >= engine_views(format.levels());
  }

  /// The slots at `window` (page-aligned), whose level-0 entries live in the
  /// level-0 table at `level0` (a pointer the caller can write: the table that
  /// maps the window, e.g. one in the image). `attrs` defaults to kSlotAttrs.
  ///
  /// Errors (Op::Create, subject "transient slot window"): Unaligned (window
  /// not a multiple of the smallest page), NonCanonical (a slot address
  /// outside the format's space), BadSize (the N slots do not fit in one
  /// level-0 table after the window's first entry), AttrUnsupported (the
  /// format cannot express `attrs`), BadConfig (level0 is null).
  static Result<TransientSlots> create(Format format, VirtAddr window, u64* level0, Sink sink = {},
                                       Window slot_window = {}, Attrs attrs = kSlotAttrs,
                                       Store store = {}) {
    Failure f{Op::Create, Error::BadConfig, window, {}, 0};
    f.subject = "transient slot window";
    const u64 page = u64{1} << format.page_shift();
    const u64 entries = u64{1} << format.index_bits(0);
    if (level0 == nullptr) return f;
    if (!window.is_aligned(page)) {
      f.error = Error::Unaligned;
      f.alignment = page;
      return f;
    }
    const VirtAddr last = window + (u64{N} * page - 1);
    if (!format.is_canonical(window) || !format.is_canonical(last) || last < window) {
      f.error = Error::NonCanonical;
      return f;
    }
    const u64 first_index = (window.value() >> format.page_shift()) & (entries - 1);
    if (first_index + N > entries) {
      f.error = Error::BadSize;
      f.needed = N;
      return f;
    }
    if (!format.can_express(attrs)) {
      f.error = Error::AttrUnsupported;
      return f;
    }
    return TransientSlots(format, window, level0 + first_index, static_cast<unsigned>(first_index),
                          sink, slot_window, attrs, store);
  }

  TransientSlots(const TransientSlots& other)
      : format_(other.format_),
        window_va_(other.window_va_),
        entries_(other.entries_),
        first_index_(other.first_index_),
        sink_(other.sink_),
        window_(other.window_),
        store_(other.store_),
        attrs_(other.attrs_),
        page_(other.page_),
        high_water_(other.high_water_),
        error_(other.error_) {
    PTKIT_INVARIANT(other.in_use() == 0);  // two owners of one held slot
  }
  TransientSlots& operator=(const TransientSlots& other) {
    if (this != &other) {
      PTKIT_INVARIANT(in_use() == 0);  // the slots this copy holds would be lost
      copy_from(other);
    }
    return *this;
  }
  ~TransientSlots() = default;

  /// Maps the page of the table at `pa` into a slot (or finds the slot that
  /// already maps it) and returns the table's address there; nullptr when
  /// every slot holds another table (see last_error()). Precondition: `pa`
  /// is below the format's output size (covers()).
  [[nodiscard]] u64* table(PhysAddr pa) {
    const PhysAddr frame(align_down(pa.value(), page_));
    const u64 offset_words = (pa - frame) / sizeof(u64);
    unsigned free_slot = N;
    for (unsigned i = 0; i < N; ++i) {
      if (slots_[i].refs != 0 && slots_[i].frame == frame) {
        ++slots_[i].refs;
        return slots_[i].ptr + offset_words;
      }
      if (slots_[i].refs == 0 && !slots_[i].stuck && free_slot == N) free_slot = i;
    }
    if (free_slot == N) {
      record("transient slots exhausted", pa, N);
      return nullptr;
    }
    Slot& s = slots_[free_slot];
    const VirtAddr va = slot_va(free_slot);
    if (!store_entry(free_slot, format_.encode(Entry::leaf(frame, attrs_), 0))) {
      record("slot entry store refused", pa, held_);
      return nullptr;
    }
    flush_slot(va);
    s.frame = frame;
    s.refs = 1;
    s.ptr = window_.at(va);
    ++held_;
    if (held_ > high_water_) high_water_ = held_;
    return s.ptr + offset_words;
  }

  /// Gives back a pointer table() returned. The last done() for a slot
  /// writes its entry invalid and invalidates its page. A pointer this
  /// policy did not hand out (or one given back already) changes nothing and
  /// is recorded as an error ("pointer not from a transient slot").
  void done(u64* ptr) {
    const unsigned i = slot_of(ptr);
    if (i == N) {
      error_.what = "pointer not from a transient slot";
      error_.pa = PhysAddr();
      error_.in_use = held_;
      error_.slots = 0;
      ++error_.count;
      return;
    }
    Slot& s = slots_[i];
    if (--s.refs != 0) return;
    if (!store_entry(i, format_.encode(Entry::invalid(), 0))) {
      // The old mapping stays: never hand this slot out again.
      record("slot entry store refused", s.frame, held_);
      s.stuck = true;
      s.ptr = nullptr;
      return;
    }
    flush_slot(slot_va(i));
    s.ptr = nullptr;
    s.frame = PhysAddr();
    --held_;
  }

  /// table(pa) for callers outside the engine: the pointer, or the error
  /// (TableUnreachable, subject "transient slots exhausted", `pa`, `needed`
  /// = slots in use + 1). Give the pointer back with done().
  [[nodiscard]] Result<u64*> acquire(PhysAddr pa, Op op = Op::Walk) {
    u64* ptr = table(pa);
    if (ptr == nullptr) return error_.failure(op);
    return ptr;
  }

  /// Any page the format can output.
  [[nodiscard]] constexpr bool covers(PhysAddr pa) const {
    return format_.phys_bits() >= 64 || (pa.value() >> format_.phys_bits()) == 0;
  }
  [[nodiscard]] bool owns(const u64* ptr) const { return slot_of(ptr) != N; }

  /// Slots holding a table now, and the most ever held at once.
  [[nodiscard]] unsigned in_use() const { return held_; }
  [[nodiscard]] unsigned high_water() const { return high_water_; }
  [[nodiscard]] const AccessError& last_error() const { return error_; }
  /// The virtual address of slot `i` (i < N).
  [[nodiscard]] VirtAddr slot_va(unsigned i) const { return window_va_ + u64{i} * page_; }
  /// Where slot `i`'s level-0 entry lives.
  [[nodiscard]] const u64* slot_entry(unsigned i) const { return &entries_[i]; }
  Sink& sink() { return sink_; }
  Window& window() { return window_; }
  Store& store() { return store_; }

 private:
  struct Slot {
    PhysAddr frame;  // the page mapped while refs != 0
    u64* ptr = nullptr;
    unsigned refs = 0;
    bool stuck = false;  // its entry could not be made invalid again
  };

  TransientSlots(Format format, VirtAddr window, u64* entries, unsigned first_index, Sink sink,
                 Window slot_window, Attrs attrs, Store store)
      : format_(format),
        window_va_(window),
        entries_(entries),
        first_index_(first_index),
        sink_(sink),
        window_(slot_window),
        store_(store),
        attrs_(attrs),
        page_(u64{1} << format.page_shift()) {}

  void record(const char* what, PhysAddr pa, unsigned in_use) {
    error_.what = what;
    error_.pa = pa;
    error_.in_use = in_use;
    error_.slots = N;
    ++error_.count;
  }

  void copy_from(const TransientSlots& other) {
    PTKIT_INVARIANT(other.in_use() == 0);  // two owners of one held slot
    format_ = other.format_;
    window_va_ = other.window_va_;
    entries_ = other.entries_;
    first_index_ = other.first_index_;
    sink_ = other.sink_;
    window_ = other.window_;
    store_ = other.store_;
    attrs_ = other.attrs_;
    page_ = other.page_;
    error_ = other.error_;
    high_water_ = other.high_water_;
    held_ = 0;
    for (Slot& s : slots_) s = Slot{};
  }

  /// The slot whose page contains `ptr`, or N.
  [[nodiscard]] unsigned slot_of(const u64* ptr) const {
    // Compared as integers: `ptr` may point into any slot's page.
    const u64 p = reinterpret_cast<u64>(ptr);  // NOLINT
    for (unsigned i = 0; i < N; ++i) {
      if (slots_[i].refs == 0) continue;
      if (p - reinterpret_cast<u64>(slots_[i].ptr) < page_) return i;  // NOLINT
    }
    return N;
  }

  bool store_entry(unsigned i, u64 raw) {
    return store_.store(&entries_[i], first_index_ + i, raw);
  }

  /// publish -> invalidate the slot's page -> complete (see the class
  /// comment for why both transitions need it).
  void flush_slot(VirtAddr va) {
    sink_.publish();
    sink_.invalidate(TlbRange{va, va + (page_ - 1), format_.page_shift(), attrs_.global, false});
    sink_.complete();
    // Accesses through the new mapping must not be hoisted above the entry
    // write by the compiler, whatever the sink compiles to (NullSink: nothing).
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
  }

  Format format_;
  VirtAddr window_va_;
  u64* entries_ = nullptr;    // slot i's level-0 entry is entries_[i]
  unsigned first_index_ = 0;  // entries_[0]'s index in its level-0 table
  Sink sink_;
  Window window_;
  Store store_;
  Attrs attrs_;
  u64 page_ = 0;
  Slot slots_[N] = {};
  unsigned held_ = 0;
  unsigned high_water_ = 0;
  AccessError error_{};
};

// ---- Sharing one policy ------------------------------------------------------------

/// Forwards to a policy that lives elsewhere: the engine copies its access
/// policy, and a stateful one (TransientSlots) must exist once.
template <TableAccess A>
class AccessRef {
 public:
  explicit constexpr AccessRef(A& target) : target_(&target) {}
  [[nodiscard]] u64* table(PhysAddr pa) const { return target_->table(pa); }
  void done(u64* ptr) const { target_->done(ptr); }
  [[nodiscard]] bool covers(PhysAddr pa) const requires CoveringAccess<A> {
    return target_->covers(pa);
  }
  [[nodiscard]] bool owns(const u64* ptr) const requires CoveringAccess<A> {
    return target_->owns(ptr);
  }
  A& get() const { return *target_; }

 private:
  A* target_;
};

// ---- The chain --------------------------------------------------------------------

namespace detail {
/// The chain's members, first to last (a tuple without <tuple>).
template <class... P>
struct ChainStore {};
template <class F, class... R>
struct ChainStore<F, R...> {
  F first;
  ChainStore<R...> rest;
};
}  // namespace detail

/// Policies tried in order: table(pa) goes to the first whose covers(pa) is
/// true, done(ptr) to the first whose owns(ptr) is true. Precondition: the
/// policies' virtual ranges are disjoint, so exactly one owns a pointer.
///
/// Errors are recorded, never written anywhere (last_error()): a pa no
/// policy covers gives nullptr and "no access policy covers the table"; a
/// covering policy that returns nullptr (slots exhausted) gives "the covering
/// access policy could not reach the table", its own reason being in its own
/// last_error(); done() of a pointer no policy owns changes nothing and gives
/// "pointer not from any access policy of the chain".
///
/// A chain is itself a CoveringAccess, so chains nest.
template <CoveringAccess... Policies>
class ChainAccess {
  static_assert(sizeof...(Policies) >= 1, "ChainAccess: at least one policy");

 public:
  constexpr explicit ChainAccess(Policies... policies) : members_(make(policies...)) {}

  [[nodiscard]] u64* table(PhysAddr pa) {
    bool covered = false;
    u64* ptr = table_in(members_, pa, covered);
    if (ptr == nullptr)
      record(covered ? "the covering access policy could not reach the table"
                     : "no access policy covers the table",
             pa);
    return ptr;
  }
  void done(u64* ptr) {
    if (!done_in(members_, ptr)) record("pointer not from any access policy of the chain", {});
  }
  [[nodiscard]] bool covers(PhysAddr pa) const { return covers_in(members_, pa); }
  [[nodiscard]] bool owns(const u64* ptr) const { return owns_in(members_, ptr); }

  /// The chain's own most recent failure and how many it has seen.
  [[nodiscard]] const AccessError& last_error() const { return error_; }

  /// Policy `I` of the chain (0 is the first).
  template <unsigned I>
  auto& get() {
    static_assert(I < sizeof...(Policies), "ChainAccess::get: index beyond the chain");
    return get_in<I>(members_);
  }

 private:
  using Store = detail::ChainStore<Policies...>;

  template <class F, class... R>
  static constexpr detail::ChainStore<F, R...> make(F first, R... rest) {
    return detail::ChainStore<F, R...>{first, make(rest...)};
  }
  static constexpr detail::ChainStore<> make() { return {}; }

  template <class F, class... R>
  static u64* table_in(detail::ChainStore<F, R...>& s, PhysAddr pa, bool& covered) {
    if (s.first.covers(pa)) {
      covered = true;
      return s.first.table(pa);
    }
    if constexpr (sizeof...(R) == 0)
      return nullptr;
    else
      return table_in(s.rest, pa, covered);
  }
  template <class F, class... R>
  static bool done_in(detail::ChainStore<F, R...>& s, u64* ptr) {
    if (s.first.owns(ptr)) {
      s.first.done(ptr);
      return true;
    }
    if constexpr (sizeof...(R) == 0)
      return false;
    else
      return done_in(s.rest, ptr);
  }
  template <class F, class... R>
  static bool covers_in(const detail::ChainStore<F, R...>& s, PhysAddr pa) {
    if (s.first.covers(pa)) return true;
    if constexpr (sizeof...(R) == 0)
      return false;
    else
      return covers_in(s.rest, pa);
  }
  template <class F, class... R>
  static bool owns_in(const detail::ChainStore<F, R...>& s, const u64* ptr) {
    if (s.first.owns(ptr)) return true;
    if constexpr (sizeof...(R) == 0)
      return false;
    else
      return owns_in(s.rest, ptr);
  }
  template <unsigned I, class F, class... R>
  static auto& get_in(detail::ChainStore<F, R...>& s) {
    if constexpr (I == 0)
      return s.first;
    else
      return get_in<I - 1>(s.rest);
  }

  void record(const char* what, PhysAddr pa) {
    error_.what = what;
    error_.pa = pa;
    ++error_.count;
  }

  Store members_;
  AccessError error_{};
};

static_assert(TableAccess<ImageAccess> && CoveringAccess<ImageAccess>);
static_assert(TableAccess<DirectMapAccess> && CoveringAccess<DirectMapAccess>);
static_assert(CoveringAccess<TransientSlots<ExampleFormat, NullSink, 4>>);
static_assert(CoveringAccess<ChainAccess<ImageAccess, DirectMapAccess>>);
static_assert(CoveringAccess<AccessRef<TransientSlots<ExampleFormat, NullSink, 4>>>);

}  // namespace ptkit::early
