// The engine with a writer that batches its stores (as Xen PV's
// MmuUpdateWriter does) and an access policy that does not hand out the same
// address for a table twice (as transient slots may not): a queued store is
// known by the address it was made through, so the engine must have it sent
// before it gives that address back.
#include <sys/mman.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "support.hpp"

namespace ptkit::test {
namespace {

/// Stores queue up; flush() applies them; before_read() applies them when
/// one of the slots about to be read has a queued store, judged by address.
struct QueueWriter {
  std::vector<std::pair<u64*, u64>>* queue;
  u64* flushes;

  void store(u64* slot, u64 value, const WriteSite&) const { queue->emplace_back(slot, value); }
  void store_fresh(u64* slot, u64 value, const WriteSite&) const {
    queue->emplace_back(slot, value);
  }
  void flush() const {
    if (queue->empty()) return;
    ++*flushes;
    for (auto [slot, value] : *queue) *slot = value;
    queue->clear();
  }
  void before_read(const u64* first, u64 count) const {
    for (auto [slot, value] : *queue) {
      if (slot >= first && slot < first + count) {
        flush();
        return;
      }
    }
  }
};
static_assert(EntryWriter<QueueWriter>);

/// The same table memory mapped twice (a memfd, two mappings); table(pa)
/// alternates between the two, so a table opened again is at the other one.
class TwoAliases {
 public:
  static constexpr u64 kBase = 0x0000'0040'0000'0000;

  explicit TwoAliases(u64 pages)
      : size_(pages * kTablePageSize), fd_(memfd_create("ptkit-aliases", 0)) {
    if (fd_ < 0 || ftruncate(fd_, static_cast<off_t>(size_)) != 0) std::abort();
    for (u8*& a : alias_) {
      void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
      if (p == MAP_FAILED) std::abort();
      a = static_cast<u8*>(p);
    }
  }
  ~TwoAliases() {
    for (u8* a : alias_) munmap(a, size_);
    close(fd_);
  }
  TwoAliases(const TwoAliases&) = delete;
  TwoAliases& operator=(const TwoAliases&) = delete;
  TwoAliases(TwoAliases&&) = delete;
  TwoAliases& operator=(TwoAliases&&) = delete;

  struct Access {
    TwoAliases* memory;
    u64* table(PhysAddr pa) const {
      u8* a = memory->alias_[memory->opened_++ & 1];
      return reinterpret_cast<u64*>(a + (pa.value() - kBase));  // NOLINT: table memory
    }
    void done(u64*) const {}
  };
  Access access() { return Access{this}; }
  /// For the allocator, which only needs one stable view.
  [[nodiscard]] OffsetAccess first_alias() const {
    return OffsetAccess{reinterpret_cast<u64>(alias_[0]) - kBase};  // NOLINT: an address
  }
  [[nodiscard]] u64 opened() const { return opened_; }

 private:
  u64 size_;
  int fd_ = -1;
  u8* alias_[2] = {};
  u64 opened_ = 0;
};

TEST(BatchingWriter, QueuedStoresSentBeforeTheTableIsGivenBack) {
  TwoAliases memory(64);
  FreeListAllocator<OffsetAccess> alloc(memory.first_alias());
  alloc.add_range(PhysAddr(TwoAliases::kBase), 64);
  std::vector<std::pair<u64*, u64>> queue;
  u64 flushes = 0;
  auto made = AddressSpace<x86::Paging4, TwoAliases::Access, FreeListAllocator<OffsetAccess>,
                           QueueWriter>::create(x86::Paging4{}, memory.access(), alloc,
                                                QueueWriter{&queue, &flushes});
  ASSERT_TRUE(made.ok());
  auto& s = made.value();

  // 511 of a 2 MiB block's pages, then the last one with merging allowed:
  // the last store completes the table, which the merge then reads again,
  // through the other alias. It can only see that store, and merge, if the
  // store was sent when the table's first view was given back.
  const u64 va = u64{1} << 30;
  const u64 pa = u64{4} << 30;
  MapOptions small;
  small.leaf_sizes = 4 * KiB;
  ASSERT_TRUE(s.map(VirtAddr(va), PhysAddr(pa), 2 * MiB - 4 * KiB, Attrs{RW}, small).ok());
  ASSERT_TRUE(queue.empty());
  MapOptions merging;
  merging.leaf_sizes = 4 * KiB | 2 * MiB;
  merging.merge = true;
  const u64 opened = memory.opened();
  auto last = s.map(VirtAddr(va + 2 * MiB - 4 * KiB), PhysAddr(pa + 2 * MiB - 4 * KiB), 4 * KiB,
                    Attrs{RW}, merging);
  ASSERT_TRUE(last.ok());
  EXPECT_GT(memory.opened() - opened, 4u);  // the tables were opened again
  EXPECT_EQ(last->stats.merges, 1u);
  auto q = s.query(VirtAddr(va + 4 * KiB));
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->level, 1u);  // the whole 2 MiB leaf
  EXPECT_EQ(q->pa.value(), pa);
  EXPECT_TRUE(queue.empty());
}

}  // namespace
}  // namespace ptkit::test
