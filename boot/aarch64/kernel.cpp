// The AArch64 test kernel: entered from entry.S at EL1 with the MMU off, it
// goes through the early boot with ptkit for the configuration it was
// compiled for (config.hpp: granule, 48 or 52 bits; early_boot.hpp: boot
// space, MMU on, final space through transient slots), builds its own space
// there (kernel_space.hpp), runs every check on it, and exits QEMU through
// semihosting: pass only if every check passed.
#include "check.hpp"
#include "checks_at.hpp"
#include "checks_demand.hpp"
#include "checks_live.hpp"
#include "checks_paging.hpp"
#include "checks_random.hpp"
#include "cpu.hpp"
#include "early_boot.hpp"
#include "kernel_space.hpp"
#include "machine.hpp"
#include "serial.hpp"
#include "trap.hpp"

namespace kernel {
namespace {

/// The seed of every random choice (sampled addresses, random operations).
constexpr u64 kSeed = 0x7074'6b69'7400'0006;

void report_tlb_work(const Pool& pool, const TlbCounts& counts) {
  serial::write("info tables in use ");
  serial::dec(pool.pages_in_use());
  serial::write(", tlbi by va ");
  serial::dec(counts.tlbi_va);
  serial::write(", tlbi by va last level ");
  serial::dec(counts.tlbi_va_leaf);
  serial::write(", tlbi aside1is ");
  serial::dec(counts.tlbi_asid);
  serial::write(", tlbi vmalle1is ");
  serial::dec(counts.tlbi_vmalle1);
  serial::write(", dsb ");
  serial::dec(counts.dsb);
  serial::write(", isb ");
  serial::dec(counts.isb);
  serial::write("\n");
}

void run(const Machine& m) {
  static TlbCounts counts;
  if (!EarlyBoot(m, &counts).run()) return;
  static Pool pool(PhysAddr(addr_of(g_table_pool)), config::kPage);
  auto created = Space::create(make_format(m), image_access(), pool, {}, A64TlbSink(&counts));
  {
    Check c("space-create");
    if (!c.expect_ok(created, "create")) return;
  }
  Space& space = created.value();
  if (!build_kernel_space(space, m)) return;
  PagingChecks(space).run();
  LiveChecks(space, m).run();
  DemandChecks(space, &counts).run();
  // Before the random phase, which checks every page it touches with AT
  // itself: the touched addresses of every check so far are all kept.
  at_cross_check(space, kSeed);
  static RandomPhase random(space, kSeed);
  random.run();
  report_tlb_work(pool, counts);
}

void print_configuration(const Machine& m) {
  serial::write("info paging ");
  serial::dec(config::kGranuleKiB);
  serial::write("K granule, ");
  serial::dec(config::kVaBits);
  serial::write("-bit VA\n");
  if (config::kWide)
    serial::write(m.features.lpa2 ? "info 52-bit VA and PA through FEAT_LPA2 (TCR_EL1.DS)\n"
                                  : "info 52-bit VA and PA through FEAT_LPA and FEAT_LVA\n");
  serial::write("info ID_AA64MMFR0_EL1.PARange ");
  serial::dec(m.pa_range);
  serial::write(", TGran ");
  serial::dec(m.tgran);
  serial::write(", ID_AA64MMFR2_EL1.VARange ");
  serial::dec(m.va_range);
  serial::write(", BBM ");
  serial::dec(m.bbm);
  serial::write("\n");
}

}  // namespace
}  // namespace kernel

extern "C" [[noreturn]] void kmain() {
  using namespace kernel;
  serial::write("ptkit AArch64 test kernel\n");
  trap::install();
  {
    Check c("boot-el1");
    const u64 el = (cpu::read_currentel() >> 2) & 3;
    c.expect(el == 1, "entered at EL1", el);
    c.expect((cpu::read_sctlr_el1() & mmu::kSctlrM) == 0, "MMU off at entry");
  }
  Machine m;
  {
    Check c("cpu-features");
    const char* missing = discover(m);
    if (missing != nullptr) {
      serial::write("info the CPU lacks ");
      serial::write(missing);
      serial::write(" (run with -cpu max)\n");
    }
    c.expect(missing == nullptr, "the configuration's features (see the info line)");
  }
  print_configuration(m);
  if (g_checks_failed == 0) run(m);
  serial::write("summary ");
  serial::dec(g_checks_passed);
  serial::write(" ok, ");
  serial::dec(g_checks_failed);
  serial::write(" failed\n");
  cpu::qemu_exit(g_checks_failed == 0 ? cpu::kExitPass : cpu::kExitFail);
}
