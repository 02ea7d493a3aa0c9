"""Hugging Face checkpoints: a folder with config.json and *.safetensors (one file, or shards
listed in model.safetensors.index.json). Tensors are already in transformers' layout."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from planner.errors import ArenaError
from planner.models import config_dims

from .weights import ModelConfig

INDEX = "model.safetensors.index.json"


class Checkpoint:
    def __init__(self, folder: Path):
        self.path = Path(folder)
        cfg = _read_json(self.path / "config.json")
        _check_architecture(self.path / "config.json", cfg)
        theta, scaling = _rope(cfg)
        self.config = ModelConfig(**config_dims(self.path / "config.json"), eps=cfg.get("rms_norm_eps", 1e-6),
                                  rope_theta=theta, rope_scaling=scaling,
                                  tied=bool(cfg.get("tie_word_embeddings", False)))
        self._open: dict[Path, object] = {}
        self.files = self._weight_map()

    def has(self, name: str) -> bool:
        return name in self.files

    def get(self, name: str) -> torch.Tensor:
        if name not in self.files:
            raise ArenaError(f"{self.path}: no safetensors file holds tensor '{name}'")
        return self._handle(self.files[name]).get_tensor(name)

    def _handle(self, file: Path):
        from safetensors import safe_open
        if file not in self._open:
            try:
                self._open[file] = safe_open(str(file), framework="pt")
            except Exception as e:  # safetensors raises its own error type on a bad header
                raise ArenaError(f"{file}: not a readable safetensors file ({e})") from None
        return self._open[file]

    def _weight_map(self) -> dict[str, Path]:
        """Tensor name -> the file holding it, from the shard index or the files' own headers."""
        index = self.path / INDEX
        if index.exists():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict):
                raise ArenaError(f"{index}: no 'weight_map'")
            files = {name: self.path / file for name, file in weight_map.items()}
            for file in sorted(set(files.values())):
                if not file.is_file():
                    raise ArenaError(f"{index}: lists shard '{file.name}', which is missing")
            return files
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise ArenaError(f"{self.path}: no *.safetensors file next to config.json")
        return {name: file for file in files for name in self._handle(file).keys()}


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except OSError as e:
        raise ArenaError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:
        raise ArenaError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ArenaError(f"{path}: expected a JSON object")
    return value


def _check_architecture(path: Path, cfg: dict) -> None:
    model_type = cfg.get("model_type")
    if model_type != "llama":
        raise ArenaError(f"{path}: architecture '{model_type}' is not supported (only llama)")
    for key, ok in (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False)):
        if cfg.get(key, ok) != ok:
            raise ArenaError(f"{path}: {key}={cfg[key]!r} is not supported (only {ok!r})")


def _rope(cfg: dict) -> tuple[float, dict | None]:
    """(base, scaling) from transformers 5's rope_parameters or 4's rope_theta + rope_scaling."""
    params = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    theta = params.pop("rope_theta", cfg.get("rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    return float(theta), None if kind == "default" else {**params, "rope_type": kind}
