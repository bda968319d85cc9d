/* The client side of the ember-vmm control socket: request encoding,
 * validation of everything the VMM sends back, and deadline-bounded frame
 * I/O over a Unix stream socket.  Contracts in control_client.h.  All I/O
 * is non-blocking behind poll() against one CLOCK_MONOTONIC deadline, so a
 * VMM that stops answering — or trickles one byte at a time — costs the
 * client at most its timeout. */
#include "control_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define HEADER_SIZE sizeof(struct ember_control_header)

_Static_assert(CTL_RESPONSE_PAYLOAD_MAX <= UINT32_MAX, "payload bound fits the length field");

/* ---- little-endian fields ------------------------------------------------ */

static void store_le16(unsigned char *p, uint16_t value)
{
	p[0] = (unsigned char)value;
	p[1] = (unsigned char)(value >> 8);
}

static void store_le32(unsigned char *p, uint32_t value)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(value >> (8 * i));
}

static uint16_t load_le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t load_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_le64(const unsigned char *p)
{
	return (uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32;
}

/* ---- pure half ------------------------------------------------------------ */

void ctl_encode_request_header(uint16_t command, uint32_t payload_length,
			       unsigned char out[sizeof(struct ember_control_header)])
{
	store_le32(out + offsetof(struct ember_control_header, magic), EMBER_CONTROL_REQUEST_MAGIC);
	store_le16(out + offsetof(struct ember_control_header, version), EMBER_CONTROL_VERSION);
	store_le16(out + offsetof(struct ember_control_header, code), command);
	store_le32(out + offsetof(struct ember_control_header, payload_length), payload_length);
	store_le32(out + offsetof(struct ember_control_header, reserved), 0);
}

int ctl_parse_response_header(const unsigned char bytes[sizeof(struct ember_control_header)],
			      uint16_t command, uint16_t *status, uint32_t *payload_length,
			      struct ember_error *err)
{
	uint32_t magic = load_le32(bytes + offsetof(struct ember_control_header, magic));
	uint16_t version = load_le16(bytes + offsetof(struct ember_control_header, version));
	uint16_t code = load_le16(bytes + offsetof(struct ember_control_header, code));
	uint32_t length = load_le32(bytes + offsetof(struct ember_control_header, payload_length));

	if (magic != EMBER_CONTROL_RESPONSE_MAGIC)
		return ember_error_set(err, "response has wrong magic 0x%08x (expected 0x%08x, \"EMBR\")",
				       magic, EMBER_CONTROL_RESPONSE_MAGIC);
	if (version != EMBER_CONTROL_VERSION)
		return ember_error_set(err, "response has protocol version %u; this client speaks %u",
				       version, EMBER_CONTROL_VERSION);
	switch (code) {
	case EMBER_CONTROL_OK:
	case EMBER_CONTROL_NOT_ALLOWED:
	case EMBER_CONTROL_BAD_REQUEST:
	case EMBER_CONTROL_FAILED: break;
	default: return ember_error_set(err, "response has unknown status %u", code);
	}
	if (code == EMBER_CONTROL_OK && command == EMBER_CONTROL_STATS) {
		if (length != sizeof(struct ember_control_stats))
			return ember_error_set(err, "stats response has a %u-byte payload; expected %zu",
					       length, sizeof(struct ember_control_stats));
	} else if (length > EMBER_CONTROL_MESSAGE_MAX) {
		return ember_error_set(err, "response payload_length %u exceeds the %d-byte message limit",
				       length, EMBER_CONTROL_MESSAGE_MAX);
	}
	*status = code;
	*payload_length = length;
	return 0;
}

int ctl_parse_stats(const unsigned char *payload, size_t length, struct ember_control_stats *stats,
		    struct ember_error *err)
{
	if (length != sizeof(struct ember_control_stats))
		return ember_error_set(err, "stats payload is %zu bytes; expected %zu", length,
				       sizeof(struct ember_control_stats));
#define FIELD64(name) load_le64(payload + offsetof(struct ember_control_stats, name))
#define FIELD32(name) load_le32(payload + offsetof(struct ember_control_stats, name))
	stats->guest_memory_bytes = FIELD64(guest_memory_bytes);
	stats->host_rss_bytes = FIELD64(host_rss_bytes);
	stats->host_private_bytes = FIELD64(host_private_bytes);
	stats->dirty_pages = FIELD64(dirty_pages);
	stats->syscalls = FIELD64(syscalls);
	stats->state = FIELD32(state);
	stats->platform = FIELD32(platform);
#undef FIELD64
#undef FIELD32
	return 0;
}

const char *ctl_platform_name(uint32_t platform)
{
	switch (platform) {
	case EMBER_CONTROL_PLATFORM_KVM: return "kvm";
	case EMBER_CONTROL_PLATFORM_SYSTRAP: return "systrap";
	default: return "unknown";
	}
}

const char *ctl_state_name(uint32_t state)
{
	switch (state) {
	case EMBER_VM_RUNNING: return "running";
	case EMBER_VM_PAUSED: return "paused";
	case EMBER_VM_EXITED: return "exited";
	default: return "unknown";
	}
}

size_t ctl_escape_message(const unsigned char *message, size_t length, char *out, size_t out_size)
{
	static const char hex[] = "0123456789abcdef";
	size_t used = 0;
	for (size_t i = 0; i < length; i++) {
		unsigned char byte = message[i];
		char escaped[4];
		size_t n;
		if (byte == '\\') {
			escaped[0] = escaped[1] = '\\';
			n = 2;
		} else if (byte >= 0x20 && byte <= 0x7e) {
			escaped[0] = (char)byte;
			n = 1;
		} else {
			escaped[0] = '\\';
			escaped[1] = 'x';
			escaped[2] = hex[byte >> 4];
			escaped[3] = hex[byte & 0xf];
			n = 4;
		}
		if (out_size - used <= n)
			break; /* keep room for the NUL; never split an escape */
		memcpy(out + used, escaped, n);
		used += n;
	}
	out[used] = '\0';
	return used;
}

/* Appends the component `part` of `length` bytes to the path in `out`
 * (currently `*used` bytes), skipping "" and "."; returns -1 if it would
 * not fit in `limit` bytes. */
static int append_component(char *out, size_t *used, size_t limit, const char *part, size_t length)
{
	if (length == 0 || (length == 1 && part[0] == '.'))
		return 0;
	if (*used + 1 + length > limit)
		return -1;
	out[(*used)++] = '/';
	memcpy(out + *used, part, length);
	*used += length;
	return 0;
}

/* Appends every component of `path` (split on '/'). */
static int append_path(char *out, size_t *used, size_t limit, const char *path)
{
	while (*path) {
		const char *end = strchrnul(path, '/');
		if (append_component(out, used, limit, path, (size_t)(end - path)) < 0)
			return -1;
		path = *end ? end + 1 : end;
	}
	return 0;
}

int ctl_absolute_path(const char *cwd, const char *path, char *out, size_t out_size, struct ember_error *err)
{
	if (out_size == 0)
		return ember_error_set(err, "no room for the path");
	if (path[0] == '\0')
		return ember_error_set(err, "the path is empty");
	if (path[0] != '/' && cwd[0] != '/')
		return ember_error_set(err, "the working directory `%s` is not absolute", cwd);
	size_t limit = out_size - 1;
	if (limit > EMBER_CONTROL_PATH_MAX)
		limit = EMBER_CONTROL_PATH_MAX;
	size_t used = 0;
	if ((path[0] != '/' && append_path(out, &used, limit, cwd) < 0) ||
	    append_path(out, &used, limit, path) < 0)
		return ember_error_set(err, "the absolute path is longer than %zu bytes", limit);
	if (used == 0)
		out[used++] = '/'; /* the root itself; limit >= 1 unless out_size == 1 */
	if (used > limit)
		return ember_error_set(err, "the absolute path is longer than %zu bytes", limit);
	out[used] = '\0';
	return 0;
}

/* ---- I/O half ------------------------------------------------------------- */

/* Milliseconds left before the deadline, rounded up; 0 once it has passed. */
static int remaining_milliseconds(const struct ctl_connection *connection)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t left_ns = (int64_t)(connection->deadline.tv_sec - now.tv_sec) * 1000000000 +
			  (connection->deadline.tv_nsec - now.tv_nsec);
	if (left_ns <= 0)
		return 0;
	int64_t ms = (left_ns + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* Waits until the socket is ready for `events` or the deadline passes. */
static int wait_ready(struct ctl_connection *connection, short events, struct ember_error *err)
{
	for (;;) {
		int ms = remaining_milliseconds(connection);
		if (ms == 0)
			return ember_error_set(err, "no answer within %g s (see --timeout)",
					       connection->timeout_seconds);
		struct pollfd ready = {.fd = connection->fd, .events = events};
		int n = poll(&ready, 1, ms);
		if (n < 0 && errno != EINTR)
			return ember_error_errno(err, errno, "poll");
		if (n > 0)
			return 0; /* readable, writable, hung up or failed: the next call says which */
	}
}

/* Writes all `length` bytes of `bytes`. */
static int send_all(struct ctl_connection *connection, const unsigned char *bytes, size_t length,
		    struct ember_error *err)
{
	size_t sent = 0;
	while (sent < length) {
		if (wait_ready(connection, POLLOUT, err) < 0)
			return -1;
		ssize_t n = send(connection->fd, bytes + sent, length - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return ember_error_errno(err, errno, "write");
		}
		sent += (size_t)n;
	}
	return 0;
}

/* Reads exactly `length` bytes into `bytes`; an early end of the stream is
 * an error naming how much arrived. */
static int receive_all(struct ctl_connection *connection, unsigned char *bytes, size_t length,
		       struct ember_error *err)
{
	size_t received = 0;
	while (received < length) {
		if (wait_ready(connection, POLLIN, err) < 0)
			return -1;
		ssize_t n = recv(connection->fd, bytes + received, length - received, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return ember_error_errno(err, errno, "read");
		}
		if (n == 0) {
			if (received == 0)
				return ember_error_set(err,
						       "the VMM closed the connection without answering");
			return ember_error_set(err, "the VMM closed the connection after %zu of %zu bytes",
					       received, length);
		}
		received += (size_t)n;
	}
	return 0;
}

int ctl_connect(struct ctl_connection *connection, const char *socket_path, double timeout_seconds,
		struct ember_error *err)
{
	connection->fd = -1;
	connection->timeout_seconds = timeout_seconds;
	if (!(timeout_seconds > 0 && timeout_seconds <= 1e6))
		return ember_error_set(err, "connect `%s`: timeout %g s is out of range", socket_path,
				       timeout_seconds);
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	size_t path_length = strlen(socket_path);
	if (path_length == 0)
		return ember_error_set(err, "connect: the socket path is empty");
	if (path_length >= sizeof address.sun_path)
		return ember_error_set(err, "connect `%s`: the socket path is longer than %zu bytes",
				       socket_path, sizeof address.sun_path - 1);
	memcpy(address.sun_path, socket_path, path_length + 1);

	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t timeout_ns = (int64_t)(timeout_seconds * 1e9);
	int64_t deadline_ns = now.tv_nsec + timeout_ns % 1000000000;
	connection->deadline.tv_sec =
		now.tv_sec + (time_t)(timeout_ns / 1000000000) + (time_t)(deadline_ns / 1000000000);
	connection->deadline.tv_nsec = (long)(deadline_ns % 1000000000);

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ember_error_errno(err, errno, "connect `%s`: socket", socket_path);
	/* A Unix connect() blocks while the listener's queue is full; the send
	 * timeout bounds that wait (the rest of the I/O polls the deadline). */
	struct timeval send_timeout = {
		.tv_sec = (time_t)(timeout_ns / 1000000000),
		.tv_usec = (suseconds_t)(timeout_ns % 1000000000 / 1000),
	};
	if (send_timeout.tv_sec == 0 && send_timeout.tv_usec == 0)
		send_timeout.tv_usec = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout) < 0) {
		int saved = errno;
		close(fd);
		return ember_error_errno(err, saved, "connect `%s`: set the send timeout", socket_path);
	}
	int result;
	do
		result = connect(fd, (struct sockaddr *)&address, sizeof address);
	while (result < 0 && errno == EINTR);
	if (result < 0) {
		int saved = errno;
		close(fd);
		if (saved == EAGAIN || saved == EWOULDBLOCK || saved == EINPROGRESS)
			return ember_error_set(err, "connect `%s`: not accepted within %g s (see --timeout)",
					       socket_path, timeout_seconds);
		return ember_error_errno(err, saved, "connect `%s`", socket_path);
	}
	connection->fd = fd;
	return 0;
}

