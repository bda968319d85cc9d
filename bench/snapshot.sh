#!/usr/bin/env bash
# Snapshot benchmarks (issue 3), called by bench/run-all.sh after it has built
# $BUILD/bench/guest/read_write and $BUILD/bench/host/spawn_time:
#   BUILD=build bash bench/snapshot.sh TSC_HZ
# Prints "key value" lines on stdout (bench/run-all.sh keeps them in
# $BUILD/bench/raw/snapshot and builds the table from them); its working
# files (snapshots, the OCI bundle, logs, one strace) are in $BUILD/bench/snap/.
#
# 1. Snapshots: read_write (static C) blocked in read(0) in a 128 MiB guest;
#    python3.11 -c 'import json, sys; sys.stdin.read(1); print("ok")' blocked
#    in its read; read_write --touch 64 in a 256 MiB guest.  Each is paused,
#    then `ember-ctl snapshot` is timed (wall clock around that command alone).
# 2. Process start to first output (spawn_time --first-output --stdin-byte: the
#    child's stdin already holds one byte): `ember-vmm restore` of the
#    read_write snapshot; a fresh `ember-vmm run` of read_write; read_write run
#    on the host; `runc run` and `crun run` of a busybox bundle running
#    /bin/true (start to exit: it prints nothing); the python3 snapshot
#    restored against `python3.11 -c 'import json; print("ok")'` on the host.
# 3. 50 VMs restored at once from the python3 snapshot, --paused, then resumed
#    (blocked on stdin): per-VM host memory from `ember-ctl stats` and from
#    /proc/PID/smaps_rollup.
# 4. ember-snapshot pack/unpack of the 256 MiB snapshot, if that tool exists.
# A runtime that cannot start a container here is reported as
# "<runtime>_error REASON" instead of failing the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
HZ=${1:?usage: snapshot.sh TSC_HZ}
VMM=$PWD/$BUILD/bin/ember-vmm
CTL=$PWD/$BUILD/bin/ember-ctl
PACKER=$PWD/$BUILD/bin/ember-snapshot
SPAWN_TIME=$PWD/$BUILD/bench/host/spawn_time
GUESTS=$PWD/$BUILD/bench/guest
WORK=$PWD/$BUILD/bench/snap
BASE_ROOT=$PWD/$BUILD/rootfs/base
PYTHON_ROOT=$PWD/$BUILD/rootfs/python3
HOST_PYTHON=/usr/bin/python3.11
PY_SCRIPT='import json, sys; sys.stdin.read(1); print("ok")'
RESTORE_RUNS=${BENCH_RESTORE_RUNS:-200}
POOL=${BENCH_POOL:-50}

fail() { echo "snapshot.sh: $*" >&2; exit 1; }
for tool in "$VMM" "$CTL" "$SPAWN_TIME" "$GUESTS/read_write" "$HOST_PYTHON"; do
	[ -x "$tool" ] || fail "$tool is missing"
done
rm -rf "$WORK"
mkdir -p "$WORK"

# A FIFO opened read-write here stays open with nothing in it: a guest reading
# it as stdin blocks until we close it.
mkfifo "$WORK/stdin.fifo"
exec {HOLD}<>"$WORK/stdin.fifo"

pids=() # VMMs started here and not yet reaped: killed if the script fails
forget() { # forget PID: it has been reaped (its number may be reused)
	local kept=() pid
	for pid in "${pids[@]}"; do [ "$pid" = "$1" ] || kept+=("$pid"); done
	pids=("${kept[@]}")
}
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

