#!/usr/bin/env bash
# guardian's Debian package under a real systemd (slow: a few minutes; the
# first run also debootstraps a Debian 12 root file system, ~2 minutes).
#
#   scripts/test-systemd.sh [--deb FILE] [--no-lintian]
#
# Needs root. Installs systemd-container, debootstrap and lintian if missing,
# builds the .deb with packaging/build-deb.sh (unless --deb is given), boots
# systemd as PID 1 in a systemd-nspawn container (a debootstrap'ed bookworm
# minbase cached in /var/cache/guardian-test, booted with --volatile=overlay so
# the cache stays pristine), installs the package there and checks: lintian,
# systemd-analyze verify and security (exposure <= 2.0), enabled + active +
# READY, STATUS in `systemctl status`, structured fields in `journalctl -o
# json`, catalog text in `journalctl -x`, the generated ReadWritePaths= and the
# sandbox, the polkit rule, SIGKILL -> restarted, SIGSTOP -> watchdog kill ->
# restarted, reload, corruption -> restore + the app's unit restarted through
# systemd (when the daemon runs remediation), dpkg -r / dpkg -P.
#
# Prints one PASS/FAIL/SKIP line per check and a last line "N passed, N failed";
# exits 0 only if nothing failed. Details go to the log named at the start.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DEB=""
LINTIAN=1
while [ $# -gt 0 ]; do
    case "$1" in
        --deb) DEB=$(readlink -f "$2"); shift 2 ;;
        --no-lintian) LINTIAN=0; shift ;;
        *) echo "usage: $0 [--deb FILE] [--no-lintian]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "test-systemd: needs root (systemd-nspawn, debootstrap)" >&2; exit 2; }

T=$(mktemp -d /tmp/guardian-systemd-test.XXXXXX)
LOG=$T/test.log
echo "log: $LOG"
passed=0 failed=0 skipped=0
pass() { echo "PASS $1"; echo "PASS $1" >>"$LOG"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+ — $2}"; echo "FAIL $1${2:+ — $2}" >>"$LOG"; failed=$((failed + 1)); }
skip() { echo "SKIP $1${2:+ — $2}"; echo "SKIP $1${2:+ — $2}" >>"$LOG"; skipped=$((skipped + 1)); }
info() { echo "     $*"; echo "     $*" >>"$LOG"; }
finish() {
    [ "$skipped" -gt 0 ] && echo "($skipped skipped)"
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
    exit $?
}

NSPAWN=""
cleanup() {
    if [ -n "$NSPAWN" ] && kill -0 "$NSPAWN" 2>/dev/null; then
        [ -n "${NP:-}" ] && timeout 10 nsenter -t "$NP" -a systemctl poweroff >/dev/null 2>&1
        for _ in $(seq 150); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.1; done
        kill "$NSPAWN" 2>/dev/null
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- 0. tools
need=()
for p in systemd-container debootstrap python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
[ "$LINTIAN" = 1 ] && { dpkg-query -W -f='${Status}' lintian 2>/dev/null | grep -q "install ok installed" || need+=(lintian); }
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; } >>"$LOG" 2>&1 \
        || { fail "install ${need[*]}" "see $LOG"; finish; }
fi

# The MESSAGE_ID of an event, from the sources.
event_id() {
    python3 - "$1" "$ROOT/Sources" <<'PY'
import pathlib, re, sys
name, root = sys.argv[1], pathlib.Path(sys.argv[2])
for f in root.rglob("*.swift"):
    m = re.search(r'name:\s*"%s",\s*id:\s*"([0-9a-f]{32})"' % re.escape(name), f.read_text())
    if m:
        print(m.group(1)); break
PY
}
ID_STARTED=$(event_id daemonStarted)
ID_READY=$(event_id daemonReady)
ID_RELOADED=$(event_id configReloaded)
ID_WATCHDOG=$(event_id watchdogEnabled)
ID_INCIDENT_OPENED=$(event_id incidentOpened)
ID_INCIDENT_RESOLVED=$(event_id incidentResolved)

# ---------------------------------------------------------------- 1. the package
if [ -z "$DEB" ]; then
    echo "building the package (packaging/build-deb.sh) ..."
    if packaging/build-deb.sh --no-lintian >"$T/build.log" 2>&1; then
        DEB=$(tail -n 1 "$T/build.log")
        pass "package built: $(basename "$DEB")"
    else
        cat "$T/build.log" >>"$LOG"
        fail "package build" "$(tail -n 3 "$T/build.log" | tr '\n' ' ')"
        finish
    fi
fi
[ -f "$DEB" ] || { fail "package file" "$DEB does not exist"; finish; }
info "package: $DEB"

if [ "$LINTIAN" = 1 ]; then
    lintian --fail-on error,warning "$DEB" >"$T/lintian.txt" 2>&1
    rc=$?
    grep -v 'running with root privileges' "$T/lintian.txt" | sed 's/^/     lintian: /'
    if [ "$rc" = 0 ]; then pass "lintian: no errors, no warnings"; else fail "lintian" "rc $rc"; fi
else
    skip "lintian" "--no-lintian"
fi

# ---------------------------------------------------------------- 2. root file system
MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
INCLUDE=systemd,systemd-sysv,dbus,libpam-systemd,polkitd,adduser,procps,man-db,sqlite3,libcurl4,libssh2-1,libsqlite3-0,liblz4-1,libssl3
CACHE=${GUARDIAN_TEST_CACHE:-/var/cache/guardian-test}
RF=$CACHE/rootfs-bookworm-$(echo "$INCLUDE" | sha256sum | cut -c1-8)
mkdir -p "$CACHE"
(
    flock 9
    if [ ! -f "$RF/.complete" ]; then
        echo "debootstrap bookworm minbase into $RF (once; ~2 minutes) ..."
        rm -rf "$RF.tmp"
        debootstrap --variant=minbase --include="$INCLUDE" bookworm "$RF.tmp" "$MIRROR" >>"$LOG" 2>&1 || exit 1
        touch "$RF.tmp/.complete" && rm -rf "$RF" && mv "$RF.tmp" "$RF"
        # Root file systems made for an older package list are of no use now.
        for old in "$CACHE"/rootfs-bookworm-*; do [ "$old" = "$RF" ] || rm -rf "$old"; done
    fi
) 9>"$CACHE/.lock" || { fail "debootstrap" "see $LOG"; finish; }

# ---------------------------------------------------------------- 3. boot
DEBDIR=$(dirname "$DEB")
DEBNAME=$(basename "$DEB")
systemd-nspawn -D "$RF" --volatile=overlay --register=no --keep-unit -b --console=pipe \
    -M guardian-test --bind-ro="$DEBDIR:/mnt/deb" </dev/null >"$T/boot.log" 2>&1 &
NSPAWN=$!
NP=""
for _ in $(seq 300); do
    NP=$(pgrep -P "$NSPAWN" -x systemd | head -n 1)
    [ -n "$NP" ] && break
    sleep 0.1
done
[ -n "$NP" ] || { cat "$T/boot.log" >>"$LOG"; fail "container boot" "no systemd in the container (see $LOG)"; finish; }

# Runs a command in the container (all of its namespaces), clean environment.
ct() { timeout 120 nsenter -t "$NP" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"; }
# A property of a unit.
prop() { ct systemctl show -p "$2" --value "$1"; }
# Waits until a unit is active (and, if given, its MainPID differs from $2).
wait_active() {
    local unit=$1 old=${2:-} seconds=${3:-30}
    for _ in $(seq $((seconds * 5))); do
        if [ "$(prop "$unit" ActiveState)" = active ]; then
            local pid
            pid=$(prop "$unit" MainPID)
            if [ -z "$old" ] || { [ "$pid" != "$old" ] && [ "$pid" != 0 ]; }; then return 0; fi
        fi
        sleep 0.2
    done
    return 1
}
# Journal entries of guardian since a cursor, as JSON lines.
journal_json() { ct journalctl -u guardian -o json --no-pager ${1:+--after-cursor="$1"}; }
cursor() { ct journalctl -u guardian -n 1 -o export --no-pager | sed -n 's/^__CURSOR=//p'; }
# Whether journal JSON on stdin has an entry with MESSAGE_ID=$1 (and field $2 set).
has_event() {
    python3 -c '
import json, sys
want, field = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
for line in sys.stdin:
    try: e = json.loads(line)
    except ValueError: continue
    if e.get("MESSAGE_ID") == want and (not field or field in e):
        sys.exit(0)
sys.exit(1)' "$@"
}
wait_event() { # MESSAGE_ID cursor seconds
    for _ in $(seq $(($3 * 2))); do
        journal_json "$2" | has_event "$1" && return 0
        sleep 0.5
    done
    return 1
}

state=""
for _ in $(seq 60); do # the bus may not be up the moment PID 1 exists
    state=$(ct systemctl is-system-running --wait 2>/dev/null)
    case "$state" in running | degraded | maintenance | stopping) break ;; esac
    sleep 0.5
done
info "container booted: systemd $(ct systemctl --version | head -n 1 | cut -d' ' -f2), system state $state"
case "$state" in running | degraded) pass "systemd is PID 1 in the container ($state)" ;; *) fail "container boot" "state '$state'" ;; esac

# ---------------------------------------------------------------- 4. install
if ct dpkg -i "/mnt/deb/$DEBNAME" >>"$LOG" 2>&1; then
    pass "dpkg -i $DEBNAME"
else
    info "dpkg -i failed; trying apt-get -f install (dependencies missing from the root file system?)"
    if ct sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get -f install -y -q' >>"$LOG" 2>&1; then
        pass "installed with apt-get -f install"
    else
        fail "dpkg -i" "see $LOG"; finish
    fi
fi
ct getent passwd guardian >>"$LOG" && pass "system user guardian created ($(ct getent passwd guardian | cut -d: -f3,4))" \
    || fail "system user guardian"

[ "$(ct systemctl is-enabled guardian)" = enabled ] && pass "guardian.service enabled" \
    || fail "guardian.service enabled" "$(ct systemctl is-enabled guardian)"
if wait_active guardian "" 30; then
    pass "guardian.service active (Type=notify: READY=1 received), default configuration"
else
    ct systemctl status guardian --no-pager >>"$LOG" 2>&1
    fail "guardian.service active" "$(prop guardian ActiveState)/$(prop guardian SubState)"
fi

verify=$(ct systemd-analyze verify guardian.service 2>&1)
rc=$?
if [ "$rc" = 0 ] && [ -z "$verify" ]; then pass "systemd-analyze verify guardian.service: clean"; else fail "systemd-analyze verify" "rc $rc: $verify"; fi

ct systemd-analyze security guardian.service --no-pager >"$T/security.txt" 2>&1
exposure=$(sed -n 's/.*Overall exposure level for guardian.service: \([0-9.]*\).*/\1/p' "$T/security.txt")
cat "$T/security.txt" >>"$LOG"
info "$(grep 'Overall exposure' "$T/security.txt")"
if [ -n "$exposure" ] && python3 -c "import sys; sys.exit(0 if float('$exposure') <= 2.0 else 1)"; then
    pass "systemd-analyze security: exposure $exposure <= 2.0"
else
    fail "systemd-analyze security" "exposure '${exposure:-?}' (table in $LOG)"
fi

status_text=$(prop guardian StatusText)
if [ -n "$status_text" ] && ct systemctl status guardian --no-pager 2>&1 | grep -qF "Status: \"$status_text\""; then
    pass "systemctl status shows guardian's STATUS: \"$status_text\""
