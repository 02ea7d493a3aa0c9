"""Tensor parallelism on CPU (gloo): the split rules, per-rank plans, logits and tokens equal
to one rank's and to transformers', the arena discipline on every rank, both launch forms
(`arena run --tp N` and torchrun, across two "machines" on localhost), and failing ranks."""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import torch

from executor.parallel import launch
from executor.tokenizer import from_gguf
from llama_arena.cli import main
from planner.errors import ArenaError
from planner.shards import shards, valid_ranks

import ranks
from checkpoints import PROMPT, SEQUENCE, hf_model, tiny_checkpoint

ARENA = [sys.executable, "-m", "llama_arena"]


# --- the split --------------------------------------------------------------------------

def test_smollm2_splits_unevenly_over_two_ranks():
    a, b = shards(9, 3, 1536, 2)
    assert (a.q_heads, a.kv_heads, a.ffn) == ([0, 1, 2, 3, 4, 5], [0, 1], (0, 768))
    assert (b.q_heads, b.kv_heads, b.ffn) == ([6, 7, 8], [2], (768, 1536))


@pytest.mark.parametrize("nh, nkvh, di", [(9, 3, 1536), (8, 2, 98), (8, 1, 37), (32, 8, 14336), (4, 4, 96)])
def test_every_valid_count_covers_each_head_and_column_once(nh, nkvh, di):
    for n in valid_ranks(nh, nkvh):
        split = shards(nh, nkvh, di, n)
        assert sorted(h for s in split for h in s.q_heads) == list(range(nh))
        assert [c for s in split for c in range(*s.ffn)] == list(range(di))
        group = nh // nkvh
        for s in split:             # a rank's query heads are the groups of its K/V heads
            assert all(h // group in s.kv_heads for h in s.q_heads) and len(s.q_heads) % len(s.kv_heads) == 0
        assert max(len(s.q_heads) for s in split) - min(len(s.q_heads) for s in split) <= group


def test_a_count_that_does_not_split_names_those_that_do():
    with pytest.raises(ArenaError, match=r"--tp 4: .* splits over 1, 2, 3, 6 or 9 ranks"):
        shards(9, 3, 1536, 4)


def test_plan_json_has_one_plan_per_rank_and_totals(capsys):
    assert main(["plan", "llama", "--set", "n=4", "--tp", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    first, second = out["ranks"]
    assert (first["dims"]["nh"], first["dims"]["nkvh"], first["dims"]["di"]) == (6, 2, 768)
    assert (second["dims"]["nh"], second["dims"]["nkvh"], second["dims"]["di"]) == (3, 1, 768)
    kv = [next(b for b in p["buffers"] if b["tensor"] == "kv")["size"] for p in out["ranks"]]
    assert kv[0] == 2 * kv[1]                   # each rank's cache holds its own K/V heads
    assert out["totals"]["arena"] == first["arena"] + second["arena"]


def test_plan_of_a_gguf_file_estimates_each_ranks_blocks(smollm2_path, capsys):
    """Each rank holds its slices of the packed matrices and the whole embedding and norms:
    less than the whole model, more than a third of it."""
    assert main(["plan", "llama", "--model", str(smollm2_path), "--set", "n=4", "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)["weight_bytes"]
    assert main(["plan", "llama", "--model", str(smollm2_path), "--set", "n=4", "--tp", "3", "--json"]) == 0
    ranks = json.loads(capsys.readouterr().out)["ranks"]
    assert all(whole / 3 < rank["weight_bytes"] < whole for rank in ranks)


def test_a_schedule_without_heads_is_not_split_and_no_file_is_written(tmp_path, capsys):
    table = tmp_path / "t.yaml"
    table.write_text("schedule: t\ndims: {n: tokens, d: width}\ntypes: {Ta: act}\ntensors:\n  a: Ta[n, d]\n"
                     "steps:\n  - s0: {a: +w}\n  - s1: {a: rx}\n")
    out = tmp_path / "tp.json"
    for more in ([], ["--json"]):
        assert main(["plan", str(table), "--set", "n=7", "--set", "d=4", "--tp", "2", "--out", str(out), *more]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and not out.exists()
        assert captured.err == (f"arena: error: --tp 2: the schedule {table} has no heads to split over ranks "
                                "(no dimension nh or nkvh)\n")


MHA_TABLE = ("schedule: mha\ndims: {n: tokens, d: width, nh: heads}\ntypes: {Ta: act}\n"
             "tensors:\n  h: Ta[n, d]\n  scores: Ta[nh, n, n]\nsteps:\n  - s0: {h: +w}\n"
             "  - s1: {h: r, scores: +wx}\n  - s2: {h: rx}\n")


@pytest.mark.parametrize("nh, split", [(12, [8, 4]), (16, [8, 8])])
def test_a_table_without_key_value_heads_has_no_groups_to_break(tmp_path, capsys, nh, split):
    """A table without nkvh plans any nh, whatever the model's nkvh (SmolLM2's 3). --tp splits its
    heads as a run splits the model's, by the model's key-value groups (12 heads: 8 and 4), and,
    where --set nh breaks those groups, each head its own (16: 8 and 8)."""
    table = tmp_path / "mha.yaml"
    table.write_text(MHA_TABLE)
    sets = ["--set", "n=4", "--set", "d=8", "--set", f"nh={nh}", "--align", "1"]
    assert main(["plan", str(table), *sets, "--json"]) == 0
    assert {b["tensor"]: b["size"] for b in json.loads(capsys.readouterr().out)["buffers"]}["scores"] == nh * 4 * 4 * 4
    assert main(["plan", str(table), *sets, "--tp", "2", "--json"]) == 0
    ranks = json.loads(capsys.readouterr().out)["ranks"]
    assert [b["size"] for r in ranks for b in r["buffers"] if b["tensor"] == "scores"] == [h * 4 * 4 * 4 for h in split]


def test_a_table_without_query_heads_splits_the_models_key_value_heads(tmp_path, capsys):
    """SmolLM2's 3 key-value heads over 6 ranks: each on two ranks, as a run holds them."""
    table = tmp_path / "kv.yaml"
    table.write_text("schedule: kv\ndims: {n: tokens, nkvh: kv heads, dh: head width}\ntypes: {Ta: act}\n"
                     "tensors: {k: 'Ta[nkvh, n, dh]'}\nsteps:\n  - s0: {k: +w}\n  - s1: {k: rx}\n")
    assert main(["plan", str(table), "--set", "n=4", "--tp", "6", "--align", "1", "--json"]) == 0
    ranks = json.loads(capsys.readouterr().out)["ranks"]
    assert [r["buffers"][0]["size"] for r in ranks] == [1 * 4 * 64 * 4] * 6


@pytest.mark.parametrize("args, message", [
    (["--set", "nh=7", "--tp", "2"], "--tp 2: nh=7 query heads do not split into nkvh=3 equal groups, one per key-value head"),
    (["--set", "nkvh=2", "--tp", "3"], "--tp 3: nh=9 query heads do not split into nkvh=2 equal groups"),
    (["--set", "nkvh=0", "--tp", "3"], "--tp 3: nkvh=0; the heads and FFN columns it splits must be positive"),
    (["--set", "di=1", "--tp", "2"], "--tp 2: di=1 FFN columns leave a rank without one"),
    (["--set", "nh=100000000000000000", "--set", "nkvh=1", "--tp", "2"],
     "--tp 2: nh=100000000000000000 query heads; at most 1,024 are split over ranks"),
])
def test_heads_and_columns_that_do_not_split_are_named(args, message, capsys):
    assert main(["plan", "llama", "--set", "n=7", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"arena: error: {message}") and err.count("\n") == 1, err


def test_a_fault_of_one_ranks_share_names_the_rank(tmp_path, capsys):
    table = tmp_path / "t.yaml"
    table.write_text("schedule: t\ndims: {n: tokens, nh: heads, nkvh: kv heads, di: ffn}\ntypes: {Ta: act}\n"
                     "tensors:\n  a: Ta[n, nh - 4]\nsteps:\n  - s0: {a: +w}\n  - s1: {a: rx}\n")
    assert main(["plan", str(table), "--set", "n=7", "--tp", "2"]) == 2   # SmolLM2's 9 heads: 6 and 3
    err = capsys.readouterr().err
    assert err == (f"arena: error: --tp 2, rank 1 (nh=3 nkvh=1 di=768): {table}:5: tensor 'a': shape Ta[n, nh - 4] "
                   "evaluates to (7, -1): every dimension must be positive\n")


# --- logits and tokens ------------------------------------------------------------------

def run_ranks(n: int, tmp_path, **spec) -> list[dict]:
    """Launch `ranks.run` on n ranks; what each rank saved."""
    spec = {"dtype": "f32", "check_arena": False, **spec, "out": str(tmp_path / f"tp{n}")}
    assert launch(n, ranks.run, spec) == 0
    return [torch.load(f"{spec['out']}.{r}") for r in range(n)]


TINY_TP = {1: dict(num_key_value_heads=1), 2: dict(num_key_value_heads=2), 4: dict(num_key_value_heads=4)}


@pytest.mark.parametrize("n", [2, 4])
def test_tiny_checkpoints_split_over_ranks_give_transformers_logits(n, tmp_path_factory, tmp_path):
    """1, 2 and 4 key-value heads over 2 and 4 ranks: whole groups, uneven groups and replicated
    K/V heads; FFN width 98 splits unevenly over 4. The ranks share the cores (each with all of
    them, two ranks on two cores decoded 20 times slower)."""
    for kv, overrides in TINY_TP.items():
        folder = tiny_checkpoint(tmp_path_factory.mktemp(f"kv{kv}"), "gqa-tied", num_attention_heads=8,
                                 intermediate_size=98, **overrides)
        with torch.no_grad():
            expected = hf_model(folder)(torch.tensor([SEQUENCE])).logits[0, PROMPT - 1:]
        seen = run_ranks(n, tmp_path, path=str(folder), kind="checkpoint", prompts=[SEQUENCE[:PROMPT]],
                         new_tokens=len(SEQUENCE) - PROMPT + 1, feed=SEQUENCE[PROMPT:])
        for rank in seen:
            torch.testing.assert_close(rank["results"][0]["logits"], expected, atol=1e-4, rtol=1e-4)
            share = max(1, len(os.sched_getaffinity(0)) // n)
            assert rank["threads"] == int(os.environ.get("OMP_NUM_THREADS", share))


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    from executor.source import Source, open_source
    tokenizer = from_gguf(open_source(Source(smollm2_path, "gguf")))
    prompts = [tokenizer.encode("The capital of France is"), tokenizer.encode("def fibonacci(n):"),
               tokenizer.encode_chat("What is the tallest mountain in the world?")]
    return smollm2_path, prompts


@pytest.fixture(scope="module")
def one_rank(smollm2, tmp_path_factory):
    """SmolLM2 in f32 on one rank (the launcher with N = 1): tokens and logits per prompt."""
    path, prompts = smollm2
    return run_ranks(1, tmp_path_factory.mktemp("tp1"), path=str(path), kind="gguf", prompts=prompts,
                     new_tokens=32)[0]["results"]


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3])
def test_smollm2_on_n_ranks_gives_one_ranks_tokens_and_logits(smollm2, one_rank, n, tmp_path):
    path, prompts = smollm2
    seen = run_ranks(n, tmp_path, path=str(path), kind="gguf", prompts=prompts, new_tokens=32,
                     check_arena=n == 2)                  # free bytes poisoned, views at their offsets
    for rank in seen:
        for got, want in zip(rank["results"], one_rank):
            assert got["tokens"] == want["tokens"]
            # the partial sums add up in another order: 2e-4 absolute plus 1e-4 of the logit (with
            # the small ops' AVX2 copies, FMA's rounding, 5 of 49,152 logits were 1.0-1.2e-4 apart)
            torch.testing.assert_close(got["logits"][0], want["logits"][0], atol=2e-4, rtol=1e-4)


@pytest.mark.slow
def test_smollm2_in_bf16_on_two_ranks_matches_one_or_parts_at_a_near_tie(smollm2, tmp_path):
    path, prompts = smollm2
    spec = dict(path=str(path), kind="gguf", prompts=prompts[:2], new_tokens=32, dtype="bf16")
    one, two = run_ranks(1, tmp_path, **spec), run_ranks(2, tmp_path, **spec)
    same_or_near_tie(one[0]["results"], two[0]["results"])


@pytest.mark.slow
def test_smollm2_native_on_two_ranks_matches_one_or_parts_at_a_near_tie(smollm2, tmp_path):
    """Native weights, each rank's slices as GGUF blocks (SmolLM2's splits keep whole blocks of 32)."""
    path, prompts = smollm2
    spec = dict(path=str(path), kind="gguf", prompts=prompts[:1], new_tokens=32, dtype="f32", native=True)
    one, two = run_ranks(1, tmp_path, **spec), run_ranks(2, tmp_path, **spec)
    assert all(rank["packed"] for rank in one + two)
    same_or_near_tie(one[0]["results"], two[0]["results"])


def same_or_near_tie(one: list[dict], two: list[dict]) -> None:
    """Per prompt: the same tokens, or where they first part, each run's token among the other's five likeliest."""
    for a, b in zip(one, two):
        if a["tokens"] != b["tokens"]:
            k = next(i for i, (x, y) in enumerate(zip(a["tokens"], b["tokens"])) if x != y)
            assert b["tokens"][k] in a["logits"][k].topk(5).indices and a["tokens"][k] in b["logits"][k].topk(5).indices


# --- the command line -------------------------------------------------------------------

PROMPT_WORDS = ["--prompt", "w5 w6 w7 w8", "--max-new-tokens", "12", "--ignore-eos"]


def arena_run(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([*ARENA, "run", *args], capture_output=True, text=True, timeout=timeout)


def test_run_on_two_and_three_ranks_prints_one_ranks_tokens_and_each_ranks_bytes(word_folder):
    """4 heads over 3 ranks: 2, 1 and 1."""
    outputs = {}
    for n in (1, 2, 3):
        p = arena_run("--model", str(word_folder), *PROMPT_WORDS, "--tp", str(n), "--json")
        assert p.returncode == 0, p.stderr
        outputs[n] = json.loads(p.stdout)          # one JSON object: rank 0 alone prints
    assert outputs[1]["tokens"] == outputs[2]["tokens"] == outputs[3]["tokens"]
    kv = [r["kv_bytes"] for r in outputs[3]["ranks"]]
    assert len(outputs[2]["ranks"]) == 2 and kv[0] == 2 * kv[1] == 2 * kv[2]
    # the weights each rank holds are the ones `arena plan --tp` estimates for it
    plan = subprocess.run([*ARENA, "plan", "llama", "--model", str(word_folder), "--set", "n=4", "--tp", "3", "--json"],
                          capture_output=True, text=True, timeout=600)
    estimated = json.loads(plan.stdout)
    assert [r["weight_bytes"] for r in estimated["ranks"]] == [r["weight_bytes"] for r in outputs[3]["ranks"]]
    assert estimated["totals"]["total_bytes"] == sum(r["total_bytes"] for r in estimated["ranks"])


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_trace_on_a_full_disk_says_so_from_rank_0(word_folder):
    p = arena_run("--model", str(word_folder), *PROMPT_WORDS, "--tp", "2", "--json", "--trace", "/dev/full")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.splitlines()[-1] == "arena: error: rank 0: --trace /dev/full: cannot write there: No space left on device"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_torchrun_across_two_machines_meeting_at_localhost(word_folder):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    endpoint = f"localhost:{free_port()}"
    nodes = [subprocess.Popen([torchrun, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                               "--rdzv-endpoint", endpoint, "--rdzv-id", "arena-test", "-m", "llama_arena", "run",
                               "--model", str(word_folder), *PROMPT_WORDS, "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in results]
    printed = [json.loads(out) for out, _ in results if out.strip()]
    one = json.loads(arena_run("--model", str(word_folder), *PROMPT_WORDS, "--json").stdout)
    assert len(printed) == 1 and printed[0]["tokens"] == one["tokens"] and len(printed[0]["ranks"]) == 2


@pytest.mark.parametrize("args, message", [
    (["--tp", "0"], "--tp must be 1 or more ranks, not 0"),
    (["--tp", "5"], "--tp 5: a model with 4 query heads and 4 key-value heads splits over 1, 2, 3 or 4 ranks"),
    (["--tp", "1000"], "--tp 1000: a model with 4 query heads and 4 key-value heads splits over 1, 2, 3 or 4 ranks"),
    (["--tp", "2", "--nctx", "3"], "--nctx: the prompt (4 tokens) plus --max-new-tokens 12 need 15 positions"),
])
def test_bad_tp_is_exit_2_with_one_clear_message(word_folder, args, message):
    """Refused before any rank starts (--tp 1000 started a thousand processes, each to refuse it;
    each rank refused a prompt too long for the context, and the launcher named the first)."""
    p = arena_run("--model", str(word_folder), *PROMPT_WORDS, *args, timeout=60)
    assert p.returncode == 2 and p.stderr.startswith(f"arena: error: {message}") and p.stderr.count("\n") == 1, p.stderr


@pytest.mark.slow
def test_a_rank_that_dies_stops_every_rank_and_is_named(smollm2):
    """Kill one rank mid-run: the command ends with a message naming it, and no process is left."""
    p = subprocess.Popen([*ARENA, "run", "--prompt", "Once upon a time", "--max-new-tokens", "4000", "--ignore-eos",
                          "--nctx", "4096", "--tp", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    launcher = psutil.Process(p.pid)
    workers = []
    while len(workers) < 2 and p.poll() is None:
        workers = sorted((c for c in launcher.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())
                          and "resource_tracker" not in " ".join(c.cmdline())), key=lambda c: c.pid)
        time.sleep(0.2)
    assert p.stdout.read(1)                   # rank 0 streams its first character: generation is under way
    workers[1].kill()
    _, err = p.communicate(timeout=120)       # a hang fails here, not in the suite's own time
    assert p.returncode == 1                  # a system failure, not the signal's own code
    assert "rank 1 of 2 was killed by SIGKILL; the other ranks were stopped" in err and "Traceback" not in err
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
def test_ctrl_c_mid_run_stops_every_rank_with_exit_130_and_no_traceback(smollm2):
    """Ctrl-C reaches the launcher and every rank (the terminal's process group): the launcher's
    own handler made it an exception the command did not catch, two tracebacks and exit 1."""
    import signal
    p = subprocess.Popen([*ARENA, "run", "--prompt", "Once upon a time", "--max-new-tokens", "4000", "--ignore-eos",
                          "--nctx", "4096", "--tp", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    assert p.stdout.read(1)                   # rank 0 streams its first character: generation is under way
    workers = [c for c in psutil.Process(p.pid).children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err, err
    assert "death signal" not in err, err     # torch's elastic agent's warning, its logger's own level
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
def test_ctrl_c_while_the_ranks_load_exits_130_with_no_traceback(smollm2):
    """Ctrl-C while the ranks import torch, before their own handlers: each printed the
    KeyboardInterrupt's traceback of the import. (The `arena` script: spawned ranks import the
    main module of a script, not a package's __main__, before torch.)"""
    import signal
    arena = shutil.which("arena", path=os.path.dirname(sys.executable))
    p = subprocess.Popen([arena, "run", "--prompt", "Once upon a time", "--max-new-tokens", "8", "--tp", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    launcher, workers = psutil.Process(p.pid), []
    while len(workers) < 2 and p.poll() is None:
        workers = [c for c in launcher.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())
                   and "resource_tracker" not in " ".join(c.cmdline())]
        time.sleep(0.05)
    time.sleep(0.3)         # past the interpreter's own start (its site module), into torch's import
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err, err
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


def test_a_rank_that_misses_the_capacity_is_named_and_exits_3(capsys):
    from llama_arena.cli import main
    assert main(["plan", "llama", "--set", "n=7", "--tp", "2", "--capacity", "52000"]) == 3
    assert capsys.readouterr().err.startswith("arena: --tp 2, rank 0 (nh=6 nkvh=2 di=768): no plan fits in 52,000 bytes")


def test_bad_input_is_exit_2_when_another_rank_is_seen_failing_first(capfd):
    """One clean-clone run exited 1: rank 1 failed as soon as rank 0 left the group, and the
    launcher saw it before rank 0's own exit 2, then stopped rank 0."""
    assert launch(2, ranks.bad_input_then_linger) == 2
    err = capfd.readouterr().err
    assert err.count("arena: error:") == 1 and "arena: error: the table's fault" in err, err


def _rank_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("arena-ranks-*"))


def test_where_localhost_takes_no_connection_the_launcher_says_so_in_one_line(monkeypatch, capfd):
    """No name for localhost, or no loopback network (a sandbox): one line and exit 1, before
    the ranks' folder is made, where torch's store would have tried for two minutes."""
    from executor import parallel
    before = _rank_folders()

    def unresolved(*args):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(parallel.socket.socket, "bind", unresolved)
    assert launch(2, ranks.run, {}) == 1
    assert capfd.readouterr().err == ("arena: error: --tp: the ranks meet over the network on localhost, "
                                      "which failed here: Name or service not known\n")
    assert _rank_folders() == before


def test_a_rendezvous_that_fails_is_one_line_and_exit_1(monkeypatch, capfd):
    from torch.distributed.elastic.rendezvous.api import RendezvousConnectionError
    from torch.distributed.launcher import api

    def refused(config, entry):
        def run(*args):
            raise RendezvousConnectionError("The connection to the C10d store has failed.") from \
                OSError("connect failed\nframe #0: c10::Error::Error")
        return run
    monkeypatch.setattr(api, "elastic_launch", refused)
    before = _rank_folders()
    assert launch(2, ranks.run, {}) == 1
    err = capfd.readouterr().err
    assert err.startswith("arena: error: --tp: the ranks could not meet on localhost:") and \
        err.endswith(": connect failed\n") and _rank_folders() == before


@pytest.mark.skipif(subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0 if shutil.which("unshare")
                    else True, reason="needs unshare -n (root)")
def test_without_a_loopback_network_arena_run_tp_is_one_line_at_once():
    started = time.monotonic()
    p = subprocess.run(["unshare", "-n", *ARENA, "run", "--prompt", "hi", "--max-new-tokens", "1", "--tp", "2"],
                       capture_output=True, text=True, timeout=120)
    assert (p.returncode, p.stdout) == (1, "") and time.monotonic() - started < 30
    assert p.stderr == "arena: error: --tp: the ranks meet over the network on localhost, which failed here: " \
                       "Network is unreachable\n"


def test_a_ranks_bad_input_is_its_one_line_and_exit_2(word_folder, tmp_path):
    """A weight holding NaN in a rank's share: that rank names it, and the launcher adds no
    second line about the rank's exit."""
    import shutil

    from safetensors.torch import load_file, save_file
    copy = tmp_path / "nan"
    shutil.copytree(word_folder, copy)
    file = next(copy.glob("*.safetensors"))
    tensors = load_file(file)
    tensors["model.norm.weight"][0] = float("nan")
    save_file(tensors, file, metadata={"format": "pt"})
    left = set(Path(tempfile.gettempdir()).glob("pytorch-errorfile-*"))
    p = arena_run("--model", str(copy), *PROMPT_WORDS, "--tp", "2", timeout=120)
    assert p.returncode == 2 and p.stderr.count("arena: error:") == 1, p.stderr
    assert "rank 0: " in p.stderr and "the output norm holds NaN, so" in p.stderr and "Traceback" not in p.stderr
    assert set(Path(tempfile.gettempdir()).glob("pytorch-errorfile-*")) == left   # rank 1's traceback, once


# --- a launcher's environment ------------------------------------------------------------

def torchrun_env(monkeypatch, rank="0"):
    for name, value in {"WORLD_SIZE": "2", "RANK": rank, "MASTER_ADDR": "localhost", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(name, value)


def run_args(*argv):
    """`arena run`'s options, parsed."""
    from executor import cli as executor_cli
    return executor_cli.add_parser(argparse.ArgumentParser().add_subparsers()).parse_args(list(argv))


@pytest.mark.parametrize("argv, message", [
    (["--budget", "200MiB"], "--budget: fits a run on one device; the launcher's 2 ranks run on 2"),
    (["--prompt-file", "-"], "--prompt-file -: under torchrun every rank would read standard input"),
])
def test_what_ranks_under_torchrun_cannot_share_is_refused_before_they_meet(monkeypatch, capsys, argv, message):
    """--budget: each rank fitted its own share and picked a prefill chunk the other did not,
    and gloo aborted; --prompt-file -: one rank got the text, the other an empty prompt."""
    torchrun_env(monkeypatch)
    prompt = [] if "--prompt-file" in argv else ["--prompt", "Hi"]
    assert main(["run", *prompt, *argv]) == 2
    assert capsys.readouterr().err.startswith(f"arena: error: {message}")


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 in the environment, but no RANK, MASTER_ADDR, MASTER_PORT"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' in the environment"),
    ({"WORLD_SIZE": "²"}, "WORLD_SIZE='²' in the environment"),
    ({"WORLD_SIZE": "2", "RANK": "x", "MASTER_ADDR": "localhost", "MASTER_PORT": "1"}, "RANK='x' is not a number"),
    ({"WORLD_SIZE": "2", "RANK": "\u0661", "MASTER_ADDR": "localhost", "MASTER_PORT": "1"},    # int() reads it as 1
     "RANK='\u0661' is not a number"),
    ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "localhost", "MASTER_PORT": "abc"}, "MASTER_PORT='abc' is not a number"),
])
def test_a_partial_launcher_environment_is_one_line_and_exit_2(monkeypatch, capsys, env, message):
    """A WORLD_SIZE left in the shell gave KeyError: 'RANK' and a traceback."""
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["run", "--prompt", "Hi"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_a_world_size_of_one_left_alone_is_a_single_run(monkeypatch):
    from executor.parallel import first_rank, launched
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched() and first_rank()


def test_under_torchrun_only_rank_0_notes(monkeypatch, capsys):
    """Every rank checks the options; each printed the same note."""
    from executor import cli as executor_cli
    args = run_args("--prompt", "Hi", "--seed", "3")
    for rank, noted in (("0", True), ("1", False)):
        torchrun_env(monkeypatch, rank)
        executor_cli._check_options(args)
        assert ("--seed takes effect" in capsys.readouterr().err) == noted


def test_a_rank_losing_its_peers_under_torchrun_says_one_line(monkeypatch, capsys):
    """gloo's error when a peer dies comes with its C++ frames, on every rank left; under
    `arena run --tp N` the launcher names the rank that failed first instead."""
    from executor import cli as executor_cli
    from executor import parallel

    def lost(*args):
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer\n frame #0")

    def broadcast_then(fault):
        def generate_in(args, group, torch):
            group.broadcast(torch.zeros(1))
            raise fault
        return generate_in
    monkeypatch.setattr(parallel, "join", lambda device: parallel.Group(1, 2, torch.device("cpu")))
    monkeypatch.setattr(parallel.dist, "broadcast", lost)
    monkeypatch.setattr(executor_cli, "_generate_in", broadcast_then(None))
    torchrun_env(monkeypatch, "1")
    args = run_args("--prompt", "Hi")
    assert executor_cli._generate(args) == 1
    assert capsys.readouterr().err == "arena: error: rank 1: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer\n"
    monkeypatch.setattr(parallel.dist, "broadcast", lambda *args: None)     # a bug of our own keeps its traceback
    monkeypatch.setattr(executor_cli, "_generate_in", broadcast_then(RuntimeError("mat1 and mat2 shapes cannot be multiplied")))
    with pytest.raises(RuntimeError, match="mat1"):
        executor_cli._generate(args)
    monkeypatch.setattr(parallel.dist, "broadcast", lost)
    monkeypatch.setenv(parallel.SAID, "/nonexistent")
    with pytest.raises(parallel.PeerLost):
        executor_cli._generate(args)


def test_out_of_memory_is_one_line_and_exit_1(monkeypatch, capsys):
    """torch's allocator raises RuntimeError; a ulimit made it a traceback."""
    from executor import cli as executor_cli

    def refused(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory")
    monkeypatch.setattr(executor_cli, "_generate", refused)
    assert main(["run", "--prompt", "Hi"]) == 1
    assert capsys.readouterr().err == "arena: error: out of memory: the system refused an allocation\n"


@pytest.mark.slow
def test_a_reader_that_leaves_ends_two_ranks_quietly_with_141(smollm2):
    """rank 0's BrokenPipeError was a traceback in the rank and 'rank 0 of 2 exited with code 1'."""
    p = subprocess.Popen([*ARENA, "run", "--prompt", "Once upon a time", "--max-new-tokens", "4000", "--ignore-eos",
                          "--nctx", "4096", "--tp", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.read(1)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=120) == 141 and "error" not in err and "Traceback" not in err, err


def test_a_split_refused_counts_its_heads_and_ranks_in_words():
    with pytest.raises(ArenaError) as e:
        shards(1, 1, 8, 2)
    assert str(e.value).startswith("--tp 2: a model with 1 query head and 1 key-value head splits over 1 rank (")
