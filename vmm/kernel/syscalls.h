/* Internal interface of the system-call layer: the handler signature, the
 * helpers every handler uses to reach guest memory safely, and the handlers
 * of each family (sys_files.c, sys_memory.c, sys_process.c, sys_time.c,
 * sys_signals.c, sys_sockets.c), listed in the dispatch table of syscall.c.
 *
 * A handler receives the six argument registers and returns the value for
 * rax: a result >= 0 or -errno.  Guest memory is reached only through the
 * guest_* helpers below, which check ranges against guest memory and the
 * guest's own mappings and copy through the platform (vm.h). */
#ifndef VMM_SYSCALLS_H
#define VMM_SYSCALLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "process.h"

typedef int64_t (*vmm_syscall_handler)(struct vmm_process *process, const uint64_t *args);

/* 0 if guest range [addr, addr+len) lies in program memory and in what
 * the guest has mapped, else -EFAULT. */
int guest_check(struct vmm_process *process, uint64_t addr, uint64_t len);
/* Copies between guest and host; 0 or -EFAULT. */
int guest_copy_in(struct vmm_process *process, void *dst, uint64_t addr, size_t len);
int guest_copy_out(struct vmm_process *process, uint64_t addr, const void *src, size_t len);

/* A guest range as host memory for bulk data (file and socket I/O): the
 * VMM's own mapping where the platform has one, else a bounce buffer.
 * guest_buffer_get() checks the range (-EFAULT) and, with `fill`, copies
 * the guest's bytes in (for data going to the host); guest_buffer_put()
 * copies the first `written` bytes back to the guest (for data coming from
 * the host; 0 for none) and releases the buffer: every get is paired with
 * one put.  Never for anything the VMM validates: copy that in once. */
struct guest_buffer {
	void *data;
	uint64_t addr;
	size_t len;
	bool bounce;  /* data is a copy */
	bool scratch; /* ...in the process's reusable scratch buffer */
};
int guest_buffer_get(struct vmm_process *process, uint64_t addr, size_t len, bool fill,
		     struct guest_buffer *buffer);
int guest_buffer_put(struct vmm_process *process, struct guest_buffer *buffer, size_t written);

/* Bulk transfer between a checked guest range and a host operation, for
 * file and socket I/O.  `move` is called with host memory for the next
 * piece of the range (the whole range where the platform maps guest
 * memory into the VMM, else pieces of a bounce buffer) and `done`, the
 * bytes moved before it; it returns the bytes it moved or -errno.  With
 * `to_guest` the piece is copied back to the guest after the call (reads),
 * else filled from the guest before it (writes).  After a full piece the
 * transfer goes on only if `piecewise`: false where a second call could
 * block although the first one was satisfied (pipes, sockets, terminals).
 * Returns the total moved, or -errno if nothing was (-EFAULT for a bad
 * range).  The call is made once even for an empty range. */
struct guest_io {
	int64_t (*move)(struct vmm_process *process, void *context, void *buf, size_t len, uint64_t done);
	void *context;
	bool to_guest;
	bool piecewise;
};
int64_t guest_io(struct vmm_process *process, const struct guest_io *io, uint64_t addr, uint64_t len);
/* Sets guest range [addr, addr+len) to `byte`; 0 or -EFAULT. */
int guest_fill(struct vmm_process *process, uint64_t addr, int byte, uint64_t len);
/* Copies len bytes between two non-overlapping guest ranges (both checked
 * by the caller); 0 or -errno. */
int guest_copy_within(struct vmm_process *process, uint64_t dst, uint64_t src, uint64_t len);

/* Copies a NUL-terminated guest string of at most size-1 bytes; 0, -EFAULT
 * or -ENAMETOOLONG. */
int guest_string(struct vmm_process *process, uint64_t addr, char *out, size_t size);
/* Reads a guest path and makes it absolute against dirfd (AT_FDCWD or an
 * open directory).  0 or -errno. */
int guest_path_at(struct vmm_process *process, int64_t dirfd, uint64_t addr, char *out);
/* True (and the exit recorded) if the timeout has fired: handlers that
 * block on the host call this when interrupted. */
int guest_timed_out(struct vmm_process *process);
/* For a blocking handler woken by a signal before it did anything: -EINTR
 * if the timeout fired (the guest ends), -VMM_ERESTART if the control
 * socket wants the vCPU (the call is restarted later), else 0 (keep
 * waiting). */
