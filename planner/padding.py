"""Buffers whose sizes are not multiples of the alignment (a CSV problem's, with --align).

The strategies plan each size rounded up to the alignment. That allows exactly the offsets
the buffers themselves allow (no other aligned offset lies between a buffer's end and its
rounded end), but a buffer on top of the arena ends at its own size, so which buffers end on
top matters, and the rounded plans the strategies find equal may differ here. So: the
capacity the strategies are given, and their plan settled so that it ends as low as it can;
`auto` and `exact`, where their settled plan ends above the bound (or the capacity), also
settle the plans of the cheap heuristics and keep the lowest.
`naive` stacks the buffer with the most padding last, as the no-reuse total counts it.
"""
from __future__ import annotations

import time

from .place import Block, assign, lower_bound
from .place.auto import HEURISTICS, heuristic
from .place.problem import Sections, bottom

# The least time a second turn at a capacity gets (rounded_capacities).
MIN_TURN_S = 0.1


def assigned(rounded: list[Block], nbytes: list[int], align: int, strategy: str, time_limit: float,
             capacity: int | None):
    """`assign`'s answer for blocks whose sizes `rounded` up from `nbytes` to `align`, with its
    offsets settled and its bound that of the sizes as given: minimizing, or deciding `capacity`
    at rounded_capacities in turn, all within `time_limit` seconds; then, on small problems
    where that plan ends above the bound (or the capacity), CP-SAT on the sizes as given."""
    goals = [None] if capacity is None else rounded_capacities(rounded, capacity, align)
    deadline = time.monotonic() + time_limit
    proven = 0      # the best bound of the turns so far: a later turn's own may be weaker
    for goal in goals:
        assignment = assign(rounded, strategy, max(MIN_TURN_S, deadline - time.monotonic()), goal)
        proven = max(proven, assignment.bound)
        if strategy == "naive":
            return assignment._replace(offsets=_stacked(rounded, assignment.offsets, nbytes),
                                       bound=_least(rounded, nbytes, proven))
        offsets = settled(rounded, assignment.offsets, nbytes)
        if strategy not in HEURISTICS and _top(offsets, nbytes) > (capacity or _least(rounded, nbytes, proven)):
            assignment, offsets = _lowest(rounded, nbytes, assignment, offsets, deadline)
        if goal is None or proven <= goal or _top(offsets, nbytes) <= capacity:
            break       # a plan, or none ruled out at this goal: no reason to go on
    assignment = assignment._replace(offsets=offsets, bound=_least(rounded, nbytes, proven))
    if not as_given(strategy, len(rounded)):
        return assignment
    return _exact(rounded, nbytes, assignment, capacity, PADDED_SHARE * time_limit, deadline)


# The most blocks _exact hands to CP-SAT, and its share of the time limit at most (once OR-Tools
# is loaded: 0.4 s or more, which a short limit's share would not cover): the rounded plans' bound
# is loose by up to the largest padding; on a few blocks CP-SAT proves the least arena of the
# sizes as given in milliseconds, on 64 that overlap much it can take all it gets.
PADDED_MAX = 64
PADDED_SHARE = 0.2


def as_given(strategy: str, count: int) -> bool:
    """Whether `assigned` may plan `count` blocks of the sizes as given (_exact)."""
    return strategy not in HEURISTICS and count <= PADDED_MAX


def searched(strategy: str, count: int, align: int, time_limit: float) -> str:
    """How `assigned` looked for plans, as CapacityMissed says it."""
    also = f", then as given by CP-SAT for up to {PADDED_SHARE * time_limit:g} s" if as_given(strategy, count) else ""
    how = f"by {strategy}, " if strategy in HEURISTICS else "by "     # (auto: the rounded plans were all it had)
    return f"{how}planning the sizes rounded up to multiples of {align}{also}"


def _exact(blocks: list[Block], nbytes: list[int], assignment, capacity: int | None, share: float,
           deadline: float):
    """`assignment` (of the sizes as given), or CP-SAT's better plan or bound, where its plan ends
    above its bound (minimizing) or above the capacity that its bound leaves possible; CP-SAT runs
    for `share` seconds, up to `deadline`."""
    top = _top(assignment.offsets, nbytes)
    highest = top - 1 if capacity is None else capacity
    if not assignment.bound <= highest < top:
        return assignment
    from .place import cpsat    # only here: a plain plan never loads OR-Tools
    offsets, bound = cpsat.padded(blocks, nbytes, assignment.bound, highest, min(deadline, time.monotonic() + share))
    if offsets is None:
        return assignment._replace(bound=bound)
    return assignment._replace(maker="exact", offsets=offsets, bound=bound, search_skipped=False)


# The heuristics whose plans `auto` and `exact` settle beside their own, cheapest first; each
# only while time is left and up to DROP_MAX blocks (greedy-size takes seconds on 10^5).
CHEAP = ("best-fit", "greedy-size", "skyline")


