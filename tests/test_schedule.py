"""The lifetime table: each symbol's meaning, the seed's two x_ instances, and every fault."""
import json
import re

import pytest

from planner.errors import ArenaError
from planner.lifetimes import bind
from planner.models import PRESETS, parse_sets
from planner.plan import plan_lifetimes
from planner.reader import load, loads

SMOL = PRESETS["smollm2-135m"]

HEAD = """
schedule: t
dims: {n: tokens, d: width}
types: {Ta: act, Ti: i32}
tensors:
  a: Ta[n, d]
  b: Ta[n, d]
  h: Ti[n]
steps:
"""


def lifetimes(steps: str, **dims):
    return bind(loads(HEAD + steps, "t.yaml"), {"n": 2, "d": 64, **dims}, "f32", 256)


def fault(steps: str, **dims) -> str:
    """The message of a table that fails when read (structure) or when unrolled (meaning)."""
    with pytest.raises(ArenaError) as e:
        lifetimes(steps, **dims)
    return str(e.value)


def test_seed_layer_has_two_instances_of_x_():
    lt = bind(load("schedules/llama-layer.yaml"), {**SMOL, "n": 7})
    names = [s.name for s in lt.steps]
    x_ = [i for i in lt.instances if i.tensor == "x_"]
    assert [(names[i.first], names[i.last]) for i in x_] == [("attn_norm", "attn_qkv"), ("ffn_norm", "ffn_up")]


def test_second_x_lands_on_bytes_freed_before_it_and_the_layer_needs_no_more_than_its_peak():
    lt = bind(load("schedules/llama-layer.yaml"), {**SMOL, "n": 7})
    plan = plan_lifetimes(lt)
    x2 = next(b for b in plan.buffers if b.name == "x_#1")
    freed = [b for b in plan.device() if b.last < x2.first]
    assert {b.name for b in freed} >= {"attn#0", "x_#0"}
    # every byte of the second x_ held an instance released before it was created
    assert all(any(b.offset <= byte < b.offset + b.size for b in freed)
               for byte in range(x2.offset, x2.offset + x2.size))
    assert plan.arena == plan.lower_bound < plan.no_reuse


def test_plus_starts_x_ends_and_closed_interval():
    lt = lifetimes("""
  - s0: {a: +w}
  - s1: {a: r, b: +w}
  - s2: {a: rx, b: r}
  - s3: {b: rx}
""")
    a, b = lt.instances
    assert (a.first, a.last) == (0, 2) and (b.first, b.last) == (1, 3)
    assert a.size == b.size == 512  # 2 * 64 * 4 bytes, already a multiple of 256


def test_never_destroyed_lives_to_the_last_step():
    lt = lifetimes("""
  - s0: {a: +w}
  - s1: {b: +w}
  - s2: {b: x}
""")
    assert [(i.first, i.last) for i in lt.instances] == [(0, 2), (1, 2)]


def test_m_is_host_memory_and_takes_no_arena():
    lt = lifetimes("""
  - s0: {h: +m, a: +w}
  - s1: {h: rx, a: r}
""")
    h = lt.instances[0]
    assert h.memory == "host" and h.dtype == "i32" and h.nbytes == 8 and h.size == 256
    plan = plan_lifetimes(lt)
    assert plan.arena == 512 and plan.host_bytes == 256
    assert [b.offset for b in plan.buffers if b.memory == "host"] == [None]


def test_blank_cell_and_o_mean_stays_alive():
    lt = lifetimes("""
  - s0: {a: +w}
  - s1: {a: o}
  - s2: {}
  - s3: {a: rx}
""")
    assert (lt.instances[0].first, lt.instances[0].last) == (0, 3)


def test_repeat_unrolls_with_layer_names_and_new_instances():
    lt = lifetimes("""
  - s0: {a: +w}
  - repeat: 3
    steps:
      - f: {a: r, b: +w}
      - g: {a: w, b: rx}
""")
    assert [s.name for s in lt.steps] == ["s0", "f.0", "g.0", "f.1", "g.1", "f.2", "g.2"]
    assert [s.layer for s in lt.steps] == [None, 0, 0, 1, 1, 2, 2]
    assert [i.name for i in lt.instances if i.tensor == "b"] == ["b#0", "b#1", "b#2"]


