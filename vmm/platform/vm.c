/* The platform-neutral part of vm.h and platform.h: checked guest-memory
 * access on top of whichever platform runs the VM, and the choice of
 * platform. */
#include "vm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "guest_layout.h"
#include "platform.h"

int vmm_mem_in_program(const struct vmm_vm *vm, uint64_t addr, uint64_t len)
{
	return addr >= GUEST_SYSTEM_END && addr <= vm->mem_size && len <= vm->mem_size - addr;
}

static bool in_range(const struct vmm_vm *vm, uint64_t addr, uint64_t len, bool system)
{
	if (!system && addr < GUEST_SYSTEM_END)
		return false;
	return addr <= vm->mem_size && len <= vm->mem_size - addr;
}

int vmm_mem_read(struct vmm_vm *vm, uint64_t addr, void *dst, size_t len, bool system)
{
	if (!in_range(vm, addr, len, system))
		return -EFAULT;
	if (len == 0)
		return 0;
	if (vm->direct) {
		memcpy(dst, vm->direct + addr, len);
		return 0;
	}
	return vm->platform->read(vm, addr, dst, len);
}

int vmm_mem_write(struct vmm_vm *vm, uint64_t addr, const void *src, size_t len, bool system)
{
	if (!in_range(vm, addr, len, system))
		return -EFAULT;
	if (len == 0)
		return 0;
	if (vm->direct) {
		memcpy(vm->direct + addr, src, len);
		return 0;
	}
	return vm->platform->write(vm, addr, src, len);
}

void vmm_mem_discard(struct vmm_vm *vm, uint64_t addr, uint64_t len)
{
	if (!len || !vmm_mem_in_program(vm, addr, len))
		return;
	if (vm->direct)
		madvise(vm->direct + addr, len, MADV_DONTNEED); /* a private mapping: reads zero again */
	else
		vm->platform->discard(vm, addr, len);
}

void *vmm_mem_direct(struct vmm_vm *vm, uint64_t addr, uint64_t len)
{
	if (!vm->direct || !vmm_mem_in_program(vm, addr, len))
		return NULL;
	return vm->direct + addr;
}

int vmm_vm_create(struct vmm_vm *vm, const struct vmm_platform *platform, uint64_t mem_size,
		  const void *vdso, size_t vdso_size, struct ember_error *err)
{
	memset(vm, 0, sizeof *vm);
	if (mem_size < GUEST_MEM_MIN || mem_size > GUEST_MEM_MAX)
		return ember_error_set(err, "guest memory of %llu MiB is outside 16 MiB..16 GiB",
				       (unsigned long long)(mem_size >> 20));
	if (vdso_size > GUEST_VDSO_MAX_SIZE)
		return ember_error_set(err, "vDSO image of %zu bytes exceeds its %llu-byte slot", vdso_size,
				       GUEST_VDSO_MAX_SIZE);
	vm->platform = platform;
	vm->mem_size = (mem_size + GUEST_LARGE_PAGE_SIZE - 1) & ~(GUEST_LARGE_PAGE_SIZE - 1);
	if (platform->create(vm, vdso, vdso_size, err) < 0) {
		memset(vm, 0, sizeof *vm);
		return -1;
	}
	return 0;
}

int vmm_vm_restore(struct vmm_vm *vm, const struct vmm_platform *platform, int mem_fd, uint64_t mem_size,
		   const struct snap_vcpu *state, struct ember_error *err)
{
	memset(vm, 0, sizeof *vm);
	vm->platform = platform;
	vm->mem_size = mem_size;
	if (platform->restore(vm, mem_fd, state, err) < 0) {
		memset(vm, 0, sizeof *vm);
		return -1;
	}
	return 0;
}

void vmm_vm_destroy(struct vmm_vm *vm)
{
	if (vm->platform)
		vm->platform->destroy(vm);
	vm->impl = NULL;
	vm->direct = NULL;
	vm->vvar = NULL;
}

static struct vmm_vm *volatile running_vm;

void vmm_platform_set_running(struct vmm_vm *vm)
{
	running_vm = vm;
}

void vmm_platform_interrupt_running(void)
{
	struct vmm_vm *vm = running_vm;
	if (vm && vm->platform)
		vm->platform->interrupt(vm);
}

void vmm_format_registers(const struct vmm_regs *r, uint64_t rip, uint64_t rsp, char *out, size_t size)
{
	snprintf(out, size,
		 "rip=%#llx rsp=%#llx rax=%#llx rbx=%#llx rcx=%#llx rdx=%#llx rsi=%#llx rdi=%#llx "
		 "rbp=%#llx r8=%#llx r9=%#llx r10=%#llx r11=%#llx r12=%#llx r13=%#llx r14=%#llx r15=%#llx",
		 (unsigned long long)rip, (unsigned long long)rsp, (unsigned long long)r->rax,
		 (unsigned long long)r->rbx, (unsigned long long)r->rcx, (unsigned long long)r->rdx,
		 (unsigned long long)r->rsi, (unsigned long long)r->rdi, (unsigned long long)r->rbp,
		 (unsigned long long)r->r8, (unsigned long long)r->r9, (unsigned long long)r->r10,
		 (unsigned long long)r->r11, (unsigned long long)r->r12, (unsigned long long)r->r13,
		 (unsigned long long)r->r14, (unsigned long long)r->r15);
}
