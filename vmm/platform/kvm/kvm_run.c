/* The KVM platform's vCPU (kvm_internal.h): KVM_RUN, and every exit turned
 * into a stop of platform.h.
 *
 * Exits come from the stubs of guest_layout.h: `out` to PORT_SYSCALL from
 * the syscall entry stub, `out` to PORT_EXCEPTION_BASE+vector from an
 * exception stub.  Because a guest can execute `out` itself (PVM lets user
 * code through the I/O bitmap like the stubs), an exit is trusted only for
 * what the registers say, and a port exit from anywhere but a stub kills the
 * guest with SIGSEGV, as the #GP Linux would raise.
 *
 * Returning from a system call: architecturally `syscall` enters CPL0 and
 * the stub's `sysretq` returns; under PVM the stub runs with the user CS,
 * so the VMM sets RIP and RFLAGS from RCX and R11 itself.  Which one applies
 * is read once, at the first system call. */
#include "kvm_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest_system.h"

/* RFLAGS bits user code may set: CF PF AF ZF SF TF DF OF AC ID. */
#define USER_FLAGS_MASK 0x250fd5ULL
#define RFLAGS_FIXED    0x202ULL /* reserved bit 1 and IF */
#define CANONICAL_LIMIT (1ULL << 47)

int kvm_fetch_regs(struct vmm_vm *vm, struct ember_error *err)
{
	struct kvm_vm_state *st = kvm_state(vm);
	if (st->sync_regs) {
		memcpy(&vm->regs, &st->run->s.regs.regs, sizeof vm->regs);
	} else {
		struct kvm_regs regs;
		if (ioctl(st->vcpu_fd, KVM_GET_REGS, &regs) < 0)
			return ember_error_errno(err, errno, "KVM_GET_REGS");
		memcpy(&vm->regs, &regs, sizeof vm->regs);
	}
	vm->regs_dirty = false;
	return 0;
}

int kvm_flush_regs(struct vmm_vm *vm, struct ember_error *err)
{
	struct kvm_vm_state *st = kvm_state(vm);
	if (!vm->regs_dirty)
		return 0;
	if (st->sync_regs) {
		memcpy(&st->run->s.regs.regs, &vm->regs, sizeof vm->regs);
		st->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
	} else {
		struct kvm_regs regs;
		memcpy(&regs, &vm->regs, sizeof regs);
		if (ioctl(st->vcpu_fd, KVM_SET_REGS, &regs) < 0)
			return ember_error_errno(err, errno, "KVM_SET_REGS");
	}
	vm->regs_dirty = false;
	return 0;
}

static bool vector_has_error_code(unsigned vector)
{
	return vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21 ||
	       vector == 29 || vector == 30;
}

/* An exception stub's exit: the CPU pushed [error code,] RIP, CS, RFLAGS,
 * RSP, SS on the exception stack; CR2 holds a page fault's address. */
static void exception_stop(struct vmm_vm *vm, unsigned vector, struct vmm_stop *stop)
{
	struct kvm_vm_state *st = kvm_state(vm);
	stop->kind = VMM_STOP_EXCEPTION;
	stop->vector = vector;
	stop->rip = vm->regs.rip;
	stop->rsp = vm->regs.rsp;
	uint64_t sp = vm->regs.rsp;
	uint64_t frame[6];
	if (sp >= GUEST_KSTACK_ADDR && sp + sizeof frame <= GUEST_KSTACK_TOP) {
		memcpy(frame, st->mem + sp, sizeof frame);
		unsigned at = 0;
		if (vector_has_error_code(vector))
			stop->error_code = frame[at++];
		stop->rip = frame[at];
		stop->rsp = frame[at + 3];
	}
	if (vector == 14) {
		struct kvm_sregs sregs;
		if (ioctl(st->vcpu_fd, KVM_GET_SREGS, &sregs) == 0) {
			stop->fault_address = sregs.cr2;
			stop->has_fault_address = true;
		}
	}
}

