/* The in-memory /tmp of memfs.h: a tree of nodes with growable buffers,
 * each byte of capacity charged to the guest's memory cap. */
#include "memfs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memory_map.h"

#define MEMFS_FILE_MAX (1ULL << 40)
#define MEMFS_NAME_MAX 255

/* What a node costs against the cap besides its data: the structure and
 * its name, so that empty files cannot fill the host either. */
static int64_t node_cost(size_t name_len)
{
	return (int64_t)(sizeof(struct vmm_memfs_node) + name_len + 1);
}

static struct vmm_memfs_node *node_new(struct vmm_memfs *fs, const char *name, size_t name_len, bool dir,
				       uint32_t mode)
{
	if (fs->mm && vmm_mm_charge(fs->mm, node_cost(name_len)) < 0)
		return NULL;
	fs->node_bytes += (uint64_t)node_cost(name_len);
	struct vmm_memfs_node *node = calloc(1, sizeof *node);
	if (!node) {
		if (fs->mm)
			vmm_mm_charge(fs->mm, -node_cost(name_len));
		fs->node_bytes -= (uint64_t)node_cost(name_len);
		return NULL;
	}
	node->name = strndup(name, name_len);
	if (!node->name) {
		free(node);
		if (fs->mm)
			vmm_mm_charge(fs->mm, -node_cost(name_len));
		fs->node_bytes -= (uint64_t)node_cost(name_len);
		return NULL;
	}
	node->refs = 1;
	node->is_dir = dir;
	node->mode = mode & 07777;
	node->ino = ++fs->next_ino;
	node->fs = fs;
	clock_gettime(CLOCK_REALTIME, &node->mtime);
	return node;
}

int vmm_memfs_init(struct vmm_memfs *fs, struct vmm_memory_map *mm)
{
	memset(fs, 0, sizeof *fs);
	fs->mm = mm;
	fs->next_ino = 1000;
	fs->root = node_new(fs, "tmp", 3, true, 01777);
	return fs->root ? 0 : -ENOMEM;
}

static void free_tree(struct vmm_memfs_node *node)
{
	struct vmm_memfs_node *child = node->first_child;
	while (child) {
		struct vmm_memfs_node *next = child->next_sibling;
		child->parent = NULL;
		vmm_memfs_node_unref(child);
		child = next;
	}
	node->first_child = NULL;
	node->last_child = NULL;
}

void vmm_memfs_destroy(struct vmm_memfs *fs)
{
	if (fs->root) {
		free_tree(fs->root);
		vmm_memfs_node_unref(fs->root);
	}
	fs->root = NULL;
}

struct vmm_memfs_node *vmm_memfs_node_ref(struct vmm_memfs_node *node)
{
	node->refs++;
	return node;
}

void vmm_memfs_node_unref(struct vmm_memfs_node *node)
{
	if (--node->refs > 0)
		return;
	if (node->is_dir)
		free_tree(node);
	if (node->capacity)
		vmm_mm_charge(node->fs->mm, -(int64_t)node->capacity);
	if (node->fs->mm)
		vmm_mm_charge(node->fs->mm, -node_cost(strlen(node->name)));
	node->fs->node_bytes -= (uint64_t)node_cost(strlen(node->name));
	free(node->data);
	free(node->name);
	free(node);
}

static struct vmm_memfs_node *find_child(struct vmm_memfs_node *dir, const char *name, size_t len)
{
	for (struct vmm_memfs_node *c = dir->first_child; c; c = c->next_sibling)
		if (strlen(c->name) == len && memcmp(c->name, name, len) == 0)
			return c;
	return NULL;
}

/* Walks all but the last component; sets *leaf to the last name. */
static int walk_parent(struct vmm_memfs *fs, const char *path, struct vmm_memfs_node **parent,
		       const char **leaf, size_t *leaf_len)
{
	struct vmm_memfs_node *dir = fs->root;
	const char *p = path;
	for (;;) {
		const char *slash = strchr(p, '/');
		if (!slash) {
			*parent = dir;
			*leaf = p;
			*leaf_len = strlen(p);
			return *leaf_len > MEMFS_NAME_MAX ? -ENAMETOOLONG : 0;
		}
		struct vmm_memfs_node *next = find_child(dir, p, (size_t)(slash - p));
		if (!next)
			return -ENOENT;
		if (!next->is_dir)
			return -ENOTDIR;
		dir = next;
		p = slash + 1;
	}
}

