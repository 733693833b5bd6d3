"""The training loop: one code path from a single CPU process to many GPUs.

Distribution is Hugging Face Accelerate's: launch with ``accelerate launch`` (DDP, FSDP or
DeepSpeed ZeRO-2/3 via the configs in ``recipes/accelerate/``) or ``torchrun``; a plain
``python``/``oryx train`` run is one process. On CPU the gloo backend is used.

Batching: the sampler's global batch is ``per_device_batch_size * accumulation * world_size``
samples of one modality; each rank's loader batch is one optimiser step and is split into
``accumulation`` micro-batches. Gradients of all but the last micro-batch are not synchronised.
So one process with accumulation 2 sees exactly the samples that two processes with
accumulation 1 see, step for step, and computes the same update. With ``data.packing`` each
micro-batch is packed padding-free into rows of at most ``data.max_length`` tokens (one forward
per row, attention kept within samples, see :mod:`oryx_mllm.train.packing`); the micro-batch's
loss is still the token-weighted mean over its samples.

Checkpoints (``output_dir/checkpoints/step-N``) hold the Accelerate state (model, optimiser,
scheduler, RNG) plus ``trainer_state.json`` (step, epoch, position in the epoch); each is written
to a temporary folder, flushed to disk, marked complete by ``trainer_state.json`` and renamed into
place, so a run killed mid-save (or a crash of the machine) loses nothing already saved.
``resume: auto`` continues from the newest complete checkpoint that loads, at the exact step and
data position (see :func:`resume_state`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch.utils.data import DataLoader

from oryx_mllm.checks import check_number
from oryx_mllm.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    MediaNotFoundError,
    TrainingError,
)
from oryx_mllm.files import fsync_path, read_json
from oryx_mllm.train.config import TrainConfig, stage_configs
from oryx_mllm.train.data import OryxJsonDataset, SkipCollate, SkippingDataset, SkipStats
from oryx_mllm.train.packing import check_packing_support, lm_loss_sum, packed_attention_kwargs
from oryx_mllm.train.precision import resolve_mixed_precision, warn_if_slow_bf16
from oryx_mllm.train.records import iter_json_records, parse_sample
from oryx_mllm.train.sampler import ModalityLengthGroupedSampler
from oryx_mllm.train.stages import apply_stage, optimizer_groups, trainable_groups
from oryx_mllm.train.transform import MicroBatchCollator, TrainTransform

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)  # mean loss per optimiser step (this run)
    skipped: int = 0
    output_dir: str = ""
    final_model: str | None = None


# Model ------------------------------------------------------------------------------------------


def build_model(cfg: TrainConfig):
    """The model and tokenizer a recipe names (see :class:`~oryx_mllm.train.config.ModelSpec`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from oryx_mllm.checkpoint import load_tokenizer
    from oryx_mllm.config import OryxConfig
    from oryx_mllm.model import OryxForConditionalGeneration
    from oryx_mllm.processing.chat import ensure_visual_token
    from oryx_mllm.vision import OryxViT, OryxViTConfig

    spec = cfg.model
    for name in ("path", "tokenizer", "llm", "vision_tower"):  # before transformers looks online
        path = getattr(spec, name)
        if path and not Path(path.removeprefix("siglip:")).exists():
            raise CheckpointError(f"model.{name}: {path} does not exist")
    if spec.path:  # an Oryx folder: its config.json is ours, which AutoTokenizer cannot read
        tokenizer = load_tokenizer(spec.tokenizer or spec.path)
        model = OryxForConditionalGeneration.from_pretrained(
            spec.path, tokenizer=tokenizer, vision_tower=spec.vision_tower
        )
        return model, tokenizer
    tok_path = spec.tokenizer or spec.llm
    if tok_path is None:
        raise ConfigError("model: give path, or tokenizer (+ llm or llm_config)")
    tokenizer = AutoTokenizer.from_pretrained(tok_path)
    visual_id = ensure_visual_token(tokenizer)

    if spec.vision_tower and spec.vision_tower.startswith("siglip:"):
        from oryx_mllm.vision.siglip import load_from_siglip

        vision_overrides = spec.vision_config or {}
        tower = load_from_siglip(spec.vision_tower.removeprefix("siglip:"), **vision_overrides)
    elif spec.vision_tower:
        vc = OryxViTConfig.from_dict(spec.vision_config) if spec.vision_config else None
        tower = OryxViT.from_pretrained(spec.vision_tower, config=vc)
    else:
        tower = OryxViT(OryxViTConfig.from_dict(spec.vision_config or {}))

    if spec.llm:
        llm = AutoModelForCausalLM.from_pretrained(spec.llm)
        llm_config = llm.config
    elif spec.llm_config:
        llm_config = spec.llm_transformers_config()
        llm = AutoModelForCausalLM.from_config(llm_config)
    else:
        raise ConfigError("model: give llm (a folder) or llm_config (a dict) for the backbone")
    config = OryxConfig.from_llm_config(
        llm_config,
        vision_config=tower.config,
        compressor_mid_size=spec.compressor_mid_size,
        visual_token_norm=spec.visual_token_norm,
        visual_token_id=visual_id,
    )
    model = OryxForConditionalGeneration(config, language_model=llm, vision_tower=tower)
    return model, tokenizer


# Checkpoints ------------------------------------------------------------------------------------


def checkpoint_dir(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def _checkpoint_step(path: Path) -> int | None:
    """N for a folder named ``step-N``, None for any other name."""
    m = re.fullmatch(r"step-([0-9]+)", path.name)
    return int(m.group(1)) if m else None


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """The complete checkpoints of a run, oldest first (temporary folders of an interrupted save
    and folders not named ``step-<int>`` are ignored)."""
    root = checkpoint_dir(output_dir)
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if _checkpoint_step(p) is not None]
    return sorted((p for p in done if (p / STATE_FILE).exists()), key=_checkpoint_step)


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint (see :func:`complete_checkpoints`)."""
    done = complete_checkpoints(output_dir)
    return done[-1] if done else None


def tied_parameter_names(model: torch.nn.Module) -> frozenset[str]:
    """Names under which one parameter appears more than once (an LLM's ``lm_head.weight`` tied
    to its input embeddings is the same ``Parameter`` object under two names)."""
    by_param: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_param.setdefault(id(p), []).append(name)
    return frozenset(n for names in by_param.values() if len(names) > 1 for n in names)


class _TiedWeightsFilter(logging.Filter):
    """Drops accelerate's "Removed shared tensor {...} while saving" warning (logged at every
    checkpoint) when every name it lists is a tied weight: the tie is made again when the model
    is built, before a checkpoint loads into it, so nothing is lost (a resumed run gives the
    same losses: tests/train/test_trainer.py). Any other shared tensor still warns."""

    PATTERN = re.compile(r"Removed shared tensor (\{.*?\}) while saving")

    def __init__(self, tied: frozenset[str]):
        super().__init__()
        self.tied = tied

    def filter(self, record: logging.LogRecord) -> bool:
        match = self.PATTERN.search(record.getMessage())
        if match is None:
            return True
        names = set(re.findall(r"'([^']*)'", match.group(1)))
        return not names or not all(n.removeprefix("module.") in self.tied for n in names)


@contextlib.contextmanager
def _tied_weights_quiet(tied: frozenset[str]):
    target = logging.getLogger("accelerate.utils.other")  # where accelerate logs it
    quiet = _TiedWeightsFilter(tied)
    target.addFilter(quiet)
    try:
        yield
    finally:
        target.removeFilter(quiet)


def save_checkpoint(
    accelerator, output_dir: Path, state: dict, cfg: TrainConfig, tied: frozenset[str] = frozenset()
) -> Path:
    """Save the run's state atomically (a hidden folder renamed once complete). ``tied``: the
    model's tied parameter names, whose removal from the saved weights is expected."""
    root = checkpoint_dir(output_dir)
    final = root / f"step-{state['step']}"
    tmp = root / f".tmp-step-{state['step']}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    with _tied_weights_quiet(tied):
        accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        import yaml

        (tmp / "recipe.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        for path in [*tmp.rglob("*"), tmp]:  # on disk before the marker says "complete"
            fsync_path(path)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")  # marks it complete
        fsync_path(tmp / STATE_FILE)
        fsync_path(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_path(root)
        _prune(output_dir, final, cfg.save_total_limit)
    accelerator.wait_for_everyone()
    return final


def _prune(output_dir: Path, saved: Path, keep: int | None) -> None:
    """Keep ``saved`` and the ``keep - 1`` checkpoints before it (``keep`` 0/None: keep all).
    Newer checkpoints (left by an earlier run) are never removed."""
    if not keep:
        return
    done = complete_checkpoints(output_dir)
    older = done[: done.index(saved)]
    for old in older[: max(len(older) - keep + 1, 0)]:
        shutil.rmtree(old, ignore_errors=True)


# What a failed load of a checkpoint's files raises (torch.load of a truncated file: RuntimeError,
# EOFError or UnpicklingError; a model/optimiser that does not fit: RuntimeError, ValueError).
_LOAD_ERRORS = (
    OSError,
    ValueError,
    RuntimeError,
    KeyError,
    EOFError,
    pickle.UnpicklingError,
    SafetensorError,
)


def read_trainer_state(ckpt: Path) -> dict:
    """A checkpoint's ``trainer_state.json``, checked."""
    state = read_json(ckpt / STATE_FILE, CheckpointError)  # names ckpt/trainer_state.json
    for key in ("step", "epoch", "consumed"):
        name = f"checkpoint {ckpt}: {STATE_FILE} {key}"
        check_number(name, state.get(key), integer=True, error=CheckpointError)
    return state


def load_checkpoint(accelerator, ckpt: Path) -> dict:
    """Restore model, optimiser, scheduler and RNG from ``ckpt``; returns its trainer state.
    A checkpoint that is incomplete, corrupt or saved for other trainable parameters is a
    :class:`CheckpointError` naming it."""
    if not (ckpt / STATE_FILE).is_file():
        raise CheckpointError(f"checkpoint {ckpt} is not a complete checkpoint (no {STATE_FILE})")
    state = read_trainer_state(ckpt)
    try:
        accelerator.load_state(str(ckpt))
    except _LOAD_ERRORS as e:
        hint = ""
        if "parameter group" in str(e):
            hint = " (was it saved with other stage.trainable, stage.lora or optim.group_lr?)"
        raise CheckpointError(
            f"checkpoint {ckpt} cannot be loaded: {type(e).__name__}: {e}{hint}"
        ) from e
    logger.info("resumed from %s at step %d", ckpt, state["step"])
    return state


def resume_state(accelerator, cfg: TrainConfig, output_dir: Path) -> dict | None:
    """Load the checkpoint the run continues from and return its trainer state (None: start
    from step 0).

    ``resume: auto`` tries the complete checkpoints newest first, skipping (with a warning) any
    that does not load; when there are checkpoints but none loads it raises, rather than start
    over silently. An explicit ``resume: <checkpoint>`` that does not load raises.
    """
    if cfg.resume != "auto":
        return load_checkpoint(accelerator, Path(cfg.resume)) if cfg.resume else None
    failed = []
    for ckpt in reversed(complete_checkpoints(output_dir)):
        try:
            return load_checkpoint(accelerator, ckpt)
        except CheckpointError as e:
            logger.warning("resume: auto skips %s: %s", ckpt.name, e)
            failed.append(str(e))
    if failed:
        raise CheckpointError(
            f"resume: auto: no checkpoint in {checkpoint_dir(output_dir)} loads "
            f"({'; '.join(failed)}); repair or remove them, or set resume: null to start over"
        )
    return None


# Metrics ----------------------------------------------------------------------------------------


class MetricsWriter:
    """Appends one JSON line per logged step to ``metrics.jsonl``; mirrors to TensorBoard."""

    def __init__(self, output_dir: Path, report_to: list[str], enabled: bool):
        self.enabled = enabled
        self.jsonl = output_dir / "metrics.jsonl" if "jsonl" in report_to else None
        self.tb = None
        if enabled and "tensorboard" in report_to:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(output_dir / "tensorboard"))
            except ImportError:
                logger.warning("tensorboard is not installed; logging to metrics.jsonl only")

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        if self.jsonl is not None:
            with open(self.jsonl, "a") as fh:
                fh.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# The loop ---------------------------------------------------------------------------------------


def _scheduler(optimizer, cfg: TrainConfig, total_steps: int):
    from transformers import get_scheduler

    warmup = int(math.ceil(cfg.optim.warmup_ratio * total_steps))
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
    return get_scheduler(name[cfg.optim.schedule], optimizer, warmup, total_steps)


def batch_to_device(batch: dict, device: torch.device) -> dict:
    """A collated batch's tensors on ``device`` (the model moves visual inputs itself)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def set_attn_implementation(language_model, impl: str) -> None:
    """Switch a transformers model's attention backend (``sdpa``, ``eager``, ...)."""
    if hasattr(language_model, "set_attn_implementation"):
        language_model.set_attn_implementation(impl)
    else:  # older transformers
        language_model.config._attn_implementation = impl


def packed_targets(row: dict, visual_token_id: int | None) -> torch.Tensor:
    """A packed row's labels with visual placeholders ignored (as in the model's own loss)."""
    labels = row["labels"]
    if visual_token_id is not None:
        labels = labels.masked_fill(row["input_ids"] == visual_token_id, -100)
    return labels


def packed_row_loss(model, row: dict, attn_implementation: str, device, visual_token_id):
    """Forward one packed row (``MicroBatchCollator(packing=True)``); returns the summed
    next-token loss over its targets (float32 scalar) and their count."""
    input_ids = row["input_ids"].to(device)
    kwargs = packed_attention_kwargs(
        row["position_ids"].to(device),
        row["cu_seqlens"],
        row["max_seqlen"],
        attn_implementation,
        model_unwrapped(model).dtype,
    )
    out = model(input_ids=input_ids, visual_inputs=row["visual_inputs"], **kwargs)
    return lm_loss_sum(out.logits, packed_targets(row, visual_token_id).to(device))


def connect_trainable(model):
    """Make a forward of ``model`` whose loss (or, without labels, its logits) depends on no
    trainable parameter add ``0 * sum(trainable parameters)`` to it, until the returned hook
    handle is removed.

    That happens for a text-only micro-batch while the language model is frozen (stage 1a: only
    the connector trains); the backward would fail with ``element 0 of tensors does not require
    grad``. With the term the step trains normally: the frozen parts get nothing, the trainable
    parameters a zero gradient. It is added by a forward hook, inside the forward, so that DDP
    (``find_unused_parameters``) sees the parameters as used and every rank takes part in the
    same gradient all-reduce; a term added after DDP's forward would get its parameters marked
    ready twice.
    """

    def hook(module, args, output):
        name = "loss" if getattr(output, "loss", None) is not None else "logits"
        value = getattr(output, name, None)
        if not torch.is_grad_enabled() or value is None or value.requires_grad:
            return output
        trainable = [p for p in module.parameters() if p.requires_grad]
        if trainable:
            zero = sum(p.sum() for p in trainable) * 0.0
            setattr(output, name, value + zero.to(value.dtype))
        return output

    return model.register_forward_hook(hook)


def train(cfg: TrainConfig, model=None, tokenizer=None) -> TrainResult:
    """Run the recipe. ``model``/``tokenizer`` may be passed in (tests, notebooks).

    A multi-stage recipe (``stages:``) runs its stages in order (see
    :func:`~oryx_mllm.train.config.stage_configs`); the last stage's final model is copied to
    ``output_dir/final`` and the returned result is the last stage's, with ``steps`` and
    ``losses`` summed/concatenated over all stages.
    """
    check_attn_implementation(cfg.model.attn_implementation)
    if cfg.stages:
        return _train_stages(cfg, model, tokenizer)
    return _train_one(cfg, model, tokenizer)


def check_attn_implementation(impl: str | None) -> None:
    """Stop at the start of a run when ``model.attn_implementation`` cannot train here:
    ``flash_attention_N`` without its flash-attn build for a CUDA GPU (transformers' own
    ``is_flash_attn_N_available``), ``flex_attention`` without a GPU (FlexAttention has no
    backward on CPU)."""
    if impl is None:
        return
    import transformers.utils

    flash = re.search(r"flash_attention_([0-9]+)", impl)
    if flash is not None:
        available = getattr(transformers.utils, f"is_flash_attn_{flash.group(1)}_available", None)
        if available is not None and not available():
            raise ConfigError(
                f"model.attn_implementation {impl!r} needs the flash-attn package (the build for "
                "this version) and a CUDA GPU, and this machine lacks them: install flash-attn "
                "or use 'sdpa'"
            )
    if "flex_attention" in impl and not torch.cuda.is_available():
        raise ConfigError(
            f"model.attn_implementation {impl!r} cannot train without a CUDA GPU (FlexAttention "
            "has no backward on CPU): use 'sdpa'"
        )


# Data files of a later stage up to this size are parsed before the first stage trains; larger
# ones (parsed again when their stage starts) are only checked to exist.
PRECHECK_MAX_BYTES = 16 * 2**20


def check_stage_data(configs: list[TrainConfig]) -> None:
    """Before the first stage of a multi-stage run trains: every stage's data files exist and are
    files, and those of at most ``PRECHECK_MAX_BYTES`` hold valid records, so a mistake in a
    later stage's data stops the run now, not after the stages before it have trained. The error
    names the stage."""
    for i, sub in enumerate(configs):
        try:
            for name in sub.data.train:
                path = Path(name)
                if not path.exists():
                    raise MediaNotFoundError(f"data file not found: {path}")
                if not path.is_file():
                    raise DataError(f"data file {path} is not a file")
                if path.stat().st_size <= PRECHECK_MAX_BYTES:
                    for index, record in iter_json_records(path):
                        parse_sample(record, index=index, source=str(path))
        except DataError as e:
            raise type(e)(f"stages[{i}] ({Path(sub.output_dir).name}): {e}") from e


def _train_stages(cfg: TrainConfig, model=None, tokenizer=None) -> TrainResult:
    configs = stage_configs(cfg)
    check_stage_data(configs)
    steps, losses, skipped, timings = 0, [], 0, {}
    result = TrainResult(steps=0)
    for i, sub in enumerate(configs):
        t0 = time.perf_counter()
        result = _train_one(sub, model if i == 0 else None, tokenizer if i == 0 else None)
        timings[Path(sub.output_dir).name] = round(time.perf_counter() - t0, 1)
        steps, skipped = steps + result.steps, skipped + result.skipped
        losses += result.losses
    output_dir = Path(cfg.output_dir)
    final = output_dir / "final"
    if result.final_model is not None:  # main process
        shutil.rmtree(final, ignore_errors=True)
        shutil.copytree(result.final_model, final)
        summary = {
            "stages": [Path(c.output_dir).name for c in configs],
            "seconds": timings,
            "steps": steps,
        }
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        result.final_model = str(final)
    result.steps, result.losses, result.skipped = steps, losses, skipped
    result.output_dir = str(output_dir)
    return result


def _train_one(cfg: TrainConfig, model=None, tokenizer=None) -> TrainResult:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType, set_seed

    # a text-only micro-batch leaves the connector unused: DDP must tolerate that
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    # without CUDA, run on CPU; under torchrun/accelerate launch that means gloo across processes
    mixed_precision = resolve_mixed_precision(cfg.mixed_precision)
    if cfg.mixed_precision == "auto":
        logger.info("mixed_precision auto: %s on this machine", mixed_precision)
    warn_if_slow_bf16(mixed_precision)
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        kwargs_handlers=[ddp],
        # One scheduler step per optimiser step on every process. Accelerate's default steps a
        # prepared scheduler num_processes times per call, which runs the schedule N times too
        # fast under N processes (the cosine reaches 0 at max_steps / N, then rises again).
        step_scheduler_with_optimizer=False,
        cpu=not torch.cuda.is_available(),
    )
    set_seed(cfg.seed)
    output_dir = Path(cfg.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    if model is None:
        model, tokenizer = build_model(cfg)
    if cfg.model.attn_implementation:
        set_attn_implementation(model.language_model, cfg.model.attn_implementation)
    attn_impl = check_packing_support(model.language_model) if cfg.data.packing else None
    visual_token_id = model.config.visual_token_id
    trainable = apply_stage(model, cfg.stage)
    if not trainable:
        raise ConfigError(f"stage {cfg.stage.name!r} leaves no parameter trainable")
    if cfg.gradient_checkpointing:
        model.vision_tower.config.gradient_checkpointing = True
        if hasattr(model.language_model, "gradient_checkpointing_enable"):
            model.language_model.gradient_checkpointing_enable()

    # data
    accum, world = cfg.gradient_accumulation_steps, accelerator.num_processes
    step_batch = cfg.per_device_batch_size * accum  # samples per rank per optimiser step
    transform = TrainTransform(
        tokenizer,
        model.config.visual_token_id,
        cfg.data,
        model.config.patch_size,
        patch_labels=cfg.align.weight > 0,
    )
    base = OryxJsonDataset(cfg.data.train, cfg.data.data_root, transform=transform)
    if len(base) == 0:
        raise ConfigError(f"no training samples in {cfg.data.train}")
    dataset = SkippingDataset(base, seed=cfg.seed, max_attempts=cfg.data.max_skip_attempts)
    sampler = ModalityLengthGroupedSampler(
        base.lengths,
        base.modalities,
        step_batch,
        world_size=world,
        rank=accelerator.process_index,
        seed=cfg.seed,
        megabatch_mult=8 if cfg.data.group_by_length else 1,
    )
    steps_per_epoch = sampler.samples_per_epoch // (step_batch * world)
    total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs

    # optimiser
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        optimizer_groups(model, cfg.optim),
        lr=cfg.optim.lr,
        betas=cfg.optim.betas,
        weight_decay=cfg.optim.weight_decay,
    )
    scheduler = _scheduler(optimizer, cfg, total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    # resume
    step, epoch, consumed = 0, 0, 0
    state = resume_state(accelerator, cfg, output_dir)
    if state is not None:
        step, epoch, consumed = state["step"], state["epoch"], state["consumed"]

    collate = SkipCollate(
        MicroBatchCollator(
            tokenizer.pad_token_id, accum, packing=cfg.data.packing, max_length=cfg.data.max_length
        )
    )
    metrics = MetricsWriter(output_dir, cfg.report_to, accelerator.is_main_process)
    stats = SkipStats()
    result = TrainResult(steps=step, output_dir=str(output_dir))
    if accelerator.is_main_process:
        logger.info("trainable parameters per group: %s", trainable_groups(model_unwrapped(model)))

    progress = _Progress(cfg.progress and accelerator.is_main_process, total_steps, step)
    model.train()
    tokens_seen, t0 = 0, time.perf_counter()
    connection = connect_trainable(model_unwrapped(model))
    tied = tied_parameter_names(model_unwrapped(model))
    try:
        while step < total_steps:
            sampler.set_epoch(epoch, consumed)
            loader = DataLoader(
                dataset,
                batch_size=step_batch,
                sampler=sampler,
                collate_fn=collate,
                num_workers=cfg.data.num_workers,
                persistent_workers=False,
            )
            for batch in loader:
                stats.add(batch.skipped)
                loss_sum, n_tokens, visual_sum = 0.0, 0, 0.0
                align = cfg.align.active(step + 1)  # the patch-label loss at this step
                micro = batch.data
                for i, mb in enumerate(micro):
                    last = i == len(micro) - 1
                    if mb.get("packed"):
                        # one forward/backward per row, each weighted by its share of the
                        # micro-batch's targets; only the very last backward syncs gradients
                        rows = mb["rows"]
                        n_targets = sum(
                            int((packed_targets(r, visual_token_id)[:, 1:] != -100).sum())
                            for r in rows
                        )
                        for j, row in enumerate(rows):
                            sync = last and j == len(rows) - 1
                            ctx = (
                                accelerator.no_sync(model) if not sync else contextlib.nullcontext()
                            )
                            with ctx, accelerator.autocast():
                                row_sum, _ = packed_row_loss(
                                    model, row, attn_impl, accelerator.device, visual_token_id
                                )
                                loss = row_sum / max(n_targets, 1) / len(micro)
                                accelerator.backward(loss)
                            loss_sum += loss.detach().float()
                            n_tokens += row["input_ids"].numel()
                        continue
                    mb = batch_to_device(mb, accelerator.device)
                    ctx = accelerator.no_sync(model) if not last else contextlib.nullcontext()
                    with ctx, accelerator.autocast():
                        out = model(
                            input_ids=mb["input_ids"],
                            attention_mask=mb["attention_mask"],
                            visual_inputs=mb["visual_inputs"],
                            labels=mb["labels"],
                            visual_labels=mb.get("visual_labels") if align else None,
                        )
                        loss = out.loss / len(micro)
                        if align and mb.get("visual_labels") is not None:
                            visual = out.visual_loss / len(micro)
                            accelerator.backward(loss + cfg.align.weight * visual)
                            visual_sum += visual.detach().float()
                        else:
                            accelerator.backward(loss)
                    loss_sum += loss.detach().float()
                    n_tokens += int(mb["attention_mask"].sum())
                # the same value on every rank: all of them stop together on a non-finite loss
                mean_loss = accelerator.reduce(
                    torch.as_tensor(loss_sum, device=accelerator.device), "mean"
                ).item()
                if align:
                    mean_visual = accelerator.reduce(
                        torch.as_tensor(visual_sum, device=accelerator.device), "mean"
                    ).item()
                    mean_loss_total = mean_loss + cfg.align.weight * mean_visual
                else:
                    mean_loss_total = mean_loss
                if not math.isfinite(mean_loss_total):
                    # under DeepSpeed accelerate's backward has already run the engine's step
                    updated = accelerator.distributed_type == DistributedType.DEEPSPEED
                    raise TrainingError(
                        _diverged(mean_loss_total, step + 1, cfg, output_dir, updated=updated)
                    )
                if cfg.optim.max_grad_norm:
                    accelerator.clip_grad_norm_(params, cfg.optim.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                consumed += step_batch * world
                tokens_seen += int(
                    accelerator.reduce(torch.tensor(n_tokens, device=accelerator.device), "sum")
                )
                result.losses.append(mean_loss)
                elapsed = time.perf_counter() - t0
                lr = scheduler.get_last_lr()[0]
                if step % cfg.log_steps == 0 or step == total_steps:
                    metrics.write(
                        step,
                        {
                            "loss": mean_loss,
                            "lr": lr,
                            "epoch": epoch,
                            "tokens_per_s": tokens_seen / max(elapsed, 1e-9),
                            "skipped": stats.total,
                            **({"visual_loss": mean_visual} if align else {}),
                        },
                    )
                progress.update(step, mean_loss, lr, tokens_seen / max(elapsed, 1e-9))
                if step % cfg.save_steps == 0 or step == total_steps:
                    state = {"step": step, "epoch": epoch, "consumed": consumed, "seed": cfg.seed}
                    if consumed >= sampler.samples_per_epoch:
                        state.update(epoch=epoch + 1, consumed=0)
                    save_checkpoint(accelerator, output_dir, state, cfg, tied)
                if step >= total_steps:
                    break
            else:
                epoch, consumed = epoch + 1, 0
                continue
            if consumed >= sampler.samples_per_epoch:
                epoch, consumed = epoch + 1, 0
    finally:
        connection.remove()
        progress.close()
        metrics.close()

    result.steps = step
    stats = all_ranks_skip_stats(stats, accelerator.num_processes)
    result.skipped = stats.total
    if stats.total and accelerator.is_main_process:
        logger.warning("skipped samples: %s", stats.summary())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = output_dir / "final"
        unwrapped = model_unwrapped(accelerator.unwrap_model(model))
        _save_final(unwrapped, tokenizer, final)
        _save_processor_config(cfg, tokenizer, unwrapped.config.patch_size, final)
        result.final_model = str(final)
        (output_dir / "summary.json").write_text(
            json.dumps(
                {
                    "steps": step,
                    "final_loss": result.losses[-1] if result.losses else None,
                    "skipped_samples": stats.total,
                    "skipped_by_error": dict(stats.by_error),
                },
                indent=2,
            )
            + "\n"
        )
    accelerator.wait_for_everyone()
    accelerator.free_memory()  # drop the prepared model/optimizer/loaders (see close_process_group)
    return result


def _diverged(
    loss: float, step: int, cfg: TrainConfig, output_dir: Path, updated: bool = False
) -> str:
    """The message of a run stopped by a non-finite loss at optimiser step ``step``;
    ``updated``: the step's update was already applied (DeepSpeed steps inside backward)."""
    last = latest_checkpoint(output_dir)
    when = "after the update (DeepSpeed applies it in backward)" if updated else "before the update"
    saved = (
        f"the last checkpoint is {last} (its step's loss was finite)"
        if last is not None
        else "no checkpoint was saved"
    )
    return (
        f"the training loss is {loss} at step {step}: stopped {when}, without saving "
        f"a final model; {saved}. Lower optim.lr (now {cfg.optim.lr:g}) or check the data"
    )


def all_ranks_skip_stats(stats: SkipStats, num_processes: int, gather=None) -> SkipStats:
    """Every process skips its own bad samples: the run's totals are the sum over processes
    (``gather``: accelerate's ``gather_object``, every rank's list concatenated)."""
    if num_processes == 1:
        return stats
    if gather is None:
        from accelerate.utils import gather_object as gather
    total = SkipStats()
    for rank_stats in gather([stats]):
        total.merge(rank_stats)
    return total


def model_unwrapped(model):
    return getattr(model, "module", model)


def _save_final(model, tokenizer, final: Path) -> None:
    """Save the whole model (LoRA adapters merged into the language model)."""
    if hasattr(model.language_model, "merge_and_unload"):  # peft: fold LoRA into the weights
        model.language_model = model.language_model.merge_and_unload()
    model.save_pretrained(final, tokenizer=tokenizer)


def _save_processor_config(cfg: TrainConfig, tokenizer, patch_size: int, final: Path) -> None:
    """``processor_config.json`` with the preprocessing options the model was trained with, so
    :class:`~oryx_mllm.pipeline.OryxPipeline` preprocesses like training did."""
    from oryx_mllm.processing.processor import OryxProcessor

    OryxProcessor(
        tokenizer,
        patch_size=patch_size,
        image_options=cfg.data.image_options(),
        video_options=cfg.data.video_options(),
        multiview_options=cfg.data.multiview_options(),
        text_first=cfg.data.text_first,
        repeat_question=cfg.data.repeat_question,
    ).save_pretrained(final)


class _Progress:
    """A rich progress bar with loss, lr and tokens/s (main process only)."""

    def __init__(self, enabled: bool, total: int, start: int):
        self.bar = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
            )
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def update(self, step: int, loss: float, lr: float, tps: float) -> None:
        if self.bar is not None:
            info = f"loss {loss:.4f} lr {lr:.2e} {tps:,.0f} tok/s"
            self.bar.update(self.task, completed=step, info=info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
