"""Typed configuration of the whole Oryx model.

:class:`OryxConfig` holds the language model's Hugging Face config (as a dict plus its
``model_type``), the encoder's :class:`OryxViTConfig` and the connector options. It reads and
writes the released ``config.json`` layout: the LLM config with ``model_type`` ``oryx_qwen`` /
``oryx_llama`` plus ``mm_*`` keys; our own extras live under one ``"oryx"`` key, which released
configs lack (defaults then apply).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from oryx_mllm.errors import ConfigError
from oryx_mllm.vision.config import OryxViTConfig

# released model_type -> transformers model_type of the backbone
ORYX_MODEL_TYPES = {"oryx_qwen": "qwen2", "oryx_llama": "llama"}
VISUAL_TOKEN = "<|visual_pad|>"
PROJECTOR_TYPES = ("simple_mlp_twoview",)
RESAMPLER_TYPES = ("dynamic_compressor",)
VISUAL_TOKEN_NORMS = (None, "embedding_rms")
VIT_PREFIX = "oryx_vit:"


def oryx_model_type(llm_type: str) -> str:
    for oryx, hf in ORYX_MODEL_TYPES.items():
        if hf == llm_type:
            return oryx
    return f"oryx_{llm_type}"


def llm_model_type(oryx_type: str) -> str:
    if oryx_type in ORYX_MODEL_TYPES:
        return ORYX_MODEL_TYPES[oryx_type]
    if oryx_type.startswith("oryx_"):
        return oryx_type.removeprefix("oryx_")
    raise ConfigError(f"model_type {oryx_type!r} is not an Oryx model (oryx_qwen, oryx_llama)")


@dataclass
class OryxConfig:
    """Everything needed to build :class:`~oryx_mllm.model.OryxForConditionalGeneration`."""

    text_config: dict  # the LLM's transformers config as a dict (model_type = llm_type)
    vision_config: OryxViTConfig = field(default_factory=OryxViTConfig)
    mm_hidden_size: int | None = None  # encoder width; defaults to vision_config.hidden_size
    mm_projector_type: str = "simple_mlp_twoview"
    mm_resampler_type: str = "dynamic_compressor"
    mm_vision_tower: str | None = None  # "oryx_vit:<path to oryx_vit.pth>" in released configs
    compressor_mid_size: int = 256
    projector_act: str = "gelu"  # exact GELU, as released
    visual_token: str = VISUAL_TOKEN
    visual_token_id: int | None = None  # set by the processor / from_pretrained
    # None (as released): visual tokens enter the LLM as the projector makes them.
    # "embedding_rms": each visual token is rescaled to the RMS of the LLM's input embedding
    # table, so it enters at the scale of a word (docs/default_model.md, "The scale of the
    # visual tokens"; an option for models trained from scratch, not in the paper).
    visual_token_norm: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.vision_config, dict):
            self.vision_config = OryxViTConfig.from_dict(self.vision_config)
        if "model_type" not in self.text_config:
            raise ConfigError("text_config needs a 'model_type' (e.g. 'qwen2', 'llama')")
        if self.mm_hidden_size is None:
            self.mm_hidden_size = self.vision_config.hidden_size
        if self.mm_hidden_size != self.vision_config.hidden_size:
            raise ConfigError(
                f"mm_hidden_size {self.mm_hidden_size} != encoder width "
                f"{self.vision_config.hidden_size}"
            )
        if self.mm_projector_type not in PROJECTOR_TYPES:
            raise ConfigError(
                f"mm_projector_type {self.mm_projector_type!r} not in {PROJECTOR_TYPES}"
            )
        if self.visual_token_norm not in VISUAL_TOKEN_NORMS:
            raise ConfigError(
                f"visual_token_norm {self.visual_token_norm!r} not in {VISUAL_TOKEN_NORMS}"
            )
        if self.mm_resampler_type not in RESAMPLER_TYPES:
            raise ConfigError(
                f"mm_resampler_type {self.mm_resampler_type!r} not in {RESAMPLER_TYPES}"
            )

    # Properties ---------------------------------------------------------------------------------
    @property
    def llm_type(self) -> str:
        return self.text_config["model_type"]

    @property
    def model_type(self) -> str:
        return oryx_model_type(self.llm_type)

    @property
    def hidden_size(self) -> int:
        return self.text_config["hidden_size"]

    @property
    def patch_size(self) -> int:
        return self.vision_config.patch_size

    @property
    def vision_tower_path(self) -> str | None:
        """The encoder file named by ``mm_vision_tower`` (without the ``oryx_vit:`` prefix)."""
        if not self.mm_vision_tower:
            return None
        return self.mm_vision_tower.removeprefix(VIT_PREFIX)

    def llm_config(self):
        """The LLM's ``transformers`` config object."""
        from transformers import AutoConfig

        kwargs = {k: v for k, v in self.text_config.items() if k != "model_type"}
        return AutoConfig.for_model(self.llm_type, **kwargs)

    @classmethod
    def from_llm_config(cls, llm_config, **kwargs) -> OryxConfig:
        """Wrap a transformers config (``Qwen2Config``, ``LlamaConfig``...)."""
        return cls(text_config=llm_config.to_dict(), **kwargs)

    # Serialisation (released config.json layout) ------------------------------------------------
    def to_dict(self) -> dict:
        extras = {
            "vision_config": self.vision_config.to_dict(),
            "compressor_mid_size": self.compressor_mid_size,
            "projector_act": self.projector_act,
            "visual_token": self.visual_token,
            "visual_token_id": self.visual_token_id,
        }
        if self.visual_token_norm is not None:  # released layout otherwise unchanged
            extras["visual_token_norm"] = self.visual_token_norm
        return {
            **self.text_config,
            "model_type": self.model_type,
            "mm_vision_tower": self.mm_vision_tower,
            "mm_projector_type": self.mm_projector_type,
            "mm_resampler_type": self.mm_resampler_type,
            "mm_hidden_size": self.mm_hidden_size,
            "oryx": extras,
        }

    @classmethod
    def from_dict(cls, data: dict, vision_config: OryxViTConfig | None = None) -> OryxConfig:
        """Parse a config.json dict; ``vision_config`` overrides the encoder shape (released
        configs do not store it and default to the released Oryx-ViT)."""
        if not isinstance(data, dict):
            raise ConfigError(f"an Oryx config must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        if "model_type" not in data:
            raise ConfigError("config has no 'model_type' (expected oryx_qwen / oryx_llama)")
        llm_type = llm_model_type(data.pop("model_type"))
        extras = data.pop("oryx", None) or {}
        known = {f.name for f in dataclasses.fields(cls)} - {"text_config", "vision_config"}
        unknown = sorted(set(extras) - known - {"vision_config"})
        if unknown:
            raise ConfigError(f"unknown keys under 'oryx' in config: {unknown}")
        mm = {k: data.pop(k) for k in list(data) if k.startswith("mm_")}
        kwargs = {k: mm[k] for k in known & set(mm)}
        kwargs.update({k: v for k, v in extras.items() if k != "vision_config"})
        vision = extras.get("vision_config")
        if vision_config is not None:
            vision = vision_config
        else:
            vision = OryxViTConfig.from_dict(vision) if vision else OryxViTConfig.released()
        return cls(text_config={**data, "model_type": llm_type}, vision_config=vision, **kwargs)

    def save(self, path: str | Path) -> None:
        from oryx_mllm.files import atomic_save_json

        atomic_save_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path, vision_config: OryxViTConfig | None = None) -> OryxConfig:
        """``config.json`` (or the folder holding it). Whatever is wrong with it (unreadable, not
        a JSON object, not an Oryx model type, a wrong-typed field) is a ConfigError naming it."""
        from oryx_mllm.files import read_json

        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        data = read_json(path)
        try:
            config = cls.from_dict(data, vision_config=vision_config)
            config.llm_config()  # transformers' own field checks (hidden_size "64" ...)
        except Exception as exc:  # ours, or whatever transformers' config classes raise
            raise ConfigError(f"invalid {path}: {exc}") from exc
        return config
