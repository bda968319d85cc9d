#!/usr/bin/env bash
# ember-suite: microvms
# The snapshot suite (issue 3): real KVM microVMs paused, snapshotted and
# restored with ember-vmm and ember-ctl.  It covers
#   - a counting guest (tests/guest/counter.c) that continues from its count
#     after a restore, its open files at their offsets, its pipe's bytes kept;
#   - a guest blocked reading stdin (tests/guest/stdin_echo.c) that reads,
#     once restored, the line given to the restored VM;
#   - Debian's python3 with a large dict, answering at once after a restore;
#   - 50 VMs restored at once from one snapshot: each answers, /tmp is each
#     one's own, and host memory grows by the pages each one dirties (asserted
#     on `ember-ctl stats` and /proc/PID/smaps), not by guest memory size;
#   - freshness (getrandom, /dev/urandom, the wall clock) after a restore;
#   - restores from a read-only copy and a read-only bind mount, --paused then
#     resume, a snapshot of a restored VM, and the snapshot directory left
#     byte-identical by every restore;
#   - the control protocol's states: what is "not allowed" when, and stats;
#   - hostile snapshots, each refused with a clear message and a non-zero
#     exit before any guest code runs, never a crash (the state files are
#     edited with tests/snapshot/snapfile.py, which fixes up their CRCs).
#
# Prints one line per test: "PASS name", "FAIL name: why" (details follow,
# indented) or "SKIP name: why".  Exits 1 if anything failed.
# Environment: BUILD (default build; build/sanitize for SANITIZE=1 builds:
# every stderr is then also checked for sanitizer reports), EMBER_ROOTFS
# (default build/rootfs), MANY_VMS (default 50), EMBER_SUITE_KEEP=1 (keep
# the temporary files).  Every VMM it starts is killed on exit; a read-only
# bind mount it makes (when run as root) is unmounted.
set -u

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
ROOTFS=${EMBER_ROOTFS:-$REPO/build/rootfs}
VMM=$BUILD/bin/ember-vmm
CTL=$BUILD/bin/ember-ctl
[[ -x $CTL ]] || CTL=$REPO/build/bin/ember-ctl # the client is not what a sanitizer build tests
SNAPFILE=$REPO/tests/snapshot/snapfile.py
MANY_VMS=${MANY_VMS:-50}

failures=0
pass() { echo "PASS $1"; }
fail() {
	echo "FAIL $1: $2"
	failures=$((failures + 1))
	local file
	for file in "${@:3}"; do
		[[ -s $file ]] && head -n 12 "$file" | sed 's/^/    /'
	done
	return 0
}
skip() { echo "SKIP $1: $2"; }
note() { echo "    $*"; }

T=$(mktemp -d /tmp/ember-snapshot-suite.XXXXXX)
PIDS=()
MOUNTS=()
cleanup() {
	local pid mount
	for pid in "${PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null
	done
	for mount in "${MOUNTS[@]}"; do
		umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null
	done
	chmod -R u+w "$T" 2>/dev/null
	if [[ -n ${EMBER_SUITE_KEEP:-} ]]; then
		echo "# kept the suite's files in $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- prerequisites -----------------------------------------------------------------
# shellcheck source=../lib/platform.sh
source "$REPO/tests/lib/platform.sh"
platform_require snapshot "$VMM" || exit 1
if [[ ! -x $VMM || ! -x $CTL ]]; then
	fail snapshot "not built: $VMM or $CTL missing (run make)"
	exit 1
fi
HAVE_PYTHON=1
command -v python3 >/dev/null || HAVE_PYTHON=0
ASAN=0
if grep -qaE '__asan_init|AddressSanitizer' "$VMM"; then
	ASAN=1
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:exitcode=99}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=98}
fi
SANITIZER_PATTERN='AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:'

# The guests: static programs, the same in every build.
GROOT=$T/root
GTASK=$T/task
mkdir -p "$GROOT/bin" "$GROOT/tmp" "$GTASK"
for g in counter stdin_echo; do
	for dir in "$BUILD/guest" "$REPO/build/guest"; do
		if [[ -x $dir/$g ]]; then
			cp "$dir/$g" "$GROOT/bin/$g"
			break
		fi
	done
done
# counter.data: byte i is 'a' + (i * 7 + i / 26) % 26, as counter.c reads it.
awk 'BEGIN { for (i = 0; i < 65536; i++) printf "%c", 97 + (i * 7 + int(i / 26)) % 26 }' \
	>"$GTASK/counter.data"

# ---- helpers ---------------------------------------------------------------------------
# now_ms: the host's monotonic-ish wall time in milliseconds.
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# start_vm TAG ARGS...: starts `ember-vmm ARGS` in the background with stdin
# from the FIFO $T/TAG.in (opened read-write, so the VM never sees an end of
# input and a writer never blocks), stdout $T/TAG.out, stderr $T/TAG.err.
# Sets VM_PID; every VM started is killed by cleanup at the latest.
start_vm() {
	local tag=$1
	shift
	rm -f "$T/$tag.in"
	mkfifo "$T/$tag.in"
	"$VMM" "$@" 0<>"$T/$tag.in" >"$T/$tag.out" 2>"$T/$tag.err" &
	VM_PID=$!
	PIDS+=("$VM_PID")
}

# send TAG LINE: gives one line to the VM's stdin.
send() { printf '%s\n' "$2" 1<>"$T/$1.in"; }

# wait_line FILE REGEX [SECONDS]: waits (default 10 s) until FILE has a line
# matching REGEX.
wait_line() {
	local file=$1 regex=$2 limit=$((${3:-10} * 50)) i
	for ((i = 0; i < limit; i++)); do
		grep -qE -- "$regex" "$file" 2>/dev/null && return 0
		sleep 0.02
	done
	return 1
}

# wait_socket SOCK [SECONDS]: waits until the control socket answers stats.
wait_socket() {
	local limit=$((${2:-10} * 50)) i
	for ((i = 0; i < limit; i++)); do
		[[ -S $1 ]] && "$CTL" --timeout 2 "$1" stats >/dev/null 2>&1 && return 0
		sleep 0.02
	done
	return 1
}

