/* Unit test of the guest's in-memory /tmp (vmm/memfs.c), run on the host:
 * the tree operations and their errors, reads and writes with holes,
 * truncation, and the memory cap — every byte of file capacity charged to
 * the memory map, ENOSPC when full, refunds when the last reference to an
 * unlinked file goes.  One line per check: "PASS name" or "FAIL name:
 * detail"; exits non-zero on any failure.  Needs no /dev/kvm. */
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

static void test_tree(void)
{
	struct fixture f;
	if (!unit_check(fixture_open(&f) == 0, "memfs_init", "fixture set-up failed"))
		return;
	struct vmm_memfs_node *node = NULL;
	unit_check(lookup(&f, "") == f.fs.root && f.fs.root->is_dir, "memfs_root", "lookup(\"\") is not the root");
	struct vmm_memfs_node *a = create(&f, "a", false);
	unit_check(a && lookup(&f, "a") == a && !a->is_dir && a->mode == 0644, "memfs_create_file", "node %p", (void *)a);
	UNIT_EXPECT_EQ("memfs_create_exists", vmm_memfs_create(&f.fs, "a", false, 0644, &node), -EEXIST);
	UNIT_EXPECT_EQ("memfs_create_dir_exists", vmm_memfs_create(&f.fs, "a", true, 0755, &node), -EEXIST);
	UNIT_EXPECT_EQ("memfs_create_root", vmm_memfs_create(&f.fs, "", true, 0755, &node), -EEXIST);
	UNIT_EXPECT_EQ("memfs_create_no_parent", vmm_memfs_create(&f.fs, "missing/x", false, 0644, &node), -ENOENT);
	UNIT_EXPECT_EQ("memfs_create_parent_is_file", vmm_memfs_create(&f.fs, "a/x", false, 0644, &node), -ENOTDIR);
	UNIT_EXPECT_EQ("memfs_lookup_missing", vmm_memfs_lookup(&f.fs, "nothing", &node), -ENOENT);
	UNIT_EXPECT_EQ("memfs_lookup_through_file", vmm_memfs_lookup(&f.fs, "a/x", &node), -ENOTDIR);
	UNIT_EXPECT_EQ("memfs_lookup_deep_missing", vmm_memfs_lookup(&f.fs, "x/y/z", &node), -ENOENT);
	struct vmm_memfs_node *d = create(&f, "d", true);
	struct vmm_memfs_node *e = create(&f, "d/e", true);
	struct vmm_memfs_node *g = create(&f, "d/e/g", false);
	unit_check(d && e && g && lookup(&f, "d/e/g") == g && g->parent == e && e->parent == d,
		   "memfs_nested", "nested create or lookup failed");
	unit_check(create(&f, "mode", false) && lookup(&f, "mode")->mode == 0644, "memfs_mode", "mode wrong");
	unit_check(vmm_memfs_create(&f.fs, "sticky", true, 0177777, &node) == 0 && node->mode == 07777,
		   "memfs_mode_masked", "mode %#o", node ? node->mode : 0);

	char name[300];
	memset(name, 'n', 255);
	name[255] = '\0';
	unit_check(create(&f, name, false) != NULL, "memfs_name_255", "a 255-byte name was refused");
	memset(name, 'm', 256);
	name[256] = '\0';
	UNIT_EXPECT_EQ("memfs_name_256", vmm_memfs_create(&f.fs, name, false, 0644, &node), -ENAMETOOLONG);
	memcpy(name, "d/", 2);
	memset(name + 2, 'm', 256);
	name[258] = '\0';
	UNIT_EXPECT_EQ("memfs_name_256_nested", vmm_memfs_create(&f.fs, name, false, 0644, &node), -ENAMETOOLONG);

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
	UNIT_EXPECT_EQ("memfs_unlink_dir", vmm_memfs_remove(&f.fs, "d", false), -EISDIR);
	UNIT_EXPECT_EQ("memfs_rmdir_file", vmm_memfs_remove(&f.fs, "a", true), -ENOTDIR);
	UNIT_EXPECT_EQ("memfs_rmdir_not_empty", vmm_memfs_remove(&f.fs, "d", true), -ENOTEMPTY);
	UNIT_EXPECT_EQ("memfs_rmdir_root", vmm_memfs_remove(&f.fs, "", true), -EBUSY);
	UNIT_EXPECT_EQ("memfs_unlink_root", vmm_memfs_remove(&f.fs, "", false), -EISDIR);
	UNIT_EXPECT_EQ("memfs_remove_missing", vmm_memfs_remove(&f.fs, "zzz", false), -ENOENT);
	UNIT_EXPECT_EQ("memfs_remove_through_file", vmm_memfs_remove(&f.fs, "a/zzz", false), -ENOTDIR);
	UNIT_EXPECT_EQ("memfs_unlink_nested", vmm_memfs_remove(&f.fs, "d/e/g", false), 0);
	UNIT_EXPECT_EQ("memfs_rmdir_nested", vmm_memfs_remove(&f.fs, "d/e", true), 0);
	UNIT_EXPECT_EQ("memfs_rmdir_now_empty", vmm_memfs_remove(&f.fs, "d", true), 0);
	unit_check(lookup(&f, "d") == NULL && vmm_memfs_child(f.fs.root, 1) != d, "memfs_removed_gone",
		   "removed directory still reachable");
	fixture_close(&f);
}

