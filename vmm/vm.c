/* KVM set-up for a kernel-less microVM: memory, one vCPU in 64-bit user
 * mode, and the handful of system structures the CPU insists on.
 *
 * The guest runs only user-mode code.  Kernel mode exists for two things:
 * the `syscall` entry stub and the exception stubs, each a single `out`
 * that hands control to the VMM.  Nothing here interprets guest input;
 * vmm_gpa() is the one checked door into guest memory. */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cpuid.h>

#include "guest_layout.h"
#include "snap_state.h"

#define PTE_PRESENT  0x1ULL
#define PTE_WRITE    0x2ULL
#define PTE_USER     0x4ULL
#define PTE_ACCESSED 0x20ULL
#define PTE_DIRTY    0x40ULL
#define PTE_LARGE    0x80ULL

#define CR0_PE         0x1ULL
#define CR0_MP         0x2ULL
#define CR0_ET         0x10ULL
#define CR0_NE         0x20ULL
#define CR0_WP         0x10000ULL
#define CR0_AM         0x40000ULL
#define CR0_PG         0x80000000ULL
#define CR4_PAE        0x20ULL
#define CR4_OSFXSR     0x200ULL
#define CR4_OSXMMEXCPT 0x400ULL
#define CR4_FSGSBASE   0x10000ULL
#define CR4_OSXSAVE    0x40000ULL
#define EFER_SCE       0x1ULL
#define EFER_LME       0x100ULL
#define EFER_LMA       0x400ULL
#define EFER_NXE       0x800ULL

#define MSR_STAR           0xc0000081
#define MSR_LSTAR          0xc0000082
#define MSR_CSTAR          0xc0000083
#define MSR_SFMASK         0xc0000084
#define MSR_FS_BASE        0xc0000100
#define MSR_GS_BASE        0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102

/* RFLAGS bits cleared on `syscall`: TF, IF, DF, IOPL, NT, AC. */
#define SYSCALL_FLAG_MASK 0x47700ULL

/* Exceptions Linux lets user code raise with `int n`: #BP (int3) and #OF. */
#define VECTOR_BREAKPOINT 3
#define VECTOR_OVERFLOW   4

/* The TSS proper is 0x68 bytes; the I/O bitmap (ports 0..63) follows. */
#define TSS_IOMAP_OFFSET 0x68
#define TSS_IOMAP_BYTES  8
#define TSS_LIMIT        (TSS_IOMAP_OFFSET + TSS_IOMAP_BYTES)

void *vmm_gpa_system(struct vmm_vm *vm, uint64_t addr, uint64_t len)
{
	if (addr > vm->mem_size || len > vm->mem_size - addr)
		return NULL;
	return vm->mem + addr;
}

void *vmm_gpa(struct vmm_vm *vm, uint64_t addr, uint64_t len)
{
	if (addr < GUEST_SYSTEM_END)
		return NULL;
	return vmm_gpa_system(vm, addr, len);
}

static void write_u64(struct vmm_vm *vm, uint64_t addr, uint64_t value)
{
	memcpy(vmm_gpa_system(vm, addr, 8), &value, 8);
}

