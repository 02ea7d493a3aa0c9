"""The exact strategy: the minimum arena for given lifetimes, with a proof of it.

Kept apart, as in google/minimalloc's solver: the problem (problem.py: components and
their sections), the decision "does a component fit under a capacity?" (canonical.c, then
search.py), and here the minimization: first the lower bound decided as a capacity (where
no layer splits follow), then the compiled canonical search descending from above while
capacities from the bound up are tried, each failed search naming the next capacity
worth trying (as IDA* does), until one fits. When the search has used its share of the
time, layer splits (stacking.py) look for a plan at the bound, and then CP-SAT (cpsat.py)
takes over the component, since each does well where the others thrash.
Given a capacity, the same methods in the same order decide that capacity alone, and stop
at the first plan within it.
"""
from __future__ import annotations

import bisect
import itertools
import math
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from . import canonical
from .loading import or_tools_in_time
from .problem import Block, Component, extent, stacked_components
from .search import Search, Timeout

# The compiled canonical search runs on a thread of its own all along (until layer splits
# start, which race on every core). The others wait until it has run for HEAD_START_SHARE
# of the time (deciding, counted from its start beside `layered` where it began there): the canonical search
# answers many components in milliseconds, and they would only compete with it for the
# interpreter and import OR-Tools (0.4 s) for nothing. Then, of the time left:
# the share of the Python search (with its oracle). Where layer splits follow, it gets less
# (what it solves there it mostly solves in milliseconds) and they take STACK_SHARE of the
# rest; they follow only where the component is mostly full at the bound. Elsewhere, after
# the Python search when minimizing and at once when deciding a capacity (the completions
# plan what it would, sooner), CP-SAT completes the canonical search's deepest paths for
# COMPLETION_SHARE of the time left: each path cut back to each of PREFIXES of its
# length in turn until CP-SAT does not refute it, each question for at most COMPLETION_LIMIT
# seconds (a path the search cannot extend is often completed by placing some of the
# buffers after it below its offset). Every other path, by time, goes instead to the
# canonical search started from the skyline of each of its prefixes, each for CANONICAL_LIMIT
# seconds or CANONICAL_GROWTH of the time this way has had so far, whichever is more: it
# completes some paths in milliseconds that CP-SAT takes seconds over or leaves, others only
# given a few tenths of a second, and misses others that CP-SAT completes. CP-SAT alone
# takes the rest, as it still solves some instances the others do not. Minimizing, a path
# the descent made deciding a capacity fits any capacity above it, so it is completed
# DESCENT_GAP of the way down from the best plan to that capacity: a step far likelier to
# complete than the whole way. (The shares were
# tuned on the benchmark families: docs/measurements.md.) `auto` starts the canonical search
# on the largest component, deciding the capacity or (minimizing) the lower bound, before its
# heuristics are done (`head_start`), up to HEAD_START_MAX blocks. Minimizing a component
# where no layer splits follow, the lower bound is first decided as `--capacity` would
# decide it, for BOUND_SHARE of the time: production problems mostly have a plan there, and
# deciding it with both cores finds more of them, and sooner, than descending to it does.
# Before the completions or layer splits, on components of at most PROBE_MAX blocks, CP-SAT
# minimizes from the best plan for PROBE_SHARE of the time: where every step is at the peak and
# the optimum is a unit or two above it, it proves in a second what those methods never prove
# (layer splits only look at the bound) or find late. On larger ones it seldom answers, and the
# completions it delays plan production-like problems with slack later (docs/measurements.md).
# Deciding a capacity above the lower bound, the completions wait while a second canonical search
# tries the bound for BOUND_TRY_SHARE of the time: a plan there fits too (`_at_the_bound`).
HEAD_START_SHARE = 0.02
BOUND_SHARE = 0.5
SEARCH_SHARE = 0.3
SEARCH_SHARE_BRIEF = 0.02
STACK_SHARE = 0.95
COMPLETION_SHARE = 0.9
BOUND_TRY_SHARE = 0.005
PREFIXES = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5)
COMPLETION_LIMIT = 1.0
CANONICAL_LIMIT = 0.1
CANONICAL_GROWTH = 0.3
DESCENT_GAP = 0.25
HEAD_START_MAX = 2_000
# The Python search only on components of up to SEARCH_MAX blocks: above, its first placement's
# inference alone can take seconds (19 s on 10^4 long-lived blocks), and the compiled one runs.
SEARCH_MAX = 2_000
PROBE_SHARE = 0.1
PROBE_MAX = 200
# Deciding a component of ROLL_MIN blocks or more where no layer splits follow, rolling windows
# in time (rolling.py) come first, for ROLL_SHARE of the time: long thin components (a few
# blocks over each section) plan there in a second or two, where the completions' questions
# on the whole component go undecided; on others they give up within a few windows.
# Minimizing one, the windows alone ask the bound: on the benchmark families and the test passes'
# classes, the canonical search never planned a bound there that they missed, and its share of
# the time lets the windows' steps down (`_rolled_down`) come closer (a sawtooth of 5,000
# buffers: 1.088 of the bound where 1.118 before).
ROLL_MIN = 1_000
ROLL_SHARE = 0.5
# Minimizing such a component, where the bound was not planned, the windows try again a step down
# from the best plan, while they plan one, for ROLL_DOWN_SHARE of the time left: they plan serving
# traces a few percent above the bound where the descent and CP-SAT leave `layered`'s plan as it is.
ROLL_DOWN_SHARE = 0.8
# Components still open go round again only with this much time left.
REPEAT_MIN_S = 0.1


