// The stage 1 registers (D23.2): MAIR_EL1, TCR_EL1 and TTBR0_EL1 made to
// match a ptkit format, the MMU turned on, and later switches of TTBR0_EL1
// between spaces built with ptkit.
#pragma once

#include "cpu.hpp"
#include "ptkit/arch/aarch64.hpp"

namespace kernel::mmu {

using ptkit::u64;
using Format = ptkit::aarch64::Paging;

/// TCR_EL1 for a TTBR0-only space of `f`: T0SZ, walks Inner Shareable and
/// Write-Back cacheable (the tables are Normal WB memory), TG0 the granule,
/// TTBR1 walks disabled (EPD1), IPS the output size, DS for the LPA2
/// layout. 8-bit ASIDs; ASID 0 is the kernel's.
inline u64 tcr_for(const Format& f) {
  const u64 tg0 = f.granule() == ptkit::aarch64::Granule::K4    ? 0b00
                  : f.granule() == ptkit::aarch64::Granule::K64 ? 0b01
                                                                : 0b10;
  const u64 ips = f.phys_bits() == 52 ? 0b110 : 0b101;  // 52 or 48 bits
  u64 tcr = u64{f.tnsz()};                              // T0SZ [5:0]
  tcr |= u64{0b01} << 8;                                // IRGN0: WB, write-allocate
  tcr |= u64{0b01} << 10;                               // ORGN0: WB, write-allocate
  tcr |= u64{0b11} << 12;                               // SH0: Inner Shareable
  tcr |= tg0 << 14;                                     // TG0
  tcr |= u64{1} << 23;                                  // EPD1: no TTBR1 walks
  tcr |= u64{0b10} << 30;                               // TG1: 4K (unused, but defined)
  tcr |= ips << 32;                                     // IPS
  if (f.ds()) tcr |= u64{1} << 59;                      // DS: the LPA2 descriptor layout
  return tcr;
}

// SCTLR_EL1: M (stage 1 on), A (alignment checks: off), C and I (data and
// instruction caches), WXN (writable implies XN: off, the checks decide
// permissions themselves).
inline constexpr u64 kSctlrM = u64{1} << 0;
inline constexpr u64 kSctlrA = u64{1} << 1;
inline constexpr u64 kSctlrC = u64{1} << 2;
inline constexpr u64 kSctlrI = u64{1} << 12;
inline constexpr u64 kSctlrWxn = u64{1} << 19;

/// Turns the MMU on with the tables at `root`, which must map the code
/// running this at its own (physical) address.
inline void enable(const Format& f, u64 root) {
  // The tables were written with the MMU off, as Device memory, which is
  // never cached: on hardware nothing stale can sit in the data cache for
  // the walker to miss (QEMU has no caches at all). The DSB makes the
  // writes complete before the walker can start.
  cpu::dsb_sy();
  cpu::write_mair_el1(f.features().mair.mair_value());
  cpu::write_tcr_el1(tcr_for(f));
  cpu::write_ttbr0_el1(root);  // ASID 0
  cpu::isb();                  // the registers above before the TLBI
  cpu::tlbi_all();             // translations cached from before reset are UNKNOWN (D8.16)
  const u64 sctlr = cpu::read_sctlr_el1();
  cpu::write_sctlr_el1((sctlr | kSctlrM | kSctlrC | kSctlrI) & ~(kSctlrA | kSctlrWxn));
  cpu::isb();  // the next fetch is translated
}

/// Switches TTBR0_EL1 to other tables. Both spaces map the running code, the
/// stack and the image identically (global translations of the same pages
/// with the same attributes), so a translation of the old space used between
/// the write and the TLBI is one the new space has too. Every space here
/// uses ASID 0: the TLBI drops the old space's other translations.
inline void switch_to(u64 root) {
  cpu::dsb_sy();  // the new tables' writes before the walker can read them
  cpu::write_ttbr0_el1(root);
  cpu::isb();
  cpu::tlbi_all();
}

}  // namespace kernel::mmu
