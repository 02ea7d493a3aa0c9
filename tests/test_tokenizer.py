"""SentencePiece vocabularies in GGUF files (Llama 2, TinyLlama, Mistral), tokenized as
SentencePiece itself tokenizes: a BPE model trained here by the sentencepiece package, written
into a GGUF file as llama.cpp's converter writes it, and our tokenizer against sentencepiece's
on text with merges, digits, runs of spaces, accents, CJK and characters no piece covers; and
the same vocabulary as a Llama 2 folder's tokenizer.json, against transformers."""
import io
import random
import re

import gguf
import pytest
import sentencepiece

from checkpoints import checkpoint_to_gguf, tiny_checkpoint
from executor.gguf_file import GGUFFile
from executor.tokenizer import from_gguf
from llama_arena.cli import main
from planner.errors import ArenaError

_SYLLABLES = "ka to ri mu sel an der ing tion pre fill ar en ob ly".split()
_rng = random.Random(2)
WORDS = ("the a of KV cache attention token layer arena offset plan buffer memory llama tensor step "
         "lifetime model decode prefill 2024 3.14 café naïve Über straße 東京 データ").split() + [
         "".join(_rng.choice(_SYLLABLES) for _ in range(_rng.randint(1, 4))) for _ in range(300)]
# what a vocabulary trained on WORDS cannot all cover: other scripts and emoji go to bytes
RARE = ["🦙", "Ωmega", "ß", "\t", "\n", "  ", "™", "ǅ", "日本語"]
TEXTS = ["the KV cache", "  two  leading spaces", "trailing space ", "3.14159 and 2024-12-04", "café 東京 データ",
         "emoji 🦙 in a llama", "", " ", "lines\nand\ttabs", "prefill the prefill of the prefilled arena"]


@pytest.fixture(scope="module")
def vocabulary(tmp_path_factory):
    """(sentencepiece's processor, a GGUF model file with its vocabulary): Llama 2's settings,
    byte fallback, digits split, no normalization, a space put in front."""
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(3000)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=1000, byte_fallback=True,
        split_digits=True, normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
        character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, minloglevel=2)
    sp = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    folder = tiny_checkpoint(tmp_path_factory.mktemp("spm"), "mha-untied", vocab_size=sp.get_piece_size(),
                             bos_token_id=sp.bos_id(), eos_token_id=sp.eos_id())
    return sp, folder, checkpoint_to_gguf(folder, folder / "spm.gguf", metadata=lambda w: _write_vocabulary(w, sp))


def _write_vocabulary(w, sp, **broken) -> None:
    """As llama.cpp's convert_hf_to_gguf.py writes a SentencePiece vocabulary (with the
    `broken` values in place of its scores, types or BOS id)."""
    n = sp.get_piece_size()
    kinds = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 5 if sp.is_unused(i)
             else 1 for i in range(n)]
    w.add_tokenizer_model("llama")
    w.add_token_list(broken.get("tokens", [sp.id_to_piece(i) for i in range(n)]))
    w.add_token_scores(broken.get("scores", [sp.get_score(i) for i in range(n)]))
    w.add_array("tokenizer.ggml.token_type", broken.get("types", kinds))
    if broken.get("ids", True):
        w.add_uint32("tokenizer.ggml.bos_token_id", broken.get("bos", sp.bos_id()))
        w.add_eos_token_id(sp.eos_id())
        w.add_unk_token_id(sp.unk_id())


def _random_texts(count: int) -> list[str]:
    rng = random.Random(1)
    pieces = WORDS + RARE + [" ", " ", "0", "42", ".", "-"]
    return ["".join(rng.choice(pieces) + rng.choice(["", " ", "  "]) for _ in range(rng.randint(1, 12)))
            for _ in range(count)]


