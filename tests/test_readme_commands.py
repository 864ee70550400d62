"""The README cannot drift: its shell commands are run, line by line, as a newcomer would.

Every line of every ```bash block of README.md is one of:

- run (in order, in one fresh temporary working directory, with this checkout's ``.venv/bin`` first on
  PATH) and must exit 0; where it would take minutes, the few arguments in ``SHORTER`` are appended
  (fewer steps, fewer examples) and nothing else changes;
- skipped, with the reason in ``SKIPPED`` (a server, a GPU, the network, minutes of CPU, or the test
  suite itself).

Inputs the README's lines assume the reader has (``my_corpus/``, ``pairs.jsonl``, ``chats.jsonl``,
``qa.parquet``, a Hugging Face LLaMA directory) are made by ``_fixtures`` first, tiny. The cache
(``$UNIMASK_CACHE``, default ``~/.cache/unimask``) is the user's, so the built-in corpus and tokenizer are
not rebuilt for every test run.

Every ``unimask`` line, the skipped ones included, is also parsed by the real argument parser, so a README
line naming an option or a choice that does not exist fails here even when it is not run. ``SHORTER`` and
``SKIPPED`` must name lines that are in the README (a stale entry fails). The Python blocks that need no
server are run at the end, in the same directory.

``UNIMASK_README_SLOW=1`` also runs the slow skipped lines (the comparison study at ``--study smoke``: about
3 minutes per study on 2 CPU cores).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unimask.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
SLOW = os.environ.get("UNIMASK_README_SLOW") == "1"

# README command (as shlex.join of its words, comment dropped) -> arguments appended to make it quick.
SHORTER: dict[str, list[str]] = {
    "unimask train --config tiny-causal": ["--set", "steps=2", "--no-progress"],
    "unimask train --config tiny-prefix --set steps=500 --set optimizer.lr=3e-3": ["--set", "steps=2",
                                                                                   "--no-progress"],
    "unimask train --config tiny-prefix --resume": ["--set", "steps=2"],  # the run above is done: nothing to do
    "torchrun --nproc_per_node 2 -m unimask train --config tiny-causal --parallel fsdp2 --out-dir runs/fsdp2":
        ["--set", "steps=2", "--no-progress"],
    "unimask train --config tiny-ul2r": ["--set", "steps=2", "--no-progress"],
    "unimask train --config tiny-prefix --set objective=glm_blank --set model=tiny-glm --out-dir runs/glm":
        ["--set", "steps=2", "--no-progress"],
    "unimask finetune --model runs/tiny-causal --data pairs.jsonl --out-dir runs/ft-pairs": ["--steps", "2",
                                                                                             "--no-progress"],
    "unimask finetune --model runs/tiny-causal --data chats.jsonl --lora --lora-r 8 --lr 5e-3 --out-dir runs/ft-lora":
        ["--steps", "2", "--no-progress"],
    "unimask finetune --model path/to/hf-llama --data qa.parquet --input-field question --output-field answer "
    "--out-dir runs/ft-hf": ["--steps", "2", "--no-progress"],
    "unimask finetune --model runs/tiny-causal --data pairs.jsonl --arch encoder_decoder --out-dir runs/ft-t5gemma":
        ["--steps", "2", "--no-progress"],
    "unimask train --config tiny-causal --set data.path=zh.txt --set data.tokenizer=tok-zh/tokenizer.json "
    "--set steps=30 --out-dir runs/zh": ["--no-progress"],
    "unimask emergence sweep": ["--widths", "8,16", "--steps", "2", "--train-examples", "64", "--test-examples", "8",
                                "--no-progress"],
}

SLOW_REASON = "the comparison study: minutes even at --study smoke (UNIMASK_README_SLOW=1 runs it)"
# README command -> why it is not run here.
SKIPPED: dict[str, str] = {
    "unimask compare": SLOW_REASON,
    "unimask report": SLOW_REASON + "; reads its results.json",
    "unimask compare --study smoke": SLOW_REASON,
    "unimask compare --study gpu --device cuda": "needs a GPU and about an hour",
    "unimask compare --study my.yaml --seeds 3 --set budget_flops=2e12": SLOW_REASON,
    "unimask serve --model runs/tiny-causal --port 8000": "a server that runs until stopped "
                                                          "(tests/serving/ start it and talk to it)",
    "python -m unimask.integrations.lm_eval run --model unimask --model_args path=runs/tiny-causal --tasks "
    "lambada_openai --batch_size 16": "downloads LAMBADA from the Hugging Face hub (tests/integrations/ run the "
                                      "harness offline)",
    ".venv/bin/python -m pytest -q tests/train/test_crash_safety.py tests/train/test_numerics.py":
        "the test suite itself (make test runs it)",
    ".venv/bin/python -m pytest -q tests/test_hostile_inputs.py": "the test suite itself (make test runs it)",
    ".venv/bin/python -m pytest -q tests/serving/test_server_fuzz.py tests/serving/test_server_reliability.py":
        "the test suite itself (make test runs it)",
    "UNIMASK_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest -q tests/serving/test_server_fuzz.py":
        "the test suite itself, longer",
    ".venv/bin/python benchmarks/bench_vs_hf.py --sizes 256,512": "a benchmark: 15 minutes on 2 cores",
    ".venv/bin/python benchmarks/bench_vs_hf.py": "a benchmark: 33 minutes on 2 cores",
    ".venv/bin/python benchmarks/bench_vs_hf.py --quick": "a benchmark: two minutes",
    ".venv/bin/python benchmarks/gpu_bench.py": "needs a GPU",
}
SLOW_RUNNABLE = {  # what UNIMASK_README_SLOW=1 appends to the slow lines
    "unimask compare": ["--study", "smoke", "--out", "out/compare/cpu", "--no-progress"],
    "unimask report": [],
    "unimask compare --study smoke": ["--no-progress"],
    "unimask compare --study my.yaml --seeds 3 --set budget_flops=2e12": ["--seeds", "1", "--set",
                                                                          "budget_flops=2e9", "--no-progress"],
}
PYTHON_SKIPPED = ("from openai import OpenAI",)  # Python blocks starting so need a running server


def readme_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def readme_commands(text: str) -> list[str]:
    """The commands of the README's ```bash blocks: continuation lines joined, each as shlex.join of its words."""
    commands = []
    for block in readme_blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def unimask_argv(words: list[str]) -> list[str] | None:
    """The arguments after ``unimask`` (or ``torchrun ... -m unimask``), or None for another program."""
    if words[0] == "unimask":
        return words[1:]
    if words[0] == "torchrun" and "-m" in words and words[words.index("-m") + 1] == "unimask":
        return words[words.index("-m") + 2:]
    return None


