/* Routing and opening of guest paths (file_layers.h).  This is where the
 * guest's file namespace meets the host: every host file a guest reaches is
 * opened by vmm_layer_open(), confined to its layer by the kernel's
 * RESOLVE_IN_ROOT, and checked to be a plain file or directory. */
#include "file_layers.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fdtable.h"

int vmm_layers_open(struct vmm_layers *layers, const char *root, const char *task, struct ember_error *err)
{
	layers->root_fd = layers->task_fd = -1;
	layers->root_path[0] = layers->task_path[0] = '\0';
	layers->root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (layers->root_fd < 0)
		return ember_error_errno(err, errno, "open root layer `%s`", root);
	if (!realpath(root, layers->root_path)) {
		ember_error_errno(err, errno, "resolve root layer `%s`", root);
		vmm_layers_close(layers);
		return -1;
	}
	if (task) {
		layers->task_fd = open(task, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (layers->task_fd < 0 || !realpath(task, layers->task_path)) {
			ember_error_errno(err, errno, "open task layer `%s`", task);
			vmm_layers_close(layers);
			return -1;
		}
	}
	return 0;
}

void vmm_layers_close(struct vmm_layers *layers)
{
	if (layers->root_fd >= 0)
		close(layers->root_fd);
	if (layers->task_fd >= 0)
		close(layers->task_fd);
	layers->root_fd = layers->task_fd = -1;
}

int vmm_path_join(const char *base, const char *path, char out[VMM_PATH_MAX])
{
	if (path[0] == '\0')
		return -ENOENT;
	char joined[2 * VMM_PATH_MAX];
	size_t path_len = strnlen(path, VMM_PATH_MAX);
	if (path_len >= VMM_PATH_MAX)
		return -ENAMETOOLONG;
	if (path[0] == '/')
		memcpy(joined, path, path_len + 1);
	else
		snprintf(joined, sizeof joined, "%s/%s", base, path);

	/* Normalize component by component into out. */
	size_t len = 0;
	out[0] = '/';
	out[1] = '\0';
	len = 1;
	const char *p = joined;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == 1 && p[0] == '.') {
			/* skip */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			while (len > 1 && out[len - 1] != '/')
				len--;
			if (len > 1)
				len--; /* drop the slash too */
			out[len] = '\0';
		} else {
			if (n > 255)
				return -ENAMETOOLONG;
			if (len + (len > 1) + n + 1 > VMM_PATH_MAX)
				return -ENAMETOOLONG;
			if (len > 1)
				out[len++] = '/';
			memcpy(out + len, p, n);
			len += n;
			out[len] = '\0';
		}
		p += n;
	}
	return 0;
}

/* Returns the remainder if `path` is `prefix` or below it, else NULL. */
static const char *below(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);
	if (strncmp(path, prefix, n) != 0)
		return NULL;
	if (path[n] == '\0')
		return path + n;
	if (path[n] == '/')
		return path + n + 1;
	return NULL;
}

void vmm_path_place(struct vmm_layers *layers, const char *path, struct vmm_place *place)
{
	memset(place, 0, sizeof *place);
	const char *rest;
	if ((rest = below(path, "/tmp"))) {
		place->kind = VMM_PLACE_TMP;
		place->rel = rest;
	} else if (layers->task_fd >= 0 && (rest = below(path, "/var/task"))) {
		place->kind = VMM_PLACE_LAYER;
		place->layer_fd = layers->task_fd;
		place->rel = rest;
	} else if ((rest = below(path, "/dev"))) {
		place->rel = rest;
		place->kind = VMM_PLACE_DEVICE;
		if (strcmp(rest, "null") == 0)
			place->device = VMM_FILE_NULL;
		else if (strcmp(rest, "zero") == 0)
			place->device = VMM_FILE_ZERO;
		else if (strcmp(rest, "urandom") == 0 || strcmp(rest, "random") == 0)
			place->device = VMM_FILE_RANDOM;
		else if (rest[0] == '\0')
			place->kind = VMM_PLACE_SYNTHETIC_DIR;
		else
			place->kind = VMM_PLACE_ABSENT;
	} else if ((rest = below(path, "/proc"))) {
		place->rel = rest;
		if (rest[0] == '\0' || strcmp(rest, "self") == 0)
			place->kind = VMM_PLACE_SYNTHETIC_DIR;
		else if (strcmp(rest, "self/exe") == 0)
			place->kind = VMM_PLACE_PROC_EXE;
		else
			place->kind = VMM_PLACE_ABSENT;
	} else {
		place->kind = VMM_PLACE_LAYER;
		place->layer_fd = layers->root_fd;
		place->rel = path + 1;
	}
}

