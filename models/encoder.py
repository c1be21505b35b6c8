"""The bottleneck encoder: a ViT whose CLS token, after an optional activation, is the latent."""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn

from btnk_env.models.config import ACTIVATIONS, BtnkMAEConfig
from btnk_env.models.layers import LAYER_NORM_EPS, Block
from btnk_env.models.patch_embed import PatchEmbed
from btnk_env.models.pos_embed import SincosTables, sincos_pos_embed


class BtnkEncoder(nn.Module):
    """ViT encoder of the bottleneck MAE (parameter names of MAE's encoder).

    The grid is read from the input: any ``(H, W)`` divisible by the patch size. The fixed sin-cos
    position table is computed per grid and cached (never stored, never learned); ``pos_embed``
    is the buffer of the default grid ``grid_size``, changed by :meth:`set_grid_size`.
    """

    def __init__(self, config: BtnkMAEConfig) -> None:
        super().__init__()
        d = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = nn.ModuleList(Block(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.act = getattr(nn, ACTIVATIONS[config.act_fn])() if config.act_fn else nn.Identity()
        self.patch_size = config.patch_size
        self.grid_size = config.grid_size
        self.register_buffer("pos_embed", sincos_pos_embed(d, self.grid_size, cls_token=True), persistent=False)
        self._tables = SincosTables(d, cls_token=True)

    def set_grid_size(self, grid_size: Tuple[int, int]) -> None:
        """Make ``(gh, gw)`` the default grid (the ``pos_embed`` buffer); inputs still decide."""
        ref = self.pos_embed
        self.grid_size = tuple(grid_size)
        self.pos_embed = sincos_pos_embed(ref.shape[-1], self.grid_size, cls_token=True).to(ref.device, ref.dtype)

    def pos_table(self, grid_size: Tuple[int, int]) -> torch.Tensor:
        """The fixed table of a ``(gh, gw)`` grid: ``(1, 1 + gh * gw, D)``, on the model's device and dtype."""
        if tuple(grid_size) == self.grid_size:
            return self.pos_embed
        return self._tables.get(grid_size, self.pos_embed)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """``images: (B, 3, H, W)`` -> tokens ``(B, 1 + N, D)`` with positions added."""
        p = self.patch_size
        pos = self.pos_table((images.shape[-2] // p, images.shape[-1] // p))  # (1, 1 + N, D)
        x = self.patch_embed(images) + pos[:, 1:]  # (B, N, D)
        cls = (self.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)  # (B, 1, D)
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
