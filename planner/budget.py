"""A run that fits a byte budget: the prefill chunk (tokens per call) and the attention key
tile, chosen from the Llama schedule's real plans, or one line saying what does not fit.

The budget covers what a run allocates: the weights, one arena (the KV cache and every
activation), and what it holds outside the arena (estimate.estimate). The arena of a run is
the largest plan among its calls: a chunk, the prompt's last, shorter chunk, and decode (one
token). Both knobs only shrink the activations: a chunk of c tokens holds c rows of every
activation, and a tile of t keys holds c x t scores per head; the KV cache is fixed by
--nctx, the weights by the model and dtype.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .calls import TILE_STEP, key_tile
from .errors import ArenaError, plural
from .estimate import RUNTIME_BYTES, estimate, rope_bytes, run_plans, weight_bytes
from .sizes import mib

CHUNK_STEP = 16   # a chunk is the whole prompt or a multiple of this many tokens
@dataclass(frozen=True)
class Choice:
    chunk: int                 # prompt tokens per prefill call
    tile: int | None           # keys per attention tile of a call of several tokens (None: calls.key_tile's)
    cost: dict[str, int]       # estimate.estimate of the run's plans


class Fitter:
    """The plans of one run's calls, bound once per (nctx, tokens, tile), and what fits."""

    def __init__(self, dims: dict[str, int], dtype: str, tied: bool, weights: int | None = None,
                 workspace: int = 0, runtime: int = RUNTIME_BYTES):
        """`dims`: the model's, nctx included; `weights`: the weights' bytes when they are not
        the model's at `dtype` (packed GGUF blocks); `workspace` and `runtime`: what a run holds
        outside the arena (estimate.estimate). Plans are a session's (strategy auto)."""
        self.dims, self.dtype, self.tied = dims, dtype, tied
        self.weights = weight_bytes(dims, dtype, tied) if weights is None else weights
        self.held = dtype if weights is None else "native"     # how messages name the weights
        self.outside = {"workspace": workspace, "runtime": runtime}
        self.fixed = self.weights + workspace + runtime   # what no chunk, tile or nctx changes
        self.rope = rope_bytes(dims, dtype)               # at this nctx, as the KV cache
        self._plans = {}

    def cost(self, prompt: int, chunk: int, tile: int | None, nctx: int | None = None) -> dict[str, int]:
        """The estimate of a run prefilling `prompt` tokens `chunk` at a time, then decoding."""
        nctx = self.dims["nctx"] if nctx is None else nctx
        plans = [self._plan(nctx, n, tile) for n in {chunk, prompt % chunk or chunk, 1}]
        return estimate(plans, self.dtype, self.tied, self.weights, **self.outside)

    def fits(self, budget: int, prompt: int, chunk: int, tile: int) -> bool:
        """Whether the run fits `budget`, in an arena sized by the chunk and decode (as a
        session sizes it: the last, shorter chunk must not need more)."""
        nctx = self.dims["nctx"]
        sized = max(self._plan(nctx, chunk, tile).arena, self._plan(nctx, 1, tile).arena)
        return self._plan(nctx, prompt % chunk or chunk, tile).arena <= sized and \
            self.fixed + self.rope + sized <= budget

    def _plan(self, nctx: int, n: int, tile: int | None):
        key = nctx, n, tile if n > 1 else None   # decode takes the default tile whatever `tile` is
        if key not in self._plans:
            dims = {**self.dims, "nctx": nctx}
            self._plans[key] = run_plans(dims, self.dtype, {n}, tile=tile)[0]
        return self._plans[key]


def choose(fitter: Fitter, budget: int, prompt: int, new_tokens: int | None = None) -> Choice:
    """The largest chunk, then the largest tile, whose run fits `budget` bytes; an ArenaError
    naming what does not fit when none does (and, given the run's `new_tokens`, how many a
    smaller context leaves room for). Smaller chunks and tiles never need more bytes, so each
    is found by bisection over the candidates."""
    chunks = chunk_sizes(prompt)
    nctx = fitter.dims["nctx"]

    def fits(chunk: int) -> bool:
        return fitter.fits(budget, prompt, chunk, _tiles(chunk, nctx)[0])

    if not fits(chunks[0]):     # first, so that a shape too large is named at the smallest chunk
        raise ArenaError(_nothing_fits(fitter, budget, prompt, new_tokens))
    chunk = _last_true(chunks, fits)
    tiles = _tiles(chunk, nctx)
    tile = _last_true(tiles, lambda t: fitter.fits(budget, prompt, chunk, t))
    return Choice(chunk, tile, fitter.cost(prompt, chunk, tile))


