"""The exceptions the CLI turns into a clear message: a fault in the input (exit code 2), a
capacity no plan was found within (exit code 3), and an output the system failed to write
(exit code 1); and the helpers that phrase the user's
input in a message."""
import codecs
import errno
import json
import os
import stat
import sys
import unicodedata
from pathlib import Path

# Write errors that are the system's (exit code 1, as when standard output fails), not the path's (2).
SYSTEM_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG)
MAX_FILE_BYTES = 4 << 20   # a schedule, table or prompt: a thousand times the largest that ships


class ArenaError(Exception):
    """A fault in the user's input (file, step, tensor, option), one message per fault."""

    def __init__(self, *faults: str):
        self.faults = list(faults)
        super().__init__("\n".join(self.faults))


class WriteFailed(Exception):
    """An output file whose path was fine but whose writing failed (a full disk): the system's
    fault, not the input's, as when standard output fails."""


class CapacityMissed(Exception):
    """No plan within `capacity` bytes: proven impossible when `bound` (the least arena any
    plan can have) is above it, else only not found within the time limit."""

    def __init__(self, capacity: int, bound: int, best: int, searched: str, align: int = 1, maker: str = ""):
        """`searched` says how plans were looked for, e.g. 'in 10 s' or 'by skyline'; `align`,
        the alignment every offset keeps (the proof is of plans that keep it: a CSV problem's
        own alignments may be smaller); `maker`, the heuristic whose plan is the best found, where
        the strategy asked for is not that heuristic alone."""
        self.capacity, self.bound, self.best = capacity, bound, best
        self.searched, self.align, self.maker = searched, align, maker
        self.proven = bound > capacity
        aligned = f" (offsets multiples of {align:,})" if align > 1 else ""
        by = f", {maker}'s," if maker else ""
        # where the clock, not the strategy, ended the search
        more = "; more --time-limit may find one" if searched.startswith("in ") or "could start" in searched else ""
        super().__init__(
            f"no plan fits in {capacity:,} {plural(capacity, 'byte')}: proven impossible, "
            f"every plan needs at least {bound:,} {plural(bound, 'byte')}{aligned}"
            if self.proven else
            f"no plan within {capacity:,} {plural(capacity, 'byte')} found {searched}, and none proven impossible "
            f"(the best plan found{by} needs {best:,} {plural(best, 'byte')}{more})")


def shown(fault: str) -> str:
    """A fault as a terminal shows it: a control character or line separator quoted from the
    user's input (a name, a cell) is escaped, never acted on."""
    return "".join(ascii(c)[1:-1] if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in fault)


def plural(count: int, noun: str) -> str:
    """`noun` as it reads after `count`: 'byte' after 1, 'bytes' after any other count."""
    return noun + "s" * (count != 1)


def where(file=None, line=None, step=None, tensor=None) -> str:
    """'file:line: step 'rope', tensor 'attn': ' -- the location prefix of a fault."""
    parts = []
    if file is not None:
        parts.append(f"{file}:{line}" if line is not None else str(file))
    if step is not None:
        parts.append(f"step '{step}'")
    if tensor is not None:
        parts.append(f"tensor '{tensor}'")
    return ": ".join(parts) + ": " if parts else ""


def show(value, width: int = 60) -> str:
    """A value from the user's file as a message quotes it: one line, at most `width` characters."""
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def regular_file(path, what: str) -> os.stat_result:
    """The stat of `path` when it is a regular file; else an ArenaError naming it and `what` it
    should be. Opening a device such as /dev/zero, or a pipe, may never end, or block."""
    try:
        info = os.stat(path)
    except OSError as e:
        raise ArenaError(f"{path}: cannot read the {what}: {e.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device or a pipe"
        raise ArenaError(f"{path}: cannot read the {what}: it is {kind}, not a file")
    return info


def read_json_object(path, what: str) -> dict:
    """The JSON object in a user's file (`what` it should be, as read_text takes it)."""
    text = read_text(path, what, "a JSON file is UTF-8 text")
    try:
        value = json.loads(text, parse_int=_json_int)
    except (ValueError, RecursionError) as e:   # RecursionError: lists or objects nested too deep
        raise ArenaError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ArenaError(f"{path}: the {what} is not a JSON object")
    return value


def out_of_memory(e: Exception) -> bool:
    """Whether `e` is an allocation the system refused (a ulimit, a small machine): Python's
    MemoryError, or torch's allocators' RuntimeError, which says so in its message."""
    text = str(e).lower()
    return isinstance(e, MemoryError) or any(words in text for words in
                                             ("can't allocate memory", "not enough memory", "out of memory"))


def system_failure(e: Exception) -> str | None:
    """The line that says how the system failed a command, None where `e` is no such failure:
    an allocation it refused, or an OSError (the files the user names are checked first, so
    what is left is writing the output)."""
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else " (writing the output)" if e.errno in SYSTEM_FAULTS else ""
        return f"{e.strerror or e}{where}"
    return "out of memory: the system refused an allocation" if out_of_memory(e) else None


def unencodable(e: UnicodeEncodeError) -> str:
    """The line for standard output's encoding failing the text (PYTHONIOENCODING=ascii, say,
    and a reply in another script)."""
    return f"the output's encoding ({e.encoding}) cannot write {ascii(e.object[e.start:e.end])}; set PYTHONIOENCODING=utf-8"


def note(text: str) -> None:
    """One line on standard error beside the command's output. A full or closed standard error
    loses the line, never the output or the exit code (print(file=None) would write to stdout)."""
    if sys.stderr is None:
        return
    try:
        print(text, file=sys.stderr)
    except (OSError, ValueError):
        pass


def _json_int(text: str) -> int:
    """A JSON integer as json reads it; one past Python's limit on digits is named plainly,
    without int()'s advice on raising that limit."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"an integer of {len(text.lstrip('-')):,} digits, more than "
                         f"{sys.get_int_max_str_digits():,} are read") from None


def utf8_text(data: bytes) -> str:
    """`data` as UTF-8 text, less a byte-order mark; a UnicodeDecodeError counts its offset
    from the first byte of `data`, the mark's too (utf-8-sig counts from after it)."""
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        skipped = len(data) - len(body)
        raise UnicodeDecodeError("utf-8", data, e.start + skipped, e.end + skipped, e.reason) from None


def read_text(path, what: str, hint: str, most: int = MAX_FILE_BYTES, keep_mark: bool = False) -> str:
    """The UTF-8 text of a user's file, less the byte-order mark some editors write first; an
    ArenaError naming the file (`what` it should be) when it cannot be read, or the first byte
    that is not UTF-8 and `hint` when it is not text (`keep_mark`: the byte-order mark stays, as
    transformers keeps it in a chat template). Refused before a byte is read when it
    is not a regular file (a device such as /dev/zero, or a pipe, may never end) or holds
    more than `most` bytes."""
    try:
        info = regular_file(path, what)
        if info.st_size > most:
            raise ArenaError(f"{path}: the {what} is {info.st_size:,} bytes; at most {most:,} are read")
        data = Path(path).read_bytes()
        return data.decode("utf-8") if keep_mark else utf8_text(data)
    except OSError as e:
        raise ArenaError(f"{path}: cannot read the {what}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ArenaError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                         f"{hint}") from None
