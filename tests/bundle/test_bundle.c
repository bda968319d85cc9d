/* Unit tests of pool-manager/bundle.c, the unpacker of hostile code bundles.
 *
 * Every fixture is made here at test time, in a fresh directory under
 * $TMPDIR (default /tmp): ordinary archives with libarchive's write API,
 * hostile ones with it too or byte by byte (a zip with a NUL or empty name,
 * a 1 GiB zip bomb built from one repeated deflate block in milliseconds,
 * raw ustar headers, damaged copies of good bundles).  Good bundles must
 * unpack exactly (contents, modes, links, report); each hostile one must be
 * refused with a message naming the problem, leave no task directory and
 * no temporary directory behind, and write nothing anywhere else.  The
 * umask is 077 throughout, so modes are checked as set, not as inherited.
 *
 * Prints "PASS name" or "FAIL name: why" per test; exits 1 if any failed.
 * EMBER_TEST_KEEP=1 keeps the fixtures; EMBER_TEST_VERBOSE=1 prints each
 * refusal's message. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <locale.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "bundle.h"

#define MIB (1024ull * 1024)

static int failures;
static char top[4096]; /* this run's fixtures */
static int case_number;
static bool verbose; /* EMBER_TEST_VERBOSE=1: print each refusal's message */

static void pass(const char *name)
{
	printf("PASS %s\n", name);
	fflush(stdout);
}

static bool fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(const char *name, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("FAIL %s: ", name);
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	failures++;
	return false;
}

/* ---- fixtures ----------------------------------------------------------- */

enum kind { ZIP, TAR_GZ, TAR };
enum type { REG, DIRECTORY, SYMLINK, HARDLINK, CHARDEV, BLOCKDEV, FIFO };

struct spec {
	enum type type;
	const char *name;
	const char *data; /* file contents, or the link's target */
	size_t size;      /* of data; 0 means strlen(data) */
	unsigned mode;    /* permission bits; 0 means 0644 (files) or 0755 */
};

static size_t spec_size(const struct spec *s)
{
	return s->type == REG && s->data ? (s->size ? s->size : strlen(s->data)) : 0;
}

/* One case's directory: `bundle` goes in it, the task directory is
 * deep/task, so `..` from the task lands in deep/ and `../..` in the case
 * directory itself, both of which are checked afterwards. */
struct testcase {
	char dir[4200];
	char bundle[4300];
	char deep[4300];
	char task[4400];
};

static void new_case(struct testcase *c)
{
	snprintf(c->dir, sizeof c->dir, "%s/c%03d", top, ++case_number);
	snprintf(c->bundle, sizeof c->bundle, "%s/bundle", c->dir);
	snprintf(c->deep, sizeof c->deep, "%s/deep", c->dir);
	snprintf(c->task, sizeof c->task, "%s/task", c->deep);
	if (mkdir(c->dir, 0755) < 0 || mkdir(c->deep, 0755) < 0) {
		perror("mkdir");
		exit(2);
	}
}

/* Writes an archive of `count` entries with libarchive.  Names are given
 * as UTF-8.  Returns false (with a message) on failure. */
static bool build(const char *path, enum kind kind, const struct spec *specs, size_t count)
{
	locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	locale_t previous = utf8 ? uselocale(utf8) : (locale_t)0;
	struct archive *a = archive_write_new();
	bool ok = true;
	if (kind == ZIP) {
		archive_write_set_format_zip(a);
	} else {
		archive_write_set_format_pax_restricted(a);
		if (kind == TAR_GZ)
			archive_write_add_filter_gzip(a);
	}
	if (archive_write_open_filename(a, path) != ARCHIVE_OK) {
		fprintf(stderr, "build %s: %s\n", path, archive_error_string(a));
		ok = false;
	}
	for (size_t i = 0; ok && i < count; i++) {
		const struct spec *s = &specs[i];
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, s->name);
		archive_entry_set_mtime(e, 1700000000, 0);
		unsigned mode = s->mode;
		switch (s->type) {
		case REG:
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_size(e, (la_int64_t)spec_size(s));
			mode = mode ? mode : 0644;
			break;
		case DIRECTORY:
			archive_entry_set_filetype(e, AE_IFDIR);
			mode = mode ? mode : 0755;
			break;
		case SYMLINK:
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_symlink(e, s->data);
			mode = 0777;
			break;
		case HARDLINK:
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_hardlink(e, s->data);
			mode = 0644;
			break;
		case CHARDEV:
			archive_entry_set_filetype(e, AE_IFCHR);
			archive_entry_set_rdev(e, makedev(1, 3));
			mode = 0666;
			break;
		case BLOCKDEV:
			archive_entry_set_filetype(e, AE_IFBLK);
			archive_entry_set_rdev(e, makedev(8, 0));
			mode = 0660;
			break;
		case FIFO:
			archive_entry_set_filetype(e, AE_IFIFO);
			mode = 0644;
			break;
		}
		archive_entry_set_perm(e, mode);
		if (archive_write_header(a, e) != ARCHIVE_OK) {
			fprintf(stderr, "build %s: entry %s: %s\n", path, s->name, archive_error_string(a));
			ok = false;
		}
		size_t size = spec_size(s);
		if (ok && size && archive_write_data(a, s->data, size) != (la_ssize_t)size) {
			fprintf(stderr, "build %s: data of %s: %s\n", path, s->name, archive_error_string(a));
			ok = false;
		}
		archive_entry_free(e);
	}
	if (archive_write_close(a) != ARCHIVE_OK)
		ok = false;
	archive_write_free(a);
	if (utf8) {
		uselocale(previous);
		freelocale(utf8);
	}
	return ok;
}

static bool write_file(const char *path, const void *data, size_t size)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return false;
	bool ok = fwrite(data, 1, size, f) == size;
	return fclose(f) == 0 && ok;
}

/* Reads a whole file (at most `max` bytes) into a malloc'd buffer. */
static unsigned char *read_file(const char *path, size_t *size, size_t max)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	unsigned char *data = malloc(max + 1);
	*size = data ? fread(data, 1, max + 1, f) : 0;
	fclose(f);
	if (data && *size > max) {
		free(data);
		return NULL;
	}
	return data;
}

/* gzip-compresses `size` bytes into `path`, then appends `zeros` zero bytes
 * to the same gzip stream. */
