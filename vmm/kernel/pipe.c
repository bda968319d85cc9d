/* The byte ring of pipe.h. */
#include "pipe.h"

#include <stdlib.h>
#include <string.h>

struct vmm_pipe *vmm_pipe_new(void)
{
	struct vmm_pipe *pipe = calloc(1, sizeof *pipe);
	if (!pipe)
		return NULL;
	pipe->buffer = malloc(VMM_PIPE_CAPACITY);
	if (!pipe->buffer) {
		free(pipe);
		return NULL;
	}
	pipe->readers = pipe->writers = 1;
	return pipe;
}

void vmm_pipe_close_end(struct vmm_pipe *pipe, bool write_end)
{
	if (write_end)
		pipe->writers--;
	else
		pipe->readers--;
	if (pipe->readers <= 0 && pipe->writers <= 0) {
		free(pipe->buffer);
		free(pipe);
	}
}

void vmm_pipe_free_if_unused(struct vmm_pipe *pipe)
{
	if (pipe && pipe->readers <= 0 && pipe->writers <= 0) {
		free(pipe->buffer);
		free(pipe);
	}
}

size_t vmm_pipe_read(struct vmm_pipe *pipe, void *out, size_t len)
{
	size_t done = 0;
	while (done < len && pipe->length > 0) {
		size_t chunk = VMM_PIPE_CAPACITY - pipe->head;
		if (chunk > pipe->length)
			chunk = pipe->length;
		if (chunk > len - done)
			chunk = len - done;
		memcpy((uint8_t *)out + done, pipe->buffer + pipe->head, chunk);
		pipe->head = (pipe->head + chunk) % VMM_PIPE_CAPACITY;
		pipe->length -= chunk;
		done += chunk;
	}
	return done;
}

size_t vmm_pipe_write(struct vmm_pipe *pipe, const void *in, size_t len)
{
	size_t done = 0;
	while (done < len && pipe->length < VMM_PIPE_CAPACITY) {
		size_t tail = (pipe->head + pipe->length) % VMM_PIPE_CAPACITY;
		size_t chunk = VMM_PIPE_CAPACITY - tail;
		if (chunk > VMM_PIPE_CAPACITY - pipe->length)
			chunk = VMM_PIPE_CAPACITY - pipe->length;
		if (chunk > len - done)
			chunk = len - done;
		memcpy(pipe->buffer + tail, (const uint8_t *)in + done, chunk);
		pipe->length += chunk;
		done += chunk;
	}
	return done;
}
