/* In-VM pipes: a bounded byte ring between a read end and a write end,
 * both held by the same guest.  Nothing here touches the host. */
#ifndef VMM_PIPE_H
#define VMM_PIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMM_PIPE_CAPACITY 65536

struct vmm_pipe {
	uint8_t *buffer; /* VMM_PIPE_CAPACITY bytes */
	size_t head;     /* index of the oldest byte */
	size_t length;   /* bytes buffered */
	int readers, writers;
};

/* A new pipe with one reader and one writer; NULL when out of memory. */
struct vmm_pipe *vmm_pipe_new(void);
/* Drops one end; the pipe is freed when both sides are gone. */
void vmm_pipe_close_end(struct vmm_pipe *pipe, bool write_end);
/* Frees a pipe no end refers to (for a restore that failed midway). */
void vmm_pipe_free_if_unused(struct vmm_pipe *pipe);
/* Copies up to len buffered bytes out; returns the count (0 if empty). */
size_t vmm_pipe_read(struct vmm_pipe *pipe, void *out, size_t len);
/* Copies up to len bytes in while there is room; returns the count. */
size_t vmm_pipe_write(struct vmm_pipe *pipe, const void *in, size_t len);

#endif
