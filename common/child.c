/* Helper processes and paths for the host tools (child.h). */
#include "child.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

int ember_spawn(char *const argv[], int stdin_fd, pid_t *pid, int *output_fd, struct ember_error *err)
{
	int pipe_fds[2];
	if (pipe2(pipe_fds, O_CLOEXEC) < 0)
		return ember_error_errno(err, errno, "create a pipe for `%s`", argv[0]);
	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	if (stdin_fd >= 0)
		posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
	else
		posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
	posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
	int rc = posix_spawn(pid, argv[0], &actions, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&actions);
	close(pipe_fds[1]);
	if (rc != 0) {
		close(pipe_fds[0]);
		return ember_error_errno(err, rc, "start `%s`", argv[0]);
	}
	*output_fd = pipe_fds[0];
	return 0;
}

int ember_sibling_path(const char *relative, char *out, size_t size, struct ember_error *err)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return ember_error_errno(err, errno, "find our own binary");
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	*slash = '\0';
	snprintf(out, size, "%s/%s", self, relative);
	if (access(out, F_OK) == 0)
		return 0;
	snprintf(out, size, "%s/../%s", self, relative);
	if (access(out, F_OK) == 0)
		return 0;
	return ember_error_set(err, "cannot find `%s` beside `%s`", relative, self);
}

int ember_socket_dir(char *out, size_t size, struct ember_error *err)
{
	snprintf(out, size, "/tmp/ember-XXXXXX");
	if (!mkdtemp(out))
		return ember_error_errno(err, errno, "create a directory for sockets");
	return 0;
}

void ember_socket_dir_remove(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *entry;
		while ((entry = readdir(d))) {
			if (entry->d_name[0] == '.')
				continue;
			char path[PATH_MAX];
			snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(dir);
}

const char *ember_platform_choice(const char *given)
{
	if (given)
		return given;
	const char *from_environment = getenv("EMBER_PLATFORM");
	return from_environment && from_environment[0] ? from_environment : "auto";
}
