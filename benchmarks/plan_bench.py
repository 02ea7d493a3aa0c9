"""The planner benchmark: every strategy side by side on seeded instance families.

    python benchmarks/plan_bench.py            # the full table (tens of minutes)
    python benchmarks/plan_bench.py --quick    # a CI-sized run
    python benchmarks/plan_bench.py --only prod    # the production-like family alone

Each cell is `mean arena/reference (worst) · proven optimal/instances · mean (max) seconds`;
where a family has a capacity (prod-*), the last column is `auto --capacity`: `plans
within it/instances · median (max) seconds`.
The reference is the optimum where it is known by construction (cut-*, readme, prod-N
without slack), else the lower bound (max live bytes). prod-N-roomR rows are prod-N's
instances with a capacity R% above the peak: they have only the `auto --capacity` column.
graph-* are steps of real models (benchmarks/graphs.py), traced when their rows run (seconds
each). Every plan goes through `planner.plan.place`, hence through the independent checker;
times are of that call and so include the check.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent      # the repository: runs from any folder
sys.path.insert(0, str(ROOT))

from benchmarks import at_least, graphs  # noqa: E402
from benchmarks.families import (ALIGN, README, aligned, cut, dense, lanes, powers, production, sawtooth,  # noqa: E402
                                 serving, spread, stair, table, topup)
from planner.calls import with_tile  # noqa: E402
from planner.lifetimes import bind  # noqa: E402
from planner.errors import ArenaError, CapacityMissed  # noqa: E402
from planner.output import check_target  # noqa: E402
from planner.models import PRESETS  # noqa: E402
from planner.place import Block  # noqa: E402
from planner.plan import CHOICES, Buffer, place, plan_lifetimes  # noqa: E402
from planner.reader import load  # noqa: E402

STRATEGIES = ["naive", "greedy-size", "best-fit", "skyline", "layered", "reordered", "auto", "exact"]
FIT = "auto --capacity"
assert set(STRATEGIES) == set(CHOICES)


@dataclass
class Instance:
    family: str
    blocks: list[Block] | None                    # None for a schedule
    optimum: int | None = None                    # known by construction
    schedule: tuple[str, int] | None = None       # (preset, n) of schedules/llama.yaml
    capacity: int | None = None                   # a plan is known to fit within it
    build: Callable[[], list[Block]] | None = None    # the blocks, made only when the family runs
    fit_only: bool = False      # only `auto --capacity`: minimizing, another row has the same blocks


# Steps of real models (benchmarks/graphs.py): (architecture, layers, batch, tokens, training)
GRAPHS = [("gpt2", 4, 2, 128, False), ("llama", 4, 2, 128, False), ("llama", 4, 2, 128, True),
          ("llama", 16, 1, 256, True), ("bert", 4, 4, 128, True), ("t5", 6, 2, 128, True)]


def instances(quick: bool, most_seeds: int | None = None) -> list[Instance]:
    """The families' instances; at most `most_seeds` seeds of each seeded family."""
    seeds = range(min(3 if quick else 10, most_seeds or 10))
    out = [Instance("readme", README, 12)]
    for preset in PRESETS:
        for n in [n for n in ([1, 512] if quick else [1, 7, 512, 4096]) if n <= PRESETS[preset]["nctx"]]:
            out.append(Instance(f"llama {preset} n={n}", None, schedule=(preset, n)))
    for n in ([50, 100] if quick else [50, 100, 200]):
        out += [Instance(f"spread-{n}", spread(n, s)) for s in seeds]
        out += [Instance(f"dense-{n}", dense(n, s)) for s in seeds]
    for n in ([60] if quick else [60, 100]):
        out += [Instance(f"topup-{n}", topup(n, s)) for s in seeds]
    for n in ([150, 300] if quick else [150, 300, 500, 1000]):
        out += [Instance(f"cut-{n}", aligned(cut(n, s, max(2, n // 4), 4096)), 4096 * ALIGN) for s in seeds]
    for n in ([150] if quick else [150, 300, 450]):
        for slack in (0, 0.02, 0.06):
            family = f"prod-{n}" + (f"-slack{round(100 * slack)}" if slack else "")
            for seed in range(min(3 if quick else 20, most_seeds or 20)):
                blocks, _, capacity = production(n, seed, slack)
                out.append(Instance(family, blocks, None if slack else capacity, capacity=capacity))
        for room in () if quick else (0.02, 0.06):
            for seed in range(min(20, most_seeds or 20)):
                blocks, _, capacity = production(n, seed, room=room)
                out.append(Instance(f"prod-{n}-room{round(100 * room)}", blocks, capacity=capacity, fit_only=True))
    for n in ([1000, 10_000] if quick else [1000, 10_000, 100_000]):
        out.append(Instance(f"table-{n}", table(n, 0)))
    for n in ([2000] if quick else [2000, 10_000, 20_000]):
        out += [Instance(f"stair-{n}", stair(n, s)) for s in seeds[:3]]
    if not quick:
        out += [Instance("lanes-10000", lanes(10_000, s)) for s in seeds[:3]]
        for n in (1500, 3000):
            out += [Instance(f"serving-{n}", serving(n, s)) for s in seeds[:3]]
    for n in ([1000] if quick else [1000, 5000]):
        out += [Instance(f"powers-{n}", powers(n, s)) for s in seeds[:3]]
    for n in ([] if quick else [500, 5000]):
        out += [Instance(f"sawtooth-{n}", sawtooth(n, s)) for s in seeds[:3]]
    for arch, layers, batch, tokens, train in GRAPHS[:2] if quick else GRAPHS:
        out.append(Instance(f"graph-{arch}-L{layers}-{'train' if train else 'infer'}", None,
                            build=lambda args=(arch, layers, batch, tokens, train): graphs.graph(*args)))
    return out


def run(inst: Instance, strategy: str, time_limit: float):
    """(arena / reference, proven optimal, seconds, arena)"""
    start = time.perf_counter()
    if inst.schedule:
        preset, n = inst.schedule
        plan = plan_lifetimes(bind(load(ROOT / "schedules" / "llama.yaml"), with_tile({**PRESETS[preset], "n": n}), "f16"),
                              strategy, time_limit)
    else:
        buffers = [Buffer(f"b{i}", "b", f, l, s, None) for i, (f, l, s) in enumerate(inst.blocks)]
        plan = place(buffers, strategy, 1, [], time_limit)
    seconds = time.perf_counter() - start
    reference = inst.optimum or plan.lower_bound
    return plan.arena / reference, plan.optimal, seconds, plan.arena


def decide(inst: Instance, time_limit: float):
    """(a plan within the capacity was found, seconds), by `auto --capacity`."""
    start = time.perf_counter()
    buffers = [Buffer(f"b{i}", "b", f, l, s, None) for i, (f, l, s) in enumerate(inst.blocks)]
    try:
        place(buffers, "auto", 1, [], time_limit, inst.capacity)
        fits = True
    except CapacityMissed:
        fits = False
    return fits, time.perf_counter() - start


def fit_cell(results) -> str:
    if not results:
        return ""
    fits, seconds = zip(*results)
    return f"{sum(fits)}/{len(fits)} · {statistics.median(seconds):.2f} ({max(seconds):.2f})s"


def cell(results) -> str:
    if not results:
        return ""
    ratios, proven, seconds, _ = zip(*results)
    mean_ratio, worst = statistics.mean(ratios), max(ratios)
    ratio = f"{mean_ratio:.3f}" + (f" ({worst:.3f})" if worst - mean_ratio >= 0.0005 else "")
    timing = f"{statistics.mean(seconds):.2f}" + (f" ({max(seconds):.2f})" if len(seconds) > 1 else "")
    return f"{ratio} · {sum(proven)}/{len(proven)} · {timing}s"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer and smaller instances (CI)")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="seconds for auto/exact per instance (default 10, 2 with --quick)")
    ap.add_argument("--only", nargs="*", default=None, metavar="PREFIX",
                    help="run only the families whose name starts with one of these")
    ap.add_argument("--seeds", type=at_least(1), default=None, metavar="N", help="at most N seeds of each family")
    ap.add_argument("--strategies", nargs="*", default=STRATEGIES + [FIT], metavar="NAME",
                    help=f"only these columns (of {', '.join(STRATEGIES)} and '{FIT}')")
    ap.add_argument("--arenas", metavar="FILE.json",
                    help="also write every instance's arena per strategy, to compare two runs exactly")
    args = ap.parse_args(argv)
    if args.arenas:     # before the run, which can take most of an hour
        try:
            check_target(args.arenas, "--arenas")
        except ArenaError as e:
            ap.error(str(e))
    if args.time_limit is not None and not 0 < args.time_limit < float("inf"):
        ap.error(f"--time-limit: a positive number of seconds, not {args.time_limit}")
    unknown = [s for s in args.strategies if s not in STRATEGIES + [FIT]]
    if unknown or not args.strategies:
        ap.error(f"--strategies: {', '.join(unknown) or 'none given'}; choose among {', '.join(STRATEGIES)} and '{FIT}'")
    time_limit = args.time_limit if args.time_limit is not None else (2.0 if args.quick else 10.0)
    rows: dict[str, dict[str, list]] = {}
    strategies = [s for s in STRATEGIES if s in args.strategies]
    fit = FIT in args.strategies
    everything = instances(args.quick, args.seeds)
    if args.only is not None and not any(inst.family.startswith(tuple(args.only)) for inst in everything):
        families = ", ".join(dict.fromkeys(inst.family.split(" n=")[0] for inst in everything))
        ap.error(f"--only {' '.join(args.only)}: no family starts so; the families: {families}")
    for inst in everything:
        if args.only is not None and not inst.family.startswith(tuple(args.only)):
            continue
        if (not strategies and inst.capacity is None) or (not fit and inst.fit_only):
            continue                        # no column asked for that it has
        if inst.build:
            inst.blocks = inst.build()
        row = rows.setdefault(inst.family, {s: [] for s in strategies + [FIT]})
        for strategy in [] if inst.fit_only else strategies:
            row[strategy].append(run(inst, strategy, time_limit))
        if fit and inst.capacity is not None:
            row[FIT].append(decide(inst, time_limit))
        print(f"  {inst.family}: " + " | ".join(f"{s} {row[s][-1][0]:.3f}" for s in strategies if row[s]) +
              (f" | fits {row[FIT][-1][0]} in {row[FIT][-1][1]:.2f}s" if row[FIT] else ""), file=sys.stderr, flush=True)
    columns = strategies + [FIT] * fit
    print(f"time limit {time_limit:g} s; cells: mean arena/reference (worst) · proven optimal · mean (max) time; "
          f"{FIT}: within the capacity · median (max) time\n")
    print("| family | instances | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for family, row in rows.items():
        count = max(len(results) for results in row.values())
        cells = [cell(row[s]) for s in strategies] + [fit_cell(row[FIT])] * fit
        print(f"| {family} | {count} | " + " | ".join(cells) + " |")
    if args.arenas:
        arenas = {family: {s: [r[3] for r in row[s]] for s in strategies} for family, row in rows.items()}
        Path(args.arenas).write_text(json.dumps(arenas, indent=1) + "\n")


if __name__ == "__main__":
    main()
