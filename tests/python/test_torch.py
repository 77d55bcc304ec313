# SPDX-License-Identifier: Apache-2.0
"""quai.torch.QuaiDataset with a torch DataLoader (Debian's python3-torch).

Skipped, with the reason, where torch is not installed."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (apt-get install "
                            "python3-torch): the torch layer is not tested")

import quai  # noqa: E402
from quai.torch import QuaiDataset, rank_and_world  # noqa: E402
from conftest import FIXED_RECORDS, FIXED_SIZE, REPO, pinned_mapping  # noqa: E402

DL = torch.utils.data.DataLoader


def loader(ds, **kw):
    return DL(ds, batch_size=None, **kw)


def test_rank_and_world_from_the_environment(monkeypatch):
    for v in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(v, raising=False)
    assert rank_and_world() == (0, 1)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    assert rank_and_world() == (3, 8)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert rank_and_world() == (1, 2)  # torchrun's variables come first
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK"):
        rank_and_world()


def test_tensors_are_views_of_pinned_memory(ctx, fixed_ds):
    ds = QuaiDataset(fixed_ds, rank=0, world=1, batch=128, ids=True, context=ctx)
    with quai.Dataset(fixed_ds) as d:
        it = iter(loader(ds))
        x, ids = next(it)
        assert x.shape == (128, FIXED_SIZE) and x.dtype == torch.uint8
        assert ids.dtype == torch.int64 and ids.shape == (128,)
        assert x[7].numpy().tobytes() == d[int(ids[7])]
        m = pinned_mapping(x.data_ptr())
        assert m is not None and "dd" in m[2]  # the pool, not torch's allocator
        if ctx.info()["locked"]:
            assert "lo" in m[2]
        del it


def test_dtype_views(ctx, fixed_ds):
    """uint16 tokens: torch 1.13 has no uint16, so int16 views of the same bits."""
    ds = QuaiDataset(fixed_ds, rank=0, world=1, batch=64, dtype=torch.int16, ids=True,
                     context=ctx)
    with quai.Dataset(fixed_ds) as d:
        x, ids = next(iter(loader(ds)))
        assert x.shape == (64, FIXED_SIZE // 2) and x.dtype == torch.int16
        want = np.frombuffer(d[int(ids[3])], dtype="<i2")
        assert np.array_equal(x[3].numpy(), want)
        assert np.array_equal(x[3].numpy().view(np.uint16), want.view(np.uint16))


def test_variable_records_are_data_and_offsets(ctx, lines_ds):
    ds = QuaiDataset(lines_ds, rank=0, world=1, batch=50, ids=True, keep_tail=True,
                     context=ctx)
    seen = 0
    with quai.Dataset(lines_ds) as d:
        for data, off, ids in loader(ds):
            for i in (0, len(ids) - 1):
                assert data[off[i]:off[i + 1]].numpy().tobytes() == d[int(ids[i])]
            seen += len(ids)
        assert seen == len(d)


TWO_RANKS = textwrap.dedent("""
    import json, sys, torch
    from quai.torch import QuaiDataset
    ds = QuaiDataset(sys.argv[1], seed=5, batch=100, keep_tail=True, ids=True,
                     context={"pinned_bytes": 32 << 20})
    out = {"rank": ds.rank, "world": ds.world, "epochs": []}
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=int(sys.argv[2]))
    for epoch in range(2):
        ds.set_epoch(epoch)
        out["epochs"].append([i for x, ids in loader for i in ids.tolist()])
    json.dump(out, sys.stdout)
