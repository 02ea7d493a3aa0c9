"""Prefill of one long prompt under byte budgets, side by side: ours without a budget, ours
with each --budget, and transformers, in f32 and in bf16 (or the --dtypes given).

    python benchmarks/run_bench.py --budget 256MiB f32=620MiB bf16=310MiB --prompt-tokens 2048
    python benchmarks/run_bench.py --budget 256MiB f32=900MiB bf16=470MiB --prompt-tokens 8192

The prompt is a text repeated and its ids cut to --prompt-tokens. Each run is its own fresh
interpreter, so its memory is its own. Two peaks, both above the process's resident memory
right before it loads the model: the process's peak (getrusage's ru_maxrss), which counts
the loading (the GGUF file's mapped pages and the reader's arrays, gone once the model is
loaded), and the run's peak, from the high-water mark reset after loading
(/proc/self/clear_refs) and after the heap that loading freed is handed back to the system
(malloc_trim: glibc keeps it otherwise, about 50 MiB on SmolLM2), which counts what the run
holds: the weights, the arena, and anything else it allocates. The estimate (`total_bytes`) sits beside the run's peak, and
the budget is checked against it. A run generates one token after the prompt (the
prefill's); the prefill speed is the best of --repeats runs (an 8,192-token prefill on CPU
takes minutes: --repeats 1 there). A budget applies to both dtypes, or to one as
DTYPE=SIZE; where nothing fits, the row shows the scheduler's message. The weights are the model's dequantized to the
dtype, as transformers holds them.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FILLER = ("The arena holds every activation of the model, and the planner places each one before the run "
          "starts, so the memory a long prompt needs is known in advance. ")


def budget_table(args) -> int:
    ids = prompt_ids(args.model, args.prompt_tokens)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(ids, f)
        f.flush()
        rows = [run(args, dtype, engine, budget, f.name)
                for dtype in args.dtypes
                for engine, budget in [("ours", None), *(("ours", b) for b in budgets(args.budget, dtype)),
                                       ("transformers", None)]]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print_table(rows, args)
    return 0


def budgets(sizes: list[str], dtype: str) -> list[str]:
    """The sizes of --budget that apply to `dtype`: plain ones, and DTYPE=SIZE for it."""
    return [size.removeprefix(f"{dtype}=") for size in sizes if "=" not in size or size.startswith(f"{dtype}=")]


def prompt_ids(model: str | None, count: int) -> list[int]:
    from executor.source import open_source, resolve
    from executor.tokenizer import from_folder, from_gguf
    source = resolve(model)
    tokenizer = from_folder(source.path) if source.kind == "checkpoint" else from_gguf(open_source(source))
    text = FILLER * (2 * count // len(tokenizer.encode(FILLER)) + 1)   # repeats merge tokens at the seams
    ids = tokenizer.encode(text)[:count]
    assert len(ids) == count, len(ids)
    return ids


def run(args, dtype: str, engine: str, budget: str | None, ids_file: str) -> dict:
    argv = [sys.executable, __file__, "--engine", engine, "--dtype", dtype, "--ids-file", ids_file,
            "--repeats", str(args.repeats)]
    argv += ["--budget", budget] if budget else []
    argv += ["--model", args.model] if args.model else []
    argv += ["--threads", str(args.threads)] if args.threads else []
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"budget_bench: the {engine} {dtype} run failed:\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.splitlines()[-1])
    print(f"budget_bench: {dtype} {engine} {budget or 'unbudgeted'}: {json.dumps(row)}", file=sys.stderr)  # runs take minutes
    return {"dtype": dtype, "engine": engine, "budget_option": budget, **row}


def child(argv=None) -> None:
    """One run in this interpreter: print its figures as one JSON line."""
    p = argparse.ArgumentParser()
    for name in ("--engine", "--dtype", "--ids-file"):
        p.add_argument(name, required=True)
    for name in ("--budget", "--model"):
        p.add_argument(name)
    p.add_argument("--threads", type=int)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    ids = json.loads(Path(args.ids_file).read_text())
    with torch.inference_mode():
        row = (ours if args.engine == "ours" else transformers_prefill)(args, ids, torch)
    print(json.dumps({**row, "threads": torch.get_num_threads()}))


def ours(args, ids: list[int], torch) -> dict:
    from executor.cli import preflight
    from executor.generate import generate
    from executor.model import build_model
    from executor.sampling import Sampler
    from executor.session import Session
    from executor.source import open_source, resolve
    from executor.weights import DTYPES as TORCH
    from executor.weights import assemble
    from planner.sizes import parse_size
    from planner.estimate import RUNTIME_BYTES
    from planner.errors import ArenaError

    import gguf  # noqa: F401  (the reader's code, imported before the baseline: not the run's memory)

    budget = parse_size(args.budget) if args.budget else None
    base = resident()   # before the file is opened
    source = resolve(args.model)
    file = open_source(source)
    nctx = len(ids)     # its one new token takes no position, as in arena run
    try:
        choice = preflight(file.config, None, args.dtype, len(ids), nctx, None, budget, 0, RUNTIME_BYTES)
    except ArenaError as e:
        return {"budget": budget, "error": str(e)}
    if source.kind == "gguf":
        file.forget_metadata()   # as arena run does once its tokenizer is made
    weights = assemble(file, TORCH[args.dtype], torch.device("cpu"))
    del file
    session = Session(build_model(weights, nctx), nctx, choice.chunk, tile=choice.tile)
    loading = reset_peak()

    def once():
        session.reset()
        return generate(session, ids, 1, Sampler(), ignore_eos=True)

    runs = [once() for _ in range(args.repeats)]
    return {"budget": budget, "chunk": choice.chunk, "tile": choice.tile,
            "prefill_tok_s": max(r.prefill_tok_s for r in runs), "peak": max(loading, peak()) - base,
            "run_peak": peak() - base, "estimate": choice.cost["total_bytes"], "token": runs[-1].tokens[0]}


def transformers_prefill(args, ids: list[int], torch) -> dict:
    from transformers import AutoModelForCausalLM

    from executor.source import resolve
    from executor.weights import DTYPES as TORCH

    source = resolve(args.model)
    where = dict(gguf_file=source.path.name) if source.kind == "gguf" else {}
    folder = source.path.parent if source.kind == "gguf" else source.path
    base = resident()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=TORCH[args.dtype], **where).eval()
    model.generation_config.eos_token_id = None
    loading = reset_peak()

    def once():
        start = time.perf_counter()
        out = model.generate(torch.tensor([ids]), max_new_tokens=1, do_sample=False)
        return len(ids) / (time.perf_counter() - start), int(out[0, -1])

    runs = [once() for _ in range(args.repeats)]
    return {"prefill_tok_s": max(r[0] for r in runs), "peak": max(loading, peak()) - base,
            "run_peak": peak() - base, "token": runs[-1][1]}


def resident() -> int:
    """This process's resident memory now, in bytes."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


