/* Helpers shared by Ember's guest test programs (the C files in tests/guest).
 *
 * The programs are ordinary static glibc binaries that run inside an Ember
 * microVM; the VM-level suite (tests/vm/suite.sh) compares what they print
 * with tests/vm/expected/NAME.out.  Each check prints one line, "ok NAME"
 * or "not ok NAME: detail", through a raw write(2) so that output never
 * depends on stdio buffering or malloc, and gt_done() prints the summary
 * line and gives the exit status (0 when every check passed).
 *
 * sys(NR, args...) issues a raw `syscall` with up to six arguments and
 * returns the kernel's value unchanged (-errno on failure), bypassing glibc
 * so a test controls every register it passes, bad pointers included.
 * Check names must not depend on run-time values, so that the expected
 * output is the same on every run. */
#ifndef EMBER_GUEST_TEST_H
#define EMBER_GUEST_TEST_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

static inline long gt_raw_syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
	long ret;
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = a6;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#define GT_PICK7(n, a, b, c, d, e, f, ...)                                                  \
	gt_raw_syscall((long)(n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e),     \
		       (long)(f))
/* sys(SYS_x, a1, ...): a raw system call; missing arguments are 0. */
#define sys(...) GT_PICK7(__VA_ARGS__, 0, 0, 0, 0, 0, 0, 0)

/* Addresses that are never guest program memory: the VMM's page tables,
 * the system-call stub page, and addresses far above any guest's memory. */
#define GT_PAGE_TABLES 0x1000UL
#define GT_STUB_PAGE 0x18000UL
#define GT_CLOCK_PAGE 0x19000UL
#define GT_OUTSIDE ((void *)0x7fff00000000UL)
#define GT_NONCANONICAL ((void *)0x8000000000000000UL)

#define GT_UNUSED __attribute__((unused))

static int gt_passed GT_UNUSED, gt_failed GT_UNUSED;

/* Prints like printf, with one raw write(2) to fd 1 (at most 1 KiB). */
__attribute__((format(printf, 1, 2))) GT_UNUSED static void gt_print(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line)
		n = sizeof line - 1;
	size_t done = 0;
	while (done < (size_t)n) {
		long w = sys(SYS_write, 1, line + done, (size_t)n - done);
		if (w <= 0)
			break;
		done += (size_t)w;
	}
}

/* The symbolic name of an errno value, for failure details. */
GT_UNUSED static const char *gt_errno_name(long err)
{
	switch (err) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case E2BIG: return "E2BIG";
	case ENOEXEC: return "ENOEXEC";
	case EBADF: return "EBADF";
	case ECHILD: return "ECHILD";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case EXDEV: return "EXDEV";
	case ENODEV: return "ENODEV";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case ENFILE: return "ENFILE";
	case EMFILE: return "EMFILE";
	case ENOTTY: return "ENOTTY";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	case ESPIPE: return "ESPIPE";
	case EROFS: return "EROFS";
	case EPIPE: return "EPIPE";
	case ERANGE: return "ERANGE";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOSYS: return "ENOSYS";
	case ENOTEMPTY: return "ENOTEMPTY";
	case ELOOP: return "ELOOP";
	case ENOTSOCK: return "ENOTSOCK";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
	case ENETUNREACH: return "ENETUNREACH";
	case ECONNREFUSED: return "ECONNREFUSED";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case ENETDOWN: return "ENETDOWN";
	default: return "E?";
	}
}

/* "-EFAULT" for a negative return, "42" for a result, into buf. */
GT_UNUSED static const char *gt_describe(long ret, char *buf, size_t size)
{
	if (ret < 0 && ret > -4096)
		snprintf(buf, size, "-%s (%ld)", gt_errno_name(-ret), ret);
	else
		snprintf(buf, size, "%ld (%#lx)", ret, (unsigned long)ret);
	return buf;
}

GT_UNUSED static void gt_report(const char *name, int ok, const char *detail)
{
	if (ok) {
		gt_passed++;
		gt_print("ok %s\n", name);
	} else {
		gt_failed++;
		gt_print("not ok %s: %s\n", name, detail);
	}
}

/* CHECK(name, cond): passes when cond is true. */
#define CHECK(name, cond) gt_report((name), !!(cond), "false: " #cond)

/* CHECKF(name, cond, fmt, ...): like CHECK with a formatted failure detail. */
#define CHECKF(name, cond, ...)                                                             \
	do {                                                                                \
		char gt_detail_[512];                                                       \
		int gt_ok_ = !!(cond);                                                      \
		if (!gt_ok_)                                                                \
			snprintf(gt_detail_, sizeof gt_detail_, __VA_ARGS__);               \
		gt_report((name), gt_ok_, gt_ok_ ? "" : gt_detail_);                        \
	} while (0)

/* CHECK_EQ(name, got, want): integer equality, both printed on failure. */
#define CHECK_EQ(name, got, want)                                                           \
	do {                                                                                \
		long gt_got_ = (long)(got), gt_want_ = (long)(want);                        \
		char gt_g_[64], gt_w_[64];                                                  \
		CHECKF((name), gt_got_ == gt_want_, "got %s, want %s",                     \
		       gt_describe(gt_got_, gt_g_, sizeof gt_g_),                           \
		       gt_describe(gt_want_, gt_w_, sizeof gt_w_));                         \
	} while (0)

/* CHECK_OK(name, ret): a system call's return is not an error. */
#define CHECK_OK(name, ret)                                                                 \
	do {                                                                                \
		long gt_ret_ = (long)(ret);                                                 \
		char gt_g_[64];                                                             \
		CHECKF((name), !(gt_ret_ < 0 && gt_ret_ > -4096), "failed with %s",        \
		       gt_describe(gt_ret_, gt_g_, sizeof gt_g_));                          \
	} while (0)

/* CHECK_ERR(name, ret, E): a system call failed with exactly -E. */
#define CHECK_ERR(name, ret, err) CHECK_ERR_ANY((name), (ret), (err), (err), (err))

/* CHECK_ERR_ANY(name, ret, E1, E2, E3): failed with one of three errnos. */
#define CHECK_ERR_ANY(name, ret, e1, e2, e3)                                                \
	do {                                                                                \
		long gt_ret_ = (long)(ret);                                                 \
		char gt_g_[64];                                                             \
		CHECKF((name), gt_ret_ == -(long)(e1) || gt_ret_ == -(long)(e2) ||          \
				       gt_ret_ == -(long)(e3),                              \
		       "got %s, want -%s%s%s%s%s", gt_describe(gt_ret_, gt_g_, sizeof gt_g_), \
		       gt_errno_name(e1), (e2) != (e1) ? " or -" : "",                      \
		       (e2) != (e1) ? gt_errno_name(e2) : "",                               \
		       (e3) != (e1) && (e3) != (e2) ? " or -" : "",                         \
		       (e3) != (e1) && (e3) != (e2) ? gt_errno_name(e3) : "");              \
	} while (0)

/* Prints the summary line; returns the program's exit status. */
GT_UNUSED static int gt_done(void)
{
	gt_print("done: %d passed, %d failed\n", gt_passed, gt_failed);
	return gt_failed != 0;
}

#endif
