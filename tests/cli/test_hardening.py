# SPDX-License-Identifier: Apache-2.0
"""The format and the CLI under a careless or hostile hand (issue 22, items
11-16): what `quai pack`, `verify`, `unpack` and `cat` do with FIFOs,
forged manifests and indexes, newer format versions and file modes.

Run:  QUAI_BIN=build/tools/quai /usr/bin/python3 -m pytest tests/cli/test_hardening.py
"""
import ctypes
import ctypes.util
import json
import os
import re
import signal
import stat
import subprocess
import time

import pytest

if not os.environ.get("QUAI_BIN"):
    pytest.skip("QUAI_BIN is not set: point it at the quai binary to test "
                "(e.g. QUAI_BIN=build/tools/quai)", allow_module_level=True)

EXIT_OK, EXIT_BAD_DATA, EXIT_USAGE, EXIT_FAILURE, EXIT_VERSION = 0, 1, 2, 3, 6


def xxh3(data):
    lib = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
    lib.XXH3_64bits.restype = ctypes.c_uint64
    lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return lib.XXH3_64bits(data, len(data))


def rewrite_manifest(ds, edit):
    """Applies edit (text -> text) to ds/manifest.json and recomputes its
    checksum (docs/FORMAT.md, "The manifest checksum"), as a forger would."""
    path = os.path.join(ds, "manifest.json")
    with open(path) as f:
        text = edit(f.read())
    head = text[:text.rindex('"manifest_xxh3"')]
    with open(path, "w") as f:
        f.write(head + '"manifest_xxh3": "%016x"\n}\n' % xxh3(head.encode()))


def pack_lines(quai, tmp_path, name="ds", count=2000, *extra):
    src = tmp_path / f"{name}.txt"
    src.write_bytes(b"".join(b"line %d of the corpus\n" % i for i in range(count)))
    dest = str(tmp_path / name)
    quai.ok("pack", "-q", "--records", "lines", *extra, str(src), dest)
    return dest


# ---- 12: verify checks each shard file whole -----------------------------

def test_verify_checks_whole_file_checksum(quai, tmp_path):
    ds = pack_lines(quai, tmp_path)
    quai.ok("verify", "-q", ds)
    # The manifest (checksum recomputed) claims another XXH3 for the shard:
    # every frame still decodes, only the whole-file check can tell.
    rewrite_manifest(ds, lambda t: re.sub(r'("xxh3": ")[0-9a-f]{16}"',
                                          r'\g<1>0123456789abcdef"', t, count=1))
    p = quai.run("verify", ds)
    assert p.returncode == EXIT_BAD_DATA, p.stderr
    assert b"file checksum differs from the manifest's" in p.stderr, p.stderr


# ---- 13: one exit status for a dataset from a newer quai -----------------

@pytest.mark.parametrize("verb", ["verify", "info", "cat", "unpack"])
def test_newer_format_version_has_its_own_exit_status(quai, tmp_path, verb):
    ds = pack_lines(quai, tmp_path)
    rewrite_manifest(ds, lambda t: t.replace('"format_version": 1', '"format_version": 99'))
    args = [verb, ds] + ([str(tmp_path / "out")] if verb == "unpack" else [])
    p = quai.run(*args)
    assert p.returncode == EXIT_VERSION, (verb, p.returncode, p.stderr)
    assert b"newer quai" in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / "out")


# ---- 14: verify refuses names unpack cannot restore ----------------------

def forge_names(ds, old, new):
    """Replaces the names blob `old` by `new` (same length) in shard 0's
    index, with the index's trailer and the manifest's index_xxh3
    recomputed: a forgery every checksum agrees with."""
    idx = os.path.join(ds, "shard-00000.idx")
    with open(idx, "rb") as f:
        data = f.read()
    assert data.count(old) == 1 and len(old) == len(new)
    body = data[:-8].replace(old, new)
    data = body + xxh3(body).to_bytes(8, "little")
    with open(idx, "wb") as f:
        f.write(data)
    rewrite_manifest(ds, lambda t: re.sub(r'("index_xxh3": ")[0-9a-f]{16}"',
                                          r'\g<1>%016x"' % xxh3(data), t, count=1))


