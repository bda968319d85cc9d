/* Unpacking hostile code bundles (zip, tar.gz) into a fresh task directory:
 * the contract is in bundle.h.
 *
 * Shape: pool_bundle_unpack() makes a private temporary directory beside
 * the task directory and opens it (root_fd).  Every entry's name is
 * validated and normalized first (normalize_name, check_link_target); only
 * then is anything created, always relative to root_fd with openat2
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, so no path from the bundle can leave
 * the directory or pass through a link.  zip is read by libarchive's
 * seekable zip reader (central directory, per-entry CRC); tar.gz is
 * decompressed here with zlib (gzip CRC and length checked, decompressed
 * size capped) and fed to libarchive's tar reader.  At the end the links
 * are followed once more (RESOLVE_BENEATH) to catch escapes through chains
 * of links, the tree is flushed and renamed into place.  Any failure
 * removes the temporary tree with remove_tree(), which never follows a
 * link either. */
#include "bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <locale.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

#define BLOCK_SIZE      65536
#define LINK_TARGET_MAX (POOL_BUNDLE_PATH_MAX - 1) /* what symlinkat accepts */
#define SHOWN_MAX       200                        /* an escaped name in a message */
/* The decompressed tar stream may exceed the file bytes by its headers and
 * padding: allow this much per entry (a pax header with a 4 KiB name, the
 * ustar header, padding), plus the end-of-archive blocks. */
#define TAR_OVERHEAD_PER_ENTRY (16u << 10)
#define TAR_OVERHEAD_FIXED     (1u << 20)
/* Entries are created this way: never through a link, never above root_fd. */
#define RESOLVE_STRICT (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

/* The tar.gz input: the bundle file, decompressed here so that the gzip
 * CRC-32 and length are checked (libarchive 3.6 skips them) and the
 * decompressed size is bounded whatever libarchive skips. */
struct gzip_source {
	int fd;
	z_stream stream;
	bool stream_ready; /* inflateInit2 succeeded */
	bool input_ended;  /* read() returned 0 */
	bool member_ended; /* the current gzip member ended cleanly */
	uint64_t produced; /* decompressed bytes so far */
	uint64_t budget;   /* at most this many */
	char problem[160]; /* why the stream failed, for the message */
	unsigned char in[BLOCK_SIZE];
	unsigned char out[BLOCK_SIZE];
};

struct unpack {
	struct pool_bundle_limits limits;
	struct pool_bundle_report *report;
	struct ember_error *err;
	int bundle_fd;
	int root_fd; /* the temporary directory everything goes into */
	struct archive *archive;
	struct gzip_source *gzip; /* tar.gz only */
	char *links;              /* normalized paths of the links made, NUL-separated */
	size_t links_length, links_capacity;
	char path[POOL_BUNDLE_PATH_MAX + 1]; /* the current entry, normalized */
	char shown[SHOWN_MAX];               /* the current entry's raw name, escaped */
	unsigned char buffer[BLOCK_SIZE];
};

/* Copies `text` into `out` with every byte outside printable ASCII, and
 * the backslash and backquote, written as \xNN; truncated with "...". */
static void escape_for_message(const char *text, char *out, size_t capacity)
{
	static const char hex[] = "0123456789abcdef";
	size_t used = 0;
	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		if (used + 8 > capacity) {
			memcpy(out + used, "...", 4);
			return;
		}
		if (*p >= 0x20 && *p < 0x7f && *p != '\\' && *p != '`') {
			out[used++] = (char)*p;
		} else {
			out[used++] = '\\';
			out[used++] = 'x';
			out[used++] = hex[*p >> 4];
			out[used++] = hex[*p & 15];
		}
	}
	out[used] = '\0';
}

