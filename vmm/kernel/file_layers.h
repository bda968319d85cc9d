/* The guest's file namespace: which backing store a guest path names, and
 * the one way the VMM opens host files for a guest.
 *
 * Paths are made absolute and normalized lexically ("." and ".." removed,
 * ".." at / stays at /), then routed by prefix: /tmp is the in-memory
 * memfs, /var/task the task layer, /dev and /proc/self a few entries made
 * by the VMM, everything else the root layer.  Inside a layer, host
 * resolution uses openat2(RESOLVE_IN_ROOT), so symlinks and ".." never leave
 * the layer's directory; only regular files and directories are served, and
 * never for writing. */
#ifndef VMM_FILE_LAYERS_H
#define VMM_FILE_LAYERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "error.h"
#include "memfs.h"

#define VMM_PATH_MAX 4096

struct vmm_file;

enum vmm_place_kind {
	VMM_PLACE_LAYER,         /* a host layer: layer_fd + rel */
	VMM_PLACE_TMP,           /* memfs: rel inside /tmp */
	VMM_PLACE_DEVICE,        /* /dev/null, zero, urandom, random */
	VMM_PLACE_PROC_EXE,      /* /proc/self/exe */
	VMM_PLACE_SYNTHETIC_DIR, /* /dev, /proc, /proc/self */
	VMM_PLACE_ABSENT,        /* under /dev or /proc but not provided */
};

struct vmm_place {
	enum vmm_place_kind kind;
	int layer_fd;
	const char *rel; /* within the layer or /tmp, no leading '/'; "" = its top */
	int device;      /* VMM_FILE_NULL, _ZERO or _RANDOM for DEVICE */
	bool read_only;
};

struct vmm_layers {
	int root_fd; /* --root, O_PATH directory */
	int task_fd; /* --task, or -1 */
	struct vmm_memfs tmp;
	char exe_path[VMM_PATH_MAX];  /* guest path of the program */
	char root_path[VMM_PATH_MAX]; /* host directories, absolute (for snapshots) */
	char task_path[VMM_PATH_MAX]; /* "" without a task layer */
};

/* Opens the layer directories.  `task` may be NULL. */
int vmm_layers_open(struct vmm_layers *layers, const char *root, const char *task, struct ember_error *err);
void vmm_layers_close(struct vmm_layers *layers);

/* Joins `path` onto absolute `base` (ignored if path is absolute) and
 * normalizes.  0, -ENOENT for an empty path, -ENAMETOOLONG. */
int vmm_path_join(const char *base, const char *path, char out[VMM_PATH_MAX]);

/* Routes an absolute normalized path.  `place->rel` points into `path`. */
void vmm_path_place(struct vmm_layers *layers, const char *path, struct vmm_place *place);

/* Opens `rel` in a host layer read-only with `extra_flags` (O_DIRECTORY,
 * O_NOFOLLOW, O_PATH allowed) confined to the layer.  Returns a host fd or
 * -errno. */
int vmm_layer_open(int layer_fd, const char *rel, int extra_flags);

/* Opens any guest path as a new file for the guest (one reference).
 * flags are the guest's open flags.  -errno on failure. */
int vmm_path_open(struct vmm_layers *layers, const char *path, int flags, uint32_t mode,
		  struct vmm_file **out);

/* stat/lstat of a guest path.  -errno. */
int vmm_path_stat(struct vmm_layers *layers, const char *path, bool follow, struct stat *st);

/* readlink of a guest path into buf (no NUL); returns the length or -errno. */
int64_t vmm_path_readlink(struct vmm_layers *layers, const char *path, char *buf, size_t size);

/* stat of an open file.  -errno. */
int vmm_file_stat(struct vmm_file *file, struct stat *st);

#endif
