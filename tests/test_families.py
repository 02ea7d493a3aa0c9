"""The production-like family: a known plan at the capacity, the traits it is built to
have, and no cut that would make it easier than the whole; the top-up family's steps all
at the peak; the buffers of a real model's step."""
import importlib

import pytest

from benchmarks.families import ALIGN, KIB, powers, production, sawtooth, topup
from planner.check import check
from planner.place import lower_bound
from planner.place.problem import components, whole_span

from instances import names


@pytest.mark.parametrize("n, seed", [(150, 0), (150, 7), (300, 3), (450, 1)])
def test_known_plan_fits_at_the_peak(n, seed):
    blocks, offsets, capacity = production(n, seed)
    assert len(blocks) == n and capacity == 1024 * KIB
    check(names(blocks), blocks, offsets, capacity, KIB)
    assert lower_bound(blocks) == capacity
    assert all(b.size % KIB == 0 and b.first % KIB == 0 and (b.last + 1) % KIB == 0 for b in blocks)


@pytest.mark.parametrize("slack", [0.02, 0.06])
def test_slack_lowers_the_peak_and_keeps_the_plan(slack):
    tight, _, _ = production(150, 4)
    blocks, offsets, capacity = production(150, 4, slack)
    check(names(blocks), blocks, offsets, capacity, KIB)
    assert 1 + slack <= capacity / lower_bound(blocks) < 1 + slack + 0.01
    assert [(b.first, b.last) for b in blocks] == [(b.first, b.last) for b in tight]


@pytest.mark.parametrize("room", [0.02, 0.06])
def test_room_raises_the_capacity_above_the_same_blocks(room):
    tight, offsets, peak = production(150, 4)
    blocks, _, capacity = production(150, 4, room=room)
    assert blocks == tight and capacity == int(1024 * (1 + room)) * KIB
    assert 1 + room - 0.001 <= capacity / lower_bound(blocks) <= 1 + room
    check(names(blocks), blocks, offsets, peak, KIB)


