"""Decode against the memory bound at several context lengths: ours per kind of weights beside
transformers, in one run.

    python benchmarks/decode_bench.py                    # contexts 16 1000 4000 8000; f32 bf16 native
    python benchmarks/decode_bench.py --context 4000 --weights f32 --tokens 16

A decode token reads every weight once and the keys and values of every earlier position, so
it takes at least (weight bytes + KV bytes per token) / read bandwidth: the memory bound. The
read bandwidth is measured in the same run, before each context's timings, as a `sum` over a
512 MiB float32 tensor, and every row's bound takes the best of the run (on a shared machine
one measurement can come out low, and a bound under the rate decode reached); the rates at
which torch's f32 and bf16 vector-matrix products stream a 256 MiB matrix (in the layouts the
executor stores) are printed beside it, since they, not memory, are what a dense decode runs
into first.

The context is made, not prefilled: each engine's KV cache is filled with random keys and
values for that many positions (decode's work does not depend on their values, and an
8,000-token prefill takes minutes on a 2-core CPU), then --tokens tokens are decoded one at
a time, best of --repeats runs. Ours: the session's arena kv and its length. transformers:
a DynamicCache of that length (cropped back after each run), its model called one token at a
time as `generate` does, in the kind's dtype (f32 beside native).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import at_least  # noqa: E402

GB = 1e9


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", choices=["native", "f32", "bf16"], default=["f32", "bf16", "native"])
    p.add_argument("--context", type=at_least(1), nargs="+", default=[16, 1000, 4000, 8000], help="positions before decode")
    p.add_argument("--tokens", type=at_least(1), default=16, help="tokens decoded per run (16)")
    p.add_argument("--repeats", type=at_least(1), default=3, help="runs per engine and context; the best counts (3)")
    p.add_argument("--threads", type=at_least(1), help="torch threads (default: torch's own choice)")
    p.add_argument("--no-transformers", action="store_true", help="ours alone")
    args = p.parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with torch.inference_mode():
        for kind in args.weights:
            nctx = max(args.context) + args.tokens
            ours = Ours(kind, nctx, torch)
            theirs = None if args.no_transformers else Transformers("f32" if kind == "native" else kind, torch)
            for context in args.context:
                rates = read_rates(torch)
                engines = [ours.rate(context, args.tokens, args.repeats)]
                engines += [theirs.rate(context, args.tokens, args.repeats)] if theirs else []
                rows.append((kind, context, rates, engines))
                print(f"decode_bench: {kind} at {context} positions: " +
                      ", ".join(f"{rate:.1f} tok/s" for rate, _ in engines), file=sys.stderr, flush=True)
            del ours, theirs
    bandwidth = max(rates["sum"] for _, _, rates, _ in rows)
    print(f"{torch.get_num_threads()} threads, {args.tokens} tokens per run, best of {args.repeats}; "
          f"bound = read bandwidth (the run's best, {bandwidth / GB:.1f} GB/s) / (weight + KV bytes per token)")
    print(f"{'kind':7} {'context':>7} {'sum GB/s':>8} {'f32 mv':>6} {'bf16 mv':>7} {'MB/token':>8} "
          f"{'bound':>6} {'ours':>6} {'of bound':>8} {'transformers':>12} {'of its bound':>12}")
    for row in rows:
        _print_row(*row, bandwidth)
    return 0


def read_rates(torch) -> dict[str, float]:
    """Bytes per second read by a `sum` over 512 MiB of float32, and streamed by one-row products
    with a 256 MiB matrix in f32 ((in, out) rows, where torch's is fastest) and in bf16 ((out,
    in) rows, transposed): the best of five each."""
    a = torch.ones(2**27)
    rates = {"sum": a.nbytes / _best(lambda: a.sum(), 5)}
    del a
    w = torch.ones(4096, 2**14)
    x, y = torch.ones(1, 4096), torch.empty(1, 2**14)
    rates["f32 mv"] = w.nbytes / _best(lambda: torch.mm(x, w, out=y), 5)
    w = torch.ones(2**15, 4096, dtype=torch.bfloat16)
    x, y = x.to(torch.bfloat16), torch.empty(1, 2**15, dtype=torch.bfloat16)
    rates["bf16 mv"] = w.nbytes / _best(lambda: torch.mm(x, w.t(), out=y), 5)
    return rates


def bound_tok_s(bytes_per_token: int, bandwidth: float) -> float:
    """The memory bound: tokens/s if a token took only the time to read its bytes once."""
    return bandwidth / bytes_per_token


def _best(run, repeats: int) -> float:
    run()   # a warm-up: the first pass also faults pages in
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


class Ours:
    """The executor on the embedded SmolLM2 file, one session of nctx positions."""

    def __init__(self, kind: str, nctx: int, torch):
        from executor.model import build_model
        from executor.session import Session
        from executor.source import open_source, resolve
        from executor.weights import DTYPES, assemble
        native = kind == "native"
        weights = assemble(open_source(resolve(None)), DTYPES["f32" if native else kind],
                           torch.device("cpu"), native=native)
        self.session = Session(build_model(weights, nctx), nctx, 1)
        self.session.kv.normal_()   # random keys and values for every position
        self.weight_bytes = weights.nbytes
        self.kv_bytes_per_position = self.session.kv.nbytes // nctx

    def rate(self, context: int, tokens: int, repeats: int) -> tuple[float, int]:
        """(decode tok/s, bytes read per token at the run's middle position)."""
        from executor.sampling import Sampler
        s, sampler = self.session, Sampler()

        def run():
            s.reset()
            s.length = context   # the positions before it hold the random keys and values
            token = 1
            for _ in range(tokens):
                token = s.forward([token], sampler)
        kv = self.kv_bytes_per_position * (context + tokens // 2)
        return tokens / _best(run, repeats), self.weight_bytes + kv


class Transformers:
    """transformers' Llama on the same GGUF file (dequantized to dtype), decoding over a DynamicCache."""

    def __init__(self, dtype: str, torch):
        from transformers import AutoModelForCausalLM

        from executor.source import resolve
        from executor.weights import DTYPES
        source = resolve(None)
        self.torch, self.dtype = torch, DTYPES[dtype]
        self.model = AutoModelForCausalLM.from_pretrained(source.path.parent, gguf_file=source.path.name,
                                                          dtype=self.dtype).eval()
        self.weight_bytes = sum(p.nbytes for p in self.model.parameters())
        c = self.model.config
        self.layers, self.kv_shape = c.num_hidden_layers, (c.num_key_value_heads, c.hidden_size // c.num_attention_heads)

    def rate(self, context: int, tokens: int, repeats: int) -> tuple[float, int]:
        from transformers import DynamicCache
        torch = self.torch
        heads, dh = self.kv_shape
        layers = [tuple(torch.randn(1, heads, context, dh, dtype=self.dtype) for _ in "kv") for _ in range(self.layers)]
        cache = DynamicCache(layers)

        def run():
            if cache.get_seq_length() > context:
                cache.crop(context - cache.get_seq_length())   # a negative count: the positions to drop
            ids = torch.tensor([[1]])
            for _ in range(tokens):
                logits = self.model(input_ids=ids, past_key_values=cache, use_cache=True).logits
                ids = logits[:, -1:].argmax(-1)
        kv = 2 * self.layers * heads * dh * self.dtype.itemsize * (context + tokens // 2)
        return tokens / _best(run, repeats), self.weight_bytes + kv


def _print_row(kind: str, context: int, rates: dict[str, float], engines: list[tuple[float, int]],
               bandwidth: float) -> None:
    (ours, ours_bytes), *rest = engines
    bound = bound_tok_s(ours_bytes, bandwidth)
    line = (f"{kind:7} {context:7d} {rates['sum'] / GB:8.1f} {rates['f32 mv'] / GB:6.1f} {rates['bf16 mv'] / GB:7.1f} "
            f"{ours_bytes / 1e6:8.0f} {bound:6.1f} {ours:6.1f} {ours / bound:8.0%}")
    for rate, nbytes in rest:
        line += f" {rate:12.1f} {rate / bound_tok_s(nbytes, bandwidth):12.0%}"
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
