"""The canonical search (canonical.c, compiled): google/minimalloc's search, which decides
whether a component fits under a capacity by placing buffers at their floors in order of
offset. It restarts with another order of the buffers whenever it spends its node budget;
the orders are minimalloc's preorderings (docs/placement.md)."""
from __future__ import annotations

import time

from ._canonical import fit
from .problem import Component

FIRST_BUDGET = 2_000    # nodes before the first restart; each round of orders gets 1.5 times more
# The search keeps every pair of conflicting blocks; past this many (pairs over a section,
# counted for each section) a component is left to the other methods: 10^7 is about 80 MB.
MAX_PAIRS = 10_000_000


def orders(comp: Component) -> list[list[int]]:
    """Each block's rank in three orders, by width (sections spanned), area and the largest
    load over its sections, in minimalloc's combinations WAT, TAW and TWA, larger first."""
    width = [h - l for l, h in zip(comp.lo, comp.hi)]
    area = [w * s for w, s in zip(width, comp.size)]
    total = [max(comp.load[l:h]) for l, h in zip(comp.lo, comp.hi)]
    keys = [lambda k: (-width[k], -area[k], -total[k]),
            lambda k: (-total[k], -area[k], -width[k]),
            lambda k: (-total[k], -width[k], -area[k])]
    ranks = []
    for key in keys:
        rank = [0] * len(comp.size)
        for r, k in enumerate(sorted(range(len(comp.size)), key=key)):
            rank[k] = r
        ranks.append(rank)
    return ranks


def search(comp: Component, capacity: int, deadline: float) -> tuple[list[int] | None, bool]:
    """(a plan within `capacity` or None, whether None is proven: no plan exists)."""
    if sum(len(over) ** 2 for over in comp.covers) > MAX_PAIRS:
        return None, False
    status, offsets = fit(comp.size, comp.lo, comp.hi, len(comp.load), capacity, orders(comp),
                          max(0.0, deadline - time.monotonic()), FIRST_BUDGET)
    return offsets, status == 0
