"""The compiled canonical search (planner/place/canonical.c) and its Python entry."""
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from benchmarks.families import ALIGN, production, topup
from planner.check import check
from planner.place import canonical
from planner.place.problem import Block, components, extent
from planner.place.layered import layered
from planner.place.skyline import skyline

from instances import ABOVE_BOUND, block, brute_force


@settings(max_examples=300, deadline=None)
@given(st.lists(block, min_size=1, max_size=8))
def test_canonical_search_plans_at_the_optimum_and_proves_nothing_fits_below(blocks):
    for comp in components(blocks):
        own = comp.blocks_of(blocks)
        optimum = brute_force(own)
        plan, _ = canonical.search(comp, optimum, time.monotonic() + 10)
        check([str(i) for i in comp.blocks], own, plan, optimum, 1)
        assert canonical.search(comp, optimum - 1, time.monotonic() + 10) == (None, True)


def test_canonical_search_plans_sizes_of_a_few_bytes_where_a_heuristic_meets_the_bound():
    """Sizes of 1-8 bytes, every step at the peak (topup in bytes, not 256-byte units): a rule
    that pruned a block one byte too soon proved such bounds impossible."""
    met = 0
    for n, seed in ((n, seed) for n in (15, 25) for seed in range(10)):
        blocks = [Block(b.first, b.last, b.size // ALIGN) for b in topup(n, seed)]
        for comp in components(blocks):
            own = comp.blocks_of(blocks)
            if extent(own, layered(own)) == comp.lower:
                met += 1
                plan, _ = canonical.search(comp, comp.lower, time.monotonic() + 10)
                check([str(i) for i in comp.blocks], own, plan, comp.lower, 1)
    assert met >= 20


def test_canonical_search_proves_a_capacity_above_every_step_too_small():
    (comp,) = components(ABOVE_BOUND)      # every step but one holds 8 bytes; the optimum is 9
    assert comp.lower == 8
    assert canonical.search(comp, 8, time.monotonic() + 5) == (None, True)
    plan, _ = canonical.search(comp, 9, time.monotonic() + 5)
    check([str(i) for i in comp.blocks], comp.blocks_of(ABOVE_BOUND), plan, 9, 1)


@pytest.mark.parametrize("seed", range(5))
def test_canonical_search_plans_production_like_instances_with_slack(seed):
    blocks, _, capacity = production(150, seed, 0.06)
    (comp,) = components(blocks)
    plan, _ = canonical.search(comp, capacity, time.monotonic() + 10)
    check([str(i) for i in comp.blocks], comp.blocks_of(blocks), plan, capacity, 1)


@pytest.mark.parametrize("seed", [1, 7])
def test_canonical_search_plans_450_buffers_with_slack_where_three_orders_wander(seed):
    """With minimalloc's three orders alone, these ran 5 s without a plan; the restarts over
    perturbed orders and shaken candidates plan them in well under a second."""
    blocks, _, capacity = production(450, seed, 0.06)
    (comp,) = components(blocks)
    plan, _ = canonical.search(comp, capacity, time.monotonic() + 10)
    check([str(i) for i in comp.blocks], comp.blocks_of(blocks), plan, capacity, 1)


def test_propagation_plans_450_buffers_with_2_percent_slack_that_floors_alone_do_not():
    """With bounds from below only (the floors), this ran 10 s without a plan: the search
    wandered under placements already lost. The greatest tops that edge finding, overload
    checks and compulsory parts give each buffer refute those at once; it plans in 0.1 s."""
    blocks, _, capacity = production(450, 6, 0.02)
    (comp,) = components(blocks)
    plan, _ = canonical.search(comp, capacity, time.monotonic() + 5)
    check([str(i) for i in comp.blocks], comp.blocks_of(blocks), plan, capacity, 1)


@pytest.mark.parametrize("seed", [7, 12])
def test_guided_restarts_plan_tight_instances_where_orders_drawn_afresh_wander(seed):
    """At the peak, with orders drawn afresh each restart, these ran 5 s without a plan; the
    guided restarts (each near the order that placed the most) plan them in 0.2-0.3 s."""
    blocks, _, capacity = production(150, seed)
    (comp,) = components(blocks)
    assert comp.lower == capacity
    plan, _ = canonical.search(comp, capacity, time.monotonic() + 10)
    check([str(i) for i in comp.blocks], comp.blocks_of(blocks), plan, capacity, 1)


def test_orders_are_permutations_the_same_each_time():
    blocks, _, _ = production(150, 0)
    (comp,) = components(blocks)
    ranks = canonical.orders(comp)
    assert len(ranks) == 4 + canonical.PERTURBED
    assert all(sorted(rank) == list(range(len(comp.size))) for rank in ranks)
    assert len({tuple(rank) for rank in ranks}) > len(ranks) // 2
    assert ranks == canonical.orders(comp)


def test_canonical_search_out_of_time_answers_undecided():
    blocks, _, capacity = production(450, 0)
    comp = max(components(blocks), key=lambda c: len(c.size))
    start = time.monotonic()
    assert canonical.search(comp, capacity, start + 0.2) == (None, False)
    assert time.monotonic() - start < 1


def test_canonical_search_rejects_a_block_outside_the_sections():
    with pytest.raises(ValueError, match="buffer 0: sections"):
        canonical.fit([4], [0], [3], 2, 8, [[0]], 1.0, 100, bytearray(1), bytearray())
    with pytest.raises(ValueError, match="deepest: none, or 3 \\+ 2n int64s"):
        canonical.fit([4], [0], [1], 2, 8, [[0]], 1.0, 100, bytearray(1), bytearray(8))


def test_canonical_search_rejects_tops_not_one_per_section():
    with pytest.raises(ValueError, match="tops: expected 2 values"):
        canonical.fit([4], [0], [1], 2, 8, [[0]], 1.0, 100, bytearray(1), bytearray(), [0])


def test_completion_places_the_rest_below_the_paths_last_offset():
    """w, b, e are a canonical path (offsets 0, 2, 8, each at its floor), which the search
    cannot extend: c's floor is 2, under the last offset, and at 8 it would overrun the
    capacity. The completion keeps the path and puts c at 2, on the skyline it leaves."""
    blocks = [Block(0, 1, 2), Block(1, 1, 6), Block(1, 1, 2), Block(0, 0, 8)]     # w, b, e, c
    (comp,) = components(blocks)
    local = {i: k for k, i in enumerate(comp.blocks)}
    path = [(local[0], 0), (local[1], 2), (local[2], 8)]
    assert canonical.search(comp, 10, time.monotonic() + 5)[0] is not None      # a plan exists
    plan = canonical.complete(comp, 10, path, time.monotonic() + 5, canonical.orders(comp))
    check([str(i) for i in comp.blocks], comp.blocks_of(blocks), plan, 10, 1)
    assert [plan[k] for k, _ in path] == [0, 2, 8] and plan[local[3]] == 2
    assert canonical.complete(comp, 9, path, time.monotonic() + 5, canonical.orders(comp)) is None


@pytest.mark.parametrize("seed", [0, 1])
def test_completion_of_the_lowest_placements_of_a_known_plan_is_a_plan(seed):
    """prod-300 at the peak, which the search alone seldom plans: given the lowest 80% of
    the buffers of the family's known plan where that plan has them, the rest (which sits
    above them there) is completed in well under a second."""
    blocks, offsets, capacity = production(300, seed)
    (comp,) = components(blocks)
    known = [offsets[i] for i in comp.blocks]
    lowest = sorted(range(len(known)), key=known.__getitem__)[:int(0.8 * len(known))]
    path = [(k, known[k]) for k in lowest]
    plan = canonical.complete(comp, capacity, path, time.monotonic() + 10, canonical.orders(comp))
    check([str(i) for i in comp.blocks], comp.blocks_of(blocks), plan, capacity, 1)
    assert all(plan[k] == offset for k, offset in path)


def test_canonical_search_leaves_a_component_with_too_many_conflicts_undecided(monkeypatch):
    blocks, _, capacity = production(150, 0, 0.06)
    (comp,) = components(blocks)
    monkeypatch.setattr(canonical, "MAX_PAIRS", 100)
    assert canonical.search(comp, capacity, time.monotonic() + 10) == (None, False)


def _hard():
    """prod-450 seed 0 at its capacity: no method here decides it in seconds."""
    blocks, _, capacity = production(450, 0)
    return max(components(blocks), key=lambda c: len(c.size)), capacity


def test_canonical_search_stops_when_its_flag_is_set():
    comp, capacity = _hard()
    stop = bytearray(1)
    threading.Timer(0.2, stop.__setitem__, (0, 1)).start()
    start = time.monotonic()
    assert canonical.search(comp, capacity, start + 30, stop) == (None, False)
    assert time.monotonic() - start < 2


def test_background_search_leaves_the_interpreter_free_while_it_runs():
    comp, capacity = _hard()
    with canonical.Decision(comp, capacity, time.monotonic() + 3) as background:
        time.sleep(0.1)                     # the thread is in the search by now
        start = time.monotonic()
        sum(range(100_000))                 # needs the GIL: would wait 3 s if the search held it
        assert time.monotonic() - start < 1
        assert not background.answered.is_set()
    assert (background.found, background.proven) == (None, False)


def test_background_search_answers_with_a_plan_or_a_proof():
    blocks, _, capacity = production(150, 0, 0.06)
    (comp,) = components(blocks)
    with canonical.Decision(comp, capacity, time.monotonic() + 10) as background:
        assert background.answered.wait(10)
    assert background.found is not None
    check([str(i) for i in comp.blocks], comp.blocks_of(blocks), background.found, capacity, 1)
    (comp,) = components(ABOVE_BOUND)
    with canonical.Decision(comp, 8, time.monotonic() + 5) as background:
        assert background.answered.wait(5)
    assert background.proven and background.found is None


def test_deepest_paths_are_placements_the_search_made_in_order():
    """What CP-SAT is asked to complete: the search's deepest path since the last call, each
    buffer at its floor under the capacity, offsets never decreasing, never overlapping."""
    comp, capacity = _hard()
    with canonical.Decision(comp, capacity, time.monotonic() + 30) as background:
        paths = [time.sleep(0.2) or background.deepest(wait=5) for _ in range(3)]
    for path in paths:
        assert len(path) > 10 and len({k for k, _ in path}) == len(path)
        assert [o for _, o in path] == sorted(o for _, o in path)
        placed = {}
        for k, offset in path:
            under = [placed[j] + comp.size[j] for j in placed if comp.lo[j] < comp.hi[k] and comp.lo[k] < comp.hi[j]]
            assert offset == max(under, default=0) and offset + comp.size[k] <= capacity
            placed[k] = offset


def test_descent_finds_the_optimum_above_the_lower_bound_and_proves_it():
    (comp,) = components(ABOVE_BOUND)      # lower bound 8, optimum 9
    upper = sum(comp.size)
    with canonical.Descent(comp, 8, upper, time.monotonic() + 10) as descent:
        assert descent.settled.wait(10)
    assert (descent.bound, descent.upper) == (9, 9)
    check([str(i) for i in comp.blocks], comp.blocks_of(ABOVE_BOUND), descent.best, 9, 1)


def test_descent_plans_a_production_like_instance_with_slack_at_its_peak():
    blocks, _, _ = production(150, 0, 0.06)
    (comp,) = components(blocks)
    upper = extent(blocks, skyline(blocks, work=0))
    with canonical.Descent(comp, comp.lower, upper, time.monotonic() + 10) as descent:
        assert descent.settled.wait(10)
    check([str(i) for i in comp.blocks], comp.blocks_of(blocks), descent.best, comp.lower, 1)


def test_descent_looks_at_the_bound_first_then_halfway_down(monkeypatch):
    """Where the bound is the optimum (most production problems), a plan there comes sooner
    than by the steps down to it; the steps follow when the bound is not decided at once."""
    comp, capacity = _hard()
    asked = []
    search = canonical.search
    monkeypatch.setattr(canonical, "search", lambda comp, c, *rest: asked.append(c) or search(comp, c, *rest))
    upper = 2 * capacity
    with canonical.Descent(comp, comp.lower, upper, time.monotonic() + 2):
        time.sleep(0.5)
    assert asked[0] == comp.lower and asked[1] == comp.lower + (upper - comp.lower) // 2, asked[:2]


def test_descent_steps_down_from_its_best_plan_and_doubles_the_time_once_the_step_is_fine(monkeypatch):
    """A fake search that plans any capacity from 1300 up at once (exactly at it) and never
    decides one below: the steps halve from halfway down until they are finer than
    FINEST_STEP, then start again, each capacity with twice the time."""
    blocks = [Block(0, 9, 1) for _ in range(1000)]      # any plan's arena: its highest offset + 1
    (comp,) = components(blocks)
    asked = []

    def search(comp, capacity, deadline, stop, *rest):
        asked.append((capacity, deadline - time.monotonic()))
        if capacity >= 1300:
            return list(range(999)) + [capacity - 1], False
        while time.monotonic() < deadline and not stop[0]:
            time.sleep(0.001)
        return None, False

    monkeypatch.setattr(canonical, "search", search)
    with canonical.Descent(comp, 1000, 2000, time.monotonic() + 2) as descent:
        time.sleep(1.5)
    capacities = [c for c, _ in asked]
    # the bound, then halfway down (found: the same step from 1500), halving where nothing is
    # decided, until the step under 1306 is finer than FINEST_STEP: then halfway, twice as long
    assert capacities[:13] == [1000, 1500, 1000, 1250, 1375, 1250, 1313, 1251, 1282, 1298, 1306, 1299, 1153]
    assert asked[12][1] == pytest.approx(2 * asked[11][1], rel=0.2)
    assert 1300 <= descent.upper <= 1300 * (1 + canonical.FINEST_STEP) and descent.bound == 1000
    assert capacities[-1] == 1000 and asked[-1][1] > 0.5      # the bound with the time left


def test_descent_keeps_a_better_plan_offered_and_settles_when_it_meets_the_bound():
    blocks, known, capacity = production(450, 0)        # a plan at the peak, which the search lacks
    (comp,) = components(blocks)
    with canonical.Descent(comp, comp.lower, 2 * capacity, time.monotonic() + 30) as descent:
        time.sleep(0.3)
        assert not descent.settled.is_set() and descent.upper > capacity
        descent.offer([known[k] + capacity for k in comp.blocks])     # no better than its own: ignored
        assert descent.upper > capacity and descent.best != [known[k] + capacity for k in comp.blocks]
        descent.offer([known[k] for k in comp.blocks])
        assert descent.settled.is_set() and descent.upper == capacity == comp.lower
        assert descent.best == [known[k] for k in comp.blocks]


def test_descent_stops_deciding_a_capacity_the_caller_proved_too_small():
    comp, capacity = _hard()
    with canonical.Descent(comp, comp.lower, 2 * capacity, time.monotonic() + 30) as descent:
        watch = descent.deciding(comp.lower)
        time.sleep(0.3)
        assert not watch.is_set()
        descent.lift(descent.upper)         # as if the caller had proven its best plan optimal
        assert watch.is_set() and descent.settled.is_set()
        start = time.monotonic()
    assert time.monotonic() - start < 1     # leaving stopped it at once


def test_background_searches_leave_a_component_with_too_many_conflicts_alone(monkeypatch):
    blocks, _, capacity = production(150, 0, 0.06)
    (comp,) = components(blocks)
    monkeypatch.setattr(canonical, "MAX_PAIRS", 100)
    start = time.monotonic()
    with canonical.Decision(comp, capacity, start + 10) as decision, \
            canonical.Descent(comp, comp.lower, 2 * capacity, start + 10) as descent:
        time.sleep(0.2)
    assert time.monotonic() - start < 1
    assert (decision.found, decision.proven) == (None, False)
    assert descent.best is None and (descent.bound, descent.upper) == (comp.lower, 2 * capacity)