def test_a_sentencepiece_vocabulary_tokenizes_as_sentencepiece_does(vocabulary):
    sp, _, path = vocabulary
    ours = from_gguf(GGUFFile(path))
    merged = 0
    for text in TEXTS + _random_texts(300):
        want = sp.encode(text)
        assert ours.encode(text) == [sp.bos_id()] + want, text
        assert ours.decode([sp.bos_id()] + want) == sp.decode(want), text
        merged += sum(len(sp.id_to_piece(i)) > 1 and not sp.is_byte(i) for i in want)
    assert merged > 500     # the merges were exercised, not only single characters and bytes


def test_generation_ends_at_the_end_of_a_turn_as_at_the_end_of_the_text(vocabulary, tmp_path):
    """llama.cpp stops at EOS, EOT and EOM; an id out of the vocabulary is left out."""
    sp, folder, _ = vocabulary

    def metadata(w):
        _write_vocabulary(w, sp)
        w.add_uint32("tokenizer.ggml.eot_token_id", 7)
        w.add_uint32("tokenizer.ggml.eom_token_id", 10 ** 6)

    path = checkpoint_to_gguf(folder, tmp_path / "eot.gguf", metadata=metadata)
    assert from_gguf(GGUFFile(path)).eos_ids == {sp.eos_id(), 7}


def test_generation_ends_at_tokens_llama_cpp_knows_as_ends_by_their_text(vocabulary, tmp_path):
    """Chat models' ends of turn that a file does not name by id (early Llama 3 files)."""
    sp, folder, _ = vocabulary
    tokens = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    tokens[7:11] = "<|eot_id|>", "<|im_end|>", "<|fim_pad|>", "<|file_sep|>"

    def metadata(w):
        _write_vocabulary(w, sp, tokens=tokens)
        w.add_uint32("tokenizer.ggml.fim_sep_token_id", 12)    # named: its text is not looked for

    ours = from_gguf(GGUFFile(checkpoint_to_gguf(folder, tmp_path / "ends.gguf", metadata=metadata)))
    assert ours.eos_ids == {sp.eos_id(), 7, 8, 9, 12}
    assert ours.encode("a<|im_end|>", add_special_tokens=False)[-1] == 8     # matched whole, as a control token


def test_generation_ends_at_the_files_eos_whatever_its_text(vocabulary, tmp_path):
    """An EOS id naming a token that is no known end of turn by its text is an end all the same."""
    sp = vocabulary[0]
    ours = _tokenizer_with(vocabulary, tmp_path / "eos.gguf", eos_token_id=9)
    assert 9 in ours.eos_ids and sp.id_to_piece(9) not in ("</s>", "<|eot_id|>", "<|im_end|>")


def _tokenizer_with(vocabulary, path, **keys):
    """The tokenizer of the vocabulary's model file with `keys` written too (add_bos_token=True:
    GGUFWriter.add_add_bos_token(True))."""
    sp, folder, _ = vocabulary

    def metadata(w):
        _write_vocabulary(w, sp)
        for key, value in keys.items():
            getattr(w, f"add_{key}")(value)

    return from_gguf(GGUFFile(checkpoint_to_gguf(folder, path, metadata=metadata)))


@pytest.mark.parametrize("bos, eos", [(True, True), (False, True), (False, False)])
def test_bos_and_eos_are_added_as_the_file_says(vocabulary, tmp_path, bos, eos):
    sp = vocabulary[0]
    ours = _tokenizer_with(vocabulary, tmp_path / "flags.gguf", add_bos_token=bos, add_eos_token=eos)
    for text in TEXTS[:4]:
        assert ours.encode(text) == sp.encode(text, add_bos=bos, add_eos=eos), text
        assert ours.encode(text, add_special_tokens=False) == sp.encode(text)


@pytest.mark.parametrize("key, value", [("add_bos_token", "false"), ("add_eos_token", [False]),
                                        ("add_space_prefix", 0)])
def test_a_flag_that_is_not_true_or_false_is_refused(vocabulary, tmp_path, key, value):
    """The string "false" read as true (llama.cpp refuses it too)."""
    sp, folder, _ = vocabulary

    def metadata(w):
        _write_vocabulary(w, sp)
        getattr(w, {str: "add_string", list: "add_array", int: "add_uint32"}[type(value)])(f"tokenizer.ggml.{key}", value)
    path = checkpoint_to_gguf(folder, tmp_path / "flag.gguf", metadata=metadata)
    with pytest.raises(ArenaError, match=re.escape(f"{path}: GGUF metadata 'tokenizer.ggml.{key}' is {value!r}; "
                                                   "it must be true or false")):
        from_gguf(GGUFFile(path))


