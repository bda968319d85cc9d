/* Hostile guest: integer division that faults (#DE).
 * Usage: divzero [div|overflow] — 42/0 (the default) or INT64_MIN/-1.
 * Expected: killed by SIGFPE (exit 136). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "div";
	volatile int64_t num = 42, den = 0;
	if (strcmp(mode, "overflow") == 0) {
		num = INT64_MIN;
		den = -1;
	}
	printf("divzero: dividing (%s)\n", mode);
	fflush(stdout);
	volatile int64_t v = num / den;
	printf("divzero: survived, got %lld\n", (long long)v);
	return 0;
}
