# SPDX-License-Identifier: Apache-2.0
"""burst_buffer.lua's submission check, slurm_bb_job_process, in Lua 5.1
itself (liblua5.1, the library Slurm's plugin links), without Slurm: the
directives it accepts and refuses, and a randomised run over hostile job
scripts (a fuzz harness for the Lua parser: libFuzzer cannot drive Lua).
Slurm calls this hook inside slurmctld, so a Lua error there, or a slow
parse, is a controller problem: every input must end in SUCCESS or ERROR
with a message."""
import ctypes
import ctypes.util
import os
import random
import re
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
LUA_FILE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "contrib", "slurm",
                        "burst_buffer.lua")
LUA_GLOBALSINDEX = -10002


def _liblua():
    for name in ("liblua5.1.so.0", ctypes.util.find_library("lua5.1")):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            pass
    return None


class Lua:
    """One Lua 5.1 state with burst_buffer.lua loaded and a `slurm` table
    like the plugin's (SUCCESS, ERROR, log functions)."""

    def __init__(self, lib, conf_path):
        self.lib = lib
        lib.luaL_newstate.restype = ctypes.c_void_p
        for f in ("luaL_openlibs", "lua_close"):
            getattr(lib, f).argtypes = [ctypes.c_void_p]
        lib.luaL_loadstring.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.luaL_loadfile.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.lua_pcall.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.lua_getfield.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
        lib.lua_pushstring.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.lua_tolstring.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        lib.lua_tolstring.restype = ctypes.c_char_p
        lib.lua_tointeger.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.lua_tointeger.restype = ctypes.c_ssize_t
        lib.lua_settop.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.lua_type.argtypes = [ctypes.c_void_p, ctypes.c_int]
        os.environ["QUAI_BB_CONF"] = conf_path
        self.L = lib.luaL_newstate()
        lib.luaL_openlibs(self.L)
        self._do(lib.luaL_loadstring(self.L, b"slurm = {SUCCESS = 0, ERROR = -1, "
                                     b"log_info = function() end, log_error = function() end, "
                                     b"log_debug = function() end}"))
        self._do(lib.luaL_loadfile(self.L, LUA_FILE.encode()))

    def _do(self, rc):
        if rc == 0:
            rc = self.lib.lua_pcall(self.L, 0, 0, 0)
        if rc != 0:
            msg = self.lib.lua_tolstring(self.L, -1, None)
            raise AssertionError("Lua: %s" % msg)

    def call(self, fn, *args):
        """fn(args...) -> (return code, message or None); a Lua error raises."""
        self.lib.lua_settop(self.L, 0)
        self.lib.lua_getfield(self.L, LUA_GLOBALSINDEX, fn.encode())
        for a in args:
            self.lib.lua_pushstring(self.L, a.encode() if isinstance(a, str) else a)
        rc = self.lib.lua_pcall(self.L, len(args), 2, 0)
        if rc != 0:
            raise AssertionError("Lua error in %s: %s" % (fn, self.lib.lua_tolstring(self.L, -1,
                                                                                    None)))
        code = self.lib.lua_tointeger(self.L, 1)
        msg = None
        if self.lib.lua_type(self.L, 2) == 4:  # LUA_TSTRING
            msg = self.lib.lua_tolstring(self.L, 2, None).decode(errors="replace")
        return code, msg

    def close(self):
        self.lib.lua_close(self.L)


@pytest.fixture(scope="module")
def lua(tmp_path_factory):
    lib = _liblua()
    if lib is None:
        pytest.skip("liblua5.1 is not installed (Debian: liblua5.1-0)")
    d = tmp_path_factory.mktemp("bblua")
    conf = d / "quai-bb.conf"
    conf.write_text("# test site\nstage_root = /bb\nstate_dir = /bb-state\n"
                    "hosts = io1,io2,198.18.0.5,[fd00::5]\n")
    state = Lua(lib, str(conf))
    state.dir = d
    yield state
    state.close()


def check(lua, lines, first="#!/bin/sh"):
    p = lua.dir / "job.sh"
    p.write_bytes(b"\n".join(x.encode() if isinstance(x, str) else x
                             for x in [first] + lines) + b"\nsrun true\n")
    return lua.call("slurm_bb_job_process", str(p))


@pytest.mark.parametrize("lines", [
    ["#BB_LUA quai pull quai://io1/tokens $QUAI_STAGE/tokens"],
    ["#SBATCH -N 2", "#BB_LUA quai pull --unpack quai://io1:7470/t.v2 ${QUAI_STAGE}/a/b_c"],
    ["#BB_LUA   quai pull quai://[fd00::5]/x $QUAI_STAGE/x",
     "#BB_LUA quai push $QUAI_STAGE/ckpt quai://io2/ckpt-$SLURM_JOB_ID"],
    ["#BB_LUA quai push $QUAI_STAGE/ckpt quai://198.18.0.5/ckpt-${SLURM_JOB_ID}"],
])
def test_accepted(lua, lines):
    assert check(lua, lines) == (0, None)


@pytest.mark.parametrize("lines,reason", [
    (["#BB_LUA quai pull quai://io1/t '$QUAI_STAGE/t'"], "outside the job's staging area"),
    (["#BB_LUA quai pull quai://io1/t $QUAI_STAGE/a;rm"], "plain name"),
    (["#BB_LUA quai pull quai://io1/$(id) $QUAI_STAGE/t"], "dataset name"),
    (["#BB_LUA quai pull quai://[fd00::5;x]/t $QUAI_STAGE/t"], "not an IPv6 address"),
    (["#BB_LUA quai pull quai://io`id`/t $QUAI_STAGE/t"], "not a host name"),
    (["#BB_LUA quai pull quai://io3/t $QUAI_STAGE/t"], "not one of this site's quaid hosts"),
    (["#BB_LUA quai pull quai://io1/t $QUAI_STAGE/"], "outside the job's staging area"),
    (["#BB_LUA quai pull quai://io1/t $QUAI_STAGE//t"], "no empty part"),
    (["#BB_LUA quai pull quai://io1/t $QUAI_STAGE/./t"], "no '..'"),
    (["#BB_LUA quai push $QUAI_STAGE/c quai://io1/c-$SLURM_JOB_IDX"], "dataset name"),
    (["#BB_LUA quai pull quai://io1/" + "a" * 256 + " $QUAI_STAGE/t"], "at most 255 bytes"),
    (["#BB_LUA"], "expected 'quai pull"),
    (["#BB_LUA quai pull --unpack --unpack quai://io1/t $QUAI_STAGE/t"], "operand(s) given"),
])
def test_refused_with_the_reason(lua, lines, reason):
    code, msg = check(lua, lines)
    assert code == -1 and msg and reason in msg, msg
    assert msg.startswith("quai burst buffer: line 2: "), msg


def test_directives_after_the_first_command_are_not_read(lua):
    # Slurm reads only the leading comment block; so does the check (this
    # script has a directive only after a command: none at all).
    code, msg = check(lua, ["echo hi", "#BB_LUA quai pull quai://io1/t /etc/x"])
    assert code == -1 and "no 'quai pull' or 'quai push' directive" in msg, msg


def test_a_malformed_site_file_is_named(lua, tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("stage_root = /bb\nfrobnicate = 1\n")
    old = os.environ["QUAI_BB_CONF"]
    try:
        # conf_path is read when the file is loaded: load a second state.
        other = Lua(lua.lib, str(bad))
        p = tmp_path / "job.sh"
        p.write_text("#!/bin/sh\n#BB_LUA quai pull quai://io1/t $QUAI_STAGE/t\n")
        code, msg = other.call("slurm_bb_job_process", str(p))
        other.close()
    finally:
        os.environ["QUAI_BB_CONF"] = old
    assert code == -1 and "bad.conf:2: unknown key 'frobnicate'" in msg, msg


SAFE_TOKEN = re.compile(r"^[A-Za-z0-9._\-/:$\[\]{}%]+$")


def test_hostile_scripts_never_break_the_hook(lua):
    """Random job scripts made of directive fragments, shell metacharacters,
    control bytes, non-UTF-8 and long runs: every one ends in SUCCESS or
    ERROR with a message, and nothing accepted carries a character outside
    the safe set into the hooks' command lines."""
    rng = random.Random(20)
    parts = ["#BB_LUA", "quai", "pull", "push", "--unpack", "quai://", "io1", "io2", "[fd00::5]",
             ":7470", ":0", ":99999", "/", "tokens", "$QUAI_STAGE", "${QUAI_STAGE}", "$SLURM_JOB_ID",
             "..", ".", "'", '"', ";", "`", "$(", ")", "|", "&", "\\", "\t", " ", "%", "*", "\x00",
             "\x1b", "\xff", "é", "a" * 300, "$HOME", "~"]
    accepted = 0
    n = 3000
    for _ in range(n):
        lines = []
        for _ in range(rng.randint(0, 6)):
            if rng.random() < 0.5:
                lines.append("#BB_LUA quai %s %s %s" % (
                    rng.choice(["pull", "push", "pull --unpack"]),
                    rng.choice(["quai://io1/t", "$QUAI_STAGE/x"]) + "".join(
                        rng.choice(parts) for _ in range(rng.randint(0, 3))),
                    rng.choice(["quai://io2/u", "$QUAI_STAGE/y"]) + "".join(
                        rng.choice(parts) for _ in range(rng.randint(0, 3)))))
            else:
                lines.append("".join(rng.choice(parts) for _ in range(rng.randint(0, 12))))
        raw = [x.encode("utf-8", "surrogateescape") for x in lines]
        code, msg = check(lua, raw)
        assert code in (0, -1), code
        if code == -1:
            assert msg and msg.startswith("quai burst buffer: "), msg
        else:
            accepted += 1
            for x in lines:
                if not x.startswith("#"):
                    break  # the directives end with the leading comments
                if x.startswith("#BB_LUA"):
                    for tok in x.split()[1:]:
                        assert SAFE_TOKEN.match(tok), (tok, lines)
    print("hostile scripts: %d, accepted %d" % (n, accepted))
    assert accepted > 0


def test_time_of_the_check(lua):
    """Reported, not asserted: one typical script, checked 2000 times."""
    p = lua.dir / "typical.sh"
    p.write_text("#!/bin/sh\n#SBATCH -N 2\n#BB_LUA quai pull quai://io1/tokens $QUAI_STAGE/tokens\n"
                 "#BB_LUA quai push $QUAI_STAGE/c quai://io1/c-$SLURM_JOB_ID\nsrun true\n")
    assert lua.call("slurm_bb_job_process", str(p)) == (0, None)
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        lua.call("slurm_bb_job_process", str(p))
    print("slurm_bb_job_process in Lua 5.1, outside Slurm: %.0f us a call"
          % ((time.perf_counter() - start) / n * 1e6))
