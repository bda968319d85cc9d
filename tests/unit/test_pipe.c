/* Unit test of the in-VM pipe ring (vmm/pipe.c), run on the host: reads
 * and writes that wrap around the end of the buffer, a full and an empty
 * pipe, and a long random exchange checked byte for byte against the
 * sequence written.  One line per check: "PASS name" or "FAIL name:
 * detail"; exits non-zero on any failure. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipe.h"
#include "unit_test.h"

/* Byte number `index` of the test stream. */
static uint8_t stream_byte(uint64_t index)
{
	return (uint8_t)(index * 131 + (index >> 9));
}

static void fill_stream(uint8_t *buf, uint64_t first, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = stream_byte(first + i);
}

static bool is_stream(const uint8_t *buf, uint64_t first, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != stream_byte(first + i))
			return false;
	return true;
}

static void test_basics(void)
{
	struct vmm_pipe *pipe = vmm_pipe_new();
	if (!unit_check(pipe != NULL, "pipe_new", "out of memory"))
		return;
	unit_check(pipe->readers == 1 && pipe->writers == 1 && pipe->length == 0, "pipe_new_state",
		   "readers %d writers %d length %zu", pipe->readers, pipe->writers, pipe->length);
	static uint8_t in[VMM_PIPE_CAPACITY + 5000], out[VMM_PIPE_CAPACITY + 5000];
	UNIT_EXPECT_EQ("pipe_read_empty", vmm_pipe_read(pipe, out, 10), 0);
	UNIT_EXPECT_EQ("pipe_write_zero", vmm_pipe_write(pipe, in, 0), 0);
	memcpy(in, "hello", 5);
	UNIT_EXPECT_EQ("pipe_write_small", vmm_pipe_write(pipe, in, 5), 5);
	UNIT_EXPECT_EQ("pipe_read_zero", vmm_pipe_read(pipe, out, 0), 0);
	UNIT_EXPECT_EQ("pipe_read_partial", vmm_pipe_read(pipe, out, 2), 2);
	UNIT_EXPECT_EQ("pipe_read_rest", vmm_pipe_read(pipe, out + 2, 100), 3);
	unit_check(memcmp(out, "hello", 5) == 0, "pipe_bytes_in_order", "read back wrong bytes");

	/* Fill past capacity: only the capacity is taken. */
	fill_stream(in, 0, sizeof in);
	UNIT_EXPECT_EQ("pipe_write_over_capacity", vmm_pipe_write(pipe, in, sizeof in), VMM_PIPE_CAPACITY);
	UNIT_EXPECT_EQ("pipe_write_full", vmm_pipe_write(pipe, in, 1), 0);
	UNIT_EXPECT_EQ("pipe_read_some", vmm_pipe_read(pipe, out, 1000), 1000);
	/* This write wraps: the free space is 1000 bytes at the start of the buffer,
	 * and the ring's head is 5 + 1000 bytes in. */
	UNIT_EXPECT_EQ("pipe_write_wraps", vmm_pipe_write(pipe, in + VMM_PIPE_CAPACITY, 5000), 1000);
	UNIT_EXPECT_EQ("pipe_full_again", pipe->length, VMM_PIPE_CAPACITY);
	size_t got = vmm_pipe_read(pipe, out + 1000, sizeof out);
	unit_check(got == VMM_PIPE_CAPACITY && is_stream(out, 0, VMM_PIPE_CAPACITY + 1000), "pipe_wrapped_read",
		   "read %zu bytes, stream %s", got, is_stream(out, 0, VMM_PIPE_CAPACITY + 1000) ? "intact" : "corrupt");
	UNIT_EXPECT_EQ("pipe_empty_after_drain", pipe->length, 0);
	unit_check(pipe->head < VMM_PIPE_CAPACITY, "pipe_head_in_range", "head %zu", pipe->head);

	/* The head exactly at the end of the buffer. */
	vmm_pipe_write(pipe, in, VMM_PIPE_CAPACITY - pipe->head);
	vmm_pipe_read(pipe, out, VMM_PIPE_CAPACITY);
	unit_check(pipe->head == 0 && pipe->length == 0, "pipe_head_wraps_to_zero", "head %zu length %zu", pipe->head,
		   pipe->length);

	vmm_pipe_close_end(pipe, true);
	unit_check(pipe->writers == 0 && pipe->readers == 1, "pipe_close_writer", "writers %d readers %d",
		   pipe->writers, pipe->readers);
	vmm_pipe_close_end(pipe, false); /* frees it; ASan reports a leak or double free */
	unit_check(1, "pipe_close_both", "%s", "");
}

/* Random chunk sizes for a long exchange, checked against the stream. */
static void test_random_exchange(void)
{
	struct vmm_pipe *pipe = vmm_pipe_new();
	if (!pipe)
		return;
	static uint8_t buf[3 * VMM_PIPE_CAPACITY];
	uint64_t written = 0, read = 0, state = 0xfeedULL;
	bool ok = true;
	char reason[160] = "";
	for (int step = 0; step < 100000 && ok; step++) {
		state ^= state << 13;
		state ^= state >> 7;
		state ^= state << 17;
		size_t len = (size_t)(state % 16 == 0 ? (state >> 8) % sizeof buf : (state >> 8) % 300);
		if ((state >> 40) & 1) {
			fill_stream(buf, written, len);
			size_t room = VMM_PIPE_CAPACITY - (size_t)(written - read);
			size_t n = vmm_pipe_write(pipe, buf, len);
			size_t want = len < room ? len : room;
			if (n != want) {
				snprintf(reason, sizeof reason, "step %d: write %zu with room %zu took %zu", step, len, room, n);
				ok = false;
			}
			written += n;
		} else {
			size_t n = vmm_pipe_read(pipe, buf, len);
			size_t have = (size_t)(written - read);
			size_t want = len < have ? len : have;
			if (n != want || !is_stream(buf, read, n)) {
				snprintf(reason, sizeof reason, "step %d: read %zu of %zu buffered returned %zu (%s)", step, len,
					 have, n, n == want ? "wrong bytes" : "wrong count");
				ok = false;
			}
			read += n;
		}
		if (ok && (pipe->length != written - read || pipe->head >= VMM_PIPE_CAPACITY)) {
			snprintf(reason, sizeof reason, "step %d: length %zu head %zu, expected length %zu", step,
				 pipe->length, pipe->head, (size_t)(written - read));
			ok = false;
		}
	}
	unit_check(ok, "pipe_random_exchange", "%s", reason);
	vmm_pipe_close_end(pipe, false);
	vmm_pipe_close_end(pipe, true);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_basics();
	test_random_exchange();
	return unit_exit_status();
}
