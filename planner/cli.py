"""`arena plan` and `arena convert`: print memory plans, convert seed tables."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from . import csvio, graph, markdown, schedule
from .budget import Fitter, choose, describe
from .lifetimes import DEFAULT_ALIGN
from .options import (add_plan_inputs, check_heads, input_files, integer, load_schedule, plan_from_args, schedule_path,
                      set_nctx, settle_inputs, weights_dtype)
from .errors import ArenaError, CapacityMissed, note, read_json_object
from .estimate import estimate, native_weight_bytes, shard_tensors, workspace_bytes
from .gguf_tensors import misshapen, tensors
from .models import (gguf_refusal, is_gguf, model_dims, model_file, model_header, parse_sets,
                     rms_norm_eps, rope_settings, run_refusal, tied_output)
from .output import check_targets, write_all, write_atomic
from .plan import Plan
from .shards import Shard, shards
from .sizes import parse_size
from .report import estimate_table, output_console, print_plan


def add_parsers(sub) -> None:
    plan = sub.add_parser("plan", help="plan a schedule (or a minimalloc CSV) and print the arena",
                          description="Place every buffer instance of a lifetime table in one arena.")
    add_plan_inputs(plan)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON instead of tables")
    plan.add_argument("--out", metavar="FILE",
                      help="also save the plan: the JSON --json prints, or for --csv minimalloc's solution "
                           "(id,lower,upper,size, alignment and gaps where the problem has them, offset)")
    plan.add_argument("--graph", metavar="FILE.graphml",
                      help=f"write the interference graph (networkx GraphML; up to {graph.MAX_EDGES:,} edges)")
    plan.add_argument("--tp", type=integer, default=1, metavar="N",
                      help="tensor parallelism: plan each of N ranks, with its share of heads and FFN columns")
    plan.add_argument("--weights", choices=["native", "f32", "bf16", "f16"],
                      help="the weights in the llama schedule's estimate, as `arena run --weights` holds them: "
                           "native (the default) keeps a GGUF file's Q4_0, Q4_1 and Q8_0 blocks; f32, bf16 or f16 "
                           "dequantizes every weight, and the run takes that type")
    plan.add_argument("--budget", metavar="BYTES",
                      help="fit the llama schedule's run (weights, arena and what the run holds outside it) in BYTES (e.g. 512MiB, 24GiB, 1.5GB): "
                           "the prompt of n tokens is prefilled in the largest chunk, with the largest key tile, "
                           "that fits; the plan shown is the chunk's (the process's own Python, torch and tokenizer, "
                           "about 250 MiB on CPU, come on top)")
    plan.set_defaults(handler=cmd_plan)

    convert = sub.add_parser("convert", help="print the YAML of a markdown lifetime table (the seed's form)",
                             description="Print the YAML of a markdown lifetime table, as arena plan reads it.")
    convert.add_argument("table", metavar="TABLE.md",
                         help="a .md, .markdown or .txt file; its first table whose second column is 'graph' is read")
    convert.set_defaults(handler=cmd_convert)


def cmd_plan(args) -> int:
    if args.weights not in (None, "native") and args.csv:
        raise ArenaError("--weights: is for the llama schedule's estimate; a --csv problem has no weights")
    args.dtype = weights_dtype(args.weights, args.dtype) or args.dtype
    settle_inputs(args)
    _check_outputs(args)
    set_nctx(args)
    _note_refusal(args.model)
    budget = parse_size(args.budget) if args.budget is not None else None
    choice, dims = _fit(args, budget) if budget is not None else (None, None)
    try:
        return _plan_ranks(args) if args.tp != 1 else _plan_one(args, choice, dims, budget)
    except CapacityMissed as e:
        if args.json:       # a reader of the JSON gets an object too, beside the exit code 3
            print(json.dumps({"capacity": e.capacity, "fits": False, "proven": e.proven, "bound": e.bound,
                              "best": e.best, "message": str(e)}, indent=1))
        raise


def _plan_one(args, choice, dims, budget) -> int:
    """One plan (no --tp), printed and saved; `choice`, `dims`: --budget's (or None)."""
    optional = {}
    _, plan = plan_from_args(args, dims, optional)
    cost = choice.cost if choice else run_estimate(args, plan)
    chosen = {"budget": budget, "chunk": choice.chunk, "tile": choice.tile} if choice else {}
    # as a miss's object says it (with exit code 3), so that a reader need not tell them apart by their keys
    fitted = {"capacity": parse_size(args.capacity, "--capacity"), "fits": True} if args.capacity else {}
    # --json's, and --out's (as --tp's); not made for a table alone: 10^5 buffers take a while
    text = json.dumps({**plan.to_dict(), **cost, **chosen, **fitted}, indent=1) \
        if args.json or args.out and not args.csv else None
    if args.graph and (fault := graph.too_large(plan.buffers)):     # before minutes of building it
        raise ArenaError(f"--graph: {fault}")
    outputs = [("--graph", args.graph, graph.graphml(graph.interference_graph(plan.buffers)))] if args.graph else []
    if args.out:
        outputs.append(("--out", args.out, csvio.solution_csv(plan, optional) if args.csv else text + "\n"))
    write_all(outputs)
    if args.json:
        print(text)
    else:
        console = _console()
        print_plan(plan, console, fitted.get("capacity"))
        if cost:
            console.print(estimate_table(cost, _held(args)))
    return 0


