/* The systrap platform (platform.h): the guest runs alone in a stub
 * process under a seccomp filter, as gVisor's systrap platform runs its
 * applications.  systrap_stub.c starts the stub and exchanges events with
 * it; here each event becomes a stop, and the VM's life — create, restore,
 * save, memory, clock — is built on that exchange.
 *
 * Snapshots keep one format on both platforms: a VM saved here records
 * the special registers and MSRs KVM would have (guest_system.h), and its
 * memory file holds the system pages the VMM keeps for it, so that it
 * restores on KVM as well as here; a VM saved on KVM restores here. */
#include "systrap_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clock.h"
#include "guest_system.h"
#include "snap_state.h"

#ifndef HWCAP2_FSGSBASE
#define HWCAP2_FSGSBASE (1 << 1)
#endif

#define USER_FLAGS_MASK 0x250fd5ULL /* CF PF AF ZF SF TF DF OF AC ID */
#define RFLAGS_FIXED    0x202ULL

static int systrap_available(struct ember_error *err)
{
	if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0)
		return ember_error_errno(err, errno, "seccomp is not available");
	int fd = open("/proc/sys/kernel/seccomp/actions_avail", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char actions[256] = "";
		ssize_t n = read(fd, actions, sizeof actions - 1);
		close(fd);
		if (n > 0 && !strstr(actions, "trap"))
			return ember_error_set(err, "the kernel's seccomp cannot trap (actions: %s)", actions);
	}
	return 1;
}

static int new_state(struct vmm_vm *vm, struct ember_error *err)
{
	struct systrap_state *st = calloc(1, sizeof *st);
	if (!st)
		return ember_error_set(err, "allocate the VM: out of memory");
	st->stub = -1;
	st->context_fd = st->system_fd = st->pagemap_fd = -1;
	/* The guest may use rdfsbase and friends only where the host kernel
	 * lets user code: the stub is an ordinary process. */
	st->use_fsgsbase = (getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE) != 0;
	vm->has_fsgsbase = st->use_fsgsbase;
	vm->impl = st;
	return 0;
}

static void systrap_destroy(struct vmm_vm *vm)
{
	struct systrap_state *st = systrap_state(vm);
	if (!st)
		return;
	systrap_stop(vm);
	free(st);
	vm->impl = NULL;
	vm->vvar = NULL;
}

static int systrap_create(struct vmm_vm *vm, const void *vdso, size_t vdso_size, struct ember_error *err)
{
	if (new_state(vm, err) < 0 || systrap_start(vm, -1, err) < 0)
		goto fail;
	struct systrap_state *st = systrap_state(vm);
	vmm_guest_system_build(st->system, vm->mem_size);
	memcpy(st->system + GUEST_VDSO_ADDR, vdso, vdso_size);
	return 0;
fail:
	ember_error_wrap(err, "create systrap virtual machine");
	systrap_destroy(vm);
	return -1;
}

/* The system pages [0, 2 MiB) of a memory file, data extents only. */
static int load_system_pages(struct systrap_state *st, int mem_fd, struct ember_error *err)
{
	off_t position = 0;
	while (position < (off_t)GUEST_SYSTEM_END) {
		off_t data = lseek(mem_fd, position, SEEK_DATA);
		if (data < 0 || data >= (off_t)GUEST_SYSTEM_END)
			break;
		off_t hole = lseek(mem_fd, data, SEEK_HOLE);
		if (hole < 0 || hole > (off_t)GUEST_SYSTEM_END)
			hole = GUEST_SYSTEM_END;
		for (off_t at = data; at < hole;) {
			ssize_t n = pread(mem_fd, st->system + at, (size_t)(hole - at), at);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return ember_error_errno(err, n < 0 ? errno : EIO, "read the system pages");
			at += n;
		}
		position = hole;
	}
	return 0;
}

static uint64_t saved_msr(const struct snap_vcpu *state, uint32_t index, uint64_t fallback)
{
	for (uint32_t i = 0; i < state->msr_count && i < SNAP_MAX_MSRS; i++)
		if (state->msrs[i].index == index)
			return state->msrs[i].data;
	return fallback;
}

