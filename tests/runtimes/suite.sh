#!/usr/bin/env bash
# ember-suite: microvms
# The runtime bootstrap suite: runs tests/runtimes/test_bootstrap.py, which
# drives the python3 bootstrap and the provided example against a scripted
# Runtime API, on the host and inside real microVMs.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
export BUILD=${BUILD:-build}
cd "$REPO" || exit 1
# shellcheck source=../lib/platform.sh
source "$REPO/tests/lib/platform.sh"
if ! platform_require runtimes "$BUILD/bin/ember-vmm"; then
	python3 tests/runtimes/test_bootstrap.py --mode host
	exit 1
fi
exec python3 tests/runtimes/test_bootstrap.py --mode all
