"""unimask.load: text in, text out for every family, batched and streamed, scores, infilling, HF dirs."""

from __future__ import annotations

import pytest
import torch

import unimask
from unimask.evaluation.formats import reading_format
from unimask.evaluation.scoring import score_pairs
from unimask.serving.tiny import make_tiny_model_dir


@pytest.fixture(scope="module", params=["tiny-causal", "tiny-prefix", "tiny-encdec"])
def model_dir(request, tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("api") / request.param, request.param, init_std=0.3)


def test_generate_batched_streamed_and_alone_agree(model_dir):
    m = unimask.load(model_dir)
    alone = [m.generate(p, max_new_tokens=8) for p in ("The fox", "A much longer prompt here")]
    assert m.generate(["The fox", "A much longer prompt here"], max_new_tokens=8) == alone
    assert "".join(m.generate("The fox", max_new_tokens=8, stream=True)) == alone[0]
    sampled = m.generate("The fox", max_new_tokens=8, temperature=1.0, seed=3)
    assert sampled == m.generate("The fox", max_new_tokens=8, temperature=1.0, seed=3)
    assert isinstance(alone[0], str) and any(alone)


def test_score_is_the_family_aware_log_likelihood(model_dir):
    m = unimask.load(model_dir)
    tok = m.tokenizer
    fmt = reading_format({"causal": "causal_lm", "prefix": "prefix_lm"}.get(m.config.arch, "supervised"),
                         m.config.arch, tok, start_id=m.config.start_token_id)
    want = score_pairs(m.model, fmt, [(tok.encode("The capital is"), tok.encode(" Paris"))])[0].logprob
    assert m.score("The capital is", " Paris") == pytest.approx(want, abs=1e-5)
    both = m.score(["The capital is", "The capital is"], [" Paris", " Rome"])
    assert both[0] == pytest.approx(want, abs=1e-5) and both[0] != both[1] and all(s < 0 for s in both)
    with pytest.raises(unimask.UnimaskError, match="2 contexts but 3"):
        m.score(["a", "b"], ["x", "y", "z"])


def test_embed(model_dir):
    m = unimask.load(model_dir)
    e = m.embed(["a fox", "a dog"])
    assert e.shape == (2, m.config.d_model) and torch.isfinite(e).all()


def test_infilling_through_generate(tmp_path):
    prefix = unimask.load(make_tiny_model_dir(tmp_path / "p", "tiny-prefix", init_std=0.3))
    out = prefix.generate("unimask is [MASK] to use", max_new_tokens=5)
    assert out.startswith("unimask is ") and out.endswith(" to use") and "[MASK]" not in out
    t5 = unimask.load(make_tiny_model_dir(tmp_path / "e", "tiny-encdec", init_std=0.3))
    out = t5.generate("unimask is <extra_id_0> to use", max_new_tokens=5)
    assert out.startswith("unimask is ") and out.endswith(" to use") and "<extra_id_0>" not in out


def test_a_hugging_face_directory_loads_too(tmp_path):
    transformers = pytest.importorskip("transformers")
    src = unimask.load(make_tiny_model_dir(tmp_path / "u", "tiny-causal", init_std=0.3))
    hf_dir = tmp_path / "hf"
    unimask.to_hf(src.model, hf_dir)
    src.tokenizer.save(hf_dir)
    assert transformers.AutoConfig.from_pretrained(hf_dir).model_type
    hf = unimask.load(hf_dir)
    assert hf.generate("The fox", max_new_tokens=6) == src.generate("The fox", max_new_tokens=6)
