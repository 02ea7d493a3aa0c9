"""The header of a GGUF file: its metadata and where its tensors lie, read without the tensors.

gguf's own reader makes a numpy array of every part of every metadata value: on SmolLM2's
vocabulary (49,152 tokens, 48,900 merges) that is about 500,000 objects, 6 s and 150 MiB.
This reads the same header into plain Python values in a fraction of a second. The layout
(GGUF versions 2 and 3, little-endian):

    "GGUF", version u32, tensor count u64, metadata count u64
    metadata: key (string), value type u32, value
    tensor infos: name (string), dimension count u32, dimensions u64 each (innermost first),
                  type u32, offset u64 (from the start of the data)
    the data, at the next multiple of general.alignment (32 when absent)

A string is its byte length u64 and its bytes; an array is its element type u32, its length
u64 and its elements (arrays too, nested at most `_NESTING` deep here). Strings stay bytes here:
they are decoded when read (`decoded`), so a key that is not UTF-8 is an error only for the one
who asks for it.
"""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import ArenaError, regular_file

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
# arrays within arrays: llama.cpp reads none, gguf writes some; the reading recurses, and this
# bound keeps a corrupt file far from Python's recursion limit
_NESTING = 8
_MAX_DIMS = 4           # ggml's GGML_MAX_DIMS


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]   # GGUF's order: innermost dimension first
    type: int                # ggml's type number (gguf.GGMLQuantizationType)
    offset: int              # from the start of the file


@dataclass
class Header:
    fields: dict[str, object]        # values as stored: numbers, bools, bytes, lists of them
    tensors: dict[str, TensorInfo]
    size: int                        # the file's length in bytes


def read_header(path: Path) -> Header:
    """The header of the GGUF file at `path`; an ArenaError when it is not one."""
    regular_file(path, "GGUF file")
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _Parser(data, path).header()
    except _Corrupt as e:
        raise ArenaError(f"{path}: not a readable GGUF file, truncated or corrupt ({e})") from None
    except (ValueError, OSError, OverflowError) as e:   # mmap of an empty file, say
        raise ArenaError(f"{path}: not a readable GGUF file, truncated or corrupt ({type(e).__name__}: {e})") from None


def decoded(value: object) -> object:
    """A value with its strings decoded as UTF-8 (UnicodeDecodeError when one is not)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


class _Corrupt(Exception):
    """What the parser found wrong, in words."""


class _Parser:
    def __init__(self, data: mmap.mmap, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def header(self) -> Header:
        if self.take(4) != b"GGUF":
            raise _Corrupt("no GGUF magic number")
        version = self.scalar("I")
        if version not in (2, 3):
            raise _Corrupt(f"version {version} (2 and 3 are read)")
        count, keys = self.scalar("Q"), self.scalar("Q")
        fields = {}
        for _ in range(keys):
            key = self.text("a metadata key")
            if key in fields:       # which of the two counts? llama.cpp refuses the file, as here
                raise _Corrupt(f"metadata key '{key}' appears twice")
            fields[key] = self.value(self.scalar("I"), key)
        infos = [self.tensor_info() for _ in range(count)]
        alignment = fields.get("general.alignment", 32)
        if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
            raise _Corrupt(f"general.alignment is {alignment!r}, not a power of two")
        start = -(-self.pos // alignment) * alignment
        tensors = {}
        for t in infos:
            if t.name in tensors:
                raise _Corrupt(f"tensor '{t.name}' appears twice")
            if t.offset % alignment:
                raise _Corrupt(f"tensor '{t.name}' starts at {t.offset}, not a multiple of the alignment {alignment}")
            tensors[t.name] = TensorInfo(t.name, t.shape, t.type, start + t.offset)
        return Header(fields, tensors, len(self.data))

    def tensor_info(self) -> TensorInfo:
        name = self.text("a tensor name")
        count = self.scalar("I")
        if count > _MAX_DIMS:
            raise _Corrupt(f"tensor '{name}' has {count} dimensions; GGUF's have at most {_MAX_DIMS}")
        shape = tuple(self.scalar("Q") for _ in range(count))
        return TensorInfo(name, shape, self.scalar("I"), self.scalar("Q"))

    def value(self, kind: int, key: str, depth: int = 0) -> object:
        """The value of metadata `key`, `depth` arrays down."""
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            if depth == _NESTING:
                raise ArenaError(f"{self.path}: GGUF metadata '{key}' nests arrays more than {_NESTING} deep")
            kind, length = self.scalar("I"), self.scalar("Q")
            if kind in _SCALARS:    # one unpack for the whole array
                if length * struct.calcsize(_SCALARS[kind]) > len(self.data) - self.pos:
                    raise _Corrupt(f"metadata '{key}' is an array of {length:,} values, past the end of the file")
                return list(self.unpack(f"<{length}{_SCALARS[kind]}"))
            return [self.value(kind, key, depth + 1) for _ in range(length)]
        if kind not in _SCALARS:
            raise _Corrupt(f"metadata '{key}' has value type {kind}, which GGUF does not define")
        return self.scalar(_SCALARS[kind])

    def string(self) -> bytes:
        return self.take(self.scalar("Q"))

    def text(self, what: str) -> str:
        """A string that must be UTF-8: a key or a tensor's name."""
        at = self.pos
        try:
            return self.string().decode("utf-8")
        except UnicodeDecodeError:
            raise _Corrupt(f"{what} at offset {at} is not UTF-8") from None

    def scalar(self, code: str):
        return self.unpack("<" + code)[0]

    def unpack(self, layout: str) -> tuple:
        if self.pos + struct.calcsize(layout) > len(self.data):
            raise _Corrupt(f"{struct.calcsize(layout)} bytes asked at offset {self.pos}, past the end of the file")
        values = struct.unpack_from(layout, self.data, self.pos)
        self.pos += struct.calcsize(layout)
        return values

    def take(self, length: int) -> bytes:
        if self.pos + length > len(self.data):
            raise _Corrupt(f"{length} bytes asked at offset {self.pos}, past the end of the file")
        chunk = self.data[self.pos:self.pos + length]
        self.pos += length
        return chunk
