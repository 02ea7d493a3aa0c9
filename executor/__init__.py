"""llama-arena executor: a real Llama forward pass with every scheduled tensor inside one planned arena.

One module per job:
    source.py      which file or folder --model names (the embedded SmolLM2 by default)
    gguf_file.py   GGUF metadata and tensors (dequantized with the gguf package, or as native blocks)
    checkpoint.py  Hugging Face folders: config.json + safetensors
    weights.py     the weights a kernel reads, fused and cast to the run dtype (or kept as blocks)
    quant.py       native Q4_0, Q4_1 and Q8_0 blocks and their products (kernels.c, compiled)
    tokenizer.py   text <-> token ids with the `tokenizers` library
    chat.py        chat templates, rendered as transformers renders them
    model.py       one kernel function per step op of schedules/llama.yaml
    session.py     the arena, one plan per call size, the step walk, the persistent KV cache
    sampling.py    greedy / temperature / top-k / top-p choice of the next token
    generate.py    the token loop, streaming text, speed
    parallel.py    tensor parallelism: the ranks' process group, and launching them
    cli.py         the `arena run` subcommand (llama_arena.cli registers it)
The planner decides every offset; the executor only turns offsets into typed views.
"""
import os

# libgomp (torch's OpenMP, and kernels.c's) spins a waiting thread 300,000 times before it sleeps.
# Where other processes hold the cores, the spinning takes their time and the run's: three runs
# at once on 2 cores decoded 4-10 tok/s each, 17-35 with 10,000 spins, which cost nothing
# measurable alone (docs/executor.md, Threads). It takes effect where the executor is imported
# before torch (the arena command), and passes to the processes started after it (--tp's ranks,
# the run benchmark's engines); an environment's own setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
