"""Read a lifetime table (YAML) into a Schedule: steps x tensors, cells of `+ o m r w x`.

The format keeps the shape of the seed table; see docs/schedule-format.md:

    schedule: llama-layer
    dims: {n: tokens in this call, d: hidden size, ...}
    types: {Ttok: i32, Tpos: i32, Ta: act}          # `act` is bound by --dtype
    tensors:
      x: Ta[n, d]
      kv: {shape: "Ta[nlayers, 2, nctx, nkvh * dh]", persistent: true}
    steps:
      - setup:     {tokens: +m, pos: +m}
      - embedding: {graph: kernel, tokens: rx, pos: o, x: +w}
      - repeat: nlayers
        steps:
          - attn_norm: {graph: kernel, pos: o, x: r, x_: +w}

This module checks structure only (names, symbols, shapes that parse); the meaning of
the symbols over time is checked when the table is unrolled, in lifetimes.py.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import expr
from .errors import ArenaError, where

SYMBOLS = "+omrwx"
KINDS = ("kernel", "graph")
ELEMENT_BYTES = {"i8": 1, "u8": 1, "i32": 4, "i64": 8, "f32": 4, "f16": 2, "bf16": 2}
ACT = "act"  # the element type bound by --dtype
SCHEDULES = Path(__file__).resolve().parent.parent / "schedules"   # the schedules that ship with the project
_SHAPE = re.compile(r"^\s*([A-Za-z_]\w*)\s*\[(.*)\]\s*$")


@dataclass
class TensorDecl:
    name: str
    type: str            # a name from Schedule.types, e.g. "Ta"
    shape: list[str]     # one expression per axis, e.g. ["n", "(nh + nkvh + nkvh) * dh"]
    persistent: bool = False   # lives across calls (KV cache): live before step 0, never destroyed
    line: int | None = None

    def spec(self) -> str:
        return f"{self.type}[{', '.join(self.shape)}]"


@dataclass
class StepRow:
    name: str
    kind: str | None           # "kernel", "graph" or None (the seed's setup row)
    cells: dict[str, str]      # tensor -> symbols, e.g. {"x_": "rx", "attn": "+w"}
    line: int | None = None


@dataclass
class Repeat:
    count: str                 # a dimension name or an integer, e.g. "nlayers"
    steps: list[StepRow]
    line: int | None = None


@dataclass
class Schedule:
    name: str
    dims: dict[str, str]
    types: dict[str, str]
    tensors: dict[str, TensorDecl]
    steps: list[StepRow | Repeat]
    file: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Schedule":
        def row(r):
            if "count" in r:
                return Repeat(r["count"], [StepRow(**s) for s in r["steps"]], r.get("line"))
            return StepRow(**r)
        return cls(d["name"], d["dims"], d["types"],
                   {k: TensorDecl(**v) for k, v in d["tensors"].items()},
                   [row(r) for r in d["steps"]], d.get("file"))


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that remembers the line of every mapping, so faults can point at it."""

    def construct_mapping(self, node, deep=False):
        mapping = super().construct_mapping(node, deep=deep)
        mapping["__line__"] = node.start_mark.line + 1
        return mapping


def load(path) -> Schedule:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ArenaError(f"{path}: cannot read the schedule: {e.strerror}") from None
    return loads(text, str(path))


def loads(text: str, file: str = "<schedule>") -> Schedule:
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(e, "problem", None) or str(e)
        raise ArenaError(f"{where(file, line)}malformed YAML: {problem}") from None
    return _Reader(file).schedule(doc)