@pytest.mark.parametrize("count, layers", [("L // 2", 2), ("2 * L - 1", 9), ("(L + 1) // 2", 3)])
def test_a_repeat_count_may_be_an_expression_of_the_dimensions(count, layers):
    """Gemma-2's alternating layers: a block of two layers, repeated for half the model's layers."""
    steps = f"  - s0: {{a: +w}}\n  - repeat: {count}\n    steps:\n      - f: {{b: +wx}}\n  - s1: {{a: rx}}\n"
    schedule = loads(HEAD.replace("d: width}", "d: width, L: layers}") + steps, "t.yaml")
    lt = bind(schedule, {"n": 2, "d": 64, "L": 5}, "f32", 256)
    assert [s.name for s in lt.steps] == ["s0", *(f"f.{k}" for k in range(layers)), "s1"]


@pytest.mark.parametrize("count, dims, message", [
    ("L // q", {"L": 5}, "t.yaml:11: unknown dimension 'q' in repeat count 'L // q' (declared dims: n, d, L)"),
    ("L // (L - L)", {"L": 5}, "t.yaml:11: repeat count L // (L - L): 'L // (L - L)' divides by zero with L=5"),
    ("L - 6", {"L": 5}, "t.yaml:11: repeat count L - 6 = -1: a block repeats 0 times or more"),
    ("L // 2", {}, "t.yaml:11: dimension 'L' (layers) is not bound: pass --set L=N"),
])
def test_a_repeat_counts_expression_faults_at_its_line(count, dims, message):
    steps = f"  - s0: {{a: +w}}\n  - repeat: {count}\n    steps:\n      - f: {{b: +wx}}\n"
    with pytest.raises(ArenaError) as e:
        bind(loads(HEAD.replace("d: width}", "d: width, L: layers}") + steps, "t.yaml"), {"n": 2, "d": 64, **dims})
    assert str(e.value) == message


def test_a_repeat_of_no_rows_adds_no_steps_whatever_its_count():
    lt = lifetimes("""
  - s0: {a: +w}
  - repeat: 100000000000000000000
    steps: []
  - s1: {a: rx}
""")
    assert [s.name for s in lt.steps] == ["s0", "s1"]


def test_a_repeat_of_zero_adds_none_of_its_rows():
    steps = "  - s0: {a: +w}\n  - repeat: L\n    steps:\n      - s: {b: +wx}\n  - s1: {a: rx}\n"
    schedule = loads(HEAD.replace("d: width}", "d: width, L: layers}") + steps, "t.yaml")
    lt = bind(schedule, {"n": 2, "d": 64, "L": 0}, "f32", 256)
    assert [s.name for s in lt.steps] == ["s0", "s1"]


def test_a_comma_after_the_last_axis_adds_none():
    schedule = loads(HEAD.replace("a: Ta[n, d]", "a: Ta[n, d,]") + "  - s0: {a: +wx}\n", "t.yaml")
    assert schedule.tensors["a"].shape == ["n", "d"]


def test_dimension_names_are_read_as_shapes_read_them():
    """Python reads identifiers in NFKC form: a shape's full-width 'ｎ' is 'n', so the
    declared 'ｎ' and --set ｎ=3 are 'n' too."""
    schedule = loads(HEAD.replace("{n: tokens, d: width}", "{ｎ: tokens, d: width}").replace("Ta[n, d]", "Ta[ｎ, d]")
                     .replace("Ti[n]", "Ti[ｎ]") + "  - s0: {a: +w, b: +w, h: +w}\n  - s1: {a: rx, b: rx, h: rx}\n",
                     "t.yaml")
    assert list(schedule.dims) == ["n", "d"]
    assert [i.shape for i in bind(schedule, parse_sets(["ｎ=3", "d=4"]), "f32", 1).instances] == [[3, 4], [3, 4], [3]]


