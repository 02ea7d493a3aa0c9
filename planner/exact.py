"""Exact offset placement: the minimum arena for given lifetimes, with a proof of it.

Kept apart, as in google/minimalloc's solver:
- the problem: blocks split into independent components, time cut into sections;
- the search: does a component fit under a capacity? Buffers are dropped bottom-up
  onto a skyline of per-section floors (minimalloc's canonical solutions), pruned by
  spatial inference, failed states remembered; every so often CP-SAT is asked whether
  the placements so far can be completed at all, and the search jumps back past the
  first one it refutes;
- the minimization: capacities from the lower bound up, each failed search naming the
  next capacity worth trying (as IDA* does), until one fits; when this search has used
  its share of the time limit, layer splits (`Stacking`, planner/layers.py) look for a
  plan at the bound, and then OR-Tools CP-SAT (no_overlap_2d) takes over the component,
  since each does well where the others thrash (docs/exact.md has the measurements).

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

import bisect
import functools
import math
import multiprocessing.connection
import os
import sys
import time
from dataclasses import dataclass

from .graph import Block
from .layers import Layers
from .strategies import arena as arena_of, lower_bound, skyline


@dataclass
class Component:
    """Blocks whose lifetimes chain into one span of time; no block outside crosses it.
    Blocks are renumbered 0..n-1 here, in order of start; time is cut into sections
    wherever a block starts or ends, so block k covers sections [lo[k], hi[k])."""
    blocks: list[int]               # index of each local block in the caller's list
    size: list[int]
    lo: list[int]
    hi: list[int]
    starts: list[list[int]]         # per section: the blocks starting there, in trial order
    covers: list[list[int]]         # per section: the blocks over it
    load: list[int]                 # per section: summed sizes of the blocks over it
    first_block: list[int]          # per section, and one past the last: the first block starting there or later

    @property
    def lower(self) -> int:
        return max(self.load)

    def mostly_full(self, capacity: int) -> bool:
        """Whether at least half the sections hold `capacity`: only then do layer splits
        mean something. Where sections have room to spare, layers can share it out in
        countless ways (on dense-200 the splits found no plan in all their time)."""
        return 2 * sum(load == capacity for load in self.load) >= len(self.load)

    @functools.cached_property
    def unit(self) -> int:
        """The gcd of the sizes: a canonical plan's offsets and arena are multiples of it."""
        return functools.reduce(math.gcd, self.size)


def components(blocks: list[Block]) -> list[Component]:
    """Split the blocks of nonzero size into components: where no block crosses a point
    in time, the two sides are independent problems."""
    order = sorted((i for i, b in enumerate(blocks) if b[2] > 0), key=lambda i: blocks[i][0])
    groups, end = [], None
    for i in order:
        if end is None or blocks[i][0] > end:
            groups.append([])
            end = blocks[i][1]
        groups[-1].append(i)
        end = max(end, blocks[i][1])
    return [_component(blocks, g) for g in groups]


def _component(blocks: list[Block], indices: list[int]) -> Component:
    """`indices` in order of first step."""
    cuts = sorted({blocks[i][0] for i in indices} | {blocks[i][1] + 1 for i in indices})
    section = {t: s for s, t in enumerate(cuts)}
    size = [blocks[i][2] for i in indices]
    lo = [section[blocks[i][0]] for i in indices]
    hi = [section[blocks[i][1] + 1] for i in indices]
    sections = len(cuts) - 1
    starts: list[list[int]] = [[] for _ in range(sections)]
    covers: list[list[int]] = [[] for _ in range(sections)]
    load = [0] * sections
    # Trial order: the longest block first, then the largest; long blocks shape the
    # skyline for everyone after them, short ones fill what is left.
    for k in sorted(range(len(indices)), key=lambda k: (lo[k] - hi[k], -size[k])):
        starts[lo[k]].append(k)
        for s in range(lo[k], hi[k]):
            covers[s].append(k)
            load[s] += size[k]
    first_block = [bisect.bisect_left(lo, s) for s in range(sections + 1)]
    return Component(indices, size, lo, hi, starts, covers, load, first_block)


