"""The independent checker every plan passes before it is printed or saved.

It shares no code with the strategies: one sweep over start times keeps the live
blocks sorted by offset; as long as they are disjoint, a new block only has to be
compared with its two neighbours in that order. (A SortedList: with a plain list, each
insertion moves the blocks after it, and 10^6 blocks live at once took minutes.)
"""
from __future__ import annotations

import heapq

from sortedcontainers import SortedList


class PlanInvalid(Exception):
    """A strategy produced a wrong plan: a bug in the planner, not in the user's input."""


def check(names: list[str], blocks, offsets: list[int], arena: int, align: int) -> None:
    """Raise PlanInvalid unless every block is aligned, inside the arena, and disjoint in
    bytes from every block live at a common step."""
    faults = []
    for name, (_, _, size), offset in zip(names, blocks, offsets):
        if offset is None or offset < 0 or offset % align:
            faults.append(f"{name}: offset {offset} is not a non-negative multiple of {align}")
        elif offset + size > arena:
            faults.append(f"{name}: [{offset}, {offset + size}) runs past the arena of {arena} bytes")
    if faults:
        raise PlanInvalid("\n".join(faults[:10]))
    live = SortedList()                       # (offset, index)
    ending: list[tuple[int, int, int]] = []   # heap of (last, offset, index)
    # the live blocks are disjoint, so in order of offset each new block need only be checked
    # against its two neighbours; a block of no bytes overlaps nothing and stays out of the list
    # (between a block and one above it, it hid their overlap)
    for i in sorted((i for i in range(len(blocks)) if blocks[i][2] > 0), key=lambda i: blocks[i][0]):
        first, last, size = blocks[i]
        while ending and ending[0][0] < first:
            _, off, j = heapq.heappop(ending)
            live.remove((off, j))
        k = live.bisect_right((offsets[i], i))
        for j in (live[k - 1][1] if k else None, live[k][1] if k < len(live) else None):
            if j is not None and _overlap(offsets[i], size, offsets[j], blocks[j][2]):
                raise PlanInvalid(f"{names[i]} [{offsets[i]}, {offsets[i] + size}) and {names[j]} "
                                  f"[{offsets[j]}, {offsets[j] + blocks[j][2]}) are live together and overlap")
        live.add((offsets[i], i))
        heapq.heappush(ending, (last, offsets[i], i))


def _overlap(a: int, a_size: int, b: int, b_size: int) -> bool:
    return a < b + b_size and b < a + a_size
