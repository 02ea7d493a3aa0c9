"""The placement problem: blocks (a lifetime and a size), the sections time is cut into,
and the components that can be planned apart.

Every strategy, the exact search and the views cut time the same way, here (`Sections`):
wherever a block starts or ends, so that within a section the live blocks stay the same.
"""
from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import math
from dataclasses import dataclass
from typing import Iterator, NamedTuple


class Block(NamedTuple):
    first: int     # first step it is live at
    last: int      # last step it is live at (a closed interval)
    size: int      # aligned bytes


def lower_bound(blocks: list[Block]) -> int:
    """Max over time of the summed sizes of the blocks live then; no placement beats it."""
    events = sorted([(b.first, 1, b.size) for b in blocks] + [(b.last + 1, 0, -b.size) for b in blocks])
    live = best = 0
    for _, _, delta in events:          # at equal times, ends (0) sort before starts (1)
        live += delta
        best = max(best, live)
    return best


def extent(blocks: list[Block], offsets: list[int]) -> int:
    """The bytes a placement needs: the highest end of any block."""
    return max((o + b.size for o, b in zip(offsets, blocks)), default=0)


def conflicts(blocks: list[Block]) -> Iterator[tuple[int, int]]:
    """Every pair (i, j) of blocks whose closed intervals intersect, by one sweep over start times."""
    order = sorted(range(len(blocks)), key=lambda i: blocks[i].first)
    live: list[tuple[int, int]] = []        # heap of (last, index)
    for i in order:
        while live and live[0][0] < blocks[i].first:
            heapq.heappop(live)
        for _, j in live:
            yield j, i
        heapq.heappush(live, (blocks[i].last, i))


def conflict_count(blocks: list[Block]) -> int:
    """How many pairs `conflicts` yields, without making them: each block meets the blocks
    started before it (in `conflicts`' order) less those ended before it starts."""
    firsts = sorted(b.first for b in blocks)
    lasts = sorted(b.last for b in blocks)
    return sum(r - bisect.bisect_left(lasts, first) for r, first in enumerate(firsts))


class Sections:
    """Time cut at every first step and every last + 1 of some intervals (anything with
    `first` and `last`): section s runs from cuts[s] to cuts[s + 1] - 1."""

    def __init__(self, intervals):
        self.cuts = sorted({b.first for b in intervals} | {b.last + 1 for b in intervals})
        self._index = {t: s for s, t in enumerate(self.cuts)}

    def __len__(self) -> int:
        return max(0, len(self.cuts) - 1)

    def span(self, interval) -> tuple[int, int]:
        """The sections [lo, hi) an interval covers."""
        return self._index[interval.first], self._index[interval.last + 1]


