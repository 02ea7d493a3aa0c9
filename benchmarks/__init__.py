"""Benchmarks: ours and the reference side by side, ratios printed (see the README)."""
import argparse
import signal
import sys


def at_least(least: int):
    """An argparse type: a whole number no less than `least`."""
    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, not {value}")
        return value
    return whole_number


def children_end_with_us() -> None:
    """SIGTERM raises SystemExit (143), so that subprocess.run kills the run it waits on
    rather than leave it running on, orphaned, beside the next benchmark."""
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
