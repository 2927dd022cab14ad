#include "fdt.hpp"

namespace kernel::fdt {
namespace {

// §5.2 header fields and §5.4.1 structure-block tokens.
constexpr u32 kMagic = 0xd00d'feed;
constexpr u32 kBeginNode = 1, kEndNode = 2, kProp = 3, kNop = 4, kEnd = 9;
constexpr unsigned kMaxDepth = 16;

u64 length(const char* s) {
  u64 n = 0;
  while (s[n] != 0) ++n;
  return n;
}
u64 padded(u64 n) { return (n + 3) & ~u64{3}; }

}  // namespace

bool node_is(const char* node, const char* base) {
  u64 i = 0;
  for (; base[i] != 0; ++i)
    if (node[i] != base[i]) return false;
  return node[i] == 0 || node[i] == '@';
}

bool for_each_property(const void* blob, Visitor visit, void* context) {
  const auto* b = static_cast<const u8*>(blob);
  if (be32(b) != kMagic) return false;
  const u32 total = be32(b + 4);
  const u8* structure = b + be32(b + 8);
  const u8* structure_end = structure + be32(b + 36);                     // size_dt_struct
  const char* strings = reinterpret_cast<const char*>(b + be32(b + 12));  // NOLINT: a C string
  if (be32(b + 8) >= total || be32(b + 12) >= total) return false;

  const char* names[kMaxDepth + 1] = {""};
  unsigned depth = 0;  // nodes open
  for (const u8* p = structure; p + 4 <= structure_end;) {
    const u32 token = be32(p);
    p += 4;
    switch (token) {
      case kBeginNode: {
        const char* name = reinterpret_cast<const char*>(p);  // NOLINT: a C string
        if (depth == kMaxDepth) return false;
        names[depth++] = name;
        p += padded(length(name) + 1);
        break;
      }
      case kEndNode:
        if (depth == 0) return false;
        --depth;
        break;
      case kProp: {
        if (depth == 0) return false;
        Property prop;
        prop.size = be32(p);
        prop.name = strings + be32(p + 4);
        prop.data = p + 8;
        prop.node = names[depth - 1];
        prop.parent = depth >= 2 ? names[depth - 2] : "";
        prop.depth = depth - 1;
        p += 8 + padded(prop.size);
        if (!visit(prop, context)) return true;
        break;
      }
      case kNop: break;
      case kEnd: return true;
      default: return false;
    }
  }
  return false;
}

}  // namespace kernel::fdt
