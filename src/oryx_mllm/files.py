"""Reading and writing files so that a crash mid-save never destroys what was already saved.

Everything is written to a temporary file in the destination folder, flushed and fsync'ed, then
moved over the destination with ``os.replace`` (atomic on POSIX and Windows). A reader sees either
the old file or the new one, never a truncated mix. No torch here: tools that only read or write
JSON (``oryx_mllm.eval.paired``, the data builder) import this without loading torch.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from oryx_mllm.errors import ConfigError, OryxError


def read_json(path: str | Path, error: type[OryxError] = ConfigError) -> dict:
    """The JSON object in ``path``; a missing, unreadable or non-object file raises ``error``
    naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"cannot read {path}: {exc}") from exc
    except ValueError as exc:  # not JSON, or not UTF-8
        raise error(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{path} must hold a JSON object, not a {type(data).__name__}")
    return data


def atomic_write_all(writes: dict[Path, Callable[[str], None] | None]) -> None:
    """Call each ``write(tmp_path)`` and move the results over their paths, in order; a path
    mapped to ``None`` is removed at its place in that order.

    All files are written (and fsync'ed) before the first one is moved into place, so a failure
    while writing leaves every old file untouched.
    """
    staged: list[tuple[str | None, Path]] = []
    try:
        for path, write in writes.items():
            path = Path(path)
            if write is None:
                staged.append((None, path))
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
            # created like a plain open() would (0666 & ~umask; mkstemp's 0600 would make saved
            # model folders unreadable to the other users of a shared machine)
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            staged.append((tmp, path))
            write(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        for tmp, path in staged:
            if tmp is None:
                path.unlink(missing_ok=True)
            else:
                os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
        raise
    for folder in {path.parent for _, path in staged}:
        fsync_path(folder, best_effort=True)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` and atomically move the result to ``path``."""
    atomic_write_all({Path(path): write})


def fsync_path(path: str | Path, best_effort: bool = False) -> None:
    """Flush a file's data or a folder's entries to disk. ``best_effort``: ignore a filesystem
    that cannot fsync a folder (the write itself has already happened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if best_effort:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not best_effort:
            raise
    finally:
        os.close(fd)


def json_writer(obj) -> Callable[[str], None]:
    """A ``write(tmp_path)`` for :func:`atomic_write` that saves ``obj`` as indented JSON."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2)
            fh.write("\n")

    return write


def atomic_save_json(obj, path: str | Path) -> None:
    atomic_write(path, json_writer(obj))
