/* Unit test of the guest's in-memory /tmp (vmm/memfs.c), run on the host:
 * the tree operations and their errors, reads and writes with holes,
 * truncation, and the memory cap — every byte of file capacity, and every
 * node's structure and name, charged to the memory map, ENOSPC when full,
 * refunds when the last reference to an unlinked file goes.  One line per
 * check: "PASS name" or "FAIL name: detail"; exits non-zero on any failure.
 * Needs no /dev/kvm. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "guest_layout.h"
#include "memfs.h"
#include "memory_map.h"
#include "unit_test.h"
#include "vm.h"

#define PAGE ((uint64_t)GUEST_PAGE_SIZE)
#define KIB ((uint64_t)1024)
#define MIB ((uint64_t)1 << 20)
#define FILE_MAX ((uint64_t)1 << 40) /* memfs.c's MEMFS_FILE_MAX */

struct fixture {
	struct vmm_vm vm;
	struct vmm_memory_map mm;
	struct vmm_memfs fs;
};

static int fixture_open(struct fixture *f)
{
	if (unit_fake_vm(&f->vm, 32 * MIB) < 0)
		return -1;
	vmm_mm_init(&f->mm, &f->vm);
	if (vmm_memfs_init(&f->fs, &f->mm) < 0) {
		unit_fake_vm_free(&f->vm);
		return -1;
	}
	return 0;
}

static void fixture_close(struct fixture *f)
{
	vmm_memfs_destroy(&f->fs);
	vmm_mm_destroy(&f->mm);
	unit_fake_vm_free(&f->vm);
}

static struct vmm_memfs_node *lookup(struct fixture *f, const char *path)
{
	struct vmm_memfs_node *node = NULL;
	return vmm_memfs_lookup(&f->fs, path, &node) == 0 ? node : NULL;
}

static struct vmm_memfs_node *create(struct fixture *f, const char *path, bool dir)
{
	struct vmm_memfs_node *node = NULL;
	return vmm_memfs_create(&f->fs, path, dir, dir ? 0755 : 0644, &node) == 0 ? node : NULL;
}

static bool all_bytes(const uint8_t *bytes, size_t len, uint8_t value)
{
	for (size_t i = 0; i < len; i++)
		if (bytes[i] != value)
			return false;
	return true;
}

/* The capacity of every node reachable from `dir`, recursively. */
static uint64_t tree_capacity(const struct vmm_memfs_node *dir)
{
	uint64_t total = dir->capacity;
	for (const struct vmm_memfs_node *c = dir->first_child; c; c = c->next_sibling)
		total += tree_capacity(c);
	return total;
}

/* What memfs.c's node_cost() charges for a node besides its data: the
 * structure and its NUL-terminated name. */
static uint64_t node_cost(size_t name_len)
{
	return (uint64_t)sizeof(struct vmm_memfs_node) + name_len + 1;
}

/* node_cost of every node reachable from `dir`, `dir` included. */
static uint64_t tree_node_bytes(const struct vmm_memfs_node *dir)
{
	uint64_t total = node_cost(strlen(dir->name));
	for (const struct vmm_memfs_node *c = dir->first_child; c; c = c->next_sibling)
		total += tree_node_bytes(c);
	return total;
}

/* The part of the charge that is file data, not nodes and names. */
static uint64_t data_charge(const struct fixture *f)
{
	return f->mm.extra_bytes - f->fs.node_bytes;
}

/* Everything charged against the cap, as memory_map.c counts it. */
static uint64_t cap_used(const struct fixture *f)
{
	return f->mm.mapped_bytes + f->mm.extra_bytes + (f->mm.brk_current - f->mm.brk_start);
}

/* Bytes still free under the cap. */
static uint64_t room(const struct fixture *f)
{
	uint64_t used = cap_used(f);
	return used < f->mm.limit_bytes ? f->mm.limit_bytes - used : 0;
}

/* Moves the cap so that exactly `bytes` are left beyond what is charged now. */
static void set_room(struct fixture *f, uint64_t bytes)
{
	f->mm.limit_bytes = cap_used(f) + bytes;
}

/* True when the charge splits exactly into the node costs and capacities of
 * the tree, plus `open_nodes` and `open_capacity` for unlinked nodes still
 * held open, and stays under the cap; otherwise says why in `why`. */
static bool accounting_ok(const struct fixture *f, uint64_t open_nodes, uint64_t open_capacity, char *why,
			  size_t why_size)
{
	uint64_t nodes = (f->fs.root ? tree_node_bytes(f->fs.root) : 0) + open_nodes;
	uint64_t capacity = (f->fs.root ? tree_capacity(f->fs.root) : 0) + open_capacity;
	if (f->fs.node_bytes > f->mm.extra_bytes) {
		snprintf(why, why_size, "node_bytes %" PRIu64 " > charged %" PRIu64, f->fs.node_bytes,
			 f->mm.extra_bytes);
		return false;
	}
	if (f->fs.node_bytes != nodes || data_charge(f) != capacity) {
		snprintf(why, why_size,
			 "node_bytes %" PRIu64 " (nodes cost %" PRIu64 "), data charged %" PRIu64
			 " (capacities %" PRIu64 ")",
			 f->fs.node_bytes, nodes, data_charge(f), capacity);
		return false;
	}
	if (cap_used(f) > f->mm.limit_bytes) {
		snprintf(why, why_size, "used %" PRIu64 " > limit %" PRIu64, cap_used(f), f->mm.limit_bytes);
		return false;
	}
	return true;
}

static void check_accounting(const struct fixture *f, const char *name, uint64_t open_nodes, uint64_t open_capacity)
{
	char why[240] = "";
	bool ok = accounting_ok(f, open_nodes, open_capacity, why, sizeof why);
	unit_check(ok, name, "%s", why);
}

