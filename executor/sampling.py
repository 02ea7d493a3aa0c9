"""Choosing the next token from the logits: greedy, or sampling with temperature, top-k, top-p.

The order of the filters is transformers' (temperature, then top-k, then top-p), so the same
options mean the same distribution; the random stream is our own generator, seeded by --seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Sampler:
    temperature: float = 0.0   # 0: greedy (argmax)
    top_k: int = 0             # 0: no top-k filter
    top_p: float = 1.0         # 1: no nucleus filter
    seed: int | None = None
    _generator: torch.Generator | None = field(default=None, repr=False)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def choose(self, logits: torch.Tensor, out: torch.Tensor, best: torch.Tensor) -> None:
        """Write the chosen token id of `logits` (1, vocab) into `out` (1,) (int64); greedy
        choice writes the largest logit into `best` (1,), so it allocates nothing."""
        if self.greedy:
            # max's indices are argmax's (the first maximum), and faster on bf16 CPU tensors
            torch.max(logits, dim=-1, out=(best, out))
            return
        # any positive temperature works: in float64 none rounds to 0 (float32 loses those below
        # 1e-45), and with the likeliest score shifted to 0 a tiny one sends the others to -inf,
        # where dividing the raw scores gives inf and softmax nan
        scores = logits.double()
        scores = (scores - scores.amax(-1, keepdim=True)) / self.temperature
        if self.top_k > 0:
            kth = torch.topk(scores, min(self.top_k, scores.shape[-1])).values[..., -1:]
            scores.masked_fill_(scores < kth, float("-inf"))
        if self.top_p < 1.0:
            # drop the least likely tokens whose total probability stays within 1 - top_p
            ordered, order = torch.sort(scores, descending=False)
            drop = ordered.softmax(-1).cumsum(-1) <= 1 - self.top_p
            drop[..., -1] = False   # always keep the most likely token
            scores.masked_fill_(drop.scatter(-1, order, drop), float("-inf"))
        out.copy_(torch.multinomial(scores.softmax(-1), 1, generator=self._rng(scores.device))[:, 0])

    def _rng(self, device: torch.device) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator(device=device)
            if self.seed is None:
                self._generator.seed()
            else:
                self._generator.manual_seed(self.seed)
        return self._generator
