/* ember-invoke: one invocation of a built function, end to end.
 *
 *   ember-invoke DIR [--event FILE|-] [--timeout S] [--warm]
 *
 * Restores one microVM from DIR/snapshot, serves it the event over the
 * Runtime API (worker/runtime_api.h), prints the response on stdout as its
 * bytes arrive (streamed chunks one by one), relays the function's logs to
 * stderr (capped), and destroys the VM.  Exit status: 0 success, 1 function
 * error (the error document is printed on stdout), 2 usage or bad input,
 * 3 timeout, 4 the runtime crashed, exited or broke the protocol, 5 host
 * error.  Every failure is reported once, on stderr, with its reason.
 *
 * With --warm the VM is first restored paused and pre-touched, as a warm
 * pool holds it; only then is the event pushed and the VM resumed, and the
 * time from event in to result out is reported on stderr. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "control_client.h"
#include "function_config.h"
#include "runtime_api.h"

#define EXIT_OK             0
#define EXIT_FUNCTION_ERROR 1
#define EXIT_USAGE          2
#define EXIT_TIMEOUT        3
#define EXIT_RUNTIME_FAILED 4
#define EXIT_HOST_ERROR     5
#define LOG_CAP             (4u << 20) /* function output relayed to stderr, at most */

enum outcome { PENDING, RESPONDED, FUNCTION_ERROR, RESPONSE_BROKEN, INIT_ERROR };

struct invocation {
	pthread_mutex_t lock;
	int wake[2]; /* written by callbacks to wake the main loop */
	char request_id[40];
	enum outcome outcome;
	char error_type[WK_RAPI_ERROR_TYPE_MAX + 1];
	char *error_body; /* owned */
	size_t error_body_length;
	uint64_t response_bytes;
};

static void wake_main(struct invocation *inv)
{
	char byte = 1;
	ssize_t n = write(inv->wake[1], &byte, 1);
	(void)n;
}

static void finish(struct invocation *inv, enum outcome outcome, const char *type, const void *body,
		   size_t length)
{
	pthread_mutex_lock(&inv->lock);
	if (inv->outcome == PENDING) {
		inv->outcome = outcome;
		snprintf(inv->error_type, sizeof inv->error_type, "%s", type ? type : "");
		if (length) {
			inv->error_body = malloc(length);
			if (inv->error_body) {
				memcpy(inv->error_body, body, length);
				inv->error_body_length = length;
			}
		}
	}
	pthread_mutex_unlock(&inv->lock);
	wake_main(inv);
}

static void on_chunk(void *ctx, const char *request_id, const void *data, size_t length)
{
	struct invocation *inv = ctx;
	if (strcmp(request_id, inv->request_id) != 0)
		return;
	fwrite(data, 1, length, stdout);
	fflush(stdout); /* streamed chunks reach the caller as they arrive */
	inv->response_bytes += length;
}

static void on_finished(void *ctx, const char *request_id, const struct wk_rapi_response_end *end)
{
	struct invocation *inv = ctx;
	if (strcmp(request_id, inv->request_id) != 0)
		return;
	switch (end->outcome) {
	case WK_RAPI_RESPONSE_COMPLETE: finish(inv, RESPONDED, NULL, NULL, 0); break;
	case WK_RAPI_RESPONSE_FUNCTION_ERROR:
		finish(inv, FUNCTION_ERROR, end->error_type, end->error_body, end->error_body_length);
		break;
	case WK_RAPI_RESPONSE_TOO_LARGE:
		finish(inv, RESPONSE_BROKEN, "Function.ResponseSizeTooLarge", NULL, 0);
		break;
	case WK_RAPI_RESPONSE_TRUNCATED:
		finish(inv, RESPONSE_BROKEN, "Runtime.TruncatedResponse", NULL, 0);
		break;
	}
}

static void on_invocation_error(void *ctx, const char *request_id, const struct wk_rapi_error *error)
{
	struct invocation *inv = ctx;
	if (strcmp(request_id, inv->request_id) == 0)
		finish(inv, FUNCTION_ERROR, error->error_type, error->body, error->body_length);
}

static void on_init_error(void *ctx, const struct wk_rapi_error *error)
{
	finish(ctx, INIT_ERROR, error->error_type, error->body, error->body_length);
}

static void on_protocol_error(void *ctx, const char *message)
{
	struct invocation *inv = ctx;
	pthread_mutex_lock(&inv->lock);
	bool decided = inv->outcome != PENDING;
	pthread_mutex_unlock(&inv->lock);
	/* Once the invocation is decided the VM is being destroyed: a broken
	 * connection then is expected, not news. */
	if (!decided)
		fprintf(stderr, "ember-invoke: runtime API: %s\n", message);
}

