/* The host side of the AWS Lambda Runtime API (version 2018-06-01).
 *
 * A runtime inside an Ember microVM speaks HTTP/1.1 to 127.0.0.1:9001; the
 * VMM forwards the bytes of that connection to a Unix socket on the host.
 * This module serves the Runtime API on such a socket with libmicrohttpd:
 * it hands events pushed by the host program to the runtime's
 * `GET /2018-06-01/runtime/invocation/next` (a long poll), and passes what
 * the runtime sends back — responses as their bytes arrive, streamed or
 * buffered, invocation errors, init errors — to the host through callbacks.
 * ember-invoke (one event, one VM) and later ember-worker use it; neither
 * sees HTTP.
 *
 * One server serves one runtime, that is one VM: the request ids it knows
 * are the ones pushed to it.  The runtime is untrusted code.  Every request
 * is parsed as hostile: paths and request ids are validated, every stored
 * size is bounded (the limits below), and anything malformed or out of
 * order gets the 4xx answer AWS documents — {"errorMessage":...,
 * "errorType":...} — and a protocol_error callback; nothing a runtime sends
 * can end anything but its own connection.  Nothing here prints or exits.
 *
 * Answers:
 *   GET  /2018-06-01/runtime/invocation/next           200 with the event
 *   POST /2018-06-01/runtime/invocation/{id}/response  202 {"status":"OK"}
 *   POST /2018-06-01/runtime/invocation/{id}/error     202 {"status":"OK"}
 *   POST /2018-06-01/runtime/init/error                202 {"status":"OK"}
 *   an unknown path, or a known path with another method      404 NotFound
 *   a malformed id, or one that was not delivered by /next, or was
 *     already answered (also: any response before the first /next)
 *                                                      400 InvalidRequestID
 *   a response body past its limit (an error body past 1 MiB)
 *                                                 413 RequestEntityTooLarge
 *   init/error after the runtime asked for an event  403 InvalidStateTransition
 *   a Content-Type past WK_RAPI_CONTENT_TYPE_MAX bytes      400 InvalidHeader
 *   several Content-Length or Transfer-Encoding headers, both, or an
 *     encoding other than chunked (answered at once, then closed)
 *                                                      400 InvalidHeader
 *   malformed HTTP: libmicrohttpd answers 400 (or 413/431) and closes.
 * A refused request whose body is declared longer than what its endpoint
 * accepts is answered before its body is read, and the connection is then
 * closed.  A body that is not declared (chunked) and goes past the limit is
 * read and thrown away for at most WK_RAPI_DISCARD_MAX more bytes and then
 * answered; past that the connection is closed without an answer.
 *
 * Threading.  The server runs one thread of its own (libmicrohttpd's
 * polling thread); every callback is called on that thread, one at a time,
 * never with a lock of this module held.  A callback may call
 * wk_rapi_push_event() (ember-invoke pushes its event from next_requested)
 * but never wk_rapi_server_stop().  A callback that blocks stalls this
 * server's runtime only — which is also how back-pressure works: while
 * response_chunk runs, the runtime's further bytes wait.
 * wk_rapi_push_event() may be called from any thread. */
#ifndef EMBER_WORKER_RUNTIME_API_H
#define EMBER_WORKER_RUNTIME_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* ---- limits ---------------------------------------------------------------- */

/* A request id: 1 to 64 bytes of [A-Za-z0-9-] (a UUID fits). */
#define WK_RAPI_REQUEST_ID_MAX 64
/* An event body and a buffered response body: AWS's 6 MB synchronous
 * payload limit, in the bytes its own error message names. */
#define WK_RAPI_PAYLOAD_MAX 6291556u
/* A streamed response body (Lambda-Runtime-Function-Response-Mode:
 * streaming). */
#define WK_RAPI_STREAMED_RESPONSE_MAX (20u << 20)
/* The body of an invocation error or an init error, and the decoded
 * Lambda-Runtime-Function-Error-Body trailer of a streamed response. */
#define WK_RAPI_ERROR_BODY_MAX (1u << 20)
/* A Lambda-Runtime-Function-Error-Type value; longer ones are cut. */
#define WK_RAPI_ERROR_TYPE_MAX 256
/* A response's Content-Type; longer ones are refused (400). */
#define WK_RAPI_CONTENT_TYPE_MAX 256
/* Each event header value given to wk_rapi_push_event (ARN, trace id,
 * client context, Cognito identity). */
