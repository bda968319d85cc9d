/* The first instruction of a program: `_start` reads the TSC straight away,
 * writes the 8-byte value to stdout with a raw write(2) and ends with
 * exit_group(0) — no libc, no start files.  The host driver (spawn_time
 * --first-insn) subtracts its own TSC read taken just before posix_spawn:
 * inside ember-vmm that is process start to the guest's first instruction;
 * run directly on the host it is the same for a native process, and its
 * spawn-to-exit time is the baseline cost of a trivial process.
 * Build: gcc -static -nostdlib -nostartfiles. */

__asm__(".text\n"
	".globl _start\n"
	".type _start, @function\n"
	"_start:\n"
	"	rdtsc\n"                /* first instruction: edx:eax = TSC */
	"	shl $32, %rdx\n"
	"	or %rdx, %rax\n"
	"	push %rax\n"
	"	mov $1, %eax\n"         /* write(1, rsp, 8) */
	"	mov $1, %edi\n"
	"	mov %rsp, %rsi\n"
	"	mov $8, %edx\n"
	"	syscall\n"
	"	mov $231, %eax\n"       /* exit_group(0) */
	"	xor %edi, %edi\n"
	"	syscall\n"
	"	ud2\n"
	".size _start, . - _start\n");
