// The kernel's own page tables, built with ptkit while running on the final
// space of the early boot (early_boot.hpp): the image at its link addresses
// (which are its load addresses) with per-section permissions
// (early::map_image), a direct map of RAM and a Device-nGnRE window for the
// PL011 (early::build_direct_map), tables from a static pool inside the
// image reached through early::ImageAccess. Then TTBR0_EL1 switches to them
// and every later check runs there.
#pragma once

#include "check.hpp"
#include "config.hpp"
#include "cpu.hpp"
#include "machine.hpp"
#include "mmu.hpp"
#include "ptkit/early/direct_map.hpp"
#include "ptkit/early/image_mapper.hpp"
#include "ptkit/early/table_access.hpp"
#include "ptkit/space.hpp"
#include "serial.hpp"
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
using Format = ptkit::aarch64::Paging;

inline u64 addr_of(const volatile void* p) {
  return reinterpret_cast<u64>(p);  // NOLINT: an address
}

/// Table pages for the kernel's own space (its tables and every check's);
/// a table is one granule.
inline constexpr unsigned kPoolPages = config::kGranuleKiB == 4 ? 96 : 48;
using Pool = ptkit::StaticPoolAllocator<kPoolPages>;
alignas(config::kPage) inline ptkit::u8 g_table_pool[kPoolPages * config::kPage];

using Space =
    ptkit::AddressSpace<Format, ptkit::early::ImageAccess, Pool&, ptkit::PlainWriter, A64TlbSink>;

/// Where things go. The 52-bit configurations put everything above 2^48, so
/// a table built for 48 bits, or a TCR that does not enable 52, shows. The
/// demand window has a root entry to itself in every configuration (the 16K
/// granule's 48-bit root has two entries of 128 TiB), so the tables below it
/// are the demand mapper's alone.
struct VirtualLayout {
  u64 direct_map;   // pa is mapped at direct_map + pa
  u64 test_base;    // room for the checks' mappings (checks_paging.hpp)
  u64 demand_base;  // the demand mapper's window lies near here (checks_demand.hpp)
  u64 random_base;  // the randomized phase's window (checks_random.hpp)
};
inline constexpr VirtualLayout kLayout =
    config::kWide ? VirtualLayout{0x0008'0000'0000'0000, 0x0004'0000'0000'0000,
                                  0x000c'0000'0000'0000, 0x0002'0000'0000'0000}
                  : VirtualLayout{0x0000'2000'0000'0000, 0x0000'4000'0000'0000,
                                  0x0000'c000'0000'0000, 0x0000'1000'0000'0000};

/// The image as the linker laid it out, at its load address (= link address).
inline ptkit::early::ImageAccess image_access() {
  return ptkit::early::ImageAccess::at(PhysAddr(addr_of(__image_start)),
                                       addr_of(__image_end) - addr_of(__image_start),
                                       VirtAddr(addr_of(__image_start)));
}

inline Format make_format(const Machine& m) {
  return Format(config::kGranule, config::kVaBits, ptkit::aarch64::Half::Lower, m.features);
}

/// Maps the image's sections with their permissions into any space (boot,
/// final, the kernel's own) and checks what map_image reports.
template <class AnySpace>
bool map_kernel_image(Check& c, AnySpace& space) {
  const ptkit::early::ImageSection sections[] = {
      {"text", VirtAddr(addr_of(__text_start)), addr_of(__text_end) - addr_of(__text_start),
       ptkit::RX},
      {"rodata", VirtAddr(addr_of(__rodata_start)), addr_of(__rodata_end) - addr_of(__rodata_start),
       Perm::R},
      {"data", VirtAddr(addr_of(__data_start)), addr_of(__data_end) - addr_of(__data_start),
       ptkit::RW},
      {"bss", VirtAddr(addr_of(__bss_start)), addr_of(__bss_end) - addr_of(__bss_start), ptkit::RW},
  };
  // kernel.ld aligns every section to 64 KiB, which is a granule or a
  // multiple of one.
  const ptkit::early::ImageLayout layout{sections, 4, VirtAddr(addr_of(__image_start)),
                                         config::kPage};
  auto report = ptkit::early::map_image(space, layout, PhysAddr(addr_of(__image_start)), {});
  if (!c.expect_ok(report, "map_image")) return false;
  // data and bss share their attributes: one range, so three in all.
  c.expect(report->section_count == 4 && report->range_count == 3, "sections/ranges",
           report->section_count, report->range_count);
  c.expect(report->slot_count() == 1, "root slots", report->slot_count());
  return !c.failed();
}

/// Maps the image and the direct map into `space`, then switches TTBR0_EL1
/// to it. Each step is a check; returns false if any failed (the caller
/// stops).
inline bool build_kernel_space(Space& space, const Machine& m) {
  {
    Check c("image-map");
    if (!map_kernel_image(c, space)) return false;
  }
  {
    Check c("direct-map");
    ptkit::early::DirectMapOptions opts;
    opts.base = VirtAddr(kLayout.direct_map);
    opts.final_attrs = ptkit::early::final_direct_map_attrs(space.format());
    auto report = ptkit::early::build_direct_map(space, m.memory_map(), opts);
    if (!c.expect_ok(report, "build_direct_map")) return false;
    // Nothing was mapped there: one pass, no splits, nothing to invalidate.
    c.expect(report->pass_two_ops == 0 && report->pass_one.splits == 0, "one pass",
             report->pass_two_ops, report->pass_one.splits);
    c.expect(report->ram_bytes == config::kRamSize && report->device_bytes == config::kPage,
             "RAM and device bytes", report->ram_bytes, report->device_bytes);
    // RAM gets the level-2 block (2M, 32M) wherever it fits in 128 MiB.
    const u64 block = space.leaf_size(1);
    if (block <= config::kRamSize)
      c.expect(report->leaves_of_size(block) == config::kRamSize / block, "RAM in blocks",
               report->leaves_of_size(block));
    if (c.failed()) return false;
  }
  {
    Check c("own-space-switch");
    mmu::switch_to(space.root().value());
    c.expect(cpu::read_ttbr0_el1() == space.root().value(), "TTBR0_EL1", cpu::read_ttbr0_el1());
    if (c.failed()) return false;
  }
  return true;
}

}  // namespace kernel
