/* Encoding and validation of the state file (snap_state.h).
 *
 * Encoding writes one section per part of the VM.  Decoding trusts
 * nothing: the header, the CRC, every section's length, and then every
 * field is bounded and cross-checked (indices point at existing records,
 * addresses are canonical and inside guest memory, paths are absolute and
 * normalized, counts are capped) before the caller sees the struct. */
#include "snap_state.h"

#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdtable.h"
#include "guest_layout.h"
#include "snap_buffer.h"

#define SNAP_MAGIC       "EMBERSNP"
#define SNAP_HEADER_SIZE 32
#define CANONICAL_LIMIT  (1ULL << 47)
/* The smallest encoding of each record, to bound counts before allocating. */
#define NODE_RECORD_MIN    37
#define FILE_RECORD_MIN    76
#define REGION_RECORD_SIZE 24
/* Clocks beyond 2^62 ns (146 years) are refused: arithmetic on them could
 * overflow, and no real guest gets there. */
#define SNAP_CLOCK_MAX_NS (1LL << 62)

enum section_type {
	SECTION_CPU = 1,
	SECTION_VCPU,
	SECTION_PROCESS,
	SECTION_MEMORY,
	SECTION_TMPFS,
	SECTION_PIPES,
	SECTION_FILES,
	SECTION_FDS,
	SECTION_CLOCK,
	SECTION_COUNT = SECTION_CLOCK,
};

static const char *const section_names[] = {
	[SECTION_CPU] = "cpu",       [SECTION_VCPU] = "vcpu",   [SECTION_PROCESS] = "process",
	[SECTION_MEMORY] = "memory", [SECTION_TMPFS] = "tmpfs", [SECTION_PIPES] = "pipes",
	[SECTION_FILES] = "files",   [SECTION_FDS] = "fds",     [SECTION_CLOCK] = "clock",
};

/* ---- encoding ----------------------------------------------------------- */

static void encode_cpu(struct snap_writer *w, const struct snap_cpu_identity *cpu)
{
	snap_put_bytes(w, cpu->vendor, 12);
	snap_put_u32(w, cpu->signature);
	for (int i = 0; i < 6; i++)
		snap_put_u32(w, cpu->features[i]);
	snap_put_u64(w, cpu->xcr0);
	snap_put_u32(w, cpu->kvm_api_version);
	snap_put_u32(w, cpu->stub_user_mode);
}

static void encode_vcpu(struct snap_writer *w, const struct snap_vcpu *v)
{
	snap_put_u32(w, sizeof v->regs);
	snap_put_bytes(w, &v->regs, sizeof v->regs);
	snap_put_u32(w, sizeof v->sregs);
	snap_put_bytes(w, &v->sregs, sizeof v->sregs);
	snap_put_u32(w, sizeof v->xsave);
	snap_put_bytes(w, &v->xsave, sizeof v->xsave);
	snap_put_u32(w, sizeof v->xcrs);
	snap_put_bytes(w, &v->xcrs, sizeof v->xcrs);
	snap_put_u32(w, v->msr_count);
	for (uint32_t i = 0; i < v->msr_count; i++) {
		snap_put_u32(w, v->msrs[i].index);
		snap_put_u64(w, v->msrs[i].data);
	}
	snap_put_u32(w, v->cpuid_count);
	snap_put_u32(w, sizeof(struct kvm_cpuid_entry2));
	snap_put_bytes(w, v->cpuid, v->cpuid_count * sizeof(struct kvm_cpuid_entry2));
}

static void encode_process(struct snap_writer *w, const struct snap_process *p)
{
	snap_put_string(w, p->root_path);
	snap_put_string(w, p->task_path);
	snap_put_string(w, p->cwd);
	snap_put_string(w, p->exe_path);
	snap_put_u32(w, p->umask);
	snap_put_u64(w, p->tid_address);
	snap_put_u64(w, p->fs_base);
	snap_put_u64(w, p->gs_base);
	snap_put_u64(w, p->signal_mask);
	for (int s = 1; s <= SNAP_SIGNALS; s++) {
		snap_put_u64(w, p->actions[s].handler);
		snap_put_u64(w, p->actions[s].flags);
		snap_put_u64(w, p->actions[s].restorer);
		snap_put_u64(w, p->actions[s].mask);
	}
	for (int i = 0; i < 3; i++)
		snap_put_u64(w, p->altstack[i]);
	snap_put_bytes(w, p->thread_name, sizeof p->thread_name);
}

static void encode_memory(struct snap_writer *w, const struct snap_memory *m)
{
	snap_put_u64(w, m->mem_size);
	snap_put_u64(w, m->brk_start);
	snap_put_u64(w, m->brk_current);
	snap_put_u64(w, m->stack_low);
	snap_put_u64(w, m->stack_top);
	snap_put_u64(w, m->mmap_top);
	snap_put_u32(w, m->region_count);
	for (uint32_t i = 0; i < m->region_count; i++) {
		snap_put_u64(w, m->regions[i].start);
		snap_put_u64(w, m->regions[i].end);
		snap_put_u32(w, m->regions[i].prot);
		snap_put_u32(w, m->regions[i].flags);
	}
}

