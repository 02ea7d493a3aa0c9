"""minimalloc's CSV interchange: `id,lower,upper,size[,alignment][,gaps]`, where `upper` is exclusive;
a solution has the same rows and an `offset` column.

In our plans `first = lower` and `last = upper - 1` (closed interval), in the file's own
time units; the strategies only ever compare times, so large values cost nothing, up to
the 64-bit integers the pictures draw them in.
minimalloc's optional columns: `alignment` (a buffer's offset is a multiple of it) is kept
by `--align` when that is a multiple of every buffer's, and refused otherwise (a buffer's
size is rounded up to `--align` for the strategies, and its own kept as `nbytes`: planned
with `place(..., padded=True)`, it takes only those); `gaps`
(times within a lifetime when a buffer's bytes are free, `lower-upper` each, separated by spaces,
and an `@begin:end` window of the bytes kept during one where minimalloc writes it) are not used
for placing: each buffer is planned as live from lower to upper, which a plan with its gaps also
allows. They are used for the bound (`gap_bound`), which must hold for the problem as written:
there a buffer's bytes are counted as free throughout its gaps, windows too (a bound never above
the true one, whatever a window keeps).
"""
from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import NamedTuple

from .errors import ArenaError, note, read_text, show
from .lifetimes import align_up
from .place import Block, lower_bound
from .plan import LIMIT, MAX_BYTES, Buffer, Plan
from .schedule import name_problem

COLUMNS = ["id", "lower", "upper", "size"]
OPTIONAL = ["alignment", "gaps"]
MAX_ROWS = 1_000_000       # as many instances as a schedule may have (lifetimes.MAX_INSTANCES)
MAX_FILE_BYTES = 128 << 20     # a million rows of over a hundred characters each
MIN_TIME, MAX_TIME = -2**63, 2**63   # lower and upper: first = lower and last = upper - 1 fit 64 bits
_MAX_DIGITS = 50               # more than any time or size in range has; few enough for int() and a message
_LIMITS = {"lower": f"lower is at least -2^63 = {MIN_TIME:,}", "upper": f"upper is at most 2^63 = {MAX_TIME:,}",
           "size": LIMIT}
_INTEGER = re.compile(r"\s*-?[0-9]+\s*", re.ASCII)
_GAP = re.compile(r"(-?[0-9]{1,50})-(-?[0-9]{1,50})(?:@[0-9]{1,50}:[0-9]{1,50})?", re.ASCII)


def read_problem(path, align: int | None = 1, optional: dict | None = None, kept=OPTIONAL) -> list[Buffer]:
    """The buffers of a problem; `optional`, where given, gets the `kept` columns the file has,
    as written (column -> buffer id -> text): minimalloc's optional columns, for its solution
    to keep. `align` None: each buffer's size as written, its alignment for the caller to keep."""
    path = Path(path)
    if align is not None and align < 1:
        raise ArenaError(f"--align must be a positive number of bytes, not {align}")
    rows = _rows(path)
    top = next(k for k, row in enumerate(rows) if not _blank(row.cells))
    header = [c.strip() for c in rows[top].cells]
    if rows[top].broken:
        raise ArenaError(f"{path}:{rows[top].number}: {rows[top].broken}")
    columns = _columns(path, header, rows[top].number)
    if len(rows) - top - 1 > MAX_ROWS:
        raise ArenaError(f"{path}: {len(rows) - top - 1:,} rows; at most {MAX_ROWS:,} buffers are planned")
    buffers, seen, faults, alignments, gaps = [], set(), [], [], 0
    for number, row, line, broken in rows[top + 1:]:
        if _blank(row):
            continue
        fault = broken or _row_fault(row, line, columns, len(header), seen)
        if fault:
            faults.append(f"{path}:{number}: {fault}")
            continue
        name, lower, upper, size = _fields(row, columns)
        seen.add(name)
        buffers.append(Buffer(name, name, lower, upper - 1, align_up(size, align or 1), None, nbytes=size))
        alignments.append((number, name, _alignment(row, header)))
        for column in kept if optional is not None else ():
            if column in header:
                optional.setdefault(column, {})[name] = _cell(row, header, column)
        cell = _cell(row, header, "gaps")
        gaps += bool(cell)
        if _gaps(cell) is None:
            faults.append(f"{path}:{number}: buffer '{name}' has gaps '{show(cell)}'; "
                          "expected lower-upper times (upper exclusive, lower first), separated by spaces, "
                          "as minimalloc writes them")
    faults += _unkept(path, alignments, align)
    if faults:
        raise ArenaError(*faults)
    if not buffers:
        raise ArenaError(f"{path}: the CSV lists no buffers")
    total = sum(b.nbytes for b in buffers)
    if total > MAX_BYTES:       # so that no offset or sum of sizes overflows, whatever the lifetimes
        raise ArenaError(f"{path}: the buffers add up to {total:,} bytes; {LIMIT}, all buffers together")
    if "offset" in header and "offset" not in kept:
        note(f"note: {path}: its offset column is not read; the buffers are planned anew (arena viz --plan "
             f"{path} draws the plan it holds)")
    if gaps:
        note(f"note: {path}: the gaps of {gaps} buffer(s) are not used for placing; each buffer is planned as live "
             f"from lower to upper (the lower bound counts its gaps free)")
    return buffers


