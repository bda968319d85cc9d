/* Unit test of Ember's vDSO (build/vdso/vdso.so) and of the VMM's clock
 * module (vmm/clock.c), run on the host.  It lays the image out as the VMM
 * does in a guest — file bytes copied verbatim, the clock data page one
 * page below — finds the entry points through the image's own dynamic
 * symbol table and version definitions, as glibc does, and calls them
 * against pages published by vmm_clock_publish, comparing with the host's
 * clocks.  One line per check: "PASS name", "FAIL name: reason" or
 * "SKIP name: reason"; exits non-zero on any failure.  Usage:
 * test_vdso [path/to/vdso.so]  (default build/vdso/vdso.so).  It must never
 * need KVM to run: /dev/kvm only adds the checks that use a vCPU. */
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "clock.h"
#include "guest_layout.h"
#include "platform.h"

#define PAGE_SIZE 4096UL
#define NANOSECONDS_PER_SECOND 1000000000LL

/* How far a vDSO reading may lie outside the host readings around it. */
#define TOLERANCE_NS 5000LL

#define MONOTONIC_CALLS 1000000
#define BENCHMARK_CALLS 1000000

typedef int (*clock_gettime_function)(clockid_t, struct timespec *);
typedef int (*gettimeofday_function)(struct timeval *, struct timezone *);
typedef time_t (*time_function)(time_t *);
typedef int (*clock_getres_function)(clockid_t, struct timespec *);
typedef long (*getcpu_function)(unsigned *, unsigned *, void *);

static int failure_count;

/* Prints PASS name, or FAIL name: reason when !passed.  Returns passed. */
static int check(int passed, const char *name, const char *reason_format, ...)
	__attribute__((format(printf, 3, 4)));
static int check(int passed, const char *name, const char *reason_format, ...)
{
	if (passed) {
		printf("PASS %s\n", name);
		return 1;
	}
	va_list arguments;
	va_start(arguments, reason_format);
	printf("FAIL %s: ", name);
	vprintf(reason_format, arguments);
	printf("\n");
	va_end(arguments);
	failure_count++;
	return 0;
}

static int64_t host_nanoseconds(clockid_t clock_id)
{
	struct timespec now;
	clock_gettime(clock_id, &now);
	return (int64_t)now.tv_sec * NANOSECONDS_PER_SECOND + now.tv_nsec;
}

static int64_t timespec_nanoseconds(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * NANOSECONDS_PER_SECOND + ts->tv_nsec;
}

/* ---- the image as the guest sees it ------------------------------------ */

struct vdso_image {
	unsigned char *file;       /* the file's bytes, malloc'd */
	size_t file_size;
	unsigned char *reservation; /* guard, vvar, image pages, guard */
	size_t reservation_size;
	struct vmm_vvar *vvar;     /* one page below the image */
	unsigned char *image;      /* the loaded copy */
	const Elf64_Sym *symbols;
	size_t symbol_count;
	const char *strings;
	size_t strings_size;
	const Elf64_Half *symbol_versions;
	const unsigned char *version_definitions;
};

static int read_whole_file(const char *path, struct vdso_image *vdso)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat status;
	if (fstat(fd, &status) < 0 || status.st_size <= 0) {
		close(fd);
		return -1;
	}
	vdso->file_size = (size_t)status.st_size;
	vdso->file = malloc(vdso->file_size);
	size_t done = 0;
	while (vdso->file != NULL && done < vdso->file_size) {
		ssize_t got = read(fd, vdso->file + done, vdso->file_size - done);
		if (got <= 0)
			break;
		done += (size_t)got;
	}
	close(fd);
	return vdso->file != NULL && done == vdso->file_size ? 0 : -1;
}

