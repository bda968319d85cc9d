/* Unit test of the guest address-space bookkeeping (vmm/memory_map.c), run
 * on the host against a fake VM whose guest memory is a plain mapping.
 * It checks placement, splitting, brk, the memory cap and the hostile edges
 * (misaligned addresses, lengths near 2^64), then runs 100,000 random
 * operations against a page-bitmap reference model with a fixed seed.
 * One line per check: "PASS name" or "FAIL name: detail"; exits non-zero
 * on any failure.  Needs no /dev/kvm. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest_layout.h"
#include "memory_map.h"
#include "unit_test.h"
#include "vm.h"

#define PAGE ((uint64_t)GUEST_PAGE_SIZE)
#define MIB ((uint64_t)1 << 20)
#define HUGE_LENGTH (UINT64_MAX - PAGE + 1) /* the largest page-aligned length */

/* ---- helpers ------------------------------------------------------------ */

/* Checks the map's own invariants: regions sorted, page aligned, non-empty,
 * non-overlapping, inside [low, high), and summing to mapped_bytes when
 * `check_total`.  Writes a reason and returns false on the first breach. */
static bool map_is_consistent(const struct vmm_memory_map *mm, bool check_total, char *reason,
			      size_t reason_size)
{
	uint64_t total = 0, previous_end = 0;
	if (mm->count > mm->capacity) {
		snprintf(reason, reason_size, "count %zu > capacity %zu", mm->count, mm->capacity);
		return false;
	}
	for (size_t i = 0; i < mm->count; i++) {
		const struct vmm_region *r = &mm->regions[i];
		if ((r->start | r->end) & (PAGE - 1) || r->start >= r->end || r->start < mm->low ||
		    r->end > mm->high || r->start < previous_end) {
			snprintf(reason, reason_size, "region %zu [%#" PRIx64 ", %#" PRIx64 ") bad (previous end %#" PRIx64 ")",
				 i, r->start, r->end, previous_end);
			return false;
		}
		previous_end = r->end;
		total += r->end - r->start;
	}
	if (check_total && total != mm->mapped_bytes) {
		snprintf(reason, reason_size, "regions sum to %#" PRIx64 " but mapped_bytes = %#" PRIx64,
			 total, mm->mapped_bytes);
		return false;
	}
	return true;
}

static uint64_t round_up_page(uint64_t value)
{
	return (value + PAGE - 1) & ~(PAGE - 1);
}

/* What the cap must bound: mapped bytes, heap pages and /tmp bytes. */
static uint64_t pages_in_use(const struct vmm_memory_map *mm)
{
	return mm->mapped_bytes + mm->extra_bytes + (round_up_page(mm->brk_current) - mm->brk_start);
}

static uint64_t regions_total(const struct vmm_memory_map *mm)
{
	uint64_t total = 0;
	for (size_t i = 0; i < mm->count; i++)
		total += mm->regions[i].end - mm->regions[i].start;
	return total;
}

struct fixture {
	struct vmm_vm vm;
	struct vmm_memory_map mm;
};

static int fixture_open(struct fixture *f, uint64_t mem_size)
{
	if (unit_fake_vm(&f->vm, mem_size) < 0)
		return -1;
	vmm_mm_init(&f->mm, &f->vm);
	return 0;
}

static void fixture_close(struct fixture *f)
{
	vmm_mm_destroy(&f->mm);
	unit_fake_vm_free(&f->vm);
}

static void check_consistent(const char *name, const struct vmm_memory_map *mm)
{
	char reason[256] = "";
	bool ok = map_is_consistent(mm, true, reason, sizeof reason);
	unit_check(ok, name, "%s", reason);
}

/* ---- explicit cases ----------------------------------------------------- */

static void test_init_and_setup(void)
{
	struct fixture f;
	if (!unit_check(fixture_open(&f, 64 * MIB) == 0, "mm_fake_vm", "mmap of 64 MiB failed"))
		return;
	struct vmm_memory_map *mm = &f.mm;
	unit_check(mm->low == GUEST_SYSTEM_END && mm->high == 64 * MIB &&
			   mm->limit_bytes == 64 * MIB - GUEST_SYSTEM_END && mm->mmap_top == mm->high,
		   "mm_init_bounds", "low %#" PRIx64 " high %#" PRIx64 " limit %#" PRIx64, mm->low,
		   mm->high, mm->limit_bytes);

	UNIT_EXPECT_EQ("mm_setup_stack_too_big", vmm_mm_setup_process(mm, mm->limit_bytes / 2, mm->low), -ENOMEM);
	int rc = vmm_mm_setup_process(mm, MIB, mm->low + 0x12345);
	UNIT_EXPECT_EQ("mm_setup_process", rc, 0);
	unit_check(mm->stack_top == mm->high && mm->stack_low == mm->high - MIB &&
			   vmm_mm_is_mapped(mm, mm->stack_low, MIB),
		   "mm_setup_stack_mapped", "stack [%#" PRIx64 ", %#" PRIx64 ")", mm->stack_low,
		   mm->stack_top);
	unit_check(mm->mmap_top == mm->stack_low - PAGE, "mm_setup_guard_gap",
		   "mmap_top %#" PRIx64, mm->mmap_top);
	unit_check(mm->brk_start == mm->low + 0x13000 && mm->brk_current == mm->brk_start,
		   "mm_setup_brk_aligned", "brk_start %#" PRIx64, mm->brk_start);

	uint64_t a = 0, b = 0;
	rc = vmm_mm_map(mm, 0, 3 * PAGE, 0, 3, 0, &a);
	unit_check(rc == 0 && a == mm->mmap_top - 3 * PAGE, "mm_map_top_down",
		   "rc %d result %#" PRIx64 " mmap_top %#" PRIx64, rc, a, mm->mmap_top);
	rc = vmm_mm_map(mm, 0, 2 * PAGE, 0, 1, 0, &b);
	unit_check(rc == 0 && b == a - 2 * PAGE, "mm_map_next_below", "rc %d result %#" PRIx64, rc, b);
	unit_check(mm->mapped_bytes == MIB + 5 * PAGE, "mm_mapped_bytes_sum",
		   "mapped_bytes %#" PRIx64, mm->mapped_bytes);
	struct vmm_region *r = vmm_mm_find(mm, a + PAGE);
	unit_check(r && r->start == a && r->end == a + 3 * PAGE && r->prot == 3, "mm_find_inside",
		   "region %p", (void *)r);
	unit_check(vmm_mm_find(mm, a + 3 * PAGE) == NULL && vmm_mm_find(mm, b - 1) == NULL,
		   "mm_find_end_exclusive", "found a region at the end or in a gap");
	unit_check(vmm_mm_is_mapped(mm, b, 5 * PAGE), "mm_is_mapped_adjacent", "two adjacent maps not seen as mapped");
	unit_check(!vmm_mm_is_mapped(mm, b - PAGE, 2 * PAGE), "mm_is_mapped_partial", "a partly mapped range reported mapped");

	/* A free hint is honoured; one that is taken, in the heap or outside memory is not. */
	uint64_t hint = mm->low + 16 * MIB, placed = 0;
	rc = vmm_mm_map(mm, hint, PAGE, 0, 3, 0, &placed);
	unit_check(rc == 0 && placed == hint, "mm_map_free_hint", "rc %d placed %#" PRIx64, rc, placed);
	rc = vmm_mm_map(mm, hint, PAGE, 0, 3, 0, &placed);
	unit_check(rc == 0 && placed != hint && placed >= mm->low && placed + PAGE <= mm->mmap_top,
		   "mm_map_taken_hint", "rc %d placed %#" PRIx64, rc, placed);
	uint64_t outside_hints[] = {PAGE, mm->low - PAGE, mm->high, mm->high + 64 * MIB,
				    UINT64_MAX & ~(PAGE - 1), mm->brk_start};
	vmm_mm_brk(mm, mm->brk_start + 4 * PAGE);
	for (size_t i = 0; i < sizeof outside_hints / sizeof outside_hints[0]; i++) {
		char name[64];
		snprintf(name, sizeof name, "mm_map_bad_hint_%zu", i);
		rc = vmm_mm_map(mm, outside_hints[i], 2 * PAGE, 0, 3, 0, &placed);
		unit_check(rc == 0 && placed >= round_up_page(mm->brk_current) && placed >= mm->low &&
				   placed + 2 * PAGE <= mm->mmap_top,
			   name, "hint %#" PRIx64 ": rc %d placed %#" PRIx64, outside_hints[i], rc, placed);
	}
	check_consistent("mm_setup_consistent", mm);
	fixture_close(&f);
}

