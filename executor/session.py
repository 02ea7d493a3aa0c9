"""A session: one arena for every tensor the schedule names, a plan per call size, the step walk.

The planner gives, for a call of n tokens, the offset of every buffer instance. The session
allocates the arena once, for the larger of two plans (its largest call, n = max_tokens: the
prompt's prefill, or a --budget chunk of it; and decode, n = 1; a shorter call's plan is
checked to fit when first bound), turns each instance into a typed view of the arena at its offset,
and walks the steps in order, each step dispatching to its kernel. The KV cache is a
persistent instance the planner puts at offset 0 in every plan of the schedule, so it
survives from one call to the next; `length` counts the positions it holds.
"""
from __future__ import annotations

import ctypes
import mmap
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch

from planner.calls import with_tile
from planner.errors import ArenaError
from planner.lifetimes import Step, bind
from planner.plan import Buffer, Plan, plan_lifetimes
from planner.reader import load
from planner.schedule import SCHEDULES

from .model import KERNELS, Call, Model, cache_views, step_views
from .sampling import Sampler
from .weights import DTYPES

SCHEDULE = SCHEDULES / "llama.yaml"
TORCH_DTYPES = {**DTYPES, "i32": torch.int32, "i64": torch.int64, "i8": torch.int8, "u8": torch.uint8,
                "f64": torch.float64}
PLAN_DTYPES = {torch_dtype: name for name, torch_dtype in DTYPES.items()}   # the run dtype as the planner's --dtype


def allocate_arena(nbytes: int, device: torch.device) -> torch.Tensor:
    """The one allocation behind every device tensor the schedule names, made once per session."""
    arena = torch.empty(nbytes, dtype=torch.uint8, device=device)
    if device.type == "cpu":
        _huge_pages(arena)
        # touched now, not by the first call: the pages of a KV cache of thousands of positions
        # made it 10-35 times slower than the calls after it (the keys are stored nctx apart, so
        # a few positions touch every page), and its speed said so
        arena.zero_()
    return arena


def _huge_pages(t: torch.Tensor) -> None:
    """Ask Linux for 2 MiB pages behind t's whole 2 MiB pages, before anything touches them.
    Decode attention reads each K/V row of the cache (nctx positions apart) a few lines at a
    time: with 4 KiB pages nearly every row is a TLB miss (about 30% of a layer's attention at
    16 positions, measured). Elsewhere, or where the kernel declines, pages stay as they are."""
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE"):
        return
    huge = 1 << 21
    start, end = -(-t.data_ptr() // huge) * huge, (t.data_ptr() + t.nbytes) // huge * huge
    if end > start:
        ctypes.CDLL(None).madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), mmap.MADV_HUGEPAGE)


@dataclass
class BoundStep:
    step: Step
    kernel: object           # model.KERNELS[step.op]
    tensors: SimpleNamespace  # tensor name -> view of the instance live at this step, and its parts;
                              # after the first call, `_bound`: the step's compiled call (model.bound)


@dataclass
class BoundPlan:
    plan: Plan
    steps: list[BoundStep]
    # (kernel, tensors, layer) per step, the walk's arguments unpacked once: a token walks
    # hundreds of steps, and attribute lookups per step add up (docs/executor.md)
    calls: list[tuple] = field(init=False)

    def __post_init__(self):
        self.calls = [(s.kernel, s.tensors, s.step.layer) for s in self.steps]


