# SPDX-License-Identifier: Apache-2.0
"""The Python binding: order, content, zero copy, lifetimes, resumption, errors."""
import ctypes
import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import quai
from quai import _lib
from conftest import FIXED_RECORDS, FIXED_SIZE, REPO, pinned_mapping, run_cli
from epoch_order import Epoch


def ids_of(stream):
    out = []
    for b in stream:
        out.extend(b.ids.tolist())
    return out


def oracle(counts, rank=0, world=1, seed=0, epoch=0, shuffle=True, window=40, keep_tail=False):
    e = Epoch(counts, seed=seed, epoch=epoch, shuffle=shuffle, window=window,
              tail="keep" if keep_tail else "drop")
    return e, e.rank_order(rank, world)


# ---- the binding itself ----------------------------------------------------------


def test_structs_match_the_header(tmp_path):
    """Every mirrored struct has the size and field offsets the C compiler gives."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.skip("no C compiler to read the header with")
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <quai/quai.h>",
             "int main(void) {"]
    for name, cls in _lib.STRUCTS.items():
        lines.append('printf("%s %%zu\\n", sizeof(struct %s));' % (name, name))
        for f, _ in cls._fields_:
            lines.append('printf("%s.%s %%zu\\n", offsetof(struct %s, %s));' % (name, f, name, f))
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", "-I", os.path.join(REPO, "include"), str(src), "-o", str(exe)],
                   check=True)
    got = dict(line.split() for line in subprocess.check_output([str(exe)]).decode().splitlines())
    for name, cls in _lib.STRUCTS.items():
        assert int(got[name]) == ctypes.sizeof(cls), name
        for f, _ in cls._fields_:
            assert int(got["%s.%s" % (name, f)]) == getattr(cls, f).offset, (name, f)


def test_error_codes_match_the_header():
    with open(os.path.join(REPO, "include", "quai", "quai.h")) as f:
        hdr = f.read()
    body = hdr[hdr.index("enum quai_error {"):]
    body = body[:body.index("};")]
    names = [ln.split(",")[0].split("=")[0].strip() for ln in body.splitlines()[1:]
             if ln.strip().startswith("QUAI_E")]
    assert names[0] == "QUAI_EBASE" and "= 4096" in body
    for i, n in enumerate(names[1:-1], start=1):
        assert getattr(_lib, n) == 4096 + i, n
    assert isinstance(quai.Error(-_lib.QUAI_ECORRUPT), quai.Error)
    e = quai._errors.from_code(-_lib.QUAI_ECORRUPT, "shard-00000.zst: frame 3")
    assert type(e) is quai.CorruptError and e.code == -4097 and e.errno is None
    assert "shard-00000.zst: frame 3" in str(e) and str(e).startswith(_lib.strerror(-4097))


def test_missing_library_is_a_clear_import_error(tmp_path):
    env = dict(os.environ, QUAI_LIB=str(tmp_path / "nope.so"),
               PYTHONPATH=os.path.join(REPO, "python"))
    p = subprocess.run([sys.executable, "-c", "import quai"], env=env, stderr=subprocess.PIPE)
    assert p.returncode != 0
    err = p.stderr.decode()
    assert "ImportError" in err and "$QUAI_LIB" in err and "nope.so" in err


def test_version_and_library():
    assert quai.version().count(".") == 2
    assert os.path.exists(quai.lib_path)


def test_context_info_and_close(fixed_ds):
    with quai.Context(pinned_bytes=32 << 20, workers=1, no_hugepages=True) as c:
        i = c.info()
        assert i["pinned_bytes"] == 32 << 20 and i["workers"] == 1 and i["hugepages"] == 0
        assert i["gpu"] in ("none", "hip", "cuda") and isinstance(i["gpu_note"], str)
        s = quai.Stream(fixed_ds, context=c, batch=100)
        b = next(s)
        assert c.info()["pinned_peak"] > 0
        del b  # no batch alive: closing frees the context at once
    # closing the context closed its stream
    assert c.closed and s.closed and c._h is None
    with pytest.raises(quai.ClosedError):
        c.info()
    c.close()  # idempotent


def test_context_flags_match_the_header():
    with open(os.path.join(REPO, "include", "quai", "quai.h")) as f:
        defs = dict(ln.split()[1:3] for ln in f if ln.startswith("#define QUAI_CTX_"))
    assert defs, "no QUAI_CTX_ flags in quai.h"
    for name, value in defs.items():
        assert getattr(_lib, name) == int(value.rstrip("u"), 0), name


def test_lazy_pool_context_streams_the_same(fixed_ds):
    with quai.Context(pinned_bytes=32 << 20, workers=1, unlocked_ok=True) as eager, \
            quai.Context(pinned_bytes=32 << 20, workers=1, unlocked_ok=True,
                         lazy_pool=True) as lazy:
        a = ids_of(quai.Stream(fixed_ds, context=eager, batch=50, seed=3))
        b = ids_of(quai.Stream(fixed_ds, context=lazy, batch=50, seed=3))
    assert a and a == b


def test_one_lazy_default_context_for_all_streams():
    r = quai.default_context(remote=True)
    assert r is quai.default_context(remote=True) is quai.default_context()
    assert r.flags & _lib.QUAI_CTX_LAZY_POOL


def test_remote_uris_as_libquai_tells_them(tmp_path):
    from quai import _core
    assert _core._is_remote("quai://host/name")
    assert not _core._is_remote("quai:/host/name")
    assert not _core._is_remote(str(tmp_path / "quai://x"))
    assert not _core._is_remote(tmp_path)  # a path object


def test_default_context_is_shared(fixed_ds):
    a = quai.Stream(fixed_ds, batch=10)
    b = quai.Stream(fixed_ds, batch=10)
    assert a.context is b.context is quai.default_context()
    a.close()
    b.close()


# ---- order and content --------------------------------------------------------------

ORDERS = [
    dict(seed=3),
    dict(seed=5, epoch=2, window=3, keep_tail=True),
    dict(shuffle=False),
    dict(seed=9, world=4, rank=3, keep_tail=True),
    dict(seed=9, world=2, rank=1, window=1),
    dict(seed=4, world=3, rank=2, window=5),
    dict(seed=4, world=7, rank=6, window=2, keep_tail=True),
]


@pytest.mark.parametrize("opts", ORDERS, ids=lambda o: ",".join("%s=%s" % kv for kv in o.items()))
@pytest.mark.parametrize("which", ["fixed_ds", "lines_ds"])
def test_order_is_the_specified_one(request, ctx, frame_counts, which, opts):
    """The ids, batch by batch, are those of docs/STAGING.md's epoch order,
    computed by an independent Python implementation of the specification."""
    path = request.getfixturevalue(which)
    batch = 100
    with quai.Stream(path, context=ctx, batch=batch, **opts) as s:
        batches = [(b.index, b.count, b.ids.tolist()) for b in s]
        total = s.stats()["records_total"]
    _, want = oracle(frame_counts(path), **opts)
    got = [i for _, _, ids in batches for i in ids]
    assert [b[0] for b in batches] == list(range(len(batches)))
    assert total == len(want)
    # Whatever the tail: the batch size only cuts the sequence.
    assert got == want
    assert all(c == batch for _, c, _ in batches[:-1]) and batches[-1][1] <= batch


@pytest.mark.parametrize("which", ["fixed_ds", "lines_ds", "files_ds"])
def test_content_is_the_records(request, ctx, which):
    """Every record of an epoch equals what quai_reader_record() reads for its
    id (quai.Dataset), through data/offsets, batch[i] and iteration."""
    path = request.getfixturevalue(which)
    seen = []
    with quai.Dataset(path) as d, quai.Stream(path, context=ctx, batch=37, seed=1,
                                              keep_tail=True) as s:
        for b in s:
            data, off, ids = b.data, b.offsets, b.ids
            assert off[0] == 0 and off[-1] == b.nbytes == len(data)
            for i, rid in enumerate(ids.tolist()):
                rec = d[rid]
                assert data[off[i]:off[i + 1]].tobytes() == rec
                assert b[i].tobytes() == rec
            assert [r.tobytes() for r in b] == [d[r] for r in ids.tolist()]
            seen.extend(ids.tolist())
        assert sorted(seen) == list(range(len(d)))


def test_content_against_quai_cat(ctx, lines_ds):
    """A few records compared with the CLI's independent read (quai cat)."""
    with quai.Stream(lines_ds, context=ctx, batch=50, seed=4) as s:
        b = next(s)
        for i in (0, 7, 49):
            rid = int(b.ids[i])
            out = run_cli("cat", "--range", "%d:%d" % (rid, rid + 1), lines_ds).stdout
            assert b[i].tobytes() == out


