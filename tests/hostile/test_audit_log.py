# SPDX-License-Identifier: Apache-2.0
"""Issue 22 #8: a deleted or replaced audit log was written on silently:
quaid kept appending to the deleted inode until SIGHUP."""
import json
import os


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_deleted_audit_log_is_reopened_and_said(quaid_factory, quai):
    q = quaid_factory().start()
    quai.ok("ls", q.uri())
    assert "list" in [a["op"] for a in lines(q.audit)]
    os.unlink(q.audit)
    quai.ok("ls", q.uri())
    got = lines(q.audit)
    assert (got[0]["event"], got[0]["op"]) == ("audit-log", "reopen"), got
    assert ("access", "list") in [(a["event"], a["op"]) for a in got[1:]], got
    assert "was deleted" in got[0]["reason"]
    assert f"audit log {q.audit} was deleted" in q.text()
    # Replaced by another file: the same.
    os.rename(q.audit, q.audit + ".1")
    with open(q.audit, "w"):
        pass
    quai.ok("ls", q.uri())
    got = lines(q.audit)
    assert (got[0]["event"], got[0]["op"]) == ("audit-log", "reopen"), got
    assert ("access", "list") in [(a["event"], a["op"]) for a in got[1:]], got
    assert "was replaced" in got[0]["reason"]
