/* An example custom runtime for Ember's `provided` runtime: what a tenant
 * ships as the executable `bootstrap` at the top of a bundle (it runs as
 * /var/task/bootstrap in the base root). It speaks the AWS Lambda Runtime
 * API itself, over one keep-alive TCP connection to AWS_LAMBDA_RUNTIME_API
 * (an IPv4 address and port; no name lookup): GET .../invocation/next,
 * then POST .../invocation/ID/response with
 *     {"echo": EVENT, "request_id": "ID", "function": "$AWS_LAMBDA_FUNCTION_NAME"}
 * or POST .../invocation/ID/error when the event is not JSON. A missing
 * AWS_LAMBDA_FUNCTION_NAME stands for a failed set-up: POST
 * /runtime/init/error, exit 1. A broken connection or a protocol error
 * ends it with exit 2 and a message on stderr.
 *
 * Everything the server sends is treated as untrusted: the header section
 * is bounded (HEADER_MAX), bodies are bounded (BODY_MAX, a 6 MB event and
 * a margin) whether framed by Content-Length or chunked, numbers are
 * checked for overflow, the event is validated as JSON before it is
 * echoed, and strings put into JSON or a path are escaped.
 *
 * Build: gcc -static -O2 -o bootstrap bootstrap.c */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define API_PREFIX "/2018-06-01/runtime"
#define HEADER_MAX (16 * 1024)		   /* the whole header section of an answer */
#define HEADER_COUNT_MAX 64		   /* header lines in one answer */
#define BODY_MAX (6 * 1024 * 1024 + 512 * 1024) /* 6 MB event, plus a margin */
#define REQUEST_ID_MAX 128
#define JSON_DEPTH_MAX 512

/* ---- the connection ------------------------------------------------------ */

struct connection {
	struct sockaddr_in address;
	int fd;			/* -1 when closed */
	char buffer[64 * 1024]; /* bytes read and not yet consumed */
	size_t start, end;
};

struct answer {
	int status;
	bool close;		/* the server will close after this answer */
	char request_id[REQUEST_ID_MAX + 1];
	char *body;		/* malloc'd, NUL-terminated; owned by the answer */
	size_t body_length;
};

