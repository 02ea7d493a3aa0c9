"""Stopping work that cannot watch an event itself (a CP-SAT solve, the compiled search)
once another thread has made its answer moot."""
from __future__ import annotations

import contextlib
import threading
from typing import Callable


@contextlib.contextmanager
def stopped_when(event, stop: Callable[[], None]):
    """Within the block, `stop()` is called once `event.is_set()`, and again every 20 ms
    until the block ends (a CP-SAT solve not started yet misses a stop); the watch runs on a
    thread of its own, as both kinds of work run without the GIL. No watch if `event` is
    None."""
    if event is None:
        yield
        return
    done = threading.Event()

    def watch():
        while not done.wait(0.02):
            if event.is_set():
                stop()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
