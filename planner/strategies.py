"""Offset assignment: blocks (first, last, size) in, one offset per block out.

Each strategy is a plain function `place(blocks) -> offsets`. Sizes arrive already
aligned, so every offset that is a sum of sizes is aligned too.
"""
from __future__ import annotations

import bisect
import heapq

from .graph import Block, conflicts


def lower_bound(blocks: list[Block]) -> int:
    """Max over time of the summed sizes of the blocks live then; no placement beats it."""
    events = sorted([(b[0], 1, b[2]) for b in blocks] + [(b[1] + 1, 0, -b[2]) for b in blocks])
    live = best = 0
    for _, _, delta in events:          # at equal times, ends (0) sort before starts (1)
        live += delta
        best = max(best, live)
    return best


def arena(blocks: list[Block], offsets: list[int]) -> int:
    """Bytes a placement needs: the highest end of any block."""
    return max((o + b[2] for o, b in zip(offsets, blocks)), default=0)


def naive(blocks: list[Block]) -> list[int]:
    """No reuse: every block gets bytes of its own, in order of first use."""
    offsets, top = [0] * len(blocks), 0
    for i in sorted(range(len(blocks)), key=lambda i: (blocks[i][0], i)):
        offsets[i], top = top, top + blocks[i][2]
    return offsets


def greedy_size(blocks: list[Block]) -> list[int]:
    """TensorFlow Lite's greedy by size: largest first, into the smallest gap among the
    already placed blocks that conflict with it, else on top of them."""
    order = sorted(range(len(blocks)), key=lambda i: (-blocks[i][2], blocks[i][0] - blocks[i][1], blocks[i][0]))
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
        size = blocks[i][2]
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


def best_fit(blocks: list[Block]) -> list[int]:
    """A free list walked in step order, as llama.cpp's graph allocator does: at each start
    time release what ended before it, then give each new block (largest first) the
    smallest free hole that holds it, else grow the arena at its top."""
    offsets = [0] * len(blocks)
    starts = sorted(range(len(blocks)), key=lambda i: (blocks[i][0], -blocks[i][2]))
    ending: list[tuple[int, int]] = []       # heap of (last, index) of allocated blocks
    free: list[list[int]] = []               # sorted, merged [offset, size] holes below `top`
    top = 0
    for i in starts:
        first, _, size = blocks[i]
        while ending and ending[0][0] < first:
            _, j = heapq.heappop(ending)
            _release(free, offsets[j], blocks[j][2])
        offsets[i], top = _allocate(free, size, top)
        heapq.heappush(ending, (blocks[i][1], i))
    return offsets


def _allocate(free: list[list[int]], size: int, top: int) -> tuple[int, int]:
    fits = [k for k, (_, s) in enumerate(free) if s >= size]
    if fits:
        k = min(fits, key=lambda k: (free[k][1], free[k][0]))
        offset = free[k][0]
        free[k][0] += size
        free[k][1] -= size
        if free[k][1] == 0:
            del free[k]
        return offset, top
    if free and free[-1][0] + free[-1][1] == top:   # the last hole touches the top: grow it
        offset = free.pop()[0]
        return offset, offset + size
    return top, top + size


def _release(free: list[list[int]], offset: int, size: int) -> None:
    k = bisect.bisect(free, [offset, size])
    free.insert(k, [offset, size])
    if k + 1 < len(free) and offset + size == free[k + 1][0]:   # merge with the hole above
        free[k][1] += free.pop(k + 1)[1]
    if k > 0 and free[k - 1][0] + free[k - 1][1] == offset:     # merge with the hole below
        free[k - 1][1] += free.pop(k)[1]


# Candidate orders of `skyline`, best of all kept. A candidate's key sees whether its top
# comes flush with a neighbouring floor (`flush`, 0-2), whether it ends where the run of
# sections at the floor ends and so fills the run's width (`fills`), its length in
# sections and its size. Each order wins on some instances; these four (of eleven
# measured) gave the lowest mean on the cut, dense, spread and table families together
# (docs/exact.md has the measurements).
SKYLINE_RULES = (
    lambda flush, fills, length, size: (-flush, -size * length),
    lambda flush, fills, length, size: (-fills, -flush, -size, -length),
    lambda flush, fills, length, size: (-flush - fills, -size * length),
    lambda flush, fills, length, size: (-fills, -length, -size),
)


