/* Unit test of the guest file namespace (vmm/file_layers.c), run on the
 * host: lexical normalization by vmm_path_join() (table cases, length
 * limits, and random paths against a reference implementation), routing by
 * vmm_path_place(), and confinement by vmm_layer_open() in a scratch
 * directory tree full of hostile entries — symlinks to /etc/passwd, to
 * "../../..", to absolute host paths, a FIFO, a character device and a
 * socket.  Nothing it opens may lie outside the layer, and anything but a
 * regular file or directory is refused with EACCES.  One line per check:
 * "PASS name", "FAIL name: detail" or "SKIP name: reason"; exits non-zero
 * on any failure. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../fuzz/path_invariants.h"
#include "fdtable.h"
#include "file_layers.h"
#include "memfs.h"
#include "memory_map.h"
#include "unit_test.h"
#include "vm.h"

/* ---- vmm_path_join ------------------------------------------------------ */

struct join_case {
	const char *base, *path, *expected; /* expected NULL: an error */
	int error;
};

static const struct join_case join_cases[] = {
	{"/", "a", "/a", 0},
	{"/", "/", "/", 0},
	{"/", ".", "/", 0},
	{"/", "..", "/", 0},
	{"/", "../../../etc/passwd", "/etc/passwd", 0},
	{"/a/b", "../c", "/a/c", 0},
	{"/a/b", ".", "/a/b", 0},
	{"/a/b", "./", "/a/b", 0},
	{"/a/b", "../../../../x", "/x", 0},
	{"/a", "/x/./y/../z", "/x/z", 0},
	{"/a", "b/", "/a/b", 0},
	{"/a", "b//c///", "/a/b/c", 0},
	{"/", "//a//b//", "/a/b", 0},
	{"/", "/..", "/", 0},
	{"/", "/../..", "/", 0},
	{"/", "/a/b/../../..", "/", 0},
	{"/", "/...", "/...", 0},
	{"/", "/.../..", "/", 0},
	{"/", "/..a/.b/a.", "/..a/.b/a.", 0},
	{"/", "/a/./././b", "/a/b", 0},
	{"/", "/tmp/../etc/shadow", "/etc/shadow", 0},
	{"/", "/var/task/../../etc", "/etc", 0},
	{"/tmp", "..", "/", 0},
	{"/tmp", "../proc/self/exe", "/proc/self/exe", 0},
	{"/", "a\\b", "/a\\b", 0},
	{"/", " ", "/ ", 0},
	{"/x", "", NULL, -ENOENT},
	{"/", "", NULL, -ENOENT},
};

static void check_join(const char *name, const char *base, const char *path, const char *expected, int error)
{
	char out[VMM_PATH_MAX];
	memset(out, 0x7f, sizeof out);
	out[VMM_PATH_MAX - 1] = '\0';
	int rc = vmm_path_join(base, path, out);
	if (expected)
		unit_check(rc == 0 && strcmp(out, expected) == 0, name, "join(\"%.40s\", \"%.60s\") = %d \"%.60s\", expected \"%.60s\"",
			   base, path, rc, rc == 0 ? out : "", expected);
	else
		unit_check(rc == error, name, "join(\"%.40s\", \"%.60s\") = %d, expected %d", base, path, rc, error);
}

static void test_join_table(void)
{
	for (size_t i = 0; i < sizeof join_cases / sizeof join_cases[0]; i++) {
		char name[64];
		snprintf(name, sizeof name, "path_join_case_%zu", i);
		check_join(name, join_cases[i].base, join_cases[i].path, join_cases[i].expected, join_cases[i].error);
	}
}

/* "/" followed by components of `component_len` bytes until `total` bytes. */
static void make_long_path(char *out, size_t total, size_t component_len)
{
	size_t len = 0;
	while (len < total) {
		out[len++] = '/';
		for (size_t i = 0; i < component_len && len < total; i++)
			out[len++] = (char)('a' + i % 26);
	}
	if (out[len - 1] == '/')
		out[len - 1] = 'z';
	out[len] = '\0';
}

