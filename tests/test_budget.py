"""Runs that fit a byte budget: sizes, the scheduler's choice of prefill chunk and key tile
(planner/budget.py), its errors, chunked prefill on the real SmolLM2 against one call, and
`arena run` / `arena plan llama` with --budget and --prompt-file."""
import io
import json

import pytest

from llama_arena.cli import main
from planner.budget import Fitter, _least, _tiles, chunk_sizes, choose
from planner.sizes import mib, parse_size
from planner.calls import key_tile
from planner.errors import ArenaError
from planner.estimate import estimate, run_plans
from planner.models import PRESETS, model_dims, tied_output

SMOL = PRESETS["smollm2-135m"]


@pytest.mark.parametrize("text, nbytes", [
    ("1073741824", 2**30), ("512MiB", 512 * 2**20), ("24GiB", 24 * 2**30), ("1.5GB", 1_500_000_000),
    ("64 kib", 64 * 1024), ("2TB", 2 * 10**12), ("100B", 100), (".5KiB", 512), ("1.3GiB", 1_395_864_371),
    ("1KB", 1000), ("1.", 1), ("2.GiB", 2 * 2**30)])
def test_sizes_parse(text, nbytes):
    assert parse_size(text) == nbytes


@pytest.mark.parametrize("text, message", [
    ("", "not a size"), ("lots", "not a size"), ("-5MiB", "not a size"), ("1e9", "not a size"),
    ("5 XB", "not a size"), ("nan", "not a size"), ("\u0661\u0662", "not a size"), ("0", "at least 1 byte"),
    ("0.0KiB", "at least 1 byte"), ("0.1B", "a fraction of a byte"), ("1.5", "a fraction of a byte")])
def test_bad_sizes_name_the_option_and_value(text, message):
    with pytest.raises(ArenaError, match=message) as e:
        parse_size(text)
    assert str(e.value).startswith(f"--budget {text!r}: ")


def smol(nctx: int, dtype: str = "f32") -> Fitter:
    return Fitter({**SMOL, "nctx": nctx}, dtype, tied=True)


@pytest.mark.parametrize("dtype, budget", [("f32", "940MiB"), ("f32", "990MiB"), ("bf16", "505MiB"),
                                            ("bf16", "525MiB")])
def test_choice_fits_and_is_the_largest(dtype, budget):
    prompt, nctx = 8192, 8256
    fitter, budget = smol(nctx, dtype), parse_size(budget)
    choice = choose(fitter, budget, prompt)
    assert choice.chunk % 16 == 0 and choice.chunk < prompt
    assert choice.cost["total_bytes"] <= budget
    # the session's binding: plans of the chunk, the last chunk and decode with this tile
    plans = run_plans({**SMOL, "nctx": nctx}, dtype, {choice.chunk, prompt % choice.chunk, 1}, tile=choice.tile)
    assert estimate(plans, dtype, True)["arena_bytes"] == choice.cost["arena_bytes"]
    bigger = next(c for c in chunk_sizes(prompt) if c > choice.chunk)
    assert fitter.cost(prompt, bigger, 16)["total_bytes"] > budget   # no larger chunk fits, even with 16 keys
    tiles = _tiles(choice.chunk, nctx)
    if choice.tile != tiles[-1]:
        assert fitter.cost(prompt, choice.chunk, choice.tile + 16)["total_bytes"] > budget


def test_a_budget_that_fits_one_call_keeps_one_call_and_the_default_tile():
    fitter = smol(8192)
    whole = fitter.cost(8192, 8192, None)["total_bytes"]
    choice = choose(fitter, whole, 8192)
    assert (choice.chunk, choice.tile, choice.cost["total_bytes"]) == (8192, key_tile(8192, 8192), whole)
    assert choose(fitter, whole - 1, 8192).chunk < 8192


def test_too_small_for_the_weights_says_by_how_much():
    with pytest.raises(ArenaError, match=r"--budget 256\.00 MiB: the weights alone take 513\.13 MiB \(f32\), "
                                         r"257\.13 MiB more; 16-bit weights take half \(--dtype bf16 or f16\); "
                                         r"the smallest budget for this run is 9\d\d\.\d\d MiB"):
        choose(smol(8192), parse_size("256MiB"), 8192)


