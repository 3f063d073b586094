#!/usr/bin/env python3
"""Replication benchmark: guardian side by side with cp, sqlite3 .backup and Litestream.

Runs every tool on this machine against the same workloads and prints one table
(baselines next to guardian, "n/a" where a metric does not apply) plus a JSON
file with the raw figures. Python 3 standard library only; Litestream 0.5.17 and
moto's S3 server come from the project's virtualenv (.tools/venv, made by
scripts/install-deps.sh).

    benchmarks/replication/bench.py [--quick] [--guardian PATH] [--skip-1gb] [--s3]

The application is Python's sqlite3 module: one connection, WAL mode,
PRAGMA synchronous=NORMAL, autocommit, one INSERT of one row per transaction.
"""

import argparse
import array
import ctypes
import json
import os
import platform
import random
import re
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
VENV = os.path.join(REPO, ".tools", "venv")
LTX_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# The application (run as a child process: `bench.py _app ...`)
# --------------------------------------------------------------------------------------

class WalTracker:
    """After each commit: the WAL salts and the end offset of the last committed frame.

    Reads the WAL header (salts at bytes 16..23) and walks frame headers from the
    last known position while their salts match the header's; a salt change means
    SQLite restarted the WAL, so the walk starts again at offset 32.
    """

    def __init__(self, wal_path):
        self.path = wal_path
        self.fd = None
        self.salts = None
        self.pos = 32
        self.end = 0

    def after_commit(self):
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return 0, 0, 0
        hdr = os.pread(self.fd, 32, 0)
        if len(hdr) < 32:
            return 0, 0, 0
        page_size = struct.unpack(">I", hdr[8:12])[0]
        salts = hdr[16:24]
        if salts != self.salts:
            self.salts = salts
            self.pos = 32
            self.end = 0
        frame = 24 + page_size
        while True:
            fh = os.pread(self.fd, 24, self.pos)
            if len(fh) < 24 or fh[8:16] != salts:
                break
            self.pos += frame
            if struct.unpack(">I", fh[4:8])[0] != 0:
                self.end = self.pos
        s1, s2 = struct.unpack(">II", salts)
        return s1, s2, self.end


def app_main(argv):
    p = argparse.ArgumentParser(prog="bench.py _app")
    p.add_argument("--db", required=True)
    p.add_argument("--mode", choices=["burst", "steady"], required=True)
    p.add_argument("--count", type=int, default=0, help="0 = until killed (steady)")
    p.add_argument("--interval-ms", type=float, default=10.0)
    p.add_argument("--track-wal", action="store_true")
    a = p.parse_args(argv)

    conn = sqlite3.connect(a.db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    start_id = (conn.execute("SELECT coalesce(max(id), 0) FROM t").fetchone()[0]) + 1
    pool = [os.urandom(32).hex() for _ in range(1024)]
    sql = "INSERT INTO t(id, v, ts) VALUES (?, ?, ?)"
    perf = time.perf_counter_ns
    wall = time.time_ns

    if a.mode == "burst":
        lat = array.array("q")
        t_begin = perf()
        for i in range(start_id, start_id + a.count):
            t0 = perf()
            conn.execute(sql, (i, pool[i & 1023], i))
            lat.append(perf() - t0)
        elapsed = (perf() - t_begin) / 1e9
        srt = sorted(lat)
        n = len(srt)
        summary = {
            "count": n, "elapsed_s": elapsed, "tps": n / elapsed,
            "p50_ms": srt[n // 2] / 1e6, "p99_ms": srt[int(n * 0.99)] / 1e6,
            "p999_ms": srt[min(n - 1, int(n * 0.999))] / 1e6, "max_ms": srt[-1] / 1e6,
            "top10_ms": [x / 1e6 for x in srt[-10:]],
            "over_25ms": sum(1 for x in srt if x > 25_000_000),
            "over_100ms": sum(1 for x in srt if x > 100_000_000),
        }
        print(json.dumps(summary), flush=True)
        return 0

    tracker = WalTracker(a.db + "-wal") if a.track_wal else None
    interval = int(a.interval_ms * 1e6)
    out = sys.stdout
    i = start_id
    n = 0
    t_next = perf()
    while a.count == 0 or n < a.count:
        now = perf()
        if t_next > now:
            time.sleep((t_next - now) / 1e9)
        t_next += interval
        before = wall()
        p0 = perf()
        conn.execute(sql, (i, pool[i & 1023], before))
        p1 = perf()
        after = wall()
        s1 = s2 = end = 0
        if tracker is not None:
            s1, s2, end = tracker.after_commit()
        out.write(f"{i} {before} {after} {s1} {s2} {end} {p1 - p0}\n")
        out.flush()
        i += 1
        n += 1
    return 0


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------

def pct(values, q):
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values):
    return statistics.median(values) if values else None


def rfc3339(ns):
    dt = datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_ltx_header(b):
    """(minTXID, maxTXID, commit, walOffset, walSize, salt1, salt2) or None."""
    if len(b) < 100 or b[:4] != b"LTX1":
        return None
    commit = struct.unpack(">I", b[12:16])[0]
    mn, mx = struct.unpack(">QQ", b[16:32])
    wal_off, wal_size = struct.unpack(">qq", b[48:64])
    s1, s2 = struct.unpack(">II", b[64:72])
    return mn, mx, commit, wal_off, wal_size, s1, s2


def tree_size(root):
    """(logical bytes, allocated bytes, number of .ltx files) under root."""
    logical = alloc = files = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except FileNotFoundError:
                continue
            logical += st.st_size
            alloc += st.st_blocks * 512
            if n.endswith(".ltx"):
                files += 1
    return logical, alloc, files


def has_ltx(root):
    for _, _, names in os.walk(root):
        if any(LTX_NAME.match(n) for n in names):
            return True
    return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_split(pid):
    """(user seconds, system seconds) of a process, all its threads: utime and stime
    from /proc/PID/stat; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def proc_cpu_s(pid):
    c = proc_cpu_split(pid)
    return None if c is None else c[0] + c[1]


def proc_mem_kb(pid):
    """VmRSS, VmHWM, RssAnon (private memory: heap, stacks, anonymous maps) and Threads
    from /proc/PID/status. VmRSS also counts the shared library pages mapped in."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "Threads:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except FileNotFoundError:
        pass
    return out


def make_db(path):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, ts INTEGER NOT NULL)")
    c.close()


def db_ids(path, table="t"):
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in c.execute(f"SELECT id FROM {table} ORDER BY id")]
    finally:
        c.close()


def db_logical_size(path):
    """page_count * page_size after a TRUNCATE checkpoint (no replicator running)."""
    c = sqlite3.connect(path, isolation_level=None)
    try:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pc = c.execute("PRAGMA page_count").fetchone()[0]
        ps = c.execute("PRAGMA page_size").fetchone()[0]
        return pc * ps
    finally:
        c.close()


