/* Hostile guest: reads through a null pointer.  Expected: killed by
 * SIGSEGV (exit 139), with a one-line reason naming the signal. */
#include <stdio.h>

int main(void)
{
	puts("nullderef: reading address 0");
	fflush(stdout);
	volatile int *p = (volatile int *)0;
	int v = *p;
	printf("nullderef: survived, read %d\n", v);
	return 0;
}
