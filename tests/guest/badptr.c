/* Hostile guest: system calls whose pointers lie outside guest memory, in
 * the VMM's system pages, across the end of memory, or whose lengths are
 * near 2^64 so that pointer + length wraps.  Each must fail with EFAULT,
 * EINVAL or ENOMEM (a few may legitimately succeed without touching the
 * bad range, as on Linux); none may crash the VMM, and after each one the
 * guest's own memory and the system-call stub must still be intact.
 *
 * Usage: badptr MEM_MIB — the --mem the VM was started with. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "guest_test.h"

#define MIB (1024UL * 1024UL)

/* Pointers that are never guest program memory. */
static const struct {
	const char *name;
	unsigned long addr;
} bad_pointers[] = {
	{ "null", 0 },
	{ "page 1 (page tables)", 0x1000 },
	{ "gdt", 0x14000 },
	{ "exception stack", 0x16000 },
	{ "stub page", 0x18000 },
	{ "clock page", 0x19000 },
	{ "vdso", 0x1a000 },
	{ "last system byte", 0x1fffff },
	{ "far outside", 0x7fff00000000UL },
	{ "top of user space", 0x7ffffffff000UL },
	{ "non-canonical", 0x8000000000000000UL },
	{ "kernel half", 0xffffffff80000000UL },
	{ "all ones", ~0UL },
};
#define BAD_COUNT (sizeof bad_pointers / sizeof bad_pointers[0])

/* Lengths near 2^64: with any real pointer, pointer + length wraps. */
static const unsigned long huge_lengths[] = {
	~0UL, ~0UL - 0xfff, 1UL << 63, (1UL << 63) + 1, 0x8000000000000000UL - 1, 1UL << 40,
};
#define HUGE_COUNT (sizeof huge_lengths / sizeof huge_lengths[0])

static unsigned char canary_before[4096];
static unsigned char buffer[4096];
static unsigned char canary_after[4096];
static unsigned long mem_bytes;

static int is_fault(long r)
{
	return r == -EFAULT || r == -EINVAL || r == -ENOMEM;
}

static void arm_canaries(void)
{
	memset(canary_before, 0xc3, sizeof canary_before);
	memset(canary_after, 0x3c, sizeof canary_after);
}

static int canaries_intact(void)
{
	for (size_t i = 0; i < sizeof canary_before; i++)
		if (canary_before[i] != 0xc3 || canary_after[i] != 0x3c)
			return 0;
	return 1;
}

/* One check over every bad pointer: call(ptr) must fail cleanly. */
#define FOR_BAD_POINTERS(label, call_expr)                                                  \
	do {                                                                                \
		int ok_ = 1;                                                                \
		char detail_[256] = "";                                                     \
		for (size_t i_ = 0; i_ < BAD_COUNT; i_++) {                                 \
			unsigned long bad = bad_pointers[i_].addr;                          \
			long r_ = (call_expr);                                              \
			if (!is_fault(r_) && ok_) {                                         \
				ok_ = 0;                                                    \
				snprintf(detail_, sizeof detail_, "%s (%#lx) returned %ld", \
					 bad_pointers[i_].name, bad, r_);                   \
			}                                                                   \
		}                                                                           \
		gt_report((label), ok_, detail_);                                           \
	} while (0)

/* One check over every huge length with a valid buffer. */
#define FOR_HUGE_LENGTHS(label, call_expr)                                                  \
	do {                                                                                \
		int ok_ = 1;                                                                \
		char detail_[256] = "";                                                     \
		arm_canaries();                                                             \
		for (size_t i_ = 0; i_ < HUGE_COUNT; i_++) {                                \
			unsigned long len = huge_lengths[i_];                               \
			long r_ = (call_expr);                                              \
			if (!is_fault(r_) && ok_) {                                         \
				ok_ = 0;                                                    \
				snprintf(detail_, sizeof detail_, "length %#lx returned %ld", \
					 len, r_);                                          \
			}                                                                   \
		}                                                                           \
		if (ok_ && !canaries_intact()) {                                            \
			ok_ = 0;                                                            \
			snprintf(detail_, sizeof detail_, "memory around the buffer changed"); \
		}                                                                           \
		gt_report((label), ok_, detail_);                                           \
	} while (0)