@pytest.mark.parametrize("template", ["<|user|>{{ messages[0]['content'] }}<|assistant|>",      # TinyLlama's way
                                      "{{ bos_token }}[INST] {{ messages[0]['content'] }} [/INST]"])  # Llama 2's
@pytest.mark.parametrize("bos", [True, False])
def test_a_gguf_chat_prompt_has_the_files_bos_once_as_llama_cpps(vocabulary, tmp_path, template, bos):
    """llama.cpp takes a template's leading BOS text off when the file adds BOS to every prompt,
    then adds it: one BOS, whether the template writes it or not."""
    sp = vocabulary[0]
    ids = _tokenizer_with(vocabulary, tmp_path / "chat.gguf", add_bos_token=bos, chat_template=template) \
        .encode_chat("the KV cache")
    writes_bos = "bos_token" in template
    assert ids.count(sp.bos_id()) == (1 if bos or writes_bos else 0)
    assert (ids[0] == sp.bos_id()) == (bos or writes_bos)


def test_a_gguf_chat_prompt_has_the_files_eos_once_as_llama_cpps(vocabulary, tmp_path):
    """A template that writes EOS last, in a file that adds EOS to every prompt: one EOS, last."""
    sp = vocabulary[0]
    ids = _tokenizer_with(vocabulary, tmp_path / "chat.gguf", add_bos_token=False, add_eos_token=True,
                          chat_template="{{ messages[0]['content'] }}{{ eos_token }}").encode_chat("the KV cache")
    assert ids.count(sp.eos_id()) == 1 and ids[-1] == sp.eos_id()


def test_an_unknown_token_typed_in_a_prompt_is_that_token(vocabulary):
    """As llama.cpp parses a prompt: <unk> is matched whole, as a control token is, and the
    text after it gets a space in front."""
    sp, _, path = vocabulary
    ids = from_gguf(GGUFFile(path)).encode("a <unk> b")
    assert ids == [sp.bos_id()] + sp.encode("a ") + [sp.unk_id()] + sp.encode(" b")


def test_a_sentencepiece_vocabulary_without_ids_has_llama_cpps_bos_and_eos(vocabulary, tmp_path):
    sp, folder, _ = vocabulary
    path = checkpoint_to_gguf(folder, tmp_path / "noids.gguf", metadata=lambda w: _write_vocabulary(w, sp, ids=False))
    ours = from_gguf(GGUFFile(path))
    assert (ours.encode("the KV cache"), ours.eos_ids) == ([1] + sp.encode("the KV cache"), {2})


def test_a_model_with_a_sentencepiece_vocabulary_runs(vocabulary, capsys):
    _, _, path = vocabulary
    assert main(["run", "--model", str(path), "--prompt", "the KV cache", "--max-new-tokens", "4",
                 "--ignore-eos", "--json"]) == 0
    assert '"prompt_tokens": [1, ' in capsys.readouterr().out     # BOS first, as Llama 2 puts it


@pytest.mark.parametrize("broken, message", [
    (dict(scores=[0.5]), "GGUF metadata 'tokenizer.ggml.scores' has 1 entries; the vocabulary has 1,000 tokens"),
    (dict(types=["normal"] * 1000), "GGUF metadata 'tokenizer.ggml.token_type' must be an array of integers"),
    (dict(bos=5000), "GGUF metadata 'tokenizer.ggml.bos_token_id' is 5000; it must be a token id below 1,000"),
], ids=["scores", "types", "bos"])
def test_a_broken_vocabulary_is_exit_2_naming_the_key(vocabulary, tmp_path, capsys, broken, message):
    sp, folder, _ = vocabulary
    path = checkpoint_to_gguf(folder, tmp_path / "broken.gguf", metadata=lambda w: _write_vocabulary(w, sp, **broken))
    assert main(["run", "--model", str(path), "--prompt", "the KV cache"]) == 2
    assert capsys.readouterr().err == f"arena: error: {path}: {message}\n"


