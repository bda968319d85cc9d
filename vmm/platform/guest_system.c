/* The system pages and system registers of guest_system.h.  Nothing here
 * reads guest input: it only lays out the VMM's own structures. */
#include "guest_system.h"

#include <cpuid.h>
#include <string.h>

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

/* RFLAGS bits cleared on `syscall`: TF, IF, DF, IOPL, NT, AC. */
#define SYSCALL_FLAG_MASK 0x47700ULL

/* Exceptions Linux lets user code raise with `int n`: #BP (int3) and #OF. */
#define VECTOR_BREAKPOINT 3
#define VECTOR_OVERFLOW   4

/* The TSS proper is 0x68 bytes; the I/O bitmap (ports 0..63) follows. */
#define TSS_IOMAP_OFFSET 0x68
#define TSS_IOMAP_BYTES  8
#define TSS_LIMIT        (TSS_IOMAP_OFFSET + TSS_IOMAP_BYTES)

static void write_u64(uint8_t *low, uint64_t addr, uint64_t value)
{
	memcpy(low + addr, &value, 8);
}

static void build_page_tables(uint8_t *low, uint64_t mem_size)
{
	uint64_t table = PTE_PRESENT | PTE_WRITE | PTE_USER;
	write_u64(low, GUEST_PML4_ADDR, GUEST_PDPT_ADDR | table);
	uint64_t gigabytes = (mem_size + (1ULL << 30) - 1) >> 30;
	for (uint64_t i = 0; i < gigabytes; i++)
		write_u64(low, GUEST_PDPT_ADDR + 8 * i, (GUEST_PD_ADDR + GUEST_PAGE_SIZE * i) | table);

	/* The first 2 MiB: 4 KiB pages with per-page rights. */
	write_u64(low, GUEST_PD_ADDR, GUEST_LOW_PT_ADDR | table);
	uint64_t supervisor = PTE_PRESENT | PTE_WRITE | PTE_ACCESSED | PTE_DIRTY;
	uint64_t user_readonly = PTE_PRESENT | PTE_USER | PTE_ACCESSED;
	for (uint64_t page = GUEST_PML4_ADDR; page < GUEST_STUB_ADDR; page += GUEST_PAGE_SIZE)
		write_u64(low, GUEST_LOW_PT_ADDR + 8 * (page >> 12), page | supervisor);
	for (uint64_t page = GUEST_STUB_ADDR; page < GUEST_VDSO_ADDR + GUEST_VDSO_MAX_SIZE;
	     page += GUEST_PAGE_SIZE)
		write_u64(low, GUEST_LOW_PT_ADDR + 8 * (page >> 12), page | user_readonly);

	/* Program memory: 2 MiB pages, user read/write/execute.  The page
	 * directories follow one another, so one index covers them all. */
	uint64_t user_large = PTE_PRESENT | PTE_WRITE | PTE_USER | PTE_ACCESSED | PTE_DIRTY | PTE_LARGE;
	for (uint64_t addr = GUEST_SYSTEM_END; addr < mem_size; addr += GUEST_LARGE_PAGE_SIZE)
		write_u64(low, GUEST_PD_ADDR + 8 * (addr >> 21), addr | user_large);
}

static uint64_t segment_descriptor(uint64_t flags_and_access)
{
	return flags_and_access | 0xffffULL | (0xfULL << 48);
}

