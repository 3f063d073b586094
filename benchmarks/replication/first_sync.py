#!/usr/bin/env python3
"""First full sync of a database, next to cp (issue 13).

For each size: makes a WAL database with bench.py's make_big_db, then, alternating
runs, times `cp` (+ fsync) of it and `guardian replicate DB file://REPLICA` from its
start until the first L0 file (the full image) is renamed into place on a fresh
file replica, with guardian's CPU (user, sys) at that moment and the time from
"database opened" to "snapshot written" in its log (compressing and staging the
image; the rest is the copy into the replica, its fsync and rename).

    benchmarks/replication/first_sync.py [--guardian PATH] [--mb 100,1024] [--runs 3]

Page cache warm, as in bench.py. Prints medians and every run; run on an idle host.
"""
import argparse
import datetime
import glob
import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def bench_module():
    spec = importlib.util.spec_from_file_location("bench", os.path.join(HERE, "bench.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cp_run(src, out):
    if os.path.exists(out):
        os.unlink(out)
    t0 = time.perf_counter()
    subprocess.run(["cp", src, out], check=True)
    t1 = time.perf_counter()
    fd = os.open(out, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    t2 = time.perf_counter()
    os.unlink(out)
    return t1 - t0, t2 - t0


def log_time(line):
    return datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))


def sync_run(guardian, src, work):
    d = os.path.join(work, "run")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    db, replica = os.path.join(d, "app.db"), os.path.join(d, "replica")
    shutil.copyfile(src, db)
    log_path = os.path.join(d, "guardian.log")
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        p = subprocess.Popen([guardian, "replicate", db, "file://" + replica], stdout=log, stderr=subprocess.STDOUT)
        while not glob.glob(replica + "/ltx/0/*.ltx"):
            if p.poll() is not None:
                raise RuntimeError(open(log_path).read())
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        with open(f"/proc/{p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        user, sys_ = int(fields[11]) / tick, int(fields[12]) / tick
        p.terminate()
        p.wait()
    stamps = {}
    for line in open(log_path):
        m = re.search(r"(database opened|snapshot written)", line)
        if m and m.group(1) not in stamps:
            stamps[m.group(1)] = log_time(line)
    encode = None
    if len(stamps) == 2:
        encode = (stamps["snapshot written"] - stamps["database opened"]).total_seconds()
    return wall, user, sys_, encode


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guardian", default=os.path.join(REPO, ".build", "release", "guardian"))
    ap.add_argument("--mb", default="100,1024")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    bench = bench_module()
    work = tempfile.mkdtemp(prefix="first-sync-")
    try:
        for mb in [int(x) for x in a.mb.split(",")]:
            src = os.path.join(work, f"src-{mb}.db")
            bench.make_big_db(src, mb * 1024 * 1024)
            cps, cpsyncs, runs = [], [], []
            for _ in range(a.runs):
                c, cs = cp_run(src, os.path.join(work, "copy.db"))
                cps.append(c)
                cpsyncs.append(cs)
                runs.append(sync_run(a.guardian, src, work))
            walls = [r[0] for r in runs]
            med = statistics.median(walls)
            print(f"{os.path.getsize(src) / 1e6:.0f} MB: first full sync {med:.2f}s median "
                  f"({med / statistics.median(cps):.1f}× cp {statistics.median(cps):.2f}s, "
                  f"{med / statistics.median(cpsyncs):.1f}× cp+fsync {statistics.median(cpsyncs):.2f}s)")
            for (wall, user, sys_, encode), c, cs in zip(runs, cps, cpsyncs):
                enc = "-" if encode is None else f"{encode:.2f}s"
                print(f"    run: {wall:.2f}s (image {enc}), CPU {user:.2f}u + {sys_:.2f}s; cp {c:.2f}s, cp+fsync {cs:.2f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
