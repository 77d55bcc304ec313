# SPDX-License-Identifier: Apache-2.0
"""Signed labels (docs/FORMAT.md "The signature"): a data steward signs a
dataset with a site key (quai keygen, quai sign); quai verify reports the
signature, and refuses a relabelled dataset, or a signed manifest copied
beside another dataset's shards, saying why.
"""
import os
import shutil

import pytest

from test_xfer import pack, read, text_lines, write

EXIT_BAD_DATA = 1


@pytest.fixture
def steward(tmp_path, quai):
    prefix = str(tmp_path / "site")
    quai.ok("keygen", prefix)
    return prefix


def packed(quai, tmp_path, where, cls, seed, name="ds"):
    """A lines dataset named `name` under tmp_path/where, packed on a host
    of zone fr-1 whose sovereign paths hold it."""
    conf = str(tmp_path / "storage.conf")
    write(conf, f"zone = fr-1\nsovereign_paths = {tmp_path}\n".encode())
    src = str(tmp_path / f"in-{seed}.txt")
    write(src, text_lines(seed, 3000))
    return pack(quai, tmp_path / where / name, src,
                opts=("--records", "lines", "--frame-size", "16K", "--shard-size", "64K",
                      "--class", cls, "--zone", "fr-1"),
                env={"QUAI_CONF": conf})


def verify(quai, tmp_path, ds, *args):
    conf = str(tmp_path / "storage.conf")
    return quai.run("verify", *args, ds, env={"QUAI_CONF": conf})


def test_signed_untrusted_unsigned(quai, tmp_path, steward):
    ds = packed(quai, tmp_path, "a", "internal", 1)
    p = verify(quai, tmp_path, ds)
    assert p.returncode == 0, p.stderr
    assert b"signature: unsigned" in p.stdout
    p = verify(quai, tmp_path, ds, "--require-signed")
    assert p.returncode == EXIT_BAD_DATA and b"signature: unsigned" in p.stderr

    p = quai.ok("sign", ds, "--key", steward + ".key")
    assert b"signed as internal, zone fr-1, by key " in p.stdout
    assert os.path.exists(os.path.join(ds, "manifest.sig"))
    p = quai.run("sign", ds, "--key", steward + ".key")
    assert p.returncode == 3 and b"signed already" in p.stderr
    quai.ok("sign", "--replace", ds, "--key", steward + ".key")

    p = verify(quai, tmp_path, ds, "--site-keys", steward + ".pub", "--require-signed")
    assert p.returncode == 0, p.stderr
    assert b"signature: signed: signed by key " in p.stdout
    # Signed, but by a key the site does not trust.
    p = verify(quai, tmp_path, ds)
    assert p.returncode == 0 and b"signature: untrusted" in p.stdout, p.stdout
    p = verify(quai, tmp_path, ds, "--require-signed")
    assert p.returncode == EXIT_BAD_DATA and b"untrusted" in p.stderr
    # The site's keys from the host configuration.
    conf = str(tmp_path / "with-keys.conf")
    write(conf, f"zone = fr-1\nsovereign_paths = {tmp_path}\n"
                f"site_keys = {steward}.pub\n".encode())
    p = quai.run("verify", "--require-signed", ds, env={"QUAI_CONF": conf})
    assert p.returncode == 0 and b"signature: signed" in p.stdout, p.stderr


def test_relabelled_dataset_is_refused(quai, tmp_path, steward):
    """The attack of issue 23: a sensitive dataset's manifest rewritten as
    public, its checksum recomputed (here: packed again as public, the same
    shards, a valid manifest), beside the steward's signature."""
    sens = packed(quai, tmp_path, "s", "sensitive", 2)
    quai.ok("sign", sens, "--key", steward + ".key")
    pub = packed(quai, tmp_path, "p", "public", 2)
    shutil.copy(os.path.join(sens, "manifest.sig"), os.path.join(pub, "manifest.sig"))
    p = verify(quai, tmp_path, pub, "--site-keys", steward + ".pub")
    assert p.returncode == EXIT_BAD_DATA, p.stdout
    assert (b"signature: bad: relabelled: signed (key " in p.stderr
            and b"as dataset ds, sensitive, zone fr-1; the manifest says dataset ds, public"
            in p.stderr), p.stderr


def test_edited_signature_or_manifest_is_refused(quai, tmp_path, steward):
    ds = packed(quai, tmp_path, "a", "internal", 3)
    quai.ok("sign", ds, "--key", steward + ".key")
    sig = os.path.join(ds, "manifest.sig")
    text = read(sig)
    write(sig, text.replace(b"classification internal", b"classification public"))
    p = verify(quai, tmp_path, ds, "--site-keys", steward + ".pub")
    assert p.returncode == EXIT_BAD_DATA
    assert b"the signature does not verify" in p.stderr, p.stderr
    write(sig, text[:-10])
    p = verify(quai, tmp_path, ds, "--site-keys", steward + ".pub")
    assert p.returncode == EXIT_BAD_DATA and b"manifest.sig: line " in p.stderr, p.stderr


