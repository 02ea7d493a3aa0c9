"""Tensor parallelism's split of one model across N ranks (Megatron style), as dims.

Each rank holds whole key-value head groups (its K/V heads and the query heads that share
them) and a run of FFN columns; norms, the embedding and the output head are replicated.
Groups and columns are spread as evenly as possible, so N need not divide the head
counts (SmolLM2's 3 groups on 2 ranks: 2 and 1). Past the key-value head count, N must
be a multiple of it: each K/V head is then replicated on N / nkvh ranks, which share its
group's query heads. After the attention output and the FFN down projection each rank
holds a partial x, and the schedule's `attn_allreduce` and `ffn_allreduce` sum them.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ArenaError, plural

# Far beyond any model (the largest have 128 query heads), and few enough that a split lists
# each rank's heads and plans up to this many ranks.
MAX_HEADS = 1024


@dataclass
class Shard:
    rank: int
    q_heads: list[int]          # the query heads this rank holds, by index in the model
    kv_heads: list[int]         # its key-value heads; q_heads are their groups, in order
    ffn: tuple[int, int]        # its FFN columns [start, stop)

    def dims(self, dims: dict[str, int]) -> dict[str, int]:
        """The model's dims as this rank binds the schedule with them."""
        return {**dims, "nh": len(self.q_heads), "nkvh": len(self.kv_heads), "di": self.ffn[1] - self.ffn[0]}

    def spans(self, dh: int) -> dict[str, tuple[int, int]]:
        """[start, stop) of this rank's rows of Q ("q"), of K and V ("kv"), dh rows a head (its
        heads are consecutive), and of the FFN's columns ("ffn")."""
        return {"q": (self.q_heads[0] * dh, (self.q_heads[-1] + 1) * dh),
                "kv": (self.kv_heads[0] * dh, (self.kv_heads[-1] + 1) * dh), "ffn": self.ffn}


def shards(nh: int, nkvh: int, di: int, ranks: int) -> list[Shard]:
    """The split of `nh` query heads, `nkvh` key-value heads and `di` FFN columns over `ranks`."""
    _check_split(nh, nkvh, di, ranks)
    group = nh // nkvh
    columns = _even(di, ranks)
    if ranks <= nkvh:
        kv = _even(nkvh, ranks)
        return [Shard(r, list(range(kv[r][0] * group, kv[r][1] * group)), list(range(*kv[r])), columns[r])
                for r in range(ranks)]
    copies = ranks // nkvh              # ranks per key-value head, each with a share of its group
    out = []
    for r in range(ranks):
        head, (start, stop) = r // copies, _even(group, copies)[r % copies]
        out.append(Shard(r, list(range(head * group + start, head * group + stop)), [head], columns[r]))
    return out


def _check_split(nh: int, nkvh: int, di: int, ranks: int) -> None:
    """What a split needs: positive counts, at most MAX_HEADS query heads in whole groups (as
    many per key-value head), a count of ranks that splits the groups, and an FFN column for
    every rank. A model file is checked for the groups when read; --set binds any numbers."""
    for name, count in (("nh", nh), ("nkvh", nkvh), ("di", di)):
        if count < 1:
            raise ArenaError(f"--tp {ranks}: {name}={count}; the heads and FFN columns it splits must be positive")
    if nh > MAX_HEADS:
        raise ArenaError(f"--tp {ranks}: nh={nh} query heads; at most {MAX_HEADS:,} are split over ranks")
    if nh % nkvh:
        raise ArenaError(f"--tp {ranks}: nh={nh} query heads do not split into nkvh={nkvh} equal groups, "
                         "one per key-value head")
    if ranks not in valid_ranks(nh, nkvh):
        valid = valid_ranks(nh, nkvh)
        raise ArenaError(f"--tp {ranks}: a model with {nh} query {plural(nh, 'head')} and {nkvh} key-value "
                         f"{plural(nkvh, 'head')} splits over {_listed(valid)} {plural(valid[-1], 'rank')} "
                         "(whole key-value groups per rank, "
                         "or each key-value head on the same number of ranks)")
    if di < ranks:
        raise ArenaError(f"--tp {ranks}: di={di} FFN columns leave a rank without one")


def valid_ranks(nh: int, nkvh: int) -> list[int]:
    """Up to the key-value heads, any count; past them, multiples that leave every rank a query head."""
    return list(range(1, nkvh + 1)) + list(range(2 * nkvh, nh + 1, nkvh))


def _even(count: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) of `parts` runs covering range(count), sizes differing by one at most, larger first."""
    base, extra = divmod(count, parts)
    bounds, start = [], 0
    for p in range(parts):
        stop = start + base + (p < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def _listed(numbers: list[int]) -> str:
    if len(numbers) > 13:   # the rule shows in the first ten and the last two
        numbers = [*numbers[:10], "...", *numbers[-2:]]
    return ", ".join(map(str, numbers[:-1])) + f" or {numbers[-1]}" if len(numbers) > 1 else str(numbers[0])
