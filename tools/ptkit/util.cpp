#include "util.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace ptkit::tool {

std::optional<u64> parse_number(std::string_view text) {
  if (text.empty()) return std::nullopt;
  unsigned shift = 0;
  switch (text.back()) {
    case 'K':
    case 'k': shift = 10; break;
    case 'M':
    case 'm': shift = 20; break;
    case 'G':
    case 'g': shift = 30; break;
    case 'T':
    case 't': shift = 40; break;
    default: break;
  }
  if (shift != 0) text.remove_suffix(1);
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  }
  if (text.empty()) return std::nullopt;
  u64 value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value, base);
  if (ec != std::errc{} || ptr != end) return std::nullopt;
  if (shift != 0 && (value >> (64 - shift)) != 0) return std::nullopt;  // would overflow
  return value << shift;
}

u64 parse_option_number(std::string_view option, std::string_view text) {
  const auto v = parse_number(text);
  if (!v)
    throw UsageError(
        fmt::format("{}: expected a hex (0x...) or decimal number with an optional "
                    "K/M/G/T suffix, got '{}'",
                    option, text));
  return *v;
}

std::string size_name(u64 bytes) {
  static constexpr const char* kUnits[] = {"", "K", "M", "G", "T", "P", "E"};
  unsigned unit = 0;
  while (bytes != 0 && unit + 1 < std::size(kUnits) && (bytes & 1023) == 0) {
    bytes >>= 10;
    ++unit;
  }
  return fmt::format("{}{}", bytes, kUnits[unit]);
}

std::string hex(u64 value) { return fmt::format("0x{:016x}", value); }

std::vector<unsigned char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  // One sized read: memory images run to gigabytes, and a byte-wise copy
  // took most of `dump`'s time on a QEMU core. Files with no size (pipes)
  // are read in chunks until their end.
  std::vector<unsigned char> data;
  std::error_code ec;
  const auto size = std::filesystem::is_regular_file(path, ec)
                        ? std::filesystem::file_size(path, ec)
                        : std::uintmax_t{0};
  if (!ec && size != 0) data.reserve(size);
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  for (;;) {
    const std::size_t at = data.size();
    data.resize(at + kChunk);
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): bytes, as istream reads them
    in.read(reinterpret_cast<char*>(data.data() + at), std::streamsize(kChunk));
    data.resize(at + std::size_t(in.gcount()));
    if (!in) break;
  }
  if (in.bad()) throw InputError(fmt::format("{}: read error", path));
  return data;
}

}  // namespace ptkit::tool
