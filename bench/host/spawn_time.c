/* Process start-up timer for the benchmarks.  Runs a command RUNS times
 * (after WARMUP untimed runs) with posix_spawn, reading the TSC just before
 * each spawn, and reports in microseconds:
 *   exit_*   spawn to the child's exit being reaped (wait4), every run;
 *   first_*  with --first-insn, spawn to the TSC value the child writes as
 *            8 raw bytes on stdout (bench/guest/first_insn: its first
 *            instruction), i.e. process start to first (guest) instruction;
 *   first_*  with --first-output instead, spawn to the moment the first byte
 *            of the child's stdout arrives here (whatever it is; the rest is
 *            read and dropped until end of file), i.e. process start to
 *            first output (issue 3: restore latency).
 * With --stdin-byte the child's stdin is a pipe already holding one byte
 * ('x') with its write end closed, so a program that starts by reading one
 * byte gets it at once; otherwise stdin is inherited.  Without --first-insn
 * or --first-output the child's stdout goes to /dev/null.  Any run that does
 * not exit 0 (or, with --first-insn, does not send 8 bytes; with
 * --first-output, sends nothing) fails the whole measurement.  Usage:
 *   spawn_time [--first-insn | --first-output] [--stdin-byte] --runs N [--warmup W]
 *              --tsc-hz HZ -- PROGRAM [ARGS...]
 * Prints "key value" lines: <name>_min_us, _median_us, _p99_us, _max_us, and
 * minflt_median: the child's minor page faults (wait4's rusage), median. */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_stats.h"

extern char **environ;

struct options {
	bool first_insn, first_output, stdin_byte;
	long runs, warmup;
	double hz;
	char **command;
};

/* One run: fills *to_first (if wanted) and *to_exit in cycles.  Returns 0 or -1
 * after saying why on stderr. */
static int run_once(const struct options *options, uint64_t *to_first, uint64_t *to_exit, uint64_t *minflt)
{
	int pipe_fds[2] = {-1, -1};
	int stdin_fds[2] = {-1, -1};
	bool timed = options->first_insn || options->first_output;
	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	if (options->stdin_byte) {
		if (pipe2(stdin_fds, O_CLOEXEC) < 0 || write(stdin_fds[1], "x", 1) != 1) {
			perror("spawn_time: stdin pipe");
			return -1;
		}
		close(stdin_fds[1]);
		posix_spawn_file_actions_adddup2(&actions, stdin_fds[0], STDIN_FILENO);
	}
	if (timed) {
		if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
			perror("spawn_time: pipe2");
			return -1;
		}
		posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
	} else {
		posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	}
	pid_t child;
	uint64_t start = bench_tsc();
	int spawn_error = posix_spawn(&child, options->command[0], &actions, NULL, options->command, environ);
	posix_spawn_file_actions_destroy(&actions);
	if (stdin_fds[0] >= 0)
		close(stdin_fds[0]);
	if (spawn_error != 0) {
		fprintf(stderr, "spawn_time: spawn %s: %s\n", options->command[0], strerror(spawn_error));
		if (pipe_fds[0] >= 0) {
			close(pipe_fds[0]);
			close(pipe_fds[1]);
		}
		return -1;
	}
	int result = 0;
	if (options->first_output) {
		close(pipe_fds[1]);
		char buffer[4096];
		ssize_t n;
		while ((n = read(pipe_fds[0], buffer, sizeof buffer)) < 0 && errno == EINTR)
			;
		uint64_t first = bench_tsc();
		if (n <= 0) {
			fprintf(stderr, "spawn_time: %s wrote nothing to stdout\n", options->command[0]);
			result = -1;
		} else {
			*to_first = first - start;
		}
		while (n > 0 || (n < 0 && errno == EINTR))
			n = read(pipe_fds[0], buffer, sizeof buffer);
		close(pipe_fds[0]);
	} else if (options->first_insn) {
		close(pipe_fds[1]);
		uint64_t first_tsc = 0;
		size_t got = 0;
		while (got < sizeof first_tsc) {
			ssize_t n = read(pipe_fds[0], (char *)&first_tsc + got, sizeof first_tsc - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		close(pipe_fds[0]);
		if (got != sizeof first_tsc) {
			fprintf(stderr, "spawn_time: %s sent %zu of 8 TSC bytes\n", options->command[0], got);
			result = -1;
		} else if (first_tsc < start) {
			fprintf(stderr, "spawn_time: child's TSC %llu is before the spawn's %llu\n",
				(unsigned long long)first_tsc, (unsigned long long)start);
			result = -1;
		} else {
			*to_first = first_tsc - start;
		}
	}
	int status;
	struct rusage usage;
	while (wait4(child, &status, 0, &usage) < 0) {
		if (errno != EINTR) {
			perror("spawn_time: wait4");
			return -1;
		}
	}
	*to_exit = bench_tsc() - start;
	*minflt = (uint64_t)usage.ru_minflt;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "spawn_time: %s ended with status %#x\n", options->command[0], status);
		result = -1;
	}
	return result;
}

