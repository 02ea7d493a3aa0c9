"""Text <-> token ids with the `tokenizers` library, built from GGUF metadata or tokenizer.json,
and the model's chat template rendered with jinja2 as transformers renders it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from planner.errors import ArenaError, read_json_object

from .chat import SPECIAL_TOKENS, folder_template, render_chat

# llama.cpp's pre-tokenizer names (tokenizer.ggml.pre) -> how text is split before the merges
# (llama-vocab.cpp). "smollm" and its kin split every digit alone, then apply GPT-2's split.
DIGITS_THEN_GPT2 = {"smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva-7b"}
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3 = {"llama3", "llama-v3", "llama-bpe", "smaug-bpe", "dbrx", "falcon3"}
GPT2 = {"gpt-2"}
# A file that names none (converted before the names were written), or "default": runs of
# punctuation split off first, then GPT-2's split, then runs of digits, then three digits at a time.
DEFAULT = {None, "default"}
GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
DEFAULT_SPLITS = (r"[\p{P}\$\+<=>\^~\|]+", GPT2_SPLIT, r"\p{N}+", r"[0-9][0-9][0-9]")
# Llama 3's own vocabulary: its merges do not reach every token, so a word that is a token
# is taken whole before any merge (ignore_merges), and BOS comes first unless the file says not.
LLAMA3_VOCABULARY = {"llama3", "llama-v3", "llama-bpe", "falcon3"}
# the special tokens a GGUF file names by id, as a chat template calls them
GGUF_SPECIAL = {"unk_token": "unknown", "pad_token": "padding", "sep_token": "seperator",   # sic: llama.cpp's key
                "mask_token": "mask"}
NORMAL, UNKNOWN, CONTROL, USER_DEFINED = 1, 2, 3, 4   # GGUF token types
SPM_BOS, SPM_EOS = 1, 2     # llama.cpp's ids for a SentencePiece vocabulary that names none
# Tokens that end generation by their text alone, as llama.cpp finds them (llama-vocab.cpp, as
# llama-cpp-python 0.3.36 ships it; not its workarounds for single models): chat models' ends
# of turn, which files often do not name by id ...
END_TEXTS = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
             "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
             "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
             "<｜end▁of▁sentence｜>", "[e~["}
# ... and fill-in-the-middle's padding, repository and file separator tokens: by id where the
# file names one, else by these texts.
FIM_ENDS = {"fim_pad": {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"},
            "fim_rep": {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"},
            "fim_sep": {"<|file_sep|>"}}


@dataclass
class TextTokenizer:
    tokenizer: object                      # tokenizers.Tokenizer
    eos_ids: set[int]
    chat_template: str | None = None
    special: dict = field(default_factory=dict)   # bos_token, eos_token, ... for the template
    template_source: str = ""      # the file (and key) it came from, for its faults; without one, why
    # a GGUF file's chat prompts as llama.cpp's: the BOS and EOS text the template writes at its
    # ends give way to those the file adds to every prompt ("": none added); None: a folder's,
    # as transformers', the template's text alone
    file_ends: tuple[str, str] | None = None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def encode_chat(self, prompt: str) -> list[int]:
        """The prompt as one user message in the model's chat template (which the command has
        checked there is), ready for the reply."""
        text = render_chat(self.chat_template, [{"role": "user", "content": prompt}], self.special,
                           self.template_source)
        if self.file_ends is None:
            ids = self.encode(text, add_special_tokens=False)   # the template writes any BOS itself
        else:
            bos, eos = self.file_ends
            text = text[len(bos):] if bos and text.startswith(bos) else text
            ids = self.encode(text[:-len(eos)] if eos and text.endswith(eos) else text)
        if not ids:
            raise ArenaError("--chat: the model's chat template renders the prompt as no tokens")
        return ids


def from_gguf(gguf) -> TextTokenizer:
    """The tokenizer in a GGUF file's metadata: byte-level BPE (tokenizer.ggml.model 'gpt2',
    Llama 3, SmolLM) or SentencePiece's BPE ('llama': Llama 2, TinyLlama, Mistral)."""
    from tokenizers import AddedToken, processors

    kind = gguf.meta("tokenizer.ggml.model")
    tokens = _array(gguf, "tokenizer.ggml.tokens", gguf.meta("tokenizer.ggml.tokens"), str, "strings")
    types = _array(gguf, "tokenizer.ggml.token_type", gguf.meta("tokenizer.ggml.token_type", [NORMAL] * len(tokens)),
                   int, "integers", len(tokens))
    if kind == "gpt2":
        tok = _byte_level_bpe(gguf, tokens)
    elif kind == "llama":
        tok = _sentencepiece_bpe(gguf, tokens, types)
    else:
        raise ArenaError(f"{gguf.path}: tokenizer model '{kind}' is not supported "
                         "(byte-level BPE 'gpt2', SentencePiece 'llama')")

    # control and unknown tokens (<|im_start|>, <unk>), and those llama.cpp takes for control
    # tokens by the ends they mark, are matched whole in a prompt and hidden when decoding;
    # user-defined ones are matched whole
    ends = _ends(gguf, tokens)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for i, (t, type_) in enumerate(zip(tokens, types))
                            if type_ in (CONTROL, UNKNOWN) or i in ends])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, type_ in zip(tokens, types) if type_ == USER_DEFINED])

    defaults = (SPM_BOS, SPM_EOS) if kind == "llama" else (None, None)
    bos, eos = (_token_id(gguf, f"tokenizer.ggml.{name}_token_id", len(tokens), default)
                for name, default in zip(("bos", "eos"), defaults))
    # the others only name tokens to a chat template: one out of range is left out, not refused
    ids = {name: gguf.meta(f"tokenizer.ggml.{key}_token_id", None) for name, key in GGUF_SPECIAL.items()}
    ids.update(bos_token=bos, eos_token=eos)
    # llama.cpp's defaults: BOS first for SentencePiece and Llama 3's vocabularies, no EOS last
    add_bos = bos is not None and _flag(gguf, "tokenizer.ggml.add_bos_token", kind == "llama" or
                                        gguf.meta("tokenizer.ggml.pre", None) in LLAMA3_VOCABULARY)
    add_eos = eos is not None and _flag(gguf, "tokenizer.ggml.add_eos_token", False)
    if add_bos or add_eos:
        first, last = [bos] if add_bos else [], [eos] if add_eos else []
        tok.post_processor = processors.TemplateProcessing(
            single=" ".join([f"{tokens[i]}:0" for i in first] + ["$A:0"] + [f"{tokens[i]}:0" for i in last]),
            special_tokens=list({tokens[i]: i for i in first + last}.items()))
    special = {name: tokens[i] for name, i in ids.items() if type(i) is int and 0 <= i < len(tokens)}
    stops = ends | {eos} if eos is not None else ends
    template = gguf.meta("tokenizer.chat_template", None)
    if template is not None and not isinstance(template, str):
        raise ArenaError(f"{gguf.path}: tokenizer.chat_template is {json.dumps(template)[:40]}; it must be a template")
    added = (tokens[bos] if add_bos else "", tokens[eos] if add_eos else "")
    source = f"{gguf.path} (tokenizer.chat_template)" if template is not None else ""
    return TextTokenizer(tok, stops, template, special, source, added)


