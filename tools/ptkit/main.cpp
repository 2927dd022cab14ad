// ptkit: the command-line tool (issue 7). This file only wires the command
// line to the commands (commands.hpp) and turns errors into exit statuses:
// 0 ok, 1 usage, 2 bad input, 3 findings.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "commands.hpp"

using namespace ptkit::tool;

int main(int argc, char** argv) {
  CLI::App app{"ptkit: build, dump and check page tables (x86-64, AArch64, RISC-V)", "ptkit"};
  app.set_version_flag("--version", std::string("ptkit ") + PTKIT_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit status: 0 ok, 1 usage error, 2 bad input (the message names file and line or\n"
      "offset), 3 findings (check, dump --audit). Addresses take hex (0x...) or decimal, sizes "
      "K/M/G/T.\n"
      "Examples:\n"
      "  ptkit formats\n"
      "  ptkit build --dump\n"
      "  ptkit build examples/board.toml --format riscv-sv39 --json\n"
      "  ptkit image vmlinux --dump\n"
      "  ptkit dump tables.bin --root 0x1000000 --base 16M --format x86_64-4l\n"
      "  ptkit check trace.txt");

  CLI::App* formats = app.add_subcommand("formats", "List the paging formats --format takes");
  formats->footer("Example:\n  ptkit formats");

  BuildArgs build;
  CLI::App* b = app.add_subcommand(
      "build", "Build page tables for a layout (without LAYOUT: the built-in kernel example)");
  b->add_option("layout", build.layout, "Layout file (docs/layout-format.md)");
  b->add_option("--format", build.format, "Paging format (ptkit formats); overrides the layout's");
  b->add_option("--out", build.out,
                "Write the table area as a binary blob to FILE and its description to FILE.json");
  b->add_flag("--dump", build.dump, "Print the mappings like Linux's ptdump");
  b->add_option("--svg", build.svg,
                "Draw the address space to FILE (SVG: a band per range, colour by permission)");
  b->add_flag("--json", build.json,
              "Print statistics as JSON (format, root, tables, leaves, table_bytes, mappings)");
  b->footer(
      "An unknown --format is a usage error (exit 1); an unknown 'format' in the layout is bad\n"
      "input (exit 2), like every other layout error.\n"
      "Examples:\n"
      "  ptkit build --dump                           # the built-in example, x86_64-4l\n"
      "  ptkit build --format aarch64-4k-48 --json\n"
      "  ptkit build examples/kernel.toml --format riscv-sv48 --out tables.bin\n"
      "  ptkit build examples/board.toml --svg board.svg");

  ImageArgs image;
  CLI::App* im =
      app.add_subcommand("image", "Build page tables for a kernel/firmware ELF's PT_LOAD segments");
  im->add_option("elf", image.elf, "64-bit ELF executable")->required();
  im->add_option("--load-pa", image.load_pa,
                 "Physical address of the lowest segment; the others keep their virtual "
                 "offsets from it (default: each segment's p_paddr)");
  im->add_option("--format", image.format,
                 "Paging format (ptkit formats); default from e_machine: x86_64-4l, "
                 "aarch64-4k-48, riscv-sv48");
  im->add_option("--align", image.align,
                 "Require every segment to start on this alignment (e.g. 2M); default the page");
  im->add_option("--tables", image.tables,
                 "Physical base of the table area; default right after the image");
  im->add_option("--tables-size", image.tables_size, "Bytes of the table area (default 1M)");
  im->add_option("--out", image.out,
                 "Write the table area as a binary blob to FILE and its description to FILE.json");
  im->add_flag("--dump", image.dump, "Print the mappings like Linux's ptdump");
  im->add_option("--svg", image.svg, "Draw the address space to FILE (SVG)");
  im->add_flag("--json", image.json,
               "Print statistics as JSON (as build, plus the ELF's segments)");
  im->footer(
      "Each PT_LOAD segment is mapped at p_vaddr, rounded out to whole pages, with its flags\n"
      "(always r; PF_W adds w, PF_X adds x; W+X gets a warning) and the largest leaves the\n"
      "alignment of its addresses allows. Segments whose vaddr and paddr differ within a page,\n"
      "or that share a page with a segment of other permissions, are misaligned: bad input\n"
      "(exit 2) naming the segment, its addresses and the alignment needed.\n"
      "Examples:\n"
      "  ptkit image vmlinux --dump\n"
      "  ptkit image kernel.elf --load-pa 0x40200000 --format aarch64-4k-48 --out tables.bin\n"
      "  ptkit image firmware.elf --align 2M --json");

  DumpArgs dump;
  CLI::App* d =
      app.add_subcommand("dump", "Print the page tables found in a memory image or ELF core");
  d->add_option("memory", dump.memory,
                "Raw physical memory image (offset 0 = --base) or an ELF core from QEMU's "
                "dump-guest-memory")
      ->required();
  d->add_option("--root", dump.root,
                "Physical address of the root table (CR3, TTBRn, satp PPN<<12)")
      ->required();
  d->add_option("--format", dump.format, "Paging format (ptkit formats)")->required();
  d->add_option("--base", dump.base, "Physical address of the image's first byte (default 0)");
  d->add_option("--half", dump.half, "AArch64: lower (TTBR0) or upper (TTBR1) region")
      ->capture_default_str();
  d->add_option("--direct-map", dump.direct_map,
                "--audit: the virtual address the direct map puts physical 0 at; its writable "
                "mappings of tables are expected, its executable ones are findings");
  d->add_flag("--audit", dump.audit,
              "Report W+X and user-accessible kernel-half mappings, writable mappings of "
              "page tables, an executable direct map, reserved or malformed entries, shared "
              "tables, tables outside the image and loops (exit 3 if any)");
  d->add_option("--svg", dump.svg,
                "Draw the mappings to FILE (SVG: a band per range, colour by permission)");
  d->add_flag("--json", dump.json,
              "Print an array of {va, size, pa, leaf, perms, ...} (--audit: the findings)");
  d->footer(
      "Tables outside the image, truncated images and tables that loop are reported as bad\n"
      "input (exit 2) with the physical address and offset concerned. With --audit they are\n"
      "findings like the others (only a root outside the image stays bad input): one line\n"
      "each, exit 3 when there is any, 0 when the tables are clean. A table two entries\n"
      "point to is audited once, at the first.\n"
      "Examples:\n"
      "  ptkit build --out tables.bin && \\\n"
      "    ptkit dump tables.bin --base 16M --root 16M --format x86_64-4l\n"
      "  ptkit dump mem.bin --root 0x40001000 --base 0x40000000 --format aarch64-4k-48 "
      "--half upper --json\n"
      "  ptkit dump tables.bin --base 16M --root 16M --format x86_64-4l --audit "
      "--direct-map 0xffff888000000000\n"
      "  ptkit dump guest.core --root 0x10d000 --format x86_64-4l   # (qemu) dump-guest-memory");

  CheckArgs check;
  CLI::App* c = app.add_subcommand("check", "Run the simulator's rule checker on a trace");
  c->add_option("trace", check.trace, "Trace file (docs/trace-format.md)")->required();
  c->add_option("--format", check.format,
                "For a trace without a header: its paging format (ptkit formats)");
  c->add_option("--feature", check.features,
                "For a trace without a header: a feature word (ttbr1, svnapot, page_1g, ...; "
                "docs/trace-format.md); repeatable");
  c->add_option("--root", check.root, "For a trace without a header: the root table's address");
  c->add_flag("--json", check.json, "Print the violations as JSON");
  c->footer(
      "Exit status 3 when the trace breaks a rule; each violation names the event, the rule\n"
      "and the manual's section. A trace that is only events (no 'ptkit-trace' header) needs\n"
      "--format and --root; a trace with a header may repeat its format in --format, which\n"
      "must then agree. Line numbers are the file's either way.\n"
      "Examples:\n"
      "  ptkit check trace.txt\n"
      "  ptkit check trace.txt --json\n"
      "  ptkit check events.log --format aarch64-4k-48 --feature ttbr1 --root 0x40001000");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  try {
    if (formats->parsed()) return cmd_formats();
    if (b->parsed()) return cmd_build(build);
    if (im->parsed()) return cmd_image(image);
    if (d->parsed()) return cmd_dump(dump);
    if (c->parsed()) return cmd_check(check);
  } catch (const UsageError& e) {
    std::cerr << "ptkit: " << e.what() << "\n";
    return kExitUsage;
  } catch (const InputError& e) {
    std::cerr << "ptkit: " << e.what() << "\n";
    return kExitBadInput;
  }
  return kExitUsage;
}
