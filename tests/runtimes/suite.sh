#!/usr/bin/env bash
# The runtime bootstrap suite: runs tests/runtimes/test_bootstrap.py, which
# drives the python3 bootstrap and the provided example against a scripted
# Runtime API, on the host and inside real microVMs.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
export BUILD=${BUILD:-build}
cd "$REPO" && exec python3 tests/runtimes/test_bootstrap.py --mode all