def test_dtype_sets_ta_and_alignment_rounds_up():
    lt = bind(loads(HEAD + "  - s0: {a: +w}\n", "t.yaml"), {"n": 3, "d": 5}, "bf16", 64)
    assert lt.instances[0].nbytes == 30 and lt.instances[0].size == 64


@pytest.mark.parametrize("steps, message", [
    ("  - s0: {a: r}\n", "step 's0': tensor 'a': 'r' reads the tensor before it is created"),
    ("  - s0: {a: w}\n", "'w' writes the tensor before it is created"),
    ("  - s0: {a: +w}\n  - s1: {a: +w}\n", "step 's1': tensor 'a': '+w' creates the tensor while its instance"),
    ("  - s0: {a: +w}\n  - s1: {a: rx}\n  - s2: {a: r}\n", "step 's2': tensor 'a': 'r' reads the tensor after it was destroyed at step 's1'"),
    ("  - s0: {a: +q}\n", "t.yaml:10: step 's0': tensor 'a': unknown symbol 'q'"),
    ("  - s0: {a: xr}\n", "'x' (destroy) comes last"),
    ("  - s0: {a: w+}\n", "'+' (create) comes first"),
    ("  - s0: {a: +wo}\n", "'o' (stays alive) stands alone"),
    ("  - s0: {a: rm}\n", "'m' (mapped from host) marks a creation"),
    ("  - s0: {zz: +w}\n", "step 's0': tensor 'zz': unknown tensor"),
    ("  - s0: {graph: kern, a: +w}\n", "graph column must be 'kernel' or 'graph'"),
    ("  - s0: {a: +w}\n  - s1: {a: rrx}\n", "t.yaml:11: step 's1': tensor 'a': repeated symbol in 'rrx'"),
    ("  - s0: {a: +w}\n  - repeat: ''\n    steps:\n      - s1: {a: r}\n",
     "t.yaml:11: repeat count '' is neither a whole number (0 or more), a declared dimension nor an expression of them"),
])
def test_faults_name_their_location(steps, message):
    assert message in fault(steps)


def test_every_fault_is_reported_not_only_the_first():
    text = fault("  - s0: {a: r}\n  - s1: {b: w}\n")
    assert "step 's0': tensor 'a'" in text and "step 's1': tensor 'b'" in text


def test_unknown_dimension_in_a_shape():
    with pytest.raises(ArenaError, match="tensor 'a': unknown dimension 'q'"):
        loads(HEAD.replace("Ta[n, d]", "Ta[n, q]", 1) + "  - s0: {a: +w}\n", "t.yaml")


def test_a_table_of_numbers_alone_needs_no_dims():
    text = "types: {Tf: f32}\ntensors:\n  a: Tf[4]\n  b: Tf[8]\nsteps:\n  - s0: {a: +w}\n  - s1: {a: rx, b: +wx}\n"
    lifetimes = bind(loads(text, "t.yaml"), {}, "f32", 1)
    assert plan_lifetimes(lifetimes, "auto", 1.0).arena == 48
    with pytest.raises(ArenaError, match=r"unknown dimension 'n' in shape 'Tf\[n\]' \(no dims declared: add it under"):
        loads(text.replace("Tf[8]", "Tf[n]"), "t.yaml")


def test_unbound_dimension():
    with pytest.raises(ArenaError, match="dimension 'd' \\(width\\) is not bound: pass --set d=N"):
        bind(loads(HEAD + "  - s0: {a: +w}\n", "t.yaml"), {"n": 2})


@pytest.mark.parametrize("n", [0, -3])
def test_shape_that_is_not_positive(n):
    with pytest.raises(ArenaError, match=r"tensor 'a': shape Ta\[n, d\] evaluates to \(%d, 64\)" % n):
        lifetimes("  - s0: {a: +w}\n", n=n)


def test_malformed_yaml_names_the_line_that_holds_the_mistake():
    with pytest.raises(ArenaError, match=r"t.yaml:2: malformed YAML: while parsing a flow mapping that starts here"):
        loads("schedule: t\ndims: {n: a\ntypes: [\n", "t.yaml")        # the '{' of line 2 is never closed
    with pytest.raises(ArenaError, match=r"t.yaml:4: malformed YAML"):
        loads("schedule: t\ndims:\n  n: a\n d: b\n", "t.yaml")             # line 4 is indented out of place


