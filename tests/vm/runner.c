/* Host-side helper of the VM suite (tests/vm/suite.sh), compiled by the
 * suite into its temporary directory.  Two jobs:
 *
 *   runner run LIMIT_S INFO_FILE -- COMMAND [ARGS...]
 *       Runs COMMAND in its own process group, kills the group if it is
 *       still running after LIMIT_S seconds, and writes to INFO_FILE:
 *         exit=N        exit status, or -1 if killed by a signal
 *         signal=N      the signal that killed COMMAND itself, or 0
 *         killed=0|1    1 if the runner had to kill it
 *         rss_kb=N      peak resident set size of COMMAND (wait4's ru_maxrss)
 *         wall_ms=N     wall-clock time
 *       Exits like a shell would report COMMAND (status, or 128+signal).
 *       The signal line is what tells "the VMM exited 139 because its guest
 *       died of SIGSEGV" from "the VMM itself died of SIGSEGV".
 *
 *   runner listen PORT_FILE LOG_FILE UNIX_PATH
 *       Listens on TCP and UDP 127.0.0.1:P (and TCP [::1]:P when the host
 *       has IPv6), on the unix socket UNIX_PATH and on the abstract unix
 *       socket "@ember-escape-test"; writes P to PORT_FILE, then appends a
 *       line to LOG_FILE for every connection or datagram until killed.
 *
 * It never runs a guest itself and must not depend on anything but libc. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int run(int argc, char **argv)
{
	if (argc < 6 || strcmp(argv[4], "--") != 0) {
		fprintf(stderr, "usage: runner run LIMIT_S INFO_FILE -- COMMAND [ARGS...]\n");
		return 2;
	}
	double limit = atof(argv[2]);
	const char *info_path = argv[3];
	long long start = now_ms();
	pid_t pid = fork();
	if (pid < 0) {
		perror("runner: fork");
		return 2;
	}
	if (pid == 0) {
		setpgid(0, 0);
		execvp(argv[5], argv + 5);
		fprintf(stderr, "runner: exec %s: %s\n", argv[5], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid);
	int status = 0, killed = 0;
	struct rusage usage;
	memset(&usage, 0, sizeof usage);
	for (;;) {
		pid_t r = wait4(pid, &status, WNOHANG, &usage);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			perror("runner: wait4");
			return 2;
		}
		if (!killed && now_ms() - start > (long long)(limit * 1000)) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			killed = 1;
		}
		struct timespec nap = { 0, 5 * 1000 * 1000 };
		nanosleep(&nap, NULL);
	}
	/* Whatever the command left in its process group goes too. */
	kill(-pid, SIGKILL);
	long long wall = now_ms() - start;
	int exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	FILE *info = fopen(info_path, "w");
	if (info) {
		fprintf(info, "exit=%d\nsignal=%d\nkilled=%d\nrss_kb=%ld\nwall_ms=%lld\n", exit_code,
			sig, killed, usage.ru_maxrss, wall);
		fclose(info);
	}
	if (killed)
		fprintf(stderr, "runner: killed after %.0f s\n", limit);
	return sig ? 128 + sig : exit_code;
}

static void log_event(const char *log_path, const char *what)
{
	FILE *log = fopen(log_path, "a");
	if (log) {
		fprintf(log, "%s\n", what);
		fclose(log);
	}
}

static int listen_all(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: runner listen PORT_FILE LOG_FILE UNIX_PATH\n");
		return 2;
	}
	const char *port_path = argv[2], *log_path = argv[3], *unix_path = argv[4];
	struct pollfd fds[5];
	const char *names[5];
	int count = 0;

	int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof in;
	if (tcp < 0 || bind(tcp, (struct sockaddr *)&in, sizeof in) < 0 || listen(tcp, 16) < 0 ||
	    getsockname(tcp, (struct sockaddr *)&in, &len) < 0) {
		perror("runner: tcp listener");
		return 1;
	}
	int port = ntohs(in.sin_port);
	fds[count] = (struct pollfd){ .fd = tcp, .events = POLLIN };
	names[count++] = "tcp 127.0.0.1";

	int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (udp >= 0 && bind(udp, (struct sockaddr *)&in, sizeof in) == 0) {
		fds[count] = (struct pollfd){ .fd = udp, .events = POLLIN };
		names[count++] = "udp 127.0.0.1";
	}
	int tcp6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons((unsigned short)port),
				    .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	if (tcp6 >= 0 && bind(tcp6, (struct sockaddr *)&in6, sizeof in6) == 0 && listen(tcp6, 16) == 0) {
		fds[count] = (struct pollfd){ .fd = tcp6, .events = POLLIN };
		names[count++] = "tcp [::1]";
	}
	int un = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un ua = { .sun_family = AF_UNIX };
	strncpy(ua.sun_path, unix_path, sizeof ua.sun_path - 1);
	unlink(unix_path);
	if (un >= 0 && bind(un, (struct sockaddr *)&ua, sizeof ua) == 0 && listen(un, 16) == 0) {
		fds[count] = (struct pollfd){ .fd = un, .events = POLLIN };
		names[count++] = "unix socket";
	}
	int abs_sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un aa = { .sun_family = AF_UNIX };
	memcpy(aa.sun_path, "\0ember-escape-test", 18);
	socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 18);
	if (abs_sock >= 0 && bind(abs_sock, (struct sockaddr *)&aa, alen) == 0 &&
	    listen(abs_sock, 16) == 0) {
		fds[count] = (struct pollfd){ .fd = abs_sock, .events = POLLIN };
		names[count++] = "abstract unix socket";
	}

	FILE *pf = fopen(port_path, "w");
	if (!pf) {
		perror("runner: port file");
		return 1;
	}
	fprintf(pf, "%d\n", port);
	fclose(pf);

	for (;;) {
		if (poll(fds, (nfds_t)count, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		for (int i = 0; i < count; i++) {
			if (!(fds[i].revents & POLLIN))
				continue;
			char line[128];
			if (fds[i].fd == udp) {
				char buf[512];
				ssize_t n = recv(udp, buf, sizeof buf, 0);
				snprintf(line, sizeof line, "%s: datagram of %zd bytes", names[i], n);
			} else {
				int c = accept4(fds[i].fd, NULL, NULL, SOCK_CLOEXEC);
				if (c >= 0)
					close(c);
				snprintf(line, sizeof line, "%s: connection", names[i]);
			}
			log_event(log_path, line);
		}
	}
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1 && strcmp(argv[1], "run") == 0)
		return run(argc, argv);
	if (argc > 1 && strcmp(argv[1], "listen") == 0)
		return listen_all(argc, argv);
	fprintf(stderr, "usage: runner run|listen ...\n");
	return 2;
}
