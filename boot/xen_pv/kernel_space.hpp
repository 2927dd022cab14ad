// The guest's address space built with ptkit in Xen PV mode
// (include/ptkit/early/xen_pv.hpp): the policies ptkit's engine runs with
// inside a real PV guest.
#pragma once

#include "ptkit/alloc.hpp"
#include "ptkit/early/xen_pv.hpp"
#include "ptkit/space.hpp"
#include "xen.hpp"

namespace kernel {

using ptkit::PhysAddr;
using ptkit::u64;
using ptkit::VirtAddr;

inline constexpr u64 kPage = 4096;
/// Where Xen maps the image (entry.S's VIRT_BASE): virtual = pseudo-physical
/// + kVirtBase, for the image and the bootstrap area Xen puts after it.
inline constexpr u64 kVirtBase = 0xffffffff80000000;
/// The guest's direct map of its pseudo-physical memory (L4 slot 273, outside
/// Xen's slots 256..271).
inline constexpr u64 kDirectBase = 0xffff888000000000;
/// A window for the read-back, fault and refusal checks.
inline constexpr u64 kWindow = 0xffffc90000000000;
/// The randomized phase's window (random_phase.hpp).
inline constexpr u64 kRandomWindow = 0xffffc90040000000;

inline constexpr unsigned kPoolPages = 96;
inline constexpr u64 kMaxPages = 16384;  // dom0_mem=64M

/// The P2M, copied from start_info's mfn_list (which is mapped only in Xen's
/// bootstrap tables), and the number of pseudo-physical pages.
inline u64 g_p2m[kMaxPages];
inline u64 g_nr_pages = 0;

/// Where the access policy finds pseudo-physical memory: kVirtBase on Xen's
/// tables (the image and the bootstrap area, which hold every table the
/// guest reads before the switch), kDirectBase on the guest's own.
inline u64 g_memory_offset = kVirtBase;

/// The faulting address of the last page fault: vcpu_info[0].arch.cr2 in
/// the shared info page (xen.h; a PV guest's exception frame has no CR2),
/// once the guest mapped that page (check shared-info); nullptr before.
inline const volatile u64* g_cr2 = nullptr;
/// Offsets in the shared info page (vcpu_info[0], arch-x86/xen.h).
inline constexpr u64 kVcpu0UpcallMask = 1;
inline constexpr u64 kVcpu0Cr2 = 16;

/// P2M / M2P (xen_pv.hpp's MachineTranslation).
struct Translation {
  [[nodiscard]] u64 to_machine(PhysAddr pa) const {
    return (g_p2m[pa.value() / kPage] * kPage) | (pa.value() % kPage);
  }
  [[nodiscard]] PhysAddr to_pseudo(u64 maddr) const {
    // Xen's read-only M2P table, mapped at the same address in every PV
    // guest: the one place a machine frame becomes a pseudo-physical one.
    const auto* m2p = reinterpret_cast<const volatile u64*>(xen::kMachToPhys);  // NOLINT
    return PhysAddr(m2p[maddr / kPage] * kPage | (maddr % kPage));
  }
};
static_assert(ptkit::xen::MachineTranslation<Translation>);

/// Tables are reached at pseudo-physical + g_memory_offset.
struct GuestAccess {
  // The policy's contract: all pseudo-physical memory the engine reads sits
  // at the current offset (see g_memory_offset).
  u64* table(PhysAddr pa) const {
    return reinterpret_cast<u64*>(g_memory_offset + pa.value());
  }  // NOLINT
  void done(u64*) const {}
};
static_assert(ptkit::TableAccess<GuestAccess>);

/// TLB work as MMUEXT ops (a PV kernel cannot run INVLPG itself).
using Sink = ptkit::xen::MmuextSink<xen::MmuextCall>;

/// ReadOnlyTables' hook: a pool page becomes read-only in Xen's bootstrap
/// mapping of the image (kVirtBase + pa), through invalid first (two
/// update_va_mapping calls, each with INVLPG). The pool stays read-only for
/// good (the guest's own tables map it read-only from the start), so
/// make_writable does nothing and a page made read-only once is skipped.
struct PoolProtection {
  static inline bool g_done[kPoolPages];
  static inline u64 g_pool_base = 0;  // pseudo-physical
  static inline u64 g_calls = 0;
  static inline int g_first_rc = 0;

  void make_readonly(PhysAddr pa) {
    const u64 index = (pa.value() - g_pool_base) / kPage;
    if (index >= kPoolPages || g_done[index]) return;
    g_done[index] = true;
    const u64 va = kVirtBase + pa.value();
    const u64 pte = Translation{}.to_machine(pa) | ptkit::x86::kPresent | ptkit::x86::kAccessed |
                    (u64{1} << 63);  // NX
    const u64 values[2] = {0, pte};
    for (const u64 v : values) {
      ++g_calls;
      const int rc = xen::update_va_mapping(va, v, xen::kUvmfInvlpg);
      if (rc != 0 && g_first_rc == 0) g_first_rc = rc;
    }
  }
  void make_writable(PhysAddr) {}
};
static_assert(ptkit::xen::PageProtection<PoolProtection>);

using Format = ptkit::xen::PvFormat<Translation>;
using Pool = ptkit::StaticPoolAllocator<kPoolPages>;
using Tables = ptkit::xen::ReadOnlyTables<Pool, PoolProtection>;
using Writer = ptkit::xen::MmuUpdateWriter<xen::MmuUpdateCall, Translation>;
using Space = ptkit::AddressSpace<Format, GuestAccess, Tables, Writer, Sink>;

/// The pages that hold or may hold page tables: the pool and the tables Xen
/// built (filled in by kmain); the format makes ptkit refuse a writable leaf
/// over any of them.
inline ptkit::xen::PhysRange g_table_frames[2];
inline Format table_guarding_format() {
  return Format(Translation{}, {}, ptkit::xen::TableFrames{g_table_frames, 2});
}

}  // namespace kernel
