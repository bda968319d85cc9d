#!/usr/bin/env bash
# Regenerates the seed corpus of fuzz_snap_state (tests/fuzz/corpus/snap_state)
# from real snapshots: it runs three guests under ember-vmm, snapshots each
# through ember-ctl, keeps their state files, and derives hostile variants
# from them with tests/snapshot/snapfile.py.  Run it again whenever the
# state-file format changes (snapshot/snap_state.c), then commit the corpus.
#
# Seeds (real):  counter   counting guest: a layer file, a /tmp file and a
#                          pipe with 64 buffered bytes, all open
#                stdin     stdin_echo blocked in read(2), 8 MiB filled
#                python    Debian's python3 blocked reading stdin
# Seeds (hostile, derived; the CRC fixed unless said):  version-2,
#   bad-crc (not fixed), truncated (not fixed), path-escape, section-past-end,
#   noncanonical-rip, tmp-dotdot, orphan-pipe, clock-end, many-nodes (300
#   /tmp files), unlinked-node, socket (a socket file record).
#
# Usage: tests/fuzz/snap_state_seeds.sh   (needs /dev/kvm, `make`, python3)
# Environment: BUILD (default build).
set -eu

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
VMM=$BUILD/bin/ember-vmm
CTL=$BUILD/bin/ember-ctl
SNAPFILE=$REPO/tests/snapshot/snapfile.py
OUT=$REPO/tests/fuzz/corpus/snap_state
# A fixed place, so that the layer paths inside the seeds stay the same.
W=/tmp/ember-fuzz-seeds
PID=
cleanup() {
	[[ -n $PID ]] && kill -KILL "$PID" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

rm -rf "$W"
mkdir -p "$W/root/bin" "$W/task" "$OUT"
cp "$BUILD/guest/counter" "$BUILD/guest/stdin_echo" "$W/root/bin/"
awk 'BEGIN { for (i = 0; i < 4096; i++) printf "%c", 97 + (i * 7 + int(i / 26)) % 26 }' >"$W/task/counter.data"
printf 'import json, sys\ntable = {i: str(i * i) for i in range(1000)}\nprint("ready", flush=True)\nprint(table[int(sys.stdin.readline())])\n' \
	>"$W/task/answer.py"

# snapshot NAME READY_REGEX ember-vmm-run-args...: runs a guest until its
# output matches, pauses it, snapshots it and keeps its state as seed NAME.
snapshot() {
	local name=$1 ready=$2 i
	shift 2
	mkfifo "$W/$name.in"
	"$VMM" run --timeout 60 --control-sock "$W/$name.sock" "$@" 0<>"$W/$name.in" >"$W/$name.out" 2>&1 &
	PID=$!
	for ((i = 0; i < 500; i++)); do
		grep -qE "$ready" "$W/$name.out" && [[ -S $W/$name.sock ]] && break
		sleep 0.02
	done
	sleep 0.1
	"$CTL" "$W/$name.sock" pause
	"$CTL" "$W/$name.sock" snapshot "$W/$name-snap"
	"$CTL" "$W/$name.sock" quit
	wait "$PID" || true
	PID=
	cp "$W/$name-snap/state" "$OUT/$name"
	python3 "$SNAPFILE" roundtrip "$OUT/$name"
}

snapshot counter '^count 5$' --root "$W/root" --task "$W/task" -- /bin/counter
snapshot stdin '^ready$' --root "$W/root" --mem 64 -- /bin/stdin_echo 8
snapshot python '^ready$' --root "${EMBER_ROOTFS:-$REPO/build/rootfs}/python3" --task "$W/task" -- \
	/usr/bin/python3 /var/task/answer.py

# derive NAME FROM snapfile-arguments...: a hostile variant of seed FROM.
derive() {
	local name=$1 from=$2
	shift 2
	cp "$OUT/$from" "$OUT/$name"
	python3 "$SNAPFILE" "$1" "$OUT/$name" "${@:2}"
}
derive version-2 stdin set-version 2
derive bad-crc stdin flip 200
cp "$OUT/stdin" "$OUT/truncated"
truncate -s 3000 "$OUT/truncated"
derive path-escape counter set-file-path /var/task/counter.data /var/task/../../etc/shadow
derive section-past-end stdin set-section-length process 0x7fffffff
derive noncanonical-rip stdin set-rip 0x0000800000000000
derive tmp-dotdot counter edit \
	's["tmpfs"].append(dict(parent=0, name="..", is_dir=0, mode=0o644, mtime_sec=0, mtime_nsec=0, data=b"x"))'
derive orphan-pipe stdin edit 's["pipes"].append(b"orphan")'
derive clock-end stdin edit 's["clock"]["monotonic_ns"] = 2**63 - 1'
derive many-nodes stdin edit \
	's["tmpfs"] += [dict(parent=0, name="f%d" % i, is_dir=0, mode=0o644, mtime_sec=0, mtime_nsec=0, data=b"") for i in range(300)]'
derive unlinked-node counter edit \
	's["tmpfs"].append(dict(parent=0xffffffff, name="gone", is_dir=0, mode=0o600, mtime_sec=1, mtime_nsec=2, data=b"still open")); s["files"].append(dict(s["files"][4], node=len(s["tmpfs"]) - 1, offset=3)); s["fds"].append(dict(fd=20, file=len(s["files"]) - 1, cloexec=0))'
derive socket stdin edit \
	's["files"].append(dict(s["files"][0], kind=12, socket_domain=2, socket_type=1, socket_connected=1, data=b"GET / HTTP/1.1\r\n\r\n")); s["fds"].append(dict(fd=7, file=len(s["files"]) - 1, cloexec=1))'
ls -l "$OUT"
