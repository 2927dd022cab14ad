#include <vector>

#include "ptkit/ptkit.hpp"

int main() {
  using namespace ptkit;
  std::vector<u64> memory(17 * 512);
  const u64 host = (reinterpret_cast<u64>(memory.data()) + 4095) & ~u64{4095};
  BumpAllocator alloc(PhysAddr(0x10'0000), 16);
  auto space = AddressSpace<x86::Paging4, OffsetAccess, BumpAllocator&>::create(
      x86::Paging4{}, OffsetAccess{host - 0x10'0000}, alloc);
  if (!space) return 1;
  if (!space->map(VirtAddr(0x4000'0000), PhysAddr(0x20'0000), 2 * MiB, Attrs{RW}).ok()) return 2;
  auto q = space->query(VirtAddr(0x4000'1234));
  return q.ok() && q->pa.value() == 0x20'1000 && q->size == 2 * MiB ? 0 : 3;
}
