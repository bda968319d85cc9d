/* ember-stub: the process the systrap platform runs a guest in.
 *
 * ember-vmm starts it (from a sealed memfd, with the descriptors of
 * stub_abi.h) and it makes itself an empty room: it maps the context area
 * it shares with the VMM, unmaps everything the kernel gave it (its stack,
 * the host's vDSO and vvar), maps guest memory at the guest's own
 * addresses — the snapshot's memory file MAP_PRIVATE, so that VMs restored
 * from one snapshot share its pages copy-on-write, or fresh anonymous
 * memory — and the VMM's clock page and vDSO read-only, closes every
 * descriptor, installs its signal handlers on a stack in the context area,
 * and finally a seccomp filter that traps every system call (SIGSYS)
 * except the few the stub's own code below makes, from its own addresses.
 * Then it raises its first event and waits for the VMM's registers.
 *
 * From then on the guest is all that runs here.  Every system call it
 * makes, and every CPU exception, arrives in stub_handler(), which posts
 * the event in the context area, wakes the VMM (futex) and sleeps until
 * the VMM has changed the signal frame's registers and replied; returning
 * from the handler resumes the guest.  The guest may write to the context
 * area and jump into this code: the VMM trusts nothing it finds there, and
 * the filter holds whatever registers the guest arrives with.
 *
 * Freestanding: no libc, no writable data, no thread-local storage. */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <asm/prctl.h>

#include "guest_layout.h"
#include "stub_abi.h"

#define KERNEL_SA_RESTORER 0x04000000UL
#define TASK_TOP           0x7ffffffff000ULL

#pragma GCC visibility push(hidden) /* one fixed image: no GOT */

extern char __stub_allowed_start[], __stub_allowed_end[], __stub_end[];

/* The only `syscall` instructions the filter lets through: a generic
 * call and the signal restorer.  Reached by the guest too, if it jumps
 * here: the filter then judges the number and arguments it brings. */
long stub_syscall(long number, long a0, long a1, long a2, long a3, long a4, long a5);
void stub_restorer(void);
__asm__(".pushsection .text.allowed,\"ax\",@progbits\n"
	".globl stub_syscall\n"
	"stub_syscall:\n"
	"	mov %rdi, %rax\n"
	"	mov %rsi, %rdi\n"
	"	mov %rdx, %rsi\n"
	"	mov %rcx, %rdx\n"
	"	mov %r8, %r10\n"
	"	mov %r9, %r8\n"
	"	mov 8(%rsp), %r9\n"
	"	syscall\n"
	"	ret\n"
	".globl stub_restorer\n"
	"stub_restorer:\n"
	"	mov $15, %eax\n" /* rt_sigreturn */
	"	syscall\n"
	"	ud2\n"
	".popsection\n");

static struct stub_control *const control = (struct stub_control *)STUB_CONTEXT_ADDR;

static __attribute__((noreturn)) void stub_exit(int status)
{
	for (;;)
		stub_syscall(SYS_exit_group, status, 0, 0, 0, 0, 0);
}

static uint32_t load(const uint32_t *word)
{
	return __atomic_load_n(word, __ATOMIC_SEQ_CST);
}

static void store(uint32_t *word, uint32_t value)
{
	__atomic_store_n(word, value, __ATOMIC_SEQ_CST);
}

static void wake_vmm(struct stub_control *c)
{
	if (load(&c->vmm_waiting))
		stub_syscall(SYS_futex, (long)&c->state, FUTEX_WAKE, 1, 0, 0, 0);
}

static void run_commands(struct stub_control *c)
{
	uint32_t count = c->command_count;
	if (count > STUB_COMMANDS_MAX)
		count = STUB_COMMANDS_MAX;
	for (uint32_t i = 0; i < count; i++) {
		struct stub_command *command = &c->commands[i];
		uint32_t advice = command->advice;
		if (advice != STUB_ADVICE_DONTNEED && advice != STUB_ADVICE_POPULATE_READ &&
		    advice != STUB_ADVICE_POPULATE_WRITE) {
			command->result = -22; /* EINVAL: the filter would end us */
			continue;
		}
		command->result = (int32_t)stub_syscall(SYS_madvise, (long)command->addr, (long)command->len,
							(long)advice, 0, 0, 0);
	}
}

