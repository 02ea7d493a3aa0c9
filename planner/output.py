"""Write output files whole or not at all: a reader never finds half a plan."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ArenaError


def write_atomic(path, data: str | bytes, option: str = "--out") -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.")
    except OSError as e:
        raise ArenaError(f"{option} {path}: cannot write there: {e.strerror}") from None
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        umask = os.umask(0)   # mkstemp makes the file private; give it the mode a plain open() would
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise ArenaError(f"{option} {path}: cannot write there: {e.strerror}") from None
