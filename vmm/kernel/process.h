/* The guest process: everything the VMM's small kernel keeps for the one
 * program running in a VM — its memory map, descriptor table, file layers,
 * working directory, signal state — and the system-call dispatcher that
 * serves it.
 *
 * The guest controls every register and every byte it hands over, so each
 * handler validates its arguments before use: pointers through the
 * guest_* helpers of syscalls.h (EFAULT), descriptors through the table (EBADF), everything else against
 * Linux's rules (EINVAL).  A guest's mistake gets an errno or ends the
 * guest; it never ends the VMM with anything but the guest's own status. */
#ifndef VMM_PROCESS_H
#define VMM_PROCESS_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "error.h"
#include "fdtable.h"
#include "file_layers.h"
#include "memory_map.h"
#include "vm.h"

#define VMM_SIGNAL_COUNT 64
#define VMM_GUEST_UID    1000
#define VMM_GUEST_PID    1

struct vmm_signal_action {
	uint64_t handler;
	uint64_t flags;
	uint64_t restorer;
	uint64_t mask;
};

/* How the guest's run ended. */
enum vmm_exit_kind {
	VMM_EXIT_RUNNING = 0,
	VMM_EXIT_STATUS,  /* exit/exit_group: `status` */
	VMM_EXIT_SIGNAL,  /* killed by signal `signal` */
	VMM_EXIT_TIMEOUT, /* --timeout expired */
	VMM_EXIT_HOST_ERROR,
	VMM_EXIT_QUIT, /* a `quit` on the control socket */
};

struct vmm_control;

struct vmm_process {
	struct vmm_vm vm;
	const struct vmm_platform *platform; /* chosen by --platform, before the VM exists */
	struct vmm_control *control;  /* the control socket, or NULL */
	const char *runtime_api_path; /* host Unix socket behind 127.0.0.1:9001, or NULL */
	bool pretouch;                /* restore: map the snapshot's pages in up front */
	const char *hot_pages_path;   /* restore: pages to copy ahead (see snapshot.c) */
	const char *restore_root;     /* restore: layers to use instead of the recorded ones */
	const char *restore_task;
	struct vmm_memory_map mm;
	struct vmm_fdtable fds;
	struct vmm_layers layers;
	struct vmm_clock clock;
	char cwd[4096]; /* absolute, normalized guest path */
	uint32_t umask;
	uint64_t tid_address;
	uint64_t fs_base, gs_base;
	char thread_name[16];
	uint64_t signal_mask;
	struct vmm_signal_action signal_actions[VMM_SIGNAL_COUNT + 1];
	uint64_t altstack[3];
	bool trace;
	bool restart_syscall;        /* the last call returned VMM_ERESTART */
	uint64_t syscall_count;
	void *scratch; /* the bounce buffer of guest_buffer_get() */
	size_t scratch_size;
	bool scratch_busy;

	enum vmm_exit_kind exit_kind;
	int exit_status;
	int exit_signal;
	char exit_reason[512];
};

/* Handles one system call: reads the number and arguments from the vCPU's
 * registers, dispatches, and writes the result to rax.  Sets exit_kind when
 * the call ends the guest. */
void vmm_syscall(struct vmm_process *process);

/* Ends the guest as if killed by `signal`, with a one-line reason. */
void vmm_process_kill(struct vmm_process *process, int signal, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Set by the timeout signal handler; checked wherever the VMM blocks. */
extern volatile sig_atomic_t vmm_timeout_expired;

/* Set by the control thread before it interrupts the vCPU thread: a
 * blocking system call then gives up with VMM_ERESTART, to be restarted
 * from the start after the pause, as Linux restarts an interrupted call. */
extern volatile sig_atomic_t vmm_interrupt_pending;

/* Internal result of a handler: "re-execute this system call later".  The
 * guest never sees it: the dispatcher rewinds to the `syscall` instruction. */
#define VMM_ERESTART 512

#endif
