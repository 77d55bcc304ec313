# SPDX-License-Identifier: Apache-2.0
"""A private munged for quai's tests.

Starts munged in the foreground in a directory of its own, with a new
random key (so two daemons never share one) and origin 127.0.0.1, and
makes credentials with the ``munge`` command, as another user when asked.

    from munged import Munged, available, skip_reason

    if not available():
        pytest.skip(skip_reason())
    with Munged(tmp_path) as m:          # or m = Munged(); m.start(tmp_path)
        env["QUAI_MUNGE_SOCKET"] = m.socket
        cred = m.credential(uid=65534, gid=65534, payload=b"...")

Nothing here needs pytest. The daemon gets SIGTERM if the test process
dies first.
"""

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ["Munged", "MungedError", "available", "skip_reason", "find_munged",
           "private_munged"]

_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class MungedError(RuntimeError):
    """munged would not start, or munge would not make a credential."""


def _which(name):
    path = os.environ.get("PATH", os.defpath) + os.pathsep + os.pathsep.join(_SBIN)
    return shutil.which(name, path=path)


def find_munged():
    """The munged binary, or None."""
    return _which("munged")


def skip_reason():
    """Why the MUNGE tests cannot run here, or None when they can."""
    missing = [p for p in ("munged", "munge") if not _which(p)]
    if missing:
        return ("%s not installed (Debian: apt-get install munge)" % " and ".join(missing))
    return None


def available():
    """Whether munged and the munge command are installed."""
    return skip_reason() is None


def _die_with_parent():
    # Runs in the child between fork and exec: SIGTERM when the test dies.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _accepts(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Munged:
    """One munged: start(base_dir) sets .socket; stop() ends it."""

    def __init__(self, base_dir=None):
        self.base_dir = base_dir
        self.dir = None
        self.socket = None
        self.proc = None

    def __enter__(self):
        if self.proc is None:
            self.start(self.base_dir)
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self, base_dir=None, timeout=10.0):
        """Starts munged in base_dir/munged (made mode 0755: munged refuses
        a socket directory others cannot pass through, and so must every
        parent be). Returns the socket's path, also in self.socket."""
        munged = find_munged()
        if not munged:
            raise MungedError(skip_reason())
        base_dir = os.fspath(base_dir if base_dir is not None else self.base_dir or "/tmp")
        d = os.path.join(base_dir, "munged")
        n = 0
        while os.path.exists(d):
            n += 1
            d = os.path.join(base_dir, "munged-%d" % n)
        os.makedirs(d)
        os.chmod(d, 0o755)
        key = os.path.join(d, "munge.key")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(1024))
        sock = os.path.join(d, "munge.socket")
        if len(sock.encode()) >= 108:
            raise MungedError("munged socket path too long: %s" % sock)
        self.dir, self.socket = d, sock
        self._out = open(os.path.join(d, "munged.out"), "wb")
        self.proc = subprocess.Popen(
            [munged, "-F", "-S", sock, "--key-file=" + key,
             "--log-file=" + os.path.join(d, "munged.log"),
             "--pid-file=" + os.path.join(d, "munged.pid"),
             "--seed-file=" + os.path.join(d, "munged.seed"),
             "--origin=127.0.0.1"],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent, close_fds=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.output()
                self.stop()
                raise MungedError("munged exited (%s) before it was ready:\n%s"
                                  % (self.proc.returncode, out))
            if os.path.exists(sock) and _accepts(sock):
                return sock
            time.sleep(0.01)
        out = self.output()
        self.stop()
        raise MungedError("munged did not accept on %s within %g s:\n%s"
                          % (sock, timeout, out))

    def output(self):
        """What munged wrote (its log, in the foreground)."""
        try:
            with open(os.path.join(self.dir, "munged.out"), "rb") as f:
                return f.read().decode(errors="replace")
        except (OSError, TypeError):
            return ""

    def stop(self):
        """SIGTERM, then wait (SIGKILL after 5 s). Safe to call twice."""
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        out = getattr(self, "_out", None)
        if out is not None:
            out.close()
            self._out = None

    def credential(self, uid=None, gid=None, ttl=None, payload=b""):
        """A credential (the base64 string) from this munged, made by
        `munge`, as uid/gid with no supplementary groups when given (needs
        root: setpriv). payload: bytes to wrap; ttl: seconds."""
        if self.socket is None:
            raise MungedError("munged is not started")
        munge = _which("munge")
        if not munge:
            raise MungedError(skip_reason())
        cmd = [munge, "-S", self.socket]
        if ttl is not None:
            cmd += ["-t", str(int(ttl))]
        if not payload:
            cmd.append("-n")
        if uid is not None or gid is not None:
            setpriv = _which("setpriv")
            if not setpriv:
                raise MungedError("setpriv not installed (util-linux)")
            cmd = [setpriv,
                   "--reuid=%d" % (os.getuid() if uid is None else uid),
                   "--regid=%d" % (os.getgid() if gid is None else gid),
                   "--clear-groups"] + cmd
        r = subprocess.run(cmd, input=payload or None, capture_output=True, timeout=30)
        if r.returncode != 0:
            raise MungedError("%s: exit %d: %s" % (" ".join(cmd), r.returncode,
                                                    r.stderr.decode(errors="replace").strip()))
        return r.stdout.decode().strip()


@contextlib.contextmanager
def private_munged(prefix="quai-munged-"):
    """A started Munged in a fresh directory under /tmp (made passable:
    pytest's own temporary directories are private to their owner), with
    $QUAI_MUNGE_SOCKET pointing at it, so that every quai and quaid started
    meanwhile, and the library in this process, use it. Stopped, and the
    variable and directory removed, on exit."""
    base = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(base, 0o755)
    m = Munged()
    try:
        m.start(base)
        os.environ["QUAI_MUNGE_SOCKET"] = m.socket
        yield m
    finally:
        m.stop()
        os.environ.pop("QUAI_MUNGE_SOCKET", None)
        shutil.rmtree(base, ignore_errors=True)
