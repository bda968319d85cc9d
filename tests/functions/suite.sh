#!/usr/bin/env bash
# ember-suite: microvms
# The functions suite (issue 4): bundles built into function snapshots with
# ember-build-fn and invoked with ember-invoke, on real KVM microVMs.  It
# covers
#   - hello in python3 (zip and tar.gz bundles) and in the provided runtime
#     (runtimes/provided/example/bootstrap.c built with gcc -static);
#   - the event and every context field arriving intact, --env variables
#     and the documented AWS_LAMBDA_* ones, /tmp writable, /var/task not;
#   - handler exceptions (type, message, stack trace; exit 1, JSON on
#     stdout), init errors failing the build with the runtime's message and
#     leaving no output directory;
#   - a stream of 5 chunks 200 ms apart reaching stdout one by one, in order,
#     on time; a stream that fails after two chunks;
#   - a 6 MB event and a 6 MB response byte-exact (sha256), unicode intact;
#   - two invocations from one snapshot sharing no state;
#   - hostile functions (infinite loop, memory hog, 1 GiB to stdout, closing
#     or garbling the Runtime API socket, reaching 127.0.0.1:6379 while a
#     real listener waits there, and other addresses), each followed by a
#     hello that must still work;
#   - hostile bundles (zip slip, symbolic links out, writes through a
#     linked directory, absolute names, devices, hard links, a 300 MB zip
#     bomb, corrupt archives) refused with a clear message and no output;
#   - bad input to ember-invoke (no or a missing DIR, an event past 6 MB,
#     an event that is not JSON, bad --timeout values).
# Fixtures: tests/runtimes/fixtures/ (see its README) and
# tests/functions/fixtures/; bundles and events are made by
# tests/functions/fnlib.py in a temporary directory removed on exit.
#
# Prints one line per test: "PASS name", "FAIL name: why" (details follow,
# indented) or "SKIP name: why".  Exits 1 if anything failed.
# Environment: BUILD (default build; build/sanitize for SANITIZE=1 builds:
# every stderr is then also checked for sanitizer reports),
# EMBER_SUITE_KEEP=1 keeps the temporary files, EMBER_FUNCTIONS_STRESS=N adds
# N pairs of concurrent builds.  Takes 15 to 40 s on 2 cores (the 1 GiB
# written to stdout costs under 1 s of it).
set -u

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
BUILD_FN=$BUILD/bin/ember-build-fn
INVOKE=$BUILD/bin/ember-invoke
VMM=$BUILD/bin/ember-vmm
ROOTFS=$REPO/build/rootfs # the runtime roots are shared by every build
FIXTURES=$REPO/tests/runtimes/fixtures
OWN_FIXTURES=$REPO/tests/functions/fixtures
LIB=$REPO/tests/functions/fnlib.py
PROVIDED_SOURCE=$REPO/runtimes/provided/example/bootstrap.c
# Debian's python3 starts in 30 ms; a pyenv shim takes 300 ms per call.
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

failures=0
pass() { echo "PASS $1"; }
fail() {
	echo "FAIL $1: $2"
	failures=$((failures + 1))
	local file
	for file in "${@:3}"; do
		[[ -s $file ]] && head -c 2000 "$file" | head -n 12 | cut -c 1-300 | sed 's/^/    /'
	done
	return 0
}
skip() { echo "SKIP $1: $2"; }
note() { echo "    $*"; }

T=$(mktemp -d /tmp/ember-functions-suite.XXXXXX)
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null
	done
	chmod -R u+w "$T" 2>/dev/null
	if [[ -n ${EMBER_SUITE_KEEP:-} ]]; then
		echo "# kept the suite's files in $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$T/fn" "$T/log" "$T/out" "$T/bundles" "$T/src" "$T/outside"

# ---- prerequisites ------------------------------------------------------------------
# shellcheck source=../lib/platform.sh
source "$REPO/tests/lib/platform.sh"
platform_require functions "$BUILD/bin/ember-vmm" || exit 1
if [[ ! -x $BUILD_FN || ! -x $INVOKE || ! -x $BUILD/bin/ember-vmm ]]; then
	fail functions "not built: $BUILD_FN, $INVOKE or $BUILD/bin/ember-vmm missing (run make)"
	exit 1
fi
if ! command -v "$PY" >/dev/null; then
	skip functions "no python3 on the host to make bundles and check answers"
	exit 0
fi
SANITIZER_PATTERN='AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:'
if grep -qaE '__asan_init|AddressSanitizer' "$INVOKE"; then
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:exitcode=99}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=98}
fi

# ---- helpers ------------------------------------------------------------------------
now_ms() { echo $(($(date +%s%N) / 1000000)); }
py() { "$PY" "$LIB" "$@"; }

# sanitizer_clean NAME FILE...: fails NAME (and returns 1) if a sanitizer spoke.
sanitizer_clean() {
	local name=$1 file
	shift
	for file in "$@"; do
		if [[ -f $file ]] && grep -qaE "$SANITIZER_PATTERN" "$file"; then
			fail "$name" "a sanitizer reported an error" <(grep -aE -A8 "$SANITIZER_PATTERN" "$file")
			return 1
		fi
	done
	return 0
}

# bundle NAME FORMAT SRC [NAME=PATH...]: $T/bundles/NAME.(zip|tar.gz) from a fixture directory.
bundle() {
	local name=$1 format=$2 src=$3 ext=zip
	shift 3
	[[ $format == targz ]] && ext=tar.gz
	py bundle "$format" "$T/bundles/$name.$ext" "$src" "$@" || echo "bundle $name failed" >&2
	BUNDLE=$T/bundles/$name.$ext
}

# build NAME BUNDLE RUNTIME HANDLER [OPTIONS...]: ember-build-fn into $T/fn/NAME
# (128 MiB unless OPTIONS say otherwise); BRC its status, BMS its time,
# stderr in $T/log/NAME.build.
build() {
	local name=$1 bundle=$2 runtime=$3 handler=$4 start
	shift 4
	start=$(now_ms)
	timeout -k 5 120 "$BUILD_FN" --runtime "$runtime" --handler "$handler" --bundle "$bundle" --mem 128 "$@" \
		--out "$T/fn/$name" >"$T/log/$name.build.out" 2>"$T/log/$name.build"
	BRC=$?
	BMS=$(($(now_ms) - start))
	FN=$T/fn/$name
}

