# SPDX-License-Identifier: Apache-2.0
"""Batch lifetimes (issue 19, findings 1 and 2): zero copy, and safe.

A batch's memory goes back to the pool only when the Batch and every view
over it are gone; views are read-only; closing a stream or a context with
live views never frees memory under them; a stream whose slots are all held
by live batches raises quai.PoolHeldError instead of hanging. The scenarios
that would crash are also run in a child process, and, where an ASan build
of libquai exists (build/asan), under AddressSanitizer."""
import gc
import os
import subprocess
import sys
import textwrap
import warnings
import weakref

import pytest

import quai
from conftest import REPO


def test_views_kept_across_batches_keep_their_records(ctx, fixed_ds):
    """Finding 1: views kept past later batches still hold their records."""
    with quai.Dataset(fixed_ds) as d, quai.Stream(fixed_ds, context=ctx, batch=100,
                                                 prefetch=8) as s:
        kept = []
        for k, b in enumerate(s):
            if k % 5 == 0 and len(kept) < 4:
                kept.append((b.records(), b.ids))  # views only, no copy
            if k == 40:
                break
        assert len(kept) == 4
        for recs, ids in kept:
            for i in (0, 57, 99):
                assert recs[i].tobytes() == d[int(ids[i])]


def test_views_are_read_only(ctx, fixed_ds):
    with quai.Stream(fixed_ds, context=ctx, batch=100) as s:
        b = next(s)
        for v in (b.data, b.records(), b.ids, b.offsets, b[3]):
            assert not v.flags.writeable
            with pytest.raises(ValueError):
                v[0] = 1
            with pytest.raises(ValueError):
                v.setflags(write=True)


def test_memory_returns_when_the_last_reference_goes(ctx, fixed_ds):
    with quai.Stream(fixed_ds, context=ctx, batch=100) as s:
        a = next(s)
        b = next(s)
        assert not a.released and s.live_batches == 2  # next() does not take a
        v = a.records()[10:20]  # a slice of a view still holds the memory
        slot = weakref.ref(a._slot)
        del a
        gc.collect()
        assert slot().live and s.live_batches == 2
        assert v[0].tobytes()
        del v
        assert slot() is None and s.live_batches == 1  # at once, no gc needed
        del b
        assert s.live_batches == 0


def test_release_ends_access_but_not_views(ctx, fixed_ds):
    with quai.Dataset(fixed_ds) as d, quai.Stream(fixed_ds, context=ctx, batch=100) as s:
        b = next(s)
        v, ids = b.records(), b.ids
        b.release()
        b.release()  # idempotent
        assert b.released and b.count == 100 and b.index == 0
        for attr in ("data", "ids", "offsets"):
            with pytest.raises(quai.ClosedError, match="released"):
                getattr(b, attr)
        with pytest.raises(quai.ClosedError):
            b[0]
        with pytest.raises(quai.ClosedError):
            b.copy()
        with pytest.raises(quai.ClosedError):
            b.records()
        assert s.live_batches == 1  # the views still hold it
        for _ in range(6):
            next(s)  # the pool moves on; v's memory is not reused
        assert v[42].tobytes() == d[int(ids[42])]
        del v, ids
        gc.collect()
        # only the batches taken since are alive, none of them referenced
        assert s.live_batches == 0


def test_with_batch_releases_at_once(ctx, fixed_ds):
    with quai.Stream(fixed_ds, context=ctx, batch=10) as s:
        with next(s) as b:
            b.data
        assert b.released and s.live_batches == 0


def test_batches_kept_past_the_prefetch_window(ctx, fixed_ds):
    """Keeping batches longer than prefetch batches does not block the
    stream: a kept batch keeps its memory, its slot gets another."""
    with quai.Dataset(fixed_ds) as d, quai.Stream(fixed_ds, context=ctx, batch=100,
                                                 prefetch=2) as s:
        kept = [next(s) for _ in range(10)]
        n = sum(b.count for b in s)
        assert n + 1000 == s.stats()["records"]
        for b in kept:
            assert b[7].tobytes() == d[int(b.ids[7])]
        assert s.live_batches == 10


