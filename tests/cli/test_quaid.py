# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of the `quaid` program's command line and configuration
(docs/quaid.md). Serving is tested elsewhere: every run here either only
checks its configuration or stops on a configuration problem before it
serves.

Run:  QUAI_BIN=build/tools/quai /usr/bin/python3 -m pytest tests/cli/test_quaid.py

The binary is $QUAID_BIN, else `quaid` next to $QUAI_BIN (build/tools/).
"""
import os
import re
import resource
import subprocess

import pytest


def _binary():
    if os.environ.get("QUAID_BIN"):
        return os.environ["QUAID_BIN"]
    if os.environ.get("QUAI_BIN"):
        return os.path.join(os.path.dirname(os.path.abspath(os.environ["QUAI_BIN"])), "quaid")
    return None


QUAID = _binary()
if not QUAID:
    pytest.skip("neither QUAID_BIN nor QUAI_BIN is set: point one at the build "
                "(e.g. QUAI_BIN=build/tools/quai)", allow_module_level=True)
if not os.access(QUAID, os.X_OK):
    pytest.skip(f"{QUAID!r} is not an executable file", allow_module_level=True)
QUAID = os.path.abspath(QUAID)

EXIT_OK, EXIT_CONFIG, EXIT_USAGE, EXIT_NO_START = 0, 1, 2, 3
DEFAULT_CONF = "/etc/quai/quaid.conf"


class Quaid:
    """Runs quaid in a controlled environment: the C locale, no systemd
    variables, no $FI_PROVIDER, no $QUAID_CONF, and a host configuration
    that does not exist (so the default zone is "none")."""

    def __init__(self, workdir):
        self.dir = workdir
        self.env = dict(os.environ)
        for var in ("QUAID_CONF", "FI_PROVIDER", "NOTIFY_SOCKET", "JOURNAL_STREAM"):
            self.env.pop(var, None)
        self.env["LC_ALL"] = "C"
        self.env["QUAI_CONF"] = os.path.join(workdir, "no-such-quai.conf")

    def run(self, *args, env=None, timeout=60, **kw):
        full_env = dict(self.env)
        full_env.update(env or {})
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.run([QUAID, *args], env=full_env, stdin=subprocess.DEVNULL,
                              timeout=timeout, text=True, **kw)

    def conf(self, text, name="quaid.conf"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def mkdir(self, name):
        path = os.path.join(self.dir, name)
        os.makedirs(path, exist_ok=True)
        return path


@pytest.fixture
def quaid(tmp_path):
    return Quaid(str(tmp_path))


def can_lock(nbytes):
    """Whether quaid, started from here, may lock nbytes (its check says
    so otherwise): an unlimited or large enough RLIMIT_MEMLOCK, or
    CAP_IPC_LOCK (bit 14) in the effective set."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft == resource.RLIM_INFINITY or soft >= nbytes:
        return True
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 14))
    return False


def problems(stderr):
    """stderr without the locked-memory complaint an unprivileged run adds
    to configurations with a default pinned pool."""
    return "".join(line for line in stderr.splitlines(keepends=True)
                   if "RLIMIT_MEMLOCK" not in line and not line.startswith("warning: "))


def good_conf(q, extra=""):
    """A configuration that passes every check on this host (the smallest
    pool: 16 MiB still needs CAP_IPC_LOCK or a raised RLIMIT_MEMLOCK)."""
    if not can_lock(16 << 20):
        pytest.skip("RLIMIT_MEMLOCK is below 16 MiB and CAP_IPC_LOCK is missing")
    r1, r2, inbox = q.mkdir("r1"), q.mkdir("r2"), q.mkdir("in")
    return q.conf(f"listen = 127.0.0.1:0\nroots = {r1}:{r2}\npush_root = {inbox}\n"
                  f"client_memory = 16M\npinned = 16M\nrule_all = allow all\n{extra}")


