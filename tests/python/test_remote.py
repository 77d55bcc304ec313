# SPDX-License-Identifier: Apache-2.0
"""Remote mode: a stream of quai://HOST:PORT/NAME, served by a real quaid on
loopback, delivers exactly the batches of the embedded stream of the same
dataset and options: the same ids, bytes and resume states, batch by batch,
and a remote position resumes embedded (and the other way round)."""
import os
import socket
import subprocess
import threading
import time

import pytest

import quai
from conftest import FIXED_RECORDS, QUAI_BIN

QUAID_BIN = os.environ.get("QUAID_BIN") or os.path.join(os.path.dirname(QUAI_BIN), "quaid")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(datadir, fixed_ds, lines_ds, files_ds, munged):
    if not os.access(QUAID_BIN, os.X_OK):
        pytest.skip("no quaid binary at %s (set QUAID_BIN)" % QUAID_BIN)
    port = free_port()
    conf = datadir / "quaid.conf"
    conf.write_text("listen = 127.0.0.1:%d\nroots = %s\npinned = 256M\n"
                    "client_memory = 64M\nidle_timeout = 20\nmunge_socket = %s\n"
                    "rule_tests = allow all\n" % (port, datadir, munged.socket))
    log = datadir / "quaid.log"
    env = dict(os.environ, LC_ALL="C", QUAI_CONF=str(datadir / "no-such.conf"))
    with open(log, "ab") as f:
        p = subprocess.Popen([QUAID_BIN, "--config", str(conf)], stdin=subprocess.DEVNULL,
                             stdout=f, stderr=f, env=env)
    deadline = time.monotonic() + 30
    while b"listening on" not in log.read_bytes():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            pytest.fail("quaid did not start: %s" % log.read_text())
        time.sleep(0.02)
    yield "quai://127.0.0.1:%d/" % port
    p.terminate()
    assert p.wait(timeout=30) == 0, log.read_text()
    text = log.read_text()
    for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert mark not in text, text


def batches(stream, limit=None):
    """(index, ids, bytes, offsets, state after) of each batch, copied."""
    out = []
    for b in stream:
        with b:
            out.append((b.index, b.ids.tolist(), bytes(b.data), b.offsets.tolist(),
                        stream.state()))
        if limit is not None and len(out) == limit:
            break
    return out


CASES = [
    dict(),
    dict(world=3, rank=2, seed=11),
    dict(world=4, rank=1, seed=5, keep_tail=True, batch=100),
    dict(shuffle=False, batch=7, epoch=3),
    dict(world=2, rank=0, batch_bytes=20000, seed=9),
    dict(world=2, rank=1, window=4, prefetch=2, batch=33, keep_tail=True),
]


