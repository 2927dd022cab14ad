// Proves the core is freestanding. This translation unit is compiled with
// -ffreestanding -fno-exceptions -fno-rtti -mno-red-zone -mgeneral-regs-only,
// linked with -nostdlib -static (no libc, no C++ runtime, no start files), has
// its own _start, and drives the engine for real on tables in a static array:
// x86-64 4-level paging with and without 1 GiB pages and 5-level paging; 4K,
// 2M and 1G leaves; protect (with splits), deferred TLB work, unmap (with
// table freeing), query and walk; and AArch64 and RISC-V formats with their
// contiguous hints. It exits through the Linux exit system call
// with status 0 only if every check passed; otherwise it writes the failing
// line to stderr and exits with a non-zero status.
#include <cstddef>

#include "ptkit/ptkit.hpp"

// ---- The few libc functions a compiler may call on its own ----------------
// Struct copies and zero-initialisation may become calls to these even in
// freestanding code. (GCC is kept from turning these very loops back into
// calls with -fno-tree-loop-distribute-patterns.)
extern "C" {
void* memset(void* dst, int value, std::size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<unsigned char>(value);
  return dst;
}
void* memcpy(void* dst, const void* src, std::size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  for (std::size_t i = 0; i < n; ++i) d[i] = s[i];
  return dst;
}
void* memmove(void* dst, const void* src, std::size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  if (d < s) {
    for (std::size_t i = 0; i < n; ++i) d[i] = s[i];
  } else {
    for (std::size_t i = n; i-- > 0;) d[i] = s[i];
  }
  return dst;
}
int memcmp(const void* a, const void* b, std::size_t n) {
  const auto* x = static_cast<const unsigned char*>(a);
  const auto* y = static_cast<const unsigned char*>(b);
  for (std::size_t i = 0; i < n; ++i)
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  return 0;
}
}

