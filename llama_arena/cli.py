"""`arena`: print memory plans, convert seed tables, run inference in the arena, draw lifetimes."""
from __future__ import annotations

import argparse

from rich.console import Console

from executor import cli as run_cli
from planner import cli as plan_cli
from planner.check import PlanInvalid
from planner.errors import ArenaError
from viz import cli as viz_cli

from . import __version__


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
    parser.add_argument("--version", action="version", version=f"arena {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plan_cli.add_parsers(sub)
    run_cli.add_parser(sub)   # torch is imported only when `arena run` runs
    viz_cli.add_parser(sub)
    return parser
