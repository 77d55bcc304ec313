# SPDX-License-Identifier: Apache-2.0
"""quai.rank_from_env(): a rank's place in its job from srun's or torchrun's
variables (quai_rank_from_env() in the C library)."""
import os
import subprocess

import pytest

import quai

VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for v in VARS:
        monkeypatch.delenv(v, raising=False)


def test_single_process_without_a_launcher():
    assert quai.rank_from_env() == (0, 1, 0)


def test_srun_variables(monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "6")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "2")
    assert quai.rank_from_env() == (6, 8, 2)


def test_torchrun_variables_come_first(monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "6")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert quai.rank_from_env() == (1, 2, 1)


@pytest.mark.parametrize("rank,world,named", [
    ("x", "4", "SLURM_PROCID"), ("4", "4", "not a rank of $SLURM_NTASKS=4"),
    ("0", "0", "not a rank"), ("1", "+4", "SLURM_NTASKS"),
])
def test_malformed_values_are_named(monkeypatch, rank, world, named):
    monkeypatch.setenv("SLURM_PROCID", rank)
    monkeypatch.setenv("SLURM_NTASKS", world)
    with pytest.raises(quai.InvalidArgumentError, match=named.replace("$", r"\$")):
        quai.rank_from_env()


def test_a_stream_per_rank_covers_the_epoch_once(tmp_path, monkeypatch):
    """Each rank's stream, with rank and world from the environment, gets
    its share; together they deliver every record once."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"line %d\n" % i for i in range(5000)))
    ds = str(tmp_path / "ds")
    subprocess.run([os.environ.get("QUAI_BIN", "quai"), "pack", "-q", "--records", "lines",
                    "--frame-size", "4K", str(src), ds], check=True,
                   env=dict(os.environ, QUAI_CONF=str(tmp_path / "none.conf")))
    seen = []
    for r in range(4):
        monkeypatch.setenv("SLURM_PROCID", str(r))
        monkeypatch.setenv("SLURM_NTASKS", "4")
        rank, world, _ = quai.rank_from_env()
        ctx = quai.Context(pinned_bytes=6 << 20)
        with quai.Stream(ds, rank=rank, world=world, keep_tail=True, batch=64, context=ctx) as s:
            for b in s:
                seen.extend(int(i) for i in b.ids)
                b.release()
        ctx.close()
    assert sorted(seen) == list(range(5000))
