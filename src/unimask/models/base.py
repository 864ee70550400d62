"""What every unimask LM shares: token embedding, output head, loss, init, save and generate."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unimask.config import ModelConfig


class LMOutput:
    """``logits (B, T, V)``; ``loss`` = ``loss_sum / n_loss_tokens`` over labels != -100.

    With labels the loss is computed from the hidden states without the full logits
    (``unimask.models.loss``); ``logits`` are then formed on first access (differentiable as ever).
    With ``return_attentions``: ``attentions`` are the self-attention probabilities of every layer
    ``(B, H, Tq, Tk)`` (encoder first), ``cross_attentions`` the decoder's cross-attention probabilities
    ``(B, H, T, S)`` of an encoder-decoder. ``hidden``: the final hidden states the output layer reads.
    """

    def __init__(self, logits: Tensor | Callable[[], Tensor], loss: Tensor | None = None,
                 loss_sum: Tensor | None = None, n_loss_tokens: Tensor | None = None,
                 attentions: list[Tensor] | None = None, encoder_out: Tensor | None = None,
                 cross_attentions: list[Tensor] | None = None, hidden: Tensor | None = None) -> None:
        self._logits: Tensor | None = logits if isinstance(logits, Tensor) else None
        self._make_logits = None if isinstance(logits, Tensor) else logits
        self.loss, self.loss_sum, self.n_loss_tokens = loss, loss_sum, n_loss_tokens
        self.attentions, self.encoder_out, self.cross_attentions = attentions, encoder_out, cross_attentions
        self.hidden = hidden  # the final hidden states (B, T, d), after the last norm

    @property
    def logits(self) -> Tensor:
        if self._logits is None:
            assert self._make_logits is not None
            self._logits, self._make_logits = self._make_logits(), None
        return self._logits


def lm_loss(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sum of token cross-entropies over positions whose label is not -100, their count, and the mean.

    Labels are aligned with logits: ``labels[b, t]`` is the token that position t must predict.
    """
    loss_sum = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
    n = (labels != -100).sum()
    return loss_sum / n.clamp(min=1), loss_sum, n


def head_loss(model: UnimaskLM, h: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``lm_loss(model.logits(h), labels)`` without materialising the logits: the mean, the sum, the count."""
    from unimask.models.loss import linear_cross_entropy

    h = model.head_input(h)
    bias = model.final_logits_bias if model.config.final_logits_bias else None
    loss_sum, n = linear_cross_entropy(h, model.lm_head.weight, bias, labels)
    return loss_sum / n.clamp(min=1), loss_sum, n


def positions_from(attention_mask: Tensor | None, segment_ids: Tensor | None, batch: int, length: int,
                   device: torch.device, offset: int = 0) -> Tensor:
    """Default position ids ``(B, T)``: restart at each packed segment, skip left padding, else arange."""
    if segment_ids is not None:
        idx = torch.arange(length, device=device).expand(batch, length)
        change = torch.ones_like(segment_ids, dtype=torch.bool)
        change[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
        start = torch.where(change, idx, torch.zeros_like(idx)).cummax(dim=1).values
        return idx - start
    if attention_mask is not None:
        return (attention_mask.long().cumsum(-1) - 1).clamp(min=0) + offset
    return torch.arange(offset, offset + length, device=device).expand(batch, length)


class UnimaskLM(nn.Module):
    """Base class: ``embed`` (V, d) token embedding, ``lm_head`` (tied or not), optional final logits bias."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.final_logits_bias:
            self.register_buffer("final_logits_bias", torch.zeros(config.vocab_size))

    def tie_weights(self) -> None:
        if self.config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def init_weights(self) -> None:
        """Normal(0, init_std) for matrices and embeddings, zeros for biases, ones for norms."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
        # residual projections scaled by depth (GPT-2, Radford et al. 2019)
        depth = max(1, self.config.n_layers + self.config.encoder_layers)
        for name, p in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, std=std / math.sqrt(2 * depth))

    def head_input(self, h: Tensor) -> Tensor:
        """What the output projection reads: T5 v1.0 rescales before its tied projection."""
        if self.config.scale_tied_output and self.config.tie_embeddings:
            return h * self.config.d_model ** -0.5
        return h

    def logits(self, h: Tensor) -> Tensor:
        """Hidden states ``(B, T, d)`` -> logits ``(B, T, V)``."""
        out = self.lm_head(self.head_input(h))
        if self.config.final_logits_bias:
            out = out + self.final_logits_bias
        cap = self.config.final_logit_softcap  # Gemma 2/3: c * tanh(logits / c)
        return out if cap is None else torch.tanh(out / cap) * cap

    def _output(self, h: Tensor, labels: Tensor | None, probs: list[Tensor], encoder_out: Tensor | None = None,
                cross_probs: list[Tensor] | None = None) -> LMOutput:
        plain = type(self.lm_head) is not nn.Linear or self.config.final_logit_softcap is not None
        if labels is None or plain:  # a wrapped head (an adapter) or soft-capped logits: plain path
            logits = self.logits(h)
            out = LMOutput(logits=logits, attentions=probs or None, encoder_out=encoder_out,
                           cross_attentions=cross_probs or None, hidden=h)
            if labels is not None:
                out.loss, out.loss_sum, out.n_loss_tokens = lm_loss(logits, labels)
            return out
        loss, loss_sum, n = head_loss(self, h, labels)
        return LMOutput(logits=lambda: self.logits(h), loss=loss, loss_sum=loss_sum, n_loss_tokens=n,
                        attentions=probs or None, encoder_out=encoder_out, cross_attentions=cross_probs or None,
                        hidden=h)

    def set_attention_backend(self, backend: str) -> None:
        """Switch every attention layer to ``sdpa``, ``eager`` or ``flex``.

        ``flex`` (FlexAttention) runs on CUDA only: off CUDA it raises ``ConfigError`` instead of running
        something else; move the model to a GPU first.
        """
        from unimask.errors import ConfigError
        from unimask.models.attention import Attention, flex_unavailable

        if backend not in ("sdpa", "eager", "flex"):
            raise ValueError(f"unknown attention backend '{backend}' (sdpa, eager, flex)")
        if backend == "flex":
            why = flex_unavailable(next(self.parameters()).device)
            if why:
                raise ConfigError(why)
        for m in self.modules():
            if isinstance(m, Attention):
                m.backend = backend  # type: ignore[assignment]

    def num_parameters(self) -> int:
        """Unique parameters (a tied embedding counts once)."""
        return sum(p.numel() for p in self.parameters())

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``directory``."""
        from unimask.checkpoint import save_model

        return save_model(self, directory)

    @torch.no_grad()
    def generate(self, input_ids: Tensor | list[list[int]], **kwargs: Any) -> Tensor:
        """Decode with a KV cache; see ``unimask.generation.generate`` for the arguments."""
        from unimask.generation import generate

        return generate(self, input_ids, **kwargs)
