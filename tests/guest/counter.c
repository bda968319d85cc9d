/* Guest of the snapshot suite (tests/snapshot/suite.sh): counts, printing
 * one line every 10 ms, while it keeps three kinds of open file moving, so
 * that a snapshot taken at any moment and restored must carry all of them.
 *
 * Usage: counter [LIMIT]  (default 100000 lines; it then exits 0)
 *
 * Before counting it opens /var/task/counter.data (a host file in the task
 * layer whose byte i is 'a' + (i * 7 + i / 26) % 26: see data_byte), creates
 * /tmp/counter.log, and fills a pipe with 64 bytes of a known stream.  Line
 * n (from 0) then:
 *   - reads one byte of the data file: it must be data_byte(n), and the
 *     file's offset afterwards n + 1;
 *   - appends an 8-byte record to /tmp/counter.log: the offset afterwards
 *     must be 8 * (n + 1), and the record just before it must read back;
 *   - writes stream byte n + 64 into the pipe and reads one byte: it must be
 *     stream byte n (so 64 bytes always sit buffered in the pipe);
 *   - prints "count N" when all of that held, else "count N BAD: what".
 * The lines are printed with one raw write(2) each, so the output never
 * waits in a stdio buffer.  A restored VM must print "count K+1" next when
 * the last line before the snapshot was "count K". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "guest_test.h"

#define PIPE_BUFFERED 64
#define DATA_PATH "/var/task/counter.data"
#define LOG_PATH "/tmp/counter.log"

static char data_byte(long i)
{
	return (char)('a' + (i * 7 + i / 26) % 26);
}

static char stream_byte(long i)
{
	return (char)('A' + (i * 11 + i / 26) % 26);
}

int main(int argc, char **argv)
{
	long limit = argc > 1 ? atol(argv[1]) : 100000;
	int data = open(DATA_PATH, O_RDONLY | O_CLOEXEC);
	int log = open(LOG_PATH, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int pipe_fds[2];
	if (data < 0 || log < 0 || pipe2(pipe_fds, O_CLOEXEC) < 0) {
		gt_print("counter: set-up failed: data %d log %d errno %d\n", data, log, errno);
		return 1;
	}
	char fill[PIPE_BUFFERED];
	for (int i = 0; i < PIPE_BUFFERED; i++)
		fill[i] = stream_byte(i);
	if (write(pipe_fds[1], fill, sizeof fill) != (ssize_t)sizeof fill) {
		gt_print("counter: cannot fill the pipe\n");
		return 1;
	}
	off_t data_size = lseek(data, 0, SEEK_END);
	lseek(data, 0, SEEK_SET);
	if (data_size > 0 && data_size < limit)
		limit = data_size;

	for (long n = 0; n < limit; n++) {
		char problem[256] = "";
		char c = 0, record[9], back[9] = "";
		if (read(data, &c, 1) != 1 || c != data_byte(n))
			snprintf(problem, sizeof problem, "data byte %ld is %#x, want %#x", n, c, data_byte(n));
		else if (lseek(data, 0, SEEK_CUR) != n + 1)
			snprintf(problem, sizeof problem, "data offset %ld, want %ld",
				 (long)lseek(data, 0, SEEK_CUR), n + 1);
		snprintf(record, sizeof record, "%07ld\n", n % 10000000);
		if (!problem[0] && write(log, record, 8) != 8)
			snprintf(problem, sizeof problem, "append to the log failed: errno %d", errno);
		else if (!problem[0] && lseek(log, 0, SEEK_CUR) != 8 * (n + 1))
			snprintf(problem, sizeof problem, "log offset %ld, want %ld",
				 (long)lseek(log, 0, SEEK_CUR), 8 * (n + 1));
		else if (!problem[0] && (pread(log, back, 8, 8 * n) != 8 || memcmp(back, record, 8) != 0))
			snprintf(problem, sizeof problem, "log record %ld does not read back", n);
		char next = stream_byte(n + PIPE_BUFFERED), got = 0;
		if (!problem[0] && write(pipe_fds[1], &next, 1) != 1)
			snprintf(problem, sizeof problem, "pipe write failed: errno %d", errno);
		else if (!problem[0] && (read(pipe_fds[0], &got, 1) != 1 || got != stream_byte(n)))
			snprintf(problem, sizeof problem, "pipe byte %ld is %#x, want %#x", n, got, stream_byte(n));
		if (problem[0])
			gt_print("count %ld BAD: %s\n", n, problem);
		else
			gt_print("count %ld\n", n);
		struct timespec pause_for = {0, 10 * 1000 * 1000};
		nanosleep(&pause_for, NULL);
	}
	gt_print("counter: done\n");
	return 0;
}
