/* Hostile guest: executes an instruction user code may not run.
 * Usage: badinsn [MODE], expected exit status in parentheses:
 *   ud2 (132, SIGILL, the default)   int3 (133, SIGTRAP)
 *   hlt, cli, rdmsr, movcr3 (139, SIGSEGV: #GP for a privileged instruction) */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "ud2";
	printf("badinsn: executing %s\n", mode);
	fflush(stdout);
	if (strcmp(mode, "ud2") == 0)
		__asm__ volatile("ud2");
	else if (strcmp(mode, "int3") == 0)
		__asm__ volatile("int3");
	else if (strcmp(mode, "hlt") == 0)
		__asm__ volatile("hlt");
	else if (strcmp(mode, "cli") == 0)
		__asm__ volatile("cli");
	else if (strcmp(mode, "rdmsr") == 0)
		__asm__ volatile("xor %%ecx, %%ecx\n rdmsr" ::: "eax", "ecx", "edx");
	else if (strcmp(mode, "movcr3") == 0)
		__asm__ volatile("mov %%cr3, %%rax" ::: "rax");
	else {
		printf("badinsn: unknown mode %s\n", mode);
		return 2;
	}
	printf("badinsn: survived %s\n", mode);
	return 0;
}
