/* Unit tests of ctl/control_client.c, the client side of the control
 * socket: request encoding, the response-header and stats validators, the
 * message escaper, the snapshot-path builder, and frame I/O over a
 * socketpair (short frames, early close, the deadline).  Built with the
 * sanitizers as $BUILD/tests/ctl_unit and run by tests/ctl/suite.sh; prints
 * "PASS name" / "FAIL name: why" and exits 1 if anything failed. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "control_client.h"

static int failures;

static void check(int passed, const char *name, const char *detail_format, ...)
	__attribute__((format(printf, 3, 4)));
static void check(int passed, const char *name, const char *detail_format, ...)
{
	if (passed) {
		printf("PASS %s\n", name);
		return;
	}
	va_list arguments;
	va_start(arguments, detail_format);
	printf("FAIL %s: ", name);
	vprintf(detail_format, arguments);
	printf("\n");
	va_end(arguments);
	failures++;
}

static void put_le32(unsigned char *p, uint32_t value)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(value >> (8 * i));
}

static void put_le16(unsigned char *p, uint16_t value)
{
	p[0] = (unsigned char)value;
	p[1] = (unsigned char)(value >> 8);
}

static void make_header(unsigned char *h, uint32_t magic, uint16_t version, uint16_t status,
			uint32_t length, uint32_t reserved)
{
	put_le32(h, magic);
	put_le16(h + 4, version);
	put_le16(h + 6, status);
	put_le32(h + 8, length);
	put_le32(h + 12, reserved);
}

/* Parses a header built from the fields; returns the parser's result and
 * leaves the error in `err`. */
static int parse(uint32_t magic, uint16_t version, uint16_t status, uint32_t length,
		 uint32_t reserved, uint16_t command, struct ember_error *err)
{
	unsigned char h[16];
	uint16_t got_status = 0xffff;
	uint32_t got_length = 0xffffffff;
	make_header(h, magic, version, status, length, reserved);
	int result = ctl_parse_response_header(h, command, &got_status, &got_length, err);
	if (result == 0 && (got_status != status || got_length != length))
		return -2;
	return result;
}

static void test_encode(void)
{
	unsigned char h[16];
	ctl_encode_request_header(EMBER_CONTROL_SNAPSHOT, 0x01020304, h);
	static const unsigned char expected[16] = {'E', 'M', 'B', 'C', 1, 0, 3, 0,
						   4,   3,   2,   1,   0, 0, 0, 0};
	check(memcmp(h, expected, 16) == 0, "encode/request-header", "bytes differ");
}

static void test_parse_header(void)
{
	struct ember_error err;
	const uint32_t R = EMBER_CONTROL_RESPONSE_MAGIC;
	check(parse(R, 1, EMBER_CONTROL_OK, 0, 0, EMBER_CONTROL_PAUSE, &err) == 0, "header/ok-empty", "%s",
	      err.message);
	check(parse(R, 1, EMBER_CONTROL_OK, 48, 0, EMBER_CONTROL_STATS, &err) == 0, "header/ok-stats",
	      "%s", err.message);
	check(parse(R, 1, EMBER_CONTROL_OK, 47, 0, EMBER_CONTROL_STATS, &err) == -1 &&
		      strstr(err.message, "47-byte"),
	      "header/stats-short", "accepted or wrong message: %s", err.message);
	check(parse(R, 1, EMBER_CONTROL_OK, 49, 0, EMBER_CONTROL_STATS, &err) == -1,
	      "header/stats-long", "accepted");
	check(parse(R, 1, EMBER_CONTROL_OK, 0, 0, EMBER_CONTROL_STATS, &err) == -1,
	      "header/stats-empty", "accepted");
	check(parse(R, 1, EMBER_CONTROL_NOT_ALLOWED, 10, 0, EMBER_CONTROL_STATS, &err) == 0,
	      "header/stats-refused-with-message", "%s", err.message);
	check(parse(R, 1, EMBER_CONTROL_FAILED, EMBER_CONTROL_MESSAGE_MAX, 0, EMBER_CONTROL_SNAPSHOT,
		    &err) == 0,
	      "header/message-at-limit", "%s", err.message);
	check(parse(R, 1, EMBER_CONTROL_FAILED, EMBER_CONTROL_MESSAGE_MAX + 1, 0,
		    EMBER_CONTROL_SNAPSHOT, &err) == -1 &&
		      strstr(err.message, "4097"),
	      "header/message-past-limit", "accepted or wrong message: %s", err.message);
	check(parse(R, 1, EMBER_CONTROL_OK, 0xffffffffu, 0, EMBER_CONTROL_QUIT, &err) == -1,
	      "header/length-max", "accepted");
	check(parse(R, 1, EMBER_CONTROL_OK, 4096, 0, EMBER_CONTROL_RESUME, &err) == 0,
	      "header/ok-with-message", "%s", err.message);
	check(parse(EMBER_CONTROL_REQUEST_MAGIC, 1, 0, 0, 0, EMBER_CONTROL_PAUSE, &err) == -1 &&
		      strstr(err.message, "magic"),
	      "header/request-magic", "accepted or wrong message: %s", err.message);
	check(parse(0, 1, 0, 0, 0, EMBER_CONTROL_PAUSE, &err) == -1, "header/zero-magic", "accepted");
	check(parse(R, 0, 0, 0, 0, EMBER_CONTROL_PAUSE, &err) == -1, "header/version-0", "accepted");
	check(parse(R, 2, 0, 0, 0, EMBER_CONTROL_PAUSE, &err) == -1 && strstr(err.message, "version 2"),
	      "header/version-2", "accepted or wrong message: %s", err.message);
	check(parse(R, 1, 4, 0, 0, EMBER_CONTROL_PAUSE, &err) == -1 && strstr(err.message, "status 4"),
	      "header/status-4", "accepted or wrong message: %s", err.message);
	check(parse(R, 1, 0xffff, 0, 0, EMBER_CONTROL_PAUSE, &err) == -1, "header/status-ffff",
	      "accepted");
	check(parse(R, 1, EMBER_CONTROL_OK, 0, 0xdeadbeef, EMBER_CONTROL_PAUSE, &err) == 0,
	      "header/reserved-ignored", "%s", err.message);
}

