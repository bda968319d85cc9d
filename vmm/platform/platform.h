/* The platform interface: how the guest's instructions run, behind one
 * table of functions chosen once per VM.  Everything above it — the
 * system-call layer, the file layers, the memory map, snapshots, the vDSO
 * and its clock page — is the same on every platform.
 *
 *   kvm      the guest runs at CPL3 in a KVM VM with no guest kernel; its
 *            `syscall` and CPU exceptions exit to the VMM through one-`out`
 *            stubs (platform/kvm).
 *   systrap  the guest runs alone in a stub process of the VMM's making,
 *            under a seccomp filter that turns every system call into a
 *            SIGSYS whose handler hands the registers to the VMM through
 *            shared memory and a futex (platform/systrap), as gVisor's
 *            systrap platform does.
 *
 * A platform owns vm->impl.  run() returns at the next stop with vm->regs
 * filled in; the caller handles the stop and may change vm->regs (then
 * vmm_vm_regs_changed()); the next run() loads them.  Every register and
 * byte a stop reports comes from the guest and is treated as hostile. */
#ifndef VMM_PLATFORM_H
#define VMM_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "vm.h"

struct snap_vcpu;
struct snap_cpu_identity;

enum vmm_stop_kind {
	VMM_STOP_SYSCALL,     /* a system call: number in regs.rax, arguments in their registers */
	VMM_STOP_EXCEPTION,   /* a CPU exception: see vector and the fields below */
	VMM_STOP_FATAL,       /* the guest did something that ends it: signal and reason */
	VMM_STOP_INTERRUPTED, /* vmm_platform_interrupt() was called, or a spurious wake-up */
};

struct vmm_stop {
	enum vmm_stop_kind kind;
	/* EXCEPTION */
	unsigned vector; /* 0..31, as the x86 CPU numbers them */
	uint64_t error_code;
	uint64_t fault_address; /* CR2 for a page fault (vector 14) */
	bool has_fault_address;
	uint64_t rip, rsp; /* where the exception was raised */
	/* FATAL */
	int signal;
	char reason[256];
};

struct vmm_touch_range {
	uint64_t first; /* guest page number */
	uint64_t pages;
	bool write; /* write each byte back (breaks copy-on-write, makes the page writable) */
};

/* Where the guest clock's TSC comes from on this platform. */
struct vmm_tsc_source {
	uint64_t hz;           /* 0: unknown, the clock calibrates */
	const char *hz_source; /* what the frequency came from */
	int64_t offset;        /* guest TSC minus host TSC */
	const char *offset_source;
};

struct vmm_platform {
	const char *name; /* "kvm", "systrap" */

	/* 1 if this platform can run VMs on this host, else 0 with `err`
	 * saying why (for --platform auto and the test harness). */
	int (*available)(struct ember_error *err);

	/* A fresh VM: mem_size bytes of zeroed guest memory (a multiple of
	 * 2 MiB, checked by the caller), the system pages of guest_layout.h
	 * built and `vdso` copied into place.  No entry point yet. */
	int (*create)(struct vmm_vm *vm, const void *vdso, size_t vdso_size, struct ember_error *err);

	/* A VM whose memory is `mem_fd` (vm->mem_size bytes) mapped
	 * copy-on-write, nothing read up front, with the saved vCPU state
	 * (validated by snap_state_decode()). */
	int (*restore)(struct vmm_vm *vm, int mem_fd, const struct snap_vcpu *state, struct ember_error *err);

	/* Captures the vCPU for a snapshot.  The guest is stopped at a stop
	 * that has been fully handled. */
	int (*save)(struct vmm_vm *vm, struct snap_vcpu *state, struct snap_cpu_identity *cpu,
		    struct ember_error *err);

	/* Releases everything; safe after a failed create or restore. */
	void (*destroy)(struct vmm_vm *vm);

	/* Sets the registers a Linux process has at its first instruction. */
	int (*set_entry)(struct vmm_vm *vm, uint64_t rip, uint64_t rsp, struct ember_error *err);

