#!/usr/bin/env bash
# Remediation benchmark: time from corruption to the app serving again on the
# restored database, split by phase, and rows lost per incident.
#
#   benchmarks/remediate/run.sh [SIZES_MB]      default "10,100"; "10,100,1000" adds 1 GB
#
# Each size: a WAL database of that size made in bulk, a real app process
# (insert + read per request, ~150 requests/s) started through start/stop
# scripts, a real replica written by `litestream replicate` (0.5.17), then 8
# random pages of the database file overwritten while the app runs. guardian's
# RemediationService (integrity-interval 1s, health-interval 500ms) detects,
# confirms, stops the app, quarantines, restores through Replication's
# Restorer, verifies, swaps and restarts. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/opt/swift/usr/bin:$PATH
SCRATCH=${SCRATCH:-.build-remediate}
scripts/install-deps.sh > /dev/null
if ! out=$(GUARDIAN_BENCH=1 GUARDIAN_BENCH_SIZES="${1:-10,100}" swift test --scratch-path "$SCRATCH" --filter RemediationBenchmarkTests 2>&1); then
  echo "$out" | tail -60
  exit 1
fi
echo "$out" | grep '^BENCH|' | sed -e 's/^BENCH//' -e 's/$/|/' | awk -F'|' 'NR==1 { print; s="|"; for (i = 2; i < NF; i++) s = s "---|"; print s; next } { print }'
