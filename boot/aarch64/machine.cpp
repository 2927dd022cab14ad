#include "machine.hpp"

#include "cpu.hpp"
#include "serial.hpp"

namespace kernel {
namespace {

using ptkit::PhysAddr;
using ptkit::u64;
using ptkit::aarch64::Granule;
using ptkit::early::MemoryKind;

unsigned field(u64 reg, unsigned shift) { return static_cast<unsigned>((reg >> shift) & 0xF); }

// ID_AA64MMFR0_EL1.TGran<n> (D23.2): whether the granule exists, and
// whether it does 52-bit addresses (FEAT_LPA2). TGran4 and TGran64 read 0
// for "supported", 0xF for "not"; TGran16 reads 0 for "not".
bool granule_supported(Granule g, unsigned tgran) {
  return g == Granule::K16 ? tgran != 0 : tgran != 0xF;
}
bool granule_has_lpa2(Granule g, unsigned tgran) {
  return g == Granule::K4 ? tgran == 1 : g == Granule::K16 ? tgran == 2 : false;
}

}  // namespace

const char* discover(Machine& m) {
  using namespace config;
  // The PL011 gets one granule page (its 4 KiB of registers, rounded up;
  // nothing else sits below 0x0901_0000 on virt).
  m.ranges[0] = {PhysAddr(kRamBase), kRamSize, MemoryKind::Ram};
  m.ranges[1] = {PhysAddr(serial::kPl011), kPage, MemoryKind::Device};

  const u64 mmfr0 = cpu::read_id_aa64mmfr0_el1();
  const u64 mmfr2 = cpu::read_id_aa64mmfr2_el1();
  m.pa_range = field(mmfr0, 0);
  m.tgran = field(mmfr0, kGranule == Granule::K4 ? 28 : kGranule == Granule::K16 ? 20 : 24);
  m.va_range = field(mmfr2, 16);
  m.bbm = field(mmfr2, 52);

  if (!granule_supported(kGranule, m.tgran)) return "the granule (ID_AA64MMFR0_EL1.TGran)";
  if (!kWide) return nullptr;  // 48-bit PA and VA: every CPU with the granule
  if (m.pa_range < 6) return "52-bit PA (ID_AA64MMFR0_EL1.PARange)";
  m.features.phys_bits = 52;
  if (kGranule == Granule::K64) {
    if (m.va_range != 1) return "52-bit VA (ID_AA64MMFR2_EL1.VARange, FEAT_LVA)";
    m.features.lpa = true;
    m.features.lva = true;
  } else {
    if (!granule_has_lpa2(kGranule, m.tgran)) return "FEAT_LPA2 (ID_AA64MMFR0_EL1.TGran)";
    m.features.lpa2 = true;
  }
  return nullptr;
}

}  // namespace kernel
