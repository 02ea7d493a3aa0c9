"""Tiny random Llama checkpoints written by transformers: our logits against transformers', on
prefill, on decode with the persistent KV cache, and on a second multi-token call."""
import json
import os
import shutil

import pytest
import torch

from executor.model import build_model
from executor.sampling import Sampler
from executor.session import Session
from executor.source import Source, open_source
from executor.weights import assemble
from planner.errors import ArenaError

from arena_checks import allocations, bytes_allocated, outside_products
from checkpoints import (PROMPT, SEQUENCE, TINY, checkpoint_to_gguf, copy_with_tensors, hf_model, our_session,
                         teacher_forced, tiny_checkpoint)


def reference_logits(folder) -> torch.Tensor:
    """transformers' logits (len(SEQUENCE), vocab) for the whole sequence in one pass."""
    with torch.no_grad():
        return hf_model(folder)(torch.tensor([SEQUENCE])).logits[0]


@pytest.fixture(scope="module", params=sorted(TINY))
def tiny(request, tiny_folder):
    """Each tiny checkpoint with transformers' logits for it."""
    folder = tiny_folder(request.param)
    return folder, reference_logits(folder)


def test_prefill_and_decode_logits_match_transformers(tiny):
    folder, expected = tiny
    with torch.inference_mode():
        ours = teacher_forced(our_session(folder, "checkpoint", nctx=len(SEQUENCE), max_tokens=PROMPT))
    torch.testing.assert_close(ours, expected[PROMPT - 1:], atol=1e-4, rtol=1e-4)
    assert expected.std() > 0.5   # logits that differ visibly: the comparison means something