static void encode_nodes(struct snap_writer *w, const struct snap_state *s)
{
	snap_put_u32(w, s->node_count);
	for (uint32_t i = 0; i < s->node_count; i++) {
		const struct snap_node *n = &s->nodes[i];
		snap_put_u32(w, n->parent);
		snap_put_string(w, n->name);
		snap_put_u8(w, n->is_dir);
		snap_put_u32(w, n->mode);
		snap_put_u64(w, (uint64_t)n->mtime_sec);
		snap_put_u64(w, (uint64_t)n->mtime_nsec);
		snap_put_u64(w, n->size);
		snap_put_bytes(w, n->data, n->size);
	}
}

static void encode_pipes(struct snap_writer *w, const struct snap_state *s)
{
	snap_put_u32(w, s->pipe_count);
	for (uint32_t i = 0; i < s->pipe_count; i++) {
		snap_put_u64(w, s->pipes[i].length);
		snap_put_bytes(w, s->pipes[i].bytes, s->pipes[i].length);
	}
}

static void encode_files(struct snap_writer *w, const struct snap_state *s)
{
	snap_put_u32(w, s->file_count);
	for (uint32_t i = 0; i < s->file_count; i++) {
		const struct snap_file *f = &s->files[i];
		snap_put_u32(w, f->kind);
		snap_put_u32(w, (uint32_t)f->flags);
		snap_put_u64(w, f->offset);
		snap_put_string(w, f->path);
		snap_put_u64(w, f->host_size);
		snap_put_u64(w, (uint64_t)f->host_mtime_sec);
		snap_put_u64(w, (uint64_t)f->host_mtime_nsec);
		snap_put_u32(w, f->stdio_fd);
		snap_put_u32(w, f->node);
		snap_put_u32(w, f->pipe);
		snap_put_u32(w, f->socket_domain);
		snap_put_u32(w, f->socket_type);
		snap_put_u32(w, f->socket_connected);
		snap_put_u64(w, f->data_size);
		snap_put_bytes(w, f->data, f->data_size);
	}
}

static void encode_fds(struct snap_writer *w, const struct snap_state *s)
{
	snap_put_u32(w, s->fd_count);
	for (uint32_t i = 0; i < s->fd_count; i++) {
		snap_put_u32(w, s->fds[i].fd);
		snap_put_u32(w, s->fds[i].file);
		snap_put_u8(w, s->fds[i].cloexec);
	}
}

int snap_state_encode(const struct snap_state *state, uint8_t **out, size_t *length, struct ember_error *err)
{
	struct snap_writer w;
	snap_writer_init(&w);
	uint8_t header[SNAP_HEADER_SIZE] = {0};
	snap_put_bytes(&w, header, sizeof header);
	size_t at;
#define SECTION(type, call)                                                                                  \
	at = snap_begin_section(&w, type);                                                                   \
	call;                                                                                                \
	snap_end_section(&w, at)
	SECTION(SECTION_CPU, encode_cpu(&w, &state->cpu));
	SECTION(SECTION_VCPU, encode_vcpu(&w, &state->vcpu));
	SECTION(SECTION_PROCESS, encode_process(&w, &state->process));
	SECTION(SECTION_MEMORY, encode_memory(&w, &state->memory));
	SECTION(SECTION_TMPFS, encode_nodes(&w, state));
	SECTION(SECTION_PIPES, encode_pipes(&w, state));
	SECTION(SECTION_FILES, encode_files(&w, state));
	SECTION(SECTION_FDS, encode_fds(&w, state));
	SECTION(SECTION_CLOCK, snap_put_u64(&w, (uint64_t)state->monotonic_ns);
		snap_put_u64(&w, (uint64_t)state->realtime_ns));
#undef SECTION
	if (w.failed) {
		snap_writer_free(&w);
		return ember_error_set(err, "encode snapshot state: out of memory");
	}
	struct snap_writer h;
	snap_writer_init(&h);
	snap_put_bytes(&h, SNAP_MAGIC, 8);
	snap_put_u32(&h, SNAP_FORMAT_VERSION);
	snap_put_u32(&h, SNAP_HEADER_SIZE);
	snap_put_u64(&h, w.length - SNAP_HEADER_SIZE);
	snap_put_u32(&h, snap_crc32(0, w.data + SNAP_HEADER_SIZE, w.length - SNAP_HEADER_SIZE));
	snap_put_u32(&h, SECTION_COUNT);
	if (h.failed) {
		snap_writer_free(&w);
		return ember_error_set(err, "encode snapshot state: out of memory");
	}
	memcpy(w.data, h.data, SNAP_HEADER_SIZE);
	snap_writer_free(&h);
	*out = w.data;
	*length = w.length;
	return 0;
}

