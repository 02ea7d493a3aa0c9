"""The strategies by name, and `auto`: the heuristics first, the exact search only where
they miss the lower bound, all within one time limit."""
from __future__ import annotations

import contextlib
import time
from typing import NamedTuple

from .heuristics import best_fit, greedy_size, naive
from .layered import layered
from .loading import or_tools_in_time
from .problem import Block, bottom, conflict_count, extent, lower_bound
from .reordered import reordered
from .skyline import skyline

# The heuristics: no proof, no clock (but in `auto`, see below).
HEURISTICS = {"naive": naive, "greedy-size": greedy_size, "best-fit": best_fit, "skyline": skyline,
              "layered": layered, "reordered": reordered}
CHOICES = ["auto", *HEURISTICS, "exact"]
PUBLISHED = ("naive", "greedy-size", "best-fit")    # as their authors wrote them, for comparison

# The time budget of `auto` and `exact`, all in one place. The heuristics run cheapest
# first (AUTO_HEURISTICS; on 10^5 blocks of long lifetimes greedy-size's conflict lists take
# 6 s, `layered` one pass of `skyline` in under one, but seconds on a sawtooth of short ones,
# so above EXACT_MAX their conflicting pairs decide, `_order`; `reordered`'s passes, about a second, last, and a
# quarter of that where they stay behind the others), any of them skipped once HEURISTIC_SHARE
# of the time limit is spent (the whole limit above EXACT_MAX blocks, where no search follows but
# the rolling windows on long, thin components, with what the heuristics leave);
# `skyline`'s and `reordered`'s passes stop there too, and so does greedy-size; `layered` is
# dropped if not even one pass is done. The exact search is skipped
# above EXACT_MAX blocks (building its CP-SAT model alone overruns a 10 s limit) or when
# less than EXACT_MIN_S remains and no canonical search was started beside `layered` (one
# that was is given what is left), or where no search could start in what is left (OR-Tools not
# loaded in time, every component too large for the canonical search: where that is so from the
# start, the heuristics have the whole limit); the Assignment then says the search was skipped, as it
# does where the windows could have run and found nothing better (its maker is "windows" where they did).
# (docs/measurements.md has the figures.)
AUTO_HEURISTICS = ("best-fit", "layered", "greedy-size", "reordered")
HEURISTIC_SHARE = 0.5
# greedy-size's seconds: per conflicting pair and per block (10^5 blocks, 0.5-30 million
# pairs: 0.51-0.77 us a pair, 4-8 us a block); where no search follows, it runs before
# `layered` if that takes under GREEDY_FIRST of the time left (`_order`)
GREEDY_PAIR_S = 0.6e-6
GREEDY_BLOCK_S = 6e-6
GREEDY_FIRST = 0.5
EXACT_MAX = 20_000
EXACT_MIN_S = 0.5


class Assignment(NamedTuple):
    strategy: str          # the strategy asked for: "auto", "exact" or a heuristic
    maker: str             # what made the offsets: a heuristic, "exact" (the search) or "windows"
    offsets: list[int]
    bound: int             # the best proven lower bound on the arena of these blocks
    search_skipped: bool = False    # auto or exact, where no search followed the heuristics

    @property
    def name(self) -> str:
        """As a plan shows it: "best-fit", "auto:layered", "auto:exact", "exact", "auto:windows",
        "exact:skyline:no-search"."""
        return ":".join([self.strategy] + [self.maker] * (self.maker != self.strategy)
                        + ["no-search"] * self.search_skipped)


def assign(blocks: list[Block], strategy: str, time_limit: float, capacity: int | None = None) -> Assignment:
    """Offsets for `blocks` by `strategy` (one of CHOICES). `auto` takes the best heuristic
    plan when it meets the lower bound, and otherwise hands it to the exact search as its
    starting point; so does `exact`. With `capacity`, the goal is a plan within it, not
    the least arena: the first such plan is taken, and a bound above it says none exists.
    The published heuristics (PUBLISHED) plan all blocks as they are; the others plan what
    is left once the blocks over the whole span are set at the bottom (`bottom`)."""
    if strategy in PUBLISHED:
        return Assignment(strategy, strategy, HEURISTICS[strategy](blocks), lower_bound(blocks))
    offsets, rest, base = bottom(blocks)
    above = _assign([blocks[i] for i in rest], strategy, time_limit, None if capacity is None else capacity - base)
    for i, o in zip(rest, above.offsets):
        offsets[i] = base + o
    return above._replace(offsets=offsets, bound=base + above.bound)


def _assign(blocks: list[Block], strategy: str, time_limit: float, capacity: int | None) -> Assignment:
    deadline = time.monotonic() + time_limit      # (the bound takes 0.4 s on 10^5 blocks)
    bound = lower_bound(blocks)
    goal = bound if capacity is None else capacity
    if strategy in HEURISTICS or bound > goal:      # (under the bound no plan fits: best-fit's shows how far)
        maker = strategy if strategy in HEURISTICS else "best-fit"
        return Assignment(strategy, maker, heuristic(maker, blocks, None, max(goal, bound)), bound)
    searched = len(blocks) <= EXACT_MAX     # else no search follows, and the heuristics have all the time
    rest = (1 - HEURISTIC_SHARE) * time_limit
    # (so they do where no search could start in the rest)
    share_end = deadline - rest if searched and _search_can_follow(blocks, rest) else deadline
    with contextlib.ExitStack() as running:
        size, name, offsets, head = _best_heuristic(blocks, goal, capacity is not None, share_end, deadline,
                                                    running, searched)
        if strategy == "auto" and size <= goal:
            return Assignment(strategy, name, offsets, bound)
        left = deadline - time.monotonic()
        # the search started beside `layered` is worth its answer however little time is left
        if left < EXACT_MIN_S and head is not None and not head.answered.wait(left):
            head = None
        no_search = Assignment(strategy, name, offsets, bound, search_skipped=True)
        if left < EXACT_MIN_S and head is None:
            return no_search
        from . import exact
        if searched and head is None and not exact.can_search(blocks, deadline):
            return no_search
        result = exact.solve(blocks, offsets, left, capacity, head, not searched)    # above EXACT_MAX: the windows only
    if not searched:        # the windows alone ran, where they suit
        better = extent(blocks, result.offsets) < size
        return Assignment(strategy, "windows", result.offsets, bound) if better else no_search
    if strategy == "auto" and extent(blocks, result.offsets) == size:
        return Assignment(strategy, name, offsets, result.bound)     # the search found nothing better
    return Assignment(strategy, "exact", result.offsets, result.bound)


