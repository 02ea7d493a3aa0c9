"""Model dimensions from config.json, GGUF files and --set: every dim a positive integer, the heads
fitting together, and one clear line (exit 2) naming the file, key and value when they do not."""
import json
import os

import gguf
import numpy as np
import pytest

from llama_arena.cli import main
from planner.errors import ArenaError
from planner.models import config_dims, model_dims, parse_sets

SMOLLM2 = dict(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, intermediate_size=1536,
               num_hidden_layers=30, vocab_size=49152, max_position_embeddings=8192)
DROP = object()   # an override that removes the key


def write_config(tmp_path, **overrides):
    cfg = {**SMOLLM2, **overrides}
    path = tmp_path / "config.json"
    path.write_text(json.dumps({k: v for k, v in cfg.items() if v is not DROP}))
    return path


@pytest.mark.parametrize("overrides, message", [
    (dict(hidden_size=576.0), "config.json: hidden_size is 576.0; it must be a positive integer"),
    (dict(hidden_size="576"), 'config.json: hidden_size is "576"; it must be a positive integer'),
    (dict(hidden_size=None), "config.json: hidden_size is null; it must be a positive integer"),
    (dict(hidden_size=True), "config.json: hidden_size is true; it must be a positive integer"),
    (dict(num_attention_heads=0), "config.json: num_attention_heads is 0; it must be a positive integer"),
    (dict(num_attention_heads=[9]), "config.json: num_attention_heads is [9]; it must be a positive integer"),
    (dict(num_key_value_heads=0), "config.json: num_key_value_heads is 0; it must be a positive integer"),
    (dict(head_dim=-64), "config.json: head_dim is -64; it must be a positive integer"),
    (dict(intermediate_size={"a": 1}), 'config.json: intermediate_size is {"a": 1}; it must be a positive integer'),
    (dict(num_hidden_layers=30.5), "config.json: num_hidden_layers is 30.5; it must be a positive integer"),
    (dict(vocab_size=-1), "config.json: vocab_size is -1; it must be a positive integer"),
    (dict(hidden_size=10**30), "config.json: hidden_size is 1000000000000000000000000000000; too large, 18 digits"),
    (dict(max_position_embeddings="8k"), 'config.json: max_position_embeddings is "8k"; it must be a positive'),
    (dict(num_key_value_heads=4),
     "config.json: num_attention_heads (9) is not a multiple of num_key_value_heads (4)"),
    (dict(num_key_value_heads=18), "num_attention_heads (9) is not a multiple of num_key_value_heads (18)"),
    (dict(num_attention_heads=7, num_key_value_heads=DROP),
     "config.json: hidden_size (576) is not a multiple of num_attention_heads (7), and the file gives no head size"),
    (dict(intermediate_size=DROP), "config.json lacks 'intermediate_size'"),
], ids=lambda v: json.dumps(v, default=str)[:40] if isinstance(v, dict) else None)
def test_bad_config_json_is_one_line_naming_key_and_value(tmp_path, capsys, overrides, message):
    cfg = write_config(tmp_path, **overrides)
    assert main(["plan", "llama", "--model", str(cfg), "--set", "n=5"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err


def test_a_context_past_18_digits_is_a_default_that_nctx_replaces(tmp_path, capsys):
    cfg = write_config(tmp_path, max_position_embeddings=10**20)
    assert main(["plan", "llama", "--model", str(cfg), "--set", "n=5", "--nctx", "64"]) == 0


def test_a_config_json_that_is_not_an_object_is_named(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[576, 9]")
    with pytest.raises(ArenaError, match="the config.json is not a JSON object"):
        config_dims(path)


@pytest.mark.parametrize("name", ["config.json", "model.gguf"])
def test_a_model_that_is_a_device_or_a_pipe_is_refused_before_it_is_read(tmp_path, capsys, name):
    """/dev/zero was read until memory ran out, a pipe blocked forever."""
    pipe = tmp_path / name
    os.mkfifo(pipe)
    for model in (str(pipe), "/dev/zero"):
        assert main(["plan", "llama", "--model", model, "--set", "n=5"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"arena: error: {model}: cannot read the ") and "it is a device or a pipe" in err, err


@pytest.mark.parametrize("overrides, dims", [
    # null is absent for the optional keys, as transformers reads it
    (dict(num_key_value_heads=None, head_dim=None, max_position_embeddings=None), dict(nkvh=9, dh=64, nctx=2048)),
    # a head size given makes any hidden size fit the heads
    (dict(num_attention_heads=7, num_key_value_heads=1, head_dim=80), dict(nh=7, nkvh=1, dh=80)),
])
def test_optional_keys_default_and_come_back_as_ints(tmp_path, overrides, dims):
    got = config_dims(write_config(tmp_path, **overrides))
    assert {k: got[k] for k in dims} == dims
    assert all(type(v) is int for v in got.values())


@pytest.mark.parametrize("model_type", ["llama", "mistral"])
def test_keys_the_config_leaves_out_are_its_config_classs_defaults(tmp_path, model_type):
    from transformers import AutoConfig
    path = write_config(tmp_path, model_type=model_type, max_position_embeddings=DROP, num_key_value_heads=DROP,
                        num_attention_heads=16, sliding_window=None)
    reference = AutoConfig.from_pretrained(tmp_path)
    assert (config_dims(path)["nctx"], config_dims(path)["nkvh"]) == \
        (reference.max_position_embeddings, reference.num_key_value_heads)
    assert config_dims(write_config(tmp_path, model_type=model_type, num_key_value_heads=None,
                                    num_attention_heads=16))["nkvh"] == 16     # null is MHA, as transformers 4 reads it


@pytest.mark.parametrize("item", ["n=--5", "n=²", "n=٣", "n=1.5", "n=1_000", "n=", "=5", "n", "n=5=6", "n=0x10"])
def test_set_takes_ascii_integers_only(item, capsys):
    assert main(["plan", "llama", "--set", item]) == 2
    err = capsys.readouterr().err
    assert f"--set {item}: expected NAME=INTEGER, e.g. --set n=512" in err and "Traceback" not in err


def test_set_refuses_a_number_too_long_for_the_placers(capsys):
    item = "n=" + "9" * 5000   # int() itself refuses numbers this long
    assert main(["plan", "llama", "--set", item]) == 2
    assert "too large, 18 digits at most" in capsys.readouterr().err


def test_set_parses_signs_and_spaces():
    assert parse_sets([" n = 7 ", "d=-3", "nctx=0512"]) == {"n": 7, "d": -3, "nctx": 512}


def test_a_config_json_nested_too_deep_is_named(tmp_path, capsys):
    from executor.checkpoint import Checkpoint
    path = tmp_path / "config.json"
    path.write_text("[" * 100_000 + "]" * 100_000)   # json's reader recurses once per level
    assert main(["plan", "llama", "--model", str(path), "--set", "n=5"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: not valid JSON (maximum recursion depth" in err and "Traceback" not in err
    with pytest.raises(ArenaError, match="config.json: not valid JSON"):
        Checkpoint(tmp_path)


def write_gguf(path, embedding=None, tokens=None):
    """A llama GGUF file with SmolLM2's dims but the vocabulary, a token embedding of shape
    `embedding` (numpy's order) and a tokenizer.ggml.tokens of `tokens` when given."""
    w = gguf.GGUFWriter(path, "llama")
    for key, value in {"embedding_length": 576, "attention.head_count": 9, "feed_forward_length": 1536,
                       "block_count": 30}.items():
        w.add_uint32(f"llama.{key}", value)
    if tokens is not None:
        w.add_uint32("tokenizer.ggml.tokens", tokens)
    if embedding is not None:
        w.add_tensor("token_embd.weight", np.ones(embedding, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("embedding, tokens, message", [
    ((), None, "tensor 'token_embd.weight' has 0 dimensions []; it must have 2 (hidden size, vocabulary)"),
    ((576,), None, "tensor 'token_embd.weight' has 1 dimension [576]; it must have 2"),
    ((2, 3, 576), None, "tensor 'token_embd.weight' has 3 dimensions [576, 3, 2]; it must have 2"),
    (None, 49152, "GGUF metadata 'tokenizer.ggml.tokens' is not an array of the vocabulary's tokens"),
])
def test_a_gguf_vocabulary_of_the_wrong_shape_is_named(tmp_path, capsys, embedding, tokens, message):
    path = write_gguf(tmp_path / "model.gguf", embedding, tokens)
    assert main(["plan", "llama", "--model", str(path), "--set", "n=5"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {message}" in err and "Traceback" not in err


def test_a_folder_without_config_json_is_named(tmp_path, capsys):
    assert main(["plan", "llama", "--model", str(tmp_path), "--set", "n=5"]) == 2
    assert f"--model: the folder '{tmp_path}' has no config.json (a Hugging Face checkpoint) and not exactly " \
        "one .gguf file" in capsys.readouterr().err


def test_a_config_is_read_whatever_its_name(tmp_path, capsys):
    """A Hugging Face cache's blob of a config.json has no suffix; only a GGUF file starts with GGUF."""
    (tmp_path / "blob").write_text(json.dumps(SMOLLM2))
    assert model_dims(str(tmp_path / "blob"))["d"] == SMOLLM2["hidden_size"]


@pytest.mark.parametrize("where", ["folder", "MODEL.GGUF", "blob"])
def test_a_gguf_file_is_found_as_arena_run_finds_it(tmp_path, capsys, where):
    """A folder holding one .gguf, a suffix in capitals, none at all (a Hugging Face cache's
    blobs): arena run reads each as GGUF, and the plan read them as a config.json."""
    path = write_gguf(tmp_path / "model.gguf", (2, 576), None)
    expected = model_dims(str(path))
    if where == "folder":
        model = tmp_path
    else:
        model = tmp_path / where
        path.rename(model)
    assert model_dims(str(model)) == expected
    assert main(["plan", "llama", "--model", str(model), "--set", "n=5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["weight_bytes"] > 0


@pytest.mark.parametrize("overrides, message", [
    (dict(model_type="gpt2"), "architecture 'gpt2' is not supported (only llama, and mistral without a sliding window); "
                                "`arena plan` of another network's table takes its dimensions from --set"),
    (dict(quantization_config={"quant_method": "gptq", "bits": 4}), "quantized checkpoints (gptq) are not supported"),
    (dict(model_type="mistral", num_key_value_heads=DROP),      # SmolLM2's 9 heads, MistralConfig's 8
     "num_attention_heads (9) is not a multiple of MistralConfig's default num_key_value_heads (8)"),
])
def test_plan_refuses_networks_its_dimensions_do_not_describe(tmp_path, capsys, overrides, message):
    """An estimate of another network, or of float weights for quantized ones, would be a wrong
    answer. (A Mistral with a sliding window is planned: the same weights, attention over every
    position at most; arena run refuses it.)"""
    cfg = write_config(tmp_path, **overrides)
    assert main(["plan", "llama", "--model", str(cfg), "--set", "n=5"]) == 2
    assert f"{cfg}: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, refusal", [
    (dict(model_type="mistral", sliding_window=DROP), "sliding_window=4096 (Mistral default) is not supported"),
    (dict(model_type="llama", mlp_bias=True), "mlp_bias=True is not supported (only False)"),
    (dict(model_type="llama", head_dim=63), "the head size is 63; RoPE needs an even one"),
    (dict(), "lacks 'model_type'"),
    (dict(model_type="llama", rope_scaling={"rope_type": "yarn", "factor": 4.0}),
     'rope_scaling: RoPE scaling "yarn" is not supported (default, linear, llama3)'),
    (dict(model_type="llama", rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}),
     'rope_parameters: RoPE scaling "dynamic" is not supported'),
    (dict(model_type="llama", rms_norm_eps=0.0), "rms_norm_eps is 0.0; it must be a positive number"),
    (dict(model_type="llama", sliding_window=1024), "sliding_window=1024 is not supported"),
    (dict(model_type="llama", partial_rotary_factor=0.5, rope_parameters={"rope_type": "linear", "factor": 2.0}),
     "partial_rotary_factor=0.5 with RoPE scaling 'linear' is not supported"),
    (dict(model_type="llama", rope_theta=0), "rope_theta is 0; it must be a positive number"),
    (dict(model_type="llama", rope_parameters={"rope_type": "llama3", "factor": 8.0}),
     "rope_parameters.low_freq_factor is null; it must be a positive number"),
    (dict(model_type="llama", rope_parameters="default"), 'rope_parameters is "default"; it must be a JSON object'),
])
def test_plan_notes_what_arena_run_refuses(tmp_path, capsys, overrides, refusal):
    """The estimate is still printed; the note says a run of the model will be refused, and why."""
    cfg = write_config(tmp_path, **overrides)
    assert main(["plan", "llama", "--model", str(cfg), "--set", "n=5", "--json"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"note: arena run refuses {cfg}: {refusal}") and err.count("\n") == 1


def test_a_sliding_window_as_long_as_the_context_is_no_refusal(tmp_path, capsys):
    cfg = write_config(tmp_path, model_type="mistral", sliding_window=4096, max_position_embeddings=4096)
    assert main(["plan", "llama", "--model", str(cfg), "--set", "n=5", "--json"]) == 0
    assert capsys.readouterr().err == ""
    cfg = write_config(tmp_path, model_type="mistral", sliding_window=8192.0, max_position_embeddings=4096)
    assert main(["plan", "llama", "--model", str(cfg), "--set", "n=5", "--json"]) == 0
    assert capsys.readouterr().err.endswith("sliding_window=8192.0 is not supported: attention here covers every "
                                            "position, so the window must be null or a whole number of at least "
                                            "the context's 4096 positions\n")


def test_run_names_a_config_json_alone_and_one_without_model_type(tmp_path):
    from executor.checkpoint import Checkpoint
    from executor.source import resolve
    cfg = write_config(tmp_path)   # `arena plan` reads it; a run needs weights
    with pytest.raises(ArenaError, match=f"--model {cfg}: a .json file holds no weights; give a .gguf file or"):
        resolve(str(cfg))
    with pytest.raises(ArenaError, match=f"{cfg}: lacks 'model_type'"):
        Checkpoint(tmp_path)


def test_leading_zeros_do_not_make_a_set_too_large():
    assert parse_sets(["n=" + "0" * 5000 + "7", "d=-007", "z=000"]) == {"n": 7, "d": -7, "z": 0}
    with pytest.raises(ArenaError, match="too large, 18 digits at most"):
        parse_sets(["n=0" + "9" * 19])


def test_tie_word_embeddings_that_is_not_a_boolean_is_named(tmp_path, capsys):
    cfg = write_config(tmp_path, tie_word_embeddings="yes")
    assert main(["plan", "llama", "--model", str(cfg), "--set", "n=5"]) == 2
    assert f'{cfg}: tie_word_embeddings is "yes"; it must be true or false' in capsys.readouterr().err


def test_a_plan_reads_a_gguf_header_once_until_the_file_changes(tmp_path, monkeypatch, capsys):
    """Dimensions, the output head and the tensor types all come from the header (0.1 s a read on
    SmolLM2); a file written anew is read anew."""
    import planner.models as models
    reads = []
    real = models.read_header
    monkeypatch.setattr(models, "read_header", lambda path: reads.append(path) or real(path))
    path = write_gguf(tmp_path / "model.gguf", (64, 576))
    assert main(["plan", "llama", "--model", str(path), "--nctx", "16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dims"]["vocab"] == 64 and len(reads) == 1
    write_gguf(path, (80, 576))
    os.utime(path, ns=(1, 1))   # a new time even where the clock is coarse
    assert main(["plan", "llama", "--model", str(path), "--nctx", "16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dims"]["vocab"] == 80 and len(reads) == 2