static void test_tree(void)
{
	struct fixture f;
	if (!unit_check(fixture_open(&f) == 0, "memfs_init", "fixture set-up failed"))
		return;
	struct vmm_memfs_node *node = NULL;
	unit_check(lookup(&f, "") == f.fs.root && f.fs.root->is_dir, "memfs_root", "lookup(\"\") is not the root");
	/* /tmp itself is a node, charged like any other. */
	unit_check(f.fs.node_bytes == node_cost(strlen(f.fs.root->name)) && f.mm.extra_bytes == f.fs.node_bytes,
		   "memfs_init_charges_root", "node_bytes %" PRIu64 " charged %" PRIu64 ", root costs %" PRIu64,
		   f.fs.node_bytes, f.mm.extra_bytes, node_cost(strlen(f.fs.root->name)));
	uint64_t nodes = f.fs.node_bytes;
	struct vmm_memfs_node *a = create(&f, "a", false);
	unit_check(a && lookup(&f, "a") == a && !a->is_dir && a->mode == 0644, "memfs_create_file", "node %p", (void *)a);
	unit_check(f.fs.node_bytes == nodes + node_cost(1) && data_charge(&f) == 0, "memfs_create_charges_node",
		   "node_bytes %" PRIu64 " (was %" PRIu64 ") data %" PRIu64, f.fs.node_bytes, nodes, data_charge(&f));
	nodes = f.fs.node_bytes;
	uint64_t charged = f.mm.extra_bytes;
	UNIT_EXPECT_EQ("memfs_create_exists", vmm_memfs_create(&f.fs, "a", false, 0644, &node), -EEXIST);
	UNIT_EXPECT_EQ("memfs_create_dir_exists", vmm_memfs_create(&f.fs, "a", true, 0755, &node), -EEXIST);
	UNIT_EXPECT_EQ("memfs_create_root", vmm_memfs_create(&f.fs, "", true, 0755, &node), -EEXIST);
	UNIT_EXPECT_EQ("memfs_create_no_parent", vmm_memfs_create(&f.fs, "missing/x", false, 0644, &node), -ENOENT);
	UNIT_EXPECT_EQ("memfs_create_parent_is_file", vmm_memfs_create(&f.fs, "a/x", false, 0644, &node), -ENOTDIR);
	UNIT_EXPECT_EQ("memfs_lookup_missing", vmm_memfs_lookup(&f.fs, "nothing", &node), -ENOENT);
	UNIT_EXPECT_EQ("memfs_lookup_through_file", vmm_memfs_lookup(&f.fs, "a/x", &node), -ENOTDIR);
	UNIT_EXPECT_EQ("memfs_lookup_deep_missing", vmm_memfs_lookup(&f.fs, "x/y/z", &node), -ENOENT);
	unit_check(f.fs.node_bytes == nodes && f.mm.extra_bytes == charged, "memfs_create_errors_charge_nothing",
		   "node_bytes %" PRIu64 " (was %" PRIu64 ") charged %" PRIu64 " (was %" PRIu64 ")", f.fs.node_bytes,
		   nodes, f.mm.extra_bytes, charged);
	struct vmm_memfs_node *d = create(&f, "d", true);
	struct vmm_memfs_node *e = create(&f, "d/e", true);
	struct vmm_memfs_node *g = create(&f, "d/e/g", false);
	unit_check(d && e && g && lookup(&f, "d/e/g") == g && g->parent == e && e->parent == d,
		   "memfs_nested", "nested create or lookup failed");
	/* A directory costs the same as a file; only the leaf name counts. */
	unit_check(f.fs.node_bytes == nodes + 3 * node_cost(1), "memfs_nested_charges_leaf_names",
		   "node_bytes %" PRIu64 ", expected %" PRIu64, f.fs.node_bytes, nodes + 3 * node_cost(1));
	unit_check(create(&f, "mode", false) && lookup(&f, "mode")->mode == 0644, "memfs_mode", "mode wrong");
	unit_check(vmm_memfs_create(&f.fs, "sticky", true, 0177777, &node) == 0 && node->mode == 07777,
		   "memfs_mode_masked", "mode %#o", node ? node->mode : 0);

	char name[300];
	memset(name, 'n', 255);
	name[255] = '\0';
	nodes = f.fs.node_bytes;
	unit_check(create(&f, name, false) != NULL, "memfs_name_255", "a 255-byte name was refused");
	unit_check(f.fs.node_bytes == nodes + node_cost(255), "memfs_name_255_charged",
		   "node_bytes %" PRIu64 ", expected %" PRIu64, f.fs.node_bytes, nodes + node_cost(255));
	nodes = f.fs.node_bytes;
	charged = f.mm.extra_bytes;
	memset(name, 'm', 256);
	name[256] = '\0';
	UNIT_EXPECT_EQ("memfs_name_256", vmm_memfs_create(&f.fs, name, false, 0644, &node), -ENAMETOOLONG);
	memcpy(name, "d/", 2);
	memset(name + 2, 'm', 256);
	name[258] = '\0';
	UNIT_EXPECT_EQ("memfs_name_256_nested", vmm_memfs_create(&f.fs, name, false, 0644, &node), -ENAMETOOLONG);
	unit_check(f.fs.node_bytes == nodes && f.mm.extra_bytes == charged, "memfs_name_too_long_charges_nothing",
		   "node_bytes %" PRIu64 " (was %" PRIu64 ")", f.fs.node_bytes, nodes);
	check_accounting(&f, "memfs_tree_accounting", 0, 0);

	/* Children are listed in creation order; NULL past the end. */
	unit_check(vmm_memfs_child(f.fs.root, 0) == a && vmm_memfs_child(f.fs.root, 1) == d &&
			   vmm_memfs_child(f.fs.root, 100) == NULL && vmm_memfs_child(f.fs.root, UINT64_MAX) == NULL &&
			   vmm_memfs_child(e, 0) == g && vmm_memfs_child(e, 1) == NULL,
		   "memfs_children", "child enumeration wrong");

	struct stat st_a, st_d;
	vmm_memfs_stat(a, &st_a);
	vmm_memfs_stat(d, &st_d);
	unit_check(S_ISREG(st_a.st_mode) && S_ISDIR(st_d.st_mode) && (st_a.st_mode & 07777) == 0644 &&
			   st_a.st_ino != st_d.st_ino && st_a.st_size == 0,
		   "memfs_stat", "mode %o/%o ino %lu/%lu", st_a.st_mode, st_d.st_mode,
		   (unsigned long)st_a.st_ino, (unsigned long)st_d.st_ino);

	/* Removal. */
	nodes = f.fs.node_bytes;
	charged = f.mm.extra_bytes;
	UNIT_EXPECT_EQ("memfs_unlink_dir", vmm_memfs_remove(&f.fs, "d", false), -EISDIR);
	UNIT_EXPECT_EQ("memfs_rmdir_file", vmm_memfs_remove(&f.fs, "a", true), -ENOTDIR);
	UNIT_EXPECT_EQ("memfs_rmdir_not_empty", vmm_memfs_remove(&f.fs, "d", true), -ENOTEMPTY);
	UNIT_EXPECT_EQ("memfs_rmdir_root", vmm_memfs_remove(&f.fs, "", true), -EBUSY);
	UNIT_EXPECT_EQ("memfs_unlink_root", vmm_memfs_remove(&f.fs, "", false), -EISDIR);
	UNIT_EXPECT_EQ("memfs_remove_missing", vmm_memfs_remove(&f.fs, "zzz", false), -ENOENT);
	UNIT_EXPECT_EQ("memfs_remove_through_file", vmm_memfs_remove(&f.fs, "a/zzz", false), -ENOTDIR);
	unit_check(f.fs.node_bytes == nodes && f.mm.extra_bytes == charged, "memfs_remove_errors_refund_nothing",
		   "node_bytes %" PRIu64 " (was %" PRIu64 ")", f.fs.node_bytes, nodes);
	UNIT_EXPECT_EQ("memfs_unlink_nested", vmm_memfs_remove(&f.fs, "d/e/g", false), 0);
	UNIT_EXPECT_EQ("memfs_rmdir_nested", vmm_memfs_remove(&f.fs, "d/e", true), 0);
	UNIT_EXPECT_EQ("memfs_rmdir_now_empty", vmm_memfs_remove(&f.fs, "d", true), 0);
	unit_check(lookup(&f, "d") == NULL && vmm_memfs_child(f.fs.root, 1) != d, "memfs_removed_gone",
		   "removed directory still reachable");
	unit_check(f.fs.node_bytes == nodes - 3 * node_cost(1) && f.mm.extra_bytes == charged - 3 * node_cost(1),
		   "memfs_remove_refunds_nodes", "node_bytes %" PRIu64 " charged %" PRIu64 " (were %" PRIu64 "/%" PRIu64 ")",
		   f.fs.node_bytes, f.mm.extra_bytes, nodes, charged);
	check_accounting(&f, "memfs_tree_accounting_after_remove", 0, 0);
	fixture_close(&f);
	unit_check(f.mm.extra_bytes == 0 && f.fs.node_bytes == 0, "memfs_tree_destroy_refunds",
		   "charged %" PRIu64 " node_bytes %" PRIu64 " after destroy", f.mm.extra_bytes, f.fs.node_bytes);
}

