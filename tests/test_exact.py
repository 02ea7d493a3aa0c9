"""The exact strategy: proven optima on known cases, bounds kept honest, auto falls back to it."""
import os
import random
import time

import pytest
from hypothesis import given, settings, strategies as st

from planner import exact
from planner.check import check
from planner.exact import Oracle, Search, Stacking, Stuck, components, solve
from planner.layered import layered
from planner.layers import Layers
from planner.plan import Buffer, _search, place
from planner.strategies import arena, best_fit, greedy_size, lower_bound, naive, skyline
from test_strategies_property import block, brute_force

# minimalloc's README example, id,lower,upper(exclusive),size: the optimum is 12
README = [(0, 2, 4), (3, 8, 4), (0, 8, 4), (9, 20, 4), (0, 20, 4)]


def cut_rectangle(pieces, seed, steps=12, capacity=64):
    """Cut a capacity x steps rectangle into `pieces` blocks: they fill it exactly, so
    the optimum is the capacity."""
    rng = random.Random(seed)
    rects = [(0, steps, 0, capacity)]
    while len(rects) < pieces:
        i = rng.randrange(len(rects))
        t0, t1, b0, b1 = rects[i]
        if rng.random() < 0.5 and t1 - t0 > 1:
            c = rng.randrange(t0 + 1, t1)
            rects[i:i + 1] = [(t0, c, b0, b1), (c, t1, b0, b1)]
        elif b1 - b0 > 1:
            c = rng.randrange(b0 + 1, b1)
            rects[i:i + 1] = [(t0, t1, b0, c), (t0, t1, c, b1)]
    rng.shuffle(rects)
    return [(t0, t1 - 1, b1 - b0) for t0, t1, b0, b1 in rects]


def test_readme_example_is_solved_at_12_and_proven():
    result = solve(README, greedy_size(README), 5)
    assert arena(README, result.offsets) == 12 == result.bound and result.optimal


def test_known_optimum_by_construction_is_found_when_heuristics_miss_it():
    missed = 0
    for seed in range(20):
        blocks = cut_rectangle(30, seed)
        start = min(best_fit(blocks), greedy_size(blocks), key=lambda o: arena(blocks, o))
        missed += arena(blocks, start) > 64
        result = solve(blocks, start, 10)
        check([str(i) for i in range(len(blocks))], blocks, result.offsets, 64, 1)
        assert arena(blocks, result.offsets) == 64 == result.bound and result.optimal
    assert missed >= 5      # the cases are not all easy for the heuristics


# Found by random search, confirmed by brute force (tests/test_strategies_property.py):
# every step but 1 holds 8 bytes, yet no plan fits in 8.
ABOVE_BOUND = [(2, 5, 2), (3, 6, 1), (5, 7, 1), (2, 5, 3), (0, 2, 3), (4, 4, 2), (6, 6, 6), (7, 7, 7)]


def test_optimum_above_the_lower_bound_is_proven():
    assert lower_bound(ABOVE_BOUND) == 8
    result = solve(ABOVE_BOUND, greedy_size(ABOVE_BOUND), 5)
    assert arena(ABOVE_BOUND, result.offsets) == result.bound == 9 and result.optimal


def test_failed_search_names_the_next_capacity_worth_trying():
    (comp,) = components(ABOVE_BOUND)
    search = Search(comp, 8, time.monotonic() + 5)
    assert not search.run() and search.short == 1
    assert Search(comp, 9, time.monotonic() + 5).run()


def test_time_out_returns_the_start_plan_and_a_true_bound():
    blocks = cut_rectangle(300, 1, steps=60, capacity=4096)
    start = greedy_size(blocks)
    result = solve(blocks, start, 0.0)
    assert arena(blocks, result.offsets) <= arena(blocks, start)
    assert lower_bound(blocks) <= result.bound <= 4096


def test_independent_parts_in_time_are_planned_separately():
    blocks = README + [(b[0] + 30, b[1] + 30, b[2] * 2) for b in README] + [(60, 60, 0)]
    assert len(components(blocks)) == 2          # the zero-sized block takes no part
    result = solve(blocks, greedy_size(blocks), 5)
    assert arena(blocks, result.offsets) == 24 == result.bound and result.optimal
    assert min(result.offsets[5:10]) == 0


