#!/usr/bin/env bash
# scripts/deps.sh — install Ember's build and test dependencies from Debian.
#
# Checks every package with dpkg-query first; when all are installed it
# exits at once without calling apt-get.  Otherwise (as root) it runs
# `apt-get update` once and installs only the missing ones, non-interactively.
# All names below exist in Debian 12 (bookworm) main.
set -euo pipefail

PACKAGES=(
    # toolchain and tools
    gcc make libc6-dev binutils file xxd strace ca-certificates
    # host python3, used by tests and by runtimes/build-root.sh
    python3
    # libraries and tools for later issues (installed now to avoid churn)
    libjansson-dev liblz4-dev libarchive-dev zlib1g-dev libmicrohttpd-dev
    libhiredis-dev libevent-dev libseccomp-dev
    redis-server lz4 hyperfine
    # fuzzing (libFuzzer) and the test tools
    clang libclang-rt-14-dev time
)

die() {
    echo "deps.sh: error: $*" >&2
    exit 1
}

command -v dpkg-query >/dev/null 2>&1 ||
    die "dpkg-query not found: this script needs a Debian (bookworm) host"

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    exit 0
fi

echo "deps.sh: missing packages: ${missing[*]}"

if [[ $(id -u) -ne 0 ]]; then
    die "must run as root to install: ${missing[*]} (or install them yourself: apt-get install ${missing[*]})"
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

echo "deps.sh: apt-get update"
apt-get update -q ||
    die "'apt-get update' failed; is the Debian archive reachable?"

echo "deps.sh: apt-get install ${missing[*]}"
apt-get install "${APT_OPTS[@]}" --no-install-recommends "${missing[@]}" ||
    die "'apt-get install ${missing[*]}' failed (see apt's messages above)"

# Confirm, so a half-done install is reported here and not later as a
# puzzling compile error.
still=()
for pkg in "${missing[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || still+=("$pkg")
done
((${#still[@]} == 0)) || die "still not installed after apt-get: ${still[*]}"

echo "deps.sh: all dependencies installed"
