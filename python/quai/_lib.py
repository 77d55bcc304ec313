# SPDX-License-Identifier: Apache-2.0
"""Loading libquai and declaring the part of include/quai/quai.h we bind.

Every structure below mirrors its C declaration field for field (same
types, same order), so ctypes lays it out as the C compiler does; the
tests compare sizes and offsets with a C program built against the header.
"""
import ctypes
import ctypes.util
import glob
import os

# ---- finding the library ---------------------------------------------------

_HERE = os.path.dirname(os.path.abspath(__file__))
# python/quai/_lib.py -> the repository root
_REPO = os.path.dirname(os.path.dirname(_HERE))


def _candidates():
    """(description, path-or-None) in the order they are tried, lazily: a
    later way is looked at only when the earlier ones fail."""
    env = os.environ.get("QUAI_LIB")
    if env:
        # An explicit choice is final: falling back silently to another
        # build would test or run the wrong library.
        yield "$QUAI_LIB", env
        return
    build = os.path.join(_REPO, "build", "release")
    if os.path.exists(os.path.join(_REPO, "meson.build")):  # run from the source tree
        found = sorted(glob.glob(os.path.join(build, "libquai.so*")), key=len)
        if found:
            yield "the build tree", found[0]
        else:
            yield "the build tree (%s/libquai.so*)" % build, None
    # An installed package: where libquai was when it was built (pip install).
    try:
        from . import _installed
        yield "the library recorded at install time", _installed.LIB
    except ImportError:
        pass
    yield "pkg-config's libdir of quai", _pkg_config()
    yield 'ctypes.util.find_library("quai")', ctypes.util.find_library("quai")


