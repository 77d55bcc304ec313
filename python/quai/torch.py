# SPDX-License-Identifier: Apache-2.0
"""PyTorch: quai streams as a torch.utils.data.IterableDataset.

    from quai.torch import QuaiDataset
    ds = QuaiDataset("/lustre/datasets/tokens", seed=17, batch=256, dtype=torch.int16)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
    for epoch in range(start, epochs):
        ds.set_epoch(epoch)
        for tokens in loader:          # (256, record_size // 2) int16, in pinned memory
            train_step(tokens.to(device))
            if time_to_checkpoint:
                save({"model": ..., "data": ds.state_dict()})

See QuaiDataset for the rank/world rules, workers, lifetimes and resumption;
DataLoader for exact states with worker processes; QuaiMapDataset and
FrameSampler for map-style access.
"""
import errno
import os
import pickle
import struct

import numpy as np
import torch
import torch.utils.data

from . import _core, _errors
from ._core import Context, Dataset, Stream

__all__ = ["DataLoader", "FrameSampler", "QuaiDataset", "QuaiMapDataset", "QuaiMixDataset",
           "rank_and_world"]


def rank_and_world():
    """(rank, world) of this process: torch.distributed's when it is
    initialised, else $RANK and $WORLD_SIZE, else Slurm's $SLURM_PROCID and
    $SLURM_NTASKS, else (0, 1). ($LOCAL_RANK is the process's index on its
    node, the GPU to use; it plays no part in which records a rank gets.)"""
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:
        pass
    for r, w in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if os.environ.get(r) is not None and os.environ.get(w) is not None:
            try:
                return int(os.environ[r]), int(os.environ[w])
            except ValueError:
                raise ValueError("$%s=%r and $%s=%r must be integers" %
                                 (r, os.environ[r], w, os.environ[w])) from None
    return 0, 1


_ITEMSIZE_OK = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
                torch.bfloat16, torch.float32, torch.float64)