def test_too_small_for_the_activations_counts_what_the_run_holds_outside_the_arena():
    fitter = smol(64)
    least = fitter.cost(64, 16, _tiles(16, 64)[0])["total_bytes"]
    # outside the arena: 40 MiB of runtime, and the RoPE tables (2 x 64 positions x 64 x 4 bytes, 0.03 MiB)
    with pytest.raises(ArenaError, match=r"the weights \(513\.13 MiB\) and the 40\.03 MiB the run holds outside "
                                         r"the arena \(its RoPE tables included\) and the arena of a run in 16-token chunks \(\d+\.\d\d MiB\) exceed it"):
        choose(fitter, least - 1, 64)
    with pytest.raises(ArenaError, match="the smallest budget for this run is ") as e:
        choose(fitter, least - 1, 64)
    smallest, exact = str(e.value).split("the smallest budget for this run is ")[1].split(" bytes)")[0].split(" (")
    assert choose(fitter, parse_size(smallest.replace(" ", "")), 64).cost["total_bytes"] <= parse_size(smallest.replace(" ", ""))
    assert choose(fitter, int(exact.replace(",", "")), 64).cost["total_bytes"] == int(exact.replace(",", ""))
    with pytest.raises(ArenaError, match=f"the smallest budget for this run is {smallest} \\({exact} bytes\\)"):
        choose(fitter, int(exact.replace(",", "")) - 1, 64)


def test_too_small_for_the_kv_cache_names_the_largest_nctx_that_fits():
    fitter, budget = smol(8192), parse_size("800MiB")
    with pytest.raises(ArenaError, match="the KV cache and RoPE tables at --nctx 8192 take 364.00 MiB") as e:
        choose(fitter, budget, 1000)
    largest = int(str(e.value).split("the largest --nctx that fits is ")[1].split()[0])
    assert choose(smol(largest), budget, 1000).cost["total_bytes"] <= budget
    with pytest.raises(ArenaError):
        choose(smol(largest + 1), budget, 1000)