def test_the_stream_goes_on_after_a_stray_byte(vocabulary):
    """Byte fallback rewrites a printed newline as U+FFFD once a stray byte follows it; the stream
    must not fall silent there, and prints what sentencepiece decodes."""
    from executor.generate import TextStream
    sp, _, path = vocabulary
    ids = [sp.piece_to_id("<0x0A>"), sp.piece_to_id("<0xF0>")] + sp.encode("the KV cache arena")
    stream = TextStream(from_gguf(GGUFFile(path)).decode)
    shown = "".join(stream.push(i) for i in ids) + stream.flush()
    assert shown == sp.decode(ids) == "\n\ufffd the KV cache arena"


@pytest.mark.parametrize("pre, ids", [("llama-bpe", [6, 5]), ("gpt-2", [0, 3])])
def test_llama_3_vocabularies_take_whole_words_before_merges_and_bos_first(vocabulary, tmp_path, pre, ids):
    """llama.cpp's rules for Llama 3's byte-level vocabulary (ignore_merges, and BOS unless
    tokenizer.ggml.add_bos_token says not): 'xqz' is a token the merges never reach, since
    'q z' merges first. GPT-2's own rules merge and add no BOS."""
    _, folder, _ = vocabulary

    def byte_level(w):
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(["x", "q", "z", "qz", "xq", "xqz", "<s>"])
        w.add_token_types([1] * 6 + [3])
        w.add_token_merges(["q z", "x q", "xq z"])
        w.add_bos_token_id(6)
    path = checkpoint_to_gguf(folder, tmp_path / "bpe.gguf", metadata=byte_level)
    assert from_gguf(GGUFFile(path)).encode("xqz") == ids


@pytest.mark.parametrize("pre, pieces", [("gpt-2", ["'re", "1234"]), ("default", ["'", "re", "123", "4"]),
                                         (None, ["'", "re", "123", "4"])])
def test_a_file_naming_no_pre_tokenizer_splits_as_llama_cpp_s_default(vocabulary, tmp_path, pre, pieces):
    """llama.cpp's default (a file converted before the names, or 'default'): runs of punctuation
    split off first, then GPT-2's split, runs of digits, and three digits at a time."""
    _, folder, _ = vocabulary
    tokens = ["'", "r", "e", "re", "'re", "1", "2", "3", "4", "12", "123", "1234"]

    def byte_level(w):
        w.add_tokenizer_model("gpt2")
        if pre is not None:
            w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_merges(["r e", "' re", "1 2", "12 3", "123 4"])
    path = checkpoint_to_gguf(folder, tmp_path / "bpe.gguf", metadata=byte_level)
    assert from_gguf(GGUFFile(path)).encode("'re1234") == [tokens.index(p) for p in pieces]


@pytest.mark.parametrize("config, model_type", [({"legacy": False}, "llama"), ({"legacy": True}, "llama"),
                                                ({"add_prefix_space": False}, "llama"), ({}, "llama"),
                                                ({"added_tokens_decoder": {}}, "llama"), ({}, "mistral"),
                                                ({"tokenizer_class": "CodeLlamaTokenizer"}, "llama"),
                                                ({"tokenizer_class": "CodeLlamaTokenizer", "legacy": True,
                                                  "add_prefix_space": False}, "llama")])