class QuaiDataset(torch.utils.data.IterableDataset):
    """An IterableDataset that yields quai's batches as tensors, zero copy.

    ``QuaiDataset(uri, *, rank=None, world=None, epoch=0, dtype=torch.uint8,
    ids=False, record_size=None, context=None, transform=None,
    **stream_kwargs)``; the stream keywords are quai.Stream's (seed, batch,
    batch_bytes, partitions, window, shuffle, keep_tail, prefetch, budget,
    skip_corrupt, hold). ``transform(item)``, if given, is applied to each
    item on a thread of its own (in a worker process, in the worker), off
    the training thread; its result is what is yielded.

    Use it with ``DataLoader(ds, batch_size=None)``: quai makes the batches.

    Rank and world, unless given, are read when the dataset is constructed
    (so construct it after ``init_process_group``): see rank_and_world().

    What it yields, per batch: for a ``fixed`` dataset, a tensor of shape
    ``(count, record_size // dtype.itemsize)`` of ``dtype``, made with
    ``torch.frombuffer`` over the batch's pinned memory (no copy). torch 1.13
    has no uint16: read uint16 tokens as ``dtype=torch.int16`` (same bits;
    ``.to(torch.int32)`` or ``& 0xFFFF`` on the GPU if ids above 32767 must be
    non-negative). For ``lines`` and ``files`` datasets, a tuple
    ``(data, offsets)``: the records back to back (uint8) and the
    ``count + 1`` int64 offsets (record i is ``data[offsets[i]:offsets[i+1]]``).
    With ``ids=True``, the int64 global record ids are appended:
    ``(records, ids)`` or ``(data, offsets, ids)``.

    Lifetime: a tensor keeps its batch's memory for as long as it lives
    (torch.frombuffer holds the buffer, which holds the batch's owner):
    through later batches, the end of the epoch, the closing of the context.
    Keeping more than the stream's memory can spare raises
    quai.PoolHeldError with the count. Leave ``pin_memory=False`` in the
    DataLoader: the memory is already pinned (locked) by quai, and
    pin_memory would copy. Treat the tensors as read-only.

    Workers: ``num_workers=0`` is the recommended setting; quai already
    reads and decompresses on its own threads, outside the GIL. With
    ``num_workers=N > 0`` each worker streams its own share, as rank
    ``rank + world * worker_id`` of world ``world * N`` (any N, the same on
    every rank: together the workers of all ranks deliver the epoch once,
    but for a remainder of fewer than ``world * N`` records); each
    worker process has its own context (pass ``context={"pinned_bytes": ...}``
    to size it), and its batches are copied once into shared memory to cross
    to the main process (no zero copy there). ``set_epoch()`` and
    ``load_state_dict()`` reach the workers, persistent ones included,
    through a shared-memory plan they read as each iteration starts.

    Epochs and resumption: ``set_epoch(e)`` selects the epoch the next
    iteration streams (a state loaded for epoch e is kept). ``state_dict()`` is ``{"epoch": e, "state": bytes or
    None, "rank": r, "world": w}``: the position after the batches this
    process's iterator has taken (None: the start of the epoch), assuming as
    data-parallel training does that every rank has taken as many.
    ``load_state_dict()`` makes the next iteration deliver exactly the rest of
    that epoch, at any world size (and number of workers). With workers, the
    iteration happens in the worker processes, out of this object's sight:
    its state_dict() then raises, and quai.torch.DataLoader's is exact.
    """

    def __init__(self, uri, *, rank=None, world=None, epoch=0, dtype=torch.uint8, ids=False,
                 record_size=None, context=None, transform=None, **stream_kwargs):
        super().__init__()
        if transform is not None and not callable(transform):
            raise TypeError("transform must be callable, not %s" % type(transform).__name__)
        self.transform = transform
        for k in ("resume", "rank", "world", "epoch", "context"):
            stream_kwargs.pop(k, None)
        bad = set(stream_kwargs) - {"seed", "batch", "batch_bytes", "partitions", "window",
                                    "shuffle", "keep_tail", "prefetch", "budget",
                                    "skip_corrupt", "hold"}
        if bad:
            raise TypeError("QuaiDataset: unknown keyword(s) %s" % ", ".join(sorted(bad)))
        self.uri = os.fspath(uri)
        if rank is None and world is None:
            rank, world = rank_and_world()
        elif rank is None or world is None:
            raise ValueError("give rank and world together, or neither")
        if not 0 <= rank < world:
            raise ValueError("rank %d is not in [0, world=%d)" % (rank, world))
        self.rank, self.world = int(rank), int(world)
        self.epoch = _core._uint("epoch", epoch, 64)
        if not isinstance(dtype, torch.dtype) or dtype not in _ITEMSIZE_OK:
            raise TypeError("dtype must be one of %s" % ", ".join(map(str, _ITEMSIZE_OK)))
        self.dtype = dtype
        self.ids = bool(ids)
        if not (context is None or isinstance(context, (Context, dict))):
            raise TypeError("context must be a quai.Context, a dict of Context options, or None")
        self._context_arg = context
        self.stream_kwargs = stream_kwargs
        if record_size is None and not _core._is_remote(self.uri):
            # The stream does not say what kind of records it carries:
            # ask the dataset once.
            with Dataset(self.uri) as d:
                info = d.info()
            record_size = info["fixed_size"] if info["kind"] == "fixed" else 0
        self.record_size = int(record_size or 0)
        self._itemsize = _itemsize(dtype)
        if self.record_size % self._itemsize:
            raise ValueError("records of %d bytes are not a whole number of %s" %
                             (self.record_size, dtype))
        self._resume = None  # a state (bytes, or one per worker) for the next iteration
        self._state = None  # the position of the last iteration, when it ended
        self._stream = None
        self._threaded = False  # a transform thread runs ahead of the stream's user
        self._pos = None  # then: the position after the last batch handed out
        self._ctx = None
        # What DataLoader worker processes read when their iteration starts,
        # persistent ones included: the epoch and the state to resume from.
        # Shared memory, so that set_epoch() and load_state_dict() reach
        # workers that were started before them.
        self._plan = torch.zeros(_PLAN_BYTES, dtype=torch.uint8).share_memory_()
        self._publish()

    # -- pickling into DataLoader workers: only the description travels --
    def __getstate__(self):
        d = dict(self.__dict__)
        d["_stream"] = d["_ctx"] = None
        if isinstance(d["_context_arg"], Context):
            d["_context_arg"] = None  # a context does not cross processes
        return d

    def set_epoch(self, epoch):
        """The epoch the next iteration streams: from its start, or, for the
        epoch of a state just loaded with load_state_dict(), from there.
        Reaches DataLoader workers, persistent ones included."""
        epoch = _core._uint("epoch", epoch, 64)
        if epoch != self.epoch:
            self._resume = None
        self.epoch = epoch
        self._state = None
        self._publish()

    # -- the plan workers read (see _PLAN_BYTES) --
    def _publish(self):
        blob = pickle.dumps((self.epoch, self._resume))
        if len(blob) > _PLAN_BYTES - _PLAN_HEAD:
            raise ValueError("QuaiDataset: a state of %d workers is too large to hand to them"
                             % len(self._resume))
        view = self._plan.numpy()
        view[:_PLAN_HEAD] = 0  # every worker's "consumed" and "ran" flags
        view[_PLAN_HEAD:_PLAN_HEAD + len(blob)] = np.frombuffer(blob, np.uint8)
        view[0:8] = np.frombuffer(struct.pack("<Q", len(blob)), np.uint8)

    def _read_plan(self, worker):
        """(epoch, resume) for this worker's iteration; the resume state is
        consumed: a later iteration of the same worker starts the epoch."""
        view = self._plan.numpy()
        n = struct.unpack("<Q", view[0:8].tobytes())[0]
        epoch, resume = pickle.loads(view[_PLAN_HEAD:_PLAN_HEAD + n].tobytes())
        view[_PLAN_RAN] = 1
        if view[_PLAN_USED + worker]:
            resume = None
        view[_PLAN_USED + worker] = 1
        return epoch, resume

    def _context(self):
        arg = self._context_arg
        if isinstance(arg, Context):
            if arg.closed:
                raise _errors.ClosedError(
                    "QuaiDataset: the context given is closed or belongs to the parent process "
                    "(with num_workers > 0, pass context as a dict of Context options)")
            return arg
        if arg is None:
            return _core.default_context(_core._is_remote(self.uri))
        if self._ctx is None or self._ctx.closed:
            self._ctx = Context(**arg)
        return self._ctx

    def __iter__(self):
        return self._iter(False)

    def _iter(self, tagged):
        info = torch.utils.data.get_worker_info()
        rank, world = self.rank, self.world
        if info is not None:
            # Worker w of rank r is rank r + world*w of world*N: together
            # the workers of all ranks deliver the epoch once (any N).
            rank, world = rank + world * info.id, world * info.num_workers
            if info.id >= _PLAN_WORKERS:
                raise ValueError("QuaiDataset: at most %d DataLoader workers" % _PLAN_WORKERS)
            epoch, resume = self._read_plan(info.id)
            if isinstance(resume, list):
                if len(resume) != info.num_workers:
                    raise _errors.InvalidArgumentError(
                        -errno.EINVAL, _uneven(len(resume), "%d DataLoader workers" %
                                               info.num_workers))
                resume = resume[info.id]
        else:
            epoch = self.epoch
            resume, self._resume = self._resume, None
            if isinstance(resume, list):
                self._resume = resume
                raise _errors.InvalidArgumentError(-errno.EINVAL, _uneven(len(resume),
                                                                          "num_workers=0"))
        kw = dict(self.stream_kwargs)
        try:
            stream = Stream(self.uri, rank=rank, world=world, epoch=epoch, resume=resume,
                            context=self._context(), **kw)
        except _errors.InvalidArgumentError as e:
            if info is not None:
                raise _errors.InvalidArgumentError(
                    e.code, "%s (with %d DataLoader workers, each worker is a rank of world "
                    "%d x %d = %d)" %
                    (e.detail, info.num_workers, self.world, info.num_workers, world)) from None
            raise
        if info is None:
            if self._stream is not None:
                self._stream.close()
            self._stream, self._state = stream, None
            if self.transform is not None:
                self._threaded, self._pos = True, resume
                return self._generate_threaded(stream)
            self._threaded = False
        return self._generate(stream, info, tagged)

    def _generate_threaded(self, stream):
        """The transform runs on a thread of its own, a couple of batches
        ahead, off the training thread; the position handed out is tracked
        per batch, so state_dict() stays exact."""
        import queue
        import threading
        fixed, width = self.record_size, self.record_size // self._itemsize
        dtype, want_ids, transform = self.dtype, self.ids, self.transform
        q = queue.Queue(maxsize=2)
        stop = threading.Event()
        end = object()

        def put(item):
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    pass
            return False

        def work():
            try:
                for b in stream:
                    out = _convert(b, fixed, width, dtype, want_ids, False)
                    del b
                    out = transform(out)
                    if not put((out, stream.state(), None)):
                        return
                    del out
                put((end, stream.state(), None))
            except BaseException as e:  # handed to the training thread
                put((end, None, e))

        t = threading.Thread(target=work, name="quai-transform", daemon=True)
        t.start()
        try:
            while True:
                out, st, err = q.get()
                if err is not None:
                    raise err
                self._pos = st
                if out is end:
                    self._state = st
                    return
                yield out
                del out
        finally:
            stop.set()
            t.join()
            while not q.empty():
                q.get_nowait()
            if self._stream is stream:
                if self._state is None:
                    self._state = self._pos
                self._stream = None
            stream.close()

    def _generate(self, stream, info, tagged):
        fixed, width = self.record_size, self.record_size // self._itemsize
        dtype, want_ids = self.dtype, self.ids
        in_worker = info is not None
        transform = self.transform
        try:
            for b in stream:
                out = _convert(b, fixed, width, dtype, want_ids, in_worker)
                del b  # the stream's next batch need not wait for this one
                if transform is not None:  # in a worker: off the training thread already
                    out = transform(out)
                if tagged:
                    # The position after this batch, for quai.torch.DataLoader's
                    # state_dict(): it sees which worker's batch it hands out.
                    out = _Tagged(out, info.id, stream.state())
                yield out
            if not in_worker:
                self._state = stream.state()
        finally:
            if self._stream is stream:
                if self._state is None and not stream.closed:
                    self._state = stream.state()
                self._stream = None
            stream.close()

    def state_dict(self):
        """{"epoch", "state", "rank", "world"}: where the iteration in this
        process stands (see the class documentation). Raises RuntimeError
        when the iteration ran in DataLoader worker processes, out of this
        object's sight: quai.torch.DataLoader's state_dict() is exact there."""
        s = self._stream
        if s is not None and not s.closed:
            state = self._pos if self._threaded else s.state()
        else:
            if self._plan.numpy()[_PLAN_RAN]:
                raise RuntimeError(
                    "QuaiDataset.state_dict(): this epoch ran in DataLoader worker processes, "
                    "which this object does not see; a state from here would be wrong. Use "
                    "quai.torch.DataLoader (a torch DataLoader whose state_dict() is exact "
                    "with workers), or num_workers=0")
            state = self._state if self._state is not None else self._resume
        sd = {"epoch": self.epoch, "state": state, "rank": self.rank, "world": self.world}
        if isinstance(state, list):
            sd["state"], sd["worker_states"] = None, state
        return sd

    def load_state_dict(self, sd):
        """Makes the next iteration deliver the rest of sd's epoch (exactly
        the records no rank had taken), at this dataset's rank and world.
        A state of quai.torch.DataLoader with ``worker_states`` resumes only
        with as many workers and the same world size (else the iteration
        raises, saying so)."""
        self.epoch = _core._uint("epoch", sd["epoch"], 64)
        ws = sd.get("worker_states")
        if ws is not None:
            if sd.get("world") not in (None, self.world):
                raise _errors.InvalidArgumentError(
                    -errno.EINVAL, "this state was saved by %d DataLoader workers at world "
                    "size %d after an uneven number of batches: it resumes exactly only at "
                    "world size %d (this dataset's is %d)" % (len(ws), sd["world"], sd["world"],
                                                              self.world))
            self._resume = [None if x is None else bytes(x) for x in ws]
        else:
            self._resume = None if sd.get("state") is None else bytes(sd["state"])
        self._state = None
        self._publish()

    def __repr__(self):
        return "<quai.torch.QuaiDataset %r rank %d of %d, epoch %d>" % (self.uri, self.rank,
                                                                        self.world, self.epoch)


