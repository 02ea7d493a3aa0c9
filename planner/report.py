"""A plan as a terminal shows it: one row per buffer instance, then the summary."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .sizes import mib
from .plan import Plan

# Rows a terminal table shows at most: past this it is no longer read, only waited for
# (rich lays out the whole table first). --json and --out hold every instance.
SHOWN_ROWS = 1000


MIN_WIDTH = 20     # columns: the narrowest view drawn


def output_console(width: int | None) -> OutputConsole:
    """Standard output's console for tables and maps: names print as written (no markup, no
    emoji codes), `width` columns (None: the terminal's), never fewer than MIN_WIDTH (a
    narrower terminal, or COLUMNS=0, wraps the lines)."""
    return OutputConsole(width=width, markup=False, emoji=False)


class OutputConsole(Console):
    """A console of standard output or error, never narrower than MIN_WIDTH (at COLUMNS=0 rich
    would print nothing at all). A reader that leaves early (`arena plan | head`) ends the
    printing as any other print does, with BrokenPipeError (on standard output, exit 141:
    llama_arena/cli.py); rich's own handler would exit 1."""

    def __init__(self, **options):
        if options.get("width") is not None:    # rich drops a width of its own on a dumb terminal (TERM=dumb)
            options.setdefault("height", 25)    # unless given a height too; nothing here pages
        super().__init__(**options)
        self.width = max(self.width, MIN_WIDTH)

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def print_plan(plan: Plan, console: Console, capacity: int | None = None) -> None:
    """The plan's instances as a table (the first SHOWN_ROWS: device, then host, each by first step), then its
    summary. Names are the user's: print them with a console whose markup is off."""
    table = Table(title=f"plan of {plan.schedule or 'CSV problem'}  ({plan.strategy})", show_lines=False)
    for column in ("instance", "tensor", "shape", "bytes", "offset", "steps", "memory"):
        table.add_column(column, justify="right" if column in ("bytes", "offset") else "left")
    rows = sorted(plan.buffers, key=lambda b: (b.memory != "device", b.first, b.name))
    # rows written out twice may share a step's name: then the steps' numbers tell them apart
    numbered = len(set(plan.steps)) < len(plan.steps)
    for b in rows[:SHOWN_ROWS]:
        steps = (f"{plan.steps[b.first]}..{plan.steps[b.last]}" if plan.steps else f"{b.first}..{b.last}") + \
            (f" ({b.first}..{b.last})" if numbered else "")
        shape = f"{b.dtype}[{', '.join(map(str, b.shape))}]" if b.shape is not None else ""
        offset = "-" if b.offset is None else f"{b.offset:,}"
        table.add_row(b.name, b.tensor, shape, f"{b.size:,}", offset, steps,
                      Text("host", style="cyan") if b.memory == "host" else "device")
    console.print(table)
    if len(rows) > SHOWN_ROWS:
        console.print(f"... {len(rows) - SHOWN_ROWS:,} more instances: --json or --out FILE lists them all")
    console.print(summary(plan, capacity))


def ratio(plan: Plan) -> str:
    """arena / lower bound to three decimals, or as many more as show an arena above its bound."""
    value = plan.arena / plan.lower_bound if plan.lower_bound else 1.0
    digits = 3
    while f"{value:.{digits}f}" == f"{1:.{digits}f}" and plan.arena > plan.lower_bound and digits < 12:
        digits += 1
    return f"{value:.{digits}f}"


def summary(plan: Plan, capacity: int | None = None) -> Table:
    """The plan's figures; `capacity`, the one --capacity asked for, which the plan fits."""
    t = Table.grid(padding=(0, 2))
    t.add_column(justify="left")
    t.add_column(justify="right")
    # the proof is of plans whose offsets keep the alignment (a CSV's own alignments may be smaller)
    of = f"offsets multiples of {plan.align:,}" if plan.align > 1 else ""
    rows = [("arena", _bytes(plan.arena)), ("lower bound", _bytes(plan.lower_bound)),
            ("arena / lower bound", ratio(plan)),
            ("proven optimal", (f"yes ({of})" if of else "yes") if plan.optimal else
             f"no (best bound {_bytes(plan.bound)}{', ' + of if of else ''})"),
            ("no-reuse total", _bytes(plan.no_reuse)), ("bytes saved", _bytes(plan.no_reuse - plan.arena)),
            ("host bytes", _bytes(plan.host_bytes))]
    if capacity is not None:
        rows.insert(0, ("capacity", f"{_bytes(capacity)}: fits"))
    if plan.dims:       # bound by --set or the model's (a schedule of another network may share its names)
        rows.insert(0, ("dims", " ".join(f"{k}={v}" for k, v in plan.dims.items())))
    for k, v in rows:
        t.add_row(k, v)
    return t


def estimate_table(cost: dict[str, int], dtype: str) -> Table:
    """What the run allocates in all: the weights, the arena that holds the KV cache, and what
    it holds outside the arena."""
    t = Table.grid(padding=(0, 2))
    t.add_column(justify="left")
    t.add_column(justify="right")
    rows = [(f"weights ({dtype})", cost["weight_bytes"]), ("KV cache (in the arena)", cost["kv_bytes"]),
            ("arena", cost["arena_bytes"]), ("RoPE tables", cost["rope_bytes"]), ("kernel workspace", cost["workspace_bytes"]),
            ("torch and the session (CPU)", cost["runtime_bytes"]), ("total", cost["total_bytes"])]
    for k, v in rows:
        if v or k == "total":
            t.add_row(k, _bytes(v))
    return t


def _bytes(n: int) -> str:
    return f"{n:,} ({mib(n)})" if n >= 2**10 else f"{n:,}"
