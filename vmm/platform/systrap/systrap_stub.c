/* The systrap platform's side of the stub (systrap_internal.h): starting
 * the stub process, the event/reply/command exchange through the context
 * area, and guest memory.
 *
 * The VMM thread and the stub take turns on one CPU (both are pinned to
 * the CPU the VMM starts on): a futex wake-up that stays on its CPU costs
 * a few microseconds, one that crosses to a sleeping CPU tens.  Every
 * field of the context area may have been written by the guest, so each
 * is copied once and checked before use; a stub that stops answering or
 * dies is reported, never waited for without end. */
#include "systrap_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest_layout.h"

extern const uint8_t vmm_stub_image_start[], vmm_stub_image_end[];

/* How long the VMM sleeps before it looks whether the stub is still
 * there, and how long a stub may take to stop once asked. */
#define DEATH_CHECK_NS  (50 * 1000 * 1000L)
#define STOP_GRACE_NS   (200 * 1000 * 1000L)
#define START_GRACE_NS  (5 * 1000 * 1000 * 1000L)
#define SIGNAL_STACK_LO (STUB_CONTEXT_ADDR + STUB_SIGNAL_STACK_OFFSET)
#define SIGNAL_STACK_HI (SIGNAL_STACK_LO + STUB_SIGNAL_STACK_SIZE)

static uint32_t load(const uint32_t *word)
{
	return __atomic_load_n(word, __ATOMIC_SEQ_CST);
}

static void store(uint32_t *word, uint32_t value)
{
	__atomic_store_n(word, value, __ATOMIC_SEQ_CST);
}

static long futex(uint32_t *word, int op, uint32_t value, const struct timespec *timeout)
{
	return syscall(SYS_futex, word, op, value, timeout, NULL, 0);
}

