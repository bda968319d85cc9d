/* A fake ember-vmm control socket, a test fixture for ember-ctl only
 * (tests/ctl/suite.sh): it listens on a Unix socket, takes one connection,
 * checks the request frame strictly against vmm/control_protocol.h, and
 * answers with one scripted response — good ones and the malformed ones a
 * broken or hostile VMM could send.  It is never part of ember-vmm.
 *
 *   ctl_fake_server SOCK SCENARIO [COMMAND [PAYLOAD]]
 *
 * The socket appears at SOCK only once it is listening (bound under a
 * temporary name, then renamed), so a client may connect as soon as the
 * path exists.  It prints the request it received on stdout as
 * "request command=N payload_length=N payload=ESCAPED".  When COMMAND (a
 * number) or PAYLOAD are given, the request must match them.  After
 * answering it waits for the client to close, and gives up after 30 s.
 * Exit status: 0 when the request was well-formed and as expected (or was
 * not read, for close-at-once); 3 when it was not; 1 on any other error.
 * SCENARIO is one of the names in `scenarios` below. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control_protocol.h"

#define HEADER_SIZE sizeof(struct ember_control_header)

static const char *scenarios[] = {
	"ok",                  /* OK, empty payload */
	"ok-message",          /* OK, "snapshot written" */
	"stats",               /* OK, valid stats, state PAUSED, one value past 2^53 */
	"stats-unknown-state", /* OK, valid stats, state 7 */
	"stats-huge",          /* OK, guest_memory_bytes = 2^64 - 1 */
	"stats-short",         /* OK for stats with a 40-byte payload */
	"stats-long",          /* OK for stats with a 49-byte payload */
	"not-allowed",         /* NOT_ALLOWED, "the VM is running" */
	"not-allowed-empty",   /* NOT_ALLOWED, no message */
	"failed",              /* FAILED, a message naming a path */
	"bad-request",         /* BAD_REQUEST, "unknown command" */
	"hostile-message",     /* FAILED, a message with escape sequences, newline, NUL */
	"wrong-magic",         /* the request magic "EMBC" in the response */
	"wrong-version",       /* version 2 */
	"unknown-status",      /* status 9 */
	"oversized",           /* FAILED with payload_length 1 MiB; no payload follows */
	"oversized-message",   /* FAILED with payload_length 4097 and the bytes */
	"truncated-header",    /* 7 header bytes, then close */
	"truncated-payload",   /* FAILED header promising 20 bytes, 5 sent, then close */
	"close-at-once",       /* accept and close without reading the request */
	"close-after-request", /* read the request, close without answering */
	"hang",                /* read the request, never answer */
	"trickle",             /* a valid OK header, one byte every 300 ms */
};

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

static void store_le64(unsigned char *p, uint64_t value)
{
	store_le32(p, (uint32_t)value);
	store_le32(p + 4, (uint32_t)(value >> 32));
}

