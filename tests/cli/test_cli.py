# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of the `quai` program (docs/quai.md).

Run:  QUAI_BIN=build/tools/quai /usr/bin/python3 -m pytest tests/cli

Only the standard library is used, plus the `zstd` command to check that
shards are plain Zstandard (seekable format) that any zstd decodes.
"""
import errno
import json
import os
import pty
import random
import re
import signal
import subprocess
import threading
import time

import pytest

if not os.environ.get("QUAI_BIN"):
    pytest.skip("QUAI_BIN is not set: point it at the quai binary to test "
                "(e.g. QUAI_BIN=build/tools/quai)", allow_module_level=True)
if not os.access(os.environ["QUAI_BIN"], os.X_OK):
    pytest.skip(f"QUAI_BIN={os.environ['QUAI_BIN']!r} is not an executable file",
                allow_module_level=True)
os.environ["QUAI_BIN"] = os.path.abspath(os.environ["QUAI_BIN"])

EXIT_OK, EXIT_BAD_DATA, EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
VERBS = ["pack", "verify", "info", "cat", "unpack", "stage", "push", "pull", "ls", "stat"]
PARTIAL_SUFFIX = ".quai-partial"


# ---- helpers ---------------------------------------------------------------

def rng(seed):
    return random.Random(seed)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def text_lines(seed, count, width=60):
    """Lines of moderately compressible text, each ending in '\n'."""
    r = rng(seed)
    words = [bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9)))
             for _ in range(500)]
    lines = []
    for i in range(count):
        n = r.randint(0, width // 5)
        lines.append(b"%d " % i + b" ".join(r.choice(words) for _ in range(n)) + b"\n")
    return lines


def tree(root):
    """{relative path (bytes): contents} of every regular file under root."""
    root = os.fsencode(root)
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = read(full)
    return out


def shard_files(ds):
    return sorted(n for n in os.listdir(ds) if re.fullmatch(r"shard-\d{5}\.zst", n))


def index_files(ds):
    return sorted(n for n in os.listdir(ds) if re.fullmatch(r"shard-\d{5}\.idx", n))


def assert_nothing_at(dest):
    """No DEST and no hidden temporary beside it."""
    dest = str(dest)
    assert not os.path.lexists(dest), f"{dest} was left behind"
    parent = os.path.dirname(os.path.abspath(dest))
    left = [n for n in os.listdir(parent) if n.endswith(PARTIAL_SUFFIX)]
    assert not left, f"temporaries left behind: {left}"


def info_json(quai, ds, *opts):
    p = quai.ok("info", "--json", *opts, ds)
    return json.loads(p.stdout)


def stderr_text(p):
    return p.stderr.decode("utf-8", "replace")


def assert_usage_error(p, verb):
    assert p.returncode == EXIT_USAGE, stderr_text(p)
    err = stderr_text(p)
    assert err.startswith(f"quai {verb}: "), err
    assert f"Try 'quai {verb} --help'." in err, err
    assert p.stdout == b""


# ---- fixtures: small datasets ------------------------------------------------

@pytest.fixture
def files_src(tmp_path):
    """A directory tree: nested directories, an empty file, binary files."""
    src = tmp_path / "src"
    r = rng(1)
    write(str(src / "top.txt"), b"hello, quai\n")
    write(str(src / "empty.bin"), b"")
    write(str(src / "a" / "b" / "c" / "deep.bin"), r.randbytes(100_000))
    write(str(src / "a" / "sibling.txt"), b"".join(text_lines(2, 300)))
    write(str(src / "zeros" / "z.bin"), bytes(300_000))
    for i in range(40):
        write(str(src / "many" / f"f{i:03d}.txt"), b"record %d\n" % i * (i + 1))
    return src


@pytest.fixture
def lines_data():
    # Lines of text, ~1 MB: enough for several 64 KiB shards.
    return b"".join(text_lines(3, 16_000))


@pytest.fixture
def lines_ds(quai, tmp_path, lines_data):
    src = tmp_path / "corpus.txt"
    write(str(src), lines_data)
    ds = tmp_path / "lines.ds"
    quai.ok("pack", "--records", "lines", "--frame-size", "4K", "--shard-size", "64K",
            "-q", src, ds)
    return ds


# ---- help, version, stubs, usage -------------------------------------------

def test_main_help_lists_verbs_and_exit_codes(quai):
    p = quai.ok("--help")
    out = p.stdout.decode()
    for verb in VERBS:
        assert re.search(rf"^\s+{verb}\s", out, re.M), f"{verb} missing from --help"
    assert "not yet available" not in out
    for code in ("0", "1", "2", "3", "4", "5", "6", "130"):
        assert re.search(rf"^\s+{code}\s", out, re.M), f"exit code {code} not documented"


@pytest.mark.parametrize("verb", VERBS)
def test_verb_help(quai, verb):
    p = quai.ok(verb, "--help")
    out = p.stdout.decode()
    assert out.startswith(f"Usage: quai {verb} ")
    assert "Exit status" in out
    assert p.stderr == b""
    assert quai.ok("help", verb).stdout == p.stdout


def test_version(quai):
    p = quai.ok("--version")
    assert re.fullmatch(rb"quai \d+\.\d+\.\d+\n", p.stdout), p.stdout


def test_local_commands_do_not_load_libfabric(quai, tmp_path):
    """libfabric (and the provider libraries Debian links it with, whose
    start-up takes a fifth of a second) is loaded when a command first
    talks to quaid, never for local work."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"line %d\n" % i for i in range(1000)))
    ds = str(tmp_path / "ds")
    quai.ok("pack", "-q", "--records", "lines", str(src), ds)
    for args in (("--version",), ("info", ds), ("verify", "-q", ds),
                 ("stage", "-q", "--pinned", "16M", "--unlocked-ok", ds)):
        p = quai.run(*args, env={"LD_DEBUG": "libs"})
        assert p.returncode == 0, p.stderr
        assert b"libfabric" not in p.stderr, args
    # A remote command loads it (and then fails to reach anyone).
    p = quai.run("ls", "quai://127.0.0.1:1/",
                 env={"LD_DEBUG": "libs", "QUAI_REMOTE_TIMEOUT": "1"})
    assert p.returncode != 0
    assert b"libfabric.so" in p.stderr


