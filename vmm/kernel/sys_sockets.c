/* Socket system calls.  A microVM has no network: a guest may create a
 * socket, but it reaches nothing — connecting to loopback is refused as if
 * nothing listened, any other address is unreachable, and no socket can
 * listen.  The one exception is the AWS Lambda Runtime API: a TCP stream
 * to 127.0.0.1:9001 is forwarded, byte for byte, to the host Unix socket
 * given with --runtime-api.  Every argument is checked as Linux would. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "syscalls.h"

#define SOCKADDR_MAX        128
#define RUNTIME_API_PORT    9001
#define RUNTIME_API_ADDRESS 0x7f000001 /* 127.0.0.1 */
#define MSG_FLAGS_ALLOWED   (MSG_DONTWAIT | MSG_PEEK | MSG_WAITALL | MSG_NOSIGNAL | MSG_MORE | MSG_TRUNC)

static struct vmm_file *socket_of(struct vmm_process *process, uint64_t fd, int64_t *error)
{
	struct vmm_file *file = vmm_fd_get(&process->fds, fd);
	if (!file)
		*error = -EBADF;
	else if (file->kind != VMM_FILE_SOCKET)
		*error = -ENOTSOCK;
	else
		return file;
	return NULL;
}

SYSCALL(socket)
{
	int domain = (int)args[0];
	int type = (int)args[1] & 0xf;
	int flags = (int)args[1] & ~0xf;
	if (domain != AF_UNIX && domain != AF_INET && domain != AF_INET6)
		return -EAFNOSUPPORT;
	if (type != SOCK_STREAM && type != SOCK_DGRAM && type != SOCK_SEQPACKET)
		return -EINVAL;
	if (flags & ~(SOCK_CLOEXEC | SOCK_NONBLOCK))
		return -EINVAL;
	struct vmm_file *file =
		vmm_file_new(VMM_FILE_SOCKET, O_RDWR | (flags & SOCK_NONBLOCK ? O_NONBLOCK : 0));
	if (!file)
		return -ENOMEM;
	file->socket_domain = domain;
	file->socket_type = type;
	int fd = vmm_fd_install(&process->fds, file, 0, flags & SOCK_CLOEXEC);
	if (fd < 0)
		vmm_file_unref(file);
	return fd;
}

SYSCALL(socketpair)
{
	(void)process;
	(void)args;
	return -EOPNOTSUPP;
}

/* Copies and checks a socket address; returns its family or -errno. */
static int64_t read_address(struct vmm_process *process, uint64_t addr, uint64_t len,
			    uint8_t out[SOCKADDR_MAX])
{
	if (len < sizeof(sa_family_t) || len > SOCKADDR_MAX)
		return -EINVAL;
	if (guest_copy_in(process, out, addr, (size_t)len) < 0)
		return -EFAULT;
	sa_family_t family;
	memcpy(&family, out, sizeof family);
	return family;
}

static bool is_loopback(int family, const uint8_t *address, uint64_t len)
{
	if (family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in in;
		memcpy(&in, address, sizeof in);
		return (ntohl(in.sin_addr.s_addr) >> 24) == 127;
	}
	if (family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 in6;
		memcpy(&in6, address, sizeof in6);
		return IN6_IS_ADDR_LOOPBACK(&in6.sin6_addr);
	}
	return false;
}

static bool is_runtime_api(int family, const uint8_t *address, uint64_t len)
{
	if (family != AF_INET || len < sizeof(struct sockaddr_in))
		return false;
	struct sockaddr_in in;
	memcpy(&in, address, sizeof in);
	return ntohl(in.sin_addr.s_addr) == RUNTIME_API_ADDRESS && ntohs(in.sin_port) == RUNTIME_API_PORT;
}

