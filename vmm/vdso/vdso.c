/* Ember's vDSO: the small shared object the VMM maps into every guest at
 * GUEST_VDSO_ADDR and names in AT_SYSINFO_EHDR, so that glibc answers
 * clock_gettime, gettimeofday, time, clock_getres and getcpu without
 * leaving the VM (each exit costs tens of microseconds).  Time comes from
 * the guest's own rdtsc and the clock data page (struct vmm_vvar) that the
 * VMM keeps one page below this image; see vvar.h for the formula.
 *
 * This code runs inside the guest, at user level, in whatever program
 * called it.  It must never use libc, writable data, a GOT or anything else
 * a dynamic loader would have to relocate; it must never trust the data
 * page to be ready (version 0 or an unknown version means "ask the VMM"),
 * and it must never spin forever on the page's sequence counter.  Whatever
 * it cannot answer it passes to the real system call, which the VMM serves,
 * and it returns what that call returned (a negative errno on failure), as
 * Linux's vDSO does. */
#include <stddef.h>
#include <stdint.h>

#include "vdso/vvar.h"

/* Linux x86-64 ABI types and numbers; no libc headers in a freestanding
 * build. */
struct vdso_timespec {
	int64_t tv_sec;
	int64_t tv_nsec;
};

struct vdso_timeval {
	int64_t tv_sec;
	int64_t tv_usec;
};

struct vdso_timezone {
	int tz_minuteswest;
	int tz_dsttime;
};

enum {
	CLOCK_ID_REALTIME = 0,
	CLOCK_ID_MONOTONIC = 1,
	CLOCK_ID_MONOTONIC_RAW = 4,
	CLOCK_ID_REALTIME_COARSE = 5,
	CLOCK_ID_MONOTONIC_COARSE = 6,
	CLOCK_ID_BOOTTIME = 7,
};

enum {
	SYSCALL_GETTIMEOFDAY = 96,
	SYSCALL_TIME = 201,
	SYSCALL_CLOCK_GETTIME = 228,
	SYSCALL_CLOCK_GETRES = 229,
};

#define NANOSECONDS_PER_SECOND 1000000000LL

/* How many times a reader retries while the VMM is rewriting the page before
 * it gives up and asks the VMM instead. */
#define SEQUENCE_RETRIES 64

/* The clock data page, exactly one page below this image's ELF header.  The
 * linker script defines the symbol; being hidden, it is reached
 * PC-relative, with no relocation. */
extern const volatile struct vmm_vvar vmm_vdso_vvar __attribute__((visibility("hidden")));

/* The entry points, declared here because nothing else declares them. */
int __vdso_clock_gettime(int clock_id, struct vdso_timespec *ts);
int __vdso_gettimeofday(struct vdso_timeval *tv, struct vdso_timezone *tz);
int64_t __vdso_time(int64_t *result);
int __vdso_clock_getres(int clock_id, struct vdso_timespec *res);
long __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused_cache);

/* The real system call, served by the VMM.  The kernel ABI clobbers rcx and
 * r11; "memory" because the call writes through its pointer arguments. */
static inline long vdso_syscall2(long number, long first, long second)
{
	long result;
	__asm__ volatile("syscall"
			 : "=a"(result)
			 : "a"(number), "D"(first), "S"(second)
			 : "rcx", "r11", "memory");
	return result;
}

/* rdtsc that does not run ahead of the loads before it, so a later call
 * never reads an earlier counter value than an earlier call did. */
static inline uint64_t vdso_read_tsc(void)
{
	uint32_t low, high;
	__asm__ volatile("lfence; rdtsc" : "=a"(low), "=d"(high) : : "memory");
	return ((uint64_t)high << 32) | low;
}

static inline void vdso_compiler_barrier(void)
{
	__asm__ volatile("" : : : "memory");
}

enum vdso_base { BASE_REALTIME, BASE_MONOTONIC };

/* Reads one clock from the data page into *nanoseconds.  Returns 0, or -1
 * when the page is not ready or keeps changing (the caller then makes the
 * system call).  The TSC delta is taken as signed so that a guest counter a
 * little behind tsc_base reads a little before the base instant, instead of
 * a huge value. */
static inline int vdso_read_nanoseconds(enum vdso_base base, int64_t *nanoseconds)
{
	const volatile struct vmm_vvar *page = &vmm_vdso_vvar;
	for (int attempt = 0; attempt < SEQUENCE_RETRIES; attempt++) {
		uint32_t sequence = page->seq;
		vdso_compiler_barrier();
		if (sequence & 1) {
			__asm__ volatile("pause");
			continue;
		}
		if (page->version != VMM_VVAR_VERSION)
			return -1;
		uint64_t tsc_base = page->tsc_base;
		uint64_t tsc_mult = page->tsc_mult;
		uint32_t tsc_shift = page->tsc_shift;
		int64_t base_ns = base == BASE_REALTIME ? page->realtime_base_ns : page->monotonic_base_ns;
		uint64_t tsc = vdso_read_tsc();
		vdso_compiler_barrier();
		if (page->seq != sequence)
			continue;
		int64_t delta = (int64_t)(tsc - tsc_base);
		__int128 scaled = (__int128)delta * (__int128)tsc_mult;
		*nanoseconds = base_ns + (int64_t)(scaled >> tsc_shift);
		return 0;
	}
	return -1;
}

