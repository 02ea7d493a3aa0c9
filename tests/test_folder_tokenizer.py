"""A folder's tokenizer.json against transformers 5, which does not read every file as it is:
it encodes a prompt without the padding and truncation the file may carry, and rebuilds the
tokenizer of some classes from the file's vocabulary and merges (Qwen2Tokenizer here; the
Llama classes in test_tokenizer.py, GPT2Tokenizer in test_chat.py)."""
import json
import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

_rng = random.Random(3)
LINES = [" ".join(_rng.choice(["the", "KV", "cache", "holds", "2024", "31415", "tokens", "ünïcode", "東京", "\n",
                               "it's", "they're", "  ", "\r\n", "a.b", "(x)"]) for _ in range(20)) for _ in range(400)]
TEXTS = ["the KV cache holds 31415 tokens", "  2024\n\n it's 7", "line\r\nline", "Cafe\u0301 and café",
         "they're (x)a.b 12345678901", "東京 2024", "", " "]


def _byte_level_folder(folder, tokenizer_class: str, **settings):
    """A byte-level BPE trained here on LINES, saved with GPT-2's split and `settings`
    (padding, truncation) as tokenizer.json, under `tokenizer_class`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(LINES, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "</s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if "padding" in settings:
        tok.enable_padding(**settings["padding"])
    if "truncation" in settings:
        tok.enable_truncation(**settings["truncation"])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": tokenizer_class}))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


def _same_as_transformers(folder):
    from transformers import AutoTokenizer

    from executor.tokenizer import from_folder
    ours, theirs = from_folder(folder), AutoTokenizer.from_pretrained(str(folder))
    for text in TEXTS:
        ids = theirs(text)["input_ids"]
        assert ours.encode(text) == ids, text
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True), text


@pytest.mark.parametrize("settings", [
    {"padding": {"pad_id": 1, "pad_token": "</s>", "pad_to_multiple_of": 8}},
    {"padding": {"pad_id": 1, "pad_token": "</s>", "length": 40, "direction": "left"}},
    {"truncation": {"max_length": 4}},
], ids=["pad-to-multiple", "pad-left-fixed", "truncate"])
def test_padding_and_truncation_in_the_file_do_not_touch_a_prompt(tmp_path, settings):
    """Checkpoints ship tokenizer.json with padding or truncation set for training; a prompt
    was padded (pad tokens prefilled) or cut short without a word."""
    _same_as_transformers(_byte_level_folder(tmp_path, "PreTrainedTokenizerFast", **settings))


def test_a_qwen2_tokenizer_folder_splits_as_transformers_rebuilds_it(tmp_path):
    """Under Qwen2Tokenizer transformers keeps only the file's vocabulary and merges: NFC first,
    then digits one at a time and runs of line breaks apart, which GPT-2's split of the file
    keeps together."""
    folder = _byte_level_folder(tmp_path, "Qwen2Tokenizer")
    from executor.tokenizer import from_folder
    assert from_folder(folder).encode("31415") != Tokenizer.from_file(str(folder / "tokenizer.json")).encode("31415").ids
    _same_as_transformers(folder)


def test_a_chat_prompt_is_the_templates_text_with_no_second_bos(tmp_path):
    """The template writes the BOS; the file's post-processor, which adds one to a plain prompt,
    adds none to the chat prompt (transformers tokenizes a rendered chat without special tokens)."""
    from tokenizers import processors

    from executor.tokenizer import from_folder
    tok = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2, "hi": 3, "[INST]": 4}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(["<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "chat_template": "{{ bos_token }}[INST] {{ messages[0]['content'] }}"}))
    ours = from_folder(tmp_path)
    assert ours.encode("hi") == [1, 3] and ours.encode_chat("hi") == [1, 4, 3]


@pytest.mark.parametrize("decoder, added", [
    ({"4": {"content": "<z>", "special": True}, "5": {"content": "<z>", "special": False}}, False),  # twice: the first
    ({"6": {"content": "<z>", "special": True}}, True),     # the config's flags over tokenizer.json's own
], ids=["twice", "over-the-file"])
def test_the_configs_added_tokens_are_read_as_transformers_reads_them(tmp_path, decoder, added):
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    from executor.tokenizer import from_folder
    tok = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2, "hi": 3, "<x>": 4, "<y>": 5, "<z>": 6},
                                     unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if added:
        tok.add_tokens([AddedToken("<z>", special=False)])
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": decoder}))
    reference = AutoTokenizer.from_pretrained(str(tmp_path))
    assert from_folder(tmp_path).decode([3, 6]) == reference.decode([3, 6], skip_special_tokens=True) == "hi"
