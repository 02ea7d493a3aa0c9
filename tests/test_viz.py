"""`arena viz` and the run trace: every output rendered for the seed layer, the SmolLM2 model
and minimalloc's example, and checked for what it shows, not only that it exists."""
import argparse
import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import matplotlib.image
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from llama_arena.cli import main
from planner.errors import ArenaError
from planner.options import plan_from_args
from planner.plan import Buffer, place
from viz import cli, picture, terminal, timeline, trace

MINIMALLOC = "id,lower,upper,size\nb1,0,3,4\nb2,3,9,4\nb3,0,9,4\nb4,9,21,4\nb5,0,21,4\n"
SEED_STEPS = ["setup", "embedding", "attn_norm", "attn_qkv", "rope", "attention", "attn_output",
              "attn_allreduce", "ffn_norm", "ffn_up", "activation", "ffn_down", "ffn_allreduce"]


def args(*argv):
    parser = argparse.ArgumentParser(prog="arena")
    cli.add_parser(parser.add_subparsers())
    return parser.parse_args(["viz", *argv])


@pytest.fixture(scope="module")
def minimalloc(tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "minimalloc.csv"
    path.write_text(MINIMALLOC)
    return str(path)


@pytest.fixture(scope="module")
def seed():
    return plan_from_args(args("llama-layer", "--set", "n=7"))


@pytest.fixture(scope="module")
def smollm2():
    return plan_from_args(args("llama", "--model", "smollm2-135m", "--set", "n=7"))


@pytest.fixture(scope="module")
def plans(seed, smollm2, minimalloc):
    return {"seed": seed[1], "smollm2": smollm2[1], "minimalloc": plan_from_args(args("--csv", minimalloc))[1]}


def screen(plan, lifetimes, width=160, layers=None) -> list[str]:
    console = Console(record=True, width=width, file=io.StringIO())
    terminal.render(console, plan, lifetimes, terminal.shown_steps(lifetimes, layers))
    return console.export_text().splitlines()


def table_rows(lines) -> list[str]:
    """The table's body lines: they begin with a step number."""
    end = lines.index(next(line for line in lines if line.startswith("arena map")))
    return [line for line in lines[:end] if re.match(r"\s*\d+(-\d+)? \S", line) and "do not fit" not in line]


# --- terminal -------------------------------------------------------------------------------

def test_table_has_one_row_per_step_with_the_seed_cells(seed):
    lifetimes, plan = seed
    rows = table_rows(screen(plan, lifetimes))
    assert [row.split()[1] for row in rows] == SEED_STEPS
    qkv = rows[3].split()
    assert qkv[2:] == ["kernel", "o", "o", "rx", "+w", "59,136"]   # pos o, x o, x_ rx, attn +w
    assert rows[5].split()[2] == "graph"
    peak = [row for row in rows if "peak" in row]
    assert len(peak) == 1 and peak[0].split()[1] == "ffn_up" and "75,264" in peak[0]


def test_whole_model_table_folds_the_middle_layers_unless_asked(smollm2):
    lifetimes, plan = smollm2
    assert len(table_rows(screen(plan, lifetimes, layers=range(0, 30)))) == len(plan.steps) == 335
    rows = table_rows(screen(plan, lifetimes))
    assert len(rows) == 2 + 11 + 1 + 11 + 3
    fold = [row for row in rows if "layers 1-28" in row]
    assert len(fold) == 1 and fold[0].split()[0] == "13-320"
    picked = table_rows(screen(plan, lifetimes, layers=range(3, 5)))
    assert [r.split()[1] for r in picked[:5]] == ["setup", "embedding", "⋮", "attn_norm.3", "attn_qkv.3"]
    assert len(picked) == 2 + 1 + 22 + 1 + 3


def test_a_fold_ends_where_the_next_repeat_block_begins(tmp_path):
    """Two blocks of three layers each: the first's layer 2 and the second's layer 0 are
    two folded rows, not one run labelled 'layers 2-0'."""
    path = tmp_path / "two.yaml"
    path.write_text("dims: {n: n}\ntypes: {Ta: act}\ntensors: {a: 'Ta[n]', b: 'Ta[n, 4]'}\nsteps:\n"
                    "  - {repeat: 3, steps: [{enc: {a: +wx}}]}\n  - {repeat: 3, steps: [{dec: {b: +wx}}]}\n")
    lifetimes, plan = plan_from_args(args(str(path), "--set", "n=2"))
    rows = [row.split() for row in table_rows(screen(plan, lifetimes, layers=range(1, 2)))]
    assert [row[:4] for row in rows] == [["0", "⋮", "layer", "0"], ["1", "enc.1", "+wx", "256"],
                                         ["2", "⋮", "layer", "2"], ["3", "⋮", "layer", "0"],
                                         ["4", "dec.1", "+wx", "256"], ["5", "⋮", "layer", "2"]]


def test_a_block_of_one_layer_folds_apart_from_the_next(tmp_path):
    """A block of one layer, then one of five: layer 0 of each is its own folded row, and the
    second block's run is labelled by its own layers."""
    path = tmp_path / "adjacent.yaml"
    path.write_text("dims: {n: n}\ntypes: {Ta: act}\ntensors: {a: 'Ta[n]', b: 'Ta[n, 4]'}\nsteps:\n"
                    "  - {repeat: 1, steps: [{one: {a: +wx}}]}\n  - {repeat: 5, steps: [{five: {b: +wx}}]}\n")
    lifetimes, plan = plan_from_args(args(str(path), "--set", "n=2"))
    rows = [row.split()[:4] for row in table_rows(screen(plan, lifetimes, layers=range(3, 4)))]
    assert rows == [["0", "⋮", "layer", "0"], ["1-3", "⋮", "layers", "0-2"], ["4", "five.3", "+wx", "256"],
                    ["5", "⋮", "layer", "4"]]


def test_two_equal_repeat_blocks_fold_apart(tmp_path):
    """A YAML alias repeats one block: the two are still two blocks."""
    path = tmp_path / "alias.yaml"
    path.write_text("dims: {n: n}\ntypes: {Ta: act}\ntensors: {a: 'Ta[n]'}\nsteps:\n"
                    "  - &block {repeat: 3, steps: [{enc: {a: +wx}}]}\n  - *block\n")
    lifetimes, plan = plan_from_args(args(str(path), "--set", "n=2"))
    assert [s.block for s in lifetimes.steps] == [0, 0, 0, 1, 1, 1]
    rows = [row.split()[:4] for row in table_rows(screen(plan, lifetimes, layers=range(1, 2)))]
    assert [r[2:4] for r in rows if r[1] == "⋮"] == [["layer", "0"], ["layer", "2"], ["layer", "0"], ["layer", "2"]]


def test_each_repeat_block_shows_its_own_first_and_last_layer(tmp_path):
    """By default a block of five layers folds layers 1-3, and a later block of two shows
    both of its layers: its last is layer 1, not the first block's last."""
    path = tmp_path / "two.yaml"
    path.write_text("dims: {n: n}\ntypes: {Ta: act}\ntensors: {a: 'Ta[n]', b: 'Ta[n, 4]'}\nsteps:\n"
                    "  - {repeat: 5, steps: [{enc: {a: +wx}}]}\n  - {repeat: 2, steps: [{dec: {b: +wx}}]}\n")
    lifetimes, plan = plan_from_args(args(str(path), "--set", "n=2"))
    rows = [row.split()[:3] for row in table_rows(screen(plan, lifetimes))]
    assert rows == [["0", "enc.0", "+wx"], ["1-3", "⋮", "layers"], ["4", "enc.4", "+wx"],
                    ["5", "dec.0", "+wx"], ["6", "dec.1", "+wx"]]


def test_csv_table_has_one_row_per_section_of_time(plans):
    lines = screen(plans["minimalloc"], None)
    rows = [line.split() for line in lines if re.match(r"\s*\d+\.\.\d+ ", line)]
    assert [r[0] for r in rows] == ["0..2", "3..8", "9..20"]
    assert rows[1][:5] == ["3..8", "+x", "x", "o", "12"]       # b2 lives and dies, b3 dies, b5 lives on


def rows_by_definition(plan, lifetimes) -> list[terminal.Row]:
    """What step_rows returns, found the plain way: every instance checked at every span."""
    rows = []
    for span in timeline.spans(plan):
        live = [b for b in plan.buffers if b.first <= span.last and b.last >= span.first]
        used = sum(b.size for b in live if b.memory == "device")
        if lifetimes is None:
            cells = {b.tensor: "o" if b.persistent else
                     ("+" + "m" * (b.memory == "host") if b.first >= span.first else "") +
                     ("x" if b.last <= span.last else "") or "o" for b in live}
            rows.append(terminal.Row(span, used, cells=cells))
        else:
            step = lifetimes.steps[span.first]
            rows.append(terminal.Row(span, used, step.kind, {**{b.tensor: "o" for b in live}, **step.cells},
                                     step.layer, step.block))
    return rows


def test_rows_of_a_whole_model_are_its_lifetimes_step_by_step(smollm2):
    lifetimes, plan = smollm2
    assert len(plan.steps) > 300
    assert terminal.step_rows(plan, lifetimes) == rows_by_definition(plan, lifetimes)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20), st.integers(1, 8), st.integers(1, 64),
                          st.booleans()), min_size=1, max_size=30), st.booleans())