# fixture_fn NAME FIXTURE_DIR [HANDLER [OPTIONS...]]: bundles (zip) and builds a python3 function.
fixture_fn() {
	local name=$1 src=$2 handler=${3:-lambda_function.handler}
	shift 3 2>/dev/null || shift $#
	bundle "$name" zip "$src"
	build "$name" "$BUNDLE" python3 "$handler" "$@"
}

# built TEST NAME: whether $T/fn/NAME was built; fails TEST if not.
built() {
	if [[ $BRC != 0 || ! -f $T/fn/$2/function.json ]]; then
		fail "$1" "ember-build-fn of $2 failed (status $BRC)" "$T/log/$2.build"
		return 1
	fi
	sanitizer_clean "$1" "$T/log/$2.build"
}

# invoke TAG DIR [OPTIONS...]: ember-invoke; IRC its status, IMS its time,
# stdout in $OUT ($T/out/TAG.out), stderr in $ERR ($T/out/TAG.err).
invoke() {
	local tag=$1 dir=$2 start
	shift 2
	OUT=$T/out/$tag.out
	ERR=$T/out/$tag.err
	start=$(now_ms)
	timeout -k 5 120 "$INVOKE" "$dir" "$@" >"$OUT" 2>"$ERR" </dev/null
	IRC=$?
	IMS=$(($(now_ms) - start))
}

# jcheck TEST FILE EXPRESSION...: the JSON in FILE satisfies every expression
# (python, the document as `j`, the raw bytes as `raw`); fails TEST if not.
jcheck() {
	local name=$1 file=$2 why
	shift 2
	if ! why=$(py jcheck "$file" "$@"); then
		fail "$name" "$why" "$ERR"
		return 1
	fi
	return 0
}

# hello_ok AFTER: the hello function still answers after the hostile test AFTER.
hello_ok() {
	local name="${1}_then_hello"
	invoke "$name" "$T/fn/hello" --event "$T/hello.json"
	if [[ $IRC != 0 ]]; then
		fail "$name" "hello after $1 exited $IRC" "$ERR"
	elif jcheck "$name" "$OUT" 'j["message"] == "hello world"' && sanitizer_clean "$name" "$ERR"; then
		pass "$name"
	fi
}

# refused TEST BUNDLE PATTERN: ember-build-fn refuses BUNDLE with a message
# matching PATTERN (extended regex) and leaves no output directory.
refused() {
	local name=$1 file=$2 pattern=$3
	build "$name" "$file" python3 lambda_function.handler
	if [[ $BRC == 0 ]]; then
		fail "$name" "ember-build-fn accepted the bundle" "$T/log/$name.build"
	elif ((BRC >= 124)); then
		fail "$name" "ember-build-fn ended with status $BRC (timeout or signal)" "$T/log/$name.build"
	elif [[ -e $T/fn/$name ]]; then
		fail "$name" "the output directory $T/fn/$name was left behind ($(find "$T/fn/$name" | head -5 | tr '\n' ' '))"
	elif ! grep -qE "$pattern" "$T/log/$name.build"; then
		fail "$name" "the message does not match /$pattern/" "$T/log/$name.build"
	elif [[ -n $(ls -A "$T/outside") || -e $T/evil || -e $T/fn/evil || -e /tmp/evil ]]; then
		fail "$name" "something was written outside the task directory: $(ls -A "$T/outside" "$T"/evil "$T"/fn/evil 2>/dev/null | tr '\n' ' ')"
	elif sanitizer_clean "$name" "$T/log/$name.build"; then
		pass "$name ($(tail -n 1 "$T/log/$name.build" | sed -E 's/^.*unpack bundle `[^`]*`: //' | cut -c 1-160); ${BMS} ms)"
	fi
}

# init_error TEST FIXTURE HANDLER PATTERN...: the build fails, its stderr
# matches every PATTERN (fixed strings), no output directory is left.
init_error() {
	local name=$1 src=$2 handler=$3 pattern
	shift 3
	fixture_fn "$name" "$src" "$handler"
	if [[ $BRC == 0 ]]; then
		fail "$name" "ember-build-fn built a function whose init fails" "$T/log/$name.build"
		return
	fi
	if ((BRC >= 124)); then
		fail "$name" "ember-build-fn ended with status $BRC (timeout or signal) after $BMS ms" "$T/log/$name.build"
		return
	fi
	if [[ -e $T/fn/$name ]]; then
		fail "$name" "the output directory was left behind"
		return
	fi
	for pattern in "$@"; do
		if ! grep -qF -- "$pattern" "$T/log/$name.build"; then
			fail "$name" "the build's stderr lacks \`$pattern\`" "$T/log/$name.build"
			return
		fi
	done
	sanitizer_clean "$name" "$T/log/$name.build" && pass "$name"
}

printf '{"name":"world"}' >"$T/hello.json"

# ---- hello: python3 (zip, tar.gz) and provided ---------------------------------------
fixture_fn hello "$FIXTURES/hello" lambda_function.handler --env "GREETING=hi there" --name hello-fn
if built python3_hello hello; then
	invoke python3_hello "$FN" --event "$T/hello.json"
	if [[ $IRC != 0 ]]; then
		fail python3_hello "ember-invoke exited $IRC" "$ERR"
	elif jcheck python3_hello "$OUT" \
		'set(j) == {"message", "request_id", "remaining_ms", "function", "memory", "env"}' \
		'j["message"] == "hello world"' 're.match(UUID_RE, j["request_id"])' 'j["remaining_ms"] is True' \
		'j["function"] == "hello-fn"' 'j["memory"] == "128"' 'j["env"] == "hi there"' \
		'raw.endswith(b"}")' && sanitizer_clean python3_hello "$ERR"; then
		pass "python3_hello (build $BMS ms, invoke $IMS ms)"
	fi
