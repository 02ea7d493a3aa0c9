"""Chat templates: a model's jinja2 template rendered as transformers' apply_chat_template
renders it (its sandbox, extensions, filters and variables), so the prompt ids are the same."""
from __future__ import annotations

import contextlib
import itertools
import json
import signal
import threading
from datetime import datetime
from pathlib import Path

from planner.errors import MAX_FILE_BYTES, ArenaError, plural, read_text

# How deep `held` looks into the lists and dicts a template holds (a message's content is two down).
HELD_DEPTH = 8
# Seconds a template may take to render: real ones take milliseconds; loops within loops that
# write nothing (each range at the sandbox's 100,000) would run for hours.
RENDER_SECONDS = 10

# the special tokens transformers passes to a template by name, beside messages
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
                  "additional_special_tokens")


def render_chat(template: str, messages: list[dict], special: dict, source: str | None = None) -> str:
    """The conversation `messages` in `template`, ready for the assistant's reply; `special`:
    the special tokens by name (bos_token, eos_token, ...). Any failure of the template, not
    only jinja2's own errors, is an ArenaError, naming where the template came from (`source`)."""
    where = f"the chat template in {source}" if source else "the model's chat template"
    # the template's own text may be as long as a prompt file, beside the messages it holds
    most = MAX_FILE_BYTES + sum(len(m["content"]) for m in messages)
    too_long = ArenaError(f"--chat: {where} ran for more than {RENDER_SECONDS:g} s (a loop that writes nothing?)")
    try:
        compiled = _environment(most).from_string(template)
        pieces = compiled.generate(messages=messages, tools=None, documents=None, add_generation_prompt=True, **special)
        # a piece at a time: a loop's output is refused before it takes gigabytes
        text, size = [], 0
        with _raised_after(RENDER_SECONDS, too_long):
            for piece in pieces:
                size += len(piece)
                if size > most:
                    raise ArenaError(f"--chat: {where} renders {MAX_FILE_BYTES:,} characters or more beside the "
                                     "messages, more than a prompt file may hold")
                text.append(piece)
        return "".join(text)
    except ArenaError:
        raise
    except Exception as e:   # a template is code: TypeError, ZeroDivisionError, RecursionError...
        from jinja2 import TemplateError
        detail = str(e) if isinstance(e, TemplateError) else f"{type(e).__name__}: {e}"
        raise ArenaError(f"--chat: {where} failed: {detail}") from None


