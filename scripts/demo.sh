#!/usr/bin/env bash
# Builds guardian and runs it on a demo database replicated to a local file
# replica (no cloud account needed). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
scripts/install-deps.sh
swift build -c release
exec .build/release/guardian demo "$@"
