# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the end-to-end tests of the `quai` program.

The binary under test comes from $QUAI_BIN (test_cli.py skips itself when it
is unset). Every run gets a controlled environment: the C locale (so error
texts are the English strerror ones), and $QUAI_CONF pointing at a file that
does not exist, so the host's default zone is "none" whatever the machine's
/etc/quai/quai.conf says.
"""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from munged import private_munged, skip_reason  # noqa: E402 (tests/munged.py)


class Quai:
    """Runs the quai binary and keeps its output as bytes."""

    def __init__(self, binary, workdir):
        self.binary = binary
        self.env = dict(os.environ)
        self.env["LC_ALL"] = "C"
        self.env["QUAI_CONF"] = os.path.join(workdir, "no-such-quai.conf")
        self.env.pop("SOURCE_DATE_EPOCH", None)

    def argv(self, *args):
        return [self.binary] + [os.fsencode(a) if isinstance(a, str) else a for a in args]

    def run(self, *args, input=None, env=None, timeout=120, **kw):
        """Runs quai with args; returns the CompletedProcess (bytes)."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        if input is None and "stdin" not in kw:
            kw["stdin"] = subprocess.DEVNULL
        full_env = dict(self.env)
        if env:
            full_env.update(env)
        return subprocess.run(self.argv(*args), input=input, env=full_env,
                              timeout=timeout, **kw)

    def ok(self, *args, **kw):
        """Runs quai and asserts that it succeeded."""
        p = self.run(*args, **kw)
        assert p.returncode == 0, (
            f"quai {' '.join(map(str, args))} exited {p.returncode}\n"
            f"stderr: {p.stderr!r}")
        return p

    def popen(self, *args, env=None, **kw):
        full_env = dict(self.env)
        if env:
            full_env.update(env)
        return subprocess.Popen(self.argv(*args), env=full_env, **kw)


@pytest.fixture
def quai(tmp_path):
    return Quai(os.environ["QUAI_BIN"], str(tmp_path))


@pytest.fixture(scope="session", autouse=True)
def munged():
    """One private munged (its own key and socket) for the whole run: every
    quaid the tests start authenticates its clients with it, and every quai
    they run finds it through $QUAI_MUNGE_SOCKET."""
    why = skip_reason()
    if why:
        pytest.skip(why)
    with private_munged() as m:
        yield m
