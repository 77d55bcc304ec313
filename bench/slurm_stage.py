#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""bench/slurm_stage.py: time from `sbatch` to a job's first batch, for a
dataset staged in by quai's burst_buffer.lua before the job starts, against
the same job pulling the dataset itself after it starts (issue 20).

    QUAI_BIN=build/release/tools/quai bench/slurm_stage.py [--size-mib 1024] [--runs 1]
                                                           [--io-rate 1gbit]

Runs on the virtual cluster (tests/cluster: root, namespaces, Slurm 22.05,
munged); all traffic stays on its veths. Each run submits both jobs, one
after the other, as quaibb-alice; the dataset (incompressible records of
64 KiB) is served by quaid on io1. For each job it prints:

  sbatch->first  seconds from sbatch to the job's first batch
  sbatch->start  seconds from sbatch to the job's start (nodes allocated)
  start->first   seconds the job held its nodes before its first batch:
                 the allocation burned waiting for data

and writes them as JSON to bench/results/slurm-stage-<UTC>.json.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))

from conftest import Site  # noqa: E402 (tests/cluster/conftest.py)
from vcluster import Cluster, slurm_skip_reason  # noqa: E402

FIRST_PY = r'''
import json, sys, time
import quai
ctx = quai.Context(pinned_bytes=6 << 20)  # within the default RLIMIT_MEMLOCK
with quai.Stream(sys.argv[1], batch=8, shuffle=False, prefetch=1, window=1,
                 context=ctx) as s:
    b = next(iter(s))
    first = time.time()
    n = len(b)
    b.release()
print(json.dumps({"start": float(sys.argv[2]), "first": first, "records": n}))
'''


def pack_big(site, name, size_mib):
    src = os.path.join(site.c.dir, "src-" + name)
    with open(src, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
    dest = os.path.join(site.roots, name)
    subprocess.run([site.quai, "pack", "-q", "--records", "fixed:65536", "--level", "1",
                    "--frame-size", "1M", "--class", "internal", "--zone", "z1", src, dest],
                   check=True, env=dict(os.environ, LC_ALL="C",
                                        QUAI_CONF=os.path.join(site.c.dir, "pack.conf")),
                   stdin=subprocess.DEVNULL)
    os.unlink(src)
    for dirpath, dirs, files in os.walk(dest):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    for node, what, p in site.c.procs:
        if node == "io1" and what == "quaid":
            p.send_signal(1)  # SIGHUP: re-read the roots
    time.sleep(0.5)
    return dest


def run_job(site, mode, uri, first_py):
    if mode == "staged":
        directives = ["quai pull %s $QUAI_STAGE/big" % uri]
        body = ('T=$(date +%%s.%%N)\n/usr/bin/python3 %s "$QUAI_STAGE/big" "$T"\n' % first_py)
    else:
        directives = []
        body = ('T=$(date +%%s.%%N)\nD=%s/pull-$SLURM_JOB_ID\n'
                '%s pull -q %s "$D" || exit 1\n/usr/bin/python3 %s "$D" "$T"\n'
                'rm -rf "$D"\n' % (site.jobs, site.quai, uri, first_py))
    t0 = time.time()
    if directives:
        rc, jid, err = site.sbatch(site.alice, body, directives, name=mode)
    else:
        rc, jid, err = site.sbatch(site.alice, body, name=mode)
    if rc != 0:
        raise SystemExit("sbatch (%s) failed: %s" % (mode, err))
    deadline = time.time() + 900
    while time.time() < deadline:
        j = site.job(jid)
        if j.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            break
        time.sleep(0.1)
    out = site.output(jid) or ""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if j.get("JobState") != "COMPLETED" or not lines:
        raise SystemExit("job %s (%s) did not complete: %s\n%s" % (jid, mode, j.get("JobState"),
                                                                   out))
    r = json.loads(lines[-1])
    return {"mode": mode, "job": jid, "sbatch_to_first_s": r["first"] - t0,
            "sbatch_to_start_s": r["start"] - t0, "start_to_first_s": r["first"] - r["start"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--io-rate", default=None,
                    help="shape io1's link to this rate (tc tbf), e.g. 1gbit")
    a = ap.parse_args()
    why = slurm_skip_reason()
    if why:
        raise SystemExit("slurm_stage: cannot run here: " + why)
    quai = os.path.abspath(os.environ.get("QUAI_BIN", os.path.join(ROOT, "build", "release",
                                                                   "tools", "quai")))
    shape = {}
    if a.io_rate:
        shape["io1"] = "tbf rate %s burst 1mbit latency 100ms" % a.io_rate
    c = Cluster(computes=2, ios=("io1", "io2"), shape=shape)
    c.start()
    if c.notes:
        print("\n".join(c.notes), file=sys.stderr)
    try:
        site = Site(c, quai).start()
        print("packing %d MiB ..." % a.size_mib, file=sys.stderr)
        pack_big(site, "big", a.size_mib)
        first_py = os.path.join(site.jobs, "first.py")
        with open(first_py, "w") as f:
            f.write(FIRST_PY)
        os.chmod(first_py, 0o644)
        uri = "quai://%s/big" % site.io1
        rows = []
        for i in range(a.runs):
            for mode in ("staged", "in-job"):
                r = run_job(site, mode, uri, first_py)
                r["run"] = i
                rows.append(r)
                print("%-7s job %-3s sbatch->first %6.2f s  sbatch->start %6.2f s  "
                      "start->first %6.2f s" % (mode, r["job"], r["sbatch_to_first_s"],
                                                r["sbatch_to_start_s"], r["start_to_first_s"]))
                sys.stdout.flush()
        stamp = datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        path = os.path.join(ROOT, "bench", "results", "slurm-stage-%s.json" % stamp)
        with open(path, "w") as f:
            json.dump({"size_mib": a.size_mib, "io_rate": a.io_rate, "rows": rows,
                       "host": os.uname().nodename}, f, indent=1)
        print("written to", path, file=sys.stderr)
    finally:
        c.stop()


if __name__ == "__main__":
    main()
