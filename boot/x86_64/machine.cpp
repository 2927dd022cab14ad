#include "machine.hpp"

#include "cpu.hpp"

namespace kernel {
namespace {

using ptkit::PhysAddr;
using ptkit::u32;
using ptkit::u64;
using ptkit::early::MemoryKind;

constexpr u32 kMultiboot1Magic = 0x2BAD'B002;  // Multiboot 0.6.96 §3.2
constexpr u32 kMultiboot2Magic = 0x36D7'6289;  // Multiboot2 2.0 §3.2

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
constexpr u32 kInfoCmdline = 1u << 2;
constexpr u32 kInfoMmap = 1u << 6;

// Multiboot2 2.0 §3.6: the information is a u32 total size, a u32 reserved
// and then tags, each 8-byte aligned, until an end tag.
struct Mb2Tag {
  u32 type, size;
};
struct Mb2Mmap {  // type 6
  u32 type, size, entry_size, entry_version;
};
struct Mb2MmapEntry {
  u64 addr, len;
  u32 type;  // 1: available RAM
  u32 reserved;
};
constexpr u32 kMb2End = 0;
constexpr u32 kMb2Cmdline = 1;
constexpr u32 kMb2Mmap = 6;

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

/// Whether the word [w, end) is `text`.
bool word_is(const char* w, const char* end, const char* text) {
  for (; w != end; ++w, ++text)
    if (*text == 0 || *w != *text) return false;
  return *text == 0;
}

/// `seed=N` (decimal, or hex after 0x) into m.seed; false if no digit follows.
bool parse_seed(const char* s, const char* end, Machine& m) {
  const bool hex = end - s > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
  if (hex) s += 2;
  if (s == end) return false;
  u64 v = 0;
  for (; s != end; ++s) {
    const char c = *s;
    unsigned digit;
    if (c >= '0' && c <= '9')
      digit = unsigned(c - '0');
    else if (hex && (c | 0x20) >= 'a' && (c | 0x20) <= 'f')
      digit = unsigned((c | 0x20) - 'a' + 10);
    else
      return false;
    v = v * (hex ? 16 : 10) + digit;
  }
  m.seed = v;
  return true;
}

/// The words of the command line at physical `pa`, split at spaces: `seed=N`
/// and `hold`. The loader's own words (QEMU puts the kernel's path first,
/// GRUB whatever follows `multiboot2` in grub.cfg) match neither.
void parse_cmdline(u64 pa, Machine& m) {
  const char* s = at<char>(pa);
  while (*s != 0) {
    while (*s == ' ' || *s == '\t') ++s;
    const char* word = s;
    while (*s != 0 && *s != ' ' && *s != '\t') ++s;
    if (s - word > 5 && word_is(word, word + 5, "seed="))
      m.seed_given = parse_seed(word + 5, s, m) || m.seed_given;
    else if (word_is(word, s, "hold"))
      m.hold = true;
  }
}

/// One available range of either loader's map. Firmware ranges need not be
/// page-aligned: keep the whole pages inside.
void add_ram(Machine& m, u64 addr, u64 len) {
  const u64 start = ptkit::align_down(addr + 0xFFF, 0x1000);
  const u64 end = ptkit::align_down(addr + len, 0x1000);
  add(m, start, end, MemoryKind::Ram);
  if (end > m.ram_top) m.ram_top = end;
}

bool read_multiboot1(u64 info_pa, Machine& m) {
  const auto* info = at<MultibootInfo>(info_pa);
  if ((info->flags & kInfoCmdline) != 0 && info->cmdline != 0) parse_cmdline(info->cmdline, m);
  if ((info->flags & kInfoMmap) == 0) return false;
  for (u64 p = info->mmap_addr; p < u64{info->mmap_addr} + info->mmap_length;) {
    const auto* e = at<MmapEntry>(p);
    if (e->type == 1) add_ram(m, e->addr, e->len);
    p += e->size + sizeof(e->size);
  }
  return true;
}

bool read_multiboot2(u64 info_pa, Machine& m) {
  const u32 total = *at<u32>(info_pa);
  bool mmap = false;
  for (u64 p = info_pa + 8; p + sizeof(Mb2Tag) <= info_pa + total;) {
    const auto* tag = at<Mb2Tag>(p);
    if (tag->type == kMb2End || tag->size < sizeof(Mb2Tag)) break;
    if (tag->type == kMb2Cmdline) parse_cmdline(p + sizeof(Mb2Tag), m);
    if (tag->type == kMb2Mmap && at<Mb2Mmap>(p)->entry_size >= sizeof(Mb2MmapEntry)) {
      const auto* map = at<Mb2Mmap>(p);
      for (u64 e = p + sizeof(Mb2Mmap); e + sizeof(Mb2MmapEntry) <= p + tag->size;
           e += map->entry_size) {
        const auto* entry = at<Mb2MmapEntry>(e);
        if (entry->type == 1) add_ram(m, entry->addr, entry->len);
      }
      mmap = true;
    }
    p += ptkit::align_down(u64{tag->size} + 7, 8);
  }
  return mmap;
}

}  // namespace

const char* loader_name(Loader loader) {
  switch (loader) {
    case Loader::Multiboot1: return "multiboot1";
    case Loader::Multiboot2: return "multiboot2";
    case Loader::Unknown: break;
  }
  return "unknown";
}

bool discover(u32 magic, u64 info_pa, Machine& m) {
  bool mapped = false;
  if (magic == kMultiboot1Magic) {
    m.loader = Loader::Multiboot1;
    mapped = read_multiboot1(info_pa, m);
  } else if (magic == kMultiboot2Magic) {
    m.loader = Loader::Multiboot2;
    mapped = read_multiboot2(info_pa, m);
  }
  add(m, kLocalApic, kLocalApic + 0x1000, MemoryKind::Device);

  // Paging features: CPUID 8000_0001h EDX bit 26 (1 GiB pages), MAXPHYADDR
  // from 8000_0008h EAX[7:0]; NX is usable when the stub set EFER.NXE.
  const auto ext = cpu::cpuid(0x8000'0001);
  m.features.page_1g = (ext.edx & (1u << 26)) != 0;
  m.features.nx = (cpu::rdmsr(cpu::kMsrEfer) & cpu::kEferNxe) != 0;
  m.features.phys_bits = cpu::cpuid(0x8000'0008).eax & 0xFF;
  m.la57 = (cpu::read_cr4() & cpu::kCr4La57) != 0;
  return mapped;
}

}  // namespace kernel
