/* clock_gettime(CLOCK_MONOTONIC) through glibc, which in a static program
 * calls the vDSO named by AT_SYSINFO_EHDR: Ember's vDSO inside ember-vmm,
 * the kernel's on the host.  1,000,000 calls in 1,000 batches of 1,000; each
 * batch is timed with rdtsc (a call is too short to time alone without the
 * timer dominating) and the per-call cost of the median batch is reported.
 * Also checks that the clock never goes backwards.  Usage: vdso_clock
 * TSC_HZ.  Prints "key value" lines: calls, min_ns, median_ns, max_ns. */
#include <stdio.h>
#include <time.h>

#include "bench_stats.h"

#define BATCHES 1000
#define CALLS_PER_BATCH 1000
#define WARMUP_CALLS 10000

int main(int argc, char **argv)
{
	double hz = argc > 1 ? bench_parse_hz(argv[1]) : 0;
	if (hz == 0) {
		fprintf(stderr, "usage: vdso_clock TSC_HZ\n");
		return 2;
	}
	static uint64_t batch_cycles[BATCHES];
	struct timespec now, previous;
	clock_gettime(CLOCK_MONOTONIC, &previous);
	for (int i = 0; i < WARMUP_CALLS; i++)
		clock_gettime(CLOCK_MONOTONIC, &now);
	for (int batch = 0; batch < BATCHES; batch++) {
		uint64_t start = bench_tsc();
		for (int i = 0; i < CALLS_PER_BATCH; i++) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			__asm__ volatile("" : : "r"(&now) : "memory");
		}
		uint64_t end = bench_tsc();
		batch_cycles[batch] = end - start;
		if (now.tv_sec < previous.tv_sec ||
		    (now.tv_sec == previous.tv_sec && now.tv_nsec < previous.tv_nsec)) {
			fprintf(stderr, "vdso_clock: CLOCK_MONOTONIC went backwards\n");
			return 1;
		}
		previous = now;
	}
	bench_sort(batch_cycles, BATCHES);
	printf("calls %d\n", BATCHES * CALLS_PER_BATCH);
	printf("min_ns %.1f\n", bench_cycles_ns(batch_cycles[0], hz) / CALLS_PER_BATCH);
	printf("median_ns %.1f\n", bench_cycles_ns(bench_percentile(batch_cycles, BATCHES, 50), hz) / CALLS_PER_BATCH);
	printf("max_ns %.1f\n", bench_cycles_ns(batch_cycles[BATCHES - 1], hz) / CALLS_PER_BATCH);
	return 0;
}