static uint32_t load_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t load_le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static void die(const char *what)
{
	fprintf(stderr, "ctl_fake_server: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Writes all bytes; returns -1 if the client hung up (as it may rightly do
 * mid-frame, after rejecting a header), 0 otherwise. */
static int write_all(int fd, const void *bytes, size_t length)
{
	const unsigned char *p = bytes;
	while (length > 0) {
		ssize_t n = write(fd, p, length);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			return -1;
		if (n < 0)
			die("write");
		p += n;
		length -= (size_t)n;
	}
	return 0;
}

/* Reads exactly `length` bytes; returns how many arrived before EOF. */
static size_t read_all(int fd, void *bytes, size_t length)
{
	unsigned char *p = bytes;
	size_t got = 0;
	while (got < length) {
		ssize_t n = read(fd, p + got, length - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ECONNRESET)
			return got;
		if (n < 0)
			die("read");
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return got;
}

static void send_frame(int fd, uint32_t magic, uint16_t version, uint16_t status,
		       uint32_t declared_length, const void *payload, size_t payload_length)
{
	unsigned char header[HEADER_SIZE];
	store_le32(header, magic);
	store_le16(header + 4, version);
	store_le16(header + 6, status);
	store_le32(header + 8, declared_length);
	store_le32(header + 12, 0);
	if (write_all(fd, header, sizeof header) == 0 && payload_length)
		write_all(fd, payload, payload_length);
}

static void send_response(int fd, uint16_t status, const char *message)
{
	size_t length = strlen(message);
	send_frame(fd, EMBER_CONTROL_RESPONSE_MAGIC, EMBER_CONTROL_VERSION, status, (uint32_t)length,
		   message, length);
}

static void send_stats(int fd, uint64_t guest_memory, uint32_t state, size_t length)
{
	unsigned char payload[sizeof(struct ember_control_stats) + 1] = {0};
	store_le64(payload + 0, guest_memory);
	store_le64(payload + 8, 12345678);
	store_le64(payload + 16, 1234567);
	store_le64(payload + 24, 42);
	store_le64(payload + 32, 9007199254740993ULL); /* 2^53 + 1: exact only as an integer */
	store_le32(payload + 40, state);
	store_le32(payload + 44, EMBER_CONTROL_PLATFORM_SYSTRAP);
	send_frame(fd, EMBER_CONTROL_RESPONSE_MAGIC, EMBER_CONTROL_VERSION, EMBER_CONTROL_OK,
		   (uint32_t)length, payload, length);
}

/* Reads and checks one request; returns 0 if it is well-formed and matches
 * the expectations, 3 otherwise (with the reason on stderr). */
static int read_request(int fd, long expected_command, const char *expected_payload)
{
	unsigned char header[HEADER_SIZE];
	size_t got = read_all(fd, header, sizeof header);
	if (got != sizeof header) {
		fprintf(stderr, "ctl_fake_server: request header: %zu of %zu bytes\n", got, sizeof header);
		return 3;
	}
	uint32_t magic = load_le32(header), length = load_le32(header + 8);
	uint16_t version = load_le16(header + 4), command = load_le16(header + 6);
	uint32_t reserved = load_le32(header + 12);
	static char payload[EMBER_CONTROL_PATH_MAX + 1];
	int verdict = 0;
	if (magic != EMBER_CONTROL_REQUEST_MAGIC || version != EMBER_CONTROL_VERSION || reserved != 0) {
		fprintf(stderr, "ctl_fake_server: bad request header: magic 0x%08x version %u reserved %u\n",
			magic, version, reserved);
		return 3;
	}
	if (command < EMBER_CONTROL_PAUSE || command > EMBER_CONTROL_QUIT) {
		fprintf(stderr, "ctl_fake_server: unknown command %u\n", command);
		return 3;
	}
	if (length > EMBER_CONTROL_PATH_MAX || (command != EMBER_CONTROL_SNAPSHOT && length != 0) ||
	    (command == EMBER_CONTROL_SNAPSHOT && length == 0)) {
		fprintf(stderr, "ctl_fake_server: bad payload_length %u for command %u\n", length, command);
		return 3;
	}
	got = read_all(fd, payload, length);
	if (got != length) {
		fprintf(stderr, "ctl_fake_server: request payload: %zu of %u bytes\n", got, length);
		return 3;
	}
	payload[length] = '\0';
	printf("request command=%u payload_length=%u payload=", command, length);
	for (uint32_t i = 0; i < length; i++) {
		unsigned char c = (unsigned char)payload[i];
		if (c >= 0x20 && c < 0x7f && c != '\\')
			putchar(c);
		else
			printf("\\x%02x", c);
	}
	printf("\n");
	fflush(stdout);
	if (memchr(payload, '\0', length)) {
		fprintf(stderr, "ctl_fake_server: the payload contains NUL\n");
		verdict = 3;
	}
	if (command == EMBER_CONTROL_SNAPSHOT && payload[0] != '/') {
		fprintf(stderr, "ctl_fake_server: the snapshot path is not absolute\n");
		verdict = 3;
	}
	if (expected_command >= 0 && command != expected_command) {
		fprintf(stderr, "ctl_fake_server: expected command %ld, got %u\n", expected_command, command);
		verdict = 3;
	}
	if (expected_payload && strcmp(payload, expected_payload) != 0) {
		fprintf(stderr, "ctl_fake_server: expected payload `%s`, got `%s`\n", expected_payload, payload);
		verdict = 3;
	}
	return verdict;
}

/* Waits until the client closes its end (or the alarm ends us). */
static void wait_for_close(int fd)
{
	char byte;
	for (;;) {
		ssize_t n = read(fd, &byte, 1);
		if (n == 0 || (n < 0 && errno != EINTR))
			return;
	}
}

static void sleep_ms(long ms)
{
	struct timespec delay = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000};
	while (nanosleep(&delay, &delay) < 0 && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 5) {
		fprintf(stderr, "usage: ctl_fake_server SOCK SCENARIO [COMMAND [PAYLOAD]]\n");
		return 1;
	}
	const char *path = argv[1], *scenario = argv[2];
	long expected_command = argc > 3 ? strtol(argv[3], NULL, 10) : -1;
	const char *expected_payload = argc > 4 ? argv[4] : NULL;
	int known = 0;
	for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
		known |= strcmp(scenario, scenarios[i]) == 0;
	if (!known) {
		fprintf(stderr, "ctl_fake_server: unknown scenario `%s`\n", scenario);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	alarm(30);

	struct sockaddr_un address = {.sun_family = AF_UNIX};
	char temporary[sizeof address.sun_path];
	if (snprintf(temporary, sizeof temporary, "%s.tmp", path) >= (int)sizeof temporary) {
		fprintf(stderr, "ctl_fake_server: socket path too long\n");
		return 1;
	}
	memcpy(address.sun_path, temporary, strlen(temporary) + 1);
	int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listener < 0)
		die("socket");
	unlink(temporary);
	if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0)
		die("bind");
	if (listen(listener, 1) < 0)
		die("listen");
	if (rename(temporary, path) < 0)
		die("rename");
	int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		die("accept");
	close(listener);
	unlink(path);

	if (strcmp(scenario, "close-at-once") == 0) {
		close(fd);
		return 0;
	}
	int verdict = read_request(fd, expected_command, expected_payload);
	if (verdict != 0) {
		/* Answer as the real VMM would, so the client does not wait. */
		send_response(fd, EMBER_CONTROL_BAD_REQUEST, "fake server: malformed request");
		close(fd);
		return verdict;
	}

	if (strcmp(scenario, "ok") == 0) {
		send_response(fd, EMBER_CONTROL_OK, "");
	} else if (strcmp(scenario, "ok-message") == 0) {
		send_response(fd, EMBER_CONTROL_OK, "snapshot written");
	} else if (strcmp(scenario, "stats") == 0) {
		send_stats(fd, 268435456, EMBER_VM_PAUSED, sizeof(struct ember_control_stats));
	} else if (strcmp(scenario, "stats-unknown-state") == 0) {
		send_stats(fd, 268435456, 7, sizeof(struct ember_control_stats));
	} else if (strcmp(scenario, "stats-huge") == 0) {
		send_stats(fd, UINT64_MAX, EMBER_VM_RUNNING, sizeof(struct ember_control_stats));
	} else if (strcmp(scenario, "stats-short") == 0) {
		send_stats(fd, 268435456, EMBER_VM_RUNNING, sizeof(struct ember_control_stats) - 8);
	} else if (strcmp(scenario, "stats-long") == 0) {
		send_stats(fd, 268435456, EMBER_VM_RUNNING, sizeof(struct ember_control_stats) + 1);
	} else if (strcmp(scenario, "not-allowed") == 0) {
		send_response(fd, EMBER_CONTROL_NOT_ALLOWED, "the VM is running");
	} else if (strcmp(scenario, "not-allowed-empty") == 0) {
		send_response(fd, EMBER_CONTROL_NOT_ALLOWED, "");
	} else if (strcmp(scenario, "failed") == 0) {
		send_response(fd, EMBER_CONTROL_FAILED,
			      "write snapshot `/snaps/one`: No space left on device");
	} else if (strcmp(scenario, "bad-request") == 0) {
		send_response(fd, EMBER_CONTROL_BAD_REQUEST, "unknown command");
	} else if (strcmp(scenario, "hostile-message") == 0) {
		static const char message[] = "\x1b[2Jcleared\nforged line\\\0after NUL\x7f\xc3\xa9";
		send_frame(fd, EMBER_CONTROL_RESPONSE_MAGIC, EMBER_CONTROL_VERSION, EMBER_CONTROL_FAILED,
			   sizeof message - 1, message, sizeof message - 1);
	} else if (strcmp(scenario, "wrong-magic") == 0) {
		send_frame(fd, EMBER_CONTROL_REQUEST_MAGIC, EMBER_CONTROL_VERSION, EMBER_CONTROL_OK, 0, NULL, 0);
	} else if (strcmp(scenario, "wrong-version") == 0) {
		send_frame(fd, EMBER_CONTROL_RESPONSE_MAGIC, 2, EMBER_CONTROL_OK, 0, NULL, 0);
	} else if (strcmp(scenario, "unknown-status") == 0) {
		send_frame(fd, EMBER_CONTROL_RESPONSE_MAGIC, EMBER_CONTROL_VERSION, 9, 0, NULL, 0);
	} else if (strcmp(scenario, "oversized") == 0) {
		send_frame(fd, EMBER_CONTROL_RESPONSE_MAGIC, EMBER_CONTROL_VERSION, EMBER_CONTROL_FAILED,
			   1u << 20, NULL, 0);
	} else if (strcmp(scenario, "oversized-message") == 0) {
		static char message[EMBER_CONTROL_MESSAGE_MAX + 1];
		memset(message, 'm', sizeof message);
		send_frame(fd, EMBER_CONTROL_RESPONSE_MAGIC, EMBER_CONTROL_VERSION, EMBER_CONTROL_FAILED,
			   sizeof message, message, sizeof message);
	} else if (strcmp(scenario, "truncated-header") == 0) {
		unsigned char header[HEADER_SIZE];
		store_le32(header, EMBER_CONTROL_RESPONSE_MAGIC);
		store_le16(header + 4, EMBER_CONTROL_VERSION);
		store_le16(header + 6, EMBER_CONTROL_OK);
		write_all(fd, header, 7);
		close(fd);
		return 0;
	} else if (strcmp(scenario, "truncated-payload") == 0) {
		send_frame(fd, EMBER_CONTROL_RESPONSE_MAGIC, EMBER_CONTROL_VERSION, EMBER_CONTROL_FAILED, 20,
			   "short", 5);
		close(fd);
		return 0;
	} else if (strcmp(scenario, "close-after-request") == 0) {
		close(fd);
		return 0;
	} else if (strcmp(scenario, "hang") == 0) {
		/* no answer */
	} else if (strcmp(scenario, "trickle") == 0) {
		unsigned char header[HEADER_SIZE];
		store_le32(header, EMBER_CONTROL_RESPONSE_MAGIC);
		store_le16(header + 4, EMBER_CONTROL_VERSION);
		store_le16(header + 6, EMBER_CONTROL_OK);
		store_le32(header + 8, 0);
		store_le32(header + 12, 0);
		for (size_t i = 0; i < sizeof header; i++) {
			sleep_ms(300);
			if (write_all(fd, header + i, 1) < 0)
				break;
		}
	}
	wait_for_close(fd);
	close(fd);
	return 0;
}
