/* Hostile guest: tries to rewrite the VMM's system structures from user
 * code.  Every mode must end in SIGSEGV (exit 139) and nothing else:
 *   stub       write to the system-call stub page (0x18000, user-readable)
 *   vvar       write to the vDSO clock page (0x19000, user-readable)
 *   pagetable  write to the page tables (0x1000, supervisor-only)
 *   gdt        write to the GDT (0x14000, supervisor-only)
 *   readpt     read the page tables (supervisor-only)
 * With no mode it runs "stub".  Before writing it checks that the stub page
 * is readable, as the design requires. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "stub";
	unsigned long addr = 0x18000;
	int read_only = 0;

	if (strcmp(mode, "vvar") == 0)
		addr = 0x19000;
	else if (strcmp(mode, "pagetable") == 0)
		addr = 0x1000;
	else if (strcmp(mode, "gdt") == 0)
		addr = 0x14000;
	else if (strcmp(mode, "readpt") == 0) {
		addr = 0x1000;
		read_only = 1;
	}
	if (strcmp(mode, "stub") == 0) {
		volatile unsigned char first = *(volatile unsigned char *)0x18000;
		printf("stubwrite: stub page readable, first byte %s\n", first ? "non-zero" : "zero");
	}
	printf("stubwrite: %s %#lx\n", read_only ? "reading" : "writing", addr);
	fflush(stdout);
	if (read_only) {
		volatile unsigned long v = *(volatile unsigned long *)addr;
		printf("stubwrite: survived, read %#lx\n", (unsigned long)v);
	} else {
		*(volatile unsigned long *)addr = 0x0b0f0b0f0b0f0b0fUL; /* ud2 ud2 ... */
		puts("stubwrite: survived the write");
	}
	fflush(stdout);
	return 0;
}