/* Checks the layout the VMM relies on.  Returns the PT_LOAD header or NULL. */
static const Elf64_Phdr *check_elf_layout(const struct vdso_image *vdso)
{
	check(vdso->file_size <= GUEST_VDSO_MAX_SIZE, "elf_size", "%zu bytes > %llu",
	      vdso->file_size, GUEST_VDSO_MAX_SIZE);
	const Elf64_Ehdr *header = (const Elf64_Ehdr *)vdso->file;
	if (!check(vdso->file_size >= sizeof *header && memcmp(header->e_ident, ELFMAG, SELFMAG) == 0 &&
			   header->e_ident[EI_CLASS] == ELFCLASS64 && header->e_type == ET_DYN &&
			   header->e_machine == EM_X86_64 && header->e_phentsize == sizeof(Elf64_Phdr) &&
			   header->e_phoff + (uint64_t)header->e_phnum * sizeof(Elf64_Phdr) <= vdso->file_size,
		   "elf_header", "not a 64-bit x86 ET_DYN with sane program headers"))
		return NULL;

	const Elf64_Phdr *programs = (const Elf64_Phdr *)(vdso->file + header->e_phoff);
	const Elf64_Phdr *load = NULL;
	int load_count = 0, dynamic_count = 0, unexpected = 0;
	for (int index = 0; index < header->e_phnum; index++) {
		switch (programs[index].p_type) {
		case PT_LOAD:
			load = &programs[index];
			load_count++;
			break;
		case PT_DYNAMIC:
			dynamic_count++;
			break;
		case PT_NOTE:
		case PT_GNU_STACK:
			break;
		default:
			unexpected++;
		}
	}
	if (!check(load_count == 1 && dynamic_count == 1 && unexpected == 0, "elf_segments",
		   "%d PT_LOAD, %d PT_DYNAMIC, %d unexpected", load_count, dynamic_count, unexpected))
		return NULL;
	if (!check(load->p_offset == 0 && load->p_vaddr == 0 && load->p_filesz == load->p_memsz &&
			   load->p_filesz <= vdso->file_size && load->p_flags == (PF_R | PF_X),
		   "elf_load_segment_verbatim",
		   "offset %#lx vaddr %#lx filesz %#lx memsz %#lx flags %#x", (unsigned long)load->p_offset,
		   (unsigned long)load->p_vaddr, (unsigned long)load->p_filesz,
		   (unsigned long)load->p_memsz, load->p_flags))
		return NULL;

	/* Like `readelf -r`: no relocation sections at all. */
	int relocation_sections = 0;
	if (header->e_shoff != 0 && header->e_shentsize == sizeof(Elf64_Shdr) &&
	    header->e_shoff + (uint64_t)header->e_shnum * sizeof(Elf64_Shdr) <= vdso->file_size) {
		const Elf64_Shdr *sections = (const Elf64_Shdr *)(vdso->file + header->e_shoff);
		for (int index = 0; index < header->e_shnum; index++)
			if (sections[index].sh_type == SHT_RELA || sections[index].sh_type == SHT_REL)
				relocation_sections++;
	}
	check(relocation_sections == 0, "elf_no_relocation_sections", "%d found", relocation_sections);
	return load;
}

/* Maps guard | vvar | image | guard, copies the file verbatim to the image
 * and makes it read+execute, as the VMM does in guest memory. */
