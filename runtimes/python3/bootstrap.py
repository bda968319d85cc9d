# Ember's python3 runtime: the program that runs inside a function's microVM
# (installed in the python3 root as /var/runtime/bootstrap.py). It imports the
# handler named by _HANDLER from LAMBDA_TASK_ROOT, then serves invocations from
# the AWS Lambda Runtime API at AWS_LAMBDA_RUNTIME_API (GET .../next, POST
# .../response, .../error, /runtime/init/error) over one keep-alive HTTP/1.1
# connection. A function snapshot is taken while this program waits for its
# first event, so everything after the first /next answer runs in a restored
# VM: that is where `random` is reseeded. Standard library only.
#
# Contract with the host (see tests/runtimes/fixtures/README.md):
#   exit 1  an init error (already reported with POST /runtime/init/error);
#   exit 2  the Runtime API connection broke or answered outside the protocol;
#   handler errors are reported with POST .../error and the loop goes on.
import binascii
import json
import gc
import os
import random
import socket
import sys
import time
import traceback

API_PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
MESSAGE_LIMIT = 64 * 1024  # characters of an errorMessage that are kept
STACK_LIMIT = 100  # stack frames that are kept, innermost last
BOOTSTRAP_FILE = os.path.abspath(__file__)
HEAD_LIMIT = 64 * 1024  # bytes of an answer's status line and headers
BODY_LIMIT = 32 * 1024 * 1024  # bytes of an answer's body (events are at most 6 MB)
RECEIVE_SIZE = 64 * 1024
SMALL_BODY = 64 * 1024  # bodies up to this size go in the same send as the head


class RuntimeApiBroken(Exception):
    """The connection to the Runtime API is gone, or it broke the protocol."""


class InitError(Exception):
    """A handler that cannot be loaded; error_type is the Lambda error type."""

    def __init__(self, error_type, message, stack=None):
        super().__init__(message)
        self.error_type = error_type
        self.stack = stack or []


def log(message):
    print(message, file=sys.stderr, flush=True)


def flush_logs():
    """Pushes out what the handler printed before its outcome is posted: the
    VM may be destroyed as soon as the host has the outcome. (Nothing to
    do when PYTHONUNBUFFERED=1, as the builder sets it.)"""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a handler may have closed or replaced it
            pass


def truncate(text, limit):
    return text if len(text) <= limit else text[:limit] + "... (truncated)"


def user_stack(tb, clear=False):
    """The traceback's frames as traceback.format_list strings, leaving out
    this file's frames and importlib's. With clear, the frames' locals are
    dropped first: after a MemoryError they may hold what filled memory."""
    if clear:
        traceback.clear_frames(tb)
    frames = [
        frame
        for frame in traceback.extract_tb(tb)
        if frame.filename != BOOTSTRAP_FILE and not frame.filename.startswith("<frozen importlib")
    ]
    return traceback.format_list(frames[-STACK_LIMIT:])


def error_document(error_type, message, stack):
    return {
        "errorMessage": truncate(message, MESSAGE_LIMIT),
        "errorType": error_type,
        "stackTrace": stack,
    }


def error_from_exception(exc):
    """The Lambda error document of an exception raised by user code."""
    stack = user_stack(exc.__traceback__, clear=isinstance(exc, MemoryError))
    try:
        message = str(exc)
    except Exception:  # a hostile __str__
        message = "<exception str() failed>"
    return error_document(type(exc).__name__, message, stack)


def log_error(document, request_id=None):
    prefix = "[ERROR] "
    if request_id:
        prefix += "RequestId: %s " % request_id
    lines = [prefix + "%s: %s" % (document["errorType"], document["errorMessage"])]
    if document["stackTrace"]:
        lines.append("Traceback (most recent call last):")
        lines.extend(line.rstrip("\n") for line in document["stackTrace"])
    log("\n".join(lines))


