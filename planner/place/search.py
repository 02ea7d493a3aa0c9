"""The skyline search: does a component fit under a capacity?

Buffers are dropped bottom-up onto a skyline of per-section floors (minimalloc's
canonical solutions), pruned by spatial inference, failed states remembered; every so
often CP-SAT (the oracle) is asked whether the placements so far can be completed at
all, and the search jumps back past the first one it refutes.

Why this search is complete. Any valid plan can be pushed down until every buffer sits
at offset 0 or on top of a buffer it conflicts with. Take such a plan that agrees with
the buffers placed so far, and the lowest floor m, leftmost, at section s. Either a
buffer of the plan covers byte m of s: it starts at s (the sections left of s are
higher) and every section under it is at m, so it is one of the candidates tried. Or
byte m of s stays empty: then the next buffer over s sits at its floor, if that is
above m, or rests on an unplaced buffer, at least m + the smallest unplaced size;
`_raise` lifts s to the least of these and loses no plan.
"""
from __future__ import annotations

import threading
import time
from typing import NamedTuple

from .loading import or_tools_in_time
from .problem import Component


class Timeout(Exception):
    """The deadline passed, or the caller's `stop` was set."""


class Solved(Exception):
    """The oracle completed the plan: `offsets`."""
    def __init__(self, offsets: list[int]):
        self.offsets = offsets


class Refuted(Exception):
    """The first `depth` placements cannot be completed: unwind to the frame that made
    the last of them, which tries its next candidate."""
    def __init__(self, depth: int):
        self.depth = depth


class Placed(NamedTuple):
    """On the trail: block `block` was placed at `offset`."""
    block: int
    offset: int


class Lifted(NamedTuple):
    """On the trail: section `section` was lifted from `floor`, its bytes left empty."""
    section: int
    floor: int