static int map_image(struct vdso_image *vdso)
{
	size_t image_pages = (vdso->file_size + PAGE_SIZE - 1) / PAGE_SIZE;
	vdso->reservation_size = (image_pages + 3) * PAGE_SIZE;
	vdso->reservation = mmap(NULL, vdso->reservation_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vdso->reservation == MAP_FAILED)
		return -1;
	vdso->vvar = (struct vmm_vvar *)(vdso->reservation + PAGE_SIZE);
	vdso->image = vdso->reservation + 2 * PAGE_SIZE;
	if (mmap(vdso->vvar, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		    MAP_FAILED ||
	    mmap(vdso->image, image_pages * PAGE_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		return -1;
	memcpy(vdso->image, vdso->file, vdso->file_size);
	return mprotect(vdso->image, image_pages * PAGE_SIZE, PROT_READ | PROT_EXEC);
}

/* Reads the dynamic section of the loaded image, as glibc does for the
 * vDSO: addresses are relative to the image. */
static int read_dynamic(struct vdso_image *vdso, const Elf64_Phdr *load)
{
	const Elf64_Ehdr *header = (const Elf64_Ehdr *)vdso->image;
	const Elf64_Phdr *programs = (const Elf64_Phdr *)(vdso->image + header->e_phoff);
	const Elf64_Dyn *dynamic = NULL;
	size_t dynamic_count = 0;
	for (int index = 0; index < header->e_phnum; index++)
		if (programs[index].p_type == PT_DYNAMIC) {
			dynamic = (const Elf64_Dyn *)(vdso->image + programs[index].p_vaddr);
			dynamic_count = programs[index].p_memsz / sizeof(Elf64_Dyn);
		}
	uint64_t hash = 0, gnu_hash = 0, symbols = 0, strings = 0, strings_size = 0;
	uint64_t versions = 0, definitions = 0, soname = 0;
	int forbidden = 0;
	for (size_t index = 0; index < dynamic_count && dynamic[index].d_tag != DT_NULL; index++) {
		uint64_t value = dynamic[index].d_un.d_val;
		switch (dynamic[index].d_tag) {
		case DT_HASH: hash = value; break;
		case DT_GNU_HASH: gnu_hash = value; break;
		case DT_SYMTAB: symbols = value; break;
		case DT_STRTAB: strings = value; break;
		case DT_STRSZ: strings_size = value; break;
		case DT_VERSYM: versions = value; break;
		case DT_VERDEF: definitions = value; break;
		case DT_SONAME: soname = value; break;
		case DT_REL: case DT_RELA: case DT_JMPREL: case DT_TEXTREL: case DT_NEEDED:
		case DT_INIT: case DT_FINI: case DT_INIT_ARRAY: case DT_FINI_ARRAY: case DT_RELR:
			forbidden++;
			break;
		default:
			break;
		}
	}
	uint64_t end = load->p_memsz;
	int present = hash && gnu_hash && symbols && strings && strings_size && versions && definitions;
	int inside = hash + 8 <= end && symbols < end && strings + strings_size <= end && versions < end &&
		     definitions < end && soname < strings_size;
	if (!check(dynamic != NULL && present && inside && forbidden == 0, "elf_dynamic_tags",
		   "dynamic %s, HASH/GNU_HASH/SYMTAB/STRTAB/STRSZ/VERSYM/VERDEF %s, %s, %d forbidden tags",
		   dynamic ? "found" : "missing", present ? "present" : "incomplete",
		   inside ? "inside the image" : "outside the image", forbidden))
		return -1;
	vdso->symbols = (const Elf64_Sym *)(vdso->image + symbols);
	vdso->symbol_count = ((const uint32_t *)(vdso->image + hash))[1]; /* nchain */
	vdso->strings = (const char *)(vdso->image + strings);
	vdso->strings_size = strings_size;
	vdso->symbol_versions = (const Elf64_Half *)(vdso->image + versions);
	vdso->version_definitions = vdso->image + definitions;
	check(strcmp(vdso->strings + soname, "linux-vdso.so.1") == 0, "elf_soname", "soname is \"%s\"",
	      vdso->strings + soname);
	return 0;
}

/* The name of version definition `index`, or NULL. */
static const char *version_name(const struct vdso_image *vdso, unsigned index)
{
	const unsigned char *cursor = vdso->version_definitions;
	for (;;) {
		const Elf64_Verdef *definition = (const Elf64_Verdef *)cursor;
		if (definition->vd_ndx == index) {
			const Elf64_Verdaux *auxiliary = (const Elf64_Verdaux *)(cursor + definition->vd_aux);
			return auxiliary->vda_name < vdso->strings_size ? vdso->strings + auxiliary->vda_name : NULL;
		}
		if (definition->vd_next == 0)
			return NULL;
		cursor += definition->vd_next;
	}
}

/* Finds a defined function `name` with version LINUX_2.6; its address in the
 * loaded image, or NULL. */
static void *find_symbol(const struct vdso_image *vdso, const char *name)
{
	for (size_t index = 1; index < vdso->symbol_count; index++) {
		const Elf64_Sym *symbol = &vdso->symbols[index];
		if (symbol->st_name >= vdso->strings_size || strcmp(vdso->strings + symbol->st_name, name) != 0)
			continue;
		const char *version = version_name(vdso, vdso->symbol_versions[index] & 0x7fff);
		if (symbol->st_shndx == SHN_UNDEF || ELF64_ST_TYPE(symbol->st_info) != STT_FUNC ||
		    version == NULL || strcmp(version, "LINUX_2.6") != 0)
			return NULL;
		return vdso->image + symbol->st_value;
	}
	return NULL;
}

/* ---- the entry points --------------------------------------------------- */

static clock_gettime_function vdso_clock_gettime;
static gettimeofday_function vdso_gettimeofday;
static time_function vdso_time;
static clock_getres_function vdso_clock_getres;
static getcpu_function vdso_getcpu;

static void *find_entry(const struct vdso_image *vdso, const char *name, const char *alias)
{
	char check_name[64];
	void *address = find_symbol(vdso, name);
	snprintf(check_name, sizeof check_name, "symbol_%s", name);
	check(address != NULL, check_name, "no function %s@LINUX_2.6", name);
	void *alias_address = find_symbol(vdso, alias);
	snprintf(check_name, sizeof check_name, "alias_%s", alias);
	check(address != NULL && alias_address == address, check_name, "%s@LINUX_2.6 is not %s", alias, name);
	return address;
}

static int find_entries(const struct vdso_image *vdso)
{
	void *clock_gettime_address = find_entry(vdso, "__vdso_clock_gettime", "clock_gettime");
	void *gettimeofday_address = find_entry(vdso, "__vdso_gettimeofday", "gettimeofday");
	void *time_address = find_entry(vdso, "__vdso_time", "time");
	void *clock_getres_address = find_entry(vdso, "__vdso_clock_getres", "clock_getres");
	void *getcpu_address = find_entry(vdso, "__vdso_getcpu", "getcpu");
	if (!clock_gettime_address || !gettimeofday_address || !time_address || !clock_getres_address ||
	    !getcpu_address)
		return -1;
	vdso_clock_gettime = (clock_gettime_function)(uintptr_t)clock_gettime_address;
	vdso_gettimeofday = (gettimeofday_function)(uintptr_t)gettimeofday_address;
	vdso_time = (time_function)(uintptr_t)time_address;
	vdso_clock_getres = (clock_getres_function)(uintptr_t)clock_getres_address;
	vdso_getcpu = (getcpu_function)(uintptr_t)getcpu_address;
	return 0;
}

/* glibc's own versioned lookup (dlvsym, as its vDSO set-up does with
 * LINUX_2.6) must find the same functions; the object is only loaded, no
 * code in it runs. */
static void check_glibc_lookup(const struct vdso_image *vdso, const char *path)
{
	static const char *const names[] = {"__vdso_clock_gettime", "__vdso_gettimeofday", "__vdso_time",
					    "__vdso_clock_getres", "__vdso_getcpu"};
	char *full_path = realpath(path, NULL); /* a bare name would be searched for */
	void *handle = full_path ? dlopen(full_path, RTLD_NOW | RTLD_LOCAL) : NULL;
	free(full_path);
	struct link_map *map = NULL;
	if (!check(handle != NULL && dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0, "glibc_dlopen", "%s",
		   handle ? "dlinfo failed" : dlerror()))
		return;
	int mismatches = 0;
	for (size_t index = 0; index < sizeof names / sizeof names[0]; index++) {
		unsigned char *found = dlvsym(handle, names[index], "LINUX_2.6");
		unsigned char *ours = find_symbol(vdso, names[index]);
		if (found == NULL || ours == NULL ||
		    (uintptr_t)(found - map->l_addr) != (uintptr_t)(ours - vdso->image))
			mismatches++;
		if (dlvsym(handle, names[index], "LINUX_2.5") != NULL)
			mismatches++;
	}
	check(mismatches == 0, "glibc_dlvsym_LINUX_2.6", "%d lookups disagree", mismatches);
	dlclose(handle);
}

static int64_t vdso_nanoseconds(clockid_t clock_id)
{
	struct timespec now = {0};
	vdso_clock_gettime(clock_id, &now);
	return timespec_nanoseconds(&now);
}

/* ---- checks ------------------------------------------------------------- */

/* A reading of vdso_clock against host_clock, bracketed by two host reads. */
static void check_clock_against_host(const char *name, clockid_t vdso_clock, clockid_t host_clock)
{
	int64_t error = INT64_MAX;
	int result = 0;
	for (int attempt = 0; attempt < 5 && (error > TOLERANCE_NS || error < -TOLERANCE_NS); attempt++) {
		struct timespec reading = {0};
		int64_t before = host_nanoseconds(host_clock);
		result = vdso_clock_gettime(vdso_clock, &reading);
		int64_t after = host_nanoseconds(host_clock);
		int64_t value = timespec_nanoseconds(&reading);
		error = value < before ? value - before : value > after ? value - after : 0;
		if (reading.tv_nsec < 0 || reading.tv_nsec >= NANOSECONDS_PER_SECOND)
			error = INT64_MAX;
	}
	check(result == 0 && error <= TOLERANCE_NS && error >= -TOLERANCE_NS, name,
	      "returned %d, %lld ns outside the host's readings", result, (long long)error);
}

/* Fills the page with nonsense that a reader ignoring version or sequence
 * would turn into times near zero. */
static void write_bogus_page(struct vmm_vvar *page, uint32_t version, uint32_t sequence)
{
	memset(page, 0, sizeof *page);
	page->version = version;
	page->seq = sequence;
	page->tsc_base = __rdtsc();
	page->tsc_mult = 1;
	page->tsc_shift = 0;
}

static void check_fallbacks(struct vmm_vvar *page)
{
	write_bogus_page(page, 0, 0);
	check_clock_against_host("fallback_version_0_clock_gettime", CLOCK_MONOTONIC, CLOCK_MONOTONIC);
	struct timeval tv = {0};
	int64_t before = host_nanoseconds(CLOCK_REALTIME) / 1000;
	int result = vdso_gettimeofday(&tv, NULL);
	int64_t after = host_nanoseconds(CLOCK_REALTIME) / 1000;
	int64_t microseconds = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
	check(result == 0 && microseconds >= before - 5 && microseconds <= after + 5,
	      "fallback_version_0_gettimeofday", "returned %d, %lld µs vs host [%lld, %lld]", result,
	      (long long)microseconds, (long long)before, (long long)after);
	time_t host_seconds = time(NULL);
	time_t seconds = vdso_time(NULL);
	check(seconds >= host_seconds && seconds <= host_seconds + 1, "fallback_version_0_time",
	      "%lld vs host %lld", (long long)seconds, (long long)host_seconds);

	write_bogus_page(page, VMM_VVAR_VERSION + 1, 0);
	check_clock_against_host("fallback_unknown_version", CLOCK_REALTIME, CLOCK_REALTIME);

	write_bogus_page(page, VMM_VVAR_VERSION, 1);
	check_clock_against_host("fallback_odd_sequence", CLOCK_MONOTONIC, CLOCK_MONOTONIC);
	memset(page, 0, sizeof *page);
}

static void check_system_call_paths(void)
{
	struct timespec before, reading = {0}, after;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &before);
	int result = vdso_clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &reading);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &after);
	check(result == 0 && timespec_nanoseconds(&reading) >= timespec_nanoseconds(&before) &&
		      timespec_nanoseconds(&reading) <= timespec_nanoseconds(&after),
	      "syscall_process_cputime", "returned %d, value outside the host's readings", result);
	result = vdso_clock_gettime(12345, &reading);
	check(result == -EINVAL, "syscall_invalid_clock", "returned %d, expected %d", result, -EINVAL);
	result = vdso_clock_gettime(CLOCK_MONOTONIC, NULL);
	check(result == -EFAULT, "syscall_null_timespec", "returned %d, expected %d", result, -EFAULT);
}

