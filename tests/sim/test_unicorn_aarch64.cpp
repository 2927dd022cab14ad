// Unicorn (QEMU's AArch64 MMU, in-process) as a second, independent oracle
// for the AArch64 reference walker: random spaces built by the core live in
// simulated physical memory whose 64 KiB chunks are mapped into Unicorn at
// their physical addresses; a small guest program enables the MMU on them and
// runs batches of AT S1E1R/S1E1W/S1E0R/S1E0W, reading PAR_EL1 after each; every
// result must agree with the walker's translation and Translation::check for
// the same access. How to drive Unicorn so: /work/shared/REAL-MMU.md.
//
// PAR_EL1 after an AT instruction (Arm ARM DDI 0487: D8.x "Address
// translation instructions" and the PAR_EL1 register description, D19):
//   F, bit[0]: 0 = the translation succeeded, then
//     SH bits[8:7], NS bit[9], PA[47:12] in bits[47:12] (PA[51:48] in
//     bits[51:48] with a 52-bit output size), ATTR bits[63:56] = the MAIR_EL1
//     Attr<n> byte of the translation;
//   1 = it faulted, then FST bits[6:1] is the fault status code as in
//     ESR_ELx.DFSC: 0b0000LL address size fault, 0b0001LL translation fault,
//     0b0010LL access flag fault, 0b0011LL permission fault, LL the level
//     (0..3); PTW bit[8] and S bit[9] name a stage 2 fault (never here).
//   AT checks read or write permission for the EL it names (E1: EL1, E0:
//   EL0), never execute. PA and ATTR are compared, SH is not (the
//   architecture lets PAR report Device and Non-cacheable memory as Outer
//   Shareable whatever the descriptor says).
//
// Unicorn 2.0.1 (QEMU 5.0's MMU): its CPU reports a 44-bit PARange and no
// FEAT_LPA/LPA2, so the 52-bit configurations cannot be checked here (the
// walker's own tests cover them); its ID register lists no 16K granule, but
// QEMU's walker takes TCR_EL1.TG0/TG1 as written and 16K translations agree.
#include <sys/mman.h>
#include <unicorn/unicorn.h>

#include <chrono>
#include <map>
#include <set>

#include "ptkit/sim/mmu.hpp"
#include "sim_support.hpp"
#include "support.hpp"

