/* Tests of worker/runtime_api.c, the host side of the Lambda Runtime API.
 * A host program: it starts the server on a temporary Unix socket and
 * plays the runtime over it with raw HTTP written by hand (plain sockets,
 * a small response parser), checking what the runtime gets back and what
 * the host's callbacks see: the long poll of GET /next and every event
 * header, buffered and streamed responses (byte-exact at 6 MB, chunks as
 * they are sent), errors, the 4xx answers, garbage, disconnections, and
 * two runtimes asking at once.  Built with the sanitizers as
 * $BUILD/tests/rapi_test and run by tests/rapi/suite.sh; prints
 * "PASS name" / "FAIL name: why" and exits 1 if anything failed. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "runtime_api.h"

static int failures;
static char socket_path[108];

/* ---- what the callbacks saw ------------------------------------------------------ */

enum record_type {
	RECORD_NEXT,
	RECORD_STARTED,
	RECORD_CHUNK,
	RECORD_FINISHED,
	RECORD_INVOCATION_ERROR,
	RECORD_INIT_ERROR,
	RECORD_PROTOCOL_ERROR,
	RECORD_TYPES,
};

struct record {
	enum record_type type;
	char request_id[WK_RAPI_REQUEST_ID_MAX + 1];
	bool streaming;
	char content_type[WK_RAPI_CONTENT_TYPE_MAX + 1];
	enum wk_rapi_response_outcome outcome;
	uint64_t body_bytes;
	char error_type[WK_RAPI_ERROR_TYPE_MAX + 1];
	bool has_error_type;
	bool truncated;
	unsigned char *data; /* chunk, error body, or message */
	size_t length;
	bool has_data;
};

#define RECORD_MAX 4096

static struct {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct record records[RECORD_MAX];
	size_t count;
	size_t counts[RECORD_TYPES];
	/* next_requested pushes this event when set (ember-invoke's way). */
	struct wk_rapi_server *server;
	const struct wk_rapi_event *push_on_next;
	bool verbose_protocol_errors;
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

static struct record *add_record(enum record_type type, const char *request_id)
{
	pthread_mutex_lock(&seen.lock);
	struct record *r = NULL;
	if (seen.count < RECORD_MAX) {
		r = &seen.records[seen.count++];
		memset(r, 0, sizeof *r);
		r->type = type;
		if (request_id != NULL)
			snprintf(r->request_id, sizeof r->request_id, "%s", request_id);
	}
	return r; /* the lock stays held until commit_record */
}

static void commit_record(struct record *r)
{
	if (r != NULL)
		seen.counts[r->type]++;
	pthread_cond_broadcast(&seen.changed);
	pthread_mutex_unlock(&seen.lock);
}

static void copy_data(struct record *r, const void *data, size_t length)
{
	if (r == NULL)
		return;
	r->has_data = data != NULL;
	r->data = malloc(length + 1);
	if (length)
		memcpy(r->data, data, length);
	r->data[length] = '\0';
	r->length = length;
}

static void clear_records(void)
{
	pthread_mutex_lock(&seen.lock);
	for (size_t i = 0; i < seen.count; i++)
		free(seen.records[i].data);
	seen.count = 0;
	memset(seen.counts, 0, sizeof seen.counts);
	seen.push_on_next = NULL;
	pthread_mutex_unlock(&seen.lock);
}

static size_t count_of(enum record_type type)
{
	pthread_mutex_lock(&seen.lock);
	size_t n = seen.counts[type];
	pthread_mutex_unlock(&seen.lock);
	return n;
}

/* Waits up to `ms` for at least `n` records of `type`. */
static bool wait_for(enum record_type type, size_t n, int ms)
{
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += ms / 1000;
	deadline.tv_nsec += (long)(ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&seen.lock);
	while (seen.counts[type] < n) {
		if (pthread_cond_timedwait(&seen.changed, &seen.lock, &deadline) == ETIMEDOUT)
			break;
	}
	bool reached = seen.counts[type] >= n;
	pthread_mutex_unlock(&seen.lock);
	return reached;
}

/* The `index`th record of `type` (copied), or false. */
static bool nth_record(enum record_type type, size_t index, struct record *out)
{
	bool found = false;
	pthread_mutex_lock(&seen.lock);
	for (size_t i = 0, k = 0; i < seen.count; i++) {
		if (seen.records[i].type != type)
			continue;
		if (k++ == index) {
			*out = seen.records[i];
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&seen.lock);
	return found;
}

/* All chunk bytes recorded for `request_id`, concatenated (malloc'd). */
static unsigned char *chunks_of(const char *request_id, size_t *length)
{
	pthread_mutex_lock(&seen.lock);
	size_t total = 0;
	for (size_t i = 0; i < seen.count; i++)
		if (seen.records[i].type == RECORD_CHUNK &&
		    strcmp(seen.records[i].request_id, request_id) == 0)
			total += seen.records[i].length;
	unsigned char *all = malloc(total + 1);
	size_t at = 0;
	for (size_t i = 0; i < seen.count; i++)
		if (seen.records[i].type == RECORD_CHUNK &&
		    strcmp(seen.records[i].request_id, request_id) == 0) {
			memcpy(all + at, seen.records[i].data, seen.records[i].length);
			at += seen.records[i].length;
		}
	pthread_mutex_unlock(&seen.lock);
	*length = total;
	return all;
}

static void on_next(void *ctx)
{
	(void)ctx;
	commit_record(add_record(RECORD_NEXT, NULL));
	pthread_mutex_lock(&seen.lock);
	const struct wk_rapi_event *event = seen.push_on_next;
	seen.push_on_next = NULL;
	pthread_mutex_unlock(&seen.lock);
	if (event != NULL) {
		struct ember_error err;
		if (wk_rapi_push_event(seen.server, event, &err) < 0)
			fprintf(stderr, "push from next_requested: %s\n", err.message);
	}
}

static void on_started(void *ctx, const char *id, bool streaming, const char *content_type)
{
	(void)ctx;
	struct record *r = add_record(RECORD_STARTED, id);
	if (r != NULL) {
		r->streaming = streaming;
		snprintf(r->content_type, sizeof r->content_type, "%s",
			 content_type ? content_type : "(none)");
	}
	commit_record(r);
}

static void on_chunk(void *ctx, const char *id, const void *data, size_t length)
{
	(void)ctx;
	struct record *r = add_record(RECORD_CHUNK, id);
	copy_data(r, data, length);
	commit_record(r);
}

static void on_finished(void *ctx, const char *id, const struct wk_rapi_response_end *end)
{
	(void)ctx;
	struct record *r = add_record(RECORD_FINISHED, id);
	if (r != NULL) {
		r->outcome = end->outcome;
		r->body_bytes = end->body_bytes;
		if (end->error_type != NULL) {
			r->has_error_type = true;
			snprintf(r->error_type, sizeof r->error_type, "%s", end->error_type);
		}
		copy_data(r, end->error_body, end->error_body_length);
	}
	commit_record(r);
}

static void record_error(enum record_type type, const char *id, const struct wk_rapi_error *error)
{
	struct record *r = add_record(type, id);
	if (r != NULL) {
		if (error->error_type != NULL) {
			r->has_error_type = true;
			snprintf(r->error_type, sizeof r->error_type, "%s", error->error_type);
		}
		r->truncated = error->body_truncated;
		copy_data(r, error->body, error->body_length);
	}
	commit_record(r);
}

static void on_invocation_error(void *ctx, const char *id, const struct wk_rapi_error *error)
{
	(void)ctx;
	record_error(RECORD_INVOCATION_ERROR, id, error);
}

static void on_init_error(void *ctx, const struct wk_rapi_error *error)
{
	(void)ctx;
	record_error(RECORD_INIT_ERROR, NULL, error);
}

static void on_protocol_error(void *ctx, const char *message)
{
	(void)ctx;
	if (seen.verbose_protocol_errors)
		printf("    protocol error: %s\n", message);
	struct record *r = add_record(RECORD_PROTOCOL_ERROR, NULL);
	copy_data(r, message, strlen(message));
	commit_record(r);
}

static const struct wk_rapi_callbacks callbacks = {
	.next_requested = on_next,
	.response_started = on_started,
	.response_chunk = on_chunk,
	.response_finished = on_finished,
	.invocation_error = on_invocation_error,
	.init_error = on_init_error,
	.protocol_error = on_protocol_error,
};

/* ---- reporting ---------------------------------------------------------------------- */

static void check(int passed, const char *name, const char *detail_format, ...)
	__attribute__((format(printf, 3, 4)));
static void check(int passed, const char *name, const char *detail_format, ...)
{
	if (passed) {
		printf("PASS %s\n", name);
		fflush(stdout);
		return;
	}
	va_list arguments;
	va_start(arguments, detail_format);
	printf("FAIL %s: ", name);
	vprintf(detail_format, arguments);
	printf("\n");
	va_end(arguments);
	fflush(stdout);
	failures++;
}

/* A test body sets `why` and returns false on the first failed step. */
static char why[1024];
static bool fail_because(const char *format, ...) __attribute__((format(printf, 1, 2)));
static bool fail_because(const char *format, ...)
{
	va_list arguments;
	va_start(arguments, format);
	vsnprintf(why, sizeof why, format, arguments);
	va_end(arguments);
	return false;
}

/* ---- the runtime's side: raw HTTP ---------------------------------------------------- */

struct client {
	int fd;
	unsigned char buffer[65536];
	size_t have;
};

struct answer {
	int status; /* 0: the connection closed (or timed out) first */
	char head[16384];
	unsigned char *body;
	size_t body_length;
};

static long long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static bool client_open(struct client *c)
{
	c->have = 0;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return false;
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_path);
	if (connect(c->fd, (struct sockaddr *)&address, sizeof address) != 0) {
		close(c->fd);
		c->fd = -1;
		return false;
	}
	return true;
}

static void client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static bool send_bytes(struct client *c, const void *data, size_t length)
{
	const unsigned char *p = data;
	while (length > 0) {
		ssize_t n = send(c->fd, p, length, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		length -= (size_t)n;
	}
	return true;
}

static bool send_text(struct client *c, const char *format, ...) __attribute__((format(printf, 2, 3)));
static bool send_text(struct client *c, const char *format, ...)
{
	char text[8192];
	va_list arguments;
	va_start(arguments, format);
	int n = vsnprintf(text, sizeof text, format, arguments);
	va_end(arguments);
	return n > 0 && (size_t)n < sizeof text && send_bytes(c, text, (size_t)n);
}

/* Reads more into the buffer; false on close, error or timeout. */
static bool fill(struct client *c, long long deadline)
{
	if (c->have == sizeof c->buffer)
		return false;
	long long left = deadline - now_ms();
	if (left <= 0)
		return false;
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	if (poll(&p, 1, (int)left) <= 0)
		return false;
	ssize_t n = recv(c->fd, c->buffer + c->have, sizeof c->buffer - c->have, 0);
	if (n <= 0)
		return false;
	c->have += (size_t)n;
	return true;
}

static void consume(struct client *c, size_t n)
{
	memmove(c->buffer, c->buffer + n, c->have - n);
	c->have -= n;
}

/* The value of header `name` in `a` (copied into `out`), or false. */
static bool header_of(const struct answer *a, const char *name, char *out, size_t out_size)
{
	size_t name_length = strlen(name);
	const char *line = strstr(a->head, "\r\n");
	while (line != NULL && line[2] != '\0') {
		line += 2;
		const char *end = strstr(line, "\r\n");
		if (end == NULL)
			break;
		if ((size_t)(end - line) > name_length && strncasecmp(line, name, name_length) == 0 &&
		    line[name_length] == ':') {
			const char *value = line + name_length + 1;
			while (*value == ' ')
				value++;
			snprintf(out, out_size, "%.*s", (int)(end - value), value);
			return true;
		}
		line = end;
	}
	return false;
}

static void answer_free(struct answer *a)
{
	free(a->body);
	a->body = NULL;
}

/* Reads one HTTP response (Content-Length bodies only: all this server
 * sends) within `ms`; the answer to a HEAD request has no body. */
static bool read_answer_to(struct client *c, struct answer *a, int ms, bool head_request)
{
	long long deadline = now_ms() + ms;
	memset(a, 0, sizeof *a);
	unsigned char *end;
	while ((end = memmem(c->buffer, c->have, "\r\n\r\n", 4)) == NULL)
		if (!fill(c, deadline))
			return false;
	size_t head_length = (size_t)(end - c->buffer) + 4;
	if (head_length >= sizeof a->head)
		return false;
	memcpy(a->head, c->buffer, head_length);
	a->head[head_length] = '\0';
	consume(c, head_length);
	if (sscanf(a->head, "HTTP/1.%*d %d", &a->status) != 1)
		return false;
	char length_text[32];
	size_t length = 0;
	if (!head_request && header_of(a, "Content-Length", length_text, sizeof length_text))
		length = strtoull(length_text, NULL, 10);
	a->body = malloc(length + 1);
	while (a->body_length < length) {
		if (c->have == 0 && !fill(c, deadline)) {
			a->status = 0;
			return false;
		}
		size_t n = c->have < length - a->body_length ? c->have : length - a->body_length;
		memcpy(a->body + a->body_length, c->buffer, n);
		a->body_length += n;
		consume(c, n);
	}
	a->body[a->body_length] = '\0';
	return true;
}

static bool read_answer(struct client *c, struct answer *a, int ms)
{
	return read_answer_to(c, a, ms, false);
}

/* Whether the server sent nothing (and did not close) within `ms`. */
static bool silent_for(struct client *c, int ms)
{
	if (c->have != 0)
		return false;
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	return poll(&p, 1, ms) == 0;
}

/* Whether the server closed the connection within `ms` (pending data
 * is read and dropped). */
static bool closed_within(struct client *c, int ms)
{
	long long deadline = now_ms() + ms;
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0)
			return false;
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		if (poll(&p, 1, (int)left) <= 0)
			return false;
		unsigned char scratch[4096];
		ssize_t n = recv(c->fd, scratch, sizeof scratch, 0);
		if (n <= 0)
			return true;
	}
}

