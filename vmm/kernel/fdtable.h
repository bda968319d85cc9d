/* Open files and the guest's descriptor table.
 *
 * A `struct vmm_file` is an open file description (Linux's `struct file`):
 * shared by dup'd descriptors, reference counted, freed when the last
 * descriptor closes.  Its kind says what backs it — a host file in a
 * read-only layer, a /tmp node, a pipe, a VMM device, the VMM's own stdio.
 * The table maps small integers to files; every descriptor the guest passes
 * is looked up here, and anything not in the table is EBADF. */
#ifndef VMM_FDTABLE_H
#define VMM_FDTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMM_FD_MAX 1024

enum vmm_file_kind {
	VMM_FILE_HOST,      /* regular file in a layer: host_fd, read-only */
	VMM_FILE_HOST_DIR,  /* directory in a layer: host_fd */
	VMM_FILE_STDIO,     /* one of the VMM's own stdin/stdout/stderr */
	VMM_FILE_MEMFS,     /* regular file in /tmp */
	VMM_FILE_MEMFS_DIR, /* directory in /tmp */
	VMM_FILE_PIPE_READ,
	VMM_FILE_PIPE_WRITE,
	VMM_FILE_NULL,          /* /dev/null */
	VMM_FILE_ZERO,          /* /dev/zero */
	VMM_FILE_RANDOM,        /* /dev/urandom, /dev/random: the host's getrandom */
	VMM_FILE_SYNTHETIC,     /* read-only bytes made by the VMM (a /proc file) */
	VMM_FILE_SYNTHETIC_DIR, /* a directory made by the VMM (/dev, /proc) */
	VMM_FILE_SOCKET,        /* a socket: reaches nothing, or the Runtime API (host_fd) */
};

struct vmm_memfs_node;
struct vmm_pipe;

struct vmm_file {
	int refs;
	enum vmm_file_kind kind;
	int flags; /* open flags: access mode, O_APPEND, O_NONBLOCK... */
	uint64_t offset;
	int host_fd;                 /* HOST, HOST_DIR, STDIO; else -1 */
	char *path;                  /* absolute guest path it was opened by, or NULL */
	struct vmm_memfs_node *node; /* MEMFS, MEMFS_DIR */
	struct vmm_pipe *pipe;       /* PIPE_* */
	char *data;                  /* SYNTHETIC contents, owned */
	size_t size;
	int socket_domain, socket_type;
	/* A socket connected to the Runtime API (127.0.0.1:9001): host_fd is
	 * the Unix socket it is forwarded to (-1 if the connection is broken),
	 * and `unanswered` holds the bytes the guest sent since it last
	 * received any: a snapshot keeps them, and a restored VM sends them
	 * again on its new connection. */
	bool socket_connected;
	uint8_t *unanswered;
	size_t unanswered_length;
	bool unanswered_overflow; /* more than VMM_UNANSWERED_MAX: cannot be snapshotted */
};

#define VMM_UNANSWERED_MAX 65536

struct vmm_fd_slot {
	struct vmm_file *file;
	bool cloexec;
};

struct vmm_fdtable {
	struct vmm_fd_slot slots[VMM_FD_MAX];
};

/* A new file of `kind` with one reference; NULL when out of memory. */
struct vmm_file *vmm_file_new(enum vmm_file_kind kind, int flags);
struct vmm_file *vmm_file_ref(struct vmm_file *file);
/* Drops one reference; the last one closes what backs the file. */
void vmm_file_unref(struct vmm_file *file);

/* Installs `file` at the lowest free descriptor >= min_fd, taking over the
 * caller's reference.  Returns the descriptor or -EMFILE (then the caller
 * still owns its reference). */
int vmm_fd_install(struct vmm_fdtable *table, struct vmm_file *file, int min_fd, bool cloexec);
/* Installs at exactly `fd`, closing what was there (dup2/dup3). */
int vmm_fd_install_at(struct vmm_fdtable *table, struct vmm_file *file, int fd, bool cloexec);
/* The file behind a guest descriptor (borrowed), or NULL for EBADF. */
struct vmm_file *vmm_fd_get(struct vmm_fdtable *table, uint64_t fd);
struct vmm_fd_slot *vmm_fd_slot(struct vmm_fdtable *table, uint64_t fd);
/* close(2): 0 or -EBADF. */
int vmm_fd_close(struct vmm_fdtable *table, uint64_t fd);
void vmm_fd_close_all(struct vmm_fdtable *table);

#endif