static long open_in_layer(int layer_fd, const char *rel, uint64_t flags)
{
	struct open_how how = {
		.flags = flags | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	long fd = syscall(SYS_openat2, layer_fd, rel[0] ? rel : ".", &how, sizeof how);
	return fd < 0 ? -errno : fd;
}

int vmm_layer_open(int layer_fd, const char *rel, int extra_flags)
{
	/* First an O_PATH open, which has no side effects even on a FIFO or a
	 * device, to learn what the path names; only a regular file or a
	 * directory is then opened for reading. */
	uint64_t lookup = (uint64_t)(O_PATH | (extra_flags & (O_DIRECTORY | O_NOFOLLOW)));
	long path_fd = open_in_layer(layer_fd, rel, lookup);
	if (path_fd < 0)
		return (int)path_fd;
	struct stat st;
	if (fstat((int)path_fd, &st) < 0) {
		int e = errno;
		close((int)path_fd);
		return -e;
	}
	bool is_link_itself = (extra_flags & O_PATH) && S_ISLNK(st.st_mode);
	if (S_ISLNK(st.st_mode) && !is_link_itself) {
		close((int)path_fd);
		return -ELOOP; /* O_NOFOLLOW on a symlink, as open(2) answers */
	}
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !is_link_itself) {
		close((int)path_fd);
		return -EACCES; /* devices, sockets and FIFOs in a layer are never served */
	}
	if (extra_flags & O_PATH)
		return (int)path_fd;
	/* Reopen for reading; O_NONBLOCK so that a FIFO swapped in meanwhile
	 * cannot block us, and the identity must match what was checked. */
	long fd = open_in_layer(
		layer_fd, rel,
		(uint64_t)(O_RDONLY | O_NOCTTY | O_NONBLOCK | (extra_flags & (O_DIRECTORY | O_NOFOLLOW))));
	struct stat again;
	int rc = 0;
	if (fd < 0)
		rc = (int)fd;
	else if (fstat((int)fd, &again) < 0)
		rc = -errno;
	else if (again.st_dev != st.st_dev || again.st_ino != st.st_ino)
		rc = -EAGAIN; /* the layer changed under us */
	else if (fcntl((int)fd, F_SETFL, 0) < 0)
		rc = -errno;
	close((int)path_fd);
	if (rc < 0) {
		if (fd >= 0)
			close((int)fd);
		return rc;
	}
	return (int)fd;
}

static int open_layer_file(const struct vmm_place *place, const char *path, int flags, struct vmm_file **out)
{
	int access = flags & O_ACCMODE;
	int host_fd = vmm_layer_open(place->layer_fd, place->rel, flags & (O_DIRECTORY | O_NOFOLLOW));
	if (host_fd == -ENOENT && (flags & O_CREAT))
		return -EROFS;
	if (host_fd == -ELOOP && (flags & O_NOFOLLOW))
		return -ELOOP;
	if (host_fd < 0)
		return host_fd;
	struct stat st;
	fstat(host_fd, &st);
	int rc = 0;
	if ((flags & O_CREAT) && (flags & O_EXCL))
		rc = -EEXIST;
	else if (S_ISDIR(st.st_mode) && (access != O_RDONLY || (flags & O_CREAT)))
		rc = -EISDIR;
	else if (access != O_RDONLY || (flags & O_TRUNC))
		rc = -EROFS;
	if (rc < 0) {
		close(host_fd);
		return rc;
	}
	struct vmm_file *file = vmm_file_new(S_ISDIR(st.st_mode) ? VMM_FILE_HOST_DIR : VMM_FILE_HOST, flags);
	char *copy = strdup(path);
	if (!file || !copy) {
		free(copy);
		free(file);
		close(host_fd);
		return -ENOMEM;
	}
	file->host_fd = host_fd;
	file->path = copy;
	*out = file;
	return 0;
}