def test_a_second_multi_token_call_attends_to_the_cache(tiny):
    """A call of several tokens after earlier ones uses the explicit causal mask."""
    folder, expected = tiny
    with torch.inference_mode():
        session = our_session(folder, "checkpoint", nctx=len(SEQUENCE), max_tokens=PROMPT)
        session.forward(SEQUENCE[:5], Sampler())
        session.forward(SEQUENCE[5:], Sampler())
        torch.testing.assert_close(session.logits()[0], expected[-1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("blocks, past", [(1, 1), (2, 5)])
def test_rope_tables_past_their_first_rows_are_transformers_own(blocks, past):
    """The tables are made ROPE_ROWS positions at a time: every later block holds its own
    positions, a last block of one position too."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from executor.model import ROPE_ROWS, rope_tables
    nctx = blocks * ROPE_ROWS + past
    config = LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=nctx, rope_theta=10000.0)
    cos, sin = LlamaRotaryEmbedding(config)(torch.zeros(1, 1, 16), torch.arange(nctx)[None])
    ours = rope_tables(16, nctx, 10000.0, None, None, torch.device("cpu"), torch.float32)
    torch.testing.assert_close(ours[0], cos[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[1], sin[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_prompts_of_a_few_tokens_match_transformers(tiny, n):
    """A prefill whose queries all fall in the first key tile: with 2 tokens the mask hides one
    key from one query, the least it ever hides, and a mask skipped there changed every later
    word of a 2-token prompt ("Hello world")."""
    folder, expected = tiny
    with torch.inference_mode():
        session = our_session(folder, "checkpoint", nctx=len(SEQUENCE), max_tokens=PROMPT)
        session.forward(SEQUENCE[:n], Sampler())
        torch.testing.assert_close(session.logits()[0], expected[n - 1], atol=1e-4, rtol=1e-4)
        session.forward(SEQUENCE[n:n + 1], Sampler())      # decode reads the keys and values the prefill left
        torch.testing.assert_close(session.logits()[0], expected[n], atol=1e-4, rtol=1e-4)


# RoPE scaled as Llama 3.1 and 3.2 scale it (original_max_position_embeddings small enough that
# the scaled frequencies matter within SEQUENCE), linearly, and a head size other than d / nh
VARIANTS = {
    "llama3-rope": ("gqa-tied", dict(rope_parameters={
        "rope_type": "llama3", "rope_theta": 5000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16})),
    "linear-rope": ("mha-untied", dict(rope_parameters={"rope_type": "linear", "rope_theta": 5000.0, "factor": 2.0})),
    "wide-heads": ("mha-untied", dict(head_dim=32)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rope_scaling_and_head_size_match_transformers(variant, tmp_path, tiny_folder):
    name, overrides = VARIANTS[variant]
    folder = tiny_checkpoint(tmp_path, name, **overrides)
    expected = reference_logits(folder)
    plain = reference_logits(tiny_folder(name))
    assert (expected - plain).abs().max() > 0.01     # the variant changes the logits: the comparison means something
    ggufs = [checkpoint_to_gguf(folder, tmp_path / f"{keys}.gguf", linear_rope=keys)   # each way llama.cpp reads
             for keys in (("typed", "factor", "scale_linear") if variant == "linear-rope" else ("typed",))]
    for path, kind in ((folder, "checkpoint"), *((gguf, "gguf") for gguf in ggufs)):
        with torch.inference_mode():
            ours = teacher_forced(our_session(path, kind, nctx=len(SEQUENCE), max_tokens=PROMPT))
        torch.testing.assert_close(ours, expected[PROMPT - 1:], atol=1e-4, rtol=1e-4)


# config.json as transformers reads it, edited after save_pretrained: (checkpoint, edit, whether
# the edit changes transformers' logits). The edits are read as transformers reads them: swish is
# SiLU; a stored head is used though tie_word_embeddings is true; rope_scaling comes before
# rope_parameters (its theta then the top level's, else 10,000); a top-level
# original_max_position_embeddings comes before llama3's own, which defaults to the context.
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}
EDITS = {
    "swish": ("mha-untied", {"hidden_act": "swish"}, False),
    "tied-with-a-stored-head": ("mha-untied", {"tie_word_embeddings": True}, False),
    "rope-scaling-first": ("mha-untied", {"rope_scaling": {"rope_type": "linear", "factor": 4.0}}, True),
    "llama3-top-level-original": ("gqa-tied", {"rope_parameters": {**LLAMA3, "rope_theta": 5000.0,
                                                                   "original_max_position_embeddings": 64},
                                               "original_max_position_embeddings": 16}, True),
    "llama3-original-only-at-the-top-level": ("gqa-tied", {"rope_parameters": {**LLAMA3, "rope_theta": 5000.0},
                                                           "original_max_position_embeddings": 16}, True),
    "llama3-original-from-the-context": ("gqa-tied", {"rope_parameters": {**LLAMA3, "rope_theta": 5000.0},
                                                      "max_position_embeddings": 16}, True),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_config_keys_read_as_transformers_reads_them(edit, tmp_path, tiny_folder):
    name, keys, changes = EDITS[edit]
    folder = tiny_folder(name)
    for file in folder.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    (tmp_path / "config.json").write_text(json.dumps(json.loads((folder / "config.json").read_text()) | keys))
    expected = reference_logits(tmp_path)
    assert ((expected - reference_logits(folder)).abs().max() > 0.01) == changes
    with torch.inference_mode():
        ours = teacher_forced(our_session(tmp_path, "checkpoint", nctx=len(SEQUENCE), max_tokens=PROMPT))
    torch.testing.assert_close(ours, expected[PROMPT - 1:], atol=1e-4, rtol=1e-4)


def test_mistral_without_a_sliding_window_matches_transformers(tmp_path, capsys):
    """Mistral's network is Llama's where no sliding window limits attention: none, or one as
    long as the context."""
    from transformers import MistralConfig, MistralForCausalLM
    torch.manual_seed(3)
    config = MistralConfig(**{**TINY["gqa-tied"], "max_position_embeddings": 64, "rope_theta": 5000.0,
                              "initializer_range": 0.25, "sliding_window": None})
    MistralForCausalLM(config).eval().save_pretrained(tmp_path)
    expected = reference_logits(tmp_path)
    with torch.inference_mode():
        ours = teacher_forced(our_session(tmp_path, "checkpoint", nctx=len(SEQUENCE), max_tokens=PROMPT))
    torch.testing.assert_close(ours, expected[PROMPT - 1:], atol=1e-4, rtol=1e-4)
    config = tmp_path / "config.json"
    windowed = json.loads(config.read_text())
    for window in (64, 4096):       # the context is 64 positions: no position falls outside
        config.write_text(json.dumps(windowed | {"sliding_window": window}))
        torch.testing.assert_close(reference_logits(tmp_path), expected, atol=0, rtol=0)
        open_source(Source(tmp_path, "checkpoint"))
    config.write_text(json.dumps(windowed | {"sliding_window": 4}))
    assert (reference_logits(tmp_path) - expected).abs().max() > 1e-3
    with pytest.raises(ArenaError, match="sliding_window=4 is not supported: attention here covers every position, so the window must be null or a whole number of at least the context.s 64 positions"):
        open_source(Source(tmp_path, "checkpoint"))
    del windowed["sliding_window"]          # transformers' MistralConfig then windows at 4096
    config.write_text(json.dumps(windowed | {"max_position_embeddings": 8192}))
    with pytest.raises(ArenaError, match=r"sliding_window=4096 \(Mistral default\) is not supported"):
        open_source(Source(tmp_path, "checkpoint"))


@pytest.mark.parametrize("tile", [2, 3, 4])
def test_attention_over_key_tiles_gives_the_same_logits(tiny, tile):
    """Keys a few at a time (running max and sum per query), with the causal mask inside tiles,
    in one prefill, in two multi-token calls, and in decode."""
    folder, expected = tiny
    with torch.inference_mode():
        weights = assemble(open_source(Source(folder, "checkpoint")), torch.float32, torch.device("cpu"))
        session = Session(build_model(weights, len(SEQUENCE)), len(SEQUENCE), PROMPT, tile=tile)
        assert session.plan(PROMPT).dims["tile"] == tile
        torch.testing.assert_close(teacher_forced(session), expected[PROMPT - 1:], atol=1e-4, rtol=1e-4)
        session.reset()
        session.forward(SEQUENCE[:5], Sampler())
        session.forward(SEQUENCE[5:], Sampler())
        torch.testing.assert_close(session.logits()[0], expected[-1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_decode_and_a_prefill_chunk_allocate_nothing_outside_the_arena(tiny_folder, dtype):
    """After a warm-up (the arena, each call size's views), a decode step and a multi-token
    call after earlier ones, over several key tiles, allocate no byte: every activation,
    scratch included, is a view of the arena. In bf16 and f16 too, where torch converts rows
    to float32 in ops of mixed dtypes (the norms'), and with random sampling. The one exception:
    in bf16 and f16, a multi-token call's matrix products (oneDNN's, on CPUs with the instructions
    it takes for that dtype: bf16 on AVX2, f16 with AVX512-FP16) allocate scratch within each call."""
    with torch.inference_mode():
        weights = assemble(open_source(Source(tiny_folder("gqa-tied"), "checkpoint")), dtype,
                           torch.device("cpu"))
        session = Session(build_model(weights, 32), 32, 6, tile=4)
        for ids in (SEQUENCE[:6], [3], SEQUENCE[:5]):
            session.forward(ids, Sampler())
        assert bytes_allocated(lambda: session.forward([3], Sampler())) == []
        made = allocations(lambda: session.forward(SEQUENCE[:6], Sampler()))
        assert outside_products(made) == [] and (dtype != torch.float32 or made == [])
        sampler = Sampler(0.8, 20, 0.9, seed=1)   # random sampling works in the arena too
        session.forward([4], sampler)
        assert bytes_allocated(lambda: session.forward([5], sampler)) == []
        assert session.length == 21


def test_the_same_weights_from_gguf_give_the_same_logits(tiny, tmp_path):
    """GGUF path: llama.cpp's Q/K permutation undone on load, tied and untied outputs."""
    folder, expected = tiny
    path = checkpoint_to_gguf(folder, tmp_path / "tiny.gguf")
    with torch.inference_mode():
        ours = teacher_forced(our_session(path, "gguf", nctx=len(SEQUENCE), max_tokens=PROMPT))
    torch.testing.assert_close(ours, expected[PROMPT - 1:], atol=1e-4, rtol=1e-4)


def test_sharded_checkpoint_loads_like_a_single_file(tmp_path):
    whole = tiny_checkpoint(tmp_path / "whole", "gqa-tied")
    sharded = tiny_checkpoint(tmp_path / "sharded", "gqa-tied", shard_bytes=60_000)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    a, b = (open_source(Source(folder, "checkpoint")) for folder in (whole, sharded))
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        assert torch.equal(a.get(name), b.get(name)), name


def test_other_safetensors_files_beside_model_safetensors_are_left_alone(tiny_folder, tmp_path):
    """As transformers loads a folder: model.safetensors, not another file of the same tensors
    (an EMA copy); with neither it nor an index, a tensor in two files is refused by name."""
    from safetensors.torch import load_file, save_file
    folder = tmp_path / "two"
    shutil.copytree(tiny_folder("mha-untied"), folder)
    weights = load_file(folder / "model.safetensors")
    save_file({k: -v for k, v in weights.items()}, folder / "model_ema.safetensors")
    with torch.inference_mode():
        ours = teacher_forced(our_session(folder, "checkpoint", nctx=len(SEQUENCE), max_tokens=PROMPT))
    torch.testing.assert_close(ours, reference_logits(folder)[PROMPT - 1:], atol=1e-4, rtol=1e-4)
    (folder / "model.safetensors").rename(folder / "weights.safetensors")
    with pytest.raises(ArenaError, match="tensor '.*' is in both model_ema.safetensors and weights.safetensors"):
        open_source(Source(folder, "checkpoint"))


def test_a_llama_model_saved_without_its_head_loads_as_transformers_loads_it(tmp_path):
    """A bare LlamaModel names its tensors without "model." and stores no head: with a tied
    head it is a whole language model to transformers, and to us; untied, its head is missing."""
    from transformers import LlamaConfig, LlamaModel
    torch.manual_seed(5)
    config = LlamaConfig(**{**TINY["gqa-tied"], "max_position_embeddings": 64, "initializer_range": 0.25})
    LlamaModel(config).eval().save_pretrained(tmp_path)
    with torch.inference_mode():
        ours = teacher_forced(our_session(tmp_path, "checkpoint", nctx=len(SEQUENCE), max_tokens=PROMPT))
    torch.testing.assert_close(ours, reference_logits(tmp_path)[PROMPT - 1:], atol=1e-4, rtol=1e-4)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"tie_word_embeddings": False}))
    with pytest.raises(ArenaError, match=r"no safetensors file holds tensor 'lm_head.weight' \(tie_word_embeddings "
                                         r"is not true\)"):
        assemble(open_source(Source(tmp_path, "checkpoint")), torch.float32, torch.device("cpu"))