int vmm_memfs_lookup(struct vmm_memfs *fs, const char *path, struct vmm_memfs_node **out)
{
	if (path[0] == '\0') {
		*out = fs->root;
		return 0;
	}
	struct vmm_memfs_node *parent;
	const char *leaf;
	size_t len;
	int rc = walk_parent(fs, path, &parent, &leaf, &len);
	if (rc < 0)
		return rc;
	struct vmm_memfs_node *node = find_child(parent, leaf, len);
	if (!node)
		return -ENOENT;
	*out = node;
	return 0;
}

static void link_child(struct vmm_memfs_node *dir, struct vmm_memfs_node *node)
{
	node->parent = dir;
	node->next_sibling = NULL;
	if (dir->last_child)
		dir->last_child->next_sibling = node;
	else
		dir->first_child = node;
	dir->last_child = node;
}

static void unlink_child(struct vmm_memfs_node *node)
{
	struct vmm_memfs_node *dir = node->parent, *previous = NULL;
	struct vmm_memfs_node **p = &dir->first_child;
	while (*p != node) {
		previous = *p;
		p = &(*p)->next_sibling;
	}
	*p = node->next_sibling;
	if (dir->last_child == node)
		dir->last_child = previous;
	node->parent = NULL;
	node->next_sibling = NULL;
}

int vmm_memfs_create(struct vmm_memfs *fs, const char *path, bool dir, uint32_t mode,
		     struct vmm_memfs_node **out)
{
	if (path[0] == '\0')
		return -EEXIST;
	struct vmm_memfs_node *parent;
	const char *leaf;
	size_t len;
	int rc = walk_parent(fs, path, &parent, &leaf, &len);
	if (rc < 0)
		return rc;
	if (find_child(parent, leaf, len))
		return -EEXIST;
	struct vmm_memfs_node *node = node_new(fs, leaf, len, dir, mode);
	if (!node)
		return -ENOSPC;
	link_child(parent, node);
	*out = node;
	return 0;
}

int vmm_memfs_create_in(struct vmm_memfs *fs, struct vmm_memfs_node *parent, const char *name, bool dir,
			uint32_t mode, struct vmm_memfs_node **out)
{
	size_t len = strlen(name);
	if (!parent->is_dir)
		return -ENOTDIR;
	if (len == 0 || len > MEMFS_NAME_MAX || strchr(name, '/'))
		return -EINVAL;
	struct vmm_memfs_node *node = node_new(fs, name, len, dir, mode);
	if (!node)
		return -ENOSPC;
	link_child(parent, node);
	*out = node;
	return 0;
}

int vmm_memfs_create_unlinked(struct vmm_memfs *fs, const char *name, bool dir, uint32_t mode,
			      struct vmm_memfs_node **out)
{
	size_t len = strlen(name);
	if (len > MEMFS_NAME_MAX)
		return -EINVAL;
	struct vmm_memfs_node *node = node_new(fs, name, len, dir, mode);
	if (!node)
		return -ENOSPC;
	*out = node;
	return 0;
}

int vmm_memfs_remove(struct vmm_memfs *fs, const char *path, bool dir)
{
	if (path[0] == '\0')
		return dir ? -EBUSY : -EISDIR;
	struct vmm_memfs_node *node;
	int rc = vmm_memfs_lookup(fs, path, &node);
	if (rc < 0)
		return rc;
	if (dir && !node->is_dir)
		return -ENOTDIR;
	if (!dir && node->is_dir)
		return -EISDIR;
	if (dir && node->first_child)
		return -ENOTEMPTY;
	unlink_child(node);
	vmm_memfs_node_unref(node);
	return 0;
}

