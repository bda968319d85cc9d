#!/usr/bin/env bash
# ember-suite: microvms
# The VM-level suite (issue 2): runs real microVMs (on $EMBER_PLATFORM: see
# tests/lib/platform.sh) with ember-vmm and
# checks what they print and how they end — the guest test programs in
# tests/guest (expected output in tests/vm/expected), exit codes, busybox
# from build/rootfs/base, Debian's python3 from build/rootfs/python3, the
# memory cap and the VMM's host RSS, escapes, hostile guests and bad inputs.
#
# Prints one line per test: "PASS name", "FAIL name: why" (details follow,
# indented) or "SKIP name: why".  Exits 1 if anything failed.
# Environment: BUILD (default build; build/sanitize for SANITIZE=1 builds),
# EMBER_ROOTFS (default build/rootfs), FUZZ_SECONDS (default 10), FUZZ_SEED
# (default: the time), EMBER_SUITE_KEEP=1 (keep the temporary files: every
# run's stdout, stderr and exit information, for debugging),
# EMBER_UPDATE_EXPECTED=1 (rewrite tests/vm/expected from this run; see
# check_output).
# Every run of the VMM is also checked for sanitizer reports, for the VMM
# itself dying of a signal, and for hanging (killed by the harness).
set -u

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
ROOTFS=${EMBER_ROOTFS:-$REPO/build/rootfs}
VMM=$BUILD/bin/ember-vmm
GUESTS=$BUILD/guest
EXPECTED=$REPO/tests/vm/expected
FUZZ_SECONDS=${FUZZ_SECONDS:-10}

failures=0
pass() { echo "PASS $1"; }
fail() {
	echo "FAIL $1: $2"
	failures=$((failures + 1))
	if [[ -n ${3:-} && -s $3 ]]; then
		head -n "${4:-15}" "$3" | sed 's/^/    /'
	fi
}
skip() { echo "SKIP $1: $2"; }

T=$(mktemp -d /tmp/ember-vm-suite.XXXXXX)
LISTENER_PID=
cleanup() {
	[[ -n $LISTENER_PID ]] && kill "$LISTENER_PID" 2>/dev/null
	if [[ -n ${EMBER_SUITE_KEEP:-} ]]; then
		echo "# kept the suite's files in $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- prerequisites -----------------------------------------------------------
# shellcheck source=../lib/platform.sh
source "$REPO/tests/lib/platform.sh"
platform_require vm "$VMM" || exit 1
RUNNER=$T/runner
if ! gcc -std=gnu11 -O1 -Wall -Wextra -o "$RUNNER" "$REPO/tests/vm/runner.c" 2>"$T/runner.err"; then
	fail vm "cannot build the harness helper tests/vm/runner.c" "$T/runner.err"
	exit 1
fi
ASAN=0
if grep -qaE '__asan_init|AddressSanitizer' "$VMM"; then
	ASAN=1
	# Leak reports would change exit statuses; they are reported, not hidden.
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:exitcode=99}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=98}
fi

# ---- running the VMM ---------------------------------------------------------
# vm TAG LIMIT_S [ember-vmm run arguments...]
# Runs `ember-vmm run ARGS` with stdin from $VM_STDIN (default /dev/null),
# stdout in $T/TAG.out, stderr in $T/TAG.err.  Sets STATUS, SIGNAL (the
# signal that killed the VMM process itself), KILLED, RSS_KB, WALL_MS, OUT,
# ERR, and VMM_PROBLEM: a non-empty reason when the VMM misbehaved in a way
# that fails any test (died of a signal, hung, sanitizer report).
vm() {
	local tag=$1 limit=$2
	shift 2
	vmm_command "$tag" "$limit" run "$@"
}

# vmm_command TAG LIMIT_S [ember-vmm arguments...]: like vm, without "run".
vmm_command() {
	local tag=$1 limit=$2
	shift 2
	OUT=$T/$tag.out
	ERR=$T/$tag.err
	env EMBER_HOST_SECRET=leaked "$RUNNER" run "$limit" "$T/$tag.info" -- \
		"$VMM" "$@" <"${VM_STDIN:-/dev/null}" >"$OUT" 2>"$ERR"
	STATUS=$?
	SIGNAL=$(sed -n 's/^signal=//p' "$T/$tag.info" 2>/dev/null)
	KILLED=$(sed -n 's/^killed=//p' "$T/$tag.info" 2>/dev/null)
	RSS_KB=$(sed -n 's/^rss_kb=//p' "$T/$tag.info" 2>/dev/null)
	WALL_MS=$(sed -n 's/^wall_ms=//p' "$T/$tag.info" 2>/dev/null)
	VMM_PROBLEM=
	if [[ ${KILLED:-0} == 1 ]]; then
		VMM_PROBLEM="hung: killed by the harness after $limit s"
	elif [[ ${SIGNAL:-0} != 0 ]]; then
		VMM_PROBLEM="ember-vmm itself died of signal $SIGNAL"
	elif grep -qE 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|internal error' "$ERR"; then
		VMM_PROBLEM="ember-vmm reported: $(grep -m1 -E 'Sanitizer|runtime error:|internal error' "$ERR")"
	fi
}

