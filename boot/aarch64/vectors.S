// Exception vectors and fault probes of the AArch64 test kernel.
//
// Every vector saves x0-x30, ELR_EL1, SPSR_EL1, ESR_EL1 and FAR_EL1 in a
// frame (trap.hpp: TrapFrame) on the current stack and calls on_exception(),
// which may edit the frame: a probe resumes at its fixup by rewriting ELR and
// x0. The kernel runs at EL1 on SP_EL1, so only the "current EL with SPx"
// entries are expected; the others report themselves as unexpected too.

#define FRAME_SIZE 288  /* 36 words, a multiple of 16 */

        .text
        .balign 2048    // VBAR_EL1 ignores bits 10:0 (D1.3.1)
        .globl exception_vectors
exception_vectors:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
        .balign 128
        sub     sp, sp, #FRAME_SIZE
        stp     x0, x1, [sp, #0]
        mov     x0, #\n
        b       exception_common
.endr

exception_common:
        stp     x2, x3, [sp, #16]
        stp     x4, x5, [sp, #32]
        stp     x6, x7, [sp, #48]
        stp     x8, x9, [sp, #64]
        stp     x10, x11, [sp, #80]
        stp     x12, x13, [sp, #96]
        stp     x14, x15, [sp, #112]
        stp     x16, x17, [sp, #128]
        stp     x18, x19, [sp, #144]
        stp     x20, x21, [sp, #160]
        stp     x22, x23, [sp, #176]
        stp     x24, x25, [sp, #192]
        stp     x26, x27, [sp, #208]
        stp     x28, x29, [sp, #224]
        mrs     x1, elr_el1
        stp     x30, x1, [sp, #240]
        mrs     x1, spsr_el1
        mrs     x2, esr_el1
        stp     x1, x2, [sp, #256]
        mrs     x1, far_el1
        stp     x1, x0, [sp, #272]      // far, vector
        mov     x0, sp
        bl      on_exception
        ldp     x30, x1, [sp, #240]
        msr     elr_el1, x1
        ldr     x1, [sp, #256]
        msr     spsr_el1, x1
        ldp     x2, x3, [sp, #16]
        ldp     x4, x5, [sp, #32]
        ldp     x6, x7, [sp, #48]
        ldp     x8, x9, [sp, #64]
        ldp     x10, x11, [sp, #80]
        ldp     x12, x13, [sp, #96]
        ldp     x14, x15, [sp, #112]
        ldp     x16, x17, [sp, #128]
        ldp     x18, x19, [sp, #144]
        ldp     x20, x21, [sp, #160]
        ldp     x22, x23, [sp, #176]
        ldp     x24, x25, [sp, #192]
        ldp     x26, x27, [sp, #208]
        ldp     x28, x29, [sp, #224]
        ldp     x0, x1, [sp, #0]
        add     sp, sp, #FRAME_SIZE
        eret

// ---- Probes -------------------------------------------------------------
// Each returns 0 in x0 when the access completed and 1 when it faulted: the
// handler sets x0 = 1 and resumes at probe_done (or, for an execute probe,
// at the return address the BLR left in x30). The faulting instruction sits
// at a known address so the handler can tell a probe's fault from a bug.

        .globl probe_read, probe_read_insn, probe_write, probe_write_insn
        .globl probe_exec, probe_done

// int probe_read(const volatile u64* p, u64* out)
probe_read:
        mov     x2, x0
        mov     x0, #0
probe_read_insn:
        ldr     x3, [x2]
        str     x3, [x1]
        ret

// int probe_write(volatile u64* p, u64 value)
probe_write:
        mov     x2, x0
        mov     x0, #0
probe_write_insn:
        str     x1, [x2]
probe_done:
        ret

// int probe_exec(void (*target)()): calls target, which must be a lone RET.
probe_exec:
        stp     x29, x30, [sp, #-16]!
        mov     x29, sp
        mov     x1, x0
        mov     x0, #0
        blr     x1
        ldp     x29, x30, [sp], #16
        ret
