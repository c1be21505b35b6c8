"""``BtnkMAE``: the bottleneck masked autoencoder (encoder + decoder), its math and public API.

Loading and saving (every format, file names, the training-checkpoint layout) live in
:mod:`btnk_env.models.checkpoint`; the classmethods here only reach them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn as nn

from btnk_env.models import checkpoint as ckpt
from btnk_env.models.config import BtnkMAEConfig, ImageSize, check_img_size
from btnk_env.models.decoder import BtnkDecoder
from btnk_env.models.encoder import BtnkEncoder
from btnk_env.models.patch_embed import patchify, unpatchify

PathLike = Union[str, "os.PathLike[str]"]

#: ``torch.compile`` modes offered by :meth:`BtnkMAE.enable_compile` (each tested against eager).
#: Inductor's ``freezing`` is never switched on: combined with max-autotune it was seen to
#: return a wrong decoder output.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")

#: On the CPU, eager inference runs the encoder and decoder in sub-batches of at most about this
#: many tokens (images x tokens per image): oneDNN's matrix multiplies slow down on taller
#: operands (measured with ``benchmarks``: base at batch 32 encodes 10-15% faster in sub-batches
#: of ~2000 tokens than whole). Under autograd, ``torch.compile`` or on a GPU the batch runs whole.
CPU_SUB_BATCH_TOKENS = 2048


def _all_finite(x: torch.Tensor) -> bool:
    """Whether ``x`` has no NaN or infinity: one min/max pass (NaN propagates through both),
    10x cheaper than ``torch.isfinite(x).all()`` on a batch of images."""
    if x.numel() == 0:
        return True
    low, high = torch.aminmax(x)
    return bool(torch.isfinite(low) and torch.isfinite(high))


def _nearest(side: int, patch: int) -> int:
    return max(1, round(side / patch)) * patch


def _in_sub_batches(fn: Any, x: torch.Tensor, tokens_per_item: int) -> torch.Tensor:
    """``fn(x)``, computed in sub-batches of :data:`CPU_SUB_BATCH_TOKENS` tokens for CPU inference."""
    per = max(1, CPU_SUB_BATCH_TOKENS // tokens_per_item)
    if x.shape[0] <= per or x.device.type != "cpu" or torch.is_grad_enabled():
        return fn(x)
    return torch.cat([fn(chunk) for chunk in x.split(per)])


class BtnkMAEOutput(NamedTuple):
    """What :meth:`BtnkMAE.forward` returns (``None`` where not computed)."""

    latent: torch.Tensor
    """``(B, D)`` the bottleneck vector."""
    patches: torch.Tensor
    """``(B, N, p * p * 3)`` patches decoded from the latent (normalized pixels)."""
    tokens: Optional[torch.Tensor] = None
    """``(B, 1 + N, D)`` all encoder tokens (with ``full_mae=True``)."""
    full_mae_patches: Optional[torch.Tensor] = None
    """``(B, N, p * p * 3)`` MAE's decoder over all tokens (with ``full_mae=True``)."""


