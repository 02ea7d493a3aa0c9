"""`arena`, `arena plan` and `arena convert` as a user runs them: output, files, exit codes."""
import contextlib
import json
import os
import re
import stat
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import networkx as nx
import pytest

from llama_arena.cli import main
from planner.estimate import RUNTIME_BYTES
from planner.place import HEURISTICS

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "docs" / "seed-layer.md"      # the seed's own table (tests/test_markdown.py checks it is)


def arena(*args):
    """Run the real command line in a subprocess: (exit code, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "llama_arena", *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_version_is_the_installed_distributions():
    code, out, err = arena("--version")
    assert code == 0, err
    assert out == f"arena {version('llama-arena')}\n"


def test_a_plan_loads_neither_or_tools_nor_the_package_metadata():
    """Start-up: importlib.metadata (30 ms) only for --version, OR-Tools (0.4 s) only for
    a search that needs it."""
    code = ("import sys; from llama_arena.cli import main; main(['plan', '--csv', 'docs/minimalloc.csv']); "
            "print('importlib.metadata' in sys.modules, 'ortools' in sys.modules, file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=Path(__file__).parent.parent)
    assert p.stderr.split() == ["False", "False"]


def test_arena_spins_openmp_threads_briefly_unless_told_otherwise():
    """libgomp reads GOMP_SPINCOUNT as torch loads it: set before, by the executor's package."""
    code = ("import os, sys; import llama_arena.cli; print(os.environ.get('GOMP_SPINCOUNT'), "
            "'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    run = lambda **more: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                        env={**env, **more}, cwd=Path(__file__).parent.parent).stdout.split()
    assert run() == ["10000", "False"] and run(GOMP_SPINCOUNT="5")[0] == "5"


@pytest.mark.slow
def test_a_plan_of_a_gguf_file_loads_neither_gguf_nor_numpy(smollm2_path):
    """Its header is read by planner/gguf_header.py, its tensors checked by gguf_tensors.py."""
    code = (f"import sys; from llama_arena.cli import main; main(['plan', 'llama', '--model', {str(smollm2_path)!r}, "
            "'--set', 'n=4']); print('gguf' in sys.modules, 'numpy' in sys.modules, file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=Path(__file__).parent.parent)
    assert p.stderr.split() == ["False", "False"]


def test_plan_json_has_the_documented_keys(capsys):
    assert main(["plan", "schedules/llama.yaml", "--set", "n=7", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert {"arena", "lower_bound", "align", "strategy", "steps", "buffers", "optimal", "bound"} <= set(plan)
    assert plan["arena"] == plan["lower_bound"] and plan["align"] == 256 and plan["optimal"] is True
    for b in plan["buffers"]:
        assert {"name", "tensor", "first", "last", "size", "offset", "memory"} <= set(b)
        assert 0 <= b["first"] <= b["last"] < len(plan["steps"]) and b["size"] % 256 == 0
        assert (b["offset"] is None) == (b["memory"] == "host")
    assert plan["steps"][:3] == ["setup", "embedding", "attn_norm.0"]


def test_plan_table_shows_instances_and_summary(capsys):
    assert main(["plan", "llama-layer", "--model", "open_llama_3b", "--set", "n=6", "--dtype", "f16"]) == 0
    out = capsys.readouterr().out
    for word in ("x_#1", "attn#0", "f16[6, 9600]", "arena", "lower bound", "arena / lower bound", "1.000",
                 "no-reuse total", "bytes saved", "host bytes", "host"):
        assert word in out
    assert re.search(r"dims +d=3200 nh=32 .* n=6\n", out)      # the dims, from the model and --set
    assert re.search(r"proven optimal +yes \(offsets multiples of 256\)", out)
    assert main(["plan", "--csv", "docs/minimalloc.csv"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"proven optimal +yes\n", out) and "dims" not in out


def test_plan_from_gguf_and_config_json(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=96, num_hidden_layers=3, vocab_size=100,
                                   max_position_embeddings=32)))
    assert main(["plan", "llama", "--model", str(cfg), "--set", "n=5", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["dims"] == dict(n=5, d=64, nh=4, nkvh=2, dh=16, di=96, nlayers=3, vocab=100, nctx=32, tile=32)


def test_plan_estimate_counts_weights_kv_cache_and_arena(capsys):
    assert main(["plan", "llama", "--model", "smollm2-135m", "--nctx", "512", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["dims"]["nctx"] == plan["dims"]["n"] == 512
    assert plan["kv_bytes"] == 30 * 2 * 512 * 3 * 64 * 4
    assert plan["weight_bytes"] == 538_060_032   # what executor.weights.assemble holds for SmolLM2 in f32
    assert plan["rope_bytes"] == 2 * 512 * 64 * 4          # cos and sin, a row of dh for each position
    assert plan["total_bytes"] == plan["weight_bytes"] + plan["arena_bytes"] + plan["rope_bytes"] + plan["runtime_bytes"]
    assert plan["runtime_bytes"] == RUNTIME_BYTES and plan["workspace_bytes"] == 0
    assert main(["plan", "llama", "--nctx", "512", "--set", "n=16", "--dtype", "bf16"]) == 0
    out = capsys.readouterr().out
    assert "weights (bf16)" in out and "269,030,016" in out and "torch and the session (CPU)" in out and "\ntotal " in out


@pytest.mark.parametrize("tied", [True, False])
def test_plan_estimate_counts_an_untied_output_head(tied, tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(dict(hidden_size=64, num_attention_heads=4, intermediate_size=96,
                                   num_hidden_layers=3, vocab_size=100, tie_word_embeddings=tied)))
    assert main(["plan", "llama", "--model", str(cfg), "--nctx", "8", "--json"]) == 0
    layer = 64 * 3 * 64 + 64 * 64 + 3 * 64 * 96 + 2 * 64
    table = 100 * 64
    assert json.loads(capsys.readouterr().out)["weight_bytes"] == 4 * ((1 if tied else 2) * table + 3 * layer + 64)


def test_plan_out_and_graph_files(tmp_path, capsys):
    out, graphml = tmp_path / "plan.json", tmp_path / "g.graphml"
    assert main(["plan", "llama-layer", "--set", "n=7", "--out", str(out), "--graph", str(graphml)]) == 0
    assert json.loads(out.read_text())["arena"] > 0
    g = nx.read_graphml(graphml)
    assert g.has_edge("x_#0", "attn#0") and not g.has_edge("attn#0", "x_#1")


def test_an_output_that_replaces_a_file_keeps_its_mode(tmp_path, capsys):
    """The file is replaced whole, yet a private plan stays private."""
    out = tmp_path / "plan.json"
    out.write_text("old")
    out.chmod(0o600)
    assert main(["plan", "llama-layer", "--set", "n=7", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["arena"] > 0 and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_plan_on_a_terminal_narrower_than_the_view_is_drawn_at_the_narrowest(tmp_path):
    """On a terminal (a pseudo-terminal here) COLUMNS=0 drew nothing: the table takes 20 columns."""
    import threading
    main_end, child_end = os.openpty()
    chunks = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: _read_pty(main_end), b"")))
    reader.start()
    p = subprocess.run([sys.executable, "-m", "llama_arena", "plan", "llama-layer", "--set", "n=3"],
                       stdout=child_end, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "0"})
    os.close(child_end)
    reader.join(timeout=60)
    os.close(main_end)
    lines = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode()).splitlines()     # less the styles
    assert p.returncode == 0 and any("arena" in line for line in lines)
    assert max(len(line) for line in lines) == 20


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:         # EIO: the child's end closed
        return b""


@pytest.mark.parametrize("more", [[], ["--tp", "2"]])
def test_out_saves_what_json_prints_and_reads_back_as_a_plan(tmp_path, capsys, more):
    """One rank or several: the estimate is in the file, as --json prints it, and a plan's
    JSON reads back as the plan (its estimate left out)."""
    from planner.plan import Plan
    out = tmp_path / "plan.json"
    assert main(["plan", "llama", "--set", "n=7", "--json", "--out", str(out), *more]) == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed
    saved = json.loads(printed)
    plans = saved["ranks"] if more else [saved]
    for p in plans:
        assert p["total_bytes"] > p["weight_bytes"] > 0
        again = json.loads(Plan.from_dict(p).to_json())
        assert again == {key: p[key] for key in again} and "total_bytes" not in again


def test_csv_plan_and_solution(tmp_path, capsys):
    problem = tmp_path / "p.csv"
    problem.write_text("id,lower,upper,size\nb1,0,3,4\nb2,3,9,4\nb3,0,9,4\nb4,9,21,4\nb5,0,21,4\n")
    solution = tmp_path / "s.csv"
    assert main(["plan", "--csv", str(problem), "--out", str(solution), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["arena"] == 12 and plan["align"] == 1 and plan["steps"] == []
    assert solution.read_text().splitlines()[0] == "id,lower,upper,size,offset"


def test_capacity_met_prints_a_plan_within_it(capsys):
    assert main(["plan", "--csv", "docs/unreachable.csv", "--capacity", "6", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["arena"] <= 6


def test_capacity_reads_units_as_budget_does(capsys):
    """Sizes with units, as --budget reads them: minimalloc's README example plans within
    0.012KB (its optimum, 12 bytes), and not within 0.011KB."""
    assert main(["plan", "--csv", "docs/minimalloc.csv", "--capacity", "0.012KB", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["arena"] == 12
    code, _, err = arena("plan", "--csv", "docs/minimalloc.csv", "--capacity", "0.011KB")
    assert code == 3 and "no plan fits in 11 bytes" in err


@pytest.mark.parametrize("args, message", [
    (["--capacity", "4"], "no plan fits in 4 bytes: proven impossible, every plan needs at least 5 bytes"),
    (["--capacity", "1"], "no plan fits in 1 byte: proven impossible, every plan needs at least 4 bytes"),
    (["--capacity", "5", "--strategy", "naive"],
     "no plan within 5 bytes found by naive, and none proven impossible (the best plan found needs 12 bytes)"),
])
def test_capacity_missed_is_one_line_and_exit_3(args, message):
    code, out, err = arena("plan", "--csv", "docs/unreachable.csv", *args)
    assert code == 3 and out == ""
    assert err.strip() == f"arena: {message}"


@pytest.mark.parametrize("capacity, proven, bound, best", [(4, True, 5, 5), (1, True, 4, 6)])
def test_capacity_missed_with_json_prints_an_object_saying_so_and_writes_no_file(tmp_path, capacity, proven, bound,
                                                                                   best):
    """A reader of --json got empty input on a miss; the exit code and the stderr line stay."""
    out_file = tmp_path / "p.json"
    code, out, err = arena("plan", "--csv", "docs/unreachable.csv", "--capacity", str(capacity), "--json",
                           "--out", str(out_file))
    assert code == 3 and err.startswith("arena: no plan fits") and not out_file.exists()
    assert json.loads(out) == {"capacity": capacity, "fits": False, "proven": proven, "bound": bound, "best": best,
                               "message": err.strip().removeprefix("arena: ")}


def test_capacity_missed_after_a_search_names_the_heuristic_whose_plan_is_the_best(tmp_path):
    """Deciding, the search makes no plan above the capacity: the best plan a miss reports is a
    heuristic's, and the message names it."""
    capacity = _unanswered(tmp_path / "p.csv")
    code, out, err = arena("plan", "--csv", str(tmp_path / "p.csv"), "--capacity", str(capacity), "--time-limit", "3")
    named = re.fullmatch(r"arena: no plan within [\d,]+ bytes found in 3 s, and none proven impossible "
                         r"\(the best plan found, ([a-z-]+)'s, needs ([\d,]+) bytes; more --time-limit may find one\)\n",
                         err)
    assert code == 3 and out == "" and named, err
    assert named[1] in HEURISTICS and int(named[2].replace(",", "")) > capacity


def _unanswered(path: Path) -> int:
    """Writes a production-like problem that the search does not answer in 30 s at its capacity
    (prod-450 seed 0) to the CSV `path`; its capacity."""
    from benchmarks.families import production
    blocks, _, capacity = production(450, 0)
    rows = "".join(f"b{i},{b.first},{b.last + 1},{b.size}\n" for i, b in enumerate(blocks))
    path.write_text("id,lower,upper,size\n" + rows)
    return capacity


def test_convert_prints_yaml_that_plans_like_the_layer(tmp_path, capsys):
    assert main(["convert", str(SEED)]) == 0
    converted = tmp_path / "seed.yaml"
    converted.write_text(capsys.readouterr().out)
    main(["plan", str(converted), "--set", "n=7", "--json"])
    a = json.loads(capsys.readouterr().out)
    main(["plan", "llama-layer", "--set", "n=7", "--json"])
    b = json.loads(capsys.readouterr().out)
    assert (a["arena"], a["buffers"]) == (b["arena"], b["buffers"])


@pytest.mark.parametrize("args, message", [
    (["plan", "nope.yaml", "--set", "n=1"], "nope.yaml: cannot read the schedule"),
    (["plan", "llama", "--model", "no-such-model"], "--model: 'no-such-model' is neither a preset"),
    (["plan", "llama"], "dimension 'n' (tokens in this call) is not bound: pass --set n=N (or --nctx N, a call of "
                        "the whole context)"),
    (["plan", "llama", "--set", "n=0"], "evaluates to (0): every dimension must be positive (and 12 more"),
    (["plan", "llama", "--set", "n=x"], "--set n=x: expected NAME=INTEGER"),
    (["plan", "llama", "--set", "n=2", "--set", "q=3"], "--set q: the schedule has no dimension 'q'"),
    (["plan", "llama", "--set", "n=2", "--set", "nh=7"],
     "--set nh=7 is not a multiple of the default model smollm2-135m's nkvh=3: grouped-query attention gives each "
     "key-value head the same number of query heads; --set nkvh too"),
    (["plan", "llama", "--set", "n=2", "--set", "nh=2", "--set", "nkvh=8"], "--set nh=2 is not a multiple of --set nkvh=8"),
    (["plan", "llama", "--set", "n=7", "--set", "nh=10", "--budget", "1GiB"],
     "--set nh=10 is not a multiple of the default model smollm2-135m's nkvh=3"),
    (["plan", "llama", "--set", "n=2", "--align", "0"], "--align must be a positive number"),
    (["plan", "llama", "--nctx", "0"], "--nctx must be at least 1 position, not 0"),
    (["plan", "--csv", "missing.csv"], "missing.csv: cannot read the CSV"),
    (["plan"], "say what to plan"),
    (["plan", "llama", "--set", "n=2", "--time-limit", "-1"], "--time-limit must be a positive number of seconds, not -1"),
    (["plan", "--csv", "docs/minimalloc.csv", "--capacity", "0"], "--capacity '0': must be at least 1 byte"),
    (["plan", "--csv", "docs/minimalloc.csv", "--capacity", "1e3"], "--capacity '1e3': not a size"),
    (["convert", "missing.md"], "missing.md: cannot read the table"),
    (["plan", "./llama", "--set", "n=2"], "./llama: no such file; the schedule llama that ships is named without a path"),
    (["plan", "lama", "--set", "n=2"], "lama: no such file, nor a schedule that ships by that name (llama, llama-layer)"),
    (["plan", "llama", "--nctx", "2048", "--budget", "700MiB", "--align", "1048576"],
     "--budget fits the plans arena run makes (--align 256), not --align 1048576"),
    (["plan", "lama", "--budget", "1GiB", "--set", "n=5"], "lama: no such file, nor a schedule that ships"),
])
def test_bad_input_is_one_clear_line_and_exit_2(args, message):
    code, out, err = arena(*args)
    assert code == 2, err
    assert message in " ".join(err.split()) and "Traceback" not in err


def test_an_unbound_call_size_is_named_alone_not_the_tile_it_would_give(capsys):
    """The key tile is bound from n and nctx (calls.with_tile): asking for it too misled."""
    assert main(["plan", "llama", "--set", "nctx=64"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["plan", "llama", "--set", "n=4", "--set", "nctx=64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dims"]["tile"] == 64


def test_a_folder_named_as_a_shipped_schedule_leaves_the_name_to_it(tmp_path, monkeypatch, capsys):
    """A folder named llama (a clone of Meta's repository, say) is no schedule; and the run's own
    plans take the schedule that ships even beside a file named llama."""
    from planner.estimate import run_plans
    from planner.models import model_dims
    monkeypatch.chdir(tmp_path)
    (tmp_path / "llama").mkdir()
    assert main(["plan", "llama", "--set", "n=2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["arena"] > 0
    (tmp_path / "llama").rmdir()
    (tmp_path / "llama").write_text("echo hi\n")
    assert [p.arena > 0 for p in run_plans(model_dims("smollm2-135m"), "f32", {1, 5})] == [True, True]


def test_a_table_named_llama_is_not_the_run_schedule(tmp_path, monkeypatch, capsys):
    """The seed's table saved as llama.md is named llama too: its plan had the run's estimate
    added (a KeyError: it has no vocabulary), and --budget fitted the shipped schedule instead."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "llama.md").write_text(SEED.read_text())
    assert main(["plan", "llama.md", "--set", "n=7", "--json"]) == 0
    assert "total_bytes" not in json.loads(capsys.readouterr().out)
    assert main(["plan", "llama.md", "--set", "n=7", "--budget", "1GiB"]) == 2
    assert "--budget: fits a run of the llama schedule that ships" in capsys.readouterr().err
    (tmp_path / "copy.yaml").write_bytes((ROOT / "schedules" / "llama.yaml").read_bytes())   # a copy is the same
    assert main(["plan", "copy.yaml", "--model", "smollm2-135m", "--set", "n=7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_bytes"] > 0


def test_errors_are_printed_at_columns_0(monkeypatch):
    """rich prints nothing at all on a console 0 columns wide."""
    monkeypatch.setenv("COLUMNS", "0")
    code, _, err = arena("plan", "nope.yaml")
    assert code == 2 and "nope.yaml: cannot read the schedule" in err


def test_steps_of_the_same_name_are_told_apart_by_number_in_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "150")
    table = ("schedule: t\ndims: {n: rows}\ntypes: {Ta: act}\ntensors:\n  x: Ta[n]\n  h: Ta[n, 4]\nsteps:\n"
             "  - in: {x: +w}\n  - norm: {x: r, h: +w}\n  - mlp: {x: rw, h: rx}\n  - norm: {x: r, h: +w}\n"
             "  - mlp: {x: rw, h: rx}\n  - out: {x: rx}\n")
    (tmp_path / "t.yaml").write_text(table)
    assert main(["plan", str(tmp_path / "t.yaml"), "--set", "n=100"]) == 0
    out = capsys.readouterr().out
    assert "norm..mlp (1..2)" in out and "norm..mlp (3..4)" in out and "in..out (0..5)" in out
    assert main(["plan", "llama-layer", "--set", "n=7"]) == 0
    assert "attn_norm..attn_qkv " in capsys.readouterr().out      # names alone where each is one step's


def test_a_set_of_a_misspelt_dimension_is_named_beside_the_dimension_left_unbound():
    code, _, err = arena("plan", "llama-layer", "--set", "N=7")
    assert code == 2 and err.count("arena: error:") == 2, err
    assert "--set N: the schedule has no dimension 'N'" in err and "dimension 'n' (tokens in this call) is not bound" in err


def test_a_dimension_set_to_zero_is_one_fault_for_every_shape_it_empties():
    code, _, err = arena("plan", "llama", "--set", "n=0")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("arena: error: ") and "tensor 'tokens': shape Ttok[n] evaluates to (0)" in err
    assert err.rstrip().endswith("(and 12 more tensors' shapes with n not positive)"), err
    code, _, err = arena("plan", "llama", "--set", "n=0", "--set", "nctx=0")     # kv's nctx is a fault of its own
    assert code == 2 and err.count("\n") == 3 and "tensor 'kv'" in err and "with n, tile not positive" in err, err


def test_the_faults_of_a_dimension_bound_to_0_count_each_shape_once_and_hide_no_other_cause(tmp_path):
    table = tmp_path / "t.yaml"
    table.write_text("schedule: t\ndims: {n: rows, d: width, k: keys}\ntypes: {Ta: act}\ntensors:\n  x: Ta[n, d]\n"
                     "  mask: Ta[n, n]\n  f: Ta[n * n + 1, k - 10]\nsteps:\n  - s0: {x: +w, mask: +w, f: +w}\n"
                     "  - s1: {x: rx, mask: rx, f: rx}\n")
    code, _, err = arena("plan", str(table), "--set", "n=0", "--set", "d=8", "--set", "k=4")
    assert code == 2 and err.count("arena: error: ") == 2, err
    assert "tensor 'x'" in err and "(and 1 more tensor's shape with n not positive)" in err, err    # x and mask
    assert "tensor 'f': shape Ta[n * n + 1, k - 10] evaluates to (1, -6)" in err, err    # k's, not n's


def test_shapes_not_positive_for_want_of_a_dimension_bound_to_0_are_each_a_fault(tmp_path):
    table = tmp_path / "t.yaml"
    table.write_text("schedule: t\ndims: {n: rows}\ntypes: {Ta: act}\ntensors:\n  a: Ta[n - 8]\n  b: Ta[n - 9, 2]\n"
                     "steps:\n  - s0: {a: +w, b: +w}\n  - s1: {a: rx, b: rx}\n")
    code, _, err = arena("plan", str(table), "--set", "n=7")
    assert code == 2 and err.count("arena: error: ") == 2 and "evaluates to (-1)" in err and "evaluates to (-2, 2)" in err


def test_unwritable_output_leaves_no_file(tmp_path):
    code, _, err = arena("plan", "llama-layer", "--set", "n=7", "--out", str(tmp_path / "no" / "dir" / "p.json"))
    assert code == 2 and "--out" in err and "does not exist" in err
    assert not (tmp_path / "no").exists()


def test_bad_option_value_is_exit_2():
    code, _, err = arena("plan", "llama", "--dtype", "f8")
    assert code == 2 and "invalid choice: 'f8'" in err


@pytest.mark.parametrize("argv, message", [
    (["plan", "llama", "--align", "1.5"], "arena plan: error: argument --align: invalid integer: '1.5'"),
    (["plan", "llama", "--time-limit", "abc"], "arena plan: error: argument --time-limit: invalid number: 'abc'"),
    (["viz", "llama", "--width", "abc"], "arena viz: error: argument --width: invalid integer: 'abc'"),
    # ASCII digits only, as --set takes them: int() and float() also read these
    (["plan", "llama", "--align", "1_024"], "arena plan: error: argument --align: invalid integer: '1_024'"),
    (["plan", "llama", "--nctx", "\uff17"], "arena plan: error: argument --nctx: invalid integer: '\uff17'"),
    (["run", "--prompt", "hi", "--temperature", "\u0663"],
     "arena run: error: argument --temperature: invalid number: '\u0663'"),
    (["run", "--prompt", "hi", "--dtype", "f64"], "arena run: error: argument --dtype: invalid choice: 'f64'"),
    (["convert"], "arena convert: error: the following arguments are required: TABLE.md"),
    ([], "arena: error: the following arguments are required: COMMAND"),
])
def test_option_faults_argparse_finds_are_one_line_too(argv, message):
    code, out, err = arena(*argv)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1, err


@pytest.mark.parametrize("length", [300, 250])
def test_a_name_too_long_is_refused_and_one_that_fits_is_written(length, tmp_path, capsys):
    """NAME_MAX is 255 bytes: the temporary file beside a 250-byte name has a shorter name."""
    for option in ("--out", "--graph"):
        path = tmp_path / ("b" * length)
        code = main(["plan", "llama-layer", "--set", "n=7", option, str(path)])
        err = capsys.readouterr().err
        if length > 255:
            assert code == 2 and err == f"arena: error: {option} {path}: cannot write there: File name too long\n"
            assert list(tmp_path.iterdir()) == []
        else:
            assert code == 0 and [p.name for p in tmp_path.iterdir()] == [path.name]
            path.unlink()


def test_out_is_never_the_input_nor_the_graph(tmp_path, capsys):
    schedule = tmp_path / "layer.yaml"
    schedule.write_text(Path("schedules/llama-layer.yaml").read_text())
    before = schedule.read_text()
    assert main(["plan", str(schedule), "--set", "n=7", "--out", str(schedule)]) == 2
    assert capsys.readouterr().err == (f"arena: error: --out {schedule}: the same file as the schedule {schedule}, "
                                       "which it would overwrite\n")
    assert schedule.read_text() == before
    same = tmp_path / "same"
    assert main(["plan", str(schedule), "--set", "n=7", "--out", str(same), "--graph", str(same)]) == 2
    assert capsys.readouterr().err == f"arena: error: --graph {same}: the same file as --out; one would overwrite the other\n"
    assert not same.exists()


def test_out_never_overwrites_the_model(tmp_path, capsys):
    """Nor any file of its folder that a run reads: its weights (whose header plan reads) too."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(dict(hidden_size=64, num_attention_heads=4, intermediate_size=128,
                                      num_hidden_layers=2, vocab_size=100, tie_word_embeddings=True)))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights")
    for model, option, target, what in ((config, "--graph", config, "--model's config.json"),
                                        (config, "--out", weights, "--model's model.safetensors"),
                                        (tmp_path, "--out", config, "--model's config.json"),
                                        (tmp_path, "--out", weights, "--model's model.safetensors")):
        assert main(["plan", "llama", "--set", "n=7", "--model", str(model), option, str(target)]) == 2
        err = capsys.readouterr().err
        assert err.endswith(f"the same file as {what} {target}, which it would overwrite\n"), err
    assert json.loads(config.read_text())["hidden_size"] == 64 and weights.read_bytes() == b"weights"


def test_a_weights_header_nested_too_deep_is_no_traceback(tmp_path, capsys):
    """plan reads the safetensors header for a stored head; one it cannot read counts none."""
    (tmp_path / "config.json").write_text(json.dumps(dict(hidden_size=64, num_attention_heads=4, intermediate_size=128,
                                                          num_hidden_layers=2, vocab_size=100,
                                                          tie_word_embeddings=True)))
    header = b"[" * 100_000
    (tmp_path / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    assert main(["plan", "llama", "--set", "n=7", "--model", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["arena"] > 0


def test_an_output_on_a_read_only_file_system_says_so(tmp_path, capsys, monkeypatch):
    """Mounted read-only, a folder refuses writing to root too: 'permission denied' sent the user
    to the folder's mode. (A read-only mount needs root, so the file system's answer is given.)"""
    import types
    folder = str(tmp_path)
    real_access, real_statvfs = os.access, os.statvfs
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == folder else real_access(p, mode))
    monkeypatch.setattr(os, "statvfs", lambda p: types.SimpleNamespace(f_flag=os.ST_RDONLY) if str(p) == folder
                        else real_statvfs(p))
    assert main(["plan", "llama-layer", "--set", "n=7", "--out", str(tmp_path / "p.json")]) == 2
    assert capsys.readouterr().err == f"arena: error: --out {tmp_path / 'p.json'}: cannot write there: read-only file system\n"


def test_an_output_through_a_loop_of_links_is_refused(tmp_path, capsys):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert main(["plan", "llama-layer", "--set", "n=7", "--out", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err == f"arena: error: --out {tmp_path / 'a'}: cannot write there: Too many levels of symbolic links\n"
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()


@pytest.mark.parametrize("args, message", [
    (["llama", "--nctx", "99999999999999999999"], "--nctx 99999999999999999999: too large, 18 digits at most"),
    (["llama-layer", "--nctx", "5"], "--nctx 5: the schedule has no dimension 'nctx'"),
    (["llama", "--set", "n=7", "--set", "n=8"], "--set n=8: n is bound twice (--set n=7 too); give it once"),
    (["llama", "--model", "", "--set", "n=3"], "--model: the name is empty"),
    (["llama", "--nctx", "5", "--set", "nctx=7"], "--nctx 5 and --set nctx=7: both bind nctx; give one"),
    (["llama", "--nctx", "16", "--set", "n=32"], "--set n=32: a call of 32 tokens is longer than the context (--nctx 16)"),
    (["llama", "--set", "nctx=50", "--set", "n=100"],
     "--set n=100: a call of 100 tokens is longer than the context (--set nctx=50)"),
    (["llama", "--nctx", "16", "--set", "tile=64"], "--set tile=64: a tile of keys longer than the context (--nctx 16)"),
    (["llama", "--model", "open_llama_3b", "--set", "n=4096"],
     "--set n=4096: a call of 4096 tokens is longer than the context (the model's nctx=2048)"),
    (["llama", "--set", "n=7", "--set", "tile=9000"], "--set tile=9000: a tile of keys longer than the context "
                                                      "(the default model smollm2-135m's nctx=8192)"),
    (["--csv", "docs/minimalloc.csv", "--nctx", "5"], "--nctx: is for a SCHEDULE; a --csv problem has no model"),
    (["--csv", "docs/minimalloc.csv", "--set", "n=5"], "--set: is for a SCHEDULE; a --csv problem has no model"),
    (["--csv", "docs/minimalloc.csv", "--model", "llama-2-7b"], "--model: is for a SCHEDULE; a --csv problem"),
    (["--csv", "docs/minimalloc.csv", "--weights", "bf16"], "--weights: is for the llama schedule's estimate; a --csv "
                                                            "problem has no weights"),
    (["--csv", "docs/minimalloc.csv", "--dtype", "f16"], "--dtype: is for a SCHEDULE; a --csv problem"),
    (["--csv", "docs/minimalloc.csv", "--align", str(2**62)],
     f"--align {2**62}: the device buffers, each rounded up to a multiple of it, add up to"),
])
def test_messages_name_the_option_the_user_gave(args, message, capsys):
    assert main(["plan", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"arena: error: {message}") and err.count("\n") == 1, err


def test_out_under_a_file_says_it_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main(["plan", "llama-layer", "--set", "n=7", "--out", str(tmp_path / "afile" / "p.json")]) == 2
    assert capsys.readouterr().err == (f"arena: error: --out {tmp_path / 'afile' / 'p.json'}: "
                                       f"{tmp_path / 'afile'} is a file, not a folder\n")


@pytest.mark.parametrize("form, start", [(["--json"], b"{"), (["--tp", "3"], b"rank 0"),
                                         (["--json", "--out", "/dev/stdout"], b"{")])
def test_a_reader_that_leaves_early_ends_the_command_quietly(form, start):
    """`arena plan ... | head`: no traceback when the pipe closes, and the same exit code for
    a table as for JSON (each over the pipe's 64 KiB buffer)."""
    p = subprocess.Popen([sys.executable, "-m", "llama_arena", "plan", "llama", "--set", "n=7", *form],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.read(10).startswith(start)
    p.stdout.close()
    assert p.stderr.read() == b"" and p.wait() == 141


def test_an_output_past_the_file_size_limit_is_named_as_the_output(tmp_path):
    """ulimit -f: the write fails with EFBIG (Python ignores SIGXFSZ)."""
    p = subprocess.run(["sh", "-c", f'ulimit -f 1 && exec "$0" -m llama_arena plan llama --set n=7 > "{tmp_path}/o.txt"',
                        sys.executable], capture_output=True, text=True)
    assert (p.returncode, p.stderr) == (1, "arena: error: File too large (writing the output)\n")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("json_option", [[], ["--json"]])
def test_an_output_that_cannot_be_written_is_one_line(json_option):
    """Standard output on a full disk: one line, exit 1, no traceback."""
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "llama_arena", "plan", "llama", "--set", "n=7", *json_option],
                           stdout=full, stderr=subprocess.PIPE, text=True)
    assert (p.returncode, p.stderr) == (1, "arena: error: No space left on device (writing the output)\n")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["plan", "--help"],
                                  ["plan", "llama-layer", "--set", "n=7", "--out", "/dev/full"]])
def test_help_version_and_files_that_cannot_be_written_are_exit_1(argv):
    """As standard output on a full disk: the system failed, not the input (a bad path is exit 2)."""
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "llama_arena", *argv], stdout=full, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "No space left on device" in p.stderr, p.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("argv, code", [(["--bogus"], 2), (["plan", "no-such.yaml"], 2),
                                        (["plan", "llama-layer", "--set", "n=7", "--capacity", "1"], 3)])
def test_a_fault_keeps_its_exit_code_when_its_message_cannot_be_written(argv, code):
    with open("/dev/full", "w") as full:
        assert subprocess.run([sys.executable, "-m", "llama_arena", *argv], stderr=full).returncode == code
    assert subprocess.run([sys.executable, "-m", "llama_arena", *argv], stdout=subprocess.DEVNULL,
                          preexec_fn=lambda: os.close(2)).returncode == code      # standard error closed
    read, write = os.pipe()
    os.close(read)      # a reader that left: rich's own handler would exit 1
    try:
        assert subprocess.run([sys.executable, "-m", "llama_arena", *argv], stdout=subprocess.DEVNULL,
                              stderr=write).returncode == code
    finally:
        os.close(write)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_ctrl_c_among_the_renames_waits_for_the_last(tmp_path, monkeypatch):
    """A command's outputs are renamed into place all together: Ctrl-C during the first rename
    takes effect after the last, leaving every file new and no temporary file; so too with
    another thread running, which the kernel may hand the signal to."""
    import select
    import signal
    import threading

    from planner import output
    done = threading.Event()
    threading.Thread(target=done.wait).start()
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text("old")
    replace = os.replace

    def interrupted(src, dst):
        # the kernel may hand the signal to the other thread, which a busy machine runs only later:
        # wait until Python's handler in C has it (it writes to the wakeup fd), whichever thread took it
        wake, woken = os.pipe()
        os.set_blocking(woken, False)
        before = signal.set_wakeup_fd(woken)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            assert select.select([wake], [], [], 30)[0]
        finally:
            signal.set_wakeup_fd(before)
            os.close(wake)
            os.close(woken)
        replace(src, dst)

    monkeypatch.setattr(output.os, "replace", interrupted)
    # Ctrl-C as a terminal's command has it (a shell's background job starts with it ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            output.write_all([("--out", str(tmp_path / "a.json"), "new"), ("--graph", str(tmp_path / "b.json"), "new")])
    finally:
        done.set()
        signal.signal(signal.SIGINT, previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text() == "new"


def test_a_folder_out_of_inodes_is_the_systems_fault(tmp_path, monkeypatch, capsys):
    """No new file can be made there (ENOSPC from a full inode table): exit 1, as a full disk."""
    import errno
    import tempfile

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkstemp", full)
    assert main(["plan", "llama-layer", "--set", "n=7", "--out", str(tmp_path / "p.json")]) == 1
    assert capsys.readouterr().err.endswith(f"cannot make a file in {tmp_path}: No space left on device\n")


def test_a_rename_that_fails_names_the_output_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    """A file mounted over the target (docker -v plan.json:/out/plan.json) refuses the rename: EBUSY."""
    import errno

    from planner import output
    from planner.errors import ArenaError, WriteFailed

    def busy(src, dst):
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), src)

    monkeypatch.setattr(output.os, "replace", busy)
    with pytest.raises((ArenaError, WriteFailed), match=f"--out {tmp_path / 'a.json'}: "):
        output.write_all([("--out", str(tmp_path / "a.json"), "new")])
    assert list(tmp_path.iterdir()) == []


def test_an_output_is_on_disk_before_it_is_renamed_into_place_and_a_failed_sync_is_named(tmp_path, monkeypatch):
    """Else a crash after the rename may leave the file empty; and a full disk may show only
    at the sync (delayed allocation)."""
    import errno

    from planner import output
    from planner.errors import WriteFailed
    done, replace, fsync = [], output.os.replace, output.os.fsync
    monkeypatch.setattr(output.os, "fsync", lambda fd: done.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or fsync(fd))
    monkeypatch.setattr(output.os, "replace", lambda src, dst: done.append(("replace", src)) or replace(src, dst))
    output.write_all([("--out", str(tmp_path / "a.json"), "new")])
    assert [step for step, _ in done] == ["fsync", "replace"] and done[0][1] == done[1][1]
    assert (tmp_path / "a.json").read_text() == "new"

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(output.os, "fsync", full)
    with pytest.raises(WriteFailed, match="No space left on device"):
        output.write_all([("--out", str(tmp_path / "b.json"), "new")])
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_note_that_cannot_be_written_leaves_the_output_whole():
    """A note goes to standard error: full, it is lost; closed, it must not land in the JSON."""
    argv = [sys.executable, "-m", "llama_arena", "plan", "llama", "--nctx", "9000", "--json"]   # a note: past 8192
    with open("/dev/full", "w") as full:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=full, text=True)
    assert p.returncode == 0 and json.loads(p.stdout)["arena"] > 0
    p = subprocess.run(argv, stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(2))
    assert p.returncode == 0 and json.loads(p.stdout)["arena"] > 0
    p = subprocess.run([*argv[:-1], "--out", "/dev/stdout"], stdout=subprocess.PIPE, text=True,
                       preexec_fn=lambda: os.close(2))     # written through: standard error is flushed first
    assert p.returncode == 0 and json.JSONDecoder().raw_decode(p.stdout)[0]["arena"] > 0     # then the table


def test_an_option_fault_stays_exit_2_with_standard_output_closed():
    assert subprocess.run([sys.executable, "-m", "llama_arena", "--bogus"], capture_output=True,
                          preexec_fn=lambda: os.close(1)).returncode == 2


@pytest.mark.parametrize("argv", [["plan", "llama-layer", "--set", "n=7", "--json"], ["--help"], ["--version"]])
def test_a_closed_standard_output_is_exit_1(argv):
    p = subprocess.run([sys.executable, "-m", "llama_arena", *argv],
                       stderr=subprocess.PIPE, text=True, pass_fds=(), stdin=subprocess.DEVNULL,
                       preexec_fn=lambda: os.close(1))
    assert (p.returncode, p.stderr) == (1, "arena: error: standard output is closed\n")


def test_an_output_encoding_that_cannot_write_a_name_is_one_line(tmp_path):
    (tmp_path / "u.csv").write_text("id,lower,upper,size\nä,0,3,4\n")
    p = subprocess.run([sys.executable, "-m", "llama_arena", "plan", "--csv", str(tmp_path / "u.csv")],
                       capture_output=True, text=True, env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert (p.returncode, p.stderr) == (1, "arena: error: the output's encoding (ascii) cannot write '\\xe4'; "
                                           "set PYTHONIOENCODING=utf-8\n")


def test_output_files_are_utf8_whatever_the_locale(tmp_path):
    """A locale whose encoding is ASCII (no UTF-8 mode, no coercion) writes the files in UTF-8 still."""
    (tmp_path / "u.csv").write_text("id,lower,upper,size\nbuf_\u00e9,0,2,4\nbuf_\u03c7,1,3,4\n", encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": "utf-8"}
    p = subprocess.run([sys.executable, "-m", "llama_arena", "plan", "--csv", str(tmp_path / "u.csv"),
                        "--out", str(tmp_path / "s.csv")], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert "buf_\u00e9" in (tmp_path / "s.csv").read_bytes().decode("utf-8")
    assert main(["plan", "--csv", str(tmp_path / "s.csv")]) == 0      # and it reads back


def test_a_removed_current_folder_is_one_line_where_a_command_needs_it(tmp_path):
    """A plan of a shipped schedule needs no current folder; a relative output, and torch's import, do."""
    def in_removed_folder(*argv):
        gone = tmp_path / "gone"
        gone.mkdir()
        return subprocess.run(["sh", "-c", f'cd "{gone}" && rmdir "{gone}" && exec "$0" -m llama_arena "$@"',
                               sys.executable, *argv], capture_output=True, text=True)

    assert in_removed_folder("plan", "llama", "--set", "n=7", "--json").returncode == 0
    for argv in (["plan", "llama", "--set", "n=7", "--out", "p.json"], ["run", "--prompt", "hi"]):
        p = in_removed_folder(*argv)
        assert (p.returncode, p.stderr) == (1, "arena: error: the current folder no longer exists: cd to one that does\n")


def test_names_that_are_emoji_codes_print_as_written(tmp_path, capsys):
    (tmp_path / "e.csv").write_text("id,lower,upper,size\n:smile:,0,3,4\n")
    assert main(["plan", "--csv", str(tmp_path / "e.csv")]) == 0
    out = capsys.readouterr().out
    assert ":smile:" in out and "\U0001f604" not in out


def test_nctx_beyond_the_models_context_is_planned_with_a_note(capsys):
    """An estimate of a context the model was not trained for (arena run refuses it), said on stderr."""
    assert main(["plan", "llama", "--model", "llama-2-7b", "--nctx", "8192", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["dims"]["nctx"] == 8192
    assert captured.err == ("note: --nctx 8192 is more than the model's context of 4096 positions, "
                            "which arena run refuses\n")
    assert main(["plan", "llama", "--model", "llama-2-7b", "--nctx", "4096", "--json"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["plan", "llama", "--model", "llama-2-7b", "--nctx", "4097", "--json"]) == 0
    assert capsys.readouterr().err.startswith("note: --nctx 4097 is more than the model's context")
    assert main(["plan", "llama", "--model", "llama-2-7b", "--set", "n=8", "--set", "nctx=4097", "--json"]) == 0
    assert capsys.readouterr().err.startswith("note: --set nctx=4097 is more than the model's context")


@pytest.mark.parametrize("n, nctx, message", [
    (0, 8, "--budget: the prompt must have 1 or more tokens, not n=0"),
    (9, 8, "--budget: the prompt of n=9 tokens is longer than the KV cache's nctx=8 positions"),
    (8, 8, None),
])
def test_budget_takes_prompts_of_one_token_up_to_the_kv_cache(capsys, n, nctx, message):
    code = main(["plan", "llama", "--budget", "1GiB", "--set", f"n={n}", "--set", f"nctx={nctx}"])
    err = capsys.readouterr().err
    if message is None:
        assert code == 0 and err.startswith("budget    1.00 GiB: prefill 8 tokens in one call")
    else:
        assert (code, err) == (2, f"arena: error: {message}\n")


@pytest.mark.parametrize("options", [["--strategy", "exact"], ["--capacity", "1048576"]])
def test_ctrl_c_during_a_search_exits_130_at_once(tmp_path, options):
    """OR-Tools' threads, still solving when the command returned 130, were destroyed running:
    the process aborted (exit 134) in about a third of tries."""
    import os
    import signal
    import time

    _unanswered(tmp_path / "p.csv")
    p = subprocess.Popen([sys.executable, "-m", "llama_arena", "plan", "--csv", str(tmp_path / "p.csv"),
                          "--time-limit", "30", *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True, cwd=Path(__file__).parent.parent,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_or_tools(p.pid)
    time.sleep(0.5)                             # CP-SAT is solving by then
    os.killpg(p.pid, signal.SIGINT)
    start = time.monotonic()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err == "" and time.monotonic() - start < 2, err


def _wait_for_or_tools(pid: int) -> None:
    """Until OR-Tools' library is loaded into the process (a busy machine takes seconds longer to
    get there: a signal sent before would not test what happens during a search)."""
    import time

    import psutil
    process, until = psutil.Process(pid), time.monotonic() + 60
    while not any("ortools" in m.path for m in process.memory_maps()):
        assert time.monotonic() < until, "OR-Tools was never loaded"
        time.sleep(0.1)


def test_sigterm_on_a_terminal_exits_143_with_the_cursor_shown(tmp_path):
    """`timeout` and `kill` send SIGTERM: it used to end the process where it stood, leaving a
    terminal's cursor hidden by the progress bar (and a temporary file beside --out)."""
    import os
    import pty
    import signal
    import time

    _unanswered(tmp_path / "p.csv")
    leader, follower = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "llama_arena", "plan", "--csv", str(tmp_path / "p.csv"),
                          "--capacity", "1048576", "--time-limit", "30", "--out", str(tmp_path / "s.csv")],
                         stdout=subprocess.DEVNULL, stderr=follower, cwd=Path(__file__).parent.parent)
    os.close(follower)
    time.sleep(3)                               # the bar is up by then
    p.send_signal(signal.SIGTERM)
    start = time.monotonic()
    assert p.wait(timeout=60) == 143 and time.monotonic() - start < 2
    shown = b""
    with contextlib.suppress(OSError):         # the terminal's other side reads EIO once the writer is gone
        while chunk := os.read(leader, 65536):
            shown += chunk
    os.close(leader)
    assert b"\x1b[?25l" in shown and shown.rindex(b"\x1b[?25h") > shown.rindex(b"\x1b[?25l"), shown
    assert b"Traceback" not in shown and os.listdir(tmp_path) == ["p.csv"]


def test_the_command_called_in_a_process_leaves_its_sigterm_as_it_was(tmp_path, capsys):
    """llama_arena.main() sets a SIGTERM handler for its run only, and where it may: from
    another thread Python refuses one, which made the call fail."""
    import signal
    import threading

    import llama_arena
    (tmp_path / "p.csv").write_text("id,lower,upper,size\nb,0,1,8\n")
    before = signal.getsignal(signal.SIGTERM)
    assert llama_arena.main(["plan", "--csv", str(tmp_path / "p.csv")]) == 0
    assert signal.getsignal(signal.SIGTERM) is before
    codes = []
    thread = threading.Thread(target=lambda: codes.append(llama_arena.main(["plan", "--csv", str(tmp_path / "p.csv")])))
    thread.start()
    thread.join()
    assert codes == [0]


def test_ctrl_c_while_a_compiled_module_loads_exits_130():
    """OR-Tools' module, interrupted while it initializes, raises ImportError from the KeyboardInterrupt."""
    code = ("import llama_arena, llama_arena.cli as cli\n"
            "def interrupted(argv):\n"
            "    raise ImportError('initialization failed') from KeyboardInterrupt()\n"
            "cli.main = interrupted\n"
            "llama_arena.main()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (p.returncode, p.stderr) == (130, "")


def test_a_table_given_part_of_a_models_shape_by_set_names_the_rest_the_model_gave(tmp_path, capsys):
    """--set d and nh over the default model's dh: the table may describe another model, so the
    dimensions the default model filled in are named; a table bound by the model alone is not noted."""
    table = tmp_path / "t.yaml"
    table.write_text("schedule: t\ndims: {n: tokens, d: hidden, nh: heads, dh: head size}\ntypes: {Ta: act}\n"
                     "tensors: {x: 'Ta[n, d]', ctx: 'Ta[n, nh * dh]'}\n"
                     "steps:\n  - a: {graph: kernel, x: +w}\n  - b: {graph: kernel, x: rx, ctx: +wx}\n")
    assert main(["plan", str(table), "--set", "n=4", "--set", "d=64", "--set", "nh=4", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["dims"]["dh"] == 64
    assert captured.err == ("note: dh=64 from the default model smollm2-135m, beside --set d=64 nh=4; --set those "
                            "too, or --model, if the table describes another model\n")
    assert main(["plan", str(table), "--set", "n=4", "--set", "d=64", "--set", "nh=4", "--set", "dh=16",
                 "--json"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["plan", str(table), "--set", "n=4", "--model", "llama-2-7b", "--json"]) == 0
    assert capsys.readouterr().err == ""
