"""The skyline heuristic: bottom-left placement on a skyline of per-section floors."""
from __future__ import annotations

import time
from array import array
from pathlib import Path

from ..compiled import load
from .problem import Block, Sections, extent, lower_bound

_skyline = load("planner.place._skyline", Path(__file__).with_name("skyline.c"))
reweighed, compiled_pass = _skyline.reweighed, _skyline.skyline_pass

# Candidate orders, best of all kept (their keys are in skyline.c's key_of, smaller first).
# A candidate's key sees whether its top comes flush with a neighbouring floor (`flush`,
# 0-2), whether it ends where the run of sections at the floor ends and so fills the
# run's width (`fills`), its length in sections and its size. Each order wins on some
# instances; these four of the orders measured gave the lowest mean over the benchmark
# families together (docs/measurements.md).
SKYLINE_RULES = (
    "-flush, -size x length",
    "-fills, -flush, -size, -length",
    "-flush - fills, -size x length",
    "-fills, -length, -size",
)


# The reweighed passes' work: heap steps in all (skyline.c), which keeps the plan the same
# from run to run (a clock would not) and the time about half a second on 450 blocks of the
# production-like family (docs/measurements.md).
WORK = 8_000_000


def skyline(blocks: list[Block], deadline: float | None = None, goal: int | None = None,
            work: int = WORK, stop: bytearray | None = None) -> list[int] | None:
    """Bottom-left skyline placement, best of a few candidate orders (SKYLINE_RULES), run
    forward in time and then, unless a plan already meets `goal` (default: the lower
    bound), backward
    (the same blocks with time reversed: a placement valid one way is valid the other,
    and each direction wins on some instances). At the lowest floor, leftmost, place a
    block starting there whose sections are all at that floor (preferring one that fills
    the run of sections at that floor, or whose top comes flush with a neighbouring
    floor); if none fits, raise the section to its next neighbouring level and leave the
    gap empty. Then, unless the best plan meets `goal`, reweighed passes from it for at
    most `work` steps (skyline.c): the candidate orders comparing weights, not sizes,
    redrawn at random a few at a time and kept where no worse.
    With a `deadline` (time.monotonic()), the passes stop once it passes, and None means
    that not even the first was done by then: on jagged skylines (thousands of blocks of
    unrelated sizes) the raises make a pass take seconds. Setting `stop[0]` from another
    thread ends the reweighed passes (a search beside them has a plan)."""
    if not blocks:
        return []
    goal = lower_bound(blocks) if goal is None else goal
    end = max(b.last for b in blocks)
    best = None                                # (arena, offsets, the timeline's arrays, rule)
    for timeline in (blocks, [Block(end - b.last, end - b.first, b.size) for b in blocks]):
        arrays = _Arrays(timeline)
        for rule in range(len(SKYLINE_RULES)):
            offsets = arrays.passed(rule, deadline)
            if offsets is None:
                return None if best is None else best[1]
            size = extent(blocks, offsets)
            if best is None or size < best[0]:
                best = (size, offsets, arrays, rule)
            if best[0] <= goal or deadline is not None and time.monotonic() > deadline:
                return best[1]
    size, offsets, arrays, rule = best
    if work:
        tried = arrays.reweighed(rule, goal, work, deadline, stop)
        if tried is not None and extent(blocks, tried) < size:
            return tried
    return offsets


def skyline_pass(blocks: list[Block], rule: int, deadline: float | None = None) -> list[int] | None:
    """One pass of the skyline placement (skyline.c) with candidate order SKYLINE_RULES[rule];
    None if `deadline` passes first."""
    return _Arrays(blocks).passed(rule, deadline)


class _Arrays:
    """The blocks of nonzero size as skyline.c takes them: sizes, sections [lo, hi), count."""

    def __init__(self, blocks: list[Block]):
        self.count = len(blocks)
        self.live = [i for i, b in enumerate(blocks) if b.size > 0]
        sections = Sections([blocks[i] for i in self.live])
        lo, hi = array("i"), array("i")
        for i in self.live:
            first, end = sections.span(blocks[i])
            lo.append(first)
            hi.append(end)
        self.compiled = (array("q", (blocks[i].size for i in self.live)), lo, hi, len(sections))

    def passed(self, rule: int, deadline: float | None) -> list[int] | None:
        """One plain pass (skyline.c's skyline_pass); None past the deadline."""
        return self._offsets(compiled_pass(*self.compiled, rule, _clock(deadline)))

    def reweighed(self, rule: int, goal: int, work: int, deadline: float | None,
                  stop: bytearray | None = None) -> list[int] | None:
        """Reweighed passes from the plain pass of `rule` (skyline.c's reweighed)."""
        return self._offsets(reweighed(*self.compiled, rule, goal, work, _clock(deadline), stop or bytearray()))

    def _offsets(self, placed: list[int] | None) -> list[int] | None:
        """Offsets of all the blocks from those of the live ones (None stays None)."""
        if placed is None:
            return None
        offsets = [0] * self.count
        for i, offset in zip(self.live, placed):
            offsets[i] = offset
        return offsets


def _clock(deadline: float | None) -> float:
    return -1.0 if deadline is None else deadline
