"""Typed server settings: where the model is, where it listens, and every limit it enforces."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ServeSettings(BaseModel):
    """Everything ``oryx serve`` can be told; all limits live here (no environment variables)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: Path | None = Field(None, description="Oryx folder; None = the embedded default")
    model_name: str | None = Field(
        None, description="Name clients pass as `model`; default: the model folder's name"
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: str | None = Field(None, description="Require `Authorization: Bearer <key>` on /v1")

    # Media
    media_root: list[Path] = Field(
        default_factory=list,
        description="Folders whose files may be referenced by path / file:// URL (allow-list)",
    )
    allow_remote_media: bool = Field(False, description="Fetch http(s):// media URLs")
    max_body_bytes: int = Field(32 << 20, gt=0, description="Largest request body (413 beyond)")
    max_media_bytes: int = Field(20 << 20, gt=0, description="Largest single image/video (413)")
    max_media_items: int = Field(16, gt=0, description="Most images/videos/views in one request")
    decode_timeout_s: float = Field(
        30.0, gt=0, description="Time to fetch + decode a request's media"
    )
    remote_timeout_s: float = Field(10.0, gt=0, description="Time to fetch one remote media URL")
    decode_workers: int = Field(2, gt=0, description="Threads decoding media off the event loop")

    # Batching and queueing
    max_queue: int = Field(64, gt=0, description="Requests waiting for the model (429 beyond)")
    max_batch_size: int = Field(8, gt=0, description="Most requests run as one model call")
    batch_wait_ms: float = Field(5.0, ge=0, description="How long to gather a batch")
    workers: int = Field(
        1, gt=0, description="Batches run at once on the shared model (model instances)"
    )
    torch_threads: int | None = Field(
        None, gt=0, description="torch intra-op threads per worker; None = the cores / workers"
    )

    # Generation
    default_max_tokens: int = Field(256, gt=0)
    max_max_tokens: int = Field(2048, gt=0, description="Largest max_tokens a request may ask")

    @field_validator("media_root", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        if value is None:
            return []
        if isinstance(value, (str, Path)):
            return [value]
        return value

    @field_validator("media_root", mode="after")
    @classmethod
    def _existing_folders(cls, roots: list[Path]) -> list[Path]:
        for root in roots:  # a typo here would otherwise refuse every path silently, per request
            if not Path(root).expanduser().is_dir():
                raise ValueError(f"{root} is not an existing folder")
        return roots

    def resolved_media_roots(self) -> list[Path]:
        return [Path(p).expanduser().resolve() for p in self.media_root]