static void test_misaligned_and_empty(void)
{
	struct fixture f;
	if (fixture_open(&f, 64 * MIB) < 0)
		return;
	struct vmm_memory_map *mm = &f.mm;
	uint64_t result = 0, base = mm->low + 8 * MIB;
	UNIT_EXPECT_EQ("mm_map_fixed_unaligned_addr", vmm_mm_map(mm, base + 1, PAGE, 1, 3, 0, &result), -EINVAL);
	UNIT_EXPECT_EQ("mm_map_unaligned_hint", vmm_mm_map(mm, base + 0x800, PAGE, 0, 3, 0, &result), -EINVAL);
	UNIT_EXPECT_EQ("mm_map_unaligned_len", vmm_mm_map(mm, base, PAGE + 1, 1, 3, 0, &result), -EINVAL);
	UNIT_EXPECT_EQ("mm_map_zero_len", vmm_mm_map(mm, base, 0, 1, 3, 0, &result), -EINVAL);
	UNIT_EXPECT_EQ("mm_map_zero_len_nonfixed", vmm_mm_map(mm, 0, 0, 0, 3, 0, &result), -EINVAL);
	UNIT_EXPECT_EQ("mm_unmap_unaligned_addr", vmm_mm_unmap(mm, base + 8, PAGE), -EINVAL);
	UNIT_EXPECT_EQ("mm_unmap_zero_len", vmm_mm_unmap(mm, base, 0), -EINVAL);
	UNIT_EXPECT_EQ("mm_protect_unaligned_addr", vmm_mm_protect(mm, base + 1, PAGE, 1), -EINVAL);
	UNIT_EXPECT_EQ("mm_fixed_below_low", vmm_mm_map(mm, mm->low - PAGE, 2 * PAGE, 1, 3, 0, &result), -ENOMEM);
	UNIT_EXPECT_EQ("mm_fixed_page_zero", vmm_mm_map(mm, 0, PAGE, 1, 3, 0, &result), -ENOMEM);
	UNIT_EXPECT_EQ("mm_fixed_past_high", vmm_mm_map(mm, mm->high - PAGE, 2 * PAGE, 1, 3, 0, &result), -ENOMEM);
	UNIT_EXPECT_EQ("mm_fixed_at_high", vmm_mm_map(mm, mm->high, PAGE, 1, 3, 0, &result), -ENOMEM);
	UNIT_EXPECT_EQ("mm_fixed_last_page", vmm_mm_map(mm, mm->high - PAGE, PAGE, 1, 3, 0, &result), 0);
	UNIT_EXPECT_EQ("mm_unmap_below_low", vmm_mm_unmap(mm, mm->low - PAGE, 2 * PAGE), -EINVAL);
	UNIT_EXPECT_EQ("mm_unmap_past_high", vmm_mm_unmap(mm, mm->high - PAGE, 2 * PAGE), -EINVAL);
	UNIT_EXPECT_EQ("mm_unmap_unaligned_len_rounds", vmm_mm_unmap(mm, mm->high - PAGE, 1), 0);
	unit_check(!vmm_mm_is_mapped(mm, mm->high - PAGE, PAGE), "mm_unmap_rounded_page_gone",
		   "page still mapped after unmap of 1 byte");
	UNIT_EXPECT_EQ("mm_unmap_nothing_mapped", vmm_mm_unmap(mm, base, 16 * PAGE), 0);
	unit_check(mm->count == 0 && mm->mapped_bytes == 0, "mm_empty_after_unmaps",
		   "count %zu mapped %#" PRIx64, mm->count, mm->mapped_bytes);
	fixture_close(&f);
}

