"""Tensor parallelism side by side: `arena run --tp N` for each N, on the same prompt.

    python benchmarks/run_bench.py --tp 1 2 3      # (or this file directly, with the same options)

For each N: prefill and decode tok/s (the best of --repeats runs), the share of decode
time spent in the two all-reduce steps (from rank 0's `--trace`, which times every step),
and each rank's weight, KV cache and arena bytes. Greedy tokens are compared with N = 1.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ALL_REDUCES = ("attn_allreduce", "ffn_allreduce")


def tp_table(args) -> None:
    runs = {n: _measure(args, n) for n in args.tp}
    if args.json:
        print(json.dumps(runs, indent=1))
        return
    mib = lambda n: f"{n / 2**20:,.1f}"
    base = runs[args.tp[0]]
    print(f"arena run --tp N: {args.dtype}, {args.device}, {args.tokens} new tokens, best of {args.repeats}\n")
    print("| N | prefill tok/s | decode tok/s | decode vs N=1 | all-reduce share of decode | "
          "per rank: weights / KV / arena (MiB) | tokens as N=1 |")
    print("|---|---:|---:|---:|---:|---|---|")
    for n, r in runs.items():
        ranks = "; ".join(f"{mib(x['weight_bytes'])} / {mib(x['kv_bytes'])} / {mib(x['arena'])}" for x in r["ranks"])
        print(f"| {n} | {r['prefill_tok_s']:.1f} | {r['decode_tok_s']:.1f} | "
              f"{r['decode_tok_s'] / base['decode_tok_s']:.2f}x | {r['allreduce_share']:.1%} | {ranks} | "
              f"{'yes' if r['tokens'] == base['tokens'] else 'no'} |")


def _measure(args, n: int) -> dict:
    command = [sys.executable, "-m", "llama_arena", "run", "--prompt", args.prompt, "--max-new-tokens",
               str(args.tokens), "--ignore-eos", "--dtype", args.dtype, "--device", args.device, "--tp", str(n),
               "--json"] + (["--model", args.model] if args.model else [])
    best = None
    for _ in range(args.repeats):
        run = _json(command)
        if best is None or run["decode_tok_s"] > best["decode_tok_s"]:
            best = run
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        _json(command + ["--trace", str(trace)])
        best["allreduce_share"] = _allreduce_share(json.loads(trace.read_text()))
    best["ranks"] = best.get("ranks") or [{k: best[k] for k in ("arena", "kv_bytes", "weight_bytes")}]
    return best


def _json(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"tp_bench: {' '.join(command[2:])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def _allreduce_share(trace: dict) -> float:
    """Of the decode calls' step time, the part in the all-reduce steps (rank 0's view)."""
    calls = [e for e in trace["traceEvents"] if e.get("cat") == "call"]
    decode = [(c["ts"], c["ts"] + c["dur"]) for c in calls[1:]]
    steps = [e for e in trace["traceEvents"] if e.get("cat") == "step" and any(a <= e["ts"] < b for a, b in decode)]
    total = sum(e["dur"] for e in steps)
    return sum(e["dur"] for e in steps if e["name"].split(".")[0] in ALL_REDUCES) / total if total else 0.0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.run_bench import main
    sys.exit(main())
