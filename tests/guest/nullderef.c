/* Hostile guest: touches memory it has no right to.
 * Usage: nullderef [MODE] — read (the default) or write address 0, exec
 * (call address 0), outside (read 0x7fff00000000, beyond guest memory),
 * noncanonical (read 0x8000000000000000: #GP), kernel (read
 * 0xffffffff81000000).  Expected: killed by SIGSEGV (exit 139). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "read";
	unsigned long addr = 0;
	if (strcmp(mode, "outside") == 0)
		addr = 0x7fff00000000UL;
	else if (strcmp(mode, "noncanonical") == 0)
		addr = 0x8000000000000000UL;
	else if (strcmp(mode, "kernel") == 0)
		addr = 0xffffffff81000000UL;
	printf("nullderef: %s at %#lx\n", mode, addr);
	fflush(stdout);
	if (strcmp(mode, "write") == 0) {
		*(volatile int *)addr = 1;
	} else if (strcmp(mode, "exec") == 0) {
		void (*volatile fn)(void) = (void (*)(void))addr;
		fn();
	} else {
		int v = *(volatile int *)addr;
		printf("nullderef: survived, read %d\n", v);
	}
	puts("nullderef: survived");
	return 0;
}
