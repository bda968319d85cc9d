/* The Lambda Runtime API server of runtime_api.h, on libmicrohttpd (MHD).
 *
 * MHD runs one internal polling thread and calls handle_request() for each
 * request: once when its headers are in (begin_request decides what the
 * request is and whether it is allowed), once per piece of body as it
 * arrives (take_body passes response bytes straight to the host, keeps at
 * most WK_RAPI_ERROR_BODY_MAX of an error body, throws the rest away), and
 * once when the request is complete (finish_request answers it).  A GET
 * /next that finds no event is suspended and joins the waiters; pushing an
 * event hands it to the first waiter and resumes it.  When a request ends,
 * request_completed() frees it and notices what did not finish: a response
 * cut off midway, an event whose delivery broke (it is queued again).
 *
 * Locking: `lock` guards the invocation list and the waiter queue, which
 * wk_rapi_push_event() touches from the host's threads.  Host callbacks are
 * made only on MHD's thread and never under `lock`, so they may push. */
#include "runtime_api.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define PATH_NEXT       "/2018-06-01/runtime/invocation/next"
#define PATH_INIT_ERROR "/2018-06-01/runtime/init/error"
#define PATH_INVOCATION "/2018-06-01/runtime/invocation/"

#define HEADER_REQUEST_ID       "Lambda-Runtime-Aws-Request-Id"
#define HEADER_DEADLINE         "Lambda-Runtime-Deadline-Ms"
#define HEADER_FUNCTION_ARN     "Lambda-Runtime-Invoked-Function-Arn"
#define HEADER_TRACE_ID         "Lambda-Runtime-Trace-Id"
#define HEADER_CLIENT_CONTEXT   "Lambda-Runtime-Client-Context"
#define HEADER_COGNITO_IDENTITY "Lambda-Runtime-Cognito-Identity"
#define HEADER_RESPONSE_MODE    "Lambda-Runtime-Function-Response-Mode"
#define HEADER_ERROR_TYPE       "Lambda-Runtime-Function-Error-Type"
#define HEADER_ERROR_BODY       "Lambda-Runtime-Function-Error-Body"

/* Per-connection memory for MHD: the read buffer, headers and trailers.
 * Bigger headers or trailers get MHD's own 431 or 413. */
#define CONNECTION_MEMORY (128u << 10)
/* protocol_error messages, and how much of a path one quotes. */
#define MESSAGE_MAX     512
#define QUOTED_PATH_MAX 96

_Static_assert(WK_RAPI_PAYLOAD_MAX < WK_RAPI_STREAMED_RESPONSE_MAX, "streamed limit is the larger");

/* ---- state ------------------------------------------------------------------ */

/* An event body, shared by the invocation and the MHD responses that send
 * it (a delivery may be repeated), freed by whoever drops it last. */
struct event_body {
	atomic_uint references;
	size_t length;
	unsigned char bytes[];
};

enum invocation_state {
	INVOCATION_QUEUED,    /* waiting for a GET /next */
	INVOCATION_ASSIGNED,  /* handed to a suspended GET /next, not yet sent */
	INVOCATION_DELIVERED, /* sent or being sent to the runtime: answerable */
	INVOCATION_ANSWERING, /* a response or an error for it has begun */
};

/* A pushed invocation, until its response or error ends.  In push order. */
struct invocation {
	struct invocation *next;
	enum invocation_state state;
	char request_id[WK_RAPI_REQUEST_ID_MAX + 1];
	char deadline[24];
	char *function_arn;
	char *trace_id;         /* NULL: no header */
	char *client_context;   /* NULL: no header */
	char *cognito_identity; /* NULL: no header */
	struct event_body *body;
};

enum request_kind {
	REQUEST_NEXT,
	REQUEST_RESPONSE,
	REQUEST_INVOCATION_ERROR,
	REQUEST_INIT_ERROR,
	REQUEST_REFUSED, /* answered with `status` once its body is in */
};

/* One HTTP request, from its headers until MHD is done with it. */
struct request {
	struct MHD_Connection *connection;
	enum request_kind kind;
	char request_id[WK_RAPI_REQUEST_ID_MAX + 1];

	/* REQUEST_REFUSED: the answer. */
	unsigned int status;
	const char *error_type;
	const char *error_message;

	/* REQUEST_NEXT */
	bool next_reported; /* next_requested was called */
	bool waiting;       /* in the server's waiter queue, suspended */
	struct request *next_waiter;
	bool assigned; /* an event (request_id) was given to it */

	/* bodies */
	uint64_t limit;     /* bytes passed on or kept, at most */
	uint64_t received;  /* bytes passed on or kept */
	uint64_t discarded; /* bytes thrown away */
	bool over_limit;    /* the body went past `limit`: answer 413 */
	bool ended;         /* the terminal callback was made */

	/* REQUEST_RESPONSE */
	bool streaming;

	/* REQUEST_INVOCATION_ERROR, REQUEST_INIT_ERROR */
	char *error_type_value; /* NULL: no header */
	unsigned char *body;
	size_t body_length;
	size_t body_capacity;
};

struct wk_rapi_server {
	struct MHD_Daemon *daemon;
	struct wk_rapi_callbacks callbacks;
	void *ctx;
	atomic_bool stopping;
	/* MHD's thread, once known: only its log lines reach the host. */
	atomic_bool thread_known;
	pthread_t thread;
	/* MHD's complaint while starting, for the start error. */
	char start_log[200];
	atomic_bool started;

	pthread_mutex_t lock;
	struct invocation *invocations; /* push order */
	struct request *waiters_head;   /* FIFO of suspended GET /next */
	struct request *waiters_tail;
	bool next_seen; /* a GET /next came: init is over */

	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t socket_device;
	ino_t socket_inode;
};

/* ---- small helpers ----------------------------------------------------------- */