def test_no_command_and_unknown_command(quai):
    p = quai.run()
    assert p.returncode == EXIT_USAGE and b"Try 'quai --help'." in p.stderr
    p = quai.run("frobnicate")
    assert p.returncode == EXIT_USAGE
    assert b"quai: unknown command 'frobnicate'" in p.stderr
    assert b"Try 'quai --help'." in p.stderr


@pytest.mark.parametrize("args", [
    ["--records", "bogus"],
    ["--records", "fixed"],
    ["--records", "fixed:0"],
    ["--records", "fixed:abc"],
    ["--frame-size", "12Q"],
    ["--frame-size", "1"],
    ["--frame-size", ""],
    ["--shard-size", "-5"],
    ["--shard-size", "1K"],
    ["--level", "abc"],
    ["--threads", "many"],
    ["--class", "secret"],
    ["--zone", "bad zone!"],
    ["--bogus"],
    ["--level"],
])
def test_pack_bad_options(quai, tmp_path, files_src, args):
    dest = tmp_path / "ds"
    p = quai.run("pack", *args, files_src, dest)
    assert_usage_error(p, "pack")
    assert_nothing_at(dest)


def test_pack_bad_option_names_value(quai, tmp_path, files_src):
    p = quai.run("pack", "--records", "bogus", files_src, tmp_path / "ds")
    assert "'bogus'" in stderr_text(p)
    p = quai.run("pack", "--frame-size", "12Q", files_src, tmp_path / "ds")
    assert "'12Q'" in stderr_text(p)


def test_missing_operands(quai, tmp_path, files_src):
    assert_usage_error(quai.run("pack"), "pack")
    assert_usage_error(quai.run("pack", files_src), "pack")
    assert_usage_error(quai.run("verify"), "verify")
    assert_usage_error(quai.run("info"), "info")
    assert_usage_error(quai.run("cat"), "cat")
    assert_usage_error(quai.run("unpack", tmp_path / "ds"), "unpack")
    assert_usage_error(quai.run("info", "a", "b"), "info")
    assert_usage_error(quai.run("verify", "--threads", "x", "a"), "verify")
    assert_nothing_at(tmp_path / "ds")


# ---- round trips -------------------------------------------------------------

def test_roundtrip_files(quai, tmp_path, files_src):
    ds, out = tmp_path / "ds", tmp_path / "out"
    p = quai.ok("pack", "--frame-size", "16K", "--shard-size", "64K", files_src, ds)
    expected = tree(files_src)
    assert re.search(rb"\b%d records\b" % len(expected), p.stdout), p.stdout
    assert p.stderr == b""
    assert os.path.isfile(ds / "manifest.json")
    assert shard_files(ds) and len(shard_files(ds)) == len(index_files(ds))
    info = info_json(quai, ds)
    assert info["kind"] == "files" and info["fixed_size"] is None
    assert info["records"] == len(expected)
    assert info["raw_bytes"] == sum(len(v) for v in expected.values())
    quai.ok("unpack", ds, out)
    got = tree(out)
    assert sorted(got) == sorted(expected)
    assert got == expected
    assert got[b"empty.bin"] == b""


def test_roundtrip_lines_from_files(quai, tmp_path):
    a = b"".join(text_lines(4, 2000)) + b"\n\n"           # empty lines are records too
    b = b"".join(text_lines(5, 1000)) + b"no newline at the end"
    write(str(tmp_path / "a.txt"), a)
    write(str(tmp_path / "b.txt"), b)
    ds, out = tmp_path / "ds", tmp_path / "out.txt"
    quai.ok("pack", "--records", "lines", "--frame-size", "8K", tmp_path / "a.txt",
            tmp_path / "b.txt", ds)
    info = info_json(quai, ds)
    assert info["kind"] == "lines"
    assert info["records"] == a.count(b"\n") + b.count(b"\n") + 1
    assert info["raw_bytes"] == len(a) + len(b)
    quai.ok("unpack", ds, out)
    assert read(out) == a + b
    # Record i is line i, '\n' included.
    lines = (a + b).splitlines(keepends=True)
    for i in (0, 1, 2000, 2001, len(lines) - 1):
        assert quai.ok("cat", "--range", f"{i}:{i + 1}", ds).stdout == lines[i]


def test_roundtrip_lines_from_stdin(quai, tmp_path, lines_data):
    ds, out = tmp_path / "ds", tmp_path / "out.txt"
    p = quai.ok("pack", "--records", "lines", "-", ds, input=lines_data)
    assert p.stderr == b""
    info = info_json(quai, ds)
    assert info["records"] == lines_data.count(b"\n")
    assert info["raw_bytes"] == len(lines_data)
    quai.ok("unpack", ds, out)
    assert read(out) == lines_data
    assert quai.ok("cat", ds).stdout == lines_data


def test_roundtrip_fixed(quai, tmp_path):
    size, count = 100, 1000
    data = rng(6).randbytes(size * count)
    write(str(tmp_path / "tokens.bin"), data)
    ds, out = tmp_path / "ds", tmp_path / "out.bin"
    quai.ok("pack", "--records", f"fixed:{size}", "--frame-size", "4K",
            tmp_path / "tokens.bin", ds)
    info = info_json(quai, ds)
    assert info["kind"] == "fixed" and info["fixed_size"] == size
    assert info["records"] == count and info["raw_bytes"] == len(data)
    assert info["frames"] > 1
    quai.ok("unpack", ds, out)
    assert read(out) == data


def test_fixed_size_accepts_size_suffix(quai, tmp_path):
    data = rng(7).randbytes(4096 * 3)
    write(str(tmp_path / "in.bin"), data)
    quai.ok("pack", "--records", "fixed:4K", tmp_path / "in.bin", tmp_path / "ds")
    info = info_json(quai, tmp_path / "ds")
    assert info["fixed_size"] == 4096 and info["records"] == 3


