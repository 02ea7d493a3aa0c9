"""Plans as Chrome trace event JSON, which Perfetto (ui.perfetto.dev) and chrome://tracing open.

One process, and in it these tracks:
    calls       one slice per model call (run traces only: prefill, then each decode step)
    steps       one slice per step (plans from a schedule; a CSV problem has no steps)
    <tensor>    one track per tensor, one slice per instance; args: offset, bytes, shape, memory
    live bytes  a counter: the arena bytes live, changing where instances begin and end
A planned trace has no durations, so each step is drawn PLANNED_STEP_US long; a run trace
lays its calls end to end and gives each step its measured time. Times are microseconds.
"""
from __future__ import annotations

import collections
import itertools
import json
from typing import Callable

from planner.output import write_atomic
from planner.place.problem import Sections
from planner.plan import Plan

from .timeline import tensors

PLANNED_STEP_US = 1000     # a planned step (or CSV time unit) is drawn 1 ms long
# The longest trace, in microseconds: viewers read times as doubles (exact to 2^53) and keep
# nanoseconds in 64 bits (2^63, about 9.2e15 us); a CSV spanning more time units is drawn shorter.
MAX_TRACE_US = 2 ** 53
PID = 1
CALLS_TID, STEPS_TID = 1, 2


def plan_trace(plan: Plan) -> str:
    """The planned trace: time is step order, one step (or CSV time unit, from the first) per
    millisecond, or less where a CSV's span of time would pass MAX_TRACE_US."""
    tids = _tracks([plan])
    events = _metadata(f"arena plan: {plan.schedule or 'CSV problem'}", tids, calls=False, steps=bool(plan.steps))
    origin = _first_time(plan)
    span = max((b.last + 1 for b in plan.buffers), default=origin) - origin
    # from the first time, in integers: a CSV's times near 2^62 lose their units as floats
    per, units = (PLANNED_STEP_US, 1) if span * PLANNED_STEP_US <= MAX_TRACE_US else (MAX_TRACE_US, span)
    events += _call_events(plan, lambda t: (t - origin) * per // units, tids)
    return _dump(events, [plan])


def write_run_trace(path, calls: list[tuple[Plan, list[float]]]) -> None:
    """Write the trace of a run: `calls` is one (plan, measured seconds of each step) per model
    call, in order. The calls lie end to end; instances and live bytes follow the measured steps."""
    if not calls:
        raise ValueError("write_run_trace: no calls to trace")
    plans = [plan for plan, _ in calls]
    tids = _tracks(plans)
    events = _metadata(f"arena run: {plans[0].schedule}", tids, calls=True, steps=True)
    start = 0.0
    for k, (plan, seconds) in enumerate(calls):
        if len(seconds) != len(plan.steps) or any(s < 0 for s in seconds):
            raise ValueError(f"write_run_trace: call {k} needs {len(plan.steps)} non-negative step times, "
                             f"got {len(seconds)}")
        ends = [start + us for us in itertools.accumulate((s * 1e6 for s in seconds), initial=0.0)]
        events.append(_slice(f"call {k} (n={plan.dims.get('n', '?')})", ends[0], ends[-1], CALLS_TID, "call",
                             {"steps": len(plan.steps), "arena": plan.arena, "seconds": sum(seconds)}))
        events += _call_events(plan, ends.__getitem__, tids)
        start = ends[-1]
    write_atomic(path, _dump(events, plans), "--trace")


def _tracks(plans: list[Plan]) -> dict[str, int]:
    """Tensor name -> track id, tensors in the order they first appear."""
    names = tensors([b for plan in plans for b in plan.buffers])
    return {t: STEPS_TID + 1 + i for i, t in enumerate(names)}


def _metadata(process: str, tids: dict[str, int], calls: bool, steps: bool) -> list[dict]:
    named = [("calls", CALLS_TID)] * calls + [("steps", STEPS_TID)] * steps
    # a tensor may be called "steps" too: its track is told apart from the steps' (and the counter's)
    named += [(f"{t} (tensor)" if t in ("calls", "steps", "live bytes") else t, tid) for t, tid in tids.items()]
    events = [{"ph": "M", "pid": PID, "name": "process_name", "args": {"name": process}}]
    for name, tid in named:
        events.append({"ph": "M", "pid": PID, "tid": tid, "name": "thread_name", "args": {"name": name}})
        events.append({"ph": "M", "pid": PID, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid}})
    return events


def _call_events(plan: Plan, at: Callable[[int], float], tids: dict[str, int]) -> list[dict]:
    """Slices of the steps and instances of one call, and its live-bytes counter; `at(t)` is
    the time in microseconds at which step (or CSV time) t begins."""
    events = []
    for i, name in enumerate(plan.steps):
        events.append(_slice(name, at(i), at(i + 1), STEPS_TID, "step", {"step": i}))
    for b in plan.buffers:
        where = f"{plan.steps[b.first]}..{plan.steps[b.last]}" if plan.steps else f"{b.first}..{b.last}"
        events.append(_slice(b.name, at(b.first), at(b.last + 1), tids[b.tensor], "instance",
                             {"tensor": b.tensor, "offset": b.offset, "bytes": b.size, "nbytes": b.nbytes,
                              "shape": b.shape, "dtype": b.dtype, "memory": b.memory, "steps": where}))
    events += _live_counter(plan, at)
    return events


def _live_counter(plan: Plan, at: Callable[[int], float]) -> list[dict]:
    """The live-bytes counter, one value where any instance begins or ends: a running sum of
    the sizes that begin minus those that ended, rather than a scan of all instances at each.
    It starts at the plan's first step (or CSV time), at 0 where nothing is live there yet."""
    device, change = plan.device(), collections.Counter()
    for b in device:
        change[b.first] += b.size
        change[b.last + 1] -= b.size
    events, live = [], 0
    for t in sorted({_first_time(plan), *Sections(device).cuts}):
        live += change[t]
        events.append({"ph": "C", "pid": PID, "name": "live bytes", "ts": at(t), "args": {"arena bytes": live}})
    return events


def _first_time(plan: Plan) -> int:
    """Where a plan's time begins: step 0, or a CSV problem's first time."""
    return min((b.first for b in plan.buffers), default=0) if not plan.steps else 0


def _slice(name: str, begin: float, end: float, tid: int, category: str, args: dict) -> dict:
    return {"ph": "X", "pid": PID, "tid": tid, "name": name, "cat": category, "ts": begin, "dur": end - begin,
            "args": args}


def _dump(events: list[dict], plans: list[Plan]) -> str:
    # metadata first, then by time, longer slices first at a tie: the order older viewers need
    events = sorted(events, key=lambda e: (e["ph"] != "M", e.get("ts", 0), -e.get("dur", 0)))
    summary = {"schedule": plans[0].schedule, "arena": max(p.arena for p in plans),
               "lower_bound": max(p.lower_bound for p in plans), "strategy": plans[0].strategy}
    return json.dumps({"traceEvents": events, "displayTimeUnit": "ms", "otherData": summary}) + "\n"