/* Puts a saved XSAVE image (standard format, as KVM_GET_XSAVE gives it)
 * into the parked frame: the kernel's own bookkeeping in the frame (the
 * software bytes at 464 and the trailing magic) stays, and the image's
 * feature bits and MXCSR are cut to what this frame and CPU accept, so
 * that a hostile image cannot make the stub's rt_sigreturn fail. */
static void load_xsave(struct systrap_state *st, const struct snap_vcpu *state)
{
	const uint8_t *image = (const uint8_t *)state->xsave.region;
	uint32_t bytes = st->fp_bytes < sizeof state->xsave.region ? st->fp_bytes : sizeof state->xsave.region;
	uint32_t mxcsr_mask;
	memcpy(&mxcsr_mask, st->fpstate + 28, 4);
	if (!mxcsr_mask)
		mxcsr_mask = 0xffbf;
	memcpy(st->fpstate, image, 464);
	uint32_t mxcsr;
	memcpy(&mxcsr, st->fpstate + 24, 4);
	mxcsr &= mxcsr_mask;
	memcpy(st->fpstate + 24, &mxcsr, 4);
	if (bytes > 512) {
		uint64_t frame_features;
		memcpy(&frame_features, st->fpstate + 464 + 8, 8); /* sw_reserved.xfeatures */
		memcpy(st->fpstate + 512, image + 512, bytes - 512 - 4 /* the frame's magic2 stays */);
		uint64_t header[2];
		memcpy(header, st->fpstate + 512, sizeof header);
		header[0] &= frame_features; /* XSTATE_BV */
		header[1] = 0;               /* XCOMP_BV: standard format */
		memcpy(st->fpstate + 512, header, sizeof header);
	}
}

static int systrap_restore(struct vmm_vm *vm, int mem_fd, const struct snap_vcpu *state, struct ember_error *err)
{
	struct vmm_regs regs;
	memcpy(&regs, &state->regs, sizeof regs);
	/* A KVM snapshot may stop at the syscall stub's sysretq, about to
	 * return to rcx with flags r11: here the guest resumes there itself. */
	if (regs.rip == GUEST_STUB_SYSRET_ADDR) {
		regs.rip = regs.rcx;
		regs.rflags = regs.r11;
	}
	if (regs.rip < GUEST_SYSTEM_END) {
		ember_error_set(err, "the saved vCPU stopped at %#llx, inside the VMM's system pages",
				(unsigned long long)regs.rip);
		goto fail;
	}
	regs.rflags = (regs.rflags & USER_FLAGS_MASK) | RFLAGS_FIXED;
	if (new_state(vm, err) < 0)
		goto fail;
	struct systrap_state *st = systrap_state(vm);
	vm->memory_from_file = true;
	if (systrap_start(vm, mem_fd, err) < 0 || load_system_pages(st, mem_fd, err) < 0)
		goto fail;
	st->fs_base = saved_msr(state, MSR_FS_BASE, state->sregs.fs.base);
	st->gs_base = saved_msr(state, MSR_GS_BASE, state->sregs.gs.base);
	st->bases_changed = true;
	load_xsave(st, state);
	vm->regs = regs;
	vm->regs_dirty = true;
	return 0;
fail:
	ember_error_wrap(err, "restore systrap virtual machine");
	systrap_destroy(vm);
	return -1;
}

static int systrap_save(struct vmm_vm *vm, struct snap_vcpu *state, struct snap_cpu_identity *cpu,
			struct ember_error *err)
{
	struct systrap_state *st = systrap_state(vm);
	if (!st->parked)
		return ember_error_set(err, "the guest is not stopped in its stub");
	memset(state, 0, sizeof *state);
	memcpy(&state->regs, &vm->regs, sizeof state->regs);
	vmm_guest_system_sregs(&state->sregs, vm->has_fsgsbase);
	state->sregs.fs.base = st->fs_base;
	state->sregs.gs.base = st->gs_base;
	struct kvm_msr_entry msrs[GUEST_SYSTEM_MSR_COUNT];
	vmm_guest_system_msrs(msrs, st->fs_base, st->gs_base);
	state->msr_count = GUEST_SYSTEM_MSR_COUNT;
	for (int i = 0; i < GUEST_SYSTEM_MSR_COUNT; i++) {
		state->msrs[i].index = msrs[i].index;
		state->msrs[i].data = msrs[i].data;
	}
	uint32_t bytes = st->fp_bytes < sizeof state->xsave.region ? st->fp_bytes : sizeof state->xsave.region;
	memcpy(state->xsave.region, st->fpstate, bytes);
	memset((uint8_t *)state->xsave.region + 464, 0, 48); /* the kernel's frame bookkeeping */
	uint64_t xcr0 = vmm_guest_system_xcr0();
	if (xcr0) {
		state->xcrs.nr_xcrs = 1;
		state->xcrs.xcrs[0].xcr = 0;
		state->xcrs.xcrs[0].value = xcr0;
	}
	state->cpuid_count = 0; /* KVM takes its own on restore */
	cpu->stub_user_mode = 0;
	return 0;
}

