/* System calls on files and descriptors: open, read/write and friends,
 * stat, directories, pipes, poll.  Files come from the read-only layers,
 * the in-memory /tmp, in-VM pipes, VMM devices and the VMM's own stdio
 * (file_layers.h, fdtable.h); this file is the only place where a guest's
 * descriptor becomes an operation on one of them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/stat.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "memfs.h"
#include "pipe.h"
#include "syscalls.h"

#define MAX_RW_COUNT       0x7ffff000ULL
#define IOV_MAX_COUNT      1024
#define BOUNCE_SIZE        65536
#define TMPFS_MAGIC_NUMBER 0x01021994
#define LAYER_FS_MAGIC     0x794c7630 /* reported like an overlay file system */

static bool is_directory_kind(enum vmm_file_kind kind)
{
	return kind == VMM_FILE_HOST_DIR || kind == VMM_FILE_MEMFS_DIR || kind == VMM_FILE_SYNTHETIC_DIR;
}

static bool can_read(const struct vmm_file *file)
{
	return (file->flags & O_ACCMODE) != O_WRONLY;
}

static bool can_write(const struct vmm_file *file)
{
	return (file->flags & O_ACCMODE) != O_RDONLY;
}

/* Waits for the timeout: what a single-threaded guest blocked forever on
 * itself (an empty pipe it also writes) would otherwise do.  A pause
 * request ends the wait too, and the call is restarted afterwards. */
static int64_t block_until_timeout(struct vmm_process *process)
{
	int64_t rc;
	while ((rc = guest_wait_interrupted(process)) == 0)
		pause();
	return rc;
}

static int64_t sigpipe(struct vmm_process *process)
{
	if (process->signal_actions[SIGPIPE].handler == (uint64_t)(uintptr_t)SIG_DFL)
		vmm_process_kill(process, SIGPIPE, "write to a pipe with no reader");
	return -EPIPE;
}

/* Reads into host memory `buf` (already checked guest memory).  pos < 0
 * means the file's own offset, which then advances. */
static int64_t file_read(struct vmm_process *process, struct vmm_file *file, void *buf, size_t len,
			 int64_t pos)
{
	uint64_t offset = pos < 0 ? file->offset : (uint64_t)pos;
	int64_t n;
	switch (file->kind) {
	case VMM_FILE_HOST:
		n = pread(file->host_fd, buf, len, (off_t)offset);
		if (n < 0)
			return -errno;
		break;
	case VMM_FILE_STDIO:
		if (pos >= 0)
			return -ESPIPE;
		for (;;) {
			n = read(file->host_fd, buf, len);
			if (n >= 0)
				break;
			if (errno != EINTR)
				return -errno;
			int64_t interrupted = guest_wait_interrupted(process);
			if (interrupted)
				return interrupted;
		}
		return n;
	case VMM_FILE_MEMFS: n = (int64_t)vmm_memfs_read(file->node, offset, buf, len); break;
	case VMM_FILE_PIPE_READ:
		if (pos >= 0)
			return -ESPIPE;
		if (len == 0)
			return 0;
		if (file->pipe->length == 0) {
			if (file->pipe->writers == 0)
				return 0;
			if (file->flags & O_NONBLOCK)
				return -EAGAIN;
			return block_until_timeout(process);
		}
		return (int64_t)vmm_pipe_read(file->pipe, buf, len);
	case VMM_FILE_NULL: return 0;
	case VMM_FILE_ZERO: memset(buf, 0, len); return (int64_t)len;
	case VMM_FILE_RANDOM: {
		size_t done = 0;
		while (done < len) {
			ssize_t got = getrandom((char *)buf + done, len - done, 0);
			if (got < 0) {
				if (errno == EINTR)
					continue;
				return done ? (int64_t)done : -errno;
			}
			done += (size_t)got;
		}
		return (int64_t)len;
	}
	case VMM_FILE_SYNTHETIC:
		if (offset >= file->size)
			n = 0;
		else {
			n = (int64_t)(file->size - offset < len ? file->size - offset : len);
			memcpy(buf, file->data + offset, (size_t)n);
		}
		break;
	case VMM_FILE_HOST_DIR:
	case VMM_FILE_MEMFS_DIR:
	case VMM_FILE_SYNTHETIC_DIR: return -EISDIR;
	case VMM_FILE_SOCKET: return pos >= 0 ? -ESPIPE : vmm_socket_receive(process, file, buf, len, 0);
	default: return -EBADF;
	}
	if (pos < 0)
		file->offset += (uint64_t)n;
	return n;
}

static int64_t file_write(struct vmm_process *process, struct vmm_file *file, const void *buf, size_t len,
			  int64_t pos)
{
	switch (file->kind) {
	case VMM_FILE_STDIO: {
		if (pos >= 0)
			return -ESPIPE;
		size_t done = 0;
		while (done < len) {
			ssize_t n = write(file->host_fd, (const char *)buf + done, len - done);
			if (n < 0) {
				if (errno == EINTR) {
					int64_t interrupted = guest_wait_interrupted(process);
					if (interrupted)
						return done ? (int64_t)done : interrupted;
					continue;
				}
				if (errno == EPIPE && done == 0)
					return sigpipe(process);
				if (done == 0)
					return -errno;
				break;
			}
			done += (size_t)n;
		}
		return (int64_t)done;
	}
	case VMM_FILE_MEMFS: {
		uint64_t offset = pos >= 0                   ? (uint64_t)pos
				  : (file->flags & O_APPEND) ? file->node->size
							     : file->offset;
		int64_t n = vmm_memfs_write(file->node, offset, buf, len);
		if (n > 0 && pos < 0)
			file->offset = offset + (uint64_t)n;
		return n;
	}
	case VMM_FILE_PIPE_WRITE: {
		if (pos >= 0)
			return -ESPIPE;
		if (file->pipe->readers == 0)
			return sigpipe(process);
		if (len == 0)
			return 0;
		size_t n = vmm_pipe_write(file->pipe, buf, len);
		if (n == 0) {
			if (file->flags & O_NONBLOCK)
				return -EAGAIN;
			return block_until_timeout(process);
		}
		return (int64_t)n;
	}
	case VMM_FILE_NULL:
	case VMM_FILE_ZERO:
	case VMM_FILE_RANDOM: return (int64_t)len;
	case VMM_FILE_SOCKET: return pos >= 0 ? -ESPIPE : vmm_socket_send(process, file, buf, len, 0);
	case VMM_FILE_HOST_DIR:
	case VMM_FILE_MEMFS_DIR:
	case VMM_FILE_SYNTHETIC_DIR: return -EISDIR;
	default: return -EBADF;
	}
}

/* What one read or write moves: the file and the position (< 0: the
 * file's own offset). */
struct file_io {
	struct vmm_file *file;
	int64_t pos;
};

static int64_t move_read(struct vmm_process *process, void *context, void *buf, size_t len, uint64_t done)
{
	struct file_io *io = context;
	return file_read(process, io->file, buf, len, io->pos < 0 ? -1 : io->pos + (int64_t)done);
}

static int64_t move_write(struct vmm_process *process, void *context, void *buf, size_t len, uint64_t done)
{
	struct file_io *io = context;
	return file_write(process, io->file, buf, len, io->pos < 0 ? -1 : io->pos + (int64_t)done);
}

/* A read may take a second piece only from files whose reads never block. */
static bool reads_never_block(const struct vmm_file *file)
{
	switch (file->kind) {
	case VMM_FILE_HOST:
	case VMM_FILE_MEMFS:
	case VMM_FILE_ZERO:
	case VMM_FILE_RANDOM:
	case VMM_FILE_SYNTHETIC: return true;
	default: return false;
	}
}

/* Moves [addr, addr+len) of guest memory to or from `file`. */
static int64_t file_transfer(struct vmm_process *process, struct vmm_file *file, uint64_t addr, uint64_t len,
			     int64_t pos, bool writing)
{
	struct file_io context = {file, pos};
	struct guest_io io = {
		.move = writing ? move_write : move_read,
		.context = &context,
		.to_guest = !writing,
		.piecewise = writing || reads_never_block(file),
	};
	return guest_io(process, &io, addr, len);
}

static int64_t do_read(struct vmm_process *process, uint64_t fd, uint64_t addr, uint64_t len, int64_t pos)
{
	struct vmm_file *file = vmm_fd_get(&process->fds, fd);
	if (!file || !can_read(file))
		return -EBADF;
	if (len > MAX_RW_COUNT)
		len = MAX_RW_COUNT;
	return file_transfer(process, file, addr, len, pos, false);
}

static int64_t do_write(struct vmm_process *process, uint64_t fd, uint64_t addr, uint64_t len, int64_t pos)
{
	struct vmm_file *file = vmm_fd_get(&process->fds, fd);
	if (!file || !can_write(file))
		return -EBADF;
	if (len > MAX_RW_COUNT)
		len = MAX_RW_COUNT;
	return file_transfer(process, file, addr, len, pos, true);
}

SYSCALL(read)
{
	return do_read(process, args[0], args[1], args[2], -1);
}
SYSCALL(write)
{
	return do_write(process, args[0], args[1], args[2], -1);
}

SYSCALL(pread64)
{
	if ((int64_t)args[3] < 0)
		return -EINVAL;
	return do_read(process, args[0], args[1], args[2], (int64_t)args[3]);
}

SYSCALL(pwrite64)
{
	if ((int64_t)args[3] < 0)
		return -EINVAL;
	return do_write(process, args[0], args[1], args[2], (int64_t)args[3]);
}

static int64_t do_vector_io(struct vmm_process *process, const uint64_t *args, bool writing)
{
	struct vmm_file *file = vmm_fd_get(&process->fds, args[0]);
	if (!file || !(writing ? can_write(file) : can_read(file)))
		return -EBADF;
	uint64_t count = args[2];
	if (count > IOV_MAX_COUNT)
		return -EINVAL;
	struct iovec iov[IOV_MAX_COUNT];
	if (count && guest_copy_in(process, iov, args[1], count * sizeof *iov) < 0)
		return -EFAULT;
	uint64_t total = 0;
	for (uint64_t i = 0; i < count; i++) {
		if ((uint64_t)iov[i].iov_len > MAX_RW_COUNT - total)
			iov[i].iov_len = MAX_RW_COUNT - total;
		if (guest_check(process, (uint64_t)(uintptr_t)iov[i].iov_base, iov[i].iov_len) < 0)
			return -EFAULT;
		total += iov[i].iov_len;
	}
	int64_t done = 0;
	for (uint64_t i = 0; i < count; i++) {
		if (iov[i].iov_len == 0)
			continue;
		int64_t n = file_transfer(process, file, (uint64_t)(uintptr_t)iov[i].iov_base, iov[i].iov_len,
					  -1, writing);
		if (n < 0)
			return done ? done : n;
		done += n;
		if ((uint64_t)n < iov[i].iov_len || process->exit_kind != VMM_EXIT_RUNNING)
			break;
	}
	return done;
}

SYSCALL(readv)
{
	return do_vector_io(process, args, false);
}
SYSCALL(writev)
{
	return do_vector_io(process, args, true);
}

static int64_t do_open(struct vmm_process *process, int64_t dirfd, uint64_t path_addr, uint64_t flags,
		       uint64_t mode)
{
	char path[VMM_PATH_MAX];
	int rc = guest_path_at(process, dirfd, path_addr, path);
	if (rc < 0)
		return rc;
	if ((flags & O_TMPFILE) == O_TMPFILE)
		return -EOPNOTSUPP;
	struct vmm_file *file;
	rc = vmm_path_open(&process->layers, path, (int)flags, (uint32_t)mode & ~process->umask & 07777,
			   &file);
	if (rc < 0)
		return rc;
	file->flags = (int)(flags & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_DIRECTORY | O_NOATIME | O_PATH));
	int fd = vmm_fd_install(&process->fds, file, 0, flags & O_CLOEXEC);
	if (fd < 0)
		vmm_file_unref(file);
	return fd;
}

SYSCALL(open)
{
	return do_open(process, AT_FDCWD, args[0], args[1], args[2]);
}
SYSCALL(openat)
{
	return do_open(process, (int64_t)(int32_t)args[0], args[1], args[2], args[3]);
}
SYSCALL(close)
{
	return vmm_fd_close(&process->fds, args[0]);
}

static int64_t copy_stat_out(struct vmm_process *process, uint64_t addr, struct stat *st)
{
	return guest_copy_out(process, addr, st, sizeof *st);
}

static int64_t do_stat_at(struct vmm_process *process, int64_t dirfd, uint64_t path_addr, struct stat *st,
			  uint64_t flags)
{
	if (flags & ~(uint64_t)(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE))
		return -EINVAL;
	char raw[2];
	if ((flags & AT_EMPTY_PATH) && guest_copy_in(process, raw, path_addr, 1) == 0 && raw[0] == '\0') {
		if ((int)dirfd == AT_FDCWD)
			return vmm_path_stat(&process->layers, process->cwd, true, st);
		struct vmm_file *file = vmm_fd_get(&process->fds, (uint64_t)dirfd);
		return file ? vmm_file_stat(file, st) : -EBADF;
	}
	char path[VMM_PATH_MAX];
	int rc = guest_path_at(process, dirfd, path_addr, path);
	if (rc < 0)
		return rc;
	return vmm_path_stat(&process->layers, path, !(flags & AT_SYMLINK_NOFOLLOW), st);
}

SYSCALL(stat)
{
	struct stat st;
	int64_t rc = do_stat_at(process, AT_FDCWD, args[0], &st, 0);
	return rc < 0 ? rc : copy_stat_out(process, args[1], &st);
}

SYSCALL(lstat)
{
	struct stat st;
	int64_t rc = do_stat_at(process, AT_FDCWD, args[0], &st, AT_SYMLINK_NOFOLLOW);
	return rc < 0 ? rc : copy_stat_out(process, args[1], &st);
}

SYSCALL(fstat)
{
	struct vmm_file *file = vmm_fd_get(&process->fds, args[0]);
	if (!file)
		return -EBADF;
	struct stat st;
	int rc = vmm_file_stat(file, &st);
	return rc < 0 ? rc : copy_stat_out(process, args[1], &st);
}

SYSCALL(newfstatat)
{
	struct stat st;
	int64_t rc = do_stat_at(process, (int64_t)(int32_t)args[0], args[1], &st, args[3]);
	return rc < 0 ? rc : copy_stat_out(process, args[2], &st);
}

SYSCALL(statx)
{
	struct stat st;
	int64_t rc = do_stat_at(process, (int64_t)(int32_t)args[0], args[1], &st, args[2]);
	if (rc < 0)
		return rc;
	struct statx sx;
	memset(&sx, 0, sizeof sx);
	sx.stx_mask = STATX_BASIC_STATS;
	sx.stx_blksize = (uint32_t)st.st_blksize;
	sx.stx_nlink = (uint32_t)st.st_nlink;
	sx.stx_uid = st.st_uid;
	sx.stx_gid = st.st_gid;
	sx.stx_mode = (uint16_t)st.st_mode;
	sx.stx_ino = st.st_ino;
	sx.stx_size = (uint64_t)st.st_size;
	sx.stx_blocks = (uint64_t)st.st_blocks;
	sx.stx_atime.tv_sec = st.st_atim.tv_sec;
	sx.stx_atime.tv_nsec = (uint32_t)st.st_atim.tv_nsec;
	sx.stx_mtime.tv_sec = st.st_mtim.tv_sec;
	sx.stx_mtime.tv_nsec = (uint32_t)st.st_mtim.tv_nsec;
	sx.stx_ctime.tv_sec = st.st_ctim.tv_sec;
	sx.stx_ctime.tv_nsec = (uint32_t)st.st_ctim.tv_nsec;
	sx.stx_rdev_major = major(st.st_rdev);
	sx.stx_rdev_minor = minor(st.st_rdev);
	sx.stx_dev_major = major(st.st_dev);
	sx.stx_dev_minor = minor(st.st_dev);
	return guest_copy_out(process, args[4], &sx, sizeof sx);
}

SYSCALL(lseek)
{
	struct vmm_file *file = vmm_fd_get(&process->fds, args[0]);
	if (!file)
		return -EBADF;
	int64_t offset = (int64_t)args[1];
	int whence = (int)args[2];
	switch (file->kind) {
	case VMM_FILE_HOST_DIR:
	case VMM_FILE_STDIO: {
		off_t r = lseek(file->host_fd, offset, whence);
		return r < 0 ? -errno : r;
	}
	case VMM_FILE_PIPE_READ:
	case VMM_FILE_PIPE_WRITE:
	case VMM_FILE_SOCKET: return -ESPIPE;
	case VMM_FILE_NULL:
	case VMM_FILE_ZERO:
	case VMM_FILE_RANDOM: return 0;
	default: break;
	}
	struct stat st;
	int rc = vmm_file_stat(file, &st);
	if (rc < 0)
		return rc;
	int64_t base;
	switch (whence) {
	case SEEK_SET: base = 0; break;
	case SEEK_CUR: base = (int64_t)file->offset; break;
	case SEEK_END: base = st.st_size; break;
	case SEEK_DATA:
		if (offset < 0 || offset >= st.st_size)
			return -ENXIO;
		file->offset = (uint64_t)offset;
		return offset;
	case SEEK_HOLE:
		if (offset < 0 || offset >= st.st_size)
			return -ENXIO;
		file->offset = (uint64_t)st.st_size;
		return st.st_size;
	default: return -EINVAL;
	}
	if ((offset > 0 && base > INT64_MAX - offset) || base + offset < 0)
		return -EINVAL;
	file->offset = (uint64_t)(base + offset);
	return (int64_t)file->offset;
}

static int64_t do_access(struct vmm_process *process, int64_t dirfd, uint64_t path_addr, uint64_t mode,
			 uint64_t flags)
{
	if (mode & ~(uint64_t)(R_OK | W_OK | X_OK))
		return -EINVAL;
	if (flags & ~(uint64_t)(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))
		return -EINVAL;
	char path[VMM_PATH_MAX];
	int rc = guest_path_at(process, dirfd, path_addr, path);
	if (rc < 0)
		return rc;
	struct stat st;
	rc = vmm_path_stat(&process->layers, path, !(flags & AT_SYMLINK_NOFOLLOW), &st);
	if (rc < 0)
		return rc;
	struct vmm_place place;
	vmm_path_place(&process->layers, path, &place);
	if ((mode & W_OK) && place.kind == VMM_PLACE_LAYER)
		return -EROFS;
	if ((mode & W_OK) && place.kind != VMM_PLACE_TMP && place.kind != VMM_PLACE_DEVICE)
		return -EACCES;
	if ((mode & X_OK) && !S_ISDIR(st.st_mode) && !(st.st_mode & 0111))
		return -EACCES;
	return 0;
}

SYSCALL(access)
{
	return do_access(process, AT_FDCWD, args[0], args[1], 0);
}
SYSCALL(faccessat)
{
	return do_access(process, (int64_t)(int32_t)args[0], args[1], args[2], 0);
}
SYSCALL(faccessat2)
{
	return do_access(process, (int64_t)(int32_t)args[0], args[1], args[2], args[3]);
}

static int64_t do_pipe(struct vmm_process *process, uint64_t fds_addr, uint64_t flags)
{
	if (flags & ~(uint64_t)(O_CLOEXEC | O_NONBLOCK | O_DIRECT))
		return -EINVAL;
	if (guest_check(process, fds_addr, 2 * sizeof(int)) < 0)
		return -EFAULT;
	struct vmm_pipe *pipe = vmm_pipe_new();
	if (!pipe)
		return -ENOMEM;
	int nonblock = (int)(flags & O_NONBLOCK);
	struct vmm_file *reader = vmm_file_new(VMM_FILE_PIPE_READ, O_RDONLY | nonblock);
	struct vmm_file *writer = vmm_file_new(VMM_FILE_PIPE_WRITE, O_WRONLY | nonblock);
	if (!reader || !writer) {
		free(reader);
		free(writer);
		pipe->readers = pipe->writers = 1;
		vmm_pipe_close_end(pipe, false);
		vmm_pipe_close_end(pipe, true);
		return -ENOMEM;
	}
	reader->pipe = pipe;
	writer->pipe = pipe;
	int fds[2];
	fds[0] = vmm_fd_install(&process->fds, reader, 0, flags & O_CLOEXEC);
	if (fds[0] < 0) {
		vmm_file_unref(reader);
		vmm_file_unref(writer);
		return fds[0];
	}
	fds[1] = vmm_fd_install(&process->fds, writer, 0, flags & O_CLOEXEC);
	if (fds[1] < 0) {
		vmm_fd_close(&process->fds, (uint64_t)fds[0]);
		vmm_file_unref(writer);
		return fds[1];
	}
	return guest_copy_out(process, fds_addr, fds, sizeof fds);
}

SYSCALL(pipe)
{
	return do_pipe(process, args[0], 0);
}
SYSCALL(pipe2)
{
	return do_pipe(process, args[0], args[1]);
}

SYSCALL(dup)
{
	struct vmm_file *file = vmm_fd_get(&process->fds, args[0]);
	if (!file)
		return -EBADF;
	int fd = vmm_fd_install(&process->fds, vmm_file_ref(file), 0, false);
	if (fd < 0)
		vmm_file_unref(file);
	return fd;
}

static int64_t do_dup3(struct vmm_process *process, uint64_t old_fd, uint64_t new_fd, uint64_t flags)
{
	if (flags & ~(uint64_t)O_CLOEXEC)
		return -EINVAL;
	struct vmm_file *file = vmm_fd_get(&process->fds, old_fd);
	if (!file)
		return -EBADF;
	if (new_fd >= VMM_FD_MAX)
		return -EBADF;
	return vmm_fd_install_at(&process->fds, vmm_file_ref(file), (int)new_fd, flags & O_CLOEXEC);
}

SYSCALL(dup2)
{
	if (args[0] == args[1])
		return vmm_fd_get(&process->fds, args[0]) ? (int64_t)args[1] : -EBADF;
	return do_dup3(process, args[0], args[1], 0);
}

SYSCALL(dup3)
{
	if (args[0] == args[1])
		return -EINVAL;
	return do_dup3(process, args[0], args[1], args[2]);
}

SYSCALL(fcntl)
{
	struct vmm_fd_slot *slot = vmm_fd_slot(&process->fds, args[0]);
	if (!slot)
		return -EBADF;
	struct vmm_file *file = slot->file;
	uint64_t arg = args[2];
	switch ((int)args[1]) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC: {
		if (arg >= VMM_FD_MAX)
			return -EINVAL;
		int fd = vmm_fd_install(&process->fds, vmm_file_ref(file), (int)arg,
					(int)args[1] == F_DUPFD_CLOEXEC);
		if (fd < 0)
			vmm_file_unref(file);
		return fd;
	}
	case F_GETFD: return slot->cloexec ? FD_CLOEXEC : 0;
	case F_SETFD: slot->cloexec = arg & FD_CLOEXEC; return 0;
	case F_GETFL: return file->flags;
	case F_SETFL: {
		int changeable = O_APPEND | O_NONBLOCK | O_NOATIME;
		file->flags = (file->flags & ~changeable) | ((int)arg & changeable);
		return 0;
	}
	case F_GETLK: {
		struct flock lock;
		if (guest_copy_in(process, &lock, arg, sizeof lock) < 0)
			return -EFAULT;
		lock.l_type = F_UNLCK; /* one process: nothing else can hold a lock */
		return guest_copy_out(process, arg, &lock, sizeof lock);
	}
	case F_SETLK:
	case F_SETLKW: return guest_check(process, arg, sizeof(struct flock));
	case F_GETPIPE_SZ:
		return (file->kind == VMM_FILE_PIPE_READ || file->kind == VMM_FILE_PIPE_WRITE)
			       ? VMM_PIPE_CAPACITY
			       : -EBADF;
	default: return -EINVAL;
	}
}

SYSCALL(ioctl)
{
	struct vmm_fd_slot *slot = vmm_fd_slot(&process->fds, args[0]);
	if (!slot)
		return -EBADF;
	struct vmm_file *file = slot->file;
	unsigned long request = (unsigned long)(uint32_t)args[1];
	switch (request) {
	case FIOCLEX: slot->cloexec = true; return 0;
	case FIONCLEX: slot->cloexec = false; return 0;
	case FIONBIO: {
		int on;
		if (guest_copy_in(process, &on, args[2], sizeof on) < 0)
			return -EFAULT;
		file->flags = on ? (file->flags | O_NONBLOCK) : (file->flags & ~O_NONBLOCK);
		return 0;
	}
	case FIONREAD: {
		if (file->kind != VMM_FILE_PIPE_READ)
			return -ENOTTY;
		int available = (int)file->pipe->length;
		return guest_copy_out(process, args[2], &available, sizeof available);
	}
	case TCGETS:
	case TIOCGWINSZ: {
		/* Only questions about the VMM's own terminal pass to the host. */
		if (file->kind != VMM_FILE_STDIO)
			return -ENOTTY;
		uint8_t answer[64];
		size_t size = request == TCGETS ? 36 : sizeof(struct winsize);
		if (guest_check(process, args[2], size) < 0)
			return -EFAULT;
		if (ioctl(file->host_fd, request, answer) < 0)
			return -errno;
		return guest_copy_out(process, args[2], answer, size);
	}
	default: return -ENOTTY;
	}
}

static size_t put_dirent(uint8_t *buf, size_t room, uint64_t ino, uint64_t next, uint8_t type,
			 const char *name)
{
	size_t name_len = strlen(name);
	size_t reclen = (19 + name_len + 1 + 7) & ~(size_t)7;
	if (reclen > room)
		return 0;
	memset(buf, 0, reclen);
	memcpy(buf, &ino, 8);
	memcpy(buf + 8, &next, 8);
	uint16_t reclen16 = (uint16_t)reclen;
	memcpy(buf + 16, &reclen16, 2);
	buf[18] = type;
	memcpy(buf + 19, name, name_len);
	return reclen;
}

static const char *synthetic_entry(const char *path, uint64_t index)
{
	static const char *const dev[] = {"null", "zero", "random", "urandom", NULL};
	static const char *const proc[] = {"self", NULL};
	static const char *const self[] = {"exe", NULL};
	const char *const *list = strcmp(path, "/dev") == 0 ? dev : strcmp(path, "/proc") == 0 ? proc : self;
	for (uint64_t i = 0; list[i]; i++)
		if (i == index)
			return list[i];
	return NULL;
}

SYSCALL(getdents64)
{
	struct vmm_file *file = vmm_fd_get(&process->fds, args[0]);
	if (!file)
		return -EBADF;
	if (!is_directory_kind(file->kind))
		return -ENOTDIR;
	uint64_t count = args[2] > BOUNCE_SIZE ? BOUNCE_SIZE : args[2];
	if (guest_check(process, args[1], count) < 0)
		return -EFAULT;
	uint8_t out[BOUNCE_SIZE];
	if (file->kind == VMM_FILE_HOST_DIR) {
		long n = syscall(SYS_getdents64, file->host_fd, out, (size_t)count);
		if (n < 0)
			return -errno;
		return guest_copy_out(process, args[1], out, (size_t)n) < 0 ? -EFAULT : n;
	}
	size_t used = 0;
	for (;;) {
		uint64_t index = file->offset;
		const char *name;
		uint64_t ino = 1;
		uint8_t type = DT_DIR;
		struct vmm_memfs_node *child = NULL;
		if (index == 0)
			name = ".";
		else if (index == 1)
			name = "..";
		else if (file->kind == VMM_FILE_MEMFS_DIR) {
			child = vmm_memfs_child(file->node, index - 2);
			if (!child)
				break;
			name = child->name;
			ino = child->ino;
			type = child->is_dir ? DT_DIR : DT_REG;
		} else {
			name = synthetic_entry(file->path, index - 2);
			if (!name)
				break;
			type = strcmp(file->path, "/dev") == 0 ? DT_CHR
			       : strcmp(name, "exe") == 0      ? DT_LNK
							       : DT_DIR;
		}
		size_t n = put_dirent(out + used, count - used, ino, index + 1, type, name);
		if (n == 0)
			break;
		used += n;
		file->offset = index + 1;
	}
	if (used == 0 &&
	    (file->offset < 2 ||
	     (file->kind == VMM_FILE_MEMFS_DIR ? vmm_memfs_child(file->node, file->offset - 2) != NULL
					       : synthetic_entry(file->path, file->offset - 2) != NULL)))
		return -EINVAL; /* buffer too small for one entry */
	return guest_copy_out(process, args[1], out, used) < 0 ? -EFAULT : (int64_t)used;
}

SYSCALL(getcwd)
{
	size_t len = strlen(process->cwd) + 1;
	if (args[1] < len)
		return -ERANGE;
	int rc = guest_copy_out(process, args[0], process->cwd, len);
	return rc < 0 ? rc : (int64_t)len;
}

static int64_t change_directory(struct vmm_process *process, const char *path)
{
	struct stat st;
	int rc = vmm_path_stat(&process->layers, path, true, &st);
	if (rc < 0)
		return rc;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	snprintf(process->cwd, sizeof process->cwd, "%s", path);
	return 0;
}

SYSCALL(chdir)
{
	char path[VMM_PATH_MAX];
	int rc = guest_path_at(process, AT_FDCWD, args[0], path);
	return rc < 0 ? rc : change_directory(process, path);
}

SYSCALL(fchdir)
{
	struct vmm_file *file = vmm_fd_get(&process->fds, args[0]);
	if (!file)
		return -EBADF;
	if (!is_directory_kind(file->kind) || !file->path)
		return -ENOTDIR;
	return change_directory(process, file->path);
}

static int64_t do_readlink(struct vmm_process *process, int64_t dirfd, uint64_t path_addr, uint64_t buf_addr,
			   uint64_t size)
{
	if ((int64_t)size <= 0)
		return -EINVAL;
	char path[VMM_PATH_MAX];
	int rc = guest_path_at(process, dirfd, path_addr, path);
	if (rc < 0)
		return rc;
	char target[VMM_PATH_MAX];
	int64_t n = vmm_path_readlink(&process->layers, path, target,
				      size < sizeof target ? (size_t)size : sizeof target);
	if (n < 0)
		return n;
	rc = guest_copy_out(process, buf_addr, target, (size_t)n);
	return rc < 0 ? rc : n;
}

SYSCALL(readlink)
{
	return do_readlink(process, AT_FDCWD, args[0], args[1], args[2]);
}
SYSCALL(readlinkat)
{
	return do_readlink(process, (int64_t)(int32_t)args[0], args[1], args[2], args[3]);
}

/* Why a change to the namespace outside /tmp fails: EEXIST/ENOENT as Linux
 * would decide them, else the layer is read-only. */
static int64_t read_only_answer(struct vmm_process *process, const char *path, bool creating)
{
	struct stat st;
	int rc = vmm_path_stat(&process->layers, path, false, &st);
	if (creating)
		return rc == 0 ? -EEXIST : -EROFS;
	return rc < 0 ? rc : -EROFS;
}

static int64_t do_mkdir(struct vmm_process *process, int64_t dirfd, uint64_t path_addr, uint64_t mode)
{
	char path[VMM_PATH_MAX];
	int rc = guest_path_at(process, dirfd, path_addr, path);
	if (rc < 0)
		return rc;
	struct vmm_place place;
	vmm_path_place(&process->layers, path, &place);
	if (place.kind != VMM_PLACE_TMP)
		return read_only_answer(process, path, true);
	struct vmm_memfs_node *node;
	return vmm_memfs_create(&process->layers.tmp, place.rel, true,
				(uint32_t)mode & ~process->umask & 07777, &node);
}

SYSCALL(mkdir)
{
	return do_mkdir(process, AT_FDCWD, args[0], args[1]);
}
SYSCALL(mkdirat)
{
	return do_mkdir(process, (int64_t)(int32_t)args[0], args[1], args[2]);
}

static int64_t do_remove(struct vmm_process *process, int64_t dirfd, uint64_t path_addr, bool dir)
{
	char path[VMM_PATH_MAX];
	int rc = guest_path_at(process, dirfd, path_addr, path);
	if (rc < 0)
		return rc;
	struct vmm_place place;
	vmm_path_place(&process->layers, path, &place);
	if (place.kind != VMM_PLACE_TMP)
		return read_only_answer(process, path, false);
	return vmm_memfs_remove(&process->layers.tmp, place.rel, dir);
}

SYSCALL(rmdir)
{
	return do_remove(process, AT_FDCWD, args[0], true);
}
SYSCALL(unlink)
{
	return do_remove(process, AT_FDCWD, args[0], false);
}

SYSCALL(unlinkat)
{
	if (args[2] & ~(uint64_t)AT_REMOVEDIR)
		return -EINVAL;
	return do_remove(process, (int64_t)(int32_t)args[0], args[1], args[2] & AT_REMOVEDIR);
}

static int64_t do_rename(struct vmm_process *process, int64_t old_dirfd, uint64_t old_addr, int64_t new_dirfd,
			 uint64_t new_addr, uint64_t flags)
{
	if (flags & ~(uint64_t)RENAME_NOREPLACE)
		return -EINVAL;
	char from[VMM_PATH_MAX], to[VMM_PATH_MAX];
	int rc = guest_path_at(process, old_dirfd, old_addr, from);
	if (rc < 0)
		return rc;
	rc = guest_path_at(process, new_dirfd, new_addr, to);
	if (rc < 0)
		return rc;
	struct vmm_place from_place, to_place;
	vmm_path_place(&process->layers, from, &from_place);
	vmm_path_place(&process->layers, to, &to_place);
	if (from_place.kind != VMM_PLACE_TMP)
		return read_only_answer(process, from, false);
	if (to_place.kind != VMM_PLACE_TMP)
		return -EXDEV;
	if (flags & RENAME_NOREPLACE) {
		struct vmm_memfs_node *existing;
		if (vmm_memfs_lookup(&process->layers.tmp, to_place.rel, &existing) == 0)
			return -EEXIST;
	}
	return vmm_memfs_rename(&process->layers.tmp, from_place.rel, to_place.rel);
}

SYSCALL(rename)
{
	return do_rename(process, AT_FDCWD, args[0], AT_FDCWD, args[1], 0);
}
SYSCALL(renameat)
{
	return do_rename(process, (int64_t)(int32_t)args[0], args[1], (int64_t)(int32_t)args[2], args[3], 0);
}
SYSCALL(renameat2)
{
	return do_rename(process, (int64_t)(int32_t)args[0], args[1], (int64_t)(int32_t)args[2], args[3],
			 args[4]);
}

SYSCALL(ftruncate)
{
	struct vmm_file *file = vmm_fd_get(&process->fds, args[0]);
	if (!file)
		return -EBADF;
	if ((int64_t)args[1] < 0 || file->kind != VMM_FILE_MEMFS || !can_write(file))
		return -EINVAL;
	return vmm_memfs_truncate(file->node, args[1]);
}

SYSCALL(fsync)
{
	return vmm_fd_get(&process->fds, args[0]) ? 0 : -EBADF;
}

SYSCALL(umask)
{
	(void)args;
	uint32_t old = process->umask;
	process->umask = (uint32_t)args[0] & 0777;
	return old;
}

static short poll_ready(struct vmm_file *file, short events)
{
	short ready = 0;
	switch (file->kind) {
	case VMM_FILE_PIPE_READ:
		if (file->pipe->length > 0)
			ready |= POLLIN;
		if (file->pipe->writers == 0)
			ready |= POLLHUP;
		break;
	case VMM_FILE_PIPE_WRITE:
		if (file->pipe->readers == 0)
			ready |= POLLERR;
		else if (file->pipe->length < VMM_PIPE_CAPACITY)
			ready |= POLLOUT;
		break;
	case VMM_FILE_SOCKET:
		if (file->socket_connected && file->host_fd < 0)
			ready |= POLLIN | POLLHUP | POLLERR; /* broken: reads give EOF */
		else
			ready |= POLLOUT | POLLHUP; /* never connected */
		break;
	case VMM_FILE_STDIO: return 0; /* asked of the host */
	default: ready |= POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM; break;
	}
	return ready & (events | POLLHUP | POLLERR | POLLNVAL);
}

static int64_t do_poll(struct vmm_process *process, uint64_t fds_addr, uint64_t nfds, int64_t timeout_ms)
{
	if (nfds > VMM_FD_MAX)
		return -EINVAL;
	struct pollfd fds[VMM_FD_MAX];
	if (nfds && guest_copy_in(process, fds, fds_addr, nfds * sizeof *fds) < 0)
		return -EFAULT;
	struct pollfd host[VMM_FD_MAX];
	int host_index[VMM_FD_MAX];
	nfds_t host_count = 0;
	int64_t ready = 0;
	for (uint64_t i = 0; i < nfds; i++) {
		fds[i].revents = 0;
		if (fds[i].fd < 0)
			continue;
		struct vmm_file *file = vmm_fd_get(&process->fds, (uint64_t)fds[i].fd);
		if (!file)
			fds[i].revents = POLLNVAL;
		else if (file->kind == VMM_FILE_STDIO ||
			 (file->kind == VMM_FILE_SOCKET && file->host_fd >= 0)) {
			host[host_count].fd = file->host_fd;
			host[host_count].events = fds[i].events;
			host_index[host_count++] = (int)i;
		} else
			fds[i].revents = poll_ready(file, fds[i].events);
		if (fds[i].revents)
			ready++;
	}
	if (host_count > 0) {
		int wait_ms = ready ? 0 : (timeout_ms < 0 ? -1 : (int)timeout_ms);
		int n;
		while ((n = poll(host, host_count, wait_ms)) < 0 && errno == EINTR) {
			int64_t interrupted = guest_wait_interrupted(process);
			if (interrupted)
				return interrupted;
		}
		for (nfds_t h = 0; n > 0 && h < host_count; h++) {
			fds[host_index[h]].revents = host[h].revents;
			if (host[h].revents)
				ready++;
		}
	} else if (!ready && timeout_ms != 0) {
		if (timeout_ms < 0)
			return block_until_timeout(process);
		struct timespec pause_for = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000};
		while (nanosleep(&pause_for, &pause_for) < 0 && errno == EINTR) {
			int64_t interrupted = guest_wait_interrupted(process);
			if (interrupted)
				return interrupted;
		}
	}
	if (nfds && guest_copy_out(process, fds_addr, fds, nfds * sizeof *fds) < 0)
		return -EFAULT;
	return ready;
}

SYSCALL(poll)
{
	return do_poll(process, args[0], args[1], (int64_t)(int32_t)args[2]);
}

SYSCALL(ppoll)
{
	int64_t timeout_ms = -1;
	if (args[2]) {
		struct timespec ts;
		if (guest_copy_in(process, &ts, args[2], sizeof ts) < 0)
			return -EFAULT;
		if (ts.tv_sec < 0 || ts.tv_nsec < 0 || ts.tv_nsec >= 1000000000)
			return -EINVAL;
		timeout_ms = ts.tv_sec > INT32_MAX / 1000
				     ? INT32_MAX
				     : ts.tv_sec * 1000 + (ts.tv_nsec + 999999) / 1000000;
	}
	return do_poll(process, args[0], args[1], timeout_ms);
}

SYSCALL(close_range)
{
	/* The kernel takes unsigned ints: upper register bits are ignored. */
	uint64_t first = (uint32_t)args[0], last = (uint32_t)args[1], flags = (uint32_t)args[2];
	if (flags & ~(uint64_t)(CLOSE_RANGE_CLOEXEC | CLOSE_RANGE_UNSHARE) || first > last)
		return -EINVAL;
	if (last >= VMM_FD_MAX)
		last = VMM_FD_MAX - 1;
	for (uint64_t fd = first; fd <= last && fd < VMM_FD_MAX; fd++) {
		if (flags & CLOSE_RANGE_CLOEXEC) {
			struct vmm_fd_slot *slot = vmm_fd_slot(&process->fds, fd);
			if (slot)
				slot->cloexec = true;
		} else {
			vmm_fd_close(&process->fds, fd);
		}
	}
	return 0;
}

static int64_t fill_statfs(struct vmm_process *process, uint64_t addr, bool tmp)
{
	struct statfs sf;
	memset(&sf, 0, sizeof sf);
	sf.f_type = tmp ? TMPFS_MAGIC_NUMBER : LAYER_FS_MAGIC;
	sf.f_bsize = 4096;
	sf.f_frsize = 4096;
	sf.f_namelen = 255;
	if (tmp) {
		struct vmm_memory_map *mm = &process->mm;
		sf.f_blocks = mm->limit_bytes / 4096;
		uint64_t used = mm->mapped_bytes + mm->extra_bytes;
		sf.f_bfree = sf.f_bavail = used < mm->limit_bytes ? (mm->limit_bytes - used) / 4096 : 0;
	} else {
		sf.f_flags = ST_RDONLY;
	}
	return guest_copy_out(process, addr, &sf, sizeof sf);
}

SYSCALL(statfs)
{
	char path[VMM_PATH_MAX];
	int rc = guest_path_at(process, AT_FDCWD, args[0], path);
	if (rc < 0)
		return rc;
	struct stat st;
	rc = vmm_path_stat(&process->layers, path, true, &st);
	if (rc < 0)
		return rc;
	struct vmm_place place;
	vmm_path_place(&process->layers, path, &place);
	return fill_statfs(process, args[1], place.kind == VMM_PLACE_TMP);
}

SYSCALL(fstatfs)
{
	struct vmm_file *file = vmm_fd_get(&process->fds, args[0]);
	if (!file)
		return -EBADF;
	return fill_statfs(process, args[1],
			   file->kind == VMM_FILE_MEMFS || file->kind == VMM_FILE_MEMFS_DIR);
}
