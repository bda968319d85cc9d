/* Guest test of the clocks: clock_gettime through glibc (which uses the
 * VMM's vDSO) against the raw system call, monotonic time never going back,
 * the sleeps (nanosleep, clock_nanosleep) lasting at least what was asked,
 * gettimeofday and time agreeing with CLOCK_REALTIME, and the error paths.
 *
 * Usage: time [HOST_EPOCH_SECONDS] — when given, CLOCK_REALTIME must be
 * within a few seconds of the host's clock at launch. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "guest_test.h"

static long long ns_of(const struct timespec *t)
{
	return (long long)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static long long raw_now(clockid_t clock)
{
	struct timespec t = { 0, 0 };
	if (sys(SYS_clock_gettime, clock, &t) != 0)
		return -1;
	return ns_of(&t);
}

static long long libc_now(clockid_t clock)
{
	struct timespec t = { 0, 0 };
	if (clock_gettime(clock, &t) != 0)
		return -1;
	return ns_of(&t);
}

static long long llabs_(long long v)
{
	return v < 0 ? -v : v;
}

static void compare_clock(const char *name_ok, const char *name_close, clockid_t clock,
			  long long tolerance_ns)
{
	long long a = libc_now(clock);
	long long b = raw_now(clock);
	long long c = libc_now(clock);
	CHECKF(name_ok, a > 0 && b > 0 && c > 0, "libc %lld raw %lld", a, b);
	/* The raw reading must fall between the two vDSO readings, give or
	 * take the tolerance (coarse clocks tick in jiffies). */
	CHECKF(name_close, b >= a - tolerance_ns && b <= c + tolerance_ns,
	       "vdso %lld, raw %lld, vdso %lld", a, b, c);
}

static void test_vdso_against_syscall(void)
{
	const unsigned char *vdso = (const unsigned char *)getauxval(AT_SYSINFO_EHDR);
	CHECK("vdso: present", vdso && memcmp(vdso, "\177ELF", 4) == 0);
	compare_clock("clock: REALTIME", "clock: REALTIME vdso matches syscall", CLOCK_REALTIME,
		      1000000);
	compare_clock("clock: MONOTONIC", "clock: MONOTONIC vdso matches syscall", CLOCK_MONOTONIC,
		      1000000);
	compare_clock("clock: BOOTTIME", "clock: BOOTTIME vdso matches syscall", CLOCK_BOOTTIME,
		      1000000);
	compare_clock("clock: MONOTONIC_RAW", "clock: MONOTONIC_RAW vdso matches syscall",
		      CLOCK_MONOTONIC_RAW, 1000000);
	compare_clock("clock: REALTIME_COARSE", "clock: REALTIME_COARSE close to syscall",
		      CLOCK_REALTIME_COARSE, 20000000);
	compare_clock("clock: MONOTONIC_COARSE", "clock: MONOTONIC_COARSE close to syscall",
		      CLOCK_MONOTONIC_COARSE, 20000000);
	long long rt = libc_now(CLOCK_REALTIME), mono = libc_now(CLOCK_MONOTONIC);
	long long boot = libc_now(CLOCK_BOOTTIME);
	CHECKF("clock: BOOTTIME not behind MONOTONIC", boot + 1000000 >= mono, "boot %lld mono %lld",
	       boot, mono);
	CHECKF("clock: REALTIME after 2024", rt / 1000000000LL > 1704067200LL, "got %lld s",
	       rt / 1000000000LL);
	struct timespec cpu;
	CHECK_OK("clock: PROCESS_CPUTIME_ID", sys(SYS_clock_gettime, CLOCK_PROCESS_CPUTIME_ID, &cpu));
	CHECK_OK("clock: THREAD_CPUTIME_ID", sys(SYS_clock_gettime, CLOCK_THREAD_CPUTIME_ID, &cpu));

	struct timespec t;
	CHECK_ERR("clock: unknown clock EINVAL (syscall)", sys(SYS_clock_gettime, 1000, &t), EINVAL);
	errno = 0;
	CHECK("clock: unknown clock EINVAL (libc)", clock_gettime(1000, &t) == -1 && errno == EINVAL);
	CHECK_ERR("clock: bad pointer EFAULT", sys(SYS_clock_gettime, CLOCK_MONOTONIC, GT_OUTSIDE),
		  EFAULT);
	CHECK_ERR("clock: NULL pointer EFAULT", sys(SYS_clock_gettime, CLOCK_MONOTONIC, 0), EFAULT);

	struct timespec res = { 99, 99 };
	CHECK_OK("getres: MONOTONIC (syscall)", sys(SYS_clock_getres, CLOCK_MONOTONIC, &res));
	CHECKF("getres: MONOTONIC at most 1 ms", res.tv_sec == 0 && res.tv_nsec > 0 &&
						     res.tv_nsec <= 1000000,
	       "got %ld.%09ld", (long)res.tv_sec, (long)res.tv_nsec);
	res = (struct timespec){ 99, 99 };
	CHECK("getres: REALTIME (libc)", clock_getres(CLOCK_REALTIME, &res) == 0 && res.tv_sec == 0);
	CHECK_ERR("getres: unknown clock EINVAL", sys(SYS_clock_getres, 1000, &res), EINVAL);
}

