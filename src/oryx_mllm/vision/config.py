"""Typed configuration of OryxViT, saved next to the weights as JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from oryx_mllm.checks import check_bool, check_range
from oryx_mllm.errors import ConfigError
from oryx_mllm.vision.attention import BACKENDS

ACTIVATIONS = ("gelu", "gelu_pytorch_tanh")
POSITION_INITS = ("normal", "sincos")
POSITIVE_INT_FIELDS = (
    "hidden_size",
    "depth",
    "num_heads",
    "mlp_hidden_size",
    "patch_size",
    "num_channels",
    "position_grid",
    "max_patches_per_image",
)


@dataclass
class OryxViTConfig:
    """Shape and runtime options of the native-resolution encoder.

    The defaults are the released Oryx-ViT (SigLIP-so400m shape, patch 16, a 128x128 position
    table, i.e. a 2048 px square). ``max_patches_per_image`` guards against requests that would
    exhaust memory; it is a limit of this implementation, not of the weights.
    """

    hidden_size: int = 1152
    depth: int = 27
    num_heads: int = 16
    mlp_hidden_size: int = 4304
    patch_size: int = 16
    num_channels: int = 3
    position_grid: int = 128
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu"  # exact (erf) GELU as released; SigLIP sources use the tanh form
    attention_backend: str = "auto"  # see oryx_mllm.vision.attention.BACKENDS
    gradient_checkpointing: bool = False
    max_patches_per_image: int = 128 * 128
    # How a model built from scratch fills its position table: "normal" (std 0.02, as SigLIP) or
    # "sincos" (a fixed 2D sine-cosine table, so an untrained or frozen encoder's tokens carry
    # their position; see encoder.sincos_position_table). Loaded weights replace either.
    position_init: str = "normal"

    def __post_init__(self) -> None:
        for name in POSITIVE_INT_FIELDS:
            check_range(name, getattr(self, name), integer=True, at_least=1)
        check_range("layer_norm_eps", self.layer_norm_eps, above=0)
        check_bool("gradient_checkpointing", self.gradient_checkpointing)
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"hidden_act {self.hidden_act!r} not in {ACTIVATIONS}")
        if self.attention_backend not in BACKENDS:
            raise ConfigError(f"attention_backend {self.attention_backend!r} not in {BACKENDS}")
        if self.position_init not in POSITION_INITS:
            raise ConfigError(f"position_init {self.position_init!r} not in {POSITION_INITS}")
        if self.position_init == "sincos" and self.hidden_size % 4:
            raise ConfigError(
                f"position_init 'sincos' needs hidden_size divisible by 4, got {self.hidden_size}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    # Presets -----------------------------------------------------------------------------------
    @classmethod
    def released(cls, **overrides) -> OryxViTConfig:
        """The released Oryx-ViT encoder (``oryx_vit.pth``)."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> OryxViTConfig:
        """A small encoder for tests, demos and the embedded default model."""
        base = dict(
            hidden_size=64, depth=2, num_heads=4, mlp_hidden_size=int(64 * 3.7362), position_grid=16
        )
        return cls(**{**base, **overrides})

    # Serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> OryxViTConfig:
        if not isinstance(data, dict):
            raise ConfigError(
                f"vision_config must be a mapping of OryxViTConfig fields, not {data!r}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown OryxViTConfig keys: {unknown}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        from oryx_mllm.files import atomic_save_json

        atomic_save_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> OryxViTConfig:
        from oryx_mllm.files import read_json

        data = read_json(path)
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"invalid OryxViT config {path}: {exc}") from exc
