# SPDX-License-Identifier: Apache-2.0
"""The tamper-evident audit log (docs/SECURITY.md "Audit log"): logs written
by the real quai and quaid, tampered with as an attacker with write access
to the file would (sed, an editor, truncate), and `quai audit verify`
naming the line where it was done. quaid's lines, signed with its host key,
keep their chain through a rotation (rename, SIGHUP).
"""
import os
import re
import signal
import subprocess

import pytest

from test_xfer import Quaid, pack, read, text_lines, wait_for, write

EXIT_BAD_DATA = 1
EXIT_REFUSED = 5


@pytest.fixture
def host_log(tmp_path, quai):
    """A host audit log written by quai verify: granted and refused lines
    (a sensitive dataset of another zone), as a user's quai writes them."""
    log = str(tmp_path / "host-audit.log")
    conf = str(tmp_path / "quai.conf")
    write(conf, f"zone = fr-1\naudit_log = {log}\n".encode())
    src = str(tmp_path / "in.txt")
    write(src, text_lines(1, 200))
    pub = pack(quai, tmp_path / "ds" / "pub", src, opts=("--records", "lines"))
    storage = str(tmp_path / "storage-de.conf")  # packed on a host of its zone
    write(storage, f"zone = de-1\nsovereign_paths = {tmp_path}/ds\n".encode())
    os.makedirs(tmp_path / "ds", exist_ok=True)
    sens = pack(quai, tmp_path / "ds" / "sens", src,
                opts=("--records", "lines", "--class", "sensitive", "--zone", "de-1"),
                env={"QUAI_CONF": storage})
    env = {"QUAI_CONF": conf}
    outcomes = []
    for ds in (pub, pub, sens, pub, sens, pub, pub):
        p = quai.run("verify", "-q", ds, env=env)
        assert p.returncode in (0, EXIT_REFUSED), p.stderr
        outcomes.append(p.returncode)
    lines = read(log).decode().splitlines()
    assert len(lines) == len(outcomes)
    assert ['"result":"refused"' in ln for ln in lines] == [r == EXIT_REFUSED for r in outcomes]
    return log


def verify(quai, *args):
    return quai.run("audit", "verify", *args)


def test_an_untouched_log_passes(quai, host_log):
    p = verify(quai, host_log)
    assert p.returncode == 0, p.stderr
    assert b"OK: 7 lines chained, seq 1 to 7" in p.stdout
    assert re.search(rb"head: seq 7 hash [0-9a-f]{64}\n", p.stdout), p.stdout


def test_a_refusal_turned_into_granted_with_sed(quai, host_log):
    subprocess.run(["sed", "-i", '3s/"result":"refused"/"result":"granted"/', host_log],
                   check=True)
    assert b'"result":"refused"' not in read(host_log).splitlines()[2]
    p = verify(quai, host_log)
    assert p.returncode == EXIT_BAD_DATA, p.stderr
    assert b"line 3 was changed: line 4 (seq 4) names a hash it does not have" in p.stderr
    assert b"FAILED: 2 lines verified before the fault" in p.stdout


def test_a_deleted_line(quai, host_log):
    subprocess.run(["sed", "-i", "5d", host_log], check=True)
    p = verify(quai, host_log)
    assert p.returncode == EXIT_BAD_DATA, p.stderr
    assert b"line 5 (seq 6) follows seq 4: the lines between were deleted" in p.stderr


def test_an_inserted_line(quai, host_log):
    lines = read(host_log).splitlines(keepends=True)
    write(host_log, b"".join(lines[:4] + [lines[1]] + lines[4:]))  # a copy of line 2
    p = verify(quai, host_log)
    assert p.returncode == EXIT_BAD_DATA, p.stderr
    assert b"line 5 (seq 2) does not follow seq 4" in p.stderr
    # A line without chain fields, as someone unaware of the chain adds it.
    write(host_log, b"".join(lines[:2] + [b'{"event":"access","result":"granted"}\n']
                             + lines[2:]))
    p = verify(quai, host_log)
    assert p.returncode == EXIT_BAD_DATA, p.stderr
    assert b"line 3 has no chain fields" in p.stderr