static void fatal(const char *format, ...)
{
	va_list ap;
	va_start(ap, format);
	fputs("bootstrap: ", stderr);
	vfprintf(stderr, format, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static void connection_open(struct connection *c)
{
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		fatal("socket: %s", strerror(errno));
	while (connect(c->fd, (struct sockaddr *)&c->address, sizeof c->address) < 0) {
		if (errno != EINTR)
			fatal("connect to the Runtime API: %s", strerror(errno));
	}
	c->start = c->end = 0;
}

static void connection_close(struct connection *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->start = c->end = 0;
}

/* Writes all of data; a failure ends the runtime. */
static void send_all(struct connection *c, const void *data, size_t length)
{
	const char *p = data;
	while (length > 0) {
		ssize_t n = send(c->fd, p, length, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fatal("send to the Runtime API: %s", n < 0 ? strerror(errno) : "nothing sent");
		p += n;
		length -= (size_t)n;
	}
}

/* Reads more bytes into the buffer; false at the end of the stream. */
static bool fill(struct connection *c)
{
	if (c->start == c->end)
		c->start = c->end = 0;
	if (c->end == sizeof c->buffer) {
		memmove(c->buffer, c->buffer + c->start, c->end - c->start);
		c->end -= c->start;
		c->start = 0;
		if (c->end == sizeof c->buffer)
			fatal("internal: read buffer full");
	}
	for (;;) {
		ssize_t n = recv(c->fd, c->buffer + c->end, sizeof c->buffer - c->end, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fatal("receive from the Runtime API: %s", strerror(errno));
		c->end += (size_t)n;
		return n > 0;
	}
}

/* Reads one CRLF- (or LF-) terminated line of at most `limit` bytes into
 * line (NUL-terminated, without the end of line). Returns its length. */
static size_t read_line(struct connection *c, char *line, size_t limit)
{
	for (;;) {
		char *newline = memchr(c->buffer + c->start, '\n', c->end - c->start);
		if (newline) {
			size_t length = (size_t)(newline - (c->buffer + c->start));
			size_t taken = length + 1;
			if (length > 0 && newline[-1] == '\r')
				length--;
			if (length >= limit)
				fatal("a line of the answer is longer than %zu bytes", limit);
			memcpy(line, c->buffer + c->start, length);
			line[length] = '\0';
			c->start += taken;
			return length;
		}
		if (c->end - c->start >= limit)
			fatal("a line of the answer is longer than %zu bytes", limit);
		if (!fill(c))
			fatal("the Runtime API closed the connection in the middle of an answer");
	}
}

/* Appends exactly `length` body bytes to the answer's body. */
static void read_body_bytes(struct connection *c, struct answer *a, size_t length)
{
	if (length > BODY_MAX - a->body_length)
		fatal("the answer's body is larger than %d bytes", BODY_MAX);
	char *grown = realloc(a->body, a->body_length + length + 1);
	if (!grown)
		fatal("out of memory for a %zu-byte body", a->body_length + length);
	a->body = grown;
	while (length > 0) {
		if (c->start == c->end && !fill(c))
			fatal("the Runtime API closed the connection in the middle of a body");
		size_t n = c->end - c->start < length ? c->end - c->start : length;
		memcpy(a->body + a->body_length, c->buffer + c->start, n);
		a->body_length += n;
		c->start += n;
		length -= n;
	}
	a->body[a->body_length] = '\0';
}

/* A decimal or hexadecimal number with nothing else in it; false on
 * overflow past `max` or a stray character. */
static bool parse_number(const char *text, int base, uint64_t max, uint64_t *out)
{
	uint64_t value = 0;
	if (!*text)
		return false;
	for (; *text; text++) {
		int digit;
		if (*text >= '0' && *text <= '9')
			digit = *text - '0';
		else if (base == 16 && *text >= 'a' && *text <= 'f')
			digit = *text - 'a' + 10;
		else if (base == 16 && *text >= 'A' && *text <= 'F')
			digit = *text - 'A' + 10;
		else
			return false;
		if (value > (max - (uint64_t)digit) / (uint64_t)base)
			return false;
		value = value * (uint64_t)base + (uint64_t)digit;
	}
	*out = value;
	return true;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/* Reads one whole answer: status line, headers, body. */
static void read_answer(struct connection *c, struct answer *a)
{
	static char line[HEADER_MAX];
	memset(a, 0, sizeof *a);
	size_t header_bytes = read_line(c, line, sizeof line);
	int minor;
	if (sscanf(line, "HTTP/1.%d %3d", &minor, &a->status) != 2 || a->status < 100 || a->status > 599)
		fatal("a malformed status line from the Runtime API");
	a->close = minor == 0;
	bool chunked = false, have_length = false;
	uint64_t content_length = 0;
	for (int count = 0;; count++) {
		size_t length = read_line(c, line, sizeof line);
		header_bytes += length + 2;
		if (header_bytes > HEADER_MAX || count > HEADER_COUNT_MAX)
			fatal("the answer's headers are larger than %d bytes or %d lines", HEADER_MAX,
			      HEADER_COUNT_MAX);
		if (length == 0)
			break;
		char *colon = strchr(line, ':');
		if (!colon)
			fatal("a malformed header line from the Runtime API");
		*colon = '\0';
		char *name = line, *value = trim(colon + 1);
		if (strcasecmp(name, "Content-Length") == 0) {
			if (have_length || !parse_number(value, 10, BODY_MAX, &content_length))
				fatal("a bad or too large Content-Length: %.40s", value);
			have_length = true;
		} else if (strcasecmp(name, "Transfer-Encoding") == 0) {
			if (strcasecmp(value, "chunked") != 0)
				fatal("an unsupported Transfer-Encoding: %.40s", value);
			chunked = true;
		} else if (strcasecmp(name, "Connection") == 0) {
			if (strcasecmp(value, "close") == 0)
				a->close = true;
		} else if (strcasecmp(name, "Lambda-Runtime-Aws-Request-Id") == 0) {
			size_t n = strlen(value);
			if (n == 0 || n > REQUEST_ID_MAX)
				fatal("a request id of %zu bytes", n);
			memcpy(a->request_id, value, n + 1);
		}
	}
	if (chunked && have_length)
		fatal("an answer with both Content-Length and chunked encoding");
	if (chunked) {
		for (;;) {
			read_line(c, line, 128);
			char *extension = strchr(line, ';');
			if (extension)
				*extension = '\0';
			uint64_t size;
			if (!parse_number(trim(line), 16, BODY_MAX, &size))
				fatal("a bad or too large chunk size");
			if (size == 0)
				break;
			read_body_bytes(c, a, (size_t)size);
			if (read_line(c, line, 3) != 0)
				fatal("a chunk not followed by CRLF");
		}
		/* Trailers: bounded like headers, and ignored. */
		for (int count = 0; read_line(c, line, sizeof line) != 0; count++) {
			if (count > HEADER_COUNT_MAX)
				fatal("too many trailer lines");
		}
	} else if (have_length) {
		read_body_bytes(c, a, (size_t)content_length);
	} else if (a->status >= 200 && a->status != 204 && a->status != 304) {
		/* No framing: the body runs to the end of the stream. */
		for (;;) {
			if (c->start < c->end)
				read_body_bytes(c, a, c->end - c->start);
			if (!fill(c))
				break;
		}
		a->close = true;
	}
	if (!a->body) {
		a->body = malloc(1);
		if (!a->body)
			fatal("out of memory");
		a->body[0] = '\0';
	}
}

/* Sends one request (headers, then body pieces) and reads its answer,
 * reopening the connection first if the server closed it. */
static void exchange(struct connection *c, const char *method, const char *path, const char *extra_headers,
		     const char *const *pieces, const size_t *lengths, size_t count, struct answer *a)
{
	if (c->fd < 0)
		connection_open(c);
	size_t total = 0;
	for (size_t i = 0; i < count; i++)
		total += lengths[i];
	char head[1024];
	int n = snprintf(head, sizeof head,
			 "%s %s HTTP/1.1\r\nHost: %s:%u\r\n%s%s",
			 method, path, inet_ntoa(c->address.sin_addr), ntohs(c->address.sin_port),
			 extra_headers ? extra_headers : "", count ? "" : "\r\n");
	if (n < 0 || (size_t)n >= sizeof head)
		fatal("internal: request head too long");
	send_all(c, head, (size_t)n);
	if (count) {
		n = snprintf(head, sizeof head, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", total);
		send_all(c, head, (size_t)n);
		for (size_t i = 0; i < count; i++)
			send_all(c, pieces[i], lengths[i]);
	}
	read_answer(c, a);
	if (a->close)
		connection_close(c);
}

/* ---- JSON ------------------------------------------------------------------ */

struct json_cursor {
	const unsigned char *p, *end;
};

static void skip_space(struct json_cursor *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static bool literal(struct json_cursor *j, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
		return false;
	j->p += n;
	return true;
}

static bool hex4(struct json_cursor *j, unsigned *out)
{
	*out = 0;
	for (int i = 0; i < 4; i++, j->p++) {
		if (j->p >= j->end)
			return false;
		unsigned char ch = *j->p;
		unsigned digit = ch >= '0' && ch <= '9' ? ch - '0'
				 : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
				 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
							  : 16;
		if (digit == 16)
			return false;
		*out = *out << 4 | digit;
	}
	return true;
}

/* One UTF-8 sequence, strictly (no overlong forms, no surrogates). */
static bool utf8_sequence(struct json_cursor *j)
{
	unsigned char c0 = *j->p;
	size_t n = c0 >= 0xf0 ? 4 : c0 >= 0xe0 ? 3 : 2;
	if (c0 < 0xc2 || c0 > 0xf4 || (size_t)(j->end - j->p) < n)
		return false;
	uint32_t cp = c0 & (0x3f >> (n - 1));
	for (size_t i = 1; i < n; i++) {
		if ((j->p[i] & 0xc0) != 0x80)
			return false;
		cp = cp << 6 | (j->p[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return false;
	j->p += n;
	return true;
}

static bool json_string(struct json_cursor *j)
{
	if (j->p >= j->end || *j->p != '"')
		return false;
	j->p++;
	while (j->p < j->end) {
		unsigned char ch = *j->p;
		if (ch == '"') {
			j->p++;
			return true;
		}
		if (ch < 0x20)
			return false;
		if (ch == '\\') {
			j->p++;
			if (j->p >= j->end)
				return false;
			unsigned char e = *j->p++;
			if (e == 'u') {
				unsigned u;
				if (!hex4(j, &u))
					return false;
			} else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
				return false;
			}
		} else if (ch < 0x80) {
			j->p++;
		} else if (!utf8_sequence(j)) {
			return false;
		}
	}
	return false;
}

static bool json_number(struct json_cursor *j)
{
	const unsigned char *start = j->p;
	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p >= j->end)
		return false;
	if (*j->p == '0') {
		j->p++;
	} else if (*j->p >= '1' && *j->p <= '9') {
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	} else {
		return false;
	}
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		const unsigned char *digits = j->p;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
		if (j->p == digits)
			return false;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		const unsigned char *digits = j->p;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
		if (j->p == digits)
			return false;
	}
	return j->p > start;
}

/* One JSON value; depth bounds the recursion. */
static bool json_value(struct json_cursor *j, int depth)
{
	if (depth > JSON_DEPTH_MAX)
		return false;
	skip_space(j);
	if (j->p >= j->end)
		return false;
	switch (*j->p) {
	case '{':
	case '[': {
		bool object = *j->p == '{';
		char close = object ? '}' : ']';
		j->p++;
		skip_space(j);
		if (j->p < j->end && *j->p == close) {
			j->p++;
			return true;
		}
		for (;;) {
			if (object) {
				skip_space(j);
				if (!json_string(j))
					return false;
				skip_space(j);
				if (j->p >= j->end || *j->p != ':')
					return false;
				j->p++;
			}
			if (!json_value(j, depth + 1))
				return false;
			skip_space(j);
			if (j->p >= j->end)
				return false;
			if (*j->p == close) {
				j->p++;
				return true;
			}
			if (*j->p != ',')
				return false;
			j->p++;
		}
	}
	case '"':
		return json_string(j);
	case 't':
		return literal(j, "true");
	case 'f':
		return literal(j, "false");
	case 'n':
		return literal(j, "null");
	default:
		return json_number(j);
	}
}

/* Whether text[0..length) is one JSON value; *value and *value_length get it
 * without surrounding whitespace. */
static bool json_validate(const char *text, size_t length, const char **value, size_t *value_length)
{
	struct json_cursor j = {(const unsigned char *)text, (const unsigned char *)text + length};
	skip_space(&j);
	const unsigned char *start = j.p;
	if (!json_value(&j, 0))
		return false;
	const unsigned char *stop = j.p;
	skip_space(&j);
	if (j.p != j.end)
		return false;
	*value = (const char *)start;
	*value_length = (size_t)(stop - start);
	return true;
}

/* A JSON string literal (quotes included) for a NUL-terminated string:
 * valid UTF-8 is kept, control characters are escaped, and a byte that is
 * not part of valid UTF-8 becomes U+FFFD. malloc'd. */
static char *json_quote(const char *s)
{
	size_t n = strlen(s);
	char *out = malloc(n * 6 + 3);
	if (!out)
		fatal("out of memory");
	char *o = out;
	*o++ = '"';
	struct json_cursor j = {(const unsigned char *)s, (const unsigned char *)s + n};
	while (j.p < j.end) {
		unsigned char ch = *j.p;
		const unsigned char *start = j.p;
		if (ch == '"' || ch == '\\') {
			*o++ = '\\';
			*o++ = (char)ch;
			j.p++;
		} else if (ch < 0x20 || ch == 0x7f) {
			o += sprintf(o, "\\u%04x", ch);
			j.p++;
		} else if (ch < 0x80) {
			*o++ = (char)ch;
			j.p++;
		} else if (utf8_sequence(&j)) {
			memcpy(o, start, (size_t)(j.p - start));
			o += j.p - start;
		} else {
			memcpy(o, "\\ufffd", 6);
			o += 6;
			j.p++;
		}
	}
	*o++ = '"';
	*o = '\0';
	return out;
}

/* ---- the Runtime API loop ------------------------------------------------- */

/* The request id, percent-encoded for a path (unreserved bytes kept). */
static void path_escape(const char *id, char out[REQUEST_ID_MAX * 3 + 1])
{
	static const char hex[] = "0123456789ABCDEF";
	char *o = out;
	for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		    *p == '_' || *p == '.' || *p == '~') {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
}

static void post(struct connection *c, const char *path, const char *error_type, const char *const *pieces,
		 const size_t *lengths, size_t count)
{
	char extra[256] = "";
	if (error_type)
		snprintf(extra, sizeof extra, "Lambda-Runtime-Function-Error-Type: %s\r\n", error_type);
	struct answer a;
	exchange(c, "POST", path, extra, pieces, lengths, count, &a);
	if (a.status < 200 || a.status > 299)
		fprintf(stderr, "bootstrap: POST %s answered %d: %.200s\n", path, a.status, a.body);
	free(a.body);
}

static void post_error(struct connection *c, const char *path, const char *type, const char *message)
{
	char *quoted_type = json_quote(type), *quoted_message = json_quote(message);
	const char *pieces[] = {"{\"errorMessage\":", quoted_message, ",\"errorType\":", quoted_type,
				",\"stackTrace\":[]}"};
	size_t lengths[5];
	for (size_t i = 0; i < 5; i++)
		lengths[i] = strlen(pieces[i]);
	fprintf(stderr, "[ERROR] %s: %s\n", type, message);
	post(c, path, type, pieces, lengths, 5);
	free(quoted_type);
	free(quoted_message);
}

static void parse_api_address(const char *text, struct sockaddr_in *address)
{
	char host[64];
	const char *colon = text ? strrchr(text, ':') : NULL;
	uint64_t port;
	if (!colon || (size_t)(colon - text) >= sizeof host || !parse_number(colon + 1, 10, 65535, &port) || port == 0)
		fatal("AWS_LAMBDA_RUNTIME_API is not IPv4-ADDRESS:PORT: %s", text ? text : "(unset)");
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	memset(address, 0, sizeof *address);
	address->sin_family = AF_INET;
	address->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &address->sin_addr) != 1)
		fatal("AWS_LAMBDA_RUNTIME_API is not IPv4-ADDRESS:PORT: %s", text);
}

int main(void)
{
	static struct connection c;
	parse_api_address(getenv("AWS_LAMBDA_RUNTIME_API"), &c.address);
	c.fd = -1;

	/* Initialisation: what a real runtime does before its first event
	 * (load the handler...). This one only needs its function's name. */
	const char *function = getenv("AWS_LAMBDA_FUNCTION_NAME");
	if (!function || !*function) {
		post_error(&c, API_PREFIX "/init/error", "Runtime.ConfigInvalid",
			   "AWS_LAMBDA_FUNCTION_NAME is not set");
		return 1;
	}
	char *quoted_function = json_quote(function);

	for (;;) {
		struct answer a;
		exchange(&c, "GET", API_PREFIX "/invocation/next", NULL, NULL, NULL, 0, &a);
		if (a.status != 200)
			fatal("GET /invocation/next answered %d: %.200s", a.status, a.body);
		if (!a.request_id[0])
			fatal("GET /invocation/next answered without Lambda-Runtime-Aws-Request-Id");
		char escaped[REQUEST_ID_MAX * 3 + 1], path[REQUEST_ID_MAX * 3 + 64];
		path_escape(a.request_id, escaped);
		const char *event;
		size_t event_length;
		printf("bootstrap: request %s, %zu-byte event\n", escaped, a.body_length);
		fflush(stdout);
		if (!json_validate(a.body, a.body_length, &event, &event_length)) {
			snprintf(path, sizeof path, API_PREFIX "/invocation/%s/error", escaped);
			post_error(&c, path, "Runtime.UnmarshalError", "the event is not valid JSON");
		} else {
			char *quoted_id = json_quote(a.request_id);
			const char *pieces[] = {"{\"echo\":", event, ",\"request_id\":", quoted_id, ",\"function\":",
						quoted_function, "}"};
			size_t lengths[7];
			for (size_t i = 0; i < 7; i++)
				lengths[i] = i == 1 ? event_length : strlen(pieces[i]);
			snprintf(path, sizeof path, API_PREFIX "/invocation/%s/response", escaped);
			post(&c, path, NULL, pieces, lengths, 7);
			free(quoted_id);
		}
		free(a.body);
	}
}
