#include "machine.hpp"

#include "cpu.hpp"

namespace kernel {
namespace {

using ptkit::PhysAddr;
using ptkit::u32;
using ptkit::u64;
using ptkit::early::MemoryKind;

// Multiboot 0.6.96 §3.3: the information structure and a memory-map entry.
struct [[gnu::packed]] MultibootInfo {
  u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
  u32 syms[4];
  u32 mmap_length, mmap_addr;
};
struct [[gnu::packed]] MmapEntry {
  u32 size;  // of the rest of the entry
  u64 addr, len;
  u32 type;  // 1: available RAM
};
constexpr u32 kInfoMmap = 1u << 6;

// The local APIC's registers (SDM vol. 3A §11.4.1): a device page the direct
// map covers, so a check can read it uncached.
constexpr u64 kLocalApic = 0xfee0'0000;

template <class T>
const T* at(u64 pa) {
  // The boot stub's identity map covers the first GiB, where the loader
  // puts its structures.
  return reinterpret_cast<const T*>(pa);  // NOLINT(*-reinterpret-cast)
}

void add(Machine& m, u64 start, u64 end, MemoryKind kind) {
  if (end <= start || m.range_count == kMaxRanges) return;
  m.ranges[m.range_count++] = ptkit::early::MemoryRange{PhysAddr(start), end - start, kind};
}

}  // namespace

bool discover(u64 info_pa, Machine& m) {
  const auto* info = at<MultibootInfo>(info_pa);
  if ((info->flags & kInfoMmap) == 0) return false;
  for (u64 p = info->mmap_addr; p < u64{info->mmap_addr} + info->mmap_length;) {
    const auto* e = at<MmapEntry>(p);
    if (e->type == 1) {
      // Firmware ranges need not be page-aligned: keep the whole pages inside.
      const u64 start = ptkit::align_down(e->addr + 0xFFF, 0x1000);
      const u64 end = ptkit::align_down(e->addr + e->len, 0x1000);
      add(m, start, end, MemoryKind::Ram);
      if (end > m.ram_top) m.ram_top = end;
    }
    p += e->size + sizeof(e->size);
  }
  add(m, kLocalApic, kLocalApic + 0x1000, MemoryKind::Device);

  // Paging features: CPUID 8000_0001h EDX bit 26 (1 GiB pages), MAXPHYADDR
  // from 8000_0008h EAX[7:0]; NX is usable when the stub set EFER.NXE.
  const auto ext = cpu::cpuid(0x8000'0001);
  m.features.page_1g = (ext.edx & (1u << 26)) != 0;
  m.features.nx = (cpu::rdmsr(cpu::kMsrEfer) & cpu::kEferNxe) != 0;
  m.features.phys_bits = cpu::cpuid(0x8000'0008).eax & 0xFF;
  m.la57 = (cpu::read_cr4() & cpu::kCr4La57) != 0;
  return true;
}

}  // namespace kernel
