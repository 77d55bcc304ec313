# SPDX-License-Identifier: Apache-2.0
"""quai: stage training datasets into pinned memory, from Python.

A thin binding of libquai's public C API (include/quai/quai.h) with ctypes:

    import quai
    with quai.Stream("/lustre/datasets/tokens", rank=rank, world=world,
                     seed=17, epoch=epoch, batch=256) as stream:
        for batch in stream:                 # batches already in pinned memory
            tokens = batch.records(np.int16) # (count, record_size // 2), no copy
            train_step(tokens)               # released when the loop moves on
        state = stream.state()               # bytes, to resume mid-epoch

quai.torch.QuaiDataset is the PyTorch IterableDataset over the same.

The library is found at $QUAI_LIB if set, else in the build tree
(build/release/libquai.so*), else by ctypes.util.find_library("quai").
"""
from ._lib import LIB_PATH as lib_path
from ._lib import QUAI_STATE_MAX as STATE_MAX
from ._lib import quai_version as _quai_version
from ._errors import (ClosedError, CompressError, CorruptError, Error, ExistsError,
                      FormatError, InputError, InvalidArgumentError, NotFoundError,
                      PolicyError, PoolHeldError, UnsupportedError, VersionError)
from ._core import (Batch, BatchCopy, Context, Dataset, RecordLocation, Stream,
                    default_context, rank_from_env)
from ._mix import Mix

__version__ = "0.1.0"


def version():
    """The version of the libquai actually loaded, "MAJOR.MINOR.PATCH"."""
    return _quai_version().decode()


__all__ = ["Batch", "BatchCopy", "ClosedError", "CompressError", "Context", "CorruptError",
           "Dataset", "Error", "ExistsError", "FormatError", "InputError",
           "InvalidArgumentError", "Mix", "NotFoundError", "PolicyError", "PoolHeldError",
           "RecordLocation",
           "STATE_MAX", "Stream", "UnsupportedError", "VersionError", "default_context",
           "rank_from_env",
           "lib_path", "version"]