def _ends(gguf, tokens: list[str]) -> set[int]:
    """The ids generation ends at besides EOS, as llama.cpp's: the end-of-turn and -message ids
    the file names (one out of range left out, as a chat template's), fill-in-the-middle's by
    id or by text (FIM_ENDS), and every token whose text marks an end (END_TEXTS)."""
    def named(key: str) -> int | None:
        i = gguf.meta(f"tokenizer.ggml.{key}_token_id", None)
        return i if type(i) is int and 0 <= i < len(tokens) else None

    ends = {i for i in map(named, ("eot", "eom")) if i is not None}
    for key, texts in FIM_ENDS.items():
        i = named(key)
        ends |= {i} if i is not None else {k for k, t in enumerate(tokens) if t in texts}
    return ends | {i for i, t in enumerate(tokens) if t in END_TEXTS}


def _byte_level_bpe(gguf, tokens: list[str]):
    """GPT-2's byte-level BPE from the vocabulary and merges, with the pre-tokenizer
    tokenizer.ggml.pre names."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    merges = [tuple(m.split(" ", 1)) for m in _array(gguf, "tokenizer.ggml.merges", gguf.meta("tokenizer.ggml.merges"),
                                                      str, "strings")]
    if any(len(m) != 2 for m in merges):
        raise ArenaError(f"{gguf.path}: GGUF metadata 'tokenizer.ggml.merges' must be pairs of tokens, "
                         "each written 'left right'")
    vocab = {t: i for i, t in enumerate(tokens)}
    # the tokenizers library fails on such a merge with an error of its own, or a panic
    stray = next((m for m in merges if m[0] not in vocab or m[1] not in vocab or m[0] + m[1] not in vocab), None)
    if stray:
        raise ArenaError(f"{gguf.path}: GGUF metadata 'tokenizer.ggml.merges' has '{' '.join(stray)}', "
                         "whose tokens or their join are not in tokenizer.ggml.tokens")
    pre = gguf.meta("tokenizer.ggml.pre", None)
    tok = Tokenizer(models.BPE(vocab, merges, fuse_unk=False, ignore_merges=pre in LLAMA3_VOCABULARY))

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bytes_alone = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if pre in DIGITS_THEN_GPT2:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in LLAMA3:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), "isolated"), bytes_alone])
    elif pre in GPT2:
        tok.pre_tokenizer = byte_level
    elif pre in DEFAULT:
        tok.pre_tokenizer = pre_tokenizers.Sequence([*(pre_tokenizers.Split(Regex(split), "isolated")
                                                       for split in DEFAULT_SPLITS), bytes_alone])
    else:
        raise ArenaError(f"{gguf.path}: pre-tokenizer '{pre}' is not supported "
                         f"(known: {', '.join(sorted(DIGITS_THEN_GPT2 | LLAMA3 | GPT2 | {'default'}))})")
    tok.decoder = decoders.ByteLevel()
    return tok


def _sentencepiece_bpe(gguf, tokens: list[str], types: list[int]):
    """SentencePiece's BPE as llama.cpp runs it: spaces become '▁' (one put in front, unless
    tokenizer.ggml.add_space_prefix says not), the adjacent pair whose joined piece scores
    highest merges first, and a character no piece covers falls back to its bytes (<0xXX>).
    As a BPE model of `tokenizers`, the merges are every split of a piece into two pieces,
    ordered by the joined piece's score (transformers' conversion of Llama's tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, normalizers

    scores = _array(gguf, "tokenizer.ggml.scores", gguf.meta("tokenizer.ggml.scores"), (int, float), "numbers",
                    len(tokens))
    vocab = {t: i for i, t in enumerate(tokens)}
    mergeable = {t: score for t, score, kind in zip(tokens, scores, types) if kind in (NORMAL, USER_DEFINED)}
    merges = sorted(((t[:cut], t[cut:], score) for t, score in mergeable.items() for cut in range(1, len(t))
                     if t[:cut] in mergeable and t[cut:] in mergeable),
                    key=lambda m: (-m[2], vocab[m[0]], vocab[m[1]]))
    unknown = _token_id(gguf, "tokenizer.ggml.unknown_token_id", len(tokens))
    tok = Tokenizer(models.BPE(vocab, [(a, b) for a, b, _ in merges], byte_fallback=True, fuse_unk=True,
                               unk_token=tokens[unknown] if unknown is not None else None))
    prefix = [normalizers.Prepend("▁")] if _flag(gguf, "tokenizer.ggml.add_space_prefix", True) else []
    tok.normalizer = normalizers.Sequence([*prefix, normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     *([decoders.Strip(" ", 1, 0)] if prefix else [])])
    return tok


