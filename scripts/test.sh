#!/usr/bin/env bash
# Runs guardian's whole test suite (unit tests and tests against real peers:
# sqlite databases, journald, sd_notify, moto S3, sshd, tmpfs, litestream).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
scripts/install-deps.sh
swift build --build-tests
exec swift test --skip-build --no-parallel "$@"
