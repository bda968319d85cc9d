/* Hostile guest: issues random system calls (numbers 0..511 with random
 * arguments) for a given number of seconds, then prints a summary and
 * exits 0.  Whatever the VMM answers, it must not crash, hang, or harm the
 * guest beyond what the call asked for.
 *
 * Usage: fuzz SECONDS [SEED]
 *
 * To let the fuzzer itself survive, a few calls are skipped (those that end
 * the process, block forever in a single-threaded program, or deliver
 * fatal signals: exit, pause, fork, execve, kill...), and a few arguments
 * are shaped: pointers point into a scratch mapping or far outside guest
 * memory, lengths are small or huge (never "medium", which could legally
 * scribble over the fuzzer's own memory), memory-management calls only aim
 * at a victim mapping, and the descriptor that carries the summary is never
 * passed.  Standard descriptors 0..2 are /dev/null while fuzzing.  The
 * scratch mapping lies high in guest memory, so a scratch address used as a
 * length runs past the end of memory, and the loop runs on its own stack,
 * so a write that spills above the scratch mapping lands on the initial
 * stack, which is no longer used. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "guest_test.h"

#define SCRATCH_SIZE (2UL << 20)
#define PATHS_AREA 8192 /* the path strings live at the start of scratch */
#define VICTIM_SIZE (4UL << 20)

static unsigned long rng_state;
static unsigned char *scratch;
static unsigned long victim;
static long report_fd = -1;
static double fuzz_seconds;
static unsigned long fuzz_seed;
static unsigned char loop_stack[512 * 1024] __attribute__((aligned(64)));

static unsigned long next_random(void)
{
	unsigned long x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return x;
}

static const char *const path_texts[] = {
	"/", "/tmp", "/tmp/fuzz", "/tmp/fuzz/dir", "/tmp/fuzz-file", "/var/task",
	"/var/task/hello.txt", "/etc/passwd", "/dev/null", "/dev/zero", "/dev/urandom",
	"/proc/self/exe", "/proc/self/maps", "..", ".", "", "/nonexistent", "/dev/kvm",
	"/var/task/../../..", "/tmp/../../etc",
};
#define PATH_COUNT (sizeof path_texts / sizeof path_texts[0])
static unsigned long path_offsets[PATH_COUNT];

/* Copies the path strings into scratch (calls may overwrite them). */
static void place_paths(void)
{
	size_t off = 0;
	for (size_t i = 0; i < PATH_COUNT; i++) {
		size_t len = strlen(path_texts[i]) + 1;
		memcpy(scratch + off, path_texts[i], len);
		path_offsets[i] = off;
		off += (len + 15) & ~15UL;
	}
}

/* Small numbers, flags-like values, huge values; never a "medium" length. */
static unsigned long number_value(void)
{
	static const unsigned long specials[] = {
		0, 1, 2, 3, 4, 8, 16, 64, 100, 255, 256, 4095, 4096, 0x7fffffff, 0x80000000,
		0xffffffff, 0x100000000UL, 1UL << 40, 1UL << 62, 1UL << 63, ~0UL, ~0UL - 1,
		~0UL - 4095, (unsigned long)-100, (unsigned long)-4096,
	};
	switch (next_random() % 5) {
	case 0:
	case 1:
		return specials[next_random() % (sizeof specials / sizeof specials[0])];
	case 2:
		return next_random() % 4097;
	case 3:
		return next_random() | (1UL << 40); /* random, but never small */
	default:
		return next_random() & 0xff;
	}
}

/* A pointer argument: into the scratch buffer, or somewhere no guest has. */
static unsigned long pointer_value(void)
{
	static const unsigned long wild[] = {
		0, 0x1000, 0x18000, 0x19000, 0x1fffff, 0x7fff00000000UL, 0x8000000000000000UL,
		~0UL, ~0UL - 4095,
	};
	switch (next_random() % 8) {
	case 0:
		return wild[next_random() % (sizeof wild / sizeof wild[0])];
	case 1:
		return (unsigned long)scratch + path_offsets[next_random() % PATH_COUNT];
	default:
		/* Leave room after the pointer for anything up to 64 KiB. */
		return (unsigned long)scratch + PATHS_AREA +
		       next_random() % (SCRATCH_SIZE - PATHS_AREA - 65536);
	}
}

static unsigned long fd_value(void)
{
	switch (next_random() % 4) {
	case 0:
		return next_random() % 3;
	case 1:
		return 3 + next_random() % 16;
	case 2:
		return (unsigned long)-1 - next_random() % 3;
	default:
		return number_value();
	}
}

static unsigned long any_value(void)
{
	switch (next_random() % 3) {
	case 0:
		return pointer_value();
	case 1:
		return fd_value();
	default:
		return number_value();
	}
}

/* An address for a memory-management call: in the first half of the
 * victim mapping (lengths are kept under half its size), or wild. */