def _array(gguf, key: str, value, kind, kinds: str, count: int | None = None) -> list:
    """`value`, read under metadata `key`, once it is a list of `count` (any number when None)
    values of `kind`; an ArenaError naming the key otherwise."""
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise ArenaError(f"{gguf.path}: GGUF metadata '{key}' must be an array of {kinds}")
    if count is not None and len(value) != count:
        raise ArenaError(f"{gguf.path}: GGUF metadata '{key}' has {len(value):,} entries; "
                         f"the vocabulary has {count:,} tokens")
    return value


def _flag(gguf, key: str, default: bool) -> bool:
    """The true or false under metadata `key`, `default` when it is absent; an ArenaError when it
    is anything else (the string "false" would read as true)."""
    value = gguf.meta(key, default)
    if type(value) is not bool:
        raise ArenaError(f"{gguf.path}: GGUF metadata '{key}' is {value!r}; it must be true or false")
    return value


def _token_id(gguf, key: str, count: int, default: int | None = None) -> int | None:
    """The token id under metadata `key`, `default` when it is absent (None when that is not a
    token either); an ArenaError when it is not one of the `count` tokens."""
    value = gguf.meta(key, None)
    if value is None:
        return default if default is not None and default < count else None
    if type(value) is not int or not 0 <= value < count:
        raise ArenaError(f"{gguf.path}: GGUF metadata '{key}' is {value!r}; it must be a token id below {count:,}")
    return value


