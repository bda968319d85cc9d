#!/usr/bin/env bash
# runtimes/python3/post-extract.sh TREE — byte-compile the python3 root's
# Python modules into __pycache__ inside TREE.
#
# build-root.sh runs this on the freshly extracted tree, before it normalises
# times and moves the tree into place (see "post-extract hook" there).
# Debian makes these .pyc files in python3.11's postinst, which a root layer
# never runs; without them the guest compiles every module it imports on each
# start and cannot cache the result (its root is read-only).
#
# What is compiled: every *.py under usr/lib/pythonX.Y (the standard library,
# its dist-packages included) and usr/lib/python3 (dist-packages of the
# root's other packages), as Debian's postinst does.  A symlinked module
# (sitecustomize.py -> /etc/python3.11/sitecustomize.py) is resolved inside
# TREE, never on the host.  A file under a test/ or tests/ directory that
# does not compile (deliberately broken test data) is skipped; any other
# failure fails the build.  Only plain .pyc files are made, for `python3`
# without -O, which is how the guest runs it.
#
# The compiler is the root's own interpreter, run through the root's own
# dynamic loader and libraries, so the .pyc magic number and the stdlib are
# by construction those of the guest's python (checked below); nothing from
# the host's /usr is used.
#
# The .pyc files:
#   * record the guest path (/usr/lib/python3.11/json/__init__.py) as
#     co_filename, not TREE's host path;
#   * use the "unchecked-hash" invalidation mode (PEP 552): the header holds
#     a hash of the source and python loads the .pyc without looking at the
#     .py at all (no stat of it, no read of it), so it can never decide the
#     cache is stale and try to rewrite it.  That is right for an immutable
#     root built as one unit: a .py only changes when build-root.sh rebuilds
#     the whole tree, and then every .pyc is made again.  (The default
#     "timestamp" mode would depend on the guest seeing exactly the .deb's
#     source mtimes; on any mismatch python recompiles on every start and
#     tries to write __pycache__.  "checked-hash" re-reads and hashes every
#     .py on each import.)  `python3 --check-hash-based-pycs always` makes
#     python check them anyway, for debugging;
#   * are reproducible: the header has no time in it (a timestamp .pyc
#     would hold the source's mtime), modules are compiled one at a time in
#     sorted order in one process, and the hash seed is fixed
#     (PYTHONHASHSEED=0; 3.11's marshal already writes set constants in a
#     sorted order, so this is only a guard).  Their file times are set by
#     build-root.sh (clamped to the newest time from the packages).
set -euo pipefail
umask 022

die() {
    echo "post-extract.sh[python3]: error: $*" >&2
    exit 1
}