def settings(stdout):
    """The settings printed, commented-out defaults included, as a dict."""
    out = {}
    for line in stdout.splitlines():
        m = re.fullmatch(r"(?:# )?([a-z_]+) =(?: (.*?))?(?: \(default(?:: .*)?\))?", line)
        if m:
            out[m.group(1)] = m.group(2) or ""
    return out


# ---- help, version, usage ---------------------------------------------------

def test_help(quaid):
    p = quaid.run("--help")
    assert p.returncode == EXIT_OK
    assert p.stdout.startswith("Usage: quaid [OPTION]...\n")
    for opt in ("--config FILE", "--check-config", "--listen NODE[:PORT]", "--provider NAME",
                "--log-level LEVEL", "--help", "--version", "QUAID_CONF", "NOTIFY_SOCKET",
                "JOURNAL_STREAM", "Exit status", DEFAULT_CONF):
        assert opt in p.stdout, opt
    assert "trusted network" in p.stdout
    assert p.stderr == ""
    assert quaid.run("-h").stdout == p.stdout


def test_version(quaid):
    p = quaid.run("--version")
    assert p.returncode == EXIT_OK
    assert re.fullmatch(r"quaid \d+\.\d+\.\d+\n", p.stdout)
    assert quaid.run("-V").stdout == p.stdout


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "quaid: unrecognized option '--bogus'"),
    (["-x"], "quaid: invalid option -- 'x'"),
    (["serve"], "quaid: unexpected argument 'serve'"),
    (["--config"], "quaid: option '--config' requires an argument"),
    (["--listen", "::1"], "quaid: --listen: '::1': an IPv6 address goes in brackets"),
    (["--listen", "127.0.0.1:70000"],
     "quaid: --listen: '127.0.0.1:70000': the port must be a number from 0 to 65535"),
    (["--listen", ""], "quaid: --listen: no value"),
    (["--provider", "tcp ofi_rxm"], "quaid: --provider: 'tcp ofi_rxm' is not a libfabric"),
    (["--log-level", "loud"],
     "quaid: --log-level: 'loud': expected error, warning, notice, info or debug"),
])
def test_usage_errors(quaid, args, message):
    conf = quaid.conf(f"roots = {quaid.mkdir('r')}\n")
    p = quaid.run("--config", conf, "--check-config", *args)
    assert p.returncode == EXIT_USAGE, p.stderr
    assert p.stderr.startswith(message), p.stderr
    assert p.stderr.endswith("Try 'quaid --help'.\n")
    assert p.stdout == ""


# ---- --check-config ---------------------------------------------------------

def test_check_config_good(quaid):
    conf = good_conf(quaid)
    p = quaid.run("--config", conf, "--check-config")
    assert p.returncode == EXIT_OK, p.stderr
    assert p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[0] == f"# {conf}"
    s = settings(p.stdout)
    assert s["listen"] == "127.0.0.1:0"
    assert s["roots"] == f"{quaid.dir}/r1:{quaid.dir}/r2"
    assert s["push_root"] == f"{quaid.dir}/in"
    assert "listen = 127.0.0.1:0" in lines
    assert "client_memory = 16MiB" in lines
    assert "rule_all = allow all" in lines