def test_a_truncated_log(quai, host_log):
    os.truncate(host_log, os.path.getsize(host_log) - 30)
    p = verify(quai, host_log)
    assert p.returncode == EXIT_BAD_DATA, p.stderr
    assert b"line 7 is cut short" in p.stderr


def test_usage(quai, tmp_path):
    assert quai.run("audit").returncode == 2
    assert quai.run("audit", "check", "x").returncode == 2
    assert quai.run("audit", "verify").returncode == 2
    assert quai.run("audit", "verify", "--require-signed", "x").returncode == 2
    p = verify(quai, str(tmp_path / "missing.log"))
    assert p.returncode == 3 and b"missing.log: No such file or directory" in p.stderr
    p = quai.run("audit", "verify", "--key", str(tmp_path / "nokey.pub"), "x")
    assert p.returncode == 3 and b"nokey.pub" in p.stderr


def test_keygen(quai, tmp_path):
    prefix = str(tmp_path / "k")
    p = quai.ok("keygen", prefix)
    assert re.fullmatch(rb".*: key [0-9a-f]{16}\n", p.stdout), p.stdout
    assert os.stat(prefix + ".key").st_mode & 0o777 == 0o600
    assert re.fullmatch(rb"quai-ed25519-public [0-9a-f]{64}\n", read(prefix + ".pub"))
    p = quai.run("keygen", prefix)
    assert p.returncode == 3 and b"never overwrites" in p.stderr


def test_quaid_signs_its_lines_and_keeps_the_chain_through_rotation(quai, tmp_path):
    keys = str(tmp_path / "host")
    other = str(tmp_path / "other")
    quai.ok("keygen", keys)
    quai.ok("keygen", other)
    q = Quaid(tmp_path / "server")
    audit = os.path.join(q.base, "audit.log")
    with open(q.conf, "a") as f:
        f.write(f"audit_log = {audit}\naudit_key = {keys}.key\n")
    q.start()
    try:
        for _ in range(3):
            quai.ok("ls", q.uri())
        os.rename(audit, audit + ".1")
        q.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: b"audit log reopened" in read(q.log_path), 10, "the reopen")
        for _ in range(2):
            quai.ok("ls", q.uri())
    finally:
        q.stop()
    q.check_clean()
    old, new = audit + ".1", audit
    n_old = len(read(old).splitlines())
    n_new = len(read(new).splitlines())
    assert n_old >= 6 and n_new >= 4  # connect and list, each ls
    p = verify(quai, "--key", keys + ".pub", "--require-signed", old, new)
    assert p.returncode == 0, p.stderr
    assert f"OK: {n_old + n_new} lines chained, seq 1 to {n_old + n_new}, " \
           f"{n_old + n_new} signed".encode() in p.stdout
    # The new file alone continues the old one.
    p = verify(quai, new)
    assert p.returncode == 0 and b"continues an earlier file" in p.stdout, p.stdout
    # Another key did not sign them.
    p = verify(quai, "--key", other + ".pub", old)
    assert p.returncode == EXIT_BAD_DATA and b"signature does not verify" in p.stderr
    # The old file's last line cut: the new file's first line says so.
    lines = read(old).splitlines(keepends=True)
    write(old, b"".join(lines[:-1]))
    p = verify(quai, "--key", keys + ".pub", old, new)
    assert p.returncode == EXIT_BAD_DATA, p.stderr
    assert b"audit.log: line 1 (seq %d) does not continue the previous file" % (n_old + 1) \
        in p.stderr


def test_quaid_refuses_a_secret_key_others_can_read(quai, tmp_path):
    keys = str(tmp_path / "host")
    quai.ok("keygen", keys)
    os.chmod(keys + ".key", 0o644)
    q = Quaid(tmp_path / "server")
    with open(q.conf, "a") as f:
        f.write(f"audit_log = {q.base}/audit.log\naudit_key = {keys}.key\n")
    env = dict(os.environ, LC_ALL="C", QUAI_CONF=os.path.join(q.base, "none.conf"))
    from test_xfer import QUAID_BIN
    p = subprocess.run([QUAID_BIN, "--config", q.conf, "--check-config"], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert p.returncode != 0
    assert b"audit_key: " in p.stderr and b"others can read" in p.stderr, p.stderr
