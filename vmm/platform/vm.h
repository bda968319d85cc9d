/* One microVM as the VMM's kernel sees it: guest memory of a fixed size,
 * one vCPU's registers, and the platform that runs the guest's
 * instructions (platform.h: KVM, or seccomp traps in a stub process).
 *
 * Nothing above this header knows which platform runs.  Guest memory is
 * reached only through vmm_mem_read()/vmm_mem_write() (and the guest_*
 * helpers of syscalls.h built on them), which check every range: on KVM
 * they copy from the VMM's own mapping of guest memory, on systrap from the
 * stub process's.  Registers live in `regs`, valid from a stop until the
 * next run; whoever changes them calls vmm_vm_regs_changed().
 *
 * A failure here is a host fault: it is reported through `err`, and the
 * caller ends the process. */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct vmm_platform;
struct vmm_vvar;

/* The general registers, in the order and layout of struct kvm_regs. */
struct vmm_regs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rip, rflags;
};

struct vmm_vm {
	const struct vmm_platform *platform;
	void *impl;        /* the platform's own state (owned by it) */
	uint64_t mem_size; /* a multiple of 2 MiB */
	bool has_fsgsbase; /* the guest may use rdfsbase/wrfsbase (AT_HWCAP2) */
	struct vmm_regs regs;
	bool regs_dirty;        /* changed since the last stop: the platform writes them back */
	struct vmm_vvar *vvar;  /* the VMM's view of the clock page the vDSO reads */
	uint8_t *direct;        /* the VMM's own mapping of guest memory [0, mem_size), or NULL */
	bool memory_from_file;  /* restored: guest memory is a private mapping of a snapshot */
};

/* Returns 1 if [addr, addr+len) lies inside program memory (above the
 * VMM's system pages), 0 otherwise.  len 0 checks addr alone. */
int vmm_mem_in_program(const struct vmm_vm *vm, uint64_t addr, uint64_t len);

/* Copies between guest memory and the VMM.  The range must lie in guest
 * memory (`system` admits the VMM's system pages below 2 MiB, for the
 * VMM's own use; the system-call layer never passes it).  0, or -EFAULT
 * when the range is outside or the platform could not reach it. */
int vmm_mem_read(struct vmm_vm *vm, uint64_t addr, void *dst, size_t len, bool system);
int vmm_mem_write(struct vmm_vm *vm, uint64_t addr, const void *src, size_t len, bool system);

/* Makes [addr, addr+len) of program memory read as zero again and gives
 * its host pages back (munmap, MADV_DONTNEED).  Ranges outside program
 * memory are ignored. */
void vmm_mem_discard(struct vmm_vm *vm, uint64_t addr, uint64_t len);

/* A host pointer for [addr, addr+len) of program memory when the platform
 * maps guest memory into the VMM (KVM), else NULL: callers then copy.  For
 * bulk data only (file reads and writes), never for anything the VMM
 * validates, which must be copied once first. */
void *vmm_mem_direct(struct vmm_vm *vm, uint64_t addr, uint64_t len);

/* Formats the registers for a one-line reason, with rip and rsp as given
 * (an exception's own, which may differ from the registers'). */
void vmm_format_registers(const struct vmm_regs *regs, uint64_t rip, uint64_t rsp, char *out, size_t size);

/* Marks the registers changed, so that the platform loads them before the
 * guest runs again. */
static inline void vmm_vm_regs_changed(struct vmm_vm *vm)
{
	vm->regs_dirty = true;
}

#endif