class Session:
    def __init__(self, model: Model, nctx: int, max_tokens: int, strategy: str = "auto", trace: bool = False,
                 tile: int | None = None):
        """A session for calls of at most `max_tokens` tokens, and at most `nctx` positions in all;
        calls of several tokens attend to `tile` keys at a time (default: planner.calls.key_tile)."""
        if not 1 <= max_tokens <= nctx <= len(model.cos):     # else a call fails midway, at the first position past
            raise ArenaError(f"a session of {nctx} positions and calls of {max_tokens} tokens: 1 <= calls <= positions "
                             f"<= the {len(model.cos)} positions the model was built for (build_model's nctx)")
        self.model, self.nctx, self.max_tokens, self.strategy = model, nctx, max_tokens, strategy
        self.tile = tile
        self.device, self.dtype = model.weights.embedding.device, model.weights.dtype
        self.schedule = load(SCHEDULE)
        self.length = 0                               # positions held by the KV cache
        self._plans: dict[int, tuple[Plan, list[Step]]] = {}
        self._bound: dict[int, BoundPlan] = {}
        self._last: BoundPlan | None = None
        # the arena's bytes, in one tensor: every view of a planned instance is a slice of it
        self.backing = allocate_arena(max(self.plan(n).arena for n in {max_tokens, 1}), self.device)
        self.host = {b.name: self._host_buffer(b.size) for b in self.plan(max_tokens).buffers if b.memory == "host"}
        self.persistent = _persistent(self.plan(max_tokens))
        self.kv = next(self._view(b) for b in self.plan(max_tokens).buffers if b.tensor == "kv")   # at 0 in every plan
        self.trace: list[tuple[Plan, list[float]]] | None = [] if trace else None

    def plan(self, n: int) -> Plan:
        """The plan of the schedule bound to this model, nctx and n tokens (made once per n)."""
        if n not in self._plans:
            dims = with_tile({**self.model.weights.dims(), "nctx": self.nctx, "n": n}, self.tile)
            lifetimes = bind(self.schedule, dims, PLAN_DTYPES[self.dtype])
            self._plans[n] = plan_lifetimes(lifetimes, self.strategy), lifetimes.steps
        return self._plans[n][0]

    def steps(self, n: int) -> list[Step]:
        """The schedule's steps as the plan for n tokens numbers them (each with its cells)."""
        self.plan(n)
        return self._plans[n][1]

    def forward(self, ids: list[int], sampler: Sampler) -> int:
        """Run one call over `ids` (the prompt, or the last token) and return the next token."""
        n = len(ids)
        if not 1 <= n <= self.max_tokens:
            raise ArenaError(f"a call of {n} tokens: this session runs calls of 1 to {self.max_tokens} tokens")
        if self.length + n > self.nctx:
            raise ArenaError(f"--nctx: {self.length} positions used plus {n} new exceed the context of {self.nctx}")
        bound = self._last = self._bind(n)
        call = self._call(ids, sampler)
        if self.trace is None:
            model = self.model
            for kernel, tensors, layer in bound.calls:
                kernel(tensors, model, layer, call)
        else:
            self.trace.append((bound.plan, self._timed_walk(bound, call)))
        self.length += n
        return int(bound.steps[-1].tensors.next_tokens[0])

    def logits(self) -> torch.Tensor:
        """A float32 copy of the last call's logits (1, vocab), read from the arena."""
        return self._last.steps[-1].tensors.logits.float().clone()

    def reset(self) -> None:
        """Forget the cached positions; the next call starts a new sequence in the same arena."""
        self.length = 0

    def _call(self, ids: list[int], sampler: Sampler) -> Call:
        n, start = len(ids), self.length
        m, half = self.model, self.model.dh // 2
        return Call(list(ids), n, start, m.cos[start:start + n].view(n, 1, 2, half),
                    m.sin[start:start + n].view(n, 1, 2, half), sampler=sampler,
                    cache=cache_views(self.kv, m, start, start + n))

    def _bind(self, n: int) -> BoundPlan:
        """Views of the arena for every step of the plan for n tokens (made once per n)."""
        if n in self._bound:
            return self._bound[n]
        plan = self.plan(n)
        if plan.arena > self.backing.numel():
            raise ArenaError(f"the plan for {n} tokens needs an arena of {plan.arena} bytes; "
                             f"this session's holds {self.backing.numel()}")
        if _persistent(plan) != self.persistent:   # the KV cache would not survive between calls
            raise RuntimeError(f"the plans place persistent tensors differently: {_persistent(plan)} "
                               f"for {n} tokens, {self.persistent} for {self.max_tokens}")
        views = {b.name: self._view(b) for b in plan.buffers}
        steps = []
        for step in self.steps(n):
            live = {b.tensor: views[b.name] for b in plan.buffers
                    if b.tensor in step.cells and b.first <= step.index <= b.last}
            tensors = SimpleNamespace(**step_views(live, self.model, step.layer))
            steps.append(BoundStep(step, KERNELS[step.op], tensors))
        self._bound[n] = BoundPlan(plan, steps)
        return self._bound[n]

    def _view(self, b: Buffer) -> torch.Tensor:
        """The instance's typed view: arena bytes at its offset, or its host tensor."""
        dtype = TORCH_DTYPES[b.dtype]
        if b.memory == "host":
            return self.host[b.name][:b.nbytes].view(dtype).view(b.shape)
        return self.backing[b.offset:b.offset + b.nbytes].view(dtype).view(b.shape)

    def _host_buffer(self, nbytes: int) -> torch.Tensor:
        pin = self.device.type == "cuda"   # pinned, so host -> device copies run asynchronously
        return torch.empty(nbytes, dtype=torch.uint8, pin_memory=pin)

    def _timed_walk(self, bound: BoundPlan, call: Call) -> list[float]:
        """The step walk, timing each step (synchronizing the device so the time is the step's)."""
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        seconds = []
        for s in bound.steps:
            start = time.perf_counter()
            s.kernel(s.tensors, self.model, s.step.layer, call)
            sync()
            seconds.append(time.perf_counter() - start)
        return seconds


def _persistent(plan: Plan) -> dict[str, int]:
    """Offsets of the persistent instances (the KV cache): the same in every plan of a session."""
    return {b.tensor: b.offset for b in plan.buffers if b.persistent}