static void test_parse_stats(void)
{
	struct ember_error err;
	struct ember_control_stats stats;
	unsigned char payload[49];
	for (size_t i = 0; i < sizeof payload; i++)
		payload[i] = (unsigned char)(i + 1);
	int result = ctl_parse_stats(payload, 48, &stats, &err);
	check(result == 0 && stats.guest_memory_bytes == 0x0807060504030201ULL &&
		      stats.syscalls == 0x2827262524232221ULL && stats.state == 0x2c2b2a29u &&
		      stats.platform == 0x302f2e2du,
	      "stats/little-endian", "result %d, guest_memory_bytes 0x%llx, state 0x%x", result,
	      (unsigned long long)stats.guest_memory_bytes, stats.state);
	check(ctl_parse_stats(payload, 47, &stats, &err) == -1, "stats/short", "accepted");
	check(ctl_parse_stats(payload, 49, &stats, &err) == -1, "stats/long", "accepted");
	check(strcmp(ctl_platform_name(EMBER_CONTROL_PLATFORM_SYSTRAP), "systrap") == 0 && strcmp(ctl_platform_name(7), "unknown") == 0 &&
		      strcmp(ctl_state_name(EMBER_VM_RUNNING), "running") == 0 &&
		      strcmp(ctl_state_name(EMBER_VM_PAUSED), "paused") == 0 &&
		      strcmp(ctl_state_name(EMBER_VM_EXITED), "exited") == 0 &&
		      strcmp(ctl_state_name(0), "unknown") == 0 &&
		      strcmp(ctl_state_name(4), "unknown") == 0 &&
		      strcmp(ctl_state_name(0xffffffffu), "unknown") == 0,
	      "stats/state-names", "a state is misnamed");
}

static void test_escape(void)
{
	char out[CTL_ESCAPED_MESSAGE_MAX];
	size_t n = ctl_escape_message((const unsigned char *)"plain text", 10, out, sizeof out);
	check(n == 10 && strcmp(out, "plain text") == 0, "escape/plain", "got `%s`", out);

	static const unsigned char hostile[] = "\x1b[2J\n\\\0\x7f\xc3\xa9";
	n = ctl_escape_message(hostile, sizeof hostile - 1, out, sizeof out);
	const char *expected = "\\x1b[2J\\x0a\\\\\\x00\\x7f\\xc3\\xa9";
	check(n == strlen(expected) && strcmp(out, expected) == 0, "escape/hostile", "got `%s`", out);

	unsigned char all[EMBER_CONTROL_MESSAGE_MAX];
	memset(all, 0x01, sizeof all);
	n = ctl_escape_message(all, sizeof all, out, sizeof out);
	check(n == 4 * sizeof all && out[n] == '\0', "escape/worst-case-fits", "wrote %zu", n);

	char small[8];
	n = ctl_escape_message((const unsigned char *)"ab\x01" "cd", 5, small, sizeof small);
	check(n == 7 && strcmp(small, "ab\\x01c") == 0, "escape/truncates-whole", "got `%s`", small);
	n = ctl_escape_message((const unsigned char *)"a\x01", 2, small, 4);
	check(n == 1 && strcmp(small, "a") == 0, "escape/never-splits", "got `%s`", small);
	n = ctl_escape_message((const unsigned char *)"abc", 3, small, 1);
	check(n == 0 && small[0] == '\0', "escape/room-for-nul-only", "got %zu", n);
}