static void test_join_lengths(void)
{
	static char path[3 * VMM_PATH_MAX], base[VMM_PATH_MAX], expected[VMM_PATH_MAX];
	char out[VMM_PATH_MAX];

	make_long_path(path, VMM_PATH_MAX - 1, 100);
	check_join("path_join_4095_bytes", "/", path, path, 0);
	make_long_path(path, VMM_PATH_MAX, 100);
	check_join("path_join_4096_bytes", "/", path, NULL, -ENAMETOOLONG);
	make_long_path(path, 3 * VMM_PATH_MAX - 1, 100);
	check_join("path_join_12k_bytes", "/", path, NULL, -ENAMETOOLONG);

	/* A long input that normalizes to something short is still too long, as on Linux. */
	memset(path, 0, sizeof path);
	for (size_t i = 0; i + 3 < VMM_PATH_MAX + 100; i += 3)
		memcpy(path + i, "../", 3);
	check_join("path_join_long_dotdots", "/", path, NULL, -ENAMETOOLONG);
	memset(path, 0, sizeof path);
	for (size_t i = 0; i + 3 < VMM_PATH_MAX - 10; i += 3)
		memcpy(path + i, "../", 3);
	check_join("path_join_many_dotdots", "/a/b", path, "/", 0);

	/* Component lengths: 255 is fine, 256 is not. */
	memset(path, 0, sizeof path);
	path[0] = '/';
	memset(path + 1, 'c', 255);
	check_join("path_join_name_255", "/", path, path, 0);
	path[256] = 'c';
	check_join("path_join_name_256", "/", path, NULL, -ENAMETOOLONG);
	memcpy(path + 257, "/..", 4);
	check_join("path_join_name_256_then_dotdot", "/", path, NULL, -ENAMETOOLONG);

	/* A relative path that pushes a long base over the limit. */
	make_long_path(base, 4000, 200);
	char tail[200];
	memset(tail, 'q', 150);
	tail[150] = '\0';
	check_join("path_join_base_overflow", base, tail, NULL, -ENAMETOOLONG);
	snprintf(expected, sizeof expected, "%s", base);
	char *cut = strrchr(expected, '/');
	snprintf(cut, sizeof expected - (size_t)(cut - expected), "/%s", tail);
	snprintf(path, sizeof path, "../%s", tail);
	check_join("path_join_base_dotdot_fits", base, path, expected, 0);
	make_long_path(base, VMM_PATH_MAX - 1, 255);
	make_long_path(path, VMM_PATH_MAX - 1, 1);
	path[0] = 'x';
	int rc = vmm_path_join(base, path, out);
	unit_check(rc == -ENAMETOOLONG, "path_join_both_max", "join of two 4095-byte paths = %d", rc);

	/* The result fills exactly VMM_PATH_MAX - 1 bytes, built one component at a time. */
	make_long_path(base, VMM_PATH_MAX - 3, 50);
	check_join("path_join_exact_fit", base, "y", NULL, 0);
	rc = vmm_path_join(base, "y", out);
	unit_check(rc == 0 && strlen(out) == VMM_PATH_MAX - 1, "path_join_exact_fit_length", "rc %d length %zu", rc,
		   rc == 0 ? strlen(out) : 0);
	rc = vmm_path_join(base, "yz", out);
	unit_check(rc == -ENAMETOOLONG, "path_join_one_past_fit", "rc %d", rc);
}

