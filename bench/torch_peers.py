#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A PyTorch user's row: quai's loader against the peers that can be had
here, on the same records, side by side.

    bench/torch_peers.py DATASET --raw RAWFILE [--batch 256] [--runs 3]
                         [--workers 2] [--random 500] [--window N]

DATASET is a `fixed` quai dataset packed from RAWFILE (the raw records back
to back). Each loader runs in a fresh process (so that its peak RSS and its
time to first batch, from the start of the process's main after imports,
are its own), the loaders alternating, --runs times each; the median and
range of each figure are printed, and the ratios against quai's.

- quai: quai.torch.QuaiDataset in a torch DataLoader, num_workers=0, every
  default (the process's default context, lazy pool), reading one element of
  each (zero-copy) batch tensor. Its RSS includes torch's (import torch
  alone is about 230 MiB here), which the other loaders do not import.
- quai-np: quai.Stream with every default, batch.records() views (numpy):
  the same work without torch, the like of pyloader and memmap.
- pyloader: bench/pyloader.py, the Python loader a team would write over
  the same shards (zstandard in --workers processes, batches pickled back
  through a queue, as a DataLoader with workers); RSS is the sum of its
  processes' peaks.
- memmap: numpy.memmap of RAWFILE (the records uncompressed, from the page
  cache), each batch a fancy-indexed copy of --batch random records in a
  shuffled epoch order. Its RSS counts the file pages it mapped.
- map-style: quai.Dataset[i] (one frame decoded per record) and
  quai.torch.QuaiMapDataset with a FrameSampler order, records per second
  (--random records for the former, a whole epoch for the latter).

WebDataset and Mosaic Streaming are printed as not run: Debian 12 packages
neither (`apt-cache search webdataset`, `apt-cache search mosaicml`), and
these runs take nothing from other registries.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    [os.path.join(os.path.dirname(HERE), "python"), os.environ.get("PYTHONPATH", "")]))

QUAI = r"""
import json, resource, sys, time
import torch
from quai.torch import QuaiDataset
t0 = time.perf_counter()
kw = {"window": int(sys.argv[3])} if int(sys.argv[3]) else {}
ds = QuaiDataset(sys.argv[1], rank=0, world=1, batch=int(sys.argv[2]), seed=1, **kw)
ttfb, n, nb = None, 0, 0
for x in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0):
    if ttfb is None:
        ttfb = time.perf_counter() - t0
    int(x[0, 0])
    n += x.shape[0]
    nb += x.numel() * x.element_size()
wall = time.perf_counter() - t0
print(json.dumps({"records": n, "bytes": nb, "ttfb_s": ttfb, "wall_s": wall,
                  "rss_sum_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

QUAI_NUMPY = r"""
import json, resource, sys, time
import quai
t0 = time.perf_counter()
ttfb, n, nb = None, 0, 0
kw = {"window": int(sys.argv[3])} if int(sys.argv[3]) else {}
for b in quai.Stream(sys.argv[1], batch=int(sys.argv[2]), seed=1, **kw):
    x = b.records()
    if ttfb is None:
        ttfb = time.perf_counter() - t0
    int(x[0, 0])
    n += b.count
    nb += b.nbytes
    del x, b
