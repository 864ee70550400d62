"""Cross-entropy straight from hidden states, without the full logits or their gradient.

``F.cross_entropy(lm_head(h))`` writes the ``(N, V)`` logits, reads and writes them again for the
log-softmax, and again in backward for the log-softmax gradient and the zeros it scatters into: on a CPU
these memory-bound passes cost about as much as the head's matmuls at small widths. Here the head runs on
a chunk of rows at a time (a chunk of logits stays in cache), the gradient of each chunk's logits is
formed in place (softmax minus one-hot) and turned into the gradients of the hidden states and of the
head weight at once, so backward only scales what forward computed. Rows whose label is -100 (a prefix
decoder's input, padding) never reach the head at all.

The numbers are those of ``F.cross_entropy(..., reduction="sum")`` up to summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: logits per chunk (rows x vocabulary): 2**22 fp32 values (16 MiB). Measured on CPU at d 256, V 8192,
#: 2048 rows (forward + backward): 64-row chunks 1.35x slower than unchunked F.cross_entropy (the weight
#: gradient accumulated 32 times, GEMMs with K = 64), 512 rows 0.88x, one chunk 0.87x
CHUNK_ELEMENTS = 2**22
MIN_ROWS = 256  # fewer rows make the weight-gradient GEMM (K = rows) inefficient


def _rows_per_chunk(vocab: int) -> int:
    return max(min(MIN_ROWS, CHUNK_ELEMENTS), CHUNK_ELEMENTS // max(1, vocab))


def _wide(z: Tensor) -> Tensor:
    """Logits in at least fp32 (bf16/fp16 matmul outputs are widened; fp64 stays fp64)."""
    return z.float() if z.dtype in (torch.bfloat16, torch.float16) else z


def _chunk_loss(z: Tensor, target: Tensor) -> Tensor:
    """Sum over rows of logsumexp(z) - z[target], in at least fp32."""
    z = _wide(z)
    return (torch.logsumexp(z, dim=-1) - z.gather(1, target[:, None]).squeeze(1)).sum()


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor) -> Tensor:  # type: ignore[override]
        rows = _rows_per_chunk(weight.shape[0])
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(h) if need_h else None
        wide = _wide(torch.empty(0, dtype=h.dtype)).dtype
        grad_w = torch.zeros(weight.shape, dtype=wide, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=wide, device=h.device)
        for start in range(0, h.shape[0], rows):
            hc, tc = h[start:start + rows], target[start:start + rows]
            logp = torch.log_softmax(_wide(F.linear(hc, weight, bias)), dim=-1)  # (n, V)
            total -= logp.gather(1, tc[:, None]).sum()
            # d loss / d z = softmax(z) - onehot(target), formed in the log-probabilities' own storage
            g = logp.exp_()
            g[torch.arange(g.shape[0], device=g.device), tc] -= 1.0
            g = g.to(hc.dtype) if hc.dtype != g.dtype else g
            if grad_h is not None:
                grad_h[start:start + rows] = g @ weight.to(g.dtype)
            if grad_w is not None:
                grad_w += g.t() @ hc
        ctx.save_for_backward(grad_h if grad_h is not None else torch.empty(0),
                              grad_w if grad_w is not None else torch.empty(0))
        ctx.dtypes = (h.dtype, weight.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        dh = (grad_h * grad_out).to(h_dtype) if ctx.needs_input_grad[0] else None
        dw = (grad_w * grad_out).to(w_dtype) if ctx.needs_input_grad[1] else None
        return dh, dw, None, None


def linear_cross_entropy(h: Tensor, weight: Tensor, bias: Tensor | None, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(sum of cross-entropies, count)`` of ``F.linear(h, weight, bias)`` against ``labels`` over the
    positions whose label is not -100; ``h (..., d)``, ``labels (...)``. The bias (a buffer) gets no
    gradient."""
    h2, lab = h.reshape(-1, h.shape[-1]), labels.reshape(-1)
    keep = lab != -100
    n = keep.sum()
    idx = keep.nonzero().squeeze(1)
    hs, ts = h2.index_select(0, idx), lab.index_select(0, idx)
    bias = None if bias is None else bias.detach()
    if torch.is_grad_enabled() and (hs.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(hs, weight, bias, ts), n
    rows = _rows_per_chunk(weight.shape[0])
    total = torch.zeros((), dtype=_wide(torch.empty(0, dtype=h.dtype)).dtype, device=h.device)
    for start in range(0, hs.shape[0], rows):
        total = total + _chunk_loss(F.linear(hs[start:start + rows], weight, bias), ts[start:start + rows])
    return total, n