static int systrap_set_entry(struct vmm_vm *vm, uint64_t rip, uint64_t rsp, struct ember_error *err)
{
	(void)err;
	struct systrap_state *st = systrap_state(vm);
	memset(&vm->regs, 0, sizeof vm->regs);
	vm->regs.rip = rip;
	vm->regs.rsp = rsp;
	vm->regs.rflags = RFLAGS_FIXED;
	vm->regs_dirty = true;
	st->fs_base = st->gs_base = 0;
	st->bases_changed = true;
	return 0;
}

static void fatal(struct vmm_stop *stop, int signal, const char *reason, const char *detail)
{
	stop->kind = VMM_STOP_FATAL;
	stop->signal = signal;
	snprintf(stop->reason, sizeof stop->reason, "%s%s%s", reason, detail[0] ? ": " : "", detail);
}

/* Linux (6.11 and later) lets one system call through every seccomp
 * filter: uretprobe (335), which returns from a uprobe trampoline.  From
 * anywhere else it does nothing but raise SIGILL with si_code SI_KERNEL
 * on the caller, the instruction pointer just past its `syscall`.  Such a
 * SIGILL is the guest's system call 335, which it gets as on KVM (ENOSYS);
 * a genuine invalid opcode has a code of its own (ILL_ILLOPN...). */
#define SYSTRAP_NR_URETPROBE 335

static bool is_uretprobe_passthrough(struct vmm_vm *vm, const struct stub_control *c)
{
	uint8_t before[2];
	if (c->code != SI_KERNEL || vm->regs.rip < sizeof before)
		return false;
	if (vmm_mem_read(vm, vm->regs.rip - sizeof before, before, sizeof before, false) < 0)
		return false;
	return before[0] == 0x0f && before[1] == 0x05;
}

