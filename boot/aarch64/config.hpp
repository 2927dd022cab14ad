// The paging configuration this kernel binary runs, chosen at compile time
// by CMake (one kernel per configuration: the table pool's page size and the
// virtual layout depend on it):
//   PTKIT_KERNEL_GRANULE_KB  4, 16 or 64 (TCR_EL1.TG0)
//   PTKIT_KERNEL_VA_BITS     48, or 52 (64K: FEAT_LPA + FEAT_LVA; 4K/16K:
//                            FEAT_LPA2 with TCR_EL1.DS = 1), with 52-bit PA
#pragma once

#include "ptkit/arch/aarch64.hpp"

#if !defined(PTKIT_KERNEL_GRANULE_KB) || !defined(PTKIT_KERNEL_VA_BITS)
#error "build with -DPTKIT_KERNEL_GRANULE_KB=4|16|64 -DPTKIT_KERNEL_VA_BITS=48|52"
#endif

namespace kernel::config {

using ptkit::u64;
using ptkit::aarch64::Granule;

inline constexpr u64 kGranuleKiB = PTKIT_KERNEL_GRANULE_KB;
inline constexpr unsigned kVaBits = PTKIT_KERNEL_VA_BITS;
static_assert(kGranuleKiB == 4 || kGranuleKiB == 16 || kGranuleKiB == 64);
static_assert(kVaBits == 48 || kVaBits == 52);

inline constexpr Granule kGranule = kGranuleKiB == 4    ? Granule::K4
                                    : kGranuleKiB == 16 ? Granule::K16
                                                        : Granule::K64;
/// The smallest page, which is also the size of every table page.
inline constexpr u64 kPage = kGranuleKiB * 1024;
inline constexpr bool kWide = kVaBits == 52;
/// 52-bit VA and PA through FEAT_LPA2 (TCR_EL1.DS): the 4K and 16K granules.
inline constexpr bool kLpa2 = kWide && kGranule != Granule::K64;

/// RAM as QEMU virt lays it out for `-m 128M` (CMake passes exactly that):
/// the DTB at its start, this image at 0x4008_0000.
inline constexpr u64 kRamBase = 0x4000'0000;
inline constexpr u64 kRamSize = 128 * ptkit::MiB;

}  // namespace kernel::config