def test_plan_budget_json_plans_the_chosen_chunk(capsys):
    assert main(["plan", "llama", "--nctx", "8192", "--dtype", "bf16", "--budget", "520MiB", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["budget"] == 520 * 2**20 and out["total_bytes"] <= out["budget"]
    assert out["dims"]["n"] == out["chunk"] < 8192 and out["dims"]["tile"] == out["tile"]
    assert captured.err.startswith(f"budget    520.00 MiB: prefill 8192 tokens in {-(-8192 // out['chunk'])} calls")



def test_plan_budget_json_keeps_the_plans_arena_beside_the_runs(capsys):
    """At the smallest budget of a long context, decode's plan (scores over every key) needs
    more than the chosen chunk's: `arena` stays the extent of the plan shown, `arena_bytes` is
    the run's arena, the largest of its calls'."""
    nctx = 65536
    least = _least(smol(nctx), 64)["total_bytes"]
    assert main(["plan", "llama", "--nctx", str(nctx), "--set", "n=64", "--budget", str(least), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["arena"] == max(b["offset"] + b["size"] for b in out["buffers"] if b["offset"] is not None)
    assert out["arena"] == out["lower_bound"] < out["arena_bytes"] and out["optimal"]
    assert out["total_bytes"] == least == sum(out[k] for k in ("weight_bytes", "arena_bytes", "rope_bytes",
                                                              "workspace_bytes", "runtime_bytes"))

@pytest.mark.parametrize("argv, message", [
    (["--budget", "600MiB"], "--budget 600.00 MiB: the KV cache and RoPE tables at --nctx 8192 take 364.00 MiB beside the "
                             "weights' 513.13 MiB and the 40.00 MiB the run holds outside the arena; "
                             "the largest --nctx that fits is 1023"),
    (["--budget", "12 bytes"], "--budget '12 bytes': not a size"),
    (["--budget", "1GiB", "--tp", "2"], "--budget: fits a run of the llama schedule that ships, arena run's, on one device"),
    (["--budget", "2GiB", "--strategy", "naive"], "--budget fits the plans arena run makes (--strategy auto), "
                                                  "not --strategy naive"),
    (["--budget", "2GiB", "--set", "n=9000"],
     "--budget: the prompt of n=9000 tokens is longer than the KV cache's nctx=8192 positions")])
def test_plan_budget_errors_are_one_line(argv, message, capsys):
    assert main(["plan", "llama", "--nctx", "8192", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"arena: error: {message}") and err.count("\n") == 1


def test_a_budgeted_prompt_longer_than_the_cache_is_one_line(capsys):
    assert main(["plan", "llama", "--set", "n=9000", "--budget", "2GiB"]) == 2      # nctx: the model's 8192
    assert capsys.readouterr().err == ("arena: error: --budget: the prompt of n=9000 tokens is longer than the "
                                       "KV cache's nctx=8192 positions\n")


def test_a_cache_past_any_shape_is_named_once_at_the_smallest_chunk(capsys):
    """The smallest run is tried first: a KV cache too large to hold is the one fault, not
    the activations of a chunk of half the context that the search would try."""
    assert main(["plan", "llama", "--nctx", str(10 ** 17), "--budget", "16GiB"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("arena: error:")]
    assert len(errors) == 1 and "tensor 'kv'" in errors[0] and "100000000000000000" in errors[0]


# arena run on the tiny word-level checkpoint: 40 words are 40 tokens


PROMPT = " ".join(f"w{5 + i % 100}" for i in range(40))


def run_json(capsys, *argv) -> tuple[dict, str]:
    assert main(["run", *argv, "--max-new-tokens", "6", "--ignore-eos", "--json"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_run_under_a_budget_prefills_in_chunks_and_stays_within_it(word_folder, capsys):
    whole, _ = run_json(capsys, "--model", str(word_folder), "--prompt", PROMPT)
    fitter = Fitter({**model_dims(str(word_folder)), "nctx": 45}, "f32", tied_output(str(word_folder)))
    budget = fitter.cost(40, 40, 16)["total_bytes"] - 1   # one call no longer fits, whatever its tile
    out, err = run_json(capsys, "--model", str(word_folder), "--prompt", PROMPT, "--budget", str(budget))
    assert (out["budget"], out["chunk"]) == (budget, 32) and out["tile"] >= 16
    assert out["total_bytes"] == out["estimate"]["total_bytes"] <= budget < whole["total_bytes"]
    assert out["plans"]["prefill"]["n"] == 32
    assert out["tokens"] == whole["tokens"]
    assert f"budget    {mib(budget)}: prefill 40 tokens in 2 calls of 32 (the last 8)" in err


def test_run_budget_too_small_is_exit_2_before_loading(word_folder, capsys):
    assert main(["run", "--model", str(word_folder), "--prompt", PROMPT, "--max-new-tokens", "6",
                 "--budget", "1KiB"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("arena: error: --budget 1.00 KiB: the weights alone take ") and err.count("\n") == 1
    assert "(f32)" in err


def test_a_budget_names_native_weights_native(smollm2_path, capsys):
    """The embedded GGUF file's weights are held as their blocks, not in the run dtype."""
    assert main(["run", "--model", str(smollm2_path), "--prompt", PROMPT, "--budget", "50MiB"]) == 2
    assert "the weights alone take 92.10 MiB (native)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--budget", "lots"], "--budget 'lots': not a size"),
    (["--budget", "1GiB", "--tp", "2"], "--budget: fits a run on one device; --tp 2 runs on 2")])
def test_run_bad_budget_is_exit_2(argv, message, capsys):
    assert main(["run", "--prompt", "hi", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"arena: error: {message}") and err.count("\n") == 1


def test_prompt_file_and_stdin_give_the_prompt_s_tokens(word_folder, tmp_path, capsys, monkeypatch):
    path = tmp_path / "prompt.txt"
    path.write_bytes(b"\xef\xbb\xbf" + (PROMPT + "\n").encode())      # a byte-order mark, dropped from both
    from_text, _ = run_json(capsys, "--model", str(word_folder), "--prompt", PROMPT)
    from_file, _ = run_json(capsys, "--model", str(word_folder), "--prompt-file", str(path))
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
    from_stdin, _ = run_json(capsys, "--model", str(word_folder), "--prompt-file", "-")
    assert from_file["prompt_tokens"] == from_stdin["prompt_tokens"] == from_text["prompt_tokens"]
    assert from_file["tokens"] == from_text["tokens"]


def test_prompt_file_faults_are_exit_2_naming_the_file(tmp_path, capsys):
    empty, binary, marked = tmp_path / "empty.txt", tmp_path / "binary.txt", tmp_path / "marked.txt"
    empty.write_text("")
    binary.write_bytes(b"\xff\xfe")
    marked.write_bytes(b"\xef\xbb\xbfab\xff")      # the offset counts the byte-order mark
    for path, message in ((tmp_path / "missing.txt", "cannot read the prompt"), (empty, "the prompt is empty"),
                          (binary, "not UTF-8 text"), (marked, "(byte 0xff at offset 5)")):
        assert main(["run", "--prompt-file", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"arena: error: --prompt-file {path}") and message in err, err
    assert main(["run", "--prompt-file", ""]) == 2
    assert capsys.readouterr().err == "arena: error: --prompt-file: the path is empty\n"
    with pytest.raises(SystemExit) as e:   # argparse: one of the two, not both
        main(["run", "--prompt", "hi", "--prompt-file", str(empty)])
    assert e.value.code == 2


def test_standard_input_that_is_not_utf8_is_named_as_a_file_is(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"abc\xff\xfedef")))
    assert main(["run", "--prompt-file", "-"]) == 2
    assert capsys.readouterr().err == ("arena: error: --prompt-file -: standard input is not UTF-8 text "
                                       "(byte 0xff at offset 3)\n")


def test_standard_input_is_read_with_the_files_cap_and_may_be_closed(monkeypatch, capsys):
    from planner.errors import MAX_FILE_BYTES
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"a" * (MAX_FILE_BYTES + 1))))
    assert main(["run", "--prompt-file", "-"]) == 2
    assert capsys.readouterr().err == (f"arena: error: --prompt-file -: standard input is more than "
                                       f"{MAX_FILE_BYTES:,} bytes; at most {MAX_FILE_BYTES:,} are read\n")
    monkeypatch.setattr("sys.stdin", None)
    assert main(["run", "--prompt-file", "-"]) == 2
    assert capsys.readouterr().err == "arena: error: --prompt-file -: there is no standard input\n"


# chunked prefill on the real SmolLM2 (f32): the same logits and tokens as one call


LONG, NEW = 2048, 32


def greedy_after_prefill(session, ids, prefill):
    """The last prompt position's logits and the NEW greedy tokens after `prefill` fed the prompt."""
    from executor.sampling import Sampler
    tokens = [prefill(session, ids, Sampler())]
    logits = session.logits()
    while len(tokens) < NEW:
        tokens.append(session.forward(tokens[-1:], Sampler()))
    return logits, tokens


@pytest.mark.slow
def test_chunked_prefill_of_2048_tokens_matches_one_call(smollm2_f32):
    import torch

    from executor.generate import prefill_chunks
    from executor.model import build_model
    from executor.session import Session
    tokenizer, config, weights = smollm2_f32
    ids = tokenizer.encode("The memory of a long prompt is planned before it is read. " * 200)[:LONG]
    assert len(ids) == LONG
    nctx = LONG + NEW
    fitter = Fitter({**config.dims(), "nctx": nctx}, "f32", config.tied)
    budget = fitter.cost(LONG, 272, 16)["total_bytes"] - 1   # chunks of 272 no longer fit, whatever the tile
    choice = choose(fitter, budget, LONG)
    assert choice.chunk == 256
    with torch.inference_mode():
        model = build_model(weights, nctx)
        whole = greedy_after_prefill(Session(model, nctx, LONG), ids, lambda s, p, sampler: s.forward(p, sampler))
        session = Session(model, nctx, choice.chunk, tile=choice.tile)
        chunked = greedy_after_prefill(session, ids, prefill_chunks)
    tables = model.cos.nbytes + model.sin.nbytes
    assert tables == choice.cost["rope_bytes"]
    assert weights.nbytes + session.backing.numel() + tables + choice.cost["runtime_bytes"] == \
        choice.cost["total_bytes"] <= budget
    assert (chunked[0] - whole[0]).abs().max().item() < 1e-4
    assert chunked[1] == whole[1]


def test_a_context_too_short_for_the_new_tokens_says_how_many_fit():
    """The largest --nctx that fits holds the prompt but not --max-new-tokens 64 after it: the
    message says how many new tokens it leaves room for, and a run asking that many fits."""
    from planner.budget import _least
    prompt, new = 761, 64
    budget = _least(smol(prompt + new // 2), prompt)["total_bytes"]       # the least run at that context
    with pytest.raises(ArenaError, match="which leaves room for --max-new-tokens ") as e:
        choose(smol(prompt + new - 1), budget, prompt, new)
    fewer = int(str(e.value).split("--max-new-tokens ")[1].split()[0])
    assert 1 <= fewer < new
    assert choose(smol(prompt + fewer - 1), budget, prompt, fewer).cost["total_bytes"] <= budget
    with pytest.raises(ArenaError, match="which leaves room for --max-new-tokens "):    # and no more
        choose(smol(prompt + fewer), budget, prompt, fewer + 1)


@pytest.mark.parametrize("prompt, split", [(40, "in 2 calls of 32 (the last 8),"), (64, "in 2 calls of 32,"),
                                           (32, "in one call,")])
def test_the_choice_in_a_line_names_a_shorter_last_call_only(prompt, split):
    from planner.budget import Choice, describe
    line = describe(Choice(32, 16, {"total_bytes": 2**20}), 2**21, prompt)
    assert line == f"budget    2.00 MiB: prefill {prompt} tokens {split} attention over tiles of 16 keys; total 1.00 MiB"


def test_a_huge_prompt_or_context_is_searched_without_listing_its_candidates(capsys):
    """A trillion-token prompt has 6 x 10^10 chunk candidates, a billion positions as many
    --nctx: bisection reads some 40 of them. (A prompt of two million tokens, and a KV cache of
    as many positions, fit 100 GiB.)"""
    assert len(chunk_sizes(10**12)) == 62_500_000_000 and chunk_sizes(10**12)[-1] == 10**12
    assert main(["plan", "llama", "--set", "n=2000000", "--set", "nctx=2000000", "--budget", "100GiB", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chunk"] % 16 == 0 and out["total_bytes"] <= out["budget"]
    fitter, budget = smol(10**9), parse_size("100GiB")
    with pytest.raises(ArenaError, match="the largest --nctx that fits is ") as e:
        choose(fitter, budget, 1000)
    largest = int(str(e.value).split("the largest --nctx that fits is ")[1].split()[0].rstrip(","))
    assert choose(smol(largest), budget, 1000).cost["total_bytes"] <= budget


def test_a_budget_past_any_memory_is_one_line(capsys):
    assert mib(10**100) == "9.31e+90 GiB" and mib(2**62) == "4294967296.00 GiB"
    assert mib(1) == "1 byte" and mib(12) == "12 bytes"
    assert main(["plan", "llama", "--set", "n=7", "--budget", "1" + "0" * 90, "--json"]) == 0
    assert capsys.readouterr().err.startswith("budget    9.31e+80 GiB: prefill 7 tokens in one call")
    assert main(["plan", "llama", "--set", "n=7", "--budget", "1" + "0" * 320]) == 2
    assert capsys.readouterr().err == f"arena: error: --budget '1{'0' * 56}...': too large, at most 10^100 bytes\n"


def test_a_one_token_prompt_reads_as_one_token(capsys):
    assert main(["plan", "llama", "--set", "n=1", "--budget", "2GiB"]) == 0
    assert capsys.readouterr().err.startswith("budget    2.00 GiB: prefill 1 token in one call, attention over tiles")


def test_a_budget_a_byte_short_of_the_smallest_run_is_refused_decode_counted():
    """At a long context the decode plan's arena (scores over every position) is the larger:
    a chunk whose own plan fits is no run that fits."""
    fitter = smol(131072)
    least = _least(fitter, 64)["total_bytes"]
    choice = choose(fitter, least, 64)
    assert choice.cost["total_bytes"] <= least
    with pytest.raises(ArenaError, match=rf"the smallest budget for this run is .* \({least:,} bytes\)"):
        choose(fitter, least - 1, 64)


def test_the_refusals_name_the_largest_context_that_fits_or_none():
    fitter = smol(64)
    with pytest.raises(ArenaError, match="no --nctx fits"):
        choose(fitter, fitter.fixed + 1, 8)
    exactly = _least(smol(40), 40)["total_bytes"]     # a context as long as the prompt, no longer
    with pytest.raises(ArenaError) as e:
        choose(fitter, exactly, 40)
    assert str(e.value).endswith("the largest --nctx that fits is 40")
    with pytest.raises(ArenaError) as e:              # the weights fit, exactly; with the rest they do not
        choose(fitter, fitter.weights, 8)
    assert "the weights alone" not in str(e.value) and f"the weights ({mib(fitter.weights)}, f32) and the" in str(e.value)