#define WK_RAPI_EVENT_HEADER_MAX 8192
/* Bytes read and thrown away after a refused or oversized body before the
 * connection is closed instead of answered. */
#define WK_RAPI_DISCARD_MAX (1u << 20)
/* Connections the runtime may hold open at once; more are refused at
 * accept.  A runtime normally keeps one. */
#define WK_RAPI_CONNECTION_MAX 16

/* ---- what the host pushes -------------------------------------------------- */

/* One invocation, as the runtime's GET .../invocation/next receives it.
 * Everything is copied by wk_rapi_push_event(); the caller keeps ownership
 * of the struct and what it points to. */
struct wk_rapi_event {
	/* Lambda-Runtime-Aws-Request-Id: 1..WK_RAPI_REQUEST_ID_MAX bytes of
	 * [A-Za-z0-9-], unique within the server. */
	const char *request_id;
	/* Lambda-Runtime-Deadline-Ms: the deadline in Unix epoch milliseconds. */
	uint64_t deadline_ms;
	/* Lambda-Runtime-Invoked-Function-Arn (required). */
	const char *invoked_function_arn;
	/* Lambda-Runtime-Trace-Id; NULL or "" leaves the header out. */
	const char *trace_id;
	/* Lambda-Runtime-Client-Context and Lambda-Runtime-Cognito-Identity
	 * (JSON, as the invoker gave them); NULL leaves the header out. */
	const char *client_context;
	const char *cognito_identity;
	/* The event, sent as the body with Content-Type: application/json;
	 * at most WK_RAPI_PAYLOAD_MAX bytes.  NULL is allowed when the length
	 * is 0. */
	const void *body;
	size_t body_length;
};

/* ---- what the host is told ------------------------------------------------ */

/* How a response ended. */
enum wk_rapi_response_outcome {
	/* The whole body arrived; the runtime got 202. */
	WK_RAPI_RESPONSE_COMPLETE,
	/* The whole body arrived and its trailers carried
	 * Lambda-Runtime-Function-Error-Type (a streamed response that failed
	 * midway); the runtime got 202. */
	WK_RAPI_RESPONSE_FUNCTION_ERROR,
	/* The body went past its limit (WK_RAPI_PAYLOAD_MAX buffered,
	 * WK_RAPI_STREAMED_RESPONSE_MAX streamed); nothing past the limit was
	 * passed on; the runtime got 413 or a closed connection.  Reported as
	 * soon as the limit is passed. */
	WK_RAPI_RESPONSE_TOO_LARGE,
	/* The connection ended (or broke the chunked encoding) before the body
	 * was complete. */
	WK_RAPI_RESPONSE_TRUNCATED,
};

/* The end of a response, given to response_finished.  Pointers are valid
 * during the call only. */
struct wk_rapi_response_end {
	enum wk_rapi_response_outcome outcome;
	/* Body bytes passed to response_chunk, in all. */
	uint64_t body_bytes;
	/* WK_RAPI_RESPONSE_FUNCTION_ERROR only (else NULL / 0): the
	 * Lambda-Runtime-Function-Error-Type trailer (NUL-terminated, at most
	 * WK_RAPI_ERROR_TYPE_MAX bytes, untrusted: may hold any byte but NUL),
	 * and the Lambda-Runtime-Function-Error-Body trailer decoded from
	 * base64 — or as sent when it is not valid base64 — at most
	 * WK_RAPI_ERROR_BODY_MAX bytes; error_body is NULL when it was absent. */
	const char *error_type;
	const void *error_body;
	size_t error_body_length;
};

/* An invocation error or an init error.  Pointers are valid during the
 * call only; every byte is untrusted. */
struct wk_rapi_error {
	/* The Lambda-Runtime-Function-Error-Type header, NUL-terminated, cut to
	 * WK_RAPI_ERROR_TYPE_MAX bytes; NULL when the runtime sent none. */
	const char *error_type;
	/* The request body (AWS's runtimes send {"errorMessage", "errorType",
	 * "stackTrace"} JSON, but nothing checks that); at most
	 * WK_RAPI_ERROR_BODY_MAX bytes. */
	const void *body;
	size_t body_length;
	/* The body was longer than WK_RAPI_ERROR_BODY_MAX (the runtime got
	 * 413) or its connection ended before the body was complete: `body`
	 * is only its start. */
	bool body_truncated;
};