def test_check_config_prints_the_defaults(quaid):
    if not can_lock(1 << 30):
        pytest.skip("the default pool, 1 GiB, cannot be locked here")
    p = quaid.run("--config", quaid.conf(f"roots = {quaid.mkdir('r')}\n"), "--check-config")
    assert p.returncode == EXIT_OK, p.stderr
    lines = p.stdout.splitlines()
    for line in ("# listen = 0.0.0.0:7470 (default)",
                 "# provider = tcp;ofi_rxm (default)",
                 f"# zone = none (default: the host's, from {quaid.env['QUAI_CONF']})",
                 "# push_root = (default: none: pushes are refused)",
                 "# max_clients = 64 (default)",
                 "# max_streams = 8 (default: per client)",
                 "# client_memory = 256MiB (default)",
                 "# pinned = 1GiB (default)",
                 "# workers = 0 (default: one per online core)",
                 "# idle_timeout = 60 (default: seconds)",
                 "# handshake_timeout = 10 (default: seconds)",
                 "# max_host_connections = 256 (default: per client address)",
                 "# log_level = info (default)",
                 "# log_file = (default: standard error)"):
        assert line in lines, (line, p.stdout)
    assert f"roots = {quaid.dir}/r" in lines
    assert len(settings(p.stdout)) == 19
    for key in ("zone_hosts", "unauthenticated", "audit_log", "munge_socket"):
        assert any(line.startswith(f"# {key} = ") for line in lines), (key, p.stdout)
    # Valid, but surely not meant: said, without refusing to start.
    assert "warning: no rule_ lines: every authenticated request will be refused" in p.stderr


def test_check_config_defaults_follow_the_environment(quaid):
    host = quaid.conf("zone = eu-hpc-1\n", name="quai.conf")
    conf = good_conf(quaid)
    p = quaid.run("--config", conf, "--check-config",
                  env={"QUAI_CONF": host, "FI_PROVIDER": "shm"})
    assert p.returncode == EXIT_OK, p.stderr
    assert f"# zone = eu-hpc-1 (default: the host's, from {host})" in p.stdout.splitlines()
    assert "# provider = shm (default: from $FI_PROVIDER)" in p.stdout.splitlines()


def test_printed_configuration_reads_back_the_same(quaid):
    conf = good_conf(quaid, "zone = eu-west\nworkers = 3\nlog_level = debug\n"
                            "max_streams = 1024\nidle_timeout = 86400\n")
    first = quaid.run("--config", conf, "--check-config", "--listen", "[::1]:7471")
    assert first.returncode == EXIT_OK, first.stderr
    again = quaid.run("--config", quaid.conf(first.stdout, name="printed.conf"),
                      "--check-config")
    assert again.returncode == EXIT_OK, again.stderr
    assert again.stdout.splitlines()[1:] == first.stdout.splitlines()[1:]
    assert "listen = [::1]:7471" in again.stdout.splitlines()


def test_overrides_replace_the_files_values(quaid):
    conf = good_conf(quaid, "provider = verbs;ofi_rxm\nlog_level = error\n")
    p = quaid.run("--config", conf, "--check-config", "--listen", "[::1]:9000",
                  "--provider", "tcp;ofi_rxm", "--log-level", "debug")
    assert p.returncode == EXIT_OK, p.stderr
    s = settings(p.stdout)
    assert (s["listen"], s["provider"], s["log_level"]) == ("[::1]:9000", "tcp;ofi_rxm", "debug")
    p = quaid.run("--config", conf, "--check-config", "--listen", "node-7")
    assert settings(p.stdout)["listen"] == "node-7:7470"


@pytest.mark.parametrize("text, line, message", [
    ("listen = 127.0.0.1\n\nclient_memory = 12Q\n", 3,
     "client_memory: '12Q' is not a size (e.g. 256M, 1GiB)"),
    ("# site\nfrobnicate = yes\n", 2,
     "frobnicate: unknown key (the keys are listed in quaid(8), docs/quaid.md)"),
    ("listen = 127.0.0.1\nzone = a\nlisten = 127.0.0.2\n", 3,
     "duplicate key 'listen' (first set on line 1)"),
    ("max_clients = 0\n", 1, "max_clients: '0': expected a whole number from 1 to 4096"),
    ("pinned = 99999999999T\n", 1, "pinned: '99999999999T' is too large"),
    ("client_memory = 2G\n", 1,
     "client_memory: 2GiB is more than pinned, the whole pool (1GiB, the default)"),
    ("roots = /a::/b\n", 1,
     "roots: '/a::/b': an empty directory in the list (':' at an end, or '::')"),
    ("roots = data\n", 1, "roots: 'data' is not an absolute path"),
    ("roots = /a:/a/\n", 1, "roots: '/a' is listed twice"),
    ("listen = ::1:7470\n", 1,
     "listen: '::1:7470': an IPv6 address goes in brackets, as in [::1]:7470"),
    ("log_level = warn\n", 1, "log_level: 'warn': expected error, warning, notice, info or debug"),
    ("log_file =\n", 1, "log_file: no value (leave the key out for its default)"),
    ("zone\n", 1, "expected 'key = value'"),
])
def test_check_config_bad_file(quaid, text, line, message):
    conf = quaid.conf(text)
    p = quaid.run("--config", conf, "--check-config")
    assert p.returncode == EXIT_CONFIG
    assert p.stderr == f"quaid: {conf}:{line}: {message}\n"
    assert p.stdout == ""


