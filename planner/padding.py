"""Buffers whose sizes are not multiples of the alignment (a CSV problem's, with --align).

The strategies plan each size rounded up to the alignment. That allows exactly the offsets
the buffers themselves allow (no other aligned offset lies between a buffer's end and its
rounded end), but a buffer on top of the arena ends at its own size, so which buffers end on
top matters. Here: the capacity the strategies are given, and their plan settled so that it
ends as low as it can with the buffers in the same order.
"""
from __future__ import annotations

from .place import Block, lower_bound
from .place.problem import Sections


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
    top is a multiple of the alignment), and turning it over puts other buffers on top."""
    if not blocks:
        return offsets
    top = max(o + b.size for o, b in zip(offsets, blocks))
    plans = [_dropped(blocks, plan) for plan in (offsets, [top - o - b.size for o, b in zip(offsets, blocks)])]
    return min(plans, key=lambda plan: max(o + n for o, n in zip(plan, nbytes)))


def _dropped(blocks: list[Block], offsets: list[int]) -> list[int]:
    import numpy as np      # only here: a plain plan never loads it

    sections = Sections(blocks)
    tops = np.zeros(len(sections), dtype=np.int64)      # per section, the highest rounded top so far
    dropped = list(offsets)
    for k in sorted(range(len(blocks)), key=offsets.__getitem__):
        lo, hi = sections.span(blocks[k])
        dropped[k] = int(tops[lo:hi].max())
        tops[lo:hi] = dropped[k] + blocks[k].size       # at or above every top there
    return dropped