/* ---- decoding and validation -------------------------------------------- */

static bool canonical(uint64_t addr)
{
	return addr < CANONICAL_LIMIT;
}

/* Absolute, no empty, "." or ".." components, no trailing slash. */
static bool normalized_path(const char *p)
{
	if (p[0] != '/')
		return false;
	if (p[1] == '\0')
		return true;
	const char *c = p + 1;
	for (;;) {
		const char *slash = strchr(c, '/');
		size_t n = slash ? (size_t)(slash - c) : strlen(c);
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		if (!slash)
			return true;
		c = slash + 1;
	}
}

static void decode_cpu(struct snap_reader *r, struct snap_cpu_identity *cpu)
{
	snap_get_bytes(r, cpu->vendor, 12);
	cpu->vendor[12] = '\0';
	cpu->signature = snap_get_u32(r);
	for (int i = 0; i < 6; i++)
		cpu->features[i] = snap_get_u32(r);
	cpu->xcr0 = snap_get_u64(r);
	cpu->kvm_api_version = snap_get_u32(r);
	cpu->stub_user_mode = snap_get_u32(r);
	if (cpu->stub_user_mode > 1)
		snap_reader_fail(r, "stub mode %u", cpu->stub_user_mode);
}

static void get_sized(struct snap_reader *r, void *out, size_t size, const char *what)
{
	uint32_t n = snap_get_u32(r);
	if (!r->failed && n != size) {
		snap_reader_fail(r, "%s record of %u bytes, expected %zu", what, n, size);
		return;
	}
	snap_get_bytes(r, out, size);
}

static bool allowed_msr(uint32_t index)
{
	switch (index) {
	case 0xc0000081: /* STAR */
	case 0xc0000082: /* LSTAR */
	case 0xc0000083: /* CSTAR */
	case 0xc0000084: /* SFMASK */
	case 0xc0000100: /* FS_BASE */
	case 0xc0000101: /* GS_BASE */
	case 0xc0000102: /* KERNEL_GS_BASE */ return true;
	default: return false;
	}
}

static bool valid_segment(const struct kvm_segment *s)
{
	return canonical(s->base);
}

static void decode_vcpu(struct snap_reader *r, struct snap_vcpu *v)
{
	get_sized(r, &v->regs, sizeof v->regs, "register");
	get_sized(r, &v->sregs, sizeof v->sregs, "special register");
	get_sized(r, &v->xsave, sizeof v->xsave, "XSAVE");
	get_sized(r, &v->xcrs, sizeof v->xcrs, "XCR");
	v->msr_count = snap_get_u32(r);
	if (v->msr_count > SNAP_MAX_MSRS) {
		snap_reader_fail(r, "%u MSRs (at most %d)", v->msr_count, SNAP_MAX_MSRS);
		return;
	}
	for (uint32_t i = 0; i < v->msr_count; i++) {
		v->msrs[i].index = snap_get_u32(r);
		v->msrs[i].data = snap_get_u64(r);
		if (!r->failed && !allowed_msr(v->msrs[i].index))
			snap_reader_fail(r, "MSR %#x is not one a snapshot may set", v->msrs[i].index);
		if (!r->failed && v->msrs[i].index != 0xc0000081 && v->msrs[i].index != 0xc0000084 &&
		    !canonical(v->msrs[i].data))
			snap_reader_fail(r, "MSR %#x holds non-canonical address %#llx", v->msrs[i].index,
					 (unsigned long long)v->msrs[i].data);
	}
	v->cpuid_count = snap_get_u32(r);
	uint32_t entry_size = snap_get_u32(r);
	if (r->failed)
		return;
	if (v->cpuid_count > SNAP_MAX_CPUID || entry_size != sizeof(struct kvm_cpuid_entry2)) {
		snap_reader_fail(r, "CPUID table of %u entries of %u bytes", v->cpuid_count, entry_size);
		return;
	}
	snap_get_bytes(r, v->cpuid, v->cpuid_count * sizeof(struct kvm_cpuid_entry2));
	if (r->failed)
		return;
	const struct kvm_regs *g = &v->regs;
	if (!canonical(g->rip) || !canonical(g->rsp))
		snap_reader_fail(r, "register state has a non-canonical address (rip %#llx, rsp %#llx)",
				 (unsigned long long)g->rip, (unsigned long long)g->rsp);
	const struct kvm_sregs *s = &v->sregs;
	if (!valid_segment(&s->fs) || !valid_segment(&s->gs) || !valid_segment(&s->cs) ||
	    !valid_segment(&s->ss) || !valid_segment(&s->ds) || !valid_segment(&s->es) ||
	    !valid_segment(&s->tr) || !canonical(s->gdt.base) || !canonical(s->idt.base))
		snap_reader_fail(r, "segment state has a non-canonical base");
	if (s->cr3 != GUEST_PML4_ADDR || s->gdt.base != GUEST_GDT_ADDR || s->idt.base != GUEST_IDT_ADDR ||
	    s->tr.base != GUEST_TSS_ADDR)
		snap_reader_fail(r, "system registers do not match the Ember guest layout");
	if ((s->cs.selector != GUEST_SEL_USER_CS && s->cs.selector != GUEST_SEL_KERNEL_CS))
		snap_reader_fail(r, "code segment %#x is neither the user nor the kernel one",
				 s->cs.selector);
	if (v->xcrs.nr_xcrs > KVM_MAX_XCRS)
		snap_reader_fail(r, "%u XCRs", v->xcrs.nr_xcrs);
}

