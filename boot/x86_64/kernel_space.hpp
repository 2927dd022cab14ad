// The kernel's own page tables, built with ptkit: the image at its link
// addresses with per-section permissions (early::map_image), tables from a
// static pool inside the image reached through early::ImageAccess. Then CR3
// switches to them and the boot stub's identity map is gone; the direct map
// is built on these tables afterwards (early_tables.hpp), and the checks run
// on a space that reaches every table through it (Space).
#pragma once

#include "check.hpp"
#include "cpu.hpp"
#include "machine.hpp"
#include "ptkit/early/direct_map.hpp"
#include "ptkit/early/image_mapper.hpp"
#include "ptkit/early/table_access.hpp"
#include "ptkit/space.hpp"
#include "tlb_sink.hpp"

// kernel.ld
extern "C" char __image_start[], __image_end[], __text_start[], __text_end[], __rodata_start[],
    __rodata_end[], __data_start[], __data_end[], __bss_start[], __bss_end[];

namespace kernel {

using ptkit::Attrs;
using ptkit::GiB;
using ptkit::KiB;
using ptkit::MemType;
using ptkit::MiB;
using ptkit::Perm;
using ptkit::PhysAddr;
using ptkit::u64;
using ptkit::VirtAddr;

inline u64 addr_of(const volatile void* p) {
  return reinterpret_cast<u64>(p);
}  // NOLINT: an address

/// Table pages for the kernel's own space (its tables and every check's).
inline constexpr unsigned kPoolPages = 160;
using Pool = ptkit::StaticPoolAllocator<kPoolPages>;
alignas(4096) inline u64 g_table_pool[kPoolPages][512];

/// The space while only the image is mapped: its tables are in the image.
template <class Format>
using ImageSpace =
    ptkit::AddressSpace<Format, ptkit::early::ImageAccess, Pool&, ptkit::PlainWriter, X86TlbSink>;
/// The same tables once the direct map exists, which reaches all of them
/// (the image pool's and the boot allocator's): what the checks use.
template <class Format>
using Space = ptkit::AddressSpace<Format, ptkit::early::DirectMapAccess, Pool&, ptkit::PlainWriter,
                                  X86TlbSink>;

/// Where things go in each paging mode. 5-level puts everything at addresses
/// a 4-level space does not have, so a table built for the wrong mode shows.
struct VirtualLayout {
  u64 direct_map;     // pa is mapped at direct_map + pa
  u64 test_base;      // 1 GiB aligned, 4 GiB of room for the checks
  u64 demand_window;  // 2 MiB below a 1 GiB boundary (checks_demand.hpp)
  u64 random_window;  // 1 GiB aligned, 2 GiB for the randomized phase
  u64 slot_window;    // 2 MiB aligned: the transient slots (early_tables.hpp)
};
template <unsigned Levels>
constexpr VirtualLayout layout_for() {
  if constexpr (Levels == 4) {
    return {0xffff'8880'0000'0000, 0x0000'4000'0000'0000, 0xffff'c000'3fe0'0000,
            0x0000'4002'0000'0000, 0xffff'fe00'0000'0000};
  } else {
    return {0xff11'0000'0000'0000, 0x00f0'0000'0000'0000, 0xff20'0000'3fe0'0000,
            0x00f0'0002'0000'0000, 0xff30'0000'0000'0000};
  }
}

/// The image as the linker laid it out, at its load address (= link address).
inline ptkit::early::ImageAccess image_access() {
  return ptkit::early::ImageAccess::at(PhysAddr(addr_of(__image_start)),
                                       addr_of(__image_end) - addr_of(__image_start),
                                       VirtAddr(addr_of(__image_start)));
}

/// Maps the image and switches CR3 to the space. Each step is a check;
/// returns false if any failed (the caller stops).
template <class Format>
bool build_kernel_space(ImageSpace<Format>& space) {
  {
    Check c("image-map");
    const ptkit::early::ImageSection sections[] = {
        {"text", VirtAddr(addr_of(__text_start)), addr_of(__text_end) - addr_of(__text_start),
         ptkit::RX},
        {"rodata", VirtAddr(addr_of(__rodata_start)),
         addr_of(__rodata_end) - addr_of(__rodata_start), Perm::R},
        {"data", VirtAddr(addr_of(__data_start)), addr_of(__data_end) - addr_of(__data_start),
         ptkit::RW},
        {"bss", VirtAddr(addr_of(__bss_start)), addr_of(__bss_end) - addr_of(__bss_start),
         ptkit::RW},
    };
    const ptkit::early::ImageLayout layout{sections, 4, VirtAddr(addr_of(__image_start)), 4 * KiB};
    auto report = ptkit::early::map_image(space, layout, PhysAddr(addr_of(__image_start)), {});
    if (!c.expect_ok(report, "map_image")) return false;
    // data and bss share their attributes: one range, so three in all.
    c.expect(report->section_count == 4 && report->range_count == 3, "sections/ranges",
             report->section_count, report->range_count);
    c.expect(report->slot_count() == 1, "root slots", report->slot_count());
    if (c.failed()) return false;
  }
  {
    Check c("cr3-switch");
    // Global translations (the image's) survive later CR3 reloads. From
    // here on the CPU runs on the image mapping alone: the loader's
    // structures are out of reach (discover() kept what the kernel needs).
    cpu::write_cr4(cpu::read_cr4() | cpu::kCr4Pge);
    cpu::write_cr3(space.root().value());
    c.expect(cpu::read_cr3() == space.root().value(), "CR3", cpu::read_cr3());
    if (c.failed()) return false;
  }
  return true;
}

}  // namespace kernel