def test_persistent_tensor_is_live_throughout_and_never_created():
    text = HEAD.replace("  h: Ti[n]", "  h: Ti[n]\n  kv: {shape: 'Ta[d]', persistent: true}")
    lt = bind(loads(text + "  - s0: {a: +w}\n  - s1: {kv: rw}\n  - s2: {a: rx}\n", "t.yaml"), {"n": 2, "d": 64})
    kv = next(i for i in lt.instances if i.tensor == "kv")
    assert (kv.first, kv.last, kv.persistent) == (0, 2, True)
    assert plan_lifetimes(lt).buffers[0].offset == 0   # bottom of the arena
    with pytest.raises(ArenaError, match="persistent tensor is live before step 0"):
        bind(loads(text + "  - s0: {kv: +w}\n", "t.yaml"), {"n": 2, "d": 64})
    with pytest.raises(ArenaError, match="persistent tensor is never destroyed"):
        bind(loads(text + "  - s0: {kv: rx}\n", "t.yaml"), {"n": 2, "d": 64})


def test_a_division_by_zero_names_the_dimensions_that_made_it_and_no_others():
    from planner import expr
    with pytest.raises(expr.ExprError) as e:
        expr.evaluate("2 // 0", {"n": 3})
    assert str(e.value) == "'2 // 0' divides by zero"
    with pytest.raises(expr.ExprError, match=r"^'d // \(n - 4\)' divides by zero with d=8, n=4$"):
        expr.evaluate("d // (n - 4)", {"n": 4, "d": 8, "x": 1})


def test_a_shapes_integers_are_decimal_digits_as_a_repeat_counts_are():
    """010 is ten (Python's parser refused it), n010 stays a name; Python's other
    spellings of integers are refused; a unary plus is read as a minus is."""
    from planner import expr
    dims = {"n": 5, "n010": 7, "सीमा010": 3, "a·010": 2}
    assert [expr.evaluate(t, dims) for t in ("010", "n010", "(n + 010) * 2", "+n", "-n + 20", "1000 // 010")] == \
        [10, 7, 30, 5, 15, 100]
    assert expr.names("सीमा010 * a·010") == {"सीमा010", "a·010"}     # a vowel sign, a middle dot: still names
    for text in ("1_0", "0x10", "0b1", "0o7"):
        with pytest.raises(expr.ExprError, match="integers are decimal digits"):
            expr.evaluate(text, dims)


def test_values_read_as_yaml_1_2_reads_them():
    """PyYAML's YAML 1.1 read `010` as the octal 8 and `on` as true: a repeat unrolled 8 times,
    a tensor named True."""
    table = HEAD.replace("  h: Ti[n]\n", "  on: Ti[n]\n") + "  - repeat: 010\n    steps:\n      - no: {on: +wx}\n"
    unrolled = bind(loads(table, "t.yaml"), {"n": 2, "d": 64}, "f32", 256)
    assert [s.name for s in unrolled.steps] == [f"no.{i}" for i in range(10)]
    assert unrolled.instances[0].name == "on#0"
    for value, message in (("yes", "persistent must be true or false, not 'yes'"),
                           ("2:30", "repeat count '2:30' is neither a whole number (0 or more), a declared dimension nor an expression of them")):
        text = (HEAD.replace("a: Ta[n, d]", "a: {shape: 'Ta[n, d]', persistent: yes}") + "  - s: {b: +wx}\n"
                if value == "yes" else HEAD + "  - repeat: 2:30\n    steps:\n      - s: {b: +wx}\n")
        with pytest.raises(ArenaError, match=re.escape(message)):
            loads(text, "t.yaml")


