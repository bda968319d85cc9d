/* The choice of platform (platform.h): by name, or the best one this host
 * can run. */
#include <string.h>

#include "platform.h"

const struct vmm_platform *vmm_platform_choose(const char *name, struct ember_error *err)
{
	if (strcmp(name, "kvm") == 0 || strcmp(name, "systrap") == 0) {
		const struct vmm_platform *platform =
			name[0] == 'k' ? &vmm_platform_kvm : &vmm_platform_systrap;
		if (platform->available(err) != 1)
			return ember_error_wrap(err, "platform %s", name), NULL;
		return platform;
	}
	if (strcmp(name, "auto") != 0) {
		ember_error_set(err, "unknown platform `%s` (expected kvm, systrap or auto)", name);
		return NULL;
	}
	struct ember_error kvm_err;
	if (vmm_platform_kvm.available(&kvm_err) == 1)
		return &vmm_platform_kvm;
	if (vmm_platform_systrap.available(err) == 1)
		return &vmm_platform_systrap;
	ember_error_wrap(err, "no platform can run here: kvm: %s; systrap", kvm_err.message);
	return NULL;
}

