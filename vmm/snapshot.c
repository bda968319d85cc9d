/* Snapshot save and restore of the VMM kernel's state (snapshot.h).
 *
 * Capture turns live objects into the plain struct snap_state: /tmp nodes,
 * pipes and open file descriptions get indices (shared descriptions stay
 * shared), host files record their identity (size, mtime) so a restore can
 * refuse one that changed.  Guest memory goes to its own sparse file.
 * Restore runs the other way from a state that snap_state_decode() has
 * already validated. */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durable.h"
#include "guest_layout.h"
#include "memfs.h"
#include "pipe.h"
#include "platform.h"
#include "snap_state.h"
#include "syscalls.h"

/* ---- capture ------------------------------------------------------------ */

struct capture {
	struct snap_state *state;
	struct vmm_memfs_node **nodes; /* index -> node */
	uint32_t node_capacity;
	struct vmm_pipe **pipes;
	struct vmm_file **files;
};

static int add_node(struct capture *c, struct vmm_memfs_node *node, uint32_t parent)
{
	struct snap_state *s = c->state;
	if (s->node_count == c->node_capacity) {
		uint32_t capacity = c->node_capacity ? c->node_capacity * 2 : 64;
		struct snap_node *nodes = realloc(s->nodes, capacity * sizeof *nodes);
		struct vmm_memfs_node **live = realloc(c->nodes, capacity * sizeof *live);
		if (nodes)
			s->nodes = nodes;
		if (live)
			c->nodes = live;
		if (!nodes || !live)
			return -1;
		c->node_capacity = capacity;
	}
	struct snap_node *n = &s->nodes[s->node_count];
	memset(n, 0, sizeof *n);
	n->parent = parent;
	snprintf(n->name, sizeof n->name, "%s", node->name);
	n->is_dir = node->is_dir;
	n->mode = node->mode;
	n->mtime_sec = node->mtime.tv_sec;
	n->mtime_nsec = node->mtime.tv_nsec;
	n->size = node->is_dir ? 0 : node->size;
	if (n->size) {
		n->data = malloc(n->size);
		if (!n->data)
			return -1;
		memcpy(n->data, node->data, n->size);
	}
	node->save_index = s->node_count;
	c->nodes[s->node_count++] = node;
	return 0;
}

/* Preorder: every parent is saved before its children. */
static int capture_tree(struct capture *c, struct vmm_memfs_node *dir, uint32_t dir_index)
{
	for (struct vmm_memfs_node *child = dir->first_child; child; child = child->next_sibling) {
		if (add_node(c, child, dir_index) < 0)
			return -1;
		if (child->is_dir && capture_tree(c, child, child->save_index) < 0)
			return -1;
	}
	return 0;
}

static uint32_t node_index(struct capture *c, struct vmm_memfs_node *node)
{
	uint32_t i = node->save_index;
	if (i < c->state->node_count && c->nodes[i] == node)
		return i;
	/* Not in the tree: unlinked but still open. */
	if (add_node(c, node, SNAP_NODE_UNLINKED) < 0)
		return UINT32_MAX;
	return c->state->node_count - 1;
}

