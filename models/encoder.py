"""The bottleneck encoder: a ViT whose CLS token, after an optional activation, is the latent."""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn

from models.config import BtnkMAEConfig
from models.layers import LAYER_NORM_EPS, Block
from models.patch_embed import PatchEmbed
from models.pos_embed import sincos_pos_embed

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class BtnkEncoder(nn.Module):
    """ViT encoder of the bottleneck MAE (parameter names of MAE's encoder).

    Position table ``pos_embed`` is a fixed sin-cos buffer for the current grid, recomputed by
    :meth:`set_grid_size` (never stored, never learned).
    """

    def __init__(self, config: BtnkMAEConfig) -> None:
        super().__init__()
        d = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = nn.ModuleList(Block(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.act = _ACTIVATIONS[config.act_fn]() if config.act_fn else nn.Identity()
        self.grid_size = config.grid_size
        self.register_buffer("pos_embed", sincos_pos_embed(d, self.grid_size, cls_token=True), persistent=False)

    def set_grid_size(self, grid_size: Tuple[int, int]) -> None:
        """Recompute the fixed position table for a ``(gh, gw)`` patch grid."""
        ref = self.pos_embed
        self.grid_size = tuple(grid_size)
        self.pos_embed = sincos_pos_embed(ref.shape[-1], self.grid_size, cls_token=True).to(ref.device, ref.dtype)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """``images: (B, 3, H, W)`` -> tokens ``(B, 1 + N, D)`` with positions added."""
        x = self.patch_embed(images) + self.pos_embed[:, 1:]  # (B, N, D)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)  # (B, 1, D)
        return torch.cat((cls, x), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """All tokens: ``images: (B, 3, H, W)`` -> ``(B, 1 + N, D)`` (after the activation)."""
        x = self._embed(images)
        for blk in self.blocks:
            x = blk(x)
        return self.act(self.norm(x))

    def forward_latent(self, images: torch.Tensor) -> torch.Tensor:
        """The latent alone: ``images: (B, 3, H, W)`` -> ``(B, D)``.

        Equal to ``forward(images)[:, 0]``; the last block computes the CLS token only.
        """
        x = self._embed(images)
        for blk in self.blocks[:-1]:
            x = blk(x)
        x = self.blocks[-1].forward_cls(x)  # (B, 1, D)
        return self.act(self.norm(x[:, 0]))