def test_non_utf8_file_names_roundtrip(quai, tmp_path):
    src = os.path.join(os.fsencode(str(tmp_path)), b"src")
    names = [b"caf\xe9.bin", b"dir-\xff\xfe/inner \x80.txt", b"plain.txt", "ünï.txt".encode()]
    for i, name in enumerate(names):
        path = os.path.join(src, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"contents of %d\n" % i)
    ds, out = tmp_path / "ds", tmp_path / "out"
    quai.ok("pack", src, ds)
    quai.ok("unpack", ds, out)
    assert tree(out) == tree(src)
    assert b"caf\xe9.bin" in os.listdir(os.path.join(os.fsencode(str(out))))
    # info --json stays valid JSON (and UTF-8) whatever the names are.
    json.loads(quai.ok("info", "--json", "--shards", ds).stdout.decode("utf-8"))


# ---- the format seen from outside ---------------------------------------------

def test_zstd_decodes_every_shard(quai, lines_ds, lines_data):
    shards = shard_files(lines_ds)
    assert len(shards) > 1, "expected several shards with --shard-size 64K"
    info = info_json(quai, lines_ds, "--shards")
    assert [s["file"] for s in info["shard_list"]] == shards
    everything = quai.ok("cat", lines_ds).stdout
    assert everything == lines_data
    joined = b""
    for s in info["shard_list"]:
        raw = subprocess.run(["zstd", "-d", "-c", "-q", os.path.join(lines_ds, s["file"])],
                             stdout=subprocess.PIPE, check=True).stdout
        first, n = s["first_record"], s["records"]
        assert raw == quai.ok("cat", "--range", f"{first}:{first + n}", lines_ds).stdout
        assert len(raw) == s["raw_bytes"]
        joined += raw
    assert joined == everything


def test_pack_is_deterministic_across_threads(quai, tmp_path, lines_data):
    write(str(tmp_path / "in.txt"), lines_data)
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    dss = []
    for threads in (1, 4):
        ds = tmp_path / f"ds{threads}"
        quai.ok("pack", "--records", "lines", "--frame-size", "4K", "--shard-size", "64K",
                "--threads", str(threads), "--name", "same", tmp_path / "in.txt", ds, env=env)
        dss.append(ds)
    a, b = dss
    assert shard_files(a) == shard_files(b) and len(shard_files(a)) > 1
    assert index_files(a) == index_files(b)
    for name in shard_files(a) + index_files(a):
        assert read(a / name) == read(b / name), f"{name} differs between --threads 1 and 4"
    # Same name and creation time: the manifests are identical too.
    assert read(a / "manifest.json") == read(b / "manifest.json")


# ---- cat ----------------------------------------------------------------------

@pytest.fixture
def fixed_ds(quai, tmp_path):
    size, count = 64, 2000
    data = rng(8).randbytes(size * count)
    write(str(tmp_path / "in.bin"), data)
    ds = tmp_path / "fixed.ds"
    quai.ok("pack", "--records", f"fixed:{size}", "--frame-size", "4K", "--shard-size",
            "64K", "-q", tmp_path / "in.bin", ds)
    return ds, data, size, count


@pytest.mark.parametrize("rng_arg,a,b", [
    ("0:1", 0, 1), ("3:7", 3, 7), ("63:65", 63, 65), ("1000:", 1000, None),
    (":10", 0, 10), (":", 0, None), ("5:5", 5, 5), ("1999:2000", 1999, 2000),
    ("2000:", 2000, None), ("0:2000", 0, 2000),
])
def test_cat_range(quai, fixed_ds, rng_arg, a, b):
    ds, data, size, count = fixed_ds
    b = count if b is None else b
    p = quai.ok("cat", "--range", rng_arg, ds)
    assert p.stdout == data[a * size:b * size]
    assert p.stderr == b""


def test_cat_whole(quai, fixed_ds):
    ds, data, _, _ = fixed_ds
    assert quai.ok("cat", ds).stdout == data


@pytest.mark.parametrize("bad", ["7:3", "x", "1-2", "a:b", "1:2:3", "-1:2", ""])
def test_cat_bad_range(quai, fixed_ds, bad):
    assert_usage_error(quai.run("cat", "--range", bad, fixed_ds[0]), "cat")


def test_cat_range_beyond_end(quai, fixed_ds):
    ds = fixed_ds[0]
    for r in ("0:2001", "2001:"):
        p = quai.run("cat", "--range", r, ds)
        assert p.returncode == EXIT_USAGE
        assert "2000 records" in stderr_text(p)
        assert p.stdout == b""


