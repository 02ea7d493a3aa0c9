"""Native GGUF weights: Q4_0, Q4_1 and Q8_0 matrices held as the file's blocks, and the matrix
products and embedding lookups run on them by the compiled kernels (executor/kernels.c).

A product first quantizes its rows of x to 16 bits per block of 32 (scale max |x| / 32767) and
then multiplies integers, as llama.cpp's CPU kernels do with 8 bits: x moves by at most half a
step per value, the weights not at all. A lookup's rows are the dequantized weights exactly.
A weight is either a plain tensor, the (in, out) operand of weights.operand, or a Packed.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from planner.compiled import load
from planner.estimate import BLOCK_BYTES, FLOAT_ROWS, GROUP, NATIVE, ROWS, XBLOCK_BYTES

_kernels = load("executor._kernels", Path(__file__).with_name("kernels.c"))

# GROUP, BLOCK_BYTES: GGUF's block length and bytes. ROWS: the rows of x a product or lookup takes
# at once (what it holds outside the arena grows with them). FLOAT_ROWS: the rows of x (decode's
# one, a few) up to which float weights take kernels.c's matvec: torch's f32 vector-matrix product
# reads about 2/3, its bf16 one under 1/2, of what a sum over memory reads on this 2-core AVX2
# machine; past a few rows, its matrix products reuse each weight in cache, which matvec does not
# try to. They live in planner/estimate.py, which bounds what the kernels hold without torch.
_TYPES = {name: number for number, name in NATIVE.items()}   # ggml's type numbers, as the kernels take them
assert _kernels.XBLOCK_BYTES == XBLOCK_BYTES   # what a product holds per 32 values of x: scale, sum, 32 16-bit values
_FLOAT_KERNELS = (torch.float32, torch.bfloat16)


@dataclass
class Packed:
    """The (in, out) right operand of x @ w as GGUF blocks: row r of `blocks` is output r's
    in / 32 blocks, the file's bytes with each run of 8 blocks reordered into the kernels' group
    (executor/kernels.c; from_file makes one, file_blocks undoes it). `dtype` is the run's: what
    products and lookups return."""
    kind: str              # "Q4_0", "Q4_1" or "Q8_0"
    blocks: torch.Tensor   # (out, in / 32 * BLOCK_BYTES[kind]) uint8, in groups
    dtype: torch.dtype

    def __post_init__(self):
        self.blocks = self.blocks.contiguous()   # the kernels step from row to row by its length
        # the kernels' first arguments, made once: at 120 products a token, every attribute
        # read of a tensor costs (about a microsecond each here)
        self.args = (_TYPES[self.kind], self.blocks.data_ptr(), len(self.blocks),
                     self.blocks.shape[1] // BLOCK_BYTES[self.kind])

    @classmethod
    def from_file(cls, kind: str, blocks: torch.Tensor, dtype: torch.dtype) -> Packed:
        """From (out, in / 32 * BLOCK_BYTES) blocks as the file stores them, which it leaves alone."""
        grouped = blocks.clone(memory_format=torch.contiguous_format)
        _kernels.group(_TYPES[kind], grouped.data_ptr(), len(grouped), grouped.shape[1] // BLOCK_BYTES[kind], True)
        return cls(kind, grouped, dtype)

    def file_blocks(self) -> torch.Tensor:
        """The blocks as the file stores them, a copy."""
        kind, _, rows, blocks = self.args
        out = self.blocks.clone()
        _kernels.group(kind, out.data_ptr(), rows, blocks, False)
        return out

    @property
    def shape(self) -> tuple[int, int]:
        return self.blocks.shape[1] // BLOCK_BYTES[self.kind] * GROUP, self.blocks.shape[0]

    @property
    def device(self) -> torch.device:
        return self.blocks.device

    def nbytes(self) -> int:
        return self.blocks.nbytes

    def rows(self, part: slice) -> Packed:
        """Outputs start .. stop."""
        return Packed(self.kind, self.blocks[part], self.dtype)

    def cols(self, part: slice) -> Packed | None:
        """Inputs start .. stop, or None where the slice would split a block."""
        start, stop = part.start or 0, self.shape[0] if part.stop is None else part.stop
        if start % GROUP or stop % GROUP:
            return None
        if (start, stop) == (0, self.shape[0]):
            return self
        size = BLOCK_BYTES[self.kind]   # groups are regrouped from the slice's own first block
        return Packed.from_file(self.kind, self.file_blocks()[:, start // GROUP * size:stop // GROUP * size], self.dtype)

    def dequantize(self) -> torch.Tensor:
        """The (out, in) weights in float32, exactly."""
        out = torch.empty(self.shape[1], self.shape[0])
        lookup(Packed(self.kind, self.blocks, torch.float32), torch.arange(self.shape[1]), out)
        return out


def cat_rows(parts: list[Packed]) -> Packed | None:
    """Blocks stacked along `out` (fused Q|K|V, gate|up), or None when their kinds differ."""
    if len({p.kind for p in parts}) != 1:
        return None
    return Packed(parts[0].kind, torch.cat([p.blocks for p in parts]), parts[0].dtype)


def matmul(x: torch.Tensor, w, out: torch.Tensor, accumulate: bool = False) -> None:
    """out = x @ w, or out += x @ w: x (n, in), w a plain (in, out) operand or a Packed."""
    bind(x, w, out, accumulate)()


def bind(x: torch.Tensor, w, out: torch.Tensor, accumulate: bool = False) -> Callable[[], None]:
    """matmul(x, w, out, accumulate) as a call with no arguments: where a compiled kernel takes
    the product, its arguments (shapes, strides, pointers) are looked up once, not on every
    call (about 6 us a product, 121 products a decode token on SmolLM2). x, w and out must outlive it and
    keep their storage: a plan's views of the arena and the model's weights do."""
    n = x.shape[0]   # not len(x): a microsecond
    if isinstance(w, torch.Tensor):
        if n <= FLOAT_ROWS and _streams(x, w, out):
            return partial(_kernels.matvec, w.dtype == torch.bfloat16, w.data_ptr(), w.shape[1], w.shape[0],
                           x.data_ptr(), n, x.stride(0), out.data_ptr(), out.stride(0), accumulate)
        return partial(out.addmm_, x, w) if accumulate else partial(torch.mm, x, w, out=out)
    if n <= ROWS:    # decode: no slices to make
        return _packed_call(x, n, w, out, accumulate)
    return partial(_in_turn, [_packed_call(x[i:i + ROWS], min(ROWS, n - i), w, out[i:i + ROWS], accumulate)
                              for i in range(0, n, ROWS)])


def _in_turn(calls: list[Callable[[], None]]) -> None:
    for call in calls:
        call()


def _streams(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether the float kernel takes this product: float32 or bf16 on the CPU throughout, w the
    transposed view of contiguous (out, in) rows (weights.operand), x and out of unit stride."""
    return (w.is_cpu and w.dtype in _FLOAT_KERNELS and x.dtype == w.dtype == out.dtype
            and w.stride() == (1, w.shape[0]) and x.stride(1) == 1 == out.stride(1))