static void test_monotonic(void)
{
	long long prev = libc_now(CLOCK_MONOTONIC);
	long backwards = 0, first_bad = 0;
	for (int i = 0; i < 200000; i++) {
		long long now = (i % 200 == 0) ? raw_now(CLOCK_MONOTONIC) : libc_now(CLOCK_MONOTONIC);
		if (now < prev) {
			if (!backwards)
				first_bad = i;
			backwards++;
		}
		prev = now;
	}
	CHECKF("monotonic: never goes back", backwards == 0, "%ld steps back, first at %ld",
	       backwards, first_bad);
	long long coarse_prev = libc_now(CLOCK_MONOTONIC_COARSE);
	backwards = 0;
	for (int i = 0; i < 100000; i++) {
		long long now = libc_now(CLOCK_MONOTONIC_COARSE);
		backwards += now < coarse_prev;
		coarse_prev = now;
	}
	CHECKF("monotonic: coarse never goes back", backwards == 0, "%ld steps back", backwards);

	/* The vDSO answers without leaving the VM: 200,000 readings take a few
	 * milliseconds; 200,000 exits would take seconds. */
	long long t0 = raw_now(CLOCK_MONOTONIC);
	for (int i = 0; i < 200000; i++)
		libc_now(CLOCK_MONOTONIC);
	long long t1 = raw_now(CLOCK_MONOTONIC);
	CHECKF("vdso: 200000 clock_gettime calls under 150 ms", t1 - t0 < 150000000LL,
	       "took %lld ms", (t1 - t0) / 1000000);
}

static void test_sleeps(void)
{
	struct timespec req = { 0, 50 * 1000 * 1000 }, rem = { 7, 7 };
	long long t0 = raw_now(CLOCK_MONOTONIC);
	long r = sys(SYS_nanosleep, &req, &rem);
	long long t1 = raw_now(CLOCK_MONOTONIC);
	CHECK_EQ("nanosleep: 50 ms returns 0", r, 0);
	CHECKF("nanosleep: took at least 50 ms", t1 - t0 >= 50000000LL, "took %lld us",
	       (t1 - t0) / 1000);
	CHECKF("nanosleep: took under 2 s", t1 - t0 < 2000000000LL, "took %lld ms",
	       (t1 - t0) / 1000000);
	t0 = libc_now(CLOCK_MONOTONIC);
	CHECK_EQ("nanosleep: libc usleep 20 ms", usleep(20000), 0);
	t1 = libc_now(CLOCK_MONOTONIC);
	CHECKF("nanosleep: usleep took at least 20 ms", t1 - t0 >= 20000000LL, "took %lld us",
	       (t1 - t0) / 1000);
	static const struct timespec zero = { 0, 0 }, nsec_too_big = { 0, 1000000000L };
	static const struct timespec negative = { -1, 0 }, nsec_negative = { 0, -1 };
	CHECK_EQ("nanosleep: zero duration", sys(SYS_nanosleep, &zero, NULL), 0);
	CHECK_ERR("nanosleep: tv_nsec 1e9 EINVAL", sys(SYS_nanosleep, &nsec_too_big, NULL), EINVAL);
	CHECK_ERR("nanosleep: negative EINVAL", sys(SYS_nanosleep, &negative, NULL), EINVAL);
	CHECK_ERR("nanosleep: bad pointer EFAULT", sys(SYS_nanosleep, GT_OUTSIDE, NULL), EFAULT);

	req = (struct timespec){ 0, 30 * 1000 * 1000 };
	t0 = raw_now(CLOCK_MONOTONIC);
	CHECK_EQ("clock_nanosleep: relative 30 ms", sys(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &req, NULL), 0);
	t1 = raw_now(CLOCK_MONOTONIC);
	CHECKF("clock_nanosleep: took at least 30 ms", t1 - t0 >= 30000000LL, "took %lld us",
	       (t1 - t0) / 1000);

	struct timespec target;
	clock_gettime(CLOCK_MONOTONIC, &target);
	target.tv_nsec += 40 * 1000 * 1000;
	if (target.tv_nsec >= 1000000000L) {
		target.tv_sec++;
		target.tv_nsec -= 1000000000L;
	}
	CHECK_EQ("clock_nanosleep: absolute +40 ms",
		 sys(SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, &target, NULL), 0);
	long long after = raw_now(CLOCK_MONOTONIC);
	CHECKF("clock_nanosleep: woke after the target", after >= ns_of(&target), "%lld ns early",
	       ns_of(&target) - after);
	struct timespec past = { 1, 0 };
	t0 = raw_now(CLOCK_MONOTONIC);
	CHECK_EQ("clock_nanosleep: absolute in the past",
		 sys(SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, &past, NULL), 0);
	t1 = raw_now(CLOCK_MONOTONIC);
	CHECKF("clock_nanosleep: past target returns at once", t1 - t0 < 100000000LL,
	       "took %lld ms", (t1 - t0) / 1000000);
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	rt.tv_nsec += 20 * 1000 * 1000;
	if (rt.tv_nsec >= 1000000000L) {
		rt.tv_sec++;
		rt.tv_nsec -= 1000000000L;
	}
	CHECK_EQ("clock_nanosleep: REALTIME absolute",
		 sys(SYS_clock_nanosleep, CLOCK_REALTIME, TIMER_ABSTIME, &rt, NULL), 0);
	CHECKF("clock_nanosleep: REALTIME woke after target", raw_now(CLOCK_REALTIME) >= ns_of(&rt),
	       "early");
	CHECK_ERR("clock_nanosleep: unknown clock EINVAL",
		  sys(SYS_clock_nanosleep, 1000, 0, &req, NULL), EINVAL);
	CHECK_ERR("clock_nanosleep: bad nsec EINVAL",
		  sys(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &nsec_negative, NULL),
		  EINVAL);
	CHECK_ERR("clock_nanosleep: bad pointer EFAULT",
		  sys(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, GT_OUTSIDE, NULL), EFAULT);
}