static bool send_next(struct client *c)
{
	return send_text(c, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
			    "User-Agent: test\r\n\r\n");
}

/* POSTs `body` to `path` with Content-Length and `extra_headers`. */
static bool send_post(struct client *c, const char *path, const char *extra_headers,
		      const void *body, size_t length)
{
	return send_text(c,
			 "POST %s HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nContent-Length: %zu\r\n%s\r\n",
			 path, length, extra_headers) &&
	       send_bytes(c, body, length);
}

/* Checks an answer's status and, when given, its errorType. */
static bool expect_answer(struct answer *a, int status, const char *error_type)
{
	if (a->status != status)
		return fail_because("status %d, expected %d (head: %.200s)", a->status, status,
				    a->head);
	char type[128];
	if (!header_of(a, "Content-Type", type, sizeof type) || strcmp(type, "application/json") != 0)
		return fail_because("no Content-Type: application/json in the %d answer", status);
	if (error_type != NULL) {
		char wanted[160];
		snprintf(wanted, sizeof wanted, "\"errorType\":\"%s\"", error_type);
		if (a->body == NULL || strstr((char *)a->body, wanted) == NULL ||
		    strstr((char *)a->body, "\"errorMessage\":\"") == NULL)
			return fail_because("answer body %s lacks %s and an errorMessage",
					    a->body ? (char *)a->body : "(none)", wanted);
	} else if (status == 202 && (a->body == NULL || strcmp((char *)a->body, "{\"status\":\"OK\"}") != 0)) {
		return fail_because("202 body is %s", a->body ? (char *)a->body : "(none)");
	}
	return true;
}

/* Sends a request (raw) on a fresh connection and checks the answer. */
static bool one_shot(const char *raw, size_t length, int status, const char *error_type)
{
	struct client c;
	if (!client_open(&c))
		return fail_because("connect: %s", strerror(errno));
	struct answer a;
	bool ok = send_bytes(&c, raw, length) && read_answer(&c, &a, 3000);
	if (!ok) {
		client_close(&c);
		return fail_because("no answer to %.60s", raw);
	}
	ok = expect_answer(&a, status, error_type);
	answer_free(&a);
	client_close(&c);
	return ok;
}

/* ---- server and events ------------------------------------------------------------- */

static struct wk_rapi_server *server;

#define GET_X "GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
/* A string literal and its length, NULs inside included. */
#define LITERAL(text) text, sizeof(text) - 1

static bool start_server(void)
{
	struct ember_error err;
	clear_records();
	if (wk_rapi_server_start(&server, socket_path, &callbacks, NULL, &err) < 0) {
		fprintf(stderr, "%s\n", err.message);
		server = NULL;
		return false;
	}
	seen.server = server;
	return true;
}

static void stop_server(void)
{
	wk_rapi_server_stop(server);
	server = NULL;
	seen.server = NULL;
}

static char event_body_text[] = "{\"key\":\"value\",\"unicode\":\"\xc3\xa9\xe2\x82\xac\"}";