[[ $# -eq 1 ]] || die "usage: $0 TREE"
[[ -d "$1" ]] || die "'$1' is not a directory"
TREE=$(cd "$1" && pwd -P)

# The interpreter: usr/bin/python3 -> python3.X in the tree.
PY=$(readlink "$TREE/usr/bin/python3" || true)
[[ "$PY" =~ ^python3\.[0-9]+$ ]] ||
    die "usr/bin/python3 in the tree is not a symlink to python3.X (got '${PY:-nothing}')"
[[ -f "$TREE/usr/bin/$PY" ]] || die "usr/bin/$PY is missing from the tree"
# The dynamic loader: lib64/ld-linux-x86-64.so.2 is an absolute symlink
# (-> /lib/x86_64-linux-gnu/...), which must be followed inside the tree,
# not on the host.
LOADER=$TREE/lib64/ld-linux-x86-64.so.2
for _ in 1 2 3 4 5 6 7 8; do
    [[ -L "$LOADER" ]] || break
    target=$(readlink "$LOADER")
    if [[ "$target" == /* ]]; then
        LOADER=$TREE$target
    else
        LOADER=$(dirname "$LOADER")/$target
    fi
done
[[ -f "$LOADER" && ! -L "$LOADER" ]] ||
    die "the tree has no dynamic loader (lib64/ld-linux-x86-64.so.2 -> $LOADER)"
LIBS=$TREE/lib/x86_64-linux-gnu:$TREE/usr/lib/x86_64-linux-gnu

# env -i: no PYTHONPATH/PYTHONHOME/LD_* from the caller; PYTHONHASHSEED=0
# must survive, so -E/-I (which would drop it) are replaced by -s (no user
# site), -S (no site: sitecustomize would be the host's /etc), -P (no
# script directory on sys.path) and -B (write no .pyc for the modules the
# compiler itself imports: only the loop below writes into TREE).
env -i PATH=/usr/bin:/bin LC_ALL=C PYTHONHASHSEED=0 \
    "$LOADER" --library-path "$LIBS" "$TREE/usr/bin/$PY" -s -S -P -B - \
    "$TREE" "usr/lib/$PY" "usr/lib/python3" <<'PYTHON'
import importlib.util
import os
import py_compile
import sys
import time

tree = sys.argv[1]
dirs = sys.argv[2:]


def log(msg):
    print(f"post-extract.sh[python3]: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    sys.exit(1)


def in_tree(path):
    return path == tree or path.startswith(tree + "/")


# The compiler must be the tree's interpreter on the tree's stdlib, with
# the tree's libraries, and a fixed hash seed.
if not in_tree(sys.prefix) or not in_tree(py_compile.__file__):
    die(f"the interpreter does not use the tree's standard library "
        f"(sys.prefix={sys.prefix}, py_compile={py_compile.__file__})")
if sys.flags.hash_randomization:
    die("hash randomisation is on (PYTHONHASHSEED=0 was lost)")
with open("/proc/self/maps") as f:
    for line in f:
        fields = line.split(None, 5)
        if len(fields) == 6 and ".so" in fields[5] and not in_tree(fields[5].strip()):
            die(f"the interpreter mapped a library from outside the tree: {fields[5].strip()}")


def resolve(guest):
    """Host path of the file the guest reaches at absolute path `guest`,
    following symlinks as if TREE were '/'; None if it does not exist."""
    todo = [p for p in guest.split("/") if p]
    done = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        host = os.path.join(tree, *done, part)
        if os.path.islink(host):
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p] + todo
            continue
        done.append(part)
    host = os.path.join(tree, *done)
    return host if os.path.isfile(host) and not os.path.islink(host) else None


t0 = time.monotonic()
compiled = 0
pyc_bytes = 0
skipped = []
for top in dirs:
    hosttop = os.path.join(tree, top)
    if not os.path.isdir(hosttop) or os.path.islink(hosttop):
        continue
    # os.walk does not descend into symlinked directories.
    for dirpath, dirnames, filenames in os.walk(hosttop):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            hostpath = os.path.join(dirpath, name)
            guest = "/" + os.path.relpath(hostpath, tree)
            source = resolve(guest)
            if source is None:
                skipped.append(f"{guest} (dangling symlink)")
                continue
            cfile = importlib.util.cache_from_source(hostpath)
            try:
                py_compile.compile(
                    source, cfile=cfile, dfile=guest, doraise=True,
                    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            except py_compile.PyCompileError as e:
                parts = guest.split("/")
                if "test" in parts or "tests" in parts:
                    skipped.append(f"{guest} (does not compile: test data)")
                    continue
                die(f"cannot byte-compile {guest}:\n{e.msg}")
            compiled += 1
            pyc_bytes += os.path.getsize(cfile)

for s in skipped:
    log(f"skipped {s}")
log(f"byte-compiled {compiled} modules ({pyc_bytes} bytes of .pyc, "
    f"magic {importlib.util.MAGIC_NUMBER.hex()}, unchecked-hash) "
    f"in {time.monotonic() - t0:.1f}s")
PYTHON

# The dynamic loader's cache: without /etc/ld.so.cache, ld.so probes a dozen
# directories for each library (two failing system calls, each a VM exit,
# per probe).  The host's ldconfig writes it for the tree's own libraries;
# its output is deterministic.
mkdir -p "$TREE/etc"
ldconfig -X -r "$TREE" || die "ldconfig -r $TREE failed"

# The Lambda runtime loop, where Lambda keeps its runtime: /var/runtime.
install -D -m 0644 "$(dirname "$0")/bootstrap.py" "$TREE/var/runtime/bootstrap.py" ||
    die "install bootstrap.py into $TREE/var/runtime"
