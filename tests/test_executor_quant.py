"""Native GGUF weights: Q4_0, Q4_1 and Q8_0 blocks held as the file stores them, the kernels'
16-bit rows of x, their products and embedding rows against the dequantized weights, tensor-
parallel slices, and `arena run --weights`."""
import json

import pytest
import torch
from gguf import GGMLQuantizationType as Q

from executor.gguf_file import GGUFFile
import executor.quant as quant
from executor import _kernels
from executor.quant import GROUP, ROWS, Packed, lookup, matmul
from executor.weights import assemble
from llama_arena.cli import main
from planner.estimate import workspace_bytes
from arena_checks import allocations, outside_products
from planner.shards import shards

from checkpoints import PROMPT, SEQUENCE, checkpoint_to_gguf, teacher_forced
from executor.model import build_model
from executor.sampling import Sampler
from executor.session import Session

NATIVE = [Q.Q4_0, Q.Q4_1, Q.Q8_0]
NAMES = ["model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight",
         "model.layers.1.self_attn.k_proj.weight", "model.embed_tokens.weight"]
CPU = torch.device("cpu")
DTYPE_NAMES = {torch.float32: "f32", torch.bfloat16: "bf16"}


@pytest.fixture(scope="module")
def files(tiny_folder, tmp_path_factory):
    """qtype -> the tiny untied checkpoint (sizes multiples of 32) as a GGUF file of that type."""
    folder, out = tiny_folder("mha-untied"), tmp_path_factory.mktemp("native")
    return {q: GGUFFile(checkpoint_to_gguf(folder, out / f"{q.name}.gguf", q)) for q in NATIVE}


@pytest.mark.parametrize("qtype", NATIVE, ids=lambda q: q.name)
def test_blocks_are_the_dequantized_tensor(files, qtype):
    """The kernels' rows of the file's blocks, in the layout get() returns (Q and K unpermuted),
    are the gguf package's dequantized tensor exactly; the blocks take the file's bytes."""
    file = files[qtype]
    for name in NAMES:
        b = file.blocks(name, torch.float32)
        assert b.kind == qtype.name and b.nbytes() == file.tensors[file.stored_name(name)].nbytes
        assert torch.equal(b.dequantize(), file.get(name)), name


def quantized_rows(x: torch.Tensor):
    """The kernels' 16-bit rows, computed with torch: per block of 32, e = max |x| / 32767 and
    q = x 32767 / max |x| rounded to nearest (ties to even)."""
    blocks = x.reshape(len(x), -1, GROUP)
    amax = blocks.abs().amax(-1, keepdim=True)
    q = torch.round(blocks * torch.where(amax > 0, 32767 / amax, 0)).to(torch.int16)
    return amax / 32767, q


@pytest.mark.parametrize("qtype", NATIVE, ids=lambda q: q.name)
def test_native_products_are_the_weights_times_the_16_bit_rows(files, qtype):
    """A product equals the dequantized weights times x as its 16-bit rows stand for it, within
    float32 rounding, so it is off x @ w by at most half a step of x per value; f32 and bf16 runs,
    written or added, x a strided view, more than ROWS rows, with the AVX2 code and with the
    plain C that other CPUs run. Lookups return exact rows."""
    b = files[qtype].blocks("model.layers.0.mlp.up_proj.weight", torch.float32)    # (96, 64)
    w = b.dequantize()
    n = 2 * ROWS + 3   # the products and lookups go ROWS rows at a time
    x = torch.randn(n, 80, generator=torch.Generator().manual_seed(1))[:, :64]   # a strided view, like t.q
    tokens = torch.arange(96, dtype=torch.int32).repeat(3)[:n].flip(0)
    for dtype, avx2 in ((torch.float32, True), (torch.bfloat16, True), (torch.float32, False)):
        previous = _kernels.use_avx2(avx2)
        packed = Packed(b.kind, b.blocks, dtype)   # b.blocks: already in groups
        assert packed.shape == (64, 96) and packed.dtype == dtype
        xd = x.to(dtype)
        e, q = quantized_rows(xd.float())
        expected = (e * q).reshape(n, 64).double() @ w.double().t()
        half_steps = (e / 2 * w.abs().reshape(96, 1, -1, GROUP).sum(-1).permute(1, 2, 0)).sum(1)   # (n, 96)
        assert ((xd.double() @ w.double().t() - expected).abs() <= half_steps * (1 + 1e-5)).all()
        tolerance = (1e-5 if dtype == torch.float32 else 1e-2) * expected.abs().max()
        out = torch.full((n, 96), 1.0, dtype=dtype)
        matmul(xd, packed, out, accumulate=True)
        assert (out.double() - 1 - expected).abs().max() <= tolerance
        matmul(xd, packed, out)
        assert (out.double() - expected).abs().max() <= tolerance
        rows = torch.empty(n, 64, dtype=dtype)
        lookup(packed, tokens, rows)
        _kernels.use_avx2(previous)
        assert torch.equal(rows, w[tokens.long()].to(dtype))