def test_live_batches_beyond_the_budget_raise_instead_of_hanging(ctx, fixed_ds):
    """quai_next() would wait for memory that only the user can free: it
    reports it, with the count, and the stream goes on once one is freed."""
    with quai.Stream(fixed_ds, context=ctx, batch=100, prefetch=2) as s:
        ws = s.stats()["working_set_bytes"]
    with quai.Stream(fixed_ds, context=ctx, batch=100, prefetch=2, budget=ws) as s:
        kept = [next(s), next(s)]
        with pytest.raises(quai.PoolHeldError, match=r"2 batches of this stream are still "
                           r"alive.*budget=") as e:
            next(s)
        assert e.value.code < 0 and "batch 2" in str(e.value)
        kept.pop(0)
        b = next(s)  # memory is free again: the stream goes on where it was
        assert b.index == 2
        kept.clear()
        del b
        rest = sum(x.count for x in s)
        assert 300 + rest == s.stats()["records"]


def test_a_list_of_a_stream_is_valid(ctx, fixed_ds):
    with quai.Dataset(fixed_ds) as d, quai.Stream(fixed_ds, context=ctx, batch=1000) as s:
        batches = list(s)
        assert all(not b.released for b in batches)
        assert all(b[1].tobytes() == d[int(b.ids[1])] for b in batches)


def test_hold_only_widens_prefetch(ctx, fixed_ds):
    with quai.Stream(fixed_ds, context=ctx, batch=100, hold=2) as s:
        kept = [next(s) for _ in range(8)]
        assert not any(b.released for b in kept)
    with pytest.raises(ValueError, match="prefetch"):
        quai.Stream("/nonexistent", hold=4, prefetch=4)


def test_closing_a_stream_with_live_views(fixed_ds):
    with quai.Dataset(fixed_ds) as d, quai.Context(pinned_bytes=32 << 20, workers=1) as c:
        s = quai.Stream(fixed_ds, context=c, batch=100)
        b = next(s)
        v, ids = b.records(), b.ids
        s.close()
        assert s.closed and b.released
        with pytest.raises(quai.ClosedError):
            next(s)
        with pytest.raises(quai.ClosedError):
            b.data
        with pytest.raises(quai.ClosedError):
            s.state()
        # a second stream on the same pool cannot take v's memory
        with quai.Stream(fixed_ds, context=c, batch=100, seed=99) as s2:
            for x in s2:
                pass
        assert v[5].tobytes() == d[int(ids[5])]
        assert s._h is not None  # the C stream waits for the views
        del b, v, ids
        gc.collect()
        assert s._h is None and s.live_batches == 0


def test_closing_the_context_with_live_views_warns_and_waits(fixed_ds):
    """Finding 2: no crash; the pool stays mapped under the views, with a
    ResourceWarning that says how many batches are alive."""
    with quai.Dataset(fixed_ds) as d:
        c = quai.Context(pinned_bytes=32 << 20, workers=1)
        s = quai.Stream(fixed_ds, context=c, batch=100, prefetch=4)
        views = [(x.records(), x.ids) for x in (next(s), next(s))]
        assert c.live_batches == 2
        with pytest.warns(ResourceWarning, match="2 batches are still alive"):
            c.close()
        assert c.closed and s.closed
        with pytest.raises(quai.ClosedError):
            c.info()
        with pytest.raises(quai.ClosedError):
            quai.Stream(fixed_ds, context=c)
        assert c._h is not None  # not freed under the views
        for recs, ids in views:
            assert recs[99].tobytes() == d[int(ids[99])]
        del recs, ids
        views.pop()
        gc.collect()
        assert c._h is not None
        views.clear()
        gc.collect()
        assert c._h is None and s._h is None  # the last view gone: all freed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with quai.Context(pinned_bytes=16 << 20, workers=1) as c2:
            with quai.Stream(fixed_ds, context=c2, batch=100) as s2:
                next(s2)
        assert c2._h is None  # nothing alive: freed at once, no warning


