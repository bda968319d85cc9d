/* Encoding and streaming validation of the packed-snapshot archive
 * (pack_archive.h).
 *
 * The parser is a small state machine: it collects one fixed-size record
 * header (or a file name) at a time in `field`, checks it completely, and
 * only then calls the sink; extent bytes pass straight through to the sink
 * without being copied.  Every count and size is bounded before it is used
 * and every sum is checked against the file it belongs to, so no
 * arithmetic can overflow. */
#include "pack_archive.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define TAG_FILE           0x454c4946u /* "FILE" */
#define TAG_DATA           0x41544144u /* "DATA" */
#define TAG_END            0x2e444e45u /* "END." */
#define TAG_SIZE           4
#define FILE_FIELDS_SIZE   12 /* after the tag: name length, size */
#define EXTENT_FIELDS_SIZE 20 /* after the tag: reserved, offset, length */
#define END_FIELDS_SIZE    20 /* after the tag: file count, extent count, data bytes */

_Static_assert(sizeof SNAP_ARCHIVE_MAGIC - 1 == 8, "the magic is 8 bytes");
_Static_assert(TAG_SIZE + FILE_FIELDS_SIZE == 16, "file record layout");
_Static_assert(TAG_SIZE + EXTENT_FIELDS_SIZE == SNAP_ARCHIVE_EXTENT_RECORD_SIZE, "extent record layout");
_Static_assert(TAG_SIZE + END_FIELDS_SIZE == SNAP_ARCHIVE_END_RECORD_SIZE, "end record layout");
_Static_assert(SNAP_ARCHIVE_MEMORY_MAX >= (16ULL << 30), "the memory limit covers GUEST_MEM_MAX");

enum stage {
	STAGE_HEADER,
	STAGE_TAG,
	STAGE_FILE,
	STAGE_NAME,
	STAGE_EXTENT,
	STAGE_BYTES,
	STAGE_END,
	STAGE_DONE,
	STAGE_FAILED,
};

const char *const snap_archive_names[SNAP_ARCHIVE_FILES] = {SNAP_STATE_FILE, SNAP_MEMORY_FILE};
static const uint64_t size_limits[SNAP_ARCHIVE_FILES] = {SNAP_ARCHIVE_STATE_MAX, SNAP_ARCHIVE_MEMORY_MAX};

/* ---- encoding ----------------------------------------------------------- */

static void put_u32(uint8_t *out, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		out[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *out, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *in)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | in[i];
	return v;
}

static uint64_t get_u64(const uint8_t *in)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | in[i];
	return v;
}

size_t snap_archive_header(uint8_t *out)
{
	memcpy(out, SNAP_ARCHIVE_MAGIC, 8);
	put_u32(out + 8, SNAP_ARCHIVE_VERSION);
	put_u32(out + 12, 0);
	return SNAP_ARCHIVE_HEADER_SIZE;
}

size_t snap_archive_file_record(uint8_t *out, const char *name, uint64_t size)
{
	size_t length = strlen(name);
	put_u32(out, TAG_FILE);
	put_u32(out + 4, (uint32_t)length);
	put_u64(out + 8, size);
	memcpy(out + 16, name, length);
	return 16 + length;
}

size_t snap_archive_extent_record(uint8_t *out, uint64_t offset, uint64_t length)
{
	put_u32(out, TAG_DATA);
	put_u32(out + 4, 0);
	put_u64(out + 8, offset);
	put_u64(out + 16, length);
	return SNAP_ARCHIVE_EXTENT_RECORD_SIZE;
}

size_t snap_archive_end_record(uint8_t *out, uint32_t file_count, uint64_t extent_count, uint64_t data_bytes)
{
	put_u32(out, TAG_END);
	put_u32(out + 4, file_count);
	put_u64(out + 8, extent_count);
	put_u64(out + 16, data_bytes);
	return SNAP_ARCHIVE_END_RECORD_SIZE;
}

/* ---- parsing ------------------------------------------------------------ */

void snap_archive_parser_init(struct snap_archive_parser *parser, const struct snap_archive_sink *sink,
			      void *context)
{
	static const struct snap_archive_sink no_sink;
	memset(parser, 0, sizeof *parser);
	parser->sink = sink ? sink : &no_sink;
	parser->context = context;
	parser->stage = STAGE_HEADER;
	parser->field_need = SNAP_ARCHIVE_HEADER_SIZE;
}

/* Fails the parser with a message that names the offending record. */
__attribute__((format(printf, 3, 4))) static int refuse(struct snap_archive_parser *parser,
							struct ember_error *err, const char *fmt, ...)
{
	char message[EMBER_ERROR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof message, fmt, ap);
	va_end(ap);
	parser->stage = STAGE_FAILED;
	return ember_error_set(err, "archive offset %llu: %s", (unsigned long long)parser->record_start,
			       message);
}

/* Expects the next `need` bytes to be collected into field for `stage`. */
static void expect(struct snap_archive_parser *parser, enum stage stage, size_t need)
{
	parser->stage = stage;
	parser->field_length = 0;
	parser->field_need = need;
}