static int64_t now_ns(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* The stub's executable, once per VMM: its embedded image in a sealed
 * memfd, started through /proc/self/fd. */
static int stub_executable(struct ember_error *err)
{
	static int fd = -1;
	if (fd >= 0)
		return fd;
	int made = memfd_create("ember-stub", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (made < 0)
		return ember_error_errno(err, errno, "create the stub's memfd");
	size_t size = (size_t)(vmm_stub_image_end - vmm_stub_image_start);
	size_t done = 0;
	while (done < size) {
		ssize_t n = write(made, vmm_stub_image_start + done, size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(made);
			return ember_error_errno(err, n < 0 ? errno : EIO, "write the stub's image");
		}
		done += (size_t)n;
	}
	if (fchmod(made, 0500) < 0 ||
	    fcntl(made, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		close(made);
		return ember_error_errno(err, errno, "seal the stub's image");
	}
	fd = made;
	return fd;
}

static void *map_memfd(const char *name, size_t size, int *fd, struct ember_error *err)
{
	*fd = memfd_create(name, MFD_CLOEXEC);
	if (*fd < 0)
		return ember_error_errno(err, errno, "create memfd %s", name), NULL;
	if (ftruncate(*fd, (off_t)size) < 0)
		return ember_error_errno(err, errno, "size memfd %s", name), NULL;
	void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	if (map == MAP_FAILED)
		return ember_error_errno(err, errno, "map memfd %s", name), NULL;
	return map;
}

/* A copy of fd numbered at or above 10, close-on-exec: the spawn's dup2s
 * into 3, 4 and 5 then cannot clobber one another. */
static int high_copy(int fd)
{
	return fcntl(fd, F_DUPFD_CLOEXEC, 10);
}

static int spawn_stub(struct systrap_state *st, int mem_fd, struct ember_error *err)
{
	int exe = stub_executable(err);
	if (exe < 0)
		return -1;
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", exe);
	int fds[3] = {high_copy(st->context_fd), high_copy(st->system_fd), mem_fd >= 0 ? high_copy(mem_fd) : -1};
	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attributes;
	posix_spawn_file_actions_init(&actions);
	posix_spawnattr_init(&attributes);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&attributes, &none);
	posix_spawnattr_setsigdefault(&attributes, &all);
	posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	int rc = fds[0] < 0 || fds[1] < 0 || (mem_fd >= 0 && fds[2] < 0) ? errno : 0;
	if (rc == 0) {
		posix_spawn_file_actions_adddup2(&actions, fds[0], STUB_FD_CONTEXT);
		posix_spawn_file_actions_adddup2(&actions, fds[1], STUB_FD_SYSTEM);
		if (fds[2] >= 0)
			posix_spawn_file_actions_adddup2(&actions, fds[2], STUB_FD_MEMORY);
		char *argv[] = {"ember-stub", NULL};
		char *envp[] = {NULL};
		rc = posix_spawn(&st->stub, path, &actions, &attributes, argv, envp);
	}
	posix_spawn_file_actions_destroy(&actions);
	posix_spawnattr_destroy(&attributes);
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (rc != 0) {
		st->stub = -1;
		return ember_error_errno(err, rc, "start the systrap stub");
	}
	return 0;
}

/* The VMM thread and the stub on the CPU the VMM runs on now. */
static void pin_together(struct systrap_state *st)
{
	int cpu = sched_getcpu();
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof set, &set);
	sched_setaffinity(st->stub, sizeof set, &set);
}

static const char *stub_start_failure(int code)
{
	switch (code) {
	case 64: return "cannot ask to die with the VMM";
	case 65: return "cannot map its context area";
	case 66: return "context area of another ABI version";
	case 67: return "its parent is not the VMM";
	case 71: return "bad guest memory size";
	case 72: return "cannot unmap the host's mappings";
	case 73: return "cannot map the clock page and the vDSO";
	case 74: return "cannot map guest memory";
	case 75: return "cannot close its descriptors or limit core dumps";
	case 76: return "cannot install its signal handlers";
	case 77: return "cannot install its seccomp filter";
	default: return "exited";
	}
}

static int describe_death(const struct systrap_state *st, char *out, size_t size)
{
	int status = st->exit_status;
	if (WIFSIGNALED(status))
		return snprintf(out, size, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	return snprintf(out, size, "exited with status %d", WEXITSTATUS(status));
}

int systrap_start(struct vmm_vm *vm, int mem_fd, struct ember_error *err)
{
	struct systrap_state *st = systrap_state(vm);
	st->context = map_memfd("ember-stub-context", STUB_CONTEXT_SIZE, &st->context_fd, err);
	if (!st->context)
		return -1;
	st->control = (struct stub_control *)st->context;
	st->system = map_memfd("ember-system-pages", GUEST_SYSTEM_END, &st->system_fd, err);
	if (!st->system)
		return -1;
	vm->vvar = (struct vmm_vvar *)(st->system + GUEST_VVAR_ADDR);
	struct stub_control *c = st->control;
	c->abi_version = STUB_ABI_VERSION;
	c->memory_from_file = mem_fd >= 0;
	c->use_fsgsbase = st->use_fsgsbase;
	c->mem_size = vm->mem_size;
	c->parent_pid = (uint64_t)getpid();
	st->memory_from_file = mem_fd >= 0;
	if (spawn_stub(st, mem_fd, err) < 0)
		return -1;
	pin_together(st);
	int64_t deadline = now_ns() + START_GRACE_NS;
	while (load(&c->state) != STUB_STATE_EVENT && now_ns() < deadline) {
		struct timespec wait = {0, DEATH_CHECK_NS / 10};
		store(&c->vmm_waiting, 1);
		if (load(&c->state) == STUB_STATE_STARTING)
			futex(&c->state, FUTEX_WAIT, STUB_STATE_STARTING, &wait);
		store(&c->vmm_waiting, 0);
		int status;
		if (load(&c->state) == STUB_STATE_STARTING && waitpid(st->stub, &status, WNOHANG) == st->stub) {
			st->exited = true;
			st->exit_status = status;
			if (WIFEXITED(status))
				return ember_error_set(err, "the systrap stub failed to start: %s (status %d)",
						       stub_start_failure(WEXITSTATUS(status)), WEXITSTATUS(status));
			char why[96];
			describe_death(st, why, sizeof why);
			return ember_error_set(err, "the systrap stub failed to start: %s", why);
		}
	}
	if (systrap_wait_event(vm, err) != SYSTRAP_EVENT)
		return ember_error_set(err, "the systrap stub did not reach its first event");
	if (c->signo != SIGILL)
		return ember_error_set(err, "the systrap stub's first event is signal %d, not SIGILL", c->signo);
	return 0;
}

void systrap_stop(struct vmm_vm *vm)
{
	struct systrap_state *st = systrap_state(vm);
	if (st->stub > 0 && !st->exited) {
		kill(st->stub, SIGKILL);
		while (waitpid(st->stub, NULL, 0) < 0 && errno == EINTR)
			;
	}
	st->stub = -1;
	if (st->context)
		munmap(st->context, STUB_CONTEXT_SIZE);
	if (st->system)
		munmap(st->system, GUEST_SYSTEM_END);
	st->context = st->system = NULL;
	st->control = NULL;
	if (st->context_fd >= 0)
		close(st->context_fd);
	if (st->system_fd >= 0)
		close(st->system_fd);
	if (st->pagemap_fd >= 0)
		close(st->pagemap_fd);
	st->context_fd = st->system_fd = st->pagemap_fd = -1;
}

/* Takes the posted event: the frame and its FPU area must lie in the
 * signal stack, where the kernel put the handler's frame.  Anything else
 * was written by the guest. */
static int take_event(struct systrap_state *st)
{
	uint64_t frame = st->control->frame;
	if (frame < SIGNAL_STACK_LO || frame > SIGNAL_STACK_HI - sizeof(ucontext_t) || (frame & 7))
		return -1;
	ucontext_t *uc = (ucontext_t *)(st->context + (frame - STUB_CONTEXT_ADDR));
	uint64_t fp = (uint64_t)(uintptr_t)uc->uc_mcontext.fpregs;
	if (fp < SIGNAL_STACK_LO || fp > SIGNAL_STACK_HI - 512 || (fp & 63))
		return -1;
	uint8_t *fpstate = st->context + (fp - STUB_CONTEXT_ADDR);
	uint32_t magic, xstate_size;
	memcpy(&magic, fpstate + 464, 4);
	memcpy(&xstate_size, fpstate + 464 + 16, 4); /* struct _fpx_sw_bytes */
	uint32_t bytes = 512;
	if (magic == FP_XSTATE_MAGIC1) {
		if (xstate_size < 576 || xstate_size > SIGNAL_STACK_HI - fp)
			return -1;
		bytes = xstate_size;
	}
	st->frame = uc;
	st->fpstate = fpstate;
	st->fp_bytes = bytes;
	if (st->use_fsgsbase) {
		st->fs_base = st->control->fs_base;
		st->gs_base = st->control->gs_base;
	}
	st->parked = true;
	return 0;
}

static bool reap_if_gone(struct systrap_state *st)
{
	int status;
	if (st->exited)
		return true;
	if (waitpid(st->stub, &status, WNOHANG) != st->stub)
		return false;
	st->exited = true;
	st->exit_status = status;
	st->parked = false;
	return true;
}

static void kill_stub(struct systrap_state *st)
{
	if (st->exited)
		return;
	kill(st->stub, SIGKILL);
	int status;
	while (waitpid(st->stub, &status, 0) < 0 && errno == EINTR)
		;
	st->exited = true;
	st->exit_status = status;
	st->parked = false;
}

enum systrap_wait systrap_wait_event(struct vmm_vm *vm, struct ember_error *err)
{
	struct systrap_state *st = systrap_state(vm);
	struct stub_control *c = st->control;
	int64_t stop_deadline = 0;
	for (;;) {
		uint32_t state = load(&c->state);
		if (state == STUB_STATE_EVENT) {
			if (take_event(st) == 0)
				return SYSTRAP_EVENT;
			kill_stub(st);
			ember_error_set(err, "the guest corrupted its stub's context area");
			return SYSTRAP_DEAD;
		}
		if (st->exited)
			return SYSTRAP_DEAD;
		if (st->interrupt_requested) {
			st->interrupt_requested = 0;
			if (!stop_deadline) {
				kill(st->stub, STUB_INTERRUPT_SIGNAL);
				stop_deadline = now_ns() + STOP_GRACE_NS;
			}
		}
		int64_t wait_ns = DEATH_CHECK_NS;
		if (stop_deadline) {
			int64_t left = stop_deadline - now_ns();
			if (left <= 0) {
				kill_stub(st);
				ember_error_set(err, "the guest did not stop when interrupted (its stub ignored "
						     "signal %d)",
						STUB_INTERRUPT_SIGNAL);
				return SYSTRAP_DEAD;
			}
			if (left < wait_ns)
				wait_ns = left;
		}
		struct timespec wait = {0, wait_ns};
		store(&c->vmm_waiting, 1);
		long rc = load(&c->state) == state ? futex(&c->state, FUTEX_WAIT, state, &wait) : 0;
		int saved = errno;
		store(&c->vmm_waiting, 0);
		if (rc < 0 && saved != EAGAIN && reap_if_gone(st))
			return SYSTRAP_DEAD;
	}
}

void systrap_reply(struct vmm_vm *vm)
{
	struct systrap_state *st = systrap_state(vm);
	struct stub_control *c = st->control;
	if (!st->parked)
		return;
	if (vm->regs_dirty) {
		systrap_regs_to_frame(&vm->regs, st->frame);
		vm->regs_dirty = false;
	}
	if (st->bases_changed) {
		c->reply_fs_base = st->fs_base;
		c->reply_gs_base = st->gs_base;
		c->reply_set_bases = 1;
		st->bases_changed = false;
	}
	st->parked = false;
	store(&c->state, STUB_STATE_REPLY);
	if (load(&c->stub_waiting))
		futex(&c->state, FUTEX_WAKE, 1, NULL);
}

int systrap_advise(struct vmm_vm *vm, const uint64_t (*ranges)[2], size_t count, uint32_t advice)
{
	struct systrap_state *st = systrap_state(vm);
	struct stub_control *c = st->control;
	for (size_t first = 0; first < count; first += STUB_COMMANDS_MAX) {
		if (!st->parked)
			return -1;
		size_t n = count - first < STUB_COMMANDS_MAX ? count - first : STUB_COMMANDS_MAX;
		for (size_t i = 0; i < n; i++)
			c->commands[i] = (struct stub_command){
				.addr = ranges[first + i][0], .len = ranges[first + i][1], .advice = advice};
		c->command_count = (uint32_t)n;
		store(&c->state, STUB_STATE_COMMAND);
		if (load(&c->stub_waiting))
			futex(&c->state, FUTEX_WAKE, 1, NULL);
		int64_t deadline = now_ns() + STOP_GRACE_NS;
		while (load(&c->state) == STUB_STATE_COMMAND) {
			struct timespec wait = {0, DEATH_CHECK_NS / 10};
			store(&c->vmm_waiting, 1);
			if (load(&c->state) == STUB_STATE_COMMAND)
				futex(&c->state, FUTEX_WAIT, STUB_STATE_COMMAND, &wait);
			store(&c->vmm_waiting, 0);
			if (reap_if_gone(st))
				return -1;
			if (now_ns() > deadline) {
				kill_stub(st);
				return -1;
			}
		}
	}
	return 0;
}

static int remote_copy(struct systrap_state *st, uint64_t addr, void *local, size_t len, bool write)
{
	size_t done = 0;
	while (done < len) {
		struct iovec here = {(uint8_t *)local + done, len - done};
		struct iovec there = {(void *)(uintptr_t)(addr + done), len - done};
		ssize_t n = write ? process_vm_writev(st->stub, &here, 1, &there, 1, 0)
				  : process_vm_readv(st->stub, &here, 1, &there, 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EFAULT;
		done += (size_t)n;
	}
	return 0;
}

int systrap_read(struct vmm_vm *vm, uint64_t addr, void *dst, size_t len)
{
	struct systrap_state *st = systrap_state(vm);
	if (addr < GUEST_SYSTEM_END) {
		size_t low = GUEST_SYSTEM_END - addr < len ? (size_t)(GUEST_SYSTEM_END - addr) : len;
		memcpy(dst, st->system + addr, low);
		addr += low;
		dst = (uint8_t *)dst + low;
		len -= low;
	}
	return len ? remote_copy(st, addr, dst, len, false) : 0;
}

int systrap_write(struct vmm_vm *vm, uint64_t addr, const void *src, size_t len)
{
	struct systrap_state *st = systrap_state(vm);
	if (addr < GUEST_SYSTEM_END) {
		size_t low = GUEST_SYSTEM_END - addr < len ? (size_t)(GUEST_SYSTEM_END - addr) : len;
		memcpy(st->system + addr, src, low);
		addr += low;
		src = (const uint8_t *)src + low;
		len -= low;
	}
	return len ? remote_copy(st, addr, (void *)src, len, true) : 0;
}

void systrap_frame_to_regs(const ucontext_t *frame, struct vmm_regs *r)
{
	const greg_t *g = frame->uc_mcontext.gregs;
	r->rax = (uint64_t)g[REG_RAX];
	r->rbx = (uint64_t)g[REG_RBX];
	r->rcx = (uint64_t)g[REG_RCX];
	r->rdx = (uint64_t)g[REG_RDX];
	r->rsi = (uint64_t)g[REG_RSI];
	r->rdi = (uint64_t)g[REG_RDI];
	r->rsp = (uint64_t)g[REG_RSP];
	r->rbp = (uint64_t)g[REG_RBP];
	r->r8 = (uint64_t)g[REG_R8];
	r->r9 = (uint64_t)g[REG_R9];
	r->r10 = (uint64_t)g[REG_R10];
	r->r11 = (uint64_t)g[REG_R11];
	r->r12 = (uint64_t)g[REG_R12];
	r->r13 = (uint64_t)g[REG_R13];
	r->r14 = (uint64_t)g[REG_R14];
	r->r15 = (uint64_t)g[REG_R15];
	r->rip = (uint64_t)g[REG_RIP];
	r->rflags = (uint64_t)g[REG_EFL];
}

void systrap_regs_to_frame(const struct vmm_regs *r, ucontext_t *frame)
{
	greg_t *g = frame->uc_mcontext.gregs;
	g[REG_RAX] = (greg_t)r->rax;
	g[REG_RBX] = (greg_t)r->rbx;
	g[REG_RCX] = (greg_t)r->rcx;
	g[REG_RDX] = (greg_t)r->rdx;
	g[REG_RSI] = (greg_t)r->rsi;
	g[REG_RDI] = (greg_t)r->rdi;
	g[REG_RSP] = (greg_t)r->rsp;
	g[REG_RBP] = (greg_t)r->rbp;
	g[REG_R8] = (greg_t)r->r8;
	g[REG_R9] = (greg_t)r->r9;
	g[REG_R10] = (greg_t)r->r10;
	g[REG_R11] = (greg_t)r->r11;
	g[REG_R12] = (greg_t)r->r12;
	g[REG_R13] = (greg_t)r->r13;
	g[REG_R14] = (greg_t)r->r14;
	g[REG_R15] = (greg_t)r->r15;
	g[REG_RIP] = (greg_t)r->rip;
	g[REG_EFL] = (greg_t)r->rflags; /* the kernel keeps only what user code may set */
}