def test_cat_closed_pipe_is_quiet(quai, fixed_ds):
    ds = fixed_ds[0]
    p = quai.popen("cat", ds, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(p.stdout.read(100)) == 100
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == EXIT_OK
    assert err == b""


# ---- info ---------------------------------------------------------------------

def test_info_json(quai, tmp_path, files_src):
    ds = tmp_path / "ds"
    # A sensitive dataset is packed on a host of its zone, under a
    # sovereign path (docs/SECURITY.md).
    conf = tmp_path / "host.conf"
    write(str(conf), f"zone = eu-west.hpc_1\nsovereign_paths = {tmp_path}\n".encode())
    quai.ok("pack", "--class", "sensitive", "--zone", "eu-west.hpc_1", "--name", "my set",
            "--level", "5", "--frame-size", "8KiB", "--shard-size", "128K", "-q",
            files_src, ds, env={"QUAI_CONF": str(conf)})
    expected = tree(files_src)
    info = info_json(quai, ds)
    keys = ["format_version", "name", "kind", "fixed_size", "records", "raw_bytes",
            "compressed_bytes", "shards", "frames", "classification", "zone", "level",
            "frame_size", "shard_size", "created", "manifest_checksum"]
    assert list(info) == keys
    assert isinstance(info["format_version"], int) and info["format_version"] >= 1
    assert info["name"] == "my set"
    assert info["kind"] == "files" and info["fixed_size"] is None
    assert info["records"] == len(expected)
    assert info["raw_bytes"] == sum(map(len, expected.values()))
    shards = shard_files(ds)
    assert info["shards"] == len(shards)
    assert info["compressed_bytes"] == sum(os.path.getsize(ds / s) for s in shards)
    assert info["frames"] >= info["shards"]
    assert info["classification"] == "sensitive"
    assert info["zone"] == "eu-west.hpc_1"
    assert info["level"] == 5
    assert info["frame_size"] == 8192 and info["shard_size"] == 128 * 1024
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", info["created"]), info["created"]
    assert re.fullmatch(r"[0-9a-f]{16}", info["manifest_checksum"])

    full = info_json(quai, ds, "--shards")
    assert {k: v for k, v in full.items() if k != "shard_list"} == info
    lst = full["shard_list"]
    assert len(lst) == info["shards"]
    next_record = 0
    for i, s in enumerate(lst):
        assert s["shard"] == i
        assert s["file"] == shards[i] and s["index_file"] == index_files(ds)[i]
        assert s["first_record"] == next_record
        next_record += s["records"]
        assert s["compressed_bytes"] == os.path.getsize(ds / s["file"])
        assert s["index_bytes"] == os.path.getsize(ds / s["index_file"])
        assert re.fullmatch(r"[0-9a-f]{16}", s["checksum"])
        assert re.fullmatch(r"[0-9a-f]{16}", s["index_checksum"])
    assert next_record == info["records"]
    assert sum(s["raw_bytes"] for s in lst) == info["raw_bytes"]
    assert sum(s["frames"] for s in lst) == info["frames"]


def test_info_defaults(quai, tmp_path, fixed_ds):
    info = info_json(quai, fixed_ds[0])
    assert info["name"] == "fixed.ds"
    assert info["classification"] == "internal"
    assert info["zone"] == "none"       # $QUAI_CONF names a missing file
    assert info["level"] == 3


def test_default_zone_comes_from_host_conf(quai, tmp_path, files_src):
    conf = tmp_path / "quai.conf"
    write(str(conf), b"# host settings\nzone = lab-7\n")
    quai.ok("pack", "-q", files_src, tmp_path / "ds", env={"QUAI_CONF": str(conf)})
    assert info_json(quai, tmp_path / "ds")["zone"] == "lab-7"


def test_malformed_host_conf_is_an_error(quai, tmp_path, files_src):
    conf = tmp_path / "quai.conf"
    write(str(conf), b"this line has no equals sign\n")
    p = quai.run("pack", files_src, tmp_path / "ds", env={"QUAI_CONF": str(conf)})
    assert p.returncode == EXIT_FAILURE
    assert str(conf) in stderr_text(p)
    assert_nothing_at(tmp_path / "ds")


def test_info_text(quai, fixed_ds):
    ds = fixed_ds[0]
    out = quai.ok("info", ds).stdout.decode()
    assert re.search(r"^name:\s+fixed\.ds$", out, re.M)
    assert re.search(r"^records:\s+2000$", out, re.M)
    assert re.search(r"^kind:\s+fixed, 64 bytes per record$", out, re.M)
    out = quai.ok("info", "--shards", ds).stdout.decode()
    for s in shard_files(ds):
        assert s in out


# ---- verify -------------------------------------------------------------------

def test_verify_good_dataset(quai, lines_ds):
    p = quai.ok("verify", lines_ds)
    assert b"OK" in p.stdout
    assert p.stderr == b""
    p = quai.ok("verify", "-q", "--threads", "2", lines_ds)
    assert p.stdout == b"" and p.stderr == b""


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def test_verify_finds_flipped_byte(quai, lines_ds):
    shards = shard_files(lines_ds)
    victim = shards[1]
    flip_byte(lines_ds / victim, 50)        # inside the first frame's data
    p = quai.run("verify", lines_ds)
    assert p.returncode == EXIT_BAD_DATA, stderr_text(p)
    err = stderr_text(p).splitlines()
    assert err, "no problem reported"
    assert all(line.startswith("quai verify: ") for line in err)
    assert any(victim in line for line in err[:-1]), err
    assert not any(s in line for line in err for s in shards if s != victim), err
    last = err[-1]
    assert victim in last and "shard 1" in last and "bad frame" in last, last
    assert p.stdout == b""


def test_cat_and_unpack_of_corrupt_data(quai, tmp_path, lines_ds):
    victim = shard_files(lines_ds)[1]
    flip_byte(lines_ds / victim, 50)
    p = quai.run("cat", lines_ds)
    assert p.returncode == EXIT_BAD_DATA
    assert victim in stderr_text(p)
    out = tmp_path / "out.txt"
    p = quai.run("unpack", lines_ds, out)
    assert p.returncode == EXIT_BAD_DATA, stderr_text(p)
    assert stderr_text(p).startswith("quai unpack: ")
    assert_nothing_at(out)
    # Records before the damaged shard are still readable.
    info = info_json(quai, lines_ds, "--shards")
    n0 = info["shard_list"][0]["records"]
    quai.ok("cat", "--range", f"0:{n0}", lines_ds)


# ---- bad inputs: clear message, right status, nothing left at DEST ----------

def assert_pack_fails(quai, args, dest, status, *mentions, **kw):
    p = quai.run("pack", *args, dest, **kw)
    assert p.returncode == status, stderr_text(p)
    err = stderr_text(p)
    assert err.startswith("quai pack: "), err
    assert err.count("\n") == 1, f"expected one line, got {err!r}"
    for m in mentions:
        assert str(m) in err, f"{m!r} not named in {err!r}"
    assert p.stdout == b""
    return err


def test_pack_missing_source(quai, tmp_path, files_src):
    missing = tmp_path / "no" / "such-dir"
    dest = tmp_path / "ds"
    assert_pack_fails(quai, [files_src, missing], dest, EXIT_FAILURE, missing,
                      os.strerror(errno.ENOENT))
    assert_nothing_at(dest)


def test_pack_empty_source_dir(quai, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    dest = tmp_path / "ds"
    assert_pack_fails(quai, [empty], dest, EXIT_FAILURE, empty)
    assert_nothing_at(dest)


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_pack_dest_exists(quai, tmp_path, files_src, kind):
    dest = tmp_path / "ds"
    if kind == "dir":
        dest.mkdir()
        write(str(dest / "keep.txt"), b"keep me")
    else:
        write(str(dest), b"keep me")
    assert_pack_fails(quai, [files_src], dest, EXIT_FAILURE, dest)
    if kind == "dir":
        assert os.listdir(dest) == ["keep.txt"] and read(dest / "keep.txt") == b"keep me"
    else:
        assert read(dest) == b"keep me"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(PARTIAL_SUFFIX)]


def test_pack_fixed_not_a_multiple(quai, tmp_path):
    src = tmp_path / "odd.bin"
    write(str(src), bytes(1000))
    dest = tmp_path / "ds"
    assert_pack_fails(quai, ["--records", "fixed:512", src], dest, EXIT_FAILURE, src)
    assert_nothing_at(dest)


def test_pack_empty_stdin(quai, tmp_path):
    dest = tmp_path / "ds"
    assert_pack_fails(quai, ["--records", "lines", "-"], dest, EXIT_FAILURE, input=b"")
    assert_nothing_at(dest)


def test_unpack_dest_exists(quai, tmp_path, fixed_ds):
    dest = tmp_path / "out.bin"
    write(str(dest), b"keep me")
    p = quai.run("unpack", fixed_ds[0], dest)
    assert p.returncode == EXIT_FAILURE
    assert stderr_text(p).startswith("quai unpack: ") and str(dest) in stderr_text(p)
    assert read(dest) == b"keep me"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(PARTIAL_SUFFIX)]


