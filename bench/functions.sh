#!/usr/bin/env bash
# Function benchmarks (issue 4), called by bench/run-all.sh once its table is
# written (it has built $BUILD/bench/host/spawn_time):
#   BUILD=build bash bench/functions.sh TSC_HZ [RESULTS_MD]
# Measures, in one run, for the python3 hello function
# (tests/runtimes/fixtures/hello, event {"name":"world"}, --mem 128):
# 1. Build: `ember-build-fn` of the zip bundle, wall clock, 5 builds; the
#    snapshot's size, apparent and allocated (du).
# 2. End to end: posix_spawn of `ember-invoke DIR --event FILE` (restore +
#    invoke + result) to the response's first byte on its stdout, and to its
#    exit (VM teardown included), with spawn_time --first-output, RUNS runs
#    (default 200, BENCH_INVOKE_RUNS) after 5 warm-up runs.  In the same run
#    and the same way: the same handler as a fresh host process per request,
#    `/usr/bin/python3.11 -c` importing lambda_function from a copy of the
#    fixture and printing handler(event, context) as JSON.  Also the floor
#    of any process start here: /bin/true and `ember-invoke --help`.
# 3. Warm: `ember-invoke --warm` restores the VM paused and pre-touched
#    (what a warm pool holds), then pushes the event and resumes it, and
#    prints "event in to result out: N us" on stderr; RUNS runs.  Without
#    --warm in this ember-invoke the row says "not yet measured".
# 4. Where the time goes: one invocation under `strace -f -ttt -T` split
#    into phases; and, when /sys/kernel/tracing/instances is writable (root),
#    one cold and one warm invocation with the kvm trace events on, in a
#    private tracing instance removed afterwards, counting
#    kvm_unmap_hva_range (host mappings of guest memory invalidated: a
#    copy-on-write break of a snapshot page the guest writes) and
#    kvm_userspace_exit (exits to the VMM).  BENCH_NO_KVM_TRACE=1 skips it.
# Prints "key value" lines on stdout (also kept in $BUILD/bench/raw/functions);
# with RESULTS_MD, inserts its rows after the last row of that Markdown table
# and appends a paragraph of notes.  Working files: $BUILD/bench/functions/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
HZ=${1:?usage: functions.sh TSC_HZ [RESULTS_MD]}
RESULTS=${2:-}
BIN=$PWD/$BUILD/bin
SPAWN_TIME=$PWD/$BUILD/bench/host/spawn_time
WORK=$PWD/$BUILD/bench/functions
RAW_DIR=$PWD/$BUILD/bench/raw
RAW=$RAW_DIR/functions
FIXTURE=$PWD/tests/runtimes/fixtures/hello
LIB=$PWD/tests/functions/fnlib.py
HOST_PYTHON=/usr/bin/python3.11
RUNS=${BENCH_INVOKE_RUNS:-200}
TRACEFS=/sys/kernel/tracing
TRACE_INSTANCE=$TRACEFS/instances/ember-bench-functions-$$

fail() { echo "functions.sh: $*" >&2; exit 1; }
for tool in "$BIN/ember-build-fn" "$BIN/ember-invoke" "$BIN/ember-vmm" "$HOST_PYTHON"; do
	[ -x "$tool" ] || fail "$tool is missing: run make first"
done
if [ ! -x "$SPAWN_TIME" ]; then
	mkdir -p "$(dirname "$SPAWN_TIME")"
	gcc -std=gnu11 -O2 -Wall -Wextra -Werror -Ibench -o "$SPAWN_TIME" bench/host/spawn_time.c