static void check_published_page(const struct vmm_vvar *page)
{
	check(page->version == VMM_VVAR_VERSION && (page->seq & 1) == 0 && page->pad == 0 &&
		      page->reserved[0] == 0 && page->reserved[1] == 0 && page->tsc_mult != 0,
	      "publish_page_fields", "version %u seq %u mult %llu", page->version, page->seq,
	      (unsigned long long)page->tsc_mult);
}

static void check_clocks(void)
{
	check_clock_against_host("clock_realtime", CLOCK_REALTIME, CLOCK_REALTIME);
	check_clock_against_host("clock_monotonic", CLOCK_MONOTONIC, CLOCK_MONOTONIC);
	/* The page serves RAW, BOOTTIME and the COARSE clocks from the same
	 * line as MONOTONIC / REALTIME, to the nanosecond. */
	check_clock_against_host("clock_monotonic_raw", CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC);
	check_clock_against_host("clock_boottime", CLOCK_BOOTTIME, CLOCK_MONOTONIC);
	check_clock_against_host("clock_realtime_coarse", CLOCK_REALTIME_COARSE, CLOCK_REALTIME);
	check_clock_against_host("clock_monotonic_coarse", CLOCK_MONOTONIC_COARSE, CLOCK_MONOTONIC);
}

static void check_monotonic_calls(void)
{
	int64_t first = vdso_nanoseconds(CLOCK_MONOTONIC), previous = first;
	long backwards = 0;
	int64_t worst = 0;
	for (int call = 0; call < MONOTONIC_CALLS; call++) {
		int64_t now = vdso_nanoseconds(CLOCK_MONOTONIC);
		if (now < previous) {
			backwards++;
			if (previous - now > worst)
				worst = previous - now;
		}
		previous = now;
	}
	check(backwards == 0 && previous > first, "monotonic_1e6_calls",
	      "%ld steps back (worst %lld ns), advanced %lld ns", backwards, (long long)worst,
	      (long long)(previous - first));
}