/* Posts the event and serves the VMM until it replies. */
static void post_and_wait(struct stub_control *c)
{
	store(&c->state, STUB_STATE_EVENT);
	wake_vmm(c);
	for (;;) {
		uint32_t state = load(&c->state);
		if (state == STUB_STATE_REPLY)
			return;
		if (state == STUB_STATE_COMMAND) {
			run_commands(c);
			store(&c->state, STUB_STATE_EVENT);
			wake_vmm(c);
			continue;
		}
		store(&c->stub_waiting, 1);
		if (load(&c->state) == state)
			stub_syscall(SYS_futex, (long)&c->state, FUTEX_WAIT, (long)state, 0, 0, 0);
		store(&c->stub_waiting, 0);
	}
}

static uint64_t read_base(bool gs)
{
	uint64_t value;
	if (gs)
		__asm__ volatile("rdgsbase %0" : "=r"(value));
	else
		__asm__ volatile("rdfsbase %0" : "=r"(value));
	return value;
}

static void write_bases(struct stub_control *c)
{
	uint64_t fs = c->reply_fs_base, gs = c->reply_gs_base;
	if (c->use_fsgsbase) {
		__asm__ volatile("wrfsbase %0" ::"r"(fs));
		__asm__ volatile("wrgsbase %0" ::"r"(gs));
	} else {
		stub_syscall(SYS_arch_prctl, ARCH_SET_FS, (long)fs, 0, 0, 0, 0);
		stub_syscall(SYS_arch_prctl, ARCH_SET_GS, (long)gs, 0, 0, 0, 0);
	}
}

/* Every trap of the guest comes here, on the signal stack in the context
 * area, with every signal blocked. */
static void stub_handler(int signo, siginfo_t *info, void *context)
{
	struct stub_control *c = control;
	c->signo = signo;
	c->code = info->si_code;
	c->syscall_number = signo == SIGSYS ? info->si_syscall : 0;
	c->syscall_arch = signo == SIGSYS ? info->si_arch : 0;
	c->fault_address = (uint64_t)(uintptr_t)info->si_addr;
	c->frame = (uint64_t)(uintptr_t)context;
	if (c->use_fsgsbase) {
		c->fs_base = read_base(false);
		c->gs_base = read_base(true);
	}
	c->reply_set_bases = 0;
	c->command_count = 0;
	post_and_wait(c);
	if (c->reply_set_bases)
		write_bases(c);
	store(&c->state, STUB_STATE_RUNNING);
}

/* The filter: system calls from the guest (any address outside
 * .text.allowed) trap; from .text.allowed only futex wait/wake,
 * rt_sigreturn, madvise with the advice run_commands() gives, arch_prctl
 * on FS/GS and exit_group pass, and anything else kills the process. */
enum {
	F_ARCH,
	F_ARCH_CHECK,
	F_IP_HIGH,
	F_IP_HIGH_CHECK,
	F_IP_LOW,
	F_IP_LOW_START,
	F_IP_LOW_END,
	F_NR,
	F_IS_FUTEX,
	F_IS_SIGRETURN,
	F_IS_MADVISE,
	F_IS_ARCH_PRCTL,
	F_IS_EXIT_GROUP,
	F_KILL_UNLISTED,
	F_FUTEX_OP,
	F_FUTEX_WAIT,
	F_FUTEX_WAKE,
	F_FUTEX_KILL,
	F_ADVICE,
	F_ADVICE_DONTNEED,
	F_ADVICE_POPULATE_READ,
	F_ADVICE_POPULATE_WRITE,
	F_ADVICE_KILL,
	F_ARCH_CODE,
	F_ARCH_SET_GS,
	F_ARCH_SET_FS,
	F_ARCH_GET_FS,
	F_ARCH_GET_GS,
	F_ARCH_KILL,
	F_TRAP,
	F_ALLOW,
	F_KILL,
	F_COUNT
};