def _lowest(blocks: list[Block], nbytes: list[int], assignment, offsets: list[int], deadline: float):
    """(assignment, offsets) of the plan that ends lowest: the strategy's, or a cheap
    heuristic's, each settled."""
    best = (_top(offsets, nbytes), assignment, offsets)
    for name in CHEAP if len(blocks) <= DROP_MAX else ():
        if time.monotonic() > deadline:
            break
        plan = heuristic(name, blocks, deadline)
        if plan is None:        # out of time
            break
        plan = settled(blocks, plan, nbytes)
        if (top := _top(plan, nbytes)) < best[0]:
            best = (top, assignment._replace(maker=name), plan)
    return best[1], best[2]


def _least(blocks: list[Block], nbytes: list[int], bound: int) -> int:
    """A bound on the arena of the sizes as given, from `bound` on the rounded ones: any plan's
    rounded sizes end at most the largest padding above its own."""
    padding = max(b.size - n for b, n in zip(blocks, nbytes))
    return max(bound - padding, lower_bound([b._replace(size=n) for b, n in zip(blocks, nbytes)]))


def _top(offsets: list[int], nbytes: list[int]) -> int:
    return max((o + n for o, n in zip(offsets, nbytes)), default=0)


def _stacked(blocks: list[Block], offsets: list[int], nbytes: list[int]) -> list[int]:
    """`naive`'s stack (`offsets`) with the buffer of most padding moved to its top."""
    last = max(range(len(blocks)), key=lambda k: blocks[k].size - nbytes[k])
    order = sorted((k for k in range(len(blocks)) if k != last), key=offsets.__getitem__) + [last]
    stacked, top = [0] * len(blocks), 0
    for k in order:
        stacked[k], top = top, top + blocks[k].size
    return stacked


def rounded_capacities(blocks: list[Block], capacity: int, align: int) -> list[int]:
    """The capacities to decide for the rounded sizes (`blocks`), in turn while the one before
    is proven too small: the multiple of `align` at or below `capacity`, within which every
    plan fits, unless the rounded sizes' peak is above it; then the multiple above, within
    which only plans that end in enough padding fit (each plan found is checked)."""
    low = capacity // align * align
    if low == capacity:
        return [low]
    return [low, low + align] if lower_bound(blocks) <= low else [low + align]


def settled(blocks: list[Block], offsets: list[int], nbytes: list[int]) -> list[int]:
    """The plan of the rounded `blocks`, or the plan upside down, whichever ends lower by
    `nbytes`, once each of its blocks has dropped, in order of offset, onto the highest block
    below it live at a common step; or the blocks dropped in order of padding, least first
    (the most padded on top); or the plan with the blocks over the whole span dropped last.
    Dropping keeps a plan valid and aligned (each rounded top is a multiple of the alignment),
    and turning it over puts other buffers on top. Past DROP_MAX blocks or DROP_MAX_SPANS
    sections spanned in all, the blocks do not drop."""
    if not blocks:
        return offsets
    top = max(o + b.size for o, b in zip(offsets, blocks))
    plans = [offsets, [top - o - b.size for o, b in zip(offsets, blocks)]]
    sections = Sections(blocks)
    spans = [sections.span(b) for b in blocks]
    if len(blocks) <= DROP_MAX and sum(hi - lo for lo, hi in spans) <= DROP_MAX_SPANS:
        sizes = [b.size for b in blocks]
        padded_last = [(b.size - n, -b.size) for b, n in zip(blocks, nbytes)]
        orders = [*plans, padded_last]
        # the blocks `assign` set at the bottom (over the whole span) dropped last, onto all the
        # others, the most padded on top: there they end the arena at their own sizes (where
        # none was set there, this order is the plan's own, dropped already)
        rest = set(bottom(blocks)[1])
        if len(rest) < len(blocks):
            orders.append([(k not in rest, padded_last[k] if k not in rest else (0, 0), offsets[k])
                           for k in range(len(blocks))])
        plans = [_dropped(spans, sizes, order, len(sections)) for order in orders]
    return min(plans, key=lambda plan: _top(plan, nbytes))


# A drop costs a numpy call for each block and a step for each section it spans: these keep
# it to about a tenth of a second (100,000 blocks over most of 10^5 sections took 2.5 s).
DROP_MAX = 20_000
DROP_MAX_SPANS = 20_000_000


def _dropped(spans: list[tuple[int, int]], sizes: list[int], order: list, count: int) -> list[int]:
    """Each block dropped, in order of its key in `order` (a plan's offsets, say), onto the blocks before it."""
    import numpy as np      # only here: a plain plan never loads it

    tops = np.zeros(count, dtype=np.int64)      # per section, the highest rounded top so far
    dropped = [0] * len(spans)
    for k in sorted(range(len(spans)), key=order.__getitem__):
        lo, hi = spans[k]
        dropped[k] = int(tops[lo:hi].max())
        tops[lo:hi] = dropped[k] + sizes[k]     # at or above every top there
    return dropped
