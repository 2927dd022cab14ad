// Multiboot entry of the x86-64 test kernel: 32-bit protected mode with
// paging off -> long mode on a throw-away identity map of the first GiB,
// then kmain(magic, info). The kernel builds its real tables with ptkit and
// never comes back here.
//
// Two headers, one entry: QEMU's -kernel loader reads the multiboot1 header
// (Multiboot spec 0.6.96 §3.1) and GRUB's `multiboot2` command the multiboot2
// one (Multiboot2 spec 2.0 §3.1). Both enter _start in the same machine state
// (§3.2 of each) with their magic in EAX and their information structure in
// EBX; kmain tells them apart by the magic.
//
// 5-level paging cannot be turned on from long mode (CR4.LA57 may change only
// with paging off, SDM vol. 3A §4.1.1), so the choice is made here: LA57 when
// CPUID has it. Run QEMU with -cpu max,la57=off for 4-level paging.

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000002 /* bit 1: pass the memory map */

#define CR0_PE (1 << 0)
#define CR0_WP (1 << 16) /* supervisor writes honour read-only pages */
#define CR0_PG (1 << 31)
#define CR4_PAE (1 << 5)
#define CR4_LA57 (1 << 12)
#define MSR_EFER 0xC0000080
#define EFER_LME (1 << 8)
#define EFER_NXE (1 << 11)
#define PTE_P 0x1
#define PTE_W 0x2
#define PTE_PS 0x80
#define DEBUG_EXIT_PORT 0xf4
#define EXIT_FAIL 0x11

#define MB2_MAGIC 0xE85250D6
#define MB2_ARCH_I386 0
#define MB2_TAG_END 0
#define MB2_TAG_INFO_REQUEST 1
#define MB2_INFO_MMAP 6

        .section .multiboot, "a"
        .p2align 2
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

        // Multiboot2: 8-byte aligned, within the first 32 KiB of the file.
        // The ELF headers say where to load; the one tag asks for the memory
        // map (flags 0: the kernel cannot boot without it).
        .p2align 3
mb2_header:
        .long MB2_MAGIC, MB2_ARCH_I386, mb2_header_end - mb2_header
        .long -(MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))
        .short MB2_TAG_INFO_REQUEST, 0
        .long 12, MB2_INFO_MMAP
        .p2align 3                  // every tag starts 8-byte aligned
        .short MB2_TAG_END, 0
        .long 8
mb2_header_end:

        .section .boot.text, "ax"
        .code32
        .globl _start
_start:
        cli
        cld
        // Saved in .data: .bss is about to be cleared.
        mov %eax, boot_magic
        mov %ebx, boot_info
        // The loader is not required to clear .bss (only ELF loaders do).
        mov $__bss_start, %edi
        mov $__bss_end, %ecx
        sub %edi, %ecx
        xor %eax, %eax
        rep stosb
        mov $boot_stack_top, %esp

        // Long mode (CPUID 8000_0001h EDX bit 29) or give up with "fail".
        mov $0x80000000, %eax
        cpuid
        cmp $0x80000001, %eax
        jb no_long_mode
        mov $0x80000001, %eax
        cpuid
        test $(1 << 29), %edx
        jz no_long_mode
        // NX (EDX bit 20): enable EFER.NXE so the kernel's tables may use XD.
        xor %esi, %esi
        test $(1 << 20), %edx
        jz 1f
        mov $EFER_NXE, %esi
1:
        // PD: 512 identity 2 MiB pages, present and writable.
        mov $boot_pd, %edi
        mov $(PTE_P | PTE_W | PTE_PS), %eax
        xor %ecx, %ecx
2:      mov %eax, (%edi, %ecx, 8)
        add $0x200000, %eax
        inc %ecx
        cmp $512, %ecx
        jb 2b
        movl $(boot_pd + PTE_P + PTE_W), boot_pdpt
        movl $(boot_pdpt + PTE_P + PTE_W), boot_pml4
        movl $(boot_pml4 + PTE_P + PTE_W), boot_pml5

        // LA57 (CPUID 7.0 ECX bit 16) decides between 4- and 5-level paging.
        // CPUID writes EAX-EDX: the choice is kept in EBP (CR4 bits) and EDI
        // (the root).
        xor %ebp, %ebp
        mov $boot_pml4, %edi
        xor %eax, %eax
        cpuid
        cmp $7, %eax
        jb 3f
        mov $7, %eax
        xor %ecx, %ecx
        cpuid
        test $(1 << 16), %ecx
        jz 3f
        mov $CR4_LA57, %ebp
        mov $boot_pml5, %edi
3:      mov %edi, %cr3
        mov %cr4, %eax
        or $CR4_PAE, %eax
        or %ebp, %eax
        mov %eax, %cr4
        mov $MSR_EFER, %ecx
        rdmsr
        or $EFER_LME, %eax
        or %esi, %eax
        wrmsr
        mov %cr0, %eax
        or $(CR0_PE | CR0_WP | CR0_PG), %eax
        mov %eax, %cr0
        // Compatibility mode now; the far jump loads a 64-bit code segment.
        lgdt boot_gdtr
        ljmp $0x08, $long_mode

no_long_mode:
        mov $EXIT_FAIL, %al
        out %al, $DEBUG_EXIT_PORT
4:      hlt
        jmp 4b

        .code64
long_mode:
        mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov %ax, %fs
        mov %ax, %gs
        mov $boot_stack_top, %rsp
        xor %ebp, %ebp
        // 32-bit loads zero-extend: the upper halves are undefined after the switch.
        mov boot_magic, %edi
        mov boot_info, %esi
        call kmain
5:      hlt
        jmp 5b

        .section .data
        .p2align 3
        // Accessed bits preset: the CPU would otherwise write them on a load.
boot_gdt:
        .quad 0
        .quad 0x00AF9B000000FFFF // 0x08: 64-bit code, DPL 0
        .quad 0x00CF93000000FFFF // 0x10: data, DPL 0
boot_gdt_end:
boot_gdtr:
        .word boot_gdt_end - boot_gdt - 1
        .long boot_gdt
boot_magic:
        .long 0
boot_info:
        .long 0

        .section .bss
        .p2align 12
boot_pml5:
        .skip 4096
boot_pml4:
        .skip 4096
boot_pdpt:
        .skip 4096
boot_pd:
        .skip 4096
        .p2align 4
        .globl boot_stack_top
boot_stack:
        .skip 32768
boot_stack_top:
