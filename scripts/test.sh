#!/usr/bin/env bash
# Runs guardian's whole test suite (unit tests and tests against real peers:
# sqlite databases, journald, sd_notify, moto S3, sshd, tmpfs, litestream, promtool)
# and the Debian package under a real systemd (scripts/test-systemd.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
scripts/install-deps.sh
swift build --build-tests
# The Debian package under a real systemd (PID 1 in systemd-nspawn): lintian, the
# unit's sandbox, READY/watchdog, reload, a corrupted database restored through the
# app's unit. It runs first, so that the last line is Swift Testing's count. Only a
# whole run includes it (arguments select Swift tests); GUARDIAN_SKIP_SYSTEMD_TEST=1
# skips it for a quick local run.
if [ $# -eq 0 ] && [ "${GUARDIAN_SKIP_SYSTEMD_TEST:-0}" != 1 ]; then
  scripts/test-systemd.sh
fi
exec swift test --skip-build --no-parallel "$@"
