/* Hostile guest: forges exits to the VMM from user code.  It loads every
 * general register (and sometimes RFLAGS) with random values, then runs one
 * instruction that leaves the VM or traps: `out` to the system-call and
 * exception ports, `in`/`out` on other ports, string I/O with wild pointers
 * and counts, a jump into the VMM's stubs, `int n`, `sysenter`, or a real
 * `syscall` with wild registers.  If the VMM answers and resumes it, the
 * next attempt follows with new values.
 *
 * Usage: forged_out MODE SEED [COUNT]
 * Expected: the guest is killed by a signal or runs to its end; either way
 * the VMM exits with a status in 0..255 and reports no internal error.
 * The suite runs every mode with a few fixed seeds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Register image loaded before the forged instruction, in this order. */
enum { R_RAX, R_RBX, R_RCX, R_RDX, R_RSI, R_RDI, R_RBP, R_R8, R_R9, R_R10, R_R11, R_R12, R_R13,
       R_R14, R_R15, R_RSP, R_FLAGS, R_COUNT };

unsigned long forge_regs[R_COUNT];
unsigned long forge_saved_rsp;
unsigned long forge_target;

/* Each forge_* function saves the callee-saved registers and the stack
 * pointer, loads forge_regs into every register (RFLAGS through popf on
 * the real stack first), runs its instruction, and, if control comes back,
 * restores the stack and returns. */
#define FORGE_PROLOGUE                                                                      \
	"push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"          \
	"mov %rsp, forge_saved_rsp(%rip)\n"                                                 \
	"push forge_regs+128(%rip)\n popfq\n"                                               \
	"mov forge_regs+8(%rip), %rbx\n mov forge_regs+16(%rip), %rcx\n"                    \
	"mov forge_regs+24(%rip), %rdx\n mov forge_regs+32(%rip), %rsi\n"                   \
	"mov forge_regs+40(%rip), %rdi\n mov forge_regs+48(%rip), %rbp\n"                   \
	"mov forge_regs+56(%rip), %r8\n mov forge_regs+64(%rip), %r9\n"                     \
	"mov forge_regs+72(%rip), %r10\n mov forge_regs+80(%rip), %r11\n"                   \
	"mov forge_regs+88(%rip), %r12\n mov forge_regs+96(%rip), %r13\n"                   \
	"mov forge_regs+104(%rip), %r14\n mov forge_regs+112(%rip), %r15\n"                 \
	"mov forge_regs+120(%rip), %rsp\n mov forge_regs+0(%rip), %rax\n"
#define FORGE_EPILOGUE                                                                      \
	"mov forge_saved_rsp(%rip), %rsp\n"                                                 \
	"push $0x202\n popfq\n"                                                             \
	"pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n ret\n"
