/* One KVM virtual machine with one vCPU, set up to run a Linux program in
 * 64-bit user mode with no guest kernel (see guest_layout.h for the map).
 *
 * vm.c owns the KVM file descriptors, the guest memory mapping and the
 * system structures (page tables, GDT, TSS, IDT, exit stubs).  Guest memory
 * is reached only through vmm_gpa(), which checks every range: the rest of
 * the VMM never adds offsets to `mem` itself.  A failure here is a host
 * fault: it is reported through `err`, and the caller ends the process. */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct vmm_vm {
	int kvm_fd;
	int vm_fd;
	int vcpu_fd;
	struct kvm_run *run; /* the vCPU's shared run page (sync regs live here) */
	size_t run_size;
	uint8_t *mem;      /* host mapping of guest memory [0, mem_size) */
	uint64_t mem_size; /* a multiple of 2 MiB */
	bool sync_regs;    /* KVM_CAP_SYNC_REGS: registers travel in `run` */
	bool has_fsgsbase;
	bool memory_from_file;      /* restored: guest memory is a private file mapping */
	struct kvm_cpuid2 *cpuid;   /* the table given to KVM_SET_CPUID2 (owned) */
	struct kvm_regs regs_cache; /* used when sync regs are unavailable */
	bool regs_dirty;
};

struct snap_vcpu;

/* Creates the VM, its memory (mem_size bytes, rounded up to 2 MiB, between
 * GUEST_MEM_MIN and GUEST_MEM_MAX), its vCPU and the system structures, and
 * copies `vdso` (vdso_size bytes) into place.  The vCPU is left in user mode
 * with no entry point: call vmm_vm_set_user_entry() before running it.
 * On failure returns -1 with `err` set and leaves nothing open. */
int vmm_vm_create(struct vmm_vm *vm, uint64_t mem_size, const void *vdso, size_t vdso_size,
		  struct ember_error *err);

/* Creates a VM whose memory is `mem_fd` (mem_size bytes) mapped
 * MAP_PRIVATE, copy-on-write, nothing read up front; the vCPU gets the
 * saved state (registers, special registers, FPU/XSAVE, XCRs, MSRs, CPUID
 * table).  The state must have been validated by snap_state_decode(). */
int vmm_vm_restore(struct vmm_vm *vm, int mem_fd, uint64_t mem_size, const struct snap_vcpu *state,
		   struct ember_error *err);

/* Captures the vCPU's state for a snapshot, after completing any pending
 * exit so the state is consistent.  The vCPU must be stopped. */
int vmm_vm_save_vcpu(struct vmm_vm *vm, struct snap_vcpu *state, struct ember_error *err);

struct vmm_touch_range {
	uint64_t first; /* guest page number */
	uint64_t pages;
	bool write; /* write each byte back (breaks copy-on-write, makes the page writable) */
};

/* Runs a tiny guest routine (in the stub page) that touches the given
 * pages from inside the guest, so that the host's and KVM's mappings of
 * them exist before the guest's own code needs them; then puts the vCPU's
 * registers back exactly.  Guest memory is not changed.  For restored,
 * not yet resumed VMs.  Pages outside program memory are skipped.  Returns
 * -1 if the routine did not complete (the registers are still restored). */
int vmm_vm_guest_touch(struct vmm_vm *vm, const struct vmm_touch_range *ranges, size_t count);

/* Releases everything vmm_vm_create() made.  Safe on a zeroed struct. */
void vmm_vm_destroy(struct vmm_vm *vm);

/* Sets the registers a Linux process has at its first instruction. */
int vmm_vm_set_user_entry(struct vmm_vm *vm, uint64_t rip, uint64_t rsp, struct ember_error *err);

/* Returns the host address of guest range [addr, addr+len) if it lies
 * entirely inside program memory (above the VMM's system pages), else NULL.
 * Every guest pointer the system-call layer touches goes through here.
 * len == 0 is allowed and checks only that addr is in range. */
void *vmm_gpa(struct vmm_vm *vm, uint64_t addr, uint64_t len);

/* Like vmm_gpa() but also admits the system pages; for the VMM's own use
 * (reading an exception frame, writing the clock page). */
void *vmm_gpa_system(struct vmm_vm *vm, uint64_t addr, uint64_t len);

/* Register access that works with and without sync regs.  The get returns
 * the registers of the last exit; after changing them call put. */
struct kvm_regs *vmm_vm_regs(struct vmm_vm *vm);
void vmm_vm_regs_changed(struct vmm_vm *vm);
int vmm_vm_get_sregs(struct vmm_vm *vm, struct kvm_sregs *sregs, struct ember_error *err);
/* Sets the FS (gs=false) or GS base, as arch_prctl does. */
int vmm_vm_set_segment_base(struct vmm_vm *vm, bool gs, uint64_t base, struct ember_error *err);

/* Refreshes the register cache after KVM_RUN returned (no-op with sync regs). */
int vmm_vm_fetch_regs(struct vmm_vm *vm, struct ember_error *err);
/* Pushes changed registers before the next KVM_RUN (no-op with sync regs). */
int vmm_vm_flush_regs(struct vmm_vm *vm, struct ember_error *err);

#endif