# check_status NAME WANT [WHY-IF-WRONG]: the last run ended with status WANT
# and the VMM behaved.  Prints PASS or FAIL; returns 0 on PASS.
check_status() {
	local name=$1 want=$2
	if [[ -n $VMM_PROBLEM ]]; then
		fail "$name" "$VMM_PROBLEM" "$ERR"
		return 1
	fi
	if [[ $STATUS != "$want" ]]; then
		fail "$name" "exit status $STATUS, want $want${3:+ ($3)}" "$ERR"
		return 1
	fi
	pass "$name"
}

# check_output NAME FILE [STATUS]: the last run's stdout equals FILE and it
# exited STATUS (default 0).  With EMBER_UPDATE_EXPECTED=1, a guest program's
# expected file under tests/vm/expected is first rewritten from this run:
# every "not ok NAME: detail" becomes "ok NAME" (the file lists the checks,
# so a new check is added by running once), provided the run got to its
# "done:" line.
check_output() {
	local name=$1 want=$2 want_status=${3:-0}
	if [[ -n $VMM_PROBLEM ]]; then
		fail "$name" "$VMM_PROBLEM" "$ERR"
		return 1
	fi
	if [[ -n ${EMBER_UPDATE_EXPECTED:-} && $want == "$EXPECTED"/* ]] && grep -q '^done:' "$OUT"; then
		awk '/^not ok / {
			rest = substr($0, 8); group = index(rest, ": ")
			detail = index(substr(rest, group + 2), ": ")
			$0 = "ok " (detail ? substr(rest, 1, group + detail) : rest)
		}
		/^ok / { count++ }
		/^done:/ { $0 = "done: " count " passed, 0 failed" }
		{ print }' "$OUT" >"$want"
		echo "# rewrote ${want#$REPO/}"
	fi
	if ! diff -u "$want" "$OUT" >"$T/diff" 2>&1 || [[ $STATUS != "$want_status" ]]; then
		if [[ -s $ERR ]]; then
			{ echo "--- stderr:"; head -n 5 "$ERR"; } >>"$T/diff"
		fi
		if [[ $STATUS != "$want_status" ]] && cmp -s "$want" "$OUT"; then
			fail "$name" "exit status $STATUS, want $want_status" "$ERR"
		else
			fail "$name" "output differs from ${want#$REPO/} (exit status $STATUS)" "$T/diff" 40
		fi
		return 1
	fi
	pass "$name"
}

# check_refused NAME PATTERN: the last run was refused cleanly: a non-zero
# exit that is neither a timeout (124) nor a signal (128+), quickly, with a
# message on stderr matching PATTERN (case-insensitive extended regexp).
check_refused() {
	local name=$1 pattern=$2
	if [[ -n $VMM_PROBLEM ]]; then
		fail "$name" "$VMM_PROBLEM" "$ERR"
	elif [[ $STATUS == 0 || $STATUS == 124 || $STATUS -ge 128 ]]; then
		fail "$name" "exit status $STATUS, want an error status (1..123, 125..127)" "$ERR"
	elif [[ ! -s $ERR ]]; then
		fail "$name" "exit status $STATUS but nothing on stderr"
	elif ! grep -qiE "$pattern" "$ERR"; then
		fail "$name" "the message does not mention /$pattern/" "$ERR"
	elif [[ ${WALL_MS:-0} -gt 5000 ]]; then
		fail "$name" "took ${WALL_MS} ms to refuse"
	else
		pass "$name"
	fi
}

# check_killed NAME STATUS SIGNAME: the guest was killed by a signal: the
# VMM exited STATUS with a one-line reason naming SIGNAME on stderr.
check_killed() {
	local name=$1 want=$2 signame=$3
	local lines
	lines=$(grep -c . "$ERR")
	if [[ -n $VMM_PROBLEM ]]; then
		fail "$name" "$VMM_PROBLEM" "$ERR"
	elif [[ $STATUS != "$want" ]]; then
		fail "$name" "exit status $STATUS, want $want ($signame)" "$ERR"
	elif ! grep -q "$signame" "$ERR"; then
		fail "$name" "stderr does not name $signame" "$ERR"
	elif [[ $lines != 1 ]]; then
		fail "$name" "want a one-line reason on stderr, got $lines lines" "$ERR"
	else
		pass "$name"
	fi
}

# ---- a root and a task for the guest test programs -----------------------------
GROOT=$T/root
GTASK=$T/task
mkdir -p "$GROOT/bin" "$GROOT/etc" "$GROOT/var/task" "$GTASK/sub"
for g in hello files memory process time signals escape badptr loop nullderef badinsn \
	divzero stubwrite forged_out fuzz; do
	[[ -x $GUESTS/$g ]] && cp "$GUESTS/$g" "$GROOT/bin/$g"
done
printf 'ember-root-marker\n' >"$GROOT/etc/passwd"
printf 'ember-root-shadow\n' >"$GROOT/etc/shadow"
printf 'hello task\n' >"$GTASK/hello.txt"
printf 'inner\n' >"$GTASK/sub/inner.txt"
ln -s hello.txt "$GTASK/link"
ln -s /etc/shadow "$GTASK/shadow"
ln -s ../../.. "$GTASK/up"
mkdir -p "$T/host-only"
printf 'host secret\n' >"$T/host-only/host-secret.txt"
ln -s "$T/host-only" "$GTASK/hostlink"
layers_fingerprint() {
	find "$GROOT" "$GTASK" -printf '%p %y %s %m %T@\n' | sort | md5sum
}
LAYERS_BEFORE=$(layers_fingerprint)

# guest_built TEST PROGRAM: the guest program is built, or TEST fails saying so.
guest_built() {
	if [[ ! -x $GROOT/bin/$2 ]]; then
		fail "$1" "guest program not built: $GUESTS/$2 missing (make guests)"
		return 1
	fi
}

run_guest() { # TAG LIMIT [vmm options] -- /bin/PROGRAM [ARGS]
	local tag=$1 limit=$2
	shift 2
	vm "$tag" "$limit" --root "$GROOT" --task "$GTASK" "$@"
}

# ---- guest programs ------------------------------------------------------------
if guest_built guest/hello hello; then
	run_guest hello 30 -- /bin/hello
	check_output guest/hello "$EXPECTED/hello.out"
	if [[ -z $VMM_PROBLEM && -s $ERR ]]; then
		fail guest/hello-quiet-stderr "the VMM wrote to stderr for a clean run" "$ERR"
	elif [[ -z $VMM_PROBLEM ]]; then
		pass guest/hello-quiet-stderr
	fi
	for code in 7 255; do
		run_guest "hello$code" 30 -- /bin/hello "$code"
		check_status "guest/hello-exit-$code" "$code"
	done
	run_guest hello256 30 -- /bin/hello 256
	check_status guest/hello-exit-256-wraps-to-0 0 "exit(256) is status 0 on Linux"
	run_guest hellomin 30 --mem 16 -- /bin/hello
	check_status guest/mem-16-minimum 0
	run_guest hellomax 30 --mem 16384 -- /bin/hello
	check_status guest/mem-16384-maximum 0
	vm hellorel 30 --root "$GROOT" -- /bin/../bin/./hello
	check_status guest/program-path-with-dots 0
fi

if guest_built guest/files files; then
	run_guest files 60 -- /bin/files
	check_output guest/files "$EXPECTED/files.out"
fi
if guest_built guest/memory memory; then
	run_guest memory 60 --mem 64 -- /bin/memory 64
	check_output guest/memory "$EXPECTED/memory.out"
	if [[ $ASAN == 1 ]]; then
		skip guest/memory-host-rss "host RSS bound not meaningful under AddressSanitizer"
	elif [[ -z $VMM_PROBLEM && ${RSS_KB:-0} -gt $(((64 + 16) * 1024)) ]]; then
		fail guest/memory-host-rss "peak host RSS $((RSS_KB / 1024)) MiB > --mem 64 + 16 MiB"
	elif [[ -z $VMM_PROBLEM ]]; then
		pass guest/memory-host-rss
		echo "    peak host RSS $((RSS_KB / 1024)) MiB with --mem 64, memory and /tmp filled"
	else
		fail guest/memory-host-rss "$VMM_PROBLEM"
	fi
fi
if guest_built guest/process process; then
	run_guest process 60 --trace --env EMBER_TEST=yes -- /bin/process one "two words"
	check_output guest/process "$EXPECTED/process.out"
	if [[ -z $VMM_PROBLEM ]]; then
		if grep -q 'kexec_load' "$ERR"; then
			pass guest/trace-names-unimplemented-calls
		else
			fail guest/trace-names-unimplemented-calls "--trace did not name kexec_load on stderr" "$ERR"
		fi
	fi
fi
if guest_built guest/time time; then
	run_guest time 60 -- /bin/time "$(date +%s)"
	check_output guest/time "$EXPECTED/time.out"
fi
if guest_built guest/signals signals; then
	run_guest signals 60 -- /bin/signals
	check_output guest/signals "$EXPECTED/signals.out"
fi
if guest_built guest/badptr badptr; then
	run_guest badptr 60 --mem 64 -- /bin/badptr 64
	check_output guest/badptr "$EXPECTED/badptr.out"
fi

# ---- escapes -------------------------------------------------------------------
if guest_built escape/guest escape; then
	rm -f /tmp/ember-escape-probe
	"$RUNNER" listen "$T/port" "$T/listener.log" "$T/escape.sock" 2>"$T/listener.err" &
	LISTENER_PID=$!
	for _ in $(seq 50); do [[ -s $T/port ]] && break; sleep 0.1; done
	if [[ ! -s $T/port ]]; then
		fail escape/guest "the host listener did not start" "$T/listener.err"
	else
		PORT=$(cat "$T/port")
		run_guest escape 60 -- /bin/escape "$PORT" "$T/escape.sock"
		check_output escape/guest "$EXPECTED/escape.out"
		sleep 0.2
		if [[ -n $VMM_PROBLEM ]] || ! grep -q '^done:' "$OUT"; then
			skip escape/host-listeners-untouched "the escape guest did not run to its end"
			skip escape/tmp-is-not-the-hosts "the escape guest did not run to its end"
		else
			if [[ -s $T/listener.log ]]; then
				fail escape/host-listeners-untouched "the guest reached the host" "$T/listener.log"
			else
				pass escape/host-listeners-untouched
			fi
			if [[ -e /tmp/ember-escape-probe ]]; then
				fail escape/tmp-is-not-the-hosts "the guest's /tmp/ember-escape-probe appeared on the host"
				rm -f /tmp/ember-escape-probe
			else
				pass escape/tmp-is-not-the-hosts
			fi
		fi
	fi
	kill "$LISTENER_PID" 2>/dev/null
	wait "$LISTENER_PID" 2>/dev/null
	LISTENER_PID=
fi

# ---- hostile guests ------------------------------------------------------------
if guest_built hostile/loop-timeout loop; then
	run_guest loop 20 --timeout 1 -- /bin/loop
	if check_status hostile/loop-timeout 124; then
		if ! grep -qi 'time' "$ERR"; then
			fail hostile/loop-timeout-message "no timeout message on stderr" "$ERR"
		elif [[ ${WALL_MS:-0} -gt 5000 ]]; then
			fail hostile/loop-timeout-message "--timeout 1 took ${WALL_MS} ms"
		else
			pass hostile/loop-timeout-message
		fi
	fi
fi
if guest_built hostile/nullderef nullderef; then
	for mode in read write exec outside kernel; do
		run_guest "null-$mode" 30 -- /bin/nullderef "$mode"
		check_killed "hostile/nullderef-$mode" 139 SIGSEGV
	done
	run_guest null-noncanonical 30 -- /bin/nullderef noncanonical
	if [[ -z $VMM_PROBLEM && ($STATUS == 139 || $STATUS == 135) ]]; then
		pass hostile/nullderef-noncanonical
	else
		fail hostile/nullderef-noncanonical "${VMM_PROBLEM:-exit status $STATUS, want 139 or 135}" "$ERR"
	fi
	if grep -qi '7fff00000000' "$T/null-outside.err"; then
		pass hostile/fault-reason-names-the-address
	else
		fail hostile/fault-reason-names-the-address "stderr lacks 0x7fff00000000" "$T/null-outside.err"
	fi
	if grep -qiE 'rip' "$T/null-read.err" && grep -qiE 'rsp' "$T/null-read.err"; then
		pass hostile/fault-reason-shows-registers
	else
		fail hostile/fault-reason-shows-registers "stderr shows no registers (rip, rsp)" "$T/null-read.err"
	fi
fi
if guest_built hostile/badinsn badinsn; then
	run_guest badinsn 30 -- /bin/badinsn ud2
	check_killed hostile/badinsn-ud2 132 SIGILL
	run_guest int3 30 -- /bin/badinsn int3
	check_killed hostile/badinsn-int3 133 SIGTRAP
	for mode in hlt cli rdmsr movcr3; do
		run_guest "priv-$mode" 30 -- /bin/badinsn "$mode"
		check_killed "hostile/privileged-$mode" 139 SIGSEGV
	done
fi
if guest_built hostile/divzero divzero; then
	run_guest divzero 30 -- /bin/divzero div
	check_killed hostile/divzero 136 SIGFPE
	run_guest divoverflow 30 -- /bin/divzero overflow
	check_killed hostile/divide-overflow 136 SIGFPE
fi
if guest_built hostile/stubwrite stubwrite; then
	for mode in stub vvar pagetable gdt readpt; do
		run_guest "stubwrite-$mode" 30 -- /bin/stubwrite "$mode"
		check_killed "hostile/stubwrite-$mode" 139 SIGSEGV
	done
	# KVM's system-call stub lives at 0x18000 and must be readable; on
	# systrap nothing of the VMM is mapped there, so the read itself faults.
	if [[ $PLATFORM == systrap ]]; then
		if grep -q 'page fault (vector 14) at address 0x18000 (read, not mapped)' "$T/stubwrite-stub.err"; then
			pass hostile/stub-page-unmapped
		else
			fail hostile/stub-page-unmapped "reading 0x18000 did not fault as unmapped" "$T/stubwrite-stub.err"
		fi
	elif grep -q 'stub page readable' "$T/stubwrite-stub.out"; then
		pass hostile/stub-page-user-readable
	else
		fail hostile/stub-page-user-readable "reading the stub page from user code failed" "$T/stubwrite-stub.err"
	fi
fi
if guest_built hostile/forged-out forged_out; then
	bad=
	for mode in syscall-port syscall-port-wide exception-port low-port high-port in-port \
		in-port-wide rep-outsb rep-insb stub-syscall stub-exception int80 int-pf int-gp \
		int-ff sysenter syscall-wild; do
		for seed in 1 2 3; do
			run_guest "forged-$mode-$seed" 20 -- /bin/forged_out "$mode" "$seed"
			if [[ -n $VMM_PROBLEM ]]; then
				bad+="$mode seed $seed: $VMM_PROBLEM"$'\n'
				cp "$ERR" "$T/forged.err"
			elif [[ $STATUS -gt 255 || $STATUS == 124 ]]; then
				bad+="$mode seed $seed: exit status $STATUS"$'\n'
				cp "$ERR" "$T/forged.err"
			elif ! grep -q "^forged_out: $mode seed $seed" "$OUT"; then
				bad+="$mode seed $seed: the guest never started (exit status $STATUS)"$'\n'
				cp "$ERR" "$T/forged.err"
			fi
		done
	done
	if [[ -z $bad ]]; then
		pass hostile/forged-out
	else
		printf '%s' "$bad" >"$T/forged.why"
		fail hostile/forged-out "$(printf '%s' "$bad" | head -n1)" "$T/forged.why"
		sed 's/^/    stderr: /' "$T/forged.err" | head -n 5
	fi
fi
if guest_built hostile/fuzz fuzz; then
	run_guest fuzz $((FUZZ_SECONDS + 60)) --timeout $((FUZZ_SECONDS + 50)) -- \
		/bin/fuzz "$FUZZ_SECONDS" "${FUZZ_SEED:-$(date +%s)}"
	summary=$(grep -m1 ' calls in ' "$OUT")
	if check_status hostile/fuzz 0 "see its summary: $(tail -n1 "$OUT")"; then
		if grep -q '^fuzz: done' "$OUT"; then
			echo "    $summary"
		else
			fail hostile/fuzz-summary "no summary line" "$OUT"
		fi
	else
		sed 's/^/    stdout: /' "$OUT" | head -n 5
	fi
fi

if [[ $(layers_fingerprint) == "$LAYERS_BEFORE" ]]; then
	pass escape/layers-unchanged-after-all-guests
else
	fail escape/layers-unchanged-after-all-guests "a guest changed its read-only root or task directory on the host"
fi

# ---- bad inputs -------------------------------------------------------------------
BAD=$T/bad
mkdir -p "$BAD/bin"
if [[ -x $GROOT/bin/hello ]]; then
	HELLO=$GROOT/bin/hello
	# ELF helpers: read and write little-endian integers in a file.
	get_le() { od -An -t "u$3" -j "$2" -N "$3" "$1" | tr -d ' '; }
	put_le() { # FILE OFFSET SIZE VALUE
		local hex i bytes=
		hex=$(printf '%0*x' $(($3 * 2)) "$4")
		for ((i = $3 - 1; i >= 0; i--)); do bytes+="\\x${hex:$((i * 2)):2}"; done
		printf "$bytes" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
	}
	phoff=$(get_le "$HELLO" 32 8)
	phentsize=$(get_le "$HELLO" 54 2)
	phnum=$(get_le "$HELLO" 56 2)
	loads=()
	for ((i = 0; i < phnum; i++)); do
		off=$((phoff + i * phentsize))
		[[ $(get_le "$HELLO" "$off" 4) == 1 ]] && loads+=("$off")
	done
	variant() { cp "$HELLO" "$BAD/bin/$1"; }

	printf '#!/bin/sh\necho not an ELF\n' >"$BAD/bin/script"
	chmod +x "$BAD/bin/script"
	: >"$BAD/bin/empty"
	head -c 64 "$HELLO" >"$BAD/bin/header-only"
	head -c 1000 "$HELLO" >"$BAD/bin/truncated"
	variant class32 && printf '\x01' | dd of="$BAD/bin/class32" bs=1 seek=4 conv=notrunc status=none
	variant badmagic && printf 'XELF' | dd of="$BAD/bin/badmagic" bs=1 seek=0 conv=notrunc status=none
	variant aarch64 && put_le "$BAD/bin/aarch64" 18 2 183
	variant phnum-huge && put_le "$BAD/bin/phnum-huge" 56 2 65535
	variant outside && put_le "$BAD/bin/outside" $((loads[0] + 16)) 8 $((0x7fff00000000)) &&
		put_le "$BAD/bin/outside" $((loads[0] + 24)) 8 $((0x7fff00000000))
	variant system-pages && put_le "$BAD/bin/system-pages" $((loads[0] + 16)) 8 $((0x1000)) &&
		put_le "$BAD/bin/system-pages" $((loads[0] + 24)) 8 $((0x1000))
	variant offset-past-end && put_le "$BAD/bin/offset-past-end" $((loads[0] + 8)) 8 $((0x7fff0000))
	variant filesz-huge && put_le "$BAD/bin/filesz-huge" $((loads[0] + 32)) 8 $((0x7ffffffffffff000)) &&
		put_le "$BAD/bin/filesz-huge" $((loads[0] + 40)) 8 $((0x7ffffffffffff000))
	variant memsz-wraps && put_le "$BAD/bin/memsz-wraps" $((loads[0] + 40)) 8 $((0xfffffffffffff000))
	variant vaddr-wraps && put_le "$BAD/bin/vaddr-wraps" $((loads[0] + 16)) 8 $((0xfffffffffffff000)) &&
		put_le "$BAD/bin/vaddr-wraps" $((loads[0] + 24)) 8 $((0xfffffffffffff000))
	if ((${#loads[@]} >= 2)); then
		variant overlap
		put_le "$BAD/bin/overlap" $((loads[1] + 16)) 8 "$(get_le "$HELLO" $((loads[0] + 16)) 8)"
		put_le "$BAD/bin/overlap" $((loads[1] + 24)) 8 "$(get_le "$HELLO" $((loads[0] + 24)) 8)"
	fi
	mkdir -p "$BAD/dir"
	# A dynamic executable whose interpreter is not in the root.
	if [[ -x /bin/true ]] && od -An -c -N 4 /bin/true | grep -q 'E   L   F'; then
		cp /bin/true "$BAD/bin/dynamic"
	fi

	refused() { # NAME PATTERN PROGRAM [vmm options before --]
		local name=$1 pattern=$2 program=$3
		shift 3
		vm "bad-${name//\//-}" 30 --root "$BAD" "$@" -- "$program"
		check_refused "badinput/$name" "$pattern"
	}
	refused missing-program 'nonexistent|no such|not found' /bin/nonexistent
	refused directory-as-program 'dir|elf|not|exec' /dir
	refused script-not-elf 'elf|exec|format' /bin/script
	refused empty-file 'elf|empty|short|truncat|format' /bin/empty
	refused bad-magic 'elf|magic|format' /bin/badmagic
	refused elf-header-only 'elf|truncat|short|program header|phdr' /bin/header-only
	refused truncated-elf 'elf|truncat|short|past|end|segment' /bin/truncated
	refused elf32-class 'elf|class|64' /bin/class32
	refused wrong-machine 'elf|machine|x86|arch' /bin/aarch64
	refused phnum-huge 'elf|program header|phdr|truncat|past|too many' /bin/phnum-huge
	refused segment-outside-memory 'elf|segment|memory|outside|range|address' /bin/outside
	refused segment-over-system-pages 'elf|segment|memory|outside|range|address|system' /bin/system-pages
	refused segment-offset-past-end 'elf|segment|offset|past|end|truncat' /bin/offset-past-end
	refused segment-size-huge 'elf|segment|memory|size|outside|range|overflow' /bin/filesz-huge
	refused segment-end-wraps 'elf|segment|memory|size|outside|range|overflow' /bin/memsz-wraps
	refused segment-address-wraps 'elf|segment|memory|outside|range|overflow|address' /bin/vaddr-wraps
	if [[ -f $BAD/bin/overlap ]]; then
		refused segments-overlap 'elf|segment|overlap' /bin/overlap
	fi
	if [[ -f $BAD/bin/dynamic ]]; then
		refused missing-interpreter 'interp|ld-linux|loader|no such|not found' /bin/dynamic
	else
		skip badinput/missing-interpreter "no dynamic /bin/true on the host to copy"
	fi
	refused mem-0 'mem' /bin/hello --mem 0
	refused mem-1TiB 'mem' /bin/hello --mem 1048576
	refused mem-15 'mem' /bin/hello --mem 15
	refused mem-16385 'mem' /bin/hello --mem 16385
	refused mem-not-a-number 'mem' /bin/hello --mem abc
	refused mem-negative 'mem' /bin/hello --mem -64
	refused timeout-not-a-number 'timeout' /bin/hello --timeout soon
	refused env-without-equals 'env|=' /bin/hello --env NOEQUALS

	vm bad-missing-root 30 --root "$T/no-such-root" -- /bin/hello
	check_refused badinput/missing-root "no-such-root"
	vm bad-root-is-file 30 --root "$GTASK/hello.txt" -- /bin/hello
	check_refused badinput/root-is-a-file "hello.txt|director"
	vm bad-missing-task 30 --root "$GROOT" --task "$T/no-such-task" -- /bin/hello
	check_refused badinput/missing-task "no-such-task"
	vm bad-no-program 30 --root "$GROOT" --
	check_refused badinput/no-program 'usage|program'
	vmm_command bad-no-command 30
	check_refused badinput/no-arguments 'usage'
	vmm_command bad-unknown-command 30 frobnicate
	check_refused badinput/unknown-command 'frobnicate|usage|command'
	vm bad-unknown-option 30 --root "$GROOT" --bogus -- /bin/hello
	check_refused badinput/unknown-option 'bogus|usage|option'
	# An entry point outside guest memory: refused, or the guest dies at once.
	variant entry-outside && put_le "$BAD/bin/entry-outside" 24 8 $((0x7fff00000000))
	vm bad-entry 30 --root "$BAD" -- /bin/entry-outside
	if [[ -n $VMM_PROBLEM ]]; then
		fail badinput/entry-outside-memory "$VMM_PROBLEM" "$ERR"
	elif [[ $STATUS == 0 || $STATUS == 124 ]]; then
		fail badinput/entry-outside-memory "exit status $STATUS, want an error or a signal" "$ERR"
	else
		pass badinput/entry-outside-memory
	fi
else
	fail badinput/all "guest program hello not built"
fi

# ---- busybox from the base root -----------------------------------------------------
BASE=$ROOTFS/base
BUSYBOX=
for p in /bin/busybox /usr/bin/busybox; do
	if [[ -e $BASE$p || -L $BASE$p ]]; then BUSYBOX=$p; break; fi
done
if [[ ! -d $BASE ]]; then
	for t in echo ls-root cat-task sha256sum-10MiB stdin; do
		skip "busybox/$t" "$BASE not built (make rootfs)"
	done
elif [[ -z $BUSYBOX ]]; then
	fail busybox/present "no busybox in $BASE (/bin/busybox or /usr/bin/busybox)"
else
	BTASK=$T/bbtask
	mkdir -p "$BTASK"
	printf 'first line\nsecond line\n' >"$BTASK/file.txt"
	head -c $((10 * 1024 * 1024)) /dev/urandom >"$BTASK/random.bin"
	bb() { local tag=$1; shift; vm "$tag" 60 --root "$BASE" --task "$BTASK" -- "$BUSYBOX" "$@"; }

	bb bb-echo echo hello from busybox
	echo 'hello from busybox' >"$T/want-echo"
	check_output busybox/echo "$T/want-echo"

	bb bb-ls ls /
	if [[ -n $VMM_PROBLEM || $STATUS != 0 ]]; then
		fail busybox/ls-root "${VMM_PROBLEM:-exit status $STATUS}" "$ERR"
	else
		missing=
		for entry in "$BASE"/*; do
			name=${entry##*/}
			grep -qx "$name" "$OUT" || missing+=" $name"
		done
		if [[ -z $missing ]]; then
			pass busybox/ls-root
		else
			fail busybox/ls-root "entries of the root missing from the listing:$missing" "$OUT"
		fi
	fi

	bb bb-cat cat /var/task/file.txt
	check_output busybox/cat-task "$BTASK/file.txt"

	bb bb-sha sha256sum /var/task/random.bin
	want=$(sha256sum <"$BTASK/random.bin" | cut -d' ' -f1)
	got=$(cut -d' ' -f1 "$OUT")
	if [[ -n $VMM_PROBLEM || $STATUS != 0 ]]; then
		fail busybox/sha256sum-10MiB "${VMM_PROBLEM:-exit status $STATUS}" "$ERR"
	elif [[ $got != "$want" ]]; then
		fail busybox/sha256sum-10MiB "guest says '$got', host says '$want'" "$ERR"
	else
		pass busybox/sha256sum-10MiB
	fi

	printf 'through stdin\n' >"$T/stdin.txt"
	VM_STDIN=$T/stdin.txt bb bb-stdin cat
	check_output busybox/stdin-reaches-the-guest "$T/stdin.txt"
fi

# ---- python3 from the python3 root ----------------------------------------------------
PYROOT=$ROOTFS/python3
PY=/usr/bin/python3
if [[ ! -d $PYROOT ]]; then
	for t in json script-imports-module traceback modules memory-error host-rss; do
		skip "python/$t" "$PYROOT not built (make rootfs)"
	done
else
	PTASK=$T/pytask
	mkdir -p "$PTASK"
	cat >"$PTASK/main.py" <<'EOF'
import helper
print(helper.greet("ember"))
EOF
	cat >"$PTASK/helper.py" <<'EOF'
def greet(name):
    return "hello, " + name
EOF
	cat >"$PTASK/boom.py" <<'EOF'
def inner():
    raise ValueError("boom from the guest")

def outer():
    inner()

outer()
EOF
	cat >"$PTASK/modules.py" <<'EOF'
import sys
checks = {
    "hashlib": lambda m: m.sha256(b"abc").hexdigest() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    "datetime": lambda m: m.datetime.now().year >= 2024 and m.date(2024, 2, 29).isoformat() == "2024-02-29",
    "re": lambda m: m.match(r"(\w+)@(\w+)", "user@host").group(2) == "host",
    "base64": lambda m: m.b64decode(m.b64encode(b"\x00\xffember")) == b"\x00\xffember",
    "decimal": lambda m: str(m.Decimal("1.1") + m.Decimal("2.2")) == "3.3",
    "sqlite3": lambda m: m.connect(":memory:").execute("select 6*7").fetchone()[0] == 42,
}
for name, check in checks.items():
    try:
        module = __import__(name)
        ok = check(module)
        print(("ok " if ok else "wrong ") + name)
    except Exception as e:
        print("error %s: %s: %s" % (name, type(e).__name__, str(e).replace("\n", " ")))
sys.stdout.flush()
EOF
	cat >"$PTASK/memory.py" <<'EOF'
try:
    big = bytearray(b"\x01" * (100 * 1024 * 1024))
    print("allocated 100 MiB")
except MemoryError:
    print("MemoryError for 100 MiB")
blocks = []
try:
    while True:
        blocks.append(b"\x02" * (1024 * 1024))
except MemoryError:
    count = len(blocks)
    blocks = None
    print("MemoryError after %s MiB" % ("few" if count < 64 else "too many: %d" % count))
EOF
	py() { local tag=$1 limit=$2; shift 2; vm "$tag" "$limit" --root "$PYROOT" --task "$PTASK" "$@"; }

	code='import json,sys; print(json.dumps({"a":[1,2,3]}))'
	py py-json 60 -- "$PY" -c "$code"
	if command -v python3 >/dev/null; then
		python3 -c "$code" >"$T/want-json"
	else
		echo '{"a": [1, 2, 3]}' >"$T/want-json"
	fi
	check_output python/json "$T/want-json"

	py py-script 60 -- "$PY" /var/task/main.py
	echo 'hello, ember' >"$T/want-script"
	check_output python/script-imports-module "$T/want-script"

	py py-boom 60 -- "$PY" /var/task/boom.py
	if [[ -n $VMM_PROBLEM ]]; then
		fail python/traceback "$VMM_PROBLEM" "$ERR"
	elif [[ $STATUS != 1 ]]; then
		fail python/traceback "exit status $STATUS, want 1" "$ERR"
	elif ! grep -q '^Traceback (most recent call last):' "$ERR" ||
		! grep -q 'in inner' "$ERR" || ! grep -q '^ValueError: boom from the guest' "$ERR"; then
		fail python/traceback "stderr lacks the traceback" "$ERR"
	else
		pass python/traceback
	fi

	py py-modules 120 -- "$PY" /var/task/modules.py
	if [[ -n $VMM_PROBLEM || $STATUS -ge 128 ]]; then
		fail python/modules "${VMM_PROBLEM:-python died: exit status $STATUS}" "$ERR"
	fi
	for m in hashlib datetime re base64 decimal sqlite3; do
		line=$(grep -E "^(ok|wrong|error) $m(:|$)" "$OUT")
		case $line in
		"ok $m") pass "python/import-$m" ;;
		"wrong $m") fail "python/import-$m" "imported, but gave a wrong answer" ;;
		"error $m:"*) skip "python/import-$m" "a Python error, not a VMM crash: ${line#error $m: }" ;;
		*) fail "python/import-$m" "no result (exit status $STATUS)" "$ERR" ;;
		esac
	done

	py py-memory 120 --mem 64 -- "$PY" /var/task/memory.py
	printf 'MemoryError for 100 MiB\nMemoryError after few MiB\n' >"$T/want-memory"
	check_output python/memory-error-past-mem "$T/want-memory"
	if [[ $ASAN == 1 ]]; then
		skip python/host-rss-under-mem-plus-16MiB "host RSS bound not meaningful under AddressSanitizer"
	elif [[ -n $VMM_PROBLEM ]]; then
		fail python/host-rss-under-mem-plus-16MiB "$VMM_PROBLEM"
	elif [[ ${RSS_KB:-0} -gt $(((64 + 16) * 1024)) ]]; then
		fail python/host-rss-under-mem-plus-16MiB "peak host RSS $((RSS_KB / 1024)) MiB with --mem 64"
	else
		pass python/host-rss-under-mem-plus-16MiB
		echo "    peak host RSS $((RSS_KB / 1024)) MiB with --mem 64"
	fi
fi

exit $((failures > 0))
