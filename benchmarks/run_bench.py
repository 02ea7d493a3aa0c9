"""Ours against transformers' `generate` on the same model, prompt and dtype, in one run.

    python benchmarks/run_bench.py --dtype f32 --tokens 64
    python benchmarks/run_bench.py --weights native bf16 f32   # ours per kind of weights, one table
    python benchmarks/run_bench.py --tp 1 2 3      # tensor parallelism instead: benchmarks/tp_bench.py

Each engine runs in its own fresh interpreter (so peak resident memory is its own) on the same
prompt ids, greedy, never stopping early. Measured per engine: prefill tokens/s, decode
tokens/s (best of --repeats runs after a warm-up), peak resident memory, and activation bytes:
ours is the arena (KV cache included) plus any scratch allocated outside it; transformers' is
the peak of its allocations during generate, above its weights. Also measured, in ours'
interpreter right after its runs: the read bandwidth (a `sum` over 512 MiB) and torch's f32
and bf16 vector-matrix streaming rates (benchmarks/decode_bench.py). Decode reads every
weight and the KV cache once per token, so each engine's memory bound is the bandwidth over
its weight bytes plus the KV bytes of the run's middle position, and decode is reported as a
fraction of it.

With --weights, ours runs once per kind of weights (native: the GGUF blocks as the file has
them, float32 activations; f32, bf16, f16: dequantized) beside transformers in --dtype and
llama.cpp on the same file where llama-cpp-python is installed (the `bench` extra; without it
the table says the peer is missing). --rounds N runs them all N times in turn and keeps each
one's best: on a shared machine the speed drifts over minutes, and turns give each engine the
same drift.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import at_least, children_end_with_us  # noqa: E402
from planner.sizes import parse_size  # noqa: E402

DEFAULT_PROMPT = "Write a short story about a robot who learns to paint, in simple words."


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a .gguf file or a Hugging Face folder (default: the embedded SmolLM2)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--tokens", type=at_least(2), default=64, help="new tokens per run (64; decode needs 2)")
    p.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=at_least(1), help="torch threads (default: torch's own choice)")
    p.add_argument("--repeats", type=at_least(1), default=3, help="measured runs per engine; the best counts (3)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--tp", type=int, nargs="+", metavar="N",
                   help="instead: arena run --tp N for each N side by side (benchmarks/tp_bench.py)")
    p.add_argument("--weights", nargs="+", choices=["native", "f32", "bf16", "f16"],
                   help="instead: ours with each kind of weights side by side, and transformers in --dtype")
    p.add_argument("--budget", nargs="+", metavar="SIZE",
                   help="instead: prefill under each byte budget beside the unbudgeted run and transformers, "
                        "f32 and bf16 (benchmarks/budget_bench.py)")
    p.add_argument("--prompt-tokens", type=at_least(1), default=8192, metavar="N",
                   help="with --budget: the prompt's length in tokens (8192)")
    p.add_argument("--dtypes", nargs="+", choices=["f32", "bf16"], default=["f32", "bf16"],
                   help="with --budget: the dtypes measured (f32 bf16)")
    p.add_argument("--rounds", type=at_least(1), default=1,
                   help="with --weights: run every engine this many times, in turn, and keep each one's best "
                        "(on a shared machine, speed drifts over minutes; 1)")
    p.add_argument("--engine", choices=["ours", "transformers", "llama.cpp"], help=argparse.SUPPRESS)   # a child run
    p.add_argument("--kind", help=argparse.SUPPRESS)   # the child's weights
    p.add_argument("--ids", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.engine:
        print(json.dumps(run_engine(args)))
        return 0
    children_end_with_us()
    ids = _checked(p, args)
    if args.budget:
        from benchmarks.budget_bench import budget_table
        return budget_table(args)
    if args.tp:
        from benchmarks.tp_bench import tp_table
        tp_table(args)
        return 0
    if args.weights:
        weights_table(args, ids)
        return 0
    results = {engine: child(args, engine, ids) for engine in ("ours", "transformers")}
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        report(results, args)
    return 0


def _checked(p: argparse.ArgumentParser, args) -> list[int]:
    """The prompt's ids; what would fail only in a child, minutes in, said at once in one line
    (exit 2)."""
    from planner.errors import ArenaError
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            p.error("--device cuda: torch sees no CUDA device here")
    for size in args.budget or []:
        dtype, _, given = size.rpartition("=")
        if dtype and dtype not in args.dtypes:
            p.error(f"--budget {size}: {dtype} is not among --dtypes ({' '.join(args.dtypes)})")
        try:
            parse_size(given, "--budget")
        except ArenaError as e:
            p.error(str(e))
    try:
        ids = prompt_ids(args)      # the model resolved and read
    except ArenaError as e:
        p.error(str(e))
    if not ids:
        p.error(f"--prompt {args.prompt!r}: no tokens")
    return ids


def prompt_ids(args) -> list[int]:
    from executor.source import open_source, resolve
    from executor.tokenizer import from_folder, from_gguf
    source = resolve(args.model)
    tokenizer = from_folder(source.path) if source.kind == "checkpoint" else from_gguf(open_source(source))
    return tokenizer.encode(args.prompt)


def child(args, engine: str, ids: list[int], kind: str | None = None) -> dict:
    argv = [sys.executable, __file__, "--engine", engine, "--ids", ",".join(map(str, ids)),
            "--tokens", str(args.tokens), "--dtype", args.dtype, "--device", args.device,
            "--repeats", str(args.repeats)]
    argv += ["--kind", kind] if kind else []
    argv += ["--model", args.model] if args.model else []
    argv += ["--threads", str(args.threads)] if args.threads else []
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"run_bench: the {engine} run failed:\n{done.stderr[-3000:]}")
    return json.loads(next(line for line in reversed(done.stdout.splitlines()) if line.startswith("{")))


def run_engine(args) -> dict:
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    ids = [int(i) for i in args.ids.split(",")]
    engine = {"ours": ours, "transformers": transformers_generate, "llama.cpp": llama_cpp}[args.engine]
    with torch.inference_mode():
        result = engine(args, ids, torch)
    result["threads"] = torch.get_num_threads()
    return result


def ours(args, ids, torch) -> dict:
    from benchmarks.decode_bench import read_rates
    from executor.generate import generate
    from executor.model import build_model
    from executor.sampling import Sampler
    from executor.session import Session
    from executor.source import open_source, resolve
    from executor.weights import DTYPES, assemble

    kind = args.kind or args.dtype
    native = kind == "native"
    weights = assemble(open_source(resolve(args.model)), DTYPES["f32" if native else kind],
                       torch.device(args.device), native=native)
    nctx = len(ids) + args.tokens - 1      # the last new token takes no position, as in arena run
    session = Session(build_model(weights, nctx), nctx, len(ids))

    def once():
        session.reset()   # the same arena and KV cache region, a new sequence
        return generate(session, ids, args.tokens, Sampler(), ignore_eos=True)

    once()   # warm-up
    runs = [once() for _ in range(args.repeats)]
    peak_rss = resident_peak()
    scratch = allocated_during(once, torch, args.device)
    return {"engine": "ours", "prefill_tok_s": max(r.prefill_tok_s for r in runs),
            "decode_tok_s": max(r.decode_tok_s for r in runs), "tokens": runs[-1].tokens,
            "peak_rss": peak_rss, "arena": session.backing.numel(), "scratch": scratch,
            "activation_bytes": session.backing.numel() + scratch,
            "weight_bytes": weights.nbytes, "kv_bytes": _kv_read(session.kv.nbytes // nctx, len(ids), args.tokens),
            "rates": read_rates(torch)}


def transformers_generate(args, ids, torch) -> dict:
    from transformers import AutoModelForCausalLM
    from transformers.generation.streamers import BaseStreamer

    from executor.source import resolve
    from executor.weights import DTYPES

    source = resolve(args.model)
    where = dict(gguf_file=source.path.name) if source.kind == "gguf" else {}
    folder = source.path.parent if source.kind == "gguf" else source.path
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[args.dtype], **where).to(args.device).eval()
    prompt = torch.tensor([ids], device=args.device)
    model.generation_config.eos_token_id = None   # never stop early, like our --ignore-eos

    class Clock(BaseStreamer):
        """Times the first new token (the end of prefill) and the last."""
        def __init__(self):
            self.times = []

        def put(self, value):
            self.times.append(time.perf_counter())

        def end(self):
            pass

    def once():
        clock = Clock()
        start = time.perf_counter()
        out = model.generate(prompt, max_new_tokens=args.tokens, do_sample=False, streamer=clock)
        prefill, decode = clock.times[1] - start, clock.times[-1] - clock.times[1]   # times[0]: the prompt
        return len(ids) / prefill, (args.tokens - 1) / decode, out[0, len(ids):].tolist()

    once()
    runs = [once() for _ in range(args.repeats)]
    peak_rss = resident_peak()
    peak = allocated_during(once, torch, args.device)
    return {"engine": "transformers", "prefill_tok_s": max(r[0] for r in runs),
            "decode_tok_s": max(r[1] for r in runs), "tokens": runs[-1][2], "activation_bytes": peak,
            "peak_rss": peak_rss, "weight_bytes": sum(p.nbytes for p in model.parameters()),
            "kv_bytes": _kv_read(_kv_position_bytes(model.config, DTYPES[args.dtype]), len(ids), args.tokens)}


def llama_cpp(args, ids, torch) -> dict:
    """llama.cpp (llama-cpp-python) on the same GGUF file, prompt ids and thread count: greedy
    (the argmax of its logits), never stopping early. Its KV cache is f16, its weights the file's."""
    import numpy as np
    from llama_cpp import Llama

    from executor.source import open_source, resolve

    source = resolve(args.model)
    if source.kind != "gguf":
        sys.exit("run_bench: llama.cpp runs GGUF files only")
    file = open_source(source)
    threads = torch.get_num_threads()
    llm = Llama(model_path=str(source.path), n_ctx=len(ids) + args.tokens, n_threads=threads,
                n_threads_batch=threads, verbose=False)

    def greedy() -> int:   # the last position's logits, which llm.scores keeps only with logits_all
        return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))))

    def once():
        llm.reset()
        start = time.perf_counter()
        llm.eval(ids)
        tokens = [greedy()]
        prefilled = time.perf_counter()
        for _ in range(args.tokens - 1):
            llm.eval(tokens[-1:])
            tokens.append(greedy())
        return len(ids) / (prefilled - start), (args.tokens - 1) / (time.perf_counter() - prefilled), tokens

    once()
    runs = [once() for _ in range(args.repeats)]
    c = file.config
    return {"engine": "llama.cpp", "prefill_tok_s": max(r[0] for r in runs),
            "decode_tok_s": max(r[1] for r in runs), "tokens": runs[-1][2], "peak_rss": resident_peak(),
            "weight_bytes": sum(t.nbytes for t in file.tensors.values()),
            "kv_bytes": _kv_read(2 * c.nlayers * c.nkvh * c.dh * 2, len(ids), args.tokens)}