static void test_read_write(void)
{
	struct fixture f;
	if (fixture_open(&f) < 0)
		return;
	struct vmm_memfs_node *a = create(&f, "a", false);
	uint8_t buf[20000];
	UNIT_EXPECT_EQ("memfs_write_small", vmm_memfs_write(a, 0, "hello", 5), 5);
	unit_check(a->size == 5 && a->capacity == PAGE && f.mm.extra_bytes == PAGE, "memfs_write_charges_page",
		   "size %zu capacity %zu charged %" PRIu64, a->size, a->capacity, f.mm.extra_bytes);
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
	unit_check(a->capacity == 16 * KIB && f.mm.extra_bytes == 16 * KIB && a->capacity % PAGE == 0,
		   "memfs_capacity_charged", "capacity %zu charged %" PRIu64, a->capacity, f.mm.extra_bytes);

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
	unit_check(a->size == 7 && f.mm.extra_bytes == a->capacity, "memfs_failed_grow_no_change",
		   "size %zu charged %" PRIu64 " capacity %zu", a->size, f.mm.extra_bytes, a->capacity);

	UNIT_EXPECT_EQ("memfs_unlink_refunds", vmm_memfs_remove(&f.fs, "a", false), 0);
	UNIT_EXPECT_EQ("memfs_unlink_refunds_all", f.mm.extra_bytes, 0);
	fixture_close(&f);
}