/* True if /proc/PID/maps maps the file `memory`. */
static bool maps_file(pid_t pid, const char *memory)
{
	char path[64], line[PATH_MAX + 128];
	snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
	FILE *maps = fopen(path, "re");
	bool found = false;
	while (maps && !found && fgets(line, sizeof line, maps)) {
		line[strcspn(line, "\n")] = '\0';
		size_t length = strlen(line), name_length = strlen(memory);
		found = length > name_length && line[length - name_length - 1] == ' ' &&
			strcmp(line + length - name_length, memory) == 0;
	}
	if (maps)
		fclose(maps);
	return found;
}

/* The process whose address space holds the guest's memory: the VMM
 * itself on KVM, the stub process it spawned on the systrap platform.
 * Returns vmm when no child of it maps the file. */
static pid_t guest_memory_process(pid_t vmm, const char *memory)
{
	if (maps_file(vmm, memory))
		return vmm;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)vmm);
	DIR *tasks = opendir(path);
	pid_t found = vmm;
	for (struct dirent *task; tasks && found == vmm && (task = readdir(tasks));) {
		if (task->d_name[0] == '.')
			continue;
		char children_path[PATH_MAX];
		snprintf(children_path, sizeof children_path, "/proc/%d/task/%s/children", (int)vmm,
			 task->d_name);
		FILE *children = fopen(children_path, "re");
		int child;
		while (children && found == vmm && fscanf(children, "%d", &child) == 1)
			if (maps_file(child, memory))
				found = child;
		if (children)
			fclose(children);
	}
	if (tasks)
		closedir(tasks);
	return found;
}

/* After a successful invocation, records which snapshot pages the guest
 * used — read (present in the guest's mapping of snapshot/memory, still the
 * file's page) or wrote (present and anonymous: a copy-on-write break) —
 * in DIR/hot-pages, once, so later warm restores can prepare exactly those
 * (ember-vmm restore --hot-pages).  The recording invocation must not have
 * been pre-touched, or every page would look used.
 * Best effort: any failure just leaves no file. */
static void record_hot_pages(const char *dir, const char *snapshot, pid_t pid)
{
	char path[PATH_MAX], memory[PATH_MAX], real[PATH_MAX];
	snprintf(path, sizeof path, "%s/hot-pages", dir);
	if (access(path, F_OK) == 0 || !realpath(snapshot, real))
		return;
	snprintf(memory, sizeof memory, "%s/memory", real);
	pid = guest_memory_process(pid, memory);
	char maps_path[64], pagemap_path[64];
	snprintf(maps_path, sizeof maps_path, "/proc/%d/maps", (int)pid);
	snprintf(pagemap_path, sizeof pagemap_path, "/proc/%d/pagemap", (int)pid);
	FILE *maps = fopen(maps_path, "re");
	int pagemap = open(pagemap_path, O_RDONLY | O_CLOEXEC);
	char temporary[PATH_MAX];
	snprintf(temporary, sizeof temporary, "%s/.hot-pages.%d", dir, (int)getpid());
	FILE *out = maps && pagemap >= 0 ? fopen(temporary, "we") : NULL;
	if (!out)
		goto done;
	fputs("ember-hot-pages 2\n", out);
	char line[PATH_MAX + 128];
	unsigned long base = 0;
	bool found = false;
	while (fgets(line, sizeof line, maps)) {
		unsigned long start, end, offset;
		char perms[8];
		int name_at = 0;
		if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %n", &start, &end, perms, &offset, &name_at) < 4 ||
		    !name_at)
			continue;
		char *name = line + name_at;
		name[strcspn(name, "\n")] = '\0';
		if (strcmp(name, memory) != 0)
			continue;
		if (!found)
			base = start - offset;
		found = true;
		for (unsigned long page = start; page < end; page += 4096) {
			uint64_t entry;
			if (pread(pagemap, &entry, sizeof entry, (off_t)(page / 4096 * 8)) != sizeof entry)
				goto done;
			/* Present and anonymous: the guest wrote it (a copy-on-write
			 * break); present and file-backed: it only read it. */
			bool present = entry >> 63 & 1, file_or_shared = entry >> 61 & 1;
			if (present)
				fprintf(out, "%lx %c\n", (page - base) / 4096, file_or_shared ? 'r' : 'w');
		}
	}
	if (found && fflush(out) == 0 && fsync(fileno(out)) == 0)
		rename(temporary, path);
