// Uses ptkit the way an outside project does: builds an x86-64 4-level
// address space over host memory standing in for the table area, maps a 2 MiB
// and a 4 KiB range and checks what query() reports. Exits non-zero on any
// mismatch.
#include <cstdio>
#include <vector>

#include "ptkit/ptkit.hpp"

namespace {

using namespace ptkit;

constexpr u64 kTableArea = 0x10'0000;  // physical base of the table area
constexpr u64 kTablePages = 16;

int check(bool ok, int code, const char* what) {
  if (!ok) std::fprintf(stderr, "consumer: %s\n", what);
  return ok ? 0 : code;
}

int run() {
  std::vector<u64> memory((kTablePages + 1) * kTablePageSize / sizeof(u64));
  // The table area starts at the first page boundary inside `memory`.
  const auto address = reinterpret_cast<u64>(memory.data());  // NOLINT(*-reinterpret-cast)
  const u64 host = (address + kTablePageSize - 1) & ~(kTablePageSize - 1);
  BumpAllocator alloc(PhysAddr(kTableArea), kTablePages);
  auto space = AddressSpace<x86::Paging4, OffsetAccess, BumpAllocator&>::create(
      x86::Paging4{}, OffsetAccess{host - kTableArea}, alloc);
  if (!space) return check(false, 1, "create failed");

  if (!space->map(VirtAddr(0x4000'0000), PhysAddr(0x20'0000), 2 * MiB, Attrs{RW}).ok())
    return check(false, 2, "map of 2 MiB failed");
  const Attrs text{RX, MemType::WriteBack, true};
  if (!space->map(VirtAddr(0xffff'ffff'8000'0000), PhysAddr(0x1000), 4 * KiB, text).ok())
    return check(false, 3, "map of 4 KiB failed");

  auto big = space->query(VirtAddr(0x4000'1234));
  if (int rc = check(big.ok() && big->pa.value() == 0x20'0000 && big->size == 2 * MiB &&
                         big->va.value() == 0x4000'0000 && big->attrs == Attrs{RW},
                     4, "query of the 2 MiB leaf");
      rc != 0)
    return rc;
  auto small = space->query(VirtAddr(0xffff'ffff'8000'0010));
  if (int rc = check(small.ok() && small->pa.value() == 0x1000 && small->size == 4 * KiB &&
                         small->attrs == text,
                     5, "query of the 4 KiB leaf");
      rc != 0)
    return rc;
  auto hole = space->query(VirtAddr(0x4020'0000));
  return check(!hole.ok() && hole.error() == Error::NotMapped, 6, "query of a hole");
}

}  // namespace

int main() { return run(); }
