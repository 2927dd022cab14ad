#include "machine.hpp"

#include "fdt.hpp"
#include "mmio.hpp"

namespace kernel {
namespace {

using ptkit::PhysAddr;
using ptkit::u64;
using ptkit::early::MemoryKind;
using ptkit::riscv::Mode;

struct Found {
  u64 ram_start = 0, ram_size = 0;
  const char* isa = nullptr;
  const char* bootargs = nullptr;
};

bool equal(const char* a, const char* b) {
  while (*a != 0 && *a == *b) ++a, ++b;
  return *a == *b;
}

/// Whether `text` contains `word` followed by the end, '_' or ' '.
bool has_word(const char* text, const char* word) {
  for (const char* t = text; *t != 0; ++t) {
    u64 i = 0;
    while (word[i] != 0 && t[i] == word[i]) ++i;
    if (word[i] == 0 && (t[i] == 0 || t[i] == '_' || t[i] == ' ')) return true;
  }
  return false;
}

bool visit(const fdt::Property& p, void* context) {
  auto& f = *static_cast<Found*>(context);
  const char* text = reinterpret_cast<const char*>(p.data);  // NOLINT: a string property
  // The virt board's root has #address-cells = #size-cells = 2.
  if (p.depth == 1 && fdt::node_is(p.node, "memory") && equal(p.name, "reg") && p.size >= 16 &&
      f.ram_size == 0) {
    f.ram_start = fdt::be64(p.data);
    f.ram_size = fdt::be64(p.data + 8);
  } else if (p.depth == 2 && equal(p.parent, "cpus") && equal(p.node, "cpu@0") &&
             equal(p.name, "riscv,isa")) {
    f.isa = text;
  } else if (p.depth == 1 && equal(p.node, "chosen") && equal(p.name, "bootargs")) {
    f.bootargs = text;
  }
  return true;
}

/// The hex number after `key` in `text` (0 when absent).
u64 hex_after(const char* text, const char* key) {
  for (const char* t = text; *t != 0; ++t) {
    u64 i = 0;
    while (key[i] != 0 && t[i] == key[i]) ++i;
    if (key[i] != 0) continue;
    u64 v = 0;
    for (const char* d = t + i + (t[i] == '0' && t[i + 1] == 'x' ? 2 : 0);; ++d) {
      if (*d >= '0' && *d <= '9')
        v = v * 16 + u64(*d - '0');
      else if (*d >= 'a' && *d <= 'f')
        v = v * 16 + u64(*d - 'a' + 10);
      else
        return v;
    }
  }
  return 0;
}

void add(Machine& m, u64 start, u64 end, MemoryKind kind) {
  if (end <= start || m.range_count == kMaxRanges) return;
  m.ranges[m.range_count++] = ptkit::early::MemoryRange{PhysAddr(start), end - start, kind};
}

}  // namespace

const char* mode_name(Mode mode) {
  switch (mode) {
    case Mode::Sv39: return "sv39";
    case Mode::Sv48: return "sv48";
    case Mode::Sv57: return "sv57";
  }
  return "?";
}

bool discover(u64 dtb, u64 image_start, Machine& m) {
  Found f;
  // Paging is off: the blob is at its physical address.
  if (!fdt::for_each_property(reinterpret_cast<const void*>(dtb), &visit, &f))  // NOLINT
    return false;
  if (f.ram_size == 0 || image_start < f.ram_start) return false;
  m.ram_start = f.ram_start;
  m.ram_end = f.ram_start + f.ram_size;
  add(m, f.ram_start, image_start, MemoryKind::Reserved);
  add(m, image_start, m.ram_end, MemoryKind::Ram);
  add(m, mmio::kUart, mmio::kUart + 0x1000, MemoryKind::Device);
  add(m, mmio::kTestFinisher, mmio::kTestFinisher + 0x1000, MemoryKind::Device);

  if (f.isa != nullptr) {
    m.features.svpbmt = has_word(f.isa, "svpbmt");
    m.features.svnapot = has_word(f.isa, "svnapot");
  }
  if (f.bootargs != nullptr) {
    m.seed = hex_after(f.bootargs, "ptkit.seed=");
    for (Mode mode : {Mode::Sv39, Mode::Sv48, Mode::Sv57}) {
      char arg[] = "ptkit.paging=svNN";
      const char* name = mode_name(mode);
      arg[13 + 2] = name[2];
      arg[13 + 3] = name[3];
      if (has_word(f.bootargs, arg)) {
        m.mode = mode;
        m.mode_given = true;
      }
    }
  }
  return true;
}

}  // namespace kernel
