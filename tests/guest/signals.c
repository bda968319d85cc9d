/* Guest test of the signal bookkeeping calls: rt_sigaction and
 * rt_sigprocmask accept what glibc and python pass, remember it, and reject
 * bad signal numbers, bad `how` values, bad set sizes and bad pointers. No
 * signal is delivered here. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "guest_test.h"

/* The kernel's struct sigaction for x86-64 (not glibc's). */
struct kernel_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	unsigned long mask;
};

#define SA_RESTORER_FLAG 0x04000000UL

static void handler_one(int sig)
{
	(void)sig;
}

static void restorer_stub(void)
{
}

static void test_sigaction(void)
{
	struct kernel_sigaction act = {
		.handler = (void *)handler_one,
		.flags = SA_RESTORER_FLAG | SA_RESTART | SA_SIGINFO,
		.restorer = (void *)restorer_stub,
		.mask = 1UL << (SIGUSR2 - 1),
	};
	struct kernel_sigaction old;
	memset(&old, 0x5a, sizeof old);
	CHECK_OK("sigaction: install USR1", sys(SYS_rt_sigaction, SIGUSR1, &act, &old, 8));
	CHECK("sigaction: previous was default", old.handler == SIG_DFL);
	memset(&old, 0, sizeof old);
	CHECK_OK("sigaction: query USR1", sys(SYS_rt_sigaction, SIGUSR1, NULL, &old, 8));
	CHECK("sigaction: handler remembered", old.handler == (void *)handler_one);
	CHECK("sigaction: flags remembered",
	      (old.flags & (SA_RESTART | SA_SIGINFO | SA_RESTORER_FLAG)) ==
		      (SA_RESTART | SA_SIGINFO | SA_RESTORER_FLAG));
	CHECK("sigaction: restorer remembered", old.restorer == (void *)restorer_stub);
	CHECK("sigaction: mask remembered", old.mask == 1UL << (SIGUSR2 - 1));

	struct kernel_sigaction ign = { .handler = SIG_IGN };
	CHECK_OK("sigaction: ignore SIGPIPE", sys(SYS_rt_sigaction, SIGPIPE, &ign, NULL, 8));
	CHECK_OK("sigaction: query SIGPIPE", sys(SYS_rt_sigaction, SIGPIPE, NULL, &old, 8));
	CHECK("sigaction: SIGPIPE ignored", old.handler == SIG_IGN);
	CHECK_OK("sigaction: realtime signal 64", sys(SYS_rt_sigaction, 64, &act, NULL, 8));
	CHECK_OK("sigaction: query SIGKILL", sys(SYS_rt_sigaction, SIGKILL, NULL, &old, 8));
	CHECK_OK("sigaction: neither new nor old", sys(SYS_rt_sigaction, SIGUSR1, NULL, NULL, 8));

	CHECK_ERR("sigaction: set size 4 EINVAL", sys(SYS_rt_sigaction, SIGUSR1, &act, NULL, 4),
		  EINVAL);
	CHECK_ERR("sigaction: set size 16 EINVAL", sys(SYS_rt_sigaction, SIGUSR1, &act, NULL, 16),
		  EINVAL);
	CHECK_ERR("sigaction: set size 0 EINVAL", sys(SYS_rt_sigaction, SIGUSR1, NULL, &old, 0),
		  EINVAL);
	CHECK_ERR("sigaction: huge set size EINVAL",
		  sys(SYS_rt_sigaction, SIGUSR1, &act, NULL, ~0UL), EINVAL);
	CHECK_ERR("sigaction: signal 0 EINVAL", sys(SYS_rt_sigaction, 0, &act, NULL, 8), EINVAL);
	CHECK_ERR("sigaction: signal 65 EINVAL", sys(SYS_rt_sigaction, 65, &act, NULL, 8), EINVAL);
	CHECK_ERR("sigaction: negative signal EINVAL", sys(SYS_rt_sigaction, -1, &act, NULL, 8),
		  EINVAL);
	CHECK_ERR("sigaction: catching SIGKILL EINVAL", sys(SYS_rt_sigaction, SIGKILL, &act, NULL, 8),
		  EINVAL);
	CHECK_ERR("sigaction: catching SIGSTOP EINVAL", sys(SYS_rt_sigaction, SIGSTOP, &act, NULL, 8),
		  EINVAL);
	CHECK_ERR("sigaction: bad new pointer EFAULT",
		  sys(SYS_rt_sigaction, SIGUSR1, GT_OUTSIDE, NULL, 8), EFAULT);
	CHECK_ERR("sigaction: bad old pointer EFAULT",
		  sys(SYS_rt_sigaction, SIGUSR1, NULL, GT_OUTSIDE, 8), EFAULT);
	CHECK_OK("sigaction: query after refusals", sys(SYS_rt_sigaction, SIGUSR1, NULL, &old, 8));
	CHECK("sigaction: refusals changed nothing", old.handler == (void *)handler_one);

	/* glibc's own wrappers, as python uses them. */
	struct sigaction sa, sa_old;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handler_one;
	sigemptyset(&sa.sa_mask);
	CHECK("sigaction: libc sigaction SIGINT", sigaction(SIGINT, &sa, &sa_old) == 0);
	CHECK("sigaction: libc reads back", sigaction(SIGINT, NULL, &sa_old) == 0 &&
						    sa_old.sa_handler == handler_one);
	CHECK("sigaction: libc signal() SIGTERM", signal(SIGTERM, SIG_IGN) != SIG_ERR);
	CHECK("sigaction: libc signal() reads back", signal(SIGTERM, SIG_DFL) == SIG_IGN);
	errno = 0;
	CHECK("sigaction: libc refuses SIGKILL", sigaction(SIGKILL, &sa, NULL) == -1 && errno == EINVAL);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGINT, &sa, NULL);
}

