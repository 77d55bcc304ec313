#!/usr/bin/env bash
# quai's main job on an embedded default, from a fresh Debian 12 machine (as
# root): installs what it needs, builds, makes a sample dataset of
# pre-tokenized text and a JSONL corpus, packs both, verifies them, reads a
# random slice back, stages an epoch through the engine into pinned memory,
# and prints a short summary with throughput (staging from a hot page
# cache), then how to put quai on the PATH.
#
# Environment: QUAI_DEMO_MB (default 256) sizes the token sample.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/deps.sh run
if [ ! -f build/release/build.ninja ]; then
  meson setup build/release --buildtype=debugoptimized -Dtests=disabled >/dev/null
fi
ninja -C build/release >/dev/null
quai=$PWD/build/release/tools/quai

work=$PWD/build/demo
rm -rf "$work"
mkdir -p "$work"
mb=${QUAI_DEMO_MB:-256}
echo "== making a ${mb} MiB token sample and a JSONL corpus (seeded, deterministic)"
/usr/bin/python3 - "$work" "$mb" <<'PY'
import json, sys
import numpy as np
work, mb = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(2026)
# uint16 tokens, Zipf-like over a 50k vocabulary, in records of 2048 tokens.
ranks = rng.zipf(1.1, size=mb * (1 << 20) // 2)
np.minimum(ranks, 50000).astype(np.uint16).tofile(f"{work}/tokens.bin")
words = ["quai", "dock", "ship", "shore", "frame", "shard", "token", "epoch", "batch",
         "zone", "node", "fabric", "GPU", "memory", "pinned", "storage", "cargo"]
with open(f"{work}/corpus.jsonl", "w") as f:
    for i in range(20000):
        n = int(rng.integers(20, 200))
        text = " ".join(words[j] for j in rng.integers(0, len(words), n))
        f.write(json.dumps({"id": i, "lang": "en", "text": text}) + "\n")
PY

t() { /usr/bin/time -f '%e %M' -o "$work/time" "$@"; read -r secs kb <"$work/time"; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f MB/s", (s > 0 ? b / s / 1e6 : 0) }'; }

echo "== quai pack (fixed 4096-byte records, zstd level 3, all cores)"
t "$quai" pack --records fixed:4096 "$work/tokens.bin" "$work/tokens" -q
raw=$(stat -c %s "$work/tokens.bin")
pack_line="pack    $(rate "$raw" "$secs") ($secs s, peak RSS $((kb / 1024)) MiB)"
"$quai" pack --records lines "$work/corpus.jsonl" "$work/corpus" -q

echo "== quai verify (every frame decoded and checked)"
t "$quai" verify "$work/tokens" -q
verify_line="verify  $(rate "$raw" "$secs") ($secs s)"
"$quai" verify "$work/corpus" -q

echo "== quai info"
"$quai" info "$work/tokens"

echo "== quai cat: records 1000..1002 of the corpus, read without touching other frames"
"$quai" cat "$work/corpus" --range 1000:1003 | cut -c1-100

echo "== quai stage: one epoch through the staging engine, as a training job takes it"
"$quai" stage "$work/tokens" --seed 1 --batch 256 --unlocked-ok | tee "$work/stage.txt"
"$quai" stage "$work/tokens" --seed 1 --batch 256 --unlocked-ok --verify-order -q
echo "order and bytes of every batch verified"

echo "== quai unpack: exact round trip"
"$quai" unpack "$work/tokens" "$work/tokens.out"
cmp "$work/tokens.bin" "$work/tokens.out" && echo "tokens: bytes identical"

comp=$(du -b "$work/tokens" | cut -f1)
echo
echo "== summary ($(nproc) cores)"
echo "dataset $(numfmt --to=iec "$raw") raw -> $(numfmt --to=iec "$comp") packed"
echo "$pack_line"
echo "$verify_line"
# quai stage's "throughput" and "first batch" lines, as one readable line.
# The shards were just written and verified: they are in the page cache, so
# this is the hot-cache figure (bench/run measures cold reads too).
stage_line=$(awk '
  /^ *throughput / { sub(/^ *throughput +/, ""); tp = $0 }
  /^ *first batch / { sub(/^ *first batch +/, ""); fb = $0 }
  END { printf "%s; first batch after %s", tp, fb }' "$work/stage.txt")
echo "stage   $stage_line (hot cache: the shards were just written, so they are in the page cache)"
echo
echo "quai is $quai; to run it by name:"
echo "  export PATH=\"$(dirname "$quai"):\$PATH\"       # this shell only, from the build directory"
echo "  meson install -C build/release && ldconfig   # or install it (/usr/local by default)"