def test_a_bad_file_stops_the_start_too(quaid):
    conf = quaid.conf("listen = 127.0.0.1:0\nmax_streams = lots\n")
    p = quaid.run("--config", conf)
    assert p.returncode == EXIT_CONFIG
    assert p.stderr.startswith(f"quaid: {conf}:2: max_streams: 'lots'")


def test_check_config_host_problems(quaid):
    quaid.mkdir("r1")
    regular = quaid.conf("not a directory\n", name="regular")
    conf = quaid.conf(f"roots = {quaid.dir}/r1:{quaid.dir}/gone\npush_root = {regular}\n"
                      f"log_file = {quaid.dir}/no-dir/quaid.log\n"
                      "client_memory = 16M\npinned = 16M\n")
    p = quaid.run("--config", conf, "--check-config")
    assert p.returncode == EXIT_CONFIG
    assert problems(p.stderr).splitlines() == [
        f"quaid: roots: {quaid.dir}/gone: No such file or directory",
        f"quaid: push_root: {regular}: not a directory",
        f"quaid: log_file: {quaid.dir}/no-dir/quaid.log: its directory {quaid.dir}/no-dir "
        "does not exist",
    ]
    # The configuration is still printed: it is what was checked.
    assert settings(p.stdout)["push_root"] == regular


def test_check_config_needs_something_to_serve(quaid):
    p = quaid.run("--config", quaid.conf("client_memory = 16M\npinned = 16M\n"),
                  "--check-config")
    assert p.returncode == EXIT_CONFIG
    assert problems(p.stderr) == "quaid: roots: none, and no push_root: nothing to serve\n"


def test_check_config_push_root_alone_is_enough(quaid):
    if not can_lock(16 << 20):
        pytest.skip("RLIMIT_MEMLOCK is below 16 MiB and CAP_IPC_LOCK is missing")
    conf = quaid.conf(f"push_root = {quaid.mkdir('in')}\nclient_memory = 16M\npinned = 16M\n")
    p = quaid.run("--config", conf, "--check-config")
    assert p.returncode == EXIT_OK, p.stderr


# ---- which file ---------------------------------------------------------------

def test_a_missing_named_file_is_an_error(quaid):
    missing = os.path.join(quaid.dir, "missing.conf")
    p = quaid.run("--config", missing, "--check-config")
    assert p.returncode == EXIT_CONFIG
    assert p.stderr == f"quaid: {missing}: No such file or directory\n"
    p = quaid.run("--check-config", env={"QUAID_CONF": missing})
    assert p.returncode == EXIT_CONFIG
    assert p.stderr == f"quaid: {missing}: No such file or directory\n"
    # Serving is refused the same way.
    assert quaid.run("--config", missing).returncode == EXIT_CONFIG


def test_QUAID_CONF_names_the_file(quaid):
    conf = good_conf(quaid)
    p = quaid.run("--check-config", env={"QUAID_CONF": conf})
    assert p.returncode == EXIT_OK, p.stderr
    assert p.stdout.splitlines()[0] == f"# {conf}"
    # --config wins over the environment.
    other = quaid.conf(f"roots = {quaid.dir}/r1\n", name="other.conf")
    p = quaid.run("--check-config", "--config", other, env={"QUAID_CONF": conf})
    assert p.stdout.splitlines()[0] == f"# {other}"
    # An empty $QUAID_CONF is as unset.
    if not os.path.exists(DEFAULT_CONF):
        p = quaid.run("--check-config", env={"QUAID_CONF": ""})
        assert p.stdout.startswith(f"# {DEFAULT_CONF} does not exist")