/* Sets "entry `NAME`: MESSAGE".  Returns -1. */
static int entry_error(struct unpack *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int entry_error(struct unpack *u, const char *fmt, ...)
{
	char message[EMBER_ERROR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof message, fmt, ap);
	va_end(ap);
	return ember_error_set(u->err, "entry `%s`: %s", u->shown, message);
}

/* Like entry_error, with ": strerror(errnum)" appended. */
static int entry_errno(struct unpack *u, int errnum, const char *what)
{
	return ember_error_set(u->err, "entry `%s`: %s: %s", u->shown, what, strerror(errnum));
}

/* The reason libarchive (or the gzip source under it) gave, escaped. */
static void archive_reason(struct unpack *u, char *out, size_t capacity)
{
	const char *reason = NULL;
	if (u->gzip && u->gzip->problem[0])
		reason = u->gzip->problem;
	else if (u->archive)
		reason = archive_error_string(u->archive);
	escape_for_message(reason ? reason : "unknown libarchive error", out, capacity);
	size_t length = strlen(out);
	while (length >= 4 && strcmp(out + length - 4, "\\x0a") == 0)
		out[length -= 4] = '\0'; /* some libarchive messages end in a newline */
}

/* openat2() with O_CLOEXEC added; retries the EAGAIN that RESOLVE_* answers
 * when a rename raced with the lookup.  Returns the fd, or -1 with errno. */
static int open_beneath(int dir_fd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve)
{
	struct open_how how = {.flags = flags | O_CLOEXEC, .mode = mode, .resolve = resolve};
	for (int attempt = 0; attempt < 16; attempt++) {
		long fd = syscall(SYS_openat2, dir_fd, path, &how, sizeof how);
		if (fd >= 0)
			return (int)fd;
		if (errno != EAGAIN && errno != EINTR)
			return -1;
	}
	return -1;
}

/* Writes all of `data`.  Returns 0, or -1 with errno. */
static int write_all(int fd, const unsigned char *data, size_t length)
{
	while (length > 0) {
		ssize_t n = write(fd, data, length);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		data += n;
		length -= (size_t)n;
	}
	return 0;
}

/* ---- names ------------------------------------------------------------ */

/* Validates an entry name from the bundle and writes its normalized form
 * (components joined by single slashes, "." and empty components dropped;
 * "" for the bundle's root) to `out`.  Returns NULL, or what is wrong. */
static const char *normalize_name(const char *raw, char out[POOL_BUNDLE_PATH_MAX + 1])
{
	size_t length = strlen(raw);
	if (length == 0)
		return "the name is empty";
	if (length > POOL_BUNDLE_PATH_MAX)
		return "the name is longer than 4096 bytes";
	for (size_t i = 0; i < length; i++) {
		unsigned char c = (unsigned char)raw[i];
		if (c < 0x20 || c == 0x7f)
			return "the name contains a control character";
	}
	if (raw[0] == '/')
		return "an absolute name is not allowed";
	size_t used = 0;
	const char *p = raw;
	while (*p) {
		const char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return "a `..` component is not allowed";
		if (n > POOL_BUNDLE_NAME_MAX)
			return "a component is longer than 255 bytes";
		if (n > 0 && !(n == 1 && p[0] == '.')) {
			if (used > 0)
				out[used++] = '/';
			memcpy(out + used, p, n);
			used += n;
		}
		p = *end ? end + 1 : end;
	}
	out[used] = '\0';
	return NULL;
}

/* Validates the target of a symbolic link at `link_path` (normalized):
 * relative, and never above the task directory when its components are
 * applied one by one to the link's own directory.  Returns NULL, or what is
 * wrong. */
static const char *check_link_target(const char *link_path, const char *target)
{
	size_t length = strlen(target);
	if (length == 0)
		return "the symbolic link's target is empty";
	if (length > LINK_TARGET_MAX)
		return "the symbolic link's target is longer than 4095 bytes";
	for (size_t i = 0; i < length; i++) {
		unsigned char c = (unsigned char)target[i];
		if (c < 0x20 || c == 0x7f)
			return "the symbolic link's target contains a control character";
	}
	if (target[0] == '/')
		return "the symbolic link's target is absolute";
	size_t depth = 0; /* of the link's directory below the task directory */
	for (const char *p = link_path; *p; p++)
		depth += *p == '/';
	const char *p = target;
	while (*p) {
		const char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p);
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (depth == 0)
				return "the symbolic link's target leaves the task directory";
			depth--;
		} else if (n > POOL_BUNDLE_NAME_MAX) {
			return "a component of the symbolic link's target is longer than 255 bytes";
		} else if (n > 0 && !(n == 1 && p[0] == '.')) {
			depth++;
		}
		p = *end ? end + 1 : end;
	}
	return NULL;
}

/* ---- creating entries beneath root_fd ---------------------------------- */

/* Makes directory `name` in `parent_fd`, mode exactly 0755.  Returns 0, or
 * -1 with errno (EEXIST when something has that name). */
static int make_directory(int parent_fd, const char *name)
{
	if (mkdirat(parent_fd, name, 0700) < 0)
		return -1;
	int fd = open_beneath(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, RESOLVE_STRICT);
	if (fd < 0)
		return -1;
	int result = fchmod(fd, 0755);
	int saved = errno;
	close(fd);
	errno = saved;
	return result;
}

/* Sets the error for a parent directory `prefix` that could not be opened. */
static int parent_error(struct unpack *u, int errnum, const char *prefix)
{
	char shown[SHOWN_MAX];
	escape_for_message(prefix, shown, sizeof shown);
	if (errnum == ELOOP)
		return entry_error(u, "its parent path `%s` goes through a symbolic link", shown);
	if (errnum == ENOTDIR)
		return entry_error(u, "its parent `%s` is not a directory", shown);
	return entry_error(u, "open its parent directory `%s`: %s", shown, strerror(errnum));
}

