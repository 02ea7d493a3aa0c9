"""Tiny random Llama checkpoints written by transformers, the same weights as GGUF files (Q/K
permuted the way llama.cpp's converter does), and our session on any of them. Plain helpers for
the executor tests (pytest puts tests/ on the path); the fixtures built from them are in conftest.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from executor.model import build_model
from executor.sampling import Sampler
from executor.session import Session
from executor.source import Source, open_source
from executor.weights import assemble

# (name, config): multi-head and grouped-query attention, tied and untied, odd sizes
TINY = {
    "mha-untied": dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, intermediate_size=96,
                       num_hidden_layers=2, vocab_size=128, tie_word_embeddings=False),
    "gqa-tied": dict(hidden_size=64, num_attention_heads=8, num_key_value_heads=2, intermediate_size=160,
                     num_hidden_layers=3, vocab_size=160, tie_word_embeddings=True),
    "odd-mqa": dict(hidden_size=30, num_attention_heads=3, num_key_value_heads=1, intermediate_size=37,
                    num_hidden_layers=2, vocab_size=101, tie_word_embeddings=False),
}

WORDS = [f"w{i}" for i in range(126)]    # the word-level vocabulary of `word_folder` (conftest.py)
SEQUENCE = [5, 17, 3, 99, 42, 8, 61, 23, 77, 14, 2, 90]   # ids below every tiny vocabulary
PROMPT = 7


def teacher_forced(session: Session) -> torch.Tensor:
    """Our last-token logits after SEQUENCE[:PROMPT], then after each further token fed one at a time."""
    rows = []
    session.forward(SEQUENCE[:PROMPT], Sampler())
    rows.append(session.logits()[0])
    for token in SEQUENCE[PROMPT:]:
        session.forward([token], Sampler())
        rows.append(session.logits()[0])
    return torch.stack(rows)


def tiny_checkpoint(folder: Path, name: str, shard_bytes: int | None = None, **overrides) -> Path:
    """A random Llama saved by transformers (weights large enough that logits differ visibly)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(sum(map(ord, name)))
    config = LlamaConfig(**{**TINY[name], "max_position_embeddings": 64, "rope_theta": 5000.0,
                            "rms_norm_eps": 1e-5, "initializer_range": 0.25, **overrides})
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():   # random norm weights too, so a missing norm weight would show
        for module in model.modules():
            if type(module).__name__ == "LlamaRMSNorm":
                module.weight.uniform_(0.5, 1.5)
    kwargs = {"max_shard_size": shard_bytes} if shard_bytes else {}
    model.save_pretrained(folder, **kwargs)
    return folder


def copy_with_tensors(folder: Path, copy: Path, change) -> Path:
    """`folder` copied to `copy`, its safetensors file rewritten as transformers writes one, with
    the tensors `change` is given (name -> tensor) changed in place, or the dict it returns."""
    from safetensors.torch import load_file, save_file
    shutil.copytree(folder, copy)
    file = next(copy.glob("*.safetensors"))
    tensors = load_file(file)
    changed = change(tensors)
    save_file(changed if isinstance(changed, dict) else tensors, file, metadata={"format": "pt"})
    return copy


def hf_model(folder: Path):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def checkpoint_to_gguf(folder: Path, path: Path, qtype=None, metadata=None, linear_rope="typed") -> Path:
    """The checkpoint's weights as a llama GGUF file: 2-D weights in `qtype` (F32 by default;
    a function of the GGUF name gives each its own, as llama.cpp's quantizer mixes them),
    Q and K rows permuted for interleaved RoPE as llama.cpp's convert_hf_to_gguf.py does;
    `metadata(writer)`, when given, adds more (a tokenizer). Linear RoPE scaling is written
    as today's converter writes it (`linear_rope` "typed": a type and a factor), as a factor
    alone ("factor"), or under the older key alone ("scale_linear"); llama.cpp reads each so."""
    import gguf
    from safetensors.torch import load_file
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(folder)
    nh, nkvh = cfg.num_attention_heads, cfg.num_key_value_heads
    tensors = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        tensors.update(load_file(file))
    qtype = qtype or gguf.GGMLQuantizationType.F32
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint32("llama.block_count", cfg.num_hidden_layers)
    w.add_uint32("llama.context_length", cfg.max_position_embeddings)
    w.add_uint32("llama.embedding_length", cfg.hidden_size)
    w.add_uint32("llama.feed_forward_length", cfg.intermediate_size)
    w.add_uint32("llama.attention.head_count", nh)
    w.add_uint32("llama.attention.head_count_kv", nkvh)
    w.add_float32("llama.rope.freq_base", cfg.rope_parameters["rope_theta"])
    w.add_float32("llama.attention.layer_norm_rms_epsilon", cfg.rms_norm_eps)
    if metadata is not None:
        metadata(w)
    head = getattr(cfg, "head_dim", None) or cfg.hidden_size // nh
    if head != cfg.hidden_size // nh:
        w.add_uint32("llama.attention.key_length", head)
        w.add_uint32("llama.attention.value_length", head)
    rope = cfg.rope_parameters
    if rope.get("rope_type") == "linear":
        if linear_rope == "typed":
            w.add_string("llama.rope.scaling.type", "linear")
        key = "llama.rope.scale_linear" if linear_rope == "scale_linear" else "llama.rope.scaling.factor"
        w.add_float32(key, rope["factor"])
    elif rope.get("rope_type") == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(rope, head, rope["rope_theta"]))
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    parts = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for name, t in tensors.items():
        t = t.float().numpy()
        if name.startswith("model.layers."):
            layer, rest = name[len("model.layers."):].split(".", 1)
            part = rest.removesuffix(".weight")
            if part.endswith("q_proj"):
                t = permute(t, nh)
            elif part.endswith("k_proj"):
                t = permute(t, nkvh)
            name = f"blk.{layer}.{parts[part]}.weight"
        else:
            name = names[name]
        kind = qtype(name) if callable(qtype) else qtype
        if t.ndim == 2 and kind != gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, gguf.quants.quantize(t, kind), raw_dtype=kind)
        else:
            w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def llama3_rope_factors(rope: dict, head: int, theta: float) -> np.ndarray:
    """Llama 3's RoPE scaling as llama.cpp's converter writes it: a divisor per frequency."""
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    factors = []
    for freq in 1.0 / theta ** (np.arange(0, head, 2, dtype=np.float32) / head):
        wavelen = 2 * np.pi / freq
        if wavelen < old / high:
            factors.append(1.0)
        elif wavelen > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's LlamaModel.permute: per head, the two halves interleaved into pairs."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def our_session(path: Path, kind: str, nctx: int, max_tokens: int, dtype=torch.float32, device="cpu") -> Session:
    weights = assemble(open_source(Source(Path(path), kind)), dtype, torch.device(device))
    return Session(build_model(weights, nctx), nctx, max_tokens)

