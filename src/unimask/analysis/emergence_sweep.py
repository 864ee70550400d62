"""Empirical emergence: train a sweep of model sizes on multi-digit addition and score each with discrete
and continuous metrics (Schaeffer et al. 2023, "Are Emergent Abilities of Large Language Models a
Mirage?"; the task follows Wei et al. 2022 / Brown et al. 2020's arithmetic probes).

Per model: exact match, digit accuracy (place-value aligned), character edit distance of the greedy
answer, and the target log-likelihood (teacher-forced log-probability of the answer and EOS), against
parameters and training FLOPs (``analysis.compute``). Whether a sharp jump in exact match survives the
continuous metrics is the question the plots answer.

Training is a small self-contained loop (AdamW, warmup then cosine decay, gradient clipping) on
``unimask.build_model``: the examples are prompt/answer pairs with the loss on the answer only, which the
corpus trainer does not need to know about. The default vocabulary is one token per character, so a digit
is a token and "per-token" means "per-digit".
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from unimask.analysis.compute import forward_flops_per_sequence
from unimask.analysis.emergence import digit_accuracy, levenshtein
from unimask.analysis.params import count_parameters
from unimask.config import ModelConfig
from unimask.errors import UnimaskError
from unimask.models import build_model
from unimask.models.base import UnimaskLM

MAX_DIGITS = 18  # 10 ** 18 < 2 ** 63: operands fit numpy's int64 sampler


class CharTokenizer:
    """One token per character of a fixed alphabet, plus ``<pad>`` 0, ``<s>`` 1, ``</s>`` 2."""

    def __init__(self, alphabet: str) -> None:
        self.chars = sorted(set(alphabet))
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2
        self._ids = {c: i + 3 for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 3

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError as exc:
            raise UnimaskError(f"character {exc.args[0]!r} is not in the sweep's alphabet") from None

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        return "".join(self.chars[i - 3] for i in ids if i >= 3 or not skip_special)


@dataclass
class SweepConfig:
    """A sweep over ``widths`` (d_model; heads of 16, d_ff = 4 d) at fixed depth, data and steps."""

    widths: tuple[int, ...] = (16, 32, 64, 128)
    n_layers: int = 2
    arch: str = "causal"
    digits: int = 3
    train_examples: int = 20000
    test_examples: int = 256
    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 50
    seed: int = 0
    tokenizer: str = "char"  # "char", "default" (unimask's BPE) or a tokenizer.json path
    threads: int = 1  # torch intra-op threads while training (small models run fastest on one)

    def validate(self) -> None:
        if not self.widths or any(w < 4 for w in self.widths):
            raise UnimaskError("sweep widths must be at least 4")
        if self.arch not in ("causal", "prefix", "encoder_decoder"):
            raise UnimaskError(f"unknown arch '{self.arch}' (causal, prefix, encoder_decoder)")
        for name in ("n_layers", "digits", "train_examples", "test_examples", "steps", "batch_size"):
            if getattr(self, name) <= 0:
                raise UnimaskError(f"sweep '{name}' must be positive, got {getattr(self, name)}")
        if self.digits > MAX_DIGITS:
            raise UnimaskError(f"sweep 'digits' must be at most {MAX_DIGITS} (operands are drawn as 64-bit "
                               f"integers), got {self.digits}")
        if not 0 < self.lr < math.inf:
            raise UnimaskError(f"sweep 'lr' must be positive, got {self.lr}")
        if self.warmup < 0:
            raise UnimaskError(f"sweep 'warmup' must be >= 0, got {self.warmup}")


@dataclass
class SweepResult:
    """One trained model's size, compute and scores on the test split."""

    width: int
    params: int
    non_embedding_params: int
    train_flops: float
    train_tokens: int
    final_train_loss: float
    exact_match: float
    digit_accuracy: float
    edit_distance: float
    target_log_likelihood: float
    answer_length: float
    train_seconds: float
    examples: list[dict[str, str]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("examples")
        return d


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (tiny models train fastest on one)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def load_task(cfg: SweepConfig) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Train and test (prompt, answer) pairs of the addition task (``unimask.data.synthetic``)."""
    from unimask.data.synthetic import make_examples

    train = make_examples("addition", cfg.train_examples, seed=cfg.seed, split="train", digits=cfg.digits)
    test = make_examples("addition", cfg.test_examples, seed=cfg.seed, split="test", digits=cfg.digits)
    return train, test


def make_tokenizer(cfg: SweepConfig, texts: Sequence[str]) -> Any:
    if cfg.tokenizer == "char":
        return CharTokenizer("".join(texts))
    from unimask.data.tokenizer import Tokenizer, default_tokenizer

    return default_tokenizer() if cfg.tokenizer == "default" else Tokenizer.load(cfg.tokenizer)


def model_config(cfg: SweepConfig, width: int, vocab_size: int, max_len: int, tok: Any) -> ModelConfig:
    """A small LLaMA-style model (RoPE, RMSNorm, SwiGLU) of the given width."""
    heads = max(1, width // 16)
    return ModelConfig(arch=cfg.arch, vocab_size=vocab_size, d_model=width, n_layers=cfg.n_layers,
                       n_encoder_layers=cfg.n_layers if cfg.arch == "encoder_decoder" else None,
                       n_heads=heads, d_ff=4 * width, activation="swiglu", norm="rmsnorm", norm_eps=1e-6,
                       position="t5_relative" if cfg.arch == "encoder_decoder" else "rope",
                       max_seq_len=max(16, max_len), tie_embeddings=True, pad_token_id=tok.pad_id,
                       bos_token_id=tok.bos_id, eos_token_id=tok.eos_id,
                       decoder_start_token_id=tok.bos_id if cfg.arch == "encoder_decoder" else None)


def encode_batch(pairs: Sequence[tuple[list[int], list[int]]], arch: str, tok: Any) -> dict[str, Tensor]:
    """Token-id (prompt, answer) pairs -> a batch in unimask's contract; loss on the answer and EOS only."""
    B = len(pairs)
    if arch == "encoder_decoder":
        S = max(len(p) + 1 for p, _ in pairs)
        T = max(len(a) + 1 for _, a in pairs)
        src = torch.full((B, S), tok.pad_id, dtype=torch.long)
        labels = torch.full((B, T), -100, dtype=torch.long)
        for i, (p, a) in enumerate(pairs):
            src[i, : len(p) + 1] = torch.tensor(p + [tok.eos_id])
            labels[i, : len(a) + 1] = torch.tensor(a + [tok.eos_id])
        return {"input_ids": src, "attention_mask": (src != tok.pad_id).long(), "labels": labels}
    seqs = [[tok.bos_id, *p, *a, tok.eos_id] for p, a in pairs]
    T = max(len(s) for s in seqs)
    ids = torch.full((B, T), tok.pad_id, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    is_prefix = torch.zeros((B, T), dtype=torch.bool)
    for i, ((p, _a), s) in enumerate(zip(pairs, seqs)):
        ids[i, : len(s)] = torch.tensor(s)
        start = len(p)  # position of the last prompt token predicts the first answer token
        labels[i, start: len(s) - 1] = torch.tensor(s[start + 1:])
        is_prefix[i, : len(p) + 1] = True
    batch = {"input_ids": ids, "labels": labels}
    if arch == "prefix":
        batch["is_prefix"] = is_prefix
    return batch


def _batch_flops(config: ModelConfig, batch: dict[str, Tensor]) -> float:
    """Training FLOPs (3 x forward) of one padded batch."""
    if config.arch == "encoder_decoder":
        B, S = batch["input_ids"].shape
        f = forward_flops_per_sequence(config, S, batch["labels"].shape[1])
    else:
        B, T = batch["input_ids"].shape
        f = forward_flops_per_sequence(config, T)
    return 3.0 * B * (f["matmul"] + f["attention"])


def train_model(model: UnimaskLM, data: list[tuple[list[int], list[int]]], cfg: SweepConfig, tok: Any,
                progress: Callable[[int, float], None] | None = None) -> tuple[float, int, float]:
    """AdamW with linear warmup and cosine decay; returns (FLOPs, tokens, mean loss of the last 10%)."""
    gen = random.Random(cfg.seed)
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95))
    warmup = min(cfg.warmup, cfg.steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(
        math.pi * min(1.0, max(0, s - warmup) / max(1, cfg.steps - warmup))))))
    model.train()
    flops, tokens, tail = 0.0, 0, []
    with torch_threads(cfg.threads):
        for step in range(cfg.steps):
            batch = encode_batch([data[gen.randrange(len(data))] for _ in range(cfg.batch_size)], cfg.arch, tok)
            loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            flops += _batch_flops(model.config, batch)
            tokens += batch["input_ids"].numel() + (batch["labels"].numel() if cfg.arch == "encoder_decoder" else 0)
            value = float(loss.detach())
            if step >= cfg.steps - max(1, cfg.steps // 10):
                tail.append(value)
            if progress is not None:
                progress(step, value)
    return flops, int(tokens), sum(tail) / len(tail)


@torch.no_grad()
def evaluate(model: UnimaskLM, test: list[tuple[str, str]], tok: Any, arch: str, batch_size: int = 128,
             ) -> dict[str, Any]:
    """Greedy answers scored by exact match, digit accuracy and edit distance; teacher-forced log-likelihood."""
    model.eval()
    em = da = ed = ll = 0.0
    shown: list[dict[str, str]] = []
    for i in range(0, len(test), batch_size):
        chunk = test[i: i + batch_size]
        pairs = [(tok.encode(p), tok.encode(a)) for p, a in chunk]
        batch = encode_batch(pairs, arch, tok)
        out = model(**batch)
        logp = out.logits.float().log_softmax(-1)
        labels = batch["labels"]
        picked = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        ll += float((picked * (labels != -100)).sum())
        prompts = [p + [tok.eos_id] for p, _ in pairs] if arch == "encoder_decoder" else \
            [[tok.bos_id, *p] for p, _ in pairs]
        max_new = max(len(a) for _, a in pairs) + 2
        new = model.generate(prompts, max_new_tokens=max_new, eos_token_id=tok.eos_id)
        for (prompt, answer), row in zip(chunk, new.tolist()):
            ids = row[: row.index(tok.eos_id)] if tok.eos_id in row else row
            pred = tok.decode(ids)
            em += float(pred == answer)
            da += digit_accuracy(pred, answer)
            ed += levenshtein(pred, answer)
            if len(shown) < 5:
                shown.append({"prompt": prompt, "answer": answer, "prediction": pred})
    n = len(test)
    return {"exact_match": em / n, "digit_accuracy": da / n, "edit_distance": ed / n,
            "target_log_likelihood": ll / n, "answer_length": sum(len(a) for _, a in test) / n, "examples": shown}


def run_sweep(cfg: SweepConfig, progress: bool = True, save_dir: Path | None = None) -> list[SweepResult]:
    """Train and evaluate one model per width; results in width order. With ``save_dir`` each trained
    model is saved to ``save_dir/width-<d>`` (e.g. for ``unimask rank --model``)."""
    from tqdm.auto import tqdm

    cfg.validate()
    train, test = load_task(cfg)
    tok = make_tokenizer(cfg, [p + a for p, a in train + test])
    data = [(tok.encode(p), tok.encode(a)) for p, a in train]
    max_len = max(len(p) + len(a) for p, a in data) + 2
    results = []
    bar = tqdm(total=cfg.steps * len(cfg.widths), disable=not progress, desc="emergence sweep")
    try:
        for width in cfg.widths:
            torch.manual_seed(cfg.seed)
            config = model_config(cfg, width, tok.vocab_size, max_len, tok)
            model = build_model(config)

            def tick(step: int, loss: float, width: int = width) -> None:
                bar.update(1)
                if step % 50 == 0:
                    bar.set_postfix(width=width, loss=f"{loss:.3f}")

            start = time.perf_counter()
            flops, tokens, loss = train_model(model, data, cfg, tok, progress=tick)
            seconds = time.perf_counter() - start
            if save_dir is not None:
                model.save(Path(save_dir) / f"width-{width}")
            with torch_threads(cfg.threads):
                scores = evaluate(model, test, tok, cfg.arch)
            count = count_parameters(config)
            results.append(SweepResult(width=width, params=count.total, non_embedding_params=count.non_embedding,
                                       train_flops=flops, train_tokens=tokens, final_train_loss=loss,
                                       train_seconds=seconds, **scores))
    finally:
        bar.close()
    return results


__all__ = ["CharTokenizer", "SweepConfig", "SweepResult", "encode_batch", "evaluate", "load_task",
           "model_config", "run_sweep", "torch_threads", "train_model"]
