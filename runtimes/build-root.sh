#!/usr/bin/env bash
# runtimes/build-root.sh NAME OUTDIR — build a runtime's read-only root layer
# from Debian packages.
#
# Reads the top-level packages from runtimes/NAME/packages (one a line, '#'
# starts a comment), resolves their run-time dependency closure from apt's
# metadata (Depends + Pre-Depends, recursively, at the candidate versions
# apt reports), downloads each .deb once into build/debs/ (the cache, keyed
# by the exact name_version_arch.deb file name and checked against the
# archive's SHA256), extracts them with `dpkg-deb -x` into a fresh temporary
# directory, drops documentation, runs the runtime's post-extract hook (if
# any), writes MANIFEST ("package version", sorted) and finally renames the
# directory to OUTDIR and writes OUTDIR/.complete.
#
# Post-extract hook: if runtimes/NAME/post-extract.sh exists, it is run as
# `bash runtimes/NAME/post-extract.sh TREE` on the temporary tree, after
# extraction and pruning and before the tree is moved into place; it does in
# the tree what a maintainer script would (python3: byte-compile the
# standard library).  It gets SOURCE_DATE_EPOCH (the newest file time from
# the packages); afterwards every time in the tree newer than that is set
# to it, so what the hook creates has the same times in every build.  A
# failing hook fails the build and leaves OUTDIR as it was.
#
# No maintainer script is run and nothing is copied from the host's /usr.
# The same package lists give the same tree: resolution is sorted, versions
# are pinned, extraction order is sorted and directory times are normalised.
# A second run whose resolution, .debs, this script and the post-extract
# hook are unchanged finds OUTDIR/.complete holding the same build id and
# only touches it (FORCE=1 rebuilds anyway).
#
# Environment: EMBER_DEB_CACHE (default <repo>/build/debs), FORCE=1.
set -euo pipefail

die() {
    echo "build-root.sh: error: $*" >&2
    exit 1
}

