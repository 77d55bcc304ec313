# SPDX-License-Identifier: Apache-2.0
"""Issue 22 #5: symbolic links defeated policy and zone. A directory under
a served root whose shard files were links into a dataset the user may
not read, with a copied manifest relabelled `public` (checksum
recomputed), was served to that user and audited "public, granted"; a
dataset directory linked to outside the roots was listed and served."""
import ctypes
import ctypes.util
import json
import os
import re
import shutil

import pytest

RULES = "rule_public = allow all classes=public\n"


def xxh3(data):
    lib = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
    lib.XXH3_64bits.restype = ctypes.c_uint64
    lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return lib.XXH3_64bits(data, len(data))


def relabel(manifest, name, cls):
    """The manifest text with another name and classification, and its
    checksum recomputed (docs/FORMAT.md, "The manifest checksum")."""
    text = manifest.decode()
    text = re.sub(r'"name": "[^"]*"', f'"name": "{name}"', text, count=1)
    text = re.sub(r'"classification": "[^"]*"', f'"classification": "{cls}"', text, count=1)
    head = text[:text.rindex('"manifest_xxh3"')]
    return (head + '"manifest_xxh3": "%016x"\n}\n' % xxh3(head.encode())).encode()


@pytest.fixture
def site(quaid_factory, quai, tmp_path):
    q = quaid_factory(rules=RULES)
    priv = quai.pack(b"".join(b"secret %d\n" % i for i in range(5000)),
                     os.path.join(q.roots, "priv"), "--class", "internal", seed=1)
    # The attacker's dataset: its own directory, the private shards linked.
    evil = os.path.join(q.roots, "evil")
    os.mkdir(evil)
    for name in os.listdir(priv):
        if name != "manifest.json":
            os.symlink(os.path.join(priv, name), os.path.join(evil, name))
    with open(os.path.join(priv, "manifest.json"), "rb") as f:
        forged = relabel(f.read(), "evil", "public")
    with open(os.path.join(evil, "manifest.json"), "wb") as f:
        f.write(forged)
    # A whole dataset directory linked from outside the roots.
    outside = quai.pack(b"".join(b"outside %d\n" % i for i in range(100)),
                        os.path.join(str(tmp_path), "outside"), "--class", "public", seed=2)
    os.symlink(outside, os.path.join(q.roots, "linked"))
    quai.pack(b"".join(b"plain %d\n" % i for i in range(100)),
              os.path.join(q.roots, "plain"), "--class", "public", seed=3)
    q.start()
    return q


def audit(q):
    with open(q.audit) as f:
        return [json.loads(line) for line in f]


def test_forged_manifest_over_linked_shards_is_not_served(site, quai, tmp_path):
    # The forgery is a valid manifest: only the links give it away.
    p = quai.run("verify", os.path.join(site.roots, "evil"))
    assert p.returncode != 0, p.stdout
    assert b"symbolic link" in p.stderr or b"symbolic link" in p.stdout, p
    listed = quai.ok("ls", site.uri()).stdout.decode()
    assert "plain" in listed
    assert "evil" not in listed and "linked" not in listed, listed
    for name in ("evil", "linked"):
        dest = os.path.join(str(tmp_path), f"got-{name}")
        p = quai.run("pull", "-q", site.uri(name), dest)
        assert p.returncode != 0, (name, p.stderr)
        assert not os.path.exists(dest)
        p = quai.run("cat", site.uri(name), stdout=open(os.devnull, "wb"))
        assert p.returncode != 0, (name, p.stderr)
    granted = [a for a in audit(site) if a.get("dataset") in ("evil", "linked")
               and a.get("result") == "granted"]
    assert granted == [], granted
    # The honest public dataset is still served.
    quai.ok("pull", "-q", site.uri("plain"), os.path.join(str(tmp_path), "got-plain"))


def test_private_dataset_still_refused(site, quai, tmp_path):
    p = quai.run("pull", "-q", site.uri("priv"), os.path.join(str(tmp_path), "got"))
    assert p.returncode == 5, p.stderr


def test_fifo_in_place_of_a_shard_is_refused_not_hung(quai, tmp_path):
    ds = quai.pack(b"x\n" * 100, os.path.join(str(tmp_path), "ds"), seed=4)
    shard = os.path.join(ds, "shard-00000.zst")
    os.unlink(shard)
    os.mkfifo(shard)
    p = quai.run("cat", ds, timeout=20, stdout=open(os.devnull, "wb"))
    assert p.returncode != 0
    assert b"not a regular file" in p.stderr, p.stderr
    shutil.rmtree(ds)