static void build_page_tables(struct vmm_vm *vm)
{
	uint64_t table = PTE_PRESENT | PTE_WRITE | PTE_USER;
	write_u64(vm, GUEST_PML4_ADDR, GUEST_PDPT_ADDR | table);
	uint64_t gigabytes = (vm->mem_size + (1ULL << 30) - 1) >> 30;
	for (uint64_t i = 0; i < gigabytes; i++)
		write_u64(vm, GUEST_PDPT_ADDR + 8 * i, (GUEST_PD_ADDR + GUEST_PAGE_SIZE * i) | table);

	/* The first 2 MiB: 4 KiB pages with per-page rights. */
	write_u64(vm, GUEST_PD_ADDR, GUEST_LOW_PT_ADDR | table);
	uint64_t supervisor = PTE_PRESENT | PTE_WRITE | PTE_ACCESSED | PTE_DIRTY;
	uint64_t user_readonly = PTE_PRESENT | PTE_USER | PTE_ACCESSED;
	for (uint64_t page = GUEST_PML4_ADDR; page < GUEST_STUB_ADDR; page += GUEST_PAGE_SIZE)
		write_u64(vm, GUEST_LOW_PT_ADDR + 8 * (page >> 12), page | supervisor);
	for (uint64_t page = GUEST_STUB_ADDR; page < GUEST_VDSO_ADDR + GUEST_VDSO_MAX_SIZE;
	     page += GUEST_PAGE_SIZE)
		write_u64(vm, GUEST_LOW_PT_ADDR + 8 * (page >> 12), page | user_readonly);

	/* Program memory: 2 MiB pages, user read/write/execute. */
	uint64_t user_large = PTE_PRESENT | PTE_WRITE | PTE_USER | PTE_ACCESSED | PTE_DIRTY | PTE_LARGE;
	for (uint64_t addr = GUEST_SYSTEM_END; addr < vm->mem_size; addr += GUEST_LARGE_PAGE_SIZE)
		write_u64(vm, GUEST_PD_ADDR + 8 * (addr >> 21), addr | user_large);
}

static uint64_t segment_descriptor(uint64_t flags_and_access)
{
	return flags_and_access | 0xffffULL | (0xfULL << 48);
}

static void build_gdt_tss_idt(struct vmm_vm *vm)
{
	/* Access byte at bits 40..47, flags (G, D/B, L) at 52..55. */
	write_u64(vm, GUEST_GDT_ADDR + GUEST_SEL_KERNEL_CS, segment_descriptor(0x00a09b0000000000ULL));
	write_u64(vm, GUEST_GDT_ADDR + GUEST_SEL_KERNEL_DS, segment_descriptor(0x00c0930000000000ULL));
	write_u64(vm, GUEST_GDT_ADDR + 0x20, segment_descriptor(0x00c0fb0000000000ULL)); /* user 32 */
	write_u64(vm, GUEST_GDT_ADDR + (GUEST_SEL_USER_DS & ~3), segment_descriptor(0x00c0f30000000000ULL));
	write_u64(vm, GUEST_GDT_ADDR + (GUEST_SEL_USER_CS & ~3), segment_descriptor(0x00a0fb0000000000ULL));

	/* The TSS ends with an I/O permission bitmap covering ports 0..63 and
	 * allowing only the exit ports: under PVM the stubs run with a user
	 * CS, so their `out` passes this check like user code's does. */
	uint64_t tss = GUEST_TSS_ADDR, limit = TSS_LIMIT;
	uint64_t tss_low =
		(limit & 0xffff) | ((tss & 0xffffff) << 16) | (0x89ULL << 40) | (((tss >> 24) & 0xff) << 56);
	write_u64(vm, GUEST_GDT_ADDR + GUEST_SEL_TSS, tss_low);
	write_u64(vm, GUEST_GDT_ADDR + GUEST_SEL_TSS + 8, tss >> 32);
	write_u64(vm, GUEST_TSS_ADDR + 4, GUEST_KSTACK_TOP); /* RSP0 */
	uint16_t iomap_base = TSS_IOMAP_OFFSET;
	memcpy(vmm_gpa_system(vm, GUEST_TSS_ADDR + 0x66, 2), &iomap_base, 2);
	uint8_t *iomap = vmm_gpa_system(vm, GUEST_TSS_ADDR + TSS_IOMAP_OFFSET, TSS_IOMAP_BYTES + 1);
	memset(iomap, 0xff, TSS_IOMAP_BYTES + 1); /* trailing 0xff byte is required */
	iomap[PORT_SYSCALL / 8] &= (uint8_t) ~(1u << (PORT_SYSCALL % 8));
	for (unsigned port = PORT_EXCEPTION_BASE; port < PORT_EXCEPTION_BASE + 32; port++)
		iomap[port / 8] &= (uint8_t) ~(1u << (port % 8));

	/* IDT: vectors 0..31 point at their exit stubs; the rest are absent. */
	for (uint64_t vector = 0; vector < 32; vector++) {
		uint64_t handler =
			GUEST_STUB_ADDR + GUEST_STUB_EXCEPTION_OFFSET + GUEST_STUB_EXCEPTION_STRIDE * vector;
		uint64_t dpl = (vector == VECTOR_BREAKPOINT || vector == VECTOR_OVERFLOW) ? 3 : 0;
		uint64_t low = (handler & 0xffff) | ((uint64_t)GUEST_SEL_KERNEL_CS << 16) |
			       ((0x8eULL | (dpl << 5)) << 40) | (((handler >> 16) & 0xffff) << 48);
		write_u64(vm, GUEST_IDT_ADDR + 16 * vector, low);
		write_u64(vm, GUEST_IDT_ADDR + 16 * vector + 8, handler >> 32);
	}

	/* Stubs: `out %al, $port` then `sysretq` (syscall) or `hlt` (exceptions). */
	uint8_t *stub = vmm_gpa_system(vm, GUEST_STUB_ADDR, GUEST_PAGE_SIZE);
	memset(stub, 0xf4, GUEST_PAGE_SIZE); /* hlt everywhere else */
	const uint8_t syscall_stub[] = {0xe6, PORT_SYSCALL, 0x48, 0x0f, 0x07};
	memcpy(stub + GUEST_STUB_SYSCALL_OFFSET, syscall_stub, sizeof syscall_stub);
	for (unsigned vector = 0; vector < 32; vector++) {
		uint8_t *p = stub + GUEST_STUB_EXCEPTION_OFFSET + GUEST_STUB_EXCEPTION_STRIDE * vector;
		p[0] = 0xe6;
		p[1] = (uint8_t)(PORT_EXCEPTION_BASE + vector);
	}
}

