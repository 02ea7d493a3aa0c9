"""Placement: blocks (a lifetime and a size) in, one offset per block out.

    problem.py     blocks, sections (the one place time is cut), lower bound, components
    heuristics.py  naive, greedy-size, best-fit
    skyline.py     skyline: bottom-left on a skyline of per-section floors
    layered.py     layered: skyline on layers peeled off by the split model
    reordered.py   reordered: greedy-size's placements over orders searched by reweighing
    layers.py      the split model (CP-SAT): which blocks form layers stacked one on another
    canonical.py   minimalloc's canonical search, compiled (canonical.c): the first to decide a capacity
    search.py      the search that decides whether a component fits under a capacity
    cpsat.py       CP-SAT's no_overlap_2d model: deciding a capacity, minimizing, completing the
                   search's paths, and CSV sizes padded to --align
    rolling.py     long components a window of time at a time, each window by CP-SAT
    stacking.py    plans from layer splits, differently seeded members racing
    exact.py       the exact strategy: capacities from the lower bound up, with a proof
    auto.py        the strategies by name, and the `auto` policy within one time limit
    loading.py     OR-Tools loaded only where a method needs it, and in time
    stopping.py    stopping a CP-SAT solve or the compiled search once its answer is moot
docs/placement.md explains the ideas; docs/measurements.md holds the figures.
"""
from .auto import CHOICES, HEURISTICS, Assignment, assign
from .problem import Block, extent, lower_bound

__all__ = ["CHOICES", "HEURISTICS", "Assignment", "assign", "Block", "extent", "lower_bound"]
