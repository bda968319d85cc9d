#!/usr/bin/env bash
# The ember-ctl suite: the client of the ember-vmm control socket, tested
# without a VM.  Runs the unit tests of ctl/control_client.c
# ($BUILD/tests/ctl_unit), a short run of its fuzz target
# ($BUILD/fuzz/fuzz_ctl_response, FUZZ_SECONDS, default 5), and then
# $BUILD/bin/ember-ctl against the scripted fake VMM
# $BUILD/tests/ctl_fake_server (tests/ctl/fake_server.c): every command
# answered OK, stats as JSON, refusals and failures, each malformed
# response, the timeout, a missing socket, and bad usage — checking exit
# codes, stdout, stderr, and that the fake server received a well-formed
# request.  Builds nothing: the Makefile builds those binaries.  The
# end-to-end tests against a real ember-vmm live elsewhere.
#
# Prints one line per test: "PASS name", "FAIL name: why" (details follow,
# indented) or "SKIP name: why".  Exits 1 if anything failed.
# Environment: BUILD (default build), FUZZ_SECONDS, EMBER_SUITE_KEEP=1
# (keep the temporary files).
set -u

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
CTL=$BUILD/bin/ember-ctl
FAKE=$BUILD/tests/ctl_fake_server
UNIT=$BUILD/tests/ctl_unit
FUZZ=$BUILD/fuzz/fuzz_ctl_response
FUZZ_SECONDS=${FUZZ_SECONDS:-5}

failures=0
pass() { echo "PASS $1"; }
fail() {
	echo "FAIL $1: $2"
	failures=$((failures + 1))
	local file
	for file in "${@:3}"; do
		[[ -s $file ]] && head -n 10 "$file" | sed 's/^/    /'
	done
}
skip() { echo "SKIP $1: $2"; }