@dataclass
class Result:
    offsets: list[int]
    bound: int            # proven: no arena below it exists
    optimal: bool


def head_start(blocks: list[Block], capacity: int, deadline: float) -> canonical.Decision | None:
    """The canonical search deciding `capacity` for the largest component of `blocks`,
    started now on its own thread, for `solve` to take over: `auto` runs its heuristics
    meanwhile (`layered` takes half a second on 450 blocks), and the search has often
    answered by then. None above HEAD_START_MAX blocks, where making its orders in Python
    would slow the heuristics down, where the component cannot fit, or where it is too large
    for the search (which would answer nothing)."""
    comp, base, _ = max(stacked_components(blocks)[0], key=lambda part: len(part[0].size), default=(None, 0, []))
    if comp is None or len(comp.size) > HEAD_START_MAX or base + comp.lower > capacity or canonical.too_large(comp):
        return None
    return canonical.Decision(comp, capacity - base, deadline)


def can_search(blocks: list[Block], deadline: float) -> bool:
    """Whether a search can start on `blocks` by `deadline`: OR-Tools' methods (CP-SAT, the
    windows, layer splits) where it can be loaded by then, else the canonical search where some
    component is not too large for it, or where there is none, nothing to search (the blocks over
    the whole span, set at the bottom). (The skyline search would take such a component, but
    finds nothing in a second there: a dense one of 1,500 blocks ran out of time at best-fit's
    own arena.)"""
    parts = stacked_components(blocks)[0]
    return or_tools_in_time(deadline) or not parts or any(not canonical.too_large(comp) for comp, _, _ in parts)


def _taken_out(blocks: list[Block], offsets: list[int], under: list[int], members: list[int]) -> list[int]:
    """The offsets of `members` with the blocks `under` taken out of the plan: each moves down by
    the sizes of those below it (sorted, summed once: thousands of each on large tables)."""
    below = sorted((offsets[u], blocks[u].size) for u in under)
    starts, sums = [o for o, _ in below], list(itertools.accumulate((s for _, s in below), initial=0))
    return [offsets[i] - sums[bisect.bisect_left(starts, offsets[i])] for i in members]


