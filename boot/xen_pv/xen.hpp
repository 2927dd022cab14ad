// The Xen ABI the guest uses (xen/include/public/: xen.h, physdev.h,
// sched.h, arch-x86/xen-x86_64.h) and the hypercalls, made through the
// hypercall page Xen fills (entry.S): hypercall n is `call hypercall_page +
// n * 32`, arguments in rdi, rsi, rdx, r10, r8, the result in rax; the stub
// enters Xen with `syscall`, which clobbers rcx and r11.
#pragma once

#include "ptkit/addr.hpp"
#include "ptkit/early/xen_pv.hpp"

extern "C" char hypercall_page[];

namespace kernel::xen {

using ptkit::u16;
using ptkit::u32;
using ptkit::u64;
using ptkit::u8;

// Hypercall numbers (xen.h).
inline constexpr unsigned kSetTrapTable = 0;
inline constexpr unsigned kMmuUpdate = 1;
inline constexpr unsigned kUpdateVaMapping = 14;
inline constexpr unsigned kConsoleIo = 18;
inline constexpr unsigned kMmuextOp = 26;
inline constexpr unsigned kSchedOp = 29;
inline constexpr unsigned kPhysdevOp = 33;

inline constexpr u64 kDomidSelf = 0x7FF0;     // DOMID_SELF
inline constexpr u64 kConsoleIoWrite = 0;     // CONSOLEIO_write
inline constexpr u64 kUvmfInvlpg = 2;         // UVMF_INVLPG | UVMF_LOCAL
inline constexpr u64 kPhysdevOpSetIopl = 6;   // PHYSDEVOP_set_iopl
inline constexpr u64 kSchedOpShutdown = 2;    // SCHEDOP_shutdown
inline constexpr u64 kShutdownCrash = 3;      // SHUTDOWN_crash
inline constexpr u16 kFlatKernelCs = 0xe033;  // FLAT_KERNEL_CS64 (xen-x86_64.h)

/// Where the M2P table is mapped read-only in every 64-bit PV guest
/// (MACH2PHYS_VIRT_START, xen-x86_64.h): one u64 pfn per machine frame.
inline constexpr u64 kMachToPhys = 0xFFFF800000000000;

/// struct start_info (xen.h), the fields this guest reads.
struct StartInfo {
  char magic[32];  // "xen-<version>-<platform>"
  u64 nr_pages;
  u64 shared_info;  // machine address
  u32 flags;
  u64 store_mfn;
  u32 store_evtchn;
  u64 console[2];
  u64 pt_base;  // virtual address of the L4 Xen built
  u64 nr_pt_frames;
  u64 mfn_list;  // virtual address of the P2M: mfn of every pfn
  u64 mod_start;
  u64 mod_len;
  char cmd_line[1024];
};
static_assert(__builtin_offsetof(StartInfo, pt_base) == 88, "start_info layout");
static_assert(__builtin_offsetof(StartInfo, cmd_line) == 128, "start_info layout");

/// struct trap_info (arch-x86/xen.h); a table ends with address 0.
struct TrapInfo {
  u8 vector;
  u8 flags;  // DPL that may raise it with `int`; 0: the kernel only
  u16 cs;
  u64 address;
};
static_assert(sizeof(TrapInfo) == 16, "trap_info layout");

template <unsigned Op>
inline long hypercall(u64 a1 = 0, u64 a2 = 0, u64 a3 = 0, u64 a4 = 0) {
  register u64 r10 asm("r10") = a4;
  long ret = 0;
  asm volatile("call hypercall_page + %c[off]"
               : "=a"(ret), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10)
               : [off] "i"(Op * 32)
               : "rcx", "r8", "r11", "memory");
  return ret;
}

inline long console_write(const char* s, unsigned n) {
  return hypercall<kConsoleIo>(kConsoleIoWrite, n, reinterpret_cast<u64>(s));
}

/// HYPERVISOR_mmu_update(reqs, count, &done, DOMID_SELF).
inline int mmu_update(const ptkit::xen::MmuUpdate* reqs, unsigned count, unsigned* done) {
  return static_cast<int>(hypercall<kMmuUpdate>(reinterpret_cast<u64>(reqs), count,
                                                reinterpret_cast<u64>(done), kDomidSelf));
}

/// HYPERVISOR_mmuext_op(ops, count, NULL, DOMID_SELF).
inline int mmuext(const ptkit::xen::MmuextOp* ops, unsigned count) {
  return static_cast<int>(hypercall<kMmuextOp>(reinterpret_cast<u64>(ops), count, 0, kDomidSelf));
}
inline int mmuext(const ptkit::xen::MmuextOp& op) { return mmuext(&op, 1); }

inline int update_va_mapping(u64 va, u64 pte, u64 flags) {
  return static_cast<int>(hypercall<kUpdateVaMapping>(va, pte, flags));
}

inline int set_trap_table(const TrapInfo* table) {
  return static_cast<int>(hypercall<kSetTrapTable>(reinterpret_cast<u64>(table)));
}

/// The ptkit writer's hypercall: mmu_update for DOMID_SELF, with Xen's count
/// of applied requests.
struct MmuUpdateCall {
  int mmu_update(const ptkit::xen::MmuUpdate* reqs, unsigned count) {
    unsigned done = 0;
    return xen::mmu_update(reqs, count, &done);
  }
  int mmu_update(const ptkit::xen::MmuUpdate* reqs, unsigned count, unsigned* done) {
    return xen::mmu_update(reqs, count, done);
  }
};

/// The ptkit sink's hypercall: mmuext_op for DOMID_SELF.
struct MmuextCall {
  int mmuext_op(const ptkit::xen::MmuextOp* ops, unsigned count) { return mmuext(ops, count); }
};

}  // namespace kernel::xen
