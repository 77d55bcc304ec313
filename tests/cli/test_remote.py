# SPDX-License-Identifier: Apache-2.0
"""quaid and remote mode from the command line, with real processes on
loopback: `quai ls`, `quai info` and `quai stat` of quai:// URIs, `quai stage`
of remote streams checked against a local copy, and the faults a service
must survive: a client killed mid-stream, hostile messages, a client that
never gives slots back, a protocol version it does not speak, SIGTERM with
streams running.
"""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from test_xfer import EXIT_OK, EXIT_REMOTE, QUAI_BIN, Quaid, pack, text_lines, wait_for, write

RAW_CLIENT = os.path.join(os.path.dirname(os.path.dirname(QUAI_BIN)), "tests", "raw_client")


@pytest.fixture
def served(tmp_path, quai):
    """A quaid serving a lines and a fixed dataset from its root."""
    q = Quaid(tmp_path / "server")
    write(tmp_path / "in.txt", text_lines(5, 30000))
    pack(quai, os.path.join(q.roots, "lines"), str(tmp_path / "in.txt"),
         opts=("--records", "lines", "--frame-size", "16K"))
    write(tmp_path / "in.bin", bytes(range(256)) * 4096 * 8)
    pack(quai, os.path.join(q.roots, "fixed"), str(tmp_path / "in.bin"),
         opts=("--records", "fixed:1024", "--frame-size", "64K"))
    q.start()
    yield q
    q.stop()
    q.check_clean()


@pytest.fixture
def client(quai):
    quai.env["QUAI_REMOTE_TIMEOUT"] = "5"
    return quai


def stat(client, q):
    p = client.ok("stat", "--json", q.uri())
    return json.loads(p.stdout)


def raw(q, mode, *args, timeout=60):
    if not os.access(RAW_CLIENT, os.X_OK):
        pytest.skip(f"no {RAW_CLIENT}")
    return subprocess.run([RAW_CLIENT, "127.0.0.1", str(q.port), mode, *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


# ---- listing and describing ------------------------------------------------


def test_ls_info_stat(client, served):
    p = client.ok("ls", "--json", served.uri())
    names = [d["name"] for d in json.loads(p.stdout)]
    assert names == ["fixed", "lines"]
    text = client.ok("ls", served.uri()).stdout.decode()
    assert "lines" in text and "fixed" in text and "RECORDS" in text
    remote = json.loads(client.ok("info", "--json", "--shards", served.uri("lines")).stdout)
    local = json.loads(client.ok("info", "--json", "--shards",
                                 os.path.join(served.roots, "lines")).stdout)
    assert remote == local
    st = stat(client, served)
    assert st["server"].startswith("quaid ") and st["zone"] == "none"
    assert "clients" in st and st["pinned_bytes"] >= 256 << 20
    assert "up " in client.ok("stat", served.uri()).stdout.decode()


def test_remote_errors_name_what_is_wrong(client, served, tmp_path):
    p = client.run("info", served.uri("nothing-here"))
    assert p.returncode != EXIT_OK and b"nothing-here" in p.stderr
    p = client.run("ls", "quai://127.0.0.1:1/")
    assert p.returncode == EXIT_REMOTE and b"127.0.0.1:1" in p.stderr
    p = client.run("stage", served.uri("lines/extra"))
    assert p.returncode != EXIT_OK
    p = client.run("ls", "quai://[::1/")
    assert p.returncode != EXIT_OK and b"]" in p.stderr


# ---- streams ------------------------------------------------------------------


@pytest.mark.parametrize("args", [(), ("--world", "4", "--rank", "3", "--seed", "9"),
                                  ("--batch-bytes", "10K", "--keep-tail"),
                                  ("--no-shuffle", "--batch", "17", "--epochs", "2"),
                                  ("--world", "7", "--rank", "6", "--pad-tail", "--batch", "30")])
@pytest.mark.parametrize("name", ["lines", "fixed"])
def test_stage_remote_verified(client, served, name, args):
    """--verify-order checks each batch's ids against the plan of a second
    stream and its bytes against an independent read of the local copy."""
    p = client.ok("stage", "--verify-order", "--reference", os.path.join(served.roots, name),
                  *args, served.uri(name))
    assert b"order and bytes verified" in p.stdout


def test_stream_budget_that_holds_only_the_clients_depth(client, served):
    """quaid assembles a remote stream twice as far ahead as the client
    holds, but falls back to the client's own depth when the stream's budget
    cannot hold twice: a budget that fits prefetch 4 and not 8 still
    streams."""
    local = os.path.join(served.roots, "lines")
    p = client.ok("stage", "--json", "--pinned", "64M", "--prefetch", "4", local)
    ws = json.loads(p.stdout)["working_set"]
    budget = str(ws)
    p = client.run("stage", "--pinned", "64M", "--prefetch", "8", "--budget", budget, local)
    assert p.returncode != 0 and b"budget" in p.stderr, p.stderr  # 8 ahead do not fit
    p = client.ok("stage", "--verify-order", "--reference", local, "--pinned", "64M",
                  "--prefetch", "4", "--budget", budget, served.uri("lines"))
    assert b"order and bytes verified" in p.stdout

def test_verify_order_of_remote_needs_reference(client, served):
    p = client.run("stage", "--verify-order", served.uri("lines"))
    assert p.returncode == 2 and b"--reference" in p.stderr


def test_client_killed_mid_stream(client, served):
    """SIGKILL a client mid-stream: quaid notices (a failed write, or silence
    past idle_timeout), frees the session's slots and memory, logs its end,
    and serves the next client."""
    env = dict(client.env, QUAI_REMOTE_TIMEOUT="5")
    # One record per batch: an epoch of "lines" lasts about a second, and
    # the kill lands 0.2 s into the first.
    p = subprocess.Popen([QUAI_BIN, "stage", "--pinned", "64M", "--batch", "1", "--epochs",
                          "1000", "-q", served.uri("lines")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_for(lambda: " of lines," in served.text(), 30, "the stream to open", step=0.02)
    time.sleep(0.2)
    p.kill()
    p.wait()
    # Each epoch is a session: wait until every session of the client has
    # ended. The one the kill caught ends for a reason other than goodbye
    # (unless the kill fell between two epochs, which takes microseconds).
    tag = f"pid {p.pid}"
    wait_for(lambda: served.text().count(f"{tag} connected") ==
             served.text().count(f"{tag}) ended:"), 30, "the sessions to end", step=0.2)
    ends = re.findall(rf"{tag}\) ended: ([^;]*)", served.text())
    assert any(e != "the client said goodbye" for e in ends), ends
    st = stat(client, served)
    assert st["streams_open"] == 0
    assert all(c["memory"] == 0 for c in st["clients"])
    client.ok("stage", "-q", served.uri("lines"))


@pytest.mark.parametrize("mode", ["garbage", "truncated", "oversized", "server-type"])
def test_malformed_messages_drop_the_session(client, served, mode):
    before = served.text().count("ended")
    r = raw(served, mode)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == "dropped"
    wait_for(lambda: served.text().count("ended") == before + 1, 10, "one log line")
    line = [ln for ln in served.text().splitlines() if "raw-client" in ln and "ended" in ln][-1]
    assert ("malformed" in line) or ("only a server sends" in line)
    client.ok("ls", served.uri())


def test_out_of_order_slots_get_an_error(client, served):
    r = raw(served, "bad-slots")
    out = r.stdout.decode()
    assert out.startswith("error ") and "no stream or transfer" in out
    assert "then alive" in out


def test_credit_for_a_slot_not_held_drops(client, served):
    r = raw(served, "bad-credit", "fixed")
    assert r.stdout.decode().strip() == "dropped", r.stderr
    wait_for(lambda: "did not hold" in served.text(), 10, "the log line")
    client.ok("stage", "-q", served.uri("lines"))


def test_client_that_never_gives_slots_back(client, served):
    """Memory stays bounded by the stream's slots and budget, and the others
    are served meanwhile."""
    if not os.access(RAW_CLIENT, os.X_OK):
        pytest.skip(f"no {RAW_CLIENT}")
    p = subprocess.Popen([RAW_CLIENT, "127.0.0.1", str(served.port), "hoard", "fixed"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = p.stdout.readline().decode()
        assert line.startswith("hoarding ")
        assert 1 <= int(line.split()[1]) <= 8  # its ring: twice the default prefetch of 4
        st = stat(client, served)
        hoarder = [c for c in st["clients"] if c["host"] == "raw-client"]
        assert hoarder and hoarder[0]["memory"] <= 128 << 20  # client_memory
        assert st["pinned_peak"] <= st["pinned_bytes"]
        client.ok("stage", "-q", "--verify-order", "--reference",
                  os.path.join(served.roots, "lines"), served.uri("lines"))
    finally:
        p.kill()
        p.wait()


def test_other_protocol_version_is_refused_by_name(client, served):
    r = raw(served, "version")
    out = r.stdout.decode()
    assert out.startswith("error 4099 "), out  # QUAI_EVERSION
    assert "version 1" in out and "version 2" in out
    client.ok("ls", served.uri())


def test_sigterm_ends_streams_cleanly(client, served):
    """Small batches make each epoch long: SIGTERM lands mid-stream, and the
    client hears why its stream ended."""
    env = dict(client.env, QUAI_REMOTE_TIMEOUT="10")
    p = subprocess.Popen([QUAI_BIN, "stage", "--pinned", "64M", "--epochs", "1000", "--batch",
                          "2", "-q", served.uri("fixed")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wait_for(lambda: served.text().count(" of fixed,") >= 2, 30, "streams to run", step=0.05)
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=30) == 0
    err = p.communicate(timeout=30)[1].decode()
    assert p.returncode == EXIT_REMOTE, err
    assert "shutting down" in err
    served.proc = None
    served.log.close()
