"""Read a lifetime table (YAML) into a Schedule, checking its structure as it goes.

Every fault names its place and all are reported at once; names, symbols and shapes that
parse are checked here, and the meaning of the symbols over time when the table is
unrolled (lifetimes.py). YAML allows more than a table ever means, and a small file can ask
for unbounded work: both are refused here (the limits, duplicate keys).
"""
from __future__ import annotations

import keyword
import re
from collections.abc import Hashable
from pathlib import Path

import yaml

from . import expr
from . import errors
from .errors import ArenaError, read_text, where
from .schedule import ACT, ELEMENT_BYTES, KINDS, Repeat, Schedule, StepRow, TensorDecl, is_count, name_problem, \
    split_axes, symbol_problem, MAX_NAME

_SHAPE = re.compile(r"^\s*([^\W\d]\w*)\s*\[(.*)\]\s*$", re.DOTALL)   # a line break is whitespace between axes


# Limits no real schedule comes near: a few hundred bytes of YAML aliases can otherwise
# expand to billions of nodes (a "billion laughs"), and nested brackets can exhaust the stack.
# (The values written out are bounded by the file's size, MAX_FILE_BYTES.)
MAX_YAML_NODES = 100_000
# the keys under which the loader keeps each mapping's line and its keys' lines: objects, not
# strings, so that no key of a schedule (a tensor named __line__) can meet them
LINE, LINES = object(), object()


def show(value) -> str:
    """errors.show of a value as the file wrote it: without the lines the loader keeps."""
    return errors.show(_written(value))


def _written(value):
    if isinstance(value, dict):
        return {k: _written(v) for k, v in value.items() if k is not LINE and k is not LINES}
    if isinstance(value, set):      # a !!set is a mapping, and has its lines too
        return {k for k in value if k is not LINE and k is not LINES}
    if isinstance(value, tuple):    # a !!omap or !!pairs entry
        return tuple(_written(v) for v in value)
    return [_written(v) for v in value] if isinstance(value, list) else value