static int open_tmp_file(struct vmm_layers *layers, const struct vmm_place *place, const char *path,
			 int flags, uint32_t mode, struct vmm_file **out)
{
	struct vmm_memfs_node *node;
	int rc = vmm_memfs_lookup(&layers->tmp, place->rel, &node);
	if (rc == -ENOENT && (flags & O_CREAT)) {
		if (flags & O_DIRECTORY)
			return -EINVAL;
		rc = vmm_memfs_create(&layers->tmp, place->rel, false, mode, &node);
	} else if (rc == 0 && (flags & O_CREAT) && (flags & O_EXCL)) {
		return -EEXIST;
	}
	if (rc < 0)
		return rc;
	int access = flags & O_ACCMODE;
	if (node->is_dir && (access != O_RDONLY || (flags & O_CREAT)))
		return -EISDIR;
	if (!node->is_dir && (flags & O_DIRECTORY))
		return -ENOTDIR;
	if (!node->is_dir && (flags & O_TRUNC) && access != O_RDONLY) {
		rc = vmm_memfs_truncate(node, 0);
		if (rc < 0)
			return rc;
	}
	struct vmm_file *file = vmm_file_new(node->is_dir ? VMM_FILE_MEMFS_DIR : VMM_FILE_MEMFS, flags);
	char *copy = strdup(path);
	if (!file || !copy) {
		free(copy);
		free(file);
		return -ENOMEM;
	}
	file->node = vmm_memfs_node_ref(node);
	file->path = copy;
	*out = file;
	return 0;
}

int vmm_path_open(struct vmm_layers *layers, const char *path, int flags, uint32_t mode,
		  struct vmm_file **out)
{
	struct vmm_place place;
	vmm_path_place(layers, path, &place);
	struct vmm_file *file = NULL;
	switch (place.kind) {
	case VMM_PLACE_LAYER: return open_layer_file(&place, path, flags, out);
	case VMM_PLACE_TMP: return open_tmp_file(layers, &place, path, flags, mode, out);
	case VMM_PLACE_DEVICE:
		if (flags & O_DIRECTORY)
			return -ENOTDIR;
		file = vmm_file_new((enum vmm_file_kind)place.device, flags);
		break;
	case VMM_PLACE_SYNTHETIC_DIR:
		if ((flags & O_ACCMODE) != O_RDONLY)
			return -EISDIR;
		file = vmm_file_new(VMM_FILE_SYNTHETIC_DIR, flags);
		break;
	case VMM_PLACE_PROC_EXE: {
		char target[VMM_PATH_MAX];
		memcpy(target, layers->exe_path, sizeof target);
		return vmm_path_open(layers, target, flags & ~(O_CREAT | O_TRUNC), mode, out);
	}
	case VMM_PLACE_ABSENT: return (flags & O_CREAT) ? -EACCES : -ENOENT;
	}
	if (!file)
		return -ENOMEM;
	file->path = strdup(path);
	if (!file->path) {
		vmm_file_unref(file);
		return -ENOMEM;
	}
	*out = file;
	return 0;
}

static void device_stat(int device, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_mode = S_IFCHR | 0666;
	st->st_dev = 5;
	st->st_nlink = 1;
	st->st_blksize = 4096;
	unsigned minor = device == VMM_FILE_NULL ? 3 : device == VMM_FILE_ZERO ? 5 : 9;
	st->st_rdev = makedev(1, minor);
	st->st_ino = minor;
}

static void synthetic_dir_stat(struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_mode = S_IFDIR | 0555;
	st->st_nlink = 2;
	st->st_dev = 4;
	st->st_ino = 1;
	st->st_blksize = 4096;
}

