/* Guest test of the memory system calls: anonymous and file mmap, munmap,
 * mremap, brk, madvise, mprotect, and the memory cap — mappings and /tmp
 * bytes together never exceed guest memory, and nothing can be mapped
 * outside it or over the VMM's system pages.  The cap test fills guest
 * memory, frees it, then fills /tmp, so the suite can also check that the
 * VMM's host RSS stays near guest memory.
 *
 * Usage: memory MEM_MIB — the --mem the VM was started with (default 128).
 * Reads /var/task/hello.txt ("hello task\n") for the file mapping. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest_test.h"

#define MIB (1024UL * 1024UL)
#define PAGE 4096UL

static int all_bytes(const unsigned char *p, size_t len, unsigned char value)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != value)
			return 0;
	return 1;
}

static int is_err(long ret)
{
	return ret < 0 && ret > -4096;
}

static void test_anonymous(void)
{
	long r = sys(SYS_mmap, 0, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_OK("mmap: anonymous 1 MiB", r);
	if (is_err(r))
		return;
	unsigned char *p = (unsigned char *)r;
	CHECK("mmap: page aligned", ((unsigned long)p & (PAGE - 1)) == 0);
	CHECK("mmap: reads as zero", all_bytes(p, MIB, 0));
	memset(p, 0xab, MIB);
	CHECK("mmap: writable", all_bytes(p, MIB, 0xab));

	long r2 = sys(SYS_mmap, 0, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	CHECKF("mmap: second mapping does not overlap",
	       !is_err(r2) && ((unsigned long)r2 + 3 * PAGE <= (unsigned long)p ||
			       (unsigned long)r2 >= (unsigned long)p + MIB),
	       "got %#lx, first at %p", r2, (void *)p);

	/* madvise(MADV_DONTNEED) on a private anonymous mapping zeroes it. */
	CHECK_OK("madvise: DONTNEED", sys(SYS_madvise, p + PAGE, 2 * PAGE, MADV_DONTNEED));
	CHECK("madvise: DONTNEED range reads zero", all_bytes(p + PAGE, 2 * PAGE, 0));
	CHECK("madvise: rest untouched", all_bytes(p, PAGE, 0xab) && all_bytes(p + 3 * PAGE, PAGE, 0xab));
	CHECK_OK("madvise: WILLNEED", sys(SYS_madvise, p, PAGE, MADV_WILLNEED));
	CHECK_OK("madvise: NORMAL", sys(SYS_madvise, p, PAGE, MADV_NORMAL));
	CHECK_ERR("madvise: unaligned EINVAL", sys(SYS_madvise, p + 1, PAGE, MADV_DONTNEED), EINVAL);
	CHECK_ERR("madvise: bad advice EINVAL", sys(SYS_madvise, p, PAGE, 12345), EINVAL);

	/* mprotect is accepted on mapped ranges (Ember's pages stay RWX). */
	CHECK_OK("mprotect: read-only", sys(SYS_mprotect, p, PAGE, PROT_READ));
	CHECK_OK("mprotect: back to read-write", sys(SYS_mprotect, p, PAGE, PROT_READ | PROT_WRITE));
	CHECK_OK("mprotect: none", sys(SYS_mprotect, p + PAGE, PAGE, PROT_NONE));
	CHECK_ERR("mprotect: unaligned EINVAL", sys(SYS_mprotect, p + 1, PAGE, PROT_READ), EINVAL);
	CHECK_ERR("mprotect: bad prot EINVAL", sys(SYS_mprotect, p, PAGE, 0x100), EINVAL);
	CHECK_ERR_ANY("mprotect: outside guest memory",
		      sys(SYS_mprotect, GT_OUTSIDE, PAGE, PROT_READ), ENOMEM, EINVAL, EFAULT);

	/* munmap, and a fresh mapping at the same place reads zero again. */
	CHECK_OK("munmap: whole mapping", sys(SYS_munmap, p, MIB));
	long again = sys(SYS_mmap, p, MIB, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	CHECK_EQ("mmap: MAP_FIXED at the freed place", again, (long)p);
	CHECK("mmap: remapped memory reads zero", !is_err(again) && all_bytes(p, MIB, 0));
	CHECK_OK("munmap: again", sys(SYS_munmap, p, MIB));
	CHECK_OK("munmap: unmapped range is fine", sys(SYS_munmap, p, MIB));
	CHECK_ERR("munmap: unaligned EINVAL", sys(SYS_munmap, (char *)r2 + 1, PAGE), EINVAL);
	CHECK_ERR("munmap: zero length EINVAL", sys(SYS_munmap, r2, 0), EINVAL);
	CHECK_OK("munmap: second mapping", sys(SYS_munmap, r2, 3 * PAGE));

	CHECK_ERR("mmap: zero length EINVAL",
		  sys(SYS_mmap, 0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), EINVAL);
	CHECK_ERR("mmap: neither private nor shared EINVAL",
		  sys(SYS_mmap, 0, PAGE, PROT_READ, MAP_ANONYMOUS, -1, 0), EINVAL);
	CHECK_ERR("mmap: unaligned offset EINVAL",
		  sys(SYS_mmap, 0, PAGE, PROT_READ, MAP_PRIVATE, 0, 1), EINVAL);
	CHECK_ERR("mmap: bad fd EBADF", sys(SYS_mmap, 0, PAGE, PROT_READ, MAP_PRIVATE, 999, 0), EBADF);
	CHECK_ERR("mmap: MAP_FIXED unaligned EINVAL",
		  sys(SYS_mmap, 0x400001, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		      -1, 0),
		  EINVAL);
}

