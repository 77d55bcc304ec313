# SPDX-License-Identifier: Apache-2.0
"""Fixtures for tests on the virtual cluster (vcluster.py, README.md).

`cluster` is a bare cluster (network and munged); `site` is the Slurm site
of test_slurm.py: a head node with slurmctld and quai's burst_buffer.lua,
two compute nodes with slurmd, two IO nodes with quaid, datasets, and two
unprivileged users (created once, idempotently: uid 0 cannot have a burst
buffer in Slurm). The binaries under test come from $QUAI_BIN (quaid and the
library beside it, in the build tree).
"""
import json
import os
import pwd
import re
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from vcluster import Cluster, ClusterError, skip_reason, slurm_skip_reason  # noqa: E402

# The job's users. Created with useradd when missing (system accounts, no
# home, no login shell); left in place afterwards, so reruns find them.
USERS = ("quaibb-alice", "quaibb-eve")
ZONE = "z1"


def ensure_user(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    r = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "--user-group", name],
                       capture_output=True, text=True)
    try:
        return pwd.getpwnam(name)  # made now, or by a run beside ours
    except KeyError:
        pytest.skip("cannot create the test user %s: %s" % (name, r.stderr.strip()))


def quai_bin():
    b = os.environ.get("QUAI_BIN")
    if not b:
        pytest.skip("QUAI_BIN is not set (test.sh sets it to the build's tools/quai)")
    return os.path.abspath(b)


@pytest.fixture
def cluster(tmp_path):
    """A bare cluster: head, c1, c2, io1; network and munged only."""
    why = skip_reason()
    if why:
        pytest.skip(why)
    with Cluster() as c:
        yield c