static int systrap_run(struct vmm_vm *vm, struct vmm_stop *stop, struct ember_error *err)
{
	struct systrap_state *st = systrap_state(vm);
	memset(stop, 0, sizeof *stop);
	systrap_reply(vm);
	struct ember_error why;
	switch (systrap_wait_event(vm, &why)) {
	case SYSTRAP_INTERRUPTED: stop->kind = VMM_STOP_INTERRUPTED; return 0;
	case SYSTRAP_DEAD: {
		char death[160];
		snprintf(death, sizeof death, "the stub process running the guest ");
		size_t at = strlen(death);
		if (WIFSIGNALED(st->exit_status))
			snprintf(death + at, sizeof death - at, "was killed by signal %d (%s)",
				 WTERMSIG(st->exit_status), strsignal(WTERMSIG(st->exit_status)));
		else
			snprintf(death + at, sizeof death - at, "exited with status %d", WEXITSTATUS(st->exit_status));
		fatal(stop, SIGKILL, death, why.message[0] && strstr(why.message, "guest") ? why.message : "");
		return 0;
	}
	case SYSTRAP_EVENT: break;
	}
	(void)err;
	const struct stub_control *c = st->control;
	int signo = c->signo;
	systrap_frame_to_regs(st->frame, &vm->regs);
	vm->regs_dirty = false;
	const greg_t *g = st->frame->uc_mcontext.gregs;
	switch (signo) {
	case SIGSYS:
		if (c->syscall_arch != AUDIT_ARCH_X86_64) {
			/* int $0x80 or sysenter: KVM's guest takes a #GP on the
			 * missing IDT entry, so the guest gets the same here. */
			stop->kind = VMM_STOP_EXCEPTION;
			stop->vector = 13;
			stop->error_code = (0x80 << 3) | 2;
			stop->rip = vm->regs.rip - 2;
			stop->rsp = vm->regs.rsp;
			return 0;
		}
		stop->kind = VMM_STOP_SYSCALL;
		vm->regs.rax = (uint64_t)(uint32_t)c->syscall_number;
		return 0;
	case SIGILL:
		if (is_uretprobe_passthrough(vm, c)) {
			stop->kind = VMM_STOP_SYSCALL;
			vm->regs.rax = SYSTRAP_NR_URETPROBE;
			return 0;
		}
		/* fall through */
	case SIGSEGV:
	case SIGBUS:
	case SIGFPE:
	case SIGTRAP:
		stop->kind = VMM_STOP_EXCEPTION;
		stop->vector = (unsigned)((uint64_t)g[REG_TRAPNO] & 31);
		stop->error_code = (uint64_t)g[REG_ERR];
		stop->rip = vm->regs.rip;
		stop->rsp = vm->regs.rsp;
		if (stop->vector == 14) {
			stop->fault_address = (uint64_t)g[REG_CR2];
			stop->has_fault_address = true;
		}
		return 0;
	case STUB_INTERRUPT_SIGNAL: stop->kind = VMM_STOP_INTERRUPTED; return 0;
	default: {
		char detail[64];
		snprintf(detail, sizeof detail, "signal %d", signo);
		fatal(stop, SIGSEGV, "the guest forged an event in its stub's context area", detail);
		return 0;
	}
	}
}

static int systrap_syscall_return(struct vmm_vm *vm, bool restart, struct vmm_stop *fatal_stop,
				  struct ember_error *err)
{
	(void)fatal_stop;
	(void)err;
	if (restart) {
		vm->regs.rip -= 2; /* back to the `syscall` instruction */
		vmm_vm_regs_changed(vm);
	}
	return 0;
}

