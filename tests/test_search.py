"""The search that decides one capacity, and its CP-SAT oracle."""
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from benchmarks.families import production, topup
from planner.check import check
from planner.place import canonical, cpsat
from planner.place.cpsat import Oracle
from planner.place.heuristics import best_fit, naive
from planner.place.problem import components
from planner.place.search import Search, Timeout

from instances import ABOVE_BOUND, block, brute_force, cut


def test_failed_search_names_the_next_capacity_worth_trying():
    (comp,) = components(ABOVE_BOUND)
    search = Search(comp, 8, time.monotonic() + 5)
    assert not search.run() and search.short == 1
    assert Search(comp, 9, time.monotonic() + 5).run()


def test_a_failed_search_never_names_a_capacity_past_the_optimum():
    """topup: every step at the peak, the optimum often a unit or two above it (found here by
    the canonical search, each capacity below it proven too small). Each capacity under the
    optimum the search refutes names the least of its misses as the next worth trying."""
    refuted = 0
    for n, seed in ((n, seed) for n in (10, 14, 16) for seed in range(6)):
        for comp in components(topup(n, seed)):
            optimum = comp.lower
            while (answer := canonical.search(comp, optimum, time.monotonic() + 10)) == (None, True):
                optimum += comp.unit
            assert answer[0] is not None
            for capacity in range(comp.lower, optimum, comp.unit):
                search = Search(comp, capacity, time.monotonic() + 10)
                assert not search.run() and capacity + search.short <= optimum
                refuted += 1
    assert refuted >= 5


def test_cpsat_bounds_are_never_above_its_plan_nor_a_known_one():
    """The bound minimize proves is the least capacity left, not a unit above it; and a solve
    cut short (here by its deadline) proves nothing, so a known plan at the capacity stays
    within every bound it gives."""
    blocks = topup(10, 3)
    comp = max(components(blocks), key=lambda c: len(c.size))
    for bound_first in (False, True):
        found, bound = cpsat.minimize(comp, naive(comp.blocks_of(blocks)), comp.lower, time.monotonic() + 10,
                                      bound_first=bound_first)
        assert comp.lower < bound == comp.extent(found)       # the optimum, above the lower bound
    blocks, _, capacity = production(120, 0)
    comp = max(components(blocks), key=lambda c: len(c.size))
    for seconds in (0.02, 0.05, 0.2):
        found, bound = cpsat.minimize(comp, best_fit(comp.blocks_of(blocks)), comp.lower, time.monotonic() + seconds)
        assert bound <= capacity and (found is None or comp.extent(found) >= bound)


def test_a_padded_cp_sat_solve_cut_short_proves_no_more_than_a_plan_found_later():
    """`--align` plans (sizes padded for placing, their own bytes for the arena): a solve its
    deadline stops proves CP-SAT's best bound, not its plan's top. Random lifetimes of 64
    buffers in 40 steps, cut at 0.01-0.03 s, against the plans of 3 s."""
    import random

    from planner.place import Block, lower_bound
    for seed in range(3):
        rng = random.Random(seed)
        lives = [(a, min(40, a + rng.randint(1, 13)) - 1) for a in (rng.randrange(40) for _ in range(64))]
        nbytes = [rng.randint(1, 1000) for _ in lives]
        blocks = [Block(first, last, -(-n // 64) * 64) for (first, last), n in zip(lives, nbytes)]
        low = lower_bound([Block(first, last, n) for (first, last), n in zip(lives, nbytes)])
        offsets, _ = cpsat.padded(blocks, nbytes, low, 10**6, time.monotonic() + 3)
        best = max(o + n for o, n in zip(offsets, nbytes))
        for seconds in (0.01, 0.03):
            offsets, bound = cpsat.padded(blocks, nbytes, low, 10**6, time.monotonic() + seconds)
            assert bound <= best      # (here the plans of 0.03 s are 2-11% above it)


def test_oracle_completes_a_plan_or_refutes_a_placement():
    # a block lifted by one byte leaves a gap under it that only a 1-byte block over its
    # first step could fill; with none there, every step being full, nothing completes it
    def liftable(comp):
        return [k for k in range(len(comp.size)) if comp.size[k] < 64
                and all(comp.size[j] > 1 for j in comp.covers[comp.lo[k]])]
    blocks, comp = next((b, c) for b in (cut(40, seed, 12, 64) for seed in range(50))
                        for c in components(b) if len(c.size) > 10 and liftable(c))
    deadline = time.monotonic() + 10
    plan = Oracle(comp, 64).ask([], deadline)
    check([str(k) for k in comp.blocks], [blocks[i] for i in comp.blocks], plan, 64, 1)
    k = liftable(comp)[0]
    assert Oracle(comp, 64).ask([(k, 1)], deadline) is False
    assert Oracle(comp, 64).ask([(k, plan[k])], deadline)


@settings(max_examples=80, deadline=None)
@given(st.lists(block, min_size=1, max_size=8))
def test_search_asking_the_oracle_at_every_placement_still_decides_exactly(blocks):
    for comp in components(blocks):
        optimum = brute_force([blocks[i] for i in comp.blocks])
        below = Search(comp, optimum - 1, time.monotonic() + 10)
        below.ask_every = 1             # refutations, jumps and bisection on every placement
        assert not below.run() and optimum - 1 + below.short <= optimum
        at = Search(comp, optimum, time.monotonic() + 10)
        at.ask_every = 1
        assert at.run()
        check([str(i) for i in comp.blocks], [blocks[i] for i in comp.blocks], at.offsets, optimum, 1)


@settings(max_examples=80, deadline=None)
@given(st.lists(block, min_size=1, max_size=8))
def test_search_without_the_oracle_decides_exactly(blocks):
    for comp in components(blocks):
        optimum = brute_force([blocks[i] for i in comp.blocks])
        below = Search(comp, optimum - 1, time.monotonic() + 10)
        below.ask_every = 10 ** 9       # the search alone: the oracle is never asked
        assert not below.run() and optimum - 1 + below.short <= optimum
        at = Search(comp, optimum, time.monotonic() + 10)
        at.ask_every = 10 ** 9
        assert at.run()
        check([str(i) for i in comp.blocks], [blocks[i] for i in comp.blocks], at.offsets, optimum, 1)


def test_search_out_of_time_raises_instead_of_answering():
    blocks, _, capacity = production(450, 0)
    comp = max(components(blocks), key=lambda c: len(c.size))
    with pytest.raises(Timeout):
        Search(comp, capacity, time.monotonic() + 0.05).run()


def test_search_and_cpsat_stop_when_told_to():
    blocks, _, capacity = production(450, 0)
    comp = max(components(blocks), key=lambda c: len(c.size))
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    start = time.monotonic()
    with pytest.raises(Timeout):
        Search(comp, capacity, start + 30, stop).run()
    assert time.monotonic() - start < 3
    stop.clear()
    threading.Timer(0.3, stop.set).start()
    start = time.monotonic()
    assert cpsat.decide(comp, capacity, start + 30, stop) == (None, comp.lower)
    assert time.monotonic() - start < 3


@pytest.mark.parametrize("seed", [1, 2])
def test_search_with_its_oracle_plans_production_like_instances_at_their_peak(seed):
    blocks, _, capacity = production(150, seed)
    (comp,) = components(blocks)
    search = Search(comp, capacity, time.monotonic() + 30)
    assert search.run()
    check([str(i) for i in comp.blocks], [blocks[i] for i in comp.blocks], search.offsets, capacity, 1)