static void test_bad_pointers(void)
{
	long zero = sys(SYS_open, "/dev/zero", O_RDONLY);
	long tmp = sys(SYS_open, "/tmp/badptr", O_CREAT | O_RDWR | O_TRUNC, 0600);
	long task = sys(SYS_open, "/var/task/hello.txt", O_RDONLY);
	long dir = sys(SYS_open, "/var/task", O_RDONLY | O_DIRECTORY);
	int pfd[2];
	sys(SYS_pipe2, pfd, 0);
	sys(SYS_write, pfd[1], "0123456789", 10);
	sys(SYS_write, tmp, "some bytes for the file", 23);
	CHECK("setup: descriptors", zero >= 0 && tmp >= 0 && task >= 0 && dir >= 0);

	FOR_BAD_POINTERS("ptr: read /dev/zero into it", sys(SYS_read, zero, bad, 16));
	FOR_BAD_POINTERS("ptr: read a task file into it", sys(SYS_pread64, task, bad, 8, 0));
	FOR_BAD_POINTERS("ptr: read a /tmp file into it", sys(SYS_pread64, tmp, bad, 8, 0));
	FOR_BAD_POINTERS("ptr: read a pipe into it", sys(SYS_read, pfd[0], bad, 4));
	FOR_BAD_POINTERS("ptr: write it to /tmp", sys(SYS_write, tmp, bad, 16));
	FOR_BAD_POINTERS("ptr: write it to a pipe", sys(SYS_write, pfd[1], bad, 16));
	FOR_BAD_POINTERS("ptr: pwrite it to /tmp", sys(SYS_pwrite64, tmp, bad, 16, 0));
	FOR_BAD_POINTERS("ptr: writev iovec array", sys(SYS_writev, tmp, bad, 1));
	FOR_BAD_POINTERS("ptr: writev iov_base", ({
				 struct iovec v = { (void *)bad, 16 };
				 sys(SYS_writev, tmp, &v, 1);
			 }));
	FOR_BAD_POINTERS("ptr: readv iov_base", ({
				 struct iovec v = { (void *)bad, 16 };
				 sys(SYS_readv, zero, &v, 1);
			 }));
	FOR_BAD_POINTERS("ptr: open path", sys(SYS_open, bad, O_RDONLY));
	FOR_BAD_POINTERS("ptr: openat path", sys(SYS_openat, AT_FDCWD, bad, O_RDONLY));
	FOR_BAD_POINTERS("ptr: stat path", sys(SYS_newfstatat, AT_FDCWD, bad, buffer, 0));
	FOR_BAD_POINTERS("ptr: stat buffer",
			 sys(SYS_newfstatat, AT_FDCWD, "/var/task/hello.txt", bad, 0));
	FOR_BAD_POINTERS("ptr: fstat buffer", sys(SYS_fstat, task, bad));
	FOR_BAD_POINTERS("ptr: getdents buffer", sys(SYS_getdents64, dir, bad, 4096));
	FOR_BAD_POINTERS("ptr: readlink path", sys(SYS_readlink, bad, buffer, 64));
	FOR_BAD_POINTERS("ptr: readlink buffer", sys(SYS_readlink, "/proc/self/exe", bad, 64));
	FOR_BAD_POINTERS("ptr: access path", sys(SYS_access, bad, F_OK));
	FOR_BAD_POINTERS("ptr: chdir path", sys(SYS_chdir, bad));
	FOR_BAD_POINTERS("ptr: getcwd buffer", sys(SYS_getcwd, bad, 256));
	FOR_BAD_POINTERS("ptr: mkdir path", sys(SYS_mkdir, bad, 0700));
	FOR_BAD_POINTERS("ptr: unlink path", sys(SYS_unlink, bad));
	FOR_BAD_POINTERS("ptr: rename source", sys(SYS_rename, bad, "/tmp/x"));
	FOR_BAD_POINTERS("ptr: rename target", sys(SYS_rename, "/tmp/badptr", bad));
	FOR_BAD_POINTERS("ptr: pipe2 array", sys(SYS_pipe2, bad, 0));
	FOR_BAD_POINTERS("ptr: poll array", sys(SYS_poll, bad, 1, 0));
	FOR_BAD_POINTERS("ptr: ppoll timeout", ({
				 struct pollfd p = { .fd = pfd[0], .events = POLLIN };
				 bad == 0 ? -EFAULT : sys(SYS_ppoll, &p, 1, bad, NULL, 8);
			 }));
	FOR_BAD_POINTERS("ptr: uname", sys(SYS_uname, bad));
	FOR_BAD_POINTERS("ptr: clock_gettime", sys(SYS_clock_gettime, CLOCK_MONOTONIC, bad));
	FOR_BAD_POINTERS("ptr: clock_getres", bad == 0 ? -EFAULT : sys(SYS_clock_getres, CLOCK_MONOTONIC, bad));
	FOR_BAD_POINTERS("ptr: gettimeofday", bad == 0 ? -EFAULT : sys(SYS_gettimeofday, bad, NULL));
	FOR_BAD_POINTERS("ptr: nanosleep request", sys(SYS_nanosleep, bad, NULL));
	FOR_BAD_POINTERS("ptr: clock_nanosleep request",
			 sys(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, bad, NULL));
	FOR_BAD_POINTERS("ptr: getrandom", bad == 0 ? -EFAULT : sys(SYS_getrandom, bad, 16, 0));
	FOR_BAD_POINTERS("ptr: sched_getaffinity", sys(SYS_sched_getaffinity, 0, 128, bad));
	FOR_BAD_POINTERS("ptr: prlimit64 old", bad == 0 ? -EFAULT : sys(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, bad));
	FOR_BAD_POINTERS("ptr: rt_sigaction new", bad == 0 ? -EFAULT : sys(SYS_rt_sigaction, SIGUSR1, bad, NULL, 8));
	FOR_BAD_POINTERS("ptr: rt_sigaction old", bad == 0 ? -EFAULT : sys(SYS_rt_sigaction, SIGUSR1, NULL, bad, 8));
	FOR_BAD_POINTERS("ptr: rt_sigprocmask set", bad == 0 ? -EFAULT : sys(SYS_rt_sigprocmask, SIG_BLOCK, bad, NULL, 8));
	FOR_BAD_POINTERS("ptr: arch_prctl GET_FS", sys(SYS_arch_prctl, 0x1003, bad));
	FOR_BAD_POINTERS("ptr: write to stdout", bad == 0 ? -EFAULT : sys(SYS_write, 1, bad, 64));
	CHECK_EQ("after: system calls still work", sys(SYS_getpid), getpid());
	unsigned char probe[16];
	CHECK_EQ("after: /dev/zero still readable", sys(SYS_read, zero, probe, sizeof probe), 16);

	sys(SYS_close, zero);
	sys(SYS_close, tmp);
	sys(SYS_close, task);
	sys(SYS_close, dir);
	sys(SYS_close, pfd[0]);
	sys(SYS_close, pfd[1]);
}

