/* Unit test of the packed-snapshot archive validator
 * (snapshot/pack_archive.c), run on the host: archives built with the
 * encoders are fed whole, a byte at a time and in every piece size up to
 * 64, and must deliver the same files; every strict prefix of a valid
 * archive must be refused as truncated; and each malformed archive (bad
 * magic, version, reserved fields, names with paths, sizes over the
 * limits, empty, overlapping, unaligned or out-of-bounds extents, records
 * out of order, wrong end counts, bytes after the end) must be refused
 * with a message saying why.  A sink's failure must stop the parser.  One
 * line per check: "PASS name" or "FAIL name: detail"; exits non-zero on any
 * failure. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack_archive.h"
#include "unit_test.h"

#define ARCHIVE_MAX (64 << 10)
#define FILE_MAX (16 << 10) /* the reassembled files of these tests */

/* An archive being built. */
struct builder {
	uint8_t bytes[ARCHIVE_MAX];
	size_t length;
};

static void add(struct builder *b, const void *bytes, size_t length)
{
	if (b->length + length > sizeof b->bytes)
		abort();
	memcpy(b->bytes + b->length, bytes, length);
	b->length += length;
}

static void add_header(struct builder *b)
{
	b->length += snap_archive_header(b->bytes + b->length);
}

static void add_file(struct builder *b, const char *name, uint64_t size)
{
	b->length += snap_archive_file_record(b->bytes + b->length, name, size);
}

/* An extent of `length` bytes of the pattern byte `fill`. */
static void add_extent(struct builder *b, uint64_t offset, uint64_t length, uint8_t fill)
{
	b->length += snap_archive_extent_record(b->bytes + b->length, offset, length);
	if (b->length + length > sizeof b->bytes)
		abort();
	memset(b->bytes + b->length, fill, length);
	b->length += length;
}

static void add_end(struct builder *b, uint32_t files, uint64_t extents, uint64_t data_bytes)
{
	b->length += snap_archive_end_record(b->bytes + b->length, files, extents, data_bytes);
}

/* A sink that reassembles both files (within FILE_MAX) and logs calls. */
struct collected {
	uint8_t files[SNAP_ARCHIVE_FILES][FILE_MAX];
	uint64_t sizes[SNAP_ARCHIVE_FILES];
	unsigned begun, ended;
	int fail_at_begin; /* index whose file_begin fails, or -1 */
};

static int collect_begin(void *context, unsigned index, const char *name, uint64_t size, struct ember_error *err)
{
	(void)name;
	struct collected *c = context;
	if ((int)index == c->fail_at_begin)
		return ember_error_set(err, "the sink says no");
	c->sizes[index] = size;
	c->begun++;
	return 0;
}

static int collect_data(void *context, uint64_t offset, const uint8_t *bytes, size_t length,
			struct ember_error *err)
{
	(void)err;
	struct collected *c = context;
	unsigned index = c->begun - 1;
	if (offset + length <= FILE_MAX)
		memcpy(c->files[index] + offset, bytes, length);
	return 0;
}

static int collect_end(void *context, unsigned index, struct ember_error *err)
{
	(void)index;
	(void)err;
	struct collected *c = context;
	c->ended++;
	return 0;
}

static const struct snap_archive_sink collecting = {collect_begin, collect_data, collect_end};

/* Parses `length` bytes in pieces of `piece` (0: whole).  Returns 0 or -1
 * with err; *c receives what the sink saw. */
static int parse(const uint8_t *bytes, size_t length, size_t piece, struct collected *c, struct ember_error *err)
{
	memset(c, 0, sizeof *c);
	c->fail_at_begin = -1;
	struct snap_archive_parser parser;
	snap_archive_parser_init(&parser, &collecting, c);
	if (piece == 0)
		piece = length ? length : 1;
	for (size_t at = 0; at < length; at += piece)
		if (snap_archive_parser_feed(&parser, bytes + at, length - at < piece ? length - at : piece, err) < 0)
			return -1;
	return snap_archive_parser_finish(&parser, err);
}

/* A valid archive: a 10-byte state, a 3-page memory with pages 0 and 2. */
static void build_valid(struct builder *b)
{
	memset(b, 0, sizeof *b);
	add_header(b);
	add_file(b, "state", 10);
	add_extent(b, 0, 10, 's');
	add_file(b, "memory", 3 * 4096);
	add_extent(b, 0, 4096, 'a');
	add_extent(b, 8192, 4096, 'c');
	add_end(b, 2, 3, 10 + 8192);
}

static bool valid_result(const struct collected *c)
{
	uint8_t state[10], memory[3 * 4096];
	memset(state, 's', sizeof state);
	memset(memory, 'a', 4096);
	memset(memory + 4096, 0, 4096);
	memset(memory + 8192, 'c', 4096);
	return c->begun == 2 && c->ended == 2 && c->sizes[0] == 10 && c->sizes[1] == 3 * 4096 &&
	       memcmp(c->files[0], state, sizeof state) == 0 && memcmp(c->files[1], memory, sizeof memory) == 0;
}

