"""The weights the kernels read: read from a GGUF file or a checkpoint, fused, cast to the run dtype.

Both readers (gguf_file.GGUFFile, checkpoint.Checkpoint) name tensors the way transformers
does ("model.layers.3.self_attn.q_proj.weight") and hand them over in the layout transformers
uses, so everything after this point is one code path. Weights are constants, not arena
tensors: the schedule never names them.
"""
from __future__ import annotations

import ctypes

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from planner.errors import ArenaError
from planner.shards import Shard

from .quant import Packed, cat_rows

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
SLAB_BYTES = 16 << 20   # a checkpoint's matrix is read at most this many bytes (of f32) at a time


@dataclass
class ModelConfig:
    d: int            # hidden size
    nh: int           # query heads
    nkvh: int         # key-value heads
    dh: int           # head size
    di: int           # FFN width
    nlayers: int
    vocab: int
    nctx: int         # the context length the model was trained for
    eps: float        # RMSNorm epsilon
    rope_theta: float
    rope_scaling: dict | None = None   # transformers' rope_parameters beyond the default
    tied: bool = False                 # the output projection is the token embedding

    def dims(self) -> dict[str, int]:
        """The schedule's dimensions (without n, which each call binds)."""
        return dict(d=self.d, nh=self.nh, nkvh=self.nkvh, dh=self.dh, di=self.di,
                    nlayers=self.nlayers, vocab=self.vocab, nctx=self.nctx)


class TensorFile(Protocol):
    """What a reader offers: its config and float tensors by transformers name, layout included.
    A checkpoint also offers shape(name) and rows(name, start, stop), which `assemble` reads a
    slab of rows at a time."""
    path: object
    config: ModelConfig

    def has(self, name: str) -> bool: ...

    def get(self, name: str) -> torch.Tensor: ...

    def stored_name(self, name: str) -> str:
        """The tensor's name as the file writes it, for messages."""


Operand = torch.Tensor | Packed   # a float tensor, or native GGUF blocks (quant.matmul takes both)


@dataclass
class LayerWeights:
    """Projections are right operands, (in, out): a kernel computes x @ w (see `operand`)."""
    attn_norm: torch.Tensor   # (d,)
    wqkv: Operand             # (d, (nh + 2 nkvh) dh): Q, K and V projections side by side, one matmul
    wo: Operand               # (nh dh, d)
    ffn_norm: torch.Tensor    # (d,)
    w_gate_up: Operand        # (d, 2 di): gate and up side by side, one matmul
    w_down: Operand           # (di, d)


@dataclass
class Weights:
    config: ModelConfig
    embedding: Operand           # (vocab, d), rows are tokens (quant.lookup); `output` itself, or a view of it, when tied
    layers: list[LayerWeights]
    output_norm: torch.Tensor    # (d,)
    output: Operand              # (d, vocab), the right operand of the logits
    rope_factors: torch.Tensor | None = None   # GGUF rope_freqs: per-frequency divisors (Llama 3)
    nbytes: int = field(default=0)
    shard: Shard | None = None    # the heads and FFN columns these weights hold (all of them on one rank)

    def dims(self) -> dict[str, int]:
        """The schedule's dims for these weights: the model's, with this rank's heads and FFN width."""
        return self.shard.dims(self.config.dims())

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.dtype


