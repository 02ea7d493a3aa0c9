"""Chat templates rendered as transformers' apply_chat_template renders them (the reference:
transformers itself, on the same template and special tokens), and templates that fail."""
import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from executor import chat
from executor.chat import folder_template, render_chat
from planner.errors import ArenaError

SPECIAL = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
MESSAGES = [{"role": "user", "content": "日本語 <b>&'\"</b> 🦙 and a KV cache"}]
TEMPLATES = {
    "tojson as transformers writes it": "{{ messages | tojson }}{{ messages[0] | tojson(indent=2) }}",
    "break and continue": "{% for m in messages + messages %}{% if loop.index == 1 %}{% continue %}{% endif %}"
                          "{{ m['content'] }}{% break %}{% endfor %}",
    "the generation tag": "{% for m in messages %}{% generation %}[{{ m['content'] }}]{% endgeneration %}{% endfor %}",
    "every special token": "{{ bos_token }}|{{ pad_token }}|{{ unk_token }}|{{ eos_token }}",
    "tools and documents": "{% if tools is none %}T{% endif %}{% if documents is none %}D{% endif %}"
                           "{% if add_generation_prompt %}>{% endif %}",
    "a system branch": "{% if messages[0]['role'] != 'system' %}<|system|>default\n{% endif %}"
                       "{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}\n{% endfor %}<|assistant|>",
    "block tags on lines of their own (trim_blocks, lstrip_blocks)": "{% for m in messages %}\n"
                                                                     "  {% if m.role == 'user' %}\n"
                                                                     "<|user|>{{ m.content }}\n"
                                                                     "  {% endif %}\n"
                                                                     "{% endfor %}\n<|assistant|>\n",
    "repetition and products": "{{ '=' * 40 }}{{ 3 * messages[0]['content'] }}{{ [1, 2] * 2 }}{{ 6 * 7 }}{{ 1.5 * 2 }}",
}


@pytest.fixture(scope="module")
def reference():
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")),
                                   **SPECIAL)


@pytest.mark.parametrize("template", TEMPLATES.values(), ids=TEMPLATES.keys())
def test_a_template_renders_as_transformers_renders_it(reference, template):
    expected = reference.apply_chat_template(MESSAGES, chat_template=template, tokenize=False,
                                             add_generation_prompt=True)
    assert render_chat(template, MESSAGES, SPECIAL) == expected


@pytest.mark.parametrize("template, message", [
    ("{{ raise_exception('no system role') }}", "failed: no system role"),
    ("{% for m in messages %}", "failed: Unexpected end of template"),
    ("{{ 1 + 'a' }}", "failed: TypeError: unsupported operand"),
    ("{{ messages | length / 0 }}", "failed: ZeroDivisionError"),
    ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "failed: RecursionError"),
    ("{% for i in range(10**9) %}x{% endfor %}", "failed: OverflowError"),
    ("{% set ns = namespace(_x='A') %}{{ ns._x }}", "failed: Chat templates cannot store underscore-prefixed"),
    ("{% set ns = namespace(a=1) %}{% set ns._b = 2 %}", "failed: Chat templates cannot store underscore-prefixed"),
    # longer than a prompt may be: refused before the text (or the tokens) take gigabytes
    ("{{ 'w1 ' * 100000000 }}", "failed: a str of 3 characters repeated 100,000,000 times is more than a prompt"),
    ("{{ 10**9 * [0] }}", "failed: a list of 1 item repeated 1,000,000,000 times"),
    ("{{ ('x',) * 100000000 }}", "failed: a tuple of 1 item repeated 100,000,000 times"),
    ("{{ ('x' | safe) * 300000000 }}", "failed: a str of 1 character repeated 300,000,000 times"),
    ("{% for i in range(100000) %}{{ 'x' * 4000 }}{% endfor %}", "renders 4,194,304 characters or more beside the "
                                                                  "messages"),
    # doubled in a loop, rendering nothing until the end: refused at the first value past the limit
    ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
     "failed: namespace value s holds 8,388,608 characters and items or more, more than the messages and a prompt "
     "file may hold"),
    ("{% set ns = namespace(s=['x']) %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
     "failed: namespace value s holds [0-9,]+ characters and items or more"),
    ("{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ d('x', 40) }}",
     "failed: an argument of d holds 8,388,608 characters and items or more"),
    ("{% set ns = namespace(d={'s': 'x'}) %}{% for i in range(40) %}{% set ns.d = {'s': ns.d.s ~ ns.d.s} %}"
     "{% endfor %}", "failed: namespace value d holds 8,388,609 characters and items or more"),
    ("{% macro d(l, n) %}{% if n %}{{ d([[l[0][0] ~ l[0][0]]], n - 1) }}{% endif %}{% endmacro %}{{ d([['x']], 40) }}",
     "failed: an argument of d holds 8,388,610 characters and items or more"),
    ("{% set ns = namespace(d={'a': 1}) %}{% for i in range(24) %}{% set k = (ns.d|list)[0] %}"    # a key doubled
     "{% set ns.d = {k ~ k: 1} %}{% endfor %}", "failed: namespace value d holds 8,388,609 characters and items"),
])
def test_a_failing_template_is_one_arena_error(template, message):
    with pytest.raises(ArenaError, match=f"--chat: the model's chat template {message}"):
        render_chat(template, MESSAGES, SPECIAL)


def test_a_template_that_loops_without_end_is_stopped_by_the_clock(monkeypatch):
    monkeypatch.setattr(chat, "RENDER_SECONDS", 0.2)
    template = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x"
    with pytest.raises(ArenaError, match=r"--chat: the model's chat template ran for more than 0.2 s \(a loop"):
        render_chat(template, MESSAGES, SPECIAL)
    assert render_chat("{{ messages[0].content }}", MESSAGES, SPECIAL) == MESSAGES[0]["content"]    # no alarm left


def test_a_chat_template_file_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "chat_template.jinja").write_bytes(b"{{ bos_token }}\xff\xfe{{ messages[0].content }}")
    with pytest.raises(ArenaError, match=r"chat_template.jinja: not UTF-8 text \(byte 0xff at offset 15\)"):
        folder_template(tmp_path, {})
    (tmp_path / "chat_template.jinja").write_bytes(b"\xef\xbb\xbfJINJA")     # a byte-order mark, which transformers keeps
    assert folder_template(tmp_path, {})[0] == "\ufeffJINJA"


def test_chat_template_jinja_wins_over_tokenizer_config(tmp_path):
    """As transformers loads them."""
    config = {"chat_template": "CONFIG"}
    assert folder_template(tmp_path, config) == ("CONFIG", str(tmp_path / "tokenizer_config.json"))
    (tmp_path / "chat_template.jinja").write_text("JINJA")
    assert folder_template(tmp_path, config) == ("JINJA", str(tmp_path / "chat_template.jinja"))


@pytest.mark.parametrize("files", [["config", "jinja", "default"], ["config", "default"], ["jinja", "default"],
                                   ["config", "tool_use"], ["config", "jinja", "tool_use"]])
def test_template_files_win_as_transformers_reads_them(tmp_path, files):
    """additional_chat_templates/default.jinja before chat_template.jinja, either before the
    config's; files naming only other templates leave no default (transformers: a dict of them)."""
    import json

    from transformers import AutoTokenizer
    Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")).save(str(tmp_path / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast"}
    if "config" in files:
        config["chat_template"] = "CONFIG"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    if "jinja" in files:
        (tmp_path / "chat_template.jinja").write_text("JINJA")
    for name in {"default", "tool_use"} & set(files):
        (tmp_path / "additional_chat_templates").mkdir(exist_ok=True)
        (tmp_path / "additional_chat_templates" / f"{name}.jinja").write_text(name.upper())
    expected = AutoTokenizer.from_pretrained(tmp_path).chat_template
    template, _ = folder_template(tmp_path, config)
    assert template == (expected.get("default") if isinstance(expected, dict) else expected)