static void get_path(struct snap_reader *r, char *out, const char *what, bool may_be_empty)
{
	snap_get_string(r, out, SNAP_PATH_MAX);
	if (r->failed)
		return;
	if (out[0] == '\0' && may_be_empty)
		return;
	if (!normalized_path(out))
		snap_reader_fail(r, "%s `%s` is not an absolute normalized path", what, out);
}

static void decode_process(struct snap_reader *r, struct snap_process *p)
{
	get_path(r, p->root_path, "root layer", false);
	get_path(r, p->task_path, "task layer", true);
	get_path(r, p->cwd, "working directory", false);
	get_path(r, p->exe_path, "program path", false);
	p->umask = snap_get_u32(r);
	p->tid_address = snap_get_u64(r);
	p->fs_base = snap_get_u64(r);
	p->gs_base = snap_get_u64(r);
	p->signal_mask = snap_get_u64(r);
	for (int s = 1; s <= SNAP_SIGNALS; s++) {
		p->actions[s].handler = snap_get_u64(r);
		p->actions[s].flags = snap_get_u64(r);
		p->actions[s].restorer = snap_get_u64(r);
		p->actions[s].mask = snap_get_u64(r);
	}
	for (int i = 0; i < 3; i++)
		p->altstack[i] = snap_get_u64(r);
	snap_get_bytes(r, p->thread_name, sizeof p->thread_name);
	p->thread_name[15] = '\0';
	if (!r->failed && (p->umask > 0777 || !canonical(p->fs_base) || !canonical(p->gs_base)))
		snap_reader_fail(r, "process state out of range (umask %#o)", p->umask);
}

static void decode_memory(struct snap_reader *r, struct snap_memory *m)
{
	m->mem_size = snap_get_u64(r);
	m->brk_start = snap_get_u64(r);
	m->brk_current = snap_get_u64(r);
	m->stack_low = snap_get_u64(r);
	m->stack_top = snap_get_u64(r);
	m->mmap_top = snap_get_u64(r);
	m->region_count = snap_get_u32(r);
	if (r->failed)
		return;
	if (m->mem_size < GUEST_MEM_MIN || m->mem_size > GUEST_MEM_MAX ||
	    m->mem_size % GUEST_LARGE_PAGE_SIZE) {
		snap_reader_fail(r, "guest memory size %#llx is invalid", (unsigned long long)m->mem_size);
		return;
	}
	uint64_t low = GUEST_SYSTEM_END, high = m->mem_size;
	if (m->brk_start < low || m->brk_start > m->brk_current || m->brk_current > high ||
	    m->stack_low < low || m->stack_low > m->stack_top || m->stack_top > high || m->mmap_top < low ||
	    m->mmap_top > high) {
		snap_reader_fail(r, "heap, stack or mmap bounds lie outside guest memory");
		return;
	}
	if (m->region_count > 65530 || (uint64_t)m->region_count * REGION_RECORD_SIZE > snap_remaining(r)) {
		snap_reader_fail(r, "%u memory regions", m->region_count);
		return;
	}
	m->regions = calloc(m->region_count ? m->region_count : 1, sizeof *m->regions);
	if (!m->regions) {
		snap_reader_fail(r, "out of memory for %u regions", m->region_count);
		return;
	}
	uint64_t previous_end = low;
	for (uint32_t i = 0; i < m->region_count && !r->failed; i++) {
		struct snap_region *g = &m->regions[i];
		g->start = snap_get_u64(r);
		g->end = snap_get_u64(r);
		g->prot = snap_get_u32(r);
		g->flags = snap_get_u32(r);
		if (!r->failed && (g->start < previous_end || g->end <= g->start || g->end > high ||
				   (g->start | g->end) % GUEST_PAGE_SIZE))
			snap_reader_fail(r, "memory region %u (%#llx..%#llx) is out of order or range", i,
					 (unsigned long long)g->start, (unsigned long long)g->end);
		previous_end = g->end;
	}
}

