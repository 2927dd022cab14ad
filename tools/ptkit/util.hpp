// Small things every command needs: exit statuses, the two kinds of error,
// number parsing (hex or decimal, K/M/G/T suffixes) and number printing.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ptkit::tool {

using u64 = std::uint64_t;

/// Exit statuses (docs: CLI conventions): scripts tell these apart.
enum Exit : int {
  kExitOk = 0,
  kExitUsage = 1,     // the command line is wrong
  kExitBadInput = 2,  // an input file is wrong (the message names file and place)
  kExitFindings = 3,  // the input is well-formed and the check found problems
};

/// A wrong command line (an unknown --format, a malformed address): exit 1.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
/// A wrong input file (layout, memory image, trace): exit 2. The message
/// names the file and the line or offset, and what was expected.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// "0x1000", "4096", "16M", "0x10K", "2G": hex (0x) or decimal, optionally
/// followed by K, M, G or T (powers of 1024). nullopt when malformed or when
/// the value does not fit 64 bits.
std::optional<u64> parse_number(std::string_view text);

/// Like parse_number, for a command-line option: throws UsageError naming it.
u64 parse_option_number(std::string_view option, std::string_view text);

/// The size with the largest binary unit that divides it exactly: "4K",
/// "2112K", "1G", "256T", "0". No rounding, so runs add up.
std::string size_name(u64 bytes);

/// Full-width hex, "0x0000000001000000".
std::string hex(u64 value);

/// The whole file, or InputError naming it and why it could not be read.
std::vector<unsigned char> read_file(const std::string& path);

}  // namespace ptkit::tool
