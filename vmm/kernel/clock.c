/* Guest time for Ember's vDSO (see clock.h): finds the guest TSC's
 * frequency and offset, and publishes the TSC-to-nanoseconds line the vDSO
 * extrapolates from, re-anchoring it on the host's clocks now and then.
 * It must never make the guest's monotonic clock step back, never read
 * anything back from guest memory, and never allocate. */
#include "clock.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <x86intrin.h>

#include "platform.h"

#define NANOSECONDS_PER_SECOND 1000000000LL

/* Tries per sample; the tightest bracket of TSC reads wins. */
#define SAMPLE_ATTEMPTS 5

/* Calibration fallback: how long to measure, and the plausible range. */
#define CALIBRATION_NANOSECONDS 20000000LL
#define TSC_HZ_MIN              1000000ULL
#define TSC_HZ_MAX              100000000000ULL

/* Re-anchor about ten times a second. */
#define REFRESH_INTERVALS_PER_SECOND 10

/* A guest found ahead of the host by d nanoseconds runs slower by d parts per
 * billion, so the host catches up in about a second; never slower than by
 * this many parts per billion (500 ppm). */
#define MAX_SLOWDOWN_PPB 500000LL

/* The multiplier stays below this, leaving room to scale ticks of up to 2^63
 * in 128 bits and to slow the rate down. */
#define TSC_MULT_LIMIT (1ULL << 62)

/* rdtsc kept in program order with the clock reads around it. */
static uint64_t clock_read_host_tsc(void)
{
	_mm_lfence();
	uint64_t tsc = __rdtsc();
	_mm_lfence();
	return tsc;
}

static int64_t clock_timespec_nanoseconds(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * NANOSECONDS_PER_SECOND + ts->tv_nsec;
}

/* The vDSO's formula: signed ticks to nanoseconds. */
static int64_t clock_ticks_to_nanoseconds(int64_t ticks, uint64_t mult, uint32_t shift)
{
	return (int64_t)(((__int128)ticks * (__int128)mult) >> shift);
}

/* Picks the largest shift <= 63 whose rounded multiplier for tsc_hz stays
 * below TSC_MULT_LIMIT. */
static void clock_choose_scale(uint64_t tsc_hz, uint64_t *mult, uint32_t *shift)
{
	for (uint32_t candidate = 63;; candidate--) {
		unsigned __int128 scaled =
			(((unsigned __int128)NANOSECONDS_PER_SECOND << candidate) + tsc_hz / 2) / tsc_hz;
		if (scaled < TSC_MULT_LIMIT || candidate == 0) {
			*mult = (uint64_t)scaled;
			*shift = candidate;
			return;
		}
	}
}

/* One reading of the host TSC and CLOCK_MONOTONIC at the same instant, the
 * tightest of SAMPLE_ATTEMPTS. */
static void clock_sample_monotonic(uint64_t *host_tsc, int64_t *monotonic_ns)
{
	uint64_t best_window = 0;
	for (int attempt = 0; attempt < SAMPLE_ATTEMPTS; attempt++) {
		struct timespec monotonic;
		uint64_t before = clock_read_host_tsc();
		clock_gettime(CLOCK_MONOTONIC, &monotonic);
		uint64_t after = clock_read_host_tsc();
		if (attempt > 0 && after - before >= best_window)
			continue;
		best_window = after - before;
		*host_tsc = before + (after - before) / 2;
		*monotonic_ns = clock_timespec_nanoseconds(&monotonic);
	}
}

/* Measures the host TSC against CLOCK_MONOTONIC over
 * CALIBRATION_NANOSECONDS. */
static int clock_calibrate(uint64_t *tsc_hz, struct ember_error *err)
{
	uint64_t first_tsc, last_tsc;
	int64_t first_ns, last_ns;
	clock_sample_monotonic(&first_tsc, &first_ns);
	struct timespec pause = {.tv_sec = 0, .tv_nsec = CALIBRATION_NANOSECONDS};
	while (nanosleep(&pause, &pause) < 0) {
		if (errno != EINTR)
			return ember_error_errno(err, errno, "calibrate TSC: nanosleep");
	}
	clock_sample_monotonic(&last_tsc, &last_ns);
	if (last_ns <= first_ns || last_tsc <= first_tsc)
		return ember_error_set(err, "calibrate TSC: clocks did not advance");
	unsigned __int128 hz = (unsigned __int128)(last_tsc - first_tsc) * NANOSECONDS_PER_SECOND /
			       (uint64_t)(last_ns - first_ns);
	if (hz < TSC_HZ_MIN || hz > TSC_HZ_MAX)
		return ember_error_set(err, "calibrate TSC: implausible frequency %llu Hz",
				       (unsigned long long)hz);
	*tsc_hz = (uint64_t)hz;
	return 0;
}

/* The kernel's own TSC-to-nanoseconds scale from a perf event's user page
 * (set where the kernel's clock is the TSC), or 0. */
