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