static void test_valid(void)
{
	static struct builder b;
	static struct collected c;
	struct ember_error err = {{0}};
	build_valid(&b);
	int rc = parse(b.bytes, b.length, 0, &c, &err);
	unit_check(rc == 0 && valid_result(&c), "valid/whole", "rc %d: %s", rc, err.message);

	bool all = true;
	size_t bad_piece = 0;
	for (size_t piece = 1; piece <= 64 && all; piece++) {
		if (parse(b.bytes, b.length, piece, &c, &err) < 0 || !valid_result(&c)) {
			all = false;
			bad_piece = piece;
		}
	}
	unit_check(all, "valid/every-piece-size", "pieces of %zu bytes: %s", bad_piece, err.message);

	bool refused = true;
	size_t bad_prefix = 0;
	for (size_t length = 0; length < b.length && refused; length++) {
		if (parse(b.bytes, length, 0, &c, &err) == 0 || !strstr(err.message, "truncated")) {
			refused = false;
			bad_prefix = length;
		}
	}
	unit_check(refused, "truncated/every-prefix", "a prefix of %zu bytes: \"%s\"", bad_prefix, err.message);

	/* An extent may end unaligned at the end of its file. */
	memset(&b, 0, sizeof b);
	add_header(&b);
	add_file(&b, "state", 5000);
	add_extent(&b, 4096, 904, 'x');
	add_file(&b, "memory", 4096);
	add_end(&b, 2, 1, 904);
	rc = parse(b.bytes, b.length, 0, &c, &err);
	unit_check(rc == 0, "valid/unaligned-end-of-file", "%s", err.message);
}

/* Checks that `b` is refused with `expect` in the message, whole and a byte at a time. */
static void expect_refused(const char *name, const struct builder *b, const char *expect)
{
	static struct collected c;
	struct ember_error whole = {{0}}, bytewise = {{0}};
	int rc_whole = parse(b->bytes, b->length, 0, &c, &whole);
	int rc_bytewise = parse(b->bytes, b->length, 1, &c, &bytewise);
	unit_check(rc_whole < 0 && rc_bytewise < 0 && strstr(whole.message, expect) &&
			   strcmp(whole.message, bytewise.message) == 0,
		   name, "rc %d/%d, messages \"%s\" / \"%s\", expected \"%s\"", rc_whole, rc_bytewise,
		   whole.message, bytewise.message, expect);
}

