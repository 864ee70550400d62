"""lm-evaluation-harness scores unimask models itself: a local task over a JSONL file the test writes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

lm_eval = pytest.importorskip("lm_eval")

from lm_eval.tasks import TaskManager  # noqa: E402

from unimask.data.tokenizer import default_tokenizer  # noqa: E402
from unimask.evaluation.formats import reading_format  # noqa: E402
from unimask.evaluation.scoring import score_pairs  # noqa: E402
from unimask.integrations.lm_eval import DEFAULT_OBJECTIVE, UnimaskHarnessLM  # noqa: E402
from unimask.serving.tiny import tiny_model  # noqa: E402

DOCS = [
    {"question": "the sky is", "choices": ["blue", "green", "loud"], "answer": 0, "text": "the sky is blue today"},
    {"question": "two plus two is", "choices": ["four", "five"], "answer": 0, "text": "numbers add up"},
    {"question": "a cat says", "choices": ["moo", "meow", "quack"], "answer": 1, "text": "cats and dogs"},
    {"question": "fire is", "choices": ["cold", "hot"], "answer": 1, "text": "a much longer text " * 12},
]


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("harness")
    data = root / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    common = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    (root / "mc.yaml").write_text(
        "task: unimask_mc\n" + common + "output_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: '{{answer}}'\nmetric_list:\n  - metric: acc\n")
    (root / "ppl.yaml").write_text(
        "task: unimask_ppl\n" + common + "output_type: loglikelihood_rolling\ndoc_to_text: ''\n"
        "doc_to_target: '{{text}}'\nmetric_list:\n  - metric: word_perplexity\n")
    (root / "gen.yaml").write_text(
        "task: unimask_gen\n" + common + "output_type: generate_until\ndoc_to_text: '{{question}}'\n"
        "doc_to_target: '{{choices[answer]}}'\ngeneration_kwargs:\n  until: ['\\n']\n  max_gen_toks: 6\n"
        "metric_list:\n  - metric: exact_match\n")
    return root


@pytest.fixture(scope="module")
def tok():
    return default_tokenizer()


def _model(name, tok):
    return tiny_model(name, tok)


def _run(lm, tasks, names):
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    return lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=TaskManager(include_path=str(tasks)),
                                   log_samples=True, num_fewshot=0, random_seed=0, numpy_random_seed=0,
                                   torch_random_seed=0, fewshot_random_seed=0)


@pytest.mark.parametrize("name", ["tiny-causal", "tiny-prefix", "tiny-encdec"])
def test_harness_loglikelihoods_equal_unimask_scoring(name, tok, tasks):
    model = _model(name, tok)
    out = _run(UnimaskHarnessLM(model=model, tokenizer=tok, batch_size=3), tasks, ["unimask_mc", "unimask_ppl"])
    fmt = reading_format(DEFAULT_OBJECTIVE[model.config.arch], model.config.arch, tok,
                         start_id=model.config.start_token_id)
    samples = sorted(out["samples"]["unimask_mc"], key=lambda s: s["doc_id"])
    assert len(samples) == len(DOCS)
    hits = 0
    for doc, sample in zip(DOCS, samples):
        ctx = tok.encode(doc["question"])
        pairs = [(ctx, tok.encode(" " + c)) for c in doc["choices"]]
        assert all(tok.encode(doc["question"] + " " + c) == p[0] + p[1] for c, p in zip(doc["choices"], pairs))
        scores = score_pairs(model, fmt, pairs)
        want = [s.logprob for s in scores]
        got = [r[0][0] for r in sample["resps"]]
        assert got == pytest.approx(want, abs=1e-5)
        assert [bool(r[0][1]) for r in sample["resps"]] == [s.all_correct for s in scores]
        hits += int(max(range(len(want)), key=want.__getitem__) == doc["answer"])
    assert out["results"]["unimask_mc"]["acc,none"] == pytest.approx(hits / len(DOCS))
    # rolling: every token once; the whole text's log-likelihood, one window here
    rolling = sorted(out["samples"]["unimask_ppl"], key=lambda s: s["doc_id"])
    for doc, sample in zip(DOCS, rolling):
        tokens = tok.encode(doc["text"])
        first = [] if model.config.arch == "encoder_decoder" or fmt.input_ids([]) else [tok.bos_id]
        want = score_pairs(model, fmt, [(first, tokens)])[0].logprob
        assert sample["resps"][0][0] == pytest.approx(want, abs=1e-4)
        assert math.isfinite(want) and want < 0


def test_rolling_windows_score_every_token_once(tok):
    """A text longer than the context: windows cover each token exactly once, each with full context."""
    model = _model("tiny-causal", tok)
    lm = UnimaskHarnessLM(model=model, tokenizer=tok, max_length=16)
    text = "a much longer text about windows and context " * 4
    n = len(tok.encode(text))
    seen = []
    import unimask.integrations.lm_eval as mod

    real = mod.score_pairs

    def spy(model, fmt, pairs, **kw):
        seen.extend(pairs)
        return real(model, fmt, pairs, **kw)

    mod.score_pairs = spy
    try:
        (value,) = lm.loglikelihood_rolling([type("R", (), {"args": (text,)})()])
    finally:
        mod.score_pairs = real
    assert sum(len(c) for _, c in seen) == n and len(seen) > 1
    assert all(len(fmt_in) + len(c) + 1 <= 16 for fmt_in, c in seen)  # [bos] + context + continuation fit
    assert all(len(fmt_in) + len(c) == 14 for fmt_in, c in seen[1:])  # every later window: full context
    assert value == pytest.approx(sum(s.logprob for s in real(model, lm.format, seen)), abs=1e-6)


def test_generate_until_through_the_cli(tok, tasks, tmp_path):
    """The real command line: ``python -m unimask.integrations.lm_eval --model unimask ...``."""
    model = _model("tiny-causal", tok)
    model.save(tmp_path / "m")
    tok.save(tmp_path / "m")
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "unimask.integrations.lm_eval", "run", "--model", "unimask",
                           "--model_args", f"path={tmp_path / 'm'}", "--tasks", "unimask_gen",
                           "--include_path", str(tasks), "--batch_size", "2", "--output_path", str(out),
                           "--log_samples"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HF_DATASETS_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = list(out.rglob("samples_unimask_gen*.jsonl"))
    assert files, proc.stdout[-2000:]
    rows = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert len(rows) == len(DOCS)
    # the harness's text is the model's own greedy continuation, cut at the newline
    from unimask.generation import generate

    for row in rows:
        doc = DOCS[row["doc_id"]]
        new = generate(model, [[tok.bos_id, *tok.encode(doc["question"])]], max_new_tokens=6,
                       eos_token_id=tok.eos_id)[0].tolist()
        cut = []
        for t in new:
            if t in (tok.eos_id, tok.pad_id):
                break
            cut.append(t)
        assert row["resps"][0][0] == tok.decode(cut).split("\n")[0]