/* Lengths and addresses near 2^64 must fail cleanly, never wrap. */
static void test_huge_values(void)
{
	struct fixture f;
	if (fixture_open(&f, 64 * MIB) < 0)
		return;
	struct vmm_memory_map *mm = &f.mm;
	vmm_mm_setup_process(mm, MIB, mm->low + MIB);
	uint64_t result = 0xdead, base = mm->low + 8 * MIB;
	UNIT_EXPECT_EQ("mm_map_fixed_base", vmm_mm_map(mm, base, 4 * PAGE, 1, 3, 0, &result), 0);
	uint64_t before = mm->mapped_bytes;
	size_t count_before = mm->count;

	UNIT_EXPECT_EQ("mm_huge_nonfixed_len", vmm_mm_map(mm, 0, HUGE_LENGTH, 0, 3, 0, &result), -ENOMEM);
	/* A length chosen so bytes_in_use + len wraps to a small number. */
	uint64_t wrapping = 0 - (mm->mapped_bytes + mm->extra_bytes) + PAGE;
	UNIT_EXPECT_EQ("mm_wrapping_nonfixed_len", vmm_mm_map(mm, 0, wrapping, 0, 3, 0, &result), -ENOMEM);
	UNIT_EXPECT_EQ("mm_wrapping_nonfixed_len_hint", vmm_mm_map(mm, base + 64 * PAGE, wrapping, 0, 3, 0, &result), -ENOMEM);
	UNIT_EXPECT_EQ("mm_huge_fixed_len", vmm_mm_map(mm, mm->low, HUGE_LENGTH, 1, 3, 0, &result), -ENOMEM);
	UNIT_EXPECT_EQ("mm_wrapping_fixed_len", vmm_mm_map(mm, base, wrapping, 1, 3, 0, &result), -ENOMEM);
	UNIT_EXPECT_EQ("mm_huge_fixed_addr", vmm_mm_map(mm, HUGE_LENGTH, PAGE, 1, 3, 0, &result), -ENOMEM);
	UNIT_EXPECT_EQ("mm_huge_fixed_addr_wrap", vmm_mm_map(mm, HUGE_LENGTH, 2 * PAGE, 1, 3, 0, &result), -ENOMEM);
	UNIT_EXPECT_EQ("mm_huge_hint", vmm_mm_map(mm, HUGE_LENGTH, 2 * PAGE, 0, 3, 0, &result), 0);
	unit_check(result >= mm->low && result + 2 * PAGE <= mm->mmap_top, "mm_huge_hint_placed_inside",
		   "placed at %#" PRIx64, result);
	vmm_mm_unmap(mm, result, 2 * PAGE);

	UNIT_EXPECT_EQ("mm_unmap_len_max", vmm_mm_unmap(mm, base, UINT64_MAX), -EINVAL);
	UNIT_EXPECT_EQ("mm_unmap_len_huge", vmm_mm_unmap(mm, base, HUGE_LENGTH), -EINVAL);
	UNIT_EXPECT_EQ("mm_unmap_addr_huge", vmm_mm_unmap(mm, HUGE_LENGTH, 2 * PAGE), -EINVAL);
	unit_check(!vmm_mm_is_mapped(mm, base, UINT64_MAX), "mm_is_mapped_len_max", "reported mapped");
	unit_check(!vmm_mm_is_mapped(mm, HUGE_LENGTH, 2 * PAGE), "mm_is_mapped_addr_wrap", "reported mapped");

	uint64_t old_break = mm->brk_current;
	unit_check(vmm_mm_brk(mm, UINT64_MAX) == old_break, "mm_brk_max", "break moved");
	unit_check(vmm_mm_brk(mm, HUGE_LENGTH + 1) == old_break, "mm_brk_huge", "break moved");
	unit_check(vmm_mm_brk(mm, mm->high + 1) == old_break, "mm_brk_past_high", "break moved");

	UNIT_EXPECT_EQ("mm_charge_int64_max", vmm_mm_charge(mm, INT64_MAX), -ENOSPC);
	UNIT_EXPECT_EQ("mm_charge_overdrawn_refund", vmm_mm_charge(mm, -(int64_t)(64 * MIB)), 0);
	UNIT_EXPECT_EQ("mm_charge_refund_clamped", mm->extra_bytes, 0);

	/* mprotect of a range that wraps past 2^64: Linux answers ENOMEM
	 * (end <= start); it must not be taken for the heap or for mapped. */
	int rc = vmm_mm_protect(mm, HUGE_LENGTH, 2 * PAGE, 1);
	unit_check(rc < 0, "mm_protect_wrapping_range", "protect(%#" PRIx64 ", %#" PRIx64 ") = %d, expected -ENOMEM",
		   HUGE_LENGTH, 2 * PAGE, rc);
	rc = vmm_mm_protect(mm, base, UINT64_MAX, 1);
	unit_check(rc < 0, "mm_protect_len_max", "protect(%#" PRIx64 ", UINT64_MAX) = %d, expected -ENOMEM", base, rc);
	rc = vmm_mm_protect(mm, base, HUGE_LENGTH, 1);
	unit_check(rc < 0, "mm_protect_len_huge", "protect(%#" PRIx64 ", %#" PRIx64 ") = %d, expected -ENOMEM",
		   base, HUGE_LENGTH, rc);
	unit_check(mm->mapped_bytes == before && mm->count == count_before, "mm_huge_no_change",
		   "mapped %#" PRIx64 " count %zu", mm->mapped_bytes, mm->count);
	check_consistent("mm_huge_consistent", mm);
	fixture_close(&f);
}

