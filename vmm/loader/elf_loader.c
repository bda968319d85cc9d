/* The ELF loader and initial stack of elf_loader.h.
 *
 * A program is loaded by reserving its whole span with one fixed mapping
 * (which zeroes it, giving bss for free) and copying each PT_LOAD's file
 * bytes to its address.  Protections are not enforced by the guest's page
 * tables (program memory is uniformly read/write/execute); the mappings are
 * recorded with their real rights. */
#include "elf_loader.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cpuid.h>

#include "fdtable.h"
#include "guest_layout.h"
#include "process.h"

#define ELF_MAX_PHNUM      64
#define ELF_INTERP_MAX     4096
#define PIE_PREFERRED_BASE 0x400000ULL
#define PAGE_MASK          (GUEST_PAGE_SIZE - 1)

struct loaded_elf {
	Elf64_Ehdr header;
	Elf64_Phdr phdrs[ELF_MAX_PHNUM];
	uint64_t bias;
	uint64_t span_start, span_end; /* page-rounded, before bias */
	char interp[ELF_INTERP_MAX];
	int has_interp;
};

static int read_exact(int fd, void *buf, size_t len, uint64_t offset)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

/* Reads len bytes of fd at offset into guest memory at addr: straight into
 * the VMM's mapping where the platform has one, else through a bounce
 * buffer one piece at a time. */
static int read_into_guest(struct vmm_process *process, int fd, uint64_t addr, uint64_t len, uint64_t offset)
{
	void *host = vmm_mem_direct(&process->vm, addr, len);
	if (host)
		return read_exact(fd, host, len, offset);
	if (!vmm_mem_in_program(&process->vm, addr, len))
		return -1;
	enum { PIECE = 1 << 20 };
	static uint8_t piece[PIECE];
	for (uint64_t done = 0; done < len;) {
		size_t n = len - done < PIECE ? (size_t)(len - done) : PIECE;
		if (read_exact(fd, piece, n, offset + done) < 0 ||
		    vmm_mem_write(&process->vm, addr + done, piece, n, false) < 0)
			return -1;
		done += n;
	}
	return 0;
}

static int open_program(struct vmm_process *process, const char *path, int *host_fd, uint64_t *size,
			struct ember_error *err)
{
	struct vmm_file *file;
	int rc = vmm_path_open(&process->layers, path, O_RDONLY, 0, &file);
	if (rc < 0)
		return ember_error_errno(err, -rc, "open");
	if (file->kind != VMM_FILE_HOST) {
		vmm_file_unref(file);
		return ember_error_set(err, "not a regular file in a read-only layer");
	}
	*host_fd = dup(file->host_fd);
	vmm_file_unref(file);
	if (*host_fd < 0)
		return ember_error_errno(err, errno, "dup");
	struct stat st;
	if (fstat(*host_fd, &st) < 0) {
		close(*host_fd);
		return ember_error_errno(err, errno, "stat");
	}
	*size = (uint64_t)st.st_size;
	return 0;
}