static struct kvm_segment user_segment(uint16_t selector, uint8_t type, bool code)
{
	struct kvm_segment s = {
		.base = 0,
		.limit = 0xffffffff,
		.selector = selector,
		.type = type,
		.present = 1,
		.dpl = 3,
		.db = code ? 0 : 1,
		.s = 1,
		.l = code ? 1 : 0,
		.g = 1,
	};
	return s;
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

static int setup_cpuid(struct vmm_vm *vm, struct cpuid_query *query, struct ember_error *err)
{
	if (query->error)
		return ember_error_errno(err, query->error, "KVM_GET_SUPPORTED_CPUID");
	if (ioctl(vm->vcpu_fd, KVM_SET_CPUID2, query->table) < 0)
		return ember_error_errno(err, errno, "KVM_SET_CPUID2");
	return 0;
}

static int setup_xcr0(struct vmm_vm *vm, struct ember_error *err)
{
	unsigned eax, ebx, ecx, edx;
	if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE))
		return 0;
	__cpuid_count(0xd, 0, eax, ebx, ecx, edx);
	/* x87, SSE, AVX and the AVX-512 states: what user code may use. */
	uint64_t xcr0 = (((uint64_t)edx << 32) | eax) & 0xe7ULL;
	struct kvm_xcrs xcrs = {.nr_xcrs = 1, .xcrs = {{.xcr = 0, .value = xcr0}}};
	if (ioctl(vm->vcpu_fd, KVM_SET_XCRS, &xcrs) < 0)
		return ember_error_errno(err, errno, "KVM_SET_XCRS (xcr0=%#llx)", (unsigned long long)xcr0);
	return 0;
}