def test_release_from_another_thread(ctx, fixed_ds):
    """A batch may be released by another thread (one that copies it to a
    GPU, say) while this one takes the next."""
    import threading
    from conftest import FIXED_RECORDS
    with quai.Stream(fixed_ds, context=ctx, batch=64, keep_tail=True) as s:
        done = []
        n = 0
        for b in s:
            t = threading.Thread(target=b.release)
            t.start()
            done.append(t)
            n += b.count
            del b
        for t in done:
            t.join()
    assert n == FIXED_RECORDS


# The scenarios of findings 1 and 2 in a child process, so that a crash is a
# failed test rather than a dead test run; also run under ASan.
CHILD = textwrap.dedent("""
    import gc, sys, warnings
    import quai
    warnings.simplefilter("ignore", ResourceWarning)
    path = sys.argv[1]
    d = quai.Dataset(path)
    want = {}
    c = quai.Context(pinned_bytes=16 << 20, workers=2)
    s = quai.Stream(path, context=c, batch=64, prefetch=6)
    kept = []
    for k, b in enumerate(s):
        if k % 3 == 0 and len(kept) < 4:
            kept.append((b.records(), b.ids, b.data[5:70]))
        if k == 20:
            break
    del b
    c.close()  # with live views: closed for use, freed when they are gone
    for recs, ids, part in kept:
        assert recs[63].tobytes() == d[int(ids[63])]
        assert part.tobytes() == (d[int(ids[0])] + d[int(ids[1])])[5:70]
    del recs, ids, part
    s2 = quai.Stream(path, batch=64)  # the default context: another pool
    n = sum(x.count for x in s2)
    kept.clear()
    gc.collect()
    assert c._h is None and s._h is None
    # released views, a closed stream, explicit releases from threads
    s3 = quai.Stream(path, context=quai.Context(pinned_bytes=16 << 20), batch=64)
    b = next(s3)
    v, i0 = b.records(), int(b.ids[0])
    b.release()
    s3.context.close()
    assert v[0].tobytes() == d[i0]
    del v, b
    gc.collect()
    print("ok", n)
""")


def run_child(fixed_ds, env_extra=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(REPO, "python"), os.environ.get("PYTHONPATH", "")]))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", CHILD, fixed_ds], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)


def test_early_close_does_not_crash(fixed_ds):
    p = run_child(fixed_ds)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.startswith(b"ok ")


def _asan_runtime():
    try:
        out = subprocess.run(["gcc", "-print-file-name=libasan.so"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=30).stdout.decode().strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return os.path.realpath(out) if out and os.path.isabs(out) and os.path.exists(out) else None


def test_early_close_under_asan(fixed_ds):
    """The same child with libquai built with -Db_sanitize=address,undefined
    (build/asan, or $QUAI_ASAN_LIB) and libasan preloaded into Python: a use
    after free or an overflow in the pool under a view aborts it. Leak
    detection is off: the interpreter itself keeps memory at exit."""
    lib = os.environ.get("QUAI_ASAN_LIB") or os.path.join(REPO, "build", "asan", "libquai.so")
    rt = _asan_runtime()
    if not os.path.exists(lib):
        pytest.skip("no ASan build of libquai at %s (meson setup build/asan "
                    "-Db_sanitize=address,undefined; or set QUAI_ASAN_LIB)" % lib)
    if rt is None:
        pytest.skip("no libasan.so found by gcc -print-file-name")
    p = run_child(fixed_ds, {"QUAI_LIB": lib, "LD_PRELOAD": rt,
                             "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
                             "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"})
    assert p.returncode == 0, p.stderr.decode()[-4000:]
    assert p.stdout.startswith(b"ok ")
    assert b"ERROR: AddressSanitizer" not in p.stderr