# The plan shared with DataLoader workers: 8 bytes of length, a "ran" flag,
# a "consumed" flag per worker, then the pickled (epoch, resume).
_PLAN_WORKERS = 256
_PLAN_RAN = 8
_PLAN_USED = 9
_PLAN_HEAD = _PLAN_USED + _PLAN_WORKERS
_PLAN_BYTES = 64 << 10


def _uneven(n, now):
    return ("this state was saved by quai.torch.DataLoader with %d workers after a number of "
            "batches they had not all taken as many of: it resumes exactly only with "
            "num_workers=%d at the same world size, not with %s (save at a multiple of %d "
            "batches for a state that resumes anywhere)" % (n, n, now, n))


class _Tagged:
    """A worker's batch on its way to quai.torch.DataLoader, with the worker
    and the stream's position after it."""
    __slots__ = ("payload", "worker", "state")

    def __init__(self, payload, worker, state):
        self.payload, self.worker, self.state = payload, worker, state

    def __getstate__(self):
        return (self.payload, self.worker, self.state)

    def __setstate__(self, st):
        self.payload, self.worker, self.state = st

    def pin_memory(self):
        from torch.utils.data._utils.pin_memory import pin_memory
        return _Tagged(pin_memory(self.payload), self.worker, self.state)


class _TaggedDataset(torch.utils.data.IterableDataset):
    """What quai.torch.DataLoader hands to torch: the QuaiDataset, iterated
    with each batch tagged."""

    def __init__(self, ds):
        super().__init__()
        self.ds = ds

    def __iter__(self):
        return self.ds._iter(True)