""")


@pytest.mark.parametrize("workers", [0, 2])
def test_two_ranks_cover_each_epoch_once(fixed_ds, workers):
    """Two processes, rank 0 and 1 from $RANK/$WORLD_SIZE, each with a
    DataLoader (with and without worker processes): every record exactly
    once per epoch, and the epochs differ in order."""
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2",
                   PYTHONPATH=os.pathsep.join([os.path.join(REPO, "python"),
                                               os.environ.get("PYTHONPATH", "")]))
        procs.append(subprocess.Popen([sys.executable, "-c", TWO_RANKS, fixed_ds, str(workers)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
        outs.append(json.loads(out))
    assert [o["rank"] for o in outs] == [0, 1] and all(o["world"] == 2 for o in outs)
    for e in range(2):
        ids = outs[0]["epochs"][e] + outs[1]["epochs"][e]
        assert sorted(ids) == list(range(FIXED_RECORDS)), "epoch %d" % e
        assert not set(outs[0]["epochs"][e]) & set(outs[1]["epochs"][e])
    assert outs[0]["epochs"][0] != outs[0]["epochs"][1]


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers", [3, 5])
def test_any_number_of_workers_covers_the_epoch(fixed_ds, workers):
    """No divisibility rule: 3 or 5 DataLoader workers (ranks of world 3 or
    5) deliver every record once."""
    ds = QuaiDataset(fixed_ds, rank=0, world=1, keep_tail=True, ids=True,
                     context={"pinned_bytes": 16 << 20})
    got = [i for _, ids in loader(ds, num_workers=workers) for i in ids.tolist()]
    assert sorted(got) == list(range(FIXED_RECORDS))


def ids_of(ds, n=None, **kw):
    out = []
    it = iter(loader(ds, **kw))
    for k, (_, ids) in enumerate(it):
        out.extend(ids.tolist())
        if n is not None and k + 1 == n:
            break
    return out, it


def test_state_dict_resumes_exactly(ctx, fixed_ds):
    """state_dict() after k batches; a new dataset with load_state_dict()
    delivers the same batches the uninterrupted run would have."""
    kw = dict(seed=8, batch=100, keep_tail=True, ids=True, context=ctx)
    ds = QuaiDataset(fixed_ds, rank=0, world=1, **kw)
    ds.set_epoch(3)
    full, _ = ids_of(ds)
    assert sorted(full) == list(range(FIXED_RECORDS))
    ds.set_epoch(3)
    head, it = ids_of(ds, n=9)
    sd = ds.state_dict()
    assert sd["epoch"] == 3 and isinstance(sd["state"], bytes)
    del it
    sd = json.loads(json.dumps({**sd, "state": sd["state"].hex()}))  # as a checkpoint would
    sd["state"] = bytes.fromhex(sd["state"])
    ds2 = QuaiDataset(fixed_ds, rank=0, world=1, **kw)
    ds2.load_state_dict(sd)
    ds2.set_epoch(3)  # the loaded epoch: the state is kept
    assert ds2.state_dict()["state"] == sd["state"]
    rest, _ = ids_of(ds2)
    assert head + rest == full
    assert ds2.state_dict()["epoch"] == 3
    ds2.set_epoch(4)  # the next epoch starts from its beginning
    assert ds2.state_dict()["state"] is None
    nxt, _ = ids_of(ds2)
    assert sorted(nxt) == list(range(FIXED_RECORDS)) and nxt != full


def test_state_dict_resumes_at_another_world_size(ctx, fixed_ds):
    kw = dict(seed=8, batch=64, keep_tail=True, ids=True, context=ctx)
    before, sds = [], []
    for r in range(2):
        ds = QuaiDataset(fixed_ds, rank=r, world=2, **kw)
        ids, it = ids_of(ds, n=5)
        before += ids
        sds.append(ds.state_dict())
        del it
    assert sds[0]["state"] == sds[1]["state"]
    after = []
    for r in range(3):  # resumed by 3 ranks of 2 DataLoader workers each
        ds = QuaiDataset(fixed_ds, rank=r, world=3, **{**kw, "context": {"pinned_bytes": 16 << 20}})
        ds.load_state_dict(sds[0])
        ids, _ = ids_of(ds, num_workers=2)
        after += ids
    assert sorted(before + after) == list(range(FIXED_RECORDS))


def test_dataset_pickles_without_its_context(ctx, fixed_ds):
    import pickle
    ds = QuaiDataset(fixed_ds, rank=0, world=1, context=ctx)
    ds2 = pickle.loads(pickle.dumps(ds))
    assert ds2.uri == ds.uri and ds2._context_arg is None


def test_bad_arguments(fixed_ds):
    with pytest.raises(ValueError, match="rank"):
        QuaiDataset(fixed_ds, rank=2, world=2)
    with pytest.raises(ValueError, match="together"):
        QuaiDataset(fixed_ds, rank=1)
    with pytest.raises(TypeError, match="unknown"):
        QuaiDataset(fixed_ds, rank=0, world=1, bogus=1)
    with pytest.raises(ValueError, match="whole number"):
        QuaiDataset(fixed_ds, rank=0, world=1, record_size=63, dtype=torch.int16)
    with pytest.raises(quai.Error, match="quaid at host.invalid:7470"):
        iter(QuaiDataset("quai://host.invalid/tokens", rank=0, world=1, record_size=64,
                         context={"pinned_bytes": 16 << 20}))


# ---- issue 19: kept tensors, workers, state, persistent workers ----------------------


def test_kept_tensors_keep_their_records(fixed_ds):
    """Finding 1: tensors kept across the whole epoch (for a metric, say)
    still hold their records at its end: no copy was made, the memory was
    simply not reused while they lived."""
    c = quai.Context(pinned_bytes=32 << 20, workers=1)
    ds = QuaiDataset(fixed_ds, rank=0, world=1, batch=100, ids=True, context=c)
    kept = []
    for k, (x, ids) in enumerate(loader(ds)):
        if k % 10 == 0:
            kept.append((x, ids))
    assert len(kept) >= 21
    with quai.Dataset(fixed_ds) as d:
        bad = sum(x[i].numpy().tobytes() != d[int(ids[i])] for x, ids in kept for i in (0, 99))
    assert bad == 0
    c.close()  # finding 2: with live tensors, closing waits for them; no crash
    with quai.Dataset(fixed_ds) as d:
        assert all(x[5].numpy().tobytes() == d[int(ids[5])] for x, ids in kept)
    assert c._h is not None
    del kept, x, ids
    import gc
    gc.collect()
    assert c._h is None


def loader_ids(ld, n=None):
    out = []
    for k, (_, ids) in enumerate(ld):
        out.extend(ids.tolist())
        if n is not None and k + 1 == n:
            break
    return out


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_plain_loader_with_workers_refuses_a_wrong_state(fixed_ds):
    """Finding 3: QuaiDataset.state_dict() after an epoch in a plain torch
    DataLoader's workers raises instead of returning None or a stale state."""
    ds = QuaiDataset(fixed_ds, rank=0, world=1, batch=100, ids=True,
                     context={"pinned_bytes": 16 << 20})
    assert ds.state_dict()["state"] is None  # nothing taken yet: exact
    ids = loader_ids(loader(ds, num_workers=2), n=100)
    assert len(ids) == 100 * 100
    with pytest.raises(RuntimeError, match="quai.torch.DataLoader"):
        ds.state_dict()
    ds.set_epoch(1)
    assert ds.state_dict()["state"] is None  # a new epoch, not begun


