// The simulated MMU: what a hardware table walk depends on (MmuConfig), what
// one descriptor means to the hardware (Descriptor), and what a walk yields
// (Translation). Written from the architecture manuals, independently of the
// core's formats (include/ptkit/arch): the simulator is the core's oracle, so
// it shares none of its encoding code.
//
// Levels are numbered as in the core: 0 holds the smallest pages, levels()-1
// is the root.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ptkit/sim/memory.hpp"

namespace ptkit::sim {

enum class Arch : std::uint8_t { X86_64, AArch64, RiscV };

/// The registers and CPU features a walk depends on.
struct MmuConfig {
  Arch arch = Arch::X86_64;
  unsigned phys_bits = 52;  // x86 MAXPHYADDR; Arm TCR.IPS output size; RISC-V 56
  // x86-64 (Intel SDM vol. 3A ch. 4.5)
  unsigned x86_levels = 4;   // 5 with CR4.LA57
  bool x86_nxe = true;       // IA32_EFER.NXE
  bool x86_page_1g = false;  // CPUID.80000001H:EDX.Page1GB
  bool x86_wp = true;        // CR0.WP: supervisor writes honour read-only
  bool x86_smep = false;     // CR4.SMEP: supervisor never executes user pages
  bool x86_smap = false;     // CR4.SMAP: supervisor data access to user pages faults
  // AArch64 stage 1, EL1&0 regime (Arm ARM D8)
  unsigned arm_granule = 4096;  // TG0/TG1: 4096, 16384 or 65536
  unsigned arm_va_bits = 48;    // 64 - TnSZ
  bool arm_upper = false;       // the TTBR1 half
  bool arm_ds = false;          // TCR_EL1.DS: FEAT_LPA2 descriptors (4K/16K)
  bool arm_lpa = false;         // FEAT_LPA: 52-bit output with the 64K granule
  // RISC-V (privileged spec, Sv39/Sv48/Sv57)
  unsigned rv_va_bits = 39;  // 39, 48 or 57
  bool rv_svpbmt = false;
  bool rv_svnapot = false;
  bool rv_svadu = false;  // hardware A/D updates (else A=0, or D=0 on a write, faults)
  bool rv_sum = false;    // sstatus.SUM: S-mode may read/write U pages
  bool rv_mxr = false;    // sstatus.MXR: execute-only pages readable

  /// The configuration a ptkit format name stands for (ptkit formats):
  /// "x86_64-4l", "x86_64-5l", "aarch64-<4k|16k|64k>-<va bits>",
  /// "riscv-sv39|sv48|sv57". Feature flags keep their defaults; 52-bit
  /// AArch64 names turn on the 52-bit features. Returns false for an unknown
  /// name, with `error` saying why.
  static bool from_name(std::string_view name, MmuConfig& out, std::string& error);
};

enum class AccessType : std::uint8_t { Read, Write, Execute };
struct Access {
  AccessType type = AccessType::Read;
  bool user = false;  // x86 CPL 3, Arm EL0, RISC-V U-mode
};

enum class FaultKind : std::uint8_t {
  None,
  NonCanonical,  // the address is outside the configured space (x86 #GP, Arm level 0
                 // translation fault, RISC-V page fault)
  NotPresent,    // an invalid entry on the walk (x86 P=0, Arm translation fault)
  ReservedBits,  // a reserved encoding or reserved bit set
  AddressSize,   // an output or table address beyond the output size (Arm)
  Permission,
  AccessFlag,  // Arm AF=0; RISC-V A=0, or D=0 on a write, without Svadu
};
const char* to_string(FaultKind k);

/// One descriptor as the hardware reads it at `level` (no combining across
/// levels). For the rule checker and the dumps.
struct Descriptor {
  enum class Kind : std::uint8_t { Invalid, Table, Leaf, Reserved } kind = Kind::Invalid;
  u64 pa = 0;  // table: next table; leaf: this entry's own output address
  // Leaf permissions as encoded (x86 R/W, U/S, XD; Arm AP, UXN, PXN; RISC-V R/W/X/U).
  bool read = false, write = false, user = false;
  bool exec_priv = false, exec_user = false;
  bool global = false;
  unsigned mem_index = 0;     // x86 PAT index (PAT:PCD:PWT); Arm AttrIndx; RISC-V PBMT
  unsigned shareability = 0;  // Arm SH (0 where the descriptor has none)
  bool contiguous = false;    // Arm Contiguous bit; RISC-V N (NAPOT)
  bool accessed = true;       // x86 A, Arm AF, RISC-V A
  bool dirty = true;          // x86 D, RISC-V D (Arm: true)
};

/// The outcome of a walk of one virtual address: a translation with the
/// effective permissions of every access after combining all levels, or the
/// fault the walk itself raises before permissions are considered.
struct Translation {
  FaultKind fault = FaultKind::None;
  int level = -1;  // the leaf's level, or the faulting entry's
  u64 va = 0;      // the address walked
  u64 pa = 0;      // its translation
  u64 leaf_size = 0;
  // Effective permissions, [0] privileged, [1] user.
  bool read[2] = {false, false};
  bool write[2] = {false, false};
  bool exec[2] = {false, false};
  bool global = false;
  unsigned mem_index = 0;
  unsigned shareability = 0;
  bool accessed = true;  // the leaf's A/AF
  bool dirty = true;     // the leaf's D

  [[nodiscard]] bool ok() const { return fault == FaultKind::None; }
  /// The fault `access` takes on this translation: the walk's own fault,
  /// Permission, AccessFlag, or None.
  [[nodiscard]] FaultKind check(Access access) const;
  bool operator==(const Translation&) const = default;
};

/// One architecture's walker. Instances: x86_ops(), aarch64_ops(), riscv_ops().
struct ArchOps {
  unsigned (*levels)(const MmuConfig&);
  /// log2 of the bytes one entry at `level` maps.
  unsigned (*entry_shift)(const MmuConfig&, unsigned level);
  /// Entries in a table at `level` (the root may have fewer).
  u64 (*entries)(const MmuConfig&, unsigned level);
  /// Entries in a contiguous run at `level` the hardware honours, 1 if none.
  unsigned (*run_entries)(const MmuConfig&, unsigned level);
  Descriptor (*decode)(const MmuConfig&, u64 raw, unsigned level);
  Translation (*translate)(const MmuConfig&, const PhysMemory&, u64 root, u64 va);
};

const ArchOps& x86_ops();
const ArchOps& aarch64_ops();
const ArchOps& riscv_ops();
const ArchOps& ops_for(Arch arch);

}  // namespace ptkit::sim