@pytest.mark.parametrize("layout", ["block", "flow"])
def test_a_name_too_long_to_be_a_yaml_key_is_named_as_such(layout):
    """Past 1,024 characters PyYAML reads no key: the fault was a syntax error ('could not find
    expected :', 'mapping values are not allowed here'), a line or more later."""
    name = "t" * 1025
    steps = f"  - s0:\n      {name}: +wx\n  - s1: {{b: +wx}}\n" if layout == "block" else f"  - s0: {{{name}: +wx}}\n"
    with pytest.raises(ArenaError) as e:
        loads(HEAD + steps, "t.yaml")
    assert e.value.faults == [f"t.yaml:{HEAD.count(chr(10)) + 1 + (layout == 'block')}: a key of 1,025 characters "
                              f"up to its ':' ('{'t' * 57}...'); YAML reads a key of at most 1,024"]


def test_line_separators_break_no_line_as_in_yaml_1_2():
    """PyYAML's YAML 1.1 broke lines at NEL, U+2028 and U+2029 too: a comment holding one was
    a syntax error, a line later than the one that held it."""
    table = (HEAD.replace("dims: {", "dims: # tokens\u2029and width\n  {", 1)
             .replace("n: tokens", "n: 'tokens\u2028\x85u'") + "  - s: {b: +q}\n")
    with pytest.raises(ArenaError) as e:
        loads(table, "t.yaml")
    lines = table.split("\n")
    assert str(e.value).startswith(f"t.yaml:{len(lines) - 1}: step 's': tensor 'b': unknown symbol 'q'")
    assert loads(table.replace("+q", "+wx"), "t.yaml").dims["n"] == "tokens\u2028\x85u"
    for changed, message in ((table.replace("schedule: t", "schedule: !!int x\u2028y"),
                              "t.yaml:2: 'x\u2028y' is tagged !!int but is not one"),
                             (table.replace("a: Ta", "a: &x\u2028y Ta"),      # the file's own character, quoted
                              "malformed YAML: expected alphabetic or numeric character, but found '\\u2028'")):
        with pytest.raises(ArenaError) as e:
            loads(changed, "t.yaml")
        assert message in str(e.value)


@pytest.mark.parametrize("key", [" " * 40, None])
def test_only_a_key_yaml_cannot_read_is_called_too_long(key):
    """A key is counted to its ':', spaces too; a long comment beside a syntax error elsewhere
    leaves that error as it is."""
    if key is None:
        text, message = f"# {'c' * 1100}: note\n" + HEAD + "  - s: {b: +wx\n", "while parsing a flow mapping that starts here"
    else:
        text, message = HEAD.replace("  a: Ta[n, d]", f"  {'k' * 1000 + key}: Ta[n, d]"), "t.yaml:6: a key of 1,040 characters up to its ':'"
    with pytest.raises(ArenaError) as e:
        loads(text, "t.yaml")
    assert message in str(e.value)


def test_values_are_read_as_written():
    """As YAML 1.2 reads them, not 1.1: a schedule `010` is not 10, a cell `true` not True, a
    repeat `1:30.0` not 90.0; `~`, `null` and an empty value are none (an empty cell, a schedule
    named after its file), and `+3` is 3. An explicit tag is YAML's own."""
    named = {value: loads(HEAD.replace("schedule: t", f"schedule: {value}") + "  - s: {b: +wx}\n", "t.yaml").name
             for value in ("010", "1.50", "true", "~", "", "null", "2001-13-45")}
    assert named == {"010": "010", "1.50": "1.50", "true": "true", "~": "t", "": "t", "null": "t",
                     "2001-13-45": "2001-13-45"}
    table = HEAD.replace("a: Ta[n, d]", "a: {shape: 'Ta[n, d]', persistent: !!bool yes}") + \
        "  - repeat: +3\n    steps:\n      - s: {a: w, b: +wx, h: ~}\n  - e: {b: +wx, h: null}\n"
    unrolled = bind(loads(table, "t.yaml"), {"n": 2, "d": 64}, "f32", 256)
    assert [s.name for s in unrolled.steps] == ["s.0", "s.1", "s.2", "e"]
    assert sorted((i.tensor, i.persistent) for i in unrolled.instances) == [("a", True)] + [("b", False)] * 4
    for edited, message in ((HEAD + "  - s: {b: true}\n", "unknown symbol 't' in 'true'"),
                            (HEAD.replace("a: Ta[n, d]", "a: ~") + "  - s: {b: +wx}\n", "an empty shape is not"),
                            (HEAD + "  - repeat: 1:30.0\n    steps:\n      - s: {b: +wx}\n",
                             "repeat count '1:30.0' is neither"),
                            (HEAD.replace("Ti: i32", "Ti: !!int i32") + "  - s: {b: +wx}\n",
                             "t.yaml:4: 'i32' is tagged !!int but is not one"),
                            (HEAD + "  - s: {b: !!int _}\n", "t.yaml:10: '_' is tagged !!int but is not one")):
        with pytest.raises(ArenaError, match=re.escape(message)):
            loads(edited, "t.yaml")


