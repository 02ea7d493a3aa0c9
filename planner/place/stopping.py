"""Stopping work that cannot watch an event itself (a CP-SAT solve, the compiled search)
once another thread has made its answer moot, or the user pressed Ctrl-C."""
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


def solve(solver, model, stop=None):
    """`solver.solve(model)` (CP-SAT), stopped early (UNKNOWN) once `stop` (an event or None)
    is set. CP-SAT would catch Ctrl-C itself, end the solve and let the command run on, so
    the solve runs on a thread of its own with that turned off while the main thread waits
    where Ctrl-C reaches it: the solve is then stopped, and the interrupt goes on."""
    solver.parameters.catch_sigint_signal = False
    status = []
    worker = threading.Thread(target=lambda: status.append(solver.solve(model)), daemon=True)
    with stopped_when(stop, solver.stop_search):
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.05)
        except KeyboardInterrupt:
            solver.stop_search()
            worker.join()
            raise
    return status[0]
