/* ember-build-fn: turns a code bundle into a function snapshot.
 *
 *   ember-build-fn --runtime python3|provided --handler H --bundle FILE
 *                  --mem MiB [--env K=V ...] [--name NAME] [--timeout S] --out DIR
 *
 * Unpacks the bundle into DIR/task (pool-manager/bundle.h refuses hostile
 * archives), starts the runtime in a microVM with the function's
 * environment and the Runtime API behind 127.0.0.1:9001, and the moment the
 * runtime asks for its first event — handler imported, as AWS SnapStart
 * does — pauses the VM and snapshots it to DIR/snapshot.  DIR/function.json
 * records the configuration, written last: a DIR without it is not a
 * function.  A runtime that reports an init error or exits fails the build
 * with the runtime's own message; nothing is left behind then. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "child.h"
#include "control_client.h"
#include "function_config.h"
#include "runtime_api.h"

#define INIT_TIMEOUT_S 60   /* a runtime must ask for its first event within this */
#define LOG_TAIL       8192 /* the runtime's last output, quoted when the build fails */
#define MAX_VM_ARGS    128

struct build {
	pthread_mutex_t lock;
	int wake[2];
	bool next_requested;
	bool init_error;
	char error_type[WK_RAPI_ERROR_TYPE_MAX + 1];
	char error_body[4096];
	char log_tail[LOG_TAIL + 1];
	size_t log_tail_length;
};

static void wake_main(struct build *b)
{
	char byte = 1;
	ssize_t n = write(b->wake[1], &byte, 1);
	(void)n;
}

static void on_next(void *ctx)
{
	struct build *b = ctx;
	pthread_mutex_lock(&b->lock);
	b->next_requested = true;
	pthread_mutex_unlock(&b->lock);
	wake_main(b);
}

static void on_init_error(void *ctx, const struct wk_rapi_error *error)
{
	struct build *b = ctx;
	pthread_mutex_lock(&b->lock);
	b->init_error = true;
	snprintf(b->error_type, sizeof b->error_type, "%s", error->error_type ? error->error_type : "");
	size_t n =
		error->body_length < sizeof b->error_body - 1 ? error->body_length : sizeof b->error_body - 1;
	memcpy(b->error_body, error->body, n);
	b->error_body[n] = '\0';
	pthread_mutex_unlock(&b->lock);
	wake_main(b);
}

static void on_protocol_error(void *ctx, const char *message)
{
	(void)ctx;
	fprintf(stderr, "ember-build-fn: runtime API: %s\n", message);
}

/* Keeps the last LOG_TAIL bytes the runtime printed and echoes them. */
static bool relay_logs(struct build *b, int fd)
{
	char buffer[16384];
	ssize_t n = read(fd, buffer, sizeof buffer);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	fwrite(buffer, 1, (size_t)n, stderr);
	size_t keep = (size_t)n > LOG_TAIL ? LOG_TAIL : (size_t)n;
	const char *from = buffer + n - keep;
	if (b->log_tail_length + keep > LOG_TAIL) {
		size_t drop = b->log_tail_length + keep - LOG_TAIL;
		memmove(b->log_tail, b->log_tail + drop, b->log_tail_length - drop);
		b->log_tail_length -= drop;
	}
	memcpy(b->log_tail + b->log_tail_length, from, keep);
	b->log_tail_length += keep;
	b->log_tail[b->log_tail_length] = '\0';
	return true;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: ember-build-fn --runtime python3|provided --handler H --bundle FILE --mem MiB\n"
		     "                      [--env K=V ...] [--name NAME] [--timeout S] --out DIR\n"
		     "Unpacks the bundle (zip or tar.gz), starts the runtime in a microVM and snapshots it\n"
		     "when it asks for its first event.  DIR must not exist.\n"
		     "  --timeout S  the invocation timeout recorded for ember-invoke (default 3)\n");
}