bool wk_rapi_request_id_valid(const char *id, size_t length)
{
	if (length == 0 || length > WK_RAPI_REQUEST_ID_MAX)
		return false;
	for (size_t i = 0; i < length; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

/* Copies at most `max_in` bytes of `text` into `out` as printable ASCII,
 * every other byte (and '\') as \xNN, cut at a whole escape; "..." marks a
 * longer input. */
static void escape(const char *text, size_t max_in, char *out, size_t out_size)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;
	for (i = 0; i < max_in && text[i] != '\0'; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			if (o + 1 >= out_size)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 4 >= out_size)
				break;
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (text[i] != '\0' && o + 3 < out_size) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

static bool header_value_valid(const char *value, size_t max)
{
	size_t i;
	for (i = 0; value[i] != '\0'; i++) {
		if (i >= max || value[i] < 0x20 || value[i] > 0x7e)
			return false;
	}
	return true;
}

/* Decodes standard base64 (padding optional, nothing else allowed) into
 * `out` of `out_size` bytes.  Returns the length, or -1 if `in` is not
 * base64 or does not fit. */
static long decode_base64(const char *in, unsigned char *out, size_t out_size)
{
	uint32_t bits = 0;
	int count = 0;
	size_t o = 0, i = 0;
	for (; in[i] != '\0' && in[i] != '='; i++) {
		char c = in[i];
		int v;
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '+')
			v = 62;
		else if (c == '/')
			v = 63;
		else
			return -1;
		bits = (bits << 6) | (uint32_t)v;
		if (++count == 4) {
			if (o + 3 > out_size)
				return -1;
			out[o++] = (unsigned char)(bits >> 16);
			out[o++] = (unsigned char)(bits >> 8);
			out[o++] = (unsigned char)bits;
			bits = 0;
			count = 0;
		}
	}
	size_t padding = 0;
	for (; in[i] == '='; i++)
		padding++;
	if (in[i] != '\0' || count == 1 || (padding != 0 && (count < 2 || count + padding != 4)))
		return -1;
	if (count >= 2) {
		if (o + (size_t)(count - 1) > out_size)
			return -1;
		bits <<= 6 * (4 - count);
		out[o++] = (unsigned char)(bits >> 16);
		if (count == 3)
			out[o++] = (unsigned char)(bits >> 8);
	}
	return (long)o;
}

/* Copies `text` into `*out`, or stores NULL for NULL or "".  Returns -1
 * when memory ran out. */
static int copy_optional(const char *text, char **out)
{
	*out = NULL;
	if (text == NULL || text[0] == '\0')
		return 0;
	*out = strdup(text);
	return *out == NULL ? -1 : 0;
}

/* ---- host callbacks, never under the lock ---------------------------------------- */

static bool reporting(struct wk_rapi_server *server)
{
	return !atomic_load(&server->stopping);
}

static void report_protocol_error(struct wk_rapi_server *server, const char *format, ...)
	__attribute__((format(printf, 2, 3)));
static void report_protocol_error(struct wk_rapi_server *server, const char *format, ...)
{
	if (server->callbacks.protocol_error == NULL || !reporting(server))
		return;
	char message[MESSAGE_MAX];
	va_list arguments;
	va_start(arguments, format);
	vsnprintf(message, sizeof message, format, arguments);
	va_end(arguments);
	server->callbacks.protocol_error(server->ctx, message);
}

static void report_response_finished(struct wk_rapi_server *server, struct request *request,
				     enum wk_rapi_response_outcome outcome, const char *error_type,
				     const void *error_body, size_t error_body_length)
{
	request->ended = true;
	if (server->callbacks.response_finished == NULL || !reporting(server))
		return;
	struct wk_rapi_response_end end = {
		.outcome = outcome,
		.body_bytes = request->received,
		.error_type = error_type,
		.error_body = error_body,
		.error_body_length = error_body_length,
	};
	server->callbacks.response_finished(server->ctx, request->request_id, &end);
}

static void report_error(struct wk_rapi_server *server, struct request *request, bool truncated)
{
	request->ended = true;
	if (!reporting(server))
		return;
	struct wk_rapi_error error = {
		.error_type = request->error_type_value,
		.body = request->body,
		.body_length = request->body_length,
		.body_truncated = truncated,
	};
	if (request->kind == REQUEST_INVOCATION_ERROR && server->callbacks.invocation_error != NULL)
		server->callbacks.invocation_error(server->ctx, request->request_id, &error);
	else if (request->kind == REQUEST_INIT_ERROR && server->callbacks.init_error != NULL)
		server->callbacks.init_error(server->ctx, &error);
}

/* ---- invocations, under the lock ------------------------------------------------------- */

static void release_body(void *cls)
{
	struct event_body *body = cls;
	if (body != NULL && atomic_fetch_sub(&body->references, 1) == 1)
		free(body);
}

static void free_invocation(struct invocation *invocation)
{
	free(invocation->function_arn);
	free(invocation->trace_id);
	free(invocation->client_context);
	free(invocation->cognito_identity);
	release_body(invocation->body);
	free(invocation);
}

static struct invocation *find_invocation(struct wk_rapi_server *server, const char *request_id)
{
	for (struct invocation *i = server->invocations; i != NULL; i = i->next)
		if (strcmp(i->request_id, request_id) == 0)
			return i;
	return NULL;
}

static void remove_invocation(struct wk_rapi_server *server, const char *request_id)
{
	for (struct invocation **link = &server->invocations; *link != NULL; link = &(*link)->next) {
		if (strcmp((*link)->request_id, request_id) == 0) {
			struct invocation *found = *link;
			*link = found->next;
			free_invocation(found);
			return;
		}
	}
}

static struct invocation *first_queued(struct wk_rapi_server *server)
{
	for (struct invocation *i = server->invocations; i != NULL; i = i->next)
		if (i->state == INVOCATION_QUEUED)
			return i;
	return NULL;
}

/* Hands queued events to waiting GET /next requests, oldest first, and
 * resumes them; their handler then sends the event. */
static void dispatch(struct wk_rapi_server *server)
{
	while (server->waiters_head != NULL && !atomic_load(&server->stopping)) {
		struct invocation *invocation = first_queued(server);
		if (invocation == NULL)
			return;
		struct request *waiter = server->waiters_head;
		server->waiters_head = waiter->next_waiter;
		if (server->waiters_head == NULL)
			server->waiters_tail = NULL;
		waiter->next_waiter = NULL;
		waiter->waiting = false;
		waiter->assigned = true;
		memcpy(waiter->request_id, invocation->request_id, sizeof waiter->request_id);
		invocation->state = INVOCATION_ASSIGNED;
		MHD_resume_connection(waiter->connection);
	}
}

static void remove_waiter(struct wk_rapi_server *server, struct request *request)
{
	struct request *previous = NULL;
	for (struct request *w = server->waiters_head; w != NULL; previous = w, w = w->next_waiter) {
		if (w != request)
			continue;
		if (previous == NULL)
			server->waiters_head = w->next_waiter;
		else
			previous->next_waiter = w->next_waiter;
		if (server->waiters_tail == w)
			server->waiters_tail = previous;
		break;
	}
	request->waiting = false;
	request->next_waiter = NULL;
}

/* ---- answers ------------------------------------------------------------------------------ */

static enum MHD_Result queue_json(struct MHD_Connection *connection, unsigned int status, const char *json)
{
	struct MHD_Response *response =
		MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
	if (response == NULL)
		return MHD_NO;
	enum MHD_Result result = MHD_NO;
	if (MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") == MHD_YES)
		result = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return result;
}

static enum MHD_Result queue_accepted(struct MHD_Connection *connection)
{
	return queue_json(connection, MHD_HTTP_ACCEPTED, "{\"status\":\"OK\"}");
}

/* The {"errorMessage","errorType"} answer; both strings are ours, plain
 * ASCII without quotes or backslashes. */
static enum MHD_Result queue_error(struct MHD_Connection *connection, unsigned int status, const char *type,
				   const char *message)
{
	char json[MESSAGE_MAX];
	snprintf(json, sizeof json, "{\"errorMessage\":\"%s\",\"errorType\":\"%s\"}", message, type);
	return queue_json(connection, status, json);
}

static enum MHD_Result queue_too_large(struct MHD_Connection *connection, uint64_t limit)
{
	char message[128];
	snprintf(message, sizeof message, "Exceeded maximum allowed payload size (%llu bytes).",
		 (unsigned long long)limit);
	return queue_error(connection, MHD_HTTP_CONTENT_TOO_LARGE, "RequestEntityTooLarge", message);
}

/* Builds the 200 answer to GET /next for `invocation`. */
static struct MHD_Response *event_response(struct invocation *invocation)
{
	struct event_body *body = invocation->body;
	atomic_fetch_add(&body->references, 1);
	struct MHD_Response *response = MHD_create_response_from_buffer_with_free_callback_cls(
		body->length, body->bytes, release_body, body);
	if (response == NULL) {
		release_body(body);
		return NULL;
	}
	const struct {
		const char *name;
		const char *value;
	} headers[] = {
		{MHD_HTTP_HEADER_CONTENT_TYPE, "application/json"},
		{HEADER_REQUEST_ID, invocation->request_id},
		{HEADER_DEADLINE, invocation->deadline},
		{HEADER_FUNCTION_ARN, invocation->function_arn},
		{HEADER_TRACE_ID, invocation->trace_id},
		{HEADER_CLIENT_CONTEXT, invocation->client_context},
		{HEADER_COGNITO_IDENTITY, invocation->cognito_identity},
	};
	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		if (headers[i].value != NULL &&
		    MHD_add_response_header(response, headers[i].name, headers[i].value) != MHD_YES) {
			MHD_destroy_response(response);
			return NULL;
		}
	}
	return response;
}

/* ---- the request handler -------------------------------------------------------------------- */

/* Marks `request` refused with `status`, reported to the host as `why`. */
static void refuse(struct wk_rapi_server *server, struct request *request, const char *method,
		   const char *url, unsigned int status, const char *type, const char *message)
{
	char quoted_method[40], quoted_path[QUOTED_PATH_MAX * 4 + 4];
	escape(method, 8, quoted_method, sizeof quoted_method);
	escape(url, QUOTED_PATH_MAX, quoted_path, sizeof quoted_path);
	request->kind = REQUEST_REFUSED;
	request->status = status;
	request->error_type = type;
	request->error_message = message;
	report_protocol_error(server, "%s %s: %s (answered %u %s)", quoted_method, quoted_path, message,
			      status, type);
}

/* The body length the request declared, or -1 when it declared none or is
 * chunked. */
static long long declared_length(struct MHD_Connection *connection)
{
	const char *encoding =
		MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
	if (encoding != NULL)
		return -1;
	const char *length =
		MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (length == NULL || length[0] == '\0')
		return -1;
	unsigned long long value = 0;
	for (const char *p = length; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1; /* MHD refuses these itself */
		if (value > (1ull << 40))
			return 1ll << 40;
		value = value * 10 + (unsigned long long)(*p - '0');
	}
	return (long long)value;
}

struct framing_headers {
	unsigned content_lengths;
	unsigned transfer_encodings;
	bool chunked;
};

static enum MHD_Result count_framing_header(void *cls, enum MHD_ValueKind kind, const char *name,
					    const char *value)
{
	struct framing_headers *framing = cls;
	(void)kind;
	if (strcasecmp(name, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
		framing->content_lengths++;
	} else if (strcasecmp(name, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		framing->transfer_encodings++;
		framing->chunked = value != NULL && strcasecmp(value, "chunked") == 0;
	}
	return MHD_YES;
}

/* Whether the body's length is ambiguous — several Content-Length or
 * Transfer-Encoding headers, both kinds, or an encoding other than
 * chunked — which libmicrohttpd would resolve its own way. */
static bool framing_ambiguous(struct MHD_Connection *connection)
{
	struct framing_headers framing = {0};
	MHD_get_connection_values(connection, MHD_HEADER_KIND, count_framing_header, &framing);
	return framing.content_lengths > 1 || framing.transfer_encodings > 1 ||
	       (framing.content_lengths != 0 && framing.transfer_encodings != 0) ||
	       (framing.transfer_encodings != 0 && !framing.chunked);
}

/* Splits ".../invocation/{id}/{action}" into the id (copied into `id`,
 * unvalidated and cut to the buffer) and the action. */
static bool split_invocation_path(const char *url, char *id, size_t id_size, const char **action,
				  size_t *id_length)
{
	if (strncmp(url, PATH_INVOCATION, strlen(PATH_INVOCATION)) != 0)
		return false;
	const char *start = url + strlen(PATH_INVOCATION);
	const char *slash = strchr(start, '/');
	if (slash == NULL)
		return false;
	*action = slash + 1;
	if (strcmp(*action, "response") != 0 && strcmp(*action, "error") != 0)
		return false;
	*id_length = (size_t)(slash - start);
	size_t copied = *id_length < id_size - 1 ? *id_length : id_size - 1;
	memcpy(id, start, copied);
	id[copied] = '\0';
	return true;
}

/* Called once the headers are in: decides what the request is. */
static enum MHD_Result begin_request(struct wk_rapi_server *server, struct request *request, const char *url,
				     const char *method)
{
	struct MHD_Connection *connection = request->connection;
	const char *action = NULL;
	size_t id_length = 0;
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
	bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;

	request->limit = WK_RAPI_DISCARD_MAX; /* for bodies nobody wants */
	if (framing_ambiguous(connection)) {
		/* Where this body ends is unclear: answer now; MHD then closes. */
		refuse(server, request, method, url, MHD_HTTP_BAD_REQUEST, "InvalidHeader",
		       "ambiguous Content-Length or Transfer-Encoding");
		return queue_error(connection, request->status, request->error_type, request->error_message);
	}
	if (strcmp(url, PATH_NEXT) == 0 && get) {
		request->kind = REQUEST_NEXT;
	} else if (strcmp(url, PATH_INIT_ERROR) == 0 && post) {
		request->kind = REQUEST_INIT_ERROR;
		pthread_mutex_lock(&server->lock);
		bool too_late = server->next_seen;
		pthread_mutex_unlock(&server->lock);
		if (too_late)
			refuse(server, request, method, url, MHD_HTTP_FORBIDDEN, "InvalidStateTransition",
			       "init error after the runtime asked for an event");
	} else if (post && split_invocation_path(url, request->request_id, sizeof request->request_id,
						 &action, &id_length)) {
		request->kind = strcmp(action, "response") == 0 ? REQUEST_RESPONSE : REQUEST_INVOCATION_ERROR;
		const char *content_type = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
								       MHD_HTTP_HEADER_CONTENT_TYPE);
		if (!wk_rapi_request_id_valid(request->request_id, id_length)) {
			refuse(server, request, method, url, MHD_HTTP_BAD_REQUEST, "InvalidRequestID",
			       "malformed request id");
		} else if (content_type != NULL && strlen(content_type) > WK_RAPI_CONTENT_TYPE_MAX) {
			refuse(server, request, method, url, MHD_HTTP_BAD_REQUEST, "InvalidHeader",
			       "Content-Type is too long");
		} else {
			pthread_mutex_lock(&server->lock);
			struct invocation *invocation = find_invocation(server, request->request_id);
			const char *why = NULL;
			if (invocation == NULL)
				why = "unknown or already answered request id";
			else if (invocation->state == INVOCATION_ANSWERING)
				why = "request id already being answered";
			else if (invocation->state != INVOCATION_DELIVERED)
				why = "request id not yet delivered by /next";
			else
				invocation->state = INVOCATION_ANSWERING;
			pthread_mutex_unlock(&server->lock);
			if (why != NULL)
				refuse(server, request, method, url, MHD_HTTP_BAD_REQUEST, "InvalidRequestID",
				       why);
		}
		if (request->kind == REQUEST_RESPONSE) {
			const char *mode = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
								       HEADER_RESPONSE_MODE);
			request->streaming = mode != NULL && strcasecmp(mode, "streaming") == 0;
			request->limit =
				request->streaming ? WK_RAPI_STREAMED_RESPONSE_MAX : WK_RAPI_PAYLOAD_MAX;
			if (server->callbacks.response_started != NULL && reporting(server))
				server->callbacks.response_started(server->ctx, request->request_id,
								   request->streaming, content_type);
		}
	} else {
		refuse(server, request, method, url, MHD_HTTP_NOT_FOUND, "NotFound",
		       "unknown path or method");
	}

	if (request->kind == REQUEST_INVOCATION_ERROR || request->kind == REQUEST_INIT_ERROR) {
		request->limit = WK_RAPI_ERROR_BODY_MAX;
		const char *type =
			MHD_lookup_connection_value(connection, MHD_HEADER_KIND, HEADER_ERROR_TYPE);
		if (type != NULL) {
			request->error_type_value = strndup(type, WK_RAPI_ERROR_TYPE_MAX);
			if (request->error_type_value == NULL)
				return MHD_NO;
		}
	}

	/* A body declared past what the request may carry is refused now,
	 * before it is read; MHD then closes the connection. */
	long long length = declared_length(connection);
	if (length < 0 || (uint64_t)length <= request->limit)
		return MHD_YES;
	switch (request->kind) {
	case REQUEST_RESPONSE:
		report_protocol_error(server,
				      "response for %s declares %lld bytes, over the %llu-byte limit"
				      " (answered 413)",
				      request->request_id, length, (unsigned long long)request->limit);
		pthread_mutex_lock(&server->lock);
		remove_invocation(server, request->request_id);
		pthread_mutex_unlock(&server->lock);
		report_response_finished(server, request, WK_RAPI_RESPONSE_TOO_LARGE, NULL, NULL, 0);
		return queue_too_large(connection, request->limit);
	case REQUEST_INVOCATION_ERROR:
	case REQUEST_INIT_ERROR:
		report_protocol_error(server,
				      "error body declares %lld bytes, over the %u-byte limit (answered 413)",
				      length, WK_RAPI_ERROR_BODY_MAX);
		if (request->kind == REQUEST_INVOCATION_ERROR) {
			pthread_mutex_lock(&server->lock);
			remove_invocation(server, request->request_id);
			pthread_mutex_unlock(&server->lock);
		}
		report_error(server, request, true);
		return queue_too_large(connection, request->limit);
	case REQUEST_NEXT:
		report_protocol_error(server, "GET /next declares a %lld-byte body (answered 413)", length);
		return queue_too_large(connection, request->limit);
	case REQUEST_REFUSED: break;
	}
	return queue_error(connection, request->status, request->error_type, request->error_message);
}

/* Appends to an error body, up to WK_RAPI_ERROR_BODY_MAX; returns the
 * bytes kept. */
static size_t keep_error_body(struct request *request, const char *data, size_t length)
{
	size_t room = WK_RAPI_ERROR_BODY_MAX - request->body_length;
	size_t kept = length < room ? length : room;
	if (kept == 0)
		return 0;
	if (request->body_length + kept > request->body_capacity) {
		size_t capacity = request->body_capacity ? request->body_capacity : 4096;
		while (capacity < request->body_length + kept)
			capacity *= 2;
		if (capacity > WK_RAPI_ERROR_BODY_MAX)
			capacity = WK_RAPI_ERROR_BODY_MAX;
		unsigned char *grown = realloc(request->body, capacity);
		if (grown == NULL)
			return 0;
		request->body = grown;
		request->body_capacity = capacity;
	}
	memcpy(request->body + request->body_length, data, kept);
	request->body_length += kept;
	return kept;
}

/* Called for each piece of body as it arrives. */
static enum MHD_Result take_body(struct wk_rapi_server *server, struct request *request, const char *data,
				 size_t length)
{
	size_t kept = 0;
	if (request->kind == REQUEST_RESPONSE && !request->ended) {
		if (request->received + length <= request->limit) {
			request->received += length;
			kept = length;
			if (server->callbacks.response_chunk != NULL && reporting(server))
				server->callbacks.response_chunk(server->ctx, request->request_id, data,
								 length);
		} else {
			request->over_limit = true;
			report_protocol_error(server, "response for %s passed the %llu-byte limit",
					      request->request_id, (unsigned long long)request->limit);
			pthread_mutex_lock(&server->lock);
			remove_invocation(server, request->request_id);
			pthread_mutex_unlock(&server->lock);
			report_response_finished(server, request, WK_RAPI_RESPONSE_TOO_LARGE, NULL, NULL, 0);
		}
	} else if (request->kind == REQUEST_INVOCATION_ERROR || request->kind == REQUEST_INIT_ERROR) {
		if (!request->over_limit) {
			kept = keep_error_body(request, data, length);
			if (kept < length && request->body_length < WK_RAPI_ERROR_BODY_MAX)
				return MHD_NO; /* out of memory */
			request->over_limit = kept < length;
		}
	}
	request->discarded += length - kept;
	if (request->discarded > WK_RAPI_DISCARD_MAX) {
		report_protocol_error(server, "over %u bytes of unwanted body; connection closed",
				      WK_RAPI_DISCARD_MAX);
		return MHD_NO;
	}
	return MHD_YES;
}

/* GET /next, complete: answers with a queued event or waits for one. */
static enum MHD_Result finish_next(struct wk_rapi_server *server, struct request *request)
{
	if (!request->next_reported) {
		request->next_reported = true;
		pthread_mutex_lock(&server->lock);
		server->next_seen = true;
		pthread_mutex_unlock(&server->lock);
		if (server->callbacks.next_requested != NULL && reporting(server))
			server->callbacks.next_requested(server->ctx);
	}

	pthread_mutex_lock(&server->lock);
	if (atomic_load(&server->stopping)) {
		pthread_mutex_unlock(&server->lock);
		return MHD_NO;
	}
	struct invocation *invocation = NULL;
	if (request->assigned) {
		invocation = find_invocation(server, request->request_id);
	} else if ((invocation = first_queued(server)) != NULL) {
		request->assigned = true;
		memcpy(request->request_id, invocation->request_id, sizeof request->request_id);
	} else {
		if (!request->waiting) {
			request->waiting = true;
			if (server->waiters_tail != NULL)
				server->waiters_tail->next_waiter = request;
			else
				server->waiters_head = request;
			server->waiters_tail = request;
		}
		MHD_suspend_connection(request->connection);
		pthread_mutex_unlock(&server->lock);
		return MHD_YES;
	}
	if (invocation == NULL) { /* cannot happen: assigned events stay until sent */
		pthread_mutex_unlock(&server->lock);
		return MHD_NO;
	}
	invocation->state = INVOCATION_DELIVERED;
	struct MHD_Response *response = event_response(invocation);
	if (response == NULL) {
		invocation->state = INVOCATION_QUEUED;
		request->assigned = false;
		dispatch(server);
		pthread_mutex_unlock(&server->lock);
		return MHD_NO;
	}
	pthread_mutex_unlock(&server->lock);
	enum MHD_Result result = MHD_queue_response(request->connection, MHD_HTTP_OK, response);
	MHD_destroy_response(response);
	return result; /* on MHD_NO, request_completed queues the event again */
}

/* A response POST, complete: reads the trailers and ends it. */
static enum MHD_Result finish_response(struct wk_rapi_server *server, struct request *request)
{
	if (request->over_limit)
		return queue_too_large(request->connection, request->limit);
	if (request->ended) /* cannot happen: ended without over_limit is answered early */
		return MHD_NO;

	pthread_mutex_lock(&server->lock);
	remove_invocation(server, request->request_id);
	pthread_mutex_unlock(&server->lock);

	const char *type =
		MHD_lookup_connection_value(request->connection, MHD_FOOTER_KIND, HEADER_ERROR_TYPE);
	if (type == NULL) {
		report_response_finished(server, request, WK_RAPI_RESPONSE_COMPLETE, NULL, NULL, 0);
		return queue_accepted(request->connection);
	}
	char error_type[WK_RAPI_ERROR_TYPE_MAX + 1];
	snprintf(error_type, sizeof error_type, "%s", type);
	const char *encoded =
		MHD_lookup_connection_value(request->connection, MHD_FOOTER_KIND, HEADER_ERROR_BODY);
	unsigned char *decoded = NULL;
	const void *error_body = NULL;
	size_t error_body_length = 0;
	if (encoded != NULL) {
		/* Trailers fit in CONNECTION_MEMORY, far below the body limit. */
		size_t encoded_length = strnlen(encoded, WK_RAPI_ERROR_BODY_MAX);
		decoded = malloc(encoded_length + 1);
		if (decoded == NULL)
			return MHD_NO;
		long length = decode_base64(encoded, decoded, encoded_length + 1);
		if (length >= 0) {
			error_body = decoded;
			error_body_length = (size_t)length;
		} else {
			error_body = encoded;
			error_body_length = encoded_length;
		}
	}
	report_response_finished(server, request, WK_RAPI_RESPONSE_FUNCTION_ERROR, error_type, error_body,
				 error_body_length);
	free(decoded);
	return queue_accepted(request->connection);
}

static enum MHD_Result finish_error(struct wk_rapi_server *server, struct request *request)
{
	if (request->kind == REQUEST_INVOCATION_ERROR) {
		pthread_mutex_lock(&server->lock);
		remove_invocation(server, request->request_id);
		pthread_mutex_unlock(&server->lock);
	}
	if (request->over_limit)
		report_protocol_error(server, "error body over the %u-byte limit (answered 413)",
				      WK_RAPI_ERROR_BODY_MAX);
	report_error(server, request, request->over_limit);
	if (request->over_limit)
		return queue_too_large(request->connection, WK_RAPI_ERROR_BODY_MAX);
	return queue_accepted(request->connection);
}

/* MHD's access handler: see the top of this file. */
static enum MHD_Result handle_request(void *cls, struct MHD_Connection *connection, const char *url,
				      const char *method, const char *version, const char *upload_data,
				      size_t *upload_data_size, void **request_slot)
{
	struct wk_rapi_server *server = cls;
	struct request *request = *request_slot;
	(void)version;

	if (atomic_load(&server->stopping))
		return MHD_NO;
	if (request == NULL) {
		request = calloc(1, sizeof *request);
		if (request == NULL)
			return MHD_NO;
		request->connection = connection;
		*request_slot = request;
		return begin_request(server, request, url, method);
	}
	if (*upload_data_size != 0) {
		size_t length = *upload_data_size;
		*upload_data_size = 0;
		return take_body(server, request, upload_data, length);
	}
	switch (request->kind) {
	case REQUEST_NEXT: return finish_next(server, request);
	case REQUEST_RESPONSE: return finish_response(server, request);
	case REQUEST_INVOCATION_ERROR:
	case REQUEST_INIT_ERROR: return finish_error(server, request);
	case REQUEST_REFUSED: break;
	}
	return queue_error(connection, request->status, request->error_type, request->error_message);
}

/* MHD is done with a request: notices what did not finish, and frees it. */
static void request_completed(void *cls, struct MHD_Connection *connection, void **request_slot,
			      enum MHD_RequestTerminationCode code)
{
	struct wk_rapi_server *server = cls;
	struct request *request = *request_slot;
	(void)connection;
	if (request == NULL)
		return;
	*request_slot = NULL;

	bool requeued = false;
	bool unfinished = !request->ended &&
			  (request->kind == REQUEST_RESPONSE || request->kind == REQUEST_INVOCATION_ERROR ||
			   request->kind == REQUEST_INIT_ERROR);
	pthread_mutex_lock(&server->lock);
	if (request->waiting)
		remove_waiter(server, request);
	if (request->kind == REQUEST_NEXT && request->assigned &&
	    code != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
		struct invocation *invocation = find_invocation(server, request->request_id);
		if (invocation != NULL &&
		    (invocation->state == INVOCATION_ASSIGNED || invocation->state == INVOCATION_DELIVERED)) {
			invocation->state = INVOCATION_QUEUED;
			requeued = true;
			dispatch(server);
		}
	}
	if (unfinished && request->kind != REQUEST_INIT_ERROR)
		remove_invocation(server, request->request_id);
	pthread_mutex_unlock(&server->lock);

	if (requeued)
		report_protocol_error(server,
				      "the event %s was not delivered (connection ended); queued again",
				      request->request_id);
	if (unfinished) {
		report_protocol_error(server, "connection ended before the body of %s was complete",
				      request->kind == REQUEST_INIT_ERROR ? "an init error"
									  : request->request_id);
		if (request->kind == REQUEST_RESPONSE)
			report_response_finished(server, request, WK_RAPI_RESPONSE_TRUNCATED, NULL, NULL, 0);
		else
			report_error(server, request, true);
	}
	free(request->error_type_value);
	free(request->body);
	free(request);
}

/* Learns MHD's thread, so that only its log lines reach the host. */
static void connection_notified(void *cls, struct MHD_Connection *connection, void **socket_context,
				enum MHD_ConnectionNotificationCode code)
{
	struct wk_rapi_server *server = cls;
	(void)connection;
	(void)socket_context;
	(void)code;
	if (!atomic_load(&server->thread_known)) {
		server->thread = pthread_self();
		atomic_store(&server->thread_known, true);
	}
}

/* MHD's own complaints: while starting they become the start error; later,
 * those made on MHD's thread (malformed HTTP it answered itself) go to the
 * host as protocol errors. */
static void log_from_mhd(void *cls, const char *format, va_list arguments)
	__attribute__((format(printf, 2, 0)));
static void log_from_mhd(void *cls, const char *format, va_list arguments)
{
	struct wk_rapi_server *server = cls;
	char line[MESSAGE_MAX - 16], escaped[MESSAGE_MAX - 16];
	vsnprintf(line, sizeof line, format, arguments);
	line[strcspn(line, "\n")] = '\0';
	if (!atomic_load(&server->started)) {
		snprintf(server->start_log, sizeof server->start_log, "%s", line);
		return;
	}
	if (!atomic_load(&server->thread_known) || !pthread_equal(server->thread, pthread_self()))
		return;
	/* Our own MHD_NO, already reported. */
	if (strncmp(line, "Application reported internal error", 35) == 0)
		return;
	/* "Error processing request (HTTP response code is 400 ('<html>
	 * <head><title>Request malformed</title>...')). Closing connection." */
	unsigned int status;
	const char *title = strstr(line, "<title>");
	const char *title_end = title ? strstr(title, "</title>") : NULL;
	if (sscanf(line, "Error processing request (HTTP response code is %u", &status) == 1 &&
	    title_end != NULL) {
		title += strlen("<title>");
		char name[96];
		snprintf(name, sizeof name, "%.*s", (int)(title_end - title), title);
		escape(name, sizeof name, escaped, sizeof escaped);
		report_protocol_error(server,
				      "malformed HTTP: %s (libmicrohttpd answered %u and closed the"
				      " connection)",
				      escaped, status);
		return;
	}
	escape(line, sizeof line, escaped, sizeof escaped);
	report_protocol_error(server, "HTTP: %s", escaped);
}

/* ---- start, push, stop --------------------------------------------------------------------- */

/* Removes a socket file left by a server that is gone; refuses a live one
 * and anything that is not a socket. */
static int remove_stale_socket(const char *path, const struct sockaddr_un *address, struct ember_error *err)
{
	struct stat status;
	if (lstat(path, &status) != 0) {
		if (errno == ENOENT)
			return 0;
		return ember_error_errno(err, errno, "stat `%s`", path);
	}
	if (!S_ISSOCK(status.st_mode))
		return ember_error_set(err, "`%s` exists and is not a socket", path);
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe < 0)
		return ember_error_errno(err, errno, "socket");
	int connected = connect(probe, (const struct sockaddr *)address, sizeof *address);
	int connect_errno = errno;
	close(probe);
	if (connected == 0)
		return ember_error_set(err, "`%s`: another server is listening there", path);
	if (connect_errno != ECONNREFUSED)
		return ember_error_errno(err, connect_errno, "probe `%s`", path);
	if (unlink(path) != 0 && errno != ENOENT)
		return ember_error_errno(err, errno, "remove stale socket `%s`", path);
	return 0;
}