else
    fail "STATUS line" "StatusText='$status_text'"
fi

journal_json "" >"$T/journal.json"
if has_event "$ID_READY" GUARDIAN_STATUS <"$T/journal.json" && has_event "$ID_STARTED" GUARDIAN_VERSION <"$T/journal.json" \
    && python3 -c '
import json, sys
es = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
g = [e for e in es if e.get("SYSLOG_IDENTIFIER") == "guardian" and "MESSAGE_ID" in e]
assert g and all(e.get("PRIORITY") and e.get("CODE_FILE") for e in g), "fields"' "$T/journal.json"; then
    pass "journalctl -u guardian -o json: MESSAGE_ID, PRIORITY, GUARDIAN_* fields (daemonStarted, daemonReady)"
else
    fail "structured journal fields" "no daemonReady/daemonStarted entry with GUARDIAN_* fields"
fi

# The first line of daemonReady's explanation in the installed catalog.
catalog_line=$(ct cat /usr/lib/systemd/catalog/guardian.catalog | awk -v id="-- $ID_READY" '
    $0 == id { entry = 1; next } entry && /^$/ { body = 1; next } entry && body { print; exit }')
if [ -n "$catalog_line" ] && ct journalctl -x -u guardian --no-pager | grep -qF "$catalog_line"; then
    pass "journalctl -x shows the catalog text (\"${catalog_line:0:50}...\")"
else
    fail "journalctl -x catalog text" "'$catalog_line' not shown"
fi

ct guardian status >"$T/status.txt" 2>&1 && pass "guardian status answers over /run/guardian/guardian.sock" \
    || fail "guardian status" "$(head -n 2 "$T/status.txt")"

# ---------------------------------------------------------------- 5. a demo application
ct sh -es >>"$LOG" 2>&1 <<'EOF'
adduser --system --group --no-create-home --quiet demoapp
install -d -o demoapp -g demoapp -m 0750 /var/lib/demo-app
runuser -u demoapp -- sqlite3 /var/lib/demo-app/app.db <<'SQL'
PRAGMA journal_mode=WAL;
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
INSERT INTO t(v) SELECT hex(randomblob(64)) FROM n;
SQL
chmod 0640 /var/lib/demo-app/app.db
cat > /etc/systemd/system/demo-app.service <<'UNIT'
[Unit]
Description=demo application writing to /var/lib/demo-app/app.db
[Service]
User=demoapp
ExecStart=/bin/sh -c 'while :; do sqlite3 /var/lib/demo-app/app.db "PRAGMA busy_timeout=5000; INSERT INTO t(v) VALUES (hex(randomblob(64)))" || exit 1; sleep 0.5; done'
Restart=no
UNIT
install -d -o guardian -g guardian -m 0750 /var/backups/demo-app
# A log directory under /home (bound into the sandbox; the rest of /home stays hidden).
install -d -m 0755 /home/demo/logs /home/other
echo secret > /home/other/private.txt
echo line > /home/demo/logs/demo.log
cat > /etc/guardian/guardian.yml <<'YML'
# test configuration (scripts/test-systemd.sh)
disk:
  logs:
    - paths: [/home/demo/logs/*.log]
      size: 100MB
dbs:
  - path: /var/lib/demo-app/app.db
    monitor-interval: 1s
    replicas:
      - name: local
        url: file:///var/backups/demo-app
    unit: demo-app.service
    remediate: auto
    integrity-interval: 2s
    health-interval: 1s
    stop-timeout: 20s
    start-timeout: 20s
YML
sed -i 's/^var guardianUnits = \[/var guardianUnits = [ "demo-app.service"/' /etc/polkit-1/rules.d/50-guardian.rules
systemctl daemon-reload
systemctl start demo-app.service
EOF
[ "$(prop demo-app ActiveState)" = active ] && pass "demo application running (demo-app.service, user demoapp)" \
    || fail "demo application" "$(prop demo-app ActiveState)"
if ct guardian check-config >>"$LOG" 2>&1; then pass "guardian check-config accepts the test configuration"; else fail "check-config" "see $LOG"; fi

if ct systemctl cat guardian 2>/dev/null | grep -qx 'ReadWritePaths=-/var/lib/demo-app' \
    && ct systemctl cat guardian 2>/dev/null | grep -qx 'ReadWritePaths=-/var/backups/demo-app'; then
    pass "generator: ReadWritePaths= for the database and replica directories after daemon-reload"
else
    ct systemctl cat guardian >>"$LOG" 2>&1
    fail "generator drop-in" "no ReadWritePaths= for /var/lib/demo-app and /var/backups/demo-app"
fi

C=$(cursor)
ct systemctl restart guardian
if wait_active guardian "" 30; then pass "restart with the demo configuration: active"; else fail "restart" "$(prop guardian ActiveState)"; fi
db_state=""
for _ in $(seq 30); do
    db_state=$(ct guardian status --json 2>/dev/null | python3 -c '
import json, sys
try: print(json.load(sys.stdin)["databases"][0]["state"])
except Exception: pass')
    [ "$db_state" = open ] && break
    sleep 0.5
done
if [ "$db_state" = open ]; then
    pass "guardian opened the application's database (owner demoapp, mode 0640, directory 0750)"
else
    ct guardian status >>"$LOG" 2>&1
    fail "database opened" "state '$db_state' in guardian status"
fi
for _ in $(seq 60); do [ -n "$(ct find /var/backups/demo-app -type f -name '*.ltx' 2>/dev/null | head -n 1)" ] && break; sleep 0.5; done
ltx_files=$(ct find /var/backups/demo-app -type f -name '*.ltx' | wc -l)
if [ "$ltx_files" -gt 0 ]; then
    pass "replicating to file:///var/backups/demo-app ($ltx_files LTX files)"
else
    fail "replication to the file replica" "no LTX file under /var/backups/demo-app after 30 s"
fi
rows_before=$(ct sqlite3 /var/lib/demo-app/app.db 'SELECT count(*) FROM t')
MP=$(prop guardian MainPID)
if ct nsenter -t "$MP" -m sh -c 'touch /var/lib/demo-app/.probe && rm /var/lib/demo-app/.probe' 2>>"$LOG" \
    && ! ct nsenter -t "$MP" -m touch /etc/.guardian-probe 2>>"$LOG" \
    && ! ct nsenter -t "$MP" -m touch /usr/.guardian-probe 2>>"$LOG"; then
    pass "sandbox: database directory writable, /etc and /usr read-only (ProtectSystem=strict)"
else
    fail "sandbox" "see $LOG"
fi
# /root holds .bashrc and .profile in the container; guardian must see it
# empty, and of /home only the configured log directory.
if ct systemctl cat guardian 2>/dev/null | grep -qx 'BindPaths=-/home/demo/logs' \
    && ct systemctl cat guardian 2>/dev/null | grep -qx 'ProtectHome=tmpfs' \
    && [ -n "$(ct ls -A /root)" ] && [ -z "$(ct nsenter -t "$MP" -m ls -A /root 2>/dev/null)" ] \
    && ! ct nsenter -t "$MP" -m test -e /home/other/private.txt \
    && ct nsenter -t "$MP" -m sh -c 'touch /home/demo/logs/.probe && rm /home/demo/logs/.probe' 2>>"$LOG"; then
    pass "sandbox: /root and other home directories hidden, the configured log directory under /home bound in writable"
else
    fail "sandbox ProtectHome/BindPaths" "see $LOG"
fi
if ct runuser -u guardian -- systemctl restart demo-app.service >>"$LOG" 2>&1 \
    && ! ct runuser -u guardian -- systemctl restart systemd-journald.service >>"$LOG" 2>&1; then
    pass "polkit: user guardian may restart demo-app.service, not other units"
else
    fail "polkit rule" "see $LOG"
fi

# ---------------------------------------------------------------- 6. SIGKILL
MP=$(prop guardian MainPID)
NR=$(prop guardian NRestarts)
ct kill -KILL "$MP"
if wait_active guardian "$MP" 20 && [ "$(prop guardian NRestarts)" = $((NR + 1)) ]; then
    pass "SIGKILL -> restarted by systemd (Restart=on-failure; MainPID $MP -> $(prop guardian MainPID))"
else
    fail "SIGKILL restart" "MainPID $(prop guardian MainPID), NRestarts $(prop guardian NRestarts) (was $NR)"
fi

# ---------------------------------------------------------------- 7. watchdog
ct sh -c 'mkdir -p /etc/systemd/system/guardian.service.d && printf "[Service]\nWatchdogSec=3s\nTimeoutAbortSec=10s\n" > /etc/systemd/system/guardian.service.d/90-test-watchdog.conf && systemctl daemon-reload'
C=$(cursor)
ct systemctl restart guardian
wait_active guardian "" 30
if wait_event "$ID_WATCHDOG" "$C" 10 && journal_json "$C" | python3 -c '
import json, sys
sys.exit(0 if any(json.loads(l).get("GUARDIAN_INTERVAL_MS") == "3000" for l in sys.stdin if l.strip()) else 1)'; then
    pass "watchdog enabled in guardian (WATCHDOG_USEC from WatchdogSec=3s)"
else
    fail "watchdogEnabled event" "no event with GUARDIAN_INTERVAL_MS=3000"
fi
MP=$(prop guardian MainPID)
sleep 7
if [ "$(prop guardian MainPID)" = "$MP" ] && [ "$(prop guardian ActiveState)" = active ]; then
    pass "healthy guardian keeps the watchdog fed (7 s > 2 x WatchdogSec, same MainPID)"
else
    fail "watchdog pings" "guardian was restarted while healthy"
fi
NR=$(prop guardian NRestarts)
C=$(cursor)
ct kill -STOP "$MP"
if wait_active guardian "$MP" 30 && ct journalctl -u guardian --no-pager --after-cursor="$C" | grep -q "Watchdog timeout"; then
    pass "SIGSTOP (hung main loop) -> watchdog timeout -> killed and restarted (MainPID $MP -> $(prop guardian MainPID))"
else
    ct journalctl -u guardian --no-pager --after-cursor="$C" >>"$LOG" 2>&1
    fail "watchdog restart" "MainPID $(prop guardian MainPID), NRestarts $(prop guardian NRestarts) (was $NR)"
fi
ct sh -c 'rm /etc/systemd/system/guardian.service.d/90-test-watchdog.conf && systemctl daemon-reload && systemctl restart guardian'
wait_active guardian "" 30

# ---------------------------------------------------------------- 8. reload
C=$(cursor)
MP=$(prop guardian MainPID)
if ct systemctl reload guardian && wait_event "$ID_RELOADED" "$C" 15 && [ "$(prop guardian MainPID)" = "$MP" ]; then
    pass "systemctl reload (SIGHUP): configuration reloaded in place, READY again"
else
    fail "reload" "no configReloaded event or MainPID changed"
fi

# The application must not be disturbed by guardian: files guardian creates
# beside the database (-wal, -shm) must stay writable for the app's user.
rows_after=$(ct sqlite3 /var/lib/demo-app/app.db 'SELECT count(*) FROM t')
if [ "$(prop demo-app ActiveState)" = active ] && [ "$rows_after" -gt "$rows_before" ] 2>/dev/null; then
    pass "the application kept writing while guardian ran, restarted and reloaded ($rows_before -> $rows_after rows)"
else
    ct journalctl -u demo-app --no-pager -n 20 >>"$LOG" 2>&1
    ct ls -l /var/lib/demo-app >>"$LOG" 2>&1
    fail "application undisturbed" "demo-app $(prop demo-app ActiveState), rows $rows_before -> $rows_after"
fi

# A broken configuration: the generator writes no drop-in (and says why), a
# reload is refused and the running configuration stays in force.
ct cp /etc/guardian/guardian.yml /root/guardian.yml.good
ct sh -c 'echo "bogus-key: 1" >> /etc/guardian/guardian.yml'
C=$(cursor)
MP=$(prop guardian MainPID)
ct systemctl daemon-reload
if ! ct test -e /run/systemd/generator/guardian.service.d/50-guardian-paths.conf; then
    pass "generator: no drop-in for a configuration that does not load"
else
    fail "generator with a broken configuration" "a drop-in was written"
fi
ID_REFUSED=$(event_id configReloadRefused)
ct systemctl reload guardian >>"$LOG" 2>&1
if wait_event "$ID_REFUSED" "$C" 15 && [ "$(prop guardian MainPID)" = "$MP" ] && [ "$(prop guardian ActiveState)" = active ] \
    && journal_json "$C" | grep -q 'bogus-key'; then
    pass "reload with a broken configuration refused, naming the key; the running configuration stays"
else
    fail "reload refused" "no configReloadRefused naming bogus-key, or guardian stopped"
fi
ct cp /root/guardian.yml.good /etc/guardian/guardian.yml
ct systemctl daemon-reload
ct systemctl restart guardian
wait_active guardian "" 30

# ---------------------------------------------------------------- 9. corruption -> restore -> app restarted
if ! grep -qE 'Remediat' Sources/guardian/Daemon.swift Sources/guardian/Services.swift 2>/dev/null; then
    skip "corrupted database restored, app restarted through systemd" "guardian run does not start the remediation service in this tree yet"
else
    if [ "$ltx_files" = 0 ]; then
        fail "corrupted database restored" "nothing to restore from: replication did not work"
    else
        # The application runs while its database is damaged.
        ct systemctl restart demo-app.service
        sleep 3
        app_was=$(prop demo-app ActiveState)
        before=$(ct sqlite3 /var/lib/demo-app/app.db 'SELECT count(*) FROM t')
        app_invocation=$(prop demo-app InvocationID)
        app_cursor=$(ct journalctl -n 1 -o export --no-pager | sed -n 's/^__CURSOR=//p')
        C=$(cursor)
        # Damage b-tree pages of the initial rows (pages the writer never touches again).
        ct dd if=/dev/urandom of=/var/lib/demo-app/app.db bs=4096 seek=4 count=8 conv=notrunc status=none
        if wait_event "$ID_INCIDENT_OPENED" "$C" 60; then pass "corruption detected: incident opened"; else fail "corruption detected" "no incidentOpened within 60 s"; fi
        if wait_event "$ID_INCIDENT_RESOLVED" "$C" 120; then pass "incident resolved"; else fail "incident resolved" "no incidentResolved within 120 s"; fi
        integrity=$(ct sqlite3 /var/lib/demo-app/app.db 'PRAGMA integrity_check' 2>&1 | head -n 1)
        after=$(ct sqlite3 /var/lib/demo-app/app.db 'SELECT count(*) FROM t' 2>&1)
        if [ "$integrity" = ok ] && [ "$after" -ge "$before" ] 2>/dev/null; then
            pass "database restored: integrity_check ok, $after rows (>= $before before the damage)"
        else
            fail "restored database" "integrity '$integrity', rows '$after' (before: $before)"
        fi
        # systemd itself stopped (if it was running) and started the unit:
        # its own journal lines, and a new invocation.
        ct journalctl -u demo-app --no-pager --after-cursor="$app_cursor" >"$T/demo-app-journal.txt" 2>&1
        stopped_ok=1
        if [ "$app_was" = active ] && ! grep -q "Stopped demo-app.service" "$T/demo-app-journal.txt"; then stopped_ok=0; fi
        if [ "$(prop demo-app InvocationID)" != "$app_invocation" ] && wait_active demo-app "" 20 && [ "$stopped_ok" = 1 ] \
            && grep -q "Started demo-app.service" "$T/demo-app-journal.txt"; then
            if [ "$app_was" = active ]; then what="stopped and started again"; else what="started again (it was $app_was)"; fi
            pass "demo-app.service $what by systemd on guardian's request (new invocation)"
        else
            cat "$T/demo-app-journal.txt" >>"$LOG"
            fail "app restart through systemd" "InvocationID $(prop demo-app InvocationID) (was $app_invocation), $(prop demo-app ActiveState), was $app_was"
        fi
    fi
fi

ct journalctl -u guardian --no-pager >"$T/guardian-journal.txt" 2>&1
ct journalctl -u guardian -o json --no-pager >"$T/guardian-journal.json" 2>&1
info "guardian's journal in the container: $T/guardian-journal.txt (.json: every field)"

# ---------------------------------------------------------------- 10. remove, purge
ct sh -c 'echo "AWS_ACCESS_KEY_ID=x" > /etc/default/guardian; echo key > /etc/guardian/backup-key;
          mkdir -p /etc/systemd/system/guardian.service.d; printf "[Service]\nNice=5\n" > /etc/systemd/system/guardian.service.d/override.conf'
if ct dpkg -r guardian >>"$LOG" 2>&1 && [ "$(ct dpkg-query -W -f='${Status}' guardian)" = "deinstall ok config-files" ] \
    && ! ct test -e /usr/bin/guardian && ct test -f /etc/guardian/guardian.yml && [ "$(prop guardian ActiveState)" != active ]; then
    pass "dpkg -r: stopped, program removed, configuration kept"
else
    fail "dpkg -r" "see $LOG"
fi
gone=(/etc/guardian/guardian.yml /etc/polkit-1/rules.d/50-guardian.rules /lib/systemd/system/guardian.service
    /lib/systemd/system-generators/guardian-generator /usr/lib/systemd/catalog/guardian.catalog /usr/lib/sysusers.d/guardian.conf
    /usr/share/doc/guardian /usr/share/man/man1/guardian.1.gz /var/lib/guardian /run/guardian
    /etc/systemd/system/multi-user.target.wants/guardian.service /run/systemd/generator/guardian.service.d)
kept=(/etc/default/guardian /etc/guardian/backup-key /etc/systemd/system/guardian.service.d/override.conf
    /var/lib/demo-app/app.db /var/backups/demo-app)
if ct dpkg -P guardian >>"$LOG" 2>&1; then
    ct systemctl daemon-reload
    left=() lost=()
    for f in "${gone[@]}"; do ct test -e "$f" && left+=("$f"); done
    for f in "${kept[@]}"; do ct test -e "$f" || lost+=("$f"); done
    ct dpkg-query -W -f='${Status}' guardian 2>/dev/null | grep -q 'installed' && left+=("dpkg status $(ct dpkg-query -W -f='${Status}' guardian)")
    ct journalctl --list-catalog 2>/dev/null | grep -q "$ID_READY" && left+=("catalog entry $ID_READY")
    if [ ${#left[@]} = 0 ] && [ ${#lost[@]} = 0 ]; then
        pass "dpkg -P: package files, configuration, state, catalog removed; files the user created kept"
    else
        fail "dpkg -P" "left: ${left[*]:-none}; lost: ${lost[*]:-none}"
    fi
    ct getent passwd guardian >/dev/null && info "the guardian system user is kept after purge (by design, see README.Debian)"
else
    fail "dpkg -P" "see $LOG"
fi

ct systemctl poweroff >/dev/null 2>&1
for _ in $(seq 150); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.1; done
kill -0 "$NSPAWN" 2>/dev/null && fail "container shutdown" "still running after 15 s" || pass "container powered off"
NSPAWN=""
finish