/* The host's callbacks; any may be NULL.  Each is called on the server's
 * thread with the `ctx` given to wk_rapi_server_start (see Threading
 * above); none is called once wk_rapi_server_stop() has begun.  String
 * arguments are NUL-terminated and valid during the call only.
 *
 * Every invocation delivered to the runtime ends with exactly one of
 * response_finished (always preceded by response_started, with the body's
 * chunks in between) or invocation_error, unless the runtime never answers
 * it: then the host's deadline ends it. */
struct wk_rapi_callbacks {
	/* The runtime asked for the next event (a complete GET
	 * .../invocation/next): called once per such request, before an event
	 * is looked for, so a host may push the event from here.  ember-build-fn
	 * snapshots the VM at the first one. */
	void (*next_requested)(void *ctx);
	/* A response for `request_id` began: its headers were valid and the id
	 * is one the runtime is answering.  `streaming`: it came with
	 * Lambda-Runtime-Function-Response-Mode: streaming.  `content_type`:
	 * the request's Content-Type (at most WK_RAPI_CONTENT_TYPE_MAX bytes),
	 * or NULL. */
	void (*response_started)(void *ctx, const char *request_id, bool streaming, const char *content_type);
	/* The next `length` (> 0) bytes of the response body, as they arrived:
	 * for a chunked body, bytes of one chunk (a chunk may come in several
	 * calls), in order. */
	void (*response_chunk)(void *ctx, const char *request_id, const void *data, size_t length);
	/* The response ended; see struct wk_rapi_response_end. */
	void (*response_finished)(void *ctx, const char *request_id, const struct wk_rapi_response_end *end);
	/* POST .../invocation/{request_id}/error arrived (its whole body, or
	 * what came before its connection ended). */
	void (*invocation_error)(void *ctx, const char *request_id, const struct wk_rapi_error *error);
	/* POST /2018-06-01/runtime/init/error arrived: the runtime failed to
	 * start (a missing handler, a syntax error). */
	void (*init_error)(void *ctx, const struct wk_rapi_error *error);
	/* The runtime sent something the API refuses (an unknown path, a bad or
	 * stale request id, an oversized body, a disconnection mid-body); the
	 * runtime got the answer named in the message, or its connection was
	 * closed.  For the host's log: `message` is one line of printable ASCII
	 * (what came from the runtime is escaped), under 512 bytes. */
	void (*protocol_error)(void *ctx, const char *message);
};

/* ---- the server ----------------------------------------------------------- */

struct wk_rapi_server;

/* Creates a Unix stream socket at `unix_socket_path` (at most 107 bytes;
 * a stale socket left there is removed, a live one or any other kind of
 * file is refused), listens on it and starts serving the Runtime API on it
 * from a new thread, calling `callbacks` (copied) with `ctx`.  The socket
 * file is created under the caller's umask; making it reachable by the VMM
 * (its owner and mode) is the caller's job.  On success stores the server
 * in `*out` and returns 0; the caller owns it and ends it with
 * wk_rapi_server_stop().  On failure returns -1 with `err` set and leaves
 * no socket file behind. */
int wk_rapi_server_start(struct wk_rapi_server **out, const char *unix_socket_path,
			 const struct wk_rapi_callbacks *callbacks, void *ctx, struct ember_error *err);

/* Queues an invocation: the runtime's pending or next GET
 * .../invocation/next answers 200 with it.  Events go out in the order
 * they were pushed; an event whose delivery failed (the connection broke
 * before the whole answer was written) goes out again to the next
 * request.  Copies everything in `event`.  Returns 0, or -1 with `err` set
 * when a field is invalid (see struct wk_rapi_event; header values must be
 * printable ASCII), the request id was already pushed, the server is
 * stopping, or memory ran out.  Any thread, callbacks included. */
int wk_rapi_push_event(struct wk_rapi_server *server, const struct wk_rapi_event *event,
		       struct ember_error *err);

/* Stops the server: closes every connection (a pending GET /next gets no
 * answer), joins the thread, closes the listening socket and removes its
 * file (if it is still the one this server made), and frees everything.
 * No callback runs once this has begun.  NULL is allowed.  Not from a
 * callback. */
void wk_rapi_server_stop(struct wk_rapi_server *server);

/* Whether `id` is a valid request id (see struct wk_rapi_event). */
bool wk_rapi_request_id_valid(const char *id, size_t length);

#endif
