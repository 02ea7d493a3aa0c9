"""Choosing the next token from the logits: greedy, or sampling with temperature, top-k, top-p.

The order of the filters is transformers' (temperature, then top-k, then top-p), so the same
options mean the same distribution, up to which of equally likely tokens straddling top-p's cut
are kept (transformers keeps the highest ids; here topk's order among ties decides, since a
stable sort would allocate outside the arena). The random stream is our own generator, seeded
by --seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from planner.errors import ArenaError


SEEDS = (-2**63, 2**64 - 1)   # what torch.Generator.manual_seed takes


@dataclass
class Scratch:
    """Random sampling's working tensors, views of the arena (the schedule's probs, order, drop)."""
    scores: torch.Tensor    # (1, vocab) float64: the scores, then the probabilities
    ordered: torch.Tensor   # (1, vocab) float64: the scores in order, then cumulative probabilities
    order: torch.Tensor     # (1, vocab) int64: the tokens of `ordered`
    drop: torch.Tensor      # (1, vocab) bool: a filter's tokens to drop (top-k's by token, top-p's in `ordered`'s order)
    dropped: torch.Tensor   # (1, vocab) bool: top-p's, by token


class NotFinite(ArenaError):
    """The logits hold NaN or infinity: the run says why (a weight, or the dtype's range)."""

    def __init__(self):
        super().__init__("the logits are not finite (NaN or infinity)")


@dataclass
class Sampler:
    temperature: float = 0.0   # 0: greedy (argmax)
    top_k: int = 0             # 0: no top-k filter
    top_p: float = 1.0         # 1: no nucleus filter
    seed: int | None = None
    _generator: torch.Generator | None = field(default=None, repr=False)
    _constants: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self):
        """The settings a run can draw with, named by the options that give them."""
        if not (isinstance(self.temperature, (int, float)) and 0 <= self.temperature < math.inf):
            raise ArenaError(f"--temperature: must be a finite number, 0 (greedy) or more, not {self.temperature}")
        if not (isinstance(self.top_k, int) and self.top_k >= 0):
            raise ArenaError(f"--top-k: must be 0 (off) or more, not {self.top_k}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ArenaError(f"--top-p: must be in (0, 1], not {self.top_p}")
        if self.seed is not None and not (isinstance(self.seed, int) and SEEDS[0] <= self.seed <= SEEDS[1]):
            raise ArenaError(f"--seed: must fit in 64 bits ({SEEDS[0]} to {SEEDS[1]}), not {self.seed}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def choose(self, logits: torch.Tensor, out: torch.Tensor, best: torch.Tensor, scratch: Scratch) -> None:
        """Write the chosen token id of `logits` (1, vocab) into `out` (1,) (int64). Greedy choice
        writes the largest logit into `best` (1,); sampling works in `scratch`: neither allocates."""
        if self.greedy:
            # max's indices are argmax's (the first maximum), and faster on bf16 CPU tensors
            torch.max(logits, dim=-1, out=(best, out))
            if not math.isfinite(best.item()):      # max passes a NaN on: any NaN, an inf, or all -inf
                raise NotFinite()
            return
        # any positive temperature works: in float64 none rounds to 0 (float32 loses those below
        # 1e-45), and with the likeliest score shifted to 0 a tiny one sends the others to -inf,
        # where dividing the raw scores gives inf and softmax nan
        scores, ordered, order = scratch.scores, scratch.ordered, scratch.order
        scores.copy_(logits)
        torch.max(scores, -1, keepdim=True, out=(ordered[:, :1], order[:, :1]))
        if not math.isfinite(ordered[0, 0].item()):   # NaN or inf anywhere, or all -inf: no distribution
            raise NotFinite()
        temperature, kept = self._operands(scores.device)
        scores.sub_(ordered[:, :1]).div_(temperature)
        if self.top_k > 0:
            k = min(self.top_k, scores.shape[-1])
            torch.topk(scores, k, out=(ordered[:, :k], order[:, :k]))
            scores.masked_fill_(torch.lt(scores, ordered[:, k - 1:k], out=scratch.drop), float("-inf"))
        if self.top_p < 1.0:
            # drop the least likely tokens whose total probability stays within 1 - top_p; all of
            # them in ascending order by topk, since sort allocates beside its out= tensors
            torch.topk(scores, scores.shape[-1], largest=False, out=(ordered, order))
            drop = torch.le(torch.softmax(ordered, -1, out=ordered).cumsum_(-1), kept, out=scratch.drop)
            drop[:, -1:].fill_(False)   # always keep the most likely token
            scores.masked_fill_(scratch.dropped.scatter_(-1, order, drop), float("-inf"))
        # inverse transform sampling: the first token whose cumulative probability exceeds u
        cumulative = ordered.copy_(torch.softmax(scores, -1, out=scores)).cumsum_(-1)
        u = scores[:, :1].uniform_(0, 1, generator=self._rng(scores.device)).mul_(cumulative[:, -1:])
        torch.searchsorted(cumulative, u, right=True, out=out.view(1, 1))

    def _operands(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The temperature and 1 - top_p as (1, 1) float64 tensors, made once: a Python number as
        an operand is copied into a new tensor on every op. (Dividing by the temperature, not
        multiplying by its inverse: 1 / 5e-324 is inf, and the likeliest score, 0, times inf is nan.)"""
        if self._constants is None:
            self._constants = torch.tensor([[self.temperature, 1 - self.top_p]], dtype=torch.float64, device=device)
        return self._constants[:, :1], self._constants[:, 1:]

    def _rng(self, device: torch.device) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator(device=device)
            if self.seed is None:
                self._generator.seed()
            else:
                self._generator.manual_seed(self.seed)
        return self._generator