def rm_db(path):
    for suffix in ("", "-wal", "-shm", "-journal", ".tmp"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


class ProcSampler(threading.Thread):
    """Samples VmRSS and RssAnon of one process every 100 ms (kept as a series of
    (time.time(), RssAnon kB, VmRSS kB)); CPU seconds on demand."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.max_rss_kb = 0
        self.last_rss_kb = 0
        self.series = []

    def sample(self):
        m = proc_mem_kb(self.pid)
        if "VmRSS" not in m:
            return None
        with self.lock:
            self.last_rss_kb = m["VmRSS"]
            self.max_rss_kb = max(self.max_rss_kb, m["VmRSS"])
            self.series.append((time.time(), m.get("RssAnon", 0), m["VmRSS"]))
        return m

    def run(self):
        while not self.stop_ev.wait(0.1):
            if self.sample() is None:
                return

    def anon_kb(self, t0, t1):
        """RssAnon samples (kB) taken between wall-clock times t0 and t1."""
        with self.lock:
            return [a for t, a, _ in self.series if t0 <= t <= t1]

    def anon_at(self, t):
        """The RssAnon sample (kB) nearest to wall-clock time t."""
        with self.lock:
            if not self.series:
                return None
            return min(self.series, key=lambda x: abs(x[0] - t))[1]

    def reset_max(self):
        with self.lock:
            kb = proc_mem_kb(self.pid).get("VmRSS", 0)
            self.max_rss_kb = kb
            self.last_rss_kb = kb

    def window(self):
        """Returns a function that, when called, gives (cpu seconds, wall seconds, max RSS kB)."""
        self.reset_max()
        c0 = proc_cpu_s(self.pid)
        t0 = time.perf_counter()

        def done():
            c1 = proc_cpu_s(self.pid)
            with self.lock:
                m = max(self.max_rss_kb, proc_mem_kb(self.pid).get("VmRSS", 0))
            return (None if c0 is None or c1 is None else c1 - c0), time.perf_counter() - t0, m
        return done

    def cpu_window(self):
        """Returns a function giving (user % of a core, system % of a core, wall seconds)."""
        c0 = proc_cpu_split(self.pid)
        t0 = time.perf_counter()

        def done():
            c1 = proc_cpu_split(self.pid)
            wall = time.perf_counter() - t0
            if c0 is None or c1 is None:
                return None, None, wall
            return 100 * (c1[0] - c0[0]) / wall, 100 * (c1[1] - c0[1]) / wall, wall
        return done

    def stop(self):
        self.stop_ev.set()


class FileSizeSampler(threading.Thread):
    """Peak size of one file (the -wal), sampled every 2 ms."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.peak = 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.peak = max(self.peak, os.stat(self.path).st_size)
            except FileNotFoundError:
                pass
            time.sleep(0.002)

    def finish(self):
        self.stop_ev.set()
        self.join()
        try:
            self.peak = max(self.peak, os.stat(self.path).st_size)
        except FileNotFoundError:
            pass
        return self.peak


# inotify, through libc (no third-party module)
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080


class L0Watcher(threading.Thread):
    """Records when each new L0 `.ltx` file appears in a file replica, with its header.

    Uses inotify (IN_MOVED_TO | IN_CLOSE_WRITE) on the directory; falls back to
    listing it every millisecond if inotify is not available.
    """

    def __init__(self, l0dir):
        super().__init__(daemon=True)
        self.dir = l0dir
        self.seen = set()
        self.files = []  # (appear ns, name, header tuple)
        self.stop_ev = threading.Event()
        self.mode = "inotify"
        for n in os.listdir(l0dir):
            if LTX_NAME.match(n):
                self.seen.add(n)

    def _take(self, name, t):
        if name in self.seen or not LTX_NAME.match(name):
            return True
        try:
            with open(os.path.join(self.dir, name), "rb") as f:
                hdr = parse_ltx_header(f.read(100))
        except FileNotFoundError:
            return True  # gone already (compacted); nothing to record
        if hdr is None:
            return False  # not complete yet; look again
        self.seen.add(name)
        self.files.append((t, name, hdr))
        return True

    def run(self):
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        wd = -1
        if fd >= 0:
            wd = libc.inotify_add_watch(fd, self.dir.encode(), IN_CLOSE_WRITE | IN_MOVED_TO)
        if fd < 0 or wd < 0:
            self.mode = "poll-1ms"
            self._poll()
            return
        pending = set()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        # files that appeared between the initial listing and add_watch
        for n in os.listdir(self.dir):
            if not self._take(n, time.time_ns()):
                pending.add(n)
        try:
            while not self.stop_ev.is_set():
                poller.poll(20)
                t = time.time_ns()
                try:
                    buf = os.read(fd, 65536)
                except BlockingIOError:
                    buf = b""
                pos = 0
                while pos + 16 <= len(buf):
                    _, _, _, ln = struct.unpack_from("iIII", buf, pos)
                    name = buf[pos + 16:pos + 16 + ln].split(b"\0", 1)[0].decode()
                    pos += 16 + ln
                    if not self._take(name, t):
                        pending.add(name)
                for n in list(pending):
                    if self._take(n, t):
                        pending.discard(n)
        finally:
            os.close(fd)

    def _poll(self):
        while not self.stop_ev.is_set():
            t = time.time_ns()
            for n in os.listdir(self.dir):
                if n not in self.seen:
                    self._take(n, t)
            time.sleep(0.001)

    def finish(self):
        self.stop_ev.set()
        self.join()
        return [(t, h) for t, _, h in self.files]


class FirstImageWatcher(threading.Thread):
    """When the first LTX file appears under its final name anywhere in a file replica.

    Both tools write an LTX file to a temporary name, fsync it and rename it into
    place, so a file under its final name (`<min>-<max>.ltx`) is durable. On an idle
    database the first such file is the full image (Litestream: its TXID 1 file at L0
    and a snapshot at L9; guardian: a full image at L0); its header's page count and
    its size are kept so the report can show it covers the database. The replica
    tree is listed every 5 ms."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root = root
        self.t_found = None  # time.perf_counter() when first seen
        self.found = None
        self.stop_ev = threading.Event()

    def run(self):
        ltx = os.path.join(self.root, "ltx")
        while not self.stop_ev.is_set():
            t = time.perf_counter()
            try:
                levels = list(os.scandir(ltx))
            except FileNotFoundError:
                levels = []
            for lv in levels:
                try:
                    names = os.listdir(lv.path)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                for n in names:
                    if LTX_NAME.match(n):
                        path = os.path.join(lv.path, n)
                        try:
                            with open(path, "rb") as f:
                                hdr = parse_ltx_header(f.read(100))
                            size = os.path.getsize(path)
                        except FileNotFoundError:
                            continue
                        self.t_found = t
                        self.found = {"file": f"ltx/{lv.name}/{n}", "bytes": size,
                                      "pages": hdr[2] if hdr else None}
                        return
            time.sleep(0.005)

    def finish(self):
        self.stop_ev.set()
        self.join()
        return self.t_found, self.found


def staleness_ms(commits, files):
    """commits: (after_ns, salt1, salt2, end); files: (appear_ns, header tuple).

    A commit's staleness is the appear time of the first L0 file with the same WAL
    salts whose walOffset+walSize reaches that commit's end offset, minus the time
    the commit returned to the app. Returns (list of ms, number unmatched).
    """
    groups = {}
    for t, h in files:
        _, _, _, off, size, s1, s2 = h
        if off == 0:
            continue
        groups.setdefault((s1, s2), []).append((off + size, t))
    prepared = {}
    for k, lst in groups.items():
        lst.sort(key=lambda x: -x[0])  # by end, descending
        ends, best = [], []
        m = None
        for end, t in lst:
            m = t if m is None else min(m, t)
            ends.append(end)
            best.append(m)
        prepared[k] = (ends, best)
    out, unmatched = [], 0
    for after, s1, s2, end in commits:
        p = prepared.get((s1, s2))
        if p is None or end == 0:
            unmatched += 1
            continue
        ends, best = p
        # ends is descending; find the last index with ends[i] >= end
        lo, hi = 0, len(ends)
        while lo < hi:
            mid = (lo + hi) // 2
            if ends[mid] >= end:
                lo = mid + 1
            else:
                hi = mid
        if lo == 0:
            unmatched += 1
            continue
        out.append((best[lo - 1] - after) / 1e6)
    return out, unmatched


# --------------------------------------------------------------------------------------
# Processes: children are tracked so that an interrupted run leaves nothing behind
# --------------------------------------------------------------------------------------

CHILDREN = []


def spawn(argv, **kw):
    p = subprocess.Popen(argv, **kw)
    CHILDREN.append(p)
    return p


def kill_children():
    for p in CHILDREN:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=10)
            except Exception:
                pass


def clean_env(extra=None):
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)  # Litestream refuses to start with it
    if extra:
        env.update(extra)
    return env


S3_ENV = {"AWS_ACCESS_KEY_ID": "benchkey", "AWS_SECRET_ACCESS_KEY": "benchsecret",
          "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}


# --------------------------------------------------------------------------------------
# Replicas: a local directory, or a prefix in moto's S3 server
# --------------------------------------------------------------------------------------

class FileReplica:
    kind = "file"

    def __init__(self, root):
        self.root = root

    @property
    def url(self):
        return "file://" + self.root

    def ready(self):
        return has_ltx(self.root)

    def quiet_marker(self):
        return tree_size(self.root)

    def dir_marker(self):
        """Cheap change marker: mtimes of the replica's level directories (renames into them)."""
        out = []
        ltx = os.path.join(self.root, "ltx")
        try:
            for e in os.scandir(ltx):
                out.append((e.name, e.stat().st_mtime_ns))
        except FileNotFoundError:
            pass
        return tuple(sorted(out))


class Moto:
    def __init__(self, workdir):
        self.port = free_port()
        self.log_path = os.path.join(workdir, "moto-requests.jsonl")
        self.out = open(os.path.join(workdir, "moto.out"), "w")
        py = os.path.join(VENV, "bin", "python")
        self.proc = spawn([py, os.path.join(HERE, "moto_logged.py"), "-p", str(self.port),
                           "--log", self.log_path], stdout=self.out, stderr=subprocess.STDOUT)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).read()
                break
            except Exception:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("moto_server did not start (see moto.out)")
                time.sleep(0.1)
        self.bucket = "bench"
        self.reset()

    def reset(self):
        req = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=30).read()
        req = urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="PUT")
        urllib.request.urlopen(req, timeout=30).read()

    def offset(self):
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def records(self, since=0):
        out = []
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                for line in f:
                    if line.endswith(b"\n"):
                        out.append(json.loads(line))
        except FileNotFoundError:
            pass
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class S3Replica:
    kind = "s3"

    def __init__(self, moto, prefix):
        self.moto = moto
        self.prefix = prefix
        self.since = moto.offset()

    @property
    def url(self):
        return (f"s3://{self.moto.bucket}/{self.prefix}?endpoint={self.moto.endpoint}"
                f"&region=us-east-1&forcePathStyle=true")

    def _mine(self, r):
        return r["p"].startswith(f"/{self.moto.bucket}/{self.prefix}/") or \
            ("prefix=" + self.prefix) in r.get("q", "")

    def ready(self):
        for r in self.moto.records(self.since):
            if r["m"] == "PUT" and r.get("s") == 200 and r["p"].endswith(".ltx") and self._mine(r):
                return True
        return False

    def quiet_marker(self):
        return self.moto.offset()

    def l0_files(self, since):
        """(appear ns, header) of each L0 object PUT (Litestream's S3 layout: <path>/0000/)."""
        out = []
        l0 = f"/{self.moto.bucket}/{self.prefix}/0000/"
        for r in self.moto.records(since):
            if r["m"] == "PUT" and r.get("s") == 200 and r["p"].startswith(l0) and r.get("h"):
                h = parse_ltx_header(bytes.fromhex(r["h"]))
                if h:
                    out.append((r["t1"], h))
        return out


