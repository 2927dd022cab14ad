// Reference walker for x86-64 4-level and 5-level paging, written from the
// Intel SDM vol. 3A: §4.5 (4-level and 5-level paging: the entry formats of
// the tables "Format of a PML5 Entry" .. "Format of a Page-Table Entry that
// Maps a 4-KByte Page", Tables 4-15 ff.), §4.6 (access rights), §4.7 (page
// fault error code: which encodings are reserved), §4.9.2 / §11.12.3 (how
// PAT, PCD and PWT select a PAT entry). It shares no code with the core's
// format (include/ptkit/arch): it is the oracle the core is checked against.
#include "ptkit/sim/mmu.hpp"

namespace ptkit::sim {
namespace {

constexpr u64 bit(unsigned n) { return u64{1} << n; }
/// Bits hi..lo inclusive (an empty mask when hi < lo).
constexpr u64 bits(unsigned hi, unsigned lo) {
  if (hi < lo) return 0;
  const u64 upto_hi = hi >= 63 ? ~u64{0} : bit(hi + 1) - 1;
  return upto_hi & ~(bit(lo) - 1);
}

// §4.5, the entry format tables: the same bit means the same thing at every
// level unless noted.
constexpr u64 kP = bit(0);    // Present
constexpr u64 kRW = bit(1);   // Read/write: 0 = writes may not be allowed (§4.6)
constexpr u64 kUS = bit(2);   // User/supervisor: 0 = no CPL 3 access (§4.6)
constexpr u64 kPWT = bit(3);  // Page-level write-through (§4.9.2)
constexpr u64 kPCD = bit(4);  // Page-level cache disable (§4.9.2)
constexpr u64 kA = bit(5);    // Accessed (§4.8)
constexpr u64 kD = bit(6);    // Dirty, in entries that map a page (§4.8); else ignored
// Bit 7: PS (page size) in a PDPTE or PDE; PAT in a PTE; reserved (must be 0)
// in a PML4E and a PML5E.
constexpr u64 kPS = bit(7);
constexpr u64 kPatPte = bit(7);
constexpr u64 kG = bit(8);          // Global, in entries that map a page (§4.10)
constexpr u64 kPatLarge = bit(12);  // PAT in a PDPTE/PDE that maps a 1G/2M page
constexpr u64 kXD = bit(63);        // Execute-disable if IA32_EFER.NXE, else reserved
// Bits 51:M are reserved in every entry, M = MAXPHYADDR (at most 52); bits
// 58:52 are ignored and 62:59 are the protection key (ignored without
// CR4.PKE): none of them matter to a walk without PKE.
constexpr unsigned kMaxPhysBits = 52;

constexpr unsigned kPageShift = 12;  // 4 KiB pages and tables
constexpr unsigned kIndexBits = 9;   // 512 eight-byte entries per table

// Level numbering is ptkit's: 0 = page table (PTE), 1 = page directory (PDE),
// 2 = page-directory-pointer table (PDPTE), 3 = PML4, 4 = PML5.
constexpr unsigned kPdpt = 2;
constexpr unsigned kPml4 = 3;

unsigned levels(const MmuConfig& c) { return c.x86_levels == 5 ? 5 : 4; }

unsigned entry_shift(const MmuConfig&, unsigned level) { return kPageShift + kIndexBits * level; }

u64 entries(const MmuConfig&, unsigned) { return u64{1} << kIndexBits; }

// x86 has no contiguous hint.
unsigned run_entries(const MmuConfig&, unsigned) { return 1; }

unsigned phys_bits(const MmuConfig& c) {
  return c.phys_bits > kMaxPhysBits ? kMaxPhysBits : c.phys_bits;
}

Descriptor decode(const MmuConfig& c, u64 raw, unsigned level) {
  Descriptor d;
  if ((raw & kP) == 0) return d;  // §4.5: P=0 — every other bit is ignored

  const unsigned m = phys_bits(c);
  u64 reserved = bits(kMaxPhysBits - 1, m);  // 51:M in every entry
  if (!c.x86_nxe) reserved |= kXD;           // XD without NXE is reserved

  bool leaf = false;
  if (level == 0) {
    leaf = true;  // a PTE always maps a 4 KiB page; bit 7 is its PAT bit
  } else if (level >= kPml4) {
    reserved |= kPS;  // PML4E / PML5E: bit 7 reserved (must be 0)
  } else if (raw & kPS) {
    leaf = true;
    // A PDPTE with PS=1 maps a 1 GiB page only where
    // CPUID.80000001H:EDX.Page1GB[26] says so; otherwise bit 7 is reserved.
    if (level == kPdpt && !c.x86_page_1g) reserved |= kPS;
    // A large leaf's address field starts at bit 30 (1G) or 21 (2M); bit 12
    // is its PAT bit and the bits between are reserved (29:13 or 20:13).
    reserved |= bits(kPageShift + kIndexBits * level - 1, 13);
  }

  const unsigned low = leaf ? kPageShift + kIndexBits * level : kPageShift;
  d.pa = raw & bits(m - 1, low);
  if (raw & reserved) {
    d.kind = Descriptor::Kind::Reserved;
    return d;
  }
  d.kind = leaf ? Descriptor::Kind::Leaf : Descriptor::Kind::Table;
  // Every present entry can be read through; R/W, U/S and XD are recorded for
  // non-leaf entries too, because they restrict everything below (§4.6).
  d.read = true;
  d.write = (raw & kRW) != 0;
  d.user = (raw & kUS) != 0;
  d.exec_priv = d.exec_user = !(c.x86_nxe && (raw & kXD));
  d.accessed = (raw & kA) != 0;
  if (leaf) {
    d.global = (raw & kG) != 0;
    d.dirty = (raw & kD) != 0;
    // §4.9.2: PAT entry index = 4*PAT + 2*PCD + PWT.
    const u64 pat = level == 0 ? kPatPte : kPatLarge;
    d.mem_index = ((raw & pat) ? 4u : 0u) | ((raw & kPCD) ? 2u : 0u) | ((raw & kPWT) ? 1u : 0u);
  }
  return d;
}

/// §4.5: a linear address is canonical when bits 63:48 (4-level) or 63:57
/// (5-level) all equal bit 47 or 56; any other address raises #GP before any
/// table is read.
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
  // CR3 bits 11:0 hold PCD/PWT (or the PCID), not address bits.
  u64 table = root & ~(bit(kPageShift) - 1);
  // §4.6: the access rights of a translation combine every entry on the
  // walk: writable only if R/W=1 in all of them, user-mode only if U/S=1 in
  // all of them, execute-disabled if XD=1 in any of them (with NXE).
  bool writable = true, user = true, executable = true;
  for (unsigned level = n; level-- > 0;) {
    const u64 index = (va >> entry_shift(c, level)) & (entries(c, level) - 1);
    const Descriptor d = decode(c, mem.read64(table + index * 8), level);
    t.level = static_cast<int>(level);
    if (d.kind == Descriptor::Kind::Invalid) {
      t.fault = FaultKind::NotPresent;
      return t;
    }
    if (d.kind == Descriptor::Kind::Reserved) {
      t.fault = FaultKind::ReservedBits;  // #PF with the RSVD error code bit (§4.7)
      return t;
    }
    writable = writable && d.write;
    user = user && d.user;
    executable = executable && d.exec_priv;
    if (d.kind == Descriptor::Kind::Table) {
      table = d.pa;
      continue;
    }
    t.leaf_size = u64{1} << entry_shift(c, level);
    t.pa = d.pa | (va & (t.leaf_size - 1));
    t.global = d.global;
    t.mem_index = d.mem_index;
    // x86 sets A and D itself and never faults on them; the raw bits are in
    // the Descriptor.
    t.accessed = t.dirty = true;

    // §4.6.1, supervisor-mode accesses (CPL < 3):
    // - data reads: any supervisor page; a user page unless SMAP (the model
    //   has no EFLAGS.AC, so SMAP always applies);
    // - data writes: as reads, and with CR0.WP only where writable;
    // - instruction fetches: not from a user page with SMEP; with NXE only
    //   where no entry has XD.
    const bool smap_blocks = user && c.x86_smap;
    t.read[0] = !smap_blocks;
    t.write[0] = !smap_blocks && (writable || !c.x86_wp);
    t.exec[0] = executable && !(user && c.x86_smep);
    // User-mode accesses (CPL = 3): user pages only; writes need R/W in all
    // entries whatever CR0.WP; fetches need XD clear in all (with NXE).
    t.read[1] = user;
    t.write[1] = user && writable;
    t.exec[1] = user && executable;
    return t;
  }
  return t;  // not reached: a PTE is always a leaf
}

}  // namespace

const ArchOps& x86_ops() {
  static constexpr ArchOps ops{levels, entry_shift, entries, run_entries, decode, translate};
  return ops;
}

}  // namespace ptkit::sim
