"""The study's one corpus and one tokenizer, built on the machine and cached.

The corpus mixes English text (the built-in standard-library docstrings, ``unimask.data.corpus``) with
documents of the task suite in its trained format (``unimask.data.task_suite``), shuffled with a fixed
seed. A tenth of the text documents (by a stable hash) never enter the corpus: they are the held-out
text that every model is scored on. One byte-level BPE tokenizer is trained on the corpus and the
corpus is prepared (tokenized into memory-mapped shards) once; later studies with the same settings
reuse all three.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unimask.data.cache import cache_dir
from unimask.data.tokenizer import Tokenizer
from unimask.experiments.study import StudySpec

CORPUS_VERSION = 2
HELDOUT_FRACTION = 0.1


@dataclass
class StudyCorpus:
    """Paths of the prepared corpus and its tokenizer, the held-out text and the corpus' statistics."""

    prepared: Path
    tokenizer_path: Path
    heldout: list[str]
    fingerprint: str
    stats: dict[str, int]

    def tokenizer(self) -> Tokenizer:
        return Tokenizer.load(self.tokenizer_path)

    def unigram_counts(self, vocab_size: int) -> np.ndarray:
        """Token counts ``(V,)`` over the whole prepared corpus (for the unigram baseline)."""
        from unimask.data.shards import TokenStore

        store = TokenStore(self.prepared)
        counts = np.zeros(vocab_size, dtype=np.int64)
        for doc in range(store.n_docs):
            counts += np.bincount(store.tokens(doc), minlength=vocab_size)[:vocab_size]
        return counts


def _is_heldout(text: str) -> bool:
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    return h / 2 ** 64 < HELDOUT_FRACTION


def corpus_key(spec: StudySpec) -> str:
    from unimask.data.corpus import builtin_text
    from unimask.data.task_suite import documents

    text_hash = hashlib.sha256(builtin_text().encode("utf-8")).hexdigest()[:12]
    # a sample of the task documents themselves, so that a change in how tasks are drawn is a new corpus
    sample = hashlib.sha256("\n".join(documents(spec.tasks, 20, seed=0)).encode("utf-8")).hexdigest()[:12]
    fields = {"v": CORPUS_VERSION, "text": text_hash, "tasks_sample": sample, "docs": spec.text_documents,
              "tasks": spec.tasks, "n": spec.task_instances, "vocab": spec.vocab_size}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def build_corpus(spec: StudySpec, root: Path | None = None, progress: bool = False) -> StudyCorpus:
    """The study corpus for ``spec`` (built on first use under the cache directory, then reused)."""
    from unimask.data.cache import atomic_write_text
    from unimask.data.corpus import builtin_documents
    from unimask.data.shards import is_prepared, prepare
    from unimask.data.task_suite import documents
    from unimask.data.tokenizer import train_tokenizer

    key = corpus_key(spec)
    where = (root or cache_dir() / "studies") / key
    texts = builtin_documents()
    if spec.text_documents is not None:
        texts = texts[: spec.text_documents]
    train_text = [t for t in texts if not _is_heldout(t)]
    heldout = [t for t in texts if _is_heldout(t)]
    tok_path = where / "tokenizer" / "tokenizer.json"
    prepared = where / "prepared"
    stats_path = where / "stats.json"
    if not (tok_path.is_file() and is_prepared(prepared) and stats_path.is_file()):
        where.mkdir(parents=True, exist_ok=True)
        tasks = documents(spec.tasks, spec.task_instances, seed=0)
        docs = train_text + tasks
        order = np.random.default_rng(CORPUS_VERSION).permutation(len(docs))
        corpus = where / "corpus.jsonl"
        atomic_write_text(corpus, "".join(json.dumps({"text": docs[i]}) + "\n" for i in order))
        tok = train_tokenizer((docs[i] for i in order), spec.vocab_size)
        tok.save(tok_path.parent)
        prepare(corpus, prepared, tok, overwrite=True, progress=progress, keep_existing=True)
        stats = {"text_documents": len(train_text), "task_documents": len(tasks), "heldout_documents": len(heldout),
                 "text_chars": sum(len(t) for t in train_text), "task_chars": sum(len(t) for t in tasks)}
        atomic_write_text(stats_path, json.dumps(stats))
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    return StudyCorpus(prepared=prepared, tokenizer_path=tok_path, heldout=heldout, fingerprint=key, stats=stats)


__all__ = ["StudyCorpus", "build_corpus", "corpus_key"]
