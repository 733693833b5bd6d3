"""Typed training recipes, read from YAML (``recipes/*.yaml``) with ``key.sub=value`` overrides.

A recipe names the model to start from, the data, the stage (which modules train, LoRA or not),
the optimiser and the run's shape. It is saved next to every checkpoint as ``recipe.yaml``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from oryx_mllm.errors import ConfigError


class _RecipeLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; recipes and ``--set optim.lr=1e-4`` mean a
    float, so this loader also resolves exponent floats without a dot."""


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(text: str) -> Any:
    """Parse recipe YAML (safe; exponent floats such as ``1e-4`` are floats)."""
    return yaml.load(text, Loader=_RecipeLoader)


MODULE_GROUPS = ("vision_tower", "vision_resampler", "mm_projector", "language_model")


@dataclass
class ModelSpec:
    """Where the model comes from: an Oryx folder (``path``), or parts.

    - ``path``: a released or saved Oryx folder (config.json + weights + tokenizer).
    - otherwise ``llm`` (a Hugging Face causal-LM folder) or ``llm_config`` (a dict, random init),
      plus ``vision_tower`` (``oryx_vit.pth`` / folder / ``siglip:<folder>``) or ``vision_config``
      (a dict for a random encoder), and ``tokenizer`` (a folder; defaults to ``llm``).
    - ``attn_implementation``: the language model's attention backend (``sdpa``, ``eager``,
      ``flash_attention_2`` ...); ``None`` keeps what transformers chose when loading.
    """

    path: str | None = None
    vision_tower: str | None = None
    llm: str | None = None
    tokenizer: str | None = None
    vision_config: dict | None = None
    llm_config: dict | None = None
    compressor_mid_size: int = 256
    attn_implementation: str | None = None


@dataclass
class DataSpec:
    """Training data. ``packing``: concatenate the samples of each micro-batch, padding-free,
    into rows of at most ``max_length`` tokens (first-fit; position ids restart per sample; the
    first label of each sample ignored) and keep attention within each sample (see
    :mod:`oryx_mllm.train.packing`). Micro-batches and optimiser steps hold the same samples as
    without packing, and the loss is the same token-weighted mean. Needs a backbone/backend in
    ``PACKING_MODEL_TYPES`` / ``PACKING_BACKENDS``; otherwise training stops with
    :class:`~oryx_mllm.errors.PackingUnsupportedError` before the first step."""

    train: list[str] = field(default_factory=list)  # Oryx JSON / JSONL files
    data_root: str = "."
    max_length: int = 8192
    num_workers: int = 0
    # pooling ratio per record modality (paper stage 2: images 1x, videos 2x2, long videos 4x4)
    compression: dict[str, int] = field(
        default_factory=lambda: {"image": 1, "video": 2, "video_long": 4, "multiview": 2}
    )
    image: dict[str, Any] = field(default_factory=dict)  # ImageOptions overrides
    video: dict[str, Any] = field(default_factory=dict)  # VideoOptions overrides
    # MultiViewOptions overrides: ``frame`` (VideoOptions overrides on top of ``video``: the
    # views' size), ``marks`` (MarkStyle: how coarse-correspondence marks are drawn), ``max_views``
    multiview: dict[str, Any] = field(default_factory=dict)
    max_skip_attempts: int = 8
    # Sort samples of a modality by estimated length within mega-batches (less padding). With
    # short synthetic QA this clusters batches by question template, i.e. by task: small models
    # then chase one task's answer prior per step. False = each batch is a random draw within its
    # modality.
    group_by_length: bool = True
    packing: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.packing, bool):
            raise ConfigError(f"data.packing must be true or false, got {self.packing!r}")
        if self.max_length < 1:
            raise ConfigError(f"data.max_length must be >= 1, got {self.max_length}")
        self.multiview_options()  # fail at load time, naming the bad key

    def multiview_options(self):
        """The :class:`~oryx_mllm.processing.options.MultiViewOptions` of this data: views sized
        like ``video`` frames unless ``multiview.frame`` says otherwise."""
        from oryx_mllm.processing.options import multiview_options_from_dict

        if not isinstance(self.multiview, dict):
            raise ConfigError(f"data.multiview must be a mapping, got {self.multiview!r}")
        mv = dict(self.multiview)
        frame = {**self.video, **(mv.pop("frame", None) or {})}
        try:
            return multiview_options_from_dict({**mv, "frame": frame})
        except (TypeError, ValueError) as e:  # ConfigError is a ValueError
            raise ConfigError(f"data.multiview: {e}") from e


@dataclass
class LoraSpec:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )


@dataclass
class StageSpec:
    """Which module groups train. ``lora`` adds LoRA adapters to the language model (the
    OryxViT pre-training stage: encoder unfrozen, LLM through LoRA)."""

    name: str = "custom"
    trainable: list[str] = field(default_factory=lambda: ["vision_resampler", "mm_projector"])
    lora: LoraSpec | None = None

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = LoraSpec(**self.lora)
        bad = sorted(set(self.trainable) - set(MODULE_GROUPS))
        if bad:
            raise ConfigError(
                f"stage.trainable has unknown groups {bad}; choose from {MODULE_GROUPS}"
            )
        if self.lora is not None and "language_model" in self.trainable:
            raise ConfigError("stage: either train language_model fully or through lora, not both")