@pytest.mark.parametrize("verb", ["verify", "info", "cat"])
def test_missing_dataset(quai, tmp_path, verb):
    missing = tmp_path / "nope"
    p = quai.run(verb, missing)
    assert p.returncode == EXIT_FAILURE
    err = stderr_text(p)
    assert err.startswith(f"quai {verb}: ") and str(missing) in err, err
    assert p.stdout == b""


def test_unpack_missing_dataset(quai, tmp_path):
    missing, dest = tmp_path / "nope", tmp_path / "out"
    p = quai.run("unpack", missing, dest)
    assert p.returncode == EXIT_FAILURE
    assert stderr_text(p).startswith("quai unpack: ") and str(missing) in stderr_text(p)
    assert_nothing_at(dest)


# ---- progress and signals --------------------------------------------------------

def test_no_progress_when_stderr_is_not_a_tty(quai, tmp_path, lines_data):
    write(str(tmp_path / "in.txt"), lines_data)
    p = quai.ok("pack", "--records", "lines", "--frame-size", "4K", tmp_path / "in.txt",
                tmp_path / "ds")
    assert p.stderr == b""
    assert p.stdout.count(b"\n") == 1 and b"\r" not in p.stdout
    p = quai.ok("verify", tmp_path / "ds")
    assert p.stderr == b""
    p = quai.ok("pack", "-q", "--records", "lines", tmp_path / "in.txt", tmp_path / "ds2")
    assert p.stdout == b"" and p.stderr == b""


