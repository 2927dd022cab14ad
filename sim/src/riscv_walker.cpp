// Reference walker for RISC-V Sv39, Sv48 and Sv57, written from the RISC-V
// privileged specification (version 20211203): §4.3.1 (PTE fields, the
// R/W/X encodings, G in non-leaf entries), §4.3.2 (the virtual address
// translation process, followed step by step below), §4.4-§4.6 (Sv39, Sv48,
// Sv57 geometry and reserved bits 60:54), chapter 5 (Svnapot), chapter 6
// (Svpbmt), and the Svadu extension (hardware A/D updates). It shares no code
// with the core's format (include/ptkit/arch): it is the oracle the core is
// checked against.
#include "ptkit/sim/mmu.hpp"

namespace ptkit::sim {
namespace {

constexpr u64 bit(unsigned n) { return u64{1} << n; }
constexpr u64 bits(unsigned hi, unsigned lo) {
  const u64 upto_hi = hi >= 63 ? ~u64{0} : bit(hi + 1) - 1;
  return upto_hi & ~(bit(lo) - 1);
}

// §4.4, Figure "Sv39 page table entry" (the same layout in Sv48 and Sv57).
constexpr u64 kV = bit(0);  // Valid
constexpr u64 kR = bit(1);  // Readable
constexpr u64 kW = bit(2);  // Writable
constexpr u64 kX = bit(3);  // Executable
constexpr u64 kU = bit(4);  // User-mode accessible
constexpr u64 kG = bit(5);  // Global (in a non-leaf PTE: every mapping below)
constexpr u64 kA = bit(6);  // Accessed
constexpr u64 kD = bit(7);  // Dirty
// Bits 9:8 (RSW) are ignored by hardware.
constexpr unsigned kPpnShift = 10;  // PPN in bits 53:10 (44 bits)
constexpr u64 kPpn = bits(53, kPpnShift);
constexpr u64 kReserved = bits(60, 54);  // reserved for future standard use: must be 0
constexpr unsigned kPbmtShift = 61;      // chapter 6: PBMT in bits 62:61
constexpr u64 kPbmt = bits(62, kPbmtShift);
constexpr u64 kN = bit(63);  // chapter 5: NAPOT

// Chapter 6: PBMT 0 = PMA, 1 = NC, 2 = IO, 3 reserved.
constexpr u64 kPbmtReserved = 3;
// Chapter 5, the table of NAPOT encodings: the only one defined is 64 KiB at
// level 0, ppn[0][3:0] = 1000 (napot_bits = 4); every other is reserved.
constexpr unsigned kNapotBits = 4;
constexpr u64 kNapotPattern = 0b1000;

constexpr unsigned kPageShift = 12;  // PAGESIZE = 2^12
constexpr unsigned kIndexBits = 9;   // each VPN[i] is 9 bits; PTESIZE = 8

unsigned levels(const MmuConfig& c) {
  // Sv39: 3, Sv48: 4, Sv57: 5 (LEVELS in §4.3.2).
  return (c.rv_va_bits - kPageShift) / kIndexBits;
}

unsigned entry_shift(const MmuConfig&, unsigned level) { return kPageShift + kIndexBits * level; }

u64 entries(const MmuConfig&, unsigned) { return u64{1} << kIndexBits; }

// Chapter 5: a 64 KiB NAPOT mapping is 16 level-0 PTEs.
unsigned run_entries(const MmuConfig& c, unsigned level) {
  return c.rv_svnapot && level == 0 ? 1u << kNapotBits : 1u;
}

Descriptor decode(const MmuConfig& c, u64 raw, unsigned level) {
  Descriptor d;
  // §4.3.2 step 3: V=0 stops the walk with a page fault.
  if ((raw & kV) == 0) return d;

  const bool r = raw & kR, w = raw & kW, x = raw & kX;
  const bool leaf = r || x;  // step 4: R=0 and X=0 is a pointer to the next level
  const u64 ppn = (raw & kPpn) >> kPpnShift;
  const u64 pbmt = (raw & kPbmt) >> kPbmtShift;
  const bool napot = raw & kN;

  bool reserved = (raw & kReserved) != 0;  // step 3: reserved bits set
  reserved |= w && !r;                     // step 3: W without R is reserved
  // Chapter 6: PBMT is reserved without Svpbmt, in non-leaf PTEs, and = 3.
  if (pbmt != 0) reserved |= !c.rv_svpbmt || !leaf || pbmt == kPbmtReserved;
  // Chapter 5: N is reserved without Svnapot and in non-leaf PTEs; a leaf
  // with N is defined only at level 0 with the 64 KiB pattern.
  if (napot) {
    reserved |=
        !c.rv_svnapot || !leaf || level != 0 || (ppn & bits(kNapotBits - 1, 0)) != kNapotPattern;
  }
  if (!leaf) {
    // §4.3.1: D, A and U are reserved in non-leaf PTEs.
    reserved |= (raw & (kD | kA | kU)) != 0;
    // Step 4: a pointer where i would drop below 0.
    reserved |= level == 0;
  } else if (level > 0) {
    // Step 6: pte.ppn[i-1:0] != 0 is a misaligned superpage.
    reserved |= (ppn & (bit(kIndexBits * level) - 1)) != 0;
  }

  const u64 base_ppn = napot ? ppn & ~(bit(kNapotBits) - 1) : ppn;
  d.pa = base_ppn << kPageShift;
  if (reserved) {
    d.kind = Descriptor::Kind::Reserved;
    return d;
  }
  d.kind = leaf ? Descriptor::Kind::Leaf : Descriptor::Kind::Table;
  d.global = (raw & kG) != 0;
  if (leaf) {
    d.read = r;
    d.write = w;
    d.user = (raw & kU) != 0;
    d.exec_priv = d.exec_user = x;
    d.mem_index = static_cast<unsigned>(pbmt);
    d.contiguous = napot;
    d.accessed = (raw & kA) != 0;
    d.dirty = (raw & kD) != 0;
  }
  return d;
}

/// §4.4-§4.6: bits 63:VABITS of the address must all equal bit VABITS-1, or
/// the access raises a page fault.
bool canonical(u64 va, unsigned va_bits) {
  const auto sign = static_cast<std::int64_t>(va << (64 - va_bits)) >> (64 - va_bits);
  return static_cast<u64>(sign) == va;
}

Translation translate(const MmuConfig& c, const PhysMemory& mem, u64 root, u64 va) {
  Translation t;
  t.va = va;
  const unsigned n = levels(c);
  if (!canonical(va, entry_shift(c, n))) {
    t.fault = FaultKind::NonCanonical;
    return t;
  }
  // Step 1: a = satp.ppn * PAGESIZE (the caller passes the address itself).
  u64 a = root & ~(bit(kPageShift) - 1);
  // §4.3.1: G in a non-leaf PTE makes every mapping below it global.
  bool global = false;
  for (unsigned i = n; i-- > 0;) {
    // Step 2: pte at a + va.vpn[i] * PTESIZE.
    const u64 vpn = (va >> entry_shift(c, i)) & (entries(c, i) - 1);
    const Descriptor d = decode(c, mem.read64(a + vpn * 8), i);
    t.level = static_cast<int>(i);
    if (d.kind == Descriptor::Kind::Invalid) {
      t.fault = FaultKind::NotPresent;
      return t;
    }
    if (d.kind == Descriptor::Kind::Reserved) {
      t.fault = FaultKind::ReservedBits;
      return t;
    }
    global = global || d.global;
    if (d.kind == Descriptor::Kind::Table) {
      a = d.pa;  // step 4: a = pte.ppn * PAGESIZE, i = i - 1
      continue;
    }
    // Step 8: the page offset and, for a superpage, va.vpn[i-1:0] come from
    // the address; with Svnapot also va.vpn[0][3:0] (chapter 5). A NAPOT
    // translation may be cached for the whole 64 KiB, so that is its size.
    t.leaf_size = bit(entry_shift(c, i)) * (d.contiguous ? run_entries(c, 0) : 1u);
    t.pa = d.pa | (va & (t.leaf_size - 1));
    t.global = global;
    t.mem_index = d.mem_index;
    // Step 7: A=0, or D=0 on a store, faults unless Svadu has the hardware
    // set them (the simulated memory is not written; the bits count as set).
    t.accessed = d.accessed || c.rv_svadu;
    t.dirty = d.dirty || c.rv_svadu;

    // Step 5 (§4.3.1 and the SUM/MXR fields of sstatus, §4.1.1): loads need R,
    // or X with MXR; stores need W; fetches need X. U-mode reaches only U=1
    // pages. S-mode reaches U=1 pages only for loads and stores with SUM,
    // and never executes them.
    const bool readable = d.read || (c.rv_mxr && d.exec_priv);
    if (d.user) {
      t.read[1] = readable;
      t.write[1] = d.write;
      t.exec[1] = d.exec_user;
      t.read[0] = c.rv_sum && readable;
      t.write[0] = c.rv_sum && d.write;
      t.exec[0] = false;
    } else {
      t.read[0] = readable;
      t.write[0] = d.write;
      t.exec[0] = d.exec_priv;
    }
    return t;
  }
  return t;  // not reached: a pointer at level 0 decodes as reserved
}

}  // namespace

const ArchOps& riscv_ops() {
  static constexpr ArchOps ops{levels, entry_shift, entries, run_entries, decode, translate};
  return ops;
}

}  // namespace ptkit::sim
