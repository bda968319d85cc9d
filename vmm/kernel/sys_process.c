/* System calls about the process itself: identity, limits, exit, thread
 * set-up glibc performs at start, randomness, futexes of a single-threaded
 * program.  The guest is always pid 1 with one thread. */
#include <errno.h>
#include <linux/futex.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/times.h>
#include <sys/utsname.h>
#include <string.h>
#include <time.h>

#include "platform.h"
#include "syscalls.h"

#define ARCH_SET_GS           0x1001
#define ARCH_SET_FS           0x1002
#define ARCH_GET_FS           0x1003
#define ARCH_GET_GS           0x1004
#define ARCH_GET_CPUID        0x1011
#define CANONICAL_LIMIT       (1ULL << 47)
#define ROBUST_LIST_HEAD_SIZE 24
#define GETRANDOM_MAX         (32ULL << 20)

static int64_t end_guest(struct vmm_process *process, uint64_t status)
{
	process->exit_kind = VMM_EXIT_STATUS;
	process->exit_status = (int)(status & 0xff);
	return 0;
}

SYSCALL(exit)
{
	return end_guest(process, args[0]);
}
SYSCALL(exit_group)
{
	return end_guest(process, args[0]);
}

SYSCALL(getpid)
{
	(void)process;
	(void)args;
	return VMM_GUEST_PID;
}
SYSCALL(gettid)
{
	(void)process;
	(void)args;
	return VMM_GUEST_PID;
}
SYSCALL(getppid)
{
	(void)process;
	(void)args;
	return 0;
}
SYSCALL(getuid)
{
	(void)process;
	(void)args;
	return VMM_GUEST_UID;
}
SYSCALL(getpgrp)
{
	(void)process;
	(void)args;
	return VMM_GUEST_PID;
}

SYSCALL(uname)
{
	struct utsname name;
	memset(&name, 0, sizeof name);
	strcpy(name.sysname, "Linux");
	strcpy(name.nodename, "ember");
	strcpy(name.release, "6.1.0-ember");
	strcpy(name.version, "#1 SMP Ember microVM");
	strcpy(name.machine, "x86_64");
	strcpy(name.domainname, "(none)");
	return guest_copy_out(process, args[0], &name, sizeof name);
}

SYSCALL(sysinfo)
{
	struct sysinfo info;
	memset(&info, 0, sizeof info);
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	info.uptime = now.tv_sec;
	struct vmm_memory_map *mm = &process->mm;
	uint64_t used = mm->mapped_bytes + mm->extra_bytes + (mm->brk_current - mm->brk_start);
	info.totalram = mm->limit_bytes;
	info.freeram = used < mm->limit_bytes ? mm->limit_bytes - used : 0;
	info.sharedram = mm->extra_bytes;
	info.procs = 1;
	info.mem_unit = 1;
	return guest_copy_out(process, args[0], &info, sizeof info);
}

SYSCALL(arch_prctl)
{
	uint64_t code = args[0], addr = args[1];
	struct ember_error err;
	switch (code) {
	case ARCH_SET_FS:
	case ARCH_SET_GS:
		if (addr >= CANONICAL_LIMIT)
			return -EPERM;
		if (process->vm.platform->set_segment_base(&process->vm, code == ARCH_SET_GS, addr, &err) < 0)
			return -EINVAL;
		*(code == ARCH_SET_GS ? &process->gs_base : &process->fs_base) = addr;
		return 0;
	case ARCH_GET_FS: return guest_copy_out(process, addr, &process->fs_base, sizeof process->fs_base);
	case ARCH_GET_GS: return guest_copy_out(process, addr, &process->gs_base, sizeof process->gs_base);
	case ARCH_GET_CPUID: return 1;
	default: return -EINVAL;
	}
}

SYSCALL(set_tid_address)
{
	process->tid_address = args[0];
	return VMM_GUEST_PID;
}

SYSCALL(set_robust_list)
{
	(void)process;
	return args[1] == ROBUST_LIST_HEAD_SIZE ? 0 : -EINVAL;
}

static void limit_of(struct vmm_process *process, unsigned resource, struct rlimit *limit)
{
	limit->rlim_cur = limit->rlim_max = RLIM_INFINITY;
	switch (resource) {
	case RLIMIT_STACK:
		limit->rlim_cur = limit->rlim_max = process->mm.stack_top - process->mm.stack_low;
		break;
	case RLIMIT_NOFILE: limit->rlim_cur = limit->rlim_max = VMM_FD_MAX; break;
	case RLIMIT_AS:
	case RLIMIT_DATA: limit->rlim_cur = limit->rlim_max = process->mm.limit_bytes; break;
	case RLIMIT_NPROC: limit->rlim_cur = limit->rlim_max = 1; break;
	case RLIMIT_CORE: limit->rlim_cur = limit->rlim_max = 0; break;
	default: break;
	}
}

SYSCALL(prlimit64)
{
	int64_t pid = (int64_t)(int32_t)args[0];
	if (pid != 0 && pid != VMM_GUEST_PID)
		return -ESRCH;
	if (args[1] >= RLIM_NLIMITS)
		return -EINVAL;
	if (args[2]) {
		struct rlimit wanted;
		if (guest_copy_in(process, &wanted, args[2], sizeof wanted) < 0)
			return -EFAULT;
		if (wanted.rlim_cur > wanted.rlim_max)
			return -EINVAL;
		/* Limits are fixed by the VM; lowering is accepted, not enforced further. */
	}
	if (args[3]) {
		struct rlimit limit;
		limit_of(process, (unsigned)args[1], &limit);
		return guest_copy_out(process, args[3], &limit, sizeof limit);
	}
	return 0;
}

