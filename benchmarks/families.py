"""Seeded instance families of the placement problem, shared by the benchmark and the tests.

Each is a proxy: random lifetimes (spread, dense), a computation graph's table, and
rectangles cut by guillotine cuts, whose optimum is known. None is a production model's
allocation problem; docs/measurements.md says what that leaves out.
"""
from __future__ import annotations

import random

from planner.place import Block

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


def aligned(blocks: list[Block]) -> list[Block]:
    """The blocks with sizes in units of ALIGN bytes."""
    return [Block(b.first, b.last, b.size * ALIGN) for b in blocks]