def test_named_templates_take_the_default_and_malformed_ones_are_named(tmp_path):
    named = [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]
    assert folder_template(tmp_path, {"chat_template": named})[0] == "D"
    assert folder_template(tmp_path, {"chat_template": {"tool_use": "T", "default": "D"}})[0] == "D"  # as transformers
    assert folder_template(tmp_path, {"chat_template": []})[1].endswith("tokenizer_config.json names no templates")
    assert folder_template(tmp_path, {"chat_template": named[:1]}) == \
        (None, f"{tmp_path / 'tokenizer_config.json'} names templates tool_use, none of them 'default'")
    for bad in (5, [{"name": "default"}], [named[0], "bad"]):
        with pytest.raises(ArenaError, match=r"tokenizer_config.json: chat_template is .*; it must be a template"):
            folder_template(tmp_path, {"chat_template": bad})


def test_special_tokens_map_gives_the_templates_special_tokens_as_in_transformers(tmp_path):
    """special_tokens_map.json adds special tokens tokenizer_config.json lacks, and wins where
    both name one, as transformers loads them; unless the config has added_tokens_decoder."""
    import json

    from transformers import AutoTokenizer

    from executor.tokenizer import from_folder
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    Tokenizer(models.WordLevel(vocab, unk_token="<unk>")).save(str(tmp_path / "tokenizer.json"))
    template = "{{ bos_token }}|{{ eos_token }}|{{ pad_token }}|{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": template, "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<pad>"}))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": {"content": "<s>", "special": True}, "eos_token": "</s>"}))
    ours = from_folder(tmp_path)
    expected = AutoTokenizer.from_pretrained(tmp_path).apply_chat_template(MESSAGES, tokenize=False)
    assert render_chat(ours.chat_template, MESSAGES, ours.special) == expected
    assert expected.startswith("<s>|</s>|")
    # a config with added_tokens_decoder (as save_pretrained writes them) is read alone
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"] = {"3": {"content": "<pad>", "special": True}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    ours = from_folder(tmp_path)
    expected = AutoTokenizer.from_pretrained(tmp_path).apply_chat_template(MESSAGES, tokenize=False)
    assert render_chat(ours.chat_template, MESSAGES, ours.special) == expected
    assert expected.startswith("|<pad>|")


@pytest.mark.parametrize("names", [
    {"added_tokens_decoder": {"5": {"content": "<|new|>", "special": True},
                              "1": {"content": "<s>", "special": True, "lstrip": True, "rstrip": True}},
     "extra_special_tokens": ["<p>"]},
    {"additional_special_tokens": ["<p>"], "extra_special_tokens": {"image_token": "<q>"}},  # both read
    {"additional_special_tokens": ["<p>"], "extra_special_tokens": ["<q>"]},                 # the list alone
    {"additional_special_tokens": ["<p>", "<q>"], "image_token": "<|new|>"},
    {"image_token": "<q>", "extra_special_tokens": {"bos_token": "<p>", "image_token": "<|new|>"}},  # the mapping's win
    {"additional_special_tokens": {"image_token": "<q>"}, "extra_special_tokens": []},       # an older mapping
], ids=["decoder", "additional-and-a-mapping", "additional-beside-a-list", "a-named-key", "a-mapping-over-keys",
        "additional-as-a-mapping"])
def test_tokens_only_tokenizer_config_names_are_added_as_transformers_adds_them(tmp_path, names):
    """added_tokens_decoder entries (by id, flags included) and named or extra special tokens
    that are not added tokens yet: transformers 5 adds them, so prompts split at them, in its order."""
    import json

    from tokenizers import AddedToken, pre_tokenizers
    from transformers import AutoTokenizer

    from executor.tokenizer import from_folder
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([AddedToken("<s>", special=True)])
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", **names}))
    reference = AutoTokenizer.from_pretrained(tmp_path)
    ours = from_folder(tmp_path)
    texts = ["a<|new|>b", "a <s> b", "b<p>a </s>", "a</s>b", "a<q>b<p>", "a b"]     # </s>: in the vocabulary, not added
    assert [ours.encode(t) for t in texts] == [reference(t)["input_ids"] for t in texts]
    assert [ours.decode(ours.encode(t)) for t in texts] == [reference.decode(reference(t)["input_ids"],
                                                                              skip_special_tokens=True) for t in texts]