class _Reader:
    def __init__(self, file: str):
        self.file = file
        self.faults: list[str] = []

    def fault(self, message, line=None, step=None, tensor=None):
        self.faults.append(where(self.file, line, step, tensor) + message)

    def schedule(self, doc) -> Schedule:
        if not isinstance(doc, dict):
            raise ArenaError(f"{self.file}: a schedule is a mapping with keys schedule, dims, types, tensors, steps")
        line = doc.pop("__line__", None)
        for key in ("dims", "types", "tensors", "steps"):
            if key not in doc:
                self.fault(f"missing key '{key}'", line)
        unknown = set(doc) - {"schedule", "dims", "types", "tensors", "steps"}
        if unknown:
            self.fault(f"unknown key(s) {sorted(unknown)}", line)
        if self.faults:
            raise ArenaError(*self.faults)
        dims = {str(k): str(v) for k, v in _plain(doc["dims"]).items()}
        types = self.types(doc["types"])
        tensors = self.tensors(doc["tensors"], dims, types)
        steps = self.steps(doc["steps"], tensors, dims, nested=False)
        if self.faults:
            raise ArenaError(*self.faults)
        return Schedule(str(doc.get("schedule", Path(self.file).stem)), dims, types, tensors, steps, self.file)

    def types(self, node) -> dict[str, str]:
        types = {}
        for name, elem in _plain(node).items():
            if elem != ACT and elem not in ELEMENT_BYTES:
                self.fault(f"type '{name}' has unknown element type '{elem}' "
                           f"(known: {', '.join(ELEMENT_BYTES)}, or '{ACT}' for the --dtype)", _line(node))
            types[str(name)] = str(elem)
        return types

    def tensors(self, node, dims, types) -> dict[str, TensorDecl]:
        tensors = {}
        line = _line(node)
        for name, spec in _plain(node).items():
            persistent = False
            if isinstance(spec, dict):
                line = spec.get("__line__", line)
                persistent = bool(spec.get("persistent", False))
                spec = spec.get("shape")
            if name == "graph":
                self.fault("'graph' names the kernel/graph column and cannot be a tensor", line, tensor=name)
                continue
            match = _SHAPE.match(str(spec))
            if not match:
                self.fault(f"shape '{spec}' is not of the form Type[dim, dim, ...]", line, tensor=name)
                continue
            type_, axes = match.group(1), [a.strip() for a in split_axes(match.group(2))]
            if type_ not in types:
                self.fault(f"unknown type '{type_}' (declared: {', '.join(types)})", line, tensor=name)
            for axis in axes:
                try:
                    unknown = expr.names(axis) - set(dims)
                except expr.ExprError as e:
                    self.fault(str(e), line, tensor=name)
                    continue
                for dim in sorted(unknown):
                    self.fault(f"unknown dimension '{dim}' in shape '{spec}' (declared dims: {', '.join(dims)})",
                               line, tensor=name)
            tensors[str(name)] = TensorDecl(str(name), type_, axes, persistent, line)
        return tensors

    def steps(self, node, tensors, dims, nested) -> list:
        if not isinstance(node, list):
            self.fault("'steps' must be a list of rows", _line(node))
            return []
        rows = []
        for item in node:
            if not isinstance(item, dict):
                self.fault(f"a step row must be a mapping 'name: {{tensor: symbols}}', not '{item}'")
                continue
            line = item.pop("__line__", None)
            if "repeat" in item:
                rows.append(self.repeat(item, line, tensors, dims, nested))
            elif len(item) != 1:
                self.fault(f"a step row is one mapping 'name: {{tensor: symbols}}', got keys {sorted(item)}", line)
            else:
                (name, cells), = item.items()
                rows.append(self.row(str(name), cells, line, tensors))
        return rows

    def repeat(self, item, line, tensors, dims, nested) -> Repeat:
        count = str(item["repeat"])
        if nested:
            self.fault("repeat blocks do not nest", line)
        elif not count.isdigit() and count not in dims:
            self.fault(f"repeat count '{count}' is neither an integer nor a declared dimension", line)
        return Repeat(count, self.steps(item.get("steps"), tensors, dims, nested=True), line)

    def row(self, name, cells, line, tensors) -> StepRow:
        cells = _plain(cells if cells is not None else {})
        kind = cells.pop("graph", None)
        if kind not in (None,) + KINDS:
            self.fault(f"graph column must be 'kernel' or 'graph', not '{kind}'", line, step=name)
        clean = {}
        for tensor, symbols in cells.items():
            symbols = "" if symbols is None else str(symbols)
            if tensor not in tensors:
                self.fault(f"unknown tensor (declared: {', '.join(tensors)})", line, name, tensor)
                continue
            problem = symbol_problem(symbols)
            if problem:
                self.fault(problem, line, name, tensor)
                continue
            if symbols:
                clean[str(tensor)] = symbols
        return StepRow(name, kind, clean, line)


def symbol_problem(symbols: str) -> str | None:
    """Why a cell's symbols are malformed, or None: '+' first, 'm' right after '+', 'x' last, 'o' alone."""
    for s in symbols:
        if s not in SYMBOLS:
            return f"unknown symbol '{s}' in '{symbols}' (known: + o m r w x)"
    if len(set(symbols)) != len(symbols):
        return f"repeated symbol in '{symbols}'"
    if "o" in symbols and symbols != "o":
        return f"'o' (stays alive) stands alone, not in '{symbols}'"
    if "+" in symbols[1:]:
        return f"'+' (create) comes first, not in '{symbols}'"
    if "x" in symbols[:-1]:
        return f"'x' (destroy) comes last, not in '{symbols}'"
    if "m" in symbols and not symbols.startswith("+m"):
        return f"'m' (mapped from host) marks a creation and follows '+', not in '{symbols}'"
    return None


def split_axes(text: str) -> list[str]:
    """Split 'n, (a + b) * c' at top-level commas."""
    axes, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            axes.append(text[start:i])
            start = i + 1
    axes.append(text[start:])
    return [a for a in axes if a.strip()]


def _plain(node) -> dict:
    if not isinstance(node, dict):
        return {}
    return {k: v for k, v in node.items() if k != "__line__"}


def _line(node):
    return node.get("__line__") if isinstance(node, dict) else None


def to_yaml(schedule: Schedule) -> str:
    """The YAML text of a schedule, one step row per line (what `arena convert` prints)."""
    out = [f"schedule: {schedule.name}", "dims:"]
    out += [f"  {k}: {v}" for k, v in schedule.dims.items()]
    out.append("types:")
    out += [f"  {k}: {v}" for k, v in schedule.types.items()]
    out.append("tensors:")
    for t in schedule.tensors.values():
        spec = t.spec()
        out.append(f"  {t.name}: {{shape: \"{spec}\", persistent: true}}" if t.persistent
                   else f"  {t.name}: \"{spec}\"")
    out.append("steps:")

    def row(r: StepRow, indent: str):
        cells = ([f"graph: {r.kind}"] if r.kind else []) + [f"{k}: {v}" for k, v in r.cells.items()]
        return f"{indent}- {r.name}: {{{', '.join(cells)}}}"

    for r in schedule.steps:
        if isinstance(r, Repeat):
            out += [f"  - repeat: {r.count}", "    steps:"] + [row(s, "      ") for s in r.steps]
        else:
            out.append(row(r, "  "))
    return "\n".join(out) + "\n"