static struct wk_rapi_event make_event(const char *id)
{
	struct wk_rapi_event event = {
		.request_id = id,
		.deadline_ms = 1700000000123ull,
		.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:hello",
		.trace_id = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
		.body = event_body_text,
		.body_length = strlen(event_body_text),
	};
	return event;
}

static bool push(const struct wk_rapi_event *event)
{
	struct ember_error err;
	if (wk_rapi_push_event(server, event, &err) < 0)
		return fail_because("push %s: %s", event->request_id, err.message);
	return true;
}

/* GET /next on `c` and checks it receives `id`. */
static bool take_event(struct client *c, const char *id)
{
	struct answer a;
	if (!send_next(c) || !read_answer(c, &a, 3000))
		return fail_because("GET /next for %s got no answer", id);
	char got[128] = "";
	header_of(&a, "Lambda-Runtime-Aws-Request-Id", got, sizeof got);
	answer_free(&a);
	if (a.status != 200 || strcmp(got, id) != 0)
		return fail_because("GET /next: status %d, request id `%s`, expected 200 and %s",
				    a.status, got, id);
	return true;
}

/* Starts a server, pushes `id` and has a new client take it. */
static bool setup_delivered(struct client *c, const char *id)
{
	if (!start_server())
		return fail_because("server did not start");
	struct wk_rapi_event event = make_event(id);
	if (!push(&event))
		return false;
	if (!client_open(c))
		return fail_because("connect: %s", strerror(errno));
	return take_event(c, id);
}

static void fill_pattern(unsigned char *p, size_t n, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (unsigned char)x;
	}
}

/* ---- tests --------------------------------------------------------------------------- */

static bool test_next_blocks_until_push(void)
{
	if (!start_server())
		return fail_because("server did not start");
	struct client c;
	if (!client_open(&c))
		return fail_because("connect: %s", strerror(errno));
	bool ok = false;
	struct answer a = {0};
	if (!send_next(&c)) {
		fail_because("send GET /next");
		goto out;
	}
	if (!wait_for(RECORD_NEXT, 1, 2000)) {
		fail_because("next_requested was not called");
		goto out;
	}
	if (!silent_for(&c, 300)) {
		fail_because("GET /next was answered before any event was pushed");
		goto out;
	}
	struct wk_rapi_event event = make_event("8476a536-e9f4-11e8-9739-2dfe598c3fcd");
	event.client_context = "{\"client\":{\"app_title\":\"t\"},\"custom\":{\"k\":\"v\"}}";
	event.cognito_identity = "{\"cognitoIdentityId\":\"id\",\"cognitoIdentityPoolId\":\"pool\"}";
	long long pushed = now_ms();
	if (!push(&event))
		goto out;
	if (!read_answer(&c, &a, 3000)) {
		fail_because("no answer after the push");
		goto out;
	}
	long long latency = now_ms() - pushed;
	if (a.status != 200) {
		fail_because("status %d", a.status);
		goto out;
	}
	const struct {
		const char *name, *value;
	} wanted[] = {
		{"Lambda-Runtime-Aws-Request-Id", event.request_id},
		{"Lambda-Runtime-Deadline-Ms", "1700000000123"},
		{"Lambda-Runtime-Invoked-Function-Arn", event.invoked_function_arn},
		{"Lambda-Runtime-Trace-Id", event.trace_id},
		{"Lambda-Runtime-Client-Context", event.client_context},
		{"Lambda-Runtime-Cognito-Identity", event.cognito_identity},
		{"Content-Type", "application/json"},
	};
	for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
		char value[512];
		if (!header_of(&a, wanted[i].name, value, sizeof value) ||
		    strcmp(value, wanted[i].value) != 0) {
			fail_because("header %s is `%s`, expected `%s`", wanted[i].name,
				     header_of(&a, wanted[i].name, value, sizeof value) ? value : "(absent)",
				     wanted[i].value);
			goto out;
		}
	}
	if (a.body_length != event.body_length || memcmp(a.body, event.body, a.body_length) != 0) {
		fail_because("body differs: %zu bytes `%s`", a.body_length, (char *)a.body);
		goto out;
	}
	if (latency > 500) {
		fail_because("the answer came %lld ms after the push", latency);
		goto out;
	}
	ok = true;
out:
	answer_free(&a);
	client_close(&c);
	stop_server();
	return ok;
}

static bool test_optional_headers_absent(void)
{
	struct client c;
	bool ok = false;
	struct answer a = {0};
	if (!start_server())
		return fail_because("server did not start");
	struct wk_rapi_event event = make_event("no-extras");
	event.trace_id = NULL;
	event.body = NULL;
	event.body_length = 0;
	if (!push(&event) || !client_open(&c))
		goto out_server;
	if (!send_next(&c) || !read_answer(&c, &a, 3000) || a.status != 200) {
		fail_because("GET /next failed (status %d)", a.status);
		goto out;
	}
	char value[64];
	if (header_of(&a, "Lambda-Runtime-Trace-Id", value, sizeof value) ||
	    header_of(&a, "Lambda-Runtime-Client-Context", value, sizeof value) ||
	    header_of(&a, "Lambda-Runtime-Cognito-Identity", value, sizeof value)) {
		fail_because("an optional header was sent though not given");
		goto out;
	}
	if (a.body_length != 0) {
		fail_because("expected an empty body");
		goto out;
	}
	ok = true;
out:
	answer_free(&a);
	client_close(&c);
out_server:
	stop_server();
	return ok;
}

static bool test_push_from_next_requested(void)
{
	if (!start_server())
		return fail_because("server did not start");
	static struct wk_rapi_event event;
	event = make_event("from-callback");
	pthread_mutex_lock(&seen.lock);
	seen.push_on_next = &event;
	pthread_mutex_unlock(&seen.lock);
	struct client c;
	bool ok = client_open(&c) && take_event(&c, "from-callback");
	client_close(&c);
	stop_server();
	return ok;
}

static bool test_big_event(void)
{
	if (!start_server())
		return fail_because("server did not start");
	size_t length = WK_RAPI_PAYLOAD_MAX;
	unsigned char *body = malloc(length);
	fill_pattern(body, length, 7);
	struct wk_rapi_event event = make_event("big-event");
	event.body = body;
	event.body_length = length;
	struct client c;
	struct answer a = {0};
	bool ok = false;
	if (!push(&event) || !client_open(&c))
		goto out_body;
	if (!send_next(&c) || !read_answer(&c, &a, 10000) || a.status != 200) {
		fail_because("GET /next failed (status %d)", a.status);
		goto out;
	}
	if (a.body_length != length || memcmp(a.body, body, length) != 0) {
		fail_because("the %zu-byte event arrived as %zu different bytes", length, a.body_length);
		goto out;
	}
	event.request_id = "too-big";
	event.body_length = length + 1;
	struct ember_error err;
	if (wk_rapi_push_event(server, &event, &err) == 0) {
		fail_because("an event of %zu bytes was accepted", length + 1);
		goto out;
	}
	ok = true;
out:
	answer_free(&a);
	client_close(&c);
out_body:
	free(body);
	stop_server();
	return ok;
}

static bool test_plain_response_6mb(void)
{
	struct client c;
	const char *id = "plain-6mb";
	bool ok = false;
	unsigned char *body = NULL, *got = NULL;
	struct answer a = {0};
	if (!setup_delivered(&c, id))
		goto out;
	size_t length = WK_RAPI_PAYLOAD_MAX; /* exactly the limit */
	body = malloc(length);
	fill_pattern(body, length, 42);
	if (!send_post(&c, "/2018-06-01/runtime/invocation/plain-6mb/response",
		       "Content-Type: application/octet-stream\r\n", body, length) ||
	    !read_answer(&c, &a, 10000)) {
		fail_because("no answer to the response POST");
		goto out;
	}
	if (!expect_answer(&a, 202, NULL))
		goto out;
	struct record r;
	if (!wait_for(RECORD_FINISHED, 1, 2000) || !nth_record(RECORD_FINISHED, 0, &r)) {
		fail_because("response_finished was not called");
		goto out;
	}
	if (r.outcome != WK_RAPI_RESPONSE_COMPLETE || r.body_bytes != length ||
	    strcmp(r.request_id, id) != 0) {
		fail_because("finished with outcome %d, %llu bytes, id %s", r.outcome,
			     (unsigned long long)r.body_bytes, r.request_id);
		goto out;
	}
	struct record started;
	if (!nth_record(RECORD_STARTED, 0, &started) || started.streaming ||
	    strcmp(started.content_type, "application/octet-stream") != 0) {
		fail_because("response_started missing or wrong (content type `%s`)",
			     started.content_type);
		goto out;
	}
	size_t got_length;
	got = chunks_of(id, &got_length);
	if (got_length != length || memcmp(got, body, length) != 0) {
		fail_because("the chunks hold %zu bytes, not the %zu sent", got_length, length);
		goto out;
	}
	/* the same connection serves the next request (keep-alive) */
	struct wk_rapi_event second = make_event("second");
	if (!push(&second) || !take_event(&c, "second"))
		goto out;
	ok = true;
out:
	free(body);
	free(got);
	answer_free(&a);
	client_close(&c);
	stop_server();
	return ok;
}