@pytest.mark.skipif(os.path.exists(DEFAULT_CONF), reason=f"{DEFAULT_CONF} exists on this host")
def test_a_missing_default_file_means_the_defaults(quaid):
    p = quaid.run("--check-config")
    assert p.stdout.startswith(f"# {DEFAULT_CONF} does not exist: every key has its default\n")
    assert "# listen = 0.0.0.0:7470 (default)" in p.stdout.splitlines()
    # The defaults serve nothing: the check says so.
    assert p.returncode == EXIT_CONFIG
    assert "quaid: roots: none, and no push_root: nothing to serve\n" in p.stderr


def test_a_directory_is_not_a_file(quaid):
    p = quaid.run("--config", quaid.dir, "--check-config")
    assert p.returncode == EXIT_CONFIG
    assert p.stderr == f"quaid: {quaid.dir}: Is a directory\n"


# ---- the log, before serving ----------------------------------------------------

def test_problems_at_start_are_logged_as_errors(quaid):
    conf = quaid.conf(f"listen = 127.0.0.1:0\nroots = {quaid.dir}/gone\n")
    p = quaid.run("--config", conf)
    assert p.returncode == EXIT_CONFIG
    assert problems(p.stderr) == f"quaid: error: roots: {quaid.dir}/gone: No such file or directory\n"
    # Dropping errors is not possible: they are the most severe level.
    p = quaid.run("--config", conf, "--log-level", "error")
    assert p.stderr.startswith("quaid: error: roots:")


def test_journal_lines_carry_priorities(quaid):
    """When stderr is the stream $JOURNAL_STREAM names, lines start "<N>"."""
    conf = quaid.conf(f"listen = 127.0.0.1:0\nroots = {quaid.dir}/gone\n")
    r, w = os.pipe()
    st = os.fstat(w)
    try:
        p = quaid.run("--config", conf, stderr=w,
                      env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    finally:
        os.close(w)
    with os.fdopen(r, "rb") as f:
        err = f.read().decode()
    assert p.returncode == EXIT_CONFIG
    assert problems(err) == f"<3>roots: {quaid.dir}/gone: No such file or directory\n"
    # Another stream (stderr redirected by hand): plain lines.
    p = quaid.run("--config", conf, env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
    assert p.stderr.startswith("quaid: error: roots:")


def test_problems_at_start_go_to_the_log_file_and_stderr(quaid):
    log = os.path.join(quaid.dir, "quaid.log")
    conf = quaid.conf(f"listen = 127.0.0.1:0\nroots = {quaid.dir}/gone\nlog_file = {log}\n")
    p = quaid.run("--config", conf)
    assert p.returncode == EXIT_CONFIG
    assert problems(p.stderr) == f"quaid: roots: {quaid.dir}/gone: No such file or directory\n"
    with open(log) as f:
        lines = problems(f.read()).splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} quaid: error: "
                        + re.escape(f"roots: {quaid.dir}/gone: No such file or directory"),
                        lines[0]), lines[0]


def test_a_log_file_that_cannot_be_opened_is_a_problem(quaid):
    log = os.path.join(quaid.dir, "no-dir", "quaid.log")
    conf = quaid.conf(f"listen = 127.0.0.1:0\nroots = {quaid.mkdir('r')}\nlog_file = {log}\n")
    p = quaid.run("--config", conf)
    assert p.returncode == EXIT_CONFIG
    assert problems(p.stderr) == (f"quaid: error: log_file: {log}: its directory "
                        f"{quaid.dir}/no-dir does not exist\n")
