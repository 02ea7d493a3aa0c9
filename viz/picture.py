"""The arena map as a picture: steps on x, offset on y, one rectangle per device instance.

Persistent instances (the KV cache) sit at the bottom of the arena and can be a thousand
times larger than the activations; to one scale they would flatten the rest to a line.
So a plan that has them is drawn in two panels sharing x, each to its own scale: the
persistent region below, the rest of the arena above.

Each rectangle's SVG group has the id `inst-<i>`, i its index in `plan.buffers`, and a
`<title>` that browsers show on hover. matplotlib's Figure is used without pyplot, so
nothing depends on a display: PNG goes through Agg.
"""
from __future__ import annotations

import copy
import dataclasses
import html as html_escape
import io
import re
import threading
import warnings

import matplotlib
import matplotlib.style
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.patches import Patch, Rectangle
from matplotlib.text import Text
from matplotlib.transforms import TransformedPatchPath
from matplotlib.ticker import FuncFormatter, MaxNLocator

from planner.errors import show
from planner.report import ratio
from planner.place.problem import Sections
from planner.plan import Buffer, Plan

from .timeline import PALETTE, colors, ink, live_bytes, peaks, spans

DPI = 100
FONT = 8                       # points, the labels inside rectangles
NAMED_STEPS = 60               # up to this many steps, the x axis names each one
MAX_WIDTH = 24                 # inches: a figure of thousands of steps is no wider
PANEL_HEIGHTS = [3, 1]         # the arena above the persistent tensors, where both are drawn
AXES_SHARE = 0.75              # of the figure's width and height: the axes, beside the labels and legend
MIN_OUTLINED_PX = 4            # narrower rectangles go without their white outline, which would hide them
LEGEND_CHARS = 40              # a tensor's or step's name is cut to this many characters (the title's to twice)


# Names are drawn as written: '$' does not start a formula. A name in a script the font lacks
# is drawn with boxes, without a warning per missing glyph.
DRAWING = {"text.parse_math": False}


# matplotlib's settings (rc_context) and the warnings filters are the process's: one drawing at a
# time, else two threads drawing could leave the caller's settings changed
DRAWING_LOCK = threading.RLock()


def _drawing(draw):
    """`draw` under matplotlib's default settings, whatever the user's matplotlibrc says (TeX for
    every text, fonts not installed), and without a warning per missing glyph."""
    def drawn(*args, **kwargs):
        with DRAWING_LOCK, warnings.catch_warnings(), matplotlib.style.context("default"):
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            return draw(*args, **kwargs)
    return drawn


@_drawing
def png(plan: Plan) -> bytes:
    buf = io.BytesIO()
    figure(plan).savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


@_drawing
def svg(plan: Plan) -> str:
    """The SVG, with a hover title in each instance's group."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "llama-arena"}):   # stable ids: same plan, same file
        figure(plan).savefig(buf, format="svg", metadata={"Date": None})
    titles = {f"inst-{i}": tooltip(plan, b) for i, b in enumerate(plan.buffers) if b.memory == "device"}
    return re.sub(r'(<g id="(inst-\d+)">)', lambda m: f"{m[1]}<title>{html_escape.escape(titles[m[2]])}</title>",
                  buf.getvalue())


def html(plan: Plan) -> str:
    """One page, nothing to fetch: the SVG inline, a tooltip per instance on hover."""
    picture = svg(plan)
    picture = picture[picture.index("<svg"):]     # drop the XML prolog and doctype
    name = html_escape.escape(plan.schedule or "CSV problem")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>arena plan: {name}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
svg {{ max-width: 100%; height: auto; }}
g[id^="inst-"]:hover path {{ stroke: black !important; stroke-width: 2 !important; }}  /* over the inline style */
</style></head>
<body>
<h1>arena plan: {name}</h1>
<p>arena {plan.arena:,} bytes, lower bound {plan.lower_bound:,} bytes, strategy {html_escape.escape(plan.strategy)};
{len(plan.device())} instances in the arena, {len(plan.buffers) - len(plan.device())} in host memory.
Hover over an instance for its offset, bytes and steps.</p>
{picture}
</body></html>
"""


def tooltip(plan: Plan, b: Buffer) -> str:
    steps = f"steps {b.first}..{b.last}" + (f" ({plan.steps[b.first]} .. {plan.steps[b.last]})" if plan.steps else "")
    shape = f"\n{b.dtype}[{', '.join(map(str, b.shape))}]" if b.shape is not None else ""
    return f"{b.name} (tensor {b.tensor})\noffset {b.offset:,}, {b.size:,} bytes\n{steps}{shape}"