_YAML11_BREAKS = "\x85\u2028\u2029"


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that remembers the line of every mapping and of each key in it, so
    faults can point at them, and refuses what YAML allows but a table never means:
    a key given twice in one mapping, and aliases that expand past MAX_YAML_NODES."""

    def __init__(self, text: str, file: str):
        # YAML 1.2 breaks lines at LF and CR alone; PyYAML (1.1) also at NEL, U+2028 and U+2029,
        # which broke a comment or a value in two and put every later line off by one. Each is
        # read as a stand-in that the text lacks, and is put back in every scalar.
        stand_ins = (chr(c) for c in range(0xE000, 0xF900) if chr(c) not in text)
        swaps = {ord(c): next(stand_ins, None) for c in _YAML11_BREAKS if c in text}
        if None in swaps.values():
            raise ArenaError(f"{file}: holds every private-use character, and NEL, U+2028 or U+2029 beside them")
        super().__init__(text.translate(swaps))
        self.back = {ord(stand_in): chr(c) for c, stand_in in swaps.items()}
        self.file = file
        self.node = None        # the value being built: PyYAML's own constructors fail without a line

    def construct_scalar(self, node):
        return super().construct_scalar(node).translate(self.back)

    def restored(self, message: str) -> str:
        """`message` with the file's own characters where it quotes stand-ins (as they are, or
        escaped as PyYAML quotes them)."""
        for stand_in, c in self.back.items():
            message = message.replace(chr(stand_in), c).replace(ascii(chr(stand_in))[1:-1], ascii(c)[1:-1])
        return message

    def get_single_node(self):
        node = super().get_single_node()
        sizes: dict[int, int] = {}
        # what the aliases add: a large table written out is read (its file's size bounds it)
        if node is not None and _expanded_size(node, sizes) - len(sizes) > MAX_YAML_NODES:
            raise ArenaError(f"{self.file}: the YAML's aliases expand it by more than {MAX_YAML_NODES:,} values; "
                             "a schedule needs far fewer")
        return node

    def construct_mapping(self, node, deep=False):
        own = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        self.flatten_mapping(node)          # `<<: *base` merges: its pairs first, then `own` overriding them
        merged = node.value[:len(node.value) - len(own)]
        mapping, lines = {}, {}
        for count, (key_node, value_node) in enumerate(merged + own):
            key = self._key(key_node)
            if count >= len(merged) and key in lines and lines[key][1]:
                line = key_node.start_mark.line + 1
                first = "earlier on this line" if lines[key][0] == line else f"line {lines[key][0]} has it first"
                raise ArenaError(f"{where(self.file, line)}key '{show(key)}' appears twice in one mapping ({first})")
            lines[key] = (key_node.start_mark.line + 1, count >= len(merged))
            mapping[key] = self.construct_object(value_node, deep=deep)
        mapping[LINE] = node.start_mark.line + 1
        mapping[LINES] = {key: line for key, (line, _) in lines.items()}
        return mapping

    def _key(self, key_node):
        """A key is a name as written: `~` and `true` are not None and True (and the text of a
        scalar is the same wherever an alias repeats it)."""
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag in _IMPLICIT:
            return key_node.value.translate(self.back)
        key = self.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError("while constructing a mapping", None, "found unhashable key",
                                                    key_node.start_mark)
        return key

    def resolve(self, kind, value, implicit):
        """A plain scalar's tag, by YAML 1.2's nulls and booleans alone: any other is text as
        written (an explicit tag is not resolved here, nor `<<`, which merges a mapping)."""
        if kind is yaml.ScalarNode and implicit[0] and value != "<<":
            return _NULL if value in _NULLS else _BOOL if value in _TRUE + _FALSE else _STR
        return super().resolve(kind, value, implicit)

    def construct_object(self, node, deep=False):
        self.node = node
        waiting = len(self.state_generators)
        data = super().construct_object(node, deep=deep)
        self.state_generators[waiting:] = [self._resumed(node, g) for g in self.state_generators[waiting:]]
        return data

    def _resumed(self, node, generator):
        """`generator`, which builds the rest of `node`'s value later, with `node` as the value
        being built again when it resumes."""
        self.node = node
        yield from generator


# A plain scalar is what YAML 1.2 reads it as, not PyYAML's YAML 1.1: there `010` is the octal 8
# (a repeat unrolled 8 times), `2:30` is 150, `1.50` is 1.5 and `yes`, `on`, `no`, `off` are
# booleans (a tensor named `on` became True). Here a plain scalar is text as written, but for
# `~`, `null` and an empty value (none) and `true` and `false`, which keep their text too
# (Truth: a cell `true` is quoted as written). A key is a name: none of them (`_key`).
_STR, _NULL, _BOOL = (f"tag:yaml.org,2002:{tag}" for tag in ("str", "null", "bool"))
_IMPLICIT = {_NULL, _BOOL, *(f"tag:yaml.org,2002:{tag}" for tag in ("int", "float", "timestamp"))}
_NULLS = ("", "~", "null", "Null", "NULL")
_TRUE, _FALSE = ("true", "True", "TRUE"), ("false", "False", "FALSE")


class Truth(str):
    """`true` or `false` as written in the table."""

    def __bool__(self) -> bool:
        return self in _TRUE


_LineLoader.add_constructor(_BOOL, lambda loader, node: Truth(node.value) if node.value in _TRUE + _FALSE
                            else yaml.SafeLoader.construct_yaml_bool(loader, node))     # `!!bool yes`: True


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
    text = read_text(path, "schedule", "a schedule is a YAML text file")
    return loads(text, str(path))


def loads(text: str, file: str = "<schedule>") -> Schedule:
    if not isinstance(text, str):     # (the handlers below read the loader, which then never was)
        raise TypeError(f"loads takes the schedule's text as a str, not {type(text).__name__}")
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
        raise ArenaError(loader.restored(_long_key(text, e, file) or _yaml_fault(e, file))) from None
    except RecursionError:
        raise ArenaError(f"{file}: the YAML nests too deeply to read") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        # a value that an explicit tag promises and its constructor cannot build: !!int x, !!int _, !!set [1]
        raise ArenaError(loader.restored(_unbuilt(loader.node, file))) from None
    return _Reader(file).schedule(doc)


def _unbuilt(node, file: str) -> str:
    kind = node.tag.rsplit(":", 1)[-1]
    if isinstance(node, yaml.ScalarNode):
        return f"{where(file, node.start_mark.line + 1)}'{show(node.value)}' is tagged !!{kind} but is not one"
    return f"{where(file, node.start_mark.line + 1)}malformed YAML: this {node.id} is not a YAML {kind}"


# A plain key (at a line's start, after `- ` or `? `, or after `{` or `,` in a flow) up to its ':',
# and the errors PyYAML gives where such a key is longer than it reads one (MAX_NAME characters)
_KEY = re.compile(r"(?:^\s*(?:[-?]\s+)*|[{,]\s*)([^\s:{}\[\],#'\"][^:{}\[\],#'\"]*):(?=\s|$)")
_KEY_ERRORS = ("could not find expected ':'", "mapping values are not allowed here", "expected ',' or '}', but got ':'")


def _long_key(text: str, e: yaml.YAMLError, file: str) -> str | None:
    """The fault of a key too long for YAML to read as one, on the line of the syntax error it
    makes or the line before."""
    mark = getattr(e, "problem_mark", None)
    if mark is None or getattr(e, "problem", None) not in _KEY_ERRORS:
        return None
    lines = re.split(r"\r\n|\r|\n", text)       # as PyYAML counts them (NEL and U+2028 were stood in for)
    for number in (mark.line, mark.line + 1):   # counted from 1: the line before the error's, then its own
        for key in _KEY.finditer(lines[number - 1]) if 0 < number <= len(lines) else ():
            if len(key[1]) > MAX_NAME:
                return (f"{where(file, number)}a key of {len(key[1]):,} characters up to its ':' ('{show(key[1])}'); "
                        f"YAML reads a key of at most {MAX_NAME:,}")
    return None


def _yaml_fault(e: yaml.YAMLError, file: str) -> str:
    """One line for a YAML syntax error, at the line that holds the mistake: an unclosed
    bracket or quote is where it opens, not where the reader noticed."""
    problem = _plain_words(getattr(e, "problem", None) or str(e).splitlines()[0])
    mark, context = getattr(e, "problem_mark", None), getattr(e, "context", None)
    context_mark = getattr(e, "context_mark", None)
    if context_mark and context and ("flow" in context or "quoted" in context):
        return (f"{where(file, context_mark.line + 1)}malformed YAML: {context} that starts here: {problem}"
                + (f" (line {mark.line + 1})" if mark else ""))
    return f"{where(file, mark.line + 1 if mark else None)}malformed YAML: {problem}"


# PyYAML's names for its tokens, as its messages quote them ('<block end>', '?'), in a user's words
_TOKENS = {"block end": "the end of the block", "block sequence start": "a list item ('- ')",
           "block mapping start": "a key: value", "flow mapping start": "'{'", "flow sequence start": "'['"}
_TOKEN = re.compile(r"'?<([a-z ]+)>'?|'\?'")
_TAB = "found character '\\t' that cannot start any token"
_MERGE = "expected a mapping or list of mappings for merging"


def _plain_words(problem: str) -> str:
    if problem == _TAB:     # YAML 1.2 allows a tab between tokens; PyYAML not
        return "a tab between tokens, which this reader takes only in quotes, comments and block text: use spaces"
    if problem.startswith(_MERGE):
        return problem + " (a plain `<<` merges a mapping into this one: quote it, '<<', for a name)"
    if "<" not in problem:  # '?' is the key token only beside other tokens; elsewhere it is a character
        return problem
    return _TOKEN.sub(lambda m: _TOKENS.get(m[1], m[1]) if m[1] else "a key", problem)


def _declared_dims(dims) -> str:
    """The dimensions a table declares, as a fault about an unknown one says them."""
    return f"declared dims: {', '.join(dims)}" if dims else "no dims declared: add it under 'dims'"


class _Reader:
    def __init__(self, file: str):
        self.file = file
        self.faults: list[str] = []

    def fault(self, message, line=None, step=None, tensor=None):
        self.faults.append(where(self.file, line, step, tensor) + message)

    def schedule(self, doc) -> Schedule:
        if not isinstance(doc, dict):
            raise ArenaError(f"{self.file}: a schedule is a mapping with keys schedule, dims, types, tensors, steps")
        line = doc.get(LINE)
        for key in ("types", "tensors", "steps"):     # (no dims: a table whose shapes are all numbers)
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
        dims = self.dims(doc.get("dims", {}))
        types = self.types(doc["types"])
        tensors = self.tensors(doc["tensors"], dims, types)
        steps = self.steps(doc["steps"], tensors, dims, nested=False, line=_key_line(doc, "steps"))
        name = doc.get("schedule")
        name = self.name(Path(self.file).stem if name is None else name, "schedule", _key_line(doc, "schedule"))
        if self.faults:
            raise ArenaError(*self.faults)
        return Schedule(name, dims, types, tensors, steps, self.file)

    def name(self, key, what: str, line) -> str:
        """A name from the table as text; one with a control character is a fault, since
        no output format (GraphML, YAML, a terminal) carries it faithfully."""
        if isinstance(key, _COLLECTIONS):
            return self.text(key, f"a {what} name", line)
        text = str(key)
        problem = name_problem(text, what)
        if problem:
            self.fault(problem, line)
        return text

    def dims(self, node) -> dict[str, str]:
        """Each dimension's name, as shapes read it (NFKC: 'ｎ' is 'n'), and its description."""
        dims = {}
        for key, value in _plain(node).items():
            line = _key_line(node, key)
            name = expr.identifier(self.name(key, "dimension", line))
            if name in dims:
                self.fault(f"dimension '{key}' is '{name}' as a shape reads it, which is declared already", line)
            dims[name] = self.text(value, "a dimension's description", line)
        return dims

    def text(self, value, what: str, line) -> str:
        """A scalar from the table as text (none: empty); a mapping, list or set is a fault."""
        if isinstance(value, _COLLECTIONS):
            self.fault(f"{what} must be text, not {_kind(value)}", line)
            return ""
        return "" if value is None else str(value)

    def types(self, node) -> dict[str, str]:
        types = {}
        for key, elem in _plain(node).items():
            name = self.name(key, "type", _key_line(node, key))
            if not isinstance(elem, str) or elem != ACT and elem not in ELEMENT_BYTES:
                self.fault(f"type '{name}': the element type must be one of {', '.join(ELEMENT_BYTES)}, or '{ACT}' "
                           f"for the --dtype, not {_kind(elem)}", _key_line(node, key))
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
                if not isinstance(persistent, (Truth, bool)):
                    self.fault(f"persistent must be true or false, not {_kind(persistent)}", line, tensor=name)
                persistent = isinstance(persistent, (Truth, bool)) and bool(persistent)
                if "shape" not in spec:
                    self.fault("no shape (a tensor has: shape, persistent)", line, tensor=name)
                    tensors[name] = TensorDecl(name, "", [], persistent, line)
                    continue
                spec = spec.get("shape")
            match = _SHAPE.match(str(spec)) if isinstance(spec, str) else None
            if not match:
                shape = "an empty shape" if spec is None else f"shape '{show(spec)}'"
                self.fault(f"{shape} is not of the form Type[dim, dim, ...]", line, tensor=name)
                tensors[name] = TensorDecl(name, "", [], persistent, line)   # its cells are not unknown
                continue
            type_, axes = match.group(1), [a.strip() for a in split_axes(match.group(2))]
            if type_ not in types:
                declared = f"declared: {', '.join(types)}" if types else "no types declared"
                self.fault(f"unknown type '{type_}' ({declared}; declare it under 'types', e.g. T: f16)", line,
                           tensor=name)
            for axis in axes:
                try:
                    unknown = expr.names(axis) - set(dims)
                except expr.ExprError as e:
                    # a shape is read as Python reads an expression: a dimension named 'in' cannot be in one
                    named = [d for d in dims if keyword.iskeyword(d) and re.search(rf"\b{d}\b", axis)]
                    self.fault(f"dimension '{named[0]}' is a Python keyword, which a shape cannot name: "
                               f"call it something else, e.g. '{named[0]}_'" if named else str(e), line, tensor=name)
                    continue
                declared = _declared_dims(dims)
                for dim in sorted(unknown):
                    self.fault(f"unknown dimension '{dim}' in shape '{spec}' ({declared})", line, tensor=name)
            tensors[name] = TensorDecl(name, type_, axes, persistent, line)
        return tensors

    def steps(self, node, tensors, dims, nested, line=None) -> list:
        if not isinstance(node, list):
            self.fault(f"'steps' must be a list of rows, not {_kind(node)}", line)
            return []
        rows = []
        for item in node:
            if not isinstance(item, dict):
                self.fault(f"a step row must be a mapping 'name: {{tensor: symbols}}', not {_kind(item)}", line)
                continue
            line = item.get(LINE)
            keys = _plain(item)
            if "repeat" in keys:
                rows.append(self.repeat(item, line, tensors, dims, nested))
            elif len(keys) != 1:
                got = f"got keys {', '.join(show(k) for k in keys)}" if keys else "got an empty mapping"
                self.fault(f"a step row is one mapping 'name: {{tensor: symbols}}', {got}", line)
            else:
                (name, cells), = keys.items()
                rows.append(self.row(self.name(name, "step", line), cells, line, tensors))
        return rows

    def repeat(self, item, line, tensors, dims, nested) -> Repeat:
        if item["repeat"] is None or isinstance(item["repeat"], _COLLECTIONS):
            self.fault(f"a repeat count is an integer or a declared dimension, not {_kind(item['repeat'])} "
                       "('repeat' starts a repeat block, and names no step)", line)
            return Repeat("", [], line)
        count = show(item["repeat"])
        count = count.removeprefix("+") if is_count(count.removeprefix("+")) else count     # YAML's +3 is 3
        if (name := expr.identifier(count)).isidentifier():
            count = name                            # as a shape would name it
        unknown = set(_plain(item)) - {"repeat", "steps"}
        if unknown:
            self.fault(f"unknown key(s) {', '.join(sorted(show(k) for k in unknown))} "
                       "(a repeat block has: repeat, steps)", line)
        if nested:
            self.fault("repeat blocks do not nest", line)
        elif not is_count(count) and count not in dims:
            self._check_count_expression(count, dims, line)
        if "steps" not in item:
            self.fault("a repeat block has no 'steps' (the list of rows it repeats)", line)
            return Repeat(count, [], line)
        return Repeat(count, self.steps(item["steps"], tensors, dims, nested=True, line=line), line)

    def _check_count_expression(self, count: str, dims, line) -> None:
        """A repeat count that is an expression (`nlayers // 2`) names declared dimensions only."""
        try:
            unknown = sorted(expr.names(count) - set(dims))
        except expr.ExprError:
            self.fault(f"repeat count '{count}' is neither a whole number (0 or more), a declared dimension "
                       "nor an expression of them (+ - * // and parentheses)", line)
            return
        declared = _declared_dims(dims)
        for dim in unknown:
            self.fault(f"unknown dimension '{dim}' in repeat count '{count}' ({declared})", line)

    def row(self, name, cells, line, tensors) -> StepRow:
        if cells is not None and not isinstance(cells, dict):
            self.fault(f"the cells of a step are a mapping {{tensor: symbols}}, not '{show(cells)}'", line, step=name)
            return StepRow(name, None, {}, line)
        lines = (cells or {}).get(LINES, {})
        cells = _plain(cells if cells is not None else {})
        kind = cells.pop("graph", None)
        if kind not in (None,) + KINDS and "graph" not in tensors:     # (else the declaration's fault says why)
            self.fault(f"graph column must be 'kernel' or 'graph', not '{show(kind)}'", line, step=name)
        clean = {}
        for key, symbols in cells.items():
            tensor, cell_line = str(key), lines.get(key, line)
            if tensor not in tensors:
                self.fault(f"unknown tensor (declared: {', '.join(tensors) or 'none'})", cell_line, name, tensor)
                continue
            if symbols is not None and not isinstance(symbols, str):   # an explicit tag: !!int 5, !!binary
                self.fault(f"a cell holds symbols such as '+w' or 'rx', not {_kind(symbols)}", cell_line, name, tensor)
                continue
            symbols = "" if symbols is None else str(symbols)    # str(): a plain `false` is a false Truth
            problem = symbol_problem(symbols)
            if problem:
                self.fault(problem, cell_line, name, tensor)
                continue
            if symbols:
                clean[tensor] = symbols
        return StepRow(name, kind, clean, line)


def _plain(node) -> dict:
    """A mapping without the line numbers the loader adds."""
    if not isinstance(node, dict):
        return {}
    return {k: v for k, v in node.items() if k is not LINE and k is not LINES}


def _key_line(node, key):
    """The line of `key` in a mapping, else of the mapping itself."""
    if not isinstance(node, dict):
        return None
    return node.get(LINES, {}).get(key, node.get(LINE))


# What YAML builds beside text and numbers (`!!set` builds a set, `!!binary` bytes): never a
# name, a count or a description.
_COLLECTIONS = (dict, list, set, bytes)


def _kind(value) -> str:
    return {list: "a list", dict: "a mapping", set: "a set", type(None): "empty",
            bytes: "bytes (!!binary)"}.get(type(value), f"'{show(value)}'")