static void report(const char *name, uint64_t *cycles, size_t count, double hz)
{
	bench_sort(cycles, count);
	printf("%s_min_us %.1f\n", name, bench_cycles_us(cycles[0], hz));
	printf("%s_median_us %.1f\n", name, bench_cycles_us(bench_percentile(cycles, count, 50), hz));
	printf("%s_p99_us %.1f\n", name, bench_cycles_us(bench_percentile(cycles, count, 99), hz));
	printf("%s_max_us %.1f\n", name, bench_cycles_us(cycles[count - 1], hz));
}

int main(int argc, char **argv)
{
	struct options options = {.runs = 0, .warmup = 3};
	int i = 1;
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--first-insn") == 0)
			options.first_insn = true;
		else if (strcmp(argv[i], "--first-output") == 0)
			options.first_output = true;
		else if (strcmp(argv[i], "--stdin-byte") == 0)
			options.stdin_byte = true;
		else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
			options.runs = strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc)
			options.warmup = strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--tsc-hz") == 0 && i + 1 < argc)
			options.hz = bench_parse_hz(argv[++i]);
		else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else
			break;
	}
	if (i >= argc || options.runs < 1 || options.runs > 100000 || options.warmup < 0 || options.hz == 0 ||
	    (options.first_insn && options.first_output)) {
		fprintf(stderr, "usage: spawn_time [--first-insn | --first-output] [--stdin-byte] --runs N [--warmup W]\n"
				"                  --tsc-hz HZ -- PROGRAM [ARGS...]\n");
		return 2;
	}
	options.command = argv + i;
	uint64_t *to_first = calloc((size_t)options.runs, sizeof *to_first);
	uint64_t *to_exit = calloc((size_t)options.runs, sizeof *to_exit);
	uint64_t *minflt = calloc((size_t)options.runs, sizeof *minflt);
	if (!to_first || !to_exit || !minflt) {
		perror("spawn_time: calloc");
		return 1;
	}
	uint64_t unused_first, unused_exit, unused_minflt;
	for (long run = 0; run < options.warmup; run++)
		if (run_once(&options, &unused_first, &unused_exit, &unused_minflt) < 0)
			return 1;
	for (long run = 0; run < options.runs; run++)
		if (run_once(&options, &to_first[run], &to_exit[run], &minflt[run]) < 0)
			return 1;
	printf("runs %ld\n", options.runs);
	if (options.first_insn || options.first_output)
		report("first", to_first, (size_t)options.runs, options.hz);
	report("exit", to_exit, (size_t)options.runs, options.hz);
	bench_sort(minflt, (size_t)options.runs);
	printf("minflt_median %llu\n", (unsigned long long)bench_percentile(minflt, (size_t)options.runs, 50));
	free(to_first);
	free(to_exit);
	free(minflt);
	return 0;
}
