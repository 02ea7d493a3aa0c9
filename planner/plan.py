"""The Plan: every buffer instance with its offset in one arena, checked before anyone sees it.

Persistent tensors (the KV cache) are placed first, at the bottom of the arena in
declaration order: they are live at every step, so this costs nothing, and it keeps
their offsets the same in every plan of the schedule (prefill and decode share them).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field

from . import padding
from .check import check
from .errors import ArenaError, CapacityMissed
from .lifetimes import Lifetimes
from .place import CHOICES, HEURISTICS, Assignment, Block, assign, auto, extent, lower_bound
from .place.problem import bottom

# The longest --time-limit: the searches wait on threads for shares of it, and a wait of
# more than about 9e9 s overflows the platform's clock.
MAX_TIME_LIMIT = 1e6
# The compiled placers and CP-SAT compute offsets in 64-bit integers: the device buffers may
# add up to this many bytes at most, so that no offset or sum of sizes overflows.
MAX_BYTES = 2 ** 62
LIMIT = f"at most 2^62 = {MAX_BYTES:,} bytes are planned"    # as a fault past it says


@dataclass
class Buffer:
    name: str
    tensor: str
    first: int                 # index into Plan.steps (closed interval)
    last: int
    size: int                  # aligned bytes
    offset: int | None         # None for host memory
    memory: str = "device"     # "device" or "host"
    shape: list[int] | None = None
    dtype: str | None = None
    nbytes: int | None = None  # exact bytes before alignment
    persistent: bool = False


@dataclass
class Plan:
    arena: int
    lower_bound: int
    align: int
    strategy: str
    steps: list[str]
    buffers: list[Buffer]
    optimal: bool = False      # the arena is proven minimal
    bound: int = 0             # the best proven lower bound on any arena
    no_reuse: int = 0          # bytes without any reuse (the naive arena)
    host_bytes: int = 0
    schedule: str = ""
    dims: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The plan as JSON holds it, in dicts and lists of its own (dataclasses.asdict's deep
        copy, which does the same, took 1.4 s of a 10^5-buffer plan)."""
        return {**vars(self), "steps": list(self.steps), "dims": dict(self.dims),
                "buffers": [{**vars(b), "shape": b.shape and list(b.shape)} for b in self.buffers]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        """A plan from its JSON, or from `arena plan --json`'s, whose estimate beside it is left out."""
        own = {f.name for f in dataclasses.fields(cls)} - {"buffers"}
        return cls(**{k: v for k, v in d.items() if k in own}, buffers=[Buffer(**b) for b in d["buffers"]])

    def device(self) -> list[Buffer]:
        return [b for b in self.buffers if b.memory == "device"]


def plan_lifetimes(lifetimes: Lifetimes, strategy: str = "auto", time_limit: float = 10.0,
                   capacity: int | None = None) -> Plan:
    buffers = [Buffer(i.name, i.tensor, i.first, i.last, i.size, None, i.memory, i.shape, i.dtype,
                      i.nbytes, i.persistent) for i in lifetimes.instances]
    plan = place(buffers, strategy, lifetimes.align, [s.name for s in lifetimes.steps], time_limit, capacity)
    return dataclasses.replace(plan, schedule=lifetimes.schedule, dims=dict(lifetimes.dims))


def place(buffers: list[Buffer], strategy: str, align: int, steps: list[str], time_limit: float = 10.0,
          capacity: int | None = None, padded: bool = False) -> Plan:
    """A checked Plan of `buffers` (whose offsets are ignored): every device buffer gets an
    offset by `strategy`; `time_limit` (seconds) bounds the search of strategies that search.
    With `capacity` (bytes), the first plan found within it, or CapacityMissed. `padded`:
    each buffer takes only its `nbytes`, its `size` rounded up to `align` just so that the
    strategies keep every offset a multiple of it (a CSV problem): the arena and the bounds
    count `nbytes`."""
    if strategy not in CHOICES:
        raise ArenaError(f"--strategy: unknown strategy '{strategy}' (choose from {', '.join(CHOICES)})")
    check_time_limit(time_limit)
    _check_buffers(buffers)
    device = [k for k, b in enumerate(buffers) if b.memory == "device"]
    _check_total(buffers, device, align)
    transient = [k for k in device if not buffers[k].persistent]
    offsets: dict[int, int] = {}               # index into buffers -> offset
    base = 0
    for k in device:
        if buffers[k].persistent:
            offsets[k], base = base, base + buffers[k].size
    rounded = [_block(buffers[k]) for k in transient]
    most_padding = max((buffers[k].size - buffers[k].nbytes for k in transient), default=0) if padded else 0
    room = None if capacity is None else capacity - base
    if most_padding:        # (its bound is that of the sizes as given)
        assignment = padding.assigned(rounded, [buffers[k].nbytes for k in transient], align, strategy, time_limit,
                                      room)
    else:
        assignment = assign(rounded, strategy, time_limit, room)
    for k, offset in zip(transient, assignment.offsets):
        offsets[k] = base + offset
    blocks = [_block(buffers[k]) for k in device]
    device_offsets = [offsets[k] for k in device]
    check([buffers[k].name for k in device], blocks, device_offsets, extent(blocks, device_offsets), align)
    if most_padding:      # from here on a buffer is its own size (padding.py)
        buffers = [_copy(b, size=b.nbytes) for b in buffers]
        blocks = [_block(buffers[k]) for k in device]
    placed = [_copy(b, offset=offsets.get(k)) for k, b in enumerate(buffers)]
    total, lower = extent(blocks, device_offsets), lower_bound(blocks)
    bound = max(lower, base + assignment.bound)
    if capacity is not None and total > capacity:
        searched = (padding.searched(strategy, len(transient), align, time_limit) if most_padding else
                    _searched(assignment, len(bottom(rounded)[1]), time_limit))
        # a bound above the peak may hold only for offsets that keep `align`, the file's own alignments smaller
        raise CapacityMissed(capacity, bound, total, searched, align if most_padding and bound > lower else 1,
                             _maker(assignment))
    return Plan(total, lower, align, assignment.name, steps, placed, optimal=total == bound, bound=bound,
                no_reuse=sum(b.size for b in rounded) + base - most_padding,
                host_bytes=sum(b.size for b in buffers if b.memory == "host"))


def check_time_limit(seconds: float) -> None:
    """A search's deadline is now + seconds: NaN would never come, infinity overflows a wait."""
    if not isinstance(seconds, (int, float)):
        raise ArenaError(f"--time-limit must be a number of seconds, not {seconds!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ArenaError(f"--time-limit must be a positive number of seconds, not {seconds:g}")
    if seconds > MAX_TIME_LIMIT:
        raise ArenaError(f"--time-limit {seconds:g}: at most {MAX_TIME_LIMIT:g} seconds (11 days)")


def _searched(assignment: Assignment, count: int, time_limit: float) -> str:
    """How plans were looked for, as CapacityMissed says it; `count`, the buffers EXACT_MAX is
    held against (those over the whole span, set at the bottom, do not count)."""
    if assignment.strategy in HEURISTICS:
        return f"by {assignment.strategy}"
    if assignment.maker == "windows":
        return (f"by the heuristics and rolling windows alone (no other search runs on more than "
                f"{auto.EXACT_MAX:,} buffers)")
    if not assignment.search_skipped:
        return f"in {time_limit:g} s"
    if count > auto.EXACT_MAX:
        return (f"by the heuristics alone (on more than {auto.EXACT_MAX:,} buffers only rolling windows, over long, "
                "thin components, search further, and found nothing better here)")
    return f"by the heuristics alone (no search could start in what they left of the {time_limit:g} s)"


def _maker(assignment: Assignment) -> str:
    """The heuristic whose plan `assignment` is, where the strategy asked for is not that heuristic
    alone (auto and exact run several, and usually a search after them); else ''. A search deciding
    a capacity makes no plan above it, so a miss shows the heuristics' best, and the message says whose."""
    named = assignment.maker in HEURISTICS and assignment.strategy not in HEURISTICS
    return assignment.maker if named else ""


def buffer_fault(b: Buffer) -> str | None:
    """What no reader makes, for buffers made in Python or read back from a plan's file: a
    negative size planned an arena of its own, a memory of another name was counted as neither."""
    if b.memory not in ("device", "host") or b.size < 0 or b.first > b.last:
        return (f"memory {b.memory!r}, {b.size} bytes, steps {b.first}..{b.last}; memory is 'device' or 'host', "
                "sizes are not negative, and first <= last")
    return None


def _check_buffers(buffers: list[Buffer]) -> None:
    for b in buffers:
        fault = buffer_fault(b)
        if fault:
            raise ArenaError(f"buffer '{b.name}': {fault}")


def _check_total(buffers: list[Buffer], device: list[int], align: int) -> None:
    host = [b for b in buffers if b.memory == "host"]
    arena = [buffers[k] for k in device]
    if _total(host) > MAX_BYTES:    # (a plan's host bytes: a number JSON's readers must hold)
        raise ArenaError(_too_many("host-mapped", host))
    if _total(arena) <= MAX_BYTES:
        return
    if sum(b.nbytes or b.size for b in arena) <= MAX_BYTES:   # the alignment's doing
        raise ArenaError(f"--align {align}: the device buffers, each rounded up to a multiple of it, "
                         f"add up to {_total(arena):,} bytes; {LIMIT}")
    raise ArenaError(_too_many("device", arena))


def _total(buffers: list[Buffer]) -> int:
    return sum(b.size for b in buffers)


def _too_many(what: str, buffers: list[Buffer]) -> str:
    largest = max(buffers, key=lambda b: b.size)
    return f"the {what} buffers add up to {_total(buffers):,} bytes (the largest, '{largest.name}', {largest.size:,}); {LIMIT}"


def _copy(b: Buffer, **changes) -> Buffer:
    """dataclasses.replace, less its checks: 15 µs a buffer was seconds on 10^5 of them."""
    c = copy.copy(b)
    c.__dict__.update(changes)
    return c


def _block(b: Buffer) -> Block:
    return Block(b.first, b.last, b.size)