def test_every_listed_command_is_in_the_readme() -> None:
    stale = [c for c in [*SHORTER, *SKIPPED] if c not in COMMANDS]
    assert not stale, f"SHORTER/SKIPPED name commands the README no longer has: {stale}"
    assert set(SLOW_RUNNABLE) <= set(SKIPPED)


@pytest.mark.parametrize("command", [c for c in COMMANDS if unimask_argv(shlex.split(c)) is not None])
def test_readme_unimask_line_parses(command: str, capsys: pytest.CaptureFixture) -> None:
    """Every option and choice a README line names exists (skipped lines included)."""
    argv = unimask_argv(shlex.split(command))
    assert argv is not None
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"README line `{command}` does not parse (exit {exc.code}): {capsys.readouterr().err.strip()}")


def _fixtures(cwd: Path) -> None:
    """The inputs the README assumes the reader has, tiny."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from unimask import build_model, preset
    from unimask.data.tokenizer import default_tokenizer
    from unimask.interop import to_hf

    (cwd / "my_corpus").mkdir()
    (cwd / "my_corpus" / "a.txt").write_text("The quick brown fox jumps over the lazy dog.\n" * 50, encoding="utf-8")
    (cwd / "my_corpus" / "b.jsonl").write_text("".join(json.dumps({"text": f"document {i} about foxes"}) + "\n"
                                                       for i in range(20)), encoding="utf-8")
    pairs = [{"input": f"Return the number {i}", "output": f" {i}"} for i in range(40)]
    (cwd / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    chats = [{"messages": [{"role": "user", "content": f"Say {i}"}, {"role": "assistant", "content": f"{i}"}]}
             for i in range(40)]
    (cwd / "chats.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats), encoding="utf-8")
    pq.write_table(pa.table({"question": [f"What is {i} + 1?" for i in range(40)],
                             "answer": [f" {i + 1}" for i in range(40)]}), cwd / "qa.parquet")
    tok = default_tokenizer()
    model = build_model(preset("tiny-causal").replace(vocab_size=tok.vocab_size))
    model.save(cwd / "base")
    tok.save(cwd / "base")
    for name in ("hf-llama", "llama"):  # `--from-hf path/to/llama`, `finetune --model path/to/hf-llama`
        to_hf(model, cwd / "path" / "to" / name, model_type="llama", tokenizer_dir=cwd / "base")
    (cwd / "my.yaml").write_text("base: smoke\n", encoding="utf-8")
    zh = "大型语言模型的三种架构：因果解码器、前缀解码器和编码器解码器。注意力掩码决定了模型的家族。"
    (cwd / "zh.txt").write_text("\n".join([zh] * 200) + "\n", encoding="utf-8")


def _run(words: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_readme_commands_run(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("UNIMASK_TEST_CHECKPOINT_SLEEP", None)
    _fixtures(tmp_path)
    took = []
    for command in COMMANDS:
        if command in SKIPPED and not (SLOW and command in SLOW_RUNNABLE):
            continue
        words = shlex.split(command) + SHORTER.get(command, []) + (SLOW_RUNNABLE.get(command, []) if SLOW else [])
        start = time.perf_counter()
        res = _run(words, tmp_path, env)
        took.append((time.perf_counter() - start, command))
        assert res.returncode == 0, (f"README command `{command}` (run as {shlex.join(words)}) exited "
                                     f"{res.returncode}:\n{res.stderr[-3000:]}")
    for block in readme_blocks(README.read_text(encoding="utf-8"), "python"):
        if block.lstrip().startswith(PYTHON_SKIPPED):
            continue
        start = time.perf_counter()
        res = _run([sys.executable, "-c", block], tmp_path, env)
        took.append((time.perf_counter() - start, block.splitlines()[0]))
        assert res.returncode == 0, f"README Python block `{block.splitlines()[0]}...` failed:\n{res.stderr[-3000:]}"
    print("\n".join(f"{t:6.1f} s  {c}" for t, c in sorted(took, reverse=True)))
