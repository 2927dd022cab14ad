// A minimal flattened-devicetree reader (Devicetree Specification v0.4,
// ch. 5 "Flattened Devicetree (DTB) Format"): walks the structure block and
// hands every property, with the names of its node and the node's parent, to
// a visitor. Enough to read the memory node, the hart's ISA string and the
// command line; no phandles, no path lookups.
#pragma once

#include "ptkit/addr.hpp"

namespace kernel::fdt {

using ptkit::u32;
using ptkit::u64;
using ptkit::u8;

struct Property {
  const char* node = nullptr;    // e.g. "memory@80000000"; "" for the root
  const char* parent = nullptr;  // the node's parent ("" for the root's children)
  unsigned depth = 0;            // of the node: 0 for the root
  const char* name = nullptr;
  const u8* data = nullptr;
  u32 size = 0;
};

/// Returns false to stop the walk.
using Visitor = bool (*)(const Property& p, void* context);

/// Walks the devicetree blob at `blob` (identity-addressed: called before
/// paging). Returns false if the blob is not a devicetree or is malformed.
bool for_each_property(const void* blob, Visitor visit, void* context);

/// Big-endian cells, as every devicetree value is stored (§2.2.4.1).
inline u32 be32(const u8* p) {
  return (u32{p[0]} << 24) | (u32{p[1]} << 16) | (u32{p[2]} << 8) | u32{p[3]};
}
inline u64 be64(const u8* p) { return (u64{be32(p)} << 32) | be32(p + 4); }

/// Whether the node name is `base` or `base@unit`.
bool node_is(const char* node, const char* base);

}  // namespace kernel::fdt
