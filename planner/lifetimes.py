"""Unroll a Schedule and bind its dimensions: one Instance per lifetime of a tensor.

Semantics (docs/schedule-format.md):
- steps are numbered in execution order after repeat blocks are unrolled;
- `+` starts a new instance of the tensor; it lives on the closed interval [first, last],
  where `last` is the step whose cell holds `x`, or the last step if none does;
- a blank cell on a live tensor means `o` (stays alive, untouched);
- `+m` instances live in host memory and take no place in the arena;
- persistent tensors (KV cache) are live before step 0 and are never destroyed.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from . import expr
from .calls import TILE_FROM
from .errors import ArenaError, plural, show, where
from .schedule import ACT, ELEMENT_BYTES, Repeat, Schedule, StepRow, is_count

DEFAULT_ALIGN = 256   # bytes: the CUDA allocation granule
# Far beyond any model (a 100-layer model has a few thousand steps), but below what a
# typo such as `--set nlayers=1000000000` would ask this machine to hold.
MAX_STEPS = 1_000_000
MAX_INSTANCES = 1_000_000
# The arena is planned in 64-bit integers (planner/plan.py: 2^62 bytes in all); a tensor
# of more elements is a typo, and its bytes could not even be printed past 4,300 digits.
MAX_ELEMENTS = 2 ** 62


@dataclass
class Step:
    index: int
    name: str            # unique after unrolling: "attn_norm.3" is attn_norm of layer 3
    op: str              # the row name in the table, which the executor dispatches on
    layer: int | None    # index within its repeat block, None outside one
    kind: str | None     # "kernel", "graph" or None
    cells: dict[str, str]
    block: int | None = None     # which repeat block it was unrolled from, counted from 0; None outside one


@dataclass
class Instance:
    name: str            # "x_#1": the second instance of tensor x_
    tensor: str
    first: int
    last: int
    shape: list[int]
    dtype: str           # element type, e.g. "f16"
    nbytes: int          # exact bytes
    size: int            # bytes rounded up to the alignment: what the arena holds
    memory: str          # "device" or "host"
    persistent: bool = False


@dataclass
class Lifetimes:
    schedule: str
    dims: dict[str, int]
    align: int
    steps: list[Step]
    instances: list[Instance]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Lifetimes":
        return cls(d["schedule"], d["dims"], d["align"], [Step(**s) for s in d["steps"]],
                   [Instance(**i) for i in d["instances"]])

    def live_at(self, step: int) -> list[Instance]:
        return [i for i in self.instances if i.first <= step <= i.last]


def align_up(nbytes: int, align: int) -> int:
    return -(-nbytes // align) * align


def bind(schedule: Schedule, dims: dict[str, int], dtype: str = "f32", align: int = DEFAULT_ALIGN) -> Lifetimes:
    """Unroll and bind `schedule`; every fault is an ArenaError naming step and tensor."""
    if dtype not in ELEMENT_BYTES:
        raise ArenaError(f"--dtype: unknown element type '{dtype}' (known: f32, f16, bf16)")
    if align < 1:
        raise ArenaError(f"--align must be a positive number of bytes, not {align}")
    dims = {k: v for k, v in dims.items() if k in schedule.dims}
    shapes = _bind_shapes(schedule, dims)
    steps = _unroll(schedule, dims)
    return _Walk(schedule, steps).instances(shapes, dtype, align, dims)


def _needed(schedule: Schedule) -> set[str]:
    names = {n for t in schedule.tensors.values() for axis in t.shape for n in expr.names(axis)}
    return names.union(*(_count_names(schedule.dims, r.count) for r in schedule.steps if isinstance(r, Repeat)))


def _count_names(declared: dict[str, str], count: str) -> set[str]:
    """The dimensions a repeat count names: none (a whole number), one (a declared dimension,
    which may be named as a Python keyword, `in`), or those of an expression (`nlayers // 2`)."""
    if is_count(count):
        return set()
    return {count} if count in declared else expr.names(count)


def _described(dim: str, description: str) -> str:
    """' (what it is)', unless the schedule says no more than the name (a markdown table's shapes)."""
    return "" if description in ("", dim) else f" ({description})"


def _numeric(dim: str, description: str) -> str:
    """A hint where a table's 'dims' gives a number: its values describe, --set binds."""
    return f" (under 'dims' {description} describes {dim}; --set {dim}={description} binds it)" \
        if description.strip().isascii() and description.strip().isdigit() else ""


def _first_use(schedule: Schedule, dim: str) -> str:
    """The place of the first tensor (or else repeat) that needs `dim`, as a fault's prefix."""
    for t in schedule.tensors.values():
        if any(dim in expr.names(axis) for axis in t.shape):
            return where(schedule.file, t.line, tensor=t.name)
    line = next(r.line for r in schedule.steps if isinstance(r, Repeat) and dim in _count_names(schedule.dims, r.count))
    return where(schedule.file, line)


def _bind_shapes(schedule: Schedule, dims: dict[str, int]) -> dict[str, list[int]]:
    unbound = _needed(schedule) - set(dims)
    if unbound & TILE_FROM:     # a tile is bound from them where --set gives none (calls.with_tile)
        unbound.discard("tile")
    unbound = sorted(unbound)
    if unbound:
        whole = " (or --nctx N, a call of the whole context)" if "nctx" in schedule.dims else ""
        raise ArenaError(*[f"{_first_use(schedule, d)}dimension '{d}'{_described(d, schedule.dims[d])} is not bound: "
                           f"pass --set {d}=N{whole if d == 'n' else ''}"     # (every model has its own dims)
                           + _numeric(d, schedule.dims[d]) for d in unbound])
    shapes, faults = {}, []
    not_positive: dict[tuple[str, ...], list[str]] = {}    # the shapes' faults, by the dims bound to 0 or less
    for t in schedule.tensors.values():
        try:
            shape = [expr.evaluate(axis, dims) for axis in t.shape]
        except expr.ExprError as e:
            faults.append(f"{where(schedule.file, t.line, tensor=t.name)}shape {t.spec()}: {e}")
            continue
        if any(s <= 0 for s in shape):
            not_positive.setdefault(_cause(t.shape, shape, dims), []).append(
                f"{where(schedule.file, t.line, tensor=t.name)}shape {t.spec()} evaluates to "
                f"({', '.join(map(_axis_text, shape))}): every dimension must be positive")
        elif math.prod(shape) > MAX_ELEMENTS:
            faults.append(f"{where(schedule.file, t.line, tensor=t.name)}shape {show(t.spec(), 100)} holds more "
                          f"than 2^62 elements: it evaluates to ({show(', '.join(map(_axis_text, shape)), 100)})")
        shapes[t.name] = shape
    faults += [fault for cause, same in not_positive.items() for fault in _one_for_all(cause, same)]
    if faults:
        raise ArenaError(*faults)
    return shapes


def _cause(axes: list[str], shape: list[int], dims: dict[str, int]) -> tuple[str, ...]:
    """The dimensions bound to 0 or less that the axes evaluating to 0 or less name; () where
    one such axis names none (its fault is its own: `k - 10` with k=4)."""
    causes = [{n for n in expr.names(axis) if dims[n] <= 0} for axis, size in zip(axes, shape) if size <= 0]
    return () if not all(causes) else tuple(sorted(set().union(*causes)))


def _one_for_all(cause: tuple[str, ...], faults: list[str]) -> list[str]:
    """The first of the shapes that dimensions bound to 0 or less (`cause`) make not positive, for
    all of them (`--set n=0` would otherwise be a fault for every tensor of the schedule)."""
    if not cause or len(faults) == 1:
        return faults
    more = "1 more tensor's shape" if len(faults) == 2 else f"{len(faults) - 1} more tensors' shapes"
    return [f"{faults[0]} (and {more} with {', '.join(cause)} not positive)"]


def _axis_text(value: int) -> str:
    """An axis as a fault quotes it: Python will not print an integer of over 4,300 digits."""
    return str(value) if abs(value) <= MAX_ELEMENTS else f"{'-' if value < 0 else ''}over 2^62"


def _unroll(schedule: Schedule, dims: dict[str, int]) -> list[tuple[Step, int | None]]:
    """Steps in execution order, each with the line of its row for fault messages."""
    counts = {id(r): _count(schedule, r, dims) for r in schedule.steps if isinstance(r, Repeat)}
    for r in schedule.steps:
        if isinstance(r, Repeat) and counts[id(r)] < 0:
            raise ArenaError(f"{where(schedule.file, r.line)}repeat count {r.count} = {counts[id(r)]}: "
                             "a block repeats 0 times or more")
    total = sum(counts[id(r)] * len(r.steps) if isinstance(r, Repeat) else 1 for r in schedule.steps)
    if total > MAX_STEPS:
        repeats = ", ".join(f"repeat {r.count} = {counts[id(r)]:,} at line {r.line}"
                            for r in schedule.steps if isinstance(r, Repeat))
        raise ArenaError(f"{schedule.file}: the schedule unrolls to {total:,} steps ({repeats}); "
                         f"at most {MAX_STEPS:,} are planned")
    steps = []

    def add(row: StepRow, layer, block=None):
        name = row.name if layer is None else f"{row.name}.{layer}"
        steps.append((Step(len(steps), name, row.name, layer, row.kind, dict(row.cells), block), row.line))

    blocks = 0      # repeat blocks so far (two may be equal: a YAML alias repeats one)
    for r in schedule.steps:
        if isinstance(r, Repeat):
            for layer in range(counts[id(r)] if r.steps else 0):     # a count of 10^20 repeats nothing
                for row in r.steps:
                    add(row, layer, blocks)
            blocks += 1
        else:
            add(r, None)
    if not steps:
        empty = next((r for r in schedule.steps if isinstance(r, Repeat) and r.steps), None)
        raise ArenaError(f"{schedule.file}: the schedule has no steps" if empty is None else
                         f"{where(schedule.file, empty.line)}the schedule has no steps: repeat {empty.count} is "
                         f"{counts[id(empty)]}, so its block unrolls to none")
    _check_unrolled_names(schedule, steps)
    return steps


def _count(schedule: Schedule, r: Repeat, dims: dict[str, int]) -> int:
    if is_count(r.count):
        return int(r.count)
    if r.count in schedule.dims:
        return dims[r.count]
    try:
        return expr.evaluate(r.count, dims)
    except expr.ExprError as e:     # a division by zero
        raise ArenaError(f"{where(schedule.file, r.line)}repeat count {r.count}: {e}") from None


def _check_unrolled_names(schedule: Schedule, steps: list[tuple[Step, int]]) -> None:
    """A row named as an unrolled step is (`a.1` beside a repeated `a`) would make the plan's
    step names say two steps at once: refused, naming both rows."""
    unrolled = {step.name: line for step, line in steps if step.layer is not None}
    faults = [f"{where(schedule.file, line, step.name)}a repeat block's row at line {unrolled[step.name]} "
              f"unrolls to a step of this name too; give this row another"
              for step, line in steps if step.layer is None and step.name in unrolled]
    if faults:
        raise ArenaError(*faults)


class _Walk:
    """Walk the unrolled steps, tracking which instance of each tensor is live."""

    def __init__(self, schedule: Schedule, steps):
        self.schedule, self.steps = schedule, steps
        self.faults: list[str] = []
        self.repeats: dict[tuple, list[int]] = {}    # a repeated fault's key -> [its index, the repeats of it]

    def fault(self, line, step: Step, tensor, message):
        """One fault for a cell of a repeat block's row that faults alike in every layer: each
        layer's would hide the faults after it. The others are counted on it."""
        if step.layer is None:
            self.faults.append(where(self.schedule.file, line, step.name, tensor) + message)
            return
        key = (step.block, step.op, tensor, re.sub(r"\.\d+'", "'", message))     # 's1.3' as 's1'
        if key in self.repeats:
            self.repeats[key][1] += 1
            return
        self.repeats[key] = [len(self.faults), 0]
        self.faults.append(where(self.schedule.file, line, step.name, tensor) + message)

    def raise_faults(self) -> None:
        for at, more in self.repeats.values():
            if more:
                self.faults[at] += f" (and at {more} {plural(more, 'more step')} of the same row)"
        raise ArenaError(*self.faults)

    def instances(self, shapes, dtype, align, dims) -> Lifetimes:
        last_step = len(self.steps) - 1
        live: dict[str, dict] = {}        # tensor -> the open instance
        ended: dict[str, str] = {}        # tensor -> name of the step that destroyed it
        spans: list[dict] = []
        counts: dict[str, int] = {}

        def open_instance(tensor, first, host=False, persistent=False):
            if len(spans) == MAX_INSTANCES:
                raise ArenaError(f"{self.schedule.file}: the schedule has more than {MAX_INSTANCES:,} instances; "
                                 f"at most {MAX_INSTANCES:,} are planned")
            k = counts.get(tensor, 0)
            counts[tensor] = k + 1
            live[tensor] = {"tensor": tensor, "k": k, "first": first, "last": last_step,
                            "host": host, "persistent": persistent}
            spans.append(live[tensor])

        for t in self.schedule.tensors.values():
            if t.persistent:
                open_instance(t.name, 0, persistent=True)

        for step, line in self.steps:
            for tensor, symbols in step.cells.items():
                decl = self.schedule.tensors[tensor]
                if symbols.startswith("+"):
                    if decl.persistent:
                        self.fault(line, step, tensor, "a persistent tensor is live before step 0 and is never "
                                   "created (persistent tensors are in the arena; a host-mapped one is created with '+m')")
                    elif tensor in live:
                        first = self.steps[live[tensor]["first"]][0].name
                        self.fault(line, step, tensor, f"'{symbols}' creates the tensor while its instance "
                                   f"created at step '{first}' is still live (destroy it with 'x' first)")
                    else:
                        open_instance(tensor, step.index, host="m" in symbols)
                elif tensor not in live:
                    use = "reads" if "r" in symbols else "writes" if "w" in symbols else "uses"
                    if tensor in ended:
                        self.fault(line, step, tensor, f"'{symbols}' {use} the tensor after it was "
                                   f"destroyed at step '{ended[tensor]}'")
                    else:
                        self.fault(line, step, tensor, f"'{symbols}' {use} the tensor before it is created ('+')")
                    continue
                if symbols.endswith("x") and tensor in live:
                    if decl.persistent:
                        self.fault(line, step, tensor, "a persistent tensor is never destroyed")
                        continue
                    live.pop(tensor)["last"] = step.index
                    ended[tensor] = step.name
        if self.faults:
            self.raise_faults()

        instances = []
        for s in spans:
            decl = self.schedule.tensors[s["tensor"]]
            elem = self.schedule.types[decl.type]
            elem = dtype if elem == ACT else elem
            shape = shapes[s["tensor"]]
            nbytes = math.prod(shape) * ELEMENT_BYTES[elem]
            instances.append(Instance(f"{s['tensor']}#{s['k']}", s["tensor"], s["first"], s["last"], shape, elem,
                                      nbytes, align_up(nbytes, align), "host" if s["host"] else "device",
                                      s["persistent"]))
        return Lifetimes(self.schedule.name, dims, align, [s for s, _ in self.steps], instances)
