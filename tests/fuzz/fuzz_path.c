/* libFuzzer target for guest path handling (vmm/file_layers.c):
 * vmm_path_join() followed by vmm_path_place(), on paths the guest fully
 * controls.  It aborts when a joined path is not absolute and normalized
 * (starts with '/', no "//", no "." or ".." component, no trailing '/'
 * except "/", shorter than 4096 bytes), when the result differs from the
 * reference implementation in path_invariants.h, when joining is not
 * idempotent, or when routing disagrees with the documented prefixes
 * (/tmp, /var/task, /dev, /proc, everything else the root layer).
 *
 * Input: byte 0 holds options (bit 0: a task layer exists); the rest is
 * "base\0path", or just "path" with base "/".  The base is normalized first,
 * as the VMM's cwd always is.
 *
 * Build: clang -std=gnu11 -g -O1 -D_GNU_SOURCE -Icommon -Ivmm
 *        -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_path.c
 *        vmm/file_layers.c vmm/fdtable.c vmm/memfs.c vmm/pipe.c
 *        vmm/memory_map.c vmm/vm.c common/error.c -o build/fuzz/fuzz_path
 * Run:   build/fuzz/fuzz_path -dict=tests/fuzz/fuzz_path.dict tests/fuzz/corpus/path */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file_layers.h"
#include "path_invariants.h"

#define ROOT_FD 3
#define TASK_FD 4
#define INPUT_MAX (3 * VMM_PATH_MAX) /* longer inputs only repeat the too-long case */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *base, const char *path, const char *result)
{
	fprintf(stderr, "fuzz_path: %s\n  base   \"%.200s\"\n  path   \"%.200s\"\n  result \"%.200s\"\n", what, base,
		path, result ? result : "");
	abort();
}

/* True if `path` is `prefix` or lies below it; sets *rest to what follows. */
static bool under(const char *path, const char *prefix, const char **rest)
{
	size_t n = strlen(prefix);
	if (strncmp(path, prefix, n) != 0 || (path[n] != '\0' && path[n] != '/'))
		return false;
	*rest = path[n] ? path + n + 1 : path + n;
	return true;
}

static void check_place(const char *base, const char *path, const char *joined, bool with_task)
{
	struct vmm_layers layers;
	memset(&layers, 0, sizeof layers);
	layers.root_fd = ROOT_FD;
	layers.task_fd = with_task ? TASK_FD : -1;
	struct vmm_place place;
	vmm_path_place(&layers, joined, &place);
	size_t len = strlen(joined);
	if (!place.rel || place.rel < joined || place.rel > joined + len)
		fail("place->rel does not point into the path", base, path, joined);
	if (place.rel[0] == '/')
		fail("place->rel starts with '/'", base, path, joined);

	const char *rest = NULL;
	if (under(joined, "/tmp", &rest)) {
		if (place.kind != VMM_PLACE_TMP || place.rel != rest)
			fail("a /tmp path not routed to memfs", base, path, joined);
	} else if (with_task && under(joined, "/var/task", &rest)) {
		if (place.kind != VMM_PLACE_LAYER || place.layer_fd != TASK_FD || place.rel != rest)
			fail("a /var/task path not routed to the task layer", base, path, joined);
	} else if (under(joined, "/dev", &rest)) {
		bool device = strcmp(rest, "null") == 0 || strcmp(rest, "zero") == 0 || strcmp(rest, "urandom") == 0 ||
			      strcmp(rest, "random") == 0;
		enum vmm_place_kind want = rest[0] == '\0' ? VMM_PLACE_SYNTHETIC_DIR
					   : device        ? VMM_PLACE_DEVICE
							   : VMM_PLACE_ABSENT;
		if (place.kind != want || place.rel != rest)
			fail("a /dev path routed wrongly", base, path, joined);
	} else if (under(joined, "/proc", &rest)) {
		enum vmm_place_kind want = rest[0] == '\0' || strcmp(rest, "self") == 0 ? VMM_PLACE_SYNTHETIC_DIR
					   : strcmp(rest, "self/exe") == 0               ? VMM_PLACE_PROC_EXE
											 : VMM_PLACE_ABSENT;
		if (place.kind != want || place.rel != rest)
			fail("a /proc path routed wrongly", base, path, joined);
	} else {
		if (place.kind != VMM_PLACE_LAYER || place.layer_fd != ROOT_FD || place.rel != joined + 1)
			fail("a path not routed to the root layer", base, path, joined);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool with_task = data[0] & 1;
	data++;
	size--;
	if (size > INPUT_MAX)
		size = INPUT_MAX;

	static char raw_base[INPUT_MAX + 1], path[INPUT_MAX + 1];
	const uint8_t *split = memchr(data, '\0', size);
	size_t base_len = split ? (size_t)(split - data) : 0;
	size_t path_len = split ? size - base_len - 1 : size;
	memcpy(raw_base, data, base_len);
	raw_base[base_len] = '\0';
	memcpy(path, split ? split + 1 : data, path_len);
	path[path_len] = '\0'; /* a later NUL in the input simply ends the path early */

	/* The base is the guest's cwd: always absolute and normalized. */
	static char base[VMM_PATH_MAX];
	if (base_len == 0 || vmm_path_join("/", raw_base, base) != 0)
		strcpy(base, "/");
	const char *problem = path_invariant_violation(base);
	if (problem)
		fail(problem, "/", raw_base, base);

	static char joined[VMM_PATH_MAX], want[VMM_PATH_MAX], again[VMM_PATH_MAX];
	int rc = vmm_path_join(base, path, joined);
	int expected = path_reference_join(base, path, want);
	if (rc != 0 && rc != -ENOENT && rc != -ENAMETOOLONG)
		fail("vmm_path_join returned an undocumented error", base, path, NULL);
	if ((rc == -ENOENT) != (path[0] == '\0'))
		fail("-ENOENT if and only if the path is empty", base, path, NULL);
	if (strlen(path) >= VMM_PATH_MAX && rc != -ENAMETOOLONG)
		fail("a path of 4096 bytes or more was accepted", base, path, rc == 0 ? joined : NULL);
	if (rc != expected)
		fail(rc == 0 ? "accepted a path the reference refuses" : "refused a path the reference accepts", base, path,
		     rc == 0 ? joined : want);
	if (rc != 0)
		return 0;
	if (strcmp(joined, want) != 0)
		fail("result differs from the reference", base, path, joined);
	problem = path_invariant_violation(joined);
	if (problem)
		fail(problem, base, path, joined);

	/* Normalizing a normalized path changes nothing, whatever the base. */
	if (vmm_path_join("/", joined, again) != 0 || strcmp(again, joined) != 0)
		fail("join(\"/\", result) is not the result", base, path, joined);
	if (vmm_path_join(joined, ".", again) != 0 || strcmp(again, joined) != 0)
		fail("join(result, \".\") is not the result", base, path, joined);
	if (vmm_path_join(base, joined, again) != 0 || strcmp(again, joined) != 0)
		fail("join(base, absolute result) is not the result", base, path, joined);

	check_place(base, path, joined, with_task);
	return 0;
}
