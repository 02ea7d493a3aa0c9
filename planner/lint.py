"""Likely mistakes in a lifetime table that still plans: an instance read though no cell writes
it, one neither written nor read, a tensor declared and never used. Each holds bytes for nothing
(or for garbage), so `arena plan` notes them; the plan is made all the same."""
from __future__ import annotations

from .errors import plural, where
from .lifetimes import Lifetimes
from .schedule import Schedule

MOST = 10       # notes shown; the rest are counted in one line


def suspects(table: Schedule, lifetimes: Lifetimes) -> list[str]:
    """One note per likely mistake, a row of a repeat block noted once for all its layers."""
    found: dict[tuple, list] = {}       # (tensor, row, what) -> [the first step's name, how many]
    open_: dict[str, dict] = {}         # tensor -> its live instance's first step and uses so far
    persistent = {t.name for t in table.tensors.values() if t.persistent}

    def close(tensor: str) -> None:
        uses = open_.pop(tensor)
        if uses["symbols"] & set("wm"):        # written (or mapped from the host): nothing to note
            return
        what = "is read but no cell writes it" if "r" in uses["symbols"] else "is neither written nor read"
        found.setdefault((tensor, uses["op"], what), [uses["step"], 0])[1] += 1

    for step in lifetimes.steps:
        for tensor, symbols in step.cells.items():
            if tensor in persistent:        # written by the calls before this one
                continue
            if symbols.startswith("+"):
                open_[tensor] = {"step": step.name, "op": step.op, "symbols": set()}
            if tensor in open_:
                open_[tensor]["symbols"] |= set(symbols)    # (a set: a string grew with every step)
                if symbols.endswith("x"):
                    close(tensor)
    for tensor in list(open_):
        close(tensor)
    notes = [f"note: {where(table.file, None, step, tensor)}the instance created here {what}"
             + (f" (and {count - 1} more like it, made by the same row)" if count > 1 else "")
             for (tensor, _, what), (step, count) in found.items()]
    used = {tensor for step in lifetimes.steps for tensor in step.cells}
    notes += [f"note: {where(table.file, t.line, tensor=t.name)}declared, but no step uses it"
              for t in table.tensors.values() if t.name not in used]
    if len(notes) > MOST:
        rest = len(notes) - MOST + 1
        notes = notes[:MOST - 1] + [f"note: and {rest} more {plural(rest, 'note')} like these"]
    return notes
