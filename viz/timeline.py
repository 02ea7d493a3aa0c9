"""The time axis every view shares: spans, the bytes live in each, the peak, tensor colors.

A plan from a schedule has one span per step. A minimalloc CSV plan has no steps and its
times are the file's own units, possibly large, so its axis is cut into the planner's
sections (planner/place/problem.py): within a section the live instances do not change.
"""
from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

from planner.place.problem import Sections
from planner.plan import Buffer, Plan

# matplotlib's tab20, its ten dark shades first: neighbouring tensors get distinct colors.
# The terminal and the pictures give a tensor the same one.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
           "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"]


@dataclass(frozen=True)
class Span:
    first: int
    last: int      # closed, like an instance's interval
    label: str     # the step name, or the section's times


def spans(plan: Plan) -> list[Span]:
    if plan.steps:
        return [Span(i, i, name) for i, name in enumerate(plan.steps)]
    cuts = Sections(plan.buffers).cuts
    return [Span(a, b - 1, str(a) if a == b - 1 else f"{a}..{b - 1}") for a, b in zip(cuts, cuts[1:])]


def overlapped(time: list[Span], intervals) -> list[range]:
    """For each interval (anything with `first` and `last`), the indices of the spans it
    overlaps: spans are in order and disjoint, so two binary searches find them."""
    firsts, lasts = [s.first for s in time], [s.last for s in time]
    return [range(bisect.bisect_left(lasts, b.first), bisect.bisect_right(firsts, b.last)) for b in intervals]


def live_bytes(plan: Plan, time: list[Span]) -> list[int]:
    """Arena bytes live during each span (constant over it: a step, or a section). Each
    instance adds its size where it begins and takes it off after it ends, so a model of
    thousands of steps and instances costs one pass, not a scan of all instances per step."""
    device, change = plan.device(), [0] * (len(time) + 1)
    for b, covered in zip(device, overlapped(time, device)):
        if covered:
            change[covered.start] += b.size
            change[covered.stop] -= b.size
    return list(itertools.accumulate(change))[:-1]


def peaks(live: list[int]) -> list[int]:
    """Indices of the spans where the most bytes are live: the lower bound."""
    top = max(live, default=0)
    return [i for i, n in enumerate(live) if n == top and top > 0]


def tensors(buffers: list[Buffer]) -> list[str]:
    """Tensor names in order of first appearance (the schedule's column order)."""
    return list(dict.fromkeys(b.tensor for b in buffers))


def colors(plan: Plan) -> dict[str, str]:
    """A color per tensor, the arena's tensors first: host-only ones are drawn in no map, and
    counted first they made the colors of the tensors drawn repeat sooner."""
    drawn = tensors(plan.device())
    shown = set(drawn)
    index = {t: i for i, t in enumerate(drawn + [t for t in tensors(plan.buffers) if t not in shown])}
    return {t: PALETTE[index[t] % len(PALETTE)] for t in tensors(plan.buffers)}   # in the schedule's order


def ink(color) -> str:
    """Black or white, whichever reads better on `color` (a "#rrggbb" or an RGBA tuple of floats)."""
    r, g, b = ([int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)] if isinstance(color, str) else color[:3])
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"
