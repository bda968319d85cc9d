/* libFuzzer target for the packed-snapshot reader (snapshot/pack_archive.c
 * and the LZ4 layer of snapshot/pack.c), on files an attacker fully
 * controls.
 *
 * Byte 0 of the input picks a mode (byte0 % 3); the rest is the payload:
 *   0  the payload is a raw archive, fed to snap_archive_parser_feed() in
 *      pieces of (byte 1 + 1) bytes (byte 1 is then skipped), so every
 *      record boundary is crossed at every offset;
 *   1  the payload is a whole packed file: snap_verify_packed_fd() on it
 *      (through a memfd), exercising the frame checks and LZ4 errors;
 *   2  the payload is a raw archive that is first wrapped in a valid LZ4
 *      frame (content checksum on), then verified as in 1: mutations of
 *      the archive reach the parser and the state decoder instead of dying
 *      at the checksums.
 * The sink aborts when the parser hands it anything it promised not to
 * (pack_archive.h): a file out of order or with another name, a size over
 * its limit, an empty extent, bytes outside the file or before bytes
 * already delivered, file_end for a file that is not open; and a parse that
 * succeeds must have delivered exactly two files and as many data bytes as
 * the end record counts.
 *
 * Build: `make fuzzers` (clang -fsanitize=fuzzer,address,undefined with
 *        snapshot/pack.c snapshot/pack_archive.c snapshot/snap_state.c
 *        snapshot/snap_buffer.c common/error.c -llz4)
 *        → build/fuzz/fuzz_snapshot_archive
 * Run:   build/fuzz/fuzz_snapshot_archive -dict=tests/fuzz/fuzz_snapshot_archive.dict \
 *            NEW_DIR tests/fuzz/corpus/snapshot_archive */
#include <lz4frame.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pack.h"
#include "pack_archive.h"

#define PAYLOAD_MAX (4u << 20) /* larger inputs only repeat what smaller ones test */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void violated(const char *what)
{
	fprintf(stderr, "fuzz_snapshot_archive: the parser broke its contract: %s\n", what);
	abort();
}

/* What the sink has been handed so far. */
struct observed {
	unsigned begun;      /* file_begin calls */
	bool open;           /* a file is between file_begin and file_end */
	uint64_t size;       /* of the open file */
	uint64_t next;       /* data must not start before this */
	uint64_t data_bytes; /* delivered, both files */
};

static int check_begin(void *context, unsigned index, const char *name, uint64_t size, struct ember_error *err)
{
	(void)err;
	struct observed *o = context;
	static const uint64_t limits[SNAP_ARCHIVE_FILES] = {SNAP_ARCHIVE_STATE_MAX, SNAP_ARCHIVE_MEMORY_MAX};
	if (o->open || index != o->begun || index >= SNAP_ARCHIVE_FILES)
		violated("file_begin out of order");
	if (strcmp(name, snap_archive_names[index]) != 0 || strchr(name, '/'))
		violated("a file name other than state, memory");
	if (size > limits[index])
		violated("a file size over its limit");
	o->begun++;
	o->open = true;
	o->size = size;
	o->next = 0;
	return 0;
}

static int check_data(void *context, uint64_t offset, const uint8_t *bytes, size_t length, struct ember_error *err)
{
	(void)err;
	struct observed *o = context;
	if (!o->open)
		violated("data outside a file");
	if (length == 0 || !bytes)
		violated("an empty piece of data");
	if (offset < o->next)
		violated("data before data already delivered");
	if (length > o->size || offset > o->size - length)
		violated("data past the end of the file");
	volatile uint8_t touch = bytes[0] ^ bytes[length - 1]; /* ASan: the bytes are readable */
	(void)touch;
	o->next = offset + length;
	o->data_bytes += length;
	return 0;
}

static int check_end(void *context, unsigned index, struct ember_error *err)
{
	(void)err;
	struct observed *o = context;
	if (!o->open || index + 1 != o->begun)
		violated("file_end for a file that is not open");
	o->open = false;
	return 0;
}

static const struct snap_archive_sink checking_sink = {check_begin, check_data, check_end};

static void parse_raw(const uint8_t *payload, size_t size)
{
	if (size == 0)
		return;
	size_t piece = (size_t)payload[0] + 1;
	payload++;
	size--;
	struct observed o = {0};
	struct snap_archive_parser parser;
	struct ember_error err;
	snap_archive_parser_init(&parser, &checking_sink, &o);
	int rc = 0;
	for (size_t at = 0; at < size && rc == 0; at += piece)
		rc = snap_archive_parser_feed(&parser, payload + at, size - at < piece ? size - at : piece, &err);
	if (rc == 0)
		rc = snap_archive_parser_finish(&parser, &err);
	if (rc == 0) {
		if (o.begun != SNAP_ARCHIVE_FILES || o.open || parser.file_count != SNAP_ARCHIVE_FILES)
			violated("a complete archive without both files closed");
		if (o.data_bytes != parser.data_bytes)
			violated("delivered data differs from the archive's count");
	}
	if (rc < 0 && err.message[0] == '\0')
		violated("a refusal without a message");
}

static void verify_packed(const uint8_t *packed, size_t size)
{
	int fd = memfd_create("fuzz_snapshot_archive", MFD_CLOEXEC);
	if (fd < 0) {
		perror("memfd_create");
		abort();
	}
	if (size && write(fd, packed, size) != (ssize_t)size) {
		perror("write memfd");
		abort();
	}
	lseek(fd, 0, SEEK_SET);
	struct ember_error err;
	struct snap_pack_summary summary;
	err.message[0] = '\0';
	int rc = snap_verify_packed_fd(fd, &summary, &err);
	close(fd);
	if (rc < 0 && err.message[0] == '\0')
		violated("a refusal without a message");
	if (rc == 0 && (summary.memory_bytes > SNAP_ARCHIVE_MEMORY_MAX || summary.state_bytes > SNAP_ARCHIVE_STATE_MAX ||
			summary.data_bytes > summary.state_bytes + summary.memory_bytes))
		violated("an accepted packed file with impossible sizes");
}

static void frame_and_verify(const uint8_t *archive, size_t size)
{
	LZ4F_preferences_t preferences = LZ4F_INIT_PREFERENCES;
	preferences.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	size_t capacity = LZ4F_compressFrameBound(size, &preferences);
	uint8_t *framed = malloc(capacity);
	if (!framed)
		abort();
	size_t n = LZ4F_compressFrame(framed, capacity, archive, size, &preferences);
	if (LZ4F_isError(n))
		violated("LZ4F_compressFrame failed");
	verify_packed(framed, n);
	free(framed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size - 1 > PAYLOAD_MAX)
		return 0;
	switch (data[0] % 3) {
	case 0:
		parse_raw(data + 1, size - 1);
		break;
	case 1:
		verify_packed(data + 1, size - 1);
		break;
	default:
		frame_and_verify(data + 1, size - 1);
		break;
	}
	return 0;
}