static int capture_files(struct capture *c, struct vmm_process *process, struct ember_error *err)
{
	struct snap_state *s = c->state;
	c->files = calloc(VMM_FD_MAX, sizeof *c->files);
	c->pipes = calloc(VMM_FD_MAX, sizeof *c->pipes);
	s->files = calloc(VMM_FD_MAX, sizeof *s->files);
	s->fds = calloc(VMM_FD_MAX, sizeof *s->fds);
	s->pipes = calloc(VMM_FD_MAX, sizeof *s->pipes);
	if (!c->files || !c->pipes || !s->files || !s->fds || !s->pipes)
		return ember_error_set(err, "out of memory");
	for (int fd = 0; fd < VMM_FD_MAX; fd++) {
		struct vmm_fd_slot *slot = vmm_fd_slot(&process->fds, (uint64_t)fd);
		if (!slot)
			continue;
		uint32_t index = 0;
		while (index < s->file_count && c->files[index] != slot->file)
			index++;
		if (index == s->file_count) {
			struct vmm_file *file = slot->file;
			struct snap_file *f = &s->files[s->file_count];
			c->files[s->file_count++] = file;
			f->kind = (uint32_t)file->kind;
			f->flags = file->flags;
			f->offset = file->offset;
			snprintf(f->path, sizeof f->path, "%s", file->path ? file->path : "");
			switch (file->kind) {
			case VMM_FILE_HOST:
			case VMM_FILE_HOST_DIR: {
				struct stat st;
				if (fstat(file->host_fd, &st) < 0)
					return ember_error_errno(err, errno, "stat open file `%s`", f->path);
				f->host_size = (uint64_t)st.st_size;
				f->host_mtime_sec = st.st_mtim.tv_sec;
				f->host_mtime_nsec = st.st_mtim.tv_nsec;
				if (file->kind == VMM_FILE_HOST_DIR) {
					off_t position = lseek(file->host_fd, 0, SEEK_CUR);
					f->offset = position < 0 ? 0 : (uint64_t)position;
				}
				break;
			}
			case VMM_FILE_STDIO: f->stdio_fd = (uint32_t)file->host_fd; break;
			case VMM_FILE_MEMFS:
			case VMM_FILE_MEMFS_DIR:
				f->node = node_index(c, file->node);
				if (f->node == UINT32_MAX)
					return ember_error_set(err, "out of memory");
				break;
			case VMM_FILE_PIPE_READ:
			case VMM_FILE_PIPE_WRITE: {
				uint32_t p = 0;
				while (p < s->pipe_count && c->pipes[p] != file->pipe)
					p++;
				if (p == s->pipe_count) {
					c->pipes[s->pipe_count] = file->pipe;
					struct snap_pipe *sp = &s->pipes[s->pipe_count++];
					sp->length = file->pipe->length;
					if (sp->length) {
						sp->bytes = malloc(sp->length);
						if (!sp->bytes)
							return ember_error_set(err, "out of memory");
						/* Copy without consuming: read, then put back. */
						struct vmm_pipe copy = *file->pipe;
						vmm_pipe_read(&copy, sp->bytes, sp->length);
					}
				}
				f->pipe = p;
				break;
			}
			case VMM_FILE_SOCKET:
				f->socket_domain = (uint32_t)file->socket_domain;
				f->socket_type = (uint32_t)file->socket_type;
				f->socket_connected = file->socket_connected;
				if (file->unanswered_overflow)
					return ember_error_set(err,
							       "the Runtime API connection has more than %d "
							       "unanswered bytes in flight",
							       VMM_UNANSWERED_MAX);
				f->data_size = file->unanswered_length;
				if (f->data_size) {
					f->data = malloc(f->data_size);
					if (!f->data)
						return ember_error_set(err, "out of memory");
					memcpy(f->data, file->unanswered, f->data_size);
				}
				break;
			case VMM_FILE_SYNTHETIC:
				f->data_size = file->size;
				if (file->size) {
					f->data = malloc(file->size);
					if (!f->data)
						return ember_error_set(err, "out of memory");
					memcpy(f->data, file->data, file->size);
				}
				break;
			default: break;
			}
		}
		struct snap_fd *d = &s->fds[s->fd_count++];
		d->fd = (uint32_t)fd;
		d->file = index;
		d->cloexec = slot->cloexec;
	}
	return 0;
}

