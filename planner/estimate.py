"""What a Llama run allocates, from the model's dimensions alone: weights, KV cache, arena.

The weights are the executor's constants (executor/weights.py stores exactly these tensors,
in the run dtype, or as a GGUF file's packed blocks where the caller gives their bytes); the
KV cache and every activation are the arena of the plan. So the total is known before
anything is read or allocated. Beside them a run holds three things no plan places: the
RoPE tables (rope_bytes), the compiled kernels' workspace (workspace_bytes: packed weights'
products, and float32 copies of bf16 rows), and what a CPU process holds for the run itself
(RUNTIME_BYTES).
"""
from __future__ import annotations

import math

from .calls import with_tile
from .lifetimes import bind
from .reader import load
from .plan import Plan, plan_lifetimes
from .schedule import ELEMENT_BYTES, SCHEDULES


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


# What a CPU process holds for a run beyond its weights, arena and workspace: the session's
# plans and views (Python objects), and the code and state of torch's kernels that its first
# call brings in. Measured 10-17 MiB on SmolLM2 from the weights' load to the end of a run,
# and up to 32.2 MiB of resident peak above the rest in the budget benchmark (8,192 tokens in
# chunks, f32; docs/executor.md); reserved with a margin so that a budget holds the resident
# peak. On a GPU the budget is the device's memory, which these do not take (0).
RUNTIME_BYTES = 40 * 2**20


# What the executor's kernels hold outside the arena (executor/quant.py, kernels.c), here without
# torch so that `arena plan` estimates what `arena run` holds. Native GGUF products take x ROWS
# rows at a time, each GROUP values of it quantized into XBLOCK_BYTES; float kernels copy up to
# FLOAT_ROWS rows of x to float32. NATIVE: the ggml types kept as their blocks, by type number.
GROUP, ROWS, FLOAT_ROWS, XBLOCK_BYTES = 32, 64, 4, 72
NATIVE = {2: "Q4_0", 3: "Q4_1", 8: "Q8_0"}
BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}


def native_weight_bytes(tensors, dtype: str) -> int:
    """The bytes of a GGUF file's weights as `arena run --weights native` holds them on CPU:
    Q4_0, Q4_1 and Q8_0 matrices as their blocks, every other tensor in `dtype`. `tensors`:
    (name, shape innermost first, ggml type number) of each."""
    kinds = {name: kind if kind in NATIVE and len(shape) == 2 else None for name, shape, kind in tensors}
    total = 0
    for name, shape, kind in tensors:
        if name == "rope_freqs.weight":
            continue   # RoPE tables are built from it, not kept among the weights
        values = math.prod(shape)   # a scalar, shape (), is 1 value
        native = kinds[name] is not None and len({kinds.get(part) for part in _fused_with(name)}) == 1
        total += values // GROUP * BLOCK_BYTES[NATIVE[kind]] if native else values * ELEMENT_BYTES[dtype]
    return total


# The layer matrices the executor stacks into one (weights.assemble): Q|K|V and gate|up. Their
# blocks are stacked only when all are native and of one kind; else the whole is dequantized.
FUSED = (("attn_q", "attn_k", "attn_v"), ("ffn_gate", "ffn_up"))


def _fused_with(name: str) -> list[str]:
    """The GGUF names of the matrices `name` is stacked with, itself among them."""
    parts = name.split(".")     # blk.<layer>.<role>.weight
    if parts[0] != "blk" or len(parts) != 4:
        return [name]
    group = next((g for g in FUSED if parts[2] in g), (parts[2],))
    return [f"blk.{parts[1]}.{role}.{parts[3]}" for role in group]


# A tensor-parallel rank's part of each layer matrix (weights.assemble): the output rows of its
# query heads, its key-value heads or its FFN columns; the input columns of the attention
# output and down projections. GGUF names, by the part that says which.
SHARDED_ROWS = {"attn_q": "q", "attn_k": "kv", "attn_v": "kv", "ffn_gate": "ffn", "ffn_up": "ffn"}
SHARDED_COLUMNS = {"attn_output": "q", "ffn_down": "ffn"}
F32 = 0     # ggml's type number for float32: what native_weight_bytes counts in the run dtype


def shard_tensors(tensors, shard, dh: int):
    """`tensors` (as native_weight_bytes takes them) cut to the part a rank's `shard` holds. A
    column slice that would split a block of GROUP inputs is held dequantized, as the executor
    holds it (quant.Packed.cols)."""
    spans, out = shard.spans(dh), []
    for name, shape, kind in tensors:
        role = name.split(".")[-2] if name.startswith("blk.") else None
        if role in SHARDED_ROWS:
            lo, hi = spans[SHARDED_ROWS[role]]
            shape = (shape[0], hi - lo)
        elif role in SHARDED_COLUMNS:
            lo, hi = spans[SHARDED_COLUMNS[role]]
            shape, kind = (hi - lo, shape[1]), kind if lo % GROUP == hi % GROUP == 0 else F32
        out.append((name, shape, kind))
    return out


def workspace_bytes(dims: dict[str, int], dtype: str, native: bool) -> int:
    """The most bytes a run's kernels hold outside the arena at once on CPU. Native products (a
    bound: every buffer a call makes, added up): a product's quantized rows of x and, outside
    float32, its float32 copies of x and out, for ROWS rows (one row of the output head); a
    lookup's token ids and, outside float32, its float32 rows. Float kernels, in bf16: matvec's
    float32 copy of up to FLOAT_ROWS rows of x (the widest input), which also covers decode
    attention's copy of the queries, held at another time. (Not the scratch torch's own bf16
    matrix products allocate within each call: RUNTIME_BYTES holds it, docs/executor.md.)"""
    d = dims["d"]
    floats = FLOAT_ROWS * max(d, dims["nh"] * dims["dh"], dims["di"]) * 4 if dtype == "bf16" else 0
    if not native:
        return floats
    copies = 0 if dtype == "f32" else 4
    widths = [(d, (dims["nh"] + 2 * dims["nkvh"]) * dims["dh"]), (dims["nh"] * dims["dh"], d),
              (d, 2 * dims["di"]), (dims["di"], d)]
    product = max(ROWS * (k // GROUP * XBLOCK_BYTES + copies * (k + o)) for k, o in widths)
    head = d // GROUP * XBLOCK_BYTES + copies * (d + dims["vocab"])
    rows = ROWS * (8 + copies * d)
    return max(product, head, rows, floats)


def rope_bytes(dims: dict[str, int], dtype: str) -> int:
    """The RoPE tables a run keeps beside the arena (executor/model.py): cos and sin, a row
    of dh values for each of nctx positions, at the run's `dtype`."""
    return 2 * dims["nctx"] * dims["dh"] * ELEMENT_BYTES[dtype]


def estimate(plans: list[Plan], dtype: str, tied: bool, weights: int | None = None, workspace: int = 0,
             runtime: int = RUNTIME_BYTES) -> dict[str, int]:
    """Bytes of a run whose calls follow `plans` (one arena holds the largest); `weights`:
    the weights' bytes when they are not the model's at `dtype` (packed GGUF blocks)."""
    dims = plans[0].dims
    kv = sum(b.size for b in plans[0].buffers if b.persistent and b.memory == "device")
    arena = max(p.arena for p in plans)
    weights = weight_bytes(dims, dtype, tied) if weights is None else weights
    rope = rope_bytes(dims, dtype)
    return {"weight_bytes": weights, "kv_bytes": kv, "arena_bytes": arena, "rope_bytes": rope, "workspace_bytes": workspace,
            "runtime_bytes": runtime, "total_bytes": weights + arena + rope + workspace + runtime}


def run_plans(dims: dict[str, int], dtype: str, calls: set[int], strategy: str = "auto",
              tile: int | None = None) -> list[Plan]:
    """The plans of the Llama schedule for calls of each size in `calls` (tokens per call),
    attending to `tile` keys at a time (default: calls.key_tile), as a session binds them."""
    schedule = load(SCHEDULES / "llama.yaml")     # the one that ships, whatever the working folder holds
    return [plan_lifetimes(bind(schedule, with_tile({**dims, "n": n}, tile), dtype), strategy) for n in sorted(calls)]
