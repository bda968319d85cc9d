/* Loads a Linux x86-64 ELF program into a guest and lays out its initial
 * stack as Linux does.
 *
 * Static and dynamic executables, PIE and fixed-address, are accepted; a
 * dynamic one also gets its interpreter (PT_INTERP, looked up in the guest's
 * root layer).  Files are hostile input: every header field is checked
 * before use, and a malformed ELF is refused with a clear error before the
 * guest runs. */
#ifndef VMM_ELF_LOADER_H
#define VMM_ELF_LOADER_H

#include <stdint.h>

#include "error.h"

struct vmm_process;

struct vmm_exec_image {
	uint64_t entry;         /* where the vCPU starts: the interpreter's entry if any */
	uint64_t program_entry; /* AT_ENTRY */
	uint64_t phdr_addr;     /* AT_PHDR */
	uint64_t phnum;         /* AT_PHNUM */
	uint64_t interp_base;   /* AT_BASE, 0 without an interpreter */
	uint64_t program_end;   /* end of the program's highest segment (brk starts here) */
};

/* Loads the program at guest path `path` (and its interpreter) into the
 * process's memory.  Returns 0, or -1 with `err` naming the file and flaw. */
int vmm_elf_load(struct vmm_process *process, const char *path, struct vmm_exec_image *image,
		 struct ember_error *err);

/* Builds the initial stack (strings, AT_RANDOM, auxv, envp, argv, argc)
 * and returns the initial stack pointer in *rsp. */
int vmm_stack_setup(struct vmm_process *process, const struct vmm_exec_image *image, int argc,
		    char *const argv[], int envc, char *const envp[], const char *execfn, uint64_t *rsp,
		    struct ember_error *err);

#endif
