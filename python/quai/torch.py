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

See QuaiDataset for the rank/world rules, workers, lifetimes and resumption.
"""
import errno
import os

import torch
import torch.utils.data

from . import _core, _errors
from ._core import Context, Dataset, Stream

__all__ = ["QuaiDataset", "rank_and_world"]


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
    ids=False, record_size=None, context=None, **stream_kwargs)``; the
    stream keywords are quai.Stream's (seed, batch, batch_bytes, partitions,
    window, shuffle, keep_tail, prefetch, budget, skip_corrupt, hold).

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

    Lifetime: the tensors view the batch's memory, which is released when the
    next batch is taken (the DataLoader asks for it at your loop's next turn),
    with ``hold=N`` N batches later, and when the epoch's iterator ends or is
    discarded. Do not keep them past that; ``.clone()`` what you keep, and
    finish (synchronize) any ``non_blocking`` copy to the GPU before the next
    batch, or use ``hold=1``. Leave ``pin_memory=False`` in the DataLoader:
    the memory is already pinned (locked) by quai, and pin_memory would copy.
    Treat the tensors as read-only.

    Workers: ``num_workers=0`` is the recommended setting; quai already
    reads and decompresses on its own threads, outside the GIL. With
    ``num_workers=N > 0`` each worker streams its own share, as rank
    ``rank + world * worker_id`` of world ``world * N`` (any N, the same on
    every rank: together the workers of all ranks deliver the epoch once,
    but for a remainder of fewer than ``world * N`` records); each
    worker process has its own context (pass ``context={"pinned_bytes": ...}``
    to size it), and its batches are copied once into shared memory to cross
    to the main process (no zero copy there). ``set_epoch()`` reaches the
    workers when they start, so keep ``persistent_workers=False``.

    Epochs and resumption: ``set_epoch(e)`` selects the epoch the next
    iteration streams (a state loaded for epoch e is kept). ``state_dict()`` is ``{"epoch": e, "state": bytes or
    None, "rank": r, "world": w}``: the position after the batches this
    process's iterator has taken (None: the start of the epoch), assuming as
    data-parallel training does that every rank has taken as many.
    ``load_state_dict()`` makes the next iteration deliver exactly the rest of
    that epoch, at any world size. Saving a state needs ``num_workers=0``: with workers, the
    iteration happens in the worker processes and this object does not see
    how far it went.
    """

    def __init__(self, uri, *, rank=None, world=None, epoch=0, dtype=torch.uint8, ids=False,
                 record_size=None, context=None, **stream_kwargs):
        super().__init__()
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
        self._resume = None  # a state to resume from at the next iteration
        self._state = None  # the position of the last iteration, when it ended
        self._stream = None
        self._ctx = None

    # -- pickling into DataLoader workers: only the description travels --
    def __getstate__(self):
        d = dict(self.__dict__)
        d["_stream"] = d["_ctx"] = None
        if isinstance(d["_context_arg"], Context):
            d["_context_arg"] = None  # a context does not cross processes
        return d

    def set_epoch(self, epoch):
        """The epoch the next iteration streams: from its start, or, for the
        epoch of a state just loaded with load_state_dict(), from there."""
        epoch = _core._uint("epoch", epoch, 64)
        if epoch != self.epoch:
            self._resume = None
        self.epoch = epoch
        self._state = None

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
        info = torch.utils.data.get_worker_info()
        rank, world = self.rank, self.world
        if info is not None:
            # Worker w of rank r is rank r + world*w of world*N: together
            # the workers of all ranks deliver the epoch once (any N).
            rank, world = rank + world * info.id, world * info.num_workers
        resume, self._resume = self._resume, None
        kw = dict(self.stream_kwargs)
        try:
            stream = Stream(self.uri, rank=rank, world=world, epoch=self.epoch, resume=resume,
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
        return self._generate(stream, info is not None)

    def _generate(self, stream, in_worker):
        fixed, width = self.record_size, self.record_size // self._itemsize
        dtype, want_ids = self.dtype, self.ids
        try:
            for b in stream:
                yield _convert(b, fixed, width, dtype, want_ids, in_worker)
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
        process stands (see the class documentation)."""
        s = self._stream
        if s is not None and not s.closed:
            state = s.state()
        else:
            state = self._state if self._state is not None else self._resume
        return {"epoch": self.epoch, "state": state, "rank": self.rank, "world": self.world}

    def load_state_dict(self, sd):
        """Makes the next iteration deliver the rest of sd's epoch (exactly
        the records no rank had taken), at this dataset's rank and world."""
        self.epoch = _core._uint("epoch", sd["epoch"], 64)
        self._resume = None if sd.get("state") is None else bytes(sd["state"])
        self._state = None

    def __repr__(self):
        return "<quai.torch.QuaiDataset %r rank %d of %d, epoch %d>" % (self.uri, self.rank,
                                                                        self.world, self.epoch)


def _itemsize(dtype):
    return torch.empty((), dtype=dtype).element_size()


def _tensor(batch, addr, nbytes, dtype):
    """torch.frombuffer over nbytes at addr, the view tied to the batch."""
    if not nbytes:
        return torch.empty(0, dtype=dtype)
    # Writable: torch warns about read-only buffers, and quai never reads a
    # batch's memory back after handing it out.
    a = _core._array(batch, addr, (nbytes,), _core._U8, readonly=False)
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