static int capture(struct vmm_process *process, struct snap_state *s, struct ember_error *err)
{
	memset(s, 0, sizeof *s);
	snap_cpu_identify(&s->cpu);
	if (process->vm.platform->save(&process->vm, &s->vcpu, &s->cpu, err) < 0)
		return -1;

	struct snap_process *p = &s->process;
	snprintf(p->root_path, sizeof p->root_path, "%s", process->layers.root_path);
	snprintf(p->task_path, sizeof p->task_path, "%s", process->layers.task_path);
	snprintf(p->cwd, sizeof p->cwd, "%s", process->cwd);
	snprintf(p->exe_path, sizeof p->exe_path, "%s", process->layers.exe_path);
	p->umask = process->umask;
	p->tid_address = process->tid_address;
	p->fs_base = process->fs_base;
	p->gs_base = process->gs_base;
	p->signal_mask = process->signal_mask;
	for (int sig = 1; sig <= SNAP_SIGNALS; sig++) {
		p->actions[sig].handler = process->signal_actions[sig].handler;
		p->actions[sig].flags = process->signal_actions[sig].flags;
		p->actions[sig].restorer = process->signal_actions[sig].restorer;
		p->actions[sig].mask = process->signal_actions[sig].mask;
	}
	memcpy(p->altstack, process->altstack, sizeof p->altstack);
	memcpy(p->thread_name, process->thread_name, sizeof p->thread_name);

	struct vmm_memory_map *mm = &process->mm;
	struct snap_memory *m = &s->memory;
	m->mem_size = process->vm.mem_size;
	m->brk_start = mm->brk_start;
	m->brk_current = mm->brk_current;
	m->stack_low = mm->stack_low;
	m->stack_top = mm->stack_top;
	m->mmap_top = mm->mmap_top;
	m->region_count = (uint32_t)mm->count;
	m->regions = calloc(mm->count ? mm->count : 1, sizeof *m->regions);
	if (!m->regions)
		return ember_error_set(err, "out of memory");
	for (size_t i = 0; i < mm->count; i++) {
		m->regions[i].start = mm->regions[i].start;
		m->regions[i].end = mm->regions[i].end;
		m->regions[i].prot = mm->regions[i].prot;
		m->regions[i].flags = mm->regions[i].flags;
	}

	struct capture c = {.state = s};
	int rc = -1;
	if (add_node(&c, process->layers.tmp.root, SNAP_NODE_ROOT) < 0 ||
	    capture_tree(&c, process->layers.tmp.root, 0) < 0)
		ember_error_set(err, "save /tmp: out of memory");
	else if (capture_files(&c, process, err) == 0)
		rc = 0;
	free(c.nodes);
	free(c.pipes);
	free(c.files);
	if (rc < 0)
		return -1;

	struct timespec now;
	if (vmm_clock_guest_time(&process->clock, CLOCK_MONOTONIC, &now) < 0)
		clock_gettime(CLOCK_MONOTONIC, &now);
	s->monotonic_ns = now.tv_sec * 1000000000LL + now.tv_nsec;
	clock_gettime(CLOCK_REALTIME, &now);
	s->realtime_ns = now.tv_sec * 1000000000LL + now.tv_nsec;
	return 0;
}

/* ---- writing the directory ---------------------------------------------- */

