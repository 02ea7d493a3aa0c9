"""Model dimensions for binding a schedule: presets, Hugging Face config.json, GGUF metadata.

The names are the schedule's: d (hidden size), nh / nkvh (query / key-value heads),
dh (head size), di (FFN width), nlayers, vocab, nctx (context length). Both file formats
go through one check (`_checked`), which the executor's readers rely on as well.
"""
from __future__ import annotations

import json
import re
import sys
from functools import lru_cache, partial
from pathlib import Path

from . import expr
from .errors import ArenaError, plural, read_json_object
from .gguf_header import Header, decoded, read_header
from .gguf_tensors import unread

PRESETS: dict[str, dict[str, int]] = {
    "smollm2-135m": dict(d=576, nh=9, nkvh=3, dh=64, di=1536, nlayers=30, vocab=49152, nctx=8192),
    # the shapes of the seed's dependency graph (open_llama_3b)
    "open_llama_3b": dict(d=3200, nh=32, nkvh=32, dh=100, di=8640, nlayers=26, vocab=32000, nctx=2048),
    "llama-2-7b": dict(d=4096, nh=32, nkvh=32, dh=128, di=11008, nlayers=32, vocab=32000, nctx=4096),
    "llama-3-8b": dict(d=4096, nh=32, nkvh=8, dh=128, di=14336, nlayers=32, vocab=128256, nctx=8192),
}
TIED_PRESETS = {"smollm2-135m"}   # presets whose output head is the token embedding
DIMS = ("d", "nh", "nkvh", "dh", "di", "nlayers", "vocab", "nctx")
OPTIONAL = {"nkvh", "dh", "nctx"}   # nkvh defaults to nh, dh to d / nh, nctx to DEFAULT_NCTX
DEFAULT_NCTX = 2048   # LlamaConfig's max_position_embeddings, when config.json gives none
CONFIG_DEFAULTS = {"mistral": dict(nkvh=8, nctx=4096 * 32)}   # other config classes' own (MistralConfig's)
CONFIG_KEYS = dict(d="hidden_size", nh="num_attention_heads", nkvh="num_key_value_heads", dh="head_dim",
                   di="intermediate_size", nlayers="num_hidden_layers", vocab="vocab_size",
                   nctx="max_position_embeddings")
GGUF_KEYS = dict(d="llama.embedding_length", nh="llama.attention.head_count",
                 nkvh="llama.attention.head_count_kv", dh="llama.attention.key_length",
                 di="llama.feed_forward_length", nlayers="llama.block_count", nctx="llama.context_length")
_SET = re.compile(r"\s*([^=]*?)\s*=\s*(-?[0-9]+)\s*", re.ASCII)   # ASCII: int() never sees '٣' or '²'
SET_DIGITS = 18   # any value below 10**18 fits the 64-bit integers the placers compute with

_REQUIRED = object()


def model_file(model: str) -> Path | None:
    """The file --model names, as `arena run` reads it: None for a preset; a folder's
    folder_model (its config.json where it has neither); else the path itself."""
    if model in PRESETS:
        return None
    path = Path(model)
    try:
        return (folder_model(path) or path / "config.json") if path.is_dir() else path
    except OSError as e:
        raise unreadable(model, e) from None


def unreadable(model: str, e: OSError) -> ArenaError:
    """--model naming a folder that may not be looked into: Python 3.11's is_dir and is_file
    raise there (EACCES), where they answer False for a path that is not there."""
    return ArenaError(f"--model {model}: cannot be read ({e.strerror or e}: {e.filename or model})")


def folder_model(folder: Path) -> Path | None:
    """The model file a folder holds, for both commands: its config.json (a Hugging Face
    checkpoint), else its one .gguf file; None where it has neither."""
    if (folder / "config.json").is_file():
        return folder / "config.json"
    ggufs = sorted(folder.glob("*.gguf"))
    return ggufs[0] if len(ggufs) == 1 else None


