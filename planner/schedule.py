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
import unicodedata
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import expr
from .errors import ArenaError, show, where

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


# Limits no real schedule comes near: a few hundred bytes of YAML aliases can otherwise
# expand to billions of nodes (a "billion laughs"), and nested brackets can exhaust the stack.
MAX_YAML_NODES = 100_000


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that remembers the line of every mapping and of each key in it, so
    faults can point at them, and refuses what YAML allows but a table never means:
    a key given twice in one mapping, and aliases that expand past MAX_YAML_NODES."""

    def __init__(self, text: str, file: str):
        super().__init__(text)
        self.file = file

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_YAML_NODES:
            raise ArenaError(f"{self.file}: the YAML expands to more than {MAX_YAML_NODES:,} values "
                             "(through its aliases); a schedule needs far fewer")
        return node

    def construct_mapping(self, node, deep=False):
        lines = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":     # `<<: *base` merges, and may override
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in lines:
                raise ArenaError(f"{where(self.file, key_node.start_mark.line + 1)}key '{show(key)}' "
                                 f"appears twice in one mapping (line {lines[key]} has it first)")
            if isinstance(key, Hashable):
                lines[key] = key_node.start_mark.line + 1
        mapping = super().construct_mapping(node, deep=deep)
        mapping["__line__"] = node.start_mark.line + 1
        mapping["__lines__"] = lines
        return mapping


def _expanded_size(node, sizes: dict[int, int]) -> int:
    """Values in the document once every alias is expanded (`sizes` memoizes shared nodes)."""
    if id(node) not in sizes:
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def load(path) -> Schedule:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ArenaError(f"{path}: cannot read the schedule: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ArenaError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                         "a schedule is a YAML text file") from None
    return loads(text, str(path))


def loads(text: str, file: str = "<schedule>") -> Schedule:
    try:
        loader = _LineLoader(text, file)         # reading starts here: it may refuse a character
        try:
            doc = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise ArenaError(f"{where(file, line)}character U+{e.character:04X} is not allowed in YAML") from None
    except yaml.YAMLError as e:
        raise ArenaError(_yaml_fault(e, file)) from None
    except RecursionError:
        raise ArenaError(f"{file}: the YAML nests too deeply to read") from None
    return _Reader(file).schedule(doc)


def _yaml_fault(e: yaml.YAMLError, file: str) -> str:
    """One line for a YAML syntax error, at the line that holds the mistake: an unclosed
    bracket or quote is where it opens, not where the reader noticed."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark, context = getattr(e, "problem_mark", None), getattr(e, "context", None)
    context_mark = getattr(e, "context_mark", None)
    if context_mark and context and ("flow" in context or "quoted" in context):
        return (f"{where(file, context_mark.line + 1)}malformed YAML: {context} that starts here: {problem}"
                + (f" (line {mark.line + 1})" if mark else ""))
    return f"{where(file, mark.line + 1 if mark else None)}malformed YAML: {problem}"