/* Random paths over a small alphabet, against the reference and the invariants. */
static void test_join_random(void)
{
	static const char *const pieces[] = {"/", "/", "//", ".", "..", "a", "b", "tmp", "dev", "proc",
					     "self", "exe", "...", ".a", "\xff", "x/", "./", "../"};
	uint64_t state = 0xabcdef12345ULL;
	char base[VMM_PATH_MAX], path[VMM_PATH_MAX], out[VMM_PATH_MAX], want[VMM_PATH_MAX];
	bool ok = true;
	char reason[400] = "";
	for (int round = 0; round < 100000 && ok; round++) {
		state = state * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t r = state;
		size_t len = 0;
		int pieces_wanted = (int)(r % 24);
		for (int i = 0; i < pieces_wanted; i++) {
			state = state * 6364136223846793005ULL + 1442695040888963407ULL;
			const char *piece = pieces[(state >> 33) % (sizeof pieces / sizeof pieces[0])];
			size_t n = strlen(piece);
			if (len + n + 1 >= 600)
				break;
			memcpy(path + len, piece, n);
			len += n;
		}
		path[len] = '\0';
		strcpy(base, (r >> 40) & 1 ? "/a/b/c" : "/");
		int rc = vmm_path_join(base, path, out);
		int expected = path_reference_join(base, path, want);
		if (rc != expected || (rc == 0 && strcmp(out, want) != 0)) {
			snprintf(reason, sizeof reason, "join(\"%s\", \"%s\") = %d \"%s\", reference %d \"%s\"", base, path, rc,
				 rc == 0 ? out : "", expected, expected == 0 ? want : "");
			ok = false;
		} else if (rc == 0 && path_invariant_violation(out)) {
			snprintf(reason, sizeof reason, "join(\"%s\", \"%s\") = \"%s\": %s", base, path, out,
				 path_invariant_violation(out));
			ok = false;
		}
	}
	unit_check(ok, "path_join_random_vs_reference", "%s", reason);
}

/* ---- vmm_path_place ----------------------------------------------------- */

#define ROOT_FD 100
#define TASK_FD 101

struct place_case {
	const char *path;
	bool with_task;
	enum vmm_place_kind kind;
	int layer_fd;
	const char *rel;
	int device;
};

static const struct place_case place_cases[] = {
	{"/", true, VMM_PLACE_LAYER, ROOT_FD, "", 0},
	{"/etc/passwd", true, VMM_PLACE_LAYER, ROOT_FD, "etc/passwd", 0},
	{"/tmp", true, VMM_PLACE_TMP, 0, "", 0},
	{"/tmp/a/b", true, VMM_PLACE_TMP, 0, "a/b", 0},
	{"/tmpx", true, VMM_PLACE_LAYER, ROOT_FD, "tmpx", 0},
	{"/tm", true, VMM_PLACE_LAYER, ROOT_FD, "tm", 0},
	{"/var/task", true, VMM_PLACE_LAYER, TASK_FD, "", 0},
	{"/var/task/app.py", true, VMM_PLACE_LAYER, TASK_FD, "app.py", 0},
	{"/var/taskforce", true, VMM_PLACE_LAYER, ROOT_FD, "var/taskforce", 0},
	{"/var", true, VMM_PLACE_LAYER, ROOT_FD, "var", 0},
	{"/var/task", false, VMM_PLACE_LAYER, ROOT_FD, "var/task", 0},
	{"/var/task/app.py", false, VMM_PLACE_LAYER, ROOT_FD, "var/task/app.py", 0},
	{"/dev", true, VMM_PLACE_SYNTHETIC_DIR, 0, "", 0},
	{"/dev/null", true, VMM_PLACE_DEVICE, 0, "null", VMM_FILE_NULL},
	{"/dev/zero", true, VMM_PLACE_DEVICE, 0, "zero", VMM_FILE_ZERO},
	{"/dev/urandom", true, VMM_PLACE_DEVICE, 0, "urandom", VMM_FILE_RANDOM},
	{"/dev/random", true, VMM_PLACE_DEVICE, 0, "random", VMM_FILE_RANDOM},
	{"/dev/sda", true, VMM_PLACE_ABSENT, 0, "sda", 0},
	{"/dev/kvm", true, VMM_PLACE_ABSENT, 0, "kvm", 0},
	{"/dev/null/x", true, VMM_PLACE_ABSENT, 0, "null/x", 0},
	{"/dev/nullx", true, VMM_PLACE_ABSENT, 0, "nullx", 0},
	{"/devices", true, VMM_PLACE_LAYER, ROOT_FD, "devices", 0},
	{"/proc", true, VMM_PLACE_SYNTHETIC_DIR, 0, "", 0},
	{"/proc/self", true, VMM_PLACE_SYNTHETIC_DIR, 0, "self", 0},
	{"/proc/self/exe", true, VMM_PLACE_PROC_EXE, 0, "self/exe", 0},
	{"/proc/self/exe/x", true, VMM_PLACE_ABSENT, 0, "self/exe/x", 0},
	{"/proc/self/root", true, VMM_PLACE_ABSENT, 0, "self/root", 0},
	{"/proc/self/fd/3", true, VMM_PLACE_ABSENT, 0, "self/fd/3", 0},
	{"/proc/1/exe", true, VMM_PLACE_ABSENT, 0, "1/exe", 0},
	{"/proc/selfexe", true, VMM_PLACE_ABSENT, 0, "selfexe", 0},
	{"/procfs", true, VMM_PLACE_LAYER, ROOT_FD, "procfs", 0},
};

