/* Embeds the built vDSO (build/vdso/vdso.so, path given as VDSO_PATH by the
 * Makefile) into ember-vmm as read-only bytes between vmm_vdso_image_start
 * and vmm_vdso_image_end, page aligned, which the VMM copies verbatim to
 * GUEST_VDSO_ADDR.  Nothing here may be writable or executable on the host:
 * the bytes are guest code, only ever data to the VMM. */

	.section .rodata, "a", @progbits
	.balign 4096
	.globl vmm_vdso_image_start
	.type vmm_vdso_image_start, @object
vmm_vdso_image_start:
	.incbin VDSO_PATH
	.globl vmm_vdso_image_end
	.type vmm_vdso_image_end, @object
vmm_vdso_image_end:
	.size vmm_vdso_image_start, vmm_vdso_image_end - vmm_vdso_image_start

	.section .note.GNU-stack, "", @progbits
