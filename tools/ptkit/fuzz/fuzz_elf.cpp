// Fuzz target: a file read as a kernel ELF (`ptkit image`) and as an ELF core
// (`ptkit dump`).
#include <cstddef>
#include <cstdint>

#include "elf_image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptkit::tool;
  for (ElfType type : {ElfType::Executable, ElfType::Core}) {
    try {
      const ElfImage img = read_elf(data, size, "fuzz.elf", type);
      // What the callers rely on: every segment's file bytes are inside it.
      for (const ElfSegment& s : img.segments)
        if (s.offset > size || s.filesz > size - s.offset) __builtin_trap();
    } catch (const InputError&) {
    }
  }
  return 0;
}
