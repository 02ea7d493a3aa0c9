"""Hugging Face checkpoints: a folder with config.json and *.safetensors (model.safetensors, or
shards listed in model.safetensors.index.json). Tensors are already in transformers' layout."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from planner.errors import ArenaError, read_json_object, regular_file
from planner.models import config_dims, rms_norm_eps, rope_settings, run_refusal, tied_embeddings

from .weights import ModelConfig

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
FLOATS = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}    # safetensors' names


class Checkpoint:
    def __init__(self, folder: Path):
        self.path = Path(folder)
        config = self.path / "config.json"
        cfg = read_json_object(config, "config.json")
        dims = config_dims(config, cfg)
        refusal = run_refusal(cfg, dims)
        if refusal:
            raise ArenaError(f"{config}: {refusal}")
        theta, scaling = rope_settings(config, cfg)
        self.config = ModelConfig(**dims, eps=rms_norm_eps(config, cfg),
                                  rope_theta=theta, rope_scaling=scaling, tied=tied_embeddings(config, cfg))
        self._open: dict[Path, object] = {}
        self._offsets: dict[Path, dict[str, tuple[int, int, list[int]]]] = {}
        stored = self._weight_map()
        # a LlamaModel saved alone names its tensors without "model." and has no head; transformers
        # loads it as a LlamaForCausalLM all the same (the head tied to the embedding where the
        # config says so, else missing)
        headless = "model.embed_tokens.weight" not in stored and "embed_tokens.weight" in stored
        self.stored = {"model." + name if headless else name: name for name in stored}
        self.files = {name: stored[self.stored[name]] for name in self.stored}
        # transformers ties the head to the embedding only where the file stores no head of its own
        self.config.tied = self.config.tied and not self.has("lm_head.weight")

    def has(self, name: str) -> bool:
        return name in self.files

    def stored_name(self, name: str) -> str:
        return self.stored.get(name, name)

    def get(self, name: str) -> torch.Tensor:
        return self.rows(name, 0, None)

    def shape(self, name: str) -> tuple[int, ...]:
        """The tensor's shape as its file's header gives it, nothing read."""
        file, _ = self._float(name)
        return tuple(self._header(file)[self.stored_name(name)][2])

    def rows(self, name: str, start: int, stop: int | None) -> torch.Tensor:
        """Rows start .. stop of the tensor (None: to the end), read into memory of their own,
        not a view of safe_open's memory map, whose pages would stay in the process's resident
        memory beside what is made of them (Q|K|V and gate|up fused, casts): runs of checkpoint
        folders took 1.3 - 1.4 times their --budget. (safe_open has checked the header and the
        offsets.)"""
        file, dtype = self._float(name)
        begin, end, shape = self._header(file)[self.stored_name(name)]
        if shape:       # (a scalar has no rows: it is read whole)
            stop = shape[0] if stop is None else stop
            row = (end - begin) // shape[0] if shape[0] else 0
            begin, end, shape = begin + row * start, begin + row * stop, [stop - start, *shape[1:]]
        data = bytearray(end - begin)
        with open(file, "rb") as f:
            f.seek(begin)
            if f.readinto(data) != len(data):
                raise ArenaError(f"{file}: tensor '{name}' runs past the end of the file")
        return torch.frombuffer(data, dtype=dtype).reshape(shape) if data else torch.empty(shape, dtype=dtype)

    def _float(self, name: str) -> tuple[Path, torch.dtype]:
        """The file holding the tensor, and its float dtype; ArenaError for another dtype."""
        if name not in self.files:
            why = " (tie_word_embeddings is not true)" if name == "lm_head.weight" else ""
            raise ArenaError(f"{self.path}: no safetensors file holds tensor '{name}'{why}")
        file, stored = self.files[name], self.stored_name(name)
        try:
            handle = self._handle(file)
            kind = handle.get_slice(stored).get_dtype()
            if kind in FLOATS:
                return file, FLOATS[kind]
            w = handle.get_tensor(stored)
        except ArenaError:
            raise
        except Exception as e:  # safetensors' own error type: the index names a shard without it
            raise ArenaError(f"{file}: cannot read tensor '{stored}' ({e})") from None
        # quantized or integer weights would be cast without their scales
        raise ArenaError(f"{file}: tensor '{stored}' is {str(w.dtype).removeprefix('torch.')}; "
                         "only float32, float16 and bfloat16 weights are supported")

    def _header(self, file: Path) -> dict[str, tuple[int, int, list[int]]]:
        """Each tensor's (first byte, end byte, shape) in the file."""
        if file not in self._offsets:
            with open(file, "rb") as f:
                length = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(length))
            self._offsets[file] = {key: (8 + length + entry["data_offsets"][0], 8 + length + entry["data_offsets"][1],
                                         entry["shape"]) for key, entry in header.items() if key != "__metadata__"}
        return self._offsets[file]

    def _handle(self, file: Path):
        from safetensors import safe_open
        if file not in self._open:
            regular_file(file, "safetensors file")
            try:
                self._open[file] = safe_open(str(file), framework="pt")
            except Exception as e:  # safetensors raises its own error type on a bad header
                raise ArenaError(f"{file}: not a readable safetensors file ({e})") from None
        return self._open[file]

    def _weight_map(self) -> dict[str, Path]:
        """Tensor name -> the file holding it. As transformers looks: model.safetensors alone
        where it exists, else the shards the index lists; failing both, the headers of every
        *.safetensors file, none of whose tensors may be in two of them."""
        if (self.path / SINGLE).is_file():
            return dict.fromkeys(self._handle(self.path / SINGLE).keys(), self.path / SINGLE)
        index = self.path / INDEX
        if index.exists():
            weight_map = read_json_object(index, "shard index").get("weight_map")
            if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
                raise ArenaError(f"{index}: no 'weight_map' from tensor names to file names")
            for file in set(weight_map.values()):    # as transformers checks: shards in the Hub's cache are links
                if Path(file).anchor or ".." in Path(file).parts:
                    raise ArenaError(f"{index}: lists shard '{file}', which is outside the checkpoint's folder")
            files = {name: self.path / file for name, file in weight_map.items()}
            for file in sorted(set(files.values())):
                if not file.is_file():
                    raise ArenaError(f"{index}: lists shard '{file.name}', which is missing")
            return files
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise ArenaError(f"{self.path}: no *.safetensors file next to config.json")
        found: dict[str, Path] = {}
        for file in files:
            for name in self._handle(file).keys():
                if found.setdefault(name, file) != file:
                    raise ArenaError(f"{self.path}: tensor '{name}' is in both {found[name].name} and {file.name}, "
                                     f"and neither {SINGLE} nor {INDEX} says which to read")
        return found