KW = dict(seed=8, batch=100, keep_tail=True, ids=True)


def qloader(ds, **kw):
    return quai.torch.DataLoader(ds, **kw)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("taken", [30, 31])
def test_quai_loader_state_is_exact_with_workers(fixed_ds, taken):
    """quai.torch.DataLoader's state_dict() with 2 workers after an even
    (one state, resumable anywhere) and an odd number of batches (a state
    per worker: exact with 2 workers, refused otherwise)."""
    ctx = {"pinned_bytes": 16 << 20}
    ds = QuaiDataset(fixed_ds, rank=0, world=1, context=ctx, **KW)
    ds.set_epoch(2)
    full = loader_ids(qloader(ds, num_workers=2))
    assert sorted(full) == list(range(FIXED_RECORDS))
    ds.set_epoch(2)
    ld = qloader(ds, num_workers=2)
    head = loader_ids(ld, n=taken)
    sd = ld.state_dict()
    assert sd["epoch"] == 2
    sd = json.loads(json.dumps({**sd, "state": sd["state"] and sd["state"].hex(),
                                "worker_states": [w.hex() for w in sd.get("worker_states", [])]}))
    sd["state"] = sd["state"] and bytes.fromhex(sd["state"])
    sd["worker_states"] = [bytes.fromhex(w) for w in sd["worker_states"]] or None
    ds2 = QuaiDataset(fixed_ds, rank=0, world=1, context=ctx, **KW)
    ld2 = qloader(ds2, num_workers=2)
    ld2.load_state_dict(sd)
    ds2.set_epoch(2)
    rest = loader_ids(ld2)
    assert sorted(head + rest) == list(range(FIXED_RECORDS))
    if taken % 2 == 0:
        assert isinstance(sd["state"], bytes) and not sd["worker_states"]
        assert head + rest == full  # the same order as the uninterrupted run
        for workers in (0, 4):  # one state: any number of workers
            ds3 = QuaiDataset(fixed_ds, rank=0, world=1, context=ctx, **KW)
            ld3 = qloader(ds3, num_workers=workers)
            ld3.load_state_dict(sd)
            assert sorted(head + loader_ids(ld3)) == list(range(FIXED_RECORDS))
    else:
        assert sd["state"] is None and len(sd["worker_states"]) == 2
        for workers in (0, 3):
            ds3 = QuaiDataset(fixed_ds, rank=0, world=1, context=ctx, **KW)
            ld3 = qloader(ds3, num_workers=workers)
            ld3.load_state_dict(sd)
            with pytest.raises(Exception, match="num_workers=2"):
                loader_ids(ld3)