def solve(blocks: list[Block], start: list[int], time_limit: float, capacity: int | None = None,
          head: canonical.Decision | None = None, windows_only: bool = False) -> Result:
    """Minimize the arena of `blocks`, starting from the plan `start` (a heuristic's).
    Returns the best plan found and the best proven bound when `time_limit` runs out.
    With `capacity`, stop at the first plan within it instead; a bound above it proves
    that none exists. `head`: a search that `head_start` started on one component, taken
    over there (minimizing, its answer at the bound is taken, and then it stops).
    `windows_only`: each component gets the rolling windows at the goal and nothing else
    (`auto` above its EXACT_MAX blocks)."""
    with RECURSION.at_least(2 * len(blocks) + 1000):    # two frames a placed block
        return _solve(blocks, start, time.monotonic() + time_limit, capacity, head, windows_only)


class RecursionLimit:
    """sys's recursion limit is the process's, not a thread's: raised while any solve needs it
    deeper, and put back as it was when the last one ends (two solves overlapping in threads, each
    putting back what it found, left it raised: a YAML nested too deeply would then read on)."""

    def __init__(self):
        self.lock, self.running, self.before = threading.Lock(), 0, 0

    @contextmanager
    def at_least(self, frames: int):
        with self.lock:
            if not self.running:
                self.before = sys.getrecursionlimit()
            self.running += 1
            sys.setrecursionlimit(max(sys.getrecursionlimit(), frames))
        try:
            yield
        finally:
            with self.lock:
                self.running -= 1
                if not self.running:
                    sys.setrecursionlimit(self.before)


RECURSION = RecursionLimit()


def _solve(blocks: list[Block], start: list[int], deadline: float, capacity: int | None,
           head: canonical.Decision | None, windows_only: bool) -> Result:
    offsets = [0 if b.size == 0 else o for o, b in zip(start, blocks)]
    parts, fixed = stacked_components(blocks)
    plans = []
    for comp, base, under in parts:
        # the start plan rearranged as the stacking is: each block over the whole span taken
        # out from where it was, and the blocks above it moved down into its place
        own = _taken_out(blocks, offsets, under, comp.blocks)
        low = min(own)                                      # a heuristic may float a component
        plans.append(_Part(comp, base, [o - low for o in own]))
    bound = max([p.base + p.comp.lower for p in plans] + [o + blocks[i].size for i, o in fixed.items()], default=0)
    goal = bound if capacity is None else capacity
    # The components the heuristic left above the goal share the time, the smallest first,
    # each taking an equal part of what is left: one hard component must not starve the
    # rest, and what a small one leaves goes to the larger ones. What the last ones leave
    # goes round again to those still open.
    todo = sorted((k for k, p in enumerate(plans) if p.top > goal), key=lambda k: len(plans[k].comp.size))
    if head is not None and all(plans[k].comp.blocks != head.comp.blocks for k in todo):
        head.stop()             # its component fits already: its core goes to the others
    while True:
        bound = _round(plans, todo, bound, capacity, deadline, head, windows_only)
        head = None                         # taken over or stopped in the first round
        still = [k for k in todo if plans[k].top > max(bound, goal)]
        # time is left over only where a component was settled early; where none was, the
        # ones still open returned early for want of anything to try, and would again
        if len(still) in (0, len(todo)) or capacity is not None and bound > capacity \
                or deadline - time.monotonic() < REPEAT_MIN_S:
            break
        todo = still
    for p in plans:
        for i, o in zip(p.comp.blocks, p.plan):
            offsets[i] = p.base + o
    for i, o in fixed.items():
        offsets[i] = o
    arena = extent(blocks, offsets)
    return Result(offsets, min(bound, arena), arena <= bound)


@dataclass
class _Part:
    """A component above its base (the blocks over its whole span, set below it), and its plan."""
    comp: Component
    base: int
    plan: list[int]

    @property
    def top(self) -> int:
        return self.base + self.comp.extent(self.plan)