class DataLoader(torch.utils.data.DataLoader):
    """A torch DataLoader over a QuaiDataset whose ``state_dict()`` is exact
    with worker processes, persistent or not (the same method names as
    torchdata's StatefulDataLoader, which Debian does not package).

    ``DataLoader(dataset, **kwargs)`` takes torch's keywords; ``batch_size``
    defaults to None (quai makes the batches). Each worker tags its batches
    with its position; the loader keeps, per worker, the position after the
    last batch it handed to you. ``state_dict()`` is then the dataset's
    ``{"epoch", "state", "rank", "world"}``: when the workers have all
    handed out as many batches, one state that resumes anywhere (any world
    size and number of workers); otherwise
    ``"worker_states"``, one per worker, which resumes exactly with the same
    number of workers and world size, and raises with any other.
    ``load_state_dict()`` loads either into the dataset. With
    ``num_workers=0`` both are the dataset's own.
    """

    def __init__(self, dataset, batch_size=None, **kwargs):
        if not isinstance(dataset, QuaiDataset):
            raise TypeError("quai.torch.DataLoader takes a quai.torch.QuaiDataset, not %s" %
                            type(dataset).__name__)
        self._qds = dataset
        self._pos = None
        workers = kwargs.get("num_workers", 0)
        super().__init__(_TaggedDataset(dataset) if workers else dataset,
                         batch_size=batch_size, **kwargs)

    def __iter__(self):
        it = super().__iter__()
        if not self.num_workers:
            return it
        ds = self._qds
        r = ds._resume
        if isinstance(r, list) and len(r) == self.num_workers:
            self._pos = list(r)
        else:
            self._pos = [r if not isinstance(r, list) else None] * self.num_workers
        self._epoch = ds.epoch
        ds._resume = None  # consumed by this iteration (the workers read the plan)
        return self._untag(it)

    def _untag(self, it):
        pos = self._pos
        for item in it:
            pos[item.worker] = item.state
            yield item.payload

    def state_dict(self):
        ds = self._qds
        if not self.num_workers or self._pos is None or self._epoch != ds.epoch:
            sd = dict(ds.state_dict()) if not self.num_workers else {
                "epoch": ds.epoch, "state": ds._resume, "rank": ds.rank, "world": ds.world}
            if isinstance(sd["state"], list):
                sd["state"], sd["worker_states"] = None, sd["state"]
            return sd
        sd = {"epoch": self._epoch, "state": None, "rank": ds.rank, "world": ds.world}
        if all(p == self._pos[0] for p in self._pos):
            sd["state"] = self._pos[0]
        else:
            sd["worker_states"] = list(self._pos)
        return sd

    def load_state_dict(self, sd):
        self._qds.load_state_dict(sd)
        self._pos = None


