#!/usr/bin/env bash
# Ember's benchmarks (issues 2 and 3): builds the benchmark programs from bench/
# into $BUILD/bench/, runs each measurement once, host and guest in the same
# run, and prints a Markdown results table with the command that made it,
# also written to $BUILD/bench/results.md.  Raw "key value" outputs are kept
# in $BUILD/bench/raw/.  Called by `make bench` as
#   BUILD=build bash bench/run-all.sh
# and needs what `make` builds: $BUILD/bin/ember-vmm, $BUILD/bin/ember-ctl,
# $BUILD/rootfs/{base,python3}.  The snapshot measurements (issue 3) are
# bench/snapshot.sh's; they install runc and crun with apt-get if missing.
# Takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
VMM=$BUILD/bin/ember-vmm
OUT=$BUILD/bench
RAW=$OUT/raw
REFERENCE_EXIT_US=27 # one exit's round trip, ARCHITECTURE.md (KVM_CAP_SYNC_REGS)

fail() { echo "bench: $*" >&2; exit 1; }
[ -x "$VMM" ] || fail "$VMM is missing: run make first"
[ -x "$BUILD/bin/ember-ctl" ] || fail "$BUILD/bin/ember-ctl is missing: run make first"
for root in base python3; do
	[ -d "$BUILD/rootfs/$root" ] || fail "$BUILD/rootfs/$root is missing: run make first"
done

# ---- build -----------------------------------------------------------------
mkdir -p "$OUT/guest" "$OUT/host" "$RAW"
CFLAGS=(-std=gnu11 -O2 -Wall -Wextra -Werror -Ibench)
for program in syscall_rtt vdso_clock read_write; do
	gcc "${CFLAGS[@]}" -static -o "$OUT/guest/$program" "bench/guest/$program.c"
done
gcc "${CFLAGS[@]}" -static -nostdlib -nostartfiles -o "$OUT/guest/first_insn" bench/guest/first_insn.c
for program in tsc_hz spawn_time; do
	gcc "${CFLAGS[@]}" -o "$OUT/host/$program" "bench/host/$program.c"
done

# ---- measure ---------------------------------------------------------------
# run NAME COMMAND...: runs a measurement, keeps its output in $RAW/NAME.
run() {
	local name=$1
	shift
	echo "bench: $name" >&2
	"$@" >"$RAW/$name" || fail "$name failed: $*"
}
GUEST_RUN=("$VMM" run --root "$BUILD/rootfs/base" --task "$OUT/guest" --)

load=$(cut -d' ' -f1 /proc/loadavg) # other work on the machine skews every figure
HZ=$("$OUT/host/tsc_hz") || fail "cannot measure the TSC frequency"
run syscall_guest "${GUEST_RUN[@]}" /var/task/syscall_rtt "$HZ" 100000
run syscall_host "$OUT/guest/syscall_rtt" "$HZ" 100000
run vdso_guest "${GUEST_RUN[@]}" /var/task/vdso_clock "$HZ"
run vdso_host "$OUT/guest/vdso_clock" "$HZ"
run start_guest "$OUT/host/spawn_time" --first-insn --runs 100 --warmup 3 --tsc-hz "$HZ" \
	-- "${GUEST_RUN[@]}" /var/task/first_insn
run start_host "$OUT/host/spawn_time" --first-insn --runs 100 --warmup 3 --tsc-hz "$HZ" \
	-- "$OUT/guest/first_insn"
# The VM's creation inside ember-vmm (main() to the vCPU's first run, as
# --trace reports it), without the process's own exec and dynamic linking.
echo "bench: create_inprocess" >&2
for _ in $(seq 50); do
	"$VMM" run --trace --root "$BUILD/rootfs/base" --task "$OUT/guest" -- /var/task/first_insn 2>&1 >/dev/null |
		sed -n 's/.*VM created and program loaded in \([0-9]*\) us/\1/p'
done | sort -n | awk '{ v[NR] = $1 } END { print "create_inprocess_median_us", v[int((NR + 1) / 2)] }' \
	>"$RAW/create_inprocess"