class _Reader:
    def __init__(self, file: str):
        self.file = file
        self.faults: list[str] = []

    def fault(self, message, line=None, step=None, tensor=None):
        self.faults.append(where(self.file, line, step, tensor) + message)

    def schedule(self, doc) -> Schedule:
        if not isinstance(doc, dict):
            raise ArenaError(f"{self.file}: a schedule is a mapping with keys schedule, dims, types, tensors, steps")
        line = doc.get("__line__")
        for key in ("dims", "types", "tensors", "steps"):
            if key not in doc:
                self.fault(f"missing key '{key}'", line)
        unknown = set(_plain(doc)) - {"schedule", "dims", "types", "tensors", "steps"}
        if unknown:
            self.fault(f"unknown key(s) {', '.join(sorted(show(k) for k in unknown))} "
                       "(known: schedule, dims, types, tensors, steps)", line)
        for key in ("dims", "types", "tensors"):
            if key in doc and not isinstance(doc[key], dict):
                self.fault(f"'{key}' must be a mapping (name: value), not {_kind(doc[key])}", _key_line(doc, key))
        if self.faults:
            raise ArenaError(*self.faults)
        dims = {self.name(k, "dimension", _key_line(doc["dims"], k)): str(v) for k, v in _plain(doc["dims"]).items()}
        types = self.types(doc["types"])
        tensors = self.tensors(doc["tensors"], dims, types)
        steps = self.steps(doc["steps"], tensors, dims, nested=False, line=_key_line(doc, "steps"))
        name = self.name(doc.get("schedule", Path(self.file).stem), "schedule", _key_line(doc, "schedule"))
        if self.faults:
            raise ArenaError(*self.faults)
        return Schedule(name, dims, types, tensors, steps, self.file)

    def name(self, key, what: str, line) -> str:
        """A name from the table as text; one with a control character is a fault, since
        no output format (GraphML, YAML, a terminal) carries it faithfully."""
        text = str(key)
        problem = name_problem(text, what)
        if problem:
            self.fault(problem, line)
        return text

    def types(self, node) -> dict[str, str]:
        types = {}
        for key, elem in _plain(node).items():
            name = self.name(key, "type", _key_line(node, key))
            if elem != ACT and elem not in ELEMENT_BYTES:
                self.fault(f"type '{name}' has unknown element type '{show(elem)}' "
                           f"(known: {', '.join(ELEMENT_BYTES)}, or '{ACT}' for the --dtype)", _key_line(node, key))
            types[name] = str(elem)
        return types

    def tensors(self, node, dims, types) -> dict[str, TensorDecl]:
        tensors = {}
        for key, spec in _plain(node).items():
            line = _key_line(node, key)
            name = self.name(key, "tensor", line)
            persistent = False
            if isinstance(spec, dict):
                unknown = set(_plain(spec)) - {"shape", "persistent"}
                if unknown:
                    self.fault(f"unknown key(s) {', '.join(sorted(show(k) for k in unknown))} "
                               "(a tensor has: shape, persistent)", line, tensor=name)
                persistent = spec.get("persistent", False)
                if not isinstance(persistent, bool):
                    self.fault(f"persistent must be true or false, not '{show(persistent)}'", line, tensor=name)
                spec = spec.get("shape")
            if name == "graph":
                self.fault("'graph' names the kernel/graph column and cannot be a tensor", line, tensor=name)
                continue
            match = _SHAPE.match(str(spec)) if isinstance(spec, str) else None
            if not match:
                self.fault(f"shape '{show(spec)}' is not of the form Type[dim, dim, ...]", line, tensor=name)
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
            tensors[name] = TensorDecl(name, type_, axes, persistent is True, line)
        return tensors

    def steps(self, node, tensors, dims, nested, line=None) -> list:
        if not isinstance(node, list):
            self.fault(f"'steps' must be a list of rows, not {_kind(node)}", line)
            return []
        rows = []
        for item in node:
            if not isinstance(item, dict):
                self.fault(f"a step row must be a mapping 'name: {{tensor: symbols}}', not '{show(item)}'", line)
                continue
            line = item.get("__line__")
            keys = _plain(item)
            if "repeat" in keys:
                rows.append(self.repeat(item, line, tensors, dims, nested))
            elif len(keys) != 1:
                self.fault(f"a step row is one mapping 'name: {{tensor: symbols}}', "
                           f"got keys {', '.join(show(k) for k in keys)}", line)
            else:
                (name, cells), = keys.items()
                rows.append(self.row(self.name(name, "step", line), cells, line, tensors))
        return rows

    def repeat(self, item, line, tensors, dims, nested) -> Repeat:
        count = show(item["repeat"])
        unknown = set(_plain(item)) - {"repeat", "steps"}
        if unknown:
            self.fault(f"unknown key(s) {', '.join(sorted(show(k) for k in unknown))} "
                       "(a repeat block has: repeat, steps)", line)
        if nested:
            self.fault("repeat blocks do not nest", line)
        elif not is_count(count) and count not in dims:
            self.fault(f"repeat count '{count}' is neither an integer nor a declared dimension", line)
        return Repeat(count, self.steps(item.get("steps"), tensors, dims, nested=True, line=line), line)

    def row(self, name, cells, line, tensors) -> StepRow:
        if cells is not None and not isinstance(cells, dict):
            self.fault(f"the cells of a step are a mapping {{tensor: symbols}}, not '{show(cells)}'", line, step=name)
            return StepRow(name, None, {}, line)
        lines = (cells or {}).get("__lines__", {})
        cells = _plain(cells if cells is not None else {})
        kind = cells.pop("graph", None)
        if kind not in (None,) + KINDS:
            self.fault(f"graph column must be 'kernel' or 'graph', not '{show(kind)}'", line, step=name)
        clean = {}
        for key, symbols in cells.items():
            tensor, cell_line = str(key), lines.get(key, line)
            if tensor not in tensors:
                self.fault(f"unknown tensor (declared: {', '.join(tensors)})", cell_line, name, tensor)
                continue
            if isinstance(symbols, (dict, list)):
                self.fault(f"a cell holds symbols such as '+w' or 'rx', not '{show(symbols)}'", cell_line, name, tensor)
                continue
            symbols = "" if symbols is None else str(symbols)
            problem = symbol_problem(symbols)
            if problem:
                self.fault(problem, cell_line, name, tensor)
                continue
            if symbols:
                clean[tensor] = symbols
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