def _itemsize(dtype):
    return torch.empty((), dtype=dtype).element_size()


def _tensor(batch, addr, nbytes, dtype):
    """torch.frombuffer over nbytes at addr, the view tied to the batch."""
    if not nbytes:
        return torch.empty(0, dtype=dtype)
    # Writable: torch warns about read-only buffers, and quai never reads a
    # batch's memory back after handing it out.
    a = _core._array(batch._slot, addr, (nbytes,), _core._U8, readonly=False)
    return torch.frombuffer(a, dtype=dtype)


def _convert(b, fixed, width, dtype, want_ids, in_worker):
    cb = b._cb()
    n = cb.count
    if fixed:
        if cb.bytes != n * fixed:
            raise _errors.InvalidArgumentError(
                -errno.EINVAL, "batch %d holds %d bytes, not %d records of %d bytes: is "
                "record_size right?" % (cb.index, cb.bytes, n, fixed))
        out = (_tensor(b, cb.data, cb.bytes, dtype).view(n, width),)
    else:
        out = (_tensor(b, cb.data, cb.bytes, torch.uint8),
               _tensor(b, cb.offsets, 8 * (n + 1), torch.int64))
    if want_ids:
        out += (_tensor(b, cb.ids, 8 * n, torch.int64),)
    if in_worker:
        # The batch must cross to the main process: one copy, straight into
        # shared memory (torch would otherwise copy twice), made before the
        # batch is released.
        out = tuple(torch.empty_like(t).share_memory_().copy_(t) for t in out)
    return out[0] if len(out) == 1 else out


