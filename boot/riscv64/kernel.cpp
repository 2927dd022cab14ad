// The RISC-V test kernel: entered from entry.S in S-mode with paging off, it
// reads the devicetree and, in the paging mode the command line names (Sv39,
// Sv48 or Sv57), goes through a boot space and a final space built through
// transient slots (early_boot.hpp) to its own tables (kernel_space.hpp), all
// built with ptkit. There it runs every check, and exits QEMU through the
// test finisher: pass only if every check passed.
#include "check.hpp"
#include "checks_demand.hpp"
#include "checks_leaves.hpp"
#include "checks_live.hpp"
#include "checks_paging.hpp"
#include "cpu.hpp"
#include "early_boot.hpp"
#include "kernel_space.hpp"
#include "machine.hpp"
#include "mmio.hpp"
#include "random_arch.hpp"
#include "random_checks.hpp"
#include "scratch.hpp"
#include "serial.hpp"
#include "trap.hpp"

namespace kernel {
namespace {

void info_count(const char* what, u64 n, const char* end = ", ") {
  serial::write(what);
  serial::write(" ");
  serial::dec(n);
  serial::write(end);
}

/// Tagged physical memory of the randomized phase: 16 MiB of RAM the other
/// checks leave alone, reached by its 2M and 4K leaves directly and by its
/// 1G leaves through the gigabyte of RAM's start.
constexpr u64 kRandomPhys = 0x8900'0000;
constexpr u64 kRandomPhysSize = 16 * MiB;
// Every memory type the hart can express: PMA alone without Svpbmt; NC and
// IO too with it (QEMU models no caches; what is under test is that the PBMT
// bits land where the hart reads them without faulting).
constexpr MemType kMemTypes[] = {MemType::WriteBack, MemType::WriteCombining, MemType::Device};

/// boot/common/random_checks.hpp over the two gigabytes from test_base + 1
/// GiB (the gigapage checks leave them empty), seeded by the command line or
/// the clock.
void random_phase(Space& space, const VirtualLayout& v, const Machine& m) {
  RandomConfig config;
  config.seed = m.seed != 0 ? m.seed : cpu::read_time();
  config.window = v.test_base + GiB;
  config.phys = kRandomPhys;
  config.phys_size = kRandomPhysSize;
  config.mem_types = kMemTypes;
  config.mem_type_count = m.features.svpbmt ? 3 : 1;
  RiscvRandomArch arch(v.direct_map);
  RandomChecks<Space, RiscvRandomArch>(space, arch, config).run();
}

void run(const Machine& m) {
  const VirtualLayout v = layout_for(m.mode);
  static TlbState tlb;
  if (!EarlyBoot(m, v, tlb).run()) return;
  Pool pool(PhysAddr(addr_of(g_table_pool)));
  auto created = Space::create(Format(m.mode, m.features), image_access(), pool, {},
                               TlbSinkRv(CountingOps(&tlb), 0));
  {
    Check c("space-create");
    if (!c.expect_ok(created, "create")) return;
  }
  Space& space = created.value();
  if (!build_kernel_space(space, m, v)) return;
  // The line each ctest requires: the mode satp took, and the extensions
  // whose checks run (NAPOT leaves, the IO memory type).
  serial::write("info paging ");
  serial::write(mode_name(m.mode));
  serial::write(m.features.svpbmt ? " svpbmt" : "");
  serial::write(m.features.svnapot ? " svnapot" : "");
  serial::write("\n");
  PhysWindow(v.direct_map).tag_scratch();
  PagingChecks(space, v, m, tlb).run();
  LeafChecks(space, v, m, tlb).run();
  LiveChecks(space, tlb).run();
  run_demand_checks(space, v, m, tlb);
  random_phase(space, v, m);

  serial::write("info tables in use ");
  serial::dec(pool.pages_in_use());
  serial::write(", sfence.vma:");
  info_count(" va+asid", tlb.counts.va_asid);
  info_count("va", tlb.counts.va);
  info_count("asid", tlb.counts.asid);
  info_count("all", tlb.counts.all, "\n");
}

}  // namespace
}  // namespace kernel

extern "C" [[noreturn]] void kmain(ptkit::u64 hartid, ptkit::u64 dtb) {
  using namespace kernel;
  const u64 start = cpu::read_time();
  serial::write("ptkit riscv64 test kernel\n");
  trap::install();
  Machine m;
  {
    Check c("devicetree");
    c.expect(hartid == 0, "boot hart 0", hartid);
    c.expect(discover(dtb, addr_of(__image_start), m), "memory and ISA from the devicetree", dtb);
    c.expect(m.mode_given, "ptkit.paging=svNN on the command line");
    c.expect(m.is_ram(kScratch, kScratchEnd - kScratch), "RAM for the scratch area", m.ram_end);
    c.expect(m.is_ram(kRandomPhys, kRandomPhysSize), "RAM for the random phase", m.ram_end);
    c.expect(m.is_ram(EarlyBoot::kFinalTables, EarlyBoot::kFinalTablePages * 4 * KiB),
             "RAM for the final space's tables", m.ram_end);
  }
  if (g_checks_failed == 0) run(m);
  serial::write("info boot-to-summary ");
  serial::dec((cpu::read_time() - start) / 10'000);  // the virt board's timebase is 10 MHz
  serial::write(" ms\n");
  serial::write("summary ");
  serial::dec(g_checks_passed);
  serial::write(" ok, ");
  serial::dec(g_checks_failed);
  serial::write(" failed\n");
  mmio::qemu_exit(g_checks_failed == 0 ? mmio::kExitPass : mmio::kExitFail);
}
