/* Packing snapshot directories into one LZ4 file, unpacking, verifying.
 *
 * A snapshot directory (written by ember-vmm, see snap_state.h) holds
 * exactly `state` and `memory`.  snap_pack() turns it into one LZ4 frame
 * (block and content checksums on, 4 MiB blocks) around the archive of
 * pack_archive.h: only data is stored — holes and all-zero 4 KiB pages are
 * left out, so a 16 GiB memory file costs what its data costs.
 * snap_unpack() treats a packed file as hostile: a frame without a content
 * checksum, any LZ4 error or checksum mismatch, trailing bytes, and
 * everything the archive parser refuses end it; it writes a temporary
 * directory beside the target, verifies it, and renames it into place, so
 * on failure nothing is left behind.  Everything streams through buffers
 * of a few MiB; the only file ever held in memory is the state file, which
 * unpack and verify decode to check the memory entry against before they
 * handle a byte of guest memory.
 *
 * Called by snapshot/ember_snapshot.c; it never restores or runs anything
 * and never writes into an existing snapshot directory. */
#ifndef SNAP_PACK_H
#define SNAP_PACK_H

#include <stdint.h>

#include "error.h"

/* What a pack, unpack or verification saw. */
struct snap_pack_summary {
	uint32_t state_version;   /* state file format version */
	uint64_t state_bytes;     /* size of the state file */
	uint64_t memory_bytes;    /* apparent size of the memory file: guest memory */
	uint64_t data_bytes;      /* bytes stored in extents, both files */
	uint64_t extent_count;    /* extents, both files */
	uint64_t allocated_bytes; /* snap_verify_dir: disk blocks of both files */
	uint64_t packed_bytes;    /* size of the packed file; 0 for snap_verify_dir */
};

/* Packs snapshot directory `dir` (which must pass snap_verify_dir())
 * into `file`, written as `file`.tmp-XXXXXX, fsynced and renamed over
 * `file` (so an existing `file` is replaced only by a complete one), then
 * the directory fsynced.  Fills *summary (may be NULL).  -1 with err, and
 * no file created, on failure — including a file that changes while it is
 * read. */
int snap_pack(const char *dir, const char *file, struct snap_pack_summary *summary, struct ember_error *err);

/* Unpacks packed snapshot `file` into the new directory `dir`, which must
 * not exist: files are created in `dir`.tmp-XXXXXX with their apparent
 * sizes, only extents are written (holes stay holes), everything is
 * fsynced, the result passes snap_verify_dir(), and only then is it renamed
 * to `dir` (never replacing anything) and the parent fsynced.  Fills
 * *summary (may be NULL).  -1 with err on failure, leaving nothing behind. */
int snap_unpack(const char *file, const char *dir, struct snap_pack_summary *summary,
		struct ember_error *err);

/* Checks snapshot directory `dir` without restoring it: `state` passes
 * snap_state_load(), `memory` is a regular file of exactly the guest
 * memory size the state records, both are regular files (not links), and
 * nothing else is in the directory.  Does not compare the CPU with this
 * host.  Fills *summary (may be NULL).  -1 with err naming the flaw. */
int snap_verify_dir(const char *dir, struct snap_pack_summary *summary, struct ember_error *err);

/* Checks packed snapshot `file` without writing anything: decompresses and
 * parses the whole archive in bounded memory, checks the LZ4 content
 * checksum, decodes the state with snap_state_decode() and checks the
 * memory entry's size against it.  Fills *summary (may be NULL).  -1 with
 * err naming the flaw. */
int snap_verify_packed(const char *file, struct snap_pack_summary *summary, struct ember_error *err);

/* snap_verify_packed() on an open descriptor, read from its current
 * position to its end; messages do not name the file.  The descriptor
 * stays the caller's. */
int snap_verify_packed_fd(int fd, struct snap_pack_summary *summary, struct ember_error *err);

#endif
