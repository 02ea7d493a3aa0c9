"""GGUF reading: every supported tensor type dequantized as the gguf package does, the Q/K
permutation undone, and clear errors for files we cannot run."""
import os
import re

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q

from executor.gguf_file import GGUFFile
from executor.source import Source
from llama_arena.cli import main
from planner.errors import ArenaError
from planner.models import model_dims

from checkpoints import PROMPT, SEQUENCE, checkpoint_to_gguf, our_session, teacher_forced

QUANTIZABLE = [Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1]
K_QUANTS = [Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]   # the gguf package dequantizes these only


@pytest.fixture(scope="module")
def checkpoint(tiny_folder):
    return tiny_folder("mha-untied")   # sizes are multiples of 32


# how a metadata value of each Python type is written (an int as uint32, as converters write dims)
ADD = {int: "add_uint32", float: "add_float32", str: "add_string", bool: "add_bool", list: "add_array"}


# the tensors a layer of minimal_gguf's reads, as numpy lays them out (out, in)
LAYER_SHAPES = {"attn_norm": (256,), "attn_q": (256, 256), "attn_k": (256, 256), "attn_v": (256, 256),
                "attn_output": (256, 256), "ffn_norm": (256,), "ffn_gate": (256, 256), "ffn_up": (256, 256),
                "ffn_down": (256, 256)}


