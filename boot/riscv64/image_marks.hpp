// Known values in the image's sections, for checks that read or run them
// through other mappings and try what the section's permissions forbid.
#pragma once

#include "ptkit/addr.hpp"
#include "trap.hpp"

namespace kernel {

// A `ret` in a data page, to show the image mapper made data non-executable.
inline ptkit::u32 g_ret_in_data[4] = {trap::kRetInstruction};
// A value in rodata, to read through other mappings and to try to write.
inline constexpr ptkit::u64 kRodataMagic = 0x7074'6b69'7452'4f21;
inline const ptkit::u64 g_rodata_word = kRodataMagic;  // read only through probes

}  // namespace kernel