def name_problem(text: str, what: str) -> str | None:
    """Why `text` cannot name a tensor, step, dimension or buffer, or None: it is empty or
    holds a control character, which no output format (GraphML, YAML, a terminal) carries."""
    bad = next((c for c in text if unicodedata.category(c)[0] == "C"), None)
    if bad is not None:
        return f"{what} name {ascii(text)} holds a control character (U+{ord(bad):04X})"
    if not text.strip():
        return f"{what} name is empty"
    return None


def is_count(text: str) -> bool:
    """Whether `text` is a non-negative integer written in ASCII digits (what int() and a
    reader take the same way)."""
    return re.fullmatch(r"[0-9]+", text, re.ASCII) is not None


def _plain(node) -> dict:
    """A mapping without the line numbers the loader adds."""
    if not isinstance(node, dict):
        return {}
    return {k: v for k, v in node.items() if k not in ("__line__", "__lines__")}


def _key_line(node, key):
    """The line of `key` in a mapping, else of the mapping itself."""
    if not isinstance(node, dict):
        return None
    return node.get("__lines__", {}).get(key, node.get("__line__"))


def _kind(value) -> str:
    return {list: "a list", dict: "a mapping", type(None): "empty"}.get(type(value), f"'{show(value)}'")


def to_yaml(schedule: Schedule) -> str:
    """The YAML text of a schedule, one step row per line (what `arena convert` prints).
    Every name goes through YAML's own quoting, so the text reads back as the same table."""
    q = _scalar
    out = [f"schedule: {q(schedule.name)}", "dims:"]
    out += [f"  {q(k)}: {q(v)}" for k, v in schedule.dims.items()]
    out.append("types:")
    out += [f"  {q(k)}: {q(v)}" for k, v in schedule.types.items()]
    out.append("tensors:")
    for t in schedule.tensors.values():
        spec = q(t.spec())
        out.append(f"  {q(t.name)}: {{shape: {spec}, persistent: true}}" if t.persistent else f"  {q(t.name)}: {spec}")
    out.append("steps:")

    def row(r: StepRow, indent: str):
        cells = ([f"graph: {r.kind}"] if r.kind else []) + [f"{q(k)}: {q(v)}" for k, v in r.cells.items()]
        return f"{indent}- {q(r.name)}: {{{', '.join(cells)}}}"

    for r in schedule.steps:
        if isinstance(r, Repeat):
            out += [f"  - repeat: {q(r.count)}", "    steps:"] + [row(s, "      ") for s in r.steps]
        else:
            out.append(row(r, "  "))
    return "\n".join(out) + "\n"


def _scalar(text: str) -> str:
    """`text` as a YAML string inside a flow mapping: plain where YAML reads it back as
    the same string, quoted where it would not (`*pos`, `1`, `a: b`, `[x]`)."""
    flow = yaml.safe_dump([str(text)], default_flow_style=True, allow_unicode=True, width=float("inf"))
    return flow.strip()[1:-1]          # the one item of `[item]`, quoted as a flow context needs
