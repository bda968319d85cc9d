/* The snapshot of one microVM as plain data, and its state file.
 *
 * A snapshot directory holds two files: `memory`, guest memory byte for
 * byte (sparse: zero pages are holes), mapped MAP_PRIVATE on restore; and
 * `state`, everything else, encoded by snap_state_encode():
 *
 *   header (32 bytes): magic "EMBERSNP", u32 format version, u32 header
 *   size, u64 body length, u32 CRC-32 of the body, u32 section count;
 *   body: sections, each u32 type, u32 reserved, u64 length, payload.
 *
 * Every part of the VM saves into its own section: the CPU it depends on,
 * the VM, the vCPU, the process, the memory map, /tmp, pipes, open files,
 * the descriptor table, the clock.  snap_state_decode() is the single
 * validator of an untrusted state file: it checks every length, count,
 * index, address and path before anything is built from it, so restore
 * code only ever sees a consistent struct snap_state.
 *
 * Ownership: a decoded or captured snap_state owns its arrays and strings;
 * release it with snap_state_free(). */
#ifndef SNAP_STATE_H
#define SNAP_STATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#define SNAP_FORMAT_VERSION  1
#define SNAP_STATE_FILE      "state"
#define SNAP_MEMORY_FILE     "memory"
#define SNAP_STATE_MAX_BYTES (1ULL << 31) /* refuse larger state files outright */
#define SNAP_PATH_MAX        4096
#define SNAP_MAX_MSRS        16
#define SNAP_MAX_CPUID       256
#define SNAP_MAX_FILES       1024
#define SNAP_MAX_NODES       1000000
#define SNAP_MAX_PIPES       1024
#define SNAP_MAX_SYNTHETIC   65536
#define SNAP_NODE_ROOT       0xfffffffeu /* parent of /tmp itself */
#define SNAP_NODE_UNLINKED   0xffffffffu /* removed from /tmp but still open */
#define SNAP_SIGNALS         64

/* What the snapshot depends on: restoring on a CPU that differs in any of
 * these would hand the guest features that vanished under it. */
struct snap_cpu_identity {
	char vendor[13];
	uint32_t signature;   /* CPUID.1:EAX, family/model/stepping */
	uint32_t features[6]; /* CPUID.1 ECX EDX, CPUID.7.0 EBX ECX EDX, CPUID.80000001 ECX */
	uint64_t xcr0;
	uint32_t kvm_api_version;
	uint32_t stub_user_mode; /* the syscall stub runs with user CS (PVM) */
};

struct snap_msr {
	uint32_t index;
	uint64_t data;
};

struct snap_vcpu {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave xsave;
	struct kvm_xcrs xcrs;
	uint32_t msr_count;
	struct snap_msr msrs[SNAP_MAX_MSRS];
	uint32_t cpuid_count;
	struct kvm_cpuid_entry2 cpuid[SNAP_MAX_CPUID];
};

struct snap_signal_action {
	uint64_t handler, flags, restorer, mask;
};

struct snap_process {
	char root_path[SNAP_PATH_MAX]; /* host directories of the layers */
	char task_path[SNAP_PATH_MAX]; /* "" without a task layer */
	char cwd[SNAP_PATH_MAX];       /* guest paths, absolute and normalized */
	char exe_path[SNAP_PATH_MAX];
	uint32_t umask;
	uint64_t tid_address, fs_base, gs_base, signal_mask;
	struct snap_signal_action actions[SNAP_SIGNALS + 1]; /* [0] unused */
	uint64_t altstack[3];
	char thread_name[16];
};

struct snap_region {
	uint64_t start, end;
	uint32_t prot, flags;
};

struct snap_memory {
	uint64_t mem_size;
	uint64_t brk_start, brk_current, stack_low, stack_top, mmap_top;
	uint32_t region_count;
	struct snap_region *regions;
};

struct snap_node {
	uint32_t parent; /* index of the parent, SNAP_NODE_ROOT or SNAP_NODE_UNLINKED */
	char name[256];
	bool is_dir;
	uint32_t mode;
	int64_t mtime_sec, mtime_nsec;
	uint64_t size;
	uint8_t *data; /* size bytes */
};

struct snap_pipe {
	uint64_t length;
	uint8_t *bytes; /* length bytes, oldest first */
};

/* An open file description.  `kind` uses enum vmm_file_kind's values. */
struct snap_file {
	uint32_t kind;
	int32_t flags;
	uint64_t offset;
	char path[SNAP_PATH_MAX]; /* guest path it was opened by, "" if none */
	uint64_t host_size;       /* HOST, HOST_DIR: identity checked on restore */
	int64_t host_mtime_sec, host_mtime_nsec;
	uint32_t stdio_fd; /* STDIO: 0, 1 or 2 */
	uint32_t node;     /* MEMFS*: index into nodes */
	uint32_t pipe;     /* PIPE_*: index into pipes */
	uint32_t socket_domain, socket_type;
	uint32_t socket_connected; /* SOCKET: 1 = connected to the Runtime API */
	uint64_t data_size;        /* SYNTHETIC: contents; SOCKET: unanswered bytes */
	uint8_t *data;
};

struct snap_fd {
	uint32_t fd;
	uint32_t file; /* index into files */
	bool cloexec;
};

struct snap_state {
	struct snap_cpu_identity cpu;
	struct snap_vcpu vcpu;
	struct snap_process process;
	struct snap_memory memory;
	uint32_t node_count;
	struct snap_node *nodes; /* nodes[0] is /tmp; parents come before children */
	uint32_t pipe_count;
	struct snap_pipe *pipes;
	uint32_t file_count;
	struct snap_file *files;
	uint32_t fd_count;
	struct snap_fd *fds;
	int64_t monotonic_ns, realtime_ns; /* the guest's clocks when saved */
};

/* Encodes `state` into a newly allocated buffer (*out, *length; the caller
 * frees it).  -1 with err when out of memory. */
int snap_state_encode(const struct snap_state *state, uint8_t **out, size_t *length, struct ember_error *err);

/* Decodes and validates an untrusted state file of `length` bytes into
 * *state (zeroed first).  -1 with err naming the first flaw; nothing needs
 * freeing then.  Does not compare with this host: see snap_cpu_check(). */
int snap_state_decode(const uint8_t *bytes, size_t length, struct snap_state *state, struct ember_error *err);

void snap_state_free(struct snap_state *state);

/* Reads this host's CPU identity. */
void snap_cpu_identify(struct snap_cpu_identity *cpu);
/* -1 with err if a snapshot taken on `saved` cannot run on this host. */
int snap_cpu_check(const struct snap_cpu_identity *saved, struct ember_error *err);

/* Reads a whole state file (at most SNAP_STATE_MAX_BYTES) and decodes it. */
int snap_state_load(const char *path, struct snap_state *state, struct ember_error *err);

#endif
