"""The weights the kernels read: read from a GGUF file or a checkpoint, fused, cast to the run dtype.

Both readers (gguf_file.GGUFFile, checkpoint.Checkpoint) name tensors the way transformers
does ("model.layers.3.self_attn.q_proj.weight") and hand them over in the layout transformers
uses, so everything after this point is one code path. Weights are constants, not arena
tensors: the schedule never names them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from planner.errors import ArenaError

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


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
    """What a reader offers: its config and float tensors by transformers name, layout included."""
    path: object
    config: ModelConfig

    def has(self, name: str) -> bool: ...

    def get(self, name: str) -> torch.Tensor: ...


@dataclass
class LayerWeights:
    attn_norm: torch.Tensor   # (d,)
    wqkv: torch.Tensor        # ((nh + 2 nkvh) dh, d): Q, K and V projections stacked, one matmul
    wo: torch.Tensor          # (d, nh dh)
    ffn_norm: torch.Tensor    # (d,)
    w_gate_up: torch.Tensor   # (2 di, d): gate and up stacked, one matmul
    w_down: torch.Tensor      # (d, di)


@dataclass
class Weights:
    config: ModelConfig
    embedding: torch.Tensor      # (vocab, d)
    layers: list[LayerWeights]
    output_norm: torch.Tensor    # (d,)
    output: torch.Tensor         # (vocab, d); the embedding itself when tied
    rope_factors: torch.Tensor | None = None   # GGUF rope_freqs: per-frequency divisors (Llama 3)
    nbytes: int = field(default=0)

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.dtype


def assemble(file: TensorFile, dtype: torch.dtype, device: torch.device,
             advance: Callable[[], None] = lambda: None) -> Weights:
    """Read every weight from `file`, check its shape, fuse Q|K|V and gate|up, cast and move.
    `advance` is called once per layer (and for the embedding and output), for a progress bar."""
    c = file.config
    q_rows, kv_rows = c.nh * c.dh, c.nkvh * c.dh

    def get(name: str, *shape: int) -> torch.Tensor:
        w = file.get(name)
        if tuple(w.shape) != shape:
            raise ArenaError(f"{file.path}: tensor '{name}' has shape {tuple(w.shape)}, expected {shape}")
        return w

    def put(*parts: torch.Tensor) -> torch.Tensor:
        w = torch.cat(parts) if len(parts) > 1 else parts[0]
        return w.to(device=device, dtype=dtype).contiguous()

    embedding = put(get("model.embed_tokens.weight", c.vocab, c.d))
    advance()
    layers = []
    for i in range(c.nlayers):
        p = f"model.layers.{i}."
        layers.append(LayerWeights(
            attn_norm=put(get(p + "input_layernorm.weight", c.d)),
            wqkv=put(get(p + "self_attn.q_proj.weight", q_rows, c.d), get(p + "self_attn.k_proj.weight", kv_rows, c.d),
                     get(p + "self_attn.v_proj.weight", kv_rows, c.d)),
            wo=put(get(p + "self_attn.o_proj.weight", c.d, q_rows)),
            ffn_norm=put(get(p + "post_attention_layernorm.weight", c.d)),
            w_gate_up=put(get(p + "mlp.gate_proj.weight", c.di, c.d), get(p + "mlp.up_proj.weight", c.di, c.d)),
            w_down=put(get(p + "mlp.down_proj.weight", c.d, c.di))))
        advance()
    output_norm = put(get("model.norm.weight", c.d))
    output = embedding if c.tied else put(get("lm_head.weight", c.vocab, c.d))
    rope_factors = file.get("rope_freqs.weight").float().to(device) if file.has("rope_freqs.weight") else None
    advance()
    weights = Weights(c, embedding, layers, output_norm, output, rope_factors)
    weights.nbytes = sum(t.nbytes for t in _unique_tensors(weights))
    return weights


def _unique_tensors(w: Weights) -> list[torch.Tensor]:
    tensors = [w.embedding, w.output_norm] + ([] if w.output is w.embedding else [w.output])
    for layer in w.layers:
        tensors += [layer.attn_norm, layer.wqkv, layer.wo, layer.ffn_norm, layer.w_gate_up, layer.w_down]
    return tensors