def from_folder(folder: Path) -> TextTokenizer:
    """tokenizer.json, with the chat template and special tokens of tokenizer_config.json (and,
    for an older config, special_tokens_map.json) and the end-of-sequence ids of
    generation_config.json (or config.json)."""
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise ArenaError(f"{folder}: no tokenizer.json, so prompts cannot be tokenized: put the model's "
                         "tokenizer.json (from where its weights came) in the folder")
    try:
        text = path.read_text(encoding="utf-8")     # read once: a class's rebuild takes its parts from it too
        tok = Tokenizer.from_str(text)
    except Exception as e:  # tokenizers raises a bare Exception on a bad file
        raise ArenaError(f"{path}: not a readable tokenizer ({e})") from None
    tok.no_padding()        # a prompt is one sequence, whole, as transformers encodes it
    tok.no_truncation()
    config_path = Path(folder) / "tokenizer_config.json"
    config = _json(config_path)
    model_config = _json(Path(folder) / "config.json")
    cls = _built_as(config.get("tokenizer_class") or model_config.get("tokenizer_class"), text, model_config)
    # As transformers reads a folder: special_tokens_map.json's win, but only where the config
    # is of the kind written before added_tokens_decoder (which save_pretrained now always writes);
    # a token neither names (nor names null) is the class's default
    legacy_path = Path(folder) / "special_tokens_map.json"
    legacy = [] if "added_tokens_decoder" in config else [(_json(legacy_path), legacy_path)]
    special = dict(CLASS_SPECIAL.get(cls, {}))
    for source, where in ((config, config_path), *legacy):
        for name in (*SPECIAL_TOKENS, *special):
            if name in source:      # null (or empty): none, over the class's or the config's
                read = _tokens if name == "additional_special_tokens" else _token
                special[name] = read(source[name], f"{where}: {name}") if source[name] else None
    special = {name: token for name, token in special.items() if token}
    tok = _rebuilt_as_class(tok, text, cls, config)    # after the loop above checked its tokens
    named, extra = _special_tokens(config, special, config_path)
    _add_config_tokens(tok, config, [*named.values(), *extra], config_path,
                       _written_flags(*(source for source, _ in legacy), config))
    split = config.get("split_special_tokens", False)   # true: special tokens typed in a prompt are plain text
    if not isinstance(split, bool):
        raise ArenaError(f"{config_path}: split_special_tokens is {json.dumps(split)[:40]}; it must be true or false")
    tok.encode_special_tokens = split
    template, source = folder_template(Path(folder), config)
    return TextTokenizer(tok, _eos_ids(Path(folder)), template, named, source)


