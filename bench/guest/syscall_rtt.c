/* System-call round trip: getpid through a raw `syscall` instruction,
 * 100,000 times, each call timed on its own with rdtsc.  Inside ember-vmm
 * every call is one exit to the VMM and back; on the host it is a real
 * kernel entry.  Usage: syscall_rtt TSC_HZ [CALLS].  Prints "key value"
 * lines: calls, min_us, median_us, p99_us, max_us. */
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

#include "bench_stats.h"

#define DEFAULT_CALLS 100000
#define WARMUP_CALLS 100

static inline long raw_getpid(void)
{
	long result;
	__asm__ volatile("syscall" : "=a"(result) : "a"((long)SYS_getpid) : "rcx", "r11", "memory");
	return result;
}

int main(int argc, char **argv)
{
	double hz = argc > 1 ? bench_parse_hz(argv[1]) : 0;
	long calls = argc > 2 ? strtol(argv[2], NULL, 10) : DEFAULT_CALLS;
	if (hz == 0 || calls < 1 || calls > 10000000) {
		fprintf(stderr, "usage: syscall_rtt TSC_HZ [CALLS]\n");
		return 2;
	}
	uint64_t *cycles = malloc((size_t)calls * sizeof *cycles);
	if (!cycles) {
		perror("syscall_rtt: malloc");
		return 1;
	}
	memset(cycles, 0, (size_t)calls * sizeof *cycles); /* first touches before timing */
	long pid = raw_getpid();
	for (int i = 0; i < WARMUP_CALLS; i++)
		raw_getpid();
	for (long i = 0; i < calls; i++) {
		uint64_t start = bench_tsc();
		long answer = raw_getpid();
		uint64_t end = bench_tsc();
		if (answer != pid) {
			fprintf(stderr, "syscall_rtt: getpid returned %ld, then %ld\n", pid, answer);
			return 1;
		}
		cycles[i] = end - start;
	}
	bench_sort(cycles, (size_t)calls);
	printf("calls %ld\n", calls);
	printf("min_us %.3f\n", bench_cycles_us(cycles[0], hz));
	printf("median_us %.3f\n", bench_cycles_us(bench_percentile(cycles, (size_t)calls, 50), hz));
	printf("p99_us %.3f\n", bench_cycles_us(bench_percentile(cycles, (size_t)calls, 99), hz));
	printf("max_us %.3f\n", bench_cycles_us(cycles[calls - 1], hz));
	free(cycles);
	return 0;
}
