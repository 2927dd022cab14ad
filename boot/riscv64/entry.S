// Entry of the RISC-V test kernel. OpenSBI (fw_dynamic) enters here in
// S-mode with satp = Bare, a0 = the hart id and a1 = the devicetree's
// physical address (RISC-V SBI spec, "Boot" / Linux boot protocol). The
// image runs at its link address, so no relocation is needed: clear .bss, set
// up the stack, call kmain(hartid, dtb). kmain never returns.

        .section .text.entry, "ax"
        .globl _start
_start:
        la sp, boot_stack_top
        // QEMU's loader leaves RAM zeroed, but .bss is NOLOAD: clear it.
        la t0, __bss_start
        la t1, __bss_end
1:      bgeu t0, t1, 2f
        sd zero, 0(t0)
        addi t0, t0, 8
        j 1b
2:      call kmain
3:      wfi
        j 3b

        .section .bss
        .p2align 12
        .globl boot_stack, boot_stack_top
boot_stack:
        .skip 65536
boot_stack_top:
