/* The system-call dispatcher: one table from Linux x86-64 system-call
 * numbers to the handlers of each family, and the guest-memory helpers the
 * handlers share.  Numbers without a handler answer ENOSYS and, with
 * --trace, are named on stderr. */
#include "syscalls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

#include "guest_layout.h"
#include "syscall_names.h" /* generated from the kernel headers */

#define SYSCALL_TABLE_SIZE 512

static const vmm_syscall_handler syscall_table[SYSCALL_TABLE_SIZE] = {
	/* files */
	[SYS_read] = sys_read,
	[SYS_write] = sys_write,
	[SYS_open] = sys_open,
	[SYS_openat] = sys_openat,
	[SYS_close] = sys_close,
	[SYS_stat] = sys_stat,
	[SYS_fstat] = sys_fstat,
	[SYS_lstat] = sys_lstat,
	[SYS_newfstatat] = sys_newfstatat,
	[SYS_statx] = sys_statx,
	[SYS_lseek] = sys_lseek,
	[SYS_pread64] = sys_pread64,
	[SYS_pwrite64] = sys_pwrite64,
	[SYS_readv] = sys_readv,
	[SYS_writev] = sys_writev,
	[SYS_access] = sys_access,
	[SYS_faccessat] = sys_faccessat,
	[SYS_faccessat2] = sys_faccessat2,
	[SYS_pipe] = sys_pipe,
	[SYS_pipe2] = sys_pipe2,
	[SYS_dup] = sys_dup,
	[SYS_dup2] = sys_dup2,
	[SYS_dup3] = sys_dup3,
	[SYS_fcntl] = sys_fcntl,
	[SYS_ioctl] = sys_ioctl,
	[SYS_getdents64] = sys_getdents64,
	[SYS_getcwd] = sys_getcwd,
	[SYS_chdir] = sys_chdir,
	[SYS_fchdir] = sys_fchdir,
	[SYS_readlink] = sys_readlink,
	[SYS_readlinkat] = sys_readlinkat,
	[SYS_mkdir] = sys_mkdir,
	[SYS_mkdirat] = sys_mkdirat,
	[SYS_rmdir] = sys_rmdir,
	[SYS_unlink] = sys_unlink,
	[SYS_unlinkat] = sys_unlinkat,
	[SYS_rename] = sys_rename,
	[SYS_renameat] = sys_renameat,
	[SYS_renameat2] = sys_renameat2,
	[SYS_ftruncate] = sys_ftruncate,
	[SYS_fsync] = sys_fsync,
	[SYS_fdatasync] = sys_fsync,
	[SYS_umask] = sys_umask,
	[SYS_poll] = sys_poll,
	[SYS_ppoll] = sys_ppoll,
	[SYS_close_range] = sys_close_range,
	[SYS_statfs] = sys_statfs,
	[SYS_fstatfs] = sys_fstatfs,
	/* memory */
	[SYS_mmap] = sys_mmap,
	[SYS_munmap] = sys_munmap,
	[SYS_mprotect] = sys_mprotect,
	[SYS_brk] = sys_brk,
	[SYS_mremap] = sys_mremap,
	[SYS_madvise] = sys_madvise,
	[SYS_msync] = sys_msync,
	[SYS_mincore] = sys_mincore,
	/* process */
	[SYS_exit] = sys_exit,
	[SYS_exit_group] = sys_exit_group,
	[SYS_getpid] = sys_getpid,
	[SYS_gettid] = sys_gettid,
	[SYS_getppid] = sys_getppid,
	[SYS_getuid] = sys_getuid,
	[SYS_geteuid] = sys_getuid,
	[SYS_getgid] = sys_getuid,
	[SYS_getegid] = sys_getuid,
	[SYS_getpgrp] = sys_getpgrp,
	[SYS_uname] = sys_uname,
	[SYS_sysinfo] = sys_sysinfo,
	[SYS_arch_prctl] = sys_arch_prctl,
	[SYS_set_tid_address] = sys_set_tid_address,
	[SYS_set_robust_list] = sys_set_robust_list,
	[SYS_prlimit64] = sys_prlimit64,
	[SYS_getrlimit] = sys_getrlimit,
	[SYS_getrusage] = sys_getrusage,
	[SYS_getrandom] = sys_getrandom,
	[SYS_sched_getaffinity] = sys_sched_getaffinity,
	[SYS_sched_yield] = sys_sched_yield,
	[SYS_futex] = sys_futex,
	[SYS_times] = sys_times,
	[SYS_prctl] = sys_prctl,
	[SYS_getcpu] = sys_getcpu,
	/* time */
	[SYS_clock_gettime] = sys_clock_gettime,
	[SYS_clock_getres] = sys_clock_getres,
	[SYS_gettimeofday] = sys_gettimeofday,
	[SYS_time] = sys_time,
	[SYS_nanosleep] = sys_nanosleep,
	[SYS_clock_nanosleep] = sys_clock_nanosleep,
	/* signals */
	[SYS_rt_sigaction] = sys_rt_sigaction,
	[SYS_rt_sigprocmask] = sys_rt_sigprocmask,
	[SYS_rt_sigreturn] = sys_rt_sigreturn,
	[SYS_sigaltstack] = sys_sigaltstack,
	[SYS_kill] = sys_kill,
	[SYS_tgkill] = sys_tgkill,
	[SYS_tkill] = sys_tkill,
	[SYS_rt_sigpending] = sys_rt_sigpending,
	/* sockets */
	[SYS_socket] = sys_socket,
	[SYS_socketpair] = sys_socketpair,
	[SYS_connect] = sys_connect,
	[SYS_bind] = sys_bind,
	[SYS_listen] = sys_listen,
	[SYS_accept] = sys_accept,
	[SYS_accept4] = sys_accept,
	[SYS_sendto] = sys_sendto,
	[SYS_recvfrom] = sys_recvfrom,
	[SYS_sendmsg] = sys_sendmsg,
	[SYS_recvmsg] = sys_recvmsg,
	[SYS_shutdown] = sys_shutdown,
	[SYS_getsockopt] = sys_getsockopt,
	[SYS_setsockopt] = sys_setsockopt,
	[SYS_getsockname] = sys_getsockname,
	[SYS_getpeername] = sys_getpeername,
};

static const char *syscall_name(uint64_t number)
{
	if (number < sizeof vmm_syscall_names / sizeof vmm_syscall_names[0] && vmm_syscall_names[number])
		return vmm_syscall_names[number];
	return "unknown";
}

void vmm_syscall(struct vmm_process *process)
{
	struct vmm_regs *regs = &process->vm.regs;
	uint64_t number = regs->rax;
	/* Copy the arguments once; handlers never reread the registers. */
	const uint64_t args[6] = {regs->rdi, regs->rsi, regs->rdx, regs->r10, regs->r8, regs->r9};
	int64_t result = -ENOSYS;
	process->syscall_count++;
	if (number < SYSCALL_TABLE_SIZE && syscall_table[number])
		result = syscall_table[number](process, args);
	else if (process->trace)
		fprintf(stderr, "ember-vmm: unimplemented system call %llu (%s) -> ENOSYS\n",
			(unsigned long long)number, syscall_name(number));
	if (process->trace && result < 0 && result != -ENOSYS && result != -VMM_ERESTART)
		fprintf(stderr, "ember-vmm: %s(%#llx, %#llx, %#llx) -> %s\n", syscall_name(number),
			(unsigned long long)args[0], (unsigned long long)args[1], (unsigned long long)args[2],
			strerror((int)-result));
	process->restart_syscall = result == -VMM_ERESTART;
	regs->rax = process->restart_syscall ? number : (uint64_t)result;
	vmm_vm_regs_changed(&process->vm);
}

/* A guest buffer must lie in guest memory and in what the guest has
 * mapped (or its heap), as Linux requires: a call never scribbles over
 * memory the program did not ask for. */
int guest_check(struct vmm_process *process, uint64_t addr, uint64_t len)
{
	if (!vmm_mem_in_program(&process->vm, addr, len) || !vmm_mm_covers(&process->mm, addr, len))
		return -EFAULT;
	return 0;
}

int guest_copy_in(struct vmm_process *process, void *dst, uint64_t addr, size_t len)
{
	if (guest_check(process, addr, len) < 0)
		return -EFAULT;
	return vmm_mem_read(&process->vm, addr, dst, len, false);
}

int guest_copy_out(struct vmm_process *process, uint64_t addr, const void *src, size_t len)
{
	if (guest_check(process, addr, len) < 0)
		return -EFAULT;
	return vmm_mem_write(&process->vm, addr, src, len, false);
}

/* Bounce buffers up to this size are kept for the next call. */
#define SCRATCH_KEEP_MAX (16u << 20)

int guest_buffer_get(struct vmm_process *process, uint64_t addr, size_t len, bool fill,
		     struct guest_buffer *buffer)
{
	memset(buffer, 0, sizeof *buffer);
	buffer->addr = addr;
	buffer->len = len;
	if (guest_check(process, addr, len) < 0)
		return -EFAULT;
	buffer->data = vmm_mem_direct(&process->vm, addr, len);
	if (buffer->data || len == 0)
		return 0;
	if (!process->scratch_busy && len <= SCRATCH_KEEP_MAX) {
		if (process->scratch_size < len) {
			void *grown = realloc(process->scratch, len);
			if (!grown)
				return -ENOMEM;
			process->scratch = grown;
			process->scratch_size = len;
		}
		buffer->data = process->scratch;
		process->scratch_busy = true;
		buffer->scratch = true;
	} else {
		buffer->data = malloc(len);
		if (!buffer->data)
			return -ENOMEM;
	}
	buffer->bounce = true;
	if (fill && vmm_mem_read(&process->vm, addr, buffer->data, len, false) < 0) {
		guest_buffer_put(process, buffer, 0);
		return -EFAULT;
	}
	return 0;
}

int guest_buffer_put(struct vmm_process *process, struct guest_buffer *buffer, size_t written)
{
	int rc = 0;
	if (buffer->bounce) {
		if (written > buffer->len)
			written = buffer->len;
		if (written)
			rc = vmm_mem_write(&process->vm, buffer->addr, buffer->data, written, false);
		if (buffer->scratch)
			process->scratch_busy = false;
		else
			free(buffer->data);
	}
	memset(buffer, 0, sizeof *buffer);
	return rc;
}

/* The largest piece a bounce buffer carries at once. */
#define GUEST_IO_PIECE (1u << 20)

int64_t guest_io(struct vmm_process *process, const struct guest_io *io, uint64_t addr, uint64_t len)
{
	if (guest_check(process, addr, len) < 0)
		return -EFAULT;
	uint64_t done = 0;
	do {
		uint64_t piece = len - done;
		if (piece > GUEST_IO_PIECE && !vmm_mem_direct(&process->vm, addr + done, piece))
			piece = GUEST_IO_PIECE;
		struct guest_buffer buffer;
		int rc = guest_buffer_get(process, addr + done, (size_t)piece, !io->to_guest, &buffer);
		if (rc < 0)
			return done ? (int64_t)done : rc;
		int64_t n = io->move(process, io->context, buffer.data, (size_t)piece, done);
		if (n > (int64_t)piece)
			n = (int64_t)piece;
		if (guest_buffer_put(process, &buffer, io->to_guest && n > 0 ? (size_t)n : 0) < 0)
			n = -EFAULT;
		if (n < 0)
			return done ? (int64_t)done : n;
		done += (uint64_t)n;
		if ((uint64_t)n < piece || !io->piecewise || process->exit_kind != VMM_EXIT_RUNNING)
			break;
	} while (done < len);
	return (int64_t)done;
}