static void test_place(void)
{
	struct vmm_layers layers;
	memset(&layers, 0, sizeof layers);
	layers.root_fd = ROOT_FD;
	for (size_t i = 0; i < sizeof place_cases / sizeof place_cases[0]; i++) {
		const struct place_case *c = &place_cases[i];
		layers.task_fd = c->with_task ? TASK_FD : -1;
		struct vmm_place place;
		memset(&place, 0x5a, sizeof place);
		vmm_path_place(&layers, c->path, &place);
		bool ok = place.kind == c->kind && place.rel && strcmp(place.rel, c->rel) == 0 &&
			  (c->kind != VMM_PLACE_LAYER || place.layer_fd == c->layer_fd) &&
			  (c->kind != VMM_PLACE_DEVICE || place.device == c->device) && place.rel >= c->path &&
			  place.rel <= c->path + strlen(c->path);
		char name[64];
		snprintf(name, sizeof name, "path_place_case_%zu", i);
		unit_check(ok, name, "place(\"%s\"%s) = kind %d fd %d rel \"%s\" device %d, expected kind %d fd %d rel \"%s\"",
			   c->path, c->with_task ? "" : ", no task", place.kind, place.layer_fd,
			   place.rel ? place.rel : "(null)", place.device, c->kind, c->layer_fd, c->rel);
	}
}

/* ---- vmm_layer_open in a hostile tree ------------------------------------ */

struct scratch {
	char top[64];         /* /tmp/ember-layers-XXXXXX */
	char layer[128];      /* top/layer */
	char secret[128];     /* top/outside_secret */
	int layer_fd;
	bool have_device;
	bool have_socket;
};

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int build_scratch(struct scratch *s)
{
	memset(s, 0, sizeof *s);
	s->layer_fd = -1;
	snprintf(s->top, sizeof s->top, "/tmp/ember-layers-XXXXXX");
	if (!mkdtemp(s->top))
		return -1;
	snprintf(s->layer, sizeof s->layer, "%s/layer", s->top);
	snprintf(s->secret, sizeof s->secret, "%s/outside_secret", s->top);
	char path[512];
	int failures = 0;
	failures |= mkdir(s->layer, 0755);
	failures |= write_file(s->secret, "SECRET");
#define AT(name) (snprintf(path, sizeof path, "%s/%s", s->layer, (name)), path)
	failures |= mkdir(AT("etc"), 0755);
	failures |= write_file(AT("etc/passwd"), "inside");
	failures |= write_file(AT("file"), "hello");
	failures |= mkdir(AT("dir"), 0755);
	failures |= write_file(AT("dir/inner"), "inner");
	failures |= symlink("/etc/passwd", AT("link_abs_passwd"));
	failures |= symlink("../../../../../../../etc/passwd", AT("link_dotdot_passwd"));
	failures |= symlink("../..", AT("link_up"));
	failures |= symlink("../../../..", AT("dir/link_deep_up"));
	failures |= symlink("/..", AT("link_slash_dotdot"));
	failures |= symlink("../outside_secret", AT("link_rel_secret"));
	failures |= symlink(s->secret, AT("link_abs_secret"));
	failures |= symlink(s->top, AT("link_abs_top"));
	failures |= symlink("/proc/self/root", AT("link_proc_root"));
	failures |= symlink("/proc/self/cwd", AT("link_proc_cwd"));
	failures |= symlink("link_loop", AT("link_loop"));
	failures |= symlink("dir", AT("link_dir"));
	failures |= mkfifo(AT("fifo"), 0644);
	failures |= symlink("fifo", AT("link_fifo"));
	s->have_device = mknod(AT("chardev"), S_IFCHR | 0666, makedev(1, 3)) == 0;
	if (s->have_device)
		symlink("chardev", AT("link_chardev"));
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	snprintf(address.sun_path, sizeof address.sun_path, "%s/socket", s->layer);
	s->have_socket = sock >= 0 && bind(sock, (struct sockaddr *)&address, sizeof address) == 0;
	if (sock >= 0)
		close(sock);
#undef AT
	if (failures)
		return -1;
	s->layer_fd = open(s->layer, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return s->layer_fd < 0 ? -1 : 0;
}

static void remove_scratch(struct scratch *s)
{
	if (s->layer_fd >= 0)
		close(s->layer_fd);
	if (s->top[0]) {
		char command[160];
		snprintf(command, sizeof command, "rm -rf '%s'", s->top);
		if (system(command) != 0)
			fprintf(stderr, "test_paths: could not remove %s\n", s->top);
	}
}

/* True if host fd `fd` names something inside the layer directory. */
static bool fd_inside_layer(const struct scratch *s, int fd, char *where, size_t where_size)
{
	char link[64];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, where, where_size - 1);
	if (n < 0)
		return false;
	where[n] = '\0';
	size_t layer_len = strlen(s->layer);
	return strncmp(where, s->layer, layer_len) == 0 && (where[layer_len] == '\0' || where[layer_len] == '/');
}

