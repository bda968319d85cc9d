/* The archive inside a packed snapshot, and its streaming validator.
 *
 * `ember-snapshot pack` (snapshot/pack.c) writes a snapshot directory as
 * one archive and compresses it into one LZ4 frame.  The archive is the
 * decompressed content of that frame; every integer is little-endian:
 *
 *   header  "EMBERPAK", u32 version (1), u32 reserved (0)              16 bytes
 *   file    u32 tag "FILE", u32 name length, u64 apparent size, name   16 + n
 *   extent  u32 tag "DATA", u32 reserved (0), u64 offset, u64 length,
 *           then `length` bytes of the file at `offset`                24 + length
 *   end     u32 tag "END.", u32 file count, u64 extent count,
 *           u64 data bytes (the sum of all extent lengths)             24 bytes
 *
 * Exactly two files, `state` then `memory`, each followed by its extents;
 * then the end record, which is the last byte of the frame.  Extents hold
 * only data: holes and all-zero pages are left out, and an unpacked file is
 * its apparent size with only the extents written.  Extents cover whole
 * 4 KiB pages (SNAP_ARCHIVE_PAGE_SIZE): each starts on a page boundary and
 * ends on one or at the end of the file, so a file has at most one extent
 * per page and the work an archive can ask for is bounded by file sizes.
 *
 * The parser is the single validator of an untrusted archive.  It is fed
 * decompressed bytes in pieces of any size and never buffers more than one
 * record header, so memory does not grow with the archive.  Before the sink
 * sees anything it has checked every tag, name (only the two names above,
 * in order: no paths), size (state at most SNAP_ARCHIVE_STATE_MAX, memory
 * at most SNAP_ARCHIVE_MEMORY_MAX), extent (non-empty, inside the file,
 * after the previous one, never overlapping, page-aligned) and the end
 * record's counts.
 * It never allocates and never touches files: that is the sink's job. */
#ifndef PACK_ARCHIVE_H
#define PACK_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "snap_state.h"

#define SNAP_ARCHIVE_MAGIC              "EMBERPAK"
#define SNAP_ARCHIVE_VERSION            1
#define SNAP_ARCHIVE_FILES              2
#define SNAP_ARCHIVE_NAME_MAX           64
#define SNAP_ARCHIVE_PAGE_SIZE          4096
#define SNAP_ARCHIVE_HEADER_SIZE        16
#define SNAP_ARCHIVE_FILE_RECORD_MAX    (16 + SNAP_ARCHIVE_NAME_MAX)
#define SNAP_ARCHIVE_EXTENT_RECORD_SIZE 24
#define SNAP_ARCHIVE_END_RECORD_SIZE    24
#define SNAP_ARCHIVE_STATE_MAX          SNAP_STATE_MAX_BYTES
/* Guest memory is at most 16 GiB (GUEST_MEM_MAX); the margin keeps a
 * future larger limit from needing a new archive version at once. */
#define SNAP_ARCHIVE_MEMORY_MAX ((16ULL << 30) + (1ULL << 30))

/* The names of the files, in archive order (SNAP_STATE_FILE, SNAP_MEMORY_FILE). */
extern const char *const snap_archive_names[SNAP_ARCHIVE_FILES];

/* Encoders: each writes one record header into `out` and returns its
 * length.  `out` holds at least the record's size (the _SIZE/_MAX above);
 * snap_archive_file_record() takes a name of 1..SNAP_ARCHIVE_NAME_MAX bytes. */
size_t snap_archive_header(uint8_t *out);
size_t snap_archive_file_record(uint8_t *out, const char *name, uint64_t size);
size_t snap_archive_extent_record(uint8_t *out, uint64_t offset, uint64_t length);
size_t snap_archive_end_record(uint8_t *out, uint32_t file_count, uint64_t extent_count, uint64_t data_bytes);

/* What a parser hands on, already validated.  Each callback returns 0, or
 * -1 with err filled (the parser then stops and passes the error up as is).
 *   file_begin: file `index` (0 state, 1 memory) named `name` of `size` bytes;
 *   data:       `length` bytes of the current file at `offset`: a piece of
 *               one extent (an extent may arrive in several pieces, in
 *               order); offset + length <= size, offsets only increase;
 *   file_end:   the current file is complete (for the last file: only
 *               after the end record has been checked).
 * Any callback may be NULL. */
struct snap_archive_sink {
	int (*file_begin)(void *context, unsigned index, const char *name, uint64_t size,
			  struct ember_error *err);
	int (*data)(void *context, uint64_t offset, const uint8_t *bytes, size_t length,
		    struct ember_error *err);
	int (*file_end)(void *context, unsigned index, struct ember_error *err);
};

/* A parser's state.  The fields after the comment may be read by the
 * caller (what has been accepted so far); the rest is private. */
struct snap_archive_parser {
	const struct snap_archive_sink *sink;
	void *context;
	int stage;
	uint8_t field[SNAP_ARCHIVE_NAME_MAX + 8];
	size_t field_length, field_need;
	uint64_t record_start;  /* archive offset of the record being read */
	uint64_t next_offset;   /* the current file's next extent starts here or later */
	uint64_t extent_offset; /* where the pending extent bytes go */
	uint64_t extent_remaining;
	uint64_t pending_size; /* size from a file record whose name is unread */
	/* readable by the caller: */
	uint64_t position;   /* archive bytes consumed */
	unsigned file_count; /* file records accepted */
	uint64_t sizes[SNAP_ARCHIVE_FILES];
	uint64_t extent_count;
	uint64_t data_bytes;
	uint32_t version;
};

/* Starts a parser that reports to `sink` with `context` (both borrowed:
 * they must outlive the parser).  Never fails. */
void snap_archive_parser_init(struct snap_archive_parser *parser, const struct snap_archive_sink *sink,
			      void *context);

/* Feeds the next `length` bytes of the archive.  -1 with err at the first
 * flaw ("archive offset N: ...") or the first sink failure; the parser then
 * refuses everything after. */
int snap_archive_parser_feed(struct snap_archive_parser *parser, const uint8_t *bytes, size_t length,
			     struct ember_error *err);

/* Declares the end of the input: -1 with err unless the archive was
 * complete (its end record read).  Call it even after feeding succeeded. */
int snap_archive_parser_finish(struct snap_archive_parser *parser, struct ember_error *err);

#endif
