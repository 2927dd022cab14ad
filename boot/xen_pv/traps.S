// The guest's page-fault entry (registered with set_trap_table). A 64-bit PV
// guest's exception frame is the hardware one with rcx and r11 pushed on
// top (xen/include/public/arch-x86/xen-x86_64.h):
//   rcx, r11, error code, rip, cs, rflags, rsp, ss.
// A fault the kernel expects (fault_resume != 0, set just before a probing
// access) records its error code, counts, and resumes at fault_resume;
// any other fault is reported as a failure. The return is Xen's iret
// hypercall: the hypercall page's iret stub pushes rcx, r11 and rax itself
// and wants the frame below them as flags (0), rip, cs, rflags, rsp, ss.

#define HYPERCALL_IRET 23

        .section .text
        .globl page_fault_entry
page_fault_entry:
        pushq %rax                      // rax rcx r11 err rip cs rflags rsp ss
        movq 24(%rsp), %rax
        movq %rax, fault_error(%rip)
        movq fault_resume(%rip), %rax
        testq %rax, %rax
        jz 1f
        movq %rax, 32(%rsp)             // rip := the probe's resume point
        movq $0, fault_resume(%rip)
        incq fault_count(%rip)
        popq %rax
        movq (%rsp), %rcx
        movq 8(%rsp), %r11
        addq $16, %rsp                  // err rip cs rflags rsp ss
        movq $0, (%rsp)                 // the error code's slot: iret flags
        jmp hypercall_page + HYPERCALL_IRET * 32

1:      movq 24(%rsp), %rdi             // error code
        movq 32(%rsp), %rsi             // rip
        andq $-16, %rsp
        call unexpected_fault           // does not return

        .section .bss
        .p2align 3
        .globl fault_resume, fault_error, fault_count
fault_resume:
        .quad 0
fault_error:
        .quad 0
fault_count:
        .quad 0
