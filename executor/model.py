"""One kernel per step op of schedules/llama.yaml.

A kernel is `kernel(t, m, layer, call)`:
    t      the step's tensors: t.x, t.attn, ... are typed views of the arena at the planned
           offsets (host tensors for `+m` instances); a kernel writes only into these views
           (attention also into call.cache, views of t.kv), with `out=` and in-place ops,
           never rebinding a name to a new tensor
    m      the Model: weights, RoPE tables and shapes (constants, not arena tensors)
    layer  the layer index of the step, None outside the repeat block
    call   what changes per call: token ids, first position, RoPE rows, sampler, and the
           views of the KV cache (the arena's kv) at this call's positions, made once per call
Kernels make no tensor: their scratch is named in the schedule too (rope's swapped halves,
attention's scores, mask, running output and statistics), so the arena holds every
activation byte. The compiled kernels alone hold a bounded workspace outside it (x's rows
quantized for a packed product, float32 copies of bf16 rows), which the estimate counts
(planner.estimate.workspace_bytes). The layout follows transformers' Llama, so logits compare.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

from planner.errors import ArenaError

from .quant import _kernels, bind, lookup
from .sampling import Sampler, Scratch
from .weights import Weights

if TYPE_CHECKING:
    from .parallel import Group

ROPE_ROWS = 4096        # positions of the RoPE tables computed at a time: 2 MiB of float32 at dh 128


@dataclass
class Model:
    weights: Weights
    nh: int
    nkvh: int
    dh: int
    di: int
    eps: float               # the RMSNorm epsilon
    root_eps: torch.Tensor   # its square root, a (1, 1) float32 tensor (see _rms_norm_rows)
    root_d: torch.Tensor     # 1 / sqrt(d), (1, 1) float32 too: a Python number or a 0-d tensor as an
                             # operand is copied into a new tensor on every op
    cos: torch.Tensor   # (nctx, dh): cos of each position's angles, both halves
    sin: torch.Tensor   # (nctx, dh): sin, first half negated (rotate_half's sign)
    swap: torch.Tensor  # [1, 0]: the halves of a head in swapped order, for rope's index_select
    scale: float        # 1 / sqrt(dh), the scores' scale
    keys_by_position: bool   # the KV cache's keys position by position (CacheViews): on CPU, not in float32
    compiled: bool      # float32 or bf16 on the CPU: norms, RoPE, SwiGLU and decode attention are one call
                        # each to executor/kernels.c, where torch takes two to five ops (and Python calls)
    bf16: bool          # the run dtype is bf16 (the compiled kernels' flag)
    group: Group | None = None    # the tensor-parallel ranks, None when this is the only one

    @property
    def first_rank(self) -> bool:
        """Rank 0, or the only rank. It adds its attn_output and ffn_down products to x (the
        residual) where the others write theirs over x, so the all-reduce counts the
        residual once; and it alone samples the next token, which it then broadcasts."""
        return self.group is None or self.group.rank == 0


@dataclass
class CacheViews:
    """Views of the KV cache instance `kv` for one call, per layer: where the call's K and V go,
    and the keys and values of every position it attends to. The executor lays each layer's
    values out head by head and transposed, (nkvh, dh, nctx), in kv's bytes, so a head's values,
    transposed, are the (positions, dh) right operand of the output's product. Keys are laid out
    the same way in float32, so a head's keys are the (dh, positions) operand of the scores'
    product as MKL streams it fastest; in bf16 and f16, whose CPU products are fast only on the
    transpose of a contiguous operand, position by position, (nkvh, nctx, dh), and `keys` is the
    transposed view (measured: docs/executor.md). Made once per call for all layers in a few
    ops: sliced in each attention step instead, they cost three view ops there (microseconds
    each, 30 layers a token)."""
    key_slots: tuple[torch.Tensor, ...]     # (nkvh, dh, n): this call's positions
    value_slots: tuple[torch.Tensor, ...]   # (nkvh, dh, n)
    keys: tuple[torch.Tensor, ...]          # (nkvh, dh, start + n): positions 0 .. start + n
    values: tuple[torch.Tensor, ...]        # (nkvh, start + n, dh), a transposed view


def cache_views(kv: torch.Tensor, m: Model, start: int, end: int) -> CacheViews:
    """The views of a call over positions start .. end."""
    layers, nctx = kv.shape[0], kv.shape[2]
    heads = kv.view(layers, 2, m.nkvh, m.dh, nctx)
    keys = kv.view(layers, 2, m.nkvh, nctx, m.dh)[:, 0].transpose(-1, -2) if m.keys_by_position else heads[:, 0]
    return CacheViews(keys[..., start:end].unbind(0), heads[:, 1, ..., start:end].unbind(0),
                      keys[..., :end].unbind(0), heads[:, 1, ..., :end].transpose(-1, -2).unbind(0))


@dataclass
class Call:
    ids: list[int]          # the tokens of this call
    n: int                  # their number (a field, not a property: kernels read it on every step)
    start: int              # their first position; a call's positions are consecutive
    cos: torch.Tensor       # (n, 1, 2, dh/2): RoPE rows of this call's positions
    sin: torch.Tensor
    sampler: Sampler
    cache: CacheViews       # the parts of the KV cache (the arena's kv) this call's attention uses


def build_model(weights: Weights, nctx: int, group: Group | None = None) -> Model:
    c = weights.config
    device, dtype = weights.embedding.device, weights.dtype
    cos, sin = rope_tables(c.dh, nctx, c.rope_theta, c.rope_scaling, weights.rope_factors, device, dtype)
    half = c.dh // 2
    sin[:, :half].neg_()
    root_eps = torch.tensor([[math.sqrt(c.eps)]], device=device)
    root_d = torch.tensor([[c.d ** -0.5]], device=device)
    dims = weights.dims()
    swap = torch.tensor([1, 0], device=device)
    keys_by_position = device.type == "cpu" and dtype != torch.float32
    compiled = device.type == "cpu" and dtype in (torch.float32, torch.bfloat16)
    return Model(weights, dims["nh"], dims["nkvh"], c.dh, dims["di"], c.eps, root_eps, root_d,
                 cos, sin, swap, c.dh ** -0.5, keys_by_position, compiled,
                 dtype == torch.bfloat16, group)


def rope_tables(dh: int, nctx: int, theta: float, scaling: dict | None, factors: torch.Tensor | None,
                device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (nctx, dh) at `dtype` on `device` (planner/estimate.py counts them),
    computed in float32 exactly as transformers computes them, ROPE_ROWS positions at a time:
    the float32 temporaries of a whole long context took as much again as the tables."""
    inv_freq = 1.0 / theta ** (torch.arange(0, dh, 2, dtype=torch.int64).float() / dh)
    if factors is not None:
        inv_freq = inv_freq / factors.float().cpu()
    if scaling is not None:
        inv_freq = _scaled(inv_freq, scaling)
    cos, sin = (torch.empty(nctx, dh, dtype=dtype, device=device) for _ in range(2))
    for start in range(0, nctx, ROPE_ROWS):
        positions = torch.arange(start, min(nctx, start + ROPE_ROWS), dtype=torch.int64).float()
        angles = torch.outer(positions, inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        cos[start:start + len(positions)] = angles.cos()
        sin[start:start + len(positions)] = angles.sin()
    return cos, sin


def _scaled(inv_freq: torch.Tensor, s: dict) -> torch.Tensor:
    """transformers' 'linear' and 'llama3' RoPE scaling of the frequencies."""
    if s["rope_type"] == "linear":
        return inv_freq / s["factor"]
    if s["rope_type"] == "llama3":
        factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
        old_ctx = float(s["original_max_position_embeddings"])   # a Python int past int64 is no tensor scalar
        wavelen = 2 * torch.pi / inv_freq
        scaled = torch.where(wavelen > old_ctx / low, inv_freq / factor, inv_freq)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_ctx / high) & (wavelen <= old_ctx / low)
        return torch.where(medium, smoothed, scaled)
    raise ArenaError(f"RoPE scaling '{s['rope_type']}' is not supported (linear, llama3)")


