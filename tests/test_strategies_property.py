"""Every strategy on random instances: each plan passes the independent checker, and the
exact strategy's optimum equals brute force on small instances."""
from hypothesis import given, settings, strategies as st

from planner.plan import CHOICES, Buffer, place
from planner.strategies import lower_bound


def brute_force(blocks) -> int:
    """The minimum arena, by trying every order: drop each block on top of the highest
    already placed block it conflicts with. Placing the blocks of any plan in order of
    offset this way never raises an offset, so some order reaches the optimum."""
    n, best = len(blocks), [sum(b[2] for b in blocks)]
    tops = [0] * n

    def extend(placed: list[int], arena: int) -> None:
        if arena >= best[0]:
            return
        if len(placed) == n:
            best[0] = arena
            return
        for i in range(n):
            if i not in placed:
                first, last, size = blocks[i]
                offset = max((tops[j] for j in placed if blocks[j][0] <= last and first <= blocks[j][1]), default=0)
                tops[i] = offset + size
                extend(placed + [i], max(arena, tops[i]))

    extend([], 0)
    return best[0]


block = st.tuples(st.integers(0, 6), st.integers(0, 4), st.integers(1, 6)).map(
    lambda t: (t[0], t[0] + t[1], t[2] * 256))


def buffers(blocks):
    return [Buffer(f"b{i}", "t", f, l, s, None) for i, (f, l, s) in enumerate(blocks)]


@settings(max_examples=60, deadline=None)
@given(st.lists(block, max_size=40))
def test_every_strategy_gives_a_checked_plan_within_its_bounds(blocks):
    for strategy in CHOICES:
        plan = place(buffers(blocks), strategy, 256, [], time_limit=2)    # place() runs the checker
        assert plan.lower_bound == lower_bound(blocks) <= plan.bound <= plan.arena
        assert plan.optimal == (plan.arena == plan.bound)
        if strategy in ("exact", "auto") and plan.lower_bound == plan.arena:
            assert plan.optimal


@settings(max_examples=150, deadline=None)
@given(st.lists(block, min_size=1, max_size=8))
def test_exact_equals_brute_force(blocks):
    plan = place(buffers(blocks), "exact", 256, [], time_limit=10)
    assert plan.optimal and plan.arena == plan.bound == brute_force(blocks)
