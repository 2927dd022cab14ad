#include "ptkit/sim/mmu.hpp"

#include <charconv>

namespace ptkit::sim {

const char* to_string(FaultKind k) {
  switch (k) {
    case FaultKind::None: return "none";
    case FaultKind::NonCanonical: return "non-canonical address";
    case FaultKind::NotPresent: return "not present";
    case FaultKind::ReservedBits: return "reserved bits";
    case FaultKind::AddressSize: return "address size";
    case FaultKind::Permission: return "permission";
    case FaultKind::AccessFlag: return "access flag";
  }
  return "?";
}

// Arm ARM D8 fault priority: translation, address size, access flag, then
// permission. RISC-V raises a page fault either way; x86 never faults on A/D.
FaultKind Translation::check(Access access) const {
  if (fault != FaultKind::None) return fault;
  if (!accessed) return FaultKind::AccessFlag;
  const int u = access.user ? 1 : 0;
  switch (access.type) {
    case AccessType::Read:
      if (!read[u]) return FaultKind::Permission;
      break;
    case AccessType::Write:
      if (!write[u]) return FaultKind::Permission;
      if (!dirty) return FaultKind::AccessFlag;
      break;
    case AccessType::Execute:
      if (!exec[u]) return FaultKind::Permission;
      break;
  }
  return FaultKind::None;
}

namespace {

bool parse_unsigned(std::string_view text, unsigned& out) {
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc{} && ptr == end;
}

}  // namespace

bool MmuConfig::from_name(std::string_view name, MmuConfig& out, std::string& error) {
  MmuConfig c;
  if (name == "x86_64-4l" || name == "x86_64-5l") {
    c.arch = Arch::X86_64;
    c.x86_levels = name == "x86_64-4l" ? 4 : 5;
    c.x86_page_1g = true;
    out = c;
    return true;
  }
  if (name == "riscv-sv39" || name == "riscv-sv48" || name == "riscv-sv57") {
    c.arch = Arch::RiscV;
    c.phys_bits = 56;
    c.rv_va_bits = name == "riscv-sv39" ? 39 : name == "riscv-sv48" ? 48 : 57;
    out = c;
    return true;
  }
  constexpr std::string_view kArm = "aarch64-";
  if (name.starts_with(kArm)) {
    const std::string_view rest = name.substr(kArm.size());
    const auto dash = rest.find('-');
    unsigned va_bits = 0;
    if (dash == std::string_view::npos || !parse_unsigned(rest.substr(dash + 1), va_bits)) {
      error = "expected aarch64-<4k|16k|64k>-<va bits>, got '" + std::string(name) + "'";
      return false;
    }
    const std::string_view granule = rest.substr(0, dash);
    c.arch = Arch::AArch64;
    if (granule == "4k") {
      c.arm_granule = 4096;
    } else if (granule == "16k") {
      c.arm_granule = 16384;
    } else if (granule == "64k") {
      c.arm_granule = 65536;
    } else {
      error = "unknown AArch64 granule '" + std::string(granule) + "' (4k, 16k or 64k)";
      return false;
    }
    if (va_bits < 25 || va_bits > 52) {
      error = "AArch64 input address size must be 25 to 52 bits, got " + std::to_string(va_bits);
      return false;
    }
    c.arm_va_bits = va_bits;
    c.phys_bits = 48;
    if (va_bits > 48) {
      c.phys_bits = 52;
      c.arm_ds = c.arm_granule != 65536;
      c.arm_lpa = c.arm_granule == 65536;
    }
    out = c;
    return true;
  }
  error = "unknown paging format '" + std::string(name) +
          "' (x86_64-4l, x86_64-5l, aarch64-<4k|16k|64k>-<va bits>, riscv-sv39|sv48|sv57)";
  return false;
}

}  // namespace ptkit::sim
