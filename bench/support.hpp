// What every benchmark shares: the three formats of the speed targets, a
// pre-faulted pool of table memory, and a TLB sink that counts its work.
#pragma once

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

#include "ptkit/arch/aarch64.hpp"
#include "ptkit/arch/riscv.hpp"
#include "ptkit/arch/x86_64.hpp"
#include "ptkit/ptkit.hpp"

namespace ptkit::bench {

// ---- Formats (issue 8: x86-64 4-level; AArch64 4K/48; RISC-V Sv48) ---------------

struct X86 {
  using Format = x86::Paging4;
  static constexpr const char* kName = "x86_64-4l";
  static Format make() {
    x86::Features f;
    f.page_1g = true;
    return Format{f};
  }
};
struct Arm4K {
  using Format = aarch64::Paging;
  static constexpr const char* kName = "aarch64-4k-48";
  static Format make() {
    auto made = Format::make(aarch64::Granule::K4, 48, aarch64::Half::Lower, {});
    if (!made.ok()) std::abort();
    return made.value();
  }
};
struct Sv48 {
  using Format = riscv::Paging;
  static constexpr const char* kName = "riscv-sv48";
  static Format make() {
    auto made = Format::make(riscv::Mode::Sv48, riscv::Features{});
    if (!made.ok()) std::abort();
    return made.value();
  }
};

// ---- Table memory ---------------------------------------------------------------------

/// Host memory standing for the physical pages that hold tables, at a
/// physical base that is not its host address. Pre-faulted: the benchmarks
/// measure table building, not the kernel's page-fault path (the "fresh"
/// variants unmap and map it again to show that cost separately). Backed by
/// 2 MiB pages where the host allows (transparent huge pages), as a kernel
/// reaches its tables through a direct map of large pages: with 4 KiB host
/// pages, scattered table accesses would measure the host's TLB misses.
class TablePool {
 public:
  static constexpr u64 kBase = 0x0000'0040'0000'0000;  // 256 GiB
  static constexpr u64 kHugePage = u64{2} << 20;

  explicit TablePool(u64 pages, u64 page_size = kTablePageSize)
      : pages_(pages), page_size_(page_size) {
    map_fresh();
  }
  ~TablePool() { unmap(); }
  TablePool(const TablePool&) = delete;
  TablePool& operator=(const TablePool&) = delete;

  /// Replaces the memory by new, untouched pages (then pre-faults them unless
  /// `prefault` is false).
  void map_fresh(bool prefault = true) {
    unmap();
    // Over-allocated by one huge page so the pool can start on a 2 MiB boundary.
    void* p =
        mmap(nullptr, mapped_bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    mapping_ = static_cast<u8*>(p);
    const u64 at = reinterpret_cast<u64>(p);  // NOLINT: aligning a host address
    host_ = mapping_ + (((at + kHugePage - 1) & ~(kHugePage - 1)) - at);
    madvise(host_, bytes(), MADV_HUGEPAGE);  // advice only: 4 KiB pages if refused
    if (prefault)
      for (u64 off = 0; off < bytes(); off += 4096) host_[off] = 0;
  }

  [[nodiscard]] OffsetAccess access() const {
    return OffsetAccess{reinterpret_cast<u64>(host_) - kBase};  // NOLINT: host memory as "RAM"
  }
  [[nodiscard]] PhysAddr base() const { return PhysAddr(kBase); }
  [[nodiscard]] u64 pages() const { return pages_; }
  [[nodiscard]] u64 page_size() const { return page_size_; }
  [[nodiscard]] u64 bytes() const { return pages_ * page_size_; }
  [[nodiscard]] u8* host() const { return host_; }

 private:
  [[nodiscard]] u64 mapped_bytes() const { return bytes() + kHugePage; }
  void unmap() {
    if (mapping_ != nullptr) munmap(mapping_, mapped_bytes());
    mapping_ = host_ = nullptr;
  }

  u64 pages_;
  u64 page_size_;
  u8* mapping_ = nullptr;
  u8* host_ = nullptr;
};

// ---- TLB work --------------------------------------------------------------------------

/// Counts the TLB work an update hands to its sink.
struct CountingSink {
  u64 publishes = 0;
  u64 ranges = 0;         // invalidate() calls (one coalesced range each)
  u64 invalidations = 0;  // by-address invalidations those ranges stand for
  u64 full_flushes = 0;
  void publish() { ++publishes; }
  void invalidate(const TlbRange& r) {
    ++ranges;
    invalidations += ((r.last.value() - r.first.value()) >> r.stride_shift) + 1;
  }
  void invalidate_all(bool) { ++full_flushes; }
  void complete() {}
};

/// Read-write, not executable, global: a direct map's attributes.
inline constexpr Attrs kData{Perm::R | Perm::W, MemType::WriteBack, true};

/// A deterministic generator (splitmix64), so every run maps the same pages.
class Rng {
 public:
  explicit Rng(u64 seed) : s_(seed) {}
  u64 next() {
    u64 z = (s_ += 0x9e37'79b9'7f4a'7c15);
    z = (z ^ (z >> 30)) * 0xbf58'476d'1ce4'e5b9;
    z = (z ^ (z >> 27)) * 0x94d0'49bb'1331'11eb;
    return z ^ (z >> 31);
  }

 private:
  u64 s_;
};

}  // namespace ptkit::bench