def skyline(blocks: list[Block]) -> list[int]:
    """Bottom-left skyline placement, best of a few candidate orders (SKYLINE_RULES), run
    forward in time and then, unless a plan already meets the lower bound, backward
    (the same blocks with time reversed: a placement valid one way is valid the other,
    and each direction wins on some instances). Time is cut into sections at every start
    and end; each section has a floor. At the lowest floor, leftmost, place a block
    starting there whose sections are all at that floor (preferring one that fills the
    run of sections at that floor, or whose top comes flush with a neighbouring floor);
    if none fits, raise the section to its next neighbouring level and leave the gap empty."""
    if not blocks:
        return []
    bound, end = lower_bound(blocks), max(b[1] for b in blocks)
    best = None
    for timeline in (blocks, [(end - last, end - first, size) for first, last, size in blocks]):
        for rule in SKYLINE_RULES:
            offsets = _skyline(timeline, rule)
            size = arena(blocks, offsets)
            if best is None or size < best[0]:
                best = (size, offsets)
            if best[0] == bound:
                return best[1]
    return best[1]


def _skyline(blocks: list[Block], rule) -> list[int]:
    live = [i for i, b in enumerate(blocks) if b[2] > 0]
    cuts = sorted({blocks[i][0] for i in live} | {blocks[i][1] + 1 for i in live})
    section = {t: s for s, t in enumerate(cuts)}
    count = len(cuts) - 1
    hi = {i: section[blocks[i][1] + 1] for i in live}
    starts: list[list[int]] = [[] for _ in range(count)]
    over = [0] * count                       # unplaced blocks over each section
    for i in live:
        lo = section[blocks[i][0]]
        starts[lo].append(i)
        for s in range(lo, hi[i]):
            over[s] += 1
    floor = [0] * count
    heap = [(0, s) for s in range(count) if over[s]]
    offsets = [0] * len(blocks)
    run = _Run()
    while heap:
        m, s = heapq.heappop(heap)
        if floor[s] != m or not over[s]:
            continue                          # a stale entry
        left = floor[s - 1] if s > 0 else None
        run_end = run.end_at(floor, s, m)
        best = None
        for k in starts[s]:
            end = hi[k]
            if end <= run_end:                # every section under it is at m
                top = m + blocks[k][2]
                flush = (top == left) + (end < count and top == floor[end])
                key = rule(flush, end == run_end, end - s, blocks[k][2])
                if best is None or key < best[0]:
                    best = (key, k)
        if best is not None:
            k = best[1]
            starts[s].remove(k)
            offsets[k], top = m, m + blocks[k][2]
            for t in range(s, hi[k]):
                floor[t] = top
                over[t] -= 1
                heapq.heappush(heap, (top, t))
        else:
            floor[s] = _next_level(floor, over, s, m, starts, hi, run_end)
            heapq.heappush(heap, (floor[s], s))
    return offsets


class _Run:
    """The end of the last run of sections found at the lowest level. Sections at the
    lowest level are visited left to right, and a visit changes only its own section and
    those a block placed there covers, so the end of the run found from an earlier
    section at that level still holds: each run is scanned once, not once per section in
    it (which made this scan most of the time on large tables)."""
    level, end = None, 0

    def end_at(self, floor: list[int], s: int, m: int) -> int:
        """One past the last section of the run at level m that holds section s."""
        if self.level != m or self.end <= s:
            t = s + 1
            while t < len(floor) and floor[t] == m:
                t += 1
            self.level, self.end = m, t
        return self.end


def _next_level(floor: list[int], over: list[int], s: int, m: int, starts, hi, run_end: int) -> int:
    """Where section s goes when nothing fits at floor m there: the lower of its left
    neighbour and the first level to the right of its run at m (above m)."""
    levels = [floor[s - 1]] if s > 0 else []
    if run_end < len(floor) and over[run_end]:
        levels.append(floor[run_end])
    levels = [x for x in levels if x > m]
    if levels:
        return min(levels)
    # no block from the left crosses s: each left over starts here and reaches higher
    return min(max(floor[s:hi[k]]) for k in starts[s])


STRATEGIES = {"naive": naive, "greedy-size": greedy_size, "best-fit": best_fit, "skyline": skyline}
