"""`arena plan` and `arena convert`: print memory plans, convert seed tables."""
from __future__ import annotations

import sys

from rich.console import Console

from . import csvio, graph, markdown, schedule
from .options import add_plan_inputs, plan_from_args
from .output import check_target, write_atomic
from .report import print_plan


def add_parsers(sub) -> None:
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


def cmd_plan(args) -> int:
    for path, option in ((args.out, "--out"), (args.graph, "--graph")):
        if path is not None:
            check_target(path, option)          # before any planning or writing
    _, plan = plan_from_args(args)
    if args.graph:
        write_atomic(args.graph, graph.graphml(graph.interference_graph(plan.buffers)), "--graph")
    if args.out:
        write_atomic(args.out, csvio.solution_csv(plan) if args.csv else plan.to_json() + "\n")
    if args.json:
        print(plan.to_json())
    else:
        # piped output keeps whole rows rather than folding them to 80 columns
        print_plan(plan, Console(width=None if sys.stdout.isatty() else 160, markup=False))
    return 0


def cmd_convert(args) -> int:
    print(schedule.to_yaml(markdown.convert(args.table)), end="")
    return 0
