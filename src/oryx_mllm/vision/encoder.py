"""OryxViT: a SigLIP-shaped ViT that encodes images at their native resolution (paper 3.1.1).

Differences from a fixed-resolution ViT, and nothing else:

1. one large learned position table (``position_grid`` x ``position_grid``) that is resampled
   bilinearly to each image's own patch grid ``(h, w)``;
2. images of different sizes are packed into one sequence and attend only within themselves
   (variable-length attention, see ``attention.py``).

No class token, no final LayerNorm, no pooling head: features are the last block's output.
Parameter names equal the released ``oryx_vit.pth``.
"""

from __future__ import annotations

import math
import pickle
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from oryx_mllm.checks import check_range
from oryx_mllm.errors import CheckpointError, ConfigError, InvalidInputError
from oryx_mllm.vision.attention import resolve_backend, varlen_attention
from oryx_mllm.vision.config import OryxViTConfig

# Amplitude of the sine-cosine initialisation. For the embedded tiny encoder, 0.25, 0.5 and 1.0
# all made a token's position linearly readable (R² >= 0.98) while its shape and colour stayed
# about as readable as with the random table (docs/default_model.md, fifth session).
SINCOS_SCALE = 0.5

# Byte budget of the resampled position tables cached for inference. A budget rather than an
# entry count because an entry's size varies ~1000x with the grid: for the released encoder in
# bf16 a 96x96 grid is ~21 MB, a 16x16 one ~0.6 MB. 64 MiB keeps a few large grids (a video's
# frames share one) or hundreds of small ones; the newest entry is always kept, even if larger.
POS_CACHE_BYTES = 64 * 2**20
# Server workers share one model and encode at the same time: the cache's bookkeeping (lookup,
# insert, eviction) runs under this lock. One lock for all encoders keeps modules picklable.
_POS_CACHE_LOCK = threading.Lock()


