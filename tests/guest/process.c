/* Guest test of the process system calls and the initial process state:
 * identity (getpid, gettid, getuid...), uname, sched_getaffinity,
 * prlimit64, set_tid_address, arch_prctl's FS/GS base, getrandom, and the
 * argv / environment / auxiliary vector the ELF loader laid out.
 *
 * The VM suite runs it as: /bin/process one "two words" with
 * --env EMBER_TEST=yes and --trace. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "guest_test.h"

/* The FS base as user code sees it: glibc keeps the TCB's own address at
 * %fs:0, so this equals the base without a system call. */
static unsigned long fs_self(void)
{
	unsigned long v;
	__asm__ volatile("mov %%fs:0, %0" : "=r"(v));
	return v;
}

static unsigned long gs_word(void)
{
	unsigned long v;
	__asm__ volatile("mov %%gs:0, %0" : "=r"(v));
	return v;
}

static void test_identity(void)
{
	long pid = sys(SYS_getpid);
	CHECKF("id: getpid positive", pid > 0, "got %ld", pid);
	CHECK_EQ("id: getpid agrees with libc", getpid(), pid);
	CHECK_EQ("id: gettid equals pid", sys(SYS_gettid), pid);
	long ppid = sys(SYS_getppid);
	CHECKF("id: getppid non-negative", ppid >= 0, "got %ld", ppid);
	long uid = sys(SYS_getuid), euid = sys(SYS_geteuid);
	long gid = sys(SYS_getgid), egid = sys(SYS_getegid);
	CHECKF("id: uids valid", uid >= 0 && euid >= 0 && gid >= 0 && egid >= 0,
	       "uid %ld euid %ld gid %ld egid %ld", uid, euid, gid, egid);
	CHECK_EQ("id: AT_UID matches getuid", getauxval(AT_UID), uid);
	CHECK_EQ("id: AT_EUID matches geteuid", getauxval(AT_EUID), euid);
	CHECK_EQ("id: AT_GID matches getgid", getauxval(AT_GID), gid);
	CHECK_EQ("id: AT_EGID matches getegid", getauxval(AT_EGID), egid);
	long tid_ret = sys(SYS_set_tid_address, &tid_ret);
	CHECK_EQ("id: set_tid_address returns the tid", tid_ret, pid);
}

static void test_uname(void)
{
	struct utsname u;
	memset(&u, 0, sizeof u);
	CHECK_OK("uname: call", sys(SYS_uname, &u));
	CHECKF("uname: sysname Linux", strcmp(u.sysname, "Linux") == 0, "got \"%s\"", u.sysname);
	CHECKF("uname: machine x86_64", strcmp(u.machine, "x86_64") == 0, "got \"%s\"", u.machine);
	CHECKF("uname: release looks like a version", u.release[0] >= '3' && u.release[0] <= '9',
	       "got \"%s\"", u.release);
	CHECK("uname: nodename set", u.nodename[0] != '\0');
	CHECK_ERR("uname: bad pointer EFAULT", sys(SYS_uname, GT_OUTSIDE), EFAULT);
}

static void test_affinity(void)
{
	unsigned long mask[16];
	memset(mask, 0, sizeof mask);
	long n = sys(SYS_sched_getaffinity, 0, sizeof mask, mask);
	CHECKF("affinity: returns the mask size", n > 0 && n <= (long)sizeof mask && n % 8 == 0,
	       "got %ld", n);
	int bits = 0;
	for (size_t i = 0; i < 16; i++)
		bits += __builtin_popcountl(mask[i]);
	CHECKF("affinity: at least one CPU", bits >= 1, "got %d", bits);
	CHECK("affinity: libc CPU_COUNT agrees", ({
		      cpu_set_t set;
		      CPU_ZERO(&set);
		      sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == bits;
	      }));
	CHECK_ERR("affinity: zero length EINVAL", sys(SYS_sched_getaffinity, 0, 0, mask), EINVAL);
	CHECK_ERR("affinity: odd length EINVAL", sys(SYS_sched_getaffinity, 0, 7, mask), EINVAL);
	CHECK_ERR("affinity: bad pointer EFAULT",
		  sys(SYS_sched_getaffinity, 0, sizeof mask, GT_OUTSIDE), EFAULT);
	CHECK_ERR("affinity: unknown pid ESRCH",
		  sys(SYS_sched_getaffinity, 99999, sizeof mask, mask), ESRCH);
	CHECK_EQ("affinity: sched_yield", sys(SYS_sched_yield), 0);
}

