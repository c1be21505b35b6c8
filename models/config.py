"""Model configuration: one dataclass and one preset table for encoder and decoder.

Field names follow the original btnk_mae code (and ``../shared/golden/*.json``), so a config
read from an original checkpoint maps one to one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple, Union

ImageSize = Union[int, Tuple[int, int]]

#: Activations the original applies to the encoder output (``act_fn``; ``None`` means none),
#: each with the ``torch.nn`` layer that computes it.
ACTIVATIONS = {"relu": "ReLU", "gelu": "GELU", "swish": "SiLU", "tanh": "Tanh", "sigmoid": "Sigmoid"}

_DECODER_ORIGINAL = dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16)

#: The single preset table shared by encoder and decoder. ``base``/``large``/``huge`` are the
#: ViT sizes of MAE and the released bottleneck models (all with the original 8-block, 512-wide
#: decoder). ``small`` and ``tiny`` are CPU-friendly sizes; ``test`` is for unit tests.
PRESETS: dict[str, dict[str, Any]] = {
    "base": dict(embed_dim=768, depth=12, num_heads=12, patch_size=16, img_size=224, **_DECODER_ORIGINAL),
    "large": dict(embed_dim=1024, depth=24, num_heads=16, patch_size=16, img_size=224, **_DECODER_ORIGINAL),
    "huge": dict(embed_dim=1280, depth=32, num_heads=16, patch_size=14, img_size=224, **_DECODER_ORIGINAL),
    "small": dict(
        embed_dim=384, depth=12, num_heads=6, patch_size=16, img_size=224,
        decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8,
    ),
    "tiny": dict(
        embed_dim=192, depth=6, num_heads=3, patch_size=16, img_size=224,
        decoder_embed_dim=192, decoder_depth=4, decoder_num_heads=6,
    ),
    "test": dict(
        embed_dim=64, depth=2, num_heads=4, patch_size=16, img_size=64,
        decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=4,
    ),
}

#: Head counts of the standard ViT widths, used when a checkpoint's tensors give the width only.
STANDARD_HEADS = {192: 3, 384: 6, 512: 16, 768: 12, 1024: 16, 1280: 16}


def to_hw(size: ImageSize) -> Tuple[int, int]:
    """``224 -> (224, 224)``; ``(512, 1024) -> (512, 1024)`` (height, width)."""
    if isinstance(size, bool):
        raise TypeError(f"image size must be an int or an (H, W) pair, got {size!r}")
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return (int(size[0]), int(size[1]))
    raise TypeError(f"image size must be an int or an (H, W) pair of ints, got {size!r}")


@dataclass(frozen=True)
class BtnkMAEConfig:
    """Sizes of a bottleneck MAE (encoder ViT + cross-attention decoder).

    Example:
        >>> cfg = BtnkMAEConfig(embed_dim=64, depth=2, num_heads=4, img_size=(64, 128))
        >>> cfg.grid_size, cfg.num_patches, cfg.patch_dim
        ((4, 8), 32, 768)
        >>> BtnkMAEConfig.from_preset("large").embed_dim
        1024
    """

    embed_dim: int = 768
    """Encoder width D; the latent is one D-dimensional vector."""
    depth: int = 12
    """Number of encoder transformer blocks."""
    num_heads: int = 12
    """Encoder attention heads (must divide ``embed_dim``)."""
    patch_size: int = 16
    """Side of the square patches, in pixels."""
    img_size: ImageSize = 224
    """Input size: an int for square images or ``(H, W)``; both divisible by ``patch_size``."""
    act_fn: Optional[str] = None
    """Activation applied to the encoder output (one of ``ACTIVATIONS``) or ``None``."""
    decoder_embed_dim: int = 512
    """Width of the MAE decoder blocks."""
    decoder_depth: int = 8
    """Number of MAE decoder blocks."""
    decoder_num_heads: int = 16
    """Decoder attention heads (must divide ``decoder_embed_dim``)."""
    mlp_ratio: float = 4.0
    """Hidden width of every MLP relative to its block width."""
    in_chans: int = 3
    """Image channels (RGB)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", _canonical_size(self.img_size))
        if self.act_fn is not None and self.act_fn not in ACTIVATIONS:
            raise ValueError(f"act_fn must be None or one of {tuple(ACTIVATIONS)}, got {self.act_fn!r}")
        for name in ("embed_dim", "depth", "num_heads", "patch_size", "decoder_embed_dim",
                     "decoder_depth", "decoder_num_heads", "in_chans"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide embed_dim={self.embed_dim}")
        if self.decoder_embed_dim % self.decoder_num_heads:
            raise ValueError(
                f"decoder_num_heads={self.decoder_num_heads} must divide "
                f"decoder_embed_dim={self.decoder_embed_dim}"
            )
        for name in ("embed_dim", "decoder_embed_dim"):
            if getattr(self, name) % 4:
                raise ValueError(f"{name} must be divisible by 4 (2-D sin-cos position table)")
        check_img_size(self.img_size, self.patch_size)
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio}")

    # ---------------------------------------------------------------- derived sizes
    @property
    def img_hw(self) -> Tuple[int, int]:
        """``(H, W)`` of the input images."""
        return to_hw(self.img_size)

    @property
    def grid_size(self) -> Tuple[int, int]:
        """Patch grid ``(H / p, W / p)``."""
        h, w = self.img_hw
        return (h // self.patch_size, w // self.patch_size)

    @property
    def num_patches(self) -> int:
        """N, the number of patch tokens."""
        gh, gw = self.grid_size
        return gh * gw

    @property
    def patch_dim(self) -> int:
        """``p * p * 3``, the length of one decoded patch."""
        return self.patch_size * self.patch_size * self.in_chans

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "BtnkMAEConfig":
        """Config of a preset in :data:`PRESETS`, with field overrides."""
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "BtnkMAEConfig":
        """Build from a mapping (for example a saved ``config.json``); unknown keys are errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown BtnkMAEConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``img_size`` as an int or a ``[H, W]`` list)."""
        out = dataclasses.asdict(self)
        if isinstance(self.img_size, tuple):
            out["img_size"] = list(self.img_size)
        return out

    def replace(self, **changes: Any) -> "BtnkMAEConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _canonical_size(size: ImageSize) -> ImageSize:
    h, w = to_hw(size)
    return h if h == w else (h, w)


def check_img_size(size: ImageSize, patch_size: int) -> Tuple[int, int]:
    """Validate that both sides are positive multiples of ``patch_size``; returns ``(H, W)``."""
    h, w = to_hw(size)
    if h <= 0 or w <= 0 or h % patch_size or w % patch_size:
        raise ValueError(
            f"image size {h}x{w} (HxW) is not divisible by the patch size {patch_size}; "
            f"use sides that are multiples of {patch_size}, e.g. "
            f"{max(1, round(h / patch_size)) * patch_size}x{max(1, round(w / patch_size)) * patch_size}"
        )
    return h, w