def test_a_large_rms_norm_eps_is_read_in_every_dtype(tmp_path):
    """An eps of 0.5 moves every norm visibly (1e-5 moves none): the compiled norm (float32,
    bf16) and torch's (float16, and every CUDA run) against transformers in the same dtype."""
    folder = tiny_checkpoint(tmp_path / "eps", "gqa-tied", rms_norm_eps=0.5)
    expected = reference_logits(folder)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert_as_close_as_transformers_own(folder, expected, dtype)


def test_a_call_past_the_context_is_refused_before_it_runs(tiny):
    folder, _ = tiny
    with torch.inference_mode():
        session = our_session(folder, "checkpoint", nctx=8, max_tokens=8)
        session.forward(SEQUENCE[:8], Sampler())
        with pytest.raises(ArenaError, match=r"--nctx: 8 positions used plus 1 new exceed the context of 8"):
            session.forward(SEQUENCE[8:9], Sampler())


def test_a_stored_head_is_used_where_the_config_ties_it(tiny_folder, tmp_path):
    """transformers ties the head to the embedding only where the file stores none."""
    folder = tiny_folder("mha-untied")
    shutil.copytree(folder, tmp_path / "tied")
    config = tmp_path / "tied" / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"tie_word_embeddings": True}))
    expected = reference_logits(tmp_path / "tied")
    torch.testing.assert_close(expected, reference_logits(folder))     # transformers kept the stored head
    with torch.inference_mode():
        ours = teacher_forced(our_session(tmp_path / "tied", "checkpoint", nctx=len(SEQUENCE), max_tokens=PROMPT))
    torch.testing.assert_close(ours, expected[PROMPT - 1:], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_a_checkpoint_stored_in_16_bits_gives_transformers_logits(tiny_folder, tmp_path, dtype):
    """Most checkpoints are stored in 16 bits: each tensor read as its own type, run in float32."""
    folder = copy_with_tensors(tiny_folder("mha-untied"), tmp_path / "stored",
                               lambda tensors: {name: t.to(dtype) for name, t in tensors.items()})
    expected = reference_logits(folder)
    assert (expected - reference_logits(tiny_folder("mha-untied"))).abs().max() > 1e-3   # the rounding shows
    with torch.inference_mode():
        ours = teacher_forced(our_session(folder, "checkpoint", nctx=len(SEQUENCE), max_tokens=PROMPT))
    torch.testing.assert_close(ours, expected[PROMPT - 1:], atol=1e-4, rtol=1e-4)


def test_a_shard_the_index_lists_and_the_folder_lacks_is_named_when_it_is_opened(tmp_path):
    from executor.checkpoint import Checkpoint
    folder = tiny_checkpoint(tmp_path / "sharded", "mha-untied", shard_bytes=40_000)
    last = sorted(folder.glob("model-*.safetensors"))[-1]
    last.unlink()
    with pytest.raises(ArenaError, match=f"model.safetensors.index.json: lists shard '{last.name}', which is missing"):
        Checkpoint(folder)


def test_a_file_cut_short_after_it_was_opened_is_named(tiny_folder, tmp_path):
    """A file rewritten while it is read: its tensors past the new end are refused, not read as zeros."""
    from executor.checkpoint import Checkpoint
    shutil.copytree(tiny_folder("mha-untied"), tmp_path / "cut")
    checkpoint = Checkpoint(tmp_path / "cut")
    file = tmp_path / "cut" / "model.safetensors"
    os.truncate(file, file.stat().st_size - 1000)
    with pytest.raises(ArenaError, match="runs past the end of the file"):
        for name in checkpoint.files:
            checkpoint.get(name)


def test_a_nan_in_the_head_is_named_as_the_output_projection(tiny_folder, tmp_path):
    from executor.weights import not_finite
    folder = copy_with_tensors(tiny_folder("mha-untied"), tmp_path / "nan",
                               lambda tensors: tensors["lm_head.weight"][3, 5].fill_(float("nan")))
    weights = assemble(open_source(Source(folder, "checkpoint")), torch.float32, torch.device("cpu"))
    assert not_finite(weights) == ("the output projection", True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_16_bit_logits_are_as_close_to_float32_as_transformers_own(tiny, dtype):
    """bf16 runs the compiled kernels on CPU; f16 runs torch's own operations (the norm, RoPE,
    SiLU), the path CUDA takes too: each against transformers in the same dtype."""
    assert_as_close_as_transformers_own(*tiny, dtype)


def assert_as_close_as_transformers_own(folder, expected, dtype):
    """Our logits in `dtype` within 1.5 times transformers' own mean error in it, against its
    float32 `expected` (in float32, where transformers' error is 0, within 1e-5)."""
    with torch.inference_mode():
        ours = teacher_forced(our_session(folder, "checkpoint", len(SEQUENCE), PROMPT, dtype=dtype))
        theirs = hf_model(folder).to(dtype)(torch.tensor([SEQUENCE])).logits[0].float()
    our_error = (ours - expected[PROMPT - 1:]).abs().mean()
    their_error = (theirs - expected).abs()[PROMPT - 1:].mean()
    assert our_error < max(1.5 * their_error, 1e-5), dtype


def test_sampling_is_reproducible_with_a_seed_and_varies_without(tiny):
    from executor.generate import generate
    folder, _ = tiny

    def sample(seed, temperature=1.5, top_k=0, top_p=1.0):
        with torch.inference_mode():
            session = our_session(folder, "checkpoint", nctx=32, max_tokens=PROMPT)
            return generate(session, SEQUENCE[:PROMPT], 20, Sampler(temperature, top_k, top_p, seed)).tokens

    assert sample(1) == sample(1)
    assert len({tuple(sample(seed)) for seed in range(4)}) > 1
    # top-k 1 and a tiny top-p both leave only the likeliest token: greedy
    greedy = sample(None, temperature=0)
    assert sample(3, top_k=1) == greedy
    assert sample(3, top_p=1e-6) == greedy


@pytest.mark.gpu
def test_cuda_logits_match_transformers(tiny):
    folder, expected = tiny
    with torch.inference_mode():
        ours = teacher_forced(our_session(folder, "checkpoint", len(SEQUENCE), PROMPT, device="cuda"))
    torch.testing.assert_close(ours.cpu(), expected[PROMPT - 1:], atol=1e-3, rtol=1e-3)


def _rss_file_bytes() -> int:
    status = open("/proc/self/status").read()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("RssFile:"))) * 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's /proc")