SYSCALL(getrlimit)
{
	if (args[0] >= RLIM_NLIMITS)
		return -EINVAL;
	struct rlimit limit;
	limit_of(process, (unsigned)args[0], &limit);
	return guest_copy_out(process, args[1], &limit, sizeof limit);
}

SYSCALL(getrusage)
{
	int64_t who = (int64_t)(int32_t)args[0];
	if (who != RUSAGE_SELF && who != RUSAGE_CHILDREN && who != RUSAGE_THREAD)
		return -EINVAL;
	struct rusage usage;
	memset(&usage, 0, sizeof usage);
	if (who != RUSAGE_CHILDREN)
		getrusage(RUSAGE_SELF, &usage);
	return guest_copy_out(process, args[1], &usage, sizeof usage);
}

SYSCALL(times)
{
	struct tms t;
	clock_t ticks = times(&t);
	memset(&t, 0, sizeof t);
	if (args[0] && guest_copy_out(process, args[0], &t, sizeof t) < 0)
		return -EFAULT;
	return ticks;
}

static int64_t move_random(struct vmm_process *process, void *context, void *buf, size_t len, uint64_t done)
{
	(void)process, (void)context, (void)done;
	size_t got = 0;
	while (got < len) {
		ssize_t n = getrandom((uint8_t *)buf + got, len - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return got ? (int64_t)got : -errno;
		}
		got += (size_t)n;
	}
	return (int64_t)got;
}

SYSCALL(getrandom)
{
	uint64_t len = args[1], flags = args[2];
	if (flags & ~(uint64_t)(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE))
		return -EINVAL;
	if (len > GETRANDOM_MAX)
		len = GETRANDOM_MAX;
	struct guest_io io = {.move = move_random, .to_guest = true, .piecewise = true};
	return guest_io(process, &io, args[0], len);
}

SYSCALL(sched_getaffinity)
{
	int64_t pid = (int64_t)(int32_t)args[0];
	if (pid != 0 && pid != VMM_GUEST_PID)
		return -ESRCH;
	if (args[1] < sizeof(uint64_t) || (args[1] & 7))
		return -EINVAL;
	uint64_t mask = 1; /* one vCPU */
	int rc = guest_copy_out(process, args[2], &mask, sizeof mask);
	return rc < 0 ? rc : (int64_t)sizeof mask;
}

SYSCALL(sched_yield)
{
	(void)process;
	(void)args;
	return 0;
}

SYSCALL(getcpu)
{
	uint32_t zero = 0; /* one vCPU, one node */
	if (args[0] && guest_copy_out(process, args[0], &zero, sizeof zero) < 0)
		return -EFAULT;
	if (args[1] && guest_copy_out(process, args[1], &zero, sizeof zero) < 0)
		return -EFAULT;
	return 0;
}

SYSCALL(futex)
{
	int op = (int)args[1] & FUTEX_CMD_MASK;
	switch (op) {
	case FUTEX_WAIT:
	case FUTEX_WAIT_BITSET: {
		uint32_t current;
		if (args[0] & 3)
			return -EINVAL;
		if (guest_copy_in(process, &current, args[0], sizeof current) < 0)
			return -EFAULT;
		if (current != (uint32_t)args[2])
			return -EAGAIN;
		/* One thread: nobody can wake us.  Honour a timeout, else wait for ours. */
		if (args[3]) {
			struct timespec ts;
			if (guest_copy_in(process, &ts, args[3], sizeof ts) < 0)
				return -EFAULT;
			if (ts.tv_sec < 0 || ts.tv_nsec < 0 || ts.tv_nsec >= 1000000000)
				return -EINVAL;
			int flags = op == FUTEX_WAIT_BITSET ? TIMER_ABSTIME : 0;
			clockid_t clock =
				((int)args[1] & FUTEX_CLOCK_REALTIME) ? CLOCK_REALTIME : CLOCK_MONOTONIC;
			while (clock_nanosleep(clock, flags, &ts, flags ? NULL : &ts) == EINTR) {
				int64_t interrupted = guest_wait_interrupted(process);
				if (interrupted)
					return interrupted;
			}
			return -ETIMEDOUT;
		}
		int64_t interrupted;
		while ((interrupted = guest_wait_interrupted(process)) == 0)
			pause();
		return interrupted;
	}
	case FUTEX_WAKE:
	case FUTEX_WAKE_BITSET:
		return guest_check(process, args[0], 4);
	default: return -ENOSYS;
	}
}

SYSCALL(prctl)
{
	switch ((int)args[0]) {
	case PR_SET_NAME: {
		char name[16];
		int rc = guest_string(process, args[1], name, sizeof name);
		if (rc == -ENAMETOOLONG) {
			if (guest_copy_in(process, name, args[1], sizeof name - 1) < 0)
				return -EFAULT;
			name[15] = '\0';
		} else if (rc < 0) {
			return rc;
		}
		memcpy(process->thread_name, name, sizeof name);
		return 0;
	}
	case PR_GET_NAME:
		return guest_copy_out(process, args[1], process->thread_name, sizeof process->thread_name);
	case PR_SET_PDEATHSIG:
	case PR_SET_DUMPABLE:
	case PR_SET_NO_NEW_PRIVS: return 0;
	case PR_GET_DUMPABLE: return 0;
	default: return -EINVAL;
	}
}
