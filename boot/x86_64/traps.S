// Exception entry stubs and fault probes of the x86-64 test kernel.
//
// Every vector 0-31 enters isr_common with a frame (trap.hpp: TrapFrame)
// that on_exception() may edit: it resumes a probe at its fixup by rewriting
// RIP (and RSP, for an execute probe). Handlers run on the interrupted stack
// at CPL 0 (no IST, no TSS), which -mno-red-zone makes safe.

        .text
        .code64

// Vectors whose exceptions push an error code (SDM vol. 3A §6.13, Table 6-1).
.macro ISR n
        .p2align 4
isr\n:
.if (\n == 8) || (\n == 10) || (\n == 11) || (\n == 12) || (\n == 13) || (\n == 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
        pushq $\n
.else
        pushq $0    // uniform frame: a dummy error code
        pushq $\n
.endif
        jmp isr_common
.endm

#define VECTORS 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
.irp n, VECTORS
        ISR \n
.endr

isr_common:
        push %rax
        push %rcx
        push %rdx
        push %rbx
        push %rbp
        push %rsi
        push %rdi
        push %r8
        push %r9
        push %r10
        push %r11
        push %r12
        push %r13
        push %r14
        push %r15
        // The CPU aligned RSP to 16 before its 5 pushes; with 2 + 15 more the
        // total is 22 * 8 = 176 bytes, so RSP is 16-aligned for the call.
        mov %rsp, %rdi
        cld         // the ABI's direction flag for the C++ handler
        call on_exception
        pop %r15
        pop %r14
        pop %r13
        pop %r12
        pop %r11
        pop %r10
        pop %r9
        pop %r8
        pop %rdi
        pop %rsi
        pop %rbp
        pop %rbx
        pop %rdx
        pop %rcx
        pop %rax
        add $16, %rsp   // vector and error code
        iretq

        .section .rodata
        .p2align 3
        .globl isr_table
isr_table:
.irp n, VECTORS
        .quad isr\n
.endr

// ---- Probes -------------------------------------------------------------
// Each returns 0 in RAX when the access completed and 1 when it faulted: the
// handler sets RAX = 1 and resumes at probe_done. The faulting instruction
// sits at a known address so the handler can tell a probe's fault from a bug.

        .text
        .globl probe_read, probe_read_insn, probe_write, probe_write_insn
        .globl probe_exec, probe_exec_ret, probe_exec_rsp, probe_done

// int probe_read(const volatile u64* p, u64* out)
probe_read:
        xor %eax, %eax
probe_read_insn:
        mov (%rdi), %rdx
        mov %rdx, (%rsi)
        ret

// int probe_write(volatile u64* p, u64 value)
probe_write:
        xor %eax, %eax
probe_write_insn:
        mov %rsi, (%rdi)
probe_done:
        ret

// int probe_exec(void (*target)()): calls target; a fetch fault there
// resumes at probe_exec_ret with the stack as it was before the call.
probe_exec:
        xor %eax, %eax
        mov %rsp, probe_exec_rsp(%rip)
        call *%rdi
probe_exec_ret:
        ret

        .section .data
        .p2align 3
probe_exec_rsp:
        .quad 0
