"""llama-arena executor: a real Llama forward pass with every scheduled tensor inside one planned arena.

One module per job:
    source.py      which file or folder --model names (the embedded SmolLM2 by default)
    gguf_file.py   GGUF metadata and tensors (dequantized with the gguf package)
    checkpoint.py  Hugging Face folders: config.json + safetensors
    weights.py     the weights a kernel reads, fused and cast to the run dtype
    tokenizer.py   text <-> token ids with the `tokenizers` library, chat templates
    model.py       one kernel function per step op of schedules/llama.yaml
    session.py     the arena, one plan per call size, the step walk, the persistent KV cache
    sampling.py    greedy / temperature / top-k / top-p choice of the next token
    generate.py    the token loop, streaming text, speed
    cli.py         the `arena run` subcommand (llama_arena.cli registers it)
The planner decides every offset; the executor only turns offsets into typed views.
"""
import os
from contextlib import contextmanager

# libgomp (torch's OpenMP, and kernels.c's) spins a waiting thread 300,000 times before it sleeps.
# Where other processes hold the cores, the spinning takes their time and the run's: three runs
# at once on 2 cores decoded 4-10 tok/s each, 17-35 with 10,000 spins, which cost nothing
# measurable alone (docs/executor.md, Threads). It takes effect where the executor is imported
# before torch (the arena command), and passes to the processes started after it (--tp's ranks,
# the run benchmark's engines); an environment's own setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")


@contextmanager
def subnormals_flushed():
    """Floats under 2^-126 (subnormal) taken and made as zero, by this thread and by the OpenMP
    threads started meanwhile (they inherit its setting, and keep it; those started before keep
    theirs), so a run enters it before its first torch op. A product or division with a
    subnormal operand or result takes a slow path in the CPU: softmax's smallest probabilities in
    a sharp head made prefill attention's products 5-8 times slower, and SwiGLU's vector loop,
    which also computes a result for clamped inputs and then discards it, 7-12 times
    (docs/executor.md, Threads). Values that small change no token. On leaving, this thread's
    setting is torch's default again, for a caller in the same process."""
    import torch
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
