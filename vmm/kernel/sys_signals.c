/* System calls about signals.  Dispositions, the mask and the alternate
 * stack are recorded as Linux would keep them; signals the guest sends
 * itself take their default action.  Delivering a signal to a guest
 * handler (building a signal frame) is not supported yet: a signal whose
 * disposition is a handler ends the guest with that signal and says so. */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "syscalls.h"

#define KERNEL_SIGSET_SIZE      8
#define SIGNAL_STACK_MIN        2048
#define SIGNAL_STACK_AUTODISARM (1U << 31)

struct kernel_sigaction {
	uint64_t handler;
	uint64_t flags;
	uint64_t restorer;
	uint64_t mask;
};

static bool valid_signal(uint64_t signal)
{
	return signal >= 1 && signal <= VMM_SIGNAL_COUNT;
}

SYSCALL(rt_sigaction)
{
	uint64_t signal = args[0];
	if (args[3] != KERNEL_SIGSET_SIZE || !valid_signal(signal))
		return -EINVAL;
	struct kernel_sigaction new_action;
	if (args[1]) {
		if (signal == SIGKILL || signal == SIGSTOP)
			return -EINVAL;
		if (guest_copy_in(process, &new_action, args[1], sizeof new_action) < 0)
			return -EFAULT;
	}
	struct vmm_signal_action *slot = &process->signal_actions[signal];
	if (args[2]) {
		struct kernel_sigaction old = {slot->handler, slot->flags, slot->restorer, slot->mask};
		if (guest_copy_out(process, args[2], &old, sizeof old) < 0)
			return -EFAULT;
	}
	if (args[1]) {
		slot->handler = new_action.handler;
		slot->flags = new_action.flags;
		slot->restorer = new_action.restorer;
		slot->mask = new_action.mask;
	}
	return 0;
}

SYSCALL(rt_sigprocmask)
{
	if (args[3] != KERNEL_SIGSET_SIZE)
		return -EINVAL;
	uint64_t set = 0;
	if (args[1]) {
		if (args[0] != SIG_BLOCK && args[0] != SIG_UNBLOCK && args[0] != SIG_SETMASK)
			return -EINVAL;
		if (guest_copy_in(process, &set, args[1], sizeof set) < 0)
			return -EFAULT;
	}
	if (args[2] && guest_copy_out(process, args[2], &process->signal_mask, sizeof set) < 0)
		return -EFAULT;
	if (args[1]) {
		uint64_t unblockable = (1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1));
		if (args[0] == SIG_BLOCK)
			process->signal_mask |= set;
		else if (args[0] == SIG_UNBLOCK)
			process->signal_mask &= ~set;
		else
			process->signal_mask = set;
		process->signal_mask &= ~unblockable;
	}
	return 0;
}

SYSCALL(rt_sigreturn)
{
	(void)args;
	vmm_process_kill(process, SIGSEGV, "rt_sigreturn without a signal frame");
	return 0;
}

SYSCALL(sigaltstack)
{
	if (args[1] && guest_copy_out(process, args[1], process->altstack, sizeof process->altstack) < 0)
		return -EFAULT;
	if (args[0]) {
		uint64_t stack[3];
		if (guest_copy_in(process, stack, args[0], sizeof stack) < 0)
			return -EFAULT;
		uint32_t flags = (uint32_t)stack[1];
		if (flags & ~(uint32_t)(SS_DISABLE | SIGNAL_STACK_AUTODISARM))
			return -EINVAL;
		if (!(flags & SS_DISABLE) && stack[2] < SIGNAL_STACK_MIN)
			return -ENOMEM;
		memcpy(process->altstack, stack, sizeof stack);
	}
	return 0;
}

/* Signals whose default action is to do nothing. */
static bool ignored_by_default(uint64_t signal)
{
	return signal == SIGCHLD || signal == SIGURG || signal == SIGWINCH || signal == SIGCONT;
}

static int64_t send_to_self(struct vmm_process *process, uint64_t signal)
{
	if (signal == 0)
		return 0;
	if (!valid_signal(signal))
		return -EINVAL;
	uint64_t handler = process->signal_actions[signal].handler;
	if (handler == (uint64_t)(uintptr_t)SIG_IGN && signal != SIGKILL && signal != SIGSTOP)
		return 0;
	if (handler == (uint64_t)(uintptr_t)SIG_DFL) {
		if (ignored_by_default(signal))
			return 0;
		vmm_process_kill(process, (int)signal, "the guest sent itself signal %llu",
				 (unsigned long long)signal);
		return 0;
	}
	vmm_process_kill(process, (int)signal,
			 "the guest sent itself signal %llu, which it handles; delivery to a guest handler "
			 "is not supported",
			 (unsigned long long)signal);
	return 0;
}

SYSCALL(kill)
{
	int64_t pid = (int64_t)(int32_t)args[0];
	if (pid != VMM_GUEST_PID && pid != 0 && pid != -1)
		return -ESRCH;
	return send_to_self(process, args[1]);
}

SYSCALL(tgkill)
{
	if ((int64_t)(int32_t)args[0] != VMM_GUEST_PID || (int64_t)(int32_t)args[1] != VMM_GUEST_PID)
		return (int32_t)args[0] <= 0 || (int32_t)args[1] <= 0 ? -EINVAL : -ESRCH;
	return send_to_self(process, args[2]);
}

SYSCALL(tkill)
{
	if ((int64_t)(int32_t)args[0] != VMM_GUEST_PID)
		return (int32_t)args[0] <= 0 ? -EINVAL : -ESRCH;
	return send_to_self(process, args[1]);
}

SYSCALL(rt_sigpending)
{
	if (args[1] != KERNEL_SIGSET_SIZE)
		return -EINVAL;
	uint64_t none = 0;
	return guest_copy_out(process, args[0], &none, sizeof none);
}
