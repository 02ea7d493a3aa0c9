"""Native GGUF weights: 4-bit matrices in torch's int4 layout, and the one matrix product the kernels call.

torch's CPU int4 kernel computes x @ w for w[n, k] = (q - 8) * scale + zero, q in 0..15, one
scale and zero per 32 consecutive k of a row n, the scales in x's dtype. GGUF's blocks map onto it:
    Q4_0  w = d (q - 8)        scale d, zero 0
    Q4_1  w = d q + m          scale d, zero m + 8d
    Q8_0  w = d q, q in -128..127: q = 16 hi + lo with hi in -8..7 and lo in 0..15, so
          w = (hi + 8 - 8) 16d + (lo - 8) d + 8d: two 4-bit matrices whose products are summed
Each is exact in float32; scales in bf16 keep 8 of f16's 11 significant bits (docs/executor.md).
A weight is either a plain tensor, the (in, out) operand of weights.operand, or a Packed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

GROUP = 32   # GGUF's block length, and the kernel's group size
LOOKUP_BYTES = 20  # a lookup's temporaries per element: a uint8 gather, int32 nibbles, float32 values (1 + 4 + 4) and scales, for up to two parts
ROWS = 64    # rows per product or lookup of packed weights: what they hold outside the arena grows with it
SLAB = 2048  # rows packed at a time (a multiple of the kernel's 32-row blocks, whose packings concatenate)


@dataclass
class Blocks:
    """A GGUF matrix (out, in) as its block values: w = d * q + m per group of 32 along `in`."""
    kind: str                 # "Q4_0", "Q4_1" or "Q8_0"
    q: torch.Tensor           # (out, in) int8: -8..7 (Q4_0), 0..15 (Q4_1) or -128..127 (Q8_0)
    d: torch.Tensor           # (out, in / 32) float32 scales
    m: torch.Tensor | None    # (out, in / 32) float32 offsets (Q4_1), else None

    def rows(self, part: slice) -> Blocks:
        return Blocks(self.kind, self.q[part], self.d[part], None if self.m is None else self.m[part])

    def cols(self, part: slice) -> Blocks | None:
        """Columns start .. stop of `in`, or None where the slice would split a group of 32."""
        start, stop = part.start or 0, self.q.shape[1] if part.stop is None else part.stop
        if start % GROUP or stop % GROUP:
            return None
        groups = slice(start // GROUP, stop // GROUP)
        return Blocks(self.kind, self.q[:, start:stop], self.d[:, groups], None if self.m is None else self.m[:, groups])

    def dequantize(self) -> torch.Tensor:
        w = self.q.float() * self.d.repeat_interleave(GROUP, 1)
        return w if self.m is None else w + self.m.repeat_interleave(GROUP, 1)


def cat_rows(parts: list[Blocks]) -> Blocks | None:
    """Blocks stacked along `out` (fused Q|K|V, gate|up), or None when their kinds differ."""
    if len({p.kind for p in parts}) != 1:
        return None
    m = None if parts[0].m is None else torch.cat([p.m for p in parts])
    return Blocks(parts[0].kind, torch.cat([p.q for p in parts]), torch.cat([p.d for p in parts]), m)


@dataclass
class Int4:
    packed: torch.Tensor   # torch's int4pack of q (out, in): rows in blocks of 32, see _unpack_rows
    scales: torch.Tensor   # (in / 32, out, 2): scale and zero of each group, in the activation dtype


@dataclass
class Packed:
    """The (in, out) right operand of x @ w, held as 4-bit parts whose products add up to x @ w."""
    parts: tuple[Int4, ...]
    shape: tuple[int, int]   # (in, out), as the plain operand's

    @property
    def dtype(self) -> torch.dtype:
        return self.parts[0].scales.dtype

    @property
    def device(self) -> torch.device:
        return self.parts[0].packed.device

    def nbytes(self) -> int:
        return sum(p.packed.nbytes + p.scales.nbytes for p in self.parts)


def packable(b: Blocks, device: torch.device) -> bool:
    """torch's int4 kernel runs on CPU here; its row blocks are 32 rows (lookups unpack them)."""
    return device.type == "cpu" and b.q.shape[0] % GROUP == 0 and b.q.shape[1] % GROUP == 0


def pack(b: Blocks, dtype: torch.dtype) -> Packed:
    """The blocks as 4-bit parts (one, or two for Q8_0), scales and zeros rounded to `dtype`.
    Packed a slab of rows at a time into the parts: the kernel's int32 input for all of a
    49,152-row output head at once would be 113 MB of temporaries beside the weights."""
    rows, parts = b.q.shape[0], None
    for i in range(0, rows, SLAB):
        slab = _parts(b.rows(slice(i, i + SLAB)), dtype)
        if parts is None:
            parts = tuple(Int4(s.packed.new_empty(rows, s.packed.shape[1]), s.scales.new_empty(s.scales.shape[0], rows, 2))
                          for s in slab)
        for part, s in zip(parts, slab):
            part.packed[i:i + SLAB] = s.packed
            part.scales[:, i:i + SLAB] = s.scales
    return Packed(parts, (b.q.shape[1], rows))


