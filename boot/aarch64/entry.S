// Entry of the AArch64 test kernel: QEMU virt starts it at EL1 with the MMU
// and caches off (REAL-MMU.md). It takes the boot stack, clears .bss (an
// ELF loader need not, and it holds the table pools) and calls kmain, which
// builds the kernel's tables with ptkit and never returns.
//
// With the MMU off every data access is Device-nGnRnE (Arm ARM D8.2.11
// "The effects of disabling an address translation stage"): no unaligned
// accesses, hence the 8-byte-aligned stores here and -mstrict-align in C++.

        .section .boot.text, "ax"
        .globl _start
_start:
        adrp    x1, boot_stack_top
        add     x1, x1, :lo12:boot_stack_top
        mov     sp, x1
        adrp    x1, __bss_start
        add     x1, x1, :lo12:__bss_start
        adrp    x2, __bss_end
        add     x2, x2, :lo12:__bss_end
1:      cmp     x1, x2
        b.hs    2f
        str     xzr, [x1], #8
        b       1b
2:      mov     x29, xzr
        mov     x30, xzr
        bl      kmain
3:      wfi
        b       3b

        .section .bss
        .balign 16
boot_stack:
        .skip   65536
boot_stack_top:

// void call_on_stack(void (*fn)(void*), void* arg, u64 stack_top): runs
// fn(arg) with SP = stack_top (16-byte aligned), then returns on the old
// stack. The live-split checks run on a stack inside the block they split.
        .text
        .globl call_on_stack
call_on_stack:
        stp     x29, x30, [sp, #-16]!
        mov     x29, sp
        mov     x3, sp
        mov     sp, x2
        str     x3, [sp, #-16]!         // the old SP, on the new stack
        mov     x3, x0
        mov     x0, x1
        blr     x3
        ldr     x3, [sp], #16
        mov     sp, x3
        ldp     x29, x30, [sp], #16
        ret