static bool write_gzip(const char *path, const void *data, size_t size, uint64_t zeros)
{
	gzFile gz = gzopen(path, "wb1");
	if (!gz)
		return false;
	bool ok = size == 0 || gzwrite(gz, data, (unsigned)size) == (int)size;
	static const unsigned char zero[65536];
	for (uint64_t left = zeros; ok && left > 0;) {
		unsigned n = left < sizeof zero ? (unsigned)left : sizeof zero;
		ok = gzwrite(gz, zero, n) == (int)n;
		left -= n;
	}
	return gzclose(gz) == Z_OK && ok;
}

/* A 512-byte ustar header, with its checksum. */
static void ustar_header(unsigned char block[512], const char *name, char type, size_t size, const char *link)
{
	memset(block, 0, 512);
	memcpy(block, name, strnlen(name, 100));
	snprintf((char *)block + 100, 8, "%07o", 0644);
	snprintf((char *)block + 108, 8, "%07o", 0);
	snprintf((char *)block + 116, 8, "%07o", 0);
	snprintf((char *)block + 124, 12, "%011zo", size);
	snprintf((char *)block + 136, 12, "%011o", 1700000000);
	block[156] = (unsigned char)type;
	if (link)
		memcpy(block + 157, link, strnlen(link, 100));
	memcpy(block + 257, "ustar", 6);
	memcpy(block + 263, "00", 2);
	memset(block + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += block[i];
	snprintf((char *)block + 148, 8, "%06o", sum);
	block[155] = ' ';
}

/* A minimal zip writer for names libarchive cannot write (a NUL inside,
 * empty) and for the bomb.  Members are collected, then the central
 * directory is written by zip_finish(). */
struct zip_writer {
	FILE *file;
	uint32_t offset;
	unsigned char central[65536];
	size_t central_length;
	uint16_t count;
};

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

/* Writes a member's local header; the caller then writes exactly
 * `compressed` bytes of data. */
static void zip_member(struct zip_writer *z, const char *name, size_t name_length, uint16_t method, uint32_t crc,
		       uint32_t compressed, uint32_t size, unsigned mode)
{
	unsigned char local[30];
	memset(local, 0, sizeof local);
	put32(local, 0x04034b50);
	put16(local + 4, 20);
	put16(local + 8, method);
	put32(local + 14, crc);
	put32(local + 18, compressed);
	put32(local + 22, size);
	put16(local + 26, (uint16_t)name_length);
	fwrite(local, 1, sizeof local, z->file);
	fwrite(name, 1, name_length, z->file);

	unsigned char *c = z->central + z->central_length;
	memset(c, 0, 46);
	put32(c, 0x02014b50);
	put16(c + 4, 3 << 8 | 20); /* made by Unix */
	put16(c + 6, 20);
	put16(c + 10, method);
	put32(c + 16, crc);
	put32(c + 20, compressed);
	put32(c + 24, size);
	put16(c + 28, (uint16_t)name_length);
	put32(c + 38, (uint32_t)mode << 16);
	put32(c + 42, z->offset);
	memcpy(c + 46, name, name_length);
	z->central_length += 46 + name_length;
	z->offset += (uint32_t)(30 + name_length + compressed);
	z->count++;
}

static bool zip_finish(struct zip_writer *z)
{
	fwrite(z->central, 1, z->central_length, z->file);
	unsigned char end[22];
	memset(end, 0, sizeof end);
	put32(end, 0x06054b50);
	put16(end + 8, z->count);
	put16(end + 10, z->count);
	put32(end + 12, (uint32_t)z->central_length);
	put32(end + 16, z->offset);
	fwrite(end, 1, sizeof end, z->file);
	return fclose(z->file) == 0;
}

/* A zip of one stored file with the raw name `name` (`name_length` bytes,
 * NULs allowed) holding `data`. */
static bool raw_zip(const char *path, const char *name, size_t name_length, const char *data)
{
	struct zip_writer z = {.file = fopen(path, "wb")};
	if (!z.file)
		return false;
	uint32_t size = (uint32_t)strlen(data);
	zip_member(&z, name, name_length, 0, (uint32_t)crc32(0, (const Bytef *)data, size), size, size, 0100644);
	fwrite(data, 1, size, z.file);
	return zip_finish(&z);
}

/* The zip bomb: one member `zeros` of `gib` GiB of zeros, deflated.  One
 * MiB of zeros is compressed once, ending in a full flush (byte-aligned, no
 * reference to earlier data), and that block is repeated; an empty final
 * block ends the stream.  The CRC comes from crc32_combine. */
static bool zip_bomb(const char *path, unsigned gib)
{
	static unsigned char zeros[1 << 20];
	unsigned char block[1 << 16], final_block[64];
	z_stream s;
	memset(&s, 0, sizeof s);
	if (deflateInit2(&s, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) != Z_OK)
		return false;
	s.next_in = zeros;
	s.avail_in = sizeof zeros;
	s.next_out = block;
	s.avail_out = sizeof block;
	if (deflate(&s, Z_FULL_FLUSH) != Z_OK || s.avail_in != 0)
		return false;
	size_t block_length = sizeof block - s.avail_out;
	s.next_out = final_block;
	s.avail_out = sizeof final_block;
	if (deflate(&s, Z_FINISH) != Z_STREAM_END)
		return false;
	size_t final_length = sizeof final_block - s.avail_out;
	deflateEnd(&s);

	uint64_t count = (uint64_t)gib * 1024;
	uLong crc_block = crc32(0, zeros, sizeof zeros), crc = 0;
	for (uint64_t i = 0; i < count; i++)
		crc = crc32_combine(crc, crc_block, sizeof zeros);
	uint64_t compressed = count * block_length + final_length;
	uint64_t size = count * sizeof zeros;
	if (compressed > UINT32_MAX || size > UINT32_MAX)
		return false;
	struct zip_writer z = {.file = fopen(path, "wb")};
	if (!z.file)
		return false;
	zip_member(&z, "zeros", 5, 8, (uint32_t)crc, (uint32_t)compressed, (uint32_t)size, 0100644);
	for (uint64_t i = 0; i < count; i++)
		fwrite(block, 1, block_length, z.file);
	fwrite(final_block, 1, final_length, z.file);
	return zip_finish(&z);
}

/* ---- checks ------------------------------------------------------------- */

/* The names in `dir`, sorted, joined by ","; "?" if it cannot be read. */
static void listing(const char *dir, char *out, size_t capacity)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	out[0] = '\0';
	if (n < 0) {
		snprintf(out, capacity, "?");
		return;
	}
	size_t used = 0;
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
			used += (size_t)snprintf(out + used, used < capacity ? capacity - used : 0, "%s%s",
						 used ? "," : "", name);
		free(names[i]);
	}
	free(names);
}

