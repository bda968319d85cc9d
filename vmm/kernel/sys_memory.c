/* System calls on the guest's address space: mmap and friends, brk.
 * memory_map.h does the bookkeeping and enforces the cap; this file checks
 * the guest's arguments and fills file mappings (by copying the file's
 * bytes: mappings are private snapshots of the file). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest_layout.h"
#include "memfs.h"
#include "syscalls.h"

#define PAGE_MASK (GUEST_PAGE_SIZE - 1)

/* Where a file mapping's bytes come from. */
struct file_at {
	struct vmm_file *file;
	uint64_t offset;
};

static int64_t move_from_file(struct vmm_process *process, void *context, void *dst, size_t len, uint64_t done)
{
	(void)process;
	const struct file_at *at = context;
	uint64_t offset = at->offset + done;
	if (at->file->kind == VMM_FILE_MEMFS) {
		vmm_memfs_read(at->file->node, offset, dst, len);
		return (int64_t)len;
	}
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(at->file->host_fd, (uint8_t *)dst + got, len - got, (off_t)(offset + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break; /* past the end of the file */
		got += (size_t)n;
	}
	memset((uint8_t *)dst + got, 0, len - got); /* a bounce buffer holds old bytes */
	return (int64_t)len;
}

static int64_t fill_from_file(struct vmm_process *process, struct vmm_file *file, uint64_t addr, uint64_t len,
			      uint64_t offset)
{
	struct file_at at = {file, offset};
	struct guest_io io = {.move = move_from_file, .context = &at, .to_guest = true, .piecewise = true};
	int64_t n = guest_io(process, &io, addr, len);
	return n < 0 ? n : 0;
}

SYSCALL(mmap)
{
	uint64_t addr = args[0], len = args[1], prot = args[2], flags = args[3], offset = args[5];
	int64_t fd = (int64_t)(int32_t)args[4];
	if (len == 0 || (offset & PAGE_MASK) ||
	    (addr & PAGE_MASK && (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))))
		return -EINVAL;
	if (len > GUEST_MEM_MAX)
		return -ENOMEM;
	len = (len + PAGE_MASK) & ~PAGE_MASK;
	uint64_t type = flags & MAP_TYPE;
	if (type != MAP_PRIVATE && type != MAP_SHARED && type != MAP_SHARED_VALIDATE)
		return -EINVAL;
	struct vmm_file *file = NULL;
	if (!(flags & MAP_ANONYMOUS)) {
		file = vmm_fd_get(&process->fds, (uint64_t)fd);
		if (!file)
			return -EBADF;
		if (file->kind == VMM_FILE_ZERO)
			file = NULL; /* a private map of /dev/zero is anonymous memory */
		else if (file->kind != VMM_FILE_HOST && file->kind != VMM_FILE_MEMFS)
			return -ENODEV;
		else if ((file->flags & O_ACCMODE) == O_WRONLY)
			return -EACCES;
		else if (type != MAP_PRIVATE && (prot & PROT_WRITE) && (file->flags & O_ACCMODE) != O_RDWR)
			return -EACCES; /* a shared writable map needs a file open for writing */
		if (file && offset > INT64_MAX - len)
			return -EOVERFLOW;
	}
	bool fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE);
	if ((flags & MAP_FIXED_NOREPLACE) && !(flags & MAP_FIXED)) {
		if (addr < process->mm.low || addr > process->mm.high || len > process->mm.high - addr)
			return -ENOMEM;
		for (uint64_t a = addr; a < addr + len; a += GUEST_PAGE_SIZE)
			if (vmm_mm_find(&process->mm, a))
				return -EEXIST;
	}
	if (!fixed)
		addr &= ~PAGE_MASK;
	uint64_t result;
	int rc = vmm_mm_map(&process->mm, addr, len, fixed, (uint32_t)prot, (uint32_t)flags, &result);
	if (rc < 0)
		return rc;
	if (file) {
		int64_t fill = fill_from_file(process, file, result, len, offset);
		if (fill < 0) {
			vmm_mm_unmap(&process->mm, result, len);
			return fill;
		}
	}
	return (int64_t)result;
}

SYSCALL(munmap)
{
	return vmm_mm_unmap(&process->mm, args[0], args[1]);
}

SYSCALL(mprotect)
{
	if (args[2] & ~(uint64_t)(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_GROWSDOWN | PROT_GROWSUP))
		return -EINVAL;
	return vmm_mm_protect(&process->mm, args[0], args[1], (uint32_t)args[2]);
}

SYSCALL(brk)
{
	return (int64_t)vmm_mm_brk(&process->mm, args[0]);
}

