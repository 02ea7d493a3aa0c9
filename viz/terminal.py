"""The plan in the terminal: the lifetime table in the seed's form, then the arena map.

Both share one list of rows: a row per step (or per section of a CSV problem). Layers
outside the ones shown are folded, each run of them into one row, so a 30-layer model
reads in one screen; the map wraps into several chunks when its columns do not fit.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Iterator

from rich import box
from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.table import Table
from rich.text import Text

from planner.errors import ArenaError, plural
from planner.lifetimes import Lifetimes
from planner.plan import Buffer, Plan
from planner.report import summary

from .timeline import Span, colors, ink, live_bytes, overlapped, spans, tensors

SYMBOL_STYLES = {"+": "bold green", "o": "dim", "m": "magenta", "r": "cyan", "w": "yellow", "x": "bold red"}
FOLDED = "⋮"
MIXED = -1            # a map cell of a folded row that several instances share over time
CELL_WIDTH = (2, 8)   # characters per map column, fewest and most
# The most lines a map may take: each chunk of columns repeats every offset band, so a CSV
# problem of 10^4 buffers made a million lines (and three minutes). Past it the pictures
# draw the map; a 30-layer model with every layer unfolded takes under 200.
MAP_LINES = 2_000
# The most rows the lifetime table prints (a CSV problem of 10^5 buffers has 140,000 sections of
# time), and the most tensors its legend names; the pictures and the trace show them all.
TABLE_ROWS = 2_000
LEGEND_TENSORS = 200
# Without colour (a pipe, a file, NO_COLOR) a block is filled with a shade, each unlike the
# shades of the blocks it touches where four allow it: a blank block would read as free bytes.
SHADES = "░▒▓█"
# The glyphs above and below as a console that cannot hold them prints them (PYTHONIOENCODING=ascii,
# a Latin-1 locale), one character for one so every column stays where it was.
ASCII = str.maketrans("⋮░▒▓█◀┬▲…┆", ":.:*#<+^~|")


@dataclass
class Row:
    span: Span                     # the times it covers, and its label
    live: int                      # bytes live; the most over the steps of a folded row
    kind: str | None = None        # "kernel" or "graph"
    cells: dict[str, str] = field(default_factory=dict)
    layer: int | None = None
    block: int | None = None       # the repeat block of its layer
    folded: int = 0                # steps folded into this row


def render(console: Console, plan: Plan, lifetimes: Lifetimes | None, keep: set[int] | None = None) -> None:
    """Print the table and the map; `keep`: the repeated steps to show unfolded (None: all)."""
    if console.options.ascii_only:      # (rich draws its own tables' lines in ASCII there)
        with console.capture() as captured:
            _render(console, plan, lifetimes, keep)
        console.file.write(captured.get().translate(ASCII))
    else:
        _render(console, plan, lifetimes, keep)


def _render(console: Console, plan: Plan, lifetimes: Lifetimes | None, keep: set[int] | None) -> None:
    all_rows = step_rows(plan, lifetimes)
    rows = fold(all_rows, keep)
    top = max((r.live for r in all_rows), default=0)
    plain = not console.color_system or console.no_color
    console.print(lifetime_table(plan, rows, top, console.width, saved=lifetimes is None and bool(plan.steps)))
    console.print()
    console.print(Text(f"arena map of {plan.schedule or 'the CSV problem'}: offset (y) over "
                       f"{'steps' if plan.steps else 'time'} (x)", style="bold"))
    for line in arena_map(plan, rows, top, console.width, plain):
        if line.no_wrap is False:       # a note in place of the map: it wraps, as prose does
            console.print(line)
        else:
            console.print(line, no_wrap=True, overflow="crop")
    console.print(legend(plan, plain))
    console.print(summary(plan))


def step_rows(plan: Plan, lifetimes: Lifetimes | None) -> list[Row]:
    """One row per span. Cells of a schedule are as written, plus `o` where an instance is
    live but its cell is blank (the table's own rule), so every lifetime reads unbroken."""
    time = spans(plan)
    rows = []
    for span, live, instances in zip(time, live_bytes(plan, time), _live_by_tensor(plan.buffers, time)):
        if lifetimes is None:
            # where several instances of a tensor are live, the last in the plan's order speaks
            cells = {t: _csv_cell(group[max(group)], span) for t, group in instances.items()}
            rows.append(Row(span, live, cells=cells))
        else:
            step = lifetimes.steps[span.first]
            cells = {**dict.fromkeys(instances, "o"), **step.cells}
            rows.append(Row(span, live, step.kind, cells, step.layer, step.block))
    return rows


def _live_by_tensor(buffers: list[Buffer], time: list[Span]) -> Iterator[dict[str, dict[int, Buffer]]]:
    """For each span in turn, {tensor: {index in `buffers`: instance}} of the instances live
    during it: one dict, updated in place before the next span. An instance joins at the
    first span it overlaps and leaves after its last, so no span scans every instance."""
    joins, leaves = [[] for _ in time], [[] for _ in time]
    for i, covered in enumerate(overlapped(time, buffers)):
        if covered:
            joins[covered.start].append(i)
            leaves[covered.stop - 1].append(i)
    live: dict[str, dict[int, Buffer]] = {}
    for k in range(len(time)):
        for i in joins[k]:
            live.setdefault(buffers[i].tensor, {})[i] = buffers[i]
        yield live
        for i in leaves[k]:
            group = live[buffers[i].tensor]
            del group[i]
            if not group:
                del live[buffers[i].tensor]


def _csv_cell(b: Buffer, span: Span) -> str:
    """`+` where the instance begins within the span (`+m` in host memory), `x` where it ends,
    else `o`; a persistent instance is never created or destroyed, so `o` throughout."""
    if b.persistent:
        return "o"
    begins = ("+m" if b.memory == "host" else "+") if b.first >= span.first else ""
    return begins + ("x" if b.last <= span.last else "") or "o"


def shown_steps(lifetimes: Lifetimes | None, layers: range | None) -> set[int] | None:
    """The steps to show unfolded (None: all): by default the first and the last layer of each
    long repeat block; with `layers`, those layers of every block."""
    blocks = _repeat_blocks(lifetimes.steps) if lifetimes else []
    present = sorted({s.layer for block in blocks for s in block})
    if layers is None:
        if all(block[-1].layer < 2 for block in blocks):
            return None
        return {s.index for block in blocks for s in block if s.layer in (0, block[-1].layer)}
    if not present:
        raise ArenaError("--layers: this plan has no repeated layers (nothing to fold)")
    if layers.start < present[0] or layers.stop - 1 > present[-1]:
        asked = f"{layers.start}" if len(layers) == 1 else f"{layers.start}-{layers.stop - 1}"
        raise ArenaError(f"--layers {asked}: the schedule has layers "
                         f"{present[0]}-{present[-1]}")
    return {s.index for block in blocks for s in block if s.layer in layers}


def _repeat_blocks(steps) -> list[list]:
    """The unrolled steps of each repeat block, in order."""
    blocks: dict[int, list] = {}
    for step in steps:
        if step.block is not None:
            blocks.setdefault(step.block, []).append(step)
    return list(blocks.values())


def _numbers(row: Row) -> str:
    """The step numbers a row covers: '7', or '3-29' for a folded run."""
    return f"{row.span.first}-{row.span.last}" if row.span.last != row.span.first else str(row.span.first)


def fold(rows: list[Row], keep: set[int] | None) -> list[Row]:
    """Each run of rows of repeated steps not in `keep` (step numbers) becomes one folded row.
    A run ends where the next repeat block begins."""
    if keep is None:
        return rows
    out, run = [], []
    for row in rows + [None]:
        foldable = row is not None and row.layer is not None and row.span.first not in keep
        if run and (not foldable or row.block != run[-1].block):
            lo, hi = run[0].layer, run[-1].layer
            label = f"{FOLDED} layers {lo}-{hi}" if hi != lo else f"{FOLDED} layer {lo}"
            live = {t for r in run for t in r.cells}
            out.append(Row(Span(run[0].span.first, run[-1].span.last, label), max(r.live for r in run),
                           cells={t: FOLDED for t in live}, folded=len(run)))
            run = []
        if foldable:
            run.append(row)
        elif row is not None:
            out.append(row)
    return out


def lifetime_table(plan: Plan, rows: list[Row], top: int, width: int, saved: bool = False) -> Table:
    """The table; `saved`: a schedule's plan read back (arena viz --plan), which keeps each
    instance's lifetime, not the cells, so the rows show `+`, `o` and `x` alone, and say so."""
    names = tensors(plan.buffers)
    kinds = any(r.kind for r in rows)
    headers = _headers(names, width - _fixed_width(rows, kinds, bool(plan.steps)))
    title = (f"lifetime table of {plan.schedule} ({len(plan.steps)} {plural(len(plan.steps), 'step')})" if plan.steps
             else f"lifetime table of the CSV problem ({len(rows)} {plural(len(rows), 'section')} of time)")
    notes = [] if headers or not names else [f"{len(names):,} {plural(len(names), 'tensor')} do not fit in {width} "
                                             "columns: see the arena map"]
    if saved:
        notes.append("from a saved plan: each instance's lifetime, not the schedule's cells")
    if len(rows) > TABLE_ROWS:
        notes.append(f"the first {TABLE_ROWS:,} rows of {len(rows):,}: --html, --svg or --trace show them all")
        rows = rows[:TABLE_ROWS]
    caption = Text("; ".join(notes), style="table.caption") if notes else None
    # names are the user's: rich reads a plain string as markup ('[red]') and emoji codes (':x:'), a Text never
    table = Table(title=Text(title, style="table.title"), caption=caption, box=box.SIMPLE_HEAD, padding=0)
    if plan.steps:
        table.add_column("#", justify="right", style="dim", no_wrap=True)
    table.add_column("step" if plan.steps else "time", no_wrap=True)
    if kinds:
        table.add_column("graph", no_wrap=True)
    for header in headers or []:
        table.add_column(Text(header), justify="center", no_wrap=True, min_width=_header_width(header) + 2)
    table.add_column("live bytes", justify="right", no_wrap=True)
    for r in rows:
        peak = r.live == top and top > 0
        cells = [Text(r.span.label, style="bold red" if peak else "dim italic" if r.folded else "")]
        if plan.steps:
            cells.insert(0, Text(_numbers(r)))
        if kinds:
            cells.append(Text(r.kind or "", style="dim" if r.kind == "kernel" else "bold"))
        cells += [symbols(r.cells.get(t, "")) for t in (names if headers else [])]
        cells.append(Text(f"{r.live:,}" + (" ◀ peak" if peak else ""), style="bold red" if peak else ""))
        table.add_row(*cells)
    return table


def _fixed_width(rows: list[Row], kinds: bool, numbered: bool) -> int:
    """Columns taken by all but the tensors (#, step, graph, live bytes) and the box's edges
    and separators, one each."""
    number = max(len(_numbers(r)) + 1 for r in rows)
    step = max(cell_len(r.span.label) for r in rows) + 1
    live = len(f"{max(r.live for r in rows):,} ◀ peak") + 2
    return (number if numbered else 0) + step + (len("kernel") + 1 if kinds else 0) + live + 1


def _headers(names: list[str], room: int) -> list[str] | None:
    """Tensor column headers that fit in `room` columns: the names, else the names broken
    after each '_' (next_ / tokens), else None (the table leaves the tensors out)."""
    for headers in (names, [t[:-1].replace("_", "_\n") + t[-1] for t in names]):
        if sum(_header_width(h) + 3 for h in headers) <= room:
            return headers
    return None


def _header_width(header: str) -> int:
    return max(2, *map(cell_len, header.split("\n")))     # cells hold up to 2 symbols; CJK takes 2 cells a character


def symbols(cell: str) -> Text:
    text = Text()
    for s in cell:
        text.append(s, SYMBOL_STYLES.get(s, "dim"))
    return text


def arena_map(plan: Plan, rows: list[Row], top: int, width: int, plain: bool = False) -> list[Text]:
    """Offset bands (y, highest on top) over rows (x): each instance a labeled block, colored,
    or (`plain`: without colour) filled with a shade."""
    device = plan.device()
    if not device:
        return [Text("no instance lives in the arena", style="dim")]
    edges = sorted({b.offset for b in device} | {b.offset + b.size for b in device})
    margin = max(len(f"{edges[-1]:,}"), 4) + 1
    if width - margin < CELL_WIDTH[0]:
        return [Text(f"offsets up to {edges[-1]:,} leave no room for the map in {width} columns (it needs "
                     f"{margin + CELL_WIDTH[0]}); --png, --svg or --html draw it", style="dim", no_wrap=False)]
    cell = max(CELL_WIDTH[0], min(CELL_WIDTH[1], (width - margin) // len(rows)))
    per_chunk = max(1, (width - margin) // cell)
    size = -(-len(rows) // per_chunk) * (len(edges) + 2)
    if size > MAP_LINES:
        return [Text(f"{len(device):,} instances in {len(edges) - 1:,} offset bands over {len(rows):,} columns "
                     f"would take {size:,} lines (at most {MAP_LINES:,} here); --png, --svg or --html draw "
                     "the map", style="dim", no_wrap=False)]
    grid = _grid(device, rows, edges)
    shades = _shades(grid, len(device)) if plain else None
    middle = [(bisect.bisect_left(edges, b.offset) + bisect.bisect_left(edges, b.offset + b.size)) // 2
              for b in device]
    palette, lines = colors(plan), []
    for start in range(0, len(rows), per_chunk):
        columns = range(start, min(start + per_chunk, len(rows)))
        labels = _labels(device, grid, middle, columns, cell)
        lines.append(Text(f"{edges[-1]:,}".rjust(margin - 1) + " ┬ arena", style="dim"))
        lines += [_band(j, edges, grid, columns, cell, margin, device, labels, palette, shades)
                  for j in reversed(range(len(edges) - 1))]
        lines.append(_ruler(margin, "step" if plan.steps else "time", cell,
                            [FOLDED if rows[k].folded else str(rows[k].span.first) for k in columns], "dim"))
        if any(rows[k].live == top for k in columns):
            lines.append(_ruler(margin, "peak", cell, ["▲" if rows[k].live == top else "" for k in columns],
                                "bold red"))
    return lines


def _grid(device, rows: list[Row], edges: list[int]) -> list[list[int | None]]:
    """grid[band][column]: the index of the device instance there, None (free) or MIXED."""
    grid = [[None] * len(rows) for _ in edges[:-1]]
    firsts, lasts = [r.span.first for r in rows], [r.span.last for r in rows]
    for i, b in enumerate(device):
        bands = range(bisect.bisect_left(edges, b.offset), bisect.bisect_left(edges, b.offset + b.size))
        for k in range(bisect.bisect_left(lasts, b.first), bisect.bisect_right(firsts, b.last)):
            whole = b.first <= rows[k].span.first and rows[k].span.last <= b.last
            for j in bands:
                if whole or grid[j][k] is None:
                    grid[j][k] = i if whole else MIXED
    return grid


def _labels(device, grid, middle: list[int], columns: range, cell: int) -> dict[tuple[int, int], str]:
    """{(band, column): name}: each instance's name once, on its middle band, cut to fit.
    The chunk's cells are walked once, rather than its columns for every instance: a map of
    thousands of layers has thousands of both."""
    runs: dict[int, list[int]] = {}     # instance -> [its first column here, its columns here]
    for j, band in enumerate(grid):
        for k in columns:
            i = band[k]
            if i is not None and i != MIXED and middle[i] == j:
                runs.setdefault(i, [k, 0])[1] += 1
    labels = {}
    for i, (first, count) in runs.items():
        name, room = device[i].name, count * cell
        if cell_len(name) > room:     # counted in terminal cells: a CJK character or an emoji takes two
            name = set_cell_size(name, room - 1).rstrip() + "…" if room >= 3 else ""
        labels[(middle[i], first)] = name
    return labels


def _band(j, edges, grid, columns, cell, margin, device, labels, palette, shades) -> Text:
    line = Text(f"{edges[j]:,}".rjust(margin - 1) + " ", style="dim")
    k = columns.start
    while k < columns.stop:
        i = grid[j][k]
        if i is None or i == MIXED:
            line.append((" " if i is None else "┆").center(cell), style="dim")
            k += 1
            continue
        run = 1
        while k + run < columns.stop and grid[j][k + run] == i:
            run += 1
        tensor, name = device[i].tensor, labels.get((j, k), "")
        fill = shades[i] if shades else " "
        pad = run * cell - cell_len(name)
        if name and pad >= (4 if shades else 2):    # a space each side, and some fill beside it
            name, pad = f" {name} ", pad - 2
        line.append(fill * (pad // 2) + name + fill * (pad - pad // 2),
                    style=None if shades else _block_style(palette[tensor]))
        k += run
    return line


def _shades(grid, count: int) -> list[str]:
    """A shade per instance, unlike those of the instances it touches on the map (above, below,
    beside) where SHADES allow it: each takes the first its neighbours so far do not have."""
    touching: list[set[int]] = [set() for _ in range(count)]
    for j, band in enumerate(grid):
        for k, i in enumerate(band):
            if i is None or i == MIXED:
                continue
            for other in (band[k + 1] if k + 1 < len(band) else None, grid[j + 1][k] if j + 1 < len(grid) else None):
                if other is not None and other != MIXED and other != i:
                    touching[i].add(other)
                    touching[other].add(i)
    shades: list[str] = []
    for i in range(count):
        taken = {shades[o] for o in touching[i] if o < i}
        shades.append(next((s for s in SHADES if s not in taken), SHADES[i % len(SHADES)]))
    return shades


def _block_style(color: str) -> str:
    return f"{ink(color)} on {color}"


def _ruler(margin: int, name: str, cell: int, marks: list[str], style: str) -> Text:
    """A line under the map: `name` in the margin, then each column's mark wherever it fits,
    a space apart. One-character marks (a folded run, a peak) go first: they always fit."""
    chars = [" "] * (len(marks) * cell)
    taken = [False] * (len(chars) + 1)
    for n in sorted(range(len(marks)), key=lambda n: (len(marks[n]) > 1, n)):
        at, mark = n * cell, marks[n]
        end = at + len(mark)
        if mark and end <= len(chars) and not any(taken[max(0, at - 1):end + 1]):
            chars[at:end] = mark
            taken[at:end] = [True] * len(mark)
    return Text(name.rjust(margin - 1) + " " + "".join(chars), style=style)


def legend(plan: Plan, plain: bool = False) -> Text:
    """Each tensor's color (none when `plain`), shape and memory: the seed's type row, which the
    table leaves out. The first LEGEND_TENSORS tensors, then how many more."""
    text = Text()
    first, memories = {}, {}
    for b in plan.buffers:
        first.setdefault(b.tensor, b)
        memories.setdefault(b.tensor, set()).add(b.memory)
    palette = colors(plan)
    for tensor, color in list(palette.items())[:LEGEND_TENSORS]:
        b = first[tensor]
        text.append("  ")
        if not plain:
            text.append("  ", style=f"on {color}")
            text.append(" ")
        text.append(tensor)
        if b.shape is not None:
            text.append(f" {b.dtype}[{','.join(map(str, b.shape))}]", style="dim")
        if "host" in memories[tensor]:  # a tensor created again (`+` after `x`) may change memory
            text.append(" host" if memories[tensor] == {"host"} else " host and arena", style="magenta")
    if len(palette) > LEGEND_TENSORS:
        text.append(f"  … and {len(palette) - LEGEND_TENSORS:,} more tensors", style="dim")
    return text