static unsigned long victim_pointer(void)
{
	static const unsigned long wild[] = {
		0, 0x1000, 0x18000, 0x19000, 0x1ff000, 0x7fff00000000UL, 0x8000000000000000UL,
		~0UL & ~0xfffUL,
	};
	if (next_random() % 8 == 0)
		return wild[next_random() % (sizeof wild / sizeof wild[0])];
	return victim + (next_random() % (VICTIM_SIZE / 2 / 4096)) * 4096 + (next_random() % 16 == 0);
}

/* Refills the scratch buffer with words of the same value pools, so that
 * structures the kernel reads (iovecs, timespecs, sockaddrs) hold the same
 * mix of small, huge and pointer values. */
static void refill_scratch(void)
{
	for (size_t i = 0; i < 65536 / 8; i++) {
		unsigned long v = any_value();
		size_t at = PATHS_AREA + (next_random() % ((SCRATCH_SIZE - PATHS_AREA) / 8)) * 8;
		memcpy(scratch + at, &v, 8);
	}
	place_paths();
}

/* Calls never issued: they end the process, block a single-threaded
 * program for good, or send it signals. */
static int skipped(unsigned long nr)
{
	switch (nr) {
	case SYS_exit: case SYS_exit_group: case SYS_pause: case SYS_rt_sigsuspend:
	case SYS_fork: case SYS_vfork: case SYS_clone: case SYS_clone3: case SYS_execve:
	case SYS_execveat: case SYS_rt_sigreturn: case SYS_kill: case SYS_tkill:
	case SYS_tgkill: case SYS_rt_sigqueueinfo: case SYS_rt_tgsigqueueinfo:
	case SYS_pidfd_send_signal: case SYS_alarm: case SYS_setitimer: case SYS_timer_settime:
	case SYS_timerfd_settime: case SYS_nanosleep: case SYS_clock_nanosleep:
	case SYS_select: case SYS_pselect6: case SYS_poll: case SYS_ppoll: case SYS_epoll_wait:
	case SYS_epoll_pwait: case SYS_epoll_pwait2: case SYS_futex: case SYS_futex_waitv:
	case SYS_rt_sigtimedwait: case SYS_msgrcv: case SYS_msgsnd: case SYS_semop:
	case SYS_semtimedop: case SYS_mq_timedreceive: case SYS_mq_timedsend:
	case SYS_io_getevents: case SYS_io_pgetevents: case SYS_io_uring_enter:
	case SYS_wait4: case SYS_waitid:
	/* Descriptors whose reads or accepts block forever. */
	case SYS_pipe: case SYS_pipe2: case SYS_socketpair: case SYS_socket: case SYS_eventfd:
	case SYS_eventfd2: case SYS_signalfd: case SYS_signalfd4: case SYS_timerfd_create:
	case SYS_inotify_init: case SYS_inotify_init1: case SYS_fanotify_init:
	case SYS_userfaultfd: case SYS_accept: case SYS_accept4: case SYS_recvfrom:
	case SYS_recvmsg: case SYS_recvmmsg: case SYS_flock: case SYS_mknod: case SYS_mknodat:
	/* Could write anywhere in the fuzzer's own memory. */
	case SYS_process_vm_readv: case SYS_process_vm_writev: case SYS_ptrace:
	/* Would break the fuzzer's own thread state (TLS base, seccomp, limits). */
	case SYS_arch_prctl: case SYS_prctl: case SYS_seccomp: case SYS_setrlimit:
	case SYS_set_thread_area: case SYS_modify_ldt:
		return 1;
	default:
		return 0;
	}
}

static int is_memory_call(unsigned long nr)
{
	switch (nr) {
	case SYS_mmap: case SYS_mprotect: case SYS_munmap: case SYS_mremap: case SYS_msync:
	case SYS_mincore: case SYS_madvise: case SYS_mlock: case SYS_munlock: case SYS_mlock2:
	case SYS_remap_file_pages: case SYS_mbind: case SYS_pkey_mprotect: case SYS_shmat:
	case SYS_shmdt: case SYS_process_madvise:
		return 1;
	default:
		return 0;
	}
}

static void shape(unsigned long nr, unsigned long a[6])
{
	for (int i = 0; i < 6; i++)
		a[i] = any_value();
	if (is_memory_call(nr)) {
		a[0] = victim_pointer();
		a[1] = next_random() % 2 ? (next_random() % 16) * 4096 : number_value();
		/* mremap/mmap targets and MAP_FIXED stay in the victim area. */
		if (nr == SYS_mremap)
			a[4] = victim_pointer();
		if (nr == SYS_mmap && next_random() % 2)
			a[3] &= ~0x10UL; /* usually without MAP_FIXED */
		/* A length that reaches from the victim mapping into the rest
		 * of the program must be huge, never medium. */
		if (a[1] > VICTIM_SIZE / 2 && a[1] < (1UL << 40))
			a[1] = 4096;
		if (nr == SYS_mremap && a[2] > VICTIM_SIZE / 2 && a[2] < (1UL << 40))
			a[2] = 8192;
		if (nr == SYS_mmap) /* a file offset, not a pointer */
			a[5] = next_random() % 2 ? 0 : number_value();
	}
	switch (nr) {
	case SYS_brk: /* never shrink the heap glibc uses */
		a[0] = next_random() % 2 ? 0 : (1UL << 46) + next_random();
		break;
	case SYS_close_range: /* start above the report descriptor, whether the
			       * VMM reads the bounds as 32 or 64 bits */
		a[0] = (unsigned long)report_fd + 1 + (a[0] & 0xff);
		break;
	case SYS_fcntl: /* no blocking locks */
		if (a[1] == 7 /* F_SETLKW */ || a[1] == 38 /* F_OFD_SETLKW */)
			a[1] = 6;
		break;
	case SYS_prlimit64: /* read limits only */
		a[2] = 0;
		break;
	default:
		break;
	}
	for (int i = 0; i < 6; i++)
		if ((a[i] & 0xffffffffUL) == (unsigned long)report_fd)
			a[i] = (unsigned long)report_fd + 1;
}

