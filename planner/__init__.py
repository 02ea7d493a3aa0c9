"""llama-arena planner: lifetime tables in, one arena with an offset per buffer instance out.

The pipeline, one module per arrow:
    schedule.py   YAML  -> Schedule          (parse and validate the lifetime table)
    lifetimes.py  Schedule + dims -> Lifetimes (unroll repeats, bind shapes, one Instance per lifetime)
    graph.py      Lifetimes -> interference graph (networkx)
    strategies.py blocks -> offsets          (naive, greedy-size, best-fit, auto)
    check.py      independent validity check of any placement
    plan.py       Lifetimes -> Plan          (the JSON-able result)
    options.py    command-line options -> Plan (shared by `arena plan` and `arena viz`)
    report.py     Plan -> the table and summary a terminal shows
    cli.py        the `arena plan` and `arena convert` subcommands
The planner never imports torch.
"""
