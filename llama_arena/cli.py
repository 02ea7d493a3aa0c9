"""`arena`: print memory plans, convert seed tables, run inference in the arena, draw lifetimes."""
from __future__ import annotations

import argparse
import errno
import os
import sys

from rich.text import Text

from executor import cli as run_cli
from planner import cli as plan_cli
from planner.check import PlanInvalid
from planner.errors import ArenaError, CapacityMissed, WriteFailed, shown, system_failure, unencodable
from planner.output import drop_stdout
from planner.report import OutputConsole
from viz import cli as viz_cli

from . import version

SHOWN_FAULTS = 20      # one screen; the count of the rest follows


def main(argv=None) -> int:
    code, lines = _run(build_parser(), argv)
    # markup off: messages quote the user's names, and `[x]` in a name is not a style
    err = OutputConsole(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True)
    try:
        for line in lines:
            err.print(line)
    except (OSError, ValueError):   # standard error full or closed: the exit code still tells
        pass
    return code


def _run(parser: argparse.ArgumentParser, argv) -> tuple[int, list[Text]]:
    """The command's exit code, and the lines that say why it failed."""
    def error(text: str, head: str = "arena: error: ") -> Text:
        return Text.assemble((head, "bold red"), text)

    try:
        args = parser.parse_args(argv)      # --help and --version print here
        if sys.stdout is None:      # started with standard output closed: every command prints there
            return 1, [error("standard output is closed")]
        return args.handler(args), []
    except ArenaError as e:
        more = len(e.faults) - SHOWN_FAULTS
        return 2, [error(shown(fault)) for fault in e.faults[:SHOWN_FAULTS]] + \
            [error(f"... and {more} more faults")] * (more > 0)
    except WriteFailed as e:
        return 1, [error(shown(str(e)))]
    except CapacityMissed as e:
        return 3, [error(str(e), "arena: ")]
    except ModuleNotFoundError as e:    # an install without a dependency (torch on a Python it has no build for)
        package = (e.name or "").split(".")[0]
        return 1, [error(f"the module '{package}' is not installed, and this command needs it: "
                         "install llama-arena's dependencies (see README.md)")]
    except PlanInvalid as e:   # a planner bug, never the user's input: say so plainly
        return 1, [error(str(e), "arena: internal error, the plan failed its check: ")]
    except BrokenPipeError:     # `arena plan ... | head`: the reader left, nothing more to say
        drop_stdout()
        return 141, []          # as a process killed by SIGPIPE
    except UnicodeEncodeError as e:
        drop_stdout()
        return 1, [error(unencodable(e))]
    except (MemoryError, RuntimeError, OSError) as e:
        line = "the current folder no longer exists: cd to one that does" if _cwd_removed(e) else system_failure(e)
        if line is None:
            raise
        if isinstance(e, OSError):
            drop_stdout()
        return 1, [error(line)]


def _cwd_removed(e: Exception) -> bool:
    """Whether `e` is a relative path's failing where the current folder was removed."""
    if not isinstance(e, FileNotFoundError):
        return False
    try:
        os.getcwd()
        return False
    except FileNotFoundError:
        return True


class _Parser(argparse.ArgumentParser):
    """argparse's parser with errors of one line, as every other fault has (the usage it would
    print first is in --help). add_subparsers makes the subcommands' parsers of this class too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def exit(self, status=0, message=None):
        if status == 0:         # after --help or --version: their text is the output, and may fail
            if sys.stdout is None:
                raise OSError(errno.EBADF, "standard output is closed")
            sys.stdout.flush()
        super().exit(status, message)

    def _print_message(self, message, file=None):
        # argparse's own lets a failed write pass: --help into a full disk would exit 0 (an
        # error's message failing on stderr still leaves its exit code 2). No file: stdout is
        # closed, and exit() says so.
        try:
            if message and file is not None:
                file.write(message)
        except OSError:
            if file is sys.stdout:
                raise


class _Version(argparse.Action):
    """`--version`, as argparse's own, but the version is read only when it is asked for."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the program's version number and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"arena {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="arena", description=__doc__)
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plan_cli.add_parsers(sub)
    run_cli.add_parser(sub)   # torch is imported only when `arena run` runs
    viz_cli.add_parser(sub)
    return parser
