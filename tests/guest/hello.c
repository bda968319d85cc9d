/* The smallest guest: prints one line and exits with argv[1] as its status
 * (0 when absent), so the VM suite can check that exit codes propagate. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	puts("hello from the guest");
	fflush(stdout);
	return argc > 1 ? atoi(argv[1]) : 0;
}