def _round(plans: list[_Part], todo: list[int], bound: int, capacity: int | None,
           deadline: float, head: canonical.Decision | None, windows_only: bool) -> int:
    """One turn of the components `todo` (indices into `plans`, whose plans it replaces),
    each given an equal part of the time left; returns the proven bound."""
    for done, k in enumerate(todo):
        part = plans[k]
        comp, base = part.comp, part.base
        started = head if head is not None and head.comp.blocks == comp.blocks else None
        if part.top <= bound:               # under the optimum an earlier component proved: nothing to gain here
            if started is not None:
                started.stop()
            continue
        if started is None and time.monotonic() >= deadline:
            continue                        # out of time (`auto` gives the search it started what is left)
        share_end = _share_end(1 / (len(todo) - done), deadline)
        if windows_only:
            goal = (bound if capacity is None else capacity) - base
            part.plan = _rolled(comp, goal, share_end, None) or part.plan
            continue
        if capacity is None:
            part.plan, proven = _minimize(comp, part.plan, bound - base, share_end, started)
        else:
            part.plan, proven = _decide(comp, part.plan, capacity - base, share_end, started)
        bound = max(bound, base + proven)
        if capacity is not None and bound > capacity:
            break               # no plan fits the capacity: the others cannot change that
    return bound


def _minimize(comp: Component, plan: list[int], bound: int, deadline: float,
              started: canonical.Decision | None = None) -> tuple[list[int], int]:
    """The best plan of one component and a proven bound: no arena below it fits. Unless
    layer splits follow, the bound is decided first for BOUND_SHARE of the time (`started`,
    the canonical search that `head_start` ran at the bound, is taken over there; on ROLL_MIN
    blocks or more, where none was started, only the windows ask it), and where
    the windows suit but did not plan it, they try steps down from above (`_rolled_down`). Then the
    canonical search descends from above on its own thread (`canonical.Descent`); the
    other methods climb from the bound meanwhile, and each side's findings stop the other's
    work that they settle."""
    if not comp.mostly_full(bound) and time.monotonic() < deadline:
        if len(comp.size) >= ROLL_MIN and started is None:     # the windows alone ask the bound
            found, proven = _rolled(comp, bound, _share_end(ROLL_SHARE * BOUND_SHARE, deadline), None) or plan, bound
        else:
            found, proven = _decide(comp, plan, bound, _share_end(BOUND_SHARE, deadline), started)
        if comp.extent(found) <= bound:
            return found, bound
        bound, started = max(bound, proven), None
        plan = _rolled_down(comp, plan, bound, _share_end(ROLL_DOWN_SHARE, deadline))
    if started is not None:                 # where layer splits follow: its answer comes first
        started.stop()
        if started.found is not None:
            return started.found, bound
        if started.proven:
            bound = max(bound, comp.step_above(started.capacity))
    upper = comp.extent(plan)
    if upper <= bound or time.monotonic() >= deadline:
        return plan, bound
    with canonical.Descent(comp, bound, upper, deadline) as descent:
        descent.settled.wait(HEAD_START_SHARE * (deadline - time.monotonic()))
        found, bound = _minimize_beside(comp, plan, bound, upper, deadline, descent)
    bound = max(bound, descent.bound)
    best = min((p for p in (found, descent.best) if p is not None), key=comp.extent, default=None)
    if best is not None and comp.extent(best) < upper:
        return best, bound
    return plan, bound


def _minimize_beside(comp: Component, plan: list[int], bound: int, upper: int, deadline: float,
                     descent: canonical.Descent) -> tuple[list[int] | None, int]:
    """The skyline search climbing from the bound, CP-SAT minimizing for PROBE_SHARE of the
    time (up to PROBE_MAX blocks), then layer splits (or CP-SAT completing the descent's
    deepest paths, each plan offered to it) and CP-SAT, until `descent`'s best plan meets the
    bound: (plan or None, proven bound)."""
    layered = comp.mostly_full(bound)
    found = None
    if len(comp.size) <= SEARCH_MAX:
        found, bound = _climb(comp, bound, upper, _share_end(SEARCH_SHARE_BRIEF if layered else SEARCH_SHARE, deadline),
                              descent)
    bound = max(bound, descent.bound)
    if found is not None or descent.settled.is_set():
        return found, bound
    if not or_tools_in_time(deadline):     # the descent alone, to the end
        descent.run_until(deadline)
        return found, max(bound, descent.bound)
    from . import cpsat                     # OR-Tools takes 0.4 s to import: only for the searches that get here
    from .stacking import stacked
    if len(comp.size) <= PROBE_MAX:
        probe, bound = cpsat.minimize(comp, descent.best or plan, bound, _share_end(PROBE_SHARE, deadline),
                                      descent.settled, bound_first=False)
        descent.lift(bound)
        if probe is not None:
            descent.offer(probe)
        if descent.settled.is_set() or probe is not None and comp.extent(probe) <= bound:
            return probe, bound
        layered = comp.mostly_full(bound)   # a raised bound leaves the sections room: splits mean nothing there
    if not layered:
        end = _share_end(COMPLETION_SHARE, deadline)
        while (completed := _completed(comp, end, descent, descent.settled)) is not None:
            descent.offer(completed)
        if descent.settled.is_set():
            return None, max(bound, descent.bound)
    if bound < upper and layered:
        descent.stop()                      # the layer splits race on every core
        found = stacked(comp, bound, _share_end(STACK_SHARE, deadline))
    if found is None and bound < upper:
        found, bound = cpsat.minimize(comp, descent.best or plan, bound, deadline, descent.settled)
        descent.lift(bound)
    return found, bound


