// Trap entry and fault probes of the RISC-V test kernel.
//
// stvec points at trap_entry (direct mode). Every trap, taken in S-mode on
// the interrupted stack (S to S: no stack switch), saves the registers into a
// frame (trap.hpp: TrapFrame) that on_trap() may edit: it resumes a probe at
// its fixup by rewriting sepc and a0. Interrupts stay disabled throughout
// (sstatus.SIE = 0), so only synchronous exceptions arrive here.

#define FRAME 288  /* 32 registers, sepc, scause, stval, sstatus */

        .text
        .p2align 2  // stvec.BASE must be 4-byte aligned (§4.1.2)
        .globl trap_entry
trap_entry:
        addi sp, sp, -FRAME
.irp n, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        sd x\n, \n*8(sp)
.endr
        addi t0, sp, FRAME  // the interrupted sp
        sd t0, 16(sp)
        csrr t0, sepc
        sd t0, 256(sp)
        csrr t0, scause
        sd t0, 264(sp)
        csrr t0, stval
        sd t0, 272(sp)
        csrr t0, sstatus
        sd t0, 280(sp)
        mv a0, sp
        call on_trap
        ld t0, 256(sp)
        csrw sepc, t0
.irp n, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        ld x\n, \n*8(sp)
.endr
        addi sp, sp, FRAME
        sret

// ---- Probes -------------------------------------------------------------
// Each returns 0 in a0 when the access completed and 1 when it faulted: the
// handler sets a0 = 1 and resumes at probe_done (data probes) or at the
// return address (execute probe). The faulting instruction sits at a known
// address so the handler can tell a probe's fault from a bug.

        .globl probe_read, probe_read_insn, probe_write, probe_write_insn
        .globl probe_exec, probe_exec_ret, probe_done

// int probe_read(const volatile u64* p, u64* out)
probe_read:
        mv t0, a0
        li a0, 0
probe_read_insn:
        ld t1, 0(t0)
        sd t1, 0(a1)
        ret

// int probe_write(volatile u64* p, u64 value)
probe_write:
        mv t0, a0
        li a0, 0
probe_write_insn:
        sd a1, 0(t0)
probe_done:
        ret

// int probe_exec(void (*target)()): calls target, which must be a `ret`
// (0x00008067) if it runs at all. A fetch fault there has sepc = target and
// ra = probe_exec_ret, where the handler resumes.
probe_exec:
        addi sp, sp, -16
        sd ra, 8(sp)
        mv t0, a0
        li a0, 0
        jalr t0
probe_exec_ret:
        ld ra, 8(sp)
        addi sp, sp, 16
        ret

// ---- A page of text of its own --------------------------------------------
// checks_live.hpp makes this page non-executable while the kernel runs from
// the rest of the text megapage: nothing else may share it.

        .section .text.live_page, "ax"
        .p2align 12
        .globl live_text_page
live_text_page:
        ret
        .balign 4096
