"""Placement instances for the tests: random small ones, their optimum by brute force, and
the benchmark's families (benchmarks/families.py), built by the same code."""
from hypothesis import strategies as st

from benchmarks.families import README, cut  # noqa: F401  (re-exported for the tests)
from planner.place import Block
from planner.plan import Buffer

# Found by random search, confirmed by brute force: every step but 1 holds 8 bytes, yet
# no plan fits in 8 (the optimum is 9).
ABOVE_BOUND = [Block(2, 5, 2), Block(3, 6, 1), Block(5, 7, 1), Block(2, 5, 3), Block(0, 2, 3), Block(4, 4, 2),
               Block(6, 6, 6), Block(7, 7, 7)]

# A small random block: its first step, length and size (in 256-byte units).
block = st.tuples(st.integers(0, 6), st.integers(0, 4), st.integers(1, 6)).map(
    lambda t: Block(t[0], t[0] + t[1], t[2] * 256))


def brute_force(blocks: list[Block]) -> int:
    """The minimum arena, by trying every order: drop each block on top of the highest
    already placed block it conflicts with. Placing the blocks of any plan in order of
    offset this way never raises an offset, so some order reaches the optimum."""
    n, best = len(blocks), [sum(b.size for b in blocks)]
    tops = [0] * n

    def extend(placed: list[int], arena: int) -> None:
        if arena >= best[0]:
            return
        if len(placed) == n:
            best[0] = arena
            return
        for i in range(n):
            if i not in placed:
                b = blocks[i]
                offset = max((tops[j] for j in placed if blocks[j].first <= b.last and b.first <= blocks[j].last),
                             default=0)
                tops[i] = offset + b.size
                extend(placed + [i], max(arena, tops[i]))

    extend([], 0)
    return best[0]


def buffers(blocks: list[Block]) -> list[Buffer]:
    """One device buffer per block, named b0, b1, ..."""
    return [Buffer(f"b{i}", "t", b.first, b.last, b.size, None) for i, b in enumerate(blocks)]


def names(blocks: list) -> list[str]:
    """Names for the checker's messages."""
    return [str(i) for i in range(len(blocks))]