@pytest.mark.parametrize("names, forged, what", [
    ((b"a", b"b"), b"aa", b"repeats"),
    ((b"a", b"b"), b"ba", b"must rise in byte order"),
    ((b"a", b"b/x"), b"bb/x", b"makes a directory of record 'b'"),
])
def test_verify_refuses_names_unpack_cannot_restore(quai, tmp_path, names, forged, what):
    src = tmp_path / "src"
    for n in names:
        (src / n.decode()).parent.mkdir(parents=True, exist_ok=True)
        (src / n.decode()).write_bytes(b"contents of " + n)
    ds = str(tmp_path / "ds")
    quai.ok("pack", "-q", "--records", "files", str(src), ds)
    quai.ok("verify", "-q", ds)
    forge_names(ds, b"".join(names), forged)
    p = quai.run("verify", ds)
    assert p.returncode == EXIT_BAD_DATA, p.stderr
    assert what in p.stderr, p.stderr
    assert b"shard-00000.idx" in p.stderr


# ---- 11: FIFOs and the first signal --------------------------------------

def partials(directory):
    return [n for n in os.listdir(directory) if n.endswith(".quai-partial")]


def test_pack_refuses_a_fifo_as_a_files_source(quai, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    p = quai.run("pack", "-q", "--records", "files", str(fifo), str(tmp_path / "out"), timeout=20)
    assert p.returncode == EXIT_FAILURE, p.stderr
    assert b"not a regular file" in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / "out") and partials(tmp_path) == []


@pytest.mark.parametrize("blocked_in", ["open", "read"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_ends_a_pack_blocked_on_a_fifo(quai, tmp_path, sig, blocked_in):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = quai.popen("pack", "-q", "--threads", "4", "--records", "lines", str(fifo),
                      str(tmp_path / "out"), stdin=subprocess.DEVNULL,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer = None
    try:
        if blocked_in == "read":
            # A writer that never writes: pack waits in read(), which
            # retried EINTR, so the first signal was lost (issue 22 #11).
            writer = open(fifo, "wb")
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{proc.pid}/task")) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if writer:
            writer.close()
    assert proc.returncode == 128 + sig, err
    assert b"interrupted" in err, err
    assert not os.path.exists(tmp_path / "out") and partials(tmp_path) == []


# ---- 16: what unpack writes ----------------------------------------------

def test_unpack_help_says_modes_are_not_kept(quai):
    out = quai.ok("unpack", "--help").stdout
    assert b"NOT RESTORED" in out and b"0600" in out


@pytest.mark.parametrize("cls, fmode, dmode", [("internal", 0o644, 0o755),
                                               ("sensitive", 0o600, 0o700)])
def test_unpack_modes(quai, tmp_path, cls, fmode, dmode):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "secret").write_bytes(b"s")
    os.chmod(src / "sub" / "secret", 0o600)
    conf = tmp_path / "host.conf"
    conf.write_text(f"zone = z1\nsovereign_paths = {tmp_path}\n")
    env = {"QUAI_CONF": str(conf)}
    ds = str(tmp_path / "ds")
    quai.ok("pack", "-q", "--records", "files", "--class", cls, "--zone", "z1",
            str(src), ds, env=env)
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        quai.ok("unpack", "-q", ds, str(out), env=env)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(out / "sub" / "secret").st_mode) == fmode
    assert stat.S_IMODE(os.stat(out / "sub").st_mode) == dmode
    assert stat.S_IMODE(os.stat(out).st_mode) == dmode


# ---- 15: cat writes on a thread of its own; a signal still ends it --------

def test_cat_into_a_stalled_pipe_ends_on_the_first_signal(quai, tmp_path):
    ds = pack_lines(quai, tmp_path, count=400000)
    r, w = os.pipe()
    try:
        proc = quai.popen("cat", ds, stdin=subprocess.DEVNULL, stdout=w,
                          stderr=subprocess.PIPE)
        os.close(w)
        w = -1
        # Nobody reads: the writer blocks on a full pipe, the decoder on
        # the writer. The first SIGINT must still end quai cat.
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{proc.pid}/task")) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 128 + signal.SIGINT, proc.stderr.read()
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_cat_output_is_the_input(quai, tmp_path):
    ds = pack_lines(quai, tmp_path, count=300000)
    p = quai.ok("cat", ds)
    assert p.stdout == (tmp_path / "ds.txt").read_bytes()
