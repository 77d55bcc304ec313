# SPDX-License-Identifier: Apache-2.0
"""A virtual cluster on one machine, for quai's multi-node tests.

Every node is a network namespace of its own, with its own address on a
private bridge and its own host name (a UTS namespace per daemon):

    switch namespace   Q-sw:   bridge br0 (no address, no route anywhere)
    head               Q-head: 198.18.N.1    munged, slurmctld
    compute nodes      Q-c1..: 198.18.N.11.. munged, slurmd
    IO nodes           Q-io1..: 198.18.N.101.. munged, quaid

Q is a tag unique to the run (so parallel runs never collide), N a /24
drawn at random inside 198.18.0.0/15 (the benchmarking range: nothing
here is ever routed). The host's own network namespace is not touched:
the veth pairs are created straight inside the namespaces, so there is no
interface, address or route in the host's namespace, and no traffic can
leave the bridge.

    from vcluster import Cluster, skip_reason

    why = skip_reason()
    if why: pytest.skip(why)
    with Cluster(base_dir, computes=2, ios=["io1"], quaid_conf={...}) as c:
        c.run_as(uid, gid, "head", ["sbatch", ...])

Everything made is undone on every exit (stop(), the with block, atexit,
SIGTERM): the daemons by PID, every process still in a node's namespace
(a job's slurmstepd and tasks), the namespaces (and with them the veths
and the bridge), and /run/netns's own mount when this run made it.
Nothing here needs pytest. See tests/cluster/README.md.
"""

import atexit
import ctypes
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ["Cluster", "ClusterError", "skip_reason", "slurm_skip_reason", "sweep_stale"]

_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
NETNS_DIR = "/run/netns"


class ClusterError(RuntimeError):
    """A step of bringing the cluster up failed; the message says which."""


def _which(name):
    path = os.environ.get("PATH", os.defpath) + os.pathsep + os.pathsep.join(_SBIN)
    return shutil.which(name, path=path)


def _die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def skip_reason():
    """Why namespaces cannot be made here (a sentence), or None."""
    for tool in ("ip", "nsenter", "unshare", "munged", "setpriv"):
        if not _which(tool):
            return "%s is not installed (Debian: iproute2, util-linux, munge)" % tool
    if os.geteuid() != 0:
        return "the virtual cluster needs root (network namespaces, veths)"
    name = "qprobe%d" % os.getpid()
    had_mount = _is_mountpoint(NETNS_DIR)
    r = subprocess.run([_which("ip"), "netns", "add", name], capture_output=True)
    if r.returncode != 0:
        return "cannot make a network namespace here: %s" % r.stderr.decode(errors="replace").strip()
    try:
        r = subprocess.run([_which("ip"), "-n", name, "link", "add", "v0", "type", "veth",
                            "peer", "name", "v1"], capture_output=True)
        if r.returncode != 0:
            return "cannot make a veth pair here: %s" % r.stderr.decode(errors="replace").strip()
        r = subprocess.run([_which("ip"), "-n", name, "link", "add", "b0", "type", "bridge"],
                           capture_output=True)
        if r.returncode != 0:
            return "cannot make a bridge here: %s" % r.stderr.decode(errors="replace").strip()
    finally:
        subprocess.run([_which("ip"), "netns", "del", name], capture_output=True)
        _unmount_netns_if_ours(had_mount)
    return None


def _unmount_netns_if_ours(had_mount):
    """ip netns add leaves /run/netns mounted on itself: unmount it when it
    was not mounted before and no namespace is left in it (a busy mount,
    another run's namespace, makes umount fail, harmlessly)."""
    if not had_mount and _is_mountpoint(NETNS_DIR) and not os.listdir(NETNS_DIR):
        subprocess.run(["umount", NETNS_DIR], capture_output=True)


def slurm_skip_reason():
    """Why Slurm cannot run in the cluster here, or None."""
    why = skip_reason()
    if why:
        return why
    for tool in ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol"):
        if not _which(tool):
            return ("%s is not installed (Debian: slurmctld slurmd slurm-client "
                    "slurm-wlm-basic-plugins)" % tool)
    for d in ("/usr/lib/x86_64-linux-gnu/slurm-wlm", "/usr/lib/slurm-wlm",
              "/usr/lib64/slurm", "/usr/lib/slurm"):
        if os.path.exists(os.path.join(d, "burst_buffer_lua.so")):
            return None
    return "Slurm's burst_buffer/lua plugin is missing (Debian: slurm-wlm-basic-plugins)"


