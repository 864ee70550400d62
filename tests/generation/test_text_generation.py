"""Text generation for the three families: streaming equals non-streaming equals decoding the token-level
output; seeds reproduce samples; stop strings and finish reasons; the context limit; GLM and T5 infilling
checked against the training layout and hand-written arrays; ``unimask generate``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unimask.cli import main
from unimask.errors import UnimaskError
from unimask.generation import generate
from unimask.generation.text import glm_infill, parse_sentinel_output
from unimask.serving import LoadedModel, SamplingParams

PROMPTS = ["The quick brown fox", "Numbers like 12", "A language model predicts"]


def collect_stream(engine: LoadedModel, prompts: list[str], params: SamplingParams) -> list[str]:
    texts = [""] * len(prompts)
    for c in engine.stream(prompts, params):
        texts[c.index] += c.text
    return texts


@pytest.mark.parametrize("family", ["causal", "glm", "encdec"])
@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_stream_equals_complete_equals_tokens(engines: dict[str, LoadedModel], family: str,
                                              temperature: float) -> None:
    e = engines[family]
    params = SamplingParams(max_new_tokens=12, temperature=temperature, top_k=50, seed=7)
    done = e.complete(PROMPTS, params)
    assert collect_stream(e, PROMPTS, params) == [c.text for c in done]
    # the same text from the token-level API, decoded in one go
    ids = [e.encode_prompt(p) for p in PROMPTS]
    tokens = generate(e.model, ids, config=params.generation_config(e.tokenizer.eos_id))
    for row, c in zip(tokens.tolist(), done):
        row = row[: row.index(e.tokenizer.eos_id)] if e.tokenizer.eos_id in row else row
        assert c.text == e.tokenizer.decode(row)
        assert c.completion_tokens <= 12 and c.prompt_tokens > 0
    assert len({c.text for c in done}) > 1  # different prompts, different text: the prompt is used


def test_seed_reproduces_a_sample(engines: dict[str, LoadedModel]) -> None:
    e = engines["causal"]
    a = e.complete("Hello", SamplingParams(max_new_tokens=16, temperature=1.0, seed=123))[0].text
    b = e.complete("Hello", SamplingParams(max_new_tokens=16, temperature=1.0, seed=123))[0].text
    others = {e.complete("Hello", SamplingParams(max_new_tokens=16, temperature=1.0, seed=s))[0].text
              for s in range(3)}
    assert a == b
    assert len(others | {a}) > 1  # seeds matter


def test_stop_string_and_finish_reasons(engines: dict[str, LoadedModel]) -> None:
    e = engines["causal"]
    free = e.complete("The quick", SamplingParams(max_new_tokens=16))[0]
    assert free.finish_reason == "length" and free.completion_tokens == 16
    stop = free.text[3:5]
    assert stop
    cut = e.complete("The quick", SamplingParams(max_new_tokens=16, stop=(stop,)))[0]
    assert cut.finish_reason == "stop" and cut.text == free.text[: free.text.find(stop)]
    assert cut.completion_tokens < 16  # decoding stopped early


def test_context_limit_is_a_clear_error(engines: dict[str, LoadedModel]) -> None:
    e = engines["causal"]
    with pytest.raises(UnimaskError, match="context"):
        e.complete("word " * 300, SamplingParams(max_new_tokens=8))
    with pytest.raises(UnimaskError, match="top_p"):
        SamplingParams(top_p=0.0)


@pytest.mark.parametrize("family", ["glm", "prefix"])
def test_glm_infill_matches_the_training_layout(engines: dict[str, LoadedModel], family: str) -> None:
    """Greedy infilling with the KV cache picks, at every step, the argmax of one teacher-forced forward pass
    over the GLM training row: Part A bidirectional, then [sop] + span at the blank's position with block
    positions 1, 2, ... (Du et al. 2022, section 2.2). ``prefix`` is a RoPE prefix decoder: the GLM
    objective gives its Part B tokens the blank's position (``objectives.layout``), and no block position."""
    e = engines[family]
    tok, model = e.tokenizer, e.model
    a = tok.encode("The quick ") + [tok.special.mask] + tok.encode(" jumps.")
    m = a.index(tok.special.mask)
    out = generate(model, [a + [tok.special.sop]], max_new_tokens=6, eos_token_id=tok.special.eop,
                   mask_position=torch.tensor([m]))[0].tolist()
    span = out[: out.index(tok.special.eop)] if tok.special.eop in out else out
    filled = glm_infill(model, tok, "The quick [MASK] jumps.", SamplingParams(max_new_tokens=6).generation_config(None))
    assert filled.text == tok.decode(a[:m] + span + a[m + 1:]) and filled.spans == [tok.decode(span)]
    row = a + [tok.special.sop] + span
    S, T = len(a), len(span) + 1
    with torch.no_grad():
        block = torch.tensor([[0] * S + list(range(1, T + 1))]) if model.config.position == "glm2d" else None
        logits = model(torch.tensor([row]), is_prefix=torch.tensor([[True] * S + [False] * T]),
                       position_ids=torch.tensor([list(range(S)) + [m] * T]), block_position_ids=block).logits[0]
    greedy = logits[S:].argmax(-1).tolist()  # predictions after [sop], after span[0], ...
    assert greedy[: len(span)] == span
    if len(span) < 6:  # it stopped: the next choice was end-of-piece
        assert greedy[len(span)] == tok.special.eop
    # and the uncached path takes the same 2D positions
    ids = [a + [tok.special.sop]]
    cached = generate(model, ids, max_new_tokens=5, mask_position=torch.tensor([m]))
    plain = generate(model, ids, max_new_tokens=5, mask_position=torch.tensor([m]), use_cache=False)
    assert torch.equal(cached, plain)