done:
	if (out)
		fclose(out);
	unlink(temporary);
	if (maps)
		fclose(maps);
	if (pagemap >= 0)
		close(pagemap);
}

/* Waits (up to 10 s) until the restored VM answers on its control socket. */
static int wait_until_paused(const char *socket_path, struct ember_error *err)
{
	for (int attempt = 0; attempt < 10000; attempt++) {
		if (access(socket_path, F_OK) == 0 &&
		    ctl_command(socket_path, EMBER_CONTROL_STATS, NULL, 5, err) == 0)
			return 0;
		usleep(1000);
	}
	return ember_error_wrap(err, "the restored VM never answered on its control socket");
}

static void usage(FILE *out)
{
	fprintf(out, "usage: ember-invoke DIR [--event FILE|-] [--timeout S] [--warm] [--platform P]\n"
		     "Restores one VM from the function built in DIR (ember-build-fn), serves it one event,\n"
		     "prints the response on stdout and the function's logs on stderr.\n"
		     "  --event FILE  the JSON event (`-` for stdin; default {})\n"
		     "  --timeout S   the invocation timeout (default: the function's)\n"
		     "  --warm        restore paused and pre-touched first; report event-in-to-result-out\n"
		     "  --platform P  kvm, systrap or auto (default: $EMBER_PLATFORM, else auto)\n"
		     "Exit status: 0 ok, 1 function error, 2 usage, 3 timeout, 4 runtime failure, 5 host "
		     "error.\n");
}

/* Reads at most WK_RAPI_PAYLOAD_MAX bytes; -1 with err if larger. */
static int read_event(const char *path, char **out, size_t *length, struct ember_error *err)
{
	int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ember_error_errno(err, errno, "open event `%s`", path);
	size_t capacity = WK_RAPI_PAYLOAD_MAX + 1, used = 0;
	char *buffer = malloc(capacity);
	if (!buffer) {
		if (fd)
			close(fd);
		return ember_error_set(err, "out of memory");
	}
	for (;;) {
		ssize_t n = read(fd, buffer + used, capacity - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(buffer);
			if (fd)
				close(fd);
			return ember_error_errno(err, e, "read event `%s`", path);
		}
		if (n == 0)
			break;
		used += (size_t)n;
		if (used > WK_RAPI_PAYLOAD_MAX) {
			free(buffer);
			if (fd)
				close(fd);
			return ember_error_set(err, "event `%s` is larger than the %u-byte limit", path,
					       WK_RAPI_PAYLOAD_MAX);
		}
	}
	if (fd)
		close(fd);
	*out = buffer;
	*length = used;
	return 0;
}

