/* The fixed guest ABI of an Ember microVM: where the VMM puts its few
 * system structures in guest memory, and which I/O ports the guest's exit
 * stubs use to talk to the VMM.
 *
 * Guest memory is one flat range [0, mem_size), identity-mapped: a guest
 * virtual address is its guest physical address.  The first 2 MiB hold the
 * VMM's structures, mapped with 4 KiB pages so each gets its own rights;
 * everything above is program memory, mapped user read/write/execute with
 * 2 MiB pages.  Page 0 is never mapped, so a null dereference faults.
 * Snapshots (a later issue) depend on this layout: change it only together
 * with the snapshot format version. */
#ifndef VMM_GUEST_LAYOUT_H
#define VMM_GUEST_LAYOUT_H

#include <stdint.h>

#define GUEST_PAGE_SIZE       0x1000ULL
#define GUEST_LARGE_PAGE_SIZE 0x200000ULL

#define GUEST_MEM_MIN (16ULL << 20)
#define GUEST_MEM_MAX (16ULL << 30)

/* Supervisor-only pages. */
#define GUEST_PML4_ADDR   0x1000ULL
#define GUEST_PDPT_ADDR   0x2000ULL
#define GUEST_LOW_PT_ADDR 0x3000ULL /* 4 KiB entries for the first 2 MiB */
#define GUEST_PD_ADDR     0x4000ULL /* 16 page directories: up to 16 GiB */
#define GUEST_PD_COUNT    16
#define GUEST_GDT_ADDR    0x14000ULL /* GDT, then the TSS in the same page */
#define GUEST_TSS_ADDR    0x14800ULL
#define GUEST_IDT_ADDR    0x15000ULL
#define GUEST_KSTACK_ADDR 0x16000ULL /* two pages of exception stack */
#define GUEST_KSTACK_TOP  0x18000ULL

/* User-readable, never writable pages. */
#define GUEST_STUB_ADDR     0x18000ULL /* syscall entry and exception stubs */
#define GUEST_VVAR_ADDR     0x19000ULL /* clock data page read by the vDSO */
#define GUEST_VDSO_ADDR     0x1a000ULL /* the vDSO image */
#define GUEST_VDSO_MAX_SIZE 0x8000ULL
#define GUEST_SYSTEM_END    0x200000ULL /* program memory starts here */

/* Offsets inside the stub page. */
#define GUEST_STUB_SYSCALL_OFFSET   0x000 /* out %al,$PORT_SYSCALL; sysretq */
#define GUEST_STUB_EXCEPTION_OFFSET 0x100 /* vector n at 0x100 + 4*n */
#define GUEST_STUB_EXCEPTION_STRIDE 4
#define GUEST_STUB_TOUCH_OFFSET     0x200 /* page toucher for warm restores (vm.c) */

/* I/O ports of the exit stubs.  A guest can issue any `out` itself, so a
 * port number alone proves nothing: the VMM also checks where it came from. */
#define PORT_SYSCALL        0x10
#define PORT_EXCEPTION_BASE 0x20 /* 0x20 + vector, vectors 0..31 */

/* Segment selectors, the same values Linux uses for 64-bit processes. */
#define GUEST_SEL_KERNEL_CS 0x10
#define GUEST_SEL_KERNEL_DS 0x18
#define GUEST_SEL_USER_DS   0x2b
#define GUEST_SEL_USER_CS   0x33
#define GUEST_SEL_TSS       0x40

#endif
