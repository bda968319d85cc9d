/* Hostile guest: spins forever without a system call.  The VM suite runs it
 * with --timeout 1 and expects the VMM to stop the vCPU and exit 124. */
#include <stdio.h>

int main(void)
{
	puts("loop: spinning");
	fflush(stdout);
	for (volatile unsigned long i = 0;; i++)
		;
}