/* Republishes every `calls_per_publish` reads for `seconds`, with the
 * nominal rate scaled by (1 + rate_error_ppm * 1e-6); checks that the
 * guest's MONOTONIC never steps back and ends within `bound_ns` of the
 * host's. */
static void check_refresh(const char *name, struct vmm_clock *clock, struct vmm_vvar *page,
			  double rate_error_ppm, int calls_per_publish, double seconds, int64_t bound_ns)
{
	uint64_t nominal = clock->tsc_mult_nominal;
	clock->tsc_mult_nominal = (uint64_t)((double)nominal * (1.0 + rate_error_ppm * 1e-6));
	vmm_clock_set_guest_monotonic_offset(clock, 0); /* start afresh */
	vmm_clock_publish(clock, page);
	uint64_t steers_before = clock->steer_count;
	int64_t end = host_nanoseconds(CLOCK_MONOTONIC) + (int64_t)(seconds * 1e9);
	int64_t previous = vdso_nanoseconds(CLOCK_MONOTONIC), worst = 0;
	long backwards = 0, publishes = 0;
	for (long call = 1;; call++) {
		if (call % calls_per_publish == 0) {
			vmm_clock_publish(clock, page);
			publishes++;
			if (host_nanoseconds(CLOCK_MONOTONIC) > end)
				break;
		}
		int64_t now = vdso_nanoseconds(CLOCK_MONOTONIC);
		if (now < previous) {
			backwards++;
			if (previous - now > worst)
				worst = previous - now;
		}
		previous = now;
	}
	int64_t host = host_nanoseconds(CLOCK_MONOTONIC);
	int64_t guest = vdso_nanoseconds(CLOCK_MONOTONIC);
	int64_t offset = guest - host;
	check(backwards == 0 && offset <= bound_ns && offset >= -bound_ns, name,
	      "%ld steps back (worst %lld ns) over %ld publishes; guest - host = %lld ns (bound %lld)",
	      backwards, (long long)worst, publishes, (long long)offset, (long long)bound_ns);
	printf("INFO %s: %ld publishes, %llu held and slowed, guest - host = %lld ns at the end\n", name,
	       publishes, (unsigned long long)(clock->steer_count - steers_before), (long long)offset);
	clock->tsc_mult_nominal = nominal;
	vmm_clock_set_guest_monotonic_offset(clock, 0);
	vmm_clock_publish(clock, page);
}