static void read_text(int fd, char *out, size_t size)
{
	ssize_t n = pread(fd, out, size - 1, 0);
	out[n > 0 ? n : 0] = '\0';
}

struct open_case {
	const char *rel;
	int flags;
	int expected;         /* 0: an fd; else -errno */
	const char *contents; /* for a regular file, or NULL */
};

static const struct open_case open_cases[] = {
	{"file", 0, 0, "hello"},
	{"", 0, 0, NULL},
	{".", 0, 0, NULL},
	{"..", O_DIRECTORY, 0, NULL},
	{"dir", O_DIRECTORY, 0, NULL},
	{"dir//inner", 0, 0, "inner"},
	{"file", O_DIRECTORY, -ENOTDIR, NULL},
	{"missing", 0, -ENOENT, NULL},
	{"../outside_secret", 0, -ENOENT, NULL},
	{"../../../../../outside_secret", 0, -ENOENT, NULL},
	{"/etc/passwd", 0, 0, "inside"},
	{"/../../etc/passwd", 0, 0, "inside"},
	{"link_abs_passwd", 0, 0, "inside"},
	{"link_dotdot_passwd", 0, 0, "inside"},
	{"link_up/outside_secret", 0, -ENOENT, NULL},
	{"link_up/file", 0, 0, "hello"},
	{"link_up", O_DIRECTORY, 0, NULL},
	{"dir/link_deep_up/file", 0, 0, "hello"},
	{"link_slash_dotdot/file", 0, 0, "hello"},
	{"link_rel_secret", 0, -ENOENT, NULL},
	{"link_abs_secret", 0, -ENOENT, NULL},
	{"link_abs_top", O_DIRECTORY, -ENOENT, NULL},
	{"link_proc_root", 0, -ENOENT, NULL},
	{"link_proc_cwd", 0, -ENOENT, NULL},
	{"link_loop", 0, -ELOOP, NULL},
	{"link_dir/inner", 0, 0, "inner"},
	{"link_abs_passwd", O_NOFOLLOW, -ELOOP, NULL},
	{"link_abs_passwd", O_PATH | O_NOFOLLOW, 0, NULL},
	{"link_abs_secret", O_PATH | O_NOFOLLOW, 0, NULL},
	{"link_abs_secret", O_PATH, -ENOENT, NULL},
	{"fifo", O_PATH, -EACCES, NULL},
	{"link_fifo", O_PATH, -EACCES, NULL},
	{"fifo", O_PATH | O_NOFOLLOW, -EACCES, NULL},
	/* Flags beyond O_DIRECTORY, O_NOFOLLOW and O_PATH are ignored: still read-only. */
	{"file", O_RDWR | O_TRUNC | O_APPEND, 0, "hello"},
	{"created", O_WRONLY | O_CREAT, -ENOENT, NULL},
};

