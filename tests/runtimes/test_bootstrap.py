#!/usr/bin/env python3
# Tests of the python3 runtime's bootstrap (runtimes/python3/bootstrap.py) and
# of the provided example runtime (runtimes/provided/example), against the
# fake Runtime API server (fake_runtime_api.py) and the fixtures in
# fixtures/. Two modes:
#   host  the bootstrap runs as a host python3 process over TCP;
#   vm    it runs inside `ember-vmm run` (python3 root, the fixture and the
#         bootstrap copied into a temporary /var/task), the Runtime API on a
#         Unix socket; includes the hostile fixtures, a function snapshot
#         taken at the first GET /next and two restores from it, and the
#         provided example built with gcc -static.
# Prints one line per test, "PASS name", "FAIL name: why" or "SKIP name: why"
# (the format tests/run-all.sh reads); exits 1 if anything failed.
#
# usage: test_bootstrap.py [--mode host|vm|all] [--only NAME...] [--verbose]
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import fake_runtime_api  # noqa: E402

BOOTSTRAP = os.path.join(REPO, "runtimes", "python3", "bootstrap.py")
FIXTURES = os.path.join(HERE, "fixtures")
PROVIDED_SOURCE = os.path.join(REPO, "runtimes", "provided", "example", "bootstrap.c")
BUILD = os.path.join(REPO, os.environ.get("BUILD", "build"))
VMM = os.path.join(BUILD, "bin", "ember-vmm")
CTL = os.path.join(BUILD, "bin", "ember-ctl")
PYTHON_ROOT = os.path.join(REPO, "build", "rootfs", "python3")  # roots are shared by every build
BASE_ROOT = os.path.join(REPO, "build", "rootfs", "base")
SIX_MB = 6 * 1000 * 1000


class Failure(Exception):
    pass


