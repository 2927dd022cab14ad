// The MMU as an oracle: AT S1E1R / S1E1W walk ptkit's tables with QEMU's
// own page-table walker and answer in PAR_EL1 (REAL-MMU.md), which must
// agree with ptkit's query() on every address: mapped or not, at which level
// the walk stops, the output address, the memory type, and writability at
// EL1 and at EL0 (AT S1E0R / S1E0W: the User permission).
#pragma once

#include "check.hpp"
#include "cpu.hpp"
#include "kernel_space.hpp"
#include "trap.hpp"

namespace kernel {

/// PAR_EL1 after an AT (D23.2 "PAR_EL1"): F (bit 0); when F is 0, SH
/// (8:7), PA (51:12; 47:12 without 52-bit addresses, the rest RES0) and
/// ATTR (63:56, the MAIR byte); when F is 1, FST (6:1, encoded like DFSC).
struct Par {
  u64 raw;
  [[nodiscard]] bool fault() const { return (raw & 1) != 0; }
  [[nodiscard]] u64 pa() const { return raw & 0x000F'FFFF'FFFF'F000; }
  [[nodiscard]] u64 attr() const { return raw >> 56; }
  [[nodiscard]] u64 sh() const { return (raw >> 7) & 3; }
  [[nodiscard]] trap::FaultStatus status() const {
    return trap::decode_fault_status((raw >> 1) & 0x3F);
  }
};

/// An AT of an access ptkit says is `allowed` (translates to `pa`) or not
/// (a permission fault).
inline bool allowed(Check& c, Par p, bool allowed, u64 pa, const char* what, u64 va) {
  if (allowed) return c.expect(!p.fault() && p.pa() == pa, what, va, p.raw);
  return c.expect(p.fault() && p.status().kind == trap::FaultKind::Permission, what, va, p.raw);
}

struct AtTally {
  u64 mapped = 0;
  u64 unmapped = 0;
};

/// Whether the MMU and ptkit agree about `va`; the first disagreement is
/// recorded in `c` with the PAR value. `va` must be canonical for the space.
inline bool at_agrees(Check& c, const Space& s, u64 va, AtTally* tally = nullptr) {
  const Par r{cpu::at_s1e1r(va)};
  const Par w{cpu::at_s1e1w(va)};
  const auto q = s.query(VirtAddr(va));
  if (!q.ok()) {
    if (tally != nullptr) ++tally->unmapped;
    const int level =
        q.failure().level < 0 ? 99 : Format::arm_level(static_cast<unsigned>(q.failure().level));
    c.expect(q.error() == ptkit::Error::NotMapped, "query: not mapped", va);
    c.expect(r.fault() && r.status().kind == trap::FaultKind::Translation,
             "AT: translation fault where ptkit maps nothing", va, r.raw);
    return c.expect(r.status().level == level, "AT fault level is query's", va, r.raw);
  }
  if (tally != nullptr) ++tally->mapped;
  const ptkit::Mapping& m = q.value();
  const u64 pa = ptkit::align_down(m.pa.value() + (va - m.va.value()), 4 * KiB);
  const u64 mair = ptkit::aarch64::mair_attr(m.attrs.mem);
  c.expect(!r.fault(), "AT: read translates where ptkit maps", va, r.raw);
  c.expect(r.fault() || r.pa() == pa, "AT: output address", va, r.raw);
  c.expect(r.fault() || r.attr() == mair, "AT: memory type", va, r.raw);
  c.expect(r.fault() || m.attrs.mem != MemType::WriteBack || r.sh() == 3, "AT: Inner Shareable", va,
           r.raw);
  const bool user = has(m.attrs.perm, Perm::User);
  const bool writable = has(m.attrs.perm, Perm::W);
  return allowed(c, w, writable, pa, "AT S1E1W", va) &&
         allowed(c, Par{cpu::at_s1e0r(va)}, user, pa, "AT S1E0R", va) &&
         allowed(c, Par{cpu::at_s1e0w(va)}, user && writable, pa, "AT S1E0W", va);
}

}  // namespace kernel
