# SPDX-License-Identifier: Apache-2.0
"""Elastic epochs in a real distributed job: torch.distributed with the gloo
backend (env:// rendezvous on loopback, an ephemeral port), processes
started here (not torchrun). A 2-process job takes QuaiDataset.state_dict()
after some batches; a 3-process job loads it and finishes the epoch: every
record of the epoch exactly once over both jobs."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (apt-get install "
                            "python3-torch)")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("this torch has no gloo backend", allow_module_level=True)

from conftest import FIXED_RECORDS, REPO  # noqa: E402

JOB = textwrap.dedent("""
    import json, sys, torch, torch.distributed as dist
    from quai.torch import QuaiDataset
    dist.init_process_group("gloo", init_method="env://")
    path, steps, state_in, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    ds = QuaiDataset(path, seed=13, batch=50, keep_tail=True, ids=True,
                     context={"pinned_bytes": 32 << 20})
    ds.set_epoch(2)
    if state_in != "-":
        with open(state_in) as f:
            sd = json.load(f)
        sd["state"] = bytes.fromhex(sd["state"])
        ds.load_state_dict(sd)
        ds.set_epoch(sd["epoch"])
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
    mine, it = [], iter(loader)
    for k, (_, ids) in enumerate(it):
        mine += ids.tolist()
        if k + 1 == steps:
            break
    sd = ds.state_dict()
    # Every rank in step writes the same state: check it, as a trainer may.
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, sd["state"].hex() if sd["state"] else None)
    ids = [None] * dist.get_world_size()
    dist.all_gather_object(ids, mine)
    if dist.get_rank() == 0:
        with open(out_path, "w") as f:
            json.dump({"ids": ids, "states": states, "epoch": sd["epoch"]}, f)
    dist.barrier()
    dist.destroy_process_group()
""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world, args):
    port = str(free_port())
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                   PYTHONPATH=os.pathsep.join([os.path.join(REPO, "python"),
                                               os.environ.get("PYTHONPATH", "")]))
        procs.append(subprocess.Popen([sys.executable, "-c", JOB] + [str(a) for a in args],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    errs = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        errs.append((p.returncode, err.decode(errors="replace")))
    for rc, err in errs:
        assert rc == 0, err


def test_two_ranks_checkpoint_three_ranks_finish(fixed_ds, tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    launch(2, [fixed_ds, 7, "-", first])
    a = json.loads(first.read_text())
    assert len(set(a["states"])) == 1 and a["states"][0], "ranks wrote different states"
    assert all(len(ids) == 7 * 50 for ids in a["ids"])
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"epoch": a["epoch"], "state": a["states"][0], "rank": 0,
                                 "world": 2}))
    launch(3, [fixed_ds, 10 ** 9, state, second])
    b = json.loads(second.read_text())
    before = [i for ids in a["ids"] for i in ids]
    after = [i for ids in b["ids"] for i in ids]
    assert len(before) + len(after) == FIXED_RECORDS
    assert sorted(before + after) == list(range(FIXED_RECORDS))
    # lockstep: the 3 ranks got the same count, but one record (KEEP)
    counts = sorted(len(ids) for ids in b["ids"])
    assert counts[-1] - counts[0] <= 1


# ---- any world, odd shapes: through the engine, not only the planner ---------------

import random  # noqa: E402

import quai  # noqa: E402
from conftest import compressible, pack  # noqa: E402


@pytest.fixture(scope="module")
def odd_files_ds(tmp_path_factory):
    """A files dataset with zero-byte records and a few very large ones
    (4 MiB, over the frame size: a frame of its own), among small ones."""
    rng = random.Random(18)
    top = tmp_path_factory.mktemp("odd") / "src"
    for i in range(240):
        d = top / ("d%d" % (i % 5))
        d.mkdir(parents=True, exist_ok=True)
        size = 0 if i % 9 == 0 else (4 << 20 if i in (17, 150, 151) else rng.randrange(1, 3000))
        (d / ("f%03d" % i)).write_bytes(compressible(rng, size) if size else b"")
    return pack(top, top.parent / "ds", "files")


@pytest.mark.parametrize("tail", [False, True])
def test_odd_files_dataset_at_many_worlds(odd_files_ds, tail):
    """Worlds 1 to 9 and 24: every record once (but fewer than world under
    the default tail), every rank the same count (+1 with keep_tail), and
    every record's bytes are the dataset's."""
    ctx = quai.Context(pinned_bytes=128 << 20, unlocked_ok=True)
    try:
        with quai.Dataset(odd_files_ds) as d:
            n = len(d)
            for world in list(range(1, 10)) + [24]:
                seen, counts = [], []
                for r in range(world):
                    got = 0
                    with quai.Stream(odd_files_ds, context=ctx, rank=r, world=world, seed=world,
                                     batch=4, prefetch=2, keep_tail=tail) as s:
                        for b in s:
                            for i, rid in enumerate(b.ids.tolist()):
                                assert b[i].tobytes() == d[rid]
                                seen.append(rid)
                            got += b.count
                    counts.append(got)
                assert len(seen) == len(set(seen)), "world %d: a record twice" % world
                assert len(seen) == (n if tail else n - n % world), world
                assert max(counts) - min(counts) <= (1 if tail else 0), (world, counts)
    finally:
        ctx.close()


def test_fewer_records_than_ranks_gives_empty_epochs(tmp_path):
    """10 records over 64 ranks: with keep_tail ranks 0-9 get one each, the
    others an empty epoch (end at once), and no rank fails."""
    src = tmp_path / "few.bin"
    src.write_bytes(bytes(range(10)) * 10)
    ds = pack(src, tmp_path / "few", "fixed:10")
    ctx = quai.Context(pinned_bytes=16 << 20, unlocked_ok=True)
    try:
        got = []
        for r in range(64):
            with quai.Stream(ds, context=ctx, rank=r, world=64, keep_tail=True) as s:
                ids = [i for b in s for i in b.ids.tolist()]
                assert len(ids) == (1 if r < 10 else 0)
                got += ids
        assert sorted(got) == list(range(10))
    finally:
        ctx.close()
