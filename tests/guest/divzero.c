/* Hostile guest: divides by zero.  Expected: killed by SIGFPE (exit 136). */
#include <stdio.h>

int main(void)
{
	puts("divzero: dividing by zero");
	fflush(stdout);
	volatile int zero = 0;
	volatile int v = 42 / zero;
	printf("divzero: survived, got %d\n", v);
	return 0;
}
