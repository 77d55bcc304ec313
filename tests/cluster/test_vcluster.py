# SPDX-License-Identifier: Apache-2.0
"""The virtual cluster itself: nodes reach one another on their own
addresses and names, nothing of it shows in the host's namespace, and
everything it made is gone after stop(), even with a daemon and a stray
process left running inside."""
import os
import subprocess
import sys

import pytest

from vcluster import NETNS_DIR, Cluster, skip_reason, sweep_stale

ECHO = ("import socket,sys\n"
        "s=socket.create_server((sys.argv[1],7000));print('up',flush=True)\n"
        "c,_=s.accept();c.sendall(socket.gethostname().encode());c.close()\n")
ASK = ("import socket,sys\n"
       "c=socket.create_connection((sys.argv[1],7000),timeout=5);print(c.recv(100).decode())\n")


def netns_names():
    try:
        return set(os.listdir(NETNS_DIR))
    except OSError:
        return set()


def host_links():
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def test_nodes_talk_and_everything_goes_away():
    why = skip_reason()
    if why:
        pytest.skip(why)
    links_before = host_links()
    c = Cluster(computes=2, ios=("io1",))
    c.start()
    try:
        mine = {n for n in netns_names() if n.startswith(c.tag + "-")}
        assert mine == {c.tag + "-" + n for n in ("sw", "head", "c1", "c2", "io1")}
        for n in c.nodes.values():
            assert n.addr.startswith(("198.18.", "198.19.")), n
            assert c.run(n.name, ["hostname"]).stdout.strip() == n.name
        # io1 serves on its address; c2 reaches it and hears io1's name.
        srv = subprocess.Popen(c.ns_argv("io1", [sys.executable, "-c", ECHO, c.nodes["io1"].addr]),
                               stdout=subprocess.PIPE, text=True)
        assert srv.stdout.readline().strip() == "up"
        r = c.run("c2", [sys.executable, "-c", ASK, c.nodes["io1"].addr], check=True)
        assert r.stdout.strip() == "io1"
        srv.wait(10)
        # No route out of the cluster: only the /24 of the bridge.
        routes = c.run("c1", ["ip", "-4", "route"]).stdout
        assert "default" not in routes and c.net in routes, routes
        # Nothing in the host's namespace.
        assert host_links() == links_before
        # A stray process left inside a node is ended by stop().
        stray = subprocess.Popen(c.ns_argv("c1", ["sleep", "600"]))
        cdir = c.dir
    finally:
        c.stop()
    assert stray.wait(10) != 0
    assert not {n for n in netns_names() if n.startswith(c.tag + "-")}
    assert not os.path.exists(cdir)
    assert host_links() == links_before
    for _, what, p in c.procs:
        assert p.poll() is not None, what
    c.stop()  # twice is harmless


def test_two_clusters_side_by_side(cluster):
    """conftest's `cluster` fixture, and a second cluster beside it."""
    with Cluster(computes=1, ios=()) as b:
        assert cluster.tag != b.tag and cluster.dir != b.dir
        assert cluster.run("c1", ["hostname"]).stdout.strip() == "c1"
        assert b.run("c1", ["hostname"]).stdout.strip() == "c1"
        assert cluster.nodes["io1"].munge_socket != b.nodes["c1"].munge_socket


def test_a_killed_runs_namespaces_are_swept():
    """A test process killed with SIGKILL cannot clean up: the next cluster
    deletes the namespaces whose owner is gone (and only those)."""
    why = skip_reason()
    if why:
        pytest.skip(why)
    code = ("import sys,os,signal; sys.path.insert(0, %r)\n"
            "from vcluster import Cluster\n"
            "c = Cluster(computes=1, ios=()); c.start(); print(c.tag, c.dir, flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n" % os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    tag, cdir = r.stdout.split()
    left = {n for n in netns_names() if n.startswith(tag + "-")}
    assert left, "the killed run left nothing: nothing to sweep"
    with Cluster(computes=1, ios=()) as c:
        assert not {n for n in netns_names() if n.startswith(tag + "-")}
        assert any(tag in n for n in c.notes), c.notes
        assert {n for n in netns_names() if n.startswith(c.tag + "-")}
    import shutil
    shutil.rmtree(cdir, ignore_errors=True)
    assert sweep_stale() == []


def test_shaping_puts_the_qdisc_on_the_link():
    why = skip_reason()
    if why:
        pytest.skip(why)
    with Cluster(computes=1, ios=("io1",), shape={"io1": "tbf rate 20mbit burst 32k latency 50ms",
                                                   "c1": "no-such-qdisc"}) as c:
        q = subprocess.run(["tc", "-n", c.nodes["io1"].netns, "qdisc", "show", "dev", "eth0"],
                           capture_output=True, text=True).stdout
        assert "tbf" in q and "20Mbit" in q, q
        assert any(n.startswith("no shaping on c1: ") for n in c.notes), c.notes