static void expect_path(const char *name, const char *cwd, const char *path, const char *expected)
{
	char out[EMBER_CONTROL_PATH_MAX + 1];
	struct ember_error err = {{0}};
	int result = ctl_absolute_path(cwd, path, out, sizeof out, &err);
	if (!expected)
		check(result == -1, name, "accepted as `%s`", result == 0 ? out : "?");
	else
		check(result == 0 && strcmp(out, expected) == 0, name, "got %d `%s` (%s)", result,
		      result == 0 ? out : "", err.message);
}

static void test_absolute_path(void)
{
	expect_path("path/relative", "/home/me", "snaps/one", "/home/me/snaps/one");
	expect_path("path/absolute", "/home/me", "/srv/snap", "/srv/snap");
	expect_path("path/collapse", "/home//me/", ".//snaps///./one/./", "/home/me/snaps/one");
	expect_path("path/dot", "/home/me", ".", "/home/me");
	expect_path("path/dotdot-kept", "/home/me", "../x/..", "/home/me/../x/..");
	expect_path("path/dotdot-prefix", "/a", "..snap/.x", "/a/..snap/.x");
	expect_path("path/cwd-root", "/", "snap", "/snap");
	expect_path("path/root", "/home/me", "/", "/");
	expect_path("path/root-slashes", "/home/me", "///.//", "/");
	expect_path("path/empty", "/home/me", "", NULL);
	expect_path("path/relative-cwd", "home", "snap", NULL);

	static char longest[EMBER_CONTROL_PATH_MAX + 2];
	memset(longest, 'a', sizeof longest - 1);
	longest[0] = '/';
	longest[EMBER_CONTROL_PATH_MAX] = '\0';
	expect_path("path/at-limit", "/home/me", longest, longest);
	longest[EMBER_CONTROL_PATH_MAX] = 'a';
	expect_path("path/past-limit", "/home/me", longest, NULL);
	static char relative[EMBER_CONTROL_PATH_MAX];
	memset(relative, 'b', EMBER_CONTROL_PATH_MAX - 4);
	expect_path("path/past-limit-with-cwd", "/home/me", relative, NULL);

	char small[6];
	struct ember_error err;
	check(ctl_absolute_path("/", "abcd", small, sizeof small, &err) == 0 && strcmp(small, "/abcd") == 0,
	      "path/small-buffer-fits", "got `%s`", small);
	check(ctl_absolute_path("/", "abcde", small, sizeof small, &err) == -1,
	      "path/small-buffer-refused", "accepted `%s`", small);
	check(ctl_absolute_path("/", "/", small, 1, &err) == -1, "path/no-room-for-root", "accepted");
}

/* A connection over one end of a socketpair, with `seconds` to live. */
static void fake_connection(struct ctl_connection *connection, int fd, double seconds)
{
	connection->fd = fd;
	connection->timeout_seconds = seconds;
	clock_gettime(CLOCK_MONOTONIC, &connection->deadline);
	long ns = connection->deadline.tv_nsec + (long)(seconds * 1e9);
	connection->deadline.tv_sec += ns / 1000000000;
	connection->deadline.tv_nsec = ns % 1000000000;
}