def _decide(comp: Component, plan: list[int], capacity: int, deadline: float,
            started: canonical.Decision | None = None) -> tuple[list[int], int]:
    """A plan of one component within `capacity` if one is found, else `plan`; and a
    proven bound, above `capacity` where no plan fits it. The canonical search decides on
    its own thread all along (`started`, where it is running already); the other methods
    try meanwhile, and stop when it answers."""
    if comp.lower > capacity:
        return plan, comp.lower
    if started is not None and started.capacity != capacity:
        # it decides the bound from before another component raised it: its plan fits, its proof says nothing
        started.stop()
        if started.found is not None and started.capacity <= capacity:
            return started.found, comp.lower
        started = None
    found = _rolled(comp, capacity, _share_end(ROLL_SHARE, deadline), started)
    if found is not None:
        if started is not None:
            started.stop()
        return found, comp.lower
    with started or canonical.Decision(comp, capacity, deadline) as background:
        head_start_end = background.began + HEAD_START_SHARE * (deadline - background.began)
        background.answered.wait(max(0.0, head_start_end - time.monotonic()))
        found, bound = _decide_beside(comp, plan, capacity, deadline, background)
    if found is None and background.found is not None:
        found, bound = background.found, comp.lower
    elif found is None and background.proven:
        bound = comp.step_above(capacity)
    return (plan if found is None else found), bound


def _rolled(comp: Component, capacity: int, deadline: float, started: canonical.Decision | None) -> list[int] | None:
    """Rolling windows' plan within `capacity` by `deadline`, on components of ROLL_MIN blocks or
    more where no layer splits follow; else None. Before the canonical search starts: making its
    orders holds the interpreter for a second on 10^4 blocks, and the windows' own Python work
    then took three times as long. (A search `head_start` began goes on beside them.)"""
    if len(comp.size) < ROLL_MIN or comp.mostly_full(capacity) or not or_tools_in_time(deadline) \
            or started is not None and started.answered.is_set():
        return None
    from .rolling import rolled     # OR-Tools takes 0.4 s to import: only for the components that get here
    return rolled(comp, capacity, deadline, started and started.answered)


def _rolled_down(comp: Component, plan: list[int], bound: int, deadline: float) -> list[int]:
    """Minimizing where the windows suit (`_rolled`) but did not plan the bound: the windows again,
    each time a step down from the best plan, DESCENT_GAP of the way to the bound and half as
    far after each step they miss, down to a unit, until `deadline`; the best plan. (The descent
    works down from above by canonical steps that on such components are too small to matter.)"""
    gap = DESCENT_GAP
    while time.monotonic() < deadline:
        upper = comp.extent(plan)
        step = max(comp.unit, int(gap * (upper - bound)))
        goal = (upper - step) // comp.unit * comp.unit
        found = _rolled(comp, goal, deadline, None) if goal >= bound else None
        if found is not None:
            plan = found
        elif step == comp.unit:
            break
        else:
            gap /= 2
    return plan


