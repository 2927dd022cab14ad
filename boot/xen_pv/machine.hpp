// Leaving the guest: the report's summary line, then a status QEMU's
// isa-debug-exit device turns into its exit code (0x10 -> 33 pass, 0x11 ->
// 35 fail).
#pragma once

#include "ptkit/addr.hpp"

namespace kernel {

/// Prints `N passed, N failed` and exits QEMU with the result.
[[noreturn]] void finish();

/// Exits QEMU with `code` written to the debug-exit port (dom0 may use I/O
/// ports once its I/O privilege level is raised: PHYSDEVOP_set_iopl). If
/// that does not stop the machine, crashes the domain (QEMU then exits 0,
/// which the runner counts as failure).
[[noreturn]] void exit_qemu(ptkit::u32 code);

}  // namespace kernel
