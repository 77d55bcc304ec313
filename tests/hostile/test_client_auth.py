# SPDX-License-Identifier: Apache-2.0
"""Issue 22 #10, the client's side: a client whose munged is unreachable
sent a credential-less HELLO (the docs said it sends nothing), and
`quai info quai://h/..` exited 3 where pull exited 2."""
import json
import os

import pytest

EXIT_USAGE, EXIT_FAILURE, EXIT_REFUSED = 2, 3, 5


def audit_ops(q):
    try:
        with open(q.audit) as f:
            return [json.loads(line)["op"] for line in f]
    except FileNotFoundError:
        return []


def test_no_credential_sends_nothing(quaid_factory, quai, tmp_path):
    q = quaid_factory(extra="unauthenticated = public\n").start()
    env = {"QUAI_MUNGE_SOCKET": str(tmp_path / "no-munged")}
    p = quai.run("ls", q.uri(), env=env)
    assert p.returncode == EXIT_FAILURE, p.stderr
    assert b"nothing was sent" in p.stderr and b"no-munged" in p.stderr, p.stderr
    # quaid saw no HELLO at all: no connect line, granted or refused.
    assert audit_ops(q) == []


def test_unauthenticated_only_on_purpose(quaid_factory, quai, tmp_path):
    env = {"QUAI_MUNGE_SOCKET": str(tmp_path / "no-munged"), "QUAI_AUTH": "none"}
    open_q = quaid_factory(extra="unauthenticated = public\n").start()
    quai.ok("ls", open_q.uri(), env=env)
    closed_q = quaid_factory().start()
    p = quai.run("ls", closed_q.uri(), env=env)
    assert p.returncode == EXIT_REFUSED, p.stderr
    assert b"authentication required" in p.stderr and b"QUAI_AUTH=none" in p.stderr
    p = quai.run("ls", closed_q.uri(), env={"QUAI_AUTH": "maybe"})
    assert p.returncode != 0 and b"QUAI_AUTH: 'maybe'" in p.stderr, p.stderr


@pytest.mark.parametrize("name", ["..", ".", "a/b"])
@pytest.mark.parametrize("verb", ["info", "pull", "stage"])
def test_bad_dataset_name_is_a_usage_error_everywhere(quai, tmp_path, verb, name):
    uri = f"quai://127.0.0.1:9/{name}"
    args = [verb, uri] + ([str(tmp_path / "dest")] if verb == "pull" else [])
    p = quai.run(*args, timeout=30)
    assert p.returncode == EXIT_USAGE, (verb, name, p.returncode, p.stderr)
    assert b"Try 'quai " in p.stderr
    assert not os.path.exists(tmp_path / "dest")