def test_a_hard_component_does_not_take_the_time_of_the_others():
    hard = cut_rectangle(400, 3, steps=100, capacity=4096)          # not solved in seconds
    easy = [(first + 200, last + 200, size) for first, last, size in cut_rectangle(30, 1, capacity=4096)]
    blocks = hard + easy
    start = skyline(hard) + naive(easy)          # the easy part starts far above the bound
    result = solve(blocks, start, 2)
    check([str(i) for i in range(len(blocks))], blocks, result.offsets, arena(blocks, result.offsets), 1)
    assert arena(easy, result.offsets[len(hard):]) == 4096


def test_auto_falls_back_to_exact_only_when_the_heuristics_miss():
    easy = [(0, 1, 256), (1, 2, 256)]
    assert _search(easy, "auto", 10)[0].startswith("auto:") and _search(easy, "auto", 10)[0] != "auto:exact"
    blocks = cut_rectangle(150, 16, steps=40, capacity=4096)      # every heuristic misses it
    assert all(arena(blocks, heuristic(blocks)) > 4096 for heuristic in (greedy_size, best_fit, skyline, layered))
    name, offsets, bound = _search(blocks, "auto", 10)
    assert (name, arena(blocks, offsets), bound) == ("auto:exact", 4096, 4096)


def test_plan_reports_proof_with_persistent_buffers_below():
    buffers = [Buffer("kv", "kv", 0, 4, 512, None, persistent=True)] + \
              [Buffer(f"t{i}", "t", f, l, s * 256, None) for i, (f, l, s) in enumerate(README)]
    plan = place(buffers, "exact", 256, [str(i) for i in range(21)])
    assert plan.arena == 512 + 12 * 256 == plan.bound and plan.optimal
    plan = place(buffers, "naive", 256, [str(i) for i in range(21)])
    assert plan.arena > plan.bound and not plan.optimal


def test_auto_skips_the_search_when_too_little_time_is_left():
    blocks = cut_rectangle(300, 0, steps=60, capacity=4096)     # every heuristic misses it
    start = time.monotonic()
    name, offsets, bound = _search(blocks, "auto", 0.01)
    assert time.monotonic() - start < 1 and name.endswith(":no-search")
    assert arena(blocks, offsets) >= bound == lower_bound(blocks)


def test_oracle_completes_a_plan_or_refutes_a_placement():
    # a block lifted by one byte leaves a gap under it that only a 1-byte block over its
    # first step could fill; with none there, every step being full, nothing completes it
    def liftable(comp):
        return [k for k in range(len(comp.size)) if comp.size[k] < 64
                and all(comp.size[j] > 1 for j in comp.covers[comp.lo[k]])]
    blocks, comp = next((b, c) for b in (cut_rectangle(40, seed) for seed in range(50))
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


def test_layer_splits_plan_cut_rectangles_the_search_alone_does_not_in_seconds():
    for seed in (0, 9):
        blocks = cut_rectangle(400, seed, steps=100, capacity=4096)
        assert len(components(blocks)) == 1 and arena(blocks, skyline(blocks)) > 4096
        offsets = Stacking().plan(blocks, 4096, time.monotonic() + 30)
        check([str(i) for i in range(len(blocks))], blocks, offsets, 4096, 1)


def test_a_piece_that_ran_out_of_time_is_tried_again_with_more():
    blocks = cut_rectangle(400, 0, steps=100, capacity=4096)
    stacking = Stacking()
    with pytest.raises(Stuck):
        stacking.plan(blocks, 4096, time.monotonic())           # no time at all
    offsets = stacking.plan(blocks, 4096, time.monotonic() + 30)
    check([str(i) for i in range(len(blocks))], blocks, offsets, 4096, 1)


two_cores = pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                               reason="members run at once only on Linux with two cores or more")