def test_rows_are_the_instances_live_in_each_span(blocks, steps):
    """Tensors with several instances, host ones, and spans that are steps or sections."""
    buffers = [Buffer(f"b{i}", f"t{tensor}", lo, lo + span - 1, size, None, "host" if host else "device")
               for i, (tensor, lo, span, size, host) in enumerate(blocks)]
    plan = place(buffers, "greedy-size", 1, [f"s{k}" for k in range(28)] if steps else [])
    assert terminal.step_rows(plan, None) == rows_by_definition(plan, None)


def test_arena_map_draws_each_instance_in_its_bands_and_steps(seed):
    lifetimes, plan = seed
    lines = screen(plan, lifetimes, width=120)
    lines = lines[lines.index(next(line for line in lines if line.startswith("arena map"))):]
    bands = {int(m[1].replace(",", "")): line for line in lines if (m := re.match(r"\s*([\d,]+) (?!┬)", line))}
    margin, cell = len("75,264") + 1, (120 - 7) // 13      # the map's offset labels, then 8 characters a step
    for b in plan.device():
        where = [(o, line.index(b.name)) for o, line in bands.items() if b.name in line]
        assert len(where) == 1, b.name
        offset, column = where[0]
        assert b.offset <= offset < b.offset + b.size, b.name
        assert margin + b.first * cell <= column < margin + (b.last + 1) * cell, b.name
    peak = next(line for line in lines if "▲" in line)
    assert peak.index("▲") == margin + SEED_STEPS.index("ffn_up") * cell


def test_width_holds_on_a_dumb_terminal(monkeypatch):
    """rich sizes a dumb terminal (TERM=dumb) at 80 columns whatever width it was given."""
    from planner.report import output_console
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert output_console(60).is_dumb_terminal and output_console(60).width == 60
    assert output_console(None).width == 80


def test_a_console_that_cannot_hold_the_glyphs_gets_ascii_ones_in_their_places(smollm2):
    """PYTHONIOENCODING=ascii, say: the map and the table print as with UTF-8, a character for each glyph."""
    lifetimes, plan = smollm2
    keep = terminal.shown_steps(lifetimes, None)
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    terminal.render(Console(file=out, width=160), plan, lifetimes, keep)
    out.flush()
    lines = out.buffer.getvalue().decode("ascii").splitlines()
    unicode = screen(plan, lifetimes, layers=None)
    assert [len(line) for line in lines] == [len(line) for line in unicode]
    assert any("< peak" in line for line in lines) and any("+ arena" in line for line in lines)


def test_arena_map_wraps_to_the_terminal_width(smollm2):
    lifetimes, plan = smollm2
    lines = screen(plan, lifetimes, width=60)
    start = lines.index(next(line for line in lines if line.startswith("arena map")))
    chunks = [line for line in lines[start:] if "┬ arena" in line]
    assert len(chunks) > 1
    assert all(len(line) <= 60 for line in lines[start + 1:] if "┬" in line or "▲" in line)
    assert sum("kv#0" in line for line in lines) == len(chunks)    # the KV cache spans every chunk


def test_a_map_past_map_lines_is_left_to_the_pictures(tmp_path):
    """Each chunk of columns repeats every offset band: 10^4 buffers made a million lines."""
    rows = "".join(f"b{i},{i},{i + 1 + i % 13},{1 + i * 37 % 101}\n" for i in range(600))
    (tmp_path / "many.csv").write_text("id,lower,upper,size\n" + rows)
    _, plan = plan_from_args(args("--csv", str(tmp_path / "many.csv"), "--strategy", "best-fit"))
    lines = screen(plan, None, width=100)
    start = lines.index(next(line for line in lines if line.startswith("arena map")))
    note = " ".join(lines[start + 1:start + 3])
    assert note.startswith("600 instances in ") and "--png, --svg or --html draw the map" in note
    assert len(lines) < 1_000


def test_a_table_of_more_tensors_than_fit_says_how_many(tmp_path):
    rows = "".join(f"b{i},{i},{i + 1 + i % 13},{1 + i * 37 % 101}\n" for i in range(1200))
    (tmp_path / "many.csv").write_text("id,lower,upper,size\n" + rows)
    _, plan = plan_from_args(args("--csv", str(tmp_path / "many.csv"), "--strategy", "best-fit"))
    text = " ".join(" ".join(screen(plan, None, width=100)).split())
    assert "1,200 tensors do not fit in 100 columns: see the arena map" in text


def test_labels_of_wide_characters_keep_the_map_rows_even(tmp_path):
    """A CJK character or an emoji takes two cells of the terminal, not one."""
    from rich.cells import cell_len
    (tmp_path / "wide.csv").write_text("id,lower,upper,size\nκ™💾,0,3,4\nxy,1,2,4\n日本語テンソル,2,5,8\nab,0,2,3\n")
    _, plan = plan_from_args(args("--csv", str(tmp_path / "wide.csv"), "--strategy", "best-fit"))
    lines = screen(plan, None, width=60)
    start = lines.index(next(line for line in lines if line.startswith("arena map")))
    end = next(k for k in range(start, len(lines)) if lines[k].startswith("time"))
    map_lines = lines[start + 2:end + 1]
    assert len({cell_len(line) for line in map_lines}) == 1, map_lines
    assert any("日本語" in line for line in map_lines)


