/* Unpacking a tenant's code bundle into a function's task directory.
 *
 * ember-build-fn calls pool_bundle_unpack() to turn an uploaded zip or
 * tar.gz into the directory that becomes the function's read-only
 * /var/task.  Bundles are hostile: every entry is validated before anything
 * is created, files are created only beneath the new directory (openat2
 * with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, never through a symbolic
 * link), the bytes actually written are counted against a cap, and on any
 * failure everything created is removed again.  This module never writes
 * outside the task directory it creates, never follows a link from the
 * bundle, and never keeps an owner, a device, a set-id bit or a timestamp
 * from the bundle.
 *
 * What a bundle may hold: regular files, directories and relative symbolic
 * links whose targets stay inside the task directory.  Names are byte
 * strings (UTF-8 in zip and pax are decoded as UTF-8, whatever the process
 * locale); "." components and repeated or trailing slashes are ignored, so
 * `tar czf b.tgz -C dir .` bundles unpack as expected.  Everything else is
 * refused with an error naming the entry:
 *   - an empty name, an absolute name, a `..` component, a control
 *     character (0x01-0x1f, 0x7f), a name longer than 4096 bytes or a
 *     component longer than 255 bytes;
 *   - a parent path through a symbolic link, or through a file;
 *   - a symbolic link with an empty, absolute or over-long target, or one
 *     that leaves the task directory when resolved lexically from the link's
 *     own directory, or - checked once everything is unpacked - when
 *     actually followed through other links in the bundle;
 *   - every hard link (real bundles do not need them, and a link to an
 *     earlier file would let one entry alias another);
 *   - device files, FIFOs and sockets;
 *   - an entry that would replace anything already unpacked (directories
 *     named twice are merged);
 *   - more file bytes than limits->max_total_bytes (counted as written, so
 *     a zip bomb stops at the cap, whatever its headers claim), more entries
 *     than limits->max_entries, or no entries at all;
 *   - any error libarchive reports, a truncated archive, a gzip stream
 *     whose CRC or length does not match (libarchive 3.6 does not check
 *     them, so this module decompresses tar.gz itself with zlib, and caps
 *     the decompressed tar stream too), data after the gzip stream;
 *   - anything that is not a zip or a gzip-compressed tar (plain tar
 *     included: its truncation at an entry boundary cannot be detected).
 * A NUL inside a zip name cannot be seen: libarchive ends the name there,
 * and the shorter name is validated like any other.
 *
 * What is written: directories 0755; regular files 0755 if the bundle gave
 * them any execute bit, else 0644; symbolic links as links.  Owner is the
 * calling user.  Before returning success everything is flushed (syncfs),
 * the temporary directory is renamed into place, and the parent directory
 * is fsync'd.
 *
 * Memory: libarchive reads a zip's whole central directory, so the memory
 * used grows with the bundle file's size; callers bound the upload size. */
#ifndef POOL_BUNDLE_H
#define POOL_BUNDLE_H

#include <stdint.h>

#include "error.h"

#define POOL_BUNDLE_DEFAULT_MAX_TOTAL_BYTES (250ull << 20)
#define POOL_BUNDLE_DEFAULT_MAX_ENTRIES     10000ull
#define POOL_BUNDLE_PATH_MAX                4096 /* bytes in an entry name */
#define POOL_BUNDLE_NAME_MAX                255  /* bytes in one component */
#define POOL_BUNDLE_FORMAT_MAX              16

/* Caps on one bundle.  A zero field takes its default. */
struct pool_bundle_limits {
	uint64_t max_total_bytes; /* file bytes written; default 250 MiB */
	uint64_t max_entries;     /* archive entries read; default 10,000 */
};

/* What an unpack did.  Filled on success and on failure: on failure it holds
 * the counts reached when unpacking stopped. */
struct pool_bundle_report {
	uint64_t entries;                    /* archive entries read, the refused one included */
	uint64_t bytes_written;              /* bytes of file data written */
	char format[POOL_BUNDLE_FORMAT_MAX]; /* "zip" or "tar.gz"; "" if not recognised */
};

/* Unpacks the bundle at `bundle_path` into the new directory `task_dir`,
 * which must not exist (its parent must).  `limits` may be NULL for the
 * defaults; `report` may be NULL.  Returns 0 when the whole bundle is
 * unpacked and durable at `task_dir`.  Returns -1 with `err` set
 * ("entry `a/../../evil`: a `..` component is not allowed", names escaped)
 * when the bundle is refused or anything fails; then `task_dir` does not
 * exist and nothing this call created is left, unless removing it failed
 * too, which the message says.  The caller owns `task_dir` afterwards and
 * removes it with pool_bundle_remove().  Thread-safe: it changes no
 * process-wide state (the UTF-8 locale it uses is set per thread). */
int pool_bundle_unpack(const char *bundle_path, const char *task_dir, const struct pool_bundle_limits *limits,
		       struct pool_bundle_report *report, struct ember_error *err);

/* Removes the directory tree `task_dir` (as made by pool_bundle_unpack)
 * without following any symbolic link in it, however deep it is.  A missing
 * `task_dir` is not an error.  Returns 0, or -1 with `err` set. */
int pool_bundle_remove(const char *task_dir, struct ember_error *err);

#endif