class Skip(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


class Runner:
    """Runs one fixture in one mode and returns the fake server's report."""

    def __init__(self, mode, workdir, verbose):
        self.mode = mode
        self.workdir = workdir
        self.verbose = verbose
        self.count = 0

    def env(self, handler, task_root, extra):
        env = {
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": task_root,
            "PYTHONUNBUFFERED": "1",
            "AWS_LAMBDA_FUNCTION_NAME": "test-fn",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/test-fn",
            "AWS_LAMBDA_LOG_STREAM_NAME": "ember/test",
        }
        env.update(extra or {})
        return env

    def task_dir(self, fixture, files=None):
        """A fresh task directory: the fixture's files, plus bootstrap.py
        (not yet in the python3 root), plus `files` {name: text}."""
        self.count += 1
        task = os.path.join(self.workdir, "task%d" % self.count)
        if fixture:
            shutil.copytree(os.path.join(FIXTURES, fixture), task)
        else:
            os.makedirs(task)
        for name, text in (files or {}).items():
            with open(os.path.join(task, name), "w") as f:
                f.write(text)
        shutil.copy(BOOTSTRAP, os.path.join(task, "bootstrap.py"))
        return task

    def run(self, fixture, events, handler="lambda_function.handler", env=None, files=None,
            timeout=60.0, mem=128, vm_timeout=None, on_idle=None, control=None, deadline_s=30.0):
        task = self.task_dir(fixture, files)
        if self.mode == "host":
            command = [sys.executable, os.path.join(task, "bootstrap.py")]
            report = fake_runtime_api.run(command, events, self.env(handler, task, env),
                                          timeout=timeout, deadline_s=deadline_s, on_idle=on_idle)
        else:
            sock = os.path.join(self.workdir, "api%d.sock" % self.count)
            command = [VMM, "run", "--mem", str(mem), "--root", PYTHON_ROOT, "--task", task,
                       "--runtime-api", sock]
            if vm_timeout:
                command += ["--timeout", str(vm_timeout)]
            if control:
                command += ["--control-sock", control]
            vm_env = self.env(handler, "/var/task", env)
            vm_env["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:9001"
            for key, value in vm_env.items():
                command += ["--env", "%s=%s" % (key, value)]
            command += ["--", "/usr/bin/python3", "/var/task/bootstrap.py"]
            report = fake_runtime_api.run(command, events, {"PATH": "/usr/bin:/bin"}, unix_path=sock,
                                          timeout=timeout, deadline_s=deadline_s, on_idle=on_idle)
        if self.verbose:
            print(json.dumps(fake_runtime_api.printable(summarise(report)), indent=1, ensure_ascii=False))
        return report


def summarise(report):
    """The report with large fields cut, for --verbose."""
    out = dict(report)
    out["results"] = []
    for r in report["results"]:
        r = dict(r)
        r["body"] = r["body"][:300]
        out["results"].append(r)
    out["stdout"] = report["stdout"][-2000:]
    out["stderr"] = report["stderr"][-2000:]
    return out


def one_result(report, kind):
    check(not report["protocol_errors"], "protocol errors: %s" % report["protocol_errors"])
    check(len(report["results"]) == 1, "expected one result, got %d (exit %s, stderr %r)"
          % (len(report["results"]), report["exit"], report["stderr"][-600:]))
    result = report["results"][0]
    check(result["kind"] == kind, "expected a %s, got a %s: %r" % (kind, result["kind"], result["body"][:300]))
    return result


def json_body(result):
    try:
        return json.loads(result["body"])
    except ValueError as e:
        raise Failure("body is not JSON (%s): %r" % (e, result["body"][:200]))


def expect_init_error(report, error_type, message_part):
    check(report["init_error"] is not None, "no init error (exit %s, stderr %r)"
          % (report["exit"], report["stderr"][-600:]))
    document = json_body(report["init_error"])
    check(document.get("errorType") == error_type, "errorType %r, expected %r" % (document.get("errorType"), error_type))
    check(message_part in document.get("errorMessage", ""), "errorMessage %r lacks %r"
          % (document.get("errorMessage"), message_part))
    check(isinstance(document.get("stackTrace"), list), "stackTrace is not a list")
    check(report["init_error"]["headers"].get("lambda-runtime-function-error-type") == error_type,
          "error type header %r" % report["init_error"]["headers"].get("lambda-runtime-function-error-type"))
    check(report["exit"] == 1, "exit status %s, expected 1" % report["exit"])
    check(error_type.encode() in report["stderr"], "the error is not on stderr: %r" % report["stderr"][-300:])
    check(not report["results"], "results after an init error")
    return document


# ---- the tests: each takes a Runner -----------------------------------------

def test_hello(r):
    report = r.run("hello", [{"name": "world"}], env={"GREETING": "hi there"})
    result = one_result(report, "response")
    document = json_body(result)
    check(document == {"message": "hello world", "request_id": result["request_id"], "remaining_ms": True,
                       "function": "test-fn", "memory": "128", "env": "hi there"}, "got %r" % document)
    check(report.get("connections") == 1, "%s connections, expected one" % report.get("connections"))


def test_raises(r):
    report = r.run("raises", [{}])
    result = one_result(report, "error")
    document = json_body(result)
    check(document["errorType"] == "ValueError", "errorType %r" % document["errorType"])
    check(document["errorMessage"] == "bad input", "errorMessage %r" % document["errorMessage"])
    stack = "".join(document["stackTrace"])
    check("in handler" in stack and "in check" in stack and 'raise ValueError("bad input")' in stack,
          "stackTrace %r" % document["stackTrace"])
    check("bootstrap.py" not in stack, "the runtime's own frames are in the stack trace")
    check(result["headers"].get("lambda-runtime-function-error-type") == "ValueError", "error type header")
    check(b"raises: about to fail" in report["stdout"], "print() output missing from stdout")
    check(b"[ERROR]" in report["stderr"] and b"bad input" in report["stderr"], "error not logged on stderr")


def test_logs_flushed_without_unbuffered(r):
    """print() output reaches stdout before the outcome is posted, even
    without PYTHONUNBUFFERED (the VM may be destroyed right after)."""
    report = r.run("raises", [{}], env={"PYTHONUNBUFFERED": ""})
    one_result(report, "error")
    check(b"raises: about to fail" in report["stdout"], "stdout %r" % report["stdout"])


def test_stream(r):
    report = r.run("stream", [{}])
    result = one_result(report, "stream")
    check(result["headers"].get("lambda-runtime-function-response-mode") == "streaming", "no streaming header")
    chunks = result["chunks"]
    check([c["data"] for c in chunks] == [b"chunk %d\n" % i for i in range(5)],
          "chunks %r" % [c["data"] for c in chunks])
    gaps = [chunks[i + 1]["t"] - chunks[i]["t"] for i in range(4)]
    check(all(0.15 <= g <= 0.5 for g in gaps), "gaps between chunks %r, expected about 0.2 s" % gaps)
    check(not result["trailers"], "trailers on a good stream: %r" % result["trailers"])


def test_stream_error(r):
    report = r.run("stream_error", [{}])
    result = one_result(report, "stream")
    check([c["data"] for c in result["chunks"]] == [b"part 1\n", b"part 2\n"], "chunks %r" % result["chunks"])
    trailers = result["trailers"]
    check(trailers.get("lambda-runtime-function-error-type") == "ValueError", "trailers %r" % trailers)
    document = json.loads(base64.b64decode(trailers.get("lambda-runtime-function-error-body", "")))
    check(document["errorMessage"] == "stream broke" and document["stackTrace"], "error body %r" % document)


def test_stream_odd_items(r):
    code = ("def handler(e, c):\n    if e['case'] == 'empty':\n        return iter([])\n"
            "    if e['case'] == 'bad_first':\n        return iter([{1, 2}])\n"
            "    return (x for x in ['', b'', {'k': [1]}, 7, 'é'])\n")
    report = r.run(None, [{"case": "empty"}, {"case": "bad_first"}, {"case": "mixed"}],
                   files={"lambda_function.py": code})
    kinds = [x["kind"] for x in report["results"]]
    check(kinds == ["stream", "error", "stream"], "kinds %r" % kinds)
    empty, bad, mixed = report["results"]
    check(empty["chunks"] == [] and not empty["trailers"], "empty stream %r" % empty)
    check(json_body(bad)["errorType"] == "Runtime.MarshalError", "bad first item %r" % bad["body"])
    check([c["data"] for c in mixed["chunks"]] == [b'{"k":[1]}', b"7", "é".encode()], "mixed %r" % mixed["chunks"])


def test_syntax_error(r):
    document = expect_init_error(r.run("syntax_error", []), "Runtime.UserCodeSyntaxError", "lambda_function")
    check("line 5" in document["errorMessage"], "no line number in %r" % document["errorMessage"])


def test_missing_handler(r):
    expect_init_error(r.run("missing_handler", []), "Runtime.HandlerNotFound", "Handler 'handler' missing")


def test_import_error(r):
    document = expect_init_error(r.run("import_error", []), "RuntimeError", "boom at import")
    check(any("lambda_function.py" in line for line in document["stackTrace"]), "stack %r" % document["stackTrace"])


def test_missing_module(r):
    expect_init_error(r.run("missing_module", []), "Runtime.ImportModuleError", "ember_no_such_module")


def test_no_such_handler_module(r):
    expect_init_error(r.run("hello", [], handler="nothere.handler"), "Runtime.ImportModuleError", "nothere")


def test_malformed_handler(r):
    expect_init_error(r.run("hello", [], handler="handler"), "Runtime.MalformedHandlerName", "Bad handler")


def test_dotted_handler(r):
    base = r.task_dir(None)
    os.makedirs(os.path.join(base, "pkg", "sub"))
    for d in ("pkg", "pkg/sub"):
        open(os.path.join(base, d, "__init__.py"), "w").close()
    with open(os.path.join(base, "pkg", "sub", "mod.py"), "w") as f:
        f.write("def fn(event, context):\n    return {'dotted': event['x']}\n")
    report = run_in_task(r, base, [{"x": 7}], "pkg.sub.mod.fn")
    check(json_body(one_result(report, "response")) == {"dotted": 7}, "wrong answer")


def run_in_task(r, task, events, handler):
    """Like Runner.run, for a task directory already made."""
    saved = r.task_dir
    r.task_dir = lambda fixture, files=None: task
    try:
        return r.run(None, events, handler=handler)
    finally:
        r.task_dir = saved


def test_unmarshal_then_next(r):
    report = r.run("hello", [(b"{not json", {}), (b'{"name": "again"}', {})])
    check(len(report["results"]) == 2, "results %r" % [x["kind"] for x in report["results"]])
    bad, good = report["results"]
    check(bad["kind"] == "error" and json_body(bad)["errorType"] == "Runtime.UnmarshalError", "first %r" % bad["body"])
    check(good["kind"] == "response" and json_body(good)["message"] == "hello again", "second %r" % good["body"])
    check(report.get("connections") == 1, "%s connections, expected one (keep-alive)" % report.get("connections"))


def test_counter_in_one_process(r):
    report = r.run("counter", [{}, {}, {}])
    counts = [json_body(x)["count"] for x in report["results"]]
    check(counts == [1, 2, 3], "counts %r" % counts)


def test_marshal_error(r):
    report = r.run(None, [{}], files={"lambda_function.py": "def handler(e, c):\n    return {1, 2}\n"})
    document = json_body(one_result(report, "error"))
    check(document["errorType"] == "Runtime.MarshalError", "errorType %r" % document["errorType"])


def test_sys_exit(r):
    report = r.run(None, [{}], files={"lambda_function.py": "import sys\ndef handler(e, c):\n    sys.exit(3)\n"})
    document = json_body(one_result(report, "error"))
    check(document["errorType"] == "Runtime.ExitError", "errorType %r" % document["errorType"])
    check(report["exit"] == 3, "exit status %s" % report["exit"])


def test_unicode_exception_name(r):
    code = "class Ошибка(Exception):\n    pass\ndef handler(e, c):\n    raise Ошибка('сломалось 😀')\n"
    report = r.run(None, [{}], files={"lambda_function.py": code})
    result = one_result(report, "error")
    document = json_body(result)
    check(document["errorType"] == "Ошибка" and document["errorMessage"] == "сломалось 😀", "got %r" % document)
    check(result["headers"].get("lambda-runtime-function-error-type") == "??????", "header %r" % result["headers"])


def test_big_response(r):
    report = r.run("big", [{"size": SIX_MB}], timeout=120)
    result = one_result(report, "response")
    pattern = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    data = (pattern * (SIX_MB // len(pattern) + 1))[:SIX_MB]
    expected = json.dumps({"size": SIX_MB, "data": data}, separators=(",", ":")).encode()
    check(result["body"] == expected, "the 6 MB response differs (%d bytes)" % len(result["body"]))


def test_big_event(r):
    event = json.dumps({"blob": "".join(chr(0x61 + i % 26) for i in range(SIX_MB - 20))},
                       separators=(",", ":")).encode()
    report = r.run("big", [(event, {})], handler="lambda_function.echo", timeout=120)
    result = one_result(report, "response")
    check(result["body"] == event, "the echoed 6 MB event differs (%d of %d bytes)" % (len(result["body"]), len(event)))


def test_unicode(r):
    event = {"text": "héllo wörld — 日本語の文字 😀🚀 👩‍👩‍👧", "nested": ["中文", {"κλειδί": "значение"}],
             "escape": "\u2028\t\"\\"}
    raw = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    report = r.run("unicode", [(raw, {})])
    result = one_result(report, "response")
    check(json_body(result) == event, "the event changed: %r" % result["body"])
    check(result["body"] == raw, "not byte-identical: %r" % result["body"])


def test_close_api_socket(r):
    report = r.run("close_api_socket", [{}], timeout=30)
    check(not report["results"], "a result arrived")
    check(report["exit"] == 2, "exit status %s, expected 2" % report["exit"])
    check(b"Runtime API connection broke" in report["stderr"], "stderr %r" % report["stderr"][-400:])


def test_garbage_api(r):
    report = r.run("garbage_api", [{}], timeout=30)
    check(not report["results"], "a result arrived after garbage: %r" % report["results"])
    check(report["protocol_errors"], "the server saw no garbage")
    check(not report["timed_out"], "timed out")


# VM-only: hostile fixtures that would harm the host, or are about the VM.

def test_reach_redis(r):
    document = json_body(one_result(r.run("reach_redis", [{}]), "response"))
    check(len(document) == 6, "answers %r" % document)
    check(all("CONNECTED" not in v for v in document.values()), "something connected: %r" % document)
    check("Connection refused" in document["tcp 127.0.0.1:6379"], "redis: %r" % document["tcp 127.0.0.1:6379"])
    check("unreachable" in document["tcp 10.1.2.3:80"], "10.1.2.3: %r" % document["tcp 10.1.2.3:80"])


def test_loop_forever(r):
    report = r.run("loop_forever", [{}], vm_timeout=3, timeout=30)
    check(not report["results"], "a result arrived")
    check(report["exit"] == 124, "exit status %s, expected 124 (timeout)" % report["exit"])


def test_memory_hog(r):
    report = r.run("memory_hog", [{}], mem=128, timeout=120)
    result = one_result(report, "error")
    document = json_body(result)
    check(document["errorType"] == "MemoryError", "errorType %r" % document["errorType"])
    check(b"memory_hog: MemoryError after" in report["stdout"], "stdout %r" % report["stdout"][-300:])


def test_stdout_flood(r):
    report = r.run("stdout_flood", [{}], timeout=300)
    result = one_result(report, "response")
    check(json_body(result) == "done", "body %r" % result["body"])
    check(report["stdout_bytes"] >= 1 << 30, "only %d bytes on stdout" % report["stdout_bytes"])


def test_snapshot_restores(r):
    """The function snapshot: taken while the runtime waits for its first
    event; two VMs restored from it both count 1 and differ in random."""
    if not os.path.exists(CTL):
        raise Skip("no %s" % CTL)
    control = os.path.join(r.workdir, "control%d.sock" % (r.count + 1))
    snap = os.path.join(r.workdir, "snap%d" % (r.count + 1))
    ctl_log = []

    def take_snapshot(report):
        for args in (["pause"], ["snapshot", snap], ["quit"]):
            p = subprocess.run([CTL, control] + args, capture_output=True, text=True)
            ctl_log.append((args, p.returncode, p.stdout + p.stderr))
            if p.returncode:
                break

    report = r.run("counter", [], control=control, on_idle=take_snapshot)
    check(ctl_log and all(rc == 0 for _, rc, _ in ctl_log), "ember-ctl: %r" % ctl_log)
    check(report["init_error"] is None and not report["results"], "unexpected answers before the snapshot")
    answers = []
    for i in range(2):
        sock = os.path.join(r.workdir, "restore%d-%d.sock" % (r.count, i))
        started = time.monotonic()
        restored = fake_runtime_api.run([VMM, "restore", snap, "--runtime-api", sock], [{}],
                                        {"PATH": "/usr/bin:/bin"}, unix_path=sock, timeout=30)
        elapsed = time.monotonic() - started
        if r.verbose:
            print(json.dumps(fake_runtime_api.printable(summarise(restored)), indent=1))
        answers.append(json_body(one_result(restored, "response")))
        print("# restore %d: %.0f ms to the answer and exit, %r" % (i, 1000 * elapsed, answers[-1]))
    check([a["count"] for a in answers] == [1, 1], "counts %r" % answers)
    check(answers[0]["random"] != answers[1]["random"], "both restores drew %r" % answers[0]["random"])


def test_provided_example(r):
    """runtimes/provided/example/bootstrap.c, built static, as a tenant's
    `bootstrap` in the base root."""
    if not shutil.which("gcc"):
        raise Skip("no gcc")
    task = os.path.join(r.workdir, "provided")
    os.makedirs(task, exist_ok=True)
    binary = os.path.join(task, "bootstrap")
    p = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", binary, PROVIDED_SOURCE],
                       capture_output=True, text=True)
    check(p.returncode == 0, "gcc: %s" % p.stderr)
    event = {"name": "world", "n": [1, 2.5, None, True], "s": "日本 😀"}
    env = {"AWS_LAMBDA_FUNCTION_NAME": "provided-fn", "_HANDLER": "function.handler"}
    if r.mode == "host":
        env["PATH"] = "/usr/bin:/bin"
        report = fake_runtime_api.run([binary], [event, event], env, timeout=30)
    else:
        sock = os.path.join(r.workdir, "provided.sock")
        command = [VMM, "run", "--root", BASE_ROOT, "--task", task, "--runtime-api", sock,
                   "--env", "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001"]
        for key, value in env.items():
            command += ["--env", "%s=%s" % (key, value)]
        report = fake_runtime_api.run(command + ["--", "/var/task/bootstrap"], [event, event],
                                      {"PATH": "/usr/bin:/bin"}, unix_path=sock, timeout=30)
    if r.verbose:
        print(json.dumps(fake_runtime_api.printable(summarise(report)), indent=1, ensure_ascii=False))
    check(not report["protocol_errors"], "protocol errors %r" % report["protocol_errors"])
    check(len(report["results"]) == 2, "results: %d, stderr %r" % (len(report["results"]), report["stderr"][-400:]))
    for result in report["results"]:
        check(result["kind"] == "response", "kind %s" % result["kind"])
        document = json_body(result)
        check(document == {"echo": event, "request_id": result["request_id"], "function": "provided-fn"},
              "got %r" % document)
    check(report.get("connections") == 1, "%s connections, expected one (keep-alive)" % report.get("connections"))


def test_provided_init_error(r):
    """The provided example reports an init error when it has no
    AWS_LAMBDA_FUNCTION_NAME (its stand-in for a failed set-up)."""
    binary = os.path.join(r.workdir, "provided", "bootstrap")
    if not os.path.exists(binary):
        raise Skip("the provided example was not built")
    env = {"PATH": "/usr/bin:/bin"}
    if r.mode == "host":
        report = fake_runtime_api.run([binary], [], env, timeout=30)
    else:
        sock = os.path.join(r.workdir, "provided-init.sock")
        report = fake_runtime_api.run([VMM, "run", "--root", BASE_ROOT, "--task", os.path.dirname(binary),
                                       "--runtime-api", sock, "--env", "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001",
                                       "--", "/var/task/bootstrap"], [], env, unix_path=sock, timeout=30)
    check(report["init_error"] is not None, "no init error; stderr %r" % report["stderr"][-300:])
    document = json_body(report["init_error"])
    check(document["errorType"] == "Runtime.ConfigInvalid", "document %r" % document)
    check(report["exit"] == 1, "exit %s" % report["exit"])


def raw_exchange(binary, first_answer, timeout=10, command=None, env=None):
    """Runs the provided example (or `command` with `env`) against a bare
    TCP server that answers its
    first GET /next with the bytes first_answer, then answers POSTs with 202
    and holds the next GET. Returns (exit status, stderr, [(request line,
    body)], connections)."""
    import socket
    import threading
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    seen, state = [], {"gets": 0, "connections": 0}
    stop = threading.Event()

    def serve(conn):
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                seen.append((lines[0].decode("latin-1"), body))
                if lines[0].startswith(b"GET"):
                    state["gets"] += 1
                    if state["gets"] > 1:
                        stop.wait(timeout)
                        return
                    conn.sendall(first_answer)
                    if b"Connection: close" in first_answer.split(b"\r\n\r\n")[0]:
                        return
                else:
                    conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
        except OSError:
            pass
        finally:
            conn.close()

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            state["connections"] += 1
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    env = dict(env or {"AWS_LAMBDA_FUNCTION_NAME": "fn"})
    env["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:%d" % listener.getsockname()[1]
    process = subprocess.Popen(command or [binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while process.poll() is None and state["gets"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    if process.poll() is None:
        process.kill()
    _, stderr = process.communicate()
    stop.set()
    listener.close()
    return process.returncode, stderr.decode(errors="replace"), seen, state["connections"]


def test_provided_hostile_answers(r):
    """The provided example against malformed, oversized and odd answers:
    each ends with exit 2 and a message, or is handled as HTTP says."""
    if r.mode != "host":
        raise Skip("host only (the parser is the same in the VM)")
    binary = os.path.join(r.workdir, "provided", "bootstrap")
    if not os.path.exists(binary):
        raise Skip("the provided example was not built")
    ok = b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r1\r\n"
    fatal_cases = {
        "huge Content-Length": ok + b"Content-Length: 99999999999\r\n\r\n",
        "overflowing Content-Length": ok + b"Content-Length: 184467440737095516160\r\n\r\n",
        "two Content-Lengths": ok + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        "long header line": ok + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n",
        "too many headers": ok + b"X: y\r\n" * 1000 + b"\r\n",
        "huge chunk": ok + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        "chunks past the limit": ok + b"Transfer-Encoding: chunked\r\n\r\n" + (b"100000\r\n" + b"x" * 0x100000 + b"\r\n") * 8,
        "bad chunk size": ok + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        "closed mid-body": ok + b"Content-Length: 100\r\nConnection: close\r\n\r\n{",
        "garbage status": b"SMTP 220 hello\r\n\r\n",
        "no request id": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        "error status": b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
        "gzip encoding": ok + b"Transfer-Encoding: gzip\r\n\r\n",
    }
    for name, answer in fatal_cases.items():
        status, stderr, _, _ = raw_exchange(binary, answer)
        check(status == 2 and "bootstrap:" in stderr, "%s: exit %s, stderr %r" % (name, status, stderr[-200:]))

    def posted(answer):
        status, stderr, seen, connections = raw_exchange(binary, answer)
        posts = [(line, body) for line, body in seen if line.startswith("POST")]
        check(len(posts) == 1, "expected one POST, got %r (exit %s, %r)" % (seen, status, stderr[-200:]))
        return posts[0], connections

    (line, body), _ = posted(ok + b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\n{\"a\":\r\n2\r\n1}\r\n0\r\nX-T: 1\r\n\r\n")
    check(line.startswith("POST /2018-06-01/runtime/invocation/r1/response"), "chunked: %s" % line)
    check(json.loads(body) == {"echo": {"a": 1}, "request_id": "r1", "function": "fn"}, "chunked: %r" % body)
    (line, body), connections = posted(ok + b"Content-Length: 2\r\nConnection: close\r\n\r\n[]")
    check(connections == 2 and json.loads(body)["echo"] == [], "Connection: close: %d connections, %r" % (connections, body))
    for event in (b'{"a":1', b'"\xff"', b'"\xed\xa0\x80"', b"[" * 100000 + b"]" * 100000, b"", b"{} {}", b"01"):
        (line, body), _ = posted(ok + b"Content-Length: %d\r\n\r\n" % len(event) + event)
        check(line.endswith("/invocation/r1/error HTTP/1.1") and json.loads(body)["errorType"] == "Runtime.UnmarshalError",
              "event %r: %s %r" % (event[:20], line, body[:100]))
    (line, body), _ = posted(b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: a/b c\"\r\nContent-Length: 2\r\n\r\n{}")
    check(line.startswith("POST /2018-06-01/runtime/invocation/a%2Fb%20c%22/response"), "escaped id: %s" % line)
    check(json.loads(body)["request_id"] == 'a/b c"', "request id in the JSON: %r" % body)


def test_python_odd_answers(r):
    """The python3 bootstrap's HTTP client against odd but valid answers
    (chunked, Connection: close, HTTP/1.0, no framing) and broken ones."""
    if r.mode != "host":
        raise Skip("host only (the client is the same in the VM)")
    task = r.task_dir("unicode")
    command = [sys.executable, os.path.join(task, "bootstrap.py")]
    env = r.env("lambda_function.handler", task, {})
    ok = b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r/1\r\nLambda-Runtime-Deadline-Ms: 99999999999999\r\n"
    good = {
        "chunked": ok + b"Transfer-Encoding: chunked\r\n\r\n5;x=y\r\n{\"a\":\r\n2\r\n1}\r\n0\r\nT: 1\r\n\r\n",
        "Connection: close": ok + b"Content-Length: 7\r\nConnection: close\r\n\r\n{\"a\":1}",
        "HTTP/1.0": ok.replace(b"HTTP/1.1", b"HTTP/1.0") + b"Content-Length: 7\r\n\r\n{\"a\":1}",
        "no framing": ok + b"Connection: close\r\n\r\n{\"a\":1}",
    }
    for name, answer in good.items():
        status, stderr, seen, connections = raw_exchange(None, answer, command=command, env=env)
        posts = [(line, body) for line, body in seen if line.startswith("POST")]
        check(len(posts) == 1 and posts[0][0].startswith("POST /2018-06-01/runtime/invocation/r%2F1/response "),
              "%s: %r (exit %s, %r)" % (name, seen, status, stderr[-300:]))
        check(json.loads(posts[0][1]) == {"a": 1}, "%s: body %r" % (name, posts[0][1]))
    broken = {
        "garbage status": b"SMTP 220 hello\r\n\r\n",
        "error status": b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
        "unicode digits": ok + "Content-Length: \u00b2\r\n\r\n".encode("latin-1"),
        "negative chunk": ok + b"Transfer-Encoding: chunked\r\n\r\n-5\r\n",
        "huge body": ok + b"Content-Length: 99999999999\r\n\r\n",
        "long headers": ok + b"X: " + b"a" * 70000 + b"\r\n\r\n",
        "closed mid-body": ok + b"Content-Length: 100\r\nConnection: close\r\n\r\n{",
    }
    for name, answer in broken.items():
        status, stderr, _, _ = raw_exchange(None, answer, command=command, env=env)
        check(status == 2 and "Runtime API connection broke" in stderr,
              "%s: exit %s, stderr %r" % (name, status, stderr[-300:]))


COMMON = [test_hello, test_raises, test_logs_flushed_without_unbuffered, test_stream, test_stream_error, test_stream_odd_items, test_syntax_error, test_missing_handler,
          test_import_error, test_missing_module, test_no_such_handler_module, test_malformed_handler,
          test_dotted_handler, test_unmarshal_then_next, test_counter_in_one_process, test_marshal_error,
          test_sys_exit, test_unicode_exception_name, test_big_response, test_big_event, test_unicode, test_close_api_socket,
          test_garbage_api, test_provided_example, test_provided_init_error, test_provided_hostile_answers,
          test_python_odd_answers]
VM_ONLY = [test_reach_redis, test_loop_forever, test_memory_hog, test_stdout_flood, test_snapshot_restores]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["host", "vm", "all"], default="all")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    modes = ["host", "vm"] if args.mode == "all" else [args.mode]
    failed = 0
    for mode in modes:
        tests = COMMON + (VM_ONLY if mode == "vm" else [])
        if args.only:
            tests = [t for t in tests if t.__name__[5:] in args.only]
        skip_all = None
        if mode == "vm":
            if not os.path.exists(VMM):
                skip_all = "no %s (make)" % VMM
            elif not os.path.exists(os.path.join(PYTHON_ROOT, "usr", "bin", "python3")):
                skip_all = "no python3 root (make rootfs)"
            elif not os.environ.get("EMBER_PLATFORM"):
                print("FAIL vm: no platform chosen for the microVM tests "
                      "(run through tests/runtimes/suite.sh)", flush=True)
                failed += 1
                continue
        workdir = tempfile.mkdtemp(prefix="ember-bootstrap-")
        try:
            runner = Runner(mode, workdir, args.verbose)
            for test in tests:
                name = "%s/%s" % (mode, test.__name__[5:])
                if skip_all:
                    print("SKIP %s: %s" % (name, skip_all), flush=True)
                    continue
                started = time.monotonic()
                try:
                    test(runner)
                    print("PASS %s (%.1f s)" % (name, time.monotonic() - started), flush=True)
                except Skip as e:
                    print("SKIP %s: %s" % (name, e), flush=True)
                except Failure as e:
                    failed += 1
                    print("FAIL %s: %s" % (name, e), flush=True)
                except Exception:
                    failed += 1
                    print("FAIL %s: %s" % (name, traceback.format_exc().replace("\n", " | ")), flush=True)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