static void test_sigprocmask(void)
{
	unsigned long set = 1UL << (SIGUSR1 - 1), old = ~0UL, cur = 0;
	CHECK_OK("sigprocmask: query", sys(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &old, 8));
	CHECK_EQ("sigprocmask: starts empty", old, 0);
	CHECK_OK("sigprocmask: block USR1", sys(SYS_rt_sigprocmask, SIG_BLOCK, &set, &old, 8));
	CHECK_OK("sigprocmask: read back", sys(SYS_rt_sigprocmask, SIG_SETMASK, NULL, &cur, 8));
	CHECK_EQ("sigprocmask: USR1 blocked", cur, set);
	unsigned long set2 = 1UL << (SIGUSR2 - 1);
	sys(SYS_rt_sigprocmask, SIG_BLOCK, &set2, NULL, 8);
	sys(SYS_rt_sigprocmask, SIG_SETMASK, NULL, &cur, 8);
	CHECK_EQ("sigprocmask: block adds", cur, set | set2);
	sys(SYS_rt_sigprocmask, SIG_UNBLOCK, &set, NULL, 8);
	sys(SYS_rt_sigprocmask, SIG_SETMASK, NULL, &cur, 8);
	CHECK_EQ("sigprocmask: unblock removes", cur, set2);
	unsigned long all = ~0UL;
	CHECK_OK("sigprocmask: set all", sys(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, 8));
	sys(SYS_rt_sigprocmask, SIG_SETMASK, NULL, &cur, 8);
	unsigned long unblockable = (1UL << (SIGKILL - 1)) | (1UL << (SIGSTOP - 1));
	CHECK_EQ("sigprocmask: KILL and STOP stay unblocked", cur & unblockable, 0);
	CHECK_EQ("sigprocmask: the rest blocked", cur | unblockable, ~0UL);

	CHECK_ERR("sigprocmask: bad how EINVAL", sys(SYS_rt_sigprocmask, 3, &set, NULL, 8), EINVAL);
	CHECK_ERR("sigprocmask: huge how EINVAL", sys(SYS_rt_sigprocmask, 1000, &set, NULL, 8),
		  EINVAL);
	CHECK_ERR("sigprocmask: set size 4 EINVAL", sys(SYS_rt_sigprocmask, SIG_BLOCK, &set, NULL, 4),
		  EINVAL);
	CHECK_ERR("sigprocmask: set size 16 EINVAL",
		  sys(SYS_rt_sigprocmask, SIG_BLOCK, &set, NULL, 16), EINVAL);
	CHECK_ERR("sigprocmask: huge set size EINVAL",
		  sys(SYS_rt_sigprocmask, SIG_BLOCK, &set, NULL, ~0UL), EINVAL);
	CHECK_ERR("sigprocmask: bad set pointer EFAULT",
		  sys(SYS_rt_sigprocmask, SIG_BLOCK, GT_OUTSIDE, NULL, 8), EFAULT);
	CHECK_ERR("sigprocmask: bad old pointer EFAULT",
		  sys(SYS_rt_sigprocmask, SIG_BLOCK, NULL, GT_OUTSIDE, 8), EFAULT);

	unsigned long none = 0;
	CHECK_OK("sigprocmask: clear", sys(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8));
	sys(SYS_rt_sigprocmask, SIG_SETMASK, NULL, &cur, 8);
	CHECK_EQ("sigprocmask: cleared", cur, 0);

	sigset_t s, o;
	sigemptyset(&s);
	sigaddset(&s, SIGINT);
	CHECK("sigprocmask: libc sigprocmask", sigprocmask(SIG_BLOCK, &s, &o) == 0);
	CHECK("sigprocmask: libc reads back",
	      sigprocmask(SIG_SETMASK, NULL, &o) == 0 && sigismember(&o, SIGINT) == 1);
	sigprocmask(SIG_UNBLOCK, &s, NULL);
}

int main(void)
{
	test_sigaction();
	test_sigprocmask();
	return gt_done();
}
