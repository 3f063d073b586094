#!/usr/bin/env python3
"""Runaway-log benchmark (issue 17): the seed's incident on a real 64 MB tmpfs.

The app commits a 1 kB row every 10 ms to a WAL database (busy_timeout 5 s);
a runaway logger appends ordinary error lines to logs/app.log (O_APPEND) at
RATE MB/s for SECONDS; the filesystem is sampled every 2 ms. With guardian:
`guardian run` with the issue's configuration (interval 1s, warn 70%, critical
80%, emergency 90%, ballast 8MiB, logs/*.log rotate 2 size 4MB compress
copytruncate). Without: the same, guardian not running (the baseline).

Prints per rate: failed commits, peak use, bytes of log the logger could not
write (ENOSPC), bytes dropped by guardian's emergency truncate, and
guardian's CPU (user/sys, from /proc/PID/stat just before it is stopped).
Needs root (mount). Usage: bench.py GUARDIAN_BINARY [--seconds 15] [--rates 1,10,50]
"""
import argparse, os, re, sqlite3, subprocess, sys, tempfile, threading, time


def run_case(guardian, rate_mb, seconds, with_guardian, prefill_mb=0):
    root = tempfile.mkdtemp(prefix="guardian-runaway-")
    mnt = os.path.join(root, "mnt")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt], check=True)
    child = None
    try:
        os.mkdir(mnt + "/data")
        os.mkdir(mnt + "/logs")
        db = mnt + "/data/app.db"
        log = mnt + "/logs/app.log"
        c = sqlite3.connect(db)
        c.execute("PRAGMA journal_mode=wal")
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT)")
        c.commit()
        c.close()
        open(log, "w").close()
        if prefill_mb:
            # Other data guardian may not delete (a slow runaway then fills the disk too).
            with open(mnt + "/data/other.bin", "wb") as f:
                f.write(os.urandom(int(prefill_mb * 1024 * 1024)))
        state = os.path.join(root, "state")
        cfg = os.path.join(root, "guardian.yml")
        with open(cfg, "w") as f:
            f.write(f"""state-dir: {state}
status:
  socket: {root}/guardian.sock
dbs:
  - path: {db}
disk:
  interval: 1s
  warn: 70%
  critical: 80%
  emergency: 90%
  ballast:
    path: {mnt}/ballast
    size: 8MiB
  logs:
    - paths: [{mnt}/logs/*.log]
      rotate: 2
      size: 4MB
      compress: true
      copytruncate: true
""")
        err = open(os.path.join(root, "guardian.err"), "w+")
        if with_guardian:
            child = subprocess.Popen([guardian, "run", "--config", cfg, "--log-target", "stderr"], stderr=err, stdout=subprocess.DEVNULL)
            deadline = time.time() + 20
            while time.time() < deadline:
                st = os.statvfs(mnt)
                if os.path.exists(mnt + "/ballast") and os.stat(mnt + "/ballast").st_blocks * 512 >= 8 << 20:
                    break
                time.sleep(0.1)
        stop = threading.Event()
        fig = {"commits": 0, "failed": 0, "peak": 0.0, "enospc": 0, "written": 0}

        def app():
            conn = sqlite3.connect(db, timeout=5, isolation_level=None)
            payload = "x" * 1000
            while not stop.is_set():
                try:
                    conn.execute("INSERT INTO t(payload) VALUES (?)", (payload,))
                    fig["commits"] += 1
                except sqlite3.Error:
                    fig["failed"] += 1
                time.sleep(0.01)

        def sampler():
            while not stop.is_set():
                s = os.statvfs(mnt)
                used = (s.f_blocks - s.f_bfree) * s.f_frsize
                avail = s.f_bavail * s.f_frsize
                fig["peak"] = max(fig["peak"], used * 100.0 / max(used + avail, 1))
                time.sleep(0.002)

        threads = [threading.Thread(target=app), threading.Thread(target=sampler)]
        for t in threads:
            t.start()
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        rate = rate_mb * 1_000_000
        start = time.monotonic()
        sent = 0
        line = b"2026-12-04T05:00:00.000Z ERROR upstream connection refused (retrying) pool=main attempt=3\n"
        block = line * (65536 // len(line))
        while time.monotonic() - start < seconds:
            due = (time.monotonic() - start) * rate
            while sent < due:
                try:
                    n = os.write(fd, block)
                    fig["written"] += n
                    if n < len(block):
                        fig["enospc"] += len(block) - n
                except OSError:
                    fig["enospc"] += len(block)
                sent += len(block)
            time.sleep(0.005)
        os.close(fd)
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join()
        cpu = None
        dropped = 0
        if child:
            with open(f"/proc/{child.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tick = os.sysconf("SC_CLK_TCK")
            cpu = (int(fields[11]) / tick, int(fields[12]) / tick)
            child.terminate()
            child.wait(timeout=30)
            err.seek(0)
            text = err.read()
            dropped = sum(int(m) for m in re.findall(r"log truncated to its tail.*?bytes_dropped=(\d+)", text))
        ok = subprocess.run(["sqlite3", db, "PRAGMA integrity_check;"], capture_output=True, text=True).stdout.strip()
        return fig, cpu, dropped, ok
    finally:
        if child and child.poll() is None:
            child.kill()
        subprocess.run(["umount", "-l", mnt])
        subprocess.run(["rm", "-rf", root])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("guardian")
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--rates", default="1,10,50")
    p.add_argument("--prefill-mb", type=float, default=0, help="MiB of other data on the filesystem first")
    a = p.parse_args()
    print(f"runaway for {a.seconds:.0f} s on a 64 MB tmpfs ({a.prefill_mb:.0f} MiB of other data); app: 1 kB commit every 10 ms")
    print(f"{'rate':>7} {'guardian':>8} {'commits':>8} {'failed':>7} {'peak use':>9} {'log ENOSPC':>11} {'log dropped':>12} {'guardian CPU user/sys':>22} integrity")
    for rate in [float(r) for r in a.rates.split(",")]:
        for with_g in (False, True):
            fig, cpu, dropped, ok = run_case(a.guardian, rate, a.seconds, with_g, a.prefill_mb)
            cpu_s = f"{cpu[0]:.2f} s / {cpu[1]:.2f} s" if cpu else "-"
            print(f"{rate:>4.0f} MB/s {'yes' if with_g else 'no':>8} {fig['commits']:>8} {fig['failed']:>7} {fig['peak']:>8.1f}% "
                  f"{fig['enospc'] / 1e6:>9.1f} MB {dropped / 1e6:>9.1f} MB {cpu_s:>22} {ok}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