def test_a_merge_key_takes_the_anchored_mapping_and_overrides_it():
    """`<<: *base` is YAML's merge, not a key named '<<'."""
    table = HEAD.replace("  a: Ta[n, d]\n  b: Ta[n, d]\n", "  a: &base {shape: 'Ta[n, d]', persistent: true}\n"
                         "  b: {<<: *base, persistent: false}\n") + "  - s: {a: w, b: +wx}\n"
    tensors = loads(table, "t.yaml").tensors
    assert [(t.shape, t.persistent) for t in (tensors["a"], tensors["b"])] == [(["n", "d"], True), (["n", "d"], False)]


def test_names_are_read_as_written():
    """A key is a name: `~`, `true` and `1.50` are not None, True and 1.5."""
    table = HEAD.replace("  h: Ti[n]\n", "  ~: Ti[n]\n  true: Ti[n]\n  1.50: Ti[n]\n") + \
        "  - null: {~: +w, true: +w, 1.50: +w}\n  - 010: {~: rx, true: rx, 1.50: rx}\n"
    unrolled = bind(loads(table, "t.yaml"), {"n": 2, "d": 64}, "f32", 256)
    assert [s.name for s in unrolled.steps] == ["null", "010"]
    assert sorted(i.tensor for i in unrolled.instances) == ["1.50", "true", "~"]


def test_a_table_without_dimensions_converts_to_yaml_that_reads_back(tmp_path):
    from planner.markdown import convert
    from planner.schedule import to_yaml
    (tmp_path / "c.md").write_text("| tensor | graph | a |\n|---|---|---|\n| | | Ta (4) |\n| s0 | kernel | +wx |\n")
    again = loads(to_yaml(convert(tmp_path / "c.md")), "c.yaml")
    assert again.dims == {} and bind(again, {}, "f32", 1).instances[0].nbytes == 16


TINY = "types: {T: f32}\ntensors:\n  x: T[4]\nsteps:\n"


@pytest.mark.parametrize("text, message", [
    ("tensors: {x: 'T[4]'}\nsteps:\n  - a: {x: +w}\n", "t.yaml:1: missing key 'types'"),
    ("dims: {tile: keys per tile}\n" + TINY.replace("T[4]", "T[tile]") + "  - a: {x: +w}\n",
     "t.yaml:4: tensor 'x': dimension 'tile' (keys per tile) is not bound: pass --set tile=N"),
    (TINY.replace("  x: T[4]", "  '  ': T[4]") + "  - a: {'  ': +w}\n", "t.yaml:3: tensor name is empty"),
])
def test_tables_missing_a_part_are_named_faults(text, message):
    with pytest.raises(ArenaError) as e:
        bind(loads(text, "t.yaml"), {})
    assert str(e.value).startswith(message)


def test_a_step_with_no_cells_is_a_step_where_nothing_happens():
    lt = bind(loads(TINY + "  - a: {x: +w}\n  - idle:\n  - b: {x: rx}\n", "t.yaml"), {})
    assert [s.name for s in lt.steps] == ["a", "idle", "b"]
    assert [(i.first, i.last) for i in lt.instances] == [(0, 2)]


