"""Token choice: top-k, top-p and the repetition penalty on hand-made logits."""

from __future__ import annotations

import torch

from unimask.generation.sampling import apply_repetition_penalty, top_k_top_p


def test_top_k_keeps_k_largest() -> None:
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    out = top_k_top_p(logits, top_k=2)
    assert torch.isinf(out[0, [0, 3]]).all() and torch.isfinite(out[0, [1, 2]]).all()


def test_top_p_keeps_smallest_set_reaching_p() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = top_k_top_p(probs.log(), top_p=0.7)
    assert torch.isfinite(out[0, :2]).all() and torch.isinf(out[0, 2:]).all()
    out = top_k_top_p(probs.log(), top_p=0.81)
    assert torch.isfinite(out[0, :3]).all() and torch.isinf(out[0, 3])


def test_repetition_penalty_lowers_seen_tokens() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1]]), 2.0)
    assert torch.allclose(out, torch.tensor([[1.0, -4.0, 1.0]]))


def test_top_p_on_unsorted_logits_keeps_the_right_token_ids() -> None:
    """The nucleus is found in sorted order but must be applied to the token ids (scattered back)."""
    probs = torch.tensor([[0.05, 0.3, 0.15, 0.5],   # nucleus at 0.7: ids 3 and 1
                          [0.15, 0.05, 0.5, 0.3]])  # nucleus at 0.7: ids 2 and 3
    out = top_k_top_p(probs.log(), top_p=0.7)
    assert torch.isfinite(out).tolist() == [[False, True, False, True], [False, False, True, True]]
    kept = top_k_top_p(probs.log(), top_p=0.7)[torch.isfinite(out)]
    assert torch.allclose(kept, probs.log()[torch.isfinite(out)])  # kept logits are unchanged
    both = top_k_top_p(torch.tensor([[2.0, 5.0, 1.0, 4.0, 3.0]]), top_k=3, top_p=0.99)
    assert torch.isfinite(both).tolist() == [[False, True, False, True, True]]
