/* The snapshot benchmarks' guest (issue 3): blocks in read(0) and, once the
 * read returns, writes one byte ('!') to stdout and exits 0.  Its first
 * output therefore comes at once when its stdin already holds a byte:
 * bench/host/spawn_time --stdin-byte --first-output times process start to
 * that byte, for `ember-vmm restore` of a snapshot taken while this program
 * was blocked in the read, for a fresh `ember-vmm run` of it, and for the
 * same static binary run on the host.
 *   read_write                 as above (what every timed run executes)
 *   read_write --touch MIB     first fills MIB MiB with pseudo-random bytes
 *                              (xorshift64: a snapshot has that much data, not
 *                              holes, and lz4 cannot shrink it), then
 *                              says "ready\n" on stderr before the read:
 *                              bench/snapshot.sh waits for it before pausing.
 *   read_write --ready         the same with nothing touched.
 * Static, plain libc: gcc -static -O2. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long touch_mib = 0;
	int announce = 0;
	if (argc == 3 && strcmp(argv[1], "--touch") == 0) {
		touch_mib = strtol(argv[2], NULL, 10);
		announce = 1;
	} else if (argc == 2 && strcmp(argv[1], "--ready") == 0) {
		announce = 1;
	} else if (argc != 1) {
		fprintf(stderr, "usage: read_write [--ready | --touch MIB]\n");
		return 2;
	}
	if (touch_mib > 0) {
		size_t bytes = (size_t)touch_mib << 20;
		volatile uint64_t *block = malloc(bytes);
		if (!block) {
			fprintf(stderr, "read_write: cannot allocate %ld MiB\n", touch_mib);
			return 1;
		}
		uint64_t state = 0x9e3779b97f4a7c15u;
		for (size_t i = 0; i < bytes / sizeof *block; i++) {
			state ^= state << 13;
			state ^= state >> 7;
			state ^= state << 17;
			block[i] = state;
		}
	}
	if (announce)
		write(STDERR_FILENO, "ready\n", 6);
	char byte;
	if (read(STDIN_FILENO, &byte, 1) != 1)
		return 3;
	if (write(STDOUT_FILENO, "!", 1) != 1)
		return 4;
	return 0;
}
