"""llama-arena views of a plan: `arena viz` and the traces of `arena run`.

    timeline.py  the time axis every view shares: spans, live bytes, peak, tensor colors
    terminal.py  the lifetime table and the arena map, drawn with rich
    picture.py   the arena map as PNG, SVG and a self-contained HTML page (matplotlib)
    trace.py     Chrome trace event JSON (Perfetto, chrome://tracing), planned or measured
    cli.py       the `arena viz` subcommand
The planner imports neither this package nor the executor; matplotlib is imported only to draw a picture.
"""
