"""Layers: a component cut across bytes into groups of blocks stacked one on another.

If the blocks split into groups and group j never has more than h_j bytes live, with the
h_j summing to the capacity, then each group can be planned alone under its own height
and the plans stacked: a plan of the whole. Such a split is worth having when each group
also falls apart in time (no block of it crosses some point), since each piece is then a
far smaller problem. This module holds only the question "which split?", as an OR-Tools
CP-SAT model; `stacking.Stacking` tries the splits it gives, and when a group cannot be
planned, tells it here (`forbid`), so the next split avoids that group.

Not every plan is a stack of layers, so no split proves anything about the capacity: a
split finds plans, never bounds.
"""
from __future__ import annotations

import time

from ortools.sat.python import cp_model

from .problem import Component
from .stopping import solve


class Layers:
    """Splits of a component's blocks into `count` layers under `capacity`. With
    `every_cut` each layer must fall apart in time; otherwise the last layer is free, and
    later splits work on it again. (A block over the whole span would keep its layer
    whole; `stacking.Stacking` puts such blocks at the bottom before asking.)"""

    def __init__(self, comp: Component, capacity: int, count: int, every_cut: bool, random_seed: int = 0):
        unit = comp.unit
        self.comp, self.unit, self.count = comp, unit, count
        n, sections, cap = len(comp.size), len(comp.load), capacity // unit
        m = self.model = cp_model.CpModel()
        self.member = [[m.new_bool_var(f"x{k}_{j}") for j in range(count)] for k in range(n)]
        self.height = [m.new_int_var(1, cap, f"h{j}") for j in range(count)]
        m.add(sum(self.height) == cap)
        for k in range(n):
            m.add_exactly_one(self.member[k])
        for j in range(count):
            m.add_bool_or([self.member[k][j] for k in range(n)])
            for over, load in zip(comp.covers, comp.load):
                excess = self._sum([(k, j, 1) for k in over], [(self.height[j], -1)])    # layer j's load - its height
                # Where a section is full, every layer is full there too (the heights sum
                # to the capacity): equal, not only at most, which propagates far better.
                m.add(excess == 0 if load == capacity else excess <= 0)
        # Redundant but a large speed-up: where two neighbouring sections are both full,
        # what a layer loses at the boundary it must regain there.
        for t in range(1, sections):
            if comp.load[t] == comp.load[t - 1] == capacity:
                for j in range(count):
                    m.add(self._sum([(k, j, 1) for k in comp.covers[t] if comp.lo[k] == t] +
                                    [(k, j, -1) for k in comp.covers[t - 1] if comp.hi[k] == t]) == 0)
        cut = count if every_cut else count - 1
        for j in range(cut):
            m.add_bool_or(self._cuts(j))
        for j in range(cut - 1):           # those layers are interchangeable: keep them in order
            m.add(self.height[j] <= self.height[j + 1])
        self.tries = random_seed        # CP-SAT's random seed for the next split
        self.work = 0.0

    def _sum(self, members: list[tuple[int, int, int]], more=()):
        """Sum over (k, j, sign) of sign * block k's size in units if it is in layer j, plus
        (variable, coefficient) terms, as one weighted sum: Python's sum() of products
        builds the model far slower (docs/measurements.md)."""
        terms = [(self.member[k][j], sign * self.comp.size[k] // self.unit) for k, j, sign in members] + list(more)
        return cp_model.LinearExpr.weighted_sum([v for v, _ in terms], [c for _, c in terms])

    def _cuts(self, j: int) -> list:
        """One literal per inner section boundary: true only if no block of layer j crosses it."""
        comp, literals = self.comp, []
        for t in range(1, len(comp.load)):
            literal = self.model.new_bool_var(f"cut{j}_{t}")
            for k in sorted(k for k in comp.covers[t] if comp.lo[k] < t):      # over t - 1 and t
                self.model.add_implication(literal, ~self.member[k][j])
            literals.append(literal)
        return literals

    def next(self, deadline: float, work: float | None = None) -> list[tuple[list[int], int]] | None:
        """The next split, as (blocks, height) per layer, bottom first; None when there is
        none left or the deadline passed first. `work` bounds CP-SAT's deterministic time
        too (its own measure of work, which does not depend on the clock); what was spent
        is added to `self.work`."""
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.01, deadline - time.monotonic())
        if work is not None:
            solver.parameters.max_deterministic_time = work
            # One presolve pass: on large pieces the default passes take longer than the
            # search itself (docs/measurements.md).
            solver.parameters.max_presolve_iterations = 1
        solver.parameters.num_workers = 1
        solver.parameters.random_seed = self.tries      # another split, not the same one again
        self.tries += 1
        status = solve(solver, self.model)
        self.work += solver.response_proto.deterministic_time
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        return [([k for k, row in enumerate(self.member) if solver.value(row[j])], solver.value(h) * self.unit)
                for j, h in enumerate(self.height)]

    def forbid(self, blocks: list[int], capacity: int) -> None:
        """`blocks` cannot be planned under `capacity`: no layer that low holds them all."""
        m = self.model
        for j, h in enumerate(self.height):
            low = m.new_bool_var("")
            m.add(h <= capacity // self.unit).only_enforce_if(low)
            m.add(h > capacity // self.unit).only_enforce_if(~low)
            m.add(sum(self.member[k][j] for k in blocks) < len(blocks)).only_enforce_if(low)
