"""The one exception type that unimask raises for a user's mistake.

The CLI turns it into a single line (what, where, what to do) and a non-zero exit, without a traceback.
"""

from __future__ import annotations


class UnimaskError(Exception):
    """A user-facing error: bad config, bad checkpoint, bad data. The message is one clear line."""


class ConfigError(UnimaskError, ValueError):
    """A configuration field is unknown, of the wrong type or impossible."""


class CheckpointError(UnimaskError):
    """A checkpoint directory or file is missing, truncated, foreign or of another shape."""


class DataError(UnimaskError):
    """A corpus, tokenizer or batch that cannot be used."""
