"""Plans of the llama schedules, and random valid tables: always checked, within their bounds."""
import json
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from llama_arena.cli import main
from planner.calls import with_tile
from planner.check import PlanInvalid, check
from planner.graph import interference_graph
from planner.lifetimes import bind
from planner.models import PRESETS
from planner.plan import Plan, plan_lifetimes
from planner.reader import load, loads
from planner.place import HEURISTICS


@pytest.mark.parametrize("model", PRESETS)
@pytest.mark.parametrize("n", [1, 7, 512, 4096])
def test_llama_plans_at_the_lower_bound_with_the_kv_cache_at_offset_0(model, n):
    plan = plan_lifetimes(bind(load("schedules/llama.yaml"), with_tile({**PRESETS[model], "n": n}), "f16"))
    assert plan.arena == plan.lower_bound and plan.optimal
    kv = next(b for b in plan.buffers if b.tensor == "kv")
    assert kv.offset == 0 and kv.size == PRESETS[model]["nlayers"] * 2 * PRESETS[model]["nctx"] * \
        PRESETS[model]["nkvh"] * PRESETS[model]["dh"] * 2


def test_lower_bound_is_the_peak_of_live_device_bytes():
    lt = bind(load("schedules/llama.yaml"), with_tile({**PRESETS["smollm2-135m"], "n": 7}))
    peak = max(sum(i.size for i in lt.live_at(s.index) if i.memory == "device") for s in lt.steps)
    assert plan_lifetimes(lt).lower_bound == peak


def test_naive_plan_is_the_no_reuse_total():
    lt = bind(load("schedules/llama.yaml"), with_tile({**PRESETS["smollm2-135m"], "n": 7}))
    naive = plan_lifetimes(lt, "naive")
    assert naive.arena == naive.no_reuse > plan_lifetimes(lt).arena


def test_plan_json_round_trip():
    plan = plan_lifetimes(bind(load("schedules/llama-layer.yaml"), {**PRESETS["llama-3-8b"], "n": 3}))
    again = Plan.from_dict(__import__("json").loads(plan.to_json()))
    assert again == plan


def test_interference_graph_edges_are_conflicts():
    lt = bind(load("schedules/llama-layer.yaml"), {**PRESETS["smollm2-135m"], "n": 7})
    g = interference_graph(lt.instances)
    assert set(g.nodes) == {i.name for i in lt.instances if i.memory == "device"}
    assert g.has_edge("x_#0", "attn#0")       # attn_qkv reads x_ and creates attn
    assert not g.has_edge("attn#0", "x_#1")   # attn is gone before the second x_
    assert g.degree("x#0") == len(g) - 1      # x lives throughout


def test_an_interference_graph_past_its_edges_limit_is_refused_before_it_is_made(tmp_path, capsys, monkeypatch):
    """10^5 buffers of a pass's problem made 25 million edges: the process ran out of memory
    after minutes. 120 buffers all live at once make 7,140 edges."""
    from planner import graph
    problem = tmp_path / "p.csv"
    problem.write_text("id,lower,upper,size\n" + "".join(f"b{i},0,10,{i + 1}\n" for i in range(120)))
    monkeypatch.setattr(graph, "MAX_EDGES", 7_139)
    assert main(["plan", "--csv", str(problem), "--strategy", "best-fit", "--graph", str(tmp_path / "g.graphml")]) == 2
    assert capsys.readouterr().err == ("arena: error: --graph: the interference graph would have 7,140 edges (pairs of "
                                       "instances live at one step), about 4.09 MiB while it is made; at most 7,139 are "
                                       "written\n")
    assert not (tmp_path / "g.graphml").exists()
    monkeypatch.setattr(graph, "MAX_EDGES", 7_140)
    assert main(["plan", "--csv", str(problem), "--strategy", "best-fit", "--graph", str(tmp_path / "g.graphml")]) == 0
    assert (tmp_path / "g.graphml").stat().st_size > 0