def test_without_colour_each_block_is_filled_with_a_shade_unlike_its_neighbours(seed):
    """Piped output (or NO_COLOR) has no background colours: a block drawn only as one would
    read as free bytes, all but the band with its name."""
    lifetimes, plan = seed
    lines = screen(plan, lifetimes, width=120)
    lines = lines[lines.index(next(line for line in lines if line.startswith("arena map"))):]
    bands = sorted((int(m[1].replace(",", "")), line) for line in lines if (m := re.match(r"\s*([\d,]+) (?!┬)", line)))
    margin, cell = len("75,264") + 1, (120 - 7) // 13
    shade = {}
    for b in plan.device():
        drawn = "".join(line[margin + b.first * cell:margin + (b.last + 1) * cell].replace(f" {b.name} ", "")
                        for offset, line in bands if b.offset <= offset < b.offset + b.size)
        assert len(set(drawn)) == 1 and drawn[0] in terminal.SHADES, (b.name, drawn)
        shade[b.name] = drawn[0]
    touching = [(a, b) for a in plan.device() for b in plan.device() if a.name < b.name and
                (a.first <= b.last + 1 and b.first <= a.last + 1) and (a.offset <= b.offset + b.size and b.offset <= a.offset + a.size)
                and (a.first <= b.last and b.first <= a.last or a.offset < b.offset + b.size and b.offset < a.offset + a.size)]
    assert touching and all(shade[a.name] != shade[b.name] for a, b in touching), shade
    assert not set(terminal.legend(plan, plain=True).plain) & set(terminal.SHADES)


def test_with_colour_blocks_are_coloured_not_shaded(seed):
    lifetimes, plan = seed
    console = Console(record=True, width=120, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    terminal.render(console, plan, lifetimes)
    assert not set(console.export_text()) & set(terminal.SHADES)


@pytest.mark.parametrize("width", [85, 200])
def test_wide_tensor_names_fit_the_table_or_leave_it(tmp_path, width):
    """Headers are measured in terminal cells: counted in characters, eight CJK names seemed to
    fit in 85 columns and were all cut to the same '推理张 …'."""
    names = [f"推理张量{i}" for i in range(8)]
    (tmp_path / "cjk.csv").write_text("id,lower,upper,size\n" + "".join(f"{n},{i},{i + 3},{i + 10}\n"
                                                                         for i, n in enumerate(names)))
    _, plan = plan_from_args(args("--csv", str(tmp_path / "cjk.csv")))
    lines = screen(plan, None, width=width)
    table = lines[:lines.index(next(line for line in lines if line.startswith("arena map")))]
    header = next(line for line in table if "live bytes" in line)
    assert "…" not in header and "time" in header
    assert all(n in header for n in names) if width == 200 else not any(n in header for n in names)


def test_the_step_ruler_keeps_the_mark_of_a_folded_run(smollm2):
    """With two-character columns the step numbers around a folded run took its mark's place."""
    lifetimes, plan = smollm2
    lines = screen(plan, lifetimes, width=80)
    ruler = next(line for line in lines if line.lstrip().startswith("step "))
    assert terminal.FOLDED in ruler


def test_long_tables_and_legends_are_cut_with_a_note(tmp_path, monkeypatch):
    """A CSV problem of 10^5 buffers printed 140,000 table rows and a legend naming each buffer."""
    rows = "".join(f"b{i},{i},{i + 2},{1 + i % 5}\n" for i in range(8))
    (tmp_path / "long.csv").write_text("id,lower,upper,size\n" + rows)
    _, plan = plan_from_args(args("--csv", str(tmp_path / "long.csv")))
    monkeypatch.setattr(terminal, "TABLE_ROWS", 5)
    monkeypatch.setattr(terminal, "LEGEND_TENSORS", 4)
    lines = screen(plan, None, width=200)
    table = lines[:lines.index(next(line for line in lines if line.startswith("arena map")))]
    assert [line.split()[0] for line in table if re.match(r" \d+ ", line)] == ["0", "1", "2", "3", "4"]
    assert "the first 5 rows of 9" in " ".join(table)
    legend = terminal.legend(plan).plain
    assert "b3 " in legend and "b4 " not in legend and "… and 4 more tensors" in legend


# --- pictures -------------------------------------------------------------------------------

def test_one_character_names_label_rectangles_as_narrow_as_the_name(tmp_path):
    """A one-character name needs less width than a line of text's height: rectangles between
    the two lost their labels once (minimalloc's ids are often single digits)."""
    rows = "".join(f"{k},{8 * k},{8 * k + 1},100\n" for k in range(10))
    (tmp_path / "digits.csv").write_text("id,lower,upper,size\n" + rows + "filler,0,80,100\n")
    _, plan = plan_from_args(args("--csv", str(tmp_path / "digits.csv")))
    texts = sorted(t.get_text() for t in picture.figure(plan).axes[0].texts)
    assert texts == sorted([str(k) for k in range(10)] + ["filler"])


@pytest.mark.parametrize("size", [1, 2, 3])
def test_the_offset_axis_of_a_tiny_arena_names_each_byte_once(tmp_path, size):
    """Fractional ticks printed as whole bytes read 0, 0, 0, 0, 0, 1."""
    (tmp_path / "tiny.csv").write_text(f"id,lower,upper,size\na,0,2,{size}\n")
    _, plan = plan_from_args(args("--csv", str(tmp_path / "tiny.csv")))
    fig = picture.figure(plan)
    fig.canvas.draw()
    ax = fig.axes[0]
    shown = [t.get_text() for t, y in zip(ax.get_yticklabels(), ax.get_yticks()) if ax.get_ylim()[0] <= y <= ax.get_ylim()[1]]
    assert len(shown) == len(set(shown)) > 1, shown

@pytest.mark.parametrize("size", [4, 10 ** 18])
def test_the_title_stays_clear_of_the_legend(tmp_path, size):
    """19-digit offsets narrow the axes, and the title as wide as the arena's digits ran
    under the legend."""
    (tmp_path / "big.csv").write_text(f"id,lower,upper,size\na,0,3,{size}\nb,3,6,{size}\nc,0,6,{2 * size}\n")
    _, plan = plan_from_args(args("--csv", str(tmp_path / "big.csv")))
    fig = picture.figure(plan)
    fig.canvas.draw()
    title = fig._suptitle.get_window_extent()
    legend = fig.legends[0].get_window_extent() if fig.legends else None
    assert f"{plan.arena:,} bytes" in fig._suptitle.get_text()
    assert legend is not None and title.x1 < legend.x0


def test_long_names_are_cut_in_the_picture_and_leave_its_width_alone(tmp_path):
    """A 1,000-character tensor and step name: the legend held the whole name, and the
    figure grew with it (a 30,000-character one drew a PNG 120,411 pixels wide)."""
    long = "t" * 1000
    (tmp_path / "long.md").write_text(f"| tensor | graph | {long} | b |\n|---|---|---|---|\n| | | Ta (n) | Ta (n) |\n"
                                      f"| {'s' * 1000} | kernel | +w | +wx |\n| s1 | kernel | rx | |\n")
    _, plan = plan_from_args(args(str(tmp_path / "long.md"), "--set", "n=2"))
    fig = picture.figure(plan)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0] == "t" * (picture.LEGEND_CHARS - 3) + "..." and labels[1] == "b"
    assert fig.get_figwidth() <= picture.MAX_WIDTH