static void check_tsc_before_base(struct vmm_clock *clock, struct vmm_vvar *page)
{
	vmm_clock_publish(clock, page);
	uint64_t ahead_ticks = clock->tsc_hz / 1000; /* base 1 ms in the future */
	page->tsc_base += ahead_ticks;
	int64_t host = host_nanoseconds(CLOCK_MONOTONIC);
	int64_t guest = vdso_nanoseconds(CLOCK_MONOTONIC);
	int64_t behind = host - guest;
	check(behind > 900000 && behind < 1100000, "tsc_before_base_reads_back",
	      "guest %lld ns behind the host, expected about 1 ms", (long long)behind);
	vmm_clock_publish(clock, page);
}

static void check_guest_time_helper(const struct vmm_clock *clock)
{
	struct timespec helper = {0};
	int64_t before = vdso_nanoseconds(CLOCK_MONOTONIC);
	int result = vmm_clock_guest_time(clock, CLOCK_MONOTONIC, &helper);
	int64_t after = vdso_nanoseconds(CLOCK_MONOTONIC);
	int64_t value = timespec_nanoseconds(&helper);
	check(result == 0 && value >= before && value <= after, "guest_time_matches_vdso",
	      "returned %d, %lld not in [%lld, %lld]", result, (long long)value, (long long)before,
	      (long long)after);
	check(vmm_clock_guest_time(clock, CLOCK_PROCESS_CPUTIME_ID, &helper) == -1,
	      "guest_time_refuses_cputime", "answered CLOCK_PROCESS_CPUTIME_ID");
}

static void check_gettimeofday_time_getcpu_getres(void)
{
	struct timeval tv = {0};
	struct timezone tz;
	memset(&tz, 0x55, sizeof tz);
	int64_t before = host_nanoseconds(CLOCK_REALTIME) / 1000;
	int result = vdso_gettimeofday(&tv, &tz);
	int64_t after = host_nanoseconds(CLOCK_REALTIME) / 1000;
	int64_t microseconds = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
	check(result == 0 && tv.tv_usec >= 0 && tv.tv_usec < 1000000 && microseconds >= before - 5 &&
		      microseconds <= after + 5,
	      "gettimeofday_value", "returned %d, %lld µs vs host [%lld, %lld]", result,
	      (long long)microseconds, (long long)before, (long long)after);
	check(tz.tz_minuteswest == 0 && tz.tz_dsttime == 0, "gettimeofday_timezone_zero",
	      "tz = {%d, %d}", tz.tz_minuteswest, tz.tz_dsttime);
	memset(&tz, 0x55, sizeof tz);
	result = vdso_gettimeofday(NULL, &tz);
	check(result == 0 && tz.tz_minuteswest == 0 && tz.tz_dsttime == 0, "gettimeofday_null_tv",
	      "returned %d, tz = {%d, %d}", result, tz.tz_minuteswest, tz.tz_dsttime);
	check(vdso_gettimeofday(NULL, NULL) == 0, "gettimeofday_null_both", "did not return 0");

	time_t stored = 0;
	time_t host_seconds = time(NULL);
	time_t seconds = vdso_time(&stored);
	check(seconds >= host_seconds && seconds <= host_seconds + 1 && stored == seconds, "time_value",
	      "returned %lld, stored %lld, host %lld", (long long)seconds, (long long)stored,
	      (long long)host_seconds);
	seconds = vdso_time(NULL);
	check(seconds >= host_seconds && seconds <= host_seconds + 1, "time_null", "returned %lld",
	      (long long)seconds);

	unsigned cpu = 77, node = 77;
	long cpu_result = vdso_getcpu(&cpu, &node, NULL);
	check(cpu_result == 0 && cpu == 0 && node == 0, "getcpu_zero", "returned %ld, cpu %u node %u",
	      cpu_result, cpu, node);
	check(vdso_getcpu(NULL, NULL, NULL) == 0, "getcpu_null", "did not return 0");

	struct timespec resolution = {7, 7};
	result = vdso_clock_getres(CLOCK_MONOTONIC, &resolution);
	check(result == 0 && resolution.tv_sec == 0 && resolution.tv_nsec == 1, "getres_monotonic",
	      "returned %d, {%lld, %ld}", result, (long long)resolution.tv_sec, resolution.tv_nsec);
	check(vdso_clock_getres(CLOCK_REALTIME_COARSE, NULL) == 0, "getres_null", "did not return 0");
	struct timespec host_resolution;
	clock_getres(CLOCK_PROCESS_CPUTIME_ID, &host_resolution);
	result = vdso_clock_getres(CLOCK_PROCESS_CPUTIME_ID, &resolution);
	check(result == 0 && resolution.tv_sec == host_resolution.tv_sec &&
		      resolution.tv_nsec == host_resolution.tv_nsec,
	      "getres_syscall_cputime", "returned %d", result);
	check(vdso_clock_getres(12345, &resolution) == -EINVAL, "getres_invalid_clock",
	      "did not return -EINVAL");
}

