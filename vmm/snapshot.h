/* Saving a paused microVM to a snapshot directory and building a new
 * process from one (the format itself is snapshot/snap_state.h).
 *
 * vmm_snapshot_save() is called by the vCPU thread while the guest is
 * paused; it writes into a temporary directory beside DIR, fsyncs, and
 * renames it into place, so DIR is either absent or complete.
 * vmm_snapshot_restore() never writes the snapshot directory: guest memory
 * is mapped copy-on-write, so one snapshot serves many VMs at once. */
#ifndef VMM_SNAPSHOT_H
#define VMM_SNAPSHOT_H

#include "process.h"

/* Saves the paused guest into `dir`, which must not exist.  -1 with err. */
int vmm_snapshot_save(struct vmm_process *process, const char *dir, struct ember_error *err);

/* Builds `process` (zeroed) from the snapshot in `dir`: validates the
 * state file, checks this host can run it, maps memory, rebuilds the
 * kernel state (re-opening files in their layers and refusing any that
 * changed), restores the vCPU and publishes fresh clocks.  -1 with err
 * before any guest code runs. */
int vmm_snapshot_restore(struct vmm_process *process, const char *dir, struct ember_error *err);

#endif