static void check_open_case(const struct scratch *s, const char *name, const char *rel, int flags, int expected,
			    const char *contents)
{
	int fd = vmm_layer_open(s->layer_fd, rel, flags);
	char where[512] = "";
	if (expected < 0) {
		unit_check(fd == expected, name, "layer_open(\"%s\", %#x) = %d, expected %d", rel, flags, fd, expected);
		if (fd >= 0)
			close(fd);
		return;
	}
	if (!unit_check(fd >= 0, name, "layer_open(\"%s\", %#x) = %d, expected an fd", rel, flags, fd))
		return;
	bool inside = fd_inside_layer(s, fd, where, sizeof where);
	int fd_flags = fcntl(fd, F_GETFD), status = fcntl(fd, F_GETFL);
	bool read_only = (status & O_PATH) || (status & O_ACCMODE) == O_RDONLY;
	char text[64] = "";
	if (contents)
		read_text(fd, text, sizeof text);
	unit_check(inside && (fd_flags & FD_CLOEXEC) && read_only && !(status & O_APPEND) &&
			   (!contents || strcmp(text, contents) == 0),
		   name, "layer_open(\"%s\", %#x) opened \"%s\" (%s), cloexec %d, flags %#x, contents \"%s\"", rel,
		   flags, where, inside ? "inside" : "OUTSIDE THE LAYER", fd_flags & FD_CLOEXEC, status, text);
	close(fd);
}

/* Runs vmm_layer_open(rel, flags) in a child with a time limit, so a
 * blocking open is reported instead of hanging the test.  Returns the
 * result, or 1 if it did not finish in time. */
static int open_with_deadline(const struct scratch *s, const char *rel, int flags, unsigned seconds)
{
	int pipe_fds[2];
	if (pipe2(pipe_fds, O_CLOEXEC) < 0)
		return -errno;
	pid_t child = fork();
	if (child == 0) {
		alarm(seconds);
		int rc = vmm_layer_open(s->layer_fd, rel, flags);
		if (write(pipe_fds[1], &rc, sizeof rc) != sizeof rc)
			_exit(2);
		_exit(0);
	}
	close(pipe_fds[1]);
	int rc = 1, status = 0;
	if (read(pipe_fds[0], &rc, sizeof rc) != sizeof rc)
		rc = 1;
	close(pipe_fds[0]);
	waitpid(child, &status, 0);
	return rc;
}

