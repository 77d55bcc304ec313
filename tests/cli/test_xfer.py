# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of `quai push` and `quai pull` against a real quaid on
loopback (docs/quai.md, docs/PROTOCOL.md "Transfers").

Run:  QUAI_BIN=build/tools/quai /usr/bin/python3 -m pytest tests/cli/test_xfer.py

The quaid binary is tools/quaid beside $QUAI_BIN. Each test starts its own
quaid on a free port, with its own roots and push_root, and kills it at the
end. Interruptions are real: a client or the server is killed with SIGKILL
while a transfer runs (QUAI_XFER_CHUNK makes the chunks small so that a
64 MiB transfer lasts long enough to be caught in the middle).
"""
import json
import os
import random
import re
import signal
import socket
import subprocess
import time

import pytest

if not os.environ.get("QUAI_BIN"):
    pytest.skip("QUAI_BIN is not set: point it at the quai binary to test "
                "(e.g. QUAI_BIN=build/tools/quai)", allow_module_level=True)
QUAI_BIN = os.path.abspath(os.environ["QUAI_BIN"])
QUAID_BIN = os.path.join(os.path.dirname(QUAI_BIN), "quaid")
if not os.access(QUAID_BIN, os.X_OK):
    pytest.skip(f"{QUAID_BIN} is not an executable file", allow_module_level=True)

EXIT_OK, EXIT_BAD_DATA, EXIT_USAGE, EXIT_FAILURE, EXIT_REMOTE, EXIT_REFUSED = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
PARTIAL_SUFFIX = ".quai-partial"
BIG = 64 << 20          # bytes of the datasets that interruptions catch mid-way
SMALL_CHUNK = "4K"      # QUAI_XFER_CHUNK for them


# ---- helpers ---------------------------------------------------------------

def write(path, data):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def tree(root):
    """{relative path: contents} of every regular file under root."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = read(full)
    return out


def text_lines(seed, count):
    r = random.Random(seed)
    words = [bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9)))
             for _ in range(300)]
    return b"".join(b"%d " % i + b" ".join(r.choice(words) for _ in range(r.randint(0, 12)))
                    + b"\n" for i in range(count))


def stderr_text(p):
    return p.stderr.decode("utf-8", "replace")


def partials(directory):
    return [n for n in os.listdir(directory) if n.endswith(PARTIAL_SUFFIX)]


def dir_bytes(path):
    """Bytes in the regular files of a directory (0 when it is missing)."""
    total = 0
    try:
        for name in os.listdir(path):
            try:
                total += os.stat(os.path.join(path, name)).st_size
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        pass
    return total


SKIPPED_RE = re.compile(r"([\d.]+ \S+) skipped")


