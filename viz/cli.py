"""`arena viz`: the plan of a schedule (or a minimalloc CSV) as a terminal view, pictures, a trace."""
from __future__ import annotations

import os

import re

from planner.errors import ArenaError, note
from planner.options import add_plan_inputs, input_files, integer, plan_from_args, set_nctx
from planner.output import check_targets, write_all
from planner.progress import Waiting
from planner.report import MIN_WIDTH, output_console
from planner.saved import load_plan

from . import terminal, trace


def add_parser(sub) -> None:
    viz = sub.add_parser("viz", help="draw a plan: lifetime table and arena map, PNG/SVG/HTML, trace JSON",
                         description="Draw the plan of a schedule or a minimalloc CSV, or a plan saved by "
                                     "arena plan (--plan). Without a file option it prints the lifetime table and "
                                     "the arena map; with any, it writes them.")
    add_plan_inputs(viz)
    viz.add_argument("--plan", metavar="FILE",
                     help="draw a saved plan, checked first: the JSON of arena plan --out PLAN.json (or --json), "
                          "or a CSV solution (arena plan --csv P --out S.csv, or minimalloc's)")
    viz.add_argument("--layers", metavar="A-B",
                     help="show these layers in the terminal, fold the others (default: the first and the last)")
    viz.add_argument("--width", type=integer, metavar="COLUMNS", help="terminal width to draw for (default: detected)")
    viz.add_argument("--png", metavar="FILE", help="write the arena map as a PNG picture")
    viz.add_argument("--svg", metavar="FILE", help="write the arena map as an SVG picture")
    viz.add_argument("--html", metavar="FILE", help="write a self-contained page: the map with a tooltip per instance")
    viz.add_argument("--trace", metavar="FILE.json", help="write the plan as Chrome trace events (Perfetto)")
    viz.set_defaults(handler=run)


def run(args) -> int:
    layers = parse_layers(args.layers) if args.layers is not None else None
    if args.width is not None and args.width < MIN_WIDTH:
        raise ArenaError(f"--width {args.width}: draw for at least {MIN_WIDTH} columns")
    files = output_files(args)
    shaping = [option for option, value in (("--layers", args.layers), ("--width", args.width)) if value is not None]
    if files and shaping:   # else they would be ignored without a word
        raise ArenaError(f"{shaping[0]} shapes the terminal view, which {next(iter(files))} replaces; give one or the other")
    if args.plan is None:
        set_nctx(args)
    lifetimes, plan = (None, saved_plan(args)) if args.plan is not None else plan_from_args(args)
    keep = terminal.shown_steps(lifetimes, layers)
    if not files:
        terminal.render(output_console(args.width), plan, lifetimes, keep)
        return 0
    outputs = []
    if files.keys() - {"--trace"}:
        # matplotlib loads only when a picture is asked for, drawing files through Agg: another
        # environment's MPLBACKEND (a notebook's inline backend) would fail its import
        os.environ["MPLBACKEND"] = "agg"
        from . import picture
        for option, draw in (("--png", picture.png), ("--svg", picture.svg), ("--html", picture.html)):
            if option in files:
                with Waiting(f"drawing the {option[2:]}", None):
                    outputs.append((option, files[option], draw(plan)))
    if "--trace" in files:
        outputs.append(("--trace", files["--trace"], trace.plan_trace(plan)))
    write_all(outputs)
    for option, path in files.items():     # on stderr: stdout may be one of the files (/dev/stdout)
        note(f"wrote {path} ({option[2:]})")
    return 0


def saved_plan(args):
    """The plan of --plan's file; the options that make a plan would be ignored, so they are refused."""
    made = [option for option, given in (("SCHEDULE", args.schedule is not None), ("--csv", args.csv is not None),
                                         ("--model", args.model is not None), ("--set", args.set),
                                         ("--dtype", args.dtype is not None), ("--align", args.align is not None),
                                         ("--strategy", args.strategy != "auto"), ("--time-limit", args.time_limit != 10),
                                         ("--capacity", args.capacity is not None), ("--nctx", args.nctx is not None))
            if given]
    if made:
        raise ArenaError(f"{made[0]} makes a plan; --plan {args.plan} draws the one saved there: give one or the other")
    if args.plan == "":
        raise ArenaError("--plan: the path is empty")
    return load_plan(args.plan)


def output_files(args) -> dict[str, str]:
    """{option: path} of the files asked for, each checked before any is drawn or written,
    so that one bad path leaves no file at all."""
    files = {option: path for option, path in (("--png", args.png), ("--svg", args.svg), ("--html", args.html),
                                                ("--trace", args.trace)) if path is not None}
    check_targets(files, {"--plan": args.plan} if args.plan is not None else input_files(args))
    return files


def parse_layers(text: str) -> range:
    # ASCII digits, few enough for int(): '٣' and a 5000-digit number are no layer
    m = re.fullmatch(r"\s*([0-9]{1,9})\s*(?:-\s*([0-9]{1,9})\s*)?", text, re.ASCII)
    if not m or (m[2] and int(m[2]) < int(m[1])):
        raise ArenaError(f"--layers '{text}': expected a layer or a range such as 0-1")
    return range(int(m[1]), int(m[2] or m[1]) + 1)
