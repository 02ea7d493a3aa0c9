"""The sampler against transformers' logits processors: the same filters in the same order
(temperature, top-k, top-p) give the same distribution, drawn without allocating."""
import re

import pytest
import torch

from executor.sampling import Sampler, Scratch
from planner.errors import ArenaError

from arena_checks import bytes_allocated

LOGITS = torch.tensor([[2.0, 1.5, 1.4, 0.3, -0.2, 0.0, 2.2, -3.0, 1.0, 0.9]])
TIED = torch.zeros(1, 4)    # top-p's boundary falls on a token exactly: transformers keeps 3 of 4 at 0.75


def scratch(vocab: int) -> Scratch:
    probs, order, drop = torch.empty(2, vocab, dtype=torch.float64), torch.empty(1, vocab, dtype=torch.int64), \
        torch.empty(2, vocab, dtype=torch.bool)
    return Scratch(probs[:1], probs[1:], order, drop[:1], drop[1:])


def reference(temperature: float, top_k: int, top_p: float, logits: torch.Tensor) -> torch.Tensor:
    """transformers' probabilities after its warpers, in its order."""
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)
    scores = logits.double()
    for warper, on in ((TemperatureLogitsWarper(temperature), True), (TopKLogitsWarper(max(top_k, 1)), top_k > 0),
                       (TopPLogitsWarper(top_p), top_p < 1)):
        if on:
            scores = warper(None, scores)
    return scores.softmax(-1)[0]


@pytest.mark.parametrize("temperature, top_k, top_p, logits", [
    (1.0, 0, 1.0, LOGITS), (0.7, 0, 1.0, LOGITS), (1.3, 4, 1.0, LOGITS), (1.0, 0, 0.8, LOGITS), (0.8, 6, 0.7, LOGITS),
    (1.0, 3, 1.0, LOGITS[:, :3]),     # top-k as large as the vocabulary keeps it all
    (1.0, 0, 0.75, TIED)], ids=str)
def test_draws_follow_transformers_distribution(temperature, top_k, top_p, logits):
    expected = reference(temperature, top_k, top_p, logits)
    sampler, work = Sampler(temperature, top_k, top_p, seed=0), scratch(logits.shape[-1])
    out, draws = torch.empty(1, dtype=torch.int64), 10_000
    counts = torch.zeros_like(expected)
    for _ in range(draws):
        sampler.choose(logits, out, torch.empty(1), work)
        counts[out[0]] += 1
    if logits.unique().numel() < logits.numel():    # which of equal tokens a filter drops is arbitrary
        counts, expected = counts.sort().values, expected.sort().values
    assert torch.all(counts[expected == 0] == 0)   # what the filters drop is never drawn
    assert (counts / draws - expected).abs().max() < 0.02   # 4 standard deviations at p = 0.5


def test_a_draw_allocates_nothing():
    sampler, work = Sampler(0.8, 6, 0.7, seed=0), scratch(LOGITS.shape[-1])
    out, best = torch.empty(1, dtype=torch.int64), torch.empty(1)
    sampler.choose(LOGITS, out, best, work)   # the first draw makes the generator and the operands' tensor
    assert bytes_allocated(lambda: sampler.choose(LOGITS, out, best, work)) == []


@pytest.mark.parametrize("temperature", [1e-300, 5e-324])
def test_a_tiny_temperature_is_greedy(temperature):
    out = torch.empty(1, dtype=torch.int64)
    Sampler(temperature, seed=0).choose(LOGITS, out, torch.empty(1), scratch(LOGITS.shape[-1]))
    assert out[0] == LOGITS.argmax()
    # yet it is a temperature, not greedy: between two likeliest tokens it still draws
    sampler, tied = Sampler(temperature, seed=0), torch.tensor([[2.0, 2.0, 0.0]])
    drawn = set()
    for _ in range(64):
        sampler.choose(tied, out, torch.empty(1), scratch(3))
        drawn.add(int(out[0]))
    assert drawn == {0, 1}


@pytest.mark.parametrize("top_p", [1e-6, 1e-300])
def test_a_tiny_top_p_keeps_the_most_likely_token(top_p):
    """At 1e-300, 1 - top_p rounds to 1: every cumulative probability is within it, the most
    likely token's too, and only the rule that always keeps it stops a draw past the vocabulary."""
    generator = torch.Generator().manual_seed(0)
    for vocab in (2, 3, 10, 50):
        logits = torch.randn(1, vocab, generator=generator)
        out = torch.empty(1, dtype=torch.int64)
        for seed in range(20):
            Sampler(1.0, 0, top_p, seed=seed).choose(logits, out, torch.empty(1), scratch(vocab))
            assert out[0] == logits.argmax(), (vocab, seed)


@pytest.mark.parametrize("temperature", [1.0, 0.0])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "all -inf"])
def test_logits_that_are_not_finite_are_an_arena_error_never_an_id_past_the_vocabulary(bad, temperature):
    """An f16 model that overflows: the cumulative sum was NaN and the draw the id `vocab`;
    greedy choice took token 0 without a word."""
    from planner.errors import ArenaError
    logits = torch.full_like(LOGITS, float("-inf")) if bad == "all -inf" else LOGITS.clone()
    if bad != "all -inf":
        logits[0, 3] = bad
    with pytest.raises(ArenaError, match="the logits are not finite"):
        Sampler(temperature, seed=0).choose(logits, torch.empty(1, dtype=torch.int64), torch.empty(1),
                                    scratch(LOGITS.shape[-1]))


@pytest.mark.parametrize("settings, message", [
    ({"temperature": -1}, "--temperature: must be a finite number, 0 (greedy) or more, not -1"),
    ({"temperature": float("nan")}, "--temperature: must be a finite number"),
    ({"top_k": -3}, "--top-k: must be 0 (off) or more, not -3"),
    ({"top_p": 0}, "--top-p: must be in (0, 1], not 0"),
    ({"seed": 2**64}, "--seed: must fit in 64 bits"),
])
def test_a_sampler_from_python_refuses_what_the_options_refuse(settings, message):
    """A temperature of -1 drew the least likely tokens, NaN a token past the vocabulary."""
    with pytest.raises(ArenaError, match=re.escape(message)):
        Sampler(**settings)