static void test_io(void)
{
	struct ember_error err = {{0}};
	int pair[2];
	static struct ctl_response response;
	struct ctl_connection connection;

	/* A request arrives whole; a response split in pieces is reassembled. */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
	fake_connection(&connection, pair[0], 5);
	int result = ctl_send_request(&connection, EMBER_CONTROL_SNAPSHOT, "/snap", 5, &err);
	unsigned char request[32];
	ssize_t n = read(pair[1], request, sizeof request);
	check(result == 0 && n == 21 && memcmp(request, "EMBC", 4) == 0 && request[6] == 3 &&
		      request[8] == 5 && memcmp(request + 16, "/snap", 5) == 0,
	      "io/request-frame", "result %d, %zd bytes (%s)", result, n, err.message);
	unsigned char frame[16 + 5];
	make_header(frame, EMBER_CONTROL_RESPONSE_MAGIC, 1, EMBER_CONTROL_FAILED, 5, 0);
	memcpy(frame + 16, "nope!", 5);
	if (write(pair[1], frame, 9) != 9 || write(pair[1], frame + 9, 12) != 12)
		perror("write");
	result = ctl_receive_response(&connection, EMBER_CONTROL_SNAPSHOT, &response, &err);
	check(result == 0 && response.status == EMBER_CONTROL_FAILED && response.payload_length == 5 &&
		      memcmp(response.payload, "nope!", 5) == 0,
	      "io/response-frame", "result %d (%s)", result, result ? err.message : "");
	ctl_close(&connection);
	ctl_close(&connection);
	check(connection.fd == -1, "io/close-twice", "fd %d", connection.fd);
	close(pair[1]);

	/* The peer closes partway through the header. */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
	fake_connection(&connection, pair[0], 5);
	if (write(pair[1], frame, 7) != 7)
		perror("write");
	close(pair[1]);
	result = ctl_receive_response(&connection, EMBER_CONTROL_PAUSE, &response, &err);
	check(result == -1 && strstr(err.message, "after 7 of 16 bytes"), "io/eof-in-header",
	      "result %d (%s)", result, err.message);
	ctl_close(&connection);

	/* The peer closes before anything. */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
	fake_connection(&connection, pair[0], 5);
	close(pair[1]);
	result = ctl_receive_response(&connection, EMBER_CONTROL_PAUSE, &response, &err);
	check(result == -1 && strstr(err.message, "without answering"), "io/eof-at-once",
	      "result %d (%s)", result, err.message);
	ctl_close(&connection);

	/* The peer closes partway through the payload. */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
	fake_connection(&connection, pair[0], 5);
	if (write(pair[1], frame, 18) != 18)
		perror("write");
	close(pair[1]);
	result = ctl_receive_response(&connection, EMBER_CONTROL_SNAPSHOT, &response, &err);
	check(result == -1 && strstr(err.message, "payload") && strstr(err.message, "after 2 of 5"),
	      "io/eof-in-payload", "result %d (%s)", result, err.message);
	ctl_close(&connection);

	/* A bad header is refused without waiting for its payload. */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
	fake_connection(&connection, pair[0], 5);
	make_header(frame, EMBER_CONTROL_RESPONSE_MAGIC, 1, EMBER_CONTROL_FAILED, 1u << 20, 0);
	if (write(pair[1], frame, 16) != 16)
		perror("write");
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	result = ctl_receive_response(&connection, EMBER_CONTROL_PAUSE, &response, &err);
	clock_gettime(CLOCK_MONOTONIC, &end);
	double elapsed = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
	check(result == -1 && elapsed < 1 && strstr(err.message, "1048576"), "io/oversized-refused-at-once",
	      "result %d after %.2f s (%s)", result, elapsed, err.message);
	ctl_close(&connection);
	close(pair[1]);

	/* A silent peer: the deadline ends the wait. */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
	fake_connection(&connection, pair[0], 0.2);
	clock_gettime(CLOCK_MONOTONIC, &start);
	result = ctl_receive_response(&connection, EMBER_CONTROL_PAUSE, &response, &err);
	clock_gettime(CLOCK_MONOTONIC, &end);
	elapsed = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
	check(result == -1 && elapsed >= 0.15 && elapsed < 2 && strstr(err.message, "no answer within 0.2 s"),
	      "io/deadline", "result %d after %.2f s (%s)", result, elapsed, err.message);
	ctl_close(&connection);
	close(pair[1]);

	/* Writing to a closed peer is an error, not SIGPIPE. */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
	fake_connection(&connection, pair[0], 5);
	close(pair[1]);
	result = ctl_send_request(&connection, EMBER_CONTROL_PAUSE, NULL, 0, &err);
	check(result == -1 && strstr(err.message, "send request"), "io/send-to-closed", "result %d (%s)",
	      result, err.message);
	ctl_close(&connection);

	/* Oversized request payloads never leave. */
	result = ctl_send_request(&connection, EMBER_CONTROL_SNAPSHOT, "x", EMBER_CONTROL_PATH_MAX + 1,
				  &err);
	check(result == -1, "io/request-payload-limit", "accepted");

	/* connect: the reasons. */
	result = ctl_connect(&connection, "/nonexistent/ember-ctl.sock", 1, &err);
	check(result == -1 && connection.fd == -1 &&
		      strcmp(err.message, "connect `/nonexistent/ember-ctl.sock`: No such file or directory") == 0,
	      "connect/missing", "result %d (%s)", result, err.message);
	char long_path[200];
	memset(long_path, 'p', sizeof long_path - 1);
	long_path[0] = '/';
	long_path[sizeof long_path - 1] = '\0';
	result = ctl_connect(&connection, long_path, 1, &err);
	check(result == -1 && strstr(err.message, "longer than 107 bytes"), "connect/path-too-long",
	      "result %d (%s)", result, err.message);
	result = ctl_connect(&connection, "/tmp/x.sock", 0, &err);
	check(result == -1 && strstr(err.message, "timeout"), "connect/zero-timeout", "result %d (%s)",
	      result, err.message);
}

int main(void)
{
	test_encode();
	test_parse_header();
	test_parse_stats();
	test_escape();
	test_absolute_path();
	test_io();
	return failures > 0;
}