static int write_all(int fd, const void *data, size_t length, off_t offset)
{
	size_t done = 0;
	while (done < length) {
		ssize_t n = pwrite(fd, (const char *)data + done, length - done, offset + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static bool page_is_zero(const uint8_t *page)
{
	const uint64_t *words = (const uint64_t *)page;
	uint64_t any = 0;
	for (size_t i = 0; i < GUEST_PAGE_SIZE / 8; i++)
		any |= words[i];
	return any == 0;
}

/* Writes guest memory sparsely: only non-zero pages are written.  Pages
 * the platform knows were never touched (fresh memory) are skipped
 * without reading them. */
static int write_memory(struct vmm_vm *vm, int fd, struct ember_error *err)
{
	if (ftruncate(fd, (off_t)vm->mem_size) < 0)
		return ember_error_errno(err, errno, "size the memory file");
	enum { CHUNK = 2 << 20, CHUNK_PAGES = CHUNK / GUEST_PAGE_SIZE };
	uint8_t *buffer = malloc(CHUNK);
	if (!buffer)
		return ember_error_set(err, "write guest memory: out of memory");
	unsigned char resident[CHUNK_PAGES];
	int rc = 0;
	for (uint64_t base = 0; base < vm->mem_size && rc == 0; base += CHUNK) {
		bool check_residency = vm->platform->residency(vm, base, CHUNK_PAGES, resident) == 0;
		if (check_residency) {
			bool any = false;
			for (size_t page = 0; page < CHUNK_PAGES && !any; page++)
				any = resident[page] & 1;
			if (!any)
				continue;
		}
		if (vmm_mem_read(vm, base, buffer, CHUNK, true) < 0) {
			rc = ember_error_set(err, "read guest memory at %#llx", (unsigned long long)base);
			break;
		}
		uint64_t run_start = 0, run_length = 0;
		for (size_t page = 0; page <= CHUNK_PAGES; page++) {
			bool data = page < CHUNK_PAGES && (!check_residency || (resident[page] & 1)) &&
				    !page_is_zero(buffer + page * GUEST_PAGE_SIZE);
			if (data) {
				if (run_length == 0)
					run_start = page * GUEST_PAGE_SIZE;
				run_length += GUEST_PAGE_SIZE;
				continue;
			}
			if (run_length &&
			    write_all(fd, buffer + run_start, run_length, (off_t)(base + run_start)) < 0) {
				rc = ember_error_errno(err, errno, "write guest memory at %#llx",
						       (unsigned long long)(base + run_start));
				break;
			}
			run_length = 0;
		}
	}
	free(buffer);
	return rc;
}

static int write_file(const char *dir, const char *name, const void *data, size_t length,
		      struct ember_error *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return ember_error_errno(err, errno, "create `%s`", path);
	int rc = 0;
	if (write_all(fd, data, length, 0) < 0 || fsync(fd) < 0)
		rc = ember_error_errno(err, errno, "write `%s`", path);
	close(fd);
	return rc;
}

int vmm_snapshot_save(struct vmm_process *process, const char *dir, struct ember_error *err)
{
	if (dir[0] != '/' || strlen(dir) + 32 > PATH_MAX)
		return ember_error_set(err, "snapshot directory `%s` must be an absolute path", dir);
	struct stat st;
	if (lstat(dir, &st) == 0)
		return ember_error_set(err, "snapshot directory `%s` already exists", dir);
	char parent[PATH_MAX], temporary[PATH_MAX];
	snprintf(parent, sizeof parent, "%s", dir);
	char *slash = strrchr(parent, '/');
	slash[slash == parent ? 1 : 0] = '\0';
	snprintf(temporary, sizeof temporary, "%s.tmp-XXXXXX", dir);
	if (!mkdtemp(temporary))
		return ember_error_errno(err, errno, "create a temporary directory beside `%s`", dir);
	chmod(temporary, 0755); /* mkdtemp makes it private; snapshots are read by pool VMMs */

	struct snap_state state;
	uint8_t *encoded = NULL;
	size_t encoded_length = 0;
	int rc = -1;
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", temporary, SNAP_MEMORY_FILE);
	int memory_fd = -1;
	if (capture(process, &state, err) < 0)
		goto out;
	if (snap_state_encode(&state, &encoded, &encoded_length, err) < 0)
		goto out;
	memory_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (memory_fd < 0) {
		ember_error_errno(err, errno, "create `%s`", path);
		goto out;
	}
	if (write_memory(&process->vm, memory_fd, err) < 0)
		goto out;
	if (fsync(memory_fd) < 0) {
		ember_error_errno(err, errno, "fsync `%s`", path);
		goto out;
	}
	if (write_file(temporary, SNAP_STATE_FILE, encoded, encoded_length, err) < 0 ||
	    ember_fsync_directory(temporary, err) < 0)
		goto out;
	if (rename(temporary, dir) < 0) {
		ember_error_errno(err, errno, "rename `%s` to `%s`", temporary, dir);
		goto out;
	}
	if (ember_fsync_directory(parent, err) < 0)
		goto out;
	rc = 0;
out:
	if (memory_fd >= 0)
		close(memory_fd);
	free(encoded);
	snap_state_free(&state);
	if (rc < 0) {
		snprintf(path, sizeof path, "%s/%s", temporary, SNAP_MEMORY_FILE);
		unlink(path);
		snprintf(path, sizeof path, "%s/%s", temporary, SNAP_STATE_FILE);
		unlink(path);
		rmdir(temporary);
		return ember_error_wrap(err, "snapshot to `%s`", dir);
	}
	return 0;
}

/* ---- restore -------------------------------------------------------------- */

static int restore_memory_map(struct vmm_process *process, const struct snap_memory *m,
			      struct ember_error *err)
{
	struct vmm_memory_map *mm = &process->mm;
	vmm_mm_init(mm, &process->vm);
	mm->brk_start = m->brk_start;
	mm->brk_current = m->brk_current;
	mm->stack_low = m->stack_low;
	mm->stack_top = m->stack_top;
	mm->mmap_top = m->mmap_top;
	mm->regions = calloc(m->region_count ? m->region_count : 1, sizeof *mm->regions);
	if (!mm->regions)
		return ember_error_set(err, "out of memory for the memory map");
	mm->capacity = m->region_count ? m->region_count : 1;
	for (uint32_t i = 0; i < m->region_count; i++) {
		mm->regions[i].start = m->regions[i].start;
		mm->regions[i].end = m->regions[i].end;
		mm->regions[i].prot = m->regions[i].prot;
		mm->regions[i].flags = m->regions[i].flags;
		mm->mapped_bytes += m->regions[i].end - m->regions[i].start;
	}
	mm->count = m->region_count;
	uint64_t heap = mm->brk_current - mm->brk_start;
	if (mm->mapped_bytes + heap > mm->limit_bytes)
		return ember_error_set(err, "the memory map exceeds guest memory");
	return 0;
}

static int restore_tmp(struct vmm_process *process, const struct snap_state *s, struct vmm_memfs_node **nodes,
		       struct ember_error *err)
{
	struct vmm_memfs *fs = &process->layers.tmp;
	if (vmm_memfs_init(fs, &process->mm) < 0)
		return ember_error_set(err, "create /tmp: out of memory");
	nodes[0] = fs->root;
	fs->root->mode = s->nodes[0].mode;
	for (uint32_t i = 1; i < s->node_count; i++) {
		const struct snap_node *n = &s->nodes[i];
		struct vmm_memfs_node *node;
		int rc;
		if (n->parent == SNAP_NODE_UNLINKED) {
			rc = vmm_memfs_create_unlinked(fs, n->name, n->is_dir, n->mode, &node);
		} else {
			rc = vmm_memfs_create_in(fs, nodes[n->parent], n->name, n->is_dir, n->mode, &node);
		}
		if (rc == 0 && n->size)
			rc = vmm_memfs_write(node, 0, n->data, n->size) < 0 ? -ENOSPC : 0;
		if (rc < 0)
			return ember_error_errno(err, -rc, "restore /tmp node `%s`", n->name);
		node->mtime.tv_sec = n->mtime_sec;
		node->mtime.tv_nsec = n->mtime_nsec;
		nodes[i] = node;
	}
	return 0;
}

static int reopen_layer_file(struct vmm_process *process, const struct snap_file *f, struct vmm_file *file,
			     struct ember_error *err)
{
	struct vmm_place place;
	vmm_path_place(&process->layers, f->path, &place);
	if (place.kind != VMM_PLACE_LAYER)
		return ember_error_set(err, "open file `%s` is not in a layer", f->path);
	int fd = vmm_layer_open(place.layer_fd, place.rel, f->kind == VMM_FILE_HOST_DIR ? O_DIRECTORY : 0);
	if (fd < 0)
		return ember_error_errno(err, -fd, "re-open `%s` in its layer", f->path);
	file->host_fd = fd;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return ember_error_errno(err, errno, "stat `%s`", f->path);
	if (S_ISDIR(st.st_mode) != (f->kind == VMM_FILE_HOST_DIR) || (uint64_t)st.st_size != f->host_size ||
	    st.st_mtim.tv_sec != f->host_mtime_sec || st.st_mtim.tv_nsec != f->host_mtime_nsec)
		return ember_error_set(err,
				       "file `%s` changed since the snapshot (size or modification time "
				       "differ)",
				       f->path);
	if (f->kind == VMM_FILE_HOST_DIR && f->offset && lseek(fd, (off_t)f->offset, SEEK_SET) < 0)
		return ember_error_errno(err, errno, "restore the position in directory `%s`", f->path);
	return 0;
}

static int restore_files(struct vmm_process *process, const struct snap_state *s,
			 struct vmm_memfs_node **nodes, struct ember_error *err)
{
	struct vmm_pipe **pipes = calloc(s->pipe_count ? s->pipe_count : 1, sizeof *pipes);
	struct vmm_file **files = calloc(s->file_count ? s->file_count : 1, sizeof *files);
	int rc = -1;
	if (!pipes || !files) {
		ember_error_set(err, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < s->pipe_count; i++) {
		pipes[i] = vmm_pipe_new();
		if (!pipes[i]) {
			ember_error_set(err, "out of memory");
			goto out;
		}
		pipes[i]->readers = pipes[i]->writers = 0;
		vmm_pipe_write(pipes[i], s->pipes[i].bytes, s->pipes[i].length);
	}
	for (uint32_t i = 0; i < s->file_count; i++) {
		const struct snap_file *f = &s->files[i];
		struct vmm_file *file = vmm_file_new((enum vmm_file_kind)f->kind, f->flags);
		if (!file || (f->path[0] && !(file->path = strdup(f->path)))) {
			vmm_file_unref(file);
			ember_error_set(err, "out of memory");
			goto out;
		}
		files[i] = file;
		file->offset = f->offset;
		switch (file->kind) {
		case VMM_FILE_HOST:
		case VMM_FILE_HOST_DIR:
			if (reopen_layer_file(process, f, file, err) < 0)
				goto out;
			break;
		case VMM_FILE_STDIO: file->host_fd = (int)f->stdio_fd; break;
		case VMM_FILE_MEMFS:
		case VMM_FILE_MEMFS_DIR: file->node = vmm_memfs_node_ref(nodes[f->node]); break;
		case VMM_FILE_PIPE_READ:
			file->pipe = pipes[f->pipe];
			file->pipe->readers++;
			break;
		case VMM_FILE_PIPE_WRITE:
			file->pipe = pipes[f->pipe];
			file->pipe->writers++;
			break;
		case VMM_FILE_SOCKET:
			file->socket_domain = (int)f->socket_domain;
			file->socket_type = (int)f->socket_type;
			file->socket_connected = f->socket_connected;
			if (f->data_size) {
				file->unanswered = malloc(VMM_UNANSWERED_MAX);
				if (!file->unanswered) {
					ember_error_set(err, "out of memory");
					goto out;
				}
				memcpy(file->unanswered, f->data, f->data_size);
				file->unanswered_length = f->data_size;
			}
			if (file->socket_connected)
				vmm_socket_reconnect(process, file); /* replays the unanswered bytes */
			break;
		case VMM_FILE_SYNTHETIC:
			if (f->data_size) {
				file->data = malloc(f->data_size);
				if (!file->data) {
					ember_error_set(err, "out of memory");
					goto out;
				}
				memcpy(file->data, f->data, f->data_size);
				file->size = f->data_size;
			}
			break;
		default: break;
		}
	}
	for (uint32_t i = 0; i < s->fd_count; i++) {
		const struct snap_fd *d = &s->fds[i];
		vmm_fd_install_at(&process->fds, vmm_file_ref(files[d->file]), (int)d->fd, d->cloexec);
	}
	rc = 0;
out:
	/* Count each pipe's users before dropping our references: a pipe with
	 * none (the restore failed before its files were made) is freed here;
	 * the others belong to their files. */
	bool *used = calloc(s->pipe_count ? s->pipe_count : 1, sizeof *used);
	for (uint32_t i = 0; files && i < s->file_count; i++)
		if (files[i] &&
		    (files[i]->kind == VMM_FILE_PIPE_READ || files[i]->kind == VMM_FILE_PIPE_WRITE) && used)
			used[s->files[i].pipe] = true;
	for (uint32_t i = 0; pipes && used && i < s->pipe_count; i++)
		if (!used[i])
			vmm_pipe_free_if_unused(pipes[i]);
	free(used);
	for (uint32_t i = 0; files && i < s->file_count; i++)
		vmm_file_unref(files[i]); /* the table holds the references now */
	free(files);
	free(pipes);
	return rc;
}

static void restore_process_fields(struct vmm_process *process, const struct snap_process *p)
{
	snprintf(process->cwd, sizeof process->cwd, "%s", p->cwd);
	snprintf(process->layers.exe_path, sizeof process->layers.exe_path, "%s", p->exe_path);
	process->umask = p->umask;
	process->tid_address = p->tid_address;
	process->fs_base = p->fs_base;
	process->gs_base = p->gs_base;
	process->signal_mask = p->signal_mask;
	for (int sig = 1; sig <= SNAP_SIGNALS; sig++) {
		process->signal_actions[sig].handler = p->actions[sig].handler;
		process->signal_actions[sig].flags = p->actions[sig].flags;
		process->signal_actions[sig].restorer = p->actions[sig].restorer;
		process->signal_actions[sig].mask = p->actions[sig].mask;
	}
	memcpy(process->altstack, p->altstack, sizeof process->altstack);
	memcpy(process->thread_name, p->thread_name, sizeof process->thread_name);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define HOT_PAGES_MAGIC    "ember-hot-pages 2\n"
#define HOT_PAGES_FILE_MAX (8u << 20)

/* Prepares the pages a previous invocation used (a "hot pages" file: a
 * header line, then one line per page, "<hex page number> r" for a page it
 * read, "<hex page number> w" for one it wrote): written pages are copied
 * ahead, so the guest's first writes do not each break copy-on-write, and
 * then a routine run inside the guest touches every listed page, so the
 * guest's first accesses do not each fault.  All of it happens before the
 * invocation, in a restored VM that is not yet running.  The file is
 * input like any other: bounded, every line checked against guest memory,
 * and a malformed file refused as a whole before anything is touched. */
static int prepare_hot_pages(struct vmm_vm *vm, const char *path, struct ember_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ember_error_errno(err, errno, "open hot pages `%s`", path);
	struct stat st;
	char *text = NULL;
	struct vmm_touch_range *ranges = NULL;
	int rc = -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > HOT_PAGES_FILE_MAX) {
		ember_error_set(err, "hot pages `%s` is not a regular file of at most %u bytes", path,
				HOT_PAGES_FILE_MAX);
		goto out;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text || read(fd, text, (size_t)st.st_size) != st.st_size) {
		ember_error_set(err, "read hot pages `%s`", path);
		goto out;
	}
	text[st.st_size] = '\0';
	if (strncmp(text, HOT_PAGES_MAGIC, strlen(HOT_PAGES_MAGIC)) != 0 ||
	    strlen(text) != (size_t)st.st_size) {
		ember_error_set(err, "`%s` is not a hot pages file", path);
		goto out;
	}
	uint64_t pages = vm->mem_size / GUEST_PAGE_SIZE;
	size_t lines = 0, count = 0;
	for (const char *c = text; *c; c++)
		lines += *c == '\n';
	ranges = calloc(lines ? lines : 1, sizeof *ranges);
	if (!ranges) {
		ember_error_set(err, "hot pages `%s`: out of memory", path);
		goto out;
	}
	for (const char *line = text + strlen(HOT_PAGES_MAGIC); *line;) {
		char *end;
		errno = 0;
		unsigned long long page = strtoull(line, &end, 16);
		if (errno || end == line ||
		    !((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')) ||
		    page >= pages || end[0] != ' ' || (end[1] != 'r' && end[1] != 'w') || end[2] != '\n') {
			ember_error_set(err, "hot pages `%s`: bad entry at byte %ld", path,
					(long)(line - text));
			goto out;
		}
		bool write = end[1] == 'w';
		struct vmm_touch_range *last = count ? &ranges[count - 1] : NULL;
		if (last && last->write == write && last->first + last->pages == page)
			last->pages++;
		else
			ranges[count++] = (struct vmm_touch_range){.first = page, .pages = 1, .write = write};
		line = end + 3;
	}
	for (size_t i = 0; i < count; i++) {
		uint8_t *host = vmm_mem_direct(vm, ranges[i].first * GUEST_PAGE_SIZE,
					       ranges[i].pages * GUEST_PAGE_SIZE);
		if (host && ranges[i].write) /* best effort: an old kernel just skips it */
			madvise(host, ranges[i].pages * GUEST_PAGE_SIZE, MADV_POPULATE_WRITE);
	}
	vm->platform->touch(vm, ranges, count); /* best effort too: it is only speed */
	rc = 0;
out:
	free(ranges);
	free(text);
	close(fd);
	return rc;
}

int vmm_snapshot_restore(struct vmm_process *process, const char *dir, struct ember_error *err)
{
	char path[PATH_MAX];
	struct snap_state state;
	snprintf(path, sizeof path, "%s/%s", dir, SNAP_STATE_FILE);
	if (snap_state_load(path, &state, err) < 0)
		return ember_error_wrap(err, "restore `%s`", dir);
	int rc = -1;
	int memory_fd = -1;
	struct vmm_memfs_node **nodes = NULL;
	if (snap_cpu_check(&state.cpu, err) < 0)
		goto out;
	snprintf(path, sizeof path, "%s/%s", dir, SNAP_MEMORY_FILE);
	memory_fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (memory_fd < 0 || fstat(memory_fd, &st) < 0) {
		ember_error_errno(err, errno, "open `%s`", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != state.memory.mem_size) {
		ember_error_set(err, "memory file `%s` has %lld bytes; guest memory is %llu", path,
				(long long)st.st_size, (unsigned long long)state.memory.mem_size);
		goto out;
	}
	if (vmm_vm_restore(&process->vm, process->platform, memory_fd, state.memory.mem_size, &state.vcpu,
			   err) < 0)
		goto out;
	if (process->pretouch)
		process->vm.platform->pretouch(&process->vm, memory_fd);
	if (process->hot_pages_path && prepare_hot_pages(&process->vm, process->hot_pages_path, err) < 0)
		goto out;
	if (restore_memory_map(process, &state.memory, err) < 0)
		goto out;
	/* The layers given by the caller win over the host paths the state file
	 * records: those are only trustworthy when the snapshot is. */
	const char *root = process->restore_root ? process->restore_root : state.process.root_path;
	const char *task = process->restore_task        ? process->restore_task
			   : state.process.task_path[0] ? state.process.task_path
							: NULL;
	if (task && !state.process.task_path[0]) {
		ember_error_set(err, "the snapshot has no task layer, but --task was given");
		goto out;
	}
	if (vmm_layers_open(&process->layers, root, task, err) < 0)
		goto out;
	nodes = calloc(state.node_count, sizeof *nodes);
	if (!nodes) {
		ember_error_set(err, "out of memory");
		goto out;
	}
	if (restore_tmp(process, &state, nodes, err) < 0 || restore_files(process, &state, nodes, err) < 0)
		goto out;
	for (uint32_t i = 1; i < state.node_count; i++)
		if (state.nodes[i].parent == SNAP_NODE_UNLINKED)
			vmm_memfs_node_unref(nodes[i]); /* now held by its open files only */
	restore_process_fields(process, &state.process);

	struct vmm_tsc_source tsc;
	if (process->vm.platform->tsc(&process->vm, &tsc, err) < 0 ||
	    vmm_clock_init(&process->clock, &tsc, err) < 0)
		goto out;
	/* The guest's monotonic clock never goes back, even on a host that
	 * booted after the snapshot was taken. */
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t host_now = now.tv_sec * 1000000000LL + now.tv_nsec;
	if (state.monotonic_ns > host_now)
		vmm_clock_set_guest_monotonic_offset(&process->clock, state.monotonic_ns - host_now);
	vmm_clock_publish(&process->clock, process->vm.vvar);
	rc = 0;
out:
	free(nodes);
	if (memory_fd >= 0)
		close(memory_fd);
	snap_state_free(&state);
	if (rc < 0)
		return ember_error_wrap(err, "restore `%s`", dir);
	return 0;
}