/* The root itself is charged: a cap with no room refuses /tmp. */
static void test_init_cap(void)
{
	struct vmm_vm vm;
	struct vmm_memory_map mm;
	struct vmm_memfs fs;
	if (unit_fake_vm(&vm, 32 * MIB) < 0)
		return;
	vmm_mm_init(&mm, &vm);
	mm.limit_bytes = 0;
	unit_check(vmm_memfs_init(&fs, &mm) < 0 && fs.root == NULL, "memfs_init_no_room", "init succeeded with no room");
	unit_check(mm.extra_bytes == 0 && fs.node_bytes == 0, "memfs_init_no_room_charges_nothing",
		   "charged %" PRIu64 " node_bytes %" PRIu64, mm.extra_bytes, fs.node_bytes);
	vmm_memfs_destroy(&fs);
	vmm_mm_destroy(&mm);
	unit_fake_vm_free(&vm);
}

static void test_read_write(void)
{
	struct fixture f;
	if (fixture_open(&f) < 0)
		return;
	struct vmm_memfs_node *a = create(&f, "a", false);
	uint64_t nodes = node_cost(strlen(f.fs.root->name)) + node_cost(1);
	uint8_t buf[20000];
	UNIT_EXPECT_EQ("memfs_write_small", vmm_memfs_write(a, 0, "hello", 5), 5);
	unit_check(a->size == 5 && a->capacity == PAGE && data_charge(&f) == PAGE && f.fs.node_bytes == nodes,
		   "memfs_write_charges_page", "size %zu capacity %zu data charged %" PRIu64 " node_bytes %" PRIu64,
		   a->size, a->capacity, data_charge(&f), f.fs.node_bytes);
	memset(buf, 0x55, sizeof buf);
	UNIT_EXPECT_EQ("memfs_read_all", vmm_memfs_read(a, 0, buf, sizeof buf), 5);
	unit_check(memcmp(buf, "hello", 5) == 0 && buf[5] == 0x55, "memfs_read_bytes", "read wrong bytes");
	UNIT_EXPECT_EQ("memfs_read_partial", vmm_memfs_read(a, 3, buf, sizeof buf), 2);
	UNIT_EXPECT_EQ("memfs_read_at_end", vmm_memfs_read(a, 5, buf, sizeof buf), 0);
	UNIT_EXPECT_EQ("memfs_read_past_end", vmm_memfs_read(a, 1000, buf, sizeof buf), 0);
	UNIT_EXPECT_EQ("memfs_read_offset_max", vmm_memfs_read(a, UINT64_MAX, buf, sizeof buf), 0);
	UNIT_EXPECT_EQ("memfs_read_zero_len", vmm_memfs_read(a, 0, buf, 0), 0);

	/* A write past the end leaves a hole of zeros. */
	UNIT_EXPECT_EQ("memfs_write_hole", vmm_memfs_write(a, 10000, "xyz", 3), 3);
	memset(buf, 0x55, sizeof buf);
	size_t got = vmm_memfs_read(a, 0, buf, sizeof buf);
	unit_check(got == 10003 && memcmp(buf, "hello", 5) == 0 && all_bytes(buf + 5, 10000 - 5, 0) &&
			   memcmp(buf + 10000, "xyz", 3) == 0,
		   "memfs_hole_zero", "read %zu bytes", got);
	unit_check(a->capacity == 16 * KIB && data_charge(&f) == 16 * KIB && f.fs.node_bytes == nodes &&
			   a->capacity % PAGE == 0,
		   "memfs_capacity_charged", "capacity %zu data charged %" PRIu64 " node_bytes %" PRIu64, a->capacity,
		   data_charge(&f), f.fs.node_bytes);

	/* Truncate down, then up: the regrown bytes read as zero. */
	UNIT_EXPECT_EQ("memfs_truncate_shrink", vmm_memfs_truncate(a, 2), 0);
	UNIT_EXPECT_EQ("memfs_truncate_shrink_size", a->size, 2);
	UNIT_EXPECT_EQ("memfs_truncate_grow", vmm_memfs_truncate(a, 8), 0);
	memset(buf, 0x55, sizeof buf);
	got = vmm_memfs_read(a, 0, buf, sizeof buf);
	unit_check(got == 8 && memcmp(buf, "he", 2) == 0 && all_bytes(buf + 2, 6, 0), "memfs_truncate_regrow_zero",
		   "read %zu: %02x %02x %02x", got, buf[2], buf[3], buf[4]);
	vmm_memfs_truncate(a, 1);
	vmm_memfs_write(a, 6, "Z", 1);
	got = vmm_memfs_read(a, 0, buf, sizeof buf);
	unit_check(got == 7 && buf[0] == 'h' && all_bytes(buf + 1, 5, 0) && buf[6] == 'Z', "memfs_write_after_shrink_zero",
		   "stale bytes visible after truncate then write past the end");
	struct stat st;
	vmm_memfs_stat(a, &st);
	unit_check(st.st_size == 7 && st.st_blocks == (blkcnt_t)(a->capacity / 512), "memfs_stat_size",
		   "size %ld blocks %ld", (long)st.st_size, (long)st.st_blocks);

	/* Sizes at and past the 1 TiB file limit. */
	UNIT_EXPECT_EQ("memfs_write_offset_max", vmm_memfs_write(a, UINT64_MAX, "x", 1), -EFBIG);
	UNIT_EXPECT_EQ("memfs_write_offset_file_max", vmm_memfs_write(a, FILE_MAX, "x", 1), -EFBIG);
	UNIT_EXPECT_EQ("memfs_write_len_max", vmm_memfs_write(a, 0, buf, SIZE_MAX), -EFBIG);
	UNIT_EXPECT_EQ("memfs_write_len_wraps", vmm_memfs_write(a, 16, buf, SIZE_MAX - 8), -EFBIG);
	UNIT_EXPECT_EQ("memfs_write_last_byte_no_room", vmm_memfs_write(a, FILE_MAX - 1, "x", 1), -ENOSPC);
	UNIT_EXPECT_EQ("memfs_truncate_max", vmm_memfs_truncate(a, UINT64_MAX), -EFBIG);
	UNIT_EXPECT_EQ("memfs_truncate_past_file_max", vmm_memfs_truncate(a, FILE_MAX + 1), -EFBIG);
	UNIT_EXPECT_EQ("memfs_truncate_file_max_no_room", vmm_memfs_truncate(a, FILE_MAX), -ENOSPC);
	unit_check(a->size == 7 && data_charge(&f) == a->capacity && f.fs.node_bytes == nodes,
		   "memfs_failed_grow_no_change", "size %zu data charged %" PRIu64 " capacity %zu node_bytes %" PRIu64,
		   a->size, data_charge(&f), a->capacity, f.fs.node_bytes);
	check_accounting(&f, "memfs_read_write_accounting", 0, 0);

	/* Unlinking refunds the file's data and its node: only /tmp is left. */
	UNIT_EXPECT_EQ("memfs_unlink_refunds", vmm_memfs_remove(&f.fs, "a", false), 0);
	uint64_t root_cost = node_cost(strlen(f.fs.root->name));
	unit_check(f.mm.extra_bytes == root_cost && f.fs.node_bytes == root_cost, "memfs_unlink_refunds_all",
		   "charged %" PRIu64 " node_bytes %" PRIu64 ", expected only the root's %" PRIu64, f.mm.extra_bytes,
		   f.fs.node_bytes, root_cost);
	fixture_close(&f);
	unit_check(f.mm.extra_bytes == 0 && f.fs.node_bytes == 0, "memfs_read_write_destroy_refunds",
		   "charged %" PRIu64 " node_bytes %" PRIu64 " after destroy", f.mm.extra_bytes, f.fs.node_bytes);
}