#define TO(target, here) ((target) - (here)-1)
#define LOAD(field)      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, field))
#define LOAD_AT(offset)  BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(offset))
#define IF_EQ(value, here, yes, no) \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(value), TO(yes, here), TO(no, here))
#define IF_GE(value, here, yes, no) \
	BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (uint32_t)(value), TO(yes, here), TO(no, here))
#define RETURN(action) BPF_STMT(BPF_RET | BPF_K, (action))

static int install_filter(void)
{
	uint64_t start = (uint64_t)(uintptr_t)__stub_allowed_start;
	uint64_t end = (uint64_t)(uintptr_t)__stub_allowed_end;
	if ((start >> 32) != ((end - 1) >> 32))
		return -1;
	struct sock_filter code[F_COUNT] = {
		[F_ARCH] = LOAD(arch),
		[F_ARCH_CHECK] = IF_EQ(AUDIT_ARCH_X86_64, F_ARCH_CHECK, F_IP_HIGH, F_TRAP),
		[F_IP_HIGH] = LOAD_AT(offsetof(struct seccomp_data, instruction_pointer) + 4),
		[F_IP_HIGH_CHECK] = IF_EQ(start >> 32, F_IP_HIGH_CHECK, F_IP_LOW, F_TRAP),
		[F_IP_LOW] = LOAD_AT(offsetof(struct seccomp_data, instruction_pointer)),
		[F_IP_LOW_START] = IF_GE(start, F_IP_LOW_START, F_IP_LOW_END, F_TRAP),
		[F_IP_LOW_END] = IF_GE(end, F_IP_LOW_END, F_TRAP, F_NR),
		[F_NR] = LOAD(nr),
		[F_IS_FUTEX] = IF_EQ(SYS_futex, F_IS_FUTEX, F_FUTEX_OP, F_IS_SIGRETURN),
		[F_IS_SIGRETURN] = IF_EQ(SYS_rt_sigreturn, F_IS_SIGRETURN, F_ALLOW, F_IS_MADVISE),
		[F_IS_MADVISE] = IF_EQ(SYS_madvise, F_IS_MADVISE, F_ADVICE, F_IS_ARCH_PRCTL),
		[F_IS_ARCH_PRCTL] = IF_EQ(SYS_arch_prctl, F_IS_ARCH_PRCTL, F_ARCH_CODE, F_IS_EXIT_GROUP),
		[F_IS_EXIT_GROUP] = IF_EQ(SYS_exit_group, F_IS_EXIT_GROUP, F_ALLOW, F_KILL_UNLISTED),
		[F_KILL_UNLISTED] = RETURN(SECCOMP_RET_KILL_PROCESS),
		[F_FUTEX_OP] = LOAD_AT(offsetof(struct seccomp_data, args[1])),
		[F_FUTEX_WAIT] = IF_EQ(FUTEX_WAIT, F_FUTEX_WAIT, F_ALLOW, F_FUTEX_WAKE),
		[F_FUTEX_WAKE] = IF_EQ(FUTEX_WAKE, F_FUTEX_WAKE, F_ALLOW, F_FUTEX_KILL),
		[F_FUTEX_KILL] = RETURN(SECCOMP_RET_KILL_PROCESS),
		[F_ADVICE] = LOAD_AT(offsetof(struct seccomp_data, args[2])),
		[F_ADVICE_DONTNEED] = IF_EQ(STUB_ADVICE_DONTNEED, F_ADVICE_DONTNEED, F_ALLOW, F_ADVICE_POPULATE_READ),
		[F_ADVICE_POPULATE_READ] =
			IF_EQ(STUB_ADVICE_POPULATE_READ, F_ADVICE_POPULATE_READ, F_ALLOW, F_ADVICE_POPULATE_WRITE),
		[F_ADVICE_POPULATE_WRITE] =
			IF_EQ(STUB_ADVICE_POPULATE_WRITE, F_ADVICE_POPULATE_WRITE, F_ALLOW, F_ADVICE_KILL),
		[F_ADVICE_KILL] = RETURN(SECCOMP_RET_KILL_PROCESS),
		[F_ARCH_CODE] = LOAD_AT(offsetof(struct seccomp_data, args[0])),
		[F_ARCH_SET_GS] = IF_EQ(ARCH_SET_GS, F_ARCH_SET_GS, F_ALLOW, F_ARCH_SET_FS),
		[F_ARCH_SET_FS] = IF_EQ(ARCH_SET_FS, F_ARCH_SET_FS, F_ALLOW, F_ARCH_GET_FS),
		[F_ARCH_GET_FS] = IF_EQ(ARCH_GET_FS, F_ARCH_GET_FS, F_ALLOW, F_ARCH_GET_GS),
		[F_ARCH_GET_GS] = IF_EQ(ARCH_GET_GS, F_ARCH_GET_GS, F_ALLOW, F_ARCH_KILL),
		[F_ARCH_KILL] = RETURN(SECCOMP_RET_KILL_PROCESS),
		[F_TRAP] = RETURN(SECCOMP_RET_TRAP),
		[F_ALLOW] = RETURN(SECCOMP_RET_ALLOW),
		[F_KILL] = RETURN(SECCOMP_RET_KILL_PROCESS),
	};
	struct sock_fprog program = {.len = F_COUNT, .filter = code};
	if (stub_syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0) != 0)
		return -1;
	return stub_syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, (long)&program, 0, 0, 0) == 0 ? 0 : -1;
}

