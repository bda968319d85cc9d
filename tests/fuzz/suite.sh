#!/usr/bin/env bash
# The fuzz suite: a short run of every libFuzzer target the Makefile builds
# from tests/fuzz/fuzz_*.c ($BUILD/fuzz/fuzz_*; `make fuzzers`), each for
# FUZZ_SECONDS (default 10) on a copy of its seed corpus
# (tests/fuzz/corpus/NAME for fuzz_NAME) with its dictionary
# (tests/fuzz/fuzz_NAME.dict) when there is one.  A target passes when the
# run ends without a crash, a sanitizer report, a leak or a timeout; the
# input that failed is kept with EMBER_SUITE_KEEP=1.  fuzz_ctl_response is
# run by tests/ctl/suite.sh, not here.  Longer runs: tests/fuzz/README.md.
#
# Prints one line per target: "PASS fuzz_NAME", "FAIL fuzz_NAME: why"
# (details follow, indented) or "SKIP ...".  Exits 1 if anything failed.
# Environment: BUILD (default build; a sanitizer build without its own
# fuzzers uses build/fuzz: the targets are always built with sanitizers),
# FUZZ_SECONDS, EMBER_SUITE_KEEP=1.
set -u

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
FUZZ_SECONDS=${FUZZ_SECONDS:-10}

failures=0
pass() { echo "PASS $1"; }
fail() {
	echo "FAIL $1: $2"
	failures=$((failures + 1))
	[[ -n ${3:-} && -s $3 ]] && head -n 20 "$3" | sed 's/^/    /'
	return 0
}

T=$(mktemp -d /tmp/ember-fuzz-suite.XXXXXX)
cleanup() {
	if [[ -n ${EMBER_SUITE_KEEP:-} ]]; then
		echo "# kept the suite's files in $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every target with a source here, and any other the build holds but the
# ctl suite's.
targets=()
for source in "$REPO"/tests/fuzz/fuzz_*.c; do
	[[ -f $source ]] && targets+=("$(basename "$source" .c)")
done
for binary in "$BUILD"/fuzz/fuzz_*; do
	[[ -x $binary ]] || continue
	target=$(basename "$binary")
	[[ $target == fuzz_ctl_response ]] && continue
	case " ${targets[*]} " in *" $target "*) ;; *) targets+=("$target") ;; esac
done

ran=0
for target in "${targets[@]}"; do
	name=${target#fuzz_}
	binary=$BUILD/fuzz/$target
	[[ -x $binary ]] || binary=$REPO/build/fuzz/$target
	if [[ ! -x $binary ]]; then
		fail "$target" "not built ($BUILD/fuzz/$target missing: make fuzzers)"
		continue
	fi
	ran=$((ran + 1))
	work=$T/$target
	mkdir -p "$work/corpus" "$work/artifacts"
	if [[ -d $REPO/tests/fuzz/corpus/$name ]]; then
		cp -r "$REPO/tests/fuzz/corpus/$name/." "$work/corpus/"
	fi
	options=(-max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
		-artifact_prefix="$work/artifacts/")
	[[ -f $REPO/tests/fuzz/$target.dict ]] && options+=(-dict="$REPO/tests/fuzz/$target.dict")
	timeout -k 5 $((FUZZ_SECONDS + 120)) "$binary" "${options[@]}" "$work/corpus" \
		>"$work/log" 2>&1 </dev/null
	status=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
	if ((status == 0)); then
		pass "$target"
		echo "    ${runs:-?} inputs in $FUZZ_SECONDS s, corpus $(find "$work/corpus" -type f | wc -l) files"
	else
		grep -E 'ERROR|SUMMARY|runtime error|Test unit written|fuzz_|#[0-9]+ +0x' "$work/log" | head -n 20 \
			>"$work/tail"
		fail "$target" "exit status $status: a crash, sanitizer report, leak or timeout (EMBER_SUITE_KEEP=1 keeps the input)" \
			"$work/tail"
	fi
done
if ((ran == 0 && failures == 0)); then
	fail fuzz "no fuzz targets found in tests/fuzz"
fi
exit $((failures > 0))
