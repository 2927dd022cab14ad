// Builds a typical x86-64 kernel address space with ptkit and prints it: a
// direct map of RAM, the kernel image at -2 GiB with per-section permissions,
// and an uncached MMIO window. Tables come from a bump allocator over a
// buffer that stands in for physical memory.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "ptkit/ptkit.hpp"

namespace {

using namespace ptkit;

constexpr u64 kTableArea = 0x0100'0000;  // physical base of the table area
constexpr u64 kTablePages = 256;

struct Region {
  const char* name;
  u64 va;
  u64 pa;
  u64 size;
  Attrs attrs;
};

const char* perm_string(Perm p, char* out) {
  out[0] = has(p, Perm::R) ? 'r' : '-';
  out[1] = has(p, Perm::W) ? 'w' : '-';
  out[2] = has(p, Perm::X) ? 'x' : '-';
  out[3] = has(p, Perm::User) ? 'u' : 's';
  out[4] = 0;
  return out;
}

const char* mem_string(MemType m) {
  switch (m) {
    case MemType::WriteBack: return "WB";
    case MemType::WriteThrough: return "WT";
    case MemType::WriteCombining: return "WC";
    case MemType::WriteProtect: return "WP";
    case MemType::UncachedMinus: return "UC-";
    case MemType::Uncached: return "UC";
    case MemType::Device: return "DEV";
  }
  return "?";
}

}  // namespace

int main() {
  // Host memory standing in for the physical table area.
  std::vector<u64> area((kTablePages * kTablePageSize) / sizeof(u64) + 512);
  const auto host = reinterpret_cast<u64>(area.data());
  const u64 host_aligned = (host + 4095) & ~u64{4095};
  OffsetAccess access{host_aligned - kTableArea};
  BumpAllocator alloc(PhysAddr(kTableArea), kTablePages);

  x86::Features cpu;
  cpu.page_1g = true;
  auto created = AddressSpace<x86::Paging4, OffsetAccess, BumpAllocator&>::create(x86::Paging4(cpu),
                                                                                  access, alloc);
  if (!created) {
    std::fprintf(stderr, "create: %s\n", to_string(created.error()));
    return 1;
  }
  auto& space = created.value();

  const u64 direct_map = 0xffff'8880'0000'0000;
  const u64 image_va = 0xffff'ffff'8000'0000;
  const u64 image_pa = 0x0020'0000;
  const Region regions[] = {
      {"direct map (4 GiB RAM)", direct_map, 0, 4 * GiB, {RW, MemType::WriteBack, true}},
      {"kernel .text", image_va, image_pa, 6 * MiB, {RX, MemType::WriteBack, true}},
      {"kernel .rodata",
       image_va + 6 * MiB,
       image_pa + 6 * MiB,
       2 * MiB + 64 * KiB,
       {Perm::R, MemType::WriteBack, true}},
      {"kernel .data/.bss",
       image_va + 8 * MiB + 64 * KiB,
       image_pa + 8 * MiB + 64 * KiB,
       4 * MiB - 64 * KiB,
       {RW, MemType::WriteBack, true}},
      {"MMIO window (uncached)",
       0xffff'c900'0000'0000,
       0xfe00'0000,
       16 * MiB,
       {RW, MemType::Uncached, true}},
  };
  for (const Region& r : regions) {
    auto done = space.map(VirtAddr(r.va), PhysAddr(r.pa), r.size, r.attrs);
    if (!done) {
      const Failure& f = done.failure();
      std::fprintf(stderr, "%s: %s failed at va %#llx level %d: %s\n", r.name, to_string(f.op),
                   static_cast<unsigned long long>(f.va.value()), f.level, to_string(f.error));
      return 1;
    }
    std::printf("mapped %-24s %3llu table(s) allocated\n", r.name,
                static_cast<unsigned long long>(done->stats.tables_allocated));
  }

  std::printf("\n%-39s %-18s %6s %5s %4s %s\n", "virtual range", "physical", "leaf", "perm", "mem",
              "global");
  // Coalesce leaves into runs of identical, contiguous mappings (like ptdump).
  Mapping run{};
  u64 run_leaves = 0;
  auto print_run = [&] {
    if (run_leaves == 0) return;
    char perm[5];
    const u64 size = run.size * run_leaves;
    std::printf("0x%016llx-0x%016llx 0x%016llx %4lluK x%-5llu %s %4s %s\n",
                static_cast<unsigned long long>(run.va.value()),
                static_cast<unsigned long long>(run.va.value() + size - 1),
                static_cast<unsigned long long>(run.pa.value()),
                static_cast<unsigned long long>(run.size / KiB),
                static_cast<unsigned long long>(run_leaves), perm_string(run.attrs.perm, perm),
                mem_string(run.attrs.mem), run.attrs.global ? "G" : "-");
  };
  auto visit = [&](const Mapping& m) {
    const u64 offset = run.size * run_leaves;
    if (run_leaves != 0 && m.size == run.size && m.attrs == run.attrs &&
        m.va.value() == run.va.value() + offset && m.pa.value() == run.pa.value() + offset) {
      ++run_leaves;
      return true;
    }
    print_run();
    run = m;
    run_leaves = 1;
    return true;
  };
  if (!space.walk(VirtAddr(0), u64{1} << 47, visit) ||
      !space.walk(VirtAddr(0xffff'8000'0000'0000), u64{1} << 47, visit)) {
    std::fprintf(stderr, "walk failed\n");
    return 1;
  }
  print_run();
  std::printf("\npage tables: %llu pages (%llu KiB), root at %#llx\n",
              static_cast<unsigned long long>(kTablePages - alloc.pages_free()),
              static_cast<unsigned long long>((kTablePages - alloc.pages_free()) * 4),
              static_cast<unsigned long long>(space.root().value()));
  return EXIT_SUCCESS;
}
