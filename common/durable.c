/* The durable-write helpers of durable.h. */
#include "durable.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int ember_fsync_directory(const char *dir, struct ember_error *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return ember_error_errno(err, e, "fsync directory `%s`", dir);
	}
	close(fd);
	return 0;
}
