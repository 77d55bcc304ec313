#!/usr/bin/env bash
# Installs the Debian packages quai needs, only when one is missing, so that
# a machine that has them never touches the network.
#   scripts/deps.sh run    what building and running quai needs
#   scripts/deps.sh test   that, plus the test tools (Criterion, clang for
#                          the fuzzers and sanitizers, pytest, and PyTorch
#                          for the torch layer of the Python binding; Slurm
#                          22.05 with its burst_buffer/lua plugin, iproute2
#                          and util-linux for the virtual cluster's tests;
#                          pip and venv for the offline install test)
set -euo pipefail
# time: demo.sh measures each step with /usr/bin/time (wall time and peak
# RSS), which Debian's minimal images leave out.
run_pkgs=(build-essential meson ninja-build pkg-config liburing-dev libfabric-dev
          libzstd-dev libxxhash-dev zstd munge libmunge-dev libsodium-dev python3 python3-numpy time)
test_pkgs=(libcriterion-dev clang libclang-rt-14-dev clang-format python3-pytest python3-torch
           slurmctld slurmd slurm-client slurm-wlm-basic-plugins liblua5.1-0 iproute2
           util-linux passwd python3-pip python3-venv)
case "${1:-run}" in
  run) pkgs=("${run_pkgs[@]}") ;;
  test) pkgs=("${run_pkgs[@]}" "${test_pkgs[@]}") ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "quai: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "quai: these Debian packages are missing; run as root or install them: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
