# SPDX-License-Identifier: Apache-2.0
"""quai's burst_buffer.lua (contrib/slurm) on a real Slurm 22.05, in the
virtual cluster: slurmctld on head, slurmd on c1 and c2, quaid on io1 and
io2, one munged per node with one key. Jobs are submitted with sbatch as
unprivileged users (conftest.USERS); nothing is mocked.

io1 lets quaibb-alice do anything and serves sensitive data to head, c1
and c2 (head is where the burst-buffer hooks run: slurmctld's node); io2
has the same policy but serves sensitive data to c1 and c2 only.
quaibb-eve has no rule on either.
"""
import json
import os
import re
import time

import pytest

EPOCH_PY = r'''
import json, socket, sys
import quai
rank, world, local = quai.rank_from_env()
ids = []
ctx = quai.Context(pinned_bytes=6 << 20)  # within the default 8 MiB RLIMIT_MEMLOCK
with quai.Stream(sys.argv[1], rank=rank, world=world, seed=11, keep_tail=True, batch=97,
                 context=ctx) as s:
    for b in s:
        ids.extend(int(i) for i in b.ids)
        b.release()
with open("%s-%d.json" % (sys.argv[2], rank), "w") as f:
    json.dump({"rank": rank, "world": world, "local": local, "host": socket.gethostname(),
               "ids": ids}, f)
'''


def pulls_of(site, io, dataset, uid=None):
    return [a for a in site.audit_lines(io) if a.get("op") == "pull"
            and a.get("dataset") == dataset and (uid is None or a.get("uid") == uid)]


@pytest.mark.parametrize("directive,reason", [
    ("quai pull quai:/io1/tokens $QUAI_STAGE/tokens", "is not a quai:// URI"),
    ("quai pull quai://IO1/ $QUAI_STAGE/tokens", "dataset name must be one path component"),
    ("quai pull quai://IO1/tokens /tmp/tokens", "outside the job's staging area"),
    ("quai pull quai://IO1/tokens $QUAI_STAGE/../tokens", "no '..'"),
    ("quai pull quai://IO1/tokens $HOME/tokens", "outside the job's staging area"),
    ("quai pull quai://198.51.100.7/tokens $QUAI_STAGE/t", "is not one of this site's quaid hosts"),
    ("quai pull quai://IO1:99999/tokens $QUAI_STAGE/t", "port must be a number"),
    ("quai pull quai://IO1/tokens", "operand(s) given"),
    ("quai fetch quai://IO1/tokens $QUAI_STAGE/t", "expected 'quai pull URI"),
    ("quai push quai://IO1/x $QUAI_STAGE/t", "outside the job's staging area"),
])
def test_bad_directive_rejects_sbatch(site, directive, reason):
    rc, jid, err = site.sbatch(site.alice, "true\n", [directive.replace("IO1", site.io1)])
    assert rc != 0 and jid is None, err
    assert reason in err, err
    assert "line 2" in err, err
    print(err)


def test_two_directives_into_one_destination_rejected(site):
    d = "quai pull quai://%s/tokens $QUAI_STAGE/t" % site.io1
    rc, jid, err = site.sbatch(site.alice, "true\n", [d, d])
    assert rc != 0 and "already pulled into on line 2" in err, err


