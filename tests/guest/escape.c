/* Guest test of the VM's walls: every path, link and socket that would
 * leave the guest's layers fails or stays inside them.
 *
 * The VM suite runs it with its own root and task (see files.c), plus
 *   /etc/shadow            "ember-root-shadow\n"
 *   /var/task/shadow  ->   /etc/shadow
 *   /var/task/up      ->   ../../..
 *   /var/task/hostlink ->  an absolute host directory holding host-secret.txt
 * and the arguments PORT UNIX_PATH: a TCP and UDP port on the host's
 * 127.0.0.1 and a host unix socket, both listening; the suite checks
 * afterwards that nothing reached them, nor the file /tmp/ember-escape-probe
 * on the host, nor the VMM's environment variable EMBER_HOST_SECRET. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "guest_test.h"

#define PASSWD "ember-root-marker\n"
#define SHADOW "ember-root-shadow\n"

/* Reads a small file; returns its length or -errno. */
static long slurp(const char *path, char *buf, size_t size)
{
	long fd = sys(SYS_open, path, O_RDONLY);
	if (fd < 0)
		return fd;
	long n = sys(SYS_read, fd, buf, size - 1);
	sys(SYS_close, fd);
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

/* The path opens and holds exactly `want`. */
static void check_content(const char *name, const char *path, const char *want)
{
	char buf[256];
	long n = slurp(path, buf, sizeof buf);
	CHECKF(name, n == (long)strlen(want) && strcmp(buf, want) == 0, "got %ld: %.40s", n,
	       n > 0 ? buf : "");
}

/* The path fails to open, or holds exactly `allowed` (a file of the layers). */
static void check_fails_or(const char *name, const char *path, const char *allowed)
{
	char buf[256];
	long n = slurp(path, buf, sizeof buf);
	CHECKF(name, n < 0 || (allowed && strcmp(buf, allowed) == 0), "opened, %ld bytes: %.40s", n,
	       n > 0 ? buf : "");
}

static void check_open_fails(const char *name, const char *path)
{
	long fd = sys(SYS_open, path, O_RDONLY);
	if (fd >= 0)
		sys(SYS_close, fd);
	CHECKF(name, fd < 0, "opened as fd %ld", fd);
}

static int dir_lists(const char *path, const char *name)
{
	char buf[8192];
	long fd = sys(SYS_open, path, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return 0;
	int found = 0;
	long n;
	while ((n = sys(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
		for (long off = 0; off < n;) {
			unsigned short reclen;
			memcpy(&reclen, buf + off + 16, sizeof reclen);
			if (reclen == 0)
				break;
			if (strcmp(buf + off + 19, name) == 0)
				found = 1;
			off += reclen;
		}
	}
	sys(SYS_close, fd);
	return found;
}

static void test_paths(void)
{
	check_content("path: /var/task/../../etc/passwd is the root layer's",
		      "/var/task/../../etc/passwd", PASSWD);
	check_content("path: /../../../etc/passwd is the root layer's", "/../../../etc/passwd",
		      PASSWD);
	check_content("path: /tmp/../etc/passwd", "/tmp/../etc/passwd", PASSWD);
	check_content("path: /dev/../etc/passwd", "/dev/../etc/passwd", PASSWD);
	check_content("path: deep dotdot from task",
		      "/var/task/sub/../../../../../../../../etc/passwd", PASSWD);
	long dirfd = sys(SYS_open, "/var/task", O_RDONLY | O_DIRECTORY);
	long fd = sys(SYS_openat, dirfd, "../../../../../../etc/passwd", O_RDONLY);
	char buf[256] = { 0 };
	long n = fd >= 0 ? sys(SYS_read, fd, buf, sizeof buf - 1) : fd;
	CHECKF("path: openat dotdot from the task dir stays in the layers",
	       n < 0 || strcmp(buf, PASSWD) == 0, "got %ld: %.40s", n, buf);
	if (fd >= 0)
		sys(SYS_close, fd);
	sys(SYS_close, dirfd);
	sys(SYS_chdir, "/var/task/sub");
	check_content("path: relative dotdot from cwd", "../../../../../etc/passwd", PASSWD);
	sys(SYS_chdir, "/");

	check_open_fails("host: /etc/hostname is not reachable", "/etc/hostname");
	check_open_fails("host: /work is not reachable", "/work");
	check_open_fails("host: /root is not reachable", "/root");
	check_open_fails("host: /etc/os-release is not reachable", "/etc/os-release");
	check_open_fails("host: dotdot to /etc/hostname", "/var/task/../../../../etc/hostname");
}

static void test_links(void)
{
	char buf[256];
	check_fails_or("link: task/shadow -> /etc/shadow stays in the layers", "/var/task/shadow",
		       SHADOW);
	check_fails_or("link: task/up/etc/passwd stays in the layers", "/var/task/up/etc/passwd",
		       PASSWD);
	check_open_fails("link: task/up/etc/hostname is not the host's", "/var/task/up/etc/hostname");
	check_open_fails("link: task/up/work is not the host's", "/var/task/up/work");
	CHECK("link: listing task/up shows no host directory",
	      !dir_lists("/var/task/up", "work") && !dir_lists("/var/task/up", "root"));
	check_open_fails("link: task/hostlink to a host directory fails", "/var/task/hostlink");
	check_open_fails("link: through task/hostlink fails", "/var/task/hostlink/host-secret.txt");
	memset(buf, 0, sizeof buf);
	long n = sys(SYS_readlink, "/var/task/up", buf, sizeof buf - 1);
	CHECKF("link: readlink shows the link text", n == 8 && strcmp(buf, "../../..") == 0,
	       "got %ld: %s", n, buf);
	long fd = sys(SYS_open, "/var/task/up", O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		sys(SYS_fchdir, fd);
		sys(SYS_close, fd);
	}
	check_open_fails("link: cwd through task/up cannot reach the host", "../etc/hostname");
	sys(SYS_chdir, "/");

	/* A link made in /tmp (if /tmp has links at all) stays inside too. */
	long s = sys(SYS_symlink, "/../../../../etc/hostname", "/tmp/hostlink");
	if (s == 0)
		check_open_fails("link: /tmp link to ../../etc/hostname fails", "/tmp/hostlink");
	else
		CHECKF("link: /tmp link to ../../etc/hostname fails", s < 0, "got %ld", s);
	s = sys(SYS_symlink, "/var/task/up", "/tmp/uplink");
	if (s == 0)
		check_open_fails("link: /tmp link chain to the host fails",
				 "/tmp/uplink/etc/hostname");
	else
		CHECKF("link: /tmp link chain to the host fails", s < 0, "got %ld", s);
	fd = sys(SYS_open, "/tmp/ember-escape-probe", O_CREAT | O_WRONLY | O_TRUNC, 0644);
	CHECK_OK("tmp: probe file created in the guest's /tmp", fd);
	sys(SYS_write, fd, "probe", 5);
	sys(SYS_close, fd);
}

static void test_special_files(void)
{
	check_open_fails("dev: /proc/self/mem", "/proc/self/mem");
	long fd = sys(SYS_open, "/proc/self/mem", O_RDWR);
	CHECKF("dev: /proc/self/mem read-write", fd < 0, "opened as fd %ld", fd);
	check_open_fails("dev: /dev/kvm", "/dev/kvm");
	check_open_fails("dev: /dev/mem", "/dev/mem");
	check_open_fails("dev: /dev/kmem", "/dev/kmem");
	check_open_fails("dev: /dev/port", "/dev/port");
	check_open_fails("dev: /dev/vda", "/dev/vda");
	check_open_fails("dev: /dev/sda", "/dev/sda");
	check_open_fails("dev: /proc/kcore", "/proc/kcore");
	check_open_fails("dev: /proc/1/root/etc/hostname", "/proc/1/root/etc/hostname");
	check_open_fails("dev: /proc/self/root/etc/hostname", "/proc/self/root/etc/hostname");
	check_open_fails("dev: /proc/self/cwd/etc/hostname", "/proc/self/cwd/etc/hostname");
	check_open_fails("dev: /proc/1/environ", "/proc/1/environ");
	check_open_fails("dev: /sys/kernel", "/sys/kernel");
	char buf[256] = { 0 };
	long n = sys(SYS_readlink, "/proc/self/exe", buf, sizeof buf - 1);
	CHECKF("dev: /proc/self/exe names the guest path", n > 0 && strcmp(buf, "/bin/escape") == 0,
	       "got %ld: %s", n, buf);
	CHECK("env: the VMM's environment does not leak", getenv("EMBER_HOST_SECRET") == NULL);
}

/* A socket of (domain, type) to addr: socket() or connect() must fail. */
static void check_connect_fails(const char *name, int domain, int type, const void *addr,
				socklen_t len)
{
	long s = sys(SYS_socket, domain, type | SOCK_CLOEXEC, 0);
	if (s < 0) {
		gt_report(name, 1, "");
		return;
	}
	long c = sys(SYS_connect, s, addr, len);
	long w = c == 0 ? sys(SYS_sendto, s, "PING\r\n", 6, MSG_NOSIGNAL, 0, 0) : c;
	sys(SYS_close, s);
	CHECKF(name, c < 0, "connect returned %ld, then a send %ld", c, w);
}

static void test_sockets(int port, const char *unix_path)
{
	struct sockaddr_in in = { .sin_family = AF_INET };

	in.sin_port = htons(6379);
	in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	check_connect_fails("net: tcp 127.0.0.1:6379", AF_INET, SOCK_STREAM, &in, sizeof in);
	in.sin_port = htons(53);
	inet_pton(AF_INET, "8.8.8.8", &in.sin_addr);
	check_connect_fails("net: tcp 8.8.8.8:53", AF_INET, SOCK_STREAM, &in, sizeof in);
	check_connect_fails("net: udp connect 8.8.8.8:53", AF_INET, SOCK_DGRAM, &in, sizeof in);
	in.sin_port = htons((unsigned short)port);
	in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	check_connect_fails("net: tcp to the host listener", AF_INET, SOCK_STREAM, &in, sizeof in);
	in.sin_addr.s_addr = htonl(INADDR_ANY);
	check_connect_fails("net: tcp to 0.0.0.0 listener port", AF_INET, SOCK_STREAM, &in, sizeof in);

	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons((unsigned short)port) };
	in6.sin6_addr = in6addr_loopback;
	check_connect_fails("net: tcp [::1] listener port", AF_INET6, SOCK_STREAM, &in6, sizeof in6);

	/* UDP to the host listener: whatever sendto answers, the suite checks
	 * that no datagram arrived. */
	long s = sys(SYS_socket, AF_INET, SOCK_DGRAM, 0);
	in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s >= 0) {
		sys(SYS_sendto, s, "escape", 6, 0, &in, sizeof in);
		sys(SYS_close, s);
	}
	CHECK("net: udp datagram sent (the suite checks it never arrives)", 1);

	struct sockaddr_un un = { .sun_family = AF_UNIX };
	strncpy(un.sun_path, unix_path, sizeof un.sun_path - 1);
	check_connect_fails("net: host unix socket", AF_UNIX, SOCK_STREAM, &un, sizeof un);
	struct sockaddr_un abstract = { .sun_family = AF_UNIX };
	memcpy(abstract.sun_path, "\0ember-escape-test", 18);
	check_connect_fails("net: host abstract unix socket", AF_UNIX, SOCK_STREAM, &abstract,
			    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 18));

	/* Netlink would describe the host's interfaces: nothing may come back. */
	s = sys(SYS_socket, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	long got = -1;
	if (s >= 0) {
		struct {
			struct nlmsghdr h;
			struct rtgenmsg g;
		} req = {
			.h = { .nlmsg_len = sizeof req, .nlmsg_type = RTM_GETLINK,
			       .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1 },
			.g = { .rtgen_family = AF_UNSPEC },
		};
		struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
		sys(SYS_sendto, s, &req, sizeof req, 0, &kernel, sizeof kernel);
		static char reply[16384];
		got = sys(SYS_recvfrom, s, reply, sizeof reply, MSG_DONTWAIT, 0, 0);
		sys(SYS_close, s);
	}
	CHECKF("net: netlink tells nothing about the host", got <= 0, "received %ld bytes", got);
	s = sys(SYS_socket, AF_PACKET, SOCK_RAW, 0x0300 /* htons(ETH_P_ALL) */);
	got = -1;
	if (s >= 0) {
		static char frame[2048];
		got = sys(SYS_recvfrom, s, frame, sizeof frame, MSG_DONTWAIT, 0, 0);
		sys(SYS_close, s);
	}
	CHECKF("net: packet socket sees nothing", got <= 0, "received %ld bytes", got);
}

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 1;
	const char *unix_path = argc > 2 ? argv[2] : "/nonexistent.sock";
	test_paths();
	test_links();
	test_special_files();
	test_sockets(port, unix_path);
	return gt_done();
}
