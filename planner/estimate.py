"""What a Llama run allocates, from the model's dimensions alone: weights, KV cache, arena.

The weights are the executor's constants (executor/weights.py stores exactly these tensors,
in the run dtype); the KV cache and every activation are the arena of the plan. So the
total is known before anything is read or allocated.
"""
from __future__ import annotations

from .calls import with_tile
from .lifetimes import bind
from .options import load_schedule
from .plan import Plan, plan_lifetimes
from .schedule import ELEMENT_BYTES


def weight_elements(dims: dict[str, int], tied: bool) -> int:
    """Elements of every weight: embedding (and output head unless tied), per layer Q, K, V, O,
    gate, up, down and two norms, then the final norm."""
    d, dh, di = dims["d"], dims["dh"], dims["di"]
    q, kv = dims["nh"] * dh, dims["nkvh"] * dh
    layer = d * (q + 2 * kv) + q * d + 3 * d * di + 2 * d
    table = dims["vocab"] * d
    return table * (1 if tied else 2) + dims["nlayers"] * layer + d


def weight_bytes(dims: dict[str, int], dtype: str, tied: bool) -> int:
    return weight_elements(dims, tied) * ELEMENT_BYTES[dtype]


def estimate(plans: list[Plan], dtype: str, tied: bool) -> dict[str, int]:
    """Bytes of a run whose calls follow `plans` (one arena holds the largest)."""
    dims = plans[0].dims
    kv = sum(b.size for b in plans[0].buffers if b.persistent and b.memory == "device")
    arena = max(p.arena for p in plans)
    weights = weight_bytes(dims, dtype, tied)
    return {"weight_bytes": weights, "kv_bytes": kv, "arena": arena, "total_bytes": weights + arena}


def run_plans(dims: dict[str, int], dtype: str, calls: set[int], strategy: str = "auto",
              tile: int | None = None) -> list[Plan]:
    """The plans of the Llama schedule for calls of each size in `calls` (tokens per call),
    attending to `tile` keys at a time (default: calls.key_tile), as a session binds them."""
    schedule = load_schedule("llama")
    return [plan_lifetimes(bind(schedule, with_tile({**dims, "n": n}, tile), dtype), strategy) for n in sorted(calls)]
