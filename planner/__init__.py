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
    cli.py        the `arena plan` and `arena convert` subcommands
The planner imports neither viz/ nor executor/, and never torch.
"""
