"""The token loop around a session (executor/generate.py): stopping, prefill in chunks, and the
text streamed as ids come, with sessions and decoders small enough to script."""
import pytest
import torch

from executor.generate import GREEDY, TextStream, generate, prefill_chunks
from executor.sampling import Sampler

from test_sampling import scratch


class Scripted:
    """A session whose calls return the next of `ids`, whatever the tokens fed."""
    nctx, length, max_tokens = 64, 0, 16

    def __init__(self, ids):
        self.ids = iter(ids)

    def forward(self, tokens, sampler):
        return next(self.ids)


@pytest.mark.parametrize("ids, ignore_eos, tokens, stop", [
    ([5, 1, 6, 7], False, [5, 1], "eos"),
    ([5, 1, 6, 7], True, [5, 1, 6, 7], "length"),     # on past the end of sequence
    ([5, 6, 7, 1], True, [5, 6, 7, 1], "length"),     # the last token an end, ignored
    ([5, 6, 7, 8], False, [5, 6, 7, 8], "length"),
])
def test_generation_stops_at_an_end_of_sequence_unless_told_to_ignore_it(ids, ignore_eos, tokens, stop):
    made = generate(Scripted(ids), [3, 4], 4, GREEDY, eos_ids={1}, ignore_eos=ignore_eos)
    assert (made.tokens, made.stop) == (tokens, stop)


class Drawing:
    """A session of calls of at most `max_tokens` tokens, each drawing from the same logits."""

    def __init__(self, max_tokens):
        self.max_tokens = max_tokens

    def forward(self, tokens, sampler):
        out = torch.empty(1, dtype=torch.int64)
        sampler.choose(torch.arange(8.0).view(1, 8) / 4, out, torch.empty(1), scratch(8))
        return int(out[0])


def test_a_prefill_in_chunks_draws_the_next_token_as_one_call_does():
    """Only the last chunk samples: the seeded stream is where one call would leave it."""
    prompt = list(range(6))
    first = [prefill_chunks(Drawing(6), prompt, Sampler(1.0, 0, 1.0, seed=s)) for s in range(8)]
    assert len(set(first)) > 1      # (the draws differ by seed, so the comparison below can fail)
    assert [prefill_chunks(Drawing(2), prompt, Sampler(1.0, 0, 1.0, seed=s)) for s in range(8)] == first


def sentencepiece_like():
    """A decoder as a Llama 2 tokenizer.json has it: '▁' spaces, byte fallback, one leading space
    stripped, special tokens left out."""
    from tokenizers import AddedToken, Tokenizer, decoders, models
    pieces = ["<unk>", "<s>", "</s>", "▁Hello", "▁world"] + [f"<0x{b:02X}>" for b in (0x41, 0x80, 0xE2, 0x82, 0xAC)]
    tok = Tokenizer(models.BPE({p: i for i, p in enumerate(pieces)}, [], byte_fallback=True, unk_token="<unk>"))
    tok.add_special_tokens([AddedToken("<s>", special=True), AddedToken("</s>", special=True)])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return pieces, lambda ids: tok.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("shown, streamed", [
    (["▁Hello", "</s>", "▁world"], ["Hello", "", " world", ""]),    # the space after a hidden token stays
    # a character whole once its bytes are in, and printed text never taken back: decoding all the
    # ids at once turns the six bytes into six U+FFFD, since the run of bytes is not UTF-8 as a whole
    (["<0xE2>", "<0x82>", "<0x82>", "<0x41>", "<0x80>", "<0xAC>"], ["", "", "\u2082", "A", "", "", "\ufffd\ufffd"]),
])
def test_the_stream_hands_out_text_as_soon_as_it_is_whole(shown, streamed):
    pieces, decode = sentencepiece_like()
    stream = TextStream(decode)
    assert [stream.push(pieces.index(p)) for p in shown] + [stream.flush()] == streamed