static int parse_headers(int fd, uint64_t file_size, struct loaded_elf *elf, struct ember_error *err)
{
	Elf64_Ehdr *h = &elf->header;
	if (file_size < 4 || read_exact(fd, h, 4, 0) < 0 || memcmp(h->e_ident, ELFMAG, SELFMAG) != 0)
		return ember_error_set(err, "not an ELF file (bad magic)");
	if (file_size < sizeof *h || read_exact(fd, h, sizeof *h, 0) < 0)
		return ember_error_set(err, "ELF header is truncated");
	if (h->e_ident[EI_CLASS] != ELFCLASS64)
		return ember_error_set(err, "not a 64-bit ELF (class %u)", h->e_ident[EI_CLASS]);
	if (h->e_ident[EI_DATA] != ELFDATA2LSB || h->e_machine != EM_X86_64)
		return ember_error_set(err, "not an x86-64 little-endian ELF (machine %u)", h->e_machine);
	if (h->e_type != ET_EXEC && h->e_type != ET_DYN)
		return ember_error_set(err, "not an executable (ELF type %u)", h->e_type);
	if (h->e_phentsize != sizeof(Elf64_Phdr))
		return ember_error_set(err, "program header size %u, expected %zu", h->e_phentsize,
				       sizeof(Elf64_Phdr));
	if (h->e_phnum == 0 || h->e_phnum > ELF_MAX_PHNUM)
		return ember_error_set(err, "%u program headers (1..%d allowed)", h->e_phnum, ELF_MAX_PHNUM);
	uint64_t table_size = (uint64_t)h->e_phnum * sizeof(Elf64_Phdr);
	if (h->e_phoff > file_size || table_size > file_size - h->e_phoff ||
	    read_exact(fd, elf->phdrs, table_size, h->e_phoff) < 0)
		return ember_error_set(err, "program headers lie past the end of the file");

	elf->span_start = UINT64_MAX;
	elf->span_end = 0;
	int loads = 0;
	uint64_t previous_end = 0;
	for (unsigned i = 0; i < h->e_phnum; i++) {
		Elf64_Phdr *p = &elf->phdrs[i];
		if (p->p_type == PT_INTERP) {
			if (p->p_filesz < 2 || p->p_filesz > ELF_INTERP_MAX || p->p_offset > file_size ||
			    p->p_filesz > file_size - p->p_offset)
				return ember_error_set(err, "PT_INTERP lies outside the file or is too long");
			if (read_exact(fd, elf->interp, p->p_filesz, p->p_offset) < 0 ||
			    elf->interp[p->p_filesz - 1] != '\0' || strlen(elf->interp) != p->p_filesz - 1)
				return ember_error_set(err, "PT_INTERP is not a NUL-terminated path");
			elf->has_interp = 1;
		}
		if (p->p_type != PT_LOAD)
			continue;
		if (p->p_filesz > p->p_memsz)
			return ember_error_set(err, "segment %u: file size exceeds memory size", i);
		if (p->p_offset > file_size || p->p_filesz > file_size - p->p_offset)
			return ember_error_set(
				err, "segment %u: file offset %#llx+%#llx past the end of the file", i,
				(unsigned long long)p->p_offset, (unsigned long long)p->p_filesz);
		if (p->p_vaddr > GUEST_MEM_MAX || p->p_memsz > GUEST_MEM_MAX ||
		    p->p_vaddr + p->p_memsz > (1ULL << 47))
			return ember_error_set(err, "segment %u at %#llx (+%#llx) lies outside guest memory",
					       i, (unsigned long long)p->p_vaddr,
					       (unsigned long long)p->p_memsz);
		if ((p->p_vaddr & PAGE_MASK) != (p->p_offset & PAGE_MASK))
			return ember_error_set(
				err, "segment %u: address and offset disagree modulo the page size", i);
		if (p->p_vaddr < previous_end)
			return ember_error_set(err, "segment %u overlaps or precedes the one before it", i);
		previous_end = p->p_vaddr + p->p_memsz;
		uint64_t start = p->p_vaddr & ~PAGE_MASK;
		uint64_t end = (p->p_vaddr + p->p_memsz + PAGE_MASK) & ~PAGE_MASK;
		if (start < elf->span_start)
			elf->span_start = start;
		if (end > elf->span_end)
			elf->span_end = end;
		loads++;
	}
	if (loads == 0)
		return ember_error_set(err, "no loadable segments");
	return 0;
}

