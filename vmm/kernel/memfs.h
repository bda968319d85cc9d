/* The guest's writable /tmp: an in-memory tree of directories and regular
 * files whose bytes are charged against the VM's memory cap.
 *
 * Paths given here are relative to /tmp, already normalized by the caller
 * (no ".", "..", empty or doubled components; "" is /tmp itself).  Nodes
 * Each node also costs its structure and name against the cap, so that
 * empty files cannot fill the host either.  Nodes
 * are reference counted: the tree holds one reference while a node is
 * linked, each open file one more, so an unlinked file stays readable by
 * whoever still has it open, as on Linux. */
#ifndef VMM_MEMFS_H
#define VMM_MEMFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct vmm_memory_map;
struct vmm_memfs;

struct vmm_memfs_node {
	int refs;
	bool is_dir;
	uint32_t mode; /* permission bits */
	uint64_t ino;
	char *name;
	struct vmm_memfs *fs;
	struct vmm_memfs_node *parent, *first_child, *last_child, *next_sibling;
	uint8_t *data;
	size_t size, capacity;
	struct timespec mtime;
	uint32_t save_index; /* scratch for snapshots: its index in the saved list */
};

struct vmm_memfs {
	struct vmm_memfs_node *root;
	uint64_t next_ino;
	struct vmm_memory_map *mm; /* charged for file bytes and nodes */
	uint64_t node_bytes;       /* the part of the charge that is nodes and names */
};

int vmm_memfs_init(struct vmm_memfs *fs, struct vmm_memory_map *mm);
void vmm_memfs_destroy(struct vmm_memfs *fs);

/* Finds a node (borrowed).  -ENOENT, -ENOTDIR. */
int vmm_memfs_lookup(struct vmm_memfs *fs, const char *path, struct vmm_memfs_node **out);
/* Creates a file or directory (borrowed result).  -EEXIST, -ENOENT, -ENOTDIR,
 * -ENAMETOOLONG, -ENOSPC when the cap is reached. */
int vmm_memfs_create(struct vmm_memfs *fs, const char *path, bool dir, uint32_t mode,
		     struct vmm_memfs_node **out);
/* For snapshot restore: creates `name` directly in directory `parent`
 * (borrowed result), or a node in no directory with one reference held by
 * the caller (an unlinked file that is still open).  -ENOSPC.  The caller
 * guarantees the name is new in `parent` (snap_state_decode checks it), so
 * restoring a large /tmp takes linear time. */
int vmm_memfs_create_in(struct vmm_memfs *fs, struct vmm_memfs_node *parent, const char *name, bool dir,
			uint32_t mode, struct vmm_memfs_node **out);
int vmm_memfs_create_unlinked(struct vmm_memfs *fs, const char *name, bool dir, uint32_t mode,
			      struct vmm_memfs_node **out);
/* unlink (dir=false) or rmdir (dir=true).  -EISDIR, -ENOTDIR, -ENOTEMPTY, -EBUSY for /tmp. */
int vmm_memfs_remove(struct vmm_memfs *fs, const char *path, bool dir);
/* rename(2) within /tmp, replacing a compatible target. */
int vmm_memfs_rename(struct vmm_memfs *fs, const char *from, const char *to);

struct vmm_memfs_node *vmm_memfs_node_ref(struct vmm_memfs_node *node);
void vmm_memfs_node_unref(struct vmm_memfs_node *node);

/* Reads up to len bytes at offset; returns the count. */
size_t vmm_memfs_read(struct vmm_memfs_node *node, uint64_t offset, void *out, size_t len);
/* Writes at offset, growing the file; returns the count or -ENOSPC/-EFBIG. */
int64_t vmm_memfs_write(struct vmm_memfs_node *node, uint64_t offset, const void *in, size_t len);
/* Sets the size; -ENOSPC/-EFBIG when growing past the cap. */
int vmm_memfs_truncate(struct vmm_memfs_node *node, uint64_t size);
void vmm_memfs_stat(struct vmm_memfs_node *node, struct stat *st);
/* The index-th child of a directory, or NULL past the end. */
struct vmm_memfs_node *vmm_memfs_child(struct vmm_memfs_node *dir, uint64_t index);

#endif
