"""Layer splits: plans found by splitting blocks into layers (layers.py), each layer into
its pieces in time, and so on down to pieces the skyline heuristic or the search plans
alone. A split finds plans, never bounds: not every plan is a stack of layers.

How long this takes varies widely with the splits CP-SAT happens to find first, and a
slow run is seldom slow under another random seed; so where the machine has the cores,
differently seeded members run at once, each in its own process, and the first plan
wins (`race`).
"""
from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import time

from .layers import Layers
from .problem import Block, Component, components, extent, lower_bound, whole_span
from .search import Search, Timeout
from .skyline import skyline


PR_SET_PDEATHSIG = 1   # prctl's request: the signal this process gets when its parent ends


class Stuck(Exception):
    """No plan was found for `blocks` (indices into the caller's list) under `capacity`:
    the search proved there is none, or the layer splits ran out of splits or of time."""
    def __init__(self, blocks: list[int], capacity: int):
        self.blocks, self.capacity = blocks, capacity


# The kinds of split tried, in order: (layers, whether every layer must fall apart in
# time). Fewest layers first, each layer falling apart: such layers leave only small pieces, and
# the fewest of them is often the construction's own count, whose splits plan at once.
# When a component has no such split, one layer that falls apart is peeled off and the
# rest split again.
SPLITS = tuple((count, True) for count in range(2, 9)) + ((2, False),)
# What the rest of a peel tries: only peels. The peel is tried once no split into layers
# that all fall apart has planned the piece; where the piece had none, a split of the rest
# into k such layers would be, with the peeled layer, a split of the piece into k + 1, so
# the rest has none either, and proving it again is costly. (Where the piece had some that
# failed, the rest may have one: not tried.)
PEELS = ((2, False),)
# Of the time left at a split, the share its layers get: a wrong split is seldom refuted
# quickly (the groups look plannable until deep down), so it is given up when this runs out.
LAYER_SHARE = 0.5
# The members that race: (random seed of the split models, share of a split's layers). The
# second gives deep chains of splits more time, which some pieces need.
MEMBERS = ((0, LAYER_SHARE), (1000, 0.7))


class Stacking:
    """One member: splits tried one after another. The same piece comes up under many
    splits, so what found no plan with time to spare is remembered: blocks -> the highest
    capacity they failed under. (What ran out of its share of the time is not: under
    another split it may get more.)"""

    def __init__(self, random_seed: int = 0, layer_share: float = LAYER_SHARE):
        self.random_seed, self.layer_share = random_seed, layer_share
        self.failed: dict[tuple, int] = {}

    def plan(self, blocks: list[Block], capacity: int, deadline: float, splits=SPLITS) -> list[int]:
        """A plan of `blocks` under `capacity`, or Stuck; `splits` are the kinds of split
        tried, in order."""
        key = tuple(sorted(blocks))
        if lower_bound(blocks) > capacity or self.failed.get(key, -1) >= capacity:
            raise Stuck(list(range(len(blocks))), capacity)
        offsets = skyline(blocks, work=0)
        if extent(blocks, offsets) <= capacity:
            return offsets
        offsets = [0] * len(blocks)
        for comp in sorted(components(blocks), key=lambda comp: len(comp.size)):
            try:
                plan = self._component(comp, [blocks[i] for i in comp.blocks], capacity, deadline, splits)
            except Stuck as stuck:
                if time.monotonic() < deadline:
                    self.failed[key] = max(capacity, self.failed.get(key, -1))
                raise Stuck([comp.blocks[k] for k in stuck.blocks], stuck.capacity)
            for i, o in zip(comp.blocks, plan):
                offsets[i] = o
        return offsets

    def _component(self, comp: Component, blocks: list[Block], capacity: int, deadline: float,
                   splits) -> list[int]:
        """`blocks` are the component's, in its order."""
        whole = whole_span(blocks)
        if whole:
            below = sum(blocks[k].size for k in whole)
            rest = [k for k in range(len(blocks)) if k not in whole]
            try:
                return self._layers(blocks, [(whole, below), (rest, capacity - below)], deadline, splits)
            except Stuck:       # then no plan of the whole fits: say so, for the caller forbids what is named
                raise Stuck(list(range(len(blocks))), capacity) from None
        # A moment of the search: it plans or refutes most small pieces in milliseconds.
        search = Search(comp, capacity, min(deadline, time.monotonic() + 0.01 + 1e-4 * len(blocks)))
        try:
            if search.run():
                return search.offsets
            raise Stuck(list(range(len(blocks))), capacity)
        except Timeout:
            pass
        for count, every_cut in splits:
            layers = Layers(comp, capacity, count, every_cut, self.random_seed)
            while (split := layers.next(deadline)) is not None:
                now = time.monotonic()
                try:
                    return self._layers(blocks, split, now + self.layer_share * (deadline - now),
                                        SPLITS if every_cut else PEELS)
                except Stuck as stuck:
                    layers.forbid(stuck.blocks, stuck.capacity)
            if time.monotonic() >= deadline:
                break
        raise Stuck(list(range(len(blocks))), capacity)

    def _layers(self, blocks: list[Block], split: list[tuple[list[int], int]], deadline: float,
                rest) -> list[int]:
        """Each layer planned under its height, stacked bottom first; the last with the
        kinds of split `rest`, the others with all."""
        offsets, base = [0] * len(blocks), 0
        for j, (group, height) in enumerate(split):
            try:
                plan = self.plan([blocks[k] for k in group], height, deadline,
                                 rest if j == len(split) - 1 else SPLITS)
            except Stuck as stuck:
                raise Stuck([group[i] for i in stuck.blocks], stuck.capacity)
            for k, o in zip(group, plan):
                offsets[k] = base + o
            base += height
        return offsets


