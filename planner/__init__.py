"""llama-arena planner: lifetime tables in, one arena with an offset per buffer instance out.

The pipeline, one module per arrow:
    reader.py     YAML -> Schedule             (parse and validate the lifetime table)
    schedule.py   the Schedule as data, the rules of cells and names, and back to YAML
    markdown.py   a markdown lifetime table -> Schedule (the seed's own form)
    lifetimes.py  Schedule + dims -> Lifetimes (unroll repeats, bind shapes, one Instance per lifetime)
    models.py     the dims of a preset, a config.json or a GGUF file
    plan.py       Lifetimes -> Plan            (offsets from place/, then the check; JSON-able)
    place/        blocks -> offsets            (the strategies, the exact search, `auto`)
    check.py      the independent validity check every plan passes
    csvio.py      minimalloc's CSV problems and solutions
    graph.py      Plan -> interference graph (networkx), for `arena plan --graph`
    options.py    command-line options -> Plan (shared by `arena plan` and `arena viz`)
    report.py     Plan -> the table and summary a terminal shows
    shards.py     the split of a model's heads and FFN columns over tensor-parallel ranks
    calls.py      the dims one call binds beyond the model's: its tokens n and key tile
    estimate.py   what a run allocates (weights, KV cache, arena, RoPE, workspace) from the dims
    budget.py     the prefill chunk and key tile that fit a --budget
    gguf_header.py, gguf_tensors.py   a GGUF file's header, and its tensors checked from it
    expr.py       shape expressions such as (nh + nkvh + nkvh) * dh, without eval()
    padding.py    CSV sizes that are not multiples of --align
    sizes.py      byte counts as people write them (512MiB, 1.5GB)
    output.py     output files written whole or not at all
    errors.py     the faults the CLI turns into one line and an exit code
    progress.py   the bar on stderr while a plan takes long
    compiled.py   the compiled parts (place/*.c), loaded with a check that they are built
    cli.py        the `arena plan` and `arena convert` subcommands
The planner imports neither viz/ nor executor/, and never torch.
"""