def test_copied_manifest_over_other_shards_is_refused(quai, tmp_path, steward):
    """A signed public dataset's manifest, indexes and signature copied
    beside another dataset's shards: the shards are not the ones signed."""
    pub = packed(quai, tmp_path, "p", "public", 4)
    quai.ok("sign", pub, "--key", steward + ".key")
    other = packed(quai, tmp_path, "o", "sensitive", 5)
    shards = sorted(f for f in os.listdir(pub) if f.endswith(".zst"))
    assert shards == sorted(f for f in os.listdir(other) if f.endswith(".zst"))
    for f in os.listdir(pub):
        if not f.endswith(".zst"):
            shutil.copy(os.path.join(pub, f), os.path.join(other, f))
    p = verify(quai, tmp_path, other, "--site-keys", steward + ".pub")
    assert p.returncode == EXIT_BAD_DATA
    assert b"signature: bad: the dataset is not the one signed (key " in p.stderr, p.stderr
    assert b"shard-00000.zst" in p.stderr, p.stderr


def test_sign_usage(quai, tmp_path, steward):
    ds = packed(quai, tmp_path, "a", "internal", 6)
    assert quai.run("sign", ds).returncode == 2
    assert quai.run("sign", "--key", steward + ".key").returncode == 2
    p = quai.run("sign", ds, "--key", steward + ".pub")
    assert p.returncode == 3 and b"others can read" in p.stderr  # 0644
    p = quai.run("sign", str(tmp_path / "nope"), "--key", steward + ".key")
    assert p.returncode != 0 and b"nope" in p.stderr


# ---- quaid -------------------------------------------------------------------

def quaid_with_keys(tmp_path, steward, unsigned=None):
    from test_xfer import Quaid
    q = Quaid(tmp_path / "server")
    with open(q.conf, "a") as f:
        f.write(f"site_keys = {steward}.pub\nzone = fr-1\n")
        if unsigned:
            f.write(f"unsigned = {unsigned}\n")
    return q


def ls(quai, q):
    import json
    p = quai.ok("ls", "--json", q.uri())
    return {d["name"]: (d["classification"], d["zone"]) for d in json.loads(p.stdout)}


def test_quaid_serves_only_what_a_site_key_signed(quai, tmp_path, steward):
    q = quaid_with_keys(tmp_path, steward)
    good = packed(quai, tmp_path, "server/roots", "internal", 7, name="good")
    quai.ok("sign", good, "--key", steward + ".key")
    packed(quai, tmp_path, "server/roots", "internal", 8, name="plain")
    # Relabelled: signed as sensitive, its manifest now public.
    sens = packed(quai, tmp_path, "elsewhere", "sensitive", 9, name="relab")
    quai.ok("sign", sens, "--key", steward + ".key")
    relab = packed(quai, tmp_path, "server/roots", "public", 9, name="relab")
    shutil.copy(os.path.join(sens, "manifest.sig"), os.path.join(relab, "manifest.sig"))
    q.start()
    try:
        assert ls(quai, q) == {"good": ("internal", "fr-1")}
        quai.ok("pull", "-q", q.uri("good"), str(tmp_path / "got"))
        p = quai.run("pull", "-q", q.uri("plain"), str(tmp_path / "got2"))
        assert p.returncode == 5, p.stderr
        assert b"dataset plain is refused: its signature is unsigned" in p.stderr, p.stderr
        p = quai.run("pull", "-q", q.uri("relab"), str(tmp_path / "got3"))
        assert p.returncode == 5, p.stderr
        assert b"its signature is bad: relabelled: signed (key " in p.stderr, p.stderr
        p = quai.run("info", q.uri("relab"))
        assert p.returncode == 5 and b"relabelled" in p.stderr, p.stderr
        assert not os.path.exists(tmp_path / "got2") and not os.path.exists(tmp_path / "got3")
    finally:
        q.stop()
    q.check_clean()


def test_quaid_takes_unsigned_datasets_as_sensitive_of_its_zone(quai, tmp_path, steward):
    q = quaid_with_keys(tmp_path, steward, unsigned="sensitive")
    packed(quai, tmp_path, "server/roots", "public", 10, name="plain")
    q.start()
    try:
        assert ls(quai, q) == {"plain": ("sensitive", "fr-1")}
    finally:
        q.stop()
    q.check_clean()


def test_pack_signs_when_given_a_key(quai, tmp_path, steward):
    src = str(tmp_path / "in.txt")
    write(src, text_lines(11, 500))
    ds = str(tmp_path / "ds")
    p = quai.ok("pack", "--records", "lines", "--sign-key", steward + ".key", src, ds)
    assert b"signed as internal, zone none, by key " in p.stdout
    p = quai.ok("verify", "--site-keys", steward + ".pub", "--require-signed", ds)
    assert b"signature: signed" in p.stdout
    # A key that cannot sign stops the pack before it starts.
    os.chmod(steward + ".key", 0o640)
    p = quai.run("pack", "--records", "lines", "--sign-key", steward + ".key", src,
                 str(tmp_path / "ds2"))
    assert p.returncode == 3 and b"others can read" in p.stderr
    assert not os.path.exists(tmp_path / "ds2")


def test_quaid_config_names_a_bad_site_key(quai, tmp_path, steward):
    import subprocess
    from test_xfer import QUAID_BIN, Quaid
    q = Quaid(tmp_path / "server")
    base = read(q.conf)
    env = dict(os.environ, LC_ALL="C", QUAI_CONF=os.path.join(q.base, "none.conf"))
    for extra, message in ((f"site_keys = {steward}.pub:{tmp_path}/missing.pub\n",
                            b"site_keys: " + str(tmp_path).encode()
                            + b"/missing.pub: No such file"),
                           ("unsigned = maybe\n",
                            b"unsigned: 'maybe': expected refuse or sensitive")):
        write(q.conf, base + extra.encode())
        p = subprocess.run([QUAID_BIN, "--config", q.conf, "--check-config"], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        assert p.returncode != 0 and message in p.stderr, p.stderr