# --------------------------------------------------------------------------------------
# Tools under test
# --------------------------------------------------------------------------------------

class Tool:
    name = ""

    def __init__(self, binary):
        self.binary = binary

    def replicate_argv(self, db, replica, workdir):
        raise NotImplementedError

    def restore_argv(self, replica, out, timestamp=None, integrity=None):
        raise NotImplementedError

    def env(self, replica):
        return clean_env(S3_ENV if replica.kind == "s3" else None)


class Guardian(Tool):
    name = "guardian"

    def replicate_argv(self, db, replica, workdir):
        if replica.kind == "s3":
            # S3 runs from a config file (`guardian replicate --config`), which carries the
            # credentials; restores then name the database of that config.
            cfg = os.path.join(workdir, "guardian.yml")
            m = replica.moto
            with open(cfg, "w") as f:
                f.write(f"state-dir: {os.path.join(workdir, 'guardian-state')}\n"
                        f"dbs:\n  - path: {db}\n    replicas:\n      - type: s3\n"
                        f"        bucket: {m.bucket}\n        path: {replica.prefix}\n"
                        f"        endpoint: {m.endpoint}\n        region: us-east-1\n"
                        f"        access-key-id: {S3_ENV['AWS_ACCESS_KEY_ID']}\n"
                        f"        secret-access-key: {S3_ENV['AWS_SECRET_ACCESS_KEY']}\n")
            replica.guardian_config = (cfg, db)
            return [self.binary, "replicate", "--config", cfg]
        return [self.binary, "replicate", db, replica.url]

    def restore_argv(self, replica, out, timestamp=None, integrity=None):
        argv = [self.binary, "restore", "-o", out]
        if timestamp:
            argv += ["--timestamp", timestamp]
        if integrity:
            argv += ["--integrity-check", integrity]
        if replica.kind == "s3":
            cfg, db = replica.guardian_config
            return argv + ["--config", cfg, db]
        return argv + [replica.url]


class Litestream(Tool):
    name = "litestream"

    def __init__(self, binary, interval=None):
        super().__init__(binary)
        self.interval = interval
        if interval:
            self.name = f"litestream-{interval}"

    def replicate_argv(self, db, replica, workdir):
        if not self.interval:
            return [self.binary, "replicate", db, replica.url]
        cfg = os.path.join(workdir, "litestream.yml")
        with open(cfg, "w") as f:
            f.write(f"dbs:\n  - path: {db}\n    monitor-interval: {self.interval}\n"
                    f"    replica:\n      url: '{replica.url}'\n      sync-interval: {self.interval}\n")
        return [self.binary, "replicate", "-config", cfg]

    def restore_argv(self, replica, out, timestamp=None, integrity=None):
        argv = [self.binary, "restore", "-o", out]
        if timestamp:
            argv += ["-timestamp", timestamp]
        if integrity:
            argv += ["-integrity-check", integrity]
        return argv + [replica.url]


LIVE = []  # replicators of the measurement in progress


class Running:
    """One replicator process."""

    def __init__(self, tool, db, replica, workdir, tag):
        self.tool = tool
        self.replica = replica
        self.log_path = os.path.join(workdir, f"{tool.name}-{tag}.log")
        self.logf = open(self.log_path, "w")
        self.proc = spawn(tool.replicate_argv(db, replica, workdir), stdout=self.logf,
                          stderr=subprocess.STDOUT, env=tool.env(replica), process_group=0)
        self.pid = self.proc.pid
        self.sampler = ProcSampler(self.pid)
        self.sampler.start()
        LIVE.append(self)

    def log_tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while not self.replica.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.tool.name} exited with {self.proc.returncode} before "
                                   f"writing its first LTX file:\n{self.log_tail()}")
            if time.time() > deadline:
                raise RuntimeError(f"{self.tool.name} wrote no LTX file within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.01)

    def wait_quiet(self, quiet=2.0, timeout=600, cheap=False):
        """Waits until the replica has stopped changing for `quiet` seconds.

        Returns the wall-clock time (time.time()) of the last change seen, or None
        if it was still changing at the timeout."""
        deadline = time.time() + timeout
        marker = self.replica.dir_marker if cheap else self.replica.quiet_marker
        last, since = marker(), time.time()
        while time.time() < deadline:
            time.sleep(0.05 if cheap else 0.1)
            m = marker()
            if m != last:
                last, since = m, time.time()
            elif time.time() - since >= quiet:
                return since
            if self.proc.poll() is not None:
                return since
        return None

    def stop(self, timeout=120):
        """SIGTERM (final sync), wait. Returns (exit code, seconds, needed SIGKILL)."""
        t0 = time.perf_counter()
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = True
        self.sampler.stop()
        self.logf.close()
        return self.proc.returncode, time.perf_counter() - t0, killed


def run_restore(tool, replica, out, timestamp=None, integrity=None, timeout=900):
    rm_db(out)
    argv = tool.restore_argv(replica, out, timestamp, integrity)
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=tool.env(replica))
    dt = time.perf_counter() - t0
    err = (r.stderr or r.stdout or "").strip().splitlines()
    return r.returncode, dt, (err[-1] if err else "")


def app_argv(db, mode, count=0, interval_ms=10.0, track_wal=False):
    argv = [sys.executable, os.path.abspath(__file__), "_app", "--db", db, "--mode", mode,
            "--count", str(count), "--interval-ms", str(interval_ms)]
    if track_wal:
        argv.append("--track-wal")
    return argv


class SteadyApp:
    """The app committing one row every interval; its report lines are collected."""

    def __init__(self, db, interval_ms, count=0, track_wal=False, process_group=None):
        kw = {}
        if process_group is not None:
            kw["process_group"] = process_group
        self.proc = spawn(app_argv(db, "steady", count, interval_ms, track_wal),
                          stdout=subprocess.PIPE, text=True, **kw)
        self.records = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) == 7:
                self.records.append(tuple(int(x) for x in parts))

    def wait(self, timeout=None):
        self.proc.wait(timeout=timeout)
        self.reader.join()
        return self.records


