#include "elf_image.hpp"

#include <fmt/format.h>
#include <gelf.h>
#include <libelf.h>

#include <cstring>
#include <memory>

namespace ptkit::tool {

namespace {

/// Most program headers read: a kernel has a handful; more is garbage.
constexpr u64 kMaxSegments = 4096;
/// Section names listed per segment before "...".
constexpr unsigned kMaxNamesPerSegment = 4;

struct ElfCloser {
  void operator()(Elf* e) const { elf_end(e); }
};

/// True when [offset, offset + count * entsize) lies inside `size`, without
/// overflowing.
bool fits(u64 offset, u64 count, u64 entsize, u64 size) {
  if (offset > size) return false;
  if (entsize != 0 && count > (size - offset) / entsize) return false;
  return true;
}

}  // namespace

std::string machine_name(unsigned machine) {
  switch (machine) {
    case EM_X86_64: return "x86-64";
    case EM_AARCH64: return "AArch64";
    case EM_RISCV: return "RISC-V";
    default: return fmt::format("e_machine {}", machine);
  }
}

std::string default_format_for_machine(unsigned machine) {
  switch (machine) {
    case EM_X86_64: return "x86_64-4l";
    case EM_AARCH64: return "aarch64-4k-48";
    case EM_RISCV: return "riscv-sv48";
    default: return "";
  }
}

bool is_elf(const unsigned char* data, u64 size) {
  return size >= SELFMAG && std::memcmp(data, ELFMAG, SELFMAG) == 0;
}

ElfImage read_elf(const unsigned char* data, u64 size, const std::string& file, ElfType type) {
  auto fail = [&](const std::string& msg) -> InputError {
    return InputError(  // NOLINT(modernize-return-braced-init-list): the constructor is explicit
        fmt::format("{}: {}", file, msg));
  };
  // The identification bytes first, by hand: libelf's own messages do not
  // say where the file went wrong.
  if (size < EI_NIDENT || std::memcmp(data, ELFMAG, SELFMAG) != 0)
    throw fail("offset 0: not an ELF file (expected the magic \\x7fELF)");
  if (data[EI_CLASS] != ELFCLASS64)
    throw fail(
        fmt::format("offset {}: ELF class {}: only 64-bit ELF files (ELFCLASS64) are "
                    "supported",
                    EI_CLASS, data[EI_CLASS]));
  if (data[EI_DATA] != ELFDATA2LSB && data[EI_DATA] != ELFDATA2MSB)
    throw fail(fmt::format("offset {}: unknown data encoding {}", EI_DATA, data[EI_DATA]));
  if (size < sizeof(Elf64_Ehdr))
    throw fail(fmt::format("truncated ELF header: the file has {} bytes, the header needs {}", size,
                           sizeof(Elf64_Ehdr)));

  if (elf_version(EV_CURRENT) == EV_NONE) throw fail("libelf is unusable");
  // libelf wants a mutable buffer; it only reads it (ELF_C_READ semantics).
  std::vector<char> copy(data, data + size);
  std::unique_ptr<Elf, ElfCloser> elf(elf_memory(copy.data(), copy.size()));
  if (!elf || elf_kind(elf.get()) != ELF_K_ELF)
    throw fail(fmt::format("not a readable ELF file: {}", elf_errmsg(-1)));
  GElf_Ehdr eh;
  if (!gelf_getehdr(elf.get(), &eh))
    throw fail(fmt::format("offset 0: bad ELF header: {}", elf_errmsg(-1)));
  if (type == ElfType::Core && eh.e_type != ET_CORE)
    throw fail(
        fmt::format("offset {}: e_type {} is not a core file (ET_CORE, as QEMU's "
                    "dump-guest-memory writes)",
                    offsetof(Elf64_Ehdr, e_type), eh.e_type));
  if (type == ElfType::Executable && eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
    throw fail(fmt::format("offset {}: e_type {} is not an executable (ET_EXEC or ET_DYN)",
                           offsetof(Elf64_Ehdr, e_type), eh.e_type));

  ElfImage img;
  img.file = file;
  img.machine = eh.e_machine;
  img.entry = eh.e_entry;

  // The header's own count first: libelf quietly shortens a table that runs
  // past the end of the file. PN_XNUM means the count is in section 0.
  std::size_t phnum = eh.e_phnum;
  if (phnum == PN_XNUM && elf_getphdrnum(elf.get(), &phnum) != 0)
    throw fail(fmt::format("offset {}: cannot count the program headers: {}",
                           offsetof(Elf64_Ehdr, e_phnum), elf_errmsg(-1)));
  if (phnum == 0) throw fail("no program headers: nothing to load (is it an object file?)");
  if (phnum > kMaxSegments)
    throw fail(fmt::format("offset {}: {} program headers (at most {})",
                           offsetof(Elf64_Ehdr, e_phnum), phnum, kMaxSegments));
  if (eh.e_phentsize != sizeof(Elf64_Phdr))
    throw fail(fmt::format("offset {}: e_phentsize {} (expected {})",
                           offsetof(Elf64_Ehdr, e_phentsize), eh.e_phentsize, sizeof(Elf64_Phdr)));
  if (!fits(eh.e_phoff, phnum, sizeof(Elf64_Phdr), size))
    throw fail(
        fmt::format("program headers at offset {:#x} ({} of {} bytes) run past the end "
                    "of the file ({} bytes): truncated?",
                    eh.e_phoff, phnum, sizeof(Elf64_Phdr), size));

  for (std::size_t i = 0; i < phnum; ++i) {
    GElf_Phdr ph;
    const u64 at = eh.e_phoff + i * sizeof(Elf64_Phdr);
    if (!gelf_getphdr(elf.get(), int(i), &ph))
      throw fail(fmt::format("offset {:#x}: program header {}: {}", at, i, elf_errmsg(-1)));
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    if (ph.p_filesz > ph.p_memsz)
      throw fail(fmt::format("offset {:#x}: segment {}: p_filesz {:#x} exceeds p_memsz {:#x}", at,
                             i, ph.p_filesz, ph.p_memsz));
    if (!fits(ph.p_offset, ph.p_filesz, 1, size))
      throw fail(
          fmt::format("segment {}: its bytes at offset {:#x}-{:#x} run past the end of the "
                      "file ({} bytes): truncated?",
                      i, ph.p_offset, ph.p_offset + ph.p_filesz, size));
    if (ph.p_vaddr + ph.p_memsz < ph.p_vaddr || ph.p_paddr + ph.p_memsz < ph.p_paddr)
      throw fail(
          fmt::format("offset {:#x}: segment {}: vaddr {:#x} / paddr {:#x} + memsz {:#x} "
                      "wraps around the address space",
                      at, i, ph.p_vaddr, ph.p_paddr, ph.p_memsz));
    ElfSegment s;
    s.index = unsigned(i);
    s.vaddr = ph.p_vaddr;
    s.paddr = ph.p_paddr;
    s.filesz = ph.p_filesz;
    s.memsz = ph.p_memsz;
    s.offset = ph.p_offset;
    s.align = ph.p_align;
    s.read = (ph.p_flags & PF_R) != 0;
    s.write = (ph.p_flags & PF_W) != 0;
    s.exec = (ph.p_flags & PF_X) != 0;
    img.segments.push_back(s);
  }
  if (img.segments.empty()) throw fail("no PT_LOAD segment with a size: nothing to map");
  if (type == ElfType::Core) return img;  // a core's sections name nothing useful

  // Section names, for people only: a file without (readable) section
  // headers still loads, so problems here are not errors.
  std::size_t shnum = 0;
  std::size_t shstrndx = 0;
  if (eh.e_shoff != 0 && elf_getshdrnum(elf.get(), &shnum) == 0 &&
      eh.e_shentsize == sizeof(Elf64_Shdr) && fits(eh.e_shoff, shnum, sizeof(Elf64_Shdr), size) &&
      shnum <= 65536 && elf_getshdrstrndx(elf.get(), &shstrndx) == 0) {
    std::vector<unsigned> names(img.segments.size(), 0);
    for (Elf_Scn* scn = elf_nextscn(elf.get(), nullptr); scn; scn = elf_nextscn(elf.get(), scn)) {
      GElf_Shdr sh;
      if (!gelf_getshdr(scn, &sh) || !(sh.sh_flags & SHF_ALLOC) || sh.sh_size == 0) continue;
      const char* name = elf_strptr(elf.get(), shstrndx, sh.sh_name);
      if (!name || !*name) continue;
      for (std::size_t k = 0; k < img.segments.size(); ++k) {
        ElfSegment& s = img.segments[k];
        if (sh.sh_addr < s.vaddr || sh.sh_addr - s.vaddr >= s.memsz) continue;
        if (names[k] < kMaxNamesPerSegment) {
          s.sections +=
              fmt::format("{}{}", s.sections.empty() ? "" : " ", std::string(name).substr(0, 40));
        } else if (names[k] == kMaxNamesPerSegment) {
          s.sections += " ...";
        }
        ++names[k];
        break;
      }
    }
  }
  return img;
}

}  // namespace ptkit::tool
