"""The options that say what to plan, shared by `arena plan` and `arena viz`, and the plan they ask for."""
from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

from . import csvio, markdown, reader, schedule
from .calls import with_tile
from .errors import ArenaError, CapacityMissed, note, where
from .lifetimes import DEFAULT_ALIGN, Lifetimes, bind
from .lint import suspects
from .models import PRESETS, SET_DIGITS, model_dims, model_files, parse_sets, uneven_heads
from .plan import CHOICES, Plan, check_time_limit, place, plan_lifetimes
from .progress import Waiting
from .sizes import parse_size

DTYPES = ["f32", "f16", "bf16"]
DEFAULT_MODEL, DEFAULT_DTYPE = "smollm2-135m", "f32"


_INTEGER = re.compile(r"\s*[-+]?[0-9]+\s*", re.ASCII)
_NUMBER = re.compile(r"\s*[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[-+]?[0-9]+)?|inf|infinity|nan)\s*",
                     re.ASCII | re.IGNORECASE)


def integer(text: str) -> int:
    """An option's integer, in ASCII digits: int() alone also takes 1_000 and '٢٥٦', which
    --set refuses."""
    if not _INTEGER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}")
    return int(text)


def number(text: str) -> float:
    """An option's number, as `integer` in ASCII (nan and inf are read: each option says why
    it refuses them)."""
    if not _NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}")
    return float(text)


def add_plan_inputs(parser: argparse.ArgumentParser) -> None:
    """The options that say what to plan, shared by `plan` and `viz`."""
    parser.add_argument("schedule", nargs="?", metavar="SCHEDULE",
                        help="a schedule YAML, a markdown lifetime table (.md/.markdown/.txt), or the name of one in "
                             f"schedules/ ({', '.join(sorted(p.stem for p in schedule.SCHEDULES.glob('*.yaml')))})")
    parser.add_argument("--csv", metavar="PROBLEM.csv", help="plan minimalloc's id,lower,upper,size instead")
    parser.add_argument("--model", help=f"dimensions from a preset ({', '.join(PRESETS)}), a config.json, "
                                        f"a .gguf file or a folder of either (default: {DEFAULT_MODEL})")
    parser.add_argument("--set", action="append", default=[], metavar="DIM=N",
                        help="bind a dimension, e.g. --set n=512 --set nctx=4096 (repeatable)")
    parser.add_argument("--dtype", choices=DTYPES, help=f"element type of Ta activations (and, in arena plan, of the estimate's float weights; default {DEFAULT_DTYPE})")
    parser.add_argument("--align", type=integer, default=None,
                        help=f"byte alignment of every offset (default {DEFAULT_ALIGN}; 1 for --csv)")
    parser.add_argument("--strategy", choices=CHOICES, default="auto", help="offset assignment (default auto)")
    parser.add_argument("--time-limit", type=number, default=10.0, metavar="S",
                        help="seconds auto and exact may take to place the buffers (default 10; the "
                             "heuristics alone have no clock)")
    parser.add_argument("--nctx", type=integer, metavar="N",
                        help="KV cache positions (--set nctx=N); a call then prefills all N unless --set n= says less")
    parser.add_argument("--capacity", default=None, metavar="BYTES",
                        help="find a plan within this many bytes (e.g. 1048576 or 1MiB), the first one "
                             "found, instead of the least arena; exit code 3 if none is found")


def set_nctx(args) -> None:
    """--nctx N is --set nctx=N, and the call size n = N unless --set gives n."""
    sets = parse_sets(args.set)
    if args.nctx is None:
        _note_context("--set nctx=", sets.get("nctx"), args.model)
        return
    if args.nctx < 1:
        raise ArenaError(f"--nctx must be at least 1 position, not {args.nctx}")
    if args.nctx >= 10**SET_DIGITS:   # as --set takes a dimension
        raise ArenaError(f"--nctx {args.nctx}: too large, {SET_DIGITS} digits at most")
    if "nctx" in sets:
        raise ArenaError(f"--nctx {args.nctx} and --set nctx={sets['nctx']}: both bind nctx; give one")
    _note_context("--nctx ", args.nctx, args.model)
    args.set = [*args.set, f"nctx={args.nctx}"] + ([] if "n" in sets else [f"n={args.nctx}"])


def _note_context(said: str, nctx: int | None, model: str | None) -> None:
    """A context longer than the model's is an estimate still, of a run `arena run` refuses."""
    model_nctx = None if nctx is None else model_dims(model).get("nctx")
    if model_nctx is not None and nctx > model_nctx:
        note(f"note: {said}{nctx} is more than the model's context of {model_nctx} positions, which arena run refuses")


def weights_dtype(weights: str | None, dtype: str | None) -> str | None:
    """The dtype that --weights f32, bf16 or f16 runs in (every weight dequantized to it; --dtype
    may only repeat it), or None where the weights stay as they are (native, or not given)."""
    if weights in (None, "native"):
        return None
    if dtype not in (None, weights):
        raise ArenaError(f"--weights {weights} --dtype {dtype}: dequantized weights run in their own "
                         f"dtype; give one of the two")
    return weights


