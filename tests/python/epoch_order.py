# SPDX-License-Identifier: Apache-2.0
"""The epoch order of docs/STAGING.md ("Epoch order"), written again from the
specification alone, in plain Python: an oracle that shares no code with
stager/engine/plan.c. Slow (pure Python), for test datasets of a few thousand frames.
"""
import bisect

M = (1 << 64) - 1
GOLDEN = 0x9e3779b97f4a7c15


def fin(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    return z ^ (z >> 31)


def mix(x):
    return fin((x + GOLDEN) & M)


class Gen:
    def __init__(self, s):
        self.s = s

    def next(self):
        self.s = (self.s + GOLDEN) & M
        return fin(self.s)

    def below(self, b):
        t = ((1 << 64) - b) % b
        while True:
            x = self.next()
            if x >= t:
                return x % b


def keys(seed, epoch):
    s0 = mix(mix(mix(1) ^ seed) ^ epoch)
    k = mix(mix(mix(2) ^ seed) ^ epoch)
    return s0, k


def feistel(key, n, x):
    if n == 1:
        return x
    bits = (n - 1).bit_length()
    if bits & 1:
        bits += 1
    h = bits // 2
    mask = (1 << h) - 1
    kj = [mix((key + j) & M) for j in range(4)]

    def e(v):
        l, q = v >> h, v & mask
        for j in range(4):
            l, q = q, l ^ (mix(kj[j] ^ q) & mask)
        return (l << h) | q

    y = e(x)
    while y >= n:
        y = e(y)
    return y


class Epoch:
    """The order of one epoch: counts[f] records in frame f (dataset order),
    the first of them numbered first[f]."""

    def __init__(self, counts, *, seed, epoch, partitions, shuffle=True, window=2, keep_tail=False):
        F = len(counts)
        P = partitions
        assert 1 <= P <= F
        first = [0] * F
        for f in range(1, F):
            first[f] = first[f - 1] + counts[f - 1]
        s0, self.K = keys(seed, epoch)
        pi = list(range(F))
        if shuffle:
            g = Gen(s0)
            for i in range(F - 1, 0, -1):
                j = g.below(i + 1)
                pi[i], pi[j] = pi[j], pi[i]
        cum = [0] * (F + 1)
        for k in range(F):
            cum[k + 1] = cum[k] + counts[pi[k]]
        N = cum[F]
        b = [0] * (P + 1)
        b[P] = F
        for p in range(1, P):
            t = p * (N // P) + (p * (N % P)) // P
            a = bisect.bisect_left(cum, t)
            b[p] = min(max(a, b[p - 1] + 1), F - (P - p))
        self.F, self.P, self.N, self.pi, self.cum, self.b, self.first = F, P, N, pi, cum, b, first
        self.shuffle, self.window, self.keep_tail = shuffle, window, keep_tail
        self.L = [cum[b[p + 1]] - cum[b[p]] for p in range(P)]

    def _at(self, o):
        """The record at offset o of the permuted order."""
        k = bisect.bisect_right(self.cum, o) - 1
        return self.first[self.pi[k]] + (o - self.cum[k])

    def record(self, p, i):
        """Record i of partition p's sequence."""
        cum, b = self.cum, self.b
        o = cum[b[p]] + i
        if not self.shuffle:
            return self._at(o)
        k = bisect.bisect_right(cum, o) - 1
        w = (k - b[p]) // self.window
        s = b[p] + w * self.window
        e = min(b[p] + (w + 1) * self.window, b[p + 1])
        n = cum[e] - cum[s]
        key = mix(mix(self.K ^ p) ^ w)
        return self._at(cum[s] + feistel(key, n, o - cum[s]))

    def positions(self):
        """[(partition, record index)] in global order."""
        P, L = self.P, min(self.L)
        out = [(g % P, g // P) for g in range(P * L)]
        if self.keep_tail:
            for i in range(L, max(self.L)):
                out.extend((p, i) for p in range(P) if self.L[p] > i)
        return out

    def global_order(self):
        return [self.record(p, i) for p, i in self.positions()]

    def rank_order(self, rank, world):
        """Rank's records, in its local order."""
        assert self.P % world == 0
        return [self.record(p, i) for p, i in self.positions() if p % world == rank]

    def rest(self, n):
        """The records at global positions >= n."""
        return [self.record(p, i) for p, i in self.positions()[n:]]


def frame_counts(dataset):
    """Records per frame, in dataset order, from quai.Dataset.locate()."""
    counts = []
    last = None
    for i in range(len(dataset)):
        loc = dataset.locate(i)
        key = (loc.shard, loc.frame)
        if key != last:
            counts.append(0)
            last = key
        counts[-1] += 1
    return counts
