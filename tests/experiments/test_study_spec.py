"""Study specs: built-in studies, equal training FLOPs per run (checked against torch's own FLOP counter),
and one clear error for every bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from unimask.errors import ConfigError
from unimask.experiments.study import BUILTIN_STUDIES, ROWS, load_study
from unimask.models import build_model

VOCAB, PAD, BOS, EOS = 400, 0, 1, 2


def counted_step_flops(spec, row, batch: int) -> float:
    """FLOPs torch counts for one forward + backward of ``batch`` rows of the row's real shapes (eager
    attention, so that attention is counted as the matmuls it is)."""
    config = spec.model_config(row, VOCAB, PAD, BOS, EOS)
    model = build_model(config)
    model.set_attention_backend("eager")
    S, T = spec.seq_len, spec.target_len(row)
    ids = torch.randint(3, VOCAB, (batch, S))
    if row.arch == "encoder_decoder":
        kw = {"input_ids": ids, "decoder_input_ids": torch.randint(3, VOCAB, (batch, T)),
              "labels": torch.randint(3, VOCAB, (batch, T))}
    else:
        kw = {"input_ids": ids, "labels": ids}
        if row.arch == "prefix":
            kw["prefix_lengths"] = torch.full((batch,), S // 2)
    with FlopCounterMode(display=False) as counter:
        model(**kw).loss.backward()
    return float(counter.get_total_flops())


@pytest.mark.parametrize("study", sorted(BUILTIN_STUDIES))
def test_every_run_of_a_builtin_study_gets_the_same_flops(study: str) -> None:
    spec = load_study(study)
    totals = {}
    for row in spec.row_objects():
        config = spec.model_config(row, VOCAB, PAD, BOS, EOS)
        totals[row.name] = spec.steps_for(row, config) * spec.flops_per_step(row, config)
    for name, total in totals.items():
        assert total == pytest.approx(spec.budget_flops, rel=0.02), name
    assert max(totals.values()) / min(totals.values()) < 1.02


@pytest.mark.parametrize("name", ["causal", "prefix", "encdec-span-params", "encdec-span-compute",
                                  "encdec-prefix-params", "encdec-prefix-compute", "ul2-encdec"])
def test_the_calculator_counts_what_torch_counts(name: str) -> None:
    """The budget's FLOPs per step are the FLOPs the model really does, for each family's real shapes
    (source and target lengths, cross-attention): torch's FlopCounterMode agrees exactly."""
    spec = load_study("smoke")
    row = ROWS[name]
    config = spec.model_config(row, VOCAB, PAD, BOS, EOS)
    assert counted_step_flops(spec, row, 2) == pytest.approx(2 * spec.flops_per_sequence(row, config), rel=1e-9)


def test_equal_steps_scale_the_batch_not_the_compute() -> None:
    spec = load_study("cpu")
    steps = {}
    for row in spec.row_objects():
        config = spec.model_config(row, VOCAB, PAD, BOS, EOS)
        steps[row.name] = spec.steps_for(row, config)
        # the same steps up to the rounding of the batch to whole rows
        slack = 0.5 / spec.batch_for(row, config) + 0.01
        assert steps[row.name] == pytest.approx(steps["causal"], rel=slack), row.name
    fixed = load_study("cpu", {"equal_steps": False})
    span = ROWS["encdec-span-params"]
    config = fixed.model_config(span, VOCAB, PAD, BOS, EOS)
    assert fixed.batch_for(span, config) == fixed.batch_size
    assert fixed.steps_for(span, config) > 1.5 * steps["causal"]  # cheaper rows then take more steps


def test_matchings_give_the_encoder_decoder_half_or_all_the_layers() -> None:
    spec = load_study("cpu")
    params = spec.model_config(ROWS["encdec-span-params"], VOCAB, PAD, BOS, EOS)
    compute = spec.model_config(ROWS["encdec-span-compute"], VOCAB, PAD, BOS, EOS)
    decoder = spec.model_config(ROWS["causal"], VOCAB, PAD, BOS, EOS)
    assert params.n_layers + params.encoder_layers == decoder.n_layers
    assert compute.n_layers == compute.encoder_layers == decoder.n_layers
    from unimask.analysis.params import count_parameters

    ratio = count_parameters(compute).total / count_parameters(decoder).total
    assert 1.4 < ratio < 2.2  # about twice the decoder's parameters
    assert 0.9 < count_parameters(params).total / count_parameters(decoder).total < 1.3


def test_yaml_study_with_a_base(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("base: smoke\nseeds: 3\nrows: [causal, prefix]\n")
    spec = load_study(path)
    assert spec.name == "mine" and spec.seeds == 3 and spec.rows == ["causal", "prefix"]
    assert spec.fingerprint() != load_study("smoke").fingerprint()
    assert load_study("smoke", {"workers": 7}).fingerprint() == load_study("smoke").fingerprint()


@pytest.mark.parametrize("spec, overrides, needle", [
    ("nosuch", {}, "neither a built-in study"),
    ("smoke", {"bugdet_flops": 1e9}, "did you mean 'budget_flops'"),
    ("smoke", {"rows": ["causal", "decoder"]}, "unknown key 'decoder'"),
    ("smoke", {"tasks": ["max", "sum"]}, "unknown key 'sum'"),
    ("smoke", {"seeds": 0}, "'seeds' must be >= 1"),
    ("smoke", {"budget_flops": -1.0}, "must be positive"),
    ("smoke", {"source_tokens": 60}, "must fit in seq_len"),
])
def test_bad_studies_are_one_clear_error(spec: str, overrides: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_study(spec, overrides)


def test_a_budget_too_small_names_the_row_and_the_minimum() -> None:
    spec = load_study("smoke", {"budget_flops": 1e6})
    row = spec.row_objects()[0]
    with pytest.raises(ConfigError, match=f"row '{row.name}'.*raise budget_flops to at least"):
        spec.steps_for(row, spec.model_config(row, VOCAB, PAD, BOS, EOS))


def test_bad_yaml_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rows: [causal\n")
    with pytest.raises(ConfigError, match="not a valid YAML"):
        load_study(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- causal\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_study(listy)
    with pytest.raises(ConfigError, match="unknown study 'gpu2'"):
        load_study({"base": "gpu2"})