class BtnkMAE(nn.Module):
    """Bottleneck MAE: an image -> one latent vector (the CLS token) -> the image.

    Args:
        config: a :class:`BtnkMAEConfig` or a preset name (``"base"``, ``"large"``, ...).
        **overrides: config fields to change (``img_size=(256, 512)``, ``act_fn="relu"``, ...).

    Example:
        >>> import torch
        >>> model = BtnkMAE("test", img_size=(32, 64)).eval()
        >>> images = torch.randn(2, 3, 32, 64)                 # ImageNet-normalized
        >>> latent = model.encode(images)                      # (B, D)
        >>> tuple(latent.shape), tuple(model.decode(latent).shape)
        ((2, 64), (2, 3, 32, 64))
        >>> tuple(model.encode(torch.randn(1, 3, 64, 128)).shape)   # the input decides the size
        (1, 64)
        >>> tuple(model.decode(latent, size=(64, 128)).shape)
        (2, 3, 64, 128)
    """

    def __init__(self, config: Union[BtnkMAEConfig, str] = "base", **overrides: Any) -> None:
        super().__init__()
        if isinstance(config, str):
            config = BtnkMAEConfig.from_preset(config, **overrides)
        elif overrides:
            config = config.replace(**overrides)
        self.config = config
        self.encoder = BtnkEncoder(config)
        self.decoder = BtnkDecoder(config)
        self._compiled: dict = {}
        self.init_weights()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_compiled"] = {}  # compiled functions are not copied or pickled; compile again
        return state

    # ------------------------------------------------------------------ properties
    @property
    def latent_dim(self) -> int:
        """D, the width of the latent vector."""
        return self.config.embed_dim

    @property
    def img_size(self) -> Tuple[int, int]:
        """``(H, W)`` the model was trained at: the default size of :meth:`decode` (:meth:`encode`
        takes any size divisible by the patch)."""
        return self.config.img_hw

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    @property
    def grid_size(self) -> Tuple[int, int]:
        return self.config.grid_size

    @property
    def device(self) -> torch.device:
        return self.encoder.cls_token.device

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.cls_token.dtype

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def init_weights(self) -> None:
        """The original's initialisation: xavier-uniform linears (and patch projection), zero
        biases, unit LayerNorms, N(0, 0.02) CLS and mask tokens, truncated N(0, 0.02) queries."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.encoder.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.encoder.patch_embed.proj.bias)
        nn.init.normal_(self.encoder.cls_token, std=0.02)
        nn.init.normal_(self.decoder.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder.learned_embed, std=0.02)
        nn.init.xavier_uniform_(self.decoder.patch_recon.attn.in_proj_weight)
        nn.init.zeros_(self.decoder.patch_recon.attn.in_proj_bias)

    # ------------------------------------------------------------------ input checks
    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(
                f"images must be a torch.Tensor (B, 3, H, W), got {type(images).__name__}; "
                f"for uint8 frames use btnk_env.models.frames_to_tensor(frames)"
            )
        if images.ndim != 4 or images.shape[1] != self.config.in_chans:
            raise ValueError(
                f"images must be (B, 3, H, W), got shape {tuple(images.shape)}"
                + ("; for (B, H, W, 3) frames use btnk_env.models.frames_to_tensor" if images.ndim == 4 and images.shape[-1] == 3 else "")
            )
        if not images.is_floating_point():
            raise TypeError(
                f"images must be float and ImageNet-normalized, got dtype {images.dtype}; "
                f"for uint8 frames use btnk_env.models.frames_to_tensor(frames)"
            )
        h, w = images.shape[-2:]
        if h % self.patch_size or w % self.patch_size or h == 0 or w == 0:
            raise ValueError(
                f"images are {h}x{w} (HxW), not divisible by the patch size {self.patch_size}; resize them to "
                f"multiples of {self.patch_size}, e.g. {_nearest(h, self.patch_size)}x{_nearest(w, self.patch_size)}"
            )
        if not _all_finite(images):
            raise ValueError("images contain NaN or infinite values")
        return images.to(self.dtype)

    def _check_latent(self, latent: torch.Tensor) -> torch.Tensor:
        if not isinstance(latent, torch.Tensor):
            raise TypeError(f"latent must be a torch.Tensor (B, {self.latent_dim}), got {type(latent).__name__}")
        if latent.ndim != 2 or latent.shape[1] != self.latent_dim:
            raise ValueError(
                f"latent must be (B, {self.latent_dim}) for this model (D={self.latent_dim}), got shape {tuple(latent.shape)}"
            )
        if not latent.is_floating_point():
            raise TypeError(f"latent must be float, got dtype {latent.dtype}")
        if not _all_finite(latent):
            raise ValueError("latent contains NaN or infinite values")
        return latent.to(self.dtype)

    # ------------------------------------------------------------------ computation
    def _grid(self, size: Optional[ImageSize]) -> Tuple[int, int]:
        """Patch grid of an output ``size`` (``None``: the default size, :attr:`img_size`)."""
        if size is None:
            return self.grid_size
        h, w = check_img_size(size, self.patch_size)
        return h // self.patch_size, w // self.patch_size

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``images: (B, 3, H, W)`` float, ImageNet-normalized, any ``H, W`` divisible by the patch
        -> latent ``(B, D)`` (after ``act_fn``). The patch grid is read from the images."""
        images = self._check_images(images)
        if "encode" in self._compiled:
            return self._compiled["encode"](images)
        n = (images.shape[-2] // self.patch_size) * (images.shape[-1] // self.patch_size)
        return _in_sub_batches(self.encoder.forward_latent, images, n + 1)

    def encode_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``images: (B, 3, H, W)`` -> all encoder tokens ``(B, 1 + N, D)``; ``[:, 0]`` is the latent."""
        return self.encoder(self._check_images(images))

    def decode_patches(self, latent: torch.Tensor, size: Optional[ImageSize] = None) -> torch.Tensor:
        """``latent: (B, D)`` -> patches ``(B, N, p * p * 3)`` of an image of ``size`` (an int or
        ``(H, W)``; default :attr:`img_size`, the size the model was trained at), normalized
        pixels, MAE patch order."""
        latent = self._check_latent(latent)
        grid = self._grid(size)
        if "decode" in self._compiled:
            return self._compiled["decode"](latent, grid)
        return _in_sub_batches(lambda z: self.decoder(z, grid), latent, grid[0] * grid[1])

    def enable_compile(self, mode: str = "default", **compile_kwargs: Any) -> "BtnkMAE":
        """Opt in to ``torch.compile`` for :meth:`encode` and :meth:`decode_patches`.

        Compilation happens at the first call for each input shape (tens of seconds on a CPU;
        ``benchmarks`` states the time). ``mode`` is one of :data:`COMPILE_MODES`.
        Call :meth:`disable_compile` to return to eager execution.
        """
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
        self._compiled = {
            "encode": torch.compile(self.encoder.forward_latent, mode=mode, **compile_kwargs),
            "decode": torch.compile(self.decoder, mode=mode, **compile_kwargs),
        }
        return self

    def disable_compile(self) -> "BtnkMAE":
        """Back to eager execution."""
        self._compiled = {}
        return self

    def decode(self, latent: torch.Tensor, size: Optional[ImageSize] = None) -> torch.Tensor:
        """``latent: (B, D)`` -> images ``(B, 3, H, W)`` of ``size`` (an int or ``(H, W)``; default
        :attr:`img_size`, the size the model was trained at), ImageNet-normalized (not clipped)."""
        grid = self._grid(size)
        return unpatchify(self.decode_patches(latent, size), self.patch_size, grid)

    def decode_full_mae(self, tokens: torch.Tensor, size: Optional[ImageSize] = None) -> torch.Tensor:
        """The original's full-MAE decoder path: ``tokens: (B, 1 + N, D)`` of an image of ``size``
        (default :attr:`img_size`) -> ``(B, N, p * p * 3)``."""
        grid = self._grid(size)
        n = grid[0] * grid[1] + 1
        if tokens.ndim != 3 or tokens.shape[1:] != (n, self.latent_dim):
            raise ValueError(f"tokens must be (B, {n}, {self.latent_dim}) for a {grid[0]}x{grid[1]} grid, got {tuple(tokens.shape)}")
        return self.decoder.forward_full_mae(tokens.to(self.dtype), grid)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """``images: (B, 3, H, W)`` -> reconstruction through the latent, ``(B, 3, H, W)`` normalized."""
        return self.decode(self.encode(images), size=tuple(images.shape[-2:]))

    def forward(self, images: torch.Tensor, full_mae: bool = False) -> BtnkMAEOutput:
        """Training forward at the images' size: latent and decoded patches, plus MAE's
        full-token path if asked."""
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        if full_mae:
            tokens = self.encode_tokens(images)
            latent = tokens[:, 0]
            return BtnkMAEOutput(latent, self.decoder(latent, grid), tokens, self.decoder.forward_full_mae(tokens, grid))
        latent = self.encode(images)
        return BtnkMAEOutput(latent, self.decoder(latent, grid))

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, N, p * p * 3)`` (the decoder's target layout)."""
        return patchify(images, self.patch_size)

    def unpatchify(self, patches: torch.Tensor, size: Optional[ImageSize] = None) -> torch.Tensor:
        """``(B, N, p * p * 3)`` -> ``(B, 3, H, W)`` for an image of ``size`` (default :attr:`img_size`)."""
        return unpatchify(patches, self.patch_size, self._grid(size))

    def set_img_size(self, size: ImageSize) -> "BtnkMAE":
        """Make ``size`` (square or not; ``(512, 1024)`` is a 32x64 grid at patch 16) the model's
        own size: the default of :meth:`decode`, and the grid its learned queries are stored and
        trained on (the fine-tuning step to a new size, the original's 224 -> 512).

        Not needed to run at another size: :meth:`encode` reads the size from the images and
        :meth:`decode` takes ``size=``. The decoder's learned queries are resampled bicubically
        from the queries as last loaded or trained, so returning to that size restores them
        exactly; no parameter is replaced or re-randomised.
        """
        h, w = check_img_size(size, self.patch_size)
        if (h, w) == self.img_size:
            return self
        self.config = self.config.replace(img_size=(h, w))
        self.encoder.set_grid_size(self.config.grid_size)
        self.decoder.set_grid_size(self.config.grid_size)
        return self

    # ------------------------------------------------------------------ loading and saving
    def save_pretrained(self, directory: PathLike, dtype: Optional[torch.dtype] = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (see
        :func:`btnk_env.models.checkpoint.save_pretrained`); ``dtype`` (e.g. ``torch.float16``) stores the
        weights at that precision to halve the file; they load back as float32."""
        return ckpt.save_pretrained(self, directory, dtype)

    def push_to_hub(self, repo_id: str, **card: Any) -> str:
        """Upload to the Hub model repository ``repo_id`` (``model.safetensors``, ``config.json``
        and a generated model card; ``card``: ``training_data``, ``commands``, ``evaluation``,
        ``description``, ``private``, ``token``, see :func:`btnk_env.models.hub_push.push_to_hub`).
        ``BtnkMAE.from_pretrained("hf:" + repo_id)`` loads it back."""
        from btnk_env.models.hub_push import push_to_hub

        return push_to_hub(self, repo_id, kind="btnk_mae", **card)

    @classmethod
    def from_pretrained(cls, name_or_path: PathLike, *, map_location: Any = "cpu", **overrides: Any) -> "BtnkMAE":
        """Load a model, in eval mode (see :func:`btnk_env.models.checkpoint.load_pretrained`).

        Args:
            name_or_path: a folder written by :meth:`save_pretrained` (or its ``.safetensors``
                file); an original btnk_mae checkpoint ``.pth`` (``enc_model``/``dec_model``),
                sizes detected from its tensors and stored config; this project's training
                checkpoint; a release name (``"btnk_mae_vit_base_224"``,
                ``"btnk_mae_vit_large_relu_224"``) downloaded from the Hugging Face Hub and
                sha256-verified; a model shipped with the package; or ``"hf:owner/name"``, a Hub
                model repository written by :meth:`push_to_hub`.
            map_location: device for the weights.
            **overrides: config fields the checkpoint cannot tell (``num_heads=4``,
                ``decoder_num_heads=4`` for non-standard widths, ``act_fn``, ``img_size``).
        """
        return ckpt.load_pretrained(cls, name_or_path, map_location=map_location, **overrides)

    @classmethod
    def from_mae(cls, path: PathLike, preset_or_config: Union[str, BtnkMAEConfig] = "base", **overrides: Any) -> "BtnkMAE":
        """Start a bottleneck MAE from an original MAE checkpoint (``{"model": state_dict}``).

        Patch embedding, blocks, norm, CLS token and MAE's decoder are loaded; the bottleneck
        parts (decoder queries, cross-attention) keep their fresh initialisation. Position
        tables are the fixed sin-cos ones. With ``act_fn=None``, :meth:`encode` returns MAE's
        CLS token for an unmasked image (see :func:`btnk_env.models.checkpoint.load_mae`).
        """
        return ckpt.load_mae(cls, path, preset_or_config, **overrides)
