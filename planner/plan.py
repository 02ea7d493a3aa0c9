"""The Plan: every buffer instance with its offset in one arena, checked before anyone sees it.

Persistent tensors (the KV cache) are placed first, at the bottom of the arena in
declaration order: they are live at every step, so this costs nothing, and it keeps
their offsets the same in every plan of the schedule (prefill and decode share them).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field

from . import exact, strategies
from .check import check
from .errors import ArenaError
from .layered import layered
from .lifetimes import Lifetimes
from .strategies import arena, lower_bound

STRATEGIES = {**strategies.STRATEGIES, "layered": layered}      # the heuristics: no proof, no clock
CHOICES = ["auto", *STRATEGIES, "exact"]


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
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        return cls(**{**d, "buffers": [Buffer(**b) for b in d["buffers"]]})

    def device(self) -> list[Buffer]:
        return [b for b in self.buffers if b.memory == "device"]


def plan_lifetimes(lifetimes: Lifetimes, strategy: str = "auto", time_limit: float = 10.0) -> Plan:
    buffers = [Buffer(i.name, i.tensor, i.first, i.last, i.size, None, i.memory, i.shape, i.dtype,
                      i.nbytes, i.persistent) for i in lifetimes.instances]
    plan = place(buffers, strategy, lifetimes.align, [s.name for s in lifetimes.steps], time_limit)
    plan.schedule, plan.dims = lifetimes.schedule, dict(lifetimes.dims)
    return plan


def place(buffers: list[Buffer], strategy: str, align: int, steps: list[str], time_limit: float = 10.0) -> Plan:
    """Give every device buffer an offset with `strategy`, then check the result.
    `time_limit` (seconds) bounds the search of strategies that search."""
    if strategy not in CHOICES:
        raise ArenaError(f"--strategy: unknown strategy '{strategy}' (choose from {', '.join(CHOICES)})")
    persistent = [b for b in buffers if b.memory == "device" and b.persistent]
    transient = [b for b in buffers if b.memory == "device" and not b.persistent]
    base = 0
    for b in persistent:
        b.offset, base = base, base + b.size
    blocks = [(b.first, b.last, b.size) for b in transient]
    name, offsets, proven = _search(blocks, strategy, time_limit)
    for b, offset in zip(transient, offsets):
        b.offset = base + offset
    device = persistent + transient
    device_blocks = [(b.first, b.last, b.size) for b in device]
    device_offsets = [b.offset for b in device]
    total = arena(device_blocks, device_offsets)
    lower = lower_bound(device_blocks)
    bound = max(lower, base + proven)
    check([b.name for b in device], device_blocks, device_offsets, total, align)
    return Plan(total, lower, align, name, steps, buffers, optimal=total == bound, bound=bound,
                no_reuse=sum(b.size for b in device),
                host_bytes=sum(b.size for b in buffers if b.memory == "host"))


# The time budget of `auto` and `exact`, all in one place. The heuristics run cheapest
# first; `layered` (which starts with `skyline`) is skipped above SKYLINE_MAX blocks
# (skyline's raises grow with the number of sections: 0.56 s at 10^4 buffers, 66 s at
# 10^5), and any heuristic once HEURISTIC_SHARE of the time limit is spent. The exact
# search is skipped above EXACT_MAX blocks (building the CP-SAT model alone overran a
# 10 s limit at 10^5) or when less than EXACT_MIN_S remains; the strategy name then ends
# in ":no-search".
HEURISTICS = ("best-fit", "greedy-size", "layered")
SKYLINE_MAX = 10_000
HEURISTIC_SHARE = 0.5
EXACT_MAX = 20_000
EXACT_MIN_S = 0.5


def _search(blocks, strategy: str, time_limit: float) -> tuple[str, list[int], int]:
    """(strategy used, offsets, best proven lower bound on the arena of these blocks).
    `auto` takes the best heuristic plan when it meets the lower bound, and otherwise
    hands it to the exact search as its starting point; so does `exact`."""
    bound = lower_bound(blocks)
    if strategy in STRATEGIES:
        return strategy, STRATEGIES[strategy](blocks), bound
    deadline = time.monotonic() + time_limit
    best = None
    for name in HEURISTICS:
        if best is not None and (time.monotonic() > deadline - (1 - HEURISTIC_SHARE) * time_limit
                                 or name == "layered" and len(blocks) > SKYLINE_MAX):
            continue
        offsets = STRATEGIES[name](blocks)
        size = arena(blocks, offsets)
        if best is None or size < best[0]:
            best = (size, name, offsets)
        if size == bound:
            break
    size, name, offsets = best
    if strategy == "auto" and size == bound:
        return f"auto:{name}", offsets, bound
    left = deadline - time.monotonic()
    if len(blocks) > EXACT_MAX or left < EXACT_MIN_S:
        return f"{'auto:' + name if strategy == 'auto' else 'exact'}:no-search", offsets, bound
    result = exact.solve(blocks, offsets, left)
    if strategy == "auto" and arena(blocks, result.offsets) == size:
        return f"auto:{name}", offsets, result.bound     # the search found nothing better
    return ("exact" if strategy == "exact" else "auto:exact"), result.offsets, result.bound