int vmm_path_stat(struct vmm_layers *layers, const char *path, bool follow, struct stat *st)
{
	struct vmm_place place;
	vmm_path_place(layers, path, &place);
	switch (place.kind) {
	case VMM_PLACE_LAYER: {
		int fd = vmm_layer_open(place.layer_fd, place.rel, O_PATH | (follow ? 0 : O_NOFOLLOW));
		if (fd < 0)
			return fd;
		int rc = fstat(fd, st) < 0 ? -errno : 0;
		close(fd);
		return rc;
	}
	case VMM_PLACE_TMP: {
		struct vmm_memfs_node *node;
		int rc = vmm_memfs_lookup(&layers->tmp, place.rel, &node);
		if (rc == 0)
			vmm_memfs_stat(node, st);
		return rc;
	}
	case VMM_PLACE_DEVICE: device_stat(place.device, st); return 0;
	case VMM_PLACE_SYNTHETIC_DIR: synthetic_dir_stat(st); return 0;
	case VMM_PLACE_PROC_EXE:
		if (follow) {
			char target[VMM_PATH_MAX];
			memcpy(target, layers->exe_path, sizeof target);
			return vmm_path_stat(layers, target, true, st);
		}
		memset(st, 0, sizeof *st);
		st->st_mode = S_IFLNK | 0777;
		st->st_nlink = 1;
		st->st_size = (off_t)strlen(layers->exe_path);
		return 0;
	case VMM_PLACE_ABSENT: break;
	}
	return -ENOENT;
}

int64_t vmm_path_readlink(struct vmm_layers *layers, const char *path, char *buf, size_t size)
{
	struct vmm_place place;
	vmm_path_place(layers, path, &place);
	if (place.kind == VMM_PLACE_PROC_EXE) {
		size_t n = strlen(layers->exe_path);
		if (n > size)
			n = size;
		memcpy(buf, layers->exe_path, n);
		return (int64_t)n;
	}
	if (place.kind == VMM_PLACE_ABSENT)
		return -ENOENT;
	if (place.kind != VMM_PLACE_LAYER) {
		struct stat st;
		int rc = vmm_path_stat(layers, path, false, &st);
		return rc < 0 ? rc : -EINVAL;
	}
	int fd = vmm_layer_open(place.layer_fd, place.rel, O_PATH | O_NOFOLLOW);
	if (fd < 0)
		return fd;
	ssize_t n = readlinkat(fd, "", buf, size);
	int rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc == -ENOENT)
		rc = -EINVAL; /* not a symlink */
	return rc < 0 ? rc : (int64_t)n;
}

int vmm_file_stat(struct vmm_file *file, struct stat *st)
{
	switch (file->kind) {
	case VMM_FILE_HOST:
	case VMM_FILE_HOST_DIR:
	case VMM_FILE_STDIO: return fstat(file->host_fd, st) < 0 ? -errno : 0;
	case VMM_FILE_MEMFS:
	case VMM_FILE_MEMFS_DIR: vmm_memfs_stat(file->node, st); return 0;
	case VMM_FILE_PIPE_READ:
	case VMM_FILE_PIPE_WRITE:
	case VMM_FILE_SOCKET:
		memset(st, 0, sizeof *st);
		st->st_mode = (file->kind == VMM_FILE_SOCKET ? S_IFSOCK : S_IFIFO) | 0600;
		st->st_nlink = 1;
		st->st_blksize = 4096;
		st->st_dev = 0xc;
		st->st_ino = (ino_t)(uintptr_t)file;
		return 0;
	case VMM_FILE_NULL:
	case VMM_FILE_ZERO:
	case VMM_FILE_RANDOM: device_stat(file->kind, st); return 0;
	case VMM_FILE_SYNTHETIC:
		memset(st, 0, sizeof *st);
		st->st_mode = S_IFREG | 0444;
		st->st_size = (off_t)file->size;
		st->st_nlink = 1;
		return 0;
	case VMM_FILE_SYNTHETIC_DIR: synthetic_dir_stat(st); return 0;
	}
	return -EBADF;
}
