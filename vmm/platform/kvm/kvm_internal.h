/* What the two halves of the KVM platform share: kvm_vm.c makes, restores,
 * saves and releases the VM; kvm_run.c runs its vCPU and decodes exits.
 * Nothing outside platform/kvm includes this. */
#ifndef VMM_KVM_INTERNAL_H
#define VMM_KVM_INTERNAL_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>

#include "platform.h"

struct kvm_vm_state {
	int kvm_fd;
	int vm_fd;
	int vcpu_fd;
	struct kvm_run *run; /* the vCPU's shared run page (sync regs live here) */
	size_t run_size;
	uint8_t *mem;             /* the VMM's mapping of guest memory */
	bool sync_regs;           /* KVM_CAP_SYNC_REGS: registers travel in `run` */
	struct kvm_cpuid2 *cpuid; /* the table given to KVM_SET_CPUID2 (owned) */
	bool stub_mode_known;        /* has the first system call been seen? */
	bool stub_runs_in_user_mode; /* PVM: the syscall stub keeps the user CS */
};

static inline struct kvm_vm_state *kvm_state(struct vmm_vm *vm)
{
	return vm->impl;
}

/* Loads vm->regs into the vCPU if they changed (kvm_run.c). */
int kvm_flush_regs(struct vmm_vm *vm, struct ember_error *err);
/* Reads the vCPU's registers into vm->regs after KVM_RUN returned. */
int kvm_fetch_regs(struct vmm_vm *vm, struct ember_error *err);

int kvm_available(struct ember_error *err);
int kvm_create(struct vmm_vm *vm, const void *vdso, size_t vdso_size, struct ember_error *err);
int kvm_restore(struct vmm_vm *vm, int mem_fd, const struct snap_vcpu *state, struct ember_error *err);
int kvm_save(struct vmm_vm *vm, struct snap_vcpu *state, struct snap_cpu_identity *cpu,
	     struct ember_error *err);
void kvm_destroy(struct vmm_vm *vm);
int kvm_set_entry(struct vmm_vm *vm, uint64_t rip, uint64_t rsp, struct ember_error *err);
int kvm_set_segment_base(struct vmm_vm *vm, bool gs, uint64_t base, struct ember_error *err);
int kvm_guest_touch(struct vmm_vm *vm, const struct vmm_touch_range *ranges, size_t count);

#endif
