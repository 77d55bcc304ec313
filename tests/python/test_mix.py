# SPDX-License-Identifier: Apache-2.0
"""quai.Mix: several datasets in set proportions, deterministic and
resumable (issue 19, finding 7)."""
import collections

import pytest

import quai
from conftest import FIXED_RECORDS


@pytest.fixture(scope="module")
def two(fixed_ds, lines_ds):
    return [fixed_ds, lines_ds]


def take(m, n=None):
    out = []
    for k, (i, b) in enumerate(m):
        out.append((i, tuple(b.ids[:3].tolist())))
        if n is not None and k + 1 == n:
            break
    return out


def test_default_mix_is_every_batch_of_every_source_once(ctx, two):
    with quai.Mix(two, batch=100, seed=3, context=ctx) as m:
        assert m.counts == m.per_pass
        seen = collections.defaultdict(list)
        for i, b in m:
            seen[i].extend(b.ids.tolist())
        assert len(seen[0]) == len(set(seen[0])) == m.per_pass[0] * 100
        assert len(seen[1]) == len(set(seen[1])) == m.per_pass[1] * 100
        assert 0.9 * FIXED_RECORDS <= m.per_pass[0] * 100 <= FIXED_RECORDS


def test_weights_set_the_proportions_with_repeat(ctx, two):
    with quai.Mix(two, [3, 1], batches=400, batch=100, seed=3, context=ctx) as m:
        got = collections.Counter(i for i, *_ in take(m))
    assert got == {0: 300, 1: 100}  # 300 > one pass of source 0: repeated


def test_without_repeat_too_large_a_share_raises(ctx, two):
    with pytest.raises(ValueError, match="repeat=True"):
        quai.Mix(two, [3, 1], batches=400, batch=100, repeat=False, context=ctx)


def test_repeat_takes_a_new_pass(ctx, fixed_ds):
    with quai.Mix([fixed_ds], batch=100, context=ctx) as m:
        per = m.per_pass[0] * 100
    with quai.Mix([fixed_ds], batches=2 * per // 100, batch=100, seed=1, context=ctx) as m:
        ids = [x for _, b in m for x in b.ids.tolist()]
    first, second = ids[:per], ids[per:]
    assert len(set(first)) == per and len(set(second)) == per
    assert first != second  # another shuffle


def test_deterministic_and_epochs_differ(ctx, two):
    kw = dict(batch=100, seed=5, context=ctx)
    a = take(quai.Mix(two, [1, 1], batches=60, epoch=2, **kw))
    b = take(quai.Mix(two, [1, 1], batches=60, epoch=2, **kw))
    c = take(quai.Mix(two, [1, 1], batches=60, epoch=3, **kw))
    assert a == b and a != c
    assert collections.Counter(i for i, *_ in a) == {0: 30, 1: 30}


@pytest.mark.parametrize("n", [1, 17, 59])
def test_resume_continues_exactly(ctx, two, n):
    kw = dict(batch=100, seed=5, context=ctx)
    full = take(quai.Mix(two, [2, 1], batches=300, epoch=1, **kw))  # source 0 repeats
    m = quai.Mix(two, [2, 1], batches=300, epoch=1, **kw)
    head = take(m, n)
    st = m.state()
    m.close()
    rest = take(quai.Mix(two, [2, 1], batches=300, resume=st, **kw))
    assert head + rest == full


def test_a_state_of_another_mix_is_refused(ctx, two):
    m = quai.Mix(two, [2, 1], batches=30, batch=100, context=ctx)
    take(m, 3)
    with pytest.raises(ValueError, match="another mix"):
        quai.Mix(two, [1, 1], batches=30, batch=100, context=ctx, resume=m.state())


def test_ranks_share_each_source(ctx, two):
    per_rank = []
    for r in range(2):
        with quai.Mix(two, batch=50, seed=2, rank=r, world=2, context=ctx) as m:
            per_rank.append([(i, x) for i, b in m for x in b.ids.tolist()])
    for src in (0, 1):
        a = {x for i, x in per_rank[0] if i == src}
        b = {x for i, x in per_rank[1] if i == src}
        assert a and b and not a & b


def test_bad_states_are_refused_clearly(ctx, two):
    import json
    m = quai.Mix(two, [2, 1], batches=30, batch=100, context=ctx)
    take(m, 3)
    good = json.loads(m.state())
    bad = [b"", b"{", b"[]", b'{"version": 9}',
           json.dumps({**good, "taken": -1}).encode(),
           json.dumps({**good, "taken": 10 ** 6}).encode(),
           json.dumps({**good, "sources": [[0, "zz"], [0, None]]}).encode(),
           json.dumps({**good, "sources": [[0, None]]}).encode()]
    for b in bad:
        with pytest.raises(ValueError, match="Mix"):
            quai.Mix(two, [2, 1], batches=30, batch=100, context=ctx, resume=b)
    # a stream state that is not one: the library says so
    st = json.dumps({**good, "sources": [[0, "00" * 64], [0, None]]}).encode()
    with pytest.raises(quai.Error):
        quai.Mix(two, [2, 1], batches=30, batch=100, context=ctx, resume=st)
