#!/usr/bin/env bash
# The bundle suite: the unpacker of tenants' code bundles
# (pool-manager/bundle.c), tested without a VM.  Runs its unit tests,
# $BUILD/tests/bundle_test (tests/bundle/test_bundle.c: good zip and tar.gz
# bundles, and every hostile kind refused with nothing left behind), then a
# short run of its fuzz target $BUILD/fuzz/fuzz_bundle (FUZZ_SECONDS,
# default 5).  Builds nothing: the Makefile builds both.
#
# The fixtures go to EMBER_BUNDLE_TMPDIR, by default /dev/shm when it is
# writable (tmpfs: the run takes seconds; on a slow disk the 10,000-entry,
# 2047-deep and 250 MiB cases take about a minute), else $TMPDIR or /tmp.
#
# Prints one line per test: "PASS name", "FAIL name: why" (details
# follow, indented).  Exits 1 if anything failed.  Environment: BUILD
# (default build), FUZZ_SECONDS, EMBER_BUNDLE_TMPDIR, EMBER_SUITE_KEEP=1
# (keep the fuzzer's log and any input it found).
set -u

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
UNIT=$BUILD/tests/bundle_test
FUZZ=$BUILD/fuzz/fuzz_bundle
FUZZ_SECONDS=${FUZZ_SECONDS:-5}
if [[ -n ${EMBER_BUNDLE_TMPDIR:-} ]]; then
	FIXTURES=$EMBER_BUNDLE_TMPDIR
elif [[ -d /dev/shm && -w /dev/shm ]]; then
	FIXTURES=/dev/shm
else
	FIXTURES=${TMPDIR:-/tmp}
fi

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

T=$(mktemp -d "${TMPDIR:-/tmp}/ember-bundle-suite.XXXXXX")
cleanup() {
	if [[ -n ${EMBER_SUITE_KEEP:-} ]]; then
		echo "# kept the suite's files in $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- unit tests ---------------------------------------------------------------
if [[ -x $UNIT ]]; then
	output=$(cd "$REPO" && TMPDIR=$FIXTURES timeout -k 5 300 "$UNIT" 2>&1 </dev/null)
	status=$?
	printf '%s\n' "$output" | sed -e '/^$/d' -e '/^PASS \|^FAIL /!s/^\([^ ]\)/    \1/'
	if grep -q '^FAIL ' <<<"$output"; then
		failures=$((failures + 1))
	elif ((status == 124)); then
		fail unit "bundle_test did not finish within 300 s"
	elif ((status != 0)); then
		fail unit "bundle_test exited with status $status (a sanitizer report?)"
	elif ! grep -q '^PASS ' <<<"$output"; then
		fail unit "bundle_test printed no PASS line"
	fi
else
	fail unit "not built ($UNIT missing)"
fi

# ---- fuzzing ------------------------------------------------------------------
if [[ -x $FUZZ ]]; then
	if (cd "$T" && timeout -k 5 $((FUZZ_SECONDS + 60)) "$FUZZ" -max_total_time="$FUZZ_SECONDS" \
		-artifact_prefix="$T/" >"$T/fuzz.log" 2>&1); then
		pass "fuzz/unpack"
	else
		grep -v '^#\|^INFO\|^\s*$' "$T/fuzz.log" | tail -n 10 >"$T/fuzz.tail"
		fail "fuzz/unpack" "the fuzz target found a failure (EMBER_SUITE_KEEP=1 keeps its input)" "$T/fuzz.tail"
	fi
else
	fail "fuzz/unpack" "not built ($FUZZ missing)"
fi

exit $((failures > 0))
