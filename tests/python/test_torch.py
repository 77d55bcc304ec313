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
