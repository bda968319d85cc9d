/* The error convention of common/error.h: fixed-size messages built by
 * formatting and prefixing, never allocated, never printed here. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ember_error_set(struct ember_error *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	return -1;
}

int ember_error_errno(struct ember_error *err, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof err->message)
		snprintf(err->message + n, sizeof err->message - (size_t)n, ": %s", strerror(errnum));
	return -1;
}

int ember_error_wrap(struct ember_error *err, const char *fmt, ...)
{
	char prefix[EMBER_ERROR_MAX];
	char old[EMBER_ERROR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	memcpy(old, err->message, sizeof old);
	snprintf(err->message, sizeof err->message, "%s: %s", prefix, old); /* truncation is fine */
	return -1;
}