static int listen_on(struct wk_rapi_server *server, const char *path, struct ember_error *err)
{
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	size_t length = strlen(path);
	if (length == 0)
		return ember_error_set(err, "the socket path is empty");
	if (length >= sizeof address.sun_path)
		return ember_error_set(err, "the socket path is longer than %zu bytes",
				       sizeof address.sun_path - 1);
	memcpy(address.sun_path, path, length + 1);
	if (remove_stale_socket(path, &address, err) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return ember_error_errno(err, errno, "socket");
	if (bind(fd, (const struct sockaddr *)&address, sizeof address) != 0) {
		ember_error_errno(err, errno, "bind `%s`", path);
		close(fd);
		return -1;
	}
	struct stat status;
	if (stat(address.sun_path, &status) != 0 || listen(fd, WK_RAPI_CONNECTION_MAX) != 0) {
		ember_error_errno(err, errno, "listen on `%s`", address.sun_path);
		unlink(address.sun_path);
		close(fd);
		return -1;
	}
	memcpy(server->path, address.sun_path, sizeof server->path);
	server->socket_device = status.st_dev;
	server->socket_inode = status.st_ino;
	return fd;
}

/* Removes the socket file if it is still the one this server bound. */
static void remove_socket_file(struct wk_rapi_server *server)
{
	struct stat status;
	if (lstat(server->path, &status) == 0 && S_ISSOCK(status.st_mode) &&
	    status.st_dev == server->socket_device && status.st_ino == server->socket_inode)
		unlink(server->path);
}

int wk_rapi_server_start(struct wk_rapi_server **out, const char *unix_socket_path,
			 const struct wk_rapi_callbacks *callbacks, void *ctx, struct ember_error *err)
{
	*out = NULL;
	struct wk_rapi_server *server = calloc(1, sizeof *server);
	if (server == NULL)
		return ember_error_errno(err, ENOMEM, "start the Runtime API server");
	if (callbacks != NULL)
		server->callbacks = *callbacks;
	server->ctx = ctx;
	atomic_init(&server->stopping, false);
	atomic_init(&server->thread_known, false);
	atomic_init(&server->started, false);
	int error = pthread_mutex_init(&server->lock, NULL);
	if (error != 0) {
		free(server);
		return ember_error_errno(err, error, "start the Runtime API server");
	}

	int fd = listen_on(server, unix_socket_path, err);
	if (fd < 0)
		goto fail;
	/* MHD closes the socket it is given on some of its failure paths and
	 * not on others: it gets a duplicate, and this function closes that
	 * duplicate after a failure only if it is still that socket. */
	struct stat listening;
	int mhd_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (mhd_fd < 0 || fstat(fd, &listening) != 0) {
		ember_error_errno(err, errno, "duplicate the listening socket");
		if (mhd_fd >= 0)
			close(mhd_fd);
		close(fd);
		remove_socket_file(server);
		goto fail;
	}
	server->daemon = MHD_start_daemon(
		MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL,
		handle_request, server, MHD_OPTION_EXTERNAL_LOGGER, log_from_mhd, server,
		MHD_OPTION_LISTEN_SOCKET, mhd_fd, MHD_OPTION_NOTIFY_COMPLETED, request_completed, server,
		MHD_OPTION_NOTIFY_CONNECTION, connection_notified, server, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned int)WK_RAPI_CONNECTION_MAX, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)CONNECTION_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT, 0u, MHD_OPTION_END);
	close(fd);
	if (server->daemon == NULL) {
		struct stat left;
		if (fstat(mhd_fd, &left) == 0 && left.st_dev == listening.st_dev &&
		    left.st_ino == listening.st_ino)
			close(mhd_fd);
		ember_error_set(err, "start libmicrohttpd on `%s`: %s", unix_socket_path,
				server->start_log[0] ? server->start_log : "failed");
		remove_socket_file(server);
		goto fail;
	}
	atomic_store(&server->started, true);
	*out = server;
	return 0;

