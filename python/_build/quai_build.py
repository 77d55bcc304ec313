# SPDX-License-Identifier: Apache-2.0
"""The PEP 517 build backend of the quai Python package, in the tree.

`pip install ./python` and `pip wheel ./python` use it (pyproject.toml's
build-system: backend-path "_build", no build requirements), so they work
offline: pip's build isolation has nothing to fetch. It writes a pure-Python
wheel of python/quai by hand (the wheel format is a zip with a .dist-info
directory: METADATA, WHEEL, RECORD), plus quai/_installed.py, which records
where libquai was installed when the wheel was built:

  1. $QUAI_LIB, when set at build time;
  2. else pkg-config's libdir of `quai` (the quai.pc that `meson install`
     writes), when it holds libquai.so.0.

The package loads that library when $QUAI_LIB is not set at run time (see
quai/_lib.py). Nothing else is compiled: the binding is ctypes.
"""
import base64
import hashlib
import io
import os
import subprocess
import tarfile
import time
import zipfile

NAME = "quai"
VERSION = "0.1.0"
TAG = "py3-none-any"
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # python/
PKG = os.path.join(HERE, "quai")

METADATA = """Metadata-Version: 2.1
Name: quai
Version: {version}
Summary: Python and PyTorch binding of libquai: training datasets staged into pinned memory
License: Apache-2.0
Requires-Python: >=3.9
Requires-Dist: numpy
Provides-Extra: torch
Requires-Dist: torch; extra == "torch"
Description-Content-Type: text/markdown

{readme}"""

WHEEL = """Wheel-Version: 1.0
Generator: quai_build {version}
Root-Is-Purelib: true
Tag: {tag}
"""


def _dist_info():
    return "%s-%s.dist-info" % (NAME, VERSION)


def _readme():
    try:
        with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def find_library():
    """(path, how) of the installed libquai to record, or (None, why not)."""
    env = os.environ.get("QUAI_LIB")
    if env:
        return os.path.abspath(env), "$QUAI_LIB"
    try:
        p = subprocess.run(["pkg-config", "--variable=libdir", "quai"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return None, "pkg-config could not run (%s)" % e
    libdir = p.stdout.decode().strip()
    if p.returncode != 0 or not libdir:
        return None, ("pkg-config knows no quai (%s): install libquai first (meson install), "
                      "or set PKG_CONFIG_PATH or QUAI_LIB" % p.stderr.decode().strip())
    for name in ("libquai.so.0", "libquai.so"):
        path = os.path.join(libdir, name)
        if os.path.exists(path):
            return path, "pkg-config (libdir %s)" % libdir
    return None, "pkg-config's libdir %s holds no libquai.so.0" % libdir


def _installed_py():
    path, how = find_library()
    return ("# Written by quai_build when this package was built: where libquai was\n"
            "# installed then (%s).\n"
            "LIB = %r\n" % (how, path)).encode()


def _files():
    """(archive name, bytes) of the package's files."""
    out = []
    for name in sorted(os.listdir(PKG)):
        if name.endswith(".py") and name != "_installed.py":
            with open(os.path.join(PKG, name), "rb") as f:
                out.append(("quai/" + name, f.read()))
    out.append(("quai/_installed.py", _installed_py()))
    return out


def _metadata():
    return METADATA.format(version=VERSION, readme=_readme()).encode()


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def _write_metadata_dir(directory):
    di = os.path.join(directory, _dist_info())
    os.makedirs(di, exist_ok=True)
    with open(os.path.join(di, "METADATA"), "wb") as f:
        f.write(_metadata())
    with open(os.path.join(di, "WHEEL"), "w") as f:
        f.write(WHEEL.format(version=VERSION, tag=TAG))
    return _dist_info()


# ---- PEP 517 hooks ---------------------------------------------------------------


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _write_metadata_dir(metadata_directory)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    di = _dist_info()
    entries = _files()
    entries.append((di + "/METADATA", _metadata()))
    entries.append((di + "/WHEEL", WHEEL.format(version=VERSION, tag=TAG).encode()))
    entries.append((di + "/top_level.txt", b"quai\n"))
    record = [_record_line(n, d) for n, d in entries] + [di + "/RECORD,,"]
    entries.append((di + "/RECORD", ("\n".join(record) + "\n").encode()))
    name = "%s-%s-%s.whl" % (NAME, VERSION, TAG)
    os.makedirs(wheel_directory, exist_ok=True)
    stamp = time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")))[:6]
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in entries:
            info = zipfile.ZipInfo(n, date_time=max(stamp, (1980, 1, 1, 0, 0, 0)))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, d)
    return name


def build_sdist(sdist_directory, config_settings=None):
    base = "%s-%s" % (NAME, VERSION)
    name = base + ".tar.gz"
    os.makedirs(sdist_directory, exist_ok=True)
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as t:
        def add(rel):
            t.add(os.path.join(HERE, rel), arcname=base + "/" + rel, recursive=False)
        for rel in ("pyproject.toml", "README.md", "_build", "_build/quai_build.py", "quai"):
            add(rel)
        for n in sorted(os.listdir(PKG)):
            if n.endswith(".py") and n != "_installed.py":
                add("quai/" + n)
        pkg_info = _metadata()
        info = tarfile.TarInfo(base + "/PKG-INFO")
        info.size = len(pkg_info)
        t.addfile(info, io.BytesIO(pkg_info))
    return name