static void check_maybe_refresh(struct vmm_clock *clock, struct vmm_vvar *page)
{
	vmm_clock_publish(clock, page);
	uint64_t count = clock->publish_count;
	vmm_clock_maybe_refresh(clock, page);
	check(clock->publish_count == count, "maybe_refresh_skips_when_fresh", "published again");
	struct timespec pause = {0, 110 * 1000 * 1000};
	nanosleep(&pause, NULL);
	vmm_clock_maybe_refresh(clock, page);
	check(clock->publish_count == count + 1, "maybe_refresh_after_100ms", "did not publish");
	check_clock_against_host("clock_monotonic_after_refresh", CLOCK_MONOTONIC, CLOCK_MONOTONIC);
}

/* ---- figures ------------------------------------------------------------ */

static int compare_u64(const void *left, const void *right)
{
	uint64_t a = *(const uint64_t *)left, b = *(const uint64_t *)right;
	return a < b ? -1 : a > b;
}

static uint64_t timed_ticks(void)
{
	_mm_lfence();
	uint64_t tsc = __rdtsc();
	_mm_lfence();
	return tsc;
}

/* Median ns per call of `function`(CLOCK_MONOTONIC) over BENCHMARK_CALLS
 * calls, each timed by rdtsc, less the median cost of the timing itself. */
static double median_call_nanoseconds(clock_gettime_function function, uint64_t tsc_hz, uint64_t *samples)
{
	struct timespec reading;
	for (int call = 0; call < BENCHMARK_CALLS; call++) {
		uint64_t start = timed_ticks();
		uint64_t end = timed_ticks();
		samples[call] = end - start;
	}
	qsort(samples, BENCHMARK_CALLS, sizeof *samples, compare_u64);
	uint64_t overhead = samples[BENCHMARK_CALLS / 2];
	for (int call = 0; call < BENCHMARK_CALLS; call++) {
		uint64_t start = timed_ticks();
		function(CLOCK_MONOTONIC, &reading);
		uint64_t end = timed_ticks();
		samples[call] = end - start;
	}
	qsort(samples, BENCHMARK_CALLS, sizeof *samples, compare_u64);
	uint64_t median = samples[BENCHMARK_CALLS / 2];
	median = median > overhead ? median - overhead : 0;
	return (double)median * 1e9 / (double)tsc_hz;
}

static void report_figures(const struct vmm_clock *clock)
{
	uint64_t *samples = malloc(BENCHMARK_CALLS * sizeof *samples);
	if (samples == NULL)
		return;
	double vdso = median_call_nanoseconds(vdso_clock_gettime, clock->tsc_hz, samples);
	double host = median_call_nanoseconds(clock_gettime, clock->tsc_hz, samples);
	free(samples);
	int64_t start = host_nanoseconds(CLOCK_MONOTONIC);
	for (int call = 0; call < BENCHMARK_CALLS; call++)
		vdso_nanoseconds(CLOCK_MONOTONIC);
	double mean = (double)(host_nanoseconds(CLOCK_MONOTONIC) - start) / BENCHMARK_CALLS;
	printf("INFO __vdso_clock_gettime(CLOCK_MONOTONIC): median %.1f ns per call over %d calls "
	       "(mean %.1f ns back to back); host glibc clock_gettime median %.1f ns\n",
	       vdso, BENCHMARK_CALLS, mean, host);
}