/* The cap: /tmp bytes and nodes plus mapped bytes never pass limit_bytes. */
static void test_cap(void)
{
	struct fixture f;
	if (fixture_open(&f) < 0)
		return;
	struct vmm_memfs_node *node = NULL;
	struct vmm_memfs_node *a = create(&f, "a", false), *b = create(&f, "b", false), *c = create(&f, "c", false);
	if (!unit_check(a && b && c, "memfs_cap_setup", "create failed")) {
		fixture_close(&f);
		return;
	}
	/* Room for exactly 48 KiB of data beyond the nodes charged so far. */
	set_room(&f, 48 * KIB);
	uint64_t nodes = f.fs.node_bytes;
	static uint8_t data[64 * 1024];
	memset(data, 'A', sizeof data);
	/* Doubling would want 64 KiB; memfs falls back to exactly what is needed. */
	UNIT_EXPECT_EQ("memfs_cap_exact_fallback", vmm_memfs_write(a, 0, data, 40000), 40000);
	unit_check(a->capacity == 40 * KIB && data_charge(&f) == 40 * KIB && room(&f) == 8 * KIB,
		   "memfs_cap_exact_capacity", "capacity %zu data charged %" PRIu64 " room %" PRIu64, a->capacity,
		   data_charge(&f), room(&f));
	UNIT_EXPECT_EQ("memfs_cap_fill", vmm_memfs_write(b, 0, data, 8 * KIB), (int64_t)(8 * KIB));
	UNIT_EXPECT_EQ("memfs_cap_full_write", vmm_memfs_write(b, 8 * KIB, "B", 1), -ENOSPC);
	UNIT_EXPECT_EQ("memfs_cap_full_truncate", vmm_memfs_truncate(b, 8 * KIB + 1), -ENOSPC);
	/* An existing empty file gets no data; no new node fits either. */
	UNIT_EXPECT_EQ("memfs_cap_full_new_file", vmm_memfs_write(c, 0, "C", 1), -ENOSPC);
	UNIT_EXPECT_EQ("memfs_cap_full_create", vmm_memfs_create(&f.fs, "d", false, 0644, &node), -ENOSPC);
	UNIT_EXPECT_EQ("memfs_cap_full_mkdir", vmm_memfs_create(&f.fs, "e", true, 0755, &node), -ENOSPC);
	unit_check(lookup(&f, "d") == NULL && lookup(&f, "e") == NULL, "memfs_cap_full_create_not_linked",
		   "a refused node is reachable");
	unit_check(b->size == 8 * KIB && c->size == 0 && c->capacity == 0 && f.mm.extra_bytes == f.mm.limit_bytes &&
			   f.fs.node_bytes == nodes && data_charge(&f) == 48 * KIB,
		   "memfs_cap_full_unchanged", "size %zu charged %" PRIu64 " limit %" PRIu64 " node_bytes %" PRIu64,
		   b->size, f.mm.extra_bytes, f.mm.limit_bytes, f.fs.node_bytes);
	unit_check(data_charge(&f) == tree_capacity(f.fs.root) && f.fs.node_bytes == tree_node_bytes(f.fs.root),
		   "memfs_cap_charge_matches_capacity", "data charged %" PRIu64 ", capacities %" PRIu64
		   ", node_bytes %" PRIu64 ", nodes cost %" PRIu64, data_charge(&f), tree_capacity(f.fs.root),
		   f.fs.node_bytes, tree_node_bytes(f.fs.root));
	/* Overwriting inside the capacity needs no new charge. */
	UNIT_EXPECT_EQ("memfs_cap_full_overwrite", vmm_memfs_write(a, 100, "xyz", 3), 3);

	/* An open (referenced) unlinked file keeps its bytes, its node and its charge. */
	uint64_t limit = f.mm.limit_bytes;
	struct vmm_memfs_node *held = vmm_memfs_node_ref(a);
	UNIT_EXPECT_EQ("memfs_unlink_open", vmm_memfs_remove(&f.fs, "a", false), 0);
	uint8_t buf[8] = {0};
	unit_check(lookup(&f, "a") == NULL && vmm_memfs_read(held, 100, buf, 3) == 3 && memcmp(buf, "xyz", 3) == 0,
		   "memfs_unlinked_still_readable", "unlinked open file unreadable");
	unit_check(f.mm.extra_bytes == limit && f.fs.node_bytes == nodes, "memfs_unlinked_open_still_charged",
		   "charged %" PRIu64 " node_bytes %" PRIu64, f.mm.extra_bytes, f.fs.node_bytes);
	check_accounting(&f, "memfs_unlinked_open_accounting", node_cost(1), held->capacity);
	UNIT_EXPECT_EQ("memfs_unlinked_open_still_full", vmm_memfs_write(b, 8 * KIB, "B", 1), -ENOSPC);
	UNIT_EXPECT_EQ("memfs_unlinked_open_no_new_node", vmm_memfs_create(&f.fs, "d", false, 0644, &node), -ENOSPC);
	vmm_memfs_node_unref(held);
	unit_check(f.mm.extra_bytes == limit - 40 * KIB - node_cost(1) && data_charge(&f) == 8 * KIB &&
			   f.fs.node_bytes == nodes - node_cost(1),
		   "memfs_refund_on_last_close", "charged %" PRIu64 " data %" PRIu64 " node_bytes %" PRIu64
		   " after last close", f.mm.extra_bytes, data_charge(&f), f.fs.node_bytes);
	check_accounting(&f, "memfs_refund_on_last_close_accounting", 0, 0);
	UNIT_EXPECT_EQ("memfs_write_after_refund", vmm_memfs_write(b, 8 * KIB, "B", 1), 1);

	/* Renaming over a file frees the old target's bytes and node. */
	struct vmm_memfs_node *x = create(&f, "x", false);
	vmm_memfs_write(x, 0, data, 4 * KIB);
	uint64_t before = f.mm.extra_bytes, nodes_before = f.fs.node_bytes, b_capacity = b->capacity;
	UNIT_EXPECT_EQ("memfs_rename_over_file", vmm_memfs_rename(&f.fs, "x", "b"), 0);
	unit_check(b_capacity == 16 * KIB && f.mm.extra_bytes == before - b_capacity - node_cost(1) &&
			   f.fs.node_bytes == nodes_before - node_cost(1) && lookup(&f, "b") == x && lookup(&f, "x") == NULL,
		   "memfs_rename_over_refunds", "charged %" PRIu64 " (was %" PRIu64 ") node_bytes %" PRIu64
		   " (was %" PRIu64 ")", f.mm.extra_bytes, before, f.fs.node_bytes, nodes_before);
	check_accounting(&f, "memfs_rename_over_accounting", 0, 0);
	fixture_close(&f);
	unit_check(f.mm.extra_bytes == 0 && f.fs.node_bytes == 0, "memfs_destroy_refunds",
		   "charged %" PRIu64 " node_bytes %" PRIu64 " after destroy", f.mm.extra_bytes, f.fs.node_bytes);

	/* Mappings and /tmp share one cap. */
	if (fixture_open(&f) < 0)
		return;
	uint64_t result = 0;
	struct vmm_memfs_node *big = create(&f, "big", false);
	/* Map all but 64 KiB of what is left (page aligned), then leave exactly 64 KiB. */
	uint64_t map_len = (room(&f) - 64 * KIB) & ~(PAGE - 1);
	UNIT_EXPECT_EQ("memfs_cap_shared_map", vmm_mm_map(&f.mm, 0, map_len, 0, 3, 0, &result), 0);
	set_room(&f, 64 * KIB);
	UNIT_EXPECT_EQ("memfs_cap_shared_write_fits", vmm_memfs_write(big, 0, data, 64 * KIB), (int64_t)(64 * KIB));
	UNIT_EXPECT_EQ("memfs_cap_shared_write_full", vmm_memfs_write(big, 64 * KIB, "x", 1), -ENOSPC);
	UNIT_EXPECT_EQ("memfs_cap_shared_map_full", vmm_mm_map(&f.mm, 0, PAGE, 0, 3, 0, &result), -ENOMEM);
	UNIT_EXPECT_EQ("memfs_cap_shared_create_full", vmm_memfs_create(&f.fs, "small", false, 0644, &node), -ENOSPC);
	unit_check(f.mm.mapped_bytes + f.mm.extra_bytes <= f.mm.limit_bytes, "memfs_cap_shared_bound",
		   "mapped %" PRIu64 " + tmp %" PRIu64 " > limit %" PRIu64, f.mm.mapped_bytes, f.mm.extra_bytes,
		   f.mm.limit_bytes);
	unit_check(f.mm.mapped_bytes + f.mm.extra_bytes == f.mm.limit_bytes, "memfs_cap_shared_exactly_full",
		   "mapped %" PRIu64 " + tmp %" PRIu64 " != limit %" PRIu64, f.mm.mapped_bytes, f.mm.extra_bytes,
		   f.mm.limit_bytes);
	UNIT_EXPECT_EQ("memfs_cap_shared_unlink", vmm_memfs_remove(&f.fs, "big", false), 0);
	UNIT_EXPECT_EQ("memfs_cap_shared_room_after_unlink", room(&f), 64 * KIB + node_cost(3));
	UNIT_EXPECT_EQ("memfs_cap_shared_map_after_unlink", vmm_mm_map(&f.mm, 0, 16 * PAGE, 0, 3, 0, &result), 0);
	/* What is left is exactly one node named like "big". */
	UNIT_EXPECT_EQ("memfs_cap_shared_node_fits_exactly", vmm_memfs_create(&f.fs, "big", false, 0644, &node), 0);
	UNIT_EXPECT_EQ("memfs_cap_shared_node_then_full", vmm_memfs_create(&f.fs, "z", false, 0644, &node), -ENOSPC);
	unit_check(room(&f) == 0 && f.mm.mapped_bytes + f.mm.extra_bytes == f.mm.limit_bytes,
		   "memfs_cap_shared_full_again", "room %" PRIu64, room(&f));
	check_accounting(&f, "memfs_cap_shared_accounting", 0, 0);
	fixture_close(&f);
	unit_check(f.mm.extra_bytes == 0 && f.fs.node_bytes == 0, "memfs_cap_shared_destroy_refunds",
		   "charged %" PRIu64 " node_bytes %" PRIu64 " after destroy", f.mm.extra_bytes, f.fs.node_bytes);
}

