"""One exception family for everything a user can get wrong.

Every error raised on purpose by oryx-mllm derives from :class:`OryxError`, so callers (the CLI,
the server, a training loop skipping a bad sample) can catch exactly what the library means to
raise and let real bugs surface. Each subclass also derives from the matching builtin
(``ValueError``, ``FileNotFoundError`` ...) so generic handlers keep working.
"""

from __future__ import annotations

import re


class OryxError(Exception):
    """Base class of all errors oryx-mllm raises deliberately."""


class InvalidInputError(OryxError, ValueError):
    """A tensor, image, video or request argument is not what the API accepts."""


class ImageDecodeError(InvalidInputError):
    """An image file could not be read (corrupt, truncated, empty, too many pixels...)."""


class ViewError(OryxError):
    """Mixed into the errors about one view of a multi-view scene; ``view`` is its index."""

    def __init__(self, message: str, view: int):
        super().__init__(message)
        self.view = view


class ViewDecodeError(ViewError, ImageDecodeError):
    """One view of a multi-view scene could not be read."""


class VideoDecodeError(InvalidInputError):
    """A video could not be decoded or yields no frames."""


class UnsupportedModalityError(InvalidInputError):
    """A modality the model or the request does not support."""


class ViewModalityError(ViewError, UnsupportedModalityError):
    """One view of a multi-view scene is not an image (a video file, say)."""


class ContextLengthError(InvalidInputError):
    """Prompt plus visual tokens exceed the model's context length."""


class CheckpointError(OryxError, RuntimeError):
    """A checkpoint is missing, malformed, or does not fit the model."""


class ConfigError(OryxError, ValueError):
    """A configuration value is invalid."""


class TrainingError(OryxError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN or infinite); names the step."""


class ImageTooLargeError(ImageDecodeError):
    """An image (or video frame) has more pixels than the configured decompression-bomb limit."""


class ImageNotFoundError(ImageDecodeError, FileNotFoundError):
    """An image path does not exist."""


class VideoNotFoundError(VideoDecodeError, FileNotFoundError):
    """A video path (file or directory of frames) does not exist."""


class DataError(InvalidInputError):
    """A training record, data file or stored media item is malformed (names the sample / file)."""


class MediaNotFoundError(DataError, FileNotFoundError):
    """A media file (image, video, patch file) referenced by a training record does not exist."""


class PatchFileError(DataError):
    """A patch-file reference points outside the file, or the file is truncated."""


class PackingUnsupportedError(ConfigError):
    """``data.packing`` was asked for, but the backbone or its attention backend cannot keep the
    packed samples apart (training would silently attend across samples)."""


# torch's DataLoader re-raises a worker's exception as the same type with this message, followed
# by the worker's whole formatted traceback (torch._utils.ExceptionWrapper.reraise)
_WORKER_ERROR = re.compile(r"Caught \w+ (in DataLoader worker process \d+)\.\nOriginal Traceback")


def error_message(exc: BaseException) -> str:
    """What to tell a person about ``exc``: its message. An error that torch's DataLoader
    re-raised from a worker process carries ``Caught DataError in DataLoader worker process 0.``
    plus the worker's traceback as its message; for such an error this is the original message
    followed by ``(in DataLoader worker process 0)``."""
    text = str(exc)
    worker = _WORKER_ERROR.match(text)
    if worker is None:
        return text
    cls = type(exc)  # the traceback's last line is "<module>.<qualname>: <original message>"
    name = cls.__qualname__
    if cls.__module__ not in ("builtins", "__main__"):
        name = f"{cls.__module__}.{name}"
    start = text.rfind(f"\n{name}: ")
    original = text[start + len(name) + 3 :].strip() if start >= 0 else cls.__name__
    return f"{original} ({worker.group(1)})"