def test_stage_in_then_two_node_job_every_record_once(site):
    """The job waits in stage-in (squeue's reason) while head pulls tokens as
    alice; then 4 ranks on 2 nodes read the staged copy, each its share
    (rank and world from srun, through quai.rank_from_env()), and every
    record comes once."""
    with open(os.path.join(site.jobs, "epoch.py"), "w") as f:
        f.write(EPOCH_PY)
    body = ('echo "uid=$(id -u) stage=$QUAI_STAGE host=$(hostname)"\n'
            'quai verify -q "$QUAI_STAGE/tokens" || exit 1\n'
            '%s info quai://%s/tokens >/dev/null || exit 1\n' % (site.quai, site.io1) +
            'srun -N2 -n4 --ntasks-per-node=2 /usr/bin/python3 %s/epoch.py '
            '"$QUAI_STAGE/tokens" %s/ids-$SLURM_JOB_ID\n' % (site.jobs, site.jobs)
            ).replace("quai verify", site.quai + " verify")
    before = len(pulls_of(site, "io1", "tokens"))
    rc, jid, err = site.sbatch(site.alice, body,
                               ["quai pull quai://%s/tokens $QUAI_STAGE/tokens" % site.io1],
                               args=["-N2", "-n4"])
    assert rc == 0, err
    # squeue shows it pending on its burst buffer while the data comes in.
    squeued, early = set(), []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = site.c.run("head", ["squeue", "-h", "-j", jid, "-o", "%T|%r"])
        squeued.add(r.stdout.strip())
        j = site.job(jid)
        early.append((j.get("JobState"), j.get("Reason"), j.get("BurstBufferState")))
        if r.stdout.strip().startswith(("RUNNING", "COMPLETING")) or not r.stdout.strip():
            break
        time.sleep(0.05)
    assert squeued & {"PENDING|BurstBufferStageIn", "PENDING|BurstBufferResources"}, squeued
    j, seen = site.wait_job(jid, lambda j: j.get("JobState") in ("COMPLETED", "FAILED"),
                            what="the job to end")
    seen = early + seen
    out = site.output(jid)
    assert j["JobState"] == "COMPLETED", (seen, out, site.ctld_log()[-3000:])
    # It waited in stage-in before it ran, as squeue shows it.
    first_in = next(i for i, s in enumerate(seen) if s[2] == "staging-in")
    first_alloc = next(i for i, s in enumerate(seen) if s[0] != "PENDING")
    assert first_in < first_alloc, seen
    assert all(s[0] == "PENDING" for s in seen[:first_alloc]), seen
    assert all(s[2] not in ("pending", "staging-in") for s in seen[first_alloc:]), seen
    stage = os.path.join(site.stage_root, "job-" + jid)
    assert "uid=%d stage=%s" % (site.alice.pw_uid, stage) in out, out
    ranks = []
    for r in range(4):
        with open(os.path.join(site.jobs, "ids-%s-%d.json" % (jid, r))) as f:
            ranks.append(json.load(f))
    assert sorted(x["rank"] for x in ranks) == [0, 1, 2, 3]
    assert {x["world"] for x in ranks} == {4}
    assert {x["host"] for x in ranks} == {"c1", "c2"}
    assert sorted(x["local"] for x in ranks) == [0, 0, 1, 1]
    ids = sorted(i for x in ranks for i in x["ids"])
    assert ids == list(range(site.records["tokens"])), "records lost or repeated"
    # quaid saw alice pull it, from head (the node the hooks run on).
    pulls = pulls_of(site, "io1", "tokens")[before:]
    assert len(pulls) == 1, pulls
    assert pulls[0]["uid"] == site.alice.pw_uid and pulls[0]["result"] == "granted", pulls
    assert pulls[0]["host"] == site.c.nodes["head"].addr, pulls
    # And the job's own request (quai info, on the batch node) is alice's.
    asks = [a for a in site.audit_lines("io1") if a.get("op") == "info"
            and a.get("dataset") == "tokens" and a.get("uid") == site.alice.pw_uid
            and a.get("host") in (site.c.nodes["c1"].addr, site.c.nodes["c2"].addr)]
    assert asks, [(a.get("op"), a.get("dataset"), a.get("uid"), a.get("host"), a.get("client"))
                  for a in site.audit_lines("io1")[-3:]]


