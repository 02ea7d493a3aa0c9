"""The skyline pass as it was written in Python before it was compiled (skyline.c): the
reference the compiled pass must match, plan for plan, on every candidate order."""
from __future__ import annotations

import heapq

from planner.place.problem import Block, Sections

# skyline.py's SKYLINE_RULES, in order: a candidate's key, smaller first.
SKYLINE_RULES = (
    lambda flush, fills, length, size: (-flush, -size * length),
    lambda flush, fills, length, size: (-fills, -flush, -size, -length),
    lambda flush, fills, length, size: (-flush - fills, -size * length),
    lambda flush, fills, length, size: (-fills, -length, -size),
)


def skyline_pass(blocks: list[Block], rule) -> list[int]:
    """One pass of the skyline placement with one candidate order (a key of SKYLINE_RULES)."""
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
