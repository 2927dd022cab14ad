// The Xen PV test guest (issue 9): booted as dom0 of a real Xen, it builds
// its own address space with ptkit's Xen PV mode
// (include/ptkit/early/xen_pv.hpp), switches to it, checks it, and shows
// that the rules bite: ptkit refuses what Xen would refuse, and Xen refuses
// it with the expected code when it is forced through.
#include "check.hpp"
#include "kernel_space.hpp"
#include "machine.hpp"
#include "random_phase.hpp"
#include "serial.hpp"
#include "transient_slots.hpp"
#include "xen.hpp"

using ptkit::Attrs;
using ptkit::Perm;
using ptkit::PhysAddr;
using ptkit::u64;
using ptkit::u8;
using ptkit::VirtAddr;

// The linker script's layout of the image.
extern "C" char __image_start[], __text_start[], __text_end[], __rodata_start[], __data_start[],
    __pool_start[], __pool_end[], __bss_start[], __bss_end[], __image_end[];
extern "C" char page_fault_entry[];
extern "C" volatile u64 fault_resume, fault_error, fault_count;

// The guest's table pool: read-only from the first take() on.
alignas(4096) __attribute__((section(".bss.ptpool"))) u8 g_table_pool[kernel::kPoolPages][4096];

extern "C" [[noreturn]] void unexpected_fault(u64 error, u64 rip) {
  kernel::serial::write("FAIL unexpected page fault: error ");
  kernel::serial::hex(error);
  kernel::serial::write(" rip ");
  kernel::serial::hex(rip);
  kernel::serial::write("\n");
  kernel::exit_qemu(0x11);
}

namespace kernel {
namespace {

constexpr int kEbusy = -16;
constexpr int kEinval = -22;
constexpr u64 kPfPresent = 1;  // page-fault error code (SDM vol. 3A §4.7)
constexpr u64 kPfWrite = 2;

u64 pa_of(const void* p) { return reinterpret_cast<u64>(p) - kVirtBase; }

bool starts_with(const char* s, const char* prefix) {
  for (; *prefix != 0; ++s, ++prefix)
    if (*s != *prefix) return false;
  return true;
}

/// Writes `value` to `p`; true if that faulted (the trap handler resumes
/// after the store).
bool probe_write(volatile u64* p, u64 value) {
  const u64 before = fault_count;
  asm volatile(
      "leaq 1f(%%rip), %%rax\n\t"
      "movq %%rax, fault_resume(%%rip)\n\t"
      "movq %[v], (%[p])\n\t"
      "movq $0, fault_resume(%%rip)\n"
      "1:"
      :
      : [p] "r"(p), [v] "r"(value)
      : "rax", "memory");
  return fault_count != before;
}

/// Reads `p`; true if that faulted.
bool probe_read(const volatile u64* p, u64* out) {
  const u64 before = fault_count;
  u64 v = 0;
  asm volatile(
      "leaq 1f(%%rip), %%rax\n\t"
      "movq %%rax, fault_resume(%%rip)\n\t"
      "movq (%[p]), %[v]\n\t"
      "movq $0, fault_resume(%%rip)\n"
      "1:"
      : [v] "+r"(v)
      : [p] "r"(p)
      : "rax", "memory");
  *out = v;
  return fault_count != before;
}

/// The table at `level` on the way to `va` (pseudo-physical) and the
/// index of `va` in it; false if an upper entry is missing.
bool table_of(const Space& space, VirtAddr va, unsigned level, PhysAddr* table, unsigned* index) {
  PhysAddr t = space.root();
  for (unsigned l = space.format().levels() - 1;; --l) {
    const unsigned i = static_cast<unsigned>((va.value() >> (12 + 9 * l)) & 511);
    if (l == level) {
      *table = t;
      *index = i;
      return true;
    }
    const u64 raw = GuestAccess{}.table(t)[i];
    const ptkit::Entry e = space.format().decode(raw, l);
    if (!e.valid() || e.is_leaf()) return false;
    t = e.pa;
  }
}

/// One raw mmu_update, bypassing ptkit: Xen's verdict.
int raw_update(PhysAddr table, unsigned index, u64 val) {
  const ptkit::xen::MmuUpdate req{Translation{}.to_machine(table) + index * 8u, val};
  unsigned done = 0;
  return xen::mmu_update(&req, 1, &done);
}

void print_failure(const ptkit::xen::UpdateFailure& f) {
  serial::write("info mmu_update refused rc ");
  serial::dec(static_cast<u64>(-f.rc));
  serial::write(" ptr ");
  serial::hex(f.request.ptr);
  serial::write(" val ");
  serial::hex(f.request.val);
  serial::write("\n");
}

}  // namespace
}  // namespace kernel