def test_sizes_are_heavy_tailed_and_lifetimes_of_every_length():
    blocks, _, capacity = production(300, 5)
    sizes = sorted(b.size for b in blocks)
    assert sizes[0] == KIB and 0.6 <= sizes[-1] / capacity <= 0.85 and sizes[len(sizes) // 2] < capacity / 50
    horizon = max(b.last for b in blocks) + 1
    lives = sorted((b.last - b.first + 1) / horizon for b in blocks)
    assert 0.02 <= lives[len(lives) // 2] <= 0.25 and lives[-1] == 1 and lives[0] < 0.02


def test_the_known_plan_has_no_cut_across_bytes_or_time():
    for seed in range(5):
        blocks, offsets, capacity = production(150, seed)
        whole = set(whole_span(blocks))
        rest = [k for k in range(len(blocks)) if k not in whole]
        assert len(components([blocks[k] for k in rest])) == 1
        base = min(offsets[k] for k in rest)
        crossed = {y for k in rest for y in range(offsets[k] + KIB, offsets[k] + blocks[k].size, KIB)}
        assert crossed == set(range(base + KIB, capacity, KIB))


@pytest.mark.parametrize("seed", range(5))
def test_topup_fills_every_step_to_the_peak_with_small_sizes(seed):
    blocks = topup(60, seed)
    peak = lower_bound(blocks)
    steps = max(b.last for b in blocks) + 1
    assert all(sum(b.size for b in blocks if b.first <= s <= b.last) == peak for s in range(steps))
    program = blocks[:60]
    assert {b.size // ALIGN for b in program} <= {1, 2, 3, 5, 8}
    assert all(b.first == b.last for b in blocks[60:])     # the fillers live one step each


@pytest.mark.parametrize("seed", range(3))
def test_sawtooth_buffers_live_longer_the_larger_they_are_and_the_load_repeats_each_period(seed):
    blocks = sawtooth(300, seed)
    lives = [b.last - b.first + 1 for b in blocks]
    period = max(lives)
    assert [b.first for b in blocks] == list(range(300)) and 17 <= period <= 29
    assert sorted(set(lives)) == list(range(1, period + 1))
    assert all(life * 1000 <= b.size < (life + 1) * 1000 for life, b in zip(lives, blocks))
    live = [sorted(b.last - b.first + 1 for b in blocks if b.first <= t <= b.last) for t in range(period, 300)]
    assert all(now == later for now, later in zip(live, live[period:]))      # the same lifetimes live


def test_powers_are_random_lifetimes_of_sizes_powers_of_two():
    blocks = powers(1000, 0)
    assert len(blocks) == 1000 and blocks == powers(1000, 0) != powers(1000, 1)
    assert {b.size for b in blocks} <= {2 ** k for k in range(6, 23)} and len({b.size for b in blocks}) == 17
    assert all(0 <= b.first < 333 and 1 <= b.last - b.first + 1 <= 60 for b in blocks)


def test_the_benchmark_plans_the_llama_schedules_at_their_lower_bound(capsys):
    """plan_bench's rows that need the schedule bound as a session binds it (its key tile)."""
    from benchmarks.plan_bench import main
    main(["--quick", "--only", "llama", "--strategies", "auto"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| llama")]
    assert len(rows) == 8 and all("| 1.000 · 1/1 ·" in line for line in rows), rows


def test_the_room_rows_run_only_the_capacity_column(capsys):
    """prod-N-roomR repeats prod-N's blocks: minimizing them again would add nothing."""
    from benchmarks.plan_bench import main
    main(["--only", "prod-150-room", "--seeds", "2", "--strategies", "best-fit", "auto --capacity"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| prod-150-room")]
    assert [line.split(" | ")[:3] for line in rows] == [["| prod-150-room2", "2", ""], ["| prod-150-room6", "2", ""]]
    assert all(" | 2/2 · " in line for line in rows), rows        # both fit their capacity
    main(["--only", "prod-150-room", "--seeds", "1", "--strategies", "best-fit"])
    assert "prod-150-room" not in capsys.readouterr().out


def test_a_traced_step_has_a_buffer_per_result_and_views_share_it():
    """GPT-2's forward pass: the logits (batch x tokens x vocabulary floats) live to the end;
    a view is no buffer of its own, so every buffer is read by a later call or is the result."""
    from benchmarks.graphs import graph, model
    blocks = graph("gpt2", 1, 2, 16, False)
    end = max(b.last for b in blocks)
    assert [b.size for b in blocks if b.last == end] == [2 * 16 * 5000 * 4]
    assert all(b.size % 64 == 0 and b.first < b.last for b in blocks if b.last != end)
    training = graph("gpt2", 1, 2, 16, True)
    weights = sum(w.numel() * 4 for w in model("gpt2", 1).parameters())
    end = max(b.last for b in training)
    assert sum(b.size for b in training if b.last == end) >= weights     # the step's results: every gradient


@pytest.mark.parametrize("script, argv, message", [
    ("plan_bench", ["--arenas", "/nonexistent/x.json"], "--arenas /nonexistent/x.json: the folder /nonexistent does not exist"),
    ("run_bench", ["--tokens", "1"], "argument --tokens: must be at least 2, not 1"),
    ("run_bench", ["--model", "/nonexistent.gguf"], "--model /nonexistent.gguf: no such file or folder"),
    ("run_bench", ["--budget", "f16=300MiB", "--dtypes", "bf16"], "--budget f16=300MiB: f16 is not among --dtypes (bf16)"),
    ("decode_bench", ["--context", "-5"], "argument --context: must be at least 1, not -5"),
    ("quant_bench", ["--repeats", "0"], "argument --repeats: must be at least 1, not 0"),
])
def test_a_benchmarks_bad_option_is_one_line_before_any_run(script, argv, message, capsys):
    """Not a traceback from a child run, minutes in (or, for plan_bench's --arenas, after it)."""
    main = importlib.import_module(f"benchmarks.{script}").main
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip().splitlines()[-1].endswith(f": error: {message}"), err
