/* Socket system calls.  A microVM has no network: a guest may create a
 * socket, but it reaches nothing — connecting to loopback is refused as if
 * nothing listened, any other address is unreachable, and no socket can
 * listen.  (The Runtime API connection of a later issue will be the one
 * exception.)  Every argument is still checked as Linux would. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "syscalls.h"

#define SOCKADDR_MAX 128

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
	struct vmm_file *file = vmm_file_new(VMM_FILE_SOCKET, O_RDWR | (flags & SOCK_NONBLOCK ? O_NONBLOCK : 0));
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
	return is_loopback((int)family, address, args[2]) ? -ECONNREFUSED : -ENETUNREACH;
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

SYSCALL(sendto)
{
	int64_t error;
	struct vmm_file *file = socket_of(process, args[0], &error);
	if (!file)
		return error;
	if (!guest_pointer(process, args[1], args[2]))
		return -EFAULT;
	if (args[4]) {
		uint8_t address[SOCKADDR_MAX];
		int64_t family = read_address(process, args[4], args[5], address);
		if (family < 0)
			return family;
		return is_loopback((int)family, address, args[5]) ? -ECONNREFUSED : -ENETUNREACH;
	}
	return file->socket_type == SOCK_STREAM ? -EPIPE : -EDESTADDRREQ;
}

SYSCALL(sendmsg)
{
	int64_t error;
	return socket_of(process, args[0], &error) ? -ENOTCONN : error;
}

SYSCALL(recvfrom)
{
	int64_t error;
	if (!socket_of(process, args[0], &error))
		return error;
	return guest_pointer(process, args[1], args[2]) ? -ENOTCONN : -EFAULT;
}

SYSCALL(recvmsg)
{
	int64_t error;
	return socket_of(process, args[0], &error) ? -ENOTCONN : error;
}

SYSCALL(shutdown)
{
	int64_t error;
	if (!socket_of(process, args[0], &error))
		return error;
	return args[1] > SHUT_RDWR ? -EINVAL : -ENOTCONN;
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
	if (args[1] != SOL_SOCKET)
		return -ENOPROTOOPT;
	int value;
	switch ((int)args[2]) {
	case SO_ERROR: value = 0; break;
	case SO_TYPE: value = file->socket_type; break;
	case SO_DOMAIN: value = file->socket_domain; break;
	case SO_RCVBUF:
	case SO_SNDBUF: value = 212992; break;
	default: return -ENOPROTOOPT;
	}
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
	return guest_pointer(process, args[3], (uint32_t)args[4]) ? 0 : -EFAULT;
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
	return socket_of(process, args[0], &error) ? -ENOTCONN : error;
}
