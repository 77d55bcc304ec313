#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Python iteration over quai.Stream against `quai stage`, side by side.

    bench/python_iter.py DATASET [--batch N] [--runs N] [--pinned SIZE] ...

Streams --epochs epochs of DATASET with quai.Stream in this process (touching one
byte of each batch, as a consumer that hands the batch on would) and with
`quai stage --json` (the C loop over the same API), with the same options,
alternately, --runs times each after one warm-up of each, and prints both
rates (MB/s of records delivered; the median and the range), the ratio of
the medians and of each pair of neighbouring runs, and the CPU time per GB
of each (all threads: a figure less disturbed by other load on the machine). Both time the same thing: from opening the stream to the end
of the epoch, on a context created beforehand.

The quai binary is $QUAI_BIN, else build/release/tools/quai; the library is
found as `import quai` finds it ($QUAI_LIB, else the build tree).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
import quai  # noqa: E402


def size(text):
    units = {"": 1, "K": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MIB": 1 << 20, "G": 1 << 30,
             "GIB": 1 << 30}
    t = text.strip().upper()
    num = t.rstrip("KMGIB")
    return int(num) * units[t[len(num):]]


def run_python(a):
    ctx = quai.Context(pinned_bytes=a.pinned, workers=a.workers or None)
    try:
        nbytes = nrec = 0
        touched = 0
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        for e in range(a.epoch, a.epoch + a.epochs):
            with quai.Stream(a.dataset, context=ctx, seed=a.seed, epoch=e, batch=a.batch,
                             prefetch=a.prefetch or None, keep_tail=a.keep_tail) as s:
                for b in s:
                    touched += int(b.data[0])  # one byte of each batch, via a numpy view
                    nbytes += b.nbytes
                    nrec += b.count
        dt = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        ctx.close()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return {"mb_per_s": nbytes / 1e6 / dt, "bytes": nbytes, "records": nrec, "seconds": dt,
            "cpu_s": cpu}


def run_stage(a):
    argv = [a.quai, "stage", "--json", "--seed", str(a.seed), "--epoch", str(a.epoch),
            "--epochs", str(a.epochs),
            "--batch", str(a.batch), "--pinned", str(a.pinned)]
    if a.workers:
        argv += ["--workers", str(a.workers)]
    if a.prefetch:
        argv += ["--prefetch", str(a.prefetch)]
    if a.keep_tail:
        argv += ["--keep-tail"]
    p = subprocess.run(argv + [a.dataset], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode:
        sys.exit("bench_iter: %s failed (%d): %s" % (" ".join(argv), p.returncode,
                                                     p.stderr.decode(errors="replace")))
    return json.loads(p.stdout)


def main():
    repo = os.path.dirname(HERE)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--batch", type=int, default=256, help="records per batch (256)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epoch", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=4, help="epochs per run (4)")
    ap.add_argument("--runs", type=int, default=7, help="measured runs of each (7)")
    ap.add_argument("--pinned", type=size, default=512 << 20, help="pinned pool (512MiB)")
    ap.add_argument("--workers", type=int, default=0, help="decompression threads (cores)")
    ap.add_argument("--prefetch", type=int, default=0, help="batches ahead (4)")
    ap.add_argument("--keep-tail", action="store_true")
    ap.add_argument("--quai", default=os.environ.get("QUAI_BIN") or
                    os.path.join(repo, "build", "release", "tools", "quai"))
    a = ap.parse_args()

    print("bench_iter: %s, batch %d, %d runs of each, libquai %s (%s)" %
          (a.dataset, a.batch, a.runs, quai.version(), quai.lib_path), file=sys.stderr)
    run_stage(a)  # warm-up: page cache, huge pages
    run_python(a)
    py, c, pycpu, ccpu = [], [], [], []
    for i in range(a.runs):
        # alternate, and alternate who goes first, so drift hits both alike
        first, second = (run_python, run_stage) if i % 2 == 0 else (run_stage, run_python)
        r1, r2 = first(a), second(a)
        rp, rc = (r1, r2) if first is run_python else (r2, r1)
        if rp["bytes"] != rc["bytes"] or rp["records"] != rc["records"]:
            sys.exit("bench_iter: the two delivered different epochs (%d vs %d bytes)" %
                     (rp["bytes"], rc["bytes"]))
        py.append(rp["mb_per_s"])
        c.append(rc["mb_per_s"])
        # CPU seconds per GB delivered, all threads of the process: what the
        # binding adds, less disturbed by other load on the machine than wall time
        pycpu.append(rp["cpu_s"] / (rp["bytes"] / 1e9))
        ccpu.append((rc["user_s"] + rc["sys_s"]) / (rc["bytes"] / 1e9))
        print("  run %d: python %.1f MB/s, quai stage %.1f MB/s" % (i + 1, py[-1], c[-1]),
              file=sys.stderr)
        sys.stderr.flush()
    mp, mc = statistics.median(py), statistics.median(c)
    print("dataset       %s: %d epochs of %d records, %.1f MiB per run, batch %d" %
          (a.dataset, a.epochs, rp["records"] // a.epochs, rp["bytes"] / (1 << 20), a.batch))
    print("quai.Stream   %.1f MB/s  (median of %d, %.1f-%.1f)" % (mp, a.runs, min(py), max(py)))
    print("quai stage    %.1f MB/s  (median of %d, %.1f-%.1f)" % (mc, a.runs, min(c), max(c)))
    pairs = sorted(p / q for p, q in zip(py, c))
    print("ratio         %.3f  (python / C, of the medians); per run pair: median %.3f, "
          "%.3f-%.3f" % (mp / mc, statistics.median(pairs), pairs[0], pairs[-1]))
    print("cpu per GB    python %.3f s, quai stage %.3f s (medians; all threads)" %
          (statistics.median(pycpu), statistics.median(ccpu)))


if __name__ == "__main__":
    main()
