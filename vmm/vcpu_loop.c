/* The vCPU loop of vcpu_loop.h: runs the guest on its platform until it
 * ends, turning every stop into a system call, a signal or an error.  It
 * does not know which platform runs: a stop is a system call, a CPU
 * exception, a fatal guest action the platform describes, or an
 * interruption (the timeout, the control socket). */
#include "vcpu_loop.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "control.h"
#include "guest_layout.h"
#include "platform.h"

volatile sig_atomic_t vmm_timeout_expired;

static void on_timeout(int signal)
{
	(void)signal;
	vmm_timeout_expired = 1;
	vmm_platform_interrupt_running();
}

int vmm_timeout_arm(struct vmm_process *process, double seconds, struct ember_error *err)
{
	struct sigaction action;
	memset(&action, 0, sizeof action);
	action.sa_handler = on_timeout; /* no SA_RESTART: blocking host calls return EINTR */
	sigemptyset(&action.sa_mask);
	if (sigaction(SIGALRM, &action, NULL) < 0)
		return ember_error_errno(err, errno, "install the timeout handler");
	vmm_platform_set_running(&process->vm);
	if (seconds <= 0)
		return 0;
	struct itimerval timer;
	memset(&timer, 0, sizeof timer);
	timer.it_value.tv_sec = (time_t)seconds;
	timer.it_value.tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6);
	if (timer.it_value.tv_sec == 0 && timer.it_value.tv_usec == 0)
		timer.it_value.tv_usec = 1;
	/* Then again every 20 ms: a signal that lands just before a blocking
	 * host call starts is not seen by it, the next one is. */
	timer.it_interval.tv_usec = 20000;
	if (setitimer(ITIMER_REAL, &timer, NULL) < 0)
		return ember_error_errno(err, errno, "arm the %.3f s timeout", seconds);
	return 0;
}

static const char *signal_for_vector(unsigned vector, int *signal)
{
	switch (vector) {
	case 0: *signal = SIGFPE; return "divide error";
	case 1: *signal = SIGTRAP; return "debug exception";
	case 3: *signal = SIGTRAP; return "breakpoint";
	case 4: *signal = SIGSEGV; return "overflow";
	case 5: *signal = SIGSEGV; return "bound range exceeded";
	case 6: *signal = SIGILL; return "invalid opcode";
	case 7: *signal = SIGSEGV; return "device not available";
	case 8: *signal = SIGSEGV; return "double fault";
	case 10: *signal = SIGSEGV; return "invalid TSS";
	case 11: *signal = SIGBUS; return "segment not present";
	case 12: *signal = SIGBUS; return "stack-segment fault";
	case 13: *signal = SIGSEGV; return "general protection fault";
	case 14: *signal = SIGSEGV; return "page fault";
	case 16: *signal = SIGFPE; return "x87 floating-point exception";
	case 17: *signal = SIGBUS; return "alignment check";
	case 18: *signal = SIGBUS; return "machine check";
	case 19: *signal = SIGFPE; return "SIMD floating-point exception";
	default: *signal = SIGSEGV; return "CPU exception";
	}
}

static void handle_exception(struct vmm_process *process, const struct vmm_stop *stop)
{
	int signal;
	const char *what = signal_for_vector(stop->vector, &signal);
	char address[96] = "";
	if (stop->vector == 14) {
		if (stop->has_fault_address)
			snprintf(address, sizeof address, " at address %#llx (%s, %s)",
				 (unsigned long long)stop->fault_address,
				 (stop->error_code & 2)    ? "write"
				 : (stop->error_code & 16) ? "execute"
							   : "read",
				 (stop->error_code & 1) ? "protection violation" : "not mapped");
	} else {
		snprintf(address, sizeof address, " at address %#llx", (unsigned long long)stop->rip);
	}
	char registers[512];
	vmm_format_registers(&process->vm.regs, stop->rip, stop->rsp, registers, sizeof registers);
	vmm_process_kill(process, signal, "%s (vector %u)%s; %s", what, stop->vector, address, registers);
}

int vmm_vcpu_run(struct vmm_process *process, struct ember_error *err)
{
	struct vmm_vm *vm = &process->vm;
	const struct vmm_platform *platform = vm->platform;
	vmm_platform_set_running(vm);
	while (process->exit_kind == VMM_EXIT_RUNNING) {
		if (vmm_interrupt_pending && process->control) {
			/* A safe point: the last stop is fully handled. */
			vmm_control_checkpoint(process->control);
			if (process->exit_kind != VMM_EXIT_RUNNING)
				break;
		}
		if (vmm_timeout_expired) {
			process->exit_kind = VMM_EXIT_TIMEOUT;
			break;
		}
		struct vmm_stop stop;
		if (platform->run(vm, &stop, err) < 0)
			goto host_error;
		vmm_clock_maybe_refresh(&process->clock, vm->vvar);
		switch (stop.kind) {
		case VMM_STOP_SYSCALL: {
			vmm_syscall(process);
			if (process->exit_kind != VMM_EXIT_RUNNING)
				break;
			int rc = platform->syscall_return(vm, process->restart_syscall, &stop, err);
			if (rc < 0)
				goto host_error;
			if (rc > 0)
				vmm_process_kill(process, stop.signal, "%s", stop.reason);
			break;
		}
		case VMM_STOP_EXCEPTION: handle_exception(process, &stop); break;
		case VMM_STOP_FATAL: vmm_process_kill(process, stop.signal, "%s", stop.reason); break;
		case VMM_STOP_INTERRUPTED: break;
		}
	}
	return 0;
host_error:
	process->exit_kind = VMM_EXIT_HOST_ERROR;
	return ember_error_wrap(err, "run vCPU");
}
