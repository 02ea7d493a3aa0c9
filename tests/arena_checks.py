"""Checks that a session keeps every tensor inside its arena: poison the bytes no live
instance holds, and find the bytes a view touches. Shared by the single-rank and the
tensor-parallel tests."""
import collections

import torch

# torch's matrix products on CPU in bf16 (oneDNN's) allocate scratch of their own inside each call
# and free it before they return: 0.1-0.4 MB a thread on SmolLM2's products, up to 1.7 MB at 4096 x
# 4096 (docs/executor.md); no out= tensor avoids it
PRODUCTS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm")

_free: dict[tuple[int, int], list[tuple[int, int]]] = {}


def poison_free_bytes(session, n: int, step: int) -> None:
    key = (id(session), n, step)
    if key not in _free:
        kept = sorted((b.offset, b.offset + b.size) for b in session.plan(n).device()
                      if b.first <= step <= b.last and (b.first < step or b.persistent))
        gaps, end = [], 0
        for start, stop in kept:
            if start > end:
                gaps.append((end, start))
            end = max(end, stop)
        _free[key] = gaps + ([(end, session.backing.numel())] if end < session.backing.numel() else [])
    for start, stop in _free[key]:
        session.backing[start:stop].view(torch.float32).fill_(float("nan"))


def extent(view: torch.Tensor) -> tuple[int, int]:
    """First and last byte address a strided view touches."""
    last = view.data_ptr() + sum((size - 1) * stride for size, stride in zip(view.shape, view.stride())) * view.element_size()
    return view.data_ptr(), last + view.element_size() - 1



def spying(kernels: dict, records: list, session_of) -> dict:
    """`kernels` wrapped so that before each step the free bytes of the arena are poisoned
    (NaN) and the step's views are recorded: records[call][step] = {name: view}.
    `session_of()` gives the session being run."""
    def spy(kernel):
        def run(t, m, layer, call):
            if kernel.__name__ == "setup":
                records.append([])
            step = len(records[-1])
            poison_free_bytes(session_of(), call.n, step)
            records[-1].append(dict(vars(t)))
            kernel(t, m, layer, call)
        return run
    return {op: spy(kernel) for op, kernel in kernels.items()}


def check_views(session, records: list, prompt_len: int, tokens: int, dtypes: dict) -> None:
    """Every tensor each step named was the view at arena + its planned offset (host
    instances outside the arena), and every part a kernel used lay inside a live instance."""
    assert [len(r) for r in records] == [len(session.plan(prompt_len).steps)] + \
        [len(session.plan(1).steps)] * (tokens - 1)
    base, size = session.backing.data_ptr(), session.backing.numel()
    for call, views in enumerate(records):
        n = prompt_len if call == 0 else 1
        plan, steps = session.plan(n), session.steps(n)
        for step, seen in zip(steps, views):
            live = [b for b in plan.buffers if b.first <= step.index <= b.last]
            for tensor in step.cells:
                b = next(b for b in live if b.tensor == tensor)
                view = seen[tensor]
                assert list(view.shape) == b.shape and view.dtype == dtypes[b.dtype], (step.name, tensor)
                if b.memory == "device":
                    assert view.data_ptr() == base + b.offset, (step.name, tensor)
                else:
                    assert not base <= view.data_ptr() < base + size, (step.name, tensor)
            for name, view in seen.items():
                if name == "_bound":   # the step's compiled call (model.bound), not a view
                    continue
                for part in [view] if isinstance(view, torch.Tensor) else vars(view).values():   # a Scratch's views
                    if part.device.type == "cpu" and base <= part.data_ptr() < base + size:
                        first, last = extent(part)
                        assert any(base + b.offset <= first and last < base + b.offset + b.size
                                   for b in live if b.memory == "device"), (step.name, name)


def allocations(run) -> list[tuple[tuple[tuple[str, int], ...], int]]:
    """Every allocation (bytes > 0) and free (< 0) of torch's CPU allocator while `run()` ran: (the
    ops around it, outermost first, each as (name, start time in ns)), bytes). Read one by one
    from the profiler's event tree: its per-op totals net out a temporary that an op frees before
    it returns."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    found = []

    def walk(node, ops):
        if node.name == "[memory]":
            found.append((ops, node.extra_fields.alloc_size))
            return
        ops += ((node.name, node.start_time_ns),)
        for child in node.children:
            walk(child, ops)
    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root, ())
    return found


def bytes_allocated(run) -> list[tuple[str, int]]:
    """The ops that allocated memory while `run()` ran, and the bytes of each allocation."""
    return [(ops[-1][0] if ops else "", size) for ops, size in allocations(run) if size > 0]


def outside_products(made) -> list:
    """`made` (as allocations() gives it) less the scratch torch's matrix products allocate and
    free within one call; a product that keeps any fails the check."""
    held = collections.Counter()
    for ops, size in made:
        if ops and ops[-1][0] in PRODUCTS:
            held[ops[-1]] += size
    assert set(held.values()) <= {0}, f"a matrix product kept scratch after it returned: {held}"
    return [(ops, size) for ops, size in made if not (ops and ops[-1][0] in PRODUCTS)]