static uint64_t tsc_hz_from_perf(void)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.size = sizeof attr,
		.config = PERF_COUNT_SW_DUMMY,
		.exclude_kernel = 1,
		.exclude_hv = 1,
	};
	int fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0)
		return 0;
	long page_size = sysconf(_SC_PAGESIZE);
	struct perf_event_mmap_page *page = mmap(NULL, (size_t)page_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (page == MAP_FAILED)
		return 0;
	uint64_t hz = 0;
	if (page->cap_user_time && page->time_mult && page->time_shift < 64)
		hz = (uint64_t)(((unsigned __int128)NANOSECONDS_PER_SECOND << page->time_shift) / page->time_mult);
	munmap(page, (size_t)page_size);
	return hz;
}

/* The kernel's cpu_khz from /proc/cpuinfo, where it is the TSC's rate: on
 * CPUs without APERF/MPERF the kernel reports the frequency it measured or
 * the hypervisor gave it (to 1 kHz), otherwise a momentary clock.  0 when
 * it cannot be trusted. */
static uint64_t tsc_hz_from_cpuinfo(void)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	if (!f)
		return 0;
	char line[4096];
	double mhz = 0;
	bool constant = false, aperfmperf = false, have_flags = false;
	while (fgets(line, sizeof line, f) && !(mhz > 0 && have_flags)) {
		if (mhz == 0 && sscanf(line, "cpu MHz : %lf", &mhz) == 1)
			continue;
		if (!have_flags && strncmp(line, "flags", 5) == 0) {
			have_flags = true;
			constant = strstr(line, " constant_tsc") != NULL;
			aperfmperf = strstr(line, " aperfmperf") != NULL;
		}
	}
	fclose(f);
	if (!constant || aperfmperf || mhz <= 0)
		return 0;
	return (uint64_t)(mhz * 1000.0 + 0.5) * 1000;
}

uint64_t vmm_clock_host_tsc_hz(const char **source)
{
	static uint64_t hz;
	static const char *found = "none";
	if (!hz) {
		uint64_t value = tsc_hz_from_perf();
		const char *from = "perf_event time_mult";
		if (!value) {
			value = tsc_hz_from_cpuinfo();
			from = "/proc/cpuinfo";
		}
		if (value >= TSC_HZ_MIN && value <= TSC_HZ_MAX) {
			hz = value;
			found = from;
		}
	}
	if (source)
		*source = found;
	return hz;
}

int vmm_clock_init(struct vmm_clock *clock, const struct vmm_tsc_source *tsc, struct ember_error *err)
{
	memset(clock, 0, sizeof *clock);
	if (tsc && tsc->hz) {
		clock->tsc_hz = tsc->hz;
		clock->tsc_hz_source = tsc->hz_source;
	} else {
		if (clock_calibrate(&clock->tsc_hz, err) < 0)
			return ember_error_wrap(err, "guest clock");
		clock->tsc_hz_source = "calibration";
	}
	clock->guest_tsc_offset = tsc ? tsc->offset : 0;
	clock->guest_tsc_offset_source = tsc && tsc->offset_source ? tsc->offset_source : "none";

	clock_choose_scale(clock->tsc_hz, &clock->tsc_mult_nominal, &clock->tsc_shift);
	clock->refresh_interval_ticks = clock->tsc_hz / REFRESH_INTERVALS_PER_SECOND;
	return 0;
}

void vmm_clock_set_guest_tsc_offset(struct vmm_clock *clock, int64_t offset)
{
	clock->guest_tsc_offset = offset;
	clock->guest_tsc_offset_source = "set";
	clock->published = 0;
}

void vmm_clock_set_guest_monotonic_offset(struct vmm_clock *clock, int64_t offset_ns)
{
	clock->guest_monotonic_offset_ns = offset_ns;
	clock->published = 0;
}

/* The host's CLOCK_MONOTONIC and CLOCK_REALTIME, both as of one host TSC
 * value: monotonic is read between two TSC reads, realtime between the
 * second and a third, and realtime is moved back to the monotonic instant.
 * The tightest of SAMPLE_ATTEMPTS. */
struct clock_sample {
	uint64_t host_tsc;
	int64_t monotonic_ns;
	int64_t realtime_ns;
};