static void test_limits(void)
{
	struct rlimit lim;
	CHECK_OK("rlimit: NOFILE", sys(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &lim));
	CHECKF("rlimit: NOFILE sane", lim.rlim_cur >= 64 && lim.rlim_cur <= lim.rlim_max,
	       "cur %lu max %lu", (unsigned long)lim.rlim_cur, (unsigned long)lim.rlim_max);
	CHECK_OK("rlimit: STACK", sys(SYS_prlimit64, 0, RLIMIT_STACK, NULL, &lim));
	CHECKF("rlimit: STACK at least 1 MiB", lim.rlim_cur >= (1UL << 20), "cur %lu",
	       (unsigned long)lim.rlim_cur);
	CHECK_OK("rlimit: AS", sys(SYS_prlimit64, 0, RLIMIT_AS, NULL, &lim));
	CHECK_OK("rlimit: own pid", sys(SYS_prlimit64, sys(SYS_getpid), RLIMIT_NOFILE, NULL, &lim));
	CHECK_OK("rlimit: libc getrlimit", getrlimit(RLIMIT_NOFILE, &lim));
	CHECK_ERR("rlimit: bad resource EINVAL", sys(SYS_prlimit64, 0, 1000, NULL, &lim), EINVAL);
	CHECK_ERR("rlimit: bad pointer EFAULT",
		  sys(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, GT_OUTSIDE), EFAULT);
	CHECK_ERR("rlimit: unknown pid ESRCH", sys(SYS_prlimit64, 99999, RLIMIT_NOFILE, NULL, &lim),
		  ESRCH);
}

static void test_fs_base(void)
{
	unsigned long orig = 0;
	CHECK_OK("fs: ARCH_GET_FS", sys(SYS_arch_prctl, ARCH_GET_FS, &orig));
	CHECKF("fs: base is the TCB", orig != 0 && fs_self() == orig, "base %#lx, %%fs:0 %#lx",
	       orig, fs_self());

	/* Point FS at our own block and back, touching no TLS in between. */
	static unsigned long block[64] __attribute__((aligned(64)));
	block[0] = (unsigned long)block;
	long set = sys(SYS_arch_prctl, ARCH_SET_FS, block);
	unsigned long seen = fs_self();
	unsigned long now = 0;
	long get = sys(SYS_arch_prctl, ARCH_GET_FS, &now);
	long back = sys(SYS_arch_prctl, ARCH_SET_FS, orig);
	CHECK_OK("fs: ARCH_SET_FS", set);
	CHECKF("fs: new base seen by user code", seen == (unsigned long)block, "%%fs:0 is %#lx",
	       seen);
	CHECKF("fs: ARCH_GET_FS returns new base", get == 0 && now == (unsigned long)block,
	       "got %ld, %#lx", get, now);
	CHECK_OK("fs: restore", back);
	CHECK_EQ("fs: restored base seen by user code", fs_self(), orig);

	/* GS: unused by glibc, so it can be set and read freely. */
	static unsigned long gsblock[8];
	gsblock[0] = 0x1234567890abcdefUL;
	CHECK_OK("gs: ARCH_SET_GS", sys(SYS_arch_prctl, ARCH_SET_GS, gsblock));
	CHECK_EQ("gs: %gs:0 reads the block", gs_word(), 0x1234567890abcdefUL);
	unsigned long g = 0;
	CHECK_OK("gs: ARCH_GET_GS", sys(SYS_arch_prctl, ARCH_GET_GS, &g));
	CHECK_EQ("gs: ARCH_GET_GS value", g, (unsigned long)gsblock);
	sys(SYS_arch_prctl, ARCH_SET_GS, 0);

	CHECK_ERR("fs: unknown code EINVAL", sys(SYS_arch_prctl, 0x9999, 0), EINVAL);
	CHECK_ERR("fs: GET_FS bad pointer EFAULT", sys(SYS_arch_prctl, ARCH_GET_FS, GT_OUTSIDE),
		  EFAULT);
	long nc = sys(SYS_arch_prctl, ARCH_SET_FS, GT_NONCANONICAL);
	if (nc == 0) /* must not stay there: put glibc's base back at once */
		sys(SYS_arch_prctl, ARCH_SET_FS, orig);
	CHECK_ERR_ANY("fs: non-canonical base refused", nc, EPERM, EINVAL, EFAULT);
	CHECK_EQ("fs: base intact after refusals", fs_self(), orig);
}