# The special tokens of the classes transformers 5 builds a folder's tokenizer as (_built_as),
# where the folder names none
LLAMA_SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
CLASS_SPECIAL = {"LlamaTokenizer": LLAMA_SPECIAL,
                 "CodeLlamaTokenizer": {**LLAMA_SPECIAL, "prefix_token": "▁<PRE>", "middle_token": "▁<MID>",
                                        "suffix_token": "▁<SUF>", "eot_token": "▁<EOT>", "fill_token": "<FILL_ME>"},
                 "GPT2Tokenizer": dict.fromkeys(("bos_token", "eos_token", "unk_token"), "<|endoftext|>"),
                 "Qwen2Tokenizer": dict.fromkeys(("eos_token", "unk_token", "pad_token"), "<|endoftext|>")}
METASPACE = {"LlamaTokenizer", "CodeLlamaTokenizer"}     # the classes of sentencepiece's BPE
# Qwen2Tokenizer's split, before ByteLevel
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")


def _built_as(name, text: str, model_config: dict) -> str | None:
    """The class of CLASS_SPECIAL that transformers 5 builds the folder's tokenizer as, from the
    tokenizer_class it names (`name`), or None where it reads tokenizer.json (`text`) as it is:
    another class or none, a Mistral folder (its model type has a tokenizer class of its own),
    or a byte-level file under LlamaTokenizer (Llama 3's)."""
    name = name.removesuffix("Fast") if isinstance(name, str) else None
    if name not in CLASS_SPECIAL or model_config.get("model_type") == "mistral":
        return None
    return None if name in METASPACE and '"ByteLevel"' in text else name


