"""Every objective feeds every family: one batch through a tiny model of each gives a finite loss, and
packed rows never let one example see another (checked on a real tiny model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from objectives_helpers import make_vocab, text_ids

import unimask
from unimask.data.pipeline import DataConfig, build_batches, to_tensors
from unimask.objectives import OBJECTIVES, build_objective
from unimask.objectives.layout import layout, pack_rows, stack_rows

PRESETS = {"tiny-causal": "causal", "tiny-prefix": "prefix", "tiny-encdec": "encoder_decoder", "tiny-glm": "prefix"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny matmuls: one thread avoids thread contention on a busy 2-core machine (25x faster there)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    from unimask.data.tokenizer import default_tokenizer

    vocab_size = default_tokenizer().vocab_size
    torch.manual_seed(0)
    return {p: unimask.build_model(unimask.preset(p, vocab_size=vocab_size)).eval() for p in PRESETS}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_one_batch_of_each_objective_through_each_family(objective, models):
    for preset, arch in PRESETS.items():
        batches = build_batches(DataConfig(seq_len=64, batch_size=2), objective, arch, seed=1)
        batch = next(iter(batches))
        with torch.no_grad():
            out = models[preset](**batch)
        n = int((batch["labels"] != -100).sum())
        assert n > 0 and int(out.n_loss_tokens) == n
        assert torch.isfinite(out.loss), (objective, preset)
        assert abs(float(out.loss) - float(out.loss_sum) / n) < 1e-4


def _packed(arch: str, second: np.ndarray, with_2d: bool) -> dict[str, torch.Tensor]:
    vocab = make_vocab()
    obj = build_objective("glm_blank" if with_2d else "span_corruption")
    first = obj.apply(text_ids(20, 1) % 500, np.random.default_rng(0), vocab)
    other = obj.apply(second, np.random.default_rng(1), vocab)
    items = [layout(e, arch, start_id=0, with_2d=with_2d) for e in (first, other)]
    return to_tensors(stack_rows([pack_rows(items, 64, 64, pad_id=0)]))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_packed_examples_never_attend_to_each_other(preset):
    arch = PRESETS[preset]
    with_2d = preset == "tiny-glm"
    torch.manual_seed(0)
    model = unimask.build_model(unimask.preset(preset, vocab_size=1000)).eval()
    a = _packed(arch, text_ids(24, 2) % 500, with_2d)
    b = _packed(arch, text_ids(24, 3) % 500, with_2d)  # only the second example differs
    seg_key = "decoder_segment_ids" if arch == "encoder_decoder" else "segment_ids"
    first = a[seg_key][0] == 1
    assert torch.equal(a[seg_key], b[seg_key])
    with torch.no_grad():
        la, lb = model(**a).logits, model(**b).logits
    assert torch.allclose(la[0, first], lb[0, first], atol=1e-5)  # example 1 is blind to example 2
    second = a[seg_key][0] == 2
    assert not torch.allclose(la[0, second], lb[0, second], atol=1e-3)  # the change is real
