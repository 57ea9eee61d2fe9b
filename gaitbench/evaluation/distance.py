"""Pairwise distances between part-based gait embeddings.

Embeddings are arrays of shape ``[n, c, p]``: ``n`` sequences, ``c`` channels,
``p`` horizontal parts (``[n, d]`` is accepted and treated as ``p = 1``).
Everything is computed in float32, whatever the input dtype (float16
embeddings, as produced by AMP inference, are upcast first; the reference
computes fp16 inputs' norms in fp16 on the GPU, gaitbench does not).

Metrics
-------
``"euc"`` (default; the convention published numbers use)
    Mean over parts of the per-part Euclidean distance::

        d(x, y) = (1/P) * sum_p sqrt(relu(|x_p|^2 + |y_p|^2 - 2 x_p . y_p))

    where ``x_p = x[:, p]`` is the c-dim channel vector of part ``p``.
    This is *not* the L2 distance of the flattened ``c*p`` vector.
``"cos"``
    Each part is L2-normalised over channels (``x_p / max(|x_p|, 1e-12)``),
    then ``d = 1 - (1/P) * sum_p x^_p . y^_p`` (range [0, 2]).
``"flat_euc"``
    Plain L2 distance of the flattened ``c*p`` vectors (the convention of the
    older GaitGL code base), same expansion formula with relu. Rankings
    differ from ``"euc"``.

Implementation
--------------
torch, on ``device``. For "euc"/"flat_euc" the squared norms are folded into
the GEMM operands, ``[-2 x_p, |x_p|^2, 1] . [y_p, 1, |y_p|^2]``, both stored
part-major as ``[P, n, c + 2]``, so one batched GEMM over all parts (``bmm``,
batch = parts; no Python loop over parts) yields
``|x_p|^2 + |y_p|^2 - 2 x_p . y_p`` for every part of a tile. ``x`` is cut
into blocks of ``block_size`` rows and, on CPU, ``y`` into column tiles of
``_CPU_COL_TILE`` so the ``[P, block, tile]`` intermediate stays in cache
(full-width blocks are memory-bound on CPU). On CUDA the column tile is 8192
and the default row block keeps the ``[P, block, tile]`` float32 intermediate
under 256 MB. Matmuls run with ``float32_matmul_precision("highest")`` (no
TF32/bf16 shortcuts), restored afterwards. relu and sqrt are in place; the mean over parts is
a pairwise halving with elementwise adds (:func:`_sum_parts_`). "cos" is a
single GEMM of the flattened per-part-normalised vectors.

The ``[n, c, p] -> [P, n, c]`` transposition is done in chunks of rows that
fit in cache (about 10x faster on CPU than one strided copy).

Determinism: for a fixed ``x`` row every ``y`` column goes through the same
arithmetic (GEMM, then elementwise ops only; torch's reduction kernels are
avoided because their vector body and scalar tail round differently), so
exactly duplicated ``y`` items get bit-identical distances. The evaluators'
stable tie-breaking relies on this. Results for different ``block_size``
agree to float32 rounding (GEMM kernels may differ with the block shape).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "METRICS",
    "part_distance",
    "default_block_size",
    "PreparedEmbeddings",
    "prepare",
    "prepared_distance",
]

METRICS = ("euc", "cos", "flat_euc")

_MAX_BLOCK_BYTES = 256 * 1024 * 1024  # cap on the [P, block, tile] float32 intermediate
_CPU_BLOCK_ROWS = 256
_CPU_COL_TILE = 256
_CPU_TRANSPOSE_ROWS = 32  # rows per cache-friendly transposition chunk (~2 MB at [256, 62])
_GPU_TRANSPOSE_ROWS = 4096
_GPU_COL_TILE = 8192


def default_block_size(n_y: int, parts: int, device: str | torch.device = "cpu") -> int:
    """Default number of ``x`` rows per block.

    CPU: 256 rows (with 256-column tiles of ``y``), capped by the 256 MB budget.
    Other devices: as many rows as keep the ``[parts, block, tile]`` float32
    intermediate under 256 MB (tile = min(n_y, 8192) columns).
    """
    dev = torch.device(device)
    parts = max(int(parts), 1)
    width = max(1, min(int(n_y), _col_tile(dev)))
    cap = max(1, _MAX_BLOCK_BYTES // (4 * parts * width))
    return max(1, min(_CPU_BLOCK_ROWS, cap)) if dev.type == "cpu" else cap


def _col_tile(dev: torch.device) -> int:
    return _CPU_COL_TILE if dev.type == "cpu" else _GPU_COL_TILE


def _as_parts(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape [n, c, p] (or [n, d]); got shape {arr.shape}")
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    return arr


def _sum_parts_(t: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Sum over ``dim`` by pairwise halving with in-place elementwise adds (destroys ``t``).

    Each output element depends only on its own inputs, never on its position
    in the tensor, unlike torch's reduction kernels. ~one pass over ``t``.
    """
    t = t.movedim(dim, 0)
    n = t.shape[0]
    if n == 0:
        return torch.zeros(t.shape[1:], dtype=t.dtype, device=t.device)
    while n > 1:
        h = n // 2
        t[:h].add_(t[n - h : n])  # pairs (i, n-h+i); with n odd, t[h] carries over
        n -= h
    return t[0]


