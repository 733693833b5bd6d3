"""OpenAI-compatible serving of Oryx: ``oryx serve`` / :func:`create_app`.

Modules: :mod:`.settings` (typed limits), :mod:`.schemas` (request/response models),
:mod:`.media` (data:/file:/remote URLs -> preprocessed visual inputs), :mod:`.engine` (the
dynamic batching worker that owns the model), :mod:`.app` (FastAPI routes, errors, streaming)
and ``static/index.html`` (the chat page served at ``/``).

FastAPI and uvicorn are the optional extra ``serve``: ``pip install 'oryx-mllm[serve]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oryx_mllm.serve.app import create_app
    from oryx_mllm.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from oryx_mllm.serve.app import create_app

        return create_app
    if name == "ServeSettings":
        from oryx_mllm.serve.settings import ServeSettings

        return ServeSettings
    raise AttributeError(name)