static void test_layer_open(void)
{
	struct scratch s;
	if (build_scratch(&s) < 0) {
		unit_check(0, "layer_scratch_tree", "could not build the scratch tree in %s: %s", s.top, strerror(errno));
		remove_scratch(&s);
		return;
	}
	for (size_t i = 0; i < sizeof open_cases / sizeof open_cases[0]; i++) {
		char name[64];
		snprintf(name, sizeof name, "layer_open_case_%zu", i);
		check_open_case(&s, name, open_cases[i].rel, open_cases[i].flags, open_cases[i].expected,
				open_cases[i].contents);
	}
	struct stat st;
	unit_check(fstatat(s.layer_fd, "created", &st, AT_SYMLINK_NOFOLLOW) < 0, "layer_open_never_creates",
		   "O_CREAT made a file in the layer");
	int fd = open(s.layer, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char text[16] = "";
	int file_fd = openat(fd, "file", O_RDONLY | O_CLOEXEC);
	read_text(file_fd, text, sizeof text);
	unit_check(strcmp(text, "hello") == 0, "layer_open_never_truncates", "file now reads \"%s\"", text);
	close(file_fd);
	close(fd);

	/* The layer root reached through "..", symlinks and "/" is the layer itself. */
	struct stat layer_st;
	fstat(s.layer_fd, &layer_st);
	const char *roots[] = {"..", "../..", "/", "link_up", "dir/link_deep_up", "link_slash_dotdot"};
	for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
		char name[64];
		snprintf(name, sizeof name, "layer_open_root_clamp_%zu", i);
		fd = vmm_layer_open(s.layer_fd, roots[i], O_DIRECTORY);
		bool same = fd >= 0 && fstat(fd, &st) == 0 && st.st_ino == layer_st.st_ino && st.st_dev == layer_st.st_dev;
		unit_check(same, name, "\"%s\" = %d is not the layer root", roots[i], fd);
		if (fd >= 0)
			close(fd);
	}

	/* Non-regular files: refused, and refused without blocking. */
	int rc = open_with_deadline(&s, "fifo", 0, 2);
	unit_check(rc == -EACCES, "layer_open_fifo_refused",
		   rc == 1 ? "vmm_layer_open(\"fifo\", 0) blocked for 2 s (a FIFO opened O_RDONLY waits for a writer "
			     "before the S_ISREG check runs)"
			   : "vmm_layer_open(\"fifo\", 0) = %d, expected -EACCES",
		   rc);
	rc = open_with_deadline(&s, "link_fifo", 0, 2);
	unit_check(rc == -EACCES, "layer_open_fifo_link_refused",
		   rc == 1 ? "vmm_layer_open(\"link_fifo\", 0) blocked for 2 s" : "vmm_layer_open(\"link_fifo\", 0) = %d, expected -EACCES",
		   rc);
	if (s.have_device) {
		check_open_case(&s, "layer_open_chardev", "chardev", 0, -EACCES, NULL);
		check_open_case(&s, "layer_open_chardev_path", "chardev", O_PATH, -EACCES, NULL);
		check_open_case(&s, "layer_open_chardev_link", "link_chardev", 0, -EACCES, NULL);
	} else {
		printf("SKIP layer_open_chardev: mknod not permitted here (needs root)\n");
	}
	if (s.have_socket) {
		rc = vmm_layer_open(s.layer_fd, "socket", 0);
		unit_check(rc < 0, "layer_open_socket", "opening a socket gave fd %d", rc);
		if (rc >= 0)
			close(rc);
		check_open_case(&s, "layer_open_socket_path", "socket", O_PATH, -EACCES, NULL);
	} else {
		printf("SKIP layer_open_socket: could not bind a socket in the scratch tree\n");
	}
	remove_scratch(&s);
}

/* ---- vmm_path_open / stat / readlink over the same tree ------------------ */