static void make_request_id(char out[40])
{
	uint8_t b[16];
	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
		memset(b, 0, sizeof b);
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static uint64_t now_ms(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Relays what the VM printed to stderr, up to LOG_CAP; returns false at EOF. */
static bool relay_logs(int fd, uint64_t *relayed)
{
	char buffer[65536];
	ssize_t n = read(fd, buffer, sizeof buffer);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	if (*relayed < LOG_CAP) {
		size_t keep = (size_t)n;
		if (keep > LOG_CAP - *relayed)
			keep = (size_t)(LOG_CAP - *relayed);
		fwrite(buffer, 1, keep, stderr);
	}
	/* Said once, when the first byte is dropped (even if the cap fell
	 * exactly between two reads). */
	if (*relayed + (uint64_t)n > LOG_CAP && *relayed <= LOG_CAP)
		fprintf(stderr, "\nember-invoke: function logs past %u MiB are dropped\n", LOG_CAP >> 20);
	*relayed += (uint64_t)n;
	return true;
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *event_path = NULL, *platform = NULL;
	double timeout = 0;
	bool warm = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--warm") == 0) {
			warm = true;
		} else if (strcmp(argv[i], "--event") == 0 && i + 1 < argc) {
			event_path = argv[++i];
		} else if (strcmp(argv[i], "--platform") == 0 && i + 1 < argc) {
			platform = argv[++i]; /* ember-vmm checks it */
		} else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			char *end;
			timeout = strtod(argv[++i], &end);
			if (*end || !(timeout > 0 && timeout <= 900)) {
				fprintf(stderr, "ember-invoke: --timeout %s: expected seconds in (0, 900]\n",
					argv[i]);
				return EXIT_USAGE;
			}
		} else if (argv[i][0] != '-' && !dir) {
			dir = argv[i];
		} else {
			fprintf(stderr, "ember-invoke: unexpected argument `%s`\n", argv[i]);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (!dir) {
		usage(stderr);
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	struct ember_error err;
	struct ember_function_config config;
	if (ember_function_config_read(dir, &config, &err) < 0) {
		fprintf(stderr, "ember-invoke: function `%s`: %s\n", dir, err.message);
		return EXIT_USAGE;
	}
	if (timeout == 0)
		timeout = config.timeout_s;
	char *event = NULL;
	size_t event_length = 2;
	if (event_path) {
		if (read_event(event_path, &event, &event_length, &err) < 0) {
			fprintf(stderr, "ember-invoke: %s\n", err.message);
			ember_function_config_free(&config);
			return EXIT_USAGE;
		}
	} else {
		event = strdup("{}");
	}

	static struct invocation inv = {.lock = PTHREAD_MUTEX_INITIALIZER};
	int exit_code = EXIT_HOST_ERROR;
	char socket_dir[64] = "", socket_path[128], control_path[128], vmm[PATH_MAX], snapshot[PATH_MAX];
	char timeout_text[32];
	struct wk_rapi_server *server = NULL;
	pid_t pid = -1;
	int log_fd = -1;
	if (pipe2(inv.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		ember_error_errno(&err, errno, "create a pipe");
		goto fail;
	}
	make_request_id(inv.request_id);
	if (ember_socket_dir(socket_dir, sizeof socket_dir, &err) < 0 ||
	    ember_sibling_path("ember-vmm", vmm, sizeof vmm, &err) < 0)
		goto fail;
	snprintf(socket_path, sizeof socket_path, "%s/runtime-api.sock", socket_dir);
	struct wk_rapi_callbacks callbacks = {
		.response_chunk = on_chunk,
		.response_finished = on_finished,
		.invocation_error = on_invocation_error,
		.init_error = on_init_error,
		.protocol_error = on_protocol_error,
	};
	if (wk_rapi_server_start(&server, socket_path, &callbacks, &inv, &err) < 0)
		goto fail;
	char arn[256];
	snprintf(arn, sizeof arn, "arn:aws:lambda:local:000000000000:function:%s", config.name);
	uint64_t deadline = now_ms(CLOCK_REALTIME) + (uint64_t)(timeout * 1000);
	char trace[96];
	snprintf(trace, sizeof trace, "Root=1-%08" PRIx64 "-%.24s", deadline / 1000, inv.request_id + 9);
	struct wk_rapi_event rapi_event = {
		.request_id = inv.request_id,
		.deadline_ms = deadline,
		.invoked_function_arn = arn,
		.trace_id = trace,
		.body = event,
		.body_length = event_length,
	};
	if (!warm && wk_rapi_push_event(server, &rapi_event, &err) < 0)
		goto fail;

	snprintf(snapshot, sizeof snapshot, "%s/snapshot", dir);
	snprintf(control_path, sizeof control_path, "%s/control.sock", socket_dir);
	/* The VMM's own timeout is a backstop; ours below ends the invocation. */
	snprintf(timeout_text, sizeof timeout_text, "%.3f", timeout + 5);
	/* The layers are named here, never taken from the snapshot's record. */
	char root[PATH_MAX], task[PATH_MAX];
	snprintf(task, sizeof task, "%s/task", dir);
	if (ember_sibling_path(strcmp(config.runtime, "python3") == 0 ? "../rootfs/python3"
								      : "../rootfs/base",
			       root, sizeof root, &err) < 0)
		goto fail;
	char hot_pages[PATH_MAX];
	snprintf(hot_pages, sizeof hot_pages, "%s/hot-pages", dir);
	bool have_hot_pages = warm && access(hot_pages, R_OK) == 0;
	/* Arguments after the first NULL are not passed: --paused and the
	 * rest only for --warm. */
	char *vmm_argv[] = {vmm,          "restore",
			    snapshot,     "--platform",
			    (char *)ember_platform_choice(platform), "--root",
			    root,         "--task",
			    task,         "--runtime-api",
			    socket_path,  "--timeout",
			    timeout_text, warm ? "--paused" : NULL,
			    "--pretouch", "--control-sock",
			    control_path, have_hot_pages ? "--hot-pages" : NULL,
			    hot_pages,    NULL};
	if (ember_spawn(vmm_argv, -1, &pid, &log_fd, &err) < 0)
		goto fail;
	struct timespec event_in;
	if (warm) {
		if (wait_until_paused(control_path, &err) < 0)
			goto fail;
		clock_gettime(CLOCK_MONOTONIC, &event_in);
		if (wk_rapi_push_event(server, &rapi_event, &err) < 0 ||
		    ctl_command(control_path, EMBER_CONTROL_RESUME, NULL, 5, &err) < 0)
			goto fail;
	}

	uint64_t started = now_ms(CLOCK_MONOTONIC), limit = (uint64_t)(timeout * 1000);
	uint64_t relayed = 0;
	bool vm_running = true;
	enum outcome outcome = PENDING;
	int vm_status = 0;
	while (outcome == PENDING) {
		uint64_t elapsed = now_ms(CLOCK_MONOTONIC) - started;
		if (elapsed >= limit)
			break;
		struct pollfd fds[2] = {{.fd = inv.wake[0], .events = POLLIN},
					{.fd = log_fd, .events = POLLIN}};
		int n = poll(fds, vm_running ? 2 : 1, (int)(limit - elapsed));
		if (n < 0 && errno != EINTR) {
			ember_error_errno(&err, errno, "poll");
			goto fail;
		}
		if (vm_running && (fds[1].revents & (POLLIN | POLLHUP)) && !relay_logs(log_fd, &relayed)) {
			vm_running = false;
			waitpid(pid, &vm_status, 0);
			pid = -1;
		}
		char drain[64];
		while (read(inv.wake[0], drain, sizeof drain) > 0)
			;
		pthread_mutex_lock(&inv.lock);
		outcome = inv.outcome;
		pthread_mutex_unlock(&inv.lock);
		if (outcome == PENDING && !vm_running)
			break;
	}
	if (warm && outcome != PENDING) {
		struct timespec result_out;
		clock_gettime(CLOCK_MONOTONIC, &result_out);
		fprintf(stderr, "ember-invoke: event in to result out: %ld us\n",
			(long)((result_out.tv_sec - event_in.tv_sec) * 1000000 +
			       (result_out.tv_nsec - event_in.tv_nsec) / 1000));
	}
	if (outcome == RESPONDED && pid > 0 && !warm) /* a pre-touched VM shows every page as used */
		record_hot_pages(dir, snapshot, pid);
	/* The VM serves one invocation and is destroyed. */
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &vm_status, 0);
		pid = -1;
		while (relay_logs(log_fd, &relayed))
			;
	}
	wk_rapi_server_stop(server);
	server = NULL;
	fflush(stdout);
	switch (outcome) {
	case RESPONDED: exit_code = EXIT_OK; break;
	case FUNCTION_ERROR:
		fwrite(inv.error_body ? inv.error_body : "", 1, inv.error_body_length, stdout);
		fflush(stdout);
		fprintf(stderr, "ember-invoke: function error: %s\n",
			inv.error_type[0] ? inv.error_type : "(no type)");
		exit_code = EXIT_FUNCTION_ERROR;
		break;
	case RESPONSE_BROKEN:
		fprintf(stderr,
			"ember-invoke: the response was not delivered whole (%s after %" PRIu64 " bytes)\n",
			inv.error_type, inv.response_bytes);
		exit_code = EXIT_RUNTIME_FAILED;
		break;
	case INIT_ERROR:
		fprintf(stderr, "ember-invoke: the runtime reported an init error (%s): %.*s\n",
			inv.error_type, (int)(inv.error_body_length > 4096 ? 4096 : inv.error_body_length),
			inv.error_body ? inv.error_body : "");
		exit_code = EXIT_RUNTIME_FAILED;
		break;
	case PENDING:
		if (vm_running || (WIFEXITED(vm_status) && WEXITSTATUS(vm_status) == 124)) {
			fprintf(stderr, "ember-invoke: timed out after %g s; the VM was destroyed\n",
				timeout);
			exit_code = EXIT_TIMEOUT;
		} else if (WIFEXITED(vm_status)) {
			fprintf(stderr, "ember-invoke: the runtime exited with status %d before answering\n",
				WEXITSTATUS(vm_status));
			exit_code = EXIT_RUNTIME_FAILED;
		} else {
			fprintf(stderr, "ember-invoke: the VMM was killed by signal %d before answering\n",
				WTERMSIG(vm_status));
			exit_code = EXIT_RUNTIME_FAILED;
		}
		break;
	}
	goto out;
fail:
	fprintf(stderr, "ember-invoke: %s\n", err.message);
	exit_code = EXIT_HOST_ERROR;
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
out:
	wk_rapi_server_stop(server);
	if (log_fd >= 0)
		close(log_fd);
	if (socket_dir[0])
		ember_socket_dir_remove(socket_dir);
	free(event);
	free(inv.error_body);
	ember_function_config_free(&config);
	return exit_code;
}
