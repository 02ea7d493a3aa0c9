"""Buffers whose sizes are not multiples of the alignment (a CSV problem's, with --align).

The strategies plan each size rounded up to the alignment. That allows exactly the offsets
the buffers themselves allow (no other aligned offset lies between a buffer's end and its
rounded end), but a buffer on top of the arena ends at its own size, so which buffers end on
top matters. Here: the capacity the strategies are given, and their plan settled so that it
ends as low as it can with the buffers in the same order.
"""
from __future__ import annotations

import time

from .place import Block, assign, lower_bound
from .place.problem import Sections

# The least time a second turn at a capacity gets (rounded_capacities).
MIN_TURN_S = 0.1


def assigned(rounded: list[Block], nbytes: list[int], align: int, strategy: str, time_limit: float,
             capacity: int | None):
    """(`assign`'s answer, the offsets settled) for blocks whose sizes `rounded` up from
    `nbytes` to `align`: minimizing, or deciding `capacity` at rounded_capacities in turn,
    all within `time_limit` seconds."""
    goals = [None] if capacity is None else rounded_capacities(rounded, capacity, align)
    deadline = time.monotonic() + time_limit
    for goal in goals:
        assignment = assign(rounded, strategy, max(MIN_TURN_S, deadline - time.monotonic()), goal)
        offsets = settled(rounded, assignment.offsets, nbytes)
        if goal is None or assignment.bound <= goal or max(o + n for o, n in zip(offsets, nbytes)) <= capacity:
            break       # a plan, or none ruled out at this goal: no reason to go on
    return assignment, offsets


def rounded_capacities(blocks: list[Block], capacity: int, align: int) -> list[int]:
    """The capacities to decide for the rounded sizes (`blocks`), in turn while the one before
    is proven too small: the multiple of `align` at or below `capacity`, within which every
    plan fits, unless the rounded sizes' peak is above it; then the multiple above, within
    which only plans that end in enough padding fit (each plan found is checked)."""
    low = capacity // align * align
    if low == capacity:
        return [low]
    return [low, low + align] if lower_bound(blocks) <= low else [low + align]


def settled(blocks: list[Block], offsets: list[int], nbytes: list[int]) -> list[int]:
    """The plan of the rounded `blocks`, or the plan upside down, whichever ends lower by
    `nbytes`, once each of its blocks has dropped, in order of offset, onto the highest block
    below it live at a common step. Dropping keeps the plan valid and aligned (each rounded
    top is a multiple of the alignment), and turning it over puts other buffers on top.
    Past DROP_MAX blocks or DROP_MAX_SPANS sections spanned in all, the blocks do not drop."""
    if not blocks:
        return offsets
    top = max(o + b.size for o, b in zip(offsets, blocks))
    plans = [offsets, [top - o - b.size for o, b in zip(offsets, blocks)]]
    sections = Sections(blocks)
    spans = [sections.span(b) for b in blocks]
    if len(blocks) <= DROP_MAX and sum(hi - lo for lo, hi in spans) <= DROP_MAX_SPANS:
        plans = [_dropped(spans, [b.size for b in blocks], plan, len(sections)) for plan in plans]
    return min(plans, key=lambda plan: max(o + n for o, n in zip(plan, nbytes)))


# A drop costs a numpy call for each block and a step for each section it spans: these keep
# it to about a tenth of a second (100,000 blocks over most of 10^5 sections took 2.5 s).
DROP_MAX = 20_000
DROP_MAX_SPANS = 20_000_000


def _dropped(spans: list[tuple[int, int]], sizes: list[int], offsets: list[int], count: int) -> list[int]:
    import numpy as np      # only here: a plain plan never loads it

    tops = np.zeros(count, dtype=np.int64)      # per section, the highest rounded top so far
    dropped = list(offsets)
    for k in sorted(range(len(spans)), key=offsets.__getitem__):
        lo, hi = spans[k]
        dropped[k] = int(tops[lo:hi].max())
        tops[lo:hi] = dropped[k] + sizes[k]     # at or above every top there
    return dropped