fi

bundle hello_tgz targz "$FIXTURES/hello"
build hello_tgz "$BUNDLE" python3 lambda_function.handler --env GREETING=tar
if built python3_hello_targz hello_tgz; then
	invoke python3_hello_targz "$FN" --event "$T/hello.json"
	if [[ $IRC != 0 ]]; then
		fail python3_hello_targz "ember-invoke exited $IRC" "$ERR"
	elif jcheck python3_hello_targz "$OUT" 'j["message"] == "hello world"' 'j["env"] == "tar"' \
		'j["function"] == "hello_tgz"'; then
		pass python3_hello_targz
	fi
fi

mkdir -p "$T/src/provided"
if ! command -v gcc >/dev/null; then
	skip provided_hello "no gcc to build runtimes/provided/example/bootstrap.c"
elif ! gcc -static -O2 -o "$T/src/provided/bootstrap" "$PROVIDED_SOURCE" 2>"$T/log/provided.gcc"; then
	fail provided_hello "gcc -static of $PROVIDED_SOURCE failed" "$T/log/provided.gcc"
else
	bundle provided zip "$T/src/provided"
	build provided "$BUNDLE" provided bootstrap --mem 64 --name provided-fn
	if built provided_hello provided; then
		invoke provided_hello "$FN" --event "$T/hello.json"
		if [[ $IRC != 0 ]]; then
			fail provided_hello "ember-invoke exited $IRC" "$ERR"
		elif jcheck provided_hello "$OUT" 'set(j) == {"echo", "request_id", "function"}' \
			'j["echo"] == {"name": "world"}' 're.match(UUID_RE, j["request_id"])' \
			'j["function"] == "provided-fn"' && sanitizer_clean provided_hello "$ERR"; then
			pass "provided_hello (build $BMS ms, invoke $IMS ms)"
		fi
		# The same bootstrap in a tar.gz, its mode kept executable.
		bundle provided_tgz targz "$T/src/provided"
		build provided_tgz "$BUNDLE" provided bootstrap --mem 64
		if built provided_hello_targz provided_tgz; then
			invoke provided_hello_targz "$FN" --event "$T/hello.json"
			if [[ $IRC == 0 ]] && jcheck provided_hello_targz "$OUT" 'j["echo"] == {"name": "world"}'; then
				pass provided_hello_targz
			elif [[ $IRC != 0 ]]; then
				fail provided_hello_targz "ember-invoke exited $IRC" "$ERR"
			fi
		fi
	fi
	# A provided bundle without an executable `bootstrap` is refused.
	mkdir -p "$T/src/provided_none"
	cp "$FIXTURES/hello/lambda_function.py" "$T/src/provided_none/"
	bundle provided_none zip "$T/src/provided_none"
	build provided_none "$BUNDLE" provided bootstrap
	if [[ $BRC == 0 ]]; then
		fail provided_no_bootstrap "a provided bundle without bootstrap was built"
	elif [[ -e $T/fn/provided_none ]]; then
		fail provided_no_bootstrap "the output directory was left behind"
	elif grep -q bootstrap "$T/log/provided_none.build"; then
		pass provided_no_bootstrap
	else
		fail provided_no_bootstrap "the message does not name bootstrap" "$T/log/provided_none.build"
	fi
	# A provided runtime that exits during init: the build fails with its output.
	mkdir -p "$T/src/provided_exit"
	printf '#include <stdio.h>\nint main(void) { fputs("custom runtime: cannot open config.toml\\n", stderr); return 3; }\n' \
		>"$T/src/provided_exit.c"
	if gcc -static -O2 -o "$T/src/provided_exit/bootstrap" "$T/src/provided_exit.c" 2>"$T/log/provided_exit.gcc"; then
		bundle provided_exit zip "$T/src/provided_exit"
		build init_provided_exits "$BUNDLE" provided bootstrap
		if [[ $BRC == 0 ]]; then
			fail init_provided_exits "a runtime that exits during init was built"
		elif [[ -e $T/fn/init_provided_exits ]]; then
			fail init_provided_exits "the output directory was left behind"
		elif ! grep -q "cannot open config.toml" "$T/log/init_provided_exits.build"; then
			fail init_provided_exits "the runtime's own message is not in the build's stderr" "$T/log/init_provided_exits.build"
		elif ! grep -q "status 3" "$T/log/init_provided_exits.build"; then
			fail init_provided_exits "the runtime's exit status 3 is not reported" "$T/log/init_provided_exits.build"
		else
			pass init_provided_exits
		fi
	else
		fail init_provided_exits "gcc failed" "$T/log/provided_exit.gcc"
	fi
fi

# ---- the event, the context, the environment ----------------------------------------------
cat >"$T/context.json" <<'EOF'
{"s":"text","n":-12.5e3,"i":9007199254740993,"t":true,"f":false,"z":null,"a":[1,[2,[3,{}]],[]],"o":{"nested":{"deep":["x"]}},"esc":"quote\" backslash\\ slash/ tab\t nl\n u\u0001"}
EOF
fixture_fn context "$OWN_FIXTURES/context" lambda_function.handler --mem 256 --timeout 5 --name ctx-fn_1 \
	--env "GREETING=hi there" --env "EQUALS=a=b=c" --env "UNICODE=héllo wörld ✓"
