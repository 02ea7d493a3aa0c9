"""Write output files whole or not at all: a reader never finds half a plan.

Every path is checked before anything is written (`check_target`), so a command with
several outputs writes all of them or none when one cannot be written.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import ArenaError


def check_target(path, option: str = "--out") -> Path:
    """The file `path` names, resolved through symbolic links, once it is known to be
    writable: its folder exists and lets us write, and it is not itself a folder."""
    if not str(path).strip():
        raise ArenaError(f"{option}: the path is empty")
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise ArenaError(f"{option} {path}: is a folder, not a file")
    if not target.parent.is_dir():
        raise ArenaError(f"{option} {path}: the folder {target.parent} does not exist")
    if target.exists() and not os.access(target, os.W_OK) or not os.access(target.parent, os.W_OK | os.X_OK):
        raise ArenaError(f"{option} {path}: cannot write there: permission denied")
    return target


def write_atomic(path, data: str | bytes, option: str = "--out") -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place. A path
    through a symbolic link writes the link's target; an existing special file (a FIFO,
    a device such as /dev/stdout) is written through, never replaced."""
    target = check_target(path, option)
    mode = "wb" if isinstance(data, bytes) else "w"
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        try:
            with open(target, mode) as f:
                f.write(data)
        except OSError as e:
            raise ArenaError(f"{option} {path}: cannot write there: {e.strerror}") from None
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as e:
        raise ArenaError(f"{option} {path}: cannot write there: {e.strerror}") from None
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        umask = os.umask(0)   # mkstemp makes the file private; give it the mode a plain open() would
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as e:
        os.unlink(tmp)
        raise ArenaError(f"{option} {path}: cannot write there: {e.strerror}") from None
