"""The chat template: a plain-text transcript, the same for the HTTP server and LangChain.

unimask models are pretrained, not instruction-tuned, so the template is a readable transcript that any
model can continue::

    System: You are terse.

    User: What is 2+2?

    Assistant: 4

    User: And 3+3?

    Assistant:

Messages are separated by a blank line; each starts with its role (``System``, ``User``, ``Assistant``)
and a colon; the prompt ends with ``Assistant:`` for the reply. The reply ends at EOS or where the model
starts another turn (the stop strings ``CHAT_STOP``), and is returned without leading whitespace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
CHAT_STOP = ("\n\nUser:", "\n\nSystem:", "\n\nAssistant:")


def render_chat(messages: Sequence[Mapping[str, str]]) -> str:
    """Messages ``[{"role": "system"|"user"|"assistant", "content": str}, ...]`` -> the prompt text.

    Raises ``ValueError`` for an empty list, an unknown role or non-text content.
    """
    if not messages:
        raise ValueError("messages must not be empty")
    turns = []
    for i, m in enumerate(messages):
        role = m.get("role")
        content = m.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be text")
        turns.append(f"{ROLES[role]}: {content.strip()}")
    return "\n\n".join(turns) + "\n\nAssistant:"


__all__ = ["CHAT_STOP", "ROLES", "render_chat"]