/* The (directory, name) pairs seen so far, to refuse a repeated name in
 * linear time: an open-addressing table of node indices. */
struct name_set {
	uint32_t *slots; /* node index + 1; 0 = empty */
	uint32_t mask;
};

static int names_init(struct name_set *set, uint32_t count)
{
	uint32_t size = 16;
	while (size < 2 * count)
		size *= 2;
	set->slots = calloc(size, sizeof *set->slots);
	set->mask = size - 1;
	return set->slots ? 0 : -1;
}

static uint32_t name_hash(uint32_t parent, const char *name)
{
	uint32_t h = 2166136261u ^ parent;
	for (; *name; name++)
		h = (h ^ (uint8_t)*name) * 16777619u;
	return h;
}

/* Adds nodes[i]; false if its directory already holds that name. */
static bool names_insert(struct name_set *set, const struct snap_node *nodes, uint32_t i)
{
	uint32_t at = name_hash(nodes[i].parent, nodes[i].name) & set->mask;
	while (set->slots[at]) {
		const struct snap_node *other = &nodes[set->slots[at] - 1];
		if (other->parent == nodes[i].parent && strcmp(other->name, nodes[i].name) == 0)
			return false;
		at = (at + 1) & set->mask;
	}
	set->slots[at] = i + 1;
	return true;
}