fi
cleanup() {
	[ -d "$TRACE_INSTANCE" ] && { echo 0 >"$TRACE_INSTANCE/events/kvm/enable"; rmdir "$TRACE_INSTANCE"; } 2>/dev/null
	return 0
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK" "$RAW_DIR"
: >"$RAW"
say() { echo "$*" | tee -a "$RAW"; }
# stats NAME FILE: min/median/p99/max (µs) of the numbers in FILE, one per line.
stats() {
	"$HOST_PYTHON" - "$1" "$2" <<'PY' | tee -a "$RAW"
import sys
name, path = sys.argv[1], sys.argv[2]
values = sorted(float(line) for line in open(path) if line.strip())
def pct(p):
    return values[min(len(values) - 1, int(p / 100 * len(values)))]
print(f"{name}_runs {len(values)}")
for key, value in (("min", values[0]), ("median", values[len(values) // 2]), ("p99", pct(99)), ("max", values[-1])):
    print(f"{name}_{key}_us {value:.1f}")
PY
}
# spawn NAME ARGS...: spawn_time --first-output over RUNS runs; its keys prefixed NAME_.
spawn() {
	local name=$1
	shift
	"$SPAWN_TIME" --runs "$RUNS" --warmup 5 --tsc-hz "$HZ" "$@" 2>"$WORK/$name.stderr" >"$WORK/$name.raw" ||
		{ cat "$WORK/$name.stderr" >&2; fail "$name failed"; }
	sed "s/^/${name}_/" "$WORK/$name.raw" | tee -a "$RAW"
}

load=$(cut -d' ' -f1 /proc/loadavg)
say "load_before $load"

# ---- 1. build --------------------------------------------------------------------
"$HOST_PYTHON" "$LIB" bundle zip "$WORK/hello.zip" "$FIXTURE"
printf '{"name":"world"}' >"$WORK/event.json"
: >"$WORK/build_ms"
for _ in 1 2 3 4 5; do
	rm -rf "$WORK/fn"
	start=$(date +%s%N)
	"$BIN/ember-build-fn" --runtime python3 --handler lambda_function.handler --bundle "$WORK/hello.zip" \
		--mem 128 --env GREETING=bench --name hello --out "$WORK/fn" 2>"$WORK/build.log" ||
		{ cat "$WORK/build.log" >&2; fail "ember-build-fn failed"; }
	echo $((($(date +%s%N) - start) / 1000)) >>"$WORK/build_ms"
done
stats build "$WORK/build_ms"
FN=$WORK/fn
say "snapshot_apparent_bytes $(du -s -B1 --apparent-size "$FN/snapshot" | cut -f1)"
say "snapshot_allocated_bytes $(du -s -B1 "$FN/snapshot" | cut -f1)"
say "snapshot_memory_file_bytes $(stat -c %s "$FN/snapshot/memory")"
say "snapshot_state_bytes $(stat -c %s "$FN/snapshot/state")"
"$BIN/ember-invoke" "$FN" --event "$WORK/event.json" >"$WORK/answer.json" 2>"$WORK/invoke.stderr" ||
	{ cat "$WORK/invoke.stderr" >&2; fail "ember-invoke of hello failed"; }
grep -q '"hello world"' "$WORK/answer.json" || fail "unexpected answer: $(head -c 300 "$WORK/answer.json")"

# ---- 2. end to end, and a fresh host python3 per request ---------------------------------
mkdir -p "$WORK/host-task"
cp "$FIXTURE/lambda_function.py" "$WORK/host-task/"
HOST_CODE="import json, sys
sys.path.insert(0, '$WORK/host-task')
import lambda_function
class Context:
    aws_request_id = '00000000-0000-4000-8000-000000000000'
    function_name = 'hello'
    function_version = '\$LATEST'
    memory_limit_in_mb = '128'
    def get_remaining_time_in_millis(self):
        return 3000
event = json.loads(open('$WORK/event.json').read())
print(json.dumps(lambda_function.handler(event, Context()), ensure_ascii=False, separators=(',', ':')))"
GREETING=bench "$HOST_PYTHON" -c "$HOST_CODE" >"$WORK/host_answer.json"
grep -q '"hello world"' "$WORK/host_answer.json" || fail "the host baseline answered $(cat "$WORK/host_answer.json")"
export GREETING=bench
spawn invoke --first-output -- "$BIN/ember-invoke" "$FN" --event "$WORK/event.json"
spawn host --first-output -- "$HOST_PYTHON" -c "$HOST_CODE"
spawn true -- /bin/true
spawn invoke_help -- "$BIN/ember-invoke" --help

# ---- 3. warm: restored paused and pre-touched ahead of the event ----------------------------
if "$BIN/ember-invoke" --help 2>&1 | grep -q -- --warm; then
	say "warm_supported 1"
	: >"$WORK/warm_us"
	: >"$WORK/warm_total_us"
	for _ in $(seq 5); do "$BIN/ember-invoke" "$FN" --event "$WORK/event.json" --warm >/dev/null 2>&1 || true; done
	for _ in $(seq "$RUNS"); do
		start=$(date +%s%N)
		"$BIN/ember-invoke" "$FN" --event "$WORK/event.json" --warm >"$WORK/warm.out" 2>"$WORK/warm.err" ||
			{ cat "$WORK/warm.err" >&2; fail "ember-invoke --warm failed"; }
		echo $((($(date +%s%N) - start) / 1000)) >>"$WORK/warm_total_us"
		grep -q '"hello world"' "$WORK/warm.out" || fail "ember-invoke --warm answered $(head -c 200 "$WORK/warm.out")"
		sed -n 's/.*event in to result out: \([0-9]*\) us.*/\1/p' "$WORK/warm.err" >>"$WORK/warm_us"
	done
	[ -s "$WORK/warm_us" ] || fail "ember-invoke --warm printed no 'event in to result out' line"
	stats warm "$WORK/warm_us"
	stats warm_total "$WORK/warm_total_us"
	# The same without the hot pages the first invocation recorded (moved
	# aside for these runs): what preparing them is worth.
	if [ -f "$FN/hot-pages" ]; then
		say "warm_hot_pages_lines $(($(wc -l <"$FN/hot-pages") - 1))"
		mv "$FN/hot-pages" "$WORK/hot-pages.saved"
		: >"$WORK/warm_nohot_us"
		for _ in $(seq 50); do
			"$BIN/ember-invoke" "$FN" --event "$WORK/event.json" --warm >/dev/null 2>"$WORK/warm.err" ||
				{ mv "$WORK/hot-pages.saved" "$FN/hot-pages"; fail "ember-invoke --warm (no hot pages) failed"; }
			sed -n 's/.*event in to result out: \([0-9]*\) us.*/\1/p' "$WORK/warm.err" >>"$WORK/warm_nohot_us"
		done
		mv "$WORK/hot-pages.saved" "$FN/hot-pages"
		stats warm_nohot "$WORK/warm_nohot_us"
	fi
else
	say "warm_supported 0"
fi

# ---- 4. where the time goes ------------------------------------------------------------
if command -v strace >/dev/null; then
	strace -f -ttt -T -o "$WORK/invoke.strace" "$BIN/ember-invoke" "$FN" --event "$WORK/event.json" >/dev/null 2>&1 ||
		fail "ember-invoke under strace failed"
	"$HOST_PYTHON" - "$WORK/invoke.strace" <<'PY' | tee -a "$RAW"
import re, sys
lines = open(sys.argv[1]).read().splitlines()
line_re = re.compile(r"^(\d+)\s+([\d.]+)\s+(.*)$")
events = [(int(m.group(1)), float(m.group(2)), m.group(3)) for m in map(line_re.match, lines) if m]
t0 = events[0][1]
invoke_pid = events[0][0]
def first(predicate):
    for pid, t, text in events:
        if predicate(pid, text):
            return t
    return None
vmm_exec = first(lambda pid, text: text.startswith('execve("') and "ember-vmm" in text)
vmm_pid = next((pid for pid, t, text in events if t == vmm_exec), None)
vmm_state = first(lambda pid, text: pid == vmm_pid and "snapshot/state" in text)
first_run = first(lambda pid, text: pid == vmm_pid and "KVM_RUN" in text)
answer = first(lambda pid, text: text.startswith("write(1,"))
end = events[-1][1]
runs = sum(1 for pid, t, text in events if pid == vmm_pid and text.startswith("ioctl(") and "KVM_RUN" in text)
if None in (vmm_exec, vmm_state, first_run, answer):
    print("strace_phases_us unparsed")
else:
    phases = [("invoke_start", vmm_exec - t0), ("vmm_exec_and_link", vmm_state - vmm_exec),
              ("restore", first_run - vmm_state), ("guest_to_answer", answer - first_run),
              ("teardown", end - answer)]
    print("strace_phases_us " + ",".join("%s=%.0f" % (name, value * 1e6) for name, value in phases))
    print("strace_total_us %.0f" % ((end - t0) * 1e6))
    print("strace_kvm_runs %d" % runs)
    libs = sum(1 for pid, t, text in events if pid == invoke_pid and t < vmm_exec and text.startswith("openat(") and ".so" in text)
    print("strace_invoke_libraries %d" % libs)
    # The slowest calls that do work (waits for another process or thread left out).
    waits = {"poll", "ppoll", "epoll_wait", "epoll_pwait", "wait4", "futex", "clock_nanosleep", "nanosleep",
             "accept4", "read", "recvfrom", "recvmsg", "select", "pselect6"}
    def call_name(text):
        m = re.match(r"<\.\.\. (\w+) resumed>", text) or re.match(r"(\w+)\(", text)
        name = m.group(1) if m else "?"
        if name == "ioctl":
            k = re.search(r"(KVM_\w+)", text)
            name = k.group(1) if k else name
        return name
    slow = sorted(((float(m.group(1)), call_name(text)) for pid, t, text in events
                   for m in [re.search(r"<([\d.]+)>$", text)] if m and call_name(text) not in waits), reverse=True)[:6]
    print("strace_slowest_calls " + ",".join("%s=%.0f" % (name, d * 1e6) for d, name in slow))
PY
else
	say "strace_phases_us strace-not-installed"
fi

# kvm_trace NAME ARGS...: runs one ember-invoke with the kvm trace events on and
# counts kvm_unmap_hva_range and kvm_userspace_exit.
kvm_trace() {
	local name=$1
	shift
	echo >"$TRACE_INSTANCE/trace"
	echo 1 >"$TRACE_INSTANCE/events/kvm/enable"
	"$BIN/ember-invoke" "$FN" --event "$WORK/event.json" "$@" >/dev/null 2>"$WORK/$name.trace.err" || true
	echo 0 >"$TRACE_INSTANCE/events/kvm/enable"
	cp "$TRACE_INSTANCE/trace" "$WORK/$name.kvm.trace"
	say "${name}_kvm_unmap_hva_range $(grep -c 'kvm_unmap_hva_range:' "$WORK/$name.kvm.trace" || true)"
	say "${name}_kvm_userspace_exit $(grep -c 'kvm_userspace_exit:' "$WORK/$name.kvm.trace" || true)"
}
if [ -z "${BENCH_NO_KVM_TRACE:-}" ] && [ -w "$TRACEFS/instances" ] &&
	grep -q '^kvm:kvm_unmap_hva_range$' "$TRACEFS/available_events" 2>/dev/null &&
	mkdir "$TRACE_INSTANCE" 2>/dev/null; then
	echo 4096 >"$TRACE_INSTANCE/buffer_size_kb"
	kvm_trace cold
	if "$BIN/ember-invoke" --help 2>&1 | grep -q -- --warm; then
		kvm_trace warm --warm
		say "warm_traced_us $(sed -n 's/.*event in to result out: \([0-9]*\) us.*/\1/p' "$WORK/warm.trace.err")"
		# When, relative to the warm VM's resume, the invalidations happen.
		"$HOST_PYTHON" - "$WORK/warm.kvm.trace" <<'PY' | tee -a "$RAW"
import re, sys
rows = [(float(m.group(1)), m.group(2)) for m in (re.search(r"\s([\d.]+):\s+(kvm_\w+):", line) for line in open(sys.argv[1])) if m]
exits = [t for t, name in rows if name == "kvm_userspace_exit"]
unmaps = [t for t, name in rows if name == "kvm_unmap_hva_range"]
if exits and unmaps:
    # the pre-touch happens before the first exit; the invocation after it
    start = exits[0]
    after = [t for t in unmaps if t >= start]
    print("warm_unmaps_after_resume %d" % len(after))
    if after:
        print("warm_unmap_span_us %.0f" % ((after[-1] - after[0]) * 1e6))
PY
	fi
	rmdir "$TRACE_INSTANCE" 2>/dev/null || true
else
	say "kvm_trace skipped"
fi
say "load_after $(cut -d' ' -f1 /proc/loadavg)"

# ---- report -------------------------------------------------------------------------------
[ -n "$RESULTS" ] || exit 0
[ -f "$RESULTS" ] || fail "$RESULTS does not exist"
"$HOST_PYTHON" - "$RAW" "$RESULTS" "$BUILD" "$RUNS" <<'PY'
import sys
raw_path, results_path, build, runs = sys.argv[1:5]
raw = {}
for line in open(raw_path):
    key, _, value = line.rstrip("\n").partition(" ")
    raw[key] = value
def f(key):
    return float(raw[key])
def ms(key):
    return "%.2f" % (f(key) / 1000)
def trio(prefix, suffix=""):
    return "%s / %s / %s ms" % (ms(prefix + "_min_us" + suffix), ms(prefix + "_median_us" + suffix), ms(prefix + "_p99_us" + suffix))
def yes(condition):
    return "yes" if condition else "no"
mib = lambda key: "%.1f" % (f(key) / 1048576)

e2e, host = f("invoke_first_median_us"), f("host_first_median_us")
rows = []
rows.append("| **Functions** (issue 4): python3 hello (tests/runtimes/fixtures/hello, 128 MiB) from a function snapshot, "
            "`ember-invoke DIR --event FILE` (restore + invoke + result): posix_spawn to the response's first byte on its stdout, "
            "min / median / p99 of %s; host: `/usr/bin/python3.11 -c` importing the handler module and printing its JSON, a fresh process per request |"
            " %s | %s | %.2fx (medians; host / Ember %.2fx) | < 10 ms median, >= 3x faster than host python3 (4) | %s (< 10 ms: %s; >= 3x: %s) |"
            % (raw["invoke_runs"], trio("invoke_first"), trio("host_first"), e2e / host, host / e2e,
               yes(e2e < 10000 and 3 * e2e <= host), yes(e2e < 10000), yes(3 * e2e <= host)))
rows.append("| The same to exit (posix_spawn to waitpid: the VM's teardown and ember-invoke's exit included), median; "
            "process-start floor here: `/bin/true` and `ember-invoke --help`, posix_spawn to exit, median |"
            " %s ms | host python3 %s ms; `/bin/true` %s ms; `ember-invoke --help` %s ms | %.2fx | | |"
            % (ms("invoke_exit_median_us"), ms("host_exit_median_us"), ms("true_exit_median_us"),
               ms("invoke_help_exit_median_us"), f("invoke_exit_median_us") / f("host_exit_median_us")))
if raw.get("warm_supported") == "1":
    warm = f("warm_median_us")
    rows.append("| Warm VM (what a pool holds): `ember-invoke --warm` restores `--paused --pretouch`, then pushes the event and resumes; "
                "event in to result out (its own clock), min / median / p99 of %s |"
                " %s | end to end of those runs (fork+exec of ember-invoke to exit) %s / %s / %s ms | | < 2 ms (4) | %s |"
                % (raw["warm_runs"], trio("warm"), ms("warm_total_min_us"), ms("warm_total_median_us"), ms("warm_total_p99_us"),
                   yes(warm < 2000)))
    if "warm_nohot_median_us" in raw:
        rows.append("| The same warm VM without the recorded hot pages (`DIR/hot-pages`, %s pages read or written by the first invocation, moved aside): "
                    "event in to result out, min / median / p99 of %s | %s | with hot pages %s ms (median) | %.1fx | | |"
                    % (raw["warm_hot_pages_lines"], raw["warm_nohot_runs"], trio("warm_nohot"), ms("warm_median_us"),
                       f("warm_nohot_median_us") / warm))
else:
    rows.append("| Warm VM: event in to result out | **not yet measured**: this ember-invoke has no --warm mode "
                "(needed: restore `--paused --pretouch`, push the event, resume, time the push to the response) | | | < 2 ms (4) | |")
rows.append("| Function snapshot build: `ember-build-fn` of the hello zip (unpack, VM start, python3 start, import, snapshot at the first /next), wall, min / median of %s; "
            "snapshot size apparent / allocated (memory file %s MiB + state %s B) |"
            " %s / %s ms; %s / %s MiB | | | | |"
            % (raw["build_runs"], mib("snapshot_memory_file_bytes"), raw["snapshot_state_bytes"], ms("build_min_us"), ms("build_median_us"),
               mib("snapshot_apparent_bytes"), mib("snapshot_allocated_bytes")))

lines = open(results_path).read().split("\n")
last = max(i for i, line in enumerate(lines) if line.startswith("|"))
lines[last + 1:last + 1] = rows

notes = ["Functions (issue 4), bench/functions.sh: files in %s/bench/functions/, raw figures in %s/bench/raw/functions; load average %s before, %s after."
         % (build, build, raw.get("load_before"), raw.get("load_after"))]
if "strace_total_us" in raw:
    notes.append("One `ember-invoke` under `strace -f -ttt -T` (strace inflates every call): %s µs in all, phases in µs: %s;"
                 " ember-invoke loads %s shared libraries before it spawns ember-vmm; %s KVM_RUN calls; slowest calls (µs): %s."
                 % (raw["strace_total_us"], raw["strace_phases_us"].replace(",", ", "), raw.get("strace_invoke_libraries"),
                    raw.get("strace_kvm_runs"), raw.get("strace_slowest_calls", "").replace(",", ", ")))
if "cold_kvm_unmap_hva_range" in raw:
    text = ("KVM trace events of one invocation: cold, %s kvm_unmap_hva_range and %s kvm_userspace_exit"
            % (raw["cold_kvm_unmap_hva_range"], raw["cold_kvm_userspace_exit"]))
    if "warm_kvm_unmap_hva_range" in raw:
        text += ("; warm, %s kvm_unmap_hva_range (%s of them after the resume, over %s µs) and %s kvm_userspace_exit, that run's event in to result out %s µs"
                 % (raw["warm_kvm_unmap_hva_range"], raw.get("warm_unmaps_after_resume", "?"), raw.get("warm_unmap_span_us", "?"),
                    raw["warm_kvm_userspace_exit"], raw.get("warm_traced_us", "?")))
    notes.append(text + ". A kvm_unmap_hva_range while the guest runs is the host breaking copy-on-write on a snapshot page the guest writes.")
lines.append(" ".join(notes))
lines.append("")
open(results_path, "w").write("\n".join(lines))
PY