/* Fixed maps that land inside, across and over existing regions. */
static void test_fixed_overlaps(void)
{
	struct fixture f;
	if (fixture_open(&f, 64 * MIB) < 0)
		return;
	struct vmm_memory_map *mm = &f.mm;
	uint64_t a = mm->low + 4 * MIB, result = 0;

	/* Split one region in three with a fixed map in its middle. */
	vmm_mm_map(mm, a, 10 * PAGE, 1, 1, 0, &result);
	int rc = vmm_mm_map(mm, a + 3 * PAGE, 2 * PAGE, 1, 7, 0, &result);
	bool shape = rc == 0 && mm->count == 3 && mm->regions[0].start == a &&
		     mm->regions[0].end == a + 3 * PAGE && mm->regions[0].prot == 1 &&
		     mm->regions[1].start == a + 3 * PAGE && mm->regions[1].end == a + 5 * PAGE &&
		     mm->regions[1].prot == 7 && mm->regions[2].start == a + 5 * PAGE &&
		     mm->regions[2].end == a + 10 * PAGE && mm->regions[2].prot == 1;
	unit_check(shape, "mm_fixed_split_shape", "rc %d count %zu", rc, mm->count);
	unit_check(mm->mapped_bytes == 10 * PAGE, "mm_fixed_split_mapped_bytes",
		   "map [a,a+10p) then fixed [a+3p,a+5p): mapped_bytes = %" PRIu64 " pages, expected 10 (regions sum to %" PRIu64 ")",
		   mm->mapped_bytes / PAGE, regions_total(mm) / PAGE);
	vmm_mm_destroy(mm);
	vmm_mm_init(mm, &f.vm);

	/* Unmap a middle piece. */
	vmm_mm_map(mm, a, 10 * PAGE, 1, 3, 0, &result);
	rc = vmm_mm_unmap(mm, a + 4 * PAGE, 2 * PAGE);
	shape = rc == 0 && mm->count == 2 && mm->regions[0].start == a &&
		mm->regions[0].end == a + 4 * PAGE && mm->regions[1].start == a + 6 * PAGE &&
		mm->regions[1].end == a + 10 * PAGE;
	unit_check(shape, "mm_unmap_middle_shape", "rc %d count %zu", rc, mm->count);
	unit_check(!vmm_mm_is_mapped(mm, a + 4 * PAGE, PAGE) && !vmm_mm_is_mapped(mm, a + 5 * PAGE, PAGE) &&
			   vmm_mm_is_mapped(mm, a, 4 * PAGE) && vmm_mm_is_mapped(mm, a + 6 * PAGE, 4 * PAGE),
		   "mm_unmap_middle_pages", "wrong pages mapped after unmapping the middle");
	unit_check(mm->mapped_bytes == 8 * PAGE, "mm_unmap_middle_mapped_bytes",
		   "map [a,a+10p) then unmap [a+4p,a+6p): mapped_bytes = %" PRIu64 " pages, expected 8",
		   mm->mapped_bytes / PAGE);

	/* A fixed map across a gap and two regions' edges. */
	rc = vmm_mm_map(mm, a + 2 * PAGE, 6 * PAGE, 1, 5, 0, &result);
	shape = rc == 0 && mm->count == 3 && mm->regions[0].end == a + 2 * PAGE &&
		mm->regions[1].start == a + 2 * PAGE && mm->regions[1].end == a + 8 * PAGE &&
		mm->regions[2].start == a + 8 * PAGE && mm->regions[2].end == a + 10 * PAGE;
	unit_check(shape, "mm_fixed_across_gap_shape", "rc %d count %zu", rc, mm->count);
	unit_check(regions_total(mm) == 10 * PAGE, "mm_fixed_across_gap_pages", "regions cover %" PRIu64 " pages",
		   regions_total(mm) / PAGE);

	/* A fixed map exactly over several regions replaces them all. */
	rc = vmm_mm_map(mm, a, 10 * PAGE, 1, 1, 0, &result);
	unit_check(rc == 0 && mm->count == 1 && mm->regions[0].start == a && mm->regions[0].end == a + 10 * PAGE,
		   "mm_fixed_replace_all", "rc %d count %zu", rc, mm->count);
	/* A fixed map that covers a region entirely and more. */
	rc = vmm_mm_map(mm, a - 2 * PAGE, 14 * PAGE, 1, 1, 0, &result);
	unit_check(rc == 0 && mm->count == 1 && regions_total(mm) == 14 * PAGE, "mm_fixed_superset",
		   "rc %d count %zu", rc, mm->count);

	/* Unmap across several regions and gaps. */
	vmm_mm_destroy(mm);
	vmm_mm_init(mm, &f.vm);
	for (int i = 0; i < 8; i++)
		vmm_mm_map(mm, a + (uint64_t)i * 4 * PAGE, 2 * PAGE, 1, 3, 0, &result);
	rc = vmm_mm_unmap(mm, a + PAGE, 28 * PAGE);
	unit_check(rc == 0 && mm->count == 2 && mm->regions[0].start == a && mm->regions[0].end == a + PAGE &&
			   mm->regions[1].start == a + 29 * PAGE && mm->regions[1].end == a + 30 * PAGE,
		   "mm_unmap_across_regions", "rc %d count %zu", rc, mm->count);
	unit_check(mm->mapped_bytes == 2 * PAGE, "mm_unmap_across_mapped_bytes", "mapped_bytes = %" PRIu64 " pages",
		   mm->mapped_bytes / PAGE);
	fixture_close(&f);
}

/* Unmapping or replacing memory discards its contents. */
static void test_zeroing(void)
{
	struct fixture f;
	if (fixture_open(&f, 64 * MIB) < 0)
		return;
	struct vmm_memory_map *mm = &f.mm;
	uint64_t a = mm->low + 4 * MIB, result = 0;
	vmm_mm_map(mm, a, 4 * PAGE, 1, 3, 0, &result);
	memset(f.vm.direct + a, 0xab, 4 * PAGE);
	vmm_mm_unmap(mm, a + PAGE, PAGE);
	vmm_mm_map(mm, a + 3 * PAGE, PAGE, 1, 3, 0, &result);
	bool ok = f.vm.direct[a] == 0xab && f.vm.direct[a + PAGE] == 0 && f.vm.direct[a + 2 * PAGE - 1] == 0 &&
		  f.vm.direct[a + 2 * PAGE] == 0xab && f.vm.direct[a + 3 * PAGE] == 0 && f.vm.direct[a + 4 * PAGE - 1] == 0;
	unit_check(ok, "mm_unmap_and_fixed_zero", "bytes %02x %02x %02x %02x", f.vm.direct[a], f.vm.direct[a + PAGE],
		   f.vm.direct[a + 2 * PAGE], f.vm.direct[a + 3 * PAGE]);

	/* All program memory is present to the guest's CPU, so a guest can write
	 * to pages it has not mapped.  A new mapping must still read as zero
	 * (memory_map.h: "The memory reads as zero"). */
	uint64_t stray = mm->low + 8 * MIB;
	memset(f.vm.direct + stray, 0xee, 4 * PAGE);
	int rc = vmm_mm_map(mm, stray, PAGE, 1, 3, 0, &result);
	unit_check(rc == 0 && f.vm.direct[stray] == 0 && f.vm.direct[stray + PAGE - 1] == 0, "mm_fixed_map_of_written_page_zero",
		   "guest wrote 0xee to unmapped page %#" PRIx64 ", then MAP_FIXED there reads %#04x", stray, f.vm.direct[stray]);
	rc = vmm_mm_map(mm, stray + 2 * PAGE, PAGE, 0, 3, 0, &result);
	unit_check(rc == 0 && result == stray + 2 * PAGE && f.vm.direct[result] == 0 && f.vm.direct[result + PAGE - 1] == 0,
		   "mm_hinted_map_of_written_page_zero",
		   "guest wrote 0xee to unmapped page %#" PRIx64 ", then mmap with that hint reads %#04x", stray + 2 * PAGE,
		   f.vm.direct[stray + 2 * PAGE]);

	/* MAP_FIXED over heap pages replaces them with zero pages, as on Linux. */
	vmm_mm_setup_process(mm, MIB, mm->low + MIB);
	uint64_t heap = mm->brk_start;
	vmm_mm_brk(mm, heap + 4 * PAGE);
	memset(f.vm.direct + heap, 0x77, 4 * PAGE);
	rc = vmm_mm_map(mm, heap + PAGE, PAGE, 1, 3, 0, &result);
	unit_check(rc == 0 && f.vm.direct[heap + PAGE] == 0 && f.vm.direct[heap + 2 * PAGE - 1] == 0 && f.vm.direct[heap] == 0x77,
		   "mm_fixed_over_heap_zero", "MAP_FIXED over a heap page: rc %d, page reads %#04x", rc, f.vm.direct[heap + PAGE]);
	fixture_close(&f);
}