class Site:
    """The Slurm site the tests submit to. All paths are under cluster.dir."""

    def __init__(self, c, quai):
        self.c, self.quai = c, quai
        self.quaid = os.path.join(os.path.dirname(quai), "quaid")
        self.lib = os.path.join(os.path.dirname(os.path.dirname(quai)), "libquai.so")
        self.users = {n: ensure_user(n) for n in USERS}
        self.alice, self.eve = (self.users[n] for n in USERS)
        self.stage_root = os.path.join(c.dir, "bb")
        self.state_dir = os.path.join(c.dir, "bb-state")
        self.jobs = os.path.join(c.dir, "jobs")
        self.roots = os.path.join(c.dir, "datasets")
        os.makedirs(self.jobs)
        os.chmod(self.jobs, 0o1777)
        os.makedirs(self.roots)
        os.chmod(self.roots, 0o755)
        self.io1 = c.nodes["io1"].addr
        self.io2 = c.nodes["io2"].addr

    def host_conf(self, node):
        return self.c.write_quai_conf(node, "zone = %s\nsovereign_paths = %s\n"
                                      % (ZONE, self.stage_root))

    def pack(self, name, cls, records, extra=()):
        src = os.path.join(self.c.dir, "src-" + name)
        with open(src, "wb") as f:
            for i in range(records):
                f.write(b"record %06d of %s %s\n" % (i, name.encode(), b"x" * (i % 50)))
        conf = os.path.join(self.c.dir, "pack.conf")
        with open(conf, "w") as f:
            f.write("zone = %s\nsovereign_paths = %s\n" % (ZONE, self.roots))
        dest = os.path.join(self.roots, name)
        subprocess.run([self.quai, "pack", "-q", "--records", "lines", "--frame-size", "16K",
                        "--class", cls, "--zone", ZONE, *extra, src, dest], check=True,
                       env=dict(os.environ, QUAI_CONF=conf, LC_ALL="C"),
                       stdin=subprocess.DEVNULL)
        for dirpath, dirs, files in os.walk(dest):
            os.chmod(dirpath, 0o755)
            for f in files:
                os.chmod(os.path.join(dirpath, f), 0o644)
        return records

    def start(self):
        c = self.c
        self.records = {"tokens": self.pack("tokens", "internal", 20000),
                        "patients": self.pack("patients", "sensitive", 3000)}
        head, c1, c2 = (c.nodes[n].addr for n in ("head", "c1", "c2"))
        for n in ("head", "c1", "c2"):
            self.host_conf(n)
        policy = ("zone = %s\naudit_log = %%s\npinned = 256M\nclient_memory = 64M\n"
                  "rule_alice = allow all users=uid:%d\nrule_list = allow list\n"
                  % (ZONE, self.alice.pw_uid))
        self.audit = {}
        for io, hosts in (("io1", [head, c1, c2]), ("io2", [c1, c2])):
            d = os.path.join(c.nodes[io].dir, "pushed")
            os.makedirs(d)
            self.audit[io] = os.path.join(c.nodes[io].dir, "audit.log")
            c.start_quaid(io, self.quaid, "roots = %s\npush_root = %s\nzone_hosts = %s\n"
                          % (self.roots, d, ",".join(hosts)) + policy % self.audit[io])
        self.pushed = os.path.join(c.nodes["io1"].dir, "pushed")
        self.bb_conf = os.path.join(c.dir, "quai-bb.conf")
        with open(self.bb_conf, "w") as f:
            f.write("quai = %s\nstage_root = %s\nstate_dir = %s\nquai_conf = %s\nhosts = %s,%s\n"
                    % (self.quai, self.stage_root, self.state_dir,
                       os.path.join(c.nodes["head"].dir, "quai.conf"), self.io1, self.io2))
        prolog = os.path.join(c.dir, "task-prolog.sh")
        with open(prolog, "w") as f:
            # Each node's own host configuration (zone, munged), as a site's
            # /etc/quai/quai.conf would be.
            f.write('#!/bin/sh\necho "export QUAI_CONF=%s/nodes/$(hostname)/quai.conf"\n' % c.dir)
        os.chmod(prolog, 0o755)
        c.start_slurm(bb_lua=os.path.join(REPO, "contrib", "slurm", "burst_buffer.lua"),
                      bb_env={"QUAI_BB_CONF": self.bb_conf}, task_prolog=prolog,
                      extra_conf="DebugFlags=BurstBuffer\n")
        return self

    # ---- submitting and watching ----------------------------------------------
    def job_env(self):
        e = self.c.env()
        e.update(PYTHONPATH=os.path.join(REPO, "python"), QUAI_LIB=self.lib, QUAI_BIN=self.quai,
                 HOME="/tmp")
        return e

    def sbatch(self, user, body, directives=(), args=(), name="job"):
        """Submits a job as user (a pwd entry): (returncode, job id or None,
        stderr)."""
        script = os.path.join(self.jobs, "%s-%d.sh" % (name, time.monotonic_ns()))
        with open(script, "w") as f:
            f.write("#!/bin/sh\n")
            for d in directives:
                f.write("#BB_LUA %s\n" % d)
            f.write(body)
        os.chmod(script, 0o644)
        r = self.c.run("head", ["sbatch", "--parsable", "-o", os.path.join(self.jobs, "%j.out"),
                                "-D", self.jobs, *args, script],
                       uid=user.pw_uid, gid=user.pw_gid, env=self.job_env())
        jid = r.stdout.strip().split(";")[0] if r.returncode == 0 else None
        return r.returncode, jid, r.stderr.strip()

    def job(self, jid):
        """scontrol's view of the job, as a dict ({} once it is gone)."""
        r = self.c.run("head", ["scontrol", "-o", "show", "job", jid])
        if r.returncode != 0:
            return {}
        out = {}
        for m in re.finditer(r"(\S+?)=(.*?)(?=\s\S+?=|$)", r.stdout.strip()):
            out[m.group(1)] = m.group(2)
        return out

    def wait_job(self, jid, pred, timeout=90, what="the job"):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            j = self.job(jid)
            key = (j.get("JobState"), j.get("Reason"), j.get("BurstBufferState"))
            if not seen or seen[-1] != key:
                seen.append(key)
            if pred(j):
                return j, seen
            time.sleep(0.05)
        pytest.fail("job %s: timed out waiting for %s; states seen: %s\n%s" % (
            jid, what, seen, self.c.slurm_logs()[-6000:]))

    def output(self, jid):
        try:
            with open(os.path.join(self.jobs, "%s.out" % jid), errors="replace") as f:
                return f.read()
        except OSError:
            return None

    def audit_lines(self, io):
        try:
            with open(self.audit[io]) as f:
                return [json.loads(line) for line in f if line.strip()]
        except OSError:
            return []

    def ctld_log(self):
        with open(os.path.join(self.c.slurm["logs"], "slurmctld.log"), errors="replace") as f:
            return f.read()


@pytest.fixture(scope="module")
def site():
    why = slurm_skip_reason()
    if why:
        pytest.skip(why)
    quai = quai_bin()
    c = Cluster(computes=2, ios=("io1", "io2"))
    try:
        c.start()
        s = Site(c, quai).start()
    except ClusterError as e:
        c.stop()
        pytest.fail(str(e))
    try:
        yield s
    finally:
        c.stop()