# --------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        q = self.quick
        self.cfg = {
            "burst_tx": 10_000 if q else 100_000,
            "reps": args.reps or (1 if q else 3),
            "idle_s": 2.0 if q else 10.0,
            "settle_s": 3.0 if q else 35.0,
            "crash_trials": 3 if q else 5,
            "crash_run_s": (1.0, 2.0) if q else (2.0, 4.0),
            "steady_interval_ms": 10.0,
            "staleness_s": 4.0 if q else 30.0,
            "cpu_s": 5.0 if q else 30.0,
            "pitr_commits": 8 if q else 22,
            "pitr_targets": 5 if q else 10,
            "pitr_interval_ms": 100.0,
            "restore_sizes_mb": [20] if q else ([100] if args.skip_1gb else [100, 1024]),
            "s3_restore_mb": 20 if q else 100,
            "s3_idle_s": 3.0 if q else 16.0,
        }
        self.root = args.workdir or tempfile.mkdtemp(prefix="guardian-bench-")
        os.makedirs(self.root, exist_ok=True)
        self.rng = random.Random(args.seed)
        self.results = {"config": self.cfg, "env": {}, "tools": {}, "baselines": {}}
        self.tools = []
        self.moto = None

    # ---- set-up ------------------------------------------------------------------
    def setup(self):
        a = self.args
        ls_bin = os.path.join(VENV, "bin", "litestream")
        wanted = [t.strip() for t in a.tools.split(",") if t.strip()]
        need_venv = "litestream" in wanted or a.s3
        if need_venv and not (os.access(ls_bin, os.X_OK) and os.access(os.path.join(VENV, "bin", "python"), os.X_OK)):
            log("virtualenv missing: running scripts/install-deps.sh")
            subprocess.run([os.path.join(REPO, "scripts", "install-deps.sh")], check=True)
        if "litestream" in wanted:
            v = subprocess.run([ls_bin, "version"], capture_output=True, text=True).stdout.strip()
            self.results["env"]["litestream"] = v
            intervals = a.litestream_interval or "default,100ms"
            for iv in [x.strip() for x in intervals.split(",") if x.strip()]:
                self.tools.append(Litestream(ls_bin, None if iv == "default" else iv))
        if "guardian" in wanted:
            g = os.path.abspath(a.guardian)
            ok = os.access(g, os.X_OK)
            if ok:
                h = subprocess.run([g, "replicate", "--help"], capture_output=True, text=True)
                ok = h.returncode == 0
            if ok:
                v = subprocess.run([g, "--version"], capture_output=True, text=True)
                self.results["env"]["guardian"] = (v.stdout or v.stderr).strip() + f" ({g})"
                self.tools.append(Guardian(g))
            else:
                log(f"guardian binary {g} missing or without a `replicate` command: guardian not measured")
                self.results["env"]["guardian"] = f"not available at {g}"
        self.results["env"].update({
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "app": "Python sqlite3, one connection, WAL, PRAGMA synchronous=NORMAL, autocommit, "
                   "one INSERT of one row (~100 B) per transaction",
            "mode": "quick" if self.quick else "full", "workdir": self.root,
            "loadavg_at_start": os.getloadavg(),
            # the last commit that changed guardian's sources (benchmark edits do not count)
            "source": subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h", "--", "Sources", "Package.swift"],
                                     capture_output=True, text=True).stdout.strip() or "unknown",
            "litestream_settings": "column `litestream`: CLI defaults (`litestream replicate DB URL`, 1 s "
                                   "monitor and sync intervals); `litestream-X`: a config file with "
                                   "monitor-interval and sync-interval X",
        })
        if a.s3:
            self.moto = Moto(self.root)
            self.results["env"]["s3"] = ("moto 5.2.1 on 127.0.0.1 (in-memory), each tool at its default S3 sync-interval "
                                         "except litestream-X (X); guardian from a config file (`replicate --config`, "
                                         "`restore --config DB`), Litestream from the URL")
        for t in self.tools:
            self.results["tools"][t.name] = {}
            if a.s3:
                self.results["tools"][t.name + "-s3"] = {}

    def backends(self):
        yield "file"
        if self.moto:
            yield "s3"

    def new_replica(self, backend, d, tag):
        if backend == "file":
            return FileReplica(os.path.join(d, "replica"))
        return S3Replica(self.moto, f"{tag}-{int(time.time() * 1000)}")

    def fresh_dir(self, *parts):
        d = os.path.join(self.root, *parts)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    def done_with(self, d):
        if not self.args.keep:
            shutil.rmtree(d, ignore_errors=True)

    def res(self, tool, backend="file"):
        return self.results["tools"][tool.name + ("-s3" if backend == "s3" else "")]

    def attempt(self, tool, backend, phase, fn):
        """Runs one tool's measurement; a failure is recorded, not fatal to the benchmark."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - any failure of the tool under test is a result
            msg = f"{type(e).__name__}: {e}".strip()
            log(f"[{phase}] {tool.name}/{backend} FAILED: {msg}")
            self.res(tool, backend).setdefault("errors", {})[phase] = msg
            return None
        finally:
            while LIVE:
                rr = LIVE.pop()
                if rr.proc.poll() is None:
                    rr.proc.kill()
                    rr.proc.wait()
                rr.sampler.stop()

    # ---- 1. throughput, stalls, WAL, replica size, resources -------------------------
    def burst(self, tool, rep):
        cfg = self.cfg
        n = cfg["burst_tx"]
        name = tool.name if tool else "none"
        d = self.fresh_dir("throughput", f"{name}-{rep}")
        db = os.path.join(d, "app.db")
        make_db(db)
        r = {}
        if tool:
            replica = FileReplica(os.path.join(d, "replica"))
            rr = Running(tool, db, replica, d, f"throughput-{rep}")
            rr.wait_ready()
            if rep == 0:
                time.sleep(0.5)
                done = rr.sampler.window()
                time.sleep(cfg["idle_s"])
                cpu, wall, rss = done()
                r["idle_cpu_pct"] = None if cpu is None else 100 * cpu / wall
                r["idle_rss_mb"] = proc_mem_kb(rr.pid).get("VmRSS", 0) / 1024
            # private memory idle: the median RssAnon sample of the second before the burst
            time.sleep(1.0)
            idle_anon = rr.sampler.anon_kb(time.time() - 1.0, time.time())
            r["idle_anon_mb"] = (median(idle_anon) if idle_anon else proc_mem_kb(rr.pid).get("RssAnon", 0)) / 1024
            load = rr.sampler.window()
            burst_t0 = time.time()
        wal = FileSizeSampler(db + "-wal")
        wal.start()
        out = subprocess.run(app_argv(db, "burst", n), capture_output=True, text=True, timeout=3600)
        peak_wal = wal.finish()
        if out.returncode != 0:
            raise RuntimeError(f"app failed: {out.stderr.strip()[-300:]}")
        app = json.loads(out.stdout.strip().splitlines()[-1])
        r.update({"tps": app["tps"], "elapsed_s": app["elapsed_s"], "max_stall_ms": app["max_ms"],
                  "p50_ms": app["p50_ms"], "p99_ms": app["p99_ms"], "p999_ms": app["p999_ms"],
                  "top10_ms": app["top10_ms"], "over_25ms": app["over_25ms"], "peak_wal_bytes": peak_wal})
        if tool:
            # catch-up: until the replica has not changed for 2.5 s (Litestream syncs every 1 s)
            app_end = time.time()
            last_change = rr.wait_quiet(quiet=2.5, timeout=300, cheap=True)
            r["catch_up_s"] = None if last_change is None else max(0.0, last_change - app_end)
            cpu, wall, rss = load()
            r["burst_cpu_s"] = cpu
            r["load_peak_rss_mb"] = rss / 1024
            # RssAnon: peak from the burst's start to the end of the catch-up; 5 s after the
            # burst ended (the app's last commit), whatever the replicator is doing then
            caught_up = max(time.time() if last_change is None else last_change, app_end)
            peak_anon = rr.sampler.anon_kb(burst_t0, caught_up + 0.1)
            r["peak_anon_mb"] = (max(peak_anon) if peak_anon else 0) / 1024
            wait = app_end + 5.05 - time.time()
            if wait > 0:
                time.sleep(wait)
            rr.sampler.sample()
            after = rr.sampler.anon_at(app_end + 5.0)
            r["after_anon_mb"] = None if after is None else after / 1024
            if rep == 0:
                r["replica_after_workload"] = tree_size(replica.root)
                time.sleep(cfg["settle_s"])
                r["replica_after_settle"] = tree_size(replica.root)
                r["settle_s"] = cfg["settle_s"]
                r["hwm_rss_mb"] = proc_mem_kb(rr.pid).get("VmHWM", 0) / 1024
            rc, stop_s, killed = rr.stop()
            r.update({"stop_rc": rc, "stop_s": stop_s, "stop_needed_sigkill": killed})
            if rep == 0:
                r["replica_after_stop"] = tree_size(replica.root)
        r["db_bytes"] = db_logical_size(db)
        if tool and rep == 0:
            outp = os.path.join(d, "restored.db")
            rc, dt, err = run_restore(tool, replica, outp)
            if rc == 0:
                ids = db_ids(outp)
                r["restore_check"] = {"ok": ids == list(range(1, n + 1)), "rows": len(ids)}
            else:
                r["restore_check"] = {"ok": False, "error": err}
        if not tool and rep == 0:
            self.baseline_copies(db, d, r)
        log(f"[throughput] {name} rep {rep + 1}/{cfg['reps']}: {r['tps']:.0f} tx/s, "
            f"max stall {r['max_stall_ms']:.1f} ms, peak WAL {peak_wal / MB:.1f} MB"
            + (f", restore check {r['restore_check']}" if "restore_check" in r else ""))
        self.done_with(d)
        return r

    def phase_throughput(self):
        cfg = self.cfg
        runs = {"none": []}
        for t in self.tools:
            runs[t.name] = []
        order = [None] + self.tools
        failed = set()
        for rep in range(cfg["reps"]):
            rot = order[rep % len(order):] + order[:rep % len(order)]
            for tool in rot:
                if tool is None:
                    runs["none"].append(self.burst(None, rep))
                elif tool.name not in failed:
                    r = self.attempt(tool, "file", "throughput", lambda: self.burst(tool, rep))
                    if r is None:
                        failed.add(tool.name)
                    else:
                        runs[tool.name].append(r)
        base = median([r["tps"] for r in runs["none"]])
        self.results["baselines"]["no_replicator"] = {"runs": runs["none"], "tps_median": base}
        for t in self.tools:
            rs = runs[t.name]
            if not rs or t.name in failed:
                continue
            self.res(t)["throughput"] = {
                "runs": rs, "tps_median": median([r["tps"] for r in rs]),
                "ratio": median([r["tps"] for r in rs]) / base,
                "max_stall_ms": max(r["max_stall_ms"] for r in rs),
                "p99_ms": max(r["p99_ms"] for r in rs),
                "peak_wal_bytes": max(r["peak_wal_bytes"] for r in rs),
            }

    def baseline_copies(self, db, d, r):
        """Size of a `cp` copy and of a `sqlite3 .backup` of the workload's database."""
        cp_out = os.path.join(d, "cp.db")
        subprocess.run(["cp", db, cp_out], check=True)
        bk_out = os.path.join(d, "backup.db")
        subprocess.run(["sqlite3", db, f".backup '{bk_out}'"], check=True)
        self.results["baselines"]["copies_after_workload"] = {
            "db_bytes": r["db_bytes"], "cp_bytes": os.path.getsize(cp_out), "backup_bytes": os.path.getsize(bk_out)}

    # ---- 2. crash loss -------------------------------------------------------------
    def crash_trial(self, tool, backend, k):
        cfg = self.cfg
        d = self.fresh_dir("crash", f"{tool.name}-{backend}-{k}")
        db = os.path.join(d, "app.db")
        make_db(db)
        replica = self.new_replica(backend, d, f"crash-{tool.name}-{k}")
        rr = Running(tool, db, replica, d, f"crash-{k}")
        rr.wait_ready()
        app = SteadyApp(db, cfg["steady_interval_ms"], process_group=rr.pid)
        run_s = self.rng.uniform(*cfg["crash_run_s"])
        time.sleep(run_s)
        os.killpg(rr.pid, signal.SIGKILL)  # the app and the replicator, in one instant
        recs = app.wait(timeout=30)
        rr.proc.wait(timeout=30)
        rr.sampler.stop()
        committed = max(db_ids(db) or [0])  # the database itself knows what committed
        reported = recs[-1][0] if recs else 0
        out = os.path.join(d, "restored.db")
        rc, dt, err = run_restore(tool, replica, out)
        trial = {"run_s": run_s, "committed": committed, "reported": reported}
        if rc != 0:
            trial.update({"restore_error": err, "missing": None})
        else:
            ids = db_ids(out)
            have = set(ids)
            missing = [i for i in range(1, committed + 1) if i not in have]
            top = max(ids) if ids else 0
            times = {x[0]: x[2] for x in recs}
            last_t = times.get(reported)
            # nothing restored: the whole run is lost, counted from the first commit
            top_t = times.get(top) if top else (recs[0][1] if recs else None)
            lost_ms = 0.0
            if missing:
                lost_ms = None if last_t is None or top_t is None else (last_t - top_t) / 1e6
            trial.update({"restored_rows": len(ids), "restored_max": top, "missing": len(missing),
                          "gap": top != len(ids) or top > committed, "lost_ms": lost_ms})
        log(f"[crash] {tool.name}/{backend} trial {k + 1}: committed {committed}, "
            f"missing {trial.get('missing')} {trial.get('restore_error', '')}")
        self.done_with(d)
        return trial

    def phase_crash(self):
        cfg = self.cfg
        for backend in self.backends():
            for tool in self.tools:
                trials = []
                for k in range(cfg["crash_trials"]):
                    t = self.attempt(tool, backend, "crash", lambda: self.crash_trial(tool, backend, k))
                    if t is None:
                        break
                    trials.append(t)
                if not trials:
                    continue
                miss = [t["missing"] for t in trials if t["missing"] is not None]
                ms = [t["lost_ms"] for t in trials if t.get("lost_ms") is not None]
                self.res(tool, backend)["crash"] = {
                    "trials": trials, "commit_interval_ms": cfg["steady_interval_ms"],
                    "missing_median": median(miss), "missing_max": max(miss) if miss else None,
                    "lost_ms_median": median(ms), "lost_ms_max": max(ms) if ms else None,
                    "restore_failures": sum(1 for t in trials if t["missing"] is None),
                    "gaps": sum(1 for t in trials if t.get("gap")),
                }

    # ---- 3. staleness (+ S3 requests) -------------------------------------------------
    def staleness(self, tool, backend):
        cfg = self.cfg
        count = int(cfg["staleness_s"] * 1000 / cfg["steady_interval_ms"])
        d = self.fresh_dir("staleness", f"{tool.name}-{backend}")
        db = os.path.join(d, "app.db")
        make_db(db)
        replica = self.new_replica(backend, d, f"stale-{tool.name}")
        rr = Running(tool, db, replica, d, "staleness")
        rr.wait_ready()
        r = {"commits": count, "interval_ms": cfg["steady_interval_ms"]}
        watcher = None
        if backend == "file":
            l0 = os.path.join(replica.root, "ltx", "0")
            os.makedirs(l0, exist_ok=True)  # both tools create it anyway; watched from the start
            watcher = L0Watcher(l0)
            watcher.start()
        else:
            time.sleep(1.0)
            t_idle0 = time.time_ns()
            off_idle = self.moto.offset()
            time.sleep(cfg["s3_idle_s"])
            t_idle1 = time.time_ns()
            idle = [x for x in self.moto.records(off_idle) if t_idle0 <= x["t0"] < t_idle1]
            r["idle_requests"] = len(idle)
            r["idle_requests_per_hour"] = len(idle) * 3600e9 / (t_idle1 - t_idle0)
        off = self.moto.offset() if backend == "s3" else 0
        load = rr.sampler.window()
        app = SteadyApp(db, cfg["steady_interval_ms"], count=count, track_wal=True)
        recs = app.wait(timeout=cfg["staleness_s"] * 10 + 60)
        cpu, wall, rss = load()
        if not recs:
            raise RuntimeError("the app committed nothing")
        r["steady_cpu_pct"] = None if cpu is None else 100 * cpu / wall
        r["steady_peak_rss_mb"] = rss / 1024
        time.sleep(3.0)  # drain: what the replicator still ships for this load
        t_drain = time.time_ns()
        if watcher:
            files = watcher.finish()
            r["watch"] = watcher.mode
        else:
            files = replica.l0_files(off)
            r["watch"] = "moto request log"
            t0 = recs[0][1]
            during = [x for x in self.moto.records(off) if t0 <= x["t0"] <= t_drain]
            by = {}
            for x in during:
                by[x["m"]] = by.get(x["m"], 0) + 1
            r["requests_during_load"] = len(during)
            r["requests_by_method"] = by
            r["requests_per_tx"] = len(during) / len(recs)
        rr.stop()
        commits = [(x[2], x[3], x[4], x[5]) for x in recs]
        st, unmatched = staleness_ms(commits, files)
        r.update({"l0_files": len(files), "unmatched": unmatched, "samples_ms": st,
                  "p50_ms": pct(st, 0.5), "p90_ms": pct(st, 0.9), "p99_ms": pct(st, 0.99),
                  "max_ms": max(st) if st else None, "max_commit_ms": max(x[6] for x in recs) / 1e6})
        log(f"[staleness] {tool.name}/{backend}: p50 {fmt_ms(r['p50_ms'])} p90 {fmt_ms(r['p90_ms'])} "
            f"max {fmt_ms(r['max_ms'])} ms, {len(files)} L0 files, {unmatched} commits unmatched")
        self.done_with(d)
        return r

    def phase_staleness(self):
        for backend in self.backends():
            for tool in self.tools:
                r = self.attempt(tool, backend, "staleness", lambda: self.staleness(tool, backend))
                if r is not None:
                    self.res(tool, backend)["staleness"] = r

    # ---- 3b. CPU at 100 tx/s: replica on the disk, and on a tmpfs -------------------------
    def cpu_run(self, tool, where):
        """utime and stime of the replicator while the app commits every 10 ms for
        cpu_s seconds; the replica on this machine's disk, or on a tmpfs mounted for
        the run (the difference is the replica file system's share)."""
        cfg = self.cfg
        # The earlier phases' directories were just deleted (thousands of LTX
        # files). On an ext4 without a journal (this VM's disk) the kernel
        # skips inodes freed in the last 5 s, 300 s while their inode table
        # block is dirty (`recently_deleted`): every new file then scans past
        # them, which the profile charged to whichever tool ran next (half of
        # guardian's samples). Written back and 6 s later that is over.
        os.sync()
        time.sleep(6)
        d = self.fresh_dir("cpu", f"{tool.name}-{where}")
        db = os.path.join(d, "app.db")
        make_db(db)
        root = os.path.join(d, "replica")
        os.makedirs(root)
        mounted = False
        rr = None
        try:
            if where == "tmpfs":
                m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g,mode=0700", "tmpfs", root],
                                   capture_output=True, text=True)
                if m.returncode != 0:
                    raise RuntimeError(f"mount -t tmpfs failed (needs root): {m.stderr.strip()}")
                mounted = True
            replica = FileReplica(root)
            rr = Running(tool, db, replica, d, f"cpu-{where}")
            rr.wait_ready()
            time.sleep(1.0)
            count = int(cfg["cpu_s"] * 1000 / cfg["steady_interval_ms"])
            win = rr.sampler.cpu_window()
            app = SteadyApp(db, cfg["steady_interval_ms"], count=count)
            recs = app.wait(timeout=cfg["cpu_s"] * 10 + 60)
            user, system, wall = win()
            rr.stop()
            if user is None:
                raise RuntimeError("the replicator exited during the run")
            r = {"replica_fs": where, "commits": len(recs), "wall_s": wall,
                 "tps": len(recs) / wall, "user_pct": user, "sys_pct": system}
            log(f"[cpu] {tool.name}, replica on {where}: user {user:.1f} % + sys {system:.1f} % "
                f"of a core at {r['tps']:.0f} tx/s")
            return r
        finally:
            if rr is not None and rr.proc.poll() is None:
                rr.proc.kill()
                rr.proc.wait()
            if mounted:
                subprocess.run(["umount", root], capture_output=True)
            self.done_with(d)

    def phase_cpu(self):
        for tool in self.tools:
            for where in ("disk", "tmpfs"):
                r = self.attempt(tool, "file", f"cpu-{where}", lambda: self.cpu_run(tool, where))
                if r is not None:
                    self.res(tool).setdefault("cpu", {})[where] = r

    # ---- 4. point-in-time exactness --------------------------------------------------
    def pitr(self, tool):
        cfg = self.cfg
        d = self.fresh_dir("pitr", tool.name)
        db = os.path.join(d, "app.db")
        make_db(db)
        replica = FileReplica(os.path.join(d, "replica"))
        rr = Running(tool, db, replica, d, "pitr")
        rr.wait_ready()
        time.sleep(0.3)
        app = SteadyApp(db, cfg["pitr_interval_ms"], count=cfg["pitr_commits"])
        recs = app.wait(timeout=120)
        time.sleep(2.5)
        rr.stop()
        ids = [x[0] for x in recs]
        # targets: halfway between commit k returning and commit k+1 starting
        gaps = list(range(1, len(recs) - 1))
        nt = min(cfg["pitr_targets"], len(gaps))
        picks = sorted({gaps[round(i * (len(gaps) - 1) / max(1, nt - 1))] for i in range(nt)})
        trials = []
        for k in picks:
            target_ns = (recs[k][2] + recs[k + 1][1]) // 2
            ts = rfc3339(target_ns)
            expected = ids[:k + 1]
            out = os.path.join(d, f"pitr-{k}.db")
            rc, dt, err = run_restore(tool, replica, out, timestamp=ts)
            if rc != 0:
                trials.append({"target": ts, "expected_max": expected[-1], "error": err, "exact": False})
                continue
            got = db_ids(out)
            trials.append({"target": ts, "expected_max": expected[-1], "restored_rows": len(got),
                           "restored_max": got[-1] if got else 0, "exact": got == expected})
        exact = sum(1 for t in trials if t["exact"])
        log(f"[pitr] {tool.name}: {exact}/{len(trials)} exact")
        self.done_with(d)
        return {"trials": trials, "exact": exact, "total": len(trials),
                "exact_pct": 100.0 * exact / len(trials) if trials else None}

    def phase_pitr(self):
        for tool in self.tools:
            r = self.attempt(tool, "file", "pitr", lambda: self.pitr(tool))
            if r is not None:
                self.res(tool)["pitr"] = r

    # ---- 5. restore time ---------------------------------------------------------------
    def restore_one(self, tool, backend, mb, src, rows):
        base = self.results["baselines"]["restore"][str(mb)]
        d = self.fresh_dir("restore", f"{tool.name}-{backend}-{mb}")
        db = os.path.join(d, "app.db")
        shutil.copyfile(src, db)
        os.sync()  # the copy's writeback must not compete with the first full sync
        replica = self.new_replica(backend, d, f"restore-{tool.name}-{mb}")
        first = None
        if backend == "file":
            os.makedirs(replica.root)
            first = FirstImageWatcher(replica.root)
            first.start()
        t0 = time.perf_counter()
        rr = Running(tool, db, replica, d, f"restore-{mb}")
        rr.wait_ready(timeout=1200)
        rr.wait_quiet(2.0)
        rc, stop_s, killed = rr.stop(timeout=600)
        r = {"db_bytes": os.path.getsize(db), "snapshot_s": time.perf_counter() - t0, "stop_rc": rc}
        if first is not None:
            t_found, found = first.finish()
            c = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
            pc = c.execute("PRAGMA page_count").fetchone()[0]
            c.close()
            fs = None if t_found is None else t_found - t0
            r["first_sync"] = {"s": fs, "file": found, "db_pages": pc,
                               "x_cp_fsync": None if fs is None else fs / base["cp_fsync_s"],
                               "covers_db": bool(found and found["pages"] is not None and found["pages"] >= pc)}
        if backend == "file":
            r["replica"] = tree_size(replica.root)
        out = os.path.join(d, "restored.db")
        runs = 1 if mb >= 1024 else 2
        checks = ["none", "full"] if isinstance(tool, Guardian) else [None]
        r["verified"] = True
        for check in checks:
            times, errors = [], []
            for i in range(runs if check in (None, "none") else 1):
                rc, dt, err = run_restore(tool, replica, out, integrity=check)
                if rc != 0:
                    errors.append(err)
                    break
                times.append(dt)
                if i == 0:
                    got = count_rows(out, "big")
                    r["verified"] = r["verified"] and got == rows
            r["check_" + (check or "default")] = {
                "times_s": times, "errors": errors, "median_s": median(times),
                "x_cp": (median(times) / base["cp_s"]) if times else None,
                "x_cp_fsync": (median(times) / base["cp_fsync_s"]) if times else None}
            rm_db(out)
        m = r.get("check_none") or r.get("check_default")
        fs = (r.get("first_sync") or {}).get("s")
        log(f"[restore] {tool.name}/{backend} {mb} MB: first full sync {fmt_s(fs)}; restore {fmt_s(m['median_s'])} "
            f"({fmt_x(m['x_cp_fsync'])} cp+fsync), verified {r['verified']} {m['errors'][:1]}")
        self.done_with(d)
        return r

    def phase_restore(self):
        cfg = self.cfg
        sizes = [("file", mb) for mb in cfg["restore_sizes_mb"]]
        if self.moto:
            sizes.append(("s3", cfg["s3_restore_mb"]))
        sources = {}
        for backend, mb in sizes:
            if mb not in sources:
                d = self.fresh_dir("restore", f"src-{mb}")
                src = os.path.join(d, "big.db")
                t0 = time.perf_counter()
                rows = make_big_db(src, mb * MB)
                os.sync()  # its writeback would otherwise slow the cp baseline that follows
                log(f"[restore] made a {os.path.getsize(src) / MB:.0f} MB database ({rows} rows) "
                    f"in {time.perf_counter() - t0:.1f}s")
                sources[mb] = (src, rows)
                self.results["baselines"].setdefault("restore", {})[str(mb)] = self.baseline_restore(src, d, mb)
            src, rows = sources[mb]
            for tool in self.tools:
                r = self.attempt(tool, backend, f"restore-{mb}",
                                 lambda: self.restore_one(tool, backend, mb, src, rows))
                if r is not None:
                    self.res(tool, backend).setdefault("restore", {})[str(mb)] = r
            if self.moto and backend == "s3":
                self.moto.reset()  # frees moto's memory
        self.done_with(os.path.join(self.root, "restore"))

    def baseline_restore(self, src, d, mb):
        runs = 2 if mb >= 1024 else 3
        out = os.path.join(d, "copy.db")
        cp, cpsync, rest = [], [], []
        for _ in range(runs):
            rm_db(out)
            t0 = time.perf_counter()
            subprocess.run(["cp", src, out], check=True)
            t1 = time.perf_counter()
            fd = os.open(out, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            cp.append(t1 - t0)
            cpsync.append(time.perf_counter() - t0)
        backup = []
        for _ in range(max(1, runs - 1)):
            rm_db(out)
            t0 = time.perf_counter()
            subprocess.run(["sqlite3", out, f".restore '{src}'"], check=True)
            rest.append(time.perf_counter() - t0)
            # `.backup` of the live database to a new file, then fsync: the first full
            # copy a periodic-backup setup makes
            rm_db(out)
            t0 = time.perf_counter()
            subprocess.run(["sqlite3", src, f".backup '{out}'"], check=True)
            fd = os.open(out, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            backup.append(time.perf_counter() - t0)
        rm_db(out)
        r = {"db_bytes": os.path.getsize(src), "cp_s": median(cp), "cp_runs_s": cp,
             "cp_fsync_s": median(cpsync), "cp_fsync_runs_s": cpsync,
             "sqlite3_restore_s": median(rest), "sqlite3_restore_runs_s": rest,
             "sqlite3_backup_fsync_s": median(backup), "sqlite3_backup_fsync_runs_s": backup}
        log(f"[restore] cp {mb} MB: {r['cp_s']:.3f}s (with fsync {r['cp_fsync_s']:.3f}s), "
            f"sqlite3 .restore {r['sqlite3_restore_s']:.3f}s, .backup + fsync {r['sqlite3_backup_fsync_s']:.3f}s")
        return r

    # ---- run -----------------------------------------------------------------------
    def run(self):
        self.setup()
        phases = [p.strip() for p in self.args.only.split(",")] if self.args.only else \
            ["throughput", "cpu", "crash", "staleness", "pitr", "restore"]
        t0 = time.time()
        for p in phases:
            fn = {"throughput": self.phase_throughput, "cpu": self.phase_cpu, "crash": self.phase_crash,
                  "staleness": self.phase_staleness, "pitr": self.phase_pitr,
                  "restore": self.phase_restore}.get(p)
            if fn is None:
                raise SystemExit(f"unknown phase {p}")
            fn()
        self.results["env"]["runtime_s"] = time.time() - t0


def make_big_db(path, target):
    """A WAL database of about `target` bytes: 256 random bytes and ~180 bytes of text per row."""
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, a BLOB NOT NULL, b TEXT NOT NULL)")
    text = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor " * 2
    n = 0
    batch = 10000
    while True:
        c.execute("BEGIN")
        c.execute("WITH RECURSIVE s(x) AS (SELECT ? UNION ALL SELECT x + 1 FROM s WHERE x < ?) "
                  "INSERT INTO big(id, a, b) SELECT x, randomblob(256), printf('customer-%d %s', x % 1000, ?) FROM s",
                  (n + 1, n + batch, text))
        c.execute("COMMIT")
        n += batch
        size = c.execute("PRAGMA page_count").fetchone()[0] * c.execute("PRAGMA page_size").fetchone()[0]
        if size >= target:
            break
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return n


def count_rows(path, table):
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        c.close()


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

NA = "n/a"


def fmt_ms(v):
    if v is None:
        return "-"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}"


