"""minimalloc's CSV interchange: `id,lower,upper,size[,offset]`, where `upper` is exclusive.

In our plans `first = lower` and `last = upper - 1` (closed interval), in the file's own
time units; the strategies only ever compare times, so large values cost nothing.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from .errors import ArenaError
from .lifetimes import align_up
from .plan import Buffer, Plan

COLUMNS = ["id", "lower", "upper", "size"]


def read_problem(path, align: int = 1) -> list[Buffer]:
    path = Path(path)
    if align < 1:
        raise ArenaError(f"--align must be a positive number of bytes, not {align}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ArenaError(f"{path}: cannot read the CSV: {e.strerror}") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip() for c in rows[0][:4]] != COLUMNS:
        raise ArenaError(f"{path}:1: expected the header 'id,lower,upper,size' (minimalloc's format)")
    buffers, seen, faults = [], set(), []
    for number, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            name, lower, upper, size = row[0].strip(), int(row[1]), int(row[2]), int(row[3])
        except (ValueError, IndexError):
            faults.append(f"{path}:{number}: expected id,lower,upper,size with integers, got '{','.join(row)}'")
            continue
        if name in seen:
            faults.append(f"{path}:{number}: buffer '{name}' appears twice")
        elif upper <= lower:
            faults.append(f"{path}:{number}: buffer '{name}' has upper {upper} <= lower {lower} (upper is exclusive)")
        elif size <= 0:
            faults.append(f"{path}:{number}: buffer '{name}' has size {size}; sizes are positive")
        seen.add(name)
        buffers.append(Buffer(name, name, lower, upper - 1, align_up(size, align), None, nbytes=size))
    if faults:
        raise ArenaError(*faults[:20])
    if not buffers:
        raise ArenaError(f"{path}: the CSV lists no buffers")
    return buffers


def solution_csv(plan: Plan) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + ["offset"])
    for b in plan.buffers:
        writer.writerow([b.name, b.first, b.last + 1, b.size, b.offset])
    return out.getvalue()