@pytest.mark.parametrize("config, message", [
    ({"added_tokens_decoder": ["<x>"]}, 'added_tokens_decoder is ["<x>"]; it must be a JSON object'),
    ({"added_tokens_decoder": {"5": "<x>"}}, 'added_tokens_decoder has {"5": "<x>"}; each entry must be a token id'),
    ({"added_tokens_decoder": {"5": {"content": "<x>", "lstrip": "false"}}},
     "added_tokens_decoder['5'].lstrip is \"false\"; it must be true or false"),
    ({"split_special_tokens": "yes"}, 'split_special_tokens is "yes"; it must be true or false'),
    ({"bos_token": 1}, 'bos_token is 1; it must be a token'),
    ({"extra_special_tokens": {"image_token": 3}}, "extra_special_tokens.image_token is 3; it must be a token"),
    ({"extra_special_tokens": ["<p>", None]}, "extra_special_tokens[1] is null; it must be a token"),
    ({"additional_special_tokens": [["<p>"]]}, 'additional_special_tokens[0] is ["<p>"]; it must be a token'),
    ({"extra_special_tokens": 7}, "extra_special_tokens is 7; it must be a list of tokens, or an object naming them"),
])
def test_a_malformed_tokenizer_config_is_refused_naming_the_key(tmp_path, config, message):
    """Each of these is a TypeError in transformers, or would make a token of a number."""
    import json

    from executor.tokenizer import from_folder
    Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")).save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ArenaError) as e:
        from_folder(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'tokenizer_config.json'}: {message}")


def test_template_tokens_and_split_special_tokens_as_transformers_5(tmp_path):
    """A chat template sees extra_special_tokens by name but no additional_special_tokens; with
    split_special_tokens a special token typed in the prompt is plain text."""
    import json

    from tokenizers import AddedToken, pre_tokenizers
    from transformers import AutoTokenizer

    from executor.tokenizer import from_folder
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4, "<img>": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([AddedToken("<s>", special=True), AddedToken("<img>", special=True)])
    tok.save(str(tmp_path / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
              "additional_special_tokens": ["<img>"], "extra_special_tokens": {"image_token": "<img>"},
              "chat_template": "[{{ additional_special_tokens }}][{{ image_token }}]"
                               "{% for m in messages %}{{ m['content'] }}{% endfor %}"}
    encoded = []
    for split in (False, True):
        (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "split_special_tokens": split}))
        reference, ours = AutoTokenizer.from_pretrained(tmp_path), from_folder(tmp_path)
        expected = reference.apply_chat_template(MESSAGES, tokenize=False)
        assert render_chat(ours.chat_template, MESSAGES, ours.special) == expected == "[][<img>]" + "".join(
            m["content"] for m in MESSAGES)
        encoded.append(ours.encode("a<s>b"))
        assert encoded[-1] == reference("a<s>b")["input_ids"]
    assert encoded[0] != encoded[1]


@pytest.mark.parametrize("cls, pre, config, model_type", [
    ("LlamaTokenizerFast", "metaspace", {}, "llama"),
    ("GPT2TokenizerFast", "bytelevel", {}, "llama"),
    ("LlamaTokenizerFast", "metaspace", {"bos_token": None}, "llama"),     # null: none, not the class's
    ("GPT2TokenizerFast", "bytelevel", {"unk_token": None}, "llama"),
    ("LlamaTokenizerFast", "bytelevel", {}, "llama"),        # Llama 3's file: read as it is, no class
    ("LlamaTokenizerFast", "metaspace", {}, "mistral"),      # a Mistral folder: read as it is, no class
], ids=["llama", "gpt2", "llama-null-bos", "gpt2-null-unk", "llama-byte-level", "mistral"])
def test_a_class_gives_the_special_tokens_a_folder_does_not_name(tmp_path, cls, pre, config, model_type):
    """transformers 5's LlamaTokenizer names <s>, </s> and <unk>, GPT2Tokenizer <|endoftext|>
    for all three, where tokenizer_config.json names none: the template renders them, and
    one the vocabulary lacks is added, so a prompt that types it gets its id. Where
    transformers reads the file as it is, no class names any."""
    import json

    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    from executor.tokenizer import from_folder
    space = "▁" if pre == "metaspace" else "Ġ"
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, space: 3, "a": 4, "b": 5, space + "a": 6, space + "b": 7}
    tok = Tokenizer(models.BPE(vocab, [(space, "a"), (space, "b")], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace() if space == "▁" else pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.save(str(tmp_path / "tokenizer.json"))
    template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}{{ eos_token }}|{{ unk_token }}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": cls, "chat_template": template,
                                                                **config}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    reference, ours = AutoTokenizer.from_pretrained(tmp_path), from_folder(tmp_path)
    texts = ["a b", "a <s> b", "a <|endoftext|>b"]
    assert [ours.encode(t) for t in texts] == [reference(t)["input_ids"] for t in texts]
    message = [{"role": "user", "content": "a b"}]
    assert ours.encode_chat("a b") == reference.apply_chat_template(message, add_generation_prompt=True,
                                                                     tokenize=True, return_dict=False)