def peak() -> int:
    """This process's peak resident memory so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> int:
    """The peak so far; then the freed heap handed back and the high-water mark reset to the
    resident memory now (glibc, Linux 4.0 on)."""
    before = peak()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return before


def print_table(rows: list[dict], args) -> None:
    mib = lambda n: f"{n / 2**20:,.1f} MiB"
    threads = next((r["threads"] for r in rows if "threads" in r), "?")
    print(f"prefill of {args.prompt_tokens} tokens, one new token, cpu, {threads} threads\n")
    print("| dtype | engine | budget | chunk / tile | prefill tok/s | vs unbudgeted | peak, loading included | "
          "run's peak | estimate | run's peak / estimate | within budget | token as unbudgeted |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|")
    for dtype in args.dtypes:
        base = next(r for r in rows if r["dtype"] == dtype and r["engine"] == "ours" and not r["budget_option"])
        for r in (r for r in rows if r["dtype"] == dtype):
            budget = r["budget_option"] or "-"
            if "error" in r:
                print(f"| {dtype} | ours | {budget} | {r['error']} ||||||||")
                continue
            ours = r["engine"] == "ours"
            split = f"{r['chunk']} / {r['tile'] or 'default'}" if ours else "-"
            speed = f"{r['prefill_tok_s'] / base['prefill_tok_s']:.2f}x"
            estimate = f"{mib(r['estimate'])} | {r['run_peak'] / r['estimate']:.3f}" if ours else "- | -"
            within = ("yes" if r["run_peak"] <= r["budget"] else "no") if r.get("budget") else "-"
            print(f"| {dtype} | {r['engine']} | {budget} | {split} | {r['prefill_tok_s']:,.1f} | {speed} | "
                  f"{mib(r['peak'])} | {mib(r['run_peak'])} | {estimate} | {within} | "
                  f"{'yes' if r['token'] == base['token'] else 'no'} |")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    child()