@pytest.mark.parametrize("qtype", NATIVE, ids=lambda q: q.name)
@pytest.mark.parametrize("width", [256, 288, 576, 1536])
def test_grouped_blocks_hold_the_file_blocks_and_their_products(qtype, width):
    """Widths of whole groups of 8 blocks and with blocks left over (288 = 8 + 1 blocks, SmolLM2's
    576 = 2 groups + 2): the kernels' groups give the file's blocks back byte for byte and the
    dequantized tensor exactly, and the products, with AVX2 and in plain C, equal the dequantized
    weights times x's 16-bit rows within float32 rounding, at 1 row (decode) and at 6 (tiles of 4)."""
    import numpy as np
    from gguf import quants
    rng = np.random.default_rng(width)
    file_blocks = torch.from_numpy(quants.quantize(rng.standard_normal((40, width), dtype=np.float32), qtype))
    w = torch.from_numpy(quants.dequantize(file_blocks.numpy(), qtype))
    packed = Packed.from_file(qtype.name, file_blocks, torch.float32)
    if width >= 256:
        assert not torch.equal(packed.blocks, file_blocks)   # reordered, the file's tensor untouched
    assert torch.equal(packed.file_blocks(), file_blocks) and torch.equal(packed.dequantize(), w)
    part = packed.rows(slice(3, 30)).cols(slice(32, width))   # regrouped from the slice's first block
    assert torch.equal(part.dequantize(), w[3:30, 32:])
    for n in (1, 6):
        x = torch.randn(n, width, generator=torch.Generator().manual_seed(n))
        e, q = quantized_rows(x)
        expected = (e * q).reshape(n, width).double() @ w.double().t()
        for avx2 in (True, False):
            previous = _kernels.use_avx2(avx2)
            out = torch.empty(n, 40)
            matmul(x, packed, out)
            _kernels.use_avx2(previous)
            assert (out.double() - expected).abs().max() <= 1e-5 * expected.abs().max(), (n, avx2)