/* The cap: /tmp bytes plus mapped bytes never pass limit_bytes. */
static void test_cap(void)
{
	struct fixture f;
	if (fixture_open(&f) < 0)
		return;
	f.mm.limit_bytes = 48 * KIB;
	struct vmm_memfs_node *a = create(&f, "a", false), *b = create(&f, "b", false);
	static uint8_t data[64 * 1024];
	memset(data, 'A', sizeof data);
	/* Doubling would want 64 KiB; memfs falls back to exactly what is needed. */
	UNIT_EXPECT_EQ("memfs_cap_exact_fallback", vmm_memfs_write(a, 0, data, 40000), 40000);
	unit_check(a->capacity == 40 * KIB && f.mm.extra_bytes == 40 * KIB, "memfs_cap_exact_capacity",
		   "capacity %zu charged %" PRIu64, a->capacity, f.mm.extra_bytes);
	UNIT_EXPECT_EQ("memfs_cap_fill", vmm_memfs_write(b, 0, data, 8 * KIB), (int64_t)(8 * KIB));
	UNIT_EXPECT_EQ("memfs_cap_full_write", vmm_memfs_write(b, 8 * KIB, "B", 1), -ENOSPC);
	UNIT_EXPECT_EQ("memfs_cap_full_truncate", vmm_memfs_truncate(b, 8 * KIB + 1), -ENOSPC);
	UNIT_EXPECT_EQ("memfs_cap_full_new_file", vmm_memfs_write(create(&f, "c", false), 0, "C", 1), -ENOSPC);
	unit_check(b->size == 8 * KIB && f.mm.extra_bytes == 48 * KIB && f.mm.extra_bytes <= f.mm.limit_bytes,
		   "memfs_cap_full_unchanged", "size %zu charged %" PRIu64, b->size, f.mm.extra_bytes);
	unit_check(f.mm.extra_bytes == tree_capacity(f.fs.root), "memfs_cap_charge_matches_capacity",
		   "charged %" PRIu64 ", capacities %" PRIu64, f.mm.extra_bytes, tree_capacity(f.fs.root));
	/* Overwriting inside the capacity needs no new charge. */
	UNIT_EXPECT_EQ("memfs_cap_full_overwrite", vmm_memfs_write(a, 100, "xyz", 3), 3);

	/* An open (referenced) unlinked file keeps its bytes and its charge. */
	struct vmm_memfs_node *held = vmm_memfs_node_ref(a);
	UNIT_EXPECT_EQ("memfs_unlink_open", vmm_memfs_remove(&f.fs, "a", false), 0);
	uint8_t buf[8] = {0};
	unit_check(lookup(&f, "a") == NULL && vmm_memfs_read(held, 100, buf, 3) == 3 && memcmp(buf, "xyz", 3) == 0,
		   "memfs_unlinked_still_readable", "unlinked open file unreadable");
	unit_check(f.mm.extra_bytes == 48 * KIB, "memfs_unlinked_open_still_charged", "charged %" PRIu64, f.mm.extra_bytes);
	UNIT_EXPECT_EQ("memfs_unlinked_open_still_full", vmm_memfs_write(b, 8 * KIB, "B", 1), -ENOSPC);
	vmm_memfs_node_unref(held);
	unit_check(f.mm.extra_bytes == 8 * KIB, "memfs_refund_on_last_close", "charged %" PRIu64 " after last close",
		   f.mm.extra_bytes);
	UNIT_EXPECT_EQ("memfs_write_after_refund", vmm_memfs_write(b, 8 * KIB, "B", 1), 1);

	/* Renaming over a file frees the old target's bytes. */
	struct vmm_memfs_node *x = create(&f, "x", false);
	vmm_memfs_write(x, 0, data, 4 * KIB);
	uint64_t before = f.mm.extra_bytes;
	UNIT_EXPECT_EQ("memfs_rename_over_file", vmm_memfs_rename(&f.fs, "x", "b"), 0);
	unit_check(f.mm.extra_bytes == before - 16 * KIB && lookup(&f, "b") == x && lookup(&f, "x") == NULL,
		   "memfs_rename_over_refunds", "charged %" PRIu64 " (was %" PRIu64 ")", f.mm.extra_bytes, before);
	fixture_close(&f);
	unit_check(f.mm.extra_bytes == 0, "memfs_destroy_refunds", "charged %" PRIu64 " after destroy", f.mm.extra_bytes);

	/* Mappings and /tmp share one cap. */
	if (fixture_open(&f) < 0)
		return;
	uint64_t result = 0;
	uint64_t room = f.mm.limit_bytes - 64 * KIB;
	UNIT_EXPECT_EQ("memfs_cap_shared_map", vmm_mm_map(&f.mm, 0, room, 0, 3, 0, &result), 0);
	struct vmm_memfs_node *big = create(&f, "big", false);
	UNIT_EXPECT_EQ("memfs_cap_shared_write_fits", vmm_memfs_write(big, 0, data, 64 * KIB), (int64_t)(64 * KIB));
	UNIT_EXPECT_EQ("memfs_cap_shared_write_full", vmm_memfs_write(big, 64 * KIB, "x", 1), -ENOSPC);
	UNIT_EXPECT_EQ("memfs_cap_shared_map_full", vmm_mm_map(&f.mm, 0, PAGE, 0, 3, 0, &result), -ENOMEM);
	unit_check(f.mm.mapped_bytes + f.mm.extra_bytes <= f.mm.limit_bytes, "memfs_cap_shared_bound",
		   "mapped %" PRIu64 " + tmp %" PRIu64 " > limit %" PRIu64, f.mm.mapped_bytes, f.mm.extra_bytes,
		   f.mm.limit_bytes);
	UNIT_EXPECT_EQ("memfs_cap_shared_unlink", vmm_memfs_remove(&f.fs, "big", false), 0);
	UNIT_EXPECT_EQ("memfs_cap_shared_map_after_unlink", vmm_mm_map(&f.mm, 0, 16 * PAGE, 0, 3, 0, &result), 0);
	fixture_close(&f);
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
	create(&f, "other", false);

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

	/* A sibling whose name only starts like the directory is not inside it. */
	UNIT_EXPECT_EQ("memfs_rename_dir_prefix_sibling", vmm_memfs_rename(&f.fs, "d", "dd"), 0);
	unit_check(lookup(&f, "dd") == d && lookup(&f, "dd/sub") == sub && lookup(&f, "d") == NULL,
		   "memfs_rename_dir_moves_subtree", "subtree not reachable under the new name");
	UNIT_EXPECT_EQ("memfs_rename_across_dirs", vmm_memfs_rename(&f.fs, "a", "dd/sub/a2"), 0);
	unit_check(lookup(&f, "dd/sub/a2") == a && lookup(&f, "a") == NULL && a->parent == sub &&
			   strcmp(a->name, "a2") == 0,
		   "memfs_rename_across_dirs_linked", "renamed file not where expected");
	UNIT_EXPECT_EQ("memfs_rename_dir_over_empty_dir", vmm_memfs_rename(&f.fs, "dd/sub", "empty"), 0);
	unit_check(lookup(&f, "empty") == sub && lookup(&f, "empty/leaf") && lookup(&f, "empty/a2") == a &&
			   lookup(&f, "dd/sub") == NULL,
		   "memfs_rename_dir_over_empty_dir_result", "tree wrong after replacing an empty directory");
	(void)empty; /* freed by the rename above */

	/* Renaming an open directory, then removing it, keeps it alive for its holder. */
	struct vmm_memfs_node *held = vmm_memfs_node_ref(lookup(&f, "dd"));
	UNIT_EXPECT_EQ("memfs_rmdir_open_dir", vmm_memfs_remove(&f.fs, "dd", true), 0);
	unit_check(held->parent == NULL && held->first_child == NULL && lookup(&f, "dd") == NULL,
		   "memfs_rmdir_open_dir_detached", "removed directory still linked");
	vmm_memfs_node_unref(held);
	fixture_close(&f);
}

