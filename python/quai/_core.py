# SPDX-License-Identifier: Apache-2.0
"""Contexts, streams, batches and datasets over libquai (include/quai/quai.h)."""
import collections
import ctypes
import errno
import gc
import os
import threading
import warnings
import weakref

import numpy as np

from . import _lib
from ._errors import ClosedError, PoolHeldError, check, from_code

# ---- fork -------------------------------------------------------------------
#
# The pinned pool is mapped MADV_DONTFORK and the context's worker threads do
# not exist in a child, so an object inherited across fork() must never reach
# the library again: not even to be freed. Every object records the fork
# generation it was made in; a child bumps the generation. Comparing two ints
# is cheaper than os.getpid(), which is a system call.

_gen = 0


def _after_fork_in_child():
    global _gen
    _gen += 1
    _defaults.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _forked(what):
    return ClosedError("this %s was created in the parent process before fork(); it cannot be "
                       "used in a child (the pinned pool is not mapped there): create a new one "
                       "in the child" % what)


def _uint(name, value, bits, minimum=0):
    """An integer option, checked before ctypes would silently wrap it."""
    if isinstance(value, bool):
        raise TypeError("%s must be an integer, not bool" % name)
    try:
        v = value.__index__()
    except AttributeError:
        raise TypeError("%s must be an integer, not %s" % (name, type(value).__name__)) from None
    if v < minimum or v >= 1 << bits:
        raise ValueError("%s must be in [%d, %d], not %d" % (name, minimum, (1 << bits) - 1, v))
    return v


def _opt(name, value, bits, minimum=1):
    """An optional positive option: None means the library's default (0)."""
    return 0 if value is None else _uint(name, value, bits, minimum)


# ---- contexts -----------------------------------------------------------------

_GPU = {"auto": _lib.QUAI_GPU_AUTO, "none": _lib.QUAI_GPU_NONE, "hip": _lib.QUAI_GPU_HIP,
        "cuda": _lib.QUAI_GPU_CUDA}
_GPU_NAME = {v: k for k, v in _GPU.items()}