class PreparedEmbeddings:
    """Embeddings converted once into one side's GEMM operand (float32, on the device).

    Built by :func:`prepare` for ``role`` "x" (rows of the distance matrix) or
    "y" (columns). ``operand``: "euc"/"flat_euc" ``[P, n, c + 2]`` holding
    ``[-2 x, |x|^2, 1]`` (x) or ``[y, 1, |y|^2]`` (y); "cos" ``[n, P * c]``
    holding the per-part-normalised vectors.
    """

    def __init__(self, operand: torch.Tensor, metric: str, role: str, num_parts: int,
                 feat_shape: tuple[int, int], name: str):
        self.operand = operand
        self.metric = metric
        self.role = role
        self.num_parts = num_parts
        self.feat_shape = feat_shape
        self.name = name
        self.n = int(operand.shape[0] if metric == "cos" else operand.shape[1])
        self.device = operand.device


@torch.no_grad()
def prepare(
    a,
    metric: str = "euc",
    *,
    role: str,
    device: str | torch.device = "cpu",
    name: str = "x",
    index=None,
) -> PreparedEmbeddings:
    """Convert ``[n, c, p]`` (or ``[n, d]``) embeddings into the ``role`` ("x"/"y") operand.

    ``a`` is a numpy array or a torch tensor (read on its own device, so CUDA tensors never
    travel through the host). ``index`` (optional integer array) selects rows of ``a`` (no copy
    of the whole selection is made). Raises ``ValueError`` on NaN/inf values (or
    values whose squared norms overflow float32).
    """
    if role not in ("x", "y"):
        raise ValueError(f"role must be 'x' or 'y'; got {role!r}")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    dev = torch.device(device)
    if isinstance(a, torch.Tensor):  # used where it lies (no round trip through the host)
        src = a.detach()
        if src.dim() == 2:
            src = src.unsqueeze(2)
        if src.dim() != 3 or src.dtype.is_complex or src.dtype == torch.bool:
            raise ValueError(f"{name} must have shape [n, c, p] (or [n, d]) and a real dtype; got "
                             f"{tuple(src.shape)} {src.dtype}")
    else:
        src = torch.from_numpy(np.ascontiguousarray(_as_parts(a, name)))
    idx = None
    if index is not None:
        idx = torch.as_tensor(np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index,
                                         dtype=np.int64).reshape(-1), device=src.device)
    n = src.shape[0] if idx is None else int(idx.numel())
    c, p = int(src.shape[1]), int(src.shape[2])
    if metric == "flat_euc":
        P, cc = 1, c * p
    else:
        P, cc = p, c
    if metric == "cos":
        operand = torch.empty((n, P, cc), dtype=torch.float32, device=dev)
    else:
        operand = torch.empty((P, n, cc + 2), dtype=torch.float32, device=dev)
    step = _CPU_TRANSPOSE_ROWS if dev.type == "cpu" else _GPU_TRANSPOSE_ROWS
    for i in range(0, n, step):
        j = min(i + step, n)
        chunk = src[i:j] if idx is None else src[idx[i:j]]
        chunk = chunk.to(device=dev).to(torch.float32)  # [b, c, p]
        if metric == "flat_euc":
            operand[0, i:j, :cc].copy_(chunk.reshape(j - i, cc))
        elif metric == "cos":
            operand[i:j].copy_(chunk.permute(0, 2, 1))  # [b, P, c]
        else:
            operand[:, i:j, :cc].copy_(chunk.permute(2, 0, 1))  # in-cache transposition
    v = operand.permute(1, 0, 2) if metric == "cos" else operand[:, :, :cc]  # [P, n, c] view
    sq = _sum_parts_(v * v, dim=2)  # [P, n] squared norms, position-independent
    # 4*max keeps |x|^2 + |y|^2 + 2|x.y| finite; this also catches NaN/inf inputs.
    if not bool(torch.isfinite(sq * 4.0).all()):
        raise ValueError(f"{name} contains non-finite values (NaN/inf) or values too large for float32")
    if metric == "cos":
        v.div_(sq.sqrt().clamp_(min=1e-12)[:, :, None])
    elif role == "x":
        v.mul_(-2.0)
    if metric == "cos":
        operand = operand.view(n, P * cc)
    elif role == "x":
        operand[:, :, cc] = sq
        operand[:, :, cc + 1] = 1.0
    else:
        operand[:, :, cc] = 1.0
        operand[:, :, cc + 1] = sq
    return PreparedEmbeddings(operand, metric, role, P, (c, p), name)


