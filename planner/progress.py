"""A bar on stderr while a plan takes long: a search may use its whole time limit, and the
limit is the one total it knows in advance, so the bar counts seconds against it. Work
with no limit (drawing a picture) shows the seconds spent alone."""
from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

# A plan that answers sooner shows nothing: most plans take milliseconds.
DELAY_S = 0.5
REFRESH_S = 0.1


class Waiting:
    """`with Waiting("planning", limit):` shows, after DELAY_S, a bar of the seconds spent
    of `limit` (a spinner and the seconds, where `limit` is None), and removes it on leaving;
    on a console that is not a terminal (a pipe, a file, a test) it shows nothing."""

    def __init__(self, what: str, limit: float | None, console: Console | None = None):
        self.what, self.limit = what, limit
        self.console = console or Console(stderr=True, markup=False, emoji=False)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._show, daemon=True)

    def __enter__(self):
        self._start = time.monotonic()
        if self.console.is_terminal:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _show(self) -> None:
        if self._done.wait(DELAY_S):
            return
        if self.limit is None:
            spinner = SpinnerColumn("line" if self.console.options.ascii_only else "dots")   # a turning line in ASCII
            columns = [spinner, TextColumn(self.what, markup=False), TextColumn("{task.completed:.1f} s")]
        else:
            columns = [TextColumn(self.what, markup=False), BarColumn(),
                       TextColumn("{task.completed:.1f} s of {task.total:g} s")]
        with Progress(*columns, console=self.console, transient=True, auto_refresh=False) as progress:
            task = progress.add_task(self.what, total=self.limit, completed=self._spent())     # not 0.0 s at first
            progress.refresh()
            while not self._done.wait(REFRESH_S):
                progress.update(task, completed=self._spent())
                progress.refresh()

    def _spent(self) -> float:
        """Seconds since the start: past the limit too, where checking and writing a large plan
        come after its search (the bar stays full, the seconds go on)."""
        return time.monotonic() - self._start
