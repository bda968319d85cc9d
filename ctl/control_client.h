/* The client side of the ember-vmm control socket (vmm/control_protocol.h),
 * used by ember-ctl and its tests.
 *
 * Two halves.  The pure half encodes request headers and validates what the
 * VMM sends back — response headers, stats payloads, messages — without any
 * I/O, so unit tests and the fuzz target reach it directly.  The I/O half
 * connects to the socket and moves one frame each way under one deadline:
 * every read and write, and the connect itself, ends in an error once the
 * timeout given to ctl_connect() has passed, so a hung VMM never hangs the
 * client.  Everything the VMM sends is treated as hostile: every length is
 * bounded before use and every message is escaped before it is printed.
 * Nothing here prints or exits; failures come back through struct
 * ember_error (common/error.h). */
#ifndef EMBER_CTL_CONTROL_CLIENT_H
#define EMBER_CTL_CONTROL_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "control_protocol.h"
#include "error.h"

/* The largest payload a valid response can carry. */
#define CTL_RESPONSE_PAYLOAD_MAX                                                                             \
	(EMBER_CONTROL_MESSAGE_MAX > sizeof(struct ember_control_stats)                                      \
		 ? EMBER_CONTROL_MESSAGE_MAX                                                                 \
		 : sizeof(struct ember_control_stats))

/* Room for a message escaped by ctl_escape_message(): four bytes per input
 * byte at most, plus the NUL. */
#define CTL_ESCAPED_MESSAGE_MAX (4 * EMBER_CONTROL_MESSAGE_MAX + 1)

/* ---- pure half: encoding and validation ---------------------------------- */

/* Writes a request header for `command` with `payload_length` into `out`
 * (16 bytes, little-endian, reserved 0). */
void ctl_encode_request_header(uint16_t command, uint32_t payload_length,
			       unsigned char out[sizeof(struct ember_control_header)]);

/* Validates a response header received for a request of `command`: the
 * magic, the version, a known status, and payload_length — exactly
 * sizeof(struct ember_control_stats) for STATS answered OK, at most
 * EMBER_CONTROL_MESSAGE_MAX otherwise.  The reserved field is ignored (the
 * VMM must send 0; the protocol version, not that field, marks changes).
 * On success stores the status and payload length and returns 0; returns -1
 * with `err` describing the first violation. */
int ctl_parse_response_header(const unsigned char bytes[sizeof(struct ember_control_header)],
			      uint16_t command, uint16_t *status, uint32_t *payload_length,
			      struct ember_error *err);

/* Decodes a STATS payload of `length` bytes into `stats` (host byte order).
 * Returns -1 unless `length` is exactly sizeof(struct ember_control_stats).
 * The state is not checked: ctl_state_name() names unknown ones. */
int ctl_parse_stats(const unsigned char *payload, size_t length, struct ember_control_stats *stats,
		    struct ember_error *err);

/* The JSON name of a VM state: "running", "paused", "exited", or "unknown"
 * for any other value.  The string is static. */
const char *ctl_state_name(uint32_t state);
/* "kvm", "systrap", or "unknown" for any other value of the stats field. */
const char *ctl_platform_name(uint32_t platform);

/* Copies the `length` bytes of `message` into `out` (of `out_size` bytes,
 * at least 1) as printable ASCII: bytes 0x20..0x7e except '\' stay, '\' becomes
 * "\\", every other byte (controls, NUL, non-ASCII) becomes "\xNN".  Always
 * NUL-terminates; truncates at a whole escape if `out` is too small (it
 * never is with CTL_ESCAPED_MESSAGE_MAX for a valid message).  Returns the
 * length written, without the NUL. */
size_t ctl_escape_message(const unsigned char *message, size_t length, char *out, size_t out_size);

/* Makes `path` absolute against `cwd` (itself absolute) into `out` of
 * `out_size` bytes, lexically only: repeated '/' collapse, "." components
 * and trailing '/' go; ".." stays for the kernel to resolve (a lexical ".."
 * would be wrong past a symbolic link).  The result is "/" or has no
 * trailing '/'.  Returns -1 if `path` is empty, `cwd` is not absolute, or
 * the result is longer than EMBER_CONTROL_PATH_MAX bytes or `out_size` - 1. */
int ctl_absolute_path(const char *cwd, const char *path, char *out, size_t out_size, struct ember_error *err);

/* ---- I/O half: one connection with one deadline -------------------------- */

struct ctl_connection {
	int fd;                   /* the connected socket, O_CLOEXEC; -1 when closed */
	struct timespec deadline; /* CLOCK_MONOTONIC; every I/O fails after it */
	double timeout_seconds;   /* the timeout the deadline came from, for messages */
};

/* A response as received and validated. */
struct ctl_response {
	uint16_t status; /* enum ember_control_status */
	uint32_t payload_length;
	unsigned char payload[CTL_RESPONSE_PAYLOAD_MAX];
};

/* Connects to the Unix stream socket at `socket_path`, with a deadline
 * `timeout_seconds` from now that bounds the connect and every later
 * ctl_send_request()/ctl_receive_response().  On success fills `connection`
 * (the caller closes it with ctl_close()) and returns 0; on failure returns
 * -1 with "connect `PATH`: reason" in `err` and leaves nothing open. */
int ctl_connect(struct ctl_connection *connection, const char *socket_path, double timeout_seconds,
		struct ember_error *err);

/* Sends one request frame: the header for `command` and `payload_length`
 * bytes of `payload` (NULL when 0; at most EMBER_CONTROL_PATH_MAX).  Returns
 * 0, or -1 on a write error, a closed peer or the deadline. */
int ctl_send_request(struct ctl_connection *connection, uint16_t command, const void *payload,
		     size_t payload_length, struct ember_error *err);

/* Reads and validates one response frame to a request of `command` into
 * `response`.  Returns 0, or -1 when the peer closes early (the message
 * says after how many bytes), on a read error, on the deadline, or when
 * ctl_parse_response_header() refuses the header — in which case the
 * payload is never read. */
int ctl_receive_response(struct ctl_connection *connection, uint16_t command, struct ctl_response *response,
			 struct ember_error *err);

/* One whole exchange: connects, sends `command` with `path` as payload
 * (NULL for none), reads the answer, closes.  Returns 0 when the VMM
 * answered OK; -1 with err otherwise, naming the status and the VMM's
 * message (escaped) when it refused. */
int ctl_command(const char *socket_path, uint16_t command, const char *path, double timeout_seconds,
		struct ember_error *err);

/* Closes the connection's socket if open; safe to call twice. */
void ctl_close(struct ctl_connection *connection);

#endif