@two_cores
def test_the_members_race_and_one_that_dies_costs_nothing(monkeypatch):
    """The first member's process dies at once; the plan comes from the second."""
    send = exact._send
    def dying(pipe, stacking, *args):
        if stacking.seed == exact.MEMBERS[0][0]:
            os._exit(1)
        send(pipe, stacking, *args)
    monkeypatch.setattr(exact, "_send", dying)
    blocks = cut_rectangle(400, 0, steps=100, capacity=4096)
    (comp,) = components(blocks)
    offsets = exact._stacked(comp, 4096, time.monotonic() + 30)
    check([str(i) for i in comp.blocks], [blocks[i] for i in comp.blocks], offsets, 4096, 1)


@two_cores
def test_the_members_are_not_waited_for_once_all_have_given_up():
    blocks = cut_rectangle(400, 0, steps=100, capacity=4096)
    (comp,) = components(blocks)
    start = time.monotonic()
    assert exact._stacked(comp, 4095, start + 30) is None      # under the lower bound: Stuck at once
    assert time.monotonic() - start < 5


def test_blocks_over_whole_span_blocks_fail_as_the_whole_component():
    """Any plan can put blocks live over the whole span at the bottom, so when the rest
    does not fit over them, the whole component does not fit under the capacity; that,
    not the rest under a lower one, is what a layer split must forbid, or it finds the
    same split again."""
    first, last = min(b[0] for b in ABOVE_BOUND), max(b[1] for b in ABOVE_BOUND)
    blocks = ABOVE_BOUND + [(first, last, 5)]
    assert lower_bound(blocks) == 13 and len(components(blocks)) == 1
    with pytest.raises(Stuck) as stuck:
        Stacking().plan(blocks, 13, time.monotonic() + 10)
    assert sorted(stuck.value.blocks) == list(range(len(blocks))) and stuck.value.capacity == 13
    offsets = Stacking().plan(blocks, 14, time.monotonic() + 10)
    check([str(i) for i in range(len(blocks))], blocks, offsets, 14, 1)


def test_layers_split_within_their_heights_and_forbidden_groups_stay_apart():
    blocks = next(b for b in (cut_rectangle(60, seed, steps=20) for seed in range(40)) if len(components(b)) == 1)
    (comp,) = components(blocks)
    layers = Layers(comp, 64, 2, every_cut=True)
    split = layers.next(time.monotonic() + 10)
    assert sum(height for _, height in split) == 64
    assert sorted(k for group, _ in split for k in group) == list(range(len(blocks)))
    for group, height in split:
        layer = [blocks[comp.blocks[k]] for k in group]
        assert lower_bound(layer) <= height and len(components(layer)) > 1
    for group, height in split:                 # each layer, once forbidden, is not split off again
        layers.forbid(group, height)
        split = layers.next(time.monotonic() + 10)
        assert split is None or not any(h <= height and set(group) <= set(g) for g, h in split)


def test_layers_that_all_fall_apart_may_need_more_than_two():
    """Three strips, each cut in time at a point of its own: two layers cannot both fall
    apart (one would hold two strips, crossing both their cut points), three can."""
    strips = [(0, 3, 9, 9), (0, 5, 9, 3), (0, 7, 9, 5)]      # (first, cut, last, height)
    blocks = [b for first, c, last, size in strips for b in ((first, c - 1, size), (c, last, size))]
    (comp,) = components(blocks)
    assert Layers(comp, 17, 2, every_cut=True).next(time.monotonic() + 10) is None
    split = Layers(comp, 17, 3, every_cut=True).next(time.monotonic() + 10)
    assert sorted(sorted(comp.size[k] for k in group) + [height] for group, height in split) == \
        [[3, 3, 3], [5, 5, 5], [9, 9, 9]]


@settings(max_examples=60, deadline=None)
@given(st.lists(block, min_size=1, max_size=7))
def test_layer_splits_plan_at_the_optimum_and_never_below_it(blocks):
    optimum = brute_force(blocks)
    offsets = Stacking().plan(blocks, optimum, time.monotonic() + 10)
    check([str(i) for i in range(len(blocks))], blocks, offsets, optimum, 1)
    with pytest.raises(Stuck):
        Stacking().plan(blocks, optimum - 1, time.monotonic() + 10)