def _decide_beside(comp: Component, plan: list[int], capacity: int, deadline: float,
                   background: canonical.Decision) -> tuple[list[int] | None, int]:
    """CP-SAT minimizing from `plan` for PROBE_SHARE of the time (up to PROBE_MAX blocks);
    then where layer splits follow, the skyline search, then layer splits; elsewhere a brief try
    at the bound (`_at_the_bound`), then CP-SAT completing the canonical search's deepest paths;
    then CP-SAT deciding, until `background` answers: (plan or None, proven bound)."""
    stop = background.answered
    if stop.is_set():
        return None, comp.lower
    if len(comp.size) <= PROBE_MAX and or_tools_in_time(deadline):
        from . import cpsat     # OR-Tools takes 0.4 s to import: only for the searches that get here
        probe, proven = cpsat.minimize(comp, plan, comp.lower, _share_end(PROBE_SHARE, deadline), stop,
                                       bound_first=False)
        if probe is not None and comp.extent(probe) <= capacity:
            return probe, comp.lower
        if proven > capacity or stop.is_set():
            return None, max(proven, comp.lower)
    if comp.mostly_full(capacity):
        if len(comp.size) <= SEARCH_MAX:
            search = Search(comp, capacity, _share_end(SEARCH_SHARE_BRIEF, deadline), stop)
            try:
                return (search.offsets, comp.lower) if search.run() else (None, capacity + search.short)
            except Timeout:
                pass
        if stop.is_set() or not or_tools_in_time(deadline):
            background.run_until(deadline)      # the canonical search alone, to the end
            return None, comp.lower
        from .stacking import stacked       # OR-Tools takes 0.4 s to import: only for the searches that get here
        background.stop()                   # the layer splits race on every core
        found = stacked(comp, capacity, _share_end(STACK_SHARE, deadline))
    else:
        found = _at_the_bound(comp, capacity, deadline, background) or \
            _completed(comp, _share_end(COMPLETION_SHARE, deadline), background, stop)
    if found is None and not stop.is_set():
        if or_tools_in_time(deadline):
            from . import cpsat
            return cpsat.decide(comp, capacity, deadline, stop)
        background.run_until(deadline)          # the canonical search alone, to the end
    return found, comp.lower


def _at_the_bound(comp: Component, capacity: int, deadline: float,
                  background: canonical.Decision) -> list[int] | None:
    """Deciding a capacity above the lower bound: the canonical search at the bound for
    BOUND_TRY_SHARE of the time, beside the one deciding the capacity, until that answers. A
    plan there fits the capacity too, and with no slack to wander in, the search at the bound
    can find one in milliseconds where at the capacity it finds none in seconds
    (docs/measurements.md, "The bound tried when deciding"). None where it finds none, and
    on components of more than HEAD_START_MAX blocks, where making the search takes more than
    its share (40 ms on 10^4 blocks)."""
    if capacity <= comp.lower or len(comp.size) > HEAD_START_MAX or background.answered.is_set() \
            or background.ranks is None:       # (its orders are not made yet)
        return None
    return canonical.complete(comp, comp.lower, [], _share_end(BOUND_TRY_SHARE, deadline), background.ranks,
                              background.answered)


def _completed(comp: Component, deadline: float, background: canonical.Decision | canonical.Descent,
               until) -> list[int] | None:
    """A plan completed from the first placements of one of the canonical search's deepest
    paths, within the capacity that search decides (`background.asked`; minimizing, a
    step down from the best plan towards it: `_completion_goal`); None by
    `deadline` or once `until` is set. Each path goes to the way of completing it that has
    had less of the time so far: the canonical search from the skyline the placements
    leave, or CP-SAT (each does well where the other does not). None at once where that
    search has ended: no path will come."""
    asks = {}                               # a model for each capacity
    # the canonical search first: with its propagation it completes many paths in milliseconds
    spent = {_canonical_completion: 0.0, _cpsat_completion: 0.0}
    while time.monotonic() < deadline and not until.is_set() and background.searching:
        capacity = background.asked
        path = background.deepest()
        if not path or background.asked != capacity:
            until.wait(0.01)
            continue
        way = min(spent, key=spent.get)
        if way is _cpsat_completion and not _cpsat_in_time(comp, deadline):
            spent[way] = math.inf           # it would answer at once, again and again, unasked
            continue
        limit = (COMPLETION_LIMIT if way is _cpsat_completion
                 else max(CANONICAL_LIMIT, CANONICAL_GROWTH * spent[way]))
        start = time.monotonic()
        found = way(comp, _completion_goal(background, capacity), path, deadline, until, background, asks, limit)
        spent[way] += time.monotonic() - start
        if found is not None:
            return found
    return None