def test_quai_loader_state_at_the_start_and_the_end(fixed_ds):
    ds = QuaiDataset(fixed_ds, rank=0, world=1, context={"pinned_bytes": 16 << 20}, **KW)
    ld = qloader(ds, num_workers=2)
    assert ld.state_dict()["state"] is None
    loader_ids(ld)
    ds2 = QuaiDataset(fixed_ds, rank=0, world=1, context={"pinned_bytes": 16 << 20}, **KW)
    ld2 = qloader(ds2, num_workers=2)
    ld2.load_state_dict(ld.state_dict())
    assert loader_ids(ld2) == []  # the epoch was over


@pytest.mark.parametrize("cls", ["torch", "quai"])
def test_persistent_workers_follow_set_epoch(fixed_ds, cls):
    """Finding 4: persistent workers stream the epoch set_epoch() chose."""
    ds = QuaiDataset(fixed_ds, rank=0, world=1, context={"pinned_bytes": 16 << 20}, **KW)
    mk = loader if cls == "torch" else qloader
    ld = mk(ds, num_workers=2, persistent_workers=True)
    epochs = []
    for e in range(3):
        ds.set_epoch(e)
        epochs.append(loader_ids(ld))
    assert all(sorted(x) == list(range(FIXED_RECORDS)) for x in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    ref = QuaiDataset(fixed_ds, rank=0, world=1, context={"pinned_bytes": 16 << 20}, **KW)
    ref.set_epoch(1)
    assert epochs[1] == loader_ids(mk(ref, num_workers=2))  # what epoch 1 is
    if cls == "quai":
        ds.set_epoch(4)
        it = iter(ld)
        head = [i for _, (x, ids) in zip(range(5), it) for i in ids.tolist()]
        sd = ld.state_dict()
        assert sd["epoch"] == 4 and "worker_states" in sd
        ld.load_state_dict(sd)
        rest = loader_ids(ld)
        assert sorted(head + rest) == list(range(FIXED_RECORDS))


# ---- transforms, map-style ------------------------------------------------------------


def test_transform_runs_off_the_training_thread_and_state_stays_exact(fixed_ds):
    import threading
    threads = set()

    def tf(item):
        threads.add(threading.current_thread().name)
        x, ids = item
        return x.to(torch.int32).sum(dim=1), ids

    ctx = {"pinned_bytes": 16 << 20}
    plain = QuaiDataset(fixed_ds, rank=0, world=1, context=ctx, **KW)
    want = [(x.to(torch.int32).sum(dim=1), ids) for x, ids in loader(plain)]
    ds = QuaiDataset(fixed_ds, rank=0, world=1, context=ctx, transform=tf, **KW)
    got = []
    for k, (s, ids) in enumerate(loader(ds)):
        got.append((s, ids))
        if k == 9:
            sd = ds.state_dict()
            break
    assert threads and threading.current_thread().name not in threads
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, want))
    ds2 = QuaiDataset(fixed_ds, rank=0, world=1, context=ctx, transform=tf, **KW)
    ds2.load_state_dict(sd)
    rest = list(loader(ds2))
    assert len(got) + len(rest) == len(want)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(rest, want[10:]))


