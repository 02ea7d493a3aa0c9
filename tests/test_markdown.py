"""The seed's own markdown table reads as the same lifetimes as schedules/llama-layer.yaml."""
from pathlib import Path

import pytest

from llama_arena.cli import main
from planner.errors import ArenaError
from planner.lifetimes import bind
from planner.markdown import convert
from planner.models import PRESETS
from planner.reader import load, loads
from planner.schedule import to_yaml

SEED = Path(__file__).resolve().parents[1] / "docs" / "seed-layer.md"      # the seed's table, shipped as it is
GIVEN = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "000_a1c78c6a9d0b085a.txt"


@pytest.mark.skipif(not GIVEN.is_file(), reason="the seed documents are not beside this checkout")
def test_the_shipped_seed_table_is_the_seeds_own():
    assert SEED.read_bytes() == GIVEN.read_bytes()


def comparable(lifetimes):
    return ([(s.name, s.kind, s.cells) for s in lifetimes.steps],
            [(i.name, i.first, i.last, i.shape, i.dtype, i.size, i.memory) for i in lifetimes.instances])


@pytest.mark.parametrize("n", [1, 7, 512])
def test_seed_table_converted_gives_the_layer_lifetimes(n):
    dims = {**PRESETS["open_llama_3b"], "n": n}
    from_seed = bind(convert(SEED), dims, "f16")
    from_yaml = bind(load("schedules/llama-layer.yaml"), dims, "f16")
    assert comparable(from_seed) == comparable(from_yaml)


def test_printed_yaml_reads_back_to_the_same_lifetimes():
    dims = {**PRESETS["smollm2-135m"], "n": 7}
    seed = convert(SEED)
    assert comparable(bind(loads(to_yaml(seed), "converted.yaml"), dims)) == comparable(bind(seed, dims))


def test_a_large_table_printed_as_yaml_reads_back(tmp_path):
    """Every cell written out, 120,000 values: the limit that keeps YAML's aliases from
    expanding a small file to billions of values refused what convert printed."""
    tensors, steps = 60, 1000
    rows = [f"| s{i} | kernel | " + " | ".join("+" if i == 0 else "x" if i == steps - 1 else "r" if i % 7 == k % 7 else "o"
                                               for k in range(tensors)) + " |" for i in range(steps)]
    table = tmp_path / "big.md"
    table.write_text("\n".join([f"| step | graph | {' | '.join(f't{k}' for k in range(tensors))} |",
                                 "|" + "---|" * (tensors + 2), "| | | " + " | ".join(["Ta (n)"] * tensors) + " |", *rows]))
    converted = convert(table)
    text = to_yaml(converted)
    assert text.count(": o") > 50_000
    dims = {"n": 4, "d": 1}
    assert comparable(bind(loads(text, "big.yaml"), dims)) == comparable(bind(converted, dims))


@pytest.mark.parametrize("strip", ["outer pipes", "leading pipes"])
def test_a_table_without_outer_pipes_reads_as_with_them(tmp_path, strip):
    """GitHub's tables may leave out the pipes at either end of a row."""
    lines = SEED.read_text(encoding="utf-8").split("\n")
    cut = [line.strip().removeprefix("|") for line in lines]
    if strip == "outer pipes":
        cut = [line.removesuffix("|") for line in cut]
    (tmp_path / "bare.md").write_text("\n".join(cut), encoding="utf-8")
    dims = {**PRESETS["open_llama_3b"], "n": 6}
    assert comparable(bind(convert(tmp_path / "bare.md"), dims)) == comparable(bind(convert(SEED), dims))