def settle_inputs(args) -> None:
    """Refuse the options a --csv problem has no use for (they would be ignored without a
    word), or fill in the defaults of --model and --dtype for a schedule. Settling twice
    changes nothing."""
    if args.csv:
        given = [option for option, value in (("--model", args.model), ("--dtype", args.dtype), ("--set", args.set),
                                              ("--nctx", getattr(args, "nctx", None))) if value]
        if given:
            raise ArenaError(f"{given[-1]}: is for a SCHEDULE; a --csv problem has no model, dimensions or element type")
        return
    args.model = DEFAULT_MODEL if args.model is None else args.model
    args.dtype = args.dtype or DEFAULT_DTYPE


def plan_from_args(args, dims: dict[str, int] | None = None, optional: dict | None = None,
                   notes: bool = True) -> tuple[Lifetimes | None, Plan]:
    """The plan the options ask for; Lifetimes too when it comes from a schedule. `dims`, when
    given, are the model's with the --set values already over them, and their heads already
    checked by the caller (a --tp rank's share, or --budget's chunk and tile); `optional` gets a
    CSV problem's optional columns (csvio.read_problem); `notes`: print the table's notes (once a
    command: --tp plans the table once a rank)."""
    settle_inputs(args)
    check_time_limit(args.time_limit)       # before the input is read
    capacity = None if args.capacity is None else parse_size(args.capacity, "--capacity")
    for what, path in (("SCHEDULE", args.schedule), ("--csv", args.csv)):
        if path == "":      # else read as "." or as not given
            raise ArenaError(f"{what}: the path is empty")
    if args.csv and args.schedule:
        raise ArenaError("give a SCHEDULE or --csv PROBLEM.csv, not both")
    if args.csv:
        return None, _plan_csv(args, capacity, {} if optional is None else optional)
    if not args.schedule:
        raise ArenaError("say what to plan: a SCHEDULE (e.g. schedules/llama.yaml) or --csv PROBLEM.csv")
    checked = dims is not None
    if not checked:
        model, sets = model_dims(args.model), parse_sets(args.set)
        dims = {**model, **sets}
    table = load_schedule(args.schedule, notes)
    if not checked:
        check_heads(args, dims, table.dims)
        _note_model_dims(args, model, sets, table.dims)
    unknown = _unknown_sets(args, list(table.dims))
    try:    # a --set N=7 meant for n: its fault beside n's, which binding finds unbound
        lifetimes = bind(table, with_tile(dims), args.dtype, DEFAULT_ALIGN if args.align is None else args.align)
    except ArenaError as e:
        raise ArenaError(*unknown, *e.faults) from None
    if unknown:
        raise ArenaError(*unknown)
    _check_call(args, lifetimes.dims)
    for line in suspects(table, lifetimes) if notes else []:
        note(line)
    with Waiting(f"planning {lifetimes.schedule}", clock(args)):
        try:
            return lifetimes, plan_lifetimes(lifetimes, args.strategy, args.time_limit, capacity)
        except ArenaError as e:     # the bytes of all instances at once, which the table's lines do not name
            raise ArenaError(*[f"{where(table.file)}{fault}" for fault in e.faults]) from None


MARKDOWN_SUFFIXES = (".md", ".markdown", ".txt")


def load_schedule(name: str, notes: bool = False) -> schedule.Schedule:
    """The table SCHEDULE names; `notes`: print a markdown table's notes (types read as int32)."""
    path = schedule_path(name)
    if path.suffix.lower() in MARKDOWN_SUFFIXES:
        table = markdown.convert(path)
        for line in markdown.guessed_types(table) if notes else []:
            note(line)
        return table
    if path.suffix.lower() == ".csv":   # an allocation problem given where a schedule goes
        raise ArenaError(f"{path}: a CSV is an allocation problem, read with --csv {name}; SCHEDULE is a "
                         "lifetime table (YAML, or markdown in a .md, .markdown or .txt file)")
    missing = not path.exists() and not path.is_symlink()   # a link to nowhere is read, to say why it fails
    if missing and path.name != name and (schedule.SCHEDULES / f"{path.name}.yaml").exists():
        raise ArenaError(f"{name}: no such file; the schedule {path.name} that ships is named without a path")
    if missing and path.name == name and not path.suffix:
        shipped = ", ".join(sorted(p.stem for p in schedule.SCHEDULES.glob("*.yaml")))
        raise ArenaError(f"{name}: no such file, nor a schedule that ships by that name ({shipped})")
    return reader.load(path)


def schedule_path(name: str) -> Path:
    """The file a SCHEDULE names: a path, or the bare name of one in schedules/ (`./llama` is a
    path; a folder of that name is no schedule, and leaves the name to the one that ships)."""
    path = Path(name)
    if not path.is_file() and path.name == name and (schedule.SCHEDULES / f"{name}.yaml").exists():
        return schedule.SCHEDULES / f"{name}.yaml"
    return path


