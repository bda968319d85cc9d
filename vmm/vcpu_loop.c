/* The vCPU loop of vcpu_loop.h.
 *
 * Exits come from the stubs of guest_layout.h: `out` to PORT_SYSCALL from
 * the syscall entry stub, `out` to PORT_EXCEPTION_BASE+vector from an
 * exception stub.  Because a guest can execute `out` itself (PVM lets user
 * code through the I/O bitmap like the stubs), an exit is trusted only for
 * what the registers say, and a port exit from anywhere but a stub kills the
 * guest with SIGSEGV, as the #GP Linux would raise.
 *
 * Returning from a system call: architecturally `syscall` enters CPL0 and
 * the stub's `sysretq` returns; under PVM the stub runs with the user CS,
 * so the VMM sets RIP and RFLAGS from RCX and R11 itself.  Which one applies
 * is read once, at the first system call. */
#include "vcpu_loop.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>

#include "control.h"
#include "guest_layout.h"

/* RFLAGS bits user code may set: CF PF AF ZF SF TF DF OF AC ID. */
#define USER_FLAGS_MASK 0x250fd5ULL
#define RFLAGS_FIXED    0x202ULL /* reserved bit 1 and IF */
#define CANONICAL_LIMIT (1ULL << 47)

volatile sig_atomic_t vmm_timeout_expired;
static struct kvm_run *volatile timeout_run;

static void on_timeout(int signal)
{
	(void)signal;
	vmm_timeout_expired = 1;
	struct kvm_run *run = timeout_run;
	if (run)
		run->immediate_exit = 1;
}

