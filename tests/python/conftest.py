# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the tests of the Python binding (python/quai).

Run from the repository root with Debian's python and pytest:

    PYTHONPATH=python QUAI_LIB=build/release/libquai.so QUAI_BIN=build/release/tools/quai \\
        /usr/bin/python3 -m pytest -q tests/python

Without the variables, the package comes from <repo>/python, the library
from the build tree and the CLI from build/release/tools/quai. Datasets are
packed with the public CLI only (`quai pack`), from bytes generated with
fixed seeds.
"""
import os
import random
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))

if not os.environ.get("QUAI_LIB"):
    lib = os.path.join(REPO, "build", "release", "libquai.so")
    if os.path.exists(lib):
        os.environ["QUAI_LIB"] = lib
for p in (HERE, os.path.dirname(HERE), os.path.join(REPO, "python")):
    if p not in sys.path:
        sys.path.insert(0, p)

QUAI_BIN = os.environ.get("QUAI_BIN") or os.path.join(REPO, "build", "release", "tools", "quai")

# Record counts of the test datasets; small frames so that they have many.
FIXED_SIZE = 64
FIXED_RECORDS = 24000
FRAME = "16K"


def cli_env(tmp):
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env["QUAI_CONF"] = os.path.join(str(tmp), "no-such-quai.conf")
    env.pop("SOURCE_DATE_EPOCH", None)
    return env


def run_cli(*args, tmp="/nonexistent", check=True, **kw):
    if not os.access(QUAI_BIN, os.X_OK):
        pytest.skip("no quai binary at %s (set QUAI_BIN or build build/release)" % QUAI_BIN)
    p = subprocess.run([QUAI_BIN] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=cli_env(tmp), timeout=300, **kw)
    if check and p.returncode != 0:
        raise AssertionError("quai %s exited %d: %s" % (" ".join(map(str, args)), p.returncode,
                                                        p.stderr.decode(errors="replace")))
    return p


def pack(src, dest, records, frame_size=FRAME, *extra):
    run_cli("pack", "-q", "--records", records, "--frame-size", frame_size, *extra, src, dest,
            tmp=os.path.dirname(str(dest)))
    return str(dest)


def compressible(rng, n):
    """n bytes that zstd compresses a little (random letters)."""
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,"
    return bytes(alphabet[b & 63] for b in rng.randbytes(n))


@pytest.fixture(scope="session")
def datadir(tmp_path_factory):
    return tmp_path_factory.mktemp("quai-py")


@pytest.fixture(scope="session")
def fixed_ds(datadir):
    """A fixed:64 dataset of FIXED_RECORDS records, 256 per frame."""
    src = datadir / "fixed.bin"
    src.write_bytes(compressible(random.Random(1), FIXED_SIZE * FIXED_RECORDS))
    return pack(src, datadir / "fixed", "fixed:%d" % FIXED_SIZE)


@pytest.fixture(scope="session")
def lines_ds(datadir):
    """A lines dataset: lines of 1 to 300 bytes, '\\n' included."""
    rng = random.Random(2)
    lines = [compressible(rng, rng.randrange(0, 300)).replace(b"\n", b" ") + b"\n"
             for _ in range(12000)]
    src = datadir / "lines.txt"
    src.write_bytes(b"".join(lines))
    return pack(src, datadir / "lines", "lines")


@pytest.fixture(scope="session")
def files_ds(datadir):
    """A files dataset: 300 files of 0 to 5000 bytes, in subdirectories."""
    rng = random.Random(3)
    top = datadir / "files-src"
    for i in range(300):
        d = top / ("d%d" % (i % 7))
        d.mkdir(parents=True, exist_ok=True)
        (d / ("f%03d.bin" % i)).write_bytes(compressible(rng, rng.randrange(0, 5000)))
    return pack(top, datadir / "files", "files")


@pytest.fixture(scope="session")
def ctx():
    import quai
    c = quai.Context(pinned_bytes=64 << 20)
    yield c
    c.close()


_counts = {}


@pytest.fixture(scope="session")
def frame_counts():
    """frame_counts(path): records per frame, in dataset order (cached)."""
    import quai
    from epoch_order import frame_counts as fc

    def get(path):
        if path not in _counts:
            with quai.Dataset(path) as d:
                _counts[path] = fc(d)
        return _counts[path]
    return get


def pinned_mapping(addr):
    """The /proc/self/smaps entry (start, end, VmFlags) holding addr, or None."""
    with open("/proc/self/smaps") as f:
        cur = None
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                a, b = (int(x, 16) for x in head.split("-"))
                cur = (a, b) if a <= addr < b else None
            elif cur and line.startswith("VmFlags:"):
                return cur[0], cur[1], line.split()[1:]
    return None


@pytest.fixture(scope="session")
def munged():
    """A private munged (own key and socket) for the remote tests; the
    library finds it through $QUAI_MUNGE_SOCKET."""
    from munged import private_munged, skip_reason

    why = skip_reason()
    if why:
        pytest.skip(why)
    with private_munged() as m:
        yield m