class Multiples(Sequence):
    """step, 2 step, 3 step ... below `top`, then `top`, smallest first; each computed when it
    is read, as a prompt of 10^12 tokens has 6 x 10^10 chunk candidates."""

    def __init__(self, step: int, top: int):
        self.range = range(step, top + step, step)   # its last, top or above, stands for top
        self.top = top

    def __len__(self) -> int:
        return len(self.range)

    def __getitem__(self, k: int) -> int:
        return min(self.range[k], self.top)


def chunk_sizes(prompt: int) -> Multiples:
    """Chunk candidates, smallest first: multiples of CHUNK_STEP below the prompt, then the prompt."""
    return Multiples(CHUNK_STEP, prompt)


def _tiles(chunk: int, nctx: int) -> Multiples:
    """Tile candidates of a chunk, smallest first, up to its default tile (calls.key_tile):
    beyond it a tile holds more scores without saving work."""
    return Multiples(TILE_STEP, key_tile(chunk, nctx) if chunk > 1 else nctx)


def _last_true(candidates: Sequence[int], ok) -> int | None:
    """The last candidate for which `ok` holds, when it holds for a prefix of them."""
    lo, hi = 0, len(candidates)   # ok holds below lo, fails from hi
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(candidates[mid]):
            lo = mid + 1
        else:
            hi = mid
    return candidates[lo - 1] if lo else None


def _least(fitter: Fitter, prompt: int, nctx: int | None = None) -> dict[str, int]:
    """The cost of the smallest run: the smallest chunk and tile."""
    nctx = fitter.dims["nctx"] if nctx is None else nctx
    chunk = min(CHUNK_STEP, prompt)
    return fitter.cost(prompt, chunk, _tiles(chunk, nctx)[0], nctx)


def _nothing_fits(fitter: Fitter, budget: int, prompt: int, new_tokens: int | None) -> str:
    """One line: the weights alone (and what the run holds outside the arena), or the KV cache
    at this nctx, or the activations of the smallest chunk, beyond the budget; with the largest
    --nctx or the smallest budget that fits."""
    least = _least(fitter, prompt)
    head = f"--budget {mib(budget)}:"
    # in bytes too: rounded up to the hundredth, it can read as the budget given, a byte short of it
    total = least["total_bytes"]
    smallest = f"the smallest budget for this run is {mib(total, up=True)} ({total:,} bytes)"
    outside = fitter.fixed - fitter.weights
    beside = f" and the {mib(outside)} the run holds outside the arena" if outside else ""
    if fitter.weights > budget:
        smaller = "; 16-bit weights take half (--dtype bf16 or f16)" if fitter.held == "f32" else ""
        return (f"{head} the weights alone take {mib(fitter.weights)} ({fitter.held}), "
                f"{mib(fitter.weights - budget)} more{smaller}; {smallest}")
    if fitter.fixed > budget:
        return (f"{head} the weights ({mib(fitter.weights)}, {fitter.held}){beside} take "
                f"{mib(fitter.fixed)}, {mib(fitter.fixed - budget)} more; {smallest}")
    nctx = fitter.dims["nctx"]
    largest = _last_true(range(1, nctx),
                         lambda m: _least(fitter, min(prompt, m), m)["total_bytes"] <= budget)
    instead = "no --nctx fits" if largest is None else f"the largest --nctx that fits is {largest}" + (
        f", fewer positions than the prompt's {prompt} {plural(prompt, 'token')}" if largest < prompt else
        f", which leaves room for --max-new-tokens {largest - prompt + 1} after the prompt's {prompt} "
        f"{plural(prompt, 'token')}"
        if new_tokens is not None and largest < prompt + new_tokens - 1 else "")
    context = least["kv_bytes"] + least["rope_bytes"]
    if fitter.fixed + context > budget:
        return (f"{head} the KV cache and RoPE tables at --nctx {nctx} take {mib(context)} beside the weights' "
                f"{mib(fitter.weights)}{beside}; {instead} (the smallest budget at --nctx {nctx} is "
                f"{mib(least['total_bytes'], up=True)})")
    held = f" and the {mib(outside + fitter.rope)} the run holds outside the arena (its RoPE tables included)"
    return (f"{head} the weights ({mib(fitter.weights)}){held} and the arena of a run in {min(CHUNK_STEP, prompt)}-token "
            f"chunks ({mib(least['arena_bytes'])}) exceed it; {smallest}, or {instead}")


def describe(choice: Choice, budget: int, prompt: int) -> str:
    """The choice in one line, as `arena plan` and `arena run` print it."""
    calls = -(-prompt // choice.chunk)
    last = prompt - (calls - 1) * choice.chunk
    split = ("in one call" if calls == 1 else
             f"in {calls} calls of {choice.chunk}" + (f" (the last {last})" if last != choice.chunk else ""))
    return (f"budget    {mib(budget)}: prefill {prompt} {plural(prompt, 'token')} {split}, attention over tiles of "
            f"{choice.tile} {plural(choice.tile, 'key')}; total {mib(choice.cost['total_bytes'])}")
