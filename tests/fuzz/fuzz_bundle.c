/* libFuzzer target for pool-manager/bundle.c: pool_bundle_unpack() on
 * bundles the fuzzer controls, in a private directory of its own.
 *
 * Byte 0 of the input chooses the mode.  Bit 0 clear: the rest is the
 * bundle file, byte for byte (libarchive's and zlib's parsers see raw
 * noise).  Bit 0 set: the rest is a list of entries, each "TYPE NAME \0
 * PAYLOAD \0", written with libarchive's write API as a zip (bit 1) or a
 * tar.gz, so the validators see well-formed archives with hostile names,
 * link targets, types and modes.  TYPE % 6 picks file, directory, symbolic
 * link (PAYLOAD is the target), hard link, FIFO or character device;
 * bit 6 adds execute bits and bit 7 set-uid.
 *
 * Layout, made once: ROOT/jail/bundle is the bundle, ROOT/jail/out/task the
 * task directory.  After every run it aborts when ROOT holds anything but
 * jail, jail anything but bundle and out, out anything but task (and task
 * only after a success); when an unpacked tree holds anything but
 * directories of mode 0755, files of mode 0644 or 0755, and links that
 * stay beneath the task directory when followed; when the report exceeds
 * the limits; when an error message holds a raw control character; when
 * descriptors leak; or when the task directory cannot be removed.  ROOT is
 * on /dev/shm when it exists (tmpfs, so the final syncfs costs nothing).
 *
 * Build: clang -std=gnu11 -g -O1 -D_GNU_SOURCE -Icommon -Ipool-manager
 *        -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_bundle.c
 *        pool-manager/bundle.c common/error.c -larchive -lz
 *        -o build/fuzz/fuzz_bundle
 * Run:   build/fuzz/fuzz_bundle -max_total_time=60 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <locale.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "bundle.h"

#define MAX_ENTRIES 64
#define MAX_BYTES (1 << 20)
#define WALK_DEPTH_MAX 64 /* deeper trees are checked only down to here */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char root[256], jail[300], bundle[320], out[320], task[340];
static int fd_baseline = -1;

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_bundle: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	abort();
}

static void remove_layout(void)
{
	unlink(bundle);
	rmdir(out);
	rmdir(jail);
	rmdir(root);
}

static void setup(void)
{
	if (root[0])
		return;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(root, sizeof root, "%s/ember-fuzz-bundle.XXXXXX", base);
	if (!mkdtemp(root))
		die("mkdtemp", strerror(errno));
	snprintf(jail, sizeof jail, "%s/jail", root);
	snprintf(bundle, sizeof bundle, "%s/bundle", jail);
	snprintf(out, sizeof out, "%s/out", jail);
	snprintf(task, sizeof task, "%s/task", out);
	if (mkdir(jail, 0700) < 0 || mkdir(out, 0700) < 0)
		die("mkdir", strerror(errno));
	atexit(remove_layout);
}

/* The names in `dir`, sorted, joined by ",". */
static void listing(const char *dir, char *text, size_t capacity)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	text[0] = '\0';
	if (n < 0)
		die("scandir", dir);
	size_t used = 0;
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && used < capacity)
			used += (size_t)snprintf(text + used, capacity - used, "%s%s", used ? "," : "", name);
		free(names[i]);
	}
	free(names);
}

static void expect_listing(const char *dir, const char *expected)
{
	char seen[4096];
	listing(dir, seen, sizeof seen);
	if (strcmp(seen, expected) != 0) {
		fprintf(stderr, "fuzz_bundle: %s holds `%s`, expected `%s`\n", dir, seen, expected);
		abort();
	}
}