static void test_file_mapping(void)
{
	long fd = sys(SYS_open, "/var/task/hello.txt", O_RDONLY);
	CHECK_OK("mmap file: open", fd);
	long r = sys(SYS_mmap, 0, PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
	CHECK_OK("mmap file: private read-only", r);
	if (!is_err(r)) {
		const char *m = (const char *)r;
		CHECK("mmap file: content", memcmp(m, "hello task\n", 11) == 0);
		CHECK("mmap file: zero past EOF", all_bytes((const unsigned char *)m + 11, PAGE - 11, 0));
		sys(SYS_munmap, r, PAGE);
	}
	r = sys(SYS_mmap, 0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK_OK("mmap file: private writable copy", r);
	if (!is_err(r)) {
		char *m = (char *)r;
		m[0] = 'J';
		CHECK("mmap file: private copy is writable", m[0] == 'J' && m[1] == 'e');
		sys(SYS_munmap, r, 2 * PAGE);
	}
	char c = 0;
	CHECK_EQ("mmap file: file unchanged", sys(SYS_pread64, fd, &c, 1, 0), 1);
	CHECK("mmap file: first byte still h", c == 'h');
	CHECK_ERR_ANY("mmap file: shared writable on read-only file",
		      sys(SYS_mmap, 0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), EACCES,
		      EPERM, EROFS);
	sys(SYS_close, fd);
	fd = sys(SYS_open, "/var/task", O_RDONLY | O_DIRECTORY);
	CHECK_ERR_ANY("mmap file: a directory", sys(SYS_mmap, 0, PAGE, PROT_READ, MAP_PRIVATE, fd, 0),
		      ENODEV, EACCES, EINVAL);
	sys(SYS_close, fd);
}

static void test_mremap(void)
{
	long r = sys(SYS_mmap, 0, 2 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_OK("mremap: setup", r);
	if (is_err(r))
		return;
	unsigned char *p = (unsigned char *)r;
	memset(p, 0x5a, 2 * MIB);

	long g = sys(SYS_mremap, p, 2 * MIB, 8 * MIB, MREMAP_MAYMOVE);
	CHECK_OK("mremap: grow with MAYMOVE", g);
	if (is_err(g))
		return;
	unsigned char *q = (unsigned char *)g;
	CHECK("mremap: old bytes kept", all_bytes(q, 2 * MIB, 0x5a));
	CHECK("mremap: new part reads zero", all_bytes(q + 2 * MIB, 6 * MIB, 0));
	memset(q, 0x11, 8 * MIB);

	long s = sys(SYS_mremap, q, 8 * MIB, 4 * MIB, 0);
	CHECK_EQ("mremap: shrink in place", s, (long)q);
	CHECK("mremap: shrunk bytes kept", all_bytes(q, 4 * MIB, 0x11));

	/* Growing in place over a neighbour without MAYMOVE fails. */
	CHECK_ERR("mremap: grow over own tail without MAYMOVE",
		  sys(SYS_mremap, q, MIB, 2 * MIB, 0), ENOMEM);

	/* MREMAP_FIXED moves to a chosen free place. */
	long target = sys(SYS_mmap, 0, 4 * MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_OK("mremap: reserve target", target);
	long m = sys(SYS_mremap, q, 4 * MIB, 4 * MIB, MREMAP_MAYMOVE | MREMAP_FIXED, target);
	CHECK_EQ("mremap: MREMAP_FIXED moves to target", m, target);
	CHECK("mremap: moved bytes kept", !is_err(m) && all_bytes((unsigned char *)m, 4 * MIB, 0x11));

	CHECK_ERR("mremap: unaligned old address EINVAL",
		  sys(SYS_mremap, (char *)m + 1, PAGE, 2 * PAGE, MREMAP_MAYMOVE), EINVAL);
	CHECK_ERR("mremap: zero new size EINVAL", sys(SYS_mremap, m, PAGE, 0, MREMAP_MAYMOVE),
		  EINVAL);
	CHECK_ERR("mremap: bad flags EINVAL", sys(SYS_mremap, m, PAGE, 2 * PAGE, 0x80), EINVAL);
	CHECK_ERR("mremap: FIXED without MAYMOVE EINVAL",
		  sys(SYS_mremap, m, PAGE, PAGE, MREMAP_FIXED, target), EINVAL);
	CHECK_ERR_ANY("mremap: unmapped old range",
		      sys(SYS_mremap, GT_OUTSIDE, PAGE, 2 * PAGE, MREMAP_MAYMOVE), EFAULT, EINVAL,
		      ENOMEM);
	CHECK_ERR_ANY("mremap: grow to 2^63",
		      sys(SYS_mremap, m, PAGE, 1UL << 63, MREMAP_MAYMOVE), ENOMEM, EINVAL, EINVAL);
	CHECK_OK("mremap: cleanup", sys(SYS_munmap, m, 4 * MIB));
}

static void test_brk(void)
{
	unsigned long cur = (unsigned long)sys(SYS_brk, 0);
	CHECK("brk: query is non-zero", cur != 0);
	unsigned long start = (cur + PAGE - 1) & ~(PAGE - 1);
	unsigned long grown = (unsigned long)sys(SYS_brk, start + MIB);
	CHECK_EQ("brk: grow 1 MiB", grown, start + MIB);
	unsigned char *heap = (unsigned char *)start;
	CHECK("brk: new heap reads zero", grown == start + MIB && all_bytes(heap, MIB, 0));
	if (grown == start + MIB)
		memset(heap, 0x77, MIB);
	CHECK_EQ("brk: shrink", sys(SYS_brk, start + PAGE), start + PAGE);
	CHECK_EQ("brk: query after shrink", sys(SYS_brk, 0), start + PAGE);
	CHECK_EQ("brk: grow again", sys(SYS_brk, start + MIB), start + MIB);
	CHECK("brk: regrown pages read zero", all_bytes(heap + 2 * PAGE, MIB - 2 * PAGE, 0));
	CHECK_EQ("brk: huge request fails, break unchanged", sys(SYS_brk, 1UL << 46), start + MIB);
	CHECK_EQ("brk: wrap-around request fails", sys(SYS_brk, ~0UL), start + MIB);
	CHECK_EQ("brk: below start fails", sys(SYS_brk, 0x1000), start + MIB);
	CHECK_EQ("brk: restore", sys(SYS_brk, cur), cur);
}

static void test_cap(unsigned long mem)
{
	/* One mapping larger than guest memory. */
	CHECK_ERR("cap: mmap larger than guest memory ENOMEM",
		  sys(SYS_mmap, 0, mem + MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0),
		  ENOMEM);
	CHECK_ERR("cap: mmap 2^63 ENOMEM",
		  sys(SYS_mmap, 0, 1UL << 63, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), ENOMEM);
	CHECK_ERR("cap: mmap length that wraps ENOMEM",
		  sys(SYS_mmap, 0, ~0UL - 100, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), ENOMEM);

	/* Many 1 MiB mappings: they stop with ENOMEM before guest memory runs
	 * out, every one is usable, and freeing them gives the memory back. */
	static long maps[65536];
	unsigned long count = 0;
	long last = 0;
	while (count < sizeof maps / sizeof maps[0]) {
		last = sys(SYS_mmap, 0, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			   -1, 0);
		if (is_err(last))
			break;
		memset((void *)last, 1, MIB); /* really use it: the host RSS must follow */
		maps[count++] = last;
	}
	CHECK_ERR("cap: repeated mmap ends with ENOMEM", last, ENOMEM);
	CHECKF("cap: mapped total within guest memory", count * MIB <= mem,
	       "mapped %lu MiB of %lu MiB", count, mem / MIB);
	CHECKF("cap: most of guest memory was mappable", count * MIB >= mem / 2,
	       "mapped only %lu MiB of %lu MiB", count, mem / MIB);
	long b = sys(SYS_brk, 0);
	CHECK_EQ("cap: brk cannot grow when memory is full", sys(SYS_brk, b + 4 * MIB), b);
	for (unsigned long i = 0; i < count; i++)
		sys(SYS_munmap, maps[i], MIB);
	long big = sys(SYS_mmap, 0, mem / 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	CHECK_OK("cap: memory is back after munmap", big);
	if (!is_err(big))
		sys(SYS_munmap, big, mem / 4);

	/* /tmp bytes count against the same cap. */
	long fd = sys(SYS_open, "/tmp/fill", O_CREAT | O_WRONLY | O_TRUNC, 0600);
	CHECK_OK("cap: create /tmp file", fd);
	static char chunk[MIB];
	memset(chunk, 'f', sizeof chunk);
	unsigned long written = 0;
	long w = 0;
	while (written <= 2 * mem) {
		w = sys(SYS_write, fd, chunk, sizeof chunk);
		if (w <= 0)
			break;
		written += (unsigned long)w;
	}
	CHECK_ERR_ANY("cap: filling /tmp ends with ENOSPC", w, ENOSPC, ENOMEM, EFBIG);
	CHECKF("cap: /tmp total within guest memory", written <= mem, "wrote %lu MiB of %lu MiB",
	       written / MIB, mem / MIB);
	CHECK_ERR("cap: mmap while /tmp is full ENOMEM",
		  sys(SYS_mmap, 0, mem / 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0),
		  ENOMEM);
	sys(SYS_close, fd);
	CHECK_OK("cap: unlink /tmp file", sys(SYS_unlink, "/tmp/fill"));
	big = sys(SYS_mmap, 0, mem / 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_OK("cap: memory is back after unlink", big);
	if (!is_err(big))
		sys(SYS_munmap, big, mem / 4);
}

static void test_outside(unsigned long mem)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
	long r;

	r = sys(SYS_mmap, GT_OUTSIDE, PAGE, PROT_READ | PROT_WRITE, flags, -1, 0);
	CHECKF("fixed: far outside guest memory fails", is_err(r), "got %#lx", r);
	r = sys(SYS_mmap, mem, PAGE, PROT_READ | PROT_WRITE, flags, -1, 0);
	CHECKF("fixed: just past guest memory fails", is_err(r), "got %#lx", r);
	r = sys(SYS_mmap, mem - PAGE, 2 * PAGE, PROT_READ | PROT_WRITE, flags, -1, 0);
	CHECKF("fixed: straddling the end fails", is_err(r), "got %#lx", r);
	r = sys(SYS_mmap, GT_PAGE_TABLES, PAGE, PROT_READ | PROT_WRITE, flags, -1, 0);
	CHECKF("fixed: over the page tables fails", is_err(r), "got %#lx", r);
	r = sys(SYS_mmap, GT_STUB_PAGE, PAGE, PROT_READ | PROT_WRITE, flags, -1, 0);
	CHECKF("fixed: over the system-call stub fails", is_err(r), "got %#lx", r);
	r = sys(SYS_mmap, 0, PAGE, PROT_READ | PROT_WRITE, flags, -1, 0);
	CHECKF("fixed: at address zero fails", is_err(r), "got %#lx", r);
	r = sys(SYS_mmap, GT_NONCANONICAL, PAGE, PROT_READ | PROT_WRITE, flags, -1, 0);
	CHECKF("fixed: non-canonical address fails", is_err(r), "got %#lx", r);
	r = sys(SYS_mmap, 0x400000, ~0UL & ~(PAGE - 1), PROT_READ, flags, -1, 0);
	CHECKF("fixed: length that wraps fails", is_err(r), "got %#lx", r);
	/* The stub still works: this very call goes through it. */
	CHECK_EQ("fixed: system calls still work", sys(SYS_getpid), getpid());

	/* A hint outside guest memory is only a hint. */
	r = sys(SYS_mmap, GT_OUTSIDE, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		0);
	CHECKF("hint: outside hint gives memory inside", !is_err(r) && (unsigned long)r < mem,
	       "got %#lx", r);
	if (!is_err(r)) {
		*(volatile char *)r = 1;
		sys(SYS_munmap, r, PAGE);
	}
	r = sys(SYS_mmap, 0x1000, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECKF("hint: system-page hint gives program memory",
	       !is_err(r) && (unsigned long)r >= 0x200000 && (unsigned long)r < mem, "got %#lx", r);
	if (!is_err(r))
		sys(SYS_munmap, r, PAGE);

	/* Linux answers 0 for unmapping nothing; Ember may say EINVAL.  Either
	 * way the system pages must survive. */
	r = sys(SYS_munmap, GT_OUTSIDE, PAGE);
	CHECKF("munmap: outside guest memory", r == 0 || r == -EINVAL, "got %ld", r);
	r = sys(SYS_munmap, 0, 0x200000);
	CHECKF("munmap: the system pages", r == 0 || r == -EINVAL, "got %ld", r);
	CHECK_EQ("munmap: system calls still work", sys(SYS_getpid), getpid());
	CHECK_ERR_ANY("madvise: DONTNEED on the stub page",
		      sys(SYS_madvise, GT_STUB_PAGE, PAGE, MADV_DONTNEED), EINVAL, ENOMEM, EPERM);
	CHECK_EQ("madvise: system calls still work", sys(SYS_getpid), getpid());
	CHECK_ERR_ANY("mprotect: the stub page",
		      sys(SYS_mprotect, GT_STUB_PAGE, PAGE, PROT_READ | PROT_WRITE), ENOMEM, EINVAL,
		      EACCES);
}

int main(int argc, char **argv)
{
	unsigned long mem = (argc > 1 ? strtoul(argv[1], NULL, 10) : 128) * MIB;
	test_anonymous();
	test_file_mapping();
	test_mremap();
	test_brk();
	test_outside(mem);
	test_cap(mem);
	return gt_done();
}
