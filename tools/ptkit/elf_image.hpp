// Reading a kernel or firmware ELF for `ptkit image`: its machine, entry point
// and PT_LOAD segments, read with libelf from an untrusted file. Every header
// is bounds-checked against the file before libelf reads it, so a truncated
// or garbage file gives an InputError naming the file and the offset.
#pragma once

#include <string>
#include <vector>

#include "util.hpp"

namespace ptkit::tool {

/// One PT_LOAD segment with p_memsz > 0.
struct ElfSegment {
  unsigned index = 0;  // the program header's index (the "segment N" of messages)
  u64 vaddr = 0, paddr = 0, filesz = 0, memsz = 0, offset = 0, align = 0;
  bool read = false, write = false, exec = false;  // PF_R, PF_W, PF_X
  std::string sections;                            // allocated sections inside, ".text .init"
};

struct ElfImage {
  std::string file;
  unsigned machine = 0;  // e_machine
  u64 entry = 0;
  std::vector<ElfSegment> segments;  // PT_LOAD with memsz > 0, in program-header order
};

/// What read_elf accepts: an executable (ET_EXEC, ET_DYN) for `image`, or a
/// core (ET_CORE: QEMU's dump-guest-memory, whose PT_LOAD segments hold
/// guest physical memory at p_paddr) for `dump`.
enum class ElfType { Executable, Core };

/// Parses `data` (the bytes of `file`). Throws InputError for anything that
/// is not a well-formed 64-bit ELF file of type `type` (either byte order)
/// with at least one loadable segment.
ElfImage read_elf(const unsigned char* data, u64 size, const std::string& file,
                  ElfType type = ElfType::Executable);

/// True when `data` starts with the ELF magic.
bool is_elf(const unsigned char* data, u64 size);

/// The default --format for an e_machine (EM_X86_64 -> x86_64-4l, EM_AARCH64
/// -> aarch64-4k-48, EM_RISCV -> riscv-sv48); empty for any other machine.
std::string default_format_for_machine(unsigned machine);
/// "x86-64", "AArch64", "RISC-V" or "e_machine 40".
std::string machine_name(unsigned machine);

}  // namespace ptkit::tool