/* Checks every entry below `dir_fd`; links are followed from `task_fd`. */
static void walk(int task_fd, int dir_fd, char *path, size_t length, int depth)
{
	int list_fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = list_fd >= 0 ? fdopendir(list_fd) : NULL;
	if (!dir)
		die("open an unpacked directory", path);
	struct dirent *entry;
	while ((entry = readdir(dir)) != NULL) {
		const char *name = entry->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			die("stat an unpacked entry", name);
		size_t n = strlen(name);
		if (length + 1 + n >= 8192)
			die("an unpacked path is too long", path);
		path[length] = '/';
		memcpy(path + length + 1, name, n + 1);
		unsigned mode = st.st_mode & 07777;
		if (st.st_uid != geteuid())
			die("an unpacked entry has another owner", path);
		if (S_ISREG(st.st_mode)) {
			if (mode != 0644 && mode != 0755)
				die("an unpacked file has a mode other than 0644 or 0755", path);
		} else if (S_ISDIR(st.st_mode)) {
			if (mode != 0755)
				die("an unpacked directory has a mode other than 0755", path);
			if (depth < WALK_DEPTH_MAX) {
				int child = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (child < 0)
					die("open an unpacked directory", path);
				walk(task_fd, child, path, length + 1 + n, depth + 1);
				close(child);
			}
		} else if (S_ISLNK(st.st_mode)) {
			struct open_how how = {.flags = O_PATH | O_CLOEXEC,
					       .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
			long fd = syscall(SYS_openat2, task_fd, path + 1, &how, sizeof how);
			if (fd >= 0)
				close((int)fd);
			else if (errno == EXDEV)
				die("an unpacked link leaves the task directory", path);
		} else {
			die("an unpacked entry is not a file, directory or link", path);
		}
		path[length] = '\0';
	}
	closedir(dir);
}

/* Writes the structured input as a zip or tar.gz at `bundle`.  Returns
 * false when libarchive refused to write it (nothing to test then). */
static bool build(const uint8_t *data, size_t size, bool zip)
{
	locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	locale_t previous = utf8 ? uselocale(utf8) : (locale_t)0;
	struct archive *a = archive_write_new();
	if (zip) {
		archive_write_set_format_zip(a);
	} else {
		archive_write_set_format_pax_restricted(a);
		archive_write_add_filter_gzip(a);
	}
	bool ok = archive_write_open_filename(a, bundle) == ARCHIVE_OK;
	size_t at = 0;
	for (int count = 0; ok && at < size && count < MAX_ENTRIES + 2; count++) {
		uint8_t type = data[at++];
		const char *name = (const char *)data + at;
		const uint8_t *end = memchr(data + at, 0, size - at);
		if (!end)
			break;
		at = (size_t)(end - data) + 1;
		const char *payload = (const char *)data + at;
		end = at < size ? memchr(data + at, 0, size - at) : NULL;
		if (!end)
			break;
		size_t payload_length = (size_t)(end - data) - at;
		at += payload_length + 1;

		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, name);
		unsigned mode = 0644 | (type & 0x40 ? 0111 : 0) | (type & 0x80 ? 06000 : 0);
		switch (type % 6) {
		case 0:
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_size(e, (la_int64_t)payload_length);
			break;
		case 1:
			archive_entry_set_filetype(e, AE_IFDIR);
			break;
		case 2:
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_symlink(e, payload);
			break;
		case 3:
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_hardlink(e, payload);
			break;
		case 4:
			archive_entry_set_filetype(e, AE_IFIFO);
			break;
		default:
			archive_entry_set_filetype(e, AE_IFCHR);
			archive_entry_set_rdev(e, makedev(1, 3));
			break;
		}
		archive_entry_set_perm(e, mode);
		int status = archive_write_header(a, e);
		if (status < ARCHIVE_WARN)
			ok = false;
		else if (status == ARCHIVE_OK && type % 6 == 0 && payload_length > 0 &&
			 archive_write_data(a, payload, payload_length) != (la_ssize_t)payload_length)
			ok = false;
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	if (size == 0)
		return 0;
	if (data[0] & 1) {
		if (!build(data + 1, size - 1, data[0] & 2)) {
			unlink(bundle);
			return 0;
		}
	} else {
		FILE *f = fopen(bundle, "wb");
		if (!f || fwrite(data + 1, 1, size - 1, f) != size - 1 || fclose(f) != 0)
			die("write the bundle", strerror(errno));
	}

	struct pool_bundle_limits limits = {.max_total_bytes = MAX_BYTES, .max_entries = MAX_ENTRIES};
	struct pool_bundle_report report;
	struct ember_error err = {{0}};
	int rc = pool_bundle_unpack(bundle, task, &limits, &report, &err);

	expect_listing(root, "jail");
	expect_listing(jail, "bundle,out");
	if (report.bytes_written > MAX_BYTES || report.entries > MAX_ENTRIES + 1)
		die("the report exceeds the limits", NULL);
	if (rc == 0) {
		expect_listing(out, "task");
		int task_fd = open(task, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (task_fd < 0)
			die("open the task directory", strerror(errno));
		struct stat st;
		if (fstat(task_fd, &st) < 0 || (st.st_mode & 07777) != 0755)
			die("the task directory's mode is not 0755", NULL);
		static char path[8192];
		path[0] = '\0';
		walk(task_fd, task_fd, path, 0, 0);
		close(task_fd);
		if (pool_bundle_remove(task, &err) < 0)
			die("remove the task directory", err.message);
	} else {
		if (rc != -1)
			die("pool_bundle_unpack returned neither 0 nor -1", NULL);
		for (const char *p = err.message; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				die("a raw control character in the error", err.message);
	}
	expect_listing(out, "");
	unlink(bundle);

	/* Descriptors must not leak: the next free one stays where it was. */
	int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd_baseline < 0)
		fd_baseline = probe;
	else if (probe > fd_baseline + 8)
		die("descriptors leak", NULL);
	close(probe);
	return 0;
}
