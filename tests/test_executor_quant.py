"""Native GGUF weights: Q4_0, Q4_1 and Q8_0 blocks read as the gguf package dequantizes them,
packed for torch's int4 kernel, their products and embedding rows against the dequantized
weights, tensor-parallel slices, and `arena run --weights`."""
import json

import pytest
import torch
from gguf import GGMLQuantizationType as Q

from executor.gguf_file import GGUFFile
import executor.quant as quant
from executor.quant import GROUP, ROWS, Blocks, Int4, Packed, _unpack_rows, lookup, matmul, pack, workspace_nbytes
from executor.weights import assemble
from llama_arena.cli import main
from planner.shards import shards

from checkpoints import PROMPT, SEQUENCE, checkpoint_to_gguf, teacher_forced
from executor.model import build_model
from executor.sampling import Sampler
from executor.session import Session

NATIVE = [Q.Q4_0, Q.Q4_1, Q.Q8_0]
NAMES = ["model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight",
         "model.layers.1.self_attn.k_proj.weight", "model.embed_tokens.weight"]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def files(tiny_folder, tmp_path_factory):
    """qtype -> the tiny untied checkpoint (sizes multiples of 32) as a GGUF file of that type."""
    folder, out = tiny_folder("mha-untied"), tmp_path_factory.mktemp("native")
    return {q: GGUFFile(checkpoint_to_gguf(folder, out / f"{q.name}.gguf", q)) for q in NATIVE}


@pytest.mark.parametrize("qtype", NATIVE, ids=lambda q: q.name)
def test_blocks_are_the_dequantized_tensor(files, qtype):
    """Values times scales plus offsets, in the layout get() returns (Q and K unpermuted)."""
    file = files[qtype]
    for name in NAMES:
        b = file.blocks(name)
        assert b.kind == qtype.name
        assert torch.equal(b.dequantize(), file.get(name)), name