static void test_brk(void)
{
	struct fixture f;
	if (fixture_open(&f, 64 * MIB) < 0)
		return;
	struct vmm_memory_map *mm = &f.mm;
	vmm_mm_setup_process(mm, MIB, mm->low + MIB);
	uint64_t start = mm->brk_start, result = 0;

	unit_check(vmm_mm_brk(mm, 0) == start, "mm_brk_query", "brk(0) = %#" PRIx64, vmm_mm_brk(mm, 0));
	unit_check(vmm_mm_brk(mm, start - 1) == start, "mm_brk_below_start", "moved below brk_start");
	unit_check(vmm_mm_brk(mm, start + 10 * PAGE + 5) == start + 10 * PAGE + 5, "mm_brk_grow", "brk did not grow");
	memset(f.vm.direct + start, 0xcd, 11 * PAGE);
	unit_check(vmm_mm_brk(mm, start + 2 * PAGE) == start + 2 * PAGE, "mm_brk_shrink", "brk did not shrink");
	unit_check(f.vm.direct[start + 2 * PAGE - 1] == 0xcd && f.vm.direct[start + 2 * PAGE] == 0 &&
			   f.vm.direct[start + 11 * PAGE - 1] == 0,
		   "mm_brk_shrink_zeroes", "released heap pages not zero");
	unit_check(vmm_mm_brk(mm, start + 2 * PAGE + 1) == start + 2 * PAGE + 1 &&
			   f.vm.direct[start + 2 * PAGE] == 0,
		   "mm_brk_regrow_zero", "regrown heap not zero");

	/* A mapping right above the heap stops it. */
	uint64_t wall = start + 8 * PAGE;
	vmm_mm_map(mm, wall, 4 * PAGE, 1, 3, 0, &result);
	uint64_t before = mm->brk_current;
	unit_check(vmm_mm_brk(mm, wall + 1) == before, "mm_brk_into_mapping", "brk grew into a mapping");
	unit_check(vmm_mm_brk(mm, wall + 100 * PAGE) == before, "mm_brk_over_mapping", "brk jumped over a mapping");
	unit_check(vmm_mm_brk(mm, wall) == wall, "mm_brk_up_to_mapping", "brk could not reach a mapping's start");
	unit_check(vmm_mm_brk(mm, mm->mmap_top + PAGE) == wall, "mm_brk_past_mmap_top", "brk passed mmap_top");
	UNIT_EXPECT_EQ("mm_unmap_heap_refused", vmm_mm_unmap(mm, start, PAGE), -EINVAL);
	UNIT_EXPECT_EQ("mm_unmap_heap_overlap_refused", vmm_mm_unmap(mm, start - PAGE, 2 * PAGE), -EINVAL);

	/* Non-fixed maps never land in the heap. */
	vmm_mm_unmap(mm, wall, 4 * PAGE);
	vmm_mm_brk(mm, start + 3 * PAGE + 7);
	bool inside = true;
	for (int i = 0; i < 64; i++) {
		if (vmm_mm_map(mm, start, PAGE, 0, 3, 0, &result) == 0 &&
		    result < round_up_page(mm->brk_current) && result + PAGE > mm->brk_start)
			inside = false;
	}
	unit_check(inside, "mm_map_hint_in_heap", "a mapping landed in the heap");

	/* mprotect of heap pages: Linux's heap is page granular. */
	UNIT_EXPECT_EQ("mm_protect_heap_whole_pages", vmm_mm_protect(mm, start, 3 * PAGE, 1), 0);
	int rc = vmm_mm_protect(mm, start + 3 * PAGE, PAGE, 1);
	unit_check(rc == 0, "mm_protect_heap_last_partial_page",
		   "brk = start+3p+7; protect(start+3p, 1 page) = %d, expected 0 (page is heap)", rc);
	fixture_close(&f);
}

static void test_protect(void)
{
	struct fixture f;
	if (fixture_open(&f, 64 * MIB) < 0)
		return;
	struct vmm_memory_map *mm = &f.mm;
	uint64_t a = mm->low + 4 * MIB, result = 0;
	vmm_mm_map(mm, a, 4 * PAGE, 1, 3, 0, &result);
	vmm_mm_map(mm, a + 4 * PAGE, 4 * PAGE, 1, 3, 0, &result);
	UNIT_EXPECT_EQ("mm_protect_mapped", vmm_mm_protect(mm, a + PAGE, 6 * PAGE, 1), 0);
	struct vmm_region *r = vmm_mm_find(mm, a + 5 * PAGE);
	unit_check(r && r->prot == 1 && vmm_mm_find(mm, a + PAGE)->prot == 1, "mm_protect_sets_prot", "prot not set");
	UNIT_EXPECT_EQ("mm_protect_partly_unmapped", vmm_mm_protect(mm, a + 6 * PAGE, 4 * PAGE, 1), -ENOMEM);
	UNIT_EXPECT_EQ("mm_protect_unmapped", vmm_mm_protect(mm, a + 64 * PAGE, PAGE, 1), -ENOMEM);
	UNIT_EXPECT_EQ("mm_protect_outside", vmm_mm_protect(mm, PAGE, PAGE, 1), -ENOMEM);
	UNIT_EXPECT_EQ("mm_protect_unaligned_len_rounds", vmm_mm_protect(mm, a, 1, 7), 0);
	fixture_close(&f);
}

/* Charges /tmp bytes the way a hostile guest probing sizes would: all the
 * room the bookkeeping admits, or, if bytes_in_use already exceeds the
 * limit, the amount that makes the cap check's sum wrap to zero. */
static void charge_everything_allowed(struct vmm_memory_map *mm)
{
	uint64_t in_use = mm->mapped_bytes + mm->extra_bytes + (mm->brk_current - mm->brk_start);
	uint64_t ask = in_use <= mm->limit_bytes ? mm->limit_bytes - in_use : 0 - in_use;
	ask &= ~(PAGE - 1);
	if (ask && ask <= INT64_MAX)
		vmm_mm_charge(mm, (int64_t)ask);
	while (vmm_mm_charge(mm, (int64_t)PAGE) == 0 && mm->extra_bytes < 4 * mm->limit_bytes)
		;
}