wall = time.perf_counter() - t0
print(json.dumps({"records": n, "bytes": nb, "ttfb_s": ttfb, "wall_s": wall,
                  "rss_sum_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

MEMMAP = r"""
import json, resource, sys, time
import numpy as np
t0 = time.perf_counter()
rs, batch = int(sys.argv[3]), int(sys.argv[2])
mm = np.memmap(sys.argv[1], dtype=np.uint8, mode="r")
recs = mm[: len(mm) // rs * rs].reshape(-1, rs)
order = np.random.default_rng(1).permutation(len(recs))
ttfb, n, nb = None, 0, 0
for k in range(0, len(order) - batch + 1, batch):
    x = recs[np.sort(order[k:k + batch])]
    if ttfb is None:
        ttfb = time.perf_counter() - t0
    int(x[0, 0])
    n += len(x)
    nb += x.nbytes
wall = time.perf_counter() - t0
print(json.dumps({"records": n, "bytes": nb, "ttfb_s": ttfb, "wall_s": wall,
                  "rss_sum_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

MAP = r"""
import json, random, sys, time
import quai, quai.torch
p, n = sys.argv[1], int(sys.argv[2])
d = quai.Dataset(p)
rng = random.Random(1)
idx = [rng.randrange(len(d)) for _ in range(n)]
t = time.perf_counter()
for i in idx:
    d[i]
a = n / (time.perf_counter() - t)
m = quai.torch.QuaiMapDataset(p)
order = list(quai.torch.FrameSampler(m, seed=1, rank=0, world=1))
t = time.perf_counter()
for i in order:
    m[i]
b = len(order) / (time.perf_counter() - t)
mu = quai.torch.QuaiMapDataset(p)
t = time.perf_counter()
for i in idx:
    mu[i]
c = n / (time.perf_counter() - t)
print(json.dumps({"dataset_random": a, "map_frame_sampler": b, "map_uniform_random": c,
                  "map_uniform_hit_rate": mu.hits / (mu.hits + mu.misses)}))
"""


def run(argv):
    p = subprocess.run(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=1800)
    if p.returncode != 0:
        raise SystemExit("%s failed: %s" % (argv[:3], p.stderr.decode()[-2000:]))
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def med(xs):
    return statistics.median(xs), min(xs), max(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--raw", required=True)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--random", type=int, default=500)
    ap.add_argument("--window", type=int, default=0,
                    help="quai's shuffle window in frames (0: the default)")
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
    import quai
    with quai.Dataset(a.dataset) as d:
        info = d.info()
    rs = info["fixed_size"]
    loaders = {
        "quai": [PY, "-c", QUAI, a.dataset, str(a.batch), str(a.window)],
        "quai-np": [PY, "-c", QUAI_NUMPY, a.dataset, str(a.batch), str(a.window)],
        "pyloader": [PY, os.path.join(HERE, "pyloader.py"), a.dataset, "--workers",
                     str(a.workers), "--batch", str(a.batch)],
        "memmap": [PY, "-c", MEMMAP, a.raw, str(a.batch), str(rs)],
    }
    res = {k: [] for k in loaders}
    for _ in range(a.runs):
        for k, argv in loaders.items():
            res[k].append(run(argv))
    print("%d records of %d bytes, batch %d, quai window %s, %d runs each, alternating "
          "(median, range)" % (info["records"], rs, a.batch, a.window or "default", a.runs))
    q = {}
    for k, rows in res.items():
        rate = [r["records"] / r["wall_s"] for r in rows]
        ttfb = [r["ttfb_s"] * 1000 for r in rows]
        rss = [r["rss_sum_bytes"] / (1 << 20) for r in rows]
        q[k] = (med(rate)[0], med(ttfb)[0], med(rss)[0])
        print("%-9s %9.0f rec/s (%.0f-%.0f)  first batch %7.1f ms (%.1f-%.1f)  "
              "peak RSS %6.1f MiB (%.1f-%.1f)" % ((k,) + med(rate) + med(ttfb) + med(rss)))
    for mine, k in (("quai", "pyloader"), ("quai-np", "pyloader"), ("quai", "memmap"),
                    ("quai-np", "memmap")):
        print("%-7s vs %-8s rate %.2fx, first batch %.2fx, RSS %.2fx (%s/%s)" % (
            mine, k, q[mine][0] / q[k][0], q[mine][1] / q[k][1], q[mine][2] / q[k][2], mine,
            k))
    print("webdataset, mosaic streaming: not run (not packaged in Debian 12)")
    m = run([PY, "-c", MAP, a.dataset, str(a.random)])
    print("map-style: quai.Dataset[i] random %.0f rec/s; QuaiMapDataset, uniform random %.0f "
          "rec/s (cache hit rate %.2f), FrameSampler order %.0f rec/s: %.1fx Dataset[i]" % (
              m["dataset_random"], m["map_uniform_random"], m["map_uniform_hit_rate"],
              m["map_frame_sampler"], m["map_frame_sampler"] / m["dataset_random"]))


if __name__ == "__main__":
    main()
