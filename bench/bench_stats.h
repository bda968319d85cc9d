/* Small helpers shared by Ember's benchmark programs, on the host and inside
 * the guest (static, plain libc): reading the TSC in program order and
 * summarising a sample of cycle counts (sort, nearest-rank percentile).
 * Header-only so each program is a single compile; every function is
 * static inline.  Never used by ember-vmm itself. */
#ifndef EMBER_BENCH_STATS_H
#define EMBER_BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <x86intrin.h>

/* rdtsc kept in program order with the instructions around it. */
static inline uint64_t bench_tsc(void)
{
	_mm_lfence();
	uint64_t tsc = __rdtsc();
	_mm_lfence();
	return tsc;
}

static int bench_compare_u64(const void *left, const void *right)
{
	uint64_t a = *(const uint64_t *)left, b = *(const uint64_t *)right;
	return (a > b) - (a < b);
}

/* Sorts values[0..count) ascending, in place. */
static inline void bench_sort(uint64_t *values, size_t count)
{
	qsort(values, count, sizeof *values, bench_compare_u64);
}

/* The nearest-rank percentile (0 < percent <= 100) of sorted values; count
 * must be at least 1.  The median of an even count is the lower middle. */
static inline uint64_t bench_percentile(const uint64_t *sorted, size_t count, double percent)
{
	size_t rank = (size_t)((percent / 100.0) * (double)count + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > count)
		rank = count;
	return sorted[rank - 1];
}

/* Cycles to microseconds and nanoseconds at tsc_hz. */
static inline double bench_cycles_us(uint64_t cycles, double tsc_hz)
{
	return (double)cycles * 1e6 / tsc_hz;
}
static inline double bench_cycles_ns(uint64_t cycles, double tsc_hz)
{
	return (double)cycles * 1e9 / tsc_hz;
}

/* Parses a positive TSC frequency in Hz from text, or returns 0. */
static inline double bench_parse_hz(const char *text)
{
	char *end;
	double hz = strtod(text, &end);
	if (end == text || *end != '\0' || !(hz >= 1e6 && hz <= 1e11))
		return 0;
	return hz;
}

#endif