def _parts(b: Blocks, dtype: torch.dtype) -> tuple[Int4, ...]:
    if b.kind == "Q8_0":
        hi, lo = b.q >> 4, b.q & 15
        return _int4(hi + 8, 16 * b.d, torch.zeros_like(b.d), dtype), _int4(lo, b.d, 8 * b.d, dtype)
    if b.kind == "Q4_1":
        return (_int4(b.q, b.d, b.m + 8 * b.d, dtype),)
    return (_int4(b.q + 8, b.d, torch.zeros_like(b.d), dtype),)


def packed_nbytes(kind: str, rows: int, cols: int, dtype: torch.dtype) -> int:
    """What pack() holds for a (rows, cols) matrix: half a byte per weight, a scale and a zero per 32."""
    parts = 2 if kind == "Q8_0" else 1
    return parts * (rows * cols // 2 + cols // GROUP * rows * 2 * dtype.itemsize)


def _int4(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, dtype: torch.dtype) -> Int4:
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1)
    scales = torch.stack((scale, zero), dim=-1).transpose(0, 1).to(dtype).contiguous()
    return Int4(packed, scales)


def matmul(x: torch.Tensor, w, out: torch.Tensor, accumulate: bool = False) -> None:
    """out = x @ w, or out += x @ w: x (n, in), w a plain (in, out) operand or a Packed."""
    if isinstance(w, torch.Tensor):
        if accumulate:
            out.addmm_(x, w)
        else:
            torch.mm(x, w, out=out)
        return
    for i in range(0, len(x), ROWS):
        _packed_matmul(x[i:i + ROWS], w, out[i:i + ROWS], accumulate)


def _packed_matmul(x: torch.Tensor, w: Packed, out: torch.Tensor, accumulate: bool) -> None:
    """The int4 kernel returns a new tensor (it has no out= form), so a Packed product is
    copied (or added) into `out`; x is copied too where it is a strided view (attention's Q
    part, the FFN's gate half)."""
    x = x.contiguous()
    y = torch.ops.aten._weight_int4pack_mm_for_cpu(x, w.parts[0].packed, GROUP, w.parts[0].scales)
    for part in w.parts[1:]:
        y += torch.ops.aten._weight_int4pack_mm_for_cpu(x, part.packed, GROUP, part.scales)
    if accumulate:
        out.add_(y)
    else:
        out.copy_(y)


def lookup(table, tokens: torch.Tensor, out: torch.Tensor) -> None:
    """out[i] = row tokens[i] of the embedding: a (vocab, d) tensor, or a Packed (d, vocab) operand
    (a tied output head), whose column is rebuilt from the packed rows in float32, rounded once."""
    if isinstance(table, torch.Tensor):
        torch.index_select(table, 0, tokens, out=out)
        return
    for i in range(0, len(tokens), ROWS):
        _packed_lookup(table, tokens[i:i + ROWS], out[i:i + ROWS])


def _packed_lookup(table: Packed, tokens: torch.Tensor, out: torch.Tensor) -> None:
    total = _unpack_rows(table.parts[0], tokens)
    for part in table.parts[1:]:
        total += _unpack_rows(part, tokens)
    out.copy_(total)


def workspace_nbytes(dims: dict[str, int], dtype: torch.dtype) -> int:
    """The most bytes a product or a lookup of packed weights holds outside the arena at once,
    for a model of `dims` run in `dtype`: what the int4 kernel returns and the copy of a strided
    x, for ROWS rows (one row of the output head); or what a lookup's rebuilt rows take in
    float32 and int32 temporaries (_unpack_rows), for ROWS tokens. A bound: it adds up every
    tensor the call makes, as if none were freed before it returns."""
    d, e = dims["d"], dtype.itemsize
    widths = [(d, (dims["nh"] + 2 * dims["nkvh"]) * dims["dh"]), (dims["nh"] * dims["dh"], d),
              (d, 2 * dims["di"]), (dims["di"], d)]
    product = max(ROWS * (k + 2 * o) * e for k, o in widths)
    head = (d + 2 * dims["vocab"]) * e
    rows = ROWS * d * LOOKUP_BYTES
    return max(product, head, rows)


def _unpack_rows(part: Int4, rows: torch.Tensor) -> torch.Tensor:
    """Rows `rows` of (q - 8) * scale + zero, float32. torch's CPU int4pack holds 32 rows of q
    in k-major order, 16 bytes per k: byte j has row j in its low nibble, row 16 + j in its high
    (checked against the packer in tests/test_executor_gguf.py). In place where it can be: the
    temporaries are what a lookup holds outside the arena (workspace_nbytes)."""
    n, half = part.packed.shape
    k = 2 * half
    blocks = part.packed.view(n // GROUP, k, GROUP // 2)
    q = blocks[rows // GROUP, :, rows % 16].to(torch.int32)                             # (tokens, k)
    q.bitwise_right_shift_((4 * ((rows % GROUP) // 16))[:, None]).bitwise_and_(15).sub_(8)   # rows int32, as q
    scale, zero = part.scales[:, rows].float().unbind(-1)                              # (k / 32, tokens) each
    w = q.view(len(rows), k // GROUP, GROUP) * scale.t()[..., None]
    return w.add_(zero.t()[..., None]).view(len(rows), k)
