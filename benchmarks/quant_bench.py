"""One decode token's matrix products on the embedded SmolLM2 file, per kind of weight, in one run.

    python benchmarks/quant_bench.py [--repeats 200]

For each matrix the executor multiplies (Q, output, gate, down, and the tied output head; the
fused matrices are these stacked), microseconds per product of one token row with: the
dequantized weight in f32 by torch.mm ((in, out) rows, its fastest layout), the same in f32 and
bf16 as the executor runs them (quant.bind on weights.operand, bound once as a decode step binds
it: executor/kernels.c's matvec), the native GGUF blocks (quant.bind: executor/kernels.c), and torch's int4 kernel on the same
weights (what native weights ran on before: `_weight_int4pack_mm_for_cpu`, bf16 scales; Q8_0 as
two 4-bit halves).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import at_least  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=at_least(1), default=200, help="products per timing (200); the best of 3 counts")
    args = p.parse_args(argv)
    import torch

    from executor.quant import bind
    from executor.weights import operand
    from executor.source import Source, default_model, open_source

    file = open_source(Source(default_model(), "gguf"))
    names = {"wqkv (q_proj)": "model.layers.0.self_attn.q_proj.weight", "wo": "model.layers.0.self_attn.o_proj.weight",
             "w_gate_up (gate)": "model.layers.0.mlp.gate_proj.weight", "w_down": "model.layers.0.mlp.down_proj.weight",
             "output (embedding)": "model.embed_tokens.weight"}
    print(f"{torch.get_num_threads()} threads; microseconds per one-token product")
    print(f"{'matrix':20} {'kind':5} {'out x in':>12} {'f32 mm':>8} {'f32':>8} {'bf16':>8} {'native':>8} {'int4':>8}")
    with torch.inference_mode():
        for label, name in names.items():
            b = file.blocks(name, torch.float32)
            w = b.dequantize()
            x32, x16 = torch.randn(1, w.shape[1]), torch.randn(1, w.shape[1], dtype=torch.bfloat16)
            out32, out16 = torch.empty(1, w.shape[0]), torch.empty(1, w.shape[0], dtype=torch.bfloat16)
            w_mm, w32, w16 = w.t().contiguous(), operand(w), operand(w.to(torch.bfloat16))
            int4 = _int4_parts(w, b.kind, torch)
            times = [_time(lambda: torch.mm(x32, w_mm, out=out32), args.repeats),
                     _time(bind(x32, w32, out32), args.repeats),
                     _time(bind(x16, w16, out16), args.repeats),
                     _time(bind(x32, b, out32), args.repeats),
                     _time(lambda: [torch.ops.aten._weight_int4pack_mm_for_cpu(x16, q, 32, s) for q, s in int4],
                           args.repeats)]
            print(f"{label:20} {b.kind:5} {f'{w.shape[0]} x {w.shape[1]}':>12} " + " ".join(f"{t:8.0f}" for t in times))
    return 0


def _int4_parts(w, kind: str, torch) -> list:
    """torch's int4 layout of the weights' shape, for its kernel's time (the values are not
    the weights': only the time is read): one part, or two for Q8_0."""
    q = torch.randint(0, 16, w.shape, dtype=torch.int32)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
    scales = torch.ones(w.shape[1] // 32, w.shape[0], 2, dtype=torch.bfloat16)
    return [(packed, scales)] * (2 if kind == "Q8_0" else 1)


def _time(run, repeats: int) -> float:
    best = float("inf")
    for _ in range(4):   # the first is a warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best * 1e6


if __name__ == "__main__":
    sys.exit(main())