export CONTEXT_EVENT=$T/context.json
if built context_fields context; then
	invoke context "$FN" --event "$T/context.json"
	cp "$OUT" "$T/out/context.first"
	if [[ $IRC != 0 ]]; then
		fail context_fields "ember-invoke exited $IRC" "$ERR"
	else
		jcheck event_intact "$OUT" \
			'j["event"] == json.loads(open(os.environ["CONTEXT_EVENT"]).read())' \
			'j["event"]["i"] == 9007199254740993' && pass event_intact
		jcheck context_fields "$OUT" 're.match(UUID_RE, j["aws_request_id"])' \
			'0 < j["remaining_ms"] <= 5000' 'j["remaining_ms"] > 4000' \
			'j["function_name"] == "ctx-fn_1"' 'j["function_version"] == "$LATEST"' \
			'j["memory_limit_in_mb"] == "256"' \
			'j["invoked_function_arn"].startswith("arn:aws:lambda:") and j["invoked_function_arn"].endswith(":function:ctx-fn_1")' \
			'j["log_group_name"] == "/aws/lambda/ctx-fn_1"' 'j["log_stream_name"]' &&
			pass "context_fields (remaining $(py jcheck "$OUT" 'print(j["remaining_ms"]) or 1' | head -1) ms of 5000)"
		jcheck env_vars "$OUT" 'j["env"]["GREETING"] == "hi there"' 'j["env"]["EQUALS"] == "a=b=c"' \
			'j["env"]["UNICODE"] == "héllo wörld ✓"' 'j["env"]["_HANDLER"] == "lambda_function.handler"' \
			'j["env"]["LAMBDA_TASK_ROOT"] == "/var/task"' 'j["env"]["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9001"' \
			'j["env"]["AWS_LAMBDA_FUNCTION_NAME"] == "ctx-fn_1"' 'j["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"' \
			'j["env"]["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"' 'j["env"]["AWS_LAMBDA_LOG_GROUP_NAME"]' \
			'j["env"]["AWS_LAMBDA_LOG_STREAM_NAME"]' 'j["env"]["AWS_REGION"]' \
			'j["env"]["_X_AMZN_TRACE_ID"] and j["env"]["_X_AMZN_TRACE_ID"].startswith("Root=")' &&
			pass env_vars
		jcheck tmp_writable "$OUT" 'j["tmp_write"] is True' && pass tmp_writable
		jcheck task_read_only "$OUT" 'j["task_write"] is not True' && pass "task_read_only ($(py jcheck "$OUT" 'print(j["task_write"]) or 1' | head -1))"
		# A second invocation: a new request id.
		invoke context2 "$FN" --event "$T/context.json"
		first_id=$(py jcheck "$T/out/context.first" 'print(j["aws_request_id"]) or 1')
		second_id=$(py jcheck "$OUT" 'print(j["aws_request_id"]) or 1')
		if [[ $IRC == 0 && -n $first_id && $first_id != "$second_id" ]]; then
			pass request_ids_differ
		else
			fail request_ids_differ "status $IRC, ids \`$first_id\` and \`$second_id\`" "$ERR"
		fi
	fi
fi

# ---- errors: the handler's and init's ---------------------------------------------------
fixture_fn raises "$FIXTURES/raises"
if built handler_exception raises; then
	invoke raises "$FN" --event "$T/hello.json"
	if [[ $IRC != 1 ]]; then
		fail handler_exception "ember-invoke exited $IRC, expected 1 (function error)" "$OUT" "$ERR"
	elif jcheck handler_exception "$OUT" 'j["errorType"] == "ValueError"' 'j["errorMessage"] == "bad input"' \
		'isinstance(j["stackTrace"], list) and any("in handler" in f for f in j["stackTrace"]) and any("in check" in f for f in j["stackTrace"])' \
		'any("lambda_function.py" in f for f in j["stackTrace"])' \
		'not any("bootstrap.py" in f for f in j["stackTrace"])'; then
		if ! grep -q "raises: about to fail" "$ERR"; then
			fail handler_exception "the handler's print() is not in the logs (stderr)" "$ERR"
		elif ! grep -q "ValueError" "$ERR"; then
			fail handler_exception "stderr does not name the error" "$ERR"
		else
			pass handler_exception
		fi
	fi
fi

init_error init_syntax_error "$FIXTURES/syntax_error" lambda_function.handler \
	Runtime.UserCodeSyntaxError lambda_function "line 5"
init_error init_missing_handler "$FIXTURES/missing_handler" lambda_function.handler \
	Runtime.HandlerNotFound "Handler 'handler' missing on module 'lambda_function'"
init_error init_missing_module "$FIXTURES/missing_module" lambda_function.handler \
	Runtime.ImportModuleError "No module named 'ember_no_such_module'"
init_error init_exception_at_import "$FIXTURES/import_error" lambda_function.handler \
	RuntimeError "boom at import"
init_error init_no_such_handler_module "$FIXTURES/hello" nothere.handler Runtime.ImportModuleError nothere
# ember-build-fn itself refuses a python3 handler without a dot, before any VM.
init_error init_malformed_handler "$FIXTURES/hello" handler "module.function"

# ---- streaming ----------------------------------------------------------------------
fixture_fn stream "$FIXTURES/stream"
if built stream_chunks stream; then
	py stream "$T/out/stream.json" -- "$INVOKE" "$FN"
	ERR=/dev/null
	if jcheck stream_chunks "$T/out/stream.json" 'j["rc"] == 0' \
		'[r[1] for r in j["reads"]] == ["chunk %d\n" % i for i in range(5)]' \
		'all(j["reads"][i + 1][0] - j["reads"][i][0] >= 0.15 for i in range(4))' \
		'all(j["reads"][i + 1][0] - j["reads"][i][0] <= 0.6 for i in range(4))' \
		'j["reads"][0][0] < 1.5'; then
		pass "stream_chunks (arrivals $(py jcheck "$T/out/stream.json" 'print(" ".join("%.0f" % (r[0] * 1000) for r in j["reads"])) or 1' | head -1) ms)"
	fi
fi

fixture_fn stream_error "$FIXTURES/stream_error"
if built stream_error stream_error; then
	invoke stream_error "$FN"
	if [[ $IRC != 1 ]]; then
		fail stream_error "ember-invoke exited $IRC, expected 1 (function error)" "$OUT" "$ERR"
	elif ! cmp -s <(head -c 14 "$OUT") <(printf 'part 1\npart 2\n'); then
		fail stream_error "the chunks before the error are not on stdout" "$OUT"
	else
		tail -c +15 "$OUT" >"$T/out/stream_error.json"
		jcheck stream_error "$T/out/stream_error.json" 'j["errorType"] == "ValueError"' \
			'j["errorMessage"] == "stream broke"' 'j["stackTrace"]' && pass stream_error
	fi