def test_a_repeat_count_is_read_as_names_are_read():
    """NFKC, as YAML keys and dimension names are: a full-width ｎ is n."""
    text = "dims: {n: layers}\n" + TINY + "  - a: {x: +w}\n  - repeat: \uff4e\n    steps:\n      - b: {x: r}\n"
    assert [s.name for s in bind(loads(text, "t.yaml"), {"n": 3}).steps] == ["a", "b.0", "b.1", "b.2"]


def test_each_repeat_block_has_its_own_fault_with_its_own_count():
    text = TINY + "".join("  - repeat: 2\n    steps:\n      - b: {x: r}\n" for _ in range(2))
    with pytest.raises(ArenaError) as e:
        bind(loads(text, "t.yaml"), {})
    faults = str(e.value).splitlines()
    assert len(faults) == 2 and all(f.endswith("(and at 1 more step of the same row)") for f in faults)


def test_n_of_0_is_one_fault_for_every_shape_it_empties():
    faults = fault("  - s0: {a: +w, b: +w, h: +w}\n", n=0).splitlines()
    assert len(faults) == 1 and faults[0].endswith("(and 2 more tensors' shapes with n not positive)")


def test_a_persistent_tensor_destroyed_is_one_fault():
    text = TINY.replace("  x: T[4]", "  kv: {shape: 'T[4]', persistent: true}") + "  - a: {kv: rx}\n  - b: {kv: r}\n"
    with pytest.raises(ArenaError) as e:
        bind(loads(text, "t.yaml"), {})
    assert str(e.value) == "t.yaml:5: step 'a': tensor 'kv': a persistent tensor is never destroyed"


def test_the_limits_are_inclusive():
    """1,000,000 steps, a name of 1,024 characters, an expression of 200: each is read."""
    many = bind(loads(TINY + "  - a: {x: +w}\n  - repeat: 999999\n    steps:\n      - b: {x: r}\n", "t.yaml"), {})
    assert len(many.steps) == 1_000_000
    name = "y" * 1024
    text = TINY.replace("  x: T[4]", f"  x: T[4]\n  {name}: T[4]") + f"  - a: {{x: +w, {name}: +w}}\n"
    assert name in loads(text, "t.yaml").tensors
    assert bind(loads(TINY.replace("T[4]", "T[" + "1" + "+1" * 99 + "0]") + "  - a: {x: +w}\n", "t.yaml"),
                {}).instances[0].shape == [109]


def test_the_instance_limit_is_inclusive_and_named(monkeypatch):
    import planner.lifetimes
    monkeypatch.setattr(planner.lifetimes, "MAX_INSTANCES", 4)
    two = TINY.replace("  x: T[4]", "  x: T[4]\n  y: T[4]")
    assert len(bind(loads(two + "  - a: {x: +wx, y: +wx}\n  - b: {x: +wx, y: +wx}\n", "t.yaml"), {}).instances) == 4
    with pytest.raises(ArenaError, match="^t.yaml: the schedule has more than 4 instances; at most 4 are planned$"):
        bind(loads(two + "  - a: {x: +wx, y: +wx}\n  - b: {x: +wx, y: +wx}\n  - c: {x: +wx}\n", "t.yaml"), {})


def test_the_whole_schedule_of_the_format_doc_plans_as_it_says(tmp_path, capsys):
    """docs/schedule-format.md's whole example, planned by its own command: the figures it gives."""
    from pathlib import Path

    from llama_arena.cli import main
    doc = (Path(__file__).parent.parent / "docs" / "schedule-format.md").read_text(encoding="utf-8")
    section = doc[doc.index("## A whole schedule"):doc.index("## Symbols")]
    (tmp_path / "mlp.yaml").write_text(re.search(r"```yaml\n(.*?)```", section, re.S)[1])
    command = re.search(r"```bash\narena (.*)\n```", section)[1].split()
    assert main([*command[:1], str(tmp_path / command[1]), *command[2:], "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    offsets = {b["name"]: b["offset"] for b in plan["buffers"]}
    assert plan["arena"] == plan["lower_bound"] == 24_576 and plan["no_reuse"] == 45_056
    assert offsets["hidden#1"] == offsets["hidden#0"] and "hidden#2" not in offsets
