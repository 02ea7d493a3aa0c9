"""GGUF files: metadata, and tensors dequantized to float32 with the gguf package.

Tensors come out under transformers' names and in its layout. The one layout change:
llama.cpp's converter permutes the rows of the Q and K projections so that RoPE rotates
adjacent pairs (x0, x1), (x2, x3)...; transformers rotates the two halves of each head
instead. We undo the permutation on load, as transformers does, so one RoPE kernel serves
GGUF files and checkpoints alike and our logits can be compared with transformers'.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from planner.errors import ArenaError
from planner.models import gguf_dims, gguf_meta, positive

from .weights import ModelConfig, check_head_size

# transformers name -> GGUF name, for the tensors outside the layers
GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "rope_freqs.weight": "rope_freqs.weight",
}
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")


def _supported():
    from gguf import GGMLQuantizationType as Q
    return {Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1,
            Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K}


class GGUFFile:
    """One open GGUF file (memory-mapped): metadata by key, tensors by transformers name."""

    def __init__(self, path: Path):
        from gguf import GGUFReader
        self.path = Path(path)
        try:
            self.reader = GGUFReader(self.path)
        except Exception as e:  # the gguf package raises many kinds on truncated or foreign files
            raise ArenaError(f"{self.path}: not a readable GGUF file, truncated or corrupt "
                             f"({type(e).__name__}: {e})") from None
        self.tensors = {t.name: t for t in self.reader.tensors}
        self._check_tensors()
        self.config = self._config()

    def meta(self, key: str, *default):
        """The metadata value under `key`; an ArenaError when it is missing and no default is given."""
        return gguf_meta(self.reader, self.path, key, *default)

    def number(self, key: str, *default: float) -> float:
        """The positive number under `key` (or `default`), an ArenaError when it is anything else."""
        return positive(self.path, key, self.meta(key, *default), float)

    def has(self, name: str) -> bool:
        return self._gguf_name(name) in self.tensors

    def get(self, name: str) -> torch.Tensor:
        from gguf.quants import dequantize
        gguf_name = self._gguf_name(name)
        if gguf_name not in self.tensors:
            raise ArenaError(f"{self.path}: the file has no tensor '{gguf_name}'")
        t = self.tensors[gguf_name]
        # F32 tensors come back as read-only views of the memory map: those alone are copied
        w = np.require(dequantize(t.data, t.tensor_type), dtype=np.float32, requirements=["W"])
        w = torch.from_numpy(w).reshape(tuple(int(s) for s in reversed(t.shape)))  # GGUF lists dims innermost first
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = self.config.nh if name.endswith("q_proj.weight") else self.config.nkvh
            if w.shape[0] == heads * self.config.dh:   # else the caller's shape check names the tensor
                w = unpermute(w, heads)
        return w

    def _gguf_name(self, name: str) -> str:
        match = _LAYER.fullmatch(name)
        if match and match.group(2) in LAYER_NAMES:
            return f"blk.{match.group(1)}.{LAYER_NAMES[match.group(2)]}"
        return GLOBAL_NAMES.get(name, name)

    def _check_tensors(self) -> None:
        supported = _supported()
        for t in self.reader.tensors:
            if t.tensor_type not in supported:
                names = ", ".join(sorted(q.name for q in supported))
                raise ArenaError(f"{self.path}: tensor '{t.name}' has quantization {t.tensor_type.name}, "
                                 f"which is not supported (supported: {names})")
            if t.data.nbytes != t.n_bytes:
                raise ArenaError(f"{self.path}: tensor '{t.name}' has {t.data.nbytes} of its {t.n_bytes} bytes: "
                                 f"the file is truncated")

    def _config(self) -> ModelConfig:
        dims = gguf_dims(self.reader, self.path)
        rotated = self.meta("llama.rope.dimension_count", dims["dh"])
        if rotated != dims["dh"]:
            raise ArenaError(f"{self.path}: RoPE over {rotated} of {dims['dh']} head dimensions is not supported")
        check_head_size(self.path, dims["dh"])
        if "token_embd.weight" not in self.tensors:   # the planner may do without it, a forward pass cannot
            raise ArenaError(f"{self.path}: the file has no tensor 'token_embd.weight'")
        return ModelConfig(
            **dims, eps=self.number("llama.attention.layer_norm_rms_epsilon", 1e-5),
            rope_theta=self.number("llama.rope.freq_base", 10000.0), rope_scaling=self._rope_scaling(),
            tied="output.weight" not in self.tensors)

    def _rope_scaling(self) -> dict | None:
        kind = self.meta("llama.rope.scaling.type", "none")
        if kind == "none":
            return None   # Llama 3's scaling, when present, is the rope_freqs tensor
        if kind == "linear":
            return {"rope_type": "linear", "factor": self.number("llama.rope.scaling.factor")}
        raise ArenaError(f"{self.path}: RoPE scaling '{kind}' is not supported (none, linear)")


def unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K row permutation: per head, rows (pairs, 2) back to (2, halves)."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, -1).transpose(1, 2).reshape(rows, -1)