fi

# ---- big payloads and unicode ----------------------------------------------------------
bundle big zip "$FIXTURES/big"
build big "$BUNDLE" python3 lambda_function.handler
if built big_response big; then
	invoke big_response "$FN" --event "$T/hello.json"
	"$PY" -c 'import sys
P = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
sys.stdout.write("{\"size\":6000000,\"data\":\"%s\"}" % (P * 96775)[:6000000])' >"$T/out/big_expected"
	want=$(py sha256 "$T/out/big_expected")
	got=$(py sha256 "$OUT")
	if [[ $IRC != 0 ]]; then
		fail big_response_6mb "ember-invoke exited $IRC" "$ERR"
	elif [[ $want != "$got" ]]; then
		fail big_response_6mb "sha256 $got ($(stat -c %s "$OUT") bytes), expected $want ($(stat -c %s "$T/out/big_expected") bytes)"
	else
		pass "big_response_6mb ($(stat -c %s "$OUT") bytes, sha256 equal, $IMS ms)"
	fi
fi
build big_echo "$BUNDLE" python3 lambda_function.echo
if built big_event_6mb big_echo; then
	py event big "$T/big_event.json"
	invoke big_event "$FN" --event "$T/big_event.json"
	want=$(py sha256 "$T/big_event.json")
	got=$(py sha256 "$OUT")
	if [[ $IRC != 0 ]]; then
		fail big_event_6mb "ember-invoke exited $IRC" "$ERR"
	elif [[ $want != "$got" ]]; then
		fail big_event_6mb "sha256 $got ($(stat -c %s "$OUT") bytes), expected $want (6000000 bytes)"
	else
		pass "big_event_6mb (6000000 bytes there and back, sha256 equal, $IMS ms)"
	fi
fi

fixture_fn unicode "$FIXTURES/unicode"
if built unicode unicode; then
	py event unicode "$T/unicode.json"
	invoke unicode "$FN" --event "$T/unicode.json"
	if [[ $IRC != 0 ]]; then
		fail unicode "ember-invoke exited $IRC" "$ERR"
	elif ! cmp -s "$OUT" "$T/unicode.json"; then
		fail unicode "the answer differs from the event" <(cmp "$OUT" "$T/unicode.json"; echo; cat "$OUT")
	else
		pass "unicode ($(stat -c %s "$OUT") bytes of emoji, CJK, combining marks, RTL identical)"
	fi
fi

# ---- isolation: two invocations from one snapshot --------------------------------------------
fixture_fn counter "$FIXTURES/counter"
if built isolation_counter counter; then
	invoke counter1 "$FN"
	rc1=$IRC
	cp "$OUT" "$T/out/counter.first"
	invoke counter2 "$FN"
	if [[ $rc1 != 0 || $IRC != 0 ]]; then
		fail isolation_counter "ember-invoke exited $rc1 and $IRC" "$ERR"
	else
		jcheck isolation_counter "$T/out/counter.first" 'j["count"] == 1' &&
			jcheck isolation_counter "$OUT" 'j["count"] == 1' && pass isolation_counter
		r1=$(py jcheck "$T/out/counter.first" 'print(repr(j["random"])) or 1')
		r2=$(py jcheck "$OUT" 'print(repr(j["random"])) or 1')
		if [[ -n $r1 && $r1 != "$r2" ]]; then
			pass "isolation_random ($r1 vs $r2)"
		else
			fail isolation_random "random.random() gave \`$r1\` in both VMs"
		fi
		# Warm VMs prepared with the recorded hot pages (touched from inside
		# the guest before the event) start from the snapshot's state too.
		invoke counter_warm1 "$FN" --warm
		cp "$OUT" "$T/out/counter.warm1"
		rc1=$IRC
		invoke counter_warm2 "$FN" --warm
		if [[ ! -f $FN/hot-pages ]]; then
			fail isolation_counter_warm "no hot pages were recorded"
		elif [[ $rc1 != 0 || $IRC != 0 ]]; then
			fail isolation_counter_warm "ember-invoke --warm exited $rc1 and $IRC" "$ERR"
		else
			jcheck isolation_counter_warm "$T/out/counter.warm1" 'j["count"] == 1' &&
				jcheck isolation_counter_warm "$OUT" 'j["count"] == 1' &&
				jcheck isolation_counter_warm "$OUT" "j['random'] != $r1 and j['random'] != $r2" &&
				pass isolation_counter_warm
		fi
	fi
fi

# ---- hostile functions ---------------------------------------------------------------------
if [[ ! -f $T/fn/hello/function.json ]]; then
	fail hostile_functions "the hello function could not be built, so nothing can be checked after the hostile ones"
fi

fixture_fn loop_forever "$FIXTURES/loop_forever"
if built hostile_infinite_loop loop_forever; then
	invoke loop_forever "$FN" --timeout 2
	if [[ $IRC != 3 ]]; then
		fail hostile_infinite_loop "ember-invoke exited $IRC after $IMS ms, expected 3 (timeout)" "$ERR"
	elif ((IMS < 1900 || IMS > 4500)); then
		fail hostile_infinite_loop "ended after $IMS ms with --timeout 2" "$ERR"
	elif ! grep -qi "timed out" "$ERR"; then
		fail hostile_infinite_loop "stderr does not say it timed out" "$ERR"
	else
		pass "hostile_infinite_loop (exit 3 after $IMS ms, --timeout 2)"
	fi
	hello_ok hostile_infinite_loop
fi

fixture_fn memory_hog "$FIXTURES/memory_hog"
if built hostile_memory_hog memory_hog; then
	invoke memory_hog "$FN" --timeout 30
	if [[ $IRC == 1 ]]; then
		jcheck hostile_memory_hog "$OUT" 'j["errorType"] == "MemoryError"' &&
			pass "hostile_memory_hog (MemoryError as a function error: $(grep -o 'MemoryError after [0-9]* MiB' "$ERR" | head -1), $IMS ms)"
	elif [[ $IRC == 4 ]] && grep -qiE "memory|killed|exited" "$ERR"; then
		pass "hostile_memory_hog (runtime failure: $(grep ember-invoke "$ERR" | tail -1))"
	else
		fail hostile_memory_hog "ember-invoke exited $IRC after $IMS ms, expected 1 (MemoryError) or 4 with a clear message" "$OUT" "$ERR"
	fi
	hello_ok hostile_memory_hog