static bool send_chunk(struct client *c, const void *data, size_t length)
{
	return send_text(c, "%zx\r\n", length) && send_bytes(c, data, length) &&
	       send_bytes(c, "\r\n", 2);
}

static bool test_streamed_chunks_as_sent(void)
{
	struct client c;
	const char *id = "stream-1";
	bool ok = false;
	struct answer a = {0};
	if (!setup_delivered(&c, id))
		goto out;
	if (!send_text(&c, "POST /2018-06-01/runtime/invocation/stream-1/response HTTP/1.1\r\n"
			   "Host: 127.0.0.1:9001\r\nTransfer-Encoding: chunked\r\n"
			   "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
			   "Content-Type: text/plain\r\n\r\n")) {
		fail_because("send headers");
		goto out;
	}
	if (!wait_for(RECORD_STARTED, 1, 2000)) {
		fail_because("response_started was not called on the headers");
		goto out;
	}
	struct record started;
	nth_record(RECORD_STARTED, 0, &started);
	if (!started.streaming || strcmp(started.content_type, "text/plain") != 0) {
		fail_because("started: streaming %d, content type %s", started.streaming,
			     started.content_type);
		goto out;
	}
	for (int i = 0; i < 5; i++) {
		char piece[64];
		int n = snprintf(piece, sizeof piece, "chunk %d of the stream\n", i);
		if (!send_chunk(&c, piece, (size_t)n)) {
			fail_because("send chunk %d", i);
			goto out;
		}
		usleep(100 * 1000);
		size_t length;
		unsigned char *so_far = chunks_of(id, &length);
		char expected[512] = "";
		for (int k = 0; k <= i; k++) {
			char line[64];
			snprintf(line, sizeof line, "chunk %d of the stream\n", k);
			strcat(expected, line);
		}
		bool same = length == strlen(expected) && memcmp(so_far, expected, length) == 0;
		free(so_far);
		if (!same) {
			fail_because("100 ms after chunk %d the callbacks had %zu bytes, expected %zu",
				     i, length, strlen(expected));
			goto out;
		}
		if (count_of(RECORD_FINISHED) != 0) {
			fail_because("finished before the last chunk");
			goto out;
		}
	}
	if (!send_text(&c, "0\r\n\r\n") || !read_answer(&c, &a, 3000) || !expect_answer(&a, 202, NULL))
		goto out_why;
	struct record r;
	if (!wait_for(RECORD_FINISHED, 1, 2000) || !nth_record(RECORD_FINISHED, 0, &r) ||
	    r.outcome != WK_RAPI_RESPONSE_COMPLETE || r.has_error_type) {
		fail_because("not finished as complete");
		goto out;
	}
	ok = true;
	goto out;
out_why:
	if (why[0] == '\0')
		fail_because("no 202 after the last chunk");
out:
	answer_free(&a);
	client_close(&c);
	stop_server();
	return ok;
}

static bool test_streamed_error_trailers(void)
{
	struct client c;
	const char *id = "stream-err";
	bool ok = false;
	struct answer a = {0};
	why[0] = '\0';
	if (!setup_delivered(&c, id))
		goto out;
	/* base64 of {"errorMessage":"boom","errorType":"Oops"} */
	const char *encoded = "eyJlcnJvck1lc3NhZ2UiOiJib29tIiwiZXJyb3JUeXBlIjoiT29wcyJ9";
	if (!send_text(&c, "POST /2018-06-01/runtime/invocation/stream-err/response HTTP/1.1\r\n"
			   "Host: x\r\nTransfer-Encoding: chunked\r\n"
			   "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
			   "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n") ||
	    !send_chunk(&c, "partial", 7) ||
	    !send_text(&c, "0\r\nLambda-Runtime-Function-Error-Type: Runtime.Oops\r\n"
			   "Lambda-Runtime-Function-Error-Body: %s\r\n\r\n", encoded) ||
	    !read_answer(&c, &a, 3000) || !expect_answer(&a, 202, NULL)) {
		if (why[0] == '\0')
			fail_because("no 202 for the response with error trailers");
		goto out;
	}
	struct record r;
	if (!wait_for(RECORD_FINISHED, 1, 2000) || !nth_record(RECORD_FINISHED, 0, &r)) {
		fail_because("not finished");
		goto out;
	}
	const char *decoded = "{\"errorMessage\":\"boom\",\"errorType\":\"Oops\"}";
	if (r.outcome != WK_RAPI_RESPONSE_FUNCTION_ERROR || strcmp(r.error_type, "Runtime.Oops") != 0 ||
	    !r.has_data || r.length != strlen(decoded) || memcmp(r.data, decoded, r.length) != 0 ||
	    r.body_bytes != 7) {
		fail_because("finished: outcome %d, type `%s`, body `%s`, %llu bytes", r.outcome,
			     r.error_type, r.has_data ? (char *)r.data : "(none)",
			     (unsigned long long)r.body_bytes);
		goto out;
	}
	ok = true;
out:
	answer_free(&a);
	client_close(&c);
	stop_server();
	return ok;
}

static bool test_invocation_error(void)
{
	struct client c;
	const char *id = "err-1";
	bool ok = false;
	struct answer a = {0};
	if (!setup_delivered(&c, id))
		goto out;
	const char *body = "{\"errorMessage\":\"division by zero\",\"errorType\":\"ZeroDivisionError\","
			   "\"stackTrace\":[\"  File \\\"h.py\\\", line 2\"]}";
	if (!send_post(&c, "/2018-06-01/runtime/invocation/err-1/error",
		       "Lambda-Runtime-Function-Error-Type: Unhandled\r\n"
		       "Content-Type: application/vnd.aws.lambda.error+json\r\n",
		       body, strlen(body)) ||
	    !read_answer(&c, &a, 3000)) {
		fail_because("no answer to the error POST");
		goto out;
	}
	if (!expect_answer(&a, 202, NULL))
		goto out;
	struct record r;
	if (!wait_for(RECORD_INVOCATION_ERROR, 1, 2000) || !nth_record(RECORD_INVOCATION_ERROR, 0, &r)) {
		fail_because("invocation_error was not called");
		goto out;
	}
	if (strcmp(r.request_id, id) != 0 || strcmp(r.error_type, "Unhandled") != 0 ||
	    r.length != strlen(body) || memcmp(r.data, body, r.length) != 0 || r.truncated) {
		fail_because("invocation_error got id %s, type `%s`, body `%s`", r.request_id,
			     r.error_type, (char *)r.data);
		goto out;
	}
	if (count_of(RECORD_STARTED) != 0 || count_of(RECORD_FINISHED) != 0) {
		fail_because("an error POST also reported a response");
		goto out;
	}
	/* answered: a later response for it is refused */
	answer_free(&a);
	if (!send_post(&c, "/2018-06-01/runtime/invocation/err-1/response", "", "{}", 2) ||
	    !read_answer(&c, &a, 3000) || !expect_answer(&a, 400, "InvalidRequestID")) {
		if (a.status != 400)
			fail_because("a response after the error was not refused (status %d)", a.status);
		goto out;
	}
	ok = true;
out:
	answer_free(&a);
	client_close(&c);
	stop_server();
	return ok;
}

