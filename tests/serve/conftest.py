"""Fixtures of the serving tests: the tiny pipeline and ``make_server``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_helpers import MODEL, LiveServer, tiny_pipeline  # noqa: E402

from oryx_mllm.pipeline import OryxPipeline  # noqa: E402
from oryx_mllm.serve import ServeSettings, create_app  # noqa: E402


@pytest.fixture(scope="session")
def pipe() -> OryxPipeline:
    return tiny_pipeline()


@pytest.fixture
def make_server(pipe) -> Iterator[Callable[..., LiveServer]]:
    """``make_server(**settings)`` -> a started :class:`LiveServer` (stopped after the test)."""
    started: list[LiveServer] = []

    def make(pipeline: OryxPipeline | None = None, **kw) -> LiveServer:
        kw.setdefault("model_name", MODEL)
        server = LiveServer(create_app(pipeline or pipe, ServeSettings(**kw)))
        started.append(server.__enter__())
        return server

    yield make
    for server in started:
        server.__exit__()