def is_gguf(path: Path) -> bool:
    """Whether a model file is a GGUF file: by its suffix, or by its first bytes whatever its
    name (a Hugging Face cache's blobs have none). A damaged .gguf file is one still, which the
    reader names (not a config.json of 98 MB); a pipe is not read here (it would block)."""
    if path.suffix.lower() == ".gguf":
        return True
    try:
        if path.is_file():
            with open(path, "rb") as f:
                return f.read(4) == b"GGUF"
    except OSError:
        pass
    return False


# What a checkpoint's folder is read for beside its *.safetensors: here (config and head), and by
# `arena run` (executor: checkpoint.py, tokenizer.py, chat.py). No output may overwrite them.
CHECKPOINT_FILES = ("config.json", "model.safetensors.index.json", "generation_config.json", "tokenizer.json",
                    "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                    "additional_chat_templates/default.jinja")


def model_files(model: str | None) -> dict[str, str]:
    """The files of --model as {what: path} (none for a preset): see files_of."""
    path = model_file(model) if model else None
    return {} if path is None else files_of(path)


def files_of(path: Path) -> dict[str, str]:
    """The files read from a model at `path`, as {what: path}: a GGUF file itself, or every
    file of a checkpoint's folder that is read (CHECKPOINT_FILES and the weights), given the
    folder or its config.json (whose folder's weights say whether a head is stored)."""
    folder = path if path.is_dir() else path.parent if path.name == "config.json" else None
    if folder is None:
        return {"--model": str(path)}
    read = [*CHECKPOINT_FILES, *(p.name for p in folder.glob("*.safetensors"))]
    return {f"--model's {name}": str(folder / name) for name in read if (folder / name).is_file()}


def model_dims(model: str | None) -> dict[str, int]:
    """Dimensions of a preset name, a config.json (or its folder), or a .gguf file."""
    if model is None:
        return {}
    if model in PRESETS:
        return dict(PRESETS[model])
    if not model.strip():
        raise ArenaError("--model: the name is empty; give a preset, a config.json, a .gguf file or a folder of either")
    path = model_file(model)
    if not path.exists():
        raise ArenaError(f"--model: the folder '{model}' has no config.json (a Hugging Face checkpoint) and not "
                         "exactly one .gguf file" if Path(model).is_dir() else
                         f"--model: '{model}' is neither a preset ({', '.join(PRESETS)}) nor an existing file")
    if is_gguf(path):
        return gguf_dims(model_header(path), path)
    return config_dims(path)


def model_header(path: Path) -> Header:
    """The header of the GGUF file at `path`, read once while the file stays as it is: a plan
    asks it for the dimensions, the output head and the tensor types (0.1 s a read on SmolLM2)."""
    try:
        info = path.stat()
    except OSError:
        return read_header(path)        # which names what is wrong with it
    return _header(str(path), info.st_mtime_ns, info.st_size)


@lru_cache(maxsize=1)
def _header(path: str, modified: int, size: int) -> Header:
    return read_header(Path(path))


def tied_output(model: str) -> bool:
    """Whether the model's output head is its token embedding: a preset's known answer,
    config.json's tie_word_embeddings (transformers' default: false), a GGUF file without
    output.weight."""
    if model in PRESETS:
        return model in TIED_PRESETS
    path = model_file(model)
    if is_gguf(path):
        return "output.weight" not in model_header(path).tensors
    return tied_embeddings(path, read_json_object(path, "config.json")) and not _stores_head(path.parent)


# A safetensors header is its file's first bytes: a length (8 bytes), then that much JSON.
# Past this length the file is left to `arena run`, which reads it whole and says what is wrong.
HEADER_MAX = 100 << 20


def _stores_head(folder: Path) -> bool:
    """Whether the checkpoint beside config.json stores an output head (lm_head.weight), which
    transformers (and `arena run`) use even where tie_word_embeddings is true: from the header
    of model.safetensors, else from the shard index, else from every safetensors file's header
    (the files transformers reads). Where one cannot be read, no head is counted: `arena run`
    reads the files whole and says what is wrong with them."""
    try:
        index, single = folder / "model.safetensors.index.json", folder / "model.safetensors"
        if index.is_file() and not single.is_file():
            return "lm_head.weight" in json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        for file in [single] if single.is_file() else folder.glob("*.safetensors"):
            with open(file, "rb") as f:
                length = int.from_bytes(f.read(8), "little")
                if length <= HEADER_MAX and "lm_head.weight" in json.loads(f.read(length)):
                    return True
    except (OSError, ValueError, KeyError, TypeError, RecursionError):   # RecursionError: JSON nested too deep
        pass
    return False


def tied_embeddings(path: Path, cfg: dict) -> bool:
    """config.json's tie_word_embeddings, which must be a JSON boolean when given."""
    tied = cfg.get("tie_word_embeddings", False)
    if not isinstance(tied, bool):   # bool("false") is True: a string would silently tie
        raise ArenaError(f"{path}: tie_word_embeddings is {json.dumps(tied)}; it must be true or false")
    return tied


SUPPORTED = "only llama, and mistral without a sliding window"
# a table of another network still plans: its dimensions need no model
OTHER_NETWORKS = "`arena plan` of another network's table takes its dimensions from --set"
# the numbers each supported RoPE scaling reads (executor.model._scaled), and their kinds
ROPE_NUMBERS = {"linear": {"factor": float},
                "llama3": {"factor": float, "low_freq_factor": float, "high_freq_factor": float,
                           "original_max_position_embeddings": int}}


def check_architecture(path: Path, cfg: dict) -> None:
    """Llama or Mistral (the same network, with the same weight names) with float weights: what
    the model's dimensions describe to the llama schedule. A config without model_type is taken
    for its dimensions. (The executor refuses more: what its forward pass does not compute.)"""
    model_type = cfg.get("model_type")
    if model_type is not None and model_type not in ("llama", "mistral"):
        shown = f"'{model_type}'" if isinstance(model_type, str) else json.dumps(model_type)[:40]
        raise ArenaError(f"{path}: architecture {shown} is not supported ({SUPPORTED}); {OTHER_NETWORKS}")
    if cfg.get("quantization_config"):   # its weights need scales and kernels of their own
        method = cfg["quantization_config"].get("quant_method") if isinstance(cfg["quantization_config"], dict) else None
        raise ArenaError(f"{path}: quantized checkpoints ({method or 'quantization_config'}) are not supported; "
                         "use float weights, or a GGUF file")


def run_refusal(cfg: dict, dims: dict[str, int]) -> str | None:
    """What `arena run` refuses in a config.json the planner reads (None: nothing), given the
    model's `dims` (config_dims): its forward pass computes a named architecture (the weights
    are read by Llama's names), attention over every position of the context, SiLU, no biases,
    RoPE unscaled or scaled as `ROPE_NUMBERS` names, and an even head size."""
    if cfg.get("model_type") is None:
        return f"lacks 'model_type' ({SUPPORTED})"
    # transformers' MistralConfig windows attention at 4096 positions unless the file says null;
    # a window as long as the context never leaves a position out
    # (a llama config may carry one too: transformers' forward then ignores it, but its generate
    # windows the KV cache, so the two disagree)
    window = cfg.get("sliding_window", 4096 if cfg["model_type"] == "mistral" else None)
    if window is not None and not (type(window) is int and window >= dims["nctx"]):
        return (f"sliding_window={window!r}{'' if 'sliding_window' in cfg else ' (Mistral default)'} "
                f"is not supported: attention here covers every position, so the window must be null or a "
                f"whole number of at least the context's {dims['nctx']} positions")
    if cfg.get("hidden_act") not in (None, "silu", "swish"):   # transformers' swish is SiLU
        return f"hidden_act={cfg['hidden_act']!r} is not supported (only 'silu')"
    for key in ("attention_bias", "mlp_bias"):
        if cfg.get(key) not in (None, False):   # absent or null: transformers' default, false
            return f"{key}={cfg[key]!r} is not supported (only False)"
    key, _, kind = rope_parameters(cfg)
    if kind != "default" and (not isinstance(kind, str) or kind not in ROPE_NUMBERS):
        return f"{key}: RoPE scaling {json.dumps(kind)[:40]} is not supported (default, {', '.join(ROPE_NUMBERS)})"
    # transformers' Llama rotates whole heads whatever this says, unless RoPE is scaled: then it fails
    rotary = cfg.get("partial_rotary_factor", 1)
    if kind != "default" and rotary != 1:
        return (f"partial_rotary_factor={json.dumps(rotary)[:40]} with RoPE scaling '{kind}' is not supported "
                "(RoPE over whole heads only)")
    return odd_head(dims["dh"])


def rope_parameters(cfg: dict) -> tuple[str, object, object]:
    """(key, value, kind) of the RoPE settings as transformers reads them: 4's rope_scaling where
    set, else 5's rope_parameters ({} where neither is); its rope_type, else type, else "default"
    (also where the value is not a JSON object, which the run names)."""
    key = "rope_scaling" if cfg.get("rope_scaling") else "rope_parameters"
    params = cfg.get(key) or {}
    kind = params.get("rope_type", params.get("type", "default")) if isinstance(params, dict) else "default"
    return key, params, kind


def rope_settings(path: Path, cfg: dict) -> tuple[float, dict | None]:
    """(base, scaling) from transformers 5's rope_parameters or 4's rope_theta + rope_scaling,
    each number checked (the kind is checked with the rest of what a run refuses, `run_refusal`):
    `arena run` builds its RoPE tables from them, and `arena plan` notes what the run refuses."""
    key, params, kind = rope_parameters(cfg)
    if not isinstance(params, dict):
        raise ArenaError(f"{path}: {key} is {json.dumps(params)[:40]}; it must be a JSON object")
    params = dict(params)
    theta_key = f"{key}.rope_theta" if "rope_theta" in params else "rope_theta"
    theta = positive(path, theta_key, params.pop("rope_theta", cfg.get("rope_theta", 10000.0)), float)
    if kind == "default":
        return theta, None
    if kind == "llama3":    # as transformers standardizes it: a top-level value wins, else the context
        if "original_max_position_embeddings" in cfg:
            params["original_max_position_embeddings"] = cfg["original_max_position_embeddings"]
        params.setdefault("original_max_position_embeddings", cfg.get("max_position_embeddings"))
    for name, kind_of in ROPE_NUMBERS[kind].items():
        params[name] = positive(path, f"{key}.{name}", params.get(name), kind_of)
    if kind == "llama3" and params["high_freq_factor"] <= params["low_freq_factor"]:
        raise ArenaError(f"{path}: {key}: high_freq_factor ({params['high_freq_factor']}) must be above "
                         f"low_freq_factor ({params['low_freq_factor']})")
    return theta, {**params, "rope_type": kind}


def gguf_refusal(header: Header, path: Path, dims: dict[str, int]) -> str | None:
    """What `arena run` refuses in a llama GGUF file the planner reads (None: nothing): biases,
    which llama.cpp adds where present, RoPE over part of a head or scaled otherwise than
    linearly, values of another size than the keys, an odd head size, a tensor missing or left
    unread (gguf_tensors.unread)."""
    bias = next((name for name in header.tensors if name.endswith(".bias")), None)
    if bias:
        return f"tensor '{bias}' is a bias; layers with biases are not supported"
    rotated, values = (positive(path, key, gguf_meta(header, path, key, dims["dh"]))
                       for key in ("llama.rope.dimension_count", "llama.attention.value_length"))
    if rotated != dims["dh"]:
        return f"RoPE over {rotated} of {dims['dh']} head dimensions is not supported"
    if values != dims["dh"]:
        return (f"llama.attention.value_length is {values}, where the head size is {dims['dh']}: values and keys "
                "of two sizes are not supported")
    scaling = gguf_meta(header, path, "llama.rope.scaling.type", "linear")   # as llama.cpp reads it
    if scaling not in ("none", "linear"):
        return f"RoPE scaling '{scaling}' is not supported (none, linear)"
    # the planner does without a token embedding or a layer's tensor; a forward pass cannot
    return odd_head(dims["dh"]) or unread(header, dims["nlayers"])


def odd_head(dh: int) -> str | None:
    """RoPE turns the two halves of each head against each other: an odd head size has no halves."""
    return f"the head size is {dh}; RoPE needs an even one" if dh % 2 else None


def config_dims(path: Path, cfg: dict | None = None) -> dict[str, int]:
    """The dimensions in a config.json (`cfg`, its object, when the caller has read it), of a
    network the llama schedule computes (check_architecture)."""
    cfg = read_json_object(path, "config.json") if cfg is None else cfg
    check_architecture(path, cfg)
    for dim, key in CONFIG_KEYS.items():
        if dim not in OPTIONAL and key not in cfg:
            raise ArenaError(f"{path}: config.json lacks '{key}'")
    # transformers reads null as absent for the optional keys (num_key_value_heads: null is MHA)
    found = {dim: (key, cfg[key]) for dim, key in CONFIG_KEYS.items()
             if key in cfg and not (dim in OPTIONAL and cfg[key] is None)}
    for dim, value in CONFIG_DEFAULTS.get(cfg.get("model_type"), {}).items():
        if CONFIG_KEYS[dim] not in cfg:     # absent; null stays as above (null heads are MHA)
            found[dim] = (f"MistralConfig's default {CONFIG_KEYS[dim]}", value)     # as messages name it
    return _checked(path, found)


def gguf_dims(header: Header, path: Path) -> dict[str, int]:
    """The dimensions of a llama GGUF file, from its metadata and its token embedding."""
    meta = partial(gguf_meta, header, path)
    arch = meta("general.architecture")
    if arch != "llama":
        raise ArenaError(f"{path}: architecture '{arch}' is not supported (only llama); {OTHER_NETWORKS}")
    experts = meta("llama.expert_count", 0)
    if type(experts) is not int or experts < 0:
        raise ArenaError(f"{path}: llama.expert_count is {_shown(experts)}; it must be a count (0: no experts)")
    if experts != 0:   # Mixtral's files say llama too; their FFN tensors are per expert
        raise ArenaError(f"{path}: llama.expert_count is {json.dumps(experts)}: mixture-of-experts models "
                         "are not supported")
    found = {dim: (key, meta(key)) for dim, key in GGUF_KEYS.items() if dim not in OPTIONAL or key in header.fields}
    return _checked(path, {**found, "vocab": _gguf_vocab(header, path)})


def _checked(path: Path, found: dict[str, tuple[str, object]]) -> dict[str, int]:
    """The dims of `found` ({dim: (the key it was read under, its value)}) once each is a positive
    integer and the heads fit together, the optional ones absent from `found` filled in."""
    dims = {dim: positive(path, key, value, int) for dim, (key, value) in found.items()}
    key = {dim: k for dim, (k, _) in found.items()}
    for dim, value in dims.items():     # as --set binds them; else blamed on a schedule's shape that holds it
        if value >= 10**SET_DIGITS and dim != "nctx":     # (the context is a default --nctx replaces)
            raise ArenaError(f"{path}: {key[dim]} is {value}; too large, {SET_DIGITS} digits at most")
    dims.setdefault("nkvh", dims["nh"])
    dims.setdefault("nctx", DEFAULT_NCTX)
    if dims["nh"] % dims["nkvh"]:
        raise ArenaError(f"{path}: " + uneven_heads(f"{key['nh']} ({dims['nh']})", f"{key['nkvh']} ({dims['nkvh']})"))
    if "dh" not in dims:
        if dims["d"] % dims["nh"]:
            raise ArenaError(f"{path}: {key['d']} ({dims['d']}) is not a multiple of {key['nh']} "
                             f"({dims['nh']}), and the file gives no head size")
        dims["dh"] = dims["d"] // dims["nh"]
    return {dim: dims[dim] for dim in DIMS}


def uneven_heads(nh: str, nkvh: str) -> str:
    """The fault of query heads (`nh`, as said) that are no multiple of the key-value heads."""
    return f"{nh} is not a multiple of {nkvh}: grouped-query attention gives each key-value head the same " \
        "number of query heads"


def rms_norm_eps(path: Path, cfg: dict) -> float:
    """config.json's rms_norm_eps (transformers' default where absent), a positive number."""
    return positive(path, "rms_norm_eps", cfg.get("rms_norm_eps", 1e-6), float)


def positive(path: Path, key: str, value, kind: type = int):
    """`value` once it is a positive int (kind int: 576.0 is not one) or a positive finite number
    (kind float: an int will do); never a bool, which JSON and GGUF keep apart from numbers."""
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= sys.float_info.max
    if not ok:
        wanted = "a positive integer" if kind is int else "a positive number"
        raise ArenaError(f"{path}: {key} is {_shown(value)}; it must be {wanted}")
    return kind(value)


def _shown(value) -> str:
    """`value` as the file writes it (null, "576", 576.0), cut short when it is long."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= 40 else text[:39] + "…"


def _gguf_vocab(header: Header, path: Path) -> tuple[str, object]:
    """(where it comes from, the vocabulary size). The embedding's rows are the vocabulary the
    model computes with (the metadata may count fewer when the embedding is padded); the metadata
    serves files without the tensor."""
    embedding = header.tensors.get("token_embd.weight")
    if embedding is not None:
        if len(embedding.shape) != 2:
            count = len(embedding.shape)
            raise ArenaError(f"{path}: tensor 'token_embd.weight' has {count} {plural(count, 'dimension')} "
                             f"{_shown(list(embedding.shape))}; it must have 2 (hidden size, vocabulary)")
        return "the rows of token_embd.weight", embedding.shape[-1]   # (d, vocab), innermost first
    if "llama.vocab_size" in header.fields:
        return "llama.vocab_size", gguf_meta(header, path, "llama.vocab_size")
    tokens = header.fields.get("tokenizer.ggml.tokens")
    if tokens is None:
        raise ArenaError(f"{path}: GGUF metadata lacks 'tokenizer.ggml.tokens'")
    if not isinstance(tokens, list):
        raise ArenaError(f"{path}: GGUF metadata 'tokenizer.ggml.tokens' is not an array of the vocabulary's tokens")
    return "the length of tokenizer.ggml.tokens", len(tokens)


def gguf_meta(header: Header, path: Path, key: str, default=_REQUIRED):
    """The metadata value under `key`; an ArenaError when it is missing and no default is given."""
    if key not in header.fields:
        if default is _REQUIRED:
            raise ArenaError(f"{path}: GGUF metadata lacks '{key}'")
        return default
    try:
        return decoded(header.fields[key])
    except UnicodeDecodeError:
        raise ArenaError(f"{path}: GGUF metadata '{key}' is not valid UTF-8") from None


def parse_sets(items: list[str]) -> dict[str, int]:
    """--set n=512 --set nctx=4096 -> {"n": 512, "nctx": 4096}"""
    dims = {}
    for item in items or []:
        match = _SET.fullmatch(item)
        if not match or not match[1]:
            raise ArenaError(f"--set {item}: expected NAME=INTEGER, e.g. --set n=512")
        name, value = expr.identifier(match[1]), match[2]
        if name in dims:
            raise ArenaError(f"--set {item}: {name} is bound twice (--set {name}={dims[name]} too); give it once")
        digits = value.lstrip("-").lstrip("0")      # leading zeros add nothing (and int() counts them)
        if len(digits) > SET_DIGITS:
            raise ArenaError(f"--set {item}: too large, {SET_DIGITS} digits at most")
        dims[name] = (-1 if value.startswith("-") else 1) * int(digits or "0")
    return dims
