// Entry of the Xen PV test guest, and the ELF notes that make Xen's domain
// builder load it as a 64-bit PV kernel (xen/include/public/elfnote.h).
//
// Xen enters _start in 64-bit mode, ring 3 (PV kernel mode), on the page
// tables it built: the image, the P2M list (mfn_list), start_info and those
// tables, mapped from VIRT_BASE; %rsi holds start_info's virtual address
// (xen/include/public/xen.h, "Start-of-day memory layout"). Interrupts
// (event delivery) are masked until the guest unmasks them; this one never
// does.

#define XEN_ELFNOTE_ENTRY 1
#define XEN_ELFNOTE_HYPERCALL_PAGE 2
#define XEN_ELFNOTE_VIRT_BASE 3
#define XEN_ELFNOTE_PADDR_OFFSET 4
#define XEN_ELFNOTE_XEN_VERSION 5
#define XEN_ELFNOTE_GUEST_OS 6
#define XEN_ELFNOTE_GUEST_VERSION 7
#define XEN_ELFNOTE_LOADER 8
#define XEN_ELFNOTE_FEATURES 10

#define VIRT_BASE 0xffffffff80000000

// One note: namesz, descsz, type, "Xen\0", then the desc, padded to 4 bytes.
.macro note_begin type
        .p2align 2
        .long 4, 2f - 1f, \type
        .asciz "Xen"
1:
.endm
.macro note_end
2:      .p2align 2
.endm

        .section .note.Xen, "a", @note
        note_begin XEN_ELFNOTE_GUEST_OS
        .asciz "ptkit"
        note_end
        note_begin XEN_ELFNOTE_GUEST_VERSION
        .asciz "0"
        note_end
        note_begin XEN_ELFNOTE_XEN_VERSION
        .asciz "xen-3.0"
        note_end
        note_begin XEN_ELFNOTE_LOADER
        .asciz "generic"
        note_end
        // Virtual = pseudo-physical + VIRT_BASE: the image's first byte is
        // pseudo-physical 0 (p_paddr = p_vaddr, so PADDR_OFFSET = VIRT_BASE).
        note_begin XEN_ELFNOTE_VIRT_BASE
        .quad VIRT_BASE
        note_end
        note_begin XEN_ELFNOTE_PADDR_OFFSET
        .quad VIRT_BASE
        note_end
        note_begin XEN_ELFNOTE_ENTRY
        .quad _start
        note_end
        note_begin XEN_ELFNOTE_HYPERCALL_PAGE
        .quad hypercall_page
        note_end
        // No writable page tables (every entry goes through mmu_update), and
        // the L4 may sit above 4 GiB machine.
        note_begin XEN_ELFNOTE_FEATURES
        .asciz "!writable_page_tables|pae_pgdir_above_4gb"
        note_end

        .section .text.entry, "ax"
        .globl _start
_start:
        lea boot_stack_top(%rip), %rsp
        mov %rsi, %rdi              // start_info
        xor %ebp, %ebp
        call kmain
1:      jmp 1b                      // kmain exits through the debug-exit port

        // Xen writes one stub per hypercall here, 32 bytes apart, when it
        // builds the domain: hypercall n is `call hypercall_page + n * 32`.
        .section .text.hypercall, "ax"
        .p2align 12
        .globl hypercall_page
hypercall_page:
        .fill 4096, 1, 0xcc

        .section .bss.stack, "aw", @nobits
        .p2align 12
boot_stack:
        .skip 64 * 1024
boot_stack_top:
