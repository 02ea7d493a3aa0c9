"""The simple heuristics: blocks in, one offset per block out, no search.

Each is a plain function `strategy(blocks) -> offsets` (greedy-size takes a deadline too,
for `auto`). Sizes arrive already aligned, so every offset that is a sum of sizes is aligned too.
"""
from __future__ import annotations

import bisect
import heapq
import time
from array import array

from .problem import Block, conflicts


def naive(blocks: list[Block]) -> list[int]:
    """No reuse: every block gets bytes of its own, in order of first use."""
    offsets, top = [0] * len(blocks), 0
    for i in sorted(range(len(blocks)), key=lambda i: (blocks[i].first, i)):
        offsets[i], top = top, top + blocks[i].size
    return offsets


# greedy-size looks at its deadline once in so many conflicting pairs (and at every block it places)
CLOCK_EVERY = 1 << 16


def greedy_size(blocks: list[Block], deadline: float | None = None) -> list[int] | None:
    """TensorFlow Lite's greedy by size: largest first, into the smallest gap among the
    already placed blocks that conflict with it, else on top of them. Its work is the count of
    conflicting pairs, tens of millions on 10^4 blocks of long lifetimes: given a `deadline`
    (time.monotonic()), it gives up there (None)."""
    def late() -> bool:
        return deadline is not None and time.monotonic() > deadline

    order = sorted(range(len(blocks)),
                   key=lambda i: (-blocks[i].size, blocks[i].first - blocks[i].last, blocks[i].first))
    rank = [0] * len(blocks)
    for r, i in enumerate(order):
        rank[i] = r
    # conflicting blocks placed before each one: 4 bytes a pair, where a list's pointer took 8
    # (10^7 pairs on 10^4 blocks with a thousand live at once, 44 MB)
    earlier = [array("i") for _ in blocks]
    for count, (a, b) in enumerate(conflicts(blocks)):
        if count % CLOCK_EVERY == 0 and late():
            return None
        if rank[a] < rank[b]:
            earlier[b].append(a)
        else:
            earlier[a].append(b)
    offsets = [0] * len(blocks)
    ends = [0] * len(blocks)
    for i in order:
        if late():
            return None
        size = blocks[i].size
        best, best_gap, top = None, None, 0
        for start, end in sorted([(offsets[j], ends[j]) for j in earlier[i]]):
            gap = start - top
            if gap >= size and (best_gap is None or gap < best_gap):
                best, best_gap = top, gap
            if end > top:
                top = end
        offsets[i] = top if best is None else best
        ends[i] = offsets[i] + size
    return offsets


class FreeList:
    """The free holes below the arena's top, kept sorted two ways: by offset, to merge a
    released hole with its neighbours, and by (size, offset), to find the smallest hole
    that holds a block by one bisection (a walk over every hole took 79 s of 97 on 10^5
    blocks, docs/measurements.md)."""

    def __init__(self):
        self.offsets: list[int] = []               # of the holes, ascending
        self.sizes: dict[int, int] = {}            # offset -> size
        self.by_size: list[tuple[int, int]] = []   # (size, offset), ascending

    def take(self, size: int) -> int | None:
        """The offset of `size` bytes from the smallest hole that holds them (the lowest
        of those), or None."""
        k = bisect.bisect_left(self.by_size, (size, -1))
        if k == len(self.by_size):
            return None
        hole, offset = self.by_size[k]
        self.remove(offset)
        if hole > size:
            self.add(offset + size, hole - size)
        return offset

    def release(self, offset: int, size: int) -> None:
        """Free `size` bytes at `offset`, merged with the holes next to them."""
        if offset + size in self.sizes:
            size += self.remove(offset + size)
        k = bisect.bisect_left(self.offsets, offset)
        if k > 0 and self.offsets[k - 1] + self.sizes[self.offsets[k - 1]] == offset:
            offset = self.offsets[k - 1]
            size += self.remove(offset)
        self.add(offset, size)

    def top_hole(self, top: int) -> int | None:
        """The offset of the hole that reaches `top`, if any."""
        if self.offsets and self.offsets[-1] + self.sizes[self.offsets[-1]] == top:
            return self.offsets[-1]
        return None

    def add(self, offset: int, size: int) -> None:
        bisect.insort(self.offsets, offset)
        bisect.insort(self.by_size, (size, offset))
        self.sizes[offset] = size

    def remove(self, offset: int) -> int:
        size = self.sizes.pop(offset)
        del self.offsets[bisect.bisect_left(self.offsets, offset)]
        del self.by_size[bisect.bisect_left(self.by_size, (size, offset))]
        return size


def best_fit(blocks: list[Block]) -> list[int]:
    """A free list walked in step order, as llama.cpp's graph allocator does: at each start
    time release what ended before it, then give each new block (largest first) the
    smallest free hole that holds it, else grow the arena at its top."""
    offsets = [0] * len(blocks)
    # a block of no bytes stays at 0, out of the free list (a hole of no bytes broke its merges)
    starts = sorted((i for i in range(len(blocks)) if blocks[i].size > 0),
                    key=lambda i: (blocks[i].first, -blocks[i].size))
    ending: list[tuple[int, int]] = []       # heap of (last, index) of allocated blocks
    free = FreeList()
    top = 0
    for i in starts:
        while ending and ending[0][0] < blocks[i].first:
            _, j = heapq.heappop(ending)
            free.release(offsets[j], blocks[j].size)
        offsets[i], top = _allocate(free, blocks[i].size, top)
        heapq.heappush(ending, (blocks[i].last, i))
    return offsets


def _allocate(free: FreeList, size: int, top: int) -> tuple[int, int]:
    """(offset, new top) of `size` bytes: the smallest hole that holds them, else the top
    (grown from the hole that reaches it, if one does)."""
    offset = free.take(size)
    if offset is not None:
        return offset, top
    offset = free.top_hole(top)
    if offset is not None:
        free.remove(offset)
        return offset, offset + size
    return top, top + size
