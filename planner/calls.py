"""The dimensions one call of the Llama schedule binds beyond the model's: its tokens `n`
and the attention key tile `tile`."""
from __future__ import annotations

# Scores a key tile may hold per head, n x tile elements (with SmolLM2's 9 heads in f32,
# 36 MiB): a call whose scores over the whole context stay within it takes one tile, which
# costs the fewest ops (decode does, up to 2^20 positions); a longer call takes tiles of keys.
TILE_ELEMENTS = 2**20
TILE_STEP = 16   # a tile is the whole context or a multiple of this many keys
TILE_FROM = {"n", "nctx"}   # the dims a default tile is made of (with_tile)


def key_tile(n: int, nctx: int) -> int:
    """The default key tile of a call of n tokens in a context of nctx positions."""
    if n * nctx <= TILE_ELEMENTS:
        return nctx
    return min(nctx, max(TILE_STEP, TILE_ELEMENTS // n // TILE_STEP * TILE_STEP))


def with_tile(dims: dict[str, int], tile: int | None = None) -> dict[str, int]:
    """`dims` with the key tile where they bind n and nctx but no tile: `tile` keys (at most
    nctx) for a call of several tokens, else the default. Decode always takes the default:
    its scores are one row per head, so the whole context up to TILE_ELEMENTS positions."""
    if "tile" in dims or not TILE_FROM <= dims.keys():
        return dims
    n, nctx = dims["n"], dims["nctx"]
    return {**dims, "tile": min(tile, nctx) if tile and n > 1 else key_tile(n, nctx)}