/* ---- main --------------------------------------------------------------- */

/* Opens a VM with one vCPU if this host allows; returns the vCPU fd or -1
 * with *why set. */
static int open_vcpu(const char **why)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		*why = "cannot open /dev/kvm";
		return -1;
	}
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	int vcpu = vm >= 0 ? ioctl(vm, KVM_CREATE_VCPU, 0) : -1;
	close(kvm); /* the vCPU keeps its VM alive */
	if (vm >= 0)
		close(vm);
	if (vcpu < 0)
		*why = "cannot create a VM and a vCPU";
	return vcpu;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "build/vdso/vdso.so";
	struct vdso_image vdso = {0};
	if (!check(read_whole_file(path, &vdso) == 0, "read_image", "cannot read %s", path))
		return 1;
	const Elf64_Phdr *load = check_elf_layout(&vdso);
	if (load == NULL)
		return 1;
	if (!check(map_image(&vdso) == 0, "map_image", "mmap: %s", strerror(errno)))
		return 1;
	if (read_dynamic(&vdso, load) < 0 || find_entries(&vdso) < 0)
		return 1;
	check_glibc_lookup(&vdso, path);

	struct ember_error err;
	struct vmm_clock clock;
	const char *why = NULL;
	int vcpu_fd = open_vcpu(&why);
	uint64_t kvm_hz = 0;
	if (vcpu_fd >= 0) {
		int khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
		struct vmm_tsc_source kvm_tsc = {.hz = khz > 0 ? (uint64_t)khz * 1000 : 0,
						 .hz_source = "KVM_GET_TSC_KHZ"};
		int result = vmm_clock_init(&clock, &kvm_tsc, &err);
		if (check(result == 0 && strcmp(clock.tsc_hz_source, "KVM_GET_TSC_KHZ") == 0, "clock_init_kvm",
			  "%s", result < 0 ? err.message : clock.tsc_hz_source)) {
			kvm_hz = clock.tsc_hz;
			printf("INFO vCPU: TSC %llu Hz from %s, guest TSC offset %lld from %s\n",
			       (unsigned long long)clock.tsc_hz, clock.tsc_hz_source,
			       (long long)clock.guest_tsc_offset, clock.guest_tsc_offset_source);
		}
	} else {
		printf("SKIP clock_init_kvm: %s\n", why);
	}

	struct vmm_clock calibrated;
	int result = vmm_clock_init(&calibrated, NULL, &err);
	if (check(result == 0 && strcmp(calibrated.tsc_hz_source, "calibration") == 0 &&
			  calibrated.guest_tsc_offset == 0,
		  "clock_init_calibration", "%s", result < 0 ? err.message : "wrong source or offset")) {
		printf("INFO calibrated TSC %llu Hz, shift %u, mult %llu\n",
		       (unsigned long long)calibrated.tsc_hz, calibrated.tsc_shift,
		       (unsigned long long)calibrated.tsc_mult_nominal);
		if (kvm_hz != 0) {
			double difference = ((double)calibrated.tsc_hz - (double)kvm_hz) / (double)kvm_hz;
			check(difference < 1e-4 && difference > -1e-4, "calibration_agrees_with_kvm",
			      "%.1f ppm apart", difference * 1e6);
		}
	}
	if (kvm_hz == 0) {
		if (result < 0)
			return 1;
		clock = calibrated;
	}
	/* The host process reads the host TSC: whatever KVM says the guest's
	 * offset is, this test's "guest" has offset 0. */
	vmm_clock_set_guest_tsc_offset(&clock, 0);

	check_fallbacks(vdso.vvar);
	check_system_call_paths();
	vmm_clock_publish(&clock, vdso.vvar);
	check_published_page(vdso.vvar);
	check_clocks();
	check_monotonic_calls();
	check_refresh("refresh_monotonic_exact_rate", &clock, vdso.vvar, 0, 1000, 0.3, 5000);
	check_refresh("refresh_monotonic_fast_rate_20ppm", &clock, vdso.vvar, 20, 1000, 0.5, 50000);
	check_refresh("refresh_monotonic_slow_rate_20ppm", &clock, vdso.vvar, -20, 1000, 0.5, 5000);
	check_tsc_before_base(&clock, vdso.vvar);
	check_guest_time_helper(&clock);
	check_gettimeofday_time_getcpu_getres();
	check_maybe_refresh(&clock, vdso.vvar);
	report_figures(&clock);

	munmap(vdso.reservation, vdso.reservation_size);
	free(vdso.file);
	if (vcpu_fd >= 0)
		close(vcpu_fd);
	printf("test_vdso: %d checks failed\n", failure_count);
	return failure_count ? 1 : 0;
}