static void systrap_interrupt(struct vmm_vm *vm)
{
	struct systrap_state *st = systrap_state(vm);
	if (!st || !st->control)
		return;
	st->interrupt_requested = 1;
	syscall(SYS_futex, &st->control->state, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static int systrap_set_segment_base(struct vmm_vm *vm, bool gs, uint64_t base, struct ember_error *err)
{
	(void)err;
	struct systrap_state *st = systrap_state(vm);
	*(gs ? &st->gs_base : &st->fs_base) = base;
	st->bases_changed = true;
	return 0;
}

static void systrap_discard(struct vmm_vm *vm, uint64_t addr, uint64_t len)
{
	const uint64_t range[1][2] = {{addr, len}};
	if (systrap_advise(vm, range, 1, STUB_ADVICE_DONTNEED) == 0)
		return;
	/* The stub cannot do it (it is not parked): zero the range by hand. */
	static const uint8_t zeros[65536];
	for (uint64_t done = 0; done < len; done += sizeof zeros) {
		size_t n = len - done < sizeof zeros ? (size_t)(len - done) : sizeof zeros;
		if (systrap_write(vm, addr + done, zeros, n) < 0)
			return;
	}
}

/* Fresh memory: pages the stub never touched are not in its page tables
 * (pagemap: neither present nor swapped) and are zero. */
static int systrap_residency(struct vmm_vm *vm, uint64_t addr, size_t pages, uint8_t *vec)
{
	struct systrap_state *st = systrap_state(vm);
	if (st->memory_from_file || addr < GUEST_SYSTEM_END || pages > 512)
		return -1;
	if (st->pagemap_fd < 0) {
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/pagemap", (int)st->stub);
		st->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (st->pagemap_fd < 0)
			return -1;
	}
	uint64_t entries[512];
	off_t offset = (off_t)(addr / GUEST_PAGE_SIZE * 8);
	if (pread(st->pagemap_fd, entries, pages * 8, offset) != (ssize_t)(pages * 8))
		return -1;
	for (size_t i = 0; i < pages; i++)
		vec[i] = (entries[i] >> 62) & 3 ? 1 : 0;
	return 0;
}

static void systrap_pretouch(struct vmm_vm *vm, int mem_fd)
{
	uint64_t ranges[STUB_COMMANDS_MAX][2];
	size_t count = 0;
	off_t position = GUEST_SYSTEM_END, size = (off_t)vm->mem_size;
	while (position < size) {
		off_t data = lseek(mem_fd, position, SEEK_DATA);
		if (data < 0)
			break;
		off_t hole = lseek(mem_fd, data, SEEK_HOLE);
		if (hole < 0 || hole > size)
			hole = size;
		ranges[count][0] = (uint64_t)data;
		ranges[count][1] = (uint64_t)(hole - data);
		if (++count == STUB_COMMANDS_MAX) {
			systrap_advise(vm, (const uint64_t(*)[2])ranges, count, STUB_ADVICE_POPULATE_READ);
			count = 0;
		}
		position = hole;
	}
	if (count)
		systrap_advise(vm, (const uint64_t(*)[2])ranges, count, STUB_ADVICE_POPULATE_READ);
}

static int systrap_touch(struct vmm_vm *vm, const struct vmm_touch_range *touch, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		if (!vmm_mem_in_program(vm, touch[i].first * GUEST_PAGE_SIZE, touch[i].pages * GUEST_PAGE_SIZE))
			continue;
		const uint64_t range[1][2] = {{touch[i].first * GUEST_PAGE_SIZE, touch[i].pages * GUEST_PAGE_SIZE}};
		if (systrap_advise(vm, range, 1,
				   touch[i].write ? STUB_ADVICE_POPULATE_WRITE : STUB_ADVICE_POPULATE_READ) < 0)
			return -1;
	}
	return 0;
}

static int systrap_tsc(struct vmm_vm *vm, struct vmm_tsc_source *tsc, struct ember_error *err)
{
	(void)vm;
	(void)err;
	memset(tsc, 0, sizeof *tsc);
	tsc->hz = vmm_clock_host_tsc_hz(&tsc->hz_source);
	tsc->offset = 0; /* the guest reads the host's TSC */
	tsc->offset_source = "none";
	return 0;
}

/* Sums Rss and Anonymous over a smaps file; Anonymous inside [low, high)
 * also counts as dirty guest pages. */
static void add_smaps(const char *path, uint64_t low, uint64_t high, uint64_t *rss, uint64_t *private_bytes,
		      uint64_t *dirty_pages)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	char line[256];
	bool in_guest = false;
	unsigned long long kb;
	while (fgets(line, sizeof line, f)) {
		unsigned long start, end;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3) {
			in_guest = start >= low && start < high;
			continue;
		}
		if (sscanf(line, "Rss: %llu kB", &kb) == 1)
			*rss += kb * 1024;
		else if (sscanf(line, "Anonymous: %llu kB", &kb) == 1) {
			*private_bytes += kb * 1024;
			if (in_guest && dirty_pages)
				*dirty_pages += kb / 4;
		}
	}
	fclose(f);
}

static void systrap_memory_usage(struct vmm_vm *vm, uint64_t *rss_bytes, uint64_t *private_bytes,
				 uint64_t *dirty_pages)
{
	struct systrap_state *st = systrap_state(vm);
	add_smaps("/proc/self/smaps", 0, 0, rss_bytes, private_bytes, NULL);
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/smaps", (int)st->stub);
	add_smaps(path, GUEST_SYSTEM_END, vm->mem_size, rss_bytes, private_bytes, dirty_pages);
}

const struct vmm_platform vmm_platform_systrap = {
	.name = "systrap",
	.available = systrap_available,
	.create = systrap_create,
	.restore = systrap_restore,
	.save = systrap_save,
	.destroy = systrap_destroy,
	.set_entry = systrap_set_entry,
	.run = systrap_run,
	.syscall_return = systrap_syscall_return,
	.interrupt = systrap_interrupt,
	.set_segment_base = systrap_set_segment_base,
	.read = systrap_read,
	.write = systrap_write,
	.discard = systrap_discard,
	.residency = systrap_residency,
	.pretouch = systrap_pretouch,
	.touch = systrap_touch,
	.tsc = systrap_tsc,
	.memory_usage = systrap_memory_usage,
};
