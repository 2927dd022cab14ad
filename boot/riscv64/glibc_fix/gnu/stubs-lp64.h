/* Debian's riscv64 glibc is built for the lp64d ABI only, but libstdc++'s
 * headers (<compare>, <new>, <concepts>) include glibc's <gnu/stubs.h>,
 * which for the kernel's soft-float lp64 ABI asks for this file. It only
 * lists libc functions that are stubs; a freestanding kernel calls none. */
