"""Likely mistakes in a table that still plans are noted on stderr, once per row of a repeat block;
the tables that ship give none."""
import json

import pytest

from llama_arena.cli import main

TABLE = """schedule: t
dims: {n: tokens, nl: layers}
types: {Ta: act}
tensors:
  a: Ta[n]
  b: Ta[n]
  junk: Ta[n]
  never: Ta[n]
  kv: {shape: "Ta[n]", persistent: true}
  cache: {shape: "Ta[n]", persistent: true}
steps:
  - s0: {a: +w, junk: +, kv: r}
  - s1: {a: rx, junk: x}
  - repeat: nl
    steps:
      - s2: {b: +r}
      - s3: {b: rx}
"""


def test_reads_of_unwritten_bytes_unused_instances_and_tensors_are_noted(tmp_path, capsys):
    (tmp_path / "t.yaml").write_text(TABLE)
    assert main(["plan", str(tmp_path / "t.yaml"), "--set", "n=4", "--set", "nl=3", "--json"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["buffers"]) == 7      # planned all the same
    file = tmp_path / "t.yaml"
    assert captured.err.splitlines() == [
        f"note: {file}: step 's0': tensor 'junk': the instance created here is neither written nor read",
        f"note: {file}: step 's2.0': tensor 'b': the instance created here is read but no cell writes it "
        "(and 2 more like it, made by the same row)",
        f"note: {file}:8: tensor 'never': declared, but no step uses it",
        f"note: {file}:10: tensor 'cache': declared, but no step uses it"]


@pytest.mark.parametrize("table", ["llama", "llama-layer", "docs/seed-layer.md"])
def test_the_tables_that_ship_have_nothing_to_note(capsys, table):
    assert main(["plan", table, "--set", "n=3", "--json"]) == 0
    assert capsys.readouterr().err == ""


def test_a_table_planned_once_a_rank_is_noted_once(tmp_path, capsys):
    """--tp plans the table for each rank; its notes are the table's, said once."""
    (tmp_path / "t.md").write_text("| tensor | graph | a | b |\n|---|---|---|---|\n| | | TA (n, nh) | Ta (n, nkvh) |\n"
                                   "| s0 | kernel | +w | + |\n| s1 | kernel | rx | x |\n")
    assert main(["plan", str(tmp_path / "t.md"), "--set", "n=2", "--set", "nh=4", "--set", "nkvh=2", "--tp", "2",
                 "--json"]) == 0
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 2 and "type 'TA' is read as i32" in notes[0] and "neither written nor read" in notes[1]