fi

fixture_fn stdout_flood "$FIXTURES/stdout_flood"
if built hostile_stdout_flood stdout_flood; then
	invoke stdout_flood "$FN" --timeout 60
	size=$(stat -c %s "$ERR")
	if [[ $IRC != 0 ]]; then
		fail hostile_stdout_flood "ember-invoke exited $IRC after $IMS ms, expected 0 (the handler returns)" "$OUT" <(tail -c 600 "$ERR")
	elif [[ $(cat "$OUT") != '"done"' ]]; then
		fail hostile_stdout_flood "the result is not \"done\"" "$OUT"
	elif ((size > 4 * 1048576 + 65536)); then
		fail hostile_stdout_flood "$size bytes of logs on stderr: not capped near 4 MiB"
	else
		pass "hostile_stdout_flood (1 GiB written, $size bytes of logs kept, $IMS ms)"
		if grep -qa "dropped" "$ERR"; then
			pass stdout_flood_says_dropped
		else
			fail stdout_flood_says_dropped "$size bytes of logs kept and no notice on stderr that the rest was dropped" <(tail -c 200 "$ERR")
		fi
	fi
	hello_ok hostile_stdout_flood
fi

fixture_fn close_api "$FIXTURES/close_api_socket"
if built hostile_close_api_socket close_api; then
	invoke close_api "$FN" --timeout 5
	if [[ $IRC == 0 || $IRC == 2 || $IRC == 5 || $IRC -ge 124 ]]; then
		fail hostile_close_api_socket "ember-invoke exited $IRC after $IMS ms, expected a runtime failure (4)" "$OUT" "$ERR"
	elif ((IMS > 7000)); then
		fail hostile_close_api_socket "took $IMS ms with --timeout 5" "$ERR"
	elif ! grep -q "^ember-invoke: " "$ERR"; then
		fail hostile_close_api_socket "ember-invoke gave no reason" "$ERR"
	else
		pass "hostile_close_api_socket (exit $IRC after $IMS ms: $(grep '^ember-invoke: ' "$ERR" | tail -1 | cut -c 1-120))"
	fi
	hello_ok hostile_close_api_socket
fi

fixture_fn garbage_api "$FIXTURES/garbage_api"
if built hostile_garbage_api garbage_api; then
	invoke garbage_api "$FN" --timeout 5
	if [[ $IRC == 0 || $IRC == 2 || $IRC == 5 || $IRC -ge 124 ]]; then
		fail hostile_garbage_api "ember-invoke exited $IRC after $IMS ms, expected a runtime failure or a timeout" "$OUT" "$ERR"
	elif ((IMS > 7000)); then
		fail hostile_garbage_api "took $IMS ms with --timeout 5" "$ERR"
	elif ! grep -q "^ember-invoke: " "$ERR"; then
		fail hostile_garbage_api "ember-invoke gave no reason" "$ERR"
	else
		pass "hostile_garbage_api (exit $IRC after $IMS ms: $(grep '^ember-invoke: ' "$ERR" | tail -1 | cut -c 1-120))"
	fi
	hello_ok hostile_garbage_api
fi

fixture_fn reach_redis "$FIXTURES/reach_redis"
if built hostile_network reach_redis; then
	# A real listener on the host's 127.0.0.1:6379: the function must not reach it.
	"$PY" "$LIB" listen 6379 "$T/redis.count" >"$T/redis.listen" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do
		[[ -s $T/redis.listen ]] && break
		sleep 0.02
	done
	listening=$(head -n 1 "$T/redis.listen")
	invoke reach_redis "$FN" --timeout 30
	if [[ $IRC != 0 ]]; then
		fail hostile_network "ember-invoke exited $IRC" "$OUT" "$ERR"
	elif jcheck hostile_network "$OUT" 'len(j) == 6' 'not any("CONNECTED" in v for v in j.values())' \
		'"Connection refused" in j["tcp 127.0.0.1:6379"]' \
		'not any("timed out" in v for v in j.values())' \
		're.search("unreachable|refused", j["tcp 10.1.2.3:80"], re.I)'; then
		if [[ $listening != ready ]]; then
			pass "hostile_network (host listener not checked: 127.0.0.1:6379 $listening)"
		elif [[ $(cat "$T/redis.count") != 0 ]]; then
			fail hostile_network "the host's listener on 127.0.0.1:6379 accepted $(cat "$T/redis.count") connection(s)"
		else
			pass "hostile_network (host listener on 127.0.0.1:6379 saw no connection; $(py jcheck "$OUT" 'print("; ".join("%s: %s" % kv for kv in j.items())) or 1' | head -1 | cut -c 1-250)...)"
		fi
	fi
	hello_ok hostile_network
fi

# ---- hostile bundles -------------------------------------------------------------------------
H=$T/bundles/hostile
mkdir -p "$H"
for kind in zip-slip zip-slip-deep zip-absolute zip-symlink zip-bomb corrupt-zip corrupt-truncated \
	corrupt-garbage corrupt-empty tar-slip tar-symlink-passwd tar-symlink-up tar-symlink-dir-outside \
	tar-symlink-dir-relative tar-symlink-dir-inside tar-absolute tar-device tar-hardlink; do
	ext=zip
	[[ $kind == tar-* || $kind == corrupt-truncated ]] && ext=tar.gz
	py hostile "$kind" "$H/$kind.$ext" "$T/outside" || echo "could not make the $kind bundle" >&2