def input_files(args) -> dict[str, str | None]:
    """The files `add_plan_inputs`' options read, as {what: path}: an output must not overwrite them."""
    return {"the schedule": args.schedule and str(schedule_path(args.schedule)), "--csv": args.csv,
            **model_files(args.model)}


def _unknown_sets(args, names: list[str]) -> list[str]:
    """A fault for each --set of a dimension the schedule does not declare (`names`)."""
    return [f"{_given(args, d)}: the schedule has no dimension '{d}' "
            f"({'it has ' + ', '.join(names) if names else 'it has none'})"
            for d in sorted(set(parse_sets(args.set)) - set(names))]


def _plan_csv(args, capacity: int | None, optional: dict) -> Plan:
    """A CSV problem's plan. Where buffers have gaps, the plan is of the stricter problem without
    them, but its bound, and so whether it or a miss is proven, is of the problem as written."""
    align = 1 if args.align is None else args.align
    with Waiting(f"reading {Path(args.csv).name}", None):     # 10^6 rows take seconds
        buffers = csvio.read_problem(args.csv, align, optional)
    gaps = optional.get("gaps", {})
    bound = csvio.gap_bound(buffers, gaps) if any(gaps.values()) else None
    with Waiting(f"planning {Path(args.csv).name}", clock(args)):
        try:
            plan = place(buffers, args.strategy, align, [], args.time_limit, capacity, padded=True)
        except CapacityMissed as e:
            if bound is None:
                raise
            raise CapacityMissed(e.capacity, bound, e.best, e.searched, e.align, e.maker) from None
    return plan if bound is None else dataclasses.replace(plan, lower_bound=bound, bound=bound,
                                                          optimal=plan.arena == bound)


def clock(args) -> float | None:
    """The seconds a progress bar counts against: --time-limit where the strategy keeps it; the
    heuristics alone have no clock, and their bar counts seconds alone."""
    return args.time_limit if args.strategy in ("auto", "exact") else None


def _check_call(args, dims: dict[str, int]) -> None:
    """A call of n tokens attends to keys in the context, a tile of them at a time: n or tile
    above nctx (by --set, --nctx or the model) has no run behind it."""
    sets = parse_sets(args.set)

    def said(dim: str) -> str:
        if dim not in sets:
            return _model_value(args, dim, dims[dim])
        given = _given(args, dim)
        return f"{given}={dims[dim]}" if given == f"--set {dim}" else given

    if "nctx" not in dims:
        return
    if dims.get("n", 0) > dims["nctx"]:
        raise ArenaError(f"{said('n')}: a call of {dims['n']} tokens is longer than the context "
                         f"({said('nctx')}), which holds every token a call attends to")
    if dims.get("tile", 0) > dims["nctx"]:
        raise ArenaError(f"{said('tile')}: a tile of keys longer than the context ({said('nctx')})")


def check_heads(args, dims: dict[str, int], declared) -> None:
    """Query heads set by --set in groups over the key-value heads, as a model's file must have them,
    where the table has both (a table without nkvh has no groups to break)."""
    sets = parse_sets(args.set)
    if ("nh" in sets or "nkvh" in sets) and {"nh", "nkvh"} <= set(declared) \
            and dims.get("nh", 0) > 0 and dims.get("nkvh", 0) > 0 \
            and dims["nh"] % dims["nkvh"]:
        said = [f"--set {d}={dims[d]}" if d in sets else _model_value(args, d, dims[d]) for d in ("nh", "nkvh")]
        other = [d for d in ("nh", "nkvh") if d not in sets]
        raise ArenaError(uneven_heads(*said) + (f"; --set {other[0]} too" if other else ""))


def _note_model_dims(args, model: dict[str, int], sets: dict[str, int], declared) -> None:
    """Where --set (`sets`) gives some of a `model`'s shape (d, nh, ...) and the model the rest of
    those the table declares, the table may well describe another model: a note names what the
    model gave."""
    shape = set(model) - {"nctx"}       # the context is the call's as much as the model's
    taken = [d for d in declared if d in shape and d not in sets]
    if shape & set(sets) and taken:
        note(f"note: {' '.join(f'{d}={model[d]}' for d in taken)} from the {_the_model(args)}, beside --set "
             f"{' '.join(f'{d}={sets[d]}' for d in sets if d in shape)}; --set those too, or --model, if the table "
             "describes another model")


def _model_value(args, dim: str, value: int) -> str:
    """A dimension the model gave, as a message says it."""
    return f"the {_the_model(args)}'s {dim}={value}"


def _the_model(args) -> str:
    return f"default model {DEFAULT_MODEL}" if args.model == DEFAULT_MODEL else "model"


def _given(args, dim: str) -> str:
    """The option that bound `dim`: `arena plan --nctx N` binds nctx as --set nctx=N does."""
    return f"--nctx {args.nctx}" if dim == "nctx" and getattr(args, "nctx", None) is not None else f"--set {dim}"