def test_fixed_records_view(ctx, fixed_ds):
    with quai.Dataset(fixed_ds) as d, quai.Stream(fixed_ds, context=ctx, batch=64) as s:
        b = next(s)
        r = b.records()
        assert r.shape == (64, FIXED_SIZE) and r.dtype == np.uint8
        assert r[5].tobytes() == d[int(b.ids[5])]
        r16 = b.records(np.int16)
        assert r16.shape == (64, FIXED_SIZE // 2)
        assert r16[5].tobytes() == d[int(b.ids[5])]
        assert np.shares_memory(r, b.data) and np.shares_memory(r16, r)
        with pytest.raises(ValueError):
            b.records(np.dtype("V3"))  # 64 bytes are not whole 3-byte items
        assert not r.flags.writeable


def test_records_refuses_varying_sizes(ctx, lines_ds):
    with quai.Stream(lines_ds, context=ctx, batch=64) as s:
        b = next(s)
        with pytest.raises(ValueError, match="not all"):
            b.records()


@pytest.mark.parametrize("world", [2, 3, 4, 6])
def test_ranks_cover_the_epoch_once(ctx, fixed_ds, world):
    got = []
    for r in range(world):
        with quai.Stream(fixed_ds, context=ctx, rank=r, world=world, seed=11,
                         keep_tail=True, batch=128) as s:
            got.extend(ids_of(s))
    assert sorted(got) == list(range(FIXED_RECORDS))


def test_batch_bytes(ctx, lines_ds):
    with quai.Stream(lines_ds, context=ctx, batch_bytes=10000, keep_tail=True) as s:
        sizes = [b.nbytes for b in s]
    assert all(n >= 10000 for n in sizes[:-1]) and sum(sizes) > 0


# ---- zero copy --------------------------------------------------------------------


def test_views_are_the_pinned_memory(ctx, fixed_ds):
    """The arrays are views of the batch's memory in the pool: their address is
    the C batch's pointer, it lies in a mapping the kernel reports as locked
    (mlock) and excluded from core dumps (the pool's), and no access
    allocates memory for the records."""
    with quai.Stream(fixed_ds, context=ctx, batch=1024) as s:
        b = next(s)
        assert b.nbytes == 1024 * FIXED_SIZE
        cb = b._slot.cb
        assert b.data.__array_interface__["data"][0] == cb.data == b.address
        assert b.offsets.__array_interface__["data"][0] == cb.offsets
        assert b.ids.__array_interface__["data"][0] == cb.ids
        assert b.records().__array_interface__["data"][0] == cb.data
        assert b[3].__array_interface__["data"][0] == cb.data + 3 * FIXED_SIZE
        m = pinned_mapping(cb.data)
        assert m is not None
        start, end, flags = m
        assert start <= cb.data and cb.data + b.nbytes <= end
        if ctx.info()["locked"]:
            assert "lo" in flags
        assert "dd" in flags  # MADV_DONTDUMP: the pool, not the Python heap
        tracemalloc.start()
        try:
            for _ in range(2):
                v = (b.data, b.records(), b.ids, b.offsets, b[10])
                del v
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 16 << 10 < b.nbytes  # a few small objects, never the records


# ---- lifetimes --------------------------------------------------------------------


def test_copy_outlives_the_batch(ctx, fixed_ds):
    with quai.Dataset(fixed_ds) as d, quai.Stream(fixed_ds, context=ctx, batch=100) as s:
        b = next(s)
        c = b.copy()
        b.release()
        assert c.count == 100 and c.records().shape == (100, FIXED_SIZE)
        assert c[99].tobytes() == d[int(c.ids[99])]
        assert not np.shares_memory(c.data, np.frombuffer(b"x", np.uint8))


def test_handles_do_not_pickle(ctx, fixed_ds):
    with quai.Stream(fixed_ds, context=ctx, batch=10) as s:
        b = next(s)
        for obj in (ctx, s, b):
            with pytest.raises(TypeError, match="pickle"):
                pickle.dumps(obj)


def test_fork_child_cannot_use_parent_objects(ctx, fixed_ds):
    """The pool is MADV_DONTFORK: a child gets a clear error from inherited
    objects, and streams of its own work."""
    s = quai.Stream(fixed_ds, context=ctx, batch=10)
    b = next(s)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                next(s)
            except quai.ClosedError as e:
                assert "fork" in str(e)
                try:
                    b.data
                    os._exit(3)
                except quai.ClosedError as e2:
                    assert "fork" in str(e2)
                del b  # garbage collection must not reach the parent's stream
                with quai.Stream(fixed_ds, batch=10) as s2:  # a new default context
                    n = sum(x.count for x in s2)
                    os.write(w, str(n).encode())
                    code = 0
        finally:
            os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    out = os.read(r, 100)
    os.close(r)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert int(out) > 0
    assert not b.released and b.data[0] >= 0  # the parent's batch is untouched
    s.close()


# ---- resumption --------------------------------------------------------------------


@pytest.mark.parametrize("old_world,new_world", [(2, 4), (4, 1), (1, 2), (2, 3), (6, 5)])
def test_resume_at_another_world_size(ctx, fixed_ds, frame_counts, old_world, new_world):
    """State after k batches on every rank of one world; the ranks of another
    world resumed from it deliver exactly the rest of the epoch, once."""
    k, batch, opts = 7, 96, dict(seed=21, epoch=4, window=3, keep_tail=True)
    before, states = [], []
    for r in range(old_world):
        with quai.Stream(fixed_ds, context=ctx, rank=r, world=old_world, batch=batch,
                         **opts) as s:
            for _ in range(k):
                before.extend(next(s).ids.tolist())
            states.append(s.state())
    assert len(set(states)) == 1 and len(states[0]) <= quai.STATE_MAX
    after = []
    for r in range(new_world):
        with quai.Stream(fixed_ds, context=ctx, rank=r, world=new_world, batch=50,
                         resume=states[0]) as s:
            after.extend(ids_of(s))
    assert len(before) + len(after) == FIXED_RECORDS
    assert sorted(before + after) == list(range(FIXED_RECORDS))
    # and exactly the order docs/STAGING.md specifies for the resumed run
    e = Epoch(frame_counts(fixed_ds), seed=21, epoch=4, window=3, tail="keep")
    levels, done = e.resume_point(old_world, k * batch)
    assert not done
    want = [i for r in range(new_world) for i in e.rank_order(r, new_world, levels)]
    assert after == want


def test_resume_same_world_continues_in_order(ctx, fixed_ds):
    opts = dict(seed=2, batch=100, keep_tail=True)
    with quai.Stream(fixed_ds, context=ctx, **opts) as s:
        full = ids_of(s)
    with quai.Stream(fixed_ds, context=ctx, **opts) as s:
        head = [i for _ in range(5) for i in next(s).ids.tolist()]
        st = s.state()
    # the resume state fixes seed and epoch: another value is an error
    with pytest.raises(quai.InvalidArgumentError, match="fixes the seed"):
        quai.Stream(fixed_ds, context=ctx, batch=100, seed=999, resume=st)
    with quai.Stream(fixed_ds, context=ctx, batch=100, resume=st) as s:
        rest = ids_of(s)
    assert head + rest == full


def test_resume_state_of_another_dataset_is_refused(ctx, fixed_ds, lines_ds):
    with quai.Stream(fixed_ds, context=ctx, batch=10) as s:
        next(s)
        st = s.state()
    with pytest.raises(quai.InvalidArgumentError, match="another dataset"):
        quai.Stream(lines_ds, context=ctx, resume=st)
    with pytest.raises(quai.Error, match="not a quai stream state"):
        quai.Stream(fixed_ds, context=ctx, resume=b"x" * 64)


# ---- errors --------------------------------------------------------------------------


def corrupt_copy(src, dest, record):
    """A copy of dataset src with the compressed frame holding `record` damaged."""
    shutil.copytree(src, dest)
    with quai.Dataset(dest) as d:
        loc = d.locate(record)
        shard = d.shard(loc.shard)["file"]
    path = os.path.join(dest, shard)
    with open(path, "r+b") as f:
        f.seek(loc.frame_offset + loc.frame_csize // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x5A]))
    return shard, loc


def test_corrupt_frame_raises_corrupt_error(ctx, fixed_ds, tmp_path):
    bad = str(tmp_path / "bad")
    shard, loc = corrupt_copy(fixed_ds, bad, 5000)
    with quai.Stream(bad, context=ctx, batch=100, shuffle=False, keep_tail=True) as s:
        with pytest.raises(quai.CorruptError) as ei:
            for _ in s:
                pass
        e = ei.value
        assert e.code == -_lib.QUAI_ECORRUPT and isinstance(e, quai.Error)
        assert shard in str(e) and "frame" in str(e)
        assert shard in s.error
        with pytest.raises(quai.CorruptError):  # the stream keeps its error
            next(s)
    # and the reader path agrees
    with quai.Dataset(bad) as d:
        with pytest.raises(quai.CorruptError):
            d[5000]


def test_skip_corrupt_counts_and_skips(ctx, fixed_ds, tmp_path):
    bad = str(tmp_path / "bad")
    corrupt_copy(fixed_ds, bad, 5000)
    with quai.Stream(bad, context=ctx, batch=100, shuffle=False, keep_tail=True,
                     skip_corrupt=True) as s:
        got = ids_of(s)
        skipped = s.stats()["skipped_records"]
    assert 0 < skipped and len(got) + skipped == FIXED_RECORDS
    assert 5000 not in got


def test_bad_arguments(ctx, fixed_ds, tmp_path):
    S = lambda **kw: quai.Stream(fixed_ds, context=ctx, **kw)  # noqa: E731
    with pytest.raises(quai.InvalidArgumentError, match="rank 2 is not below the world size 2"):
        S(rank=2, world=2)
    with pytest.raises(ValueError, match="divid|world"):
        S(world=3, partitions=8)  # partitions are gone: any world works
    with pytest.raises(ValueError, match="not both"):
        S(batch=10, batch_bytes=100)
    with pytest.raises(ValueError, match="rank"):
        S(rank=-1)
    with pytest.raises(ValueError, match="world"):
        S(world=0)
    with pytest.raises(TypeError, match="batch"):
        S(batch="10")
    with pytest.raises(TypeError):
        S(batch=1.5)
    with pytest.raises(ValueError, match="seed"):
        S(seed=1 << 64)
    with pytest.raises(TypeError, match="context"):
        quai.Stream(fixed_ds, context="ctx")
    with pytest.raises(quai.NotFoundError) as ei:
        quai.Stream(str(tmp_path / "missing"), context=ctx)
    assert isinstance(ei.value, FileNotFoundError) and ei.value.errno == errno.ENOENT
    with pytest.raises(quai.Error) as ei:
        S(budget=4096)
    assert ei.value.code == -errno.ENOBUFS and "needs" in str(ei.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(quai.Error):
        quai.Stream(str(tmp_path / "empty"), context=ctx)
    with pytest.raises(ValueError, match="gpu"):
        quai.Context(gpu="metal")


def test_unreachable_remote_uri_is_named(ctx):
    with pytest.raises(quai.Error) as ei:
        quai.Stream("quai://storage-1.invalid/tokens", context=ctx)
    assert ei.value.code == -errno.EHOSTUNREACH
    assert "quaid at storage-1.invalid:7470" in str(ei.value)
    with pytest.raises(quai.InvalidArgumentError, match="port"):
        quai.Stream("quai://storage-1:0/tokens", context=ctx)
    with pytest.raises(quai.UnsupportedError, match="scheme"):
        quai.Stream("s3://bucket/tokens", context=ctx)


def test_file_uri(ctx, fixed_ds):
    with quai.Stream("file://" + os.path.abspath(fixed_ds), context=ctx, batch=1000,
                     keep_tail=True) as s:
        assert sum(b.count for b in s) == FIXED_RECORDS


def test_closed_stream(ctx, fixed_ds):
    s = quai.Stream(fixed_ds, context=ctx)
    s.close()
    s.close()
    with pytest.raises(quai.ClosedError):
        next(s)
    with pytest.raises(quai.ClosedError):
        s.state()


def test_stats(ctx, fixed_ds):
    with quai.Stream(fixed_ds, context=ctx, batch=100, keep_tail=True) as s:
        n = sum(b.count for b in s)
        st = s.stats()
    assert st["records"] == n == st["records_total"] == FIXED_RECORDS
    assert st["bytes"] == n * FIXED_SIZE and st["batches"] == -(-n // 100)
    assert st["working_set_bytes"] <= st["budget_bytes"]


# ---- Dataset ----------------------------------------------------------------------------


def test_dataset_info_matches_the_cli(fixed_ds, files_ds):
    import json
    with quai.Dataset(fixed_ds) as d:
        info = d.info()
        cli = json.loads(run_cli("info", "--json", fixed_ds).stdout)
        assert info["records"] == len(d) == FIXED_RECORDS
        assert info["kind"] == "fixed" and info["fixed_size"] == FIXED_SIZE
        for k in ("records", "raw_bytes", "compressed_bytes", "shards", "frames",
                  "manifest_checksum", "name", "zone", "classification"):
            if k in cli:
                assert cli[k] == info[k], k
        assert d[-1] == d[len(d) - 1]
        with pytest.raises(IndexError):
            d[len(d)]
        loc = d.locate(300)
        assert loc.shard == 0 and loc.length == FIXED_SIZE and loc.frame == 300 // 256
    with quai.Dataset(files_ds) as d:
        assert d.info()["kind"] == "files"
        names = [d.record_name(i) for i in range(len(d))]
        assert len(set(names)) == 300 and all(n.startswith("d") for n in names)
        i = names.index("d3/f010.bin")
        src = os.path.join(os.path.dirname(files_ds), "files-src", "d3", "f010.bin")
        with open(src, "rb") as f:
            assert d[i] == f.read()
    with pytest.raises(quai.ClosedError):
        d[0]


def test_dataset_errors(tmp_path):
    with pytest.raises(quai.NotFoundError):
        quai.Dataset(str(tmp_path / "nope"))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text("{")
    with pytest.raises(quai.FormatError) as ei:
        quai.Dataset(str(tmp_path / "x"))
    assert "manifest.json" in str(ei.value)


def test_sensitive_dataset_opens_only_on_a_host_of_its_zone(tmp_path, monkeypatch):
    """quai.Dataset asks the host first (quai_dataset_allow): a sensitive
    dataset opens only in its zone, and each decision is audited."""
    conf = tmp_path / "no-such-quai.conf"  # the file run_cli's QUAI_CONF names
    log = tmp_path / "audit.log"
    conf.write_text(f"zone = fr-1\nsovereign_paths = {tmp_path}\naudit_log = {log}\n")
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(64 * 100))
    run_cli("pack", "-q", "--records", "fixed:64", "--class", "sensitive", "--zone", "fr-1",
            src, tmp_path / "ds", tmp=tmp_path)
    monkeypatch.setenv("QUAI_CONF", str(conf))
    ds = quai.Dataset(tmp_path / "ds")
    assert len(ds) == 100 and ds[7] == src.read_bytes()[7 * 64:8 * 64]
    ds.close()
    other = tmp_path / "de.conf"
    other.write_text(f"zone = de-1\naudit_log = {log}\n")
    monkeypatch.setenv("QUAI_CONF", str(other))
    with pytest.raises(quai.PolicyError) as ei:
        quai.Dataset(tmp_path / "ds")
    assert "this host is in zone de-1" in str(ei.value)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(x["op"], x["result"], x["rule"]) for x in lines] == [
        ("pack", "granted", "local"), ("read", "granted", "local"),
        ("read", "refused", "sovereign:zone")]
