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