/* Splits nanoseconds into seconds and a nanosecond part in [0, 1e9). */
static inline void vdso_split(int64_t nanoseconds, int64_t *seconds, int64_t *remainder)
{
	int64_t whole = nanoseconds / NANOSECONDS_PER_SECOND;
	int64_t part = nanoseconds % NANOSECONDS_PER_SECOND;
	if (part < 0) {
		part += NANOSECONDS_PER_SECOND;
		whole -= 1;
	}
	*seconds = whole;
	*remainder = part;
}

/* Which base a clock id reads, or -1 for clocks the page cannot serve
 * (CPU-time clocks, TAI, alarms, dynamic clocks, invalid ids). */
static inline int vdso_clock_base(int clock_id)
{
	switch (clock_id) {
	case CLOCK_ID_REALTIME:
	case CLOCK_ID_REALTIME_COARSE: return BASE_REALTIME;
	case CLOCK_ID_MONOTONIC:
	case CLOCK_ID_MONOTONIC_RAW:
	case CLOCK_ID_MONOTONIC_COARSE:
	case CLOCK_ID_BOOTTIME: /* the guest never suspends */ return BASE_MONOTONIC;
	default: return -1;
	}
}

int __vdso_clock_gettime(int clock_id, struct vdso_timespec *ts)
{
	int base = vdso_clock_base(clock_id);
	int64_t nanoseconds;
	/* A null ts goes to the system call, which answers EFAULT. */
	if (base < 0 || ts == NULL || vdso_read_nanoseconds((enum vdso_base)base, &nanoseconds) < 0)
		return (int)vdso_syscall2(SYSCALL_CLOCK_GETTIME, clock_id, (long)ts);
	vdso_split(nanoseconds, &ts->tv_sec, &ts->tv_nsec);
	return 0;
}

int __vdso_gettimeofday(struct vdso_timeval *tv, struct vdso_timezone *tz)
{
	if (tv != NULL) {
		int64_t nanoseconds, remainder;
		if (vdso_read_nanoseconds(BASE_REALTIME, &nanoseconds) < 0)
			return (int)vdso_syscall2(SYSCALL_GETTIMEOFDAY, (long)tv, (long)tz);
		vdso_split(nanoseconds, &tv->tv_sec, &remainder);
		tv->tv_usec = remainder / 1000;
	}
	if (tz != NULL) {
		/* The guest's kernel time zone is always UTC, no DST. */
		tz->tz_minuteswest = 0;
		tz->tz_dsttime = 0;
	}
	return 0;
}

int64_t __vdso_time(int64_t *result)
{
	int64_t nanoseconds, seconds, remainder;
	if (vdso_read_nanoseconds(BASE_REALTIME, &nanoseconds) < 0)
		return vdso_syscall2(SYSCALL_TIME, (long)result, 0);
	vdso_split(nanoseconds, &seconds, &remainder);
	if (result != NULL)
		*result = seconds;
	return seconds;
}

int __vdso_clock_getres(int clock_id, struct vdso_timespec *res)
{
	/* Every clock the page serves, coarse ones included, is computed from
	 * the TSC to the nanosecond. */
	if (vdso_clock_base(clock_id) < 0)
		return (int)vdso_syscall2(SYSCALL_CLOCK_GETRES, clock_id, (long)res);
	if (res != NULL) {
		res->tv_sec = 0;
		res->tv_nsec = 1;
	}
	return 0;
}

long __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused_cache)
{
	(void)unused_cache;
	/* One vCPU, one NUMA node, as far as the guest can tell. */
	if (cpu != NULL)
		*cpu = 0;
	if (node != NULL)
		*node = 0;
	return 0;
}

/* The unprefixed names Linux's vDSO also exports, for programs that look
 * the vDSO up themselves. */
int clock_gettime(int clock_id, struct vdso_timespec *ts)
	__attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct vdso_timeval *tv, struct vdso_timezone *tz)
	__attribute__((weak, alias("__vdso_gettimeofday")));
int64_t time(int64_t *result) __attribute__((weak, alias("__vdso_time")));
int clock_getres(int clock_id, struct vdso_timespec *res) __attribute__((weak, alias("__vdso_clock_getres")));
long getcpu(unsigned *cpu, unsigned *node, void *unused_cache) __attribute__((weak, alias("__vdso_getcpu")));
