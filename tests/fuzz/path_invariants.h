/* What a normalized guest path must look like, and an independent reference
 * implementation of vmm_path_join() to compare against.  Shared by the unit
 * test tests/unit/test_paths.c and the fuzz target tests/fuzz/fuzz_path.c.
 *
 * The reference keeps a stack of components instead of editing a string in
 * place, but follows the same documented rules: "." is dropped, ".." pops
 * (and stays at "/"), a component longer than 255 bytes or a result of
 * 4096 bytes or more is -ENAMETOOLONG, an empty path -ENOENT. */
#ifndef EMBER_PATH_INVARIANTS_H
#define EMBER_PATH_INVARIANTS_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define PATH_CHECK_MAX 4096      /* VMM_PATH_MAX */
#define PATH_CHECK_NAME_MAX 255

/* NULL if `path` is absolute and normalized, else what is wrong with it. */
static inline const char *path_invariant_violation(const char *path)
{
	size_t len = strnlen(path, PATH_CHECK_MAX);
	if (len >= PATH_CHECK_MAX)
		return "length >= 4096";
	if (path[0] != '/')
		return "does not start with '/'";
	if (len > 1 && path[len - 1] == '/')
		return "trailing '/'";
	if (strstr(path, "//"))
		return "contains \"//\"";
	const char *p = path + 1;
	while (*p) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == 1 && p[0] == '.')
			return "has a \".\" component";
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return "has a \"..\" component";
		if (n > PATH_CHECK_NAME_MAX)
			return "has a component longer than 255 bytes";
		p += n;
		if (*p == '/')
			p++;
	}
	return NULL;
}

/* Pushes the components of `text` onto the stack held in `out`. */
static inline int path_reference_walk(const char *text, char *out, size_t *len, size_t *starts, size_t *depth)
{
	const char *p = text;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == 1 && p[0] == '.') {
			/* nothing */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (*depth > 0)
				*len = starts[--*depth];
		} else {
			if (n > PATH_CHECK_NAME_MAX || *len + 1 + n > PATH_CHECK_MAX - 1)
				return -ENAMETOOLONG;
			starts[(*depth)++] = *len;
			out[(*len)++] = '/';
			memcpy(out + *len, p, n);
			*len += n;
		}
		p += n;
	}
	return 0;
}

/* The reference join: 0 with `out` set, -ENOENT or -ENAMETOOLONG. */
static inline int path_reference_join(const char *base, const char *path, char out[PATH_CHECK_MAX])
{
	if (path[0] == '\0')
		return -ENOENT;
	if (strnlen(path, PATH_CHECK_MAX) >= PATH_CHECK_MAX)
		return -ENAMETOOLONG;
	size_t starts[PATH_CHECK_MAX / 2 + 1];
	size_t len = 0, depth = 0;
	int rc = 0;
	if (path[0] != '/')
		rc = path_reference_walk(base, out, &len, starts, &depth);
	if (rc == 0)
		rc = path_reference_walk(path, out, &len, starts, &depth);
	if (rc < 0)
		return rc;
	if (len == 0)
		out[len++] = '/';
	out[len] = '\0';
	return 0;
}

#endif
