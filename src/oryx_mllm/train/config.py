"""Typed training recipes, read from YAML (``recipes/*.yaml``) with ``key.sub=value`` overrides.

A recipe names the model to start from, the data, the stage (which modules train, LoRA or not),
the optimiser and the run's shape. It is saved next to every checkpoint as ``recipe.yaml``.
Every value is checked when the recipe is built (types and ranges, sub-options, stages), so a bad
recipe stops with a :class:`~oryx_mllm.errors.ConfigError` naming the key before any training.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from oryx_mllm.checks import check_bool, check_mapping, check_range
from oryx_mllm.compression_policy import check_ratio
from oryx_mllm.config import VISUAL_TOKEN_NORMS
from oryx_mllm.errors import ConfigError
from oryx_mllm.processing.options import (
    image_options_from_dict,
    multiview_options_from_dict,
    video_options_from_dict,
)
from oryx_mllm.processing.processor import check_repeat_question, check_text_first
from oryx_mllm.train.precision import MIXED_PRECISION_VALUES


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
COMPRESSED_MODALITIES = ("image", "video", "video_long", "multiview")
REPORTERS = ("jsonl", "tensorboard")


# Checks of the recipe sections (numbers and booleans: oryx_mllm.checks); each raises a
# ConfigError naming the key -----------------------------------------------------------------------


def _check_str(name: str, value, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")


def _path(name: str, value, optional: bool = False) -> str | None:
    """A path field: a non-empty string or an ``os.PathLike`` (``pathlib.Path``), as a string."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    _check_str(name, value, optional)
    return value


def _str_list(name: str, value, paths: bool = False) -> list[str]:
    """A list of non-empty strings; a single string is a one-element list. With ``paths``,
    ``os.PathLike`` items (``pathlib.Path``) are accepted too and turned into strings."""
    if isinstance(value, str) or (paths and isinstance(value, os.PathLike)):
        value = [value]
    if paths and isinstance(value, (list, tuple)):
        value = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{name} must be a list of strings, got {value!r}")
    return list(value)


def mixed_precision_value(value):
    """``mixed_precision``: YAML 1.1 reads the documented value ``no`` (unquoted, as in a recipe
    or ``--set mixed_precision=no``) as ``False``; that means ``"no"``."""
    return "no" if value is False else value