def skipped_of(p):
    """The 'X skipped' figure of a push or pull summary line."""
    m = SKIPPED_RE.search(p.stdout.decode())
    assert m, p.stdout
    return m.group(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what, step=0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(step)
    pytest.fail(f"timed out waiting for {what}")


def auth_conf():
    """quaid configuration lines for the tests' own munged (conftest.py), and
    a policy letting every authenticated user do anything from loopback."""
    return (f"munge_socket = {os.environ['QUAI_MUNGE_SOCKET']}\n"
            "zone_hosts = 127.0.0.0/8\n"
            "rule_tests = allow all\n")


class Quaid:
    """One quaid process on loopback, with its own roots and push_root."""

    def __init__(self, base, push_root=None, port=None):
        self.base = str(base)
        self.roots = os.path.join(self.base, "roots")
        self.push_root = push_root or os.path.join(self.base, "pushed")
        os.makedirs(self.roots, exist_ok=True)
        os.makedirs(self.push_root, exist_ok=True)
        self.port = port or free_port()
        self.conf = os.path.join(self.base, "quaid.conf")
        with open(self.conf, "w") as f:
            f.write(f"listen = 127.0.0.1:{self.port}\n"
                    f"roots = {self.roots}\n"
                    f"push_root = {self.push_root}\n"
                    "pinned = 256M\n"
                    "client_memory = 128M\n"
                    "idle_timeout = 10\n"
                    + auth_conf())
        self.log_path = os.path.join(self.base, "quaid.log")
        self.proc = None
        self.logs = []

    def start(self):
        env = dict(os.environ, LC_ALL="C",
                   QUAI_CONF=os.path.join(self.base, "no-such-quai.conf"))
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([QUAID_BIN, "--config", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if b"listening on" in read(self.log_path):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"quaid did not start:\n{read(self.log_path).decode(errors='replace')}")

    def uri(self, name=""):
        return f"quai://127.0.0.1:{self.port}/{name}"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None

    def text(self):
        return read(self.log_path).decode(errors="replace")

    def check_clean(self):
        """No sanitizer report in the log (ASan/UBSan builds)."""
        text = self.text()
        for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer"):
            assert mark not in text, text


@pytest.fixture
def server(tmp_path):
    q = Quaid(tmp_path / "server").start()
    yield q
    q.stop()
    q.check_clean()


@pytest.fixture
def client(quai):
    """quai with the default remote timeout, set here so that a change of
    default does not change the tests. Not shorter: on a loaded machine a
    quaid busy after a killed client can take more than 5 s to answer, and
    the tests that need a dead server noticed set their own."""
    quai.env["QUAI_REMOTE_TIMEOUT"] = "15"
    return quai


def pack(quai, dest, *srcs, opts=(), env=None):
    os.makedirs(os.path.dirname(str(dest)), exist_ok=True)
    quai.ok("pack", "-q", *opts, *srcs, dest, env=env)
    return str(dest)


@pytest.fixture
def files_ds(tmp_path, quai):
    """A files dataset of several shards, and its source tree."""
    src = tmp_path / "src"
    r = random.Random(7)
    write(src / "top.txt", b"hello, quai\n")
    write(src / "empty.bin", b"")
    write(src / "a" / "b" / "deep.bin", r.randbytes(300_000))
    write(src / "a" / "text.txt", text_lines(3, 2000))
    for i in range(20):
        write(src / "many" / f"f{i:02d}.bin", r.randbytes(r.randint(0, 20_000)))
    ds = pack(quai, tmp_path / "local" / "files1", str(src),
              opts=("--frame-size", "64K", "--shard-size", "64K"))
    return str(src), ds


@pytest.fixture
def big_ds(tmp_path, quai):
    """64 MiB of incompressible fixed-size records: long enough to interrupt."""
    raw = tmp_path / "big.bin"
    write(raw, random.Random(11).randbytes(BIG))
    return pack(quai, tmp_path / "local" / "big", str(raw),
                opts=("--records", "fixed:4096", "--shard-size", "16M"))


# ---- help ------------------------------------------------------------------

@pytest.mark.parametrize("verb", ["push", "pull"])
def test_help(quai, verb):
    p = quai.ok(verb, "--help")
    out = p.stdout.decode()
    assert out.startswith(f"Usage: quai {verb} ")
    assert "Exit status" in out and "quai://HOST[:PORT]/NAME" in out
    assert p.stderr == b""


@pytest.mark.parametrize("args", [
    ("pull",), ("pull", "quai://h/x"), ("pull", "/tmp/x", "dest"), ("pull", "quai://h/", "d"),
    ("push",), ("push", "src"), ("push", "src", "not-a-uri"),
    ("pull", "--bogus", "quai://h/x", "d"),
])
def test_usage_errors(quai, args):
    p = quai.run(*args)
    assert p.returncode == EXIT_USAGE, stderr_text(p)
    assert f"Try 'quai {args[0]} --help'." in stderr_text(p)


def test_push_dataset_with_pack_options_is_a_usage_error(quai, server, files_ds):
    p = quai.run("push", "--level", "9", files_ds[1], server.uri("files1"))
    assert p.returncode == EXIT_USAGE
    assert "packing options" in stderr_text(p)


# ---- round trips -----------------------------------------------------------

def test_push_then_pull_is_byte_identical(client, server, files_ds, tmp_path):
    src, ds = files_ds
    p = client.ok("push", ds, server.uri("files1"))
    assert "pushed, verified and published" in p.stdout.decode()
    assert skipped_of(p) == "0 B"
    assert tree(os.path.join(server.push_root, "files1")) == tree(ds)
    assert not partials(server.push_root)

    dest = tmp_path / "back"
    p = client.ok("pull", server.uri("files1"), str(dest))
    assert "pulled from" in p.stdout.decode()
    assert tree(dest) == tree(ds)
    assert not partials(tmp_path)
    client.ok("verify", "-q", str(dest))

    out = tmp_path / "restored"
    client.ok("pull", "-q", "--unpack", server.uri("files1"), str(out))
    assert tree(out) == tree(src)
    assert not partials(tmp_path)


def test_push_raw_lines_then_pull_unpack(client, server, tmp_path):
    data = text_lines(5, 50_000)
    raw = tmp_path / "corpus.txt"
    write(raw, data)
    before = set(os.listdir(tmp_path))
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    p = client.ok("push", "--records", "lines", "--frame-size", "256K", "--class", "public",
                  str(raw), server.uri("corpus"), env={"TMPDIR": str(tmpdir)})
    assert "published" in p.stdout.decode()
    assert os.listdir(tmpdir) == [], "the temporary pack was left behind"
    assert set(os.listdir(tmp_path)) == before | {"tmpdir"}

    info = json.loads(client.ok("info", "--json",
                                os.path.join(server.push_root, "corpus")).stdout)
    assert info["name"] == "corpus" and info["kind"] == "lines"
    assert info["classification"] == "public"

    out = tmp_path / "corpus.out"
    p = client.ok("pull", "--unpack", server.uri("corpus"), str(out))
    assert "pulled and unpacked" in p.stdout.decode()
    assert read(out) == data
    assert not partials(tmp_path)


def test_pull_from_a_root(client, server, files_ds, tmp_path):
    """Datasets under `roots` are pulled the same as pushed ones."""
    client.ok("pack", "-q", files_ds[0], os.path.join(server.roots, "rooted"))
    dest = tmp_path / "rooted"
    client.ok("pull", "-q", server.uri("rooted"), str(dest))
    assert tree(dest) == tree(os.path.join(server.roots, "rooted"))


@pytest.mark.parametrize("victim", ["shard-00000.zst", "shard-00000.idx"])
def test_pull_of_a_corrupt_copy_publishes_nothing(client, server, files_ds, tmp_path, victim):
    """A file that differs from the manifest's checksum (one bit flipped on
    the server's disk, same size) fails the pull's check: nothing appears
    at DEST, no partial is kept, and the error names the file."""
    client.ok("pack", "-q", files_ds[0], os.path.join(server.roots, "rotten"))
    path = os.path.join(server.roots, "rotten", victim)
    data = bytearray(read(path))
    data[len(data) // 2] ^= 0x08
    write(path, bytes(data))
    dest = tmp_path / "rotten"
    p = client.run("pull", server.uri("rotten"), str(dest))
    assert p.returncode == EXIT_BAD_DATA, stderr_text(p)
    err = stderr_text(p)
    assert "fails verification" in err and victim in err, err
    assert not os.path.lexists(dest) and not partials(tmp_path)


def test_quiet_prints_nothing(client, server, files_ds, tmp_path):
    p = client.ok("push", "-q", files_ds[1], server.uri("files1"))
    assert p.stdout == b"" and p.stderr == b""
    p = client.ok("pull", "-q", server.uri("files1"), str(tmp_path / "q"))
    assert p.stdout == b"" and p.stderr == b""


# ---- refusals ----------------------------------------------------------------

def test_pull_to_existing_dest_changes_nothing(client, server, files_ds, tmp_path):
    client.ok("push", "-q", files_ds[1], server.uri("files1"))
    dest = tmp_path / "exists"
    write(dest / "keep.txt", b"mine")
    p = client.run("pull", server.uri("files1"), str(dest))
    assert p.returncode == EXIT_FAILURE, stderr_text(p)
    assert "already exists" in stderr_text(p)
    assert tree(dest) == {"keep.txt": b"mine"}
    assert not partials(tmp_path)


def test_pull_of_a_missing_dataset(client, server, tmp_path):
    dest = tmp_path / "nothing"
    p = client.run("pull", server.uri("no-such-set"), str(dest))
    assert p.returncode == EXIT_FAILURE, stderr_text(p)
    err = stderr_text(p)
    assert "no dataset 'no-such-set'" in err and f"127.0.0.1:{server.port}" in err, err
    assert not os.path.lexists(dest)
    assert not partials(tmp_path)


def test_pull_from_nobody_names_the_server(client, tmp_path):
    port = free_port()
    p = client.run("pull", f"quai://127.0.0.1:{port}/x", str(tmp_path / "d"),
                   env={"QUAI_REMOTE_TIMEOUT": "2"}, timeout=60)
    assert p.returncode == EXIT_REMOTE, stderr_text(p)
    assert f"127.0.0.1:{port}" in stderr_text(p)
    assert not partials(tmp_path)


def test_push_to_an_existing_name_is_refused(client, server, files_ds):
    client.ok("push", "-q", files_ds[1], server.uri("files1"))
    before = tree(os.path.join(server.push_root, "files1"))
    p = client.run("push", files_ds[1], server.uri("files1"))
    assert p.returncode == EXIT_FAILURE, stderr_text(p)
    assert "exists" in stderr_text(p) and "never overwrites" in stderr_text(p)
    assert tree(os.path.join(server.push_root, "files1")) == before


def test_push_under_another_name_is_refused(client, server, files_ds):
    p = client.run("push", files_ds[1], server.uri("other"))
    assert p.returncode == EXIT_FAILURE, stderr_text(p)
    assert "keeps its name" in stderr_text(p)
    assert os.listdir(server.push_root) == []


def test_push_refused_without_push_root(client, tmp_path, files_ds):
    q = Quaid(tmp_path / "ro")
    with open(q.conf, "w") as f:
        f.write(f"listen = 127.0.0.1:{q.port}\nroots = {q.roots}\n"
                "pinned = 64M\nclient_memory = 32M\n" + auth_conf())
    q.start()
    try:
        p = client.run("push", files_ds[1], q.uri("files1"))
        assert p.returncode == EXIT_FAILURE, stderr_text(p)
        assert "accepts no pushes" in stderr_text(p)
    finally:
        q.stop()
    q.check_clean()


def test_corrupt_push_is_refused_and_nothing_kept(client, server, files_ds, tmp_path):
    _src, ds = files_ds
    bad = tmp_path / "bad" / "files1"
    os.makedirs(bad.parent)
    subprocess.run(["cp", "-r", ds, str(bad)], check=True)
    shard = os.path.join(bad, "shard-00001.zst")
    data = bytearray(read(shard))
    data[len(data) // 3] ^= 0x40   # same size, one bit flipped inside a frame
    write(shard, bytes(data))

    p = client.run("push", str(bad), server.uri("files1"))
    assert p.returncode == EXIT_BAD_DATA, stderr_text(p)
    err = stderr_text(p)
    assert "fails verification" in err and "shard-00001.zst" in err, err
    assert os.listdir(server.push_root) == [], os.listdir(server.push_root)
    p = client.run("ls", server.uri())
    assert b"files1" not in p.stdout
    p = client.run("pull", server.uri("files1"), str(tmp_path / "again"))
    assert p.returncode == EXIT_FAILURE
    # The good copy still goes through afterwards: nothing stale was kept.
    client.ok("push", "-q", ds, server.uri("files1"))
    assert tree(os.path.join(server.push_root, "files1")) == tree(ds)


def test_sensitive_data_stays_in_its_zone(client, server, tmp_path, files_ds):
    src, _ds = files_ds
    # quaid's zone is "none" (its QUAI_CONF does not exist). A sensitive
    # dataset is packed on a host of its zone, under a sovereign path.
    packer = tmp_path / "packer-eu.conf"
    write(packer, f"zone = eu-hpc-1\nsovereign_paths = {tmp_path}\n".encode())
    foreign = pack(client, tmp_path / "s1" / "secret", src,
                   opts=("--class", "sensitive", "--zone", "eu-hpc-1"),
                   env={"QUAI_CONF": str(packer)})
    p = client.run("push", foreign, server.uri("secret"))
    assert p.returncode == EXIT_REFUSED, stderr_text(p)
    assert "sensitive" in stderr_text(p) and "eu-hpc-1" in stderr_text(p)
    assert os.listdir(server.push_root) == []

    packer = tmp_path / "packer-none.conf"
    write(packer, f"zone = none\nsovereign_paths = {tmp_path}\n".encode())
    local = pack(client, tmp_path / "s2" / "secret", src, opts=("--class", "sensitive"),
                 env={"QUAI_CONF": str(packer)})
    client.ok("push", "-q", local, server.uri("secret"), env={"QUAI_XFER_CHUNK": "64K"})
    # A host of another zone may not pull it; a host of its zone may, into
    # its sovereign storage only.
    sov = tmp_path / "sov"
    os.mkdir(sov)
    conf = tmp_path / "elsewhere.conf"
    write(conf, f"zone = elsewhere\nsovereign_paths = {sov}\n".encode())
    p = client.run("pull", server.uri("secret"), str(sov / "got"),
                   env={"QUAI_CONF": str(conf)})
    assert p.returncode == EXIT_REFUSED, stderr_text(p)
    assert "sensitive" in stderr_text(p) and "elsewhere" in stderr_text(p)
    assert os.listdir(sov) == []
    conf = tmp_path / "here.conf"
    write(conf, f"zone = none\nsovereign_paths = {sov}\n".encode())
    p = client.run("pull", server.uri("secret"), str(tmp_path / "got"),
                   env={"QUAI_CONF": str(conf)})
    assert p.returncode == EXIT_REFUSED, stderr_text(p)
    assert "not a sovereign path" in stderr_text(p) and str(conf) in stderr_text(p)
    assert not os.path.lexists(tmp_path / "got") and not partials(tmp_path)
    client.ok("pull", "-q", server.uri("secret"), str(sov / "got"),
              env={"QUAI_XFER_CHUNK": "64K", "QUAI_CONF": str(conf)})
    assert tree(sov / "got") == tree(local)


# ---- interruptions -------------------------------------------------------------

def test_pull_cancelled_by_sigint_then_resumed(client, server, big_ds, tmp_path):
    client.ok("push", "-q", big_ds, server.uri("big"))
    dest = tmp_path / "sig"
    partial = tmp_path / (".sig" + PARTIAL_SUFFIX)
    proc = client.popen("pull", server.uri("big"), str(dest),
                        env={"QUAI_XFER_CHUNK": SMALL_CHUNK},
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: dir_bytes(partial) > (2 << 20) or proc.poll() is not None, 60,
             "the pull to start writing")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert b"interrupted" in err and out == b""
    assert not os.path.exists(dest) and dir_bytes(partial) > 0
    p = client.ok("pull", server.uri("big"), str(dest))
    assert skipped_of(p) != "0 B", p.stdout
    assert tree(dest) == tree(big_ds)


def test_pull_killed_then_resumed(client, server, big_ds, tmp_path):
    client.ok("pack", "-q", "--records", "fixed:4096", "--shard-size", "16M",
              str(tmp_path / "big.bin"), os.path.join(server.roots, "big"))
    dest = tmp_path / "big-copy"
    partial = tmp_path / (".big-copy" + PARTIAL_SUFFIX)
    proc = client.popen("pull", "-q", server.uri("big"), str(dest),
                        env={"QUAI_XFER_CHUNK": SMALL_CHUNK},
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: dir_bytes(partial) > (2 << 20) or proc.poll() is not None, 60,
             "the pull to start writing")
    proc.kill()
    proc.wait()
    assert not os.path.exists(dest), "the pull finished before it could be interrupted"
    assert 0 < dir_bytes(partial)

    p = client.ok("pull", server.uri("big"), str(dest))
    assert skipped_of(p) != "0 B", p.stdout
    assert tree(dest) == tree(os.path.join(server.roots, "big"))
    assert not partials(tmp_path)


def test_server_killed_mid_pull_then_resumed(client, server, big_ds, tmp_path):
    client.ok("pack", "-q", "--records", "fixed:4096", "--shard-size", "16M",
              str(tmp_path / "big.bin"), os.path.join(server.roots, "big"))
    dest = tmp_path / "copy"
    partial = tmp_path / (".copy" + PARTIAL_SUFFIX)
    proc = client.popen("pull", server.uri("big"), str(dest),
                        env={"QUAI_XFER_CHUNK": SMALL_CHUNK, "QUAI_REMOTE_TIMEOUT": "3"},
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: dir_bytes(partial) > (2 << 20) or proc.poll() is not None, 60,
             "the pull to start writing")
    server.kill()
    t0 = time.monotonic()
    try:
        _out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the client did not give up on a dead server")
    waited = time.monotonic() - t0
    assert proc.returncode == EXIT_REMOTE, err
    assert waited < 3 + 5, f"the client took {waited:.1f} s to notice"
    assert f"quaid at 127.0.0.1:{server.port}" in err.decode(), err
    assert not os.path.exists(dest)
    assert dir_bytes(partial) > 0

    # The same server again, on the same port: the pull picks up where it was.
    server.start()
    p = client.ok("pull", server.uri("big"), str(dest))
    assert skipped_of(p) != "0 B", p.stdout
    assert tree(dest) == tree(os.path.join(server.roots, "big"))


def test_push_interrupted_then_resumed(client, server, big_ds, tmp_path):
    partial = os.path.join(server.push_root, ".big" + PARTIAL_SUFFIX)
    proc = client.popen("push", "-q", big_ds, server.uri("big"),
                        env={"QUAI_XFER_CHUNK": SMALL_CHUNK},
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: dir_bytes(partial) > (2 << 20) or proc.poll() is not None, 60,
             "the push to start writing")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert b"interrupted" in err
    assert not os.path.exists(os.path.join(server.push_root, "big"))
    kept = dir_bytes(partial)
    assert kept > (2 << 20)

    p = client.ok("push", big_ds, server.uri("big"))
    assert skipped_of(p) != "0 B", p.stdout
    assert tree(os.path.join(server.push_root, "big")) == tree(big_ds)
    assert not partials(server.push_root)


def test_push_killed_then_resumed(client, server, big_ds, tmp_path):
    """SIGKILL: quaid keeps the partial (locked) until it drops the dead
    session; a re-run then sends only what is missing."""
    partial = os.path.join(server.push_root, ".big" + PARTIAL_SUFFIX)
    proc = client.popen("push", "-q", big_ds, server.uri("big"),
                        env={"QUAI_XFER_CHUNK": SMALL_CHUNK},
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: dir_bytes(partial) > (2 << 20) or proc.poll() is not None, 60,
             "the push to start writing")
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while True:
        p = client.run("push", big_ds, server.uri("big"))
        if p.returncode == EXIT_OK or b"in progress" not in p.stderr:
            break
        assert time.monotonic() < deadline, "the dead client's push never let go"
        time.sleep(0.5)
    assert p.returncode == EXIT_OK, stderr_text(p)
    assert skipped_of(p) != "0 B", p.stdout
    assert tree(os.path.join(server.push_root, "big")) == tree(big_ds)


# ---- a full disk -----------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "quai-test", str(mnt)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {p.stderr.decode().strip()}")
    yield str(mnt)
    subprocess.run(["umount", "-l", str(mnt)])


def test_push_onto_a_full_disk(client, tmp_path, small_fs, big_ds):
    q = Quaid(tmp_path / "full", push_root=small_fs).start()
    try:
        p = client.run("push", big_ds, q.uri("big"))
        assert p.returncode == EXIT_FAILURE, stderr_text(p)
        err = stderr_text(p)
        assert "No space left on device" in err and "push_root" in err, err
        assert re.search(r"shard-\d{5}\.(zst|idx)", err), err
        assert not os.path.exists(os.path.join(small_fs, "big"))
        p = client.run("ls", q.uri())
        assert b"big" not in p.stdout
    finally:
        q.stop()
    q.check_clean()
