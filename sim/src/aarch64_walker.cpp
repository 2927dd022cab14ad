// The AArch64 reference walker: VMSAv8-64 stage 1 translation in the EL1&0
// regime, written from the Arm ARM (DDI 0487, chapter D8, "The AArch64
// Virtual Memory System Architecture") and its pseudocode (AArch64.S1Walk,
// AArch64.DecodeDescriptorType, AArch64.BlockDescSupported, AArch64.LeafBase,
// AArch64.NextTableBase, AArch64.S1ApplyTablePerms, AArch64.S1CheckPermissions,
// ContiguousSize, StageOA). It shares no code with the core's format
// (include/ptkit/arch/aarch64.hpp): it is that format's oracle.
//
// Modelled: the 4K, 16K and 64K granules; input sizes of 25 to 52 bits in
// either half (TTBR0_EL1 or TTBR1_EL1, top byte not ignored); TCR_EL1.DS
// (FEAT_LPA2 descriptors for 4K and 16K); FEAT_LPA (OA[51:48] in bits[15:12]
// with 64K); TCR_EL1.IPS as `phys_bits`. Not modelled: hardware AF/dirty
// updates (TCR.HA/HD = 0), PAN, SCTLR_EL1.WXN, TCR.HPD (hierarchical
// permissions enabled), FEAT_PIE/FEAT_D128, stage 2.
//
// How the manual's faults map onto FaultKind:
//   - an address outside the configured half: translation fault at level 0
//     (AArch64.VAIsOutOfRange) -> NonCanonical, reported at the root level;
//   - bit[0] = 0, or an encoding DecodeDescriptorType calls invalid (0b01 at
//     level 3, a block at a level that cannot hold one: 4K level 0 without
//     DS and level -1, 16K levels 0 and 1 without DS, 64K level 1 without
//     FEAT_LPA) -> translation fault at that level -> NotPresent. decode()
//     says Kind::Reserved for the latter so that dumps and the rule checker
//     can tell them from a plain invalid entry; the walk treats both alike,
//     as the hardware does;
//   - a table or output address at or above the output size (TTBR included)
//     -> AddressSize at that level (the TTBR: the root level);
//   - AF = 0 -> Translation::accessed = false (an access flag fault, ranked
//     after translation and address size faults by Translation::check).
#include <bit>

#include "ptkit/sim/mmu.hpp"

