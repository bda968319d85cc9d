#include "platform.h"
static int systrap_available(struct ember_error *err) { return ember_error_set(err, "not yet"); }
const struct vmm_platform vmm_platform_systrap = {.name = "systrap", .available = systrap_available};