struct kernel_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

static const int handled_signals[] = {SIGSYS, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, STUB_INTERRUPT_SIGNAL};
#define HANDLED_COUNT (sizeof handled_signals / sizeof handled_signals[0])

static int install_handlers(void)
{
	stack_t stack = {
		.ss_sp = (void *)(uintptr_t)(STUB_CONTEXT_ADDR + STUB_SIGNAL_STACK_OFFSET),
		.ss_size = STUB_SIGNAL_STACK_SIZE,
		.ss_flags = 0,
	};
	if (stub_syscall(SYS_sigaltstack, (long)&stack, 0, 0, 0, 0, 0) != 0)
		return -1;
	uint64_t handled = 0;
	for (unsigned i = 0; i < HANDLED_COUNT; i++) {
		struct kernel_sigaction action = {
			.handler = (void *)stub_handler,
			.flags = SA_SIGINFO | SA_ONSTACK | KERNEL_SA_RESTORER,
			.restorer = (void *)stub_restorer,
			.mask = ~0ULL, /* nothing interrupts the handler */
		};
		if (stub_syscall(SYS_rt_sigaction, handled_signals[i], (long)&action, 0, 8, 0, 0) != 0)
			return -1;
		handled |= 1ULL << (handled_signals[i] - 1);
	}
	uint64_t blocked = ~handled; /* nothing else is ever delivered */
	return stub_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&blocked, 0, 8, 0, 0) == 0 ? 0 : -1;
}

static long map_at(uint64_t addr, uint64_t len, int prot, int flags, int fd, uint64_t offset)
{
	long got = stub_syscall(SYS_mmap, (long)addr, (long)len, prot, flags | MAP_FIXED, fd, (long)offset);
	return got == (long)addr ? 0 : -1;
}

/* Runs on the start stack in the context area, with nothing of the kernel's
 * start-up state still needed. */
