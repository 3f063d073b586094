#!/bin/sh
# Disk guardian benchmark: CPU and memory of the watcher (1 s polling, 10 tmpfs
# mounts, 100 log files) and the time from a threshold crossing to the first
# byte freed. Needs root (it mounts tmpfs under a temporary directory).
#   benchmarks/disk/run.sh [--seconds 60] [--mounts 10] [--logs 100] [--trials 3]
set -eu
cd "$(dirname "$0")/../.."
export PATH=/opt/swift/usr/bin:$PATH
SCRATCH=${SCRATCH:-.build-disk}
swift build -c release --scratch-path "$SCRATCH" --product guardian >&2
exec "$SCRATCH/release/guardian" disk-bench "$@"
