#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root):
# installs what it needs, builds quai (optimised, and with
# AddressSanitizer + UndefinedBehaviorSanitizer), runs every Criterion
# suite, the fuzz corpora and the CLI's end-to-end tests in both, the Python
# binding's tests (with PyTorch) and the multi-node tests on a virtual
# cluster (Slurm, munged, quaid) against the optimised build, runs each
# libFuzzer harness for a bounded time, runs the engine's stress program
# under ThreadSanitizer, checks the room graph (scripts/rooms.py) and
# formatting, and ends with one line: "N passed, N failed, N skipped".
#
# Environment: QUAI_FUZZ_SECONDS (default 20) per fuzz harness; 0 skips.
set -uo pipefail
cd "$(dirname "$0")"
top=$PWD
bash scripts/deps.sh test || exit 1

out=$top/build/test-results
rm -rf "$out"
mkdir -p "$out"
: >"$out/plain.txt"
status=0
note() { printf '%s %s\n' "$1" "$2" >>"$out/plain.txt"; }

setup() { # dir, options...
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Dwerror=true -Dtests=enabled "$@" >"$out/setup-$(basename "$dir").log" 2>&1 ||
      { cat "$out/setup-$(basename "$dir").log"; return 1; }
  fi
  ninja -C "$dir" >"$out/ninja-$(basename "$dir").log" 2>&1 ||
    { tail -50 "$out/ninja-$(basename "$dir").log"; return 1; }
}

run_build() { # dir, name
  local dir=$1 name=$2
  rm -f "$dir"/tests/report-*.json "$dir/meson-logs/testlog.json"
  echo "== $name: meson test"
  meson test -C "$dir" --print-errorlogs --num-processes 2 >"$out/meson-$name.log" 2>&1 || status=1
  grep -E '^ *[0-9]+/[0-9]+ ' "$out/meson-$name.log" | sed 's/^/   /'
  grep -q 'Fail: *0' "$out/meson-$name.log" || tail -60 "$out/meson-$name.log"
  echo "== $name: CLI end-to-end (pytest)"
  QUAI_BIN=$dir/tools/quai /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    --junitxml="$out/pytest-$name.xml" tests/cli >"$out/pytest-$name.log" 2>&1 || status=1
  tail -3 "$out/pytest-$name.log" | sed 's/^/   /'
  echo "== $name: hostile clients, full disks, careless admins (pytest)"
  QUAI_BIN=$dir/tools/quai /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    --junitxml="$out/pytest-hostile-$name.xml" tests/hostile >"$out/pytest-hostile-$name.log" 2>&1 || status=1
  tail -3 "$out/pytest-hostile-$name.log" | sed 's/^/   /'
}

sources=()
if setup build/release --buildtype=debugoptimized; then
  run_build build/release release
  sources=(meson=build/release junit="$out/pytest-release.xml" junit="$out/pytest-hostile-release.xml")
  echo "== release: Python binding and PyTorch layer (pytest)"
  PYTHONPATH=$top/python QUAI_LIB=$top/build/release/libquai.so QUAI_BIN=$top/build/release/tools/quai \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider --junitxml="$out/pytest-python.xml" \
    tests/python >"$out/pytest-python.log" 2>&1 || status=1
  tail -3 "$out/pytest-python.log" | sed 's/^/   /'
  sources+=(junit="$out/pytest-python.xml")
  # Multi-node: the virtual cluster (network namespaces) with a real Slurm,
  # munged and quaid; tests/cluster/README.md. About a minute.
  echo "== release: virtual cluster, Slurm burst buffer (pytest)"
  PYTHONPATH=$top/python QUAI_LIB=$top/build/release/libquai.so QUAI_BIN=$top/build/release/tools/quai \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider --junitxml="$out/pytest-cluster.xml" \
    tests/cluster >"$out/pytest-cluster.log" 2>&1 || status=1
  tail -3 "$out/pytest-cluster.log" | sed 's/^/   /'
  sources+=(junit="$out/pytest-cluster.xml")
else
  note build-release FAIL
  sources=()
fi

# Sanitizers: everything again, with ASan + UBSan (leaks included), and the
# engine's stress program under ThreadSanitizer.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
if setup build/asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false; then
  run_build build/asan asan
  sources+=(meson=build/asan junit="$out/pytest-asan.xml" junit="$out/pytest-hostile-asan.xml")
  # Python over the ASan libquai (libasan preloaded into Python; leak
  # checks off, the interpreter keeps memory at exit): batch lifetimes.
  echo "== asan: Python batch lifetimes (pytest)"
  PYTHONPATH=$top/python QUAI_LIB=$top/build/release/libquai.so QUAI_BIN=$top/build/release/tools/quai \
    QUAI_ASAN_LIB=$top/build/asan/libquai.so /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    --junitxml="$out/pytest-python-asan.xml" tests/python/test_lifetime.py \
    >"$out/pytest-python-asan.log" 2>&1 || status=1
  tail -3 "$out/pytest-python-asan.log" | sed 's/^/   /'
  sources+=(junit="$out/pytest-python-asan.xml")
else
  note build-asan FAIL
fi

# ThreadSanitizer: the engine's multi-threaded stress program (Criterion
# itself does not start under TSan).
echo "== tsan: engine stress"
if CC=clang setup build/tsan --buildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false; then
  if TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 meson test -C build/tsan --suite stress \
    --print-errorlogs >"$out/meson-tsan.log" 2>&1; then
    note tsan-stress-engine PASS
    echo "   stress-engine OK"
  else
    note tsan-stress-engine FAIL
    status=1
    tail -60 "$out/meson-tsan.log"
  fi
else
  note build-tsan FAIL
fi

# libFuzzer: each harness for a bounded time from its seed corpus.
fuzz_s=${QUAI_FUZZ_SECONDS:-20}
if [ "$fuzz_s" -gt 0 ]; then
  echo "== fuzz: ${fuzz_s}s per harness"
  if CC=clang setup build/fuzz --buildtype=debugoptimized -Dfuzz=true \
    -Db_sanitize=address,undefined -Db_lundef=false; then
    for f in manifest frame seektable shardindex json hostconf proto svcconf policy audit authpayload state; do
      work=$out/fuzz-$f
      mkdir -p "$work"
      cp tests/fuzz/corpus/$f/* "$work/" 2>/dev/null
      if build/fuzz/tests/fuzz/fuzz_$f -max_total_time="$fuzz_s" -rss_limit_mb=2048 \
        -artifact_prefix="$work/" "$work" >"$work.log" 2>&1; then
        note "fuzz-$f" PASS
        echo "   fuzz_$f: $(grep -o 'Done [0-9]* runs' "$work.log")"
      else
        note "fuzz-$f" FAIL
        status=1
        echo "   fuzz_$f FAILED; crash input kept under $work"
        tail -30 "$work.log"
      fi
    done
  else
    note build-fuzz FAIL
  fi
fi

# The room graph: every #include is an arrow DESIGN.md's "Rooms" table
# allows (the build's per-room include directories catch most; this names
# them all, and engine -> client inside stager/).
echo "== rooms: include graph (scripts/rooms.py)"
if /usr/bin/python3 scripts/rooms.py >"$out/rooms.log" 2>&1; then
  note rooms PASS
else
  note rooms FAIL
  status=1
fi
sed 's/^/   /' "$out/rooms.log"

# Formatting of every C file.
if command -v clang-format >/dev/null; then
  bad=$(git ls-files '*.c' '*.h' | while read -r f; do
    clang-format --dry-run "$f" 2>&1 | grep -q warning && echo "$f"; done)
  if [ -n "$bad" ]; then
    note clang-format FAIL
    echo "clang-format would change: $bad"
  else
    note clang-format PASS
  fi
fi

/usr/bin/python3 scripts/summary.py "${sources[@]}" plain="$out/plain.txt" || status=1
exit $status