def fmt_s(v):
    return "-" if v is None else (f"{v:.2f}s" if v >= 1 else f"{v:.3f}s")


def fmt_x(v):
    return "-" if v is None else f"{v:.2f}×"


def fmt_mb(b):
    return None if b is None else f"{b / MB:.1f} MB"


TOOL_COLUMNS = {"litestream": "Litestream 0.5.17, 1 s (defaults)"}


def tool_column(name):
    if name in TOOL_COLUMNS:
        return TOOL_COLUMNS[name]
    if name.startswith("litestream-"):
        return f"Litestream, {name[len('litestream-'):]}"
    return name


def size_label(mb):
    mb = int(mb)
    return f"{mb * MB / 1e9:.1f} GB" if mb >= 1024 else f"{mb} MB"


def markdown_table(header, body):
    widths = [max(len(str(x[i])) for x in [header] + body) for i in range(len(header))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in body:
        out.append("| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |")
    return out


def report_issue13(results):
    """The table of issue 13: one row per figure, the baselines, each tool (file
    replica) and the target side by side."""
    tools = [t for t in results["tools"] if not t.endswith("-s3")]
    base = results["baselines"]
    cfg = results["config"]
    header = ["figure", "no replicator / cp", "sqlite3 .backup"] + [tool_column(t) for t in tools] + ["target"]
    body = []

    def get(tool, *path):
        v = results["tools"].get(tool, {})
        for p in path:
            if not isinstance(v, dict) or p not in v:
                return None
            v = v[p]
        return v

    def cells(phase, fn):
        out = []
        for t in tools:
            err = (results["tools"][t].get("errors") or {}).get(phase)
            if err:
                out.append("FAILED: " + err.splitlines()[0][:40])
                continue
            try:
                v = fn(t)
            except (KeyError, TypeError, ZeroDivisionError, IndexError, ValueError):
                v = None
            out.append("–" if v is None else v)
        return out

    def row(figure, none, backup, phase, fn, target):
        body.append([figure, none, backup] + cells(phase, fn) + [target])

    nr = base.get("no_replicator")
    runs = lambda t: get(t, "throughput", "runs")  # noqa: E731
    if nr:
        n = cfg["burst_tx"]
        row(f"app throughput, {n // 1000}k one-row tx, ratio to none (median of {cfg['reps']})",
            f"1.00 ({nr['tps_median']:.0f} tx/s)", "–", "throughput",
            lambda t: f"{get(t, 'throughput', 'ratio'):.2f} ({get(t, 'throughput', 'tps_median'):.0f} tx/s)", "≥ 0.95")
        row("max commit stall during that burst (worst run)",
            f"{max(r['max_stall_ms'] for r in nr['runs']):.1f} ms", "–", "throughput",
            lambda t: f"{get(t, 'throughput', 'max_stall_ms'):.1f} ms", "≤ 25 ms")
        row("peak WAL during that burst (worst run)",
            fmt_mb(max(r["peak_wal_bytes"] for r in nr["runs"])), "–", "throughput",
            lambda t: fmt_mb(get(t, "throughput", "peak_wal_bytes")), "≤ 16 MB (`max-wal-size` holds)")
    for where, label in (("disk", "file replica on this disk"), ("tmpfs", "file replica on a tmpfs")):
        if any(get(t, "cpu", where) or (results["tools"][t].get("errors") or {}).get(f"cpu-{where}") for t in tools):
            row(f"CPU at 100 tx/s, {label} (user + sys, % of a core, {cfg['cpu_s']:.0f} s)", "–", "–",
                f"cpu-{where}", lambda t, w=where: f"{get(t, 'cpu', w, 'user_pct'):.1f} + {get(t, 'cpu', w, 'sys_pct'):.1f}",
                "≤ 2 in all")
    if nr:
        def mem(t):
            rs = runs(t)
            idle = median([r["idle_anon_mb"] for r in rs])
            peak = max(r["peak_anon_mb"] for r in rs)
            after = max(r["after_anon_mb"] for r in rs if r.get("after_anon_mb") is not None)
            return f"{idle:.1f} / {peak:.1f} / {after:.1f} MB"
        row("private memory (RssAnon) idle / peak in the burst / 5 s after it", "–", "–", "throughput", mem,
            "≤ 6 / 16 / 8 MB")
    for mb, b in (base.get("restore") or {}).items():
        label = size_label(mb)

        def first(t, mb=mb):
            f = get(t, "restore", mb, "first_sync")
            if f is None or f.get("s") is None:
                return None
            return f"{f['s']:.2f} s ({fmt_x(f['x_cp_fsync'])})" + ("" if f.get("covers_db") else " (first file not a full image?)")
        row(f"first full sync of a {label} database (× cp incl. fsync)",
            f"cp {b['cp_fsync_s']:.2f} s", (f"{b['sqlite3_backup_fsync_s']:.2f} s ({fmt_x(b['sqlite3_backup_fsync_s'] / b['cp_fsync_s'])})"
                                            if b.get("sqlite3_backup_fsync_s") else "–"),
            f"restore-{mb}", first, "≤ 2× cp")
    for mb, b in (base.get("restore") or {}).items():
        label = size_label(mb)

        def rest(t, mb=mb):
            r = get(t, "restore", mb)
            m = r.get("check_none") or r.get("check_default")
            if m is None:
                return None
            if m["median_s"] is None:
                return "FAILED: " + (m["errors"][0] if m["errors"] else "?")[:40]
            return f"{fmt_x(m['x_cp_fsync'])} ({fmt_s(m['median_s'])})" + ("" if r.get("verified") else " WRONG CONTENT")
        row(f"restore {label}, × cp incl. fsync", f"1.00× ({fmt_s(b['cp_fsync_s'])})",
            f"{fmt_x(b['sqlite3_restore_s'] / b['cp_fsync_s'])} ({fmt_s(b['sqlite3_restore_s'])}, .restore)",
            f"restore-{mb}", rest, "≤ 1.5×")
    return markdown_table(header, body)


def report(results):
    tools = results["tools"]
    base = results["baselines"]
    env = results["env"]
    cfg = results["config"]
    cols = ["no replicator", "cp", "sqlite3 .backup"] + [t.replace("-s3", " S3") for t in tools]
    rows = []

    def row(metric, target, cells):
        cells = {k.replace("-s3", " S3"): v for k, v in cells.items()}
        if any(v != NA for v in cells.values()):
            rows.append([metric, target] + [cells.get(c, NA) for c in cols])

    def get(tool, *path):
        v = tools.get(tool, {})
        for p in path:
            if not isinstance(v, dict) or p not in v:
                return None
            v = v[p]
        return v

    def per_tool(phase, fn):
        """fn(tool) -> text; a tool whose `phase` failed shows the failure."""
        out = {}
        for name in tools:
            err = (tools[name].get("errors") or {}).get(phase)
            if err:
                out[name] = "FAILED: " + err.splitlines()[0][:50]
                continue
            try:
                v = fn(name)
            except (KeyError, TypeError, ZeroDivisionError, IndexError, ValueError):
                v = None
            out[name] = NA if v is None else v
        return out

    nr = base.get("no_replicator")
    if nr:
        n = cfg["burst_tx"]
        c = per_tool("throughput", lambda t: f"{get(t, 'throughput', 'ratio'):.2f} ({get(t, 'throughput', 'tps_median'):.0f} tx/s)")
        c["no replicator"] = f"1.00 ({nr['tps_median']:.0f} tx/s)"
        c = per_tool("throughput", lambda t: f"{get(t, 'throughput', 'max_stall_ms'):.1f} ms")
        c["no replicator"] = f"{max(r['max_stall_ms'] for r in nr['runs']):.1f} ms"
        c = per_tool("throughput", lambda t: f"{get(t, 'throughput', 'p99_ms'):.2f} ms")
        c["no replicator"] = f"{max(r['p99_ms'] for r in nr['runs']):.2f} ms"
        row("p99 commit latency", "", c)
        c = per_tool("throughput", lambda t: fmt_mb(get(t, "throughput", "peak_wal_bytes")))
        c["no replicator"] = fmt_mb(max(r["peak_wal_bytes"] for r in nr["runs"]))

    def crash_tx(t):
        c = get(t, "crash")
        s = f"{c['missing_median']:g} / {c['missing_max']:g}"
        if c["restore_failures"]:
            s += f" ({c['restore_failures']} restores failed)"
        if c["gaps"]:
            s += f" ({c['gaps']} with gaps)"
        return s
    iv = cfg["steady_interval_ms"]
    row(f"Crash loss, tx (median / max of {cfg['crash_trials']}; a commit every {iv:.0f} ms)", "≤ 1 / ≤ 3",
        per_tool("crash", crash_tx))
    row("Crash loss, ms (median / max)", "",
        per_tool("crash", lambda t: None if get(t, "crash") is None else
                 f"{fmt_ms(get(t, 'crash', 'lost_ms_median'))} / {fmt_ms(get(t, 'crash', 'lost_ms_max'))}"))

    def stale(t):
        s = get(t, "staleness")
        if s is None:
            return None
        out = f"{fmt_ms(s['p50_ms'])} / {fmt_ms(s['p90_ms'])} / {fmt_ms(s['max_ms'])}"
        if s["unmatched"]:
            out += f" ({s['unmatched']} of {s['commits']} not seen)"
        return out
    row(f"Staleness at a commit every {iv:.0f} ms, ms (p50 / p90 / max)", "p90 ≤ 10", per_tool("staleness", stale))

    def reqs(t):
        s = get(t, "staleness")
        by = ", ".join(f"{k} {v}" for k, v in sorted(s["requests_by_method"].items()))
        return f"{s['requests_per_tx']:.3f} ({by})"
    row("S3 requests per committed tx (a commit every 10 ms, + 3 s drain)", "", per_tool("staleness", reqs))
    row("S3 requests per hour when idle (extrapolated)", "",
        per_tool("staleness", lambda t: f"{get(t, 'staleness', 'idle_requests_per_hour'):.0f} "
                                        f"({get(t, 'staleness', 'idle_requests')} in {cfg['s3_idle_s']:.0f} s)"))
    row("Point-in-time restores exact", "100 %",
        per_tool("pitr", lambda t: f"{get(t, 'pitr', 'exact_pct'):.0f} % ({get(t, 'pitr', 'exact')}/{get(t, 'pitr', 'total')})"))

    for mb, b in (base.get("restore") or {}).items():
        label = f"{int(mb) // 1024} GB" if int(mb) >= 1024 else f"{mb} MB"

        def cell(t, key="check_none", mb=mb):
            r = get(t, "restore", mb)
            if r is None:
                return None
            m = r.get(key) or r.get("check_default")
            if m is None:
                return None
            if m["median_s"] is None:
                return "FAILED: " + (m["errors"][0] if m["errors"] else "?")[:50]
            return f"{fmt_x(m.get('x_cp_fsync'))} ({fmt_s(m['median_s'])})" + ("" if r.get("verified") else " WRONG CONTENT")
        c = per_tool(f"restore-{mb}", cell)
        c["cp"] = f"1.00× ({fmt_s(b['cp_s'])}; +fsync {fmt_s(b['cp_fsync_s'])})"
        c["sqlite3 .backup"] = f"{fmt_x(b['sqlite3_restore_s'] / b['cp_s'])} ({fmt_s(b['sqlite3_restore_s'])}, .restore)"
        row(f"Restore {label} with guardian's default full integrity_check (× cp incl. fsync)", "",
            {t: cell(t, "check_full") or NA for t in tools if get(t, "restore", mb, "check_full")})

    if nr:
        cp = base.get("copies_after_workload", {})

        def ratio(t, key, idx):
            r0 = get(t, "throughput", "runs")[0]
            return f"{r0[key][idx] / r0['db_bytes']:.2f}×"
        c = per_tool("throughput", lambda t: ratio(t, "replica_after_workload", 0)
                     + f" ({get(t, 'throughput', 'runs')[0]['replica_after_workload'][2]} files)")
        if cp:
            c["cp"] = f"{cp['cp_bytes'] / cp['db_bytes']:.2f}×"
            c["sqlite3 .backup"] = f"{cp['backup_bytes'] / cp['db_bytes']:.2f}×"
        row("Replica bytes / DB bytes, once caught up after the burst", "≤ 1.1×", c)
        row("Catch-up: last replica write after the burst ended", "",
            per_tool("throughput", lambda t: "still writing after 300 s" if any(r["catch_up_s"] is None for r in get(t, "throughput", "runs"))
                     else f"{max(r['catch_up_s'] for r in get(t, 'throughput', 'runs')):.1f} s (worst run)"))
        settle = cfg["settle_s"]
        row(f"Replica bytes / DB bytes, {settle:.0f} s after that", "",
            per_tool("throughput", lambda t: ratio(t, "replica_after_settle", 0)
                     + f" ({get(t, 'throughput', 'runs')[0]['replica_after_settle'][2]} files)"))
        row("Replica disk usage (allocated blocks) / DB bytes, same moment", "",
            per_tool("throughput", lambda t: ratio(t, "replica_after_settle", 1)))
        row("Latest restore of that replica holds every row", "",
            per_tool("throughput", lambda t: "ok" if get(t, "throughput", "runs")[0]["restore_check"]["ok"]
                     else f"WRONG: {get(t, 'throughput', 'runs')[0]['restore_check']}"))

        def rss(t):
            peak = max(r["load_peak_rss_mb"] for r in get(t, "throughput", "runs"))
            steady = get(t, "staleness", "steady_peak_rss_mb")
            if steady is not None:
                peak = max(peak, steady)
            return f"{get(t, 'throughput', 'runs')[0]['idle_rss_mb']:.1f} / {peak:.1f} MB"
        row("Replicator RSS, idle / peak under load", "≤ 20 MB", per_tool("throughput", rss))

        def cpu(t):
            idle = get(t, "throughput", "runs")[0]["idle_cpu_pct"]
            steady = get(t, "staleness", "steady_cpu_pct")
            burst = median([r["burst_cpu_s"] for r in get(t, "throughput", "runs")])
            return f"{idle:.1f} % / " + ("-" if steady is None else f"{steady:.1f} %") + f" / {burst:.2f} s"
        row(f"Replicator CPU: idle / at 100 tx/s (% of a core) / CPU-s for the {cfg['burst_tx'] // 1000}k burst + catch-up", "",
            per_tool("throughput", cpu))

    keep = [i for i, c in enumerate(cols) if any(r[2 + i] != NA for r in rows)]
    header = ["Metric", "Target"] + [cols[i] for i in keep]
    body = [[r[0], r[1]] + [r[2 + i] for i in keep] for r in rows]
    lines = [
        f"guardian replication benchmark ({env.get('mode')}), {env.get('date')}, {env.get('cpus')} CPUs, "
        f"kernel {env.get('kernel')}, SQLite {env.get('sqlite')}, Python {env.get('python')}, source {env.get('source')}, "
        f"load average at start {' '.join(f'{x:.1f}' for x in env.get('loadavg_at_start', []))}",
        f"App: {env.get('app')}.",
        f"guardian: {env.get('guardian', 'not run')}. Litestream {env.get('litestream', 'not run')}: "
        f"{env.get('litestream_settings')}." + (f" S3: {env['s3']}." if env.get("s3") else ""),
        "Page cache warm; restore times include process start and are compared with cp + fsync; "
        "guardian restores with --integrity-check none (as cp and Litestream's default).",
        "",
        "Issue 13 (file replica):",
        "",
    ]
    lines += report_issue13(results)
    if body:
        lines += ["", "Further figures:", ""] + markdown_table(header, body)
    errs = [(t, ph, e) for t in tools for ph, e in (tools[t].get("errors") or {}).items()]
    if errs:
        lines.append("")
        for t, ph, e in errs:
            lines.append(f"{t} {ph} failed: {e}")
    return "\n".join(lines)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_app":
        return app_main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, a smoke run (~3 minutes)")
    p.add_argument("--guardian", default=os.path.join(REPO, ".build", "release", "guardian"),
                   help="guardian binary (default .build/release/guardian)")
    p.add_argument("--skip-1gb", action="store_true", help="restore only the 100 MB database")
    p.add_argument("--s3", action="store_true", help="add S3 (moto) columns for guardian and Litestream")
    p.add_argument("--reps", type=int, default=0, help="repetitions of the throughput burst (default 3; quick 1)")
    p.add_argument("--tools", default="litestream,guardian", help="comma list (default litestream,guardian)")
    p.add_argument("--only", default="", help="comma list of phases: throughput,cpu,crash,staleness,pitr,restore")
    p.add_argument("--litestream-interval", default="",
                   help="comma list of Litestream settings to measure: `default` (the CLI form) and/or "
                        "intervals (e.g. 100ms) used as monitor-interval and sync-interval in a config "
                        "file (default: default,100ms)")
    p.add_argument("--json", default=os.path.join(REPO, "bench-out", "replication.json"),
                   help="where to write the raw figures (default bench-out/replication.json)")
    p.add_argument("--workdir", default="", help="scratch directory (default: a new one under $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep databases, replicas and logs")
    p.add_argument("--seed", type=int, default=1, help="seed for the crash-test timing")
    args = p.parse_args()

    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    ok = False
    try:
        bench.run()
        ok = True
    finally:
        kill_children()
        if bench.moto:
            bench.moto.stop()
        text = report(bench.results)
        bench.results["table"] = text
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(bench.results, f, indent=1)
        print(text)
        print(f"\nraw figures: {args.json}" + ("" if ok else " (run interrupted)"))
        if not args.keep:
            shutil.rmtree(bench.root, ignore_errors=True)
        else:
            print(f"work files kept in {bench.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