/* A file still referenced when the whole /tmp is torn down. */
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
	vmm_memfs_node_unref(held);
	unit_check(f.mm.extra_bytes == 0, "memfs_destroy_open_refunded", "charged %" PRIu64, f.mm.extra_bytes);
	vmm_mm_destroy(&f.mm);
	unit_fake_vm_free(&f.vm);
}

/* Many files and random writes: charges always equal the capacities held. */
static void test_random_charges(void)
{
	struct fixture f;
	if (fixture_open(&f) < 0)
		return;
	f.mm.limit_bytes = 2 * MIB;
	uint64_t state = 0x1234567;
	static uint8_t data[256 * 1024];
	memset(data, 'r', sizeof data);
	bool ok = true;
	char reason[200] = "";
	int step;
	for (step = 0; step < 20000 && ok; step++) {
		state = state * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t r = state >> 20;
		char name[16];
		snprintf(name, sizeof name, "f%u", (unsigned)(r % 16));
		struct vmm_memfs_node *node = lookup(&f, name);
		switch ((r >> 8) % 4) {
		case 0:
			if (!node)
				node = create(&f, name, false);
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
		default: {
			char to[16];
			snprintf(to, sizeof to, "f%u", (unsigned)((r >> 24) % 16));
			vmm_memfs_rename(&f.fs, name, to);
		}
		}
		if (ok && f.mm.extra_bytes != tree_capacity(f.fs.root)) {
			snprintf(reason, sizeof reason, "charged %" PRIu64 ", capacities %" PRIu64, f.mm.extra_bytes,
				 tree_capacity(f.fs.root));
			ok = false;
		}
		if (ok && f.mm.extra_bytes > f.mm.limit_bytes) {
			snprintf(reason, sizeof reason, "charged %" PRIu64 " > limit", f.mm.extra_bytes);
			ok = false;
		}
	}
	unit_check(ok, "memfs_random_charges_match", "step %d: %s", step - 1, reason);
	fixture_close(&f);
	unit_check(f.mm.extra_bytes == 0, "memfs_random_all_refunded", "charged %" PRIu64, f.mm.extra_bytes);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_tree();
	test_read_write();
	test_cap();
	test_rename();
	test_destroy_with_open_file();
	test_random_charges();
	return unit_exit_status();
}