run python env BUILD="$BUILD" bash bench/python_start.sh "$HZ"
run snapshot env BUILD="$BUILD" bash bench/snapshot.sh "$HZ"

# ---- report ----------------------------------------------------------------
# get FILE KEY: the value of KEY in $RAW/FILE.
get() {
	local value
	value=$(awk -v key="$2" '$1 == key { print $2; found = 1 } END { exit !found }' "$RAW/$1") ||
		fail "no $2 in $RAW/$1"
	echo "$value"
}
# text FILE KEY: the rest of KEY's line in $RAW/FILE, or nothing.
text() { awk -v key="$2" '$1 == key { sub(/^[^ ]+ /, ""); print }' "$RAW/$1"; }
# has FILE KEY: whether $RAW/FILE has KEY.
has() { awk -v key="$2" '$1 == key { found = 1 } END { exit !found }' "$RAW/$1"; }
# calc EXPRESSION: awk arithmetic, printed with the format in $FORMAT (default %.2f).
calc() { awk "BEGIN { printf \"${FORMAT:-%.2f}\", $1 }"; }
# met CONDITION: yes or no.
met() { awk "BEGIN { print ($1) ? \"yes\" : \"no\" }"; }
ms() { FORMAT=%.2f calc "$1 / 1000"; }

sys_median=$(get syscall_guest median_us)
sys_p99=$(get syscall_guest p99_us)
sys_host_median=$(get syscall_host median_us)
sys_host_p99=$(get syscall_host p99_us)
vdso_median=$(get vdso_guest median_ns)
vdso_host_median=$(get vdso_host median_ns)
first_min=$(get start_guest first_min_us)
first_median=$(get start_guest first_median_us)
first_max=$(get start_guest first_max_us)
first_host_min=$(get start_host first_min_us)
first_host_median=$(get start_host first_median_us)
first_host_max=$(get start_host first_max_us)
exit_median=$(get start_guest exit_median_us)
create_inprocess_median=$(get create_inprocess create_inprocess_median_us)
exit_host_median=$(get start_host exit_median_us)
python_tool=$(get python tool)
py_ember_pass=$(get python ember_pass_median_ms)
py_host_pass=$(get python host_pass_median_ms)
py_ember_json=$(get python ember_json_median_ms)
py_host_json=$(get python host_json_median_ms)

# Snapshots (issue 3): every figure in the raw file "snapshot".
snap() { get snapshot "$1"; }
mib() { FORMAT=%.1f calc "$1 / 1048576"; }
kib() { FORMAT=%.0f calc "$1 / 1024"; }
# trio PREFIX: "min / median / p99 ms" of spawn_time's first-output keys.
trio() { echo "$(ms "$(snap "${1}_min_us")") / $(ms "$(snap "${1}_median_us")") / $(ms "$(snap "${1}_p99_us")") ms"; }
restore_median=$(snap restore_first_median_us)
restore_exit_median=$(snap restore_exit_median_us)
# runtime_row NAME: the row of an OCI runtime, or why it could not start.
runtime_row() {
	local name=$1 version
	version=$(text snapshot "${name}_version")
	if has snapshot "${name}_error"; then
		echo "| \`$name run\` ${version:+($version) }of an OCI bundle (busybox from $BUILD/rootfs/base running /bin/true), start to exit |" \
			"could not start: $(text snapshot "${name}_error") | | | faster than $name | not measured |"
		return
	fi
	local median
	median=$(snap "${name}_exit_median_us")
	echo "| \`$name run\` ($version) of an OCI bundle (busybox from $BUILD/rootfs/base running /bin/true), posix_spawn to exit, min / median / p99 of $(snap "${name}_runs") |" \
		"restore to first output $(ms "$restore_median") ms; restore to exit $(ms "$restore_exit_median") ms (medians) |" \
		"$(ms "$(snap "${name}_exit_min_us")") / $(ms "$median") / $(ms "$(snap "${name}_exit_p99_us")") ms |" \
		"$(FORMAT=%.3fx calc "$restore_median / $median") (first output); $(FORMAT=%.3fx calc "$restore_exit_median / $median") (exit) |" \
		"faster than $name | $(met "$restore_exit_median < $median") |"
}
# pack_cell NAME: pack/unpack speed (MB/s of the snapshot's allocated bytes)
# and packed size of snapshot NAME.
pack_cell() {
	local data packed
	data=$(snap "${1}_allocated_bytes")
	packed=$(snap "${1}_packed_bytes")
	echo "pack $(FORMAT=%.0f calc "$data / $(snap "${1}_pack_us")") MB/s, unpack $(FORMAT=%.0f calc "$data / $(snap "${1}_unpack_us")") MB/s;" \
		"packed $(mib "$packed") MiB = $(FORMAT=%.3f calc "$packed / $data") of allocated, $(FORMAT=%.4f calc "$packed / $(snap "${1}_apparent_bytes")") of apparent;" \
		"round trip identical: $(snap "${1}_unpack_identical")"
}
if has snapshot big_pack_us; then
	pack_row="| \`ember-snapshot pack\` / \`unpack\` (wall time of each command; MB/s of allocated bytes): the 256 MiB snapshot ($(mib "$(snap big_allocated_bytes)") MiB allocated, pseudo-random: lz4's worst case); the python3 snapshot ($(mib "$(snap python_allocated_bytes)") MiB allocated) |"
	pack_row+=" 256 MiB: $(pack_cell big). python3: $(pack_cell python) | | | | |"
