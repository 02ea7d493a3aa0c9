"""The token loop: prefill calls over the prompt (one, or chunks of the session's call size),
then one decode call per new token."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from planner.errors import ArenaError, plural

from .sampling import Sampler
from .session import Session

GREEDY = Sampler()


@dataclass
class Generation:
    prompt_tokens: list[int]
    tokens: list[int]          # the generated ids only, the end-of-sequence token included when hit
    stop: str                  # "eos" or "length"
    prefill_seconds: float
    decode_seconds: float

    @property
    def prefill_tok_s(self) -> float:
        return len(self.prompt_tokens) / self.prefill_seconds

    @property
    def decode_tok_s(self) -> float | None:
        """New tokens per second after the first, which the prefill call produces; None where
        the first ended the text (no rate was measured)."""
        decoded = len(self.tokens) - 1
        return decoded / self.decode_seconds if decoded else None


def check_context(prompt_len: int, max_new_tokens: int, nctx: int) -> None:
    if prompt_len == 0:
        raise ArenaError("the prompt has no tokens in this model's tokenizer")
    if max_new_tokens < 1:
        raise ArenaError(f"--max-new-tokens: must be at least 1, not {max_new_tokens}")
    if prompt_len + max_new_tokens - 1 > nctx:    # the last new token is never fed back: it takes no position
        need, room = prompt_len + max_new_tokens - 1, nctx - prompt_len + 1
        fewer = f"--max-new-tokens {room} or less, or " if room >= 1 else ""
        raise ArenaError(f"--nctx: the prompt ({prompt_len} {plural(prompt_len, 'token')}) plus --max-new-tokens "
                         f"{max_new_tokens} need {need} positions (the last new token takes none); the context has "
                         f"{nctx}: give {fewer}--nctx {need} or more")


def generate(session: Session, prompt: list[int], max_new_tokens: int, sampler: Sampler,
             eos_ids: set[int] = frozenset(), ignore_eos: bool = False,
             on_token: Callable[[int], None] = lambda token: None) -> Generation:
    """Generate up to `max_new_tokens` tokens after `prompt`, stopping at an end-of-sequence id
    unless `ignore_eos`; `on_token` sees each id as soon as it is chosen."""
    check_context(len(prompt), max_new_tokens, session.nctx - session.length)
    start = time.perf_counter()
    tokens = [prefill_chunks(session, prompt, sampler)]
    prefill = time.perf_counter() - start
    on_token(tokens[-1])
    start = time.perf_counter()
    while len(tokens) < max_new_tokens and (ignore_eos or tokens[-1] not in eos_ids):
        tokens.append(session.forward(tokens[-1:], sampler))
        on_token(tokens[-1])
    decode = time.perf_counter() - start
    stop = "eos" if tokens[-1] in eos_ids and not ignore_eos else "length"
    return Generation(list(prompt), tokens, stop, prefill, decode)


def prefill_chunks(session: Session, prompt: list[int], sampler: Sampler) -> int:
    """Feed the prompt in calls of at most the session's max_tokens, through its one arena, and
    return the token after it. Only the last call samples with `sampler`; the others choose
    greedily, so a seeded random stream is the same as after one call."""
    size = session.max_tokens
    chunks = [prompt[i:i + size] for i in range(0, len(prompt), size)]
    for chunk in chunks[:-1]:
        session.forward(chunk, GREEDY)
    return session.forward(chunks[-1], sampler)


class TextStream:
    """Turns ids into printable text as they come, holding back text that ends inside a
    multi-byte character. Each push decodes only the ids since the last text it handed out, with
    the ids before that as context: a decoder may rewrite earlier text (byte fallback turns a
    printed byte into U+FFFD once a stray byte follows it), and printed text cannot be taken back."""

    def __init__(self, decode: Callable[[list[int]], str]):
        self.decode, self.ids = decode, []
        self.context = self.shown = 0          # ids[context:shown]: the last ids whose text was handed out

    def push(self, token: int) -> str:
        self.ids.append(token)
        before = self.decode(self.ids[self.context:self.shown])
        text = self.decode(self.ids[self.context:])
        if len(text) <= len(before) or text.endswith("\ufffd"):
            return ""
        self.context, self.shown = self.shown, len(self.ids)
        return text[len(before):]

    def flush(self) -> str:
        """What was held back at the end: the text of the ids since the last text handed out."""
        before = self.decode(self.ids[self.context:self.shown])
        return self.decode(self.ids[self.context:])[len(before):]
