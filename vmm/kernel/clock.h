/* The VMM side of guest time: learns how the guest's TSC relates to the
 * host's clocks and publishes that relation in the clock data page
 * (struct vmm_vvar, vdso/vvar.h) that the guest's vDSO reads, so the guest
 * reads CLOCK_REALTIME and CLOCK_MONOTONIC with rdtsc instead of exits.
 *
 * The vCPU loop calls vmm_clock_init once, vmm_clock_publish before the
 * guest first runs (and after a restore), and vmm_clock_maybe_refresh on
 * exits.  The page is written only while the vCPU is stopped, under its
 * sequence counter.  This module must never let the guest's monotonic clock
 * run backwards between two publishes: when the guest's extrapolation has
 * run ahead of the host it holds the guest's time and slows its rate a
 * little instead of stepping it back.  It never reads the page back: what
 * was published is remembered here, so a page the guest could have seen
 * corrupted would change nothing.  Nothing here allocates or ends the
 * process. */
#ifndef VMM_CLOCK_H
#define VMM_CLOCK_H

#include <stdint.h>
#include <time.h>

#include "error.h"
#include "vdso/vvar.h"

/* The vDSO image (build/vdso/vdso.so) embedded by vdso/vdso_blob.S: bytes
 * to copy verbatim to GUEST_VDSO_ADDR.  Its size is
 * vmm_vdso_image_end - vmm_vdso_image_start; the linker script keeps it
 * within GUEST_VDSO_MAX_SIZE, and the loader should check that again. */
extern const unsigned char vmm_vdso_image_start[];
extern const unsigned char vmm_vdso_image_end[];

struct vmm_clock {
	/* Guest TSC ticks per second, and where that figure came from
	 * (the platform's source, e.g. "KVM_GET_TSC_KHZ", or "calibration"). */
	uint64_t tsc_hz;
	const char *tsc_hz_source;

	/* Guest TSC = host TSC + guest_tsc_offset (modulo 2^64), and where
	 * the offset came from ("KVM_VCPU_TSC_OFFSET", "none" = 0, or "set"
	 * by vmm_clock_set_guest_tsc_offset). */
	int64_t guest_tsc_offset;
	const char *guest_tsc_offset_source;

	/* Guest CLOCK_MONOTONIC = host CLOCK_MONOTONIC + this (0 unless a
	 * restore set it; see vmm_clock_set_guest_monotonic_offset). */
	int64_t guest_monotonic_offset_ns;

	/* ns = (ticks * tsc_mult_nominal) >> tsc_shift at exactly tsc_hz;
	 * tsc_shift is the largest <= 63 that keeps the multiplier below
	 * 2^62, so rounding costs under 1e-9 ns per second. */
	uint64_t tsc_mult_nominal;
	uint32_t tsc_shift;

	/* Host TSC ticks between refreshes (about 100 ms). */
	uint64_t refresh_interval_ticks;

	/* The last publish: whether there was one since init or the last
	 * offset change, a copy of what was written, and the host TSC at that
	 * moment.  publish_count and steer_count are statistics (steer_count:
	 * publishes that had to hold the guest's time and slow it). */
	int published;
	struct vmm_vvar last;
	uint64_t last_publish_host_tsc;
	uint64_t publish_count;
	uint64_t steer_count;
};

/* Sets up *clock for a guest whose TSC the platform describes (`tsc`:
 * its frequency and offset from the host's TSC, platform.h).  Without a
 * frequency (tsc NULL or hz 0) the clock calibrates the TSC for 20 ms
 * against the host's CLOCK_MONOTONIC.  Publishes nothing.  Returns 0, or
 * -1 with err set when no usable frequency can be found.  Assumes the host
 * TSC is invariant. */
struct vmm_tsc_source;
int vmm_clock_init(struct vmm_clock *clock, const struct vmm_tsc_source *tsc, struct ember_error *err);

/* The host TSC's frequency as the host kernel knows it, without measuring:
 * from a perf event's time scale where the kernel clocks by the TSC, else
 * from /proc/cpuinfo where that reports the TSC's rate.  0 when neither
 * can be trusted (then calibrate).  *source names the one used.  Read
 * once per process. */
uint64_t vmm_clock_host_tsc_hz(const char **source);

/* Overrides the guest TSC offset (guest TSC = host TSC + offset), for hosts
 * where the guest's rdtsc does not follow what KVM reports (on PVM, user
 * code may read the raw host TSC: offset 0).  Forgets the last publish, so
 * the next publish starts the guest's clocks afresh from the host's: call
 * it before the guest runs. */
void vmm_clock_set_guest_tsc_offset(struct vmm_clock *clock, int64_t offset);

/* Makes the guest's CLOCK_MONOTONIC (and BOOTTIME) the host's plus
 * offset_ns, so that a guest restored from a snapshot, perhaps on another
 * host, continues from the time it was saved at instead of jumping back.
 * Forgets the last publish like vmm_clock_set_guest_tsc_offset; call it
 * before the restored guest runs, then publish. */
void vmm_clock_set_guest_monotonic_offset(struct vmm_clock *clock, int64_t offset_ns);

/* Samples the host's CLOCK_MONOTONIC, CLOCK_REALTIME and TSC together (the
 * tightest of a few tries) and writes *page: sequence made odd, fields
 * written, sequence made even, version last.  page is the VMM's own mapping
 * of the guest's vvar page; the vCPU must be stopped.  If the guest's time,
 * extrapolated from the previous publish, is ahead of the host's, the guest
 * keeps its time and runs slower (by at most 500 ppm) until the host has
 * caught up, so neither clock ever goes back.  Cannot fail. */
void vmm_clock_publish(struct vmm_clock *clock, struct vmm_vvar *page);

/* Publishes if nothing has been published yet or more than
 * refresh_interval_ticks (~100 ms) of host TSC have passed since the last
 * publish; otherwise costs one rdtsc.  Call it on VM exits to bound the
 * drift between the guest's clocks and the host's. */
void vmm_clock_maybe_refresh(struct vmm_clock *clock, struct vmm_vvar *page);

/* The time the guest's vDSO would read right now for clock_id, computed on
 * the host from the last publish, into *out; for a system-call layer that
 * must answer clock_gettime consistently with the vDSO.  Returns 0, or -1
 * (not a failure: read the host's clock instead) if clock_id is not one the
 * page serves (REALTIME, MONOTONIC, MONOTONIC_RAW, BOOTTIME and the two
 * COARSE clocks) or nothing has been published since init or the last
 * offset change. */
int vmm_clock_guest_time(const struct vmm_clock *clock, clockid_t clock_id, struct timespec *out);

#endif
