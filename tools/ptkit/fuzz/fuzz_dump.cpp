// Fuzz target: `ptkit dump` and `dump --audit` on a memory image. The input
// is one text line "FORMAT ROOT BASE" (as `ptkit dump` takes them) followed by
// the raw physical memory starting at BASE.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "audit.hpp"
#include "dump.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptkit::tool;
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the input's bytes as text
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const std::size_t eol = all.find('\n');
  if (eol == std::string_view::npos || eol > 100) return 0;
  std::istringstream head{std::string(all.substr(0, eol))};
  std::string name;
  std::string root_text;
  std::string base_text;
  head >> name >> root_text >> base_text;
  try {
    const Format format = Format::from_name(name, root_text.size() % 2 == 1);
    const u64 root = parse_option_number("root", root_text);
    const u64 base = parse_option_number("base", base_text);
    const u64 n = size - eol - 1;
    if (n > ~base) return 0;
    const MemoryImage mem = MemoryImage::raw(data + eol + 1, n, base, "fuzz.bin");
    // Small limits: a hostile image may not make one input run for long.
    const WalkLimits limits{u64{1} << 16, u64{1} << 14};
    for (WalkMode mode : {WalkMode::Strict, WalkMode::Audit}) {
      try {
        const DumpResult d = walk_tables(mem, root, format, limits, mode);
        (void)dump_text(d, format, half_markers(format));
        (void)dump_json(d, format);
        const auto findings = audit(d, format, {base});
        (void)audit_text(findings, d, format);
        (void)audit_json(findings, d, format);
      } catch (const InputError&) {
      }
    }
  } catch (const UsageError&) {
  }
  return 0;
}
