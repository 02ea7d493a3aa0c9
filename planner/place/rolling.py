"""Rolling windows in time: a long component planned WINDOW blocks at a time, in order of
start, each window by CP-SAT with the blocks of the windows before it fixed where they are.

Where each section holds a few blocks (a pipeline whose buffers are read a few steps after
they are made), a window's offsets constrain only the next few blocks, and the windows plan
in a second or two what a search over the whole component does not find in ten:
CP-SAT's model of 10^4 blocks takes longer to build and presolve than a question may last,
and the canonical search's errors lie thousands of placements deep (a staircase of 10^4
random sizes at its bound: docs/measurements.md). A window with no plan is planned again
with the one before it, BACK windows at most; then the method gives up. It proves nothing.

Blocks that live LONG windows or more are placed before the windows, at the bottom (by
`skyline`, among themselves): a window places such a block where its own blocks fit around
it, and the windows after it, which it still meets, could not live with that (a pipeline of
10^4 buffers beside a lane of long-lived ones, back to back, ended 7% above its optimum).
"""
from __future__ import annotations

import statistics
import threading
import time

from ortools.sat.python import cp_model

from .problem import Block, Component, extent
from .skyline import skyline
from .stopping import solve

WINDOW = 200
BACK = 3
WINDOW_LIMIT = 0.5      # seconds a window: those that plan take milliseconds
PACED = 10              # windows placed before their pace (the median) says whether the rest can be
LONG = 2                # windows' spans of time a block lives over, at least, to be placed before them


def rolled(comp: Component, capacity: int, deadline: float, stop: threading.Event | None) -> list[int] | None:
    """A plan of `comp` within `capacity`, or None (not found by `deadline`, or `stop` set; or
    not to be found by then at the pace of the windows so far)."""
    offsets = _long_ones_below(comp, capacity, deadline)
    if offsets is None:
        return None
    rest = [k for k in range(len(comp.size)) if k not in offsets]
    windows = [rest[k:k + WINDOW] for k in range(0, len(rest), WINDOW)]
    placed = list(offsets)      # the blocks placed that a window yet to be placed (again) may meet
    took: list[float] = []      # seconds each window took, retries included
    for i in range(len(windows)):
        if len(took) >= PACED and statistics.median(took) * (len(windows) - i) > deadline - time.monotonic():
            return None         # the rest of the time would be waited out for nothing
        began = time.monotonic()
        reopened = comp.lo[windows[max(0, i - BACK)][0]]        # the earliest start placed again
        placed = [k for k in placed if comp.hi[k] > reopened]
        for first in range(i, max(-1, i - BACK - 1), -1):       # reopen the windows first..i
            if stop is not None and stop.is_set() or time.monotonic() >= deadline:
                return None
            free = [k for window in windows[first:i + 1] for k in window]
            for k in free:
                offsets.pop(k, None)
            fixed = {k: offsets[k] for k in placed if k in offsets}
            planned = _window(comp, free, fixed, capacity, min(deadline, time.monotonic() + WINDOW_LIMIT), stop)
            if planned is not None:
                offsets.update(planned)
                placed += windows[i]
                break
        else:
            return None
        took.append(time.monotonic() - began)
    return [offsets[k] for k in range(len(comp.size))]


def _long_ones_below(comp: Component, capacity: int, deadline: float) -> dict[int, int] | None:
    """The offsets of the blocks that live LONG windows' spans or more (a window's span: the
    sections from its first start to the next window's, the median of them), planned among
    themselves from the bottom; None where they alone do not fit `capacity`, or `skyline`
    has no plan of them by `deadline` (most blocks of a dense component are long)."""
    firsts = comp.lo[::WINDOW] + [len(comp.load)]
    span = statistics.median(b - a for a, b in zip(firsts, firsts[1:]))
    long = [k for k in range(len(comp.size)) if comp.hi[k] - comp.lo[k] >= LONG * max(1, span)]
    own = [Block(comp.lo[k], comp.hi[k] - 1, comp.size[k]) for k in long]
    plan = skyline(own, deadline, work=0)
    return None if plan is None or extent(own, plan) > capacity else dict(zip(long, plan))


def _window(comp: Component, free: list[int], fixed: dict[int, int], capacity: int, deadline: float,
            stop: threading.Event | None) -> dict[int, int] | None:
    """Offsets of the blocks `free` within `capacity`, beside those of the `fixed` ones that meet
    them in time; None where CP-SAT finds none by `deadline`. The fixed blocks' lifetimes are cut
    to the window's sections: CP-SAT refuses a model whose areas add up past 2^63."""
    unit, top = comp.unit, capacity // comp.unit
    start, end = comp.lo[free[0]], max(comp.hi[k] for k in free)       # blocks are in order of start
    model = cp_model.CpModel()
    times, spaces, offsets = [], [], {}
    for k in free:
        offsets[k] = model.new_int_var(0, top - comp.size[k] // unit, f"y{k}")
        times.append(model.new_fixed_size_interval_var(comp.lo[k], comp.hi[k] - comp.lo[k], f"x{k}"))
        spaces.append(model.new_fixed_size_interval_var(offsets[k], comp.size[k] // unit, f"b{k}"))
    for k, offset in fixed.items():
        lo, hi = max(comp.lo[k], start), min(comp.hi[k], end)
        if lo < hi:
            times.append(model.new_fixed_size_interval_var(lo, hi - lo, f"x{k}"))
            spaces.append(model.new_fixed_size_interval_var(offset // unit, comp.size[k] // unit, f"b{k}"))
    model.add_no_overlap_2d(times, spaces)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1       # a window's model is small: more workers only cost
    solver.parameters.max_time_in_seconds = max(0.01, deadline - time.monotonic())
    if solve(solver, model, stop) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return {k: solver.value(y) * unit for k, y in offsets.items()}
