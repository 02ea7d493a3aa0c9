"""The canonical search (canonical.c, compiled): google/minimalloc's search, which decides
whether a component fits under a capacity by placing buffers at their floors in order of
offset. It restarts with another order of the buffers whenever it spends its node budget;
the orders are minimalloc's preorderings (docs/placement.md). It runs without the GIL, so
`Background` runs it on a thread of its own beside the other methods."""
from __future__ import annotations

import threading
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


def search(comp: Component, capacity: int, deadline: float,
           stop: bytearray | None = None) -> tuple[list[int] | None, bool]:
    """(a plan within `capacity` or None, whether None is proven: no plan exists). Setting
    `stop[0]` from another thread stops the search, undecided."""
    if sum(len(over) ** 2 for over in comp.covers) > MAX_PAIRS:
        return None, False
    status, offsets = fit(comp.size, comp.lo, comp.hi, len(comp.load), capacity, orders(comp),
                          max(0.0, deadline - time.monotonic()), FIRST_BUDGET, stop or bytearray(1))
    return offsets, status == 0


class Background:
    """The canonical search deciding `capacity` on a thread of its own until `deadline`, while
    the caller tries other methods: the methods do well on different instances, and with a
    core each neither waits for the other. `answered` is set when it has decided (a plan, or
    the proof that none exists), `planned` when it found a plan; `found` and `proven` are its
    answer. Used as a context manager, it is stopped on leaving."""

    def __init__(self, comp: Component, capacity: int, deadline: float):
        self.capacity = capacity
        self.found: list[int] | None = None
        self.proven = False
        self.answered = threading.Event()
        self.planned = threading.Event()
        self._stop = bytearray(1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(comp, deadline), daemon=True)
        self._thread.start()

    def _run(self, comp: Component, deadline: float) -> None:
        try:
            self.found, self.proven = search(comp, self.capacity, deadline, self._stop)
        except BaseException as error:          # raised again in the caller's thread, by stop()
            self._error = error
        if self.found is not None:
            self.planned.set()
        if self.found is not None or self.proven:
            self.answered.set()

    def stop(self) -> None:
        self._stop[0] = 1
        self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