done
refused bundle_zip_slip "$H/zip-slip.zip" '`\.\.`'
refused bundle_zip_slip_deep "$H/zip-slip-deep.zip" '`\.\.`'
refused bundle_tar_slip "$H/tar-slip.tar.gz" '`\.\.`'
refused bundle_zip_absolute "$H/zip-absolute.zip" 'absolute'
refused bundle_tar_absolute "$H/tar-absolute.tar.gz" 'absolute'
refused bundle_tar_symlink_etc_passwd "$H/tar-symlink-passwd.tar.gz" 'symbolic link'
refused bundle_zip_symlink_etc_passwd "$H/zip-symlink.zip" 'symbolic link'
refused bundle_tar_symlink_up "$H/tar-symlink-up.tar.gz" 'symbolic link.*leaves'
refused bundle_write_through_symlink_outside "$H/tar-symlink-dir-outside.tar.gz" 'symbolic link'
refused bundle_write_through_symlink_relative "$H/tar-symlink-dir-relative.tar.gz" 'symbolic link'
refused bundle_write_through_symlink_inside "$H/tar-symlink-dir-inside.tar.gz" 'symbolic link'
refused bundle_device_file "$H/tar-device.tar.gz" 'device'
refused bundle_hard_link "$H/tar-hardlink.tar.gz" 'hard link'
refused bundle_zip_bomb "$H/zip-bomb.zip" 'more than [0-9]+ bytes'
refused bundle_corrupt_zip "$H/corrupt-zip.zip" 'CRC|corrupt|damaged|bad'
refused bundle_truncated_targz "$H/corrupt-truncated.tar.gz" 'truncated'
refused bundle_garbage "$H/corrupt-garbage.zip" 'not a zip or tar.gz|damaged|[Uu]nrecognized'
refused bundle_empty "$H/corrupt-empty.zip" 'empty'

# ---- bad input to ember-invoke -----------------------------------------------------------------
HELLO=$T/fn/hello
OUT=$T/out/invoke_no_dir.out
"$INVOKE" >"$OUT" 2>"$T/out/invoke_no_dir.err"
rc=$?
if [[ $rc == 2 ]] && grep -qi usage "$T/out/invoke_no_dir.err"; then
	pass invoke_no_dir
else
	fail invoke_no_dir "exit $rc (expected 2 and a usage message)" "$T/out/invoke_no_dir.err"
fi
invoke invoke_missing_dir "$T/no/such/function"
if [[ $IRC == 2 ]] && grep -q "no/such/function" "$ERR"; then
	pass "invoke_missing_dir ($(head -n 1 "$ERR" | cut -c 1-160))"
else
	fail invoke_missing_dir "exit $IRC (expected 2 and a message naming the directory)" "$ERR"
fi
invoke invoke_not_a_function "$T/outside"
if [[ $IRC == 2 ]] && [[ -s $ERR ]]; then
	pass invoke_not_a_function
else
	fail invoke_not_a_function "exit $IRC for a directory that holds no function (expected 2)" "$ERR"
fi
if [[ -f $HELLO/function.json ]]; then
	py event oversize "$T/oversize.json"
	invoke invoke_event_too_large "$HELLO" --event "$T/oversize.json"
	if [[ $IRC == 2 ]] && grep -qiE "larger|limit|too large" "$ERR"; then
		pass "invoke_event_too_large ($(stat -c %s "$T/oversize.json") bytes: $(head -n 1 "$ERR" | cut -c 1-140))"
	else
		fail invoke_event_too_large "exit $IRC for a $(stat -c %s "$T/oversize.json")-byte event (expected 2 and a message)" "$ERR"
	fi
	invoke invoke_missing_event "$HELLO" --event "$T/no-such-event.json"
	if [[ $IRC == 2 ]] && grep -q "no-such-event.json" "$ERR"; then
		pass invoke_missing_event_file
	else
		fail invoke_missing_event_file "exit $IRC (expected 2 and a message naming the file)" "$ERR"
	fi
	py event invalid "$T/invalid.json"
	invoke invoke_invalid_json "$HELLO" --event "$T/invalid.json"
	if [[ $IRC != 1 ]]; then
		fail invoke_invalid_json "exit $IRC (expected 1: the runtime reports Runtime.UnmarshalError)" "$OUT" "$ERR"
	else
		jcheck invoke_invalid_json "$OUT" 'j["errorType"] == "Runtime.UnmarshalError"' 'j["errorMessage"]' &&
			pass invoke_invalid_json
	fi
	# An event on stdin.
	OUT=$T/out/invoke_stdin.out
	"$INVOKE" "$HELLO" --event - <"$T/hello.json" >"$OUT" 2>"$T/out/invoke_stdin.err"
	rc=$?
	ERR=$T/out/invoke_stdin.err
	if [[ $rc == 0 ]]; then
		jcheck invoke_event_on_stdin "$OUT" 'j["message"] == "hello world"' && pass invoke_event_on_stdin
	else
		fail invoke_event_on_stdin "exit $rc" "$ERR"
	fi
	bad_ok=1
	for value in 0 -1 abc 1e9 "" 5s nan inf 901; do
		invoke invoke_bad_timeout "$HELLO" --timeout "$value"
		if [[ $IRC != 2 ]] || ! grep -q "timeout" "$ERR"; then
			fail invoke_bad_timeout "--timeout '$value': exit $IRC (expected 2 and a message)" "$ERR"
			bad_ok=0
		fi
	done
	invoke invoke_bad_timeout "$HELLO" --timeout
	if [[ $IRC != 2 ]]; then
		fail invoke_bad_timeout "--timeout without a value: exit $IRC (expected 2)" "$ERR"
		bad_ok=0
	fi
	((bad_ok)) && pass "invoke_bad_timeout (0, -1, abc, 1e9, '', 5s, nan, inf, 901, none)"
	invoke invoke_unknown_option "$HELLO" --frobnicate
	if [[ $IRC == 2 ]]; then
		pass invoke_unknown_option
	else
		fail invoke_unknown_option "exit $IRC (expected 2)" "$ERR"
	fi
fi

