/* libFuzzer target for the snapshot state-file validator
 * (snapshot/snap_state.c): snap_state_decode() on bytes an attacker fully
 * controls, then snap_state_free().
 *
 * Each input is decoded twice: as it is, and with its header's body length
 * and CRC-32 patched to match the body, so that mutations get past the
 * checksum and reach the section decoders instead of all dying at the CRC
 * check.  A decode that succeeds must also hold what the validator promises
 * restore code (snap_state.h): every descriptor names an existing open
 * file, every file its /tmp node or pipe, /tmp nodes come after their
 * parents, regions are ordered inside guest memory, rip and rsp lie in
 * guest memory; and re-encoding is stable — encode(decode(x)) decodes, and
 * encoding that again gives the same bytes.  Any violation aborts.
 *
 * Build: `make fuzzers` (clang -fsanitize=fuzzer,address,undefined, linked
 *        with the VMM's testable sources) → build/fuzz/fuzz_snap_state
 * Run:   build/fuzz/fuzz_snap_state -dict=tests/fuzz/fuzz_snap_state.dict \
 *            NEW_DIR tests/fuzz/corpus/snap_state   (see tests/fuzz/README.md) */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fdtable.h"
#include "snap_buffer.h"
#include "snap_state.h"

#define HEADER_SIZE 32

static void violated(const char *what)
{
	fprintf(stderr, "fuzz_snap_state: a decoded state breaks its contract: %s\n", what);
	abort();
}

/* Absolute, no empty, "." or ".." component, no trailing slash but "/". */
static bool normalized(const char *path)
{
	if (path[0] != '/')
		return false;
	if (path[1] == '\0')
		return true;
	for (const char *c = path + 1;;) {
		const char *slash = strchr(c, '/');
		size_t n = slash ? (size_t)(slash - c) : strlen(c);
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		if (!slash)
			return true;
		c = slash + 1;
	}
}

static void check_invariants(const struct snap_state *s)
{
	const struct snap_memory *m = &s->memory;
	if (s->vcpu.regs.rip >= m->mem_size || s->vcpu.regs.rsp > m->mem_size)
		violated("rip or rsp outside guest memory");
	if (s->vcpu.msr_count > SNAP_MAX_MSRS || s->vcpu.cpuid_count > SNAP_MAX_CPUID)
		violated("MSR or CPUID count over its cap");
	uint64_t previous_end = 0;
	for (uint32_t i = 0; i < m->region_count; i++) {
		if (m->regions[i].start < previous_end || m->regions[i].end <= m->regions[i].start ||
		    m->regions[i].end > m->mem_size)
			violated("memory regions out of order or outside guest memory");
		previous_end = m->regions[i].end;
	}
	const struct snap_process *p = &s->process;
	if (!normalized(p->root_path) || (p->task_path[0] && !normalized(p->task_path)) ||
	    !normalized(p->cwd) || !normalized(p->exe_path))
		violated("a process path is not absolute and normalized");
	if (s->node_count == 0 || !s->nodes[0].is_dir)
		violated("no /tmp root directory");
	for (uint32_t i = 1; i < s->node_count; i++) {
		uint32_t parent = s->nodes[i].parent;
		if (parent != SNAP_NODE_UNLINKED && (parent >= i || !s->nodes[parent].is_dir))
			violated("a /tmp node comes before its parent, or its parent is not a directory");
		if (!s->nodes[i].name[0] || strchr(s->nodes[i].name, '/') || !strcmp(s->nodes[i].name, ".") ||
		    !strcmp(s->nodes[i].name, ".."))
			violated("a /tmp node has an unsafe name");
		if (s->nodes[i].size && !s->nodes[i].data)
			violated("a /tmp node has a size but no data");
	}
	for (uint32_t i = 0; i < s->pipe_count; i++)
		if (s->pipes[i].length && !s->pipes[i].bytes)
			violated("a pipe has a length but no bytes");
	for (uint32_t i = 0; i < s->file_count; i++) {
		const struct snap_file *f = &s->files[i];
		if ((f->kind == VMM_FILE_MEMFS || f->kind == VMM_FILE_MEMFS_DIR) && f->node >= s->node_count)
			violated("an open file names a /tmp node that does not exist");
		if ((f->kind == VMM_FILE_PIPE_READ || f->kind == VMM_FILE_PIPE_WRITE) && f->pipe >= s->pipe_count)
			violated("an open file names a pipe that does not exist");
		if (f->path[0] && !normalized(f->path))
			violated("an open file's path could escape its layer");
		if (f->data_size && !f->data)
			violated("a synthetic file has a size but no data");
	}
	for (uint32_t i = 0; i < s->fd_count; i++)
		if (s->fds[i].fd >= VMM_FD_MAX || s->fds[i].file >= s->file_count)
			violated("a descriptor is out of range or names no open file");
}

/* Re-encoding a decoded state must decode again and be stable. */
static void check_reencoding(const struct snap_state *s)
{
	struct ember_error err;
	uint8_t *first = NULL, *second = NULL;
	size_t first_length = 0, second_length = 0;
	if (snap_state_encode(s, &first, &first_length, &err) < 0)
		return; /* out of memory */
	struct snap_state again;
	if (snap_state_decode(first, first_length, &again, &err) < 0) {
		fprintf(stderr, "fuzz_snap_state: re-encoded state does not decode: %s\n", err.message);
		abort();
	}
	if (snap_state_encode(&again, &second, &second_length, &err) == 0) {
		if (second_length != first_length || memcmp(first, second, first_length) != 0)
			violated("encode(decode(encode(state))) differs from encode(state)");
		free(second);
	}
	snap_state_free(&again);
	free(first);
}

static void decode_one(const uint8_t *data, size_t size)
{
	struct snap_state state;
	struct ember_error err;
	if (snap_state_decode(data, size, &state, &err) < 0) {
		if (!err.message[0])
			violated("a refusal without a message");
		return;
	}
	check_invariants(&state);
	check_reencoding(&state);
	snap_state_free(&state);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	decode_one(data, size);
	if (size < HEADER_SIZE)
		return 0;
	/* The same bytes with a header that matches the body. */
	uint8_t *fixed = malloc(size);
	if (!fixed)
		return 0;
	memcpy(fixed, data, size);
	uint64_t body_length = size - HEADER_SIZE;
	uint32_t crc = snap_crc32(0, fixed + HEADER_SIZE, body_length);
	for (int i = 0; i < 8; i++)
		fixed[16 + i] = (uint8_t)(body_length >> (8 * i));
	for (int i = 0; i < 4; i++)
		fixed[24 + i] = (uint8_t)(crc >> (8 * i));
	decode_one(fixed, size);
	free(fixed);
	return 0;
}