def test_lines_with_pipes_beside_the_table_are_prose(tmp_path):
    """Only a line over a |---| rule starts a table whose rows need no leading pipe: a heading
    or a sentence with a pipe just before or after the seed's table is not one of its rows."""
    lines = SEED.read_text(encoding="utf-8").split("\n")
    header = next(i for i, line in enumerate(lines) if line.startswith("| tensor"))
    end = max(i for i, line in enumerate(lines) if line.startswith("|")) + 1
    lines[end:end] = ["Note: `x|x_` are the residual and its norm."]
    lines[header:header] = ["# Lifetimes | LLaMA", "The table (`a|b` means either):"]
    (tmp_path / "prose.md").write_text("\n".join(lines), encoding="utf-8")
    dims = {**PRESETS["open_llama_3b"], "n": 6}
    assert comparable(bind(convert(tmp_path / "prose.md"), dims)) == comparable(bind(convert(SEED), dims))


def test_seed_shape_row_reads_x_as_times():
    attn = convert(SEED).tensors["attn"]
    assert attn.shape == ["n", "(nh + nkvh + nkvh) * dh"]


def test_bad_symbol_in_a_table_names_step_and_tensor(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text(SEED.read_text(encoding="utf-8").replace("| rope           | kernel |          | r  ",
                                                            "| rope           | kernel |          | q  "),
                   encoding="utf-8")
    with pytest.raises(ArenaError, match=r"bad.md:\d+: step 'rope': tensor 'pos': unknown symbol 'q'"):
        convert(bad)


def test_a_blank_name_at_the_end_of_the_header_is_one_fault_at_the_header(tmp_path):
    """The rule under the header counts the columns: the last column's shape and cells were
    four faults of cells beyond the header before."""
    table = ("| tensor | graph | a |  |\n|---|---|---|---|\n| | | Ta (n) | Ta (n) |\n"
             "| s0 | kernel | +w | +w |\n| s1 | kernel | rx | rx |\n")
    (tmp_path / "t.md").write_text(table)
    with pytest.raises(ArenaError) as e:
        convert(tmp_path / "t.md")
    assert e.value.faults == [f"{tmp_path / 't.md'}:1: tensor name is empty"]
    (tmp_path / "t.md").write_text(table.replace("|  |\n|---|---|---|---|", "||\n|---|---|---|"))
    with pytest.raises(ArenaError, match=r"t.md:3: the row has 4 cells where the header has 3; 'Ta \(n\)'"):
        convert(tmp_path / "t.md")
    wider = "| tensor | graph | a |\n|---|---|---|---|\n| | | Ta (n) |\n| s0 | kernel | +wx |\n"
    (tmp_path / "t.md").write_text(wider)       # a rule wider than the header adds no column
    assert list(convert(tmp_path / "t.md").tensors) == ["a"]


def test_rows_after_a_blank_line_are_a_fault_not_steps_left_out(tmp_path):
    """A blank line ends a markdown table: the steps after one were dropped without a word."""
    table = ("| tensor | graph | a |\n|---|---|---|\n| | | Ta (n) |\n| s0 | kernel | +w |\n\n"
             "| s1 | kernel | rx |\n")
    (tmp_path / "t.md").write_text(table)
    with pytest.raises(ArenaError, match=r"t.md:6: a row of the lifetime table's columns, after line 5 ended the table"):
        convert(tmp_path / "t.md")
    (tmp_path / "t.md").write_text(table.replace("\n\n|", "\n|"))
    assert [step.name for step in convert(tmp_path / "t.md").steps] == ["s0", "s1"]
    second = "\n# another table\n\n| x | y | z |\n|---|---|---|\n| 1 | 2 | 3 |\n"    # a table of its own
    (tmp_path / "t.md").write_text(table.replace("\n\n| s1 | kernel | rx |\n", "\n| s1 | kernel | rx |\n") + second)
    assert [step.name for step in convert(tmp_path / "t.md").steps] == ["s0", "s1"]


def test_a_table_without_its_graph_column_is_named_at_its_line(tmp_path):
    (tmp_path / "t.md").write_text("# notes\n\n| tensor | a |\n|---|---|\n| | Ta (n) |\n| s0 | +wx |\n")
    with pytest.raises(ArenaError, match=r"t.md:3: no lifetime table found \(a markdown table whose columns are "
                                         r"'tensor \| graph"):
        convert(tmp_path / "t.md")


def test_file_without_a_table(tmp_path):
    (tmp_path / "empty.md").write_text("# nothing here\n")
    with pytest.raises(ArenaError, match="no lifetime table found"):
        convert(tmp_path / "empty.md")


def test_an_escaped_pipe_is_part_of_its_cell_and_an_upper_case_suffix_is_markdown(tmp_path):
    table = ("| tensor | graph | a\\|b | c |\n|---|---|---|---|\n| | | Ta (n) | Ta (n) |\n"
             "| s0 | kernel | +w | +w |\n| s1 | kernel | rx | rx |\n")
    (tmp_path / "t.MD").write_text(table)
    assert list(convert(tmp_path / "t.MD").tensors) == ["a|b", "c"]
    assert main(["plan", str(tmp_path / "t.MD"), "--set", "n=4"]) == 0


def test_types_are_activations_an_element_type_or_int32(tmp_path):
    table = ("| tensor | graph | a | b | c | d |\n|---|---|---|---|---|---|\n"
             "| | | Ta (n) | Tpos (n) | Tf16 (n, 3) | Tmask (n) |\n"
             "| s0 | kernel | +w | +w | +w | +w |\n| s1 | kernel | rx | rx | rx | rx |\n")
    (tmp_path / "t.md").write_text(table)
    lifetimes = bind(convert(tmp_path / "t.md"), {"n": 4}, "bf16", 1)
    assert [(i.dtype, i.nbytes) for i in lifetimes.instances] == [("bf16", 8), ("i32", 16), ("f16", 24), ("i32", 16)]


def test_a_type_read_as_int32_by_default_is_noted_where_it_is_planned(tmp_path, capsys):
    """TA, Tfp16, Xf16: typos of Ta and Tf16 would plan as ids; the seed's own Ttok and Tpos, or Ti8, are not noted."""
    table = ("| tensor | graph | a | b | c | d | e | f | g |\n|---|---|---|---|---|---|---|---|---|\n"
             "| | | TA (n) | Tfp16 (n) | Tfp16 (n) | Ttok (n) | Ti8 (n) | Ta (n) | Xf16 (n) |\n"
             "| s0 | kernel | +w | +w | +w | +w | +w | +w | +w |\n"
             "| s1 | kernel | rx | rx | rx | rx | rx | rx | rx |\n")
    (tmp_path / "t.md").write_text(table)
    assert main(["plan", str(tmp_path / "t.md"), "--set", "n=4", "--json"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"note: {tmp_path / 't.md'}:3: tensor '{name}': type '{type_}' is read as i32 (Ta is --dtype's type, T and "
        "an element type that one, e.g. Tf16; any other name an integer id, as the seed's Ttok)"
        for name, type_ in (("a", "TA"), ("b", "Tfp16"), ("g", "Xf16"))]
    assert main(["plan", str(SEED), "--set", "n=4", "--json"]) == 0
    assert capsys.readouterr().err == ""


def test_a_table_in_fenced_code_is_an_example_not_the_table(tmp_path):
    """Markdown shows fenced code as it is: an example table there is not the lifetime table
    (nor is one in a ~~~ fence, in a longer fence that a shorter run does not close, or in
    a block indented by four spaces or a tab)."""
    lines = SEED.read_text(encoding="utf-8").split("\n")
    header = next(i for i, line in enumerate(lines) if line.startswith("| tensor"))
    example = ["| tensor | graph | e |", "|---|---|---|", "| | | Ta (n) |", "| s0 | kernel | +wx |"]
    lines[header:header] = ["````markdown", *example, "```", "````", "~~~", *example, "~~~", "",
                            *("    " + row for row in example), "", *("\t" + row for row in example), ""]
    (tmp_path / "fenced.md").write_text("\n".join(lines), encoding="utf-8")
    dims = {**PRESETS["open_llama_3b"], "n": 6}
    assert comparable(bind(convert(tmp_path / "fenced.md"), dims)) == comparable(bind(convert(SEED), dims))


@pytest.mark.parametrize("before, indent", [
    (["# Example"], "    "), (["- - -", ""], "    "), (["- item", ""], "        "), (["- item", ""], "\t  "),
    (["**Example:**", ""], "    "), (["2.5 GB here", ""], "    "),       # no space after the marker: no item
    (["Title", "-", ""], "    "), (["text", "2. item", ""], "    "),     # a setext underline; no list from 2 here
    (["-", ""], "    "),                                                   # an empty item ends at a blank line
    (["- item", "```", "x", "```"], "    "),                               # a fence at the margin ends the list
], ids=["after-a-heading", "after-a-rule", "code-in-a-list-item", "tab-in-a-list-item", "after-bold",
        "after-a-number", "after-a-setext-heading", "after-a-paragraph-and-2.", "after-an-empty-item",
        "after-a-fence-ending-a-list"])
def test_an_example_table_indented_as_code_is_not_the_table(tmp_path, before, indent):
    """Indented four columns past the page (after a heading or a rule: code needs no blank line
    there) or past a list item's content: an example, as markdown shows it."""
    lines = SEED.read_text(encoding="utf-8").split("\n")
    header = next(i for i, line in enumerate(lines) if line.startswith("| tensor"))
    example = ["| tensor | graph | e |", "|---|---|---|", "| | | Ta (n) |", "| s0 | kernel | +wx |"]
    lines[header:header] = [*before, *(indent + row for row in example), "", "Text.", ""]
    (tmp_path / "indented.md").write_text("\n".join(lines), encoding="utf-8")
    dims = {**PRESETS["open_llama_3b"], "n": 6}
    assert comparable(bind(convert(tmp_path / "indented.md"), dims)) == comparable(bind(convert(SEED), dims))


@pytest.mark.parametrize("item, indent", [("1. The lifetime table:", "    "), ("- The table:", "\t")])
def test_a_table_indented_in_a_list_item_is_the_items_content(tmp_path, item, indent):
    """Indented under a list item, the table is no code block: markdown shows it as a table."""
    lines = SEED.read_text(encoding="utf-8").split("\n")
    rows = [i for i, line in enumerate(lines) if line.startswith("|")]
    table = lines[rows[0]:rows[-1] + 1]
    (tmp_path / "listed.md").write_text("\n".join([item, "", *(indent + row for row in table)]), encoding="utf-8")
    dims = {**PRESETS["open_llama_3b"], "n": 6}
    assert comparable(bind(convert(tmp_path / "listed.md"), dims)) == comparable(bind(convert(SEED), dims))


def test_a_file_name_that_convert_could_not_print_back_is_refused(tmp_path):
    """The table is named after its file, and convert's YAML must read back: a name with a
    control character is refused here as the YAML reader refuses it."""
    (tmp_path / "tab\there.md").write_text(SEED.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ArenaError, match=r"schedule name 'tab\\there' holds a control character \(U\+0009\)"):
        convert(tmp_path / "tab\there.md")


def test_a_type_may_be_named_in_any_script(tmp_path):
    """As tensors and dimensions may: a type declared `张` is one a shape can use."""
    (tmp_path / "t.md").write_text("| tensor | graph | a |\n|---|---|---|\n| | | 张 (n) |\n| s0 | kernel | +wx |\n")
    assert [i.dtype for i in bind(convert(tmp_path / "t.md"), {"n": 4}).instances] == ["i32"]
    table = "schedule: t\ndims: {n: tokens}\ntypes: {张: f16}\ntensors: {a: '张[n]'}\nsteps:\n  - s0: {a: +wx}\n"
    assert [(i.dtype, i.nbytes) for i in bind(loads(table, "t.yaml"), {"n": 4}, "f32", 1).instances] == [("f16", 8)]
