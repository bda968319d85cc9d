/* function.json: validation, writing and reading (function_config.h). */
#include "function_config.h"
#include "durable.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONFIG_FILE_MAX (64 * 1024)

static bool all_chars(const char *s, const char *allowed_extra)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      strchr(allowed_extra, *s)))
			return false;
	return true;
}

static bool reserved_key(const char *key, size_t len)
{
	static const char *const exact[] = {"_HANDLER",
					    "_X_AMZN_TRACE_ID",
					    "AWS_REGION",
					    "AWS_DEFAULT_REGION",
					    "AWS_EXECUTION_ENV",
					    "LAMBDA_TASK_ROOT",
					    "LAMBDA_RUNTIME_DIR",
					    "TZ",
					    NULL};
	for (int i = 0; exact[i]; i++)
		if (strlen(exact[i]) == len && memcmp(key, exact[i], len) == 0)
			return true;
	return (len >= 11 && memcmp(key, "AWS_LAMBDA_", 11) == 0);
}

int ember_function_config_add_env(struct ember_function_config *config, const char *entry,
				  struct ember_error *err)
{
	const char *equals = strchr(entry, '=');
	if (!equals || equals == entry)
		return ember_error_set(err, "environment entry `%s`: expected KEY=VALUE", entry);
	size_t key_len = (size_t)(equals - entry);
	if (key_len > 128 || !((entry[0] >= 'A' && entry[0] <= 'Z') || (entry[0] >= 'a' && entry[0] <= 'z')))
		return ember_error_set(err,
				       "environment key `%.*s` must start with a letter and be at most 128 "
				       "characters",
				       (int)key_len, entry);
	for (size_t i = 0; i < key_len; i++) {
		char c = entry[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return ember_error_set(err,
					       "environment key `%.*s` may hold only letters, digits and _",
					       (int)key_len, entry);
	}
	if (reserved_key(entry, key_len))
		return ember_error_set(err, "environment key `%.*s` is reserved by the platform",
				       (int)key_len, entry);
	for (const char *c = equals + 1; *c; c++)
		if ((unsigned char)*c < 0x20)
			return ember_error_set(err,
					       "environment value of `%.*s` contains a control character",
					       (int)key_len, entry);
	size_t total = strlen(entry);
	for (size_t i = 0; i < config->env_count; i++) {
		total += strlen(config->env[i]);
		if (strncmp(config->env[i], entry, key_len + 1) == 0)
			return ember_error_set(err, "environment key `%.*s` given twice", (int)key_len,
					       entry);
	}
	if (config->env_count == EMBER_ENV_MAX || total > EMBER_ENV_TOTAL_MAX)
		return ember_error_set(err, "environment exceeds %d variables or %d bytes", EMBER_ENV_MAX,
				       EMBER_ENV_TOTAL_MAX);
	config->env[config->env_count] = strdup(entry);
	if (!config->env[config->env_count])
		return ember_error_set(err, "out of memory");
	config->env_count++;
	return 0;
}

int ember_function_config_validate(const struct ember_function_config *c, struct ember_error *err)
{
	if (!c->name[0] || !all_chars(c->name, "-_"))
		return ember_error_set(err, "function name `%s` must be 1 to 64 letters, digits, - or _",
				       c->name);
	bool python = strcmp(c->runtime, "python3") == 0;
	if (!python && strcmp(c->runtime, "provided") != 0)
		return ember_error_set(err, "runtime `%s` is not one of python3, provided", c->runtime);
	if (!c->handler[0])
		return ember_error_set(err, "the handler is empty");
	if (python && (!all_chars(c->handler, "_.") || !strchr(c->handler, '.') || c->handler[0] == '.' ||
		       c->handler[strlen(c->handler) - 1] == '.' || strstr(c->handler, "..")))
		return ember_error_set(err, "python3 handler `%s` must be module.function", c->handler);
	if (!python && !all_chars(c->handler, "_.-/:"))
		return ember_error_set(
			err,
			"handler `%s` holds characters other than letters, digits and _.-/:", c->handler);
	if (c->memory_mb < 64 || c->memory_mb > 10240)
		return ember_error_set(err, "memory of %u MiB is outside 64..10240", c->memory_mb);
	if (c->timeout_s < 1 || c->timeout_s > 900)
		return ember_error_set(err, "timeout of %u s is outside 1..900", c->timeout_s);
	return 0;
}

void ember_function_config_free(struct ember_function_config *config)
{
	for (size_t i = 0; i < config->env_count; i++)
		free(config->env[i]);
	config->env_count = 0;
}

int ember_function_config_write(const char *dir, const struct ember_function_config *c,
				struct ember_error *err)
{
	if (ember_function_config_validate(c, err) < 0)
		return -1;
	json_t *env = json_object();
	for (size_t i = 0; i < c->env_count; i++) {
		char key[130];
		const char *equals = strchr(c->env[i], '=');
		snprintf(key, sizeof key, "%.*s", (int)(equals - c->env[i]), c->env[i]);
		json_object_set_new(env, key, json_string(equals + 1));
	}
	json_t *root =
		json_pack("{s:i, s:s, s:s, s:s, s:i, s:i, s:o}", "format", 1, "name", c->name, "runtime",
			  c->runtime, "handler", c->handler, "memory_mb", (json_int_t)c->memory_mb,
			  "timeout_s", (json_int_t)c->timeout_s, "environment", env);
	char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(root);
	if (!text)
		return ember_error_set(err, "encode %s: out of memory", EMBER_FUNCTION_CONFIG_FILE);
	char temporary[PATH_MAX], final[PATH_MAX];
	snprintf(temporary, sizeof temporary, "%s/.%s.tmp", dir, EMBER_FUNCTION_CONFIG_FILE);
	snprintf(final, sizeof final, "%s/%s", dir, EMBER_FUNCTION_CONFIG_FILE);
	int rc = 0;
	int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t length = strlen(text);
	if (fd < 0 || write(fd, text, length) != (ssize_t)length || write(fd, "\n", 1) != 1 || fsync(fd) < 0)
		rc = ember_error_errno(err, errno, "write `%s`", temporary);
	if (fd >= 0)
		close(fd);
	free(text);
	if (rc == 0 && rename(temporary, final) < 0)
		rc = ember_error_errno(err, errno, "rename `%s` into place", temporary);
	if (rc == 0)
		rc = ember_fsync_directory(dir, err);
	else
		unlink(temporary);
	return rc;
}

static int copy_string(json_t *root, const char *key, char *out, size_t size, struct ember_error *err)
{
	const char *value = json_string_value(json_object_get(root, key));
	if (!value || strlen(value) >= size)
		return ember_error_set(err, "`%s` is missing, not a string, or longer than %zu", key,
				       size - 1);
	strcpy(out, value);
	return 0;
}

int ember_function_config_read(const char *dir, struct ember_function_config *c, struct ember_error *err)
{
	memset(c, 0, sizeof *c);
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", dir, EMBER_FUNCTION_CONFIG_FILE);
	json_error_t parse_error;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &parse_error);
	if (!root)
		return ember_error_set(err, "read `%s`: %s", path, parse_error.text);
	int rc = -1;
	json_t *format = json_object_get(root, "format");
	json_t *memory = json_object_get(root, "memory_mb");
	json_t *timeout = json_object_get(root, "timeout_s");
	json_t *env = json_object_get(root, "environment");
	if (!json_is_integer(format) || json_integer_value(format) != 1)
		ember_error_set(err, "unknown format");
	else if (copy_string(root, "name", c->name, sizeof c->name, err) < 0 ||
		 copy_string(root, "runtime", c->runtime, sizeof c->runtime, err) < 0 ||
		 copy_string(root, "handler", c->handler, sizeof c->handler, err) < 0)
		;
	else if (!json_is_integer(memory) || !json_is_integer(timeout) || !json_is_object(env) ||
		 json_integer_value(memory) < 0 || json_integer_value(memory) > 1 << 20 ||
		 json_integer_value(timeout) < 0 || json_integer_value(timeout) > 1 << 20)
		ember_error_set(err, "memory_mb, timeout_s or environment is missing or of the wrong type");
	else {
		c->memory_mb = (uint32_t)json_integer_value(memory);
		c->timeout_s = (uint32_t)json_integer_value(timeout);
		const char *key;
		json_t *value;
		rc = 0;
		json_object_foreach(env, key, value)
		{
			char entry[EMBER_ENV_TOTAL_MAX + 2];
			if (!json_is_string(value) ||
			    (size_t)snprintf(entry, sizeof entry, "%s=%s", key, json_string_value(value)) >=
				    sizeof entry) {
				rc = ember_error_set(err, "environment variable `%.64s` is invalid", key);
				break;
			}
			if (ember_function_config_add_env(c, entry, err) < 0) {
				rc = -1;
				break;
			}
		}
		if (rc == 0)
			rc = ember_function_config_validate(c, err);
	}
	json_decref(root);
	if (rc < 0) {
		ember_function_config_free(c);
		return ember_error_wrap(err, "`%s`", path);
	}
	return 0;
}