def test_checker_rejects_overlap_misalignment_and_overflow():
    blocks = [(0, 2, 256), (1, 3, 256)]
    check(["a", "b"], blocks, [0, 256], 512, 256)
    for offsets, arena, align in (([0, 0], 512, 256), ([0, 128], 512, 128), ([0, 256], 256, 256), ([0, 100], 512, 256),
                                  ([-256, 256], 512, 256)):
        with pytest.raises(PlanInvalid):
            check(["a", "b"], blocks, offsets, arena, align)

    # a block made at the step another was last read at, and one placed under a block live already
    for blocks, offsets in (([(0, 2, 256), (2, 4, 256)], [0, 0]), ([(0, 4, 512), (1, 2, 512)], [256, 0])):
        with pytest.raises(PlanInvalid):
            check(["a", "b"], blocks, offsets, 1024, 256)
    # a block of no bytes at a's offset hid c's overlap with a (c's neighbour in order of offset)
    with pytest.raises(PlanInvalid, match=r"c \[512, 768\) and a \[256, 768\)"):
        check(["a", "b", "c"], [(0, 2, 512), (0, 2, 0), (1, 2, 256)], [256, 256, 512], 1024, 256)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3), st.integers(0, 4), st.integers(0, 4)),
                min_size=1, max_size=7))
def test_checker_finds_every_overlap_that_a_pairwise_test_finds(drawn):
    """The checker sweeps the steps with one sorted list of live blocks; a test of every pair
    of blocks live at a common step says the same (a block of no bytes overlaps nothing)."""
    blocks = [(first, first + length, size * 256) for first, length, size, _ in drawn]
    offsets = [slot * 256 for *_, slot in drawn]
    overlap = any(a[0] <= b[1] and b[0] <= a[1] and oa < ob + b[2] and ob < oa + a[2] and a[2] and b[2]
                  for i, (a, oa) in enumerate(zip(blocks, offsets)) for b, ob in list(zip(blocks, offsets))[i + 1:])
    names = [f"b{i}" for i in range(len(blocks))]
    try:
        check(names, blocks, offsets, 16 * 256, 256)
    except PlanInvalid:
        assert overlap
    else:
        assert not overlap


TENSORS = ["a", "b", "c", "d", "e"]


@st.composite
def valid_tables(draw):
    """A random lifetime table that obeys the symbol rules, built by simulating liveness."""
    sizes = {t: draw(st.integers(1, 40)) for t in TENSORS}
    host = {t: draw(st.booleans()) and draw(st.booleans()) for t in TENSORS}
    live, rows = set(), []
    for k in range(draw(st.integers(1, 14))):
        cells = {}
        for t in TENSORS:
            if t in live:
                cells[t] = draw(st.sampled_from(["o", "r", "w", "rw", "x", "rx", ""]))
                if cells[t].endswith("x"):
                    live.discard(t)
            elif draw(st.booleans()):
                cells[t] = draw(st.sampled_from(["+w", "+", "+wx"])) if not host[t] else "+m"
                if not cells[t].endswith("x"):
                    live.add(t)
        rows.append(f"  - s{k}: {{{', '.join(f'{t}: {v}' for t, v in cells.items() if v)}}}")
    text = ("schedule: random\ndims: {u: unit}\ntypes: {Ta: act}\ntensors:\n"
            + "".join(f"  {t}: Ta[{sizes[t]} * u]\n" for t in TENSORS) + "steps:\n" + "\n".join(rows) + "\n")
    return text, draw(st.sampled_from([1, 8, 256])), draw(st.sampled_from([*HEURISTICS, "auto"]))


@settings(max_examples=300, deadline=None)
@given(valid_tables())
def test_random_valid_tables_give_checked_plans_within_bounds(case):
    text, align, strategy = case
    plan = plan_lifetimes(bind(loads(text, "random.yaml"), {"u": 3}, "f16", align), strategy)
    device = plan.device()
    check([b.name for b in device], [(b.first, b.last, b.size) for b in device],
          [b.offset for b in device], plan.arena, align)
    assert plan.lower_bound <= plan.arena <= plan.no_reuse


def test_schedule_and_lifetimes_round_trip_through_json():
    import json
    from planner.lifetimes import Lifetimes
    from planner.schedule import Schedule
    schedule = load("schedules/llama.yaml")
    assert Schedule.from_dict(json.loads(json.dumps(schedule.to_dict()))) == schedule
    lt = bind(schedule, with_tile({**PRESETS["smollm2-135m"], "n": 4}))
    assert Lifetimes.from_dict(json.loads(json.dumps(lt.to_dict()))) == lt