	/* Runs the guest until its next stop.  -1 with err for a host failure. */
	int (*run)(struct vmm_vm *vm, struct vmm_stop *stop, struct ember_error *err);

	/* After a SYSCALL stop whose result is in regs.rax: returns the guest
	 * to the instruction after its `syscall`, or to the `syscall` itself
	 * when `restart`.  0; 1 when the guest cannot be resumed (a
	 * non-canonical return address), with fatal->signal and reason set;
	 * -1 with err for a host failure. */
	int (*syscall_return)(struct vmm_vm *vm, bool restart, struct vmm_stop *fatal, struct ember_error *err);

	/* Makes run() return VMM_STOP_INTERRUPTED soon.  Async-signal-safe:
	 * called from signal handlers, on any thread. */
	void (*interrupt)(struct vmm_vm *vm);

	/* Sets the FS (gs false) or GS base, as arch_prctl does. */
	int (*set_segment_base)(struct vmm_vm *vm, bool gs, uint64_t base, struct ember_error *err);

	/* Guest memory access for vmm_mem_read/write when vm->direct is NULL;
	 * the range is already checked.  0 or -EFAULT. */
	int (*read)(struct vmm_vm *vm, uint64_t addr, void *dst, size_t len);
	int (*write)(struct vmm_vm *vm, uint64_t addr, const void *src, size_t len);
	void (*discard)(struct vmm_vm *vm, uint64_t addr, uint64_t len);

	/* For snapshots: which pages of [addr, addr+pages*4 KiB) may hold data
	 * (vec[i] bit 0); pages never touched since a fresh start are known
	 * zero.  -1 if unknown (every page is then read). */
	int (*residency)(struct vmm_vm *vm, uint64_t addr, size_t pages, uint8_t *vec);

	/* Warm restores: maps the data pages of the snapshot in ahead
	 * (pretouch), and touches the hot pages from inside the guest.  Only
	 * speed: a platform may do nothing. */
	void (*pretouch)(struct vmm_vm *vm, int mem_fd);
	int (*touch)(struct vmm_vm *vm, const struct vmm_touch_range *ranges, size_t count);

	/* The guest's TSC: frequency and offset from the host's. */
	int (*tsc)(struct vmm_vm *vm, struct vmm_tsc_source *tsc, struct ember_error *err);

	/* Host memory that this VM costs: resident and private bytes of the
	 * VMM and its stub, and guest pages written since start or restore. */
	void (*memory_usage)(struct vmm_vm *vm, uint64_t *rss_bytes, uint64_t *private_bytes,
			     uint64_t *dirty_pages);
};

extern const struct vmm_platform vmm_platform_kvm;
extern const struct vmm_platform vmm_platform_systrap;

/* Picks the platform named `name` ("kvm", "systrap" or "auto": KVM where
 * /dev/kvm opens and works, systrap otherwise).  NULL with err when the
 * name is unknown or the named platform cannot run here. */
const struct vmm_platform *vmm_platform_choose(const char *name, struct ember_error *err);

/* Creates a fresh VM on `platform`: mem_size bytes (rounded up to 2 MiB,
 * between GUEST_MEM_MIN and GUEST_MEM_MAX) and the vDSO image copied into
 * place.  On failure -1 with err; nothing is left open. */
int vmm_vm_create(struct vmm_vm *vm, const struct vmm_platform *platform, uint64_t mem_size,
		  const void *vdso, size_t vdso_size, struct ember_error *err);

/* Restores a VM on `platform` from memory file `mem_fd` (mem_size bytes)
 * and a validated vCPU state. */
int vmm_vm_restore(struct vmm_vm *vm, const struct vmm_platform *platform, int mem_fd, uint64_t mem_size,
		   const struct snap_vcpu *state, struct ember_error *err);

/* Releases the VM; safe on a zeroed struct. */
void vmm_vm_destroy(struct vmm_vm *vm);

/* vm->platform->interrupt(vm) for whichever VM is running, from a signal
 * handler.  vmm_platform_set_running() names that VM. */
void vmm_platform_interrupt_running(void);
void vmm_platform_set_running(struct vmm_vm *vm);

#endif