/* Walks u->path (the parent part, already cut at its last slash) one
 * component at a time from root_fd, making the missing directories.
 * Returns the parent's O_PATH fd, or -1 with the error set. */
static int create_parents(struct unpack *u)
{
	int current = fcntl(u->root_fd, F_DUPFD_CLOEXEC, 0);
	if (current < 0)
		return entry_errno(u, errno, "duplicate the directory descriptor");
	char *p = u->path;
	for (;;) {
		char *end = strchrnul(p, '/');
		char saved = *end;
		*end = '\0';
		int next = open_beneath(current, p, O_PATH | O_DIRECTORY, 0, RESOLVE_STRICT);
		if (next < 0 && errno == ENOENT) {
			if (make_directory(current, p) < 0 && errno != EEXIST) {
				int errnum = errno;
				close(current);
				parent_error(u, errnum, u->path);
				*end = saved;
				return -1;
			}
			next = open_beneath(current, p, O_PATH | O_DIRECTORY, 0, RESOLVE_STRICT);
		}
		if (next < 0) {
			int errnum = errno;
			close(current);
			parent_error(u, errnum, u->path);
			*end = saved;
			return -1;
		}
		*end = saved;
		close(current);
		current = next;
		if (saved == '\0')
			return current;
		p = end + 1;
	}
}

/* Opens the directory that will hold u->path, making missing directories
 * (bundles often leave them implicit).  Sets *leaf to the last component.
 * Returns an fd the caller closes, or -1 with the error set. */
static int open_parent(struct unpack *u, const char **leaf)
{
	char *slash = strrchr(u->path, '/');
	if (!slash) {
		*leaf = u->path;
		int fd = fcntl(u->root_fd, F_DUPFD_CLOEXEC, 0);
		return fd < 0 ? entry_errno(u, errno, "duplicate the directory descriptor") : fd;
	}
	*slash = '\0';
	int fd = open_beneath(u->root_fd, u->path, O_PATH | O_DIRECTORY, 0, RESOLVE_STRICT);
	if (fd < 0 && errno == ENOENT)
		fd = create_parents(u);
	else if (fd < 0)
		parent_error(u, errno, u->path);
	*slash = '/';
	*leaf = slash + 1;
	return fd;
}

