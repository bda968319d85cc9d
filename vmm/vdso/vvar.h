/* The clock data page shared by the VMM (writer) and the vDSO (reader).
 *
 * The VMM maps this page user-readable at GUEST_VVAR_ADDR, directly below
 * the vDSO image, and rewrites it while the vCPU is stopped (at start, on
 * restore, and now and then on an exit), so guest code never sees a
 * half-written page.  The vDSO computes
 *     ns = base_ns + ((tsc - tsc_base) * tsc_mult) >> tsc_shift
 * from the guest's own rdtsc; the *_COARSE clocks use the same formula.  Layout is part of the guest ABI: keep the
 * _Static_assert in step with any change. */
#ifndef VMM_VDSO_VVAR_H
#define VMM_VDSO_VVAR_H

#include <stdint.h>

#define VMM_VVAR_VERSION 1

struct vmm_vvar {
	uint32_t version;   /* VMM_VVAR_VERSION; 0 = not ready, use syscalls */
	uint32_t seq;       /* even while stable; odd while being written */
	uint64_t tsc_base;  /* guest TSC at the base instant */
	uint64_t tsc_mult;  /* ns per tick, with tsc_shift fractional bits */
	uint32_t tsc_shift; /* the VMM picks the largest <= 63 keeping mult < 2^62 */
	uint32_t pad;
	int64_t realtime_base_ns;  /* CLOCK_REALTIME at the base instant */
	int64_t monotonic_base_ns; /* CLOCK_MONOTONIC (and BOOTTIME) at the base */
	int64_t reserved[2];       /* zero */
};

_Static_assert(sizeof(struct vmm_vvar) == 64, "vvar layout is guest ABI");

#endif