/* Nodes alone against the cap: exactly one more fits, then ENOSPC. */
static void test_node_cap(void)
{
	struct fixture f;
	if (fixture_open(&f) < 0)
		return;
	struct vmm_memfs_node *node = NULL;
	uint64_t nodes = f.fs.node_bytes;
	set_room(&f, node_cost(1) - 1);
	UNIT_EXPECT_EQ("memfs_node_cap_one_short", vmm_memfs_create(&f.fs, "a", false, 0644, &node), -ENOSPC);
	unit_check(lookup(&f, "a") == NULL && f.fs.node_bytes == nodes && room(&f) == node_cost(1) - 1,
		   "memfs_node_cap_one_short_unchanged", "node_bytes %" PRIu64 " room %" PRIu64, f.fs.node_bytes,
		   room(&f));
	set_room(&f, node_cost(1));
	UNIT_EXPECT_EQ("memfs_node_cap_exact", vmm_memfs_create(&f.fs, "a", false, 0644, &node), 0);
	unit_check(room(&f) == 0 && f.mm.extra_bytes == f.mm.limit_bytes && f.fs.node_bytes == nodes + node_cost(1),
		   "memfs_node_cap_exact_full", "room %" PRIu64 " node_bytes %" PRIu64, room(&f), f.fs.node_bytes);
	UNIT_EXPECT_EQ("memfs_node_cap_full_mkdir", vmm_memfs_create(&f.fs, "b", true, 0755, &node), -ENOSPC);
	UNIT_EXPECT_EQ("memfs_node_cap_full_write", vmm_memfs_write(lookup(&f, "a"), 0, "x", 1), -ENOSPC);
	UNIT_EXPECT_EQ("memfs_node_cap_unlink", vmm_memfs_remove(&f.fs, "a", false), 0);
	UNIT_EXPECT_EQ("memfs_node_cap_unlink_refunds", room(&f), node_cost(1));
	UNIT_EXPECT_EQ("memfs_node_cap_mkdir_exact", vmm_memfs_create(&f.fs, "b", true, 0755, &node), 0);
	UNIT_EXPECT_EQ("memfs_node_cap_full_child", vmm_memfs_create(&f.fs, "b/c", false, 0644, &node), -ENOSPC);
	UNIT_EXPECT_EQ("memfs_node_cap_full_rename_longer", vmm_memfs_rename(&f.fs, "b", "bb"), -ENOSPC);
	unit_check(lookup(&f, "b") != NULL && lookup(&f, "bb") == NULL && room(&f) == 0,
		   "memfs_node_cap_full_rename_unchanged", "refused rename changed the tree or the charge");
	check_accounting(&f, "memfs_node_cap_accounting", 0, 0);
	fixture_close(&f);
	unit_check(f.mm.extra_bytes == 0 && f.fs.node_bytes == 0, "memfs_node_cap_destroy_refunds",
		   "charged %" PRIu64 " node_bytes %" PRIu64 " after destroy", f.mm.extra_bytes, f.fs.node_bytes);
}

/* Empty files alone cannot fill the host: 100,000 of them in 64 KiB run
 * out with ENOSPC, each charged exactly its node, never past the cap. */