static bool test_init_error(void)
{
	bool ok = false;
	struct client c = {.fd = -1};
	struct answer a = {0};
	if (!start_server())
		return fail_because("server did not start");
	const char *body = "{\"errorMessage\":\"No module named 'handler'\",\"errorType\":\"Runtime.ImportModuleError\"}";
	if (!client_open(&c) ||
	    !send_post(&c, "/2018-06-01/runtime/init/error",
		       "Lambda-Runtime-Function-Error-Type: Runtime.ImportModuleError\r\n", body,
		       strlen(body)) ||
	    !read_answer(&c, &a, 3000)) {
		fail_because("no answer to init/error");
		goto out;
	}
	if (!expect_answer(&a, 202, NULL))
		goto out;
	struct record r;
	if (!wait_for(RECORD_INIT_ERROR, 1, 2000) || !nth_record(RECORD_INIT_ERROR, 0, &r) ||
	    strcmp(r.error_type, "Runtime.ImportModuleError") != 0 || r.length != strlen(body) ||
	    memcmp(r.data, body, r.length) != 0) {
		fail_because("init_error not called with the type and body");
		goto out;
	}
	/* without the type header */
	answer_free(&a);
	if (!send_post(&c, "/2018-06-01/runtime/init/error", "", "x", 1) || !read_answer(&c, &a, 3000) ||
	    !expect_answer(&a, 202, NULL) || !wait_for(RECORD_INIT_ERROR, 2, 2000) ||
	    !nth_record(RECORD_INIT_ERROR, 1, &r) || r.has_error_type) {
		if (why[0] == '\0' || a.status == 202)
			fail_because("init/error without a type header: not reported with a NULL type");
		goto out;
	}
	/* after a GET /next, init/error is out of order */
	struct wk_rapi_event event = make_event("after-init");
	answer_free(&a);
	if (!push(&event) || !take_event(&c, "after-init"))
		goto out;
	if (!send_post(&c, "/2018-06-01/runtime/init/error", "", "{}", 2) ||
	    !read_answer(&c, &a, 3000) || !expect_answer(&a, 403, "InvalidStateTransition"))
		goto out;
	if (count_of(RECORD_INIT_ERROR) != 2) {
		fail_because("the refused init error still reached the host");
		goto out;
	}
	ok = true;
out:
	answer_free(&a);
	client_close(&c);
	stop_server();
	return ok;
}

static bool test_not_found(void)
{
	if (!start_server())
		return fail_because("server did not start");
	bool ok = false;
	struct client c = {.fd = -1};
	const char *requests[] = {
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /2018-06-01/runtime/invocation/nex HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"DELETE /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /2018-06-01/runtime/invocation/abc/response HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /2018-06-01/runtime/invocation/abc/responses HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
		"POST /2018-06-01/runtime/init/error/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"POST /2018-06-01/runtime/invocation/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"HEAD /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n",
		/* %2F decodes to '/', %00 to the end: paths of another shape */
		"POST /2018-06-01/runtime/invocation/a%00b/response HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"POST /2018-06-01/runtime/invocation/a%2Fb/response HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
	};
	if (!client_open(&c)) {
		fail_because("connect");
		goto out;
	}
	/* all on one connection: a 404 keeps it alive */
	for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
		struct answer a;
		bool head = strncmp(requests[i], "HEAD", 4) == 0;
		if (!send_text(&c, "%s", requests[i]) || !read_answer_to(&c, &a, 3000, head)) {
			fail_because("no answer to %.60s", requests[i]);
			goto out;
		}
		bool right = head ? a.status == 404 : expect_answer(&a, 404, "NotFound");
		answer_free(&a);
		if (!right) {
			if (head)
				fail_because("HEAD got %d", a.status);
			goto out;
		}
	}
	if (count_of(RECORD_PROTOCOL_ERROR) < sizeof requests / sizeof requests[0]) {
		fail_because("only %zu protocol errors reported", count_of(RECORD_PROTOCOL_ERROR));
		goto out;
	}
	if (count_of(RECORD_NEXT) != 0) {
		fail_because("a refused request reached next_requested");
		goto out;
	}
	ok = true;
out:
	client_close(&c);
	stop_server();
	return ok;
}

static bool test_invalid_request_ids(void)
{
	if (!start_server())
		return fail_because("server did not start");
	bool ok = false;
	struct wk_rapi_event event = make_event("known-id");
	if (!push(&event))
		goto out;
	/* before any /next: even a pushed id is not answerable */
	const char *before = "POST /2018-06-01/runtime/invocation/known-id/response HTTP/1.1\r\n"
			     "Host: x\r\nContent-Length: 2\r\n\r\n{}";
	if (!one_shot(before, strlen(before), 400, "InvalidRequestID"))
		goto out;
	char long_id[200];
	memset(long_id, 'a', 65);
	long_id[65] = '\0';
	char raw[512];
	const char *bad_ids[] = {"unknown-id", "bad$id", "a%20b", "a.b", long_id, ""};
	for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
		for (int action = 0; action < 2; action++) {
			snprintf(raw, sizeof raw,
				 "POST /2018-06-01/runtime/invocation/%s/%s HTTP/1.1\r\nHost: x\r\n"
				 "Content-Length: 2\r\n\r\n{}",
				 bad_ids[i], action ? "error" : "response");
			if (!one_shot(raw, strlen(raw), 400, "InvalidRequestID")) {
				char detail[sizeof why];
				snprintf(detail, sizeof detail, "%s", why);
				fail_because("id `%s`: %s", bad_ids[i], detail);
				goto out;
			}
		}
	}
	/* the refused POSTs did not consume the event */
	struct client c;
	if (!client_open(&c))
		goto out;
	bool taken = take_event(&c, "known-id");
	struct answer a = {0};
	/* answered twice: the second is refused */
	bool twice = taken &&
		     send_post(&c, "/2018-06-01/runtime/invocation/known-id/response", "", "1", 1) &&
		     read_answer(&c, &a, 3000) && a.status == 202;
	answer_free(&a);
	twice = twice &&
		send_post(&c, "/2018-06-01/runtime/invocation/known-id/response", "", "2", 1) &&
		read_answer(&c, &a, 3000) && expect_answer(&a, 400, "InvalidRequestID");
	answer_free(&a);
	client_close(&c);
	if (!taken)
		goto out;
	if (!twice) {
		if (why[0] == '\0')
			fail_because("a second response for one id was not refused");
		goto out;
	}
	if (count_of(RECORD_STARTED) != 1 || count_of(RECORD_FINISHED) != 1) {
		fail_because("refused responses reached the host (%zu started)", count_of(RECORD_STARTED));
		goto out;
	}
	ok = true;
out:
	stop_server();
	return ok;
}