def test_transform_errors_reach_the_loop(fixed_ds):
    def tf(item):
        raise KeyError("from the transform")
    ds = QuaiDataset(fixed_ds, rank=0, world=1, context={"pinned_bytes": 16 << 20}, transform=tf)
    with pytest.raises(KeyError, match="from the transform"):
        next(iter(loader(ds)))


def test_map_dataset_reads_every_record(fixed_ds):
    from quai.torch import FrameSampler, QuaiMapDataset
    m = QuaiMapDataset(fixed_ds, dtype=torch.int16, ids=True)
    assert len(m) == FIXED_RECORDS
    with quai.Dataset(fixed_ds) as d:
        for i in (0, 1, 255, 256, FIXED_RECORDS - 1, -1):
            x, j = m[i]
            assert x.shape == (FIXED_SIZE // 2,) and x.dtype == torch.int16
            assert x.numpy().tobytes() == d[i]
            assert j == i % FIXED_RECORDS
    with pytest.raises(IndexError):
        m[FIXED_RECORDS]
    frames = m.frames()
    assert sum(n for _, n in frames) == FIXED_RECORDS
    assert [a for a, _ in frames] == [sum(n for _, n in frames[:k]) for k in range(len(frames))]
    s = FrameSampler(m, seed=4, window=4, rank=0, world=1)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(e0) == sorted(e1) == list(range(FIXED_RECORDS)) and e0 != e1
    s.set_epoch(0)
    assert list(s) == e0  # deterministic
    m2 = QuaiMapDataset(fixed_ds, cache_bytes=8 * 16 << 10)
    for i in e0:
        m2[i]
    assert m2.misses == len(frames)  # each frame decoded once in the epoch
    parts = [list(FrameSampler(m, seed=4, rank=r, world=3)) for r in range(3)]
    assert sorted(sum(parts, [])) == list(range(FIXED_RECORDS))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_map_dataset_in_a_loader_with_workers(fixed_ds):
    from quai.torch import FrameSampler, QuaiMapDataset
    m = QuaiMapDataset(fixed_ds, ids=True)
    ld = DL(m, batch_size=256, sampler=FrameSampler(m, seed=1, rank=0, world=1),
            num_workers=2)
    ids = [i for x, i in ld for i in i.tolist()]
    assert sorted(ids) == list(range(FIXED_RECORDS))


def test_mix_dataset_in_a_loader_resumes_exactly(fixed_ds, lines_ds):
    from quai.torch import QuaiMixDataset
    ctx = quai.Context(pinned_bytes=32 << 20, workers=1)
    kw = dict(batches=60, batch=100, seed=3, ids=True, context=ctx,
              rank=0, world=1)
    ds = QuaiMixDataset([fixed_ds, lines_ds], [1, 1], **kw)
    ds.set_epoch(2)

    def ids(items):
        return [(src, tuple(i.tolist()[:2])) for *_, i, src in items]
    full = ids(loader(ds))
    assert {s for s, _ in full} == {0, 1} and len(full) == 60
    ds.set_epoch(2)
    head = []
    for k, item in enumerate(loader(ds)):
        head.append(item)
        if k == 24:
            sd = ds.state_dict()
            break
    for item in head:
        assert len(item) == (3 if item[-1] == 0 else 4)  # fixed: records; lines: data, offsets
        if item[-1] == 0:
            assert item[0].shape == (100, FIXED_SIZE)
    ds2 = QuaiMixDataset([fixed_ds, lines_ds], [1, 1], **kw)
    ds2.load_state_dict(sd)
    ds2.set_epoch(2)
    assert ids(head) + ids(loader(ds2)) == full
    with pytest.raises(Exception, match="num_workers=0"):
        list(loader(ds, num_workers=1))
