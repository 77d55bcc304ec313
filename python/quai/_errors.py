# SPDX-License-Identifier: Apache-2.0
"""Errors from libquai as Python exceptions."""
import errno as _errno

from . import _lib


class Error(Exception):
    """An error reported by libquai.

    ``code`` is the library's negative return value: ``-errno`` (e.g.
    ``-errno.EINVAL``) or one of quai's own codes (``-QUAI_ECORRUPT``, ...).
    ``str(error)`` is ``quai_strerror(code)`` followed by the library's detail
    message (the err buffer of the call, or ``quai_stream_error()``), which
    names what failed and where: the file, the shard and frame, the option.
    """

    code = None  # the class's code, for Error(message) alone

    def __init__(self, code, message=None):
        if isinstance(code, str):
            # Error(message): how torch's DataLoader re-raises an exception
            # of a worker process in the main one (type(e)(text)).
            Exception.__init__(self, code)
            self.detail = code
            return
        self.code = int(code)
        self.detail = message or ""
        name = _lib.strerror(self.code)
        if not message or message == name:
            text = name
        elif message.startswith(name):
            text = message
        else:
            text = "%s: %s" % (name, message)
        super().__init__(text)

    def __reduce__(self):
        if self.code is None:
            return (type(self), (str(self),))
        return (type(self), (self.code, self.detail))

    @property
    def errno(self):
        """The errno for an operating-system error, None for quai's own."""
        if self.code is None:
            return None
        c = -self.code
        return None if c > _lib.QUAI_EBASE else c


class CorruptError(Error):
    """-QUAI_ECORRUPT: stored bytes fail their checksum or do not decode.
    The message names the shard, the frame and its records."""
    code = -_lib.QUAI_ECORRUPT


class FormatError(Error):
    """-QUAI_EFORMAT: a file is not in the format, or violates one of its limits."""
    code = -_lib.QUAI_EFORMAT


class VersionError(Error):
    """-QUAI_EVERSION: a format, protocol or state version this build does not know."""
    code = -_lib.QUAI_EVERSION


class PolicyError(Error):
    """-QUAI_EPOLICY: refused by the site's data policy (the message names the rule)."""
    code = -_lib.QUAI_EPOLICY


class InputError(Error):
    """-QUAI_EINPUT: the input does not fit the chosen record kind."""
    code = -_lib.QUAI_EINPUT


class ExistsError(Error):
    """-QUAI_EEXISTS: the destination already exists; quai never overwrites."""
    code = -_lib.QUAI_EEXISTS


class CompressError(Error):
    """-QUAI_ECOMPRESS: the zstd library failed."""
    code = -_lib.QUAI_ECOMPRESS


class InvalidArgumentError(Error, ValueError):
    """-EINVAL: an argument the library refused (the message says which and why)."""
    code = -_errno.EINVAL


class NotFoundError(Error, FileNotFoundError):
    """-ENOENT: the dataset or one of its files does not exist."""
    code = -_errno.ENOENT


class UnsupportedError(Error):
    """-EPROTONOSUPPORT: a URI this build cannot open (an unknown scheme)."""
    code = -_errno.EPROTONOSUPPORT


class PoolHeldError(Error):
    """A stream cannot take its next batch because the batches still alive
    in this process (Batch objects, numpy views or torch tensors over them)
    hold all of its prefetch slots: waiting would never end. The message
    says how many are alive and the ways out."""

    code = -_errno.EBUSY


_CLASSES = {
    -_lib.QUAI_ECORRUPT: CorruptError,
    -_lib.QUAI_EFORMAT: FormatError,
    -_lib.QUAI_EVERSION: VersionError,
    -_lib.QUAI_EPOLICY: PolicyError,
    -_lib.QUAI_EINPUT: InputError,
    -_lib.QUAI_EEXISTS: ExistsError,
    -_lib.QUAI_ECOMPRESS: CompressError,
    -_errno.EINVAL: InvalidArgumentError,
    -_errno.ENOENT: NotFoundError,
    -_errno.EPROTONOSUPPORT: UnsupportedError,
    -_errno.EBUSY: PoolHeldError,
}


def from_code(code, message=None):
    """The exception for a negative return code of libquai."""
    return _CLASSES.get(code, Error)(code, message)


def check(code, errbuf=None):
    """Raises for a negative code, with the err buffer's text; else returns it."""
    if code < 0:
        raise from_code(code, _lib.text(errbuf.value) if errbuf is not None else None)
    return code


class ClosedError(Error):
    """A released batch, or a closed stream, context or dataset, was used; or
    one inherited from the parent process across fork() (the pinned pool is
    not mapped in a child and the worker threads do not exist there)."""

    code = -_errno.EBADF

    def __init__(self, message):
        Exception.__init__(self, message)
        self.detail = message

    def __reduce__(self):
        return (type(self), (str(self),))
