"""The Schedule: a lifetime table of steps x tensors, cells of `+ o m r w x`, as data.

The YAML format keeps the shape of the seed table (docs/schedule-format.md; reader.py
reads it, `to_yaml` writes it):

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

Here too are the rules a cell's symbols and a name follow, which every reader applies.
"""
from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import show

SYMBOLS = "+omrwx"
KINDS = ("kernel", "graph")
ELEMENT_BYTES = {"i8": 1, "u8": 1, "i32": 4, "i64": 8, "f64": 8, "f32": 4, "f16": 2, "bf16": 2}
ACT = "act"  # the element type bound by --dtype
# the schedules that ship with the project: planner/schedules/ once installed (pyproject.toml),
# schedules/ beside the packages in the source tree
_HERE = Path(__file__).resolve().parent
SCHEDULES = _HERE / "schedules" if (_HERE / "schedules").is_dir() else _HERE.parent / "schedules"
# names a step row's keys give a meaning of their own, so that no tensor or step can have them
RESERVED = {("tensor", "graph"): "a row's 'graph' is its kernel/graph column",
            ("step", "repeat"): "a row 'repeat' starts a repeat block"}


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
    count: str                 # an integer, a dimension name or an expression of them, e.g. "nlayers"
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
    if len(axes) > 1 and not axes[-1].strip():
        axes.pop()                              # 'Ta[n,]', as Python writes a tuple of one
    return axes if text.strip() else []          # 'Ta[]' is a scalar; 'Ta[n,,n]' has an empty axis


MAX_NAME = 1024


def name_problem(text: str, what: str) -> str | None:
    """Why `text` cannot name a tensor, step, dimension or buffer, or None: it is empty,
    holds a control character, which no output format (GraphML, YAML, a terminal) carries,
    or a line break (U+2028 and U+2029 end a line in YAML), is longer than YAML reads a key,
    or is RESERVED, which the YAML of a table could not say."""
    bad = None if text.isprintable() else next(     # (printable: no C* or Zl/Zp; a quick look on 10^6 names)
        (c for c in text if unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")), None)
    if bad is not None:
        kind = "a line separator" if unicodedata.category(bad) in ("Zl", "Zp") else "a control character"
        return f"{what} name {show(ascii(text))} holds {kind} (U+{ord(bad):04X})"
    if not text.strip():
        return f"{what} name is empty"
    if len(text) > MAX_NAME:
        return f"{what} name '{show(text)}' is {len(text):,} characters long; at most {MAX_NAME:,} (YAML reads no longer key)"
    if (what, text) in RESERVED:
        return f"{what} name '{text}' is reserved: {RESERVED[what, text]}"
    return None


def is_count(text: str) -> bool:
    """Whether `text` is a non-negative integer written in ASCII digits (what int() and a
    reader take the same way)."""
    return re.fullmatch(r"[0-9]+", text, re.ASCII) is not None

def to_yaml(schedule: Schedule) -> str:
    """The YAML text of a schedule, one step row per line (what `arena convert` prints).
    Every name goes through YAML's own quoting, so the text reads back as the same table."""
    q = _scalar
    out = [f"schedule: {q(schedule.name)}", "dims:" if schedule.dims else "dims: {}"]   # `dims:` alone is null
    out += [f"  {q(k)}: {q(v)}" for k, v in schedule.dims.items()]
    out.append("types:" if schedule.types else "types: {}")
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
