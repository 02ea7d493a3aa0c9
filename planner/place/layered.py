"""The `layered` heuristic: layer splits without backtracking, `skyline` on the pieces.

`skyline` places blocks greedily, and on a component that is a stack of layers it mixes
the layers and leaves slivers no later block fills. Here the split model of layers.py
peels off a component one layer that falls apart in time (a layer of
blocks whose load is flat at the layer's height wherever the component is full), each
of the two parts is planned the same way, and the plans are stacked at the arenas they
came out at. A piece `skyline` plans at its lower bound is not split, and a split whose
stack comes out higher than `skyline`'s plan is dropped. No search, no proof: the first
split found is taken.

The split model is bounded by CP-SAT's deterministic time, its own count of work, not by
the clock: the same blocks give the same plan however fast or busy the machine is. Only
with a deadline (inside `auto`) does the clock count too: no split is tried once it has
passed, nor one whose model would take longer to build and load than the time left.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .loading import or_tools_in_time
from .problem import Block, Component, components, extent, lower_bound, whole_span
from .skyline import skyline

# CP-SAT's deterministic seconds for one split, and for all of them together: enough for
# the splits of the benchmark families, and a bound that keeps the largest near a second
# (docs/measurements.md). Pieces above SKYLINE_PIECES blocks below the top are split
# without trying `skyline` first.
SPLIT_WORK = 0.2
WORK = 0.3
SKYLINE_PIECES = 150
# Wall seconds per (block, section it is live over) to build a split model and load it
# into CP-SAT, whatever its deterministic time: 24-57 µs on cut-2000 to cut-30000
# (docs/measurements.md); the largest, with a margin.
ENTRY_S = 60e-6


@dataclass
class Work:
    """CP-SAT's deterministic seconds left to all splits of one plan, and the clock's
    deadline for them (None: no clock)."""
    left: float
    deadline: float | None = None

    def time_for(self, comp: Component) -> bool:
        """Whether OR-Tools can be loaded and a split of `comp` built and loaded before the deadline."""
        if self.deadline is None:
            return True
        entries = sum(hi - lo for lo, hi in zip(comp.lo, comp.hi))     # without building comp.covers
        built = self.deadline - entries * ENTRY_S                        # when the model must start building
        return time.monotonic() < built and or_tools_in_time(built)


def layered(blocks: list[Block], deadline: float | None = None, goal: int | None = None,
            stop: bytearray | None = None) -> list[int] | None:
    """With a `deadline`, None if `skyline` makes no plan by then (see `skyline`). A plan
    of `skyline` within `goal` (default: the lower bound) is taken as it is. `stop`: see
    `skyline`; once it is set, skyline's plan is taken as it is, without splits."""
    offsets = skyline(blocks, deadline, goal, stop=stop)
    if offsets is None:
        return None
    stopped = stop is not None and stop[0] != 0       # the work beside it has a plan: a split is not needed
    if stopped or extent(blocks, offsets) <= (lower_bound(blocks) if goal is None else goal):
        return offsets
    return _plan(blocks, Work(WORK, deadline), offsets)


def _plan(blocks: list[Block], work: Work, start: list[int] | None = None) -> list[int]:
    """Each component of `blocks` planned on its own, at offset 0. `start` is skyline's
    plan of all of them, where it was made already."""
    offsets = [0] * len(blocks)
    for comp in components(blocks):
        own = [blocks[i] for i in comp.blocks]
        if start is not None:
            low = min(start[i] for i in comp.blocks)    # skyline may float a component
            plan = [start[i] - low for i in comp.blocks]
        else:
            plan = skyline(own, work=0) if len(own) <= SKYLINE_PIECES else None
        for i, o in zip(comp.blocks, _better(comp, own, plan, work)):
            offsets[i] = o
    return offsets


def _better(comp: Component, blocks: list[Block], plan: list[int] | None, work: Work) -> list[int]:
    """`plan` (skyline's, or None where not tried) if it meets the component's lower
    bound, else the lower of it and a split's stack."""
    if plan is not None and extent(blocks, plan) <= comp.lower:
        return plan
    stacked = _split(comp, blocks, work)
    if stacked is None:
        return plan if plan is not None else skyline(blocks, work=0)
    return stacked if plan is None or extent(blocks, stacked) < extent(blocks, plan) else plan


def _split(comp: Component, blocks: list[Block], work: Work) -> list[int] | None:
    """The component as a stack: blocks over its whole span at the bottom, one on another
    (any plan can be rearranged that way, see `problem.whole_span`), else a peeled layer under
    the rest; None when there is no split or no work left to find one."""
    whole = whole_span(blocks)
    offsets, base = [0] * len(blocks), 0
    if whole:
        for k in whole:
            offsets[k], base = base, base + blocks[k].size
        rest = set(range(len(blocks))) - set(whole)
        return _stack(blocks, [sorted(rest)], work, offsets, base)
    if not comp.mostly_full(comp.lower) or work.left <= 0 or not work.time_for(comp):
        return None
    from .layers import Layers      # here: it imports OR-Tools, slow to import, which most plans never need
    layers = Layers(comp, comp.lower, 2, every_cut=False)
    split = layers.next(math.inf if work.deadline is None else work.deadline, min(SPLIT_WORK, work.left))
    work.left -= layers.work
    if split is None:
        return None
    return _stack(blocks, [group for group, _ in split], work, offsets, base)


def _stack(blocks: list[Block], groups: list[list[int]], work: Work, offsets: list[int],
           base: int) -> list[int]:
    """`offsets` with each group planned by `_plan` and put on the one below it, from
    `base` up, at the arena its plan came out at."""
    for group in groups:
        own = [blocks[k] for k in group]
        plan = _plan(own, work)
        for k, o in zip(group, plan):
            offsets[k] = base + o
        base += extent(own, plan)
    return offsets