@dataclass
class OptimSpec:
    """AdamW and its schedule. ``group_lr`` gives a module group (``MODULE_GROUPS``) its own peak
    learning rate, e.g. ``{vision_tower: 1e-4}`` (LLaVA-family trainers' ``mm_vision_tower_lr``);
    every other trainable parameter uses ``lr``. All groups follow the same schedule."""

    lr: float = 2e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_ratio: float = 0.03
    schedule: str = "cosine"  # cosine | constant | linear
    max_grad_norm: float = 1.0
    group_lr: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "constant", "linear"):
            raise ConfigError(f"optim.schedule {self.schedule!r} not in cosine/constant/linear")
        self.betas = tuple(self.betas)
        if not isinstance(self.group_lr, dict):
            raise ConfigError(f"optim.group_lr must be a mapping, got {self.group_lr!r}")
        bad = sorted(set(self.group_lr) - set(MODULE_GROUPS))
        if bad:
            raise ConfigError(
                f"optim.group_lr has unknown groups {bad}; choose from {MODULE_GROUPS}"
            )
        for group, lr in self.group_lr.items():
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
                raise ConfigError(f"optim.group_lr.{group} must be a positive number, got {lr!r}")


@dataclass
class TrainConfig:
    output_dir: str = "runs/oryx"
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    stage: StageSpec = field(default_factory=StageSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    per_device_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    epochs: int = 1
    max_steps: int | None = None  # optimiser steps; overrides epochs when set
    mixed_precision: str = "no"  # no | bf16 | fp16
    gradient_checkpointing: bool = False
    save_steps: int = 500
    save_total_limit: int | None = 2
    log_steps: int = 1
    seed: int = 0
    resume: str | None = "auto"  # auto (latest in output_dir) | a checkpoint folder | null
    report_to: list[str] = field(default_factory=lambda: ["jsonl", "tensorboard"])
    progress: bool = True
    # Several stages in one recipe (see :func:`stage_configs`); empty = a single-stage recipe.
    stages: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, cls in (
            ("model", ModelSpec),
            ("data", DataSpec),
            ("stage", StageSpec),
            ("optim", OptimSpec),
        ):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _build(cls, value, name))
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ConfigError(f"mixed_precision {self.mixed_precision!r} not in no/bf16/fp16")
        for name in (
            "per_device_batch_size",
            "gradient_accumulation_steps",
            "epochs",
            "save_steps",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

        for i, st in enumerate(self.stages):
            if not isinstance(st, dict) or not st.get("name"):
                raise ConfigError(f"stages[{i}] must be a mapping with a 'name'")
            bad = sorted(set(st) - STAGE_KEYS)
            if bad:
                raise ConfigError(
                    f"stages[{i}] ({st['name']}): keys {bad} not in {sorted(STAGE_KEYS)}"
                )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Keys a stage of a multi-stage recipe may set. ``data``, ``stage`` and ``optim`` are merged key by
# key over the recipe's top-level sections; the others replace the top-level value.
STAGE_KEYS = frozenset(
    {
        "name",
        "data",
        "stage",
        "optim",
        "per_device_batch_size",
        "gradient_accumulation_steps",
        "epochs",
        "max_steps",
        "mixed_precision",
        "gradient_checkpointing",
        "save_steps",
        "seed",
    }
)
_MERGED = ("data", "stage", "optim")


def stage_configs(cfg: TrainConfig) -> list[TrainConfig]:
    """Expand a multi-stage recipe into one single-stage :class:`TrainConfig` per stage.

    Policy (the paper trains in stages, each starting from the previous stage's weights):

    - stage ``i`` writes to ``output_dir/<name>``; stage 0 builds the model from ``model``, stage
      ``i > 0`` loads ``output_dir/<name of stage i-1>/final``;
    - ``data``, ``stage`` and ``optim`` of a stage are merged key by key over the top-level
      sections (so a stage only states what changes); other keys replace the top-level value;
    - ``resume`` applies per stage (``auto`` continues an interrupted stage from its checkpoint).

    A recipe without ``stages`` is returned as the single config it is.
    """
    if not cfg.stages:
        return [cfg]
    base = cfg.to_dict()
    base.pop("stages")
    out: list[TrainConfig] = []
    prev: str | None = None
    for st in cfg.stages:
        d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
        for key, value in st.items():
            if key == "name":
                continue
            if key in _MERGED:
                d[key] = {**d[key], **value}
            else:
                d[key] = value
        if d["stage"].get("lora") is not None and not isinstance(d["stage"]["lora"], dict):
            d["stage"]["lora"] = dataclasses.asdict(d["stage"]["lora"])
        if "name" not in st.get("stage", {}):  # the stage's own name unless stage.name is given
            d["stage"]["name"] = st["name"]
        d["output_dir"] = str(Path(cfg.output_dir) / st["name"])
        if prev is not None:
            d["model"] = {**d["model"], "path": str(Path(prev) / "final")}
            d["model"].update(vision_config=None, llm_config=None, llm=None, vision_tower=None)
            d["model"]["tokenizer"] = None
        out.append(TrainConfig(**d))
        prev = d["output_dir"]
    return out


def _build(cls, data: dict, where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown keys in recipe section '{where}': {unknown}")
    return cls(**data)


def _parse_value(text: str) -> Any:
    return read_yaml(text)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, value = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = _parse_value(value)
    return data


def load_typed_yaml(
    cls, path: str | Path, overrides: list[str] | None = None, what: str = "recipe"
):
    """Read a YAML mapping, apply ``key.sub=value`` overrides and build the dataclass ``cls``;
    every failure is a :class:`ConfigError` naming the file (``what`` says which kind)."""
    path = Path(path)
    try:
        data = read_yaml(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a mapping at the top level")
    data = apply_overrides(data, overrides or [])
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown top-level keys in {what} {path}: {unknown}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"{what} {path}: {exc}") from exc


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe. Relative data/model paths are resolved against the recipe's folder
    only when they exist there; otherwise they are kept relative to the working directory."""
    return load_typed_yaml(TrainConfig, path, overrides, "recipe")
