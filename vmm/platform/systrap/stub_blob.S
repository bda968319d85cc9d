/* Embeds the built systrap stub (build/stub/ember-stub, path given as
 * STUB_PATH by the Makefile) into ember-vmm as read-only bytes between
 * vmm_stub_image_start and vmm_stub_image_end; systrap_stub.c executes them
 * from a sealed memfd.  Only ever data to the VMM. */

	.section .rodata, "a", @progbits
	.balign 64
	.globl vmm_stub_image_start
	.type vmm_stub_image_start, @object
vmm_stub_image_start:
	.incbin STUB_PATH
	.globl vmm_stub_image_end
	.type vmm_stub_image_end, @object
vmm_stub_image_end:
	.size vmm_stub_image_start, vmm_stub_image_end - vmm_stub_image_start

	.section .note.GNU-stack, "", @progbits