static void test_many_empty_files(void)
{
	struct fixture f;
	if (fixture_open(&f) < 0)
		return;
	set_room(&f, 64 * KIB);
	const uint64_t limit = f.mm.limit_bytes;
	int created = 0, rc = 0;
	bool ok = true;
	char reason[240] = "", name[32];
	for (int i = 0; i < 100000; i++) {
		snprintf(name, sizeof name, "empty%d", i);
		uint64_t charged = f.mm.extra_bytes, nodes = f.fs.node_bytes, cost = node_cost(strlen(name));
		struct vmm_memfs_node *node = NULL;
		rc = vmm_memfs_create(&f.fs, name, false, 0644, &node);
		if (f.mm.extra_bytes > f.mm.limit_bytes || f.mm.limit_bytes != limit) {
			snprintf(reason, sizeof reason, "file %d: charged %" PRIu64 " > limit %" PRIu64, i,
				 f.mm.extra_bytes, f.mm.limit_bytes);
			ok = false;
			break;
		}
		if (rc == -ENOSPC) {
			/* Refused only for want of room, and nothing left behind. */
			if (f.mm.extra_bytes != charged || f.fs.node_bytes != nodes || lookup(&f, name) ||
			    room(&f) >= cost) {
				snprintf(reason, sizeof reason,
					 "refused file %d: charged %" PRIu64 " (was %" PRIu64 ") room %" PRIu64
					 " cost %" PRIu64,
					 i, f.mm.extra_bytes, charged, room(&f), cost);
				ok = false;
			}
			break;
		}
		if (rc != 0) {
			snprintf(reason, sizeof reason, "file %d: create returned %d", i, rc);
			ok = false;
			break;
		}
		if (f.mm.extra_bytes != charged + cost || f.fs.node_bytes != nodes + cost || node->capacity != 0) {
			snprintf(reason, sizeof reason,
				 "file %d: charged %" PRIu64 " (was %" PRIu64 ") node_bytes %" PRIu64 " (was %" PRIu64
				 "), cost %" PRIu64,
				 i, f.mm.extra_bytes, charged, f.fs.node_bytes, nodes, cost);
			ok = false;
			break;
		}
		created++;
	}
	unit_check(rc == -ENOSPC && created > 0 && created < 100000, "memfs_many_empty_files_enospc",
		   "created %d, last create returned %d", created, rc);
	unit_check(ok, "memfs_many_empty_files_charged", "%s", reason);
	unit_check(f.mm.extra_bytes <= f.mm.limit_bytes && f.mm.limit_bytes == limit && data_charge(&f) == 0,
		   "memfs_many_empty_files_within_limit", "charged %" PRIu64 " limit %" PRIu64 " data %" PRIu64,
		   f.mm.extra_bytes, f.mm.limit_bytes, data_charge(&f));
	check_accounting(&f, "memfs_many_empty_files_accounting", 0, 0);
	/* Still full: the same name, and a directory named like it, are refused again. */
	struct vmm_memfs_node *node = NULL;
	UNIT_EXPECT_EQ("memfs_many_empty_files_still_full", vmm_memfs_create(&f.fs, name, false, 0644, &node), -ENOSPC);
	UNIT_EXPECT_EQ("memfs_many_empty_files_mkdir_full", vmm_memfs_create(&f.fs, name, true, 0755, &node), -ENOSPC);
	/* Unlinking one gives its node back; it can be made again, and then no more. */
	uint64_t full_room = room(&f);
	UNIT_EXPECT_EQ("memfs_many_empty_files_unlink", vmm_memfs_remove(&f.fs, "empty0", false), 0);
	UNIT_EXPECT_EQ("memfs_many_empty_files_unlink_refunds", room(&f), full_room + node_cost(6));
	UNIT_EXPECT_EQ("memfs_many_empty_files_recreate", vmm_memfs_create(&f.fs, "empty0", false, 0644, &node), 0);
	UNIT_EXPECT_EQ("memfs_many_empty_files_recreate_room", room(&f), full_room);
	fixture_close(&f);
	unit_check(f.mm.extra_bytes == 0 && f.fs.node_bytes == 0, "memfs_many_empty_files_destroy_refunds",
		   "charged %" PRIu64 " node_bytes %" PRIu64 " after destroy", f.mm.extra_bytes, f.fs.node_bytes);
}

