// The kernel's own page tables, built with ptkit: the image at its link
// addresses with per-section permissions (early::map_image; every section is
// a 2 MiB megapage), a direct map of RAM and of the UART and test finisher
// (early::build_direct_map; IO memory type where the hart has Svpbmt), tables
// from a static pool inside the image reached through early::ImageAccess.
// Then satp switches to them, read back to confirm the hart took the mode.
#pragma once

#include "check.hpp"
#include "cpu.hpp"
#include "machine.hpp"
#include "mmio.hpp"
#include "ptkit/early/direct_map.hpp"
#include "ptkit/early/image_mapper.hpp"
#include "ptkit/early/table_access.hpp"
#include "ptkit/space.hpp"
#include "tlb_sink.hpp"

// kernel.ld and entry.S
extern "C" char __image_start[], __image_end[], __text_start[], __text_end[], __rodata_start[],
    __rodata_end[], __data_start[], __data_end[], boot_stack[], boot_stack_top[];

namespace kernel {

using ptkit::Attrs;
using ptkit::GiB;
using ptkit::KiB;
using ptkit::MemType;
using ptkit::MiB;
using ptkit::Perm;
using ptkit::PhysAddr;
using ptkit::TiB;
using ptkit::u64;
using ptkit::VirtAddr;
using ptkit::riscv::Mode;
using Format = ptkit::riscv::Paging;

inline u64 addr_of(const volatile void* p) {
  return reinterpret_cast<u64>(p);  // NOLINT: an address
}

/// Table pages for the kernel's own space (its tables and every check's).
inline constexpr unsigned kPoolPages = 128;
using Pool = ptkit::StaticPoolAllocator<kPoolPages>;
alignas(4096) inline u64 g_table_pool[kPoolPages][512];

using Space =
    ptkit::AddressSpace<Format, ptkit::early::ImageAccess, Pool&, ptkit::PlainWriter, TlbSinkRv>;

/// Where things go in each paging mode. Sv48 and Sv57 put everything at
/// addresses the smaller modes do not have, so a table built for the wrong
/// mode shows.
struct VirtualLayout {
  u64 direct_map;     // pa is mapped at direct_map + pa
  u64 test_base;      // room for the checks: 4 GiB, then a terapage and a petapage
  u64 demand_window;  // 4 MiB below a 1 GiB boundary (checks_demand.hpp)
};
constexpr VirtualLayout layout_for(Mode mode) {
  switch (mode) {
    case Mode::Sv39: return {0xffff'ffc0'0000'0000, 0x0000'0010'0000'0000, 0xffff'ffd0'3fc0'0000};
    case Mode::Sv48: return {0xffff'8000'0000'0000, 0x0000'4000'0000'0000, 0xffff'c000'3fc0'0000};
    case Mode::Sv57: return {0xff00'0000'0000'0000, 0x00f0'0000'0000'0000, 0xff20'0000'3fc0'0000};
  }
  return {};
}

/// The image as the linker laid it out, at its load address (= link address).
inline ptkit::early::ImageAccess image_access() {
  return ptkit::early::ImageAccess::at(PhysAddr(addr_of(__image_start)),
                                       addr_of(__image_end) - addr_of(__image_start),
                                       VirtAddr(addr_of(__image_start)));
}

/// satp for `root` in `mode`, ASID 0 (§4.1.11).
inline u64 satp_for(Mode mode, PhysAddr root) {
  return (u64(mode) << cpu::kSatpModeShift) | ((root.value() >> 12) & cpu::kSatpPpnMask);
}

/// The image's sections as kernel.ld lays them out: text RX, rodata R,
/// data and bss RW, each starting and ending on 2 MiB.
struct KernelImage {
  ptkit::early::ImageSection sections[3] = {
      {"text", VirtAddr(addr_of(__text_start)), addr_of(__text_end) - addr_of(__text_start),
       ptkit::RX},
      {"rodata", VirtAddr(addr_of(__rodata_start)), addr_of(__rodata_end) - addr_of(__rodata_start),
       Perm::R},
      {"data", VirtAddr(addr_of(__data_start)), addr_of(__data_end) - addr_of(__data_start),
       ptkit::RW},
  };
  [[nodiscard]] ptkit::early::ImageLayout layout() const {
    return {sections, 3, VirtAddr(addr_of(__image_start)), 2 * MiB};
  }
  [[nodiscard]] static PhysAddr load_pa() { return PhysAddr(addr_of(__image_start)); }
};

/// Maps the image with its section permissions into `space`; expects three
/// ranges of megapages under one root entry.
template <class AnySpace>
bool map_kernel_image(Check& c, AnySpace& space) {
  const KernelImage image;
  auto report = ptkit::early::map_image(space, image.layout(), KernelImage::load_pa(), {});
  if (!c.expect_ok(report, "map_image")) return false;
  c.expect(report->section_count == 3 && report->range_count == 3, "sections/ranges",
           report->section_count, report->range_count);
  // kernel.ld aligns every section to 2 MiB: megapages only.
  c.expect(report->leaves_of_size(4 * KiB) == 0 && report->leaves_of_size(2 * MiB) >= 3,
           "megapages only", report->leaves_of_size(4 * KiB), report->leaves_of_size(2 * MiB));
  c.expect(report->slot_count() == 1, "root slots", report->slot_count());
  return !c.failed();
}

/// Maps the image and the direct map, and switches satp to the space. Each
/// step is a check; returns false if any failed (the caller stops).
inline bool build_kernel_space(Space& space, const Machine& m, const VirtualLayout& v) {
  {
    Check c("image-map");
    if (!map_kernel_image(c, space)) return false;
  }
  {
    Check c("direct-map");
    ptkit::early::DirectMapOptions opts;
    opts.base = VirtAddr(v.direct_map);
    opts.final_attrs = ptkit::early::final_direct_map_attrs(space.format());
    auto report = ptkit::early::build_direct_map(space, m.memory_map(), opts);
    if (!c.expect_ok(report, "build_direct_map")) return false;
    // Nothing was mapped there: one pass, no splits, nothing to invalidate.
    c.expect(report->pass_two_ops == 0 && report->pass_one.splits == 0, "one pass",
             report->pass_two_ops, report->pass_one.splits);
    c.expect(report->leaves_of_size(2 * MiB) != 0, "megapages in the direct map");
    c.expect(report->device_bytes == 2 * 4 * KiB, "UART and finisher pages", report->device_bytes);
    const MemType device = ptkit::early::device_mem_type(space.format());
    c.expect((device == MemType::Device) == m.features.svpbmt, "IO type exactly with Svpbmt");
    if (c.failed()) return false;
  }
  {
    Check c("satp-switch");
    const u64 satp = satp_for(m.mode, space.root());
    cpu::write_satp(satp);
    // An unsupported MODE makes the whole write have no effect (§4.1.11):
    // then the hart stays on the tables it ran on (early_boot.hpp), where
    // the devices are at the same place.
    const u64 back = cpu::read_satp();
    if (!c.expect(back == satp, "satp read back", back, satp)) return false;
    mmio::g_offset = v.direct_map;  // the UART and finisher, through the direct map
  }
  return true;
}

}  // namespace kernel
