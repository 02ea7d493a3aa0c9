"""The tensors of a llama GGUF file, checked from its header alone: where each lies, of what
type, and whether they are the ones a forward pass reads. `arena run` refuses a file that
fails a check; `arena plan` estimates it all the same, with a note saying why the run would
not (planner/cli.py). Without the gguf package: a plan of a GGUF file does not load it."""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

from .errors import ArenaError, plural
from .gguf_header import Header

# The ggml types the executor reads, by type number: (name, values a block, bytes a block), as
# gguf's GGML_QUANT_SIZES gives them (tests/test_gguf_header.py compares the two).
TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 30: ("BF16", 1, 2), 8: ("Q8_0", 32, 34), 2: ("Q4_0", 32, 18),
         3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 10: ("Q2_K", 256, 84),
         11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210)}

# The tensors a llama forward pass reads (the executor's weights.assemble), transformers' names
# to llama.cpp's. lm_head.weight is absent where the output projection is the token embedding,
# rope_freqs.weight where RoPE is not scaled as Llama 3 scales it.
GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "rope_freqs.weight": "rope_freqs.weight",
}
OPTIONAL = ("output.weight", "rope_freqs.weight")
LAYER_NAMES = {     # within model.layers.<i>. and blk.<i>.
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


class Tensor(NamedTuple):
    """Where a tensor's bytes lie in the file, and what they hold."""
    name: str
    type: int               # ggml's type number, one of TYPES
    shape: tuple[int, ...]  # GGUF's order: innermost dimension first
    offset: int
    nbytes: int

    @property
    def rows(self) -> int:
        return math.prod(self.shape[1:])

    @property
    def type_name(self) -> str:
        return TYPES[self.type][0]


def tensors(header: Header, path: Path) -> dict[str, Tensor]:
    """The header's tensors by name, each of a supported type, of whole blocks, whole in the
    file and apart from the others; else an ArenaError naming `path` and the first that is not."""
    found = {}
    for t in header.tensors.values():
        if t.type not in TYPES:
            names = ", ".join(sorted(name for name, _, _ in TYPES.values()))
            raise ArenaError(f"{path}: tensor '{t.name}' has quantization {_type_name(t.type)}, which is not "
                             f"supported (supported: {names})")
        name, block, size = TYPES[t.type]
        if not t.shape or 0 in t.shape:   # (no dimensions: a scalar, which a block type would count as 0 bytes)
            raise ArenaError(f"{path}: tensor '{t.name}' has shape {list(t.shape)}, no values")
        if t.shape[0] % block:    # the executor's reshapes take whole blocks
            raise ArenaError(f"{path}: tensor '{t.name}' has rows of {t.shape[0]} values, "
                             f"not whole {name} blocks of {block}")
        nbytes = math.prod(t.shape) // block * size   # exact: numpy's product wraps around at 2^64
        if t.offset + nbytes > header.size:
            raise ArenaError(f"{path}: tensor '{t.name}' has {max(0, header.size - t.offset)} of its "
                             f"{nbytes} bytes: the file is truncated")
        found[t.name] = Tensor(t.name, t.type, t.shape, t.offset, nbytes)
    ends = sorted((t.offset, t.offset + t.nbytes, t.name) for t in found.values())
    for (_, end, before), (start, _, name) in zip(ends, ends[1:]):
        if start < end:     # two tensors sharing bytes: a corrupt offset, read as weights all the same
            raise ArenaError(f"{path}: tensor '{name}' starts inside tensor '{before}'")
    return found


def misshapen(header: Header, dims: dict[str, int]) -> str | None:
    """The first tensor the file holds whose shape is not the one a forward pass at `dims` (the
    model's) reads, as the executor checks it on loading (weights.assemble); None: none. Shapes in
    transformers' order, GGUF's reversed; a tensor the file lacks is `unread`'s to name."""
    d, di, vocab = dims["d"], dims["di"], dims["vocab"]
    q, kv = dims["nh"] * dims["dh"], dims["nkvh"] * dims["dh"]
    layer = {"attn_norm.weight": (d,), "attn_q.weight": (q, d), "attn_k.weight": (kv, d), "attn_v.weight": (kv, d),
             "attn_output.weight": (d, q), "ffn_norm.weight": (d,), "ffn_gate.weight": (di, d),
             "ffn_up.weight": (di, d), "ffn_down.weight": (d, di)}
    expected = {"token_embd.weight": (vocab, d), "output_norm.weight": (d,), "output.weight": (vocab, d),
                "rope_freqs.weight": (dims["dh"] // 2,),
                **{f"blk.{i}.{name}": shape for i in range(dims["nlayers"]) for name, shape in layer.items()}}
    for name, shape in expected.items():
        t = header.tensors.get(name)
        if t is not None and t.shape[::-1] != shape:
            return f"tensor '{name}' has shape {t.shape[::-1]}, not the {shape} of the model's dimensions"
    return None


def _type_name(number: int) -> str:
    """An unsupported type by gguf's name for it (IQ4_NL), only now loading gguf."""
    from gguf import GGMLQuantizationType
    try:
        return GGMLQuantizationType(number).name
    except ValueError:   # a type number gguf does not know
        return f"type {number}"


def unread(header: Header, nlayers: int) -> str | None:
    """The first tensor that a forward pass of `nlayers` layers needs and the file lacks, or
    that the file holds and no step reads (None: neither). A tensor left unread is a network
    other than the one computed (a layer more than llama.block_count says, a norm of another
    architecture), as llama.cpp, which refuses such files, reads it too."""
    layers = [f"blk.{i}.{name}" for i in range(nlayers) for name in LAYER_NAMES.values()]
    needed = [name for name in GLOBAL_NAMES.values() if name not in OPTIONAL] + layers
    missing = next((name for name in needed if name not in header.tensors), None)
    if missing:
        return f"the file has no tensor '{missing}'"
    known = {*needed, *OPTIONAL}
    extra = next((name for name in header.tensors if name not in known), None)
    if extra:
        return f"tensor '{extra}' is not one that a llama model of {nlayers} {plural(nlayers, 'layer')} " \
               "(llama.block_count) reads"
    return None
