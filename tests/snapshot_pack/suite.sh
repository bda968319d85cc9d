#!/usr/bin/env bash
# ember-suite: microvms
# The ember-snapshot suite: pack, unpack and verify of real snapshots, and
# refusal of every kind of bad input.  Makes real snapshots with ember-vmm
# (busybox `sh` blocked reading stdin, in a 128 MiB and a 16 GiB guest),
# then checks: verify of the directory and of the packed file; pack →
# unpack is byte-exact, keeps holes, repacks to the same bytes, and the
# unpacked snapshot restores and answers; a densely written memory file
# packs as small as the sparse one; pack, unpack and verify of the 16 GiB
# guest stay in a few MiB of memory; bad snapshot directories are refused
# by verify and pack; packed files with a flipped byte (in the frame
# header, in a block, in the content checksum), truncated, empty, not LZ4,
# with trailing bytes, without a content checksum, and hand-made archives
# (framed with the lz4 command) with a `../evil` name, an extent past the
# file's end, overlapping extents, a wrong end count, an unknown version,
# or a memory size the state disagrees with, are each refused by unpack and
# verify with a clear message, leaving no directory behind; unpack into an
# existing directory is refused; usage errors exit 2.  The archive parser's
# own unit test is tests/unit/test_pack_archive.c, its fuzz target
# tests/fuzz/fuzz_snapshot_archive.c (run by tests/fuzz/suite.sh).
#
# Builds nothing: the Makefile builds $BUILD/bin/ember-snapshot, ember-vmm,
# ember-ctl and build/rootfs/base.  Needs /dev/kvm for the snapshots
# (without it those tests say SKIP) and the lz4 command for the hand-made
# archives.
#
# Prints one line per test: "PASS name", "FAIL name: why" (details follow,
# indented) or "SKIP name: why".  Exits 1 if anything failed.
# Environment: BUILD (default build), EMBER_ROOTFS (default build/rootfs),
# EMBER_SUITE_KEEP=1 (keep the temporary files).
set -u

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
SNAPSHOT=$BUILD/bin/ember-snapshot
VMM=$BUILD/bin/ember-vmm
CTL=$BUILD/bin/ember-ctl
ROOT=${EMBER_ROOTFS:-$REPO/build/rootfs}/base

failures=0
# shellcheck source=../lib/platform.sh
source "$REPO/tests/lib/platform.sh"
pass() { echo "PASS $1"; }
fail() {
	echo "FAIL $1: $2"
	failures=$((failures + 1))
	local file
	for file in "${@:3}"; do
		[[ -s $file ]] && head -n 10 "$file" | sed 's/^/    /'
	done
}
skip() { echo "SKIP $1: $2"; }

T=$(mktemp -d /tmp/ember-snapshot-pack.XXXXXX)
VMM_PID=
cleanup() {
	[[ -n $VMM_PID ]] && kill "$VMM_PID" 2>/dev/null
	if [[ -n ${EMBER_SUITE_KEEP:-} ]]; then
		echo "# kept the suite's files in $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ ! -x $SNAPSHOT ]]; then
	fail build "ember-snapshot is not built ($SNAPSHOT missing)"
	exit 1
fi
have_lz4=
command -v lz4 >/dev/null && have_lz4=yes

# ---- helpers ---------------------------------------------------------------

# make_snapshot NAME MEM_MIB: a snapshot of busybox sh blocked reading stdin,
# in $T/NAME.  Returns non-zero with the reason in $T/NAME.log.
make_snapshot() {
	local name=$1 mem=$2 dir=$T/$1 sock=$T/$1.sock fifo=$T/$1.stdin
	local log=$T/$1.log
	mkfifo "$fifo" || return 1
	exec 7<>"$fifo" # keeps the guest's stdin open and empty: its read blocks
	"$VMM" run --mem "$mem" --root "$ROOT" --control-sock "$sock" --timeout 60 \
		-- /bin/busybox sh -c 'read line; echo "got $line"' <"$fifo" >"$log" 2>&1 &
	VMM_PID=$!
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -S $sock ]] && break
		sleep 0.05
	done
	sleep 0.3 # let the guest reach its read
	local rc=0
	{ "$CTL" "$sock" pause && "$CTL" "$sock" snapshot "$dir"; } >>"$log" 2>&1 || rc=1
	"$CTL" "$sock" quit >/dev/null 2>&1
	wait "$VMM_PID" 2>/dev/null
	VMM_PID=
	exec 7>&-
	[[ $rc == 0 && -f $dir/state && -f $dir/memory ]]
}