# ---- map-style ------------------------------------------------------------------------


class QuaiMapDataset(torch.utils.data.Dataset):
    """A map-style Dataset: ``ds[i]`` is record i, read through a small
    cache of decoded frames.

    ``QuaiMapDataset(path, *, dtype=torch.uint8, cache_bytes=64 << 20,
    ids=False)``. ``ds[i]`` is a tensor of the record's bytes viewed as
    ``dtype`` (a copy: it outlives the cache; for a ``fixed`` dataset of
    shape ``(record_size // itemsize,)``), or ``(record, i)`` with
    ``ids=True``. A record's frame is decoded (and verified) once, then kept
    in a least-recently-used cache of whole frames of at most
    ``cache_bytes``: records of one frame cost one decode between them. A
    uniformly random order over a dataset much larger than the cache still
    decodes a frame for most records; ``FrameSampler`` shuffles with
    locality (a random order of frames, records shuffled within windows of
    a few frames) so that every frame is decoded once per epoch.

    Each process (DataLoader workers included) opens the dataset on its
    first read: the object pickles as its description.
    """

    def __init__(self, path, *, dtype=torch.uint8, cache_bytes=64 << 20, ids=False):
        super().__init__()
        self.path = os.fspath(path)
        if not isinstance(dtype, torch.dtype) or dtype not in _ITEMSIZE_OK:
            raise TypeError("dtype must be one of %s" % ", ".join(map(str, _ITEMSIZE_OK)))
        self.dtype = dtype
        self.ids = bool(ids)
        self.cache_bytes = _core._uint("cache_bytes", cache_bytes, 64)
        with Dataset(self.path) as d:
            info = d.info()
        self._len = info["records"]
        self.record_size = info["fixed_size"] if info["kind"] == "fixed" else 0
        self._itemsize = _itemsize(dtype)
        if self.record_size % self._itemsize:
            raise ValueError("records of %d bytes are not a whole number of %s" %
                             (self.record_size, dtype))
        self._ds = None
        self._pid = None
        self._cache = None
        self.hits = self.misses = 0

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_ds"] = d["_cache"] = d["_pid"] = None
        return d

    def __len__(self):
        return self._len

    def _open(self):
        if self._ds is None or self._pid != os.getpid():
            import collections
            self._ds = Dataset(self.path)
            self._pid = os.getpid()
            self._cache = collections.OrderedDict()
            self._cached = 0
        return self._ds

    def _frame(self, d, i, loc):
        """The decoded frame of loc, from the cache or read now."""
        key = (loc.shard, loc.frame)
        cache = self._cache
        f = cache.get(key)
        if f is not None:
            cache.move_to_end(key)
            self.hits += 1
            return f
        self.misses += 1
        f = d._frame_bytes(i, loc)
        cache[key] = f
        self._cached += len(f)
        while self._cached > self.cache_bytes and len(cache) > 1:
            _, old = cache.popitem(last=False)
            self._cached -= len(old)
        return f

    def __getitem__(self, i):
        d = self._open()
        i = d._index(i)
        loc = d.locate(i)
        f = self._frame(d, i, loc)
        rec = np.frombuffer(f, np.uint8, loc.length, loc.offset)
        t = torch.from_numpy(rec.copy())
        if self.dtype != torch.uint8:
            t = t.view(self.dtype)
        return (t, i) if self.ids else t

    def frames(self):
        """[(first record, records)] of every frame, in dataset order."""
        d = self._open()
        out = []
        i, n = 0, self._len
        while i < n:
            loc = d.locate(i)
            key = (loc.shard, loc.frame)
            # the frame's end: gallop, then bisect, on locate()
            lo, step = i, 1
            while lo + step < n and (d.locate(lo + step).shard,
                                     d.locate(lo + step).frame) == key:
                lo += step
                step *= 2
            hi = min(lo + step, n)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                m = d.locate(mid)
                if (m.shard, m.frame) == key:
                    lo = mid
                else:
                    hi = mid
            out.append((i, lo + 1 - i))
            i = lo + 1
        return out

    def __repr__(self):
        return "<quai.torch.QuaiMapDataset %r, %d records>" % (self.path, self._len)