class Search:
    """Decide whether a component fits under `capacity`; on success `offsets` holds a plan.

    State: `floor[s]`, the lowest byte of section s still free to the unplaced blocks,
    and `slack[s] = capacity - floor[s] - (sizes of unplaced blocks over s)`. Placing a
    block on the floor moves floor and unplaced sizes by the same amount, so only
    leaving space empty spends slack; when slack would go negative, the branch fails
    (spatial inference). `short` records by how much the least-short failure missed:
    no capacity below `capacity + short` can succeed, since the same tree would fail.
    Every change goes on `trail`, so backtracking is popping it to a mark.

    Every `ask_every` placements the oracle is asked about the placements so far; when
    it refutes them, bisection finds the first placement it refutes, and the search
    unwinds to the frame that made it (`live` holds the depths of the frames on the
    stack). A state is remembered as failed only when its subtree failed with no
    refutation in it: a refutation speaks of all placements, not of one part.

    `stop` (anything with `is_set()`, such as a threading.Event) ends the search with
    Timeout once it is set: another method has settled the question.
    """

    def __init__(self, comp: Component, capacity: int, deadline: float, stop=None):
        self.comp, self.capacity, self.deadline = comp, capacity, deadline
        self.stop = stop or threading.Event()
        self.oracle = None                  # CP-SAT, at the first question (OR-Tools is slow to import)
        self.ask_every = max(64, len(comp.size) // 2)
        self.placements = 0                 # made so far, undone or not
        self.depth = 0                      # blocks placed now
        self.undecided = 0                  # the oracle could not refute the first this many placements,
        self.kept = 0                       # and the first this many have not moved since it was asked
        self.live: list[int] = []           # the depth each frame on the stack placed at
        self.refutations = 0
        self.floor = [0] * len(comp.load)
        self.slack = [capacity - load for load in comp.load]
        self.offsets: list[int | None] = [None] * len(comp.size)
        self.placed_mask = 0
        self.trail: list[Placed | Lifted] = []
        self.failed: set[tuple] = set()
        self.short: int | None = None

    def run(self) -> bool:
        if min(self.slack) < 0:
            self.short = -min(self.slack)
            return False
        try:
            return self._fits(0, len(self.floor))
        except Solved as solved:
            self.offsets = solved.offsets
            return True

    def _fits(self, a: int, b: int) -> bool:
        """Place the unplaced blocks of sections [a, b), none of which crosses a or b.
        Parts that no unplaced block joins are independent: when one fails, no choice
        made in another can save it (minimalloc's dynamic decomposition)."""
        for c, d in self._parts(a, b):      # a plain loop: all() would recurse through C frames
            if not self._fits_part(c, d):
                return False
        return True

    def _fits_part(self, a: int, b: int) -> bool:
        key = (a, tuple(self.floor[a:b]), self._unplaced_key(a, b))
        if key in self.failed:
            return False
        mark, refutations = len(self.trail), self.refutations
        while True:
            self._on_time()
            m = min(self.floor[a:b])
            s = self.floor.index(m, a, b)
            for k in self._candidates(s, m):
                undo = len(self.trail)
                self._place(k, m)
                self.live.append(self.depth)
                try:
                    self._consult()
                    if self._supported(k) and self._fits(a, b):
                        return True
                except Refuted as refuted:
                    if refuted.depth != self.live[-1]:
                        self._undo(undo)
                        raise
                finally:
                    self.live.pop()
                self._undo(undo)
            up = self._raise(a, b, s, m)
            if up > self.slack[s]:
                self._missed(up - self.slack[s])
                self._undo(mark)
                if self.refutations == refutations:
                    self.failed.add(key)
                return False
            self._lift(s, up)

    def _consult(self) -> None:
        """Every `ask_every` placements, ask the oracle about all of them: raise Solved
        with its plan, or Refuted at the first placement it refutes (by bisection,
        between a prefix it could not refute and one it did)."""
        self.placements += 1
        if self.placements % self.ask_every:
            return
        if self.oracle is None:
            if not or_tools_in_time(self.deadline):     # the search goes on alone
                return
            from .cpsat import Oracle
            self.oracle = Oracle(self.comp, self.capacity)
        placed = self.placed
        answer = self.oracle.ask(placed, self.deadline)
        if answer is None:
            self.undecided, self.kept = len(placed), self.depth
            return
        if answer:
            raise Solved(answer)
        low, high = min(self.undecided, self.kept), len(placed)   # placed[:low] not refuted, [:high] refuted
        while high - low > 1:
            mid = (low + high) // 2
            answer = self.oracle.ask(placed[:mid], self.deadline)
            if answer is None:
                low = mid
            elif answer is False:
                high = mid
            else:
                raise Solved(answer)
        self.undecided, self.kept = low, self.depth
        self.refutations += 1
        # a refuted branch might fit one step up: claim no more
        self._missed(self.comp.step_above(self.capacity) - self.capacity)
        raise Refuted(next(depth for depth in self.live if depth >= high))

    @property
    def placed(self) -> list[Placed]:
        """The placements on the trail, in order."""
        return [entry for entry in self.trail if type(entry) is Placed]

    def _on_time(self) -> None:
        """Timeout once the deadline has passed or the caller's `stop` is set."""
        if time.monotonic() > self.deadline or self.stop.is_set():
            raise Timeout

    def _supported(self, k: int) -> bool:
        """Spatial inference after placing block k. An unplaced block sits at or above its
        floor (the highest floor under it), so the bytes [floor[s], x) of a section s hold
        only blocks whose floor is below x, or else stay empty, which costs slack. Only
        sections under unplaced blocks that share a section with k can have changed."""
        comp, floor, slack = self.comp, self.floor, self.slack
        a, b = comp.lo[k], comp.hi[k]
        for s in range(comp.lo[k], comp.hi[k]):
            self._on_time()
            for j in comp.covers[s]:
                if self.offsets[j] is None:
                    a, b = min(a, comp.lo[j]), max(b, comp.hi[j])
        lowest: dict[int, int] = {}
        for s in range(a, b):
            self._on_time()                 # one call over 10^4 long blocks took 19 s
            over = []
            for j in comp.covers[s]:
                if self.offsets[j] is None:
                    if j not in lowest:
                        lowest[j] = max(floor[comp.lo[j]:comp.hi[j]])
                    over.append((lowest[j], comp.size[j]))
            over.sort()
            below = 0                      # summed sizes of the blocks with a lower floor
            for x, size in over:
                missing = x - floor[s] - slack[s] - below
                if missing > 0:
                    self._missed(missing)
                    return False
                below += size
        return True

    def _parts(self, a: int, b: int) -> list[tuple[int, int]]:
        """The maximal ranges of sections in [a, b) chained together by unplaced blocks."""
        comp, parts = self.comp, []
        for s in range(a, b):
            end = max((comp.hi[k] for k in comp.starts[s] if self.offsets[k] is None), default=s)
            if parts and s < parts[-1][1]:
                parts[-1][1] = max(parts[-1][1], end)
            elif end > s:
                parts.append([s, end])
        return parts

    def _unplaced_key(self, a: int, b: int) -> int:
        """Which blocks starting in [a, b) are still unplaced: blocks are numbered by start."""
        i, j = self.comp.first_block[a], self.comp.first_block[b]
        return (self.placed_mask >> i) & ((1 << (j - i)) - 1)

    def _candidates(self, s: int, m: int) -> list[int]:
        """Unplaced blocks starting at s whose sections are all at floor m; of blocks
        alike in span and size only the first, since the others lead to the same states.
        Blocks whose edges come flush with the skyline around them go first."""
        comp, floor, seen, found = self.comp, self.floor, set(), []
        left = floor[s - 1] if s > 0 else None
        for k in comp.starts[s]:
            hi = comp.hi[k]
            if self.offsets[k] is None and max(floor[s:hi]) == m:
                key = (hi, comp.size[k])
                if key not in seen:
                    seen.add(key)
                    top = m + comp.size[k]
                    right = floor[hi] if hi < len(floor) else None
                    found.append((-(top == left) - (top == right), len(found), k))
        return [k for *_, k in sorted(found)]

    def _raise(self, a: int, b: int, s: int, m: int) -> int:
        """How far section s rises when byte m of it stays empty (see the module doc)."""
        comp, floor = self.comp, self.floor
        least, smallest = None, None
        for k in comp.covers[s]:
            if self.offsets[k] is None:
                top = max(floor[comp.lo[k]:comp.hi[k]])
                if top == m:
                    smallest = smallest or min(comp.size[j] for j in range(comp.first_block[a], comp.first_block[b])
                                               if self.offsets[j] is None)
                    top = m + smallest
                least = top - m if least is None else min(least, top - m)
        return least

    def _place(self, k: int, m: int) -> None:
        comp = self.comp
        self.trail.append(Placed(k, m))
        self.depth += 1
        self.offsets[k] = m
        self.floor[comp.lo[k]:comp.hi[k]] = [m + comp.size[k]] * (comp.hi[k] - comp.lo[k])
        self.placed_mask ^= 1 << k

    def _lift(self, s: int, up: int) -> None:
        self.trail.append(Lifted(s, self.floor[s]))
        self.floor[s] += up
        self.slack[s] -= up

    def _undo(self, mark: int) -> None:
        comp = self.comp
        while len(self.trail) > mark:
            entry = self.trail.pop()
            if type(entry) is Placed:
                k = entry.block
                self.depth -= 1
                self.kept = min(self.kept, self.depth)
                self.offsets[k] = None
                self.floor[comp.lo[k]:comp.hi[k]] = [entry.offset] * (comp.hi[k] - comp.lo[k])
                self.placed_mask ^= 1 << k
            else:
                self.slack[entry.section] += self.floor[entry.section] - entry.floor
                self.floor[entry.section] = entry.floor

    def _missed(self, by: int) -> None:
        self.short = by if self.short is None else min(self.short, by)