def rms_norm(t, x: torch.Tensor, m: Model, weight: torch.Tensor, out: torch.Tensor) -> None:
    """out (n, d) = x / sqrt(mean(x^2) + eps) * weight, for x (n, d); t, the step's tensors, has
    the scratch (rms, normed) and keeps the compiled call (bound). On the CPU in float32 or
    bf16 (m.compiled) one call to kernels.c, which sums the squares in float32 and rounds
    once; elsewhere the rows through torch (_rms_norm_rows)."""
    if m.compiled:
        bound(t, lambda: partial(_kernels.rms_norm, m.bf16, x.data_ptr(), x.shape[0], x.stride(0), weight.data_ptr(),
                                 out.data_ptr(), out.stride(0), x.shape[1], m.eps))()
    else:
        _rms_norm_rows(x, m, weight, out, t.rms_rows, t.normed_rows)


def _rms_norm_rows(x: torch.Tensor, m: Model, weight: torch.Tensor, out: torch.Tensor, rms: torch.Tensor,
                   normed: torch.Tensor) -> None:
    """Every row in float32 in `normed` and no host round trip; x over the root mean square is
    rounded to the run dtype before the weight multiplies it, as in transformers. The rows
    are copied first: given bf16 rows, vector_norm(dtype=float32) and a division by the
    float32 rms would each convert them into a tensor of their own."""
    normed.copy_(x)
    torch.linalg.vector_norm(normed, dim=-1, keepdim=True, out=rms)   # sqrt(sum x^2)
    torch.hypot(rms.mul_(m.root_d), m.root_eps, out=rms)              # sqrt(mean x^2 + eps)
    out.copy_(normed.div_(rms)).mul_(weight)


