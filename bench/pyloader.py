#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The peer a team would write today: a Python loader over quai's shards.

It reads nothing of quai but the files: manifest.json for the shard list and
record kind, the Zstandard seekable-format seek table at the end of each shard
to find the frames, and (for records of varying size) the record ends in the
shard's .idx file. It decompresses frames with the `zstandard` module in N
worker processes and collates batches with numpy, the way a PyTorch DataLoader
with an IterableDataset and num_workers=N does (frames dealt round-robin to
the workers, batches pickled back through a bounded queue of 2*N, i.e.
prefetch_factor=2).

Batches: fixed-size records become a (B, record_size) uint8 array (uint16
tokens are a view of it); records of varying size (lines, files) become a
ragged batch (one flat uint8 array + int64 end offsets). A batch never mixes
workers; a worker's last batch may be short (drop_last=False).

Prints one JSON line: records and bytes delivered, batches, time to first
batch (from the start of main, after imports), wall time, and the sum of the
peak RSS of the main process and every worker.

Usage: pyloader.py DATASET [--workers N] [--batch B]
"""

import argparse
import json
import multiprocessing as mp
import os
import queue
import resource
import struct
import sys
import time

import numpy as np
import zstandard

SKIPPABLE_MAGIC = 0x184D2A5E
SEEKABLE_MAGIC = 0x8F92EAB1


def read_seek_table(path):
    """[(offset, csize, rsize)] for every frame of a seekable-format file."""
    with open(path, 'rb') as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size < 17:
            raise ValueError(f'{path}: too small for a seek table')
        f.seek(size - 9)
        nframes, desc, magic = struct.unpack('<IBI', f.read(9))
        if magic != SEEKABLE_MAGIC:
            raise ValueError(f'{path}: no seekable-format footer')
        esize = 12 if desc & 0x80 else 8
        tsize = 8 + nframes * esize + 9
        f.seek(size - tsize)
        table = f.read(tsize)
    smagic, fsize = struct.unpack_from('<II', table, 0)
    if smagic != SKIPPABLE_MAGIC or fsize != tsize - 8:
        raise ValueError(f'{path}: bad seek table header')
    frames, off = [], 0
    for i in range(nframes):
        csize, rsize = struct.unpack_from('<II', table, 8 + i * esize)
        frames.append((off, csize, rsize))
        off += csize
    if off != size - tsize:
        raise ValueError(f'{path}: frames do not end where the seek table begins')
    return frames


def read_index(idx_path, nframes):
    """(fixed_size, ends) from a shard's .idx: fixed_size is the record size
    when every record has it (ends is then None), else ends holds, per
    frame, the records' end offsets inside the frame.

    Layout (docs/FORMAT.md, "The record index"), little-endian: a 64-byte
    header (magic "QUAIIDX\\0", version u32, flags u32, records u64, frames
    u32, fixed_size u32, first_record u64, raw_bytes u64, shard_bytes u64,
    names_bytes u64), one 40-byte entry per frame (its record count is the
    u32 at byte 20 of the entry), then with flag 0x1 one u32 end offset per record,
    then with flag 0x2 the names, then an 8-byte checksum. The entry size is
    derived from the file size, so a format revision that grows the entry
    does not break this reader."""
    with open(idx_path, 'rb') as f:
        buf = f.read()
    if buf[:8] != b'QUAIIDX\0':
        raise ValueError(f'{idx_path}: not a quai record index')
    version, flags, records, nf, fixed = struct.unpack_from('<IIQII', buf, 8)
    names_bytes = struct.unpack_from('<Q', buf, 56)[0]
    if nf != nframes:
        raise ValueError(f'{idx_path}: {nf} frames, the seek table has {nframes}')
    rest = 64 + 8 + (4 * records if flags & 0x1 else 0) + \
        (8 * records + names_bytes if flags & 0x2 else 0)
    esize, odd = divmod(len(buf) - rest, nframes)
    if odd or esize < 24:
        raise ValueError(f'{idx_path}: size does not fit {nframes} frames and {records} records')
    if not flags & 0x1:
        return fixed, None
    counts = [struct.unpack_from('<I', buf, 64 + esize * i + 20)[0] for i in range(nframes)]
    if sum(counts) != records:
        raise ValueError(f'{idx_path}: frame record counts do not add up to {records}')
    ends = np.frombuffer(buf, dtype='<u4', count=records, offset=64 + esize * nframes)
    out, pos = [], 0
    for n in counts:
        out.append(ends[pos:pos + n].astype(np.int64))
        pos += n
    return 0, out


def plan(dataset):
    """The record size (0: varying) and every frame as a task."""
    with open(os.path.join(dataset, 'manifest.json'), 'rb') as f:
        man = json.load(f)
    shards = man.get('shards')
    if shards:
        files = [(s['file'], s.get('index') or s['file'][:-4] + '.idx') for s in shards]
    else:
        names = sorted(n for n in os.listdir(dataset) if n.endswith('.zst'))
        files = [(n, n[:-4] + '.idx') for n in names]
    tasks, fixed_sizes = [], set()
    for zst, idx in files:
        path = os.path.join(dataset, zst)
        frames = read_seek_table(path)
        fixed, ends = read_index(os.path.join(dataset, idx), len(frames))
        fixed_sizes.add(fixed)
        for i, (off, csize, rsize) in enumerate(frames):
            tasks.append((path, off, csize, rsize, None if ends is None else ends[i]))
    if len(fixed_sizes) != 1:
        raise ValueError(f'{dataset}: shards disagree on the record size {fixed_sizes}')
    return fixed_sizes.pop(), man.get('records'), tasks


def worker(tasks, fixed, batch, q):
    dctx = zstandard.ZstdDecompressor()
    fds = {}
    carry = []      # fixed: pending (n, fixed) arrays; ragged: (bytes, ends) pairs
    pending = 0

    def flush_fixed(final):
        nonlocal carry, pending
        if not carry:
            return
        arr = carry[0] if len(carry) == 1 else np.concatenate(carry)
        n = (len(arr) // batch) * batch if not final else len(arr)
        for s in range(0, n, batch):
            q.put(('b', arr[s:s + batch]))
        carry = [arr[n:]] if n < len(arr) else []
        pending = len(arr) - n

    def flush_ragged(final):
        nonlocal carry, pending
        while pending >= batch or (final and pending):
            take, bufs, ends, base = min(batch, pending), [], [], 0
            while take:
                data, e = carry[0]
                k = min(take, len(e))
                cut = int(e[k - 1])
                bufs.append(data[:cut])
                ends.append(e[:k] + base)
                base += cut
                if k == len(e):
                    carry.pop(0)
                else:
                    carry[0] = (data[cut:], e[k:] - cut)
                take -= k
                pending -= k
            flat = np.frombuffer(b''.join(bufs), dtype=np.uint8) if len(bufs) > 1 else \
                np.frombuffer(bufs[0], dtype=np.uint8)
            q.put(('b', (flat, np.concatenate(ends))))

    for path, off, csize, rsize, ends in tasks:
        fd = fds.get(path)
        if fd is None:
            fd = fds[path] = os.open(path, os.O_RDONLY)
        comp = os.pread(fd, csize, off)
        raw = dctx.decompress(comp, max_output_size=rsize)
        if len(raw) != rsize:
            raise ValueError(f'{path}@{off}: frame gave {len(raw)} bytes, seek table says {rsize}')
        if fixed:
            arr = np.frombuffer(raw, dtype=np.uint8).reshape(-1, fixed)
            carry.append(arr)
            pending += len(arr)
            if pending >= batch:
                flush_fixed(False)
        else:
            carry.append((raw, ends))
            pending += len(ends)
            flush_ragged(False)
    if fixed:
        flush_fixed(True)
    else:
        flush_ragged(True)
    for fd in fds.values():
        os.close(fd)
    q.put(('done', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def main():
    t0 = time.perf_counter()
    ap = argparse.ArgumentParser()
    ap.add_argument('dataset')
    ap.add_argument('--workers', type=int, default=os.cpu_count())
    ap.add_argument('--batch', type=int, default=64)
    a = ap.parse_args()
    fixed, want_records, tasks = plan(a.dataset)
    q = mp.Queue(maxsize=2 * a.workers)
    procs = []
    for w in range(a.workers):
        p = mp.Process(target=worker, args=(tasks[w::a.workers], fixed, a.batch, q), daemon=True)
        p.start()
        procs.append(p)
    records = nbytes = batches = 0
    ttfb = None
    done, rss_workers = 0, 0
    while done < a.workers:
        try:
            tag, val = q.get(timeout=1)
        except queue.Empty:
            bad = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if bad:
                raise SystemExit(f'pyloader: a worker died (exit codes {bad})')
            continue
        if tag == 'done':
            done += 1
            rss_workers += val
            continue
        if ttfb is None:
            ttfb = time.perf_counter() - t0
        batches += 1
        if fixed:
            records += len(val)
            nbytes += val.nbytes
        else:
            records += len(val[1])
            nbytes += len(val[0])
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f'pyloader: a worker exited with {p.exitcode}')
    wall = time.perf_counter() - t0
    if want_records is not None and records != int(want_records):
        raise SystemExit(f'pyloader: delivered {records} records, manifest says {want_records}')
    rss_main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({'record_size': fixed, 'records': records, 'bytes': nbytes, 'batches': batches,
                      'frames': len(tasks), 'workers': a.workers, 'batch': a.batch,
                      'ttfb_s': ttfb, 'wall_s': wall,
                      'rss_sum_bytes': (rss_main + rss_workers) * 1024}))


if __name__ == '__main__':
    main()