def _kv_position_bytes(c, dtype) -> int:
    """Keys and values of one position in every layer of transformers' cache."""
    return 2 * c.num_hidden_layers * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) * dtype.itemsize


def _kv_read(position_bytes: int, prompt: int, tokens: int) -> int:
    """KV bytes a decode token reads at the run's middle position (decode reads every earlier one)."""
    return position_bytes * (prompt + tokens // 2)


def resident_peak() -> int:
    """Peak resident memory of this process so far, in bytes (taken before the profiled run)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux reports KiB


def allocated_during(run, torch, device: str) -> int:
    """Peak bytes allocated by tensors during `run`, above what was allocated before it."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    live = peak = 0   # each op's own allocations net of frees, and the frees outside ops, in time order
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def decode_bound(result: dict, rates: dict) -> float:
    """The engine's memory bound, tok/s: read bandwidth / (weight bytes + KV bytes) per token."""
    return rates["sum"] / (result["weight_bytes"] + result["kv_bytes"])


def _rates_line(rates: dict) -> str:
    return (f"read bandwidth (sum over 512 MiB) {rates['sum'] / 1e9:.1f} GB/s; torch's vector-matrix "
            f"products stream {rates['f32 mv'] / 1e9:.1f} GB/s in f32, {rates['bf16 mv'] / 1e9:.1f} GB/s in bf16")


def report(results: dict, args) -> None:
    from rich.console import Console
    from rich.table import Table

    a, b = results["ours"], results["transformers"]
    mib = lambda n: f"{n / 2**20:,.1f} MiB"
    rate = lambda x: f"{x:,.1f}"
    table = Table(title=f"arena run vs transformers generate: {args.dtype}, {args.device}, {a['threads']} threads, "
                        f"{args.tokens} new tokens")
    for column in ("", "ours", "transformers", "ours / transformers"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row("prefill tok/s", rate(a["prefill_tok_s"]), rate(b["prefill_tok_s"]),
                  f"{a['prefill_tok_s'] / b['prefill_tok_s']:.2f}x")
    table.add_row("decode tok/s", rate(a["decode_tok_s"]), rate(b["decode_tok_s"]),
                  f"{a['decode_tok_s'] / b['decode_tok_s']:.2f}x")
    table.add_row("peak resident memory", mib(a["peak_rss"]), mib(b["peak_rss"]), f"{a['peak_rss'] / b['peak_rss']:.2f}x")
    table.add_row("activation bytes", f"{mib(a['activation_bytes'])} (arena + {a['scratch'] / 2**10:,.0f} KiB scratch)",
                  mib(b["activation_bytes"]), f"{a['activation_bytes'] / b['activation_bytes']:.2f}x")
    table.add_row("weights", mib(a["weight_bytes"]), mib(b["weight_bytes"]), "")
    bounds = [decode_bound(r, a["rates"]) for r in (a, b)]
    table.add_row("memory bound tok/s", *(rate(x) for x in bounds), "")
    table.add_row("decode / memory bound", *(f"{r['decode_tok_s'] / x:.0%}" for r, x in zip((a, b), bounds)), "")
    Console().print(table)
    print(_rates_line(a["rates"]))
    same = next((i for i, (x, y) in enumerate(zip(a["tokens"], b["tokens"])) if x != y), len(a["tokens"]))
    print(f"greedy tokens: the first {same} of {len(a['tokens'])} identical")


def weights_table(args, ids: list[int]) -> None:
    """Ours per kind of weights, transformers and, where llama-cpp-python is installed and the
    model is a GGUF file, llama.cpp: each in its own interpreter, all of them --rounds times in
    turn, each engine's best round kept."""
    import importlib.util

    from rich.console import Console
    from rich.table import Table

    from executor.source import resolve

    engines = [(f"ours {kind}", "ours", kind) for kind in args.weights] + [(f"transformers {args.dtype}", "transformers", None)]
    peer = importlib.util.find_spec("llama_cpp") is not None and resolve(args.model).kind == "gguf"
    engines += [("llama.cpp", "llama.cpp", None)] if peer else []
    runs = {}
    for _ in range(args.rounds):
        for name, engine, kind in engines:
            run = child(args, engine, ids, kind)
            if name not in runs or run["decode_tok_s"] > runs[name]["decode_tok_s"]:
                runs[name] = run
    if args.json:
        print(json.dumps(runs, indent=1))
        return
    first = runs[f"ours {args.weights[-1]}"]["tokens"]
    threads = next(iter(runs.values()))["threads"]
    table = Table(title=f"decode on {args.device}, {threads} threads, {len(ids)}-token prompt, "
                        f"{args.tokens} new tokens, best of {args.rounds} round(s) of {args.repeats}")
    table.add_column("")
    for name in runs:
        table.add_column(name, justify="right")
    table.add_row("decode tok/s", *(f"{r['decode_tok_s']:.1f}" for r in runs.values()))
    if peer:
        table.add_row("decode / llama.cpp's", *(f"{r['decode_tok_s'] / runs['llama.cpp']['decode_tok_s']:.2f}"
                                                 for r in runs.values()))
    table.add_row("prefill tok/s", *(f"{r['prefill_tok_s']:.1f}" for r in runs.values()))
    rates = runs[f"ours {args.weights[-1]}"]["rates"]   # the last measured, nearest the transformers run
    table.add_row("memory bound tok/s", *(f"{decode_bound(r, rates):.1f}" for r in runs.values()))
    table.add_row("decode / memory bound", *(f"{r['decode_tok_s'] / decode_bound(r, rates):.0%}" for r in runs.values()))
    table.add_row("weights", *(f"{r['weight_bytes'] / 2**20:.1f} MiB" for r in runs.values()))
    table.add_row("peak resident", *(f"{r['peak_rss'] / 2**20:.1f} MiB" for r in runs.values()))
    table.add_row(f"tokens as ours {args.weights[-1]}",
                  *(f"{_same_prefix(r['tokens'], first)}/{len(first)}" for r in runs.values()))
    Console().print(table)
    print(_rates_line(rates))
    if not peer:
        print("llama.cpp: no figure, " + ("llama-cpp-python is not installed here (pip install -e '.[bench]')"
                                         if importlib.util.find_spec("llama_cpp") is None else "the model is not a GGUF file"))


def _same_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


if __name__ == "__main__":
    sys.exit(main())
