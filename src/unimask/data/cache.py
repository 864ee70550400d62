"""Where unimask keeps files it can rebuild (the default tokenizer, the built-in corpus).

The directory is ``$UNIMASK_CACHE`` if set, else ``~/.cache/unimask``. Files are written atomically (a
temporary file renamed into place), so two processes building the same entry never see half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