static void clock_take_sample(const struct vmm_clock *clock, struct clock_sample *out)
{
	uint64_t best_window = 0;
	for (int attempt = 0; attempt < SAMPLE_ATTEMPTS; attempt++) {
		struct timespec monotonic, realtime;
		uint64_t before = clock_read_host_tsc();
		clock_gettime(CLOCK_MONOTONIC, &monotonic);
		uint64_t middle = clock_read_host_tsc();
		clock_gettime(CLOCK_REALTIME, &realtime);
		uint64_t after = clock_read_host_tsc();
		if (attempt > 0 && after - before >= best_window)
			continue;
		best_window = after - before;
		uint64_t tsc_at_monotonic = before + (middle - before) / 2;
		uint64_t tsc_at_realtime = middle + (after - middle) / 2;
		out->host_tsc = tsc_at_monotonic;
		out->monotonic_ns = clock_timespec_nanoseconds(&monotonic);
		out->realtime_ns = clock_timespec_nanoseconds(&realtime) -
				   clock_ticks_to_nanoseconds((int64_t)(tsc_at_realtime - tsc_at_monotonic),
							      clock->tsc_mult_nominal, clock->tsc_shift);
	}
}

/* Writes *next into the page under its sequence counter, version last.  On
 * x86 the fences only stop the compiler reordering; stores are not
 * reordered with stores. */
static void clock_write_page(struct vmm_vvar *page, const struct vmm_vvar *next)
{
	uint32_t sequence = __atomic_load_n(&page->seq, __ATOMIC_RELAXED) | 1;
	__atomic_store_n(&page->seq, sequence, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	page->tsc_base = next->tsc_base;
	page->tsc_mult = next->tsc_mult;
	page->tsc_shift = next->tsc_shift;
	page->pad = 0;
	page->realtime_base_ns = next->realtime_base_ns;
	page->monotonic_base_ns = next->monotonic_base_ns;
	page->reserved[0] = 0;
	page->reserved[1] = 0;
	__atomic_store_n(&page->seq, sequence + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&page->version, (uint32_t)VMM_VVAR_VERSION, __ATOMIC_RELEASE);
}

void vmm_clock_publish(struct vmm_clock *clock, struct vmm_vvar *page)
{
	struct clock_sample sample;
	clock_take_sample(clock, &sample);

	struct vmm_vvar next = {
		.version = VMM_VVAR_VERSION,
		.tsc_base = sample.host_tsc + (uint64_t)clock->guest_tsc_offset,
		.tsc_mult = clock->tsc_mult_nominal,
		.tsc_shift = clock->tsc_shift,
		.realtime_base_ns = sample.realtime_ns,
		.monotonic_base_ns = sample.monotonic_ns + clock->guest_monotonic_offset_ns,
	};

	if (clock->published) {
		/* What the guest reads at this instant under the old line. */
		int64_t predicted =
			clock->last.monotonic_base_ns +
			clock_ticks_to_nanoseconds((int64_t)(next.tsc_base - clock->last.tsc_base),
						   clock->last.tsc_mult, clock->last.tsc_shift);
		int64_t ahead = predicted - next.monotonic_base_ns;
		if (ahead > 0) {
			int64_t slowdown_ppb = ahead < MAX_SLOWDOWN_PPB ? ahead : MAX_SLOWDOWN_PPB;
			next.monotonic_base_ns += ahead;
			next.realtime_base_ns += ahead;
			next.tsc_mult -= (uint64_t)((unsigned __int128)next.tsc_mult *
						    (uint64_t)slowdown_ppb / NANOSECONDS_PER_SECOND);
			clock->steer_count++;
		}
	}

	clock_write_page(page, &next);
	clock->last = next;
	clock->published = 1;
	clock->last_publish_host_tsc = sample.host_tsc;
	clock->publish_count++;
}

void vmm_clock_maybe_refresh(struct vmm_clock *clock, struct vmm_vvar *page)
{
	if (clock->published && __rdtsc() - clock->last_publish_host_tsc < clock->refresh_interval_ticks)
		return;
	vmm_clock_publish(clock, page);
}

int vmm_clock_guest_time(const struct vmm_clock *clock, clockid_t clock_id, struct timespec *out)
{
	int64_t base_ns;
	switch (clock_id) {
	case CLOCK_REALTIME:
	case CLOCK_REALTIME_COARSE: base_ns = clock->last.realtime_base_ns; break;
	case CLOCK_MONOTONIC:
	case CLOCK_MONOTONIC_RAW:
	case CLOCK_MONOTONIC_COARSE:
	case CLOCK_BOOTTIME: base_ns = clock->last.monotonic_base_ns; break;
	default: return -1;
	}
	if (!clock->published)
		return -1;
	uint64_t guest_tsc = clock_read_host_tsc() + (uint64_t)clock->guest_tsc_offset;
	int64_t nanoseconds =
		base_ns + clock_ticks_to_nanoseconds((int64_t)(guest_tsc - clock->last.tsc_base),
						     clock->last.tsc_mult, clock->last.tsc_shift);
	int64_t seconds = nanoseconds / NANOSECONDS_PER_SECOND;
	int64_t remainder = nanoseconds % NANOSECONDS_PER_SECOND;
	if (remainder < 0) {
		remainder += NANOSECONDS_PER_SECOND;
		seconds -= 1;
	}
	out->tv_sec = seconds;
	out->tv_nsec = remainder;
	return 0;
}
