"""The chat template: a plain-text transcript, the same for the HTTP server and LangChain.

unimask models are pretrained, not instruction-tuned, so the template is a readable transcript that any
model can continue::

    System: You are terse.

    User: What is 2+2?

    Assistant: 4

    User: And 3+3?

    Assistant:

Messages are separated by a blank line; each starts with its role (``System``, ``User``, ``Assistant``,
``Tool``) and a colon; the prompt ends with ``Assistant:`` for the reply. The reply ends at EOS or where the
model starts another turn (the stop strings ``CHAT_STOP``), and is returned without leading whitespace.

Tool calls (OpenAI's message shapes): an assistant message's ``tool_calls`` follow its text, one call a line,
as the JSON a constrained decode writes (``unimask.structured.tool_call_schema``); a ``tool`` message's
content is the tool's result::

    User: Weather in Paris?

    Assistant: {"name": "get_weather", "arguments": {"location": "Paris"}}

    Tool: It's sunny.

    Assistant:
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

ROLES = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
CHAT_STOP = ("\n\nUser:", "\n\nSystem:", "\n\nAssistant:", "\n\nTool:")


def render_tool_call(call: Mapping[str, Any]) -> str:
    """One OpenAI tool call ``{"function": {"name", "arguments": "<JSON text>"}}`` as the line
    ``{"name": ..., "arguments": {...}}`` (arguments that are not JSON are written as they are)."""
    fn = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise ValueError("a tool call is {'type': 'function', 'function': {'name': ..., 'arguments': ...}}")
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return f'{{"name": {json.dumps(fn["name"], ensure_ascii=False)}, "arguments": {args.strip()}}}'
    return json.dumps({"name": fn["name"], "arguments": {} if args is None else args}, ensure_ascii=False)


def render_chat(messages: Sequence[Mapping[str, Any]]) -> str:
    """Messages ``[{"role": "system"|"user"|"assistant"|"tool", "content": str}, ...]`` -> the prompt text;
    an assistant message may carry ``tool_calls`` (then its content may be empty or None).

    Raises ``ValueError`` for an empty list, an unknown role, non-text content or a malformed tool call.
    """
    if not messages:
        raise ValueError("messages must not be empty")
    turns = []
    for i, m in enumerate(messages):
        role = m.get("role")
        content = m.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        calls = m.get("tool_calls") if role == "assistant" else None
        if calls and content is None:
            content = ""
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be text")
        text = content.strip()
        if calls is not None and not isinstance(calls, (list, tuple)):
            raise ValueError(f"messages[{i}].tool_calls must be a list")
        if calls:
            try:
                lines = [render_tool_call(c) for c in calls]
            except ValueError as exc:
                raise ValueError(f"messages[{i}].tool_calls: {exc}") from None
            text = "\n".join([text, *lines] if text else lines)
        turns.append(f"{ROLES[role]}: {text}")
    return "\n\n".join(turns) + "\n\nAssistant:"


__all__ = ["CHAT_STOP", "ROLES", "render_chat", "render_tool_call"]
