/* The fixed interface between ember-vmm and its systrap stub (stub.c): the
 * stub's addresses, the descriptors it is started with, and the layout of
 * the context area both map from one memfd.
 *
 * The stub process holds nothing but the guest: its memory at the guest's
 * own addresses, the stub's code, and this context area.  The guest can
 * read and write the context area whenever it runs, so the VMM reads every
 * field of it as hostile, exactly as it reads registers.  The VMM and the
 * stub take turns through `state`: the stub posts an event (a system call,
 * a fault, an interruption) and parks in its signal handler; the VMM
 * answers with a reply or a command.  Version this header with the stub. */
#ifndef VMM_STUB_ABI_H
#define VMM_STUB_ABI_H

#include <stdint.h>

#define STUB_ABI_VERSION 1

/* Where the stub's code is linked (stub.lds) and its context area lies:
 * far above the largest guest (16 GiB) and below the host's own mappings. */
#define STUB_TEXT_ADDR    0x600000000000ULL
#define STUB_CONTEXT_ADDR 0x600000100000ULL
#define STUB_CONTEXT_SIZE 0x40000ULL /* 256 KiB */

/* Inside the context area. */
#define STUB_CONTROL_OFFSET      0x0     /* struct stub_control */
#define STUB_SIGNAL_STACK_OFFSET 0x1000  /* the handler's sigaltstack */
#define STUB_SIGNAL_STACK_SIZE   0x30000 /* 192 KiB: any signal frame fits */
#define STUB_START_STACK_OFFSET  0x31000 /* the start code's own stack */
#define STUB_START_STACK_SIZE    0x4000

/* Descriptors the stub is started with; it closes them all. */
#define STUB_FD_CONTEXT 3 /* the context memfd */
#define STUB_FD_SYSTEM  4 /* the VMM's system pages [0, 2 MiB): the vvar page and the vDSO */
#define STUB_FD_MEMORY  5 /* the snapshot's memory file, or absent for fresh memory */

/* The signal the VMM sends to stop a running guest. */
#define STUB_INTERRUPT_SIGNAL 23 /* SIGURG */

enum stub_state {
	STUB_STATE_STARTING = 0, /* the stub has not reached its first event */
	STUB_STATE_RUNNING,      /* the guest runs */
	STUB_STATE_EVENT,        /* stub -> VMM: an event is posted, the stub waits */
	STUB_STATE_REPLY,        /* VMM -> stub: resume the guest */
	STUB_STATE_COMMAND,      /* VMM -> stub: run the commands, then post EVENT again */
};

/* Memory commands the stub runs for the VMM while parked: madvise() on
 * its own mappings of guest memory, which the VMM cannot reach. */
#define STUB_COMMANDS_MAX 32
#define STUB_ADVICE_DONTNEED       4
#define STUB_ADVICE_POPULATE_READ  22
#define STUB_ADVICE_POPULATE_WRITE 23

struct stub_command {
	uint64_t addr, len;
	uint32_t advice;
	int32_t result; /* 0 or -errno, written by the stub */
};

struct stub_control {
	/* Handshake words, each on its own cache line. */
	_Alignas(64) uint32_t state;
	_Alignas(64) uint32_t vmm_waiting;  /* the VMM sleeps on `state` */
	_Alignas(64) uint32_t stub_waiting; /* the stub sleeps on `state` */

	/* Set by the VMM before the stub starts. */
	_Alignas(64) uint32_t abi_version;
	uint32_t memory_from_file; /* STUB_FD_MEMORY is open */
	uint32_t use_fsgsbase;     /* rdfsbase/wrfsbase work here */
	uint32_t reserved0;
	uint64_t mem_size;   /* guest memory [0, mem_size) */
	uint64_t parent_pid; /* the VMM: the stub ends if it is gone */

	/* The event: written by the stub's handler. */
	_Alignas(64) int32_t signo;
	int32_t code;
	int32_t syscall_number;
	uint32_t syscall_arch;
	uint64_t fault_address;
	uint64_t frame; /* the handler's ucontext, an address in the signal stack */
	uint64_t fs_base, gs_base;

	/* The reply: the frame's registers are changed in place; these too. */
	_Alignas(64) uint64_t reply_fs_base, reply_gs_base;
	uint32_t reply_set_bases; /* load reply_*_base (without fsgsbase: arch_prctl) */
	uint32_t command_count;   /* COMMAND: how many of commands[] */
	struct stub_command commands[STUB_COMMANDS_MAX];
};

_Static_assert(sizeof(struct stub_control) <= STUB_SIGNAL_STACK_OFFSET, "the control block fits its page");
_Static_assert(STUB_START_STACK_OFFSET + STUB_START_STACK_SIZE <= STUB_CONTEXT_SIZE, "stacks fit");

#endif