fail:
	ember_error_wrap(err, "start the Runtime API server");
	pthread_mutex_destroy(&server->lock);
	free(server);
	return -1;
}

int wk_rapi_push_event(struct wk_rapi_server *server, const struct wk_rapi_event *event,
		       struct ember_error *err)
{
	const char *id = event->request_id;
	if (id == NULL || !wk_rapi_request_id_valid(id, strnlen(id, WK_RAPI_REQUEST_ID_MAX + 1)))
		return ember_error_set(err, "push event: the request id is not 1 to %d bytes of [A-Za-z0-9-]",
				       WK_RAPI_REQUEST_ID_MAX);
	if (event->invoked_function_arn == NULL || event->invoked_function_arn[0] == '\0')
		return ember_error_set(err, "push event %s: no invoked function ARN", id);
	const char *values[] = {event->invoked_function_arn, event->trace_id, event->client_context,
				event->cognito_identity};
	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
		if (values[i] != NULL && !header_value_valid(values[i], WK_RAPI_EVENT_HEADER_MAX))
			return ember_error_set(err,
					       "push event %s: a header value is not printable ASCII"
					       " of at most %d bytes",
					       id, WK_RAPI_EVENT_HEADER_MAX);
	if (event->body_length > WK_RAPI_PAYLOAD_MAX)
		return ember_error_set(err, "push event %s: the body is %zu bytes, over the %u-byte limit",
				       id, event->body_length, WK_RAPI_PAYLOAD_MAX);
	if (event->body == NULL && event->body_length != 0)
		return ember_error_set(err, "push event %s: no body", id);

