"""The canonical search (canonical.c, compiled): google/minimalloc's search, which decides
whether a component fits under a capacity by placing buffers at their floors in order of
offset. It restarts with another order of the buffers whenever it spends its node budget;
the orders are minimalloc's preorderings (docs/placement.md). It runs without the GIL, so
`Decision` and `Descent` run it on a thread of their own beside the other methods, which
may ask it for its deepest paths as it goes (`deepest`) for CP-SAT to complete."""
from __future__ import annotations

import random
import threading
import time
from array import array
from pathlib import Path

from ..compiled import load
from .problem import Component
from .stopping import stopped_when

fit = load("planner.place._canonical", Path(__file__).with_name("canonical.c")).fit

FIRST_BUDGET = 500      # nodes before the first restart; each round of orders gets 1.5 times more
# Restarts with more orders than minimalloc's three: where plans are many, one order finds one
# in milliseconds and another wanders for seconds (docs/measurements.md, "Restarts that differ").
PERTURBED = 100
NOISE = 0.3
MAX_RANKS = 2_000_000   # fewer perturbed orders for a large component: 16 MB of ranks at most
# The search keeps every pair of conflicting blocks; past this many (pairs over a section,
# counted for each section) a component is left to the other methods: 10^7 is about 80 MB.
MAX_PAIRS = 10_000_000


def orders(comp: Component, stopping=lambda: False) -> list[list[int]]:
    """Each block's rank in minimalloc's three orders, by width (sections spanned), area
    and the largest load over its sections, in its combinations WAT, TAW and TWA, larger
    first; then by start, earliest first (then wider, then larger): at one floor the search
    then fills the skyline from left to right, as `skyline` does, and plans some instances
    that the other orders never do (docs/measurements.md); then PERTURBED more of
    minimalloc's (fewer past MAX_RANKS ranks in all), each one of them with its first key
    scaled by a random factor per block (seeded: the same component gets the same orders).
    Only those made before `stopping()` is true: on 10^4 blocks all of them take a second."""
    ranks = []
    for keys in _keys(comp):
        if stopping():
            break
        ranks.append(_ranks(keys))
    return ranks