static bool test_too_large(void)
{
	struct client c = {.fd = -1};
	bool ok = false;
	struct answer a = {0};
	unsigned char *big = NULL;
	why[0] = '\0';
	if (!setup_delivered(&c, "big-1"))
		goto out;
	/* declared past the limit: answered before the body */
	if (!send_text(&c, "POST /2018-06-01/runtime/invocation/big-1/response HTTP/1.1\r\nHost: x\r\n"
			   "Content-Length: %u\r\n\r\n", WK_RAPI_PAYLOAD_MAX + 1) ||
	    !read_answer(&c, &a, 3000) || !expect_answer(&a, 413, "RequestEntityTooLarge")) {
		if (why[0] == '\0')
			fail_because("no 413 for a declared %u-byte response", WK_RAPI_PAYLOAD_MAX + 1);
		goto out;
	}
	struct record r;
	if (!wait_for(RECORD_FINISHED, 1, 2000) || !nth_record(RECORD_FINISHED, 0, &r) ||
	    r.outcome != WK_RAPI_RESPONSE_TOO_LARGE) {
		fail_because("response_finished(TOO_LARGE) not reported for the declared size");
		goto out;
	}
	answer_free(&a);
	client_close(&c);
	stop_server();

	/* chunked, not streamed, going past 6 MB: finished at once, 413 at the end */
	if (!setup_delivered(&c, "big-2"))
		goto out;
	size_t length = WK_RAPI_PAYLOAD_MAX + 1000;
	big = malloc(length);
	fill_pattern(big, length, 3);
	if (!send_text(&c, "POST /2018-06-01/runtime/invocation/big-2/response HTTP/1.1\r\nHost: x\r\n"
			   "Transfer-Encoding: chunked\r\n\r\n")) {
		fail_because("send");
		goto out;
	}
	for (size_t at = 0; at < length; at += 65536) {
		size_t n = length - at < 65536 ? length - at : 65536;
		if (!send_chunk(&c, big + at, n)) {
			fail_because("send chunk at %zu", at);
			goto out;
		}
	}
	if (!wait_for(RECORD_FINISHED, 1, 3000) || !nth_record(RECORD_FINISHED, 0, &r) ||
	    r.outcome != WK_RAPI_RESPONSE_TOO_LARGE || r.body_bytes > WK_RAPI_PAYLOAD_MAX) {
		fail_because("response_finished(TOO_LARGE) not reported when the chunks passed the limit");
		goto out;
	}
	size_t got_length;
	unsigned char *got = chunks_of("big-2", &got_length);
	bool prefix = got_length <= WK_RAPI_PAYLOAD_MAX && memcmp(got, big, got_length) == 0;
	free(got);
	if (!prefix || got_length != r.body_bytes) {
		fail_because("the chunks passed on (%zu bytes) are not the body's start", got_length);
		goto out;
	}
	if (!send_text(&c, "0\r\n\r\n") || !read_answer(&c, &a, 3000) ||
	    !expect_answer(&a, 413, "RequestEntityTooLarge")) {
		if (why[0] == '\0')
			fail_because("no 413 at the end of the oversized chunked body");
		goto out;
	}
	answer_free(&a);
	client_close(&c);
	stop_server();

	/* streamed: 20 MiB declared is fine to declare, one more byte is not */
	if (!setup_delivered(&c, "big-3"))
		goto out;
	if (!send_text(&c, "POST /2018-06-01/runtime/invocation/big-3/response HTTP/1.1\r\nHost: x\r\n"
			   "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
			   "Content-Length: %u\r\n\r\n", WK_RAPI_STREAMED_RESPONSE_MAX + 1) ||
	    !read_answer(&c, &a, 3000) || !expect_answer(&a, 413, "RequestEntityTooLarge")) {
		if (why[0] == '\0')
			fail_because("no 413 for a streamed response past 20 MiB");
		goto out;
	}
	answer_free(&a);
	client_close(&c);
	stop_server();

	/* a streamed response may pass 6 MB */
	if (!setup_delivered(&c, "big-4"))
		goto out;
	if (!send_text(&c, "POST /2018-06-01/runtime/invocation/big-4/response HTTP/1.1\r\nHost: x\r\n"
			   "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
			   "Transfer-Encoding: chunked\r\n\r\n")) {
		fail_because("send");
		goto out;
	}
	for (size_t at = 0; at < length; at += 65536) {
		size_t n = length - at < 65536 ? length - at : 65536;
		if (!send_chunk(&c, big + at, n)) {
			fail_because("send chunk at %zu", at);
			goto out;
		}
	}
	if (!send_text(&c, "0\r\n\r\n") || !read_answer(&c, &a, 5000) || !expect_answer(&a, 202, NULL)) {
		if (why[0] == '\0')
			fail_because("a %zu-byte streamed response was not accepted", length);
		goto out;
	}
	if (!wait_for(RECORD_FINISHED, 1, 3000) || !nth_record(RECORD_FINISHED, 0, &r) ||
	    r.outcome != WK_RAPI_RESPONSE_COMPLETE || r.body_bytes != length) {
		fail_because("the big streamed response did not finish complete");
		goto out;
	}
	answer_free(&a);
	client_close(&c);
	stop_server();

	/* an error body past 1 MiB */
	if (!setup_delivered(&c, "big-5"))
		goto out;
	if (!send_text(&c, "POST /2018-06-01/runtime/invocation/big-5/error HTTP/1.1\r\nHost: x\r\n"
			   "Lambda-Runtime-Function-Error-Type: Big\r\nContent-Length: %u\r\n\r\n",
		       WK_RAPI_ERROR_BODY_MAX + 1) ||
	    !read_answer(&c, &a, 3000) || !expect_answer(&a, 413, "RequestEntityTooLarge")) {
		if (why[0] == '\0')
			fail_because("no 413 for a 1 MiB + 1 error body");
		goto out;
	}
	if (!wait_for(RECORD_INVOCATION_ERROR, 1, 2000) || !nth_record(RECORD_INVOCATION_ERROR, 0, &r) ||
	    !r.truncated || strcmp(r.error_type, "Big") != 0) {
		fail_because("the oversized error was not reported, truncated, to the host");
		goto out;
	}
	answer_free(&a);
	client_close(&c);
	stop_server();

	/* an undeclared error body past 1 MiB: the first 1 MiB kept, 413 */
	if (!setup_delivered(&c, "big-6"))
		goto out;
	if (!send_text(&c, "POST /2018-06-01/runtime/invocation/big-6/error HTTP/1.1\r\nHost: x\r\n"
			   "Transfer-Encoding: chunked\r\n\r\n")) {
		fail_because("send");
		goto out;
	}
	for (size_t at = 0; at < WK_RAPI_ERROR_BODY_MAX + 5000; at += 65536) {
		if (!send_chunk(&c, big + at, 65536)) {
			fail_because("send chunk at %zu", at);
			goto out;
		}
	}
	if (!send_text(&c, "0\r\n\r\n") || !read_answer(&c, &a, 3000) ||
	    !expect_answer(&a, 413, "RequestEntityTooLarge")) {
		if (why[0] == '\0')
			fail_because("no 413 for an undeclared 1 MiB+ error body");
		goto out;
	}
	if (!wait_for(RECORD_INVOCATION_ERROR, 1, 2000) || !nth_record(RECORD_INVOCATION_ERROR, 0, &r) ||
	    !r.truncated || r.length != WK_RAPI_ERROR_BODY_MAX || memcmp(r.data, big, r.length) != 0) {
		fail_because("the error body was not cut to its first 1 MiB (%zu bytes)", r.length);
		goto out;
	}
	ok = true;
out:
	free(big);
	answer_free(&a);
	client_close(&c);
	stop_server();
	return ok;
}

/* A chunked body that goes on past the discard allowance: the connection
 * is closed, the server lives on. */
static bool test_endless_body(void)
{
	struct client c = {.fd = -1};
	bool ok = false;
	if (!start_server())
		return fail_because("server did not start");
	if (!client_open(&c) ||
	    !send_text(&c, "POST /nowhere HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")) {
		fail_because("send");
		goto out;
	}
	static unsigned char block[65536];
	bool closed = false;
	for (int i = 0; i < 200 && !closed; i++)
		closed = !send_chunk(&c, block, sizeof block);
	if (!closed && !closed_within(&c, 3000)) {
		fail_because("12 MiB of unwanted body did not close the connection");
		goto out;
	}
	client_close(&c);
	if (!one_shot(GET_X, strlen(GET_X), 404, "NotFound"))
		goto out;
	ok = true;
out:
	client_close(&c);
	stop_server();
	return ok;
}

static bool test_garbage(void)
{
	if (!start_server())
		return fail_because("server did not start");
	bool ok = false;
	static char huge_header[300000];
	memset(huge_header, 'a', sizeof huge_header - 1);
	memcpy(huge_header, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nX: ", 54);
	unsigned char random_bytes[4096];
	fill_pattern(random_bytes, sizeof random_bytes, 99);
	const struct {
		const char *name;
		const void *bytes;
		size_t length;
	} inputs[] = {
		{"text", LITERAL("GARBAGE\r\n\r\n")},
		{"no-version", LITERAL("GET /2018-06-01/runtime/invocation/next\r\n\r\n")},
		{"bad-version", LITERAL("GET / HTTP/9.9\r\n\r\n")},
		{"binary", random_bytes, sizeof random_bytes},
		{"nul", LITERAL("GET /\0 HTTP/1.1\r\n\r\n")},
		{"header-without-colon", LITERAL("GET / HTTP/1.1\r\nHost x\r\nbroken\r\n\r\n")},
		{"huge-header", huge_header, sizeof huge_header - 1},
		{"bad-chunk-size",
		 LITERAL("POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: x\r\n"
			 "Transfer-Encoding: chunked\r\n\r\nzz\r\n")},
		{"chunk-size-overflow",
		 LITERAL("POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: x\r\n"
			 "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n")},
		{"bad-content-length",
		 LITERAL("POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: x\r\n"
			 "Content-Length: -5\r\n\r\n")},
		{"content-length-and-chunked",
		 LITERAL("POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: x\r\n"
			 "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n")},
		{"two-content-lengths",
		 LITERAL("POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: x\r\n"
			 "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab")},
		{"bad-chunk-end",
		 LITERAL("POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: x\r\n"
			 "Transfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n")},
		{"bare-lf", LITERAL("GET /x HTTP/1.1\nHost: x\n\n")},
		{"request-line-only-spaces", LITERAL("   \r\n\r\n")},
		{"unsupported-transfer-encoding",
		 LITERAL("POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: x\r\n"
			 "Transfer-Encoding: gzip\r\n\r\nabc")},
	};
	for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
		struct client c;
		if (!client_open(&c)) {
			fail_because("%s: connect failed: the server is gone?", inputs[i].name);
			goto out;
		}
		send_bytes(&c, inputs[i].bytes, inputs[i].length); /* may fail once closed */
		struct answer a;
		bool answered = read_answer(&c, &a, 3000);
		int status = answered ? a.status : 0;
		if (answered)
			answer_free(&a);
		bool closed = !answered && closed_within(&c, 100);
		client_close(&c);
		if (answered && (status < 400 || status > 499) && status != 505) {
			fail_because("%s: answered %d, expected a 4xx (or 505) or a close",
				     inputs[i].name, status);
			goto out;
		}
		if (!answered && !closed) {
			fail_because("%s: neither answered nor closed within 3 s", inputs[i].name);
			goto out;
		}
	}
	/* the server still serves */
	if (!one_shot(GET_X, strlen(GET_X), 404, "NotFound"))
		goto out;
	struct wk_rapi_event event = make_event("after-garbage");
	struct client c;
	if (!push(&event) || !client_open(&c))
		goto out;
	ok = take_event(&c, "after-garbage");
	client_close(&c);
	if (!ok)
		goto out;
	ok = count_of(RECORD_PROTOCOL_ERROR) > 0;
	if (!ok)
		fail_because("no protocol error was reported for any of the garbage");
out:
	stop_server();
	return ok;
}

