/* Guest of the snapshot suite (tests/snapshot/suite.sh): prints "ready",
 * then blocks reading commands from stdin, one per line, and answers each
 * with one line on stdout — the program a snapshot is taken of while it
 * waits, and many restored copies of which are then questioned.
 *
 * Usage: stdin_echo [FILL_MIB]
 *   FILL_MIB (default 0): before "ready", allocate that many MiB and fill
 *   them with non-zero bytes, so the snapshot's memory file holds data that
 *   a restored VM shares until it writes to it ("dirty" below).
 *
 * Commands and answers:
 *   echo TEXT      "echo: TEXT"
 *   touch PATH     creates PATH: "touched PATH" or "touch PATH failed: errno N"
 *   exists PATH    "PATH exists" or "PATH absent"
 *   random         "random HEX": 64 bytes from getrandom(2), in hex
 *   urandom        "urandom HEX": 64 bytes read from /dev/urandom
 *   time           "time NS RAW_NS MONO_NS RAW_MONO_NS": CLOCK_REALTIME in
 *                  nanoseconds through glibc (the vDSO) and through the raw
 *                  system call, then CLOCK_MONOTONIC the same two ways
 *   dirty N        writes one byte into each of N pages of the fill (N at
 *                  most its size): "dirtied N"
 *   exit N         exits with status N
 * anything else gets "unknown: LINE".  At the end of stdin it prints "eof"
 * and exits 0.  Every line goes out with one raw write(2), and stdin is read
 * with plain read(2) into its own buffer (no stdio), so where it blocks is
 * exactly one read system call. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "guest_test.h"

#define PAGE 4096

static unsigned char *fill;
static size_t fill_bytes;

static void hex(const unsigned char *bytes, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * n] = '\0';
}

static void answer(char *line)
{
	if (strncmp(line, "echo ", 5) == 0) {
		gt_print("echo: %s\n", line + 5);
	} else if (strncmp(line, "touch ", 6) == 0) {
		int fd = open(line + 6, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0) {
			gt_print("touch %s failed: errno %d\n", line + 6, errno);
			return;
		}
		close(fd);
		gt_print("touched %s\n", line + 6);
	} else if (strncmp(line, "exists ", 7) == 0) {
		gt_print("%s %s\n", line + 7, access(line + 7, F_OK) == 0 ? "exists" : "absent");
	} else if (strcmp(line, "random") == 0) {
		unsigned char bytes[64];
		char text[129];
		if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes) {
			gt_print("random failed: errno %d\n", errno);
			return;
		}
		hex(bytes, sizeof bytes, text);
		gt_print("random %s\n", text);
	} else if (strcmp(line, "urandom") == 0) {
		unsigned char bytes[64];
		char text[129];
		int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
		if (fd < 0 || read(fd, bytes, sizeof bytes) != (ssize_t)sizeof bytes) {
			gt_print("urandom failed: errno %d\n", errno);
			if (fd >= 0)
				close(fd);
			return;
		}
		close(fd);
		hex(bytes, sizeof bytes, text);
		gt_print("urandom %s\n", text);
	} else if (strcmp(line, "time") == 0) {
		struct timespec t[4] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}};
		clock_gettime(CLOCK_REALTIME, &t[0]);
		sys(SYS_clock_gettime, CLOCK_REALTIME, &t[1]);
		clock_gettime(CLOCK_MONOTONIC, &t[2]);
		sys(SYS_clock_gettime, CLOCK_MONOTONIC, &t[3]);
		long long ns[4];
		for (int i = 0; i < 4; i++)
			ns[i] = (long long)t[i].tv_sec * 1000000000LL + t[i].tv_nsec;
		gt_print("time %lld %lld %lld %lld\n", ns[0], ns[1], ns[2], ns[3]);
	} else if (strncmp(line, "dirty ", 6) == 0) {
		size_t pages = strtoul(line + 6, NULL, 10);
		if (pages > fill_bytes / PAGE)
			pages = fill_bytes / PAGE;
		for (size_t i = 0; i < pages; i++)
			fill[i * PAGE + 1]++;
		gt_print("dirtied %zu\n", pages);
	} else if (strncmp(line, "exit ", 5) == 0) {
		exit(atoi(line + 5));
	} else {
		gt_print("unknown: %s\n", line);
	}
}

int main(int argc, char **argv)
{
	size_t fill_mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 0;
	if (fill_mib) {
		fill_bytes = fill_mib << 20;
		fill = aligned_alloc(PAGE, fill_bytes);
		if (!fill) {
			gt_print("stdin_echo: cannot allocate %zu MiB\n", fill_mib);
			return 1;
		}
		memset(fill, 0x5a, fill_bytes);
	}
	gt_print("ready\n");
	static char buffer[8192];
	size_t length = 0;
	for (;;) {
		char *newline;
		while ((newline = memchr(buffer, '\n', length)) != NULL) {
			*newline = '\0';
			answer(buffer);
			size_t used = (size_t)(newline + 1 - buffer);
			memmove(buffer, newline + 1, length - used);
			length -= used;
		}
		if (length == sizeof buffer - 1) {
			buffer[length] = '\0';
			answer(buffer);
			length = 0;
		}
		ssize_t n = read(0, buffer + length, sizeof buffer - 1 - length);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		length += (size_t)n;
	}
	gt_print("eof\n");
	return 0;
}
