"""The tensors of a llama GGUF file, checked from its header alone: where each lies, of what
type, and whether they are the ones a forward pass reads. `arena run` refuses a file that
fails a check; `arena plan` estimates it all the same, with a note saying why the run would
not (planner/cli.py)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

from .errors import ArenaError, plural
from .gguf_header import Header

# The tensors a llama forward pass reads (the executor's weights.assemble); output.weight is
# absent where the output projection is the token embedding, rope_freqs.weight where RoPE is
# not scaled as Llama 3 scales it.
GLOBAL = ("token_embd.weight", "output_norm.weight")
OPTIONAL = ("output.weight", "rope_freqs.weight")
LAYER = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")


class Tensor(NamedTuple):
    """Where a tensor's bytes lie in the file, and what they hold."""
    name: str
    kind: object            # gguf's GGMLQuantizationType
    shape: tuple[int, ...]  # GGUF's order: innermost dimension first
    offset: int
    nbytes: int

    @property
    def rows(self) -> int:
        return math.prod(self.shape[1:])


def supported():
    from gguf import GGMLQuantizationType as Q
    return {Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1,
            Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K}


def tensors(header: Header, path: Path) -> dict[str, Tensor]:
    """The header's tensors by name, each of a supported type, of whole blocks, whole in the
    file and apart from the others; else an ArenaError naming `path` and the first that is not."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    kinds, found = supported(), {}
    for t in header.tensors.values():
        try:
            kind = GGMLQuantizationType(t.type)
        except ValueError:   # a type number gguf does not know
            kind = None
        if kind not in kinds:
            names = ", ".join(sorted(q.name for q in kinds))
            raise ArenaError(f"{path}: tensor '{t.name}' has quantization "
                             f"{kind.name if kind else f'type {t.type}'}, which is not supported (supported: {names})")
        block, size = GGML_QUANT_SIZES[kind]
        _check_shape(path, t, kind, block)
        nbytes = math.prod(t.shape) // block * size   # exact: numpy's product wraps around at 2^64
        if t.offset + nbytes > header.size:
            raise ArenaError(f"{path}: tensor '{t.name}' has {max(0, header.size - t.offset)} of its "
                             f"{nbytes} bytes: the file is truncated")
        found[t.name] = Tensor(t.name, kind, t.shape, t.offset, nbytes)
    ends = sorted((t.offset, t.offset + t.nbytes, t.name) for t in found.values())
    for (_, end, before), (start, _, name) in zip(ends, ends[1:]):
        if start < end:     # two tensors sharing bytes: a corrupt offset, read as weights all the same
            raise ArenaError(f"{path}: tensor '{name}' starts inside tensor '{before}'")
    return found


def _check_shape(path: Path, t, kind, block: int) -> None:
    """Every dimension positive and the rows whole blocks: the executor's reshapes rely on it."""
    if 0 in t.shape:
        raise ArenaError(f"{path}: tensor '{t.name}' has shape {list(t.shape)}, no values")
    if t.shape and t.shape[0] % block:
        raise ArenaError(f"{path}: tensor '{t.name}' has rows of {t.shape[0]} values, "
                         f"not whole {kind.name} blocks of {block}")


def unread(header: Header, nlayers: int) -> str | None:
    """The first tensor that a forward pass of `nlayers` layers needs and the file lacks, or
    that the file holds and no step reads (None: neither). A tensor left unread is a network
    other than the one computed (a layer more than llama.block_count says, a norm of another
    architecture), as llama.cpp, which refuses such files, reads it too."""
    needed = [*GLOBAL, *(f"blk.{i}.{role}.weight" for i in range(nlayers) for role in LAYER)]
    missing = next((name for name in needed if name not in header.tensors), None)
    if missing:
        return f"the file has no tensor '{missing}'"
    known = {*needed, *OPTIONAL}
    extra = next((name for name in header.tensors if name not in known), None)
    if extra:
        return f"tensor '{extra}' is not one that a llama model of {nlayers} {plural(nlayers, 'layer')} " \
               "(llama.block_count) reads"
    return None