@pytest.mark.parametrize("avx2", [True, False], ids=["avx2", "plain"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("n", [1, 3, 4, 5])
def test_float_products_of_a_few_rows_equal_torch(dtype, n, avx2):
    """Decode's products on float weights (kernels.c's matvec up to FLOAT_ROWS = 4 rows of x;
    5 rows take torch's path): x @ w within float32 rounding of the exact product, and within
    two bf16 roundings in bf16; written or added, x a strided view, widths that are and are not
    multiples of 32."""
    from executor.weights import operand
    gen = torch.Generator().manual_seed(n)
    for rows, cols in ((96, 64), (70, 200), (33, 1000)):
        w = operand(torch.randn(rows, cols, generator=gen).to(dtype))
        x = torch.randn(n, cols + 7, generator=gen)[:, :cols].to(dtype)
        base = torch.randn(n, rows, generator=gen).to(dtype)
        for accumulate in (False, True):
            out = base.clone()
            previous = _kernels.use_avx2(avx2)
            matmul(x, w, out, accumulate)
            _kernels.use_avx2(previous)
            added = base.double() if accumulate else 0
            exact = x.double() @ w.double() + added
            size = x.double().abs() @ w.double().abs() + abs(added)   # what rounding errors scale with
            step = 2 ** -7 if dtype == torch.bfloat16 else 1e-5
            assert ((out.double() - exact).abs() <= step * size).all(), (rows, cols, accumulate)


@pytest.mark.parametrize("qtype", NATIVE, ids=lambda q: q.name)
def test_lookups_of_blocks_with_infinite_or_nan_scales_are_gguf_values(qtype):
    """Q4_0's values are d (q - 8), as gguf's: d q - 8 d made an infinite scale's values NaN."""
    import numpy as np
    from gguf import quants
    blocks = quants.quantize(np.random.default_rng(0).standard_normal((3, 64), dtype=np.float32), qtype)
    for row, scale in enumerate((0x7C00, 0xFC00, 0x7E00)):      # f16 +inf, -inf, NaN, on a block of each row
        blocks[row, :2] = np.frombuffer(scale.to_bytes(2, "little"), np.uint8)
    with np.errstate(invalid="ignore"):     # gguf's own inf * 0
        expected = torch.from_numpy(quants.dequantize(blocks, qtype))
    packed = Packed.from_file(qtype.name, torch.from_numpy(blocks), torch.float32)
    for avx2 in (True, False):
        previous = _kernels.use_avx2(avx2)
        rows = torch.empty(3, 64)
        lookup(packed, torch.arange(3, dtype=torch.int32), rows)
        _kernels.use_avx2(previous)
        torch.testing.assert_close(rows, expected, equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("qtype", NATIVE, ids=lambda q: q.name)
def test_lookups_of_blocks_with_subnormal_scales_are_gguf_values(qtype):
    """Weights near 1e-3 have f16 scales under 2^-14, subnormal: widened by the plain C code
    (which every lookup takes, AVX2 or not), they must keep their value, not half of it."""
    import numpy as np
    from gguf import quants
    blocks = quants.quantize((np.random.default_rng(0).standard_normal((4, 256)) * 1e-3).astype(np.float32), qtype)
    expected = torch.from_numpy(quants.dequantize(blocks, qtype))
    packed = Packed.from_file(qtype.name, torch.from_numpy(blocks), torch.float32)
    assert torch.equal(packed.dequantize(), expected)
    for avx2 in (True, False):
        previous = _kernels.use_avx2(avx2)
        rows = torch.empty(4, 256)
        lookup(packed, torch.arange(4, dtype=torch.int32), rows)
        _kernels.use_avx2(previous)
        assert torch.equal(rows, expected), avx2


@pytest.mark.parametrize("qtype", NATIVE, ids=lambda q: q.name)
def test_products_of_rows_too_small_for_a_16_bit_scale_stay_near_the_weights_times_x(qtype):
    """A block of x under about 1e-34, where 32767 / max |x| overflows: every q was garbage."""
    import numpy as np
    from gguf import quants
    file_blocks = torch.from_numpy(quants.quantize(np.random.default_rng(1).standard_normal((8, 256), dtype=np.float32), qtype))
    packed = Packed.from_file(qtype.name, file_blocks, torch.float32)
    x = torch.randn(2, 256, generator=torch.Generator().manual_seed(0)) * 1e-36
    expected = x.double() @ packed.dequantize().double().t()
    for avx2 in (True, False):
        previous = _kernels.use_avx2(avx2)
        out = torch.empty(2, 8)
        matmul(x, packed, out)
        _kernels.use_avx2(previous)
        assert (out.double() - expected).abs().max() <= 1e-2 * expected.abs().max(), avx2


@pytest.mark.parametrize("avx2", [True, False], ids=["avx2", "plain"])
def test_float_products_in_bf16_round_to_nearest_even_as_torch(avx2):
    """out += x @ w with x = 1 and one column: the sum of two bf16 values is exact in float32, so
    the kernel's one rounding to bf16 must give torch's bits (truncating gave other bits on
    about half of them, each a small bias toward zero that no tolerance above sees)."""
    gen = torch.Generator().manual_seed(0)
    rows = 4096
    w, base = (torch.randn(rows, 1, generator=gen).to(torch.bfloat16) for _ in range(2))
    x, out = torch.ones(1, 1, dtype=torch.bfloat16), base.view(1, rows).clone()
    previous = _kernels.use_avx2(avx2)
    _kernels.matvec(True, w.data_ptr(), rows, 1, x.data_ptr(), 1, 1, out.data_ptr(), rows, True)
    _kernels.use_avx2(previous)
    assert torch.equal(out, (base.float() + w.float()).view(1, rows).to(torch.bfloat16))


def test_lookup_names_a_token_outside_the_table(files):
    b = files[Q.Q4_1].blocks("model.layers.0.mlp.up_proj.weight", torch.float32)
    with pytest.raises(IndexError, match="token id 96 is outside the 96 rows"):
        lookup(b, torch.tensor([3, 96]), torch.empty(2, 64))


@pytest.mark.parametrize("qtype", NATIVE, ids=lambda q: q.name)
def test_native_model_logits_equal_the_dequantized_model(files, qtype):
    """The whole model: every logit within 1e-3 of the dequantized run's largest (measured:
    2-3e-4 on this random model; 8-bit rows of x, as llama.cpp takes them, moved it by 4-5%)."""
    file = files[qtype]
    with torch.inference_mode():
        native = assemble(file, torch.float32, CPU, native=True)
        plain = assemble(file, torch.float32, CPU)
        assert isinstance(native.layers[0].wqkv, Packed) and isinstance(native.embedding, Packed)
        assert native.nbytes < plain.nbytes
        got, expected = (teacher_forced(Session(build_model(w, len(SEQUENCE)), len(SEQUENCE), PROMPT))
                         for w in (native, plain))
    assert (got - expected).abs().max() <= 1e-3 * expected.abs().max()


def test_a_native_prefill_one_row_past_a_chunk_matches_the_dequantized_model(files):
    """ROWS + 1 tokens: products take ROWS rows of x at a time, and the last chunk holds one row."""
    prompt = torch.randint(0, 128, (ROWS + 1,), generator=torch.Generator().manual_seed(1)).tolist()
    logits = []
    with torch.inference_mode():
        for native in (True, False):
            weights = assemble(files[Q.Q8_0], torch.float32, CPU, native=native)
            session = Session(build_model(weights, len(prompt)), len(prompt), len(prompt))
            session.forward(prompt, Sampler())
            logits.append(session.logits()[0].clone())
    got, expected = logits
    assert (got - expected).abs().max() <= 1e-3 * expected.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_native_kernels_hold_at_most_the_workspace_outside_the_arena(files, dtype, monkeypatch):
    """Packed weights: outside float32, products and lookups go through float32 copies outside
    the arena (in float32, none: the kernel's own rows of x are not torch's). Every byte a
    prefill of 2 ROWS + 5 tokens and a decode step allocate with torch is made inside one
    ROWS-row product or lookup (or is the scratch of attention's bf16 matrix products, freed
    within each), every product makes some outside float32, and no call makes more than
    workspace_bytes, which the estimate adds to the total."""
    from torch.profiler import record_function

    def labelled(f, label):
        def run(*args):
            with record_function(label):
                f(*args)
        return run
    for name, label in (("_packed_matmul", "product"), ("_packed_lookup", "lookup")):
        monkeypatch.setattr(quant, name, labelled(getattr(quant, name), label))
    prompt = torch.randint(0, 128, (2 * ROWS + 5,), generator=torch.Generator().manual_seed(2)).tolist()
    with torch.inference_mode():
        weights = assemble(files[Q.Q8_0], dtype, CPU, native=True)
        session = Session(build_model(weights, len(prompt) + 1), len(prompt) + 1, len(prompt))
        session.forward(SEQUENCE, Sampler())
        session.reset()
        made = allocations(lambda: (session.forward(prompt, Sampler()), session.forward([3], Sampler())))
    calls = {}
    for ops, size in filter(lambda event: event[1] > 0, outside_products(made)):
        call = next((op for op in reversed(ops) if op[0] in ("product", "lookup")), None)
        assert call is not None, f"{ops[-1][0]} allocated outside a packed product or lookup"
        calls[call] = (call[0], calls.get(call, ("", 0))[1] + size)
    layers = weights.dims()["nlayers"]   # prefill: 3 chunks of 4 products a layer, one head; decode
    products = sum(name == "product" for name, _ in calls.values())
    assert products == (0 if dtype == torch.float32 else 3 * 4 * layers + 1 + 4 * layers + 1)
    assert max((nbytes for _, nbytes in calls.values()), default=0) <= workspace_bytes(weights.dims(), DTYPE_NAMES[dtype], native=True)


def test_fused_matrices_of_mixed_kinds_are_held_and_counted_dequantized(tiny_folder, tmp_path):
    """V in Q8_0 beside Q and K in Q4_1 (llama.cpp's quantizer mixes kinds so): Q|K|V cannot
    be stacked as blocks, so the run holds it dequantized, and the estimate counts it so."""
    path = checkpoint_to_gguf(tiny_folder("mha-untied"), tmp_path / "mixed.gguf",
                              lambda name: Q.Q8_0 if "attn_v" in name else Q.Q4_1)
    file = GGUFFile(path)
    with torch.inference_mode():
        held = assemble(file, torch.float32, CPU, native=True)
    layer = held.layers[0]
    assert isinstance(layer.wqkv, torch.Tensor) and isinstance(layer.w_gate_up, Packed)
    assert file.native_nbytes("f32") == held.nbytes


def test_slices_keep_whole_blocks_or_fall_back(files):
    b = files[Q.Q4_1].blocks("model.layers.0.mlp.up_proj.weight", torch.float32)    # (96, 64)
    part = b.rows(slice(8, 40)).cols(slice(32, 64))
    assert part.shape == (32, 32) and torch.equal(part.dequantize(), b.dequantize()[8:40, 32:64])
    assert b.cols(slice(16, 64)) is None


def test_tensor_parallel_ranks_pack_what_their_slices_allow(tiny_folder, tmp_path):
    """gqa-tied over 2 ranks: each rank's FFN is 80 columns, which splits down's blocks of 32
    inputs: that is dequantized; Q|K|V, gate|up (rows anywhere), the output projection's 32
    columns and the tied head keep their blocks. The ranks' products sum to the whole, and
    each rank holds what `arena run --tp`'s estimate says it will."""
    file = GGUFFile(checkpoint_to_gguf(tiny_folder("gqa-tied"), tmp_path / "g.gguf", Q.Q4_1))
    c = file.config
    with torch.inference_mode():
        whole = assemble(file, torch.float32, CPU, native=True)
        ranks = [assemble(file, torch.float32, CPU, shard=s, native=True) for s in shards(c.nh, c.nkvh, c.di, 2)]
    for rank in ranks:
        layer = rank.layers[0]
        assert isinstance(layer.wo, Packed) and isinstance(rank.output, Packed)
        assert isinstance(layer.wqkv, Packed) and isinstance(layer.w_gate_up, Packed)
        assert isinstance(layer.w_down, torch.Tensor)
    assert [file.native_nbytes("f32", s) for s in shards(c.nh, c.nkvh, c.di, 2)] == [r.nbytes for r in ranks]
    x = torch.randn(2, c.nh * c.dh, generator=torch.Generator().manual_seed(2))
    parts = []
    for rank, s in zip(ranks, shards(c.nh, c.nkvh, c.di, 2)):
        out = torch.empty(2, c.d)
        cols = slice(s.q_heads[0] * c.dh, (s.q_heads[-1] + 1) * c.dh)
        matmul(x[:, cols].contiguous(), rank.layers[0].wo, out)
        parts.append(out)
    expected = torch.empty(2, c.d)
    matmul(x, whole.layers[0].wo, expected)
    torch.testing.assert_close(parts[0] + parts[1], expected, rtol=0, atol=1e-5)   # whole blocks: the same 16-bit rows


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    """The embedded SmolLM2 file, its tokenizer, and its weights native and dequantized (f32)."""
    from executor.source import Source, open_source
    from executor.tokenizer import from_gguf
    file = open_source(Source(smollm2_path, "gguf"))
    with torch.inference_mode():
        return file, from_gguf(file), assemble(file, torch.float32, CPU, native=True), assemble(file, torch.float32, CPU)


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
    assert differing <= 1   # measured: none of the 96 (docs/executor.md)


@pytest.mark.slow
def test_smollm2_native_weights_fit_the_file(smollm2):
    file, _, native, _ = smollm2
    tensor_bytes = sum(t.nbytes for t in file.tensors.values())
    assert native.nbytes <= 1.15 * tensor_bytes
    assert file.native_nbytes("f32") == native.nbytes   # arena run's pre-flight estimate
    assert isinstance(native.output, Packed) and native.embedding is native.output   # tied, held once


@pytest.mark.slow
def test_cli_weights_option(capsys):
    run = ["run", "--prompt", "The capital of France is", "--max-new-tokens", "4", "--json"]
    assert main(run) == 0
    native = json.loads(capsys.readouterr().out)    # native is the default for GGUF files
    assert native["weights"] == "native" and native["dtype"] == "f32"
    assert native["estimate"]["weight_bytes"] == native["weight_bytes"]
    assert native["estimate"]["total_bytes"] == native["total_bytes"] == \
        native["weight_bytes"] + native["arena"] + native["rope_bytes"] + native["workspace_bytes"] + native["runtime_bytes"]
    assert native["workspace_bytes"] > 0
    assert main([*run, "--weights", "f32"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["weights"] == "f32" and plain["dtype"] == "f32" and plain["workspace_bytes"] == 0
    assert native["weight_bytes"] < plain["weight_bytes"] / 5
    assert main([*run, "--weights", "f32", "--dtype", "bf16"]) == 2
    assert capsys.readouterr().err.strip() == ("arena: error: --weights f32 --dtype bf16: dequantized weights run "
                                               "in their own dtype; give one of the two")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("avx2", [True, False], ids=["avx2", "plain"])
@pytest.mark.parametrize("nkvh, group, dh", [(3, 3, 64), (2, 4, 64), (1, 7, 32), (4, 1, 64), (2, 2, 30), (2, 3, 48)])
@pytest.mark.parametrize("end", [1, 31, 129, 700, 3000])
def test_compiled_decode_attention_is_softmax_attention_with_the_append(end, nkvh, group, dh, avx2, dtype):
    """Groups of 1 to 7 query heads a K/V head (the AVX2 code takes them 3 at a time), lengths
    under and over its spans of 32 positions, head sizes it leaves to the plain loops (30; 48 in
    bf16), and scores with room for every head or (bf16's bytes) for fewer K/V heads at a time.
    In bf16 the keys lie position by position and the output is rounded to bf16."""
    nctx = 3072
    previous = _kernels.use_avx2(avx2)
    gen = torch.Generator().manual_seed(end)
    row = torch.randn(nkvh * group * dh + 2 * nkvh * dh, generator=gen).to(dtype)   # q, then the token's K and V
    keys, values = torch.randn(nkvh, dh, nctx, generator=gen).to(dtype), torch.randn(nkvh, dh, nctx, generator=gen).to(dtype)
    if dtype == torch.bfloat16:
        keys = keys.transpose(1, 2).contiguous().transpose(1, 2)   # (nkvh, dh, nctx) over (nkvh, nctx, dh) bytes
    q, new_k, new_v = row.float().split([nkvh * group * dh, nkvh * dh, nkvh * dh])
    k, v = keys.clone(), values.clone()
    k[:, :, end - 1], v[:, :, end - 1] = new_k.view(nkvh, dh).to(dtype), new_v.view(nkvh, dh).to(dtype)
    logits = torch.einsum("hgd,hdp->hgp", q.view(nkvh, group, dh), k[:, :, :end].float()) * dh ** -0.5
    want = torch.einsum("hgp,hdp->hgd", logits.softmax(-1), v[:, :, :end].float()).reshape(-1)
    scores = torch.empty(max(nkvh, 2) * group * end, dtype=dtype)   # bf16: room for half the K/V heads' scores
    _kernels.attend_one(dtype == torch.bfloat16, row.data_ptr(), keys.data_ptr(), values.data_ptr(), nkvh, group, dh,
                        nctx, dh ** -0.5, scores.data_ptr(), scores.nbytes // 4, end)
    _kernels.use_avx2(previous)
    assert torch.equal(keys, k) and torch.equal(values, v)
    tolerance = 1e-5 if dtype == torch.float32 else 2 ** -8
    torch.testing.assert_close(row[:nkvh * group * dh].float(), want, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("avx2", [True, False], ids=["avx2", "plain"])
def test_compiled_decode_attention_takes_scores_far_larger_than_its_context(avx2):
    """Decode's scores hold every head over the whole context (32 heads x 131,072 positions on
    Llama 3.1's shapes) while the context is still a token or two long: the kernel sized its
    per-head maxima and sums by that room (16 MB on the stack here), and a run crashed."""
    previous = _kernels.use_avx2(avx2)
    gen = torch.Generator().manual_seed(0)
    nkvh, group, dh, nctx, end, room = 2, 2, 64, 16, 1, 4_000_000
    row = torch.randn(nkvh * group * dh + 2 * nkvh * dh, generator=gen)
    keys, values, scores = torch.zeros(nkvh, dh, nctx), torch.zeros(nkvh, dh, nctx), torch.empty(room)
    _kernels.attend_one(False, row.data_ptr(), keys.data_ptr(), values.data_ptr(), nkvh, group, dh, nctx, 0.125,
                        scores.data_ptr(), room, end)
    _kernels.use_avx2(previous)
    # one position: each query head's output is its K/V head's value, the token's own
    want = row[-nkvh * dh:].view(nkvh, 1, dh).expand(nkvh, group, dh).reshape(-1)
    torch.testing.assert_close(row[:nkvh * group * dh], want)


@pytest.mark.parametrize("avx2", [True, False], ids=["avx2", "plain"])
@pytest.mark.parametrize("dh", [30, 64])
def test_compiled_decode_attention_of_scores_all_far_below_zero(avx2, dh):
    """Scores of -100, -95 and -90: the softmax subtracts the largest before its exponential,
    which clamps under -87; counted from 0 every weight clamped alike, an even mean."""
    nctx, end = 8, 3
    scores = torch.tensor([-100.0, -95.0, -90.0])           # q . k at each position, with q = e0 and scale 1
    row = torch.zeros(3 * dh)                               # q, then the token's key and value
    row[0], row[dh], row[2 * dh] = 1.0, scores[2], 3.0
    keys, values = torch.zeros(1, dh, nctx), torch.zeros(1, dh, nctx)
    keys[0, 0, :2], values[0, 0, :2] = scores[:2], torch.tensor([1.0, 2.0])
    room = torch.empty(64)                                  # held: the kernel writes there
    previous = _kernels.use_avx2(avx2)
    _kernels.attend_one(False, row.data_ptr(), keys.data_ptr(), values.data_ptr(), 1, 1, dh, nctx, 1.0,
                        room.data_ptr(), 64, end)
    _kernels.use_avx2(previous)
    assert row[0].item() == pytest.approx((scores.softmax(-1) * torch.tensor([1.0, 2.0, 3.0])).sum().item(), abs=1e-4)


def test_compiled_decode_attention_needs_room_for_one_head_of_scores():
    row, cache = torch.zeros(3 * 64 + 2 * 64), torch.zeros(64, 100)
    with pytest.raises(ValueError, match="attend_one: 20 floats of scores, under one K/V head's 30"):
        _kernels.attend_one(False, row.data_ptr(), cache.data_ptr(), cache.data_ptr(), 1, 3, 64, 100, 0.125,
                            torch.empty(20).data_ptr(), 20, 10)
