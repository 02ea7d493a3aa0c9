"""llama-arena: the `arena` command above its three packages.

    planner/   lifetime tables in, one arena with an offset per buffer instance out
    viz/       views of a plan: terminal, pictures, traces
    executor/  a Llama forward pass with every scheduled tensor in the planned arena
    cli.py     the `arena` root: each package adds its own subcommands
The packages import downwards only: planner <- viz <- executor <- here (tests/test_layout.py).
"""


def main(argv=None) -> int:
    """The `arena` command (cli.main). Ctrl-C while its modules load (a tenth of a second)
    exits as quietly as later on, with no traceback."""
    try:
        from .cli import main as run, interrupted
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    try:
        return run(argv)
    except KeyboardInterrupt:   # after cli.main's own handler, as it returns
        interrupted()


def version() -> str:
    """The installed version ('0+unknown' for a source tree that pip never installed), read
    only when asked: importlib.metadata takes 30 ms to import, a sixth of a small plan's run."""
    from importlib.metadata import PackageNotFoundError, version as installed
    try:
        return installed("llama-arena")
    except PackageNotFoundError:
        return "0+unknown"
