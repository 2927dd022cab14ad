#include "formats.hpp"

#include <fmt/format.h>

namespace ptkit::tool {

const std::vector<FormatInfo>& listed_formats() {
  static const std::vector<FormatInfo> kFormats = [] {
    std::vector<FormatInfo> v = {
        {"x86_64-4l", "x86-64 4-level paging, 48-bit VA; 4K, 2M, 1G pages; NX, default PAT"},
        {"x86_64-5l", "x86-64 5-level paging (LA57), 57-bit VA; 4K, 2M, 1G pages; NX, default PAT"},
    };
    struct Arm {
      const char* granule;
      const char* leaves48;
      const char* leaves52;
    };
    const Arm arms[] = {{"4k", "4K, 2M, 1G", "4K, 2M, 1G, 512G; FEAT_LPA2"},
                        {"16k", "16K, 32M", "16K, 32M, 64G; FEAT_LPA2"},
                        {"64k", "64K, 512M", "64K, 512M, 4T; FEAT_LVA, FEAT_LPA"}};
    for (const Arm& a : arms) {
      for (unsigned bits : {39u, 48u, 52u}) {
        v.push_back({fmt::format("aarch64-{}-{}", a.granule, bits),
                     fmt::format("AArch64 stage 1, {} granule, {}-bit VA (TTBR0 or TTBR1); {}",
                                 a.granule, bits, bits > 48 ? a.leaves52 : a.leaves48)});
      }
    }
    v.push_back({"riscv-sv39", "RISC-V Sv39, 39-bit VA; 4K, 2M, 1G pages; Svpbmt"});
    v.push_back({"riscv-sv48", "RISC-V Sv48, 48-bit VA; 4K, 2M, 1G, 512G pages; Svpbmt"});
    v.push_back({"riscv-sv57", "RISC-V Sv57, 57-bit VA; 4K, 2M, 1G, 512G, 256T pages; Svpbmt"});
    return v;
  }();
  return kFormats;
}

Format Format::from_name(std::string_view name, bool upper) {
  Format f;
  std::string error;
  if (!sim::MmuConfig::from_name(name, f.mmu_, error))
    throw UsageError(fmt::format("--format: {}; `ptkit formats` lists them", error));
  f.name_ = std::string(name);
  const sim::MmuConfig& m = f.mmu_;
  switch (m.arch) {
    case sim::Arch::X86_64: {
      // What MmuConfig::from_name assumes: 1G pages, NXE, MAXPHYADDR 52.
      x86::Features cpu;
      cpu.page_1g = m.x86_page_1g;
      cpu.nx = m.x86_nxe;
      cpu.phys_bits = m.phys_bits;
      if (m.x86_levels == 5)
        f.core_ = x86::Paging5(cpu);
      else
        f.core_ = x86::Paging4(cpu);
      break;
    }
    case sim::Arch::AArch64: {
      aarch64::Features cpu;
      cpu.lpa2 = m.arm_ds;
      cpu.lpa = cpu.lva = m.arm_lpa;
      cpu.phys_bits = m.phys_bits;
      const auto granule = m.arm_granule == 4096    ? aarch64::Granule::K4
                           : m.arm_granule == 16384 ? aarch64::Granule::K16
                                                    : aarch64::Granule::K64;
      f.upper_ = upper;
      f.mmu_.arm_upper = upper;
      auto made = aarch64::Paging::make(granule, m.arm_va_bits,
                                        upper ? aarch64::Half::Upper : aarch64::Half::Lower, cpu);
      if (!made) {
        throw UsageError(fmt::format("--format {}: {}", name,
                                     aarch64::Paging::config_problem(granule, m.arm_va_bits, cpu)));
      }
      f.core_ = made.value();
      break;
    }
    case sim::Arch::RiscV: {
      // Svpbmt on, so that MMIO windows can be Device (PBMT=IO); the
      // simulator is told the same.
      f.mmu_.rv_svpbmt = true;
      riscv::Features cpu;
      cpu.svpbmt = true;
      cpu.phys_bits = m.phys_bits;
      const auto mode = m.rv_va_bits == 39   ? riscv::Mode::Sv39
                        : m.rv_va_bits == 48 ? riscv::Mode::Sv48
                                             : riscv::Mode::Sv57;
      auto made = riscv::Paging::make(mode, cpu);
      if (!made) throw UsageError(fmt::format("--format {}: not a valid configuration", name));
      f.core_ = made.value();
      break;
    }
  }
  return f;
}

unsigned Format::levels() const {
  return std::visit([](const auto& p) { return p.levels(); }, core_);
}

u64 Format::leaf_size(unsigned level) const {
  return std::visit(
      [level](const auto& p) {
        unsigned shift = p.page_shift();
        for (unsigned l = 0; l < level; ++l) shift += p.index_bits(l);
        return u64{1} << shift;
      },
      core_);
}

bool Format::leaf_allowed(unsigned level) const {
  return std::visit([level](const auto& p) { return p.leaf_allowed(level); }, core_);
}

u64 Format::page_size() const {
  return std::visit([](const auto& p) { return u64{1} << p.page_shift(); }, core_);
}

unsigned Format::va_bits() const {
  return std::visit(
      [](const auto& p) {
        unsigned bits = p.page_shift();
        for (unsigned l = 0; l < p.levels(); ++l) bits += p.index_bits(l);
        return bits;
      },
      core_);
}

u64 Format::upper_start() const {
  const unsigned bits = va_bits();
  // AArch64's TTBR1 region is the top 2^va_bits bytes; x86-64 and RISC-V
  // sign-extend bit va_bits-1, so their upper half is half as large.
  if (is_aarch64()) return bits >= 64 ? 0 : ~u64{0} << bits;
  return ~u64{0} << (bits - 1);
}

std::string Format::level_name(unsigned level) const {
  return std::visit([level](const auto& p) { return std::string(p.level_name(level)); }, core_);
}

bool Format::can_express(const Attrs& attrs) const {
  return std::visit([&](const auto& p) { return p.can_express(attrs); }, core_);
}

std::string Format::mem_name(unsigned index) const {
  return std::visit(
      [index](const auto& p) -> std::string {
        using P = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<P, aarch64::Paging>) {
          const aarch64::MairSlot& s = p.features().mair.slot[index & 7];
          return s.used ? mem_type_name(s.mem) : fmt::format("attr{}", index);
        } else if constexpr (std::is_same_v<P, riscv::Paging>) {
          switch (index) {
            case 0: return "wb";      // PMA: the platform's attributes, normally WB memory
            case 1: return "wc";      // NC
            case 2: return "device";  // IO
            default: return "pbmt3";
          }
        } else {
          return mem_type_name(P::to_mem_type(p.features().pat.entry[index & 7]));
        }
      },
      core_);
}

const char* mem_type_name(MemType m) {
  switch (m) {
    case MemType::WriteBack: return "wb";
    case MemType::WriteThrough: return "wt";
    case MemType::WriteCombining: return "wc";
    case MemType::WriteProtect: return "wp";
    case MemType::UncachedMinus: return "uc-";
    case MemType::Uncached: return "uc";
    case MemType::Device: return "device";
  }
  return "?";
}

bool mem_type_for(std::string_view name, const Format& format, MemType& out) {
  for (unsigned i = 0; i < kMemTypeCount; ++i) {
    if (name == mem_type_name(MemType(i))) {
      out = MemType(i);
      if (out == MemType::Device && !format.can_express(Attrs{Perm::R, MemType::Device, false}))
        out = MemType::Uncached;
      return true;
    }
  }
  return false;
}

}  // namespace ptkit::tool

// ---- `ptkit formats` ---------------------------------------------------------------

#include <iostream>

#include "commands.hpp"

namespace ptkit::tool {

int cmd_formats() {
  for (const FormatInfo& f : listed_formats())
    std::cout << fmt::format("{:<16} {}\n", f.name, f.description);
  return kExitOk;
}

}  // namespace ptkit::tool
