/* Open file descriptions and the descriptor table of fdtable.h. */
#include "fdtable.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "memfs.h"
#include "pipe.h"

struct vmm_file *vmm_file_new(enum vmm_file_kind kind, int flags)
{
	struct vmm_file *file = calloc(1, sizeof *file);
	if (!file)
		return NULL;
	file->refs = 1;
	file->kind = kind;
	file->flags = flags;
	file->host_fd = -1;
	return file;
}

struct vmm_file *vmm_file_ref(struct vmm_file *file)
{
	file->refs++;
	return file;
}

void vmm_file_unref(struct vmm_file *file)
{
	if (!file || --file->refs > 0)
		return;
	if (file->host_fd >= 0 && file->kind != VMM_FILE_STDIO)
		close(file->host_fd);
	if (file->kind == VMM_FILE_STDIO && file->host_fd > 2)
		close(file->host_fd);
	if (file->node)
		vmm_memfs_node_unref(file->node);
	if (file->pipe)
		vmm_pipe_close_end(file->pipe, file->kind == VMM_FILE_PIPE_WRITE);
	free(file->path);
	free(file->data);
	free(file->unanswered);
	free(file);
}

int vmm_fd_install(struct vmm_fdtable *table, struct vmm_file *file, int min_fd, bool cloexec)
{
	if (min_fd < 0)
		min_fd = 0;
	for (int fd = min_fd; fd < VMM_FD_MAX; fd++) {
		if (!table->slots[fd].file) {
			table->slots[fd].file = file;
			table->slots[fd].cloexec = cloexec;
			return fd;
		}
	}
	return -EMFILE;
}

int vmm_fd_install_at(struct vmm_fdtable *table, struct vmm_file *file, int fd, bool cloexec)
{
	if (fd < 0 || fd >= VMM_FD_MAX)
		return -EBADF;
	struct vmm_file *old = table->slots[fd].file;
	table->slots[fd].file = file;
	table->slots[fd].cloexec = cloexec;
	vmm_file_unref(old);
	return fd;
}

struct vmm_fd_slot *vmm_fd_slot(struct vmm_fdtable *table, uint64_t fd)
{
	if (fd >= VMM_FD_MAX || !table->slots[fd].file)
		return NULL;
	return &table->slots[fd];
}

struct vmm_file *vmm_fd_get(struct vmm_fdtable *table, uint64_t fd)
{
	struct vmm_fd_slot *slot = vmm_fd_slot(table, fd);
	return slot ? slot->file : NULL;
}

int vmm_fd_close(struct vmm_fdtable *table, uint64_t fd)
{
	struct vmm_fd_slot *slot = vmm_fd_slot(table, fd);
	if (!slot)
		return -EBADF;
	struct vmm_file *file = slot->file;
	slot->file = NULL;
	slot->cloexec = false;
	vmm_file_unref(file);
	return 0;
}

void vmm_fd_close_all(struct vmm_fdtable *table)
{
	for (int fd = 0; fd < VMM_FD_MAX; fd++)
		vmm_fd_close(table, (uint64_t)fd);
}