#define FORGE_FN(name, insn)                                                                \
	void name(void);                                                                    \
	__asm__(".text\n .globl " #name "\n .type " #name ",@function\n" #name ":\n"       \
		FORGE_PROLOGUE insn "\n" #name "_back:\n" FORGE_EPILOGUE)

FORGE_FN(forge_out_syscall_port, "out %al, $0x10");
FORGE_FN(forge_out_exception_port, "out %al, %dx");
FORGE_FN(forge_out_dx, "out %al, %dx");
FORGE_FN(forge_outw_dx, "out %ax, %dx");
FORGE_FN(forge_outl_syscall_port, "out %eax, $0x10");
FORGE_FN(forge_in_dx, "in %dx, %al");
FORGE_FN(forge_inl_dx, "in %dx, %eax");
FORGE_FN(forge_rep_outsb, "rep outsb");
FORGE_FN(forge_rep_insb, "rep insb");
FORGE_FN(forge_jump, "jmp *forge_target(%rip)");
FORGE_FN(forge_int80, "int $0x80");
FORGE_FN(forge_int_pf, "int $0x0e");
FORGE_FN(forge_int_ff, "int $0xff");
FORGE_FN(forge_int_gp, "int $0x0d");
FORGE_FN(forge_sysenter, "sysenter");
FORGE_FN(forge_syscall, "syscall");

static unsigned long rng_state;

static unsigned long next_random(void)
{
	unsigned long x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return x;
}

static unsigned char scratch[65536];

/* A register value: mostly random, sometimes an edge case. */
static unsigned long wild_value(void)
{
	static const unsigned long edges[] = {
		0, 1, 0x10, 0x1000, 0x18000, 0x19000, 0x200000, 0x7fff00000000UL,
		0x8000000000000000UL, ~0UL, 0xffffffffUL, 0x7fffffffffffffffUL,
	};
	switch (next_random() % 4) {
	case 0:
		return edges[next_random() % (sizeof edges / sizeof edges[0])];
	case 1:
		return (unsigned long)scratch + next_random() % sizeof scratch;
	default:
		return next_random();
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: forged_out MODE SEED [COUNT]\n");
		return 2;
	}
	const char *mode = argv[1];
	rng_state = strtoul(argv[2], NULL, 0) * 0x9e3779b97f4a7c15UL + 1;
	int count = argc > 3 ? atoi(argv[3]) : 200;
	void (*forge)(void) = NULL;
	int port_low = -1, port_high = -1, keep_rsp = 0;

	if (strcmp(mode, "syscall-port") == 0)
		forge = forge_out_syscall_port;
	else if (strcmp(mode, "syscall-port-wide") == 0)
		forge = forge_outl_syscall_port;
	else if (strcmp(mode, "exception-port") == 0)
		forge = forge_out_exception_port, port_low = 0x20, port_high = 0x3f;
	else if (strcmp(mode, "low-port") == 0)
		forge = forge_out_dx, port_low = 0, port_high = 0x3f;
	else if (strcmp(mode, "high-port") == 0)
		forge = forge_outw_dx, port_low = 0x40, port_high = 0xffff;
	else if (strcmp(mode, "in-port") == 0)
		forge = forge_in_dx, port_low = 0, port_high = 0x3f;
	else if (strcmp(mode, "in-port-wide") == 0)
		forge = forge_inl_dx, port_low = 0, port_high = 0xffff;
	else if (strcmp(mode, "rep-outsb") == 0)
		forge = forge_rep_outsb, port_low = 0x10, port_high = 0x3f;
	else if (strcmp(mode, "rep-insb") == 0)
		forge = forge_rep_insb, port_low = 0x10, port_high = 0x3f;
	else if (strcmp(mode, "stub-syscall") == 0)
		forge = forge_jump, forge_target = 0x18000;
	else if (strcmp(mode, "stub-exception") == 0)
		forge = forge_jump;
	else if (strcmp(mode, "int80") == 0)
		forge = forge_int80;
	else if (strcmp(mode, "int-pf") == 0)
		forge = forge_int_pf;
	else if (strcmp(mode, "int-gp") == 0)
		forge = forge_int_gp;
	else if (strcmp(mode, "int-ff") == 0)
		forge = forge_int_ff;
	else if (strcmp(mode, "sysenter") == 0)
		forge = forge_sysenter;
	else if (strcmp(mode, "syscall-wild") == 0)
		forge = forge_syscall;
	else {
		fprintf(stderr, "forged_out: unknown mode %s\n", mode);
		return 2;
	}
	printf("forged_out: %s seed %s\n", mode, argv[2]);
	fflush(stdout);

	for (int i = 0; i < count; i++) {
		for (int r = 0; r < R_COUNT; r++)
			forge_regs[r] = wild_value();
		if (port_low >= 0)
			forge_regs[R_RDX] = (unsigned long)(port_low +
							    (int)(next_random() % (unsigned)(port_high - port_low + 1)));
		if (keep_rsp)
			forge_regs[R_RSP] = (unsigned long)(scratch + sizeof scratch - 64);
		/* RFLAGS: the reserved bit 1 and IF always; the arithmetic flags
		 * and DF at random; TF (the next instruction traps) rarely. */
		forge_regs[R_FLAGS] = (forge_regs[R_FLAGS] & 0x0cd5) | 0x202;
		if (next_random() % 256 == 0)
			forge_regs[R_FLAGS] |= 0x100;
		if (strcmp(mode, "stub-exception") == 0)
			forge_target = 0x18100 + 4 * (next_random() % 32);
		/* Half the time make the "return address" a real one, so a VMM
		 * that resumes at RCX comes back here. */
		if (next_random() % 2) {
			extern char forge_out_syscall_port_back[];
			forge_regs[R_RCX] = (unsigned long)forge_out_syscall_port_back;
			forge_regs[R_RSP] = (unsigned long)(scratch + sizeof scratch - 64);
			forge_regs[R_FLAGS] = 0x202;
		}
		forge();
	}
	printf("forged_out: survived %d attempts\n", count);
	return 0;
}