def test_parse_sentinel_output_by_hand() -> None:
    s0, s1, s2 = 99, 98, 97
    eos = 2
    assert parse_sentinel_output([5, s0, 10, 11, s1, 12, s2, eos, 13], [s0, s1, s2], stop=[eos]) == {
        0: [10, 11], 1: [12], 2: []}
    assert parse_sentinel_output([s1, 7, s0, 8, s1, 9], [s0, s1, s2]) == {1: [7], 0: [8]}  # repeat ignored


def test_t5_infill_splices_spans(engines: dict[str, LoadedModel]) -> None:
    e = engines["encdec"]
    tok = e.tokenizer
    out = e.infill("The quick <extra_id_0> fox <extra_id_1>.", SamplingParams(max_new_tokens=8))
    assert len(out.spans) == 2
    assert out.text == "The quick " + out.spans[0] + " fox " + out.spans[1] + "."
    assert "<extra_id" not in out.text and tok.special.sentinels  # sentinels were replaced, never printed
    with pytest.raises(UnimaskError, match="infilling needs"):
        engines["causal"].infill("a <extra_id_0> b")


def test_cli_generate_streams_batches_and_infills(model_dirs: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    causal = str(model_dirs["causal"])
    engine = LoadedModel.load(causal)
    from unimask.commands.generate import DEFAULT_REPETITION_PENALTY as rp

    expected = engine.complete(PROMPTS[0], SamplingParams(max_new_tokens=10, temperature=0.8, seed=3,
                                                          repetition_penalty=rp))[0].text
    assert main(["generate", "--model", causal, "--prompt", PROMPTS[0], "--max-new-tokens", "10",
                 "--temperature", "0.8", "--seed", "3"]) == 0
    assert capsys.readouterr().out == expected + "\n"
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    assert main(["generate", "--model", causal, "--prompt-file", str(prompts), "--max-new-tokens", "6",
                 "--batch-size", "2", "--jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    greedy = engine.complete(PROMPTS, SamplingParams(max_new_tokens=6, repetition_penalty=rp))
    assert sorted((r["index"], r["text"]) for r in rows) == [(i, c.text) for i, c in enumerate(greedy)]
    assert main(["generate", "--model", str(model_dirs["glm"]), "--prompt", "a [MASK] b", "--jsonl",
                 "--max-new-tokens", "4"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["text"] == "a " + row["spans"][0] + " b"


def test_cli_generate_stdin_and_errors(model_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\nworld\n"))
    assert main(["generate", "--model", str(model_dirs["encdec"]), "--prompt-file", "-", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[0] ") and "\n[1] " in out
    assert main(["generate", "--model", str(tmp_path / "missing"), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert "no such checkpoint" in err and len(err.strip().splitlines()) == 1
    assert main(["generate", "--model", str(model_dirs["causal"]), "--prompt", "x " * 300]) == 2
    assert "context" in capsys.readouterr().err
    res = subprocess.run([sys.executable, "-m", "unimask", "generate", "--model", str(model_dirs["causal"]),
                          "--prompt", "x", "--top-p", "0"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "top_p" in res.stderr and "Traceback" not in res.stderr


def test_cli_generate_bad_input_is_one_line(model_dirs: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    """Bad devices, seeds, prompt bytes and a Hugging Face directory: exit 2 with one line, no traceback."""
    causal = str(model_dirs["causal"])
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe not utf-8\n")
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 8}))
    cases = [
        (["--model", causal, "--prompt", "x", "--device", "banana"], "--device 'banana'"),
        (["--model", causal, "--prompt", "x", "--device", "cuda:99"], "--device 'cuda:99'"),
        (["--model", causal, "--prompt", "x", "--seed", str(2**70), "--temperature", "1"], "seed"),
        (["--model", causal, "--prompt", "a\udcffb"], "not valid Unicode"),  # undecodable argv byte
        (["--model", causal, "--prompt-file", str(binary)], "not UTF-8"),
        (["--model", str(hf_dir), "--prompt", "x"], "unimask convert --from-hf"),
    ]
    for args, needle in cases:
        assert main(["generate", *args, "--max-new-tokens", "2"]) == 2, args
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, (args, err)


def test_model_name_is_the_directory_the_user_named(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    """A run directory serves as the run's name, not as its latest checkpoint's."""
    import shutil

    shutil.copytree(model_dirs["causal"], tmp_path / "my-run" / "checkpoint-7" / "model")
    assert LoadedModel.load(tmp_path / "my-run").name == "my-run"
    assert LoadedModel.load(tmp_path / "my-run" / "checkpoint-7").name == "checkpoint-7"
    assert LoadedModel.load(tmp_path / "my-run" / "checkpoint-7" / "model").name == "checkpoint-7"
    assert LoadedModel.load(tmp_path / "my-run", name="x").name == "x"