@_drawing
@matplotlib.rc_context(DRAWING)
def figure(plan: Plan) -> Figure:
    time = spans(plan)
    width = min(MAX_WIDTH, max(8, 4 + 0.4 * len(time)))       # inches
    # x is time less this: a CSV's times near 2^62 are exact only as integers; and as floats, for
    # a span of time past 2^64 is no integer matplotlib's arrays hold
    origin = time[0].first
    ticks = lambda x: f"{round(x) + origin:,}"     # noqa: E731 (the time at x)
    x_label = "step" if plan.steps else "time (the CSV's units)"
    sectioned = not plan.steps and _under_a_pixel(plan, time, width)
    if sectioned:
        plan, cuts = _by_section(plan)
        time, origin = spans(plan), 0
        ticks = lambda x: f"{cuts[round(x)]:,}" if 0 <= round(x) < len(cuts) else ""     # noqa: E731
        x_label = "time (the CSV's units), a column per section"
    device = [(i, b) for i, b in enumerate(plan.buffers) if b.memory == "device"]
    base = max((b.offset + b.size for _, b in device if b.persistent), default=0)
    split = 0 < base < plan.arena
    fig = Figure(figsize=(width, 6), dpi=DPI, layout="constrained")
    if split:
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=PANEL_HEIGHTS)
        panels = [(top, base, plan.arena), (bottom, 0, base)]
    else:
        top = bottom = fig.subplots()
        panels = [(top, 0, max(plan.arena, 1))]
    palette = colors(plan)
    for ax, lo, hi in panels:
        ax.set_xlim(0, float(time[-1].last + 1 - origin))
        ax.set_ylim(lo, hi + (hi - lo) * 0.04)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))     # offsets are whole bytes, even in an arena of 2
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{int(y):,}"))   # exact, like the plan
        ax.set_ylabel("offset (bytes)" if ax is top else "persistent")
    # the pixels a time unit and a byte of each panel take, about (before the layout): a rectangle
    # narrower or lower than MIN_OUTLINED_PX goes without its white outline, which would cover it
    unit_px = fig.get_figwidth() * DPI * AXES_SHARE / (time[-1].last + 1 - origin)
    shares = [h / sum(PANEL_HEIGHTS) for h in PANEL_HEIGHTS] if split else [1.0]
    byte_px = {ax: fig.get_figheight() * DPI * AXES_SHARE * h / (hi - lo) for (ax, lo, hi), h in zip(panels, shares)}
    _mark_bounds(plan, top, [ax for ax, _, _ in panels], time, origin)
    legend, title = _axes_text(plan, fig, top, bottom, ticks, x_label)
    if sectioned:       # times far apart: their labels long
        bottom.tick_params(axis="x", labelrotation=90)
    # lay out before the rectangles are added: whether a label fits depends on the final sizes, the
    # rectangles do not change them, and each draw of 10^4 rectangles took seconds
    fig.draw_without_rendering()
    _widen_under_title(fig, legend, title)
    drawn = {ax: [] for ax, _, _ in panels}
    # one clip path an axes: add_artist made each rectangle its own, 17 of 50 s at 10^5
    clips = {ax: TransformedPatchPath(ax.patch) for ax, _, _ in panels}
    for i, b in device:
        ax = bottom if split and b.persistent else top
        outline = 0.8 if min((b.last - b.first + 1) * unit_px, b.size * byte_px[ax]) >= MIN_OUTLINED_PX else 0
        # add_artist, not add_patch: the limits are set, and updating them took most of the time at 10^4
        ax.add_artist(Rectangle((float(b.first - origin), b.offset), float(b.last - b.first + 1), b.size,
                                facecolor=palette[b.tensor], edgecolor="white", linewidth=outline, gid=f"inst-{i}",
                                clip_path=clips[ax]))
        drawn[ax].append(b)
    for ax, buffers in drawn.items():
        _label(ax, buffers, palette, origin)
    return fig


def _under_a_pixel(plan: Plan, time, width: float) -> bool:
    """Whether, to a linear time axis `width` inches wide, some instance of a CSV plan is narrower
    than a pixel: one time far from the rest (a buffer at 10^12 among times under 100) leaves
    every other one a sliver."""
    span = time[-1].last + 1 - time[0].first
    narrowest = min((b.last - b.first + 1 for b in plan.device()), default=span)
    return narrowest * width * DPI * AXES_SHARE < span