	struct invocation *invocation = calloc(1, sizeof *invocation);
	struct event_body *body = malloc(sizeof *body + event->body_length);
	if (invocation == NULL || body == NULL) {
		free(invocation);
		free(body);
		return ember_error_errno(err, ENOMEM, "push event %s", id);
	}
	atomic_init(&body->references, 1);
	body->length = event->body_length;
	if (event->body_length != 0)
		memcpy(body->bytes, event->body, event->body_length);
	invocation->body = body;
	invocation->state = INVOCATION_QUEUED;
	snprintf(invocation->request_id, sizeof invocation->request_id, "%s", id);
	snprintf(invocation->deadline, sizeof invocation->deadline, "%llu",
		 (unsigned long long)event->deadline_ms);
	if (copy_optional(event->invoked_function_arn, &invocation->function_arn) < 0 ||
	    copy_optional(event->trace_id, &invocation->trace_id) < 0 ||
	    copy_optional(event->client_context, &invocation->client_context) < 0 ||
	    copy_optional(event->cognito_identity, &invocation->cognito_identity) < 0) {
		free_invocation(invocation);
		return ember_error_errno(err, ENOMEM, "push event %s", id);
	}

	pthread_mutex_lock(&server->lock);
	const char *refusal = NULL;
	if (atomic_load(&server->stopping))
		refusal = "the server is stopping";
	else if (find_invocation(server, id) != NULL)
		refusal = "the request id was already pushed";
	if (refusal == NULL) {
		struct invocation **link = &server->invocations;
		while (*link != NULL)
			link = &(*link)->next;
		*link = invocation;
		dispatch(server);
	}
	pthread_mutex_unlock(&server->lock);
	if (refusal != NULL) {
		free_invocation(invocation);
		return ember_error_set(err, "push event %s: %s", id, refusal);
	}
	return 0;
}

void wk_rapi_server_stop(struct wk_rapi_server *server)
{
	if (server == NULL)
		return;
	/* Suspended connections must be resumed before MHD stops; once
	 * `stopping` is set, nothing suspends again and no callback runs. */
	pthread_mutex_lock(&server->lock);
	atomic_store(&server->stopping, true);
	while (server->waiters_head != NULL) {
		struct request *waiter = server->waiters_head;
		remove_waiter(server, waiter);
		MHD_resume_connection(waiter->connection);
	}
	pthread_mutex_unlock(&server->lock);
	MHD_stop_daemon(server->daemon); /* also closes the listening socket */
	remove_socket_file(server);
	while (server->invocations != NULL) {
		struct invocation *next = server->invocations->next;
		free_invocation(server->invocations);
		server->invocations = next;
	}
	pthread_mutex_destroy(&server->lock);
	free(server);
}