int vmm_memfs_rename(struct vmm_memfs *fs, const char *from, const char *to)
{
	struct vmm_memfs_node *node;
	int rc = vmm_memfs_lookup(fs, from, &node);
	if (rc < 0)
		return rc;
	if (node == fs->root || to[0] == '\0')
		return -EBUSY;
	/* A directory may not move into itself. */
	size_t from_len = strlen(from);
	if (node->is_dir && strncmp(to, from, from_len) == 0 && to[from_len] == '/')
		return -EINVAL;
	struct vmm_memfs_node *parent;
	const char *leaf;
	size_t len;
	rc = walk_parent(fs, to, &parent, &leaf, &len);
	if (rc < 0)
		return rc;
	struct vmm_memfs_node *target = find_child(parent, leaf, len);
	if (target == node)
		return 0;
	if (target) {
		if (target->is_dir && !node->is_dir)
			return -EISDIR;
		if (!target->is_dir && node->is_dir)
			return -ENOTDIR;
		if (target->is_dir && target->first_child)
			return -ENOTEMPTY;
	}
	int64_t growth = (int64_t)len - (int64_t)strlen(node->name);
	if (fs->mm && growth > 0 && vmm_mm_charge(fs->mm, growth) < 0)
		return -ENOSPC;
	char *name = strndup(leaf, len);
	if (!name) {
		if (fs->mm && growth > 0)
			vmm_mm_charge(fs->mm, -growth);
		return -ENOMEM;
	}
	if (fs->mm && growth < 0)
		vmm_mm_charge(fs->mm, growth);
	fs->node_bytes += (uint64_t)growth;
	if (target) {
		unlink_child(target);
		vmm_memfs_node_unref(target);
	}
	unlink_child(node);
	free(node->name);
	node->name = name;
	link_child(parent, node);
	return 0;
}

size_t vmm_memfs_read(struct vmm_memfs_node *node, uint64_t offset, void *out, size_t len)
{
	if (offset >= node->size)
		return 0;
	size_t available = node->size - (size_t)offset;
	if (len > available)
		len = available;
	memcpy(out, node->data + offset, len);
	return len;
}

static int reserve(struct vmm_memfs_node *node, uint64_t size)
{
	if (size > MEMFS_FILE_MAX)
		return -EFBIG;
	if (size <= node->capacity)
		return 0;
	uint64_t capacity = node->capacity ? node->capacity : 4096;
	while (capacity < size)
		capacity *= 2;
	int rc = vmm_mm_charge(node->fs->mm, (int64_t)(capacity - node->capacity));
	if (rc < 0) {
		capacity = (size + 4095) & ~4095ULL; /* try just what is needed */
		rc = vmm_mm_charge(node->fs->mm, (int64_t)(capacity - node->capacity));
		if (rc < 0)
			return rc;
	}
	uint8_t *data = realloc(node->data, capacity);
	if (!data) {
		vmm_mm_charge(node->fs->mm, -(int64_t)(capacity - node->capacity));
		return -ENOSPC;
	}
	node->data = data;
	node->capacity = capacity;
	return 0;
}

int64_t vmm_memfs_write(struct vmm_memfs_node *node, uint64_t offset, const void *in, size_t len)
{
	if (len == 0)
		return 0; /* never extends the file, as on Linux */
	if (offset > MEMFS_FILE_MAX || len > MEMFS_FILE_MAX - offset)
		return -EFBIG;
	int rc = reserve(node, offset + len);
	if (rc < 0)
		return rc;
	if (offset > node->size)
		memset(node->data + node->size, 0, offset - node->size);
	memcpy(node->data + offset, in, len);
	if (offset + len > node->size)
		node->size = offset + len;
	clock_gettime(CLOCK_REALTIME, &node->mtime);
	return (int64_t)len;
}

int vmm_memfs_truncate(struct vmm_memfs_node *node, uint64_t size)
{
	int rc = reserve(node, size);
	if (rc < 0)
		return rc;
	if (size > node->size)
		memset(node->data + node->size, 0, size - node->size);
	node->size = size;
	clock_gettime(CLOCK_REALTIME, &node->mtime);
	return 0;
}

void vmm_memfs_stat(struct vmm_memfs_node *node, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_dev = 0x2a;
	st->st_ino = node->ino;
	st->st_mode = (node->is_dir ? S_IFDIR : S_IFREG) | node->mode;
	st->st_nlink = node->is_dir ? 2 : 1;
	st->st_size = node->is_dir ? 4096 : (off_t)node->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((node->capacity + 511) / 512);
	st->st_mtim = st->st_ctim = st->st_atim = node->mtime;
}

struct vmm_memfs_node *vmm_memfs_child(struct vmm_memfs_node *dir, uint64_t index)
{
	struct vmm_memfs_node *c = dir->first_child;
	while (c && index > 0) {
		c = c->next_sibling;
		index--;
	}
	return c;
}