# wait_exit PID [SECONDS]: waits for a background VM; sets EXIT_STATUS
# (the VM is killed and EXIT_STATUS is "hung" when it does not end).
wait_exit() {
	local pid=$1 limit=$((${2:-10} * 50)) i
	for ((i = 0; i < limit; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		EXIT_STATUS=hung
		return 1
	fi
	wait "$pid"
	EXIT_STATUS=$?
	return 0
}

# ctl SOCK ARGS...: runs ember-ctl; CTL_STATUS, stdout $T/ctl.out, stderr $T/ctl.err.
ctl() {
	timeout -k 5 40 "$CTL" "$@" >"$T/ctl.out" 2>"$T/ctl.err" </dev/null
	CTL_STATUS=$?
}

# json_field FILE KEY: a value from ember-ctl's flat stats object.
json_field() {
	sed -n "s/.*\"$2\": *\"\{0,1\}\([^,\"}]*\).*/\1/p" "$1"
}

# sanitizer_report FILE: true when FILE holds a sanitizer report.
sanitizer_report() { grep -qE "$SANITIZER_PATTERN" "$1" 2>/dev/null; }

# restore_fg TAG DIR INPUT [ARGS...]: `ember-vmm restore DIR ARGS` in the
# foreground with INPUT on stdin, killed after 60 s; STATUS, $T/TAG.out,
# $T/TAG.err, WALL_MS.
restore_fg() {
	local tag=$1 dir=$2 input=$3 start
	shift 3
	start=$(now_ms)
	printf '%s' "$input" | timeout -k 5 60 "$VMM" restore "$dir" "$@" >"$T/$tag.out" 2>"$T/$tag.err"
	STATUS=$?
	WALL_MS=$(($(now_ms) - start))
}

# guest_mapping PID MEM_BYTES: "ANONYMOUS_KB PRIVATE_DIRTY_KB RSS_KB" of the
# mapping of guest memory in the process that holds it (guest_memory_pid):
# the sum over every mapping of the snapshot's memory file when there is one
# (the systrap stub maps it below the system pages, and the guest's
# mprotect calls split it), else the anonymous mapping whose size is guest
# memory (AddressSanitizer makes others of any size).
guest_mapping() {
	awk -v want=$(($2 / 1024)) '
		/^[0-9a-f]+-[0-9a-f]+ / { memory_file = ($NF ~ /\/memory$/); sized = 0; next }
		/^Size:/ { sized = ($2 == want); next }
		/^Rss:/ { rss[memory_file] += $2; if (sized && !have_sized) sized_rss = $2 }
		/^Private_Dirty:/ { dirty[memory_file] += $2; if (sized && !have_sized) sized_dirty = $2 }
		/^Anonymous:/ {
			anon[memory_file] += $2; seen[memory_file] = 1
			if (sized && !have_sized) { sized_anon = $2; have_sized = 1 }
		}
		END {
			if (seen[1]) print anon[1] + 0, dirty[1] + 0, rss[1] + 0
			else if (have_sized) print sized_anon + 0, sized_dirty + 0, sized_rss + 0
		}' "/proc/$(guest_memory_pid "$1")/smaps" 2>/dev/null
}

# fingerprint DIR: names, sizes, modes, mtimes and SHA-256 of every file.
fingerprint() {
	(cd "$1" && find . -printf '%p %y %s %m %T@\n' | sort && find . -type f -print0 | sort -z |
		xargs -0 sha256sum)
}

guest_ready() { # TEST PROGRAM: the guest was built, or TEST fails saying so
	if [[ ! -x $GROOT/bin/$2 ]]; then
		fail "$1" "guest program not built: tests/guest/$2.c (make guests)"
		return 1
	fi
}

# ---- the control protocol, and the counter's snapshot ---------------------------------
# A counting guest: its state moves every 10 ms, so every transition is
# exercised against a VM that really runs.
CSNAP=$T/counter-snap
COUNT_AT_SNAPSHOT=
if guest_ready control/states counter; then
	SOCK=$T/counter.sock
	start_vm counter run --root "$GROOT" --task "$GTASK" --timeout 120 --control-sock "$SOCK" -- /bin/counter
	COUNTER_PID=$VM_PID
	if ! wait_socket "$SOCK" || ! wait_line "$T/counter.out" '^count 9$'; then
		fail control/states "the counter did not start, or its control socket did not answer" \
			"$T/counter.err" "$T/counter.out"
	else
		# expect_ctl NAME STATUS [STDERR_TEXT] -- ARGS: one ember-ctl call.
		expect_ctl() {
			local name=$1 want=$2 text=$3
			shift 4
			ctl "$SOCK" "$@"
			if [[ $CTL_STATUS != "$want" ]]; then
				fail "$name" "ember-ctl $* exited $CTL_STATUS, want $want" "$T/ctl.err" "$T/ctl.out"
			elif [[ -n $text ]] && ! grep -qF -- "$text" "$T/ctl.err"; then
				fail "$name" "ember-ctl $*: stderr lacks \`$text\`" "$T/ctl.err"
			else
				pass "$name"
				return 0
			fi
			return 1
		}
		# expect_state NAME STATE: stats answers, as JSON, in that state.
		expect_state() {
			ctl "$SOCK" stats
			if [[ $CTL_STATUS != 0 ]]; then
				fail "$1" "stats exited $CTL_STATUS" "$T/ctl.err"
			elif [[ $(json_field "$T/ctl.out" state) != "$2" ]]; then
				fail "$1" "stats says state \"$(json_field "$T/ctl.out" state)\", want \"$2\"" "$T/ctl.out"
			elif [[ $(json_field "$T/ctl.out" guest_memory_bytes) != $((128 << 20)) ]]; then
				fail "$1" "guest_memory_bytes is not 128 MiB" "$T/ctl.out"
			elif (($(json_field "$T/ctl.out" syscalls) < 10)); then
				fail "$1" "fewer than 10 system calls counted" "$T/ctl.out"
			else
				pass "$1"
			fi
		}
		expect_state control/stats-running running
		expect_ctl control/snapshot-while-running-not-allowed 3 "not allowed" -- snapshot "$T/never"
		if [[ -e $T/never ]]; then
			fail control/snapshot-while-running-writes-nothing "$T/never was created"
		else
			pass control/snapshot-while-running-writes-nothing
		fi
		expect_ctl control/resume-while-running-not-allowed 3 "not allowed" -- resume
		expect_ctl control/pause 0 "" -- pause
		lines_at_pause=$(wc -l <"$T/counter.out")
		COUNT_AT_SNAPSHOT=$(tail -n 1 "$T/counter.out" | sed -n 's/^count \([0-9]*\)$/\1/p')
		expect_ctl control/pause-twice-not-allowed 3 "not allowed" -- pause
		expect_state control/stats-paused paused
		sleep 0.2
		if [[ $(wc -l <"$T/counter.out") != "$lines_at_pause" ]]; then
			fail control/paused-guest-is-still "the guest printed while paused"
		else
			pass control/paused-guest-is-still
		fi
		expect_ctl control/snapshot-while-paused 0 "" -- snapshot "$CSNAP" || COUNT_AT_SNAPSHOT=
		expect_ctl control/snapshot-over-existing-refused 4 "already exists" -- snapshot "$CSNAP"
		expect_ctl control/resume 0 "" -- resume
		expect_state control/stats-running-again running
		if wait_line "$T/counter.out" "^count $((COUNT_AT_SNAPSHOT + 5))\$" 5; then
			pass control/resumed-guest-continues
		else
			fail control/resumed-guest-continues "no count $((COUNT_AT_SNAPSHOT + 5)) after resume" \
				"$T/counter.err"
		fi
		expect_ctl control/quit-while-running 0 "" -- quit
		if ! wait_exit "$COUNTER_PID" 10; then
			fail control/quit-ends-the-vmm "ember-vmm still ran 10 s after quit; killed"
		elif [[ $EXIT_STATUS != 0 ]]; then
			fail control/quit-ends-the-vmm "ember-vmm exited $EXIT_STATUS after quit, want 0" "$T/counter.err"
		elif [[ -e $SOCK ]]; then
			fail control/quit-ends-the-vmm "the control socket $SOCK was left behind"
		elif sanitizer_report "$T/counter.err"; then
			fail control/quit-ends-the-vmm "sanitizer report" "$T/counter.err"
		else
			pass control/quit-ends-the-vmm
		fi
		if grep -q 'BAD' "$T/counter.out"; then
			fail control/counter-checks-before-snapshot "the counter failed its own checks before any snapshot" \
				"$T/counter.out"
		else
			pass control/counter-checks-before-snapshot
		fi
	fi
fi

# quit is answered before the VMM exits, every time: twenty VMs, each quit
# while its guest runs.
if [[ -x $GROOT/bin/counter ]]; then
	lost=0
	for ((try = 0; try < 20; try++)); do
		SOCK=$T/quit$try.sock
		start_vm "quit$try" run --root "$GROOT" --task "$GTASK" --timeout 60 --control-sock "$SOCK" -- /bin/counter
		if wait_socket "$SOCK" && wait_line "$T/quit$try.out" '^count 2$'; then
			ctl "$SOCK" quit
			if [[ $CTL_STATUS != 0 ]]; then
				lost=$((lost + 1))
				cp "$T/ctl.err" "$T/quit-lost.err"
			fi
		fi
		wait_exit "$VM_PID" 10
	done
	if ((lost)); then
		fail control/quit-always-answers "$lost of 20 quits got no answer: the VMM exited before its control thread answered" \
			"$T/quit-lost.err"
	else
		pass control/quit-always-answers
	fi
fi

# Stats of a freshly started VM count the guest pages written since start:
# stdin_echo 8 has filled 8 MiB (2048 pages) before it says "ready".
if guest_ready control/stats-dirty-pages-fresh-run stdin_echo; then
	SOCK=$T/fresh.sock
	start_vm fresh run --root "$GROOT" --mem 256 --timeout 60 --control-sock "$SOCK" -- /bin/stdin_echo 8
	if wait_line "$T/fresh.out" '^ready$' && wait_socket "$SOCK"; then
		ctl "$SOCK" stats
		dirty=$(json_field "$T/ctl.out" dirty_pages)
		if [[ $CTL_STATUS != 0 ]]; then
			fail control/stats-dirty-pages-fresh-run "stats exited $CTL_STATUS" "$T/ctl.err"
		elif ((${dirty:-0} < 2048)); then
			fail control/stats-dirty-pages-fresh-run "dirty_pages is ${dirty:-?} after the guest wrote 8 MiB (2048 pages) since start (a fresh VM's guest-memory mapping may be split into several VMAs; stats must count them all)" "$T/ctl.out"
		else
			pass control/stats-dirty-pages-fresh-run
		fi
		ctl "$SOCK" quit
		wait_exit "$VM_PID" 10
	else
		fail control/stats-dirty-pages-fresh-run "stdin_echo did not start" "$T/fresh.err"
		kill -KILL "$VM_PID" 2>/dev/null
	fi
fi

# ---- counter: continues from its count, files and pipe intact ---------------------------
if [[ -n $COUNT_AT_SNAPSHOT && -f $CSNAP/state ]]; then
	if [[ $HAVE_PYTHON == 1 ]]; then
		python3 "$SNAPFILE" dump "$CSNAP/state" >"$T/counter-state.json" 2>"$T/snapfile.err"
		if python3 - "$T/counter-state.json" "$COUNT_AT_SNAPSHOT" >"$T/check.err" 2>&1 <<'EOF'; then
import json, sys
state = json.load(open(sys.argv[1]))
count = int(sys.argv[2])
files = {f["path"]: f for f in state["files"]}
data = files.get("/var/task/counter.data")
log = files.get("/tmp/counter.log")
problems = []
# The pause lands between two system calls, usually in the 10 ms sleep
# after "count N" (data at N+1, log at 8(N+1), 64 bytes piped), but it may
# also land in the next round, after its read (data at N+2), its log
# write (log at 8(N+2)) or its pipe write (65 bytes piped).
steady = (count + 1, 8 * (count + 1), 64)
next_round = [(count + 2, 8 * (count + 1), 64), (count + 2, 8 * (count + 2), 64),
              (count + 2, 8 * (count + 2), 65)]
pipes = state["pipes"]
piped = int(pipes[0].strip("<>").split()[0]) if len(pipes) == 1 else None
seen = (data and data["offset"], log and log["offset"], piped)
if seen != steady and seen not in next_round:
    problems.append("data offset, log offset, bytes piped %r (pipes %r), want %r or, paused mid-round, one of %r"
                    % (seen, pipes, steady, next_round))
if problems:
    sys.exit("; ".join(problems))
EOF
			pass counter/state-file-records-offsets-and-pipe
		else
			fail counter/state-file-records-offsets-and-pipe "the saved state disagrees with count $COUNT_AT_SNAPSHOT" \
				"$T/check.err" "$T/snapfile.err"
		fi
	fi

	SOCK=$T/counter-restored.sock
	start_vm counter-restored restore "$CSNAP" --timeout 60 --control-sock "$SOCK"
	next=$((COUNT_AT_SNAPSHOT + 1))
	if wait_line "$T/counter-restored.out" "^count $((next + 20))\$" 10; then
		first=$(head -n 1 "$T/counter-restored.out")
		if [[ $first == "count $next" ]]; then
			pass counter/continues-from-its-count
		else
			fail counter/continues-from-its-count "first line after restore is \`$first\`, want \`count $next\`" \
				"$T/counter-restored.out"
		fi
		if grep -qE 'BAD: (data|log)' "$T/counter-restored.out"; then
			fail counter/open-files-keep-offsets "the restored guest found a wrong offset" "$T/counter-restored.out"
		else
			pass counter/open-files-keep-offsets
		fi
		if grep -q 'BAD: pipe' "$T/counter-restored.out"; then
			fail counter/pipe-bytes-survive "the restored guest read wrong bytes from its pipe" \
				"$T/counter-restored.out"
		else
			pass counter/pipe-bytes-survive
		fi
		if grep -vqE '^count [0-9]+$' "$T/counter-restored.out"; then
			fail counter/clean-output "unexpected lines after restore" "$T/counter-restored.out"
		else
			pass counter/clean-output
		fi
	else
		fail counter/continues-from-its-count "the restored counter did not print 20 lines in 10 s" \
			"$T/counter-restored.err" "$T/counter-restored.out"
	fi
	ctl "$SOCK" quit
	if ! wait_exit "$VM_PID" 10 || [[ $EXIT_STATUS != 0 ]]; then
		fail counter/restored-quits "ember-vmm restore ended with ${EXIT_STATUS} after quit" "$T/counter-restored.err"
	elif sanitizer_report "$T/counter-restored.err" || [[ -s $T/counter-restored.err ]]; then
		fail counter/restored-quits "stderr not empty" "$T/counter-restored.err"
	else
		pass counter/restored-quits
	fi
elif [[ -x $GROOT/bin/counter ]]; then
	fail counter/continues-from-its-count "no counter snapshot was taken (see control/*)"
fi

# ---- a guest blocked reading stdin ---------------------------------------------------------
# The snapshot (256 MiB of guest memory, 8 MiB of it filled) also serves the
# freshness, read-only, many-VM and hostile-snapshot tests below.
SSNAP=$T/stdin-snap
SSNAP_TAKEN_MS=
if guest_ready stdin/snapshot-while-blocked stdin_echo; then
	SOCK=$T/stdin.sock
	start_vm stdin run --root "$GROOT" --mem 256 --timeout 60 --control-sock "$SOCK" -- /bin/stdin_echo 8
	if wait_line "$T/stdin.out" '^ready$' && wait_socket "$SOCK"; then
		sleep 0.1 # inside read(2) by now
		ctl "$SOCK" pause && ctl "$SOCK" snapshot "$SSNAP"
		if [[ $CTL_STATUS == 0 && -f $SSNAP/state ]]; then
			SSNAP_TAKEN_MS=$(now_ms)
			pass stdin/snapshot-while-blocked
		else
			fail stdin/snapshot-while-blocked "pause or snapshot failed (ember-ctl $CTL_STATUS)" "$T/ctl.err"
		fi
		# The original, resumed, still answers: the pause restarted its read.
		ctl "$SOCK" resume
		send stdin "echo original"
		if wait_line "$T/stdin.out" '^echo: original$' 5; then
			pass stdin/original-resumes-its-read
		else
			fail stdin/original-resumes-its-read "no answer after resume" "$T/stdin.out" "$T/stdin.err"
		fi
		send stdin "exit 0"
		wait_exit "$VM_PID" 10
	else
		fail stdin/snapshot-while-blocked "stdin_echo did not start" "$T/stdin.err"
		kill -KILL "$VM_PID" 2>/dev/null
	fi
fi
SSNAP_FINGERPRINT=
[[ -n $SSNAP_TAKEN_MS ]] && SSNAP_FINGERPRINT=$(fingerprint "$SSNAP")

if [[ -n $SSNAP_TAKEN_MS ]]; then
	restore_fg stdin-restored "$SSNAP" $'echo after restore\n'
	if ((STATUS != 0)); then
		fail stdin/restored-reads-new-line "exit status $STATUS" "$T/stdin-restored.err"
	elif [[ $(cat "$T/stdin-restored.out") != $'echo: after restore\neof' ]]; then
		fail stdin/restored-reads-new-line "want \`echo: after restore\` then \`eof\` (and no \`ready\`)" \
			"$T/stdin-restored.out"
	elif [[ -s $T/stdin-restored.err ]]; then
		fail stdin/restored-reads-new-line "stderr not empty" "$T/stdin-restored.err"
	else
		pass stdin/restored-reads-new-line
	fi

	allocated_kb=$(du -k "$SSNAP/memory" | cut -f1)
	if ((allocated_kb > 64 * 1024)); then
		fail snapshot/memory-file-is-sparse "the 256 MiB memory file occupies $allocated_kb KiB for ~9 MiB of data"
	else
		pass snapshot/memory-file-is-sparse
		note "memory file: 256 MiB, $allocated_kb KiB allocated"
	fi
	if [[ $(stat -c %a "$SSNAP") != 755 || $(stat -c %a "$SSNAP/state") != 644 ]]; then
		fail snapshot/readable-by-pool "mode $(stat -c %a "$SSNAP") / $(stat -c %a "$SSNAP/state")"
	else
		pass snapshot/readable-by-pool
	fi
	if compgen -G "$SSNAP.tmp-*" >/dev/null || compgen -G "$CSNAP.tmp-*" >/dev/null; then
		fail snapshot/no-temporary-left "a temporary directory was left beside the snapshot"
	else
		pass snapshot/no-temporary-left
	fi
fi

# ---- the format helper agrees with the format -------------------------------------------------
if [[ $HAVE_PYTHON == 0 ]]; then
	skip snapfile/mirrors-the-format "python3 is not installed"
else
	bad=
	for snap in "$CSNAP" "$SSNAP"; do
		[[ -f $snap/state ]] || continue
		python3 "$SNAPFILE" roundtrip "$snap/state" >"$T/rt.err" 2>&1 || bad="$bad $snap"
	done
	if [[ -n $bad ]]; then
		fail snapfile/mirrors-the-format "decode+encode does not give back:$bad (tests/snapshot/snapfile.py is out of date with snapshot/snap_state.c?)" "$T/rt.err"
	else
		pass snapfile/mirrors-the-format
	fi
fi

# ---- python3: a large dict, answered at once after a restore -----------------------------------
PYROOT=$ROOTFS/python3
if [[ ! -x $PYROOT/usr/bin/python3 ]]; then
	fail python/answers-from-dict "the python3 root is not built ($PYROOT; make rootfs)"
else
	mkdir -p "$T/pytask"
	cat >"$T/pytask/answer.py" <<'EOF'
import collections, hashlib, json, re, sys
table = {i: hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(200000)}
words = collections.Counter(re.findall(r"\w+", json.dumps({"keys": list(table)[:100]})))
print("ready", len(table), len(words), flush=True)
for line in sys.stdin:
    key = int(line)
    print("answer", key, table[key], flush=True)
print("bye", flush=True)
EOF
	SOCK=$T/py.sock
	start=$(now_ms)
	start_vm py run --root "$PYROOT" --task "$T/pytask" --mem 256 --timeout 120 --control-sock "$SOCK" \
		-- /usr/bin/python3 /var/task/answer.py
	if wait_line "$T/py.out" '^ready 200000' 60 && wait_socket "$SOCK"; then
		fresh_ms=$(($(now_ms) - start))
		sleep 0.1
		ctl "$SOCK" pause && ctl "$SOCK" snapshot "$T/py-snap"
		snapshot_status=$CTL_STATUS
		ctl "$SOCK" quit
		wait_exit "$VM_PID" 10
		if [[ $snapshot_status != 0 ]]; then
			fail python/answers-from-dict "pause or snapshot failed" "$T/ctl.err"
		else
			restore_fg py-restored "$T/py-snap" $'12345\n199999\n'
			want="answer 12345 $(printf 12345 | sha256sum | cut -c1-16)"
			want2="answer 199999 $(printf 199999 | sha256sum | cut -c1-16)"
			limit_ms=1000
			((ASAN)) && limit_ms=5000
			if ((STATUS != 0)); then
				fail python/answers-from-dict "exit status $STATUS" "$T/py-restored.err"
			elif [[ $(cat "$T/py-restored.out") != "$want"$'\n'"$want2"$'\nbye' ]]; then
				fail python/answers-from-dict "want \`$want\`, \`$want2\`, \`bye\`" "$T/py-restored.out" \
					"$T/py-restored.err"
			else
				pass python/answers-from-dict
			fi
			note "python3: fresh start to ready ${fresh_ms} ms; restore to two answers and exit ${WALL_MS} ms"
			if ((STATUS == 0 && (WALL_MS > limit_ms || WALL_MS >= fresh_ms))); then
				fail python/answers-at-once "restore took ${WALL_MS} ms (limit ${limit_ms} ms, fresh start ${fresh_ms} ms)"
			elif ((STATUS == 0)); then
				pass python/answers-at-once
			fi
		fi
	else
		fail python/answers-from-dict "python3 did not get ready within 60 s" "$T/py.err" "$T/py.out"
		kill -KILL "$VM_PID" 2>/dev/null
	fi
fi

# ---- many VMs from one snapshot -------------------------------------------------------------------
if [[ -n $SSNAP_TAKEN_MS ]]; then
	GUEST_BYTES=$((256 << 20))
	started=$(now_ms)
	MANY_PIDS=()
	for ((i = 0; i < MANY_VMS; i++)); do
		start_vm "many$i" restore "$SSNAP" --timeout 120 --control-sock "$T/many$i.sock"
		MANY_PIDS+=("$VM_PID")
	done
	up=0
	for ((i = 0; i < MANY_VMS; i++)); do
		wait_socket "$T/many$i.sock" 20 && up=$((up + 1))
	done
	restored_ms=$(($(now_ms) - started))
	if ((up != MANY_VMS)); then
		fail many/all-restore "$up of $MANY_VMS restored VMs answer on their control sockets" "$T/many0.err"
	else
		pass many/all-restore
		note "$MANY_VMS VMs restored and answering stats in $restored_ms ms"
	fi

	for ((i = 0; i < MANY_VMS; i++)); do
		send "many$i" "echo vm $i"
	done
	answered=0
	for ((i = 0; i < MANY_VMS; i++)); do
		wait_line "$T/many$i.out" "^echo: vm $i\$" 10 && answered=$((answered + 1))
	done
	if ((answered == MANY_VMS)) && ! grep -l '^ready$' "$T"/many*.out >/dev/null 2>&1; then
		pass many/each-answers
	else
		fail many/each-answers "$answered of $MANY_VMS answered (or one started over and said ready)" \
			"$T/many0.out" "$T/many0.err"
	fi

	# /tmp is each VM's own.
	send many0 "touch /tmp/only-in-vm-0"
	send many0 "exists /tmp/only-in-vm-0"
	if wait_line "$T/many0.out" '^/tmp/only-in-vm-0 exists$' 10; then
		for ((i = 1; i < MANY_VMS; i++)); do
			send "many$i" "exists /tmp/only-in-vm-0"
		done
		leaked=0 missing=0
		for ((i = 1; i < MANY_VMS; i++)); do
			if ! wait_line "$T/many$i.out" '^/tmp/only-in-vm-0 (exists|absent)$' 10; then
				missing=$((missing + 1))
			elif grep -q '^/tmp/only-in-vm-0 exists$' "$T/many$i.out"; then
				leaked=$((leaked + 1))
			fi
		done
		if ((leaked + missing)); then
			fail many/tmp-is-private "$leaked VMs see VM 0's file, $missing did not answer"
		else
			pass many/tmp-is-private
		fi
	else
		fail many/tmp-is-private "VM 0 could not create its file" "$T/many0.out"
	fi

	# Memory: each VM holds only what it wrote.  The first five also dirty
	# 256 pages (1 MiB) each of the snapshot's filled memory.
	DIRTY_EXTRA=256
	for ((i = 0; i < 5 && i < MANY_VMS; i++)); do
		send "many$i" "dirty $DIRTY_EXTRA"
	done
	for ((i = 0; i < 5 && i < MANY_VMS; i++)); do
		wait_line "$T/many$i.out" "^dirtied $DIRTY_EXTRA\$" 10
	done
	stats_bad= smaps_bad= growth_bad= total_private_kb=0 total_anon_kb=0 max_dirty=0
	for ((i = 0; i < MANY_VMS; i++)); do
		pid=${MANY_PIDS[i]}
		ctl "$T/many$i.sock" stats
		cp "$T/ctl.out" "$T/many$i.stats"
		dirty=$(json_field "$T/ctl.out" dirty_pages)
		private=$(json_field "$T/ctl.out" host_private_bytes)
		memory=$(json_field "$T/ctl.out" guest_memory_bytes)
		dirty=${dirty:-0} private=${private:-0}
		read -r anon_kb dirty_kb rss_kb <<<"$(guest_mapping "$pid" "$GUEST_BYTES")"
		extra=0
		((i < 5)) && extra=$DIRTY_EXTRA
		((${dirty:-0} > max_dirty)) && max_dirty=${dirty:-0}
		total_private_kb=$((total_private_kb + ${private:-0} / 1024))
		total_anon_kb=$((total_anon_kb + ${anon_kb:-0}))
		# stats: few dirty pages beyond what the guest was asked to write,
		# and the process's private memory far under guest memory.
		if [[ $CTL_STATUS != 0 || $memory != "$GUEST_BYTES" ]] || ((dirty < extra || dirty > extra + 128)) ||
			((private > GUEST_BYTES / 16)); then
			stats_bad="$stats_bad vm$i(dirty_pages=${dirty:-?} host_private_bytes=${private:-?})"
		fi
		# smaps: the guest-memory mapping's private pages are those dirty pages.
		if [[ -z $anon_kb ]]; then
			smaps_bad="$smaps_bad vm$i(no mapping of $GUEST_BYTES bytes)"
		elif ((anon_kb > (extra + 128) * 4 || dirty_kb > (extra + 128) * 4 || anon_kb < extra * 4)); then
			smaps_bad="$smaps_bad vm$i(Anonymous=${anon_kb}kB Private_Dirty=${dirty_kb}kB)"
		fi
		# The two views agree: stats' dirty pages are the mapping's anonymous pages.
		if [[ -n $anon_kb ]] && ((dirty * 4 > anon_kb + 64 || anon_kb > dirty * 4 + 64)); then
			growth_bad="$growth_bad vm$i(dirty_pages=$dirty Anonymous=${anon_kb}kB)"
		fi
	done
	if [[ -n $stats_bad ]]; then
		fail many/stats-memory-is-what-was-dirtied "want dirty_pages within 128 of what each was asked to dirty and host_private_bytes < 1/16 of guest memory:${stats_bad:0:600}" "$T/many0.stats"
	else
		pass many/stats-memory-is-what-was-dirtied
	fi
	if [[ -n $smaps_bad ]]; then
		fail many/smaps-guest-mapping-private-is-dirtied-pages "${smaps_bad:0:600}"
	else
		pass many/smaps-guest-mapping-private-is-dirtied-pages
	fi
	if [[ -n $growth_bad ]]; then
		fail many/stats-agree-with-smaps "${growth_bad:0:600}"
	else
		pass many/stats-agree-with-smaps
	fi
	note "$MANY_VMS restored VMs of $((GUEST_BYTES >> 20)) MiB: private host memory $((total_private_kb / 1024)) MiB in all" \
		"($((total_private_kb / MANY_VMS)) KiB per VM), guest-memory copies $((total_anon_kb / 1024)) MiB in all" \
		"(5 of them dirtied $((DIRTY_EXTRA * 4)) KiB each), at most $max_dirty dirty pages"
	if ((ASAN == 0 && total_private_kb > MANY_VMS * 2048 + 5 * DIRTY_EXTRA * 4)); then
		fail many/host-memory-per-vm "$((total_private_kb / MANY_VMS)) KiB private per VM; want under 2 MiB"
	elif ((ASAN == 0)); then
		pass many/host-memory-per-vm
	else
		skip many/host-memory-per-vm "not meaningful under AddressSanitizer"
	fi

	for ((i = 0; i < MANY_VMS; i++)); do
		send "many$i" "exit 0"
	done
	ended=0 bad_end=
	for ((i = 0; i < MANY_VMS; i++)); do
		if wait_exit "${MANY_PIDS[i]}" 20 && [[ $EXIT_STATUS == 0 ]] && ! sanitizer_report "$T/many$i.err"; then
			ended=$((ended + 1))
		else
			bad_end="$bad_end vm$i($EXIT_STATUS)"
		fi
	done
	if ((ended == MANY_VMS)); then
		pass many/all-exit-cleanly
	else
		first_bad=${bad_end# vm}
		fail many/all-exit-cleanly "${bad_end:0:400}" "$T/many${first_bad%%(*}.err"
	fi
	note "the $MANY_VMS-VM test took $(($(now_ms) - started)) ms"
fi

# ---- freshness: randomness and the clock ------------------------------------------------------------
if [[ -n $SSNAP_TAKEN_MS ]]; then
	restore_fg rand1 "$SSNAP" $'random\nurandom\n'
	s1=$STATUS
	restore_fg rand2 "$SSNAP" $'random\nurandom\n'
	for source in random urandom; do
		a=$(sed -n "s/^$source \([0-9a-f]*\)$/\1/p" "$T/rand1.out")
		b=$(sed -n "s/^$source \([0-9a-f]*\)$/\1/p" "$T/rand2.out")
		if ((s1 != 0 || STATUS != 0)) || [[ ${#a} != 128 || ${#b} != 128 ]]; then
			fail "fresh/$source-differs" "the restored VMs did not print 64 bytes each (status $s1, $STATUS)" \
				"$T/rand1.out" "$T/rand1.err"
		elif [[ $a == "$b" ]]; then
			fail "fresh/$source-differs" "two VMs restored from one snapshot read the same 64 bytes: $a"
		else
			pass "fresh/$source-differs"
		fi
	done

	# The snapshot is at least 2 s old by now; its clock must not be.
	while (($(now_ms) - SSNAP_TAKEN_MS < 2100)); do
		sleep 0.05
	done
	before_ns=$(date +%s%N)
	restore_fg clock "$SSNAP" $'time\n'
	after_ns=$(date +%s%N)
	read -r _ libc_ns raw_ns mono_ns raw_mono_ns <<<"$(grep '^time ' "$T/clock.out")"
	if ((STATUS != 0)) || [[ -z ${raw_mono_ns:-} ]]; then
		fail fresh/wall-clock-is-current "no time from the restored guest (status $STATUS)" "$T/clock.out" "$T/clock.err"
	else
		bad=
		for value in "$libc_ns" "$raw_ns"; do
			if ((value < before_ns - 1000000000 || value > after_ns + 1000000000)); then
				bad="$bad $value"
			fi
		done
		if [[ -n $bad ]]; then
			fail fresh/wall-clock-is-current "guest CLOCK_REALTIME (vDSO, syscall) $libc_ns, $raw_ns; host $before_ns..$after_ns: off by more than 1 s"
		else
			pass fresh/wall-clock-is-current
			note "guest wall clock after restore: $(((libc_ns - after_ns) / 1000000)) ms from the host's"
		fi
		if [[ $HAVE_PYTHON == 1 ]]; then
			saved_mono=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["clock"]["monotonic_ns"])' \
				<(python3 "$SNAPFILE" dump "$SSNAP/state"))
			if ((mono_ns < saved_mono || raw_mono_ns < saved_mono)); then
				fail fresh/monotonic-never-goes-back "guest CLOCK_MONOTONIC $mono_ns / $raw_mono_ns after restore, $saved_mono when saved"
			else
				pass fresh/monotonic-never-goes-back
			fi
		fi
	fi
fi

# ---- read-only snapshots, --paused, a snapshot of a restored VM ---------------------------------------
if [[ -n $SSNAP_TAKEN_MS ]]; then
	RO=$T/ro-copy
	cp -a "$SSNAP" "$RO"
	chmod -R a-w "$RO"
	restore_fg ro "$RO" $'echo read-only\n'
	if ((STATUS == 0)) && [[ $(cat "$T/ro.out") == $'echo: read-only\neof' ]]; then
		pass readonly/restore-from-read-only-copy
	else
		fail readonly/restore-from-read-only-copy "exit status $STATUS" "$T/ro.out" "$T/ro.err"
	fi

	MNT=$T/ro-mount
	mkdir -p "$MNT"
	if [[ $(id -u) != 0 ]]; then
		skip readonly/restore-from-read-only-mount "needs root to bind-mount"
	elif ! mount --bind "$RO" "$MNT" 2>"$T/mount.err"; then
		skip readonly/restore-from-read-only-mount "mount --bind failed: $(head -n 1 "$T/mount.err")"
	else
		MOUNTS+=("$MNT")
		mount -o remount,bind,ro "$MNT" 2>"$T/mount.err"
		if touch "$MNT/probe" 2>/dev/null; then
			rm -f "$MNT/probe"
			skip readonly/restore-from-read-only-mount "the bind mount could not be made read-only"
		else
			restore_fg romount "$MNT" $'echo read-only mount\n'
			if ((STATUS == 0)) && [[ $(cat "$T/romount.out") == $'echo: read-only mount\neof' ]]; then
				pass readonly/restore-from-read-only-mount
			else
				fail readonly/restore-from-read-only-mount "exit status $STATUS" "$T/romount.out" "$T/romount.err"
			fi
		fi
		umount "$MNT" && MOUNTS=()
	fi

	SOCK=$T/paused.sock
	start_vm paused restore "$SSNAP" --paused --timeout 60 --control-sock "$SOCK"
	if wait_socket "$SOCK"; then
		ctl "$SOCK" stats
		state=$(json_field "$T/ctl.out" state)
		send paused "echo after resume"
		sleep 0.3
		if [[ $state != paused ]]; then
			fail paused/waits-for-resume "stats says \"$state\", want \"paused\"" "$T/ctl.out"
		elif [[ -s $T/paused.out ]]; then
			fail paused/waits-for-resume "the guest ran before resume" "$T/paused.out"
		else
			pass paused/waits-for-resume
		fi
		# A snapshot of the restored, paused VM: a chain of snapshots.
		ctl "$SOCK" snapshot "$T/chain-snap"
		chain_status=$CTL_STATUS
		ctl "$SOCK" resume
		if [[ $CTL_STATUS != 0 ]]; then
			fail paused/resume "ember-ctl resume exited $CTL_STATUS" "$T/ctl.err"
		elif ! wait_line "$T/paused.out" '^echo: after resume$' 5; then
			fail paused/resume "no answer after resume" "$T/paused.out" "$T/paused.err"
		else
			pass paused/resume
		fi
		ctl "$SOCK" resume
		if [[ $CTL_STATUS == 3 ]]; then
			pass paused/resume-twice-not-allowed
		else
			fail paused/resume-twice-not-allowed "ember-ctl resume exited $CTL_STATUS, want 3" "$T/ctl.err"
		fi
		send paused "exit 0"
		if wait_exit "$VM_PID" 10 && [[ $EXIT_STATUS == 0 ]] && ! sanitizer_report "$T/paused.err"; then
			pass paused/exits-cleanly
		else
			fail paused/exits-cleanly "ended with $EXIT_STATUS" "$T/paused.err"
		fi
		if [[ $chain_status != 0 ]]; then
			fail snapshot/of-a-restored-vm "ember-ctl snapshot exited $chain_status" "$T/ctl.err"
		else
			restore_fg chain "$T/chain-snap" $'echo chained\n'
			if ((STATUS == 0)) && [[ $(cat "$T/chain.out") == $'echo: chained\neof' ]]; then
				pass snapshot/of-a-restored-vm
			else
				fail snapshot/of-a-restored-vm "exit status $STATUS" "$T/chain.out" "$T/chain.err"
			fi
		fi
	else
		fail paused/waits-for-resume "the paused VM's control socket did not answer" "$T/paused.err"
		kill -KILL "$VM_PID" 2>/dev/null
	fi
fi

# ---- hostile snapshots ------------------------------------------------------------------------------------
# bad NAME BASE_SNAPSHOT REGEX INPUT COMMAND...: copies the snapshot to
# $T/bad-NAME, runs COMMAND (with $B the copy) to spoil it, then restores
# it: it must exit non-zero (not a signal, not a timeout) within 5 s with a
# stderr matching REGEX, no sanitizer report, and nothing from the guest.
bad() {
	local name=$1 base=$2 regex=$3 input=$4
	shift 4
	B=$T/bad-$name
	rm -rf "$B"
	cp -a "$base" "$B"
	if ! (export B; eval "$@") >"$T/spoil.err" 2>&1; then
		fail "bad/$name" "could not make the bad snapshot: $*" "$T/spoil.err"
		return
	fi
	restore_fg "bad-$name" "$B" "$input"
	local err=$T/bad-$name.err
	if sanitizer_report "$err"; then
		fail "bad/$name" "sanitizer report" "$err"
	elif ((STATUS == 0 || STATUS == 124 || STATUS >= 128)); then
		fail "bad/$name" "exit status $STATUS, want an error (1..123, 125..127)" "$err" "$T/bad-$name.out"
	elif [[ -s $T/bad-$name.out ]]; then
		fail "bad/$name" "the guest ran and printed" "$T/bad-$name.out"
	elif ! grep -qiE -- "$regex" "$err"; then
		fail "bad/$name" "stderr does not match /$regex/" "$err"
	elif ((WALL_MS > 5000)); then
		fail "bad/$name" "took $WALL_MS ms to refuse"
	elif (($(grep -c . "$err") != 1)); then
		fail "bad/$name" "want the reason on one line of stderr" "$err"
	else
		pass "bad/$name"
	fi
}

if [[ -z $SSNAP_TAKEN_MS ]]; then
	fail bad/snapshots "no stdin snapshot to spoil"
elif [[ $HAVE_PYTHON == 0 ]]; then
	skip bad/snapshots "python3 is not installed (tests/snapshot/snapfile.py edits the state files)"
else
	SF="python3 $SNAPFILE"
	IN=$'echo guest ran\n'
	size=$(stat -c %s "$SSNAP/state")
	bad truncated-state "$SSNAP" 'truncated' "$IN" "truncate -s $((size / 2)) \$B/state"
	bad truncated-header "$SSNAP" 'truncated' "$IN" "truncate -s 20 \$B/state"
	bad empty-state "$SSNAP" 'truncated|magic' "$IN" ": >\$B/state"
	bad flipped-byte "$SSNAP" 'checksum' "$IN" "$SF flip \$B/state $((size / 2))"
	bad wrong-magic "$SSNAP" 'magic' "$IN" "printf 'EMBERSNQ' | dd of=\$B/state conv=notrunc status=none"
	bad future-version "$SSNAP" 'version 2' "$IN" "$SF set-version \$B/state 2"
	bad section-past-end "$SSNAP" 'past the end' "$IN" "$SF set-section-length \$B/state process 0x7fffffff"
	bad section-length-huge "$SSNAP" 'past the end' "$IN" "$SF set-section-length \$B/state clock 0xffffffffffffff00"
	bad short-memory "$SSNAP" 'memory file.*bytes' "$IN" "truncate -s -4096 \$B/memory"
	bad missing-memory "$SSNAP" 'memory.*No such file' "$IN" "rm \$B/memory"
	bad missing-state "$SSNAP" 'state.*No such file' "$IN" "rm \$B/state"
	bad noncanonical-rip "$SSNAP" 'non-canonical' "$IN" "$SF set-rip \$B/state 0x0000800000000000"
	bad rip-outside-memory "$SSNAP" 'outside guest memory' "$IN" "$SF set-rip \$B/state 0x00007fff00000000"
	bad other-cpu-vendor "$SSNAP" 'CPU' "$IN" "$SF set-cpu \$B/state vendor=$(
		grep -q GenuineIntel /proc/cpuinfo && echo AuthenticAMD || echo GenuineIntel)"
	bad other-cpu-signature "$SSNAP" 'CPU.*signature' "$IN" \
		"$SF edit \$B/state 's[\"cpu\"][\"signature\"] ^= 0x10'"
	bad other-cpu-features "$SSNAP" 'feature' "$IN" "$SF edit \$B/state 's[\"cpu\"][\"features\"][1] ^= 1 << 25'"
	bad tmp-node-dot-dot "$SSNAP" 'tmp.*(name|parent)' "$IN" \
		"$SF edit \$B/state 's[\"tmpfs\"].append(dict(parent=0, name=\"..\", is_dir=0, mode=0o644, mtime_sec=0, mtime_nsec=0, data=b\"x\"))'"
	bad descriptor-to-nothing "$SSNAP" 'descriptor' "$IN" \
		"$SF edit \$B/state 's[\"fds\"].append(dict(fd=9, file=len(s[\"files\"]), cloexec=0))'"
	# A state file names host directories as its layers; --root given to
	# restore must win, so a hostile record cannot hand the guest the host's /.
	B=$T/root-override
	rm -rf "$B" && cp -a "$SSNAP" "$B"
	if $SF edit "$B/state" 's["process"]["root_path"] = "/"' >/dev/null 2>&1; then
		out=$(printf 'exists /etc/hostname\nexit 0\n' | timeout 30 "$VMM" restore "$B" --root "$GROOT" 2>&1)
		if grep -q '^/etc/hostname absent' <<<"$out"; then
			pass restore/root-override-wins
		else
			fail restore/root-override-wins "with --root the guest saw the recorded root: $(head -c 300 <<<"$out")"
		fi
	else
		fail restore/root-override-wins "could not edit the state file"
	fi
	if [[ -f $CSNAP/state ]]; then
		bad path-escapes-layer "$CSNAP" 'escape|normalized' "" \
			"$SF set-file-path \$B/state /var/task/counter.data /var/task/../../etc/shadow"
		bad path-relative "$CSNAP" 'escape|normalized' "" \
			"$SF set-file-path \$B/state /var/task/counter.data var/task/counter.data"
	else
		fail bad/path-escapes-layer "no counter snapshot to spoil"
	fi

	# Accepted by the validator, but restore must still not misbehave.
	# A pipe no open file refers to (snapshot.c's restore_files says decode
	# guarantees there is none): refused, or restored without a leak.
	rm -rf "$T/orphan-pipe"
	cp -a "$SSNAP" "$T/orphan-pipe"
	python3 "$SNAPFILE" edit "$T/orphan-pipe/state" 's["pipes"].append(b"orphan")'
	restore_fg orphan-pipe "$T/orphan-pipe" $'echo ok\n'
	if sanitizer_report "$T/orphan-pipe.err"; then
		fail bad/pipe-without-file "accepted, and restore leaks it: $(grep -m1 -E "$SANITIZER_PATTERN" "$T/orphan-pipe.err")" \
			"$T/orphan-pipe.err"
	elif ((STATUS >= 128 || STATUS == 124)); then
		fail bad/pipe-without-file "exit status $STATUS" "$T/orphan-pipe.err"
	else
		pass bad/pipe-without-file
	fi

	# A monotonic clock at the end of time: refused, or a guest whose
	# monotonic clock stays sane (it must never be negative).
	rm -rf "$T/clock-end"
	cp -a "$SSNAP" "$T/clock-end"
	python3 "$SNAPFILE" edit "$T/clock-end/state" 's["clock"]["monotonic_ns"] = 2**63 - 1'
	restore_fg clock-end "$T/clock-end" $'time\n'
	read -r _ _ _ mono_ns raw_mono_ns <<<"$(grep '^time ' "$T/clock-end.out")"
	if sanitizer_report "$T/clock-end.err"; then
		fail bad/clock-at-end-of-time "sanitizer report: $(grep -m1 -E "$SANITIZER_PATTERN" "$T/clock-end.err")" \
			"$T/clock-end.err"
	elif ((STATUS >= 128 || STATUS == 124)); then
		fail bad/clock-at-end-of-time "exit status $STATUS" "$T/clock-end.err"
	elif ((STATUS == 0)) && [[ ${mono_ns:-x} == -* || ${raw_mono_ns:-x} == -* || -z ${raw_mono_ns:-} ]]; then
		fail bad/clock-at-end-of-time "accepted monotonic_ns = 2^63-1; the guest then reads CLOCK_MONOTONIC ${mono_ns:-?} (vDSO) / ${raw_mono_ns:-?} (syscall)" \
			"$T/clock-end.out"
	else
		pass bad/clock-at-end-of-time
	fi

	# 100,000 /tmp nodes (a 4 MB state file): the validator's work must grow
	# about linearly — with the memory file gone, it must refuse within 5 s.
	rm -rf "$T/many-nodes"
	cp -a "$SSNAP" "$T/many-nodes"
	rm "$T/many-nodes/memory"
	python3 "$SNAPFILE" edit "$T/many-nodes/state" \
		's["tmpfs"] += [dict(parent=0, name="f%d" % i, is_dir=0, mode=0o644, mtime_sec=0, mtime_nsec=0, data=b"") for i in range(100000)]'
	start=$(now_ms)
	timeout -k 2 5 "$VMM" restore "$T/many-nodes" </dev/null >"$T/many-nodes.out" 2>"$T/many-nodes.err"
	STATUS=$?
	took=$(($(now_ms) - start))
	if ((STATUS == 124 || STATUS == 137)); then
		fail bad/many-tmp-nodes-validated-quickly "still validating 100,000 /tmp nodes after 5 s (decode_nodes compares every new name with every earlier node: quadratic; SNAP_MAX_NODES allows 1,000,000)"
	elif sanitizer_report "$T/many-nodes.err" || ! grep -q 'memory' "$T/many-nodes.err"; then
		fail bad/many-tmp-nodes-validated-quickly "exit $STATUS" "$T/many-nodes.err"
	else
		pass bad/many-tmp-nodes-validated-quickly
		note "100,000 /tmp nodes validated and refused in $took ms"
	fi

	# A layer file that changed or vanished since the snapshot: refused.
	if [[ -f $CSNAP/state ]]; then
		cp -p "$GTASK/counter.data" "$T/counter.data.saved"
		touch -d '2001-01-01' "$GTASK/counter.data"
		bad layer-file-changed "$CSNAP" 'changed' "" ":"
		rm "$GTASK/counter.data"
		bad layer-file-vanished "$CSNAP" 'counter.data' "" ":"
		cp -p "$T/counter.data.saved" "$GTASK/counter.data"
	fi
fi

# ---- the snapshot directory was never written -------------------------------------------------------
if [[ -n $SSNAP_FINGERPRINT ]]; then
	if [[ $(fingerprint "$SSNAP") == "$SSNAP_FINGERPRINT" ]]; then
		pass snapshot/unchanged-by-restores
	else
		diff <(echo "$SSNAP_FINGERPRINT") <(fingerprint "$SSNAP") >"$T/fingerprint.diff"
		fail snapshot/unchanged-by-restores "the snapshot directory changed" "$T/fingerprint.diff"
	fi
fi

# ---- every VMM stderr: no sanitizer report -----------------------------------------------------------------
reports=$(grep -lE "$SANITIZER_PATTERN" "$T"/*.err 2>/dev/null | grep -v -e /bad- -e orphan-pipe -e clock-end -e many-nodes | head -n 5)
if [[ -n $reports ]]; then
	fail sanitizer/no-reports "sanitizer reports in: $(echo $reports | sed "s|$T/||g")" $(echo "$reports" | head -n 1)
elif ((ASAN)); then
	pass sanitizer/no-reports
fi

exit $((failures > 0))