/* Opens the host side of the Runtime API connection.  -errno. */
static int connect_host_side(struct vmm_process *process, struct vmm_file *file)
{
	if (!process->runtime_api_path)
		return -ECONNREFUSED; /* no Runtime API behind this VM */
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	if (strlen(process->runtime_api_path) >= sizeof address.sun_path)
		return -ECONNREFUSED;
	strcpy(address.sun_path, process->runtime_api_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -ENOBUFS;
	while (connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
		if (errno == EINTR)
			continue;
		close(fd);
		return -ECONNREFUSED;
	}
	file->host_fd = fd;
	return 0;
}

SYSCALL(connect)
{
	int64_t error;
	struct vmm_file *file = socket_of(process, args[0], &error);
	if (!file)
		return error;
	uint8_t address[SOCKADDR_MAX];
	int64_t family = read_address(process, args[1], args[2], address);
	if (family < 0)
		return family;
	if (family != file->socket_domain && !(family == AF_UNSPEC && file->socket_type == SOCK_DGRAM))
		return -EAFNOSUPPORT;
	if (family == AF_UNIX)
		return -ENOENT;
	if ((family == AF_INET && args[2] < sizeof(struct sockaddr_in)) ||
	    (family == AF_INET6 && args[2] < sizeof(struct sockaddr_in6)))
		return -EINVAL;
	if (file->socket_connected)
		return -EISCONN;
	if (file->socket_type == SOCK_STREAM && is_runtime_api((int)family, address, args[2])) {
		int rc = connect_host_side(process, file);
		if (rc < 0)
			return rc;
		file->socket_connected = true;
		return 0;
	}
	return is_loopback((int)family, address, args[2]) ? -ECONNREFUSED : -ENETUNREACH;
}

/* Remembers bytes sent and not yet answered (see fdtable.h). */
static void note_unanswered(struct vmm_file *file, const void *buf, size_t len)
{
	if (file->unanswered_overflow)
		return;
	if (len > VMM_UNANSWERED_MAX - file->unanswered_length) {
		file->unanswered_overflow = true;
		free(file->unanswered);
		file->unanswered = NULL;
		file->unanswered_length = 0;
		return;
	}
	if (!file->unanswered) {
		file->unanswered = malloc(VMM_UNANSWERED_MAX);
		if (!file->unanswered) {
			file->unanswered_overflow = true;
			return;
		}
	}
	memcpy(file->unanswered + file->unanswered_length, buf, len);
	file->unanswered_length += len;
}

int64_t vmm_socket_send(struct vmm_process *process, struct vmm_file *file, const void *buf, size_t len,
			int flags)
{
	if (!file->socket_connected)
		return file->socket_type == SOCK_STREAM ? -EPIPE : -EDESTADDRREQ;
	if (file->host_fd < 0)
		return -EPIPE; /* broken: the Runtime API behind it is gone */
	int host_flags =
		MSG_NOSIGNAL | ((file->flags & O_NONBLOCK) || (flags & MSG_DONTWAIT) ? MSG_DONTWAIT : 0);
	for (;;) {
		ssize_t n = send(file->host_fd, buf, len, host_flags | (flags & MSG_MORE));
		if (n >= 0) {
			note_unanswered(file, buf, (size_t)n);
			return n;
		}
		if (errno != EINTR)
			return errno == EAGAIN ? -EAGAIN : -EPIPE;
		int64_t interrupted = guest_wait_interrupted(process);
		if (interrupted)
			return interrupted;
	}
}

int64_t vmm_socket_receive(struct vmm_process *process, struct vmm_file *file, void *buf, size_t len,
			   int flags)
{
	if (!file->socket_connected)
		return -ENOTCONN;
	if (file->host_fd < 0)
		return 0; /* broken: end of stream */
	int host_flags = (flags & (MSG_PEEK | MSG_WAITALL | MSG_TRUNC)) |
			 ((file->flags & O_NONBLOCK) || (flags & MSG_DONTWAIT) ? MSG_DONTWAIT : 0);
	for (;;) {
		ssize_t n = recv(file->host_fd, buf, len, host_flags);
		if (n > 0 && !(flags & MSG_PEEK)) {
			file->unanswered_length = 0; /* the other side has answered */
			file->unanswered_overflow = false;
		}
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return errno == EAGAIN ? -EAGAIN : -ECONNRESET;
		int64_t interrupted = guest_wait_interrupted(process);
		if (interrupted)
			return interrupted;
	}
}

void vmm_socket_reconnect(struct vmm_process *process, struct vmm_file *file)
{
	file->host_fd = -1;
	if (connect_host_side(process, file) < 0)
		return;
	size_t done = 0;
	while (done < file->unanswered_length) {
		ssize_t n = send(file->host_fd, file->unanswered + done, file->unanswered_length - done,
				 MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(file->host_fd);
			file->host_fd = -1;
			return;
		}
		done += (size_t)n;
	}
}

SYSCALL(bind)
{
	int64_t error;
	if (!socket_of(process, args[0], &error))
		return error;
	uint8_t address[SOCKADDR_MAX];
	int64_t family = read_address(process, args[1], args[2], address);
	return family < 0 ? family : -EACCES;
}

SYSCALL(listen)
{
	int64_t error;
	return socket_of(process, args[0], &error) ? -EACCES : error;
}

SYSCALL(accept)
{
	int64_t error;
	return socket_of(process, args[0], &error) ? -EINVAL : error;
}

/* What one send or receive moves: the socket and its flags. */
struct socket_io {
	struct vmm_file *file;
	int flags;
};

static int64_t move_send(struct vmm_process *process, void *context, void *buf, size_t len, uint64_t done)
{
	(void)done;
	struct socket_io *io = context;
	return vmm_socket_send(process, io->file, buf, len, io->flags);
}

static int64_t move_receive(struct vmm_process *process, void *context, void *buf, size_t len, uint64_t done)
{
	(void)done;
	struct socket_io *io = context;
	return vmm_socket_receive(process, io->file, buf, len, io->flags);
}

/* Moves [addr, addr+len) of guest memory through the socket; a receive
 * takes one piece only, since a second could block. */
static int64_t socket_transfer(struct vmm_process *process, struct vmm_file *file, uint64_t addr, uint64_t len,
			       int flags, bool sending)
{
	struct socket_io context = {file, flags};
	struct guest_io io = {
		.move = sending ? move_send : move_receive,
		.context = &context,
		.to_guest = !sending,
		.piecewise = sending,
	};
	return guest_io(process, &io, addr, len);
}

SYSCALL(sendto)
{
	int64_t error;
	struct vmm_file *file = socket_of(process, args[0], &error);
	if (!file)
		return error;
	if (args[3] & ~(uint64_t)MSG_FLAGS_ALLOWED)
		return -EOPNOTSUPP;
	uint64_t len = args[2] > 0x7ffff000 ? 0x7ffff000 : args[2];
	if (guest_check(process, args[1], len) < 0)
		return -EFAULT;
	if (args[4] && !file->socket_connected) {
		uint8_t address[SOCKADDR_MAX];
		int64_t family = read_address(process, args[4], args[5], address);
		if (family < 0)
			return family;
		return is_loopback((int)family, address, args[5]) ? -ECONNREFUSED : -ENETUNREACH;
	}
	if (args[4] && file->socket_type == SOCK_STREAM)
		return -EISCONN;
	return socket_transfer(process, file, args[1], len, (int)args[3], true);
}

SYSCALL(recvfrom)
{
	int64_t error;
	struct vmm_file *file = socket_of(process, args[0], &error);
	if (!file)
		return error;
	if (args[3] & ~(uint64_t)MSG_FLAGS_ALLOWED)
		return -EOPNOTSUPP;
	uint64_t len = args[2] > 0x7ffff000 ? 0x7ffff000 : args[2];
	int64_t n = socket_transfer(process, file, args[1], len, (int)args[3], false);
	if (n >= 0 && args[4] && args[5]) {
		uint32_t address_len = 0; /* a stream socket reports no source address */
		if (guest_copy_out(process, args[5], &address_len, sizeof address_len) < 0)
			return -EFAULT;
	}
	return n;
}

/* sendmsg/recvmsg: the iovec array is copied once, every entry checked,
 * then moved in order; control messages are refused. */
static int64_t message_io(struct vmm_process *process, const uint64_t *args, bool sending)
{
	int64_t error;
	struct vmm_file *file = socket_of(process, args[0], &error);
	if (!file)
		return error;
	if (args[2] & ~(uint64_t)MSG_FLAGS_ALLOWED)
		return -EOPNOTSUPP;
	struct msghdr message;
	if (guest_copy_in(process, &message, args[1], sizeof message) < 0)
		return -EFAULT;
	if (message.msg_iovlen > 1024)
		return -EMSGSIZE;
	if (message.msg_controllen && sending)
		return -EOPNOTSUPP;
	if (message.msg_name && sending && !file->socket_connected)
		return -ENETUNREACH;
	struct iovec iov[1024];
	if (message.msg_iovlen && guest_copy_in(process, iov, (uint64_t)(uintptr_t)message.msg_iov,
						message.msg_iovlen * sizeof *iov) < 0)
		return -EFAULT;
	for (size_t i = 0; i < message.msg_iovlen; i++)
		if (guest_check(process, (uint64_t)(uintptr_t)iov[i].iov_base, iov[i].iov_len) < 0)
			return -EFAULT;
	int64_t done = 0;
	for (size_t i = 0; i < message.msg_iovlen; i++) {
		if (iov[i].iov_len == 0)
			continue;
		int64_t n = socket_transfer(process, file, (uint64_t)(uintptr_t)iov[i].iov_base, iov[i].iov_len,
					    (int)args[2], sending);
		if (n < 0)
			return done ? done : n;
		done += n;
		if ((size_t)n < iov[i].iov_len)
			break;
	}
	if (!sending) {
		/* No source address, no control data, no flags to report. */
		message.msg_namelen = 0;
		message.msg_controllen = 0;
		message.msg_flags = 0;
		if (guest_copy_out(process, args[1], &message, sizeof message) < 0)
			return -EFAULT;
	}
	return done;
}

SYSCALL(sendmsg)
{
	return message_io(process, args, true);
}
SYSCALL(recvmsg)
{
	return message_io(process, args, false);
}

SYSCALL(shutdown)
{
	int64_t error;
	struct vmm_file *file = socket_of(process, args[0], &error);
	if (!file)
		return error;
	if (args[1] > SHUT_RDWR)
		return -EINVAL;
	if (!file->socket_connected)
		return -ENOTCONN;
	if (file->host_fd >= 0)
		shutdown(file->host_fd, (int)args[1]);
	return 0;
}

SYSCALL(getsockopt)
{
	int64_t error;
	struct vmm_file *file = socket_of(process, args[0], &error);
	if (!file)
		return error;
	uint32_t len;
	if (guest_copy_in(process, &len, args[4], sizeof len) < 0)
		return -EFAULT;
	if ((int32_t)len < 0)
		return -EINVAL;
	int value;
	if (args[1] == IPPROTO_TCP && (args[2] == TCP_NODELAY || args[2] == TCP_MAXSEG)) {
		value = args[2] == TCP_NODELAY ? 1 : 65483;
		goto answer;
	}
	if (args[1] != SOL_SOCKET)
		return -ENOPROTOOPT;
	switch ((int)args[2]) {
	case SO_ERROR: value = 0; break;
	case SO_TYPE: value = file->socket_type; break;
	case SO_DOMAIN: value = file->socket_domain; break;
	case SO_RCVBUF:
	case SO_SNDBUF: value = 212992; break;
	case SO_KEEPALIVE: value = 0; break;
	case SO_ACCEPTCONN: value = 0; break;
	default: return -ENOPROTOOPT;
	}
answer:
	if (len > sizeof value)
		len = sizeof value;
	if (guest_copy_out(process, args[3], &value, len) < 0 ||
	    guest_copy_out(process, args[4], &len, sizeof len) < 0)
		return -EFAULT;
	return 0;
}

SYSCALL(setsockopt)
{
	int64_t error;
	if (!socket_of(process, args[0], &error))
		return error;
	if ((int32_t)args[4] < 0)
		return -EINVAL;
	return guest_check(process, args[3], (uint32_t)args[4]);
}

SYSCALL(getsockname)
{
	int64_t error;
	struct vmm_file *file = socket_of(process, args[0], &error);
	if (!file)
		return error;
	uint32_t len;
	if (guest_copy_in(process, &len, args[2], sizeof len) < 0)
		return -EFAULT;
	if ((int32_t)len < 0)
		return -EINVAL;
	struct sockaddr_storage address;
	memset(&address, 0, sizeof address);
	address.ss_family = (sa_family_t)file->socket_domain;
	uint32_t full = file->socket_domain == AF_INET    ? sizeof(struct sockaddr_in)
			: file->socket_domain == AF_INET6 ? sizeof(struct sockaddr_in6)
							  : sizeof(sa_family_t);
	uint32_t copy = len < full ? len : full;
	if (guest_copy_out(process, args[1], &address, copy) < 0 ||
	    guest_copy_out(process, args[2], &full, sizeof full) < 0)
		return -EFAULT;
	return 0;
}

SYSCALL(getpeername)
{
	int64_t error;
	struct vmm_file *file = socket_of(process, args[0], &error);
	if (!file)
		return error;
	if (!file->socket_connected)
		return -ENOTCONN;
	uint32_t len;
	if (guest_copy_in(process, &len, args[2], sizeof len) < 0)
		return -EFAULT;
	if ((int32_t)len < 0)
		return -EINVAL;
	struct sockaddr_in peer = {.sin_family = AF_INET,
				   .sin_port = htons(RUNTIME_API_PORT),
				   .sin_addr = {htonl(RUNTIME_API_ADDRESS)}};
	uint32_t full = sizeof peer, copy = len < full ? len : full;
	if (guest_copy_out(process, args[1], &peer, copy) < 0 ||
	    guest_copy_out(process, args[2], &full, sizeof full) < 0)
		return -EFAULT;
	return 0;
}