def to_json(value):
    """JSON text of a handler's result, as UTF-8 bytes. Raises TypeError,
    ValueError or RecursionError when it cannot be serialised."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False, default=_json_default)
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: ASCII escapes keep the JSON valid.
        return json.dumps(value, separators=(",", ":"), allow_nan=False,
                          default=_json_default).encode("ascii")


def _json_default(value):
    # decimal.Decimal, as AWS's runtime serialises it (without importing decimal).
    if type(value).__name__ == "Decimal" and type(value).__module__ == "decimal":
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)


class Identity:
    """context.identity: the Amazon Cognito identity of a mobile SDK caller."""

    def __init__(self, document):
        self.cognito_identity_id = document.get("cognitoIdentityId")
        self.cognito_identity_pool_id = document.get("cognitoIdentityPoolId")


class ClientContext:
    """context.client_context: what a mobile SDK caller said about itself."""

    def __init__(self, document):
        self.client = document.get("client")
        self.custom = document.get("custom")
        self.env = document.get("env")


def _header_document(value):
    if not value:
        return None
    try:
        document = json.loads(value)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


class LambdaContext:
    """The handler's second argument, with the attributes AWS's Python
    runtime gives it."""

    def __init__(self, request_id, deadline_ms, function_arn, headers):
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        # A string, as in AWS's runtime.
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self._deadline_ms = deadline_ms
        identity = _header_document(headers.get("lambda-runtime-cognito-identity"))
        self.identity = Identity(identity) if identity is not None else None
        client_context = _header_document(headers.get("lambda-runtime-client-context"))
        self.client_context = ClientContext(client_context) if client_context is not None else None

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, message):
        sys.stdout.write(str(message))
        sys.stdout.flush()


def load_handler(name):
    """Imports the handler "module.function" (module may be dotted or a
    path with '/'). Raises InitError with the Lambda error type."""
    module_name, dot, function_name = (name or "").rpartition(".")
    if not dot or not module_name or not function_name:
        raise InitError("Runtime.MalformedHandlerName",
                        "Bad handler '%s': expected module.function" % (name or ""))
    module_name = module_name.replace("/", ".")
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise InitError("Runtime.BuiltInModuleConflict",
                        "Cannot use built-in module %s as a handler module" % module_name)
    try:
        __import__(module_name)
        module = sys.modules[module_name]
    except SyntaxError as e:
        raise InitError("Runtime.UserCodeSyntaxError",
                        "Syntax error in module '%s': %s" % (module_name, e),
                        ['  File "%s", line %s\n    %s\n' % (e.filename, e.lineno, (e.text or "").strip())])
    except ImportError as e:
        raise InitError("Runtime.ImportModuleError",
                        "Unable to import module '%s': %s" % (module_name, e),
                        user_stack(e.__traceback__))
    except SystemExit as e:
        raise InitError("Runtime.ExitError",
                        "Module '%s' exited while being imported (sys.exit(%r))" % (module_name, e.code))
    except Exception as e:
        # Any other exception raised while the module ran: reported as
        # itself, as AWS does.
        document = error_from_exception(e)
        raise InitError(document["errorType"], document["errorMessage"], document["stackTrace"])
    handler = getattr(module, function_name, None)
    if handler is None:
        raise InitError("Runtime.HandlerNotFound",
                        "Handler '%s' missing on module '%s'" % (function_name, module_name))
    if not callable(handler):
        raise InitError("Runtime.HandlerNotFound",
                        "Handler '%s' on module '%s' is not callable" % (function_name, module_name))
    return handler


class RuntimeApi:
    """One keep-alive HTTP/1.1 connection to the Runtime API, through a
    small client on a plain socket. Every method raises RuntimeApiBroken
    when the connection fails or an answer is not HTTP or passes the limits;
    header names in answers are lower-cased.

    Why not http.client: it imports email.parser and ssl (58 ms of the
    ~120 ms before the first GET /next in the VM), and its request and
    response code touches enough memory that an invocation in a restored VM
    took 6.7 ms from event to response against 4.3 ms with this client
    (465 against 265 pages copied on write)."""

    def __init__(self, address):
        host, colon, port = address.rpartition(":")
        if not colon or not host or not is_decimal(port) or not 0 < int(port) < 65536:
            raise RuntimeApiBroken("AWS_LAMBDA_RUNTIME_API is not host:port: %r" % address)
        self.address = (host, int(port))
        self.host_header = address
        self.sock = None
        self.buffer = bytearray()
        # Made now, before the snapshot, and reused for every read.
        self.receive_buffer = bytearray(RECEIVE_SIZE)
        self.receive_view = memoryview(self.receive_buffer)

    def _connect(self):
        if self.sock is None:
            self.buffer = bytearray()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect(self.address)
            except BaseException:
                sock.close()
                raise
            self.sock = sock

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def _send_head(self, method, path, headers):
        self._connect()
        lines = ["%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, self.host_header)]
        for name, value in headers.items():
            lines.append("%s: %s\r\n" % (name, value))
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _fill(self):
        # Into one buffer made before the snapshot: a fresh 256 KiB bytes
        # object per read would be an mmap, an mremap and a munmap (three VM
        # exits) and 64 new pages to fault in, on every answer.
        n = self.sock.recv_into(self.receive_buffer)
        if not n:
            raise RuntimeApiBroken("the Runtime API closed the connection")
        self.buffer += self.receive_view[:n]

    def _line(self):
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[:end + 2]
                return line
            if len(self.buffer) > HEAD_LIMIT:
                raise RuntimeApiBroken("a line of the answer is longer than %d bytes" % HEAD_LIMIT)
            self._fill()

    def _exact(self, size):
        if size > BODY_LIMIT:
            raise RuntimeApiBroken("an answer body of %d bytes" % size)
        if len(self.buffer) >= size:
            data = bytes(self.buffer[:size])
            del self.buffer[:size]
            return data
        data = bytearray(size)
        view = memoryview(data)
        have = len(self.buffer)
        view[:have] = self.buffer
        self.buffer = bytearray()
        while have < size:
            n = self.sock.recv_into(view[have:])
            if not n:
                raise RuntimeApiBroken("the Runtime API closed the connection in a body")
            have += n
        return data

    def _answer(self):
        """Reads one answer: (status, headers, body)."""
        status_line = self._line()
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise RuntimeApiBroken("not an HTTP answer: %r" % status_line[:80])
        status = int(parts[1])
        close = parts[0] == b"HTTP/1.0"
        headers = {}
        size = len(status_line)
        while True:
            line = self._line()
            size += len(line) + 2
            if size > HEAD_LIMIT:
                raise RuntimeApiBroken("the answer's headers pass %d bytes" % HEAD_LIMIT)
            if not line:
                break
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise RuntimeApiBroken("a malformed header line: %r" % line[:80])
            headers[name.strip().lower()] = value.strip()
        if headers.get("connection", "").lower() == "close":
            close = True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            pieces, total = [], 0
            while True:
                size_text = self._line().split(b";", 1)[0].strip()
                try:
                    chunk = int(size_text, 16)
                except ValueError:
                    raise RuntimeApiBroken("a bad chunk size: %r" % size_text[:40]) from None
                if chunk == 0:
                    break
                total += chunk
                if chunk < 0 or total > BODY_LIMIT:
                    raise RuntimeApiBroken("a chunked body past %d bytes" % BODY_LIMIT)
                pieces.append(self._exact(chunk))
                if self._line():
                    raise RuntimeApiBroken("a chunk not followed by CRLF")
            while self._line():  # trailers: read and ignored
                pass
            body = b"".join(pieces)
        elif "content-length" in headers:
            length = headers["content-length"]
            if not is_decimal(length):
                raise RuntimeApiBroken("a bad Content-Length: %r" % length[:40])
            body = self._exact(int(length))
        elif status in (204, 304) or status < 200:
            body = b""
        else:  # the body runs to the end of the connection
            try:
                while True:
                    self._fill()
                    if len(self.buffer) > BODY_LIMIT:
                        raise RuntimeApiBroken("an answer body past %d bytes" % BODY_LIMIT)
            except RuntimeApiBroken as e:
                if len(self.buffer) > BODY_LIMIT:
                    raise e from None
            body, self.buffer, close = bytes(self.buffer), bytearray(), True
        if close:
            self.close()
        return status, headers, body

    def _request(self, method, path, body=None, headers=None):
        """Sends one request and returns (status, headers, body)."""
        headers = dict(headers or ())
        if body is not None:
            headers["Content-Length"] = str(len(body))
        try:
            head = self._send_head(method, path, headers)
            if body is not None and len(body) <= SMALL_BODY:
                self.sock.sendall(head + body)
            else:
                self.sock.sendall(head)
                if body:
                    self.sock.sendall(body)
            return self._answer()
        except OSError as e:
            self.close()
            raise RuntimeApiBroken("%s %s: %s" % (method, path, e)) from None
        except RuntimeApiBroken as e:
            self.close()
            raise RuntimeApiBroken("%s %s: %s" % (method, path, e)) from None

    def next_invocation(self):
        status, headers, body = self._request("GET", API_PREFIX + "/invocation/next")
        if status != 200:
            raise RuntimeApiBroken("GET /invocation/next answered %d: %r" % (status, body[:200]))
        return headers, body

    def _post_json(self, path, body, error_type=None):
        flush_logs()
        headers = {"Content-Type": "application/json"}
        if error_type:
            headers[ERROR_TYPE_HEADER] = header_safe(error_type)
        status, _, answer = self._request("POST", path, body, headers)
        if status >= 300:
            # The host refused it (too large, out of order, ...): it reports
            # the invocation's failure itself; say so in the logs.
            log("[ERROR] POST %s answered %d: %s" % (path, status, answer[:200].decode("utf-8", "replace")))
        return status

    def post_response(self, request_id, body):
        return self._post_json(invocation_path(request_id, "response"), body)

    def post_error(self, request_id, document):
        return self._post_json(invocation_path(request_id, "error"), error_body(document),
                               document["errorType"])

    def post_init_error(self, document):
        return self._post_json(API_PREFIX + "/init/error", error_body(document), document["errorType"])

    def post_stream(self, request_id, first, items):
        """Streams a response: one HTTP chunk per item, each sent at once;
        an exception from `items` ends the stream with the error trailers."""
        path = invocation_path(request_id, "response")
        try:
            self._send_stream(path, first, items, request_id)
            status, _, answer = self._answer()
        except OSError as e:
            self.close()
            raise RuntimeApiBroken("POST %s: %s" % (path, e)) from None
        except RuntimeApiBroken as e:
            self.close()
            raise RuntimeApiBroken("POST %s: %s" % (path, e)) from None
        if status >= 300:
            log("[ERROR] POST %s answered %d: %s" % (path, status, answer[:200].decode("utf-8", "replace")))
        return status

    def _send_stream(self, path, first, items, request_id):
        head = self._send_head("POST", path, {
            "Lambda-Runtime-Function-Response-Mode": "streaming",
            "Transfer-Encoding": "chunked",
            "Content-Type": "application/octet-stream",
            "Trailer": "%s, %s" % (ERROR_TYPE_HEADER, ERROR_BODY_TRAILER),
        })
        self.sock.sendall(head)
        self._send_chunk(first)
        document = None
        while True:
            try:
                item = next(items)
            except StopIteration:
                break
            except BaseException as e:
                document = error_from_exception(e)
                break
            try:
                data = chunk_bytes(item)
            except Exception as e:
                document = error_document("Runtime.MarshalError",
                                          "Unable to marshal a streamed chunk: %s" % truncate(str(e), 1024), [])
                break
            self._send_chunk(data)
        ending = b"0\r\n"
        if document is not None:
            log_error(document, request_id)
            ending += ("%s: %s\r\n%s: %s\r\n" % (
                ERROR_TYPE_HEADER, header_safe(document["errorType"]), ERROR_BODY_TRAILER,
                binascii.b2a_base64(error_body(document), newline=False).decode("ascii"))).encode("ascii")
        flush_logs()
        self.sock.sendall(ending + b"\r\n")

    def _send_chunk(self, data):
        flush_logs()
        if data:  # an empty chunk would end the body
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))


def is_decimal(text):
    return bool(text) and text.isascii() and text.isdigit()


def invocation_path(request_id, what):
    return "%s/invocation/%s/%s" % (API_PREFIX, path_quote(request_id), what)


UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def path_quote(text):
    """text percent-encoded for one path segment (unreserved bytes kept)."""
    return "".join(chr(b) if b in UNRESERVED else "%%%02X" % b for b in text.encode("utf-8", "surrogatepass"))


def error_body(document):
    return json.dumps(document).encode("utf-8")


def header_safe(value):
    """A header value without control characters (they would split it)."""
    return "".join(c if " " <= c <= "~" else "?" for c in value)[:256] or "Unhandled"


def chunk_bytes(item):
    """The bytes of one streamed item: bytes as they are, str as UTF-8,
    anything else as JSON."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str):
        return item.encode("utf-8", "surrogatepass")
    return to_json(item)