def minimal_gguf(path, arch="llama", extra=None, drop=(), embedding=True, tokens=None, omit=(), **more):
    """Llama metadata (and the `more` keys), a token list, and a tensor of ones for each that
    one layer reads (a token embedding of 8 rows unless `embedding` is false; none named in
    `omit`), those of the `extra` tensors {name: (array, raw type or None)} in their place, the
    others after them."""
    w = gguf.GGUFWriter(path, arch)
    meta = {"block_count": 1, "embedding_length": 256, "feed_forward_length": 256,
            "attention.head_count": 4, "context_length": 64, **more}
    for key, value in meta.items():
        if key not in drop:
            getattr(w, ADD[type(value)])(f"{arch}.{key}", value)
    if tokens:
        w.add_token_list(tokens)
    tensors = {"token_embd.weight": (8, 256)} if embedding else {}
    tensors |= {"output_norm.weight": (256,), **{f"blk.0.{role}.weight": s for role, s in LAYER_SHAPES.items()}}
    tensors = {name: (np.ones(shape, dtype=np.float32), None) for name, shape in tensors.items()
               if name not in omit} | (extra or {})
    for name, (array, raw) in tensors.items():
        w.add_tensor(name, array, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("qtype", QUANTIZABLE, ids=lambda q: q.name)
def test_quantized_weights_dequantize_like_gguf(checkpoint, tmp_path, qtype):
    path = checkpoint_to_gguf(checkpoint, tmp_path / "q.gguf", qtype)
    file = GGUFFile(path)
    raw = next(t for t in gguf.GGUFReader(path).tensors if t.name == "blk.0.ffn_up.weight")
    assert raw.tensor_type == qtype
    expected = torch.from_numpy(gguf.quants.dequantize(raw.data, qtype).copy())
    assert torch.equal(file.get("model.layers.0.mlp.up_proj.weight"), expected)
    from safetensors.torch import load_file
    original = load_file(checkpoint / "model.safetensors")
    for name in ("model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight",
                 "model.layers.1.self_attn.k_proj.weight"):
        w = original[name]
        assert (file.get(name) - w).abs().max() < 0.15 * w.abs().max(), name   # the quantization error


def test_q8_0_model_logits_stay_near_float32(checkpoint, tmp_path):
    with torch.inference_mode():
        exact = teacher_forced(our_session(checkpoint, "checkpoint", len(SEQUENCE), PROMPT))
        path = checkpoint_to_gguf(checkpoint, tmp_path / "q8.gguf", Q.Q8_0)
        q8 = teacher_forced(our_session(path, "gguf", len(SEQUENCE), PROMPT))
    assert (q8 - exact).abs().max() < 0.05 * exact.abs().max()


@pytest.mark.parametrize("qtype", K_QUANTS, ids=lambda q: q.name)
def test_k_quants_dequantize_like_gguf(tmp_path, qtype):
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    data = np.random.default_rng(0).integers(0, 256, (4, 256 // block * size), dtype=np.uint8)
    path = minimal_gguf(tmp_path / "k.gguf", extra={"output.weight": (data, qtype)})
    expected = torch.from_numpy(gguf.quants.dequantize(data, qtype).copy())
    torch.testing.assert_close(GGUFFile(path).get("lm_head.weight"), expected, equal_nan=True, atol=0, rtol=0)


@pytest.mark.parametrize("array, raw", [(np.ones(256, dtype=np.float64), None),
                                        (np.zeros((1, 18 * 8), dtype=np.uint8), Q.IQ4_NL)],
                         ids=["F64", "IQ4_NL"])
def test_unsupported_quantization_is_named(tmp_path, array, raw):
    path = minimal_gguf(tmp_path / "u.gguf", extra={"blk.0.attn_norm.weight": (array, raw)})
    with pytest.raises(ArenaError, match=r"tensor 'blk.0.attn_norm.weight' has quantization \w+, which is not supported"):
        GGUFFile(path)


def test_planner_and_executor_read_the_same_dims(tmp_path):
    path = minimal_gguf(tmp_path / "d.gguf")
    dims = dict(d=256, nh=4, nkvh=4, dh=64, di=256, nlayers=1, vocab=8, nctx=64)
    assert model_dims(str(path)) == GGUFFile(path).config.dims() == dims


@pytest.mark.parametrize("embedding, more, vocab", [
    (True, dict(vocab_size=6, tokens=list("abcde")), 8),   # the embedding's rows win
    (False, dict(vocab_size=6, tokens=list("abcde")), 6),
    (False, dict(tokens=list("abcde")), 5),
], ids=["embedding", "vocab_size", "tokens"])
def test_vocab_is_the_embeddings_rows_else_the_metadata(tmp_path, embedding, more, vocab):
    path = minimal_gguf(tmp_path / "v.gguf", embedding=embedding, **more)
    assert model_dims(str(path))["vocab"] == vocab


def test_gguf_without_vocabulary_is_named(tmp_path):
    path = minimal_gguf(tmp_path / "n.gguf", embedding=False)
    with pytest.raises(ArenaError, match="lacks 'tokenizer.ggml.tokens'"):
        model_dims(str(path))
    with pytest.raises(ArenaError, match="has no tensor 'token_embd.weight'"):
        GGUFFile(minimal_gguf(tmp_path / "t.gguf", embedding=False, vocab_size=6))


def test_a_layer_bias_is_refused_not_dropped(checkpoint, tmp_path):
    """llama.cpp's llama adds attention and FFN biases where a file has them; ours has none, so
    such a file is refused rather than run without them."""
    bias = lambda w: w.add_tensor("blk.0.attn_q.bias", np.ones(64, dtype=np.float32))
    path = checkpoint_to_gguf(checkpoint, tmp_path / "b.gguf", metadata=bias)
    with pytest.raises(ArenaError, match="tensor 'blk.0.attn_q.bias' is a bias; layers with biases are not supported"):
        GGUFFile(path)


def test_plan_estimates_a_gguf_file_run_refuses_with_a_note(checkpoint, tmp_path, capsys):
    """The same refusal, as a note beside the estimate."""
    from llama_arena.cli import main
    bias = lambda w: w.add_tensor("blk.0.attn_q.bias", np.ones(64, dtype=np.float32))
    path = checkpoint_to_gguf(checkpoint, tmp_path / "b.gguf", metadata=bias)
    assert main(["plan", "llama", "--model", str(path), "--set", "n=2", "--json"]) == 0
    assert capsys.readouterr().err == (f"note: arena run refuses {path}: tensor 'blk.0.attn_q.bias' is a bias; "
                                       "layers with biases are not supported\n")


@pytest.mark.parametrize("extra, omit, fault", [
    ({"blk.1.attn_norm.weight": (np.ones(256, dtype=np.float32), None)}, (),
     "tensor 'blk.1.attn_norm.weight' is not one that a llama model of 1 layer (llama.block_count) reads"),
    ({"blk.0.attn_q_norm.weight": (np.ones(64, dtype=np.float32), None)}, (),
     "tensor 'blk.0.attn_q_norm.weight' is not one that a llama model of 1 layer (llama.block_count) reads"),
    ({}, ("blk.0.ffn_up.weight",), "the file has no tensor 'blk.0.ffn_up.weight'"),
    ({"blk.0.ffn_down.weight": (np.zeros((1, 18 * 8), dtype=np.uint8), Q.IQ4_NL)}, (),
     "tensor 'blk.0.ffn_down.weight' has quantization IQ4_NL, which is not supported"),
], ids=["layer-past-block-count", "other-architecture", "missing", "unsupported-type"])
def test_tensors_the_forward_pass_cannot_read_or_leaves_unread(tmp_path, capsys, extra, omit, fault):
    """Refused by the run, as llama.cpp refuses them (a layer past llama.block_count ran as a
    network of one layer, its output wrong); noted by the plan, which estimates them all the same."""
    path = minimal_gguf(tmp_path / "x.gguf", extra=extra, omit=omit)
    with pytest.raises(ArenaError, match=re.escape(fault)):
        GGUFFile(path)
    assert main(["plan", "llama", "--model", str(path), "--set", "n=2", "--json"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"note: arena run refuses {path}: {fault}") and err.count("\n") == 1, err


def test_a_tensor_of_the_wrong_shape_is_named_as_the_file_names_it(tmp_path):
    from executor.weights import assemble
    norm = {"blk.0.attn_norm.weight": (np.ones(255, dtype=np.float32), None)}
    file = GGUFFile(minimal_gguf(tmp_path / "t.gguf", extra=norm, tokens=[f"t{i}" for i in range(8)]))
    with pytest.raises(ArenaError, match=re.escape("tensor 'blk.0.attn_norm.weight' has shape (255,), expected (256,)")):
        assemble(file, torch.float32, torch.device("cpu"))


@pytest.mark.parametrize("qtype", [Q.F32, Q.Q4_1], ids=lambda q: q.name)
def test_a_tensor_of_no_dimensions_is_named(tmp_path, qtype):
    """A scalar where a weight belongs: in F32 its read failed (IndexError), and in a block type
    it counted as 0 bytes, which passed the checks of size and truncation."""
    scalar = {"blk.0.attn_q.weight": (np.ones((), dtype=np.float32), None)}
    path = minimal_gguf(tmp_path / "t.gguf", extra=scalar, tokens=[f"t{i}" for i in range(8)])
    data = bytearray(path.read_bytes())     # its type follows its name and its count of dimensions, 0
    at = data.index(b"blk.0.attn_q.weight") + len("blk.0.attn_q.weight") + 4
    data[at:at + 4] = int(qtype).to_bytes(4, "little")
    path.write_bytes(data)
    with pytest.raises(ArenaError, match=re.escape(f"{path}: tensor 'blk.0.attn_q.weight' has shape [], no values")):
        GGUFFile(path)


@pytest.mark.parametrize("native", [True, False], ids=["native", "dequantized"])
def test_a_quantized_tensor_of_the_wrong_shape_is_named(tmp_path, native):
    """Held as blocks or dequantized: rows past the model's would be dropped without a word."""
    from gguf.quants import quantize

    from executor.weights import assemble
    gate_up = {f"blk.0.ffn_{part}.weight": (quantize(np.ones((rows, 256), np.float32), Q.Q8_0), Q.Q8_0)
               for part, rows in (("gate", 256), ("up", 512))}
    file = GGUFFile(minimal_gguf(tmp_path / "t.gguf", extra=gate_up, tokens=[f"t{i}" for i in range(8)]))
    with pytest.raises(ArenaError, match=re.escape("tensor 'blk.0.ffn_up.weight' has shape (512, 256), expected (256, 256)")):
        assemble(file, torch.float32, torch.device("cpu"), native=native)


def test_a_folder_of_one_gguf_file_is_that_file_and_a_blank_model_is_named(tiny_folder, tmp_path):
    from executor.source import resolve
    folder = tmp_path / "one"
    folder.mkdir()
    checkpoint_to_gguf(tiny_folder("mha-untied"), folder / "m.gguf")
    assert resolve(str(folder)) == Source(folder / "m.gguf", "gguf")
    with pytest.raises(ArenaError, match="--model: the path is empty"):
        resolve("   ")


def test_a_plan_of_a_file_whose_tensor_has_the_wrong_shape_notes_the_run_refuses_it(tmp_path, capsys):
    """The plan's figures take the file's tensors; the note says they are not the model's."""
    up = {"blk.0.ffn_up.weight": (np.ones((2048, 256), dtype=np.float32), None)}
    path = minimal_gguf(tmp_path / "t.gguf", extra=up, omit=("blk.0.ffn_up.weight",))
    assert main(["plan", "llama", "--model", str(path), "--set", "n=2", "--json"]) == 0
    assert capsys.readouterr().err == (f"note: arena run refuses {path}: tensor 'blk.0.ffn_up.weight' has shape "
                                       f"(2048, 256), not the ({model_dims(str(path))['di']}, 256) of the model's "
                                       "dimensions\n")


def test_unsupported_architecture_is_named(tmp_path):
    with pytest.raises(ArenaError, match="architecture 'gpt2' is not supported"):
        GGUFFile(minimal_gguf(tmp_path / "a.gguf", arch="gpt2"))


DIMS_FAULTS = [
    ({"attention.head_count": 0}, "llama.attention.head_count is 0; it must be a positive integer"),
    ({"attention.head_count": 3}, "llama.embedding_length (256) is not a multiple of llama.attention.head_count (3), "
                                  "and the file gives no head size"),
    ({"attention.head_count_kv": 3}, "llama.attention.head_count (4) is not a multiple of "
                                     "llama.attention.head_count_kv (3)"),
    ({"attention.head_count_kv": 0}, "llama.attention.head_count_kv is 0; it must be a positive integer"),
    ({"embedding_length": 256.0}, "llama.embedding_length is 256.0; it must be a positive integer"),
    ({"feed_forward_length": "256"}, 'llama.feed_forward_length is "256"; it must be a positive integer'),
    ({"block_count": True}, "llama.block_count is true; it must be a positive integer"),
    ({"attention.head_count": [4, 4]}, "llama.attention.head_count is [4, 4]; it must be a positive integer"),
    ({"attention.key_length": 0}, "llama.attention.key_length is 0; it must be a positive integer"),
    ({"context_length": 0}, "llama.context_length is 0; it must be a positive integer"),
    ({"expert_count": 8}, "llama.expert_count is 8: mixture-of-experts models are not supported"),
    ({"expert_count": "0"}, 'llama.expert_count is "0"; it must be a count (0: no experts)'),
]
RUN_FAULTS = [   # what only a forward pass needs
    ({"attention.key_length": 63, "rope.dimension_count": 63}, "the head size is 63; RoPE needs an even one"),
    ({"attention.layer_norm_rms_epsilon": "1e-5"},
     'llama.attention.layer_norm_rms_epsilon is "1e-5"; it must be a positive number'),
    ({"rope.freq_base": 0.0}, "llama.rope.freq_base is 0.0; it must be a positive number"),
    ({"rope.freq_base": float("inf")}, "llama.rope.freq_base is Infinity; it must be a positive number"),
    ({"rope.scaling.factor": -2.0}, "llama.rope.scaling.factor is -2.0; it must be a positive number"),
    ({"rope.scaling.type": "linear", "rope.scaling.factor": "2"},
     'llama.rope.scaling.factor is "2"; it must be a positive number'),
    ({"rope.scaling.type": "yarn", "rope.scaling.factor": 4.0}, "RoPE scaling 'yarn' is not supported (none, linear)"),
    ({"rope.dimension_count": "64"}, 'llama.rope.dimension_count is "64"; it must be a positive integer'),
    ({"attention.value_length": 32}, "llama.attention.value_length is 32, where the head size is 64: values and keys "
                                     "of two sizes are not supported"),
]


def metadata_id(value):
    return ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else None


@pytest.mark.parametrize("more, scaling", [
    ({}, None),
    ({"rope.scaling.type": "linear"}, None),                      # no factor: none
    ({"rope.scaling.factor": 0.0}, None),                         # 0: none
    ({"rope.scaling.type": "none", "rope.scaling.factor": 4.0}, None),
    ({"rope.scaling.factor": 4.0}, 4.0),                          # the type defaults to linear
    ({"rope.scaling.type": "linear", "rope.scale_linear": 2.0}, 2.0),   # the older key
    ({"rope.scaling.factor": 3.0, "rope.scale_linear": 2.0}, 3.0),
], ids=metadata_id)
def test_rope_scaling_metadata_reads_as_llama_cpp_reads_it(tmp_path, more, scaling):
    config = GGUFFile(minimal_gguf(tmp_path / "r.gguf", **more)).config
    assert (config.rope_scaling and config.rope_scaling["factor"]) == scaling


@pytest.mark.parametrize("more, message", DIMS_FAULTS + RUN_FAULTS, ids=metadata_id)
def test_bad_metadata_is_exit_2_naming_key_and_value(tmp_path, capsys, more, message):
    path = minimal_gguf(tmp_path / "bad.gguf", **more)
    assert main(["run", "--model", str(path), "--prompt", "hi"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"bad.gguf: {message}" in err and "Traceback" not in err


def test_plan_notes_rope_scaling_the_run_refuses(tmp_path, capsys):
    path = minimal_gguf(tmp_path / "y.gguf", **{"rope.scaling.type": "yarn", "rope.scaling.factor": 4.0})
    assert main(["plan", "llama", "--model", str(path), "--set", "n=2", "--json"]) == 0
    assert capsys.readouterr().err == f"note: arena run refuses {path}: RoPE scaling 'yarn' is not supported (none, linear)\n"


@pytest.mark.parametrize("more, message", DIMS_FAULTS, ids=metadata_id)
def test_the_planner_refuses_the_same_dims(tmp_path, more, message):
    with pytest.raises(ArenaError, match=re.escape(message)):
        model_dims(str(minimal_gguf(tmp_path / "bad.gguf", **more)))


def test_missing_metadata_is_named(tmp_path):
    with pytest.raises(ArenaError, match="lacks 'llama.feed_forward_length'"):
        GGUFFile(minimal_gguf(tmp_path / "m.gguf", drop=("feed_forward_length",)))


@pytest.mark.parametrize("keep", [0.01, 0.5, 0.999])
def test_truncated_file_is_named_truncated(checkpoint, tmp_path, keep):
    whole = checkpoint_to_gguf(checkpoint, tmp_path / "whole.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:int(len(whole) * keep)])
    with pytest.raises(ArenaError, match="truncated"):
        GGUFFile(cut)


def test_not_a_gguf_file_is_named(tmp_path, capsys):
    """By the run and by the plan, which read a damaged .gguf file as a config.json."""
    path = tmp_path / "text.gguf"
    path.write_text("hello")
    with pytest.raises(ArenaError, match="not a readable GGUF file"):
        GGUFFile(path)
    assert main(["plan", "llama", "--model", str(path)]) == 2
    assert capsys.readouterr().err == (f"arena: error: {path}: not a readable GGUF file, truncated or corrupt "
                                       "(no GGUF magic number)\n")


def test_tensors_that_share_bytes_are_refused(tmp_path):
    """A second tensor at the first one's offset (a corrupt file) was read as weights."""
    w = gguf.GGUFWriter(tmp_path / "s.gguf", "llama")
    w.add_tensor("a", np.ones(8, dtype=np.float32))
    w.add_tensor("b", np.zeros(8, dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    data = bytearray((tmp_path / "s.gguf").read_bytes())
    at = data.index(b"\x01\x00\x00\x00\x00\x00\x00\x00b") + 9 + 4 + 8 + 4      # b's name, dims, shape, type
    data[at:at + 8] = (0).to_bytes(8, "little")                                 # b's offset: a's
    (tmp_path / "s.gguf").write_bytes(data)
    with pytest.raises(ArenaError, match="tensor 'b' starts inside tensor 'a'"):
        GGUFFile(tmp_path / "s.gguf")


def _status_bytes(key: str) -> int:
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(key))) * 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's /proc")
def test_native_blocks_leave_no_pages_of_the_file_resident(tmp_path):
    """Blocks held as the file stores them are copies: the file's pages are dropped after each,
    or the file would stay resident beside them (memory twice over)."""
    from executor.source import open_source
    from executor.weights import assemble
    from checkpoints import tiny_checkpoint
    folder = tiny_checkpoint(tmp_path / "wide", "mha-untied", vocab_size=65536)   # 16 MiB embedding and head
    path = checkpoint_to_gguf(folder, tmp_path / "wide.gguf", Q.Q8_0)
    source = open_source(Source(path, "gguf"))
    before = _status_bytes("RssFile:")
    weights = assemble(source, torch.float32, torch.device("cpu"), native=True)
    size = path.stat().st_size
    assert weights.nbytes > size / 2 and _status_bytes("RssFile:") - before < size / 10


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="resets Linux's peak resident memory")
def test_a_float_tensor_is_read_a_few_pages_at_a_time(tmp_path, monkeypatch):
    """A whole tensor's pages of the file stayed resident beside its copy until it was read: the
    load's peak went past the weights by the largest tensor (97 MiB over a --budget)."""
    from executor import gguf_file
    from executor.source import open_source
    from executor.weights import assemble
    from checkpoints import tiny_checkpoint
    folder = tiny_checkpoint(tmp_path / "wide", "mha-untied", vocab_size=65536)   # 16 MiB embedding and head
    source = open_source(Source(checkpoint_to_gguf(folder, tmp_path / "wide.gguf"), "gguf"))
    monkeypatch.setattr(gguf_file, "READ_BYTES", 1 << 20)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_bytes("VmRSS:")
    weights = assemble(source, torch.float32, torch.device("cpu"))
    assert _status_bytes("VmHWM:") - before < weights.nbytes + (4 << 20)
