/* The system pages of guest_layout.h — page tables, GDT, TSS, IDT and the
 * exit stubs — and the special registers and MSRs that go with them: the
 * CPU state of a kernel-less Ember guest as KVM runs it.
 *
 * KVM needs them to run the guest at all.  The systrap platform builds them
 * too, in the VMM's copy of the first 2 MiB, so that a snapshot taken on
 * either platform restores on the other: the state file and the memory
 * file always describe the same machine. */
#ifndef VMM_GUEST_SYSTEM_H
#define VMM_GUEST_SYSTEM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "guest_layout.h"

#define MSR_STAR           0xc0000081
#define MSR_LSTAR          0xc0000082
#define MSR_CSTAR          0xc0000083
#define MSR_SFMASK         0xc0000084
#define MSR_FS_BASE        0xc0000100
#define MSR_GS_BASE        0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102

#define GUEST_SYSTEM_MSR_COUNT 7

/* The stub's `sysretq` follows its 2-byte `out`: a vCPU stopped there has
 * handled its system call and returns to rcx with flags r11. */
#define GUEST_STUB_SYSRET_ADDR (GUEST_STUB_ADDR + GUEST_STUB_SYSCALL_OFFSET + 2)

/* Writes the page tables for mem_size bytes, the GDT, TSS, IDT and exit
 * stubs into `low`, the host view of guest addresses [0, 2 MiB). */
void vmm_guest_system_build(uint8_t *low, uint64_t mem_size);

/* The special registers of a guest in user mode under these structures. */
void vmm_guest_system_sregs(struct kvm_sregs *sregs, bool fsgsbase);

/* The syscall MSRs and the segment bases, FS and GS as given. */
void vmm_guest_system_msrs(struct kvm_msr_entry entries[GUEST_SYSTEM_MSR_COUNT], uint64_t fs_base,
			   uint64_t gs_base);

/* Host XCR0 reduced to the states user code may use (x87, SSE, AVX,
 * AVX-512); 0 without XSAVE. */
uint64_t vmm_guest_system_xcr0(void);

#endif