static int unpack_directory(struct unpack *u)
{
	if (u->path[0] == '\0')
		return 0; /* "./": the task directory itself */
	const char *leaf;
	int parent = open_parent(u, &leaf);
	if (parent < 0)
		return -1;
	int result = 0;
	if (make_directory(parent, leaf) < 0) {
		int errnum = errno;
		struct stat st;
		if (errnum != EEXIST)
			result = entry_errno(u, errnum, "make the directory");
		else if (fstatat(parent, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
			result = entry_error(u, "it would replace an earlier entry of the same name");
		/* else a directory named twice: merged */
	}
	close(parent);
	return result;
}

static int unpack_regular_file(struct unpack *u, struct archive_entry *entry)
{
	if (u->path[0] == '\0')
		return entry_error(u, "a file cannot be the task directory itself");
	const char *leaf;
	int parent = open_parent(u, &leaf);
	if (parent < 0)
		return -1;
	int fd = open_beneath(parent, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600, RESOLVE_STRICT);
	int errnum = errno;
	close(parent);
	if (fd < 0) {
		if (errnum == EEXIST)
			return entry_error(u, "it would replace an earlier entry of the same name");
		return entry_errno(u, errnum, "create the file");
	}
	for (;;) {
		la_ssize_t n = archive_read_data(u->archive, u->buffer, sizeof u->buffer);
		if (n == 0)
			break;
		if (n < 0) {
			char reason[SHOWN_MAX];
			archive_reason(u, reason, sizeof reason);
			close(fd);
			return entry_error(u, "read its data: %s", reason);
		}
		/* bytes_written never exceeds the cap, so this cannot wrap. */
		if ((uint64_t)n > u->limits.max_total_bytes - u->report->bytes_written) {
			close(fd);
			return entry_error(u, "the bundle unpacks to more than %llu bytes",
					   (unsigned long long)u->limits.max_total_bytes);
		}
		if (write_all(fd, u->buffer, (size_t)n) < 0) {
			errnum = errno;
			close(fd);
			return entry_errno(u, errnum, "write the file");
		}
		u->report->bytes_written += (uint64_t)n;
	}
	mode_t mode = (archive_entry_perm(entry) & 0111) ? 0755 : 0644;
	if (fchmod(fd, mode) < 0) {
		errnum = errno;
		close(fd);
		return entry_errno(u, errnum, "set the file's mode");
	}
	if (close(fd) < 0)
		return entry_errno(u, errno, "close the file");
	return 0;
}

/* Remembers a link's normalized path for the final check. */
static int remember_link(struct unpack *u)
{
	size_t n = strlen(u->path) + 1;
	if (u->links_capacity - u->links_length < n) {
		size_t capacity = u->links_capacity ? u->links_capacity : 4096;
		while (capacity - u->links_length < n) {
			if (capacity > SIZE_MAX / 2)
				return entry_error(u, "out of memory");
			capacity *= 2;
		}
		char *grown = realloc(u->links, capacity);
		if (!grown)
			return entry_error(u, "out of memory");
		u->links = grown;
		u->links_capacity = capacity;
	}
	memcpy(u->links + u->links_length, u->path, n);
	u->links_length += n;
	return 0;
}

static int unpack_symlink(struct unpack *u, struct archive_entry *entry)
{
	if (u->path[0] == '\0')
		return entry_error(u, "a symbolic link cannot be the task directory itself");
	const char *target = archive_entry_symlink(entry); /* NULL when empty */
	const char *problem = check_link_target(u->path, target ? target : "");
	if (problem)
		return entry_error(u, "%s", problem);
	const char *leaf;
	int parent = open_parent(u, &leaf);
	if (parent < 0)
		return -1;
	int result = symlinkat(target, parent, leaf);
	int errnum = errno;
	close(parent);
	if (result < 0) {
		if (errnum == EEXIST)
			return entry_error(u, "it would replace an earlier entry of the same name");
		return entry_errno(u, errnum, "make the symbolic link");
	}
	return remember_link(u);
}

/* Validates one entry and creates it. */
static int unpack_entry(struct unpack *u, struct archive_entry *entry)
{
	const char *raw = archive_entry_pathname(entry);
	if (!raw) {
		snprintf(u->shown, sizeof u->shown, "#%llu", (unsigned long long)u->report->entries);
		return entry_error(u, "its name cannot be read");
	}
	escape_for_message(raw, u->shown, sizeof u->shown);
	const char *problem = normalize_name(raw, u->path);
	if (problem)
		return entry_error(u, "%s", problem);
	if (archive_entry_hardlink(entry))
		return entry_error(u, "hard links are not allowed");
	switch (archive_entry_filetype(entry)) {
	case AE_IFDIR: return unpack_directory(u);
	case AE_IFREG: return unpack_regular_file(u, entry);
	case AE_IFLNK: return unpack_symlink(u, entry);
	case AE_IFCHR:
	case AE_IFBLK: return entry_error(u, "device files are not allowed");
	case AE_IFIFO: return entry_error(u, "FIFOs are not allowed");
	case AE_IFSOCK: return entry_error(u, "sockets are not allowed");
	default:
		return entry_error(u, "file type 0%o is not allowed",
				   (unsigned)archive_entry_filetype(entry));
	}
}

/* Follows every link made, from the task directory, with RESOLVE_BENEATH:
 * a link whose target is lexically inside can still leave through another
 * link (`a/l -> ../b`, then `a/m -> l/../..`).  Dangling links are fine. */
static int check_links_followed(struct unpack *u)
{
	for (size_t offset = 0; offset < u->links_length; offset += strlen(u->links + offset) + 1) {
		const char *link = u->links + offset;
		int fd = open_beneath(u->root_fd, link, O_PATH, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
		if (fd >= 0) {
			close(fd);
			continue;
		}
		escape_for_message(link, u->shown, sizeof u->shown);
		if (errno == EXDEV)
			return entry_error(u, "the symbolic link leaves the task directory when followed");
		if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP)
			return entry_errno(u, errno, "follow the symbolic link");
	}
	return 0;
}

/* ---- the tar.gz source ----------------------------------------------------- */

static int gzip_fail(struct archive *archive, struct gzip_source *g, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int gzip_fail(struct archive *archive, struct gzip_source *g, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g->problem, sizeof g->problem, fmt, ap);
	va_end(ap);
	if (archive)
		archive_set_error(archive, EINVAL, "%s", g->problem);
	return ARCHIVE_FATAL;
}

/* libarchive's read callback: the next block of decompressed tar, 0 at the
 * clean end of the last gzip member, negative on failure.  Also called with
 * archive NULL to drain the stream after the tar end. */
static la_ssize_t gzip_read(struct archive *archive, void *data, const void **block)
{
	struct gzip_source *g = data;
	*block = g->out;
	if (g->problem[0])
		return ARCHIVE_FATAL;
	for (;;) {
		if (g->stream.avail_in == 0 && !g->input_ended) {
			ssize_t n = read(g->fd, g->in, sizeof g->in);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return gzip_fail(archive, g, "read the bundle: %s", strerror(errno));
			if (n == 0) {
				g->input_ended = true;
			} else {
				g->stream.next_in = g->in;
				g->stream.avail_in = (uInt)n;
			}
		}
		if (g->member_ended) {
			if (g->stream.avail_in == 0 && g->input_ended)
				return 0;
			if (g->stream.avail_in == 0)
				continue;
			/* Another member follows (gzip allows concatenation); anything
			 * else fails the header check below. */
			inflateReset(&g->stream);
			g->member_ended = false;
		}
		if (g->stream.avail_in == 0 && g->input_ended)
			return gzip_fail(archive, g, "the gzip data is truncated");
		g->stream.next_out = g->out;
		g->stream.avail_out = sizeof g->out;
		int status = inflate(&g->stream, Z_NO_FLUSH);
		size_t produced = sizeof g->out - g->stream.avail_out;
		if (status == Z_STREAM_END)
			g->member_ended = true; /* zlib has checked the CRC-32 and length */
		else if (status != Z_OK && status != Z_BUF_ERROR)
			return gzip_fail(archive, g, "corrupt gzip data: %s",
					 g->stream.msg ? g->stream.msg : "inflate failed");
		if (produced > 0) {
			if (produced > g->budget - g->produced)
				return gzip_fail(archive, g,
						 "the decompressed tar stream is larger than %llu bytes",
						 (unsigned long long)g->budget);
			g->produced += produced;
			return (la_ssize_t)produced;
		}
	}
}

/* Reads the rest of the gzip stream after the tar's end, so that its CRC,
 * length and trailer are checked.  Returns 0, or -1 with the error set. */
static int gzip_drain(struct unpack *u)
{
	const void *block;
	for (;;) {
		la_ssize_t n = gzip_read(NULL, u->gzip, &block);
		if (n == 0)
			return 0;
		if (n < 0)
			return ember_error_set(u->err, "after the last entry: %s", u->gzip->problem);
	}
}

static uint64_t saturating_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- the archive ---------------------------------------------------------- */

/* Opens u->archive on the bundle: tar.gz when it starts with the gzip
 * magic, zip otherwise.  Sets report->format.  Returns 0 or -1. */
static int open_archive(struct unpack *u)
{
	unsigned char magic[4];
	ssize_t n = pread(u->bundle_fd, magic, sizeof magic, 0);
	if (n < 0)
		return ember_error_errno(u->err, errno, "read the bundle");
	if (n == 0)
		return ember_error_set(u->err, "the bundle is empty, not a zip or tar.gz archive");
	u->archive = archive_read_new();
	if (!u->archive)
		return ember_error_set(u->err, "out of memory");
	bool gzip = n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
	int status;
	if (gzip) {
		u->gzip = calloc(1, sizeof *u->gzip);
		if (!u->gzip)
			return ember_error_set(u->err, "out of memory");
		u->gzip->fd = u->bundle_fd;
		uint64_t per_entry = u->limits.max_entries > UINT64_MAX / TAR_OVERHEAD_PER_ENTRY
					     ? UINT64_MAX
					     : u->limits.max_entries * TAR_OVERHEAD_PER_ENTRY;
		u->gzip->budget = saturating_add(u->limits.max_total_bytes,
						 saturating_add(per_entry, TAR_OVERHEAD_FIXED));
		if (inflateInit2(&u->gzip->stream, 15 + 16) != Z_OK) /* gzip wrapper only */
			return ember_error_set(u->err, "initialise zlib");
		u->gzip->stream_ready = true;
		if (archive_read_support_format_tar(u->archive) != ARCHIVE_OK)
			return ember_error_set(u->err, "libarchive: %s", archive_error_string(u->archive));
		status = archive_read_open(u->archive, u->gzip, NULL, gzip_read, NULL);
	} else {
		/* Seekable: the central directory is authoritative, and a zip cut
		 * short (no central directory) is refused, not read in part. */
		if (archive_read_support_format_zip_seekable(u->archive) != ARCHIVE_OK)
			return ember_error_set(u->err, "libarchive: %s", archive_error_string(u->archive));
		status = archive_read_open_fd(u->archive, u->bundle_fd, BLOCK_SIZE);
	}
	if (status != ARCHIVE_OK) {
		char reason[SHOWN_MAX];
		archive_reason(u, reason, sizeof reason);
		if (gzip && u->gzip->problem[0])
			return ember_error_set(u->err, "%s", reason);
		if (gzip)
			return ember_error_set(u->err, "the gzip data is not a tar archive (%s)", reason);
		if (n == 4 && memcmp(magic, "PK\3\4", 4) == 0)
			return ember_error_set(
				u->err, "a damaged zip archive: no valid central directory; truncated? (%s)",
				reason);
		if (n == 4 && memcmp(magic, "PK\5\6", 4) == 0)
			return ember_error_set(u->err, "the bundle holds no entries (an empty zip archive)");
		return ember_error_set(u->err, "not a zip or tar.gz archive (%s)", reason);
	}
	snprintf(u->report->format, sizeof u->report->format, "%s", gzip ? "tar.gz" : "zip");
	return 0;
}

/* Reads every entry and creates it beneath root_fd, then checks the links.
 * Returns 0 or -1. */
static int unpack_archive(struct unpack *u)
{
	if (open_archive(u) < 0)
		return -1;
	for (;;) {
		struct archive_entry *entry;
		int status = archive_read_next_header(u->archive, &entry);
		if (status == ARCHIVE_EOF)
			break;
		if (status != ARCHIVE_OK) {
			char reason[SHOWN_MAX];
			archive_reason(u, reason, sizeof reason);
			return ember_error_set(u->err, "entry %llu: %s",
					       (unsigned long long)u->report->entries + 1, reason);
		}
		if (++u->report->entries > u->limits.max_entries)
			return ember_error_set(u->err, "the bundle has more than %llu entries",
					       (unsigned long long)u->limits.max_entries);
		if (unpack_entry(u, entry) < 0)
			return -1;
	}
	if (u->gzip && gzip_drain(u) < 0)
		return -1;
	if (u->report->entries == 0)
		return ember_error_set(u->err, "the bundle holds no entries");
	return check_links_followed(u);
}

/* ---- the task directory ------------------------------------------------------ */

/* Splits `path` into its parent directory and last component.  Returns 0,
 * or -1 with the error set. */
static int split_path(const char *path, char parent[PATH_MAX], char base[NAME_MAX + 1],
		      struct ember_error *err)
{
	size_t length = strlen(path);
	if (length == 0)
		return ember_error_set(err, "the task directory's path is empty");
	if (length >= PATH_MAX)
		return ember_error_set(err, "the task directory's path is too long");
	char copy[PATH_MAX];
	memcpy(copy, path, length + 1);
	while (length > 1 && copy[length - 1] == '/')
		copy[--length] = '\0';
	char *slash = strrchr(copy, '/');
	const char *last = slash ? slash + 1 : copy;
	if (last[0] == '\0' || strcmp(last, ".") == 0 || strcmp(last, "..") == 0)
		return ember_error_set(err, "`%s` does not name a new directory", path);
	if (strlen(last) > NAME_MAX)
		return ember_error_set(err, "`%s`: the last component is longer than %d bytes", path,
				       NAME_MAX);
	memcpy(base, last, strlen(last) + 1);
	if (!slash)
		strcpy(parent, ".");
	else if (slash == copy)
		strcpy(parent, "/");
	else {
		*slash = '\0';
		memcpy(parent, copy, (size_t)(slash - copy) + 1);
	}
	return 0;
}

/* The directories above the one remove_tree() is emptying: who each is
 * (to check that ".." leads back to it) and the name of the child below it. */
struct removal_stack {
	struct removal_level {
		dev_t device;
		ino_t inode;
	} * levels;
	size_t depth, capacity;
	char *names; /* one NUL-terminated name per level */
	size_t names_length, names_capacity;
};

static int removal_push(struct removal_stack *stack, int dir_fd, const char *child)
{
	struct stat st;
	if (fstat(dir_fd, &st) < 0)
		return -1;
	size_t n = strlen(child) + 1;
	if (stack->depth == stack->capacity) {
		size_t capacity = stack->capacity ? stack->capacity * 2 : 64;
		struct removal_level *grown = reallocarray(stack->levels, capacity, sizeof *grown);
		if (!grown)
			return -1;
		stack->levels = grown;
		stack->capacity = capacity;
	}
	if (stack->names_capacity - stack->names_length < n) {
		size_t capacity = stack->names_capacity ? stack->names_capacity * 2 : 4096;
		while (capacity - stack->names_length < n)
			capacity *= 2;
		char *grown = realloc(stack->names, capacity);
		if (!grown)
			return -1;
		stack->names = grown;
		stack->names_capacity = capacity;
	}
	stack->levels[stack->depth++] = (struct removal_level){st.st_dev, st.st_ino};
	memcpy(stack->names + stack->names_length, child, n);
	stack->names_length += n;
	return 0;
}

/* Empties the directory `dir_fd` of everything but non-empty directories;
 * stops at the first of those, copying its name to `child`.  Returns 1 when
 * it found one, 0 when the directory is empty, -1 with errno. */
static int empty_directory(int dir_fd, char child[NAME_MAX + 1])
{
	/* A fresh open: a dup would share the read position. */
	int list_fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (list_fd < 0)
		return -1;
	DIR *dir = fdopendir(list_fd);
	if (!dir) {
		close(list_fd);
		return -1;
	}
	int result = 0;
	struct dirent *entry;
	while ((errno = 0, entry = readdir(dir)) != NULL) {
		const char *n = entry->d_name;
		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
			continue;
		if (entry->d_type != DT_DIR) {
			if (unlinkat(dir_fd, n, 0) == 0)
				continue;
			if (errno != EISDIR) {
				result = -1;
				break;
			}
		}
		if (unlinkat(dir_fd, n, AT_REMOVEDIR) == 0)
			continue;
		if (errno != ENOTEMPTY && errno != EEXIST) {
			result = -1;
			break;
		}
		snprintf(child, NAME_MAX + 1, "%s", n);
		result = 1;
		break;
	}
	if (result == 0 && errno != 0)
		result = -1; /* readdir failed */
	int errnum = errno;
	closedir(dir);
	errno = errnum;
	return result;
}

/* Removes `name` in `parent_fd` and everything below it, never following a
 * link.  Depth first, with two descriptors at most whatever the depth: it
 * goes down with openat(O_NOFOLLOW) and back up through "..", checking that
 * ".." is the directory it came from.  Returns 0, or -1 with errno. */
static int remove_tree(int parent_fd, const char *name)
{
	int current = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (current < 0)
		return errno == ENOENT ? 0 : -1;
	struct removal_stack stack = {0};
	char child[NAME_MAX + 1];
	int errnum = 0;
	for (;;) {
		int found = empty_directory(current, child);
		if (found < 0) {
			errnum = errno;
			break;
		}
		if (found > 0) {
			int below = -1;
			if (removal_push(&stack, current, child) < 0 ||
			    (below = openat(current, child,
					    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
				errnum = errno;
				break;
			}
			close(current);
			current = below;
			continue;
		}
		if (stack.depth == 0)
			break;
		int above = openat(current, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		struct stat st;
		if (above < 0 || fstat(above, &st) < 0) {
			errnum = errno;
			if (above >= 0)
				close(above);
			break;
		}
		const struct removal_level *level = &stack.levels[stack.depth - 1];
		if (st.st_dev != level->device || st.st_ino != level->inode) {
			errnum = ESTALE; /* the tree was moved while being removed */
			close(above);
			break;
		}
		close(current);
		current = above;
		stack.depth--;
		stack.names_length--; /* the last name's NUL */
		while (stack.names_length > 0 && stack.names[stack.names_length - 1] != '\0')
			stack.names_length--;
		if (unlinkat(current, stack.names + stack.names_length, AT_REMOVEDIR) < 0) {
			errnum = errno;
			break;
		}
	}
	close(current);
	free(stack.levels);
	free(stack.names);
	if (errnum == 0 && unlinkat(parent_fd, name, AT_REMOVEDIR) < 0)
		errnum = errno;
	errno = errnum;
	return errnum == 0 ? 0 : -1;
}

/* Makes a private (0700) directory beside the task directory, named after
 * it.  Returns 0 with `name` filled, or -1 with the error set. */
static int make_temporary_directory(int parent_fd, const char *base, char name[NAME_MAX + 1],
				    struct ember_error *err)
{
	for (int attempt = 0; attempt < 16; attempt++) {
		uint32_t random;
		if (getrandom(&random, sizeof random, 0) != sizeof random)
			return ember_error_errno(err, errno, "getrandom");
		snprintf(name, NAME_MAX + 1, ".%.200s.unpacking-%08x", base, random);
		if (mkdirat(parent_fd, name, 0700) == 0)
			return 0;
		if (errno != EEXIST)
			return ember_error_errno(err, errno, "make the temporary directory `%s`", name);
	}
	return ember_error_set(err, "make a temporary directory beside `%s`: every name tried exists", base);
}

/* Makes the unpacked tree durable and puts it at `base`.  Returns 0 or -1. */
static int publish(struct unpack *u, int parent_fd, const char *temporary, const char *base,
		   const char *task_dir)
{
	if (fchmod(u->root_fd, 0755) < 0)
		return ember_error_errno(u->err, errno, "set the task directory's mode");
	if (syncfs(u->root_fd) < 0)
		return ember_error_errno(u->err, errno, "flush the unpacked files");
	if (renameat2(parent_fd, temporary, parent_fd, base, RENAME_NOREPLACE) < 0) {
		if (errno == EEXIST)
			return ember_error_set(u->err, "`%s` appeared while the bundle was unpacked",
					       task_dir);
		return ember_error_errno(u->err, errno, "rename `%s` to `%s`", temporary, task_dir);
	}
	if (fsync(parent_fd) < 0) {
		int errnum = errno;
		remove_tree(parent_fd, base);
		return ember_error_errno(u->err, errnum, "flush the directory holding `%s`", task_dir);
	}
	return 0;
}

int pool_bundle_unpack(const char *bundle_path, const char *task_dir, const struct pool_bundle_limits *limits,
		       struct pool_bundle_report *report, struct ember_error *err)
{
	struct pool_bundle_report unused_report;
	if (!report)
		report = &unused_report;
	memset(report, 0, sizeof *report);

	char parent[PATH_MAX], base[NAME_MAX + 1], temporary[NAME_MAX + 1];
	if (split_path(task_dir, parent, base, err) < 0)
		return ember_error_wrap(err, "unpack bundle `%s`", bundle_path);

	int result = -1;
	bool temporary_made = false;
	locale_t utf8 = (locale_t)0, previous_locale = (locale_t)0;
	struct unpack *u = calloc(1, sizeof *u);
	if (!u) {
		ember_error_set(err, "out of memory");
		goto out;
	}
	u->report = report;
	u->err = err;
	u->bundle_fd = -1;
	u->root_fd = -1;
	u->limits.max_total_bytes = POOL_BUNDLE_DEFAULT_MAX_TOTAL_BYTES;
	u->limits.max_entries = POOL_BUNDLE_DEFAULT_MAX_ENTRIES;
	if (limits && limits->max_total_bytes)
		u->limits.max_total_bytes = limits->max_total_bytes;
	if (limits && limits->max_entries)
		u->limits.max_entries = limits->max_entries;

	int parent_fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (parent_fd < 0) {
		ember_error_errno(err, errno, "open the directory `%s`", parent);
		goto out;
	}
	struct stat st;
	if (fstatat(parent_fd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		ember_error_set(err, "the task directory `%s` already exists", task_dir);
		goto out_parent;
	}
	if (errno != ENOENT) {
		ember_error_errno(err, errno, "check the task directory `%s`", task_dir);
		goto out_parent;
	}

	/* O_NONBLOCK: a FIFO given as the bundle must not hang the open. */
	u->bundle_fd = open(bundle_path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (u->bundle_fd < 0) {
		ember_error_errno(err, errno, "open");
		goto out_parent;
	}
	if (fstat(u->bundle_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ember_error_set(err, "not a regular file");
		goto out_parent;
	}

	if (make_temporary_directory(parent_fd, base, temporary, err) < 0)
		goto out_parent;
	temporary_made = true;
	u->root_fd = openat(parent_fd, temporary, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (u->root_fd < 0) {
		ember_error_errno(err, errno, "open the temporary directory `%s`", temporary);
		goto out_parent;
	}

	/* Names in zip and pax are UTF-8: decode them as such in this thread,
	 * whatever the process locale (in "C" libarchive refuses them). */
	utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	if (utf8)
		previous_locale = uselocale(utf8);
	result = unpack_archive(u);
	if (u->archive) {
		archive_read_free(u->archive);
		u->archive = NULL;
	}
	if (utf8) {
		uselocale(previous_locale);
		freelocale(utf8);
	}
	if (result == 0)
		result = publish(u, parent_fd, temporary, base, task_dir);
	if (result == 0)
		temporary_made = false;

out_parent:
	if (temporary_made && remove_tree(parent_fd, temporary) < 0) {
		char removal[160];
		snprintf(removal, sizeof removal, " (and removing `%s/%s` failed: %s)", parent, temporary,
			 strerror(errno));
		size_t used = strlen(err->message);
		snprintf(err->message + used, sizeof err->message - used, "%s", removal);
	}
	close(parent_fd);
out:
	if (u) {
		if (u->root_fd >= 0)
			close(u->root_fd);
		if (u->bundle_fd >= 0)
			close(u->bundle_fd);
		if (u->gzip) {
			if (u->gzip->stream_ready)
				inflateEnd(&u->gzip->stream);
			free(u->gzip);
		}
		free(u->links);
		free(u);
	}
	if (result < 0)
		ember_error_wrap(err, "unpack bundle `%s`", bundle_path);
	return result;
}

int pool_bundle_remove(const char *task_dir, struct ember_error *err)
{
	char parent[PATH_MAX], base[NAME_MAX + 1];
	if (split_path(task_dir, parent, base, err) < 0)
		return ember_error_wrap(err, "remove task directory `%s`", task_dir);
	int parent_fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (parent_fd < 0)
		return ember_error_errno(err, errno, "remove task directory `%s`: open `%s`", task_dir,
					 parent);
	int result = 0;
	if (remove_tree(parent_fd, base) < 0)
		result = ember_error_errno(err, errno, "remove task directory `%s`", task_dir);
	close(parent_fd);
	return result;
}