class _Closing:
    """close() on leaving a with block and on garbage collection."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Context(_Closing):
    """The pinned pool every batch lives in, and the decompression workers.

    ``Context(pinned_bytes=None, workers=None, queue_depth=None, *, flags=0,
    no_hugepages=False, no_direct=False, sqpoll=False, unlocked_ok=False,
    lazy_pool=False, gpu="auto")`` calls ``quai_ctx_new()``; None means the
    library's default (a 512 MiB pool, one worker per online core, 32 reads
    in flight). ``lazy_pool=True`` locks the pool's pages as they are first
    touched instead of all of them up front (QUAI_CTX_LAZY_POOL), and its
    streams' default budget follows their working set (default_context()
    is made so).
    ``flags`` holds the QUAI_CTX_* flags it was made with.
    ``gpu`` is "auto", "none", "hip" or "cuda". The pool is locked in memory:
    RLIMIT_MEMLOCK must allow ``pinned_bytes`` (the error says how to raise
    it) unless ``unlocked_ok=True``.

    Streams opened on a context share its pool and workers. ``close()`` (or
    leaving a ``with`` block) closes the context's open streams first; the
    pool is freed when the last view over its memory is gone (see close()).
    A context cannot cross fork(): a child creates its own. Thread-safe, as
    the C context is.
    """

    def __reduce__(self):
        raise TypeError("a quai.%s cannot be pickled or sent to another process: it is a "
                        "handle on this process's pinned memory" % type(self).__name__)

    def __init__(self, pinned_bytes=None, workers=None, queue_depth=None, *, flags=0,
                 no_hugepages=False, no_direct=False, sqpoll=False, unlocked_ok=False,
                 lazy_pool=False, gpu="auto"):
        self._h = None
        self._gen = _gen
        self._streams = weakref.WeakSet()
        # Re-entrant: a stream freed while the context closes tells it so.
        self._lock = threading.RLock()
        self._closing = False
        self._nopen = 0  # streams whose C handle is still open
        f = _uint("flags", flags, 32)
        f |= _lib.QUAI_CTX_NO_HUGEPAGES if no_hugepages else 0
        f |= _lib.QUAI_CTX_NO_DIRECT if no_direct else 0
        f |= _lib.QUAI_CTX_SQPOLL if sqpoll else 0
        f |= _lib.QUAI_CTX_UNLOCKED_OK if unlocked_ok else 0
        f |= _lib.QUAI_CTX_LAZY_POOL if lazy_pool else 0
        if isinstance(gpu, str):
            if gpu.lower() not in _GPU:
                raise ValueError("gpu must be one of %s, not %r" % (", ".join(_GPU), gpu))
            g = _GPU[gpu.lower()]
        else:
            g = _uint("gpu", gpu, 31)
        o = _lib.struct_quai_ctx_opts(pinned_bytes=_opt("pinned_bytes", pinned_bytes, 64),
                               workers=_opt("workers", workers, 32),
                               queue_depth=_opt("queue_depth", queue_depth, 32), flags=f, gpu=g)
        h = ctypes.c_void_p()
        err = _lib.err_buffer()
        rc = _lib.quai_ctx_new(o, ctypes.byref(h), err, _lib.ERR_LEN)
        if rc < 0:
            msg = _lib.text(err.value)
            if "RLIMIT_MEMLOCK" in msg:
                msg += (". From Python: quai.Context(pinned_bytes=...) with a smaller pool, or "
                        "quai.Context(unlocked_ok=True) to go on unlocked (its pages may then "
                        "be swapped out; streams of sensitive datasets refuse it); pass it as "
                        "context= to quai.Stream (quai.torch.QuaiDataset takes context= a dict "
                        "of these options). The default context reads $QUAI_PINNED_BYTES "
                        "(e.g. 64M) and $QUAI_UNLOCKED_OK=1")
            raise from_code(rc, msg)
        self._h = h.value
        self.flags = f

    def _handle(self):
        if self._gen != _gen:
            raise _forked("Context")
        if not self._h or self._closing:
            raise ClosedError("the context is closed")
        return self._h

    @property
    def closed(self):
        return self._closing or not self._h or self._gen != _gen

    @property
    def live_batches(self):
        """Batches of this context's streams still alive in this process (a
        Batch object, a numpy view or a torch tensor over one referenced)."""
        return sum(s.live_batches for s in list(self._streams))

    def info(self):
        """quai_ctx_info() as a dict: pinned_bytes, hugepages (2 hugetlbfs, 1
        transparent, 0 none), locked, gpu ("hip", "cuda" or "none"), gpu_note,
        workers, pinned_peak."""
        i = _lib.struct_quai_ctx_info()
        check(_lib.quai_ctx_info(self._handle(), i))
        return {"pinned_bytes": i.pinned_bytes, "hugepages": i.hugepages,
                "locked": bool(i.locked), "gpu": _GPU_NAME.get(i.gpu, str(i.gpu)),
                "gpu_note": _lib.text(i.gpu_note), "workers": i.workers,
                "pinned_peak": i.pinned_peak}

    def close(self):
        """Closes the context's streams, then frees the context. Idempotent.

        Never frees memory under a live view: a stream with batches still
        alive (a Batch, a numpy view or a torch tensor over one) is closed
        for use at once, and its memory, and the pool with it, are freed
        when the last of them is gone. Closing with live batches emits a
        ResourceWarning naming how many; ``live_batches`` counts them."""
        if self._gen != _gen:
            self._h = None  # the parent's: never touch it here
            return
        with self._lock:
            if self._closing:
                return
            self._closing = True
            streams = list(self._streams)
        live = 0
        for s in streams:
            live += s.live_batches
            s.close()
        if live:
            warnings.warn("quai.Context.close(): %d batch%s still alive (a Batch, a numpy view "
                          "or a torch tensor over one): the pinned pool stays mapped until the "
                          "last is gone" % (live, "es are" if live != 1 else " is"),
                          ResourceWarning, stacklevel=2)
        self._maybe_free()

    def _stream_freed(self):
        with self._lock:
            self._nopen -= 1
        self._maybe_free()

    def _maybe_free(self):
        with self._lock:
            if not (self._closing and self._nopen == 0 and self._h):
                return
            h, self._h = self._h, None
        _lib.quai_ctx_free(h)

    def __repr__(self):
        if self.closed:
            return "<quai.Context closed>"
        i = self.info()
        return "<quai.Context %d MiB pinned, %d workers>" % (i["pinned_bytes"] >> 20, i["workers"])


_defaults = {}
_default_lock = threading.Lock()


def _size(name, text):
    """A byte count from the environment: 123, 64K, 512M, 2G."""
    t = text.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    try:
        n = int(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        raise ValueError("$%s=%r is not a size (e.g. 268435456, 256M, 1G)" % (name, text)) from None
    if n <= 0:
        raise ValueError("$%s=%r must be positive" % (name, text))
    return n


def default_context(remote=False):
    """The context shared by every stream of this process opened without
    one (local and quai:// alike; ``remote`` is accepted for compatibility),
    created on first use: the library's default pool size (512 MiB, or
    $QUAI_PINNED_BYTES) reserved, but locked only as its pages are first
    touched (``lazy_pool=True``), and each stream's default budget on it is
    a few times its working set (quai.h, QUAI_CTX_LAZY_POOL): the memory a
    process uses follows what its streams need, and making the context
    touches nothing. $QUAI_UNLOCKED_OK=1 lets it go on where RLIMIT_MEMLOCK
    forbids locking. A process that wants other settings creates its own
    Context and passes it to Stream."""
    with _default_lock:
        c = _defaults.get(True)
        if c is None or c.closed:
            kw = {"lazy_pool": True}
            env = os.environ.get("QUAI_PINNED_BYTES")
            if env:
                kw["pinned_bytes"] = _size("QUAI_PINNED_BYTES", env)
            if os.environ.get("QUAI_UNLOCKED_OK", "").lower() in ("1", "yes", "true", "on"):
                kw["unlocked_ok"] = True
            c = _defaults[True] = Context(**kw)
        return c


# The library's error text names its C options; a Python user knows the
# keywords. Whole words only, longest first.
_KEYWORDS = (("prefetch_batches", "prefetch="), ("memory_budget", "budget="),
             ("batch_records", "batch="), ("the budget", "the budget (budget=)"),
             ("the context's pool", "the context's pool (quai.Context(pinned_bytes=...))"),
             ("the batch size", "the batch size (batch=)"),
             ("the shuffle window", "the shuffle window (window=)"))


def _python_words(msg, code, path):
    """The library's message for a failed open, in Python's terms: the
    keywords instead of the C option names, and the path when the library
    did not name it."""
    for c, py in _KEYWORDS:
        msg = msg.replace(c, py)
    if code == -errno.ENOENT and path not in msg:
        msg = path if not msg or msg == _lib.strerror(code) else "%s: %s" % (path, msg)
    return msg or None


def rank_from_env():
    """(rank, world, local_rank) of this process from its launcher: torchrun's
    $RANK, $WORLD_SIZE and $LOCAL_RANK, else srun's $SLURM_PROCID,
    $SLURM_NTASKS and $SLURM_LOCALID (quai_rank_from_env() in quai.h); (0, 1,
    0) when neither is set. A malformed value, or a rank not below the
    world, raises InvalidArgumentError naming the variable."""
    rank, world, local = ctypes.c_uint32(), ctypes.c_uint32(), ctypes.c_uint32()
    err = _lib.err_buffer()
    r = _lib.quai_rank_from_env(ctypes.byref(rank), ctypes.byref(world), ctypes.byref(local),
                                err, _lib.ERR_LEN)
    if r == -errno.ENOENT:
        return 0, 1, 0
    check(r, err)
    return rank.value, world.value, local.value


def _is_remote(uri):
    """Whether libquai takes `uri` for a dataset quaid serves."""
    return _lib.quai_uri_is_remote(os.fsencode(uri)) == 1


# ---- streams and batches --------------------------------------------------------


class _Slot:
    """One quai_batch handed out by quai_next(): the owner of its memory.

    The Batch (until its release()) and every numpy view over the memory
    hold a reference to it, and so, through the buffer they were made from,
    does every torch tensor (torch.frombuffer keeps its buffer alive). When
    the last reference is gone, the memory goes back to the pool
    (quai_release): never earlier, so no view ever sees reused memory."""
    __slots__ = ("cb", "live", "stream", "__weakref__")

    def __init__(self, stream):
        self.cb = _lib.struct_quai_batch()
        self.live = False
        self.stream = stream

    def __del__(self):
        if self.live:
            try:
                self.stream._give_back(self)
            except Exception:
                pass


class _View:
    """Exports raw memory to numpy through __array_interface__. It holds the
    memory's owner (the _Slot): numpy keeps the _View as the base of every
    array made from it, slices included, so the memory lives as long as
    any of them."""
    __slots__ = ("__array_interface__", "owner")

    def __init__(self, owner, addr, shape, typestr, readonly):
        self.owner = owner
        self.__array_interface__ = {"version": 3, "shape": shape, "typestr": typestr,
                                    "data": (addr or 0, readonly)}


def _array(owner, addr, shape, dtype, readonly=True):
    a = np.asarray(_View(owner, addr, shape, dtype.str, readonly))
    return a if a.dtype == dtype else a.view(dtype)


_U8 = np.dtype(np.uint8)
_U64 = np.dtype("<u8")


class _BatchBase:
    """What a batch and its copy share: indexing and the records() view."""
    __slots__ = ()

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        """Record i (negative counts from the end) as a uint8 numpy array."""
        n = self.count
        i = i.__index__()
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("record %d of a batch of %d" % (i, n))
        off = self.offsets
        return self.data[int(off[i]):int(off[i + 1])]

    def __iter__(self):
        for i in range(self.count):
            yield self[i]

    def records(self, dtype=np.uint8, record_size=None):
        """The records as a 2-D array of shape (count, record_size // itemsize),
        for records of one size (a `fixed` dataset): a view of the batch's
        memory, no copy. ``record_size`` defaults to the size of the first
        record; every record is checked to have it (one vectorised numpy
        comparison over the offsets, never a Python loop), else ValueError."""
        dt = np.dtype(dtype)
        off = self.offsets
        n = self.count
        rs = int(off[1] - off[0]) if record_size is None and n else (record_size or 0)
        if rs % dt.itemsize:
            raise ValueError("records of %d bytes are not a whole number of %s (%d bytes)" %
                             (rs, dt, dt.itemsize))
        if n and (int(off[n]) != n * rs or
                  not np.array_equal(off, np.arange(0, (n + 1) * rs, rs, dtype=np.uint64)
                                     if rs else np.zeros(n + 1, np.uint64))):
            raise ValueError("the batch's records are not all %d bytes (use data and offsets, or "
                             "batch[i], for records of varying size)" % rs)
        return self._records(n, rs, dt)


class Batch(_BatchBase):
    """One batch of a Stream: ``count`` records, back to back in pinned memory.

    Attributes: ``count`` (records), ``nbytes`` (bytes of records), ``index``
    (the batch's number in this rank's epoch); ``data`` (uint8), ``offsets``
    (``count + 1`` uint64: record i is ``data[offsets[i]:offsets[i+1]]``) and
    ``ids`` (``count`` uint64 global record ids) are read-only numpy arrays
    that are *views* of the pinned memory, not copies; ``batch[i]`` is record
    i as such a view, ``records(dtype)`` the records of a fixed-size dataset
    as a 2-D view, ``copy()`` an owning copy of everything.

    Lifetime. The memory goes back to the pool when the Batch and every view
    made from it (numpy arrays, slices of them, torch tensors made with
    torch.frombuffer or torch.from_numpy) are all gone: a view stays valid
    as long as it is referenced, whatever happens to the Batch, the stream
    or the context. ``release()`` (or the end of a ``with batch:`` block)
    ends the Batch's own hold: afterwards ``data``, ``offsets``, ``ids``,
    ``batch[i]``, ``records()`` and ``copy()`` raise quai.ClosedError
    (``count``, ``nbytes``, ``index`` stay readable), and the memory goes
    back at once unless a view still holds it. Closing the stream or its
    context does the same for every batch of the stream.

    A batch kept alive while later ones are taken keeps its memory, which
    counts against the stream's budget. When the batches kept would leave
    the stream less than its working set, the stream raises
    quai.PoolHeldError, naming how many are alive, instead of waiting
    forever: keep fewer, copy() what must be kept, or give the stream more
    memory (``budget=``, a larger context).
    """
    __slots__ = ("_stream", "_slot", "count", "nbytes", "index", "__weakref__")

    def __reduce__(self):
        raise TypeError("a quai.%s cannot be pickled or sent to another process: it is a "
                        "handle on this process's pinned memory" % type(self).__name__)

    def __init__(self, stream, slot):
        self._stream = stream
        self._slot = slot
        cb = slot.cb
        self.count = cb.count
        self.nbytes = cb.bytes
        self.index = cb.index

    def _cb(self):
        slot = self._slot
        if slot is not None and slot.live and not self._stream._closing:
            if self._stream._gen == _gen:
                return slot.cb
            raise _forked("Batch")
        if slot is not None and self._stream._gen != _gen:
            raise _forked("Batch")
        raise ClosedError("batch %d was released (by release(), the end of its with block, or "
                          "closing its stream or context): take views before the release, or "
                          "copy() what must outlive it" % self.index)

    @property
    def released(self):
        slot = self._slot
        return slot is None or not slot.live or self._stream._closing

    @property
    def data(self):
        """The records, back to back: a read-only uint8 view, ``nbytes`` long."""
        cb = self._cb()
        return _array(self._slot, cb.data, (cb.bytes,), _U8)

    @property
    def offsets(self):
        """``count + 1`` offsets into data, a read-only uint64 view."""
        cb = self._cb()
        return _array(self._slot, cb.offsets, (cb.count + 1,), _U64)

    @property
    def ids(self):
        """The records' global ids (their numbers in the dataset), a read-only
        uint64 view."""
        cb = self._cb()
        return _array(self._slot, cb.ids, (cb.count,), _U64)

    @property
    def address(self):
        """The address of the first record in pinned memory (``data``'s)."""
        return self._cb().data

    def _records(self, n, rs, dt):
        return _array(self._slot, self._cb().data, (n, rs // dt.itemsize), dt)

    def _buffer(self, writable):
        """The records as a flat uint8 array, for torch.frombuffer (which
        warns on read-only buffers; torch has no read-only tensors)."""
        cb = self._cb()
        return _array(self._slot, cb.data, (cb.bytes,), _U8, readonly=not writable)

    def copy(self):
        """An owning copy (data, offsets, ids in fresh numpy arrays) that
        outlives the batch's release."""
        self._cb()
        return BatchCopy(self.data.copy(), self.offsets.copy(), self.ids.copy(), self.index)

    def release(self):
        """Ends the Batch's hold on its memory (idempotent): the memory goes
        back to the pool now, or when the last view made from it is gone."""
        self._slot = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __repr__(self):
        return "<quai.Batch %d: %d records, %d bytes%s>" % (
            self.index, self.count, self.nbytes, ", released" if self.released else "")


class BatchCopy(_BatchBase):
    """A batch's records in memory of its own (from Batch.copy()): the same
    attributes as Batch, valid as long as the object lives."""
    __slots__ = ("data", "offsets", "ids", "count", "nbytes", "index")

    def __init__(self, data, offsets, ids, index):
        self.data, self.offsets, self.ids = data, offsets, ids
        self.count, self.nbytes, self.index = len(ids), len(data), index

    released = False

    def _records(self, n, rs, dt):
        return self.data[:n * rs].view(dt).reshape(n, rs // dt.itemsize)

    def copy(self):
        return BatchCopy(self.data.copy(), self.offsets.copy(), self.ids.copy(), self.index)

    def release(self):
        pass

    def __repr__(self):
        return "<quai.BatchCopy %d: %d records, %d bytes>" % (self.index, self.count, self.nbytes)


class Stream(_Closing):
    """One epoch of a dataset for one rank, as batches in pinned memory.

    ``Stream(uri, rank=0, world=1, seed=0, epoch=0, batch=None,
    batch_bytes=None, partitions=None, window=None, shuffle=True,
    keep_tail=False, prefetch=None, budget=None, skip_corrupt=False,
    resume=None, context=None, hold=0)`` calls ``quai_stream_open()``:

    - ``uri``: a dataset directory (str or path-like), ``file:///path``, or
      ``quai://host[:port]/name`` (remote mode: staged by the quaid there,
      the same batches as embedded mode);
    - ``rank``/``world``: this process's share, any world from 1 to 65536;
    - ``seed``/``epoch``: the shuffle; ``partitions`` must stay None (the
      order has none since state version 2), ``window`` (the shuffle unit,
      in frames' worth of records, default 40), ``shuffle`` (False: dataset
      order), ``keep_tail`` (True: deliver the remainder of the epoch, fewer
      than ``world`` records, too: the first ranks get one more; False: it is
      left out). Each rank's last batch may be short, alike on every rank;
    - ``batch`` records per batch (default 256), or ``batch_bytes``: fill each
      batch to at least that many bytes;
    - ``prefetch``: batches assembled ahead (default 4, or ``hold + 4``);
      ``budget``: pool bytes this stream may hold (default: the whole pool;
      on a lazy pool, default_context()'s, 1.5 times the working set);
    - ``skip_corrupt``: skip (and count, see ``stats()``) the records of a
      frame that fails its checks instead of raising quai.CorruptError;
    - ``global_batches``: ``batch`` is the global batch (``world`` must
      divide it): global batch k is the same set of records at any world
      size (QUAI_STREAM_GLOBAL_BATCHES; every rank reads every frame, so
      meant for quai:// streams);
    - ``resume``: bytes from ``state()`` of a stream of the same dataset: it
      fixes seed, epoch, window, shuffle and tail (giving others is an
      error), and the stream delivers exactly what that epoch had left, at
      any world size;
    - ``context``: a quai.Context (default: quai.default_context());
    - ``hold``: how many batches, besides the newest, you mean to keep while
      taking the next: it raises the default prefetch to ``hold + 4``. At
      most ``prefetch - 1``.

    Iterating yields Batch objects (see Batch for their lifetime) and ends at
    the end of the epoch; a corrupt frame raises quai.CorruptError naming
    the shard and frame, and the stream then only raises that error.
    ``close()`` (or leaving a ``with`` block) closes the stream; views of its
    batches stay valid until they go. One thread takes batches (iterates)
    and closes; ``Batch.release()`` may be called from any thread.
    """

    def __reduce__(self):
        raise TypeError("a quai.%s cannot be pickled or sent to another process: it is a "
                        "handle on this process's pinned memory" % type(self).__name__)

    def __init__(self, uri, *, rank=0, world=1, seed=0, epoch=0, batch=None, batch_bytes=None,
                 partitions=None, window=None, shuffle=True, keep_tail=False, prefetch=None,
                 budget=None, skip_corrupt=False, resume=None, context=None, hold=0,
                 global_batches=False):
        self._h = None
        self._gen = _gen
        self._mu = threading.RLock()  # re-entrant: a GC-run __del__ may release
        self._closing = False
        self._live = 0  # batches handed out whose memory is not back in the pool
        self._taken = 0
        self._hold = _uint("hold", hold, 31)
        if batch is not None and batch_bytes is not None:
            raise ValueError("give batch (records per batch) or batch_bytes, not both")
        if prefetch is None:
            prefetch = 4 + self._hold if self._hold else None
            self._slots = 4 + self._hold
        elif _uint("prefetch", prefetch, 32, 1) <= self._hold:
            raise ValueError("hold=%d needs prefetch > hold (the library hands out at most "
                             "prefetch batches at once); prefetch is %d" % (self._hold, prefetch))
        else:
            self._slots = prefetch
        o = _lib.struct_quai_stream_opts(
            rank=_uint("rank", rank, 32), world=_uint("world", world, 32, 1),
            seed=_uint("seed", seed, 64), epoch=_uint("epoch", epoch, 64),
            partitions=_opt("partitions", partitions, 32), window=_opt("window", window, 32),
            batch_records=_opt("batch", batch, 32),
            batch_bytes=_opt("batch_bytes", batch_bytes, 64),
            memory_budget=_opt("budget", budget, 64),
            prefetch_batches=_opt("prefetch", prefetch, 32),
            tail=_lib.QUAI_TAIL_KEEP if keep_tail else _lib.QUAI_TAIL_DROP,
            flags=(0 if shuffle else _lib.QUAI_STREAM_NO_SHUFFLE) |
            (_lib.QUAI_STREAM_SKIP_CORRUPT if skip_corrupt else 0) |
            (_lib.QUAI_STREAM_GLOBAL_BATCHES if global_batches else 0))
        if resume is not None:
            resume = bytes(resume)
            o.resume = ctypes.cast(ctypes.c_char_p(resume), ctypes.c_void_p).value
            o.resume_len = len(resume)
        if isinstance(uri, bytes):
            self.uri = os.fsdecode(uri)
        else:
            self.uri = os.fspath(uri)
        ctx = default_context(_is_remote(self.uri)) if context is None else context
        if not isinstance(ctx, Context):
            raise TypeError("context must be a quai.Context, not %s" % type(ctx).__name__)
        self.context = ctx
        self.rank, self.world = o.rank, o.world
        h = ctypes.c_void_p()
        err = _lib.err_buffer()
        with ctx._lock:
            rc = _lib.quai_stream_open(ctx._handle(), os.fsencode(self.uri), o, ctypes.byref(h),
                                       err, _lib.ERR_LEN)
            if rc < 0:
                raise from_code(rc, _python_words(_lib.text(err.value), rc, self.uri))
            self._h = h.value
            ctx._streams.add(self)
            ctx._nopen += 1
        self._resume = resume  # kept alive with the stream: cheap, and simple

    def _handle(self):
        if self._gen != _gen:
            raise _forked("Stream")
        if not self._h or self._closing:
            raise ClosedError("the stream is closed")
        return self._h

    @property
    def closed(self):
        return self._closing or not self._h or self._gen != _gen

    @property
    def live_batches(self):
        """Batches of this stream whose memory is not back in the pool: a
        Batch, a numpy view or a torch tensor over each is still referenced."""
        return self._live if self._gen == _gen else 0

    def __iter__(self):
        return self

    def __next__(self):
        # The hot path: one quai_next() call and two small objects per
        # batch, no work per record.
        if self._closing or self._gen != _gen or not self._h:
            self._handle()
        slot = _Slot(self)
        r = _lib.quai_next(self._h, slot.cb)
        if r == -errno.EBUSY:
            # The slot the next batch goes to is held by a batch still
            # alive. Reference cycles (a traceback's frames, say) may be
            # all that keeps it: collect them once before reporting.
            gc.collect()
            r = _lib.quai_next(self._h, slot.cb)
        if r > 0:
            with self._mu:
                slot.live = True
                self._live += 1
            self._taken += 1
            return Batch(self, slot)
        if r == 0:
            raise StopIteration
        if r == -errno.EBUSY and _is_remote(self.uri):
            raise PoolHeldError(
                r, "the stream cannot take batch %d: %d batch%s of this stream %s still alive "
                "(a Batch, a numpy view or a torch tensor over each is still referenced), "
                "holding every slot of its ring in the pool (prefetch=%d); quai never reuses "
                "memory under a view. Drop what you no longer need, copy() (numpy) or clone() "
                "(torch) what you keep, or open the stream with a larger prefetch=" % (
                    self._taken, self._live, "es" if self._live != 1 else "",
                    "are" if self._live != 1 else "is", self._slots))
        if r == -errno.EBUSY:
            raise PoolHeldError(
                r, "the stream cannot take batch %d: %d batch%s of this stream %s still alive "
                "(a Batch, a numpy view or a torch tensor over each is still referenced), and "
                "together they hold more of its pinned memory than it can spare beyond what "
                "it needs to go on; quai never reuses memory under a view. Drop what you no "
                "longer need, copy() (numpy) or clone() (torch) what you keep, or give the "
                "stream more memory: budget= or the context's pool (quai.Context("
                "pinned_bytes=...))" % (self._taken, self._live, "es" if self._live != 1 else "",
                                        "are" if self._live != 1 else "is"))
        raise from_code(r, self.error)

    next = __next__

    def _give_back(self, slot):
        # The last reference to a batch's memory is gone (possibly in another
        # thread, say one that copied it to a GPU, or in garbage collection).
        ctx = None
        with self._mu:
            if not slot.live:
                return
            slot.live = False
            if self._gen != _gen or not self._h:
                return  # inherited across fork(): never call the parent's stream
            self._live -= 1
            _lib.quai_release(self._h, slot.cb)
            if self._closing and not self._live:
                ctx = self._free()
        if ctx is not None:
            ctx._stream_freed()

    @property
    def error(self):
        """quai_stream_error(): what failed (naming shard and frame for
        corrupt data), or ""."""
        return _lib.text(_lib.quai_stream_error(self._handle()))

    def state(self):
        """quai_stream_state(): the stream's position as opaque bytes (64 in
        this version), to save with a checkpoint and pass as ``resume=``.
        It counts the batches taken so far (released or not) and assumes, as
        data-parallel training does, that every rank took as many."""
        buf = ctypes.create_string_buffer(_lib.QUAI_STATE_MAX)
        n = check(_lib.quai_stream_state(self._handle(), buf, len(buf)))
        return buf.raw[:n]

    def stats(self):
        """quai_stream_stats() as a dict: batches, records, bytes delivered;
        records_total (this rank's records in the epoch); frames_read,
        bytes_read; skipped_records; wait_ns; direct_io; registered_buffers;
        partitions; budget_bytes; working_set_bytes; frames_in_place."""
        st = _lib.struct_quai_stream_stats()
        check(_lib.quai_stream_stats(self._handle(), st))
        return {name: getattr(st, name) for name, _ in st._fields_ if name != "size"}

    def close(self):
        """Closes the stream (idempotent): it takes no more batches, and
        its batches' own access to their memory ends (Batch.data and the rest
        raise quai.ClosedError). Views over that memory stay valid: the
        library's stream, and the memory, are freed when the last of them is
        gone (at once when none is alive)."""
        if self._gen != _gen:
            self._h = None
            return
        ctx = None
        with self._mu:
            if self._closing:
                return
            self._closing = True
            if self._h and not self._live:
                ctx = self._free()
        if ctx is not None:
            ctx._stream_freed()

    def _free(self):
        """Frees the C stream (under _mu, no batch alive); returns the
        context to tell once the lock is dropped."""
        h, self._h = self._h, None
        _lib.quai_stream_close(h)
        try:
            self.context._streams.discard(self)
        except Exception:
            pass
        return self.context

    def __repr__(self):
        return "<quai.Stream %r rank %d of %d%s>" % (self.uri, self.rank, self.world,
                                                     ", closed" if self.closed else "")


# ---- datasets ------------------------------------------------------------------

_KIND = {_lib.QUAI_RECORDS_FILES: "files", _lib.QUAI_RECORDS_LINES: "lines",
         _lib.QUAI_RECORDS_FIXED: "fixed"}

RecordLocation = collections.namedtuple(
    "RecordLocation", "shard frame frame_offset frame_csize frame_rsize offset length")


class Dataset(_Closing):
    """A dataset directory opened for reading records one at a time
    (quai_dataset_open() and a quai_reader).

    ``len(ds)`` is the record count; ``ds[i]`` reads record i (decoding and
    verifying only its frame; quai.CorruptError if that fails) and returns
    its bytes (a copy: the reader's buffer is reused); ``info()`` describes
    the dataset; ``locate(i)`` says where record i lives; ``record_name(i)``
    is a ``files`` record's relative name; ``shard(k)`` describes shard k.
    Reads are serialised by a lock (a quai_reader is per thread). Opening
    asks the host first (quai_dataset_allow, op "read"): a sensitive
    dataset opens only on a host of its zone (quai.PolicyError otherwise).
    """

    def __reduce__(self):
        raise TypeError("a quai.%s cannot be pickled or sent to another process: it is a "
                        "handle on this process's pinned memory" % type(self).__name__)

    def __init__(self, path):
        self._h = self._r = None
        self._gen = _gen
        self._lock = threading.Lock()
        self.path = os.fspath(path) if not isinstance(path, bytes) else os.fsdecode(path)
        h = ctypes.c_void_p()
        err = _lib.err_buffer()
        rc = _lib.quai_dataset_open(os.fsencode(self.path), ctypes.byref(h), err, _lib.ERR_LEN)
        if rc < 0:
            raise from_code(rc, _python_words(_lib.text(err.value), rc, self.path))
        self._h = h.value
        # The host decides before any record is read (quai_dataset_allow:
        # a sensitive dataset only on a host of its zone; audited).
        rc = _lib.quai_dataset_allow(self._h, b"read", None, err, _lib.ERR_LEN)
        if rc < 0:
            self.close()
            check(rc, err)
        r = ctypes.c_void_p()
        rc = _lib.quai_reader_new(self._h, ctypes.byref(r))
        if rc < 0:
            self.close()
            check(rc)
        self._r = r.value
        self._info = self.info()

    def _handle(self):
        if self._gen != _gen:
            raise _forked("Dataset")
        if not self._h:
            raise ClosedError("the dataset is closed")
        return self._h

    def info(self):
        """quai_dataset_info() as a dict (kind and classification by name)."""
        i = _lib.struct_quai_dataset_info()
        check(_lib.quai_dataset_info(self._handle(), i))
        d = {}
        for name, _ in i._fields_:
            v = getattr(i, name)
            d[name] = _lib.text(v) if isinstance(v, bytes) or v is None else v
        del d["size"]
        d["kind"] = _KIND.get(i.kind, str(i.kind))
        d["classification"] = _lib.text(_lib.quai_class_name(i.classification))
        return d

    def shard(self, k):
        """quai_dataset_shard() as a dict."""
        s = _lib.struct_quai_shard_info()
        check(_lib.quai_dataset_shard(self._handle(), _uint("shard", k, 32), s))
        d = {name: getattr(s, name) for name, _ in s._fields_ if name != "size"}
        d["file"], d["index_file"] = _lib.text(s.file), _lib.text(s.index_file)
        return d

    def __len__(self):
        return self._info["records"]

    def _index(self, i):
        i = i.__index__()
        n = self._info["records"]
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("record %d of a dataset of %d" % (i, n))
        return i

    def locate(self, i):
        """Where record i lives (quai_dataset_locate()), as a RecordLocation."""
        loc = _lib.struct_quai_record_loc()
        check(_lib.quai_dataset_locate(self._handle(), self._index(i), loc))
        return RecordLocation(*(getattr(loc, f) for f in RecordLocation._fields))

    def record_name(self, i):
        """The relative name of record i of a ``files`` dataset (str)."""
        p, n = ctypes.c_void_p(), ctypes.c_size_t()
        check(_lib.quai_dataset_record_name(self._handle(), self._index(i), ctypes.byref(p),
                                            ctypes.byref(n)))
        return os.fsdecode(ctypes.string_at(p.value, n.value))

    def __getitem__(self, i):
        i = self._index(i)
        p, n = ctypes.c_void_p(), ctypes.c_size_t()
        with self._lock:
            self._handle()
            check(_lib.quai_reader_record(self._r, i, ctypes.byref(p), ctypes.byref(n)))
            return ctypes.string_at(p.value, n.value) if n.value else b""

    def _frame_bytes(self, i, loc):
        """The whole decoded (and verified) frame of record i, whose location
        is loc, as bytes: the reader decodes the frame into its buffer to
        read the record, and the record is at loc.offset in it."""
        p, n = ctypes.c_void_p(), ctypes.c_size_t()
        with self._lock:
            self._handle()
            check(_lib.quai_reader_record(self._r, i, ctypes.byref(p), ctypes.byref(n)))
            return ctypes.string_at(p.value - loc.offset, loc.frame_rsize)

    def close(self):
        if self._gen != _gen:
            self._h = self._r = None
            return
        with self._lock:
            r, self._r = self._r, None
            h, self._h = self._h, None
        if r:
            _lib.quai_reader_free(r)
        if h:
            _lib.quai_dataset_close(h)

    def __repr__(self):
        return "<quai.Dataset %r%s>" % (self.path, ", closed" if not self._h else "")
