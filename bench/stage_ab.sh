#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A/B of `quai stage` between two builds, alternating, on one packed
# dataset, hot, 1 worker, batches of 256, a 320M pool (bench/README.md,
# "The elastic order against the one before it"). One line per run:
# build, whole-process MB/s, first batch s, MB/s after the first batch,
# user CPU s, pinned peak MiB.
#   bench/stage_ab.sh PACKED_DATASET BASE_QUAI NEW_QUAI [PAIRS]
ds=${1:?usage: bench/stage_ab.sh PACKED_DATASET BASE_QUAI NEW_QUAI [PAIRS]}
base=${2:?}
new=${3:?}
cat "$ds"/shard-* >/dev/null
for i in $(seq 1 "${4:-5}"); do
	for who in base new; do
		if [ $who = base ]; then q=$base; else q=$new; fi
		"$q" stage --json --keep-tail --seed 1 --workers 1 --batch 256 --pinned 320M \
			--unlocked-ok "$ds" | /usr/bin/python3 -c "
import json, sys
j = json.load(sys.stdin)
print('$who', j['mb_per_s'], j['first_batch_s'],
      round(j['bytes'] / 1e6 / (j['seconds'] - j['first_batch_s']), 1), j['user_s'],
      j['pinned_peak'] >> 20)"
	done
done
