/* The control socket of one ember-vmm (protocol: control_protocol.h).
 *
 * A control thread accepts clients and parses their frames; commands that
 * need the vCPU (pause, resume, snapshot, quit) are handed to the vCPU
 * thread, which performs them at a safe point — between guest
 * instructions, or with an interrupted blocking system call rewound to be
 * restarted — and answers through the control thread.  stats is answered
 * by the control thread alone.  Without --control-sock none of this runs. */
#ifndef VMM_CONTROL_H
#define VMM_CONTROL_H

#include <pthread.h>
#include <stdbool.h>

#include "control_protocol.h"
#include "process.h"

struct vmm_control {
	struct vmm_process *process;
	int listen_fd;
	char socket_path[EMBER_CONTROL_PATH_MAX];
	pthread_t thread, vcpu_thread;
	bool thread_running;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	enum ember_control_vm_state state;
	/* The command handed to the vCPU thread, and its answer. */
	int command; /* 0 when none */
	char path[EMBER_CONTROL_PATH_MAX + 1];
	bool done;
	bool taken;         /* the vCPU thread has seen the command */
	bool reply_pending; /* a vCPU command's answer is not yet sent */
	int status;
	char message[EMBER_CONTROL_MESSAGE_MAX];
};

/* Installs the SIGUSR1 handler used to interrupt the vCPU thread (always,
 * even without a socket, so a stray SIGUSR1 cannot kill the VMM). */
int vmm_interrupt_install(struct ember_error *err);

/* Listens on `path` and starts the control thread.  With start_paused the
 * VM starts PAUSED: the vCPU thread waits for `resume` at its first
 * checkpoint.  The calling thread is taken to be the vCPU thread. */
int vmm_control_start(struct vmm_control *control, struct vmm_process *process, const char *path,
		      bool start_paused, struct ember_error *err);

/* Called by the vCPU thread when vmm_interrupt_pending is set (and once
 * before the first run): performs pending commands; while PAUSED it blocks
 * here serving them.  Sets process->exit_kind = VMM_EXIT_QUIT on quit. */
void vmm_control_checkpoint(struct vmm_control *control);

/* Marks the VM exited, stops the thread and removes the socket. */
void vmm_control_stop(struct vmm_control *control);

#endif
