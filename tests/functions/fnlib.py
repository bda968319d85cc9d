#!/usr/bin/env python3
# Helpers for tests/functions/suite.sh and bench/functions.sh: bundles
# (ordinary and hostile) made with zipfile/tarfile, events, a streamed
# invocation read with timestamps, a TCP listener that counts connections,
# and JSON checks.  Standard library only.  One subcommand per call:
#
#   bundle zip|targz OUT SRC_DIR [NAME=PATH ...]
#       SRC_DIR's files at the bundle's top (no __pycache__), plus NAME=PATH
#       extra files (their mode kept: an executable stays executable).
#   hostile KIND OUT [ARG]
#       a hostile bundle; KIND is one of HOSTILE below (ARG: a directory
#       outside the task for the kinds that aim at one).
#   event big|unicode|oversize|invalid OUT
#   stream OUT_JSON -- COMMAND...
#       runs COMMAND, reads its stdout as it arrives and writes
#       {"rc", "reads": [[seconds since start, text]...], "elapsed"}.
#   listen PORT COUNT_FILE
#       listens on 127.0.0.1:PORT, prints "ready" (or "busy: why") on
#       stdout once listening, and rewrites COUNT_FILE with the number of
#       connections accepted after each one; runs until killed.
#   jcheck FILE EXPRESSION...
#       loads FILE as JSON into `j` and evaluates each expression (with json,
#       re, hashlib, os, UUID_RE and the raw bytes `raw` in scope); prints why and exits 1 on the first false one.
#   sha256 FILE
import hashlib
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import tarfile
import time
import zipfile

PATTERN = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
HELLO_PY = b"def handler(event, context):\n    return {'hello': True}\n"


def source_files(src):
    files = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            files.append((os.path.relpath(path, src), path))
    return files


def cmd_bundle(fmt, out, src, *extra):
    files = source_files(src) if src != "-" else []
    for item in extra:
        name, _, path = item.partition("=")
        files.append((name, path))
    if fmt == "zip":
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for name, path in files:
                z.write(path, name)
    elif fmt == "targz":
        with tarfile.open(out, "w:gz") as t:
            for name, path in files:
                t.add(path, name)
    else:
        raise SystemExit("bundle: unknown format %s" % fmt)


# ---- hostile bundles ----------------------------------------------------------