def _keys(comp: Component):
    """The sort keys of each of `orders`, made one order at a time."""
    width = [h - l for l, h in zip(comp.lo, comp.hi)]
    area = [w * s for w, s in zip(width, comp.size)]
    total = [max(comp.load[l:h]) for l, h in zip(comp.lo, comp.hi)]
    combinations = [(width, area, total), (total, area, width), (total, width, area)]
    fixed = [*combinations, ([-lo for lo in comp.lo], width, comp.size)]
    yield from fixed
    rng = random.Random(len(comp.size))
    for _ in range(min(PERTURBED, MAX_RANKS // len(comp.size) - len(fixed))):
        first, second, third = rng.choice(combinations)
        yield [x * rng.uniform(1 - NOISE, 1 + NOISE) for x in first], second, third


def _ranks(keys: tuple[list, list, list]) -> list[int]:
    first, second, third = keys
    rank = [0] * len(first)
    for r, k in enumerate(sorted(range(len(first)), key=lambda k: (-first[k], -second[k], -third[k]))):
        rank[k] = r
    return rank


def too_large(comp: Component) -> bool:
    return sum(count ** 2 for count in comp.counts()) > MAX_PAIRS


def search(comp: Component, capacity: int, deadline: float, stop: bytearray | None = None,
           ranks: list[list[int]] | None = None, deepest: array | None = None) -> tuple[list[int] | None, bool]:
    """(a plan within `capacity` or None, whether None is proven: no plan exists). Setting
    `stop[0]` from another thread stops the search, undecided. `ranks`: `orders(comp)`, made
    once by a caller that searches the component again and again. `deepest`: 3 + 2n int64s
    through which another thread asks for the search's deepest path (`_Background.deepest`)."""
    if too_large(comp):
        return None, False
    status, offsets = fit(comp.size, comp.lo, comp.hi, len(comp.load), capacity, ranks or orders(comp),
                          max(0.0, deadline - time.monotonic()), FIRST_BUDGET, stop or bytearray(1),
                          deepest if deepest is not None else array("q"))
    return offsets, status == 0


def complete(comp: Component, capacity: int, path: list[tuple[int, int]], deadline: float,
             ranks: list[list[int]], until=None) -> list[int] | None:
    """A plan within `capacity` that keeps the placements of `path` ((block, offset) pairs)
    and places the other blocks above their tops, by the canonical search started from
    the skyline they leave; None if it finds none by `deadline` (or once `until`, an event,
    is set). Unlike the search that
    made the path, the others may go below its last offset, wherever the skyline is low.
    `ranks`: the component's orders, kept among the others."""
    tops = [0] * len(comp.load)
    for k, offset in path:
        for s in range(comp.lo[k], comp.hi[k]):
            tops[s] = max(tops[s], offset + comp.size[k])
    placed = dict(path)
    rest = [k for k in range(len(comp.size)) if k not in placed]
    kept = _kept(ranks, rest, deadline) if path else ranks      # with no path, the orders as they are
    if kept is None:
        return None
    flag = bytearray(1)
    with stopped_when(until, lambda: flag.__setitem__(0, 1)):
        status, offsets = fit([comp.size[k] for k in rest], [comp.lo[k] for k in rest], [comp.hi[k] for k in rest],
                              len(comp.load), capacity, kept, max(0.0, deadline - time.monotonic()), FIRST_BUDGET,
                              flag, array("q"), tops)
    if offsets is None:
        return None
    placed.update(zip(rest, offsets))
    return [placed[k] for k in range(len(comp.size))]


def _kept(ranks: list[list[int]], rest: list[int], deadline: float) -> list[list[int]] | None:
    """Each order of `ranks` among the blocks `rest` alone, ranked from 0; None past `deadline`
    (a second on 10^4 blocks: the clock counts here too)."""
    kept = []
    for rank in ranks:
        if time.monotonic() > deadline:
            return None
        order = [0] * len(rest)
        for r, i in enumerate(sorted(range(len(rest)), key=lambda i: rank[rest[i]])):
            order[i] = r
        kept.append(order)
    return kept


class _Background:
    """Canonical searches on a thread of their own until `deadline`, while the caller tries
    other methods: the methods do well on different instances, and with a core each neither
    waits for the other. Used as a context manager, the thread is stopped on leaving."""

    def __init__(self, comp: Component, deadline: float):
        self.comp = comp
        self.began = time.monotonic()
        self._flag = bytearray(1)           # the running search's stop flag
        self.asked: int | None = None       # the capacity it decides
        self._deepest = array("q", bytes(8 * (3 + 2 * len(comp.size))))
        self._stopping = False
        self.ranks: list[list[int]] | None = None      # its orders, made on its thread (`orders`)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._guarded, args=(comp, deadline), daemon=True)
        self._thread.start()

    def _guarded(self, comp: Component, deadline: float) -> None:
        try:
            if not too_large(comp):             # else it would answer nothing, at once, again and again
                self.ranks = orders(comp, lambda: self._stopping)
                if not self._stopping:
                    self._work(comp, deadline)
        except BaseException as error:          # raised again in the caller's thread, by stop()
            self._error = error

    def _work(self, comp: Component, deadline: float) -> None:
        raise NotImplementedError

    def _search(self, comp: Component, capacity: int, deadline: float) -> tuple[list[int] | None, bool]:
        self._flag = flag = bytearray(1)
        self.asked = capacity
        if not self._open(capacity):            # settled before this flag was there to be set
            flag[0] = 1
        return search(comp, capacity, deadline, flag, self.ranks, self._deepest)

    def _open(self, capacity: int) -> bool:
        """Whether deciding `capacity` still tells the caller anything."""
        return not self._stopping

    def deepest(self, wait: float = 0.1) -> list[tuple[int, int]]:
        """The deepest path of the search (deciding `asked`) since the last call: its
        placements in order, as (block, offset); [] if it does not answer within `wait` s."""
        channel = self._deepest
        answers = channel[1]
        channel[0] = 1
        end = time.monotonic() + wait
        while channel[1] == answers:
            if time.monotonic() > end or not self._thread.is_alive():
                return []
            time.sleep(0.001)
        return [(channel[3 + 2 * d], channel[4 + 2 * d]) for d in range(channel[2])]

    @property
    def searching(self) -> bool:
        """Whether its thread still runs: it ends at once on a component too large for it."""
        return self._thread.is_alive()

    def run_until(self, deadline: float) -> None:
        """Wait while it searches, up to `deadline`: until it answers, runs out of time, or
        gives up (a component too large for it ends it at once)."""
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        self._stopping = True
        self._flag[0] = 1
        self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Decision(_Background):
    """Decides `capacity`. `answered` is set when it has (a plan, or the proof that none
    exists); `found` and `proven` are its answer."""

    def __init__(self, comp: Component, capacity: int, deadline: float):
        self.capacity = capacity
        self.found: list[int] | None = None
        self.found_flag = bytearray(1)      # set with a plan, and `answered_flag` with `answered`: stop
        self.answered_flag = bytearray(1)   # flags for compiled work beside it
        self.proven = False
        self.answered = threading.Event()
        super().__init__(comp, deadline)

    def _work(self, comp: Component, deadline: float) -> None:
        self.found, self.proven = self._search(comp, self.capacity, deadline)
        if self.found is not None:
            self.found_flag[0] = 1
        if self.found is not None or self.proven:
            self.answered_flag[0] = 1
            self.answered.set()


# Of its time, the share a Descent spends on capacities between the bound and the best plan
# first; what one of them gets at first (each round of them gets twice as much); and the
# least step down from the best plan, as a share of its arena. Where there is room, plans
# come in milliseconds; where there is little, the steps down are what the time buys
# (docs/measurements.md, "Minimizing by steps down").
DESCENT_SHARE = 0.65
STEP_SHARE = 0.02
FINEST_STEP = 0.005


class Descent(_Background):
    """The least arena from above, between `bound` (proven: no plan below it) and `upper`
    (a plan's arena). First the bound, for STEP_SHARE of the time: where it is the
    optimum, a plan there often comes in milliseconds, sooner than by the steps down to
    it. Then, for DESCENT_SHARE of the time, steps down from `upper`: halfway to the bound
    first, each for STEP_SHARE of the time; a plan found lowers `upper` and the same step
    is taken from there, a capacity not decided in its time halves the step. Once the step
    is under FINEST_STEP of `upper`, the steps start again from halfway, each with twice the
    time: a capacity that takes seconds is worth more than the slivers under the best plan.
    Then the bound itself with all the time left, each proof moving it up a step.
    `best` is the best plan found; the caller's own proofs come in by `lift`, its plans by
    `offer`. `settled` is set once the best plan meets the bound."""

    def __init__(self, comp: Component, bound: int, upper: int, deadline: float):
        self.bound, self.upper = bound, upper
        self.best: list[int] | None = None
        self.settled = threading.Event()
        self._extent = comp.extent
        self._lock = threading.Lock()           # `best` and `upper` change together, from two threads
        super().__init__(comp, deadline)

    def offer(self, plan: list[int]) -> None:
        """A plan the caller found: the best if it is better; a capacity it meets is not
        worth deciding any more."""
        self._improve(plan)
        if self.asked is not None and self.asked >= self.upper:
            self._flag[0] = 1

    def _improve(self, plan: list[int]) -> None:
        with self._lock:
            if self._extent(plan) < self.upper:
                self.best, self.upper = plan, self._extent(plan)
        self._settle()

    def lift(self, bound: int) -> None:
        """The caller proved that nothing fits below `bound`."""
        self.bound = max(self.bound, bound)
        self._settle()
        if self.asked is not None and not self._open(self.asked):
            self._flag[0] = 1                   # its question is settled

    def deciding(self, capacity: int) -> _Watch:
        """Something with `is_set()`, true once `capacity` is decided here or the best plan
        meets the bound: for a method deciding `capacity` beside this one, as its stop."""
        return _Watch(self, capacity)

    def _open(self, capacity: int) -> bool:
        return super()._open(capacity) and capacity >= self.bound and not self.settled.is_set()

    def _settle(self) -> None:
        if self.upper <= self.bound:
            self.settled.set()

    def _work(self, comp: Component, deadline: float) -> None:
        start = time.monotonic()
        descent_end = start + DESCENT_SHARE * (deadline - start)
        probe = STEP_SHARE * (deadline - start)
        self._probe(comp, self.bound, min(deadline, start + probe))
        step = max(1, (self.upper - self.bound) // 2)
        while not self._stopping and self.bound < self.upper and time.monotonic() < descent_end:
            capacity = max(self.bound, self.upper - step)
            decided = self._probe(comp, capacity, min(descent_end, time.monotonic() + probe))
            if not decided and capacity < self.upper:       # (else the caller's plan stopped it)
                step //= 2
                if step < FINEST_STEP * self.upper:
                    step, probe = max(1, (self.upper - self.bound) // 2), 2 * probe
        while not self._stopping and self.bound < self.upper and time.monotonic() < deadline:
            self._probe(comp, self.bound, deadline)

    def _probe(self, comp: Component, capacity: int, deadline: float) -> bool:
        """Decide `capacity` by `deadline`; whether it was decided."""
        found, proven = self._search(comp, capacity, deadline)
        if found is not None:
            self._improve(found)
        elif proven:
            self.bound = max(self.bound, comp.step_above(capacity))
        self._settle()
        return found is not None or proven


class _Watch:
    def __init__(self, descent: Descent, capacity: int):
        self.descent, self.capacity = descent, capacity

    def is_set(self) -> bool:
        return self.descent.settled.is_set() or self.descent.bound > self.capacity