def _options(name: str, from_dict, data):
    """Build a preprocessing options dataclass from its recipe block (``data.image`` ...)."""
    try:
        return from_dict(data)
    except (TypeError, ValueError) as e:  # ConfigError is a ValueError
        raise ConfigError(f"{name}: {e}") from e


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
    visual_token_norm: str | None = None  # OryxConfig.visual_token_norm (new models only)
    attn_implementation: str | None = None

    def __post_init__(self) -> None:
        for name in ("path", "vision_tower", "llm", "tokenizer"):  # folders / files
            setattr(self, name, _path(f"model.{name}", getattr(self, name), optional=True))
        _check_str("model.attn_implementation", self.attn_implementation, optional=True)
        check_range("model.compressor_mid_size", self.compressor_mid_size, integer=True, at_least=1)
        if self.visual_token_norm not in VISUAL_TOKEN_NORMS:
            raise ConfigError(
                f"model.visual_token_norm must be one of {VISUAL_TOKEN_NORMS}, "
                f"got {self.visual_token_norm!r}"
            )
        if self.visual_token_norm is not None and self.path is not None:
            raise ConfigError(
                "model.visual_token_norm applies to a model built from scratch; with model.path "
                "the saved model's config.json decides it"
            )
        if self.vision_config is not None:
            self._check_vision_config()
        if self.llm_config is not None:
            self.llm_transformers_config()
        if self.attn_implementation is not None:
            try:  # the backends this transformers knows (registered here since 4.48)
                from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
            except ImportError:
                ALL_ATTENTION_FUNCTIONS = ("sdpa", "flash_attention_2")
            known = ("eager", *ALL_ATTENTION_FUNCTIONS)
            if self.attn_implementation not in known:
                raise ConfigError(
                    f"model.attn_implementation {self.attn_implementation!r} not in {known}"
                )

    def _check_vision_config(self) -> None:
        """``vision_config`` holds OryxViTConfig fields: a whole config for a random or
        ``oryx_vit.pth`` encoder, overrides of the SigLIP-derived one for ``siglip:<folder>``."""
        from oryx_mllm.vision import OryxViTConfig

        check_mapping("model.vision_config", self.vision_config)
        if (self.vision_tower or "").startswith("siglip:"):
            _check_keys(OryxViTConfig, self.vision_config, "model.vision_config")
            return
        try:
            OryxViTConfig.from_dict(self.vision_config)
        except (TypeError, ValueError) as e:  # ConfigError is a ValueError
            raise ConfigError(f"model.vision_config: {e}") from e

    def llm_transformers_config(self):
        """The transformers config ``llm_config`` describes (``model_type`` + its fields)."""
        from transformers import CONFIG_MAPPING, AutoConfig

        check_mapping("model.llm_config", self.llm_config)
        kwargs = dict(self.llm_config)
        model_type = kwargs.pop("model_type", None)
        if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
            raise ConfigError(
                "model.llm_config.model_type must name a transformers model type "
                f"(qwen2, llama ...), got {model_type!r}"
            )
        try:
            return AutoConfig.for_model(model_type, **kwargs)
        # TypeError, ValueError, or huggingface_hub's StrictDataclassError (transformers 5)
        except Exception as e:
            raise ConfigError(f"model.llm_config: {e}") from e


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
    # Modalities (image, video, multiview; video covers long videos) whose first question is
    # put before its media ("question\n<image>\n") instead of after it, the LLaVA order the
    # released models use. Saved in processor_config.json, so inference asks the same way.
    text_first: list[str] = field(default_factory=list)
    # With text_first: ask that question again after the media ("question\n<image>\nquestion"),
    # so the answer follows the question as in the LLaVA order. Saved in processor_config.json.
    repeat_question: bool = False

    def __post_init__(self) -> None:
        self.train = _str_list("data.train", self.train, paths=True)
        text_first = _str_list("data.text_first", self.text_first)
        try:
            self.text_first = list(check_text_first(text_first))
            self.repeat_question = check_repeat_question(self.repeat_question)
        except ConfigError as e:
            raise ConfigError(f"data.{e}") from None
        if self.repeat_question and not self.text_first:
            raise ConfigError("data.repeat_question needs data.text_first (the modalities to ask)")
        self.data_root = _path("data.data_root", self.data_root)
        check_range("data.max_length", self.max_length, integer=True, at_least=1)
        check_range("data.num_workers", self.num_workers, integer=True, at_least=0)
        check_range("data.max_skip_attempts", self.max_skip_attempts, integer=True, at_least=1)
        check_bool("data.group_by_length", self.group_by_length)
        check_bool("data.packing", self.packing)
        check_mapping("data.compression", self.compression)
        for modality, ratio in self.compression.items():
            if modality not in COMPRESSED_MODALITIES:
                raise ConfigError(
                    f"data.compression: unknown modality {modality!r}; "
                    f"choose from {COMPRESSED_MODALITIES}"
                )
            check_ratio(ratio, f"data.compression.{modality}", ConfigError)
        for name in ("image", "video", "multiview"):
            check_mapping(f"data.{name}", getattr(self, name))
        # build the options now: a bad key fails at load time, named
        self.image_options()
        self.video_options()
        self.multiview_options()

    def image_options(self):
        """``image`` as :class:`~oryx_mllm.processing.options.ImageOptions`."""
        return _options("data.image", image_options_from_dict, self.image)

    def video_options(self, **overrides):
        """``video`` (plus ``overrides``) as :class:`~oryx_mllm.processing.options.VideoOptions`."""
        return _options("data.video", video_options_from_dict, {**self.video, **overrides})

    def multiview_options(self):
        """The :class:`~oryx_mllm.processing.options.MultiViewOptions` of this data: views sized
        like ``video`` frames unless ``multiview.frame`` says otherwise."""
        mv = dict(self.multiview)
        frame = mv.pop("frame", None) or {}
        check_mapping("data.multiview.frame", frame)
        frame = {**self.video, **frame}
        return _options("data.multiview", multiview_options_from_dict, {**mv, "frame": frame})