int ctl_send_request(struct ctl_connection *connection, uint16_t command, const void *payload,
		     size_t payload_length, struct ember_error *err)
{
	unsigned char frame[HEADER_SIZE + EMBER_CONTROL_PATH_MAX];
	if (payload_length > EMBER_CONTROL_PATH_MAX)
		return ember_error_set(err, "send request: a %zu-byte payload exceeds the %d-byte limit",
				       payload_length, EMBER_CONTROL_PATH_MAX);
	ctl_encode_request_header(command, (uint32_t)payload_length, frame);
	if (payload_length > 0)
		memcpy(frame + HEADER_SIZE, payload, payload_length);
	if (send_all(connection, frame, HEADER_SIZE + payload_length, err) < 0)
		return ember_error_wrap(err, "send request");
	return 0;
}

int ctl_receive_response(struct ctl_connection *connection, uint16_t command, struct ctl_response *response,
			 struct ember_error *err)
{
	unsigned char header[HEADER_SIZE];
	if (receive_all(connection, header, sizeof header, err) < 0)
		return ember_error_wrap(err, "read response header");
	if (ctl_parse_response_header(header, command, &response->status, &response->payload_length, err) < 0)
		return -1;
	/* Bounded by ctl_parse_response_header(); checked again where it is used. */
	if (response->payload_length > sizeof response->payload)
		return ember_error_set(err, "response payload_length %u is too large",
				       response->payload_length);
	if (receive_all(connection, response->payload, response->payload_length, err) < 0)
		return ember_error_wrap(err, "read response payload");
	return 0;
}

void ctl_close(struct ctl_connection *connection)
{
	if (connection->fd >= 0)
		close(connection->fd);
	connection->fd = -1;
}

int ctl_command(const char *socket_path, uint16_t command, const char *path, double timeout_seconds,
		struct ember_error *err)
{
	struct ctl_connection connection;
	struct ctl_response response;
	if (ctl_connect(&connection, socket_path, timeout_seconds, err) < 0)
		return -1;
	int rc = ctl_send_request(&connection, command, path, path ? strlen(path) : 0, err);
	if (rc == 0)
		rc = ctl_receive_response(&connection, command, &response, err);
	ctl_close(&connection);
	if (rc == 0 && response.status != EMBER_CONTROL_OK) {
		char message[CTL_ESCAPED_MESSAGE_MAX];
		ctl_escape_message(response.payload, response.payload_length, message, sizeof message);
		rc = ember_error_set(err, "the VMM answered %s to command %u: %s",
				     response.status == EMBER_CONTROL_NOT_ALLOWED ? "not allowed" : "failure",
				     command, message);
	}
	return rc;
}