def test_stage_out_after_job_and_teardown_wipes(site):
    """A sensitive dataset is staged in, the job writes a checkpoint; after
    the job the checkpoint is pushed as alice, then teardown overwrites the
    staged bytes with zeros (seen through a hard link the job kept) and
    removes the staging area."""
    witness = os.path.join(site.jobs, "witness-%d" % time.monotonic_ns())
    body = ('mkdir -p "$QUAI_STAGE/ckpt" && echo "step 100 of $SLURM_JOB_ID" > '
            '"$QUAI_STAGE/ckpt/state.txt"\n'
            'ln "$QUAI_STAGE/patients/shard-00000.zst" %s\n' % witness)
    rc, jid, err = site.sbatch(site.alice, body, [
        "quai pull quai://%s/patients $QUAI_STAGE/patients" % site.io1,
        "quai push $QUAI_STAGE/ckpt quai://%s/ckpt-$SLURM_JOB_ID" % site.io1])
    assert rc == 0, err
    stage = os.path.join(site.stage_root, "job-" + jid)
    j, seen = site.wait_job(jid, lambda j: j.get("JobState") == "COMPLETED"
                            and not os.path.exists(stage), what="stage-out and teardown")
    pushed = os.path.join(site.pushed, "ckpt-" + jid)
    assert os.path.isdir(pushed), (os.listdir(site.pushed), site.ctld_log()[-3000:])
    pushes = [a for a in site.audit_lines("io1") if a.get("op") == "push"
              and a.get("dataset") == "ckpt-" + jid]
    assert pushes and pushes[-1]["uid"] == site.alice.pw_uid, pushes
    with open(witness, "rb") as f:
        data = f.read()
    assert len(data) > 0 and data == bytes(len(data)), "staged bytes were not overwritten"
    assert not os.path.exists(os.path.join(site.state_dir, "job-" + jid))
    os.unlink(witness)


@pytest.mark.parametrize("who,io,dataset,reason", [
    ("eve", "io1", "tokens", "no rule allows user quaibb-eve"),
    ("alice", "io2", "patients", "is not one of zone z1's hosts"),
    ("alice", "io1", "no-such-dataset", "no-such-dataset"),
])
def test_failed_stage_in_holds_the_job(site, who, io, dataset, reason):
    """A refused pull (policy: eve has no rule; zone: io2 does not send
    sensitive data to head, which stages) holds the job with quai's reason;
    it never starts."""
    user = site.alice if who == "alice" else site.eve
    addr = site.io1 if io == "io1" else site.io2
    rc, jid, err = site.sbatch(user, "echo ran\n",
                               ["quai pull quai://%s/%s $QUAI_STAGE/d" % (addr, dataset)])
    assert rc == 0, err
    j, seen = site.wait_job(jid, lambda j: j.get("Priority") == "0", what="the hold")
    assert j["JobState"] == "PENDING", j
    # Slurm writes the reason with '_' for ' '.
    assert reason.replace(" ", "_") in j["Reason"], (j, seen)
    assert "quai_pull" in j["Reason"], j
    time.sleep(1.5)
    assert site.job(jid)["JobState"] == "PENDING"
    assert site.output(jid) is None, "the job ran without its data"
    site.c.run("head", ["scancel", jid], check=True)


def test_stage_in_unpacked(site):
    """--unpack stages the records themselves: a lines dataset becomes one
    text file the job reads with ordinary tools."""
    rc, jid, err = site.sbatch(site.alice, 'wc -l < "$QUAI_STAGE/tokens.txt"\n', [
        "quai pull --unpack quai://%s/tokens $QUAI_STAGE/tokens.txt" % site.io1])
    assert rc == 0, err
    j, seen = site.wait_job(jid, lambda j: j.get("JobState") in ("COMPLETED", "FAILED"),
                            what="the job to end")
    assert j["JobState"] == "COMPLETED", (seen, site.output(jid))
    assert site.output(jid).strip() == str(site.records["tokens"]), site.output(jid)


