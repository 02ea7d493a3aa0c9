"""The bar `arena plan` shows on a terminal while a search takes long."""
import io
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
