/* The guest address-space bookkeeping of memory_map.h: a sorted array of
 * regions, first-fit placement from the top of memory downwards, and the
 * memory cap. */
#include "memory_map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "guest_layout.h"
#include "vm.h"

#define PAGE_MASK (GUEST_PAGE_SIZE - 1)

void vmm_mm_init(struct vmm_memory_map *mm, struct vmm_vm *vm)
{
	memset(mm, 0, sizeof *mm);
	mm->vm = vm;
	mm->low = GUEST_SYSTEM_END;
	mm->high = vm->mem_size;
	mm->limit_bytes = vm->mem_size - GUEST_SYSTEM_END;
	mm->mmap_top = mm->high;
}

void vmm_mm_destroy(struct vmm_memory_map *mm)
{
	free(mm->regions);
	mm->regions = NULL;
	mm->count = mm->capacity = 0;
}

void vmm_mm_zero(struct vmm_memory_map *mm, uint64_t addr, uint64_t len)
{
	vmm_mem_discard(mm->vm, addr, len);
}

/* Index of the first region whose end is above addr. */
static size_t first_ending_after(struct vmm_memory_map *mm, uint64_t addr)
{
	size_t lo = 0, hi = mm->count;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (mm->regions[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct vmm_region *vmm_mm_find(struct vmm_memory_map *mm, uint64_t addr)
{
	size_t i = first_ending_after(mm, addr);
	if (i < mm->count && mm->regions[i].start <= addr)
		return &mm->regions[i];
	return NULL;
}

static int insert_region(struct vmm_memory_map *mm, size_t index, struct vmm_region region)
{
	if (mm->count == mm->capacity) {
		size_t capacity = mm->capacity ? mm->capacity * 2 : 64;
		struct vmm_region *grown = realloc(mm->regions, capacity * sizeof *grown);
		if (!grown)
			return -ENOMEM;
		mm->regions = grown;
		mm->capacity = capacity;
	}
	memmove(&mm->regions[index + 1], &mm->regions[index], (mm->count - index) * sizeof *mm->regions);
	mm->regions[index] = region;
	mm->count++;
	mm->mapped_bytes += region.end - region.start;
	return 0;
}

/* Removes [start, end) from the bookkeeping, splitting regions as needed.
 * Needs at most one free slot (a split of one region into two). */
static int remove_range(struct vmm_memory_map *mm, uint64_t start, uint64_t end)
{
	size_t i = first_ending_after(mm, start);
	while (i < mm->count && mm->regions[i].start < end) {
		struct vmm_region *r = &mm->regions[i];
		if (r->start < start && r->end > end) {
			/* Split: the tail becomes its own region (insert_region counts
			 * its bytes), then the head shrinks to end at `start`. */
			struct vmm_region tail = *r;
			uint64_t old_end = r->end;
			tail.start = end;
			int rc = insert_region(mm, i + 1, tail); /* may move the array */
			if (rc < 0)
				return rc;
			mm->regions[i].end = start;
			mm->mapped_bytes -= old_end - start;
			return 0;
		}
		if (r->start < start) {
			mm->mapped_bytes -= r->end - start;
			r->end = start;
			i++;
		} else if (r->end > end) {
			mm->mapped_bytes -= end - r->start;
			r->start = end;
			i++;
		} else {
			mm->mapped_bytes -= r->end - r->start;
			memmove(r, r + 1, (mm->count - i - 1) * sizeof *r);
			mm->count--;
		}
	}
	return 0;
}

static uint64_t mapped_within(struct vmm_memory_map *mm, uint64_t start, uint64_t end)
{
	uint64_t total = 0;
	for (size_t i = first_ending_after(mm, start); i < mm->count && mm->regions[i].start < end; i++) {
		uint64_t s = mm->regions[i].start > start ? mm->regions[i].start : start;
		uint64_t e = mm->regions[i].end < end ? mm->regions[i].end : end;
		total += e - s;
	}
	return total;
}

static int range_is_free(struct vmm_memory_map *mm, uint64_t start, uint64_t end)
{
	if (start < mm->low || end > mm->high || start >= end)
		return 0;
	if (end > mm->brk_start && start < mm->brk_current)
		return 0;
	return mapped_within(mm, start, end) == 0;
}

/* Highest free gap of `len` bytes below mmap_top and above the break, or 0. */
static uint64_t find_free_range(struct vmm_memory_map *mm, uint64_t len)
{
	uint64_t floor = (mm->brk_current + PAGE_MASK) & ~PAGE_MASK;
	if (floor < mm->low)
		floor = mm->low;
	uint64_t top = mm->mmap_top;
	size_t i = mm->count;
	while (i > 0 && mm->regions[i - 1].start >= top)
		i--;
	for (;;) {
		uint64_t gap_low = floor;
		if (i > 0 && mm->regions[i - 1].end > floor)
			gap_low = mm->regions[i - 1].end;
		if (top > gap_low && top - gap_low >= len)
			return top - len;
		if (i == 0)
			return 0;
		if (mm->regions[i - 1].start < top)
			top = mm->regions[i - 1].start;
		i--;
		if (top <= floor)
			return 0;
	}
}

static uint64_t bytes_in_use(struct vmm_memory_map *mm)
{
	return mm->mapped_bytes + mm->extra_bytes + (mm->brk_current - mm->brk_start);
}

int vmm_mm_map(struct vmm_memory_map *mm, uint64_t addr, uint64_t len, int fixed, uint32_t prot,
	       uint32_t flags, uint64_t *result)
{
	if (len == 0 || (len & PAGE_MASK) || (addr & PAGE_MASK))
		return -EINVAL;
	if (fixed) {
		if (addr < mm->low || addr > mm->high || len > mm->high - addr)
			return -ENOMEM;
		uint64_t replaced = mapped_within(mm, addr, addr + len);
		if (bytes_in_use(mm) - replaced + len > mm->limit_bytes)
			return -ENOMEM;
		int rc = remove_range(mm, addr, addr + len);
		if (rc < 0)
			return rc;
	} else {
		if (bytes_in_use(mm) + len > mm->limit_bytes)
			return -ENOMEM;
		if (!(addr && addr <= mm->high && len <= mm->high - addr &&
		      range_is_free(mm, addr, addr + len)))
			addr = find_free_range(mm, len);
		if (!addr)
			return -ENOMEM;
	}
	if (mm->count >= VMM_MM_MAX_REGIONS)
		return -ENOMEM;
	struct vmm_region region = {.start = addr, .end = addr + len, .prot = prot, .flags = flags};
	int rc = insert_region(mm, first_ending_after(mm, addr), region);
	if (rc < 0)
		return rc;
	/* The guest can write any program memory, mapped or not: a new
	 * mapping must not show what it left there. */
	vmm_mm_zero(mm, addr, len);
	*result = addr;
	return 0;
}

int vmm_mm_unmap(struct vmm_memory_map *mm, uint64_t addr, uint64_t len)
{
	if ((addr & PAGE_MASK) || len == 0)
		return -EINVAL;
	len = (len + PAGE_MASK) & ~PAGE_MASK;
	if (len == 0 || addr < mm->low || addr > mm->high || len > mm->high - addr)
		return -EINVAL;
	if (addr < mm->brk_current && addr + len > mm->brk_start)
		return -EINVAL;
	int rc = remove_range(mm, addr, addr + len);
	if (rc < 0)
		return rc;
	vmm_mm_zero(mm, addr, len);
	return 0;
}

int vmm_mm_is_mapped(struct vmm_memory_map *mm, uint64_t addr, uint64_t len)
{
	if (addr < mm->low || addr > mm->high || len > mm->high - addr)
		return 0;
	return mapped_within(mm, addr, addr + len) == len;
}

bool vmm_mm_covers(struct vmm_memory_map *mm, uint64_t addr, uint64_t len)
{
	if (addr < mm->low || addr > mm->high || len > mm->high - addr)
		return false;
	uint64_t first = addr & ~PAGE_MASK;
	uint64_t end = (addr + len + PAGE_MASK) & ~PAGE_MASK;
	if (len == 0)
		end = first + GUEST_PAGE_SIZE;
	/* Every page must be mapped or part of the (page-granular) heap. */
	uint64_t heap_low = mm->brk_start > first ? mm->brk_start : first;
	uint64_t heap_end = (mm->brk_current + PAGE_MASK) & ~PAGE_MASK;
	uint64_t heap_high = heap_end < end ? heap_end : end;
	uint64_t in_heap = heap_high > heap_low ? heap_high - heap_low : 0;
	uint64_t mapped_in_heap = in_heap ? mapped_within(mm, heap_low, heap_high) : 0;
	return mapped_within(mm, first, end) + in_heap - mapped_in_heap == end - first;
}

int vmm_mm_protect(struct vmm_memory_map *mm, uint64_t addr, uint64_t len, uint32_t prot)
{
	if (addr & PAGE_MASK)
		return -EINVAL;
	if (len > mm->high || addr > mm->high - ((len + PAGE_MASK) & ~PAGE_MASK))
		return -ENOMEM;
	len = (len + PAGE_MASK) & ~PAGE_MASK;
	uint64_t end = addr + len;
	if (!vmm_mm_covers(mm, addr, len))
		return -ENOMEM;
	/* Record the new rights on the mapped parts, splitting regions at the
	 * range's edges.  (Rights are bookkeeping: not enforced by the guest's
	 * page tables.) */
	size_t i = first_ending_after(mm, addr);
	while (i < mm->count && mm->regions[i].start < end) {
		struct vmm_region piece = mm->regions[i];
		if (piece.prot == prot) {
			i++;
			continue;
		}
		if (piece.start < addr)
			piece.start = addr;
		if (piece.end > end)
			piece.end = end;
		piece.prot = prot;
		int rc = remove_range(mm, piece.start, piece.end);
		if (rc == 0)
			rc = insert_region(mm, first_ending_after(mm, piece.start), piece);
		if (rc < 0)
			return rc;
		i = first_ending_after(mm, piece.end);
	}
	return 0;
}

int vmm_mm_setup_process(struct vmm_memory_map *mm, uint64_t stack_size, uint64_t program_end)
{
	uint64_t top = mm->high;
	uint64_t stack_low = top - stack_size;
	if (stack_size >= mm->limit_bytes / 2)
		return -ENOMEM;
	uint64_t ignored;
	int rc = vmm_mm_map(mm, stack_low, stack_size, 1, 3, 0, &ignored);
	if (rc < 0)
		return rc;
	mm->stack_low = stack_low;
	mm->stack_top = top;
	mm->mmap_top = stack_low - GUEST_PAGE_SIZE; /* a guard gap below the stack */
	mm->brk_start = mm->brk_current = (program_end + PAGE_MASK) & ~PAGE_MASK;
	return 0;
}

uint64_t vmm_mm_brk(struct vmm_memory_map *mm, uint64_t new_break)
{
	uint64_t old_end = (mm->brk_current + PAGE_MASK) & ~PAGE_MASK;
	if (new_break < mm->brk_start || new_break > mm->high)
		return mm->brk_current;
	uint64_t new_end = (new_break + PAGE_MASK) & ~PAGE_MASK;
	if (new_end > old_end) {
		uint64_t grow = new_end - old_end;
		if (mapped_within(mm, old_end, new_end) != 0 || new_end > mm->mmap_top ||
		    bytes_in_use(mm) + grow > mm->limit_bytes)
			return mm->brk_current;
		vmm_mm_zero(mm, old_end, grow); /* whatever the guest left there */
	} else if (new_end < old_end) {
		vmm_mm_zero(mm, new_end, old_end - new_end);
	}
	mm->brk_current = new_break;
	return new_break;
}

int vmm_mm_charge(struct vmm_memory_map *mm, int64_t bytes)
{
	if (bytes > 0) {
		if (bytes_in_use(mm) + (uint64_t)bytes > mm->limit_bytes)
			return -ENOSPC;
		mm->extra_bytes += (uint64_t)bytes;
	} else {
		uint64_t refund = (uint64_t)(-bytes);
		mm->extra_bytes -= refund < mm->extra_bytes ? refund : mm->extra_bytes;
	}
	return 0;
}