int vmm_timeout_arm(struct vmm_process *process, double seconds, struct ember_error *err)
{
	struct sigaction action;
	memset(&action, 0, sizeof action);
	action.sa_handler = on_timeout; /* no SA_RESTART: blocking host calls return EINTR */
	sigemptyset(&action.sa_mask);
	if (sigaction(SIGALRM, &action, NULL) < 0)
		return ember_error_errno(err, errno, "install the timeout handler");
	timeout_run = process->vm.run;
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

static bool vector_has_error_code(unsigned vector)
{
	return vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21 ||
	       vector == 29 || vector == 30;
}

static void format_registers(const struct kvm_regs *r, uint64_t rip, uint64_t rsp, char *out, size_t size)
{
	snprintf(out, size,
		 "rip=%#llx rsp=%#llx rax=%#llx rbx=%#llx rcx=%#llx rdx=%#llx rsi=%#llx rdi=%#llx "
		 "rbp=%#llx r8=%#llx r9=%#llx r10=%#llx r11=%#llx r12=%#llx r13=%#llx r14=%#llx r15=%#llx",
		 (unsigned long long)rip, (unsigned long long)rsp, (unsigned long long)r->rax,
		 (unsigned long long)r->rbx, (unsigned long long)r->rcx, (unsigned long long)r->rdx,
		 (unsigned long long)r->rsi, (unsigned long long)r->rdi, (unsigned long long)r->rbp,
		 (unsigned long long)r->r8, (unsigned long long)r->r9, (unsigned long long)r->r10,
		 (unsigned long long)r->r11, (unsigned long long)r->r12, (unsigned long long)r->r13,
		 (unsigned long long)r->r14, (unsigned long long)r->r15);
}

static void handle_exception(struct vmm_process *process, unsigned vector)
{
	struct kvm_regs *regs = vmm_vm_regs(&process->vm);
	int signal;
	const char *what = signal_for_vector(vector, &signal);
	/* The CPU pushed [error code,] RIP, CS, RFLAGS, RSP, SS on the exception stack. */
	uint64_t frame[6] = {0};
	uint64_t error_code = 0, rip = regs->rip, rsp = regs->rsp;
	const uint64_t *pushed = vmm_gpa_system(&process->vm, regs->rsp, sizeof frame);
	if (pushed && regs->rsp >= GUEST_KSTACK_ADDR && regs->rsp < GUEST_KSTACK_TOP) {
		memcpy(frame, pushed, sizeof frame);
		unsigned at = 0;
		if (vector_has_error_code(vector))
			error_code = frame[at++];
		rip = frame[at];
		rsp = frame[at + 3];
	}
	char address[96] = "";
	if (vector == 14) {
		struct kvm_sregs sregs;
		struct ember_error err;
		if (vmm_vm_get_sregs(&process->vm, &sregs, &err) == 0)
			snprintf(address, sizeof address, " at address %#llx (%s, %s)",
				 (unsigned long long)sregs.cr2,
				 (error_code & 2)    ? "write"
				 : (error_code & 16) ? "execute"
						     : "read",
				 (error_code & 1) ? "protection violation" : "not mapped");
	} else {
		snprintf(address, sizeof address, " at address %#llx", (unsigned long long)rip);
	}
	char registers[512];
	format_registers(regs, rip, rsp, registers, sizeof registers);
	vmm_process_kill(process, signal, "%s (vector %u)%s; %s", what, vector, address, registers);
}

static int syscall_return(struct vmm_process *process, struct ember_error *err)
{
	if (!process->stub_mode_known) {
		struct kvm_sregs sregs;
		if (vmm_vm_get_sregs(&process->vm, &sregs, err) < 0)
			return -1;
		process->stub_runs_in_user_mode = (sregs.cs.selector & 3) == 3;
		process->stub_mode_known = true;
	}
	struct kvm_regs *regs = vmm_vm_regs(&process->vm);
	if (regs->rcx >= CANONICAL_LIMIT) {
		vmm_process_kill(process, SIGSEGV, "system call returning to non-canonical address %#llx",
				 (unsigned long long)regs->rcx);
		return 0;
	}
	uint64_t flags = (regs->r11 & USER_FLAGS_MASK) | RFLAGS_FIXED;
	/* A restarted call returns to its own `syscall` instruction (2 bytes). */
	uint64_t resume_at = process->restart_syscall ? regs->rcx - 2 : regs->rcx;
	if (process->stub_runs_in_user_mode) {
		regs->rip = resume_at;
		regs->rflags = flags;
	} else {
		regs->rcx = resume_at; /* sysretq jumps to rcx... */
		regs->r11 = flags;     /* ...and loads RFLAGS from r11 */
	}
	vmm_vm_regs_changed(&process->vm);
	return 0;
}

/* True if the exit came from the `out` at stub offset `offset`: RIP is at
 * the instruction (hardware KVM) or just past it (PVM). */
static bool exit_from_stub(uint64_t rip, uint64_t offset)
{
	uint64_t at = GUEST_STUB_ADDR + offset;
	return rip == at || rip == at + 2;
}

static int handle_port_exit(struct vmm_process *process, struct ember_error *err)
{
	struct kvm_run *run = process->vm.run;
	struct kvm_regs *regs = vmm_vm_regs(&process->vm);
	unsigned port = run->io.port;
	if (run->io.direction == KVM_EXIT_IO_OUT && port == PORT_SYSCALL &&
	    exit_from_stub(regs->rip, GUEST_STUB_SYSCALL_OFFSET)) {
		vmm_syscall(process);
		if (process->exit_kind != VMM_EXIT_RUNNING)
			return 0;
		return syscall_return(process, err);
	}
	if (run->io.direction == KVM_EXIT_IO_OUT && port >= PORT_EXCEPTION_BASE &&
	    port < PORT_EXCEPTION_BASE + 32) {
		unsigned vector = port - PORT_EXCEPTION_BASE;
		if (exit_from_stub(regs->rip,
				   GUEST_STUB_EXCEPTION_OFFSET + GUEST_STUB_EXCEPTION_STRIDE * vector)) {
			handle_exception(process, vector);
			return 0;
		}
	}
	char registers[512];
	format_registers(regs, regs->rip, regs->rsp, registers, sizeof registers);
	vmm_process_kill(process, SIGSEGV,
			 "general protection fault: I/O port %#x access at address %#llx; %s", port,
			 (unsigned long long)regs->rip, registers);
	return 0;
}

int vmm_vcpu_run(struct vmm_process *process, struct ember_error *err)
{
	struct vmm_vm *vm = &process->vm;
	struct vmm_vvar *vvar = vmm_gpa_system(vm, GUEST_VVAR_ADDR, sizeof(struct vmm_vvar));
	while (process->exit_kind == VMM_EXIT_RUNNING) {
		if (vmm_interrupt_pending && process->control) {
			/* A safe point: the last exit is fully handled. */
			vmm_control_checkpoint(process->control);
			if (process->exit_kind != VMM_EXIT_RUNNING)
				break;
		}
		if (vmm_timeout_expired) {
			process->exit_kind = VMM_EXIT_TIMEOUT;
			break;
		}
		if (vmm_vm_flush_regs(vm, err) < 0)
			goto host_error;
		if (ioctl(vm->vcpu_fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vm->run->immediate_exit = 0;
				continue;
			}
			ember_error_errno(err, errno, "KVM_RUN");
			goto host_error;
		}
		if (vmm_vm_fetch_regs(vm, err) < 0)
			goto host_error;
		vmm_clock_maybe_refresh(&process->clock, vvar);
		switch (vm->run->exit_reason) {
		case KVM_EXIT_IO:
			if (handle_port_exit(process, err) < 0)
				goto host_error;
			break;
		case KVM_EXIT_SHUTDOWN:
			vmm_process_kill(process, SIGSEGV,
					 "triple fault (the CPU could not deliver an exception) at %#llx",
					 (unsigned long long)vmm_vm_regs(vm)->rip);
			break;
		case KVM_EXIT_HLT:
			vmm_process_kill(process, SIGSEGV, "halt in an exception stub at %#llx",
					 (unsigned long long)vmm_vm_regs(vm)->rip);
			break;
		case KVM_EXIT_MMIO:
			vmm_process_kill(process, SIGBUS, "access to non-memory address %#llx",
					 (unsigned long long)vm->run->mmio.phys_addr);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			vmm_process_kill(process, SIGILL,
					 "KVM could not emulate an instruction (internal error %u) at %#llx",
					 vm->run->internal.suberror,
					 (unsigned long long)vmm_vm_regs(vm)->rip);
			break;
		case KVM_EXIT_FAIL_ENTRY:
			ember_error_set(
				err, "KVM entry failed (hardware reason %#llx)",
				(unsigned long long)vm->run->fail_entry.hardware_entry_failure_reason);
			goto host_error;
		default:
			ember_error_set(err, "unexpected KVM exit reason %u", vm->run->exit_reason);
			goto host_error;
		}
	}
	return 0;
host_error:
	process->exit_kind = VMM_EXIT_HOST_ERROR;
	return ember_error_wrap(err, "run vCPU");
}