static void test_random(void)
{
	unsigned char a[64], b[64];
	memset(a, 0, sizeof a);
	memset(b, 0, sizeof b);
	CHECK_EQ("random: 64 bytes", sys(SYS_getrandom, a, sizeof a, 0), 64);
	CHECK_EQ("random: 64 more", sys(SYS_getrandom, b, sizeof b, 0), 64);
	CHECK("random: two calls differ", memcmp(a, b, sizeof a) != 0);
	CHECK_EQ("random: GRND_NONBLOCK", sys(SYS_getrandom, a, 16, 1 /* GRND_NONBLOCK */), 16);
	CHECK_EQ("random: zero length", sys(SYS_getrandom, a, 0, 0), 0);
	CHECK_ERR("random: bad flags EINVAL", sys(SYS_getrandom, a, 16, 0x100), EINVAL);
	CHECK_ERR("random: bad pointer EFAULT", sys(SYS_getrandom, GT_OUTSIDE, 16, 0), EFAULT);

	/* A large buffer is filled to the end. */
	static unsigned char big[1 << 20];
	long got = 0;
	while (got < (long)sizeof big) {
		long n = sys(SYS_getrandom, big + got, sizeof big - (size_t)got, 0);
		if (n <= 0)
			break;
		got += n;
	}
	CHECK_EQ("random: 1 MiB filled", got, (long)sizeof big);
	unsigned long zeros = 0, tail_nonzero = 0;
	unsigned long counts[256] = { 0 };
	for (size_t i = 0; i < sizeof big; i++) {
		counts[big[i]]++;
		zeros += big[i] == 0;
	}
	for (size_t i = sizeof big - 4096; i < sizeof big; i++)
		tail_nonzero += big[i] != 0;
	CHECKF("random: zero bytes about 1/256", zeros > 2000 && zeros < 6500, "%lu zero bytes",
	       zeros);
	CHECKF("random: last page filled", tail_nonzero > 3900, "%lu non-zero", tail_nonzero);
	unsigned long lo = ~0UL, hi = 0;
	for (int v = 0; v < 256; v++) {
		if (counts[v] < lo)
			lo = counts[v];
		if (counts[v] > hi)
			hi = counts[v];
	}
	CHECKF("random: byte values evenly spread", lo > 3500 && hi < 4700, "min %lu max %lu", lo,
	       hi);

	const unsigned char *at_random = (const unsigned char *)getauxval(AT_RANDOM);
	int nonzero = 0;
	for (int i = 0; at_random && i < 16; i++)
		nonzero += at_random[i] != 0;
	CHECKF("random: AT_RANDOM has 16 fresh bytes", nonzero >= 8, "%d non-zero", nonzero);
}