static int setup_special_registers(struct vmm_vm *vm, struct ember_error *err)
{
	struct kvm_sregs sregs;
	if (ioctl(vm->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return ember_error_errno(err, errno, "KVM_GET_SREGS");
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
	sregs.cr3 = GUEST_PML4_ADDR;
	sregs.cr4 =
		CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_OSXSAVE | (vm->has_fsgsbase ? CR4_FSGSBASE : 0);
	sregs.efer = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
	sregs.cs = user_segment(GUEST_SEL_USER_CS, 11, true);
	sregs.ss = user_segment(GUEST_SEL_USER_DS, 3, false);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss;
	sregs.gdt.base = GUEST_GDT_ADDR;
	sregs.gdt.limit = GUEST_SEL_TSS + 16 - 1;
	sregs.idt.base = GUEST_IDT_ADDR;
	sregs.idt.limit = 32 * 16 - 1;
	struct kvm_segment tr = {
		.base = GUEST_TSS_ADDR,
		.limit = TSS_LIMIT,
		.selector = GUEST_SEL_TSS,
		.type = 11,
		.present = 1,
		.s = 0,
	};
	sregs.tr = tr;
	struct kvm_segment ldt = {.selector = 0, .type = 2, .present = 0, .unusable = 1};
	sregs.ldt = ldt;
	if (ioctl(vm->vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return ember_error_errno(err, errno, "KVM_SET_SREGS");
	return 0;
}

static int setup_msrs(struct vmm_vm *vm, struct ember_error *err)
{
	struct {
		struct kvm_msrs header;
		struct kvm_msr_entry entries[7];
	} msrs = {
		.header = {.nmsrs = 7},
		.entries =
			{
				{.index = MSR_STAR,
				 .data = ((uint64_t)(GUEST_SEL_USER_CS - 16) << 48) |
					 ((uint64_t)GUEST_SEL_KERNEL_CS << 32)},
				{.index = MSR_LSTAR, .data = GUEST_STUB_ADDR + GUEST_STUB_SYSCALL_OFFSET},
				{.index = MSR_CSTAR, .data = GUEST_STUB_ADDR + GUEST_STUB_SYSCALL_OFFSET},
				{.index = MSR_SFMASK, .data = SYSCALL_FLAG_MASK},
				{.index = MSR_FS_BASE, .data = 0},
				{.index = MSR_GS_BASE, .data = 0},
				{.index = MSR_KERNEL_GS_BASE, .data = 0},
			},
	};
	int n = ioctl(vm->vcpu_fd, KVM_SET_MSRS, &msrs);
	if (n != 7)
		return ember_error_errno(err, n < 0 ? errno : EINVAL, "KVM_SET_MSRS (set %d of 7)", n);
	return 0;
}

/* The part of creating a VM that fresh VMs and restored ones share: KVM,
 * the VM, guest memory (anonymous, or `mem_fd` mapped copy-on-write), the
 * vCPU and its run page.  Starts the CPUID query when `query` is given. */
static int create_kvm_objects(struct vmm_vm *vm, int mem_fd, struct cpuid_query *query,
			      pthread_t *cpuid_thread, bool *cpuid_thread_running, struct ember_error *err)
{
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return ember_error_errno(err, errno, "open /dev/kvm");
	int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION)
		return ember_error_set(err, "KVM API version %d, expected %d", version, KVM_API_VERSION);
	if (query) {
		query->kvm_fd = vm->kvm_fd;
		query->table = calloc(1, sizeof(struct kvm_cpuid2) +
						 CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
		if (!query->table)
			return ember_error_set(err, "allocate the CPUID table: out of memory");
		if (pthread_create(cpuid_thread, NULL, query_supported_cpuid, query) != 0)
			query_supported_cpuid(query); /* no thread: do it here */
		else
			*cpuid_thread_running = true;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return ember_error_errno(err, errno, "KVM_CREATE_VM");
	if (mem_fd >= 0)
		vm->mem = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE,
			       mem_fd, 0);
	else
		vm->mem = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->mem == MAP_FAILED) {
		vm->mem = NULL;
		return ember_error_errno(err, errno, "map %llu MiB of guest memory",
					 (unsigned long long)(vm->mem_size >> 20));
	}
	vm->memory_from_file = mem_fd >= 0;
	/* Huge host pages for fresh program memory: one fault per 2 MiB instead
	 * of 512 first touches.  Not for the system pages, which are few. */
	if (mem_fd < 0)
		madvise(vm->mem + GUEST_SYSTEM_END, vm->mem_size - GUEST_SYSTEM_END, MADV_HUGEPAGE);
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = vm->mem_size,
		.userspace_addr = (uint64_t)(uintptr_t)vm->mem,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return ember_error_errno(err, errno, "KVM_SET_USER_MEMORY_REGION");
	vm->vcpu_fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, 0);
	if (vm->vcpu_fd < 0)
		return ember_error_errno(err, errno, "KVM_CREATE_VCPU");
	int run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run))
		return ember_error_errno(err, errno, "KVM_GET_VCPU_MMAP_SIZE");
	vm->run_size = (size_t)run_size;
	vm->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu_fd, 0);
	if (vm->run == MAP_FAILED) {
		vm->run = NULL;
		return ember_error_errno(err, errno, "map the vCPU run page");
	}
	int sync = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
	vm->sync_regs = sync > 0 && (sync & KVM_SYNC_X86_REGS);
	if (vm->sync_regs)
		vm->run->kvm_valid_regs = KVM_SYNC_X86_REGS;
	unsigned eax, ebx, ecx, edx;
	__cpuid_count(7, 0, eax, ebx, ecx, edx);
	vm->has_fsgsbase = ebx & 1;
	return 0;
}

