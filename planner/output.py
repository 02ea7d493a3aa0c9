"""Write output files whole or not at all: a reader never finds half a plan.

Every path is checked before anything is written (`check_target`), and a command's outputs
are written together (`write_all`): all of them or none.
"""
from __future__ import annotations

import errno
import os
import re
import signal
import stat
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from .errors import SYSTEM_FAULTS, ArenaError, WriteFailed

HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)
TEMPORARY_NAME = 32   # characters of the target's name in its temporary file's, at most 4 bytes each


def drop_stdout() -> None:
    """After standard output failed (a reader that left, a full disk, an encoding): Python flushes
    it again at exit; let that go nowhere rather than fail once more."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):      # no stdout at all
        pass


def check_target(path, option: str = "--out") -> Path:
    """The file `path` names, resolved through symbolic links, once it is known to be
    writable: its folder exists and lets us write, and it is not itself a folder. One of this
    process's descriptors (/dev/stdout) is taken as named: resolved, it may be a pipe with no path."""
    if str(path) == "":     # a name of spaces is a file's name, as it is for an input
        raise ArenaError(f"{option}: the path is empty")
    if str(path) == "-":    # standard input to --prompt-file; here it would be a file named '-'
        raise ArenaError(f"{option} -: give a file's path (./- for a file named '-'; standard output carries "
                         "the command's own output)")
    if _descriptor(path) is not None:
        if not os.access(path, os.W_OK):
            raise ArenaError(f"{option} {path}: cannot write there")
        return Path(path)
    try:
        target = Path(os.path.realpath(path))
        if target.is_symlink():             # what realpath leaves of a loop of links
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        if target.is_dir():
            raise ArenaError(f"{option} {path}: is a folder, not a file")
        if str(path).endswith(os.sep):      # realpath drops the slash that names a folder
            raise ArenaError(f"{option} {path}: names a folder, and there is none there; give a file's path")
        if not target.parent.is_dir():
            raise ArenaError(f"{option} {path}: {target.parent} is a file, not a folder" if target.parent.exists()
                             else f"{option} {path}: the folder {target.parent} does not exist")
        if target.exists() and not os.access(target, os.W_OK) or not os.access(target.parent, os.W_OK | os.X_OK):
            why = "read-only file system" if os.statvfs(target.parent).f_flag & os.ST_RDONLY else "permission denied"
            raise ArenaError(f"{option} {path}: cannot write there: {why}")
    except OSError as e:   # a name too long, a loop of links: what the file system says
        raise ArenaError(_unwritable(path, option, e)) from None
    if not target.exists() or target.is_file():
        _try_staging(target, path, option)
    return target


def _try_staging(target: Path, path, option: str) -> None:
    """A file made and removed where write_all will stage `target`'s: a folder that says it may be
    written (os.access) may still refuse new files (/proc, /sys to root), which must show before
    the command's work, not after it."""
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:TEMPORARY_NAME]}.")
    except OSError as e:    # out of inodes is the system's fault, as a full disk is
        fault = f"{option} {path}: cannot make a file in {target.parent}: {e.strerror or e}"
        raise (WriteFailed if e.errno in SYSTEM_FAULTS else ArenaError)(fault) from None
    os.close(fd)
    os.unlink(tmp)


def check_targets(outputs: dict[str, str], inputs: dict[str, str | None]) -> None:
    """Each of `outputs` ({option: path}) writable (check_target), and none the same file as
    another or as one of `inputs` ({what: path}, e.g. the schedule), which it would overwrite."""
    seen = {_identity(path): f"{what} {path}, which it would overwrite" for what, path in inputs.items() if path}
    for option, path in outputs.items():
        check_target(path, option)
        key = _identity(path)
        if key in seen:
            raise ArenaError(f"{option} {path}: the same file as {seen[key]}")
        seen[key] = f"{option}; one would overwrite the other"


def _identity(path):
    """What tells two paths to one file apart from others: an existing file's device and inode
    (through links and descriptors: /dev/stdout redirected to a file is that file), else the
    path resolved through links."""
    try:
        info = os.stat(path)
        return info.st_dev, info.st_ino
    except OSError:
        return os.path.realpath(path)


def write_atomic(path, data: str | bytes, option: str = "--out") -> None:
    """Write `data` to `path` whole (write_all)."""
    write_all([(option, path, data)])