@torch.no_grad()
def prepared_distance(
    xp: PreparedEmbeddings, yp: PreparedEmbeddings, *, block_size: int | None = None
) -> torch.Tensor:
    """Distance matrix ``[n_x, n_y]`` (float32 tensor on the inputs' device)."""
    if xp.role != "x" or yp.role != "y":
        raise ValueError(f"expected roles ('x', 'y'); got ({xp.role!r}, {yp.role!r})")
    if xp.metric != yp.metric:
        raise ValueError(f"metric mismatch: {xp.metric!r} vs {yp.metric!r}")
    if xp.feat_shape != yp.feat_shape:
        raise ValueError(
            f"x and y must have the same [c, p] shape; got {xp.feat_shape} and {yp.feat_shape}"
        )
    if xp.device != yp.device:
        raise ValueError(f"device mismatch: {xp.device} vs {yp.device}")
    if block_size is not None and int(block_size) < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}")
    dev = xp.device
    n_x, n_y = xp.n, yp.n
    out = torch.empty((n_x, n_y), dtype=torch.float32, device=dev)
    if n_x == 0 or n_y == 0:
        return out
    block = default_block_size(n_y, xp.num_parts, dev) if block_size is None else int(block_size)
    block = max(1, min(block, n_x))
    tile = min(n_y, _col_tile(dev))
    with _full_fp32_matmul():
        return _distance_tiles(xp, yp, out, block, tile)


class _full_fp32_matmul:
    """Temporarily forbid TF32/bf16 matmul shortcuts (restored on exit)."""

    def __enter__(self):
        self._prev = torch.get_float32_matmul_precision()
        if self._prev != "highest":
            torch.set_float32_matmul_precision("highest")
        return self

    def __exit__(self, *exc):
        if self._prev != "highest":
            torch.set_float32_matmul_precision(self._prev)
        return False


def _distance_tiles(xp: PreparedEmbeddings, yp: PreparedEmbeddings, out: torch.Tensor, block: int,
                    tile: int) -> torch.Tensor:
    P = xp.num_parts
    n_x, n_y = xp.n, yp.n
    xo, yo = xp.operand, yp.operand

    if xp.metric == "cos":
        # sum_p x^_p . y^_p is the dot product of the flattened normalised vectors.
        for r0 in range(0, n_x, block):
            r1 = min(r0 + block, n_x)
            for c0 in range(0, n_y, tile):
                c1 = min(c0 + tile, n_y)
                out[r0:r1, c0:c1] = torch.mm(xo[r0:r1], yo[c0:c1].t())
        return out.div_(-float(P)).add_(1.0)  # 1 - mean_p

    for r0 in range(0, n_x, block):
        r1 = min(r0 + block, n_x)
        xb = xo[:, r0:r1]
        for c0 in range(0, n_y, tile):
            c1 = min(c0 + tile, n_y)
            sq = torch.bmm(xb, yo[:, c0:c1].transpose(1, 2))  # [P, b, t] = |x_p|^2 + |y_p|^2 - 2 x_p.y_p
            sq.clamp_(min=0.0).sqrt_()
            out[r0:r1, c0:c1] = _sum_parts_(sq)
    if P != 1:
        out.div_(float(P))
    return out


@torch.no_grad()
def part_distance(
    x,
    y,
    metric: str = "euc",
    *,
    device: str | torch.device = "cpu",
    block_size: int | None = None,
) -> np.ndarray:
    """Distance matrix between ``x`` [n_x, c, p] and ``y`` [n_y, c, p].

    Returns a float32 numpy array ``[n_x, n_y]``; see the module docstring for
    the metrics. ``block_size`` is the number of ``x`` rows per block (the
    result does not depend on it beyond float32 rounding). ``device`` is any
    torch device string ("cpu", "cuda", "cuda:1"). Raises ``ValueError`` on
    unknown metrics, mismatched shapes and NaN/inf inputs.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    xa = _as_parts(x, "x")
    ya = _as_parts(y, "y")
    if xa.shape[1:] != ya.shape[1:]:
        raise ValueError(f"x and y must have the same [c, p] shape; got {xa.shape[1:]} and {ya.shape[1:]}")
    xp = prepare(xa, metric, role="x", device=device, name="x")
    yp = prepare(ya, metric, role="y", device=device, name="y")
    return prepared_distance(xp, yp, block_size=block_size).cpu().numpy()
