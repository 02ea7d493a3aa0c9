"""The skyline heuristic: bottom-left placement on a skyline of per-section floors."""
from __future__ import annotations

import heapq
import time

from .problem import Block, Sections, extent, lower_bound

# Candidate orders, best of all kept. A candidate's key sees whether its top comes flush
# with a neighbouring floor (`flush`, 0-2), whether it ends where the run of sections at
# the floor ends and so fills the run's width (`fills`), its length in sections and its
# size. Each order wins on some instances; these four of the orders measured gave the
# lowest mean over the benchmark families together (docs/measurements.md).
SKYLINE_RULES = (
    lambda flush, fills, length, size: (-flush, -size * length),
    lambda flush, fills, length, size: (-fills, -flush, -size, -length),
    lambda flush, fills, length, size: (-flush - fills, -size * length),
    lambda flush, fills, length, size: (-fills, -length, -size),
)


def skyline(blocks: list[Block], deadline: float | None = None) -> list[int] | None:
    """Bottom-left skyline placement, best of a few candidate orders (SKYLINE_RULES), run
    forward in time and then, unless a plan already meets the lower bound, backward
    (the same blocks with time reversed: a placement valid one way is valid the other,
    and each direction wins on some instances). At the lowest floor, leftmost, place a
    block starting there whose sections are all at that floor (preferring one that fills
    the run of sections at that floor, or whose top comes flush with a neighbouring
    floor); if none fits, raise the section to its next neighbouring level and leave the
    gap empty. With a `deadline` (time.monotonic()), the passes stop once it passes, and
    None means that not even the first was done by then: on jagged skylines (thousands
    of blocks of unrelated sizes) the raises make a pass take seconds."""
    if not blocks:
        return []
    bound, end = lower_bound(blocks), max(b.last for b in blocks)
    best = None
    for timeline in (blocks, [Block(end - b.last, end - b.first, b.size) for b in blocks]):
        for rule in SKYLINE_RULES:
            offsets = skyline_pass(timeline, rule, deadline)
            if offsets is None:
                return None if best is None else best[1]
            size = extent(blocks, offsets)
            if best is None or size < best[0]:
                best = (size, offsets)
            if best[0] == bound or deadline is not None and time.monotonic() > deadline:
                return best[1]
    return best[1]


def skyline_pass(blocks: list[Block], rule, deadline: float | None = None) -> list[int] | None:
    """One pass of the skyline placement with one candidate order; None if `deadline`
    passes first."""
    live = [i for i, b in enumerate(blocks) if b.size > 0]
    sections = Sections([blocks[i] for i in live])
    count = len(sections)
    hi = {}
    starts: list[list[int]] = [[] for _ in range(count)]
    over = [0] * count                       # unplaced blocks over each section
    for i in live:
        lo, hi[i] = sections.span(blocks[i])
        starts[lo].append(i)
        for s in range(lo, hi[i]):
            over[s] += 1
    floor = [0] * count
    heap = [(0, s) for s in range(count) if over[s]]
    offsets = [0] * len(blocks)
    run = _Run()
    steps = 0
    while heap:
        steps += 1
        if deadline is not None and steps % 4096 == 0 and time.monotonic() > deadline:
            return None
        m, s = heapq.heappop(heap)
        if floor[s] != m or not over[s]:
            continue                          # a stale entry
        left = floor[s - 1] if s > 0 else None
        run_end = run.end_at(floor, s, m)
        best = None
        for k in starts[s]:
            end = hi[k]
            if end <= run_end:                # every section under it is at m
                top = m + blocks[k].size
                flush = (top == left) + (end < count and top == floor[end])
                key = rule(flush, end == run_end, end - s, blocks[k].size)
                if best is None or key < best[0]:
                    best = (key, k)
        if best is not None:
            k = best[1]
            starts[s].remove(k)
            offsets[k], top = m, m + blocks[k].size
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
