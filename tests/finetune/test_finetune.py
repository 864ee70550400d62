"""Fine-tuning: labels on exactly the outputs for every family and chat turn, the chat templates, a run
that learns, LoRA through peft (only adapters change, merge identity, peft loads the adapter, exact
resume), the T5Gemma-style adaptation identity, and one clear error for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unimask import build_model, load_model, preset
from unimask.cli import main
from unimask.config import ModelConfig
from unimask.data.tokenizer import default_tokenizer
from unimask.errors import ConfigError, DataError
from unimask.finetune.adapt import decoder_to_encoder_decoder
from unimask.finetune.data import (
    Layout,
    Record,
    chat_turns,
    items_of,
    parse_record,
    plain_renderer,
    read_records,
)
from unimask.finetune.lora import LoraSpec, apply_lora, linear_names, merged_state, trainable_parameters
from unimask.objectives.base import IGNORE
from unimask.serving.chat import render_chat

TOK = default_tokenizer()
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"},
        {"role": "assistant", "content": "hi"}, {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "hi again"}]


def layout(arch: str, targets_only: bool = True) -> Layout:
    return Layout(arch, TOK.bos_id, TOK.eos_id, TOK.pad_id, targets_only)


def _loss_tokens(item: dict[str, np.ndarray]) -> list[int]:
    return [int(t) for t in item["labels"] if t != IGNORE]


def test_pair_labels_for_every_family() -> None:
    rec = Record("x", source="What is two plus two?", target=" four")
    src, out = TOK.encode(rec.source), TOK.encode(rec.target) + [TOK.eos_id]
    (causal,) = items_of(rec, TOK, plain_renderer, layout("causal"))
    assert list(causal["input_ids"]) == [TOK.bos_id, *src, *out][:-1]
    assert _loss_tokens(causal) == out  # the output and EOS, nothing of the input
    assert all(t == IGNORE for t in causal["labels"][: len(src)])
    (prefix,) = items_of(rec, TOK, plain_renderer, layout("prefix"))
    assert _loss_tokens(prefix) == out and list(prefix["is_prefix"]).count(True) == len(src)
    assert not prefix["is_prefix"][len(src):].any()
    (encdec,) = items_of(rec, TOK, plain_renderer, layout("encoder_decoder"))
    assert list(encdec["input_ids"]) == [*src, TOK.eos_id]
    assert list(encdec["labels"]) == out and list(encdec["decoder_input_ids"]) == [TOK.pad_id, *out[:-1]]
    (everything,) = items_of(rec, TOK, plain_renderer, layout("causal", targets_only=False))
    assert _loss_tokens(everything) == [*src, *out]  # every token but the first (BOS)


def test_chat_loss_is_on_every_assistant_turn_only() -> None:
    rec = Record("x", messages=CHAT)
    replies = [TOK.encode(" hi") + [TOK.eos_id], TOK.encode(" hi again") + [TOK.eos_id]]
    (causal,) = items_of(rec, TOK, plain_renderer, layout("causal"))
    assert _loss_tokens(causal) == replies[0] + replies[1]
    text = TOK.decode([int(t) for t in causal["input_ids"]], skip_special=True)
    assert text.startswith("System: Be brief.\n\nUser: Say hi\n\nAssistant: hi")
    for arch in ("prefix", "encoder_decoder"):
        items = items_of(rec, TOK, plain_renderer, layout(arch))
        assert [_loss_tokens(it) for it in items] == replies  # one example per assistant turn
        second = items[1]
        source = second["input_ids"][second["is_prefix"]] if arch == "prefix" else second["input_ids"][:-1]
        assert TOK.decode([int(t) for t in source]).endswith("User: Again\n\nAssistant:")


def test_the_chat_templates_render_as_documented(tmp_path: Path) -> None:
    assert plain_renderer(CHAT[:2], True) == render_chat(CHAT[:2])  # the server's template
    turns = chat_turns(CHAT, plain_renderer)
    assert [reply for _, reply in turns] == [" hi", " hi again"]
    assert turns[1][0] == render_chat(CHAT[:4])
    from unimask.finetune.data import hf_renderer

    TOK.save(tmp_path)
    template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    render = hf_renderer(tmp_path)
    assert render is not None
    turns = chat_turns(CHAT, render)
    assert turns[0] == ("<|system|>Be brief.\n<|user|>Say hi\n<|assistant|>", "hi\n")
    assert hf_renderer(tmp_path / "nothing-here") is None


@pytest.mark.parametrize("line, needle", [
    ("{not json", "not JSON"),
    ('{"input": "a"}', "no field 'output'"),
    ('{"input": "a", "output": "  "}', "is empty"),
    ('{"input": 3, "output": "b"}', "not a string"),
    ('{"messages": [{"role": "bot", "content": "x"}]}', "role 'bot'"),
    ('{"messages": [{"role": "user", "content": "x"}]}', "assistant turn"),
    ('[1, 2]', "JSON object"),
])
def test_bad_records_name_file_and_line(tmp_path: Path, line: str, needle: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"input": "a", "output": "b"}\n' + line + "\n")
    with pytest.raises(DataError, match=needle) as err:
        read_records(path)
    assert f"{path}:2" in str(err.value)
    from unimask.finetune.data import ReadReport

    report = ReadReport()
    assert len(read_records(path, skip_bad=True, report=report)) == 1 and len(report.skipped) == 1


def test_parse_record_fields() -> None:
    rec = parse_record({"q": "x", "a": "y"}, "f:1", "q", "a", "messages")
    assert (rec.source, rec.target) == ("x", "y")
    with pytest.raises(DataError, match="--input-field"):
        parse_record({"q": "x"}, "f:1", "input", "output", "messages")


def _pairs(path: Path, n: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    letters = "abcdefghij"
    pairs = []
    for _ in range(n):  # "echo: x y =" -> " y": the answer is the last letter before "="
        x, y = (letters[int(i)] for i in rng.integers(0, len(letters), size=2))
        pairs.append((f"echo: {x} {y} =", f" {y}"))
    path.write_text("".join(json.dumps({"input": a, "output": b}) + "\n" for a, b in pairs))
    return pairs


def _accuracy(model_dir: Path, pairs: list[tuple[str, str]]) -> float:
    from unimask.evaluation import greedy_answers, reading_format

    model = load_model(model_dir)
    fmt = reading_format("causal_lm", "causal", TOK)
    answers = greedy_answers(model, fmt, TOK, [TOK.encode(a) for a, _ in pairs], max_new_tokens=3)
    return float(np.mean([a == b.strip() for a, (_, b) in zip(answers, pairs)]))


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny causal model, untrained, with its tokenizer (a unimask model directory)."""
    folder = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    config = preset("tiny-causal", vocab_size=TOK.vocab_size, pad_token_id=TOK.pad_id, bos_token_id=TOK.bos_id,
                    eos_token_id=TOK.eos_id)
    model = build_model(config)
    model.save(folder)
    TOK.save(folder)
    return folder