static int load_segments(struct vmm_process *process, int fd, struct loaded_elf *elf, int is_interp,
			 struct ember_error *err)
{
	struct vmm_memory_map *mm = &process->mm;
	uint64_t span = elf->span_end - elf->span_start;
	uint64_t addr;
	if (elf->header.e_type == ET_EXEC) {
		if (elf->span_start < mm->low || elf->span_end > mm->high)
			return ember_error_set(
				err, "segments at %#llx..%#llx lie outside guest memory %#llx..%#llx",
				(unsigned long long)elf->span_start, (unsigned long long)elf->span_end,
				(unsigned long long)mm->low, (unsigned long long)mm->high);
		int rc = vmm_mm_map(mm, elf->span_start, span, 1, 7, 0, &addr);
		if (rc < 0)
			return ember_error_errno(err, -rc, "map %#llx bytes at %#llx",
						 (unsigned long long)span,
						 (unsigned long long)elf->span_start);
		elf->bias = 0;
	} else {
		if (elf->span_start != 0)
			return ember_error_set(err, "position-independent image does not start at address 0");
		uint64_t hint = is_interp ? 0 : PIE_PREFERRED_BASE;
		int rc = vmm_mm_map(mm, hint, span, 0, 7, 0, &addr);
		if (rc < 0)
			return ember_error_errno(err, -rc, "map %#llx bytes", (unsigned long long)span);
		elf->bias = addr;
	}
	for (unsigned i = 0; i < elf->header.e_phnum; i++) {
		Elf64_Phdr *p = &elf->phdrs[i];
		if (p->p_type != PT_LOAD || p->p_filesz == 0)
			continue;
		if (read_into_guest(process, fd, elf->bias + p->p_vaddr, p->p_filesz, p->p_offset) < 0)
			return ember_error_set(err, "segment %u: cannot read its bytes", i);
	}
	return 0;
}

int vmm_elf_load(struct vmm_process *process, const char *path, struct vmm_exec_image *image,
		 struct ember_error *err)
{
	static struct loaded_elf program, interp; /* large; one load at a time */
	memset(&program, 0, sizeof program);
	memset(&interp, 0, sizeof interp);
	int fd;
	uint64_t size;
	if (open_program(process, path, &fd, &size, err) < 0 ||
	    (parse_headers(fd, size, &program, err) < 0 && (close(fd), 1)))
		return ember_error_wrap(err, "load program `%s`", path);

	int interp_fd = -1;
	if (program.has_interp) {
		uint64_t interp_size;
		if (open_program(process, program.interp, &interp_fd, &interp_size, err) < 0 ||
		    (parse_headers(interp_fd, interp_size, &interp, err) < 0 && (close(interp_fd), 1))) {
			close(fd);
			ember_error_wrap(err, "interpreter `%s`", program.interp);
			return ember_error_wrap(err, "load program `%s`", path);
		}
		if (interp.has_interp || interp.header.e_type != ET_DYN) {
			close(fd);
			close(interp_fd);
			return ember_error_set(err,
					       "load program `%s`: interpreter `%s` is not a shared object",
					       path, program.interp);
		}
	}
	int rc = load_segments(process, fd, &program, 0, err);
	close(fd);
	if (rc < 0) {
		if (interp_fd >= 0)
			close(interp_fd);
		return ember_error_wrap(err, "load program `%s`", path);
	}
	image->program_entry = program.bias + program.header.e_entry;
	image->entry = image->program_entry;
	image->phnum = program.header.e_phnum;
	image->program_end = program.bias + program.span_end;
	image->phdr_addr = 0;
	for (unsigned i = 0; i < program.header.e_phnum; i++) {
		Elf64_Phdr *p = &program.phdrs[i];
		if (p->p_type == PT_PHDR)
			image->phdr_addr = program.bias + p->p_vaddr;
		else if (!image->phdr_addr && p->p_type == PT_LOAD && p->p_offset <= program.header.e_phoff &&
			 program.header.e_phoff - p->p_offset < p->p_filesz)
			image->phdr_addr = program.bias + p->p_vaddr + (program.header.e_phoff - p->p_offset);
	}
	image->interp_base = 0;
	if (interp_fd >= 0) {
		rc = load_segments(process, interp_fd, &interp, 1, err);
		close(interp_fd);
		if (rc < 0)
			return ember_error_wrap(err, "load interpreter `%s`", program.interp);
		image->interp_base = interp.bias;
		image->entry = interp.bias + interp.header.e_entry;
	}
	return 0;
}

