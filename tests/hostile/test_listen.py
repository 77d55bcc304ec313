# SPDX-License-Identifier: Apache-2.0
"""Issue 22 #1: `listen = 0.0.0.0:PORT` (the documented default) bound only
127.0.0.1, so quaid was unreachable from every other host."""
import fcntl
import os
import socket
import struct

import pytest

SIOCGIFADDR = 0x8915


def listening(port):
    """The local addresses with a TCP socket listening on port, as
    /proc/net/tcp says (what `ss -ltn` reads)."""
    out = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:
                out.add(socket.inet_ntoa(struct.pack("<I", int(addr, 16))))
    return out


def listening6(port):
    """The same for IPv6 (/proc/net/tcp6), addresses as 32 hex digits."""
    out = set()
    try:
        with open("/proc/net/tcp6") as f:
            lines = f.readlines()[1:]
    except FileNotFoundError:
        return out
    for line in lines:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if state == "0A" and int(p, 16) == port:
            out.add(addr)
    return out


def other_ipv4():
    """This host's IPv4 addresses other than loopback."""
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _idx, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR,
                                  struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            addr = socket.inet_ntoa(raw[20:24])
            if not addr.startswith("127."):
                out.append(addr)
    return out


def test_wildcard_listens_on_every_interface(quaid_factory, quai):
    q = quaid_factory(listen_host="0.0.0.0").start()
    assert listening(q.port) == {"0.0.0.0"}, q.text()
    assert f"listening on 0.0.0.0:{q.port}" in q.text()
    quai.ok("ls", q.uri(host="127.0.0.1"))
    others = other_ipv4()
    if not others:
        pytest.skip("this host has no address but loopback to reach quaid through")
    # Reached through another of this host's addresses: its credential names
    # that address, which a wildcard listener takes.
    p = quai.run("ls", q.uri(host=others[0]))
    assert p.returncode == 0, p.stderr


def test_named_address_listens_there_only(quaid_factory, quai):
    q = quaid_factory(listen_host="127.0.0.1").start()
    assert listening(q.port) == {"127.0.0.1"}
    quai.ok("ls", q.uri())


def test_ipv6_wildcard_listens_on_every_interface(quaid_factory, quai):
    if not os.path.exists("/proc/net/tcp6"):
        pytest.skip("this host has no IPv6")
    q = quaid_factory(listen_host="[::]").start()
    # Listening only: quai's client opens IPv4 endpoints today, which an
    # IPv6 endpoint cannot answer (noted in issue 22's report).
    assert listening6(q.port) == {"0" * 32}, q.text()
