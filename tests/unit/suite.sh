#!/usr/bin/env bash
# The unit-test suite: runs every host-side unit test of the VMM, one
# program per tests/unit/test_NAME.c, built by the Makefile as
# $BUILD/unit/test_NAME.  The programs print "PASS name" / "FAIL name: why"
# themselves; this script passes their lines on, fails a test program that
# is missing, hangs (60 s), or exits non-zero without a FAIL line, and exits
# 1 if anything failed.
set -u

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
failures=0

shopt -s nullglob
sources=("$REPO"/tests/unit/test_*.c)
if ((${#sources[@]} == 0)); then
	echo "SKIP unit: no unit tests in tests/unit"
	exit 0
fi
for source in "${sources[@]}"; do
	name=$(basename "$source" .c)
	program=$BUILD/unit/$name
	if [[ ! -x $program ]]; then
		echo "FAIL $name: not built ($program missing)"
		failures=$((failures + 1))
		continue
	fi
	output=$(cd "$REPO" && timeout -k 5 60 "$program" 2>&1 </dev/null)
	status=$?
	printf '%s\n' "$output" | sed '/^$/d'
	if ((status == 124)); then
		echo "FAIL $name: did not finish within 60 s"
		failures=$((failures + 1))
	elif ((status != 0)) && ! grep -q '^FAIL ' <<<"$output"; then
		echo "FAIL $name: exited with status $status"
		failures=$((failures + 1))
	elif grep -q '^FAIL ' <<<"$output"; then
		failures=$((failures + 1))
	elif ! grep -q '^PASS ' <<<"$output"; then
		echo "FAIL $name: printed no PASS line"
		failures=$((failures + 1))
	fi
done
exit $((failures > 0))