blocks() { stat -c %b "$1"; }

# left_behind NAME: lists anything unpack may have left for $T/NAME.
left_behind() { compgen -G "$T/$1*" || true; }

# expect_refused TEST FILE PATTERN: verify and unpack of FILE both exit 1
# with PATTERN in their message, and unpack leaves nothing behind.
expect_refused() {
	local test=$1 file=$2 pattern=$3 target=out-$1
	target=${target//\//-}
	"$SNAPSHOT" verify "$file" >"$T/v.out" 2>"$T/v.err"
	local verify_rc=$?
	"$SNAPSHOT" unpack "$file" "$T/$target" >"$T/u.out" 2>"$T/u.err"
	local unpack_rc=$?
	local left
	left=$(left_behind "$target")
	if [[ $verify_rc != 1 ]]; then
		fail "$test" "verify exited $verify_rc, expected 1" "$T/v.out" "$T/v.err"
	elif [[ $unpack_rc != 1 ]]; then
		fail "$test" "unpack exited $unpack_rc, expected 1" "$T/u.out" "$T/u.err"
	elif ! grep -q -- "$pattern" "$T/v.err" || ! grep -q -- "$pattern" "$T/u.err"; then
		fail "$test" "the messages do not say \"$pattern\"" "$T/v.err" "$T/u.err"
	elif [[ $(wc -l <"$T/v.err") != 1 || $(wc -l <"$T/u.err") != 1 ]]; then
		fail "$test" "the error is not reported exactly once" "$T/v.err" "$T/u.err"
	elif [[ -n $left ]]; then
		fail "$test" "unpack left behind: $left"
	elif [[ -s $T/v.out || -s $T/u.out ]]; then
		fail "$test" "a refusal printed on stdout" "$T/v.out" "$T/u.out"
	else
		pass "$test"
	fi
}

# flip FILE OFFSET OUT: OUT is FILE with the byte at OFFSET inverted.
flip() {
	cp "$1" "$3"
	local byte
	byte=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "$(printf '\\%03o' $((byte ^ 0xff)))" | dd of="$3" bs=1 seek="$2" conv=notrunc status=none
}

# Little-endian integers and archive records (snapshot/pack_archive.h).
le32() {
	local v=$1
	printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((v & 255)) $(((v >> 8) & 255)) $(((v >> 16) & 255)) $(((v >> 24) & 255)))"
}
le64() {
	le32 $(($1 & 0xffffffff))
	le32 $((($1 >> 32) & 0xffffffff))
}
archive_header() { printf 'EMBERPAK'; le32 "${1:-1}"; le32 0; }
file_record() { printf 'FILE'; le32 ${#1}; le64 "$2"; printf '%s' "$1"; }
extent_record() { printf 'DATA'; le32 0; le64 "$1"; le64 "$2"; }
end_record() { printf 'END.'; le32 "$1"; le64 "$2"; le64 "$3"; }
frame() { lz4 -z -q -c; } # the lz4 command: a frame with a content checksum

# ---- a real snapshot, and the round trip ----------------------------------
snap=$T/snap
if ! platform_require snapshot "$VMM"; then
	failures=$((failures + 1))
	have_snapshot=
elif [[ ! -x $VMM || ! -x $CTL || ! -d $ROOT ]]; then
	fail snapshot "ember-vmm, ember-ctl or $ROOT is not built (make; make rootfs)"
	have_snapshot=
elif make_snapshot snap 128; then
	pass snapshot
	have_snapshot=yes
else
	fail snapshot "ember-vmm could not make a snapshot" "$T/snap.log"
	have_snapshot=
fi

if [[ -n $have_snapshot ]]; then
	if "$SNAPSHOT" verify "$snap" >"$T/out" 2>&1 && grep -q "^ok: snapshot \`$snap\`: state format" "$T/out"; then
		pass verify/dir
	else
		fail verify/dir "verify of a fresh snapshot failed" "$T/out"
	fi

	packed=$T/snap.lz4
	if "$SNAPSHOT" pack "$snap" "$packed" >"$T/out" 2>&1 && [[ -s $packed ]] &&
		[[ $(od -An -tx1 -N4 "$packed" | tr -d ' ') == 04224d18 ]]; then
		pass pack
	else
		fail pack "pack failed or did not write an LZ4 frame" "$T/out"
	fi
	if [[ -n $(compgen -G "$T/snap.lz4.tmp-*") ]]; then
		fail pack/no-temporary "pack left a temporary file"
	else
		pass pack/no-temporary
	fi

	if "$SNAPSHOT" verify "$packed" >"$T/out" 2>&1 && grep -q "^ok: packed snapshot .*checksums match" "$T/out"; then
		pass verify/file
	else
		fail verify/file "verify of a fresh packed file failed" "$T/out"
	fi

	unpacked=$T/unpacked
	if "$SNAPSHOT" unpack "$packed" "$unpacked" >"$T/out" 2>&1; then
		if cmp -s "$snap/state" "$unpacked/state" && cmp -s "$snap/memory" "$unpacked/memory"; then
			pass unpack/byte-exact
		else
			fail unpack/byte-exact "the unpacked files differ from the originals"
		fi
		# Holes stay holes: no more than 64 KiB more allocated than the original.
		if (($(blocks "$unpacked/memory") <= $(blocks "$snap/memory") + 128)); then
			pass unpack/keeps-holes
		else
			fail unpack/keeps-holes "memory allocates $(blocks "$unpacked/memory") blocks; the original $(blocks "$snap/memory")"
		fi
		if [[ $(stat -c %a "$unpacked") == 755 && -z $(left_behind unpacked.tmp) ]]; then
			pass unpack/directory
		else
			fail unpack/directory "mode $(stat -c %a "$unpacked") or a temporary left: $(left_behind unpacked.tmp)"
		fi
		if "$SNAPSHOT" verify "$unpacked" >/dev/null 2>&1; then
			pass unpack/verifies
		else
			fail unpack/verifies "verify of the unpacked directory failed"
		fi
		"$SNAPSHOT" pack "$unpacked" "$T/repacked.lz4" >/dev/null 2>&1
		if cmp -s "$packed" "$T/repacked.lz4"; then
			pass unpack/repacks-identically
		else
			fail unpack/repacks-identically "packing the unpacked snapshot gives other bytes"
		fi
		output=$(echo hello | timeout -k 5 30 "$VMM" restore "$unpacked" 2>"$T/restore.err")
		if [[ $output == "got hello" ]]; then
			pass unpack/restores
		else
			fail unpack/restores "the restored guest printed \"$output\", expected \"got hello\"" "$T/restore.err"
		fi
	else
		fail unpack "unpack of a fresh packed file failed" "$T/out"
	fi

	# Unpack never replaces anything.
	mkdir "$T/existing" && touch "$T/existing/mine"
	if "$SNAPSHOT" unpack "$packed" "$T/existing" >"$T/out" 2>&1; then
		fail unpack/existing-dir "unpack into an existing directory succeeded"
	elif [[ $? == 1 && -f $T/existing/mine && $(ls -A "$T/existing") == mine ]] && grep -q "already exists" "$T/out" &&
		[[ -z $(left_behind existing.tmp) ]]; then
		pass unpack/existing-dir
	else
		fail unpack/existing-dir "not refused cleanly, or the directory was touched" "$T/out"
	fi
	touch "$T/existing-file"
	if ! "$SNAPSHOT" unpack "$packed" "$T/existing-file" >/dev/null 2>&1 && [[ -f $T/existing-file ]]; then
		pass unpack/existing-file
	else
		fail unpack/existing-file "unpack over an existing file was not refused"
	fi

	# A memory file written densely (zeros and all) packs as small as the sparse one.
	mkdir "$T/dense"
	cp "$snap/state" "$T/dense/state"
	cp --sparse=never "$snap/memory" "$T/dense/memory"
	"$SNAPSHOT" pack "$T/dense" "$T/dense.lz4" >/dev/null 2>&1
	"$SNAPSHOT" unpack "$T/dense.lz4" "$T/dense.unpacked" >/dev/null 2>&1
	dense_size=$(stat -c %s "$T/dense.lz4" 2>/dev/null || echo 0)
	sparse_size=$(stat -c %s "$packed")
	if (($(blocks "$T/dense/memory") < 2 * 128 * 1024)); then
		skip pack/dense-memory "cp --sparse=never did not write the zeros"
	elif ((dense_size > 0 && dense_size <= sparse_size + 65536)) && cmp -s "$snap/memory" "$T/dense.unpacked/memory" &&
		(($(blocks "$T/dense.unpacked/memory") <= $(blocks "$snap/memory") + 128)); then
		pass pack/dense-memory
	else
		fail pack/dense-memory "dense: packed $dense_size bytes (sparse $sparse_size), unpacked allocates $(blocks "$T/dense.unpacked/memory" 2>/dev/null) blocks"
	fi
	rm -rf "$T/dense" "$T/dense.lz4" "$T/dense.unpacked"

	# pack replaces an existing file only with a complete one, and never writes into the snapshot.
	echo old >"$T/replace.lz4"
	if "$SNAPSHOT" pack "$snap" "$T/replace.lz4" >/dev/null 2>&1 && cmp -s "$packed" "$T/replace.lz4"; then
		pass pack/replaces-file
	else
		fail pack/replaces-file "packing over an existing file failed or differs"
	fi
	if ! "$SNAPSHOT" pack "$snap" "$snap/inside.lz4" >"$T/out" 2>&1 && [[ $(ls -A "$snap" | tr '\n' ' ') == "memory state " ]]; then
		pass pack/not-inside-snapshot
	else
		fail pack/not-inside-snapshot "packing into the snapshot itself was not refused" "$T/out"
	fi

	# ---- bad snapshot directories: verify and pack refuse them ---------------
	bad_dir() { # TEST PATTERN SETUP...: a copy of the snapshot changed by SETUP
		local test=$1 pattern=$2 dir=$T/bad
		shift 2
		rm -rf "$dir" && cp -a "$snap" "$dir" && (cd "$dir" && eval "$@")
		"$SNAPSHOT" verify "$dir" >"$T/v.out" 2>"$T/v.err"
		local verify_rc=$?
		"$SNAPSHOT" pack "$dir" "$T/bad.lz4" >"$T/p.out" 2>"$T/p.err"
		local pack_rc=$?
		if [[ $verify_rc != 1 || $pack_rc != 1 ]]; then
			fail "$test" "verify exited $verify_rc, pack $pack_rc; expected 1" "$T/v.err" "$T/p.err"
		elif ! grep -q -- "$pattern" "$T/v.err" || ! grep -q -- "$pattern" "$T/p.err"; then
			fail "$test" "the messages do not say \"$pattern\"" "$T/v.err" "$T/p.err"
		elif [[ -e $T/bad.lz4 || -n $(compgen -G "$T/bad.lz4.tmp-*") ]]; then
			fail "$test" "pack wrote a file"
		else
			pass "$test"
		fi
		rm -rf "$dir"
	}
	bad_dir verify-dir/extra-file "unexpected entry \`notes\`" 'touch notes'
	bad_dir verify-dir/no-memory "no \`memory\` file" 'rm memory'
	bad_dir verify-dir/short-memory "the state says guest memory is" 'truncate -s 64M memory'
	bad_dir verify-dir/memory-symlink "\`memory\` is not a regular file" 'mv memory ../m2 && ln -s ../m2 memory'
	bad_dir verify-dir/state-flipped "checksum mismatch" 'printf "\377" | dd of=state bs=1 seek=100 conv=notrunc status=none'
	bad_dir verify-dir/state-truncated "state file is truncated" 'truncate -s 20 state'
	rm -f "$T/m2"

	# ---- damaged packed files: verify and unpack refuse them -----------------
	size=$(stat -c %s "$packed")
	flip "$packed" $((size / 2)) "$T/flip-middle.lz4"
	expect_refused packed/flipped-block "$T/flip-middle.lz4" "checksum mismatch"
	flip "$packed" 5 "$T/flip-header.lz4"
	expect_refused packed/flipped-frame-header "$T/flip-header.lz4" "LZ4 frame header"
	flip "$packed" $((size - 2)) "$T/flip-checksum.lz4"
	expect_refused packed/flipped-content-checksum "$T/flip-checksum.lz4" "content checksum mismatch"
	head -c $((size - 100)) "$packed" >"$T/truncated.lz4"
	expect_refused packed/truncated "$T/truncated.lz4" "truncated"
	head -c $((size / 3)) "$packed" >"$T/truncated-third.lz4"
	expect_refused packed/truncated-third "$T/truncated-third.lz4" "truncated"
	head -c 9 "$packed" >"$T/truncated-header.lz4"
	expect_refused packed/truncated-header "$T/truncated-header.lz4" "LZ4 frame"
	{
		cat "$packed"
		echo trailing
	} >"$T/trailing.lz4"
	expect_refused packed/trailing-bytes "$T/trailing.lz4" "data follows the LZ4 frame"
	cat "$packed" "$packed" >"$T/two-frames.lz4"
	expect_refused packed/two-frames "$T/two-frames.lz4" "data follows the LZ4 frame"
	head -c 100000 "$VMM" >"$T/not-lz4"
	expect_refused packed/not-lz4 "$T/not-lz4" "not an LZ4 frame"
	: >"$T/empty"
	expect_refused packed/empty "$T/empty" "empty"
fi

# ---- hand-made archives in valid LZ4 frames --------------------------------
if [[ -z $have_lz4 ]]; then
	skip archive "the lz4 command is not installed: the hand-made archives cannot be framed"
else
	craft() { frame >"$T/$1.lz4"; }

	if [[ -n $have_snapshot ]]; then
		state_size=$(stat -c %s "$snap/state")
		lz4 -d -q -c "$packed" >"$T/archive" 2>/dev/null
		if [[ $(head -c 8 "$T/archive") == EMBERPAK ]]; then
			pass archive/is-lz4-interoperable
		else
			fail archive/is-lz4-interoperable "lz4 -d does not give the archive"
		fi
		# The same archive in a frame of the lz4 command (no block checksums) is accepted.
		frame <"$T/archive" >"$T/reframed.lz4"
		if "$SNAPSHOT" verify "$T/reframed.lz4" >"$T/out" 2>&1; then
			pass archive/reframed-accepted
		else
			fail archive/reframed-accepted "a standard frame of a valid archive was refused" "$T/out"
		fi
		lz4 -z -q -c --no-frame-crc <"$T/archive" >"$T/no-content-checksum.lz4"
		expect_refused archive/no-content-checksum "$T/no-content-checksum.lz4" "no content checksum"

		# A valid state, but a memory entry of another size.
		{
			archive_header
			file_record state "$state_size"
			extent_record 0 "$state_size"
			cat "$snap/state"
			file_record memory 4096
			end_record 2 1 "$state_size"
		} | craft memory-size
		expect_refused archive/memory-size-differs "$T/memory-size.lz4" "the state says guest memory is"
		# A state that is not a state.
		{
			archive_header
			file_record state 16
			extent_record 0 16
			printf 'EMBERSNPgarbage!'
			file_record memory 4096
			end_record 2 1 16
		} | craft bad-state
		expect_refused archive/bad-state "$T/bad-state.lz4" "\`state\`: state file is truncated"
		# A valid state and memory entry, then a bad ending.
		memory_size=$(stat -c %s "$snap/memory")
		valid_files() {
			archive_header
			file_record state "$state_size"
			extent_record 0 "$state_size"
			cat "$snap/state"
			file_record memory "$memory_size"
			extent_record 4096 4096
			head -c 4096 /dev/zero | tr '\0' 'x'
		}
		{
			valid_files
			end_record 2 2 $((state_size + 4096))
		} | craft minimal
		if "$SNAPSHOT" verify "$T/minimal.lz4" >"$T/out" 2>&1; then
			pass archive/hand-made-valid
		else
			fail archive/hand-made-valid "a hand-made valid archive was refused" "$T/out"
		fi
		{
			valid_files
			end_record 2 5 $((state_size + 4096))
		} | craft end-count
		expect_refused archive/wrong-end-count "$T/end-count.lz4" "the end record counts"
		{
			valid_files
			end_record 2 2 $((state_size + 4096))
			printf 'more'
		} | craft after-end
		expect_refused archive/data-after-end "$T/after-end.lz4" "after the end record"
		{
			valid_files
			extent_record 0 4096
			head -c 4096 /dev/zero | tr '\0' 'y'
			end_record 2 3 $((state_size + 8192))
		} | craft backwards
		expect_refused archive/extent-backwards "$T/backwards.lz4" "precedes"
		{
			valid_files
			extent_record 10000 4096
			head -c 4096 /dev/zero | tr '\0' 'z'
			end_record 2 3 $((state_size + 8192))
		} | craft unaligned
		expect_refused archive/extent-not-page-aligned "$T/unaligned.lz4" "whole 4096-byte pages"
		{
			valid_files
			printf 'FILE'
			le32 5
			le64 16
			printf 'third'
		} | craft third-file
		expect_refused archive/third-file "$T/third-file.lz4" "more than 2 files"
	fi

	{
		archive_header
		file_record ../evil 16
		extent_record 0 16
		printf '0123456789abcdef'
		file_record memory 4096
		end_record 2 1 16
	} | craft evil-name
	expect_refused archive/evil-name "$T/evil-name.lz4" "named \`../evil\`"
	{
		archive_header
		file_record /etc/passwd 16
		end_record 2 0 0
	} | craft absolute-name
	expect_refused archive/absolute-name "$T/absolute-name.lz4" "named \`/etc/passwd\`"
	{
		archive_header
		file_record state 16
		extent_record 0 32
		printf '0123456789abcdef0123456789abcdef'
		file_record memory 4096
		end_record 2 1 16
	} | craft extent-past-end
	expect_refused archive/extent-past-end "$T/extent-past-end.lz4" "past the end of \`state\`"
	{
		archive_header
		file_record state 16
		extent_record 0 16
		printf '0123456789abcdef'
		extent_record 8 8
		printf '01234567'
		file_record memory 4096
		end_record 2 2 24
	} | craft overlap
	expect_refused archive/overlapping-extents "$T/overlap.lz4" "overlaps"
	{
		archive_header
		file_record state 16
		extent_record 0 16
		printf '0123456789abcdef'
	} | craft no-end
	expect_refused archive/no-end-record "$T/no-end.lz4" "truncated"
	{
		archive_header 2
		file_record state 16
	} | craft version
	expect_refused archive/future-version "$T/version.lz4" "archive format version 2"
	{
		archive_header
		file_record state 16
		file_record memory $((20 << 30))
	} | craft huge-memory
	expect_refused archive/memory-over-limit "$T/huge-memory.lz4" "more than the limit"
fi

# ---- a 16 GiB guest: streaming, in little memory ---------------------------
if [[ -n $have_snapshot ]]; then
	if make_snapshot big 16384; then
		big=$T/big
		measure() { # NAME COMMAND...: runs it, max RSS in KiB into $T/NAME.rss
			local name=$1
			shift
			if [[ -x /usr/bin/time ]]; then
				/usr/bin/time -f %M -o "$T/$name.rss" "$@" >"$T/$name.out" 2>&1
			else
				"$@" >"$T/$name.out" 2>&1
			fi
		}
		if measure pack16 "$SNAPSHOT" pack "$big" "$T/big.lz4" && measure verify16 "$SNAPSHOT" verify "$T/big.lz4" &&
			measure unpack16 "$SNAPSHOT" unpack "$T/big.lz4" "$T/big.unpacked" &&
			"$SNAPSHOT" pack "$T/big.unpacked" "$T/big.repacked.lz4" >/dev/null 2>&1 &&
			cmp -s "$T/big.lz4" "$T/big.repacked.lz4" &&
			[[ $(stat -c %s "$T/big.unpacked/memory") == $((16 << 30)) ]] &&
			(($(blocks "$T/big.unpacked/memory") <= $(blocks "$big/memory") + 128)); then
			pass 16GiB/round-trip
		else
			fail 16GiB/round-trip "pack, verify or unpack of a 16 GiB guest failed or differs" \
				"$T/pack16.out" "$T/verify16.out" "$T/unpack16.out"
		fi
		if [[ ! -x /usr/bin/time ]]; then
			skip 16GiB/little-memory "/usr/bin/time is not installed: no peak RSS to read"
		else
			peaks="pack $(cat "$T/pack16.rss" 2>/dev/null) verify $(cat "$T/verify16.rss" 2>/dev/null) unpack $(cat "$T/unpack16.rss" 2>/dev/null) KiB"
			over=
			for f in pack16 verify16 unpack16; do
				(($(cat "$T/$f.rss" 2>/dev/null || echo 999999) <= 32768)) || over=yes
			done
			if [[ -z $over ]]; then
				pass 16GiB/little-memory
				echo "    peak RSS: $peaks"
			else
				fail 16GiB/little-memory "peak RSS over 32 MiB: $peaks"
			fi
		fi
		rm -rf "$big" "$T/big.unpacked" "$T/big.lz4" "$T/big.repacked.lz4"
	else
		fail 16GiB/snapshot "ember-vmm could not snapshot a 16 GiB guest" "$T/big.log"
	fi
fi

# ---- usage -------------------------------------------------------------------
usage_case() { # NAME ARGS...: exits 2 with a usage line
	local name=$1
	shift
	"$SNAPSHOT" "$@" >"$T/out" 2>"$T/err"
	local rc=$?
	if [[ $rc == 2 ]] && grep -q "^usage: ember-snapshot" "$T/err"; then
		pass "usage/$name"
	else
		fail "usage/$name" "exit $rc, expected 2 with usage on stderr" "$T/err"
	fi
}
usage_case no-arguments
usage_case unknown-command frobnicate
usage_case pack-one-argument pack "$T"
usage_case unpack-three-arguments unpack a b c
usage_case verify-no-argument verify
if "$SNAPSHOT" verify "$T/does-not-exist" >"$T/out" 2>&1; then
	fail verify/missing "verify of a missing path succeeded"
elif [[ $? == 1 ]] && grep -q "No such file" "$T/out"; then
	pass verify/missing
else
	fail verify/missing "not refused with exit 1 and the reason" "$T/out"
fi

exit $((failures > 0))