int guest_fill(struct vmm_process *process, uint64_t addr, int byte, uint64_t len)
{
	if (guest_check(process, addr, len) < 0)
		return -EFAULT;
	uint64_t done = 0;
	while (done < len) {
		uint64_t piece = len - done > GUEST_IO_PIECE ? GUEST_IO_PIECE : len - done;
		struct guest_buffer buffer;
		int rc = guest_buffer_get(process, addr + done, (size_t)piece, false, &buffer);
		if (rc < 0)
			return rc;
		memset(buffer.data, byte, (size_t)piece);
		if (guest_buffer_put(process, &buffer, (size_t)piece) < 0)
			return -EFAULT;
		done += piece;
	}
	return 0;
}

int guest_copy_within(struct vmm_process *process, uint64_t dst, uint64_t src, uint64_t len)
{
	uint8_t *to = vmm_mem_direct(&process->vm, dst, len), *from = vmm_mem_direct(&process->vm, src, len);
	if (to && from) {
		memmove(to, from, (size_t)len);
		return 0;
	}
	uint64_t done = 0;
	while (done < len) {
		uint64_t piece = len - done > GUEST_IO_PIECE ? GUEST_IO_PIECE : len - done;
		struct guest_buffer buffer;
		int rc = guest_buffer_get(process, src + done, (size_t)piece, true, &buffer);
		if (rc < 0)
			return rc;
		rc = vmm_mem_write(&process->vm, dst + done, buffer.data, (size_t)piece, false);
		guest_buffer_put(process, &buffer, 0);
		if (rc < 0)
			return rc;
		done += piece;
	}
	return 0;
}

int guest_string(struct vmm_process *process, uint64_t addr, char *out, size_t size)
{
	if (guest_check(process, addr, 1) < 0)
		return -EFAULT;
	/* Up to the end of the mapped run the string starts in. */
	uint64_t available = 0;
	while (available < size && vmm_mm_covers(&process->mm, addr + available, 1))
		available = ((addr + available) | (GUEST_PAGE_SIZE - 1)) + 1 - addr;
	size_t limit = available < size ? (size_t)available : size;
	/* Page by page, so that a short string costs one small copy. */
	size_t done = 0;
	while (done < limit) {
		size_t chunk = (size_t)(GUEST_PAGE_SIZE - ((addr + done) & (GUEST_PAGE_SIZE - 1)));
		if (chunk > limit - done)
			chunk = limit - done;
		if (vmm_mem_read(&process->vm, addr + done, out + done, chunk, false) < 0)
			return -EFAULT;
		const char *end = memchr(out + done, '\0', chunk);
		if (end)
			return 0;
		done += chunk;
	}
	return limit < size ? -EFAULT : -ENAMETOOLONG;
}

int guest_path_at(struct vmm_process *process, int64_t dirfd, uint64_t addr, char *out)
{
	char path[VMM_PATH_MAX];
	int rc = guest_string(process, addr, path, sizeof path);
	if (rc < 0)
		return rc;
	const char *base = process->cwd;
	if (path[0] != '/' && (int)dirfd != AT_FDCWD) {
		struct vmm_file *dir = vmm_fd_get(&process->fds, (uint64_t)dirfd);
		if (!dir)
			return -EBADF;
		if (dir->kind != VMM_FILE_HOST_DIR && dir->kind != VMM_FILE_MEMFS_DIR &&
		    dir->kind != VMM_FILE_SYNTHETIC_DIR)
			return -ENOTDIR;
		base = dir->path;
	}
	return vmm_path_join(base, path, out);
}

int64_t guest_wait_interrupted(struct vmm_process *process)
{
	if (guest_timed_out(process))
		return -EINTR;
	if (vmm_interrupt_pending)
		return -VMM_ERESTART;
	return 0;
}

int guest_timed_out(struct vmm_process *process)
{
	if (!vmm_timeout_expired)
		return 0;
	process->exit_kind = VMM_EXIT_TIMEOUT;
	return 1;
}

void vmm_process_kill(struct vmm_process *process, int signal, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(process->exit_reason, sizeof process->exit_reason, fmt, ap);
	va_end(ap);
	process->exit_kind = VMM_EXIT_SIGNAL;
	process->exit_signal = signal;
}
