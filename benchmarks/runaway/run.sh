#!/bin/sh
# Runaway-log benchmark (issue 17): failed commits, peak use, log bytes lost
# and guardian's CPU for runaway rates of 1, 10 and 50 MB/s, with and without
# guardian. Needs root (it mounts a 64 MB tmpfs under a temporary directory).
#   benchmarks/runaway/run.sh [--seconds 15] [--rates 1,10,50]
set -eu
cd "$(dirname "$0")/../.."
export PATH=/opt/swift/usr/bin:$PATH
SCRATCH=${SCRATCH:-.build-disk}
swift build -c release --scratch-path "$SCRATCH" --product guardian >&2
exec python3 benchmarks/runaway/bench.py "$SCRATCH/release/guardian" "$@"
