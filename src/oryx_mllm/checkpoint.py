"""Model checkpoints: the released Oryx layout (names, shards, tokenizer) read and written
through the atomic file writes of :mod:`oryx_mllm.files`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from oryx_mllm.errors import CheckpointError, ConfigError
from oryx_mllm.files import atomic_write, atomic_write_all, json_writer, read_json

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``None``/``"auto"`` (the checkpoint's), a torch dtype, or one of :data:`DTYPES`' names."""
    if dtype is None or dtype == "auto":
        return None
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[name]


def check_device(device) -> None:
    """A device that names a GPU this machine lacks is a config error, not a deep torch assertion
    at the first ``.to()``. Anything that is not a device string (``None``, a ``device_map``
    dict, ``"auto"``) passes."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or device in ("auto", "cpu"):
        return
    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: {exc}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but no CUDA GPU is available here")


def safetensors_writer(
    state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Callable[[str], None]:
    """A ``write(tmp_path)`` for :func:`atomic_write` that saves ``state_dict`` as safetensors."""

    def write(tmp: str) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        save_file(tensors, tmp, metadata=metadata)

    return write


def atomic_save_safetensors(
    state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    atomic_write(path, safetensors_writer(state_dict, metadata))


# Whole-model checkpoints ------------------------------------------------------------------------
# Released names -> our module names. Anything else belongs to the language model.
RELEASED_PREFIXES = {
    "model.vision_tower.vision_tower.": "vision_tower.",
    "model.vision_resampler.": "vision_resampler.",
    "model.mm_projector.": "mm_projector.",
}
WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
DEFAULT_SHARD_BYTES = 4 * 1024**3
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def to_released_names(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our module names (``vision_tower.*``, ``language_model.*``...) -> released names."""
    out = {}
    for key, value in state_dict.items():
        for released, ours in RELEASED_PREFIXES.items():
            if key.startswith(ours):
                out[released + key[len(ours) :]] = value
                break
        else:
            out[key.removeprefix("language_model.")] = value
    return out


def connector_key(released_key: str) -> str | None:
    """Our name for a released vision/connector key, or None for a language-model key."""
    for released, ours in RELEASED_PREFIXES.items():
        if released_key.startswith(released):
            return ours + released_key[len(released) :]
    return None


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a ``save_pretrained`` folder: its shards (from the index) or its one
    file; a missing, index-less or incomplete set is a CheckpointError naming the file."""
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            if name.endswith(".index.json"):
                index = read_json(path, CheckpointError).get("weight_map")
                if not isinstance(index, dict):
                    raise CheckpointError(f"shard index {path} has no weight_map object")
                files = [folder / f for f in sorted(set(index.values()))]
                missing = [str(f) for f in files if not f.is_file()]
                if missing:
                    raise CheckpointError(f"{path} names shards that are missing: {missing}")
                return files
            return [path]
    raise CheckpointError(f"no weights in {folder} (looked for {', '.join(WEIGHT_FILES)})")


def _stale_weight_files(directory: Path, keep: set[Path]) -> list[Path]:
    """Weight files of an earlier save that are not in ``keep``; shard indexes first, since they
    would shadow a new single file."""
    found = [directory / name for name in WEIGHT_FILES]
    found += sorted(directory.glob("model-*-of-*.safetensors"))
    found += sorted(directory.glob("pytorch_model-*-of-*.bin"))
    return [path for path in found if path.is_file() and path not in keep]


def load_tokenizer(folder: str | Path):
    """The tokenizer saved in ``folder``, of the class ``AutoTokenizer`` picks from its
    ``tokenizer_config.json``. Any problem is a CheckpointError naming the folder or the file.

    The folder's ``config.json`` is an Oryx config that transformers cannot parse; left to read
    it, ``AutoTokenizer`` falls back to an empty config with a misleading "model of type
    `oryx_qwen`" warning, so it gets that empty config directly.
    """
    from transformers import AutoTokenizer, PretrainedConfig

    folder = Path(folder)
    try:
        return AutoTokenizer.from_pretrained(str(folder), config=PretrainedConfig())
    except Exception as exc:  # missing or corrupt tokenizer files raise many different types
        for name in ("tokenizer_config.json", "tokenizer.json"):
            if (folder / name).is_file():
                read_json(folder / name, CheckpointError)  # names a corrupt file
        if not any((folder / name).is_file() for name in TOKENIZER_FILES):
            raise CheckpointError(
                f"no tokenizer in {folder} (looked for {', '.join(TOKENIZER_FILES)})"
            ) from exc
        raise CheckpointError(f"cannot load the tokenizer in {folder}: {exc}") from exc


def read_connector_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The vision tower / compressor / projector tensors of a checkpoint, under our names."""
    from oryx_mllm.vision.encoder import load_state_dict_file

    out: dict[str, torch.Tensor] = {}
    for path in weight_files(Path(folder)):
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                with safe_open(str(path), framework="pt") as fh:
                    for key in fh.keys():
                        ours = connector_key(key)
                        if ours is not None:
                            out[ours] = fh.get_tensor(key)
            except Exception as exc:
                raise CheckpointError(f"cannot read weights file {path}: {exc}") from exc
        else:
            for key, value in load_state_dict_file(path).items():
                ours = connector_key(key)
                if ours is not None:
                    out[ours] = value
    return out


