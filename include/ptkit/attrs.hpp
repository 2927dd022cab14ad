// Architecture-neutral mapping attributes. Each paging format encodes these
// into its own descriptor bits and refuses what it cannot express.
#pragma once

#include "ptkit/addr.hpp"

namespace ptkit {

/// Access permissions of a leaf, as a bit set.
enum class Perm : u8 {
  None = 0,
  R = 1u << 0,
  W = 1u << 1,
  X = 1u << 2,
  User = 1u << 3,  // accessible from the unprivileged level
};

constexpr Perm operator|(Perm a, Perm b) { return Perm(u8(a) | u8(b)); }
constexpr Perm operator&(Perm a, Perm b) { return Perm(u8(a) & u8(b)); }
constexpr Perm operator~(Perm a) { return Perm(u8(~u8(a)) & 0xF); }
constexpr bool has(Perm set, Perm bits) { return (set & bits) == bits; }

inline constexpr Perm RW = Perm::R | Perm::W;
inline constexpr Perm RX = Perm::R | Perm::X;
inline constexpr Perm RWX = Perm::R | Perm::W | Perm::X;

/// Memory type. Formats map these onto their own mechanism (x86 PAT, Arm MAIR,
/// RISC-V Svpbmt) through a layout the caller provides.
enum class MemType : u8 {
  WriteBack,
  WriteThrough,
  WriteCombining,
  WriteProtect,
  UncachedMinus,
  Uncached,
  Device,
};
inline constexpr unsigned kMemTypeCount = 7;

struct Attrs {
  Perm perm = Perm::R;
  MemType mem = MemType::WriteBack;
  bool global = false;
  constexpr bool operator==(const Attrs&) const = default;
};

/// A change applied by protect(): bits to set and clear, and optionally a new
/// memory type or global flag. Everything not named is preserved.
struct AttrChange {
  Perm set = Perm::None;
  Perm clear = Perm::None;
  bool change_mem = false;
  MemType mem = MemType::WriteBack;
  bool change_global = false;
  bool global = false;

  [[nodiscard]] constexpr Attrs applied_to(Attrs a) const {
    a.perm = (a.perm & ~clear) | set;
    if (change_mem) a.mem = mem;
    if (change_global) a.global = global;
    return a;
  }
};

}  // namespace ptkit