static bool test_disconnect_mid_body(void)
{
	struct client c;
	bool ok = false;
	why[0] = '\0';
	if (!setup_delivered(&c, "cut-1"))
		goto out;
	unsigned char half[500];
	fill_pattern(half, sizeof half, 5);
	if (!send_text(&c, "POST /2018-06-01/runtime/invocation/cut-1/response HTTP/1.1\r\nHost: x\r\n"
			   "Content-Length: 1000\r\n\r\n") ||
	    !send_bytes(&c, half, sizeof half)) {
		fail_because("send");
		goto out;
	}
	if (!wait_for(RECORD_CHUNK, 1, 2000)) {
		fail_because("the first half never reached response_chunk");
		goto out;
	}
	client_close(&c);
	struct record r;
	if (!wait_for(RECORD_FINISHED, 1, 3000) || !nth_record(RECORD_FINISHED, 0, &r) ||
	    r.outcome != WK_RAPI_RESPONSE_TRUNCATED || r.body_bytes != sizeof half) {
		fail_because("a cut response did not finish as truncated after 500 bytes");
		goto out;
	}
	/* and it cannot be answered again */
	const char *again = "POST /2018-06-01/runtime/invocation/cut-1/response HTTP/1.1\r\nHost: x\r\n"
			    "Content-Length: 2\r\n\r\n{}";
	if (!one_shot(again, strlen(again), 400, "InvalidRequestID"))
		goto out;
	stop_server();

	/* an error POST cut midway reaches the host as truncated */
	if (!setup_delivered(&c, "cut-2"))
		goto out;
	if (!send_text(&c, "POST /2018-06-01/runtime/invocation/cut-2/error HTTP/1.1\r\nHost: x\r\n"
			   "Lambda-Runtime-Function-Error-Type: Cut\r\nContent-Length: 100\r\n\r\n{\"errorMess")) {
		fail_because("send");
		goto out;
	}
	usleep(100 * 1000);
	client_close(&c);
	if (!wait_for(RECORD_INVOCATION_ERROR, 1, 3000) || !nth_record(RECORD_INVOCATION_ERROR, 0, &r) ||
	    !r.truncated || strcmp((char *)r.data, "{\"errorMess") != 0) {
		fail_because("a cut error POST was not reported as truncated");
		goto out;
	}
	/* a chunked streamed response cut midway */
	stop_server();
	if (!setup_delivered(&c, "cut-3"))
		goto out;
	if (!send_text(&c, "POST /2018-06-01/runtime/invocation/cut-3/response HTTP/1.1\r\nHost: x\r\n"
			   "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
			   "Transfer-Encoding: chunked\r\n\r\n") ||
	    !send_chunk(&c, "abc", 3) || !send_text(&c, "10\r\nonly-part")) {
		fail_because("send");
		goto out;
	}
	usleep(100 * 1000);
	client_close(&c);
	if (!wait_for(RECORD_FINISHED, 1, 3000) || !nth_record(RECORD_FINISHED, 0, &r) ||
	    r.outcome != WK_RAPI_RESPONSE_TRUNCATED) {
		fail_because("a cut streamed response did not finish as truncated");
		goto out;
	}
	ok = true;
out:
	client_close(&c);
	stop_server();
	return ok;
}

static bool test_two_waiters(void)
{
	struct client first = {.fd = -1}, second = {.fd = -1};
	bool ok = false;
	struct answer a = {0};
	if (!start_server())
		return fail_because("server did not start");
	if (!client_open(&first) || !client_open(&second) || !send_next(&first)) {
		fail_because("connect or send");
		goto out;
	}
	if (!wait_for(RECORD_NEXT, 1, 2000) || !send_next(&second) || !wait_for(RECORD_NEXT, 2, 2000)) {
		fail_because("next_requested not called for both connections");
		goto out;
	}
	struct wk_rapi_event one = make_event("event-one");
	if (!push(&one))
		goto out;
	if (!read_answer(&first, &a, 3000) || a.status != 200) {
		fail_because("the first waiter did not get the first event");
		goto out;
	}
	char id[80] = "";
	header_of(&a, "Lambda-Runtime-Aws-Request-Id", id, sizeof id);
	answer_free(&a);
	if (strcmp(id, "event-one") != 0) {
		fail_because("the first waiter got `%s`", id);
		goto out;
	}
	if (!silent_for(&second, 300)) {
		fail_because("the second waiter was answered without a second event");
		goto out;
	}
	/* the first answers on its own connection while the second waits */
	if (!send_post(&first, "/2018-06-01/runtime/invocation/event-one/response", "", "ok", 2) ||
	    !read_answer(&first, &a, 3000) || a.status != 202) {
		fail_because("a response while another GET /next waits was not accepted");
		goto out;
	}
	answer_free(&a);
	struct wk_rapi_event two = make_event("event-two");
	if (!push(&two) || !read_answer(&second, &a, 3000) || a.status != 200) {
		fail_because("the second waiter did not get the second event");
		goto out;
	}
	header_of(&a, "Lambda-Runtime-Aws-Request-Id", id, sizeof id);
	if (strcmp(id, "event-two") != 0) {
		fail_because("the second waiter got `%s`", id);
		goto out;
	}
	ok = true;
out:
	answer_free(&a);
	client_close(&first);
	client_close(&second);
	stop_server();
	return ok;
}

/* A waiter that hung up: the event it was given goes to the next one. */
static bool test_dead_waiter(void)
{
	struct client dead = {.fd = -1}, live = {.fd = -1};
	bool ok = false;
	if (!start_server())
		return fail_because("server did not start");
	if (!client_open(&dead) || !send_next(&dead) || !wait_for(RECORD_NEXT, 1, 2000)) {
		fail_because("first GET /next");
		goto out;
	}
	client_close(&dead);
	if (!client_open(&live) || !send_next(&live) || !wait_for(RECORD_NEXT, 2, 2000)) {
		fail_because("second GET /next");
		goto out;
	}
	struct wk_rapi_event event = make_event("survivor");
	if (!push(&event))
		goto out;
	struct answer a;
	if (!read_answer(&live, &a, 3000) || a.status != 200) {
		fail_because("the live waiter did not get the event its dead predecessor was given");
		goto out;
	}
	char id[80] = "";
	header_of(&a, "Lambda-Runtime-Aws-Request-Id", id, sizeof id);
	answer_free(&a);
	if (strcmp(id, "survivor") != 0) {
		fail_because("got `%s`", id);
		goto out;
	}
	ok = true;
out:
	client_close(&dead);
	client_close(&live);
	stop_server();
	return ok;
}

/* More connections than WK_RAPI_CONNECTION_MAX: the extra one waits in
 * the listen backlog, unserved, until another closes. */
static bool test_connection_limit(void)
{
	struct client clients[WK_RAPI_CONNECTION_MAX + 1];
	size_t opened = 0;
	bool ok = false;
	if (!start_server())
		return fail_because("server did not start");
	for (; opened < WK_RAPI_CONNECTION_MAX; opened++) {
		struct answer a;
		if (!client_open(&clients[opened]) || !send_text(&clients[opened], GET_X) ||
		    !read_answer(&clients[opened], &a, 3000)) {
			fail_because("connection %zu was not served", opened);
			goto out;
		}
		answer_free(&a);
	}
	struct client *extra = &clients[opened++];
	if (!client_open(extra)) {
		fail_because("connect");
		goto out;
	}
	if (!send_text(extra, GET_X) || !silent_for(extra, 300)) {
		fail_because("connection %d past the limit was served", WK_RAPI_CONNECTION_MAX + 1);
		goto out;
	}
	client_close(&clients[0]);
	struct answer a;
	if (!read_answer(extra, &a, 3000) || a.status != 404) {
		fail_because("the waiting connection was not served once a slot was free");
		goto out;
	}
	answer_free(&a);
	ok = true;
out:
	for (size_t i = 0; i < opened; i++)
		client_close(&clients[i]);
	stop_server();
	return ok;
}