static void test_startup(int argc, char **argv, char **envp)
{
	CHECK_EQ("start: argc", argc, 3);
	CHECK("start: argv[0] is the program path", argc > 0 && strcmp(argv[0], "/bin/process") == 0);
	CHECK("start: argv[1]", argc > 1 && strcmp(argv[1], "one") == 0);
	CHECK("start: argv[2] keeps its space", argc > 2 && strcmp(argv[2], "two words") == 0);
	CHECK("start: argv ends with NULL", argv[argc] == NULL);
	CHECK("start: envp follows argv", envp == argv + argc + 1);
	const char *t = getenv("EMBER_TEST");
	CHECKF("start: --env reaches the guest", t && strcmp(t, "yes") == 0, "got %s",
	       t ? t : "(unset)");

	CHECK_EQ("auxv: AT_PAGESZ", getauxval(AT_PAGESZ), 4096);
	CHECK_EQ("auxv: AT_CLKTCK", getauxval(AT_CLKTCK), 100);
	CHECK_EQ("auxv: AT_SECURE", getauxval(AT_SECURE), 0);
	CHECK("auxv: AT_PHDR set", getauxval(AT_PHDR) != 0);
	CHECK_EQ("auxv: AT_PHENT", getauxval(AT_PHENT), 56);
	CHECK("auxv: AT_PHNUM set", getauxval(AT_PHNUM) >= 2);
	extern void _start(void);
	CHECK_EQ("auxv: AT_ENTRY is _start", getauxval(AT_ENTRY), (unsigned long)&_start);
	CHECK("auxv: AT_HWCAP set", getauxval(AT_HWCAP) != 0);
	const char *platform = (const char *)getauxval(AT_PLATFORM);
	CHECK("auxv: AT_PLATFORM x86_64", platform && strcmp(platform, "x86_64") == 0);
	const char *execfn = (const char *)getauxval(AT_EXECFN);
	CHECK("auxv: AT_EXECFN is the program path", execfn && strcmp(execfn, "/bin/process") == 0);
	const unsigned char *vdso = (const unsigned char *)getauxval(AT_SYSINFO_EHDR);
	CHECK("auxv: AT_SYSINFO_EHDR is an ELF image", vdso && memcmp(vdso, "\177ELF", 4) == 0);

	/* Linux's layout: the strings sit at the top of the stack, after the
	 * vectors, and the 8 bytes above the last string are zero. */
	const char *last = envp[0] ? envp[0] : argv[argc - 1];
	for (char **e = envp; *e; e++)
		if (*e > last)
			last = *e;
	if (execfn && execfn > last)
		last = execfn;
	CHECK("start: strings above the vectors", (const char *)argv[0] > (const char *)(envp + 1));
	const char *end = last + strlen(last) + 1;
	unsigned long top = 0;
	memcpy(&top, end, sizeof top);
	CHECKF("start: zero word above the strings", top == 0, "got %#lx", top);
}

/* Numbers no kernel serves answer ENOSYS (the suite runs this with --trace
 * and looks for kexec_load on stderr). */
static void test_unknown_calls(void)
{
	CHECK_ERR("enosys: number 500", sys(500), ENOSYS);
	CHECK_ERR("enosys: number -1", sys(-1L), ENOSYS);
	CHECK_ERR("enosys: number 2^32-1", sys(0xffffffffL), ENOSYS);
	CHECK_ERR("enosys: x32 getpid", sys(0x40000000L + SYS_getpid), ENOSYS);
	CHECK_ERR_ANY("enosys: kexec_load refused", sys(SYS_kexec_load, 0, 0, 0, 0), ENOSYS, EPERM,
		      EPERM);
	CHECK_EQ("enosys: system calls still work", sys(SYS_getpid), getpid());
}

int main(int argc, char **argv, char **envp)
{
	test_startup(argc, argv, envp);
	test_identity();
	test_uname();
	test_affinity();
	test_limits();
	test_fs_base();
	test_random();
	test_unknown_calls();
	return gt_done();
}