/* Renders an untrusted name printably: anything but [A-Za-z0-9._-/] as \xNN. */
static void printable_name(const uint8_t *name, size_t length, char *out, size_t out_size)
{
	size_t used = 0;
	for (size_t i = 0; i < length && used + 5 < out_size; i++) {
		uint8_t c = name[i];
		bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			     c == '.' || c == '_' || c == '-' || c == '/';
		if (plain)
			out[used++] = (char)c;
		else
			used += (size_t)snprintf(out + used, out_size - used, "\\x%02x", c);
	}
	out[used] = '\0';
}

static int end_file(struct snap_archive_parser *parser, struct ember_error *err)
{
	if (parser->file_count == 0 || !parser->sink->file_end)
		return 0;
	return parser->sink->file_end(parser->context, parser->file_count - 1, err);
}

static int take_header(struct snap_archive_parser *parser, struct ember_error *err)
{
	const uint8_t *f = parser->field;
	if (memcmp(f, SNAP_ARCHIVE_MAGIC, 8) != 0)
		return refuse(parser, err, "not a packed Ember snapshot (bad magic)");
	parser->version = get_u32(f + 8);
	if (parser->version != SNAP_ARCHIVE_VERSION)
		return refuse(parser, err, "archive format version %u; this ember-snapshot reads version %u",
			      parser->version, SNAP_ARCHIVE_VERSION);
	if (get_u32(f + 12) != 0)
		return refuse(parser, err, "reserved header field is not zero");
	expect(parser, STAGE_TAG, TAG_SIZE);
	return 0;
}

static int take_tag(struct snap_archive_parser *parser, struct ember_error *err)
{
	uint32_t tag = get_u32(parser->field);
	switch (tag) {
	case TAG_FILE:
		if (parser->file_count >= SNAP_ARCHIVE_FILES)
			return refuse(parser, err, "more than %d files", SNAP_ARCHIVE_FILES);
		expect(parser, STAGE_FILE, FILE_FIELDS_SIZE);
		return 0;
	case TAG_DATA:
		if (parser->file_count == 0)
			return refuse(parser, err, "an extent before any file");
		expect(parser, STAGE_EXTENT, EXTENT_FIELDS_SIZE);
		return 0;
	case TAG_END:
		if (parser->file_count != SNAP_ARCHIVE_FILES)
			return refuse(parser, err, "the archive ends after %u of %d files",
				      parser->file_count, SNAP_ARCHIVE_FILES);
		expect(parser, STAGE_END, END_FIELDS_SIZE);
		return 0;
	default: return refuse(parser, err, "unknown record tag %#x", tag);
	}
}

static int take_file(struct snap_archive_parser *parser, struct ember_error *err)
{
	uint32_t name_length = get_u32(parser->field);
	parser->pending_size = get_u64(parser->field + 4);
	if (name_length == 0 || name_length > SNAP_ARCHIVE_NAME_MAX)
		return refuse(parser, err, "file name length %u is not between 1 and %d", name_length,
			      SNAP_ARCHIVE_NAME_MAX);
	expect(parser, STAGE_NAME, name_length);
	return 0;
}

static int take_name(struct snap_archive_parser *parser, struct ember_error *err)
{
	unsigned index = parser->file_count;
	const char *expected = snap_archive_names[index];
	size_t length = parser->field_length;
	if (length != strlen(expected) || memcmp(parser->field, expected, length) != 0) {
		char shown[SNAP_ARCHIVE_NAME_MAX * 4 + 1];
		printable_name(parser->field, length, shown, sizeof shown);
		return refuse(parser, err, "file %u is named `%s`; expected `%s`", index + 1, shown,
			      expected);
	}
	uint64_t size = parser->pending_size;
	if (size > size_limits[index])
		return refuse(parser, err, "`%s` claims %llu bytes, more than the limit of %llu", expected,
			      (unsigned long long)size, (unsigned long long)size_limits[index]);
	if (end_file(parser, err) < 0) {
		parser->stage = STAGE_FAILED;
		return -1;
	}
	parser->sizes[index] = size;
	parser->file_count = index + 1;
	parser->next_offset = 0;
	if (parser->sink->file_begin &&
	    parser->sink->file_begin(parser->context, index, expected, size, err) < 0) {
		parser->stage = STAGE_FAILED;
		return -1;
	}
	expect(parser, STAGE_TAG, TAG_SIZE);
	return 0;
}

