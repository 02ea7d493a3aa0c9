"""Seeded instance families of the placement problem, shared by the benchmark and the tests.

Each is a proxy: random lifetimes (spread, dense), a computation graph's table,
rectangles cut by guillotine cuts, whose optimum is known, production-like packings
filled by an allocator's sweep (`production`), a program's lifetimes with every step
topped up to the peak (`topup`), a long pipeline of buffers each read for a few steps
(`stair`, and beside long-lived lanes: `lanes`), a serving trace of KV caches
(`serving`), random lifetimes with sizes powers of two (`powers`) and a pipeline whose
larger buffers live longer (`sawtooth`). None is a production
model's allocation problem;
docs/measurements.md says what that leaves out.
"""
from __future__ import annotations

import math
import random

from planner.place import Block, lower_bound
from planner.place.problem import components

ALIGN = 256

# minimalloc's README example, id,lower,upper(exclusive),size; its optimum is 12
README = [Block(0, 2, 4), Block(3, 8, 4), Block(0, 8, 4), Block(9, 20, 4), Block(0, 20, 4)]


def spread(n: int, seed: int) -> list[Block]:
    """Lifetimes scattered over n/2 steps, sizes log-uniform over four orders of magnitude."""
    rng = random.Random(seed)
    steps = max(2, n // 2)
    blocks = []
    for _ in range(n):
        first = rng.randrange(steps)
        blocks.append(Block(first, min(steps - 1, first + int(rng.expovariate(8 / steps))),
                            int(2 ** rng.uniform(0, 14)) * ALIGN))
    return blocks


def dense(n: int, seed: int) -> list[Block]:
    """Many overlapping lifetimes: each lives a third of the horizon on average, so about
    n/3 are live at once; sizes over two orders of magnitude."""
    rng = random.Random(seed)
    steps = max(2, n // 4)
    blocks = []
    for _ in range(n):
        first = rng.randrange(steps)
        blocks.append(Block(first, min(steps - 1, first + rng.randrange(steps * 2 // 3 + 1)),
                            rng.randint(1, 100) * ALIGN))
    return blocks


def cut(pieces: int, seed: int, steps: int, height: int) -> list[Block]:
    """Cut a height x steps rectangle into `pieces` blocks (guillotine cuts, each piece cut
    at random across bytes or across time), then shuffle: every step is full, so the
    optimum is `height`, and the sizes spread over orders of magnitude."""
    if pieces > steps * height:
        raise ValueError(f"a {height} x {steps} rectangle has fewer than {pieces} cells")
    rng = random.Random(seed)
    rects = [(0, steps, 0, height)]
    while len(rects) < pieces:
        i = rng.randrange(len(rects))
        t0, t1, b0, b1 = rects[i]
        if t1 - t0 > 1 and (b1 - b0 == 1 or rng.random() < 0.5):
            c = rng.randrange(t0 + 1, t1)
            rects[i:i + 1] = [(t0, c, b0, b1), (c, t1, b0, b1)]
        elif b1 - b0 > 1:
            c = rng.randrange(b0 + 1, b1)
            rects[i:i + 1] = [(t0, t1, b0, c), (t0, t1, c, b1)]
    rng.shuffle(rects)
    return [Block(t0, t1 - 1, b1 - b0) for t0, t1, b0, b1 in rects]


def table(n: int, seed: int) -> list[Block]:
    """A large computation graph's lifetimes: four buffers born per step, nine in ten read
    within a few steps, the rest kept long; sizes over four orders of magnitude."""
    rng = random.Random(seed)
    blocks = []
    for i in range(n):
        life = rng.expovariate(1 / 3) if rng.random() < 0.9 else rng.expovariate(1 / 200)
        blocks.append(Block(i // 4, i // 4 + int(life), int(2 ** rng.uniform(0, 14)) * ALIGN))
    return blocks


def stair(n: int, seed: int, width: int = 3) -> list[Block]:
    """A pipeline: buffer i is made at step i and read for `width` steps, sizes uniform over
    three orders of magnitude. Each step holds `width` buffers; one long, thin component,
    whose optimum is the lower bound in every instance measured."""
    rng = random.Random(seed)
    return [Block(i, i + width - 1, rng.randint(1, 1000) * ALIGN) for i in range(n)]


def lanes(n: int, seed: int, count: int = 2) -> list[Block]:
    """`stair(n, seed)` beside `count` lanes: in each, buffers of one size (64-256 units) back
    to back over the whole time, each living 500-1,000 steps (a cache rebuilt now and then).
    A lane's load is flat, so the optimum is the lower bound wherever the pipeline's is."""
    rng = random.Random(seed)
    blocks = stair(n, seed)
    end = max(b.last for b in blocks)
    for _ in range(count):
        size, t = rng.choice([64, 128, 256]) * ALIGN, 0
        while t <= end:
            last = min(end, t + rng.randint(500, 1000))
            blocks.append(Block(t, last, size))
            t = last + 1
    return blocks


def serving(n: int, seed: int) -> list[Block]:
    """A serving trace: 0-2 requests arrive a step, each holding its KV cache (a few prompt and
    reply lengths) for 5-60 steps, beside 1-4 workspaces a step, sized by the batch, each living
    one step. Large blocks of a few sizes over long, overlapping lifetimes, and small ones
    between them; the optimum is not known (the lower bound or within a few percent of it, in
    the instances planned at it or near it)."""
    rng = random.Random(seed)
    width, layers = rng.choice([2048, 4096]), rng.choice([16, 32])
    blocks, t = [], 0
    while len(blocks) < n:
        for _ in range(rng.choice([0, 1, 1, 2])):
            tokens = rng.choice([128, 256, 512, 1024, 2048]) + rng.choice([64, 128, 256])
            blocks.append(Block(t, t + rng.randint(5, 60) - 1, tokens * 4 * width * layers // 64))
        for _ in range(rng.randint(1, 4)):
            blocks.append(Block(t, t, rng.choice([1, 8, 16, 32, 64]) * width * rng.choice([2, 4, 8])))
        t += 1
    return blocks


def powers(n: int, seed: int) -> list[Block]:
    """Random lifetimes with sizes powers of two, as allocators that round sizes up (buddy
    allocators, tensors of power-of-two shapes) make them: n buffers born at random steps over
    n/3, each living 1-60 steps, of 2^6 to 2^22 bytes, the exponent uniform. Sizes repeat, so
    which of two equal ones goes first decides much; the optimum is not known."""
    rng = random.Random(seed)
    blocks = []
    for _ in range(n):
        first = rng.randrange(max(1, n // 3))
        blocks.append(Block(first, first + rng.randint(1, 60) - 1, 2 ** rng.randint(6, 22)))
    return blocks


def sawtooth(n: int, seed: int) -> list[Block]:
    """A pipeline whose buffers live longer the larger they are, as in gradient accumulation:
    buffer i is born at step i and lives 1 + (stride * i mod period) steps, of that many
    thousand bytes plus up to 999 (a period of 17-29 steps, a stride prime to it). The load is
    the same at every step after the first period, so the lower bound is near the optimum, yet
    every heuristic here ends 17-45% above it (the optimum is not known)."""
    rng = random.Random(seed)
    period = rng.randint(17, 29)
    stride = rng.choice([k for k in range(2, period) if math.gcd(k, period) == 1])
    blocks = []
    for i in range(n):
        life = 1 + stride * i % period
        blocks.append(Block(i, i + life - 1, life * 1000 + rng.randint(0, 999)))
    return blocks


def topup(n: int, seed: int) -> list[Block]:
    """A program's lifetimes (a few buffers born a step, most living 1-8 steps, some 4-12) in
    sizes of 1-8 units, then, over every step below the peak, one buffer of exactly the
    missing bytes living that step only (a workspace): every step is at the peak, the sizes
    are few and small, and the optimum is often a unit or two above the lower bound, which is
    then hard to prove (a shape a user found, where CP-SAT alone beat the search)."""
    rng = random.Random(seed)
    blocks, t = [], 0
    while len(blocks) < n:
        if rng.random() < 0.15:
            blocks.append(Block(t, t + rng.randint(3, 11), rng.choice([1, 2, 3, 5, 8]) * ALIGN))
        for _ in range(rng.choice([1, 1, 2, 3])):
            life = 1 if rng.random() < 0.3 else min(1 + int(rng.expovariate(0.5)), 8)
            blocks.append(Block(t, t + life - 1, rng.choice([1, 2, 3, 5, 8]) * ALIGN))
        t += 1
    blocks = blocks[:n]
    steps = max(b.last for b in blocks) + 1
    live = [sum(b.size for b in blocks if b.first <= s <= b.last) for s in range(steps)]
    peak = max(live)
    return blocks + [Block(s, s, peak - load) for s, load in enumerate(live) if load < peak]


def aligned(blocks: list[Block]) -> list[Block]:
    """The blocks with sizes in units of ALIGN bytes."""
    return [Block(b.first, b.last, b.size * ALIGN) for b in blocks]


KIB = 1024
UNITS = 1024        # the production capacity in KiB: 1 MiB, as in minimalloc's production set


def production(n: int, seed: int, slack: float = 0.0, room: float = 0.0) -> tuple[list[Block], list[int], int]:
    """(blocks, a plan of them within the capacity, the capacity): `n` buffers packed by
    an allocator's sweep over time (`_Fill`), sizes and times in multiples of 1 KiB. With
    no slack the capacity is the peak live bytes; with slack, every size is scaled down
    until the peak is that fraction below the capacity (the plan still fits). Scaling
    shrinks small buffers most (sizes stay whole KiB), so the sections full at the peak get
    more slack than that fraction. With `room` instead, the sizes are as at the peak and the
    capacity is that fraction above it (in whole KiB), as where a program's peak falls a
    little short of a fixed memory: the plan fits at the peak, so that is the optimum."""
    rng = random.Random(seed)
    while True:
        packing = _Fill(n, rng).run()
        if not _has_cut(packing):
            break
    if slack:
        packing = _shrunk(packing, slack)
    blocks = [Block(f * KIB, (l + 1) * KIB - 1, s * KIB) for f, l, _, s in packing]
    return blocks, [o * KIB for _, _, o, _ in packing], int(UNITS * (1 + room)) * KIB


class _Fill:
    """A sweep over time that allocates buffers in the free bytes of a capacity-by-time
    rectangle as a program's allocator would, into holes left by buffers that ended, not
    by cuts: whole-span buffers at the bottom, a few large ones (the largest 60-85% of the
    capacity) booked ahead (buffers under them end before they start), and the rest
    heavy-tailed in size, born a few a step, more while more than `loose` bytes are free.
    Lifetimes: a third end within three steps, most are exponential with a mean of a tenth
    of the horizon, one in twenty lives a quarter of it or more."""

    def __init__(self, n: int, rng: random.Random):
        self.n, self.rng = n, rng
        self.per_step = rng.uniform(1.5, 4)
        self.horizon = n / self.per_step
        self.loose = rng.uniform(0.05, 0.2) * UNITS
        self.made: list[list[int]] = []         # [first, last, offset, size]; last may shrink
        self.live: list[list[int]] = []
        self.booked: list[list[int]] = []       # large buffers not started yet
        self.base = 0                           # the top of the whole-span buffers

    def run(self) -> list[tuple[int, int, int, int]]:
        for _ in range(self.rng.randint(1, 3)):
            self._make([0, 1 << 30, self.base, self.rng.randint(4, 40)])
            self.base = self.made[-1][2] + self.made[-1][3]
        large = sorted(self.rng.sample(range(self.n // 5, 4 * self.n // 5), self.rng.randint(3, 6)))
        shares = [self.rng.uniform(0.60, 0.85)] + [self.rng.uniform(0.1, 0.45) for _ in large[1:]]
        t = 0
        while len(self.made) < self.n:
            self.live = [p for p in self.live if p[1] >= t]
            while large and len(self.made) >= large[0]:
                large.pop(0)
                self._book(t, int(UNITS * shares.pop(0)))
            for p in [p for p in self.booked if p[0] == t]:
                self.booked.remove(p)
                if len(self.made) < self.n:
                    self._make(p)
            self._fill(t)
            t += 1
        end = max(p[0] for p in self.made)
        return [(f, min(l, end), o, s) for f, l, o, s in self.made]

    def _make(self, p: list[int]) -> None:
        self.made.append(p)
        self.live.append(p)

    def _book(self, t: int, size: int) -> None:
        """Book a large buffer to start in 1-3 steps, unless it would meet one booked."""
        rng = self.rng
        o, start = rng.randrange(self.base, UNITS - size + 1), t + rng.randint(1, 3)
        p = [start, start + rng.randint(0, max(1, int(self.horizon * 0.1))), o, size]
        if any(_meet(p, q) for q in self.booked):
            return
        for q in self.live:
            if q[2] < o + size and o < q[2] + q[3] and q[1] >= start:
                q[1] = start - 1           # shortening a lifetime never breaks a packing
        self.booked.append(p)

    def _fill(self, t: int) -> None:
        """Buffers born at t: a few, then more while more than `loose` bytes are free (none
        at t = 0 and at one step in ten, so the peak is the capacity)."""
        count = int(self.per_step) + (self.rng.random() < self.per_step % 1)
        loose = 0 if t == 0 or self.rng.random() < 0.1 else self.loose
        while len(self.made) < self.n:
            holes = _holes(self.live)
            if not holes or count <= 0 and sum(hi - lo for lo, hi in holes) <= loose:
                return
            count -= 1
            self._make(self._buffer(t, *self.rng.choices(holes, [hi - lo for lo, hi in holes])[0]))

    def _buffer(self, t: int, lo: int, hi: int) -> list[int]:
        """A buffer born at t at the bottom or the top of the hole [lo, hi)."""
        rng = self.rng
        size = max(1, min(hi - lo, int(2 ** rng.uniform(0, 8.5))))
        if hi - lo - size < 4:
            size = hi - lo              # no sliver left behind
        o = hi - size if rng.random() < 0.5 else lo
        r = rng.random()
        life = (rng.randint(1, 3) if r < 0.3 else int(rng.expovariate(10 / self.horizon)) + 1 if r < 0.95
                else rng.randint(int(self.horizon) // 4, int(self.horizon) + 1))
        last = t + life - 1
        for q in self.booked:
            if q[2] < o + size and o < q[2] + q[3]:
                last = min(last, q[0] - 1)
        return [t, last, o, size]


def _meet(p: list[int], q: list[int]) -> bool:
    """Whether two packed buffers share a step and a byte."""
    return p[0] <= q[1] and q[0] <= p[1] and p[2] < q[2] + q[3] and q[2] < p[2] + p[3]


def _holes(live: list[list[int]]) -> list[tuple[int, int]]:
    """The free byte ranges [lo, hi) among the live buffers."""
    holes, top = [], 0
    for lo, hi in sorted((p[2], p[2] + p[3]) for p in live):
        if lo > top:
            holes.append((top, lo))
        top = max(top, hi)
    return holes + [(top, UNITS)] * (top < UNITS)


def _has_cut(packing: list[tuple[int, int, int, int]]) -> bool:
    """Whether the packing, above its whole-span buffers, can be cut across bytes at
    some offset no buffer crosses, or across time where no buffer crosses (then its
    layers or time slices would be easier problems than the whole)."""
    end = max(p[1] for p in packing)
    rest = [p for p in packing if (p[0], p[1]) != (0, end)]
    base = min(p[2] for p in rest)
    crossed = [False] * (UNITS + 1)
    for _, _, o, s in rest:
        crossed[o + 1:o + s] = [True] * (s - 1)
    return not all(crossed[base + 1:UNITS]) or len(components([Block(f, l, s) for f, l, _, s in rest])) > 1


def _shrunk(packing: list[tuple[int, int, int, int]], slack: float) -> list[tuple[int, int, int, int]]:
    """The packing with every size scaled down (in whole KiB, at least one) until the
    peak live bytes are at most the capacity / (1 + slack)."""
    scale = 1.0
    while True:
        shrunk = [(f, l, o, max(1, int(s * scale))) for f, l, o, s in packing]
        if lower_bound([Block(f, l, s) for f, l, _, s in shrunk]) * (1 + slack) <= UNITS:
            return shrunk
        scale -= 0.002