class FrameSampler(torch.utils.data.Sampler):
    """A shuffling sampler for QuaiMapDataset that keeps frame locality:
    each epoch, a random order of the dataset's frames, cut into windows of
    ``window`` frames, and a random order of the records of each window.
    Every record once per epoch; each frame decoded once when the cache
    holds ``window`` frames. Seeded by ``(seed, epoch)``: deterministic, the
    same on every rank. With ``world > 1`` rank r takes windows r, r +
    world, ... (rank and world default as QuaiDataset's). ``set_epoch(e)``
    as DistributedSampler's."""

    def __init__(self, dataset, *, seed=0, window=4, rank=None, world=None):
        if not isinstance(dataset, QuaiMapDataset):
            raise TypeError("FrameSampler takes a QuaiMapDataset")
        if rank is None and world is None:
            rank, world = rank_and_world()
        elif rank is None or world is None:
            raise ValueError("give rank and world together, or neither")
        if not 0 <= rank < world:
            raise ValueError("rank %d is not in [0, world=%d)" % (rank, world))
        self.rank, self.world = rank, world
        self.seed = _core._uint("seed", seed, 64)
        self.window = _core._uint("window", window, 31, 1)
        self.epoch = 0
        self._frames = dataset.frames()

    def set_epoch(self, epoch):
        self.epoch = _core._uint("epoch", epoch, 64)

    def _order(self):
        g = np.random.default_rng([self.seed, self.epoch])
        frames = [self._frames[k] for k in g.permutation(len(self._frames))]
        out = []
        for w, start in enumerate(range(0, len(frames), self.window)):
            if w % self.world != self.rank:
                continue
            idx = np.concatenate([np.arange(a, a + n) for a, n in
                                  frames[start:start + self.window]])
            out.append(g.permutation(idx) if len(idx) else idx)
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def __iter__(self):
        return iter(self._order().tolist())

    def __len__(self):
        return len(self._order())


# ---- several datasets ------------------------------------------------------------------


