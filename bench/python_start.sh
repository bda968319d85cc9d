#!/usr/bin/env bash
# Python start-up, start to exit: Debian's python3.11 `-c pass` and
# `-c 'import json'`, inside ember-vmm (--root $BUILD/rootfs/python3) and on
# the host (/usr/bin/python3.11, the same Debian 3.11.2), in the same run.
# Uses hyperfine (--warmup 3 --runs 30, no intermediate shell) when
# installed (and BENCH_NO_HYPERFINE is unset), else bench/host/spawn_time
# with the same counts.  Prints
# "key value" lines: tool, then <case>_median_ms and <case>_stddev_ms for
# the cases ember_pass, host_pass, ember_json, host_json.
# Usage: BUILD=build bash bench/python_start.sh TSC_HZ
set -euo pipefail
BUILD=${BUILD:-build}
HZ=${1:?usage: python_start.sh TSC_HZ}
OUT=$BUILD/bench/raw
mkdir -p "$OUT"

VMM="$BUILD/bin/ember-vmm run --root $BUILD/rootfs/python3 --"
HOST_PYTHON=/usr/bin/python3.11
GUEST_PYTHON=/usr/bin/python3.11
cases=(ember_pass host_pass ember_json host_json)
commands=(
	"$VMM $GUEST_PYTHON -c pass"
	"$HOST_PYTHON -c pass"
	"$VMM $GUEST_PYTHON -c 'import json'"
	"$HOST_PYTHON -c 'import json'"
)
[ -x "$HOST_PYTHON" ] || { echo "python_start: $HOST_PYTHON not found" >&2; exit 1; }

if [ -z "${BENCH_NO_HYPERFINE:-}" ] && command -v hyperfine >/dev/null; then
	echo "tool hyperfine"
	hyperfine -N --style none --warmup 3 --runs 30 \
		--export-json "$OUT/python.json" "${commands[@]}" >/dev/null 2>"$OUT/hyperfine.log" \
		|| { cat "$OUT/hyperfine.log" >&2; exit 1; }
	# hyperfine lists results in command order; times are in seconds.
	"$HOST_PYTHON" - "$OUT/python.json" "${cases[@]}" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
for name, result in zip(sys.argv[2:], results):
    print(f"{name}_median_ms {result['median'] * 1e3:.2f}")
    print(f"{name}_stddev_ms {result['stddev'] * 1e3:.2f}")
PY
else
	echo "tool spawn_time"
	for i in "${!cases[@]}"; do
		eval "set -- ${commands[$i]}"
		"$BUILD/bench/host/spawn_time" --runs 30 --warmup 3 --tsc-hz "$HZ" -- "$@" \
			| awk -v name="${cases[$i]}" '$1 == "exit_median_us" {
				printf "%s_median_ms %.2f\n%s_stddev_ms n/a\n", name, $2 / 1000, name }'
	done
fi