namespace ptkit::sim {
namespace {

// ---- Geometry (D8.2, "Translation table walk"; AArch64.S1StartLevel) ---------

// log2 of the granule: the bits of the address a page passes through.
unsigned granule_bits(const MmuConfig& c) {
  return c.arm_granule == 65536 ? 16 : c.arm_granule == 16384 ? 14 : 12;
}
bool is_64k(const MmuConfig& c) { return c.arm_granule == 65536; }
// TCR_EL1.DS has effect only with the 4K and 16K granules.
bool ds(const MmuConfig& c) { return c.arm_ds && !is_64k(c); }
// Index bits a table resolves: one granule of 8-byte descriptors.
unsigned stride(const MmuConfig& c) { return granule_bits(c) - 3; }

// The input address size in effect. TnSZ below the minimum (52 bits need DS
// with 4K/16K, FEAT_LVA with 64K, which a 52-bit 64K configuration implies)
// or above the maximum (25 bits without FEAT_TTST) is treated as that limit,
// the pseudocode's choice when it does not fault (AArch64.S1MinTxSZ,
// AArch64.MaxTxSZ).
unsigned va_bits(const MmuConfig& c) {
  const unsigned max = (is_64k(c) || ds(c)) ? 52 : 48;
  return c.arm_va_bits < 25 ? 25 : c.arm_va_bits > max ? max : c.arm_va_bits;
}

// The output address size: TCR_EL1.IPS capped at what the descriptors can
// hold (AArch64.PhysicalAddressSize): 52 bits need DS (4K/16K) or FEAT_LPA
// (64K).
unsigned oa_bits(const MmuConfig& c) {
  const unsigned max = (is_64k(c) ? c.arm_lpa : ds(c)) ? 52 : 48;
  return c.phys_bits < max ? c.phys_bits : max;
}

// Levels from the start level down to level 3: the pseudocode's start level
// is 3 - ((iasize - 1 - granulebits) DIV stride).
unsigned levels(const MmuConfig& c) { return (va_bits(c) - 1 - granule_bits(c)) / stride(c) + 1; }

// The manual's level (-1..3) of ptkit level `level` (0 = level 3).
int arm_level(unsigned level) { return 3 - int(level); }

unsigned entry_shift(const MmuConfig& c, unsigned level) {
  return granule_bits(c) + stride(c) * level;
}

u64 entries(const MmuConfig& c, unsigned level) {
  if (level + 1 == levels(c)) return u64{1} << (va_bits(c) - entry_shift(c, level));
  return u64{1} << stride(c);
}

// AArch64.BlockDescSupported: which levels may hold a block descriptor.
bool block_supported(const MmuConfig& c, unsigned level) {
  switch (arm_level(level)) {
    case 0: return c.arm_granule == 4096 && ds(c);  // 512G
    case 1:
      if (c.arm_granule == 4096) return true;    // 1G
      if (c.arm_granule == 16384) return ds(c);  // 64G
      return c.arm_lpa;                          // 64K: 4T, when PAMax is 52
    case 2: return true;                         // 2M, 32M, 512M
    default: return false;                       // level 3 holds pages; -1 nothing
  }
}

// D8.6.1 "The Contiguous bit" (ContiguousSize, AArch64.ContiguousBit): the
// entries of an aligned run. The bit is RES0 (no run) on 4K level 0 and 16K
// level 1 blocks (the DS-only ones) and on 64K level 1 blocks.
unsigned run_entries(const MmuConfig& c, unsigned level) {
  if (level != 0 && !block_supported(c, level)) return 1;
  switch (arm_level(level)) {
    case 3: return c.arm_granule == 4096 ? 16 : c.arm_granule == 16384 ? 128 : 32;  // 64K, 2M, 2M
    case 2: return c.arm_granule == 4096 ? 16 : 32;                                 // 32M, 1G, 16G
    case 1: return c.arm_granule == 4096 ? 16 : 1;                                  // 16G
    default: return 1;
  }
}

// ---- Descriptors (D8.3, "Translation table descriptor formats") ---------------

// Bits of a table, block or page descriptor (VMSAv8-64, 64-bit descriptors).
constexpr unsigned kValid = 0;          // bit[0]
constexpr unsigned kTypeTable = 1;      // bit[1]: table or page, else block
constexpr unsigned kAttrIndx = 2;       // bits[4:2]: MAIR_EL1 index
constexpr unsigned kApUnpriv = 6;       // AP[1]: EL0 access
constexpr unsigned kApReadOnly = 7;     // AP[2]: no write at any EL
constexpr unsigned kSh = 8;             // bits[9:8]: SH, or OA[51:50] with DS
constexpr unsigned kAf = 10;            // Access flag
constexpr unsigned kNg = 11;            // not global
constexpr unsigned kLpaOaHigh = 12;     // bits[15:12]: OA[51:48] with 64K and FEAT_LPA
constexpr unsigned kDsOa49 = 48;        // bits[49:48]: OA[49:48] with DS
constexpr unsigned kContiguous = 52;    // Contiguous
constexpr unsigned kPxn = 53;           // PXN
constexpr unsigned kUxn = 54;           // UXN (XN)
constexpr unsigned kPxnTable = 59;      // table descriptors: PXNTable
constexpr unsigned kUxnTable = 60;      // UXNTable (XNTable)
constexpr unsigned kApTableNoEl0 = 61;  // APTable[0]: no EL0 access below
constexpr unsigned kApTableRo = 62;     // APTable[1]: no write below

constexpr bool bit(u64 raw, unsigned n) { return (raw >> n) & 1; }
constexpr u64 field(u64 raw, unsigned lsb, unsigned width) {
  return (raw >> lsb) & ((u64{1} << width) - 1);
}

// AArch64.LeafBase / AArch64.NextTableBase: descriptor bits[47:granule] plus
// the high output bits the layout in effect puts elsewhere; `align` is log2
// of the leaf size (a table: the granule).
u64 output_address(const MmuConfig& c, u64 raw, unsigned align) {
  u64 pa = raw & ((u64{1} << 48) - 1) & ~((u64{1} << align) - 1);
  if (is_64k(c)) {
    if (c.arm_lpa) pa |= field(raw, kLpaOaHigh, 4) << 48;
  } else if (ds(c)) {
    pa |= field(raw, kDsOa49, 2) << 48 | field(raw, kSh, 2) << 50;
  }
  return pa;
}

Descriptor decode(const MmuConfig& c, u64 raw, unsigned level) {
  Descriptor d;
  if (!bit(raw, kValid)) return d;  // Invalid
  const bool type = bit(raw, kTypeTable);
  if (level == 0 ? !type : (!type && !block_supported(c, level))) {
    d.kind = Descriptor::Kind::Reserved;  // decodes as invalid: translation fault
    return d;
  }
  if (level != 0 && type) {
    d.kind = Descriptor::Kind::Table;
    d.pa = output_address(c, raw, granule_bits(c));
    // What the table lets the levels below grant (D8.4.2, "Hierarchical
    // control of data access permissions", and of instruction fetch).
    d.read = true;
    d.write = !bit(raw, kApTableRo);
    d.user = !bit(raw, kApTableNoEl0);
    d.exec_priv = !bit(raw, kPxnTable);
    d.exec_user = !bit(raw, kUxnTable);
    d.accessed = true;
    return d;
  }
  d.kind = Descriptor::Kind::Leaf;
  d.pa = output_address(c, raw, entry_shift(c, level));
  // Stage 1 AP[2:1] (D8.4.1): EL1 may always read; AP[2] removes write at
  // every EL; AP[1] grants EL0 the same access.
  d.read = true;
  d.write = !bit(raw, kApReadOnly);
  d.user = bit(raw, kApUnpriv);
  d.exec_priv = !bit(raw, kPxn);
  d.exec_user = !bit(raw, kUxn);
  d.global = !bit(raw, kNg);
  d.mem_index = unsigned(field(raw, kAttrIndx, 3));
  d.shareability = ds(c) ? 0 : unsigned(field(raw, kSh, 2));
  d.contiguous = bit(raw, kContiguous) && run_entries(c, level) > 1;
  d.accessed = bit(raw, kAf);
  d.dirty = true;
  return d;
}

// ---- The walk (AArch64.S1Translate, AArch64.S1Walk) ---------------------------

Translation translate(const MmuConfig& c, const PhysMemory& memory, u64 root, u64 va) {
  Translation t;
  t.va = va;
  const unsigned top = levels(c) - 1;
  const unsigned ia = va_bits(c);
  const u64 oa_limit = u64{1} << oa_bits(c);

  // AArch64.VAIsOutOfRange: TTBR0 translates [0, 2^ia), TTBR1 [2^64 - 2^ia,
  // 2^64); bits [63:ia] must be all 0 or all 1 accordingly.
  const u64 above = va >> ia;
  if (above != (c.arm_upper ? (~u64{0} >> ia) : 0)) {
    t.fault = FaultKind::NonCanonical;
    t.level = int(top);
    return t;
  }

  // The initial table is aligned to its size, at least 64 bytes with the
  // 52-bit TTBR layouts (AArch64.S1TTBaseAddress).
  u64 root_bytes = entries(c, top) * 8;
  if (oa_bits(c) == 52 && root_bytes < 64) root_bytes = 64;
  u64 table = root & ~(root_bytes - 1);
  if (table >= oa_limit) {
    t.fault = FaultKind::AddressSize;
    t.level = int(top);
    return t;
  }

  // Restrictions the table descriptors on the way impose (APTable, PXNTable,
  // UXNTable), ORed down the walk.
  bool no_el0 = false, read_only = false, pxn_table = false, uxn_table = false;
  for (unsigned level = top;; --level) {
    const unsigned shift = entry_shift(c, level);
    const u64 index = (va >> shift) & (entries(c, level) - 1);
    const u64 raw = memory.read64(table + index * 8);
    const Descriptor d = decode(c, raw, level);
    t.level = int(level);
    if (d.kind == Descriptor::Kind::Invalid || d.kind == Descriptor::Kind::Reserved) {
      t.fault = FaultKind::NotPresent;
      return t;
    }
    if (d.pa >= oa_limit) {
      t.fault = FaultKind::AddressSize;
      return t;
    }
    if (d.kind == Descriptor::Kind::Table) {
      read_only |= !d.write;
      no_el0 |= !d.user;
      pxn_table |= !d.exec_priv;
      uxn_table |= !d.exec_user;
      table = d.pa;
      continue;
    }

    // StageOA: the output address keeps the input's bits below the leaf, or
    // below the whole run when the Contiguous bit is honoured (so a run
    // whose entries disagree translates as its own entry says it should).
    t.leaf_size = u64{1} << shift;
    const u64 span = d.contiguous ? t.leaf_size * run_entries(c, level) : t.leaf_size;
    t.pa = (d.pa & ~(span - 1)) | (va & (span - 1));

    // AArch64.S1CheckPermissions, with PAN, WXN and FEAT_PIE off.
    const bool writable = d.write && !read_only;  // AP[2] | APTable[1]
    const bool el0 = d.user && !no_el0;           // AP[1] & !APTable[0]
    t.read[0] = true;
    t.write[0] = writable;
    t.read[1] = el0;
    t.write[1] = el0 && writable;
    // EL0 execution depends on UXN alone (AP = 0b00 with UXN = 0 is
    // execute-only at EL0). A page EL0 may write is never executable at EL1
    // (D8.4.3: PXN is treated as 1 when AP[2:1] = 0b01, after APTable).
    t.exec[1] = d.exec_user && !uxn_table;
    t.exec[0] = d.exec_priv && !pxn_table && !t.write[1];
    t.global = d.global;
    t.mem_index = d.mem_index;
    t.shareability = d.shareability;
    t.accessed = d.accessed;
    t.dirty = true;  // no dirty state without TCR.HD
    return t;
  }
}

}  // namespace

const ArchOps& aarch64_ops() {
  static const ArchOps ops{levels, entry_shift, entries, run_entries, decode, translate};
  return ops;
}

}  // namespace ptkit::sim