class _Row(NamedTuple):
    number: int             # the line it starts on (a quoted field may span lines)
    cells: list[str]
    line: str               # that line, as written
    broken: str | None      # a row that spans lines: its fault (no field of this format holds a line break)


def _rows(path: Path) -> list[_Row]:
    """The file's rows (blank lines may come before the header)."""
    text = read_text(path, "CSV", "save the CSV as UTF-8", MAX_FILE_BYTES)
    lines = io.StringIO(text, newline=None).read().split("\n")     # as the reader counts them
    rows, last = [], 0
    try:
        reader = csv.reader(io.StringIO(text, newline=None))       # lines may end in \r alone, too
        for cells in reader:
            broken = (f"a quoted field runs on to line {reader.line_num}, but no field holds a line break "
                      f"(a closing quote missing?) '{show(lines[last])}'") if reader.line_num > last + 1 else None
            rows.append(_Row(last + 1, cells, lines[last], broken))
            last = reader.line_num
    except csv.Error as e:
        raise ArenaError(f"{path}:{last + 1}: not a readable CSV ({e})") from None
    if all(_blank(row.cells) for row in rows):
        raise ArenaError(f"{path}: the file is empty; a CSV starts with the header 'id,lower,upper,size'")
    return rows


def _blank(row: list[str]) -> bool:
    """A line with nothing on it but spaces; a row of empty fields (',,,') is a fault instead."""
    return len(row) <= 1 and not "".join(row).strip()


def _columns(path: Path, header: list[str], line: int) -> list[int]:
    """Where id, lower, upper and size are in the (stripped) header: in any order, as
    minimalloc reads them; other columns (an `offset` of a plan) are left alone."""
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ArenaError(f"{path}:{line}: expected the header 'id,lower,upper,size' (minimalloc's format); "
                         f"no column {', '.join(repr(c) for c in missing)}")
    twice = sorted({c for c in COLUMNS + OPTIONAL if header.count(c) > 1})
    if twice:
        raise ArenaError(f"{path}:{line}: the header names column {', '.join(repr(c) for c in twice)} twice")
    return [header.index(c) for c in COLUMNS]


def _fields(row: list[str], columns: list[int]) -> tuple[str, int, int, int]:
    name, lower, upper, size = (row[i] for i in columns)
    return name.strip(), int(lower), int(upper), int(size)


def _cell(row: list[str], header: list[str], column: str) -> str:
    """The row's value of an optional column, '' where the header has none."""
    return row[header.index(column)].strip() if column in header and header.index(column) < len(row) else ""


def _alignment(row: list[str], header: list[str]) -> int | str:
    """The row's `alignment` (1 where none is given), or the text that is not one."""
    text = _cell(row, header, "alignment")
    return int(text) if _INTEGER.fullmatch(text) and len(text) <= _MAX_DIGITS and 1 <= int(text) <= MAX_BYTES \
        else text or 1


def _unkept(path: Path, alignments: list[tuple[int, str, int | str]], align: int | None) -> list[str]:
    """Faults for alignments that are not positive integers or that `align` does not keep."""
    bad = [f"{path}:{number}: buffer '{name}' has alignment '{show(a)}'; alignments are positive integers up to 2^62"
           for number, name, a in alignments if isinstance(a, str)]
    if bad or align is None:
        return bad
    least = math.lcm(align, *(a for _, _, a in alignments))
    keeps = (f"--align {least} keeps every buffer's" if least <= MAX_BYTES else
             f"the --align that keeps every buffer's, {least:,}, is past the 2^62 bytes planned")
    return [f"{path}:{number}: buffer '{name}' asks for alignment {a}, which --align {align} does not keep; {keeps}"
            for number, name, a in alignments if align % a]


