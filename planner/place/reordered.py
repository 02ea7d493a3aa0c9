"""The `reordered` heuristic: greedy-size's placements, over orders searched by reweighing.

greedy-size places the largest block first, each in the smallest gap among the placed blocks
it conflicts with. Which of two equal sizes goes first is a tie that decides much where sizes
repeat (powers of two, pages): there greedy-size and `skyline` end 2-5% above the lower bound
where other orders of the same placement meet it (docs/measurements.md). So two chains of
passes, one placing each block in the smallest gap and one at the lowest offset where it fits
(first fit), each redrawing a tenth of its best order's weights at random and keeping a pass
whose arena is no higher, as `skyline`'s reweighed passes do (reordered.c). The smallest-gap
chain's first pass is greedy-size's plan, so no plan of this heuristic is above greedy-size's.
"""
from __future__ import annotations

from array import array
from pathlib import Path

from ..compiled import load
from .heuristics import best_fit
from .problem import Block, lower_bound

_reordered = load("planner.place._reordered", Path(__file__).with_name("reordered.c"))

# The passes' work: conflicting pairs visited and blocks placed (reordered.c), in all. It keeps the plan the
# same from run to run (a clock would not), and the time about a second on 5,000 blocks of
# random lifetimes with sizes powers of two (docs/measurements.md).
WORK = 100_000_000
# Above this many conflicting pairs (counted both ways: 4 bytes each), one pass takes seconds
# and its lists hundreds of MB: no passes then (None within `auto`, best-fit's plan alone).
MAX_PAIRS = 1 << 25
_NONE = (1 << 63) - 1       # no rival


def reordered(blocks: list[Block], deadline: float | None = None, goal: int | None = None,
              stop: bytearray | None = None, rival: int | None = None) -> list[int] | None:
    """The best plan of the two chains of passes (see the module's header) once one meets `goal`
    (default: the lower bound), WORK is spent (a quarter of it, where no plan is within `rival`,
    another heuristic's arena: on the families where `skyline` does better, these passes stay
    behind it), `deadline` (time.monotonic()) passes or another thread sets `stop[0]`. None if
    the deadline passes before the first passes are done, or (with a deadline) past MAX_PAIRS;
    without a deadline, best-fit's plan there."""
    live = [i for i, b in enumerate(blocks) if b.size > 0]    # a block of no bytes stays at 0
    offsets = [0] * len(blocks)
    if not live:
        return offsets
    # greedy-size's order: the longer first of two equal sizes, then the earlier
    order = sorted(range(len(live)), key=lambda r: (blocks[live[r]].first - blocks[live[r]].last,
                                                    blocks[live[r]].first))
    rank = array("i", [0] * len(live))
    for place, r in enumerate(order):
        rank[r] = place
    goal = lower_bound(blocks) if goal is None else goal
    placed = _reordered.reordered(array("q", (blocks[i].size for i in live)),
                                  array("q", (blocks[i].first for i in live)),
                                  array("q", (blocks[i].last for i in live)), rank, goal,
                                  _NONE if rival is None else rival, WORK,
                                  -1.0 if deadline is None else deadline, MAX_PAIRS, stop or bytearray())
    if placed is None:
        return best_fit(blocks) if deadline is None else None
    for i, offset in zip(live, placed):
        offsets[i] = offset
    return offsets
