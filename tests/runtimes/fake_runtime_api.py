#!/usr/bin/env python3
# Test fixture: a small AWS Lambda Runtime API server, for testing runtimes
# (runtimes/python3/bootstrap.py, runtimes/provided/example) without the
# real host side. It serves a list of events on GET .../invocation/next,
# records every response, error, init error and streamed chunk (with the
# time each chunk arrived), and returns a report. It listens on TCP
# 127.0.0.1 (port 0: the runtime gets AWS_LAMBDA_RUNTIME_API) or on a Unix
# socket (what `ember-vmm --runtime-api PATH` forwards the guest's
# 127.0.0.1:9001 to). It is a test tool only: simple, strict about the
# protocol it checks, and not hardened.
#
# CLI:  fake_runtime_api.py [--unix PATH] [--event JSON]... [--timeout S]
#                           [--env K=V]... -- COMMAND [ARGS...]
# runs COMMAND (with AWS_LAMBDA_RUNTIME_API set in TCP mode), serves the
# events, stops COMMAND once every event has been answered and it asks for
# another, and prints the report as JSON.
import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time

PREFIX = "/2018-06-01/runtime"
HEADER_LIMIT = 64 * 1024
BODY_LIMIT = 64 * 1024 * 1024
OUTPUT_LIMIT = 1 << 20  # bytes of the runtime's stdout/stderr kept in a report


class ProtocolError(Exception):
    pass