static void test_path_open(void)
{
	struct scratch s;
	if (build_scratch(&s) < 0) {
		remove_scratch(&s);
		return;
	}
	struct vmm_vm vm;
	struct vmm_memory_map mm;
	struct vmm_layers layers;
	memset(&layers, 0, sizeof layers);
	if (unit_fake_vm(&vm, 32ULL << 20) < 0) {
		remove_scratch(&s);
		return;
	}
	vmm_mm_init(&mm, &vm);
	layers.root_fd = s.layer_fd;
	layers.task_fd = -1;
	vmm_memfs_init(&layers.tmp, &mm);
	snprintf(layers.exe_path, sizeof layers.exe_path, "/file");

	struct {
		const char *path;
		int flags;
		int expected;
		int kind;
	} cases[] = {
		{"/file", O_RDONLY, 0, VMM_FILE_HOST},
		{"/dir", O_RDONLY, 0, VMM_FILE_HOST_DIR},
		{"/file", O_WRONLY, -EROFS, 0},
		{"/file", O_RDWR, -EROFS, 0},
		{"/file", O_RDONLY | O_TRUNC, -EROFS, 0},
		{"/newfile", O_WRONLY | O_CREAT, -EROFS, 0},
		{"/file", O_RDONLY | O_CREAT | O_EXCL, -EEXIST, 0},
		{"/dir", O_WRONLY, -EISDIR, 0},
		{"/link_abs_secret", O_RDONLY, -ENOENT, 0},
		{"/link_abs_passwd", O_RDONLY | O_NOFOLLOW, -ELOOP, 0},
		{"/tmp/x", O_RDWR | O_CREAT, 0, VMM_FILE_MEMFS},
		{"/tmp/x", O_RDWR | O_CREAT | O_EXCL, -EEXIST, 0},
		{"/tmp/x", O_RDONLY | O_DIRECTORY, -ENOTDIR, 0},
		{"/tmp", O_RDONLY, 0, VMM_FILE_MEMFS_DIR},
		{"/tmp", O_WRONLY, -EISDIR, 0},
		{"/tmp/nodir/x", O_RDWR | O_CREAT, -ENOENT, 0},
		{"/dev/null", O_RDWR, 0, VMM_FILE_NULL},
		{"/dev/urandom", O_RDONLY, 0, VMM_FILE_RANDOM},
		{"/dev/null", O_RDONLY | O_DIRECTORY, -ENOTDIR, 0},
		{"/dev/sda", O_RDONLY, -ENOENT, 0},
		{"/dev/sda", O_RDWR | O_CREAT, -EACCES, 0},
		{"/dev", O_RDONLY, 0, VMM_FILE_SYNTHETIC_DIR},
		{"/proc/self/exe", O_RDONLY, 0, VMM_FILE_HOST},
		{"/proc/self/exe", O_RDWR | O_CREAT | O_TRUNC, -EROFS, 0},
		{"/proc/self/maps", O_RDONLY, -ENOENT, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct vmm_file *file = NULL;
		int rc = vmm_path_open(&layers, cases[i].path, cases[i].flags, 0644, &file);
		char name[64];
		snprintf(name, sizeof name, "path_open_case_%zu", i);
		bool ok = rc == cases[i].expected && (rc < 0 || (file && (int)file->kind == cases[i].kind &&
								 file->path && (strncmp(cases[i].path, "/proc/", 6) == 0 ||
										strcmp(file->path, cases[i].path) == 0)));
		unit_check(ok, name, "open(\"%s\", %#x) = %d kind %d, expected %d kind %d", cases[i].path, cases[i].flags, rc,
			   file && rc == 0 ? (int)file->kind : -1, cases[i].expected, cases[i].kind);
		if (rc == 0 && file)
			vmm_file_unref(file);
	}
	struct stat st;
	int rc = vmm_path_stat(&layers, "/proc/self/exe", false, &st);
	unit_check(rc == 0 && S_ISLNK(st.st_mode), "path_stat_proc_exe_link", "rc %d mode %o", rc, st.st_mode);
	rc = vmm_path_stat(&layers, "/proc/self/exe", true, &st);
	unit_check(rc == 0 && S_ISREG(st.st_mode) && st.st_size == 5, "path_stat_proc_exe_target", "rc %d mode %o", rc,
		   st.st_mode);
	rc = vmm_path_stat(&layers, "/link_abs_secret", false, &st);
	unit_check(rc == 0 && S_ISLNK(st.st_mode), "path_lstat_link", "rc %d mode %o", rc, st.st_mode);
	rc = vmm_path_stat(&layers, "/fifo", false, &st);
	unit_check(rc == -EACCES, "path_stat_fifo_refused", "rc %d", rc);
	char target[VMM_PATH_MAX];
	int64_t n = vmm_path_readlink(&layers, "/proc/self/exe", target, sizeof target);
	unit_check(n == 5 && memcmp(target, "/file", 5) == 0, "path_readlink_proc_exe", "n %" PRId64, n);
	n = vmm_path_readlink(&layers, "/link_abs_passwd", target, sizeof target);
	unit_check(n == 11 && memcmp(target, "/etc/passwd", 11) == 0, "path_readlink_layer_link", "n %" PRId64, n);
	n = vmm_path_readlink(&layers, "/link_abs_passwd", target, 4);
	unit_check(n == 4 && memcmp(target, "/etc", 4) == 0, "path_readlink_truncated", "n %" PRId64, n);
	n = vmm_path_readlink(&layers, "/file", target, sizeof target);
	unit_check(n == -EINVAL, "path_readlink_not_link", "n %" PRId64, n);
	n = vmm_path_readlink(&layers, "/tmp/x", target, sizeof target);
	unit_check(n == -EINVAL, "path_readlink_tmp_file", "n %" PRId64, n);
	n = vmm_path_readlink(&layers, "/dev/sda", target, sizeof target);
	unit_check(n == -ENOENT, "path_readlink_absent", "n %" PRId64, n);

	vmm_memfs_destroy(&layers.tmp);
	vmm_mm_destroy(&mm);
	unit_fake_vm_free(&vm);
	remove_scratch(&s);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	test_join_table();
	test_join_lengths();
	test_join_random();
	test_place();
	test_layer_open();
	test_path_open();
	return unit_exit_status();
}