def tar_add(t, name, kind=tarfile.REGTYPE, data=b"", linkname="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
    t.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def zip_add(z, name, data, mode=0o644, link=False):
    info = zipfile.ZipInfo(name)  # a ZipInfo keeps the name as given ('/', '..')
    info.create_system = 3  # Unix, so external_attr carries the mode
    info.external_attr = ((stat.S_IFLNK if link else stat.S_IFREG) | mode) << 16
    z.writestr(info, data)


def hostile(kind, out, arg=None):
    """Writes a hostile bundle; every one also holds a harmless
    lambda_function.py so only the hostile entry is to blame."""
    if kind.startswith("zip"):
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            zip_add(z, "lambda_function.py", HELLO_PY)
            if kind == "zip-slip":
                zip_add(z, "../evil", b"zip slip\n")
            elif kind == "zip-slip-deep":
                zip_add(z, "lib/../../../evil", b"zip slip\n")
            elif kind == "zip-absolute":
                zip_add(z, os.path.join(arg, "evil"), b"absolute\n")
            elif kind == "zip-symlink":
                zip_add(z, "passwd", "/etc/passwd", mode=0o777, link=True)
            elif kind == "zip-bomb":
                # 300 MB of zeros, deflated as it is written (about 300 KB).
                info = zipfile.ZipInfo("zeros.bin")
                info.compress_type = zipfile.ZIP_DEFLATED
                block = bytes(1 << 20)
                with z.open(info, "w", force_zip64=True) as f:
                    for _ in range(300):
                        f.write(block)
            else:
                raise SystemExit("hostile: unknown kind %s" % kind)
        return
    if kind in ("corrupt-zip", "corrupt-truncated", "corrupt-garbage", "corrupt-empty"):
        if kind == "corrupt-empty":
            data = b""
        elif kind == "corrupt-garbage":
            data = b"PK\x03\x04" + bytes((i * 131 + 7) & 0xFF for i in range(4096))
        else:
            buf = io.BytesIO()
            if kind == "corrupt-zip":
                with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                    zip_add(z, "lambda_function.py", HELLO_PY * 50)
                data = bytearray(buf.getvalue())
                start = 30 + len("lambda_function.py")  # the deflated data of the first entry
                for i in range(start + 5, start + 25):
                    data[i] ^= 0x5A
                data = bytes(data)
            else:
                with tarfile.open(fileobj=buf, mode="w:gz") as t:
                    tar_add(t, "lambda_function.py", data=HELLO_PY)
                    tar_add(t, "data.bin", data=os.urandom(200000))
                data = buf.getvalue()[: len(buf.getvalue()) // 2]
        with open(out, "wb") as f:
            f.write(data)
        return
    with tarfile.open(out, "w:gz", format=tarfile.PAX_FORMAT) as t:
        tar_add(t, "lambda_function.py", data=HELLO_PY)
        if kind == "tar-symlink-passwd":
            tar_add(t, "passwd", tarfile.SYMTYPE, linkname="/etc/passwd")
        elif kind == "tar-symlink-up":
            tar_add(t, "up", tarfile.SYMTYPE, linkname="../../../../../..")
        elif kind == "tar-symlink-dir-outside":
            # a link to a directory outside, then a file written through it
            tar_add(t, "d", tarfile.SYMTYPE, linkname=arg)
            tar_add(t, "d/pwned", data=b"written through a link\n")
        elif kind == "tar-symlink-dir-relative":
            tar_add(t, "d", tarfile.SYMTYPE, linkname="../" * 6 + arg.lstrip("/"))
            tar_add(t, "d/pwned", data=b"written through a link\n")
        elif kind == "tar-symlink-dir-inside":
            tar_add(t, "sub", tarfile.DIRTYPE, mode=0o755)
            tar_add(t, "d", tarfile.SYMTYPE, linkname="sub")
            tar_add(t, "d/through", data=b"written through a link\n")
        elif kind == "tar-absolute":
            tar_add(t, os.path.join(arg, "evil"), data=b"absolute\n")
        elif kind == "tar-slip":
            tar_add(t, "../evil", data=b"tar slip\n")
        elif kind == "tar-device":
            tar_add(t, "null", tarfile.CHRTYPE, mode=0o666)
        elif kind == "tar-hardlink":
            tar_add(t, "shadow", tarfile.LNKTYPE, linkname="/etc/shadow")
        else:
            raise SystemExit("hostile: unknown kind %s" % kind)


# ---- events -------------------------------------------------------------------

def compact(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


UNICODE_EVENT = {
    "emoji": "👋🌍 🧑🏽‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 🇯🇵",
    "cjk": "你好，世界 こんにちは 안녕하세요 𠜎𠜱𠝹",
    "combining": "e\u0301 n\u0303 a\u030a\u0323 Z\u0351\u0352\u0353 \u0915\u094d\u0937",
    "rtl": "مرحبا שלום",
    "controls": "tab\tnewline\nnul\u0000quote\"backslash\\",
    "keys": {"ключ": "значение", "🔑": ["λ", "∑", "∞"]},
}


def cmd_event(kind, out):
    if kind == "big":  # exactly 6,000,000 bytes of compact JSON
        head, tail = b'{"data":"', b'"}'
        body = (PATTERN * (6000000 // len(PATTERN) + 1))[: 6000000 - len(head) - len(tail)]
        data = head + body.encode() + tail
        assert len(data) == 6000000
    elif kind == "unicode":
        data = compact(UNICODE_EVENT)
    elif kind == "oversize":  # past the 6 MiB (+100 B) limit
        data = b'{"data":"' + b"x" * (6 * 1024 * 1024 + 1024) + b'"}'
    elif kind == "invalid":
        data = b'{"name": "world", oops}'
    else:
        raise SystemExit("event: unknown kind %s" % kind)
    with open(out, "wb") as f:
        f.write(data)


# ---- a streamed invocation ----------------------------------------------------

def cmd_stream(out, *command):
    if command and command[0] == "--":
        command = command[1:]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    reads = []
    fd = process.stdout.fileno()
    while True:
        data = os.read(fd, 65536)
        if not data:
            break
        reads.append([time.monotonic() - started, data.decode("utf-8", "replace")])
    rc = process.wait()
    with open(out, "w") as f:
        json.dump({"rc": rc, "reads": reads, "elapsed": time.monotonic() - started}, f)


# ---- a listener that counts connections ----------------------------------------

def cmd_listen(port, count_file):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", int(port)))
        s.listen(16)
    except OSError as e:
        print("busy: %s" % e, flush=True)
        return
    with open(count_file, "w") as f:
        f.write("0\n")
    print("ready", flush=True)
    count = 0
    while True:
        connection, _ = s.accept()
        count += 1
        with open(count_file, "w") as f:
            f.write("%d\n" % count)
        connection.close()


# ---- checks -------------------------------------------------------------------

def cmd_jcheck(path, *expressions):
    try:
        with open(path, "rb") as f:
            raw = f.read()
        j = json.loads(raw)
    except (OSError, ValueError) as e:
        print("not JSON (%s): %r" % (e, raw[:300] if "raw" in locals() else b""))
        return 1
    scope = {"j": j, "json": json, "re": re, "hashlib": hashlib, "os": os, "UUID_RE": UUID_RE, "raw": raw}
    for expression in expressions:
        try:
            ok = eval(expression, scope)
        except Exception as e:
            ok, why = False, "%s: %s" % (type(e).__name__, e)
        else:
            why = "false"
        if not ok:
            text = json.dumps(j, ensure_ascii=False)
            print("%s (%s) in %s" % (expression, why, text[:400] + ("..." if len(text) > 400 else "")))
            return 1
    return 0


def cmd_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    print(h.hexdigest())


def main(argv):
    if not argv:
        raise SystemExit("usage: fnlib.py bundle|hostile|event|stream|listen|jcheck|sha256 ...")
    command, args = argv[0], argv[1:]
    if command == "bundle":
        cmd_bundle(*args)
    elif command == "hostile":
        hostile(*args)
    elif command == "event":
        cmd_event(*args)
    elif command == "stream":
        cmd_stream(*args)
    elif command == "listen":
        cmd_listen(*args)
    elif command == "jcheck":
        return cmd_jcheck(*args)
    elif command == "sha256":
        cmd_sha256(*args)
    else:
        raise SystemExit("fnlib.py: unknown command %s" % command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