_TAG = re.compile(r"^q([0-9a-f]+)r[0-9a-f]{4}-")


def sweep_stale():
    """Deletes the namespaces (and kills what runs in them) of clusters
    whose test process is gone without cleaning up (SIGKILL). Returns their
    names. Namespaces of live processes, or not named by this module, are
    left alone."""
    gone = []
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return gone
    for ns in sorted(names):
        m = _TAG.match(ns)
        if not m:
            continue
        try:
            os.kill(int(m.group(1), 16), 0)
            continue  # its process lives
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        r = subprocess.run([_which("ip"), "netns", "pids", ns], capture_output=True, text=True)
        for pid in r.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        subprocess.run([_which("ip"), "netns", "del", ns], capture_output=True)
        gone.append(ns)
    return gone


def _is_mountpoint(path):
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def _accepts_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Node:
    """One node: its name (also its host name), namespace and address."""

    def __init__(self, name, netns, addr, role):
        self.name, self.netns, self.addr, self.role = name, netns, addr, role
        self.dir = None
        self.munge_socket = None

    def __repr__(self):
        return "Node(%s %s %s)" % (self.name, self.addr, self.role)


_LIVE = set()


def _stop_all_live():
    for c in list(_LIVE):
        c.stop()


atexit.register(_stop_all_live)