/* mapped + heap + /tmp bytes never exceed limit_bytes. */
static void test_cap(void)
{
	struct fixture f;
	if (fixture_open(&f, 32 * MIB) < 0)
		return;
	struct vmm_memory_map *mm = &f.mm;
	vmm_mm_setup_process(mm, MIB, mm->low + MIB);
	uint64_t result = 0;
	int maps = 0;
	while (vmm_mm_map(mm, 0, 64 * PAGE, 0, 3, 0, &result) == 0)
		maps++;
	unit_check(pages_in_use(mm) <= mm->limit_bytes, "mm_cap_fill_maps",
		   "in use %#" PRIx64 " > limit %#" PRIx64, pages_in_use(mm), mm->limit_bytes);
	uint64_t room = mm->limit_bytes - pages_in_use(mm);
	UNIT_EXPECT_EQ("mm_cap_charge_too_much", vmm_mm_charge(mm, (int64_t)room + 1), -ENOSPC);
	UNIT_EXPECT_EQ("mm_cap_charge_exact", vmm_mm_charge(mm, (int64_t)room), 0);
	UNIT_EXPECT_EQ("mm_cap_full_map", vmm_mm_map(mm, 0, PAGE, 0, 3, 0, &result), -ENOMEM);
	uint64_t old_break = mm->brk_current;
	unit_check(vmm_mm_brk(mm, old_break + PAGE) == old_break, "mm_cap_full_brk", "brk grew past the cap");
	/* The guard page below the stack is in bounds and never mapped. */
	UNIT_EXPECT_EQ("mm_cap_full_fixed_new", vmm_mm_map(mm, mm->mmap_top, PAGE, 1, 3, 0, &result), -ENOMEM);
	/* Replacing already mapped pages costs nothing. */
	uint64_t some = mm->regions[mm->count - 2].start;
	UNIT_EXPECT_EQ("mm_cap_full_fixed_replace", vmm_mm_map(mm, some, 64 * PAGE, 1, 1, 0, &result), 0);
	UNIT_EXPECT_EQ("mm_cap_refund", vmm_mm_charge(mm, -(int64_t)PAGE), 0);
	UNIT_EXPECT_EQ("mm_cap_after_refund", vmm_mm_map(mm, 0, PAGE, 0, 3, 0, &result), 0);
	unit_check(pages_in_use(mm) == mm->limit_bytes, "mm_cap_exactly_full",
		   "in use %#" PRIx64 " limit %#" PRIx64, pages_in_use(mm), mm->limit_bytes);

	/* Split a large region many times: the cap must still hold. */
	vmm_mm_destroy(mm);
	vmm_mm_init(mm, &f.vm);
	uint64_t big = 16 * MIB, a = mm->low;
	vmm_mm_map(mm, a, big, 1, 3, 0, &result);
	for (uint64_t off = big - 2 * PAGE; off >= 2 * PAGE && off < big; off -= 64 * PAGE)
		vmm_mm_unmap(mm, a + off, PAGE);
	uint64_t real = regions_total(mm);
	unit_check(mm->mapped_bytes == real, "mm_cap_split_accounting",
		   "after punching 1-page holes every 64 pages in a 16 MiB map, mapped_bytes = %#" PRIx64 " but regions cover %#" PRIx64,
		   mm->mapped_bytes, real);
	int extra = 0;
	while (extra < 100000 && vmm_mm_map(mm, 0, 64 * PAGE, 0, 3, 0, &result) == 0)
		extra++;
	charge_everything_allowed(mm);
	real = regions_total(mm) + mm->extra_bytes;
	unit_check(real <= mm->limit_bytes, "mm_cap_split_not_exceeded",
		   "regions %#" PRIx64 " + /tmp %#" PRIx64 " = %#" PRIx64 " > limit %#" PRIx64 " (mapped_bytes says %#" PRIx64 ")",
		   regions_total(mm), mm->extra_bytes, real, mm->limit_bytes, mm->mapped_bytes);

	/* A guest that maps, punches one page, and unmaps everything, a few times. */
	vmm_mm_destroy(mm);
	vmm_mm_init(mm, &f.vm);
	for (int cycle = 0; cycle < 4; cycle++) {
		vmm_mm_map(mm, a, big, 1, 3, 0, &result);
		vmm_mm_unmap(mm, a + big / 2, PAGE);
		vmm_mm_unmap(mm, a, big);
	}
	unit_check(mm->count == 0 && mm->mapped_bytes == 0, "mm_split_cycles_nothing_mapped",
		   "count %zu, mapped_bytes %#" PRIx64 " with nothing mapped", mm->count, mm->mapped_bytes);
	int rc = vmm_mm_map(mm, 0, PAGE, 0, 3, 0, &result);
	unit_check(rc == 0, "mm_split_cycles_can_map", "map of one page with nothing mapped = %d", rc);
	vmm_mm_unmap(mm, result, PAGE);
	charge_everything_allowed(mm);
	unit_check(mm->extra_bytes <= mm->limit_bytes, "mm_split_cycles_tmp_bounded",
		   "/tmp charged %#" PRIx64 " bytes with limit %#" PRIx64, mm->extra_bytes, mm->limit_bytes);
	fixture_close(&f);
}

/* find_free_range only hands out free pages inside [floor, mmap_top). */
static void test_free_range_bounds(void)
{
	struct fixture f;
	if (fixture_open(&f, 32 * MIB) < 0)
		return;
	struct vmm_memory_map *mm = &f.mm;
	vmm_mm_setup_process(mm, 256 * 1024, mm->low + 2 * MIB);
	vmm_mm_brk(mm, mm->brk_start + 5 * PAGE + 3);
	uint64_t result = 0;
	/* Fragment the space with small fixed maps. */
	uint64_t floor = round_up_page(mm->brk_current);
	for (uint64_t a = floor + 3 * PAGE; a + PAGE <= mm->mmap_top; a += 7 * PAGE)
		vmm_mm_map(mm, a, PAGE, 1, 3, 0, &result);
	bool ok = true;
	char reason[256] = "";
	uint64_t len_pages[] = {1, 2, 3, 4, 5, 6, 7, 8, 13};
	for (int round = 0; round < 2000 && ok; round++) {
		uint64_t len = len_pages[round % 9] * PAGE;
		size_t before = mm->count;
		int rc = vmm_mm_map(mm, 0, len, 0, 3, 0, &result);
		if (rc < 0)
			continue;
		if (result < floor || result < mm->low || result + len > mm->mmap_top || result + len < result) {
			snprintf(reason, sizeof reason, "len %#" PRIx64 " placed at %#" PRIx64 " outside [%#" PRIx64 ", %#" PRIx64 ")",
				 len, result, floor, mm->mmap_top);
			ok = false;
		}
		if (mm->count != before + 1) {
			snprintf(reason, sizeof reason, "count %zu after a map on %zu", mm->count, before);
			ok = false;
		}
		if (ok && !map_is_consistent(mm, false, reason, sizeof reason))
			ok = false;
	}
	unit_check(ok, "mm_free_range_inside_bounds", "%s", reason);
	/* Single pages then fill every hole left between floor and mmap_top. */
	int singles = 0;
	while (ok && singles < 100000 && vmm_mm_map(mm, 0, PAGE, 0, 3, 0, &result) == 0) {
		singles++;
		if (result < floor || result + PAGE > mm->mmap_top) {
			snprintf(reason, sizeof reason, "page placed at %#" PRIx64, result);
			ok = false;
		}
	}
	unit_check(ok && vmm_mm_is_mapped(mm, floor, mm->mmap_top - floor), "mm_free_range_finds_every_hole",
		   "%s", ok ? "free pages left between the heap and mmap_top" : reason);
	/* Space below the heap or in the guard gap is not used without a hint. */
	bool untouched = !vmm_mm_is_mapped(mm, mm->low, PAGE) && !vmm_mm_find(mm, mm->mmap_top);
	unit_check(untouched, "mm_free_range_not_below_heap_or_guard", "a page below the heap or in the guard gap was handed out");
	fixture_close(&f);
}

