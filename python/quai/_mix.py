# SPDX-License-Identifier: Apache-2.0
"""Mix: one stream of batches over several datasets, in set proportions."""
import json
import threading

import numpy as np

from ._core import Stream, _uint

# A source's passes within mixed epoch e are its epochs e * _STRIDE + pass:
# distinct shuffles, and a position that needs no other state.
_STRIDE = 1 << 16
_VERSION = 1


def _apportion(total, weights):
    """Integers summing to total, proportional to weights (largest
    remainders, ties to the earlier source)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = w / w.sum() * total
    n = np.floor(exact).astype(np.int64)
    rest = total - int(n.sum())
    order = sorted(range(len(w)), key=lambda i: (-(exact[i] - n[i]), i))
    for i in order[:rest]:
        n[i] += 1
    return [int(x) for x in n]


def _parse_state(resume):
    """A state from Mix.state(), checked field by field: anything else
    raises ValueError saying what is wrong."""
    try:
        saved = json.loads(bytes(resume).decode())
    except (TypeError, ValueError) as e:
        raise ValueError("Mix: resume= is not a state from Mix.state() (%s)" % e) from None
    if not isinstance(saved, dict) or saved.get("version") != _VERSION:
        raise ValueError("Mix: resume= is not a version %d state of quai.Mix" % _VERSION)
    ok = (isinstance(saved.get("epoch"), int) and saved["epoch"] >= 0 and
          isinstance(saved.get("taken"), int) and saved["taken"] >= 0 and
          isinstance(saved.get("fingerprint"), dict) and isinstance(saved.get("sources"), list))
    if ok:
        for src in saved["sources"]:
            ok = ok and isinstance(src, list) and len(src) == 2 and \
                isinstance(src[0], int) and 0 <= src[0] < _STRIDE and \
                (src[1] is None or isinstance(src[1], str))
    if not ok:
        raise ValueError("Mix: resume= is a damaged state of quai.Mix")
    return saved


class Mix:
    """One epoch of batches drawn from several datasets in set proportions.

    ``Mix(sources, weights=None, *, batches=None, repeat=True, rank=0,
    world=1, seed=0, epoch=0, batch=256, resume=None, context=None,
    **stream_kwargs)``; the stream keywords are quai.Stream's (window,
    shuffle, prefetch, budget, skip_corrupt).

    Each batch comes whole from one source (records are not mixed within a
    batch: the batches stay zero copy). Iterating yields ``(source, batch)``:
    the source's index in ``sources`` and a quai.Batch.

    - ``batches``: batches per rank in the mixed epoch; default the sum of
      the sources' own (one pass over each, at this rank and world).
    - ``weights``: each source's share of those batches (normalised; split
      exactly, by largest remainders); default the sources' own sizes, so
      that the default epoch is every batch of every source once.
    - ``repeat``: a source whose share exceeds one pass over it goes on into
      another pass (a new shuffle of it); with ``repeat=False`` that raises
      ValueError at the start of the epoch instead.

    Which source each of the epoch's batches comes from is a permutation
    seeded by ``(seed, epoch)``, the same on every rank; each source's
    batches are its own stream (this rank of the world), so the
    ranks together take each source's records once per pass. Deterministic,
    and resumable: ``state()`` is bytes to pass as ``resume=`` (same
    sources, weights, batches, seed and world; any difference raises). A
    Mix is used by one thread, like a Stream; ``close()`` closes its
    streams (the batches' lifetime rule is Batch's).
    """

    def __init__(self, sources, weights=None, *, batches=None, repeat=True, rank=0, world=1,
                 seed=0, epoch=0, batch=256, resume=None, context=None, **stream_kwargs):
        self.sources = [str(s) for s in sources]
        if not self.sources:
            raise ValueError("Mix needs at least one source")
        for k in ("keep_tail", "batch_bytes", "resume", "epoch", "rank", "world", "seed"):
            if k in stream_kwargs:
                raise TypeError("Mix: %s= is not a stream option here (every rank must take "
                                "as many batches of each source: the tail is dropped)" % k)
        self.rank = _uint("rank", rank, 32)
        self.world = _uint("world", world, 32, 1)
        self.seed = _uint("seed", seed, 64)
        self.batch = _uint("batch", batch, 32, 1)
        self.repeat = bool(repeat)
        self._kw = dict(stream_kwargs, context=context)
        self._streams = [None] * len(self.sources)
        self._pass = [0] * len(self.sources)
        self._states = [None] * len(self.sources)
        self._lock = threading.Lock()
        saved = None
        if resume is not None:
            saved = _parse_state(resume)
            epoch = saved["epoch"]
        self.epoch = _uint("epoch", epoch, 64)
        # Each source's batches per pass at this rank: from its stream.
        self.per_pass = []
        for i in range(len(self.sources)):
            s = self._open(i, 0, None)
            self.per_pass.append(s.stats()["records_total"] // self.batch)
        if weights is None:
            weights = self.per_pass
        if len(weights) != len(self.sources) or any(w < 0 for w in weights) or \
                not sum(weights):
            raise ValueError("Mix: give one non-negative weight per source, not all zero")
        self.weights = [float(w) for w in weights]
        total = sum(self.per_pass) if batches is None else _uint("batches", batches, 63)
        self.counts = _apportion(total, self.weights)
        for i, (n, b) in enumerate(zip(self.counts, self.per_pass)):
            if n and not b:
                raise ValueError("Mix: source %d (%s) has no full batch of %d at rank %d of %d"
                                 % (i, self.sources[i], self.batch, self.rank, self.world))
            if n > b and not self.repeat:
                raise ValueError(
                    "Mix: source %d (%s) is to give %d batches this epoch but has %d per pass "
                    "at rank %d of %d: pass repeat=True to take it more than once, or lower "
                    "its weight or batches=" % (i, self.sources[i], n, b, self.rank,
                                                 self.world))
        g = np.random.default_rng([self.seed, self.epoch, 0x6D6978])
        self.schedule = g.permutation(np.repeat(np.arange(len(self.sources)), self.counts))
        self.taken = 0
        if saved is not None:
            if saved["fingerprint"] != self._fingerprint():
                raise ValueError("Mix: this state is of another mix (sources, weights, batches, "
                                 "batch, seed or world differ): %s" % saved["fingerprint"])
            if len(saved["sources"]) != len(self.sources) or saved["taken"] > len(self.schedule):
                raise ValueError("Mix: resume= is a damaged state of quai.Mix")
            self.taken = saved["taken"]
            for i, (p, st) in enumerate(saved["sources"]):
                if p != 0 or st is not None:
                    try:
                        raw = None if st is None else bytes.fromhex(st)
                    except ValueError:
                        raise ValueError("Mix: resume= is a damaged state of quai.Mix") from None
                    self._open(i, p, raw)

    def _fingerprint(self):
        return {"sources": self.sources, "weights": self.weights, "counts": self.counts,
                "batch": self.batch, "seed": self.seed, "world": self.world}

    def _open(self, i, p, resume):
        old = self._streams[i]
        if old is not None:
            old.close()
        self._streams[i] = None
        s = Stream(self.sources[i], rank=self.rank, world=self.world, seed=self.seed,
                   epoch=self.epoch * _STRIDE + p, batch=self.batch, resume=resume, **self._kw)
        self._streams[i], self._pass[i], self._states[i] = s, p, resume
        return s

    def __len__(self):
        return len(self.schedule)

    def __iter__(self):
        return self

    def __next__(self):
        if self.taken >= len(self.schedule):
            raise StopIteration
        i = int(self.schedule[self.taken])
        s = self._streams[i]
        try:
            b = next(s)
        except StopIteration:
            # The pass is over: the next one (the share is more than a pass).
            s = self._open(i, self._pass[i] + 1, None)
            b = next(s)
        self._states[i] = s.state()
        self.taken += 1
        return i, b

    next = __next__

    def state(self):
        """The position after the batches taken so far, as bytes (JSON) for
        ``resume=``."""
        return json.dumps({
            "version": _VERSION, "epoch": self.epoch, "taken": self.taken,
            "fingerprint": self._fingerprint(),
            "sources": [[p, None if st is None else st.hex()]
                        for p, st in zip(self._pass, self._states)]}).encode()

    def close(self):
        for s in self._streams:
            if s is not None:
                s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<quai.Mix of %d sources, epoch %d, %d/%d batches>" % (
            len(self.sources), self.epoch, self.taken, len(self.schedule))