def sincos_position_table(grid: int, dim: int, scale: float = 1.0) -> torch.Tensor:
    """A fixed 2D sine-cosine position table ``[grid * grid, dim]`` (row-major): the first half
    of the channels encodes the column, the second half the row, each as sin/cos pairs whose
    frequencies run geometrically from half a period across the grid to one radian per cell.

    An initialisation for encoders trained from scratch (``OryxViTConfig.position_init``): a
    random table at the usual std 0.02 is ~20x weaker than the patch embeddings, so an untrained
    or frozen encoder's tokens say almost nothing about where they are. Values in
    ``[-scale, scale]``.
    """
    if dim % 4 or dim < 4 or grid < 1:
        raise ConfigError(
            f"sincos position table needs grid >= 1 and dim a multiple of 4, got {grid}, {dim}"
        )
    n = dim // 4
    exponent = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)
    omega = (math.pi / grid) * float(grid / math.pi) ** exponent  # rad per cell: pi/grid .. 1
    cells = torch.arange(grid, dtype=torch.float64) + 0.5
    angle = cells[:, None] * omega[None]  # [grid, n]
    axis = torch.cat([angle.sin(), angle.cos()], dim=1)  # [grid, 2n]
    rows = axis[:, None, :].expand(grid, grid, 2 * n)
    cols = axis[None, :, :].expand(grid, grid, 2 * n)
    return (scale * torch.cat([cols, rows], dim=-1)).reshape(grid * grid, dim).float()


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> C. Stored as a Conv2d so the checkpoint names match."""

    def __init__(self, cfg: OryxViTConfig):
        super().__init__()
        p = cfg.patch_size
        self.proj = nn.Conv2d(cfg.num_channels, cfg.hidden_size, kernel_size=p, stride=p)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        # patches: [T, 3*p*p] flattened in (channel, row, col) order == the conv's weight layout
        weight = self.proj.weight.flatten(1)
        return F.linear(patches.to(weight.dtype), weight, self.proj.bias)  # [T, C]


class Attention(nn.Module):
    def __init__(self, cfg: OryxViTConfig):
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, seqlens: Sequence[int], backend: str) -> torch.Tensor:
        T = x.shape[0]
        q, k, v = self.qkv(x).view(T, 3, self.num_heads, self.head_dim).unbind(1)  # [T, H, D]
        out = varlen_attention(q, k, v, seqlens, backend)
        return self.proj(out.reshape(T, -1))


class Mlp(nn.Module):
    def __init__(self, cfg: OryxViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.mlp_hidden_size)
        self.act = nn.GELU(approximate="tanh" if cfg.hidden_act == "gelu_pytorch_tanh" else "none")
        self.fc2 = nn.Linear(cfg.mlp_hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: OryxViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(cfg)

    def forward(self, x: torch.Tensor, seqlens: Sequence[int], backend: str) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), seqlens, backend)
        return x + self.mlp(self.norm2(x))


class OryxViT(nn.Module):
    def __init__(self, config: OryxViTConfig | None = None):
        super().__init__()
        self.config = cfg = config or OryxViTConfig()
        self.patch_embed = PatchEmbed(cfg)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.position_grid**2, cfg.hidden_size))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self._pos_cache: dict[tuple[int, int], torch.Tensor] = {}
        self._pos_cache_key: tuple | None = None
        self._pos_cache_source: torch.Tensor | None = None
        if cfg.position_init == "sincos":
            table = sincos_position_table(cfg.position_grid, cfg.hidden_size, SINCOS_SCALE)
            self.pos_embed.data.copy_(table[None])
        else:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    @property
    def dtype(self) -> torch.dtype:
        return self.pos_embed.dtype

    @property
    def device(self) -> torch.device:
        return self.pos_embed.device

    # Position table ---------------------------------------------------------------------------
    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """The position table resampled to an ``h x w`` patch grid: ``[h*w, C]``.

        Cached by grid while the table is frozen (inference); recomputed when it trains so the
        gradient flows to ``pos_embed``.
        """
        pe = self.pos_embed
        if pe.requires_grad and torch.is_grad_enabled():
            return self._resample_pos(h, w)
        # The cache belongs to one table: its storage, version, device and dtype. `_version` alone
        # misses `pos_embed.data = ...`, `.to(...)` and `load_state_dict(assign=True)`, which swap
        # the storage without bumping it. `_pos_cache_source` aliases the storage the entries came
        # from, so that address cannot be reused by a new table while they exist.
        key = (pe.data_ptr(), pe._version, pe.device, pe.dtype)
        with _POS_CACHE_LOCK:
            if key != self._pos_cache_key:
                self.clear_position_cache()
                self._pos_cache_key, self._pos_cache_source = key, pe.detach()
            table = self._pos_cache.pop((h, w), None)
        if table is None:  # resampled outside the lock: two threads may both compute it
            table = self._resample_pos(h, w).detach()
        with _POS_CACHE_LOCK:
            if key == self._pos_cache_key:  # not cleared by a weight load meanwhile
                self._pos_cache[(h, w)] = table  # (re)inserted last: the dict is in LRU order
                nbytes = sum(t.numel() * t.element_size() for t in self._pos_cache.values())
                while nbytes > POS_CACHE_BYTES and len(self._pos_cache) > 1:
                    oldest = self._pos_cache.pop(next(iter(self._pos_cache)))
                    nbytes -= oldest.numel() * oldest.element_size()
        return table

    def clear_position_cache(self) -> None:
        """Drop the cached resampled position tables (done on every weight load)."""
        self._pos_cache.clear()
        self._pos_cache_key = self._pos_cache_source = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.clear_position_cache()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _resample_pos(self, h: int, w: int) -> torch.Tensor:
        G, C = self.config.position_grid, self.config.hidden_size
        grid = self.pos_embed.reshape(1, G, G, C).permute(0, 3, 1, 2)  # [1, C, G, G]
        if (h, w) != (G, G):
            grid = F.interpolate(grid.float(), size=(h, w), mode="bilinear", align_corners=False)
        return grid.to(self.pos_embed.dtype).flatten(2).transpose(1, 2)[0]  # [h*w, C]

    # Input checking and patchify --------------------------------------------------------------
    def _check(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if isinstance(images, torch.Tensor):
            images = list(images) if images.dim() == 4 else [images]
        if len(images) == 0:
            raise InvalidInputError("OryxViT.encode got an empty list of images")
        out = []
        for i, img in enumerate(images):
            if not isinstance(img, torch.Tensor):
                raise InvalidInputError(f"image {i} is a {type(img).__name__}, not a tensor")
            if img.dim() == 4 and img.shape[0] == 1:
                img = img[0]
            if img.dim() != 3 or img.shape[0] != self.config.num_channels:
                raise InvalidInputError(
                    f"image {i} has shape {tuple(img.shape)}; expected "
                    f"[{self.config.num_channels}, H, W] (channels first, normalised pixels)"
                )
            if not img.is_floating_point():
                raise InvalidInputError(
                    f"image {i} has dtype {img.dtype}; expected normalised float pixels "
                    "(use oryx_mllm.processing to convert uint8 images)"
                )
            H, W = img.shape[1:]
            if H == 0 or W == 0:
                raise InvalidInputError(f"image {i} is empty ({H}x{W} pixels)")
            p = self.config.patch_size
            n = -(-H // p) * -(-W // p)
            if n > self.config.max_patches_per_image:
                raise InvalidInputError(
                    f"image {i} ({W}x{H} pixels) would give {n} patches, more than "
                    f"max_patches_per_image={self.config.max_patches_per_image}; resize it "
                    "(the processor does) or raise the limit in OryxViTConfig"
                )
            out.append(img)
        return out

    def _patchify(self, img: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Zero-pad right/bottom to a multiple of p, cut into patches: ``[h*w, 3*p*p]``."""
        p = self.config.patch_size
        c, H, W = img.shape
        h, w = -(-H // p), -(-W // p)
        img = F.pad(img, (0, w * p - W, 0, h * p - H))
        patches = img.reshape(c, h, p, w, p).permute(1, 3, 0, 2, 4).reshape(h * w, c * p * p)
        return patches, (h, w)

    def _check_packed(self, x: torch.Tensor, seqlens: Sequence[int]) -> None:
        """Plain-Python shape checks of :meth:`forward`'s inputs (cheap, compile-friendly)."""
        C = self.config.hidden_size
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != C:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InvalidInputError(
                f"OryxViT.forward x must be a packed [T, {C}] tensor, got {shape}"
            )
        for i, n in enumerate(seqlens):
            check_range(
                f"OryxViT.forward seqlens[{i}]",
                n,
                integer=True,
                at_least=1,
                error=InvalidInputError,
            )
        if sum(seqlens) != x.shape[0]:
            raise InvalidInputError(
                f"OryxViT.forward seqlens {list(seqlens)} sum to {sum(seqlens)}, "
                f"but x has {x.shape[0]} tokens"
            )

    # Forward ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, seqlens: Sequence[int]) -> torch.Tensor:
        """Run the blocks over a packed sequence ``[T, C]`` made of segments ``seqlens``."""
        self._check_packed(x, seqlens)
        backend = resolve_backend(self.config.attention_backend, x.device)
        for blk in self.blocks:
            if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, seqlens, backend, use_reentrant=False)
            else:
                x = blk(x, seqlens, backend)
        return x

    def encode(
        self, images: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
        """Encode images of any sizes in one packed pass.

        images: list of normalised pixels ``[3, H_i, W_i]`` (``[1, 3, H, W]`` is accepted too).
        Returns a list of features ``[h_i * w_i, C]`` and the patch grids ``(h_i, w_i)``.
        """
        images = self._check(images)
        patches, grids = zip(*(self._patchify(img.to(self.device)) for img in images))
        seqlens = [h * w for h, w in grids]
        x = self.patch_embed(torch.cat(patches))  # [T, C]
        x = x + torch.cat([self.position_embedding(h, w) for h, w in grids])
        x = self.forward(x, seqlens)
        return list(x.split(seqlens)), list(grids)

    # Loading ----------------------------------------------------------------------------------
    def load_weights(self, state_dict: dict[str, torch.Tensor], strict_extra: bool = False):
        """Load a state dict with the released names.

        Missing keys are fatal (:class:`CheckpointError`); unexpected extra keys are returned
        (and only fatal with ``strict_extra=True``). A position table of a different grid size
        is resampled to this model's grid.
        """
        state_dict = dict(state_dict)
        pe = state_dict.get("pos_embed")
        if pe is not None and pe.shape != self.pos_embed.shape:
            width = self.config.hidden_size
            if pe.dim() not in (2, 3) or pe.shape[-1] != width or pe[..., 0].numel() == 0:
                raise CheckpointError(
                    f"OryxViT weight 'pos_embed' has shape {tuple(pe.shape)}; expected "
                    f"[1, G*G, {width}] (a square grid of width-{width} vectors)"
                )
            state_dict["pos_embed"] = resample_position_table(pe, self.config.position_grid)
        own = self.state_dict()
        missing = sorted(set(own) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
        if missing:
            raise CheckpointError(f"OryxViT checkpoint is missing {len(missing)} keys: {missing}")
        if unexpected and strict_extra:
            raise CheckpointError(f"OryxViT checkpoint has unexpected keys: {unexpected}")
        for name, tensor in own.items():
            if state_dict[name].shape != tensor.shape:
                raise CheckpointError(
                    f"OryxViT weight {name!r} has shape {tuple(state_dict[name].shape)}, "
                    f"the config expects {tuple(tensor.shape)}"
                )
        self.load_state_dict({k: state_dict[k] for k in own}, strict=True)
        return unexpected

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        config: OryxViTConfig | None = None,
        torch_dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
    ) -> OryxViT:
        """Load the released ``oryx_vit.pth``, a ``.safetensors`` file, or a saved folder.

        A folder holds ``config.json`` + ``model.safetensors`` (see :meth:`save_pretrained`).
        For a bare weights file the config defaults to the released encoder; pass ``config``
        for other shapes. ``torch_dtype`` is a dtype or its name (``"bfloat16"``).
        """
        from oryx_mllm.checkpoint import check_device, resolve_dtype

        torch_dtype = resolve_dtype(torch_dtype)
        check_device(device)
        path = Path(path)
        if path.is_dir():
            if config is None and (path / "config.json").exists():
                config = _folder_vision_config(path)
            path = path / "model.safetensors"
        state_dict = _encoder_weights(load_state_dict_file(path))
        config = config or OryxViTConfig.released()
        model = cls(config)
        unexpected = model.load_weights(state_dict)
        if unexpected:
            import logging

            logging.getLogger(__name__).warning(
                "ignored %d unexpected keys in %s: %s", len(unexpected), path, unexpected[:8]
            )
        return model.to(device=device, dtype=torch_dtype)

    def save_pretrained(self, directory: str | Path) -> None:
        """``model.safetensors`` + ``config.json``, both written before either replaces an
        earlier save (so a failed save leaves that one consistent)."""
        from oryx_mllm.checkpoint import safetensors_writer
        from oryx_mllm.files import atomic_write_all, json_writer

        directory = Path(directory)
        atomic_write_all(
            {
                directory / "model.safetensors": safetensors_writer(self.state_dict()),
                directory / "config.json": json_writer(self.config.to_dict()),
            }
        )


def _folder_vision_config(folder: Path) -> OryxViTConfig:
    """The encoder config of a saved OryxViT folder, or of a whole Oryx model folder (its
    config.json is the model's, with the encoder's shape inside)."""
    from oryx_mllm.files import read_json

    data = read_json(folder / "config.json")
    if isinstance(data, dict) and ("oryx" in data or "mm_vision_tower" in data):
        from oryx_mllm.config import OryxConfig

        return OryxConfig.load(folder).vision_config
    return OryxViTConfig.load(folder / "config.json")


def _encoder_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's own weights: keys as saved by :meth:`OryxViT.save_pretrained`, or under
    one prefix (``vision_tower.`` in the released oryx_vit.pth, ``model.vision_tower.
    vision_tower.`` in a whole Oryx model's safetensors), which is removed."""
    if "pos_embed" in state_dict:
        return state_dict
    prefixes = {k.removesuffix("pos_embed") for k in state_dict if k.endswith(".pos_embed")}
    if len(prefixes) != 1:
        return state_dict  # load_weights names what is missing
    prefix = prefixes.pop()
    return {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}


def resample_position_table(table: torch.Tensor, grid: int | tuple[int, int]) -> torch.Tensor:
    """Resample a square ``[1, G*G, C]`` (or ``[G*G, C]``) table to ``grid`` (bilinear)."""
    h, w = (grid, grid) if isinstance(grid, int) else grid
    table = table.reshape(-1, table.shape[-1])
    G = int(round(table.shape[0] ** 0.5))
    if G * G != table.shape[0]:
        raise CheckpointError(f"position table with {table.shape[0]} entries is not square")
    x = table.reshape(1, G, G, -1).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.flatten(2).transpose(1, 2).to(table.dtype)  # [1, h*w, C]


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors``, ``.pth`` / ``.bin`` state dict from disk (tensors only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read weights file {path}: zero-byte file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own message goes on to suggest weights_only=False: never for a file we were
        # merely asked to read tensors from
        raise CheckpointError(
            f"cannot read weights file {path}: not a PyTorch checkpoint of tensors only "
            "(torch.load(weights_only=True) refused it; it is corrupt or holds other objects)"
        ) from exc
    except Exception as exc:  # corrupt/truncated files raise many different types
        reason = str(exc) or type(exc).__name__
        raise CheckpointError(f"cannot read weights file {path}: {reason}") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
