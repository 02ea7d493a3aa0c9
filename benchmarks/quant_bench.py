"""One decode token's matrix products on the embedded SmolLM2 file, per kind of weight, in one run.

    python benchmarks/quant_bench.py [--repeats 200]

For each matrix shape the executor multiplies (fused Q|K|V, output, fused gate|up, down, and
the tied output head), microseconds per product of one token row with: the dequantized
weight in f32 and bf16 (torch.mm into `out`), the native packed weight (quant.matmul, which
copies the int4 kernel's result into `out`), and the copy alone. For the Q8_0 head also
torch's _weight_int8pack_mm with one scale per row (its requantization error is printed:
it is not exact for Q8_0's per-32 scales, which is why native Q8_0 is two 4-bit halves).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=200, help="products per timing (200); the best of 3 counts")
    args = p.parse_args(argv)
    import torch

    from executor.quant import matmul, pack
    from executor.source import Source, default_model, open_source

    file = open_source(Source(default_model(), "gguf"))
    names = {"wqkv (q_proj)": "model.layers.0.self_attn.q_proj.weight", "wo": "model.layers.0.self_attn.o_proj.weight",
             "w_gate_up (gate)": "model.layers.0.mlp.gate_proj.weight", "w_down": "model.layers.0.mlp.down_proj.weight",
             "output (embedding)": "model.embed_tokens.weight"}
    print(f"{torch.get_num_threads()} threads; microseconds per one-token product")
    print(f"{'matrix':20} {'kind':5} {'out x in':>12} {'f32 mm':>8} {'bf16 mm':>8} {'native':>8} {'copy':>6}")
    with torch.inference_mode():
        for label, name in names.items():
            b = file.blocks(name)
            w = b.dequantize()
            packed = pack(b, torch.bfloat16)
            x32, x16 = torch.randn(1, w.shape[1]), torch.randn(1, w.shape[1], dtype=torch.bfloat16)
            out32, out16 = torch.empty(1, w.shape[0]), torch.empty(1, w.shape[0], dtype=torch.bfloat16)
            w32, w16 = w.t().contiguous(), w.to(torch.bfloat16).t()   # weights.operand's layouts
            times = [_time(lambda: torch.mm(x32, w32, out=out32), args.repeats),
                     _time(lambda: torch.mm(x16, w16, out=out16), args.repeats),
                     _time(lambda: matmul(x16, packed, out16), args.repeats),
                     _time(lambda: out16.copy_(out32.to(torch.bfloat16)), args.repeats)]
            print(f"{label:20} {b.kind:5} {f'{w.shape[0]} x {w.shape[1]}':>12} "
                  + " ".join(f"{t:8.0f}" for t in times[:3]) + f" {times[3]:6.0f}")
            if b.kind == "Q8_0":
                _int8_row_scales(w, x16, args.repeats, torch)
    return 0


def _int8_row_scales(w, x, repeats: int, torch) -> None:
    """torch's int8 kernel with one scale per row: its time, and how far its weights are from Q8_0's."""
    scale = w.abs().amax(dim=1) / 127
    q = torch.round(w / scale[:, None]).to(torch.int8)
    error = (q.float() * scale[:, None] - w).abs().max() / w.abs().max()
    t = _time(lambda: torch.ops.aten._weight_int8pack_mm(x, q, scale.to(torch.bfloat16)), repeats)
    print(f"{'  int8, row scales':20} {'':5} {'':>12} {'':>8} {'':>8} {t:8.0f}   "
          f"weights off by up to {error:.2%} of the largest")


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
