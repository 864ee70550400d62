"""Where unimask keeps files it can rebuild.

The directory is ``$UNIMASK_CACHE`` if set, else ``~/.cache/unimask``. It holds:

- ``builtin-corpus-<python>-v1.txt``: the built-in English corpus (standard-library docstrings, ~1.5 MB);
- ``tokenizer-builtin-*/tokenizer.json``: the default BPE tokenizer trained on it;
- ``prepared/<key>/``: corpora tokenized into shards for training, keyed by their files and tokenizer;
- ``studies/<key>/``: the comparison study's corpus and tokenizer;
- ``converted/<key>/``: Hugging Face checkpoints converted once for ``unimask finetune``;
- ``precision/<key>.json``: the fp32/bf16 decision of ``precision: auto`` per machine and model.

Every entry is rebuilt when missing, so deleting the directory (``rm -rf ~/.cache/unimask``) is always
safe; set ``UNIMASK_CACHE`` to keep it elsewhere. Files are written atomically (a temporary file renamed
into place), so two processes building the same entry never see half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from unimask.errors import UnimaskError


def cache_dir() -> Path:
    """The cache directory (created on first use)."""
    root = os.environ.get("UNIMASK_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "unimask"
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise



def check_writable(path: str | Path, what: str = "output directory") -> None:
    """Raise a one-line ``UnimaskError`` unless directory ``path`` exists writable or could be created (its
    nearest existing ancestor is a writable directory). Creates nothing."""
    path = Path(path).absolute()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UnimaskError(f"{path}: cannot create the {what}: {probe} is a file; choose another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UnimaskError(f"{path}: cannot create the {what}: {probe} is not writable; choose another path")


def ensure_dir(path: str | Path, what: str = "output directory") -> Path:
    """Create directory ``path`` (and its parents); a path that cannot be created is a one-line ``UnimaskError``
    (permission denied, a file in the way, a read-only or full disk) instead of an ``OSError``."""
    path = Path(path)
    check_writable(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UnimaskError(f"{path}: cannot create the {what} ({reason}); choose another path") from None
    return path
