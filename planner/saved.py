"""Plans read back from the files `arena plan` writes: a plan's JSON (`--out PLAN.json`, or
`--json`), or a CSV problem's solution (`--out SOLUTION.csv`, or minimalloc's own). Each is
checked as a new plan is before anything is drawn from it, and its claims (the bounds, proven
optimal) against its buffers: a file of another kind, or edited into a wrong plan, is refused
naming the file."""
from __future__ import annotations

import json
from pathlib import Path

from . import csvio
from .check import PlanInvalid, check
from .errors import ArenaError, read_json_object
from .place import Block, extent, lower_bound
from .plan import Buffer, Plan, buffer_fault

# Each field as Plan.to_dict writes it: its types (None: JSON's null)
PLAN_FIELDS = {"arena": int, "lower_bound": int, "align": int, "strategy": str, "steps": list, "buffers": list,
               "optimal": bool, "bound": int, "no_reuse": int, "host_bytes": int, "schedule": str, "dims": dict}
BUFFER_FIELDS = {"name": str, "tensor": str, "first": int, "last": int, "size": int, "offset": (int, None),
                 "memory": str, "shape": (list, None), "dtype": (str, None), "nbytes": (int, None),
                 "persistent": bool}
JSON_TYPES = {int: "an integer", str: "a string", list: "a list", dict: "an object", bool: "true or false"}


def load_plan(path) -> Plan:
    """The plan a file holds, checked."""
    path = Path(path)
    plan = _solution(path) if path.suffix.lower() == ".csv" else _plan_json(path)
    _check(path, plan)
    return plan


def _solution(path: Path) -> Plan:
    buffers, offsets = csvio.read_solution(path)
    blocks = [Block(b.first, b.last, b.size) for b in buffers]
    lower = lower_bound(blocks)
    arena = extent(blocks, offsets)
    for b, offset in zip(buffers, offsets):
        b.offset = offset
    return Plan(arena, lower, 1, f"read from {path.name}", [], buffers, optimal=arena == lower, bound=lower,
                no_reuse=sum(b.size for b in buffers))


def _plan_json(path: Path) -> Plan:
    d = read_json_object(path, "plan")
    if "ranks" in d:
        raise ArenaError(f"{path}: the plans of the ranks of `arena plan --tp`; a plan file holds one plan "
                         "(`arena plan` without --tp writes one)")
    if d.get("fits") is False:
        raise ArenaError(f"{path}: the answer of a --capacity miss, which holds no plan")
    faults = _typed(path, "", d, PLAN_FIELDS)
    if faults:
        raise ArenaError(*faults)
    for k, b in enumerate(d["buffers"]):
        faults += _typed(path, f"buffers[{k}].", b, BUFFER_FIELDS) if isinstance(b, dict) else \
            [f"{path}: buffers[{k}] is {json.dumps(b)[:40]}; a buffer is a JSON object"]
        if len(faults) >= 20:
            break
    if faults:
        raise ArenaError(*faults)
    return Plan(**{k: v for k, v in d.items() if k in PLAN_FIELDS and k != "buffers"},
                buffers=[Buffer(**{k: v for k, v in b.items() if k in BUFFER_FIELDS}) for b in d["buffers"]])


def _typed(path: Path, prefix: str, d: dict, fields: dict) -> list[str]:
    """Faults for the fields of `d` missing or of another type than `fields` says."""
    missing = [f"'{prefix}{name}'" for name in fields if name not in d]
    faults = [f"{path}: no {', '.join(missing)}; not a plan `arena plan` wrote"] if missing else []
    for name, types in fields.items():
        types = types if isinstance(types, tuple) else (types,)
        if name in d and not any(d[name] is None if t is None else type(d[name]) is t for t in types):
            faults.append(f"{path}: {prefix}{name} is {json.dumps(d[name])[:40]}; expected "
                          + " or ".join("null" if t is None else JSON_TYPES[t] for t in types))
    return faults


def _check(path: Path, plan: Plan) -> None:
    """Refuse a plan whose buffers are not a plan (overlaps, offsets out of the arena or not
    aligned, times out of its steps) or whose figures its buffers belie."""
    device = [b for b in plan.buffers if b.memory == "device"]
    faults = [f"{path}: buffer '{b.name}' {fault}" for b in plan.buffers for fault in _buffer_faults(plan, b)]
    if plan.align < 1:
        faults.append(f"{path}: align is {plan.align}; alignments are positive")
    if faults:
        raise ArenaError(*faults[:20])
    blocks = [Block(b.first, b.last, b.size) for b in device]
    try:
        check([b.name for b in device], blocks, [b.offset for b in device], plan.arena, plan.align)
    except PlanInvalid as e:
        raise ArenaError(*(f"{path}: {fault}" for fault in str(e).split("\n"))) from None
    top, peak = extent(blocks, [b.offset for b in device]), lower_bound(blocks)
    claims = [(plan.arena == top, f"arena {plan.arena:,}, but its buffers end at {top:,}"),
              (plan.lower_bound <= peak, f"lower bound {plan.lower_bound:,}, above the {peak:,} bytes live at its peak"),
              (plan.lower_bound <= plan.bound <= plan.arena,
               f"best bound {plan.bound:,}, outside [lower bound {plan.lower_bound:,}, arena {plan.arena:,}]"),
              (plan.optimal == (plan.arena == plan.bound),
               f"proven optimal {'true' if plan.optimal else 'false'}, with arena {plan.arena:,} and best bound "
               f"{plan.bound:,}")]
    faults = [f"{path}: {fault}" for holds, fault in claims if not holds]
    if faults:
        raise ArenaError(*faults)


def _buffer_faults(plan: Plan, b: Buffer) -> list[str]:
    made = buffer_fault(b)      # as place() refuses it
    if made:
        return [f"has {made}"]
    faults = []
    if (b.offset is None) != (b.memory == "host"):
        faults.append("has an offset in host memory" if b.offset is not None else "has no offset in device memory")
    if plan.steps and not 0 <= b.first <= b.last < len(plan.steps):
        faults.append(f"lives at steps {b.first}..{b.last}, outside the plan's {len(plan.steps)} steps")
    return faults