def _by_section(plan: Plan) -> tuple[Plan, list[int]]:
    """The plan with each time in units of sections (those the terminal view shows: within one the
    live instances do not change), and the time where each section begins."""
    sections = Sections(plan.buffers)
    buffers = [copy.copy(b) for b in plan.buffers]
    for b in buffers:
        lo, hi = sections.span(b)
        b.first, b.last = lo, hi - 1
    return dataclasses.replace(plan, buffers=buffers), sections.cuts


def _mark_bounds(plan: Plan, top, axes, time, origin: int) -> None:
    """The lower-bound line, and the peak steps shaded, with a marker over each (x: time less `origin`)."""
    top.axhline(plan.lower_bound, color="black", linestyle="--", linewidth=1,
                label=f"lower bound {plan.lower_bound:,} B")
    if plan.arena != plan.lower_bound:
        top.axhline(plan.arena, color="dimgray", linestyle=":", linewidth=1, label=f"arena {plan.arena:,} B")
    live = live_bytes(plan, time)
    for k in peaks(live):
        for ax in axes:
            ax.axvspan(float(time[k].first - origin), float(time[k].last + 1 - origin), color="red", alpha=0.12, zorder=0,
                       linewidth=0)
        middle = time[k].first - origin + (time[k].last + 1 - time[k].first) / 2
        top.plot(middle, 1, marker="v", color="red", clip_on=False,
                 transform=top.get_xaxis_transform(), linestyle="none")
    top.plot([], [], marker="v", color="red", linestyle="none", label=f"peak: {max(live, default=0):,} B live")


def _axes_text(plan: Plan, fig: Figure, top, bottom, ticks, x_label: str) -> tuple[Legend, Text]:
    """The axes' labels (`ticks`: the time at x, as the plan has it), and the legend and title (returned)."""
    if plan.steps and len(plan.steps) <= NAMED_STEPS:
        bottom.set_xticks([i + 0.5 for i in range(len(plan.steps))], [show(s, LEGEND_CHARS) for s in plan.steps],
                          rotation=90, fontsize=7)
    else:
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        bottom.xaxis.set_major_formatter(FuncFormatter(lambda x, _: ticks(x)))
    bottom.set_xlabel(x_label)
    drawn = {b.tensor for b in plan.device()}
    handles = [Patch(color=c, label=show(t, LEGEND_CHARS)) for t, c in colors(plan).items() if t in drawn]
    if len(handles) > len(PALETTE):   # colors repeat: the labels inside the rectangles say which is which
        handles = []
    handles += top.get_legend_handles_labels()[0]
    legend = fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return legend, fig.suptitle(f"arena map of {show(plan.schedule or 'the CSV problem', 2 * LEGEND_CHARS)}\n{plan.arena:,} bytes, "
                                f"{ratio(plan)} x the lower bound ({plan.strategy})", fontsize=10, x=0.01, ha="left")


def _widen_under_title(fig: Figure, legend: Legend, title: Text) -> None:
    """Widen the figure where the title runs into the legend beside it (long offsets'
    tick labels leave the axes narrow, and the title is as wide as the arena's digits)."""
    overlap = title.get_window_extent().x1 + 10 - legend.get_window_extent().x0
    if overlap > 0:
        fig.set_figwidth(min(MAX_WIDTH, fig.get_figwidth() + overlap / fig.dpi))
        fig.draw_without_rendering()


def _label(ax, buffers: list[Buffer], palette: dict[str, str], origin: int) -> None:
    """Name each rectangle where its name fits, across it or else along it (x: time less `origin`).
    The rectangles' sizes in pixels come from one transform of all their corners."""
    if not buffers:
        return
    low = ax.transData.transform([(float(b.first - origin), float(b.offset)) for b in buffers])
    high = ax.transData.transform([(float(b.last + 1 - origin), float(b.offset + b.size)) for b in buffers])
    need_h = FONT * 1.3 * DPI / 72
    for b, (x0, y0), (x1, y1) in zip(buffers, low, high):
        width, height = x1 - x0, y1 - y0
        need_w = len(b.name) * FONT * 0.62 * DPI / 72 + 4
        rotation = 0 if width >= need_w and height >= need_h else \
            90 if height >= need_w and width >= need_h else None
        if rotation is not None:
            ax.text(b.first - origin + (b.last - b.first + 1) / 2, b.offset + b.size / 2, b.name, rotation=rotation,
                    ha="center", va="center", fontsize=FONT, color=ink(palette[b.tensor]), clip_on=True)