@pytest.mark.parametrize("name", ["seed", "smollm2", "minimalloc"])
def test_figure_has_one_rectangle_per_device_instance_at_its_offset(plans, name):
    plan = plans[name]
    fig = picture.figure(plan)
    rects = {p.get_gid(): p for ax in fig.axes for p in ax.patches if p.get_gid()}
    device = {f"inst-{i}": b for i, b in enumerate(plan.buffers) if b.memory == "device"}
    assert rects.keys() == device.keys()
    for gid, b in device.items():
        r = rects[gid]
        assert (r.get_x(), r.get_y(), r.get_width(), r.get_height()) == (b.first, b.offset, b.last - b.first + 1,
                                                                         b.size)
    lines = [line for ax in fig.axes for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_ydata()[0] for line in lines] == [plan.lower_bound]


@pytest.mark.parametrize("name", ["seed", "smollm2", "minimalloc"])
def test_svg_has_a_titled_group_per_device_instance(plans, name):
    plan = plans[name]
    root = ET.fromstring(picture.svg(plan))
    ns = {"s": "http://www.w3.org/2000/svg"}
    groups = {g.get("id"): g for g in root.iter(f"{{{ns['s']}}}g") if g.get("id", "").startswith("inst-")}
    device = {f"inst-{i}": b for i, b in enumerate(plan.buffers) if b.memory == "device"}
    assert groups.keys() == device.keys()
    for gid, b in device.items():
        title = groups[gid].find("s:title", ns).text
        assert title.startswith(f"{b.name} (tensor {b.tensor})") and f"offset {b.offset:,}, {b.size:,} bytes" in title
        assert groups[gid].find("s:path", ns) is not None


def test_png_shows_every_tensor_color(plans):
    plan = plans["seed"]
    pixels = matplotlib.image.imread(io.BytesIO(picture.png(plan)), format="png")[..., :3]
    seen = set(map(tuple, (pixels.reshape(-1, 3) * 255).round().astype(int).tolist()))
    for b in plan.device():
        color = picture.colors(plan)[b.tensor]
        assert tuple(int(color[i:i + 2], 16) for i in (1, 3, 5)) in seen, b.tensor


def test_offsets_too_wide_for_the_width_say_so_rather_than_draw_nothing(tmp_path):
    path = tmp_path / "huge.csv"
    path.write_text("id,lower,upper,size\na,0,2,1000000000000000\nb,1,3,1\n")
    lifetimes, plan = plan_from_args(args("--csv", str(path)))
    text = " ".join(" ".join(screen(plan, lifetimes, width=20)).split())
    assert "leave no room for the map in 20 columns (it needs 24)" in text


def test_the_arenas_tensors_have_colors_of_their_own(plans):
    """llama.yaml has 19 device tensors and two host ones: all 19 colors differ."""
    plan = plans["smollm2"]
    drawn = {b.tensor for b in plan.device()}
    assert len({picture.colors(plan)[t] for t in drawn}) == len(drawn) <= len(timeline.PALETTE)


def test_html_is_one_self_contained_page(plans):
    page = picture.html(plans["smollm2"])
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 1
    assert not re.search(r"""(src|href)=["'](https?:|//)""", page)       # nothing to fetch
    assert page.count("<title>") == 1 + len(plans["smollm2"].device())   # the page's, one per instance


# --- traces ---------------------------------------------------------------------------------

def slices(events, category):
    return [e for e in events if e["ph"] == "X" and e["cat"] == category]


@pytest.mark.parametrize("name", ["seed", "smollm2", "minimalloc"])
def test_plan_trace_has_a_slice_per_instance_and_peaks_at_the_lower_bound(plans, name):
    plan = plans[name]
    events = json.loads(trace.plan_trace(plan))["traceEvents"]
    instances = {e["name"]: e for e in slices(events, "instance")}
    assert len(slices(events, "instance")) == len(plan.buffers) and instances.keys() == {b.name for b in plan.buffers}
    for b in plan.buffers:
        e = instances[b.name]
        assert (e["args"]["offset"], e["args"]["bytes"]) == (b.offset, b.size)
        assert (e["ts"], e["dur"]) == (b.first * trace.PLANNED_STEP_US, (b.last - b.first + 1) * trace.PLANNED_STEP_US)
    counter = [e["args"]["arena bytes"] for e in events if e["ph"] == "C"]
    assert max(counter) == plan.lower_bound and counter[-1] == 0
    assert len(slices(events, "step")) == len(plan.steps)
    names = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert {b.tensor for b in plan.buffers} <= names


def toy_plan(n):
    """Three steps: a#0 over 0-1, b#0 over 1-2, a#1 at 2; 768 bytes live at most."""
    buffers = [Buffer("a#0", "a", 0, 1, 256, None), Buffer("b#0", "b", 1, 2, 512, None),
               Buffer("a#1", "a", 2, 2, 256, None)]
    plan = place(buffers, "auto", 256, ["s0", "s1", "s2"])
    plan.schedule, plan.dims = "toy", {"n": n}
    return plan


def test_run_trace_lays_calls_end_to_end_with_measured_steps(tmp_path):
    path = tmp_path / "run.json"
    trace.write_run_trace(path, [(toy_plan(7), [0.5, 0.25, 0.125]), (toy_plan(1), [0.001, 0.002, 0.004])])
    events = json.loads(path.read_text())["traceEvents"]
    assert [(e["name"], e["ts"], e["dur"]) for e in slices(events, "call")] == [
        ("call 0 (n=7)", 0, 875_000), ("call 1 (n=1)", 875_000, pytest.approx(7_000))]
    steps = [(e["name"], e["ts"], e["dur"]) for e in slices(events, "step")]
    assert steps[:3] == [("s0", 0, 500_000), ("s1", 500_000, 250_000), ("s2", 750_000, 125_000)]
    assert [s[0] for s in steps[3:]] == ["s0", "s1", "s2"] and steps[3][1] == 875_000
    b0 = [e for e in slices(events, "instance") if e["name"] == "b#0"]
    assert [(e["ts"], e["dur"]) for e in b0][0] == (500_000, 375_000)
    assert b0[1]["ts"] == pytest.approx(876_000) and b0[1]["dur"] == pytest.approx(6_000)
    counter = [(e["ts"], e["args"]["arena bytes"]) for e in events if e["ph"] == "C"]
    assert counter[:4] == [(0, 256), (500_000, 768), (750_000, 768), (875_000, 0)]
    assert max(v for _, v in counter) == 768 == toy_plan(1).lower_bound