static void test_rename(void)
{
	struct fixture f;
	if (fixture_open(&f) < 0)
		return;
	struct vmm_memfs_node *a = create(&f, "a", false);
	struct vmm_memfs_node *d = create(&f, "d", true);
	struct vmm_memfs_node *sub = create(&f, "d/sub", true);
	create(&f, "d/sub/leaf", false);
	struct vmm_memfs_node *empty = create(&f, "empty", true);
	create(&f, "full", true);
	create(&f, "full/inside", false);
	struct vmm_memfs_node *other = create(&f, "other", false);
	check_accounting(&f, "memfs_rename_setup_accounting", 0, 0);
	uint64_t nodes = f.fs.node_bytes, charged = f.mm.extra_bytes;

	UNIT_EXPECT_EQ("memfs_rename_missing", vmm_memfs_rename(&f.fs, "nope", "x"), -ENOENT);
	UNIT_EXPECT_EQ("memfs_rename_root", vmm_memfs_rename(&f.fs, "", "x"), -EBUSY);
	UNIT_EXPECT_EQ("memfs_rename_to_root", vmm_memfs_rename(&f.fs, "a", ""), -EBUSY);
	UNIT_EXPECT_EQ("memfs_rename_into_itself", vmm_memfs_rename(&f.fs, "d", "d/x"), -EINVAL);
	UNIT_EXPECT_EQ("memfs_rename_into_descendant", vmm_memfs_rename(&f.fs, "d", "d/sub/x"), -EINVAL);
	UNIT_EXPECT_EQ("memfs_rename_onto_parent", vmm_memfs_rename(&f.fs, "d/sub", "d"), -ENOTEMPTY);
	UNIT_EXPECT_EQ("memfs_rename_file_over_dir", vmm_memfs_rename(&f.fs, "a", "empty"), -EISDIR);
	UNIT_EXPECT_EQ("memfs_rename_dir_over_file", vmm_memfs_rename(&f.fs, "empty", "a"), -ENOTDIR);
	UNIT_EXPECT_EQ("memfs_rename_dir_over_full_dir", vmm_memfs_rename(&f.fs, "empty", "full"), -ENOTEMPTY);
	UNIT_EXPECT_EQ("memfs_rename_missing_parent", vmm_memfs_rename(&f.fs, "a", "nowhere/a"), -ENOENT);
	UNIT_EXPECT_EQ("memfs_rename_parent_is_file", vmm_memfs_rename(&f.fs, "a", "other/a"), -ENOTDIR);
	UNIT_EXPECT_EQ("memfs_rename_file_under_itself", vmm_memfs_rename(&f.fs, "a", "a/b"), -ENOTDIR);
	UNIT_EXPECT_EQ("memfs_rename_same", vmm_memfs_rename(&f.fs, "a", "a"), 0);
	unit_check(lookup(&f, "a") == a, "memfs_rename_same_kept", "rename onto itself lost the file");
	unit_check(f.fs.node_bytes == nodes && f.mm.extra_bytes == charged, "memfs_rename_errors_charge_nothing",
		   "node_bytes %" PRIu64 " (was %" PRIu64 ") charged %" PRIu64 " (was %" PRIu64 ")", f.fs.node_bytes,
		   nodes, f.mm.extra_bytes, charged);

	/* A sibling whose name only starts like the directory is not inside it. */
	UNIT_EXPECT_EQ("memfs_rename_dir_prefix_sibling", vmm_memfs_rename(&f.fs, "d", "dd"), 0);
	unit_check(lookup(&f, "dd") == d && lookup(&f, "dd/sub") == sub && lookup(&f, "d") == NULL,
		   "memfs_rename_dir_moves_subtree", "subtree not reachable under the new name");
	unit_check(f.fs.node_bytes == nodes + 1 && f.mm.extra_bytes == charged + 1, "memfs_rename_longer_charges",
		   "node_bytes %" PRIu64 " (was %" PRIu64 ") charged %" PRIu64 " (was %" PRIu64 ")", f.fs.node_bytes,
		   nodes, f.mm.extra_bytes, charged);
	UNIT_EXPECT_EQ("memfs_rename_across_dirs", vmm_memfs_rename(&f.fs, "a", "dd/sub/a2"), 0);
	unit_check(lookup(&f, "dd/sub/a2") == a && lookup(&f, "a") == NULL && a->parent == sub &&
			   strcmp(a->name, "a2") == 0,
		   "memfs_rename_across_dirs_linked", "renamed file not where expected");
	unit_check(f.fs.node_bytes == nodes + 2, "memfs_rename_across_dirs_charges_leaf",
		   "node_bytes %" PRIu64 ", expected %" PRIu64, f.fs.node_bytes, nodes + 2);
	UNIT_EXPECT_EQ("memfs_rename_dir_over_empty_dir", vmm_memfs_rename(&f.fs, "dd/sub", "empty"), 0);
	unit_check(lookup(&f, "empty") == sub && lookup(&f, "empty/leaf") && lookup(&f, "empty/a2") == a &&
			   lookup(&f, "dd/sub") == NULL,
		   "memfs_rename_dir_over_empty_dir_result", "tree wrong after replacing an empty directory");
	(void)empty; /* freed by the rename above */
	/* "sub" became "empty" (2 bytes longer) and the old "empty" went. */
	unit_check(f.fs.node_bytes == nodes + 2 + 2 - node_cost(5), "memfs_rename_over_dir_refunds_node",
		   "node_bytes %" PRIu64 ", expected %" PRIu64, f.fs.node_bytes, nodes + 4 - node_cost(5));
	check_accounting(&f, "memfs_rename_accounting", 0, 0);

	/* To a longer name and back to a shorter one: only the name's bytes change. */
	char name[300];
	memset(name, 'o', 255);
	name[255] = '\0';
	nodes = f.fs.node_bytes;
	charged = f.mm.extra_bytes;
	UNIT_EXPECT_EQ("memfs_rename_to_255", vmm_memfs_rename(&f.fs, "other", name), 0);
	unit_check(lookup(&f, name) == other && f.fs.node_bytes == nodes + 250 && f.mm.extra_bytes == charged + 250,
		   "memfs_rename_to_255_charges", "node_bytes %" PRIu64 " (was %" PRIu64 ") charged %" PRIu64
		   " (was %" PRIu64 ")", f.fs.node_bytes, nodes, f.mm.extra_bytes, charged);
	UNIT_EXPECT_EQ("memfs_rename_to_1", vmm_memfs_rename(&f.fs, name, "o"), 0);
	unit_check(lookup(&f, "o") == other && f.fs.node_bytes == nodes - 4 && f.mm.extra_bytes == charged - 4,
		   "memfs_rename_to_1_refunds", "node_bytes %" PRIu64 " (was %" PRIu64 ") charged %" PRIu64
		   " (was %" PRIu64 ")", f.fs.node_bytes, nodes, f.mm.extra_bytes, charged);
	check_accounting(&f, "memfs_rename_lengths_accounting", 0, 0);

	/* With the cap full: longer names are refused, equal and shorter ones
	 * are not, and a shorter name's refund is exactly what a longer one may use. */
	uint64_t limit = f.mm.limit_bytes;
	set_room(&f, 0);
	nodes = f.fs.node_bytes;
	UNIT_EXPECT_EQ("memfs_rename_full_longer", vmm_memfs_rename(&f.fs, "o", "oo"), -ENOSPC);
	unit_check(lookup(&f, "o") == other && lookup(&f, "oo") == NULL && f.fs.node_bytes == nodes && room(&f) == 0,
		   "memfs_rename_full_longer_unchanged", "node_bytes %" PRIu64 " (was %" PRIu64 ") room %" PRIu64,
		   f.fs.node_bytes, nodes, room(&f));
	UNIT_EXPECT_EQ("memfs_rename_full_same_length", vmm_memfs_rename(&f.fs, "o", "p"), 0);
	UNIT_EXPECT_EQ("memfs_rename_full_shorter", vmm_memfs_rename(&f.fs, "full/inside", "full/i"), 0);
	unit_check(room(&f) == 5 && f.fs.node_bytes == nodes - 5, "memfs_rename_full_shorter_refunds",
		   "room %" PRIu64 " node_bytes %" PRIu64 " (was %" PRIu64 ")", room(&f), f.fs.node_bytes, nodes);
	UNIT_EXPECT_EQ("memfs_rename_fills_exactly", vmm_memfs_rename(&f.fs, "p", "pppppp"), 0);
	unit_check(room(&f) == 0 && f.fs.node_bytes == nodes && lookup(&f, "pppppp") == other,
		   "memfs_rename_fills_exactly_full", "room %" PRIu64 " node_bytes %" PRIu64, room(&f), f.fs.node_bytes);
	UNIT_EXPECT_EQ("memfs_rename_full_again", vmm_memfs_rename(&f.fs, "pppppp", "ppppppp"), -ENOSPC);
	check_accounting(&f, "memfs_rename_full_accounting", 0, 0);
	f.mm.limit_bytes = limit;

	/* Renaming an open directory, then removing it, keeps it alive for its holder. */
	struct vmm_memfs_node *held = vmm_memfs_node_ref(lookup(&f, "dd"));
	nodes = f.fs.node_bytes;
	UNIT_EXPECT_EQ("memfs_rmdir_open_dir", vmm_memfs_remove(&f.fs, "dd", true), 0);
	unit_check(held->parent == NULL && held->first_child == NULL && lookup(&f, "dd") == NULL,
		   "memfs_rmdir_open_dir_detached", "removed directory still linked");
	unit_check(f.fs.node_bytes == nodes, "memfs_rmdir_open_dir_still_charged", "node_bytes %" PRIu64 " (was %" PRIu64 ")",
		   f.fs.node_bytes, nodes);
	check_accounting(&f, "memfs_rmdir_open_dir_accounting", node_cost(2), 0);
	vmm_memfs_node_unref(held);
	unit_check(f.fs.node_bytes == nodes - node_cost(2), "memfs_rmdir_open_dir_refund_on_close",
		   "node_bytes %" PRIu64 " (was %" PRIu64 ")", f.fs.node_bytes, nodes);
	check_accounting(&f, "memfs_rmdir_open_dir_closed_accounting", 0, 0);
	fixture_close(&f);
	unit_check(f.mm.extra_bytes == 0 && f.fs.node_bytes == 0, "memfs_rename_destroy_refunds",
		   "charged %" PRIu64 " node_bytes %" PRIu64 " after destroy", f.mm.extra_bytes, f.fs.node_bytes);
}