namespace {

using namespace ptkit;

// ---- Linux system calls (x86-64: number in rax, arguments in rdi, rsi, rdx;
// the kernel clobbers rcx and r11) ---------------------------------------------

long sys_write(int fd, const char* buf, u64 len) {
  long ret = 1;  // __NR_write
  asm volatile("syscall" : "+a"(ret) : "D"(fd), "S"(buf), "d"(len) : "rcx", "r11", "memory");
  return ret;
}

void report_failure(int line) {
  char msg[] = "freestanding: check failed at line 00000\n";
  char* digit = msg + sizeof(msg) - 3;  // the last digit, before "\n" and the NUL
  for (int i = 0; i < 5; ++i, line /= 10) *digit-- = static_cast<char>('0' + line % 10);
  sys_write(2, msg, sizeof(msg) - 1);
}

// A failed check returns its line from the exercise; 0 means all passed. (A
// macro: it returns from its caller and names the caller's line.)
// NOLINTNEXTLINE(cppcoreguidelines-macro-usage)
#define CHECK(cond)               \
  do {                            \
    if (!(cond)) return __LINE__; \
  } while (0)

// ---- The physical memory the tables live in ----------------------------------

constexpr unsigned kPoolPages = 64;
// Identity access: the array's address serves as its physical address.
alignas(4096) u64 g_tables[kPoolPages][512];
using Pool = StaticPoolAllocator<kPoolPages>;

PhysAddr pool_base() {
  // Identity access is this test's premise: the tables' address is their
  // physical address.
  return PhysAddr(reinterpret_cast<u64>(&g_tables[0][0]));  // NOLINT(*-reinterpret-cast)
}

/// Counts the TLB work the engine reports.
struct CountingSink {
  u64 ranges = 0;
  u64 full = 0;
  u64 completes = 0;
  void publish() {}
  void invalidate(const TlbRange&) { ++ranges; }
  void invalidate_all(bool) { ++full; }
  void complete() { ++completes; }
};

template <class Format>
using Space = AddressSpace<Format, IdentityAccess, Pool&, PlainWriter, CountingSink>;

/// Leaves in [va, va+size), of `leaf_size` only if that is non-zero.
template <class Format>
u64 count_leaves(const Space<Format>& space, u64 va, u64 size, u64 leaf_size = 0) {
  u64 n = 0;
  auto counted = space.walk(VirtAddr(va), size, [&](const Mapping& m) {
    if (leaf_size == 0 || m.size == leaf_size) ++n;
    return true;
  });
  return counted.ok() ? n : ~u64{0};
}

/// Whether `va` translates to `pa` through a leaf of `leaf_size` with `attrs`.
template <class Format>
bool maps_to(const Space<Format>& space, u64 va, u64 pa, u64 leaf_size, Attrs attrs) {
  // query() reports the whole leaf: its first address and that address's frame.
  const u64 offset = va - align_down(va, leaf_size);
  auto q = space.query(VirtAddr(va));
  return q.ok() && q->va.value() == va - offset && q->pa.value() == pa - offset &&
         q->size == leaf_size && q->attrs == attrs;
}

/// Maps, protects, unmaps, queries and walks at virtual base `base` (1 GiB
/// aligned, with 8 GiB of room) through `format`, which has 1 GiB pages iff
/// `has_1g`.
template <class Format>
int exercise(Format format, u64 base, bool has_1g) {
  Pool pool(pool_base());
  auto created = Space<Format>::create(format, IdentityAccess{}, pool);
  CHECK(created.ok());
  auto& space = created.value();
  CHECK(pool.pages_in_use() == 1);
  const u64 big = has_1g ? GiB : 2 * MiB;  // the largest leaf available
  const Attrs data{RW, MemType::WriteBack, false};
  const Attrs text{RX, MemType::WriteBack, true};
  const Attrs mmio{RW, MemType::Uncached, false};

  // One 1 GiB range: a single 1G leaf, or 512 2M leaves.
  const u64 va1 = base;
  const u64 pa1 = 0x4000'0000;
  {
    auto done = space.map(VirtAddr(va1), PhysAddr(pa1), GiB, data);
    CHECK(done.ok());
    CHECK(done->stats.leaves_written == GiB / big);
  }
  CHECK(maps_to(space, va1 + 0x1234'5678, pa1 + 0x1234'5678, big, data));
  CHECK(count_leaves(space, va1, GiB) == GiB / big);
  // Only adding translations: no TLB work (SDM 4.10.4.3).
  CHECK(space.sink().ranges == 0 && space.sink().full == 0);

  // A range that needs every size: 4K, 2M, 1G (if available), 2M, 4K.
  const u64 va2 = base + 2 * GiB - 2 * MiB - 4 * KiB;
  const u64 pa2 = 0x1'0000'0000 + GiB - 2 * MiB - 4 * KiB;
  const u64 size2 = 4 * KiB + 2 * MiB + GiB + 2 * MiB + 4 * KiB;
  CHECK(space.map(VirtAddr(va2), PhysAddr(pa2), size2, text).ok());
  CHECK(maps_to(space, va2, pa2, 4 * KiB, text));
  CHECK(maps_to(space, va2 + 4 * KiB, pa2 + 4 * KiB, 2 * MiB, text));
  CHECK(maps_to(space, base + 2 * GiB + 5, 0x1'4000'0005, big, text));
  CHECK(maps_to(space, va2 + size2 - 1, pa2 + size2 - 1, 4 * KiB, text));
  CHECK(count_leaves(space, va2, size2) == 4 + GiB / big);
  CHECK(count_leaves(space, va2, size2, 4 * KiB) == 2);

  // Small pages, uncached, then overlapping it is an error that changes nothing.
  const u64 va3 = base + 5 * GiB;
  CHECK(space.map(VirtAddr(va3), PhysAddr(0xfee0'0000), 16 * KiB, mmio).ok());
  CHECK(maps_to(space, va3 + 3 * KiB, 0xfee0'0c00, 4 * KiB, mmio));
  const u64 in_use = pool.pages_in_use();
  {
    auto clash = space.map(VirtAddr(va3 + 8 * KiB), PhysAddr(0), 4 * KiB, data);
    CHECK(!clash.ok() && clash.error() == Error::AlreadyMapped);
  }
  CHECK(pool.pages_in_use() == in_use);
  CHECK(maps_to(space, va3 + 8 * KiB, 0xfee0'2000, 4 * KiB, mmio));

  // Bad requests fail with what went wrong.
  {
    auto unaligned = space.map(VirtAddr(va3 + 123), PhysAddr(0), 4 * KiB, data);
    CHECK(!unaligned.ok() && unaligned.error() == Error::Unaligned);
    auto only_1g = MapOptions{};
    only_1g.leaf_sizes = GiB;
    auto sized = space.map(VirtAddr(base + 6 * GiB), PhysAddr(0), GiB, data, only_1g);
    CHECK(sized.ok() == has_1g);
    if (!has_1g) CHECK(sized.error() == Error::LeafSizeUnsupported);
    if (has_1g) CHECK(space.unmap(VirtAddr(base + 6 * GiB), GiB).ok());
  }

  // Write-protect one 4K page inside the first range: the large leaf is split
  // down to 4K pages, every other address keeps its translation.
  {
    // Shattering a live superpage needs the caller's permission.
    auto refused = space.protect(VirtAddr(va1 + 3 * MiB), 4 * KiB, AttrChange{Perm::None, Perm::W});
    CHECK(!refused.ok() && refused.error() == Error::SplitForbidden);
    CHECK(count_leaves(space, va1, GiB, 4 * KiB) == 0);
    ProtectOptions split;
    split.allow_split = true;
    auto done =
        space.protect(VirtAddr(va1 + 3 * MiB), 4 * KiB, AttrChange{Perm::None, Perm::W}, split);
    CHECK(done.ok());
    CHECK(done->stats.splits == (has_1g ? 2u : 1u));
    CHECK(done->stats.tables_allocated == done->stats.splits);
  }
  CHECK(space.sink().ranges + space.sink().full != 0);  // the old translation is gone
  CHECK(maps_to(space, va1 + 3 * MiB, pa1 + 3 * MiB, 4 * KiB, Attrs{Perm::R}));
  CHECK(maps_to(space, va1 + 3 * MiB + 4 * KiB, pa1 + 3 * MiB + 4 * KiB, 4 * KiB, data));
  CHECK(maps_to(space, va1 + 64 * MiB, pa1 + 64 * MiB, 2 * MiB, data));
  CHECK(count_leaves(space, va1, GiB, 4 * KiB) == 512);
  CHECK(count_leaves(space, va1, GiB, 2 * MiB) == 511);

  // Deferred TLB work: nothing is invalidated until the token is flushed.
  {
    const u64 before = space.sink().ranges + space.sink().full;
    ProtectOptions defer;
    defer.tlb = TlbMode::Defer;
    auto done = space.protect(VirtAddr(va2), size2, AttrChange{Perm::None, Perm::X}, defer);
    CHECK(done.ok() && done->token.pending());
    CHECK(space.sink().ranges + space.sink().full == before);
    space.flush(static_cast<FlushToken&&>(done->token));
    CHECK(space.sink().ranges + space.sink().full == before + 1);
  }
  CHECK(maps_to(space, va2 + 4 * KiB, pa2 + 4 * KiB, 2 * MiB,
                Attrs{Perm::R, MemType::WriteBack, true}));

  // Walk stops when the visitor says so.
  {
    u64 seen = 0;
    CHECK(space.walk(VirtAddr(base), 8 * GiB, [&](const Mapping&) { return ++seen < 3; }).ok());
    CHECK(seen == 3);
  }

  // Unmap everything: every table but the root goes back to the pool.
  CHECK(space.unmap(VirtAddr(va1), GiB).ok());
  CHECK(space.unmap(VirtAddr(va2), size2).ok());
  CHECK(space.unmap(VirtAddr(va3), 16 * KiB).ok());
  CHECK(count_leaves(space, base, 8 * GiB) == 0);
  {
    auto q = space.query(VirtAddr(va1));
    CHECK(!q.ok() && q.error() == Error::NotMapped);
  }
  CHECK(pool.pages_in_use() == 1);
  return 0;
}

/// The same engine on AArch64 and RISC-V formats with 4K tables (the pool's
/// page size): runs of the contiguous hint, a protect inside one, blocks,
/// and everything back to the pool.
template <class Format>
int exercise_other(Format format, u64 base) {
  Pool pool(pool_base());
  auto created = Space<Format>::create(format, IdentityAccess{}, pool);
  CHECK(created.ok());
  auto& space = created.value();
  const Attrs data{RW, MemType::WriteBack, false};
  const u64 pa = 0x4000'0000;
  CHECK(space.map(VirtAddr(base), PhysAddr(pa), 64 * 4 * KiB, data).ok());
  CHECK(count_leaves(space, base, 64 * 4 * KiB) == 64);
  CHECK(maps_to(space, base + 17 * 4 * KiB + 5, pa + 17 * 4 * KiB + 5, 4 * KiB, data));
  CHECK(
      space.protect(VirtAddr(base + 20 * 4 * KiB), 4 * KiB, AttrChange{Perm::None, Perm::W}).ok());
  CHECK(maps_to(space, base + 20 * 4 * KiB, pa + 20 * 4 * KiB, 4 * KiB, Attrs{Perm::R}));
  CHECK(maps_to(space, base + 21 * 4 * KiB, pa + 21 * 4 * KiB, 4 * KiB, data));
  CHECK(space.map(VirtAddr(base + GiB), PhysAddr(pa), 4 * MiB, data).ok());
  CHECK(count_leaves(space, base + GiB, 4 * MiB, 2 * MiB) == 2);
  CHECK(space.unmap(VirtAddr(base), 2 * GiB).ok());
  CHECK(count_leaves(space, base, 2 * GiB) == 0);
  CHECK(pool.pages_in_use() == 1);
  return 0;
}

int run() {
  // AArch64 4K granule, 48-bit TTBR1 half; RISC-V Sv48 with Svnapot.
  {
    auto arm = aarch64::Paging::make(aarch64::Granule::K4, 48, aarch64::Half::Upper);
    CHECK(arm.ok());
    if (int line = exercise_other(arm.value(), 0xffff'8000'0000'0000)) return line;
    riscv::Features rv;
    rv.svnapot = true;
    auto sv48 = riscv::Paging::make(riscv::Mode::Sv48, rv);
    CHECK(sv48.ok());
    if (int line = exercise_other(sv48.value(), 0x0000'0040'0000'0000)) return line;
  }

  x86::Features cpu;
  cpu.page_1g = true;

  // 4-level paging; the kernel half of a 48-bit address space.
  if (int line = exercise(x86::Paging4(cpu), 0xffff'8880'0000'0000, true)) return line;
  // Without 1 GiB pages the engine must fall back to 2M leaves.
  if (int line = exercise(x86::Paging4{}, 0x0000'0040'0000'0000, false)) return line;
  // 5-level paging, at an address only a 57-bit space has.
  if (int line = exercise(x86::Paging5(cpu), 0xff00'0000'0000'0000, true)) return line;

  // That address is not canonical with 4 levels.
  Pool pool(pool_base());
  auto space = Space<x86::Paging4>::create(x86::Paging4(cpu), IdentityAccess{}, pool);
  CHECK(space.ok());
  auto q = space->query(VirtAddr(0xff00'0000'0000'0000));
  CHECK(!q.ok() && q.error() == Error::NonCanonical);
  auto m = space->map(VirtAddr(0xff00'0000'0000'0000), PhysAddr(0), 4 * KiB, Attrs{});
  CHECK(!m.ok() && m.error() == Error::NonCanonical);
  return 0;
}

}  // namespace

// Called from _start. Returns the process exit status.
extern "C" __attribute__((used)) int ptkit_freestanding_main() {
  const int line = run();
  if (line == 0) return 0;
  report_failure(line);
  return 1;
}

// The entry point: the kernel jumps here with the stack pointer 16-byte
// aligned and no return address, so no compiler-generated prologue may run
// first. Clear the frame pointer (outermost frame), keep the ABI's stack
// alignment for the call, then exit(status) with the Linux exit system call
// (rax = 60, status in rdi).
extern "C" __attribute__((naked)) void _start() {
  asm volatile(
      "xor %ebp, %ebp\n\t"
      "and $-16, %rsp\n\t"
      "call ptkit_freestanding_main\n\t"
      "mov %eax, %edi\n\t"
      "mov $60, %eax\n\t"
      "syscall\n\t"
      "ud2\n\t");
}
