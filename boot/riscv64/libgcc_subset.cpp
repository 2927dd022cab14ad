// The libgcc helpers the kernel needs, because Debian's riscv64 libgcc is
// built for the lp64d (hard-float) ABI and cannot be linked into this
// soft-float lp64 kernel. Without Zbb, GCC calls __ctzdi2 for
// __builtin_ctzll (StaticPoolAllocator's bitmap). Written without loops,
// so GCC cannot recognise them as the idiom and call themselves.
#include <cstdint>

extern "C" {
/// Trailing zero bits of a nonzero value (undefined for 0, as in libgcc).
int __ctzdi2(std::uint64_t x) {
  int n = 0;
  if ((x & 0xFFFF'FFFF) == 0) n += 32, x >>= 32;
  if ((x & 0xFFFF) == 0) n += 16, x >>= 16;
  if ((x & 0xFF) == 0) n += 8, x >>= 8;
  if ((x & 0xF) == 0) n += 4, x >>= 4;
  if ((x & 0x3) == 0) n += 2, x >>= 2;
  if ((x & 0x1) == 0) n += 1;
  return n;
}
}