@pytest.mark.parametrize("kind", ["fixed", "lines", "files"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_remote_equals_embedded(server, ctx, kind, case, fixed_ds, lines_ds, files_ds):
    local = {"fixed": fixed_ds, "lines": lines_ds, "files": files_ds}[kind]
    opts = CASES[case]
    with quai.Stream(local, context=ctx, **opts) as s:
        want = batches(s)
    with quai.Stream(server + kind, context=ctx, **opts) as s:
        got = batches(s)
        stats = s.stats()
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == w
    assert stats["batches"] == len(want)
    assert stats["records"] == sum(len(w[1]) for w in want)


def test_remote_position_resumes_embedded_and_back(server, ctx, lines_ds):
    opts = dict(world=2, rank=1, seed=3, batch=50)
    with quai.Stream(lines_ds, context=ctx, **opts) as s:
        want = batches(s)
    with quai.Stream(server + "lines", context=ctx, **opts) as s:
        head = batches(s, limit=5)
        state = s.state()
    assert head == want[:5]
    with quai.Stream(lines_ds, context=ctx, resume=state, world=2, rank=1, batch=50) as s:
        tail = batches(s)
    assert [b[1] for b in tail] == [b[1] for b in want[5:]]
    # And an embedded position resumes remotely.
    with quai.Stream(server + "lines", context=ctx, resume=want[2][4], world=2, rank=1,
                     batch=50) as s:
        rest = batches(s)
    assert [b[1] for b in rest] == [b[1] for b in want[3:]]


def test_remote_global_batches_are_the_same_at_any_world(server, ctx, fixed_ds):
    """Through quaid, with global_batches: global batch k (the union of every
    rank's k-th batch) is the same set at world 2, 3 and 6, and after a
    state taken at world 2 a world-3 run goes on with the next global
    batches."""
    G = 60

    def global_batches(world, seed=7, **kw):
        per_rank = []
        for r in range(world):
            with quai.Stream(server + "fixed", context=ctx, rank=r, world=world, seed=seed,
                             batch=G, global_batches=True, **kw) as s:
                per_rank.append([b.ids.tolist() for b in s])
        assert len({len(p) for p in per_rank}) == 1
        return [sorted(i for p in per_rank for i in p[k]) for k in range(len(per_rank[0]))]

    want = global_batches(1)
    assert len(want) == FIXED_RECORDS // G
    assert global_batches(2) == want
    assert global_batches(3) == global_batches(6) == want
    with quai.Stream(server + "fixed", context=ctx, rank=1, world=2, seed=7, batch=G,
                     global_batches=True) as s:
        for _ in range(4):
            next(s)
        state = s.state()
    assert global_batches(3, resume=state, seed=0) == want[4:]


def test_many_remote_streams_at_once(server, ctx, fixed_ds, lines_ds, files_ds):
    """Several streams of different datasets and ranks, on one context, in
    threads: each gets exactly its embedded batches."""
    jobs = [("fixed", fixed_ds, dict(world=2, rank=0)), ("fixed", fixed_ds, dict(world=2, rank=1)),
            ("lines", lines_ds, dict(world=3, rank=2, batch=64)),
            ("files", files_ds, dict(seed=4, batch=16))]
    results, errors = {}, []

    def run(i, name, opts):
        try:
            with quai.Stream(server + name, context=ctx, **opts) as s:
                results[i] = batches(s)
        except Exception as e:  # reported below, on the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, n, o)) for i, (n, _, o) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for i, (_, local, opts) in enumerate(jobs):
        with quai.Stream(local, context=ctx, **opts) as s:
            assert results[i] == batches(s)


def test_remote_errors(server, ctx):
    with pytest.raises(quai.Error) as e:
        quai.Stream(server + "no-such-dataset", context=ctx)
    assert "no-such-dataset" in str(e.value)
    with pytest.raises(quai.Error) as e:
        quai.Stream(server + "fixed", context=ctx, world=2, rank=5)
    with pytest.raises(quai.Error) as e:
        quai.Stream("quai://127.0.0.1:1/fixed", context=ctx)


def test_closing_with_batches_held(server, ctx):
    s = quai.Stream(server + "fixed", context=ctx, hold=2)
    held = [next(s), next(s)]
    s.close()
    assert all(b.released for b in held)
    # The server keeps serving.
    with quai.Stream(server + "fixed", context=ctx, batch=1000) as s2:
        assert sum(len(b) for b in s2) > 0


def test_remote_views_kept_past_the_ring_raise_instead_of_hanging(server, ctx, fixed_ds):
    """A remote stream's batches live in a ring of 2 x prefetch slots in the
    pool, never reused while held: keeping them alive ends in
    quai.PoolHeldError with the count, not a hang; dropping one lets the
    stream go on, and the kept views hold their records."""
    with quai.Dataset(fixed_ds) as d, quai.Stream(server + "fixed", context=ctx, batch=100,
                                                 prefetch=3) as s:
        kept = []
        with pytest.raises(quai.PoolHeldError, match=r"batches of this stream are still alive"
                           r".*prefetch=3") as e:
            for _ in range(7):
                b = next(s)
                kept.append((b.records(), b.ids))
                del b
        assert 3 <= len(kept) <= 6 and "%d batches" % len(kept) in str(e.value)
        kept.pop(0)
        b = next(s)
        assert b[0].tobytes() == d[int(b.ids[0])]
        for recs, ids in kept:
            assert recs[50].tobytes() == d[int(ids[50])]
