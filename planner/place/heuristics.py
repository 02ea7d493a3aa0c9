"""The simple heuristics: blocks in, one offset per block out, no search.

Each is a plain function `strategy(blocks) -> offsets`. Sizes arrive already aligned,
so every offset that is a sum of sizes is aligned too.
"""
from __future__ import annotations

import bisect
import heapq
from typing import NamedTuple

from .problem import Block, conflicts


def naive(blocks: list[Block]) -> list[int]:
    """No reuse: every block gets bytes of its own, in order of first use."""
    offsets, top = [0] * len(blocks), 0
    for i in sorted(range(len(blocks)), key=lambda i: (blocks[i].first, i)):
        offsets[i], top = top, top + blocks[i].size
    return offsets


def greedy_size(blocks: list[Block]) -> list[int]:
    """TensorFlow Lite's greedy by size: largest first, into the smallest gap among the
    already placed blocks that conflict with it, else on top of them."""
    order = sorted(range(len(blocks)),
                   key=lambda i: (-blocks[i].size, blocks[i].first - blocks[i].last, blocks[i].first))
    rank = [0] * len(blocks)
    for r, i in enumerate(order):
        rank[i] = r
    earlier: list[list[int]] = [[] for _ in blocks]     # conflicting blocks placed before each one
    for a, b in conflicts(blocks):
        if rank[a] < rank[b]:
            earlier[b].append(a)
        else:
            earlier[a].append(b)
    offsets = [0] * len(blocks)
    ends = [0] * len(blocks)
    for i in order:
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


class Hole(NamedTuple):
    """Free bytes of the arena, below its current top."""
    offset: int
    size: int


def best_fit(blocks: list[Block]) -> list[int]:
    """A free list walked in step order, as llama.cpp's graph allocator does: at each start
    time release what ended before it, then give each new block (largest first) the
    smallest free hole that holds it, else grow the arena at its top."""
    offsets = [0] * len(blocks)
    starts = sorted(range(len(blocks)), key=lambda i: (blocks[i].first, -blocks[i].size))
    ending: list[tuple[int, int]] = []       # heap of (last, index) of allocated blocks
    free: list[Hole] = []                    # sorted by offset, neighbours merged
    top = 0
    for i in starts:
        while ending and ending[0][0] < blocks[i].first:
            _, j = heapq.heappop(ending)
            _release(free, Hole(offsets[j], blocks[j].size))
        offsets[i], top = _allocate(free, blocks[i].size, top)
        heapq.heappush(ending, (blocks[i].last, i))
    return offsets


def _allocate(free: list[Hole], size: int, top: int) -> tuple[int, int]:
    """(offset, new top) of `size` bytes: the smallest hole that holds them, else the top."""
    fits = [k for k, hole in enumerate(free) if hole.size >= size]
    if fits:
        k = min(fits, key=lambda k: (free[k].size, free[k].offset))     # smallest, then lowest
        hole = free[k]
        if hole.size == size:
            del free[k]
        else:
            free[k] = Hole(hole.offset + size, hole.size - size)
        return hole.offset, top
    if free and free[-1].offset + free[-1].size == top:   # the last hole touches the top: grow it
        offset = free.pop().offset
        return offset, offset + size
    return top, top + size


def _release(free: list[Hole], hole: Hole) -> None:
    k = bisect.bisect(free, hole)
    free.insert(k, hole)
    if k + 1 < len(free) and hole.offset + hole.size == free[k + 1].offset:   # merge with the hole above
        free[k] = Hole(hole.offset, hole.size + free.pop(k + 1).size)
    if k > 0 and free[k - 1].offset + free[k - 1].size == free[k].offset:     # merge with the hole below
        free[k - 1] = Hole(free[k - 1].offset, free[k - 1].size + free.pop(k).size)