/* Appends `--env KEY=VALUE` (KEY may be NULL when VALUE is a whole entry). */
static int add_vm_env(char **argv, int *argc, char storage[][EMBER_ENV_TOTAL_MAX + 8], int *used,
		      const char *key, const char *value)
{
	if (*argc + 2 >= MAX_VM_ARGS)
		return -1;
	snprintf(storage[*used], EMBER_ENV_TOTAL_MAX + 8, "%s%s%s", key ? key : "", key ? "=" : "", value);
	argv[(*argc)++] = "--env";
	argv[(*argc)++] = storage[(*used)++];
	return 0;
}

int main(int argc, char **argv)
{
	struct ember_function_config config;
	memset(&config, 0, sizeof config);
	config.timeout_s = 3;
	const char *bundle = NULL, *out = NULL, *platform = NULL;
	struct ember_error err;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			usage(stdout);
			return 0;
		}
		if (!value) {
			fprintf(stderr, "ember-build-fn: %s needs a value\n", arg);
			return 2;
		}
		i++;
		char *end;
		if (strcmp(arg, "--runtime") == 0)
			snprintf(config.runtime, sizeof config.runtime, "%s", value);
		else if (strcmp(arg, "--handler") == 0)
			snprintf(config.handler, sizeof config.handler, "%s", value);
		else if (strcmp(arg, "--bundle") == 0)
			bundle = value;
		else if (strcmp(arg, "--out") == 0)
			out = value;
		else if (strcmp(arg, "--platform") == 0)
			platform = value; /* ember-vmm checks it */
		else if (strcmp(arg, "--name") == 0)
			snprintf(config.name, sizeof config.name, "%s", value);
		else if (strcmp(arg, "--mem") == 0 || strcmp(arg, "--timeout") == 0) {
			unsigned long n = strtoul(value, &end, 10);
			if (*end || n > 100000) {
				fprintf(stderr, "ember-build-fn: %s %s: expected a whole number\n", arg,
					value);
				return 2;
			}
			*(strcmp(arg, "--mem") == 0 ? &config.memory_mb : &config.timeout_s) = (uint32_t)n;
		} else if (strcmp(arg, "--env") == 0) {
			if (ember_function_config_add_env(&config, value, &err) < 0) {
				fprintf(stderr, "ember-build-fn: %s\n", err.message);
				return 2;
			}
		} else {
			fprintf(stderr, "ember-build-fn: unknown option %s\n", arg);
			usage(stderr);
			return 2;
		}
	}
	if (!bundle || !out || !config.runtime[0] || !config.handler[0] || !config.memory_mb) {
		fprintf(stderr,
			"ember-build-fn: --runtime, --handler, --bundle, --mem and --out are required\n");
		usage(stderr);
		return 2;
	}
	if (!config.name[0]) { /* default: the output directory's name, made valid */
		const char *base = strrchr(out, '/') ? strrchr(out, '/') + 1 : out;
		size_t n = 0;
		for (; base[n] && n < sizeof config.name - 1; n++)
			config.name[n] =
				(base[n] == '-' || base[n] == '_' || (base[n] >= '0' && base[n] <= '9') ||
				 (base[n] >= 'a' && base[n] <= 'z') || (base[n] >= 'A' && base[n] <= 'Z'))
					? base[n]
					: '_';
		config.name[n] = '\0';
	}
	if (ember_function_config_validate(&config, &err) < 0) {
		fprintf(stderr, "ember-build-fn: %s\n", err.message);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	struct timespec started;
	clock_gettime(CLOCK_MONOTONIC, &started);
	static struct build b = {.lock = PTHREAD_MUTEX_INITIALIZER};
	bool python = strcmp(config.runtime, "python3") == 0;
	char out_dir[PATH_MAX], task[PATH_MAX], snapshot[PATH_MAX], root[PATH_MAX], vmm[PATH_MAX];
	char socket_dir[64] = "", api_socket[128], control_socket[128];
	struct wk_rapi_server *server = NULL;
	pid_t pid = -1;
	int log_fd = -1, status = 0, exit_code = 1;
	bool made_out = false;
	if (mkdir(out, 0755) < 0) {
		ember_error_errno(&err, errno, "create `%s`", out);
		goto fail;
	}
	made_out = true;
	if (!realpath(out, out_dir)) {
		ember_error_errno(&err, errno, "resolve `%s`", out);
		goto fail;
	}
	snprintf(task, sizeof task, "%s/task", out_dir);
	snprintf(snapshot, sizeof snapshot, "%s/snapshot", out_dir);
	struct pool_bundle_report report;
	if (pool_bundle_unpack(bundle, task, NULL, &report, &err) < 0) {
		ember_error_wrap(&err, "bundle `%s`", bundle);
		goto fail;
	}
	if (!python) {
		char bootstrap[PATH_MAX];
		struct stat st;
		snprintf(bootstrap, sizeof bootstrap, "%s/bootstrap", task);
		if (lstat(bootstrap, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111)) {
			ember_error_set(
				&err, "a provided-runtime bundle must hold an executable file `bootstrap` at "
				      "its top");
			goto fail;
		}
	}
	if (ember_sibling_path(python ? "../rootfs/python3" : "../rootfs/base", root, sizeof root, &err) <
		    0 ||
	    ember_sibling_path("ember-vmm", vmm, sizeof vmm, &err) < 0 ||
	    ember_socket_dir(socket_dir, sizeof socket_dir, &err) < 0)
		goto fail;
	snprintf(api_socket, sizeof api_socket, "%s/runtime-api.sock", socket_dir);
	snprintf(control_socket, sizeof control_socket, "%s/control.sock", socket_dir);
	if (pipe2(b.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		ember_error_errno(&err, errno, "create a pipe");
		goto fail;
	}
	struct wk_rapi_callbacks callbacks = {
		.next_requested = on_next,
		.init_error = on_init_error,
		.protocol_error = on_protocol_error,
	};
	if (wk_rapi_server_start(&server, api_socket, &callbacks, &b, &err) < 0)
		goto fail;

	/* The VM's command line: the function's environment, then the program. */
	static char env_storage[64 + EMBER_ENV_MAX][EMBER_ENV_TOTAL_MAX + 8];
	char mem_text[16], *vm_argv[MAX_VM_ARGS];
	int vm_argc = 0, used = 0;
	snprintf(mem_text, sizeof mem_text, "%u", config.memory_mb);
	char *fixed[] = {vmm,    "run",      "--platform",    (char *)ember_platform_choice(platform),
			 "--mem", mem_text,  "--root",        root,
			 "--task", task,     "--runtime-api", api_socket,
			 "--control-sock", control_socket};
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		vm_argv[vm_argc++] = fixed[i];
	char memory_text[16];
	snprintf(memory_text, sizeof memory_text, "%u", config.memory_mb);
	add_vm_env(vm_argv, &vm_argc, env_storage, &used, "AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001");
	add_vm_env(vm_argv, &vm_argc, env_storage, &used, "_HANDLER", config.handler);
	add_vm_env(vm_argv, &vm_argc, env_storage, &used, "AWS_LAMBDA_FUNCTION_NAME", config.name);
	add_vm_env(vm_argv, &vm_argc, env_storage, &used, "AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
	add_vm_env(vm_argv, &vm_argc, env_storage, &used, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_text);
	char log_group[96], log_stream[96], execution_env[64];
	snprintf(log_group, sizeof log_group, "/aws/lambda/%s", config.name);
	snprintf(log_stream, sizeof log_stream, "ember/%s", config.name);
	snprintf(execution_env, sizeof execution_env, "AWS_Lambda_%s", python ? "python3.11" : "provided");
	add_vm_env(vm_argv, &vm_argc, env_storage, &used, "AWS_LAMBDA_LOG_GROUP_NAME", log_group);
	add_vm_env(vm_argv, &vm_argc, env_storage, &used, "AWS_LAMBDA_LOG_STREAM_NAME", log_stream);
	add_vm_env(vm_argv, &vm_argc, env_storage, &used, "LAMBDA_TASK_ROOT", "/var/task");
	add_vm_env(vm_argv, &vm_argc, env_storage, &used, "LAMBDA_RUNTIME_DIR", "/var/runtime");
	add_vm_env(vm_argv, &vm_argc, env_storage, &used, "AWS_REGION", "local");
	add_vm_env(vm_argv, &vm_argc, env_storage, &used, "AWS_DEFAULT_REGION", "local");
	add_vm_env(vm_argv, &vm_argc, env_storage, &used, "TZ", ":UTC");
	add_vm_env(vm_argv, &vm_argc, env_storage, &used, "AWS_EXECUTION_ENV", execution_env);
	if (python)
		add_vm_env(vm_argv, &vm_argc, env_storage, &used, "PYTHONUNBUFFERED", "1");
	for (size_t i = 0; i < config.env_count; i++)
		add_vm_env(vm_argv, &vm_argc, env_storage, &used, NULL, config.env[i]);
	vm_argv[vm_argc++] = "--";
	if (python) {
		vm_argv[vm_argc++] = "/usr/bin/python3";
		vm_argv[vm_argc++] = "/var/runtime/bootstrap.py";
	} else {
		vm_argv[vm_argc++] = "/var/task/bootstrap";
	}
	vm_argv[vm_argc] = NULL;
	if (ember_spawn(vm_argv, -1, &pid, &log_fd, &err) < 0)
		goto fail;

	/* Wait for the first /next, an init error, the runtime's exit or the
	 * init timeout. */
	time_t deadline = time(NULL) + INIT_TIMEOUT_S;
	bool running = true, ready = false;
	while (running) {
		struct pollfd fds[2] = {{.fd = b.wake[0], .events = POLLIN},
					{.fd = log_fd, .events = POLLIN}};
		int n = poll(fds, 2, 200);
		if (n < 0 && errno != EINTR) {
			ember_error_errno(&err, errno, "poll");
			goto fail;
		}
		if ((fds[1].revents & (POLLIN | POLLHUP)) && !relay_logs(&b, log_fd))
			running = false;
		char drain[64];
		while (read(b.wake[0], drain, sizeof drain) > 0)
			;
		pthread_mutex_lock(&b.lock);
		ready = b.next_requested;
		bool failed = b.init_error;
		pthread_mutex_unlock(&b.lock);
		if (failed) {
			ember_error_set(&err, "the runtime failed to initialise (%s): %s",
					b.error_type[0] ? b.error_type : "no type", b.error_body);
			goto fail;
		}
		if (ready)
			break;
		if (time(NULL) > deadline) {
			ember_error_set(&err, "the runtime did not ask for an event within %d s",
					INIT_TIMEOUT_S);
			goto fail;
		}
	}
	if (!ready) {
		waitpid(pid, &status, 0);
		pid = -1;
		ember_error_set(&err,
				"the runtime exited (%s %d) before asking for an event; its last output:\n%s",
				WIFEXITED(status) ? "status" : "signal",
				WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), b.log_tail);
		goto fail;
	}
	if (ctl_command(control_socket, EMBER_CONTROL_PAUSE, NULL, 10, &err) < 0 ||
	    ctl_command(control_socket, EMBER_CONTROL_SNAPSHOT, snapshot, 120, &err) < 0) {
		ember_error_wrap(&err, "snapshot the VM");
		goto fail;
	}
	ctl_command(control_socket, EMBER_CONTROL_QUIT, NULL, 10, &err);
	while (relay_logs(&b, log_fd))
		;
	waitpid(pid, &status, 0);
	pid = -1;
	if (ember_function_config_write(out_dir, &config, &err) < 0)
		goto fail;
	struct timespec finished;
	clock_gettime(CLOCK_MONOTONIC, &finished);
	fprintf(stderr,
		"ember-build-fn: built `%s` (%s, %s, %u MiB; %llu files, %llu bytes of code) in %ld ms\n",
		config.name, config.runtime, config.handler, config.memory_mb,
		(unsigned long long)report.entries, (unsigned long long)report.bytes_written,
		(long)((finished.tv_sec - started.tv_sec) * 1000 +
		       (finished.tv_nsec - started.tv_nsec) / 1000000));
	exit_code = 0;
	goto out;
fail:
	fprintf(stderr, "ember-build-fn: %s\n", err.message);
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (made_out) {
		struct ember_error ignored;
		pool_bundle_remove(out, &ignored);
	}
out:
	wk_rapi_server_stop(server);
	if (log_fd >= 0)
		close(log_fd);
	if (socket_dir[0])
		ember_socket_dir_remove(socket_dir);
	ember_function_config_free(&config);
	return exit_code;
}
