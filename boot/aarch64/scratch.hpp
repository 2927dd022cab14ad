// Physical scratch memory the checks map (RAM above the image, below the
// end of QEMU virt's 128 MiB), and the tags that make every page of it
// recognisable wherever it is mapped.
#pragma once

#include "config.hpp"
#include "kernel_space.hpp"

namespace kernel {

/// kTaggedPages granule pages, each tagged in its first and last word.
inline constexpr u64 kScratchPages = 0x4400'0000;
inline constexpr unsigned kTaggedPages = 32;
/// A run of the Contiguous hint (at most 128 pages of 16 KiB: 2 MiB).
inline constexpr u64 kScratchRun = 0x4500'0000;
/// Pages the randomized phase maps (checks_random.hpp), 16 MiB.
inline constexpr u64 kScratchRandom = 0x4300'0000;
/// 32 MiB for the level-2 block checks: 32 MiB-aligned, so it holds a 2M or
/// 32M block (the 64K granule's 512M block starts at the base of RAM).
inline constexpr u64 kScratchBlock = 0x4600'0000;
inline constexpr u64 kRamEnd = config::kRamBase + config::kRamSize;

inline u64 tag_of(u64 pa) { return 0x5441'4700'0000'0000 | pa; }  // "TAG" and the address

/// The word at physical `pa`, through the direct map.
inline volatile u64& phys(u64 pa) {
  return *reinterpret_cast<volatile u64*>(kLayout.direct_map + pa);  // NOLINT: the direct map
}

/// Tags the first and last word of `pages` granule pages from `pa`.
inline void tag_pages(u64 pa, unsigned pages) {
  for (unsigned k = 0; k < pages; ++k) {
    const u64 page = pa + k * config::kPage;
    phys(page) = tag_of(page);
    phys(page + config::kPage - 8) = ~tag_of(page);
  }
}

}  // namespace kernel
