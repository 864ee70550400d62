"""Building blocks: norms, MLPs, rotary and relative positions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unimask.config import ModelConfig


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019; T5's layer norm). Computed in fp32.

    ``unit_offset``: the gain is ``1 + weight`` (Gemma; the weight starts at zero), applied in fp32 before
    casting back, as Gemma's reference does."""

    def __init__(self, dim: int, eps: float = 1e-6, unit_offset: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.unit_offset = unit_offset
        self.weight = nn.Parameter(torch.zeros(dim) if unit_offset else torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if self.unit_offset:
            normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
            return (normed * (1.0 + self.weight.float())).to(x.dtype)
        grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        if x.dtype == torch.float32 and not grad:
            # inference: torch's fused kernel (the same numbers here, 1.5x faster per call for one token;
            # under autograd the plain ops below are the faster pair of forward and backward)
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def linear(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)``; a plain ``nn.Linear`` is applied without the module call (its Python overhead is a
    noticeable part of a one-token decoding step). Wrapped layers (LoRA adapters) keep their own forward."""
    if type(module) is nn.Linear:
        return F.linear(x, module.weight, module.bias)
    return module(x)


def make_norm(config: ModelConfig, dim: int | None = None) -> nn.Module:
    dim = dim or config.d_model
    if config.norm == "rmsnorm":
        return RMSNorm(dim, config.norm_eps, unit_offset=config.norm_unit_offset)
    return nn.LayerNorm(dim, eps=config.norm_eps, bias=config.norm_bias)


def activation_fn(config: ModelConfig):
    if config.activation in ("gelu", "gated-gelu"):
        approx = config.gelu_approximate
        return lambda x: F.gelu(x, approximate=approx)
    if config.activation == "relu":
        return F.relu
    return F.silu  # silu and swiglu


def fused_weight(owner: nn.Module, names: tuple[str, ...]) -> tuple[Tensor, Tensor | None]:
    """The weights (and biases) of the linear layers ``names`` of ``owner`` stacked along the output dim,
    for one GEMM instead of several. Concatenated on every call: a cached copy keyed on the weights'
    versions goes stale under optimizers that update in place without bumping the version (fused AdamW)."""
    layers = [getattr(owner, n) for n in names]
    weights = [m.weight for m in layers]
    biases = [m.bias for m in layers]
    return torch.cat(weights), (None if biases[0] is None else torch.cat(biases))  # type: ignore[arg-type]


class MLP(nn.Module):
    """Feed-forward block. Gated variants (SwiGLU, GeGLU; Shazeer 2020) use gate * up -> down."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, f, b = config.d_model, config.d_ff, config.use_mlp_bias
        self.gated = config.gated
        self.act = activation_fn(config)
        if self.gated:
            self.gate_proj = nn.Linear(d, f, bias=b)
        self.up_proj = nn.Linear(d, f, bias=b)
        self.down_proj = nn.Linear(f, d, bias=b)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.gated:
            if torch.is_grad_enabled() and type(self.gate_proj) is nn.Linear and type(self.up_proj) is nn.Linear:
                # one GEMM for gate and up in training (1.1-1.3x the two separate ones on CPU for small
                # widths, the copy included); without grad the copy would cost what the GEMM saves, so two
                # GEMMs. The weights stay two parameters: checkpoints and adapters (peft) are unchanged
                weight, bias = fused_weight(self, ("gate_proj", "up_proj"))
                gate, up = F.linear(x, weight, bias).chunk(2, dim=-1)
                h = self.act(gate) * up  # (B, T, f)
            else:
                h = self.act(linear(self.gate_proj, x)) * linear(self.up_proj, x)
        else:
            h = self.act(linear(self.up_proj, x))
        if self.training and self.dropout.p > 0:  # no call without dropout (a decoding step makes many)
            h = self.dropout(h)
        return linear(self.down_proj, h)


# Rotary positions (Su et al. 2021, RoFormer) -----------------------------------------------------------

def rope_inv_freq(dim: int, config: ModelConfig, local: bool = False) -> Tensor:
    """``(dim/2,)`` inverse frequencies, with the common rope scalings (linear, llama3) applied.
    ``local``: those of the sliding-window layers, base ``local_rope_theta`` and unscaled (Gemma 3)."""
    theta = config.local_rope_theta if local and config.local_rope_theta is not None else config.rope_theta
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    scaling = {} if local else (config.rope_scaling or {})
    kind = scaling.get("type", scaling.get("rope_type", "default"))
    if kind == "linear":
        inv = inv / float(scaling["factor"])
    elif kind == "llama3":
        factor = float(scaling["factor"])
        low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
        old_len = float(scaling.get("original_max_position_embeddings", 8192))
        wavelen = 2 * math.pi / inv
        smooth = (old_len / wavelen - low) / (high - low)
        scaled = torch.where(wavelen > old_len / low, inv / factor, inv)
        mid = (wavelen <= old_len / low) & (wavelen >= old_len / high)
        inv = torch.where(mid, (1 - smooth) * inv / factor + smooth * inv, scaled)
    return inv.float()


def rope_cos_sin(position_ids: Tensor, inv_freq: Tensor) -> tuple[Tensor, Tensor]:
    """``position_ids (B, T)`` -> cos and a *signed* sin ``(B, 1, T, dim)`` (halves repeated, NeoX/LLaMA
    layout; the first half of the sin is negated so that ``apply_rope`` needs no negation of ``x``)."""
    angles = position_ids[..., None].float() * inv_freq.to(position_ids.device)  # (B, T, dim/2)
    sin = angles.sin()
    emb = torch.cat([angles, angles], dim=-1)[:, None]  # (B, 1, T, dim)
    return emb.cos(), torch.cat([-sin, sin], dim=-1)[:, None]


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x (B, H, T, dim)`` by the angles in cos and the signed sin of ``rope_cos_sin``:
    ``x * cos + rotate_half(x) * sin`` with ``rotate_half(x) = [-x2, x1]`` (Su et al. 2021), computed as
    ``[x2, x1] * [-sin, sin]`` (one negation per forward instead of one per layer and tensor)."""
    half = x.shape[-1] // 2
    swapped = torch.cat([x[..., half:], x[..., :half]], dim=-1)
    if x.dtype == torch.float32:
        return x * cos + swapped * sin
    return (x.float() * cos + swapped.float() * sin).to(x.dtype)


class RotaryPositions(nn.Module):
    """RoPE; for ``glm2d`` (ChatGLM) the head is split in two halves, rotated by position and block position.
    With ``rotary_fraction < 1`` only the first ``rotary_dim`` dims of each head turn (GPT-NeoX, GLM);
    ``local``: the rotary base of sliding-window layers (``local_rope_theta``)."""

    def __init__(self, config: ModelConfig, local: bool = False) -> None:
        super().__init__()
        self.two_d = config.position == "glm2d"
        dim = config.head_dim_ // 2 if self.two_d else config.rotary_dim
        self.register_buffer("inv_freq", rope_inv_freq(dim, config, local=local), persistent=False)
        self._table: tuple[Tensor, Tensor] | None = None  # CPU: cos and signed sin per position, grown on demand

    def _lookup(self, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        """``rope_cos_sin`` by table lookup on CPU (the same float operations, computed once per position
        instead of once per forward: decoding one token then costs an index, not trigonometry)."""
        if position_ids.device.type != "cpu" or position_ids.numel() == 0:
            return rope_cos_sin(position_ids, self.inv_freq)
        need = int(position_ids.max()) + 1
        if self._table is None or self._table[0].shape[2] < need:
            size = max(need, 2 * (self._table[0].shape[2] if self._table is not None else 128))
            cos, sin = rope_cos_sin(torch.arange(size)[None], self.inv_freq)  # (1, 1, size, dim)
            self._table = (cos, sin)
        cos, sin = self._table
        flat = position_ids.reshape(-1)
        shape = (*position_ids.shape, cos.shape[-1])
        pick = lambda t: t[0, 0].index_select(0, flat).view(shape)[:, None]  # (B, 1, T, dim)
        return pick(cos), pick(sin)

    def forward(self, position_ids: Tensor, block_position_ids: Tensor | None) -> tuple[Tensor, ...]:
        cos, sin = self._lookup(position_ids)
        if not self.two_d:
            return cos, sin
        if block_position_ids is None:
            block_position_ids = torch.zeros_like(position_ids)
        cos2, sin2 = self._lookup(block_position_ids)
        return cos, sin, cos2, sin2


def rotate_qk(q: Tensor, k: Tensor, rope: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    """Apply (1-D or 2-D) rotary embeddings to queries and keys ``(B, H, T, hd)``; a table narrower than the
    head (partial rotary) turns the first dims and passes the rest through."""
    if len(rope) == 2:
        r = rope[0].shape[-1]
        if r < q.shape[-1]:
            def part(x: Tensor) -> Tensor:
                return torch.cat([apply_rope(x[..., :r], *rope), x[..., r:]], dim=-1)

            return part(q), part(k)
        return apply_rope(q, *rope), apply_rope(k, *rope)
    cos, sin, cos2, sin2 = rope
    half = q.shape[-1] // 2

    def both(x: Tensor) -> Tensor:
        return torch.cat([apply_rope(x[..., :half], cos, sin), apply_rope(x[..., half:], cos2, sin2)], dim=-1)

    return both(q), both(k)


# T5 relative position buckets (Raffel et al. 2020, section 2.1) ----------------------------------------

def relative_bucket(relative: Tensor, bidirectional: bool, num_buckets: int, max_distance: int) -> Tensor:
    """Map key-minus-query distances to buckets: exact for small distances, log-spaced up to max_distance."""
    bucket = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (relative > 0).long() * num_buckets
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)
    exact = num_buckets // 2
    is_small = distance < exact
    log_ratio = torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
    large = exact + (log_ratio * (num_buckets - exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return bucket + torch.where(is_small, distance, large)


class RelativeBias(nn.Module):
    """Learned scalar bias per (bucket, head), shared by all layers of a stack, as in T5."""

    def __init__(self, config: ModelConfig, bidirectional: bool) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.num_buckets, self.max_distance = config.rel_buckets, config.rel_max_distance
        self.embedding = nn.Embedding(config.rel_buckets, config.n_heads)

    def forward(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """``q_pos (B, Tq)``, ``k_pos (B, Tk)`` -> additive bias ``(B, H, Tq, Tk)``."""
        relative = k_pos[:, None, :] - q_pos[:, :, None]  # (B, Tq, Tk)
        buckets = relative_bucket(relative.long(), self.bidirectional, self.num_buckets, self.max_distance)
        return self.embedding(buckets).permute(0, 3, 1, 2)