def test_a_tensor_named_steps_has_a_track_of_its_own_and_the_counter_starts_at_step_0():
    plan = place([Buffer("steps#0", "steps", 1, 2, 256, None), Buffer("h#0", "h", 0, 2, 64, None, "host"),
                  Buffer("live bytes#0", "live bytes", 0, 0, 64, None, "host")], "auto", 256, ["s0", "s1", "s2"])
    events = json.loads(trace.plan_trace(plan))["traceEvents"]
    tracks = {e["args"]["name"]: e["tid"] for e in events if e["name"] == "thread_name"}
    assert tracks == {"steps": trace.STEPS_TID, "steps (tensor)": trace.STEPS_TID + 1, "h": trace.STEPS_TID + 2,
                      "live bytes (tensor)": trace.STEPS_TID + 3}
    assert {e["tid"] for e in slices(events, "step")} == {trace.STEPS_TID}
    counter = [(e["ts"], e["args"]["arena bytes"]) for e in events if e["ph"] == "C"]
    assert counter == [(0, 0), (1000, 256), (3000, 0)]
    host_only = place([Buffer("h#0", "h", 0, 2, 64, None, "host")], "auto", 256, ["s0", "s1", "s2"])
    assert [e["args"]["arena bytes"] for e in json.loads(trace.plan_trace(host_only))["traceEvents"]
            if e["ph"] == "C"] == [0]


def test_run_trace_needs_one_time_per_step(tmp_path):
    with pytest.raises(ValueError, match="needs 3 non-negative step times, got 2"):
        trace.write_run_trace(tmp_path / "run.json", [(toy_plan(1), [0.1, 0.2])])
    assert not list(tmp_path.iterdir())


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 10), st.integers(1, 64)), min_size=1, max_size=25))
def test_random_problems_map_and_trace(blocks):
    plan = place([Buffer(f"b{i}", f"b{i}", lo, lo + span - 1, size, None) for i, (lo, span, size) in
                  enumerate(blocks)], "auto", 1, [])
    events = json.loads(trace.plan_trace(plan))["traceEvents"]
    counter = [e for e in events if e["ph"] == "C"]
    assert max(e["args"]["arena bytes"] for e in counter) == plan.lower_bound
    origin = min(b.first for b in plan.buffers)      # a CSV's times are traced from the first
    for e in counter:
        t = origin + e["ts"] // trace.PLANNED_STEP_US
        assert e["args"]["arena bytes"] == sum(b.size for b in plan.buffers if b.first <= t <= b.last)
    lines = screen(plan, None, width=50)
    assert all(len(line) <= 50 for line in lines if "┬" in line)


def test_times_near_2_to_the_62_are_traced_and_drawn_exactly():
    """As floats, times this large lose their units: slices of one unit lasted 0 or 2."""
    from viz import picture
    base = 2 ** 62
    plan = place([Buffer("a", "a", base, base, 4, None), Buffer("b", "b", base, base + 1, 8, None),
                  Buffer("c", "c", base + 1, base + 2, 2, None)], "auto", 1, [])
    events = {e["name"]: e for e in slices(json.loads(trace.plan_trace(plan))["traceEvents"], "instance")}
    assert [(events[n]["ts"], events[n]["dur"]) for n in "abc"] == [(0, 1000), (0, 2000), (1000, 2000)]
    fig = picture.figure(plan)
    patches = {p.get_gid(): p for ax in fig.axes for p in ax.patches if p.get_gid()}
    assert sorted((p.get_x(), p.get_width()) for p in patches.values()) == [(0, 1), (0, 2), (1, 2)]
    peaks = [x for line in fig.axes[0].lines if line.get_marker() == "v" for x in line.get_xdata()]
    assert peaks == [0.5]       # the middle of the first time, the peak (a and b: 12 bytes)



def test_a_trace_of_a_span_past_2_to_the_53_is_drawn_shorter(tmp_path):
    """At a millisecond a unit, a CSV spanning 2^62 units traced times past what viewers hold
    (doubles exact to 2^53, nanoseconds in 64 bits)."""
    problem = tmp_path / "long.csv"
    problem.write_text(f"id,lower,upper,size\nb1,0,{2**62},4\nb2,{2**61},{2**61 + 1},8\nb3,{2**61 + 1},{2**62},2\n")
    _, plan = plan_from_args(args("--csv", str(problem)))
    events = json.loads(trace.plan_trace(plan))["traceEvents"]
    assert max(e["ts"] + e.get("dur", 0) for e in events if "ts" in e) == trace.MAX_TRACE_US
    spans = {e["name"]: (e["ts"], e["dur"]) for e in slices(events, "instance")}
    assert spans == {"b1": (0, 2**53), "b2": (2**52, 0), "b3": (2**52, 2**52)}     # one unit is 1/512 us


def test_times_over_the_whole_csv_range_are_drawn(tmp_path):
    """A CSV's lower may be -2^63 and its upper 2^63: a span of 2^64 time units, which no
    integer array of matplotlib's holds (a traceback before)."""
    problem = tmp_path / "wide.csv"
    problem.write_text(f"id,lower,upper,size\nb1,{-2**63},{2**63},4\nb2,0,1,8\n")
    assert cli.run(args("--csv", str(problem), "--png", str(tmp_path / "wide.png"))) == 0
    assert (tmp_path / "wide.png").read_bytes().startswith(b"\x89PNG")


def test_a_time_far_from_the_rest_leaves_the_picture_drawn_by_section(tmp_path):
    """One buffer at 10^12 among times under 20: to a linear axis every other instance was
    narrower than a pixel, and the map blank. By section, each is a column or more."""
    from viz import picture
    problem = tmp_path / "far.csv"
    problem.write_text("id,lower,upper,size\na,0,10,100\nb,5,15,50\nc,10,20,100\nd,1000000000000,1000000000005,3\n")
    _, plan = plan_from_args(args("--csv", str(problem)))
    fig = picture.figure(plan)
    widths = {p.get_gid(): (p.get_x(), p.get_width()) for ax in fig.axes for p in ax.patches if p.get_gid()}
    # sections begin at 0, 5, 10, 15, 20 (nothing live to 10^12) and 10^12
    assert widths == {"inst-0": (0, 2), "inst-1": (1, 2), "inst-2": (2, 2), "inst-3": (5, 1)}
    fig.draw_without_rendering()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert "1,000,000,000,000" in labels and "5" in labels
    near = tmp_path / "near.csv"        # times alike: the axis stays linear
    near.write_text("id,lower,upper,size\na,0,10,100\nb,5,15,50\n")
    _, plan = plan_from_args(args("--csv", str(near)))
    widths = {p.get_gid(): (p.get_x(), p.get_width()) for ax in picture.figure(plan).axes for p in ax.patches
              if p.get_gid()}
    assert widths == {"inst-0": (0, 10), "inst-1": (5, 10)}


# --- the command ----------------------------------------------------------------------------

def test_viz_writes_every_file_it_is_asked_for(tmp_path, minimalloc, capsys):
    out = {ext: tmp_path / f"plan.{ext}" for ext in ("png", "svg", "html", "json")}
    assert cli.run(args("--csv", minimalloc, "--png", str(out["png"]), "--svg", str(out["svg"]),
                        "--html", str(out["html"]), "--trace", str(out["json"]))) == 0
    assert out["png"].read_bytes().startswith(b"\x89PNG")
    assert ET.parse(out["svg"]).getroot().tag.endswith("svg")
    assert "<svg" in out["html"].read_text()
    assert len(slices(json.loads(out["json"].read_text())["traceEvents"], "instance")) == 5
    assert capsys.readouterr().err.count("wrote ") == 4


