"""Properties with hypothesis over random lengths and seeds, for every objective at once: the noise fraction and
the mean span length over many samples, the same seed giving the same output, and packed rows whose examples
never attend to each other in a real model (its self- and cross-attention probabilities across examples are exactly
zero)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from objectives_helpers import make_vocab, text_ids

import unimask
from unimask.data.pipeline import to_tensors
from unimask.objectives import OBJECTIVES, BartInfilling, GLMBlank, SpanCorruption, build_objective
from unimask.objectives.layout import layout, pack_rows, stack_rows
from unimask.objectives.noise import spans_of, t5_span_counts

VOCAB = make_vocab()


def _spans_and_noise(obj, n: int, rng: np.random.Generator) -> tuple[list[int], int]:
    ex = obj.apply(text_ids(n, int(rng.integers(1 << 30))), rng, VOCAB)
    if "spans" in ex.info:
        return [length for _, length in ex.info["spans"]], sum(length for _, length in ex.info["spans"])
    mask = ex.info["noise_mask"]
    return [length for _, length in spans_of(mask)], int(mask.sum())


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), low=st.integers(100, 300))
def test_noise_fraction_and_mean_span_length_within_tolerance(seed, low):
    """Over 150 samples of random lengths in [low, low + 200): each objective masks its configured fraction
    (exactly up to rounding) and its spans have the configured mean length (statistically)."""
    rng = np.random.default_rng(seed)
    cases = [
        # objective, noise fraction, expected mean span length and its tolerance
        (SpanCorruption(0.15, 3.0), 0.15, 3.0, 0.15),  # T5: round(noise / mean) spans, so ~3 by construction
        (SpanCorruption(0.5, 8.0), 0.5, 8.0, 0.4),  # a UL2 X-denoiser
        # Poisson(3) lengths, the last span of an example cut short: a little under 3
        (BartInfilling(), 0.3, 2.9, 0.25),
        # Poisson(3) without zeros (mean 3.16), the last span cut short
        (GLMBlank(), 0.15, 3.05, 0.3),
    ]
    for obj, fraction, mean, tol in cases:
        lengths: list[int] = []
        noise = total = 0
        for _ in range(150):
            n = int(rng.integers(low, low + 200))
            spans, masked = _spans_and_noise(obj, n, rng)
            assert abs(masked - n * fraction) <= 1.0, (obj, n, masked)  # round(n * fraction) (T5: float32 rounding)
            lengths += spans
            noise += masked
            total += n
        assert abs(noise / total - fraction) < 0.005, obj
        assert abs(np.mean(lengths) - mean) < tol, (obj, np.mean(lengths))


def test_t5_mean_span_length_is_the_configured_one():
    """T5's counting fixes the mean span length of every example: ``noise / round(noise / mean)``, with
    ``tf.round`` (half to even). The span count is the nearest integer to ``noise / mean``, so floor and ceil
    (off by up to 1) and round-half-up (wrong on every tie) are each refused somewhere below."""
    ties = 0
    for mean in (2.0, 3.0, 8.0):
        for n in range(20, 600):
            noise, spans = t5_span_counts(n, 0.15, mean)
            exact = noise / mean
            if exact < 1 or spans > min(noise, n - noise):  # clamped to one span / capped for short inputs
                continue
            assert abs(spans - exact) <= 0.5, (n, mean, noise, spans)
            if exact % 1 == 0.5:  # a tie: half to even
                ties += 1
                assert spans % 2 == 0, (n, mean, noise, spans)
            assert abs(noise / spans - mean) <= 0.5 * mean / spans + 1e-9
    assert ties > 20
    assert [t5_span_counts(n, 0.15, 3.0)[1] for n in (80, 93, 100, 113)] == [4, 5, 5, 6]  # 12, 14, 15, 17 noise


SPECS = sorted(OBJECTIVES) + [
    {"name": "glm_blank", "modes": {"mask": 1, "smask": 1, "gmask": 1}},
    {"name": "bart_infilling", "permute_sentences": True},
    {"mixture": {"causal_lm": 1, "span_corruption": 1, "glm_blank": 1}},
]


@settings(max_examples=60, deadline=None)
@given(spec=st.sampled_from(SPECS), n=st.integers(2, 200), seed=st.integers(0, 2**31 - 1))
def test_same_seed_same_output(spec, n, seed):
    obj = build_objective(spec)
    ids = text_ids(n, seed)
    ids[::9] = 20  # sentence ends, for [sMASK] and sentence permutation
    a = obj.apply(ids, np.random.default_rng(seed), VOCAB)
    b = build_objective(spec).apply(ids.copy(), np.random.default_rng(seed), VOCAB)
    for key in ("source", "target", "target_inputs", "positions", "block_positions"):
        x, y = getattr(a, key), getattr(b, key)
        assert (x is None and y is None) or np.array_equal(x, y), key
    assert a.mode == b.mode


# Packed rows in a real model ---------------------------------------------------------------------------------

ARCH_PRESETS = {"causal": "tiny-causal", "prefix": "tiny-glm", "encoder_decoder": "tiny-encdec"}


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    out = {}
    for arch, name in ARCH_PRESETS.items():
        layers = {"n_encoder_layers": 1} if arch == "encoder_decoder" else {}
        model = unimask.build_model(unimask.preset(name, vocab_size=1000, n_layers=1, max_seq_len=512, **layers))
        model.eval()
        model.set_attention_backend("eager")
        out[arch] = model
    return out


@settings(max_examples=25, deadline=None)
@given(arch=st.sampled_from(sorted(ARCH_PRESETS)), spec=st.sampled_from(sorted(OBJECTIVES)),
       lengths=st.lists(st.integers(2, 30), min_size=2, max_size=4), seed=st.integers(0, 2**31 - 1))
def test_packed_rows_never_attend_across_examples(models, arch, spec, lengths, seed):
    obj = build_objective(spec)
    rng = np.random.default_rng(seed)
    items = [layout(obj.apply(text_ids(n, seed + k), rng, VOCAB), arch, start_id=0, with_2d=obj.uses_2d_positions)
             for k, n in enumerate(lengths)]
    width = sum(len(it["input_ids"]) for it in items) + 3  # a little padding at the end
    dec_width = sum(len(it.get("decoder_input_ids", [])) for it in items) + 3
    batch = to_tensors(stack_rows([pack_rows(items, width, dec_width, pad_id=0)]))
    with torch.no_grad():
        out = models[arch](**batch, return_attentions=True)
    if arch == "encoder_decoder":
        segs = [batch["segment_ids"][0], batch["decoder_segment_ids"][0]]  # encoder layer, then decoder layer
        # the model's own cross-attention probabilities (B, H, T_dec, S): a real decoder token puts exactly
        # nothing on another example's source (or on padding), and all of its probability on its own
        (cross,) = out.cross_attentions
        dseg, eseg = batch["decoder_segment_ids"][0], batch["segment_ids"][0]
        real = dseg > 0
        other = (dseg[:, None] != eseg[None, :]) & real[:, None]  # (T_dec, S)
        assert other.any()
        assert cross[0][:, other].abs().max() == 0
        own = (dseg[:, None] == eseg[None, :]) & real[:, None]
        assert torch.allclose((cross[0] * own).sum(-1)[:, real], torch.ones(()))
    else:
        assert out.cross_attentions is None
        segs = [batch["segment_ids"][0]]
    assert len(out.attentions) == len(segs)
    for probs, seg in zip(out.attentions, segs):
        real = seg > 0
        across = (seg[:, None] != seg[None, :]) & real[:, None]  # (T, T): a real query and another example's key
        assert across.any()
        assert probs[0][:, across].abs().max() == 0  # (H, T, T): exactly no probability across examples
        assert torch.allclose(probs[0][:, real].sum(-1), torch.ones(()))
