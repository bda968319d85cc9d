/* Packing, unpacking and verifying snapshots (pack.h).
 *
 * Pack reads each file's data ranges (SEEK_DATA/SEEK_HOLE) in 1 MiB
 * chunks, drops all-zero 4 KiB pages, and streams the archive records of
 * pack_archive.h through one LZ4 frame compressor.  Unpack and verify of a
 * packed file share one reader: it checks the frame header (a content
 * checksum is required), decompresses 256 KiB of input at a time into a
 * 4 MiB buffer and feeds the archive parser, which validates before any
 * sink sees a byte; the sinks either write files (unpack) or keep only the
 * state bytes (verify).  Output is always written beside its final name,
 * fsynced and renamed, and removed again on any failure. */
#include "pack.h"

#include "durable.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lz4frame.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pack_archive.h"
#include "snap_state.h"

#define PAGE_BYTES         SNAP_ARCHIVE_PAGE_SIZE
#define READ_CHUNK         (1u << 20)   /* pack: bytes read from a snapshot file at a time */
#define PACKED_READ_CHUNK  (256u << 10) /* unpack: compressed bytes read at a time */
#define DECOMPRESSED_CHUNK (4u << 20)   /* one whole LZ4 block: decoded in place */
#define LZ4_MAGIC_BYTES    4

_Static_assert(READ_CHUNK % PAGE_BYTES == 0, "chunks hold whole pages");

/* ---- small file helpers --------------------------------------------------- */

static int write_all(int fd, const void *bytes, size_t length)
{
	const uint8_t *p = bytes;
	while (length > 0) {
		ssize_t n = write(fd, p, length);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		length -= (size_t)n;
	}
	return 0;
}