def write_all(outputs: list[tuple[str, str, str | bytes]]) -> None:
    """Write each (option, path, data) whole, and all of them or none: each goes to a temporary
    file beside its path first, and only once every one is written are they renamed into place.
    A path through a symbolic link writes the link's target; an existing file keeps its mode, but
    its other hard links keep the old content; an existing special file (a FIFO, a device such as
    /dev/stdout) is written through, never replaced, after the others are staged."""
    staged: list[tuple[str, Path, str, str]] = []      # (temporary file, target, option, path), not yet renamed
    try:
        through = []
        for option, path, data in outputs:
            target, fd = check_target(path, option), _descriptor(path)
            data = data.encode() if isinstance(data, str) else data    # UTF-8, whatever the locale's
            try:
                if fd is not None or target.exists() and not stat.S_ISREG(target.stat().st_mode):
                    through.append((option, path, target, fd, data))
                else:
                    staged.append((_stage(target, data), target, option, path))
            except OSError as e:
                raise _failed(path, option, e) from None
        for option, path, target, fd, data in through:
            try:
                _write_through(target, fd, data)
            except OSError as e:
                raise _failed(path, option, e) from None
        with _signals_deferred():   # a rename over a file may flush its data first: milliseconds
            while staged:
                tmp, target, option, path = staged[0]
                try:
                    os.replace(tmp, target)
                except OSError as e:    # a file mounted over the target, say
                    raise _failed(path, option, e) from None
                staged.pop(0)
    finally:   # whatever stopped the writes, no temporary file stays behind
        for tmp, *_ in staged:
            os.unlink(tmp)


@contextmanager
def _signals_deferred():
    """Ctrl-C and SIGTERM held until the block ends, then acted on as they would have been.
    Python runs its handlers in the main thread whichever thread the signal reaches (numpy's
    and torch's threads included), so the main thread's handlers are swapped for ones that
    note the signal; elsewhere signals cannot be held, and are not."""
    previous = {number: signal.getsignal(number) for number in HELD_SIGNALS}
    if threading.current_thread() is not threading.main_thread() or None in previous.values():
        yield       # (None: a handler installed outside Python, which signal.signal cannot put back)
        return
    caught: list[int] = []
    for number in HELD_SIGNALS:
        signal.signal(number, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in caught[:1]:
            signal.raise_signal(number)


def _stage(target: Path, data: bytes) -> str:
    """A temporary file beside `target` holding `data`, with the mode a plain open() would give:
    an existing target's own (and its owner and group, where this process may give them)."""
    # the temporary name holds the start of the target's: a name of 255 bytes has no room for more
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:TEMPORARY_NAME]}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())    # on disk before the rename: else a crash may leave the target empty
        if target.exists():
            old = target.stat()
            try:
                os.chown(tmp, old.st_uid, old.st_gid)
            except PermissionError:     # another user's file in a folder we may write: ours now
                pass
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
        else:
            umask = os.umask(0)   # mkstemp makes the file private
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _write_through(target: Path, fd: int | None, data: bytes) -> None:
    """Write `data` into a special file. One of this process's descriptors (`fd`: /dev/stdout)
    is written on that descriptor, after what Python holds for it: opened anew, it would start at
    the beginning of a file the shell redirected it to, and the command's printing would then
    overwrite it."""
    if fd is None:
        with open(target, "wb") as f:
            f.write(data)
        return
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:      # None: the process started with it closed
            stream.flush()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


DESCRIPTOR = re.compile(r"/dev/(?:stdin|stdout|stderr|fd/([0-9]+))|/proc/(?:self|thread-self|[0-9]+)/fd/([0-9]+)",
                        re.ASCII)
NAMED = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


def _descriptor(path) -> int | None:
    """The descriptor number `path` names (/dev/stdout, /dev/fd/3, /proc/self/fd/1, or a link to
    one of them), or None."""
    name = os.path.abspath(path)
    for _ in range(40):                     # the kernel's own limit on links followed
        name = "/" + name.lstrip("/")       # //dev/stdout is /dev/stdout
        match = DESCRIPTOR.fullmatch(name)
        if match:
            number = match[1] or match[2]
            return int(number) if number else NAMED[name]
        if not os.path.islink(name):
            return None
        name = os.path.normpath(os.path.join(os.path.dirname(name), os.readlink(name)))
    return None


def _failed(path, option: str, e: OSError) -> Exception:
    """The error a write that failed raises: a pipe's reader that left, as every print does
    (BrokenPipeError); WriteFailed for a full disk or a failing device; else ArenaError (a path
    the checks let through, such as /dev/fd/9 with no descriptor 9)."""
    if isinstance(e, BrokenPipeError):
        return e
    return (WriteFailed if e.errno in SYSTEM_FAULTS else ArenaError)(_unwritable(path, option, e))


def _unwritable(path, option: str, e: OSError) -> str:
    return f"{option} {path}: cannot write there: {e.strerror or e}"