static int take_extent(struct snap_archive_parser *parser, struct ember_error *err)
{
	const char *name = snap_archive_names[parser->file_count - 1];
	uint64_t size = parser->sizes[parser->file_count - 1];
	uint32_t reserved = get_u32(parser->field);
	uint64_t offset = get_u64(parser->field + 4);
	uint64_t length = get_u64(parser->field + 12);
	if (reserved != 0)
		return refuse(parser, err, "reserved extent field is not zero");
	if (length == 0)
		return refuse(parser, err, "an empty extent in `%s`", name);
	if (offset < parser->next_offset)
		return refuse(
			parser, err,
			"extent at %llu in `%s` overlaps or precedes the previous one (which ends at %llu)",
			(unsigned long long)offset, name, (unsigned long long)parser->next_offset);
	if (length > size || offset > size - length)
		return refuse(parser, err,
			      "extent of %llu bytes at %llu lies past the end of `%s` (%llu bytes)",
			      (unsigned long long)length, (unsigned long long)offset, name,
			      (unsigned long long)size);
	uint64_t end = offset + length;
	if (offset % SNAP_ARCHIVE_PAGE_SIZE || (end % SNAP_ARCHIVE_PAGE_SIZE && end != size))
		return refuse(parser, err,
			      "extent of %llu bytes at %llu in `%s` does not cover whole %d-byte pages",
			      (unsigned long long)length, (unsigned long long)offset, name,
			      SNAP_ARCHIVE_PAGE_SIZE);
	/* Extents never overlap and lie inside files of bounded size: these sums cannot overflow. */
	parser->extent_count++;
	parser->data_bytes += length;
	parser->next_offset = end;
	parser->extent_offset = offset;
	parser->extent_remaining = length;
	parser->stage = STAGE_BYTES;
	return 0;
}

static int take_end(struct snap_archive_parser *parser, struct ember_error *err)
{
	uint32_t files = get_u32(parser->field);
	uint64_t extents = get_u64(parser->field + 4);
	uint64_t bytes = get_u64(parser->field + 12);
	if (files != SNAP_ARCHIVE_FILES || extents != parser->extent_count || bytes != parser->data_bytes)
		return refuse(parser, err,
			      "the end record counts %u files, %llu extents, %llu data bytes; the archive "
			      "holds %u, %llu, %llu",
			      files, (unsigned long long)extents, (unsigned long long)bytes,
			      parser->file_count, (unsigned long long)parser->extent_count,
			      (unsigned long long)parser->data_bytes);
	if (end_file(parser, err) < 0) {
		parser->stage = STAGE_FAILED;
		return -1;
	}
	parser->stage = STAGE_DONE;
	return 0;
}

static int take_field(struct snap_archive_parser *parser, struct ember_error *err)
{
	switch (parser->stage) {
	case STAGE_HEADER: return take_header(parser, err);
	case STAGE_TAG: return take_tag(parser, err);
	case STAGE_FILE: return take_file(parser, err);
	case STAGE_NAME: return take_name(parser, err);
	case STAGE_EXTENT: return take_extent(parser, err);
	case STAGE_END: return take_end(parser, err);
	default: return refuse(parser, err, "internal error: no field expected");
	}
}

int snap_archive_parser_feed(struct snap_archive_parser *parser, const uint8_t *bytes, size_t length,
			     struct ember_error *err)
{
	while (length > 0) {
		switch (parser->stage) {
		case STAGE_FAILED:
			return ember_error_set(err, "archive offset %llu: the archive was already refused",
					       (unsigned long long)parser->position);
		case STAGE_DONE:
			parser->record_start = parser->position;
			return refuse(parser, err, "data after the end record");
		case STAGE_BYTES: {
			size_t n =
				length < parser->extent_remaining ? length : (size_t)parser->extent_remaining;
			if (parser->sink->data &&
			    parser->sink->data(parser->context, parser->extent_offset, bytes, n, err) < 0) {
				parser->stage = STAGE_FAILED;
				return -1;
			}
			parser->extent_offset += n;
			parser->extent_remaining -= n;
			parser->position += n;
			bytes += n;
			length -= n;
			if (parser->extent_remaining == 0)
				expect(parser, STAGE_TAG, TAG_SIZE);
			break;
		}
		default: {
			if (parser->field_length == 0 && parser->stage == STAGE_TAG)
				parser->record_start = parser->position;
			size_t want = parser->field_need - parser->field_length;
			size_t n = length < want ? length : want;
			memcpy(parser->field + parser->field_length, bytes, n);
			parser->field_length += n;
			parser->position += n;
			bytes += n;
			length -= n;
			if (parser->field_length == parser->field_need && take_field(parser, err) < 0)
				return -1;
			break;
		}
		}
	}
	return 0;
}

int snap_archive_parser_finish(struct snap_archive_parser *parser, struct ember_error *err)
{
	static const char *const inside[] = {
		[STAGE_HEADER] = "the header",       [STAGE_TAG] = "a record tag",
		[STAGE_FILE] = "a file record",      [STAGE_NAME] = "a file name",
		[STAGE_EXTENT] = "an extent record", [STAGE_BYTES] = "an extent's data",
		[STAGE_END] = "the end record",
	};
	if (parser->stage == STAGE_DONE)
		return 0;
	if (parser->stage == STAGE_FAILED)
		return ember_error_set(err, "archive offset %llu: the archive was already refused",
				       (unsigned long long)parser->position);
	parser->record_start = parser->position;
	if (parser->stage == STAGE_TAG && parser->field_length == 0)
		return refuse(parser, err, "the archive is truncated: it stops before its end record");
	return refuse(parser, err, "the archive is truncated inside %s", inside[parser->stage]);
}
