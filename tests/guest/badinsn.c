/* Hostile guest: executes ud2.  Expected: killed by SIGILL (exit 132). */
#include <stdio.h>

int main(void)
{
	puts("badinsn: executing ud2");
	fflush(stdout);
	__asm__ volatile("ud2");
	puts("badinsn: survived");
	return 0;
}