def test_failed_stage_out_is_reported_and_wiped(site):
    """A push that fails (its source was never written) is the job's
    stage-out error, with quai's message; the staging area is wiped all the
    same (Flags=TeardownFailure). The pull into a nested destination makes
    its parent directories, as the job's user."""
    rc, jid, err = site.sbatch(site.alice, 'test -d "$QUAI_STAGE/in/sub/tokens" && echo staged\n', [
        "quai pull quai://%s/tokens $QUAI_STAGE/in/sub/tokens" % site.io1,
        "quai push $QUAI_STAGE/never-written quai://%s/out-$SLURM_JOB_ID" % site.io1])
    assert rc == 0, err
    stage = os.path.join(site.stage_root, "job-" + jid)
    j, seen = site.wait_job(jid, lambda j: "quai_push" in j.get("Reason", "")
                            and not os.path.exists(stage), what="the failed stage-out")
    assert "staged" in site.output(jid), site.output(jid)
    assert "slurm_bb_data_out" in j["Reason"] and "never-written" in j["Reason"], j["Reason"]
    assert not os.path.exists(os.path.join(site.pushed, "out-" + jid))


def test_held_job_runs_once_released_after_the_fix(site):
    """A stage-in that failed (no such dataset yet) holds the job; once the
    dataset is there and the job is released, it stages in and runs."""
    name = "late-%d" % (time.monotonic_ns() % 10**9)
    rc, jid, err = site.sbatch(site.alice, 'test -d "$QUAI_STAGE/d" && echo ran\n',
                               ["quai pull quai://%s/%s $QUAI_STAGE/d" % (site.io1, name)])
    assert rc == 0, err
    site.wait_job(jid, lambda j: j.get("Priority") == "0", what="the hold")
    site.pack(name, "internal", 500)
    for node, what, p in site.c.procs:
        if node == "io1" and what == "quaid":
            p.send_signal(1)  # SIGHUP: quaid re-reads the datasets under its roots
    time.sleep(0.5)
    site.c.run("head", ["scontrol", "release", jid], check=True)
    j, seen = site.wait_job(jid, lambda j: j.get("JobState") in ("COMPLETED", "FAILED"),
                            what="the released job to end")
    assert j["JobState"] == "COMPLETED" and "ran" in site.output(jid), (seen, site.output(jid))


def test_requeue_does_not_pull_again(site):
    """A requeued job's stage-in finds its dataset present and verified, and
    keeps it: quaid sees one pull."""
    body = ('echo "run ${SLURM_RESTART_COUNT:-0}"\n'
            'if [ -z "$SLURM_RESTART_COUNT" ]; then sleep 60; fi\n')
    rc, jid, err = site.sbatch(site.alice, body, [
        "quai pull quai://%s/patients $QUAI_STAGE/p2" % site.io1], args=["--requeue"])
    assert rc == 0, err
    dest = os.path.join(site.stage_root, "job-" + jid, "p2")
    site.wait_job(jid, lambda j: j.get("JobState") == "RUNNING", what="the first run")
    n = len(pulls_of(site, "io1", "patients"))
    site.c.run("head", ["scontrol", "requeue", jid], check=True)
    j, seen = site.wait_job(jid, lambda j: j.get("JobState") == "COMPLETED"
                            and j.get("Restarts") == "1", timeout=120, what="the second run")
    # Its staging area went at the end of the second run.
    site.wait_job(jid, lambda j: not os.path.exists(os.path.dirname(dest)), what="teardown")
    assert "run 1" in (site.output(jid) or ""), site.output(jid)
    assert len(pulls_of(site, "io1", "patients")) == n, "the requeued job pulled again"
    assert re.search(r"job %s: .* already in %s and verified: not pulled again"
                     % (jid, re.escape(dest)), site.ctld_log()), site.ctld_log()[-3000:]