def _check_outputs(args) -> None:
    """--out and --graph, before any planning or writing: each writable, and neither the
    same file as the other or as the input."""
    outputs = {option: path for option, path in (("--out", args.out), ("--graph", args.graph)) if path is not None}
    check_targets(outputs, input_files(args))


def _note_refusal(model: str | None) -> None:
    """A plan of a model that `arena run` refuses is still an estimate; a note says so."""
    path = model_file(model) if model else None
    if path is None:
        return
    dims = model_dims(model)
    try:        # what the run reads and the plan does not: the tensors' types and bytes, RoPE scaling's key
        if is_gguf(path):
            header = model_header(path)
            tensors(header, path)
            # (the run checks the shapes as it loads the tensors, after opening the file)
            refusal = gguf_refusal(header, path, dims) or misshapen(header, dims)
        else:
            cfg = read_json_object(path, "config.json")
            rms_norm_eps(path, cfg)
            refusal = run_refusal(cfg, dims)
            if not refusal:     # (its numbers are checked once its kind is one the run computes)
                rope_settings(path, cfg)
    except ArenaError as e:     # (its faults name the file)
        note(f"note: arena run refuses {e}")
        return
    if refusal:
        note(f"note: arena run refuses {path}: {refusal}")


def _fit(args, budget: int):
    """--budget: the chunk and tile of the llama schedule's run that fit, and the dims that plan
    the chunk (n = the chunk, tile = the tile); the prompt is n (--nctx or --set n=)."""
    table = load_schedule(args.schedule) if args.schedule else None    # a missing or bad one is named first
    if args.tp != 1 or not _the_run_schedule(args):
        raise ArenaError("--budget: fits a run of the llama schedule that ships, arena run's, on one device: "
                         "give the schedule llama, without --csv or --tp")
    if args.strategy != "auto":   # the chunk and tile are chosen for the plans `arena run` makes
        raise ArenaError(f"--budget fits the plans arena run makes (--strategy auto), not --strategy {args.strategy}")
    if args.align not in (None, DEFAULT_ALIGN):
        raise ArenaError(f"--budget fits the plans arena run makes (--align {DEFAULT_ALIGN}), not --align {args.align}")
    dims = {**model_dims(args.model), **parse_sets(args.set)}
    check_heads(args, dims, table.dims)
    if "n" not in dims:
        raise ArenaError("--budget: say the prompt's tokens with --nctx N or --set n=N")
    if dims["n"] < 1:
        raise ArenaError(f"--budget: the prompt must have 1 or more tokens, not n={dims['n']}")
    if dims["n"] > dims["nctx"]:
        raise ArenaError(f"--budget: the prompt of n={dims['n']} tokens is longer than the KV cache's "
                         f"nctx={dims['nctx']} positions")
    if "tile" in dims:
        raise ArenaError("--budget chooses the key tile: give --budget or --set tile=, not both")
    # the plans `arena run` makes (strategy auto): the estimate is of what it allocates
    fitter = Fitter({k: v for k, v in dims.items() if k != "n"}, args.dtype, tied_output(args.model),
                    *held_weights(args.model, dims, args.dtype, native=_native(args)))
    choice = choose(fitter, budget, dims["n"])
    note(describe(choice, budget, dims["n"]))
    return choice, {**dims, "n": choice.chunk, "tile": choice.tile}