else
	pack_row="| \`ember-snapshot pack\` / \`unpack\` MB/s and packed size ratio | **not yet measured**: $(text snapshot pack_missing) does not exist in this build | | | | |"
fi

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	commit="$commit (with uncommitted changes)"
fi
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)

{
	echo "## Benchmarks"
	echo
	echo "Command: \`make bench\` (runs \`BUILD=$BUILD bash bench/run-all.sh\`)"
	echo "Run: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit; $cpu, $(nproc) CPUs, Linux $(uname -r);" \
		"TSC $(FORMAT=%.1f calc "$HZ / 1e6") MHz (measured); load average before the run $load; python timing: $python_tool."
	echo
	echo "| Measurement | Ember (ember-vmm) | Host or other baseline | Ember / baseline | Aim (issue) | Met |"
	echo "|---|---|---|---|---|---|"
	echo "| System-call round trip: getpid via \`syscall\`, each of 100,000 timed with rdtsc, median (p99) |" \
		"$sys_median µs ($sys_p99 µs) | $sys_host_median µs ($sys_host_p99 µs) |" \
		"$(FORMAT=%.0fx calc "$sys_median / $sys_host_median") | see next row | |"
	echo "| That median against the bare exit cost, taken as **the 27 µs reference of ARCHITECTURE.md (not measured in this run)** |" \
		"$(calc "$sys_median / $REFERENCE_EXIT_US")x the reference | | |" \
		"within 10% of the bare exit (≤ 1.10x) (2) | $(met "$sys_median <= 1.10 * $REFERENCE_EXIT_US") |"
	echo "| clock_gettime(CLOCK_MONOTONIC) through the vDSO, per call, median of 1,000 batches of 1,000 |" \
		"$vdso_median ns | $vdso_host_median ns | $(calc "$vdso_median / $vdso_host_median")x |" \
		"< 100 ns (2) | $(met "$vdso_median < 100") |"
	echo "| Process start to first guest instruction (posix_spawn of \`ember-vmm run\` to the guest's first rdtsc), min / median / max of 100 |" \
		"$(ms "$first_min") / $(ms "$first_median") / $(ms "$first_max") ms |" \
		"$(ms "$first_host_min") / $(ms "$first_host_median") / $(ms "$first_host_max") ms (same static program run natively) |" \
		"$(FORMAT=%.1fx calc "$first_median / $first_host_median") (medians) |" \
		"VM creation < 1 ms (2) | $(met "$first_median < 1000") |"
	echo "| VM creation inside ember-vmm: main() to the vCPU's first run (KVM VM and vCPU, page tables, ELF load, stack), as \`--trace\` reports it, median of 50 |" \
		"$(ms "$create_inprocess_median") ms | | | VM creation < 1 ms (2) | $(met "$create_inprocess_median < 1000") |"
	echo "| Process start to exit of that program (posix_spawn to waitpid), median of 100 |" \
		"$(ms "$exit_median") ms | $(ms "$exit_host_median") ms (static \`true\`-like program) |" \
		"$(FORMAT=%.1fx calc "$exit_median / $exit_host_median") | | |"
	echo "| \`python3 -c pass\`, start to exit, median of 30 |" \
		"$py_ember_pass ms | $py_host_pass ms | $(calc "$py_ember_pass / $py_host_pass")x |" \
		"within 3x of the host (2) | $(met "$py_ember_pass <= 3 * $py_host_pass") |"
	echo "| \`python3 -c 'import json'\`, start to exit, median of 30 |" \
		"$py_ember_json ms | $py_host_json ms | $(calc "$py_ember_json / $py_host_json")x | | |"
	echo "| **Restore** (issue 3): posix_spawn of \`ember-vmm restore DIR\` to the guest's first output byte arriving on the host; the snapshot: static read_write blocked in read(0) (128 MiB guest), stdin a pipe already holding one byte; min / median / p99 of $(snap restore_runs) |" \
		"$(trio restore_first) | | | median < 2 ms (3) | $(met "$restore_median < 2000") |"
	echo "| Fresh \`ember-vmm run\` of the same read_write to the same point (first output), min / median / p99 of $(snap fresh_runs) |" \
		"restore $(ms "$restore_median") ms (median) | $(trio fresh_first) |" \
		"$(FORMAT=%.2fx calc "$restore_median / $(snap fresh_first_median_us)") | | |"
	echo "| The same static read_write on the host (posix_spawn, fork+exec), to first output, min / median / p99 of $(snap host_runs) |" \
		"restore $(ms "$restore_median") ms (median) | $(trio host_first) |" \
		"$(FORMAT=%.2fx calc "$restore_median / $(snap host_first_median_us)") | | |"
	runtime_row runc
	runtime_row crun
	echo "| Restore to exit (posix_spawn to waitpid; includes the VM's teardown), median; in-process restore (ember-vmm main() to the vCPU's first run, --trace), median of 50 |" \
		"$(ms "$restore_exit_median") ms; in-process $(ms "$(snap restore_inprocess_median_us)") ms |" \
		"fresh run to exit $(ms "$(snap fresh_exit_median_us)") ms; host to exit $(ms "$(snap host_exit_median_us)") ms | | | |"
	pyrestore=$(snap pyrestore_first_median_us)
	pyhost=$(snap pyhost_first_median_us)
	echo "| python3 snapshot (\`python3.11 -c 'import json, sys; sys.stdin.read(1); print(\"ok\")'\` paused in its read) restored, to first output, min / median / p99 of $(snap pyrestore_runs); host: \`/usr/bin/python3.11 -c 'import json; print(\"ok\")'\`, of $(snap pyhost_runs) |" \
		"$(trio pyrestore_first) | $(trio pyhost_first) | $(FORMAT=%.2fx calc "$pyrestore / $pyhost") |" \
		"restored answers faster than host python starts (3) | $(met "$pyrestore < $pyhost") |"
	echo "| python3 restored, to exit (posix_spawn to waitpid), median |" \
		"$(ms "$(snap pyrestore_exit_median_us)") ms | $(ms "$(snap pyhost_exit_median_us)") ms | $(FORMAT=%.2fx calc "$(snap pyrestore_exit_median_us) / $(snap pyhost_exit_median_us)") | | |"
	echo "| Snapshot save: \`ember-ctl snapshot\` (wall time of that command alone, VM paused first) of a 256 MiB guest (\`--mem 256\`) that touched 64 MiB, median of 3 ($(snap big_save_us_each) µs); size apparent / allocated |" \
		"$(ms "$(snap big_save_median_us)") ms; $(mib "$(snap big_apparent_bytes)") / $(mib "$(snap big_allocated_bytes)") MiB | | | | |"
	echo "| Snapshot save of the python3 VM (128 MiB guest); of the read_write VM; sizes apparent / allocated |" \
		"python3 $(ms "$(snap python_save_us)") ms, $(mib "$(snap python_apparent_bytes)") / $(mib "$(snap python_allocated_bytes)") MiB; read_write $(ms "$(snap small_save_us)") ms, $(mib "$(snap small_apparent_bytes)") / $(mib "$(snap small_allocated_bytes)") MiB | | | | |"
	echo "$pack_row"
	for state in paused blocked; do
		if [ $state = paused ]; then what="each --paused"; else what="resumed, each blocked reading stdin"; fi
		private=$(snap ${state}_host_private_bytes)
		dirty=$(snap ${state}_smaps_Private_Dirty)
		anon=$(snap ${state}_smaps_Anonymous)
		worst=$(awk "BEGIN { m = $private; if ($dirty > m) m = $dirty; if ($anon > m) m = $anon; print m }")
		echo "| Host memory per idle restored VM, $(snap ${state}_answered) of $(snap pool_size) restored at once from the python3 snapshot, $what: average host_private_bytes (\`ember-ctl stats\`); /proc/PID/smaps_rollup Private_Dirty, Anonymous (not summed: anonymous pages are private dirty too), Rss, Pss |" \
			"$(kib "$private") KiB; Private_Dirty $(kib "$dirty") KiB, Anonymous $(kib "$anon") KiB; Rss $(kib "$(snap ${state}_smaps_Rss)") KiB, Pss $(kib "$(snap ${state}_smaps_Pss)") KiB; kernel page tables and stacks +$(kib "$(snap ${state}_kernel_tables_per_vm)") KiB / VM | | |" \
			"< 1 MiB private (3) | $(met "$worst < 1048576") |"
	done
	echo
	echo "Host python: /usr/bin/python3.11 (Debian 3.11.2, as in the guest root). The guest runs" \
		"\`ember-vmm run --root $BUILD/rootfs/python3 -- /usr/bin/python3.11 ...\`; its" \
		"process start includes ember-vmm's own exec and dynamic linking. Raw outputs: $RAW/."
	echo
	echo "Snapshots (issue 3), bench/snapshot.sh: snapshots, OCI bundle and logs in $BUILD/bench/snap/." \
		"Restores read a snapshot just written, so its memory file is in the page cache." \
		"Minor page faults of the process, median: restore $(snap restore_minflt_median), fresh run $(snap fresh_minflt_median)," \
		"host $(snap host_minflt_median); python3 restored $(snap pyrestore_minflt_median), host python3 $(snap pyhost_minflt_median)." \
		"Restores under \`strace -f -ttt -T\` (strace's own overhead inflates every call: median call $(snap restore_strace_median_call_us) µs)," \
		"wall-clock phases in µs, median of 5: $(text snapshot restore_strace_phases_us | sed 's/,/, /g');" \
		"in the last, $(snap restore_strace_calls_before_output) calls before the output, the slowest:" \
		"$(text snapshot restore_strace_slowest_before_output | sed 's/,/, /g'); after it: $(text snapshot restore_strace_slowest_after_output | sed 's/,/, /g')" \
		"(every call: $BUILD/bench/snap/restore.strace.calls)." \
		"Kernel page tables and stacks: the rise of PageTables + SecPageTables (KVM's EPT/NPT) + KernelStack in /proc/meminfo over the pool, divided by its size;" \
		"machine-wide, so other work on the machine moves it (the MemAvailable drop, noisier still, is in the raw file)."
} >"$OUT/results.md"
echo "bench: functions" >&2; BUILD="$BUILD" bash bench/functions.sh "$HZ" "$OUT/results.md" >/dev/null || fail "functions failed: bench/functions.sh (issue 4; rows added to $OUT/results.md)"
cat "$OUT/results.md"