static bool valid_name(const char *name)
{
	return name[0] && strchr(name, '/') == NULL && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static void decode_nodes(struct snap_reader *r, struct snap_state *s)
{
	s->node_count = snap_get_u32(r);
	if (r->failed)
		return;
	if (s->node_count == 0 || s->node_count > SNAP_MAX_NODES ||
	    (uint64_t)s->node_count * NODE_RECORD_MIN > snap_remaining(r)) {
		snap_reader_fail(r, "%u /tmp nodes", s->node_count);
		return;
	}
	s->nodes = calloc(s->node_count, sizeof *s->nodes);
	struct name_set names = {0};
	if (!s->nodes || names_init(&names, s->node_count) < 0) {
		snap_reader_fail(r, "out of memory for %u nodes", s->node_count);
		if (s->nodes)
			free(names.slots); /* NULL-safe: names_init failed or succeeded */
		return;
	}
	uint64_t total = 0;
	for (uint32_t i = 0; i < s->node_count && !r->failed; i++) {
		struct snap_node *n = &s->nodes[i];
		n->parent = snap_get_u32(r);
		snap_get_string(r, n->name, sizeof n->name);
		n->is_dir = snap_get_u8(r) != 0;
		n->mode = snap_get_u32(r);
		n->mtime_sec = (int64_t)snap_get_u64(r);
		n->mtime_nsec = (int64_t)snap_get_u64(r);
		n->size = snap_get_u64(r);
		if (r->failed)
			break;
		if (i == 0 ? (n->parent != SNAP_NODE_ROOT || !n->is_dir)
			   : (n->parent != SNAP_NODE_UNLINKED &&
			      (n->parent >= i || !s->nodes[n->parent].is_dir || !valid_name(n->name)))) {
			snap_reader_fail(r, "/tmp node %u has an invalid parent or name", i);
			break;
		}
		if (i > 0 && n->parent != SNAP_NODE_UNLINKED && !names_insert(&names, s->nodes, i)) {
			snap_reader_fail(r, "/tmp node %u repeats the name `%s`", i, n->name);
			break;
		}
		if (n->mode > 07777 || n->mtime_nsec < 0 || n->mtime_nsec >= 1000000000 ||
		    (n->is_dir && n->size) || n->size > snap_remaining(r) || n->size > GUEST_MEM_MAX) {
			snap_reader_fail(r, "/tmp node %u is out of range", i);
			break;
		}
		total += n->size;
		n->data = snap_get_copy(r, n->size);
	}
	free(names.slots);
	if (!r->failed && total > s->memory.mem_size)
		snap_reader_fail(r, "/tmp holds more bytes than guest memory");
}

static void decode_pipes(struct snap_reader *r, struct snap_state *s)
{
	s->pipe_count = snap_get_u32(r);
	if (r->failed)
		return;
	if (s->pipe_count > SNAP_MAX_PIPES) {
		snap_reader_fail(r, "%u pipes", s->pipe_count);
		return;
	}
	s->pipes = calloc(s->pipe_count ? s->pipe_count : 1, sizeof *s->pipes);
	if (!s->pipes) {
		snap_reader_fail(r, "out of memory for pipes");
		return;
	}
	for (uint32_t i = 0; i < s->pipe_count && !r->failed; i++) {
		struct snap_pipe *p = &s->pipes[i];
		p->length = snap_get_u64(r);
		if (r->failed)
			break;
		if (p->length > 65536) {
			snap_reader_fail(r, "pipe %u buffers %llu bytes", i, (unsigned long long)p->length);
			break;
		}
		p->bytes = snap_get_copy(r, p->length);
	}
}

static void decode_files(struct snap_reader *r, struct snap_state *s)
{
	s->file_count = snap_get_u32(r);
	if (r->failed)
		return;
	if (s->file_count > SNAP_MAX_FILES || (uint64_t)s->file_count * FILE_RECORD_MIN > snap_remaining(r)) {
		snap_reader_fail(r, "%u open files", s->file_count);
		return;
	}
	s->files = calloc(s->file_count ? s->file_count : 1, sizeof *s->files);
	if (!s->files) {
		snap_reader_fail(r, "out of memory for open files");
		return;
	}
	for (uint32_t i = 0; i < s->file_count && !r->failed; i++) {
		struct snap_file *f = &s->files[i];
		f->kind = snap_get_u32(r);
		f->flags = (int32_t)snap_get_u32(r);
		f->offset = snap_get_u64(r);
		snap_get_string(r, f->path, sizeof f->path);
		f->host_size = snap_get_u64(r);
		f->host_mtime_sec = (int64_t)snap_get_u64(r);
		f->host_mtime_nsec = (int64_t)snap_get_u64(r);
		f->stdio_fd = snap_get_u32(r);
		f->node = snap_get_u32(r);
		f->pipe = snap_get_u32(r);
		f->socket_domain = snap_get_u32(r);
		f->socket_type = snap_get_u32(r);
		f->socket_connected = snap_get_u32(r);
		f->data_size = snap_get_u64(r);
		if (r->failed)
			break;
		if (f->path[0] && !normalized_path(f->path)) {
			snap_reader_fail(r,
					 "open file %u: path `%s` is not absolute and normalized (it could "
					 "escape its layer)",
					 i, f->path);
			break;
		}
		if (f->offset > (1ULL << 62) || f->data_size > SNAP_MAX_SYNTHETIC ||
		    f->data_size > snap_remaining(r)) {
			snap_reader_fail(r, "open file %u is out of range", i);
			break;
		}
		bool ok;
		switch (f->kind) {
		case VMM_FILE_HOST:
		case VMM_FILE_HOST_DIR:
			ok = f->path[0] != '\0' && f->host_mtime_nsec >= 0 && f->host_mtime_nsec < 1000000000;
			break;
		case VMM_FILE_STDIO: ok = f->stdio_fd <= 2; break;
		case VMM_FILE_MEMFS:
		case VMM_FILE_MEMFS_DIR:
			ok = f->node < s->node_count &&
			     s->nodes[f->node].is_dir == (f->kind == VMM_FILE_MEMFS_DIR) && f->path[0];
			break;
		case VMM_FILE_PIPE_READ:
		case VMM_FILE_PIPE_WRITE: ok = f->pipe < s->pipe_count; break;
		case VMM_FILE_NULL:
		case VMM_FILE_ZERO:
		case VMM_FILE_RANDOM:
		case VMM_FILE_SYNTHETIC_DIR: ok = true; break;
		case VMM_FILE_SYNTHETIC: ok = true; break;
		case VMM_FILE_SOCKET:
			ok = f->socket_domain < 64 && f->socket_type < 16 && f->socket_connected <= 1 &&
			     (f->socket_connected || f->data_size == 0);
			break;
		default: ok = false;
		}
		if (f->kind != VMM_FILE_SOCKET && f->socket_connected)
			ok = false;
		if (f->data_size && f->kind != VMM_FILE_SOCKET && f->kind != VMM_FILE_SYNTHETIC)
			ok = false;
		if (!ok) {
			snap_reader_fail(r, "open file %u (kind %u) refers to something invalid", i, f->kind);
			break;
		}
		f->data = snap_get_copy(r, f->data_size);
	}
}

static void decode_fds(struct snap_reader *r, struct snap_state *s)
{
	s->fd_count = snap_get_u32(r);
	if (r->failed)
		return;
	if (s->fd_count > VMM_FD_MAX) {
		snap_reader_fail(r, "%u descriptors", s->fd_count);
		return;
	}
	s->fds = calloc(s->fd_count ? s->fd_count : 1, sizeof *s->fds);
	uint8_t *seen = calloc(VMM_FD_MAX, 1);
	uint8_t *used = calloc(s->file_count ? s->file_count : 1, 1);
	if (!s->fds || !seen || !used) {
		snap_reader_fail(r, "out of memory for descriptors");
	}
	for (uint32_t i = 0; i < s->fd_count && !r->failed; i++) {
		s->fds[i].fd = snap_get_u32(r);
		s->fds[i].file = snap_get_u32(r);
		s->fds[i].cloexec = snap_get_u8(r) != 0;
		if (r->failed)
			break;
		if (s->fds[i].fd >= VMM_FD_MAX || seen[s->fds[i].fd] || s->fds[i].file >= s->file_count) {
			snap_reader_fail(r, "descriptor %u is repeated or refers to no open file",
					 s->fds[i].fd);
			break;
		}
		seen[s->fds[i].fd] = 1;
		used[s->fds[i].file] = 1;
	}
	for (uint32_t f = 0; f < s->file_count && !r->failed; f++)
		if (!used[f])
			snap_reader_fail(r, "open file %u has no descriptor", f);
	free(seen);
	free(used);
}

void snap_state_free(struct snap_state *state)
{
	free(state->memory.regions);
	for (uint32_t i = 0; state->nodes && i < state->node_count; i++)
		free(state->nodes[i].data);
	free(state->nodes);
	for (uint32_t i = 0; state->pipes && i < state->pipe_count; i++)
		free(state->pipes[i].bytes);
	free(state->pipes);
	for (uint32_t i = 0; state->files && i < state->file_count; i++)
		free(state->files[i].data);
	free(state->files);
	free(state->fds);
	memset(state, 0, sizeof *state);
}

int snap_state_decode(const uint8_t *bytes, size_t length, struct snap_state *state, struct ember_error *err)
{
	memset(state, 0, sizeof *state);
	struct snap_reader header;
	snap_reader_init(&header, bytes, length);
	char magic[8];
	snap_get_bytes(&header, magic, 8);
	if (header.failed || memcmp(magic, SNAP_MAGIC, 8) != 0)
		return ember_error_set(err, "not an Ember snapshot state file (bad magic)");
	uint32_t version = snap_get_u32(&header);
	uint32_t header_size = snap_get_u32(&header);
	uint64_t body_length = snap_get_u64(&header);
	uint32_t crc = snap_get_u32(&header);
	uint32_t section_count = snap_get_u32(&header);
	if (header.failed)
		return ember_error_set(err, "state file is truncated (%zu bytes)", length);
	if (version != SNAP_FORMAT_VERSION)
		return ember_error_set(err, "snapshot format version %u; this ember-vmm reads version %u",
				       version, SNAP_FORMAT_VERSION);
	if (header_size != SNAP_HEADER_SIZE)
		return ember_error_set(err, "state file header of %u bytes, expected %d", header_size,
				       SNAP_HEADER_SIZE);
	if (body_length != length - SNAP_HEADER_SIZE)
		return ember_error_set(err,
				       "state file is truncated or has trailing bytes (body %llu bytes, "
				       "file %zu)",
				       (unsigned long long)body_length, length);
	if (snap_crc32(0, bytes + SNAP_HEADER_SIZE, (size_t)body_length) != crc)
		return ember_error_set(err, "state file checksum mismatch: the file is corrupt");
	if (section_count != SECTION_COUNT)
		return ember_error_set(err, "state file has %u sections, expected %d", section_count,
				       SECTION_COUNT);

	struct snap_reader body;
	snap_reader_init(&body, bytes + SNAP_HEADER_SIZE, (size_t)body_length);
	for (uint32_t expected = 1; expected <= SECTION_COUNT; expected++) {
		uint32_t type = snap_get_u32(&body);
		uint32_t reserved = snap_get_u32(&body);
		uint64_t section_length = snap_get_u64(&body);
		if (body.failed) {
			ember_error_set(err, "section table is truncated");
			goto fail;
		}
		if (type != expected || reserved != 0) {
			ember_error_set(err, "section %u has type %u, expected %u (%s)", expected, type,
					expected, section_names[expected]);
			goto fail;
		}
		const uint8_t *payload = snap_get_span(&body, section_length);
		if (!payload) {
			ember_error_set(err, "section `%s` of %llu bytes runs past the end of the file",
					section_names[type], (unsigned long long)section_length);
			goto fail;
		}
		struct snap_reader r;
		snap_reader_init(&r, payload, (size_t)section_length);
		switch (type) {
		case SECTION_CPU: decode_cpu(&r, &state->cpu); break;
		case SECTION_VCPU: decode_vcpu(&r, &state->vcpu); break;
		case SECTION_PROCESS: decode_process(&r, &state->process); break;
		case SECTION_MEMORY: decode_memory(&r, &state->memory); break;
		case SECTION_TMPFS: decode_nodes(&r, state); break;
		case SECTION_PIPES: decode_pipes(&r, state); break;
		case SECTION_FILES: decode_files(&r, state); break;
		case SECTION_FDS: decode_fds(&r, state); break;
		case SECTION_CLOCK:
			state->monotonic_ns = (int64_t)snap_get_u64(&r);
			state->realtime_ns = (int64_t)snap_get_u64(&r);
			if (!r.failed && (state->monotonic_ns < 0 || state->realtime_ns < 0 ||
					  state->monotonic_ns > SNAP_CLOCK_MAX_NS ||
					  state->realtime_ns > SNAP_CLOCK_MAX_NS))
				snap_reader_fail(&r, "clock out of range (monotonic %lld, realtime %lld)",
						 (long long)state->monotonic_ns,
						 (long long)state->realtime_ns);
			break;
		}
		if (!r.failed && snap_remaining(&r) != 0)
			snap_reader_fail(&r, "%zu unread bytes at the end", snap_remaining(&r));
		if (r.failed) {
			ember_error_set(err, "section `%s`: %s", section_names[type], r.problem);
			goto fail;
		}
	}
	if (snap_remaining(&body) != 0) {
		ember_error_set(err, "%zu bytes after the last section", snap_remaining(&body));
		goto fail;
	}
	/* Cross-section checks. */
	for (uint32_t p = 0; p < state->pipe_count; p++) {
		bool used = false;
		for (uint32_t f = 0; f < state->file_count && !used; f++)
			used = (state->files[f].kind == VMM_FILE_PIPE_READ ||
				state->files[f].kind == VMM_FILE_PIPE_WRITE) &&
			       state->files[f].pipe == p;
		if (!used) {
			ember_error_set(err, "pipe %u has no open end", p);
			goto fail;
		}
	}
	if (state->vcpu.regs.rip >= state->memory.mem_size || state->vcpu.regs.rsp > state->memory.mem_size) {
		ember_error_set(err, "instruction or stack pointer lies outside guest memory");
		goto fail;
	}
	return 0;
fail:
	snap_state_free(state);
	return -1;
}

void snap_cpu_identify(struct snap_cpu_identity *cpu)
{
	memset(cpu, 0, sizeof *cpu);
	unsigned a, b, c, d;
	__cpuid(0, a, b, c, d);
	memcpy(cpu->vendor, &b, 4);
	memcpy(cpu->vendor + 4, &d, 4);
	memcpy(cpu->vendor + 8, &c, 4);
	__cpuid(1, a, b, c, d);
	cpu->signature = a;
	cpu->features[0] = c & ~(1u << 27); /* OSXSAVE mirrors CR4, not the CPU */
	cpu->features[1] = d;
	__cpuid_count(7, 0, a, b, c, d);
	cpu->features[2] = b;
	cpu->features[3] = c & ~(1u << 4); /* OSPKE mirrors CR4 too */
	cpu->features[4] = d;
	__cpuid(0x80000001, a, b, c, d);
	cpu->features[5] = c;
	uint32_t lo = 0, hi = 0;
	if (cpu->features[0] & (1u << 26))
		__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	cpu->xcr0 = ((uint64_t)hi << 32) | lo;
	cpu->kvm_api_version = KVM_API_VERSION;
}

int snap_cpu_check(const struct snap_cpu_identity *saved, struct ember_error *err)
{
	struct snap_cpu_identity here;
	snap_cpu_identify(&here);
	if (strcmp(saved->vendor, here.vendor) != 0 || saved->signature != here.signature)
		return ember_error_set(err,
				       "snapshot was taken on a %s CPU with signature %#x; this host has "
				       "a %s CPU with signature %#x",
				       saved->vendor, saved->signature, here.vendor, here.signature);
	for (int i = 0; i < 6; i++)
		if (saved->features[i] != here.features[i])
			return ember_error_set(err,
					       "snapshot needs CPU feature word %d = %#x; this host has %#x",
					       i, saved->features[i], here.features[i]);
	if (saved->xcr0 != here.xcr0)
		return ember_error_set(err, "snapshot needs XCR0 %#llx; this host has %#llx",
				       (unsigned long long)saved->xcr0, (unsigned long long)here.xcr0);
	if (saved->kvm_api_version != here.kvm_api_version)
		return ember_error_set(err, "snapshot needs KVM API %u; this host has %u",
				       saved->kvm_api_version, here.kvm_api_version);
	return 0;
}

int snap_state_load(const char *path, struct snap_state *state, struct ember_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ember_error_errno(err, errno, "open `%s`", path);
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > SNAP_STATE_MAX_BYTES) {
		close(fd);
		return ember_error_set(err, "`%s` is not a regular file of at most %llu bytes", path,
				       (unsigned long long)SNAP_STATE_MAX_BYTES);
	}
	size_t length = (size_t)st.st_size;
	uint8_t *bytes = malloc(length ? length : 1);
	if (!bytes) {
		close(fd);
		return ember_error_set(err, "read `%s`: out of memory", path);
	}
	size_t done = 0;
	while (done < length) {
		ssize_t n = read(fd, bytes + done, length - done);
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			free(bytes);
			close(fd);
			return ember_error_errno(err, e, "read `%s`", path);
		}
		done += (size_t)n;
	}
	close(fd);
	int rc = snap_state_decode(bytes, length, state, err);
	free(bytes);
	if (rc < 0)
		return ember_error_wrap(err, "`%s`", path);
	return 0;
}