def _best_heuristic(blocks: list[Block], goal: int, deciding: bool, share_end: float, deadline: float,
                    running: contextlib.ExitStack, searched: bool):
    """(arena, name, offsets) of the best plan of AUTO_HEURISTICS by `share_end`, and the
    canonical search started beside `layered` or None (`_layered_beside_search`). They stop
    at a plan within `goal`, or once that search proves a capacity (`deciding`) out of
    reach: no heuristic's plan can meet it then. `layered` and `reordered` also stop once
    that search has a plan."""
    best = head = None
    for name in AUTO_HEURISTICS if searched else _order(blocks, share_end):
        if best is not None and time.monotonic() > share_end:
            continue
        if name == "layered":
            offsets, head = _layered_beside_search(blocks, share_end, goal, deciding, deadline, running, searched)
        elif name == "reordered":
            offsets = reordered(blocks, share_end, goal, _stop_flag(head, deciding), best and best[0])
        else:
            offsets = heuristic(name, blocks, share_end)
        if offsets is None:
            continue
        size = extent(blocks, offsets)
        if best is None or size < best[0]:
            best = (size, name, offsets)
        if size <= goal or deciding and head is not None and head.proven:
            break
    return (*best, head)


def _order(blocks: list[Block], deadline: float) -> tuple[str, ...]:
    """AUTO_HEURISTICS, with greedy-size before `layered` where it is cheap: on 10^5 blocks
    `layered`'s skyline passes can take seconds and end worse, and the time may be up before
    greedy-size's turn (a sawtooth of 10^5 buffers at --time-limit 5: best-fit's plan, 1.32 of
    the bound, where greedy-size plans 1.17 in 0.9 s)."""
    seconds = GREEDY_PAIR_S * conflict_count(blocks) + GREEDY_BLOCK_S * len(blocks)
    if seconds > GREEDY_FIRST * (deadline - time.monotonic()):
        return AUTO_HEURISTICS
    return ("best-fit", "greedy-size", "layered", "reordered")


def _search_can_follow(blocks: list[Block], seconds: float) -> bool:
    """Whether a search can start with `seconds` left (`exact.can_search`; without loading the
    search where OR-Tools can be loaded in that time)."""
    deadline = time.monotonic() + seconds
    if or_tools_in_time(deadline):
        return True
    from . import exact
    return exact.can_search(blocks, deadline)


def heuristic(name: str, blocks: list[Block], deadline: float | None, goal: int | None = None) -> list[int] | None:
    """HEURISTICS[name]'s plan. greedy-size, `skyline`, `layered` and `reordered` keep `deadline`
    (None past it): greedy-size's time grows with the conflicting pairs, seconds on 10^4 blocks of
    long lifetimes, and a skyline pass can take seconds on jagged skylines. The last three
    stop at a plan within `goal` (default: the lower bound)."""
    if name in ("skyline", "layered", "reordered"):
        return HEURISTICS[name](blocks, deadline, goal)
    return HEURISTICS[name](blocks, deadline) if name == "greedy-size" else HEURISTICS[name](blocks)


def _layered_beside_search(blocks: list[Block], deadline: float, goal: int, deciding: bool,
                           search_deadline: float, running: contextlib.ExitStack, searched: bool):
    """(`layered`'s plan, the canonical search started beside it or None). Where
    skyline's plain passes (milliseconds) miss `goal`, the search decides it (the
    capacity, or the lower bound when minimizing) on its own thread, entered in `running`,
    during `layered`'s half second: it often answers in milliseconds, and its plan stops
    `layered`; so does its proof that a capacity (`deciding`) is out of reach. Its orders
    cost 65 µs a block to make, which plans met at once do not pay.
    Where no search follows (not `searched`: above EXACT_MAX blocks), none starts (and the plain
    passes, seconds at 10^5 blocks, are not run twice)."""
    if not searched:
        return layered(blocks, deadline, goal), None
    plain = skyline(blocks, deadline, goal, work=0)
    if plain is None or extent(blocks, plain) <= goal:
        return plain, None
    from . import exact         # here and below: plans that meet the goal at once never need it
    head = exact.head_start(blocks, goal, search_deadline)
    if head is not None:
        running.enter_context(head)
    # layered runs those passes again first: where they took its time, theirs is the plan
    return layered(blocks, deadline, goal, _stop_flag(head, deciding)) or plain, head


def _stop_flag(head, deciding: bool) -> bytearray | None:
    """The flag that the canonical search started beside the heuristics (`head`, or None) sets
    once its answer makes theirs moot: a plan, or deciding, also a proof."""
    return head and (head.answered_flag if deciding else head.found_flag)