static int pwrite_all(int fd, const void *bytes, size_t length, uint64_t offset)
{
	const uint8_t *p = bytes;
	while (length > 0) {
		ssize_t n = pwrite(fd, p, length, (off_t)offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		length -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

/* Reads up to `length` bytes, stopping early only at the end of the file.
 * Returns the count, or -1 with errno. */
static ssize_t read_up_to(int fd, void *bytes, size_t length)
{
	size_t done = 0;
	while (done < length) {
		ssize_t n = read(fd, (uint8_t *)bytes + done, length - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* The directory that holds `path` ("." for a bare name). */
static void parent_of(const char *path, char *out, size_t size)
{
	snprintf(out, size, "%s", path);
	size_t length = strlen(out);
	while (length > 1 && out[length - 1] == '/') /* "a/b/" names b */
		out[--length] = '\0';
	char *slash = strrchr(out, '/');
	if (!slash)
		snprintf(out, size, ".");
	else if (slash == out)
		out[1] = '\0';
	else
		*slash = '\0';
}

/* Renames `from` to `to` unless `to` exists (EEXIST).  Where the file
 * system lacks RENAME_NOREPLACE, checks first: racy, but only there. */
static int rename_new(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	struct stat st;
	if (lstat(to, &st) == 0) {
		errno = EEXIST;
		return -1;
	}
	return rename(from, to);
}

/* `path` with a trailing-slash-free ".tmp-XXXXXX" template appended. */
static int temporary_name(const char *path, char *out, size_t size, struct ember_error *err)
{
	size_t length = strlen(path);
	while (length > 1 && path[length - 1] == '/')
		length--;
	if (length == 0 || length + sizeof ".tmp-XXXXXX" + sizeof "/" SNAP_MEMORY_FILE > size)
		return ember_error_set(err, "path `%s` is empty or too long", path);
	snprintf(out, size, "%.*s.tmp-XXXXXX", (int)length, path);
	return 0;
}

/* A readable phrase for a liblz4 frame error. */
static const char *lz4_problem(size_t code)
{
	static const struct {
		const char *name, *phrase;
	} known[] = {
		{"ERROR_contentChecksum_invalid", "content checksum mismatch: the file is corrupt"},
		{"ERROR_blockChecksum_invalid", "block checksum mismatch: the file is corrupt"},
		{"ERROR_headerChecksum_invalid", "frame header checksum mismatch: the file is corrupt"},
		{"ERROR_decompressionFailed", "a block does not decompress: the file is corrupt"},
		{"ERROR_frameSize_wrong", "the content size differs from the frame header's"},
		{"ERROR_frameType_unknown", "not an LZ4 frame"},
		{"ERROR_frameHeader_incomplete", "the frame header is truncated"},
		{"ERROR_reservedFlag_set", "the frame header sets reserved flags: the file is corrupt"},
		{"ERROR_headerVersion_wrong", "unknown LZ4 frame version: the file is corrupt"},
		{"ERROR_maxBlockSize_invalid", "invalid LZ4 block size: the file is corrupt"},
	};
	const char *name = LZ4F_getErrorName(code);
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (strcmp(name, known[i].name) == 0)
			return known[i].phrase;
	return name;
}

/* ---- verify DIR ------------------------------------------------------------ */

/* Checks that `name` in `dirfd` is a regular file (not a link); its size in *st. */
static int check_regular(int dirfd, const char *name, struct stat *st, struct ember_error *err)
{
	if (fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return ember_error_set(err, "no `%s` file", name);
		return ember_error_errno(err, errno, "stat `%s`", name);
	}
	if (!S_ISREG(st->st_mode))
		return ember_error_set(err, "`%s` is not a regular file", name);
	return 0;
}

/* Checks that `dirfd` holds nothing but the two snapshot files. */
static int check_entries(int dirfd, struct ember_error *err)
{
	int listing_fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	if (listing_fd < 0)
		return ember_error_errno(err, errno, "list the directory");
	DIR *listing = fdopendir(listing_fd);
	if (!listing) {
		close(listing_fd);
		return ember_error_errno(err, errno, "list the directory");
	}
	int rc = 0;
	struct dirent *entry;
	errno = 0;
	while ((entry = readdir(listing))) {
		const char *name = entry->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strcmp(name, SNAP_STATE_FILE) == 0 ||
		    strcmp(name, SNAP_MEMORY_FILE) == 0)
			continue;
		rc = ember_error_set(err, "unexpected entry `%s` (a snapshot holds only `%s` and `%s`)", name,
				     SNAP_STATE_FILE, SNAP_MEMORY_FILE);
		break;
	}
	if (rc == 0 && errno != 0)
		rc = ember_error_errno(err, errno, "list the directory");
	closedir(listing);
	return rc;
}

/* The checks of snap_verify_dir() on `path`, without naming it in messages. */
static int verify_directory(const char *path, struct snap_pack_summary *summary, struct ember_error *err)
{
	int dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return ember_error_errno(err, errno, "open");
	struct stat state_st, memory_st;
	int rc = -1;
	if (check_entries(dirfd, err) < 0 || check_regular(dirfd, SNAP_STATE_FILE, &state_st, err) < 0 ||
	    check_regular(dirfd, SNAP_MEMORY_FILE, &memory_st, err) < 0)
		goto out;

	char state_path[PATH_MAX];
	if (snprintf(state_path, sizeof state_path, "%s/%s", path, SNAP_STATE_FILE) >=
	    (int)sizeof state_path) {
		ember_error_set(err, "path too long");
		goto out;
	}
	struct snap_state state;
	if (snap_state_load(state_path, &state, err) < 0)
		goto out;
	uint64_t mem_size = state.memory.mem_size;
	snap_state_free(&state);
	if ((uint64_t)memory_st.st_size != mem_size) {
		ember_error_set(err, "`%s` is %llu bytes; the state says guest memory is %llu bytes",
				SNAP_MEMORY_FILE, (unsigned long long)memory_st.st_size,
				(unsigned long long)mem_size);
		goto out;
	}
	if (summary) {
		memset(summary, 0, sizeof *summary);
		summary->state_version = SNAP_FORMAT_VERSION;
		summary->state_bytes = (uint64_t)state_st.st_size;
		summary->memory_bytes = mem_size;
		summary->allocated_bytes =
			((uint64_t)state_st.st_blocks + (uint64_t)memory_st.st_blocks) * 512;
	}
	rc = 0;
out:
	close(dirfd);
	return rc;
}

int snap_verify_dir(const char *dir, struct snap_pack_summary *summary, struct ember_error *err)
{
	if (verify_directory(dir, summary, err) < 0)
		return ember_error_wrap(err, "snapshot `%s`", dir);
	return 0;
}

/* ---- pack ------------------------------------------------------------------ */

struct pack_writer {
	LZ4F_cctx *cctx;
	int fd;
	uint8_t *out; /* compressed output, out_capacity bytes */
	size_t out_capacity;
	uint8_t *chunk; /* READ_CHUNK bytes read from a snapshot file */
	uint64_t packed_bytes;
	uint64_t extent_count, data_bytes;
};

static int writer_flush_out(struct pack_writer *w, size_t n, struct ember_error *err)
{
	if (n == 0)
		return 0;
	if (write_all(w->fd, w->out, n) < 0)
		return ember_error_errno(err, errno, "write");
	w->packed_bytes += n;
	return 0;
}

/* Compresses `length` archive bytes into the output file. */
static int writer_put(struct pack_writer *w, const void *bytes, size_t length, struct ember_error *err)
{
	const uint8_t *p = bytes;
	while (length > 0) {
		size_t piece = length < READ_CHUNK ? length : READ_CHUNK;
		size_t n = LZ4F_compressUpdate(w->cctx, w->out, w->out_capacity, p, piece, NULL);
		if (LZ4F_isError(n))
			return ember_error_set(err, "LZ4 compression: %s", LZ4F_getErrorName(n));
		if (writer_flush_out(w, n, err) < 0)
			return -1;
		p += piece;
		length -= piece;
	}
	return 0;
}

static int writer_put_extent(struct pack_writer *w, uint64_t offset, const uint8_t *bytes, size_t length,
			     struct ember_error *err)
{
	uint8_t record[SNAP_ARCHIVE_EXTENT_RECORD_SIZE];
	size_t n = snap_archive_extent_record(record, offset, length);
	if (writer_put(w, record, n, err) < 0 || writer_put(w, bytes, length, err) < 0)
		return -1;
	w->extent_count++;
	w->data_bytes += length;
	return 0;
}

static bool page_is_zero(const uint8_t *page, size_t length)
{
	size_t i = 0;
	for (; i + 64 <= length; i += 64) {
		uint64_t words[8], any = 0;
		memcpy(words, page + i, 64);
		for (int k = 0; k < 8; k++)
			any |= words[k];
		if (any)
			return false;
	}
	for (; i < length; i++)
		if (page[i])
			return false;
	return true;
}

/* Writes the non-zero pages of `length` bytes read at file offset `base`
 * as extents, one per run of non-zero pages.  Pages are aligned to file
 * offsets, so a page may be cut short at either end of the chunk. */
static int put_nonzero_runs(struct pack_writer *w, uint64_t base, const uint8_t *bytes, size_t length,
			    struct ember_error *err)
{
	size_t run_start = 0, position = 0;
	bool in_run = false;
	while (position < length) {
		uint64_t absolute = base + position;
		size_t page = PAGE_BYTES - (size_t)(absolute % PAGE_BYTES);
		if (page > length - position)
			page = length - position;
		bool zero = page_is_zero(bytes + position, page);
		if (!zero && !in_run) {
			run_start = position;
			in_run = true;
		} else if (zero && in_run) {
			if (writer_put_extent(w, base + run_start, bytes + run_start, position - run_start,
					      err) < 0)
				return -1;
			in_run = false;
		}
		position += page;
	}
	if (in_run)
		return writer_put_extent(w, base + run_start, bytes + run_start, length - run_start, err);
	return 0;
}

/* Streams one snapshot file's record and data extents into the archive. */
static int pack_file(struct pack_writer *w, int dirfd, const char *name, struct ember_error *err)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return ember_error_errno(err, errno, "open `%s`", name);
	int rc = -1;
	struct stat before, after;
	if (fstat(fd, &before) < 0) {
		ember_error_errno(err, errno, "stat `%s`", name);
		goto out;
	}
	if (!S_ISREG(before.st_mode)) {
		ember_error_set(err, "`%s` is not a regular file", name);
		goto out;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	uint64_t size = (uint64_t)before.st_size;
	uint8_t record[SNAP_ARCHIVE_FILE_RECORD_MAX];
	if (writer_put(w, record, snap_archive_file_record(record, name, size), err) < 0)
		goto out;

	uint64_t position = 0;
	while (position < size) {
		off_t data = lseek(fd, (off_t)position, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break; /* only a hole remains */
		if (data < 0) {
			ember_error_errno(err, errno, "find data in `%s`", name);
			goto out;
		}
		off_t hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0) {
			ember_error_errno(err, errno, "find a hole in `%s`", name);
			goto out;
		}
		/* Whole pages only (pack_archive.h): widen the range to page
		 * boundaries, never back over what was already read. */
		uint64_t start = (uint64_t)data / PAGE_BYTES * PAGE_BYTES;
		if (start < position)
			start = position;
		uint64_t end = ((uint64_t)hole + PAGE_BYTES - 1) / PAGE_BYTES * PAGE_BYTES;
		if (end > size)
			end = size;
		for (uint64_t at = start; at < end;) {
			uint64_t chunk_end = (at / READ_CHUNK + 1) * READ_CHUNK;
			if (chunk_end > end)
				chunk_end = end;
			size_t want = (size_t)(chunk_end - at);
			ssize_t n = pread(fd, w->chunk, want, (off_t)at);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				ember_error_errno(err, errno, "read `%s` at %llu", name,
						  (unsigned long long)at);
				goto out;
			}
			if (n == 0) {
				ember_error_set(err, "`%s` shrank while it was being packed", name);
				goto out;
			}
			if (put_nonzero_runs(w, at, w->chunk, (size_t)n, err) < 0)
				goto out;
			at += (uint64_t)n;
		}
		position = end; /* > start: SEEK_DATA found data at or after position, before size */
	}
	if (fstat(fd, &after) < 0) {
		ember_error_errno(err, errno, "stat `%s`", name);
		goto out;
	}
	if (after.st_size != before.st_size || after.st_mtim.tv_sec != before.st_mtim.tv_sec ||
	    after.st_mtim.tv_nsec != before.st_mtim.tv_nsec) {
		ember_error_set(err, "`%s` changed while it was being packed", name);
		goto out;
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

/* Writes the whole frame for the snapshot in `dirfd` to w->fd. */
static int pack_stream(struct pack_writer *w, int dirfd, struct ember_error *err)
{
	LZ4F_preferences_t preferences = LZ4F_INIT_PREFERENCES;
	preferences.frameInfo.blockSizeID = LZ4F_max4MB;
	preferences.frameInfo.blockMode = LZ4F_blockLinked;
	preferences.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	preferences.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;

	size_t created = LZ4F_createCompressionContext(&w->cctx, LZ4F_VERSION);
	if (LZ4F_isError(created))
		return ember_error_set(err, "LZ4 compression context: %s", LZ4F_getErrorName(created));
	w->out_capacity = LZ4F_compressBound(READ_CHUNK, &preferences);
	if (w->out_capacity < LZ4F_HEADER_SIZE_MAX)
		w->out_capacity = LZ4F_HEADER_SIZE_MAX;
	w->out = malloc(w->out_capacity);
	w->chunk = malloc(READ_CHUNK);
	if (!w->out || !w->chunk)
		return ember_error_set(err, "out of memory");

	size_t n = LZ4F_compressBegin(w->cctx, w->out, w->out_capacity, &preferences);
	if (LZ4F_isError(n))
		return ember_error_set(err, "LZ4 frame header: %s", LZ4F_getErrorName(n));
	if (writer_flush_out(w, n, err) < 0)
		return -1;
	uint8_t header[SNAP_ARCHIVE_HEADER_SIZE];
	if (writer_put(w, header, snap_archive_header(header), err) < 0)
		return -1;
	for (unsigned i = 0; i < SNAP_ARCHIVE_FILES; i++)
		if (pack_file(w, dirfd, snap_archive_names[i], err) < 0)
			return -1;
	uint8_t end[SNAP_ARCHIVE_END_RECORD_SIZE];
	if (writer_put(w, end,
		       snap_archive_end_record(end, SNAP_ARCHIVE_FILES, w->extent_count, w->data_bytes),
		       err) < 0)
		return -1;
	n = LZ4F_compressEnd(w->cctx, w->out, w->out_capacity, NULL);
	if (LZ4F_isError(n))
		return ember_error_set(err, "LZ4 frame end: %s", LZ4F_getErrorName(n));
	return writer_flush_out(w, n, err);
}

int snap_pack(const char *dir, const char *file, struct snap_pack_summary *summary, struct ember_error *err)
{
	struct snap_pack_summary verified;
	if (verify_directory(dir, &verified, err) < 0)
		return ember_error_wrap(err, "pack `%s` into `%s`", dir, file);

	char temporary[PATH_MAX], parent[PATH_MAX];
	if (temporary_name(file, temporary, sizeof temporary, err) < 0)
		return ember_error_wrap(err, "pack `%s` into `%s`", dir, file);
	parent_of(file, parent, sizeof parent);
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return ember_error_errno(err, errno, "pack `%s` into `%s`: open `%s`", dir, file, dir);
	struct stat dir_st, parent_st;
	if (fstat(dirfd, &dir_st) == 0 && stat(parent, &parent_st) == 0 &&
	    dir_st.st_dev == parent_st.st_dev && dir_st.st_ino == parent_st.st_ino) {
		close(dirfd);
		return ember_error_set(
			err, "pack `%s` into `%s`: the packed file cannot go inside the snapshot", dir, file);
	}
	struct pack_writer w = {.fd = mkostemp(temporary, O_CLOEXEC)};
	int rc = -1;
	if (w.fd < 0) {
		ember_error_errno(err, errno, "create a temporary file beside `%s`", file);
		goto out;
	}
	if (fchmod(w.fd, 0644) < 0) { /* mkostemp makes it private; packs are shared */
		ember_error_errno(err, errno, "chmod `%s`", temporary);
		goto out;
	}
	if (pack_stream(&w, dirfd, err) < 0)
		goto out;
	if (fsync(w.fd) < 0) {
		ember_error_errno(err, errno, "fsync `%s`", temporary);
		goto out;
	}
	if (rename(temporary, file) < 0) {
		ember_error_errno(err, errno, "rename `%s` to `%s`", temporary, file);
		goto out;
	}
	temporary[0] = '\0'; /* it is `file` now */
	if (ember_fsync_directory(parent, err) < 0)
		goto out;
	if (summary) {
		*summary = verified;
		summary->allocated_bytes = 0;
		summary->data_bytes = w.data_bytes;
		summary->extent_count = w.extent_count;
		summary->packed_bytes = w.packed_bytes;
	}
	rc = 0;
out:
	if (w.fd >= 0)
		close(w.fd);
	if (rc < 0 && temporary[0] && w.fd >= 0)
		unlink(temporary);
	close(dirfd);
	LZ4F_freeCompressionContext(w.cctx);
	free(w.out);
	free(w.chunk);
	if (rc < 0)
		return ember_error_wrap(err, "pack `%s` into `%s`", dir, file);
	return 0;
}

/* ---- reading a packed file ------------------------------------------------- */

/* Decompresses the one LZ4 frame that `fd` holds from its current position
 * and feeds its content to `parser`; the frame must carry a content
 * checksum and be followed by nothing.  Counts compressed bytes in
 * *packed_bytes. */
static int read_packed(int fd, struct snap_archive_parser *parser, uint64_t *packed_bytes,
		       struct ember_error *err)
{
	LZ4F_dctx *dctx = NULL;
	uint8_t *in = malloc(PACKED_READ_CHUNK), *out = malloc(DECOMPRESSED_CHUNK);
	size_t in_length = 0, in_position = 0;
	uint64_t consumed_total = 0;
	int rc = -1;
	if (!in || !out) {
		ember_error_set(err, "out of memory");
		goto out;
	}
	size_t created = LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION);
	if (LZ4F_isError(created)) {
		ember_error_set(err, "LZ4 decompression context: %s", LZ4F_getErrorName(created));
		goto out;
	}

	ssize_t got = read_up_to(fd, in, PACKED_READ_CHUNK);
	if (got < 0) {
		ember_error_errno(err, errno, "read");
		goto out;
	}
	in_length = (size_t)got;
	*packed_bytes = in_length;
	uint32_t magic = in_length >= LZ4_MAGIC_BYTES ? (uint32_t)in[0] | (uint32_t)in[1] << 8 |
								(uint32_t)in[2] << 16 | (uint32_t)in[3] << 24
						      : 0;
	if (in_length == 0) {
		ember_error_set(err, "the file is empty");
		goto out;
	}
	if (magic != LZ4F_MAGICNUMBER) {
		ember_error_set(err, "not an LZ4 frame (it does not start with the LZ4 frame magic)");
		goto out;
	}
	LZ4F_frameInfo_t info;
	size_t header_length = in_length;
	size_t hint = LZ4F_getFrameInfo(dctx, &info, in, &header_length);
	if (LZ4F_isError(hint)) {
		ember_error_set(err, "LZ4 frame header: %s", lz4_problem(hint));
		goto out;
	}
	if (info.contentChecksumFlag != LZ4F_contentChecksumEnabled) {
		ember_error_set(err,
				"the LZ4 frame has no content checksum (packed snapshots always carry one)");
		goto out;
	}
	in_position = header_length;
	consumed_total = header_length;

	bool eof = in_length < PACKED_READ_CHUNK, done = false;
	while (!done) {
		if (in_position == in_length && !eof) {
			got = read_up_to(fd, in, PACKED_READ_CHUNK);
			if (got < 0) {
				ember_error_errno(err, errno, "read");
				goto out;
			}
			in_length = (size_t)got;
			in_position = 0;
			*packed_bytes += in_length;
			eof = in_length < PACKED_READ_CHUNK;
		}
		size_t source = in_length - in_position, produced = DECOMPRESSED_CHUNK;
		size_t status = LZ4F_decompress(dctx, out, &produced, in + in_position, &source, NULL);
		if (LZ4F_isError(status)) {
			ember_error_set(err, "LZ4 frame, near compressed byte %llu: %s",
					(unsigned long long)consumed_total, lz4_problem(status));
			goto out;
		}
		in_position += source;
		consumed_total += source;
		if (produced > 0 && snap_archive_parser_feed(parser, out, produced, err) < 0)
			goto out;
		if (status == 0) {
			done = true;
		} else if (source == 0 && produced == 0 && in_position == in_length && eof) {
			ember_error_set(err, "the LZ4 frame is truncated after %llu bytes",
					(unsigned long long)consumed_total);
			goto out;
		} else if (source == 0 && produced == 0 && in_position < in_length) {
			ember_error_set(err,
					"LZ4 frame, near compressed byte %llu: the decoder makes no progress",
					(unsigned long long)consumed_total);
			goto out;
		}
	}
	/* Nothing may follow the frame: not another frame, not garbage. */
	if (in_position == in_length && !eof) {
		got = read_up_to(fd, in, PACKED_READ_CHUNK);
		if (got < 0) {
			ember_error_errno(err, errno, "read");
			goto out;
		}
		in_length = (size_t)got;
		in_position = 0;
		*packed_bytes += in_length;
	}
	if (in_position < in_length) {
		ember_error_set(err, "data follows the LZ4 frame at byte %llu",
				(unsigned long long)consumed_total);
		goto out;
	}
	if (snap_archive_parser_finish(parser, err) < 0)
		goto out;
	rc = 0;
out:
	LZ4F_freeDecompressionContext(dctx);
	free(in);
	free(out);
	return rc;
}

/* ---- verify FILE ----------------------------------------------------------- */

/* Keeps the state bytes; checks the memory entry against the decoded state.
 * Both unpack and verify of a packed file run it, so both refuse a
 * mismatch before a byte of memory is handled, with the same message. */
struct state_check {
	unsigned file;
	uint8_t *state_bytes;
	uint64_t state_size;
};

static int check_file_begin(void *context, unsigned index, const char *name, uint64_t size,
			    struct ember_error *err)
{
	struct state_check *c = context;
	c->file = index;
	if (index == 0) {
		c->state_bytes = calloc(1, size ? size : 1); /* size <= SNAP_ARCHIVE_STATE_MAX */
		if (!c->state_bytes)
			return ember_error_set(err, "`%s`: out of memory for %llu bytes", name,
					       (unsigned long long)size);
		c->state_size = size;
		return 0;
	}
	struct snap_state state;
	int rc = snap_state_decode(c->state_bytes, c->state_size, &state, err);
	free(c->state_bytes);
	c->state_bytes = NULL;
	if (rc < 0)
		return ember_error_wrap(err, "`%s`", SNAP_STATE_FILE);
	uint64_t mem_size = state.memory.mem_size;
	snap_state_free(&state);
	if (size != mem_size)
		return ember_error_set(err, "`%s` is %llu bytes; the state says guest memory is %llu bytes",
				       name, (unsigned long long)size, (unsigned long long)mem_size);
	return 0;
}

static void check_data(struct state_check *c, uint64_t offset, const uint8_t *bytes, size_t length)
{
	if (c->file == 0)
		memcpy(c->state_bytes + offset, bytes, length); /* the parser bounds offset + length */
}

static void check_free(struct state_check *c)
{
	free(c->state_bytes);
	c->state_bytes = NULL;
}

static int verify_data(void *context, uint64_t offset, const uint8_t *bytes, size_t length,
		       struct ember_error *err)
{
	(void)err;
	check_data(context, offset, bytes, length);
	return 0;
}

int snap_verify_packed_fd(int fd, struct snap_pack_summary *summary, struct ember_error *err)
{
	static const struct snap_archive_sink sink = {.file_begin = check_file_begin, .data = verify_data};
	struct state_check check = {0};
	struct snap_archive_parser parser;
	snap_archive_parser_init(&parser, &sink, &check);
	uint64_t packed_bytes = 0;
	int rc = read_packed(fd, &parser, &packed_bytes, err);
	check_free(&check);
	if (rc < 0)
		return -1;
	if (summary) {
		memset(summary, 0, sizeof *summary);
		summary->state_version = SNAP_FORMAT_VERSION;
		summary->state_bytes = parser.sizes[0];
		summary->memory_bytes = parser.sizes[1];
		summary->data_bytes = parser.data_bytes;
		summary->extent_count = parser.extent_count;
		summary->packed_bytes = packed_bytes;
	}
	return 0;
}

int snap_verify_packed(const char *file, struct snap_pack_summary *summary, struct ember_error *err)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ember_error_errno(err, errno, "packed snapshot `%s`: open", file);
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	int rc = snap_verify_packed_fd(fd, summary, err);
	close(fd);
	if (rc < 0)
		return ember_error_wrap(err, "packed snapshot `%s`", file);
	return 0;
}

/* ---- unpack ------------------------------------------------------------------ */

/* Writes the archive's files into the temporary directory. */
struct unpack_sink {
	struct state_check check;
	int dirfd; /* the temporary directory */
	int fd;    /* the file being written, or -1 */
	const char *name;
	bool created[SNAP_ARCHIVE_FILES];
};

static int unpack_file_begin(void *context, unsigned index, const char *name, uint64_t size,
			     struct ember_error *err)
{
	struct unpack_sink *u = context;
	if (check_file_begin(&u->check, index, name, size, err) < 0)
		return -1;
	u->name = name;
	u->fd = openat(u->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (u->fd < 0)
		return ember_error_errno(err, errno, "create `%s`", name);
	u->created[index] = true;
	if (ftruncate(u->fd, (off_t)size) < 0)
		return ember_error_errno(err, errno, "size `%s` to %llu bytes", name,
					 (unsigned long long)size);
	return 0;
}

static int unpack_data(void *context, uint64_t offset, const uint8_t *bytes, size_t length,
		       struct ember_error *err)
{
	struct unpack_sink *u = context;
	check_data(&u->check, offset, bytes, length);
	if (pwrite_all(u->fd, bytes, length, offset) < 0)
		return ember_error_errno(err, errno, "write `%s` at %llu", u->name,
					 (unsigned long long)offset);
	return 0;
}

static int unpack_file_end(void *context, unsigned index, struct ember_error *err)
{
	(void)index;
	struct unpack_sink *u = context;
	int rc = fsync(u->fd) < 0 ? ember_error_errno(err, errno, "fsync `%s`", u->name) : 0;
	close(u->fd);
	u->fd = -1;
	return rc;
}

int snap_unpack(const char *file, const char *dir, struct snap_pack_summary *summary, struct ember_error *err)
{
	static const struct snap_archive_sink sink = {
		.file_begin = unpack_file_begin, .data = unpack_data, .file_end = unpack_file_end};
	struct stat st;
	if (lstat(dir, &st) == 0)
		return ember_error_set(err, "unpack `%s`: `%s` already exists", file, dir);
	char temporary[PATH_MAX], parent[PATH_MAX];
	if (temporary_name(dir, temporary, sizeof temporary, err) < 0)
		return ember_error_wrap(err, "unpack `%s`", file);
	parent_of(dir, parent, sizeof parent);
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ember_error_errno(err, errno, "unpack `%s`: open", file);
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	struct unpack_sink u = {.dirfd = -1, .fd = -1};
	bool made = false, renamed = false;
	int rc = -1;
	if (!mkdtemp(temporary)) {
		ember_error_errno(err, errno, "create a temporary directory beside `%s`", dir);
		goto out;
	}
	made = true;
	if (chmod(temporary, 0755) < 0) { /* mkdtemp makes it private; snapshots are read by pool VMMs */
		ember_error_errno(err, errno, "chmod `%s`", temporary);
		goto out;
	}
	u.dirfd = open(temporary, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (u.dirfd < 0) {
		ember_error_errno(err, errno, "open `%s`", temporary);
		goto out;
	}
	struct snap_archive_parser parser;
	snap_archive_parser_init(&parser, &sink, &u);
	uint64_t packed_bytes = 0;
	if (read_packed(fd, &parser, &packed_bytes, err) < 0)
		goto out;
	if (fsync(u.dirfd) < 0) {
		ember_error_errno(err, errno, "fsync directory `%s`", temporary);
		goto out;
	}
	struct snap_pack_summary verified;
	if (verify_directory(temporary, &verified, err) < 0) {
		ember_error_wrap(err, "the unpacked snapshot");
		goto out;
	}
	if (rename_new(temporary, dir) < 0) {
		ember_error_errno(err, errno, "rename `%s` to `%s`", temporary, dir);
		goto out;
	}
	renamed = true;
	if (ember_fsync_directory(parent, err) < 0)
		goto out;
	if (summary) {
		*summary = verified;
		summary->data_bytes = parser.data_bytes;
		summary->extent_count = parser.extent_count;
		summary->packed_bytes = packed_bytes;
	}
	rc = 0;
out:
	close(fd);
	check_free(&u.check);
	if (u.fd >= 0)
		close(u.fd);
	if (rc < 0 && made) { /* leave nothing behind, wherever the files are now */
		const char *where = renamed ? dir : temporary;
		for (unsigned i = 0; i < SNAP_ARCHIVE_FILES; i++)
			if (u.created[i])
				unlinkat(u.dirfd, snap_archive_names[i], 0);
		rmdir(where); /* fails only if someone else wrote into our private directory */
	}
	if (u.dirfd >= 0)
		close(u.dirfd);
	if (rc < 0)
		return ember_error_wrap(err, "unpack `%s` into `%s`", file, dir);
	return 0;
}