@dataclass
class Component:
    """Blocks whose lifetimes chain into one span of time; no block outside crosses it.
    Blocks are renumbered 0..n-1 here, in order of start, and cover sections [lo[k], hi[k])."""
    blocks: list[int]               # index of each local block in the caller's list
    size: list[int]
    lo: list[int]
    hi: list[int]
    starts: list[list[int]]         # per section: the blocks starting there, in trial order
    load: list[int]                 # per section: summed sizes of the blocks over it
    first_block: list[int]          # per section, and one past the last: the first block starting there or later

    @functools.cached_property
    def covers(self) -> list[list[int]]:
        """Per section: the blocks over it, in trial order. Built when a search asks: its
        size is the sum of the blocks' spans, 10^7 on a long program of 10^4 blocks."""
        covers: list[list[int]] = [[] for _ in self.load]
        for k in _trial_order(self.lo, self.hi, self.size):
            for s in range(self.lo[k], self.hi[k]):
                covers[s].append(k)
        return covers

    def counts(self) -> list[int]:
        """Per section: how many blocks are over it."""
        return _over(self.lo, self.hi, [1] * len(self.lo), len(self.load))

    @property
    def lower(self) -> int:
        return max(self.load)

    def mostly_full(self, capacity: int) -> bool:
        """Whether at least half the sections hold `capacity`: only then do layer splits
        mean something. Where sections have room to spare, layers can share it out in
        countless ways, and the splits seldom find a plan (docs/measurements.md)."""
        return 2 * sum(load == capacity for load in self.load) >= len(self.load)

    @functools.cached_property
    def unit(self) -> int:
        """The gcd of the sizes: a canonical plan's offsets and arena are multiples of it."""
        return functools.reduce(math.gcd, self.size)

    def step_above(self, capacity: int) -> int:
        """The least arena a plan can have when none fits `capacity`: a plan pushed down to
        canonical form has an extent that is a sum of sizes, so a multiple of `unit`."""
        return -(-(capacity + 1) // self.unit) * self.unit

    def blocks_of(self, plan_blocks: list[Block]) -> list[Block]:
        """The component's own blocks, in its order, from the caller's list."""
        return [plan_blocks[i] for i in self.blocks]

    def extent(self, offsets: list[int]) -> int:
        return max(o + size for o, size in zip(offsets, self.size))


def components(blocks: list[Block]) -> list[Component]:
    """Split the blocks of nonzero size into components: where no block crosses a point
    in time, the two sides are independent problems."""
    return [_component(blocks, group) for group in _groups(blocks, range(len(blocks)))]


def _groups(blocks: list[Block], indices) -> list[list[int]]:
    """The `indices` of blocks of nonzero size, each group in order of first step, split
    where none of them crosses a point in time."""
    order = sorted((i for i in indices if blocks[i].size > 0), key=lambda i: blocks[i].first)
    groups, end = [], None
    for i in order:
        if end is None or blocks[i].first > end:
            groups.append([])
            end = blocks[i].last
        groups[-1].append(i)
        end = max(end, blocks[i].last)
    return groups


def _component(blocks: list[Block], indices: list[int]) -> Component:
    """`indices` in order of first step."""
    own = [blocks[i] for i in indices]
    sections = Sections(own)
    size = [b.size for b in own]
    lo, hi = map(list, zip(*(sections.span(b) for b in own)))
    starts: list[list[int]] = [[] for _ in range(len(sections))]
    for k in _trial_order(lo, hi, size):
        starts[lo[k]].append(k)
    first_block = [bisect.bisect_left(lo, s) for s in range(len(sections) + 1)]
    return Component(indices, size, lo, hi, starts, _over(lo, hi, size, len(sections)), first_block)


def _trial_order(lo: list[int], hi: list[int], size: list[int]) -> list[int]:
    """The longest block first, then the largest: long blocks shape the skyline for
    everyone after them, short ones fill what is left."""
    return sorted(range(len(size)), key=lambda k: (lo[k] - hi[k], -size[k]))


def _over(lo: list[int], hi: list[int], values: list[int], count: int) -> list[int]:
    """Per section of `count`: the sum of `values` of the blocks over it [lo, hi)."""
    change = [0] * (count + 1)
    for first, end, value in zip(lo, hi, values):
        change[first] += value
        change[end] -= value
    return list(itertools.accumulate(change))[:count]


def whole_span(blocks: list[Block]) -> list[int]:
    """The blocks live over the whole span of `blocks` (one component). Each conflicts
    with every other block, so any plan can be rearranged to put them at the bottom."""
    span = (min(b.first for b in blocks), max(b.last for b in blocks))
    return [k for k, b in enumerate(blocks) if (b.first, b.last) == span]


# Peeling one level of whole-span blocks groups what is left again: lifetimes nested n deep
# (block i over steps i..2n-i) took 8 s at n = 2,000. Past this many levels a component
# is planned as it is.
MAX_LEVELS = 8


def stacked_components(blocks: list[Block]) -> tuple[list[tuple[Component, int, list[int]]], dict[int, int]]:
    """The components of `blocks`, each above a base: the blocks live over a component's
    whole span go at its bottom, one on another (`whole_span`), and the rest, above them,
    may fall apart into components of their own, and so on up, MAX_LEVELS deep.
    (component, base, the blocks under it) triples, and the offsets of the blocks set
    at the bottoms."""
    parts, fixed = [], {}
    todo = [(range(len(blocks)), 0, [], 0)]            # blocks, their base, the blocks under them, levels
    while todo:
        indices, base, under, level = todo.pop()
        for group in _groups(blocks, indices):
            whole = {group[k] for k in whole_span([blocks[i] for i in group])} if level < MAX_LEVELS else set()
            if not whole:
                parts.append((_component(blocks, group), base, under))
                continue
            top = base
            for i in sorted(whole):
                fixed[i], top = top, top + blocks[i].size
            rest = [i for i in group if i not in whole]
            if rest:
                todo.append((rest, top, under + sorted(whole), level + 1))
    return parts, fixed


def bottom(blocks: list[Block]) -> tuple[list[int], list[int], int]:
    """The blocks over the whole span of those left set at the bottom, one on another, up
    to MAX_LEVELS times over, while some are left above them: (offsets, 0 where not set; the
    indices of the rest; the bytes set). Each such block conflicts with every block left, so
    any plan can be rearranged that way: the optimum stays, and the heuristics and searches
    above no longer go through it at every step (`skyline` took 173 s on a training step of
    36,009 buffers, half of them weights and optimizer state over the whole step)."""
    offsets, rest, base = [0] * len(blocks), list(range(len(blocks))), 0
    for _ in range(MAX_LEVELS):
        whole = whole_span([blocks[i] for i in rest]) if rest else []
        if not whole or len(whole) == len(rest):
            break
        for k in whole:
            offsets[rest[k]], base = base, base + blocks[rest[k]].size
        taken = set(whole)
        rest = [i for k, i in enumerate(rest) if k not in taken]
    return offsets, rest, base