def test_loaded_weights_leave_no_pages_of_the_file_resident(tmp_path):
    """Views of safe_open's memory map kept the whole file in the process's resident memory beside
    the fused and cast copies made of it: runs of checkpoint folders went past their --budget."""
    folder = tiny_checkpoint(tmp_path / "wide", "gqa-tied", intermediate_size=16384, num_hidden_layers=1)
    size = (folder / "model.safetensors").stat().st_size
    source = open_source(Source(folder, "checkpoint"))
    before = _rss_file_bytes()
    weights = assemble(source, torch.float32, torch.device("cpu"))
    assert weights.nbytes > size / 2 and _rss_file_bytes() - before < size / 10


def test_a_matrix_is_read_a_slab_of_rows_at_a_time_into_its_place(tiny_folder, monkeypatch):
    """Read whole, a tensor stored in f32 and run in bf16 stood beside its cast copy (125 MiB
    above the estimate for a 128,256-token embedding); read in slabs, the same weights."""
    from executor import weights as weights_module
    source = open_source(Source(tiny_folder("gqa-tied"), "checkpoint"))
    whole = assemble(source, torch.bfloat16, torch.device("cpu"))
    read, rows = [], source.rows

    def counted(name, start, stop):
        if len(source.shape(name)) == 2:     # (the norms are vectors)
            read.append((stop if stop is not None else source.shape(name)[0]) - start)
        return rows(name, start, stop)

    monkeypatch.setattr(weights_module, "SLAB_BYTES", 4 * 64 * 3)     # three rows of 64 f32 at a time
    monkeypatch.setattr(source, "rows", counted)
    slabs = assemble(source, torch.bfloat16, torch.device("cpu"))
    assert max(read) <= 3 and torch.equal(slabs.output, whole.output)
    for a, b in zip(slabs.layers, whole.layers):
        assert torch.equal(a.wqkv, b.wqkv) and torch.equal(a.w_gate_up, b.w_gate_up) and torch.equal(a.w_down, b.w_down)