def _row_fault(row: list[str], line: str, columns: list[int], width: int, seen: set[str]) -> str | None:
    """Why a row (read from `line`, as written) is not a buffer, or None."""
    if len(row) <= max(columns) or not all(_INTEGER.fullmatch(row[i]) for i in columns[1:]):
        return f"expected id,lower,upper,size with integers, got '{show(line)}'"
    if len(row) > width:
        return f"{len(row)} fields where the header has {width}: '{show(line)}'"
    name = row[columns[0]].strip()
    problem = name_problem(name, "buffer")
    if problem:
        return problem
    if name in seen:
        return f"buffer '{name}' appears twice"
    for column, i in zip(COLUMNS[1:], columns[1:]):
        digits = len(row[i].strip().lstrip("-").lstrip("0"))      # leading zeros count for nothing
        if digits > _MAX_DIGITS:
            return f"buffer '{name}': its {column} has {digits:,} digits; {_LIMITS[column]}"
    _, lower, upper, size = _fields(row, columns)
    if upper <= lower:
        return f"buffer '{name}' has upper {upper} <= lower {lower} (upper is exclusive)"
    if size <= 0:
        return f"buffer '{name}' has size {size}; sizes are positive"
    for column, value, beyond in (("size", size, size > MAX_BYTES), ("lower", lower, lower < MIN_TIME),
                                  ("upper", upper, upper > MAX_TIME)):
        if beyond:
            return f"buffer '{name}' has {column} {value:,}; {_LIMITS[column]}"
    return None


def _gaps(text: str) -> list[tuple[int, int]] | None:
    """The (lower, upper) times of a `gaps` cell ([] for none), None where it is not one."""
    found = [_GAP.fullmatch(token) for token in text.split()]
    if not all(found) or any(int(m[2]) < int(m[1]) for m in found):
        return None
    return [(int(m[1]), int(m[2])) for m in found]


def gap_bound(buffers: list[Buffer], gaps: dict[str, str]) -> int:
    """A lower bound on the arena of the problem as written, where a buffer's bytes are free in
    its `gaps` (buffer name -> the cell, as read_problem checked it): the lower bound of its live
    stretches, each buffer its own size (not the one --align rounded up)."""
    stretches = []
    for b in buffers:
        start = b.first      # where it is live: [first, last + 1) less its gaps
        for lower, upper in sorted(_gaps(gaps.get(b.name, "")) or []):
            stretches.append(Block(start, min(lower, b.last + 1) - 1, b.nbytes))
            start = max(start, upper)
        stretches.append(Block(start, b.last, b.nbytes))
    return lower_bound([s for s in stretches if s.first <= s.last])


def read_solution(path) -> tuple[list[Buffer], list[int]]:
    """The buffers of a solution (a problem with an `offset` column, as `arena plan --csv P --out
    S.csv` and minimalloc write one) and their offsets, each a multiple of its row's alignment."""
    cells: dict[str, dict[str, str]] = {}
    buffers = read_problem(path, None, cells, kept=("alignment", "offset"))
    if "offset" not in cells:
        raise ArenaError(f"{path}: no 'offset' column, so no plan to draw: a problem, not a solution "
                         f"(`arena plan --csv PROBLEM.csv --out SOLUTION.csv` writes one)")
    offsets, faults = [], []
    for b in buffers:
        text, alignment = cells["offset"][b.name], int(cells.get("alignment", {}).get(b.name) or 1)
        offset = int(text) if _INTEGER.fullmatch(text) and len(text) <= _MAX_DIGITS else -1
        if offset < 0 or offset > MAX_BYTES:
            faults.append(f"{path}: buffer '{b.name}' has offset '{show(text)}'; offsets are integers from 0 to 2^62")
        elif offset % alignment:
            faults.append(f"{path}: buffer '{b.name}' has offset {offset:,}, not a multiple of its alignment {alignment}")
        offsets.append(offset)
    if faults:
        raise ArenaError(*faults)
    return buffers, offsets


def solution_csv(plan: Plan, optional: dict[str, dict[str, str]] | None = None) -> str:
    """The plan as minimalloc's solution: the problem's rows, their `optional` columns too (from
    `read_problem`), and an offset each. The rows read back as the problem: its own sizes, not
    the ones --align rounded up, and its alignments."""
    optional = optional or {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + list(optional) + ["offset"])
    for b in plan.buffers:
        writer.writerow([b.name, b.first, b.last + 1, b.size if b.nbytes is None else b.nbytes,
                         *(values[b.name] for values in optional.values()), b.offset])
    return out.getvalue()
