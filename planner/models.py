"""Model dimensions for binding a schedule: presets, Hugging Face config.json, GGUF metadata.

The names are the schedule's: d (hidden size), nh / nkvh (query / key-value heads),
dh (head size), di (FFN width), nlayers, vocab, nctx (context length).
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ArenaError

if TYPE_CHECKING:
    from gguf import GGUFReader

PRESETS: dict[str, dict[str, int]] = {
    "smollm2-135m": dict(d=576, nh=9, nkvh=3, dh=64, di=1536, nlayers=30, vocab=49152, nctx=8192),
    # the shapes of the seed's dependency graph (open_llama_3b)
    "open_llama_3b": dict(d=3200, nh=32, nkvh=32, dh=100, di=8640, nlayers=26, vocab=32000, nctx=2048),
    "llama-2-7b": dict(d=4096, nh=32, nkvh=32, dh=128, di=11008, nlayers=32, vocab=32000, nctx=4096),
    "llama-3-8b": dict(d=4096, nh=32, nkvh=8, dh=128, di=14336, nlayers=32, vocab=128256, nctx=8192),
}

_REQUIRED = object()


def model_dims(model: str | None) -> dict[str, int]:
    """Dimensions of a preset name, a config.json (or its folder), or a .gguf file."""
    if model is None:
        return {}
    if model in PRESETS:
        return dict(PRESETS[model])
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.exists():
        raise ArenaError(f"--model: '{model}' is neither a preset ({', '.join(PRESETS)}) nor an existing file")
    if path.suffix == ".gguf":
        return gguf_dims(_read_gguf(path), path)
    return config_dims(path)


def config_dims(path: Path) -> dict[str, int]:
    try:
        cfg = json.loads(path.read_text())
        nh = cfg["num_attention_heads"]
        return dict(d=cfg["hidden_size"], nh=nh, nkvh=cfg.get("num_key_value_heads") or nh,
                    dh=cfg.get("head_dim") or cfg["hidden_size"] // nh, di=cfg["intermediate_size"],
                    nlayers=cfg["num_hidden_layers"], vocab=cfg["vocab_size"],
                    nctx=cfg.get("max_position_embeddings", 2048))
    except (OSError, ValueError) as e:
        raise ArenaError(f"{path}: not a readable config.json ({e})") from None
    except KeyError as e:
        raise ArenaError(f"{path}: config.json lacks {e}") from None


def gguf_dims(reader: GGUFReader, path: Path) -> dict[str, int]:
    """The dimensions of a llama GGUF file, from its metadata and its token embedding."""
    meta = partial(_gguf_meta, reader, path)
    arch = meta("general.architecture")
    if arch != "llama":
        raise ArenaError(f"{path}: architecture '{arch}' is not supported (only llama)")
    d, nh = meta("llama.embedding_length"), meta("llama.attention.head_count")
    return dict(d=d, nh=nh, nkvh=meta("llama.attention.head_count_kv", nh),
                dh=meta("llama.attention.key_length", d // nh), di=meta("llama.feed_forward_length"),
                nlayers=meta("llama.block_count"), vocab=_gguf_vocab(reader, path),
                nctx=meta("llama.context_length", 2048))


def _gguf_vocab(reader: GGUFReader, path: Path) -> int:
    # the embedding's rows are the vocabulary the model computes with (the metadata may count
    # fewer when the embedding is padded); the metadata serves files without the tensor
    embedding = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embedding is not None:
        return int(embedding.shape[-1])   # (d, vocab), innermost first
    if "llama.vocab_size" in reader.fields:
        return _gguf_meta(reader, path, "llama.vocab_size")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if tokens is None:
        raise ArenaError(f"{path}: GGUF metadata lacks 'tokenizer.ggml.tokens'")
    return len(tokens.data)   # the list's length only: decoding its strings is slow


def _gguf_meta(reader: GGUFReader, path: Path, key: str, default=_REQUIRED):
    field = reader.fields.get(key)
    if field is not None:
        return field.contents()
    if default is _REQUIRED:
        raise ArenaError(f"{path}: GGUF metadata lacks '{key}'")
    return default


def _read_gguf(path: Path) -> GGUFReader:
    from gguf import GGUFReader
    try:
        return GGUFReader(path)
    except Exception as e:  # the gguf package raises many kinds on truncated or foreign files
        raise ArenaError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from None


def parse_sets(items: list[str]) -> dict[str, int]:
    """--set n=512 --set nctx=4096 -> {"n": 512, "nctx": 4096}"""
    dims = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if not name.strip() or not value.strip().lstrip("-").isdigit():
            raise ArenaError(f"--set {item}: expected NAME=INTEGER, e.g. --set n=512")
        dims[name.strip()] = int(value)
    return dims
