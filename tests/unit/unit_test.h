/* The few helpers every host-side unit test of the VMM shares: one line per
 * check ("PASS name" or "FAIL name: detail"), a failure count for the exit
 * status, and a fake `struct vmm_vm` whose guest memory is a plain host
 * mapping, so modules that only need guest memory run without a platform.
 * Header-only: each test is one translation unit plus the modules it tests. */
#ifndef EMBER_UNIT_TEST_H
#define EMBER_UNIT_TEST_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "vm.h"

static int unit_failures;

/* Prints PASS name, or FAIL name: detail.  Returns passed. */
static inline int unit_check(int passed, const char *name, const char *detail_format, ...)
	__attribute__((format(printf, 3, 4)));
static inline int unit_check(int passed, const char *name, const char *detail_format, ...)
{
	if (passed) {
		printf("PASS %s\n", name);
		return 1;
	}
	va_list arguments;
	va_start(arguments, detail_format);
	printf("FAIL %s: ", name);
	vprintf(detail_format, arguments);
	printf("\n");
	va_end(arguments);
	fflush(stdout);
	unit_failures++;
	return 0;
}

/* Checks an integer result against its expected value. */
#define UNIT_EXPECT_EQ(name, actual, expected)                                                  \
	do {                                                                                    \
		long long unit_actual_ = (long long)(actual);                                   \
		long long unit_expected_ = (long long)(expected);                               \
		unit_check(unit_actual_ == unit_expected_, (name), "%s = %lld, expected %lld", \
			   #actual, unit_actual_, unit_expected_);                              \
	} while (0)

/* A VM with `mem_size` bytes of host-backed guest memory and no KVM behind
 * it.  Returns 0, or -1 when the mapping fails. */
static inline int unit_fake_vm(struct vmm_vm *vm, uint64_t mem_size)
{
	memset(vm, 0, sizeof *vm);
	void *mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		return -1;
	vm->direct = mem;
	vm->mem_size = mem_size;
	return 0;
}

static inline void unit_fake_vm_free(struct vmm_vm *vm)
{
	if (vm->direct)
		munmap(vm->direct, vm->mem_size);
	vm->direct = NULL;
}

/* The exit status: 0 when every check passed. */
static inline int unit_exit_status(void)
{
	return unit_failures ? 1 : 0;
}

#endif
