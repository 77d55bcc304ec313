# SPDX-License-Identifier: Apache-2.0
"""The epoch order of docs/STAGING.md ("Epoch order"), written again from the
specification alone, in plain Python: an oracle that shares no code with
stager/engine/plan.c (it reproduces tests/test_plan.c's golden vectors). It
builds each sequence as a list: slow, for test datasets of some 100,000
records.
"""

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
    numbered from 0 in dataset order. Z is the shuffle unit in records
    (default: window frames' worth, window*ceil(N/F)); tail is "drop",
    "keep" or "pad". Sequences are lists of layout positions."""

    TAILS = {"drop": 0, "keep": 1, "pad": 2}

    def __init__(self, counts, *, seed, epoch, window=40, unit=None, shuffle=True, tail="drop"):
        F = len(counts)
        first = [0] * F
        for f in range(1, F):
            first[f] = first[f - 1] + counts[f - 1]
        s0 = mix(mix(mix(1) ^ seed) ^ epoch)
        self.K = mix(mix(mix(2) ^ seed) ^ epoch)
        perm = list(range(F))
        if shuffle:
            g = Gen(s0)
            for i in range(F - 1, 0, -1):
                j = g.below(i + 1)
                perm[i], perm[j] = perm[j], perm[i]
        self.layout = [first[f] + x for f in perm for x in range(counts[f])]
        self.N = len(self.layout)
        self.Z = unit if unit is not None else window * max(1, -(-self.N // max(F, 1)))
        self.shuffle = shuffle
        self.tail = tail

    def deliver(self, seq, a, z, t):
        """Delivery index t of the unit [a, a+z) of seq, as a layout position."""
        if not self.shuffle or z < 2:
            return seq[a + t]
        return seq[a + feistel(mix(mix(self.K ^ seq[a]) ^ z), z, t)]

    @staticmethod
    def units(lv):
        n, k, u, e, d = lv
        return [(n + v * u + min(v, e), u + (v < e)) for v in range(k)]

    def sequences(self, levels):
        seqs = [list(range(self.N))]
        for lv in levels:
            prev = seqs[-1]
            n, k, u, e, d = lv
            holes = [self.deliver(prev, a, z, t) for a, z in self.units(lv)
                     for t in range(min(d, z), z)]
            seqs.append(holes + prev[n + k * u + e:])
        return seqs

    def rank_order(self, rank, world, levels=(), done=False):
        """Rank's records, in its local order (PAD repeats included)."""
        return [self.layout[p] for p in self._positions(rank, world, list(levels), done)[0]]

    def _positions(self, r, W, levels, done):
        if done:
            return [], dict(lead=0, p0=0, steps=0, u=0, e=0, base=0)
        seqs, out, lead = self.sequences(levels), [], 0
        L, Z = len(levels), self.Z
        if L and levels[-1][1] == W:
            base, top = seqs[L - 1], levels[-1]
            a, z = self.units(top)[r]
            out += [self.deliver(base, a, z, t) for t in range(min(top[4], z), z)]
            n, k, u, e, d = top
            lead = max(u + (e > 0) - d, 0)
            p0, b = n + k * u + e, L - 1
        else:
            base, p0, b = seqs[L], 0, L
        T = len(base) - p0
        steps = T // (W * Z)
        for s in range(steps):
            a = p0 + s * W * Z + r * Z
            out += [self.deliver(base, a, Z, t) for t in range(Z)]
        R = T - steps * W * Z
        u, e = R // W, R % W
        q = p0 + steps * W * Z
        if self.tail == "drop":
            a, z = q + r * u, u
        else:
            a, z = q + r * u + min(r, e), u + (r < e)
        out += [self.deliver(base, a, z, t) for t in range(z)]
        if self.tail == "pad" and e and r >= e:
            out.append(self.deliver(base, a, z, 0) if u else self.deliver(base, q + r % e, 1, 0))
        elif (self.tail == "pad" and L and levels[-1][1] == W and not steps and not R
              and levels[-1][3] and r >= levels[-1][3]):
            n, k, u2, e2, d = levels[-1]
            a2, z2 = self.units(levels[-1])[r]
            out.append(self.deliver(seqs[L - 1], a2, z2, 0) if u2 else
                       self.deliver(seqs[L - 1], n + r % e2, 1, 0))
        return out, dict(lead=lead, p0=p0, steps=steps, u=u, e=e, base=b)

    @staticmethod
    def holes(lv):
        n, k, u, e, d = lv
        if not k or d > u:
            return 0
        return e * (u + 1 - d) + (k - e) * (u - d)

    def resume_point(self, world, c, levels=(), done=False):
        """(levels, done) after every rank of world delivered c records."""
        levels = [tuple(lv) for lv in levels]
        out0, g = self._positions(0, world, levels, done)
        if done or c >= len(out0):
            return [], True
        Z, W = self.Z, world
        if c < g["lead"]:
            n, k, u, e, d = levels[-1]
            lv = levels[:-1] + [(n, k, u, e, d + c)]
        else:
            m = c - g["lead"]
            if m < g["steps"] * Z:
                add = (g["p0"] + m // Z * W * Z, W, Z, 0, m % Z)
            else:
                add = (g["p0"] + g["steps"] * W * Z, W, g["u"],
                       0 if self.tail == "drop" else g["e"], m - g["steps"] * Z)
            if add[4] == 0:
                add = (add[0], 0, 0, 0, 0)
            lv = levels[:g["base"]] + [add]
        while lv:
            n, k, u, e, d = lv[-1]
            if k and (d > u or (d == u and not e)):
                lv[-1] = (n + k * u + e, 0, 0, 0, 0)
            elif not k and not n:
                lv.pop()
            elif len(lv) >= 2 and n >= self.holes(lv[-2]):
                n2, k2, u2, e2, d2 = lv[-2]
                lv[-2:] = [(n2 + k2 * u2 + e2 + n - self.holes(lv[-2]), k, u, e, d)]
            else:
                break
        assert len(lv) <= 3
        return lv, False


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