int64_t guest_wait_interrupted(struct vmm_process *process);

/* Moves bytes between the guest and a socket's host side (sys_sockets.c);
 * used by read/write and the socket calls alike. */
int64_t vmm_socket_receive(struct vmm_process *process, struct vmm_file *file, void *buf, size_t len,
			   int flags);
int64_t vmm_socket_send(struct vmm_process *process, struct vmm_file *file, const void *buf, size_t len,
			int flags);
/* Connects a restored Runtime API socket to the new host socket and sends
 * its unanswered bytes again.  A failure leaves the socket broken. */
void vmm_socket_reconnect(struct vmm_process *process, struct vmm_file *file);

#define SYSCALL(name) int64_t sys_##name(struct vmm_process *process, const uint64_t *args)

/* files */
SYSCALL(read);
SYSCALL(write);
SYSCALL(open);
SYSCALL(openat);
SYSCALL(close);
SYSCALL(stat);
SYSCALL(fstat);
SYSCALL(lstat);
SYSCALL(newfstatat);
SYSCALL(statx);
SYSCALL(lseek);
SYSCALL(pread64);
SYSCALL(pwrite64);
SYSCALL(readv);
SYSCALL(writev);
SYSCALL(access);
SYSCALL(faccessat);
SYSCALL(faccessat2);
SYSCALL(pipe);
SYSCALL(pipe2);
SYSCALL(dup);
SYSCALL(dup2);
SYSCALL(dup3);
SYSCALL(fcntl);
SYSCALL(ioctl);
SYSCALL(getdents64);
SYSCALL(getcwd);
SYSCALL(chdir);
SYSCALL(fchdir);
SYSCALL(readlink);
SYSCALL(readlinkat);
SYSCALL(mkdir);
SYSCALL(mkdirat);
SYSCALL(rmdir);
SYSCALL(unlink);
SYSCALL(unlinkat);
SYSCALL(rename);
SYSCALL(renameat);
SYSCALL(renameat2);
SYSCALL(ftruncate);
SYSCALL(fsync);
SYSCALL(umask);
SYSCALL(poll);
SYSCALL(ppoll);
SYSCALL(close_range);
SYSCALL(statfs);
SYSCALL(fstatfs);
/* memory */
SYSCALL(mmap);
SYSCALL(munmap);
SYSCALL(mprotect);
SYSCALL(brk);
SYSCALL(mremap);
SYSCALL(madvise);
SYSCALL(msync);
SYSCALL(mincore);
/* process */
SYSCALL(exit);
SYSCALL(exit_group);
SYSCALL(getpid);
SYSCALL(gettid);
SYSCALL(getppid);
SYSCALL(getuid);
SYSCALL(getpgrp);
SYSCALL(uname);
SYSCALL(sysinfo);
SYSCALL(arch_prctl);
SYSCALL(set_tid_address);
SYSCALL(set_robust_list);
SYSCALL(prlimit64);
SYSCALL(getrlimit);
SYSCALL(getrusage);
SYSCALL(getrandom);
SYSCALL(sched_getaffinity);
SYSCALL(sched_yield);
SYSCALL(futex);
SYSCALL(times);
SYSCALL(prctl);
SYSCALL(getcpu);
/* time */
SYSCALL(clock_gettime);
SYSCALL(clock_getres);
SYSCALL(gettimeofday);
SYSCALL(time);
SYSCALL(nanosleep);
SYSCALL(clock_nanosleep);
/* signals */
SYSCALL(rt_sigaction);
SYSCALL(rt_sigprocmask);
SYSCALL(rt_sigreturn);
SYSCALL(sigaltstack);
SYSCALL(kill);
SYSCALL(tgkill);
SYSCALL(tkill);
SYSCALL(rt_sigpending);
/* sockets */
SYSCALL(socket);
SYSCALL(socketpair);
SYSCALL(connect);
SYSCALL(bind);
SYSCALL(listen);
SYSCALL(accept);
SYSCALL(sendto);
SYSCALL(recvfrom);
SYSCALL(sendmsg);
SYSCALL(recvmsg);
SYSCALL(shutdown);
SYSCALL(getsockopt);
SYSCALL(setsockopt);
SYSCALL(getsockname);
SYSCALL(getpeername);

#endif
