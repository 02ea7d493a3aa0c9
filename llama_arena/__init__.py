"""llama-arena: the `arena` command above its three packages.

    planner/   lifetime tables in, one arena with an offset per buffer instance out
    viz/       views of a plan: terminal, pictures, traces
    executor/  a Llama forward pass with every scheduled tensor in the planned arena
    cli.py     the `arena` root: each package adds its own subcommands
The packages import downwards only: planner <- viz <- executor <- here (tests/test_layout.py).
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llama-arena")
except PackageNotFoundError:   # a source tree on sys.path that pip never installed
    __version__ = "0+unknown"
