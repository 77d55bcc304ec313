# SPDX-License-Identifier: Apache-2.0
"""`pip install ./python` offline, and the installed package finding libquai
where `meson install` put it, without $QUAI_LIB (issue 19, finding 6).

The library is installed with `meson install --destdir` from the build tree
into a temporary directory, and its quai.pc given that prefix, as a
`meson setup --prefix` there would write it; the package is installed with
pip into a fresh venv (with the system's site-packages, for numpy) with
--no-index, so nothing can be fetched."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import FIXED_RECORDS, REPO


def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, **kw)
    assert p.returncode == 0, "%s: %s" % (" ".join(map(str, cmd)), p.stdout.decode()[-3000:])
    return p.stdout.decode()


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("QUAI_LIB", "PYTHONPATH", "PKG_CONFIG_PATH", "PIP_INDEX_URL")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """libquai installed by meson under a temporary prefix; its pkgconfig dir."""
    lib = os.environ.get("QUAI_LIB") or os.path.join(REPO, "build", "release", "libquai.so")
    build = os.path.dirname(os.path.realpath(lib))
    if not os.path.exists(os.path.join(build, "meson-private", "quai.pc")):
        pytest.skip("no meson build directory beside %s" % lib)
    if shutil.which("meson") is None or shutil.which("pkg-config") is None:
        pytest.skip("meson or pkg-config is not installed")
    dest = tmp_path_factory.mktemp("destdir")
    run(["meson", "install", "-C", build, "--no-rebuild", "--quiet", "--destdir", str(dest)])
    pcs = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs if f == "quai.pc"]
    assert len(pcs) == 1, pcs
    with open(pcs[0]) as f:
        pc = f.read()
    old = re.search(r"^prefix=(.*)$", pc, re.M).group(1)
    with open(pcs[0], "w") as f:
        f.write(pc.replace("prefix=" + old, "prefix=" + str(dest) + old, 1))
    return os.path.dirname(pcs[0])


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    d = tmp_path_factory.mktemp("venv") / "env"
    try:
        run([sys.executable, "-m", "venv", "--system-site-packages", str(d)])
    except AssertionError as e:
        pytest.skip("python3 -m venv does not work here (apt-get install python3-venv): %s" % e)
    return d


def test_pip_install_offline_finds_the_installed_library(prefix, venv, tmp_path, fixed_ds):
    py = str(venv / "bin" / "python")
    env = clean_env(PKG_CONFIG_PATH=prefix, PIP_NO_INDEX="1")
    out = run([py, "-m", "pip", "install", "--no-index", os.path.join(REPO, "python")], env=env,
              cwd=str(tmp_path))
    assert "Successfully installed quai" in out
    # at run time: no $QUAI_LIB, no pkg-config path, another directory
    code = "import quai, sys; print(quai.lib_path); print(quai.version()); print(quai.__file__)"
    lines = run([py, "-c", code], env=clean_env(), cwd=str(tmp_path)).split()
    lib_dir = os.path.dirname(os.path.dirname(prefix))  # .../lib/<triplet>
    assert lines[0].startswith(lib_dir), lines
    assert lines[2].startswith(str(venv)) and "site-packages" in lines[2]
    # and it streams
    code = "import quai, sys; print(sum(b.count for b in quai.Stream(sys.argv[1], keep_tail=True)))"
    assert run([py, "-c", code, fixed_ds], env=clean_env(), cwd=str(tmp_path)).split() == [
        str(FIXED_RECORDS)]


def test_pip_wheel_offline(prefix, venv, tmp_path):
    py = str(venv / "bin" / "python")
    out = run([py, "-m", "pip", "wheel", "--no-index", "--no-deps", "-w", str(tmp_path),
               os.path.join(REPO, "python")], env=clean_env(PKG_CONFIG_PATH=prefix),
              cwd=str(tmp_path))
    wheels = [f for f in os.listdir(tmp_path) if f.endswith(".whl")]
    assert wheels == ["quai-0.1.0-py3-none-any.whl"], out
    import zipfile
    with zipfile.ZipFile(str(tmp_path / wheels[0])) as z:
        names = z.namelist()
        assert "quai/torch.py" in names and "quai-0.1.0.dist-info/RECORD" in names
        installed = z.read("quai/_installed.py").decode()
    assert "libquai.so" in installed and "pkg-config" in installed


def test_without_a_library_the_error_lists_the_ways(venv, tmp_path):
    """Installed with no libquai anywhere it looks: the import error says
    what it tried and how to fix it."""
    py = str(venv / "bin" / "python")
    target = tmp_path / "site"
    run([py, "-m", "pip", "install", "--no-index", "--no-deps", "--target", str(target),
         os.path.join(REPO, "python")], env=clean_env(PKG_CONFIG_PATH=str(tmp_path)),
        cwd=str(tmp_path))
    p = subprocess.run([py, "-c", "import quai"], env=clean_env(PYTHONPATH=str(target),
                                                                  PKG_CONFIG_PATH=str(tmp_path)),
                       cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    err = p.stderr.decode()
    if p.returncode == 0:
        pytest.skip("a libquai is installed system-wide here (ldconfig finds it)")
    assert "cannot load libquai" in err and "pkg-config" in err and "QUAI_LIB" in err, err


def test_sdist_builds_a_wheel_offline(venv, tmp_path):
    """The backend's sdist carries the backend: a wheel builds from it with
    nothing fetched."""
    py = str(venv / "bin" / "python")
    code = ("import sys; sys.path.insert(0, sys.argv[1] + '/_build'); import quai_build; "
            "print(quai_build.build_sdist(sys.argv[2]))")
    name = run([py, "-c", code, os.path.join(REPO, "python"), str(tmp_path)],
               env=clean_env()).split()[-1]
    assert name == "quai-0.1.0.tar.gz"
    out = run([py, "-m", "pip", "wheel", "--no-index", "--no-deps", "-w", str(tmp_path / "w"),
               str(tmp_path / name)], env=clean_env(), cwd=str(tmp_path))
    assert os.listdir(str(tmp_path / "w")) == ["quai-0.1.0-py3-none-any.whl"], out
