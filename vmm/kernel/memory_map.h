/* The guest's address space: which ranges of guest memory the program has
 * mapped (mmap, brk, its stack), where new mappings go, and how much of the
 * VM's memory cap is in use.
 *
 * Guest memory is identity-mapped and always present to the CPU, so this
 * map is bookkeeping, not page tables: it decides what mmap returns and
 * enforces the cap (mapped bytes plus /tmp bytes never exceed program
 * memory).  Every range it hands out lies in program memory.  Unmapped
 * memory is always zero: unmapping discards the host pages. */
#ifndef VMM_MEMORY_MAP_H
#define VMM_MEMORY_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vmm_vm;

/* Linux's default vm.max_map_count: mmap fails with ENOMEM past it. */
#define VMM_MM_MAX_REGIONS 65530

struct vmm_region {
	uint64_t start, end; /* page aligned, start < end */
	uint32_t prot;
	uint32_t flags;
};

struct vmm_memory_map {
	struct vmm_vm *vm;
	struct vmm_region *regions; /* sorted, non-overlapping */
	size_t count, capacity;
	uint64_t low, high;    /* program memory bounds */
	uint64_t mapped_bytes; /* sum of regions */
	uint64_t extra_bytes;  /* other charges against the cap (/tmp) */
	uint64_t limit_bytes;  /* the cap */
	uint64_t brk_start, brk_current;
	uint64_t stack_low, stack_top;
	uint64_t mmap_top; /* new mappings are placed below this */
};

void vmm_mm_init(struct vmm_memory_map *mm, struct vmm_vm *vm);
void vmm_mm_destroy(struct vmm_memory_map *mm);

/* Maps [addr, addr+len) (len page aligned).  With `fixed` the range is
 * replaced wherever it lies (must be inside program memory); otherwise a
 * free range is chosen, near `addr` if it is free.  Returns 0 and sets
 * *result, or -ENOMEM / -EINVAL.  The memory reads as zero. */
int vmm_mm_map(struct vmm_memory_map *mm, uint64_t addr, uint64_t len, int fixed, uint32_t prot,
	       uint32_t flags, uint64_t *result);

/* Unmaps [addr, addr+len); parts not mapped are ignored.  -EINVAL for a
 * range outside program memory or misaligned. */
int vmm_mm_unmap(struct vmm_memory_map *mm, uint64_t addr, uint64_t len);

/* True if every byte of [addr, addr+len) is mapped. */
int vmm_mm_is_mapped(struct vmm_memory_map *mm, uint64_t addr, uint64_t len);

/* True if every page of [addr, addr+len) is mapped or in the heap: what
 * Linux would let a system call read or write without EFAULT.  len 0
 * checks the page holding addr. */
bool vmm_mm_covers(struct vmm_memory_map *mm, uint64_t addr, uint64_t len);

/* Sets the protection of a mapped range (bookkeeping only); -ENOMEM if
 * some of it is not mapped. */
int vmm_mm_protect(struct vmm_memory_map *mm, uint64_t addr, uint64_t len, uint32_t prot);

/* Discards the host pages behind [addr, addr+len), so it reads as zero. */
void vmm_mm_zero(struct vmm_memory_map *mm, uint64_t addr, uint64_t len);

/* Sets up the stack (top of memory) and places brk after `program_end`. */
int vmm_mm_setup_process(struct vmm_memory_map *mm, uint64_t stack_size, uint64_t program_end);

/* brk(2): returns the new break, or the old one if it cannot move. */
uint64_t vmm_mm_brk(struct vmm_memory_map *mm, uint64_t new_break);

/* Charges or refunds bytes against the cap (for /tmp); -ENOSPC if full. */
int vmm_mm_charge(struct vmm_memory_map *mm, int64_t bytes);

/* Finds the region containing addr, or NULL. */
struct vmm_region *vmm_mm_find(struct vmm_memory_map *mm, uint64_t addr);

#endif