now_us() { echo "${EPOCHREALTIME/./}"; }
# stat_field JSON KEY: a numeric field of `ember-ctl stats` output.
stat_field() { sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p" <<<"$1"; }

# wait_blocked SOCK: waits until the VM behind SOCK answers stats and its
# system-call count has not moved for 3 polls 100 ms apart (the guest is
# blocked in its read of stdin).  Fails after 20 s.
wait_blocked() {
	local previous=-1 same=0 stats count
	for _ in $(seq 200); do
		sleep 0.1
		stats=$("$CTL" "$1" stats 2>/dev/null) || continue
		count=$(stat_field "$stats" syscalls)
		if [ "$count" = "$previous" ]; then
			same=$((same + 1))
			[ "$same" -ge 3 ] && return 0
		else
			same=0
			previous=$count
		fi
	done
	fail "the VM on $1 never settled (last stats: ${stats:-none})"
}

# start_guest NAME ready|settle VMM-RUN-ARGS...: starts `ember-vmm run
# --control-sock` with stdin the empty FIFO and waits until its guest blocks
# reading it: with `ready`, first until the guest has said "ready" on stderr
# (read_write --ready/--touch, whose memory touching makes no system calls).
start_guest() {
	local name=$1 mode=$2
	shift 2
	"$VMM" run --control-sock "$WORK/$name.sock" "$@" <"$WORK/stdin.fifo" \
		>"$WORK/$name.out" 2>"$WORK/$name.err" &
	pids+=($!)
	eval "${name}_pid=$!"
	if [ "$mode" = ready ]; then
		for _ in $(seq 400); do
			grep -q ready "$WORK/$name.err" && break
			sleep 0.05
		done
		grep -q ready "$WORK/$name.err" || fail "$name never got ready: $(cat "$WORK/$name.err")"
	fi
	wait_blocked "$WORK/$name.sock"
}

# snapshot_to NAME DIR: snapshots the paused VM NAME into DIR; prints the wall
# time of that ember-ctl command alone, in microseconds.
snapshot_to() {
	local before after
	before=$(now_us)
	"$CTL" "$WORK/$1.sock" snapshot "$2" >/dev/null || fail "ember-ctl snapshot $2 failed"
	after=$(now_us)
	echo $((after - before))
}

# stop_guest NAME: quits the VM and reaps it.
stop_guest() {
	local pid_var="${1}_pid"
	"$CTL" "$WORK/$1.sock" quit >/dev/null 2>&1 || true
	wait "${!pid_var}" 2>/dev/null || true
	forget "${!pid_var}"
}

# sizes DIR PREFIX: apparent and allocated bytes of a snapshot directory.
sizes() {
	echo "${2}_apparent_bytes $(find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')"
	echo "${2}_allocated_bytes $(find "$1" -type f -printf '%b\n' | awk '{ s += $1 * 512 } END { print s }')"
}

# ---- 1. snapshots ----------------------------------------------------------
echo "snapshot.sh: snapshots" >&2
start_guest rw ready --root "$BASE_ROOT" --task "$GUESTS" -- /var/task/read_write --ready
"$CTL" "$WORK/rw.sock" pause >/dev/null
echo "small_save_us $(snapshot_to rw "$WORK/rw.snap")"
sizes "$WORK/rw.snap" small
stop_guest rw

start_guest py settle --root "$PYTHON_ROOT" -- /usr/bin/python3.11 -c "$PY_SCRIPT"
"$CTL" "$WORK/py.sock" pause >/dev/null
echo "python_save_us $(snapshot_to py "$WORK/py.snap")"
sizes "$WORK/py.snap" python
stop_guest py

start_guest big ready --mem 256 --root "$BASE_ROOT" --task "$GUESTS" -- /var/task/read_write --touch 64
big_stats=$("$CTL" "$WORK/big.sock" stats)
echo "big_guest_memory_bytes $(stat_field "$big_stats" guest_memory_bytes)"
"$CTL" "$WORK/big.sock" pause >/dev/null
saves=()
for attempt in 1 2 3; do
	saves+=("$(snapshot_to big "$WORK/big.snap.$attempt")")
done
echo "big_save_us_each $(IFS=,; echo "${saves[*]}")"
echo "big_save_median_us $(printf '%s\n' "${saves[@]}" | sort -n | sed -n 2p)"
sizes "$WORK/big.snap.1" big
stop_guest big
rm -rf "$WORK/big.snap.2" "$WORK/big.snap.3"

# ---- 2. start to first output ------------------------------------------------
# time NAME SPAWN_TIME-ARGS...: runs spawn_time and prints its keys prefixed NAME_.
time_it() {
	local name=$1
	shift
	local output
	echo "snapshot.sh: $name" >&2
	output=$("$SPAWN_TIME" --tsc-hz "$HZ" "$@") || fail "$name: spawn_time $* failed"
	awk -v name="$name" '{ print name "_" $1, $2 }' <<<"$output"
}
time_it restore --first-output --stdin-byte --runs "$RESTORE_RUNS" --warmup 5 -- \
	"$VMM" restore "$WORK/rw.snap"
time_it fresh --first-output --stdin-byte --runs "$RESTORE_RUNS" --warmup 5 -- \
	"$VMM" run --root "$BASE_ROOT" --task "$GUESTS" -- /var/task/read_write
time_it host --first-output --stdin-byte --runs "$RESTORE_RUNS" --warmup 5 -- "$GUESTS/read_write"

# The phase inside ember-vmm: main() to the vCPU's first run, as --trace
# reports it on stderr, over 50 more restores timed the same way.
echo "snapshot.sh: restore phases" >&2
"$SPAWN_TIME" --tsc-hz "$HZ" --first-output --stdin-byte --runs 50 --warmup 3 -- \
	"$VMM" restore "$WORK/rw.snap" --trace >/dev/null 2>"$WORK/restore.trace" ||
	fail "restore --trace failed: $(tail -3 "$WORK/restore.trace")"
sed -n 's/.*VM restored in \([0-9]*\) us/\1/p' "$WORK/restore.trace" | tail -50 | sort -n |
	awk '{ v[NR] = $1 } END { print "restore_inprocess_median_us", v[int((NR + 1) / 2)] }'
if command -v strace >/dev/null; then
	# 5 restores under strace -f -ttt -T: wall-clock phases between landmark
	# calls (median of each over the 5), and from the last one the slowest
	# single calls before the guest's output (write(1, ...)) and after it
	# (teardown), with the number of calls before it.
	for attempt in 1 2 3 4 5; do
		printf x | strace -f -ttt -T -o "$WORK/restore.strace" "$VMM" restore "$WORK/rw.snap" >/dev/null 2>&1 || true
		awk '
		{ now = $2 * 1e6 }
		NR == 1 { start = now }
		!state && /\/state"/ { state = now }
		!create && /KVM_CREATE_VM/ { create = now }
		!run && /KVM_RUN/ { run = now }
		!output && / write\(1, / { output = now }
		/exited with/ { done = now }
		END { printf "%d %d %d %d %d %d\n", state - start, create - state, run - create, output - run, done - output, done - start }
		' "$WORK/restore.strace"
	done >"$WORK/restore.strace.phases"
	echo "restore_strace_phases_us $(sort -n -k6 "$WORK/restore.strace.phases" | awk '
		{ for (i = 1; i <= 6; i++) v[i, NR] = $i }
		END { split("exec+ld.so+init read-state kvm-setup+files guest-to-output teardown total", name, " ")
		      for (i = 1; i <= 6; i++) {
			      n = 0; for (r = 1; r <= NR; r++) col[++n] = v[i, r]
			      asort_simple(col, n); printf "%s%s=%d", (i > 1 ? "," : ""), name[i], col[int((n + 1) / 2)]
		      } }
		function asort_simple(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }')"
	awk '
	!after && / write\(1, / { after = 1 }
	match($0, /<[0-9.]+>$/) {
		t = substr($0, RSTART + 1, RLENGTH - 2) * 1e6
		call = $3; sub(/\(.*/, "", call)
		if (call == "ioctl" && match($0, /ioctl\([0-9]+, [A-Z_0-9]+/)) {
			call = substr($0, RSTART, RLENGTH); sub(/ioctl\([0-9]+, /, "", call)
		}
		printf "%s %d %s\n", after ? "after" : "before", t, call
	}' "$WORK/restore.strace" >"$WORK/restore.strace.calls"
	echo "restore_strace_calls_before_output $(grep -c '^before' "$WORK/restore.strace.calls")"
	echo "restore_strace_slowest_before_output $(awk '$1 == "before" { print $2, $3 }' "$WORK/restore.strace.calls" |
		sort -rn | head -6 | awk '{ printf "%s%s=%dus", (NR > 1 ? "," : ""), $2, $1 }')"
	echo "restore_strace_slowest_after_output $(awk '$1 == "after" { print $2, $3 }' "$WORK/restore.strace.calls" |
		sort -rn | head -2 | awk '{ printf "%s%s=%dus", (NR > 1 ? "," : ""), $2, $1 }')"
	echo "restore_strace_median_call_us $(awk '{ print $2 }' "$WORK/restore.strace.calls" | sort -n |
		awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
fi

# OCI runtimes: a busybox bundle from the base root running /bin/true.
oci_bundle() {
	local bundle=$WORK/oci
	mkdir -p "$bundle"
	cp -a "$BASE_ROOT" "$bundle/rootfs"
	[ -e "$bundle/rootfs/bin/true" ] || ln -s busybox "$bundle/rootfs/bin/true"
	(cd "$bundle" && runc spec) || return 1
	"$HOST_PYTHON" - "$bundle/config.json" <<-'PY'
		import json, sys
		path = sys.argv[1]
		config = json.load(open(path))
		config["process"]["args"] = ["/bin/true"]
		config["process"]["terminal"] = False
		json.dump(config, open(path, "w"), indent=1)
	PY
}
if ! command -v runc >/dev/null || ! command -v crun >/dev/null; then
	echo "snapshot.sh: installing runc and crun" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc crun >"$WORK/apt.log" 2>&1 || true
fi
oci_ready=no
command -v runc >/dev/null && oci_bundle && oci_ready=yes
for runtime in runc crun; do
	path=$(command -v "$runtime" || true)
	if [ -z "$path" ]; then
		echo "${runtime}_error $runtime is not installed (apt-get install $runtime failed: see $WORK/apt.log)"
		continue
	fi
	if [ "$oci_ready" != yes ]; then
		echo "${runtime}_error the OCI bundle could not be made (runc spec failed)"
		continue
	fi
	echo "${runtime}_version $("$runtime" --version | head -1 | awk '{ print $3 }')"
	state=$WORK/oci-state-$runtime
	command=("$path" --root "$state" run --bundle "$WORK/oci" "ember-bench-$runtime")
	if ! "${command[@]}" </dev/null >/dev/null 2>"$WORK/$runtime.err"; then
		echo "${runtime}_error $(tail -1 "$WORK/$runtime.err" | sed 's/^time="[^"]*" level=error msg=//')"
		continue
	fi
	time_it "$runtime" --runs 50 --warmup 3 -- "${command[@]}" </dev/null
done

time_it pyrestore --first-output --stdin-byte --runs "$RESTORE_RUNS" --warmup 3 -- \
	"$VMM" restore "$WORK/py.snap"
time_it pyhost --first-output --runs 50 --warmup 3 -- "$HOST_PYTHON" -c 'import json; print("ok")' </dev/null

# ---- 3. host memory per idle restored VM -------------------------------------
echo "snapshot.sh: $POOL restored VMs" >&2
echo "pool_size $POOL"
mem_available() { echo $(($(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo) * 1024)); }
# The kernel's own per-process memory outside smaps: page tables (the VMM's
# and, as SecPageTables, KVM's EPT/NPT tables) and thread stacks.
kernel_tables() {
	echo $(($(awk '/^(PageTables|SecPageTables|KernelStack):/ { s += $2 } END { print s + 0 }' /proc/meminfo) * 1024))
}
available_before=$(mem_available)
kernel_before=$(kernel_tables)
pool_pids=()
for i in $(seq "$POOL"); do
	"$VMM" restore "$WORK/py.snap" --paused --control-sock "$WORK/pool.$i.sock" \
		<"$WORK/stdin.fifo" >/dev/null 2>"$WORK/pool.$i.err" &
	pool_pids+=($!)
	pids+=($!)
done
for i in $(seq "$POOL"); do
	for _ in $(seq 200); do
		"$CTL" "$WORK/pool.$i.sock" stats >/dev/null 2>&1 && break
		sleep 0.05
	done
done
# measure_pool PREFIX: per-VM averages over the pool.
measure_pool() {
	local stats private=0 dirty=0 answered=0 i
	for i in $(seq "$POOL"); do
		stats=$("$CTL" "$WORK/pool.$i.sock" stats) || continue
		answered=$((answered + 1))
		private=$((private + $(stat_field "$stats" host_private_bytes)))
		dirty=$((dirty + $(stat_field "$stats" dirty_pages)))
	done
	echo "${1}_answered $answered"
	echo "${1}_host_private_bytes $((private / POOL))"
	echo "${1}_dirty_pages $((dirty / POOL))"
	for pid in "${pool_pids[@]}"; do cat "/proc/$pid/smaps_rollup"; done | awk -v p="$1" -v n="$POOL" '
		/^(Rss|Pss|Private_Dirty|Private_Clean|Anonymous):/ { sum[$1] += $2 * 1024 }
		END { for (k in sum) { key = k; sub(/:$/, "", key); printf "%s_smaps_%s %d\n", p, key, sum[k] / n } }'
}
measure_pool paused
echo "paused_memavailable_drop_per_vm $(((available_before - $(mem_available)) / POOL))"
echo "paused_kernel_tables_per_vm $((($(kernel_tables) - kernel_before) / POOL))"
for i in $(seq "$POOL"); do "$CTL" "$WORK/pool.$i.sock" resume >/dev/null; done
for i in $(seq "$POOL"); do wait_blocked "$WORK/pool.$i.sock"; done
measure_pool blocked
echo "blocked_memavailable_drop_per_vm $(((available_before - $(mem_available)) / POOL))"
echo "blocked_kernel_tables_per_vm $((($(kernel_tables) - kernel_before) / POOL))"
for i in $(seq "$POOL"); do "$CTL" "$WORK/pool.$i.sock" quit >/dev/null 2>&1 || true; done
for pid in "${pool_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
pids=()

# ---- 4. pack / unpack ----------------------------------------------------------
# pack_unpack NAME DIR: packs and unpacks snapshot DIR, timing each command
# (wall clock), and checks the round trip byte for byte.
pack_unpack() {
	local name=$1 snap=$2 before after identical=yes file
	echo "snapshot.sh: pack/unpack $name" >&2
	before=$(now_us)
	"$PACKER" pack "$snap" "$WORK/$name.lz4" >/dev/null || fail "ember-snapshot pack $snap failed"
	after=$(now_us)
	echo "${name}_pack_us $((after - before))"
	echo "${name}_packed_bytes $(stat -c %s "$WORK/$name.lz4")"
	before=$(now_us)
	"$PACKER" unpack "$WORK/$name.lz4" "$WORK/$name.unpacked" >/dev/null || fail "ember-snapshot unpack $name failed"
	after=$(now_us)
	echo "${name}_unpack_us $((after - before))"
	for file in "$snap"/*; do
		cmp -s "$file" "$WORK/$name.unpacked/$(basename "$file")" || identical=no
	done
	echo "${name}_unpack_identical $identical"
	sizes "$WORK/$name.unpacked" "${name}_unpacked"
	rm -rf "$WORK/$name.unpacked" "$WORK/$name.lz4"
}
if [ -x "$PACKER" ]; then
	pack_unpack big "$WORK/big.snap.1"
	pack_unpack python "$WORK/py.snap"
else
	echo "pack_missing $PACKER"
fi
exec {HOLD}>&-