def is_stream(result):
    """A handler result that is streamed: an iterator (a generator, say)
    that is not one of JSON's own types."""
    if isinstance(result, (str, bytes, bytearray, dict, list, tuple)):
        return False
    return hasattr(type(result), "__next__") and hasattr(type(result), "__iter__")


def reseed_after_restore():
    """Runs once, right after the first event arrived, i.e. in a VM restored
    from the function snapshot: state that was random at snapshot time
    would otherwise be the same in every VM restored from it."""
    random.seed(os.urandom(32))
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None and hasattr(tempfile, "_name_sequence"):
        tempfile._name_sequence = None  # rebuilt, from a fresh seed, on next use


def invoke(api, handler, headers, body):
    """Runs the handler on one event and posts its outcome."""
    request_id = headers.get("lambda-runtime-aws-request-id")
    if not request_id:
        raise RuntimeApiBroken("GET /invocation/next answered without Lambda-Runtime-Aws-Request-Id")
    try:
        deadline_ms = int(headers.get("lambda-runtime-deadline-ms", ""))
    except ValueError:
        deadline_ms = int(time.time() * 1000) + 3000
    trace_id = headers.get("lambda-runtime-trace-id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    context = LambdaContext(request_id, deadline_ms,
                            headers.get("lambda-runtime-invoked-function-arn"), headers)

    try:
        event = json.loads(body)
    except Exception as e:  # ValueError, UnicodeDecodeError, RecursionError
        document = error_document("Runtime.UnmarshalError",
                                  "Unable to unmarshal input: %s" % truncate(str(e), 1024), [])
        log_error(document, request_id)
        api.post_error(request_id, document)
        return

    stream = False
    first = b""
    try:
        result = handler(event, context)
        stream = is_stream(result)
        if stream:
            # The first item is taken before the response starts, so an
            # error before any output is an ordinary invocation error.
            for item in result:
                try:
                    first = chunk_bytes(item)
                except Exception as e:
                    post_marshal_error(api, request_id, "a streamed chunk", e)
                    return
                if first:
                    break
    except SystemExit as e:
        document = error_document("Runtime.ExitError",
                                  "RequestId: %s Error: the handler exited (sys.exit(%r))" % (request_id, e.code), [])
        log_error(document, request_id)
        api.post_error(request_id, document)
        sys.exit(e.code if isinstance(e.code, int) else 1)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        document = error_from_exception(e)
        del e
        log_error(document, request_id)
        api.post_error(request_id, document)
        return
    if stream:
        api.post_stream(request_id, first, result)
        return

    try:
        payload = to_json(result)
    except Exception as e:
        post_marshal_error(api, request_id, "the response", e)
        return
    del result
    api.post_response(request_id, payload)


