"""GGUF files: metadata, and tensors dequantized to float32 with the gguf package.

Tensors come out under transformers' names and in its layout. The one layout change:
llama.cpp's converter permutes the rows of the Q and K projections so that RoPE rotates
adjacent pairs (x0, x1), (x2, x3)...; transformers rotates the two halves of each head
instead. We undo the permutation on load, as transformers does, so one RoPE kernel serves
GGUF files and checkpoints alike and our logits can be compared with transformers'.
"""
from __future__ import annotations

import mmap
import re
from pathlib import Path

import numpy as np
import torch

from planner.errors import ArenaError
from planner.estimate import native_weight_bytes, shard_tensors
from planner.gguf_header import read_header
from planner.gguf_tensors import GLOBAL_NAMES, LAYER_NAMES, Tensor, tensors
from planner.models import gguf_dims, gguf_meta, gguf_refusal, positive

from .quant import BLOCK_BYTES, Packed
from .weights import ModelConfig

READ_BYTES = 16 << 20     # a float tensor is read this many bytes of the file at a time (get)
_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")


class GGUFFile:
    """One open GGUF file (memory-mapped): metadata by key, tensors by transformers name."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.header = read_header(self.path)
        self.tensors = tensors(self.header, self.path)
        self.data = np.memmap(self.path, mode="r")     # the whole file; pages are read when touched
        self.config = self._config()

    def meta(self, key: str, *default):
        """The metadata value under `key`; an ArenaError when it is missing and no default is given."""
        if self.header is None:
            raise RuntimeError(f"{self.path}: metadata read after forget_metadata()")
        return gguf_meta(self.header, self.path, key, *default)

    def forget_metadata(self) -> None:
        """Drop the metadata once the config and the tokenizer are made: the vocabulary alone is
        about 10 MiB of Python objects on SmolLM2, not needed while the weights load."""
        self.header = None

    def number(self, key: str, *default: float) -> float:
        """The positive number under `key` (or `default`), an ArenaError when it is anything else."""
        return positive(self.path, key, self.meta(key, *default), float)

    def has(self, name: str) -> bool:
        return self.stored_name(name) in self.tensors

    def get(self, name: str) -> torch.Tensor:
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize
        gguf_name = self.stored_name(name)
        if gguf_name not in self.tensors:
            raise ArenaError(f"{self.path}: the file has no tensor '{gguf_name}'")
        t = self.tensors[gguf_name]
        rows = self._bytes(t).reshape(t.rows, -1)
        row_bytes = rows.shape[1]
        step = max(1, READ_BYTES // max(1, row_bytes))
        w = np.empty((t.rows, t.shape[0]), np.float32)
        # rows a few MiB at a time, each run's pages dropped once read: a whole embedding's pages
        # stayed resident beside its copy (97 MiB over a --budget). A NaN or infinity dequantized
        # says nothing here: it shows in the logits, which name it
        for start in range(0, t.rows, step):
            with np.errstate(all="ignore"):
                w[start:start + step] = dequantize(rows[start:start + step], GGMLQuantizationType(t.type))
            self._drop_pages(t.offset + start * row_bytes, min(step, t.rows - start) * row_bytes)
        w = torch.from_numpy(w).reshape(tuple(reversed(t.shape)))  # GGUF lists dims innermost first
        heads = self._heads(name)
        if heads is not None and w.shape[0] == heads * self.config.dh:   # else the caller's shape check names it
            w = unpermute(w, heads)
        return w

    def blocks(self, name: str, dtype: torch.dtype) -> Packed | None:
        """The tensor's GGUF blocks (quant.Packed in the kernels' groups, run in `dtype`), rows
        in the order get() returns them (Q and K unpermuted); None when its type has no native
        form (F32, F16, K-quants...)."""
        t = self.tensors[self.stored_name(name)]
        if t.type_name not in BLOCK_BYTES or len(t.shape) != 2:
            return None
        blocks = torch.from_numpy(np.array(self._bytes(t).reshape(t.rows, -1)))
        self._drop_pages(t.offset, t.nbytes)
        heads = self._heads(name)
        if heads is not None and t.rows == heads * self.config.dh:
            blocks = unpermute(blocks, heads)
        return Packed.from_file(t.type_name, blocks, dtype)

    def native_nbytes(self, dtype: str, shard=None) -> int:
        """The bytes weights.assemble(native=True) holds for this file on CPU in `dtype` (a
        tensor-parallel rank's `shard` of them)."""
        tensors = [(t.name, t.shape, t.type) for t in self.tensors.values()]
        return native_weight_bytes(tensors if shard is None else shard_tensors(tensors, shard, self.config.dh), dtype)

    def _bytes(self, t: Tensor) -> np.ndarray:
        return self.data[t.offset:t.offset + t.nbytes]

    def _drop_pages(self, offset: int, nbytes: int) -> None:
        """Unmap the pages of the file's bytes [offset, offset + nbytes), once copied out: pages of
        the memory-mapped file count in the process's resident memory for as long as they stay
        mapped, 93 MB over a whole load of the embedded model. Dropping clean file pages is always
        safe: a later read maps them again."""
        if hasattr(mmap, "MADV_DONTNEED"):   # not on Windows
            start = offset // mmap.PAGESIZE * mmap.PAGESIZE
            self.data._mmap.madvise(mmap.MADV_DONTNEED, start, offset + nbytes - start)

    def _heads(self, name: str) -> int | None:
        """Q's or K's head count for their projections (whose rows llama.cpp permuted), else None."""
        if name.endswith("q_proj.weight"):
            return self.config.nh
        return self.config.nkvh if name.endswith("k_proj.weight") else None

    def stored_name(self, name: str) -> str:
        """The GGUF name (llama.cpp's) of the tensor transformers names `name`."""
        match = _LAYER.fullmatch(name)
        if match and match.group(2) in LAYER_NAMES:
            return f"blk.{match.group(1)}.{LAYER_NAMES[match.group(2)]}"
        return GLOBAL_NAMES.get(name, name)

    def _config(self) -> ModelConfig:
        dims = gguf_dims(self.header, self.path)
        refusal = gguf_refusal(self.header, self.path, dims)
        if refusal:
            raise ArenaError(f"{self.path}: {refusal}")
        return ModelConfig(
            **dims, eps=self.number("llama.attention.layer_norm_rms_epsilon", 1e-5),
            rope_theta=self.number("llama.rope.freq_base", 10000.0), rope_scaling=self._rope_scaling(),
            tied="output.weight" not in self.tensors)

    def _rope_scaling(self) -> dict | None:
        """As llama.cpp reads it: the type linear unless given, the factor from
        rope.scaling.factor or else the older rope.scale_linear, and none or 0 no scaling."""
        if self.meta("llama.rope.scaling.type", "linear") == "none":   # else linear (gguf_refusal)
            return None   # Llama 3's scaling, when present, is the rope_freqs tensor
        key = next((k for k in ("llama.rope.scaling.factor", "llama.rope.scale_linear")
                    if self.meta(k, None) is not None), None)
        if key is None or self.meta(key) == 0:
            return None
        return {"rope_type": "linear", "factor": self.number(key)}


def unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K row permutation: per head, rows (pairs, 2) back to (2, halves)."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, -1).transpose(1, 2).reshape(rows, -1)