class Cluster:
    """The cluster. computes: how many compute nodes (c1, c2, ...); ios: the
    IO node names; shape: {node: QDISC} puts `tc qdisc add dev eth0 root
    QDISC` on the node's link, e.g. "tbf rate 1gbit burst 256k latency 50ms"
    (bandwidth) or "netem delay 2ms" (latency, where sch_netem exists); a
    qdisc the kernel lacks leaves the link as it is, with a note in .notes.
    slurm: start slurmctld and slurmd (see start_slurm)."""

    def __init__(self, base_dir=None, computes=2, ios=("io1",), shape=None):
        # q<pid in hex>r<random>: unique, and tells sweep_stale() whose it is.
        self.tag = "q%xr%s" % (os.getpid(), secrets.token_hex(2))
        self.base_dir = base_dir
        self.ncomputes = computes
        self.io_names = list(ios)
        self.shape = dict(shape or {})
        self.nodes = {}
        self.procs = []  # (node, what, Popen)
        self.dir = None
        self.made_netns_mount = False
        self.netns_made = []
        self.notes = []
        self.net = None
        self.slurm = None
        self._stopped = False
        self._ip = _which("ip")

    # ---- context manager --------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- plumbing -----------------------------------------------------------
    def _sh(self, *argv, check=True):
        r = subprocess.run([str(a) for a in argv], capture_output=True)
        if check and r.returncode != 0:
            raise ClusterError("%s: exit %d: %s" % (" ".join(map(str, argv)), r.returncode,
                                                    r.stderr.decode(errors="replace").strip()))
        return r

    def ns_argv(self, node, argv, uid=None, gid=None):
        """argv run inside node's namespace, with the node's host name,
        as uid/gid (with that user's groups) when given."""
        n = self.nodes[node]
        pre = [_which("nsenter"), "--net=%s/%s" % (NETNS_DIR, n.netns), _which("unshare"),
               "--uts", "/bin/sh", "-c", 'hostname "$0" && exec "$@"', n.name]
        if uid is not None:
            pre += [_which("setpriv"), "--reuid=%d" % uid, "--regid=%d" % gid,
                    "--init-groups" if _has_pwent(uid) else "--clear-groups", "--reset-env"]
        return pre + [str(a) for a in argv]

    def run(self, node, argv, uid=None, gid=None, env=None, timeout=120, check=False, **kw):
        """Runs argv on node (as uid/gid) and returns the CompletedProcess
        (text). env: the whole environment (the cluster's, by default)."""
        e = self.env() if env is None else env
        if uid is not None:
            # setpriv --reset-env clears it: pass it again through env(1).
            argv = ["/usr/bin/env"] + ["%s=%s" % kv for kv in sorted(e.items())] + list(argv)
        r = subprocess.run(self.ns_argv(node, argv, uid, gid), env=e, capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
        if check and r.returncode != 0:
            raise ClusterError("on %s: %s: exit %d\nstdout: %s\nstderr: %s" % (
                node, " ".join(map(str, argv[-6:])), r.returncode, r.stdout, r.stderr))
        return r

    def spawn(self, node, what, argv, env=None, log=None):
        """Starts a daemon on node; remembered for stop()."""
        e = self.env() if env is None else env
        out = open(log or os.path.join(self.dir, "%s-%s.out" % (node, what)), "ab")
        p = subprocess.Popen(self.ns_argv(node, argv), env=e, stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                             close_fds=True)
        out.close()
        self.procs.append((node, what, p))
        return p

    def env(self):
        """The environment for commands in the cluster: Slurm's config,
        the C locale."""
        e = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
             "LC_ALL": "C", "HOME": "/tmp"}
        if self.slurm:
            e["SLURM_CONF"] = self.slurm["conf"]
        return e

    # ---- bring up -----------------------------------------------------------
    def start(self):
        had_mount = _is_mountpoint(NETNS_DIR)
        why = skip_reason()
        if why:
            raise ClusterError(why)
        swept = sweep_stale()
        self.notes += ["removed a killed run's namespace %s" % n for n in swept]
        if swept and not os.listdir(NETNS_DIR):
            had_mount = False  # the killed run's mount: ours to undo now
        base = os.fspath(self.base_dir) if self.base_dir else "/tmp"
        self.dir = tempfile.mkdtemp(prefix="vcluster-%s-" % self.tag, dir=base)
        # munged and the job's users must pass through every parent.
        os.chmod(self.dir, 0o755)
        _LIVE.add(self)
        try:
            self._make_network(had_mount)
            self._start_munge()
        except BaseException:
            self.stop()
            raise
        return self

    def _make_network(self, had_mount):
        third = random.randrange(0, 512)
        self.net = "198.%d.%d" % (18 + third // 256, third % 256)
        names = [("head", "head")]
        names += [("c%d" % (i + 1), "compute") for i in range(self.ncomputes)]
        names += [(n, "io") for n in self.io_names]
        sw = "%s-sw" % self.tag
        self.made_netns_mount = not had_mount
        self._sh(self._ip, "netns", "add", sw)
        self.netns_made.append(sw)
        self._sh(self._ip, "-n", sw, "link", "add", "br0", "type", "bridge")
        self._sh(self._ip, "-n", sw, "link", "set", "br0", "up")
        hosts = []
        for i, (name, role) in enumerate(names):
            host = {"head": 1, "compute": 10, "io": 100}[role]
            if role == "compute":
                host += int(name[1:])
            elif role == "io":
                host += self.io_names.index(name) + 1
            addr = "%s.%d" % (self.net, host)
            ns = "%s-%s" % (self.tag, name)
            self._sh(self._ip, "netns", "add", ns)
            self.netns_made.append(ns)
            self._sh(self._ip, "link", "add", "eth0", "netns", ns, "type", "veth",
                     "peer", "name", "p%d" % i, "netns", sw)
            self._sh(self._ip, "-n", sw, "link", "set", "p%d" % i, "master", "br0", "up")
            self._sh(self._ip, "-n", ns, "addr", "add", addr + "/24", "dev", "eth0")
            self._sh(self._ip, "-n", ns, "link", "set", "lo", "up")
            self._sh(self._ip, "-n", ns, "link", "set", "eth0", "up")
            node = Node(name, ns, addr, role)
            node.dir = os.path.join(self.dir, "nodes", name)
            os.makedirs(node.dir)
            os.chmod(node.dir, 0o755)
            self.nodes[name] = node
            hosts.append("%s %s" % (addr, name))
            if name in self.shape and _which("tc"):
                r = self._sh(_which("tc"), "-n", ns, "qdisc", "add", "dev", "eth0", "root",
                             *self.shape[name].split(), check=False)
                if r.returncode != 0:
                    self.notes.append("no shaping on %s: %s" % (
                        name, r.stderr.decode(errors="replace").strip()))
        with open(os.path.join(self.dir, "hosts"), "w") as f:
            f.write("\n".join(hosts) + "\n")

    def _start_munge(self):
        """One munged per node (each in the node's namespace, so that the
        origin in its credentials is the node's address), all with one key."""
        key = os.path.join(self.dir, "munge.key")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(1024))
        for n in self.nodes.values():
            d = os.path.join(n.dir, "munge")
            os.makedirs(d)
            os.chmod(d, 0o755)
            n.munge_socket = os.path.join(d, "socket")
            self.spawn(n.name, "munged", [
                _which("munged"), "-F", "-S", n.munge_socket, "--key-file=" + key,
                "--log-file=" + os.path.join(d, "log"), "--pid-file=" + os.path.join(d, "pid"),
                "--seed-file=" + os.path.join(d, "seed"), "--origin=" + n.addr])
        deadline = time.monotonic() + 15
        for n in self.nodes.values():
            while not (os.path.exists(n.munge_socket) and _accepts_unix(n.munge_socket)):
                if time.monotonic() > deadline:
                    raise ClusterError("munged on %s did not start: %s" % (
                        n.name, self._read(os.path.join(self.dir, "%s-munged.out" % n.name))))
                time.sleep(0.01)

    @staticmethod
    def _read(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    # ---- Slurm ---------------------------------------------------------------
    def start_slurm(self, bb_lua=None, bb_env=None, extra_conf="", task_prolog=None):
        """slurm.conf for the cluster, slurmctld on head, a slurmd per
        compute node; with bb_lua (a path), burst_buffer/lua runs that
        script; bb_env: variables slurmctld (and so the hooks) get."""
        etc = os.path.join(self.dir, "etc")
        state = os.path.join(self.dir, "slurm-state")
        logs = os.path.join(self.dir, "slurm-log")
        for d in (etc, state, logs):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        computes = [n for n in self.nodes.values() if n.role == "compute"]
        head = self.nodes["head"]
        conf = os.path.join(etc, "slurm.conf")
        lines = [
            "ClusterName=%s" % self.tag,
            "SlurmctldHost=head(%s)" % head.addr,
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge",
            # cred_expire: a requeued job waits this long (+1 s) to start again.
            "AuthInfo=socket=%s,cred_expire=5" % head.munge_socket,
            "StateSaveLocation=%s" % state,
            "SlurmdSpoolDir=%s/spool-%%n" % self.dir,
            "SlurmctldPidFile=%s/slurmctld.pid" % self.dir,
            "SlurmdPidFile=%s/slurmd-%%n.pid" % self.dir,
            "SlurmctldLogFile=%s/slurmctld.log" % logs,
            "SlurmdLogFile=%s/slurmd-%%n.log" % logs,
            "SlurmctldDebug=verbose", "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SchedulerType=sched/backfill", "SchedulerParameters=bf_interval=1",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            "MpiDefault=none", "SwitchType=switch/none", "ReturnToService=2",
            "SlurmctldTimeout=30", "SlurmdTimeout=30", "InactiveLimit=0",
            "MinJobAge=300", "KillWait=2", "Waittime=0",
            "PlugStackConfig=%s/plugstack.conf" % etc,
        ]
        if task_prolog:
            lines.append("TaskProlog=%s" % task_prolog)
        if bb_lua:
            lines.append("BurstBufferType=burst_buffer/lua")
            shutil.copy(bb_lua, os.path.join(etc, "burst_buffer.lua"))
            with open(os.path.join(etc, "burst_buffer.conf"), "w") as f:
                f.write("Directive=BB_LUA\nFlags=TeardownFailure\nStageInTimeout=600\n"
                        "StageOutTimeout=600\n"
                        "OtherTimeout=60\n")
        for n in computes:
            os.makedirs(os.path.join(self.dir, "spool-%s" % n.name), exist_ok=True)
            lines.append("NodeName=%s NodeAddr=%s CPUs=2 RealMemory=1000 State=UNKNOWN"
                         % (n.name, n.addr))
        lines.append("PartitionName=batch Nodes=%s Default=YES MaxTime=INFINITE State=UP"
                     % ",".join(n.name for n in computes))
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n" + extra_conf)
        open(os.path.join(etc, "plugstack.conf"), "w").close()
        self.slurm = {"conf": conf, "etc": etc, "logs": logs, "state": state}
        env = self.env()
        env.update(bb_env or {})
        self.spawn("head", "slurmctld", [_which("slurmctld"), "-D", "-i"], env=env)
        for n in computes:
            self.spawn(n.name, "slurmd", [_which("slurmd"), "-D", "-N", n.name], env=self.env())
        deadline = time.monotonic() + 30
        while True:
            r = self.run("head", ["sinfo", "-h", "-N", "-o", "%N %T"])
            states = dict(line.split() for line in r.stdout.splitlines() if line.strip())
            if r.returncode == 0 and len(states) == len(computes) and all(
                    s.rstrip("*") in ("idle", "mixed", "allocated") for s in states.values()):
                return
            for node, what, p in self.procs:
                if p.poll() is not None and what.startswith("slurm"):
                    raise ClusterError("%s on %s exited %s:\n%s" % (
                        what, node, p.returncode, self.slurm_logs()))
            if time.monotonic() > deadline:
                raise ClusterError("Slurm did not come up in 30 s (sinfo: %r %r):\n%s" % (
                    r.stdout, r.stderr, self.slurm_logs()))
            time.sleep(0.1)

    def slurm_logs(self):
        """The tail of every Slurm log, for failure messages."""
        out = []
        if not self.slurm:
            return ""
        for name in sorted(os.listdir(self.slurm["logs"])):
            out.append("== %s\n%s" % (name, self._read(os.path.join(self.slurm["logs"], name))))
        for node, what, _ in self.procs:
            if what.startswith("slurm"):
                out.append("== %s-%s.out\n%s" % (node, what, self._read(
                    os.path.join(self.dir, "%s-%s.out" % (node, what)))))
        return "\n".join(out)

    # ---- quai -----------------------------------------------------------------
    def write_quai_conf(self, node, text=""):
        """The node's host configuration (quai.conf: zone, sovereign_paths,
        ...), with munge_socket naming the node's munged; returns its path."""
        n = self.nodes[node]
        path = os.path.join(n.dir, "quai.conf")
        with open(path, "w") as f:
            f.write("munge_socket = %s\n%s" % (n.munge_socket, text))
        os.chmod(path, 0o644)
        return path

    def start_quaid(self, node, quaid_bin, conf_text, timeout=30):
        """quaid on node, listening on the node's address, port 7470 (the
        namespace is the node's own: no other run shares it), with conf_text
        (roots, push_root, zone, policy) after the cluster's lines.
        Returns the log's path."""
        n = self.nodes[node]
        conf = os.path.join(n.dir, "quaid.conf")
        log = os.path.join(n.dir, "quaid.log")
        with open(conf, "w") as f:
            f.write("listen = %s:7470\nmunge_socket = %s\nlog_file = %s\n%s"
                    % (n.addr, n.munge_socket, log, conf_text))
        env = self.env()
        env["QUAI_CONF"] = self.write_quai_conf(node, "")
        p = self.spawn(node, "quaid", [quaid_bin, "--config", conf], env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "listening on" in self._read(log):
                return log
            if p.poll() is not None:
                break
            time.sleep(0.02)
        raise ClusterError("quaid on %s did not start:\n%s\n%s" % (
            node, self._read(log), self._read(os.path.join(self.dir, "%s-quaid.out" % node))))

    # ---- tear down ------------------------------------------------------------
    def stop(self):
        """Undoes everything start() and start_slurm() made. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        _LIVE.discard(self)
        for node, what, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for node, what, p in reversed(self.procs):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        # What the daemons left behind in the namespaces (a job's slurmstepd
        # and tasks, a hook's quai): every process still in one of ours.
        for ns in self.netns_made:
            r = subprocess.run([self._ip, "netns", "pids", ns], capture_output=True, text=True)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        for ns in reversed(self.netns_made):
            subprocess.run([self._ip, "netns", "del", ns], capture_output=True)
        self.netns_made = []
        if self.made_netns_mount:
            _unmount_netns_if_ours(False)
        if self.dir and not os.environ.get("VCLUSTER_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def _has_pwent(uid):
    import pwd
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False