static void fatal_stop(struct vmm_stop *stop, int signal, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fatal_stop(struct vmm_stop *stop, int signal, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	stop->kind = VMM_STOP_FATAL;
	stop->signal = signal;
	vsnprintf(stop->reason, sizeof stop->reason, fmt, ap);
	va_end(ap);
}

/* True if the exit came from the `out` at stub offset `offset`: RIP is at
 * the instruction (hardware KVM) or just past it (PVM). */
static bool exit_from_stub(uint64_t rip, uint64_t offset)
{
	uint64_t at = GUEST_STUB_ADDR + offset;
	return rip == at || rip == at + 2;
}

static void port_exit(struct vmm_vm *vm, struct vmm_stop *stop)
{
	struct kvm_run *run = kvm_state(vm)->run;
	unsigned port = run->io.port;
	if (run->io.direction == KVM_EXIT_IO_OUT && port == PORT_SYSCALL &&
	    exit_from_stub(vm->regs.rip, GUEST_STUB_SYSCALL_OFFSET)) {
		stop->kind = VMM_STOP_SYSCALL;
		return;
	}
	if (run->io.direction == KVM_EXIT_IO_OUT && port >= PORT_EXCEPTION_BASE &&
	    port < PORT_EXCEPTION_BASE + 32) {
		unsigned vector = port - PORT_EXCEPTION_BASE;
		if (exit_from_stub(vm->regs.rip,
				   GUEST_STUB_EXCEPTION_OFFSET + GUEST_STUB_EXCEPTION_STRIDE * vector)) {
			exception_stop(vm, vector, stop);
			return;
		}
	}
	char registers[512];
	vmm_format_registers(&vm->regs, vm->regs.rip, vm->regs.rsp, registers, sizeof registers);
	fatal_stop(stop, SIGSEGV, "general protection fault: I/O port %#x access at address %#llx; %s", port,
		   (unsigned long long)vm->regs.rip, registers);
}

static int kvm_run_vcpu(struct vmm_vm *vm, struct vmm_stop *stop, struct ember_error *err)
{
	struct kvm_vm_state *st = kvm_state(vm);
	memset(stop, 0, sizeof *stop);
	if (kvm_flush_regs(vm, err) < 0)
		return -1;
	if (ioctl(st->vcpu_fd, KVM_RUN, 0) < 0) {
		if (errno == EINTR || errno == EAGAIN) {
			st->run->immediate_exit = 0;
			stop->kind = VMM_STOP_INTERRUPTED;
			return 0;
		}
		return ember_error_errno(err, errno, "KVM_RUN");
	}
	if (kvm_fetch_regs(vm, err) < 0)
		return -1;
	switch (st->run->exit_reason) {
	case KVM_EXIT_IO: port_exit(vm, stop); return 0;
	case KVM_EXIT_SHUTDOWN:
		fatal_stop(stop, SIGSEGV, "triple fault (the CPU could not deliver an exception) at %#llx",
			   (unsigned long long)vm->regs.rip);
		return 0;
	case KVM_EXIT_HLT:
		fatal_stop(stop, SIGSEGV, "halt in an exception stub at %#llx", (unsigned long long)vm->regs.rip);
		return 0;
	case KVM_EXIT_MMIO:
		fatal_stop(stop, SIGBUS, "access to non-memory address %#llx",
			   (unsigned long long)st->run->mmio.phys_addr);
		return 0;
	case KVM_EXIT_INTERNAL_ERROR:
		fatal_stop(stop, SIGILL, "KVM could not emulate an instruction (internal error %u) at %#llx",
			   st->run->internal.suberror, (unsigned long long)vm->regs.rip);
		return 0;
	case KVM_EXIT_FAIL_ENTRY:
		return ember_error_set(err, "KVM entry failed (hardware reason %#llx)",
				       (unsigned long long)st->run->fail_entry.hardware_entry_failure_reason);
	default: return ember_error_set(err, "unexpected KVM exit reason %u", st->run->exit_reason);
	}
}

static int kvm_syscall_return(struct vmm_vm *vm, bool restart, struct vmm_stop *fatal, struct ember_error *err)
{
	struct kvm_vm_state *st = kvm_state(vm);
	if (!st->stub_mode_known) {
		struct kvm_sregs sregs;
		if (ioctl(st->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
			return ember_error_errno(err, errno, "KVM_GET_SREGS");
		st->stub_runs_in_user_mode = (sregs.cs.selector & 3) == 3;
		st->stub_mode_known = true;
	}
	struct vmm_regs *regs = &vm->regs;
	if (regs->rcx >= CANONICAL_LIMIT) {
		fatal_stop(fatal, SIGSEGV, "system call returning to non-canonical address %#llx",
			   (unsigned long long)regs->rcx);
		return 1;
	}
	uint64_t flags = (regs->r11 & USER_FLAGS_MASK) | RFLAGS_FIXED;
	/* A restarted call returns to its own `syscall` instruction (2 bytes). */
	uint64_t resume_at = restart ? regs->rcx - 2 : regs->rcx;
	if (st->stub_runs_in_user_mode) {
		regs->rip = resume_at;
		regs->rflags = flags;
	} else {
		regs->rcx = resume_at; /* sysretq jumps to rcx... */
		regs->r11 = flags;     /* ...and loads RFLAGS from r11 */
	}
	vmm_vm_regs_changed(vm);
	return 0;
}

static void kvm_interrupt(struct vmm_vm *vm)
{
	struct kvm_vm_state *st = kvm_state(vm);
	if (st && st->run)
		st->run->immediate_exit = 1;
}

static int kvm_read(struct vmm_vm *vm, uint64_t addr, void *dst, size_t len)
{
	memcpy(dst, kvm_state(vm)->mem + addr, len); /* not reached: vm->direct is set */
	return 0;
}

static int kvm_write(struct vmm_vm *vm, uint64_t addr, const void *src, size_t len)
{
	memcpy(kvm_state(vm)->mem + addr, src, len);
	return 0;
}

static void kvm_discard(struct vmm_vm *vm, uint64_t addr, uint64_t len)
{
	madvise(kvm_state(vm)->mem + addr, len, MADV_DONTNEED);
}

/* Fresh (anonymous) memory that was never touched is not resident and
 * known to be zero; a restored private file mapping may hold data anywhere. */
static int kvm_residency(struct vmm_vm *vm, uint64_t addr, size_t pages, uint8_t *vec)
{
	if (vm->memory_from_file)
		return -1;
	return mincore(kvm_state(vm)->mem + addr, pages * GUEST_PAGE_SIZE, vec) < 0 ? -1 : 0;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

/* Maps every data page of the memory file into our page tables, read-only
 * (shared with the page cache, not copied), so the restored guest's first
 * touches cost less: what a warm pool holds. */
static void kvm_pretouch(struct vmm_vm *vm, int memory_fd)
{
	uint8_t *mem = kvm_state(vm)->mem;
	off_t position = 0, size = (off_t)vm->mem_size;
	while (position < size) {
		off_t data = lseek(memory_fd, position, SEEK_DATA);
		if (data < 0)
			break;
		off_t hole = lseek(memory_fd, data, SEEK_HOLE);
		if (hole < 0 || hole > size)
			hole = size;
		uint8_t *host = mem + data;
		if (madvise(host, (size_t)(hole - data), MADV_POPULATE_READ) < 0) {
			volatile uint8_t sink = 0;
			for (off_t at = 0; at < hole - data; at += (off_t)GUEST_PAGE_SIZE)
				sink ^= host[at]; /* older kernels: touch by hand */
			(void)sink;
		}
		position = hole;
	}
}

/* Reads the vCPU's TSC offset attribute if KVM has it.  Returns 1 if found,
 * 0 if KVM lacks it, -1 with err set if KVM claims it and then fails. */
static int read_tsc_offset(int vcpu_fd, int64_t *offset, struct ember_error *err)
{
	uint64_t value = 0;
	struct kvm_device_attr attribute = {
		.group = KVM_VCPU_TSC_CTRL,
		.attr = KVM_VCPU_TSC_OFFSET,
		.addr = (uint64_t)(uintptr_t)&value,
	};
	if (ioctl(vcpu_fd, KVM_HAS_DEVICE_ATTR, &attribute) < 0)
		return 0;
	if (ioctl(vcpu_fd, KVM_GET_DEVICE_ATTR, &attribute) < 0)
		return ember_error_errno(err, errno, "read vCPU attribute KVM_VCPU_TSC_OFFSET");
	*offset = (int64_t)value;
	return 1;
}

/* Assumes KVM does not scale the guest's TSC (Ember never sets
 * KVM_SET_TSC_KHZ) and that the host TSC is invariant. */
static int kvm_tsc(struct vmm_vm *vm, struct vmm_tsc_source *tsc, struct ember_error *err)
{
	int vcpu_fd = kvm_state(vm)->vcpu_fd;
	memset(tsc, 0, sizeof *tsc);
	int khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
	if (khz > 0) {
		tsc->hz = (uint64_t)khz * 1000;
		tsc->hz_source = "KVM_GET_TSC_KHZ";
	}
	tsc->offset_source = "none";
	int found = read_tsc_offset(vcpu_fd, &tsc->offset, err);
	if (found < 0)
		return -1;
	if (found)
		tsc->offset_source = "KVM_VCPU_TSC_OFFSET";
	return 0;
}

/* Resident and anonymous (private) bytes of this process, and the pages
 * of guest memory written since start or restore (anonymous pages of the
 * guest memory mapping: copy-on-write copies after a restore). */
static void kvm_memory_usage(struct vmm_vm *vm, uint64_t *rss_bytes, uint64_t *private_bytes,
			     uint64_t *dirty_pages)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	if (!f)
		return;
	char line[256];
	uintptr_t guest = (uintptr_t)kvm_state(vm)->mem;
	uintptr_t guest_end = guest + vm->mem_size;
	bool in_guest = false;
	unsigned long long kb;
	while (fgets(line, sizeof line, f)) {
		unsigned long start, end;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3) { /* a mapping's first line */
			in_guest = start >= guest && start < guest_end;      /* madvise may split it */
			continue;
		}
		if (sscanf(line, "Rss: %llu kB", &kb) == 1)
			*rss_bytes += kb * 1024;
		else if (sscanf(line, "Anonymous: %llu kB", &kb) == 1) {
			*private_bytes += kb * 1024;
			if (in_guest)
				*dirty_pages += kb / 4;
		}
	}
	fclose(f);
}

const struct vmm_platform vmm_platform_kvm = {
	.name = "kvm",
	.available = kvm_available,
	.create = kvm_create,
	.restore = kvm_restore,
	.save = kvm_save,
	.destroy = kvm_destroy,
	.set_entry = kvm_set_entry,
	.run = kvm_run_vcpu,
	.syscall_return = kvm_syscall_return,
	.interrupt = kvm_interrupt,
	.set_segment_base = kvm_set_segment_base,
	.read = kvm_read,
	.write = kvm_write,
	.discard = kvm_discard,
	.residency = kvm_residency,
	.pretouch = kvm_pretouch,
	.touch = kvm_guest_touch,
	.tsc = kvm_tsc,
	.memory_usage = kvm_memory_usage,
};