def test_pictures_take_neither_the_users_matplotlibrc_nor_another_backend(tmp_path, minimalloc):
    """A notebook's MPLBACKEND failed matplotlib's import, and a matplotlibrc asking for TeX
    (not installed) failed the drawing: the pictures are drawn the same in any environment."""
    (tmp_path / "matplotlibrc").write_text("text.usetex: True\nfont.family: NoSuchFont\n")
    drawn = {}
    for name, env in (("plain", {}), ("theirs", {"MATPLOTLIBRC": str(tmp_path),
                                                  "MPLBACKEND": "module://matplotlib_inline.backend_inline"})):
        files = [tmp_path / f"{name}.{ext}" for ext in ("png", "svg")]
        p = subprocess.run([sys.executable, "-m", "llama_arena", "viz", "--csv", minimalloc, "--png", str(files[0]),
                            "--svg", str(files[1])], capture_output=True, text=True, env={**os.environ, **env})
        assert p.returncode == 0 and p.stderr == "".join(f"wrote {f} ({f.suffix[1:]})\n" for f in files), p.stderr
        drawn[name] = [f.read_bytes() for f in files]
    assert drawn["plain"] == drawn["theirs"]


def test_viz_prints_the_terminal_view_without_file_options(capsys):
    assert cli.run(args("llama-layer", "--set", "n=7", "--width", "120")) == 0
    out = capsys.readouterr().out
    assert "lifetime table of llama-layer (13 steps)" in out and "arena map of llama-layer" in out


@pytest.mark.parametrize("columns", ["0", "5"])
def test_a_terminal_narrower_than_the_view_gets_the_narrowest_view(capsys, monkeypatch, columns):
    """As --width is at least 20 columns, so is a detected width (COLUMNS=0 drew nothing)."""
    monkeypatch.setenv("COLUMNS", columns)
    assert cli.run(args("llama-layer", "--set", "n=7")) == 0
    out = capsys.readouterr().out
    assert "lifetime table of" in out and max(len(line) for line in out.splitlines()) == 20


@pytest.mark.parametrize("option", ["--png", "--svg", "--html", "--trace"])
def test_an_unwritable_path_is_a_clear_error_and_leaves_no_file(tmp_path, option):
    missing = tmp_path / "no-such-dir" / "out"
    with pytest.raises(ArenaError, match=f"{option} .*out: the folder .*no-such-dir does not exist"):
        cli.run(args("llama-layer", "--set", "n=7", option, str(missing)))
    target = tmp_path / "a-dir"
    target.mkdir()
    with pytest.raises(ArenaError, match=f"{option} .*a-dir: is a folder, not a file"):
        cli.run(args("llama-layer", "--set", "n=7", option, str(target)))
    assert [p.name for p in tmp_path.iterdir()] == ["a-dir"] and not list(target.iterdir())