static double now_seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Writes one line to the report descriptor with a raw write. */
__attribute__((format(printf, 1, 2))) static void report(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n > 0)
		sys(SYS_write, report_fd, line, n < (int)sizeof line ? n : (int)sizeof line - 1);
}

/* The fuzzing loop; runs on loop_stack and ends the process itself. */
__attribute__((noreturn, used)) static void fuzz_loop(void)
{
	unsigned long calls = 0, errors = 0, enosys = 0, efault = 0, distinct = 0;
	static unsigned char seen[512];
	double start = now_seconds(), deadline = start + fuzz_seconds;
	while (now_seconds() < deadline) {
		for (int batch = 0; batch < 64; batch++) {
			unsigned long nr = next_random() % 512;
			if (skipped(nr))
				continue;
			unsigned long a[6];
			shape(nr, a);
			long r = gt_raw_syscall((long)nr, (long)a[0], (long)a[1], (long)a[2],
						(long)a[3], (long)a[4], (long)a[5]);
			calls++;
			if (!seen[nr]) {
				seen[nr] = 1;
				distinct++;
			}
			if (r < 0 && r > -4096) {
				errors++;
				enosys += r == -ENOSYS;
				efault += r == -EFAULT;
			}
		}
		refill_scratch();
	}
	/* The VMM still serves ordinary calls correctly afterwards. */
	long pid = sys(SYS_getpid);
	struct timespec ts;
	long clock_ok = sys(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
	report("fuzz: %lu calls in %.0f s, %lu distinct numbers, %lu errors (%lu ENOSYS, %lu EFAULT), seed %lu\n",
	       calls, now_seconds() - start, distinct, errors, enosys, efault, fuzz_seed);
	int status = 0;
	if (pid <= 0 || clock_ok != 0) {
		report("fuzz: VMM unhealthy afterwards: getpid %ld, clock_gettime %ld\n", pid, clock_ok);
		status = 1;
	} else {
		report("fuzz: done\n");
	}
	for (;;)
		sys(SYS_exit_group, status);
}

int main(int argc, char **argv)
{
	fuzz_seconds = argc > 1 ? atof(argv[1]) : 10;
	fuzz_seed = argc > 2 ? strtoul(argv[2], NULL, 0) : 1;
	rng_state = fuzz_seed * 0x9e3779b97f4a7c15UL + 0x1234567;

	/* Keep the real stdout for the summary on a high descriptor; make
	 * 0..2 /dev/null so random writes and reads go nowhere. */
	report_fd = sys(SYS_dup3, 1, 77, O_CLOEXEC);
	if (report_fd < 0)
		report_fd = sys(SYS_dup, 1);
	long null_fd = sys(SYS_open, "/dev/null", O_RDWR);
	if (report_fd < 0 || null_fd < 0) {
		gt_print("fuzz: set-up failed: dup %ld, open /dev/null %ld\n", report_fd, null_fd);
		return 1;
	}
	for (int fd = 0; fd < 3; fd++)
		sys(SYS_dup3, null_fd, fd, 0);
	sys(SYS_close, null_fd);
	long s = sys(SYS_mmap, 0, SCRATCH_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		     -1, 0);
	long v = sys(SYS_mmap, 0, VICTIM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		     -1, 0);
	if ((s < 0 && s > -4096) || (v < 0 && v > -4096)) {
		report("fuzz: set-up failed: mmap %ld, %ld\n", s, v);
		return 1;
	}
	scratch = (unsigned char *)s;
	victim = (unsigned long)v;
	place_paths();
	sys(SYS_mkdir, "/tmp/fuzz", 0755);
	report("fuzz: %.0f s, seed %lu, scratch at %#lx, victim at %#lx\n", fuzz_seconds, fuzz_seed,
	       (unsigned long)s, (unsigned long)v);

	__asm__ volatile("mov %0, %%rsp\n call fuzz_loop\n ud2"
			 :
			 : "r"(loop_stack + sizeof loop_stack - 64)
			 : "memory");
	__builtin_unreachable();
}