static bool test_full_loop_keep_alive(void)
{
	if (!start_server())
		return fail_because("server did not start");
	struct client c;
	bool ok = client_open(&c);
	for (int i = 0; ok && i < 20; i++) {
		char id[32];
		snprintf(id, sizeof id, "loop-%d", i);
		struct wk_rapi_event event = make_event(id);
		struct answer a;
		char path[128];
		snprintf(path, sizeof path, "/2018-06-01/runtime/invocation/%s/%s", id,
			 i % 3 == 2 ? "error" : "response");
		ok = push(&event) && take_event(&c, id) && send_post(&c, path, "", "{}", 2) &&
		     read_answer(&c, &a, 3000);
		if (ok) {
			ok = a.status == 202;
			answer_free(&a);
		}
		if (!ok && why[0] == '\0')
			fail_because("round %d failed", i);
	}
	client_close(&c);
	if (ok && (count_of(RECORD_FINISHED) + count_of(RECORD_INVOCATION_ERROR) != 20 ||
		   count_of(RECORD_NEXT) != 20)) {
		ok = fail_because("expected 20 endings and 20 next_requested");
	}
	stop_server();
	return ok;
}

static bool test_expect_continue(void)
{
	struct client c;
	bool ok = false;
	struct answer a = {0};
	if (!setup_delivered(&c, "cont-1"))
		goto out;
	if (!send_text(&c, "POST /2018-06-01/runtime/invocation/cont-1/response HTTP/1.1\r\nHost: x\r\n"
			   "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")) {
		fail_because("send");
		goto out;
	}
	if (!read_answer(&c, &a, 3000) || a.status != 100) {
		fail_because("no 100 Continue (status %d)", a.status);
		goto out;
	}
	answer_free(&a);
	if (!send_bytes(&c, "hello", 5) || !read_answer(&c, &a, 3000) || !expect_answer(&a, 202, NULL))
		goto out;
	size_t length;
	unsigned char *got = chunks_of("cont-1", &length);
	ok = length == 5 && memcmp(got, "hello", 5) == 0;
	free(got);
	if (!ok)
		fail_because("the body after 100 Continue did not arrive");
out:
	answer_free(&a);
	client_close(&c);
	stop_server();
	return ok;
}

static bool test_stop_with_waiter(void)
{
	if (!start_server())
		return fail_because("server did not start");
	struct client c;
	if (!client_open(&c) || !send_next(&c) || !wait_for(RECORD_NEXT, 1, 2000)) {
		stop_server();
		return fail_because("GET /next");
	}
	long long start = now_ms();
	stop_server();
	long long took = now_ms() - start;
	bool closed = closed_within(&c, 2000);
	client_close(&c);
	struct stat status;
	if (!closed)
		return fail_because("the waiting connection was not closed by stop");
	if (took > 2000)
		return fail_because("stop took %lld ms", took);
	if (lstat(socket_path, &status) == 0)
		return fail_because("the socket file is still there");
	return true;
}

static bool test_start_errors(void)
{
	struct ember_error err;
	struct wk_rapi_server *other = NULL;
	/* a stale socket file is replaced */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_path);
	unlink(socket_path);
	if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0)
		return fail_because("bind a stale socket: %s", strerror(errno));
	close(fd);
	if (!start_server())
		return fail_because("did not start over a stale socket file");
	/* a live one is refused, and left alone */
	if (wk_rapi_server_start(&other, socket_path, &callbacks, NULL, &err) == 0) {
		wk_rapi_server_stop(other);
		stop_server();
		return fail_because("a second server started on a live socket");
	}
	if (strstr(err.message, "another server is listening") == NULL) {
		stop_server();
		return fail_because("unexpected message: %s", err.message);
	}
	bool alive = one_shot(GET_X, strlen(GET_X), 404, "NotFound");
	stop_server();
	if (!alive)
		return false;
	/* a regular file is not removed */
	FILE *file = fopen(socket_path, "w");
	if (file == NULL)
		return fail_because("create a file");
	fclose(file);
	int started = wk_rapi_server_start(&other, socket_path, &callbacks, NULL, &err);
	struct stat status;
	bool kept = lstat(socket_path, &status) == 0 && S_ISREG(status.st_mode);
	unlink(socket_path);
	if (started == 0) {
		wk_rapi_server_stop(other);
		return fail_because("started over a regular file");
	}
	if (!kept)
		return fail_because("the regular file was removed");
	/* too long a path; a missing directory */
	char long_path[300];
	memset(long_path, 'x', sizeof long_path - 1);
	long_path[0] = '/';
	long_path[sizeof long_path - 1] = '\0';
	if (wk_rapi_server_start(&other, long_path, &callbacks, NULL, &err) == 0) {
		wk_rapi_server_stop(other);
		return fail_because("started on a 299-byte path");
	}
	if (wk_rapi_server_start(&other, "/nonexistent-dir/x.sock", &callbacks, NULL, &err) == 0) {
		wk_rapi_server_stop(other);
		return fail_because("started in a missing directory");
	}
	if (strstr(err.message, "/nonexistent-dir/x.sock") == NULL)
		return fail_because("the error does not name the path: %s", err.message);
	wk_rapi_server_stop(NULL);
	return true;
}

static bool test_push_validation(void)
{
	if (!start_server())
		return fail_because("server did not start");
	struct ember_error err;
	bool ok = false;
	struct wk_rapi_event event = make_event("valid-1");
	if (!push(&event))
		goto out;
	if (wk_rapi_push_event(server, &event, &err) == 0) {
		fail_because("a duplicate request id was accepted");
		goto out;
	}
	const char *bad_ids[] = {"", "a b", "a/b", "a\r\nX: y", NULL};
	for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
		event = make_event(bad_ids[i]);
		if (wk_rapi_push_event(server, &event, &err) == 0) {
			fail_because("request id `%s` was accepted", bad_ids[i] ? bad_ids[i] : "NULL");
			goto out;
		}
	}
	event = make_event("valid-2");
	event.trace_id = "Root=1\r\nX-Injected: 1";
	if (wk_rapi_push_event(server, &event, &err) == 0) {
		fail_because("a trace id with CR LF was accepted");
		goto out;
	}
	event = make_event("valid-3");
	event.invoked_function_arn = NULL;
	if (wk_rapi_push_event(server, &event, &err) == 0) {
		fail_because("an event without an ARN was accepted");
		goto out;
	}
	ok = true;
out:
	stop_server();
	return ok;
}

/* ---- main ---------------------------------------------------------------------------------- */

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	seen.verbose_protocol_errors = getenv("RAPI_TEST_VERBOSE") != NULL;
	char directory[] = "/tmp/ember-rapi-test.XXXXXX";
	if (mkdtemp(directory) == NULL) {
		printf("FAIL setup: mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	snprintf(socket_path, sizeof socket_path, "%s/runtime.sock", directory);

	const struct {
		const char *name;
		bool (*run)(void);
	} tests[] = {
		{"next/blocks-until-push", test_next_blocks_until_push},
		{"next/optional-headers-absent", test_optional_headers_absent},
		{"next/push-from-next-requested", test_push_from_next_requested},
		{"next/6mb-event", test_big_event},
		{"next/two-waiters", test_two_waiters},
		{"next/dead-waiter", test_dead_waiter},
		{"response/plain-6mb", test_plain_response_6mb},
		{"response/streamed-chunks-as-sent", test_streamed_chunks_as_sent},
		{"response/streamed-error-trailers", test_streamed_error_trailers},
		{"response/expect-continue", test_expect_continue},
		{"response/keep-alive-loop", test_full_loop_keep_alive},
		{"error/invocation", test_invocation_error},
		{"error/init", test_init_error},
		{"refuse/404", test_not_found},
		{"refuse/400-request-id", test_invalid_request_ids},
		{"refuse/413", test_too_large},
		{"hostile/endless-body", test_endless_body},
		{"hostile/garbage", test_garbage},
		{"hostile/disconnect-mid-body", test_disconnect_mid_body},
		{"hostile/connection-limit", test_connection_limit},
		{"server/stop-with-waiter", test_stop_with_waiter},
		{"server/start-errors", test_start_errors},
		{"server/push-validation", test_push_validation},
	};
	for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
		why[0] = '\0';
		bool passed = tests[i].run();
		if (server != NULL)
			stop_server();
		check(passed, tests[i].name, "%s", why[0] ? why : "failed");
	}
	clear_records();
	unlink(socket_path);
	rmdir(directory);
	return failures ? 1 : 0;
}