/* Files and directories still referenced when the whole /tmp is torn down. */
static void test_destroy_with_open_file(void)
{
	struct fixture f;
	if (fixture_open(&f) < 0)
		return;
	create(&f, "d", true);
	struct vmm_memfs_node *file = create(&f, "d/f", false);
	vmm_memfs_write(file, 0, "data", 4);
	struct vmm_memfs_node *held = vmm_memfs_node_ref(file);
	vmm_memfs_destroy(&f.fs);
	uint8_t buf[4] = {0};
	unit_check(vmm_memfs_read(held, 0, buf, 4) == 4 && memcmp(buf, "data", 4) == 0, "memfs_destroy_open_readable",
		   "open file unreadable after destroy");
	/* Only the open file is still charged: its node and its page. */
	unit_check(f.fs.node_bytes == node_cost(1) && data_charge(&f) == held->capacity && held->capacity == PAGE,
		   "memfs_destroy_open_still_charged", "node_bytes %" PRIu64 " data charged %" PRIu64 " capacity %zu",
		   f.fs.node_bytes, data_charge(&f), held->capacity);
	vmm_memfs_node_unref(held);
	unit_check(f.mm.extra_bytes == 0 && f.fs.node_bytes == 0, "memfs_destroy_open_refunded",
		   "charged %" PRIu64 " node_bytes %" PRIu64, f.mm.extra_bytes, f.fs.node_bytes);

	/* An open directory keeps its subtree until its last close. */
	if (vmm_memfs_init(&f.fs, &f.mm) < 0)
		return;
	struct vmm_memfs_node *dir = vmm_memfs_node_ref(create(&f, "d", true));
	file = vmm_memfs_node_ref(create(&f, "d/f", false));
	vmm_memfs_write(file, 0, "data", 4);
	vmm_memfs_destroy(&f.fs);
	unit_check(f.fs.node_bytes == 2 * node_cost(1) && data_charge(&f) == PAGE, "memfs_destroy_open_dir_charged",
		   "node_bytes %" PRIu64 " data charged %" PRIu64, f.fs.node_bytes, data_charge(&f));
	vmm_memfs_node_unref(dir);
	unit_check(f.fs.node_bytes == node_cost(1) && data_charge(&f) == PAGE, "memfs_destroy_open_dir_closed",
		   "node_bytes %" PRIu64 " data charged %" PRIu64, f.fs.node_bytes, data_charge(&f));
	vmm_memfs_node_unref(file);
	unit_check(f.mm.extra_bytes == 0 && f.fs.node_bytes == 0, "memfs_destroy_open_dir_refunded",
		   "charged %" PRIu64 " node_bytes %" PRIu64, f.mm.extra_bytes, f.fs.node_bytes);
	vmm_mm_destroy(&f.mm);
	unit_fake_vm_free(&f.vm);
}

/* The random test's file names: "f<k>" padded to a length that varies with k,
 * so that renames grow and shrink names. */
static void random_name(char *out, size_t size, unsigned k)
{
	static const char pad[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
	snprintf(out, size, "f%u%.*s", k, (int)((k * 7) % (sizeof pad - 1)), pad);
}

/* Many files, random writes, renames and opens: the charge always splits
 * exactly into the capacities and the node costs of every live node. */
/* A zero-length write past the end must not extend the file (it did). */
static void test_zero_length_write(void)
{
	struct fixture f;
	if (!unit_check(fixture_open(&f) == 0, "memfs_zero_write_setup", "fixture set-up failed"))
		return;
	struct vmm_memfs_node *a = create(&f, "z", false);
	uint64_t charged = f.mm.extra_bytes;
	int64_t n = vmm_memfs_write(a, 10000, "", 0);
	unit_check(n == 0 && a->size == 0 && f.mm.extra_bytes == charged, "memfs_zero_length_write_past_end",
		   "returned %lld, size %zu, charge %llu -> %llu", (long long)n, a->size,
		   (unsigned long long)charged, (unsigned long long)f.mm.extra_bytes);
	fixture_close(&f);
}

static void test_random_charges(void)
{
	struct fixture f;
	if (fixture_open(&f) < 0)
		return;
	f.mm.limit_bytes = 2 * MIB;
	uint64_t state = 0x1234567;
	static uint8_t data[256 * 1024];
	memset(data, 'r', sizeof data);
	struct vmm_memfs_node *held[4] = {NULL};
	bool ok = true;
	char reason[240] = "";
	int step;
	for (step = 0; step < 20000 && ok; step++) {
		state = state * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t r = state >> 20;
		char name[80];
		random_name(name, sizeof name, (unsigned)(r % 16));
		struct vmm_memfs_node *node = lookup(&f, name);
		switch ((r >> 8) % 5) {
		case 0:
			if (!node) {
				int rc = vmm_memfs_create(&f.fs, name, false, 0644, &node);
				if (rc < 0) {
					node = NULL;
					if (rc != -ENOSPC || room(&f) >= node_cost(strlen(name))) {
						snprintf(reason, sizeof reason, "create returned %d with room %" PRIu64, rc,
							 room(&f));
						ok = false;
					}
				}
			}
			if (node) {
				int64_t n = vmm_memfs_write(node, (r >> 12) % (512 * KIB), data, (r >> 32) % sizeof data);
				if (n < 0 && n != -ENOSPC) {
					snprintf(reason, sizeof reason, "write returned %" PRId64, n);
					ok = false;
				}
			}
			break;
		case 1:
			if (node)
				vmm_memfs_truncate(node, (r >> 12) % (1 * MIB));
			break;
		case 2:
			vmm_memfs_remove(&f.fs, name, false);
			break;
		case 3: {
			char to[80];
			random_name(to, sizeof to, (unsigned)((r >> 24) % 16));
			vmm_memfs_rename(&f.fs, name, to);
			break;
		}
		default: { /* open or close */
			size_t slot = (r >> 12) % 4;
			if (held[slot]) {
				vmm_memfs_node_unref(held[slot]);
				held[slot] = NULL;
			} else if (node) {
				held[slot] = vmm_memfs_node_ref(node);
			}
		}
		}
		/* Unlinked but open nodes are live too; count each once. */
		uint64_t open_nodes = 0, open_capacity = 0;
		for (size_t i = 0; i < 4; i++) {
			bool seen = false;
			for (size_t j = 0; j < i; j++)
				seen |= held[j] == held[i];
			if (held[i] && !seen && held[i]->parent == NULL) {
				open_nodes += node_cost(strlen(held[i]->name));
				open_capacity += held[i]->capacity;
			}
		}
		if (ok)
			ok = accounting_ok(&f, open_nodes, open_capacity, reason, sizeof reason);
	}
	unit_check(ok, "memfs_random_charges_match", "step %d: %s", step - 1, reason);
	for (size_t i = 0; i < 4; i++)
		if (held[i])
			vmm_memfs_node_unref(held[i]);
	check_accounting(&f, "memfs_random_closed_accounting", 0, 0);
	fixture_close(&f);
	unit_check(f.mm.extra_bytes == 0 && f.fs.node_bytes == 0, "memfs_random_all_refunded",
		   "charged %" PRIu64 " node_bytes %" PRIu64, f.mm.extra_bytes, f.fs.node_bytes);
}

int main(void)
{
	test_zero_length_write();
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_tree();
	test_init_cap();
	test_read_write();
	test_cap();
	test_node_cap();
	test_many_empty_files();
	test_rename();
	test_destroy_with_open_file();
	test_random_charges();
	return unit_exit_status();
}