class QuaiMixDataset(torch.utils.data.IterableDataset):
    """quai.Mix as an IterableDataset: batches of several datasets in set
    proportions, each yielded as ``(records, source)`` (``(records, ids,
    source)`` with ``ids=True``), records as QuaiDataset yields them (zero
    copy) and source the dataset's index in ``sources``.

    ``QuaiMixDataset(sources, weights=None, *, batches=None, repeat=True,
    rank=None, world=None, epoch=0, dtype=torch.uint8, ids=False,
    context=None, **stream_kwargs)``: see quai.Mix for the mixing rules.
    ``set_epoch()``, ``state_dict()`` (``{"epoch", "state"}``, exact: the
    mix's position after the batches handed out) and ``load_state_dict()``
    as QuaiDataset's. It runs in the training process: with DataLoader
    workers it raises (quai reads and decompresses on its own threads; use
    ``num_workers=0``).
    """

    def __init__(self, sources, weights=None, *, batches=None, repeat=True, rank=None,
                 world=None, epoch=0, dtype=torch.uint8, ids=False, context=None,
                 **stream_kwargs):
        super().__init__()
        from ._mix import Mix
        self._Mix = Mix
        self.sources = [os.fspath(s) for s in sources]
        if rank is None and world is None:
            rank, world = rank_and_world()
        elif rank is None or world is None:
            raise ValueError("give rank and world together, or neither")
        self.rank, self.world = int(rank), int(world)
        self.weights, self.batches, self.repeat = weights, batches, repeat
        self.epoch = _core._uint("epoch", epoch, 64)
        if not isinstance(dtype, torch.dtype) or dtype not in _ITEMSIZE_OK:
            raise TypeError("dtype must be one of %s" % ", ".join(map(str, _ITEMSIZE_OK)))
        self.dtype, self.ids, self._itemsize = dtype, bool(ids), _itemsize(dtype)
        if context is not None and not isinstance(context, Context):
            raise TypeError("context must be a quai.Context or None")
        self.context = context
        self.stream_kwargs = stream_kwargs
        self.record_sizes = []
        for p in self.sources:
            with Dataset(p) as d:
                info = d.info()
            rs = info["fixed_size"] if info["kind"] == "fixed" else 0
            if rs % self._itemsize:
                raise ValueError("%s: records of %d bytes are not a whole number of %s" %
                                 (p, rs, dtype))
            self.record_sizes.append(rs)
        self._resume = None
        self._mix = None
        self._pos = None

    def __getstate__(self):
        raise TypeError("a QuaiMixDataset runs in the training process: use it with "
                        "num_workers=0 (quai reads on its own threads)")

    def set_epoch(self, epoch):
        epoch = _core._uint("epoch", epoch, 64)
        if epoch != self.epoch:
            self._resume = None
        self.epoch = epoch
        self._pos = None

    def __iter__(self):
        if torch.utils.data.get_worker_info() is not None:
            raise RuntimeError("QuaiMixDataset runs in the training process: use num_workers=0")
        if self._mix is not None:
            self._mix.close()
        resume, self._resume = self._resume, None
        m = self._Mix(self.sources, self.weights, batches=self.batches, repeat=self.repeat,
                      rank=self.rank, world=self.world, epoch=self.epoch, resume=resume,
                      context=self.context, **self.stream_kwargs)
        self._mix, self._pos = m, m.state()
        return self._generate(m)

    def _generate(self, m):
        try:
            for i, b in m:
                rs = self.record_sizes[i]
                out = _convert(b, rs, rs // self._itemsize, self.dtype, self.ids, False)
                del b
                self._pos = m.state()
                yield out + (i,) if isinstance(out, tuple) else (out, i)
        finally:
            m.close()
            if self._mix is m:
                self._mix = None

    def state_dict(self):
        state = self._pos if self._pos is not None else self._resume
        return {"epoch": self.epoch, "state": state, "rank": self.rank, "world": self.world}

    def load_state_dict(self, sd):
        self.epoch = _core._uint("epoch", sd["epoch"], 64)
        self._resume = None if sd.get("state") is None else bytes(sd["state"])
        self._pos = None