def _rebuilt_as_class(tok, text: str, name: str | None, config: dict):
    """tokenizer.json's tokenizer (`tok`, from the file's `text`) as transformers 5 rebuilds it for
    the class it builds it as (`name`, _built_as): a new tokenizer of the file's vocabulary, merges
    and post-processor alone, whose added tokens are then the config's (_add_config_tokens), or
    where the config is of the kind without added_tokens_decoder, the file's. LlamaTokenizer
    (Llama 1 and 2, TinyLlama) splits with Metaspace, which puts one "▁" before the text (before
    its first part only, unless `legacy`; none with add_prefix_space false) where the file's
    normalizer put one before every part between special tokens and before a leading space
    too; CodeLlamaTokenizer the same, without `legacy`. GPT2Tokenizer (SmolLM2) splits with
    ByteLevel alone, Qwen2Tokenizer with its own split (QWEN2_SPLIT) first. None: `tok` itself."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    if name is None:
        return tok
    model = json.loads(text).get("model") or {}
    if model.get("type") != "BPE":          # as the file's (transformers makes the class's BPE of a BPE's parts)
        return tok
    vocab, merges = model["vocab"], [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    prefix = config.get("add_prefix_space")
    if name in METASPACE:
        prefix = True if prefix is None else bool(prefix)
        legacy = name == "LlamaTokenizer" and config.get("legacy", False)
        scheme = ("always" if legacy else "first") if prefix else "never"
        unk = {"unk_token": _token(config.get("unk_token") or "<unk>", "unk_token")} if name == "CodeLlamaTokenizer" else {}
        rebuilt = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=True, byte_fallback=True, dropout=None, **unk))
        rebuilt.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=False)
        strip = prefix or name == "CodeLlamaTokenizer"
        rebuilt.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
                                            + [decoders.Strip(content=" ", left=1)] * strip)
    else:
        rebuilt = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                                end_of_word_suffix="", fuse_unk=False))
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=bool(prefix), use_regex=name == "GPT2Tokenizer")
        rebuilt.pre_tokenizer = byte_level
        if name == "Qwen2Tokenizer":
            rebuilt.normalizer = normalizers.NFC()
            rebuilt.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_SPLIT), "isolated"),
                                                             byte_level])
        rebuilt.decoder = decoders.ByteLevel()
    if tok.post_processor is not None:      # (tokenizers 0.19 refuses None)
        rebuilt.post_processor = tok.post_processor
    if "added_tokens_decoder" not in config:    # an older config: the file's added tokens are the ones
        rebuilt.add_tokens([token for _, token in sorted(tok.get_added_tokens_decoder().items())])
    return rebuilt


def _special_tokens(config: dict, special: dict, path: Path) -> tuple[dict, list]:
    """(named special tokens, extra ones) as transformers 5 reads tokenizer_config.json (`path`):
    the standard names of `special`, then any other key ending in _token, then the names of an
    extra_special_tokens mapping (a name given twice is the mapping's); and the
    extra_special_tokens list, or where there is none, additional_special_tokens (the older
    name, ignored beside a list; a mapping there names tokens too)."""
    named = {name: value for name, value in special.items() if name != "additional_special_tokens"}
    named.update({key: _token(value, key) for key, value in config.items()     # others: not tokens, as there
                  if key.endswith("_token") and key not in SPECIAL_TOKENS and _is_token(value)})
    extra = _tokens(config.get("extra_special_tokens"), f"{path}: extra_special_tokens")
    if isinstance(extra, list) and extra:
        return named, extra
    additional = special.get("additional_special_tokens") or []
    for mapping in (additional, extra):     # the extra mapping's names win, as transformers'
        if isinstance(mapping, dict):
            named.update(mapping)
    return named, additional if isinstance(additional, list) else []


FLAGS = ("single_word", "lstrip", "rstrip", "normalized", "special")


def _add_config_tokens(tok, config: dict, special: list, path: Path, written: dict[str, dict]) -> None:
    """What transformers 5 adds to tokenizer.json's tokenizer from tokenizer_config.json (`path`):
    the tokens of its added_tokens_decoder by id, with the flags written there (where
    tokenizer.json has them otherwise, or not at all), then each of the special tokens it names
    (`special`, from _special_tokens) that is not an added token yet (in the vocabulary or not:
    typed in a prompt, it is then that token), with the flags its entry wrote (`written`, _written_flags).
    A named token is special whatever its flags say."""
    from tokenizers import AddedToken

    contents = [c for value in special for c in (value if isinstance(value, list) else [value]) if isinstance(c, str)]
    special_ones = set(contents)
    have = {str(t): t for t in tok.get_added_tokens_decoder().values()}
    adding = {}
    for entry in _decoder_entries(config, path):
        flags = {flag: entry[flag] for flag in FLAGS if flag in entry}
        token = AddedToken(entry["content"], **{**flags, **({"special": True} if entry["content"] in special_ones else {})})
        if repr(have.get(token.content)) != repr(token):
            adding.setdefault(token.content, token)    # a content given twice: its first entry, by id
    for content in contents:
        if content not in have and content not in adding:
            adding[content] = AddedToken(content, **{**written.get(content, {}), "special": True})
    if adding:
        tok.add_tokens(list(adding.values()))


def _written_flags(*sources: dict) -> dict[str, dict]:
    """content -> the AddedToken flags that the special-token entries of `sources` (tokenizer_config.json,
    special_tokens_map.json) write for it, the first entry's where several do: a token, a list
    of them, or a mapping of names to them."""
    found: dict[str, dict] = {}
    for source in sources:
        for value in source.values():
            entries = value if isinstance(value, list) else [value]
            if isinstance(value, dict) and "content" not in value:
                entries = list(value.values())
            for entry in entries:
                if isinstance(entry, dict) and isinstance(entry.get("content"), str):
                    found.setdefault(entry["content"], {f: entry[f] for f in FLAGS if isinstance(entry.get(f), bool)})
    return found


def _decoder_entries(config: dict, path: Path) -> list[dict]:
    """added_tokens_decoder's entries in order of id, each with a text `content` and true or false flags."""
    decoder = config.get("added_tokens_decoder") or {}
    if not isinstance(decoder, dict):
        raise ArenaError(f"{path}: added_tokens_decoder is {json.dumps(decoder)[:40]}; it must be a JSON object")
    entries = []
    for key, entry in decoder.items():
        if not key.isdecimal() or not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
            raise ArenaError(f"{path}: added_tokens_decoder has {json.dumps({key: entry})[:60]}; each entry must be "
                             "a token id and an object with its text as 'content'")
        bad = next((flag for flag in FLAGS if flag in entry and not isinstance(entry[flag], bool)), None)
        if bad:
            raise ArenaError(f"{path}: added_tokens_decoder['{key}'].{bad} is {json.dumps(entry[bad])[:40]}; "
                             "it must be true or false")
        entries.append((int(key), entry))
    return [entry for _, entry in sorted(entries, key=lambda e: e[0])]


def _eos_ids(folder: Path) -> set[int]:
    """The ids transformers' generate stops at: generation_config.json's eos_token_id where that
    file is (none where it names none), else config.json's; never the tokenizer's eos_token."""
    path = folder / "generation_config.json"
    path = path if path.is_file() else folder / "config.json"
    eos = _json(path).get("eos_token_id")
    ids = [] if eos is None else eos if isinstance(eos, list) else [eos]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ArenaError(f"{path}: eos_token_id is {json.dumps(eos)[:40]}; it must be a token id or a list of them")
    return set(ids)


# generation_config.json's settings that change what transformers' generate picks or when it stops,
# with the values that change nothing (GenerationConfig's defaults); the sampling ones only count
# where do_sample is true. `arena run` applies none of them: its options say how it picks.
GENERATION_DEFAULTS = {"min_length": 0, "min_new_tokens": None, "suppress_tokens": None,
                       "begin_suppress_tokens": None, "bad_words_ids": None, "forced_bos_token_id": None,
                       "forced_eos_token_id": None, "sequence_bias": None, "repetition_penalty": 1.0,
                       "no_repeat_ngram_size": 0, "num_beams": 1, "penalty_alpha": None,
                       "exponential_decay_length_penalty": None}
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None, "typical_p": 1.0,
                     "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}


def unapplied_generation(folder: Path) -> list[str]:
    """The settings of the folder's generation_config.json that would change transformers'
    tokens and that `arena run` does not apply, as `key=value`."""
    config = _json(Path(folder) / "generation_config.json")
    defaults = dict(GENERATION_DEFAULTS)
    if config.get("do_sample") is True:
        defaults.update(do_sample=False, **SAMPLING_DEFAULTS)
    return [f"{key}={json.dumps(config[key])[:40]}" for key, value in defaults.items()
            if key in config and config[key] != value]


def _json(path: Path) -> dict:
    return read_json_object(path, path.name) if path.is_file() else {}


def _is_token(value) -> bool:
    """A special token as tokenizer_config.json (or special_tokens_map.json) writes one: a string,
    or an AddedToken's object."""
    return isinstance(value, str) or isinstance(value, dict) and isinstance(value.get("content"), str)


def _token(value, where: str) -> str:
    """The text of a special token (`_is_token`); `where` names the key of one that is not."""
    if _is_token(value):
        return value if isinstance(value, str) else value["content"]
    raise ArenaError(f"{where} is {json.dumps(value)[:40]}; it must be a token: a string, or an object "
                     "with a \"content\" string")


def _tokens(value, where: str) -> list | dict:
    """Extra special tokens as written: a list of tokens, an object naming them, or one token."""
    if not value:
        return []
    if isinstance(value, list):
        return [_token(t, f"{where}[{i}]") for i, t in enumerate(value)]
    if isinstance(value, dict) and "content" not in value:
        return {name: _token(t, f"{where}.{name}") for name, t in value.items()}
    if not isinstance(value, (str, dict)):
        raise ArenaError(f"{where} is {json.dumps(value)[:40]}; it must be a list of tokens, or an object naming them")
    return [_token(value, where)]