def step_views(tensors: dict[str, torch.Tensor], m: Model, layer: int | None) -> dict[str, torch.Tensor]:
    """A step's tensors plus the parts of them its kernel uses, made once per plan so a kernel
    slices nothing per call: all are views of the same instances at the same offsets."""
    views = dict(tensors)
    q_width = m.nh * m.dh
    group = m.nh // m.nkvh   # query heads per K/V head
    if "attn" in tensors:
        attn = tensors["attn"]
        n = attn.shape[0]
        views["q"] = attn[:, :q_width]
        views["q_kv"] = views["q"].view(n, m.nkvh, group, m.dh).permute(1, 2, 0, 3)          # (nkvh, group, n, dh)
        views["q_groups"] = attn[0, :q_width].view(m.nkvh, group, m.dh)                     # n = 1: heads by K/V head
        views["qk"] = attn[:, :q_width + m.nkvh * m.dh].view(n, m.nh + m.nkvh, 2, m.dh // 2)   # RoPE halves
        views["new_kv"] = attn[:, q_width:].view(n, 2, m.nkvh, m.dh).permute(1, 2, 3, 0)   # (2, nkvh, dh, n), as slots
    if "rot" in tensors:
        views["rot_halves"] = tensors["rot"].view(views["qk"].shape)
    if "scores" in tensors:
        # scores and mask hold tiles of any width up to the tile, each contiguous from the start
        views["scores_flat"], views["mask_flat"] = tensors["scores"].view(-1), tensors["mask"].view(-1)
        n = tensors["acc"].shape[1]
        views["acc_kv"] = tensors["acc"].view(m.nkvh, group, n, m.dh)
        stats = tensors["stats"].view(4, m.nkvh, group, n, 1)
        views["run_max"], views["run_sum"], views["tile_max"], views["tile_sum"] = stats
    if "rms" in tensors:
        rms = tensors["rms"]   # float32 (n, 1)
        last = "out_norm" in tensors   # the output norm's one row
        views["rms_rows"] = rms[:1] if last else rms
        views["normed_rows"] = tensors["normed"][:1] if last else tensors["normed"]
    if "probs" in tensors:
        drop = tensors["drop"].view(torch.bool)
        views["scratch"] = Scratch(tensors["probs"][:1], tensors["probs"][1:], tensors["order"], drop[:1], drop[1:])
    if "ffn" in tensors:
        views["gate"], views["up"] = tensors["ffn"][:, :m.di], tensors["ffn"][:, m.di:]
    if "x" in tensors:
        views["last"] = tensors["x"][-1:]              # only the last token is sampled
    return views


def bound(t, make: Callable[[], Callable]) -> Callable:
    """The step's compiled call with its arguments looked up once: made by make() on the step's
    first call of a plan and kept in its tensors, since a plan's step always passes the same
    views and weights. Looking up shapes, strides and pointers cost microseconds a call, several
    hundred calls a decode token (docs/executor.md)."""
    call = getattr(t, "_bound", None)
    if call is None:
        call = t._bound = make()
    return call


def product(t, x: torch.Tensor, w, out: torch.Tensor, accumulate: bool = False) -> None:
    """out (+)= x @ w (quant.bind)"""
    bound(t, lambda: bind(x, w, out, accumulate))()


# --- the kernels, in the order of the schedule ---

def setup(t, m: Model, layer, call: Call):
    if call.n == 1:   # decode: two fills, cheaper than building a tensor from the list
        t.tokens.fill_(call.ids[0])
        t.pos.fill_(call.start)
        return
    t.tokens.numpy()[:] = call.ids   # host memory: written in place, no tensor made from the list
    torch.arange(call.start, call.start + call.n, out=t.pos)


def embedding(t, m: Model, layer, call: Call):
    tokens = t.tokens.to(t.x.device, non_blocking=True)   # host -> device; the same tensor on CPU
    lookup(m.weights.embedding, tokens, out=t.x)


def attn_norm(t, m: Model, layer, call: Call):
    rms_norm(t, t.x, m, m.weights.layers[layer].attn_norm, t.x_)


def attn_qkv(t, m: Model, layer, call: Call):
    product(t, t.x_, m.weights.layers[layer].wqkv, t.attn)


def rope(t, m: Model, layer, call: Call):
    """Rotate each Q and K head in place: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), reading
    the swapped halves (x2, x1) from rot, since the halves in attn are overwritten."""
    if m.compiled:
        bound(t, lambda: partial(_kernels.rope, m.bf16, t.attn.data_ptr(), call.n, t.attn.stride(0), m.nh + m.nkvh,
                                 m.dh, m.cos.data_ptr(), m.sin.data_ptr()))(call.start)
        return
    torch.index_select(t.qk, 2, m.swap, out=t.rot_halves)
    t.qk.mul_(call.cos).addcmul_(t.rot_halves, call.sin)


def attention(t, m: Model, layer, call: Call):
    """Append this call's K and V to the cache at their positions, attend over the cache,
    and write the heads' output over Q (attn's Q part), which nothing reads afterwards.
    Keys come a tile at a time (t.scores' width); a call whose keys fit one tile takes a
    plain softmax, the others keep a running max and sum per query (flash attention)."""
    keys, values = call.cache.keys[layer], call.cache.values[layer]    # (nkvh, dh, end), (nkvh, end, dh)
    end = call.start + call.n
    if m.compiled and call.n == 1:   # the append too
        longest, attend = bound(t, lambda: _attend_one_compiled(t, m, keys, values))
        if end <= longest:
            attend(end)
            return
    call.cache.key_slots[layer].copy_(t.new_kv[0])
    call.cache.value_slots[layer].copy_(t.new_kv[1])
    if end > t.scores.shape[-1]:
        _attend_tiled(t, m, keys, values, call)
    elif call.n == 1:
        _attend_one(t, m, keys, values, end)
    else:
        s = _scores(t, m, keys, call, 0, end)
        torch.softmax(s, -1, out=s)
        for h, g in _query_heads(m):
            torch.mm(s[h, g], values[h], out=t.q_kv[h, g])


def _attend_one_compiled(t, m: Model, keys: torch.Tensor, values: torch.Tensor) -> tuple[int, Callable]:
    """kernels.c's decode attention for this layer, as a call taking the end of the context,
    and the longest context it takes: one K/V head's float32 scores must fit t.scores (the K/V
    heads go in turn where all do not). The cache's views start at position 0 in every call."""
    room, group = t.scores.nbytes // 4, m.nh // m.nkvh
    return room // group, partial(_kernels.attend_one, m.bf16, t.attn.data_ptr(), keys.data_ptr(), values.data_ptr(),
                                  m.nkvh, group, m.dh, values.stride(2), m.scale, t.scores.data_ptr(), room)


