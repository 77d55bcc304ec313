# SPDX-License-Identifier: Apache-2.0
"""The hostile suite (issue 22): each test attacks a real quaid, or a real
quai command, the way a hostile client, a full disk or a careless admin
would, with limits small enough to finish in seconds.

Run:  QUAI_BIN=build/tools/quai /usr/bin/python3 -m pytest tests/hostile

quaid is tools/quaid beside $QUAI_BIN. One private munged serves the whole
run (tests/munged.py); every quaid gets its own free port and directory.
"""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/munged.py
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cli"))  # tests/cli/test_xfer.py
from munged import private_munged, skip_reason  # noqa: E402

if not os.environ.get("QUAI_BIN"):
    pytest.skip("QUAI_BIN is not set: point it at the quai binary to test "
                "(e.g. QUAI_BIN=build/tools/quai)", allow_module_level=True)
QUAI_BIN = os.path.abspath(os.environ["QUAI_BIN"])
from test_xfer import Quaid as XferQuaid  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def munged():
    why = skip_reason()
    if why:
        pytest.skip(why)
    with private_munged() as m:
        yield m


class Quai:
    """Runs the quai binary in the C locale with no host configuration."""

    def __init__(self, base):
        self.env = dict(os.environ, LC_ALL="C",
                        QUAI_CONF=os.path.join(str(base), "no-such-quai.conf"))
        self.env.pop("SOURCE_DATE_EPOCH", None)

    def run(self, *args, env=None, timeout=60, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run([QUAI_BIN, *map(str, args)], env=dict(self.env, **(env or {})),
                              timeout=timeout, **kw)

    def popen(self, *args, env=None, **kw):
        return subprocess.Popen([QUAI_BIN, *map(str, args)],
                                env=dict(self.env, **(env or {})), **kw)

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, (args, p.returncode, p.stderr)
        return p

    def pack(self, src_bytes, dest, *extra, seed=1):
        src = os.path.join(os.path.dirname(str(dest)), f"src-{seed}.txt")
        with open(src, "wb") as f:
            f.write(src_bytes)
        self.ok("pack", "-q", "--records", "lines", *extra, src, dest)
        return dest


@pytest.fixture
def quai(tmp_path):
    return Quai(tmp_path)


class Quaid(XferQuaid):
    """tests/cli's quaid (its start, stop and log), with the listening
    address, the rules and an audit log of each test's choosing."""

    def __init__(self, base, listen_host="127.0.0.1", extra="",
                 rules="rule_tests = allow all\n"):
        super().__init__(base)
        self.audit = os.path.join(self.base, "audit.log")
        self.host = "127.0.0.1" if listen_host in ("0.0.0.0", "[::]") else listen_host
        with open(self.conf, "w") as f:
            f.write(f"listen = {listen_host}:{self.port}\n"
                    f"roots = {self.roots}\n"
                    "pinned = 64M\n"
                    "client_memory = 32M\n"
                    "idle_timeout = 10\n"
                    f"audit_log = {self.audit}\n"
                    f"munge_socket = {os.environ['QUAI_MUNGE_SOCKET']}\n"
                    "zone_hosts = 0.0.0.0/0\n"
                    + rules + extra)

    def uri(self, name="", host=None):
        return f"quai://{host or self.host}:{self.port}/{name}"


@pytest.fixture
def quaid_factory(tmp_path):
    made = []

    def make(**kw):
        q = Quaid(tmp_path / f"quaid-{len(made)}", **kw)
        made.append(q)
        return q

    yield make
    for q in made:
        q.stop()
        q.check_clean()