@pytest.mark.parametrize("name", ["model.layers.0.input_layernorm.weight", "model.layers.0.self_attn.k_proj.weight"])
def test_a_tensor_stored_as_a_scalar_names_its_shape(tiny_folder, tmp_path, name):
    folder = copy_with_tensors(tiny_folder("gqa-tied"), tmp_path / "scalar",
                               lambda tensors: tensors.update({name: torch.tensor(1.0)}))
    with pytest.raises(ArenaError, match=rf"tensor '{name}' has shape \(\), expected \("):
        assemble(open_source(Source(folder, "checkpoint")), torch.float32, torch.device("cpu"))


def test_the_arena_is_resident_once_allocated():
    """Its pages are touched when it is made, not by the first call: a KV cache of thousands of
    positions, whose keys lie nctx apart, made the first call 10-35 times slower than the rest."""
    import psutil

    from executor.session import allocate_arena
    process = psutil.Process()
    before = process.memory_info().rss
    arena = allocate_arena(256 << 20, torch.device("cpu"))
    assert process.memory_info().rss - before >= 0.9 * arena.numel()


@pytest.mark.parametrize("nctx, max_tokens", [(64, 4), (16, 20), (16, 0)])
def test_a_session_past_its_models_rope_tables_is_refused_when_made(tiny_folder, nctx, max_tokens):
    """A model built for 32 positions, a session of 64: it failed midway, at position 32."""
    with torch.inference_mode():
        weights = assemble(open_source(Source(tiny_folder("gqa-tied"), "checkpoint")), torch.float32,
                           torch.device("cpu"))
        with pytest.raises(ArenaError, match=rf"a session of {nctx} positions and calls of {max_tokens} tokens: "
                                             r"1 <= calls <= positions <= the 32 positions the model was built for"):
            Session(build_model(weights, 32), nctx, max_tokens)
