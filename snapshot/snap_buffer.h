/* Byte-level encoding for snapshot files: a growing little-endian writer
 * and a bounds-checked reader.
 *
 * The reader is the first line of defence against a hostile snapshot: it
 * never reads past its buffer.  An overrun, a string that is too long or
 * contains a NUL, or any other malformed field sets `failed` and records
 * what was being read; every later read then returns zero, so decoders can
 * read a whole record and check `failed` once. */
#ifndef SNAP_BUFFER_H
#define SNAP_BUFFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct snap_writer {
	uint8_t *data;
	size_t length, capacity;
	bool failed; /* out of memory */
};

void snap_writer_init(struct snap_writer *w);
void snap_writer_free(struct snap_writer *w);
void snap_put_u8(struct snap_writer *w, uint8_t v);
void snap_put_u32(struct snap_writer *w, uint32_t v);
void snap_put_u64(struct snap_writer *w, uint64_t v);
void snap_put_bytes(struct snap_writer *w, const void *bytes, size_t n);
/* A u32 length, then the bytes (no NUL). */
void snap_put_string(struct snap_writer *w, const char *s);
/* Starts a section of `type`; returns the position to pass to end. */
size_t snap_begin_section(struct snap_writer *w, uint32_t type);
void snap_end_section(struct snap_writer *w, size_t start);

struct snap_reader {
	const uint8_t *data;
	size_t length, position;
	bool failed;
	char problem[160]; /* what failed first */
};

void snap_reader_init(struct snap_reader *r, const void *data, size_t length);
/* Marks the reader failed with a message (the first one wins). */
void snap_reader_fail(struct snap_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint8_t snap_get_u8(struct snap_reader *r);
uint32_t snap_get_u32(struct snap_reader *r);
uint64_t snap_get_u64(struct snap_reader *r);
/* Copies n bytes; zero-fills `out` on failure. */
void snap_get_bytes(struct snap_reader *r, void *out, size_t n);
/* Returns a pointer to the next n bytes inside the buffer, or NULL. */
const uint8_t *snap_get_span(struct snap_reader *r, uint64_t n);
/* Returns a malloc'd copy of the next n bytes (the caller frees it), or
 * NULL when n is 0 or on failure (an overrun, or out of memory, which
 * marks the reader failed). */
uint8_t *snap_get_copy(struct snap_reader *r, uint64_t n);
/* Reads a string of at most max-1 bytes with no NUL into out (NUL-terminated). */
void snap_get_string(struct snap_reader *r, char *out, size_t max);
size_t snap_remaining(const struct snap_reader *r);

/* CRC-32 (IEEE 802.3, as zlib computes it). */
uint32_t snap_crc32(uint32_t crc, const void *data, size_t n);

#endif