def run_estimate(args, plan: Plan, shard: Shard | None = None) -> dict[str, int]:
    """Weights, KV cache, arena and their total for a plan of the Llama schedule (of one
    tensor-parallel rank's `shard`, whose dims the plan binds); {} for other schedules."""
    if not _the_run_schedule(args):
        return {}
    weights, workspace = held_weights(args.model, plan.dims, args.dtype, shard, _native(args))
    return estimate([plan], args.dtype, tied_output(args.model), weights, workspace)


def _the_run_schedule(args) -> bool:
    """Whether SCHEDULE is the llama schedule that ships, the one `arena run` plans: only its
    plans have a run's weights and KV cache beside them, and only it is fitted to a --budget. A
    table named llama, or a changed copy, is another network (one without a vocabulary, say);
    a copy of it is the same."""
    if not args.schedule or args.csv:
        return False
    path, shipped = schedule_path(args.schedule), schedule.SCHEDULES / "llama.yaml"
    return path.resolve() == shipped.resolve() or path.is_file() and path.read_bytes() == shipped.read_bytes()


def held_weights(model: str, dims: dict[str, int], dtype: str, shard: Shard | None = None,
                 native: bool = True) -> tuple[int | None, int]:
    """(the weights' bytes, None where they are the model's in `dtype`; what the kernels hold
    outside the arena), as `arena run` holds the model on CPU: by default (`native`) a GGUF file's
    Q4_0, Q4_1 and Q8_0 matrices as their blocks, anything else in `dtype`. With a `shard`, the
    part of a GGUF file's matrices that rank holds (`dims` are already the rank's)."""
    path = _gguf(model)
    if path is None or not native:
        return None, workspace_bytes(dims, dtype, native=False)
    tensors = [(t.name, t.shape, t.type) for t in model_header(path).tensors.values()]
    if shard is not None:
        tensors = shard_tensors(tensors, shard, dims["dh"])
    return native_weight_bytes(tensors, dtype), workspace_bytes(dims, dtype, native=True)


def _console() -> Console:
    """Standard output for tables: piped output keeps whole rows rather than folding them to 80 columns."""
    return output_console(None if sys.stdout.isatty() else 160)


def _native(args) -> bool:
    """Whether the estimate holds a GGUF file's blocks as they are (not --weights f32, bf16 or f16)."""
    return args.weights in (None, "native")


def _held(args) -> str:
    """The weights as the estimate's table names them: native blocks, or their dtype."""
    return "native" if _native(args) and _gguf(args.model) else args.dtype


def _gguf(model: str):
    path = model_file(model)
    return path if path is not None and is_gguf(path) else None