[[ $# -eq 2 ]] || die "usage: $0 NAME OUTDIR   (e.g. $0 python3 build/rootfs/python3)"

NAME=$1
OUTDIR=$2
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
PKGLIST="$SCRIPT_DIR/$NAME/packages"
CACHE=${EMBER_DEB_CACHE:-$REPO_DIR/build/debs}

[[ "$NAME" =~ ^[A-Za-z0-9._-]+$ ]] || die "bad runtime name '$NAME'"
[[ -f "$PKGLIST" ]] || die "runtime '$NAME' has no package list: $PKGLIST not found"
for tool in python3 apt-cache apt-get dpkg-deb dpkg; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "'$tool' not found; this script needs a Debian host (run scripts/deps.sh)"
done

export PKGLIST CACHE OUTDIR NAME
export SCRIPT_SHA256
SCRIPT_SHA256=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)
export LC_ALL=C

exec python3 - <<'PYTHON'
# The resolver, downloader and extractor (host python3, stdlib only).
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

PKGLIST = os.environ["PKGLIST"]
# Optional per-runtime hook, next to the package list (see the header).
HOOK = os.path.join(os.path.dirname(PKGLIST), "post-extract.sh")
CACHE = os.path.abspath(os.environ["CACHE"])
OUTDIR = os.path.abspath(os.environ["OUTDIR"])
NAME = os.environ["NAME"]
FORCE = os.environ.get("FORCE") == "1"

# Packages needed only by maintainer scripts (postinst & co.), which a root
# layer never runs, or by package management itself.  Nothing in a runtime
# loads them at run time, so a dependency on them is dropped (and logged):
#   debconf, debconf-2.0, cdebconf  asks configuration questions in scripts
#   perl-base                       runs debconf and many scripts
#   dpkg, install-info              package management / info-dir updates
#   init-system-helpers             deb-systemd-helper & co. in scripts
#   adduser, ucf                    create users / manage conffiles in scripts
# A package named in runtimes/NAME/packages itself is always kept: a runtime
# that runs perl, say, lists perl-base (which holds /usr/bin/perl) there.
EXCLUDED = {
    "debconf", "debconf-2.0", "cdebconf",
    "perl-base",
    "dpkg", "install-info",
    "init-system-helpers",
    "adduser", "ucf",
}

# Documentation dropped from the tree (usr/share/locale keeps only C*).
PRUNE_DIRS = ["usr/share/doc", "usr/share/doc-base", "usr/share/man",
              "usr/share/info", "usr/share/lintian"]


def log(msg):
    print(f"build-root.sh[{NAME}]: {msg}", file=sys.stderr, flush=True)


def die(msg):
    print(f"build-root.sh[{NAME}]: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


# ---- Debian version comparison (dpkg's algorithm) --------------------------

def _order(c):
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _verrevcmp(a, b):
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split_version(v):
    epoch = 0
    if ":" in v:
        e, v = v.split(":", 1)
        epoch = int(e)
    if "-" in v:
        up, rev = v.rsplit("-", 1)
    else:
        up, rev = v, "0"
    return epoch, up, rev


def version_compare(a, b):
    ea, ua, ra = _split_version(a)
    eb, ub, rb = _split_version(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


def version_satisfies(have, op, want):
    c = version_compare(have, want)
    return {"<<": c < 0, "<=": c <= 0, "<": c <= 0, "=": c == 0,
            ">=": c >= 0, ">": c >= 0, ">>": c > 0}[op]


# ---- apt metadata ---------------------------------------------------------

def run(cmd, what, **kw):
    try:
        return subprocess.run(cmd, check=True, **kw)
    except FileNotFoundError:
        die(f"{what}: '{cmd[0]}' not found")
    except subprocess.CalledProcessError as e:
        err = (e.stderr or "").strip() if isinstance(e.stderr, str) else ""
        die(f"{what} failed (exit {e.returncode}): {' '.join(cmd)}" + (f"\n{err}" if err else ""))


def load_candidates():
    """One record per package at apt's candidate version (apt-cache dumpavail
    prints exactly the candidates), for the native architecture and 'all'."""
    native = run(["dpkg", "--print-architecture"], "dpkg --print-architecture",
                 capture_output=True, text=True).stdout.strip()
    out = run(["apt-cache", "dumpavail"], "reading apt's package lists (apt-cache dumpavail)",
              capture_output=True, text=True).stdout
    wanted = ("Package", "Version", "Architecture", "Depends", "Pre-Depends",
              "Provides", "Filename", "SHA256")
    pkgs = {}
    for stanza in out.split("\n\n"):
        rec = {}
        key = None
        for line in stanza.split("\n"):
            if not line:
                continue
            if line[0] in " \t":
                if key in rec:
                    rec[key] += " " + line.strip()
                continue
            key, _, val = line.partition(":")
            if key in wanted:
                rec[key] = val.strip()
            else:
                key = None
        if "Package" not in rec or rec.get("Architecture") not in (native, "all"):
            continue
        pkgs[rec["Package"]] = rec
    return pkgs


def ensure_lists():
    """Run apt-get update once (under a lock) if apt has no package lists."""
    lists = "/var/lib/apt/lists"
    if any(f.endswith(("Packages", "Packages.lz4", "Packages.gz", "Packages.xz"))
           for f in os.listdir(lists)):
        return
    if os.geteuid() != 0:
        die("apt has no package lists and we are not root: run 'apt-get update' first")
    log("apt has no package lists: running apt-get update")
    run(["flock", "/var/lib/apt/lists/.ember-update.lock", "apt-get", "update", "-q"],
        "apt-get update")


def parse_relations(field):
    """'a (>= 1) | b, c:any' -> [[('a','>=','1'), ('b',None,None)], [('c',None,None)]]"""
    groups = []
    if not field:
        return groups
    for group in field.split(","):
        alts = []
        for alt in group.split("|"):
            alt = alt.strip()
            if not alt:
                continue
            m = re.match(r"^([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|>=|>>|=|<|>)\s*([^)\s]+)\s*\))?\s*(?:\[.*\])?$", alt)
            if not m:
                die(f"cannot parse dependency '{alt}'")
            alts.append((m.group(1), m.group(2), m.group(3)))
        if alts:
            groups.append(alts)
    return groups


def build_providers(pkgs):
    prov = {}
    for name in sorted(pkgs):
        for group in parse_relations(pkgs[name].get("Provides", "")):
            for vname, op, ver in group:
                prov.setdefault(vname, []).append((name, ver if op == "=" else None))
    return prov


# ---- resolution -----------------------------------------------------------

def read_top_level():
    names = []
    with open(PKGLIST) as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if not re.match(r"^[a-z0-9][a-z0-9+.-]*$", line):
                die(f"{PKGLIST}:{lineno}: '{line}' is not a Debian package name")
            names.append(line)
    if not names:
        die(f"{PKGLIST} lists no package")
    return sorted(set(names))


def resolve(pkgs, prov):
    chosen = {}           # package -> why (for messages)
    excluded = {}         # excluded package -> first dependant
    queue = []

    def candidates_for(name, op, ver):
        """Real packages that satisfy 'name (op ver)', best first."""
        if name in pkgs and (op is None or version_satisfies(pkgs[name]["Version"], op, ver)):
            return [name]
        out = []
        for p, pver in prov.get(name, []):
            if op is None or (pver is not None and version_satisfies(pver, op, ver)):
                out.append(p)
        # Deterministic choice: a provider already in the closure, else by name.
        return sorted(set(out), key=lambda p: (p not in chosen, p))

    def add(name, why):
        if name not in chosen:
            chosen[name] = why
            queue.append(name)

    for top in read_top_level():
        c = candidates_for(top, None, None)
        if not c:
            die(f"package '{top}' (listed in {PKGLIST}) not found in apt's package "
                f"lists; check the name (apt-cache policy {top}) or run apt-get update")
        add(c[0], "listed")

    i = 0
    while i < len(queue):
        name = queue[i]
        i += 1
        rec = pkgs[name]
        for field in ("Pre-Depends", "Depends"):
            for group in parse_relations(rec.get(field, "")):
                if group[0][0] in EXCLUDED and group[0][0] not in chosen:
                    excluded.setdefault(group[0][0], name)
                    continue
                pick = None
                for alt in group:
                    if alt[0] in EXCLUDED and alt[0] not in chosen:
                        excluded.setdefault(alt[0], name)
                        pick = ""
                        break
                    c = candidates_for(*alt)
                    if c:
                        pick = c[0]
                        break
                if pick is None:
                    text = " | ".join(n + (f" ({o} {v})" if o else "") for n, o, v in group)
                    die(f"cannot satisfy {field} '{text}' of {name} {rec['Version']}: "
                        f"no candidate version in apt's lists satisfies it")
                if pick:
                    add(pick, name)
    for ex, by in sorted(excluded.items()):
        log(f"left out {ex} (maintainer scripts only; needed by {by})")
    return sorted(chosen)


# ---- download -------------------------------------------------------------

def deb_filename(rec):
    ver = rec["Version"].replace(":", "%3a")
    return f"{rec['Package']}_{ver}_{rec['Architecture']}.deb"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_debs(closure, pkgs):
    os.makedirs(CACHE, exist_ok=True)
    paths = {}
    missing = []
    for name in closure:
        rec = pkgs[name]
        path = os.path.join(CACHE, deb_filename(rec))
        paths[name] = path
        if os.path.exists(path):
            if rec.get("SHA256") and sha256_file(path) != rec["SHA256"]:
                log(f"cached {os.path.basename(path)} has a wrong SHA256: downloading again")
                os.unlink(path)
                missing.append(name)
        else:
            missing.append(name)
    log(f"{len(closure)} packages, {len(closure) - len(missing)} in cache, "
        f"{len(missing)} to download")
    if not missing:
        return paths
    tmp = tempfile.mkdtemp(prefix=".download-", dir=CACHE)
    try:
        os.chmod(tmp, 0o755)
        cmd = ["apt-get", "download", "-q"]
        if os.geteuid() == 0:
            # apt's _apt sandbox user cannot write into a root-owned build dir.
            cmd += ["-o", "APT::Sandbox::User=root"]
        cmd += [f"{n}={pkgs[n]['Version']}" for n in missing]
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0:
            die("apt-get download failed for: " + " ".join(f"{n}={pkgs[n]['Version']}" for n in missing) +
                "\n" + (r.stderr.strip() or r.stdout.strip()))
        for name in missing:
            rec = pkgs[name]
            got = os.path.join(tmp, deb_filename(rec))
            if not os.path.exists(got):
                die(f"apt-get download of {name}={rec['Version']} did not produce "
                    f"{os.path.basename(got)} (found: {', '.join(sorted(os.listdir(tmp)))})")
            if rec.get("SHA256") and sha256_file(got) != rec["SHA256"]:
                die(f"downloaded {os.path.basename(got)} does not match the archive's SHA256")
            os.rename(got, paths[name])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


# ---- extraction -----------------------------------------------------------

def prune(root):
    for d in PRUNE_DIRS:
        p = os.path.join(root, d)
        if os.path.lexists(p):
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
    loc = os.path.join(root, "usr/share/locale")
    if os.path.isdir(loc):
        for e in sorted(os.listdir(loc)):
            p = os.path.join(loc, e)
            if os.path.isdir(p) and not os.path.islink(p) and not (e == "C" or e.startswith("C.")):
                shutil.rmtree(p)


def newest_file_time(root):
    newest = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for f in filenames:
            newest = max(newest, int(os.lstat(os.path.join(dirpath, f)).st_mtime))
    return newest


def run_hook(root):
    """Run runtimes/NAME/post-extract.sh on the tree, then clamp every time
    it left newer than the packages' newest file time to that time."""
    epoch = newest_file_time(root)
    log(f"running {os.path.relpath(HOOK)}")
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
    r = subprocess.run(["bash", HOOK, root], env=env, stdin=subprocess.DEVNULL,
                       stdout=sys.stderr)
    if r.returncode != 0:
        die(f"{os.path.relpath(HOOK)} failed (exit {r.returncode})")
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if os.lstat(p).st_mtime > epoch:
                os.utime(p, (epoch, epoch), follow_symlinks=False)


def normalise_dir_times(root):
    """Directory mtimes are the time of extraction; set them all to the
    newest file time in the tree so that two builds are identical."""
    newest = 0
    dirs = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirs.append(dirpath)
        for f in filenames:
            newest = max(newest, int(os.lstat(os.path.join(dirpath, f)).st_mtime))
    for d in dirs:
        os.utime(d, (newest, newest), follow_symlinks=False)
    return newest


def build_tree(closure, pkgs, paths, manifest, build_id):
    parent = os.path.dirname(OUTDIR)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(OUTDIR)}.tmp-", dir=parent)
    old = None
    try:
        os.chmod(tmp, 0o755)
        for name in closure:
            r = subprocess.run(["dpkg-deb", "-x", paths[name], tmp],
                               capture_output=True, text=True)
            if r.returncode != 0:
                die(f"dpkg-deb -x {os.path.basename(paths[name])} failed: {r.stderr.strip()}")
        prune(tmp)
        if os.path.exists(HOOK):
            run_hook(tmp)
        newest = normalise_dir_times(tmp)
        with open(os.path.join(tmp, "MANIFEST"), "w") as f:
            f.write(manifest)
        os.utime(os.path.join(tmp, "MANIFEST"), (newest, newest))
        os.utime(tmp, (newest, newest))
        # Swap in: the old tree (if any) loses .complete first, moves aside,
        # then the new one is renamed into place in one step.
        if os.path.lexists(OUTDIR):
            c = os.path.join(OUTDIR, ".complete")
            if os.path.lexists(c):
                os.unlink(c)
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(OUTDIR)}.old-", dir=parent)
            os.rename(OUTDIR, os.path.join(old, "tree"))
        os.rename(tmp, OUTDIR)
        tmp = None
        with open(os.path.join(OUTDIR, ".complete"), "w") as f:
            f.write(build_id + "\n")
        os.utime(OUTDIR, (newest, newest))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        if old:
            shutil.rmtree(old, ignore_errors=True)


def main():
    t0 = time.monotonic()
    ensure_lists()
    pkgs = load_candidates()
    if not pkgs:
        die("apt knows no packages; run apt-get update")
    prov = build_providers(pkgs)
    closure = resolve(pkgs, prov)
    manifest = "".join(f"{n} {pkgs[n]['Version']}\n" for n in closure)
    h = hashlib.sha256()
    h.update(os.environ["SCRIPT_SHA256"].encode())
    # Every file of the runtime's folder (the hook and what it installs,
    # such as a bootstrap) is part of the build id.
    runtime_dir = os.path.dirname(PKGLIST)
    for name in sorted(os.listdir(runtime_dir)):
        path = os.path.join(runtime_dir, name)
        if os.path.isfile(path):
            h.update(f"{name} {sha256_file(path)}\n".encode())
    for n in closure:
        h.update(f"{n} {pkgs[n]['Version']} {pkgs[n]['Architecture']} {pkgs[n].get('SHA256', '')}\n".encode())
    build_id = h.hexdigest()

    stamp = os.path.join(OUTDIR, ".complete")
    if not FORCE and os.path.exists(stamp):
        with open(stamp) as f:
            if f.read().strip() == build_id:
                os.utime(stamp)
                log(f"{OUTDIR} is up to date ({len(closure)} packages)")
                return

    paths = fetch_debs(closure, pkgs)
    build_tree(closure, pkgs, paths, manifest, build_id)
    log(f"built {OUTDIR}: {len(closure)} packages in {time.monotonic() - t0:.1f}s")


main()
PYTHON
