#!/usr/bin/env python3
"""Many databases on one host (issue 14): guardian side by side with Litestream 0.5.17.

Idle curve: N idle WAL databases (N = 10, 100, 1000, 10000; --max-n stops earlier),
one file replica each, every tool at its defaults. Per tool and N: threads, private
memory (RssAnon) in total and per database above the tool's own base (the same tool
with one database), idle CPU (user + sys, % of a core), start-up to READY (guardian's
sd_notify READY=1) and until every database has its first LTX file in its replica.

Load: 1,000 databases of which 100 commit 10 transactions per second each. Staleness
(commit -> the L0 file covering it in the replica) p50/p90/max over every commit, then
a SIGKILL of the replicator and the writers in one instant, a restore of every written
database and a count of its committed ids that are missing.

Litestream runs in two forms: its `dir:` entry (`litestream-dir`) and an explicit
`dbs:` list (`litestream-dbs`). guardian runs from an explicit `dbs:` list (`guardian`),
or with --guardian-dir from a `dir:` entry written with Litestream's key names.

    benchmarks/scale/bench.py [--quick] [--max-n N] [--only idle,load] [--guardian-dir]

Python 3 standard library only; Litestream from .tools/venv (scripts/install-deps.sh),
guardian from .build/release/guardian. Shared pieces (the WAL tracker, the LTX header
reader, the staleness matcher, /proc readers) come from ../replication/bench.py.
"""

import argparse
import json
import os
import platform
import select
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import ctypes
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "replication"))
import bench as rb  # noqa: E402  (the replication benchmark's helpers)

VENV = rb.VENV
MB = rb.MB
log = rb.log
LTX_NAME = rb.LTX_NAME


# --------------------------------------------------------------------------------------
# The writers (a child process: `bench.py _writers ...`): several databases, each
# committing one row every 1/rate seconds, phases spread evenly.
# --------------------------------------------------------------------------------------