/* ---- random operations against a page-bitmap model ---------------------- */

struct rng {
	uint64_t state;
};

static uint64_t rng_next(struct rng *rng)
{
	uint64_t x = rng->state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng->state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static uint64_t rng_below(struct rng *rng, uint64_t bound)
{
	return bound ? rng_next(rng) % bound : 0;
}

struct model {
	uint64_t low, high, limit;
	size_t pages;
	uint8_t *mapped; /* one byte per page of program memory */
	uint8_t *scratch;
	uint64_t mapped_bytes, extra, brk_start, brk_current, mmap_top;
};

static uint64_t model_in_use(const struct model *m)
{
	return m->mapped_bytes + m->extra + (m->brk_current - m->brk_start);
}

static size_t model_page(const struct model *m, uint64_t addr)
{
	return (size_t)((addr - m->low) / PAGE);
}

static uint64_t model_mapped_within(const struct model *m, uint64_t start, uint64_t end)
{
	uint64_t total = 0;
	for (uint64_t a = start; a < end; a += PAGE)
		total += m->mapped[model_page(m, a)] ? PAGE : 0;
	return total;
}

static void model_set(struct model *m, uint64_t start, uint64_t end, uint8_t value)
{
	for (uint64_t a = start; a < end; a += PAGE) {
		size_t p = model_page(m, a);
		if (m->mapped[p] != value)
			m->mapped_bytes += value ? PAGE : -PAGE;
		m->mapped[p] = value;
	}
}

static int model_map(struct model *m, uint64_t addr, uint64_t len, int fixed, uint64_t *result)
{
	if (len == 0 || (len & (PAGE - 1)) || (addr & (PAGE - 1)))
		return -EINVAL;
	if (fixed) {
		if (addr < m->low || addr > m->high || len > m->high - addr)
			return -ENOMEM;
		if (model_in_use(m) - model_mapped_within(m, addr, addr + len) + len > m->limit)
			return -ENOMEM;
	} else {
		if (model_in_use(m) + len > m->limit)
			return -ENOMEM;
		bool hint_free = addr && addr >= m->low && addr <= m->high && len <= m->high - addr &&
				 !(addr + len > m->brk_start && addr < m->brk_current) &&
				 model_mapped_within(m, addr, addr + len) == 0;
		if (!hint_free) {
			uint64_t floor = round_up_page(m->brk_current);
			if (floor < m->low)
				floor = m->low;
			addr = 0;
			uint64_t run_end = m->mmap_top, a = m->mmap_top;
			while (a > floor) {
				a -= PAGE;
				if (m->mapped[model_page(m, a)]) {
					run_end = a;
					continue;
				}
				if (run_end - a >= len) {
					addr = run_end - len;
					break;
				}
			}
			if (!addr)
				return -ENOMEM;
		}
	}
	model_set(m, addr, addr + len, 1);
	*result = addr;
	return 0;
}

static int model_unmap(struct model *m, uint64_t addr, uint64_t len)
{
	if ((addr & (PAGE - 1)) || len == 0)
		return -EINVAL;
	len = round_up_page(len);
	if (len == 0 || addr < m->low || addr > m->high || len > m->high - addr)
		return -EINVAL;
	if (addr < m->brk_current && addr + len > m->brk_start)
		return -EINVAL;
	model_set(m, addr, addr + len, 0);
	return 0;
}

static uint64_t model_brk(struct model *m, uint64_t new_break)
{
	uint64_t old_end = round_up_page(m->brk_current);
	if (new_break < m->brk_start || new_break > m->high)
		return m->brk_current;
	uint64_t new_end = round_up_page(new_break);
	if (new_end > old_end) {
		if (new_end > m->mmap_top || model_mapped_within(m, old_end, new_end) != 0 ||
		    model_in_use(m) + (new_end - old_end) > m->limit)
			return m->brk_current;
	}
	m->brk_current = new_break;
	return new_break;
}

static int model_charge(struct model *m, int64_t bytes)
{
	if (bytes > 0) {
		if (model_in_use(m) + (uint64_t)bytes > m->limit)
			return -ENOSPC;
		m->extra += (uint64_t)bytes;
	} else {
		uint64_t refund = (uint64_t)(-bytes);
		m->extra -= refund < m->extra ? refund : m->extra;
	}
	return 0;
}

/* Compares the region array with the model's bitmap. */
static bool model_matches(struct model *m, const struct vmm_memory_map *mm, bool check_bytes, char *reason,
			  size_t reason_size)
{
	if (!map_is_consistent(mm, check_bytes, reason, reason_size))
		return false;
	memset(m->scratch, 0, m->pages);
	for (size_t i = 0; i < mm->count; i++)
		for (uint64_t a = mm->regions[i].start; a < mm->regions[i].end; a += PAGE)
			m->scratch[model_page(m, a)] = 1;
	if (memcmp(m->scratch, m->mapped, m->pages) != 0) {
		size_t p = 0;
		while (m->scratch[p] == m->mapped[p])
			p++;
		snprintf(reason, reason_size, "page %#" PRIx64 ": map says %d, model says %d",
			 m->low + p * PAGE, m->scratch[p], m->mapped[p]);
		return false;
	}
	if (check_bytes && (mm->mapped_bytes != m->mapped_bytes || mm->extra_bytes != m->extra)) {
		snprintf(reason, reason_size, "mapped_bytes %#" PRIx64 " (model %#" PRIx64 "), extra %#" PRIx64 " (model %#" PRIx64 ")",
			 mm->mapped_bytes, m->mapped_bytes, mm->extra_bytes, m->extra);
		return false;
	}
	if (mm->brk_current != m->brk_current) {
		snprintf(reason, reason_size, "break %#" PRIx64 ", model %#" PRIx64, mm->brk_current, m->brk_current);
		return false;
	}
	uint64_t used = regions_total(mm) + mm->extra_bytes + round_up_page(mm->brk_current) - mm->brk_start;
	if (check_bytes && used > mm->limit_bytes) {
		snprintf(reason, reason_size, "in use %#" PRIx64 " > limit %#" PRIx64, used, mm->limit_bytes);
		return false;
	}
	return true;
}

/* A random address around program memory: mostly inside, sometimes just
 * outside it, rarely unaligned. */
static uint64_t random_address(struct rng *rng, const struct model *m)
{
	uint64_t span = m->high - m->low + 16 * PAGE;
	uint64_t addr = m->low - 8 * PAGE + rng_below(rng, span / PAGE) * PAGE;
	if (rng_below(rng, 200) == 0)
		addr += 1 + rng_below(rng, PAGE - 1);
	return addr;
}

/* Runs `steps` random operations.  With `cap_binding` false the limit is
 * lifted so placement and region shape are checked on their own. */
static void random_run(const char *name, uint64_t seed, int steps, bool cap_binding)
{
	struct fixture f;
	if (fixture_open(&f, 32 * MIB) < 0)
		return;
	struct vmm_memory_map *mm = &f.mm;
	struct rng rng = {seed};
	uint64_t ignored;
	vmm_mm_map(mm, mm->low, MIB, 1, 5, 0, &ignored); /* the program image */
	vmm_mm_setup_process(mm, 256 * 1024, mm->low + MIB);
	if (!cap_binding)
		mm->limit_bytes = UINT64_MAX;

	struct model m = {.low = mm->low, .high = mm->high, .limit = mm->limit_bytes};
	m.pages = (size_t)((m.high - m.low) / PAGE);
	m.mapped = calloc(m.pages, 1);
	m.scratch = calloc(m.pages, 1);
	if (!m.mapped || !m.scratch) {
		unit_check(0, name, "out of memory");
		goto out;
	}
	model_set(&m, m.low, m.low + MIB, 1);
	model_set(&m, mm->stack_low, mm->stack_top, 1);
	m.brk_start = m.brk_current = mm->brk_start;
	m.mmap_top = mm->mmap_top;

	char reason[512] = "", op[160] = "";
	bool ok = model_matches(&m, mm, cap_binding, reason, sizeof reason);
	int step = 0;
	for (; ok && step < steps; step++) {
		uint64_t choice = rng_below(&rng, 100);
		if (choice < 28) {
			uint64_t addr = random_address(&rng, &m), len = (1 + rng_below(&rng, 64)) * PAGE;
			uint64_t got = 0, want = 0;
			int rc = vmm_mm_map(mm, addr, len, 1, 3, 0, &got);
			int expected = model_map(&m, addr, len, 1, &want);
			snprintf(op, sizeof op, "map fixed %#" PRIx64 "+%#" PRIx64, addr, len);
			if (rc != expected || (rc == 0 && got != want)) {
				snprintf(reason, sizeof reason, "rc %d result %#" PRIx64 ", model %d %#" PRIx64, rc, got, expected, want);
				ok = false;
			}
		} else if (choice < 52) {
			uint64_t len = (1 + rng_below(&rng, rng_below(&rng, 4) ? 16 : 512)) * PAGE;
			uint64_t hint = rng_below(&rng, 3) ? 0 : random_address(&rng, &m);
			uint64_t got = 0, want = 0;
			int rc = vmm_mm_map(mm, hint, len, 0, 3, 0, &got);
			int expected = model_map(&m, hint, len, 0, &want);
			snprintf(op, sizeof op, "map hint %#" PRIx64 " len %#" PRIx64, hint, len);
			if (rc != expected || (rc == 0 && got != want)) {
				snprintf(reason, sizeof reason, "rc %d result %#" PRIx64 ", model %d %#" PRIx64, rc, got, expected, want);
				ok = false;
			}
		} else if (choice < 84) {
			uint64_t addr = random_address(&rng, &m);
			uint64_t len = rng_below(&rng, 64 * PAGE + 1);
			if (rng_below(&rng, 10) == 0)
				len = (1 + rng_below(&rng, 1024)) * PAGE;
			int rc = vmm_mm_unmap(mm, addr, len);
			int expected = model_unmap(&m, addr, len);
			snprintf(op, sizeof op, "unmap %#" PRIx64 "+%#" PRIx64, addr, len);
			if (rc != expected) {
				snprintf(reason, sizeof reason, "rc %d, model %d", rc, expected);
				ok = false;
			}
		} else if (choice < 90) {
			uint64_t target = m.brk_start - 2 * PAGE + rng_below(&rng, 2 * MIB);
			uint64_t got = vmm_mm_brk(mm, target), want = model_brk(&m, target);
			snprintf(op, sizeof op, "brk %#" PRIx64, target);
			if (got != want) {
				snprintf(reason, sizeof reason, "brk returned %#" PRIx64 ", model %#" PRIx64, got, want);
				ok = false;
			}
		} else if (choice < 95) {
			uint64_t addr = random_address(&rng, &m) & ~(PAGE - 1);
			uint64_t len = (1 + rng_below(&rng, 8)) * PAGE;
			uint32_t prot = (uint32_t)rng_below(&rng, 8);
			int rc = vmm_mm_protect(mm, addr, len, prot);
			bool in_heap = addr >= m.brk_start && addr + len <= m.brk_current;
			bool all_mapped = addr >= m.low && addr + len <= m.high &&
					  model_mapped_within(&m, addr, addr + len) == len;
			int expected = in_heap || all_mapped ? 0 : -ENOMEM;
			snprintf(op, sizeof op, "protect %#" PRIx64 "+%#" PRIx64, addr, len);
			if (rc != expected) {
				snprintf(reason, sizeof reason, "rc %d, model %d", rc, expected);
				ok = false;
			} else if (rc == 0 && !in_heap) {
				for (uint64_t a = addr; a < addr + len; a += PAGE) {
					struct vmm_region *r = vmm_mm_find(mm, a);
					if (!r || r->prot != prot) {
						snprintf(reason, sizeof reason, "page %#" PRIx64 " prot not set", a);
						ok = false;
						break;
					}
				}
			}
		} else {
			int64_t bytes = (int64_t)((1 + rng_below(&rng, 256)) * PAGE);
			if (rng_below(&rng, 2))
				bytes = -bytes;
			int rc = vmm_mm_charge(mm, bytes), expected = model_charge(&m, bytes);
			snprintf(op, sizeof op, "charge %" PRId64, bytes);
			if (rc != expected) {
				snprintf(reason, sizeof reason, "rc %d, model %d", rc, expected);
				ok = false;
			}
		}
		if (ok)
			ok = model_matches(&m, mm, cap_binding, reason, sizeof reason);
	}
	if (ok)
		unit_check(1, name, "%s", "");
	else
		unit_check(0, name, "seed %#" PRIx64 " step %d (%s): %s", seed, step - 1, op, reason);
out:
	free(m.mapped);
	free(m.scratch);
	fixture_close(&f);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_init_and_setup();
	test_misaligned_and_empty();
	test_huge_values();
	test_fixed_overlaps();
	test_zeroing();
	test_brk();
	test_protect();
	test_cap();
	test_free_range_bounds();
	random_run("mm_random_model_placement", 0x5eed0001ULL, 100000, false);
	random_run("mm_random_model_with_cap", 0x5eed0002ULL, 100000, true);
	return unit_exit_status();
}