namespace ptkit::sim {
namespace {

const ArchOps& kOps = aarch64_ops();
constexpr u64 G = u64{1} << 30;
constexpr u64 bit(unsigned n) { return u64{1} << n; }

std::string hex(u64 v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

// ---- A64 instruction words (Arm ARM C6) -----------------------------------------

struct SysReg {
  unsigned op0, op1, crn, crm, op2;
};
constexpr SysReg kSctlrEl1{3, 0, 1, 0, 0};
constexpr SysReg kTtbr0El1{3, 0, 2, 0, 0};
constexpr SysReg kTtbr1El1{3, 0, 2, 0, 1};
constexpr SysReg kTcrEl1{3, 0, 2, 0, 2};
constexpr SysReg kMairEl1{3, 0, 10, 2, 0};
constexpr SysReg kParEl1{3, 0, 7, 4, 0};
constexpr SysReg kIdAa64Mmfr0El1{3, 0, 0, 7, 0};
constexpr SysReg kScrEl3{3, 6, 1, 1, 0};
constexpr SysReg kHcrEl2{3, 4, 1, 1, 0};

constexpr u32 sysreg_fields(SysReg r) {
  return (r.op0 - 2) << 19 | r.op1 << 16 | r.crn << 12 | r.crm << 8 | r.op2 << 5;
}
constexpr u32 msr(SysReg r, unsigned rt) { return 0xD510'0000u | sysreg_fields(r) | rt; }
constexpr u32 mrs(unsigned rt, SysReg r) { return 0xD530'0000u | sysreg_fields(r) | rt; }
// SYS #op1, Cn, Cm, #op2, Xt: AT S1E1R is SYS #0, C7, C8, #0; S1E1W #1;
// S1E0R #2; S1E0W #3. TLBI VMALLE1 is SYS #0, C8, C7, #0, XZR.
constexpr u32 sys(unsigned op1, unsigned crn, unsigned crm, unsigned op2, unsigned rt) {
  return 0xD508'0000u | op1 << 16 | crn << 12 | crm << 8 | op2 << 5 | rt;
}
constexpr u32 kIsb = 0xD503'3FDF;
constexpr u32 kDsbIsh = 0xD503'3B9F;
constexpr u32 kTlbiVmalle1 = sys(0, 8, 7, 0, 31);
constexpr u32 ldr_post(unsigned rt, unsigned rn, unsigned imm9) {
  return 0xF840'0400u | (imm9 & 0x1FF) << 12 | rn << 5 | rt;
}
constexpr u32 str_post(unsigned rt, unsigned rn, unsigned imm9) {
  return 0xF800'0400u | (imm9 & 0x1FF) << 12 | rn << 5 | rt;
}
constexpr u32 subs_imm(unsigned rd, unsigned rn, unsigned imm12) {
  return 0xF100'0000u | imm12 << 10 | rn << 5 | rd;
}
constexpr u32 b_ne(int words) { return 0x5400'0001u | (u32(words) & 0x7FFFF) << 5; }

// The four AT operations, in the order the guest runs them for each address.
struct AtOp {
  const char* name;
  unsigned op2;
  Access access;
};
const AtOp kAts[4] = {{"S1E1R", 0, {AccessType::Read, false}},
                      {"S1E1W", 1, {AccessType::Write, false}},
                      {"S1E0R", 2, {AccessType::Read, true}},
                      {"S1E0W", 3, {AccessType::Write, true}}};

// Guest memory: code, then the addresses to translate, then the PAR values.
constexpr u64 kCode = 0x1000'0000;
constexpr u64 kLoop = kCode + 0x100;
constexpr u64 kIn = kCode + 0x1'0000;
constexpr u64 kOut = kCode + 0x5'0000;
constexpr u64 kGuestSize = 0x20'0000;
constexpr u64 kMaxBatch = (kOut - kIn) / 8;  // addresses per emulation call
static_assert(kMaxBatch * 4 * 8 <= kGuestSize - (kOut - kCode));

// ---- Unicorn -----------------------------------------------------------------------

struct Unicorn {
  uc_engine* uc = nullptr;
  std::set<u64> mapped_chunks;
  std::vector<std::pair<void*, u64>> host_regions;

  ~Unicorn() {
    if (uc) uc_close(uc);
    for (auto [p, n] : host_regions) munmap(p, n);
  }
  void cp_write(SysReg r, u64 value) {
    uc_arm64_cp_reg reg{r.crn, r.crm, r.op0, r.op1, r.op2, value};
    ASSERT_EQ(uc_reg_write(uc, UC_ARM64_REG_CP_REG, &reg), UC_ERR_OK);
  }
  u64 cp_read(SysReg r) {
    uc_arm64_cp_reg reg{r.crn, r.crm, r.op0, r.op1, r.op2, 0};
    EXPECT_EQ(uc_reg_read(uc, UC_ARM64_REG_CP_REG, &reg), UC_ERR_OK);
    return reg.val;
  }
  void set_x(unsigned n, u64 v) { uc_reg_write(uc, UC_ARM64_REG_X0 + int(n), &v); }
  /// Lazily allocated host memory over [base, base + size) of Unicorn's
  /// address space: only what the guest touches costs anything.
  uc_err map_lazy(u64 base, u64 size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return UC_ERR_NOMEM;
    host_regions.emplace_back(p, size);
    return uc_mem_map_ptr(uc, base, size, UC_PROT_ALL, p);
  }
  /// Maps every chunk of simulated memory not mapped yet, at its physical
  /// address: Unicorn then walks the very tables the walker reads.
  void sync(PhysMemory& memory, const std::vector<u64>& chunks) {
    for (u64 base : chunks) {
      if (!mapped_chunks.insert(base).second) continue;
      ASSERT_EQ(uc_mem_map_ptr(uc, base, PhysMemory::kChunk, UC_PROT_ALL, memory.word(base)),
                UC_ERR_OK)
          << hex(base);
    }
  }
};

/// Table pages in simulated memory, recording which chunks they touch.
class ChunkPages {
 public:
  ChunkPages(u64 base, u64 page) : next_(base), page_(page) {}
  bool reserve(u64) { return true; }
  PhysAddr take() {
    u64 pa;
    if (!free_.empty()) {
      pa = free_.back();
      free_.pop_back();
    } else {
      pa = next_;
      next_ += page_;
      const u64 chunk = pa & ~(PhysMemory::kChunk - 1);
      if (chunks_.empty() || chunks_.back() != chunk) chunks_.push_back(chunk);
    }
    return PhysAddr(pa);
  }
  void release(PhysAddr pa) { free_.push_back(pa.value()); }
  void give_back_unused() {}
  [[nodiscard]] const std::vector<u64>& chunks() const { return chunks_; }

 private:
  u64 next_, page_;
  std::vector<u64> free_;
  std::vector<u64> chunks_;
};

// ---- One configuration ------------------------------------------------------------

struct UcConfig {
  const char* name;
  aarch64::Granule granule;
  unsigned va_bits;
  aarch64::Half half;
};

struct UcStats {
  u64 translations = 0, ok = 0, faults[7] = {}, mutated_walks = 0;
  bool ran = false;         // the setup worked and the batches ran
  std::string id_register;  // what ID_AA64MMFR0_EL1 says of the granule
};

unsigned granule_of(aarch64::Granule g) {
  return g == aarch64::Granule::K4 ? 4096 : g == aarch64::Granule::K16 ? 16384 : 65536;
}

// FST/DFSC codes (ESR_ELx.DFSC): type in bits[5:2], level in bits[1:0].
unsigned fst_of(FaultKind k, int arm_level) {
  const unsigned ll = unsigned(arm_level) & 3;
  switch (k) {
    case FaultKind::AddressSize: return 0b000000 | ll;
    case FaultKind::NotPresent:
    case FaultKind::NonCanonical: return 0b000100 | ll;
    case FaultKind::AccessFlag: return 0b001000 | ll;
    case FaultKind::Permission: return 0b001100 | ll;
    default: return 0xFF;
  }
}

void run_config(const UcConfig& cc, u64 seed, u64 rounds, u64 per_round, UcStats& stats) {
  using Space = AddressSpace<aarch64::Paging, test::SimAccess, ChunkPages&>;
  std::mt19937_64 rng(seed);
  auto pick = [&](u64 n) { return std::uniform_int_distribution<u64>(0, n - 1)(rng); };

  Unicorn u;
  ASSERT_EQ(uc_open(UC_ARCH_ARM64, UC_MODE_ARM, &u.uc), UC_ERR_OK);
  ASSERT_EQ(uc_ctl_set_cpu_model(u.uc, UC_CPU_ARM64_MAX), UC_ERR_OK);
  // Non-secure, lower levels AArch64 (SCR_EL3.NS, SCR_EL3.RW); EL1 AArch64
  // (HCR_EL2.RW): REAL-MMU.md.
  u.cp_write(kScrEl3, 0x401);
  u.cp_write(kHcrEl2, bit(31));
  // ID_AA64MMFR0_EL1: PARange [3:0], TGran16 [23:20] (0 = no), TGran64
  // [27:24] (0 = yes), TGran4 [31:28] (0 = yes).
  const u64 mmfr0 = u.cp_read(kIdAa64Mmfr0El1);
  const unsigned pa_range[] = {32, 36, 40, 42, 44, 48, 52};
  const unsigned cpu_pa_bits = (mmfr0 & 0xF) < 7 ? pa_range[mmfr0 & 0xF] : 48;
  const unsigned tgran16 = (mmfr0 >> 20) & 0xF, tgran64 = (mmfr0 >> 24) & 0xF,
                 tgran4 = (mmfr0 >> 28) & 0xF;
  // QEMU's walker takes TCR_EL1.TGn as written, whatever the ID register
  // says: every granule is tried, and the ID register reported.
  const bool id_says = cc.granule == aarch64::Granule::K4    ? tgran4 != 0xF
                       : cc.granule == aarch64::Granule::K16 ? tgran16 != 0
                                                             : tgran64 != 0xF;
  stats.id_register = std::string("ID_AA64MMFR0_EL1 ") + hex(mmfr0) +
                      (id_says ? " lists the granule" : " does not list the granule");

  // The output size: TCR_EL1.IPS as large as the CPU has, up to 48 bits.
  const unsigned phys_bits = std::min(48u, cpu_pa_bits);
  const unsigned ips = phys_bits == 48 ? 5 : phys_bits == 44 ? 4 : phys_bits == 42 ? 3 : 2;
  aarch64::Features f;
  f.phys_bits = phys_bits;
  MmuConfig c;
  c.arch = Arch::AArch64;
  c.arm_granule = granule_of(cc.granule);
  c.arm_va_bits = cc.va_bits;
  c.arm_upper = cc.half == aarch64::Half::Upper;
  c.phys_bits = phys_bits;
  const u64 page = c.arm_granule;

  PhysMemory memory;
  ChunkPages pages(u64{4} * G, page);
  auto made = aarch64::Paging::make(cc.granule, cc.va_bits, cc.half, f);
  ASSERT_TRUE(made.ok());
  auto created = Space::create(made.value(), test::SimAccess{&memory}, pages);
  ASSERT_TRUE(created.ok());
  Space s = std::move(created.value());
  // The guest runs from an identity mapping in TTBR0's space: this one, or
  // for a TTBR1 space a second one in the lower half.
  std::optional<Space> low;
  if (c.arm_upper) {
    auto l = Space::create(aarch64::Paging::make(cc.granule, 48, aarch64::Half::Lower, f).value(),
                           test::SimAccess{&memory}, pages);
    ASSERT_TRUE(l.ok());
    low.emplace(std::move(l.value()));
  }
  Space& code_space = low ? *low : s;
  ASSERT_TRUE(code_space.map(VirtAddr(kCode), PhysAddr(kCode), 0x1'0000, Attrs{RX}).ok());
  ASSERT_TRUE(code_space
                  .map(VirtAddr(kCode + 0x1'0000), PhysAddr(kCode + 0x1'0000),
                       kGuestSize - 0x1'0000, Attrs{RW})
                  .ok());

  // Guest memory: code and buffers at kCode (identity mapped), the tables'
  // chunks at their physical addresses, lazily allocated host memory over
  // the probed windows (Unicorn 2.0 checks a virtual address against its own
  // mapped ranges before the MMU sees it).
  ASSERT_EQ(u.map_lazy(kCode, kGuestSize), UC_ERR_OK);
  const u64 space = bit(cc.va_bits);
  const u64 lower_base = c.arm_upper ? ~(space - 1) : 0;
  const u64 block = s.leaf_size(1);
  const u64 window = std::min(space / 8, std::max(8 * G, 16 * block));
  const u64 wbase[2] = {lower_base + space / 4, lower_base + space - 2 * window};
  const u64 wphys[2] = {bit(phys_bits) - 64 * window, 16 * G};
  for (u64 b : wbase) {
    const uc_err e = u.map_lazy(b, window);
    ASSERT_EQ(e, UC_ERR_OK) << "mapping the window at " << hex(b) << ": " << uc_strerror(e);
  }

  // Setup: MAIR, TCR, TTBR0, TTBR1, then the MMU on (SCTLR_EL1.M).
  const u32 setup[] = {msr(kMairEl1, 0),
                       msr(kTcrEl1, 1),
                       msr(kTtbr0El1, 2),
                       msr(kTtbr1El1, 3),
                       kIsb,
                       msr(kSctlrEl1, 4),
                       kIsb};
  // The AT loop: x5 addresses, x6 results, x7 count.
  std::vector<u32> loop = {kTlbiVmalle1, kDsbIsh, kIsb};
  const size_t loop_top = loop.size();
  loop.push_back(ldr_post(8, 5, 8));
  for (const AtOp& at : kAts) {
    loop.push_back(sys(0, 7, 8, at.op2, 8));
    loop.push_back(mrs(9, kParEl1));
    loop.push_back(str_post(9, 6, 8));
  }
  loop.push_back(subs_imm(7, 7, 1));
  loop.push_back(b_ne(-int(loop.size() - loop_top)));
  ASSERT_EQ(uc_mem_write(u.uc, kCode, setup, sizeof setup), UC_ERR_OK);
  ASSERT_EQ(uc_mem_write(u.uc, kLoop, loop.data(), loop.size() * 4), UC_ERR_OK);
  const u64 loop_end = kLoop + loop.size() * 4;

  // TCR_EL1 (D19): T0SZ [5:0], IRGN0/ORGN0 [11:8] WB, SH0 [13:12] inner, TG0
  // [15:14] (00 4K, 01 64K, 10 16K), T1SZ [21:16], EPD1 [23], IRGN1/ORGN1
  // [27:24], SH1 [29:28], TG1 [31:30] (01 16K, 10 4K, 11 64K), IPS [34:32].
  const u64 tg0 = cc.granule == aarch64::Granule::K4    ? 0
                  : cc.granule == aarch64::Granule::K64 ? 1
                                                        : 2;
  const u64 tg1 = cc.granule == aarch64::Granule::K4    ? 2
                  : cc.granule == aarch64::Granule::K64 ? 3
                                                        : 1;
  u64 tcr = u64{ips} << 32 | 0x5 << 8 | 3 << 12 | tg0 << 14;
  u64 ttbr0 = s.root().value(), ttbr1 = 0;
  if (c.arm_upper) {
    tcr |= u64{64 - 48} | u64{64 - cc.va_bits} << 16 | u64{0x5} << 24 | u64{3} << 28 | tg1 << 30;
    ttbr0 = low->root().value();
    ttbr1 = s.root().value();
  } else {
    tcr |= u64{64 - cc.va_bits} | bit(23);  // EPD1: no TTBR1 walks
  }
  const aarch64::MairLayout mair{};
  ASSERT_TRUE(pages.chunks().size() > 0);
  u.sync(memory, pages.chunks());
  const u64 regs[] = {mair.mair_value(), tcr, ttbr0, ttbr1, (u.cp_read(kSctlrEl1) | 1) & ~u64{2}};
  for (unsigned i = 0; i < 5; ++i) u.set_x(i, regs[i]);
  {
    const uc_err e = uc_emu_start(u.uc, kCode, kCode + sizeof setup, 0, 0);
    ASSERT_EQ(e, UC_ERR_OK) << "setup: " << uc_strerror(e);
  }

  const Attrs choices[] = {{RW, MemType::WriteBack, false},
                           {Perm::R, MemType::WriteBack, true},
                           {RX, MemType::WriteThrough, false},
                           {Perm::R | Perm::W | Perm::User, MemType::Uncached, false},
                           {RW, MemType::WriteCombining, true},
                           {Perm::R | Perm::User, MemType::Device, false},
                           {RX | Perm::User, MemType::WriteBack, false}};
  std::vector<u64> vas;
  std::vector<u64> pars;
  const u64 root = s.root().value();
  stats.ran = true;

  std::vector<std::pair<u64, u64>> touched;  // ranges of recent updates
  for (u64 round = 0; round < rounds; ++round) {
    // A few random updates of the space.
    if (touched.size() > 256) touched.erase(touched.begin(), touched.begin() + 128);
    for (int op = 0; op < 24; ++op) {
      const unsigned w = unsigned(pick(2));
      const u64 gran = pick(3) == 0 ? block : page;
      u64 size = gran * (1 + pick(gran == page ? 64 : 4));
      if (pick(4) == 0) size += pick(s.entries(0)) * page;
      const u64 va = wbase[w] + (pick(window - size) & ~(gran - 1));
      const u64 pa = wphys[w] + (va - wbase[w]) + (pick(3) == 0 ? pick(64) * page : 0);
      const u64 kind = pick(10);
      touched.emplace_back(va, size);
      if (kind < 6) {
        MapOptions o;
        o.allow_split = true;  // random ops may cut superpages
        o.existing = OnExisting::Replace;
        o.merge = pick(2) == 0;
        ASSERT_TRUE(
            s.map(VirtAddr(va), PhysAddr(pa), size, choices[pick(std::size(choices))], o).ok());
      } else if (kind < 8) {
        ASSERT_TRUE(s.unmap(VirtAddr(va), size, UnmapOptions{.allow_split = true}).ok());
      } else {
        ProtectOptions o;
        o.allow_split = true;  // random ops may cut superpages
        o.holes = OnHole::Skip;
        AttrChange ch;
        ch.set = Perm(u8(pick(16)) & u8(Perm::W | Perm::User));
        ch.clear = Perm(u8(pick(16)) & u8(Perm::W | Perm::User)) & ~ch.set;
        ASSERT_TRUE(s.protect(VirtAddr(va), size, ch, o).ok());
      }
    }
    u.sync(memory, pages.chunks());

    // Mutations the core never writes, undone after the batch: hierarchical
    // table bits, AP/XN bits, AF = 0, nG, invalid descriptors, blocks where
    // the level has none.
    std::vector<std::pair<u64, u64>> undo;
    std::function<void(u64, unsigned, u64)> mutate = [&](u64 table, unsigned level, u64 base) {
      const u64 n = kOps.entries(c, level);
      const unsigned shift = kOps.entry_shift(c, level);
      for (u64 i = 0; i < n; ++i) {
        const u64 at = table + 8 * i;
        const u64 raw = memory.read64(at);
        const Descriptor d = kOps.decode(c, raw, level);
        const u64 lo = base + (i << shift), hi = lo + (bit(shift) - 1);
        // The guest's own code and buffers stay as the core built them.
        const bool guest = lo < kCode + kGuestSize && hi >= kCode;
        if (d.kind == Descriptor::Kind::Table) {
          if (!guest && pick(8) == 0) {
            undo.emplace_back(at, raw);
            memory.write64(at, raw | (pick(16) << 59));  // PXNTable..APTable[1]
          }
          mutate(d.pa, level - 1, lo);
        } else if (d.kind == Descriptor::Kind::Leaf && !guest && pick(16) == 0) {
          undo.emplace_back(at, raw);
          u64 m = raw;
          switch (pick(5)) {
            case 0: m ^= u64{3} << 6; break;                  // AP[2:1]
            case 1: m &= ~bit(10); break;                     // AF
            case 2: m ^= bit(53) | bit(54) | bit(11); break;  // PXN, UXN, nG
            case 3: m &= ~u64{1}; break;                      // invalid
            case 4: m = level == 0 ? m & ~u64{2} : m; break;  // 0b01 at level 3
          }
          memory.write64(at, m);
        }
      }
    };
    if (round % 2 == 1) mutate(root, kOps.levels(c) - 1, lower_base);

    // Addresses: mapping boundaries and random ones in the windows.
    vas.clear();
    while (vas.size() < per_round) {
      const unsigned w = unsigned(pick(2));
      u64 va = wbase[w] + pick(window);
      const u64 roll = pick(16);
      if (roll < 10) {  // in or next to a range the round updated
        const auto [lo, size] = touched[pick(touched.size())];
        va = lo - page + pick(size + 2 * page);
      }
      // Outside both halves: bits [63:va_bits] neither all 0 nor all 1.
      if (roll == 15) va ^= bit(63);
      if (roll == 14) va ^= bit(cc.va_bits);
      if (pick(2) == 0) va &= ~(page - 1);
      vas.push_back(va);
    }
    pars.assign(vas.size() * 4, 0);
    for (size_t done = 0; done < vas.size(); done += kMaxBatch) {
      const u64 n = std::min<u64>(kMaxBatch, vas.size() - done);
      ASSERT_EQ(uc_mem_write(u.uc, kIn, vas.data() + done, n * 8), UC_ERR_OK);
      u.set_x(5, kIn);
      u.set_x(6, kOut);
      u.set_x(7, n);
      const uc_err e = uc_emu_start(u.uc, kLoop, loop_end, 0, 0);
      ASSERT_EQ(e, UC_ERR_OK) << "AT batch: " << uc_strerror(e);
      ASSERT_EQ(uc_mem_read(u.uc, kOut, pars.data() + done * 4, n * 32), UC_ERR_OK);
    }

    for (size_t i = 0; i < vas.size(); ++i) {
      const u64 va = vas[i];
      const Translation t = kOps.translate(c, memory, root, va);
      if (!undo.empty()) ++stats.mutated_walks;
      for (unsigned k = 0; k < 4; ++k) {
        const u64 par = pars[i * 4 + k];
        const FaultKind want = t.check(kAts[k].access);
        ++stats.translations;
        ++stats.faults[unsigned(want)];
        std::string why;
        if (want == FaultKind::None) {
          ++stats.ok;
          const u64 pa_mask = (bit(phys_bits) - 1) & ~u64{0xFFF};
          const u64 attr = mair.mair_value() >> (8 * t.mem_index) & 0xFF;
          if (par & 1)
            why = "Unicorn faults (FST " + hex((par >> 1) & 0x3F) + "), the walker does not";
          else if ((par & pa_mask) != (t.pa & pa_mask))
            why = "PA " + hex(par & pa_mask) + ", walker " + hex(t.pa & pa_mask);
          else if ((par >> 56) != attr)
            why = "ATTR " + hex(par >> 56) + ", walker's AttrIndx " + std::to_string(t.mem_index) +
                  " holds " + hex(attr);
        } else {
          const int arm_level = want == FaultKind::NonCanonical ? 0 : 3 - t.level;
          const unsigned fst = fst_of(want, arm_level);
          if (!(par & 1))
            why = "Unicorn translates to " + hex(par & (bit(48) - 1) & ~u64{0xFFF}) +
                  ", the walker faults: " + to_string(want) + " at Arm level " +
                  std::to_string(arm_level);
          else if (((par >> 1) & 0x3F) != fst)
            why = "FST " + hex((par >> 1) & 0x3F) + ", walker " + hex(fst) + " (" +
                  to_string(want) + " at Arm level " + std::to_string(arm_level) + ")";
        }
        if (!why.empty()) {
          ADD_FAILURE() << cc.name << " seed " << seed << " round " << round << ": AT "
                        << kAts[k].name << " " << hex(va) << ": " << why << "; PAR " << hex(par)
                        << (undo.empty() ? "" : " (tables mutated)");
          return;
        }
      }
    }
    for (auto it = undo.rbegin(); it != undo.rend(); ++it) memory.write64(it->first, it->second);
  }
}

TEST(UnicornAarch64, AtInstructionsAgreeWithTheReferenceWalker) {
  const UcConfig configs[] = {
      {"4K/48", aarch64::Granule::K4, 48, aarch64::Half::Lower},
      {"4K/39", aarch64::Granule::K4, 39, aarch64::Half::Lower},
      {"4K/48 TTBR1", aarch64::Granule::K4, 48, aarch64::Half::Upper},
      {"16K/48", aarch64::Granule::K16, 48, aarch64::Half::Lower},
      {"16K/39", aarch64::Granule::K16, 39, aarch64::Half::Lower},
      {"64K/48", aarch64::Granule::K64, 48, aarch64::Half::Lower},
      {"64K/39", aarch64::Granule::K64, 39, aarch64::Half::Lower},
  };
  const u64 seed = test::test_seed();
  std::printf("PTKIT_SEED=%llu (set it to replay)\n", static_cast<unsigned long long>(seed));
  RecordProperty("seed", std::to_string(seed));
  unsigned major = 0, minor = 0;
  uc_version(&major, &minor);
  std::printf("Unicorn %u.%u\n", major, minor);
  u64 total = 0;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < std::size(configs); ++i) {
    UcStats st;
    const auto t0 = std::chrono::steady_clock::now();
    run_config(configs[i], seed + i, 24, 8192, st);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (st.ran) {
      std::printf(
          "%-12s %8llu translations: %llu translated, faults: %llu outside the half, %llu "
          "translation, %llu permission, %llu access flag (%llu walks on mutated tables), %.2f s; "
          "%s\n",
          configs[i].name, static_cast<unsigned long long>(st.translations),
          static_cast<unsigned long long>(st.ok),
          static_cast<unsigned long long>(st.faults[unsigned(FaultKind::NonCanonical)]),
          static_cast<unsigned long long>(st.faults[unsigned(FaultKind::NotPresent)]),
          static_cast<unsigned long long>(st.faults[unsigned(FaultKind::Permission)]),
          static_cast<unsigned long long>(st.faults[unsigned(FaultKind::AccessFlag)]),
          static_cast<unsigned long long>(st.mutated_walks), secs, st.id_register.c_str());
    }
    total += st.translations;
    if (HasFailure()) return;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%llu translations in %.2f s\n", static_cast<unsigned long long>(total), secs);
  EXPECT_GE(total, 1'000'000u);
}

}  // namespace
}  // namespace ptkit::sim