def run_with_tty_stderr(quai, *args):
    """Runs quai with stderr on a pseudo-terminal; returns (rc, stdout, tty bytes)."""
    master, slave = pty.openpty()
    try:
        p = quai.popen(*args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)
    out = p.stdout.read()
    rc = p.wait(timeout=120)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:             # EIO: the other side is closed and drained
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    return rc, out, tty


def test_progress_on_a_tty(quai, tmp_path, lines_data):
    write(str(tmp_path / "in.txt"), lines_data)
    rc, out, tty = run_with_tty_stderr(quai, "pack", "--records", "lines",
                                       tmp_path / "in.txt", tmp_path / "ds")
    assert rc == 0, tty
    assert b"\r" in tty and b"MB/s" in tty and b"records" in tty, tty
    assert tty.endswith(b"\r\x1b[K"), tty        # the line is erased at the end
    assert b"\n" not in tty, tty            # one self-overwriting line, never scrolled
    assert out.count(b"\n") == 1
    rc, out, tty = run_with_tty_stderr(quai, "verify", tmp_path / "ds")
    # The header does not promise verify's progress a call: if drawn, erased.
    assert rc == 0 and (tty == b"" or tty.endswith(b"\r\x1b[K")), tty
    assert b"\n" not in tty
    rc, out, tty = run_with_tty_stderr(quai, "pack", "-q", "--records", "lines",
                                       tmp_path / "in.txt", tmp_path / "ds2")
    assert rc == 0 and tty == b"" and out == b""


