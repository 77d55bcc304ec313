#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Elastic epochs, measured (issue 18): read amplification across the ranks
of an epoch, and shuffle quality beside a full random permutation and
Mosaic Streaming's default shuffle.

    bench/epoch.py DATASET [--quai BIN] [--worlds 1,6,24,64] [--world 6]
                   [--batch 256] [--pinned 192M]

Reads: for each world W, `quai stage --json --world W --rank r` for every
rank r, one after the other, and the sums of the engine's own counters
(frames_read, bytes_read, from quai_stream_stats()) over the ranks, against
world 1's (every frame once).

Shuffle (docs/STAGING.md, "Shuffle quality"), for rank 0 of `--world`
ranks, batches of `--batch` records:
  - distinct frames per batch: the mean number of distinct dataset frames
    the records of a batch come from;
  - mean distance: the mean |id[k+1] - id[k]| between consecutive records
    of the rank, as a fraction of the dataset's records.
quai's figures come from its engine (quai.Stream ids through libquai);
"random" is a full random permutation (numpy, seed 1), dealt to the ranks
batch by batch; "mosaic py1e" is Mosaic Streaming's default shuffle
(shuffle_algo py1e, shuffle_block_size max(4,000,000 / nodes, 2^18)
samples, one node) computed here from its documented algorithm, not by
running Mosaic: its shards (64 MiB of records, its default size_limit) in a
random order, each shard's samples placed at random in a range of
shuffle_block_size positions centred on the shard's place, then sorted;
the ranks take batches in turn.
Prints a table and, with --json, one JSON object.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))


def stage(quai, ds, world, rank, pinned):
    p = subprocess.run([quai, "stage", "--json", "--keep-tail", "--seed", "1", "--world",
                        str(world), "--rank", str(rank), "--pinned", pinned, "--unlocked-ok",
                        ds], capture_output=True, check=False)
    if p.returncode:
        raise SystemExit("quai stage failed: %s" % p.stderr.decode(errors="replace"))
    return json.loads(p.stdout)


def frame_map(d):
    """The frame of every record, as an array (frames found by bisection on
    locate(): O(frames log records) calls)."""
    n = len(d)
    out = np.empty(n, dtype=np.int64)
    i, f = 0, 0
    while i < n:
        loc = d.locate(i)
        key = (loc.shard, loc.frame)
        lo, hi = i, n  # the last record of this frame is in [lo, hi)
        step = 1
        while lo + step < n and (lambda l: (l.shard, l.frame))(d.locate(lo + step)) == key:
            lo += step
            step *= 2
        hi = min(n, lo + step)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            l2 = d.locate(mid)
            if (l2.shard, l2.frame) == key:
                lo = mid
            else:
                hi = mid
        out[i:lo + 1] = f
        i, f = lo + 1, f + 1
    return out, f


def quality(seq, frame_of, batch, n):
    nb = len(seq) // batch
    distinct = [len(set(frame_of[seq[b * batch:(b + 1) * batch]].tolist())) for b in range(nb)]
    s = np.asarray(seq, dtype=np.int64)
    dist = float(np.mean(np.abs(np.diff(s)))) / n if len(s) > 1 else 0.0
    return float(np.mean(distinct)) if distinct else 0.0, dist


def deal(order, world, rank, batch):
    """Rank `rank`'s records when the ranks take batches of a global order in
    turn."""
    out = []
    for b in range(rank * batch, len(order), world * batch):
        out.extend(order[b:b + batch])
    return out


def mosaic_py1e(n, record_bytes, rng, nodes=1):
    per_shard = max(1, (64 << 20) // max(1, record_bytes))
    shards = [(s, min(per_shard, n - s)) for s in range(0, n, per_shard)]
    block = max(4000000 // nodes, 1 << 18)
    order = rng.permutation(len(shards))
    keys, ids, at = [], [], 0
    for k in order:
        start, size = shards[k]
        centre = at + size / 2
        keys.append(centre + rng.uniform(-block / 2, block / 2, size))
        ids.append(np.arange(start, start + size))
        at += size
    keys, ids = np.concatenate(keys), np.concatenate(ids)
    return ids[np.argsort(keys, kind="stable")].tolist()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--quai", default=os.environ.get("QUAI_BIN") or
                    os.path.join(ROOT, "build", "release", "tools", "quai"))
    ap.add_argument("--worlds", default="1,6,24,64")
    ap.add_argument("--world", type=int, default=6)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--pinned", default="192M")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res = {"dataset": a.dataset, "reads": [], "shuffle": {}}

    base = None
    for w in [int(x) for x in a.worlds.split(",")]:
        frames = read = records = 0
        for r in range(w):
            j = stage(a.quai, a.dataset, w, r, a.pinned)
            frames += j["frames_read"]
            read += j["bytes_read"]
            records += j["records"]
        if base is None:
            base = (frames, read, records)
        res["reads"].append(dict(world=w, frames_read=frames, bytes_read=read, records=records,
                                 frames_x=frames / base[0], bytes_x=read / base[1]))

    import quai
    with quai.Dataset(a.dataset) as d:
        frame_of, nframes = frame_map(d)
        n = len(d)
        info = d.info()
    rb = max(1, info.get("raw_bytes", n) // max(n, 1))
    ctx = quai.Context(pinned_bytes=int(a.pinned[:-1]) << 20 if a.pinned.endswith("M")
                       else int(a.pinned), unlocked_ok=True)
    ids = []
    with quai.Stream(a.dataset, context=ctx, rank=0, world=a.world, seed=1,
                     batch=a.batch) as s:
        for b in s:
            ids.extend(b.ids.tolist())
    ctx.close()
    rng = np.random.default_rng(1)
    rand = deal(rng.permutation(n).tolist(), a.world, 0, a.batch)
    mos = deal(mosaic_py1e(n, rb, rng), a.world, 0, a.batch)
    for name, seq in (("quai", ids), ("random", rand), ("mosaic py1e", mos)):
        df, dist = quality(seq, frame_of, a.batch, n)
        res["shuffle"][name] = dict(distinct_frames=df, mean_distance=dist)
    res["frames"], res["records"] = int(nframes), n

    if a.json:
        print(json.dumps(res))
        return
    print("dataset %s: %d records in %d frames" % (a.dataset, n, nframes))
    print("%-8s %12s %10s %14s %10s %10s" % ("world", "frames read", "x world 1", "bytes read",
                                               "x world 1", "records"))
    for r in res["reads"]:
        print("%-8d %12d %10.4f %14d %10.4f %10d" % (r["world"], r["frames_read"], r["frames_x"],
                                                   r["bytes_read"], r["bytes_x"], r["records"]))
    print("shuffle, rank 0 of %d, batches of %d:" % (a.world, a.batch))
    for name, q in res["shuffle"].items():
        print("  %-12s distinct frames per batch %6.2f   mean distance %.4f" %
              (name, q["distinct_frames"], q["mean_distance"]))


if __name__ == "__main__":
    main()
