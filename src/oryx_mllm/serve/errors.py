"""OpenAI-style API errors: ``{"error": {"message", "type", "param", "code"}}`` + HTTP status."""

from __future__ import annotations

from oryx_mllm import errors as oe


class APIError(Exception):
    """An error answered to the client as OpenAI-style JSON with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class QueueFullError(APIError):
    def __init__(self, size: int):
        super().__init__(
            429,
            f"the server is busy: {size} requests are already waiting; retry later",
            type="rate_limit_error",
            code="queue_full",
        )


# Most specific first: the first matching class wins.
_ORYX_MAP: list[tuple[type[Exception], int, str]] = [
    (oe.ImageTooLargeError, 413, "image_too_large"),
    (oe.ContextLengthError, 400, "context_length_exceeded"),
    (oe.UnsupportedModalityError, 400, "unsupported_modality"),
    (oe.ImageDecodeError, 422, "invalid_image"),
    (oe.VideoDecodeError, 422, "invalid_video"),
    (oe.InvalidInputError, 400, "invalid_value"),
    (oe.CheckpointError, 500, "model_error"),
    (oe.OryxError, 400, "invalid_value"),
]


def from_oryx_error(exc: Exception, param: str | None = None) -> APIError:
    """Map an :class:`~oryx_mllm.errors.OryxError` (or anything else) to an :class:`APIError`."""
    if isinstance(exc, APIError):
        return exc
    for cls, status, code in _ORYX_MAP:
        if isinstance(exc, cls):
            kind = "server_error" if status >= 500 else "invalid_request_error"
            return APIError(status, str(exc), type=kind, param=param, code=code)
    return APIError(500, f"internal error: {type(exc).__name__}", type="server_error")
