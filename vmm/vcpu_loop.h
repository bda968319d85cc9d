/* The vCPU loop: runs the guest until it exits, is killed, times out, or
 * the host fails, turning every VM exit into a system call, a signal or an
 * error.  Owns the timeout timer. */
#ifndef VMM_VCPU_LOOP_H
#define VMM_VCPU_LOOP_H

#include "process.h"

/* Arms a one-shot timeout of `seconds` (0 = none) that stops the vCPU and
 * interrupts blocking host calls.  -1 with err on failure. */
int vmm_timeout_arm(struct vmm_process *process, double seconds, struct ember_error *err);

/* Runs until the guest ends.  Returns 0 with process->exit_kind set, or -1
 * with err for a host failure (exit_kind is then VMM_EXIT_HOST_ERROR). */
int vmm_vcpu_run(struct vmm_process *process, struct ember_error *err);

#endif
