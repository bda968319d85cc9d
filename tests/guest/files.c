/* Guest test of the file system calls: reading the read-only layers (the
 * root at / and the task at /var/task), writing the in-memory /tmp, the
 * VMM's devices, descriptors (dup, fcntl, pipes, poll) and the error paths
 * (EROFS, EBADF, EFAULT, ENOENT...).
 *
 * The VM suite runs it as /bin/files with a root and a task it made:
 *   /etc/passwd            "ember-root-marker\n"
 *   /var/task/hello.txt    "hello task\n"
 *   /var/task/sub/inner.txt "inner\n"
 *   /var/task/link         symlink to hello.txt */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "guest_test.h"

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* Reads a whole small file by path with raw calls; returns length or -errno. */
static long slurp(const char *path, char *buf, size_t size)
{
	long fd = sys(SYS_open, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fd;
	long total = 0;
	for (;;) {
		long n = sys(SYS_read, fd, buf + total, size - 1 - (size_t)total);
		if (n < 0) {
			total = n;
			break;
		}
		if (n == 0)
			break;
		total += n;
	}
	sys(SYS_close, fd);
	if (total >= 0)
		buf[total] = '\0';
	return total;
}

/* Returns the d_type of `name` in directory `path` (0..15), -1 when not
 * listed, or a negative errno - 100 on failure. */
static int dir_entry_type(const char *path, const char *name)
{
	char buf[4096];
	long fd = sys(SYS_open, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return (int)fd - 100;
	int found = -1;
	for (;;) {
		long n = sys(SYS_getdents64, fd, buf, sizeof buf);
		if (n < 0) {
			found = (int)n - 100;
			break;
		}
		if (n == 0)
			break;
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
			if (d->d_reclen == 0)
				break;
			if (strcmp(d->d_name, name) == 0)
				found = d->d_type;
			off += d->d_reclen;
		}
	}
	sys(SYS_close, fd);
	return found;
}

static long elapsed_ms(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1000 + (b->tv_nsec - a->tv_nsec) / 1000000;
}

static void test_read_layers(const char *self)
{
	char buf[256];
	struct stat st;

	long fd = sys(SYS_open, "/var/task/hello.txt", O_RDONLY);
	CHECK_OK("task: open hello.txt", fd);
	CHECK_EQ("task: read whole file", sys(SYS_read, fd, buf, sizeof buf), 11);
	CHECK("task: content", memcmp(buf, "hello task\n", 11) == 0);
	CHECK_EQ("task: read at EOF returns 0", sys(SYS_read, fd, buf, sizeof buf), 0);
	memset(buf, 0, sizeof buf);
	CHECK_EQ("task: pread 5 at 6", sys(SYS_pread64, fd, buf, 5, 6), 5);
	CHECK("task: pread content", memcmp(buf, "task\n", 5) == 0);
	CHECK_EQ("task: pread keeps offset", sys(SYS_lseek, fd, 0, SEEK_CUR), 11);
	CHECK_EQ("task: pread past EOF returns 0", sys(SYS_pread64, fd, buf, 5, 1000), 0);
	CHECK_ERR("task: pread negative offset EINVAL", sys(SYS_pread64, fd, buf, 5, -1), EINVAL);
	CHECK_EQ("task: lseek SET 6", sys(SYS_lseek, fd, 6, SEEK_SET), 6);
	CHECK_EQ("task: read after lseek", sys(SYS_read, fd, buf, 4), 4);
	CHECK("task: read after lseek content", memcmp(buf, "task", 4) == 0);
	CHECK_EQ("task: lseek END 0", sys(SYS_lseek, fd, 0, SEEK_END), 11);
	CHECK_EQ("task: lseek END -1", sys(SYS_lseek, fd, -1, SEEK_END), 10);
	CHECK_ERR("task: lseek bad whence EINVAL", sys(SYS_lseek, fd, 0, 99), EINVAL);
	CHECK_ERR("task: lseek before start EINVAL", sys(SYS_lseek, fd, -100, SEEK_SET), EINVAL);
	CHECK_OK("task: fstat", sys(SYS_fstat, fd, &st));
	CHECK_EQ("task: fstat size", st.st_size, 11);
	CHECK("task: fstat is regular", S_ISREG(st.st_mode));
	CHECK_ERR_ANY("task: write to read-only fd", sys(SYS_write, fd, "x", 1), EBADF, EBADF, EBADF);
	CHECK_ERR("task: read into NULL EFAULT", sys(SYS_read, fd, 0, 4), EFAULT);
	sys(SYS_lseek, fd, 0, SEEK_SET);
	CHECK_ERR("task: read outside guest memory EFAULT", sys(SYS_read, fd, GT_OUTSIDE, 4),
		  EFAULT);
	CHECK_ERR("task: fstat to bad pointer EFAULT", sys(SYS_fstat, fd, GT_OUTSIDE), EFAULT);
	CHECK_OK("task: close", sys(SYS_close, fd));
	CHECK_ERR("task: close twice EBADF", sys(SYS_close, fd), EBADF);
	CHECK_ERR("task: read closed fd EBADF", sys(SYS_read, fd, buf, 1), EBADF);

	/* newfstatat: directories, symlinks followed or not, AT_EMPTY_PATH. */
	CHECK_OK("stat: task dir", sys(SYS_newfstatat, AT_FDCWD, "/var/task/sub", &st, 0));
	CHECK("stat: task dir is directory", S_ISDIR(st.st_mode));
	CHECK_OK("stat: follow link", sys(SYS_newfstatat, AT_FDCWD, "/var/task/link", &st, 0));
	CHECK("stat: followed link is regular", S_ISREG(st.st_mode) && st.st_size == 11);
	CHECK_OK("stat: nofollow link",
		 sys(SYS_newfstatat, AT_FDCWD, "/var/task/link", &st, AT_SYMLINK_NOFOLLOW));
	CHECK("stat: link itself is symlink", S_ISLNK(st.st_mode));
	CHECK_OK("stat: root", sys(SYS_newfstatat, AT_FDCWD, "/", &st, 0));
	CHECK("stat: root is directory", S_ISDIR(st.st_mode));
	CHECK_ERR("stat: missing ENOENT",
		  sys(SYS_newfstatat, AT_FDCWD, "/var/task/missing", &st, 0), ENOENT);
	CHECK_ERR("stat: path through file ENOTDIR",
		  sys(SYS_newfstatat, AT_FDCWD, "/var/task/hello.txt/x", &st, 0), ENOTDIR);
	CHECK_ERR("stat: bad path pointer EFAULT",
		  sys(SYS_newfstatat, AT_FDCWD, GT_OUTSIDE, &st, 0), EFAULT);
	CHECK_ERR("stat: bad buffer EFAULT",
		  sys(SYS_newfstatat, AT_FDCWD, "/var/task/hello.txt", GT_OUTSIDE, 0), EFAULT);
	CHECK_ERR("stat: empty path ENOENT", sys(SYS_newfstatat, AT_FDCWD, "", &st, 0), ENOENT);
	fd = sys(SYS_open, "/var/task/sub/inner.txt", O_RDONLY);
	CHECK_OK("stat: open inner.txt", fd);
	CHECK_OK("stat: AT_EMPTY_PATH", sys(SYS_newfstatat, fd, "", &st, AT_EMPTY_PATH));
	CHECK_EQ("stat: AT_EMPTY_PATH size", st.st_size, 6);
	sys(SYS_close, fd);

	/* openat relative to a directory descriptor. */
	long dirfd = sys(SYS_open, "/var/task", O_RDONLY | O_DIRECTORY);
	CHECK_OK("openat: open task dir", dirfd);
	fd = sys(SYS_openat, dirfd, "sub/inner.txt", O_RDONLY);
	CHECK_OK("openat: relative to dirfd", fd);
	CHECK_EQ("openat: read", sys(SYS_read, fd, buf, sizeof buf), 6);
	sys(SYS_close, fd);
	fd = sys(SYS_openat, dirfd, "../task/hello.txt", O_RDONLY);
	CHECK_OK("openat: dotdot back into task", fd);
	sys(SYS_close, fd);
	CHECK_ERR("openat: read on directory EISDIR", sys(SYS_read, dirfd, buf, 16), EISDIR);
	fd = sys(SYS_open, "/var/task/hello.txt", O_RDONLY);
	CHECK_ERR("openat: file as dirfd ENOTDIR", sys(SYS_openat, fd, "x", O_RDONLY), ENOTDIR);
	CHECK_ERR("openat: bad dirfd EBADF", sys(SYS_openat, 999, "x", O_RDONLY), EBADF);
	sys(SYS_close, fd);
	sys(SYS_close, dirfd);
	CHECK_ERR("open: O_DIRECTORY on file ENOTDIR",
		  sys(SYS_open, "/var/task/hello.txt", O_RDONLY | O_DIRECTORY), ENOTDIR);
	CHECK_ERR("open: O_NOFOLLOW on symlink ELOOP",
		  sys(SYS_open, "/var/task/link", O_RDONLY | O_NOFOLLOW), ELOOP);
	fd = sys(SYS_open, "/var/task/link", O_RDONLY);
	CHECK_OK("open: through symlink", fd);
	CHECK_EQ("open: through symlink reads target", sys(SYS_read, fd, buf, sizeof buf), 11);
	sys(SYS_close, fd);

	/* getdents64 */
	CHECK_EQ("getdents: task has hello.txt", dir_entry_type("/var/task", "hello.txt"), DT_REG);
	CHECK_EQ("getdents: task has sub", dir_entry_type("/var/task", "sub"), DT_DIR);
	CHECK_EQ("getdents: task has link", dir_entry_type("/var/task", "link"), DT_LNK);
	CHECK_EQ("getdents: task lacks missing", dir_entry_type("/var/task", "missing"), -1);
	CHECK_EQ("getdents: root has etc", dir_entry_type("/", "etc"), DT_DIR);
	CHECK_EQ("getdents: root has bin", dir_entry_type("/", "bin"), DT_DIR);
	dirfd = sys(SYS_open, "/var/task", O_RDONLY | O_DIRECTORY);
	CHECK_ERR("getdents: tiny buffer EINVAL", sys(SYS_getdents64, dirfd, buf, 1), EINVAL);
	CHECK_ERR("getdents: bad buffer EFAULT", sys(SYS_getdents64, dirfd, GT_OUTSIDE, 4096),
		  EFAULT);
	sys(SYS_close, dirfd);
	fd = sys(SYS_open, "/var/task/hello.txt", O_RDONLY);
	CHECK_ERR("getdents: on a file ENOTDIR", sys(SYS_getdents64, fd, buf, sizeof buf), ENOTDIR);
	sys(SYS_close, fd);
	CHECK_ERR("getdents: bad fd EBADF", sys(SYS_getdents64, 999, buf, sizeof buf), EBADF);

	/* readlink */
	memset(buf, 0, sizeof buf);
	CHECK_EQ("readlink: task link", sys(SYS_readlink, "/var/task/link", buf, sizeof buf), 9);
	CHECK("readlink: task link target", strcmp(buf, "hello.txt") == 0);
	CHECK_EQ("readlink: truncates to buffer", sys(SYS_readlink, "/var/task/link", buf, 4), 4);
	CHECK_ERR("readlink: regular file EINVAL",
		  sys(SYS_readlink, "/var/task/hello.txt", buf, sizeof buf), EINVAL);
	CHECK_ERR("readlink: missing ENOENT",
		  sys(SYS_readlink, "/var/task/missing", buf, sizeof buf), ENOENT);
	CHECK_ERR("readlink: bad buffer EFAULT",
		  sys(SYS_readlink, "/var/task/link", GT_OUTSIDE, 64), EFAULT);
	memset(buf, 0, sizeof buf);
	long n = sys(SYS_readlink, "/proc/self/exe", buf, sizeof buf - 1);
	CHECKF("readlink: /proc/self/exe is the program", n > 0 && strcmp(buf, self) == 0,
	       "got %ld \"%s\", want \"%s\"", n, n > 0 ? buf : "", self);

	/* access */
	CHECK_OK("access: task file R_OK", sys(SYS_access, "/var/task/hello.txt", R_OK));
	CHECK_OK("access: task file F_OK", sys(SYS_access, "/var/task/hello.txt", F_OK));
	CHECK_ERR_ANY("access: task file W_OK refused",
		      sys(SYS_access, "/var/task/hello.txt", W_OK), EROFS, EACCES, EACCES);
	CHECK_ERR("access: missing ENOENT", sys(SYS_access, "/var/task/missing", F_OK), ENOENT);
	CHECK_OK("access: program X_OK", sys(SYS_access, self, X_OK));
	CHECK_OK("access: /tmp W_OK", sys(SYS_access, "/tmp", W_OK));
	CHECK_ERR("access: bad mode EINVAL", sys(SYS_access, "/var/task/hello.txt", 0x100), EINVAL);

	/* The root layer. */
	n = slurp("/etc/passwd", buf, sizeof buf);
	CHECKF("root: /etc/passwd is the root layer's", n == 18 && strcmp(buf, "ember-root-marker\n") == 0,
	       "got %ld bytes", n);
	CHECK_ERR("root: missing file ENOENT", sys(SYS_open, "/etc/missing", O_RDONLY), ENOENT);
	CHECK_ERR("root: empty path ENOENT", sys(SYS_open, "", O_RDONLY), ENOENT);
	CHECK_ERR("root: bad path pointer EFAULT", sys(SYS_open, GT_OUTSIDE, O_RDONLY), EFAULT);
	CHECK_ERR("root: NULL path EFAULT", sys(SYS_open, 0, O_RDONLY), EFAULT);
	static char longpath[5000];
	memset(longpath, 'a', sizeof longpath - 1);
	longpath[0] = '/';
	CHECK_ERR("root: path over PATH_MAX ENAMETOOLONG", sys(SYS_open, longpath, O_RDONLY),
		  ENAMETOOLONG);
}

static void test_cwd(void)
{
	char buf[256];
	long fd;

	CHECK_OK("cwd: chdir /var/task", sys(SYS_chdir, "/var/task"));
	memset(buf, 0, sizeof buf);
	CHECK_EQ("cwd: getcwd length", sys(SYS_getcwd, buf, sizeof buf), 10);
	CHECK("cwd: getcwd is /var/task", strcmp(buf, "/var/task") == 0);
	fd = sys(SYS_open, "hello.txt", O_RDONLY);
	CHECK_OK("cwd: relative open", fd);
	sys(SYS_close, fd);
	CHECK_OK("cwd: chdir relative sub", sys(SYS_chdir, "sub"));
	sys(SYS_getcwd, buf, sizeof buf);
	CHECK("cwd: now /var/task/sub", strcmp(buf, "/var/task/sub") == 0);
	fd = sys(SYS_open, "../link", O_RDONLY);
	CHECK_OK("cwd: relative open via ..", fd);
	sys(SYS_close, fd);
	CHECK_OK("cwd: chdir ..", sys(SYS_chdir, ".."));
	sys(SYS_getcwd, buf, sizeof buf);
	CHECK("cwd: back at /var/task", strcmp(buf, "/var/task") == 0);
	CHECK_ERR("cwd: chdir missing ENOENT", sys(SYS_chdir, "/nonexistent"), ENOENT);
	CHECK_ERR("cwd: chdir to file ENOTDIR", sys(SYS_chdir, "/var/task/hello.txt"), ENOTDIR);
	CHECK_ERR("cwd: chdir bad pointer EFAULT", sys(SYS_chdir, GT_OUTSIDE), EFAULT);
	CHECK_ERR("cwd: getcwd small buffer ERANGE", sys(SYS_getcwd, buf, 2), ERANGE);
	CHECK_ERR("cwd: getcwd bad pointer EFAULT", sys(SYS_getcwd, GT_OUTSIDE, 100), EFAULT);
	CHECK_OK("cwd: chdir /tmp", sys(SYS_chdir, "/tmp"));
	fd = sys(SYS_open, "rel.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
	CHECK_OK("cwd: create relative in /tmp", fd);
	sys(SYS_close, fd);
	CHECK_OK("cwd: relative file is in /tmp", sys(SYS_access, "/tmp/rel.txt", F_OK));
	sys(SYS_unlink, "/tmp/rel.txt");
	CHECK_OK("cwd: chdir /", sys(SYS_chdir, "/"));
	sys(SYS_getcwd, buf, sizeof buf);
	CHECK("cwd: at /", strcmp(buf, "/") == 0);
}

static void test_tmp(void)
{
	char buf[256];
	struct stat st;
	long fd;

	fd = sys(SYS_open, "/tmp/a.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
	CHECK_OK("tmp: create", fd);
	CHECK_EQ("tmp: write", sys(SYS_write, fd, "abcdef", 6), 6);
	CHECK_EQ("tmp: lseek 0", sys(SYS_lseek, fd, 0, SEEK_SET), 0);
	memset(buf, 0, sizeof buf);
	CHECK_EQ("tmp: read back", sys(SYS_read, fd, buf, sizeof buf), 6);
	CHECK("tmp: read back content", memcmp(buf, "abcdef", 6) == 0);
	CHECK_EQ("tmp: pwrite at 10", sys(SYS_pwrite64, fd, "XY", 2, 10), 2);
	CHECK_OK("tmp: fstat", sys(SYS_fstat, fd, &st));
	CHECK_EQ("tmp: size after pwrite", st.st_size, 12);
	CHECK("tmp: is regular", S_ISREG(st.st_mode));
	memset(buf, 1, sizeof buf);
	CHECK_EQ("tmp: pread hole", sys(SYS_pread64, fd, buf, 6, 6), 6);
	CHECK("tmp: hole reads as zeros then data",
	      memcmp(buf, "\0\0\0\0XY", 6) == 0);
	CHECK_ERR("tmp: write bad pointer EFAULT", sys(SYS_write, fd, GT_OUTSIDE, 6), EFAULT);
	CHECK_OK("tmp: close", sys(SYS_close, fd));

	struct iovec iov[3] = {
		{ .iov_base = "one ", .iov_len = 4 },
		{ .iov_base = "two ", .iov_len = 4 },
		{ .iov_base = "three", .iov_len = 5 },
	};
	fd = sys(SYS_open, "/tmp/v.txt", O_CREAT | O_RDWR | O_TRUNC, 0600);
	CHECK_EQ("tmp: writev", sys(SYS_writev, fd, iov, 3), 13);
	sys(SYS_lseek, fd, 0, SEEK_SET);
	char a[5] = { 0 }, b[10] = { 0 };
	struct iovec riov[2] = { { .iov_base = a, .iov_len = 4 }, { .iov_base = b, .iov_len = 9 } };
	CHECK_EQ("tmp: readv", sys(SYS_readv, fd, riov, 2), 13);
	CHECK("tmp: readv content", strcmp(a, "one ") == 0 && strcmp(b, "two three") == 0);
	CHECK_EQ("tmp: writev no iovecs", sys(SYS_writev, fd, iov, 0), 0);
	CHECK_ERR("tmp: writev bad iovec array EFAULT", sys(SYS_writev, fd, GT_OUTSIDE, 2), EFAULT);
	sys(SYS_close, fd);

	fd = sys(SYS_open, "/tmp/v.txt", O_WRONLY | O_APPEND);
	CHECK_EQ("tmp: append write", sys(SYS_write, fd, "!", 1), 1);
	sys(SYS_close, fd);
	CHECK_OK("tmp: stat appended", sys(SYS_newfstatat, AT_FDCWD, "/tmp/v.txt", &st, 0));
	CHECK_EQ("tmp: size after append", st.st_size, 14);
	fd = sys(SYS_open, "/tmp/v.txt", O_WRONLY | O_TRUNC);
	CHECK_OK("tmp: open O_TRUNC", fd);
	sys(SYS_close, fd);
	sys(SYS_newfstatat, AT_FDCWD, "/tmp/v.txt", &st, 0);
	CHECK_EQ("tmp: size after O_TRUNC", st.st_size, 0);

	CHECK_ERR("tmp: O_EXCL on existing EEXIST",
		  sys(SYS_open, "/tmp/v.txt", O_CREAT | O_EXCL | O_WRONLY, 0600), EEXIST);
	CHECK_ERR("tmp: create in missing dir ENOENT",
		  sys(SYS_open, "/tmp/nodir/x", O_CREAT | O_WRONLY, 0600), ENOENT);
	CHECK_ERR("tmp: open dir for writing EISDIR", sys(SYS_open, "/tmp", O_WRONLY), EISDIR);
	CHECK_ERR("tmp: open missing ENOENT", sys(SYS_open, "/tmp/missing", O_RDONLY), ENOENT);

	CHECK_OK("tmp: mkdir", sys(SYS_mkdir, "/tmp/d", 0755));
	CHECK_ERR("tmp: mkdir existing EEXIST", sys(SYS_mkdir, "/tmp/d", 0755), EEXIST);
	CHECK_OK("tmp: stat new dir", sys(SYS_newfstatat, AT_FDCWD, "/tmp/d", &st, 0));
	CHECK("tmp: new dir is directory", S_ISDIR(st.st_mode));
	fd = sys(SYS_open, "/tmp/d/f", O_CREAT | O_WRONLY, 0600);
	CHECK_OK("tmp: create in new dir", fd);
	sys(SYS_close, fd);
	CHECK_EQ("tmp: getdents lists file", dir_entry_type("/tmp/d", "f"), DT_REG);
	CHECK_EQ("tmp: getdents lists dir", dir_entry_type("/tmp", "d"), DT_DIR);
	CHECK_ERR("tmp: rmdir non-empty ENOTEMPTY", sys(SYS_rmdir, "/tmp/d"), ENOTEMPTY);
	CHECK_ERR("tmp: unlink a dir EISDIR", sys(SYS_unlink, "/tmp/d"), EISDIR);
	CHECK_OK("tmp: rename", sys(SYS_rename, "/tmp/d/f", "/tmp/d/g"));
	CHECK_EQ("tmp: renamed old name gone", dir_entry_type("/tmp/d", "f"), -1);
	CHECK_EQ("tmp: renamed new name present", dir_entry_type("/tmp/d", "g"), DT_REG);
	CHECK_OK("tmp: unlink", sys(SYS_unlink, "/tmp/d/g"));
	CHECK_ERR("tmp: unlink again ENOENT", sys(SYS_unlink, "/tmp/d/g"), ENOENT);
	CHECK_OK("tmp: rmdir", sys(SYS_rmdir, "/tmp/d"));
	CHECK_ERR("tmp: stat removed dir ENOENT", sys(SYS_newfstatat, AT_FDCWD, "/tmp/d", &st, 0),
		  ENOENT);
	CHECK_OK("tmp: mkdir via mkdirat", sys(SYS_mkdirat, AT_FDCWD, "/tmp/e", 0700));
	CHECK_OK("tmp: unlinkat AT_REMOVEDIR", sys(SYS_unlinkat, AT_FDCWD, "/tmp/e", AT_REMOVEDIR));

	/* An unlinked file stays readable through an open descriptor. */
	fd = sys(SYS_open, "/tmp/gone", O_CREAT | O_RDWR, 0600);
	sys(SYS_write, fd, "still", 5);
	CHECK_OK("tmp: unlink open file", sys(SYS_unlink, "/tmp/gone"));
	memset(buf, 0, sizeof buf);
	CHECK_EQ("tmp: unlinked file still readable", sys(SYS_pread64, fd, buf, 16, 0), 5);
	CHECK_ERR("tmp: unlinked file not found by name", sys(SYS_open, "/tmp/gone", O_RDONLY),
		  ENOENT);
	sys(SYS_close, fd);
	sys(SYS_unlink, "/tmp/v.txt");
	CHECK_OK("tmp: unlink a.txt", sys(SYS_unlink, "/tmp/a.txt"));
	CHECK_ERR("tmp: unlinked a.txt ENOENT", sys(SYS_open, "/tmp/a.txt", O_RDONLY), ENOENT);
}

static void test_layers_read_only(void)
{
	struct stat st;

	CHECK_ERR_ANY("ro: open task file O_WRONLY", sys(SYS_open, "/var/task/hello.txt", O_WRONLY),
		      EROFS, EACCES, EACCES);
	CHECK_ERR_ANY("ro: open task file O_RDWR", sys(SYS_open, "/var/task/hello.txt", O_RDWR),
		      EROFS, EACCES, EACCES);
	CHECK_ERR_ANY("ro: create in task",
		      sys(SYS_open, "/var/task/new.txt", O_CREAT | O_WRONLY, 0644), EROFS, EACCES,
		      EACCES);
	CHECK_ERR_ANY("ro: create in root", sys(SYS_open, "/etc/new", O_CREAT | O_WRONLY, 0644),
		      EROFS, EACCES, EACCES);
	CHECK_ERR_ANY("ro: truncate root file", sys(SYS_open, "/etc/passwd", O_WRONLY | O_TRUNC),
		      EROFS, EACCES, EACCES);
	CHECK_ERR_ANY("ro: mkdir in task", sys(SYS_mkdir, "/var/task/d", 0755), EROFS, EACCES,
		      EACCES);
	CHECK_ERR_ANY("ro: unlink in task", sys(SYS_unlink, "/var/task/hello.txt"), EROFS, EACCES,
		      EPERM);
	CHECK_ERR_ANY("ro: rmdir in task", sys(SYS_rmdir, "/var/task/sub"), EROFS, EACCES, EPERM);
	CHECK_ERR_ANY("ro: rename in task", sys(SYS_rename, "/var/task/hello.txt", "/var/task/x"),
		      EROFS, EACCES, EPERM);
	CHECK_ERR_ANY("ro: rename task file into tmp",
		      sys(SYS_rename, "/var/task/hello.txt", "/tmp/stolen"), EROFS, EXDEV, EACCES);
	CHECK_ERR_ANY("ro: unlink in root", sys(SYS_unlink, "/etc/passwd"), EROFS, EACCES, EPERM);
	CHECK_OK("ro: task file intact", sys(SYS_newfstatat, AT_FDCWD, "/var/task/hello.txt", &st, 0));
	CHECK_EQ("ro: task file size intact", st.st_size, 11);
}

static void test_devices(void)
{
	char buf[64];
	struct stat st;
	long fd;

	fd = sys(SYS_open, "/dev/null", O_RDWR);
	CHECK_OK("dev: open /dev/null", fd);
	CHECK_EQ("dev: /dev/null read EOF", sys(SYS_read, fd, buf, sizeof buf), 0);
	CHECK_EQ("dev: /dev/null swallows writes", sys(SYS_write, fd, "abc", 3), 3);
	CHECK_OK("dev: fstat /dev/null", sys(SYS_fstat, fd, &st));
	CHECK("dev: /dev/null is a char device", S_ISCHR(st.st_mode));
	sys(SYS_close, fd);
	fd = sys(SYS_open, "/dev/zero", O_RDONLY);
	CHECK_OK("dev: open /dev/zero", fd);
	memset(buf, 0x55, sizeof buf);
	CHECK_EQ("dev: /dev/zero read", sys(SYS_read, fd, buf, sizeof buf), 64);
	int zero = 1;
	for (size_t i = 0; i < sizeof buf; i++)
		zero &= buf[i] == 0;
	CHECK("dev: /dev/zero gives zeros", zero);
	sys(SYS_close, fd);
	fd = sys(SYS_open, "/dev/urandom", O_RDONLY);
	CHECK_OK("dev: open /dev/urandom", fd);
	memset(buf, 0, sizeof buf);
	CHECK_EQ("dev: /dev/urandom read", sys(SYS_read, fd, buf, 32), 32);
	int nonzero = 0;
	for (size_t i = 0; i < 32; i++)
		nonzero += buf[i] != 0;
	CHECK("dev: /dev/urandom not all zero", nonzero > 8);
	sys(SYS_close, fd);
	CHECK_ERR("dev: missing device ENOENT", sys(SYS_open, "/dev/nonexistent", O_RDONLY), ENOENT);
}

static void test_descriptors(void)
{
	char buf[64];
	long fd, fd2;

	CHECK_ERR("ebadf: read", sys(SYS_read, 999, buf, 1), EBADF);
	CHECK_ERR("ebadf: write", sys(SYS_write, 999, "x", 1), EBADF);
	CHECK_ERR("ebadf: write -1", sys(SYS_write, -1, "x", 1), EBADF);
	CHECK_ERR("ebadf: close", sys(SYS_close, 999), EBADF);
	CHECK_ERR("ebadf: close huge", sys(SYS_close, 0x7fffffff), EBADF);
	CHECK_ERR("ebadf: fstat", sys(SYS_fstat, 999, buf), EBADF);
	CHECK_ERR("ebadf: lseek", sys(SYS_lseek, 999, 0, SEEK_SET), EBADF);
	CHECK_ERR("ebadf: pread", sys(SYS_pread64, 999, buf, 1, 0), EBADF);
	CHECK_ERR("ebadf: dup", sys(SYS_dup, 999), EBADF);
	CHECK_ERR("ebadf: dup3", sys(SYS_dup3, 999, 50, 0), EBADF);
	CHECK_ERR("ebadf: fcntl", sys(SYS_fcntl, 999, F_GETFD), EBADF);
	CHECK_ERR("ebadf: getdents", sys(SYS_getdents64, -5, buf, sizeof buf), EBADF);

	fd = sys(SYS_open, "/var/task/hello.txt", O_RDONLY);
	fd2 = sys(SYS_dup, fd);
	CHECKF("dup: returns a new descriptor", fd2 >= 0 && fd2 != fd, "got %ld", fd2);
	sys(SYS_lseek, fd, 6, SEEK_SET);
	CHECK_EQ("dup: shares the file offset", sys(SYS_lseek, fd2, 0, SEEK_CUR), 6);
	CHECK_EQ("dup3: to 50", sys(SYS_dup3, fd, 50, O_CLOEXEC), 50);
	CHECK_EQ("dup3: cloexec set", sys(SYS_fcntl, 50, F_GETFD), FD_CLOEXEC);
	CHECK_EQ("dup3: reads shared offset", sys(SYS_read, 50, buf, 4), 4);
	CHECK("dup3: read content", memcmp(buf, "task", 4) == 0);
	CHECK_ERR("dup3: same fd EINVAL", sys(SYS_dup3, fd, fd, 0), EINVAL);
	CHECK_ERR("dup3: bad flags EINVAL", sys(SYS_dup3, fd, 51, 0x4), EINVAL);
	CHECK_EQ("dup2: same fd returns it", sys(SYS_dup2, fd, fd), fd);
	CHECK_EQ("dup3: replaces an open fd", sys(SYS_dup3, fd2, 50, 0), 50);
	CHECK_EQ("dup3: replaced fd has no cloexec", sys(SYS_fcntl, 50, F_GETFD), 0);
	long f100 = sys(SYS_fcntl, fd, F_DUPFD, 100);
	CHECKF("fcntl: F_DUPFD >= 100", f100 >= 100, "got %ld", f100);
	long f200 = sys(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 200);
	CHECKF("fcntl: F_DUPFD_CLOEXEC >= 200", f200 >= 200, "got %ld", f200);
	CHECK_EQ("fcntl: F_DUPFD_CLOEXEC sets cloexec", sys(SYS_fcntl, f200, F_GETFD), FD_CLOEXEC);
	CHECK_OK("fcntl: F_SETFD", sys(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC));
	CHECK_EQ("fcntl: F_GETFD", sys(SYS_fcntl, fd, F_GETFD), FD_CLOEXEC);
	CHECK_EQ("fcntl: F_GETFL is O_RDONLY", sys(SYS_fcntl, fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	CHECK_OK("fcntl: F_SETFL O_NONBLOCK", sys(SYS_fcntl, fd, F_SETFL, O_NONBLOCK));
	CHECK("fcntl: F_GETFL has O_NONBLOCK", sys(SYS_fcntl, fd, F_GETFL) & O_NONBLOCK);
	CHECK_ERR("fcntl: unknown command EINVAL", sys(SYS_fcntl, fd, 9999), EINVAL);
	CHECK_ERR("fcntl: F_DUPFD negative EINVAL", sys(SYS_fcntl, fd, F_DUPFD, -1), EINVAL);
	sys(SYS_close, fd);
	sys(SYS_close, fd2);
	sys(SYS_close, 50);
	sys(SYS_close, f100);
	sys(SYS_close, f200);

	/* Exhausting the descriptor table ends in EMFILE, not a crash. */
	long opened[4096];
	int count = 0;
	long last = 0;
	while (count < 4096) {
		last = sys(SYS_open, "/dev/null", O_RDONLY);
		if (last < 0)
			break;
		opened[count++] = last;
	}
	CHECK_ERR("fdtable: exhaustion gives EMFILE", last, EMFILE);
	for (int i = 0; i < count; i++)
		sys(SYS_close, opened[i]);
	fd = sys(SYS_open, "/dev/null", O_RDONLY);
	CHECK_OK("fdtable: usable again after closing", fd);
	sys(SYS_close, fd);

	/* close_range takes unsigned ints: junk in the upper register bits
	 * must not widen the range (it once closed everything above fd). */
	long first = sys(SYS_open, "/dev/null", O_RDONLY);
	long second = sys(SYS_open, "/dev/null", O_RDONLY);
	CHECK_OK("close_range: upper bits ignored",
		 sys(SYS_close_range, (1UL << 32) | (unsigned long)first, (1UL << 32) | (unsigned long)first, 0));
	CHECK_ERR("close_range: the named fd is closed", sys(SYS_fcntl, first, F_GETFD), EBADF);
	CHECK_OK("close_range: the next fd stays open", sys(SYS_fcntl, second, F_GETFD));
	sys(SYS_close, second);
}

static void test_pipes(void)
{
	int fds[2] = { -1, -1 };
	char buf[64];
	struct timespec t0, t1;

	/* Writing to a pipe with no reader must give EPIPE, not kill us. */
	struct sigaction ign = { .sa_handler = SIG_IGN };
	sigaction(SIGPIPE, &ign, NULL);

	CHECK_OK("pipe: pipe2", sys(SYS_pipe2, fds, O_CLOEXEC));
	CHECK_EQ("pipe: read end cloexec", sys(SYS_fcntl, fds[0], F_GETFD), FD_CLOEXEC);
	CHECK_EQ("pipe: write", sys(SYS_write, fds[1], "ping", 4), 4);
	memset(buf, 0, sizeof buf);
	CHECK_EQ("pipe: read", sys(SYS_read, fds[0], buf, sizeof buf), 4);
	CHECK("pipe: content", memcmp(buf, "ping", 4) == 0);
	CHECK_ERR("pipe: lseek ESPIPE", sys(SYS_lseek, fds[0], 0, SEEK_SET), ESPIPE);
	CHECK_ERR("pipe: pread ESPIPE", sys(SYS_pread64, fds[0], buf, 1, 0), ESPIPE);
	CHECK_ERR("pipe: read from write end EBADF", sys(SYS_read, fds[1], buf, 1), EBADF);
	CHECK_ERR("pipe: write to read end EBADF", sys(SYS_write, fds[0], "x", 1), EBADF);

	struct pollfd p[3];
	p[0] = (struct pollfd){ .fd = fds[0], .events = POLLIN };
	CHECK_EQ("poll: empty pipe not readable", sys(SYS_poll, p, 1, 0), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_EQ("poll: timeout on empty pipe", sys(SYS_poll, p, 1, 30), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = elapsed_ms(&t0, &t1);
	CHECKF("poll: waited the timeout", ms >= 29 && ms < 2000, "waited %ld ms", ms);
	sys(SYS_write, fds[1], "x", 1);
	p[0].revents = 0;
	CHECK_EQ("poll: readable after write", sys(SYS_poll, p, 1, 0), 1);
	CHECK_EQ("poll: POLLIN", p[0].revents, POLLIN);
	p[0] = (struct pollfd){ .fd = fds[1], .events = POLLOUT };
	p[1] = (struct pollfd){ .fd = -1, .events = POLLIN };
	p[2] = (struct pollfd){ .fd = 999, .events = POLLIN };
	CHECK_EQ("poll: write end, ignored -1, bad fd", sys(SYS_poll, p, 3, 0), 2);
	CHECK_EQ("poll: POLLOUT on write end", p[0].revents, POLLOUT);
	CHECK_EQ("poll: fd -1 ignored", p[1].revents, 0);
	CHECK_EQ("poll: bad fd POLLNVAL", p[2].revents, POLLNVAL);
	CHECK_ERR("poll: bad array EFAULT", sys(SYS_poll, GT_OUTSIDE, 1, 0), EFAULT);
	CHECK_ERR("poll: too many fds EINVAL", sys(SYS_poll, p, 1L << 20, 0), EINVAL);

	p[0] = (struct pollfd){ .fd = fds[0], .events = POLLIN };
	struct timespec zero = { 0, 0 }, ten_ms = { 0, 10 * 1000 * 1000 };
	CHECK_EQ("ppoll: readable", sys(SYS_ppoll, p, 1, &zero, NULL, 8), 1);
	sys(SYS_read, fds[0], buf, sizeof buf);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_EQ("ppoll: timeout on empty pipe", sys(SYS_ppoll, p, 1, &ten_ms, NULL, 8), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = elapsed_ms(&t0, &t1);
	CHECKF("ppoll: waited the timeout", ms >= 9 && ms < 2000, "waited %ld ms", ms);
	struct timespec bad = { 0, 2000000000L };
	CHECK_ERR("ppoll: bad timeout EINVAL", sys(SYS_ppoll, p, 1, &bad, NULL, 8), EINVAL);
	CHECK_ERR("ppoll: bad timeout pointer EFAULT", sys(SYS_ppoll, p, 1, GT_OUTSIDE, NULL, 8),
		  EFAULT);

	/* Non-blocking: a full pipe says EAGAIN, an empty one too. */
	CHECK_OK("pipe: set O_NONBLOCK", sys(SYS_fcntl, fds[1], F_SETFL, O_NONBLOCK));
	CHECK_OK("pipe: set O_NONBLOCK read end", sys(SYS_fcntl, fds[0], F_SETFL, O_NONBLOCK));
	CHECK_ERR("pipe: empty non-blocking read EAGAIN", sys(SYS_read, fds[0], buf, 1), EAGAIN);
	static char big[100 * 1024], back[100 * 1024];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (char)(i * 7 + 3);
	long w = sys(SYS_write, fds[1], big, sizeof big);
	CHECKF("pipe: big non-blocking write is partial", w > 0 && w < (long)sizeof big,
	       "got %ld", w);
	CHECK_ERR("pipe: full pipe EAGAIN", sys(SYS_write, fds[1], big, 1), EAGAIN);
	p[0] = (struct pollfd){ .fd = fds[1], .events = POLLOUT };
	CHECK_EQ("poll: full pipe not writable", sys(SYS_poll, p, 1, 0), 0);
	long got = 0;
	for (;;) {
		long r = sys(SYS_read, fds[0], back + got, sizeof back - (size_t)got);
		if (r <= 0)
			break;
		got += r;
	}
	CHECK_EQ("pipe: read back everything", got, w);
	CHECK("pipe: bytes intact", w > 0 && memcmp(big, back, (size_t)w) == 0);

	CHECK_OK("pipe: close write end", sys(SYS_close, fds[1]));
	p[0] = (struct pollfd){ .fd = fds[0], .events = POLLIN };
	CHECK_EQ("poll: hang-up after writer closed", sys(SYS_poll, p, 1, 0), 1);
	CHECK("poll: POLLHUP", p[0].revents & POLLHUP);
	CHECK_EQ("pipe: EOF after writer closed", sys(SYS_read, fds[0], buf, sizeof buf), 0);
	sys(SYS_close, fds[0]);

	CHECK_OK("pipe: second pipe", sys(SYS_pipe2, fds, 0));
	sys(SYS_close, fds[0]);
	CHECK_ERR("pipe: write without reader EPIPE", sys(SYS_write, fds[1], "x", 1), EPIPE);
	sys(SYS_close, fds[1]);
	CHECK_ERR("pipe: bad flags EINVAL", sys(SYS_pipe2, fds, 0x12345678), EINVAL);
	CHECK_ERR("pipe: bad pointer EFAULT", sys(SYS_pipe2, GT_OUTSIDE, 0), EFAULT);
}

int main(int argc, char **argv)
{
	(void)argc;
	test_read_layers(argv[0]);
	test_cwd();
	test_tmp();
	test_layers_read_only();
	test_devices();
	test_descriptors();
	test_pipes();
	return gt_done();
}
