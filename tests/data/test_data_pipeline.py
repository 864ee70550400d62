"""Prepared shards and the batch pipeline: exact resume, rank splits, validation, packing, errors."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unimask.data.pipeline import DataConfig, build_batches
from unimask.data.shards import TokenStore, prepare
from unimask.data.tokenizer import default_tokenizer
from unimask.errors import ConfigError, DataError

WORDS = ["the", "a", "function", "returns", "value", "of", "an", "object", "list", "string", "file", "name", "is",
         "to", "and", "in", "for", "with", "default"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for i in range(60):
        n = int(rng.integers(3, 30))
        words = " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), size=n))
        (root / f"doc{i:03d}.txt").write_text(f"Document {i}. {words}.", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def prepared(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prep") / "data"
    prepare(corpus, out, default_tokenizer(), progress=False)
    return out


def test_prepare_writes_memory_mapped_shards(corpus, tmp_path):
    tok = default_tokenizer()
    out = tmp_path / "small"
    result = prepare(corpus, out, tok, progress=False, shard_tokens=500)
    assert result.n_docs == 60 and result.n_shards > 1
    store = TokenStore(out)
    index = json.loads((out / "index.json").read_text())
    assert index["dtype"] == "uint16" and index["n_tokens"] == store.n_tokens == result.n_tokens
    docs = sorted(corpus.iterdir())
    for i in (0, 17, 59):
        assert store.tokens(i).tolist() == tok.encode(docs[i].read_text())
    assert store.tokenizer().fingerprint() == tok.fingerprint()
    # a non-empty target is never overwritten without asking, and survives a failed prepare
    with pytest.raises(DataError, match="not empty"):
        prepare(corpus, out, tok, progress=False)
    with pytest.raises(DataError, match="empty"):
        (tmp_path / "blank").mkdir()
        (tmp_path / "blank" / "a.txt").write_text("  ")
        prepare(tmp_path / "blank", out, tok, progress=False, overwrite=True)
    assert TokenStore(out).n_tokens == result.n_tokens
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temporary folders cleaned up
    (out / index["shards"][0]["file"]).write_bytes(b"\x00\x01")
    with pytest.raises(DataError, match="truncated"):
        TokenStore(out)


def _take(it, n):
    return list(itertools.islice(iter(it), n))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("objective,arch", [("span_corruption", "causal"), ("glm_blank", "prefix"),
                                            ("ul2", "encoder_decoder"), ("bart_infilling", "prefix")])
def test_resume_gives_identical_next_batches(prepared, objective, arch):
    cfg = DataConfig(path=str(prepared), seq_len=64, batch_size=6)
    it = build_batches(cfg, objective, arch, seed=5)
    stream = iter(it)
    first = [next(stream) for _ in range(4)]
    state = json.loads(json.dumps(it.state_dict()))  # JSON-able
    later = [next(stream) for _ in range(12)]  # crosses epoch boundaries on this small corpus
    assert it.epoch >= 1
    again = build_batches(cfg, objective, arch, seed=5)
    again.load_state_dict(state)
    resumed = _take(again, 12)
    assert all(_same(a, b) for a, b in zip(later, resumed))
    fresh = _take(build_batches(cfg, objective, arch, seed=5), 4)
    assert all(_same(a, b) for a, b in zip(first, fresh))  # same seed, same batches
    other = _take(build_batches(cfg, objective, arch, seed=6), 1)[0]
    assert not _same(first[0], other)


def test_loss_on_all_tokens_reaches_the_causal_rows(prepared):
    """``loss_on_targets_only: false``: every real token of a causal row but the first of its example is a
    label, and each label is the next input token of the same example (prefix_lm: one text, split anywhere)."""
    cfg = DataConfig(path=str(prepared), seq_len=48, batch_size=4, loss_on_targets_only=False)
    batch = _take(build_batches(cfg, "prefix_lm", "causal"), 1)[0]
    ids, labels, seg = batch["input_ids"], batch["labels"], batch["segment_ids"]
    same_next = (seg[:, :-1] == seg[:, 1:]) & (seg[:, :-1] > 0)  # (B, L - 1): position t has a successor
    assert torch.equal(labels[:, :-1][same_next], ids[:, 1:][same_next])
    last = (seg > 0) & ~torch.cat([same_next, torch.zeros_like(seg[:, :1], dtype=torch.bool)], 1)
    assert (labels[last] == 2).all()  # each example's last position predicts EOS
    assert ((labels != -100) == (seg > 0)).all()
    only = _take(build_batches(cfg.replace(loss_on_targets_only=True), "prefix_lm", "causal"), 1)[0]
    assert torch.equal(only["input_ids"], ids) and (only["labels"] != -100).sum() < (labels != -100).sum()


@pytest.mark.parametrize(("arch", "why"), [("prefix", "leak"), ("encoder_decoder", "never decodes")])
def test_loss_on_all_tokens_is_refused_for_prefix_and_encoder_decoder(prepared, arch, why):
    cfg = DataConfig(path=str(prepared), seq_len=48, batch_size=4, loss_on_targets_only=False)
    with pytest.raises(ConfigError, match=f"loss_on_targets_only: false is for arch 'causal' only.*{why}") as info:
        build_batches(cfg, "prefix_lm", arch)
    assert "\n" not in str(info.value)


def test_batches_follow_the_contract(prepared):
    cfg = DataConfig(path=str(prepared), seq_len=48, batch_size=4)
    batch = _take(build_batches(cfg, "span_corruption", "prefix"), 1)[0]
    assert set(batch) == {"input_ids", "labels", "segment_ids", "position_ids", "is_prefix"}
    assert all(v.shape == (4, 48) for v in batch.values())
    assert batch["is_prefix"].dtype == torch.bool and batch["input_ids"].dtype == torch.long
    seg = batch["segment_ids"]
    assert seg.max() > 1  # packed
    pad = seg == 0
    assert (batch["labels"][pad] == -100).all() and not batch["is_prefix"][pad].any()
    # positions restart at every example
    starts = torch.ones_like(seg, dtype=torch.bool)
    starts[:, 1:] = seg[:, 1:] != seg[:, :-1]
    assert (batch["position_ids"][starts & ~pad] == 0).all()
    unpacked = _take(build_batches(cfg.replace(pack=False), "span_corruption", "prefix"), 1)[0]
    assert unpacked["segment_ids"].max() == 1


def test_ranks_get_disjoint_pieces_covering_the_epoch(prepared):
    cfg = DataConfig(path=str(prepared), seq_len=64, batch_size=2)
    its = [build_batches(cfg, "causal_lm", "causal", seed=3, rank=r, world_size=3) for r in range(3)]
    orders = [set(it._order(0).tolist()) for it in its]
    assert all(not (a & b) for a, b in itertools.combinations(orders, 2))
    assert set().union(*orders) == set(range(len(its[0].p_doc)))
    batches = [_take(it, 1)[0]["input_ids"] for it in its]
    assert not torch.equal(batches[0], batches[1])
    # each rank's first batch holds the text of its own first pieces
    first_piece = its[1]._order(0)[0]
    ids = its[1].store.tokens(int(its[1].p_doc[first_piece]), int(its[1].p_start[first_piece]),
                              int(its[1].p_len[first_piece]))
    assert batches[1][0, 1:1 + len(ids)].tolist() == ids.tolist()


def test_validation_is_finite_fixed_and_held_out(prepared):
    cfg = DataConfig(path=str(prepared), seq_len=64, batch_size=2, validation_fraction=0.2)
    val = build_batches(cfg, "prefix_lm", "causal", split="validation")
    one, two = list(val), list(val)
    assert len(one) == len(two) == len(val) > 0
    assert all(_same(a, b) for a, b in zip(one, two))
    train = build_batches(cfg, "prefix_lm", "causal", split="train")
    val_pieces = {(int(d), int(s)) for d, s in zip(val.p_doc, val.p_start)}
    train_pieces = {(int(d), int(s)) for d, s in zip(train.p_doc, train.p_start)}
    assert val_pieces and not val_pieces & train_pieces
    assert {d for d, _ in val_pieces} | {d for d, _ in train_pieces} == set(range(60))


def test_bad_settings_are_clear_errors(prepared, tmp_path):
    with pytest.raises(ConfigError, match="seq_lenn"):
        DataConfig.from_dict({"seq_lenn": 3})
    with pytest.raises(ConfigError, match="batch_size"):
        DataConfig(batch_size=0)
    with pytest.raises(DataError, match="too short"):
        build_batches(DataConfig(path=str(prepared), seq_len=3), "glm_blank", "causal")
    with pytest.raises(DataError, match="no such corpus"):
        build_batches(DataConfig(path=str(tmp_path / "missing")), "causal_lm", "causal")
    with pytest.raises(ConfigError, match="unknown arch"):
        build_batches(DataConfig(path=str(prepared)), "causal_lm", "decoder")
    it = build_batches(DataConfig(path=str(prepared)), "causal_lm", "causal")
    with pytest.raises(DataError, match="seed"):
        it.load_state_dict({**it.state_dict(), "seed": 99})
    (tmp_path / "one.txt").write_text("x")  # one token: shorter than span corruption needs
    with pytest.raises(DataError, match="long enough"):
        build_batches(DataConfig(path=str(tmp_path / "one.txt")), "span_corruption", "causal")
    (tmp_path / "two.txt").write_text("the function returns the value")
    with pytest.raises(DataError, match="fewer than the 4 ranks"):
        build_batches(DataConfig(path=str(tmp_path / "two.txt")), "span_corruption", "causal", rank=3, world_size=4)


def test_overwrite_replaces_prepared_data_only(corpus, tmp_path):
    """--overwrite replaces earlier prepared data, never a folder of other files nor the corpus itself."""
    tok = default_tokenizer()
    own = tmp_path / "own"
    own.mkdir()
    (own / "notes.txt").write_text("precious notes")
    with pytest.raises(DataError, match="not prepared data"):
        prepare(corpus, own, tok, progress=False, overwrite=True)
    assert [p.name for p in own.iterdir()] == ["notes.txt"]
    with pytest.raises(DataError, match="holds the corpus"):
        prepare(own, own, tok, progress=False, overwrite=True)
    with pytest.raises(DataError, match="holds the corpus"):
        prepare(own / "notes.txt", own, tok, progress=False, overwrite=True)
    assert (own / "notes.txt").read_text() == "precious notes"
    out = tmp_path / "prep"
    first = prepare(own, out, tok, progress=False)
    second = prepare(corpus, out, tok, progress=False, overwrite=True)  # earlier prepared data: replaced
    assert TokenStore(out).n_tokens == second.n_tokens != first.n_tokens
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("damage", ["no offsets", "pickled offsets", "index without dtype", "shard without file"])
def test_damaged_prepared_data_is_a_clear_error(prepared, tmp_path, damage):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(prepared, root)
    index = json.loads((root / "index.json").read_text())
    offsets = root / index["shards"][0]["offsets"]
    if damage == "no offsets":
        offsets.unlink()
    elif damage == "pickled offsets":
        np.save(offsets, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif damage == "index without dtype":
        del index["dtype"]
    else:
        del index["shards"][0]["file"]
    (root / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="prepare` again") as info:
        TokenStore(root)
    assert "\n" not in str(info.value)