def _plan_ranks(args) -> int:
    """`--tp N`: one plan per rank, each binding the schedule with its own heads and FFN width."""
    if args.csv or args.graph:
        raise ArenaError(f"--tp: plans a schedule's ranks; {'--csv' if args.csv else '--graph'} takes one plan")
    if args.tp < 1:
        raise ArenaError(f"--tp must be 1 or more ranks, not {args.tp}")
    if not args.schedule:
        raise ArenaError(f"--tp {args.tp}: say which SCHEDULE's ranks to plan (e.g. llama)")
    declared = set(load_schedule(args.schedule).dims)
    if not {"nh", "nkvh"} & declared:   # else every rank plans the whole
        raise ArenaError(f"--tp {args.tp}: the schedule {args.schedule} has no heads to split over ranks "
                         "(no dimension nh or nkvh)")
    dims = {**model_dims(args.model), **parse_sets(args.set)}
    if "nkvh" not in declared and dims.get("nh", 0) > 0 and dims.get("nkvh", 0) > 0 and dims["nh"] % dims["nkvh"]:
        dims["nkvh"] = dims["nh"]   # heads set apart from the model's groups (the table has none): each its own
    missing = [d for d in ("nh", "nkvh", "di") if d not in dims]
    if missing:
        raise ArenaError(f"--tp: splitting needs the dims nh, nkvh and di; give {', '.join(missing)} by --model or --set")
    # the model's dims are read once (a GGUF file takes seconds), each rank binds its share of them
    split = shards(dims["nh"], dims["nkvh"], dims["di"], args.tp)
    shares = [shard.dims(dims) for shard in split]
    ranks = [_plan_rank(args, share, rank) for rank, share in enumerate(shares)]
    costs = [run_estimate(args, plan, shard) for plan, shard in zip(ranks, split)]
    summed = ("arena", "lower_bound", "no_reuse", "host_bytes")
    totals = {key: sum(getattr(p, key) for p in ranks) for key in summed}
    if costs[0]:
        totals["total_bytes"] = sum(cost["total_bytes"] for cost in costs)
    text = json.dumps({"ranks": [{**p.to_dict(), **cost} for p, cost in zip(ranks, costs)], "totals": totals},
                      indent=1)
    if args.json:
        print(text)
    else:
        _print_ranks(ranks, shares, costs, totals, _held(args))
    if args.out:   # last: a fault before it leaves no file
        write_atomic(args.out, text + "\n")
    return 0


def _plan_rank(args, share: dict[str, int], rank: int) -> Plan:
    """The plan of one rank; its faults say which rank, as its dims are not the ones given."""
    where = f"--tp {args.tp}, rank {rank} ({_split(share)})"
    try:
        return plan_from_args(args, share, notes=rank == 0)[1]
    except ArenaError as e:
        raise ArenaError(*[f"{where}: {fault}" for fault in e.faults]) from None
    except CapacityMissed as e:
        e.args = (f"{where}: {e}",)
        raise


def _split(share: dict[str, int]) -> str:
    return f"nh={share['nh']} nkvh={share['nkvh']} di={share['di']}"


def _print_ranks(ranks: list[Plan], shares: list[dict[str, int]], costs: list[dict[str, int]],
                 totals: dict[str, int], held: str) -> None:
    console = _console()
    for rank, (plan, share, cost) in enumerate(zip(ranks, shares, costs)):
        console.print(Text(f"rank {rank} of {len(ranks)}: {_split(share)}", style="bold"))
        print_plan(plan, console)
        if cost:
            console.print(estimate_table(cost, held))
    run = f", a run {totals['total_bytes']:,}" if "total_bytes" in totals else ""
    console.print(Text(f"all {len(ranks)} ranks: arena {totals['arena']:,} bytes, lower bound "
                       f"{totals['lower_bound']:,}, host {totals['host_bytes']:,}{run}", style="bold"))


def cmd_convert(args) -> int:
    if args.table == "":      # Path("") is the current folder
        raise ArenaError("TABLE.md: the path is empty")
    if Path(args.table).suffix.lower() in (".yaml", ".yml"):
        raise ArenaError(f"{args.table}: convert reads a markdown table and prints its YAML; a YAML schedule is "
                         "planned as it is (arena plan)")
    print(schedule.to_yaml(markdown.convert(args.table)), end="")
    return 0
