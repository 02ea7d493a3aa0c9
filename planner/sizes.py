"""Byte counts as people write and read them: 512MiB, 1.5GB, 24 GiB."""
from __future__ import annotations

import re
from decimal import Decimal

from .errors import ArenaError, plural, show

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
MAX_SIZE = 10**100   # far beyond any memory, and within what a float (mib) and JSON (int printing) take
SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", re.ASCII)   # ASCII: '١٢' is no size


def parse_size(text: str, option: str = "--budget") -> int:
    """Bytes from '1073741824', '512MiB', '24GiB' or '1.5GB' (units: B, KB, MB, GB, TB in
    powers of 1000, KiB, MiB, GiB, TiB in powers of 1024; any case)."""
    match = SIZE.fullmatch(text)
    unit = UNITS.get(match.group(2).lower()) if match else None
    if unit is None:
        raise ArenaError(f"{option} {text!r}: not a size; give bytes, e.g. 1073741824, 512MiB, 24GiB or 1.5GB")
    if unit == 1 and match.group(1).partition(".")[2].strip("0"):      # digits after the point
        raise ArenaError(f"{option} {text!r}: a fraction of a byte; bytes are whole")
    nbytes = int(Decimal(match.group(1)) * unit)   # exact: 1.5GB is 1,500,000,000 bytes (1.3GiB rounds down)
    if nbytes < 1:
        raise ArenaError(f"{option} {text!r}: must be at least 1 byte")
    if nbytes > MAX_SIZE:
        raise ArenaError(f"{option} '{show(text)}': too large, at most 10^100 bytes")
    return nbytes


def mib(n: int, up: bool = False) -> str:
    """Bytes in the largest binary unit they fill: 256.00 MiB, 1.50 GiB, 12 bytes; past 10^12 GiB,
    more than any machine holds, in powers of ten: 9.31e+90 GiB. `up`: rounded up to the printed
    hundredth, so that a budget given as printed holds `n`."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            if n >= 10**12 * scale:
                return f"{n / scale:.2e} {unit}"
            return f"{-(-n * 100 // scale) / 100 if up else n / scale:.2f} {unit}"
    return f"{n} {plural(n, 'byte')}"
