"""The compiled parts, loaded with a check: that they are built, and from the C source that is
beside them now. A checkout changed after its build (a pull, a branch) kept the old build, whose
functions took other arguments: a traceback far from the cause, where this says what to do."""
from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from types import ModuleType

REBUILD = "pip install -e . in the project's folder"


class NotBuilt(ImportError):
    """A compiled part missing, or built from another source; the message says how to build it.
    An ImportError, so that a program using the planner as a library can catch it."""


def load(name: str, source: Path) -> ModuleType:
    """The compiled module `name`, built by setup.py from `source` (a wheel carries the source
    it was built from beside it; where none is there, there is nothing to compare)."""
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        raise NotBuilt(f"{name} is not built ({e}); build it: {REBUILD}") from None
    if source.is_file() and getattr(module, "SOURCE_SHA256", None) != hashlib.sha256(source.read_bytes()).hexdigest():
        raise NotBuilt(f"{name} was built from another {source.name} than the one there now; "
                         f"rebuild it: {REBUILD}")
    return module
