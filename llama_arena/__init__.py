"""llama-arena: the `arena` command above its three packages.

    planner/   lifetime tables in, one arena with an offset per buffer instance out
    viz/       views of a plan: terminal, pictures, traces
    executor/  a Llama forward pass with every scheduled tensor in the planned arena
    cli.py     the `arena` root: each package adds its own subcommands
The packages import downwards only: planner <- viz <- executor <- here (tests/test_layout.py).
"""
import os
import signal
import sys
import threading

from planner.compiled import NotBuilt


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, `timeout`), stopped as Ctrl-C is: the `with` blocks unwind, so a
    progress bar gives the terminal its cursor back and no output is left half written."""


def _terminate(signum, frame):
    raise Terminated


def _quiet_rank_start() -> None:
    """A rank that the `arena` script's `run --tp N` spawns (executor/parallel.py: the launcher
    sets ARENA_SAID_DIR) imports this package first, as the script's, then torch for a second or
    two before its own handlers are set. Ctrl-C in that while ends it at once, as it ends the
    parent (exit 130), rather than with a traceback of the import; the rank's run puts Python's
    handler back (executor/cli.py: rank_main). (Under `python -m llama_arena` the ranks import
    torch first: multiprocessing does not import a package's __main__ again.)"""
    if "ARENA_SAID_DIR" in os.environ and "multiprocessing.spawn" in sys.modules \
            and threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler:     # (not where it is ignored)
        signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))


_quiet_rank_start()


def main(argv=None) -> int:
    """The `arena` command (cli.main). Ctrl-C anywhere in it, while its modules load too,
    exits 130 at once, with no traceback, and SIGTERM 143. At once: OR-Tools' threads may
    still be solving, and a normal exit destroys them running, which aborts the process
    ("terminate called without an active exception", exit 134)."""
    previous = signal.getsignal(signal.SIGTERM)
    # one that is ignored stays so; only the main thread may set one
    ours = previous is signal.SIG_DFL and threading.current_thread() is threading.main_thread()
    if ours:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        from .cli import main as run
        return run(argv)
    except (KeyboardInterrupt, ImportError) as e:
        if isinstance(e, NotBuilt):
            print(f"arena: error: {e}", file=sys.stderr)
            return 1
        # Ctrl-C while a compiled module initializes (OR-Tools') comes out as its ImportError
        stop = e.__cause__ if isinstance(e, ImportError) else e
        if not isinstance(stop, KeyboardInterrupt):
            raise
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):     # None where the process has no such stream
                pass
        os._exit(143 if isinstance(stop, Terminated) else 130)
    finally:
        if ours:        # main() called inside a longer process: its SIGTERM is its own again
            signal.signal(signal.SIGTERM, previous)


def version() -> str:
    """The installed version ('0+unknown' for a source tree that pip never installed), read
    only when asked: importlib.metadata takes 30 ms to import, a sixth of a small plan's run."""
    from importlib.metadata import PackageNotFoundError, version as installed
    try:
        return installed("llama-arena")
    except PackageNotFoundError:
        return "0+unknown"