extern "C" [[noreturn]] void kmain(const kernel::xen::StartInfo* si) {
  using namespace kernel;
  serial::write("ptkit xen pv guest\n");
  u64 pt_base = 0, nr_pt_frames = 0, shared_info = 0;
  {
    Check c("start-info");
    c.expect(starts_with(si->magic, "xen-3.0-x86_64"), "magic xen-3.0-x86_64");
    c.expect(si->nr_pages > 0 && si->nr_pages <= kMaxPages, "nr_pages", si->nr_pages);
    serial::write("info nr_pages ");
    serial::dec(si->nr_pages);
    serial::write(" pt_base ");
    serial::hex(si->pt_base);
    serial::write(" nr_pt_frames ");
    serial::dec(si->nr_pt_frames);
    serial::write(" mfn_list ");
    serial::hex(si->mfn_list);
    serial::write("\n");
    // The command line names the loader (the test's argument: "qemu" or
    // "grub"), which the runner requires as a line.
    serial::write("info loader ");
    for (unsigned k = 0; k < sizeof(si->cmd_line) && si->cmd_line[k] != 0; ++k)
      serial::put(si->cmd_line[k]);
    serial::write("\n");
    if (c.failed()) finish();
    pt_base = si->pt_base - kVirtBase;
    nr_pt_frames = si->nr_pt_frames;
    shared_info = si->shared_info;
  }
  {
    // The P2M, copied out of Xen's bootstrap area, agrees with Xen's M2P.
    Check c("p2m-m2p");
    g_nr_pages = si->nr_pages;
    const auto* mfn_list = reinterpret_cast<const u64*>(si->mfn_list);
    for (u64 pfn = 0; pfn < g_nr_pages; ++pfn) g_p2m[pfn] = mfn_list[pfn];
    for (u64 pfn = 0; pfn < g_nr_pages; ++pfn) {
      const PhysAddr back = Translation{}.to_pseudo(g_p2m[pfn] * kPage);
      if (!c.expect(back.value() == pfn * kPage, "m2p(p2m(pfn)) == pfn", pfn, back.value())) break;
    }
  }
  {
    // ptkit reads Xen's own tables through the access policy and PvFormat
    // (machine frames back to pseudo-physical through the M2P): the image is
    // at kVirtBase + pa, Xen's table pages are mapped without W.
    Check c("xen-tables");
    Pool unused_pool{PhysAddr(0)};
    Tables unused(unused_pool, PoolProtection{});
    const Space xen_space(Format(Translation{}), GuestAccess{}, unused,
                          Writer(xen::MmuUpdateCall{}, Translation{}), Sink(xen::MmuextCall{}),
                          PhysAddr(pt_base));
    for (u64 pa = 0; pa < pt_base + nr_pt_frames * kPage; pa += kPage) {
      auto m = xen_space.query(VirtAddr(kVirtBase + pa));
      if (!c.expect_ok(m, "query Xen's tables")) break;
      if (!c.expect(m->pa.value() == pa && m->level == 0, "image page maps its pa", pa,
                    m->pa.value()))
        break;
      const bool table = pa >= pt_base;
      if (!c.expect(!table || !has(m->attrs.perm, Perm::W), "Xen's table pages read-only", pa))
        break;
    }
  }
  {
    Check c("trap-table");
    static const xen::TrapInfo traps[] = {
        {14, 0, xen::kFlatKernelCs, reinterpret_cast<u64>(page_fault_entry)},
        {0, 0, 0, 0},
    };
    const int rc = xen::set_trap_table(traps);
    c.expect(rc == 0, "set_trap_table", static_cast<u64>(rc));
  }

  PoolProtection::g_pool_base = pa_of(g_table_pool);
  g_table_frames[0] = {PhysAddr(pa_of(__pool_start)), static_cast<u64>(__pool_end - __pool_start)};
  g_table_frames[1] = {PhysAddr(pt_base), nr_pt_frames * kPage};
  Pool pool{PhysAddr(PoolProtection::g_pool_base)};
  Tables tables(pool, PoolProtection{});
  auto created = ptkit::xen::create_space(table_guarding_format(), GuestAccess{}, tables,
                                          Writer(xen::MmuUpdateCall{}, Translation{}),
                                          Sink(xen::MmuextCall{}));
  {
    Check c("space-create");
    if (!c.expect_ok(created, "create_space")) finish();
    c.expect(!created->writer().failed(), "mmu_update of the root's entries");
    c.expect(PoolProtection::g_calls == 2 && PoolProtection::g_first_rc == 0,
             "root made read-only (2 update_va_mapping)", PoolProtection::g_calls,
             static_cast<u64>(PoolProtection::g_first_rc));
  }
  Space& space = *created;
  {
    // All of pseudo-physical memory at kDirectBase, 4K leaves, the pool and
    // Xen's bootstrap tables without W.
    Check c("direct-map");
    Attrs rw{};
    rw.perm = Perm::R | Perm::W;
    auto r = ptkit::xen::map_direct(space, VirtAddr(kDirectBase), {PhysAddr(0), g_nr_pages * kPage},
                                    g_table_frames, 2, rw);
    if (c.expect_ok(r, "map_direct")) {
      c.expect(r->leaves_written == g_nr_pages, "one leaf per page", r->leaves_written);
      c.expect(r->read_only_bytes == (kPoolPages + nr_pt_frames) * kPage, "read-only bytes",
               r->read_only_bytes);
    }
    c.expect(!space.writer().failed(), "every mmu_update accepted",
             static_cast<u64>(-space.writer().failure().rc));
    if (space.writer().failed()) print_failure(space.writer().failure());
    serial::write("info direct map: ");
    serial::dec(space.writer().requests());
    serial::write(" requests in ");
    serial::dec(space.writer().hypercalls());
    serial::write(" mmu_update hypercalls, ");
    serial::dec(pool.pages_in_use());
    serial::write(" table pages\n");
  }
  {
    Check c("image-map");
    struct Piece {
      const char* lo;
      const char* hi;
      Perm perm;
    };
    const Piece pieces[] = {
        {__text_start, __text_end, Perm::R | Perm::X},
        {__rodata_start, __data_start, Perm::R},  // .rodata and the notes
        {__data_start, __pool_start, Perm::R | Perm::W},
        {__pool_start, __pool_end, Perm::R},
        {__bss_start, __bss_end, Perm::R | Perm::W},
    };
    ptkit::MapOptions mo;
    mo.leaf_sizes = kPage;
    for (const Piece& p : pieces) {
      if (p.hi == p.lo) continue;
      Attrs a{};
      a.perm = p.perm;
      auto r = space.map(VirtAddr(reinterpret_cast<u64>(p.lo)), PhysAddr(pa_of(p.lo)),
                         static_cast<u64>(p.hi - p.lo), a, mo);
      if (!c.expect_ok(r, "map image section")) break;
      // Read back through ptkit exactly as asked: Xen adds U and its
      // guest-kernel bit 52 to every PTE of a 64-bit PV guest's kernel (it
      // runs in ring 3); PvFormat reads both back as the kernel page it is.
      for (const char* at = p.lo; at < p.hi; at += kPage) {
        auto q = space.query(VirtAddr(reinterpret_cast<u64>(at)));
        if (!c.expect_ok(q, "query image page")) break;
        if (!c.expect(q->pa.value() == pa_of(at) && q->attrs.perm == p.perm,
                      "image page translation and permissions", pa_of(at),
                      static_cast<u64>(q->attrs.perm)))
          break;
      }
      // Mapping it again as it is changes nothing: no break, no request.
      const u64 requests = space.writer().requests();
      ptkit::MapOptions same = mo;
      same.existing = ptkit::OnExisting::Replace;
      auto again = space.map(VirtAddr(reinterpret_cast<u64>(p.lo)), PhysAddr(pa_of(p.lo)),
                             static_cast<u64>(p.hi - p.lo), a, same);
      if (c.expect_ok(again, "map the section again"))
        c.expect(again->stats.breaks == 0 && again->stats.leaves_written == 0 &&
                     space.writer().requests() == requests,
                 "the same mapping again is no change", again->stats.breaks,
                 space.writer().requests() - requests);
    }
    c.expect(!space.writer().failed(), "every mmu_update accepted");
    if (space.writer().failed()) print_failure(space.writer().failure());
  }
  {
    // Every pool page read-only in Xen's bootstrap tables too (pages not
    // taken yet), then pin the new L4 and load it.
    Check c("pin-switch");
    for (unsigned k = 0; k < kPoolPages; ++k)
      PoolProtection{}.make_readonly(PhysAddr(PoolProtection::g_pool_base + k * kPage));
    c.expect(PoolProtection::g_first_rc == 0, "update_va_mapping",
             static_cast<u64>(PoolProtection::g_first_rc));
    ptkit::xen::MmuextOp pin;
    pin.cmd = ptkit::xen::kMmuextPinL4Table;
    pin.arg1 = Translation{}.to_machine(space.root()) / kPage;
    const int pinned = xen::mmuext(pin);
    c.expect(pinned == 0, "MMUEXT_PIN_L4_TABLE", static_cast<u64>(pinned));
    if (pinned == 0) {
      ptkit::xen::MmuextOp base;
      base.cmd = ptkit::xen::kMmuextNewBaseptr;
      base.arg1 = pin.arg1;
      const int switched = xen::mmuext(base);
      c.expect(switched == 0, "MMUEXT_NEW_BASEPTR", static_cast<u64>(switched));
      if (switched == 0) g_memory_offset = kDirectBase;
    }
    if (c.failed()) finish();
  }
  serial::write("info running on ptkit's tables\n");

  // Tagged pages: written through the direct map, mapped again at the
  // window, read back there.
  constexpr unsigned kTagged = 16;
  u64 tagged[kTagged];
  ptkit::MapOptions page_map;
  page_map.leaf_sizes = kPage;
  Attrs rw{};
  rw.perm = Perm::R | Perm::W;
  {
    Check c("read-back");
    const u64 first = pa_of(__image_end) / kPage + 1024;  // past Xen's bootstrap area
    const u64 step = (g_nr_pages - first) / kTagged;
    for (unsigned k = 0; k < kTagged; ++k) {
      tagged[k] = (first + k * step) * kPage;
      auto* p = reinterpret_cast<volatile u64*>(kDirectBase + tagged[k]);
      p[0] = 0x7a6b'0000'0000'0000 | tagged[k];
      p[511] = ~tagged[k];
    }
    for (unsigned k = 0; k < kTagged && !c.failed(); ++k) {
      auto r = space.map(VirtAddr(kWindow + k * kPage), PhysAddr(tagged[k]), kPage, rw, page_map);
      if (!c.expect_ok(r, "map window page")) break;
      const auto* p = reinterpret_cast<const volatile u64*>(kWindow + k * kPage);
      c.expect(p[0] == (0x7a6b'0000'0000'0000 | tagged[k]) && p[511] == ~tagged[k],
               "tag read back through the window", tagged[k], p[0]);
      auto q = space.query(VirtAddr(kDirectBase + tagged[k]));
      if (c.expect_ok(q, "query direct map"))
        c.expect(q->pa.value() == tagged[k] && has(q->attrs.perm, Perm::W),
                 "direct map translation", tagged[k], q->pa.value());
    }
    c.expect(!space.writer().failed(), "every mmu_update accepted");
  }
  {
    // The shared info page (a Xen frame outside the P2M, so not ptkit's to
    // map) at the window's last slot, through a raw mmu_update into ptkit's
    // L1 there: vcpu 0's CR2 for the fault checks. Xen starts the guest with
    // event upcalls masked.
    Check c("shared-info");
    const u64 va = kWindow + 511 * kPage;
    PhysAddr l1;
    unsigned index = 0;
    if (c.expect(table_of(space, VirtAddr(va), 0, &l1, &index), "the window's L1")) {
      const u64 pte = shared_info | ptkit::x86::kPresent | ptkit::x86::kReadWrite |
                      ptkit::x86::kAccessed | ptkit::x86::kDirty | (u64{1} << 63);
      const int rc = raw_update(l1, index, pte);
      if (c.expect(rc == 0, "mmu_update of the shared info PTE", static_cast<u64>(rc))) {
        const auto* page = reinterpret_cast<const volatile u8*>(va);
        c.expect(page[kVcpu0UpcallMask] == 1, "vcpu 0 upcalls masked", page[kVcpu0UpcallMask]);
        g_cr2 = reinterpret_cast<const volatile u64*>(va + kVcpu0Cr2);
      }
    }
  }
  {
    // A write to .rodata faults with P|W: the image's section permissions.
    Check c("ro-write-fault");
    static const u64 constant = 0x5eed;
    auto* p = const_cast<volatile u64*>(&constant);
    c.expect(probe_write(p, 1), "write to .rodata faulted");
    c.expect((fault_error & (kPfPresent | kPfWrite)) == (kPfPresent | kPfWrite), "error code P|W",
             fault_error);
    c.expect(g_cr2 != nullptr && *g_cr2 == reinterpret_cast<u64>(p), "cr2", g_cr2 ? *g_cr2 : 0);
    c.expect(*p == 0x5eed, ".rodata unchanged", *p);
    u64 v = 0;
    c.expect(!probe_read(p, &v) && v == 0x5eed, "read of .rodata");
    const u64 table_va = kDirectBase + pa_of(g_table_pool);
    c.expect(probe_write(reinterpret_cast<volatile u64*>(table_va), 1),
             "write to a table page through the direct map faulted");
    c.expect(g_cr2 != nullptr && *g_cr2 == table_va, "cr2 of the table write", g_cr2 ? *g_cr2 : 0);
  }
  {
    // Unmapped, a window page faults not-present; the data stays in memory.
    Check c("unmap-fault");
    const auto* p = reinterpret_cast<const volatile u64*>(kWindow);
    u64 v = 0;
    c.expect(!probe_read(p, &v) && v == (0x7a6b'0000'0000'0000 | tagged[0]), "mapped: reads");
    auto r = space.unmap(VirtAddr(kWindow), kPage);
    c.expect_ok(r, "unmap");
    c.expect(probe_read(p, &v), "unmapped: read faulted");
    c.expect((fault_error & kPfPresent) == 0, "error code not-present", fault_error);
    c.expect(g_cr2 != nullptr && *g_cr2 == kWindow, "cr2", g_cr2 ? *g_cr2 : 0);
    auto q = space.query(VirtAddr(kWindow));
    c.expect(!q.ok() && q.failure().error == ptkit::Error::NotMapped, "query: not mapped");
    c.expect(*reinterpret_cast<volatile u64*>(kDirectBase + tagged[0]) ==
                 (0x7a6b'0000'0000'0000 | tagged[0]),
             "still there through the direct map");
    c.expect(!space.writer().failed(), "every mmu_update accepted");
    c.expect(space.sink().failures() == 0, "every MMUEXT invalidation accepted",
             space.sink().failures());
  }
  {
    // A large page: ptkit's Xen format refuses it before any request;
    // forced through as a raw PSE entry in an L2, Xen refuses with -EINVAL.
    Check c("refuse-large-page");
    ptkit::MapOptions large;
    large.leaf_sizes = u64{2} << 20;
    const VirtAddr va(kWindow + (u64{64} << 20));
    const u64 requests = space.writer().requests();
    auto r = space.map(va, PhysAddr(u64{4} << 20), u64{2} << 20, rw, large);
    c.expect(!r.ok() && r.failure().error == ptkit::Error::LeafSizeUnsupported,
             "ptkit: leaf size unsupported", r.ok() ? 0 : static_cast<u64>(r.failure().error));
    c.expect(space.writer().requests() == requests && space.writer().pending() == 0,
             "ptkit: no request issued");
    PhysAddr l2;
    unsigned index = 0;
    if (c.expect(table_of(space, va, 1, &l2, &index), "the window's L2")) {
      const u64 pse = Translation{}.to_machine(PhysAddr(u64{4} << 20)) | ptkit::x86::kPresent |
                      ptkit::x86::kReadWrite | ptkit::x86::kPageSize;
      const int rc = raw_update(l2, index, pse);
      serial::write("info xen: PSE entry in an L2 -> ");
      serial::dec(static_cast<u64>(-rc));
      serial::write("\n");
      c.expect(rc == kEinval, "Xen: -EINVAL", static_cast<u64>(rc));
    }
  }
  {
    // A writable mapping of a page-table page: ptkit refuses it before any
    // request, whichever way it is asked for (a map of the root, write
    // permission added to the direct map's read-only alias of a pool page,
    // a direct map over a range declared read-only); forced through as a
    // raw writable PTE of the root, Xen refuses with -EBUSY.
    Check c("refuse-writable-table");
    const u64 requests = space.writer().requests();
    const auto refused = [&](const auto& r, const char* what) {
      c.expect(!r.ok() && r.failure().error == ptkit::Error::WritableTable, what,
               r.ok() ? 0 : static_cast<u64>(r.failure().error));
    };
    refused(space.map(VirtAddr(kWindow + 50 * kPage), space.root(), kPage, rw, page_map),
            "ptkit: map() of the root writable");
    refused(space.map(VirtAddr(kWindow + 52 * kPage), PhysAddr(pa_of(__pool_start) - 2 * kPage),
                      4 * kPage, rw, page_map),
            "ptkit: map() of 4 pages, the last 2 the pool's");
    refused(space.protect(VirtAddr(kDirectBase + pa_of(g_table_pool)), kPage,
                          ptkit::AttrChange{Perm::W, Perm::None}),
            "ptkit: write added to a pool page's alias");
    refused(space.map(VirtAddr(kWindow + 56 * kPage), PhysAddr(pt_base - kPage), 2 * kPage, rw,
                      page_map),
            "ptkit: map() over the first page of Xen's tables");
    const u64 page = tagged[2];
    const ptkit::xen::PhysRange declared[] = {{PhysAddr(page), kPage}};
    auto r = ptkit::xen::map_direct(space, VirtAddr(kWindow + 2 * kPage - page),
                                    {PhysAddr(page), kPage}, declared, 1, rw);
    c.expect(!r.ok() && r.failure().error == ptkit::Error::AlreadyMapped,
             "ptkit: writable leaf over a read-only range",
             r.ok() ? 0 : static_cast<u64>(r.failure().error));
    c.expect(space.writer().requests() == requests && space.writer().pending() == 0,
             "ptkit: no request issued");
    auto ro = space.query(VirtAddr(kDirectBase + pa_of(g_table_pool)));
    c.expect(ro.ok() && !has(ro->attrs.perm, Perm::W), "the pool alias stayed read-only");
    PhysAddr l1;
    unsigned index = 0;
    const VirtAddr hole(kWindow + 40 * kPage);
    if (c.expect(table_of(space, hole, 0, &l1, &index), "the window's L1")) {
      const u64 root_rw = Translation{}.to_machine(space.root()) | ptkit::x86::kPresent |
                          ptkit::x86::kReadWrite | (u64{1} << 63);
      const int rc = raw_update(l1, index, root_rw);
      serial::write("info xen: writable PTE of the L4 -> ");
      serial::dec(static_cast<u64>(-rc));
      serial::write("\n");
      c.expect(rc == kEbusy, "Xen: -EBUSY", static_cast<u64>(rc));
      u64 v = 0;
      c.expect(probe_read(reinterpret_cast<const volatile u64*>(hole.value()), &v),
               "the refused entry stayed invalid");
    }
  }
  TransientSlotCheck(space, tables, [](u64 va) {
    u64 v = 0;
    return probe_read(reinterpret_cast<const volatile u64*>(va), &v);
  }).run();
  {
    // 4 MiB of tagged memory from 16 MiB (past Xen's bootstrap area), a
    // window of four L1s' worth.
    RandomPhase::Config config;
    config.seed = 0x9e3779b9;
    config.window = kRandomWindow;
    config.phys = u64{16} << 20;
    config.phys_pages = 1024;
    RandomPhase(space, config).run();
  }
  {
    // Last, because it leaves the space broken: with the same tables behind
    // a format that was not told which pages are tables, a plain map() of
    // the root writable goes out; Xen refuses the request with -EBUSY and
    // the writer records it, with the request it refused.
    Check c("writer-records-refusal");
    Space unguarded(Format(Translation{}), GuestAccess{}, tables,
                    Writer(xen::MmuUpdateCall{}, Translation{}), Sink(xen::MmuextCall{}),
                    space.root());
    const VirtAddr va(kWindow + 50 * kPage);
    auto r = unguarded.map(va, space.root(), kPage, rw, page_map);
    c.expect_ok(r, "map (the engine's view)");
    c.expect(unguarded.writer().hypercalls() > 0, "requests sent");
    c.expect(unguarded.writer().failed(), "writer: failed()");
    const ptkit::xen::UpdateFailure& f = unguarded.writer().failure();
    print_failure(f);
    c.expect(f.rc == kEbusy, "rc -EBUSY", static_cast<u64>(f.rc));
    c.expect((f.request.val & 0x000F'FFFF'FFFF'F000) == Translation{}.to_machine(space.root()),
             "the refused request maps the root", f.request.val);
    u64 v = 0;
    c.expect(probe_read(reinterpret_cast<const volatile u64*>(va.value()), &v),
             "the refused entry stayed invalid");
  }
  serial::write("info ");
  serial::dec(space.writer().requests());
  serial::write(" mmu_update requests in ");
  serial::dec(space.writer().hypercalls());
  serial::write(" hypercalls, ");
  serial::dec(PoolProtection::g_calls);
  serial::write(" update_va_mapping, ");
  serial::dec(pool.pages_in_use());
  serial::write(" table pages, ");
  serial::dec(fault_count);
  serial::write(" page faults taken\n");
  finish();
}