def _attend_one(t, m: Model, keys: torch.Tensor, values: torch.Tensor, end: int) -> None:
    """One token: the query heads sharing a K/V head form that head's batch of queries, so
    attention takes three ops and no mask."""
    s = t.scores_flat[:m.nh * end].view(m.nkvh, m.nh // m.nkvh, end)
    torch.baddbmm(s, t.q_groups, keys, beta=0, alpha=m.scale, out=s)
    torch.softmax(s, -1, out=s)
    torch.bmm(s, values, out=t.q_groups)


def _scores(t, m: Model, keys: torch.Tensor, call: Call, k0: int, k1: int) -> torch.Tensor:
    """The scaled scores (nkvh, group, n, k1 - k0) of the call's queries against keys k0 .. k1,
    in t.scores, with the keys after each query's position at -inf."""
    group, width = m.nh // m.nkvh, k1 - k0
    s = t.scores_flat[:m.nh * call.n * width].view(m.nkvh, group, call.n, width)
    for h, g in _query_heads(m):
        torch.addmm(s[h, g], t.q_kv[h, g], keys[h, :, k0:k1], beta=0, alpha=m.scale, out=s[h, g])
    if k1 - 1 > call.start:   # some key of the tile comes after the first query
        mask = t.mask_flat[:call.n * width].view(call.n, width)
        s.add_(mask.fill_(float("-inf")).triu_(call.start - k0 + 1))
    return s


def _query_heads(m: Model):
    """(K/V head, query head within its group) pairs. Prefill's products go one query head at a
    time, each a plain matrix product on strided views: a batched product over a K/V head's
    group, with its keys expanded, makes oneDNN copy them outside the arena in bf16 on CPUs
    with AVX512-BF16."""
    return ((h, g) for h in range(m.nkvh) for g in range(m.nh // m.nkvh))


def _attend_tiled(t, m: Model, keys: torch.Tensor, values: torch.Tensor, call: Call) -> None:
    """Tile by tile: each tile's scores are shifted by the running max, the running sum and
    output rescaled to it. The first tile holds key 0, which every query sees, so the running
    max is finite from then on (a query's masked tile adds exp(-inf) = 0)."""
    run_max, run_sum, tile_max, tile_sum = t.run_max, t.run_sum, t.tile_max, t.tile_sum
    acc, end, tile = t.acc_kv, call.start + call.n, t.scores.shape[-1]
    for k0 in range(0, end, tile):
        k1 = min(k0 + tile, end)
        s = _scores(t, m, keys, call, k0, k1)
        torch.amax(s, -1, keepdim=True, out=tile_max)
        if k0:
            torch.maximum(run_max, tile_max, out=tile_max)
            run_max.sub_(tile_max).exp_()    # exp(old max - new max): the rescaling of what came before
            run_sum.mul_(run_max)
            acc.mul_(run_max)
        else:
            run_sum.zero_()
            acc.zero_()
        run_max.copy_(tile_max)
        s.sub_(run_max).exp_()
        run_sum.add_(torch.sum(s, -1, keepdim=True, out=tile_sum))
        for h, g in _query_heads(m):
            acc[h, g].addmm_(s[h, g], values[h, k0:k1])
    torch.div(acc, run_sum, out=t.q_kv)


def attn_output(t, m: Model, layer, call: Call):
    product(t, t.q, m.weights.layers[layer].wo, t.x, accumulate=m.first_rank)


def attn_allreduce(t, m: Model, layer, call: Call):
    """The ranks' partial x (each from its own heads), summed in place in every rank's arena."""
    if m.group is not None:
        m.group.all_reduce(t.x)


def ffn_norm(t, m: Model, layer, call: Call):
    rms_norm(t, t.x, m, m.weights.layers[layer].ffn_norm, t.x_)


def ffn_up(t, m: Model, layer, call: Call):
    product(t, t.x_, m.weights.layers[layer].w_gate_up, t.ffn)


def activation(t, m: Model, layer, call: Call):
    """SwiGLU: silu(gate) * up, written into the gate half."""
    if m.compiled:
        bound(t, lambda: partial(_kernels.swiglu, m.bf16, t.ffn.data_ptr(), call.n, t.ffn.stride(0), m.di))()
        return
    F.silu(t.gate, inplace=True).mul_(t.up)


def ffn_down(t, m: Model, layer, call: Call):
    product(t, t.gate, m.weights.layers[layer].w_down, t.x, accumulate=m.first_rank)


def ffn_allreduce(t, m: Model, layer, call: Call):
    """The ranks' partial x (each from its own FFN columns), summed in place."""
    if m.group is not None:
        m.group.all_reduce(t.x)


def output_norm(t, m: Model, layer, call: Call):
    rms_norm(t, t.last, m, m.weights.output_norm, t.out_norm)


def logits(t, m: Model, layer, call: Call):
    product(t, t.out_norm, m.weights.output, t.logits)


def sample(t, m: Model, layer, call: Call):
    """Every rank has the same logits; rank 0 chooses, so a seeded sampler's stream is one."""
    if m.first_rank:
        call.sampler.choose(t.logits, out=t.next_tokens, best=t.best, scratch=t.scratch)
    if m.group is not None:
        m.group.broadcast(t.next_tokens)


KERNELS = {f.__name__: f for f in (setup, embedding, attn_norm, attn_qkv, rope, attention, attn_output,
                                   attn_allreduce, ffn_norm, ffn_up, activation, ffn_down, ffn_allreduce,
                                   output_norm, logits, sample)}