/* Pushes bytes below *sp; returns their guest address or 0 on overflow. */
static uint64_t push_bytes(struct vmm_process *process, uint64_t *sp, const void *bytes, size_t len)
{
	if (*sp < process->mm.stack_low + len)
		return 0;
	*sp -= len;
	if (vmm_mem_write(&process->vm, *sp, bytes, len, false) < 0)
		return 0;
	return *sp;
}

int vmm_stack_setup(struct vmm_process *process, const struct vmm_exec_image *image, int argc,
		    char *const argv[], int envc, char *const envp[], const char *execfn, uint64_t *rsp,
		    struct ember_error *err)
{
	uint64_t sp = process->mm.stack_top;
	uint64_t zero = 0;
	uint64_t argv_addr[argc + 1], envp_addr[envc + 1];
	if (!push_bytes(process, &sp, &zero, 8))
		goto overflow;
	uint64_t execfn_addr = push_bytes(process, &sp, execfn, strlen(execfn) + 1);
	if (!execfn_addr)
		goto overflow;
	for (int i = envc - 1; i >= 0; i--)
		if (!(envp_addr[i] = push_bytes(process, &sp, envp[i], strlen(envp[i]) + 1)))
			goto overflow;
	for (int i = argc - 1; i >= 0; i--)
		if (!(argv_addr[i] = push_bytes(process, &sp, argv[i], strlen(argv[i]) + 1)))
			goto overflow;
	sp &= ~15ULL;
	uint64_t platform_addr = push_bytes(process, &sp, "x86_64", 7);
	uint8_t random_bytes[16];
	if (getrandom(random_bytes, sizeof random_bytes, 0) != (ssize_t)sizeof random_bytes)
		return ember_error_errno(err, errno, "getrandom for AT_RANDOM");
	uint64_t random_addr = push_bytes(process, &sp, random_bytes, sizeof random_bytes);
	if (!platform_addr || !random_addr)
		goto overflow;
	sp &= ~15ULL;

	unsigned eax, ebx, ecx, edx;
	__cpuid(1, eax, ebx, ecx, edx);
	uint64_t auxv[][2] = {
		{AT_SYSINFO_EHDR, GUEST_VDSO_ADDR},
		{AT_HWCAP, edx},
		{AT_PAGESZ, GUEST_PAGE_SIZE},
		{AT_CLKTCK, 100},
		{AT_PHDR, image->phdr_addr},
		{AT_PHENT, sizeof(Elf64_Phdr)},
		{AT_PHNUM, image->phnum},
		{AT_BASE, image->interp_base},
		{AT_FLAGS, 0},
		{AT_ENTRY, image->program_entry},
		{AT_UID, VMM_GUEST_UID},
		{AT_EUID, VMM_GUEST_UID},
		{AT_GID, VMM_GUEST_UID},
		{AT_EGID, VMM_GUEST_UID},
		{AT_SECURE, 0},
		{AT_RANDOM, random_addr},
		{AT_HWCAP2, process->vm.has_fsgsbase ? 2 : 0},
		{AT_EXECFN, execfn_addr},
		{AT_PLATFORM, platform_addr},
		{AT_NULL, 0},
	};
	size_t auxv_words = sizeof auxv / sizeof(uint64_t);
	size_t words = 1 + (size_t)argc + 1 + (size_t)envc + 1 + auxv_words;
	if ((sp - words * 8) & 15)
		sp -= 8; /* rsp is 16-byte aligned at the entry point */
	if (!push_bytes(process, &sp, auxv, sizeof auxv))
		goto overflow;
	envp_addr[envc] = 0;
	argv_addr[argc] = 0;
	uint64_t argc64 = (uint64_t)argc;
	if (!push_bytes(process, &sp, envp_addr, sizeof(uint64_t) * (size_t)(envc + 1)) ||
	    !push_bytes(process, &sp, argv_addr, sizeof(uint64_t) * (size_t)(argc + 1)) ||
	    !push_bytes(process, &sp, &argc64, 8))
		goto overflow;
	*rsp = sp;
	return 0;
overflow:
	return ember_error_set(err, "arguments and environment do not fit on the guest stack");
}
