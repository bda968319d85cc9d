/* One error convention for all of Ember.
 *
 * A function that can fail takes a `struct ember_error *err` as its last
 * parameter, returns a negative value (or NULL) on failure and fills `err`
 * with a message naming the operation and the object.  Callers that pass
 * the failure up add their own context with ember_error_wrap(), so the final
 * message reads outermost-first: "load `/usr/bin/python3`: read ELF header:
 * file is truncated".  An error is reported exactly once, by whoever stops
 * propagating it (usually main).  Nothing here allocates. */
#ifndef EMBER_ERROR_H
#define EMBER_ERROR_H

#include <stddef.h>

#define EMBER_ERROR_MAX 512

struct ember_error {
	char message[EMBER_ERROR_MAX];
};

/* Sets the message (printf format).  Returns -1 so callers can
 * `return ember_error_set(err, ...)`. */
int ember_error_set(struct ember_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like ember_error_set, with ": strerror(errnum)" appended. */
int ember_error_errno(struct ember_error *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with "context: ".  Returns -1. */
int ember_error_wrap(struct ember_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