def test_the_readmes_python_example_runs_and_prints_what_it_says(capsys):
    """README's pipeline from Python: run as written, printing the figures its comment gives."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    code = textwrap.dedent(block)
    exec(compile(code, "README.md", "exec"), {})
    said = re.search(r"print\(.*\)\s*# (.*)", code).group(1)
    assert capsys.readouterr().out.strip() == said.strip()
    exec(compile(code.replace('"llama-layer.yaml"', '"llama.yaml"'), "README.md", "exec"), {})  # the whole model too
    arena, bound, optimal = capsys.readouterr().out.split()
    assert int(arena) > int(said.split()[0]) and optimal == "True"


@pytest.mark.parametrize("blocks, offsets, arena, align, fault", [
    ([(0, 1, 4), (1, 2, 4)], [3, 0], 8, 1, r"b \[0, 4\) and a \[3, 7\) are live together and overlap"),   # by a byte, below
    ([(0, 1, 4), (1, 2, 4)], [0, 3], 8, 1, r"b \[3, 7\) and a \[0, 4\) are live together and overlap"),   # above
    ([(0, 0, 4), (1, 1, 4)], [2, 0], 8, 4, "a: offset 2 is not a non-negative multiple of 4"),
    ([(0, 0, 4), (1, 1, 4)], [-4, 0], 8, 4, "a: offset -4 is not a non-negative multiple of 4"),
    ([(0, 0, 4), (1, 1, 4)], [0, 0], 3, 1, r"a: \[0, 4\) runs past the arena of 3 bytes"),
])
def test_the_checker_refuses_each_kind_of_wrong_plan(blocks, offsets, arena, align, fault):
    with pytest.raises(PlanInvalid, match=fault):
        check(["a", "b"], blocks, offsets, arena, align)
    check(["a", "b"], [(0, 0, 4), (1, 1, 4)], [0, 4], 8, 4)     # (and passes one that is right)


@pytest.mark.parametrize("arena, bound, shown", [(1_000_001, 1_000_000, "1.000001"), (1_000, 1_000, "1.000"),
                                                 (1_500, 1_000, "1.500"), (1_000_400, 1_000_000, "1.0004")])
def test_an_arena_above_its_bound_never_reads_as_its_bound(arena, bound, shown):
    from planner.report import ratio
    assert ratio(Plan(arena, bound, 1, "naive", [], [])) == shown


def test_a_plans_dict_is_its_own():
    """Changing what to_dict gives leaves the plan as it was."""
    plan = plan_lifetimes(bind(load("schedules/llama-layer.yaml"), {**PRESETS["smollm2-135m"], "n": 7}))
    before = plan.to_json()
    d = plan.to_dict()
    d["buffers"][0]["offset"], d["dims"]["n"] = 12345, 99
    d["steps"].append("more")
    next(b for b in d["buffers"] if b["shape"])["shape"].append(2)
    assert plan.to_json() == before
    assert Plan.from_dict(json.loads(before)).to_json() == before


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), 0, -1, "10"])
def test_place_refuses_a_time_limit_no_search_could_keep(seconds):
    """From Python as from the command line: NaN never comes, infinity overflows a wait."""
    from planner.errors import ArenaError
    lifetimes = bind(load("schedules/llama-layer.yaml"), {**PRESETS["smollm2-135m"], "n": 7})
    with pytest.raises(ArenaError, match="--time-limit must be a"):
        plan_lifetimes(lifetimes, "exact", seconds)


def test_a_schedules_text_of_another_type_is_a_type_error():
    with pytest.raises(TypeError, match="loads takes the schedule's text as a str, not bytes"):
        loads(b"schedule: t\n")


@pytest.mark.parametrize("change", [{"size": -8}, {"memory": "gpu"}, {"first": 3, "last": 1}])
def test_place_refuses_buffers_no_reader_would_make(change):
    """Buffers made in Python: -8 bytes planned an arena of 8, 'gpu' counted as neither memory."""
    from planner.errors import ArenaError
    from planner.plan import Buffer, place
    buffers = [Buffer("a", "a", 0, 2, 8, None), Buffer("b", "b", 1, 4, 8, None)]
    buffers[1].__dict__.update(change)
    with pytest.raises(ArenaError, match="buffer 'b': memory"):
        place(buffers, "auto", 1, [])
