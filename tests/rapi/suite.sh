#!/usr/bin/env bash
# The Runtime API suite: runs $BUILD/tests/rapi_test, the host-side tests of
# worker/runtime_api.c (built by the Makefile, with the sanitizers, from
# tests/rapi/test_runtime_api.c).  That program starts the server on a
# socket under /tmp and plays a Lambda runtime against it over raw HTTP; it
# prints "PASS name" / "FAIL name: why" itself.  This script passes its
# lines on, and fails the suite when the program is missing, hangs (120 s),
# or exits non-zero without a FAIL line (a sanitizer report).  Needs no KVM.
# Environment: BUILD (default build), RAPI_TEST_VERBOSE=1 (print every
# protocol error the server reports).
set -u

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
PROGRAM=$BUILD/tests/rapi_test

if [[ ! -x $PROGRAM ]]; then
	echo "FAIL rapi_test: not built ($PROGRAM missing)"
	exit 1
fi

output=$(cd "$REPO" && timeout -k 5 120 "$PROGRAM" 2>&1 </dev/null)
status=$?
printf '%s\n' "$output" | sed '/^$/d'
if ((status == 124 || status == 137)); then
	echo "FAIL rapi_test: did not finish within 120 s"
	exit 1
elif grep -q '^FAIL ' <<<"$output"; then
	exit 1
elif ((status != 0)); then
	echo "FAIL rapi_test: exited with status $status (a sanitizer report?)"
	exit 1
elif ! grep -q '^PASS ' <<<"$output"; then
	echo "FAIL rapi_test: printed no PASS line"
	exit 1
fi
exit 0