static void build_gdt_tss_idt(uint8_t *low)
{
	/* Access byte at bits 40..47, flags (G, D/B, L) at 52..55. */
	write_u64(low, GUEST_GDT_ADDR + GUEST_SEL_KERNEL_CS, segment_descriptor(0x00a09b0000000000ULL));
	write_u64(low, GUEST_GDT_ADDR + GUEST_SEL_KERNEL_DS, segment_descriptor(0x00c0930000000000ULL));
	write_u64(low, GUEST_GDT_ADDR + 0x20, segment_descriptor(0x00c0fb0000000000ULL)); /* user 32 */
	write_u64(low, GUEST_GDT_ADDR + (GUEST_SEL_USER_DS & ~3), segment_descriptor(0x00c0f30000000000ULL));
	write_u64(low, GUEST_GDT_ADDR + (GUEST_SEL_USER_CS & ~3), segment_descriptor(0x00a0fb0000000000ULL));

	/* The TSS ends with an I/O permission bitmap covering ports 0..63 and
	 * allowing only the exit ports: under PVM the stubs run with a user
	 * CS, so their `out` passes this check like user code's does. */
	uint64_t tss = GUEST_TSS_ADDR, limit = TSS_LIMIT;
	uint64_t tss_low =
		(limit & 0xffff) | ((tss & 0xffffff) << 16) | (0x89ULL << 40) | (((tss >> 24) & 0xff) << 56);
	write_u64(low, GUEST_GDT_ADDR + GUEST_SEL_TSS, tss_low);
	write_u64(low, GUEST_GDT_ADDR + GUEST_SEL_TSS + 8, tss >> 32);
	write_u64(low, GUEST_TSS_ADDR + 4, GUEST_KSTACK_TOP); /* RSP0 */
	uint16_t iomap_base = TSS_IOMAP_OFFSET;
	memcpy(low + GUEST_TSS_ADDR + 0x66, &iomap_base, 2);
	uint8_t *iomap = low + GUEST_TSS_ADDR + TSS_IOMAP_OFFSET;
	memset(iomap, 0xff, TSS_IOMAP_BYTES + 1); /* trailing 0xff byte is required */
	iomap[PORT_SYSCALL / 8] &= (uint8_t) ~(1u << (PORT_SYSCALL % 8));
	for (unsigned port = PORT_EXCEPTION_BASE; port < PORT_EXCEPTION_BASE + 32; port++)
		iomap[port / 8] &= (uint8_t) ~(1u << (port % 8));

	/* IDT: vectors 0..31 point at their exit stubs; the rest are absent. */
	for (uint64_t vector = 0; vector < 32; vector++) {
		uint64_t handler =
			GUEST_STUB_ADDR + GUEST_STUB_EXCEPTION_OFFSET + GUEST_STUB_EXCEPTION_STRIDE * vector;
		uint64_t dpl = (vector == VECTOR_BREAKPOINT || vector == VECTOR_OVERFLOW) ? 3 : 0;
		uint64_t entry = (handler & 0xffff) | ((uint64_t)GUEST_SEL_KERNEL_CS << 16) |
				 ((0x8eULL | (dpl << 5)) << 40) | (((handler >> 16) & 0xffff) << 48);
		write_u64(low, GUEST_IDT_ADDR + 16 * vector, entry);
		write_u64(low, GUEST_IDT_ADDR + 16 * vector + 8, handler >> 32);
	}

	/* Stubs: `out %al, $port` then `sysretq` (syscall) or `hlt` (exceptions). */
	uint8_t *stub = low + GUEST_STUB_ADDR;
	memset(stub, 0xf4, GUEST_PAGE_SIZE); /* hlt everywhere else */
	const uint8_t syscall_stub[] = {0xe6, PORT_SYSCALL, 0x48, 0x0f, 0x07};
	memcpy(stub + GUEST_STUB_SYSCALL_OFFSET, syscall_stub, sizeof syscall_stub);
	for (unsigned vector = 0; vector < 32; vector++) {
		uint8_t *p = stub + GUEST_STUB_EXCEPTION_OFFSET + GUEST_STUB_EXCEPTION_STRIDE * vector;
		p[0] = 0xe6;
		p[1] = (uint8_t)(PORT_EXCEPTION_BASE + vector);
	}
}

void vmm_guest_system_build(uint8_t *low, uint64_t mem_size)
{
	build_page_tables(low, mem_size);
	build_gdt_tss_idt(low);
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

void vmm_guest_system_sregs(struct kvm_sregs *sregs, bool fsgsbase)
{
	sregs->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
	sregs->cr3 = GUEST_PML4_ADDR;
	sregs->cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_OSXSAVE | (fsgsbase ? CR4_FSGSBASE : 0);
	sregs->efer = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
	sregs->cs = user_segment(GUEST_SEL_USER_CS, 11, true);
	sregs->ss = user_segment(GUEST_SEL_USER_DS, 3, false);
	sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss;
	sregs->gdt.base = GUEST_GDT_ADDR;
	sregs->gdt.limit = GUEST_SEL_TSS + 16 - 1;
	sregs->idt.base = GUEST_IDT_ADDR;
	sregs->idt.limit = 32 * 16 - 1;
	struct kvm_segment tr = {
		.base = GUEST_TSS_ADDR,
		.limit = TSS_LIMIT,
		.selector = GUEST_SEL_TSS,
		.type = 11,
		.present = 1,
		.s = 0,
	};
	sregs->tr = tr;
	struct kvm_segment ldt = {.selector = 0, .type = 2, .present = 0, .unusable = 1};
	sregs->ldt = ldt;
}

void vmm_guest_system_msrs(struct kvm_msr_entry entries[GUEST_SYSTEM_MSR_COUNT], uint64_t fs_base,
			   uint64_t gs_base)
{
	const struct kvm_msr_entry values[GUEST_SYSTEM_MSR_COUNT] = {
		{.index = MSR_STAR,
		 .data = ((uint64_t)(GUEST_SEL_USER_CS - 16) << 48) | ((uint64_t)GUEST_SEL_KERNEL_CS << 32)},
		{.index = MSR_LSTAR, .data = GUEST_STUB_ADDR + GUEST_STUB_SYSCALL_OFFSET},
		{.index = MSR_CSTAR, .data = GUEST_STUB_ADDR + GUEST_STUB_SYSCALL_OFFSET},
		{.index = MSR_SFMASK, .data = SYSCALL_FLAG_MASK},
		{.index = MSR_FS_BASE, .data = fs_base},
		{.index = MSR_GS_BASE, .data = gs_base},
		{.index = MSR_KERNEL_GS_BASE, .data = 0},
	};
	memcpy(entries, values, sizeof values);
}

uint64_t vmm_guest_system_xcr0(void)
{
	unsigned eax, ebx, ecx, edx;
	if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE))
		return 0;
	__cpuid_count(0xd, 0, eax, ebx, ecx, edx);
	/* x87, SSE, AVX and the AVX-512 states: what user code may use. */
	return (((uint64_t)edx << 32) | eax) & 0xe7ULL;
}