def assemble(file: TensorFile, dtype: torch.dtype, device: torch.device,
             advance: Callable[[], None] = lambda: None, shard: Shard | None = None,
             native: bool = False) -> Weights:
    """Read every weight from `file`, check its shape, fuse Q|K|V and gate|up, cast and move.
    `advance` is called once per layer (and for the embedding and output), for a progress bar.
    A tensor-parallel rank's `shard` keeps its heads' rows of Q, K and V and columns of the
    output projection, and its FFN columns; the rest is replicated. `native` keeps the GGUF
    Q4_0, Q4_1 and Q8_0 matrices as their GGUF blocks (quant.Packed), sliced; the rest, and any
    slice that would split a block of 32 inputs, is dequantized to `dtype`."""
    c = file.config
    q_rows, kv_rows = c.nh * c.dh, c.nkvh * c.dh
    shard = shard or Shard(0, list(range(c.nh)), list(range(c.nkvh)), (0, c.di))
    spans = shard.spans(c.dh)
    q_part, kv_part, ffn_part = (slice(*spans[part]) for part in ("q", "kv", "ffn"))

    def get(name: str, *shape: int) -> torch.Tensor:
        w = file.get(name)
        check_shape(name, tuple(w.shape), shape)
        return w

    def check_shape(name: str, got: tuple[int, ...], shape: tuple[int, ...]) -> None:
        if got != shape:
            raise ArenaError(f"{file.path}: tensor '{file.stored_name(name)}' has shape {got}, "
                             f"expected {shape} (as transformers lays it out)")

    def put(*parts: torch.Tensor) -> torch.Tensor:
        w = torch.cat(parts) if len(parts) > 1 else parts[0]
        return w.to(device=device, dtype=dtype).contiguous()

    def matrix(*parts: tuple[str, tuple[int, int], slice, slice]):
        """The (in, out) operand of the parts (name, (out, in) shape, rows, columns) stacked
        along out: packed when native allows, else a float tensor."""
        packed = _packed(file, parts, dtype, device) if native else None
        return packed or operand(stacked(parts))

    def stacked(parts) -> torch.Tensor:
        """The parts stacked along out, in the run's dtype. A checkpoint's rows are read a slab
        at a time into their place: read whole, a tensor stored in another dtype than the run's
        stood beside its cast copy (a 128,256-token f32 embedding run in bf16: 125 MiB over the
        estimate), and the parts beside their concatenation."""
        if not hasattr(file, "rows"):     # a GGUF file: dequantized whole, its Q and K rows reordered
            return put(*(get(name, *shape)[rows, cols] for name, shape, rows, cols in parts))
        spans = [range(*rows.indices(shape[0])) for _, shape, rows, _ in parts]
        _, (_, inputs), _, cols = parts[0]      # (the parts share their columns)
        out = torch.empty(sum(map(len, spans)), len(range(*cols.indices(inputs))), dtype=dtype, device=device)
        at = 0
        for (name, shape, _, cols), span in zip(parts, spans):
            check_shape(name, file.shape(name), shape)
            step = max(1, SLAB_BYTES // (4 * shape[1]))
            for a in range(span.start, span.stop, step):
                b = min(a + step, span.stop)
                out[at + a - span.start:at + b - span.start] = file.rows(name, a, b)[:, cols]
            at += len(span)
        return out

    whole = slice(None)
    embed = ("model.embed_tokens.weight", (c.vocab, c.d), whole, whole)
    output = matrix(embed if c.tied else ("lm_head.weight", (c.vocab, c.d), whole, whole))
    if c.tied:
        embedding = output if isinstance(output, Packed) else output.t()
    else:
        embedding = (_packed(file, [embed], dtype, device) if native else None) or stacked([embed])
    advance()
    layers = []
    for i in range(c.nlayers):
        p = f"model.layers.{i}."
        layers.append(LayerWeights(
            attn_norm=put(get(p + "input_layernorm.weight", c.d)),
            wqkv=matrix((p + "self_attn.q_proj.weight", (q_rows, c.d), q_part, whole),
                        (p + "self_attn.k_proj.weight", (kv_rows, c.d), kv_part, whole),
                        (p + "self_attn.v_proj.weight", (kv_rows, c.d), kv_part, whole)),
            wo=matrix((p + "self_attn.o_proj.weight", (c.d, q_rows), whole, q_part)),
            ffn_norm=put(get(p + "post_attention_layernorm.weight", c.d)),
            w_gate_up=matrix((p + "mlp.gate_proj.weight", (c.di, c.d), ffn_part, whole),
                             (p + "mlp.up_proj.weight", (c.di, c.d), ffn_part, whole)),
            w_down=matrix((p + "mlp.down_proj.weight", (c.d, c.di), whole, ffn_part))))
        hand_back_heap()
        advance()
    output_norm = put(get("model.norm.weight", c.d))
    rope_factors = get("rope_freqs.weight", c.dh // 2).float().to(device) if file.has("rope_freqs.weight") else None
    if rope_factors is not None:
        bad = rope_factors[~((rope_factors > 0) & rope_factors.isfinite())]
        if len(bad):
            raise ArenaError(f"{file.path}: tensor 'rope_freqs.weight' holds {bad[0].item():g}; "
                             "RoPE's frequency divisors must be positive numbers")
    advance()
    weights = Weights(c, embedding, layers, output_norm, output, rope_factors, shard=shard)
    weights.nbytes = _storage_bytes(weights)
    return weights


def not_finite(w: Weights) -> tuple[str, bool] | None:
    """The first weight holding NaN or infinity, named by its role (GGUF and transformers name
    them differently), and whether it holds a NaN; or None."""
    return _first_not_finite(_by_role(w))


def hidden_not_finite(w: Weights) -> tuple[str, bool] | None:
    """Where some weights are GGUF blocks (Packed), not_finite of the float ones (norms): the
    kernels quantize the activations for the blocks with scales that pass a NaN by (fmaxf), so
    the logits never show it; None where none is, or no weight is blocks."""
    named = _by_role(w)
    if not any(isinstance(t, Packed) for _, t in named):
        return None
    return _first_not_finite([(role, t) for role, t in named if not isinstance(t, Packed)])


def _by_role(w: Weights) -> list[tuple[str, Operand]]:
    named = [("the token embedding", w.embedding), ("the output projection", w.output), ("the output norm", w.output_norm)]
    for i, layer in enumerate(w.layers):
        named += [(f"layer {i}'s {role}", t) for role, t in (
            ("attention norm", layer.attn_norm), ("Q, K or V projection", layer.wqkv),
            ("attention output projection", layer.wo), ("FFN norm", layer.ffn_norm),
            ("FFN gate or up projection", layer.w_gate_up), ("FFN down projection", layer.w_down))]
    return named


def _first_not_finite(named: list[tuple[str, Operand]]) -> tuple[str, bool] | None:
    for role, t in named:
        values = t.dequantize() if isinstance(t, Packed) else t
        if not values.isfinite().all():
            return role, bool(values.isnan().any())
    return None


def hand_back_heap() -> None:
    """Return freed heap to the system. glibc keeps freed memory for reuse, and while weights
    load most of it is dequantization's temporaries, interleaved with the weights kept: without
    this a load of the embedded model in f32 ends about 60 MiB above its weights. Elsewhere
    than glibc there is nothing to do."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _packed(file: TensorFile, parts, dtype: torch.dtype, device: torch.device) -> Packed | None:
    """The parts' GGUF blocks, sliced and stacked; None off the CPU (where the kernels run), or
    where any part has no native form (a checkpoint, F32, a K-quant), the kinds differ, or a
    slice would split a block of 32 values."""
    if not hasattr(file, "blocks") or device.type != "cpu":
        return None
    got = []
    for name, shape, rows, cols in parts:
        b = file.blocks(name, dtype) if file.has(name) else None
        if b is None or b.shape != shape[::-1]:   # a wrong shape: get() names it
            return None
        b = b.rows(rows).cols(cols)
        if b is None:
            return None
        got.append(b)
    return cat_rows(got)


def operand(w: torch.Tensor) -> torch.Tensor:
    """The (in, out) right operand of x @ w for a (out, in) projection: the transposed view of
    its contiguous rows. Decode's products on the CPU (quant.matmul: kernels.c's matvec) stream
    those rows; torch's bf16/f16 kernel is fast only on them too (ten times slower on (in, out)).
    Until the matvec kernel, float32 on the CPU was stored transposed, where MKL's vector-matrix
    product streams about a third faster."""
    return w.t()


def _storage_bytes(w: Weights) -> int:
    """Bytes of the distinct storages behind the weights (a tied embedding counts once)."""
    tensors = [w.embedding, w.output, w.output_norm]
    for layer in w.layers:
        tensors += [layer.attn_norm, layer.wqkv, layer.wo, layer.ffn_norm, layer.w_gate_up, layer.w_down]
    storages = {id(t): t.nbytes() for t in tensors if isinstance(t, Packed)}
    storages.update({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                     for t in tensors if not isinstance(t, Packed)})
    return sum(storages.values())
