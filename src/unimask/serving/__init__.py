"""Serving a model: a loaded model with text in and out (streamed or not), and an OpenAI-compatible API.

``LoadedModel`` needs only torch and the tokenizer; ``create_app`` (in ``unimask.serving.app``) needs the
``serve`` extra (FastAPI, uvicorn) and is imported from there, not here.
"""

from __future__ import annotations

from unimask.serving.chat import CHAT_STOP, render_chat
from unimask.serving.engine import Chunk, Completion, LoadedModel, RequestError, SamplingParams

__all__ = ["CHAT_STOP", "Chunk", "Completion", "LoadedModel", "RequestError", "SamplingParams", "render_chat"]