def test_sigint_cancels_pack_and_leaves_nothing(quai, tmp_path):
    dest = tmp_path / "ds"
    p = quai.popen("pack", "--records", "lines", "-", dest, stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    block = b"".join(text_lines(9, 2000))
    stop = threading.Event()

    def feed():
        try:
            while not stop.is_set():
                p.stdin.write(block)
        except (BrokenPipeError, ValueError, OSError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        time.sleep(1.0)
        assert p.poll() is None, "pack ended before it was interrupted"
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=30)
    finally:
        stop.set()
        if p.poll() is None:
            p.kill()
            p.wait()
        writer.join(timeout=10)
        try:
            p.stdin.close()
        except OSError:
            pass
    err = p.stderr.read().decode()
    assert rc == EXIT_INTERRUPTED, err
    assert err.startswith("quai pack: ") and "interrupted" in err
    assert_nothing_at(dest)


# ---- stage -------------------------------------------------------------------

def _tokens(quai, tmp_path, n=3000, size=512):
    data = bytes((i * 7 + i // 13) % 251 for i in range(n * size))
    src = tmp_path / "tok.bin"
    src.write_bytes(data)
    ds = tmp_path / "tok"
    quai.ok("pack", "--records", f"fixed:{size}", "--frame-size", "16K", src, ds)
    return ds, data


def test_stage_verifies_order_and_bytes(quai, tmp_path):
    ds, _ = _tokens(quai, tmp_path)
    p = quai.ok("stage", "--verify-order", "--batch", "32", "--keep-tail", "--pinned", "64M",
                "--unlocked-ok", ds)
    out = p.stdout.decode()
    assert "records      3000 in 94 batches (order and bytes verified)" in out, out
    assert "first batch" in out and "MB/s" in out


def test_stage_json_and_ranks(quai, tmp_path):
    ds, _ = _tokens(quai, tmp_path)
    total = 0
    for rank in range(4):
        p = quai.ok("stage", "--json", "--world", "4", "--rank", str(rank), "--batch", "10",
                    "--keep-tail", "--pinned", "64M", "--unlocked-ok", ds)
        j = json.loads(p.stdout)
        assert j["records"] == j["expected_records"]
        total += j["records"]
    assert total == 3000


@pytest.mark.parametrize("tail,extra", [("drop", []), ("keep", ["--keep-tail"]),
                                        ("pad", ["--pad-tail"])])
def test_stage_any_world_and_the_remainder(quai, tmp_path, tail, extra):
    """World 7 over 3000 records (3000 = 7 x 428 + 4): drop leaves 4 out,
    keep gives ranks 0-3 one more, pad gives every rank 429 with 3
    repeats; --verify-order checks each rank's order and bytes."""
    ds, _ = _tokens(quai, tmp_path)
    counts = []
    for r in range(7):
        p = quai.ok("stage", "--json", "--verify-order", "--world", "7", "--rank", str(r),
                    "--batch", "50", "--pinned", "64M", "--unlocked-ok", *extra, ds)
        j = json.loads(p.stdout)
        assert j["records"] == j["expected_records"]
        counts.append(j["records"])
    want = {"drop": [428] * 7, "keep": [429] * 4 + [428] * 3, "pad": [429] * 7}[tail]
    assert counts == want


def test_stage_bad_world_and_remote(quai, tmp_path):
    ds, _ = _tokens(quai, tmp_path)
    p = quai.run("stage", "--world", "3", "--partitions", "8", "--unlocked-ok", ds)
    assert p.returncode == EXIT_USAGE, p.stderr
    assert b"partitions are no longer an option" in p.stderr, p.stderr
    p = quai.run("stage", "--world", "3", "--rank", "2", "--unlocked-ok", ds)
    assert p.returncode == 0, p.stderr
    p = quai.run("stage", "quai://host/tok")
    assert p.returncode != 0 and b"quaid" in p.stderr, p.stderr
    p = quai.run("stage", "--batch", "1", "--batch-bytes", "1K", ds)
    assert p.returncode == EXIT_USAGE


def test_stage_corrupt_frame_exits_1_naming_it(quai, tmp_path):
    ds, _ = _tokens(quai, tmp_path)
    shard = ds / "shard-00000.zst"
    b = bytearray(shard.read_bytes())
    b[len(b) // 2] ^= 0x40
    shard.write_bytes(bytes(b))
    p = quai.run("stage", "--pinned", "64M", "--unlocked-ok", ds)
    assert p.returncode == EXIT_BAD_DATA, p.stderr
    assert b"shard-00000.zst frame" in p.stderr, p.stderr
