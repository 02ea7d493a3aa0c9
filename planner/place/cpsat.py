"""OR-Tools CP-SAT on one component: one rectangle per block (sections by bytes, in units
of the sizes' gcd), no two overlapping (no_overlap_2d). It decides a capacity (`decide`),
minimizes one where the other methods stall (`minimize`, also exact's probes and the
completions of the search's paths), and plans CSV sizes padded to --align (`padded`)."""
from __future__ import annotations

import math
import threading
import time

from ortools.sat.python import cp_model

from .problem import Block, Component, components
from .stopping import solve

# Wall seconds per block to build a model and hand it to CP-SAT: 21-35 µs on components of
# 3,000 to 20,000 blocks. No model is started that could not be built before its deadline
# (a limit of 2 s on 10^4 blocks ran 0.4 s over, building one).
MODEL_BLOCK_S = 40e-6


def model_in_time(comp: Component, deadline: float) -> bool:
    return deadline - time.monotonic() > len(comp.size) * MODEL_BLOCK_S


def rectangles(model: cp_model.CpModel, comp: Component, top: int) -> list:
    """One rectangle per block in `model`, no two overlapping; returns block k's offset
    variable (in units of comp.unit), in [0, top - size]."""
    unit, offsets, times, spaces = comp.unit, [], [], []
    for k, size in enumerate(comp.size):
        y = model.new_int_var(0, top - size // unit, f"y{k}")
        times.append(model.new_fixed_size_interval_var(comp.lo[k], comp.hi[k] - comp.lo[k], f"x{k}"))
        spaces.append(model.new_fixed_size_interval_var(y, size // unit, f"b{k}"))
        offsets.append(y)
    model.add_no_overlap_2d(times, spaces)
    return offsets


class Oracle:
    """CP-SAT asked whether blocks placed at given offsets can be completed under the
    capacity. The search cannot refute some wrong placements without enumerating every
    arrangement of the blocks above them; CP-SAT's propagation often does it in
    milliseconds. The model is built once, at the first question; a question fixes the
    offsets by narrowing domains, and widens them back after."""

    LIMIT = 0.1     # seconds a question: the answers that help come in milliseconds

    def __init__(self, comp: Component, capacity: int):
        self.comp, self.capacity = comp, capacity
        self.model = None

    def ask(self, placed: list[tuple[int, int]], deadline: float, limit: float = LIMIT,
            until=None) -> list[int] | bool | None:
        """Given (block, offset) placements: a completed plan, False when there is none,
        None when undecided in `limit` seconds (or by the deadline, or once `until` is set)."""
        if self.model is None:
            if not model_in_time(self.comp, deadline):
                return None
            self.model = cp_model.CpModel()
            self.offsets = rectangles(self.model, self.comp, self.capacity // self.comp.unit)
        unit, domains = self.comp.unit, self.model.proto.variables
        widths = [(domains[k].domain[0], domains[k].domain[1]) for k, _ in placed]
        for k, offset in placed:
            domains[k].domain[0] = domains[k].domain[1] = offset // unit
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.01, min(limit, deadline - time.monotonic()))
        status = solve(solver, self.model, until)
        for (k, _), (low, high) in zip(placed, widths):
            domains[k].domain[0], domains[k].domain[1] = low, high
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return [solver.value(y) * unit for y in self.offsets]
        return False if status == cp_model.INFEASIBLE else None


def minimize(comp: Component, plan: list[int], bound: int, deadline: float,
             stop: threading.Event | None = None, bound_first: bool = True) -> tuple[list[int] | None, int]:
    """First (`bound_first`) at the bound alone, where tight offset domains let the
    constraint propagate hard; if that fails, minimizing the capacity from `plan`'s down.
    (plan or None, proven bound); undecided at once when `stop` is set."""
    unit = comp.unit                        # sizes in units of their gcd: smaller domains
    floor = lowest = -(-bound // unit)
    upper = comp.extent(plan) // unit
    if bound_first:
        halfway = (time.monotonic() + deadline) / 2
        status, found, _ = _run(comp, lowest, lowest, None, halfway, stop)
        if found is not None:
            return found, bound
        if status == cp_model.INFEASIBLE:
            lowest += 1
    status, found, proven = _run(comp, lowest, upper, plan, deadline, stop)
    # The models hold no capacity under `floor`; a plan under it meets `floor` as well. So only a
    # proof above `floor` says that no plan of the component meets it: `bound` may be another
    # component's, above this one's optimum, and rounding it up to whole units proves nothing.
    proven = max(lowest, proven)
    return found, max(bound, proven * unit) if proven > floor else bound


def decide(comp: Component, capacity: int, deadline: float,
           stop: threading.Event | None = None) -> tuple[list[int] | None, int]:
    """(a plan within `capacity` or None, a proven bound: above `capacity` where none fits);
    undecided at once when `stop` is set."""
    top = capacity // comp.unit
    status, found, _ = _run(comp, top, top, None, deadline, stop)
    return found, (top + 1) * comp.unit if status == cp_model.INFEASIBLE else comp.lower


def padded(blocks: list[Block], nbytes: list[int], lowest: int, highest: int,
           deadline: float) -> tuple[list[int] | None, int]:
    """The least top within [lowest, highest] bytes of a plan of `blocks` (sizes rounded up to
    an alignment, planner/padding.py) in which block k ends at its offset + nbytes[k]: (the plan,
    or None where none was found; a proven bound on the top). Offsets that are multiples of each
    component's unit lose nothing: dropping every block onto the rounded tops below it makes
    them so, and lowers every top."""
    parts = components(blocks)
    model = cp_model.CpModel()
    top = model.new_int_var(lowest, highest, "top")
    most = max(b.size - n for b, n in zip(blocks, nbytes))
    placed = []
    for comp in parts:
        for k, y in zip(comp.blocks, rectangles(model, comp, (highest + most) // comp.unit)):
            model.add(comp.unit * y + nbytes[k] <= top)
            placed.append((k, comp.unit, y))
    model.minimize(top)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, deadline - time.monotonic())
    status = solve(solver, model, None)
    if status == cp_model.INFEASIBLE:
        return None, highest + 1
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, lowest
    offsets = [0] * len(blocks)         # a block of size 0 in no component
    for k, unit, y in placed:
        offsets[k] = unit * solver.value(y)
    proven = solver.value(top) if status == cp_model.OPTIMAL else _whole_bound(solver.best_objective_bound, lowest)
    return offsets, proven


def _run(comp: Component, lowest: int, highest: int, hint: list[int] | None, deadline: float,
         stop: threading.Event | None):
    """Minimize the capacity within [lowest, highest] units: (status, plan or None,
    proven lower bound in units)."""
    if stop is not None and stop.is_set() or not model_in_time(comp, deadline):
        return cp_model.UNKNOWN, None, lowest
    unit, twins = comp.unit, _twins(comp)
    if hint is not None:
        hint = list(hint)
        for group in twins:                     # swapping interchangeable blocks keeps a plan valid
            for k, o in zip(group, sorted(hint[k] for k in group)):
                hint[k] = o
    model = cp_model.CpModel()
    capacity = model.new_int_var(lowest, highest, "capacity")
    offsets = rectangles(model, comp, highest)
    for k, y in enumerate(offsets):
        model.add(y + comp.size[k] // unit <= capacity)
        if hint is not None:
            model.add_hint(y, hint[k] // unit)
    for group in twins:                         # break their symmetry: keep them in order
        for k, j in zip(group, group[1:]):
            model.add(offsets[k] < offsets[j])
    model.minimize(capacity)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, deadline - time.monotonic())
    status = solve(solver, model, stop)
    proven = lowest if status == cp_model.INFEASIBLE else _whole_bound(solver.best_objective_bound, lowest)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return status, [solver.value(y) * unit for y in offsets], proven
    return status, None, proven


def _whole_bound(bound: float, lowest: int) -> int:
    """CP-SAT's bound on the whole units, which it hands out as a double: above 2^53 the double
    may have rounded up past the whole bound, so a unit in the last place is taken off there."""
    return max(lowest, int(bound) - (int(math.ulp(bound)) if bound >= 2**53 else 0))


def _twins(comp: Component) -> list[list[int]]:
    """Groups of interchangeable blocks: the same sections, the same size."""
    groups: dict[tuple, list[int]] = {}
    for k, size in enumerate(comp.size):
        groups.setdefault((comp.lo[k], comp.hi[k], size), []).append(k)
    return [g for g in groups.values() if len(g) > 1]
