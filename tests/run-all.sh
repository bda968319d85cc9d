#!/usr/bin/env bash
# Runs every test suite under tests/ (each tests/NAME/suite.sh) and sums
# their results.  A suite prints one line per test: "PASS name",
# "FAIL name: why" or "SKIP name: why"; other lines are details and pass
# through.  This script prefixes each result with the suite's name, treats a
# suite that exits non-zero without a FAIL line, or prints no result at all,
# as failed, and ends with exactly one line:
#     N passed, N failed            (or "N passed, N failed, N skipped")
# It exits 1 if anything failed.  BUILD (default build) says where the
# binaries are; it is passed on to every suite.
set -u

REPO=$(cd "$(dirname "$0")/.." && pwd)
export BUILD=${BUILD:-build}
cd "$REPO" || exit 1

passed=0
failed=0
skipped=0

# Host-side unit tests first, then the VM suite, then anything else.
suites=()
for name in unit vm; do
	[[ -f tests/$name/suite.sh ]] && suites+=("tests/$name/suite.sh")
done
for s in tests/*/suite.sh; do
	[[ -f $s ]] || continue
	case " ${suites[*]} " in *" $s "*) ;; *) suites+=("$s") ;; esac
done

if ((${#suites[@]} == 0)); then
	echo "FAIL run-all: no test suites found under tests/*/suite.sh"
	failed=1
fi

for suite in "${suites[@]}"; do
	name=$(basename "$(dirname "$suite")")
	echo "# suite $name"
	start=$SECONDS
	suite_pass=0 suite_fail=0 suite_skip=0 suite_exit=
	while IFS= read -r line; do
		case $line in
		"PASS "*)
			echo "PASS $name/${line#PASS }"
			suite_pass=$((suite_pass + 1))
			;;
		"FAIL "*)
			echo "FAIL $name/${line#FAIL }"
			suite_fail=$((suite_fail + 1))
			;;
		"SKIP "*)
			echo "SKIP $name/${line#SKIP }"
			suite_skip=$((suite_skip + 1))
			;;
		"@@suite-exit "*)
			suite_exit=${line#@@suite-exit }
			;;
		*)
			echo "$line"
			;;
		esac
	done < <(bash "$suite" 2>&1 </dev/null; echo "@@suite-exit $?")
	if [[ ${suite_exit:-1} != 0 && $suite_fail == 0 ]]; then
		echo "FAIL $name: the suite exited with status ${suite_exit:-unknown} without reporting a failure"
		suite_fail=1
	elif ((suite_pass + suite_fail + suite_skip == 0)); then
		echo "FAIL $name: the suite reported no results"
		suite_fail=1
	fi
	echo "# suite $name: $suite_pass passed, $suite_fail failed, $suite_skip skipped in $((SECONDS - start)) s"
	passed=$((passed + suite_pass))
	failed=$((failed + suite_fail))
	skipped=$((skipped + suite_skip))
done

if ((skipped > 0)); then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
exit $((failed > 0))