static __attribute__((noreturn, used)) void stub_build_room(void)
{
	struct stub_control *c = control;
	uint64_t mem_size = c->mem_size;
	if (mem_size < GUEST_MEM_MIN || mem_size > GUEST_MEM_MAX || (mem_size & (GUEST_LARGE_PAGE_SIZE - 1)))
		stub_exit(71);
	/* Everything the kernel mapped but our code and the context area. */
	uint64_t code_end = ((uint64_t)(uintptr_t)__stub_end + 0xfff) & ~0xfffULL;
	uint64_t context_end = STUB_CONTEXT_ADDR + STUB_CONTEXT_SIZE;
	if (stub_syscall(SYS_munmap, 0, (long)STUB_TEXT_ADDR, 0, 0, 0, 0) != 0 ||
	    (code_end < STUB_CONTEXT_ADDR &&
	     stub_syscall(SYS_munmap, (long)code_end, (long)(STUB_CONTEXT_ADDR - code_end), 0, 0, 0, 0) != 0) ||
	    stub_syscall(SYS_munmap, (long)context_end, (long)(TASK_TOP - context_end), 0, 0, 0, 0) != 0)
		stub_exit(72);
	/* The guest: the clock page and the vDSO, then program memory. */
	if (map_at(GUEST_VVAR_ADDR, GUEST_PAGE_SIZE, PROT_READ, MAP_SHARED, STUB_FD_SYSTEM, GUEST_VVAR_ADDR) < 0 ||
	    map_at(GUEST_VDSO_ADDR, GUEST_VDSO_MAX_SIZE, PROT_READ | PROT_EXEC, MAP_SHARED, STUB_FD_SYSTEM,
		   GUEST_VDSO_ADDR) < 0)
		stub_exit(73);
	int prot = PROT_READ | PROT_WRITE | PROT_EXEC;
	int rc = c->memory_from_file ? map_at(GUEST_SYSTEM_END, mem_size - GUEST_SYSTEM_END, prot,
					      MAP_PRIVATE | MAP_NORESERVE, STUB_FD_MEMORY, GUEST_SYSTEM_END)
				     : map_at(GUEST_SYSTEM_END, mem_size - GUEST_SYSTEM_END, prot,
					      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (rc < 0)
		stub_exit(74);
	/* Fresh memory in huge pages where the host has them: one fault per
	 * 2 MiB instead of 512 (as KVM's platform does). */
	if (!c->memory_from_file)
		stub_syscall(SYS_madvise, GUEST_SYSTEM_END, (long)(mem_size - GUEST_SYSTEM_END), MADV_HUGEPAGE, 0, 0,
			     0);
	struct rlimit no_core = {0, 0};
	if (stub_syscall(SYS_close_range, 0, ~0L, 0, 0, 0, 0) != 0 ||
	    stub_syscall(SYS_setrlimit, RLIMIT_CORE, (long)&no_core, 0, 0, 0, 0) != 0)
		stub_exit(75);
	if (install_handlers() < 0)
		stub_exit(76);
	if (install_filter() < 0)
		stub_exit(77);
	/* The first event: the VMM answers it with the guest's registers. */
	__asm__ volatile("ud2");
	stub_exit(78);
}

/* Entered from stub_start on the kernel's stack. */
static __attribute__((noreturn, used)) void stub_main(void)
{
	if (stub_syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0, 0) != 0)
		stub_exit(64);
	if (map_at(STUB_CONTEXT_ADDR, STUB_CONTEXT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, STUB_FD_CONTEXT, 0) < 0)
		stub_exit(65);
	struct stub_control *c = control;
	if (c->abi_version != STUB_ABI_VERSION)
		stub_exit(66);
	if ((uint64_t)stub_syscall(SYS_getppid, 0, 0, 0, 0, 0, 0) != c->parent_pid)
		stub_exit(67); /* the VMM died before we could ask to die with it */
	uint64_t top = STUB_CONTEXT_ADDR + STUB_START_STACK_OFFSET + STUB_START_STACK_SIZE;
	__asm__ volatile("mov %0, %%rsp\n"
			 "xor %%ebp, %%ebp\n"
			 "call stub_build_room\n" ::"r"(top)
			 : "memory");
	__builtin_unreachable();
}

__asm__(".pushsection .text.entry,\"ax\",@progbits\n"
	".globl stub_start\n"
	"stub_start:\n"
	"	and $-16, %rsp\n"
	"	call stub_main\n"
	"	ud2\n"
	".popsection\n");