def test_links_planted_in_the_staging_area_get_the_users_rights(site):
    """The job's user owns its staging area and may leave links in it. A
    job replaces the parent of its destination with a link to a root-owned
    directory, then is requeued: the second stage-in finds "its" dataset
    there, fails to verify it, and must not remove it with root's rights
    (the hooks act in the area as the user). The job is held; the
    root-owned files stay, through the teardown too."""
    victim = os.path.join(site.c.dir, "victim-%d" % time.monotonic_ns())
    os.makedirs(os.path.join(victim, "d"))
    keep = os.path.join(victim, "d", "keep")
    with open(keep, "w") as f:
        f.write("root's\n")
    body = ('if [ -z "$SLURM_RESTART_COUNT" ]; then\n'
            '  rm -rf "$QUAI_STAGE/sub" && ln -s %s "$QUAI_STAGE/sub" && sleep 60\nfi\n' % victim)
    rc, jid, err = site.sbatch(site.alice, body, [
        "quai pull quai://%s/tokens $QUAI_STAGE/sub/d" % site.io1], args=["--requeue"])
    assert rc == 0, err
    link = os.path.join(site.stage_root, "job-" + jid, "sub")
    site.wait_job(jid, lambda j: os.path.islink(link), what="the planted link")
    site.c.run("head", ["scontrol", "requeue", jid], check=True)
    j, seen = site.wait_job(jid, lambda j: j.get("Priority") == "0" and j.get("Restarts") == "1",
                            timeout=120, what="the second stage-in to fail")
    assert os.path.exists(keep), "the hook removed a root-owned file through the job's link"
    assert "cannot_remove" in j["Reason"], j["Reason"]
    site.c.run("head", ["scancel", jid], check=True)
    site.wait_job(jid, lambda j: not os.path.exists(os.path.dirname(link)), what="teardown")
    with open(keep) as f:
        assert f.read() == "root's\n"


def test_areas_of_jobs_slurm_forgot_are_wiped(site):
    """A staging area left by a job Slurm no longer knows (Slurm runs no
    teardown for a job cancelled between a requeue's teardown and its next
    stage-in) is wiped, zeros first, by the next job's setup."""
    os.makedirs(site.stage_root, exist_ok=True)
    stale = os.path.join(site.stage_root, "job-987654")
    os.makedirs(stale)
    secret = os.path.join(stale, "secret")
    with open(secret, "wb") as f:
        f.write(b"sensitive bytes\n" * 100)
    witness = os.path.join(site.jobs, "stale-witness-%d" % time.monotonic_ns())
    os.link(secret, witness)
    for p in (stale, secret):
        os.chown(p, site.alice.pw_uid, site.alice.pw_gid)
    rc, jid, err = site.sbatch(site.alice, "true\n", [
        "quai pull quai://%s/tokens $QUAI_STAGE/t" % site.io1])
    assert rc == 0, err
    site.wait_job(jid, lambda j: j.get("JobState") == "COMPLETED" and not os.path.exists(stale),
                  what="the stale area to go")
    with open(witness, "rb") as f:
        data = f.read()
    # (shred writes whole blocks: the file may have grown to one.)
    assert len(data) >= 1600 and data == bytes(len(data)), "the stale bytes were not overwritten"
    os.unlink(witness)
    assert "belongs to no job Slurm knows: wiped" in site.ctld_log()


def test_check_hooks_are_fast(site):
    """slurm_bb_job_process runs inside slurmctld: the log's own timings of
    it (DebugFlags=BurstBuffer). Reported, not asserted against a bound."""
    times = [int(t) for t in re.findall(r"slurm_bb_job_process ran for usec=(\d+)",
                                        site.ctld_log())]
    assert times, site.ctld_log()[-2000:]
    r = site.c.run("head", ["scontrol", "show", "bbstat"], check=True)
    assert "job staging area(s) under %s" % site.stage_root in r.stdout, r.stdout
    times.sort()
    print("slurm_bb_job_process: %d calls, median %d us, max %d us"
          % (len(times), times[len(times) // 2], times[-1]))
    # The other hooks, for the record (the slow ones run outside slurmctld).
    other = {}
    for name, t in re.findall(r"(slurm_bb_\w+|setup|data_in|data_out|teardown|paths)"
                              r"(?: for JobId=\d+)? ran for usec=(\d+)", site.ctld_log()):
        other.setdefault(name, []).append(int(t))
    for name, ts in sorted(other.items()):
        ts.sort()
        print("%s: %d calls, median %d us, max %d us" % (name, len(ts), ts[len(ts) // 2], ts[-1]))
