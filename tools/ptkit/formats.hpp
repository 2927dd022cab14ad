// Format names (`ptkit formats`, `--format`) and what each stands for: the
// core's format object with the CPU features the tool assumes, and the
// simulator's MMU configuration that reads the same tables back. Both are
// derived here, from one name, so that `build` and `dump` agree.
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ptkit/arch/aarch64.hpp"
#include "ptkit/arch/riscv.hpp"
#include "ptkit/arch/x86_64.hpp"
#include "ptkit/sim/mmu.hpp"
#include "util.hpp"

namespace ptkit::tool {

using AnyFormat = std::variant<x86::Paging4, x86::Paging5, aarch64::Paging, riscv::Paging>;

struct FormatInfo {
  std::string name;
  std::string description;
};
/// The formats `ptkit formats` lists. --format also takes any other AArch64
/// input size from 25 to 52 bits (aarch64-4k-42).
const std::vector<FormatInfo>& listed_formats();

/// A paging format chosen by name, ready for the core and the simulator.
class Format {
 public:
  /// Throws UsageError for an unknown name. `upper`: the AArch64 TTBR1 half
  /// (other formats have one root for both halves and ignore it).
  static Format from_name(std::string_view name, bool upper = false);

  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] const AnyFormat& core() const { return core_; }
  [[nodiscard]] const sim::MmuConfig& mmu() const { return mmu_; }
  [[nodiscard]] bool is_aarch64() const { return mmu_.arch == sim::Arch::AArch64; }
  [[nodiscard]] bool upper() const { return upper_; }

  [[nodiscard]] unsigned levels() const;
  /// Bytes a leaf at `level` maps.
  [[nodiscard]] u64 leaf_size(unsigned level) const;
  [[nodiscard]] bool leaf_allowed(unsigned level) const;
  /// Bytes of one table page (the granule); also the smallest page.
  [[nodiscard]] u64 page_size() const;
  /// Bits of virtual address one root translates (48, 57, 39...).
  [[nodiscard]] unsigned va_bits() const;
  /// The lowest address of the upper (kernel) half: 0xffff800000000000 for
  /// x86-64 4-level, 2^64 - 2^va_bits for AArch64's TTBR1 region.
  [[nodiscard]] u64 upper_start() const;
  /// The manual's name of `level` (PDPT, L2, ...).
  [[nodiscard]] std::string level_name(unsigned level) const;
  /// The memory type a leaf's index selects (x86 PAT index, Arm AttrIndx,
  /// RISC-V PBMT) under the layout the tool assumes, as a layout `mem` name.
  [[nodiscard]] std::string mem_name(unsigned mem_index) const;
  [[nodiscard]] bool can_express(const Attrs& attrs) const;

 private:
  std::string name_;
  AnyFormat core_;
  sim::MmuConfig mmu_;
  bool upper_ = false;
};

/// Layout memory-type names: wb, wt, wc, wp, uc-, uc, device.
const char* mem_type_name(MemType m);
/// "device" is the format's I/O type: Device where the format has it (Arm
/// Device-nGnRE, RISC-V PBMT=IO), else Uncached (x86 UC). Returns false for
/// an unknown name.
bool mem_type_for(std::string_view name, const Format& format, MemType& out);

}  // namespace ptkit::tool