# ---- hot pages: recorded by a successful invocation, used by --warm ------------------------------
if [[ -f $HELLO/function.json ]]; then
	# hello has been invoked successfully above: the pages it wrote are recorded.
	if [[ -f $HELLO/hot-pages ]] && head -1 "$HELLO/hot-pages" | grep -qx 'ember-hot-pages 2' &&
		(($(grep -c ' w$' "$HELLO/hot-pages") > 10)) && (($(grep -c ' r$' "$HELLO/hot-pages") > 10)); then
		pass hot_pages_recorded
	else
		fail hot_pages_recorded "no usable $HELLO/hot-pages after a successful invocation"
	fi
	# Only an invocation that was not pre-touched may record them: in a
	# pre-touched VM every snapshot page looks used.
	mv "$HELLO/hot-pages" "$T/hot-pages.saved"
	invoke warm_records_nothing "$HELLO" --warm --event "$T/hello.json"
	if [[ $IRC == 0 && ! -e $HELLO/hot-pages ]]; then
		pass warm_records_no_hot_pages
	else
		fail warm_records_no_hot_pages "exit $IRC; hot pages written: $([[ -e $HELLO/hot-pages ]] && wc -l <"$HELLO/hot-pages")" "$ERR"
	fi
	rm -f "$HELLO/hot-pages"
	mv "$T/hot-pages.saved" "$HELLO/hot-pages"
	invoke warm_with_hot_pages "$HELLO" --warm --event "$T/hello.json"
	if [[ $IRC == 0 ]] && jcheck warm_with_hot_pages "$OUT" 'j["message"] == "hello world"' &&
		grep -q 'event in to result out' "$ERR"; then
		pass warm_with_hot_pages
	else
		fail warm_with_hot_pages "--warm with hot pages: exit $IRC" "$ERR"
	fi
	# A hostile hot-pages file is refused by ember-vmm before the guest runs.
	for case in 'header:bogus header' 'old-version:ember-hot-pages 1\n12\n' 'range:ember-hot-pages 2\nffffffffff w\n' \
		'junk:ember-hot-pages 2\n12zz w\n' 'negative:ember-hot-pages 2\n-1 r\n' 'kind:ember-hot-pages 2\n12 x\n' \
		'unterminated:ember-hot-pages 2\n12 w'; do
		name=${case%%:*}
		printf "${case#*:}" >"$T/hot-$name"
		out=$(timeout 30 "$VMM" restore "$HELLO/snapshot" --root "$ROOTFS/python3" --task "$HELLO/task" \
			--pretouch --hot-pages "$T/hot-$name" 2>&1 </dev/null)
		rc=$?
		if ((rc == 125)) && grep -q "hot pages" <<<"$out"; then
			pass "hot_pages_refused_$name"
		else
			fail "hot_pages_refused_$name" "restore exited $rc: $(head -c 300 <<<"$out")"
		fi
	done
fi

# ---- bad input to ember-build-fn ----------------------------------------------------------------
bad_build() {
	local name=$1
	shift
	timeout -k 5 60 "$BUILD_FN" "$@" >/dev/null 2>"$T/log/$name.build"
	local rc=$?
	if [[ $rc == 0 ]]; then
		fail "$name" "ember-build-fn accepted: $*"
	elif [[ ! -s $T/log/$name.build ]]; then
		fail "$name" "exit $rc without a message"
	else
		pass "$name ($(head -n 1 "$T/log/$name.build" | cut -c 1-140))"
	fi
}
bad_build build_missing_bundle --runtime python3 --handler lambda_function.handler --bundle "$T/no-such.zip" --mem 128 --out "$T/fn/bad1"
bad_build build_unknown_runtime --runtime cobol --handler x.y --bundle "$T/bundles/hello.zip" --mem 128 --out "$T/fn/bad2"
bad_build build_zero_memory --runtime python3 --handler lambda_function.handler --bundle "$T/bundles/hello.zip" --mem 0 --out "$T/fn/bad3"
bad_build build_out_exists --runtime python3 --handler lambda_function.handler --bundle "$T/bundles/hello.zip" --mem 128 --out "$T/fn/hello"
if [[ -f $T/fn/hello/function.json ]]; then
	pass build_out_exists_untouched
else
	fail build_out_exists_untouched "a failed build into an existing function's directory removed it"
fi
leftover=$(ls -d "$T"/fn/bad? 2>/dev/null)
if [[ -z $leftover ]]; then
	pass build_bad_input_leaves_nothing
else
	fail build_bad_input_leaves_nothing "left behind: $leftover"
fi

# ---- optional: many builds, two at a time --------------------------------------------------------
# ember-build-fn pauses the VM while its vCPU thread may be blocked in the
# host recv() of the runtime's GET /next; a pause that is lost there stalls
# the build for the 10 s control timeout ("read response header: no answer
# within 10 s").  Seen about once in 60 builds on a loaded machine, so it is
# opt-in: EMBER_FUNCTIONS_STRESS=N runs N pairs of concurrent builds.
if [[ -n ${EMBER_FUNCTIONS_STRESS:-} && -f $T/bundles/hello.zip ]]; then
	stalls=0
	for i in $(seq "$EMBER_FUNCTIONS_STRESS"); do
		rm -rf "$T/fn/stress_a" "$T/fn/stress_b"
		build stress_a "$T/bundles/hello.zip" python3 lambda_function.handler &
		build stress_b "$T/bundles/hello.zip" python3 lambda_function.handler
		wait $!
		for side in a b; do
			if [[ ! -f $T/fn/stress_$side/function.json ]]; then
				stalls=$((stalls + 1))
				note "pair $i, build $side: $(tail -n 1 "$T/log/stress_$side.build")"
			fi
		done
	done
	if ((stalls)); then
		fail build_concurrent_stress "$stalls of $((2 * EMBER_FUNCTIONS_STRESS)) concurrent builds failed"
	else
		pass "build_concurrent_stress ($((2 * EMBER_FUNCTIONS_STRESS)) builds)"
	fi
else
	skip build_concurrent_stress "opt-in: EMBER_FUNCTIONS_STRESS=N runs N pairs of concurrent builds"
fi

exit $((failures > 0))
