/* A built function's configuration, kept as DIR/function.json beside its
 * task directory and snapshot: what ember-build-fn was asked for, read
 * back by ember-invoke (and later by the worker).
 *
 * The validators here are the one place that decides what a function
 * name, runtime, handler, memory size, timeout or environment variable may
 * be; both writers and readers call them, because a config file on disk is
 * input like any other. */
#ifndef EMBER_FUNCTION_CONFIG_H
#define EMBER_FUNCTION_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define EMBER_FUNCTION_CONFIG_FILE "function.json"
#define EMBER_ENV_MAX              64
#define EMBER_ENV_TOTAL_MAX        4096 /* bytes of keys and values, as Lambda allows */

struct ember_function_config {
	char name[65];
	char runtime[16]; /* "python3" or "provided" */
	char handler[129];
	uint32_t memory_mb; /* 64..10240 */
	uint32_t timeout_s; /* 1..900, the invocation timeout */
	size_t env_count;
	char *env[EMBER_ENV_MAX]; /* "KEY=VALUE", owned */
};

/* Checks every field; -1 with err naming the first bad one. */
int ember_function_config_validate(const struct ember_function_config *config, struct ember_error *err);

/* Validates and adds one "KEY=VALUE" (copied).  Reserved keys (the
 * AWS_LAMBDA_*, _HANDLER, LAMBDA_* and other variables the platform sets)
 * are refused. */
int ember_function_config_add_env(struct ember_function_config *config, const char *entry,
				  struct ember_error *err);

/* Writes DIR/function.json durably (temporary file, fsync, rename, fsync of
 * DIR).  -1 with err. */
int ember_function_config_write(const char *dir, const struct ember_function_config *config,
				struct ember_error *err);

/* Reads and validates DIR/function.json into `config` (zeroed first; free
 * with ember_function_config_free).  -1 with err. */
int ember_function_config_read(const char *dir, struct ember_function_config *config,
			       struct ember_error *err);

void ember_function_config_free(struct ember_function_config *config);

#endif
