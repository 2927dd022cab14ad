// Fuzz target: a layout file (docs/layout-format.md), parsed and, when it
// parses, built for its own format and for one other, as `ptkit build` does.
#include <cstddef>
#include <cstdint>
#include <string>

#include "build.hpp"
#include "layout.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptkit::tool;
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the input's bytes as text
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const Layout layout = parse_layout_text(text, "fuzz.toml");
    for (const char* format : {"", "riscv-sv39"}) {
      try {
        const BuildResult b =
            build_layout(layout, *format != 0 ? std::optional<std::string>(format) : std::nullopt);
        (void)build_json(b);
        (void)build_summary(b);
      } catch (const InputError&) {
      } catch (const UsageError&) {
      }
    }
  } catch (const InputError&) {
    // A clear error naming the file: what bad input must give.
  }
  return 0;
}