def _llm_shape_mismatches(folder: Path, llm_config, limit: int = 4) -> str:
    """``"name: checkpoint (a, b), config (c, d); ..."`` for the language model's tensors whose
    shape in the folder's safetensors differs from what ``llm_config`` builds ("" if none, or
    if the shapes cannot be read)."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):  # shapes only, no memory
            expected = AutoModelForCausalLM.from_config(llm_config).state_dict()
        found: dict[str, tuple[int, ...]] = {}
        for path in weight_files(folder):
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt") as fh:
                    found.update({k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()})
    except Exception:  # the caller falls back to the original error
        return ""
    bad = [
        f"{k}: checkpoint {found[k]}, config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and found[k] != tuple(v.shape)
    ]
    more = f"; ... ({len(bad)} in all)" if len(bad) > limit else ""
    return "; ".join(bad[:limit]) + more


def _load_module(module: torch.nn.Module, name: str, weights: dict[str, torch.Tensor]) -> None:
    prefix = name + "."
    sub = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    own = module.state_dict()
    missing = sorted(set(own) - set(sub))
    unexpected = sorted(set(sub) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{name} weights do not fit: missing {[prefix + k for k in missing]}, "
            f"unexpected {[prefix + k for k in unexpected]}"
        )
    for k, v in sub.items():
        if v.shape != own[k].shape:
            raise CheckpointError(
                f"{prefix}{k} has shape {tuple(v.shape)}, the config expects {tuple(own[k].shape)}"
            )
    module.load_state_dict(sub)


def load_oryx(
    path: str | Path,
    vision_tower=None,
    vision_config=None,
    torch_dtype: torch.dtype | str | None = None,
    dtype: torch.dtype | str | None = None,
    device_map=None,
    strict: bool = True,
    tokenizer=None,
):
    """Load a released Oryx folder (or our own) into ``OryxForConditionalGeneration``.

    - language model: ``transformers`` ``from_pretrained`` on the same folder (sharded or not,
      safetensors or ``.bin``; ``dtype``/``torch_dtype`` and ``device_map`` as usual);
    - compressor + projector: ``model.vision_resampler.*`` / ``model.mm_projector.*``;
    - encoder: ``vision_tower=`` (an :class:`OryxViT` or a path), else the checkpoint's
      ``model.vision_tower.vision_tower.*``, else the file named by ``mm_vision_tower``
      ("oryx_vit:<path>", relative paths are tried next to the checkpoint too). Released
      configs do not record the encoder shape: it defaults to the released Oryx-ViT, or pass
      ``vision_config=`` (taken from ``vision_tower`` when that is an OryxViT).

    Missing weights raise :class:`CheckpointError`; unexpected language-model weights too when
    ``strict`` (else they are logged). The placeholder token id is taken from the folder's
    tokenizer (added as a new token if absent - its id may exceed the embedding table; it is
    never looked up).
    """
    import logging

    import transformers
    from transformers import AutoModelForCausalLM

    from oryx_mllm.config import OryxConfig
    from oryx_mllm.model import OryxForConditionalGeneration
    from oryx_mllm.vision import OryxViT

    log = logging.getLogger(__name__)
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    if isinstance(vision_tower, OryxViT) and vision_config is None:
        vision_config = vision_tower.config
    config = OryxConfig.load(folder, vision_config=vision_config)
    dtype = resolve_dtype(dtype if dtype is not None else torch_dtype)
    weights = read_connector_weights(folder)  # a missing or corrupt file: clear error first

    # 1. language model ---------------------------------------------------------------------
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if device_map is not None:
        kwargs["device_map"] = device_map
    hf_logging = transformers.utils.logging
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report lists our connector keys; we report below
    try:
        llm, info = AutoModelForCausalLM.from_pretrained(
            str(folder), config=config.llm_config(), output_loading_info=True, **kwargs
        )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        # transformers' size-mismatch error points at a load report we silenced: name the shapes
        mismatched = _llm_shape_mismatches(folder, config.llm_config())
        reason = f"weights of other sizes than config.json's: {mismatched}" if mismatched else exc
        raise CheckpointError(f"cannot load the language model from {folder}: {reason}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(info.get("missing_keys", []))
    unexpected = sorted(k for k in info.get("unexpected_keys", []) if connector_key(k) is None)
    mismatched = sorted(str(k) for k in info.get("mismatched_keys", []))
    if missing or mismatched:
        raise CheckpointError(
            f"language model weights in {folder} do not fit the config: missing {missing[:16]}"
            f"{' ...' if len(missing) > 16 else ''}, mismatched {mismatched[:8]}"
        )
    if unexpected:
        msg = f"unexpected weights in {folder}: {unexpected[:16]}"
        if strict:
            raise CheckpointError(msg + " (pass strict=False to ignore them)")
        log.warning(msg)

    # 2. vision tower -------------------------------------------------------------------------
    has_tower = any(k.startswith("vision_tower.") for k in weights)
    if isinstance(vision_tower, (str, Path)):
        vision_tower = OryxViT.from_pretrained(vision_tower, config=config.vision_config)
    if vision_tower is not None:
        config.vision_config = vision_tower.config
    elif has_tower:
        vision_tower = OryxViT(config.vision_config)
        vision_tower.load_weights(
            {
                k[len("vision_tower.") :]: v
                for k, v in weights.items()
                if k.startswith("vision_tower.")
            }
        )
    elif config.vision_tower_path:
        candidates = [Path(config.vision_tower_path), folder / config.vision_tower_path]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise CheckpointError(
                f"the encoder named by mm_vision_tower ({config.mm_vision_tower}) was not found; "
                "pass vision_tower=<path to oryx_vit.pth> or an OryxViT"
            )
        vision_tower = OryxViT.from_pretrained(found, config=config.vision_config)
    else:
        raise CheckpointError(
            f"{folder} has no encoder weights and no mm_vision_tower; pass vision_tower="
        )

    # 3. assemble -----------------------------------------------------------------------------
    if tokenizer is None and (folder / "tokenizer_config.json").exists():
        tokenizer = load_tokenizer(folder)
    if tokenizer is not None:
        from oryx_mllm.processing.chat import ensure_visual_token

        config.visual_token_id = ensure_visual_token(tokenizer, config.visual_token)
    model = OryxForConditionalGeneration(config, language_model=llm, vision_tower=vision_tower)
    _load_module(model.vision_resampler, "vision_resampler", weights)
    _load_module(model.mm_projector, "mm_projector", weights)
    device = model.device
    target = model.dtype if dtype not in (None, "auto") else None
    for part in (model.vision_tower, model.vision_resampler, model.mm_projector):
        part.to(device=device, dtype=target)
    model.eval()
    return model


def _shards(state_dict: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, value in state_dict.items():
        n = value.numel() * value.element_size()
        if shards[-1] and size + n > max_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = value
        size += n
    return shards


def save_oryx(
    model, directory: str | Path, tokenizer=None, max_shard_bytes: int = DEFAULT_SHARD_BYTES
):
    """Write ``model`` to ``directory``: safetensors shards under the released names (encoder
    included), ``config.json`` (released layout + our typed extras), the tokenizer if given.

    Weights, shard index and config are all written to temporary files before any is moved into
    place, so a save that fails leaves an earlier checkpoint in ``directory`` as it was; the
    earlier save's other weight files are removed only after the new ones are in place.
    """
    import copy

    directory = Path(directory)
    state = to_released_names(model.state_dict())
    llm = model.language_model
    # tied weights share storage; keep one copy (transformers re-ties on load)
    out_emb = llm.get_output_embeddings()
    if out_emb is not None and out_emb.weight is llm.get_input_embeddings().weight:
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    shards = _shards(state, max_shard_bytes)
    meta = {"format": "pt"}
    if len(shards) == 1:
        writes = {directory / "model.safetensors": safetensors_writer(shards[0], meta)}
    else:
        writes, weight_map, total = {}, {}, 0
        for i, shard in enumerate(shards):
            name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            writes[directory / name] = safetensors_writer(shard, meta)
            weight_map.update(dict.fromkeys(shard, name))
            total += sum(v.numel() * v.element_size() for v in shard.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        writes[directory / "model.safetensors.index.json"] = json_writer(index)
    # An earlier save's shard index would point the loader at its old shards: it goes right
    # after the new weights are in place and before the new config (the rest of that save's
    # files, which nothing points to any more, after everything).
    stale = _stale_weight_files(directory, keep=set(writes))
    writes.update({p: None for p in stale if p.name.endswith(".index.json")})
    config = copy.deepcopy(model.config)
    config.text_config = {**llm.config.to_dict(), "model_type": config.llm_type}
    config.mm_vision_tower = None  # the encoder is in the weights
    config.vision_config = model.vision_tower.config
    writes[directory / "config.json"] = json_writer(config.to_dict())
    atomic_write_all(writes)
    for path in stale:
        path.unlink(missing_ok=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    if getattr(llm, "generation_config", None) is not None:
        llm.generation_config.save_pretrained(str(directory))