def test_a_llama_2_folder_tokenizes_as_transformers_rebuilds_it(vocabulary, tmp_path, config, model_type):
    """A Llama 2 folder: tokenizer.json as transformers' LlamaConverter wrote Llama 2's (a
    normalizer that puts "▁" before every part between special tokens), tokenizer_class
    LlamaTokenizer. transformers 5 keeps only its vocabulary and merges and splits with
    Metaspace: one "▁" before the text, none before a leading space, none after a special token;
    its added tokens are the config's added_tokens_decoder where it has one (`<extra>`, only in
    the file, is then text). A Mistral folder's file is read as it is. CodeLlamaTokenizer is
    rebuilt the same way (it has no `legacy`), and names its infilling tokens."""
    import json
    import shutil

    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from transformers import AutoTokenizer
    from transformers.tokenization_utils_base import generate_merges

    from executor.tokenizer import from_folder

    sp, folder, _ = vocabulary
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = generate_merges(vocab, {piece: sp.get_score(i) for piece, i in vocab.items()})
    tok = Tokenizer(BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.add_tokens([AddedToken("<extra>", normalized=False)])
    model = tmp_path / "model"
    shutil.copytree(folder, model, ignore=shutil.ignore_patterns("*.gguf"))
    tok.save(str(model / "tokenizer.json"))
    (model / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, **config}))
    if model_type != "llama":
        (model / "config.json").write_text(json.dumps({**json.loads((model / "config.json").read_text()),
                                                       "model_type": model_type, "sliding_window": None}))
    ours, theirs = from_folder(model), AutoTokenizer.from_pretrained(str(model))
    for text in TEXTS + RARE + [" the cache", "the</s> cache", "<s>arena", "a  </s>  b", "the<extra> cache",
                                "a ▁<SUF>b"]:
        ids = theirs(text)["input_ids"]
        assert ours.encode(text) == ids, text
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True), text


def test_a_failing_chat_template_names_its_file_and_key(vocabulary, tmp_path):
    """One that raises names the file and key it came from; one that is no text is refused."""
    sp, folder, _ = vocabulary

    def with_template(value, kind):
        return lambda w: (_write_vocabulary(w, sp), w.add_key_value("tokenizer.chat_template", value, kind))
    path = checkpoint_to_gguf(folder, tmp_path / "t.gguf",
                              metadata=with_template("{{ raise_exception('no') }}", gguf.GGUFValueType.STRING))
    with pytest.raises(ArenaError, match=re.escape(f"--chat: the chat template in {path} (tokenizer.chat_template) "
                                                   "failed: no")):
        from_gguf(GGUFFile(path)).encode_chat("hi")
    path = checkpoint_to_gguf(folder, tmp_path / "n.gguf", metadata=with_template(5, gguf.GGUFValueType.UINT32))
    with pytest.raises(ArenaError, match=re.escape(f"{path}: tokenizer.chat_template is 5; it must be a template")):
        from_gguf(GGUFFile(path))


class Metadata:
    """A GGUF file's tokenizer metadata alone (from_gguf reads nothing else)."""
    path = "fake.gguf"

    def __init__(self, **meta):
        self.fields = meta

    def meta(self, key, default=None):
        return self.fields.get(key, default)


def test_user_defined_pieces_are_whole_tokens_in_text_and_in_merges():
    """A SentencePiece vocabulary's user-defined pieces (token type 4): typed in a prompt they are
    that token, and the merges reach one ('▁ab') as they reach a normal piece."""
    tokens = ["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "▁ab", "<tag>"]
    tok = from_gguf(Metadata(**{"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
                                "tokenizer.ggml.token_type": [2, 3, 3, 1, 1, 1, 1, 4, 4],
                                "tokenizer.ggml.scores": [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -0.5, -0.2, 0.0],
                                "tokenizer.ggml.add_bos_token": False}))
    assert [tokens[i] for i in tok.encode("a<tag>b")] == ["▁a", "<tag>", "▁", "b"]
    assert [tokens[i] for i in tok.encode("ab")] == ["▁ab"]


def test_a_special_token_of_id_0_is_named_to_the_chat_template():
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "h", "i", "hi"]
    tok = from_gguf(Metadata(**{"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
                                "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": [3, 3, 3, 1, 1, 1],
                                "tokenizer.ggml.merges": ["h i"], "tokenizer.ggml.bos_token_id": 0,
                                "tokenizer.ggml.eos_token_id": 2,
                                "tokenizer.chat_template": "{{ bos_token }}<|im_start|>{{ messages[0]['content'] }}"}))
    assert tok.encode_chat("hi") == [0, 1, 5]