class Timeout(Exception):
    pass


class Solved(Exception):
    """The oracle completed the plan: `offsets`."""
    def __init__(self, offsets: list[int]):
        self.offsets = offsets


class Refuted(Exception):
    """The first `depth` placements cannot be completed: unwind to the frame that made
    the last of them, which tries its next candidate."""
    def __init__(self, depth: int):
        self.depth = depth


class Oracle:
    """CP-SAT asked whether blocks placed at given offsets can be completed under the
    capacity. The search cannot refute some wrong placements without enumerating every
    arrangement of the blocks above them; CP-SAT's propagation often does it in
    milliseconds (docs/exact.md). The model is built once, at the first question; a
    question fixes the offsets by narrowing domains, and widens them back after."""

    LIMIT = 0.1     # seconds a question: the answers that help come in milliseconds

    def __init__(self, comp: Component, capacity: int):
        self.comp, self.capacity = comp, capacity
        self.model = None

    def ask(self, placed: list[tuple[int, int]], deadline: float) -> list[int] | bool | None:
        """A completed plan, False when there is none, None when undecided in time."""
        from ortools.sat.python import cp_model
        if self.model is None:
            self._build()
        unit, domains = self.comp.unit, self.model.proto.variables
        widths = [(domains[k].domain[0], domains[k].domain[1]) for k, _ in placed]
        for k, offset in placed:
            domains[k].domain[0] = domains[k].domain[1] = offset // unit
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.01, min(self.LIMIT, deadline - time.monotonic()))
        status = solver.solve(self.model)
        for (k, _), (low, high) in zip(placed, widths):
            domains[k].domain[0], domains[k].domain[1] = low, high
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return [solver.value(y) * unit for y in self.offsets]
        return False if status == cp_model.INFEASIBLE else None

    def _build(self) -> None:
        from ortools.sat.python import cp_model
        self.model = cp_model.CpModel()
        self.offsets = _rectangles(self.model, self.comp, self.capacity // self.comp.unit)   # variable k: block k


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
    """

    def __init__(self, comp: Component, capacity: int, deadline: float):
        self.comp, self.capacity, self.deadline = comp, capacity, deadline
        self.oracle = Oracle(comp, capacity)
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
        self.trail: list[tuple[int, int, int]] = []    # (block, offset, -1) or (-1, section, old floor)
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
            if time.monotonic() > self.deadline:
                raise Timeout
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
        step = -(-(self.capacity + 1) // self.comp.unit) * self.comp.unit - self.capacity
        self._missed(step)       # a refuted branch might fit one step up: claim no more
        raise Refuted(next(depth for depth in self.live if depth >= high))

    @property
    def placed(self) -> list[tuple[int, int]]:
        """(block, offset) of the placements on the trail, in order."""
        return [(k, x) for k, x, _ in self.trail if k >= 0]

    def _supported(self, k: int) -> bool:
        """Spatial inference after placing block k. An unplaced block sits at or above its
        floor (the highest floor under it), so the bytes [floor[s], x) of a section s hold
        only blocks whose floor is below x, or else stay empty, which costs slack. Only
        sections under unplaced blocks that share a section with k can have changed."""
        comp, floor, slack = self.comp, self.floor, self.slack
        a, b = comp.lo[k], comp.hi[k]
        for s in range(comp.lo[k], comp.hi[k]):
            for j in comp.covers[s]:
                if self.offsets[j] is None:
                    a, b = min(a, comp.lo[j]), max(b, comp.hi[j])
        lowest: dict[int, int] = {}
        for s in range(a, b):
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
        self.trail.append((k, m, -1))
        self.depth += 1
        self.offsets[k] = m
        self.floor[comp.lo[k]:comp.hi[k]] = [m + comp.size[k]] * (comp.hi[k] - comp.lo[k])
        self.placed_mask ^= 1 << k

    def _lift(self, s: int, up: int) -> None:
        self.trail.append((-1, s, self.floor[s]))
        self.floor[s] += up
        self.slack[s] -= up

    def _undo(self, mark: int) -> None:
        comp = self.comp
        while len(self.trail) > mark:
            k, x, old = self.trail.pop()
            if k >= 0:
                self.depth -= 1
                self.kept = min(self.kept, self.depth)
                self.offsets[k] = None
                self.floor[comp.lo[k]:comp.hi[k]] = [x] * (comp.hi[k] - comp.lo[k])
                self.placed_mask ^= 1 << k
            else:
                self.slack[x] += self.floor[x] - old
                self.floor[x] = old

    def _missed(self, by: int) -> None:
        self.short = by if self.short is None else min(self.short, by)


@dataclass
class Result:
    offsets: list[int]
    bound: int            # proven: no arena below it exists
    optimal: bool


# Of the time left, the share the skyline search (with its oracle) gets first: on cut
# families `auto` reached the optimum on 8/9/5 of 10 at 150/300/500 buffers with 0.5,
# 10/9/5 with 0.3 (docs/exact.md). Where layer splits (`Stacking`) follow, it gets less
# (what it solves there it mostly solves in milliseconds) and they take STACK_SHARE of the
# rest. They follow only where the component is mostly full at the bound (`mostly_full`).
# CP-SAT takes the rest, as it still solves some instances the others do not.
SEARCH_SHARE = 0.3
SEARCH_SHARE_LAYERED = 0.1
STACK_SHARE = 0.8


def solve(blocks: list[Block], start: list[int], time_limit: float) -> Result:
    """Minimize the arena of `blocks`, starting from the plan `start` (a heuristic's).
    Returns the best plan found and the best proven bound when `time_limit` runs out."""
    deadline = time.monotonic() + time_limit
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 2 * len(blocks) + 1000))   # two frames a placed block
    offsets = [0 if b[2] == 0 else o for o, b in zip(start, blocks)]
    plans = []
    for comp in components(blocks):
        low = min(offsets[i] for i in comp.blocks)          # a heuristic may float a component
        plans.append((comp, [offsets[i] - low for i in comp.blocks]))
    bound = max((comp.lower for comp, _ in plans), default=0)
    # The components the heuristic left above the bound share the time, the smallest first,
    # each taking an equal part of what is left: one hard component must not starve the
    # rest, and what a small one leaves goes to the larger ones.
    todo = sorted((k for k, (comp, plan) in enumerate(plans) if _arena(comp, plan) > bound),
                  key=lambda k: len(plans[k][0].size))
    for done, k in enumerate(todo):
        comp, plan = plans[k]
        share = (deadline - time.monotonic()) / (len(todo) - done)
        plan, bound = _minimize(comp, plan, bound, time.monotonic() + share)
        plans[k] = comp, plan
    for comp, plan in plans:
        for i, o in zip(comp.blocks, plan):
            offsets[i] = o
    arena = arena_of(blocks, offsets)
    return Result(offsets, min(bound, arena), arena <= bound)


def _minimize(comp: Component, plan: list[int], bound: int, deadline: float) -> tuple[list[int], int]:
    """The best plan of one component and a proven bound: no arena below it fits."""
    upper = _arena(comp, plan)
    if upper <= bound or time.monotonic() >= deadline:
        return plan, bound
    layered = comp.mostly_full(bound)
    share = SEARCH_SHARE_LAYERED if layered else SEARCH_SHARE
    found, bound = _search(comp, bound, upper, time.monotonic() + share * (deadline - time.monotonic()))
    if found is None and bound < upper and layered:
        found = _stacked(comp, bound, time.monotonic() + STACK_SHARE * (deadline - time.monotonic()))
    if found is None and bound < upper:
        found, bound = _cpsat(comp, plan, bound, deadline)
    if found is not None and _arena(comp, found) < upper:
        return found, bound
    return plan, bound


def _arena(comp: Component, plan: list[int]) -> int:
    return max(o + size for o, size in zip(plan, comp.size))


def _search(comp: Component, bound: int, upper: int, deadline: float) -> tuple[list[int] | None, int]:
    """Capacities from `bound` up to `upper` (which a plan already meets), each failure
    naming the next one worth trying, until a plan fits or the deadline passes:
    (plan or None, proven bound)."""
    while bound < upper:
        search = Search(comp, bound, deadline)
        try:
            if search.run():
                return search.offsets, bound
        except Timeout:
            return None, bound
        bound += search.short
    return None, upper


class Stuck(Exception):
    """No plan was found for `blocks` (indices into the caller's list) under `capacity`:
    the search proved there is none, or the layer splits ran out of splits or of time."""
    def __init__(self, blocks: list[int], capacity: int):
        self.blocks, self.capacity = blocks, capacity


# The kinds of split tried, in order: (layers, whether every layer must fall apart in
# time), fewest layers first. Layers that all fall apart leave only small pieces, and the
# fewest such layers is a strong hint: on cut instances it is often the construction's
# own count, whose splits plan at once, where a peel finds wrong layers (docs/exact.md).
# When a component has no such split, one layer that falls apart is peeled off and the
# rest split again.
SPLITS = tuple((count, True) for count in range(2, 9)) + ((2, False),)
# What the rest of a peel tries: only peels. The peel is tried once no split into layers
# that all fall apart has planned the piece; where the piece had none, a split of the rest
# into k such layers would be, with the peeled layer, a split of the piece into k + 1, so
# the rest has none either (each rest proving that again cost about 0.7 s on a 300-block
# piece). Where the piece had some that failed, the rest may have one: not tried.
PEELS = ((2, False),)
# Of the time left at a split, the share its layers get: a wrong split is seldom refuted
# quickly (the groups look plannable until deep down), so it is given up when this runs out.
LAYER_SHARE = 0.5
# How long `Stacking` takes varies widely with the splits CP-SAT happens to find first, and
# a slow run is seldom slow for another seed. So where the machine has the cores, these
# members run at once, each in its own process, and the first plan wins: (seed of the
# split models, share of a split's layers). The second gives deep chains of splits more
# time, which some pieces need (docs/exact.md).
MEMBERS = ((0, LAYER_SHARE), (1000, 0.7))


def whole_span(blocks: list[Block]) -> list[int]:
    """The blocks live over the whole span of `blocks` (one component). Each conflicts
    with every other block, so any plan can be rearranged to put them at the bottom."""
    span = (min(b[0] for b in blocks), max(b[1] for b in blocks))
    return [k for k, b in enumerate(blocks) if (b[0], b[1]) == span]


def _stacked(comp: Component, capacity: int, deadline: float) -> list[int] | None:
    """A plan of the component under `capacity` from layer splits, or None."""
    blocks = [(lo, hi - 1, size) for lo, hi, size in zip(comp.lo, comp.hi, comp.size)]
    members = [Stacking(seed, share) for seed, share in MEMBERS]
    # Members at once need a second core, and fork (the blocks and the module as they are,
    # at once), which is safe on Linux, where alone os.sched_getaffinity exists.
    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        return _member(members[0], blocks, capacity, deadline)
    context = multiprocessing.get_context("fork")
    pipes, processes = [], []
    for member in members:
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_send, args=(send, member, blocks, capacity, deadline), daemon=True)
        process.start()
        send.close()
        pipes.append(receive)
        processes.append(process)
    try:
        while pipes and (left := deadline - time.monotonic()) > 0:
            for pipe in multiprocessing.connection.wait(pipes, left):
                pipes.remove(pipe)
                try:
                    plan = pipe.recv()
                except EOFError:        # the member died
                    plan = None
                if plan is not None:
                    return plan
        return None
    finally:
        for process in processes:
            process.kill()
            process.join()


def _member(stacking: Stacking, blocks: list[Block], capacity: int, deadline: float) -> list[int] | None:
    try:
        return stacking.plan(blocks, capacity, deadline)
    except Stuck:
        return None


def _send(pipe, stacking: Stacking, blocks: list[Block], capacity: int, deadline: float) -> None:
    pipe.send(_member(stacking, blocks, capacity, deadline))


class Stacking:
    """Plans found by splitting blocks into layers (planner/layers.py), each layer into
    its pieces in time, and so on down to pieces that the skyline heuristic or the search
    plans alone. The same piece comes up under many splits, so what found no plan with
    time to spare is remembered: blocks -> the highest capacity they failed under. (What
    ran out of its share of the time is not: under another split it may get more.)"""

    def __init__(self, seed: int = 0, layer_share: float = LAYER_SHARE):
        self.seed, self.layer_share = seed, layer_share
        self.failed: dict[tuple, int] = {}

    def plan(self, blocks: list[Block], capacity: int, deadline: float, splits=SPLITS) -> list[int]:
        """A plan of `blocks` under `capacity`, or Stuck; `splits` are the kinds of split
        tried, in order."""
        key = tuple(sorted(blocks))
        if lower_bound(blocks) > capacity or self.failed.get(key, -1) >= capacity:
            raise Stuck(list(range(len(blocks))), capacity)
        offsets = skyline(blocks)
        if arena_of(blocks, offsets) <= capacity:
            return offsets
        offsets = [0] * len(blocks)
        for comp in sorted(components(blocks), key=lambda comp: len(comp.size)):
            try:
                plan = self._component(comp, [blocks[i] for i in comp.blocks], capacity, deadline, splits)
            except Stuck as stuck:
                if time.monotonic() < deadline:
                    self.failed[key] = max(capacity, self.failed.get(key, -1))
                raise Stuck([comp.blocks[k] for k in stuck.blocks], stuck.capacity)
            for i, o in zip(comp.blocks, plan):
                offsets[i] = o
        return offsets

    def _component(self, comp: Component, blocks: list[Block], capacity: int, deadline: float,
                   splits) -> list[int]:
        """`blocks` are the component's, in its order."""
        whole = whole_span(blocks)
        if whole:
            below = sum(blocks[k][2] for k in whole)
            rest = [k for k in range(len(blocks)) if k not in whole]
            try:
                return self._layers(blocks, [(whole, below), (rest, capacity - below)], deadline, splits)
            except Stuck:       # then no plan of the whole fits: say so, for the caller forbids what is named
                raise Stuck(list(range(len(blocks))), capacity) from None
        # A moment of the search: it plans or refutes most small pieces in milliseconds.
        search = Search(comp, capacity, min(deadline, time.monotonic() + 0.01 + 1e-4 * len(blocks)))
        try:
            if search.run():
                return search.offsets
            raise Stuck(list(range(len(blocks))), capacity)
        except Timeout:
            pass
        for count, every_cut in splits:
            layers = Layers(comp, capacity, count, every_cut, self.seed)
            while (split := layers.next(deadline)) is not None:
                now = time.monotonic()
                try:
                    return self._layers(blocks, split, now + self.layer_share * (deadline - now),
                                        SPLITS if every_cut else PEELS)
                except Stuck as stuck:
                    layers.forbid(stuck.blocks, stuck.capacity)
            if time.monotonic() >= deadline:
                break
        raise Stuck(list(range(len(blocks))), capacity)

    def _layers(self, blocks: list[Block], split: list[tuple[list[int], int]], deadline: float,
                rest) -> list[int]:
        """Each layer planned under its height, stacked bottom first; the last with the
        kinds of split `rest`, the others with all."""
        offsets, base = [0] * len(blocks), 0
        for j, (group, height) in enumerate(split):
            try:
                plan = self.plan([blocks[k] for k in group], height, deadline,
                                 rest if j == len(split) - 1 else SPLITS)
            except Stuck as stuck:
                raise Stuck([group[i] for i in stuck.blocks], stuck.capacity)
            for k, o in zip(group, plan):
                offsets[k] = base + o
            base += height
        return offsets


def _cpsat(comp: Component, plan: list[int], bound: int, deadline: float):
    """OR-Tools CP-SAT on the same component: one rectangle per block, sections by bytes,
    no two overlapping (no_overlap_2d). First at the bound alone, where tight offset
    domains let the constraint propagate hard; if that fails, minimizing the capacity
    from the plan down. (plan or None, proven bound)."""
    from ortools.sat.python import cp_model
    unit = comp.unit                        # sizes in units of their gcd: smaller domains
    lowest, upper = -(-bound // unit), _arena(comp, plan) // unit
    halfway = (time.monotonic() + deadline) / 2
    status, found, _ = _cpsat_run(comp, unit, lowest, lowest, None, halfway)
    if found is not None:
        return found, bound
    if status == cp_model.INFEASIBLE:
        lowest += 1
    status, found, proven = _cpsat_run(comp, unit, lowest, upper, plan, deadline)
    return found, max(bound, lowest * unit, proven * unit)


def _cpsat_run(comp: Component, unit: int, lowest: int, highest: int, hint: list[int] | None,
               deadline: float):
    """Minimize the capacity within [lowest, highest] units: (status, plan or None,
    proven lower bound in units)."""
    from ortools.sat.python import cp_model
    twins = _twins(comp)
    if hint is not None:
        hint = list(hint)
        for group in twins:                     # swapping interchangeable blocks keeps a plan valid
            for k, o in zip(group, sorted(hint[k] for k in group)):
                hint[k] = o
    model = cp_model.CpModel()
    capacity = model.new_int_var(lowest, highest, "capacity")
    offsets = _rectangles(model, comp, highest)
    for k, y in enumerate(offsets):
        model.add(y + comp.size[k] // unit <= capacity)
        if hint is not None:
            model.add_hint(y, hint[k] // unit)
    for group in twins:                         # break their symmetry: keep them in order
        for k, j in zip(group, group[1:]):
            model.add(offsets[k] < offsets[j])
    model.minimize(capacity)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, deadline - time.monotonic())
    status = solver.solve(model)
    proven = lowest if status == cp_model.INFEASIBLE else int(solver.best_objective_bound)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return status, [solver.value(y) * unit for y in offsets], proven
    return status, None, proven


def _rectangles(model, comp: Component, top: int) -> list:
    """One rectangle per block in `model` (sections by bytes, in units of comp.unit), no two
    overlapping (no_overlap_2d); returns block k's offset variable, in [0, top - size]."""
    unit, offsets, times, spaces = comp.unit, [], [], []
    for k, size in enumerate(comp.size):
        y = model.new_int_var(0, top - size // unit, f"y{k}")
        times.append(model.new_fixed_size_interval_var(comp.lo[k], comp.hi[k] - comp.lo[k], f"x{k}"))
        spaces.append(model.new_fixed_size_interval_var(y, size // unit, f"b{k}"))
        offsets.append(y)
    model.add_no_overlap_2d(times, spaces)
    return offsets


def _twins(comp: Component) -> list[list[int]]:
    """Groups of interchangeable blocks: the same sections, the same size."""
    groups: dict[tuple, list[int]] = {}
    for k, size in enumerate(comp.size):
        groups.setdefault((comp.lo[k], comp.hi[k], size), []).append(k)
    return [g for g in groups.values() if len(g) > 1]
