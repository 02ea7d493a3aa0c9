"""The bar `arena plan` shows on a terminal while a search takes long."""
import io
import re
import time

import pytest
from rich.console import Console

from planner import progress
from planner.progress import Waiting


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(progress, "DELAY_S", 0.05)
    monkeypatch.setattr(progress, "REFRESH_S", 0.01)


def _shown(terminal: bool, seconds: float) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=100)
    with Waiting("planning", 2, console):
        time.sleep(seconds)
    return out.getvalue()


def test_a_long_plan_shows_seconds_against_the_limit():
    shown = _shown(True, 0.3)
    assert "planning" in shown and " s of 2 s" in shown


def test_the_bar_never_shows_less_than_the_delay_it_waited(monkeypatch):
    monkeypatch.setattr(progress, "DELAY_S", 0.5)
    monkeypatch.setattr(progress, "REFRESH_S", 0.2)     # the first frame, before any refresh of the loop
    shown = _shown(True, 0.6)
    assert " s of 2 s" in shown and "0.0 s of 2 s" not in shown, shown


def test_a_quick_plan_shows_nothing():
    assert _shown(True, 0) == ""


def test_nothing_when_not_a_terminal():
    assert _shown(False, 0.3) == ""


def test_the_bar_is_gone_when_the_plan_fails(capsys):
    with pytest.raises(ValueError), Waiting("planning", 2, Console(file=io.StringIO(), force_terminal=True)) as w:
        time.sleep(0.1)
        raise ValueError("bad input")
    assert not w._thread.is_alive()


def test_work_without_a_limit_shows_the_seconds_spent():
    out = io.StringIO()
    with Waiting("drawing the png", None, Console(file=out, force_terminal=True, width=100)):
        time.sleep(0.3)
    shown = out.getvalue()
    assert "drawing the png" in shown and " s" in shown and " of " not in shown


def test_past_the_limit_the_seconds_go_on():
    """Checking and writing a large plan come after its search: the bar does not stop at the limit."""
    out = io.StringIO()
    with Waiting("planning", 0.1, Console(file=out, force_terminal=True, width=100)):
        time.sleep(0.4)
    seconds = [float(s) for s in re.findall(r"([0-9.]+) s of 0.1 s", out.getvalue())]
    assert max(seconds) >= 0.3, seconds


@pytest.mark.parametrize("strategy, limit", [("auto", 10.0), ("exact", 10.0), ("skyline", None), ("greedy-size", None)])
def test_only_the_strategies_that_keep_the_limit_count_against_it(strategy, limit):
    """The heuristics alone have no clock: a bar against --time-limit would sit full while they work on."""
    import argparse

    from planner import cli
    from planner.options import clock
    parser = argparse.ArgumentParser()
    cli.add_parsers(parser.add_subparsers())
    assert clock(parser.parse_args(["plan", "--csv", "p.csv", "--strategy", strategy])) == limit