SYSCALL(mremap)
{
	uint64_t old_addr = args[0], old_size = args[1], new_size = args[2], flags = args[3];
	uint64_t new_addr = args[4];
	if ((old_addr & PAGE_MASK) || (flags & ~(uint64_t)(MREMAP_MAYMOVE | MREMAP_FIXED)))
		return -EINVAL;
	if ((flags & MREMAP_FIXED) && (!(flags & MREMAP_MAYMOVE) || (new_addr & PAGE_MASK)))
		return -EINVAL;
	if (new_size == 0 || old_size > GUEST_MEM_MAX || new_size > GUEST_MEM_MAX)
		return new_size == 0 ? -EINVAL : -ENOMEM;
	old_size = (old_size + PAGE_MASK) & ~PAGE_MASK;
	new_size = (new_size + PAGE_MASK) & ~PAGE_MASK;
	if (old_size == 0 || !vmm_mm_is_mapped(&process->mm, old_addr, old_size))
		return -EFAULT;
	struct vmm_region *region = vmm_mm_find(&process->mm, old_addr);
	uint32_t prot = region->prot, region_flags = region->flags;
	if (!(flags & MREMAP_FIXED)) {
		if (new_size <= old_size) {
			if (new_size < old_size)
				vmm_mm_unmap(&process->mm, old_addr + new_size, old_size - new_size);
			return (int64_t)old_addr;
		}
		/* Grow in place when the pages after the mapping are free. */
		uint64_t tail = old_addr + old_size, placed;
		if (vmm_mm_map(&process->mm, tail, new_size - old_size, 0, prot, region_flags, &placed) ==
		    0) {
			if (placed == tail)
				return (int64_t)old_addr;
			vmm_mm_unmap(&process->mm, placed, new_size - old_size);
		}
		if (!(flags & MREMAP_MAYMOVE))
			return -ENOMEM;
	} else if (new_addr < old_addr + old_size && old_addr < new_addr + new_size) {
		return -EINVAL;
	}
	uint64_t moved;
	int rc = vmm_mm_map(&process->mm, new_addr, new_size, (flags & MREMAP_FIXED) != 0, prot, region_flags,
			    &moved);
	if (rc < 0)
		return rc;
	uint64_t keep = old_size < new_size ? old_size : new_size;
	rc = guest_copy_within(process, moved, old_addr, keep);
	if (rc < 0) {
		vmm_mm_unmap(&process->mm, moved, new_size);
		return rc;
	}
	vmm_mm_unmap(&process->mm, old_addr, old_size);
	return (int64_t)moved;
}

SYSCALL(madvise)
{
	uint64_t addr = args[0], len = args[1];
	int advice = (int)args[2];
	if ((addr & PAGE_MASK) || len > UINT64_MAX - PAGE_MASK)
		return -EINVAL;
	switch (advice) {
	case MADV_NORMAL:
	case MADV_RANDOM:
	case MADV_SEQUENTIAL:
	case MADV_WILLNEED:
	case MADV_DONTNEED:
	case MADV_FREE:
	case MADV_REMOVE:
	case MADV_DONTFORK:
	case MADV_DOFORK:
	case MADV_MERGEABLE:
	case MADV_UNMERGEABLE:
	case MADV_HUGEPAGE:
	case MADV_NOHUGEPAGE:
	case MADV_DONTDUMP:
	case MADV_DODUMP:
	case MADV_WIPEONFORK:
	case MADV_KEEPONFORK:
	case MADV_COLD:
	case MADV_PAGEOUT: break;
	default: return -EINVAL;
	}
	len = (len + PAGE_MASK) & ~PAGE_MASK;
	if (len && guest_check(process, addr, len) < 0)
		return -ENOMEM;
	if (advice == MADV_DONTNEED || advice == MADV_FREE)
		vmm_mm_zero(&process->mm, addr, len);
	return 0;
}

SYSCALL(msync)
{
	if (args[0] & PAGE_MASK)
		return -EINVAL;
	return vmm_mm_is_mapped(&process->mm, args[0], (args[1] + PAGE_MASK) & ~PAGE_MASK) ? 0 : -ENOMEM;
}

SYSCALL(mincore)
{
	uint64_t addr = args[0], len = (args[1] + PAGE_MASK) & ~PAGE_MASK;
	if (addr & PAGE_MASK)
		return -EINVAL;
	if (!vmm_mm_is_mapped(&process->mm, addr, len))
		return -ENOMEM;
	return guest_fill(process, args[2], 1, len / GUEST_PAGE_SIZE);
}