def test_a_named_special_token_the_vocabulary_lacks_keeps_its_flags(tmp_path):
    """An AddedToken's dict in tokenizer_config.json: its lstrip holds when the token is added."""
    import json

    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    from executor.tokenizer import from_folder
    tok = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1, "b": 2}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "isolated")
    tok.save(str(tmp_path / "tokenizer.json"))
    eos = {"__type": "AddedToken", "content": "<|end|>", "lstrip": True, "rstrip": False, "normalized": False}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                                                "eos_token": eos}))
    reference, ours = AutoTokenizer.from_pretrained(tmp_path), from_folder(tmp_path)
    texts = ["a   <|end|> b", "a<|end|>  b"]
    assert [ours.encode(t) for t in texts] == [reference(t)["input_ids"] for t in texts]
    # an older config beside special_tokens_map.json: the map's entry and its flags win
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                                                "eos_token": {**eos, "lstrip": False, "rstrip": True}}))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"eos_token": eos}))
    reference, ours = AutoTokenizer.from_pretrained(tmp_path), from_folder(tmp_path)
    assert [ours.encode(t) for t in texts] == [reference(t)["input_ids"] for t in texts]


def test_special_tokens_map_null_takes_the_configs_token_away(tmp_path):
    """An older config (no added_tokens_decoder) names bos_token; special_tokens_map.json names
    it null: transformers has no BOS then, and neither the template nor a prompt sees one."""
    import json

    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    from executor.tokenizer import from_folder
    tok = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1, "b": 2}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tokenizer.json"))
    template = "[{{ bos_token }}]{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|start|>", "chat_template": template}))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"bos_token": None}))
    reference, ours = AutoTokenizer.from_pretrained(tmp_path), from_folder(tmp_path)
    assert render_chat(ours.chat_template, MESSAGES, ours.special) == \
        reference.apply_chat_template(MESSAGES, tokenize=False) == "[]" + MESSAGES[0]["content"]
    assert ours.encode("a <|start|> b") == reference("a <|start|> b")["input_ids"]


def test_a_prompt_as_long_as_a_file_may_be_is_the_messages_not_the_templates():
    """The cap on a template's output counts what it adds to the messages: a prompt file of
    almost 4 MiB renders, and is refused later for its length in tokens, as without --chat."""
    content = "hello world " * (4_194_300 // 12)
    text = render_chat("<|user|>{{ messages[0]['content'] }}<|end|>", [{"role": "user", "content": content}], SPECIAL)
    assert text == f"<|user|>{content}<|end|>"


def test_a_template_may_render_up_to_the_limit_beside_the_messages():
    from planner.errors import MAX_FILE_BYTES
    text = render_chat("{{ 'x' * %d }}{{ messages[0].content }}" % MAX_FILE_BYTES, MESSAGES, SPECIAL)
    assert len(text) == MAX_FILE_BYTES + len(MESSAGES[0]["content"])


def test_rendering_leaves_the_callers_alarm_alone():
    """A program that set its own timer (a watchdog) keeps it: the render's limit would have
    cancelled it, and taken its signal for a template too slow."""
    import signal
    signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        assert render_chat("{% for m in messages %}{{ m['content'] }}{% endfor %}", MESSAGES, {}) == \
            "".join(m["content"] for m in MESSAGES)
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