static void test_huge_lengths(void)
{
	long zero = sys(SYS_open, "/dev/zero", O_RDONLY);
	long urandom = sys(SYS_open, "/dev/urandom", O_RDONLY);
	long tmp = sys(SYS_open, "/tmp/badptr", O_CREAT | O_RDWR | O_TRUNC, 0600);
	long task = sys(SYS_open, "/var/task/hello.txt", O_RDONLY);
	int pfd[2];
	sys(SYS_pipe2, pfd, O_NONBLOCK);
	sys(SYS_write, pfd[1], "0123456789", 10);

	FOR_HUGE_LENGTHS("len: read /dev/zero", sys(SYS_read, zero, buffer, len));
	FOR_HUGE_LENGTHS("len: read /dev/urandom", sys(SYS_read, urandom, buffer, len));
	FOR_HUGE_LENGTHS("len: read a task file", sys(SYS_pread64, task, buffer, len, 0));
	FOR_HUGE_LENGTHS("len: read a pipe", sys(SYS_read, pfd[0], buffer, len));
	FOR_HUGE_LENGTHS("len: write /tmp", sys(SYS_write, tmp, buffer, len));
	FOR_HUGE_LENGTHS("len: pwrite /tmp", sys(SYS_pwrite64, tmp, buffer, len, 0));
	FOR_HUGE_LENGTHS("len: write a pipe", sys(SYS_write, pfd[1], buffer, len));
	FOR_HUGE_LENGTHS("len: writev one iovec", ({
				 struct iovec v = { buffer, len };
				 sys(SYS_writev, tmp, &v, 1);
			 }));
	FOR_HUGE_LENGTHS("len: readv one iovec", ({
				 struct iovec v = { buffer, len };
				 sys(SYS_readv, zero, &v, 1);
			 }));
	FOR_HUGE_LENGTHS("len: mmap", sys(SYS_mmap, 0, len, PROT_READ | PROT_WRITE,
					  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
	FOR_HUGE_LENGTHS("len: mmap a file", sys(SYS_mmap, 0, len, PROT_READ, MAP_PRIVATE, task, 0));
	FOR_HUGE_LENGTHS("len: mprotect", sys(SYS_mprotect, (unsigned long)buffer & ~0xfffUL, len,
					      PROT_READ | PROT_WRITE));
	FOR_HUGE_LENGTHS("len: sigaction set size", sys(SYS_rt_sigaction, SIGUSR1, NULL, buffer, len));
	FOR_HUGE_LENGTHS("len: sigprocmask set size", sys(SYS_rt_sigprocmask, SIG_BLOCK, NULL, buffer, len));

	/* Two iovecs whose lengths sum past 2^64 (Linux: EINVAL). */
	arm_canaries();
	struct iovec two[2] = { { buffer, 1UL << 63 }, { buffer, 1UL << 63 } };
	long r = sys(SYS_writev, tmp, two, 2);
	CHECKF("len: iovec lengths that overflow", is_fault(r), "returned %ld", r);
	r = sys(SYS_readv, zero, two, 2);
	CHECKF("len: readv lengths that overflow", is_fault(r) && canaries_intact(), "returned %ld", r);
	struct iovec many[1100];
	for (int i = 0; i < 1100; i++)
		many[i] = (struct iovec){ buffer, 1 };
	CHECK_ERR("len: iovec count 2^32-1 EINVAL", sys(SYS_writev, tmp, buffer, 0xffffffffUL), EINVAL);
	CHECK_ERR("len: poll count 2^32-1 EINVAL", sys(SYS_poll, buffer, 0xffffffffUL, 0), EINVAL);
	CHECK_ERR("len: more than IOV_MAX iovecs EINVAL", sys(SYS_writev, tmp, many, 1100), EINVAL);

	/* Ranges that start in guest memory and run off its end. */
	unsigned long top = mem_bytes;
	for (unsigned long back = 8; back <= 4096; back *= 8) {
		char name[96];
		r = sys(SYS_pread64, task, top - back, 4096, 0);
		snprintf(name, sizeof name, "end: read across the end of memory (start %lu below)", back);
		CHECKF(name, is_fault(r) || (r >= 0 && (unsigned long)r <= back), "returned %ld", r);
		r = sys(SYS_write, tmp, top - back, 4096);
		snprintf(name, sizeof name, "end: write across the end of memory (start %lu below)", back);
		CHECKF(name, is_fault(r) || (r >= 0 && (unsigned long)r <= back), "returned %ld", r);
	}
	r = sys(SYS_read, zero, top, 1);
	CHECK_ERR("end: read at the first byte past memory EFAULT", r, EFAULT);
	r = sys(SYS_read, zero, 0x1ff000, 0x2000);
	CHECKF("end: read from the system pages into program memory", is_fault(r), "returned %ld", r);

	/* Strings: a path with no NUL within PATH_MAX, and one that runs
	 * into the end of guest memory. */
	static char no_nul[8192];
	memset(no_nul, 'a', sizeof no_nul);
	CHECK_ERR("str: path without NUL ENAMETOOLONG", sys(SYS_open, no_nul, O_RDONLY),
		  ENAMETOOLONG);
	CHECK_ERR("str: mkdir path without NUL ENAMETOOLONG", sys(SYS_mkdir, no_nul, 0700),
		  ENAMETOOLONG);

	CHECK_EQ("after: system calls still work", sys(SYS_getpid), getpid());
	sys(SYS_close, zero);
	sys(SYS_close, urandom);
	sys(SYS_close, tmp);
	sys(SYS_close, task);
	sys(SYS_close, pfd[0]);
	sys(SYS_close, pfd[1]);
	sys(SYS_unlink, "/tmp/badptr");
}

static void test_odd_values(void)
{
	long r;
	r = sys(SYS_brk, ~0UL);
	CHECKF("odd: brk(2^64-1) leaves the break", r == sys(SYS_brk, 0), "returned %#lx", r);
	r = sys(SYS_brk, 0x8000000000000000UL);
	CHECKF("odd: brk(non-canonical) leaves the break", r == sys(SYS_brk, 0), "returned %#lx", r);
	long fd = sys(SYS_open, "/var/task/hello.txt", O_RDONLY);
	CHECK_ERR("odd: lseek to -2^63 EINVAL", sys(SYS_lseek, fd, 1L << 63, SEEK_SET), EINVAL);
	r = sys(SYS_lseek, fd, 0x7fffffffffffffffL, SEEK_SET);
	CHECKF("odd: lseek to 2^63-1", r == 0x7fffffffffffffffL || r == -EINVAL, "returned %ld", r);
	CHECK_ERR("odd: lseek END + 2^63-1 overflows", sys(SYS_lseek, fd, 0x7fffffffffffffffL, SEEK_END),
		  EINVAL);
	char c;
	long got = sys(SYS_read, fd, &c, 1);
	if (r == -EINVAL) /* the offset is still 0 */
		CHECK_EQ("odd: read at a huge offset", got, 1);
	else /* Linux: EINVAL, as offset + count overflows; 0 (EOF) is fine too */
		CHECKF("odd: read at a huge offset", got == 0 || got == -EINVAL, "returned %ld", got);
	CHECK_ERR("odd: pread at a negative offset EINVAL", sys(SYS_pread64, fd, &c, 1, -4096), EINVAL);
	sys(SYS_close, fd);
	CHECK_ERR("odd: close(-1) EBADF", sys(SYS_close, -1), EBADF);
	CHECK_ERR("odd: dup3 to a huge fd", sys(SYS_dup3, 0, 0x7fffffff, 0), EBADF);
	r = sys(SYS_dup3, 0, 1 << 20, 0);
	CHECKF("odd: dup3 past the table", r == -EBADF || r == -EMFILE, "returned %ld", r);
	r = sys(SYS_fcntl, 0, F_DUPFD, 1 << 20);
	CHECKF("odd: F_DUPFD past the table", r == -EINVAL || r == -EMFILE, "returned %ld", r);
	struct timespec t = { 0x7fffffffffffffffL, 999999999 };
	CHECK_ERR("odd: clock_nanosleep clock -1 EINVAL",
		  sys(SYS_clock_nanosleep, ~0UL, TIMER_ABSTIME, &t, NULL), EINVAL);
	r = sys(SYS_clock_gettime, 0x7fffffff, buffer);
	CHECK_ERR("odd: clock id 2^31-1 EINVAL", r, EINVAL);
	r = sys(SYS_clock_gettime, -1, buffer);
	CHECKF("odd: negative clock id refused", r == -EINVAL || r == -ESRCH, "returned %ld", r);
	/* Linux reads the signal as an int (so this is SIGUSR1); either answer
	 * is fine, a crash is not. */
	r = sys(SYS_rt_sigaction, (1UL << 32) + 10, NULL, buffer, 8);
	CHECKF("odd: rt_sigaction signal 2^32+10", r == 0 || r == -EINVAL, "returned %ld", r);
	CHECK_ERR("odd: mmap with every flag bit", sys(SYS_mmap, 0, 4096, PROT_READ, ~0UL, -1, 0),
		  EINVAL);
	/* Linux ignores unknown prot bits; refusing them is fine too. */
	r = sys(SYS_mmap, 0, 4096, ~0UL, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECKF("odd: mmap with every prot bit", is_fault(r) || (r > 0 && (r & 0xfff) == 0),
	       "returned %#lx", r);
	if (r > 0 && (r & 0xfff) == 0)
		sys(SYS_munmap, r, 4096);
	CHECK_EQ("after: system calls still work", sys(SYS_getpid), getpid());
}

/* Last, because a VMM that honours part of such a call scribbles over or
 * discards the guest's own memory, and the checks after it would mean
 * nothing. */
static void test_destructive_lengths(void)
{
	FOR_HUGE_LENGTHS("last: madvise DONTNEED huge length",
			 sys(SYS_madvise, (unsigned long)buffer & ~0xfffUL, len, MADV_DONTNEED));
	FOR_HUGE_LENGTHS("last: munmap huge length", sys(SYS_munmap, ((unsigned long)canary_after + 4095) & ~4095UL, len));
	FOR_HUGE_LENGTHS("last: getrandom huge length", sys(SYS_getrandom, buffer, len, 0));
}

int main(int argc, char **argv)
{
	mem_bytes = (argc > 1 ? strtoul(argv[1], NULL, 10) : 128) * MIB;
	test_bad_pointers();
	test_huge_lengths();
	test_odd_values();
	test_destructive_lengths();
	return gt_done();
}
