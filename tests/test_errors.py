"""The error family's helpers: what a person is told about an error."""

from __future__ import annotations

import pytest
import typer
from torch._utils import ExceptionWrapper

from oryx_mllm.errors import DataError, error_message


def reraised_from_worker(exc: Exception) -> Exception:
    """``exc`` as torch's DataLoader re-raises it in the main process: the same type, with the
    worker's whole formatted traceback as its message."""
    try:
        try:
            raise exc
        except Exception:
            ExceptionWrapper(where="in DataLoader worker process 0").reraise()
    except Exception as again:
        return again
    raise AssertionError("not re-raised")


def test_an_error_from_a_dataloader_worker_shows_its_original_message():
    from oryx_mllm import cli

    message = "gave up on index 1 after 8 failed attempts; last: 'img1': media file not found"
    exc = reraised_from_worker(DataError(message))
    assert type(exc) is DataError and str(exc).startswith("Caught DataError in DataLoader worker")
    assert error_message(exc) == f"{message} (in DataLoader worker process 0)"
    assert error_message(DataError(message)) == message  # any other error: its message
    with cli.err_console.capture() as captured, pytest.raises(typer.Exit):
        cli._fail(exc)
    assert " ".join(captured.get().split()) == f"error: {message} (in DataLoader worker process 0)"
