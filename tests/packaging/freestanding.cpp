// Proves the core is freestanding: this translation unit is compiled with
// -ffreestanding -fno-exceptions -fno-rtti -mno-red-zone -mgeneral-regs-only,
// linked with -nostdlib -static, instantiates the engine for real and exits
// through the Linux exit system call with 0 only if every check passed.
#include "ptkit/ptkit.hpp"

extern "C" {
// The compiler may emit calls to these even in freestanding code.
void* memset(void* dst, int value, decltype(sizeof 0) n) {
  auto* d = static_cast<unsigned char*>(dst);
  for (decltype(n) i = 0; i < n; ++i) d[i] = static_cast<unsigned char>(value);
  return dst;
}
void* memcpy(void* dst, const void* src, decltype(sizeof 0) n) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  for (decltype(n) i = 0; i < n; ++i) d[i] = s[i];
  return dst;
}
}

namespace {

using namespace ptkit;

alignas(4096) u64 g_tables[64][512];

template <class Format>
int exercise(Format format) {
  const PhysAddr base(reinterpret_cast<u64>(&g_tables[0][0]));
  StaticPoolAllocator<64> pool(base);
  auto created = AddressSpace<Format, IdentityAccess, StaticPoolAllocator<64>&>::create(
      format, IdentityAccess{}, pool);
  if (!created) return 1;
  auto& space = created.value();
  const u64 va = 0xffff'8000'0000'0000 + 0x40'0000'0000;
  if (!space.map(VirtAddr(va), PhysAddr(0x4000'0000), 2 * GiB, Attrs{RW}).ok()) return 2;
  if (!space.map(VirtAddr(va + 4 * GiB), PhysAddr(0x1000), 4 * MiB, Attrs{RX}).ok()) return 3;
  auto q = space.query(VirtAddr(va + GiB + 5));
  if (!q.ok() || q->pa.value() != 0x8000'0000) return 4;
  if (!space.protect(VirtAddr(va + 2 * MiB), 4 * KiB, AttrChange{Perm::None, Perm::W}).ok())
    return 5;
  if (!space.unmap(VirtAddr(va), 2 * GiB).ok()) return 6;
  if (!space.unmap(VirtAddr(va + 4 * GiB), 4 * MiB).ok()) return 7;
  u64 leaves = 0;
  if (!space.walk(VirtAddr(va), 8 * GiB, [&](const Mapping&) { return ++leaves, true; }).ok())
    return 8;
  if (leaves != 0 || pool.pages_in_use() != 1) return 9;
  return 0;
}

[[noreturn]] void exit_process(long status) {
  asm volatile("syscall" ::"a"(60), "D"(status) : "rcx", "r11", "memory");
  __builtin_unreachable();
}

}  // namespace

extern "C" [[noreturn]] void _start() {
  x86::Features cpu;
  cpu.page_1g = true;
  int status = exercise(x86::Paging4(cpu));
  if (status == 0) status = exercise(x86::Paging5(cpu)) ? 20 : 0;
  if (status == 0) status = exercise(x86::Paging4{}) ? 30 : 0;
  exit_process(status);
}
