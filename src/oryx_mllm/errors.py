"""One exception family for everything a user can get wrong.

Every error raised on purpose by oryx-mllm derives from :class:`OryxError`, so callers (the CLI,
the server, a training loop skipping a bad sample) can catch exactly what the library means to
raise and let real bugs surface. Each subclass also derives from the matching builtin
(``ValueError``, ``FileNotFoundError`` ...) so generic handlers keep working.
"""

from __future__ import annotations


class OryxError(Exception):
    """Base class of all errors oryx-mllm raises deliberately."""


class InvalidInputError(OryxError, ValueError):
    """A tensor, image, video or request argument is not what the API accepts."""


class ImageDecodeError(InvalidInputError):
    """An image file could not be read (corrupt, truncated, empty, too many pixels...)."""


class VideoDecodeError(InvalidInputError):
    """A video could not be decoded or yields no frames."""


class UnsupportedModalityError(InvalidInputError):
    """A modality the model or the request does not support."""


class ContextLengthError(InvalidInputError):
    """Prompt plus visual tokens exceed the model's context length."""


class CheckpointError(OryxError, RuntimeError):
    """A checkpoint is missing, malformed, or does not fit the model."""


class ConfigError(OryxError, ValueError):
    """A configuration value is invalid."""


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
