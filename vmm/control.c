/* The control socket server of control.h.  One client at a time is
 * served; each frame is read whole and checked (magic, version, command,
 * payload length) before anything acts on it. */
#include "control.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "platform.h"
#include "snapshot.h"

volatile sig_atomic_t vmm_interrupt_pending;
static void on_interrupt(int signal)
{
	(void)signal;
	vmm_platform_interrupt_running();
}

int vmm_interrupt_install(struct ember_error *err)
{
	struct sigaction action;
	memset(&action, 0, sizeof action);
	action.sa_handler = on_interrupt; /* no SA_RESTART: blocking calls return EINTR */
	sigemptyset(&action.sa_mask);
	if (sigaction(SIGUSR1, &action, NULL) < 0)
		return ember_error_errno(err, errno, "install the interrupt handler");
	return 0;
}

static int read_exact(int fd, void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = read(fd, (char *)buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static int write_exact(int fd, const void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = send(fd, (const char *)buf + done, len - done, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static int respond(int fd, int status, const void *payload, size_t length)
{
	struct ember_control_header header = {
		.magic = EMBER_CONTROL_RESPONSE_MAGIC,
		.version = EMBER_CONTROL_VERSION,
		.code = (uint16_t)status,
		.payload_length = (uint32_t)length,
	};
	if (write_exact(fd, &header, sizeof header) < 0)
		return -1;
	return length ? write_exact(fd, payload, length) : 0;
}

static int respond_message(int fd, int status, const char *message)
{
	return respond(fd, status, message, strlen(message));
}

static void gather_stats(struct vmm_control *control, struct ember_control_stats *stats)
{
	memset(stats, 0, sizeof *stats);
	stats->guest_memory_bytes = control->process->vm.mem_size;
	stats->syscalls = control->process->syscall_count;
	pthread_mutex_lock(&control->lock);
	stats->state = control->state;
	pthread_mutex_unlock(&control->lock);
	struct vmm_vm *vm = &control->process->vm;
	vm->platform->memory_usage(vm, &stats->host_rss_bytes, &stats->host_private_bytes, &stats->dirty_pages);
	stats->platform = vm->platform == &vmm_platform_kvm ? EMBER_CONTROL_PLATFORM_KVM
							    : EMBER_CONTROL_PLATFORM_SYSTRAP;
}

/* Hands a command to the vCPU thread and waits for its answer. */
static int run_on_vcpu(struct vmm_control *control, int command, const char *path, char *message)
{
	pthread_mutex_lock(&control->lock);
	bool allowed;
	switch (command) {
	case EMBER_CONTROL_PAUSE: allowed = control->state == EMBER_VM_RUNNING; break;
	case EMBER_CONTROL_RESUME:
	case EMBER_CONTROL_SNAPSHOT: allowed = control->state == EMBER_VM_PAUSED; break;
	default: allowed = control->state != EMBER_VM_EXITED; break;
	}
	if (!allowed) {
		static const char *const names[] = {"", "running", "paused", "exited"};
		snprintf(message, EMBER_CONTROL_MESSAGE_MAX, "the VM is %s", names[control->state]);
		pthread_mutex_unlock(&control->lock);
		return EMBER_CONTROL_NOT_ALLOWED;
	}
	control->command = command;
	control->taken = false;
	control->reply_pending = true;
	snprintf(control->path, sizeof control->path, "%s", path ? path : "");
	control->done = false;
	control->message[0] = '\0';
	vmm_interrupt_pending = 1;
	pthread_cond_broadcast(&control->changed);
	/* The signal can land just before the vCPU thread enters a blocking
	 * host call, where nothing would notice it: send it again every few
	 * milliseconds until the command is taken. */
	while (!control->done) {
		if (!control->taken)
			pthread_kill(control->vcpu_thread, SIGUSR1);
		struct timespec retry;
		clock_gettime(CLOCK_REALTIME, &retry);
		retry.tv_nsec += 5 * 1000000;
		if (retry.tv_nsec >= 1000000000) {
			retry.tv_sec++;
			retry.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&control->changed, &control->lock, &retry);
	}
	int status = control->status;
	snprintf(message, EMBER_CONTROL_MESSAGE_MAX, "%s", control->message);
	pthread_mutex_unlock(&control->lock);
	return status;
}

static void serve_client(struct vmm_control *control, int fd)
{
	for (;;) {
		struct ember_control_header header;
		if (read_exact(fd, &header, sizeof header) < 0)
			return;
		if (header.magic != EMBER_CONTROL_REQUEST_MAGIC || header.version != EMBER_CONTROL_VERSION ||
		    header.reserved != 0 || header.code < EMBER_CONTROL_PAUSE ||
		    header.code > EMBER_CONTROL_QUIT) {
			respond_message(fd, EMBER_CONTROL_BAD_REQUEST, "malformed request header");
			return;
		}
		bool wants_path = header.code == EMBER_CONTROL_SNAPSHOT;
		if ((wants_path &&
		     (header.payload_length == 0 || header.payload_length > EMBER_CONTROL_PATH_MAX)) ||
		    (!wants_path && header.payload_length != 0)) {
			respond_message(fd, EMBER_CONTROL_BAD_REQUEST, "bad payload length");
			return;
		}
		char path[EMBER_CONTROL_PATH_MAX + 1] = "";
		if (header.payload_length && read_exact(fd, path, header.payload_length) < 0)
			return;
		path[header.payload_length] = '\0';
		if (wants_path && (strlen(path) != header.payload_length || path[0] != '/')) {
			respond_message(fd, EMBER_CONTROL_BAD_REQUEST,
					"snapshot path must be absolute, without NUL");
			return;
		}
		if (header.code == EMBER_CONTROL_STATS) {
			struct ember_control_stats stats;
			gather_stats(control, &stats);
			if (respond(fd, EMBER_CONTROL_OK, &stats, sizeof stats) < 0)
				return;
			continue;
		}
		char message[EMBER_CONTROL_MESSAGE_MAX];
		int status = run_on_vcpu(control, header.code, path, message);
		int sent = respond_message(fd, status, message);
		pthread_mutex_lock(&control->lock);
		control->reply_pending = false; /* vmm_control_stop may go on */
		pthread_cond_broadcast(&control->changed);
		pthread_mutex_unlock(&control->lock);
		if (sent < 0)
			return;
	}
}

static void *control_thread(void *arg)
{
	struct vmm_control *control = arg;
	for (;;) {
		int fd = accept4(control->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL; /* the socket was shut down */
		}
		serve_client(control, fd);
		close(fd);
	}
}

int vmm_control_start(struct vmm_control *control, struct vmm_process *process, const char *path,
		      bool start_paused, struct ember_error *err)
{
	memset(control, 0, sizeof *control);
	control->process = process;
	control->listen_fd = -1;
	control->vcpu_thread = pthread_self();
	control->state = start_paused ? EMBER_VM_PAUSED : EMBER_VM_RUNNING;
	pthread_mutex_init(&control->lock, NULL);
	pthread_cond_init(&control->changed, NULL);
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof address.sun_path)
		return ember_error_set(err, "control socket path `%s` is too long", path);
	strcpy(address.sun_path, path);
	control->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (control->listen_fd < 0)
		return ember_error_errno(err, errno, "create control socket");
	unlink(path); /* a stale socket from a dead VMM */
	if (bind(control->listen_fd, (struct sockaddr *)&address, sizeof address) < 0 ||
	    listen(control->listen_fd, 8) < 0) {
		ember_error_errno(err, errno, "listen on `%s`", path);
		close(control->listen_fd);
		control->listen_fd = -1;
		return -1;
	}
	snprintf(control->socket_path, sizeof control->socket_path, "%s", path);
	if (pthread_create(&control->thread, NULL, control_thread, control) != 0) {
		vmm_control_stop(control);
		return ember_error_set(err, "start the control thread");
	}
	control->thread_running = true;
	if (start_paused)
		vmm_interrupt_pending = 1;
	return 0;
}

static void finish(struct vmm_control *control, int status, const char *message)
{
	control->command = 0;
	control->status = status;
	snprintf(control->message, sizeof control->message, "%s", message);
	control->done = true;
	pthread_cond_broadcast(&control->changed);
}

void vmm_control_checkpoint(struct vmm_control *control)
{
	pthread_mutex_lock(&control->lock);
	vmm_interrupt_pending = 0;
	control->taken = true; /* no more signals needed for this command */
	for (;;) {
		int command = control->command;
		if (command == EMBER_CONTROL_PAUSE) {
			control->state = EMBER_VM_PAUSED;
			finish(control, EMBER_CONTROL_OK, "");
		} else if (command == EMBER_CONTROL_RESUME) {
			control->state = EMBER_VM_RUNNING;
			finish(control, EMBER_CONTROL_OK, "");
		} else if (command == EMBER_CONTROL_SNAPSHOT) {
			char path[sizeof control->path];
			memcpy(path, control->path, sizeof path);
			pthread_mutex_unlock(&control->lock);
			struct ember_error err;
			int rc = vmm_snapshot_save(control->process, path, &err);
			pthread_mutex_lock(&control->lock);
			finish(control, rc < 0 ? EMBER_CONTROL_FAILED : EMBER_CONTROL_OK,
			       rc < 0 ? err.message : "");
		} else if (command == EMBER_CONTROL_QUIT) {
			control->state = EMBER_VM_EXITED;
			control->process->exit_kind = VMM_EXIT_QUIT;
			finish(control, EMBER_CONTROL_OK, "");
			break;
		}
		if (control->state != EMBER_VM_PAUSED || vmm_timeout_expired)
			break;
		pthread_cond_wait(&control->changed, &control->lock);
		control->taken = true;
	}
	pthread_mutex_unlock(&control->lock);
}

void vmm_control_stop(struct vmm_control *control)
{
	if (control->listen_fd < 0)
		return;
	pthread_mutex_lock(&control->lock);
	control->state = EMBER_VM_EXITED;
	if (control->command)
		finish(control, EMBER_CONTROL_NOT_ALLOWED, "the VM has exited");
	/* Let an answer being sent (to `quit`, say) reach its client first. */
	struct timespec limit;
	clock_gettime(CLOCK_REALTIME, &limit);
	limit.tv_sec += 1;
	while (control->reply_pending &&
	       pthread_cond_timedwait(&control->changed, &control->lock, &limit) == 0)
		;
	pthread_mutex_unlock(&control->lock);
	/* The thread is not joined: it may be blocked on a slow client, and
	 * the process is about to exit, which ends it. */
	shutdown(control->listen_fd, SHUT_RDWR);
	unlink(control->socket_path);
}
