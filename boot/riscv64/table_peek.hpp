// Reads a leaf entry straight from the tables, for what ptkit's query does
// not report: whether a leaf is part of a NAPOT run. Decoding uses the
// format; the walk is this file's own (§4.3.2: VPN[i] = va[20+9i:12+9i]).
#pragma once

#include "kernel_space.hpp"

namespace kernel {

/// The entry that ends the walk for `va`: a leaf, or the invalid entry.
inline ptkit::Entry leaf_entry(Space& space, u64 va) {
  const Format& f = space.format();
  PhysAddr table = space.root();
  for (unsigned level = f.levels(); level-- > 0;) {
    const u64* t = space.access().table(table);
    const ptkit::Entry e = f.decode(t[(va >> (12 + 9 * level)) & 511], level);
    space.access().done(const_cast<u64*>(t));  // NOLINT: the access policy's pointer, read only
    if (!e.valid() || e.is_leaf()) return e;
    table = e.pa;
  }
  return ptkit::Entry::invalid();
}

}  // namespace kernel