@dataclass
class AlignSpec:
    """The patch-label loss (:mod:`oryx_mllm.train.patch_labels`): ``weight`` x the LM head's
    cross-entropy on the visual tokens of records with ``patch_text`` or ``frame_text``, added to the answer loss
    up to optimiser step ``until_step`` of the stage (null: every step). ``weight`` 0: off."""

    weight: float = 0.0
    until_step: int | None = None

    def __post_init__(self) -> None:
        check_range("align.weight", self.weight, at_least=0)
        if self.until_step is not None:
            check_range("align.until_step", self.until_step, integer=True, at_least=1)

    def active(self, step: int) -> bool:
        """Whether the loss applies at optimiser step ``step`` (1-based)."""
        return self.weight > 0 and (self.until_step is None or step <= self.until_step)


@dataclass
class LoraSpec:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )

    def __post_init__(self) -> None:
        check_range("stage.lora.r", self.r, integer=True, at_least=1)
        check_range("stage.lora.alpha", self.alpha, above=0)
        check_range("stage.lora.dropout", self.dropout, at_least=0, below=1)
        self.target_modules = _str_list("stage.lora.target_modules", self.target_modules)
        if not self.target_modules:
            raise ConfigError("stage.lora.target_modules must name at least one module")


@dataclass
class StageSpec:
    """Which module groups train. ``lora`` adds LoRA adapters to the language model (the
    OryxViT pre-training stage: encoder unfrozen, LLM through LoRA). ``trainable`` may be a
    single group name."""

    name: str = "custom"
    trainable: list[str] = field(default_factory=lambda: ["vision_resampler", "mm_projector"])
    lora: LoraSpec | None = None

    def __post_init__(self) -> None:
        _check_str("stage.name", self.name)
        if self.lora is not None:
            self.lora = _build(LoraSpec, self.lora, "stage.lora")
        self.trainable = _str_list("stage.trainable", self.trainable)
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
    every other trainable parameter uses ``lr``. All groups follow the same schedule.
    ``max_grad_norm``: clip gradients to this norm (0 or null: no clipping)."""

    lr: float = 2e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_ratio: float = 0.03
    schedule: str = "cosine"  # cosine | constant | linear
    max_grad_norm: float | None = 1.0
    group_lr: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_range("optim.lr", self.lr, above=0)
        check_range("optim.weight_decay", self.weight_decay, at_least=0)
        if not isinstance(self.betas, (list, tuple)) or len(self.betas) != 2:
            raise ConfigError(f"optim.betas must be two numbers, got {self.betas!r}")
        for beta in self.betas:
            check_range("optim.betas", beta, at_least=0, below=1)
        self.betas = tuple(self.betas)
        check_range("optim.warmup_ratio", self.warmup_ratio, at_least=0, at_most=1)
        if self.schedule not in ("cosine", "constant", "linear"):
            raise ConfigError(f"optim.schedule {self.schedule!r} not in cosine/constant/linear")
        if self.max_grad_norm is not None:
            check_range("optim.max_grad_norm", self.max_grad_norm, at_least=0)
        check_mapping("optim.group_lr", self.group_lr)
        bad = sorted(set(self.group_lr) - set(MODULE_GROUPS))
        if bad:
            raise ConfigError(
                f"optim.group_lr has unknown groups {bad}; choose from {MODULE_GROUPS}"
            )
        for group, lr in self.group_lr.items():
            check_range(f"optim.group_lr.{group}", lr, above=0)


@dataclass
class TrainConfig:
    output_dir: str = "runs/oryx"
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    stage: StageSpec = field(default_factory=StageSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    align: AlignSpec = field(default_factory=AlignSpec)
    per_device_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    epochs: int = 1
    max_steps: int | None = None  # optimiser steps; overrides epochs when set
    # no | bf16 | fp16 | auto (bf16 where it is fast, else no: oryx_mllm.train.precision)
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    save_steps: int = 500
    # After each save, keep the checkpoint just saved and the N-1 saved before it, deleting older
    # ones; checkpoints newer than the one just saved (left by an earlier run) are never deleted.
    # 0 or null keeps them all.
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
            ("align", AlignSpec),
        ):
            setattr(self, name, _build(cls, getattr(self, name), name))
        self.output_dir = _path("output_dir", self.output_dir)
        if Path(self.output_dir).exists() and not Path(self.output_dir).is_dir():
            raise ConfigError(f"output_dir {self.output_dir} exists and is not a folder")
        self.mixed_precision = mixed_precision_value(self.mixed_precision)
        if self.mixed_precision not in MIXED_PRECISION_VALUES:
            raise ConfigError(
                f"mixed_precision {self.mixed_precision!r} not in {'/'.join(MIXED_PRECISION_VALUES)}"
            )
        for name in (
            "per_device_batch_size",
            "gradient_accumulation_steps",
            "epochs",
            "save_steps",
            "log_steps",
        ):
            check_range(name, getattr(self, name), integer=True, at_least=1)
        if self.max_steps is not None:
            check_range("max_steps", self.max_steps, integer=True, at_least=1)
        if self.save_total_limit is not None:
            check_range("save_total_limit", self.save_total_limit, integer=True, at_least=0)
        check_range("seed", self.seed, integer=True, at_least=0, at_most=2**32 - 1)
        check_bool("gradient_checkpointing", self.gradient_checkpointing)
        check_bool("progress", self.progress)
        if isinstance(self.resume, os.PathLike):
            self.resume = os.fspath(self.resume)
        if self.resume is not None and not (isinstance(self.resume, str) and self.resume):
            raise ConfigError(
                f"resume must be 'auto', a checkpoint folder or null, got {self.resume!r}"
            )
        self.report_to = _str_list("report_to", self.report_to)
        bad = sorted(set(self.report_to) - set(REPORTERS))
        if bad:
            raise ConfigError(f"report_to has unknown entries {bad}; choose from {REPORTERS}")
        if self.align.weight > 0 and self.data.packing:
            raise ConfigError("align (the patch-label loss) is not supported with data.packing")
        self._check_stages()

    def _check_stages(self) -> None:
        if not isinstance(self.stages, list):
            raise ConfigError(f"stages must be a list of mappings, got {self.stages!r}")
        names = set()
        for i, st in enumerate(self.stages):
            if not isinstance(st, dict) or "name" not in st:
                raise ConfigError(f"stages[{i}] must be a mapping with a 'name'")
            name = st["name"]
            if not isinstance(name, str) or not _STAGE_NAME.fullmatch(name) or name in _TAKEN:
                raise ConfigError(
                    f"stages[{i}]: name {name!r} must be a plain folder name (letters, digits, "
                    f"'_', '-', '.'; not {_TAKEN}) since the stage writes to output_dir/<name>"
                )
            if name in names:
                raise ConfigError(f"stages[{i}]: the name {name!r} is used by another stage")
            names.add(name)
            bad = sorted(set(st) - STAGE_KEYS)
            if bad:
                raise ConfigError(f"stages[{i}] ({name}): keys {bad} not in {sorted(STAGE_KEYS)}")
            for key in _MERGED:
                if key in st:
                    check_mapping(f"stages[{i}] ({name}).{key}", st[key])
            mixed = mixed_precision_value(st.get("mixed_precision", self.mixed_precision))
            if mixed != self.mixed_precision:
                raise ConfigError(
                    f"stages[{i}] ({name}): mixed_precision {st['mixed_precision']!r} differs from "
                    f"the run's {self.mixed_precision!r}; Accelerate fixes it once per process, so "
                    "set it at the top level for every stage"
                )
        stage_configs(self)  # every stage's merged config is checked now, not when it starts

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Keys a stage of a multi-stage recipe may set. ``data``, ``stage``, ``optim`` and ``align`` are
# merged key by key over the recipe's top-level sections; the others replace the top-level value.
STAGE_KEYS = frozenset(
    {
        "name",
        "data",
        "stage",
        "optim",
        "align",
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
_MERGED = ("data", "stage", "optim", "align")
_STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TAKEN = ("final", "summary.json")  # what a multi-stage run writes next to its stages' folders


def stage_configs(cfg: TrainConfig) -> list[TrainConfig]:
    """Expand a multi-stage recipe into one single-stage :class:`TrainConfig` per stage.

    Policy (the paper trains in stages, each starting from the previous stage's weights):

    - stage ``i`` writes to ``output_dir/<name>`` (names are unique plain folder names); stage 0
      builds the model from ``model``, stage ``i > 0`` loads
      ``output_dir/<name of stage i-1>/final``;
    - ``data``, ``stage`` and ``optim`` of a stage are merged key by key over the top-level
      sections (so a stage only states what changes); other keys replace the top-level value;
    - ``resume: auto`` / ``null`` applies to every stage (``auto`` continues an interrupted stage
      from its checkpoint and passes over finished ones). An explicit ``resume: <checkpoint>``
      applies to the one stage whose folder holds that checkpoint (the first stage when none
      does); the other stages resume ``auto``.

    A recipe without ``stages`` is returned as the single config it is.
    """
    if not cfg.stages:
        return [cfg]
    base = cfg.to_dict()
    base.pop("stages")
    dirs = [Path(cfg.output_dir) / st["name"] for st in cfg.stages]
    owner = 0  # the stage an explicit resume checkpoint belongs to
    if cfg.resume not in (None, "auto"):
        target = Path(cfg.resume).resolve()
        owner = next((i for i, d in enumerate(dirs) if target.is_relative_to(d.resolve())), 0)
    out: list[TrainConfig] = []
    for i, st in enumerate(cfg.stages):
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
        d["output_dir"] = str(dirs[i])
        if cfg.resume not in (None, "auto") and i != owner:
            d["resume"] = "auto"
        if i > 0:
            d["model"] = {**d["model"], "path": str(dirs[i - 1] / "final")}
            d["model"].update(  # built by the first stage; its saved config carries them
                vision_config=None, llm_config=None, llm=None, vision_tower=None,
                visual_token_norm=None,
            )  # fmt: skip
            d["model"]["tokenizer"] = None
        try:
            out.append(TrainConfig(**d))
        except ConfigError as e:
            raise ConfigError(f"stages[{i}] ({st['name']}): {e}") from e
    return out


def _check_keys(cls, data: dict, where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown keys in recipe section '{where}': {unknown}")


def _build(cls, data, where: str):
    """``cls`` from its recipe section (a mapping; an instance is kept as it is)."""
    if isinstance(data, cls):
        return data
    check_mapping(where, data)
    _check_keys(cls, data, where)
    return cls(**data)


def _parse_value(item: str, text: str) -> Any:
    try:
        return read_yaml(text)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or e
        raise ConfigError(f"override {item!r}: the value is not valid YAML: {problem}") from e


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
        node[parts[-1]] = _parse_value(item, value)
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
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not a text (UTF-8) file: {exc}") from exc
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
    """Read a YAML recipe. Relative paths in it (data, model, output_dir) are used as written,
    i.e. relative to the working directory, not to the recipe's folder: the shipped recipes are
    run from the repository root (``oryx train recipes/tiny.yaml``)."""
    return load_typed_yaml(TrainConfig, path, overrides, "recipe")