def _pkg_config():
    """libquai.so.0 in the libdir that pkg-config gives for quai (the quai.pc
    that meson install writes), or None."""
    import subprocess
    try:
        p = subprocess.run(["pkg-config", "--variable=libdir", "quai"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    libdir = p.stdout.decode().strip()
    path = os.path.join(libdir, "libquai.so.0")
    return path if p.returncode == 0 and libdir and os.path.exists(path) else None


def _load():
    tried = []
    for what, path in _candidates():
        if path is None:
            tried.append("%s: not found" % what)
            continue
        try:
            return ctypes.CDLL(path, use_errno=False), path
        except OSError as e:
            tried.append("%s: %s: %s" % (what, path, e))
    raise ImportError(
        "quai: cannot load libquai; tried " + "; ".join(tried) +
        ". Install it (meson install, then reinstall this package so that it records where), "
        "build it (ninja -C build/release), or set QUAI_LIB to the path of libquai.so.")


lib, LIB_PATH = _load()

# ---- constants (quai.h) -------------------------------------------------------

QUAI_EBASE = 4096
(QUAI_ECORRUPT, QUAI_EFORMAT, QUAI_EVERSION, QUAI_EPOLICY, QUAI_EINPUT,
 QUAI_EEXISTS, QUAI_ECOMPRESS, QUAI_EEND) = range(QUAI_EBASE + 1, QUAI_EBASE + 9)

QUAI_RECORDS_FILES, QUAI_RECORDS_LINES, QUAI_RECORDS_FIXED = 1, 2, 3

QUAI_GPU_AUTO, QUAI_GPU_NONE, QUAI_GPU_HIP, QUAI_GPU_CUDA = 0, 1, 2, 3

QUAI_CTX_NO_HUGEPAGES = 0x1
QUAI_CTX_NO_DIRECT = 0x2
QUAI_CTX_SQPOLL = 0x4
QUAI_CTX_UNLOCKED_OK = 0x8
QUAI_CTX_LAZY_POOL = 0x10

QUAI_TAIL_DROP, QUAI_TAIL_KEEP = 0, 1
QUAI_STREAM_NO_SHUFFLE = 0x1
QUAI_STREAM_SKIP_CORRUPT = 0x2
QUAI_STREAM_GLOBAL_BATCHES = 0x4
QUAI_STATE_MAX = 96

ERR_LEN = 1024  # the err buffers handed to the library

# ---- structures ---------------------------------------------------------------

c_size_t, c_u32, c_u64, c_int, c_uint = (ctypes.c_size_t, ctypes.c_uint32, ctypes.c_uint64,
                                         ctypes.c_int, ctypes.c_uint)


class _Sized(ctypes.Structure):
    """A quai struct that begins with its own size: built with it set."""

    def __init__(self, **kw):
        super().__init__(size=ctypes.sizeof(self), **kw)


class struct_quai_ctx_opts(_Sized):
    _fields_ = [("size", c_size_t), ("pinned_bytes", c_u64), ("workers", c_uint),
                ("queue_depth", c_uint), ("flags", c_uint), ("gpu", c_int)]


class struct_quai_ctx_info(_Sized):
    _fields_ = [("size", c_size_t), ("pinned_bytes", c_u64), ("hugepages", c_int),
                ("locked", c_int), ("gpu", c_int), ("gpu_note", ctypes.c_char_p),
                ("workers", c_uint), ("pinned_peak", c_u64)]


class struct_quai_stream_opts(_Sized):
    _fields_ = [("size", c_size_t), ("rank", c_u32), ("world", c_u32), ("seed", c_u64),
                ("epoch", c_u64), ("partitions", c_u32), ("window", c_u32),
                ("batch_records", c_u32), ("batch_bytes", c_u64), ("memory_budget", c_u64),
                ("prefetch_batches", c_u32), ("tail", c_int), ("flags", c_uint),
                ("resume", ctypes.c_void_p), ("resume_len", c_size_t)]


class struct_quai_batch(ctypes.Structure):
    # Pointers as c_void_p: ctypes then hands them out as plain ints, the
    # cheapest form to build numpy views from.
    _fields_ = [("data", ctypes.c_void_p), ("offsets", ctypes.c_void_p),
                ("ids", ctypes.c_void_p), ("count", c_u32), ("bytes", c_u64),
                ("index", c_u64), ("internal", ctypes.c_void_p)]


class struct_quai_stream_stats(_Sized):
    _fields_ = [("size", c_size_t), ("batches", c_u64), ("records", c_u64), ("bytes", c_u64),
                ("records_total", c_u64), ("frames_read", c_u64), ("bytes_read", c_u64),
                ("skipped_records", c_u64), ("wait_ns", c_u64), ("direct_io", c_u32),
                ("registered_buffers", c_int), ("partitions", c_u32),
                ("budget_bytes", c_u64), ("working_set_bytes", c_u64),
                ("frames_in_place", c_u64)]


class struct_quai_dataset_info(_Sized):
    _fields_ = [("size", c_size_t), ("format_version", c_u32), ("name", ctypes.c_char_p),
                ("kind", c_int), ("fixed_size", c_u32), ("classification", c_int),
                ("zone", ctypes.c_char_p), ("records", c_u64), ("raw_bytes", c_u64),
                ("compressed_bytes", c_u64), ("shards", c_u32), ("frames", c_u64),
                ("level", c_int), ("frame_size", c_u32), ("shard_size", c_u64),
                ("created", ctypes.c_char_p), ("manifest_checksum", ctypes.c_char_p)]


class struct_quai_shard_info(_Sized):
    _fields_ = [("size", c_size_t), ("file", ctypes.c_char_p), ("index_file", ctypes.c_char_p),
                ("first_record", c_u64), ("records", c_u64), ("raw_bytes", c_u64),
                ("compressed_bytes", c_u64), ("index_bytes", c_u64), ("frames", c_u32),
                ("checksum", c_u64), ("index_checksum", c_u64)]


class struct_quai_record_loc(ctypes.Structure):
    _fields_ = [("shard", c_u32), ("frame", c_u32), ("frame_offset", c_u64),
                ("frame_csize", c_u32), ("frame_rsize", c_u32), ("offset", c_u32),
                ("length", c_u32)]


STRUCTS = {c.__name__[len("struct_"):]: c for c in (
    struct_quai_ctx_opts, struct_quai_ctx_info, struct_quai_stream_opts, struct_quai_batch,
    struct_quai_stream_stats, struct_quai_dataset_info, struct_quai_shard_info,
    struct_quai_record_loc)}

# ---- functions ----------------------------------------------------------------

_vp, _cp, _P = ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER


def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


quai_version = _fn("quai_version", _cp)
quai_strerror = _fn("quai_strerror", _cp, c_int)
quai_record_kind_name = _fn("quai_record_kind_name", _cp, c_int)
quai_class_name = _fn("quai_class_name", _cp, c_int)

quai_dataset_open = _fn("quai_dataset_open", c_int, _cp, _P(_vp), ctypes.c_char_p, c_size_t)
quai_dataset_close = _fn("quai_dataset_close", None, _vp)
quai_dataset_info = _fn("quai_dataset_info", c_int, _vp, _P(struct_quai_dataset_info))
quai_dataset_allow = _fn("quai_dataset_allow", c_int, _vp, _cp, _cp, ctypes.c_char_p, c_size_t)
quai_dataset_shard = _fn("quai_dataset_shard", c_int, _vp, c_u32, _P(struct_quai_shard_info))
quai_dataset_locate = _fn("quai_dataset_locate", c_int, _vp, c_u64, _P(struct_quai_record_loc))
quai_dataset_record_name = _fn("quai_dataset_record_name", c_int, _vp, c_u64,
                               _P(ctypes.c_void_p), _P(c_size_t))
quai_reader_new = _fn("quai_reader_new", c_int, _vp, _P(_vp))
quai_reader_free = _fn("quai_reader_free", None, _vp)
quai_reader_record = _fn("quai_reader_record", c_int, _vp, c_u64, _P(ctypes.c_void_p),
                         _P(c_size_t))

quai_ctx_new = _fn("quai_ctx_new", c_int, _P(struct_quai_ctx_opts), _P(_vp), ctypes.c_char_p,
                   c_size_t)
quai_ctx_free = _fn("quai_ctx_free", None, _vp)
quai_ctx_info = _fn("quai_ctx_info", c_int, _vp, _P(struct_quai_ctx_info))

quai_uri_is_remote = _fn("quai_uri_is_remote", c_int, _cp)
quai_rank_from_env = _fn("quai_rank_from_env", c_int, _P(c_u32), _P(c_u32), _P(c_u32),
                         ctypes.c_char_p, c_size_t)
quai_stream_open = _fn("quai_stream_open", c_int, _vp, _cp, _P(struct_quai_stream_opts), _P(_vp),
                       ctypes.c_char_p, c_size_t)
# quai_next blocks while the batch is assembled: ctypes.CDLL releases the
# GIL around every call, so other Python threads run meanwhile.
quai_next = _fn("quai_next", c_int, _vp, _P(struct_quai_batch))
quai_release = _fn("quai_release", None, _vp, _P(struct_quai_batch))
quai_stream_error = _fn("quai_stream_error", _cp, _vp)
quai_stream_state = _fn("quai_stream_state", c_int, _vp, _vp, c_size_t)
quai_stream_stats = _fn("quai_stream_stats", c_int, _vp, _P(struct_quai_stream_stats))
quai_stream_close = _fn("quai_stream_close", None, _vp)


def strerror(code):
    return quai_strerror(code).decode("utf-8", "replace")


def err_buffer():
    return ctypes.create_string_buffer(ERR_LEN)


def text(b):
    """A C string (bytes or None) as str."""
    return "" if b is None else b.decode("utf-8", "surrogateescape")

