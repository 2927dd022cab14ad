// The x86-64 test kernel: entered from entry.S in long mode on the boot
// stub's identity map, it builds its own tables with ptkit (4-level or, when
// the stub enabled LA57, 5-level), switches to them, runs every check, and
// exits QEMU through isa-debug-exit: pass only if every check passed. With
// `hold` on the command line it adds a few leaves, prints its address space
// and halts instead (space_report.hpp).
#include "check.hpp"
#include "checks_demand.hpp"
#include "checks_paging.hpp"
#include "cpu.hpp"
#include "early_tables.hpp"
#include "kernel_space.hpp"
#include "machine.hpp"
#include "random_arch.hpp"
#include "random_checks.hpp"
#include "serial.hpp"
#include "space_report.hpp"
#include "trap.hpp"

namespace kernel {
namespace {

/// Tagged physical memory of the randomized phase: 16 MiB of RAM the other
/// checks leave alone, reached by its 2M and 4K leaves directly and by its
/// 1G leaves through the frame [0, 1G).
constexpr u64 kRandomPhys = 64 * MiB;
constexpr u64 kRandomPhysSize = 16 * MiB;
// Aliases of one page with different memory types would be unsafe on
// hardware (SDM vol. 3A §11.12.4); QEMU models no caches, and what is under
// test is that each type's PAT bits land where the CPU reads them.
constexpr MemType kRandomMemTypes[] = {MemType::WriteBack, MemType::WriteThrough,
                                       MemType::UncachedMinus};

/// The seed is printed; `-append seed=N` on the QEMU command line (or after
/// the kernel's path in grub.cfg) repeats a run.
template <class Format>
void random_phase(Space<Format>& space, const VirtualLayout& v, const Machine& m) {
  RandomConfig config;
  config.seed = m.seed_given ? m.seed : cpu::rdtsc();
  config.window = v.random_window;
  config.phys = kRandomPhys;
  config.phys_size = kRandomPhysSize;
  config.mem_types = kRandomMemTypes;
  config.mem_type_count = 3;
  X86RandomArch arch(v.direct_map);
  RandomChecks<Space<Format>, X86RandomArch>(space, arch, config).run();
}

template <class Format>
void run(const Machine& m) {
  constexpr VirtualLayout v = layout_for<Format::kMaxLevels>();
  static TlbCounts counts;
  Pool pool(PhysAddr(addr_of(g_table_pool)));
  const Format format(m.features);
  auto created = ImageSpace<Format>::create(format, image_access(), pool, {}, X86TlbSink(&counts));
  {
    Check c("space-create");
    if (!c.expect_ok(created, "create")) return;
  }
  if (!build_kernel_space(created.value())) return;
  if (!EarlyTables<Format>(created.value(), m, v, &counts).run()) return;
  // The direct map reaches every table now: the checks go through it.
  const ptkit::early::DirectMapAccess all_ram{PhysAddr(0), PhysAddr(m.ram_top - 1),
                                              VirtAddr(v.direct_map)};
  Space<Format> space(format, all_ram, pool, {}, X86TlbSink(&counts), created->root());
  PagingChecks<Format>(space, v, m).run();
  DemandChecks<Format>(space, v, &counts).run();
  random_phase(space, v, m);
  serial::write("info tables in use ");
  serial::dec(pool.pages_in_use());
  serial::write(", invlpg ");
  serial::dec(counts.invlpg);
  serial::write(", cr3 reloads ");
  serial::dec(counts.cr3_reloads);
  serial::write(", global flushes ");
  serial::dec(counts.global_flushes);
  serial::write("\n");
  // Last: the checks have changed the tables for the last time.
  if (m.hold) {
    map_for_dump(space, v);
    report_space(space, v);
  }
}

}  // namespace
}  // namespace kernel

extern "C" [[noreturn]] void kmain(ptkit::u32 magic, ptkit::u32 info) {
  using namespace kernel;
  serial::init();
  serial::write("ptkit x86-64 test kernel\n");
  trap::install();
  Machine m;
  {
    Check c("multiboot");
    c.expect(discover(magic, info, m), "known loader magic, memory map present", magic);
    c.expect(m.is_ram(kScratch, kScratchEnd - kScratch), "RAM for the scratch area", m.ram_top);
    c.expect(m.is_ram(kRandomPhys, kRandomPhysSize), "RAM for the random phase", m.ram_top);
    c.expect(m.is_ram(kBootTables, kBootTablesSize), "RAM for the boot allocator", m.ram_top);
  }
  serial::write("info loader ");
  serial::write(loader_name(m.loader));
  serial::write("\n");
  {
    Check c("cpu-features");
    c.expect(m.features.nx, "NX (EFER.NXE)");
    c.expect(m.features.page_1g, "1 GiB pages (run with -cpu max)");
  }
  serial::write(m.la57 ? "info paging 5-level\n" : "info paging 4-level\n");
  if (g_checks_failed == 0) {
    if (m.la57)
      run<ptkit::x86::Paging5>(m);
    else
      run<ptkit::x86::Paging4>(m);
  }
  serial::write("summary ");
  serial::dec(g_checks_passed);
  serial::write(" ok, ");
  serial::dec(g_checks_failed);
  serial::write(" failed\n");
  if (m.hold && g_checks_failed == 0) {
    // QEMU stays up, the CPU halted on the tables just printed, until the
    // monitor has dumped memory and quits (tests/qemu/dump_guest_memory.sh).
    serial::write("ready for dump\n");
    cpu::halt_forever();
  }
  cpu::qemu_exit(g_checks_failed == 0 ? cpu::kExitPass : cpu::kExitFail);
}