int vmm_vm_create(struct vmm_vm *vm, uint64_t mem_size, const void *vdso, size_t vdso_size,
		  struct ember_error *err)
{
	memset(vm, 0, sizeof *vm);
	vm->kvm_fd = vm->vm_fd = vm->vcpu_fd = -1;
	struct cpuid_query query = {.kvm_fd = -1};
	pthread_t cpuid_thread;
	bool cpuid_thread_running = false;
	if (mem_size < GUEST_MEM_MIN || mem_size > GUEST_MEM_MAX)
		return ember_error_set(err, "guest memory of %llu MiB is outside 16 MiB..16 GiB",
				       (unsigned long long)(mem_size >> 20));
	if (vdso_size > GUEST_VDSO_MAX_SIZE)
		return ember_error_set(err, "vDSO image of %zu bytes exceeds its %llu-byte slot", vdso_size,
				       GUEST_VDSO_MAX_SIZE);
	vm->mem_size = (mem_size + GUEST_LARGE_PAGE_SIZE - 1) & ~(GUEST_LARGE_PAGE_SIZE - 1);
	if (create_kvm_objects(vm, -1, &query, &cpuid_thread, &cpuid_thread_running, err) < 0)
		goto fail;

	build_page_tables(vm);
	build_gdt_tss_idt(vm);
	memcpy(vmm_gpa_system(vm, GUEST_VDSO_ADDR, vdso_size), vdso, vdso_size);

	if (cpuid_thread_running) {
		pthread_join(cpuid_thread, NULL);
		cpuid_thread_running = false;
	}
	if (setup_cpuid(vm, &query, err) < 0 || setup_special_registers(vm, err) < 0 ||
	    setup_xcr0(vm, err) < 0 || setup_msrs(vm, err) < 0)
		goto fail;
	vm->cpuid = query.table; /* kept: a snapshot records it */
	return 0;
fail:
	if (cpuid_thread_running)
		pthread_join(cpuid_thread, NULL);
	free(query.table);
	ember_error_wrap(err, "create KVM virtual machine");
	vmm_vm_destroy(vm);
	return -1;
}