static void test_refusals(void)
{
	static struct builder b;

	build_valid(&b);
	b.bytes[0] = 'X';
	expect_refused("header/magic", &b, "bad magic");
	build_valid(&b);
	b.bytes[8] = 2;
	expect_refused("header/version", &b, "archive format version 2");
	build_valid(&b);
	b.bytes[12] = 1;
	expect_refused("header/reserved", &b, "reserved header field");

	static const struct {
		const char *test, *name, *expect;
	} names[] = {
		{"name/dot-dot", "../evil", "named `../evil`"},
		{"name/absolute", "/etc/passwd", "named `/etc/passwd`"},
		{"name/state-with-path", "x/state", "named `x/state`"},
		{"name/memory-first", "memory", "expected `state`"},
		{"name/longer", "states", "named `states`"},
		{"name/nul", "st\x01te", "named `st\\x01te`"},
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		memset(&b, 0, sizeof b);
		add_header(&b);
		add_file(&b, names[i].name, 10);
		add_extent(&b, 0, 10, 's');
		add_file(&b, "memory", 4096);
		add_end(&b, 2, 1, 10);
		expect_refused(names[i].test, &b, names[i].expect);
	}
	memset(&b, 0, sizeof b);
	add_header(&b);
	add_file(&b, "state", 10);
	add_file(&b, "state", 10);
	expect_refused("name/second-state", &b, "expected `memory`");

	/* Name lengths 0 and over the maximum, written by hand. */
	static const struct {
		const char *test;
		uint32_t length;
	} lengths[] = {
		{"name/length-0", 0},
		{"name/length-over-max", SNAP_ARCHIVE_NAME_MAX + 1},
		{"name/length-4G", 0xffffffffu},
	};
	for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
		memset(&b, 0, sizeof b);
		add_header(&b);
		size_t at = b.length;
		add_file(&b, "state", 10);
		for (int k = 0; k < 4; k++) /* little-endian, over the real length */
			b.bytes[at + 4 + k] = (uint8_t)(lengths[i].length >> (8 * k));
		expect_refused(lengths[i].test, &b, "file name length");
	}

	memset(&b, 0, sizeof b);
	add_header(&b);
	add_file(&b, "state", SNAP_ARCHIVE_STATE_MAX + 1);
	expect_refused("size/state-over-limit", &b, "more than the limit");
	memset(&b, 0, sizeof b);
	add_header(&b);
	add_file(&b, "state", 10);
	add_extent(&b, 0, 10, 's');
	add_file(&b, "memory", SNAP_ARCHIVE_MEMORY_MAX + 4096);
	expect_refused("size/memory-over-limit", &b, "more than the limit");
	memset(&b, 0, sizeof b);
	add_header(&b);
	add_file(&b, "state", 10);
	add_extent(&b, 0, 10, 's');
	add_file(&b, "memory", UINT64_MAX);
	expect_refused("size/memory-huge", &b, "more than the limit");

	struct {
		const char *test;
		uint64_t offset, length;
		const char *expect;
	} extents[] = {
		{"extent/empty", 8192, 0, "empty extent"},
		{"extent/overlaps", 0, 4096, "overlaps"},
		{"extent/past-end", 8192, 8192, "past the end"},
		{"extent/offset-past-end", 16384, 4096, "past the end"},
		{"extent/wraps", UINT64_MAX - 4095, 8192, "past the end"},
		{"extent/huge-length", 8192, UINT64_MAX, "past the end"},
		{"extent/unaligned-start", 8193, 4095, "whole 4096-byte pages"},
		{"extent/unaligned-end", 8192, 100, "whole 4096-byte pages"},
	};
	for (size_t i = 0; i < sizeof extents / sizeof extents[0]; i++) {
		memset(&b, 0, sizeof b);
		add_header(&b);
		add_file(&b, "state", 10);
		add_extent(&b, 0, 10, 's');
		add_file(&b, "memory", 3 * 4096);
		add_extent(&b, 0, 4096, 'a');
		/* The record alone: the refusal comes before any of its bytes. */
		b.length += snap_archive_extent_record(b.bytes + b.length, extents[i].offset, extents[i].length);
		expect_refused(extents[i].test, &b, extents[i].expect);
	}
	build_valid(&b);
	b.bytes[b.length - SNAP_ARCHIVE_END_RECORD_SIZE - 4096 - 20] = 1; /* the last extent's reserved field */
	expect_refused("extent/reserved", &b, "reserved extent field");

	memset(&b, 0, sizeof b);
	add_header(&b);
	add_extent(&b, 0, 10, 's');
	expect_refused("order/extent-before-file", &b, "before any file");
	memset(&b, 0, sizeof b);
	add_header(&b);
	add_file(&b, "state", 10);
	add_end(&b, 1, 0, 0);
	expect_refused("order/end-after-one-file", &b, "after 1 of 2 files");
	build_valid(&b);
	b.length -= SNAP_ARCHIVE_END_RECORD_SIZE;
	add_file(&b, "state", 10);
	expect_refused("order/third-file", &b, "more than 2 files");
	build_valid(&b);
	b.length -= SNAP_ARCHIVE_END_RECORD_SIZE;
	add(&b, "JUNK", 4);
	expect_refused("order/unknown-tag", &b, "unknown record tag");

	static const struct {
		const char *test;
		uint32_t files;
		uint64_t extents, bytes;
	} ends[] = {
		{"end/file-count", 3, 3, 10 + 8192},
		{"end/extent-count", 2, 4, 10 + 8192},
		{"end/data-bytes", 2, 3, 10},
	};
	for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
		build_valid(&b);
		b.length -= SNAP_ARCHIVE_END_RECORD_SIZE;
		add_end(&b, ends[i].files, ends[i].extents, ends[i].bytes);
		expect_refused(ends[i].test, &b, "the end record counts");
	}
	build_valid(&b);
	add(&b, "x", 1);
	expect_refused("end/trailing-byte", &b, "after the end record");
}

static void test_sink_failure(void)
{
	static struct builder b;
	static struct collected c;
	build_valid(&b);
	memset(&c, 0, sizeof c);
	c.fail_at_begin = 1;
	struct snap_archive_parser parser;
	struct ember_error err = {{0}};
	snap_archive_parser_init(&parser, &collecting, &c);
	int rc = snap_archive_parser_feed(&parser, b.bytes, b.length, &err);
	unit_check(rc < 0 && strcmp(err.message, "the sink says no") == 0, "sink/failure-stops",
		   "rc %d, \"%s\"", rc, err.message);
	rc = snap_archive_parser_feed(&parser, b.bytes, 1, &err);
	unit_check(rc < 0 && strstr(err.message, "already refused"), "sink/refuses-after-failure", "rc %d, \"%s\"",
		   rc, err.message);
	rc = snap_archive_parser_finish(&parser, &err);
	unit_check(rc < 0, "sink/finish-after-failure", "finish accepted a failed archive");
}

int main(void)
{
	test_valid();
	test_refusals();
	test_sink_failure();
	return unit_exit_status();
}
