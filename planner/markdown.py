"""Read the seed's own markdown lifetime table into a Schedule (what `arena convert` does).

The table has a header row of tensor names (the second column is `graph`), a row of
types and shapes such as `Ta (n, (nh + nkvh + nkvh) x dh)`, then one row per step.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import expr
from .errors import ArenaError, read_text, show, where
from .schedule import ACT, ELEMENT_BYTES, KINDS, Schedule, StepRow, TensorDecl, name_problem, split_axes, symbol_problem

_SHAPE = re.compile(r"^\s*([^\W\d]\w*)\s*\((.*)\)\s*$")


def _element(type_: str) -> str:
    """`Ta`: activations, in the element type --dtype names; `T` and an element type (`Tf16`):
    that one; any other (the seed's `Ttok` and `Tpos`, token ids and positions): int32."""
    return _named(type_) or "i32"


def _named(type_: str) -> str | None:
    """The element type a type's name says (`Ta`, `Tf16`), or None."""
    if type_ == "Ta":
        return ACT
    return type_[1:] if type_.startswith("T") and type_[1:] in ELEMENT_BYTES else None


def guessed_types(table: Schedule) -> list[str]:
    """A note for each type the table names that `_element` reads as int32 by default, not by
    its name (the seed's Ttok and Tpos are ids): a typo of Ta or Tf16 would change the bytes."""
    first = {}
    for t in table.tensors.values():
        first.setdefault(t.type, t)
    return [f"note: {where(table.file, t.line, tensor=t.name)}type '{t.type}' is read as i32 (Ta is --dtype's "
            "type, T and an element type that one, e.g. Tf16; any other name an integer id, as the seed's Ttok)"
            for type_, t in first.items() if type_ not in ("Ttok", "Tpos") and _named(type_) is None]


def convert(path) -> Schedule:
    path = Path(path)
    # lines end at \n, \r\n or \r, as an editor counts them: splitlines() also breaks at form
    # feeds and U+2028, and the faults' line numbers then drifted
    text = read_text(path, "table", "a lifetime table is a markdown text file")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    rows = _table_with_graph_column(path, lines)
    (header_line, header), (shape_line, shapes), body = rows[0], rows[1], rows[2:]
    names = header[2:]
    tensors, dims, types = {}, {}, {}
    faults = [f"{where(path, header_line)}{name_problem(name, 'tensor')}" for name in names
              if name_problem(name, "tensor")]
    faults += _twice(path, header_line, names) + _extra_cells(path, rows)
    for name, spec in zip(names, shapes[2:]):
        match = _SHAPE.match(spec)
        if not match:
            # a row of steps where the shapes go: the header has no shapes under it
            step_cell = not spec or not symbol_problem(spec)
            faults.append(f"{where(path, shape_line, tensor=name)}cannot read the shape '{show(spec)}'" +
                          " (the row under the header gives each tensor's type and shape, e.g. Ta (n, d))" * step_cell)
            continue
        type_, axes = match.group(1), _axes(match.group(2))
        types.setdefault(type_, _element(type_))
        try:
            for axis in axes:
                dims.update({d: d for d in sorted(expr.names(axis)) if d not in dims})
        except expr.ExprError as e:
            faults.append(f"{where(path, shape_line, tensor=name)}{e}")
        tensors[name] = TensorDecl(name, type_, axes, line=shape_line)
    steps = []
    for line, cells in body:
        step, kind = cells[0], cells[1] or None
        if name_problem(step, "step"):
            faults.append(f"{where(path, line)}{name_problem(step, 'step')}")
        if kind not in (None,) + KINDS:
            faults.append(f"{where(path, line, step)}graph column must be 'kernel' or 'graph', not '{kind}'")
        row = {}
        for name, symbols in zip(names, cells[2:]):
            problem = symbols and symbol_problem(symbols)
            if problem:
                faults.append(f"{where(path, line, step, name)}{problem}")
            elif symbols:
                row[name] = symbols
        steps.append(StepRow(step, kind, row, line))
    if not body:        # convert's YAML would then be refused by plan
        faults.append(f"{path}: the table has no steps (rows below its shapes)")
    if name_problem(path.stem, "schedule"):     # the name convert's YAML gives it: read back, it is checked
        faults.append(f"{path}: {name_problem(path.stem, 'schedule')}")
    if faults:
        raise ArenaError(*faults)
    return Schedule(path.stem, dims, types, tensors, steps, str(path))


def _table_with_graph_column(path, lines) -> list[tuple[int, list[str]]]:
    """The rows (line number, cells) of the first table whose second column is `graph`,
    outside code blocks, fenced or indented (which markdown shows as they are, an example
    table included). Indented four columns past its container (the page, or the content of
    the list item it is in), a line is code or a paragraph's, never a table's first row."""
    table: list[tuple[int, list[str]]] = []
    bare = False        # a table whose rows need not start with a pipe: its header did not
    fence = None        # the fence of the code block the line is in
    container = _Container()
    end = None          # the line that ended the table, where one did before the file's end
    for number, text in enumerate(lines, start=1):
        run = _FENCE.match(text)
        if fence:
            if run and run[1][0] == fence[0] and len(run[1]) >= len(fence) and not text[run.end():].strip():
                fence = None
            continue
        past = container.indented_past(text)
        if run and not (run[1][0] == "`" and "`" in text[run.end():]):     # CommonMark's info string
            fence, text = run[1], ""        # a fence line ends a table as any other line
        if not table and past:
            continue        # indented code (an example, as fenced code is) or a paragraph's line: no table
        if not table and not text.strip().startswith("|") and _PIPE.search(text):
            bare = number < len(lines) and bool(_PIPE.search(lines[number])) and _rule(_cells(lines[number]))
        if text.strip().startswith("|") or bare and _PIPE.search(text):
            cells = _cells(text)
            if not _rule(cells):   # skip the |:--:| rule
                table.append((number, cells))
            continue
        if table and len(table[0][1]) > 1 and table[0][1][1] == "graph":
            end = number
            break
        table, bare = [], False
    if not table or len(table[0][1]) < 3 or table[0][1][1] != "graph" or len(table) < 2:
        near = next((n for n, text in enumerate(lines, start=1)
                     if _PIPE.search(text) and _cells(text)[:1] == ["tensor"]), None)
        yaml = "; a .txt file is read as markdown, and a YAML schedule is named .yaml" \
            if path.suffix.lower() == ".txt" and any(line.startswith("steps:") for line in lines) else ""
        raise ArenaError(f"{path}{f':{near}' if near else ''}: no lifetime table found (a markdown table whose "
                         f"columns are 'tensor | graph | <tensor names>...', then a row of shapes, then the steps){yaml}")
    header_cells = len(_split(lines[table[0][0] - 1]))
    lost = _lost_row(lines, end, header_cells) if end else None
    if lost:
        raise ArenaError(f"{path}:{lost}: a row of the lifetime table's columns, after line {end} ended the table "
                         "(a blank line, or a line that is not a row): its steps would be lost; join the rows")
    # the rule under the header counts its columns, as markdown's tables do: blank cells at the
    # header's end that the rule has columns for are columns without a name (elsewhere a blank
    # cell at a row's end says nothing)
    rule = _cells(lines[table[0][0]]) if table[0][0] < len(lines) else []
    width = max(len(table[0][1]), min(len(rule), header_cells) if _rule(rule) else 0)
    return [(n, cells + [""] * (width - len(cells))) for n, cells in table]   # short rows end in blank cells


_PIPE = re.compile(r"(?<!\\)\|")     # a cell boundary: a pipe not escaped
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
# tabs expanded: a list item's marker (its number), and the spaces before its content (None: it has none)
_LIST_ITEM = re.compile(r" {0,3}([-+*]|([0-9]{1,9})[.)])(?:( +)(?=[^ ])| *$)")
_THEMATIC = re.compile(r" {0,3}([-*_])(?: *\1){2,} *")
_BLOCK_START = re.compile(r" {0,3}(?:#{1,6}(?: |$)|`{3,}|~{3,}|\|)")     # a heading, a fence, a table's row


class _Container:
    """The container of a markdown line, as far as tables care: the page, or the content of the
    list item it is in, as CommonMark reads them (less block quotes and lazy continuation lines)."""

    def __init__(self):
        self.column = 0             # the content column of the list item the lines are in (0: the page)
        self.empty_item = False     # that item's first line had no content: a blank line then ends it
        self.paragraph = False      # the line before was a paragraph's: not every item may interrupt it

    def indented_past(self, text: str) -> bool:
        """Whether `text` is indented four columns past its container, where it is code or a
        paragraph's line, never a table's first row; the container moves on with it."""
        expanded = text.expandtabs(4)
        blank = not expanded.strip()
        indent = len(expanded) - len(expanded.lstrip(" "))
        inner = expanded[self.column:] if indent >= self.column else expanded
        item = None if _THEMATIC.fullmatch(inner) else _LIST_ITEM.match(inner)
        if item and self.paragraph and (item[3] is None or item[2] not in (None, "1")):
            item = None     # an empty item (a setext `-`), or a list from 2, cannot interrupt a paragraph
        if item:
            base = self.column if inner is not expanded else 0
            spaces = len(item[3] or " ")
            self.column, self.empty_item = base + item.end(1) + (spaces if spaces <= 4 else 1), item[3] is None
        elif blank and self.empty_item or not blank and indent < self.column:
            self.column, self.empty_item = 0, False      # the item has ended
        elif not blank:
            self.empty_item = False
        past = not blank and not item and indent - self.column >= 4
        self.paragraph = not blank and not past and not _BLOCK_START.match(inner) and not _THEMATIC.fullmatch(inner)
        return past


def _lost_row(lines: list[str], end: int, width: int) -> int | None:
    """The line of the first row after a table that ended at line `end`, when it has the table's
    `width` of cells and no rule under it (it starts no table of its own): a blank line or a
    line of prose between a table's rows. None where a heading or a fence comes first."""
    for number in range(end, len(lines) + 1):
        text = lines[number - 1].strip()
        if text.startswith("#") or _FENCE.match(lines[number - 1]):
            return None
        if text.startswith("|"):
            below = lines[number] if number < len(lines) else ""
            starts_table = _PIPE.search(below) and _rule(_cells(below))
            return number if len(_split(text)) == width and not starts_table else None
    return None


def _rule(cells: list[str]) -> bool:
    """Whether a row is the rule under a header (`|:---:|---|`): GitHub's tables may leave out
    the pipes at the ends of their rows only where such a rule follows the header."""
    return all(re.fullmatch(r":?-+:?", c) for c in cells)


def _cells(text: str) -> list[str]:
    """A table row's cells, but blank ones at its end: `| a | b ||` says nothing more than `| a | b |`."""
    cells = _split(text)
    while cells and not cells[-1]:
        cells.pop()
    return cells


def _split(text: str) -> list[str]:
    """A table row's cells, split at each `|` but an escaped one: `\\|` is a `|` inside a
    cell, as GitHub reads it."""
    inner = text.strip().removeprefix("|")
    if inner.endswith("|") and not inner.endswith("\\|"):
        inner = inner[:-1]
    return [c.strip().strip("`").replace("\\|", "|") for c in _PIPE.split(inner)]


def _twice(path, line: int, names: list[str]) -> list[str]:
    """Faults for tensors the header names more than once (a table has one column per tensor)."""
    first, faults = {}, []
    for column, name in enumerate(names, start=3):
        if name in first:
            faults.append(f"{where(path, line, tensor=name)}the header names the tensor twice "
                          f"(columns {first[name]} and {column})")
        first.setdefault(name, column)
    return faults


def _extra_cells(path, rows) -> list[str]:
    """Faults for rows that hold something beyond the header's last column: cells of no tensor."""
    width, faults = len(rows[0][1]), []
    for number, (line, cells) in enumerate(rows):
        if any(cells[width:]):
            step = cells[0] if number > 1 else None        # rows 0 and 1 are the header and the shapes
            faults.append(f"{where(path, line, step)}the row has {len(cells)} cells where the header has {width}; "
                          f"'{show(' | '.join(cells[width:]))}' belongs to no tensor")
    return faults


def _axes(text: str) -> list[str]:
    """'n, (nh + nkvh + nkvh) x dh' -> ['n', '(nh + nkvh + nkvh) * dh']: the seed writes x for times."""
    return [re.sub(r"\s+x\s+", " * ", a.strip()) for a in split_axes(text)]
