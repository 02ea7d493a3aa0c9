"""The skyline search: does a component fit under a capacity?

Buffers are dropped bottom-up onto a skyline of per-section floors (minimalloc's
canonical solutions), pruned by spatial inference, failed states remembered; every so
often CP-SAT (the oracle) is asked whether the placements so far can be completed at
all, and the search jumps back past the first one it refutes. The loop itself is
compiled (search_core.py); this module prepares its arrays and answers its questions
to the oracle.

Why this search is complete. Any valid plan can be pushed down until every buffer sits
at offset 0 or on top of a buffer it conflicts with. Take such a plan that agrees with
the buffers placed so far, and the lowest floor m, leftmost, at section s. Either a
buffer of the plan covers byte m of s: it starts at s (the sections left of s are
higher) and every section under it is at m, so it is one of the candidates tried. Or
byte m of s stays empty: then the next buffer over s sits at its floor, if that is
above m, or rests on an unplaced buffer, at least m + the smallest unplaced size;
the search lifts s to the least of these and loses no plan.
"""
from __future__ import annotations

import time

import numpy as np

from . import search_core
from .cpsat import Oracle
from .problem import Component


class Timeout(Exception):
    pass


class Search:
    """Decide whether a component fits under `capacity`; on success `offsets` holds a plan.

    State: `floor[s]`, the lowest byte of section s still free to the unplaced blocks,
    and `slack[s] = capacity - floor[s] - (sizes of unplaced blocks over s)`. Placing a
    block on the floor moves floor and unplaced sizes by the same amount, so only
    leaving space empty spends slack; when slack would go negative, the branch fails
    (spatial inference). And the bytes [floor[s], x) of a section can only hold blocks
    whose floor is below x, so their sizes must cover x - floor[s] - slack[s]. `short`
    records by how much the least-short failure missed: no capacity below
    `capacity + short` can succeed, since the same tree would fail. Blocks alike in span
    and size are tried once; a failed part (its floors and unplaced blocks) is
    remembered and never searched again.

    The oracle: CP-SAT is asked whether the placements so far can be completed. When it
    refutes them, bisection finds the first placement it refutes, and the search
    unwinds to the frame that made it. Questions take as much time as the search between
    them: the oracle gets half the time, however fast the search runs. A failed part is
    remembered only when no refutation came in its subtree: a refutation speaks of all
    placements, not of one part.
    """

    def __init__(self, comp: Component, capacity: int, deadline: float):
        self.comp, self.capacity, self.deadline = comp, capacity, deadline
        self.oracle = Oracle(comp, capacity)
        self.first_ask = max(64, len(comp.size) // 2)     # placements before the first question
        self.offsets: list[int] | None = None
        self.short: int | None = None
        self.plan = None                    # the oracle's completed plan, for the loop
        self.nodes = 0

    def run(self) -> bool:
        """Raises Timeout when the deadline passes undecided."""
        comp = self.comp
        slack = np.array([self.capacity - load for load in comp.load], np.int64)
        if slack.min() < 0:
            self.short = int(-slack.min())
            return False
        step = -(-(self.capacity + 1) // comp.unit) * comp.unit - self.capacity
        self._since, self._placements = time.monotonic(), 0
        search_core.ORACLE = self
        try:
            status, offsets, short, self.nodes = search_core.search(
                *_arrays(comp), slack, self.deadline, step, self.first_ask)
        finally:
            search_core.ORACLE = None
        if short != search_core.NONE:
            self.short = int(short)
        if status < 0:
            raise Timeout
        if status:
            self.offsets = [int(o) for o in offsets]
        return bool(status)

    def consult(self, placed: np.ndarray, undecided: int, kept: int, placements: int) -> tuple[int, int, int]:
        """Called by the loop with the placements so far, (block, offset) rows: (0, 0, n)
        when the oracle cannot refute them, (1, 0, n) when it completed the plan
        (`self.plan`), (2, i, n) when the first i placements are refuted and the first
        i - 1 are not; ask again after n more placements."""
        placed = [tuple(row) for row in placed.tolist()]
        asked = time.monotonic()
        rate = (placements - self._placements) / max(asked - self._since, 1e-6)
        answer = self.oracle.ask(placed, self.deadline)
        kind, high = 0, 0
        if answer is not None and answer is not False:
            kind, self.plan = 1, np.array(answer, np.int64)
        elif answer is False:
            low, high = min(undecided, kept), len(placed)    # placed[:low] not refuted, [:high] refuted
            while high - low > 1:
                mid = (low + high) // 2
                answer = self.oracle.ask(placed[:mid], self.deadline)
                if answer is None:
                    low = mid
                elif answer is False:
                    high = mid
                else:
                    kind, self.plan = 1, np.array(answer, np.int64)
                    break
            else:
                kind = 2
        self._since, self._placements = time.monotonic(), placements
        return kind, high, max(self.first_ask, int(rate * (self._since - asked)))


def _arrays(comp: Component) -> tuple[np.ndarray, ...]:
    """The component as the loop's flat arrays (search_core.py's module doc)."""
    def flat(lists):
        ptr = np.zeros(len(lists) + 1, np.int64)
        ptr[1:] = np.cumsum([len(x) for x in lists])
        return ptr, np.array([k for x in lists for k in x], np.int64)
    as_array = lambda x: np.asarray(x, np.int64)
    return (as_array(comp.size), as_array(comp.lo), as_array(comp.hi), *flat(comp.starts), *flat(comp.covers),
            as_array(comp.first_block))