def _packed_call(x: torch.Tensor, n: int, w: Packed, out: torch.Tensor, accumulate: bool) -> Callable[[], None]:
    """The kernel quantizes x's n rows and writes out. It reads and writes float32 rows of unit
    stride: otherwise x and out go through float32 copies, on every call (_packed_matmul)."""
    (x_rows, x_col), (y_rows, y_col) = x.stride(), out.stride()
    if x.dtype == torch.float32 == out.dtype and x_col == 1 == y_col:
        return partial(_kernels.matmul, *w.args, x.data_ptr(), n, x_rows, out.data_ptr(), y_rows, accumulate)
    return partial(_packed_matmul, x, n, w, out, accumulate)


def _packed_matmul(x: torch.Tensor, n: int, w: Packed, out: torch.Tensor, accumulate: bool) -> None:
    """The product through float32 copies of x and out, outside the arena (planner.estimate.workspace_bytes)."""
    x, y = x.float().contiguous(), out.float().contiguous() if accumulate else torch.empty(out.shape)
    _kernels.matmul(*w.args, x.data_ptr(), n, x.stride(0), y.data_ptr(), y.stride(0), accumulate)
    out.copy_(y)


def lookup(table, tokens: torch.Tensor, out: torch.Tensor) -> None:
    """out[i] = row tokens[i] of the embedding: a (vocab, d) tensor, or a Packed (d, vocab) operand
    (a tied output head), whose rows the kernel dequantizes."""
    if isinstance(table, torch.Tensor):
        torch.index_select(table, 0, tokens, out=out)
        return
    for i in range(0, len(tokens), ROWS):
        _packed_lookup(table, tokens[i:i + ROWS], out[i:i + ROWS])


def _packed_lookup(table: Packed, tokens: torch.Tensor, out: torch.Tensor) -> None:
    """The kernel writes float32 rows of unit stride: otherwise through a float32 copy."""
    kind, blocks, vocab, groups = table.args
    ids = tokens.to(torch.int64).contiguous()
    y = out if out.dtype == torch.float32 and out.stride(-1) == 1 else torch.empty(out.shape)
    _kernels.lookup(kind, blocks, groups, ids.data_ptr(), len(ids), vocab, y.data_ptr(), y.stride(0))
    if y is not out:
        out.copy_(y)