static int evil_found;
static int find_evil(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	if (strcmp(path + ftw->base, "evil") == 0 || strcmp(path + ftw->base, "x") == 0) {
		printf("    found %s\n", path);
		evil_found++;
	}
	return 0;
}

static bool etc_x_existed;

/* After a refusal: -1, the message contains `expected`, no task directory,
 * nothing left beside it, nothing written anywhere else, and no raw
 * control character in the message. */
static bool check_refused(const char *name, const struct testcase *c, int rc, const struct ember_error *err,
			  const char *expected)
{
	char seen[8192];
	if (rc != -1)
		return fail(name, "unpacked (rc %d), expected a refusal containing `%s`", rc, expected);
	if (!strstr(err->message, expected))
		return fail(name, "the error `%s` does not contain `%s`", err->message, expected);
	for (const char *p = err->message; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return fail(name, "the error holds a raw control character: `%s`", err->message);
	listing(c->deep, seen, sizeof seen);
	if (seen[0])
		return fail(name, "left `%s` beside the task directory", seen);
	listing(c->dir, seen, sizeof seen);
	if (strcmp(seen, "bundle,deep") != 0)
		return fail(name, "the case directory holds `%s`, expected `bundle,deep`", seen);
	evil_found = 0;
	nftw(top, find_evil, 16, FTW_PHYS);
	if (evil_found)
		return fail(name, "a file named evil or x was written");
	if (!etc_x_existed && access("/etc/x", F_OK) == 0)
		return fail(name, "/etc/x was written");
	return true;
}

/* Unpacks the case's bundle with `limits` and expects a refusal. */
static void expect_refused(const char *name, const struct testcase *c, const struct pool_bundle_limits *limits,
			   const char *expected)
{
	struct ember_error err = {{0}};
	struct pool_bundle_report report;
	int rc = pool_bundle_unpack(c->bundle, c->task, limits, &report, &err);
	if (verbose)
		printf("    %s\n", err.message);
	if (check_refused(name, c, rc, &err, expected))
		pass(name);
}

/* Builds `specs` as `kind` in a new case and expects a refusal. */
static void refuse_specs(const char *name, enum kind kind, const struct spec *specs, size_t count,
			 const char *expected)
{
	struct testcase c;
	new_case(&c);
	if (!build(c.bundle, kind, specs, count)) {
		fail(name, "could not build the fixture");
		return;
	}
	expect_refused(name, &c, NULL, expected);
}

#define REFUSE(name, kind, expected, ...)                                                         \
	do {                                                                                      \
		const struct spec specs_[] = {__VA_ARGS__};                                       \
		refuse_specs((name), (kind), specs_, sizeof specs_ / sizeof specs_[0], (expected)); \
	} while (0)

/* Checks that `path` (inside the task) is a regular file of mode `mode`
 * holding `data`. */
static bool check_file(const char *name, const char *task, const char *path, const char *data, size_t size,
		       unsigned mode)
{
	char full[8192];
	snprintf(full, sizeof full, "%s/%s", task, path);
	struct stat st;
	if (lstat(full, &st) < 0)
		return fail(name, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(name, "%s is not a regular file", path);
	if ((st.st_mode & 07777) != mode)
		return fail(name, "%s has mode 0%o, expected 0%o", path, st.st_mode & 07777, mode);
	if (st.st_uid != geteuid())
		return fail(name, "%s is owned by %u", path, st.st_uid);
	size_t got_size;
	unsigned char *got = read_file(full, &got_size, size + 1);
	bool same = got && got_size == size && memcmp(got, data, size) == 0;
	free(got);
	if (!same)
		return fail(name, "%s does not hold the bundle's bytes", path);
	return true;
}

static bool check_directory(const char *name, const char *task, const char *path)
{
	char full[8192];
	snprintf(full, sizeof full, "%s/%s", task, path);
	struct stat st;
	if (lstat(full, &st) < 0)
		return fail(name, "%s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode) || (st.st_mode & 07777) != 0755)
		return fail(name, "%s is not a directory of mode 0755 (0%o)", path, st.st_mode);
	return true;
}

static bool check_symlink(const char *name, const char *task, const char *path, const char *target)
{
	char full[8192], got[4096];
	snprintf(full, sizeof full, "%s/%s", task, path);
	ssize_t n = readlink(full, got, sizeof got - 1);
	if (n < 0)
		return fail(name, "%s is not a symbolic link: %s", path, strerror(errno));
	got[n] = '\0';
	if (strcmp(got, target) != 0)
		return fail(name, "%s points to `%s`, expected `%s`", path, got, target);
	return true;
}

/* ---- good bundles ------------------------------------------------------------ */

static char big[200000]; /* pseudo-random text, compressible but not trivially */

static void fill_big(void)
{
	uint32_t x = 12345;
	for (size_t i = 0; i < sizeof big; i++) {
		x = x * 1103515245 + 12345;
		big[i] = (char)('a' + (x >> 16) % 26);
		if ((x >> 8) % 13 == 0)
			big[i] = '\n';
	}
}

static const char handler_py[] = "import lib.util\ndef handler(event, context):\n    return {'ok': True}\n";
static const char util_py[] = "VALUE = 42\n";
static const char run_sh[] = "#!/bin/sh\necho run\n";

/* The same tree as zip and as tar.gz (names with "./" in the tar, as
 * `tar czf b.tgz -C dir .` writes them). */
static void test_good(enum kind kind)
{
	const char *name = kind == ZIP ? "good/zip" : "good/tar.gz";
	const char *prefix = kind == ZIP ? "" : "./";
	char n[16][64];
	const char *names[] = {"",           "app/",         "app/handler.py", "app/lib/",    "app/lib/util.py",
			       "app/link.py", "bin/run",     "implicit/deep/file.txt",  "h\xc3\xa9llo/w\xc3\xb6rld.txt",
			       "empty/",     "big.txt",      "zero",           "app/",        "lib-link"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		snprintf(n[i], sizeof n[i], "%s%s", prefix, names[i]);
	struct spec specs[] = {
		{DIRECTORY, n[0], NULL, 0, 0},
		{DIRECTORY, n[1], NULL, 0, 0},
		{REG, n[2], handler_py, 0, 0644},
		{DIRECTORY, n[3], NULL, 0, 0700},
		{REG, n[4], util_py, 0, 0600},
		{SYMLINK, n[5], "lib/util.py", 0, 0},
		{REG, n[6], run_sh, 0, 0755},
		{REG, n[7], "implicit parents\n", 0, 0640},
		{REG, n[8], "unicode\n", 0, 0644},
		{DIRECTORY, n[9], NULL, 0, 0},
		{REG, n[10], big, sizeof big, 0644},
		{REG, n[11], NULL, 0, 0644},
		{DIRECTORY, n[12], NULL, 0, 0}, /* a directory named twice is merged */
		{SYMLINK, n[13], "app/lib", 0, 0},
	};
	size_t first = kind == ZIP ? 1 : 0; /* zip has no "./" entry */
	size_t count = sizeof specs / sizeof specs[0] - first;
	struct testcase c;
	new_case(&c);
	if (!build(c.bundle, kind, specs + first, count)) {
		fail(name, "could not build the fixture");
		return;
	}
	struct ember_error err = {{0}};
	struct pool_bundle_report report;
	if (pool_bundle_unpack(c.bundle, c.task, NULL, &report, &err) < 0) {
		fail(name, "refused: %s", err.message);
		return;
	}
	uint64_t bytes = strlen(handler_py) + strlen(util_py) + strlen(run_sh) + strlen("implicit parents\n") +
			 strlen("unicode\n") + sizeof big;
	char seen[8192];
	struct stat st;
	bool ok = check_directory(name, c.task, ".") && check_directory(name, c.task, "app") &&
		  check_directory(name, c.task, "app/lib") && check_directory(name, c.task, "implicit/deep") &&
		  check_directory(name, c.task, "empty") &&
		  check_file(name, c.task, "app/handler.py", handler_py, strlen(handler_py), 0644) &&
		  check_file(name, c.task, "app/lib/util.py", util_py, strlen(util_py), 0644) &&
		  check_file(name, c.task, "bin/run", run_sh, strlen(run_sh), 0755) &&
		  check_file(name, c.task, "implicit/deep/file.txt", "implicit parents\n", 17, 0644) &&
		  check_file(name, c.task, "h\xc3\xa9llo/w\xc3\xb6rld.txt", "unicode\n", 8, 0644) &&
		  check_file(name, c.task, "big.txt", big, sizeof big, 0644) &&
		  check_file(name, c.task, "zero", "", 0, 0644) &&
		  check_symlink(name, c.task, "app/link.py", "lib/util.py") &&
		  check_symlink(name, c.task, "lib-link", "app/lib");
	if (!ok)
		return;
	char through[8192];
	snprintf(through, sizeof through, "%s/app/link.py", c.task);
	if (stat(through, &st) < 0 || (size_t)st.st_size != strlen(util_py)) {
		fail(name, "app/link.py does not lead to app/lib/util.py");
		return;
	}
	if (report.entries != count || report.bytes_written != bytes ||
	    strcmp(report.format, kind == ZIP ? "zip" : "tar.gz") != 0) {
		fail(name, "report: %llu entries, %llu bytes, `%s`; expected %zu, %llu, `%s`",
		     (unsigned long long)report.entries, (unsigned long long)report.bytes_written, report.format,
		     count, (unsigned long long)bytes, kind == ZIP ? "zip" : "tar.gz");
		return;
	}
	listing(c.deep, seen, sizeof seen);
	if (strcmp(seen, "task") != 0) {
		fail(name, "beside the task directory: `%s`", seen);
		return;
	}
	pass(name);

	const char *remove_name = kind == ZIP ? "remove/zip" : "remove/tar.gz";
	if (pool_bundle_remove(c.task, &err) < 0)
		fail(remove_name, "%s", err.message);
	else if (access(c.task, F_OK) == 0 || errno != ENOENT)
		fail(remove_name, "the task directory is still there");
	else if (pool_bundle_remove(c.task, &err) < 0)
		fail(remove_name, "removing a missing directory failed: %s", err.message);
	else
		pass(remove_name);
}

/* Modes: set-id and sticky bits dropped, any execute bit gives 0755,
 * anything else 0644, directories 0755; in tar and in zip. */
static void test_modes(enum kind kind)
{
	const char *name = kind == ZIP ? "modes/zip-setuid-stripped" : "modes/tar.gz-setuid-stripped";
	const struct spec specs[] = {
		{REG, "suid", "a", 0, 04755}, {REG, "sgid", "b", 0, 02644}, {REG, "user-x", "c", 0, 0700},
		{REG, "other-x", "d", 0, 0601}, {REG, "none", "e", 0, 0},   {REG, "all", "f", 0, 07777},
		{DIRECTORY, "sticky", NULL, 0, 01777}, {DIRECTORY, "closed", NULL, 0, 0500},
		{REG, "closed/inside", "g", 0, 0444},
	};
	struct testcase c;
	new_case(&c);
	if (!build(c.bundle, kind, specs, sizeof specs / sizeof specs[0])) {
		fail(name, "could not build the fixture");
		return;
	}
	struct ember_error err = {{0}};
	if (pool_bundle_unpack(c.bundle, c.task, NULL, NULL, &err) < 0) {
		fail(name, "refused: %s", err.message);
		return;
	}
	if (check_file(name, c.task, "suid", "a", 1, 0755) && check_file(name, c.task, "sgid", "b", 1, 0644) &&
	    check_file(name, c.task, "user-x", "c", 1, 0755) && check_file(name, c.task, "other-x", "d", 1, 0755) &&
	    check_file(name, c.task, "none", "e", 1, 0644) && check_file(name, c.task, "all", "f", 1, 0755) &&
	    check_directory(name, c.task, "sticky") && check_directory(name, c.task, "closed") &&
	    check_file(name, c.task, "closed/inside", "g", 1, 0644))
		pass(name);
}

/* Names at the limits are accepted: a 255-byte component and a 4096-byte
 * path, 2048 directories deep (removed again by pool_bundle_remove). */
static void test_long_names(void)
{
	static char at_limit[4097], deep[4097];
	size_t used = 0;
	for (int i = 0; i < 17; i++) {
		size_t n = i < 15 ? 255 : i == 15 ? 128 : 127;
		if (i)
			at_limit[used++] = '/';
		memset(at_limit + used, 'a' + i, n);
		used += n;
	}
	at_limit[used] = '\0';
	for (used = 0; used < 4094; used += 2)
		memcpy(deep + used, "d/", 2);
	memcpy(deep + used, "ff", 3); /* 4096 bytes, 2047 directories */
	const struct spec specs[] = {{REG, at_limit, "long\n", 0, 0}, {REG, deep, "deep\n", 0, 0}};
	struct testcase c;
	new_case(&c);
	const char *name = "limits/long-names-accepted";
	if (strlen(at_limit) != 4096 || strlen(deep) != 4096 || !build(c.bundle, TAR_GZ, specs, 2)) {
		fail(name, "could not build the fixture");
		return;
	}
	struct ember_error err = {{0}};
	struct pool_bundle_report report;
	if (pool_bundle_unpack(c.bundle, c.task, NULL, &report, &err) < 0) {
		fail(name, "refused: %s", err.message);
		return;
	}
	if (report.bytes_written != 10)
		fail(name, "wrote %llu bytes, expected 10", (unsigned long long)report.bytes_written);
	else
		pass(name);
	if (pool_bundle_remove(c.task, &err) < 0)
		fail("remove/2047-deep", "%s", err.message);
	else if (access(c.task, F_OK) == 0)
		fail("remove/2047-deep", "the task directory is still there");
	else
		pass("remove/2047-deep");

	/* The same deep tree, then a refused entry: the clean-up must remove
	 * 2047 levels too. */
	const struct spec refused[] = {{REG, deep, "deep\n", 0, 0}, {REG, "../evil", "x", 0, 0}};
	REFUSE("cleanup/2047-deep-then-refused", TAR_GZ, "`..` component", refused[0], refused[1]);

	static char too_long[4098], component[300];
	memcpy(too_long, deep, 4096);
	memcpy(too_long + 4095, "ff", 3); /* 4097 bytes */
	memset(component, 'c', 256);
	REFUSE("refuse/path-4097-bytes", TAR_GZ, "longer than 4096 bytes", {REG, too_long, "x", 0, 0});
	REFUSE("refuse/component-256-bytes", ZIP, "component is longer than 255 bytes", {REG, component, "x", 0, 0});
}

/* Exactly max_entries entries unpack; one more is refused. */
static void test_entry_limit(void)
{
	static char names[10001][16];
	static struct spec specs[10001];
	for (int i = 0; i < 10001; i++) {
		snprintf(names[i], sizeof names[i], "d%02d/f%05d", i % 50, i);
		specs[i] = (struct spec){REG, names[i], NULL, 0, 0};
	}
	struct testcase c;
	new_case(&c);
	const char *name = "limits/10000-entries-accepted";
	if (!build(c.bundle, TAR_GZ, specs, 10000)) {
		fail(name, "could not build the fixture");
	} else {
		struct ember_error err = {{0}};
		struct pool_bundle_report report;
		if (pool_bundle_unpack(c.bundle, c.task, NULL, &report, &err) < 0)
			fail(name, "refused: %s", err.message);
		else if (report.entries != 10000)
			fail(name, "report says %llu entries", (unsigned long long)report.entries);
		else
			pass(name);
	}
	refuse_specs("refuse/10001-entries", ZIP, specs, 10001, "more than 10000 entries");

	struct pool_bundle_limits limits = {.max_entries = 3};
	new_case(&c);
	if (!build(c.bundle, TAR_GZ, specs, 4))
		fail("refuse/custom-entry-limit", "could not build the fixture");
	else
		expect_refused("refuse/custom-entry-limit", &c, &limits, "more than 3 entries");
}

/* ---- hostile bundles ---------------------------------------------------------- */

static void test_bomb(void)
{
	const char *name = "refuse/zip-bomb-1GiB";
	struct testcase c;
	new_case(&c);
	if (!zip_bomb(c.bundle, 1)) {
		fail(name, "could not build the fixture");
		return;
	}
	struct stat st;
	stat(c.bundle, &st);
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	struct ember_error err = {{0}};
	struct pool_bundle_report report;
	int rc = pool_bundle_unpack(c.bundle, c.task, NULL, &report, &err);
	clock_gettime(CLOCK_MONOTONIC, &end);
	double seconds = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
	if (!check_refused(name, &c, rc, &err, "unpacks to more than 262144000 bytes"))
		return;
	if (report.bytes_written > 250 * MIB || report.bytes_written < 249 * MIB)
		fail(name, "stopped after %llu bytes, expected about 250 MiB", (unsigned long long)report.bytes_written);
	else {
		printf("    a %lld-byte zip of 1 GiB: refused after %llu bytes in %.2f s\n", (long long)st.st_size,
		       (unsigned long long)report.bytes_written, seconds);
		pass(name);
	}

	/* The same bomb within a smaller custom cap, and a tar.gz one. */
	struct pool_bundle_limits limits = {.max_total_bytes = 1000000};
	new_case(&c);
	if (!zip_bomb(c.bundle, 1))
		fail("refuse/zip-bomb-custom-limit", "could not build the fixture");
	else
		expect_refused("refuse/zip-bomb-custom-limit", &c, &limits, "more than 1000000 bytes");
	/* A tar.gz whose one file claims 1 GiB; 260 MiB of zeros follow. */
	unsigned char header[512];
	ustar_header(header, "zeros", '0', 1ull << 30, NULL);
	new_case(&c);
	if (!write_gzip(c.bundle, header, sizeof header, 260 * MIB))
		fail("refuse/tar.gz-bomb", "could not build the fixture");
	else
		expect_refused("refuse/tar.gz-bomb", &c, NULL, "more than 262144000 bytes");
	static char eight_mib[8 << 20];
	const struct spec many[] = {{REG, "a", eight_mib, 6 << 20, 0}, {REG, "b", eight_mib, 6 << 20, 0}};
	limits.max_total_bytes = 10 << 20;
	new_case(&c);
	if (!build(c.bundle, TAR_GZ, many, 2))
		fail("refuse/tar.gz-sum-past-custom-limit", "could not build the fixture");
	else
		expect_refused("refuse/tar.gz-sum-past-custom-limit", &c, &limits, "more than 10485760 bytes");

	/* 64 MiB of zeros after the tar's end, inside the gzip stream: never
	 * written, but the decompressed size is capped too. */
	unsigned char tar[2048];
	ustar_header(tar, "small", '0', 5, NULL);
	memset(tar + 512, 0, sizeof tar - 512);
	memcpy(tar + 512, "hello", 5);
	limits = (struct pool_bundle_limits){.max_total_bytes = 1 << 20, .max_entries = 10};
	new_case(&c);
	if (!write_gzip(c.bundle, tar, sizeof tar, 64 << 20))
		fail("refuse/tar.gz-trailing-bomb", "could not build the fixture");
	else
		expect_refused("refuse/tar.gz-trailing-bomb", &c, &limits, "decompressed tar stream is larger than");
}

static void test_paths(void)
{
	REFUSE("refuse/zip-slip-dotdot", ZIP, "`..` component", {REG, "../evil", "x", 0, 0});
	REFUSE("refuse/zip-slip-nested", ZIP, "`..` component", {DIRECTORY, "a/", NULL, 0, 0},
	       {REG, "a/../../evil", "x", 0, 0});
	REFUSE("refuse/tar.gz-slip-nested", TAR_GZ, "`..` component", {REG, "a/../../evil", "x", 0, 0});
	REFUSE("refuse/tar.gz-slip-late", TAR_GZ, "`..` component", {REG, "ok", "fine", 0, 0},
	       {DIRECTORY, "sub/", NULL, 0, 0}, {REG, "sub/../../evil", "x", 0, 0});
	REFUSE("refuse/zip-absolute", ZIP, "absolute name", {REG, "/etc/x", "x", 0, 0});
	REFUSE("refuse/tar.gz-absolute", TAR_GZ, "absolute name", {REG, "/etc/x", "x", 0, 0});
	REFUSE("refuse/control-newline", TAR_GZ, "control character", {REG, "bad\nname", "x", 0, 0});
	REFUSE("refuse/control-escape", ZIP, "esc\\x1b[2J", {REG, "esc\x1b[2J", "x", 0, 0});

	/* An empty name, as a raw ustar header. */
	struct testcase c;
	new_case(&c);
	unsigned char tar[2048];
	memset(tar, 0, sizeof tar);
	ustar_header(tar, "", '0', 1, NULL);
	tar[512] = 'x';
	if (!write_gzip(c.bundle, tar, sizeof tar, 0))
		fail("refuse/empty-name", "could not build the fixture");
	else
		expect_refused("refuse/empty-name", &c, NULL, "empty");

	/* A zip name holding a NUL: libarchive ends the name at the NUL, so
	 * at worst a file `a` appears inside the task directory. */
	const char *test = "refuse/zip-name-with-nul";
	new_case(&c);
	static const char nul_name[] = "a\0../../evil";
	if (!raw_zip(c.bundle, nul_name, sizeof nul_name - 1, "x")) {
		fail(test, "could not build the fixture");
	} else {
		struct ember_error err = {{0}};
		int rc = pool_bundle_unpack(c.bundle, c.task, NULL, NULL, &err);
		char seen[256];
		listing(c.task, seen, sizeof seen);
		evil_found = 0;
		nftw(top, find_evil, 16, FTW_PHYS);
		if (evil_found)
			fail(test, "wrote evil");
		else if (rc == 0 && strcmp(seen, "a") != 0)
			fail(test, "unpacked `%s`, expected only `a`", seen);
		else if (rc < 0 && !check_refused(test, &c, rc, &err, ""))
			;
		else {
			printf("    %s\n", rc == 0 ? "unpacked as `a`" : err.message);
			pass(test);
		}
	}
	new_case(&c);
	if (!raw_zip(c.bundle, "", 0, "x"))
		fail("refuse/zip-empty-name", "could not build the fixture");
	else
		expect_refused("refuse/zip-empty-name", &c, NULL, "empty");
}

static void test_links(void)
{
	REFUSE("refuse/symlink-absolute", ZIP, "target is absolute", {SYMLINK, "link", "/etc/passwd", 0, 0});
	REFUSE("refuse/symlink-absolute-tar.gz", TAR_GZ, "target is absolute", {SYMLINK, "link", "/etc/passwd", 0, 0});
	REFUSE("refuse/symlink-up", TAR_GZ, "leaves the task directory", {SYMLINK, "link", "../../..", 0, 0});
	REFUSE("refuse/symlink-up-from-subdir", ZIP, "leaves the task directory", {DIRECTORY, "sub/", NULL, 0, 0},
	       {SYMLINK, "sub/link", "../..", 0, 0});
	REFUSE("refuse/symlink-up-midway", TAR_GZ, "leaves the task directory",
	       {SYMLINK, "sub/link", "../../deep/task/sub", 0, 0});
	REFUSE("refuse/symlink-then-write-through", TAR_GZ, "goes through a symbolic link",
	       {SYMLINK, "link", ".", 0, 0}, {REG, "link/evil", "x", 0, 0});
	REFUSE("refuse/symlink-escape-then-write-through", TAR_GZ, "leaves the task directory",
	       {SYMLINK, "link", "../../..", 0, 0}, {REG, "link/evil", "x", 0, 0});
	REFUSE("refuse/symlink-dir-then-write-through", ZIP, "goes through a symbolic link",
	       {DIRECTORY, "real/", NULL, 0, 0}, {SYMLINK, "link", "real", 0, 0}, {REG, "link/sub/evil", "x", 0, 0});
	/* Each target lexically inside; followed, a/m leaves: a/l is b, b/.. is
	 * the task directory, and one more .. leaves it. */
	REFUSE("refuse/symlink-chain-escape", TAR_GZ, "leaves the task directory when followed",
	       {DIRECTORY, "b/", NULL, 0, 0}, {SYMLINK, "a/l", "../b", 0, 0}, {SYMLINK, "a/m", "l/../..", 0, 0});
	REFUSE("refuse/symlink-empty-target", TAR_GZ, "target is empty", {SYMLINK, "link", "", 0, 0});
	REFUSE("refuse/hard-link", TAR_GZ, "hard links are not allowed", {REG, "file", "x", 0, 0},
	       {HARDLINK, "alias", "file", 0, 0});
	REFUSE("refuse/hard-link-outside", TAR_GZ, "hard links are not allowed", {HARDLINK, "passwd", "/etc/passwd", 0, 0});

	/* Dangling links and links to the task directory itself are fine. */
	const struct spec specs[] = {{SYMLINK, "dangling", "missing/file", 0, 0},
				     {SYMLINK, "sub/root", "..", 0, 0},
				     {SYMLINK, "loop", "loop", 0, 0}};
	struct testcase c;
	new_case(&c);
	struct ember_error err = {{0}};
	if (!build(c.bundle, TAR_GZ, specs, 3))
		fail("links/dangling-and-root-accepted", "could not build the fixture");
	else if (pool_bundle_unpack(c.bundle, c.task, NULL, NULL, &err) < 0)
		fail("links/dangling-and-root-accepted", "refused: %s", err.message);
	else if (check_symlink("links/dangling-and-root-accepted", c.task, "dangling", "missing/file") &&
		 check_symlink("links/dangling-and-root-accepted", c.task, "sub/root", ".."))
		pass("links/dangling-and-root-accepted");
}

static void test_types(void)
{
	REFUSE("refuse/char-device", TAR_GZ, "device files are not allowed", {CHARDEV, "null", NULL, 0, 0});
	REFUSE("refuse/block-device", TAR_GZ, "device files are not allowed", {BLOCKDEV, "sda", NULL, 0, 0});
	REFUSE("refuse/fifo", TAR_GZ, "FIFOs are not allowed", {REG, "ok", "x", 0, 0}, {FIFO, "pipe", NULL, 0, 0});
	REFUSE("refuse/duplicate-file", TAR_GZ, "would replace an earlier entry", {REG, "a.txt", "one", 0, 0},
	       {REG, "a.txt", "two", 0, 0});
	REFUSE("refuse/duplicate-file-zip", ZIP, "would replace an earlier entry", {REG, "a.txt", "one", 0, 0},
	       {REG, "./a.txt", "two", 0, 0});
	REFUSE("refuse/file-over-directory", TAR_GZ, "would replace an earlier entry", {DIRECTORY, "a/", NULL, 0, 0},
	       {REG, "a", "x", 0, 0});
	REFUSE("refuse/directory-over-file", TAR_GZ, "would replace an earlier entry", {REG, "a", "x", 0, 0},
	       {DIRECTORY, "a/", NULL, 0, 0});
	REFUSE("refuse/symlink-over-file", TAR_GZ, "would replace an earlier entry", {REG, "a", "x", 0, 0},
	       {SYMLINK, "a", "b", 0, 0});
	REFUSE("refuse/file-under-file", TAR_GZ, "is not a directory", {REG, "a", "x", 0, 0}, {REG, "a/b", "y", 0, 0});
	struct testcase c;
	new_case(&c);
	if (!build(c.bundle, ZIP, NULL, 0))
		fail("refuse/empty-zip", "could not build the fixture");
	else
		expect_refused("refuse/empty-zip", &c, NULL, "holds no entries");
}

/* Copies the bundle of a good case, damaged by `damage`, into a new case
 * and expects a refusal. */
static void refuse_damaged(const char *name, const char *good, size_t keep, long flip, const char *expected)
{
	size_t size;
	unsigned char *data = read_file(good, &size, 64 << 20);
	struct testcase c;
	new_case(&c);
	if (!data || keep > size || (flip >= 0 && (size_t)flip >= size)) {
		free(data);
		fail(name, "could not build the fixture");
		return;
	}
	if (flip >= 0)
		data[flip] ^= 0x5a;
	bool ok = write_file(c.bundle, data, keep ? keep : size);
	free(data);
	if (!ok)
		fail(name, "could not write the fixture");
	else
		expect_refused(name, &c, NULL, expected);
}

static void test_corrupt(void)
{
	/* Good bundles, mostly one big file, so the middle is file data. */
	const struct spec specs[] = {{REG, "a.txt", "small\n", 0, 0}, {REG, "big.txt", big, sizeof big, 0}};
	char zip[4300], tgz[4300];
	struct testcase c;
	new_case(&c);
	snprintf(zip, sizeof zip, "%s/good.zip", c.dir);
	snprintf(tgz, sizeof tgz, "%s/good.tar.gz", c.dir);
	if (!build(zip, ZIP, specs, 2) || !build(tgz, TAR_GZ, specs, 2)) {
		fail("refuse/corrupt", "could not build the fixtures");
		return;
	}
	size_t zip_size, tgz_size;
	free(read_file(zip, &zip_size, 64 << 20));
	free(read_file(tgz, &tgz_size, 64 << 20));
	refuse_damaged("refuse/zip-truncated-half", zip, zip_size / 2, -1, "damaged zip archive");
	refuse_damaged("refuse/zip-truncated-end", zip, zip_size - 1, -1, "damaged zip archive");
	refuse_damaged("refuse/tar.gz-truncated-half", tgz, tgz_size / 2, -1, "truncated");
	refuse_damaged("refuse/tar.gz-without-trailer", tgz, tgz_size - 8, -1, "truncated");
	refuse_damaged("refuse/tar.gz-truncated-length", tgz, tgz_size - 2, -1, "truncated");
	refuse_damaged("refuse/tar.gz-crc-flipped", tgz, 0, (long)tgz_size - 6, "corrupt gzip data");
	refuse_damaged("refuse/tar.gz-length-flipped", tgz, 0, (long)tgz_size - 2, "corrupt gzip data");
	char name[64];
	for (int i = 1; i <= 4; i++) {
		snprintf(name, sizeof name, "refuse/zip-flipped-%d", i);
		refuse_damaged(name, zip, 0, (long)(zip_size * (size_t)i / 6), "");
		snprintf(name, sizeof name, "refuse/tar.gz-flipped-%d", i);
		refuse_damaged(name, tgz, 0, (long)(tgz_size * (size_t)i / 6), "");
	}
	/* Data after the gzip stream. */
	size_t size;
	unsigned char *data = read_file(tgz, &size, 64 << 20);
	new_case(&c);
	bool built = data && write_file(c.bundle, data, size);
	free(data);
	FILE *f = built ? fopen(c.bundle, "ab") : NULL;
	if (!f || fputs("GARBAGE AFTER THE GZIP STREAM", f) < 0 || fclose(f) != 0)
		fail("refuse/tar.gz-trailing-garbage", "could not build the fixture");
	else
		expect_refused("refuse/tar.gz-trailing-garbage", &c, NULL, "corrupt gzip data");
}

static void test_not_archives(void)
{
	struct testcase c;
	new_case(&c);
	unsigned char noise[4096];
	uint32_t x = 99;
	for (size_t i = 0; i < sizeof noise; i++) {
		x = x * 1664525 + 1013904223;
		noise[i] = (unsigned char)(x >> 24);
	}
	noise[0] = 'Q'; /* not the gzip magic */
	if (!write_file(c.bundle, noise, sizeof noise))
		fail("refuse/random-bytes", "could not build the fixture");
	else
		expect_refused("refuse/random-bytes", &c, NULL, "not a zip or tar.gz archive");

	new_case(&c);
	write_file(c.bundle, "def handler(event, context):\n    return 1\n", 41);
	expect_refused("refuse/text-file", &c, NULL, "not a zip or tar.gz archive");

	new_case(&c);
	write_file(c.bundle, "", 0);
	expect_refused("refuse/empty-file", &c, NULL, "the bundle is empty");

	new_case(&c);
	if (!write_gzip(c.bundle, "just some text, not a tar archive\n", 34, 0))
		fail("refuse/gzip-not-tar", "could not build the fixture");
	else
		expect_refused("refuse/gzip-not-tar", &c, NULL, "not a tar archive");

	new_case(&c);
	const struct spec one[] = {{REG, "a", "x", 0, 0}};
	if (!build(c.bundle, TAR, one, 1))
		fail("refuse/plain-tar", "could not build the fixture");
	else
		expect_refused("refuse/plain-tar", &c, NULL, "not a zip or tar.gz archive");

	new_case(&c);
	if (!write_gzip(c.bundle, NULL, 0, 10240))
		fail("refuse/empty-tar.gz", "could not build the fixture");
	else
		expect_refused("refuse/empty-tar.gz", &c, NULL, "");

	new_case(&c);
	mkdir(c.bundle, 0755);
	struct ember_error err = {{0}};
	int rc = pool_bundle_unpack(c.bundle, c.task, NULL, NULL, &err);
	char seen[256];
	listing(c.deep, seen, sizeof seen);
	if (rc != -1 || !strstr(err.message, "not a regular file") || seen[0])
		fail("refuse/directory-as-bundle", "rc %d, `%s`, left `%s`", rc, err.message, seen);
	else
		pass("refuse/directory-as-bundle");

	new_case(&c);
	rc = pool_bundle_unpack(c.bundle, c.task, NULL, NULL, &err);
	listing(c.deep, seen, sizeof seen);
	if (rc != -1 || !strstr(err.message, "No such file or directory") || seen[0])
		fail("refuse/missing-bundle", "rc %d, `%s`, left `%s`", rc, err.message, seen);
	else
		pass("refuse/missing-bundle");
}

static void test_task_directory(void)
{
	struct testcase c;
	new_case(&c);
	const struct spec one[] = {{REG, "new", "x", 0, 0}};
	build(c.bundle, ZIP, one, 1);
	mkdir(c.task, 0700);
	char keep[8192];
	snprintf(keep, sizeof keep, "%s/keep", c.task);
	write_file(keep, "old", 3);
	struct ember_error err = {{0}};
	int rc = pool_bundle_unpack(c.bundle, c.task, NULL, NULL, &err);
	char seen[256], beside[256];
	listing(c.task, seen, sizeof seen);
	listing(c.deep, beside, sizeof beside);
	if (rc != -1 || !strstr(err.message, "already exists") || strcmp(seen, "keep") != 0 ||
	    strcmp(beside, "task") != 0)
		fail("refuse/task-directory-exists", "rc %d, `%s`, task holds `%s`, beside `%s`", rc, err.message, seen,
		     beside);
	else
		pass("refuse/task-directory-exists");

	new_case(&c);
	build(c.bundle, ZIP, one, 1);
	symlink("/tmp", c.task);
	rc = pool_bundle_unpack(c.bundle, c.task, NULL, NULL, &err);
	if (rc != -1 || !strstr(err.message, "already exists"))
		fail("refuse/task-directory-is-a-link", "rc %d, `%s`", rc, err.message);
	else
		pass("refuse/task-directory-is-a-link");

	new_case(&c);
	build(c.bundle, ZIP, one, 1);
	char missing[8192];
	snprintf(missing, sizeof missing, "%s/no/such/task", c.deep);
	rc = pool_bundle_unpack(c.bundle, missing, NULL, NULL, &err);
	if (rc != -1 || !strstr(err.message, "No such file or directory"))
		fail("refuse/task-parent-missing", "rc %d, `%s`", rc, err.message);
	else
		pass("refuse/task-parent-missing");

	/* A relative task path works, relative to the working directory. */
	new_case(&c);
	build(c.bundle, ZIP, one, 1);
	char cwd[8192];
	if (!getcwd(cwd, sizeof cwd) || chdir(c.deep) < 0) {
		fail("good/relative-task-directory", "chdir failed");
		return;
	}
	rc = pool_bundle_unpack(c.bundle, "task/", NULL, NULL, &err);
	if (chdir(cwd) < 0)
		exit(2);
	if (rc < 0)
		fail("good/relative-task-directory", "refused: %s", err.message);
	else if (check_file("good/relative-task-directory", c.task, "new", "x", 1, 0644))
		pass("good/relative-task-directory");
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int main(void)
{
	umask(077);
	verbose = getenv("EMBER_TEST_VERBOSE") && *getenv("EMBER_TEST_VERBOSE");
	etc_x_existed = access("/etc/x", F_OK) == 0;
	const char *tmp = getenv("TMPDIR");
	snprintf(top, sizeof top, "%s/ember-bundle-test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(top)) {
		perror("mkdtemp");
		return 2;
	}
	fill_big();

	test_good(ZIP);
	test_good(TAR_GZ);
	test_modes(ZIP);
	test_modes(TAR_GZ);
	test_paths();
	test_links();
	test_types();
	test_corrupt();
	test_not_archives();
	test_task_directory();
	test_long_names();
	test_entry_limit();
	test_bomb();

	if (getenv("EMBER_TEST_KEEP") && *getenv("EMBER_TEST_KEEP")) {
		printf("# kept the fixtures in %s\n", top);
	} else {
		struct ember_error err;
		if (pool_bundle_remove(top, &err) < 0 && nftw(top, remove_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
			printf("# could not remove %s: %s\n", top, err.message);
	}
	return failures ? 1 : 0;
}