def writers_main(argv):
    p = argparse.ArgumentParser(prog="bench.py _writers")
    p.add_argument("--dbs", required=True, help="comma list of database paths")
    p.add_argument("--first-index", type=int, required=True)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=0, help="0 = until killed")
    a = p.parse_args(argv)
    paths = a.dbs.split(",")
    conns, trackers, next_id = [], [], []
    for path in paths:
        c = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA busy_timeout=10000")
        conns.append(c)
        trackers.append(rb.WalTracker(path + "-wal"))
        next_id.append(c.execute("SELECT coalesce(max(id), 0) FROM t").fetchone()[0] + 1)
    period = int(1e9 / a.rate)
    perf = time.perf_counter_ns
    wall = time.time_ns
    start = perf()
    due = [start + period * k // len(paths) for k in range(len(paths))]
    end = start + int(a.seconds * 1e9) if a.seconds else None
    out = sys.stdout
    payload = os.urandom(32).hex()
    sql = "INSERT INTO t(id, v, ts) VALUES (?, ?, ?)"
    while True:
        k = min(range(len(paths)), key=due.__getitem__)
        now = perf()
        if end is not None and due[k] >= end:
            break
        if due[k] > now:
            time.sleep((due[k] - now) / 1e9)
        due[k] += period
        i = next_id[k]
        before = wall()
        conns[k].execute(sql, (i, payload, before))
        after = wall()
        s1, s2, wend = trackers[k].after_commit()
        out.write(f"{a.first_index + k} {i} {before} {after} {s1} {s2} {wend}\n")
        out.flush()
        next_id[k] = i + 1
    return 0


# --------------------------------------------------------------------------------------
# Watchers
# --------------------------------------------------------------------------------------

class NotifyListener(threading.Thread):
    """An sd_notify receiver: an AF_UNIX datagram socket bound to a path, as systemd's
    is (NOTIFY_SOCKET). Records when READY=1 arrived (time.perf_counter())."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.ready_at = None
        self.messages = []
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode(errors="replace")
            self.messages.append(text)
            if self.ready_at is None and "READY=1" in text.split("\n"):
                self.ready_at = time.perf_counter()

    def close(self):
        self.stop_ev.set()
        self.join()
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def proc_fds(pid):
    """(open file descriptors, of which inotify instances) of a process."""
    total = inotify = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            total += 1
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                    inotify += 1
            except OSError:
                pass
    except FileNotFoundError:
        return None, None
    return total, inotify


def first_ltx_all(names, replica_root, proc, t0, timeout):
    """Seconds from t0 until every database's replica has an LTX file under its final
    name in ltx/0 (or ltx/9), listing each pending replica every 50 ms; None on timeout
    or if the replicator exited."""
    pending = set(names)
    deadline = time.perf_counter() + timeout
    while pending:
        for n in list(pending):
            for lv in ("0", "9"):
                try:
                    if any(LTX_NAME.match(x) for x in os.listdir(os.path.join(replica_root, n, "ltx", lv))):
                        pending.discard(n)
                        break
                except FileNotFoundError:
                    pass
        if not pending:
            break
        if proc.poll() is not None or time.perf_counter() > deadline:
            return None, len(pending)
        time.sleep(0.05)
    return time.perf_counter() - t0, 0


IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080


class MultiL0Watcher(threading.Thread):
    """Like the replication benchmark's L0Watcher, for many replicas with one inotify
    descriptor: when each new L0 file appears in `<replica>/ltx/0`, with its header."""

    def __init__(self):
        """Takes its inotify instance at once: made before the replicator starts, so a
        replicator that uses up fs.inotify.max_user_instances cannot starve it."""
        super().__init__(daemon=True)
        self.stop_ev = threading.Event()
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise RuntimeError(f"inotify_init1 failed (errno {ctypes.get_errno()}; fs.inotify.max_user_instances?)")

    def watch(self, dirs):
        self.dirs = dirs  # index -> l0 directory
        self.files = {i: [] for i in dirs}
        self.seen = {i: set(n for n in os.listdir(d) if LTX_NAME.match(n)) for i, d in dirs.items()}
        self.wd = {}
        for i, d in dirs.items():
            w = self.libc.inotify_add_watch(self.fd, d.encode(), IN_CLOSE_WRITE | IN_MOVED_TO)
            if w < 0:
                raise RuntimeError(f"inotify_add_watch {d} failed (errno {ctypes.get_errno()}; "
                                   f"fs.inotify.max_user_watches?)")
            self.wd[w] = i

    def _take(self, i, name, t):
        if name in self.seen[i] or not LTX_NAME.match(name):
            return True
        try:
            with open(os.path.join(self.dirs[i], name), "rb") as f:
                hdr = rb.parse_ltx_header(f.read(100))
        except FileNotFoundError:
            return True
        if hdr is None:
            return False
        self.seen[i].add(name)
        self.files[i].append((t, hdr))
        return True

    def run(self):
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        pending = set()
        try:
            while not self.stop_ev.is_set():
                poller.poll(20)
                t = time.time_ns()
                while True:
                    try:
                        buf = os.read(self.fd, 1 << 20)
                    except BlockingIOError:
                        break
                    pos = 0
                    while pos + 16 <= len(buf):
                        wd, _, _, ln = struct.unpack_from("iIII", buf, pos)
                        name = buf[pos + 16:pos + 16 + ln].split(b"\0", 1)[0].decode()
                        pos += 16 + ln
                        i = self.wd.get(wd)
                        if i is not None and not self._take(i, name, t):
                            pending.add((i, name))
                for item in list(pending):
                    if self._take(item[0], item[1], t):
                        pending.discard(item)
        finally:
            self.close_fd()

    def close_fd(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def finish(self):
        self.stop_ev.set()
        self.join()
        return self.files


# --------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------

class Tool:
    name = ""
    notify = False

    def config(self, work, dbs_dir, names, replica_root):
        raise NotImplementedError

    def argv(self, cfg):
        raise NotImplementedError

    def restore_argv(self, url, out):
        raise NotImplementedError


def litestream_dir_entry(dbs_dir, replica_root):
    return (f"  - dir: {dbs_dir}\n    pattern: \"*.db\"\n    recursive: false\n    watch: false\n"
            f"    replica:\n      type: file\n      path: {replica_root}\n")


def dbs_list(dbs_dir, names, replica_root):
    return "".join(f"  - path: {os.path.join(dbs_dir, n)}\n    replica:\n      type: file\n"
                   f"      path: {os.path.join(replica_root, n)}\n" for n in names)


class Litestream(Tool):
    def __init__(self, binary, form):
        self.binary = binary
        self.form = form
        self.name = f"litestream-{form}"

    def config(self, work, dbs_dir, names, replica_root):
        path = os.path.join(work, "litestream.yml")
        body = litestream_dir_entry(dbs_dir, replica_root) if self.form == "dir" else dbs_list(dbs_dir, names, replica_root)
        with open(path, "w") as f:
            f.write("dbs:\n" + body)
        return path

    def argv(self, cfg):
        return [self.binary, "replicate", "-config", cfg]

    def restore_argv(self, url, out):
        return [self.binary, "restore", "-o", out, url]


class Guardian(Tool):
    notify = True

    def __init__(self, binary, use_dir):
        self.binary = binary
        self.use_dir = use_dir
        self.name = "guardian-dir" if use_dir else "guardian"

    def config(self, work, dbs_dir, names, replica_root):
        path = os.path.join(work, "guardian.yml")
        body = litestream_dir_entry(dbs_dir, replica_root) if self.use_dir else dbs_list(dbs_dir, names, replica_root)
        with open(path, "w") as f:
            f.write(f"state-dir: {os.path.join(work, 'guardian-state')}\n"
                    f"status:\n  socket: {os.path.join(work, 'guardian.sock')}\n"
                    f"log:\n  target: stderr\n"
                    "dbs:\n" + body)
        return path

    def argv(self, cfg):
        return [self.binary, "run", "--config", cfg]

    def restore_argv(self, url, out):
        return [self.binary, "restore", "-o", out, url]


# --------------------------------------------------------------------------------------
# The databases: made once into a cache directory, copied for each run
# --------------------------------------------------------------------------------------

def db_name(i):
    return f"tenant-{i:05d}.db"


def ensure_cache(cache, n):
    """cache/tenant-00000.db … : idle WAL databases (table t, no rows, no -wal file),
    made by copying one template; kept between runs."""
    os.makedirs(cache, exist_ok=True)
    template = os.path.join(cache, "template.db")
    if not os.path.exists(template):
        rb.make_db(template + ".tmp")
        os.rename(template + ".tmp", template)
    have = 0
    while have < n and os.path.exists(os.path.join(cache, db_name(have))):
        have += 1
    if have < n:
        t0 = time.perf_counter()
        for i in range(have, n):
            shutil.copyfile(template, os.path.join(cache, db_name(i)))
        log(f"cache: made {n - have} databases in {cache} in {time.perf_counter() - t0:.1f}s")


def populate(cache, dbs_dir, n):
    os.makedirs(dbs_dir)
    for i in range(n):
        shutil.copyfile(os.path.join(cache, db_name(i)), os.path.join(dbs_dir, db_name(i)))
    return [db_name(i) for i in range(n)]


# --------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------

class Run:
    """One replicator over one directory of databases."""

    def __init__(self, tool, work, dbs_dir, names, replica_root):
        self.tool = tool
        self.work = work
        self.names = names
        self.replica_root = replica_root
        cfg = tool.config(work, dbs_dir, names, replica_root)
        env = rb.clean_env()
        self.listener = None
        if tool.notify:
            self.listener = NotifyListener(os.path.join(work, "notify.sock"))
            self.listener.start()
            env["NOTIFY_SOCKET"] = self.listener.path
        else:
            env.pop("NOTIFY_SOCKET", None)
        self.log_path = os.path.join(work, f"{tool.name}.log")
        self.logf = open(self.log_path, "w")
        self.t0 = time.perf_counter()
        self.proc = rb.spawn(tool.argv(cfg), stdout=self.logf, stderr=subprocess.STDOUT, env=env,
                             process_group=0)
        self.pid = self.proc.pid

    def log_tail(self, n=10):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except FileNotFoundError:
            return ""

    def ready_s(self):
        if self.listener is None or self.listener.ready_at is None:
            return None
        return self.listener.ready_at - self.t0

    def stop(self, timeout=120):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.close()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()
        if self.listener:
            self.listener.close()
            self.listener = None


def wait_ready(run, timeout):
    """(first LTX everywhere s, pending count)."""
    s, pending = first_ltx_all(run.names, run.replica_root, run.proc, run.t0, timeout)
    if s is None:
        why = "exited" if run.proc.poll() is not None else f"timed out after {timeout:.0f}s"
        raise RuntimeError(f"{run.tool.name} {why} with {pending} of {len(run.names)} databases "
                           f"without an LTX file:\n{run.log_tail()}")
    if run.tool.notify:
        deadline = time.perf_counter() + 30
        while run.ready_s() is None and time.perf_counter() < deadline and run.proc.poll() is None:
            time.sleep(0.01)
    return s


class Bench:
    def __init__(self, args):
        self.args = args
        q = args.quick
        ns = [int(x) for x in args.ns.split(",")] if args.ns else ([10, 100] if q else [10, 100, 1000, 10000])
        self.ns = [n for n in ns if n <= args.max_n]
        self.cfg = {
            "ns": self.ns,
            "settle_s": args.settle,
            "idle_window_s": args.idle_window or (5.0 if q else 20.0),
            "load_dbs": min(args.load_dbs or (100 if q else 1000), args.max_n),
            "load_writers": args.writers or (10 if q else 100),
            "load_rate": args.rate,
            "load_s": args.load_s or (8.0 if q else 30.0),
            "writers_per_process": 25,
        }
        self.root = args.workdir or tempfile.mkdtemp(prefix="guardian-scale-")
        os.makedirs(self.root, exist_ok=True)
        self.results = {"config": self.cfg, "env": {}, "idle": {}, "load": {}, "errors": {}}
        self.tools = []

    def setup(self):
        a = self.args
        wanted = [t.strip() for t in a.tools.split(",") if t.strip()]
        ls_bin = os.path.join(VENV, "bin", "litestream")
        if any(t.startswith("litestream") for t in wanted):
            if not os.access(ls_bin, os.X_OK):
                log("virtualenv missing: running scripts/install-deps.sh")
                subprocess.run([os.path.join(REPO, "scripts", "install-deps.sh")], check=True)
            v = subprocess.run([ls_bin, "version"], capture_output=True, text=True).stdout.strip()
            self.results["env"]["litestream"] = v
        for t in wanted:
            if t in ("litestream-dir", "litestream-dbs"):
                self.tools.append(Litestream(ls_bin, t.split("-")[1]))
            elif t == "guardian":
                g = os.path.abspath(a.guardian)
                if not os.access(g, os.X_OK):
                    log(f"guardian binary {g} missing: guardian not measured")
                    self.results["env"]["guardian"] = f"not available at {g}"
                    continue
                v = subprocess.run([g, "--version"], capture_output=True, text=True)
                self.results["env"]["guardian"] = (v.stdout or v.stderr).strip() + f" ({g})"
                self.tools.append(Guardian(g, a.guardian_dir))
            else:
                raise SystemExit(f"unknown tool {t} (litestream-dir, litestream-dbs, guardian)")
        self.results["env"].update({
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "mode": "quick" if a.quick else "full", "workdir": self.root,
            "loadavg_at_start": os.getloadavg(), "source": source_commit(),
        })
        need = max((self.ns if "idle" in self.phases() else []) + ([self.cfg["load_dbs"]] if "load" in self.phases() else []) + [1])
        ensure_cache(self.cache(), need)

    def cache(self):
        return os.path.abspath(self.args.cache)

    def phases(self):
        return [p.strip() for p in self.args.only.split(",")] if self.args.only else ["idle", "load"]

    def fresh(self, *parts):
        d = os.path.join(self.root, *parts)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    def done_with(self, d):
        if not self.args.keep:
            shutil.rmtree(d, ignore_errors=True)

    def attempt(self, key, fn):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - a failure of the tool under test is a result
            msg = f"{type(e).__name__}: {e}".strip()
            log(f"[{key}] FAILED: {msg}")
            self.results["errors"][key] = msg
            return None

    # ---- idle ----------------------------------------------------------------------
    def idle_one(self, tool, n):
        cfg = self.cfg
        work = self.fresh("idle", f"{tool.name}-{n}")
        dbs_dir = os.path.join(work, "dbs")
        t_copy = time.perf_counter()
        names = populate(self.cache(), dbs_dir, n)
        copy_s = time.perf_counter() - t_copy
        replica_root = os.path.join(work, "replica")
        os.makedirs(replica_root)
        run = Run(tool, work, dbs_dir, names, replica_root)
        try:
            first_all = wait_ready(run, timeout=max(120.0, n * 0.1))
            ready = run.ready_s()
            time.sleep(cfg["settle_s"])
            c0 = rb.proc_cpu_split(run.pid)
            t0 = time.perf_counter()
            threads, anon = [], []
            while time.perf_counter() - t0 < cfg["idle_window_s"]:
                m = rb.proc_mem_kb(run.pid)
                if "Threads" not in m:
                    raise RuntimeError(f"{tool.name} exited while idle:\n{run.log_tail()}")
                threads.append(m["Threads"])
                anon.append(m["RssAnon"])
                time.sleep(0.5)
            fds = proc_fds(run.pid)
            c1 = rb.proc_cpu_split(run.pid)
            wall = time.perf_counter() - t0
            if c0 is None or c1 is None:
                raise RuntimeError(f"{tool.name} exited while idle:\n{run.log_tail()}")
            r = {"n": n, "threads_max": max(threads), "threads_median": rb.median(threads),
                 "anon_kb_median": rb.median(anon), "anon_kb_max": max(anon),
                 "idle_user_pct": 100 * (c1[0] - c0[0]) / wall, "idle_sys_pct": 100 * (c1[1] - c0[1]) / wall,
                 "window_s": wall, "first_ltx_all_s": first_all, "ready_s": ready, "copy_s": copy_s,
                 "open_fds": fds[0], "inotify_instances": fds[1]}
            r["idle_cpu_pct"] = r["idle_user_pct"] + r["idle_sys_pct"]
            log(f"[idle] {tool.name} N={n}: {r['threads_max']} threads, RssAnon {r['anon_kb_median'] / 1024:.1f} MB, "
                f"CPU {r['idle_cpu_pct']:.2f} %, READY {fmt_s(ready)}, first LTX everywhere {fmt_s(first_all)}")
            run.stop()
            return r
        finally:
            run.close()
            self.done_with(work)

    def phase_idle(self):
        for tool in self.tools:
            res = self.results["idle"].setdefault(tool.name, {})
            for n in [1] + self.ns:  # N=1 is the tool's base
                r = self.attempt(f"idle {tool.name} N={n}", lambda: self.idle_one(tool, n))
                if r is None:
                    break  # a larger N will not do better
                res[str(n)] = r
            base = res.get("1")
            for k, r in res.items():
                if base and int(k) > 1:
                    r["anon_kb_per_db_above_base"] = (r["anon_kb_median"] - base["anon_kb_median"]) / (int(k) - 1)

    # ---- load ----------------------------------------------------------------------
    def load_one(self, tool):
        cfg = self.cfg
        n, w = cfg["load_dbs"], min(cfg["load_writers"], cfg["load_dbs"])
        work = self.fresh("load", tool.name)
        dbs_dir = os.path.join(work, "dbs")
        names = populate(self.cache(), dbs_dir, n)
        replica_root = os.path.join(work, "replica")
        os.makedirs(replica_root)
        # the writers: spread over the directory (every (n/w)-th database)
        step = max(1, n // w)
        widx = [k * step for k in range(w)]
        watcher = MultiL0Watcher()
        run = Run(tool, work, dbs_dir, names, replica_root)
        writers = []
        try:
            first_all = wait_ready(run, timeout=max(120.0, n * 0.1))
            time.sleep(cfg["settle_s"])
            watcher.watch({i: os.path.join(replica_root, names[i], "ltx", "0") for i in widx})
            watcher.start()
            per = cfg["writers_per_process"]
            records = []
            lock = threading.Lock()

            def reader(p):
                for line in p.stdout:
                    parts = line.split()
                    if len(parts) == 7:
                        rec = tuple(int(x) for x in parts)
                        with lock:
                            records.append(rec)
            readers = []
            cpu0 = rb.proc_cpu_split(run.pid)
            t_load = time.perf_counter()
            for g in range(0, len(widx), per):
                group = widx[g:g + per]
                argv = [sys.executable, os.path.abspath(__file__), "_writers", "--first-index", str(g),
                        "--rate", str(cfg["load_rate"]),
                        "--dbs", ",".join(os.path.join(dbs_dir, names[i]) for i in group)]
                p = rb.spawn(argv, stdout=subprocess.PIPE, text=True, process_group=run.pid)
                writers.append(p)
                th = threading.Thread(target=reader, args=(p,), daemon=True)
                th.start()
                readers.append(th)
            time.sleep(cfg["load_s"])
            cpu1 = rb.proc_cpu_split(run.pid)
            load_wall = time.perf_counter() - t_load
            alive = run.proc.poll() is None
            kill_ns = time.time_ns()
            os.killpg(run.pid, signal.SIGKILL)  # the replicator and every writer, in one instant
            for p in writers:
                p.wait(timeout=30)
            for th in readers:
                th.join(timeout=30)
            run.proc.wait(timeout=30)
            files = watcher.finish()
            if not alive:
                raise RuntimeError(f"{tool.name} exited during the load:\n{run.log_tail()}")
            # staleness over commits that returned at least 1 s before the kill
            cutoff = kill_ns - 1_000_000_000
            by_db = {}
            for rec in records:
                by_db.setdefault(rec[0], []).append(rec)
            samples, unmatched, considered = [], 0, 0
            for k, i in enumerate(widx):
                commits = [(x[3], x[4], x[5], x[6]) for x in by_db.get(k, []) if x[3] <= cutoff]
                considered += len(commits)
                st, um = rb.staleness_ms(commits, files[i])
                samples += st
                unmatched += um
            # crash loss: restore every written database, count its committed ids missing
            losses, failures, gaps = [], [], 0
            rdir = os.path.join(work, "restored")
            os.makedirs(rdir)
            t_rest = time.perf_counter()
            for k, i in enumerate(widx):
                db = os.path.join(dbs_dir, names[i])
                committed = max(rb.db_ids(db) or [0])
                out = os.path.join(rdir, names[i])
                url = "file://" + os.path.join(replica_root, names[i])
                r = subprocess.run(tool.restore_argv(url, out), capture_output=True, text=True, timeout=300,
                                   env=rb.clean_env())
                if r.returncode != 0:
                    failures.append(f"{names[i]}: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
                    continue
                have = set(rb.db_ids(out))
                missing = sum(1 for x in range(1, committed + 1) if x not in have)
                if have and max(have) > committed:
                    gaps += 1
                losses.append(missing)
                rb.rm_db(out)
            restore_s = time.perf_counter() - t_rest
            res = {
                "dbs": n, "writers": w, "rate": cfg["load_rate"], "load_s": load_wall,
                "first_ltx_all_s": first_all, "commits": len(records),
                "cpu_user_pct": None if cpu0 is None or cpu1 is None else 100 * (cpu1[0] - cpu0[0]) / load_wall,
                "cpu_sys_pct": None if cpu0 is None or cpu1 is None else 100 * (cpu1[1] - cpu0[1]) / load_wall,
                "staleness_commits": considered, "staleness_unmatched": unmatched,
                "staleness_p50_ms": rb.pct(samples, 0.5), "staleness_p90_ms": rb.pct(samples, 0.9),
                "staleness_p99_ms": rb.pct(samples, 0.99), "staleness_max_ms": max(samples) if samples else None,
                "loss_per_db": losses, "loss_max": max(losses) if losses else None,
                "loss_median": rb.median(losses), "loss_total": sum(losses),
                "dbs_losing_more_than_1": sum(1 for x in losses if x > 1),
                "restore_failures": failures, "restored_beyond_committed": gaps,
                "restore_all_s": restore_s,
            }
            log(f"[load] {tool.name}: {len(records)} commits over {w} databases; staleness p50/p90/max "
                f"{fmt_ms(res['staleness_p50_ms'])}/{fmt_ms(res['staleness_p90_ms'])}/{fmt_ms(res['staleness_max_ms'])} ms "
                f"({unmatched} of {considered} not seen); crash loss max {res['loss_max']} median {res['loss_median']} "
                f"({len(failures)} restores failed)")
            return res
        finally:
            for p in writers:
                if p.poll() is None:
                    p.kill()
            if not watcher.is_alive():
                watcher.close_fd()
            run.close()
            self.done_with(work)

    def phase_load(self):
        for tool in self.tools:
            # The run before (an idle point's thousands of databases and replica
            # files, deleted by this harness) leaves ext4 busy: without a journal
            # it skips recently freed inodes when it allocates (`recently_deleted`),
            # and the load's first files pay for the harness's deletions.
            os.sync()
            time.sleep(8)
            r = self.attempt(f"load {tool.name}", lambda: self.load_one(tool))
            if r is not None:
                self.results["load"][tool.name] = r

    def run(self):
        self.setup()
        t0 = time.time()
        for p in self.phases():
            {"idle": self.phase_idle, "load": self.phase_load}[p]()
        self.results["env"]["runtime_s"] = time.time() - t0
        self.results["env"]["loadavg_at_end"] = os.getloadavg()


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

def source_commit():
    """The last commit that changed guardian's sources (benchmark edits do not count)."""
    r = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h", "--", "Sources", "Package.swift"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def fmt_s(v):
    return "-" if v is None else f"{v:.2f} s"


def fmt_ms(v):
    return rb.fmt_ms(v)


def report(results):
    env, cfg = results["env"], results["config"]
    lines = [
        f"guardian scale benchmark ({env.get('mode')}), {env.get('date')}, {env.get('cpus')} CPUs, "
        f"kernel {env.get('kernel')}, SQLite {env.get('sqlite')}, load average at start "
        f"{' '.join(f'{x:.1f}' for x in env.get('loadavg_at_start', []))}",
        f"guardian: {env.get('guardian', 'not run')}, source {env.get('source')}. "
        + (f"Litestream {env['litestream']} at its defaults: `litestream-dir` from a `dir:` entry, "
           "`litestream-dbs` from a `dbs:` list." if env.get("litestream") else "Litestream: not run."),
        "Idle WAL databases (one table, no rows), one file replica each. Per db = (RssAnon at N − RssAnon "
        "with 1 database) / (N − 1).",
        "",
    ]
    idle = results["idle"]
    if idle:
        header = ["N", "tool", "threads", "RssAnon", "per db above base", "idle CPU (user + sys, % of a core)",
                  "start-up to READY", "until every db has an LTX file", "open fds (inotify instances)"]
        body = []
        for n in ["1"] + [str(x) for x in cfg["ns"]]:
            for tool, rs in idle.items():
                r = rs.get(n)
                if r is None:
                    err = results["errors"].get(f"idle {tool} N={n}")
                    if err:
                        body.append([n, tool, "FAILED: " + err.splitlines()[0][:60], "", "", "", "", "", ""])
                    continue
                per = r.get("anon_kb_per_db_above_base")
                body.append([
                    n, tool, str(r["threads_max"]), f"{r['anon_kb_median'] / 1024:.1f} MB",
                    "(base)" if n == "1" else ("-" if per is None else f"{per:.0f} kB"),
                    f"{r['idle_cpu_pct']:.2f} ({r['idle_user_pct']:.2f} + {r['idle_sys_pct']:.2f})",
                    fmt_s(r["ready_s"]) if r["ready_s"] is not None else "n/a", fmt_s(r["first_ltx_all_s"]),
                    f"{r.get('open_fds')} ({r.get('inotify_instances')})"])
        body.append(["1,000", "target (guardian)", "≤ 32", "", "≤ 100 kB", "≤ 1", "≤ 5 s", "", ""])
        lines += [f"Idle (CPU over {cfg['idle_window_s']:.0f} s after {cfg['settle_s']:.0f} s of settling):", ""]
        lines += rb.markdown_table(header, body)
    load = results["load"]
    if load:
        header = ["tool", "commits", "staleness p50 / p90 / max", "not seen", "crash loss per db: max / median",
                  "dbs losing > 1 tx", "restores failed", "replicator CPU (user + sys)", "until every db has an LTX file"]
        body = []
        for tool, r in load.items():
            body.append([
                tool, str(r["commits"]),
                f"{fmt_ms(r['staleness_p50_ms'])} / {fmt_ms(r['staleness_p90_ms'])} / {fmt_ms(r['staleness_max_ms'])} ms",
                f"{r['staleness_unmatched']} of {r['staleness_commits']}",
                f"{r['loss_max']} / {r['loss_median']}", str(r["dbs_losing_more_than_1"]),
                str(len(r["restore_failures"])),
                "-" if r["cpu_user_pct"] is None else f"{r['cpu_user_pct']:.1f} + {r['cpu_sys_pct']:.1f} %",
                fmt_s(r["first_ltx_all_s"])])
        body.append(["target (guardian)", "", "p90 ≤ 50 ms", "", "≤ 1", "0", "0", "", ""])
        first = next(iter(load.values()))
        lines += ["", f"Load: {first['dbs']} databases, {first['writers']} of them committing {first['rate']:g} tx/s "
                  f"each for {cfg['load_s']:.0f} s, then SIGKILL of the replicator and the writers; every written "
                  "database restored (staleness over commits ≥ 1 s before the kill):", ""]
        lines += rb.markdown_table(header, body)
    errs = [(k, e) for k, e in results["errors"].items()]
    if errs:
        lines.append("")
        for k, e in errs:
            lines.append(f"{k} failed: {e}")
    return "\n".join(lines)


def raise_open_files():
    """N = 10,000 takes 100,000 descriptors and more (Litestream's connections, guardian's):
    the harness raises its own limit (inherited by the tools) as far as the kernel allows
    (fs.nr_open, as root). Returns the soft limit now in force."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        nr_open = int(open("/proc/sys/fs/nr_open").read())
    except OSError:
        nr_open = hard
    for want in (max(hard, nr_open), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            continue
    return soft


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_writers":
        return writers_main(sys.argv[2:])
    raise_open_files()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N = 10, 100; load 100 databases / 10 writers for 8 s")
    p.add_argument("--ns", default="", help="comma list of N for the idle curve (default 10,100,1000,10000)")
    p.add_argument("--max-n", type=int, default=10000, help="skip every N above this (also caps the load's databases)")
    p.add_argument("--only", default="", help="comma list of phases: idle,load")
    p.add_argument("--tools", default="litestream-dir,litestream-dbs,guardian",
                   help="comma list (default litestream-dir,litestream-dbs,guardian)")
    p.add_argument("--guardian", default=os.path.join(REPO, ".build", "release", "guardian"),
                   help="guardian binary (default .build/release/guardian)")
    p.add_argument("--guardian-dir", action="store_true",
                   help="run guardian from a `dir:` entry (Litestream's key names) instead of a `dbs:` list")
    p.add_argument("--idle-window", type=float, default=0, help="seconds of idle CPU measurement (default 20; quick 5)")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds between every database's first LTX file and the idle window (default 3; "
                        "60 puts the window past guardian's first lease renewals, 31.5-47 s after start)")
    p.add_argument("--load-dbs", type=int, default=0, help="databases in the load test (default 1000; quick 100)")
    p.add_argument("--writers", type=int, default=0, help="databases that commit (default 100; quick 10)")
    p.add_argument("--rate", type=float, default=10.0, help="commits per second per writer (default 10)")
    p.add_argument("--load-s", type=float, default=0, help="seconds of load before the kill (default 30; quick 8)")
    p.add_argument("--cache", default=os.path.join(REPO, "bench-out", "scale-cache"),
                   help="where the idle databases are made once (default bench-out/scale-cache)")
    p.add_argument("--json", default=os.path.join(REPO, "bench-out", "scale.json"),
                   help="where to write the raw figures (default bench-out/scale.json)")
    p.add_argument("--workdir", default="", help="scratch directory (default: a new one under $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep databases, replicas and logs")
    args = p.parse_args()

    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    ok = False
    try:
        bench.run()
        ok = True
    finally:
        rb.kill_children()
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
