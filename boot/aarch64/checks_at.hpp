// The AT cross-check: every address a check touched, and a few hundred
// random ones across the whole virtual space and the regions the kernel
// maps, asked of the MMU (AT) and of ptkit (query) in the final tables.
#pragma once

#include "at_oracle.hpp"
#include "check.hpp"
#include "kernel_space.hpp"
#include "random.hpp"
#include "trap.hpp"

namespace kernel {

inline void at_cross_check(const Space& s, u64 seed) {
  Check c("at-cross-check");
  AtTally tally;
  const unsigned touched = trap::touched_count();
  if (!c.expect(touched <= trap::kTouchedMax, "every touched address kept", touched)) return;
  for (unsigned i = 0; i < touched; ++i)
    if (!at_agrees(c, s, trap::touched(i), &tally)) return;
  Random rng(seed);
  const u64 space = u64{1} << config::kVaBits;
  const u64 image = addr_of(__image_start);
  const u64 image_size = addr_of(__image_end) - image;
  struct Area {
    u64 base, size;
  };
  const Area areas[] = {
      {0, space},                                                 // anywhere
      {kLayout.direct_map + config::kRamBase, config::kRamSize},  // the direct map
      {image, image_size},                                        // the image
      {kLayout.test_base, 64 * GiB},                              // the checks' regions
      {kLayout.demand_base, 2 * (u64{1} << 42)},                  // around the demand window
  };
  for (const Area& a : areas)
    for (unsigned k = 0; k < 100; ++k)
      if (!at_agrees(c, s, a.base + rng.below(a.size) / 8 * 8, &tally)) return;
  serial::write("info AT cross-checked ");
  serial::dec(tally.mapped + tally.unmapped);
  serial::write(" addresses (");
  serial::dec(trap::touched_count());
  serial::write(" touched by checks): ");
  serial::dec(tally.mapped);
  serial::write(" mapped, ");
  serial::dec(tally.unmapped);
  serial::write(" not\n");
}

}  // namespace kernel
