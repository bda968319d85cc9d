/* System calls about time.  Most clock reads never get here: the vDSO
 * serves them inside the guest.  These are the fallbacks, answered from
 * the same clock page so both agree, and the sleeps; a sleep is cut short
 * only by the VM's timeout.  (Absolute sleeps use the host's clocks, which
 * equal the guest's until snapshots add a monotonic offset.) */
#include <errno.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "syscalls.h"

static bool clock_allowed(int64_t clock)
{
	switch (clock) {
	case CLOCK_REALTIME:
	case CLOCK_MONOTONIC:
	case CLOCK_PROCESS_CPUTIME_ID:
	case CLOCK_THREAD_CPUTIME_ID:
	case CLOCK_MONOTONIC_RAW:
	case CLOCK_REALTIME_COARSE:
	case CLOCK_MONOTONIC_COARSE:
	case CLOCK_BOOTTIME: return true;
	default: return false;
	}
}

SYSCALL(clock_gettime)
{
	int64_t clock = (int64_t)(int32_t)args[0];
	if (!clock_allowed(clock))
		return -EINVAL;
	struct timespec ts;
	if (vmm_clock_guest_time(&process->clock, (clockid_t)clock, &ts) < 0)
		clock_gettime((clockid_t)clock, &ts); /* CPU-time clocks: the host's */
	return guest_copy_out(process, args[1], &ts, sizeof ts);
}

SYSCALL(clock_getres)
{
	int64_t clock = (int64_t)(int32_t)args[0];
	if (!clock_allowed(clock))
		return -EINVAL;
	struct timespec ts;
	clock_getres((clockid_t)clock, &ts);
	return args[1] ? guest_copy_out(process, args[1], &ts, sizeof ts) : 0;
}

SYSCALL(gettimeofday)
{
	if (args[0]) {
		struct timespec ts;
		if (vmm_clock_guest_time(&process->clock, CLOCK_REALTIME, &ts) < 0)
			clock_gettime(CLOCK_REALTIME, &ts);
		struct timeval tv = {ts.tv_sec, ts.tv_nsec / 1000};
		if (guest_copy_out(process, args[0], &tv, sizeof tv) < 0)
			return -EFAULT;
	}
	if (args[1]) {
		struct timezone tz = {0, 0};
		if (guest_copy_out(process, args[1], &tz, sizeof tz) < 0)
			return -EFAULT;
	}
	return 0;
}

SYSCALL(time)
{
	int64_t now = (int64_t)time(NULL);
	if (args[0] && guest_copy_out(process, args[0], &now, sizeof now) < 0)
		return -EFAULT;
	return now;
}

static int64_t sleep_on_host(struct vmm_process *process, int64_t clock, int flags, uint64_t req_addr,
			     uint64_t rem_addr)
{
	struct timespec request;
	if (guest_copy_in(process, &request, req_addr, sizeof request) < 0)
		return -EFAULT;
	if (request.tv_sec < 0 || request.tv_nsec < 0 || request.tv_nsec >= 1000000000)
		return -EINVAL;
	struct timespec remaining = request;
	for (;;) {
		int rc = clock_nanosleep((clockid_t)clock, flags, &remaining,
					 (flags & TIMER_ABSTIME) ? NULL : &remaining);
		if (rc == 0)
			return 0;
		if (rc != EINTR)
			return -rc;
		int64_t interrupted = guest_wait_interrupted(process);
		if (interrupted == -EINTR && rem_addr && !(flags & TIMER_ABSTIME))
			guest_copy_out(process, rem_addr, &remaining, sizeof remaining);
		if (interrupted)
			return interrupted; /* a restarted sleep starts over */
	}
}

SYSCALL(nanosleep)
{
	return sleep_on_host(process, CLOCK_MONOTONIC, 0, args[0], args[1]);
}

SYSCALL(clock_nanosleep)
{
	int64_t clock = (int64_t)(int32_t)args[0];
	if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC && clock != CLOCK_BOOTTIME)
		return clock_allowed(clock) ? -ENOTSUP : -EINVAL;
	if (args[1] & ~(uint64_t)TIMER_ABSTIME)
		return -EINVAL;
	return sleep_on_host(process, clock, (int)args[1], args[2], args[3]);
}