def test_a_tiny_finetune_learns(base_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    _pairs(data, 400, seed=0)
    test = _pairs(tmp_path / "test.jsonl", 60, seed=1)
    before = _accuracy(base_model, test)
    assert main(["finetune", "--model", str(base_model), "--data", str(data), "--steps", "200", "--lr", "5e-3",
                 "--seq-len", "64", "--out-dir", str(tmp_path / "run"), "--no-progress"]) == 0
    after = _accuracy(tmp_path / "run" / "checkpoint-200" / "model", test)
    assert after > before + 0.3 and after >= 0.5, (before, after)


def test_lora_trains_adapters_only_merges_exactly_and_loads_in_peft(base_model: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    data = tmp_path / "train.jsonl"
    _pairs(data, 200, seed=0)
    out = tmp_path / "lora"
    assert main(["finetune", "--model", str(base_model), "--data", str(data), "--steps", "12", "--lora",
                 "--lora-r", "4", "--lr", "1e-2", "--seq-len", "64", "--out-dir", str(out), "--no-progress"]) == 0
    ckpt = out / "checkpoint-12"
    base = load_model(base_model)
    merged = load_model(ckpt / "model")
    changed = {k for k, v in merged.state_dict().items() if not torch.equal(v, base.state_dict()[k])}
    assert changed and all(k.split(".")[-2] in ("q_proj", "k_proj", "v_proj", "o_proj") for k in changed)
    ids = torch.tensor([TOK.encode("echo: c = c\necho: d =")])
    with torch.no_grad():
        peft_model = PeftModel.from_pretrained(load_model(base_model), str(ckpt / "adapter")).eval()
        diff = (peft_model(ids).logits - merged(ids).logits).abs().max().item()
        assert not torch.equal(base(ids).logits, merged(ids).logits)
    assert diff <= 1e-5
    assert json.loads((ckpt / "adapter" / "adapter_config.json").read_text())["r"] == 4


def test_lora_merge_identity_and_trainable_counts() -> None:
    torch.manual_seed(0)
    model = build_model(preset("tiny-encdec"))
    wrapped = apply_lora(model, LoraSpec(r=2, alpha=4, target_modules=("q_proj", "up_proj")))
    for name, p in wrapped.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    trainable, total = trainable_parameters(wrapped)
    assert 0 < trainable < 0.1 * total
    assert all("lora_" in n for n, p in wrapped.named_parameters() if p.requires_grad)
    plain = build_model(preset("tiny-encdec"))
    plain.load_state_dict(merged_state(wrapped))
    src, dec = torch.tensor([[5, 6, 7, 8]]), torch.tensor([[0, 9, 10]])
    with torch.no_grad():
        diff = (wrapped(src, decoder_input_ids=dec).logits - plain(src, decoder_input_ids=dec).logits).abs().max()
    assert diff <= 1e-5


def test_lora_resume_is_exact(base_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    _pairs(data, 200, seed=0)
    common = ["finetune", "--model", str(base_model), "--data", str(data), "--lora", "--seq-len", "64",
              "--no-progress", "--set", "save_every=4"]
    assert main([*common, "--steps", "8", "--out-dir", str(tmp_path / "a")]) == 0
    import shutil

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoint-8")  # as if the run had been killed after step 4
    assert main([*common, "--steps", "8", "--out-dir", str(tmp_path / "b"), "--resume"]) == 0
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "a" / "checkpoint-8" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint-8" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("arch", ["causal", "prefix"])
def test_decoder_to_encoder_decoder_identity(arch: str) -> None:
    """With every cross-attention output zeroed, the adapted decoder IS the source model."""
    torch.manual_seed(0)
    source_config = preset("tiny-causal", arch=arch, n_layers=3)
    source = build_model(source_config).eval()
    target_config = source_config.replace(arch="encoder_decoder", n_encoder_layers=3)
    state = decoder_to_encoder_decoder(source.state_dict(), source_config, target_config)
    adapted = build_model(target_config).eval()
    adapted.load_state_dict(state)
    src_layer = source.decoder.layers[1]
    assert torch.equal(adapted.encoder.layers[1].mlp.down_proj.weight, src_layer.mlp.down_proj.weight)
    assert torch.equal(adapted.decoder.layers[1].cross_attn.k_proj.weight, src_layer.attn.k_proj.weight)
    assert torch.equal(adapted.decoder.layers[1].cross_norm.weight, src_layer.attn_norm.weight)
    for layer in adapted.decoder.layers:
        torch.nn.init.zeros_(layer.cross_attn.o_proj.weight)
    ids = torch.tensor([[3, 17, 9, 42, 5, 8]])
    with torch.no_grad():
        want = source(ids).logits  # causal (a prefix decoder without a prefix is causal)
        got = adapted(torch.tensor([[11, 12]]), decoder_input_ids=ids).logits
    assert (got - want).abs().max().item() <= 1e-5
    with torch.no_grad():  # and the cross-attention is live once its output projection is restored
        adapted.load_state_dict(state)
        assert (adapted(torch.tensor([[11, 12]]), decoder_input_ids=ids).logits - want).abs().max() > 1e-4


def test_adaptation_refuses_other_widths() -> None:
    source = preset("tiny-causal")
    with pytest.raises(ConfigError, match="d_model"):
        decoder_to_encoder_decoder({}, source, source.replace(arch="encoder_decoder", d_model=128, n_heads=4))
    with pytest.raises(ConfigError, match="at most"):
        decoder_to_encoder_decoder({}, source, source.replace(arch="encoder_decoder", n_layers=5))


def test_finetune_adapts_a_causal_model_to_an_encoder_decoder(base_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    _pairs(data, 100, seed=0)
    assert main(["finetune", "--model", str(base_model), "--data", str(data), "--arch", "encoder_decoder",
                 "--steps", "4", "--seq-len", "64", "--out-dir", str(tmp_path / "t5g"), "--no-progress"]) == 0
    model = load_model(tmp_path / "t5g" / "checkpoint-4" / "model")
    assert model.config.arch == "encoder_decoder" and model.config.encoder_layers == 2


def _one_line(capsys: pytest.CaptureFixture, needle: str) -> None:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err, err


def test_cli_bad_input_is_one_line_and_writes_nothing(base_model: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "train.jsonl"
    _pairs(data, 50, seed=0)
    out = tmp_path / "never"
    assert main(["finetune", "--model", str(base_model), "--data", str(data), "--lora", "--lora-targets",
                 "qkv", "--out-dir", str(out)]) == 2
    _one_line(capsys, "match(es) no linear layer")
    assert main(["finetune", "--model", str(tmp_path / "nope"), "--data", str(data), "--out-dir", str(out)]) == 2
    _one_line(capsys, "no such directory")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "output": "b"}\n{oops\n' + data.read_text())
    assert main(["finetune", "--model", str(base_model), "--data", str(bad), "--out-dir", str(out)]) == 2
    _one_line(capsys, f"{bad}:2")
    assert not out.exists() or not any(out.iterdir())
    assert main(["finetune", "--model", str(base_model), "--data", str(bad), "--skip-bad", "--steps", "2",
                 "--seq-len", "64", "--out-dir", str(tmp_path / "skipped"), "--no-progress"]) == 0
    assert "lm_head" not in linear_names(build_model(ModelConfig()))


def test_finetune_a_hugging_face_checkpoint_with_its_chat_template(tmp_path: Path) -> None:
    """A transformers checkpoint goes in through interop; its tokenizer's chat_template renders the chats."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_dir = tmp_path / "hf"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=TOK.vocab_size, hidden_size=32, intermediate_size=48,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                 max_position_embeddings=128, bos_token_id=TOK.bos_id, eos_token_id=TOK.eos_id,
                                 pad_token_id=TOK.pad_id)).save_pretrained(hf_dir)
    TOK.save(hf_dir)
    template = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}[assistant]{% endif %}")
    (hf_dir / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"ping {i}"},
                                                      {"role": "assistant", "content": f"pong {i}"}]}) + "\n"
                             for i in range(60)))
    out = tmp_path / "run"
    assert main(["finetune", "--model", str(hf_dir), "--data", str(chats), "--chat-template", "hf", "--steps", "3",
                 "--seq-len", "64", "--out-dir", str(out), "--no-progress"]) == 0
    model = load_model(out / "checkpoint-3" / "model")
    base = Path(yaml_value(out / "config.yaml", "init_from"))
    assert (base / "config.json").is_file() and (base / "tokenizer_config.json").is_file()
    assert (out / "checkpoint-3" / "model" / "tokenizer.json").is_file()
    assert model.config.arch == "causal" and model.config.n_layers == 2
    from unimask.data.pipeline import build_batches

    batch = next(iter(build_batches({"path": str(chats), "tokenizer": str(base), "seq_len": 64,
                                     "batch_size": 1, "pack": False, "validation_fraction": 0.0},
                                    {"name": "supervised", "chat_template": "hf"}, "causal")))
    text = TOK.decode([int(t) for t in batch["input_ids"][0]], skip_special=True)
    assert text.startswith("[user] ping") and "[assistant]" in text  # the checkpoint's own template
    target = TOK.decode([int(t) for t in batch["labels"][0] if t != IGNORE], skip_special=True)
    assert target.startswith(" pong") and "[user]" not in target and "[assistant]" not in target


def yaml_value(path: Path, key: str) -> str:
    import yaml

    return yaml.safe_load(path.read_text())[key]


def test_parquet_records(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "qa.parquet"
    pq.write_table(pa.table({"question": ["a?", "b?"], "answer": [" x", " y"]}), path)
    recs = read_records(path, input_field="question", output_field="answer")
    assert [(r.source, r.target) for r in recs] == [("a?", " x"), ("b?", " y")]
    with pytest.raises(DataError, match="no field 'input'"):
        read_records(path)
