"""What each rank runs in the tensor-parallel tests: `run(spec)` is started in every rank
by the launcher (`executor.parallel.launch`), joins the group, loads its shard of the
weights, runs the spec's prompts and saves what it saw for the test to compare."""
from __future__ import annotations

import torch

import executor.session as session_module
from executor.model import KERNELS, build_model
from executor.parallel import join, leave
from executor.sampling import Sampler
from executor.session import TORCH_DTYPES, Session
from executor.source import Source, open_source
from executor.quant import Packed
from executor.weights import DTYPES, assemble
from planner.shards import shards

from arena_checks import check_views, spying


def run(spec: dict) -> None:
    """spec: model path and kind, dtype, native, prompts (token ids), new tokens, feed (ids to feed
    after the prompt instead of sampling: teacher forcing), whether to check the arena, out."""
    group = join("cpu")
    try:
        file = open_source(Source(spec["path"], spec["kind"]))
        c = file.config
        shard = shards(c.nh, c.nkvh, c.di, group.size)[group.rank]
        with torch.inference_mode():
            weights = assemble(file, DTYPES[spec["dtype"]], torch.device("cpu"), shard=shard,
                               native=spec.get("native", False))
            results = [_generate(weights, group, prompt, spec) for prompt in spec["prompts"]]
        packed = all(isinstance(w, Packed) for w in (weights.layers[0].wqkv, weights.layers[0].w_down))
        torch.save({"results": results, "dims": weights.dims(), "packed": packed, "threads": torch.get_num_threads()},
                   f"{spec['out']}.{group.rank}")
    finally:
        leave()


def _generate(weights, group, prompt: list[int], spec: dict) -> dict:
    """Greedy tokens (or, with spec['feed'], the fed ones) and the logits after each call."""
    nctx = len(prompt) + spec["new_tokens"]
    records: list = []
    if spec.get("check_arena"):
        session_module.KERNELS = spying(KERNELS, records, lambda: session)
    session = Session(build_model(weights, nctx, group), nctx, len(prompt))
    tokens, logits = [session.forward(prompt, Sampler())], [session.logits()[0]]
    feed = spec.get("feed")
    while len(tokens) < spec["new_tokens"]:
        tokens.append(session.forward([feed[len(tokens) - 1] if feed else tokens[-1]], Sampler()))
        logits.append(session.logits()[0])
    if spec.get("check_arena"):
        session_module.KERNELS = KERNELS
        check_views(session, records, len(prompt), len(tokens), TORCH_DTYPES)
    return {"tokens": tokens, "logits": torch.stack(logits)}


def bad_input_then_linger() -> None:
    """The race `launch` must read right: rank 0 says a fault in the input and is slow to exit
    (leaving its group, say); rank 1 fails in its wake, and the launcher sees it fail first."""
    import os
    import sys
    import time
    from pathlib import Path

    from executor.parallel import SAID, bad_input
    if os.environ["RANK"] == "0":
        bad_input(["the table's fault"])
        time.sleep(5)
        sys.exit(2)
    while not Path(os.environ[SAID], "0").exists():
        time.sleep(0.01)
    sys.exit(1)