def _completion_goal(background: canonical.Decision | canonical.Descent, capacity: int) -> int:
    """The capacity to complete a path within, made deciding `capacity`: that one when
    deciding; minimizing (a Descent, with `upper`, its best plan's arena), DESCENT_GAP of
    the way down from `upper` to it."""
    upper = getattr(background, "upper", capacity)
    return upper - max(1, int(DESCENT_GAP * (upper - capacity))) if upper > capacity else capacity


def _canonical_completion(comp: Component, capacity: int, path: list[tuple[int, int]], deadline: float, until,
                          background: canonical.Decision | canonical.Descent, asks: dict,
                          limit: float) -> list[int] | None:
    """The canonical search from the skyline of each of the path's PREFIXES in turn, for
    `limit` seconds each; it goes on to the next prefix whether it ran out of time or not."""
    return _first_completed(path, deadline, until, lambda prefix: canonical.complete(
        comp, capacity, prefix, min(deadline, time.monotonic() + limit), background.ranks, until) or False)


def _cpsat_completion(comp: Component, capacity: int, path: list[tuple[int, int]], deadline: float, until,
                      background: canonical.Decision | canonical.Descent, asks: dict,
                      limit: float) -> list[int] | None:
    """CP-SAT (`asks`: its model for each capacity) on the path's PREFIXES in turn while it
    refutes them, for `limit` seconds each."""
    if capacity not in asks:
        from .cpsat import Oracle       # (not before: the search may have answered)
        asks[capacity] = Oracle(comp, capacity).ask
    return _first_completed(path, deadline, until, lambda prefix: asks[capacity](prefix, deadline, limit, until))


def _first_completed(path: list[tuple[int, int]], deadline: float, until, ask) -> list[int] | None:
    """The plan `ask` completes from the first of the path's PREFIXES it completes, asked in
    turn while it answers False (none); None once it leaves one undecided (None), or by
    `deadline`, or once `until` is set."""
    for share in PREFIXES:
        if until.is_set():
            break
        answer = ask(path[:int(share * len(path))])
        if answer:
            return answer
        if answer is None or time.monotonic() >= deadline:
            break                       # undecided: a fresh path
    return None


def _climb(comp: Component, bound: int, upper: int, deadline: float,
           descent: canonical.Descent) -> tuple[list[int] | None, int]:
    """Capacities from `bound` up to `upper` (which a plan already meets), each failure
    naming the next one worth trying, until a plan fits, the deadline passes or `descent`
    meets the bound: (plan or None, proven bound). Each side's proofs move the other's bound."""
    while not descent.settled.is_set():
        bound = max(bound, descent.bound)
        if bound >= min(upper, descent.upper):
            break
        search = Search(comp, bound, deadline, descent.deciding(bound))
        try:
            if search.run():
                return search.offsets, bound
        except Timeout:
            if time.monotonic() >= deadline:
                break
            continue                        # the descent decided `bound`: look again
        descent.lift(bound + search.short)
    return None, bound


def _cpsat_in_time(comp: Component, deadline: float) -> bool:
    """Whether OR-Tools can be loaded (where it is not) and a model of `comp` built by `deadline`."""
    if not or_tools_in_time(deadline):
        return False
    from .cpsat import model_in_time
    return model_in_time(comp, deadline)


def _share_end(share: float, deadline: float) -> float:
    """When `share` of the time left before `deadline` will have passed."""
    now = time.monotonic()
    return now + share * (deadline - now)
