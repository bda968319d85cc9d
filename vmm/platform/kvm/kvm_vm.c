/* The KVM platform's VM objects (kvm_internal.h): KVM, one VM, its memory
 * and one vCPU set up to run a Linux program in 64-bit user mode with no
 * guest kernel, from scratch or from a snapshot, and the vCPU's state for
 * a snapshot.
 *
 * The guest runs only user-mode code.  Kernel mode exists for two things:
 * the `syscall` entry stub and the exception stubs, each a single `out`
 * that hands control to the VMM (guest_system.c builds them).  Nothing
 * here interprets guest input. */
#include "kvm_internal.h"

#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest_system.h"
#include "snap_state.h"

_Static_assert(sizeof(struct vmm_regs) == sizeof(struct kvm_regs), "vmm_regs mirrors kvm_regs");

int kvm_available(struct ember_error *err)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return ember_error_errno(err, errno, "open /dev/kvm");
	int version = ioctl(fd, KVM_GET_API_VERSION, 0);
	int vm_fd = version == KVM_API_VERSION ? ioctl(fd, KVM_CREATE_VM, 0) : -1;
	int saved = errno;
	close(fd);
	if (version != KVM_API_VERSION)
		return ember_error_set(err, "KVM API version %d, expected %d", version, KVM_API_VERSION);
	if (vm_fd < 0)
		return ember_error_errno(err, saved, "KVM_CREATE_VM");
	close(vm_fd);
	return 1;
}

/* KVM_GET_SUPPORTED_CPUID costs about 0.3 ms here, as much as creating the
 * VM: it runs on a helper thread while the VM and vCPU are created. */
struct cpuid_query {
	int kvm_fd;
	struct kvm_cpuid2 *table;
	int error; /* errno of the ioctl, 0 on success */
};

enum { CPUID_MAX_ENTRIES = 256 };

static void *query_supported_cpuid(void *arg)
{
	struct cpuid_query *query = arg;
	query->table->nent = CPUID_MAX_ENTRIES;
	if (ioctl(query->kvm_fd, KVM_GET_SUPPORTED_CPUID, query->table) < 0)
		query->error = errno;
	return NULL;
}

static int setup_cpuid(struct kvm_vm_state *st, struct cpuid_query *query, struct ember_error *err)
{
	if (query->error)
		return ember_error_errno(err, query->error, "KVM_GET_SUPPORTED_CPUID");
	if (ioctl(st->vcpu_fd, KVM_SET_CPUID2, query->table) < 0)
		return ember_error_errno(err, errno, "KVM_SET_CPUID2");
	return 0;
}

static int setup_xcr0(struct kvm_vm_state *st, struct ember_error *err)
{
	uint64_t xcr0 = vmm_guest_system_xcr0();
	if (!xcr0)
		return 0;
	struct kvm_xcrs xcrs = {.nr_xcrs = 1, .xcrs = {{.xcr = 0, .value = xcr0}}};
	if (ioctl(st->vcpu_fd, KVM_SET_XCRS, &xcrs) < 0)
		return ember_error_errno(err, errno, "KVM_SET_XCRS (xcr0=%#llx)", (unsigned long long)xcr0);
	return 0;
}