class Connection:
    """Buffered reads from one accepted socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError
        self.buffer += data

    def read_line(self, limit=HEADER_LIMIT):
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > limit:
                raise ProtocolError("line too long")
            self.fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def read_exact(self, n):
        while len(self.buffer) < n:
            self.fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data


def read_headers(conn):
    headers = {}
    total = 0
    while True:
        line = conn.read_line()
        total += len(line) + 2
        if total > HEADER_LIMIT:
            raise ProtocolError("headers too long")
        if not line:
            return headers
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name or name != name.strip():
            raise ProtocolError("bad header line %r" % line[:80])
        headers[name.lower()] = value.strip()


class FakeRuntimeApi:
    """Serves `events` (a list of (body bytes, extra headers) pairs) to one
    runtime and records what it sends back. Use start(), then wait()."""

    def __init__(self, events, unix_path=None, deadline_s=30.0):
        self.events = list(events)
        self.deadline_s = deadline_s
        self.lock = threading.Condition()
        self.next_index = 0          # next event to hand out
        self.current = None          # request id awaiting an answer
        self.answered = 0
        self.report = {"requests": [], "results": [], "init_error": None, "protocol_errors": []}
        self.waiting_for_next = False  # a GET /next is held: every event answered
        self.stopping = False
        self.t0 = time.monotonic()
        if unix_path:
            if os.path.exists(unix_path):
                os.unlink(unix_path)
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(unix_path)
            self.address = unix_path
        else:
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.bind(("127.0.0.1", 0))
            self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.listener.listen(8)

    def now(self):
        return round(time.monotonic() - self.t0, 4)

    def start(self):
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def stop(self):
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        try:
            self.listener.close()
        except OSError:
            pass

    def _accept_loop(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock):
        conn = Connection(sock)
        with self.lock:
            self.report.setdefault("connections", 0)
            self.report["connections"] += 1
        try:
            while True:
                if not self._one_request(conn):
                    break
        except (EOFError, ConnectionError):
            pass
        except ProtocolError as e:
            with self.lock:
                self.report["protocol_errors"].append(str(e))
            self._send(sock, 400, {"errorMessage": str(e), "errorType": "InvalidRequest"}, close=True)
        finally:
            sock.close()

    def _send(self, sock, status, document, headers=None, close=False, raw=None):
        body = raw if raw is not None else json.dumps(document).encode()
        reason = {200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden",
                  404: "Not Found", 413: "Payload Too Large", 500: "Internal Server Error"}[status]
        head = "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n" % (status, reason, len(body))
        for name, value in (headers or {}).items():
            head += "%s: %s\r\n" % (name, value)
        if close:
            head += "Connection: close\r\n"
        try:
            sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        except OSError:
            pass

    def _read_body(self, conn, headers, record):
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line = conn.read_line().split(b";")[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise ProtocolError("bad chunk size %r" % size_line[:40])
                if size > BODY_LIMIT:
                    raise ProtocolError("chunk too large")
                if size == 0:
                    break
                data = conn.read_exact(size)
                if conn.read_exact(2) != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                chunks.append({"t": self.now(), "data": data})
            record["trailers"] = read_headers(conn)
            record["chunks"] = chunks
            return b"".join(c["data"] for c in chunks)
        length = headers.get("content-length")
        if length is None:
            return b""
        if not length.isdigit() or int(length) > BODY_LIMIT:
            raise ProtocolError("bad Content-Length %r" % length)
        return conn.read_exact(int(length))

    def _one_request(self, conn):
        line = conn.read_line().decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ProtocolError("bad request line %r" % line[:80])
        method, path, _ = parts
        headers = read_headers(conn)
        record = {"t": self.now(), "method": method, "path": path, "headers": headers}
        body = self._read_body(conn, headers, record)
        record["body"] = body
        with self.lock:
            self.report["requests"].append({"t": record["t"], "method": method, "path": path})
        sock = conn.sock

        if method == "GET" and path == PREFIX + "/invocation/next":
            return self._next(sock)
        if method == "POST" and path == PREFIX + "/init/error":
            with self.lock:
                self.report["init_error"] = self._result(record, "init_error")
                self.lock.notify_all()
            self._send(sock, 202, {"status": "OK"})
            return True
        prefix = PREFIX + "/invocation/"
        if method == "POST" and path.startswith(prefix):
            request_id, _, what = path[len(prefix):].partition("/")
            if what not in ("response", "error"):
                self._send(sock, 404, {"errorMessage": "no such path", "errorType": "NotFound"})
                return True
            with self.lock:
                if request_id != self.current:
                    self.report["protocol_errors"].append("answer for %r, current %r" % (request_id, self.current))
                    self._send(sock, 400, {"errorMessage": "invalid request id", "errorType": "InvalidRequestID"})
                    return True
                self.current = None
                self.answered += 1
                self.report["results"].append(self._result(record, what, request_id))
                self.lock.notify_all()
            self._send(sock, 202, {"status": "OK"})
            return True
        self._send(sock, 404, {"errorMessage": "no such path", "errorType": "NotFound"})
        return True

    def _result(self, record, kind, request_id=None):
        result = {"kind": kind, "request_id": request_id, "t": record["t"],
                  "headers": record["headers"], "body": record["body"]}
        if "chunks" in record:
            result["kind"] = "stream" if kind == "response" else kind
            result["chunks"] = record["chunks"]
            result["trailers"] = record["trailers"]
        return result

    def _next(self, sock):
        with self.lock:
            if self.current is not None:
                self.report["protocol_errors"].append("GET /next before answering %r" % self.current)
            if self.next_index >= len(self.events):
                self.waiting_for_next = True
                self.lock.notify_all()
                while not self.stopping:
                    self.lock.wait()
                return False
            body, extra = self.events[self.next_index]
            self.next_index += 1
            request_id = extra.get("Lambda-Runtime-Aws-Request-Id", "req-%d-%s" % (self.next_index, os.urandom(4).hex()))
            self.current = request_id
        headers = {
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int((time.time() + self.deadline_s) * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:local:000000000000:function:test",
            "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
            "Content-Type": "application/json",
        }
        headers.update(extra)
        self._send(sock, 200, None, headers, raw=body)
        return True

    def wait(self, process=None, timeout=60.0):
        """Waits until every event is answered and the runtime asks for the
        next one, an init error arrives, or `process` exits."""
        end = time.monotonic() + timeout
        with self.lock:
            while True:
                if self.waiting_for_next or self.report["init_error"]:
                    return True
                if process is not None and process.poll() is not None:
                    return False
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(min(left, 0.05))


def run(command, events, env=None, unix_path=None, timeout=60.0, deadline_s=30.0, on_idle=None):
    """Runs `command` against a fresh FakeRuntimeApi serving `events` (JSON
    values, or (bytes, headers) pairs); returns the report. on_idle(report),
    if given, runs once every event is answered and the runtime waits in
    GET /next, before the runtime is stopped (to snapshot it, say)."""
    prepared = []
    for event in events:
        if isinstance(event, tuple):
            prepared.append(event)
        else:
            prepared.append((json.dumps(event).encode(), {}))
    api = FakeRuntimeApi(prepared, unix_path=unix_path, deadline_s=deadline_s)
    api.start()
    child_env = dict(env or {})
    if not unix_path:
        child_env["AWS_LAMBDA_RUNTIME_API"] = api.address
    started = time.monotonic()
    process = subprocess.Popen(command, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    output = {}

    def drain(name, stream):
        # Kept up to OUTPUT_LIMIT bytes; the rest is counted and dropped
        # (a runtime may flood its logs).
        kept, total = [], 0
        while True:
            data = stream.read1(1 << 16)
            if not data:
                break
            if total < OUTPUT_LIMIT:
                kept.append(data[:OUTPUT_LIMIT - total])
            total += len(data)
        output[name] = b"".join(kept)
        output[name + "_bytes"] = total

    readers = [threading.Thread(target=drain, args=(n, s), daemon=True)
               for n, s in (("stdout", process.stdout), ("stderr", process.stderr))]
    for r in readers:
        r.start()
    finished = api.wait(process, timeout)
    timed_out = not finished and process.poll() is None
    if finished and on_idle is not None and api.waiting_for_next:
        on_idle(api.report)
    if process.poll() is None:
        # Everything answered (or the timeout): the runtime is blocked in
        # GET /next; a VM would be destroyed here.
        time.sleep(0.05)
        if api.report["init_error"]:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if process.poll() is None:
            process.kill()
    process.wait()
    for r in readers:
        r.join(5)
    api.stop()
    report = api.report
    report["exit"] = process.returncode
    report["killed"] = process.returncode == -9
    report["timed_out"] = timed_out
    report["seconds"] = round(time.monotonic() - started, 3)
    report["stdout"] = output.get("stdout", b"")
    report["stderr"] = output.get("stderr", b"")
    report["stdout_bytes"] = output.get("stdout_bytes", 0)
    report["stderr_bytes"] = output.get("stderr_bytes", 0)
    return report


def printable(value):
    """The report as JSON: bytes become text (or base64 when not UTF-8)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    return value


def main():
    parser = argparse.ArgumentParser(description="Serve a fake Lambda Runtime API to COMMAND.")
    parser.add_argument("--unix", help="listen on this Unix socket instead of TCP 127.0.0.1:0")
    parser.add_argument("--event", action="append", default=[], help="an event (JSON text); repeatable")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--env", action="append", default=[], help="K=V for COMMAND's environment")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no COMMAND")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    events = [(e.encode(), {}) for e in args.event]
    report = run(command, events, env, args.unix, args.timeout)
    json.dump(printable(report), sys.stdout, indent=1, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