def test_int4_layout_is_what_lookups_unpack():
    """Embedding rows of a packed table are read from torch's packed bytes directly: every row
    of a random 4-bit matrix comes back with scale 1 and zero 8 (the weight is then q)."""
    q = torch.randint(0, 16, (96, 64), generator=torch.Generator().manual_seed(0))
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)
    scales = torch.tensor([1.0, 8.0]).expand(64 // GROUP, 96, 2).contiguous()
    assert torch.equal(_unpack_rows(Int4(packed, scales), torch.arange(96)), q.float())


@pytest.mark.parametrize("qtype", NATIVE, ids=lambda q: q.name)
def test_native_products_and_rows_equal_the_dequantized_ones(files, qtype):
    """float32 scales: the products within 1e-5 of the largest, the rows within float32 rounding.
    bf16 scales and activations: within 1% of the largest product (scales keep 8 bits)."""
    b = files[qtype].blocks("model.layers.0.mlp.up_proj.weight")    # (96, 64)
    w = b.dequantize()
    n = 2 * ROWS + 3   # the products and lookups go ROWS rows at a time
    x = torch.randn(n, 80, generator=torch.Generator().manual_seed(1))[:, :64]   # a strided view, like t.q
    tokens = torch.arange(96, dtype=torch.int32).repeat(3)[:n].flip(0)
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
        packed = pack(b, dtype)
        assert packed.shape == (64, 96) and packed.dtype == dtype
        expected = x @ w.t()
        out = torch.full((n, 96), 1.0, dtype=dtype)
        matmul(x.to(dtype), packed, out, accumulate=True)
        assert (out.float() - 1 - expected).abs().max() <= tolerance * expected.abs().max()
        matmul(x.to(dtype), packed, out)
        assert (out.float() - expected).abs().max() <= tolerance * expected.abs().max()
        rows = torch.empty(n, 64, dtype=dtype)
        lookup(packed, tokens, rows)
        torch.testing.assert_close(rows, w[tokens.long()].to(dtype), rtol=0, atol=1e-6 if dtype == torch.float32 else 0.01)


def test_q8_0_is_two_exact_4_bit_halves():
    """q = 16 hi + lo for every int8 value: the two parts sum to d q exactly in float32."""
    q = torch.arange(-128, 128, dtype=torch.int8).repeat(32, 1)   # (32, 256)
    b = Blocks("Q8_0", q, torch.full((32, 8), 0.5), None)
    packed = pack(b, torch.float32)
    assert len(packed.parts) == 2
    total = sum(_unpack_rows(part, torch.arange(32)) for part in packed.parts)
    assert torch.equal(total, b.dequantize())


@pytest.mark.parametrize("qtype", NATIVE, ids=lambda q: q.name)
def test_native_model_logits_equal_the_dequantized_model(files, qtype):
    """The whole model, float32 scales: every logit within 1e-4 of the dequantized run's largest."""
    file = files[qtype]
    with torch.inference_mode():
        native = assemble(file, torch.float32, CPU, native=True)
        plain = assemble(file, torch.float32, CPU)
        assert isinstance(native.layers[0].wqkv, Packed) and isinstance(native.embedding, Packed)
        assert native.nbytes < plain.nbytes
        got, expected = (teacher_forced(Session(build_model(w, len(SEQUENCE)), len(SEQUENCE), PROMPT))
                         for w in (native, plain))
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_native_kernels_hold_at_most_the_workspace_outside_the_arena(files, dtype, monkeypatch):
    """Packed weights: torch's int4 kernel returns new tensors, so products (and the lookups of a
    packed embedding) hold memory outside the arena. Every byte a prefill of 2 ROWS + 5 tokens and
    a decode step allocate is made inside one ROWS-row product or lookup, and no such call
    makes more than workspace_nbytes, which the estimate adds to the total."""
    from torch.profiler import ProfilerActivity, profile, record_function

    def labelled(f):
        def run(*args):
            with record_function("packed"):
                f(*args)
        return run
    for name in ("_packed_matmul", "_packed_lookup"):
        monkeypatch.setattr(quant, name, labelled(getattr(quant, name)))
    prompt = torch.randint(0, 128, (2 * ROWS + 5,), generator=torch.Generator().manual_seed(2)).tolist()
    with torch.inference_mode():
        weights = assemble(files[Q.Q8_0], dtype, CPU, native=True)
        session = Session(build_model(weights, len(prompt) + 1), len(prompt) + 1, len(prompt))
        session.forward(SEQUENCE, Sampler())
        session.reset()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            session.forward(prompt, Sampler())
            session.forward([3], Sampler())
    calls = {}
    for e in prof.events():
        if e.self_cpu_memory_usage > 0 and e.name != "[memory]":
            call = e
            while call is not None and call.name != "packed":
                call = call.cpu_parent
            assert call is not None, f"{e.name} allocated outside a packed product or lookup"
            calls[id(call)] = calls.get(id(call), 0) + e.self_cpu_memory_usage
    layers = weights.dims()["nlayers"]   # prefill: 3 chunks of 4 products a layer and a lookup, one head; decode
    assert len(calls) == 3 * (4 * layers + 1) + 1 + (4 * layers + 2)
    assert max(calls.values()) <= workspace_nbytes(weights.dims(), dtype)


def test_slices_keep_whole_groups_or_fall_back():
    b = Blocks("Q4_1", torch.zeros(32, 128, dtype=torch.int8), torch.ones(32, 4), torch.zeros(32, 4))
    assert b.cols(slice(32, 96)).q.shape == (32, 64) and b.cols(slice(32, 96)).d.shape == (32, 2)
    assert b.cols(slice(16, 96)) is None


def test_tensor_parallel_ranks_pack_what_their_slices_allow(tiny_folder, tmp_path):
    """gqa-tied over 2 ranks: each rank's Q|K|V is 48 rows and its FFN 80 columns, which split
    the kernel's 32-row blocks and 32-column groups: those are dequantized; the output
    projection's 32 columns and the tied head pack. The ranks' products sum to the whole."""
    file = GGUFFile(checkpoint_to_gguf(tiny_folder("gqa-tied"), tmp_path / "g.gguf", Q.Q4_1))
    c = file.config
    with torch.inference_mode():
        whole = assemble(file, torch.float32, CPU, native=True)
        ranks = [assemble(file, torch.float32, CPU, shard=s, native=True) for s in shards(c.nh, c.nkvh, c.di, 2)]
    for rank in ranks:
        layer = rank.layers[0]
        assert isinstance(layer.wo, Packed) and isinstance(rank.output, Packed)
        assert isinstance(layer.wqkv, torch.Tensor) and isinstance(layer.w_down, torch.Tensor)
    x = torch.randn(2, c.nh * c.dh, generator=torch.Generator().manual_seed(2))
    parts = []
    for rank, s in zip(ranks, shards(c.nh, c.nkvh, c.di, 2)):
        out = torch.empty(2, c.d)
        cols = slice(s.q_heads[0] * c.dh, (s.q_heads[-1] + 1) * c.dh)
        matmul(x[:, cols].contiguous(), rank.layers[0].wo, out)
        parts.append(out)
    expected = torch.empty(2, c.d)
    matmul(x, whole.layers[0].wo, expected)
    torch.testing.assert_close(parts[0] + parts[1], expected, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    """The embedded SmolLM2 file, its tokenizer, and its weights native (bf16) and dequantized (f32)."""
    from executor.source import Source, open_source
    from executor.tokenizer import from_gguf
    file = open_source(Source(smollm2_path, "gguf"))
    with torch.inference_mode():
        return file, from_gguf(file), assemble(file, torch.bfloat16, CPU, native=True), assemble(file, torch.float32, CPU)


def near_tie(logits: torch.Tensor, a: int, b: int) -> bool:
    return abs(logits[a] - logits[b]) <= 0.01 * logits.max().abs()


@pytest.mark.slow
def test_smollm2_native_tokens_hold(smollm2):
    """3 prompts x 32 greedy tokens, both runs fed the dequantized run's tokens: the native run
    chooses the same token, or the two choices are within 1% in both runs' logits (a near tie)."""
    from executor.sampling import Sampler
    _, tokenizer, native, plain = smollm2
    differing = 0
    for text in ("The capital of France is", "def fibonacci(n):", "What is the tallest mountain in the world?"):
        ids = tokenizer.encode(text)
        sessions = [Session(build_model(w, len(ids) + 32), len(ids) + 32, len(ids)) for w in (native, plain)]
        call = ids
        with torch.inference_mode():
            for _ in range(32):
                ours, reference = (s.forward(call, Sampler()) for s in sessions)
                if ours != reference:
                    differing += 1
                    assert all(near_tie(s.logits()[0], ours, reference) for s in sessions), (text, call)
                call = [reference]
    assert differing <= 3   # measured: docs/executor.md


@pytest.mark.slow
def test_smollm2_native_weights_fit_the_file(smollm2):
    file, _, native, _ = smollm2
    tensor_bytes = sum(t.nbytes for t in file.tensors.values())
    assert native.nbytes <= 1.15 * tensor_bytes
    assert file.native_nbytes(torch.bfloat16) == native.nbytes   # arena run's pre-flight estimate
    assert isinstance(native.output, Packed) and native.embedding is native.output   # tied, held once


@pytest.mark.slow
def test_cli_weights_option(capsys):
    run = ["run", "--prompt", "The capital of France is", "--max-new-tokens", "4", "--json"]
    assert main(run) == 0
    native = json.loads(capsys.readouterr().out)    # native is the default for GGUF files
    assert native["weights"] == "native" and native["dtype"] == "bf16"
    assert native["estimate"]["weight_bytes"] == native["weight_bytes"]
    assert native["estimate"]["total_bytes"] == native["total_bytes"] == \
        native["weight_bytes"] + native["arena"] + native["workspace_bytes"] + native["runtime_bytes"]
    assert native["workspace_bytes"] > 0
    assert main([*run, "--weights", "f32"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["weights"] == "f32" and plain["dtype"] == "f32" and plain["workspace_bytes"] == 0
    assert native["weight_bytes"] < plain["weight_bytes"] / 5
    assert main([*run, "--weights", "f32", "--dtype", "bf16"]) == 2
    assert capsys.readouterr().err.strip() == ("arena: error: --weights f32 --dtype bf16: dequantized weights run "
                                               "in their own dtype; give one of the two")
