# SPDX-License-Identifier: Apache-2.0
"""Sovereign data end to end (docs/SECURITY.md): a real munged with its own
key on a private socket, a real quaid on loopback with a policy and an audit
log, and the quai CLI run as several users (real uids and gids, set in the
child before exec) asking for datasets of every classification and of two
zones. Each decision is checked three ways: the command's outcome, the rule
named in its message, and exactly one audit line saying the same.

Run as root (the users are made with setuid/setgid): the tests skip
otherwise, saying so.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from test_xfer import QUAI_BIN, QUAID_BIN, free_port, read, text_lines, tree, write

RAW_CLIENT = os.path.join(os.path.dirname(os.path.dirname(QUAI_BIN)), "tests", "raw_client")
EXIT_REFUSED = 5
ZONE = "fr-1"

if os.geteuid() != 0:
    pytest.skip("these tests run the CLI as other users: they need root",
                allow_module_level=True)

# name: (uid, gid). No passwd entries: quaid knows them by number only.
USERS = {
    "trainee": (2003, 3000),   # group 3000 reads public and internal data
    "intern": (2001, 3000),    # same group, but denied by a rule before it
    "analyst": (2004, 3001),   # group 3001 reads sensitive data
    "writer": (2002, 4000),    # may push internal data
    "outsider": (2005, 5000),  # no rule names them
}

RULES = """\
rule_no_interns = deny all users=uid:2001
rule_train = allow read,list groups=gid:3000 classes=public,internal
rule_analysts = allow read,list groups=gid:3001 classes=sensitive
rule_writers = allow push,list users=uid:2002 classes=internal
"""

# dataset name: (classification, zone)
DATASETS = {
    "pub": ("public", ZONE),
    "int": ("internal", ZONE),
    "sens": ("sensitive", ZONE),
    "foreign": ("sensitive", "de-1"),
}


# ---- the site: munged, quaid, a client host --------------------------------


class Site:
    """A world-readable directory holding everything the users' processes
    touch (pytest's own temporary directories are private to root)."""

    def __init__(self, munge_socket):
        self.base = tempfile.mkdtemp(prefix="quai-sov-", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.munge_socket = munge_socket
        self.bin = self.mkdir("bin", 0o755)
        self.quai = os.path.join(self.bin, "quai")
        shutil.copy2(QUAI_BIN, self.quai)
        os.chmod(self.quai, 0o755)
        self.roots = self.mkdir("roots", 0o755)
        self.pushed = self.mkdir("pushed", 0o755)
        self.sov = self.mkdir("sov", 0o777)
        self.scratch = self.mkdir("scratch", 0o777)
        self.src = self.mkdir("src", 0o755)
        self.audit = os.path.join(self.base, "audit.log")
        self.client_conf = os.path.join(self.base, "client.conf")
        write(self.client_conf, f"zone = {ZONE}\nsovereign_paths = {self.sov}\n".encode())
        os.chmod(self.client_conf, 0o644)
        self.proc = None
        self.n = 0

    def mkdir(self, name, mode):
        path = os.path.join(self.base, name)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        return path

    def env(self, **extra):
        # The users' locked memory is bounded by RLIMIT_MEMLOCK (8 MiB
        # here, root's own limit, which the children keep): a sensitive
        # pull's ring shrinks to fit it.
        env = dict(os.environ, LC_ALL="C", QUAI_CONF=self.client_conf,
                   QUAI_MUNGE_SOCKET=self.munge_socket, QUAI_REMOTE_TIMEOUT="10")
        env.update(extra)
        return env

    def pack(self, dest, cls, zone, seed):
        """Packs on a storage host of the dataset's zone, whose sovereign
        paths hold quaid's roots."""
        src = os.path.join(self.src, f"in-{seed}.txt")
        write(src, text_lines(seed, 3000))
        conf = os.path.join(self.base, f"storage-{zone}.conf")
        write(conf, f"zone = {zone}\nsovereign_paths = {self.roots}:{self.src}\n".encode())
        subprocess.run([self.quai, "pack", "-q", "--records", "lines", "--frame-size", "16K",
                        "--class", cls, "--zone", zone, src, dest],
                       check=True, env=self.env(QUAI_CONF=conf), stdin=subprocess.DEVNULL)
        for dirpath, dirs, files in os.walk(dest):
            os.chmod(dirpath, 0o755)
            for f in files:
                os.chmod(os.path.join(dirpath, f), 0o644)
        return dest

    def start_quaid(self, extra=""):
        self.port = free_port()
        self.conf = os.path.join(self.base, "quaid.conf")
        write(self.conf, (f"listen = 127.0.0.1:{self.port}\n"
                          f"roots = {self.roots}\n"
                          f"push_root = {self.pushed}\n"
                          f"zone = {ZONE}\n"
                          "zone_hosts = 127.0.0.0/8\n"
                          f"audit_log = {self.audit}\n"
                          f"munge_socket = {self.munge_socket}\n"
                          "pinned = 256M\n"
                          "client_memory = 64M\n"
                          "idle_timeout = 10\n" + RULES + extra).encode())
        self.log_path = os.path.join(self.base, "quaid.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([QUAID_BIN, "--config", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, env=self.env())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if b"listening on" in read(self.log_path):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        pytest.fail("quaid did not start:\n" + read(self.log_path).decode(errors="replace"))

    def stop_quaid(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
            text = read(self.log_path).decode(errors="replace")
            for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                assert mark not in text, text
        self.proc = None

    def uri(self, name=""):
        return f"quai://127.0.0.1:{self.port}/{name}"

    def quaid_log(self):
        return read(self.log_path).decode(errors="replace")

    def audit_lines(self):
        try:
            data = read(self.audit)
        except FileNotFoundError:
            return []
        assert data == b"" or data.endswith(b"\n"), "a partial audit line"
        return [json.loads(line) for line in data.decode().splitlines()]

    def run(self, user, *args, env=None, timeout=60, stdout=subprocess.PIPE):
        """Runs quai as `user` (a USERS key, or "root"); returns the
        CompletedProcess with text output (standard output: `stdout`)."""
        uid, gid = USERS[user] if user != "root" else (0, 0)

        def become():
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

        return subprocess.run([self.quai, *args], env=env or self.env(), cwd=self.base,
                              stdin=subprocess.DEVNULL, stdout=stdout,
                              stderr=subprocess.PIPE, timeout=timeout, text=True,
                              preexec_fn=become if uid else None)

    def close(self):
        self.stop_quaid()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def site(munged):
    s = Site(munged.socket)
    try:
        for name, (cls, zone) in DATASETS.items():
            s.pack(os.path.join(s.roots, name), cls, zone, seed=len(name))
        s.pack(os.path.join(s.src, "foreign-push"), "sensitive", "de-1", seed=13)
        s.start_quaid()
        yield s
    finally:
        s.close()


# ---- the matrix --------------------------------------------------------------

def op_args(site, op, dataset):
    """quai's command line for one operation, the audit op it leaves and the
    dataset name that line names."""
    site.n += 1
    if op == "ls":
        return ("ls", site.uri()), "list", None
    if op == "info":
        return ("info", site.uri(dataset)), "info", dataset
    if op == "stream":
        return ("stage", "-q", "--pinned", "4M", site.uri(dataset)), "stream", dataset
    if op == "pull":
        dest = os.path.join(site.sov, f"got-{site.n}")
        return ("pull", "-q", site.uri(dataset), dest), "pull", dataset
    if op == "push":
        # A dataset keeps its name: a new one for each push.
        name = f"new-{site.n}"
        cls, zone = DATASETS[dataset]
        src = site.pack(os.path.join(site.src, name), cls, zone, seed=site.n)
        return ("push", "-q", src, site.uri(name)), "push", name
    raise AssertionError(op)


# (user, op, dataset, granted, rule)
MATRIX = [
    ("trainee", "ls", None, True, "train"),
    ("trainee", "info", "int", True, "train"),
    ("trainee", "stream", "int", True, "train"),
    ("trainee", "stream", "pub", True, "train"),
    ("trainee", "pull", "int", True, "train"),
    ("trainee", "stream", "sens", False, "default"),
    ("trainee", "pull", "sens", False, "default"),
    ("trainee", "push", "int", False, "default"),
    ("intern", "ls", None, False, "no_interns"),
    ("intern", "stream", "pub", False, "no_interns"),
    ("intern", "pull", "int", False, "no_interns"),
    ("analyst", "stream", "sens", True, "analysts"),
    ("analyst", "pull", "sens", True, "analysts"),
    ("analyst", "stream", "int", False, "default"),
    ("analyst", "stream", "foreign", False, "sovereign:zone"),
    ("analyst", "pull", "foreign", False, "sovereign:zone"),
    ("writer", "push", "int", True, "writers"),
    ("writer", "push", "sens", False, "default"),
    ("writer", "stream", "int", False, "default"),
    ("outsider", "ls", None, False, "default"),
    ("outsider", "info", "pub", False, "default"),
    ("outsider", "stream", "pub", False, "default"),
    ("outsider", "pull", "pub", False, "default"),
]


@pytest.mark.parametrize("user,op,dataset,granted,rule", MATRIX,
                         ids=[f"{u}-{o}-{d}" for u, o, d, _g, _r in MATRIX])
def test_matrix(site, user, op, dataset, granted, rule):
    before = len(site.audit_lines())
    args, audit_op, audit_name = op_args(site, op, dataset)
    p = site.run(user, *args)
    if granted:
        assert p.returncode == 0, p.stderr
    else:
        assert p.returncode == EXIT_REFUSED, (p.returncode, p.stderr)
        if rule.startswith("sovereign:"):
            assert "sensitive" in p.stderr and "de-1" in p.stderr, p.stderr
        elif rule == "default":
            assert "no rule allows" in p.stderr, p.stderr
        else:
            assert f"rule {rule}" in p.stderr or f"rule_{rule}" in p.stderr, p.stderr
    lines = [ln for ln in site.audit_lines()[before:] if ln["op"] == audit_op]
    assert len(lines) == 1, lines
    ln = lines[0]
    uid, gid = USERS[user]
    assert ln["uid"] == uid and ln["gid"] == gid, ln
    assert ln["user"] is None  # no passwd entry: the uid says who
    assert ln["host"] == "127.0.0.1", ln
    assert ln["result"] == ("granted" if granted else "refused"), ln
    assert ln["rule"] == rule, ln
    assert ln["dataset"] == audit_name, ln
    if dataset:
        cls, zone = DATASETS[dataset]
        assert ln["classification"] == cls and ln["zone"] == zone, ln
    if not granted:
        assert ln["reason"], ln
    if op == "pull" and not granted:
        assert not [n for n in os.listdir(site.sov) if n.startswith(f"got-{site.n}")]


def test_listing_shows_only_what_the_user_may_list(site):
    p = site.run("trainee", "ls", site.uri())
    assert p.returncode == 0, p.stderr
    shown = p.stdout
    assert "pub" in shown and "int" in shown
    assert "sens" not in shown and "foreign" not in shown
    p = site.run("analyst", "ls", site.uri())
    assert p.returncode == 0, p.stderr
    assert "sens" in p.stdout and "int" not in p.stdout.replace("internal", "")


def test_sensitive_pull_to_a_non_sovereign_path_writes_nothing(site):
    dest = os.path.join(site.scratch, "era")
    p = site.run("analyst", "pull", "-q", site.uri("sens"), dest)
    assert p.returncode == EXIT_REFUSED, p.stderr
    assert "not a sovereign path" in p.stderr and "sovereign_paths" in p.stderr, p.stderr
    assert os.listdir(site.scratch) == []


def test_sensitive_pull_to_a_host_of_another_zone_is_refused(site):
    conf = os.path.join(site.base, "elsewhere.conf")
    write(conf, f"zone = de-1\nsovereign_paths = {site.sov}\n".encode())
    os.chmod(conf, 0o644)
    dest = os.path.join(site.sov, "elsewhere")
    p = site.run("analyst", "pull", "-q", site.uri("sens"), dest,
                 env=site.env(QUAI_CONF=conf))
    assert p.returncode == EXIT_REFUSED, p.stderr
    assert "de-1" in p.stderr and ZONE in p.stderr, p.stderr
    assert not os.path.lexists(dest)


def test_sensitive_push_to_another_zone_is_refused_by_the_client(site):
    before = len(site.audit_lines())
    p = site.run("root", "push", "-q", os.path.join(site.src, "foreign-push"),
                 site.uri("foreign-push"))
    assert p.returncode == EXIT_REFUSED, p.stderr
    assert "de-1" in p.stderr and ZONE in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(site.pushed, "foreign-push"))
    # The client refused before asking: quaid decided nothing about it.
    assert not [ln for ln in site.audit_lines()[before:] if ln["op"] == "push"]


def raw(site, mode, *args, env=None):
    if not os.access(RAW_CLIENT, os.X_OK):
        pytest.skip(f"no {RAW_CLIENT}")
    p = subprocess.run([RAW_CLIENT, "127.0.0.1", str(site.port), mode, *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=env or site.env(), timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_sensitive_push_to_another_zone_is_refused_by_quaid(site):
    """A client that does not check (raw_client) meets quaid's own refusal."""
    out = raw(site, "push-open", "foreign-push", "sensitive", "de-1")
    assert out.startswith("error"), out
    assert "sovereign" in out or ("de-1" in out and ZONE in out), out
    ln = site.audit_lines()[-1]
    assert ln["op"] == "push" and ln["result"] == "refused" and ln["rule"] == "sovereign:zone"


# ---- authentication ----------------------------------------------------------

@pytest.mark.parametrize("mode,reason", [
    ("auth-none", "authentication required"),
    ("auth-forged", "invalid"),
    ("auth-expired", "expired"),
    ("auth-replay", "replayed"),
    ("auth-other", "another connection"),
    ("auth-kind", "unknown method"),
])
def test_bad_credentials_are_refused(site, mode, reason):
    before = len(site.audit_lines())
    out = raw(site, mode)
    assert out.startswith("error "), out
    assert reason in out, out
    # Nothing of the server is revealed: no zone, no datasets.
    assert ZONE not in out and "pub" not in out
    lines = [ln for ln in site.audit_lines()[before:] if ln["result"] == "refused"]
    assert len(lines) == 1 and lines[0]["op"] == "connect", lines
    assert lines[0]["reason"] and reason in lines[0]["reason"], lines


def as_user(user):
    uid, gid = USERS[user]

    def become():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return become


@pytest.mark.parametrize("credential", ["own", "none"])
def test_hello_never_touches_another_users_session(munged, credential):
    """A HELLO that claims another client's fabric address, with the
    sender's own credential bound to it (or none, where unauthenticated
    clients are served), neither ends that client's session nor reaches
    it: no WELCOME, no ERROR. quaid audits the refusal (issue 22, item 4;
    docs/SECURITY.md). Before, the victim's session ended ("the client
    said HELLO again") and the intruder got a session of its own."""
    if not os.access(RAW_CLIENT, os.X_OK):
        pytest.skip(f"no {RAW_CLIENT}")
    s = Site(munged.socket)
    victim = None
    try:
        s.pack(os.path.join(s.roots, "pub"), "public", ZONE, seed=1)
        s.start_quaid("unauthenticated = public\n")
        raw_client = os.path.join(s.bin, "raw_client")
        shutil.copy2(RAW_CLIENT, raw_client)
        os.chmod(raw_client, 0o755)
        victim = subprocess.Popen([raw_client, "127.0.0.1", str(s.port), "idle", "victim-host"],
                                  env=s.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  preexec_fn=as_user("trainee"))
        line = victim.stdout.readline()
        assert line.startswith("welcome "), line + victim.stderr.read()
        before = len(s.audit_lines())
        args = [raw_client, "127.0.0.1", str(s.port), "hijack", line.split()[1]]
        if credential == "none":
            args.append("none")
        p = subprocess.run(args, env=s.env(), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=30, preexec_fn=as_user("outsider"))
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == "no answer", p.stdout
        time.sleep(1.5)  # quaid reaps ended sessions every 0.5 s
        st = json.loads(s.run("trainee", "stat", "--json", s.uri()).stdout)
        assert "victim-host" in [c["host"] for c in st["clients"]], st
        assert victim.poll() is None
        refused = [ln for ln in s.audit_lines()[before:]
                   if ln["op"] == "connect" and ln["result"] == "refused"]
        assert len(refused) == 1 and refused[0]["rule"] == "auth:address", refused
        assert "never touches" in s.quaid_log(), s.quaid_log()
    finally:
        if victim:
            victim.kill()
            out, _ = victim.communicate()
            assert "heard" not in out, out  # nothing reached the victim
        s.close()


def test_cli_without_munged_is_told_why(site):
    # Without a credential the client sends nothing (issue 22 #10) and
    # says why; asked on purpose (QUAI_AUTH=none), quaid refuses it.
    before = len(site.audit_lines())
    p = site.run("trainee", "ls", site.uri(),
                 env=site.env(QUAI_MUNGE_SOCKET=os.path.join(site.base, "no-munged")))
    assert p.returncode == 3, p.stderr
    assert "nothing was sent" in p.stderr, p.stderr
    assert "no-munged" in p.stderr, p.stderr  # why this client had no credential
    assert len(site.audit_lines()) == before
    p = site.run("trainee", "ls", site.uri(), env=site.env(QUAI_AUTH="none"))
    assert p.returncode == EXIT_REFUSED, p.stderr
    assert "authentication required" in p.stderr, p.stderr


def test_unauthenticated_public_access_when_allowed(munged):
    s = Site(munged.socket)
    try:
        for name, (cls, zone) in DATASETS.items():
            s.pack(os.path.join(s.roots, name), cls, zone, seed=len(name))
        s.start_quaid("unauthenticated = public\n")
        env = s.env(QUAI_AUTH="none")
        p = s.run("outsider", "ls", s.uri(), env=env)
        assert p.returncode == 0, p.stderr
        assert "pub" in p.stdout and "int" not in p.stdout.replace("internal", "")
        p = s.run("outsider", "pull", "-q", s.uri("pub"), os.path.join(s.sov, "p"), env=env)
        assert p.returncode == 0, p.stderr
        assert tree(os.path.join(s.sov, "p")) == tree(os.path.join(s.roots, "pub"))
        p = s.run("outsider", "pull", "-q", s.uri("int"), os.path.join(s.sov, "i"), env=env)
        assert p.returncode == EXIT_REFUSED, p.stderr
        assert "public" in p.stderr, p.stderr
        p = s.run("outsider", "push", "-q", os.path.join(s.roots, "pub"), s.uri("pub"),
                  env=env)
        assert p.returncode == EXIT_REFUSED, p.stderr
        rules = [ln["rule"] for ln in s.audit_lines() if ln["op"] != "connect"]
        assert "auth:public" in rules and "auth:required" in rules, rules
    finally:
        s.close()


# ---- the audit log -----------------------------------------------------------

def test_audit_log_survives_a_crash(munged):
    s = Site(munged.socket)
    try:
        s.pack(os.path.join(s.roots, "int"), "internal", ZONE, seed=3)
        s.start_quaid()
        decided = 0
        for user in ("trainee", "outsider", "intern", "trainee"):
            s.run(user, "info", s.uri("int"))
            decided += 2  # connect, info
        s.stop_quaid(signal.SIGKILL)
        lines = s.audit_lines()
        assert len(lines) == decided, lines
        assert [ln["result"] for ln in lines if ln["op"] == "info"] == [
            "granted", "refused", "refused", "granted"]
    finally:
        s.close()


def test_audit_log_reopened_on_sighup(site):
    rotated = site.audit + ".1"
    os.rename(site.audit, rotated)
    site.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and b"audit log reopened" not in read(site.log_path):
        time.sleep(0.05)
    p = site.run("trainee", "info", site.uri("int"))
    assert p.returncode == 0, p.stderr
    assert [ln["op"] for ln in site.audit_lines()] == ["connect", "info"]
    assert read(rotated)  # the old lines stay where they were


def test_local_accesses_are_audited_on_the_host(site):
    """What the host decides without quaid goes to its own audit log."""
    log = os.path.join(site.base, "host-audit.log")
    conf = os.path.join(site.base, "audited.conf")
    write(conf, f"zone = {ZONE}\nsovereign_paths = {site.sov}\naudit_log = {log}\n".encode())
    os.chmod(conf, 0o644)
    write(log, b"")
    os.chmod(log, 0o666)  # appendable by the users who run quai
    env = site.env(QUAI_CONF=conf)
    # An embedded stream of a local dataset: granted.
    p = site.run("trainee", "stage", "-q", "--pinned", "4M", os.path.join(site.roots, "int"),
                 env=env)
    assert p.returncode == 0, p.stderr
    # A sensitive one on a host of another zone: refused, here.
    elsewhere = os.path.join(site.base, "audited-de.conf")
    write(elsewhere, f"zone = de-1\naudit_log = {log}\n".encode())
    os.chmod(elsewhere, 0o644)
    p = site.run("analyst", "stage", "-q", "--pinned", "4M", os.path.join(site.roots, "sens"),
                 env=site.env(QUAI_CONF=elsewhere))
    assert p.returncode == EXIT_REFUSED, p.stderr
    # A pull quaid grants and the client refuses: the refusal is the host's.
    p = site.run("analyst", "pull", "-q", site.uri("sens"), os.path.join(site.scratch, "s"),
                 env=env)
    assert p.returncode == EXIT_REFUSED, p.stderr
    lines = [json.loads(x) for x in read(log).decode().splitlines()]
    assert [(ln["event"], ln["op"], ln["dataset"], ln["result"], ln["rule"]) for ln in lines] == [
        ("local", "stream", "int", "granted", "local"),
        ("local", "stream", "sens", "refused", "sovereign:zone"),
        ("local", "pull", "sens", "refused", "sovereign:paths"),
    ], lines
    assert [(ln["uid"], ln["gid"]) for ln in lines] == [USERS["trainee"], USERS["analyst"],
                                                       USERS["analyst"]]
    assert all(ln["reason"] for ln in lines[1:])
    assert os.listdir(site.scratch) == []

    # A host audit log the user cannot write: nothing is read unaudited.
    os.chmod(log, 0o644)
    p = site.run("trainee", "stage", "-q", "--pinned", "4M", os.path.join(site.roots, "int"),
                 env=env)
    assert p.returncode != 0 and "audit log" in p.stderr, p.stderr


def test_client_decisions_are_audited_like_local_ones(site):
    """Remote streams, pulls and pushes go through the same host decision as
    local streams (stager/site/hostdecide.c): each one, granted or refused,
    is one line of the host's audit log - a sovereign:memory refusal of a
    remote stream included."""
    import resource
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft == resource.RLIM_INFINITY or soft >= 64 << 20:
        pytest.skip(f"RLIMIT_MEMLOCK is {soft}: a 64 MiB pool would be locked")
    log = os.path.join(site.base, "client-audit.log")
    conf = os.path.join(site.base, "client-audited.conf")
    write(conf, f"zone = {ZONE}\nsovereign_paths = {site.sov}\naudit_log = {log}\n".encode())
    os.chmod(conf, 0o644)
    write(log, b"")
    os.chmod(log, 0o666)
    env = site.env(QUAI_CONF=conf)
    # A remote stream of sensitive data into a pool larger than the user
    # may lock: refused here, by the host, and audited.
    p = site.run("analyst", "stage", "-q", "--pinned", "64M", "--unlocked-ok", site.uri("sens"),
                 env=env)
    assert p.returncode == EXIT_REFUSED, p.stderr
    assert "locked memory" in p.stderr, p.stderr
    # Granted ones are audited too: a remote stream, two pulls.
    p = site.run("trainee", "stage", "-q", "--pinned", "4M", site.uri("int"), env=env)
    assert p.returncode == 0, p.stderr
    p = site.run("trainee", "pull", "-q", site.uri("int"), os.path.join(site.scratch, "ci"),
                 env=env)
    assert p.returncode == 0, p.stderr
    p = site.run("analyst", "pull", "-q", site.uri("sens"), os.path.join(site.sov, "cs"), env=env)
    assert p.returncode == 0, p.stderr
    # A push out of the dataset's zone: refused by the client, audited.
    p = site.run("root", "push", "-q", os.path.join(site.src, "foreign-push"),
                 site.uri("foreign-push"), env=env)
    assert p.returncode == EXIT_REFUSED, p.stderr
    lines = [json.loads(x) for x in read(log).decode().splitlines()]
    assert [(ln["event"], ln["op"], ln["dataset"], ln["result"], ln["rule"]) for ln in lines] == [
        ("local", "stream", "sens", "refused", "sovereign:memory"),
        ("local", "stream", "int", "granted", "local"),
        ("local", "pull", "int", "granted", "local"),
        ("local", "pull", "sens", "granted", "local"),
        ("local", "push", "foreign-push", "refused", "sovereign:zone"),
    ], lines
    assert lines[0]["reason"] and lines[4]["reason"]
    assert lines[3]["bytes"] > 0 and lines[3]["zone"] == ZONE, lines[3]


def test_local_commands_keep_sensitive_data_in_its_zone_and_paths(site):
    """cat, unpack, verify and pack hold a sensitive dataset's bytes on
    this host: only on a host of its zone, and (unpack, pack, cat into a
    file) only under sovereign paths, each decision in the host's audit
    log; other classifications are only audited."""
    log = os.path.join(site.base, "local-audit.log")
    conf = os.path.join(site.base, "local.conf")
    write(conf, f"zone = {ZONE}\nsovereign_paths = {site.sov}\naudit_log = {log}\n".encode())
    os.chmod(conf, 0o644)
    write(log, b"")
    os.chmod(log, 0o666)
    env = site.env(QUAI_CONF=conf)
    elsewhere = os.path.join(site.base, "local-de.conf")
    write(elsewhere, f"zone = de-1\nsovereign_paths = {site.sov}\naudit_log = {log}\n".encode())
    os.chmod(elsewhere, 0o644)
    sens, intl = os.path.join(site.roots, "sens"), os.path.join(site.roots, "int")
    scratch, sov = os.path.join(site.scratch, "local"), os.path.join(site.sov, "local")
    for d in (scratch, sov):
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o777)

    def refused(p, rule_text):
        assert p.returncode == EXIT_REFUSED, p.stderr
        assert rule_text in p.stderr, p.stderr

    # unpack: to a sovereign path only; nothing at all elsewhere.
    refused(site.run("analyst", "unpack", "-q", sens, os.path.join(scratch, "u"), env=env),
            "is not a sovereign path")
    p = site.run("analyst", "unpack", "-q", sens, os.path.join(sov, "u"), env=env)
    assert p.returncode == 0, p.stderr
    p = site.run("trainee", "unpack", "-q", intl, os.path.join(scratch, "i"), env=env)
    assert p.returncode == 0, p.stderr

    # cat: into a file only under a sovereign path; a pipe is the user's.
    with open(os.path.join(scratch, "c"), "w") as out:
        refused(site.run("analyst", "cat", sens, env=env, stdout=out), "is not a sovereign path")
    assert os.path.getsize(os.path.join(scratch, "c")) == 0
    with open(os.path.join(sov, "c"), "w") as out:
        p = site.run("analyst", "cat", sens, env=env, stdout=out)
    assert p.returncode == 0, p.stderr
    assert read(os.path.join(sov, "c")) == read(os.path.join(sov, "u"))
    p = site.run("analyst", "cat", sens, env=env)
    assert p.returncode == 0 and p.stdout.encode() == read(os.path.join(sov, "u")), p.stderr
    # A file whose path cannot be told (unlinked while open) is no
    # sovereign path either.
    gone = os.path.join(sov, "gone")
    with open(gone, "w") as out:
        os.unlink(gone)
        refused(site.run("analyst", "cat", sens, env=env, stdout=out),
                "whose path cannot be told")
        assert os.fstat(out.fileno()).st_size == 0

    # verify and cat on a host of another zone: refused, even to a pipe.
    refused(site.run("analyst", "verify", "-q", sens, env=site.env(QUAI_CONF=elsewhere)),
            "this host is in zone de-1")
    refused(site.run("analyst", "cat", sens, env=site.env(QUAI_CONF=elsewhere)),
            "this host is in zone de-1")

    # pack: a sensitive dataset is made only in its zone, under a
    # sovereign path; a refused pack leaves nothing, not even its work.
    src = os.path.join(site.src, "in-4.txt")
    refused(site.run("analyst", "pack", "-q", "--class", "sensitive", "--zone", ZONE, src,
                     os.path.join(scratch, "p"), env=env), "is not a sovereign path")
    refused(site.run("analyst", "pack", "-q", "--class", "sensitive", "--zone", "de-1", src,
                     os.path.join(sov, "q"), env=env), "this host is in zone fr-1")
    p = site.run("analyst", "pack", "-q", "--class", "sensitive", "--zone", ZONE, src,
                 os.path.join(sov, "p"), env=env)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(scratch)) == ["c", "i"]
    assert sorted(os.listdir(sov)) == ["c", "p", "u"]

    lines = [json.loads(x) for x in read(log).decode().splitlines()]
    assert [(ln["op"], ln["dataset"], ln["classification"], ln["result"], ln["rule"])
            for ln in lines] == [
        ("unpack", "sens", "sensitive", "refused", "sovereign:paths"),
        ("unpack", "sens", "sensitive", "granted", "local"),
        ("unpack", "int", "internal", "granted", "local"),
        ("cat", "sens", "sensitive", "refused", "sovereign:paths"),
        ("cat", "sens", "sensitive", "granted", "local"),
        ("cat", "sens", "sensitive", "granted", "local"),
        ("cat", "sens", "sensitive", "refused", "sovereign:paths"),
        ("verify", "sens", "sensitive", "refused", "sovereign:zone"),
        ("cat", "sens", "sensitive", "refused", "sovereign:zone"),
        ("pack", "p", "sensitive", "refused", "sovereign:paths"),
        ("pack", "q", "sensitive", "refused", "sovereign:zone"),
        ("pack", "p", "sensitive", "granted", "local"),
    ], lines
    assert all(ln["event"] == "local" and ln["uid"] in (USERS["analyst"][0], USERS["trainee"][0])
               for ln in lines)


def test_policy_reloaded_on_sighup(munged):
    """SIGHUP puts the configuration file's rules in force; a file that no
    longer parses leaves the rules as they were."""
    s = Site(munged.socket)
    try:
        s.pack(os.path.join(s.roots, "int"), "internal", ZONE, seed=3)
        s.start_quaid()

        def hup_and_wait(marker):
            before = read(s.log_path).count(marker.encode())
            s.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while read(s.log_path).count(marker.encode()) == before:
                assert time.monotonic() < deadline, read(s.log_path).decode()
                time.sleep(0.05)

        p = s.run("outsider", "info", s.uri("int"))
        assert p.returncode == EXIT_REFUSED, p.stderr
        with open(s.conf, "a") as f:
            f.write("rule_outsiders = allow list users=uid:2005\n")
        hup_and_wait("policy reloaded")
        p = s.run("outsider", "info", s.uri("int"))
        assert p.returncode == 0, p.stderr
        assert s.audit_lines()[-1]["rule"] == "outsiders"

        with open(s.conf, "a") as f:
            f.write("rule_broken = allow nothing\n")
        hup_and_wait("the policy in force stays")
        p = s.run("outsider", "info", s.uri("int"))
        assert p.returncode == 0, p.stderr
    finally:
        s.close()
