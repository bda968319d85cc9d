/* Measures the host TSC's frequency: rdtsc against CLOCK_MONOTONIC_RAW over
 * about 200 ms, each end bracketed by TSC reads and the tightest of a few
 * tries kept.  Prints the frequency in Hz on one line.  The benchmarks pass
 * it to their guest programs, which cannot read it themselves (on this
 * machine the guest TSC equals the host TSC). */
#include <stdio.h>
#include <time.h>

#include "bench_stats.h"

/* One (tsc, nanoseconds) pair taken as close together as we can manage. */
static void sample(uint64_t *tsc, int64_t *nanoseconds)
{
	uint64_t best_window = UINT64_MAX;
	for (int attempt = 0; attempt < 20; attempt++) {
		struct timespec now;
		uint64_t before = bench_tsc();
		clock_gettime(CLOCK_MONOTONIC_RAW, &now);
		uint64_t after = bench_tsc();
		if (after - before < best_window) {
			best_window = after - before;
			*tsc = before + (after - before) / 2;
			*nanoseconds = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
		}
	}
}

int main(void)
{
	uint64_t tsc_start, tsc_end;
	int64_t ns_start, ns_end;
	sample(&tsc_start, &ns_start);
	struct timespec pause = {0, 200 * 1000 * 1000};
	nanosleep(&pause, NULL);
	sample(&tsc_end, &ns_end);
	if (ns_end <= ns_start || tsc_end <= tsc_start) {
		fprintf(stderr, "tsc_hz: clocks did not advance\n");
		return 1;
	}
	double hz = (double)(tsc_end - tsc_start) * 1e9 / (double)(ns_end - ns_start);
	printf("%.0f\n", hz);
	return 0;
}
