/* What the halves of the systrap platform share: systrap_stub.c starts the
 * stub process and talks to it through the context area (events, replies,
 * commands, guest memory); systrap.c is the platform of platform.h on top.
 * Nothing outside platform/systrap includes this. */
#ifndef VMM_SYSTRAP_INTERNAL_H
#define VMM_SYSTRAP_INTERNAL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/ucontext.h>

#include "platform.h"
#include "stub_abi.h"

struct systrap_state {
	pid_t stub;                   /* the stub process, or -1 */
	int context_fd;               /* memfd of the context area */
	int system_fd;                /* memfd of the system pages [0, 2 MiB) */
	int pagemap_fd;               /* the stub's /proc/PID/pagemap, opened lazily, or -1 */
	uint8_t *context;             /* the VMM's mapping of the context area */
	struct stub_control *control; /* == context */
	uint8_t *system;              /* the VMM's mapping of the system pages */
	bool memory_from_file;
	bool use_fsgsbase;
	bool parked;        /* the stub waits in its handler: the frame below is valid */
	ucontext_t *frame;  /* the VMM's view of the parked handler's frame */
	uint8_t *fpstate;   /* its FPU/XSAVE area (in the context area) */
	uint32_t fp_bytes;  /* the XSAVE image's size (512 without XSAVE) */
	uint64_t fs_base, gs_base;
	bool bases_changed; /* load them at the next reply */
	bool exited;        /* the stub is gone (reaped) */
	int exit_status;    /* its wait status */
	volatile sig_atomic_t interrupt_requested;
};

static inline struct systrap_state *systrap_state(struct vmm_vm *vm)
{
	return vm->impl;
}

enum systrap_wait {
	SYSTRAP_EVENT,       /* an event is posted and validated: the stub is parked */
	SYSTRAP_INTERRUPTED, /* an interruption ends the wait before any event */
	SYSTRAP_DEAD,        /* the stub process is gone (st->exit_status) */
};

/* Makes the context area and the system pages, starts the stub on guest
 * memory `mem_fd` (or fresh memory when -1) and waits for its first event.
 * vm->impl must hold a zeroed state with the fds at -1. */
int systrap_start(struct vmm_vm *vm, int mem_fd, struct ember_error *err);

/* Kills and reaps the stub and releases everything. */
void systrap_stop(struct vmm_vm *vm);

/* Waits for the next event.  `stop_on_interrupt`: return INTERRUPTED as
 * soon as the timeout has fired instead of stopping the guest.  A posted
 * event whose frame does not lie where the stub's handler puts frames is
 * treated as the guest's corruption of the context area: the stub is
 * killed and DEAD returned. */
enum systrap_wait systrap_wait_event(struct vmm_vm *vm, struct ember_error *err);

/* Writes the registers back into the parked frame (if changed) and
 * resumes the guest. */
void systrap_reply(struct vmm_vm *vm);

/* Has the parked stub run madvise() on `count` ranges of its own memory;
 * 0, or -1 when it is not parked or died meanwhile. */
int systrap_advise(struct vmm_vm *vm, const uint64_t (*ranges)[2], size_t count, uint32_t advice);

/* Guest memory at or above 2 MiB through process_vm_readv/writev; the
 * system pages below through the VMM's own mapping.  0 or -EFAULT. */
int systrap_read(struct vmm_vm *vm, uint64_t addr, void *dst, size_t len);
int systrap_write(struct vmm_vm *vm, uint64_t addr, const void *src, size_t len);

/* The frame's general registers as struct vmm_regs, and back. */
void systrap_frame_to_regs(const ucontext_t *frame, struct vmm_regs *regs);
void systrap_regs_to_frame(const struct vmm_regs *regs, ucontext_t *frame);

#endif
