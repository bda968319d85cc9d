/* The snapshot byte writer and bounds-checked reader of snap_buffer.h, and
 * the CRC-32 that guards a state file. */
#include "snap_buffer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void snap_writer_init(struct snap_writer *w)
{
	memset(w, 0, sizeof *w);
}

void snap_writer_free(struct snap_writer *w)
{
	free(w->data);
	memset(w, 0, sizeof *w);
}

void snap_put_bytes(struct snap_writer *w, const void *bytes, size_t n)
{
	if (w->failed)
		return;
	if (n > SIZE_MAX / 2 - w->length) {
		w->failed = true;
		return;
	}
	if (w->length + n > w->capacity) {
		size_t capacity = w->capacity ? w->capacity : 4096;
		while (capacity < w->length + n)
			capacity *= 2;
		uint8_t *grown = realloc(w->data, capacity);
		if (!grown) {
			w->failed = true;
			return;
		}
		w->data = grown;
		w->capacity = capacity;
	}
	if (n)
		memcpy(w->data + w->length, bytes, n);
	w->length += n;
}

void snap_put_u8(struct snap_writer *w, uint8_t v)
{
	snap_put_bytes(w, &v, 1);
}

void snap_put_u32(struct snap_writer *w, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	snap_put_bytes(w, b, 4);
}

void snap_put_u64(struct snap_writer *w, uint64_t v)
{
	snap_put_u32(w, (uint32_t)v);
	snap_put_u32(w, (uint32_t)(v >> 32));
}

void snap_put_string(struct snap_writer *w, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	snap_put_u32(w, (uint32_t)n);
	snap_put_bytes(w, s, n);
}

size_t snap_begin_section(struct snap_writer *w, uint32_t type)
{
	snap_put_u32(w, type);
	snap_put_u32(w, 0);
	size_t start = w->length;
	snap_put_u64(w, 0); /* patched by snap_end_section */
	return start;
}

void snap_end_section(struct snap_writer *w, size_t start)
{
	if (w->failed)
		return;
	uint64_t length = w->length - start - 8;
	for (int i = 0; i < 8; i++)
		w->data[start + (size_t)i] = (uint8_t)(length >> (8 * i));
}

void snap_reader_init(struct snap_reader *r, const void *data, size_t length)
{
	memset(r, 0, sizeof *r);
	r->data = data;
	r->length = length;
}

void snap_reader_fail(struct snap_reader *r, const char *fmt, ...)
{
	if (r->failed)
		return;
	r->failed = true;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->problem, sizeof r->problem, fmt, ap);
	va_end(ap);
}

size_t snap_remaining(const struct snap_reader *r)
{
	return r->failed ? 0 : r->length - r->position;
}

const uint8_t *snap_get_span(struct snap_reader *r, uint64_t n)
{
	if (r->failed)
		return NULL;
	if (n > r->length - r->position) {
		snap_reader_fail(r, "%llu bytes needed at offset %zu, %zu left", (unsigned long long)n,
				 r->position, r->length - r->position);
		return NULL;
	}
	const uint8_t *p = r->data + r->position;
	r->position += (size_t)n;
	return p;
}

uint8_t *snap_get_copy(struct snap_reader *r, uint64_t n)
{
	const uint8_t *p = snap_get_span(r, n);
	if (!p || n == 0)
		return NULL;
	uint8_t *copy = malloc((size_t)n);
	if (!copy) {
		snap_reader_fail(r, "out of memory for %llu bytes", (unsigned long long)n);
		return NULL;
	}
	memcpy(copy, p, (size_t)n);
	return copy;
}

void snap_get_bytes(struct snap_reader *r, void *out, size_t n)
{
	const uint8_t *p = snap_get_span(r, n);
	if (p)
		memcpy(out, p, n);
	else
		memset(out, 0, n);
}

uint8_t snap_get_u8(struct snap_reader *r)
{
	const uint8_t *p = snap_get_span(r, 1);
	return p ? p[0] : 0;
}

uint32_t snap_get_u32(struct snap_reader *r)
{
	const uint8_t *p = snap_get_span(r, 4);
	if (!p)
		return 0;
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t snap_get_u64(struct snap_reader *r)
{
	uint64_t low = snap_get_u32(r);
	return low | (uint64_t)snap_get_u32(r) << 32;
}

void snap_get_string(struct snap_reader *r, char *out, size_t max)
{
	out[0] = '\0';
	uint32_t n = snap_get_u32(r);
	if (r->failed)
		return;
	if (n >= max) {
		snap_reader_fail(r, "string of %u bytes exceeds %zu", n, max - 1);
		return;
	}
	const uint8_t *p = snap_get_span(r, n);
	if (!p)
		return;
	if (memchr(p, '\0', n)) {
		snap_reader_fail(r, "string contains a NUL byte");
		return;
	}
	memcpy(out, p, n);
	out[n] = '\0';
}

uint32_t snap_crc32(uint32_t crc, const void *data, size_t n)
{
	static uint32_t table[256];
	static int ready;
	if (!ready) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
		ready = 1;
	}
	const uint8_t *p = data;
	crc = ~crc;
	for (size_t i = 0; i < n; i++)
		crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}