def stacked(comp: Component, capacity: int, deadline: float) -> list[int] | None:
    """A plan of the component under `capacity` from layer splits (the MEMBERS racing), or None."""
    blocks = [Block(lo, hi - 1, size) for lo, hi, size in zip(comp.lo, comp.hi, comp.size)]
    return race([Stacking(seed, share) for seed, share in MEMBERS], blocks, capacity, deadline)


def race(members: list[Stacking], blocks: list[Block], capacity: int, deadline: float) -> list[int] | None:
    """The first plan any member finds, each in a process of its own; None once all have
    given up (or died) or the deadline passed. Members at once need a second core, and
    fork (the blocks and the module as they are, at once), which is safe on Linux, where
    alone os.sched_getaffinity exists; elsewhere the first member runs alone, here."""
    # a daemonic process (a multiprocessing.Pool's worker) may start none
    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2 or \
            multiprocessing.current_process().daemon:
        return _member(members[0], blocks, capacity, deadline)
    context = multiprocessing.get_context("fork")
    pipes, processes = [], []
    for member in members:
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_send, args=(send, member, blocks, capacity, deadline, os.getpid()),
                                  daemon=True)
        process.start()
        send.close()
        pipes.append(receive)
        processes.append(process)
    try:
        while pipes and (left := deadline - time.monotonic()) > 0:
            for pipe in multiprocessing.connection.wait(pipes, left):
                pipes.remove(pipe)
                try:
                    plan = pipe.recv()
                except EOFError:        # the member died
                    plan = None
                if plan is not None:
                    return plan
        return None
    finally:
        for process in processes:
            process.kill()
            process.join()


def _member(member: Stacking, blocks: list[Block], capacity: int, deadline: float) -> list[int] | None:
    try:
        return member.plan(blocks, capacity, deadline)
    except Stuck:
        return None


def _send(pipe, member: Stacking, blocks: list[Block], capacity: int, deadline: float, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C is the parent's to answer: it kills the members
    signal.signal(signal.SIGTERM, signal.SIG_DFL)   # not the parent's handler: its exception would print here
    _die_with(parent)
    pipe.send(_member(member, blocks, capacity, deadline))


def _die_with(parent: int) -> None:
    """End this member when `parent` ends: a parent killed outright (SIGTERM, SIGKILL) cannot kill
    it, and it would search on at full speed for the rest of its share (Linux's PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:     # it ended before the request was made
        os._exit(0)