def post_marshal_error(api, request_id, what, exc):
    document = error_document("Runtime.MarshalError",
                              "Unable to marshal %s: %s" % (what, truncate(str(exc), 1024)), [])
    log_error(document, request_id)
    api.post_error(request_id, document)


def main():
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    try:
        api = RuntimeApi(os.environ.get("AWS_LAMBDA_RUNTIME_API", ""))
    except RuntimeApiBroken as e:
        log("bootstrap: %s" % e)
        return 2
    sys.path.insert(0, task_root)
    try:
        os.chdir(task_root)
    except OSError:
        pass

    try:
        try:
            handler = load_handler(os.environ.get("_HANDLER"))
        except InitError as e:
            document = error_document(e.error_type, str(e), e.stack)
            log_error(document)
            api.post_init_error(document)
            return 1
        restored = False
        # Everything alive now is in the snapshot: move it out of the cyclic
        # collector's reach, so an invocation's collections do not walk (and
        # copy-on-write) the whole snapshot heap page by page.
        gc.collect()
        gc.freeze()
        while True:
            headers, body = api.next_invocation()
            if not restored:
                reseed_after_restore()
                restored = True
            invoke(api, handler, headers, body)
            del headers, body
    except RuntimeApiBroken as e:
        log("bootstrap: the Runtime API connection broke: %s" % e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