T=$(mktemp -d /tmp/ember-ctl-suite.XXXXXX)
SERVER_PID=
cleanup() {
	[[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null
	if [[ -n ${EMBER_SUITE_KEEP:-} ]]; then
		echo "# kept the suite's files in $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- unit tests and fuzzing of the validators ------------------------------
if [[ -x $UNIT ]]; then
	output=$(cd "$REPO" && timeout -k 5 60 "$UNIT" 2>&1 </dev/null)
	status=$?
	printf '%s\n' "$output" | sed -e '/^$/d' -e 's/^PASS /PASS unit\//' -e 's/^FAIL /FAIL unit\//' \
		-e '/^PASS \|^FAIL /!s/^/    /'
	if grep -q '^FAIL ' <<<"$output"; then
		failures=$((failures + 1))
	elif ((status != 0)); then
		fail unit "ctl_unit exited with status $status (a sanitizer report?)"
	fi
else
	fail unit "not built ($UNIT missing)"
fi

if [[ -x $FUZZ ]]; then
	if timeout -k 5 $((FUZZ_SECONDS + 60)) "$FUZZ" -max_total_time="$FUZZ_SECONDS" \
		-artifact_prefix="$T/" >"$T/fuzz.log" 2>&1; then
		pass "fuzz/response-validators"
	else
		grep -v '^#\|^INFO\|^\s*$' "$T/fuzz.log" | tail -n 10 >"$T/fuzz.tail"
		fail "fuzz/response-validators" "the fuzz target found a failure (EMBER_SUITE_KEEP=1 keeps its input)" \
			"$T/fuzz.tail"
	fi
else
	fail "fuzz/response-validators" "not built ($FUZZ missing)"
fi

if [[ ! -x $CTL || ! -x $FAKE ]]; then
	fail ember-ctl "not built ($CTL or $FAKE missing); the remaining tests need both"
	exit 1
fi

# ---- helpers ----------------------------------------------------------------
SOCK=$T/vmm.sock

# start_server SCENARIO [COMMAND [PAYLOAD]]: starts the fake VMM on $SOCK and
# waits (5 s at most) until it listens.
start_server() {
	rm -f "$SOCK"
	"$FAKE" "$SOCK" "$@" >"$T/server.out" 2>"$T/server.err" &
	SERVER_PID=$!
	local i
	for ((i = 0; i < 500; i++)); do
		[[ -S $SOCK ]] && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.01
	done
	return 1
}

# server_verdict: waits (5 s at most) for the fake VMM to finish; its status
# is 0 when the request it received was well-formed and as expected.  A fake
# VMM still waiting is killed and fails the test (it never got a request).
server_verdict() {
	local status=0 i
	[[ -n $SERVER_PID ]] || return 0
	for ((i = 0; i < 250; i++)); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.02
	done
	if kill -0 "$SERVER_PID" 2>/dev/null; then
		kill "$SERVER_PID" 2>/dev/null
		echo "the fake VMM was still waiting for a request; killed" >>"$T/server.err"
	fi
	wait "$SERVER_PID" 2>/dev/null || status=$?
	SERVER_PID=
	return $status
}

# run_ctl ARGS...: runs ember-ctl (killed after 30 s), stdout to $T/out,
# stderr to $T/err, its status in $STATUS and its time in $ELAPSED (ms).
run_ctl() {
	local start end
	start=$(date +%s%N)
	timeout -k 5 30 "$CTL" "$@" >"$T/out" 2>"$T/err" </dev/null
	STATUS=$?
	end=$(date +%s%N)
	ELAPSED=$(((end - start) / 1000000))
}

# expect NAME STATUS [STDERR_TEXT]: checks the last run's exit status, that
# it left no sanitizer report, and, when given, that stderr contains the text.
expect() {
	local name=$1 status=$2 text=${3:-}
	if ((STATUS == 124 || STATUS == 137)); then
		fail "$name" "ember-ctl hung (killed after 30 s)" "$T/err"
	elif grep -q 'Sanitizer\|runtime error' "$T/err"; then
		fail "$name" "sanitizer report" "$T/err"
	elif ((STATUS != status)); then
		fail "$name" "exit status $STATUS, expected $status" "$T/err" "$T/out"
	elif [[ -n $text ]] && ! grep -qF -- "$text" "$T/err"; then
		fail "$name" "stderr lacks \`$text\`" "$T/err"
	else
		return 0
	fi
	return 1
}

# scenario NAME SCENARIO COMMAND_NUMBER STATUS STDERR_TEXT -- ARGS...: one run
# against the fake VMM; also fails if the fake VMM saw a malformed request.
scenario() {
	local name=$1 fake=$2 number=$3 status=$4 text=$5
	shift 6
	if ! start_server "$fake" "$number"; then
		fail "$name" "the fake VMM did not start" "$T/server.err"
		server_verdict
		return 1
	fi
	run_ctl "$SOCK" "$@"
	if ! server_verdict; then
		fail "$name" "the fake VMM did not receive a well-formed request (ember-ctl exited $STATUS)" \
			"$T/server.err" "$T/err"
		return 1
	fi
	expect "$name" "$status" "$text"
}

# ---- each command answered OK ------------------------------------------------
for entry in pause:1 resume:2 quit:5; do
	command=${entry%%:*} number=${entry#*:}
	if scenario "ok/$command" ok "$number" 0 "" -- "$command"; then
		if [[ -s $T/out || -s $T/err ]]; then
			fail "ok/$command" "expected no output" "$T/out" "$T/err"
		else
			pass "ok/$command"
		fi
	fi
done

if scenario ok/message ok-message 1 0 "" -- pause; then
	if [[ $(cat "$T/out") == "snapshot written" && ! -s $T/err ]]; then
		pass ok/message
	else
		fail ok/message "expected the VMM's message on stdout" "$T/out" "$T/err"
	fi
fi

# snapshot: an absolute DIR goes as it is; a relative one is made absolute
# against ember-ctl's working directory.
if start_server ok 3 /srv/snapshots/one; then
	run_ctl "$SOCK" snapshot /srv/snapshots/one
	if ! server_verdict; then
		fail ok/snapshot-absolute "the fake VMM did not receive /srv/snapshots/one" "$T/server.err"
	elif expect ok/snapshot-absolute 0; then
		pass ok/snapshot-absolute
	fi
else
	fail ok/snapshot-absolute "the fake VMM did not start" "$T/server.err"
fi

mkdir -p "$T/work/sub"
WORK=$(cd "$T/work/sub" && pwd -P)
if start_server ok 3 "$WORK/snaps/one"; then
	(cd "$T/work/sub" && timeout -k 5 30 "$CTL" "$SOCK" snapshot ./snaps//one/ >"$T/out" 2>"$T/err" </dev/null)
	STATUS=$?
	if ! server_verdict; then
		fail ok/snapshot-relative "the fake VMM did not receive $WORK/snaps/one" "$T/server.err"
	elif expect ok/snapshot-relative 0; then
		pass ok/snapshot-relative
	fi
else
	fail ok/snapshot-relative "the fake VMM did not start" "$T/server.err"
fi

mkdir -p "$T/work/-odd"
if start_server ok 3 "$WORK/-odd"; then
	(cd "$T/work/sub" && timeout -k 5 30 "$CTL" -- "$SOCK" snapshot -odd >"$T/out" 2>"$T/err" </dev/null)
	STATUS=$?
	if ! server_verdict; then
		fail ok/snapshot-dash-dir "the fake VMM did not receive $WORK/-odd" "$T/server.err" "$T/err"
	elif expect ok/snapshot-dash-dir 0; then
		pass ok/snapshot-dash-dir
	fi
else
	fail ok/snapshot-dash-dir "the fake VMM did not start" "$T/server.err"
fi

# ---- stats as JSON -----------------------------------------------------------
if ! command -v python3 >/dev/null; then
	skip stats/json "python3 is not installed; it checks the JSON"
elif scenario stats/json stats 4 0 "" -- stats; then
	if [[ $(wc -l <"$T/out") != 1 ]]; then
		fail stats/json "expected one line" "$T/out"
	elif ! python3 -c 'import json,sys; json.load(sys.stdin)' <"$T/out" 2>"$T/py.err"; then
		fail stats/json "stdout is not JSON" "$T/out" "$T/py.err"
	elif ! python3 -c '
import json, sys
got = json.load(sys.stdin)
want = {"guest_memory_bytes": 268435456, "host_rss_bytes": 12345678,
        "host_private_bytes": 1234567, "dirty_pages": 42,
        "syscalls": 9007199254740993, "state": "paused",
        "platform": "systrap"}
if got != want:
    sys.exit("got %r" % got)
if list(got) != list(want):
    sys.exit("keys out of order: %r" % list(got))' <"$T/out" 2>"$T/py.err"; then
		fail stats/json "wrong values" "$T/py.err"
	else
		pass stats/json
	fi
fi

if ! command -v python3 >/dev/null; then
	skip stats/unknown-state "python3 is not installed; it checks the JSON"
elif scenario stats/unknown-state stats-unknown-state 4 0 "" -- stats; then
	if python3 -c 'import json,sys; assert json.load(sys.stdin)["state"] == "unknown"' <"$T/out" 2>/dev/null; then
		pass stats/unknown-state
	else
		fail stats/unknown-state "expected \"state\": \"unknown\"" "$T/out"
	fi
fi

if scenario stats/past-json-range stats-huge 4 1 "past the JSON integer range" -- stats; then
	if [[ -s $T/out ]]; then
		fail stats/past-json-range "printed JSON anyway" "$T/out"
	else
		pass stats/past-json-range
	fi
fi

# ---- refusals and failures ----------------------------------------------------
if scenario status/not-allowed not-allowed 2 3 "" -- resume; then
	if [[ $(cat "$T/err") == "ember-ctl: resume: not allowed: the VM is running" && ! -s $T/out ]]; then
		pass status/not-allowed
	else
		fail status/not-allowed "expected \`ember-ctl: resume: not allowed: the VM is running\` on stderr" "$T/err" "$T/out"
	fi
fi
if scenario status/not-allowed-empty not-allowed-empty 3 3 "" -- snapshot "$T/snap"; then
	if [[ $(cat "$T/err") == "ember-ctl: snapshot: not allowed" ]]; then
		pass status/not-allowed-empty
	else
		fail status/not-allowed-empty "expected \`ember-ctl: snapshot: not allowed\`" "$T/err"
	fi
fi
scenario status/failed failed 3 4 \
	"ember-ctl: snapshot: failed: write snapshot \`/snaps/one\`: No space left on device" \
	-- snapshot /snaps/one && pass status/failed
scenario status/bad-request bad-request 1 4 "ember-ctl: pause: bad request: unknown command" \
	-- pause && pass status/bad-request
if scenario status/hostile-message hostile-message 4 4 "" -- stats; then
	expected='ember-ctl: stats: failed: \x1b[2Jcleared\x0aforged line\\\x00after NUL\x7f\xc3\xa9'
	if [[ $(cat "$T/err") == "$expected" && $(wc -l <"$T/err") == 1 ]]; then
		pass status/hostile-message
	else
		od -c "$T/err" >"$T/err.od"
		fail status/hostile-message "expected the message escaped on one line: $expected" "$T/err.od"
	fi
fi

# ---- malformed responses: each a protocol error (1), at once ----------------
malformed() {
	local name=$1 fake=$2 number=$3 text=$4
	shift 4
	if scenario "malformed/$name" "$fake" "$number" 1 "$text" -- "$@"; then
		if ((ELAPSED > 5000)); then
			fail "malformed/$name" "took $ELAPSED ms: it waited instead of refusing" "$T/err"
		elif [[ -s $T/out ]]; then
			fail "malformed/$name" "printed on stdout" "$T/out"
		else
			pass "malformed/$name"
		fi
	fi
}
malformed wrong-magic wrong-magic 1 "wrong magic 0x43424d45" pause
malformed wrong-version wrong-version 2 "protocol version 2; this client speaks 1" resume
malformed unknown-status unknown-status 5 "unknown status 9" quit
malformed oversized oversized 1 "payload_length 1048576 exceeds the 4096-byte message limit" pause
malformed oversized-message oversized-message 3 "payload_length 4097 exceeds" snapshot /snap
malformed stats-short stats-short 4 "stats response has a 40-byte payload; expected 48" stats
malformed stats-long stats-long 4 "stats response has a 49-byte payload; expected 48" stats
malformed truncated-header truncated-header 1 \
	"pause on \`$SOCK\`: read response header: the VMM closed the connection after 7 of 16 bytes" pause
malformed truncated-payload truncated-payload 2 \
	"read response payload: the VMM closed the connection after 5 of 20 bytes" resume
malformed close-after-request close-after-request 4 \
	"read response header: the VMM closed the connection without answering" stats
# Closed before the request was read: the write or the read fails, by timing.
malformed close-at-once close-at-once -1 "pause on \`$SOCK\`: " pause

# ---- the timeout ------------------------------------------------------------------
if scenario timeout/hang hang 4 1 "no answer within 1 s" -- --timeout 1 stats; then
	if ((ELAPSED < 900 || ELAPSED > 4000)); then
		fail timeout/hang "gave up after $ELAPSED ms, expected about 1000" "$T/err"
	else
		pass timeout/hang
	fi
fi
# One byte every 300 ms: the deadline bounds the whole exchange, not each read.
if scenario timeout/trickle trickle 1 1 "no answer within 1 s" -- -t 1 pause; then
	if ((ELAPSED > 2500)); then
		fail timeout/trickle "gave up after $ELAPSED ms; the deadline restarted on each byte" "$T/err"
	else
		pass timeout/trickle
	fi
fi

# ---- connection errors -----------------------------------------------------------
run_ctl "$T/missing.sock" stats
if expect connect/missing-socket 1; then
	if [[ $(cat "$T/err") == "ember-ctl: connect \`$T/missing.sock\`: No such file or directory" ]]; then
		pass connect/missing-socket
	else
		fail connect/missing-socket "unexpected message" "$T/err"
	fi
fi
: >"$T/not-a-socket"
run_ctl "$T/not-a-socket" pause
expect connect/not-a-socket 1 "connect \`$T/not-a-socket\`: Connection refused" && pass connect/not-a-socket
run_ctl "$T/$(printf 'x%.0s' {1..120})" pause
expect connect/path-too-long 1 "the socket path is longer than 107 bytes" && pass connect/path-too-long

# ---- usage ---------------------------------------------------------------------------
run_ctl --help
if ((STATUS == 0)) && grep -q '^usage: ember-ctl' "$T/out" && grep -q -- '--timeout' "$T/out" &&
	grep -q 'default 30 for snapshot, 10' "$T/out" && ! [[ -s $T/err ]]; then
	pass usage/help
else
	fail usage/help "expected the usage, with the timeouts, on stdout and status 0 (got $STATUS)" "$T/out" "$T/err"
fi
run_ctl -h
((STATUS == 0)) && grep -q '^usage: ember-ctl' "$T/out" && pass usage/h || fail usage/h "status $STATUS" "$T/out"

usage_case() {
	local name=$1 text=$2
	shift 2
	run_ctl "$@"
	if expect "usage/$name" 2 "$text"; then
		if grep -q '^usage: ember-ctl' "$T/err"; then
			pass "usage/$name"
		else
			fail "usage/$name" "no usage text on stderr" "$T/err"
		fi
	fi
}
# Usage is checked before connecting: these name a missing socket, which
# would otherwise exit 1.
usage_case no-arguments "expected SOCK and a command"
usage_case no-command "expected a command" "$T/missing.sock"
usage_case unknown-command "unknown command \`reboot\`" "$T/missing.sock" reboot
usage_case snapshot-without-dir "snapshot takes exactly one DIR" "$T/missing.sock" snapshot
usage_case snapshot-two-dirs "snapshot takes exactly one DIR" "$T/missing.sock" snapshot a b
usage_case snapshot-empty-dir "DIR is empty" "$T/missing.sock" snapshot ""
usage_case extra-argument "pause takes no argument" "$T/missing.sock" pause now
usage_case unknown-option "unknown option \`--frobnicate\`" --frobnicate "$T/missing.sock" stats
usage_case unknown-short-option "unknown option \`-x\`" "$T/missing.sock" stats -xh
usage_case bad-timeout "--timeout \`0\`" --timeout 0 "$T/missing.sock" stats
usage_case timeout-not-a-number "--timeout \`soon\`" --timeout soon "$T/missing.sock" stats
usage_case timeout-missing "--timeout needs a number" --timeout
usage_case empty-socket "SOCK is empty" "" stats

run_ctl "$T/missing.sock" snapshot "/$(head -c 4096 /dev/zero | tr '\0' d)"
expect usage/snapshot-dir-too-long 2 "the absolute path is longer than 4096 bytes" &&
	pass usage/snapshot-dir-too-long

exit $((failures > 0))