static void test_wall_clock(long long host_epoch)
{
	struct timeval tv;
	struct timespec ts;
	CHECK_OK("gettimeofday: libc", gettimeofday(&tv, NULL));
	clock_gettime(CLOCK_REALTIME, &ts);
	long long diff = llabs_(ns_of(&ts) - ((long long)tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL));
	CHECKF("gettimeofday: libc within 10 ms of REALTIME", diff < 10000000LL, "off by %lld us",
	       diff / 1000);
	CHECK_OK("gettimeofday: syscall", sys(SYS_gettimeofday, &tv, NULL));
	clock_gettime(CLOCK_REALTIME, &ts);
	diff = llabs_(ns_of(&ts) - ((long long)tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL));
	CHECKF("gettimeofday: syscall within 10 ms of REALTIME", diff < 10000000LL,
	       "off by %lld us", diff / 1000);
	CHECKF("gettimeofday: usec in range", tv.tv_usec >= 0 && tv.tv_usec < 1000000, "got %ld",
	       (long)tv.tv_usec);
	CHECK_ERR("gettimeofday: bad pointer EFAULT", sys(SYS_gettimeofday, GT_OUTSIDE, NULL), EFAULT);
	CHECK_OK("gettimeofday: NULL timeval allowed", sys(SYS_gettimeofday, NULL, NULL));

	time_t now = time(NULL);
	clock_gettime(CLOCK_REALTIME, &ts);
	CHECKF("time: libc matches REALTIME seconds", llabs_((long long)now - ts.tv_sec) <= 1,
	       "time %lld, REALTIME %lld", (long long)now, (long long)ts.tv_sec);
	time_t t2 = 0;
	long raw = sys(SYS_time, &t2);
	CHECKF("time: syscall matches", raw == (long)t2 && llabs_(raw - ts.tv_sec) <= 1,
	       "returned %ld, stored %ld", raw, (long)t2);

	if (host_epoch > 0) {
		long long guest = ns_of(&ts) / 1000000000LL;
		CHECKF("time: REALTIME within 5 s of the host", llabs_(guest - host_epoch) <= 5,
		       "guest %lld, host %lld", guest, host_epoch);
	} else {
		CHECK("time: REALTIME within 5 s of the host", 1);
	}

	int cpu = sched_getcpu();
	CHECKF("getcpu: a CPU number", cpu >= 0 && cpu < 4096, "got %d", cpu);
	unsigned rawcpu = 9999;
	CHECK_OK("getcpu: syscall", sys(SYS_getcpu, &rawcpu, NULL, NULL));
	CHECKF("getcpu: syscall CPU number", rawcpu < 4096, "got %u", rawcpu);
}

int main(int argc, char **argv)
{
	long long host_epoch = argc > 1 ? atoll(argv[1]) : 0;
	test_vdso_against_syscall();
	test_monotonic();
	test_sleeps();
	test_wall_clock(host_epoch);
	return gt_done();
}
