"""`arena`: print memory plans, convert seed tables, run inference in the arena, draw lifetimes."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import csvio, graph, markdown, schedule
from .check import PlanInvalid
from .errors import ArenaError
from .lifetimes import DEFAULT_ALIGN, Lifetimes, bind
from .models import PRESETS, model_dims, parse_sets
from .output import write_atomic
from .plan import CHOICES, Plan, place, plan_lifetimes

DTYPES = ["f32", "f16", "bf16"]


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    err = Console(stderr=True)
    try:
        return args.handler(args)
    except ArenaError as e:
        for fault in e.faults:
            err.print(f"[bold red]arena: error:[/] {fault}", highlight=False, markup=True, soft_wrap=True)
        return 2
    except PlanInvalid as e:   # a planner bug, never the user's input: say so plainly
        err.print(f"[bold red]arena: internal error, the plan failed its check:[/] {e}")
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arena", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plan = sub.add_parser("plan", help="plan a schedule (or a minimalloc CSV) and print the arena",
                          description="Place every buffer instance of a lifetime table in one arena.")
    add_plan_inputs(plan)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON instead of tables")
    plan.add_argument("--out", metavar="FILE", help="also save the plan: JSON, or id,lower,upper,size,offset for --csv")
    plan.add_argument("--graph", metavar="FILE.graphml", help="write the interference graph (networkx GraphML)")
    plan.set_defaults(handler=cmd_plan)

    convert = sub.add_parser("convert", help="print the YAML of a markdown lifetime table (the seed's form)")
    convert.add_argument("table", metavar="TABLE.md")
    convert.set_defaults(handler=cmd_convert)

    from executor import cli as run_cli   # registers `arena run`; torch is imported only when it runs
    run_cli.add_parser(sub)
    from viz import cli as viz_cli
    viz_cli.add_parser(sub)
    return parser


def add_plan_inputs(parser: argparse.ArgumentParser) -> None:
    """The options that say what to plan, shared by `plan` and `viz`."""
    parser.add_argument("schedule", nargs="?", metavar="SCHEDULE",
                        help="a schedule YAML, a markdown lifetime table (.md/.txt), or the name of one in "
                             f"schedules/ ({', '.join(sorted(p.stem for p in schedule.SCHEDULES.glob('*.yaml')))})")
    parser.add_argument("--csv", metavar="PROBLEM.csv", help="plan minimalloc's id,lower,upper,size instead")
    parser.add_argument("--model", default="smollm2-135m",
                        help=f"dimensions from a preset ({', '.join(PRESETS)}), a config.json or a .gguf "
                             "(default: smollm2-135m)")
    parser.add_argument("--set", action="append", default=[], metavar="DIM=N",
                        help="bind a dimension, e.g. --set n=512 --set nctx=4096 (repeatable)")
    parser.add_argument("--dtype", choices=DTYPES, default="f32", help="element type of Ta activations (default f32)")
    parser.add_argument("--align", type=int, default=None,
                        help=f"byte alignment of every offset (default {DEFAULT_ALIGN}; 1 for --csv)")
    parser.add_argument("--strategy", choices=CHOICES, default="auto", help="offset assignment (default auto)")
    parser.add_argument("--time-limit", type=float, default=10.0, metavar="S",
                        help="seconds a searching strategy may take (default 10)")


def plan_from_args(args) -> tuple[Lifetimes | None, Plan]:
    """The plan the options ask for; Lifetimes too when it comes from a schedule."""
    if args.time_limit <= 0:
        raise ArenaError(f"--time-limit must be a positive number of seconds, not {args.time_limit:g}")
    if args.csv and args.schedule:
        raise ArenaError("give a SCHEDULE or --csv PROBLEM.csv, not both")
    if args.csv:
        align = 1 if args.align is None else args.align
        return None, place(csvio.read_problem(args.csv, align), args.strategy, align, [], args.time_limit)
    if not args.schedule:
        raise ArenaError("say what to plan: a SCHEDULE (e.g. schedules/llama.yaml) or --csv PROBLEM.csv")
    lifetimes = bind(load_schedule(args.schedule), {**model_dims(args.model), **parse_sets(args.set)},
                     args.dtype, DEFAULT_ALIGN if args.align is None else args.align)
    _check_sets(args, lifetimes)
    return lifetimes, plan_lifetimes(lifetimes, args.strategy, args.time_limit)


def load_schedule(name: str) -> schedule.Schedule:
    path = Path(name)
    if not path.exists() and (schedule.SCHEDULES / f"{name}.yaml").exists():
        path = schedule.SCHEDULES / f"{name}.yaml"
    if path.suffix in (".md", ".txt"):
        return markdown.convert(path)
    return schedule.load(path)


def _check_sets(args, lifetimes: Lifetimes) -> None:
    unknown = sorted(set(parse_sets(args.set)) - set(lifetimes.dims))
    if unknown:
        raise ArenaError(*[f"--set {d}: the schedule has no dimension '{d}' "
                           f"(it has {', '.join(lifetimes.dims)})" for d in unknown])


def cmd_plan(args) -> int:
    _, plan = plan_from_args(args)
    if args.graph:
        write_atomic(args.graph, graph.graphml(graph.interference_graph(plan.buffers)), "--graph")
    if args.out:
        write_atomic(args.out, csvio.solution_csv(plan) if args.csv else plan.to_json() + "\n")
    if args.json:
        print(plan.to_json())
    else:
        # piped output keeps whole rows rather than folding them to 80 columns
        print_plan(plan, Console(width=None if sys.stdout.isatty() else 160))
    return 0


def cmd_convert(args) -> int:
    print(schedule.to_yaml(markdown.convert(args.table)), end="")
    return 0


def print_plan(plan: Plan, console: Console) -> None:
    table = Table(title=f"plan of {plan.schedule or 'CSV problem'}  ({plan.strategy})", show_lines=False)
    for column in ("instance", "tensor", "shape", "bytes", "offset", "steps", "memory"):
        table.add_column(column, justify="right" if column in ("bytes", "offset") else "left")
    for b in sorted(plan.buffers, key=lambda b: (b.memory != "device", b.first, b.name)):
        steps = (f"{plan.steps[b.first]}..{plan.steps[b.last]}" if plan.steps else f"{b.first}..{b.last}")
        shape = f"{b.dtype}[{', '.join(map(str, b.shape))}]" if b.shape else ""
        offset = "-" if b.offset is None else f"{b.offset:,}"
        table.add_row(b.name, b.tensor, shape, f"{b.size:,}", offset, steps,
                      "[cyan]host[/]" if b.memory == "host" else "device")
    console.print(table)
    console.print(summary(plan))


def summary(plan: Plan) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(justify="left")
    t.add_column(justify="right")
    ratio = plan.arena / plan.lower_bound if plan.lower_bound else 1.0
    rows = [("arena", _bytes(plan.arena)), ("lower bound", _bytes(plan.lower_bound)),
            ("arena / lower bound", f"{ratio:.3f}"),
            ("proven optimal", "yes" if plan.optimal else f"no (best bound {_bytes(plan.bound)})"),
            ("no-reuse total", _bytes(plan.no_reuse)), ("bytes saved", _bytes(plan.no_reuse - plan.arena)),
            ("host bytes", _bytes(plan.host_bytes))]
    for k, v in rows:
        t.add_row(k, v)
    return t


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n:,} ({n / scale:.2f} {unit})"
    return f"{n:,}"


if __name__ == "__main__":
    sys.exit(main())
