"""Layer splits: the split model (Layers), plans stacked from its splits (Stacking), and
the race of differently seeded members."""
import os
import signal
import time

import pytest
from hypothesis import given, settings, strategies as st

from planner.check import check
from planner.place import Block, extent, lower_bound
from planner.place.layers import Layers
from planner.place.problem import components
from planner.place.skyline import skyline
from planner.place.stacking import Stacking, Stuck, race

from instances import ABOVE_BOUND, block, brute_force, cut, names


def test_layer_splits_plan_cut_rectangles_skyline_misses():
    for seed in (1, 9):
        blocks = cut(400, seed, 100, 4096)
        assert len(components(blocks)) == 1 and extent(blocks, skyline(blocks, work=0)) > 4096
        offsets = Stacking().plan(blocks, 4096, time.monotonic() + 30)
        check(names(blocks), blocks, offsets, 4096, 1)


def test_a_piece_that_ran_out_of_time_is_tried_again_with_more():
    blocks = cut(400, 1, 100, 4096)
    stacking = Stacking()
    with pytest.raises(Stuck):
        stacking.plan(blocks, 4096, time.monotonic())           # no time at all
    offsets = stacking.plan(blocks, 4096, time.monotonic() + 30)
    check(names(blocks), blocks, offsets, 4096, 1)


two_cores = pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                               reason="members run at once only on Linux with two cores or more")


class Dies(Stacking):
    """A member whose process exits at once, as a crash would end it."""
    def plan(self, blocks, capacity, deadline, splits=()):
        os._exit(1)


@two_cores
def test_the_plan_comes_from_the_member_that_lives_when_the_other_dies():
    blocks = cut(400, 1, 100, 4096)
    offsets = race([Dies(), Stacking()], blocks, 4096, time.monotonic() + 30)
    check(names(blocks), blocks, offsets, 4096, 1)


@two_cores
def test_the_members_are_not_waited_for_once_all_have_given_up():
    """Under the lower bound every member is Stuck at once; the race must end then, not
    at its deadline an hour away (the alarm only turns a hang into a failure)."""
    blocks = cut(400, 1, 100, 4096)
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the race waited for members that had given up"))
    signal.alarm(60)
    try:
        assert race([Stacking(), Dies()], blocks, 4095, time.monotonic() + 3600) is None
    finally:
        signal.alarm(0)


def test_blocks_over_whole_span_blocks_fail_as_the_whole_component():
    """Any plan can put blocks live over the whole span at the bottom, so when the rest
    does not fit over them, the whole component does not fit under the capacity; that,
    not the rest under a lower one, is what a layer split must forbid, or it finds the
    same split again."""
    first, last = min(b.first for b in ABOVE_BOUND), max(b.last for b in ABOVE_BOUND)
    blocks = ABOVE_BOUND + [Block(first, last, 5)]
    assert lower_bound(blocks) == 13 and len(components(blocks)) == 1
    with pytest.raises(Stuck) as stuck:
        Stacking().plan(blocks, 13, time.monotonic() + 10)
    assert sorted(stuck.value.blocks) == list(range(len(blocks))) and stuck.value.capacity == 13
    offsets = Stacking().plan(blocks, 14, time.monotonic() + 10)
    check(names(blocks), blocks, offsets, 14, 1)


def test_layers_split_within_their_heights_and_forbidden_groups_stay_apart():
    blocks = next(b for b in (cut(60, seed, 20, 64) for seed in range(40)) if len(components(b)) == 1)
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
    blocks = [b for first, c, last, size in strips for b in (Block(first, c - 1, size), Block(c, last, size))]
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
    check(names(blocks), blocks, offsets, optimum, 1)
    with pytest.raises(Stuck):
        Stacking().plan(blocks, optimum - 1, time.monotonic() + 10)


class Sleeps(Stacking):
    """A member that reports its process id and searches on (sleeps) until it is ended."""
    def plan(self, blocks, capacity, deadline):
        print(os.getpid(), flush=True)
        time.sleep(600)


@two_cores
def test_members_end_with_a_parent_killed_outright():
    """SIGTERM or SIGKILL gives the parent no time to kill its members: they end with it rather than
    search on at full speed for the rest of their share."""
    import subprocess
    import sys
    code = ("import sys, time; sys.path[:0] = ['tests', '.']; import test_stacking as t; from instances import cut; "
            "t.race([t.Sleeps()], cut(30, 1, 12, 64), 64, time.monotonic() + 600)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    member = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    for _ in range(50):
        try:
            os.kill(member, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(member, signal.SIGKILL)
    pytest.fail("the member outlived its parent")


@two_cores
def test_sigterm_to_the_whole_group_ends_the_members_without_a_word():
    """`timeout` and service managers signal the process group: a member that kept the parent's
    SIGTERM handler raised its exception and multiprocessing printed the traceback."""
    import subprocess
    import sys
    code = ("import signal, sys, time; sys.path[:0] = ['tests', '.']; import llama_arena, test_stacking as t; "
            "from instances import cut; signal.signal(signal.SIGTERM, llama_arena._terminate)\n"
            "try: t.race([t.Sleeps()], cut(30, 1, 12, 64), 64, time.monotonic() + 600)\n"
            "except llama_arena.Terminated: sys.exit(143)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    member = int(parent.stdout.readline())
    os.killpg(parent.pid, signal.SIGTERM)
    assert parent.wait(timeout=30) == 143
    assert parent.stderr.read() == ""
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(member, 0)
            time.sleep(0.1)


def _race_here(blocks, capacity):
    from planner.place.stacking import MEMBERS
    return race([Stacking(seed, share) for seed, share in MEMBERS], blocks, capacity, time.monotonic() + 60)


@two_cores
def test_a_race_in_a_pools_worker_runs_one_member_there():
    """A multiprocessing.Pool's workers are daemonic, and a daemonic process may start none."""
    import multiprocessing
    blocks = cut(30, 1, 12, 64)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        offsets = pool.apply(_race_here, (blocks, 64))
    check([str(k) for k in range(len(blocks))], blocks, offsets, 64, 1)