@pytest.mark.parametrize("good, bad, path, message", [
    ("--png", "--svg", "missing/a.svg", "--svg missing/a.svg: the folder"),
    ("--svg", "--png", "missing/a.png", "--png missing/a.png: the folder"),
    ("--trace", "--html", "", "--html: the path is empty"),
    ("--png", "--trace", ".", "--trace .: is a folder, not a file"),
    ("--png", "--svg", "a.png", "--svg a.png: the same file as --png"),
])
def test_one_bad_output_path_writes_no_file_at_all(tmp_path, monkeypatch, capsys, good, bad, path, message):
    """Every path is checked before anything is drawn: a good --png does not outlive a bad --svg."""
    monkeypatch.chdir(tmp_path)
    assert main(["viz", "llama-layer", "--set", "n=7", good, "a.png", bad, path]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_after_the_checks_leaves_no_file_at_all(tmp_path, monkeypatch, capsys):
    """A full disk on the second file: the first, written whole already, is not left behind."""
    import errno

    from planner import output
    stage, calls = output._stage, []

    def full_on_the_second(target, data):
        calls.append(target)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return stage(target, data)
    monkeypatch.setattr(output, "_stage", full_on_the_second)
    monkeypatch.chdir(tmp_path)
    assert main(["viz", "llama-layer", "--set", "n=7", "--png", "a.png", "--svg", "b.svg"]) == 1   # as stdout's failures
    assert capsys.readouterr().err == "arena: error: --svg b.svg: cannot write there: No space left on device\n"
    assert list(tmp_path.iterdir()) == []


def test_no_picture_overwrites_its_input(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.csv").write_text("id,lower,upper,size\nb0,0,2,4\n")
    assert main(["viz", "--csv", "p.csv", "--trace", "./p.csv"]) == 2
    assert "--trace ./p.csv: the same file as --csv p.csv, which it would overwrite" in capsys.readouterr().err
    assert (tmp_path / "p.csv").read_text() == "id,lower,upper,size\nb0,0,2,4\n"


MARKUP_SCHEDULE = """\
schedule: "[bold]odd[/]"
dims:
  n: tokens
  d: width
types:
  Ta: act
tensors:
  "[/x]": "Ta[n, d]"
  "[red]": "Ta[n, d]"
  ":x:": "Ta[n, d]"
steps:
  - "[b]make": {"[/x]": +w, ":x:": +w}
  - "[/]use": {"[/x]": rx, "[red]": +w}
  - "end": {"[red]": rx, ":x:": rx}
"""


def test_names_that_look_like_markup_are_shown_as_written(tmp_path, capsys):
    """Rich reads '[red]' as a style and '[/x]' as a broken closing tag: the view shows them literally."""
    path = tmp_path / "markup.yaml"
    path.write_text(MARKUP_SCHEDULE)
    assert main(["viz", str(path), "--set", "n=2", "--set", "d=4", "--width", "120"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "[/x]" in line and "[red]" in line)
    assert header.split()[:5] == ["#", "step", "[/x]", ":x:", "[red]"]
    for text in ("lifetime table of [bold]odd[/]", "[b]make", "[/]use", "[/x]#0", "[red]#0", ":x:#0",
                 "[/x] f32[2,4]", "[red] f32[2,4]"):
        assert text in out
    # the terminal view alone, on a console that reads markup, shows them as well
    lifetimes, plan = plan_from_args(args(str(path), "--set", "n=2", "--set", "d=4"))
    assert "[red]" in "\n".join(screen(plan, lifetimes))


def test_pictures_draw_dollar_signs_and_any_script_as_written(tmp_path, capsys):
    """matplotlib reads '$...$' as a formula (an unknown command in one was a traceback), and warns
    once per glyph its font lacks."""
    path = tmp_path / "dollar.yaml"
    path.write_text(MARKUP_SCHEDULE.replace('"[/x]"', "'$\\foo{$'").replace('"[red]"', '"東京"'))
    out = {ext: tmp_path / f"d.{ext}" for ext in ("png", "svg", "html")}
    assert main(["viz", str(path), "--set", "n=2", "--set", "d=4", *[x for ext, p in out.items()
                                                                     for x in (f"--{ext}", str(p))]]) == 0
    assert all(line.startswith("wrote ") for line in capsys.readouterr().err.splitlines())   # no warning
    fig = picture.figure(plan_from_args(args(str(path), "--set", "n=2", "--set", "d=4"))[1])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "$\\foo{$" in labels and "東京" in labels


@pytest.mark.parametrize("argv, message", [
    (["llama", "--set", "n=7", "--layers", "2-x"], "--layers '2-x': expected a layer or a range"),
    (["llama", "--set", "n=7", "--layers", "5-3"], "--layers '5-3'"),
    (["llama", "--set", "n=7", "--layers", "28-30"], "--layers 28-30: the schedule has layers 0-29"),
    (["llama", "--set", "n=7", "--layers", "99"], "--layers 99: the schedule has layers 0-29"),
    (["llama-layer", "--set", "n=7", "--layers", "0"], "--layers: this plan has no repeated layers"),
    (["llama-layer", "--set", "n=7", "--width", "5"], "--width 5"),
    (["llama-layer"], "dimension 'n'"),
    (["llama", "--set", "n=7", "--layers", "0-1", "--png", "x.png"],
     "--layers shapes the terminal view, which --png replaces; give one or the other"),
    (["llama", "--set", "n=7", "--width", "90", "--trace", "x.json"], "--width shapes the terminal view, which --trace"),
    (["no-such-schedule.yaml", "--set", "n=7"], "no-such-schedule.yaml"),
    (["llama", "--set", "n=7", "--layers", "٣"], "--layers '٣': expected a layer or a range"),
    (["llama", "--set", "n=7", "--layers", "9" * 5000], "expected a layer or a range"),
    (["llama", "--set", "n=7", "--layers", ""], "--layers '': expected a layer or a range"),
    (["llama", "--set", "n=4096", "--set", "nctx=2048"], "--set n=4096: a call of 4096 tokens is longer than the context"),
])
def test_bad_input_is_an_arena_error(argv, message):
    with pytest.raises(ArenaError, match=re.escape(message)):
        cli.run(args(*argv))


def test_a_scalar_tensor_shows_its_type_and_empty_shape(tmp_path, capsys):
    """`Ta[]` is a shape too: the plan's table, the terminal legend and the pictures' titles
    show `f32[]` (only a minimalloc CSV's buffers have no shape to show)."""
    (tmp_path / "s.yaml").write_text("schedule: s\ndims: {n: tokens}\ntypes: {Ta: act}\n"
                                     "tensors: {s: 'Ta[]', a: 'Ta[n]'}\nsteps:\n  - s0: {s: +w, a: +w}\n"
                                     "  - s1: {s: rx, a: rx}\n")
    assert main(["plan", str(tmp_path / "s.yaml"), "--set", "n=4"]) == 0
    assert re.search(r"│ s#0 +│ s +│ f32\[\] +│", capsys.readouterr().out)
    plan = plan_from_args(args(str(tmp_path / "s.yaml"), "--set", "n=4"))[1]
    scalar = next(b for b in plan.buffers if b.tensor == "s")
    assert picture.tooltip(plan, scalar).endswith("\nf32[]")
    assert "s f32[]" in terminal.legend(plan).plain


@pytest.mark.parametrize("cells, memory", [(("+m", "+w"), " host and arena"), (("+w", "+m"), " host and arena"),
                                           (("+m", "+m"), " host"), (("+w", "+w"), "")])
def test_the_legend_names_host_memory_for_every_instance_of_a_tensor(tmp_path, cells, memory):
    """A tensor created again after `x` may take the other memory: the legend says so either way."""
    (tmp_path / "h.yaml").write_text(f"schedule: h\ndims: {{n: tokens}}\ntypes: {{Ta: act}}\ntensors: {{h: 'Ta[n]'}}\n"
                                     f"steps:\n  - s0: {{h: '{cells[0]}'}}\n  - s1: {{h: x}}\n"
                                     f"  - s2: {{h: '{cells[1]}'}}\n  - s3: {{h: rx}}\n")
    plan = plan_from_args(args(str(tmp_path / "h.yaml"), "--set", "n=4"))[1]
    assert terminal.legend(plan).plain.rstrip().endswith(f"h f32[4]{memory}")


def test_a_folded_row_shows_the_most_live_bytes_of_the_rows_it_stands_for():
    from viz import terminal
    from viz.timeline import Span
    rows = [terminal.Row(Span(i, i, f"s{i}"), live, layer=i, block=0) for i, live in enumerate([10, 20, 30, 10])]
    assert [(r.span.label, r.live) for r in terminal.fold(rows, {0, 3})] == [("s0", 10), ("⋮ layers 1-2", 30),
                                                                          ("s3", 10)]


@pytest.mark.parametrize("color, text", [("#7f7f7f", "white"), ("#9467bd", "white"), ("#17becf", "black"),
                                         ((1.0, 1.0, 1.0, 1.0), "black"), ((0.0, 0.0, 0.0, 1.0), "white")])
def test_labels_take_the_ink_that_reads_on_their_colour(color, text):
    from viz.timeline import ink
    assert ink(color) == text


def test_a_folded_column_that_holds_several_instances_is_drawn_as_mixed(tmp_path):
    path = tmp_path / "five.yaml"
    path.write_text("dims: {n: n}\ntypes: {Ta: act}\ntensors: {a: 'Ta[n]'}\nsteps:\n  - {repeat: 5, steps: [{enc: {a: +wx}}]}\n")
    lifetimes, plan = plan_from_args(args(str(path), "--set", "n=2"))
    lines = screen(plan, lifetimes, width=60)
    bottom = lines[lines.index(next(line for line in lines if line.startswith("arena map"))) + 2]
    assert "a#0" in bottom and "a#4" in bottom and "┆" in bottom and "a#1" not in bottom


@pytest.mark.parametrize("width", range(70, 90))
def test_tensor_headers_are_whole_or_left_out(seed, width):
    lifetimes, plan = seed
    header = next(line for line in screen(plan, lifetimes, width=width) if "step" in line and "graph" in line)
    assert "live bytes" in header or "live" not in header


def trace_offsets(path) -> dict[str, int]:
    return {e["name"]: e["args"]["offset"] for e in json.loads(path.read_text())["traceEvents"]
            if e.get("ph") == "X" and "offset" in e.get("args", {})}


@pytest.mark.parametrize("made, strategy", [(["llama-layer", "--set", "n=7"], "exact"),
                                            (["llama", "--set", "n=3", "--set", "nlayers=2"], "greedy-size"),
                                            (["--csv", "MINIMALLOC"], "naive")])
def test_a_saved_plan_is_drawn_as_it_was_saved(tmp_path, minimalloc, capsys, made, strategy):
    """`arena plan --out` then `arena viz --plan`: the saved offsets, not a new plan's (naive's
    20 bytes for minimalloc's example, where a new plan takes 12), and the same summary."""
    made = [minimalloc if a == "MINIMALLOC" else a for a in made]
    saved = tmp_path / ("plan.csv" if "--csv" in made else "plan.json")
    assert main(["plan", *made, "--strategy", strategy, "--out", str(saved)]) == 0
    capsys.readouterr()
    assert main(["plan", *made, "--strategy", strategy, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert main(["viz", "--plan", str(saved), "--trace", str(tmp_path / "t.json")]) == 0
    assert trace_offsets(tmp_path / "t.json") == {b["name"]: b["offset"] for b in plan["buffers"]}
    assert main(["viz", "--plan", str(saved), "--width", "120"]) == 0
    shown = capsys.readouterr().out
    assert re.search(rf"^arena +{plan['arena']:,}", shown, re.M), shown
    if "--csv" in made:
        assert plan["arena"] == 20 and re.search(r"^proven optimal +no \(best bound 12\)", shown, re.M)


def test_viz_of_a_solution_as_a_problem_says_its_offsets_are_not_read(tmp_path, minimalloc, capsys):
    solution = tmp_path / "s.csv"
    assert main(["plan", "--csv", minimalloc, "--strategy", "naive", "--out", str(solution)]) == 0
    capsys.readouterr()
    assert main(["viz", "--csv", str(solution)]) == 0
    assert f"note: {solution}: its offset column is not read; the buffers are planned anew " \
           f"(arena viz --plan {solution} draws the plan it holds)" in capsys.readouterr().err


def edited(plan: dict, change) -> dict:
    plan = json.loads(json.dumps(plan))
    change(plan, {b["name"]: b for b in plan["buffers"]})
    return plan


@pytest.mark.parametrize("change, message", [
    (lambda p, b: b["attn#0"].update(offset=b["x#0"]["offset"]), "attn#0 [0, 26880) and x#0 [0, 16128) are live "
                                                                  "together and overlap"),
    (lambda p, b: b["x#0"].update(offset=1), "x#0: offset 1 is not a non-negative multiple of 256"),
    (lambda p, b: p.update(arena=p["arena"] + 256), "arena 75,520, but its buffers end at 75,264"),
    (lambda p, b: p.update(optimal=False), "proven optimal false, with arena 75,264 and best bound 75,264"),
    (lambda p, b: p.update(lower_bound=p["lower_bound"] + 1), "lower bound 75,265, above the 75,264 bytes live"),
    (lambda p, b: b["x_#0"].update(last=99), "buffer 'x_#0' lives at steps 2..99, outside the plan's 13 steps"),
    (lambda p, b: b["x_#0"].update(size="12"), 'buffers[3].size is "12"; expected an integer'),
    (lambda p, b: b["tokens#0"].update(offset=0), "buffer 'tokens#0' has an offset in host memory"),
    (lambda p, b: p.pop("buffers"), "no 'buffers'; not a plan `arena plan` wrote"),
    (lambda p, b: p.update(ranks=[]), "the plans of the ranks of `arena plan --tp`"),
], ids=["overlap", "misaligned", "arena", "optimal", "lower-bound", "steps", "type", "host", "keys", "ranks"])
def test_a_plan_file_that_is_no_plan_is_refused_naming_it(tmp_path, capsys, change, message):
    good = tmp_path / "plan.json"
    assert main(["plan", "llama-layer", "--set", "n=7", "--out", str(good)]) == 0
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(edited(json.loads(good.read_text()), change)))
    capsys.readouterr()
    assert main(["viz", "--plan", str(path), "--svg", str(tmp_path / "p.svg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"arena: error: {path}: {message}") and "Traceback" not in err, err
    assert not (tmp_path / "p.svg").exists()


@pytest.mark.parametrize("text, message", [
    ("id,lower,upper,size\na,0,3,4\n", "no 'offset' column, so no plan to draw: a problem, not a solution"),
    ("id,lower,upper,size,offset\na,0,3,4,x\n", "buffer 'a' has offset 'x'; offsets are integers from 0 to 2^62"),
    ("id,lower,upper,size,offset\na,0,3,4,0\nb,2,5,4,2\n", "b [2, 6) and a [0, 4) are live together and overlap"),
    ("id,lower,upper,size,alignment,offset\na,0,3,4,8,0\nb,0,3,4,8,4\n",
     "buffer 'b' has offset 4, not a multiple of its alignment 8"),
], ids=["problem", "not-a-number", "overlap", "alignment"])
def test_a_csv_that_is_no_solution_is_refused_naming_it(tmp_path, capsys, text, message):
    path = tmp_path / "s.csv"
    path.write_text(text)
    assert main(["viz", "--plan", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"arena: error: {path}: {message}")


@pytest.mark.parametrize("more", [["llama-layer"], ["--csv", "p.csv"], ["--strategy", "exact"], ["--set", "n=3"]])
def test_plan_with_options_that_make_a_plan_is_refused(tmp_path, capsys, more):
    assert main(["viz", "--plan", str(tmp_path / "plan.json"), *more]) == 2
    assert "makes a plan; --plan" in capsys.readouterr().err


def test_a_saved_schedules_table_shows_lifetimes_and_says_so(tmp_path, capsys):
    """A plan keeps lifetimes, not cells: the persistent KV cache `o` on every row (never created
    or destroyed), host tokens `+m` where they begin, and a caption that says what the rows are."""
    saved = tmp_path / "plan.json"
    assert main(["plan", "llama", "--set", "n=3", "--set", "nlayers=1", "--out", str(saved)]) == 0
    capsys.readouterr()
    assert main(["viz", "--plan", str(saved), "--width", "200"]) == 0
    shown = capsys.readouterr().out
    rows = [line.split() for line in shown.splitlines() if re.match(r"^ *\d+ [a-z]", line)]
    assert len(rows) == 16 and all(row[2] == "o" for row in rows), rows      # kv's column
    assert rows[0][:4] == ["0", "setup", "o", "+m"]
    assert "from a saved plan: each instance's lifetime, not the schedule's cells" in shown


def test_viz_takes_nctx_as_plan_does(tmp_path, capsys):
    """The command that planned draws the same plan: --nctx N is --set nctx=N and n=N in both."""
    assert main(["plan", "llama", "--model", "smollm2-135m", "--nctx", "32", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert main(["viz", "llama", "--model", "smollm2-135m", "--nctx", "32", "--trace", str(tmp_path / "t.json")]) == 0
    assert trace_offsets(tmp_path / "t.json") == {b["name"]: b["offset"] for b in planned["buffers"]}
    assert planned["dims"]["n"] == planned["dims"]["nctx"] == 32


def test_drawing_in_threads_leaves_the_callers_matplotlib_settings(plans):
    """rc_context is the process's: two threads drawing at once could leave one's settings behind."""
    import threading

    import matplotlib
    before = dict(matplotlib.rcParams)
    for _ in range(3):
        threads = [threading.Thread(target=picture.svg, args=(plans["seed"],)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert dict(matplotlib.rcParams) == before


def test_a_plan_within_a_capacity_says_so_and_draws_again(tmp_path, minimalloc, capsys):
    """Its JSON has the keys a miss's object has (fits true), and viz still reads it as a plan."""
    saved = tmp_path / "plan.json"
    assert main(["plan", "llama-layer", "--set", "n=7", "--capacity", "80000", "--out", str(saved)]) == 0
    assert re.search(r"^capacity +80,000 \(78\.12 KiB\): fits$", capsys.readouterr().out, re.M)
    plan = json.loads(saved.read_text())
    assert plan["capacity"] == 80_000 and plan["fits"] is True and plan["arena"] <= 80_000
    assert main(["viz", "--plan", str(saved), "--trace", str(tmp_path / "t.json")]) == 0
