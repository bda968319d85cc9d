/* Starting and watching helper processes (ember-vmm above all) from the
 * host tools: spawn with the child's stdout and stderr captured on one
 * pipe, find sibling binaries and runtime roots next to our own binary.
 * Every descriptor made here is O_CLOEXEC except the ones handed to the
 * child. */
#ifndef EMBER_CHILD_H
#define EMBER_CHILD_H

#include <stddef.h>
#include <sys/types.h>

#include "error.h"

/* Starts argv[0] (a path) with argv, stdin from `stdin_fd` (or /dev/null
 * when -1), and stdout+stderr into a new pipe whose read end is returned in
 * *output_fd (O_CLOEXEC, owned by the caller).  -1 with err. */
int ember_spawn(char *const argv[], int stdin_fd, pid_t *pid, int *output_fd, struct ember_error *err);

/* Makes `out` the path of `relative` beside this program's own binary
 * directory (e.g. "ember-vmm", "../rootfs/python3"); when it does not
 * exist there, tries one directory further up (sanitizer builds live in
 * build/sanitize/bin).  -1 with err when neither exists. */
int ember_sibling_path(const char *relative, char *out, size_t size, struct ember_error *err);

/* Makes a private temporary directory for sockets (short path, under
 * /tmp: Unix socket paths are limited to 107 bytes).  -1 with err. */
int ember_socket_dir(char *out, size_t size, struct ember_error *err);

/* Removes a directory made by ember_socket_dir and the sockets in it. */
void ember_socket_dir_remove(const char *dir);

/* The --platform to start ember-vmm with: `given` (from a --platform
 * option) if not NULL, else the environment's EMBER_PLATFORM, else "auto". */
const char *ember_platform_choice(const char *given);

#endif