@contextlib.contextmanager
def _raised_after(seconds: float, fault: Exception):
    """`fault` raised in the block once `seconds` have passed. A loop that writes nothing is pure
    bytecode, with no call to read a clock in, so the alarm signal interrupts it; only the main
    thread gets signals, and elsewhere the block runs without a limit; so does it where the
    process's own timer is set (a program calling this one's alarm), which is left to run."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread() or \
            signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0):
        yield
        return

    def ring(number, frame):
        raise fault

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _environment(most: int):
    """transformers' environment: sandboxed, trim_blocks and lstrip_blocks, `break` and
    `continue`, the `generation` tag, and its raise_exception, strftime_now, tojson, dict and
    namespace. No text or list held longer than `most` (see `held`)."""
    from jinja2 import TemplateError, nodes
    from jinja2.exceptions import SecurityError
    from jinja2.utils import Namespace
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        """`{% generation %}...{% endgeneration %}` marks the assistant's tokens for training
        masks; rendering keeps its body as it is."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    class TemplateDict:
        """dict(...) and dict.fromkeys(...), and no more of the type."""
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    def held(value, what: str):
        """`value` if its texts' characters and its containers' items, counted HELD_DEPTH deep,
        come to no more than `most`: a text doubled in a loop (a namespace's value, or a macro's
        argument in each call, alone or inside a list or a dict) reached gigabytes before
        anything rendered. The count stops as soon as it is past `most`."""
        total, todo = 0, [(value, 0)]
        while todo:
            item, depth = todo.pop()
            if isinstance(item, (str, list, tuple, dict)):
                total += len(item)
                if total > most:
                    raise SecurityError(f"{what} holds {total:,} characters and items or more, more than the "
                                        f"messages and a prompt file may hold ({most:,} characters)")
                if depth < HELD_DEPTH and not isinstance(item, str):
                    members = itertools.chain(*item.items()) if isinstance(item, dict) else item
                    todo += [(x, depth + 1) for x in members]
        return value

    class TemplateNamespace(Namespace):
        """A namespace that refuses attributes named with a leading underscore, and values
        longer than a prompt may be."""
        def __init__(*args, **kwargs):      # Namespace's signature: namespace(self=...) works
            self, attrs = args[0], dict(*args[1:], **kwargs)
            for name, value in attrs.items():
                TemplateNamespace.check(name)
                held(value, f"namespace value {name}")
            Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            TemplateNamespace.check(name)
            Namespace.__setitem__(self, name, held(value, f"namespace value {name}"))

        @staticmethod
        def check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise SecurityError(f"Chat templates cannot store underscore-prefixed attributes on a namespace, "
                                    f"but got {name!r}")

    class Environment(ImmutableSandboxedEnvironment):
        """A string, list or tuple repeated (`'x' * n`), or passed to a call, no longer than a
        prompt may be."""
        intercepted_binops = frozenset(["*"])

        def call(__self, __context, __obj, *args, **kwargs):     # (the sandbox's own names)
            name = getattr(__obj, "__name__", None) or getattr(__obj, "name", None)    # a macro has a name
            for value in [*args, *kwargs.values()]:
                held(value, f"an argument of {name}" if name else "an argument")
            return super().call(__context, __obj, *args, **kwargs)

        def call_binop(self, context, operator, left, right):
            sequences = (str, list, tuple)      # Markup, from |safe or |e, is a str
            if operator == "*" and (isinstance(left, int) and isinstance(right, sequences)
                                    or isinstance(left, sequences) and isinstance(right, int)):
                count, repeated = (left, right) if isinstance(left, int) else (right, left)
                if count * len(repeated) > MAX_FILE_BYTES:
                    unit = "character" if isinstance(repeated, str) else "item"
                    kind = "str" if isinstance(repeated, str) else type(repeated).__name__
                    what = f"a {kind} of {len(repeated):,} {plural(len(repeated), unit)}"
                    raise SecurityError(f"{what} repeated {count:,} times is more than a prompt may hold "
                                        f"({MAX_FILE_BYTES:,} characters)")
            return super().call_binop(context, operator, left, right)

    env = Environment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f),
                       dict=TemplateDict(), namespace=TemplateNamespace)
    return env


def folder_template(folder: Path, config: dict) -> tuple[str | None, str]:
    """The chat template of a checkpoint folder, and where it is (without one: why, or "").
    As transformers reads them: template files, where there are any, replace
    tokenizer_config.json's; the default is additional_chat_templates/default.jinja, else
    chat_template.jinja (none where the files name only other templates). Else
    tokenizer_config.json's: a string, or named ones (a list of {"name", "template"}, or an
    object of them by name), of which the default."""
    files = [folder / "additional_chat_templates" / "default.jinja", folder / "chat_template.jinja"]
    others = sorted(path.stem for path in (folder / "additional_chat_templates").glob("*.jinja"))
    if any(path.is_file() for path in files) or others:
        jinja = next((path for path in files if path.is_file()), None)
        return (read_text(jinja, "chat template", "a template is UTF-8 text", keep_mark=True), str(jinja)) if jinja \
            else (None, _no_default(folder / "additional_chat_templates", others))
    source = f"{folder / 'tokenizer_config.json'}"
    template = config.get("chat_template")
    if isinstance(template, list) and all(isinstance(t, dict) and isinstance(t.get("name"), str)
                                          and isinstance(t.get("template"), str) for t in template):
        template = {t["name"]: t["template"] for t in template}
    if isinstance(template, dict) and all(isinstance(t, str) for t in template.values()):
        return (template["default"], source) if "default" in template else (None, _no_default(source, sorted(template)))
    if template is not None and not isinstance(template, str):
        raise ArenaError(f"{source}: chat_template is {json.dumps(template)[:40]}; it must be "
                         "a template, or named ones (a list of {\"name\": ..., \"template\": ...})")
    return (template, source) if template is not None else (None, "")


def _no_default(where, names: list[str]) -> str:
    return f"{where} names templates {', '.join(names)}, none of them 'default'" if names else f"{where} names no templates"
