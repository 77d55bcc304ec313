# SPDX-License-Identifier: Apache-2.0
"""Memory defaults and error messages (issue 19, findings 5 and 8).

The default context reserves its pool but locks and touches only what the
streams use; the memlock error names every way out, Python's included;
errors name the path and the Python keywords."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import quai
from quai import _lib
from conftest import REPO


def child(code, *args, env=None, preexec_fn=None):
    e = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(REPO, "python"), os.environ.get("PYTHONPATH", "")]))
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)] + list(args), env=e,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
                          preexec_fn=preexec_fn)


RSS = """
    import json, sys, time
    t0 = time.monotonic()
    import quai
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) << 10
    before = status("VmRSS:")
    s = quai.Stream(sys.argv[1], batch=256)
    first = next(s)
    t_first = time.monotonic() - t0
    del first
    n = sum(b.count for b in s)
    st = s.stats()
    info = quai.default_context().info()
    print(json.dumps({"grew": status("VmHWM:") - before, "pool": info["pinned_bytes"],
                      "locked": info["locked"], "budget": st["budget_bytes"],
                      "working_set": st["working_set_bytes"], "records": n + 256,
                      "flags": quai.default_context().flags, "first": t_first}))
"""


def test_default_context_touches_what_the_stream_needs(fixed_ds):
    p = child(RSS, fixed_ds)
    assert p.returncode == 0, p.stderr.decode()
    r = json.loads(p.stdout)
    assert r["flags"] & _lib.QUAI_CTX_LAZY_POOL
    assert r["budget"] == min(r["pool"], max(r["working_set"] * 3 // 2, 32 << 20))
    # the whole epoch streamed; the process grew by what the stream used,
    # a fraction of the reserved pool
    assert r["records"] > 20000
    assert r["grew"] < r["budget"] + (48 << 20) < r["pool"], r


def test_default_context_size_from_the_environment(fixed_ds):
    p = child(RSS, fixed_ds, env={"QUAI_PINNED_BYTES": "96M"})
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout)["pool"] == 96 << 20
    p = child(RSS, fixed_ds, env={"QUAI_PINNED_BYTES": "lots"})
    assert p.returncode != 0 and b"QUAI_PINNED_BYTES" in p.stderr


MEMLOCK = """
    import os, resource, sys
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 << 10, 64 << 10))
    if os.getuid() == 0:  # root may lock anything: be nobody
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
    import quai
    try:
        c = quai.default_context()
    except quai.Error as e:
        print("ERROR", e)
        sys.exit(0)
    print("MADE", c.info()["locked"])
"""


def _nobody_can_read(path):
    while path != "/":
        if not os.stat(path).st_mode & 0o005:
            return False
        path = os.path.dirname(path)
    return True


def test_memlock_error_names_every_way_out():
    if not all(_nobody_can_read(p) for p in (os.path.realpath(_lib.LIB_PATH),
                                             os.path.join(REPO, "python", "quai"))):
        pytest.skip("the library or the package is not readable by nobody here")
    p = child(MEMLOCK)
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout.decode()
    assert out.startswith("ERROR"), out
    for way in ("ulimit -l", "limits.conf", "LimitMEMLOCK=", "pool smaller",
                "pinned_bytes=", "unlocked_ok=True", "$QUAI_UNLOCKED_OK=1",
                "$QUAI_PINNED_BYTES"):
        assert way in out, (way, out)
    p = child(MEMLOCK, env={"QUAI_UNLOCKED_OK": "1"})
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.split() == [b"MADE", b"False"]


def test_missing_path_is_named(ctx, tmp_path):
    missing = str(tmp_path / "no-such-dataset")
    for make in (lambda: quai.Dataset(missing), lambda: quai.Stream(missing, context=ctx)):
        with pytest.raises(quai.NotFoundError) as e:
            make()
        assert missing in str(e.value)


def test_budget_error_names_the_python_keywords(ctx, fixed_ds):
    with pytest.raises(quai.Error) as e:
        quai.Stream(fixed_ds, context=ctx, batch=256, budget=1 << 20)
    msg = str(e.value)
    assert "budget=" in msg and "prefetch=" in msg and "batch=" in msg
    assert "pinned_bytes=" in msg and "window=" in msg
    assert "prefetch_batches" not in msg and "memory_budget" not in msg