int vmm_vm_restore(struct vmm_vm *vm, int mem_fd, uint64_t mem_size, const struct snap_vcpu *state,
		   struct ember_error *err)
{
	memset(vm, 0, sizeof *vm);
	vm->kvm_fd = vm->vm_fd = vm->vcpu_fd = -1;
	vm->mem_size = mem_size;
	if (create_kvm_objects(vm, mem_fd, NULL, NULL, NULL, err) < 0)
		goto fail;
	size_t cpuid_size = sizeof(struct kvm_cpuid2) + state->cpuid_count * sizeof(struct kvm_cpuid_entry2);
	vm->cpuid = calloc(1, cpuid_size);
	if (!vm->cpuid) {
		ember_error_set(err, "allocate the CPUID table: out of memory");
		goto fail;
	}
	vm->cpuid->nent = state->cpuid_count;
	memcpy(vm->cpuid->entries, state->cpuid, state->cpuid_count * sizeof(struct kvm_cpuid_entry2));
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
	if (ioctl(vm->vcpu_fd, KVM_SET_CPUID2, vm->cpuid) < 0)
		ember_error_errno(err, errno, "KVM_SET_CPUID2");
	else if (ioctl(vm->vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		ember_error_errno(err, errno, "KVM_SET_SREGS");
	else if (ioctl(vm->vcpu_fd, KVM_SET_XCRS, &xcrs) < 0)
		ember_error_errno(err, errno, "KVM_SET_XCRS");
	else if (ioctl(vm->vcpu_fd, KVM_SET_XSAVE, &xsave) < 0)
		ember_error_errno(err, errno, "KVM_SET_XSAVE");
	else if (ioctl(vm->vcpu_fd, KVM_SET_MSRS, &msrs) != (int)state->msr_count)
		ember_error_set(err, "KVM_SET_MSRS refused a saved MSR");
	else if (ioctl(vm->vcpu_fd, KVM_SET_REGS, &regs) < 0)
		ember_error_errno(err, errno, "KVM_SET_REGS");
	else {
		vm->regs_cache = regs;
		return 0;
	}
fail:
	ember_error_wrap(err, "restore KVM virtual machine");
	vmm_vm_destroy(vm);
	return -1;
}

int vmm_vm_save_vcpu(struct vmm_vm *vm, struct snap_vcpu *state, struct ember_error *err)
{
	/* Complete whatever the last exit left pending (an `out` not yet
	 * retired) and push changed registers, without entering the guest. */
	vm->run->immediate_exit = 1;
	if (vmm_vm_flush_regs(vm, err) < 0)
		return -1;
	int rc = ioctl(vm->vcpu_fd, KVM_RUN, 0);
	vm->run->immediate_exit = 0;
	if (rc == 0 || (errno != EINTR && errno != EAGAIN))
		return ember_error_errno(err, rc == 0 ? EPROTO : errno, "settle the vCPU before saving");
	memset(state, 0, sizeof *state);
	static const uint32_t saved_msrs[] = {MSR_STAR,    MSR_LSTAR,   MSR_CSTAR,         MSR_SFMASK,
					      MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE};
	struct {
		struct kvm_msrs header;
		struct kvm_msr_entry entries[7];
	} msrs;
	memset(&msrs, 0, sizeof msrs);
	msrs.header.nmsrs = 7;
	for (int i = 0; i < 7; i++)
		msrs.entries[i].index = saved_msrs[i];
	if (ioctl(vm->vcpu_fd, KVM_GET_REGS, &state->regs) < 0)
		return ember_error_errno(err, errno, "KVM_GET_REGS");
	if (ioctl(vm->vcpu_fd, KVM_GET_SREGS, &state->sregs) < 0)
		return ember_error_errno(err, errno, "KVM_GET_SREGS");
	if (ioctl(vm->vcpu_fd, KVM_GET_XSAVE, &state->xsave) < 0)
		return ember_error_errno(err, errno, "KVM_GET_XSAVE");
	if (ioctl(vm->vcpu_fd, KVM_GET_XCRS, &state->xcrs) < 0)
		return ember_error_errno(err, errno, "KVM_GET_XCRS");
	if (ioctl(vm->vcpu_fd, KVM_GET_MSRS, &msrs) != 7)
		return ember_error_errno(err, errno, "KVM_GET_MSRS");
	state->msr_count = 7;
	for (int i = 0; i < 7; i++) {
		state->msrs[i].index = msrs.entries[i].index;
		state->msrs[i].data = msrs.entries[i].data;
	}
	state->cpuid_count = vm->cpuid ? vm->cpuid->nent : 0;
	if (state->cpuid_count > SNAP_MAX_CPUID)
		return ember_error_set(err, "CPUID table of %u entries is too large to save",
				       state->cpuid_count);
	if (state->cpuid_count)
		memcpy(state->cpuid, vm->cpuid->entries,
		       state->cpuid_count * sizeof(struct kvm_cpuid_entry2));
	vm->regs_cache = state->regs;
	if (vm->sync_regs)
		vm->run->s.regs.regs = state->regs;
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

int vmm_vm_guest_touch(struct vmm_vm *vm, const struct vmm_touch_range *ranges, size_t count)
{
	struct kvm_regs saved;
	struct kvm_sregs sregs;
	if (count == 0)
		return 0;
	if (ioctl(vm->vcpu_fd, KVM_GET_REGS, &saved) < 0 || ioctl(vm->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -1;
	if ((sregs.cs.selector & 3) != 3)
		return 0; /* stopped in kernel mode (at a stub): leave it be */
	uint8_t *stub = vmm_gpa_system(vm, GUEST_STUB_ADDR + GUEST_STUB_TOUCH_OFFSET, sizeof toucher_code);
	memcpy(stub, toucher_code, sizeof toucher_code);
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
		if (ioctl(vm->vcpu_fd, KVM_SET_REGS, &r) < 0 || ioctl(vm->vcpu_fd, KVM_RUN, 0) < 0) {
			rc = -1;
			break;
		}
		struct kvm_regs after;
		ioctl(vm->vcpu_fd, KVM_GET_REGS, &after);
		if (vm->run->exit_reason != KVM_EXIT_IO || vm->run->io.port != PORT_SYSCALL ||
		    (after.rip != out_at && after.rip != out_at + 2))
			rc = -1; /* a fault or anything unexpected: stop touching */
	}
	/* Back to exactly where the snapshot left the guest. */
	if (ioctl(vm->vcpu_fd, KVM_SET_REGS, &saved) < 0)
		return -1;
	vm->regs_cache = saved;
	if (vm->sync_regs) {
		vm->run->s.regs.regs = saved;
		vm->run->kvm_dirty_regs = 0;
	}
	return rc;
}

void vmm_vm_destroy(struct vmm_vm *vm)
{
	free(vm->cpuid);
	vm->cpuid = NULL;
	if (vm->run)
		munmap(vm->run, vm->run_size);
	if (vm->mem)
		munmap(vm->mem, vm->mem_size);
	if (vm->vcpu_fd >= 0)
		close(vm->vcpu_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->run = NULL;
	vm->mem = NULL;
	vm->kvm_fd = vm->vm_fd = vm->vcpu_fd = -1;
}

struct kvm_regs *vmm_vm_regs(struct vmm_vm *vm)
{
	return vm->sync_regs ? &vm->run->s.regs.regs : &vm->regs_cache;
}

void vmm_vm_regs_changed(struct vmm_vm *vm)
{
	if (vm->sync_regs)
		vm->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
	else
		vm->regs_dirty = true;
}

int vmm_vm_fetch_regs(struct vmm_vm *vm, struct ember_error *err)
{
	if (vm->sync_regs)
		return 0;
	if (ioctl(vm->vcpu_fd, KVM_GET_REGS, &vm->regs_cache) < 0)
		return ember_error_errno(err, errno, "KVM_GET_REGS");
	return 0;
}

int vmm_vm_flush_regs(struct vmm_vm *vm, struct ember_error *err)
{
	if (vm->sync_regs || !vm->regs_dirty)
		return 0;
	if (ioctl(vm->vcpu_fd, KVM_SET_REGS, &vm->regs_cache) < 0)
		return ember_error_errno(err, errno, "KVM_SET_REGS");
	vm->regs_dirty = false;
	return 0;
}

int vmm_vm_get_sregs(struct vmm_vm *vm, struct kvm_sregs *sregs, struct ember_error *err)
{
	if (ioctl(vm->vcpu_fd, KVM_GET_SREGS, sregs) < 0)
		return ember_error_errno(err, errno, "KVM_GET_SREGS");
	return 0;
}

int vmm_vm_set_segment_base(struct vmm_vm *vm, bool gs, uint64_t base, struct ember_error *err)
{
	struct {
		struct kvm_msrs header;
		struct kvm_msr_entry entry;
	} msrs = {.header = {.nmsrs = 1}, .entry = {.index = gs ? MSR_GS_BASE : MSR_FS_BASE, .data = base}};
	if (ioctl(vm->vcpu_fd, KVM_SET_MSRS, &msrs) != 1)
		return ember_error_errno(err, errno, "set %s base", gs ? "GS" : "FS");
	return 0;
}

int vmm_vm_set_user_entry(struct vmm_vm *vm, uint64_t rip, uint64_t rsp, struct ember_error *err)
{
	struct kvm_regs regs = {.rip = rip, .rsp = rsp, .rflags = 0x202};
	if (ioctl(vm->vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return ember_error_errno(err, errno, "KVM_SET_REGS");
	vm->regs_cache = regs;
	return 0;
}
