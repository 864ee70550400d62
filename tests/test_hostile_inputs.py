"""The hostile-input catalogue (issue 14): every bad input is one clear line, exit code 2, and nothing changes.

Each case writes its inputs into a fresh folder, runs the real CLI in-process (``unimask.cli.main``) from that
folder, and asserts: exit code 2; exactly one line on stderr, naming the problem (a needle); no traceback;
the folder's tree (names, bytes, symlink targets) the same before and after, so no input was changed and
no output was written. A few cases run ``python -m unimask`` in a subprocess, as a user does.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from unimask.cli import main

BINARY = bytes(range(256)) * 8  # NUL bytes and invalid UTF-8
LATIN1 = "caf\xe9 na\xefve r\xe9sum\xe9\n".encode("latin-1")  # no NUL, not UTF-8
MARKER = "pickle-payload-ran"


class _Payload:
    """Unpickling this creates the file MARKER (``open(path, 'w')``): proof that a pickle was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from unimask.serving.tiny import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("hostile") / "model")


def tree_digest(root: Path) -> dict[str, str]:
    """Every path below ``root`` -> a digest of its bytes, its symlink target, or 'dir'."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# Input builders: each gets (folder, model_dir), writes what it needs and returns the argv -------------------

Build = Callable[[Path, Path], list[str]]


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


RUN_YAML = "model: tiny-causal\nsteps: 2\neval_every: 0\ndata: {seq_len: 32, batch_size: 2}\nout_dir: run\n"


def train_with(text: str | bytes, *sets: str) -> Build:
    def build(tmp: Path, _: Path) -> list[str]:
        cfg = write(tmp / "run.yaml", text)
        return ["train", "--config", str(cfg), "--no-progress", *[a for s in sets for a in ("--set", s)]]
    return build


def train_set(*sets: str) -> Build:
    return train_with(RUN_YAML, *sets)


def model_json(data: dict | str | bytes, command: str = "params") -> Build:
    def build(tmp: Path, _: Path) -> list[str]:
        text = data if isinstance(data, (str, bytes)) else json.dumps(data)
        cfg = write(tmp / "config.json", text)
        return [command, str(cfg)] + (["--out", ""] if command == "params" else [])
    return build


def checkpoint(damage: Callable[[Path], None], command: str = "info") -> Build:
    def build(tmp: Path, model: Path) -> list[str]:
        ckpt = tmp / "ckpt"
        shutil.copytree(model, ckpt)
        damage(ckpt)
        if command == "info":
            return ["info", str(ckpt)]
        return ["generate", "--model", str(ckpt), "--prompt", "hello", "--max-new-tokens", "2"]
    return build


def edit_config(**changes: object) -> Callable[[Path], None]:
    def damage(ckpt: Path) -> None:
        cfg = json.loads((ckpt / "config.json").read_text())
        (ckpt / "config.json").write_text(json.dumps({**cfg, **changes}))
    return damage


def truncate(ckpt: Path) -> None:
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])


def foreign(ckpt: Path) -> None:
    save_file({"encoder.layer.0.weight": torch.zeros(4, 4)}, ckpt / "model.safetensors")


def pickled(ckpt: Path) -> None:
    (ckpt / "model.safetensors").write_bytes(pickle.dumps({"weight": _Payload(str(ckpt.parent / MARKER))}))


def corpus(command: str, data: Callable[[Path], Path]) -> Build:
    def build(tmp: Path, model: Path) -> list[str]:
        src = data(tmp)
        if command == "tokenizer":
            return ["tokenizer", "train", "--input", str(src), "--vocab-size", "400", "--out", str(tmp / "tok")]
        return ["data", "prepare", "--input", str(src), "--out", str(tmp / "prepared"), "--tokenizer",
                str(model / "tokenizer.json"), "--no-progress"]
    return build


def huge_line(size: int, suffix: str = ".txt") -> Callable[[Path], Path]:
    def data(tmp: Path) -> Path:
        path = tmp / f"corpus{suffix}"
        with path.open("wb") as f:
            f.write(b'{"text": "a fine first record"}\n' if suffix == ".jsonl" else b"a fine first line\n")
            chunk = b"word " * 200_000  # 1 MB
            for _ in range(size // len(chunk)):
                f.write(chunk)
            f.write(b"\n")
        return path
    return data


def symlink_loop(tmp: Path) -> Path:
    (tmp / "a").symlink_to(tmp / "b")
    (tmp / "b").symlink_to(tmp / "a")
    return tmp / "a"


def empty_folder(tmp: Path) -> Path:
    (tmp / "texts" / "sub").mkdir(parents=True)
    write(tmp / "texts" / ".hidden", "hidden text is skipped")
    return tmp / "texts"


def prompts(data: bytes | None) -> Build:
    def build(tmp: Path, model: Path) -> list[str]:
        path = tmp / "prompts.txt"
        if data is not None:
            write(path, data)
        return ["generate", "--model", str(model), "--prompt-file", str(path)]
    return build


def plain(*argv: str) -> Build:
    """argv with {tmp} and {model} filled in; files named by 'file:' prefixes are created first."""
    def build(tmp: Path, model: Path) -> list[str]:
        out = []
        for a in argv:
            a = a.replace("{tmp}", str(tmp)).replace("{model}", str(model))
            if a.startswith("file:"):
                a = str(write(Path(a[5:]), "already here\n"))
            out.append(a)
        return out
    return build


def with_files(files: dict[str, bytes | str], *argv: str) -> Build:
    def build(tmp: Path, model: Path) -> list[str]:
        for name, data in files.items():
            write(tmp / name, data)
        return plain(*argv)(tmp, model)
    return build


HUGE_D = {"arch": "causal", "d_model": 10**12, "n_heads": 4}
PALM_540B = {"arch": "causal", "vocab_size": 256000, "d_model": 18432, "n_layers": 118, "n_heads": 48,
             "n_kv_heads": 1, "head_dim": 256, "d_ff": 73728, "activation": "swiglu", "parallel_block": True}

CASES: list[tuple[str, Build, str]] = [
    # run configs (train --config)
    ("config-yaml-syntax", train_with("model: [tiny-causal\nsteps: 2\n"), "not valid YAML"),
    ("config-unknown-key", train_with(RUN_YAML + "stepz: 3\n"), "stepz"),
    ("config-wrong-type", train_with(RUN_YAML.replace("steps: 2", "steps: many")), "steps"),
    ("config-binary", train_with(BINARY), "binary"),
    ("config-latin1", train_with(LATIN1), "UTF-8"),
    ("config-empty", train_with(""), "empty"),
    ("config-a-list", train_with("- model\n- steps\n"), "mapping"),
    ("config-directory", lambda tmp, _: ["train", "--config", str((tmp / "d").mkdir() or tmp / "d")], "directory"),
    ("config-missing", plain("train", "--config", "{tmp}/nope.yaml"), "no such run config"),
    ("config-seq-len-1e9", train_set("data.seq_len=1000000000"), "memory"),
    ("config-n-layers-1e6", train_set("model.n_layers=1000000"), "memory"),
    ("config-batch-size-1e9", train_set("data.batch_size=1000000000"), "memory"),
    ("config-preset-too-big", train_set("model=palm-540b"), "memory"),
    ("config-d-model-1e12", train_set("model.d_model=1000000000000"), "d_model"),
    ("config-seed-2**70", train_set(f"seed={2**70}"), "seed"),
    ("config-seed-negative", train_set("seed=-1"), "seed"),
    ("config-steps-0", train_set("steps=0"), "steps"),
    ("config-seq-len-0", train_set("data.seq_len=0"), "seq_len"),
    ("config-batch-size-negative", train_set("data.batch_size=-4"), "batch_size"),
    ("config-lr-nan", train_set("optimizer.lr=nan"), "optimizer.lr"),
    ("config-lr-inf", train_set("optimizer.lr=inf"), "optimizer.lr"),
    ("config-dropout-1.5", train_set("model.dropout=1.5"), "dropout"),
    ("config-heads-0", train_set("model.n_heads=0"), "n_heads"),
    ("config-bad-preset", train_set("model=gpt-17"), "gpt-17"),
    ("config-set-without-value", train_set("steps"), "key=value"),
    ("config-set-unknown", train_set("optimizer.lrr=1"), "lrr"),
    # model configs (params / info on a config.json)
    ("model-d-model-1e12-params", model_json(HUGE_D), "d_model"),
    ("model-d-model-1e12-info", model_json(HUGE_D, "info"), "d_model"),
    ("model-layers-absurd-params", model_json({"d_model": 10**6, "d_ff": 4 * 10**6, "n_layers": 10**5, "n_heads": 8}),
     "parameters"),
    ("model-binary", model_json(BINARY), "UTF-8"),
    ("model-empty", model_json(""), "not valid JSON"),
    ("model-truncated-json", model_json('{"arch": "causal", "d_mod'), "not valid JSON"),
    ("model-unknown-key", model_json({"n_layerz": 3}), "n_layerz"),
    ("model-wrong-type", model_json({"d_model": "wide"}), "d_model"),
    ("model-negative-layers", model_json({"n_layers": -2}), "n_layers"),
    ("model-nan-eps", model_json('{"norm_eps": NaN}'), "norm_eps"),
    ("model-inf-theta", model_json('{"rope_theta": Infinity}'), "rope_theta"),
    ("model-bad-arch", model_json({"arch": "diffusion"}), "arch"),
    ("model-bad-preset-info", plain("info", "no-such-preset"), "neither a preset"),
    ("model-bad-preset-params", plain("params", "no-such-preset", "--out", ""), "neither a preset"),
    # checkpoints
    ("ckpt-truncated-info", checkpoint(truncate), "truncated"),
    ("ckpt-truncated-generate", checkpoint(truncate, "generate"), "truncated"),
    ("ckpt-empty-weights", checkpoint(lambda c: (c / "model.safetensors").write_bytes(b"")), "truncated"),
    ("ckpt-wrong-shapes", checkpoint(edit_config(d_ff=128)), "shape"),
    ("ckpt-foreign-safetensors", checkpoint(foreign), "none of the model's tensors"),
    ("ckpt-pickle-info", checkpoint(pickled), "not a safetensors file"),
    ("ckpt-pickle-generate", checkpoint(pickled, "generate"), "not a safetensors file"),
    ("ckpt-no-config", checkpoint(lambda c: (c / "config.json").unlink()), "config.json"),
    ("ckpt-no-weights", checkpoint(lambda c: (c / "model.safetensors").unlink()), "model.safetensors"),
    ("ckpt-config-invalid", checkpoint(lambda c: (c / "config.json").write_text("{nope")), "not valid JSON"),
    ("ckpt-config-binary", checkpoint(lambda c: (c / "config.json").write_bytes(BINARY)), "UTF-8"),
    ("ckpt-config-unknown-key", checkpoint(edit_config(n_layerz=3)), "n_layerz"),
    ("ckpt-d-model-1e12", checkpoint(edit_config(d_model=10**12)), "d_model"),
    ("ckpt-too-big-info", checkpoint(lambda c: (c / "config.json").write_text(json.dumps(PALM_540B))), "memory"),
    ("ckpt-too-big-generate", checkpoint(lambda c: (c / "config.json").write_text(json.dumps(PALM_540B)),
                                         "generate"), "memory"),
    ("ckpt-hugging-face", checkpoint(lambda c: (c / "config.json").write_text('{"model_type": "llama"}')),
     "Hugging Face"),
    ("ckpt-missing-generate", plain("generate", "--model", "{tmp}/nope", "--prompt", "hi"), "nope"),
    # tokenizer files
    ("tok-missing-generate", checkpoint(lambda c: (c / "tokenizer.json").unlink(), "generate"), "tokenizer"),
    ("tok-truncated-generate", checkpoint(lambda c: (c / "tokenizer.json").write_text('{"version": "1.0", "tr'),
                                          "generate"), "tokenizer.json"),
    ("tok-missing-encode", plain("tokenizer", "encode", "hi", "--tokenizer", "{tmp}/nope.json"), "tokenizer.json"),
    ("tok-truncated-encode", with_files({"t.json": '{"version": "1.0", "trunc'}, "tokenizer", "encode", "hi",
                                        "--tokenizer", "{tmp}/t.json"), "tokenizer.json"),
    ("tok-wrong-schema", with_files({"t.json": '{"hello": [1, 2, 3]}'}, "tokenizer", "encode", "hi",
                                    "--tokenizer", "{tmp}/t.json"), "tokenizer.json"),
    ("tok-binary-prepare", with_files({"t.json": BINARY, "c.txt": "some text\n"}, "data", "prepare", "--input",
                                      "{tmp}/c.txt", "--out", "{tmp}/p", "--tokenizer", "{tmp}/t.json"),
     "tokenizer.json"),
    # corpora
    ("corpus-empty-tokenizer", corpus("tokenizer", lambda t: write(t / "c.txt", "")), "empty"),
    ("corpus-empty-prepare", corpus("prepare", lambda t: write(t / "c.txt", "\n\n  \n")), "empty"),
    ("corpus-binary", corpus("tokenizer", lambda t: write(t / "c.txt", BINARY)), "binary"),
    ("corpus-binary-prepare", corpus("prepare", lambda t: write(t / "c.bin", BINARY)), "binary"),
    ("corpus-invalid-utf8", corpus("tokenizer", lambda t: write(t / "c.txt", LATIN1)), "UTF-8"),
    ("corpus-invalid-utf8-jsonl", corpus("prepare", lambda t: write(t / "c.jsonl", b'{"text": "' + LATIN1[:-1]
                                                                     + b'"}\n')), "UTF-8"),
    ("corpus-huge-line-100mb", corpus("prepare", huge_line(100 << 20)), "corpus.txt:2"),
    ("corpus-huge-line-tokenizer", corpus("tokenizer", huge_line(5 << 20)), "corpus.txt:2"),
    ("corpus-huge-line-jsonl", corpus("prepare", huge_line(5 << 20, ".jsonl")), "corpus.jsonl:2"),
    ("corpus-bad-json-line", corpus("prepare", lambda t: write(t / "c.jsonl", '{"text": "ok"}\n{oops\n')),
     "c.jsonl:2"),
    ("corpus-symlink-loop", corpus("tokenizer", symlink_loop), "a"),
    ("corpus-folder-without-text", corpus("prepare", empty_folder), "no files"),
    ("corpus-missing", corpus("prepare", lambda t: t / "nope.txt"), "no such corpus"),
    # prompts
    ("prompt-file-empty", prompts(b""), "no prompt"),
    ("prompt-file-blank-lines", prompts(b"\n   \n\n"), "no prompt"),
    ("prompt-file-binary", prompts(BINARY), "UTF-8"),
    ("prompt-file-missing", prompts(None), "no such file"),
    # every command's paths and numbers
    ("params-tokens-nan", plain("params", "tiny-causal", "--tokens", "nan", "--out", ""), "--tokens"),
    ("params-tokens-inf", plain("params", "tiny-causal", "--tokens", "inf", "--out", ""), "--tokens"),
    ("params-tokens-negative", plain("params", "tiny-causal", "--tokens", "-5", "--out", ""), "--tokens"),
    ("params-peak-flops-inf", plain("params", "tiny-causal", "--peak-flops", "inf", "--out", ""), "--peak-flops"),
    ("params-mfu-0", plain("params", "tiny-causal", "--mfu", "0", "--out", ""), "mfu"),
    ("params-out-is-a-file", plain("params", "tiny-causal", "--out", "file:{tmp}/report.json"), "existing file"),
    ("params-presets-out-is-a-file", plain("params", "presets", "--out", "file:{tmp}/p.json"), "existing file"),
    ("params-missing-dir", plain("params", "{tmp}"), "config.json"),
    ("info-missing", plain("info", "{tmp}/nope"), "nope"),
    ("masks-source-len-0", plain("masks", "--source-len", "0", "--out", ""), "source-len"),
    ("masks-out-under-a-file", plain("masks", "--out", "file:{tmp}/f", "--out", "{tmp}/f/m.png"), "is a file"),
    ("tour-out-under-a-file", plain("tour", "--out", "file:{tmp}/f", "--out", "{tmp}/f/tour"), "is a file"),
    ("tour-seed-2**70", plain("tour", "--seed", str(2**70), "--out", "{tmp}/t"), "seed"),
    ("rank-seed-negative", plain("rank", "--seed", "-1", "--out", ""), "seed"),
    ("rank-seq-len-0", plain("rank", "--seq-len", "0", "--out", ""), "--seq-len"),
    ("rank-bad-preset", plain("rank", "--preset", "gpt-17", "--out", ""), "gpt-17"),
    ("rank-missing-model", plain("rank", "--model", "{tmp}/nope", "--out", ""), "nope"),
    ("rank-preset-too-big", plain("rank", "--preset", "palm-540b", "--out", ""), "memory"),
    ("objectives-bad-name", plain("objectives", "show", "some text", "--objective", "nope"), "nope"),
    ("objectives-seed-negative", plain("objectives", "show", "some text", "--seed", "-3"), "seed"),
    ("emergence-n-max-inf", plain("emergence", "analytic", "--n-max", "inf", "--out", ""), "--n-max"),
    ("emergence-sweep-steps-0", plain("emergence", "sweep", "--steps", "0", "--out", ""), "steps"),
    ("emergence-sweep-seed-negative", plain("emergence", "sweep", "--seed", "-1", "--out", ""), "seed"),
    ("tokenizer-out-exists", with_files({"tok/tokenizer.json": "{}"}, "tokenizer", "train", "--out", "{tmp}/tok"),
     "already exists"),
    ("tokenizer-vocab-too-small", plain("tokenizer", "train", "--vocab-size", "10", "--out", "{tmp}/tok"),
     "vocab-size"),
    ("data-prepare-out-not-empty", with_files({"c.txt": "text\n", "p/keep.txt": "mine"}, "data", "prepare",
                                              "--input", "{tmp}/c.txt", "--out", "{tmp}/p"), "p"),
    ("data-info-not-prepared", plain("data", "info", "{tmp}"), "index.json"),
    ("convert-from-missing", plain("convert", "--from-hf", "{tmp}/nope", "--out", "{tmp}/o"), "nope"),
    ("convert-out-not-empty", with_files({"o/keep.txt": "mine"}, "convert", "--to-hf", "{model}", "--out",
                                         "{tmp}/o"), "o"),
    ("report-missing-results", plain("report", "{tmp}/results.json"), "results.json"),
    ("compare-bad-study", plain("compare", "--study", "no-such-study", "--out", "{tmp}/c"), "no-such-study"),
    ("finetune-missing-model", plain("finetune", "--model", "{tmp}/nope", "--data", "{tmp}/d.jsonl"), "nope"),
    ("finetune-steps-0", with_files({"d.jsonl": '{"input": "a", "output": "b"}\n'}, "finetune", "--model",
                                    "{model}", "--data", "{tmp}/d.jsonl", "--steps", "0", "--out-dir", "{tmp}/r"),
     "steps"),
    ("finetune-seed-negative", with_files({"d.jsonl": '{"input": "a", "output": "b"}\n'}, "finetune", "--model",
                                          "{model}", "--data", "{tmp}/d.jsonl", "--seed", "-1", "--out-dir",
                                          "{tmp}/r"), "seed"),
    ("generate-batch-size-0", plain("generate", "--model", "{model}", "--prompt", "hi", "--batch-size", "0"),
     "batch-size"),
    ("serve-missing-model", plain("serve", "--model", "{tmp}/nope"), "nope"),
    ("unknown-command-option", plain("params", "tiny-causal", "--no-such-option"), "no-such-option"),
]


@pytest.mark.parametrize(("build", "needle"), [pytest.param(b, n, id=i) for i, b, n in CASES])
def test_hostile_input_is_one_line_and_changes_nothing(build: Build, needle: str, model_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    argv = build(work, model_dir)
    monkeypatch.chdir(work)  # default output folders (out/..., runs/...) would land here
    before = tree_digest(work)
    model_before = tree_digest(model_dir)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert needle.lower() in err.lower(), err
    assert tree_digest(work) == before, "inputs changed or outputs written"
    assert tree_digest(model_dir) == model_before
    assert not (work / MARKER).exists(), "a pickle was unpickled"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("argv", [["masks", "--out", "{ro}/m.png"], ["tour", "--out", "{ro}/t"],
                                  ["tokenizer", "train", "--out", "{ro}/tok"]])
def test_unwritable_output_folder(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main([a.replace("{ro}", str(ro)) for a in argv]) == 2
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not writable" in err and not list(ro.iterdir())


@pytest.mark.parametrize("argv", [
    ["params", "{tmp}/config.json", "--out", ""],
    ["train", "--config", "{tmp}/config.json"],
    ["info", "{tmp}/config.json"],
])
def test_binary_config_in_a_subprocess(argv: list[str], tmp_path: Path) -> None:
    """As a user runs it: a separate process, its real stderr and exit status."""
    write(tmp_path / "config.json", BINARY)
    res = subprocess.run([sys.executable, "-m", "unimask", *[a.replace("{tmp}", str(tmp_path)) for a in argv]],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "config.json" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_published_presets_still_count(capsys: pytest.CaptureFixture[str]) -> None:
    """Counting does not allocate: a 540B preset is reported, and refused only where it would be built."""
    assert main(["params", "palm-540b", "--out", ""]) == 0
    assert main(["info", "gpt3-175b"]) == 0
    out = capsys.readouterr().out
    assert "540" in out and "12288" in out