static int setup_special_registers(struct vmm_vm *vm, struct ember_error *err)
{
	struct kvm_vm_state *st = kvm_state(vm);
	struct kvm_sregs sregs;
	if (ioctl(st->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return ember_error_errno(err, errno, "KVM_GET_SREGS");
	vmm_guest_system_sregs(&sregs, vm->has_fsgsbase);
	if (ioctl(st->vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return ember_error_errno(err, errno, "KVM_SET_SREGS");
	return 0;
}

static int setup_msrs(struct kvm_vm_state *st, struct ember_error *err)
{
	struct {
		struct kvm_msrs header;
		struct kvm_msr_entry entries[GUEST_SYSTEM_MSR_COUNT];
	} msrs = {.header = {.nmsrs = GUEST_SYSTEM_MSR_COUNT}};
	vmm_guest_system_msrs(msrs.entries, 0, 0);
	int n = ioctl(st->vcpu_fd, KVM_SET_MSRS, &msrs);
	if (n != GUEST_SYSTEM_MSR_COUNT)
		return ember_error_errno(err, n < 0 ? errno : EINVAL, "KVM_SET_MSRS (set %d of %d)", n,
					 GUEST_SYSTEM_MSR_COUNT);
	return 0;
}

/* The part of creating a VM that fresh VMs and restored ones share: KVM,
 * the VM, guest memory (anonymous, or `mem_fd` mapped copy-on-write), the
 * vCPU and its run page.  Starts the CPUID query when `query` is given. */
static int create_kvm_objects(struct vmm_vm *vm, int mem_fd, struct cpuid_query *query,
			      pthread_t *cpuid_thread, bool *cpuid_thread_running, struct ember_error *err)
{
	struct kvm_vm_state *st = calloc(1, sizeof *st);
	if (!st)
		return ember_error_set(err, "allocate the VM: out of memory");
	vm->impl = st;
	st->kvm_fd = st->vm_fd = st->vcpu_fd = -1;
	st->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (st->kvm_fd < 0)
		return ember_error_errno(err, errno, "open /dev/kvm");
	int version = ioctl(st->kvm_fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION)
		return ember_error_set(err, "KVM API version %d, expected %d", version, KVM_API_VERSION);
	if (query) {
		query->kvm_fd = st->kvm_fd;
		query->table = calloc(1, sizeof(struct kvm_cpuid2) +
						 CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
		if (!query->table)
			return ember_error_set(err, "allocate the CPUID table: out of memory");
		if (pthread_create(cpuid_thread, NULL, query_supported_cpuid, query) != 0)
			query_supported_cpuid(query); /* no thread: do it here */
		else
			*cpuid_thread_running = true;
	}
	st->vm_fd = ioctl(st->kvm_fd, KVM_CREATE_VM, 0);
	if (st->vm_fd < 0)
		return ember_error_errno(err, errno, "KVM_CREATE_VM");
	if (mem_fd >= 0)
		st->mem = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE,
			       mem_fd, 0);
	else
		st->mem = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (st->mem == MAP_FAILED) {
		st->mem = NULL;
		return ember_error_errno(err, errno, "map %llu MiB of guest memory",
					 (unsigned long long)(vm->mem_size >> 20));
	}
	vm->direct = st->mem;
	vm->memory_from_file = mem_fd >= 0;
	/* Huge host pages for fresh program memory: one fault per 2 MiB instead
	 * of 512 first touches.  Not for the system pages, which are few. */
	if (mem_fd < 0)
		madvise(st->mem + GUEST_SYSTEM_END, vm->mem_size - GUEST_SYSTEM_END, MADV_HUGEPAGE);
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = vm->mem_size,
		.userspace_addr = (uint64_t)(uintptr_t)st->mem,
	};
	if (ioctl(st->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return ember_error_errno(err, errno, "KVM_SET_USER_MEMORY_REGION");
	st->vcpu_fd = ioctl(st->vm_fd, KVM_CREATE_VCPU, 0);
	if (st->vcpu_fd < 0)
		return ember_error_errno(err, errno, "KVM_CREATE_VCPU");
	int run_size = ioctl(st->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run))
		return ember_error_errno(err, errno, "KVM_GET_VCPU_MMAP_SIZE");
	st->run_size = (size_t)run_size;
	st->run = mmap(NULL, st->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, st->vcpu_fd, 0);
	if (st->run == MAP_FAILED) {
		st->run = NULL;
		return ember_error_errno(err, errno, "map the vCPU run page");
	}
	int sync = ioctl(st->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
	st->sync_regs = sync > 0 && (sync & KVM_SYNC_X86_REGS);
	if (st->sync_regs)
		st->run->kvm_valid_regs = KVM_SYNC_X86_REGS;
	unsigned eax, ebx, ecx, edx;
	__cpuid_count(7, 0, eax, ebx, ecx, edx);
	vm->has_fsgsbase = ebx & 1;
	return 0;
}

static void set_clock_page(struct vmm_vm *vm)
{
	vm->vvar = (struct vmm_vvar *)(kvm_state(vm)->mem + GUEST_VVAR_ADDR);
}

int kvm_create(struct vmm_vm *vm, const void *vdso, size_t vdso_size, struct ember_error *err)
{
	struct cpuid_query query = {.kvm_fd = -1};
	pthread_t cpuid_thread;
	bool cpuid_thread_running = false;
	if (create_kvm_objects(vm, -1, &query, &cpuid_thread, &cpuid_thread_running, err) < 0)
		goto fail;
	struct kvm_vm_state *st = kvm_state(vm);
	vmm_guest_system_build(st->mem, vm->mem_size);
	memcpy(st->mem + GUEST_VDSO_ADDR, vdso, vdso_size);
	set_clock_page(vm);

	if (cpuid_thread_running) {
		pthread_join(cpuid_thread, NULL);
		cpuid_thread_running = false;
	}
	if (setup_cpuid(st, &query, err) < 0 || setup_special_registers(vm, err) < 0 ||
	    setup_xcr0(st, err) < 0 || setup_msrs(st, err) < 0)
		goto fail;
	st->cpuid = query.table; /* kept: a snapshot records it */
	return 0;
fail:
	if (cpuid_thread_running)
		pthread_join(cpuid_thread, NULL);
	free(query.table);
	ember_error_wrap(err, "create KVM virtual machine");
	kvm_destroy(vm);
	return -1;
}

/* A snapshot taken on a platform without KVM records no CPUID table: the
 * VM gets the host's supported one, as a fresh VM does. */
static struct kvm_cpuid2 *restored_cpuid(struct kvm_vm_state *st, const struct snap_vcpu *state,
					 struct ember_error *err)
{
	if (state->cpuid_count == 0) {
		struct cpuid_query query = {.kvm_fd = st->kvm_fd};
		query.table = calloc(1, sizeof(struct kvm_cpuid2) +
						CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
		if (!query.table)
			return ember_error_set(err, "allocate the CPUID table: out of memory"), NULL;
		query_supported_cpuid(&query);
		if (query.error) {
			free(query.table);
			return ember_error_errno(err, query.error, "KVM_GET_SUPPORTED_CPUID"), NULL;
		}
		return query.table;
	}
	size_t size = sizeof(struct kvm_cpuid2) + state->cpuid_count * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *table = calloc(1, size);
	if (!table)
		return ember_error_set(err, "allocate the CPUID table: out of memory"), NULL;
	table->nent = state->cpuid_count;
	memcpy(table->entries, state->cpuid, state->cpuid_count * sizeof(struct kvm_cpuid_entry2));
	return table;
}

int kvm_restore(struct vmm_vm *vm, int mem_fd, const struct snap_vcpu *state, struct ember_error *err)
{
	if (create_kvm_objects(vm, mem_fd, NULL, NULL, NULL, err) < 0)
		goto fail;
	struct kvm_vm_state *st = kvm_state(vm);
	set_clock_page(vm);
	st->cpuid = restored_cpuid(st, state, err);
	if (!st->cpuid)
		goto fail;
	struct {
		struct kvm_msrs header;
		struct kvm_msr_entry entries[SNAP_MAX_MSRS];
	} msrs;
	memset(&msrs, 0, sizeof msrs);
	msrs.header.nmsrs = state->msr_count;
	for (uint32_t i = 0; i < state->msr_count; i++) {
		msrs.entries[i].index = state->msrs[i].index;
		msrs.entries[i].data = state->msrs[i].data;
	}
	struct kvm_xsave xsave = state->xsave;
	struct kvm_xcrs xcrs = state->xcrs;
	struct kvm_sregs sregs = state->sregs;
	struct kvm_regs regs = state->regs;
	if (ioctl(st->vcpu_fd, KVM_SET_CPUID2, st->cpuid) < 0)
		ember_error_errno(err, errno, "KVM_SET_CPUID2");
	else if (ioctl(st->vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		ember_error_errno(err, errno, "KVM_SET_SREGS");
	else if (ioctl(st->vcpu_fd, KVM_SET_XCRS, &xcrs) < 0)
		ember_error_errno(err, errno, "KVM_SET_XCRS");
	else if (ioctl(st->vcpu_fd, KVM_SET_XSAVE, &xsave) < 0)
		ember_error_errno(err, errno, "KVM_SET_XSAVE");
	else if (ioctl(st->vcpu_fd, KVM_SET_MSRS, &msrs) != (int)state->msr_count)
		ember_error_set(err, "KVM_SET_MSRS refused a saved MSR");
	else if (ioctl(st->vcpu_fd, KVM_SET_REGS, &regs) < 0)
		ember_error_errno(err, errno, "KVM_SET_REGS");
	else {
		memcpy(&vm->regs, &regs, sizeof regs);
		vm->regs_dirty = false;
		return 0;
	}
fail:
	ember_error_wrap(err, "restore KVM virtual machine");
	kvm_destroy(vm);
	return -1;
}

int kvm_save(struct vmm_vm *vm, struct snap_vcpu *state, struct snap_cpu_identity *cpu,
	     struct ember_error *err)
{
	struct kvm_vm_state *st = kvm_state(vm);
	/* Complete whatever the last exit left pending (an `out` not yet
	 * retired) and push changed registers, without entering the guest. */
	if (kvm_flush_regs(vm, err) < 0)
		return -1;
	st->run->immediate_exit = 1;
	int rc = ioctl(st->vcpu_fd, KVM_RUN, 0);
	st->run->immediate_exit = 0;
	if (rc == 0 || (errno != EINTR && errno != EAGAIN))
		return ember_error_errno(err, rc == 0 ? EPROTO : errno, "settle the vCPU before saving");
	memset(state, 0, sizeof *state);
	static const uint32_t saved_msrs[GUEST_SYSTEM_MSR_COUNT] = {
		MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SFMASK, MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE};
	struct {
		struct kvm_msrs header;
		struct kvm_msr_entry entries[GUEST_SYSTEM_MSR_COUNT];
	} msrs;
	memset(&msrs, 0, sizeof msrs);
	msrs.header.nmsrs = GUEST_SYSTEM_MSR_COUNT;
	for (int i = 0; i < GUEST_SYSTEM_MSR_COUNT; i++)
		msrs.entries[i].index = saved_msrs[i];
	if (ioctl(st->vcpu_fd, KVM_GET_REGS, &state->regs) < 0)
		return ember_error_errno(err, errno, "KVM_GET_REGS");
	if (ioctl(st->vcpu_fd, KVM_GET_SREGS, &state->sregs) < 0)
		return ember_error_errno(err, errno, "KVM_GET_SREGS");
	if (ioctl(st->vcpu_fd, KVM_GET_XSAVE, &state->xsave) < 0)
		return ember_error_errno(err, errno, "KVM_GET_XSAVE");
	if (ioctl(st->vcpu_fd, KVM_GET_XCRS, &state->xcrs) < 0)
		return ember_error_errno(err, errno, "KVM_GET_XCRS");
	if (ioctl(st->vcpu_fd, KVM_GET_MSRS, &msrs) != GUEST_SYSTEM_MSR_COUNT)
		return ember_error_errno(err, errno, "KVM_GET_MSRS");
	state->msr_count = GUEST_SYSTEM_MSR_COUNT;
	for (int i = 0; i < GUEST_SYSTEM_MSR_COUNT; i++) {
		state->msrs[i].index = msrs.entries[i].index;
		state->msrs[i].data = msrs.entries[i].data;
	}
	state->cpuid_count = st->cpuid ? st->cpuid->nent : 0;
	if (state->cpuid_count > SNAP_MAX_CPUID)
		return ember_error_set(err, "CPUID table of %u entries is too large to save",
				       state->cpuid_count);
	if (state->cpuid_count)
		memcpy(state->cpuid, st->cpuid->entries,
		       state->cpuid_count * sizeof(struct kvm_cpuid_entry2));
	cpu->stub_user_mode = st->stub_runs_in_user_mode;
	memcpy(&vm->regs, &state->regs, sizeof vm->regs);
	vm->regs_dirty = false;
	if (st->sync_regs)
		st->run->s.regs.regs = state->regs;
	return 0;
}

/* The page toucher: for rcx pages from rdi, reads a byte of each and, if
 * rdx is non-zero, writes it back unchanged; then exits to the VMM.
 *   0: mov (%rdi),%al   2: test %rdx,%rdx   5: jz 9   7: mov %al,(%rdi)
 *   9: add $0x1000,%rdi 16: dec %rcx        19: jnz 0 21: out %al,$0x10
 *  23: hlt */
static const uint8_t toucher_code[] = {
	0x8a, 0x07, 0x48, 0x85, 0xd2, 0x74, 0x02, 0x88, 0x07, 0x48, 0x81,         0xc7,
	0x00, 0x10, 0x00, 0x00, 0x48, 0xff, 0xc9, 0x75, 0xeb, 0xe6, PORT_SYSCALL, 0xf4,
};
#define TOUCHER_OUT_OFFSET 21

int kvm_guest_touch(struct vmm_vm *vm, const struct vmm_touch_range *ranges, size_t count)
{
	struct kvm_vm_state *st = kvm_state(vm);
	struct kvm_regs saved;
	struct kvm_sregs sregs;
	if (count == 0)
		return 0;
	if (ioctl(st->vcpu_fd, KVM_GET_REGS, &saved) < 0 || ioctl(st->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -1;
	if ((sregs.cs.selector & 3) != 3)
		return 0; /* stopped in kernel mode (at a stub): leave it be */
	memcpy(st->mem + GUEST_STUB_ADDR + GUEST_STUB_TOUCH_OFFSET, toucher_code, sizeof toucher_code);
	uint64_t out_at = GUEST_STUB_ADDR + GUEST_STUB_TOUCH_OFFSET + TOUCHER_OUT_OFFSET;
	int rc = 0;
	for (size_t i = 0; i < count && rc == 0; i++) {
		if (ranges[i].first < GUEST_SYSTEM_END / GUEST_PAGE_SIZE || ranges[i].pages == 0 ||
		    ranges[i].first + ranges[i].pages > vm->mem_size / GUEST_PAGE_SIZE)
			continue; /* only program memory */
		struct kvm_regs r = saved;
		r.rip = GUEST_STUB_ADDR + GUEST_STUB_TOUCH_OFFSET;
		r.rdi = ranges[i].first * GUEST_PAGE_SIZE;
		r.rcx = ranges[i].pages;
		r.rdx = ranges[i].write;
		r.rflags = 0x2;
		if (ioctl(st->vcpu_fd, KVM_SET_REGS, &r) < 0 || ioctl(st->vcpu_fd, KVM_RUN, 0) < 0) {
			rc = -1;
			break;
		}
		struct kvm_regs after;
		ioctl(st->vcpu_fd, KVM_GET_REGS, &after);
		if (st->run->exit_reason != KVM_EXIT_IO || st->run->io.port != PORT_SYSCALL ||
		    (after.rip != out_at && after.rip != out_at + 2))
			rc = -1; /* a fault or anything unexpected: stop touching */
	}
	/* Back to exactly where the snapshot left the guest. */
	if (ioctl(st->vcpu_fd, KVM_SET_REGS, &saved) < 0)
		return -1;
	memcpy(&vm->regs, &saved, sizeof saved);
	vm->regs_dirty = false;
	if (st->sync_regs) {
		st->run->s.regs.regs = saved;
		st->run->kvm_dirty_regs = 0;
	}
	return rc;
}

void kvm_destroy(struct vmm_vm *vm)
{
	struct kvm_vm_state *st = kvm_state(vm);
	if (!st)
		return;
	free(st->cpuid);
	if (st->run)
		munmap(st->run, st->run_size);
	if (st->mem)
		munmap(st->mem, vm->mem_size);
	if (st->vcpu_fd >= 0)
		close(st->vcpu_fd);
	if (st->vm_fd >= 0)
		close(st->vm_fd);
	if (st->kvm_fd >= 0)
		close(st->kvm_fd);
	free(st);
	vm->impl = NULL;
	vm->direct = NULL;
	vm->vvar = NULL;
}

int kvm_set_segment_base(struct vmm_vm *vm, bool gs, uint64_t base, struct ember_error *err)
{
	struct {
		struct kvm_msrs header;
		struct kvm_msr_entry entry;
	} msrs = {.header = {.nmsrs = 1}, .entry = {.index = gs ? MSR_GS_BASE : MSR_FS_BASE, .data = base}};
	if (ioctl(kvm_state(vm)->vcpu_fd, KVM_SET_MSRS, &msrs) != 1)
		return ember_error_errno(err, errno, "set %s base", gs ? "GS" : "FS");
	return 0;
}

int kvm_set_entry(struct vmm_vm *vm, uint64_t rip, uint64_t rsp, struct ember_error *err)
{
	struct kvm_regs regs = {.rip = rip, .rsp = rsp, .rflags = 0x202};
	if (ioctl(kvm_state(vm)->vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return ember_error_errno(err, errno, "KVM_SET_REGS");
	memcpy(&vm->regs, &regs, sizeof regs);
	vm->regs_dirty = false;
	return 0;
}
